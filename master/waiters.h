/*  waiters: requests held until their job finishes: a status with
    wait_ms, or, with wait_ms, the submit of a job's last batch. Each is
    answered once its job has finished (or is gone) or its wait is over,
    whichever comes first; the master answers every one as it stops.

    This module keeps them and says which are due; answering is the
    caller's (api.c), after the commit that every answer waits for.

    Ownership: a waiter_t belongs to the waiters_t until waiters_take_due
    hands it to the caller (free it with waiter_free).
    Threads: main loop only.
*/
#ifndef ZTASK_WAITERS_H
#define ZTASK_WAITERS_H

#include "jobs.h"

#include "../common/zmqx.h"
#include "../proto/proto.h"

#include <stdbool.h>
#include <stdint.h>

/* Held requests (status and submit), at most: past this they are
   answered at once (each costs ~100 bytes; the bound keeps a flood of
   them cheap). */
#define MAX_WAITERS 4096

/* A request held until its job finishes. */
typedef struct waiter {
    zmqx_frames_t envelope;  /* the client's routing frames (body dropped) */
    proto_req_type_t type;   /* PROTO_REQ_STATUS or PROTO_REQ_SUBMIT */
    int64_t job;
    int64_t accepted;        /* submit: tasks this batch added */
    int64_t deadline;        /* monotonic ms: answered then, finished or not */
    struct waiter *next;
} waiter_t;

typedef struct waiters waiters_t;

/* Held requests on the jobs of jobs (borrowed: it says which finished). */
waiters_t *waiters_new(const jobs_t *jobs);
/* Drops the held requests unanswered. */
void waiters_destroy(waiters_t **p);

/* Holds a request of the given type on job_id (envelope copied) for up to
   wait_ms from now. False when it is to be answered now instead: no wait,
   no job named, a status of a finished or unknown job, or MAX_WAITERS
   held already. A job finished already makes it due at once. */
bool waiters_hold(waiters_t *self, const zmqx_frames_t *env, proto_req_type_t type,
                  int64_t job_id, int64_t accepted, int wait_ms, int64_t now);

/* True when a held request is due at now (all_now: any held request). */
bool waiters_any_due(const waiters_t *self, int64_t now, bool all_now);

/* The held requests due at now (all of them with all_now), taken out,
   linked by next, newest first; NULL when none. The caller's. */
waiter_t *waiters_take_due(waiters_t *self, int64_t now, bool all_now);

/* Frees a taken waiter (NULL is fine) and nulls *p. */
void waiter_free(waiter_t **p);

/* The earliest deadline of a held request (monotonic ms), or -1 if none. */
int64_t waiters_deadline(const waiters_t *self);

#endif
