/*  jobs: the master's jobs in memory (what `ztask status` shows without a
    query to SQLite), their task counters, and retention (--keep-results).

    A job counts each of its tasks in exactly one counter, by state:

        total == queued + running + done + failed + cancelled_n + dep_failed

    where `running` counts tasks on a worker, ASSIGNED (sent, not started)
    or RUNNING alike, and the tasks of an orphan (on a worker before a
    master restart, waiting for it to claim them). Only job_add and
    job_move change the counters, and both check the invariant (and that
    no counter is negative) with assert().

    Owners: a job belongs to the client that submitted it (its key, from
    auth.h; "" = nobody: a master without CURVE, or a job from before
    owners). What each owner has queued or running, tasks and the bytes
    of their specs, is its usage (quotas are checked against it, api.c):
    job_add and job_move keep it too, with the job's backlog_bytes, so
    the invariant grows by

        backlog_bytes == 0 when queued + running == 0, never negative
        usage.tasks == the sum of queued + running over the owner's jobs

    The bytes of a task travel with it (sched_task_t.spec_len): every
    move out of the unfinished states takes them back. The builds keep assert() on in
    every variant, release included (the Makefile never defines NDEBUG):
    a counter out of step is a bug that would show later as a job that
    never finishes (or finishes early), far from its cause; the check is
    a few integer additions per task state change, lost in the noise of
    the hash lookup that finds the job.

    Steering (ztask hold, limit): a held job's queued tasks, and every
    task of it queued later, are parked (sched.h) until it is released;
    the master starts no task of a job with max_running > 0 while that
    many of its tasks run (a limit lowered lets the running ones finish):
    a task popped for dispatch beyond it is parked instead, its id in the
    job's `capped` list, and one is let out of that list each time a task
    of the job stops running (tasks.c does both). Parked
    tasks stay counted as queued: held and capped are not states but
    reasons to wait, so the counters' invariant above is unchanged, and

        every id in capped names a task parked SCHED_PARK_CAPPED, or one
        gone since (finished, cancelled: skipped when met)

    Finished jobs are forgotten (their rows deleted) by `ztask forget` or
    by retention: --keep-results keeps at most keep_jobs finished jobs,
    none older than keep_secs.

    Ownership: job records belong to the jobs_t; pointers it returns are
    borrowed until jobs_forget or jobs_destroy.
    Threads: main loop only.
*/
#ifndef ZTASK_JOBS_H
#define ZTASK_JOBS_H

#include "journal.h"
#include "store.h"

#include "../proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What one owner has queued or running, and in submits not yet
   committed (reserved by api.c so that batches sent back to back cannot
   pass a quota between two commits). Belongs to the jobs_t. */
typedef struct owner_usage {
    char *owner;             /* a client's key; "" = nobody */
    int64_t tasks, bytes;    /* tasks queued or running, and their specs' bytes */
    int64_t pending_tasks, pending_bytes;   /* in submits waiting for their commit */
    struct owner_usage *next;
} owner_usage_t;

typedef struct job {
    int64_t id;
    char *name;
    char *owner;             /* who submitted it: a client's key; "" = nobody */
    owner_usage_t *usage;    /* its owner's (borrowed from the jobs_t) */
    bool closed;             /* every batch received */
    bool closing;            /* a batch that closes it waits for its commit */
    bool cancelled;          /* cancel asked: no further batches accepted */
    /* Task counters: see the invariant at the top of this file. */
    int64_t total, queued, running, done, failed, cancelled_n;
    int64_t dep_failed;      /* never ran: a job it depends on did not succeed (deps.h) */
    int64_t indexed;         /* default indexes handed out: batches waiting
                                for their commit count here, not in total */
    int64_t backlog_bytes;   /* spec bytes of its tasks queued or running */
    double created, finished;
    bool held;               /* ztask hold JOB: its queued tasks are parked */
    int max_running;         /* at most this many tasks running; 0 = no limit */
    struct {                 /* ids of its tasks parked at the limit, oldest first */
        int64_t *ids;
        size_t head, n, cap;
    } capped;
} job_t;

/* Counts n new tasks of job in state `to` (total grows with them); bytes:
   their specs' size (counted in the backlog when `to` is unfinished). */
void job_add(job_t *job, proto_state_t to, int64_t n, int64_t bytes);

/* Moves n of job's tasks (with bytes of specs) from one state's counter
   to another's (ASSIGNED and RUNNING share one: a move between them
   changes nothing); the backlog and the owner's usage follow a move
   into or out of the unfinished states. */
void job_move(job_t *job, proto_state_t from, proto_state_t to, int64_t n, int64_t bytes);

/* Reserves (positive) or releases (negative) tasks and bytes of a submit
   waiting for its commit in u's pending counts. */
void usage_pending(owner_usage_t *u, int64_t tasks, int64_t bytes);

/* Whether tasks more tasks of bytes spec bytes would take u past a quota
   (quota_tasks, quota_bytes; 0 = no limit), beside what it has queued or
   running and what waits for a commit: what is NULL when they fit, else
   "tasks" or "bytes", with what u has, what would be added and the limit. */
typedef struct {
    const char *what;
    int64_t have, add, limit;
} usage_over_t;
usage_over_t usage_over(const owner_usage_t *u, int64_t tasks, int64_t bytes,
                        int64_t quota_tasks, int64_t quota_bytes);

typedef struct jobs jobs_t;

/* journal (borrowed) records what happens to jobs. keep_jobs / keep_secs:
   retention (0 = no limit). */
jobs_t *jobs_new(journal_t *journal, int keep_jobs, double keep_secs);
void jobs_destroy(jobs_t **p);

/* Rebuilds the jobs and their counters from store (at start-up). Returns
   0, or -1 (store_error says why). */
int jobs_load(jobs_t *self, store_t *store);

/* A new job record (its rows are the caller's to write), as the store
   has it: job->id > 0, owner NULL for nobody. Borrowed. */
job_t *jobs_create(jobs_t *self, const store_job_new_t *job);

/* The usage of owner ("" = nobody; NULL too), made on first use. Owners
   are the keys of the allowlists that ever submitted: few, so a list.
   Borrowed until jobs_destroy. */
owner_usage_t *jobs_usage(jobs_t *self, const char *owner);

/* The job of that id, or NULL. Borrowed. */
job_t *jobs_get(const jobs_t *self, int64_t id);

/* Iterates the jobs (any order): *pos starts at 0; NULL at the end. No
   job may be created or forgotten during an iteration. */
job_t *jobs_next(const jobs_t *self, size_t *pos);
size_t jobs_count(const jobs_t *self);

/* Whether no task of job may start now: it runs its --max-running.
   NULL: no. */
bool job_at_limit(const job_t *job);

/* The capped list (see the top): appends an id; takes the oldest (false
   when empty). */
void job_capped_push(job_t *job, int64_t task);
bool job_capped_pop(job_t *job, int64_t *task);

/* Marks a job cancelled, and closed (journalled) if it was not. */
void jobs_cancel(jobs_t *self, job_t *job);

/* Records that a job has finished, if it just has (closed, nothing queued
   or running): journalled, logged, and retention runs soon. */
void jobs_check_finished(jobs_t *self, job_t *job);

/* A job that had finished has tasks again (`ztask retry`): it is running
   again (finished 0, journalled) and no longer counts as cancelled. Call
   after its tasks are back in the queue. */
void jobs_reopen(jobs_t *self, job_t *job);

/* Deletes a finished job and its results (journal + memory); frees job. */
void jobs_forget(jobs_t *self, job_t *job);

/* Applies retention when a job has finished since the last time, or every
   5 s (an age limit passes with no event): forgets finished jobs beyond
   the count or age. now: monotonic ms. */
void jobs_retention(jobs_t *self, int64_t now);

#endif
