#include "mailbox.h"

#include "../common/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct mailbox {
    int efd;                    /* EFD_NONBLOCK: the reader never blocks on it */
    pthread_mutex_t lock;
    mailbox_frame_t *head, *tail;   /* under lock */
};

mailbox_t *mailbox_new(void)
{
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        return NULL;
    mailbox_t *self = xcalloc(1, sizeof *self);
    self->efd = efd;
    pthread_mutex_init(&self->lock, NULL);
    return self;
}

void mailbox_destroy(mailbox_t **p)
{
    if (!p || !*p)
        return;
    mailbox_t *self = *p;
    mailbox_frame_t *f = self->head;
    while (f) {
        mailbox_frame_t *next = f->next;
        free(f);
        f = next;
    }
    close(self->efd);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *p = NULL;
}

int mailbox_fd(const mailbox_t *self)
{
    return self->efd;
}

void mailbox_put(mailbox_t *self, const void *head, size_t hlen, const void *payload, size_t len)
{
    mailbox_frame_t *f = xmalloc(sizeof *f + hlen + len);
    f->size = hlen + len;
    memcpy(f->data, head, hlen);
    if (len)
        memcpy(f->data + hlen, payload, len);
    mailbox_put_frame(self, &f);
}

void mailbox_put_frame(mailbox_t *self, mailbox_frame_t **p)
{
    mailbox_frame_t *f = *p;
    *p = NULL;
    f->next = NULL;
    pthread_mutex_lock(&self->lock);
    bool was_empty = self->head == NULL;
    if (self->tail)
        self->tail->next = f;
    else
        self->head = f;
    self->tail = f;
    pthread_mutex_unlock(&self->lock);
    /* Only the put that makes the mailbox non-empty wakes the reader:
       a later one finds it already due to take everything. The write is
       after the unlock, so the reader, woken, finds the frame. */
    if (was_empty) {
        uint64_t one = 1;
        ssize_t n;
        do
            n = write(self->efd, &one, sizeof one);
        while (n < 0 && errno == EINTR);
    }
}

mailbox_frame_t *mailbox_take(mailbox_t *self)
{
    /* Reset the eventfd before taking: a put that lands after the take
       then wakes us again (at worst for nothing), never goes unseen. */
    uint64_t count;
    ssize_t n;
    do
        n = read(self->efd, &count, sizeof count);
    while (n < 0 && errno == EINTR);
    pthread_mutex_lock(&self->lock);
    mailbox_frame_t *all = self->head;
    self->head = self->tail = NULL;
    pthread_mutex_unlock(&self->lock);
    return all;
}
