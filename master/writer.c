/*  writer: the commit thread (see writer.h). One mutex and one condition
    variable guard the hand-over; the eventfd only wakes the loop's poll. */
#include "writer.h"

#include "../common/util.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct writer {
    store_t *store;
    writer_apply_fn *apply;
    pthread_t thread;
    int efd;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu: */
    void *todo;          /* handed over, not yet taken by the thread */
    void *done;          /* written, not yet taken back by the loop */
    bool working;        /* the thread is applying a batch */
    bool stop;
    int rc;
    char err[512];
    /* Loop thread only: */
    bool out;            /* a batch is out (started, not finished) */
};

static void *s_main(void *arg)
{
    writer_t *self = arg;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        while (!self->todo && !self->stop)
            pthread_cond_wait(&self->cv, &self->mu);
        if (!self->todo)
            break;
        void *batch = self->todo;
        self->todo = NULL;
        self->working = true;
        pthread_mutex_unlock(&self->mu);

        char err[512] = "";
        int rc = self->apply(self->store, batch, err, sizeof err);

        pthread_mutex_lock(&self->mu);
        self->working = false;
        self->done = batch;
        self->rc = rc;
        snprintf(self->err, sizeof self->err, "%s", err);
        pthread_cond_broadcast(&self->cv);
        uint64_t one = 1;
        /* Cannot fail short of a bad fd: the counter is far from overflow. */
        if (write(self->efd, &one, sizeof one) < 0)
            (void) 0;
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

writer_t *writer_new(store_t *store, writer_apply_fn *apply)
{
    writer_t *self = xcalloc(1, sizeof *self);
    self->store = store;
    self->apply = apply;
    self->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->efd < 0) {
        free(self);
        return NULL;
    }
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    /* The thread starts with every signal blocked, so SIGTERM and SIGHUP
       reach the loop's thread and interrupt its poll. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&self->thread, NULL, s_main, self);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        close(self->efd);
        pthread_cond_destroy(&self->cv);
        pthread_mutex_destroy(&self->mu);
        free(self);
        errno = rc;
        return NULL;
    }
    return self;
}

void writer_destroy(writer_t **p)
{
    if (!p || !*p)
        return;
    writer_t *self = *p;
    pthread_mutex_lock(&self->mu);
    self->stop = true;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
    pthread_join(self->thread, NULL);
    close(self->efd);
    pthread_cond_destroy(&self->cv);
    pthread_mutex_destroy(&self->mu);
    free(self);
    *p = NULL;
}

int writer_fd(const writer_t *self)
{
    return self->efd;
}

bool writer_busy(const writer_t *self)
{
    return self->out;
}

void writer_start(writer_t *self, void *batch)
{
    assert(!self->out && batch);
    pthread_mutex_lock(&self->mu);
    self->todo = batch;
    self->out = true;
    pthread_cond_broadcast(&self->cv);
    pthread_mutex_unlock(&self->mu);
}

void writer_idle(writer_t *self)
{
    pthread_mutex_lock(&self->mu);
    while (self->todo || self->working)
        pthread_cond_wait(&self->cv, &self->mu);
    pthread_mutex_unlock(&self->mu);
}

void *writer_finish(writer_t *self, bool wait, int *rc, char *err, size_t errlen)
{
    if (!self->out)
        return NULL;
    pthread_mutex_lock(&self->mu);
    while (wait && !self->done)
        pthread_cond_wait(&self->cv, &self->mu);
    void *batch = self->done;
    if (batch) {
        self->done = NULL;
        self->out = false;
        *rc = self->rc;
        snprintf(err, errlen, "%s", self->err);
        uint64_t n;
        /* Clear the wakeup; EAGAIN when it was read already. */
        if (read(self->efd, &n, sizeof n) < 0)
            (void) 0;
    }
    pthread_mutex_unlock(&self->mu);
    return batch;
}
