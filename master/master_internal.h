/*  master_internal: the master's state, shared by the files of one module
    (master.c: loop, sockets, timers; tasks.c: the life of a task from
    dispatch to result; api.c: the API requests). Not for other modules.
    The journal and grouped commits: journal.h.

    Threads: main loop only.
*/
#ifndef ZTASK_MASTER_INTERNAL_H
#define ZTASK_MASTER_INTERNAL_H

#include "auth.h"
#include "journal.h"
#include "master.h"
#include "registry.h"
#include "sched.h"
#include "store.h"

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
    journal_t *journal;      /* durable changes and grouped commits */
    int64_t last_job_id, last_task_id;   /* the ids handed out last */
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
/* A job created by a committed submit (see api_acks). */
job_t *master_job_create(master_t *self, int64_t id, const char *name, double created);
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
/* Answers the submits whose commit is done (journal_take_done): acks, or
   refusals with the reason. Called by the loop after every step that may
   complete a commit. */
void api_acks(master_t *self);
/* journal_flush, then api_acks: what every answer that must reflect
   committed state does first. Returns journal_flush's result. */
int api_flush(master_t *self);
/* Answers the held requests whose job has finished (or is gone)
   or whose wait is over at now, all of them with all_now; one commit
   first, so what they are told is durable. */
void api_waiters(master_t *self, int64_t now, bool all_now);
/* The earliest held request's deadline (monotonic ms), or -1 if none. */
int64_t api_waiters_due(const master_t *self);
/* Drops the held requests unanswered (the master is going away). */
void api_waiters_free(master_t *self);

#endif
