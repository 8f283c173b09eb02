/*  e2e hostile: a bounded barrage of malformed messages on every master
    socket, interleaved with legal requests that must each get the right
    answer. Afterwards the master still serves, a job submitted before the
    barrage is intact and runs to the right results, and a new job runs.

    This suite talks to the master with its own raw ZeroMQ sockets (a
    DEALER on the API port, PUSH sockets on the report port) and builds the
    legal messages with the proto encoders, so it checks the wire contract
    independently of the CLI.
*/
#include "harness.h"

#include "../../common/zmqx.h"
#include "../../proto/proto.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define J1_TASKS 50

/* ------------------------------------------------------------ raw client */

typedef struct {
    void *ctx;
    void *api;      /* DEALER to the API port */
    int timeout_ms;
    int sent;       /* malformed messages sent, all sockets */
    int legal;      /* legal requests answered correctly */
} hx_t;

static void *s_dealer(hx_t *x, h_cluster_t *c)
{
    void *s = zmq_socket(x->ctx, ZMQ_DEALER);
    ck_assert_ptr_nonnull(s);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &x->timeout_ms, sizeof x->timeout_ms);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &x->timeout_ms, sizeof x->timeout_ms);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", h_api_port(c));
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    return s;
}

static void *s_pusher(hx_t *x, h_cluster_t *c, int linger_ms)
{
    void *s = zmq_socket(x->ctx, ZMQ_PUSH);
    ck_assert_ptr_nonnull(s);
    zmq_setsockopt(s, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &x->timeout_ms, sizeof x->timeout_ms);
    int hwm = 100000;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", h_report_port(c));
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    return s;
}

static void s_send(void *sock, const void *data, size_t len, int flags)
{
    ck_assert_msg(zmq_send(sock, data, len, flags) == (int)len, "zmq_send: %s",
                  zmq_strerror(zmq_errno()));
}

/* One reply to one request; fails the test when none comes. */
static char *s_recv(hx_t *x, size_t *len, const char *what)
{
    char *buf = zmqx_recv(x->api, len, 0);
    ck_assert_msg(buf != NULL, "no reply within %d ms to %s (%s)", x->timeout_ms, what,
                  zmq_strerror(zmq_errno()));
    return buf;
}

static proto_reply_t *s_request(hx_t *x, proto_req_t **reqp)
{
    proto_req_t *req = *reqp;
    *reqp = NULL;
    char *text = proto_req_encode(req);
    ck_assert_ptr_nonnull(text);
    proto_req_type_t type = req->type;
    proto_req_destroy(&req);
    s_send(x->api, text, strlen(text), 0);
    size_t len;
    char *buf = s_recv(x, &len, text);
    proto_err_t err;
    proto_reply_t *rep = proto_reply_decode(buf, len, type, &err);
    ck_assert_msg(rep != NULL, "reply to %s does not decode (%s): %.300s", text, err.message, buf);
    ck_assert_msg(rep->ok, "legal request %.200s refused: %s %s", text, rep->error.code,
                  rep->error.message);
    free(text);
    free(buf);
    return rep;
}

static proto_job_t s_job(hx_t *x, int64_t job)
{
    proto_req_t *q = proto_req_new(PROTO_REQ_STATUS);
    q->job = job;
    proto_reply_t *rep = s_request(x, &q);
    ck_assert_int_eq(rep->njobs, 1);
    proto_job_t j = rep->jobs[0];
    ck_assert_int_eq(j.id, job);
    j.name = NULL;   /* not kept */
    proto_reply_destroy(&rep);
    return j;
}

/* The legal request interleaved with the barrage: job 1 is exactly as
   submitted (nothing ran: there is no worker yet). */
static void s_check_intact(hx_t *x, int64_t j1, const char *after)
{
    proto_job_t j = s_job(x, j1);
    ck_assert_msg(j.total == J1_TASKS && j.queued == J1_TASKS && j.done == 0 && j.failed == 0 &&
                      j.running == 0 && j.closed,
                  "job %lld changed after %s: total %lld queued %lld done %lld failed %lld",
                  (long long)j1, after, (long long)j.total, (long long)j.queued,
                  (long long)j.done, (long long)j.failed);
    x->legal++;
}

static int64_t s_submit(hx_t *x, const char *fn, int n)
{
    proto_req_t *q = proto_req_new(PROTO_REQ_SUBMIT);
    q->name = strdup("hostile");
    q->more = false;
    q->tasks = calloc((size_t)n, sizeof *q->tasks);
    q->ntasks = n;
    for (int i = 0; i < n; i++) {
        char line[96];
        snprintf(line, sizeof line, "{\"fn\":\"%s\",\"index\":%d}", fn, i);
        proto_err_t err;
        q->tasks[i] = proto_spec_decode(line, strlen(line), &err);
        ck_assert_msg(q->tasks[i] != NULL, "spec %s: %s", line, err.message);
    }
    proto_reply_t *rep = s_request(x, &q);
    int64_t job = rep->job;
    ck_assert_int_gt(job, 0);
    ck_assert_int_eq(rep->accepted, n);
    proto_reply_destroy(&rep);
    return job;
}

/* ------------------------------------------------------- message makers */

static uint64_t s_rng = 0x9e3779b97f4a7c15ull;

static uint64_t s_rand(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

/* Sends one malformed API frame and checks the reply is a refusal with
   one of the codes (NULL-terminated; {NULL} = any code; NULL = any reply,
   even ok). */
static void s_expect_refusal(hx_t *x, const char *data, size_t len, const char *const *codes,
                             const char *what)
{
    s_send(x->api, data, len, 0);
    x->sent++;
    size_t rlen;
    char *buf = s_recv(x, &rlen, what);
    cJSON *rep = cJSON_ParseWithLength(buf, rlen);
    ck_assert_msg(cJSON_IsObject(rep), "reply to %s is not a JSON object: %.200s", what, buf);
    ck_assert_int_eq(h_jint(rep, "v", -1), 1);
    ck_assert_str_eq(h_jstr(rep, "type") ? h_jstr(rep, "type") : "", "reply");
    if (codes) {
        ck_assert_msg(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(rep, "ok")),
                      "malformed %s (%.120s) was accepted: %.200s", what, data, buf);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(rep, "error");
        const char *code = h_jstr(e, "code");
        ck_assert_msg(code && *code, "refusal without a code: %.200s", buf);
        ck_assert_msg(h_jstr(e, "message") != NULL, "refusal without a message: %.200s", buf);
        if (codes[0]) {
            bool match = false;
            for (int i = 0; codes[i]; i++)
                match = match || !strcmp(code, codes[i]);
            ck_assert_msg(match, "%s (%.120s): code %s, want %s%s%s", what, data, code, codes[0],
                          codes[1] ? " or " : "", codes[1] ? codes[1] : "");
        }
    }
    cJSON_Delete(rep);
    free(buf);
}

static void s_expect_code(hx_t *x, const char *text, const char *code, const char *what)
{
    const char *codes[] = {code, NULL};
    s_expect_refusal(x, text, strlen(text), codes, what);
}

static void s_expect_codes2(hx_t *x, const char *text, const char *a, const char *b,
                            const char *what)
{
    const char *codes[] = {a, b, NULL};
    s_expect_refusal(x, text, strlen(text), codes, what);
}

static char *s_encode_req(proto_req_t *q)
{
    char *text = proto_req_encode(q);
    ck_assert_ptr_nonnull(text);
    proto_req_destroy(&q);
    return text;
}

/* Legal requests whose fields the barrage corrupts one at a time. None is
   sent as is (a hello would register a worker, a submit make a job). */
static int s_bases(int64_t j1, char **out)
{
    int n = 0;
    proto_req_t *q;
    q = proto_req_new(PROTO_REQ_STATUS);
    q->job = j1;
    out[n++] = s_encode_req(q);
    q = proto_req_new(PROTO_REQ_RESULTS);
    q->job = j1;
    q->after = 0;
    q->limit = 10;
    q->failed_only = false;
    out[n++] = s_encode_req(q);
    q = proto_req_new(PROTO_REQ_LOGS);
    q->job = j1;
    q->index = 0;
    out[n++] = s_encode_req(q);
    q = proto_req_new(PROTO_REQ_CANCEL);
    q->job = 999999;
    q->index = 3;
    out[n++] = s_encode_req(q);
    q = proto_req_new(PROTO_REQ_DRAIN);
    q->worker = strdup("no-such-worker");
    out[n++] = s_encode_req(q);
    q = proto_req_new(PROTO_REQ_FORGET);
    q->job = 999999;
    out[n++] = s_encode_req(q);
    q = proto_req_new(PROTO_REQ_SUBMIT);
    q->name = strdup("mutant");
    q->tasks = calloc(1, sizeof *q->tasks);
    proto_err_t err;
    q->tasks[0] = proto_spec_decode("{\"fn\":\"noop\"}", 13, &err);
    q->ntasks = 1;
    out[n++] = s_encode_req(q);
    q = proto_req_new(PROTO_REQ_WAITING);
    q->job = j1;
    q->all = true;
    out[n++] = s_encode_req(q);
    q = proto_req_new(PROTO_REQ_HELLO);
    q->name = strdup("mutant");
    q->host = strdup("localhost");
    q->pid = 1;
    q->threads = 2;
    q->labels = calloc(2, sizeof *q->labels);
    q->labels[0] = strdup("gpu");
    q->nlabels = 1;
    q->running = calloc(1, sizeof *q->running);
    q->running[0].task = 1;
    q->running[0].attempt = 1;
    q->nrunning = 1;
    out[n++] = s_encode_req(q);
    return n;
}

/* Every field of every base set, one at a time, to values of the wrong
   type or out of range: each must be refused with bad_field. */
static void s_barrage_fields(hx_t *x, int64_t j1, char **bases, int nbases)
{
    static const char *const wrong[] = {"\"x\"", "[1]", "{\"a\":1}", "true", "1.5", "1e400",
                                        "-1e400"};
    static const char *const codes[] = {PROTO_E_FIELD, PROTO_E_TOO_BIG, NULL};
    for (int b = 0; b < nbases; b++) {
        cJSON *base = cJSON_Parse(bases[b]);
        ck_assert_ptr_nonnull(base);
        const cJSON *field;
        cJSON_ArrayForEach(field, base) {
            if (!strcmp(field->string, "v") || !strcmp(field->string, "type"))
                continue;
            for (size_t w = 0; w < sizeof wrong / sizeof wrong[0]; w++) {
                /* true is a right value for a bool field, "x" for a string. */
                if ((cJSON_IsBool(field) && !strcmp(wrong[w], "true")) ||
                    (cJSON_IsString(field) && wrong[w][0] == '"'))
                    continue;
                cJSON *m = cJSON_Duplicate(base, 1);
                cJSON_ReplaceItemInObjectCaseSensitive(m, field->string, cJSON_Parse(wrong[w]));
                char *text = cJSON_PrintUnformatted(m);
                /* cJSON prints inf as null: put the literal back. */
                char *fixed = text;
                char *lit = NULL;
                if (strstr(wrong[w], "e400")) {
                    char *at = strstr(text, "null");
                    if (at) {
                        ck_assert_int_gt(asprintf(&lit, "%.*s%s%s", (int)(at - text), text,
                                                  wrong[w], at + 4),
                                         0);
                        fixed = lit;
                    }
                }
                char what[128];
                snprintf(what, sizeof what, "%s with %s=%s", h_jstr(base, "type"), field->string,
                         wrong[w]);
                s_expect_refusal(x, fixed, strlen(fixed), codes, what);
                free(lit);
                cJSON_free(text);
                cJSON_Delete(m);
            }
            if (x->sent % 20 == 0)
                s_check_intact(x, j1, "field mutations");
        }
        cJSON_Delete(base);
    }
}

static void s_barrage_fixed(hx_t *x, int64_t j1)
{
    char buf[512];
    /* Not an object, or not JSON at all. */
    static const char *const notobj[] = {"[]", "1", "\"str\"", "null", "true", "{", "}",
                                         "{\"v\":1,\"type\":\"status\"", "{'v':1}", "\x01\x02",
                                         "{\"v\":1,,}", "{\"v\":1 \"type\":\"jobs\"}"};
    for (size_t i = 0; i < sizeof notobj / sizeof notobj[0]; i++)
        s_expect_code(x, notobj[i], PROTO_E_PARSE, "not an object");
    s_expect_refusal(x, "", 0, (const char *[]){PROTO_E_PARSE, NULL}, "empty frame");

    /* Versions. */
    static const char *const ver[] = {
        "{\"type\":\"jobs\"}",          "{\"v\":2,\"type\":\"jobs\"}",
        "{\"v\":\"1\",\"type\":\"jobs\"}", "{\"v\":1.5,\"type\":\"jobs\"}",
        "{\"v\":null,\"type\":\"jobs\"}", "{\"v\":0,\"type\":\"jobs\"}",
        "{\"v\":-1,\"type\":\"jobs\"}",   "{\"v\":1e400,\"type\":\"jobs\"}",
        "{\"v\":[1],\"type\":\"jobs\"}"};
    for (size_t i = 0; i < sizeof ver / sizeof ver[0]; i++)
        s_expect_code(x, ver[i], PROTO_E_VERSION, "bad version");

    /* Types: missing, wrong JSON type, other channels' types, unknown. */
    static const char *const types[] = {"{\"v\":1}",
                                        "{\"v\":1,\"type\":5}",
                                        "{\"v\":1,\"type\":\"\"}",
                                        "{\"v\":1,\"type\":null}",
                                        "{\"v\":1,\"type\":[\"jobs\"]}",
                                        "{\"v\":1,\"type\":\"reply\"}",
                                        "{\"v\":1,\"type\":\"tasks\"}",
                                        "{\"v\":1,\"type\":\"abort\"}",
                                        "{\"v\":1,\"type\":\"ping\"}",
                                        "{\"v\":1,\"type\":\"heartbeat\"}",
                                        "{\"v\":1,\"type\":\"bye\"}",
                                        "{\"v\":1,\"type\":\"started\"}",
                                        "{\"v\":1,\"type\":\"JOBS\"}",
                                        "{\"v\":1,\"type\":\"rm -rf /\"}"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        s_expect_code(x, types[i], PROTO_E_TYPE, "bad type");
    char longtype[2200];
    snprintf(longtype, sizeof longtype, "{\"v\":1,\"type\":\"%02000d\"}", 7);
    s_expect_code(x, longtype, PROTO_E_TYPE, "2000-byte type");

    /* Numbers out of range. */
    static const char *const huge[] = {"1e19", "9223372036854775808", "-1", "12345678901234567890123",
                                       "1e400", "-1e400", "9007199254740993", "0.5", "-0"};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        snprintf(buf, sizeof buf, "{\"v\":1,\"type\":\"results\",\"job\":%s}", huge[i]);
        s_expect_codes2(x, buf, PROTO_E_FIELD, PROTO_E_NOT_FOUND, "results job out of range");
        snprintf(buf, sizeof buf, "{\"v\":1,\"type\":\"results\",\"job\":%lld,\"limit\":%s}",
                 (long long)j1, huge[i]);
        s_expect_code(x, buf, PROTO_E_FIELD, "results limit out of range");
        snprintf(buf, sizeof buf, "{\"v\":1,\"type\":\"logs\",\"task\":%s}", huge[i]);
        s_expect_codes2(x, buf, PROTO_E_FIELD, PROTO_E_NOT_FOUND, "logs task out of range");
        if (strcmp(huge[i], "-0") == 0)
            continue;   /* waiting's job 0 is every job */
        snprintf(buf, sizeof buf, "{\"v\":1,\"type\":\"waiting\",\"job\":%s}", huge[i]);
        s_expect_codes2(x, buf, PROTO_E_FIELD, PROTO_E_NOT_FOUND, "waiting job out of range");
    }
    snprintf(buf, sizeof buf, "{\"v\":1,\"type\":\"results\",\"job\":%lld,\"limit\":100000000}",
             (long long)j1);
    s_expect_code(x, buf, PROTO_E_FIELD, "results limit 1e8");
    s_expect_code(x, "{\"v\":1,\"type\":\"logs\"}", PROTO_E_FIELD, "logs without a task");
    s_expect_code(x, "{\"v\":1,\"type\":\"cancel\"}", PROTO_E_FIELD, "cancel without a job");
    s_expect_code(x, "{\"v\":1,\"type\":\"drain\"}", PROTO_E_FIELD, "drain without a worker");
    s_expect_code(x, "{\"v\":1,\"type\":\"hello\"}", PROTO_E_FIELD, "hello without fields");
    s_expect_code(x, "{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":0}", PROTO_E_FIELD,
                  "hello with 0 threads");
    s_expect_code(x, "{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":100000000}",
                  PROTO_E_FIELD, "hello with 1e8 threads");
    s_expect_code(x, "{\"v\":1,\"type\":\"drain\",\"worker\":\"\"}", PROTO_E_FIELD,
                  "drain of an empty name");
    s_expect_code(x, "{\"v\":1,\"type\":\"drain\",\"worker\":\"no-such\"}", PROTO_E_NOT_FOUND,
                  "drain of an unknown worker");
    s_expect_code(x, "{\"v\":1,\"type\":\"forget\",\"job\":999999}", PROTO_E_NOT_FOUND,
                  "forget of an unknown job");
    s_expect_code(x, "{\"v\":1,\"type\":\"cancel\",\"job\":999999}", PROTO_E_NOT_FOUND,
                  "cancel of an unknown job");
    s_expect_code(x, "{\"v\":1,\"type\":\"status\",\"job\":999999}", PROTO_E_NOT_FOUND,
                  "status of an unknown job");
    s_expect_code(x, "{\"v\":1,\"type\":\"waiting\",\"job\":999999}", PROTO_E_NOT_FOUND,
                  "waiting of an unknown job");
    s_expect_code(x, "{\"v\":1,\"type\":\"waiting\",\"job\":\"1\"}", PROTO_E_FIELD,
                  "waiting with a job as a string");
    s_expect_code(x, "{\"v\":1,\"type\":\"waiting\",\"all\":\"yes\"}", PROTO_E_FIELD,
                  "waiting with all as a string");
    {
        /* Fields it does not know are ignored, as by every request: the
           queued tasks of job 1, in order, each waiting for a worker. */
        const char *extra = "{\"v\":1,\"type\":\"waiting\",\"worker\":\"w\",\"limit\":-5,"
                            "\"zz\":{\"a\":[1,2]}}";
        s_send(x->api, extra, strlen(extra), 0);
        size_t len;
        char *reply = s_recv(x, &len, extra);
        proto_err_t err;
        proto_reply_t *rep = proto_reply_decode(reply, len, PROTO_REQ_WAITING, &err);
        ck_assert_msg(rep && rep->ok && rep->ntasks == J1_TASKS && !rep->truncated,
                      "waiting with unknown fields: %.300s", reply);
        for (int i = 0; i < rep->ntasks; i++)
            ck_assert(rep->tasks[i].job == j1 && rep->tasks[i].wait == PROTO_WAIT_NO_WORKER
                      && rep->tasks[i].index == i);
        proto_reply_destroy(&rep);
        free(reply);
        x->legal++;
    }

    /* Invalid UTF-8 and NUL in strings. */
    s_expect_codes2(x, "{\"v\":1,\"type\":\"drain\",\"worker\":\"\xff\xfe\"}", PROTO_E_FIELD,
                    PROTO_E_PARSE, "invalid UTF-8");
    s_expect_codes2(x, "{\"v\":1,\"type\":\"submit\",\"name\":\"\xc3\x28\",\"tasks\":[{\"fn\":\"noop\"}]}",
                    PROTO_E_FIELD, PROTO_E_PARSE, "submit with an invalid UTF-8 name");
    /* cJSON cuts "jobs\u0000x" to "jobs": any answer, but one. */
    {
        const char *nul = "{\"v\":1,\"type\":\"jobs\\u0000x\"}";
        s_expect_refusal(x, nul, strlen(nul), NULL, "NUL in the type");
    }
    s_expect_codes2(x, "{\"v\":1,\"type\":\"submit\",\"name\":\"\\ud800\",\"tasks\":[{\"fn\":\"noop\"}]}",
                    PROTO_E_FIELD, PROTO_E_PARSE, "lone surrogate");

    /* Bad task specs. */
    static const char *const specs[] = {
        "{}",
        "{\"argv\":[]}",
        "{\"argv\":[1]}",
        "{\"argv\":\"ls\"}",
        "{\"argv\":[\"true\"],\"shell\":\"true\"}",
        "{\"fn\":\"noop\",\"shell\":\"true\"}",
        "{\"fn\":\"noop\",\"bogus\":1}",
        "{\"fn\":\"noop\",\"timeout\":-1}",
        "{\"fn\":\"noop\",\"timeout\":\"1\"}",
        "{\"fn\":\"noop\",\"retries\":1000}",
        "{\"fn\":\"noop\",\"retries\":-1}",
        "{\"fn\":\"noop\",\"priority\":1e12}",
        "{\"fn\":\"noop\",\"env\":{\"A\":1}}",
        "{\"fn\":\"noop\",\"env\":[\"A=1\"]}",
        "{\"fn\":\"noop\",\"index\":-5}",
        "{\"fn\":\"noop\",\"output_cap\":0}",
        "{\"fn\":\"noop\",\"output_cap\":1e18}",
        "{\"fn\":\"noop\",\"require\":\"gpu\"}",
        "{\"fn\":\"\"}",
        "{\"fn\":5}",
        "{\"shell\":\"\"}",
        "{\"fn\":\"noop\",\"cwd\":7}",
        "{\"fn\":\"noop\",\"stdin\":[\"x\"]}",
        "7",
        "null",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        snprintf(buf, sizeof buf, "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"noop\"},%s]}",
                 specs[i]);
        s_expect_code(x, buf, PROTO_E_FIELD, "bad spec");
        if (i % 5 == 0)
            s_check_intact(x, j1, "bad specs");
    }
    snprintf(buf, sizeof buf, "{\"v\":1,\"type\":\"submit\",\"job\":%lld,\"tasks\":[{\"fn\":\"noop\"}]}",
             (long long)j1);
    s_expect_code(x, buf, PROTO_E_STATE, "submit to a closed job");
    s_expect_code(x, "{\"v\":1,\"type\":\"submit\",\"job\":999999,\"tasks\":[{\"fn\":\"noop\"}]}",
                  PROTO_E_NOT_FOUND, "submit to an unknown job");

    /* A batch over the limit. */
    size_t cap = 64 + (PROTO_MAX_SUBMIT_BATCH + 1) * 14;
    char *big = malloc(cap);
    ck_assert_ptr_nonnull(big);
    size_t n = (size_t)snprintf(big, cap, "{\"v\":1,\"type\":\"submit\",\"tasks\":[");
    for (int i = 0; i <= PROTO_MAX_SUBMIT_BATCH; i++)
        n += (size_t)snprintf(big + n, cap - n, "%s{\"fn\":\"noop\"}", i ? "," : "");
    n += (size_t)snprintf(big + n, cap - n, "]}");
    s_expect_codes2(x, big, PROTO_E_TOO_BIG, PROTO_E_FIELD, "10001-task batch");
    free(big);
    s_check_intact(x, j1, "an oversized batch");

    /* Nesting: beyond cJSON's limit is not JSON; within it, an unknown
       field is ignored and the request is answered. */
    size_t deep = 100000;
    char *nest = malloc(deep + 1);
    memset(nest, '[', deep);
    nest[deep] = '\0';
    s_expect_code(x, nest, PROTO_E_PARSE, "100,000 open brackets");
    size_t k = 0;
    for (int i = 0; i < 20000 && k + 8 < deep; i++)
        k += (size_t)sprintf(nest + k, "{\"a\":");
    nest[k] = '\0';
    s_expect_code(x, nest, PROTO_E_PARSE, "20,000 nested objects");
    free(nest);
    char *inner = malloc(8192);
    k = (size_t)sprintf(inner, "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"echo\",\"args\":");
    for (int i = 0; i < 1500; i++)
        inner[k++] = '[';
    for (int i = 0; i < 1500; i++)
        inner[k++] = ']';
    k += (size_t)sprintf(inner + k, "}]}");
    s_expect_codes2(x, inner, PROTO_E_PARSE, PROTO_E_FIELD, "1,500-deep args");
    k = (size_t)sprintf(inner, "{\"v\":1,\"type\":\"status\",\"job\":%lld,\"x\":", (long long)j1);
    for (int i = 0; i < 500; i++)
        inner[k++] = '[';
    for (int i = 0; i < 500; i++)
        inner[k++] = ']';
    inner[k++] = '}';
    /* Legal: answered with job 1's status. */
    s_send(x->api, inner, k, 0);
    size_t rlen;
    char *rbuf = s_recv(x, &rlen, "status with a 500-deep unknown field");
    proto_err_t err;
    proto_reply_t *rep = proto_reply_decode(rbuf, rlen, PROTO_REQ_STATUS, &err);
    ck_assert_msg(rep && rep->ok && rep->njobs == 1 && rep->jobs[0].total == J1_TASKS,
                  "status with an ignored deep field: %.200s", rbuf);
    proto_reply_destroy(&rep);
    free(rbuf);
    free(inner);

    /* Trailing bytes and NULs after an object: any answer, but one. */
    static const char trail[] = "{\"v\":1,\"type\":\"jobs\"}\0\0garbage";
    s_expect_refusal(x, trail, sizeof trail - 1, NULL, "NUL and bytes after the object");
    s_expect_refusal(x, "{\"v\":1,\"type\":\"jobs\"} {}", 24, NULL, "two objects");
}

/* Random bytes, and legal requests cut short at random points. */
static void s_barrage_random(hx_t *x, int64_t j1, char **bases, int nbases, int count)
{
    static const char *const any[] = {NULL};
    char buf[600];
    for (int i = 0; i < count; i++) {
        if (i % 2 == 0) {
            size_t len = 1 + s_rand() % 512;
            for (size_t k = 0; k < len; k++)
                buf[k] = (char)(s_rand() & 0xff);
            /* A leading brace makes the parser work harder. */
            if (i % 4 == 0)
                buf[0] = '{';
            s_expect_refusal(x, buf, len, any, "random bytes");
        } else {
            const char *base = bases[s_rand() % (uint64_t)nbases];
            size_t full = strlen(base);
            size_t len = 1 + s_rand() % (full - 1);
            static const char *const parse[] = {PROTO_E_PARSE, NULL};
            s_expect_refusal(x, base, len, parse, "a truncated request");
        }
        if (i % 25 == 0)
            s_check_intact(x, j1, "random bytes");
    }
}

/* Multipart messages: the master reads and drops the extra frames; it may
   answer with an error. A legal request right after gets its answer. */
static void s_barrage_multipart(hx_t *x, int64_t j1)
{
    for (int i = 0; i < 40; i++) {
        int frames = 2 + i % 4;
        for (int f = 0; f < frames; f++) {
            const char *part = f % 2 ? "garbage" : "{\"v\":1,\"type\":\"jobs\"}";
            s_send(x->api, part, strlen(part), f + 1 < frames ? ZMQ_SNDMORE : 0);
        }
        x->sent++;
        proto_req_t *q = proto_req_new(PROTO_REQ_STATUS);
        q->job = j1;
        char *text = s_encode_req(q);
        s_send(x->api, text, strlen(text), 0);
        free(text);
        /* At most two replies: an optional refusal, then the status. */
        bool got_status = false;
        for (int r = 0; r < 2 && !got_status; r++) {
            size_t len;
            char *buf = s_recv(x, &len, "a status after a multipart message");
            cJSON *rep = cJSON_ParseWithLength(buf, len);
            ck_assert_ptr_nonnull(rep);
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rep, "ok"))) {
                proto_err_t err;
                proto_reply_t *st = proto_reply_decode(buf, len, PROTO_REQ_STATUS, &err);
                ck_assert_msg(st && st->njobs == 1 && st->jobs[0].total == J1_TASKS &&
                                  st->jobs[0].queued == J1_TASKS,
                              "status after multipart: %.200s", buf);
                proto_reply_destroy(&st);
                got_status = true;
            } else {
                ck_assert_ptr_nonnull(h_jstr(cJSON_GetObjectItemCaseSensitive(rep, "error"), "code"));
            }
            cJSON_Delete(rep);
            free(buf);
        }
        ck_assert_msg(got_status, "no status reply after a multipart message");
        x->legal++;
    }
}

/* Reports: fire and forget. Garbage, truncations, other channels' types,
   and well-formed reports from a worker that never registered, including
   results for job 1's queued tasks that must not be believed. */
static void s_barrage_reports(hx_t *x, h_cluster_t *c, const int64_t *task_ids, int ntask_ids,
                              int count)
{
    void *push = s_pusher(x, c, 2000);
    char buf[600];
    char *forged[8];
    int nforged = 0;
    proto_report_t *rp = proto_report_new(PROTO_REP_RESULTS, "w-forged");
    rp->results = calloc((size_t)ntask_ids, sizeof *rp->results);
    for (int i = 0; i < ntask_ids; i++) {
        proto_result_t *r = proto_result_new();
        r->task = task_ids[i];
        r->attempt = 1;
        r->status = PROTO_ST_DONE;
        r->result_json = strdup("666");
        r->started = 1.0;
        r->finished = 2.0;
        rp->results[rp->nresults++] = r;
    }
    forged[nforged++] = proto_report_encode(rp);
    proto_report_destroy(&rp);
    rp = proto_report_new(PROTO_REP_HEARTBEAT, "w-forged");
    rp->running = calloc(1, sizeof *rp->running);
    rp->running[0].task = task_ids[0];
    rp->running[0].attempt = 1;
    rp->nrunning = 1;
    forged[nforged++] = proto_report_encode(rp);
    proto_report_destroy(&rp);
    rp = proto_report_new(PROTO_REP_STARTED, "w-forged");
    rp->started = calloc(1, sizeof *rp->started);
    rp->started_at = calloc(1, sizeof *rp->started_at);
    rp->started[0].task = task_ids[1];
    rp->started[0].attempt = 1;
    rp->started_at[0] = 1.0;
    rp->nstarted = 1;
    forged[nforged++] = proto_report_encode(rp);
    proto_report_destroy(&rp);
    rp = proto_report_new(PROTO_REP_OUTPUT, "w-forged");
    rp->task = task_ids[2];
    rp->attempt = 1;
    rp->stream = 1;
    rp->data = strdup("forged output\n");
    forged[nforged++] = proto_report_encode(rp);
    proto_report_destroy(&rp);
    rp = proto_report_new(PROTO_REP_BYE, "w-forged");
    forged[nforged++] = proto_report_encode(rp);
    proto_report_destroy(&rp);
    for (int i = 0; i < nforged; i++)
        ck_assert_ptr_nonnull(forged[i]);

    static const char *const fixed[] = {
        "", "{}", "[]", "null", "{\"v\":1}", "{\"v\":2,\"type\":\"bye\",\"worker\":\"w\"}",
        "{\"v\":1,\"type\":\"status\"}", "{\"v\":1,\"type\":\"tasks\",\"tasks\":[]}",
        "{\"v\":1,\"type\":\"bye\"}", "{\"v\":1,\"type\":\"bye\",\"worker\":5}",
        "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":[{\"task\":1e400}]}",
        "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":\"x\"}",
        "{\"v\":1,\"type\":\"heartbeat\",\"worker\":\"w\",\"running\":[{\"task\":-1,\"attempt\":0}]}",
        "{\"v\":1,\"type\":\"output\",\"worker\":\"w\",\"task\":1,\"attempt\":1,\"stream\":\"x\",\"data\":\"\"}",
        "{\"v\":1,\"type\":\"started\",\"worker\":\"w\",\"started\":[{\"task\":1,\"attempt\":1,\"at\":\"x\"}]}",
    };
    for (int i = 0; i < count; i++) {
        switch (i % 4) {
        case 0: {
            size_t len = 1 + s_rand() % 512;
            for (size_t k = 0; k < len; k++)
                buf[k] = (char)(s_rand() & 0xff);
            s_send(push, buf, len, 0);
            break;
        }
        case 1: {
            const char *f = forged[s_rand() % (uint64_t)nforged];
            size_t len = 1 + s_rand() % (strlen(f) - 1);
            s_send(push, f, len, 0);
            break;
        }
        case 2: {
            const char *f = fixed[s_rand() % (sizeof fixed / sizeof fixed[0])];
            s_send(push, f, strlen(f), 0);
            break;
        }
        default: {
            const char *f = forged[s_rand() % (uint64_t)nforged];
            s_send(push, f, strlen(f), 0);
            break;
        }
        }
        x->sent++;
    }
    /* Multipart on the report port too. */
    for (int i = 0; i < 10; i++) {
        s_send(push, forged[0], strlen(forged[0]), ZMQ_SNDMORE);
        s_send(push, "tail", 4, 0);
        x->sent++;
    }
    zmq_close(push);
    for (int i = 0; i < nforged; i++)
        free(forged[i]);
}

/* Frames over ZMQ_MAXMSGSIZE on fresh sockets: libzmq drops those peers. */
static void s_oversize(hx_t *x, h_cluster_t *c)
{
    size_t len = (size_t)PROTO_MAX_REPORT_MSG + 1024 * 1024;
    char *huge = malloc(len);
    ck_assert_ptr_nonnull(huge);
    memset(huge, ' ', len);
    huge[0] = '{';
    huge[len - 1] = '}';
    void *push = s_pusher(x, c, 1000);
    s_send(push, huge, len, 0);
    zmq_close(push);
    void *dealer = s_dealer(x, c);
    s_send(dealer, huge, len, 0);
    /* No answer: the master never read it. */
    int quick = h_ms(500);
    zmq_setsockopt(dealer, ZMQ_RCVTIMEO, &quick, sizeof quick);
    size_t rlen;
    char *rep = zmqx_recv(dealer, &rlen, 0);
    ck_assert_msg(rep == NULL, "the master answered an oversize frame: %.200s", rep);
    zmq_close(dealer);
    free(huge);
    x->sent += 2;
}

START_TIMED_TEST(a_barrage_of_malformed_messages_leaves_the_master_serving, 120)
{
    h_cluster_t *c = h_cluster_new("hostile");
    h_master_start(c, 0, NULL);
    hx_t x = {.timeout_ms = h_ms(5000)};
    x.ctx = zmq_ctx_new();
    ck_assert_ptr_nonnull(x.ctx);
    x.api = s_dealer(&x, c);

    /* Job 1: submitted before the barrage, held (no worker yet). */
    int64_t j1 = s_submit(&x, "square", J1_TASKS);
    s_check_intact(&x, j1, "submit");
    proto_req_t *q = proto_req_new(PROTO_REQ_RESULTS);
    q->job = j1;
    q->limit = 1000;
    proto_reply_t *rep = s_request(&x, &q);
    ck_assert_int_eq(rep->ntasks, J1_TASKS);
    int64_t ids[J1_TASKS];
    for (int i = 0; i < J1_TASKS; i++)
        ids[i] = rep->tasks[i].task;
    proto_reply_destroy(&rep);

    char *bases[16];
    int nbases = s_bases(j1, bases);
    s_barrage_fixed(&x, j1);
    s_barrage_fields(&x, j1, bases, nbases);
    s_barrage_multipart(&x, j1);
    s_barrage_random(&x, j1, bases, nbases, 900);
    s_barrage_reports(&x, c, ids, J1_TASKS, 600);
    s_oversize(&x, c);
    fprintf(stderr, "hostile: %d malformed messages, %d legal requests answered\n", x.sent,
                x.legal);
    ck_assert_int_ge(x.sent, 1500);
    ck_assert_int_le(x.sent, 3000);

    /* The master still serves: job 1 intact, no job or worker conjured. */
    s_check_intact(&x, j1, "the whole barrage");
    q = proto_req_new(PROTO_REQ_JOBS);
    rep = s_request(&x, &q);
    ck_assert_int_eq(rep->njobs, 1);
    proto_reply_destroy(&rep);
    q = proto_req_new(PROTO_REQ_WORKERS);
    rep = s_request(&x, &q);
    ck_assert_int_eq(rep->nworkers, 0);
    proto_reply_destroy(&rep);
    ck_assert(h_proc_running(h_master(c)));

    /* A real worker runs job 1 to the right results (not the forged 666)
       and a new job after it. */
    h_worker_start(c, "real", 2, NULL);
    int64_t j2 = s_submit(&x, "square", 100);
    ck_assert_msg(H_POLL(s_job(&x, j1).done == J1_TASKS && s_job(&x, j2).done == 100, 60000),
                  "jobs did not complete after the barrage");
    q = proto_req_new(PROTO_REQ_RESULTS);
    q->job = j1;
    q->limit = 1000;
    rep = s_request(&x, &q);
    ck_assert_int_eq(rep->ntasks, J1_TASKS);
    for (int i = 0; i < rep->ntasks; i++) {
        const proto_task_info_t *t = &rep->tasks[i];
        ck_assert_int_eq(t->status, PROTO_ST_DONE);
        ck_assert_ptr_nonnull(t->result);
        char want[32];
        snprintf(want, sizeof want, "%lld", (long long)(t->index * t->index));
        ck_assert_msg(t->result->result_json && !strcmp(t->result->result_json, want),
                      "task %lld (index %lld): result %s, want %s", (long long)t->task,
                      (long long)t->index, t->result->result_json, want);
        ck_assert_int_eq(t->attempts, 1);
    }
    proto_reply_destroy(&rep);

    for (int i = 0; i < nbases; i++)
        free(bases[i]);
    zmq_close(x.api);
    zmq_ctx_term(x.ctx);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_hostile", h_slowdown()));
}
