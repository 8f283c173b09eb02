/*  outbox: the worker's side of the REPORT channel.

    Collects what the session has to tell the master and sends it on the
    report PUSH. STARTED refs and results are batched until outbox_flush
    (the session calls it once per loop wakeup); OUTPUT reports and
    heartbeats go at once. Results must arrive: a results report that finds
    the socket full (or no socket yet) waits in a backlog, and everything
    else that must arrive (later results, BYE) queues behind it, so order is
    kept. Reports that are superseded anyway (heartbeat, started, output)
    are dropped when the socket is full.

    The socket is a connect-side PUSH: libzmq queues reports while the
    master is away (up to its SNDHWM) and delivers them when it returns.

    Threads: one (the session's); the socket belongs to that thread.
*/
#ifndef ZTASK_OUTBOX_H
#define ZTASK_OUTBOX_H

#include "../proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct outbox outbox_t;

outbox_t *outbox_new(void);
/* Closes the socket (with its linger), frees what is unsent. Accepts NULL,
   nulls *p. */
void outbox_destroy(outbox_t **p);

/* Takes *sock (nulled) as the report socket, closing the previous one:
   reports queued in that one are lost, the backlog is kept. */
void outbox_attach(outbox_t *self, void **sock);
bool outbox_attached(const outbox_t *self);
/* Closes the socket after setting its linger (ms); call before
   zmq_ctx_term, which then waits up to that long for delivery. */
void outbox_close(outbox_t *self, int linger_ms);

/* The worker id reports carry from now on (copied). */
void outbox_set_worker(outbox_t *self, const char *id);

/* An attempt started at wall time at: batched. */
void outbox_started(outbox_t *self, int64_t task, int attempt, double at);
/* An encoded OUTPUT report (copied), sent now; STARTED refs still batched
   go first, so the master sees a start before its output. */
/* Drops a queued "started" for a task whose result is about to go in the
   same flush: the result says everything the start would (a tiny task then
   costs one report, not two). */
void outbox_unstarted(outbox_t *self, int64_t task, int attempt);

void outbox_output(outbox_t *self, const char *text, size_t len);
/* An encoded result object (taken) for the next RESULTS report. */
void outbox_result(outbox_t *self, char *json);
/* A HEARTBEAT listing these attempts, sent now. */
void outbox_heartbeat(outbox_t *self, const proto_task_ref_t *running, int n);
/* Sends the batched STARTED refs, then the results (in as few reports as
   fit PROTO_MAX_REPORT_MSG), then retries the backlog. */
void outbox_flush(outbox_t *self);
/* Flushes, then queues BYE behind everything that must arrive. Does
   nothing without a worker id or a socket; true when BYE was queued. */
bool outbox_bye(outbox_t *self);
/* Reports waiting for room on the socket. */
int outbox_backlog(const outbox_t *self);

#endif
