/*  session: a worker's life with its master.

    One session thread runs one poll loop that owns every socket:
      api     DEALER -> master API (tcp://HOST:PORT): hello, and a drain
              request for ourselves on the first SIGTERM
      pipe    PULL   <- the master's per-worker task pipe (tcp://HOST:task_port)
      report  PUSH   -> the master's report PULL (tcp://HOST:report_port);
              connect side with a high SNDHWM, so results queue in the
              worker while the master is away and are delivered when it
              returns
    and reads the inbox, the mailbox (mailbox.h) the pool threads put their
    output and results in (see runner.h).
    common/connector.h makes the TCP sockets (endpoints, IPv6, CURVE, the
    handshake monitor of the api socket); outbox.h owns
    the report PUSH and does the batching and ordering of reports.

    With CURVE keys every TCP socket is a CURVE client of the master (which
    admits the worker's public key through its allowlist); a handshake the
    master refuses is reported as such instead of as a missing reply.

    Life: hello (retried with backoff until a reply) -> registered: tasks
    from the pipe go to the pool; STARTED and RESULTS are batched per
    wakeup; HEARTBEAT every heartbeat_ms; when the pipe is silent for
    liveness * heartbeat_ms the master is taken as gone: close the pipe and
    hello again, reporting the tasks still running so they are not re-run,
    while running tasks carry on. Drain (first signal, or a "drain" pipe
    message): take no new work from the master, finish what is assigned,
    send BYE, return. A second signal cancels everything, waits a bounded
    time for the results, sends BYE and returns.

    Leaving on its own: with idle_timeout_ms, a worker that has had no task
    for that long drains and returns ("idle"); with ends_at, it drains a
    little before then ("allocation_end"): both end a cluster allocation
    (master/alloc.h) cleanly instead of by the engine's kill.

    Threads: session_new, session_run and session_destroy are called from
    one thread. session_run makes that thread the only one that takes
    SIGTERM/SIGINT: it blocks them while it starts libzmq's and the pool's
    threads (which inherit the mask) and unblocks them on its own thread,
    so a signal interrupts its poll.
*/
#ifndef ZTASK_SESSION_H
#define ZTASK_SESSION_H

#include "allow.h"
#include "fn.h"
#include "policy.h"
#include "reaper.h"

#include <signal.h>
#include <stdbool.h>

typedef struct session session_t;

typedef struct {
    const char *master_host;     /* "127.0.0.1", "box", "::1" */
    int master_port;             /* API port; reports/tasks come from the hello reply */
    const char *name;            /* worker name (hello) */
    const char *hostname;        /* this machine (hello) */
    int threads;                 /* pool size, >= 1 */
    const char *const *labels;   /* nlabels strings */
    int nlabels;
    bool no_exec;                /* refuse command tasks */
    const res_set_t *resources;  /* what it offers tasks (copied); NULL = not said */
    const char *const *gpu_ids;  /* its GPU devices, ngpu_ids of them (copied) */
    int ngpu_ids;
    /* Programs command tasks may start (--allow-exec); NULL = any.
       Borrowed; must outlive the session. A task it refuses fails at once
       with the list's reason. */
    const allow_t *allow_exec;
    /* Who commands run as and their rlimits (--run-as, --task-rlimit);
       NULL = as the worker, no limits. Borrowed; must outlive the
       session. */
    const exec_policy_t *policy;
    const fn_registry_t *fns;    /* borrowed; must outlive the session */
    /* Counter of SIGTERM/SIGINT received, written only by the signal
       handler; borrowed, may be NULL. 1 = drain, 2 = stop now. */
    volatile sig_atomic_t *signals;
    int kill_grace_ms;           /* SIGTERM -> SIGKILL for tasks; 0 = exec's default */
    /* Where pool thread i records its command's process group (slot i;
       reaper.h); borrowed, must outlive the session, has at least
       `threads` slots. NULL = not recorded. */
    reaper_t *reaper;
    int hello_timeout_ms;        /* wait for a hello reply; 0 = 2000 */
    /* Test only (ZTASK_TEST_DROP_TASK): the drop_task-th task received
       (1 = the first) is dropped without a word, as a task lost between
       the pipe and the pool would be; 0 = none. */
    int64_t drop_task;
    /* Leave (drain, BYE, return 0) after this long with no task: a worker
       started for a while, in a cluster allocation (--idle-timeout). 0 =
       never. Idle counts whether or not the master answers, from the
       last task's end or the last registration, whichever is later, and
       not through a restarted master's rejoin window (hello reply
       hold_ms). */
    int idle_timeout_ms;
    /* Wall seconds this worker must be gone by (its allocation's end):
       shown by the master, which sends it no task whose --time-request
       cannot finish by then; the worker drains END_MARGIN before it. 0 =
       no end. */
    double ends_at;
    const char *slurm_job;       /* the Slurm job it runs in (hello), NULL = none */
    int stop_grace_ms;           /* after the second signal; 0 = 5000 */
    /* CURVE: the master's public key and this worker's key pair, as 40
       Z85 characters each. All NULL: plain TCP. All three or none. */
    const char *curve_server_key;
    const char *curve_public_key;
    const char *curve_secret_key;
} session_config_t;

/* Copies cfg (strings included). NULL on a bad config. Starts nothing. */
session_t *session_new(const session_config_t *cfg);

/* Runs until drained or stopped. Blocks. Returns 0 after a clean drain or
   stop (BYE sent when registered), -1 when it could not start (logged),
   1 when tasks ignored the stop and were abandoned: their threads are
   still running, so the caller must exit the process at once without
   tearing anything down (session_destroy then frees nothing). */
int session_run(session_t *self);

/* Frees the session; accepts NULL, nulls *p. */
void session_destroy(session_t **p);

#endif
