/*  waiters: requests held until their job finishes (see waiters.h). */
#include "waiters.h"

#include "jobs.h"

#include "../common/util.h"
#include "../common/zmqx.h"

#include <stdlib.h>

struct waiters {
    const jobs_t *jobs;      /* borrowed */
    waiter_t *list;          /* newest first */
    size_t n;
};

waiters_t *waiters_new(const jobs_t *jobs)
{
    waiters_t *self = xcalloc(1, sizeof *self);
    self->jobs = jobs;
    return self;
}

void waiter_free(waiter_t **p)
{
    if (!p || !*p)
        return;
    zmqx_frames_free(&(*p)->envelope);
    free(*p);
    *p = NULL;
}

void waiters_destroy(waiters_t **p)
{
    if (!p || !*p)
        return;
    waiters_t *self = *p;
    while (self->list) {
        waiter_t *w = self->list;
        self->list = w->next;
        waiter_free(&w);
    }
    free(self);
    *p = NULL;
}

bool waiters_hold(waiters_t *self, const zmqx_frames_t *env, proto_req_type_t type,
                  int64_t job_id, int64_t accepted, int wait_ms, int64_t now)
{
    if (wait_ms <= 0 || job_id <= 0 || self->n >= MAX_WAITERS)
        return false;
    const job_t *job = jobs_get(self->jobs, job_id);
    if (type == PROTO_REQ_STATUS && (!job || job->finished > 0))
        return false;
    waiter_t *w = xcalloc(1, sizeof *w);
    zmqx_frames_copy(&w->envelope, env);
    w->type = type;
    w->job = job_id;
    w->accepted = accepted;
    /* A job finished already is due now: the loop's next poll must not
       sleep on this request. */
    w->deadline = job && job->finished > 0 ? now : now + wait_ms;
    w->next = self->list;
    self->list = w;
    self->n++;
    return true;
}

static bool s_due(const waiters_t *self, const waiter_t *w, int64_t now, bool all_now)
{
    if (all_now || now >= w->deadline)
        return true;
    const job_t *job = jobs_get(self->jobs, w->job);
    return !job || job->finished > 0;
}

bool waiters_any_due(const waiters_t *self, int64_t now, bool all_now)
{
    for (const waiter_t *w = self->list; w; w = w->next)
        if (s_due(self, w, now, all_now))
            return true;
    return false;
}

waiter_t *waiters_take_due(waiters_t *self, int64_t now, bool all_now)
{
    waiter_t *due = NULL, **tail = &due;
    waiter_t **pp = &self->list;
    while (*pp) {
        waiter_t *w = *pp;
        if (!s_due(self, w, now, all_now)) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        self->n--;
        w->next = NULL;
        *tail = w;
        tail = &w->next;
    }
    return due;
}

int64_t waiters_deadline(const waiters_t *self)
{
    int64_t due = -1;
    for (const waiter_t *w = self->list; w; w = w->next)
        if (due < 0 || w->deadline < due)
            due = w->deadline;
    return due;
}
