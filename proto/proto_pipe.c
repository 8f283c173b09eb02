/*  PIPE channel: what the master pushes down one worker's task pipe. */
#include "proto_hooks.h"
#include "proto_reader.h"
#include "proto_text.h"
#include "proto_writer.h"

#include "../common/util.h"

#include <stdlib.h>
#include <string.h>

static const char *const s_pipe_names[] = {
    [PROTO_PIPE_TASKS] = "tasks",
    [PROTO_PIPE_ABORT] = "abort",
    [PROTO_PIPE_DRAIN] = "drain",
    [PROTO_PIPE_PING] = "ping",
    [PROTO_PIPE_RECALL] = "recall",
};
#define NPIPE (sizeof s_pipe_names / sizeof *s_pipe_names)
static const pj_types_t s_pipe_types = { s_pipe_names, NPIPE, "task pipe message type" };

proto_pipe_t *proto_pipe_new(proto_pipe_type_t type)
{
    proto_pipe_t *msg = xcalloc(1, sizeof *msg);
    msg->type = type;
    return msg;
}

void proto_pipe_destroy(proto_pipe_t **p)
{
    if (!p || !*p)
        return;
    proto_pipe_t *m = *p;
    for (int i = 0; m->tasks && i < m->ntasks; i++) {
        proto_spec_destroy(&m->tasks[i].spec);
        free(m->tasks[i].gpus);
    }
    free(m->tasks);
    proto_refs_free(m->refs, m->nrefs);
    free(m);
    *p = NULL;
}

static int s_task_from(cJSON *o, proto_task_t *t, proto_err_t *err)
{
    if (!cJSON_IsObject(o)) {
        proto_err_set(err, PROTO_E_FIELD, "task must be an object");
        return -1;
    }
    if (pj_i64(o, "id", true, 1, PJ_MAX_SAFE_INT, &t->id, err) != 0
        || pj_int(o, "attempt", true, 1, PROTO_MAX_ATTEMPT, &t->attempt, err) != 0
        || pj_i64(o, "job", true, 1, PJ_MAX_SAFE_INT, &t->job, err) != 0
        || pj_int(o, "cpus", false, 0, INT32_MAX, &t->cpus, err) != 0
        || pj_str(o, "gpus", false, 1, PROTO_MAX_GPUS_TEXT, &t->gpus, err) != 0)
        return -1;
    /* A token this worker cannot keep costs that task, not the message:
       every other task in it runs (the worker refuses this one). */
    proto_err_t ignored;
    if (pj_claim(o, "claim", t->claim, &ignored) != 0)
        t->claim_refused = true;
    cJSON *spec = pj_get(o, "spec");
    if (!spec) {
        proto_err_set(err, PROTO_E_FIELD, "missing field \"spec\"");
        return -1;
    }
    t->spec = ps_spec_from(spec, err);
    if (!t->spec) {
        pj_err_prefix(err, "spec");
        return -1;
    }
    return 0;
}

static int s_tasks_from(cJSON *o, proto_pipe_t *msg, proto_err_t *err)
{
    cJSON *arr;
    if (pj_array(o, "tasks", true, INT32_MAX, &arr, err) != 0)
        return -1;
    int n = cJSON_GetArraySize(arr);
    if (n == 0)
        return 0;
    msg->tasks = xcalloc((size_t) n, sizeof *msg->tasks);
    for (cJSON *e = arr->child; e; e = e->next) {
        /* Counted first so that destroy frees a half-decoded entry. */
        int i = msg->ntasks++;
        if (s_task_from(e, &msg->tasks[i], err) != 0) {
            pj_err_prefix(err, "tasks[%d]", i);
            return -1;
        }
    }
    return 0;
}

proto_pipe_t *proto_pipe_decode(const char *buf, size_t len, proto_err_t *err)
{
    proto_pipe_t *msg = pf_tasks(buf, len);
    return msg ? msg : pr_pipe_decode_tree(buf, len, err);
}

proto_pipe_t *pr_pipe_decode_tree(const char *buf, size_t len, proto_err_t *err)
{
    int type;
    cJSON *root = pj_parse_typed(buf, len, PROTO_MAX_PIPE_MSG, &s_pipe_types, &type, err);
    if (!root)
        return NULL;
    proto_pipe_t *msg = proto_pipe_new((proto_pipe_type_t) type);
    int rc = 0;
    if (msg->type == PROTO_PIPE_TASKS)
        rc = (s_tasks_from(root, msg, err) != 0
              || pj_i64(root, "seq", false, 1, PROTO_MAX_SEQ, &msg->seq, err) != 0)
                 ? -1
                 : 0;
    else if (msg->type == PROTO_PIPE_ABORT)
        rc = (pj_i64(root, "task", true, 1, PJ_MAX_SAFE_INT, &msg->task, err) != 0
              || pj_int(root, "attempt", true, 1, PROTO_MAX_ATTEMPT, &msg->attempt, err) != 0)
                 ? -1
                 : 0;
    else if (msg->type == PROTO_PIPE_RECALL)
        rc = pj_refs_max(root, "tasks", true, PROTO_MAX_RECALL, &msg->refs, &msg->nrefs, err);
    if (rc != 0)
        proto_pipe_destroy(&msg);
    cJSON_Delete(root);
    return msg;
}

char *proto_pipe_encode(const proto_pipe_t *msg)
{
    if (!msg || msg->type < PROTO_PIPE_TASKS || (size_t) msg->type >= NPIPE)
        return NULL;
    pb_t b;
    pb_init(&b, 64 + (size_t) msg->ntasks * 256 + (size_t) msg->nrefs * 48);
    pb_open(&b, s_pipe_names[msg->type]);
    if (msg->type == PROTO_PIPE_TASKS) {
        pb_key(&b, "tasks");
        pb_char(&b, '[');
        for (int i = 0; msg->tasks && i < msg->ntasks; i++) {
            const proto_task_t *t = &msg->tasks[i];
            pb_sep(&b);
            pb_char(&b, '{');
            pb_ki64(&b, "id", t->id);
            pb_ki64(&b, "attempt", t->attempt);
            pb_ki64(&b, "job", t->job);
            if (t->cpus > 0)
                pb_ki64(&b, "cpus", t->cpus);
            if (t->gpus)
                pb_kstr(&b, "gpus", t->gpus);
            if (t->claim[0])
                pb_kstr(&b, "claim", t->claim);
            pb_key(&b, "spec");
            if (t->spec)
                ps_spec_write(&b, t->spec);
            else
                pb_lit(&b, "null");
            pb_char(&b, '}');
        }
        pb_char(&b, ']');
        if (msg->seq > 0)
            pb_ki64(&b, "seq", msg->seq);
    } else if (msg->type == PROTO_PIPE_ABORT) {
        pb_ki64(&b, "task", msg->task);
        pb_ki64(&b, "attempt", msg->attempt);
    } else if (msg->type == PROTO_PIPE_RECALL) {
        pb_key(&b, "tasks");
        pb_refs(&b, msg->refs, msg->nrefs);
    }
    pb_char(&b, '}');
    return pb_take(&b);
}

/* The master's hot path: stored spec texts are already normalized JSON,
   so they are pasted in as they are. One allocation, sized up front. */
char *proto_pipe_encode_tasks_raw(int n, const int64_t *ids, const int *attempts,
                                  const int64_t *jobs, const char *const *specs)
{
    return proto_pipe_encode_tasks_out(&(proto_tasks_out_t){
        .n = n, .ids = ids, .attempts = attempts, .jobs = jobs, .specs = specs});
}

char *proto_pipe_encode_tasks_out(const proto_tasks_out_t *m)
{
    int n = m->n;
    const int64_t *ids = m->ids, *jobs = m->jobs;
    const int *attempts = m->attempts;
    const char *const *specs = m->specs, *const *grants = m->grants, *const *claims = m->claims;
    int64_t seq = m->seq;
    if (n < 0)
        n = 0;
    size_t total = PROTO_PIPE_ENVELOPE;
    for (int i = 0; i < n; i++)
        total += strlen(specs[i]) + PROTO_PIPE_TASK_OVERHEAD
                 + (grants && grants[i] ? strlen(grants[i]) + 1 : 0)
                 + (claims && claims[i] ? strlen(claims[i]) + sizeof ",\"claim\":\"\"" : 0);
    pb_t b;
    pb_init(&b, total);
    pb_lit(&b, "{\"v\":1,\"type\":\"tasks\",\"tasks\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            pb_char(&b, ',');
        pb_lit(&b, "{\"id\":");
        pb_i64(&b, ids[i]);
        pb_lit(&b, ",\"attempt\":");
        pb_i64(&b, attempts[i]);
        pb_lit(&b, ",\"job\":");
        pb_i64(&b, jobs[i]);
        if (grants && grants[i]) {
            pb_char(&b, ',');
            pb_raw(&b, grants[i], strlen(grants[i]));
        }
        if (claims && claims[i] && claims[i][0]) {
            /* proto_claim_valid: nothing to escape. */
            pb_lit(&b, ",\"claim\":\"");
            pb_raw(&b, claims[i], strlen(claims[i]));
            pb_char(&b, '"');
        }
        pb_lit(&b, ",\"spec\":");
        pb_raw(&b, specs[i], strlen(specs[i]));
        pb_char(&b, '}');
    }
    pb_char(&b, ']');
    if (seq > 0)
        pb_ki64(&b, "seq", seq);   /* after the tasks: the order proto_pipe_encode writes */
    pb_char(&b, '}');
    return pb_take(&b);
}
