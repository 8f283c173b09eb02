/*  tasks: the life of a task inside the master, from the ready queue (or
    waiting for the jobs its job depends on, deps.h) to a worker's pipe to
    its recorded result; what happens when workers die,
    leases run out or a result arrives for a stale attempt; and the claims
    of workers that kept running through a master restart.

    Transitions: every change of a task's state goes through one function
    (s_move in tasks.c), which keeps its job's counters (jobs.h), its
    worker's list and the orphan count in step. Dispatch and claims differ
    only in what they write (a late assignment, or one at once).

    The reports PULL socket is the loop's; tasks_read_reports reads it when
    the loop's poll says so. Task pipes are the registry's.

    Threads: main loop only.
*/
#ifndef ZTASK_TASKS_H
#define ZTASK_TASKS_H

#include "auth.h"
#include "claim.h"
#include "deps.h"
#include "jobs.h"
#include "journal.h"
#include "metrics.h"
#include "registry.h"
#include "sched.h"
#include "store.h"

#include "../proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tasks tasks_t;

/* What tasks_new works with: the pointers are borrowed (the loop owns
   them and outlives the tasks_t); the rest is the master's configuration
   (master.h says what each is). */
typedef struct {
    sched_t *sched;
    registry_t *registry;
    jobs_t *jobs;
    journal_t *journal;
    auth_t *auth;            /* NULL without CURVE */
    const claim_key_t *claims;  /* NULL without CURVE: the key of the claim tokens
                                   sent with each task (claim.h) */
    deps_t *deps;
    metrics_t *metrics;      /* counts finishes, retries, waits, losses */
    int heartbeat_ms;
    int liveness;
    int lease_ms;
    int recovery_grace_ms;
    int prefetch;
    int crash_limit;
    int retry_backoff_ms;
} tasks_config_t;

tasks_t *tasks_new(const tasks_config_t *cfg);
void tasks_destroy(tasks_t **p);

/* Rebuilds the queue from store at start-up: queued tasks are queued
   again; tasks that were on a worker wait recovery_grace_ms for it to
   claim them (orphans). The tasks found queued (any may have been sent
   just before a crash) are parked (SCHED_PARK_REJOIN) for a liveness
   window and one heartbeat (at most recovery_grace_ms), while the
   workers register again and claim what they held (event=rejoin_window,
   then event=rejoin_window_over at the first dispatch after it); every
   other task is sent meanwhile. Returns 0, or -1 (store_error says why). */
int tasks_load(tasks_t *self, store_t *store);

/* The ms the rejoin window still holds the tasks found queued back (0:
   none open). A worker registering in it is told (hello reply hold_ms),
   so that it does not count them as idle time. */
int tasks_rejoin_left_ms(const tasks_t *self, int64_t now);

/* Counts for `ztask stats` and the start-up line. */
typedef struct {
    int64_t duplicates;      /* results for a stale attempt */
    int64_t refused;         /* results, starts and output from a worker that
                                does not hold that attempt of the task */
    int64_t results;         /* tasks ended since start */
    size_t orphans;          /* tasks waiting for their worker to come back */
    size_t parked;           /* results waiting for their worker's hello */
} tasks_counts_t;
tasks_counts_t tasks_counts(const tasks_t *self);

/* Reads what is waiting on the reports socket (at most a bounded number
   of messages, so the loop's other work is not starved) and acts on each.
   curve: the socket has a ZAP handler, so a worker's reports count only
   from the key that registered it, and only while that key is in the
   workers list (a revoked key is refused from its next report).

   A result, start or output counts only from the worker that holds that
   attempt of the task (or held it until it was taken back, and it has not
   gone out again: its success still counts). Anything else is refused
   (event=report_refused, rate-limited) and changes nothing, or, for an
   attempt that is over, a duplicate (with CURVE only from the key that
   attempt was sent to, proven by its claim token: refused otherwise).
   After a master restart, results from a worker not registered yet for
   tasks that wait for a claim are kept (bounded; for a task found
   queued, with CURVE, only with the attempt's claim token: claim.h)
   until it registers with the same key, then judged (tasks_claim); they
   are duplicates if it does not within the recovery grace. */
void tasks_read_reports(tasks_t *self, void *reports, bool curve, int64_t now);

/* After the allowlists were reloaded: every live worker whose key is no
   longer in the workers list is lost now (its tasks go back to the
   queue, its pipe is closed), why=key_revoked. */
void tasks_keys_reloaded(tasks_t *self, int64_t now);

/* Hands queued tasks to workers with credit (round-robin). First lets
   back into the queue the tasks whose requeue is now written
   (tasks_requeues_written) and, once the rejoin window is over, those
   found queued at start. Called after every step of the loop that may
   complete a commit. */
void tasks_dispatch(tasks_t *self, int64_t now);

/* A task taken back from a worker (a recall's give-back, a lease run
   out, a worker lost; a retry once its backoff is over) is parked
   (SCHED_PARK_COMMIT) until the commit of its requeue is written
   (journal_written): this queues again those whose commit is, O(1) when
   none is. For a caller that lists
   waits right after a flush (api.c, `ztask tasks --waiting`). */
void tasks_requeues_written(tasks_t *self);

/* Reads the next specs ahead from the store when the last read-ahead is
   half used (tasks loaded at a restart or requeued have their specs only
   there): call it while the writer thread is idle (journal_idle), so the
   dispatch that needs them does not wait for a commit. Reads the store. */
void tasks_read_ahead(tasks_t *self);

/* Liveness, pings, leases, orphans past their grace, tasks no worker can
   take: every ~100 ms. A longer gap since the last call is the master's
   own stall: liveness, leases and the grace move on by it
   (event=master_stalled), so that its silence is not held against the
   workers. */
void tasks_timers(tasks_t *self, int64_t now);

/* The tasks of a committed submit enter job (the queue, or cancelled with
   their job); their specs move from p to the scheduler. */
void tasks_enter(tasks_t *self, job_t *job, pending_submit_t *p);

/* What a hello says the worker holds (borrowed from the request). */
typedef struct {
    const proto_task_ref_t *running;   /* still running or queued there */
    int nrunning;
    const proto_task_ref_t *ended;     /* ended lately, results sent */
    int nended;
} tasks_held_t;

/* Before a hello registers it: w is the registry's record of that name
   (NULL: none). When w is the very process saying hello (host, pid,
   key), a dead w did not crash (the crashes charged to its tasks at its
   loss are taken back), and a live w lost its pipe: what it holds and
   does not list in running is lost in that pipe and taken back, except
   what it lists as ended, which stays while its result comes. Returns
   true in that last case (a live worker registering again). */
bool tasks_rejoin(tasks_t *self, worker_t *w, const char *host, int pid, const char *key,
                  const tasks_held_t *held, int64_t now);

/* Gives w (just registered) the tasks its hello lists as running or ended
   that wait for it: from before a master restart (orphans sent to its
   name), or dispatched before it and never recorded (queued since, one
   attempt below the claim; see ASSIGN_WRITE_MS in journal.h), which with
   CURVE it claims only with that attempt's claim token for its key
   (claim.h; event=claim_refused otherwise, the task stays queued).
   Anything else it runs is stale. A task it ended stays its own while its result
   comes, for recovery_grace_ms, then runs again
   (event=result_not_delivered). Then judges the results w sent before
   this hello, kept for it (those that came with w's key; see
   tasks_read_reports). Returns how many tasks its hello claimed. */
int tasks_claim(tasks_t *self, worker_t *w, const tasks_held_t *held, int64_t now);

/* The attempts w's hello listed (running or ended) that w holds now
   (claimed, see tasks_claim) and whose results have not come: a worker
   that kept the results of those that ended sends them again when the
   hello's reply names these (its "resend"). Those it listed running may
   have ended since it made the hello (a hello can wait in its socket for
   the next master), their results gone to the master it had lost. At
   most PROTO_MAX_ENDED, those listed ended first; the caller frees them (proto_refs_free); NULL
   with *n 0 when none. */
proto_task_ref_t *tasks_unreported(const tasks_t *self, const worker_t *w,
                                   const tasks_held_t *held, int *n);

/* Records that job has finished, if it just has (jobs_check_finished),
   and judges again the tasks of the jobs that wait for it: the one way a
   job finishes. */
void tasks_check_finished(tasks_t *self, job_t *job);

/* A finished task to run again (`ztask retry`): what the store has of it. */
typedef struct {
    int64_t id;
    int32_t priority;
    int cls;                 /* its class (sched_class of its needs) */
    int attempt;             /* the attempt that ended it: the next is attempt + 1 */
    int retries;             /* its spec's retries: the new attempt has them all again */
    int64_t spec_bytes;
    int64_t index;           /* its index in its job */
    proto_state_t state;     /* FAILED, CANCELLED, or DEP_FAILED (a dependant revived) */
} tasks_retry_t;

/* Puts a failed or cancelled task of job back in the queue (journalled);
   the caller reopens the job (jobs_reopen) once its tasks are back. A
   task of a job that depends on others waits for them again (parked,
   judged now: a dep_failed one revived by a retry of its parent waits
   for that parent's new end); a task that others wait for task by task
   (--after-each) is no longer counted as ended. */
void tasks_retry(tasks_t *self, job_t *job, const tasks_retry_t *task);

/* What `ztask retry` (and the dashboard's Retry) puts back: the failed
   and/or cancelled tasks of a job (both when neither is set), of some
   indexes (any order; NULL = every index), and always its dep_failed ones
   (they never ran). Borrowed for the call. */
typedef struct {
    bool failed, cancelled;
    const int64_t *indexes;
    int nindexes;
} tasks_retry_pick_t;

/* The tasks a retry selected (tasks_retry_select), and their spec bytes,
   for the caller's quota check before tasks_retry_apply. */
typedef struct {
    tasks_retry_t *v;
    size_t n, cap;
    int64_t bytes;
} tasks_retry_set_t;

/* Reads from the store (flushed by the caller when it must see the
   latest ends) which of job's tasks pick selects, into *set (zeroed by
   the caller; tasks_retry_set_free frees it). Returns 0, or -1 (store_error
   says why). Changes nothing. */
int tasks_retry_select(tasks_t *self, const job_t *job, const tasks_retry_pick_t *pick,
                       tasks_retry_set_t *set);

/* Puts set's tasks back (tasks_retry); when there were any, reopens the
   job and revives what gave up on it: the dep_failed tasks of the jobs
   that depend on it, theirs in turn. Journalled, not flushed. Returns
   how many of job's tasks went back. */
int64_t tasks_retry_apply(tasks_t *self, job_t *job, const tasks_retry_set_t *set);

void tasks_retry_set_free(tasks_retry_set_t *set);

/* Holds (hold true) or releases one task: a queued task held is parked
   (not dispatched) until released; one on a worker is not held (it
   runs to its end). Journalled; returns 1 when it changed, else 0. */
int tasks_hold(tasks_t *self, sched_task_t *t, bool hold);

/* Holds a job (its queued tasks, and every task of it queued later,
   until released) or releases it (every held task of it, those held
   alone too). Journalled; returns how many tasks changed. */
int64_t tasks_hold_job(tasks_t *self, job_t *job, bool hold);

/* Gives every unfinished task of job that priority (queued ones take
   their new place in the queue at once). Journalled; returns how many
   were queued. */
int64_t tasks_set_priority(tasks_t *self, job_t *job, int32_t priority);

/* Sets job's --max-running (0 = no limit); a higher one lets tasks
   parked at the old limit out at once. Journalled. */
void tasks_set_limit(tasks_t *self, job_t *job, int max_running);

/* Cancels one unfinished task: a queued one (or an orphan not claimed)
   ends now, one on a worker gets an abort and ends with its result. */
void tasks_cancel(tasks_t *self, sched_task_t *t);

/* Cancels every unfinished task of a job (jobs_cancel first); returns how
   many. */
int64_t tasks_cancel_job(tasks_t *self, job_t *job);

/* Whether a live worker (not draining) can take tasks of class cls. */
bool tasks_class_served(tasks_t *self, int cls);

/* The classes (their keys, borrowed) with tasks ready to run that no live
   worker can take now, into keys (room for max); returns how many. */
int tasks_unrunnable(tasks_t *self, const char **keys, int max);

/* Why a task sent `attempt` times (PROTO_MAX_ATTEMPT) goes out no more,
   into buf: its error when it fails so, and what `ztask tasks --waiting`
   says of it before (why.c). */
void tasks_attempts_exhausted(int attempt, char *buf, size_t len);

#endif
