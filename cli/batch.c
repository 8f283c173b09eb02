#include "batch.h"

#include "../common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Room left in a request for everything but the specs: the envelope,
   the job name (PROTO_MAX_NAME, escaped up to 6x) and the commas. */
#define ENVELOPE_BYTES (4096 + 6 * PROTO_MAX_NAME)

typedef struct {
    proto_spec_t **specs;
    int n;
    size_t bytes;
} pending_t;

static void s_pending_clear(pending_t *p)
{
    for (int i = 0; i < p->n; i++)
        proto_spec_destroy(&p->specs[i]);
    p->n = 0;
    p->bytes = 0;
}

/* Sends what is pending as one request. */
static int s_flush(pending_t *p, bool more, const batch_opts_t *opts, batch_send_fn send,
                   void *arg, batch_result_t *res)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_SUBMIT);
    if (!req) {
        fprintf(stderr, "ztask: out of memory\n");
        abort();
    }
    req->job = res->job;
    if (res->job == 0 && opts->job_name)
        req->name = xstrdup(opts->job_name);
    if (res->job == 0 && opts->ndeps > 0) {
        req->deps = xmalloc((size_t) opts->ndeps * sizeof *req->deps);
        memcpy(req->deps, opts->deps, (size_t) opts->ndeps * sizeof *req->deps);
        req->ndeps = opts->ndeps;
    }
    if (res->job == 0) {
        req->max_running = opts->max_running;
        req->definition = opts->definition ? xstrdup(opts->definition) : NULL;
    }
    req->more = more;
    if (opts->key) {
        char key[PROTO_MAX_KEY + 1];
        snprintf(key, sizeof key, "%s.%d", opts->key, res->requests);
        req->key = xstrdup(key);
    }
    req->tasks = p->specs;
    req->ntasks = p->n;
    int64_t job = 0;
    int rc = send(arg, req, &job);
    /* The specs stay ours: detach them before the request is destroyed. */
    req->tasks = NULL;
    req->ntasks = 0;
    proto_req_destroy(&req);
    if (rc != 0) {
        res->send_failed = true;
        return -1;
    }
    if (res->job == 0)
        res->job = job;
    res->submitted += p->n;
    res->requests++;
    s_pending_clear(p);
    return 0;
}

int batch_run(taskgen_t *gen, const batch_opts_t *opts, batch_send_fn send, void *arg,
              batch_result_t *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    int max_specs = opts->max_specs > 0 ? opts->max_specs : BATCH_MAX_SPECS;
    if (max_specs > PROTO_MAX_SUBMIT_BATCH)
        max_specs = PROTO_MAX_SUBMIT_BATCH;
    size_t max_bytes = opts->max_bytes > 0 ? opts->max_bytes : BATCH_MAX_BYTES;
    /* One spec must fit a request and, alone, a worker's message. */
    size_t hard_limit = PROTO_MAX_API_MSG - ENVELOPE_BYTES;
    if (hard_limit > (size_t) PROTO_MAX_TASK_SPEC)
        hard_limit = PROTO_MAX_TASK_SPEC;
    if (max_bytes > hard_limit)
        max_bytes = hard_limit;

    pending_t p = { xcalloc((size_t) max_specs, sizeof(proto_spec_t *)), 0, 0 };
    int rc = -1;
    int64_t seen = 0;
    for (;;) {
        proto_spec_t *spec = NULL;
        int got = taskgen_next(gen, &spec, err, errlen);
        if (got < 0)
            goto out;
        if (got == 0)
            break;
        seen++;
        /* The exact encoded size: specs are encoded once more inside the
           request, but measuring is what keeps a batch under the limit
           whatever the user's stdin or args weigh. */
        char *text = proto_spec_encode(spec);
        size_t size = text ? strlen(text) + 1 : 0;
        free(text);
        if (size == 0 || size > hard_limit) {
            snprintf(err, errlen,
                     "task %lld is %zu bytes once encoded (stdin and env escaped as JSON); a "
                     "request carries, and a worker accepts, at most %zu: give big inputs as "
                     "files the workers can read",
                     (long long) seen, size, hard_limit);
            proto_spec_destroy(&spec);
            goto out;
        }
        /* A full batch is sent only now that we know another spec
           follows, which is what makes its "more" flag true. */
        if (p.n == max_specs || (p.n > 0 && p.bytes + size > max_bytes)) {
            if (s_flush(&p, true, opts, send, arg, res) != 0) {
                proto_spec_destroy(&spec);
                goto out;
            }
        }
        p.specs[p.n] = spec;
        p.n++;
        p.bytes += size;
    }
    if (seen == 0) {
        snprintf(err, errlen, "no tasks to submit");
        goto out;
    }
    if (s_flush(&p, false, opts, send, arg, res) != 0)
        goto out;
    rc = 0;
out:
    s_pending_clear(&p);
    free(p.specs);
    return rc;
}
