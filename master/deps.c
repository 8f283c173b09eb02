/*  deps: dependencies between jobs (see deps.h). */
#include "deps.h"

#include "jobs.h"
#include "store.h"

#include "../common/imap.h"
#include "../common/util.h"

#include <assert.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable list of ids. */
typedef struct {
    int64_t *v;
    size_t n, cap;
} ids_t;

static void s_ids_push(ids_t *ids, int64_t id)
{
    if (ids->n == ids->cap) {
        ids->cap = ids->cap ? ids->cap * 2 : 4;
        ids->v = xrealloc(ids->v, ids->cap * sizeof *ids->v);
    }
    ids->v[ids->n++] = id;
}

/* A job that depends on others. */
typedef struct {
    proto_dep_t *deps;
    int ndeps;
    imap_t *held;             /* index -> ids_t * of its tasks that wait */
    size_t nheld;             /* tasks in held */
} child_t;

/* A job others depend on. */
typedef struct {
    ids_t children;           /* job ids, each once */
    imap_t *ends;             /* EACH parents: index -> state + 1 of its ended tasks */
} parent_t;

struct deps {
    jobs_t *jobs;             /* borrowed */
    imap_t *children;         /* job -> child_t */
    imap_t *parents;          /* job -> parent_t */
};

deps_t *deps_new(jobs_t *jobs)
{
    deps_t *self = xcalloc(1, sizeof *self);
    self->jobs = jobs;
    self->children = imap_new();
    self->parents = imap_new();
    return self;
}

static void s_held_free(imap_t **held)
{
    size_t pos = 0;
    ids_t *ids;
    while (*held && (ids = imap_next(*held, &pos, NULL))) {
        free(ids->v);
        free(ids);
    }
    imap_destroy(held);
}

static void s_child_free(child_t *c)
{
    free(c->deps);
    s_held_free(&c->held);
    free(c);
}

static void s_parent_free(parent_t *p)
{
    free(p->children.v);
    imap_destroy(&p->ends);
    free(p);
}

void deps_destroy(deps_t **p)
{
    if (!p || !*p)
        return;
    deps_t *self = *p;
    size_t pos = 0;
    void *v;
    while ((v = imap_next(self->children, &pos, NULL)))
        s_child_free(v);
    pos = 0;
    while ((v = imap_next(self->parents, &pos, NULL)))
        s_parent_free(v);
    imap_destroy(&self->children);
    imap_destroy(&self->parents);
    free(self);
    *p = NULL;
}

/* ---- recording ---- */

static int s_end_row(int64_t index, proto_state_t state, void *arg)
{
    imap_put(arg, index, (void *) (uintptr_t) (state + 1));
    return 0;
}

static parent_t *s_parent(deps_t *self, int64_t job)
{
    parent_t *p = imap_get(self->parents, job);
    if (!p) {
        p = xcalloc(1, sizeof *p);
        imap_put(self->parents, job, p);
    }
    return p;
}

int deps_add(deps_t *self, int64_t job, const proto_dep_t *deps, int n, store_t *store)
{
    if (n <= 0)
        return 0;
    child_t *c = imap_get(self->children, job);
    if (!c) {
        c = xcalloc(1, sizeof *c);
        c->held = imap_new();
        imap_put(self->children, job, c);
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        bool known = false;
        for (int k = 0; k < c->ndeps && !known; k++)
            known = c->deps[k].job == deps[i].job && c->deps[k].kind == deps[i].kind;
        if (known)
            continue;
        c->deps = xrealloc(c->deps, (size_t) (c->ndeps + 1) * sizeof *c->deps);
        c->deps[c->ndeps++] = deps[i];
        parent_t *p = s_parent(self, deps[i].job);
        bool listed = false;
        for (size_t k = 0; k < p->children.n && !listed; k++)
            listed = p->children.v[k] == job;
        if (!listed)
            s_ids_push(&p->children, job);
        /* A parent's task ends are read once; deps_task_ended keeps them. */
        if (deps[i].kind == PROTO_DEP_EACH && !p->ends) {
            p->ends = imap_new();
            if (store_task_ends_each(store, deps[i].job, s_end_row, p->ends) != 0)
                rc = -1;
        }
    }
    return rc;
}

typedef struct {
    deps_t *self;
    store_t *store;
    int rc;
} load_t;

static int s_load_row(int64_t job, const proto_dep_t *dep, void *arg)
{
    load_t *l = arg;
    if (deps_add(l->self, job, dep, 1, l->store) != 0)
        l->rc = -1;
    return 0;
}

int deps_load(deps_t *self, store_t *store)
{
    load_t l = {self, store, 0};
    /* deps_add reads the store from inside this iteration: another
       statement (task ends), which store.h allows. */
    if (store_deps_each(store, s_load_row, &l) != 0)
        return -1;
    return l.rc;
}

bool deps_has(const deps_t *self, int64_t job)
{
    return imap_get(self->children, job) != NULL;
}

/* ---- verdicts ---- */

/* Why an OK parent that finished did not succeed, into why. */
static void s_why_job(const job_t *p, char *why, size_t len)
{
    snprintf(why, len,
             "not run: job %" PRId64 " (--after) ended with %" PRId64 " failed, %" PRId64
             " cancelled, %" PRId64 " dep_failed",
             p->id, p->failed, p->cancelled_n, p->dep_failed);
}

static deps_verdict_t s_judge_one(const deps_t *self, const proto_dep_t *d, int64_t index,
                                  char *why, size_t len)
{
    const job_t *p = jobs_get(self->jobs, d->job);
    if (!p)
        return DEPS_RUN;   /* forgotten: it had finished, and was met (deps.h) */
    bool finished = p->finished > 0;
    switch (d->kind) {
    case PROTO_DEP_OK:
        if (!finished)
            return DEPS_WAIT;
        if (p->done == p->total)
            return DEPS_RUN;
        s_why_job(p, why, len);
        return DEPS_FAIL;
    case PROTO_DEP_ANY:
        return finished ? DEPS_RUN : DEPS_WAIT;
    case PROTO_DEP_EACH: {
        const parent_t *pp = imap_get(self->parents, d->job);
        uintptr_t end = pp && pp->ends && index != INT64_MIN
                            ? (uintptr_t) imap_get(pp->ends, index)
                            : 0;
        if (end) {
            proto_state_t st = (proto_state_t) (end - 1);
            if (st == PROTO_ST_DONE)
                return DEPS_RUN;
            snprintf(why, len, "not run: task %" PRId64 " of job %" PRId64 " (--after-each) %s",
                     index, d->job, proto_state_name(st));
            return DEPS_FAIL;
        }
        if (!finished)
            return DEPS_WAIT;
        snprintf(why, len, "not run: job %" PRId64 " (--after-each) has no task %" PRId64,
                 d->job, index);
        return DEPS_FAIL;
    }
    }
    return DEPS_RUN;
}

deps_verdict_t deps_judge(const deps_t *self, int64_t job, int64_t index, char *why,
                          size_t whylen)
{
    const child_t *c = imap_get(self->children, job);
    if (!c)
        return DEPS_RUN;
    /* One parent that can never be satisfied decides at once, even while
       others are still running (as Slurm does). */
    deps_verdict_t v = DEPS_RUN;
    for (int i = 0; i < c->ndeps; i++) {
        deps_verdict_t one = s_judge_one(self, &c->deps[i], index, why, whylen);
        if (one == DEPS_FAIL)
            return DEPS_FAIL;
        if (one == DEPS_WAIT)
            v = DEPS_WAIT;
    }
    return v;
}

bool deps_waits_for(const deps_t *self, int64_t job, int64_t index, proto_dep_t *out)
{
    const child_t *c = imap_get(self->children, job);
    char why[256];
    for (int i = 0; c && i < c->ndeps; i++)
        if (s_judge_one(self, &c->deps[i], index, why, sizeof why) == DEPS_WAIT) {
            *out = c->deps[i];
            return true;
        }
    return false;
}

/* ---- waiting tasks ---- */

void deps_hold(deps_t *self, int64_t job, int64_t index, int64_t task)
{
    child_t *c = imap_get(self->children, job);
    assert(c);   /* only a job with dependencies has tasks that wait */
    if (index == INT64_MIN)
        index = -1;
    ids_t *ids = imap_get(c->held, index);
    if (!ids) {
        ids = xcalloc(1, sizeof *ids);
        imap_put(c->held, index, ids);
    }
    s_ids_push(ids, task);
    c->nheld++;
}

bool deps_waiting(const deps_t *self, int64_t job)
{
    const child_t *c = imap_get(self->children, job);
    return c && c->nheld > 0;
}

/* Moves the held tasks of c with that index into out. */
static void s_take_index(child_t *c, int64_t index, ids_t *out)
{
    ids_t *ids = imap_remove(c->held, index);
    if (!ids)
        return;
    for (size_t i = 0; i < ids->n; i++)
        s_ids_push(out, ids->v[i]);
    assert(c->nheld >= ids->n);
    c->nheld -= ids->n;
    free(ids->v);
    free(ids);
}

/* Moves every held task of c into out. */
static void s_take_all(child_t *c, ids_t *out)
{
    size_t pos = 0;
    ids_t *ids;
    while ((ids = imap_next(c->held, &pos, NULL)))
        for (size_t i = 0; i < ids->n; i++)
            s_ids_push(out, ids->v[i]);
    s_held_free(&c->held);
    c->held = imap_new();
    c->nheld = 0;
}

int64_t *deps_task_ended(deps_t *self, int64_t job, int64_t index, proto_state_t state,
                         size_t *n)
{
    *n = 0;
    parent_t *p = imap_get(self->parents, job);
    if (!p || !p->ends)
        return NULL;
    imap_put(p->ends, index, (void *) (uintptr_t) (state + 1));
    ids_t out = {0};
    for (size_t i = 0; i < p->children.n; i++) {
        child_t *c = imap_get(self->children, p->children.v[i]);
        if (c)
            s_take_index(c, index, &out);
    }
    *n = out.n;
    return out.v;
}

void deps_task_reset(deps_t *self, int64_t job, int64_t index)
{
    parent_t *p = imap_get(self->parents, job);
    if (p && p->ends)
        imap_remove(p->ends, index);
}

int64_t *deps_job_ended(deps_t *self, int64_t job, size_t *n)
{
    *n = 0;
    parent_t *p = imap_get(self->parents, job);
    if (!p)
        return NULL;
    ids_t out = {0};
    for (size_t i = 0; i < p->children.n; i++) {
        child_t *c = imap_get(self->children, p->children.v[i]);
        if (c && c->nheld)
            s_take_all(c, &out);
    }
    *n = out.n;
    return out.v;
}

const int64_t *deps_children(const deps_t *self, int64_t job, int *n)
{
    const parent_t *p = imap_get(self->parents, job);
    *n = p ? (int) p->children.n : 0;
    return p && p->children.n ? p->children.v : NULL;
}

void deps_prune(deps_t *self)
{
    imap_t *maps[2] = {self->children, self->parents};
    for (int m = 0; m < 2; m++) {
        ids_t gone = {0};
        size_t pos = 0;
        int64_t id;
        while (imap_next(maps[m], &pos, &id))
            if (!jobs_get(self->jobs, id))
                s_ids_push(&gone, id);
        for (size_t i = 0; i < gone.n; i++) {
            void *v = imap_remove(maps[m], gone.v[i]);
            if (m == 0)
                s_child_free(v);
            else
                s_parent_free(v);
        }
        free(gone.v);
    }
}
