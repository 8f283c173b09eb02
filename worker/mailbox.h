/*  mailbox: how pool threads hand frames to the session thread.

    Many writers (the pool threads), one reader (the session). A frame is
    a copy of the bytes given to mailbox_put; the session takes every
    waiting frame at once with mailbox_take and frees each. mailbox_fd is
    an eventfd that is readable while frames may be waiting: the session
    polls it with its sockets.

    Why not an inproc ZeroMQ PUSH/PULL pair (what this replaced): libzmq
    pays a getpid and a poll of the socket's command mailbox on each send
    and each receive, and a receive that finds nothing pays them again, so
    a result cost the pool thread 4 system calls and the session 8 or
    more. Here a put is a lock and one eventfd write when the mailbox was
    empty (a put to a non-empty one wakes nobody: the reader is already
    due), a take is an eventfd read and a lock (docs/performance.md).

    Threads: mailbox_put from any thread; mailbox_take and mailbox_fd from
    the reader; new/destroy when no writer is left. The lock orders each
    put before the take that returns it (a happens-before edge that
    ThreadSanitizer sees).
*/
#ifndef ZTASK_MAILBOX_H
#define ZTASK_MAILBOX_H

#include <stddef.h>

typedef struct mailbox mailbox_t;

typedef struct mailbox_frame mailbox_frame_t;
struct mailbox_frame {
    mailbox_frame_t *next;      /* the next younger frame, NULL at the end */
    size_t size;
    char data[];                /* size bytes */
};

/* NULL (errno set) when no eventfd can be made. */
mailbox_t *mailbox_new(void);
/* Frees the frames still waiting; accepts NULL, nulls *p. */
void mailbox_destroy(mailbox_t **p);
/* Readable (POLLIN) while frames may be waiting. */
int mailbox_fd(const mailbox_t *self);
/* Queues one frame: head[0..hlen) then payload[0..len) (payload may be
   NULL when len is 0). Never blocks but on the lock, never fails. */
void mailbox_put(mailbox_t *self, const void *head, size_t hlen, const void *payload, size_t len);
/* Queues a frame the caller built (malloc'd, size set; next is set
   here), without a copy: a big payload is not held twice. Takes *f
   (nulled). */
void mailbox_put_frame(mailbox_t *self, mailbox_frame_t **f);
/* Every waiting frame, oldest first, NULL when none; the caller's (free()
   each). */
mailbox_frame_t *mailbox_take(mailbox_t *self);

#endif
