/*  pool: fixed threads, one mutex-protected FIFO (see pool.h). */
#include "pool.h"

#include "../common/util.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct pool_node {
    void *item;
    struct pool_node *next;
} pool_node_t;

typedef struct {
    pool_t *pool;
    int index;
} pool_thread_arg_t;

struct pool {
    pool_callbacks_t cb;
    pthread_mutex_t lock;
    pthread_cond_t work;      /* an item was queued, or stopping was set */
    pthread_cond_t ready;     /* a thread finished init */
    pool_node_t *head, *tail; /* FIFO: take at head, append at tail */
    size_t queued;
    size_t running;
    bool stopping;
    int ninit;                /* threads that have returned from init */
    int nthreads;             /* threads created (and to be joined) */
    pthread_t *threads;
    pool_thread_arg_t *args;
};

static void *s_thread_main(void *varg)
{
    pool_thread_arg_t *targ = varg;
    pool_t *self = targ->pool;
    void *state = self->cb.init ? self->cb.init(targ->index, self->cb.arg) : NULL;

    pthread_mutex_lock(&self->lock);
    self->ninit++;
    pthread_cond_signal(&self->ready);
    for (;;) {
        while (!self->head && !self->stopping)
            pthread_cond_wait(&self->work, &self->lock);
        /* Once stopping, queued items belong to pool_destroy (which hands
           them to discard), so a thread never starts one after that. */
        if (self->stopping)
            break;
        pool_node_t *node = self->head;
        self->head = node->next;
        if (!self->head)
            self->tail = NULL;
        self->queued--;
        self->running++;
        pthread_mutex_unlock(&self->lock);

        void *item = node->item;
        free(node);
        self->cb.run(item, state, self->cb.arg);

        pthread_mutex_lock(&self->lock);
        self->running--;
    }
    pthread_mutex_unlock(&self->lock);

    if (self->cb.fini)
        self->cb.fini(state, self->cb.arg);
    return NULL;
}

/* Sets stopping, wakes every thread and joins the created ones. Items
   still queued are left for the caller. */
static void s_stop_and_join(pool_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->stopping = true;
    pthread_cond_broadcast(&self->work);
    pthread_mutex_unlock(&self->lock);
    for (int i = 0; i < self->nthreads; i++)
        pthread_join(self->threads[i], NULL);
    self->nthreads = 0;
}

static void s_free(pool_t *self)
{
    pthread_cond_destroy(&self->ready);
    pthread_cond_destroy(&self->work);
    pthread_mutex_destroy(&self->lock);
    free(self->threads);
    free(self->args);
    free(self);
}

pool_t *pool_new(int threads, const pool_callbacks_t *cb)
{
    if (threads < 1 || !cb || !cb->run)
        return NULL;

    pool_t *self = xcalloc(1, sizeof *self);
    self->cb = *cb;
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->work, NULL);
    pthread_cond_init(&self->ready, NULL);
    self->threads = xcalloc((size_t) threads, sizeof *self->threads);
    self->args = xcalloc((size_t) threads, sizeof *self->args);

    /* Pool threads inherit a mask that blocks the process-directed
       signals the owner handles (stop, reload, user signals), so the
       kernel delivers those to a thread that waits for them rather than
       to one busy in a task. Synchronous signals (SIGSEGV, SIGPIPE...)
       stay unblocked: they belong to the thread that caused them.
       Children forked by exec reset their mask before exec. */
    sigset_t block, saved;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGQUIT);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &block, &saved);

    bool failed = false;
    for (int i = 0; i < threads; i++) {
        self->args[i].pool = self;
        self->args[i].index = i;
        if (pthread_create(&self->threads[i], NULL, s_thread_main, &self->args[i]) != 0) {
            failed = true;
            break;
        }
        self->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);

    /* Wait for every created thread to finish init, so the caller may rely
       on each thread's state existing (and on init having failed loudly,
       if it does) once pool_new returns. Bounded: one wait per thread. */
    pthread_mutex_lock(&self->lock);
    while (self->ninit < self->nthreads)
        pthread_cond_wait(&self->ready, &self->lock);
    pthread_mutex_unlock(&self->lock);

    if (failed) {
        s_stop_and_join(self);
        s_free(self);
        return NULL;
    }
    return self;
}

int pool_submit(pool_t *self, void *item)
{
    if (!self)
        return -1;
    pool_node_t *node = xmalloc(sizeof *node);
    node->item = item;
    node->next = NULL;

    pthread_mutex_lock(&self->lock);
    if (self->stopping) {
        pthread_mutex_unlock(&self->lock);
        free(node);
        return -1;
    }
    if (self->tail)
        self->tail->next = node;
    else
        self->head = node;
    self->tail = node;
    self->queued++;
    pthread_cond_signal(&self->work);
    pthread_mutex_unlock(&self->lock);
    return 0;
}

void pool_stats(pool_t *self, size_t *queued, size_t *running)
{
    size_t q = 0, r = 0;
    if (self) {
        pthread_mutex_lock(&self->lock);
        q = self->queued;
        r = self->running;
        pthread_mutex_unlock(&self->lock);
    }
    if (queued)
        *queued = q;
    if (running)
        *running = r;
}

void pool_destroy(pool_t **p)
{
    if (!p || !*p)
        return;
    pool_t *self = *p;
    *p = NULL;

    /* Take the queue and set stopping in one critical section: no thread
       can start a queued item after this, and running ones finish. */
    pthread_mutex_lock(&self->lock);
    self->stopping = true;
    pool_node_t *node = self->head;
    self->head = self->tail = NULL;
    self->queued = 0;
    pthread_cond_broadcast(&self->work);
    pthread_mutex_unlock(&self->lock);

    while (node) {
        pool_node_t *next = node->next;
        if (self->cb.discard)
            self->cb.discard(node->item, self->cb.arg);
        free(node);
        node = next;
    }

    s_stop_and_join(self);
    s_free(self);
}
