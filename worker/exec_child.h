/*  exec_child: the child side of exec (internal to worker/exec.c).

    exec_launch_init prepares, before fork, everything the child will need
    (environment, argv, the PATH candidates), because between fork and
    exec the child may not allocate. exec_child then runs in the child and
    only makes async-signal-safe system calls on that memory: own process
    group (recorded in the reaper's slot), default signal dispositions and
    an empty mask, the pipes on 0/1/2, every other descriptor closed,
    the policy's rlimits and identity (policy.h), chdir, execve. A step that fails is reported to the parent as an
    exec_child_report_t, either in L->report (when the child shares the
    parent's memory, which reads it once the vfork-style clone returns)
    or on the report pipe (close-on-exec, so a successful exec reads as
    EOF), and the child exits with 127.

    Threads: exec_launch_* on the thread that forks; exec_child only in
    the child of fork.
*/
#ifndef ZTASK_EXEC_CHILD_H
#define ZTASK_EXEC_CHILD_H

#include "exec.h"

#include <stdbool.h>

/* What the child reports through the error pipe when a step fails. */
enum { EXEC_STAGE_SETUP = 1, EXEC_STAGE_CHDIR, EXEC_STAGE_EXEC, EXEC_STAGE_RLIMIT, EXEC_STAGE_USER };
typedef struct {
    int stage;
    int err;
} exec_child_report_t;

/* Everything the child needs, built before fork (the child may not
   allocate). */
typedef struct {
    char **envp;           /* array owned; strings borrowed or in owned[] */
    char *owned[4];        /* the ZTASK_* strings */
    char *const *argv;     /* argv for a path candidate */
    char *sh_argv[4];      /* {"sh", "-c", shell, NULL} */
    char **paths;          /* execve candidates + NULL; array and strings owned */
    char **script_argv;    /* {"/bin/sh", <candidate>, argv[1..], NULL} for ENOEXEC */
    const char *display;   /* the program name in error messages */
    const char *cwd;       /* borrowed from the spec, NULL = stay */
    bool shell;
    int max_fd;            /* bound of the close loop when close_range fails */
    const sigset_t *reset; /* signals to set to SIG_DFL, NULL = all (borrowed) */
    reaper_slot_t *slot;   /* the child writes its group here; NULL = none (borrowed) */
    const exec_policy_t *policy;  /* limits and identity; NULL = none (borrowed) */
    exec_child_report_t report;  /* a failed step, written by a child without a report pipe */
} exec_launch_t;


/* Fills L for req (spec kind EXEC with argv or shell). Strings of the spec
   and of environ are borrowed: keep both unchanged until
   exec_launch_fini. */
void exec_launch_init(exec_launch_t *L, const exec_req_t *req);
/* The descriptor limit a kit read when it was made (exec.c). */
int exec_kit_max_fd(const exec_kit_t *kit);
void exec_launch_fini(exec_launch_t *L);

/* In the child of fork: sets up and execs, never returns. fd_in is the
   stdin source, fd_out and fd_err the write ends of the output pipes,
   fd_report the write end of the report pipe, or -1 to report in
   L->report (all close-on-exec). L may be the child's copy or the
   parent's own memory, and is scribbled on. The group is recorded in
   L->slot before any descriptor is closed: the reaper learns that the
   worker is gone only once every copy of its pipe, this child's
   included, is closed, so it never misses a group being started. */
void exec_child(exec_launch_t *L, int fd_in, int fd_out, int fd_err, int fd_report)
    __attribute__((noreturn));

#endif
