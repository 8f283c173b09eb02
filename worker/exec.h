/*  exec: runs one command task as a child process and captures how it ended.

    The child: its own process group (setpgid), stdin from the spec's
    "stdin" (or /dev/null), stdout and stderr captured through pipes, the
    parent's environment without its ZTASK_* variables (the worker's key
    file, master and config must not reach a task), plus HOME, USER and
    LOGNAME of the policy's user, plus the spec's "env", plus
    ZTASK_TASK_ID, ZTASK_JOB_ID, ZTASK_ATTEMPT and (for arrays)
    ZTASK_TASK_INDEX; the policy's rlimits and user (policy.h); the
    spec's "cwd", entered as that user. It inherits no descriptor but 0, 1 and 2 (every other fd
    is closed between fork and exec, and all of ours are close-on-exec).
    Between fork and exec the child calls only async-signal-safe functions
    and never touches ZeroMQ. The child's signal mask and dispositions are
    reset to defaults.

    Output: each stream is kept up to spec->output_cap bytes; the rest is
    read and dropped (so the child never blocks on a full pipe) and the
    result is marked truncated. Bytes are made valid UTF-8 (U+FFFD), or
    handed over as they are (exec_req_t.raw_output). A stream's buffer
    grows by doubling up to the cap, so a capture holds at most the cap
    (1.5 x while a doubling copies).

    Timeout and cancel: when spec->timeout passes, or *cancel becomes true,
    the whole process group gets SIGTERM, then SIGKILL after kill_grace_ms.
    exec_run returns only when the child is reaped and the group's pipes
    are closed; a grandchild that keeps the pipes open after the child
    exits is killed with the group. Every child is reaped: no zombies.

    A task ends with its child: whatever is still in its process group
    then (a background process that closed our pipes, `cmd &` in a shell
    task) gets SIGKILL before exec_run returns, so no process of a task
    outlives it. A process that must outlive its task leaves the group
    (setsid); such a one is also out of reach of timeouts, cancels and
    the worker's reaper (reaper.h, docs/worker.md).

    Only the direct child is reaped. Descendants that left the group
    (setsid) are orphans for init to reap, as are the killed members of
    the group. The worker should NOT set PR_SET_CHILD_SUBREAPER: the
    orphans would become its children and need a process-wide
    waitpid(-1) reaper, which would race with exec_run's waitpid(pid) for
    the child's status. (In a container, run the worker under an init such
    as `docker run --init` rather than as PID 1.)

    Process-wide requirements on the caller: do not change the
    environment (setenv/putenv) once threads run: exec_run reads environ
    to build the child's. SIGPIPE needs nothing: exec_run blocks it on the
    calling thread while it runs and swallows any it caused, so writing
    stdin to a child that closed it gives EPIPE whatever the process's
    SIGPIPE setting (ignoring SIGPIPE in main() is still wise, for
    ZeroMQ's sake). The child gets default dispositions and an empty mask.

    Threads: exec_run may be called from many threads at once; it blocks
    the calling thread until the task has ended.
*/
#ifndef ZTASK_EXEC_H
#define ZTASK_EXEC_H

#include "../proto/proto.h"
#include "policy.h"
#include "reaper.h"

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* What a thread that runs commands one after another keeps between them:
   the child's stack, an open /dev/null, the descriptor limit, a read
   buffer, and what one probe child taught it (whether the clone shares
   our memory, whether it gives a pidfd). Each would otherwise cost system
   calls per command (mmap, munmap, open, close, prlimit, a report pipe,
   pidfd_open), which on a virtual machine are a good part of what the
   worker adds to a short command. Optional (exec_req_t.kit).
   Threads: one thread at a time. */
typedef struct exec_kit exec_kit_t;

/* NULL when it cannot be made (out of descriptors or memory): runs then
   do without. Starts and reaps one probe child (a clone that exits at
   once) before it returns. */
exec_kit_t *exec_kit_new(void);
/* Accepts NULL, nulls *p. */
void exec_kit_destroy(exec_kit_t **p);

typedef struct {
    const proto_spec_t *spec;     /* borrowed; kind must be PROTO_KIND_EXEC */
    int64_t task_id;
    int64_t job_id;
    int attempt;
    int kill_grace_ms;            /* between SIGTERM and SIGKILL; 0 = 2000 */
    const atomic_bool *cancel;    /* may be NULL; polled at least every 100 ms */
    /* Live output, called on the calling thread with raw bytes as they
       arrive (at most every ~100 ms per stream, coalesced); may be NULL.
       stream: 1 = stdout, 2 = stderr. Only the kept bytes (up to
       output_cap) are passed; their concatenation is the raw capture.
       Chunks end on a UTF-8 character boundary except the last, but are
       not repaired: a consumer must still sanitize them. */
    void (*on_output)(void *arg, int stream, const char *data, size_t len);
    void *arg;
    /* Signals the child sets back to SIG_DFL before it execs: those this
       process handles or ignores (exec_changed_signals). NULL = every
       signal, one sigaction each (~60 system calls per command while the
       parent thread waits for the exec). */
    const sigset_t *reset;
    exec_kit_t *kit;              /* borrowed, may be NULL */
    /* Where the child's process group is recorded for the reaper while
       it runs (task, job and attempt are written too); NULL = nowhere.
       Borrowed; the calling thread's own. */
    reaper_slot_t *slot;
    /* Who the command runs as and under which rlimits (--run-as,
       --task-rlimit); NULL = as the worker, no limits. Borrowed. */
    const exec_policy_t *policy;
    /* Leave the captured bytes as they are, handed over in
       res->stdout_raw / stderr_raw (proto.h), instead of repaired copies
       in stdout_data / stderr_data: the worker's result encoder repairs
       or base64-encodes them in one pass, so the capture is never held
       twice. Also: what on_output has not been given when a task that
       succeeded (exit 0) ends is not given at all -- the result, sent
       right after, carries it, and the master keeps live output only
       until a result ends the task. */
    bool raw_output;
} exec_req_t;

/* The signals whose disposition is not SIG_DFL now (handled or ignored),
   for exec_req_t.reset. Call once the process has installed its
   handlers; a disposition changed later is not seen. */
void exec_changed_signals(sigset_t *out);

/* Runs the task to its end and fills res (which the caller owns):
   status DONE on exit 0, FAILED otherwise (non-zero exit, signal, timeout,
   or failure to start: error says why, e.g. "cannot execute 'foo': No such
   file or directory"), CANCELLED when stopped through *cancel. task and
   attempt are copied from req. Returns 0, or -1 when the task could not
   even be attempted for lack of resources (res->error says why, status
   FAILED). Every field of res is overwritten (strings already in it are
   freed), so pass one from proto_result_new(). When the program could not
   be started (chdir or exec failed) has_exit_code is false. */
int exec_run(const exec_req_t *req, proto_result_t *res);

#endif
