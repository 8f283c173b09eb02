/*  conns: flow control on the API ROUTER, per connection and in total.

    A client may send requests without waiting for each reply
    (pipelining: docs/protocol.md). libzmq keeps at most API_HWM replies
    queued per connection (master.c); one it cannot take yet used to be
    dropped, and a pipelining client waited for replies that never came.
    Now no reply is dropped while its client is connected:

    - a reply libzmq cannot take yet waits here, in order, behind the
      connection's earlier ones, and is sent when the client has read
      enough (retried with a backoff of 1 to 128 ms: a ROUTER says when
      some peer can take a message, never which);
    - a request from a connection whose replies wait is parked behind
      them, unread: a ROUTER cannot stop reading one connection (it
      reads them all, fairly), so "stop taking requests" means taking
      them and holding them. It is run when every reply before it is
      out. Parking is bounded: CONNS_PARK_CONN per connection (or one
      request, whatever its size), CONNS_PARK_TOTAL in all;
    - past those bounds, or when the replies that clients have not read
      take CONNS_REPLY_BUDGET in all, a request is not run and is
      answered "busy" (PROTO_E_BUSY) in its place in the order, so the
      client sees it and sends it again later. A connection with
      nothing unread is still served over the budget as long as its
      reply is small (CONNS_SMALL_REPLY; api.c does not even run results
      and logs then): a monitoring `ztask stats` gets through while
      others hoard.

    Why park rather than answer "busy" at once: a client that pipelines
    and reads (the common case) would otherwise see busy errors it did
    nothing wrong to get; parked requests are cheap (their bytes), and
    the bounds above keep a client that never reads from turning them
    into memory.

    Reply bytes are counted until libzmq lets go of them: replies are
    handed to libzmq without a copy (zmq_msg_init_data) and the free
    callback, on libzmq's I/O thread, takes them off the connection's
    count and the total. So the budget covers what sits in libzmq's
    queues as well as here, and a connection that goes away gives its
    share back when libzmq drops its queue.

    Bounds, for docs/protocol.md: replies not yet read by their clients,
    at most CONNS_REPLY_BUDGET + one reply (API_MAX_REPLY, under 32 MiB)
    + CONNS_SMALL_REPLY per connection that had nothing unread; parked
    requests, at most CONNS_PARK_TOTAL + one request; "busy" answers and
    bookkeeping, a few hundred bytes per connection.

    Threads: main loop only, but for the reply counts, which libzmq's I/O
    thread decrements (atomics; a connection's record lives until the
    last of its replies is freed).
*/
#ifndef ZTASK_CONNS_H
#define ZTASK_CONNS_H

#include "metrics.h"

#include "../common/zmqx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Replies not yet read, all connections together: past this, requests
   are answered "busy" (but see CONNS_SMALL_REPLY). Four 32 MiB replies,
   or sixteen 8 MiB results pages. */
#define CONNS_REPLY_BUDGET ((int64_t) 128 << 20)
/* Over the budget, a connection with nothing unread still gets a reply
   this small (a status, stats, an ack); a bigger one is "busy". */
#define CONNS_SMALL_REPLY ((size_t) 64 << 10)
/* Requests parked behind unread replies: per connection (one request is
   always taken, whatever its size), and in all. */
#define CONNS_PARK_CONN ((int64_t) 1 << 20)
#define CONNS_PARK_TOTAL ((int64_t) 32 << 20)

typedef struct conns conns_t;

/* On sock (the API ROUTER, borrowed; ROUTER_MANDATORY); metrics
   (borrowed) counts the "busy" answers. budget_mib: the reply budget in
   MiB, 1 to CONNS_REPLY_BUDGET's 128; 0 is CONNS_REPLY_BUDGET. Only
   tests set a smaller one (ZTASK_TEST_REPLY_BUDGET_MIB, api.c): reaching
   128 MiB takes seconds of 20 MB replies, minutes under TSan. */
conns_t *conns_new(void *sock, metrics_t *metrics, int64_t budget_mib);
/* Drops what waits (the clients get nothing more: the master is going
   away). Replies libzmq still holds keep their records alive until it
   frees them (at zmq_ctx_term at the latest). */
void conns_destroy(conns_t **p);

/* Whether a request may run now. */
typedef enum {
    CONNS_RUN,         /* run it */
    CONNS_RUN_SMALL,   /* run it; over the budget: a big reply must be "busy" */
    CONNS_TAKEN,       /* parked, or answered "busy": frames taken (emptied) */
} conns_admit_t;

/* A request just read (frames: the whole message). CONNS_TAKEN takes
   *frames (zeroed); otherwise the caller keeps and runs it. */
conns_admit_t conns_admit(conns_t *self, zmqx_frames_t *frames);

/* Sends body (len bytes, malloc'd, taken: *body is nulled) to the
   client at env (borrowed): now, or after the replies before it. Never
   drops it unless the client is gone. */
void conns_send(conns_t *self, const zmqx_frames_t *env, char **body, size_t len);

/* Sends the waiting replies that can go now and, when a parked request
   is next in line with nothing before it, takes it into *out (the
   caller's, zmqx_frames_free) with how it may run, and returns true;
   false when nothing is due. The caller runs what it gets (its reply
   comes back through conns_send and goes first) and calls again. */
bool conns_next(conns_t *self, int64_t now, zmqx_frames_t *out, conns_admit_t *how);

/* Milliseconds until a waiting reply is due to be tried again (0: now),
   or -1 when nothing waits. */
int64_t conns_timeout(const conns_t *self, int64_t now);

/* Reply bytes not yet read, all connections (libzmq's queues and here). */
int64_t conns_reply_bytes(const conns_t *self);

#endif
