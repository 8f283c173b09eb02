/*  policy: who command tasks run as, and under which limits
    (--run-as USER, --task-rlimit NAME=VALUE,...).

    Why --run-as: a task that runs as the worker's own user can read
    everything the worker can, its secret key file first of all, and with
    that key take other clients' tasks off a task pipe (docs/security.md,
    the threat model). Run as another user, with the key file readable
    only by the worker's user, it cannot: not the file, not the worker's
    memory or /proc/PID/environ (another uid may not ptrace or read them),
    and not the worker's environment either (exec drops the worker's
    ZTASK_* variables from every task's environment).

    Everything is resolved once at start (the user's uid, gid and
    supplementary groups, HOME/USER/LOGNAME), so the child of fork needs
    only plain memory and system calls: setrlimit, then setgroups,
    setresgid, setresuid as raw system calls (glibc's set*id wrappers
    would signal every thread of the worker, which a vfork-style child
    sharing its memory must not do). Changing users needs CAP_SETUID and
    CAP_SETGID, and signalling the task's group afterwards CAP_KILL: root,
    or a worker user given those capabilities (docs/worker.md has the
    unit).

    Threads: built by main before any thread; read-only afterwards, by any
    thread and by the child of fork.
*/
#ifndef ZTASK_POLICY_H
#define ZTASK_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

#define POLICY_MAX_RLIMITS 16

typedef struct {
    int resource;             /* RLIMIT_* */
    struct rlimit lim;        /* soft = hard = the value given */
} policy_rlimit_t;

typedef struct {
    /* --run-as: change to this identity in the child. */
    bool run_as;
    uid_t uid;
    gid_t gid;
    gid_t *groups;            /* supplementary groups, owned */
    int ngroups;
    char *user;               /* the name given, owned */
    char *env[3];             /* "HOME=...", "USER=...", "LOGNAME=..." (owned), for the task */
    /* --task-rlimit, applied in the child before the identity changes. */
    policy_rlimit_t rlimits[POLICY_MAX_RLIMITS];
    int nrlimits;
} exec_policy_t;

/* An empty policy (tasks run as the worker, no limits). Caller owns. */
exec_policy_t *policy_new(void);
void policy_destroy(exec_policy_t **p);

/* Tasks run as user (a name, or a numeric uid with a passwd entry): its
   uid, primary group and supplementary groups. 0, or -1 with err (one
   line): unknown user, or this process may not change users. */
int policy_run_as(exec_policy_t *self, const char *user, char *err, size_t errlen);

/* Adds "NAME=VALUE[,NAME=VALUE...]": NAME one of as, core, cpu, data,
   fsize, memlock, nofile, nproc, stack; VALUE a count (cpu: seconds;
   as, core, data, fsize, memlock, stack: bytes with K/M/G) or
   "unlimited". A name given again replaces its value. 0, or -1 with err. */
int policy_add_rlimits(exec_policy_t *self, const char *list, char *err, size_t errlen);

/* The uid command tasks run as: the --run-as user's, else ours. */
uid_t policy_task_uid(const exec_policy_t *self);

/* True when the task user could read path (by its mode bits: owner,
   group among the task's groups, other), as it would open it. A path
   that cannot be stat'ed counts as not readable. */
bool policy_task_can_read(const exec_policy_t *self, const char *path);

/* The calling thread's file-system identity while the worker opens files
   for a task (its --stdout/--stderr files, which the worker writes and
   the task names): the --run-as user's fsuid, fsgid and groups, so the
   files are made and opened with the task user's permissions, not the
   worker's (root could otherwise truncate any file). Per thread: raw
   setfsuid/setfsgid/setgroups, as s_switch. No-op without --run-as. */
typedef struct {
    bool changed;
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    int ngroups;
} policy_fs_t;
/* 0, or -1 with errno (nothing changed). */
int policy_fs_enter(const exec_policy_t *self, policy_fs_t *saved);
/* Back to the worker's identity; asserts it could. */
void policy_fs_leave(policy_fs_t *saved);

/* "nproc=64,as=2147483648" for the start line (static buffer), "" for none. */
const char *policy_rlimits_text(const exec_policy_t *self);

/* Only in the child of fork: applies the limits, then the identity.
   Async-signal-safe. 0, or -1 with errno and *stage_user true when the
   identity change failed (false: a limit). */
int policy_apply_in_child(const exec_policy_t *self, bool *stage_user);

#endif
