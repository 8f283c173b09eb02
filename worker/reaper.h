/*  reaper: no command a worker started outlives the worker.

    A worker that is killed -9 (or crashes, or is OOM-killed) cannot clean
    up after itself, and its tasks' processes would run on, orphaned: the
    same task then runs twice (the master gives it to another worker), its
    timeout is no longer enforced and a cancel no longer reaches it. Two
    mechanisms prevent that (docs/worker.md, "No task outlives its worker"):

    1. The reaper process. reaper_start forks a small process that does
       nothing but wait for the worker to end. The worker and it share a
       table with one slot per pool thread (reaper_slot_t), in which
       exec records the process group of the command that thread runs
       (plain memory stores, no system call, no wakeup of the reaper). The
       reaper holds the read end of a pipe whose only write end is the
       worker's: when the worker ends, however it ends, the kernel closes
       that end, the reaper reads EOF, sends SIGKILL to every process
       group in the table, removes the state file and exits.

    2. The state file. The table lives in a file of the state directory
       (mapped MAP_SHARED, locked with flock by the worker and its reaper),
       so it outlives them both. reaper_start first sweeps the directory:
       a file nobody holds locked belongs to a worker that died together
       with its reaper, and the processes still running in the groups it
       lists are killed -- after checking, from /proc, that each group
       still carries that task's ZTASK_TASK_ID, ZTASK_JOB_ID and
       ZTASK_ATTEMPT, since a group number is reused once the group is
       gone. A file still locked is left alone (a live worker's, or
       one whose last holder -- a thread still exiting, a command's
       child between its fork and its exec -- lets go a moment later:
       then the next start sweeps it).

    Why a group number in the table is safe to signal: exec records it
    before the child execs, and clears it only after it has killed the
    group and before it reaps the leader (exec.c), so while a slot holds a
    number the leader is unreaped (or the worker is dead and its
    processes are being killed within milliseconds): the number cannot
    name someone else's group.

    Threads: reaper_start and reaper_stop on the main thread, before any
    other thread exists (reaper_start forks) and after every pool thread
    has ended. A slot belongs to one pool thread (exec_req_t.slot); the
    reaper process reads the slots only once the worker is gone.
*/
#ifndef ZTASK_REAPER_H
#define ZTASK_REAPER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One pool thread's running command. pgid is written last when a command
   starts (by its child, after setpgid and before exec) and cleared first
   when it ends; task, job and attempt are written before it and tell the
   sweep whose group it was. The layout is the state file's: change it
   only with REAPER_FORMAT. */
typedef struct {
    _Atomic int32_t pgid;   /* 0 = no command running */
    int32_t attempt;
    int64_t task;
    int64_t job;
} reaper_slot_t;

typedef struct reaper reaper_t;

/* The state directory used when none is given: /run/ztask-worker for
   root, $XDG_RUNTIME_DIR/ztask-worker when that is set, else
   /tmp/ztask-worker-UID. Caller frees. */
char *reaper_default_dir(void);

/* Makes dir (mode 0700) if missing and checks it is a directory of ours
   that nobody else may write; sweeps it (see the top); creates this
   worker's state file with nslots slots (>= 1); forks the reaper.
   Returns NULL with a one-line reason in err on failure. Must be called
   while the process has a single thread. Blocks while it sweeps (one pass
   over /proc per dead worker's file, at most a few). */
reaper_t *reaper_start(const char *dir, int nslots, char *err, size_t errlen);

/* Slot i (0 <= i < nslots), in memory shared with the reaper. Borrowed:
   valid until reaper_stop. */
reaper_slot_t *reaper_slot(reaper_t *self, int i);

/* The reaper's pid. */
pid_t reaper_pid(const reaper_t *self);

/* The worker is leaving with nothing running: closes the pipe, so the
   reaper removes the state file and exits, and waits up to 2 s for it.
   Accepts NULL, nulls *p. */
void reaper_stop(reaper_t **p);

#endif
