/*  api: the master's answers to clients and to worker registration, one
    request in, one reply out, on the API ROUTER socket.

    Who may do what is decided here, per request, with the roles the
    sender's key holds now (auth_peer): a key revoked since its connection
    was admitted is refused from its next message. A client acts only on
    the jobs it owns (and jobs with no owner); an admin on every job; only
    a job's owner adds tasks to it; a job it may not act on is "no job N"
    to it, as one that does not exist. A submit over its owner's quota is
    refused whole (code "quota"). docs/security.md has the model.

    A submit with a key (idem.h) that was taken in before is a copy sent
    again after a lost reply: it is answered as the first one and adds
    nothing.

    Every answer reflects committed state: a query is answered after a
    flush (api_flush), a submit after the commit that holds its rows (the
    journal hands the done submits back; api_acks answers them), a held
    request (waiters.h) after the commit of what finished its job.

    The ROUTER is the loop's; api_read reads it when the loop's poll says
    so, and api sends every reply on it. No reply is dropped while its
    client is connected: one the client has not made room for waits, and
    so do its next requests, within bounds per connection and in total;
    past them a request is answered "busy" (conns.h has the why and the
    figures).

    Threads: main loop only.
*/
#ifndef ZTASK_API_H
#define ZTASK_API_H

#include "alloc.h"
#include "auth.h"
#include "deps.h"
#include "idem.h"
#include "jobs.h"
#include "journal.h"
#include "metrics.h"
#include "registry.h"
#include "sched.h"
#include "tasks.h"
#include "waiters.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct api api_t;

/* What api_new works with: the pointers (db_path too) are borrowed (the
   loop owns them and outlives the api_t). */
typedef struct {
    void *sock;              /* the API ROUTER */
    auth_t *auth;            /* NULL without CURVE */
    sched_t *sched;
    registry_t *registry;
    jobs_t *jobs;
    journal_t *journal;
    waiters_t *waiters;
    tasks_t *tasks;
    deps_t *deps;
    metrics_t *metrics;      /* counts every reply and refusal */
    idem_t *idem;            /* the submit keys remembered */
    alloc_t *alloc;          /* worker allocation queues */
    const char *db_path;     /* for `ztask stats` */
    int report_port;         /* for a worker's hello: where it reports */
    int heartbeat_ms;
    int liveness;
    int64_t last_job_id;     /* the ids handed out last (the store's at start) */
    int64_t last_task_id;
    int64_t started_ms;      /* monotonic ms of the master's start (uptime) */
    int64_t quota_tasks;     /* per owner, tasks queued or running at most; 0 = no limit */
    int64_t quota_bytes;     /* per owner, bytes of their specs at most; 0 = no limit */
} api_config_t;

api_t *api_new(const api_config_t *cfg);
void api_destroy(api_t **p);

/* Reads what is waiting on the API socket (at most a bounded number of
   requests per call, so reports and timers are not starved) and answers
   each (some after a commit: see the top of this file). */
void api_read(api_t *self, int64_t now);

/* Sends the replies that waited for their clients to read (conns.h)
   and runs the requests parked behind them, a bounded number per call.
   The loop calls it every turn, before api_read. */
void api_pump(api_t *self, int64_t now);

/* Milliseconds until api_pump has something to retry (0: now), or -1:
   the loop's poll waits no longer than that. */
int64_t api_timeout(const api_t *self, int64_t now);

/* Answers the submits whose commit is done (journal_take_done): acks, or
   refusals with the reason; sends the held answers whose changes are now
   committed (api_waiters). The loop calls it after every step that may
   complete a commit. */
void api_acks(api_t *self);

/* journal_flush, then api_acks: what every answer that must reflect
   committed state does first. Returns journal_flush's result. Blocks on
   the disk. */
int api_flush(api_t *self);

/* Answers the held requests whose job has finished (or is gone) or whose
   wait is over at now, all of them with all_now. What they are told is
   durable: an answer made while some change is not committed yet is kept
   and sent by api_acks once it is (the loop does not wait for that
   commit); with all_now (stopping) or while commits fail, one commit
   first, waited for. */
void api_waiters(api_t *self, int64_t now, bool all_now);

#endif
