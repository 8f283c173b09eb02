/*  jobs: job records, their counters and retention (see jobs.h). */
#include "jobs.h"

#include "journal.h"
#include "store.h"

#include "../common/clock.h"
#include "../common/imap.h"
#include "../common/log.h"
#include "../common/util.h"

#include <assert.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* Retention runs at least this often (an age limit passes with no event). */
#define RETENTION_EVERY_MS 5000

struct jobs {
    imap_t *map;             /* id -> job_t */
    owner_usage_t *owners;   /* every owner that has had a job, owned */
    journal_t *journal;      /* borrowed */
    int keep_jobs;
    double keep_secs;
    int64_t last_retention;
    bool retention_due;      /* a job finished: apply --keep-results soon */
};

/* ---- counters: the only code that changes them ---- */

static int64_t *s_counter(job_t *job, proto_state_t st)
{
    switch (st) {
    case PROTO_ST_QUEUED: return &job->queued;
    case PROTO_ST_ASSIGNED:
    case PROTO_ST_RUNNING: return &job->running;
    case PROTO_ST_DONE: return &job->done;
    case PROTO_ST_FAILED: return &job->failed;
    case PROTO_ST_CANCELLED: return &job->cancelled_n;
    case PROTO_ST_DEP_FAILED: return &job->dep_failed;
    }
    assert(!"a task state a job does not count");
    return &job->failed;
}

static bool s_unfinished(proto_state_t st)
{
    return st == PROTO_ST_QUEUED || st == PROTO_ST_ASSIGNED || st == PROTO_ST_RUNNING;
}

static void s_check(const job_t *job)
{
    assert(job->queued >= 0 && job->running >= 0 && job->done >= 0 && job->failed >= 0
           && job->cancelled_n >= 0 && job->dep_failed >= 0);
    assert(job->total == job->queued + job->running + job->done + job->failed
                             + job->cancelled_n + job->dep_failed);
    assert(job->backlog_bytes >= 0
           && (job->queued + job->running > 0 || job->backlog_bytes == 0));
    assert(job->usage->tasks >= job->queued + job->running
           && job->usage->bytes >= job->backlog_bytes);
    (void) job;
}

/* n tasks with bytes of specs enter (sign 1) or leave (-1) the backlog. */
static void s_backlog(job_t *job, int sign, int64_t n, int64_t bytes)
{
    job->backlog_bytes += sign * bytes;
    job->usage->tasks += sign * n;
    job->usage->bytes += sign * bytes;
}

void job_add(job_t *job, proto_state_t to, int64_t n, int64_t bytes)
{
    *s_counter(job, to) += n;
    job->total += n;
    if (s_unfinished(to))
        s_backlog(job, 1, n, bytes);
    s_check(job);
}

void job_move(job_t *job, proto_state_t from, proto_state_t to, int64_t n, int64_t bytes)
{
    *s_counter(job, from) -= n;
    *s_counter(job, to) += n;
    if (s_unfinished(from) != s_unfinished(to))
        s_backlog(job, s_unfinished(to) ? 1 : -1, n, bytes);
    s_check(job);
}

void usage_pending(owner_usage_t *u, int64_t tasks, int64_t bytes)
{
    u->pending_tasks += tasks;
    u->pending_bytes += bytes;
    assert(u->pending_tasks >= 0 && u->pending_bytes >= 0);
}

usage_over_t usage_over(const owner_usage_t *u, int64_t tasks, int64_t bytes,
                        int64_t quota_tasks, int64_t quota_bytes)
{
    if (quota_tasks && u->tasks + u->pending_tasks + tasks > quota_tasks)
        return (usage_over_t){.what = "tasks",
                              .have = u->tasks + u->pending_tasks,
                              .add = tasks,
                              .limit = quota_tasks};
    if (quota_bytes && u->bytes + u->pending_bytes + bytes > quota_bytes)
        return (usage_over_t){.what = "bytes",
                              .have = u->bytes + u->pending_bytes,
                              .add = bytes,
                              .limit = quota_bytes};
    return (usage_over_t){0};
}

/* ---- the set of jobs ---- */

jobs_t *jobs_new(journal_t *journal, int keep_jobs, double keep_secs)
{
    jobs_t *self = xcalloc(1, sizeof *self);
    self->map = imap_new();
    self->journal = journal;
    self->keep_jobs = keep_jobs;
    self->keep_secs = keep_secs;
    return self;
}

static void s_job_free(job_t *job)
{
    if (job) {
        free(job->name);
        free(job->owner);
        free(job->capped.ids);
        free(job);
    }
}

void jobs_destroy(jobs_t **p)
{
    if (!p || !*p)
        return;
    jobs_t *self = *p;
    size_t pos = 0;
    job_t *job;
    while ((job = imap_next(self->map, &pos, NULL)))
        s_job_free(job);
    imap_destroy(&self->map);
    while (self->owners) {
        owner_usage_t *next = self->owners->next;
        free(self->owners->owner);
        free(self->owners);
        self->owners = next;
    }
    free(self);
    *p = NULL;
}

owner_usage_t *jobs_usage(jobs_t *self, const char *owner)
{
    if (!owner)
        owner = "";
    for (owner_usage_t *u = self->owners; u; u = u->next)
        if (strcmp(u->owner, owner) == 0)
            return u;
    owner_usage_t *u = xcalloc(1, sizeof *u);
    u->owner = xstrdup(owner);
    u->next = self->owners;
    self->owners = u;
    return u;
}

job_t *jobs_create(jobs_t *self, const store_job_new_t *row)
{
    job_t *job = xcalloc(1, sizeof *job);
    job->id = row->id;
    job->name = xstrdup(row->name);
    job->usage = jobs_usage(self, row->owner);
    job->owner = xstrdup(job->usage->owner);
    job->created = row->created;
    job->max_running = row->max_running;
    imap_put(self->map, job->id, job);
    return job;
}

static int s_load_job(const store_job_row_t *row, void *arg)
{
    jobs_t *self = arg;
    job_t *job = jobs_create(self, &(store_job_new_t){.id = row->id,
                                                      .name = row->name,
                                                      .owner = row->owner,
                                                      .created = row->created,
                                                      .max_running = row->max_running});
    job->closed = row->closed;
    job->held = row->held;
    job->finished = row->finished;
    return 0;
}

static int s_load_count(int64_t id, proto_state_t state, int64_t count, int64_t bytes, void *arg)
{
    job_t *job = jobs_get(arg, id);
    if (job)
        job_add(job, state, count, bytes);
    return 0;
}

int jobs_load(jobs_t *self, store_t *store)
{
    if (store_jobs_each(store, s_load_job, self) != 0
        || store_counts_each(store, s_load_count, self) != 0)
        return -1;
    return 0;
}

job_t *jobs_get(const jobs_t *self, int64_t id)
{
    return imap_get(self->map, id);
}

job_t *jobs_next(const jobs_t *self, size_t *pos)
{
    return imap_next(self->map, pos, NULL);
}

size_t jobs_count(const jobs_t *self)
{
    return imap_size(self->map);
}

bool job_at_limit(const job_t *job)
{
    return job && job->max_running > 0 && job->running >= job->max_running;
}

void job_capped_push(job_t *job, int64_t task)
{
    if (job->capped.head + job->capped.n == job->capped.cap) {
        /* Slide the live part to the front, or grow. */
        if (job->capped.head > job->capped.cap / 2) {
            memmove(job->capped.ids, job->capped.ids + job->capped.head,
                    job->capped.n * sizeof(int64_t));
            job->capped.head = 0;
        } else {
            job->capped.cap = job->capped.cap ? job->capped.cap * 2 : 64;
            job->capped.ids = xrealloc(job->capped.ids, job->capped.cap * sizeof(int64_t));
        }
    }
    job->capped.ids[job->capped.head + job->capped.n++] = task;
}

bool job_capped_pop(job_t *job, int64_t *task)
{
    if (!job->capped.n)
        return false;
    *task = job->capped.ids[job->capped.head++];
    if (--job->capped.n == 0)
        job->capped.head = 0;
    return true;
}

void jobs_cancel(jobs_t *self, job_t *job)
{
    job->cancelled = true;
    if (!job->closed) {
        job->closed = true;
        journal_add(self->journal, &(jop_t){.type = J_JOB_CLOSE, .job = job->id});
    }
}

void jobs_check_finished(jobs_t *self, job_t *job)
{
    if (job->closed && job->queued == 0 && job->running == 0 && job->finished == 0) {
        job->finished = clock_wall();
        journal_add(self->journal,
                    &(jop_t){.type = J_JOB_FINISHED, .job = job->id, .t = job->finished});
        self->retention_due = true;
        log_info("event=job_finished job=%" PRId64 " total=%" PRId64 " done=%" PRId64
                 " failed=%" PRId64 " cancelled=%" PRId64 " dep_failed=%" PRId64,
                 job->id, job->total, job->done, job->failed, job->cancelled_n,
                 job->dep_failed);
    }
}

void jobs_reopen(jobs_t *self, job_t *job)
{
    assert(job->queued + job->running > 0);
    job->cancelled = false;
    if (job->finished > 0) {
        job->finished = 0;
        journal_add(self->journal, &(jop_t){.type = J_JOB_FINISHED, .job = job->id, .t = 0});
        log_info("event=job_reopened job=%" PRId64 " queued=%" PRId64, job->id, job->queued);
    }
}

void jobs_forget(jobs_t *self, job_t *job)
{
    journal_add(self->journal, &(jop_t){.type = J_JOB_DELETE, .job = job->id});
    imap_remove(self->map, job->id);
    log_info("event=job_forgotten job=%" PRId64 " tasks=%" PRId64, job->id, job->total);
    bool big = job->total > 10000;
    s_job_free(job);
    /* A big job's task records were many small allocations: hand the freed
       pages back to the system so RSS returns near its baseline. */
    if (big)
        malloc_trim(0);
}

static int s_cmp_finished(const void *a, const void *b)
{
    const job_t *x = *(job_t *const *) a, *y = *(job_t *const *) b;
    return x->finished < y->finished ? 1 : x->finished > y->finished ? -1 : 0;
}

void jobs_retention(jobs_t *self, int64_t now)
{
    if (!self->retention_due && now - self->last_retention < RETENTION_EVERY_MS)
        return;
    self->retention_due = false;
    self->last_retention = now;
    if (!self->keep_jobs && self->keep_secs <= 0)
        return;
    size_t n = 0, pos = 0;
    job_t **done = xcalloc(imap_size(self->map) + 1, sizeof(job_t *));
    job_t *job;
    while ((job = imap_next(self->map, &pos, NULL)))
        if (job->finished > 0)
            done[n++] = job;
    qsort(done, n, sizeof(job_t *), s_cmp_finished);   /* newest first */
    double wall = clock_wall();
    for (size_t i = 0; i < n; i++) {
        bool too_many = self->keep_jobs && i >= (size_t) self->keep_jobs;
        bool too_old = self->keep_secs > 0 && wall - done[i]->finished > self->keep_secs;
        if (too_many || too_old)
            jobs_forget(self, done[i]);
    }
    free(done);
}
