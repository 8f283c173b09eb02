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

/* Retention runs at least this often (an age limit passes with no event). */
#define RETENTION_EVERY_MS 5000

struct jobs {
    imap_t *map;             /* id -> job_t */
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
    }
    assert(!"a task state a job does not count");
    return &job->failed;
}

static void s_check(const job_t *job)
{
    assert(job->queued >= 0 && job->running >= 0 && job->done >= 0 && job->failed >= 0
           && job->cancelled_n >= 0);
    assert(job->total
           == job->queued + job->running + job->done + job->failed + job->cancelled_n);
    (void) job;
}

void job_add(job_t *job, proto_state_t to, int64_t n)
{
    *s_counter(job, to) += n;
    job->total += n;
    s_check(job);
}

void job_move(job_t *job, proto_state_t from, proto_state_t to, int64_t n)
{
    *s_counter(job, from) -= n;
    *s_counter(job, to) += n;
    s_check(job);
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
    free(self);
    *p = NULL;
}

job_t *jobs_create(jobs_t *self, int64_t id, const char *name, double created)
{
    job_t *job = xcalloc(1, sizeof *job);
    job->id = id;
    job->name = xstrdup(name);
    job->created = created;
    imap_put(self->map, job->id, job);
    return job;
}

static int s_load_job(const store_job_row_t *row, void *arg)
{
    jobs_t *self = arg;
    job_t *job = jobs_create(self, row->id, row->name, row->created);
    job->closed = row->closed;
    job->finished = row->finished;
    return 0;
}

static int s_load_count(int64_t id, proto_state_t state, int64_t count, void *arg)
{
    job_t *job = jobs_get(arg, id);
    if (job)
        job_add(job, state, count);
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
                 " failed=%" PRId64 " cancelled=%" PRId64,
                 job->id, job->total, job->done, job->failed, job->cancelled_n);
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
