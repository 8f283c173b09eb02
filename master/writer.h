/*  writer: runs the master's commits on a thread of its own, so the event
    loop goes on dispatching and collecting results while SQLite works and
    the disk syncs.

    The loop hands over one batch at a time (writer_start) and gets it back
    when it is written (writer_finish). What is in a batch, and how it is
    written, is the caller's: the writer calls apply(store, batch) on its
    thread and keeps what it returns.

    The store stays the loop's (it opens and closes it; the writer never
    does) and is lent with each batch: while one is out (writer_busy), the
    writer thread alone uses the store. The loop may use the store again
    after writer_idle (which waits for the thread to be done with it,
    without taking the batch back) or writer_finish. Between batches the
    thread does not touch it.

    Threads: every writer_* function is for the loop thread only; apply runs
    on the writer thread and must touch nothing but the store and its batch.
    Signals: the writer thread blocks them all (they go to the loop).
*/
#ifndef ZTASK_WRITER_H
#define ZTASK_WRITER_H

#include "store.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct writer writer_t;

/* Writes batch into store; returns 0, or -1 with a one-line reason in err. */
typedef int (writer_apply_fn)(store_t *store, void *batch, char *err, size_t errlen);

/* Starts the thread, for batches written into store (borrowed: see above).
   NULL when it cannot be started (errno set). */
writer_t *writer_new(store_t *store, writer_apply_fn *apply);
/* Stops the thread (a batch still out is written and dropped unseen:
   finish it first). */
void writer_destroy(writer_t **p);

/* A file descriptor that is readable while a written batch waits for
   writer_finish: for the loop's zmq_poll. */
int writer_fd(const writer_t *self);

/* True from writer_start until writer_finish returned the batch. */
bool writer_busy(const writer_t *self);

/* Hands batch over (and the store with it); the writer must not be busy
   (asserted). */
void writer_start(writer_t *self, void *batch);

/* Waits until the thread is done with the store (the batch stays out). */
void writer_idle(writer_t *self);

/* The batch back once written, with apply's result in *rc and its reason
   in err; NULL when none is out, or when wait is false and it is not
   written yet. */
void *writer_finish(writer_t *self, bool wait, int *rc, char *err, size_t errlen);

#endif
