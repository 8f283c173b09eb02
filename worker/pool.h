/*  pool: a fixed set of threads running items from one queue.

    The worker's session thread submits items; each pool thread takes the
    oldest item and runs it with the run callback. Every thread has its
    own state made by init on that thread (the worker's: its exec kit and
    reaper slot) and undone by fini on that thread before it exits.

    Threads: pool_new, pool_submit, pool_stats and pool_destroy are called
    from one thread (the owner); the callbacks run on the pool's threads.
    pool_new returns once every thread has run init; pool_destroy returns
    once every thread has run fini and exited.

    Signals: pool threads start with SIGINT, SIGTERM, SIGHUP, SIGQUIT,
    SIGUSR1 and SIGUSR2 blocked, so those reach the owner's thread.
*/
#ifndef ZTASK_POOL_H
#define ZTASK_POOL_H

#include <stddef.h>

typedef struct pool pool_t;

typedef struct {
    /* Called once on each thread before it takes items; returns that
       thread's state (may be NULL). */
    void *(*init)(int thread_index, void *arg);
    /* Runs one item on a pool thread; the item is the callback's to free. */
    void (*run)(void *item, void *thread_state, void *arg);
    /* Called once on each thread as it exits. */
    void (*fini)(void *thread_state, void *arg);
    /* Items still queued at pool_destroy are given to discard (on the
       owner's thread), or dropped when NULL. */
    void (*discard)(void *item, void *arg);
    void *arg;
} pool_callbacks_t;

/* Starts threads (>= 1). NULL on failure (no thread left running). */
pool_t *pool_new(int threads, const pool_callbacks_t *cb);

/* Queues an item (never blocks, the queue is unbounded: the worker's
   credit with the master bounds it). 0, or -1 once stopping. */
int pool_submit(pool_t *self, void *item);

/* Items queued but not started, and items running now. */
void pool_stats(pool_t *self, size_t *queued, size_t *running);

/* Stops taking items, discards the queue, waits for running items to
   finish, joins every thread. Accepts NULL; nulls *p. */
void pool_destroy(pool_t **p);

#endif
