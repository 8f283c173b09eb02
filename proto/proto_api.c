/*  API channel requests (client or worker DEALER -> master ROUTER). */
#include "proto_hooks.h"
#include "proto_reader.h"
#include "proto_text.h"
#include "proto_writer.h"

#include "../common/util.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_LIMIT 1000
#define MAX_LIMIT 10000
#define MAX_THREADS 65536
#define MAX_LABELS 256
#define MAX_FUNCTIONS 4096

static const char *const s_req_names[] = {
    [PROTO_REQ_SUBMIT] = "submit",   [PROTO_REQ_STATUS] = "status", [PROTO_REQ_JOBS] = "jobs",
    [PROTO_REQ_RESULTS] = "results", [PROTO_REQ_LOGS] = "logs",     [PROTO_REQ_CANCEL] = "cancel",
    [PROTO_REQ_WORKERS] = "workers", [PROTO_REQ_DRAIN] = "drain",   [PROTO_REQ_STATS] = "stats",
    [PROTO_REQ_FORGET] = "forget",   [PROTO_REQ_HELLO] = "hello",    [PROTO_REQ_ALLOC] = "alloc",
    [PROTO_REQ_RETRY] = "retry",     [PROTO_REQ_HOLD] = "hold",      [PROTO_REQ_RELEASE] = "release",
    [PROTO_REQ_PRIORITY] = "priority", [PROTO_REQ_LIMIT] = "limit", [PROTO_REQ_SHOW] = "show",
    [PROTO_REQ_TASKS] = "running",   [PROTO_REQ_WAITING] = "waiting",
};
#define NREQ (sizeof s_req_names / sizeof *s_req_names)
static const pj_types_t s_req_types = { s_req_names, NREQ, "request type" };

const char *proto_req_type_name(proto_req_type_t t)
{
    return (t >= PROTO_REQ_SUBMIT && (size_t) t < NREQ) ? s_req_names[t] : NULL;
}

proto_req_t *proto_req_new(proto_req_type_t type)
{
    proto_req_t *req = xcalloc(1, sizeof *req);
    req->type = type;
    req->index = -1;
    req->limit = DEFAULT_LIMIT;
    return req;
}

void proto_req_destroy(proto_req_t **p)
{
    if (!p || !*p)
        return;
    proto_req_t *r = *p;
    free(r->worker);
    free(r->name);
    free(r->key);
    if (r->tasks) {
        for (int i = 0; i < r->ntasks; i++)
            proto_spec_destroy(&r->tasks[i]);
        free(r->tasks);
    }
    free(r->host);
    pu_strv_free(r->labels, r->nlabels);
    pu_strv_free(r->functions, r->nfunctions);
    proto_refs_free(r->running, r->nrunning);
    free(r->deps);
    free(r->resources);
    pu_strv_free(r->gpu_ids, r->ngpu_ids);
    free(r->indexes);
    free(r->definition);
    proto_refs_free(r->ended, r->nended);
    free(r->slurm_job);
    proto_alloc_destroy(&r->queue);
    free(r);
    *p = NULL;
}

/* ---------------------------------------------------------------- decode */

/* The job ids of member key (an array of job ids), as dependencies of
   kind, appended to req->deps; PROTO_MAX_DEPS in all. */
static int s_deps_from(const cJSON *o, const char *key, proto_dep_kind_t kind, proto_req_t *req,
                       proto_err_t *err)
{
    cJSON *arr;
    if (pj_array(o, key, false, PROTO_MAX_DEPS, &arr, err) != 0)
        return -1;
    if (!arr)
        return 0;
    for (cJSON *e = arr->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 1 || e->valuedouble > PJ_MAX_SAFE_INT
            || e->valuedouble != (double) (int64_t) e->valuedouble) {
            proto_err_set(err, PROTO_E_FIELD, "field \"%s\" must be an array of job ids", key);
            return -1;
        }
        if (req->ndeps == PROTO_MAX_DEPS) {
            proto_err_set(err, PROTO_E_TOO_BIG, "a job may depend on at most %d jobs",
                          PROTO_MAX_DEPS);
            return -1;
        }
        req->deps = xrealloc(req->deps, (size_t) (req->ndeps + 1) * sizeof *req->deps);
        req->deps[req->ndeps++] = (proto_dep_t){.job = (int64_t) e->valuedouble, .kind = kind};
    }
    return 0;
}

/* The submit members of each dependency kind. */
static const struct {
    const char *key;
    proto_dep_kind_t kind;
} s_dep_keys[] = {
    {"after", PROTO_DEP_OK}, {"after_any", PROTO_DEP_ANY}, {"after_each", PROTO_DEP_EACH}};

bool proto_key_valid(const char *key)
{
    size_t n = key ? strlen(key) : 0;
    if (n < 1 || n > PROTO_MAX_KEY)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

static int s_submit_from(cJSON *o, proto_req_t *req, proto_err_t *err)
{
    cJSON *arr;
    if (pj_i64(o, "job", false, 0, PJ_MAX_SAFE_INT, &req->job, err) != 0
        || pj_str(o, "name", false, 1, PROTO_MAX_NAME, &req->name, err) != 0
        || pj_bool(o, "more", false, &req->more, err) != 0
        || pj_str(o, "key", false, 1, PROTO_MAX_KEY, &req->key, err) != 0
        || pj_int(o, "wait_ms", false, 0, PROTO_MAX_WAIT_MS, &req->wait_ms, err) != 0
        || pj_int(o, "max_running", false, 0, PROTO_MAX_RUNNING_LIMIT, &req->max_running, err)
               != 0
        || pj_array(o, "tasks", false, PROTO_MAX_SUBMIT_BATCH, &arr, err) != 0)
        return -1;
    for (size_t i = 0; i < sizeof s_dep_keys / sizeof *s_dep_keys; i++)
        if (s_deps_from(o, s_dep_keys[i].key, s_dep_keys[i].kind, req, err) != 0)
            return -1;
    if (req->ndeps && req->job) {
        proto_err_set(err, PROTO_E_FIELD,
                      "dependencies (\"after\") go with a job's first batch (\"job\": 0)");
        return -1;
    }
    const cJSON *def = pj_get(o, "definition");
    if (def && !cJSON_IsObject(def)) {
        proto_err_set(err, PROTO_E_FIELD, "field \"definition\" must be an object");
        return -1;
    }
    if (pj_json(o, "definition", &req->definition, err) != 0)
        return -1;
    if (req->definition && strlen(req->definition) > PROTO_MAX_DEFINITION) {
        proto_err_set(err, PROTO_E_TOO_BIG, "field \"definition\" is over %d bytes",
                      PROTO_MAX_DEFINITION);
        return -1;
    }
    if (req->key && !proto_key_valid(req->key)) {
        proto_err_set(err, PROTO_E_FIELD,
                      "\"key\" takes 1..%d of A-Z a-z 0-9 . _ : -", PROTO_MAX_KEY);
        return -1;
    }
    if (req->wait_ms > 0 && req->more) {
        proto_err_set(err, PROTO_E_FIELD,
                      "\"wait_ms\" needs the job's last batch (\"more\": false): a job with "
                      "batches still to come cannot finish");
        return -1;
    }
    int n = arr ? cJSON_GetArraySize(arr) : 0;
    if (n == 0)
        return 0;
    req->tasks = xcalloc((size_t) n, sizeof *req->tasks);
    for (cJSON *e = arr->child; e; e = e->next) {
        req->tasks[req->ntasks] = ps_spec_from(e, err);
        if (!req->tasks[req->ntasks]) {
            pj_err_prefix(err, "tasks[%d]", req->ntasks);
            return -1;
        }
        req->ntasks++;
    }
    return 0;
}

static int s_logs_from(cJSON *o, proto_req_t *req, proto_err_t *err)
{
    if (pj_i64(o, "task", false, 1, PJ_MAX_SAFE_INT, &req->task, err) != 0
        || pj_i64(o, "job", false, 1, PJ_MAX_SAFE_INT, &req->job, err) != 0
        || pj_i64(o, "index", false, 0, PJ_MAX_SAFE_INT, &req->index, err) != 0
        || pj_i64(o, "out_offset", false, 0, PJ_MAX_SAFE_INT, &req->out_offset, err) != 0
        || pj_i64(o, "err_offset", false, 0, PJ_MAX_SAFE_INT, &req->err_offset, err) != 0)
        return -1;
    if (req->task == 0 && (req->job == 0 || req->index < 0)) {
        proto_err_set(err, PROTO_E_FIELD, "logs needs \"task\", or \"job\" and \"index\"");
        return -1;
    }
    return 0;
}

/* cancel, hold, release: a job, one task of it by index, or a task. */
static int s_cancel_from(cJSON *o, proto_req_t *req, proto_err_t *err)
{
    if (pj_i64(o, "job", false, 1, PJ_MAX_SAFE_INT, &req->job, err) != 0
        || pj_i64(o, "task", false, 1, PJ_MAX_SAFE_INT, &req->task, err) != 0
        || pj_i64(o, "index", false, 0, PJ_MAX_SAFE_INT, &req->index, err) != 0
        || pj_bool(o, "with_dependants", false, &req->with_dependants, err) != 0)
        return -1;
    if (req->task == 0 && req->job == 0) {
        proto_err_set(err, PROTO_E_FIELD, "%s needs \"job\" or \"task\"",
                      proto_req_type_name(req->type));
        return -1;
    }
    if (req->index >= 0 && req->job == 0) {
        proto_err_set(err, PROTO_E_FIELD, "field \"index\" needs \"job\"");
        return -1;
    }
    return 0;
}

static int s_retry_from(cJSON *o, proto_req_t *req, proto_err_t *err)
{
    return pj_i64(o, "job", true, 1, PJ_MAX_SAFE_INT, &req->job, err) != 0
                   || pj_bool(o, "failed", false, &req->retry_failed, err) != 0
                   || pj_bool(o, "cancelled", false, &req->retry_cancelled, err) != 0
                   || pj_i64_array(o, "indexes", false, PROTO_MAX_INDEXES, 0, PJ_MAX_SAFE_INT,
                                   &req->indexes, &req->nindexes, err) != 0
               ? -1
               : 0;
}

static int s_hello_from(cJSON *o, proto_req_t *req, proto_err_t *err)
{
    if (pj_str(o, "name", false, 1, PROTO_MAX_NAME, &req->name, err) != 0
        || pj_str(o, "host", true, 1, PROTO_MAX_NAME, &req->host, err) != 0
        || pj_int(o, "pid", false, 0, INT32_MAX, &req->pid, err) != 0
        || pj_int(o, "threads", true, 1, MAX_THREADS, &req->threads, err) != 0
        || pj_str_array(o, "labels", false, MAX_LABELS, 1, PROTO_MAX_NAME, &req->labels,
                        &req->nlabels, err) != 0
        || pj_refs(o, "running", false, &req->running, &req->nrunning, err) != 0
        || pj_refs(o, "ended", false, &req->ended, &req->nended, err) != 0
        || pj_bool(o, "no_exec", false, &req->no_exec, err) != 0
        || pj_bool(o, "recall", false, &req->recall, err) != 0
        || pj_bool(o, "resend", false, &req->resend, err) != 0
        || ps_resources_from(o, "resources", &req->resources, err) != 0
        || pj_str_array(o, "gpu_ids", false, 64, 1, 32, &req->gpu_ids, &req->ngpu_ids, err) != 0
        || pj_str_array(o, "functions", false, MAX_FUNCTIONS, 1, PROTO_MAX_NAME,
                        &req->functions, &req->nfunctions, err) != 0
        || pj_str(o, "slurm_job", false, 1, 64, &req->slurm_job, err) != 0
        || pj_dbl(o, "ends_at", false, 0, 1e12, &req->ends_at, err) != 0)
        return -1;
    return 0;
}

static int s_alloc_from(cJSON *o, proto_req_t *req, proto_err_t *err)
{
    if (pa_op_from(o, "op", &req->alloc_op, err) != 0
        || pj_i64(o, "alloc", false, 1, PJ_MAX_SAFE_INT, &req->alloc, err) != 0
        || pj_bool(o, "force", false, &req->force, err) != 0)
        return -1;
    cJSON *q = pj_get(o, "queue");
    if (req->alloc_op == PROTO_ALLOC_OP_ADD) {
        if (!q) {
            proto_err_set(err, PROTO_E_FIELD, "alloc \"add\" needs \"queue\"");
            return -1;
        }
        req->queue = xcalloc(1, sizeof *req->queue);
        if (pa_alloc_from(q, req->queue, err) != 0) {
            pj_err_prefix(err, "queue");
            return -1;
        }
        return 0;
    }
    if (req->alloc_op != PROTO_ALLOC_OP_LIST && req->alloc == 0) {
        proto_err_set(err, PROTO_E_FIELD, "alloc \"%s\" needs \"alloc\" (a queue id)",
                      proto_alloc_op_name(req->alloc_op));
        return -1;
    }
    return 0;
}

static int s_fields_from(cJSON *o, proto_req_t *req, proto_err_t *err)
{
    switch (req->type) {
    case PROTO_REQ_SUBMIT:
        return s_submit_from(o, req, err);
    case PROTO_REQ_STATUS:
        if (pj_i64(o, "job", false, 0, PJ_MAX_SAFE_INT, &req->job, err) != 0
            || pj_int(o, "wait_ms", false, 0, PROTO_MAX_WAIT_MS, &req->wait_ms, err) != 0
            || pj_bool(o, "all", false, &req->all, err) != 0)
            return -1;
        if (req->wait_ms > 0 && req->job == 0) {
            proto_err_set(err, PROTO_E_FIELD, "\"wait_ms\" needs \"job\" (one job to wait for)");
            return -1;
        }
        return 0;
    case PROTO_REQ_RESULTS:
        return pj_i64(o, "job", true, 1, PJ_MAX_SAFE_INT, &req->job, err) != 0
                       || pj_i64(o, "after", false, 0, PJ_MAX_SAFE_INT, &req->after, err) != 0
                       || pj_int(o, "limit", false, 1, MAX_LIMIT, &req->limit, err) != 0
                       || pj_bool(o, "failed_only", false, &req->failed_only, err) != 0
                   ? -1
                   : 0;
    case PROTO_REQ_LOGS:
        return s_logs_from(o, req, err);
    case PROTO_REQ_CANCEL:
    case PROTO_REQ_HOLD:
    case PROTO_REQ_RELEASE:
        return s_cancel_from(o, req, err);
    case PROTO_REQ_PRIORITY: {
        int64_t p = 0;
        if (pj_i64(o, "job", true, 1, PJ_MAX_SAFE_INT, &req->job, err) != 0
            || pj_i64(o, "priority", true, INT32_MIN, INT32_MAX, &p, err) != 0)
            return -1;
        req->priority = (int32_t) p;
        return 0;
    }
    case PROTO_REQ_LIMIT:
        return pj_i64(o, "job", true, 1, PJ_MAX_SAFE_INT, &req->job, err) != 0
                       || pj_int(o, "max_running", true, 0, PROTO_MAX_RUNNING_LIMIT,
                                 &req->max_running, err) != 0
                   ? -1
                   : 0;
    case PROTO_REQ_DRAIN:
        return pj_str(o, "worker", true, 1, PROTO_MAX_NAME, &req->worker, err);
    case PROTO_REQ_FORGET:
    case PROTO_REQ_SHOW:
        return pj_i64(o, "job", true, 1, PJ_MAX_SAFE_INT, &req->job, err);
    case PROTO_REQ_HELLO:
        return s_hello_from(o, req, err);
    case PROTO_REQ_RETRY:
        return s_retry_from(o, req, err);
    case PROTO_REQ_JOBS:
        return pj_bool(o, "all", false, &req->all, err);
    case PROTO_REQ_TASKS:
        return pj_i64(o, "job", false, 0, PJ_MAX_SAFE_INT, &req->job, err) != 0
                       || pj_str(o, "worker", false, 1, PROTO_MAX_NAME, &req->worker, err) != 0
                       || pj_bool(o, "all", false, &req->all, err) != 0
                   ? -1
                   : 0;
    case PROTO_REQ_WAITING:
        return pj_i64(o, "job", false, 0, PJ_MAX_SAFE_INT, &req->job, err) != 0
                       || pj_bool(o, "all", false, &req->all, err) != 0
                   ? -1
                   : 0;
    case PROTO_REQ_ALLOC:
        return s_alloc_from(o, req, err);
    case PROTO_REQ_WORKERS:
    case PROTO_REQ_STATS:
        return 0;
    }
    return 0;
}

proto_req_t *proto_req_decode(const char *buf, size_t len, proto_err_t *err)
{
    proto_req_t *req = pf_submit(buf, len);
    return req ? req : pr_req_decode_tree(buf, len, err);
}

proto_req_t *pr_req_decode_tree(const char *buf, size_t len, proto_err_t *err)
{
    int type;
    cJSON *root = pj_parse_typed(buf, len, PROTO_MAX_API_MSG, &s_req_types, &type, err);
    if (!root)
        return NULL;
    proto_req_t *req = proto_req_new((proto_req_type_t) type);
    if (s_fields_from(root, req, err) != 0)
        proto_req_destroy(&req);
    cJSON_Delete(root);
    return req;
}

/* ---------------------------------------------------------------- encode */

char *proto_req_encode(const proto_req_t *req)
{
    if (!req || !proto_req_type_name(req->type))
        return NULL;
    pb_t b;
    pb_init(&b, req->type == PROTO_REQ_SUBMIT ? 256 + (size_t) req->ntasks * 128 : 128);
    pb_open(&b, proto_req_type_name(req->type));
    switch (req->type) {
    case PROTO_REQ_SUBMIT:
        pb_ki64(&b, "job", req->job);
        if (req->name)
            pb_kstr(&b, "name", req->name);
        pb_key(&b, "tasks");
        pb_char(&b, '[');
        for (int i = 0; req->tasks && i < req->ntasks; i++) {
            pb_sep(&b);
            ps_spec_write(&b, req->tasks[i]);
        }
        pb_char(&b, ']');
        pb_kbool(&b, "more", req->more);
        if (req->key)
            pb_kstr(&b, "key", req->key);
        if (req->wait_ms > 0)
            pb_ki64(&b, "wait_ms", req->wait_ms);
        for (size_t k = 0; k < sizeof s_dep_keys / sizeof *s_dep_keys; k++) {
            bool any = false;
            for (int i = 0; i < req->ndeps; i++) {
                if (req->deps[i].kind != s_dep_keys[k].kind)
                    continue;
                if (!any) {
                    pb_key(&b, s_dep_keys[k].key);
                    pb_char(&b, '[');
                }
                pb_sep(&b);
                pb_i64(&b, req->deps[i].job);
                any = true;
            }
            if (any)
                pb_char(&b, ']');
        }
        if (req->max_running > 0)
            pb_ki64(&b, "max_running", req->max_running);
        if (req->definition) {
            pb_key(&b, "definition");
            pb_json(&b, req->definition);
        }
        break;
    case PROTO_REQ_STATUS:
        pb_ki64(&b, "job", req->job);
        if (req->wait_ms > 0)
            pb_ki64(&b, "wait_ms", req->wait_ms);
        if (req->all)
            pb_kbool(&b, "all", true);
        break;
    case PROTO_REQ_JOBS:
        if (req->all)
            pb_kbool(&b, "all", true);
        break;
    case PROTO_REQ_TASKS:
        if (req->job > 0)
            pb_ki64(&b, "job", req->job);
        if (req->worker)
            pb_kstr(&b, "worker", req->worker);
        if (req->all)
            pb_kbool(&b, "all", true);
        break;
    case PROTO_REQ_WAITING:
        if (req->job > 0)
            pb_ki64(&b, "job", req->job);
        if (req->all)
            pb_kbool(&b, "all", true);
        break;
    case PROTO_REQ_FORGET:
    case PROTO_REQ_SHOW:
        pb_ki64(&b, "job", req->job);
        break;
    case PROTO_REQ_RESULTS:
        pb_ki64(&b, "job", req->job);
        pb_ki64(&b, "after", req->after);
        pb_ki64(&b, "limit", req->limit);
        pb_kbool(&b, "failed_only", req->failed_only);
        break;
    case PROTO_REQ_LOGS:
    case PROTO_REQ_CANCEL:
    case PROTO_REQ_HOLD:
    case PROTO_REQ_RELEASE:
        if (req->task > 0)
            pb_ki64(&b, "task", req->task);
        if (req->job > 0)
            pb_ki64(&b, "job", req->job);
        if (req->index >= 0)
            pb_ki64(&b, "index", req->index);
        if (req->with_dependants)
            pb_kbool(&b, "with_dependants", true);
        if (req->type == PROTO_REQ_LOGS) {
            pb_ki64(&b, "out_offset", req->out_offset);
            pb_ki64(&b, "err_offset", req->err_offset);
        }
        break;
    case PROTO_REQ_DRAIN:
        pb_kstr(&b, "worker", req->worker);
        break;
    case PROTO_REQ_HELLO:
        if (req->name)
            pb_kstr(&b, "name", req->name);
        pb_kstr(&b, "host", req->host);
        pb_ki64(&b, "pid", req->pid);
        pb_ki64(&b, "threads", req->threads);
        pb_key(&b, "labels");
        pb_strv(&b, req->labels, req->nlabels);
        pb_key(&b, "running");
        pb_refs(&b, req->running, req->nrunning);
        if (req->nended) {
            pb_key(&b, "ended");
            pb_refs(&b, req->ended, req->nended);
        }
        pb_kbool(&b, "no_exec", req->no_exec);
        if (req->recall)
            pb_kbool(&b, "recall", true);
        if (req->resend)
            pb_kbool(&b, "resend", true);
        ps_resources_write(&b, "resources", req->resources);
        if (req->ngpu_ids > 0) {
            pb_key(&b, "gpu_ids");
            pb_strv(&b, req->gpu_ids, req->ngpu_ids);
        }
        if (req->nfunctions) {
            pb_key(&b, "functions");
            pb_strv(&b, req->functions, req->nfunctions);
        }
        if (req->slurm_job)
            pb_kstr(&b, "slurm_job", req->slurm_job);
        if (req->ends_at > 0)
            pb_kdbl(&b, "ends_at", req->ends_at);
        break;
    case PROTO_REQ_ALLOC:
        pb_kstr(&b, "op", proto_alloc_op_name(req->alloc_op));
        if (req->alloc > 0)
            pb_ki64(&b, "alloc", req->alloc);
        if (req->force)
            pb_kbool(&b, "force", true);
        if (req->queue) {
            pb_key(&b, "queue");
            pa_alloc_write(&b, req->queue);
        }
        break;
    case PROTO_REQ_PRIORITY:
        pb_ki64(&b, "job", req->job);
        pb_ki64(&b, "priority", req->priority);
        break;
    case PROTO_REQ_LIMIT:
        pb_ki64(&b, "job", req->job);
        pb_ki64(&b, "max_running", req->max_running);
        break;
    case PROTO_REQ_RETRY:
        pb_ki64(&b, "job", req->job);
        if (req->retry_failed)
            pb_kbool(&b, "failed", true);
        if (req->retry_cancelled)
            pb_kbool(&b, "cancelled", true);
        if (req->indexes) {
            pb_key(&b, "indexes");
            pb_i64v(&b, req->indexes, req->nindexes);
        }
        break;
    case PROTO_REQ_WORKERS:
    case PROTO_REQ_STATS:
        break;
    }
    pb_char(&b, '}');
    return pb_take(&b);
}
