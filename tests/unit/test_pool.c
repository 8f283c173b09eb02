/*  Unit tests for worker/pool: a fixed set of threads over one FIFO. */
#include "../../worker/pool.h"

#include "../ztest.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Waits on a condition variable with a deadline, so a broken pool fails
   the test instead of hanging it. */
#define WAIT_S 10

static struct timespec s_deadline(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_S;
    return ts;
}

/* ---- counting: every item runs exactly once ---------------------------- */

#define MANY 2000

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int runs[MANY];
    int done;
} count_t;

static void s_count_run(void *item, void *state, void *arg)
{
    (void) state;
    count_t *c = arg;
    int *i = item;
    pthread_mutex_lock(&c->lock);
    c->runs[*i]++;
    if (++c->done == MANY)
        pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    free(i);
}

START_TEST(runs_every_item_exactly_once)
{
    count_t c = {.done = 0};
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.cond, NULL);
    pool_callbacks_t cb = {.run = s_count_run, .arg = &c};
    pool_t *pool = pool_new(4, &cb);
    ck_assert_ptr_nonnull(pool);

    for (int i = 0; i < MANY; i++) {
        int *item = malloc(sizeof *item);
        *item = i;
        ck_assert_int_eq(pool_submit(pool, item), 0);
    }
    struct timespec dl = s_deadline();
    pthread_mutex_lock(&c.lock);
    while (c.done < MANY)
        if (pthread_cond_timedwait(&c.cond, &c.lock, &dl) != 0)
            break;
    int done = c.done;
    pthread_mutex_unlock(&c.lock);
    ck_assert_int_eq(done, MANY);

    pool_destroy(&pool);
    ck_assert_ptr_null(pool);
    for (int i = 0; i < MANY; i++)
        ck_assert_int_eq(c.runs[i], 1);
    pthread_cond_destroy(&c.cond);
    pthread_mutex_destroy(&c.lock);
}
END_TEST

/* ---- per-thread init/fini ---------------------------------------------- */

#define NTHREADS 4

typedef struct {
    int index;
    pthread_t tid;
    int runs;
    bool wrong_thread;    /* run or fini saw a thread other than init's */
    bool fini_called;
} tstate_t;

typedef struct {
    tstate_t states[NTHREADS];
    atomic_int inits;
    atomic_int finis;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int total;
} threads_t;

static void *s_ts_init(int index, void *arg)
{
    threads_t *t = arg;
    tstate_t *st = &t->states[index];
    st->index = index;
    st->tid = pthread_self();
    atomic_fetch_add(&t->inits, 1);
    return st;
}

static void s_ts_run(void *item, void *state, void *arg)
{
    (void) item;
    threads_t *t = arg;
    tstate_t *st = state;
    if (!pthread_equal(st->tid, pthread_self()))
        st->wrong_thread = true;
    st->runs++;  /* only this thread touches its state */
    pthread_mutex_lock(&t->lock);
    if (++t->done == t->total)
        pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

static void s_ts_fini(void *state, void *arg)
{
    threads_t *t = arg;
    tstate_t *st = state;
    if (!pthread_equal(st->tid, pthread_self()))
        st->wrong_thread = true;
    st->fini_called = true;
    atomic_fetch_add(&t->finis, 1);
}

START_TEST(init_and_fini_run_once_on_each_thread)
{
    threads_t *t = calloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    t->total = 200;
    for (int i = 0; i < NTHREADS; i++)
        t->states[i].index = -1;
    pool_callbacks_t cb = {.init = s_ts_init, .run = s_ts_run, .fini = s_ts_fini, .arg = t};
    pool_t *pool = pool_new(NTHREADS, &cb);
    ck_assert_ptr_nonnull(pool);
    /* pool_new returns only once every thread has run init. */
    ck_assert_int_eq(atomic_load(&t->inits), NTHREADS);
    ck_assert_int_eq(atomic_load(&t->finis), 0);

    for (int i = 0; i < t->total; i++)
        ck_assert_int_eq(pool_submit(pool, NULL), 0);
    struct timespec dl = s_deadline();
    pthread_mutex_lock(&t->lock);
    while (t->done < t->total)
        if (pthread_cond_timedwait(&t->cond, &t->lock, &dl) != 0)
            break;
    pthread_mutex_unlock(&t->lock);

    pool_destroy(&pool);
    /* pool_destroy returns only once every thread has run fini. */
    ck_assert_int_eq(atomic_load(&t->finis), NTHREADS);
    int runs = 0;
    for (int i = 0; i < NTHREADS; i++) {
        tstate_t *st = &t->states[i];
        ck_assert_int_eq(st->index, i);  /* each index given to exactly one init */
        ck_assert(st->fini_called);
        ck_assert(!st->wrong_thread);
        for (int j = 0; j < i; j++)
            ck_assert(!pthread_equal(st->tid, t->states[j].tid));
        runs += st->runs;
    }
    ck_assert_int_eq(runs, t->total);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
END_TEST

/* ---- a gate: items that block until the test opens it ------------------ */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int entered;        /* items that started running */
    int finished;
    bool open;
    int discarded;
    bool discard_off_owner;
    pthread_t owner;
    int submit_rc_while_stopping;
    pool_t *pool;       /* for the stopping-submit check */
    int order[64];      /* item values in the order they ran */
} gate_t;

static void s_gate_init(gate_t *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->owner = pthread_self();
    g->submit_rc_while_stopping = 1;
}

static void s_gate_fini(gate_t *g)
{
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
}

static void s_gate_run(void *item, void *state, void *arg)
{
    (void) state;
    gate_t *g = arg;
    pthread_mutex_lock(&g->lock);
    if (g->entered < 64)
        g->order[g->entered] = (int) (intptr_t) item;
    g->entered++;
    pthread_cond_broadcast(&g->cond);
    struct timespec dl = s_deadline();
    while (!g->open)
        if (pthread_cond_timedwait(&g->cond, &g->lock, &dl) != 0)
            break;
    g->finished++;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Waits until field >= n; returns the field's value. */
static int s_gate_wait(gate_t *g, const int *field, int n)
{
    struct timespec dl = s_deadline();
    pthread_mutex_lock(&g->lock);
    while (*field < n)
        if (pthread_cond_timedwait(&g->cond, &g->lock, &dl) != 0)
            break;
    int v = *field;
    pthread_mutex_unlock(&g->lock);
    return v;
}

static void s_gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

START_TEST(stats_count_queued_and_running_items)
{
    gate_t g;
    s_gate_init(&g);
    pool_callbacks_t cb = {.run = s_gate_run, .arg = &g};
    pool_t *pool = pool_new(2, &cb);
    ck_assert_ptr_nonnull(pool);
    size_t queued = 99, running = 99;
    pool_stats(pool, &queued, &running);
    ck_assert_uint_eq(queued, 0);
    ck_assert_uint_eq(running, 0);

    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(pool_submit(pool, (void *) (intptr_t) i), 0);
    /* Both threads take one item each and block in it; three stay queued. */
    ck_assert_int_eq(s_gate_wait(&g, &g.entered, 2), 2);
    pool_stats(pool, &queued, &running);
    ck_assert_uint_eq(queued, 3);
    ck_assert_uint_eq(running, 2);

    s_gate_open(&g);
    ck_assert_int_eq(s_gate_wait(&g, &g.finished, 5), 5);
    /* running drops just after run returns; wait for that state change
       (bounded) rather than guessing a delay. */
    for (int i = 0; i < 10000; i++) {
        pool_stats(pool, &queued, &running);
        if (running == 0)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_uint_eq(queued, 0);
    ck_assert_uint_eq(running, 0);
    pool_destroy(&pool);
    s_gate_fini(&g);
}
END_TEST

START_TEST(items_start_in_submission_order)
{
    gate_t g;
    s_gate_init(&g);
    g.open = true;
    pool_callbacks_t cb = {.run = s_gate_run, .arg = &g};
    pool_t *pool = pool_new(1, &cb);
    ck_assert_ptr_nonnull(pool);
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(pool_submit(pool, (void *) (intptr_t) i), 0);
    ck_assert_int_eq(s_gate_wait(&g, &g.finished, 50), 50);
    pool_destroy(&pool);
    for (int i = 0; i < 50; i++)
        ck_assert_int_eq(g.order[i], i);
    s_gate_fini(&g);
}
END_TEST

/* discard opens the gate: it runs on the owner's thread inside
   pool_destroy, before the join that waits for the blocked item. */
static void s_gate_discard(void *item, void *arg)
{
    gate_t *g = arg;
    pthread_mutex_lock(&g->lock);
    if (!pthread_equal(pthread_self(), g->owner))
        g->discard_off_owner = true;
    g->order[32 + g->discarded % 32] = (int) (intptr_t) item;
    g->discarded++;
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

START_TEST(destroy_discards_queued_items_on_the_owner_thread)
{
    gate_t g;
    s_gate_init(&g);
    pool_callbacks_t cb = {.run = s_gate_run, .discard = s_gate_discard, .arg = &g};
    pool_t *pool = pool_new(1, &cb);
    ck_assert_ptr_nonnull(pool);
    ck_assert_int_eq(pool_submit(pool, (void *) (intptr_t) 100), 0);
    ck_assert_int_eq(s_gate_wait(&g, &g.entered, 1), 1);  /* the thread is busy */
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(pool_submit(pool, (void *) (intptr_t) i), 0);

    pool_destroy(&pool);
    ck_assert_ptr_null(pool);
    ck_assert_int_eq(g.entered, 1);     /* none of the queued ten ran */
    ck_assert_int_eq(g.finished, 1);    /* the running one finished */
    ck_assert_int_eq(g.discarded, 10);
    ck_assert(!g.discard_off_owner);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(g.order[32 + i], i);  /* discarded oldest first */
    s_gate_fini(&g);
}
END_TEST

typedef struct {
    atomic_int runs;
    atomic_int discards;
} tally_t;

static void s_free_discard(void *item, void *arg)
{
    tally_t *t = arg;
    atomic_fetch_add(&t->discards, 1);
    free(item);
}

static void s_free_run(void *item, void *state, void *arg)
{
    (void) state;
    tally_t *t = arg;
    atomic_fetch_add(&t->runs, 1);
    free(item);
}

START_TEST(every_item_is_either_run_or_discarded)
{
    /* Destroy right after submitting: each item goes to exactly one of run
       and discard, which frees it (ASan/valgrind catch a leak or double
       free). */
    tally_t t = {0, 0};
    pool_callbacks_t cb = {.run = s_free_run, .discard = s_free_discard, .arg = &t};
    pool_t *pool = pool_new(3, &cb);
    ck_assert_ptr_nonnull(pool);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(pool_submit(pool, malloc(16)), 0);
    pool_destroy(&pool);
    ck_assert_int_eq(atomic_load(&t.runs) + atomic_load(&t.discards), 100);
}
END_TEST

/* ---- parallelism: N items blocked at once prove N threads -------------- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int arrived;
    int met;      /* items that saw all N arrive while still inside run */
    int n;
} rendezvous_t;

static void s_rendezvous_run(void *item, void *state, void *arg)
{
    (void) item;
    (void) state;
    rendezvous_t *r = arg;
    struct timespec dl = s_deadline();
    pthread_mutex_lock(&r->lock);
    r->arrived++;
    pthread_cond_broadcast(&r->cond);
    while (r->arrived < r->n)
        if (pthread_cond_timedwait(&r->cond, &r->lock, &dl) != 0)
            break;
    if (r->arrived >= r->n)
        r->met++;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

START_TEST(n_threads_run_n_items_at_once)
{
    enum { N = 8 };
    rendezvous_t r = {.n = N};
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.cond, NULL);
    pool_callbacks_t cb = {.run = s_rendezvous_run, .arg = &r};
    pool_t *pool = pool_new(N, &cb);
    ck_assert_ptr_nonnull(pool);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(pool_submit(pool, NULL), 0);

    /* Each item waits (bounded) until all N have arrived: with fewer than
       N items running at once the barrier never fills and met stays 0. */
    struct timespec dl = s_deadline();
    pthread_mutex_lock(&r.lock);
    while (r.met < N)
        if (pthread_cond_timedwait(&r.cond, &r.lock, &dl) != 0)
            break;
    int met = r.met;
    pthread_mutex_unlock(&r.lock);
    ck_assert_int_eq(met, N);

    pool_destroy(&pool);
    pthread_cond_destroy(&r.cond);
    pthread_mutex_destroy(&r.lock);
}
END_TEST

static void s_noop_run(void *item, void *state, void *arg)
{
    (void) item;
    (void) state;
    (void) arg;
}

START_TEST(bad_arguments_are_refused)
{
    pool_callbacks_t cb = {.run = s_noop_run};
    ck_assert_ptr_null(pool_new(0, &cb));
    ck_assert_ptr_null(pool_new(-3, &cb));
    ck_assert_ptr_null(pool_new(2, NULL));
    pool_callbacks_t no_run = {.run = NULL};
    ck_assert_ptr_null(pool_new(2, &no_run));
    ck_assert_int_eq(pool_submit(NULL, NULL), -1);

    pool_t *pool = NULL;
    pool_destroy(&pool);  /* accepts NULL */
    pool_destroy(NULL);
    size_t q = 7, r = 7;
    pool_stats(NULL, &q, &r);
    ck_assert_uint_eq(q, 0);
    ck_assert_uint_eq(r, 0);
}
END_TEST

/* A submit from inside a run that pool_destroy is waiting for: the pool is
   stopping, so the item is refused (and stays the caller's). */
typedef struct {
    gate_t g;
    pool_t *pool;
    atomic_int late_rc;
} late_t;

static void s_late_run(void *item, void *state, void *arg)
{
    late_t *l = arg;
    s_gate_run(item, state, &l->g);
    atomic_store(&l->late_rc, pool_submit(l->pool, (void *) (intptr_t) 7));
}

static void s_late_discard(void *item, void *arg)
{
    late_t *l = arg;
    s_gate_discard(item, &l->g);
}

START_TEST(submit_is_refused_once_stopping)
{
    late_t *l = calloc(1, sizeof *l);
    s_gate_init(&l->g);
    atomic_store(&l->late_rc, 1);
    pool_callbacks_t cb = {.run = s_late_run, .discard = s_late_discard, .arg = l};
    l->pool = pool_new(1, &cb);
    ck_assert_ptr_nonnull(l->pool);
    pool_t *pool = l->pool;
    ck_assert_int_eq(pool_submit(pool, (void *) (intptr_t) 1), 0);
    ck_assert_int_eq(s_gate_wait(&l->g, &l->g.entered, 1), 1);
    ck_assert_int_eq(pool_submit(pool, (void *) (intptr_t) 2), 0);
    /* destroy: stopping is set, item 2 is discarded (which opens the
       gate), then item 1 returns and tries to submit. */
    pool_destroy(&pool);
    ck_assert_int_eq(atomic_load(&l->late_rc), -1);
    ck_assert_int_eq(l->g.discarded, 1);
    s_gate_fini(&l->g);
    free(l);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "pool", .tcase = "core", .timeout_s = 60 });
}
