/*  outbox: the worker's side of the REPORT channel.

    Collects what the session has to tell the master and sends it on the
    report PUSH. STARTED refs and results are batched until outbox_flush
    (the session calls it once per loop wakeup), results a little longer
    when the session says they may wait (outbox_result_until). OUTPUT
    reports and heartbeats go at once. Results must arrive: a results report that finds
    the socket full (or no socket yet) waits in a backlog, and everything
    else that must arrive (later results, BYE) queues behind it, so order is
    kept. Reports that are superseded anyway (heartbeat, started, output)
    are dropped when the socket is full.

    The socket is a connect-side PUSH: libzmq queues reports while the
    master is away (up to its SNDHWM) and delivers them when it returns.

    Memory: a result is never held twice for long. One of 64 KiB or more
    goes in a report of its own, made in its own buffer; smaller ones are
    joined into one report and freed as they are; reports of 4 KiB and up
    are handed to libzmq, not copied (zmqx_send_take), and freed by it
    once written (docs/worker.md, "Output capture").

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

/* An attempt started at wall time at: batched until the next flush. */
void outbox_started(outbox_t *self, int64_t task, int attempt, double at);
/* Monotonic ms at which held results are due, or -1 if none. */
int64_t outbox_due(const outbox_t *self);
/* An encoded OUTPUT report (copied), sent now; STARTED refs still batched
   go first, so the master sees a start before its output. */
void outbox_output(outbox_t *self, const char *text, size_t len);
/* An encoded result object (taken; malloc'd, the text at its start) for
   the next RESULTS report. */
void outbox_result(outbox_t *self, char *json);
/* The same, but it may wait for flushes until until (monotonic ms) so that
   results finishing close together share one report; a result added
   without a wait, or a flush with idle, sends every held one. stored:
   the result's length as the master stores it (plain strings:
   proto_result_encode_at's *stored; 0 or less than the text's length
   means the text's length, right for a result without base64 output). */
void outbox_result_until(outbox_t *self, char *json, size_t stored, int64_t until);
/* A HEARTBEAT listing these attempts, sent now. seen (> 0): the "seq" of
   the last "tasks" message the session read; the heartbeat says it only
   when nothing sent before it can still be behind it (docs/protocol.md
   10.1): held results go first, and with reports in the backlog it says
   nothing (0: no comparison this time). */
void outbox_heartbeat(outbox_t *self, const proto_task_ref_t *running, int n, int64_t seen);
/* A RECALLED report listing these attempts (n may be 0: none could be
   given back), sent now and never dropped: through the backlog when the
   socket cannot take it (refs are copied, ids only). */
void outbox_recalled(outbox_t *self, const proto_task_ref_t *refs, int n);
/* A LOST report listing these attempts (n >= 1), sent now and never
   dropped, in order behind every result given before. */
void outbox_lost(outbox_t *self, const proto_task_ref_t *refs, int n);
/* Sends the batched STARTED refs, then the results (in as few reports as
   fit PROTO_MAX_REPORT_MSG, both as sent and as the master stores them:
   their stored lengths summed) if due at now (monotonic ms), or in any case
   with idle (nothing left running here, or leaving), then retries the
   backlog. */
void outbox_flush(outbox_t *self, int64_t now, bool idle);
/* Flushes, then queues BYE behind everything that must arrive. Does
   nothing without a worker id or a socket; true when BYE was queued. */
bool outbox_bye(outbox_t *self);
/* Reports waiting for room on the socket. */
int outbox_backlog(const outbox_t *self);

#endif
