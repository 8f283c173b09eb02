/*  Worker allocation queue records (proto.h: "Worker allocation queues"):
    written in `alloc` requests and replies, and as the store's text of a
    queue. The ranges checked here are the ones docs/protocol.md gives. */
#include "proto_hooks.h"
#include "proto_reader.h"
#include "proto_text.h"
#include "proto_writer.h"

#include "../common/util.h"

#include <stdlib.h>
#include <string.h>

#define MAX_WORKERS 100000
#define MAX_PER_ALLOC 1024
#define MAX_BACKLOG 1000
#define MAX_TIME_S (366 * 86400)

static const char *const s_states[] = {
    [PROTO_ALLOC_QUEUED] = "queued",
    [PROTO_ALLOC_RUNNING] = "running",
    [PROTO_ALLOC_ENDED] = "ended",
};

static const char *const s_ops[] = {
    [PROTO_ALLOC_OP_ADD] = "add",       [PROTO_ALLOC_OP_LIST] = "list",
    [PROTO_ALLOC_OP_PAUSE] = "pause",   [PROTO_ALLOC_OP_RESUME] = "resume",
    [PROTO_ALLOC_OP_REMOVE] = "remove",
};

#define NSTATES (int) (sizeof s_states / sizeof *s_states)
#define NOPS (int) (sizeof s_ops / sizeof *s_ops)

const char *proto_alloc_state_name(proto_alloc_state_t s)
{
    return (int) s >= 1 && (int) s < NSTATES ? s_states[s] : NULL;
}

const char *proto_alloc_op_name(proto_alloc_op_t op)
{
    return (int) op >= 1 && (int) op < NOPS ? s_ops[op] : NULL;
}

/* Member k as one of names[1..n-1]; absent and !req leaves *out. */
static int s_enum(cJSON *o, const char *k, bool req, const char *const *names, int n, int *out,
                  proto_err_t *err)
{
    char *v = NULL;
    if (pj_str(o, k, req, 1, 32, &v, err) != 0)
        return -1;
    if (!v)
        return 0;
    for (int i = 1; i < n; i++)
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            free(v);
            return 0;
        }
    proto_err_set(err, PROTO_E_FIELD, "field \"%s\": unknown value \"%.32s\"", k, v);
    free(v);
    return -1;
}

int pa_op_from(cJSON *o, const char *k, proto_alloc_op_t *op, proto_err_t *err)
{
    int v = 0;
    if (s_enum(o, k, true, s_ops, NOPS, &v, err) != 0)
        return -1;
    *op = (proto_alloc_op_t) v;
    return 0;
}

void proto_alloc_clear(proto_alloc_t *q)
{
    if (!q)
        return;
    free(q->name);
    free(q->engine);
    pu_strv_free(q->args, q->nargs);
    pu_strv_free(q->worker_args, q->nworker_args);
    free(q->last_error);
    for (int i = 0; q->allocs && i < q->nallocs; i++)
        free(q->allocs[i].id);
    free(q->allocs);
    memset(q, 0, sizeof *q);
}

void proto_alloc_destroy(proto_alloc_t **p)
{
    if (!p || !*p)
        return;
    proto_alloc_clear(*p);
    free(*p);
    *p = NULL;
}

void pa_alloc_write(pb_t *b, const proto_alloc_t *q)
{
    pb_char(b, '{');
    pb_ki64(b, "id", q->id);
    pb_kstr(b, "name", q->name);
    pb_kstr(b, "engine", q->engine);
    pb_ki64(b, "max_workers", q->max_workers);
    pb_ki64(b, "workers_per_alloc", q->workers_per_alloc);
    pb_ki64(b, "backlog", q->backlog);
    pb_ki64(b, "time_limit_s", q->time_limit_s);
    pb_ki64(b, "idle_timeout_s", q->idle_timeout_s);
    pb_key(b, "args");
    pb_strv(b, q->args, q->nargs);
    pb_key(b, "worker_args");
    pb_strv(b, q->worker_args, q->nworker_args);
    pb_kbool(b, "paused", q->paused);
    pb_ki64(b, "submitted", q->submitted);
    pb_ki64(b, "failures", q->failures);
    pb_ki64(b, "failing", q->failing);
    pb_kstr(b, "last_error", q->last_error);
    pb_ktime(b, "retry_at", q->retry_at);
    pb_key(b, "allocations");
    pb_char(b, '[');
    for (int i = 0; q->allocs && i < q->nallocs; i++) {
        const proto_allocation_t *a = &q->allocs[i];
        pb_sep(b);
        pb_char(b, '{');
        pb_kstr(b, "id", a->id);
        pb_kstr(b, "state", proto_alloc_state_name(a->state));
        pb_ktime(b, "submitted", a->submitted);
        pb_ktime(b, "started", a->started);
        pb_ktime(b, "ended", a->ended);
        pb_kbool(b, "had_worker", a->had_worker);
        pb_ki64(b, "workers", a->workers);
        pb_char(b, '}');
    }
    pb_char(b, ']');
    pb_char(b, '}');
}

static int s_allocation_from(cJSON *o, proto_allocation_t *a, proto_err_t *err)
{
    int state = 0;
    if (!cJSON_IsObject(o)) {
        proto_err_set(err, PROTO_E_FIELD, "an allocation must be an object");
        return -1;
    }
    if (pj_str(o, "id", true, 1, 64, &a->id, err) != 0
        || s_enum(o, "state", true, s_states, NSTATES, &state, err) != 0
        || pj_dbl(o, "submitted", false, 0, 1e300, &a->submitted, err) != 0
        || pj_dbl(o, "started", false, 0, 1e300, &a->started, err) != 0
        || pj_dbl(o, "ended", false, 0, 1e300, &a->ended, err) != 0
        || pj_bool(o, "had_worker", false, &a->had_worker, err) != 0
        || pj_int(o, "workers", false, 0, MAX_PER_ALLOC, &a->workers, err) != 0)
        return -1;
    a->state = (proto_alloc_state_t) state;
    return 0;
}

/* A queue record; what a client sends in `add` is checked like what the
   store holds: the same limits. */
int pa_alloc_from(cJSON *o, proto_alloc_t *q, proto_err_t *err)
{
    cJSON *arr;
    if (!cJSON_IsObject(o)) {
        proto_err_set(err, PROTO_E_FIELD, "an allocation queue must be an object");
        return -1;
    }
    q->workers_per_alloc = 1;
    q->backlog = 1;
    if (pj_i64(o, "id", false, 0, PJ_MAX_SAFE_INT, &q->id, err) != 0
        || pj_str(o, "name", false, 1, PROTO_MAX_NAME, &q->name, err) != 0
        || pj_str(o, "engine", true, 1, 32, &q->engine, err) != 0
        || pj_int(o, "max_workers", true, 1, MAX_WORKERS, &q->max_workers, err) != 0
        || pj_int(o, "workers_per_alloc", false, 1, MAX_PER_ALLOC, &q->workers_per_alloc, err)
               != 0
        || pj_int(o, "backlog", false, 1, MAX_BACKLOG, &q->backlog, err) != 0
        || pj_int(o, "time_limit_s", true, 60, MAX_TIME_S, &q->time_limit_s, err) != 0
        || pj_int(o, "idle_timeout_s", true, 1, PROTO_MAX_IDLE_S, &q->idle_timeout_s, err) != 0
        || pj_str_array(o, "args", false, PROTO_MAX_ALLOC_ARGS, 1, PROTO_MAX_ALLOC_ARG, &q->args,
                        &q->nargs, err) != 0
        || pj_str_array(o, "worker_args", false, PROTO_MAX_ALLOC_ARGS, 1, PROTO_MAX_ALLOC_ARG,
                        &q->worker_args, &q->nworker_args, err) != 0
        || pj_bool(o, "paused", false, &q->paused, err) != 0
        || pj_i64(o, "submitted", false, 0, PJ_MAX_SAFE_INT, &q->submitted, err) != 0
        || pj_i64(o, "failures", false, 0, PJ_MAX_SAFE_INT, &q->failures, err) != 0
        || pj_int(o, "failing", false, 0, INT32_MAX, &q->failing, err) != 0
        || pj_str(o, "last_error", false, 0, 4096, &q->last_error, err) != 0
        || pj_dbl(o, "retry_at", false, 0, 1e300, &q->retry_at, err) != 0
        || pj_array(o, "allocations", false, PROTO_MAX_ALLOCATIONS, &arr, err) != 0)
        return -1;
    if (strcmp(q->engine, "slurm") != 0) {
        proto_err_set(err, PROTO_E_FIELD,
                      "field \"engine\": \"%.32s\" is not supported (the one engine is \"slurm\")",
                      q->engine);
        return -1;
    }
    if (q->workers_per_alloc > q->max_workers) {
        proto_err_set(err, PROTO_E_FIELD,
                      "\"workers_per_alloc\" (%d) is more than \"max_workers\" (%d)",
                      q->workers_per_alloc, q->max_workers);
        return -1;
    }
    int n = arr ? cJSON_GetArraySize(arr) : 0;
    if (n > 0) {
        q->allocs = xcalloc((size_t) n, sizeof *q->allocs);
        for (cJSON *e = arr->child; e; e = e->next) {
            /* Counted first: a half-read one is freed with the rest. */
            q->nallocs++;
            if (s_allocation_from(e, &q->allocs[q->nallocs - 1], err) != 0) {
                pj_err_prefix(err, "allocations[%d]", q->nallocs - 1);
                return -1;
            }
        }
    }
    return 0;
}

char *proto_alloc_encode(const proto_alloc_t *q)
{
    pb_t b;
    pb_init(&b, 512 + (size_t) q->nallocs * 128);
    pa_alloc_write(&b, q);
    return pb_take(&b);
}

proto_alloc_t *proto_alloc_decode(const char *json, size_t len, proto_err_t *err)
{
    cJSON *root = pj_parse(json, len, PROTO_MAX_API_MSG, err);
    if (!root)
        return NULL;
    proto_alloc_t *q = xcalloc(1, sizeof *q);
    if (pa_alloc_from(root, q, err) != 0)
        proto_alloc_destroy(&q);
    cJSON_Delete(root);
    return q;
}
