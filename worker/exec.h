/*  exec: runs one command task as a child process and captures how it ended.

    The child: its own process group (setpgid), stdin from the spec's
    "stdin" (or /dev/null), stdout and stderr captured through pipes, the
    parent's environment plus the spec's "env" plus ZTASK_TASK_ID,
    ZTASK_JOB_ID, ZTASK_ATTEMPT and (for arrays) ZTASK_TASK_INDEX, the
    spec's "cwd". It inherits no descriptor but 0, 1 and 2 (every other fd
    is closed between fork and exec, and all of ours are close-on-exec).
    Between fork and exec the child calls only async-signal-safe functions
    and never touches ZeroMQ. The child's signal mask and dispositions are
    reset to defaults.

    Output: each stream is kept up to spec->output_cap bytes; the rest is
    read and dropped (so the child never blocks on a full pipe) and the
    result is marked truncated. Bytes are made valid UTF-8 (U+FFFD).

    Timeout and cancel: when spec->timeout passes, or *cancel becomes true,
    the whole process group gets SIGTERM, then SIGKILL after kill_grace_ms.
    exec_run returns only when the child is reaped and the group's pipes
    are closed; a grandchild that keeps the pipes open after the child
    exits is killed with the group. Every child is reaped: no zombies.

    Threads: exec_run may be called from many threads at once; it blocks
    the calling thread until the task has ended.
*/
#ifndef ZTASK_EXEC_H
#define ZTASK_EXEC_H

#include "../proto/proto.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const proto_spec_t *spec;     /* borrowed; kind must be PROTO_KIND_EXEC */
    int64_t task_id;
    int64_t job_id;
    int attempt;
    int kill_grace_ms;            /* between SIGTERM and SIGKILL; 0 = 2000 */
    const atomic_bool *cancel;    /* may be NULL; polled at least every 100 ms */
    /* Live output, called on the calling thread with raw bytes as they
       arrive (at most every ~100 ms per stream, coalesced); may be NULL. */
    void (*on_output)(void *arg, int stream, const char *data, size_t len);
    void *arg;
} exec_req_t;

/* Runs the task to its end and fills res (which the caller owns):
   status DONE on exit 0, FAILED otherwise (non-zero exit, signal, timeout,
   or failure to start: error says why, e.g. "cannot execute 'foo': No such
   file or directory"), CANCELLED when stopped through *cancel. task and
   attempt are copied from req. Returns 0, or -1 when the task could not
   even be attempted for lack of resources (res->error says why, status
   FAILED). */
int exec_run(const exec_req_t *req, proto_result_t *res);

#endif
