/*  master_internal: the master's state, shared by the files of one module
    (master.c: loop, sockets, timers; tasks.c: the life of a task from
    dispatch to result; api.c: the API requests). Not for other modules.
    The journal and grouped commits: journal.h.

    Threads: main loop only.
*/
#ifndef ZTASK_MASTER_INTERNAL_H
#define ZTASK_MASTER_INTERNAL_H

#include "auth.h"
#include "jobs.h"
#include "journal.h"
#include "master.h"
#include "registry.h"
#include "sched.h"
#include "store.h"
#include "waiters.h"

#include "../common/imap.h"
#include "../common/log.h"
#include "../common/zmqx.h"
#include "../proto/proto.h"

#include <stdbool.h>
#include <stdint.h>

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
    jobs_t *jobs;
    journal_t *journal;      /* durable changes and grouped commits */
    int64_t last_job_id, last_task_id;   /* the ids handed out last */
    waiters_t *waiters;      /* requests held until their job finishes */
    size_t orphans;          /* tasks waiting for their worker to come back */
    size_t rr;               /* round-robin start for dispatch */
    int64_t started_ms;
    double started_wall;
    int64_t duplicates;
    int64_t results_total;
    int64_t last_timers;
    int64_t last_prune;
    /* Lines a peer can cause at will, rate-limited (log_limit): bad API
       requests; bad, refused or unknown reports. */
    log_limit_t lim_request, lim_report;
    int64_t stuck_since;     /* tasks ready but no live worker can take them, 0 = none */
    int64_t stuck_logged;    /* when that was last logged */
    int64_t last_stuck_check;
};

/* master.c */
void master_send_reply(master_t *self, const zmqx_frames_t *envelope, const proto_reply_t *rep,
                       proto_req_type_t type);

/* tasks.c */
void tasks_dispatch(master_t *self, int64_t now);
/* key: the sender's CURVE key (NULL without CURVE): a worker's reports
   count only from the key that registered it. */
void tasks_on_report(master_t *self, const char *buf, size_t len, const char *key, int64_t now);
void tasks_timers(master_t *self, int64_t now);
/* The tasks of a committed submit enter job (the queue, or cancelled with
   their job); the specs move from p to the scheduler. */
void tasks_enter(master_t *self, job_t *job, pending_submit_t *p);
/* Puts a task that was on a worker back in the queue, or ends it when it
   was cancelled or (crashed) has killed its workers crash_limit times. */
void tasks_take_back(master_t *self, sched_task_t *t, bool crashed, const char *why);
/* Takes every task back from a worker that died or left. */
void tasks_worker_lost(master_t *self, worker_t *w, int64_t now, const char *why, bool crashed);
/* Before a hello registers it: w is the registry's record of that name
   (NULL: none). When w is the very process saying hello (host, pid,
   key), a dead w did not crash (the crashes charged to its tasks at its
   loss are taken back), and a live w lost its pipe: what it holds and
   does not list in running is lost in that pipe and taken back. Returns
   true in that last case (a live worker registering again). */
bool tasks_rejoin(master_t *self, worker_t *w, const char *host, int pid, const char *key,
                  const proto_task_ref_t *running, int nrunning);
/* Gives w (just registered) the tasks its hello lists as running that
   wait for it: from before a master restart (orphans), or dispatched
   before it and never recorded (queued since, one attempt below the
   claim; see ASSIGN_WRITE_MS in journal.h). Returns how many. */
int tasks_claim(master_t *self, worker_t *w, const proto_task_ref_t *running, int nrunning);
/* Cancels one unfinished task: a queued one (or an orphan not claimed)
   ends now, one on a worker gets an abort and ends with its result. */
void tasks_cancel(master_t *self, sched_task_t *t);
/* Cancels every unfinished task of a job (jobs_cancel first); returns how
   many. */
int64_t tasks_cancel_job(master_t *self, job_t *job);
/* Sends an abort for (task, attempt) down a worker's pipe (best effort). */
void tasks_send_abort(master_t *self, worker_t *w, int64_t task, int attempt);
/* Ends a task that is still in the scheduler with a final state (DONE,
   FAILED or CANCELLED). outcome (proto_result_encode text, or NULL to
   record just `error`) is taken: the journal owns it from here. */
void tasks_finish(master_t *self, sched_task_t *t, proto_state_t state, char *outcome,
                  const char *error);
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

#endif
