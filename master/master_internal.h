/*  master_internal: the master's state, shared by the files of one module
    (master.c: loop, sockets, timers, commits; tasks.c: the life of a task
    from dispatch to result; api.c: the API requests). Not for other modules.

    Write-behind journal: the in-memory state (jobs, sched, registry) is
    what the loop decides on; every change that must be durable is appended
    to the journal and written to SQLite in one transaction at the next
    flush (every flush_ms, and before any query is answered, so a result is
    committed before anyone is told of it). If a commit fails (disk full),
    the transaction is rolled back and the journal is kept and replayed at
    the next flush: nothing already decided is lost. Submits are different:
    their tasks enter the queue and the client gets its ack only after the
    commit that holds their rows succeeds; a failed one is refused. The
    master picks job and task ids itself (from the store's last ones at
    start), so a submit needs nothing from SQLite to be taken in.

    Flushes run on the writer thread (writer.h): the loop hands over the
    journal and the waiting submits as one batch and carries on; the batch
    comes back through the writer's fd in the poll. A small batch (a lone
    task's submit or result) is written on the loop itself: two thread
    wakeups would cost more than the write. While a batch is out the
    store is the writer's: the loop reads it only through master_store(),
    which waits for the writer to be done with it.

    Assignments are written late (master_assigned): only for a task still
    out ASSIGN_WRITE_MS after its dispatch. The row exists so that after a
    master crash the worker can claim the task; most tasks are short, and
    their finish row (which carries attempt and worker) is the only write
    they need. A task dispatched less than that before a crash is found
    queued: its worker still claims it in its hello (the claimed attempt is
    one above the stored one), unless the restarted master has already sent
    it to another worker, which makes one extra execution of a short task.

    Threads: main loop only.
*/
#ifndef ZTASK_MASTER_INTERNAL_H
#define ZTASK_MASTER_INTERNAL_H

#include "auth.h"
#include "master.h"
#include "registry.h"
#include "sched.h"
#include "store.h"
#include "writer.h"

#include "../common/imap.h"
#include "../common/log.h"
#include "../common/zmqx.h"
#include "../proto/proto.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct job {
    int64_t id;
    char *name;
    bool closed;             /* every batch received */
    bool closing;            /* a batch that closes it waits for its commit */
    bool cancelled;          /* cancel asked: no further batches accepted */
    int64_t total, queued, running, done, failed, cancelled_n;
    int64_t indexed;         /* default indexes handed out: batches waiting
                                for their commit count here, not in total */
    double created, finished;
} job_t;

typedef enum {
    J_ASSIGN = 1,    /* task, attempt, worker */
    J_REQUEUE,       /* task */
    J_FINISH,        /* task, state, attempt, worker, outcome, t */
    J_DUP,           /* task, attempt, worker, outcome, t */
    J_CANCEL_QUEUED, /* job, t */
    J_JOB_CLOSE,     /* job */
    J_JOB_FINISHED,  /* job, t */
    J_JOB_DELETE     /* job */
} jop_type_t;

typedef struct {
    jop_type_t type;
    proto_state_t state;
    int attempt;
    int64_t task, job;
    char *worker;        /* owned */
    char *outcome;       /* owned */
    double t;
} jop_t;

/* How long a dispatched task must stay out before its assignment is
   written (see the top of this file). */
#define ASSIGN_WRITE_MS 1000

/* Commits of up to this many rows are written on the loop thread itself
   (see s_flush_start in master.c); bigger ones on the writer thread. */
#define INLINE_WRITE_MAX 64

/* A dispatch whose assignment is not written yet. */
typedef struct {
    int64_t task;
    int64_t since;           /* monotonic ms of the dispatch */
    int attempt;
} assign_t;

/* A task of a submit whose commit is pending. */
typedef struct {
    int64_t id;
    int64_t index;
    int32_t priority;
    int retries;
    int cls;
    char *name;              /* owned, NULL = none */
    char *spec;              /* normalized spec text, owned */
    char *needs;             /* class key, owned, NULL = "fn" */
} pending_task_t;

/* A request held until its job finishes: a status, or the submit of a
   job's last batch, with wait_ms. */
typedef struct waiter {
    zmqx_frames_t envelope;  /* the client's routing frames (body dropped) */
    proto_req_type_t type;   /* PROTO_REQ_STATUS or PROTO_REQ_SUBMIT */
    int64_t job;
    int64_t accepted;        /* submit: tasks this batch added */
    int64_t deadline;        /* monotonic ms: answered then, finished or not */
    struct waiter *next;
} waiter_t;

/* Held requests (status and submit), at most: past this they are
   answered at once (each costs ~100 bytes; the bound keeps a flood of
   them cheap). */
#define MAX_WAITERS 4096

/* A submit waiting for its commit before it is acknowledged. */
typedef struct pending_submit {
    zmqx_frames_t envelope;  /* the client's routing frames (body dropped) */
    job_t *new_job;          /* a job created by this request, owned until commit */
    int64_t job_id;
    bool close;
    int wait_ms;             /* > 0: answer once the job has finished (or then) */
    pending_task_t *tasks;
    int ntasks;
    struct pending_submit *next;
} pending_submit_t;

struct master {
    master_config_t cfg;
    char *bind_addr;
    char *db_path;
    void *ctx;
    void *api;               /* ROUTER */
    void *reports;           /* PULL */
    int api_port, report_port;
    auth_t *auth;            /* NULL without CURVE */
    char curve_secret[41];   /* Z85, "" without CURVE */
    store_t *store;
    sched_t *sched;
    registry_t *registry;
    imap_t *jobs;            /* id -> job_t */
    writer_t *writer;        /* the commit thread */
    int64_t last_job_id, last_task_id;   /* the ids handed out last */
    jop_t *journal;
    size_t njournal, capjournal;
    /* The array of the last written batch, kept for the next journal:
       freeing and growing one of ~100 KB per commit made glibc consolidate
       its free lists every time (measured: malloc ~20% of the loop). */
    jop_t *spare;
    size_t capspare;
    int64_t journal_since;   /* monotonic ms of the oldest unflushed op */
    assign_t *assigns;       /* unwritten assignments, oldest first, from assign_head */
    size_t assign_head, nassigns, capassigns;
    bool stopping;           /* the last flush writes every assignment */
    int64_t flush_retry_at;  /* after a failed commit, not before this */
    bool storage_failing;
    pending_submit_t *pending, **pending_tail;
    waiter_t *waiters;       /* held status requests, newest first */
    size_t nwaiters;
    size_t orphans;          /* tasks waiting for their worker to come back */
    size_t rr;               /* round-robin start for dispatch */
    int64_t started_ms;
    double started_wall;
    int64_t duplicates;
    int64_t results_total;
    int64_t last_timers;
    int64_t last_prune;
    int64_t last_retention;
    bool retention_due;      /* a job finished: apply --keep-results soon */
    /* Lines a peer can cause at will, rate-limited (log_limit): bad API
       requests; bad, refused or unknown reports. */
    log_limit_t lim_request, lim_report;
    int64_t stuck_since;     /* tasks ready but no live worker can take them, 0 = none */
    int64_t stuck_logged;    /* when that was last logged */
    int64_t last_stuck_check;
};

/* master.c */
void master_journal(master_t *self, jop_type_t type, int64_t task, int64_t job, int attempt,
                    proto_state_t state, const char *worker, char *outcome_owned, double t);
/* Notes that task went out as attempt at now; its assignment is written
   by the first flush ASSIGN_WRITE_MS later if the task is still out then. */
void master_assigned(master_t *self, int64_t task, int attempt, int64_t now);
/* Writes the journal and pending submits in one transaction, waits for it
   and answers the submits. Returns 0, or -1 when the commit failed (the
   journal is kept for the next try, the submits are refused). */
int master_flush(master_t *self);
/* The store, for reading on the loop: waits while the writer has it. */
store_t *master_store(master_t *self);
job_t *master_job(master_t *self, int64_t id);
/* Deletes a finished job and its results (journal + memory); frees job. */
void master_forget_job(master_t *self, job_t *job);
/* Applies --keep-results: forgets finished jobs beyond the count or age. */
void master_retention(master_t *self);
void master_send_reply(master_t *self, const zmqx_frames_t *envelope, const proto_reply_t *rep,
                       proto_req_type_t type);

/* tasks.c */
void tasks_dispatch(master_t *self, int64_t now);
/* key: the sender's CURVE key (NULL without CURVE): a worker's reports
   count only from the key that registered it. */
void tasks_on_report(master_t *self, const char *buf, size_t len, const char *key, int64_t now);
void tasks_timers(master_t *self, int64_t now);
/* Puts a task that was on a worker back in the queue, or ends it when it
   was cancelled or (crashed) has killed its workers crash_limit times. */
void tasks_take_back(master_t *self, sched_task_t *t, bool crashed, const char *why);
/* Takes every task back from a worker that died or left. */
void tasks_worker_lost(master_t *self, worker_t *w, int64_t now, const char *why, bool crashed);
/* A worker declared dead registers again as the same process (host, pid,
   key): it did not crash, so the tasks charged a crash at its loss are
   uncharged (the poison-task limit counts real crashes only). */
void tasks_worker_returned(master_t *self, worker_t *w);
/* Sends an abort for (task, attempt) down a worker's pipe (best effort). */
void tasks_send_abort(master_t *self, worker_t *w, int64_t task, int attempt);
/* Ends a task that is still in the scheduler with a final state. outcome
   (proto_result_encode text, or NULL to record just `error`) is taken:
   the journal owns it from here. */
void tasks_finish(master_t *self, sched_task_t *t, proto_state_t state, char *outcome,
                  const char *error);
/* Checks whether a job has just finished and records it. */
void tasks_job_check(master_t *self, job_t *job);
/* The classes (their keys, borrowed) with tasks ready to run that no live
   worker can take now, into keys (room for max); returns how many. */
int tasks_unrunnable(master_t *self, const char **keys, int max);

/* api.c */
void api_on_request(master_t *self, zmqx_frames_t *frames, int64_t now);
/* Answers a submit whose batch is committed: at once, or, with wait_ms,
   once its job has finished or the wait is over (held like a status). */
void api_submit_answer(master_t *self, const zmqx_frames_t *env, int64_t job, int64_t accepted,
                       int wait_ms, int64_t now);
/* Answers the held requests whose job has finished (or is gone)
   or whose wait is over at now, all of them with all_now; one commit
   first, so what they are told is durable. */
void api_waiters(master_t *self, int64_t now, bool all_now);
/* The earliest held request's deadline (monotonic ms), or -1 if none. */
int64_t api_waiters_due(const master_t *self);
/* Drops the held requests unanswered (the master is going away). */
void api_waiters_free(master_t *self);

#endif
