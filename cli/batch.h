/*  batch: turns a stream of task specs into submit requests of bounded
    size, so one `ztask submit` of a million tasks never builds one giant
    message (nor holds more than one batch in memory).

    The first request has "job":0 and creates the job (its reply names the
    job id); later ones carry that id. Every request but the last has
    "more":true; the master closes the job when it sees "more":false. A
    batch ends at max_specs specs or when the next spec would take it past
    max_bytes of encoded specs, whichever comes first; a single spec larger
    than max_bytes travels alone (up to the protocol's message limit).

    The batcher knows nothing of sockets: it hands each request to a send
    callback, which is how the unit tests watch it work.

    Threads: any; batch_run blocks for as long as the callbacks do.
*/
#ifndef ZTASK_CLI_BATCH_H
#define ZTASK_CLI_BATCH_H

#include "../proto/proto.h"
#include "taskgen.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults: well under PROTO_MAX_SUBMIT_BATCH and PROTO_MAX_API_MSG, so
   one request commits in a few milliseconds on the master and a slow
   link still moves a batch well inside the request timeout. */
#define BATCH_MAX_SPECS 5000
#define BATCH_MAX_BYTES (4 * 1024 * 1024)

typedef struct {
    int max_specs;           /* 0 = BATCH_MAX_SPECS */
    size_t max_bytes;        /* 0 = BATCH_MAX_BYTES */
    const char *job_name;    /* sent with the first request; may be NULL */
    const proto_dep_t *deps; /* sent with the first request: what the job waits for */
    int ndeps;
    int max_running;         /* the job's --max-running, with the first request; 0 = none */
    const char *definition;  /* what `ztask show` prints (JSON object text), with the
                                first request; may be NULL */
    const char *key;         /* NULL, or each request's idempotency key is this, a dot
                                and the request's number from 0 (at most
                                PROTO_MAX_KEY - 11 characters) */
} batch_opts_t;

/* Sends one submit request (borrowed; its specs are freed by the batcher
   afterwards). On success stores the job id from the reply in *job and
   returns 0; returns -1 to stop the run (the callback reports why). */
typedef int (*batch_send_fn)(void *arg, const proto_req_t *req, int64_t *job);

typedef struct {
    int64_t job;             /* 0 until the first request succeeded */
    int64_t submitted;       /* specs in requests that succeeded */
    int requests;            /* requests that succeeded */
    bool send_failed;        /* the callback returned -1 (else: see err) */
} batch_result_t;

/* Pulls every spec out of gen and sends them in batches. Returns 0 when
   all were sent. On failure returns -1: with res->send_failed set when the
   callback refused, otherwise with a reason in err (input error, no tasks
   at all, a spec larger than a message can carry). res is always filled. */
int batch_run(taskgen_t *gen, const batch_opts_t *opts, batch_send_fn send, void *arg,
              batch_result_t *res, char *err, size_t errlen);

#endif
