/*  REPORT channel: what workers push to the master's one PULL socket. */
#include "proto_hooks.h"
#include "proto_reader.h"
#include "proto_text.h"
#include "proto_writer.h"

#include "../common/util.h"

#include <stdlib.h>
#include <string.h>

static const char *const s_report_names[] = {
    [PROTO_REP_HEARTBEAT] = "heartbeat", [PROTO_REP_STARTED] = "started",
    [PROTO_REP_OUTPUT] = "output",       [PROTO_REP_RESULTS] = "results",
    [PROTO_REP_BYE] = "bye",             [PROTO_REP_RECALLED] = "recalled",
    [PROTO_REP_LOST] = "lost",
};
#define NREPORT (sizeof s_report_names / sizeof *s_report_names)
static const pj_types_t s_report_types = { s_report_names, NREPORT, "report type" };

proto_report_t *proto_report_new(proto_report_type_t type, const char *worker)
{
    proto_report_t *msg = xcalloc(1, sizeof *msg);
    msg->type = type;
    msg->worker = xstrdup(worker);
    return msg;
}

void proto_report_destroy(proto_report_t **p)
{
    if (!p || !*p)
        return;
    proto_report_t *m = *p;
    free(m->worker);
    proto_refs_free(m->running, m->nrunning);
    proto_refs_free(m->recalled, m->nrecalled);
    proto_refs_free(m->lost, m->nlost);
    free(m->started);
    free(m->started_at);
    free(m->data);
    for (int i = 0; m->results && i < m->nresults; i++)
        proto_result_destroy(&m->results[i]);
    free(m->results);
    free(m);
    *p = NULL;
}

static int s_started_from(cJSON *o, proto_report_t *msg, proto_err_t *err)
{
    cJSON *arr;
    if (pj_array(o, "started", true, INT32_MAX, &arr, err) != 0)
        return -1;
    int n = cJSON_GetArraySize(arr);
    if (n == 0)
        return 0;
    msg->started = xcalloc((size_t) n, sizeof *msg->started);
    msg->started_at = xcalloc((size_t) n, sizeof *msg->started_at);
    for (cJSON *e = arr->child; e; e = e->next) {
        int i = msg->nstarted;
        if (!cJSON_IsObject(e)) {
            proto_err_set(err, PROTO_E_FIELD, "started[%d] must be an object", i);
            return -1;
        }
        if (pj_i64(e, "task", true, 1, PJ_MAX_SAFE_INT, &msg->started[i].task, err) != 0
            || pj_int(e, "attempt", true, 1, PROTO_MAX_ATTEMPT, &msg->started[i].attempt, err) != 0
            || pj_dbl(e, "at", true, 0, 1e300, &msg->started_at[i], err) != 0) {
            pj_err_prefix(err, "started[%d]", i);
            return -1;
        }
        msg->nstarted++;
    }
    return 0;
}

static int s_live_output_from(cJSON *o, proto_report_t *msg, proto_err_t *err)
{
    if (pj_i64(o, "task", true, 1, PJ_MAX_SAFE_INT, &msg->task, err) != 0
        || pj_int(o, "attempt", true, 1, PROTO_MAX_ATTEMPT, &msg->attempt, err) != 0)
        return -1;
    const cJSON *s = pj_get(o, "stream");
    if (cJSON_IsString(s) && strcmp(s->valuestring, "stdout") == 0)
        msg->stream = 1;
    else if (cJSON_IsString(s) && strcmp(s->valuestring, "stderr") == 0)
        msg->stream = 2;
    else {
        proto_err_set(err, PROTO_E_FIELD, "field \"stream\" must be \"stdout\" or \"stderr\"");
        return -1;
    }
    /* Live output: one piece per report, bounded as stored like a
       results report's outputs (the master keeps PROTO_DEFAULT_OUTPUT_CAP
       of it at most anyway). */
    size_t room = PROTO_MAX_REPORT_MSG;
    int rc = pr_output_text(o, "data", true, &msg->data, &room, err);
    if (rc == 1)
        proto_err_set(err, PROTO_E_TOO_BIG,
                      "field \"%s\" is over %d bytes once decoded and written as a JSON "
                      "string: send live output in smaller pieces",
                      pj_get(o, "data") ? "data" : "data_b64", PROTO_MAX_REPORT_MSG);
    return rc == 0 ? 0 : -1;
}

static int s_results_from(cJSON *o, proto_report_t *msg, proto_err_t *err)
{
    cJSON *arr;
    if (pj_array(o, "results", true, INT32_MAX, &arr, err) != 0)
        return -1;
    int n = cJSON_GetArraySize(arr);
    if (n == 0)
        return 0;
    msg->results = xcalloc((size_t) n, sizeof *msg->results);
    /* One room for every result of the report: what the master stores
       of one report's outputs stays within what a report may carry,
       whichever form (plain, base64) they came in. */
    size_t room = PROTO_MAX_REPORT_MSG;
    for (cJSON *e = arr->child; e; e = e->next) {
        proto_result_t *res = pr_result_from(e, &room, err);
        if (!res) {
            pj_err_prefix(err, "results[%d]", msg->nresults);
            return -1;
        }
        msg->results[msg->nresults++] = res;
    }
    return 0;
}

proto_report_t *proto_report_decode(const char *buf, size_t len, proto_err_t *err)
{
    proto_report_t *msg = pf_results_report(buf, len);
    return msg ? msg : pr_report_decode_tree(buf, len, err);
}

proto_report_t *pr_report_decode_tree(const char *buf, size_t len, proto_err_t *err)
{
    int type;
    cJSON *root = pj_parse_typed(buf, len, PROTO_MAX_REPORT_MSG, &s_report_types, &type, err);
    if (!root)
        return NULL;
    proto_report_t *msg = proto_report_new((proto_report_type_t) type, NULL);
    int rc = pj_str(root, "worker", true, 1, PROTO_MAX_NAME, &msg->worker, err);
    if (rc == 0) {
        switch (msg->type) {
        case PROTO_REP_HEARTBEAT:
            rc = (pj_refs(root, "running", false, &msg->running, &msg->nrunning, err) != 0
                  || pj_i64(root, "seen", false, 1, PROTO_MAX_SEQ, &msg->seen, err) != 0)
                     ? -1
                     : 0;
            break;
        case PROTO_REP_STARTED:
            rc = s_started_from(root, msg, err);
            break;
        case PROTO_REP_OUTPUT:
            rc = s_live_output_from(root, msg, err);
            break;
        case PROTO_REP_RESULTS:
            rc = s_results_from(root, msg, err);
            break;
        case PROTO_REP_BYE:
            break;
        case PROTO_REP_RECALLED:
            rc = pj_refs_max(root, "tasks", true, PROTO_MAX_RECALL, &msg->recalled,
                             &msg->nrecalled, err);
            break;
        case PROTO_REP_LOST:
            rc = pj_refs_max(root, "tasks", true, PROTO_MAX_ENDED, &msg->lost, &msg->nlost, err);
            break;
        }
    }
    if (rc != 0)
        proto_report_destroy(&msg);
    cJSON_Delete(root);
    return msg;
}

char *proto_report_encode(const proto_report_t *msg)
{
    if (!msg || msg->type < PROTO_REP_HEARTBEAT || (size_t) msg->type >= NREPORT)
        return NULL;
    pb_t b;
    size_t plain = 0;   /* data_raw's plain length, scanned once (pr_raw_len) */
    size_t hint = 128 + (msg->data ? strlen(msg->data) : 0) + (size_t) msg->nrunning * 32
                + (size_t) msg->nstarted * 48 + (size_t) (msg->nrecalled + msg->nlost) * 48
                + (msg->data_raw
                       ? pr_raw_len(msg->data_raw, msg->data_raw_len, msg->raw_b64, &plain)
                       : 0);
    pb_init(&b, hint);
    pb_open(&b, s_report_names[msg->type]);
    pb_kstr(&b, "worker", msg->worker);
    switch (msg->type) {
    case PROTO_REP_HEARTBEAT:
        pb_key(&b, "running");
        pb_refs(&b, msg->running, msg->nrunning);
        if (msg->seen > 0)
            pb_ki64(&b, "seen", msg->seen);
        break;
    case PROTO_REP_STARTED:
        pb_key(&b, "started");
        pb_char(&b, '[');
        for (int i = 0; msg->started && i < msg->nstarted; i++) {
            pb_sep(&b);
            pb_char(&b, '{');
            pb_ki64(&b, "task", msg->started[i].task);
            pb_ki64(&b, "attempt", msg->started[i].attempt);
            pb_ktime(&b, "at", msg->started_at ? msg->started_at[i] : 0);
            pb_char(&b, '}');
        }
        pb_char(&b, ']');
        break;
    case PROTO_REP_OUTPUT:
        pb_ki64(&b, "task", msg->task);
        pb_ki64(&b, "attempt", msg->attempt);
        pb_kstr(&b, "stream", msg->stream == 2 ? "stderr" : "stdout");
        if (msg->data_raw)
            pr_raw_member(&b, "data", msg->data_raw, msg->data_raw_len, plain, msg->raw_b64,
                          false);
        else
            pb_kstr(&b, "data", msg->data ? msg->data : "");
        break;
    case PROTO_REP_RESULTS:
        pb_key(&b, "results");
        pb_char(&b, '[');
        for (int i = 0; msg->results && i < msg->nresults; i++) {
            pb_sep(&b);
            pr_result_write(&b, msg->results[i]);
        }
        pb_char(&b, ']');
        break;
    case PROTO_REP_BYE:
        break;
    case PROTO_REP_RECALLED:
        pb_key(&b, "tasks");
        pb_refs(&b, msg->recalled, msg->nrecalled);
        break;
    case PROTO_REP_LOST:
        pb_key(&b, "tasks");
        pb_refs(&b, msg->lost, msg->nlost);
        break;
    }
    pb_char(&b, '}');
    return pb_take(&b);
}

/* The worker's hot path: each result was encoded by the pool thread that
   produced it; the session thread only pastes them into the envelope. */
char *proto_report_encode_results_raw(const char *worker, int n, const char *const *results)
{
    if (n < 0)
        n = 0;
    size_t total = 96 + (worker ? strlen(worker) : 0);
    for (int i = 0; i < n; i++)
        total += strlen(results[i]) + 1;
    pb_t b;
    pb_init(&b, total);
    pb_lit(&b, "{\"v\":1,\"type\":\"results\",\"worker\":");
    pb_cstr(&b, worker);
    pb_lit(&b, ",\"results\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            pb_char(&b, ',');
        pb_raw(&b, results[i], strlen(results[i]));
    }
    pb_lit(&b, "]}");
    return pb_take(&b);
}

char *proto_report_wrap_result(const char *worker, char **result)
{
    char *res = *result;
    *result = NULL;
    pb_t head;
    pb_init(&head, 96 + (worker ? strlen(worker) : 0));
    pb_lit(&head, "{\"v\":1,\"type\":\"results\",\"worker\":");
    pb_cstr(&head, worker);
    pb_lit(&head, ",\"results\":[");
    size_t len = strlen(res);
    /* realloc then memmove: for a big result (its own mapping) the kernel
       moves pages rather than bytes, and the text is not held twice. */
    char *text = xrealloc(res, head.len + len + 3);
    memmove(text + head.len, text, len);
    memcpy(text, head.buf, head.len);
    memcpy(text + head.len + len, "]}", 3);
    free(head.buf);
    return text;
}
