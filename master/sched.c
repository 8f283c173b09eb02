#include "sched.h"

#include "../common/imap.h"
#include "../common/util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* A heap entry: for the ready heap, key = priority; for the delayed heap,
   key = not_before. The id breaks ties (FIFO) and gen spots stale entries. */
typedef struct {
    int64_t key;
    int64_t id;
    uint32_t gen;
} entry_t;

typedef struct {
    entry_t *v;
    size_t n, cap;
    /* true: larger key first (priorities); false: smaller key first (times) */
    bool max;
} heap_t;

typedef struct {
    sched_class_t pub;
    heap_t ready;
} class_t;

struct sched {
    imap_t *tasks;
    class_t *classes;
    int nclasses;
    heap_t delayed;
    heap_t suspects;          /* ready tasks with crashes > 0, any class */
    /* Queued tasks out of the ready heaps (parked, or in a retry backoff:
       then in delayed too, under the same generation), keyed by priority
       as the ready heaps are. Never popped: only sched_walk reads it, so
       that listing why tasks wait (ztask tasks --waiting) finds the first
       ones in run order without a pass over every parked task. Costs a
       push per park or backoff (24 bytes an entry) and its share of the
       sweeps (s_compact, s_tidy_waiting) that lazy deletion needs:
       parking 1,000,000 tasks (a hold) took 300-380 ms against 100 ms
       without it, unparking them 420-450 ms against 300-345 (measured on
       a loaded 2-core machine; `ztask hold` of such a job took 0.5-0.6 s
       in all before). The sweeps that give its stale entries back cost
       ~60-70 ms more to cancel a held million, or to run one released
       (sched.c alone, 155-290 against 230-350 ms and 285-395 against
       360-490: noisy, loaded machine). */
    heap_t waiting;
    /* Entries pushed since the heaps were last swept of stale ones
       (s_compact): a requeued task leaves its old entry behind, dropped
       only when it reaches a top, so a client changing a queued job's
       priority (or holding and releasing it) again and again while
       nothing is dispatched grew the heaps without end. */
    size_t pushes;
    /* Records by their parked bits (index: the SCHED_PARK_* set, 0
       unused), kept by s_set_parked, so the metrics tell held from ready
       without a pass over every task. */
    size_t parked_n[SCHED_PARK_ALL + 1];
};

/* The one place a record's parked bits change. */
static void s_set_parked(sched_t *self, sched_task_t *t, unsigned parked)
{
    assert(parked <= SCHED_PARK_ALL);
    if (t->parked) {
        assert(self->parked_n[t->parked] > 0);
        self->parked_n[t->parked]--;
    }
    t->parked = (uint8_t) parked;
    if (parked)
        self->parked_n[parked]++;
}

static bool s_before(const heap_t *h, const entry_t *a, const entry_t *b)
{
    if (a->key != b->key)
        return h->max ? a->key > b->key : a->key < b->key;
    return a->id < b->id;
}

static void s_push(heap_t *h, entry_t e)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 1024;
        h->v = xrealloc(h->v, h->cap * sizeof(entry_t));
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!s_before(h, &e, &h->v[parent]))
            break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = e;
}

static entry_t s_pop(heap_t *h)
{
    entry_t top = h->v[0];
    entry_t last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const entry_t *bv = &last;
        if (l < h->n && s_before(h, &h->v[l], bv)) {
            best = l;
            bv = &h->v[l];
        }
        if (r < h->n && s_before(h, &h->v[r], bv))
            best = r;
        if (best == i)
            break;
        h->v[i] = h->v[best];
        i = best;
    }
    if (h->n)
        h->v[i] = last;
    /* Give memory back after a big job drains. */
    if (h->cap > 4096 && h->n < h->cap / 8) {
        h->cap /= 2;
        h->v = xrealloc(h->v, h->cap * sizeof(entry_t));
    }
    return top;
}

sched_t *sched_new(void)
{
    sched_t *self = xcalloc(1, sizeof *self);
    self->tasks = imap_new();
    self->delayed.max = false;
    self->suspects.max = true;
    self->waiting.max = true;
    sched_class(self, "fn");   /* class 0: anything goes */
    return self;
}

static void s_free_task(sched_task_t *t)
{
    free(t->spec);
    free(t->worker_name);
    free(t->failed_on);
    if (t->output) {
        free(t->output->data[0]);
        free(t->output->data[1]);
        free(t->output);
    }
    free(t);
}

void sched_destroy(sched_t **p)
{
    if (!p || !*p)
        return;
    sched_t *self = *p;
    size_t pos = 0;
    sched_task_t *t;
    while ((t = imap_next(self->tasks, &pos, NULL)))
        s_free_task(t);
    imap_destroy(&self->tasks);
    for (int i = 0; i < self->nclasses; i++) {
        class_t *c = &self->classes[i];
        free(c->ready.v);
        free(c->pub.key);
        free(c->pub.fn);
        for (int j = 0; j < c->pub.nrequire; j++)
            free(c->pub.require[j]);
        free(c->pub.require);
        free(c->pub.req);
    }
    free(self->classes);
    free(self->delayed.v);
    free(self->suspects.v);
    free(self->waiting.v);
    free(self);
    *p = NULL;
}

int sched_class(sched_t *self, const char *key)
{
    int found = sched_class_find(self, key);
    if (found >= 0)
        return found;
    if (!key)
        key = "fn";
    assert(self->nclasses <= UINT16_MAX);   /* t->cls */
    self->classes = xrealloc(self->classes, (size_t) (self->nclasses + 1) * sizeof(class_t));
    class_t *c = &self->classes[self->nclasses];
    memset(c, 0, sizeof *c);
    c->ready.max = true;
    c->pub.key = xstrdup(key);
    c->pub.exec = strncmp(key, "exec", 4) == 0;
    const char *tilde = strchr(key, '~');
    if (tilde && (parse_double(tilde + 1, &c->pub.time_request) != 0 || c->pub.time_request < 0))
        c->pub.time_request = 0;   /* a key we wrote: cannot happen, but never trust a file */
    /* "kind[:labels][;resources][~seconds]": the resources are after the
       last ';' before '~' (res_format text has none); a ';' that does
       not start a valid set is a label's. */
    const char *head_end = tilde ? tilde : key + strlen(key);
    const char *semi = NULL;
    for (const char *p = key; p < head_end; p++)
        if (*p == ';')
            semi = p;
    if (semi) {
        res_set_t req;
        char err[128];
        char *text = xstrndup(semi + 1, (size_t) (head_end - semi - 1));
        if (res_parse(text, &req, err, sizeof err) == 0 && req.n > 0) {
            c->pub.req = xmalloc(sizeof *c->pub.req);
            *c->pub.req = req;
            head_end = semi;
        }
        free(text);
    }
    const char *colon = strchr(key, ':');
    if (colon && colon >= head_end)
        colon = NULL;
    if (strncmp(key, "fn=", 3) == 0) {
        const char *end = key + 3 + strcspn(key + 3, ":~;");
        c->pub.fn = pct_decode(key + 3, (size_t) (end - key - 3));
    }
    if (colon && colon + 1 < head_end) {
        char *labels = xstrndup(colon + 1, (size_t) (head_end - colon - 1)), *save = NULL;
        for (char *tok = strtok_r(labels, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            c->pub.require = xrealloc(c->pub.require, (size_t) (c->pub.nrequire + 1) * sizeof(char *));
            c->pub.require[c->pub.nrequire++] = xstrdup(tok);
        }
        free(labels);
    }
    return self->nclasses++;
}

int sched_class_find(const sched_t *self, const char *key)
{
    if (!key)
        key = "fn";
    for (int i = 0; i < self->nclasses; i++)
        if (strcmp(self->classes[i].pub.key, key) == 0)
            return i;
    return -1;
}

const sched_class_t *sched_class_get(const sched_t *self, int cls)
{
    return cls >= 0 && cls < self->nclasses ? &self->classes[cls].pub : NULL;
}

static heap_t *s_ready_heap(sched_t *self, const sched_task_t *t)
{
    return t->crashes ? &self->suspects : &self->classes[t->cls].ready;
}

/* Whether a heap entry still stands for its task's place in the queue. */
static bool s_live(const sched_t *self, const entry_t *e)
{
    const sched_task_t *t = imap_get(self->tasks, e->id);
    return t && t->gen == e->gen && t->state == PROTO_ST_QUEUED;
}

/* Drops every stale entry of h and restores its order. */
static void s_sweep(const sched_t *self, heap_t *h)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        if (s_live(self, &h->v[i]))
            h->v[n++] = h->v[i];
    h->n = 0;
    for (size_t i = 0; i < n; i++)
        s_push(h, h->v[i]);   /* in place: slot i is read before n grows past it */
    if (h->cap > 4096 && h->n < h->cap / 4) {
        h->cap = h->n * 2 > 4096 ? h->n * 2 : 4096;
        h->v = xrealloc(h->v, h->cap * sizeof(entry_t));
    }
}

/* Once the pushes since the last sweep outnumber the tasks (each has at
   most one live entry), sweeps every heap: amortised O(1) per push. */
static void s_compact(sched_t *self)
{
    if (++self->pushes <= imap_size(self->tasks) + 4096)
        return;
    self->pushes = 0;
    s_sweep(self, &self->delayed);
    s_sweep(self, &self->suspects);
    s_sweep(self, &self->waiting);
    for (int i = 0; i < self->nclasses; i++)
        s_sweep(self, &self->classes[i].ready);
}

/* The waiting heap is never popped, so only sweeps drop its stale
   entries, and s_compact counts pushes: an entry goes stale without one
   when its task, released, is popped, claimed or ends, so a job of a
   million held, released and run left a million entries there, kept
   after the job ended and read by every walk before the tasks that still
   wait (those came first in run order). Its live entries are at most one
   per parked task and one per retry backoff (whose delayed entry is
   still there): once it holds more than twice those and a margin, it is
   swept. Amortised O(1) per entry made stale since the last sweep. */
static void s_tidy_waiting(sched_t *self)
{
    size_t live = self->delayed.n;
    for (unsigned m = 1; m <= SCHED_PARK_ALL; m++)
        live += self->parked_n[m];
    if (self->waiting.n > 2 * live + 4096)
        s_sweep(self, &self->waiting);
}

static void s_enqueue(sched_t *self, sched_task_t *t, int64_t not_before)
{
    t->state = PROTO_ST_QUEUED;
    t->not_before = not_before;
    t->gen++;
    s_compact(self);
    entry_t by_priority = {t->priority, t->id, t->gen};
    if (t->parked) {
        s_push(&self->waiting, by_priority);   /* out of the queue until sched_unpark */
        return;
    }
    if (not_before > 0) {
        s_push(&self->delayed, (entry_t){not_before, t->id, t->gen});
        s_push(&self->waiting, by_priority);
    } else {
        s_push(s_ready_heap(self, t), by_priority);
    }
}

static sched_task_t *s_new_task(sched_t *self, const sched_new_task_t *n)
{
    assert(n->id > 0 && !imap_get(self->tasks, n->id));
    sched_task_t *t = xcalloc(1, sizeof *t);
    t->id = n->id;
    t->job = n->job;
    t->index = n->index;
    t->priority = n->priority;
    t->cls = (uint16_t) (n->cls >= 0 && n->cls < self->nclasses ? n->cls : 0);
    t->attempt = n->attempt < 0                   ? 0
                 : n->attempt > PROTO_MAX_ATTEMPT ? PROTO_MAX_ATTEMPT
                                                  : n->attempt;
    t->retries_left = (uint8_t) (n->retries_left < 0     ? 0
                                 : n->retries_left > 255 ? 255
                                                         : n->retries_left);
    imap_put(self->tasks, t->id, t);
    return t;
}

sched_task_t *sched_add(sched_t *self, const sched_new_task_t *task, int64_t not_before)
{
    sched_task_t *t = s_new_task(self, task);
    if (task->held)
        s_set_parked(self, t, SCHED_PARK_DEPS);
    s_enqueue(self, t, not_before);
    return t;
}

sched_task_t *sched_add_orphan(sched_t *self, const sched_new_task_t *task,
                               const char *worker_name, int64_t deadline)
{
    sched_task_t *t = s_new_task(self, task);
    t->state = PROTO_ST_ASSIGNED;
    t->orphan = true;
    t->deadline = deadline;
    t->worker_name = xstrdup(worker_name);
    return t;
}

sched_task_t *sched_get(const sched_t *self, int64_t id)
{
    return imap_get(self->tasks, id);
}

/* Moves delayed tasks whose time has come to the ready heap. */
static void s_promote(sched_t *self, int64_t now)
{
    while (self->delayed.n && self->delayed.v[0].key <= now) {
        entry_t e = s_pop(&self->delayed);
        sched_task_t *t = imap_get(self->tasks, e.id);
        if (!t || t->gen != e.gen || t->state != PROTO_ST_QUEUED)
            continue;
        t->not_before = 0;
        t->gen++;
        s_push(s_ready_heap(self, t), (entry_t){t->priority, t->id, t->gen});
    }
}

/* Drops stale entries from the top of a heap; true when a live one is left. */
static bool s_clean_top(sched_t *self, heap_t *h)
{
    while (h->n) {
        const entry_t *e = &h->v[0];
        sched_task_t *t = imap_get(self->tasks, e->id);
        if (t && t->gen == e->gen && t->state == PROTO_ST_QUEUED)
            return true;
        s_pop(h);   /* stale: cancelled, finished or requeued since */
    }
    return false;
}

sched_task_t *sched_pop(sched_t *self, int64_t now,
                        bool (*accept)(const sched_class_t *cls, void *arg), void *arg,
                        bool suspects_ok)
{
    s_promote(self, now);
    heap_t *best = NULL;
    for (int i = 0; i < self->nclasses; i++) {
        heap_t *h = &self->classes[i].ready;
        if (!h->n || (accept && !accept(&self->classes[i].pub, arg)) || !s_clean_top(self, h))
            continue;
        if (!best || s_before(h, &h->v[0], &best->v[0]))
            best = h;
    }
    /* The best suspect competes only when the caller can isolate it (and
       only if this worker can take its class: otherwise it waits for one). */
    if (suspects_ok && s_clean_top(self, &self->suspects)) {
        heap_t *h = &self->suspects;
        sched_task_t *t = imap_get(self->tasks, h->v[0].id);
        if ((!accept || accept(&self->classes[t->cls].pub, arg))
            && (!best || s_before(h, &h->v[0], &best->v[0])))
            best = h;
    }
    if (!best)
        return NULL;
    entry_t e = s_pop(best);
    sched_task_t *t = imap_get(self->tasks, e.id);
    t->state = PROTO_ST_ASSIGNED;
    t->gen++;
    return t;
}

int sched_nclasses(const sched_t *self)
{
    return self->nclasses;
}

bool sched_class_ready(sched_t *self, int cls)
{
    if (cls < 0 || cls >= self->nclasses)
        return false;
    heap_t *h = &self->classes[cls].ready;
    return h->n && s_clean_top(self, h);
}

sched_task_t *sched_class_peek(sched_t *self, int cls)
{
    if (!sched_class_ready(self, cls))
        return NULL;
    return imap_get(self->tasks, self->classes[cls].ready.v[0].id);
}

void sched_claim(sched_t *self, sched_task_t *task)
{
    assert(task->state == PROTO_ST_QUEUED);
    /* It runs: no longer held, capped or waiting for its dependencies
       (counted so, the metrics took it out of the queued ones and called
       it held). A popped task is never parked; taken back, it is parked
       again as any requeued one is (s_requeue: its job's hold). */
    s_set_parked(self, task, 0);
    /* Its heap entries go stale with the generation, as after a pop. */
    task->state = PROTO_ST_ASSIGNED;
    task->gen++;
}

void sched_requeue(sched_t *self, sched_task_t *task, int64_t not_before)
{
    task->orphan = false;
    task->started = 0;
    s_enqueue(self, task, not_before);
}

void sched_park(sched_t *self, sched_task_t *task, unsigned reason)
{
    assert(reason && (task->state == PROTO_ST_QUEUED || task->state == PROTO_ST_ASSIGNED));
    assert(!task->worker);
    bool was = task->parked != 0;
    s_set_parked(self, task, task->parked | reason);
    if (!was)
        s_enqueue(self, task, task->not_before);   /* QUEUED, its entries stale */
}

bool sched_unpark(sched_t *self, sched_task_t *task, unsigned reason)
{
    if (!(task->parked & reason))
        return false;
    s_set_parked(self, task, task->parked & ~reason);
    if (task->parked || task->state != PROTO_ST_QUEUED)
        return false;
    s_enqueue(self, task, task->not_before);
    return true;
}

void sched_set_priority(sched_t *self, sched_task_t *task, int32_t priority)
{
    if (task->priority == priority)
        return;
    task->priority = priority;
    /* Its entry (ready, or waiting: parked or delayed) is keyed by the
       old priority: a new one replaces it. */
    if (task->state == PROTO_ST_QUEUED)
        s_enqueue(self, task, task->not_before);
}

void sched_remove(sched_t *self, int64_t id)
{
    sched_task_t *t = imap_remove(self->tasks, id);
    if (t) {
        s_set_parked(self, t, 0);
        s_free_task(t);
        s_tidy_waiting(self);
    }
}

int64_t sched_next_due(const sched_t *self, int64_t now)
{
    if (!self->delayed.n)
        return -1;
    int64_t d = self->delayed.v[0].key - now;
    return d < 0 ? 0 : d;
}

sched_parked_t sched_parked(const sched_t *self)
{
    sched_parked_t n = {0};
    for (unsigned m = 1; m <= SCHED_PARK_ALL; m++)
        *(m & SCHED_PARK_HELD     ? &n.held
          : m & SCHED_PARK_DEPS   ? &n.deps
          : m & SCHED_PARK_CAPPED ? &n.capped
          : m & SCHED_PARK_REJOIN ? &n.rejoin
                                  : &n.commit) += self->parked_n[m];
    /* Each parked record is counted once (s_set_parked). */
    assert(n.held + n.deps + n.capped + n.rejoin + n.commit <= imap_size(self->tasks));
    return n;
}

size_t sched_retry_waiting(const sched_t *self, int64_t now)
{
    size_t n = 0;
    for (size_t i = 0; i < self->delayed.n; i++) {
        const entry_t *e = &self->delayed.v[i];
        const sched_task_t *t = e->key > now ? imap_get(self->tasks, e->id) : NULL;
        if (t && t->gen == e->gen && t->state == PROTO_ST_QUEUED)
            n++;
    }
    return n;
}

int64_t sched_head_ready_ms(sched_t *self)
{
    int64_t best = -1;
    for (int i = 0; i <= self->nclasses; i++) {
        heap_t *h = i < self->nclasses ? &self->classes[i].ready : &self->suspects;
        if (!h->n || !s_clean_top(self, h))
            continue;
        const sched_task_t *t = imap_get(self->tasks, h->v[0].id);
        if (best < 0 || t->ready_ms < best)
            best = t->ready_ms;
    }
    return best;
}

size_t sched_size(const sched_t *self)
{
    return imap_size(self->tasks);
}

sched_task_t *sched_next(const sched_t *self, size_t *pos)
{
    return imap_next(self->tasks, pos, NULL);
}

/* ---- walk: the queued tasks in run order ---- */

/* A place in one of the heaps the walk reads: which heap, which slot. */
typedef struct {
    entry_t e;
    int src;                  /* class index; nclasses: suspects; nclasses + 1: waiting */
    size_t pos;
} spot_t;

struct sched_walk {
    const sched_t *sched;
    spot_t *v;                /* the frontier: a heap, best entry first */
    size_t n, cap;
    size_t visited, max;
};

static const heap_t *s_walk_src(const sched_t *self, int src)
{
    return src < self->nclasses    ? &self->classes[src].ready
           : src == self->nclasses ? &self->suspects
                                   : &self->waiting;
}

/* Every source is a max-heap on priority with the lower id first. */
static bool s_spot_before(const spot_t *a, const spot_t *b)
{
    if (a->e.key != b->e.key)
        return a->e.key > b->e.key;
    return a->e.id < b->e.id;
}

static void s_walk_add(sched_walk_t *w, int src, size_t pos)
{
    const heap_t *h = s_walk_src(w->sched, src);
    if (pos >= h->n)
        return;
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        w->v = xrealloc(w->v, w->cap * sizeof *w->v);
    }
    spot_t s = {h->v[pos], src, pos};
    size_t i = w->n++;
    while (i > 0 && s_spot_before(&s, &w->v[(i - 1) / 2])) {
        w->v[i] = w->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->v[i] = s;
}

static spot_t s_walk_take(sched_walk_t *w)
{
    spot_t top = w->v[0], last = w->v[--w->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const spot_t *bv = &last;
        if (l < w->n && s_spot_before(&w->v[l], bv)) {
            best = l;
            bv = &w->v[l];
        }
        if (r < w->n && s_spot_before(&w->v[r], bv))
            best = r;
        if (best == i)
            break;
        w->v[i] = w->v[best];
        i = best;
    }
    if (w->n)
        w->v[i] = last;
    return top;
}

sched_walk_t *sched_walk_new(sched_t *self, size_t max_visits)
{
    s_tidy_waiting(self);
    sched_walk_t *w = xcalloc(1, sizeof *w);
    w->sched = self;
    w->max = max_visits;
    for (int src = 0; src <= self->nclasses + 1; src++)
        s_walk_add(w, src, 0);
    return w;
}

const sched_task_t *sched_walk_next(sched_walk_t *w)
{
    /* A heap's slot comes after its parent's in the heap's order, so
       taking the best of the frontier and putting its children in yields
       every entry of every source in one order: the k first cost
       O((k + stale) log k), whatever the heaps hold beyond them. The
       bound counts stale entries too: a run of them is read here, in
       one call, and is as long as the lazy deletion let it grow. */
    while (w->n && w->visited < w->max) {
        spot_t s = s_walk_take(w);
        s_walk_add(w, s.src, 2 * s.pos + 1);
        s_walk_add(w, s.src, 2 * s.pos + 2);
        w->visited++;
        if (s_live(w->sched, &s.e))
            return imap_get(w->sched->tasks, s.e.id);
    }
    return NULL;
}

size_t sched_walk_visited(const sched_walk_t *w)
{
    return w->visited;
}

bool sched_walk_cut(const sched_walk_t *w)
{
    return w->n > 0 && w->visited >= w->max;
}

size_t sched_entries(const sched_t *self)
{
    size_t n = self->delayed.n + self->suspects.n + self->waiting.n;
    for (int i = 0; i < self->nclasses; i++)
        n += self->classes[i].ready.n;
    return n;
}

void sched_walk_destroy(sched_walk_t **p)
{
    if (!p || !*p)
        return;
    free((*p)->v);
    free(*p);
    *p = NULL;
}
