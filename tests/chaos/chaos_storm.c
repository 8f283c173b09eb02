/*  chaos-storm: hostile input against every socket of a master or a worker,
    with legal requests interleaved that must each get the right answer.

      chaos-storm master --api HOST:PORT --report PORT --pid PID --job J
                         --job-tasks K --record FILE --jobs-out FILE
                         [--count N] [--seed S] [--hellos H]

        Storms the master's API ROUTER (as DEALER clients) and its REPORT
        PULL (as a PUSH). Job J (K tasks, no worker yet) must stay exactly
        as it is: after every window of garbage a legal request (status,
        results, logs, stats, jobs, workers, or now and then a one-task
        submit whose job id is written to --jobs-out as "JOB 1") gets a
        correct reply. Then H
        valid hellos under distinct names (a registration flood; the fake
        workers never connect) and a few frames over the 32 MiB limit on
        fresh sockets. Prints the master's VmRSS / VmHWM and open
        descriptors before, after a warm-up, and at the end.

      chaos-storm worker [--count N] [--seed S] -- WORKER COMMAND...

        Acts as a fake master: binds a ROUTER (API), a PUSH (task pipe) and
        a PULL (reports) on 127.0.0.1, starts the worker command ("{API}"
        in it becomes 127.0.0.1:PORT), answers its first hellos with broken
        replies and then a good one, and pushes garbage down the pipe with
        legal "square" tasks interleaved whose results must come back
        right. Ends with frames over the limit, one last legal task, and a
        SIGTERM that must make the worker exit 0. Prints the worker's
        VmRSS / VmHWM before, after the warm-up, and at the end.

    Garbage: random bytes, truncations and byte mutations of legal messages
    of every type of the channel, a fixed list of tricky texts (bad
    versions, wrong types, \u0000, invalid and overlong UTF-8, lone
    surrogates, 2^53+1, 1e400, deep nesting, duplicate keys, out-of-range
    fields), multipart messages, and large ones (a 2 MiB name, a submit of
    10,001 specs).

    Exit: 0 when the daemon stayed up, every legal request was answered
    right and every API garbage frame got a failed reply (or, for the few
    mutations that came out legal, an ok one); 1 otherwise; 2 on usage.
    Memory growth is reported, and judged by the calling script.
*/
#include "../../common/util.h"
#include "../../common/zmqx.h"
#include "../../proto/proto.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* Garbage frames between two legal requests on the API. */
#define WINDOW 32
/* Every reply must come within this (the master answers in microseconds;
   this is the sanitizer-build margin). */
#define REPLY_TIMEOUT_MS 20000
/* Frames over the 32 MiB limit, each on a fresh socket. */
#define OVERSIZE_FRAMES 3

static int s_failures;

static void s_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "  STORM FAILURE: ");
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
    s_failures++;
}

/* ---- randomness (xorshift64*, reproducible from --seed) ---- */

static uint64_t s_seed = 0x9E3779B97F4A7C15ull;

static uint64_t s_rand(void)
{
    s_seed ^= s_seed >> 12;
    s_seed ^= s_seed << 25;
    s_seed ^= s_seed >> 27;
    return s_seed * 2685821657736338717ull;
}

static size_t s_below(size_t n)
{
    return n ? (size_t) (s_rand() % n) : 0;
}

static int64_t s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- /proc figures ---- */

typedef struct {
    long rss_kb, hwm_kb;
    int fds;
} mem_t;

static mem_t s_mem(pid_t pid)
{
    mem_t m = {-1, -1, -1};
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen(path, "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "VmRSS:", 6))
                m.rss_kb = atol(line + 6);
            else if (!strncmp(line, "VmHWM:", 6))
                m.hwm_kb = atol(line + 6);
        }
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/fd", (int) pid);
    DIR *d = opendir(path);
    if (d) {
        m.fds = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                m.fds++;
        closedir(d);
    }
    return m;
}

static void s_print_mem(const char *who, const char *when, mem_t m)
{
    printf("  %-6s %-26s VmRSS %7ld kB  VmHWM %7ld kB  fds %4d\n", who, when, m.rss_kb, m.hwm_kb,
           m.fds);
    fflush(stdout);
}

static bool s_alive(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool alive = true;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "State:", 6) && strchr(line, 'Z'))
            alive = false;
    fclose(f);
    return alive;
}

/* ---- garbage ---- */

/* Tricky texts every channel must refuse (or, rarely, accept). */
static const char *const s_fixed[] = {
    "",
    " ",
    "{",
    "}",
    "[]",
    "null",
    "true",
    "0",
    "\"str\"",
    "{}",
    "{\"v\":1}",
    "{\"type\":\"status\"}",
    "{\"v\":2,\"type\":\"status\"}",
    "{\"v\":\"1\",\"type\":\"status\"}",
    "{\"v\":1.5,\"type\":\"status\"}",
    "{\"v\":1,\"type\":7}",
    "{\"v\":1,\"type\":\"nope\"}",
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":[]}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true}",
    "{\"v\":1,\"type\":\"status\",\"job\":-1}",
    "{\"v\":1,\"type\":\"status\",\"job\":1.5}",
    "{\"v\":1,\"type\":\"status\",\"job\":9007199254740993}",
    "{\"v\":1,\"type\":\"status\",\"job\":1e400}",
    "{\"v\":1,\"type\":\"status\",\"job\":-1e400}",
    "{\"v\":1,\"type\":\"status\",\"job\":\"1\"}",
    "{\"v\":1,\"type\":\"status\"} trailing",
    "{\"v\":1,\"type\":\"status\"}{\"v\":1}",
    "{\"v\":1,\"type\":\"stat\\u0000us\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"a\\u0000b\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"\\ud800\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"\\udc00\\ud800\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"\xc0\xaf\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"\xed\xa0\x80\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"\xf4\x90\x80\x80\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"\xff\xfe\"}",
    "{\"v\":1,\"type\":\"jobs\"\x00}",
    "{\"v\":1,\"v\":2,\"type\":\"jobs\"}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"fn\":\"y\"}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"timout\":1}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"argv\":[\"a\"]}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"argv\":[]}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"argv\":[\"\"]}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"shell\":\"\"}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"timeout\":-1}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"retries\":101}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"output_cap\":0}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"priority\":2147483648}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"env\":{\"A=B\":\"c\"}}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"env\":{\"\":\"c\"}}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"require\":[\"\"]}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"args\":1}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":{}}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[1,2,3]}",
    "{\"v\":1,\"type\":\"submit\",\"job\":424242,\"tasks\":[]}",
    "{\"v\":1,\"type\":\"results\",\"job\":1,\"limit\":0}",
    "{\"v\":1,\"type\":\"results\",\"job\":1,\"limit\":10001}",
    "{\"v\":1,\"type\":\"results\"}",
    "{\"v\":1,\"type\":\"logs\"}",
    "{\"v\":1,\"type\":\"logs\",\"job\":1}",
    "{\"v\":1,\"type\":\"logs\",\"task\":1,\"out_offset\":-5}",
    "{\"v\":1,\"type\":\"cancel\"}",
    "{\"v\":1,\"type\":\"cancel\",\"index\":3}",
    "{\"v\":1,\"type\":\"drain\"}",
    "{\"v\":1,\"type\":\"forget\"}",
    "{\"v\":1,\"type\":\"hello\"}",
    "{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":0}",
    "{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":65537}",
    "{\"v\":1,\"type\":\"hello\",\"host\":\"\",\"threads\":1}",
    "{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1,\"running\":[{\"task\":0}]}",
    "{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1,\"labels\":[5]}",
    "{\"v\":1,\"type\":\"heartbeat\",\"worker\":\"w\",\"running\":[{\"task\":-1,\"attempt\":0}]}",
    "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":\"x\"}",
    "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":[{\"task\":1e400}]}",
    "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":[{}]}",
    "{\"v\":1,\"type\":\"output\",\"worker\":\"w\",\"task\":1,\"attempt\":1,\"stream\":\"x\","
    "\"data\":\"\"}",
    "{\"v\":1,\"type\":\"started\",\"worker\":\"w\",\"started\":[{\"task\":1,\"attempt\":1,"
    "\"at\":\"x\"}]}",
    "{\"v\":1,\"type\":\"bye\"}",
    "{\"v\":1,\"type\":\"bye\",\"worker\":5}",
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":0,\"attempt\":1,\"job\":1,\"spec\":{}}]}",
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":1,\"attempt\":0,\"job\":1,"
    "\"spec\":{\"fn\":\"noop\"}}]}",
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":1,\"attempt\":1,\"job\":1,"
    "\"spec\":{\"fn\":\"noop\",\"bogus\":1}}]}",
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":\"x\"}",
    "{\"v\":1,\"type\":\"abort\"}",
    "{\"v\":1,\"type\":\"abort\",\"task\":\"x\",\"attempt\":1}",
};
#define NFIXED (sizeof s_fixed / sizeof s_fixed[0])

typedef struct {
    char *buf;
    size_t len, cap;
} gbuf_t;

static void g_reserve(gbuf_t *g, size_t need)
{
    if (need > g->cap) {
        g->cap = need * 2;
        g->buf = xrealloc(g->buf, g->cap);
    }
}

static void g_set(gbuf_t *g, const char *data, size_t len)
{
    g_reserve(g, len + 1);
    memcpy(g->buf, data, len);
    g->len = len;
}

/* Nesting far beyond any parser's limit. */
static void g_deep(gbuf_t *g)
{
    size_t depth = 20000 + s_below(80000);
    g_reserve(g, depth * 2 + 64);
    char *p = g->buf;
    p += sprintf(p, "{\"v\":1,\"type\":\"jobs\",\"x\":");
    memset(p, '[', depth);
    p += depth;
    memset(p, ']', depth);
    p += depth;
    *p++ = '}';
    g->len = (size_t) (p - g->buf);
}

/* A few byte-level edits of a legal message. */
static void g_mutate(gbuf_t *g, const char *base)
{
    g_set(g, base, strlen(base));
    int edits = 1 + (int) s_below(3);
    for (int e = 0; e < edits && g->len > 0; e++) {
        size_t at = s_below(g->len);
        switch (s_below(6)) {
        case 0: /* flip bits */
            g->buf[at] ^= (char) (1u << s_below(8));
            break;
        case 1: /* any byte */
            g->buf[at] = (char) s_rand();
            break;
        case 2: /* delete one */
            memmove(g->buf + at, g->buf + at + 1, g->len - at - 1);
            g->len--;
            break;
        case 3: /* insert a structural character */
            g_reserve(g, g->len + 2);
            memmove(g->buf + at + 1, g->buf + at, g->len - at);
            g->buf[at] = "{}[]\",:\\0-e."[s_below(13)];
            g->len++;
            break;
        case 4: /* repeat a chunk */
        {
            size_t n = 1 + s_below(g->len - at < 32 ? g->len - at : 32);
            g_reserve(g, g->len + n + 1);
            memmove(g->buf + at + n, g->buf + at, g->len - at);
            g->len += n;
            break;
        }
        default: /* a digit for a digit */
            if (g->buf[at] >= '0' && g->buf[at] <= '9')
                g->buf[at] = (char) ('0' + s_below(10));
            else
                g->buf[at] = (char) ('0' + s_below(10));
            break;
        }
    }
}

typedef enum { G_RANDOM, G_TRUNC, G_MUTATE, G_FIXED, G_DEEP, G_BIGNAME, G_KINDS } gkind_t;
static const char *const s_kind_names[] = {"random", "truncated", "mutated",
                                           "fixed", "deep", "large"};

/* One garbage frame, built from the channel's legal templates. */
static gkind_t g_next(gbuf_t *g, const char *const *templates, size_t ntemplates, bool api)
{
    uint64_t r = s_below(1000);
    gkind_t kind = r < 250 ? G_RANDOM : r < 500 ? G_TRUNC : r < 850 ? G_MUTATE : r < 998 ? G_FIXED
                   : r < 999 ? G_DEEP : G_BIGNAME;
    const char *base = templates[s_below(ntemplates)];
    switch (kind) {
    case G_RANDOM: {
        size_t len = s_below(600);
        g_reserve(g, len + 1);
        for (size_t i = 0; i < len; i++)
            g->buf[i] = (char) s_rand();
        g->len = len;
        break;
    }
    case G_TRUNC:
        g_set(g, base, s_below(strlen(base)));
        break;
    case G_MUTATE:
        g_mutate(g, base);
        break;
    case G_FIXED: {
        const char *f = s_fixed[s_below(NFIXED)];
        /* Legal on a pipe (it would drain the worker): not garbage there. */
        while (!api && !strcmp(f, "{\"v\":1,\"type\":\"drain\"}"))
            f = s_fixed[s_below(NFIXED)];
        /* The one with an embedded NUL is 22 bytes long. */
        size_t flen = strlen(f);
        g_set(g, f, flen == 20 && !memcmp(f, "{\"v\":1,\"type\":\"jobs\"", 20) ? 22 : flen);
        break;
    }
    case G_DEEP:
        g_deep(g);
        break;
    default:
        if (api && s_below(2)) {
            /* 10,001 specs: too_big. */
            size_t n = PROTO_MAX_SUBMIT_BATCH + 1;
            g_reserve(g, n * 16 + 128);
            char *p = g->buf + sprintf(g->buf, "{\"v\":1,\"type\":\"submit\",\"tasks\":[");
            for (size_t i = 0; i < n; i++)
                p += sprintf(p, "%s{\"fn\":\"noop\"}", i ? "," : "");
            p += sprintf(p, "]}");
            g->len = (size_t) (p - g->buf);
        } else {
            /* A 2 MiB name: under the frame limit, over the field's. */
            size_t n = 2 * 1024 * 1024;
            g_reserve(g, n + 128);
            char *p = g->buf + sprintf(g->buf, "{\"v\":1,\"type\":\"%s\",\"worker\":\"",
                                       api ? "drain" : "bye");
            memset(p, 'w', n);
            p += n;
            p += sprintf(p, "\"}");
            g->len = (size_t) (p - g->buf);
        }
        break;
    }
    return kind;
}

/* ---- sockets ---- */

static void *s_socket(void *ctx, int type, int timeout_ms)
{
    void *s = zmqx_socket(ctx, type, 0, 0);
    if (!s) {
        fprintf(stderr, "chaos-storm: socket: %s\n", zmq_strerror(errno));
        exit(2);
    }
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    return s;
}

static void s_connect(void *s, const char *host, int port)
{
    char ep[300];
    snprintf(ep, sizeof ep, "tcp://%s:%d", host, port);
    if (zmq_connect(s, ep) != 0) {
        fprintf(stderr, "chaos-storm: connect %s: %s\n", ep, zmq_strerror(errno));
        exit(2);
    }
}

/* ======================================================================
   master mode
   ====================================================================== */

typedef struct {
    void *ctx, *api, *report;
    char *host;
    int api_port, report_port;
    pid_t pid;
    int64_t job, job_tasks;
    const char *record;
    FILE *jobs_out;
    long sent_api, sent_report, refused, accepted, legal, multipart;
    long hellos_ok, hellos_refused;
    char hello_refusal[300];
    long kinds[G_KINDS];
    long codes[16];
} mstorm_t;

static const char *const s_codes[] = {PROTO_E_PARSE, PROTO_E_VERSION, PROTO_E_TYPE,
                                      PROTO_E_FIELD, PROTO_E_TOO_BIG, PROTO_E_NOT_FOUND,
                                      PROTO_E_STATE, PROTO_E_STORAGE, PROTO_E_INTERNAL,
                                      PROTO_E_AUTH};
#define NCODES (sizeof s_codes / sizeof s_codes[0])

/* Checks one reply to garbage: a well-formed reply, failed with a known code
   (or ok, for a mutation that came out legal). */
static void m_judge_garbage_reply(mstorm_t *m, const char *buf, size_t len)
{
    cJSON *r = cJSON_ParseWithLength(buf, len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, "v");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(r, "type");
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(r, "ok");
    if (!cJSON_IsNumber(v) || v->valuedouble != 1 || !cJSON_IsString(type)
        || strcmp(type->valuestring, "reply") || !cJSON_IsBool(ok)) {
        s_fail("malformed reply to garbage: %.200s", buf);
    } else if (cJSON_IsTrue(ok)) {
        m->accepted++;
    } else {
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(r, "error");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
        size_t i = 0;
        while (cJSON_IsString(code) && i < NCODES && strcmp(code->valuestring, s_codes[i]))
            i++;
        if (!cJSON_IsString(code) || i == NCODES || !cJSON_IsString(msg)
            || strlen(msg->valuestring) > 255)
            s_fail("refusal without a known code and a short message: %.200s", buf);
        else
            m->codes[i]++;
        m->refused++;
    }
    cJSON_Delete(r);
}

static char *m_recv(mstorm_t *m, size_t *len, const char *what)
{
    char *buf = zmqx_recv(m->api, len, 0);
    if (!buf)
        s_fail("no reply to %s within %d ms (%s)", what, REPLY_TIMEOUT_MS, zmq_strerror(errno));
    return buf;
}

/* One legal request, chosen by turn; its reply checked in full. */
static bool m_legal(mstorm_t *m, long turn)
{
    char req[1024];
    proto_req_type_t type;
    switch (turn % 6) {
    case 0:
        type = PROTO_REQ_STATUS;
        snprintf(req, sizeof req, "{\"v\":1,\"type\":\"status\",\"job\":%" PRId64 "}", m->job);
        break;
    case 1:
        type = PROTO_REQ_RESULTS;
        snprintf(req, sizeof req,
                 "{\"v\":1,\"type\":\"results\",\"job\":%" PRId64 ",\"limit\":10000}", m->job);
        break;
    case 2:
        type = PROTO_REQ_STATS;
        snprintf(req, sizeof req, "{\"v\":1,\"type\":\"stats\"}");
        break;
    case 3:
        if ((turn / 6) % 4) {
            /* Three times in four a logs request instead: one new job per
               24 legal requests keeps the jobs to check afterwards few. */
            type = PROTO_REQ_LOGS;
            snprintf(req, sizeof req, "{\"v\":1,\"type\":\"logs\",\"job\":%" PRId64 ",\"index\":0}",
                     m->job);
            break;
        }
        type = PROTO_REQ_SUBMIT;
        snprintf(req, sizeof req,
                 "{\"v\":1,\"type\":\"submit\",\"name\":\"storm-legal\",\"tasks\":[{\"fn\":"
                 "\"record\",\"args\":{\"file\":\"%s\"},\"index\":0}]}",
                 m->record);
        break;
    case 4:
        type = PROTO_REQ_JOBS;
        snprintf(req, sizeof req, "{\"v\":1,\"type\":\"jobs\"}");
        break;
    default:
        type = PROTO_REQ_WORKERS;
        snprintf(req, sizeof req, "{\"v\":1,\"type\":\"workers\"}");
        break;
    }
    if (zmqx_send(m->api, req, strlen(req), 0) != 0) {
        s_fail("cannot send a legal request: %s", zmq_strerror(errno));
        return false;
    }
    size_t len;
    char *buf = m_recv(m, &len, "a legal request");
    if (!buf)
        return false;
    proto_err_t err;
    proto_reply_t *rep = proto_reply_decode(buf, len, type, &err);
    bool good = rep && rep->ok;
    if (good) {
        switch (type) {
        case PROTO_REQ_STATUS:
            good = rep->njobs == 1 && rep->jobs[0].id == m->job
                   && rep->jobs[0].total == m->job_tasks && rep->jobs[0].queued == m->job_tasks;
            break;
        case PROTO_REQ_RESULTS:
            good = rep->ntasks == m->job_tasks && rep->next_after == -1;
            for (int i = 0; good && i < rep->ntasks; i++)
                good = rep->tasks[i].job == m->job && rep->tasks[i].status == PROTO_ST_QUEUED;
            break;
        case PROTO_REQ_SUBMIT:
            good = rep->job > m->job && rep->accepted == 1 && rep->total == 1;
            if (good)
                fprintf(m->jobs_out, "%" PRId64 " 1\n", rep->job);
            break;
        case PROTO_REQ_JOBS:
            good = rep->njobs >= 1;
            break;
        case PROTO_REQ_LOGS:
            good = rep->task_state == PROTO_ST_QUEUED && (!rep->out_chunk || !*rep->out_chunk)
                   && (!rep->err_chunk || !*rep->err_chunk) && rep->out_offset == 0
                   && rep->err_offset == 0;
            break;
        default:
            break;
        }
    }
    if (!good)
        s_fail("wrong answer to legal request %s: %.300s", req, buf);
    else
        m->legal++;
    proto_reply_destroy(&rep);
    free(buf);
    return good;
}

/* Templates for truncation and mutation. No cancel or forget: a mutation
   can come out legal ("job":1,...,"job":999999 cancels job 1: the first of
   two members counts), and those would change the jobs whose answers we
   check. They appear in the fixed list, invalid. */
static const char *const s_api_templates[] = {
    "{\"v\":1,\"type\":\"status\",\"job\":1}",
    "{\"v\":1,\"type\":\"jobs\"}",
    "{\"v\":1,\"type\":\"stats\"}",
    "{\"v\":1,\"type\":\"workers\"}",
    "{\"v\":1,\"type\":\"results\",\"job\":1,\"after\":0,\"limit\":5,\"failed_only\":false}",
    "{\"v\":1,\"type\":\"logs\",\"task\":1,\"out_offset\":0,\"err_offset\":0}",
    "{\"v\":1,\"type\":\"logs\",\"job\":1,\"index\":0}",
    "{\"v\":1,\"type\":\"drain\",\"worker\":\"nobody-here\"}",
    "{\"v\":1,\"type\":\"submit\",\"job\":0,\"name\":\"storm\",\"more\":true,\"tasks\":[{\"fn\":"
    "\"record\",\"args\":{\"file\":\"/nonexistent/x\"},\"timeout\":1.5,\"retries\":1,"
    "\"priority\":-3,\"index\":7,\"require\":[\"nolabel\"],\"output_cap\":100}]}",
    "{\"v\":1,\"type\":\"submit\",\"job\":0,\"tasks\":[{\"argv\":[\"false\"],\"env\":{\"A\":"
    "\"b\"},\"cwd\":\"/\",\"stdin\":\"x\",\"require\":[\"nolabel\"]}],\"more\":true}",
    "{\"v\":1,\"type\":\"hello\",\"name\":\"storm-w\",\"host\":\"h\",\"pid\":1,\"threads\":0,"
    "\"labels\":[\"a\"],\"running\":[{\"task\":1,\"attempt\":1}],\"no_exec\":true}",
};
#define NAPI (sizeof s_api_templates / sizeof s_api_templates[0])

static const char *const s_report_templates[] = {
    "{\"v\":1,\"type\":\"heartbeat\",\"worker\":\"storm-w\",\"running\":[{\"task\":900000001,"
    "\"attempt\":1}]}",
    "{\"v\":1,\"type\":\"started\",\"worker\":\"storm-w\",\"started\":[{\"task\":900000002,"
    "\"attempt\":1,\"at\":1764410400.5}]}",
    "{\"v\":1,\"type\":\"output\",\"worker\":\"storm-w\",\"task\":900000003,\"attempt\":1,"
    "\"stream\":\"stdout\",\"data\":\"hello\\n\"}",
    "{\"v\":1,\"type\":\"results\",\"worker\":\"storm-w\",\"results\":[{\"task\":900000004,"
    "\"attempt\":1,\"status\":\"done\",\"exit_code\":0,\"signal\":0,\"timed_out\":false,"
    "\"stdout\":\"ok\",\"stderr\":\"\",\"stdout_truncated\":false,\"stderr_truncated\":false,"
    "\"result\":[1,2],\"error\":null,\"started\":1764410400.1,\"finished\":1764410401.3}]}",
    "{\"v\":1,\"type\":\"bye\",\"worker\":\"storm-w\"}",
};
#define NREPORT (sizeof s_report_templates / sizeof s_report_templates[0])

static void m_oversize(mstorm_t *m)
{
    size_t len = (size_t) PROTO_MAX_API_MSG + 1024 * 1024;
    char *huge = xmalloc(len);
    memset(huge, ' ', len);
    memcpy(huge, "{\"v\":1,\"type\":\"jobs\",\"x\":\"", 27);
    huge[len - 2] = '"';
    huge[len - 1] = '}';
    for (int i = 0; i < OVERSIZE_FRAMES; i++) {
        void *s = s_socket(m->ctx, i % 2 ? ZMQ_PUSH : ZMQ_DEALER, 2000);
        s_connect(s, m->host, i % 2 ? m->report_port : m->api_port);
        if (zmqx_send(s, huge, len, 0) != 0)
            s_fail("cannot send an oversize frame: %s", zmq_strerror(errno));
        if (i % 2 == 0) {
            /* Never read, so never answered. */
            size_t rlen;
            char *rep = zmqx_recv(s, &rlen, 0);
            if (rep)
                s_fail("the master answered a frame over the limit: %.100s", rep);
            free(rep);
        }
        zmq_close(s);
    }
    free(huge);
}

/* H valid hellos under distinct names from one DEALER. */
static void m_hello_flood(mstorm_t *m, int hellos)
{
    for (int i = 0; i < hellos; i++) {
        char req[256];
        snprintf(req, sizeof req,
                 "{\"v\":1,\"type\":\"hello\",\"name\":\"storm-%d-%" PRIu64
                 "\",\"host\":\"storm\",\"pid\":1,\"threads\":1}",
                 i, s_rand() % 1000000);
        if (zmqx_send(m->api, req, strlen(req), 0) != 0) {
            s_fail("cannot send hello %d", i);
            return;
        }
        size_t len;
        char *buf = m_recv(m, &len, "a hello");
        if (!buf)
            return;
        proto_err_t err;
        proto_reply_t *rep = proto_reply_decode(buf, len, PROTO_REQ_HELLO, &err);
        /* Either registered, or refused with a clear code (a limit). */
        if (!rep) {
            s_fail("malformed hello reply: %.200s", buf);
        } else if (rep->ok) {
            m->hellos_ok++;
        } else {
            if (!m->hellos_refused)
                snprintf(m->hello_refusal, sizeof m->hello_refusal, "%s: %s",
                         rep->error.code, rep->error.message);
            m->hellos_refused++;
        }
        proto_reply_destroy(&rep);
        free(buf);
        if (i % 100 == 99 && !m_legal(m, i / 100))
            return;
    }
}

static int run_master(int argc, char **argv)
{
    static const struct option opts[] = {
        {"api", required_argument, 0, 'a'},      {"report", required_argument, 0, 'r'},
        {"pid", required_argument, 0, 'p'},      {"job", required_argument, 0, 'j'},
        {"job-tasks", required_argument, 0, 'k'}, {"record", required_argument, 0, 'R'},
        {"jobs-out", required_argument, 0, 'o'}, {"count", required_argument, 0, 'n'},
        {"seed", required_argument, 0, 's'},     {"hellos", required_argument, 0, 'H'},
        {0, 0, 0, 0},
    };
    mstorm_t m = {0};
    int64_t count = 100000, pid = 0, seed = 1, report = 0, hellos = 1000;
    const char *api = NULL, *jobs_out = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = 0;
        switch (o) {
        case 'a': api = optarg; break;
        case 'r': rc = parse_int64(optarg, 1, 65535, &report); break;
        case 'p': rc = parse_int64(optarg, 1, INT32_MAX, &pid); break;
        case 'j': rc = parse_int64(optarg, 1, INT64_MAX, &m.job); break;
        case 'k': rc = parse_int64(optarg, 0, 10000, &m.job_tasks); break;
        case 'R': m.record = optarg; break;
        case 'o': jobs_out = optarg; break;
        case 'n': rc = parse_int64(optarg, 1, INT64_MAX, &count); break;
        case 's': rc = parse_int64(optarg, 0, INT64_MAX, &seed); break;
        case 'H': rc = parse_int64(optarg, 0, 1000000, &hellos); break;
        default: return 2;
        }
        if (rc != 0) {
            fprintf(stderr, "chaos-storm: bad value for an option: %s\n", optarg);
            return 2;
        }
    }
    if (!api || !report || !pid || !m.job || !m.record || !jobs_out
        || hostport_parse(api, &m.host, &m.api_port) != 0) {
        fprintf(stderr, "chaos-storm master: --api, --report, --pid, --job, --job-tasks, "
                        "--record and --jobs-out are required\n");
        return 2;
    }
    s_seed ^= (uint64_t) seed * 0x2545F4914F6CDD1Dull;
    m.report_port = (int) report;
    m.pid = (pid_t) pid;
    m.jobs_out = fopen(jobs_out, "w");
    if (!m.jobs_out) {
        fprintf(stderr, "chaos-storm: %s: %s\n", jobs_out, strerror(errno));
        return 2;
    }
    m.ctx = zmq_ctx_new();
    m.api = s_socket(m.ctx, ZMQ_DEALER, REPLY_TIMEOUT_MS);
    s_connect(m.api, m.host, m.api_port);
    m.report = s_socket(m.ctx, ZMQ_PUSH, REPLY_TIMEOUT_MS);
    s_connect(m.report, m.host, m.report_port);

    mem_t before = s_mem(m.pid), warm = before;
    s_print_mem("master", "before", before);
    if (!m_legal(&m, 0))
        return 1;
    gbuf_t g = {0};
    int64_t warm_at = count / 10, t0 = s_mono_ms();
    long turn = 1;
    for (int64_t i = 0; i < count && s_failures == 0;) {
        if (i >= warm_at && warm.rss_kb == before.rss_kb && warm.fds == before.fds) {
            warm = s_mem(m.pid);
            s_print_mem("master", "after 10% (warm-up)", warm);
        }
        /* A window: garbage to both sockets, then one legal request. */
        int napi = 0;
        for (int w = 0; w < WINDOW && i < count; w++, i++) {
            bool to_api = s_below(10) < 6;
            gkind_t k = g_next(&g, to_api ? s_api_templates : s_report_templates,
                               to_api ? NAPI : NREPORT, to_api);
            m.kinds[k]++;
            if (zmqx_send(to_api ? m.api : m.report, g.buf, g.len, 0) != 0) {
                s_fail("send blocked for %d ms: the master stopped reading", REPLY_TIMEOUT_MS);
                break;
            }
            if (to_api) {
                napi++;
                m.sent_api++;
            } else {
                m.sent_report++;
            }
        }
        for (int r = 0; r < napi && s_failures == 0; r++) {
            size_t len;
            char *buf = m_recv(&m, &len, "a garbage request");
            if (buf)
                m_judge_garbage_reply(&m, buf, len);
            free(buf);
        }
        if (s_failures || !m_legal(&m, turn++))
            break;
        /* Now and then a multipart message: answered once (empty
           delimiter) or not at all (anything else), never twice. */
        if (s_below(50) == 0) {
            bool delim = s_below(2);
            zmqx_send(m.api, delim ? "" : "x", delim ? 0 : 1, ZMQ_SNDMORE);
            zmqx_send(m.api, "{\"v\":1,\"type\":\"jobs\"}", 21, 0);
            m.multipart++;
            i++;
            if (delim) {
                /* REQ-style: the reply comes back behind the same empty
                   delimiter. */
                zmqx_frames_t f;
                if (zmqx_recv_frames(m.api, &f, 4, 0) != 0) {
                    s_fail("no reply to a request behind an empty delimiter (%s)",
                           zmq_strerror(errno));
                    break;
                }
                proto_err_t err;
                proto_reply_t *rep = f.count == 2 && f.sizes[0] == 0
                                         ? proto_reply_decode(f.frames[1], f.sizes[1],
                                                              PROTO_REQ_JOBS, &err)
                                         : NULL;
                if (!rep || !rep->ok)
                    s_fail("wrong reply to a request behind an empty delimiter (%d frames)",
                           f.count);
                proto_reply_destroy(&rep);
                zmqx_frames_free(&f);
            }
            if (!m_legal(&m, turn++))
                break;
        }
        if (!s_alive(m.pid)) {
            s_fail("the master died after %" PRId64 " messages", i);
            break;
        }
    }
    double secs = (double) (s_mono_ms() - t0) / 1000.0;
    mem_t end = s_mem(m.pid);
    s_print_mem("master", "after the storm", end);
    if (s_failures == 0) {
        m_hello_flood(&m, (int) hellos);
        s_print_mem("master", "after the hello flood", s_mem(m.pid));
        m_oversize(&m);
        m_legal(&m, 0);
        m_legal(&m, 1);
    }
    if (!s_alive(m.pid))
        s_fail("the master is gone");
    printf("  master storm: %ld to the API, %ld to the report port, %ld multipart, %.1f s "
           "(%.0f msg/s)\n",
           m.sent_api, m.sent_report, m.multipart, secs, (double) (m.sent_api + m.sent_report) / secs);
    printf("  kinds:");
    for (int k = 0; k < G_KINDS; k++)
        printf(" %s %ld", s_kind_names[k], m.kinds[k]);
    printf("\n  API garbage: %ld refused (", m.refused);
    for (size_t c = 0; c < NCODES; c++)
        if (m.codes[c])
            printf(" %s %ld", s_codes[c], m.codes[c]);
    printf(" ), %ld accepted (mutations that came out legal)\n", m.accepted);
    printf("  legal requests answered right: %ld; oversize frames %d\n", m.legal,
           OVERSIZE_FRAMES);
    printf("  hello flood: %" PRId64 " hellos, %ld registered, %ld refused%s%s\n", hellos,
           m.hellos_ok, m.hellos_refused, m.hellos_refused ? ", first refusal: " : "",
           m.hello_refusal);
    printf("  figures: rss_before_kb=%ld rss_warm_kb=%ld rss_end_kb=%ld hwm_kb=%ld fds_before=%d "
           "fds_end=%d\n",
           before.rss_kb, warm.rss_kb, end.rss_kb, end.hwm_kb, before.fds, end.fds);
    free(g.buf);
    fclose(m.jobs_out);
    free(m.host);
    zmq_close(m.api);
    zmq_close(m.report);
    zmq_ctx_term(m.ctx);
    return s_failures ? 1 : 0;
}

/* ======================================================================
   worker mode: a fake master
   ====================================================================== */

typedef struct {
    void *ctx, *api, *pipe, *reports;
    int api_port, pipe_port, report_port;
    pid_t pid;
    int64_t last_send;
    int hellos, bad_hellos_left;
    long results, wrong, unknown, heartbeats, byes;
    /* legal task i (id LEGAL_BASE + i, i in 1..nlegal) answered? */
    unsigned char *answered;
    int64_t nlegal, caplegal;
    long kinds[G_KINDS];
} wstorm_t;

static const char *const s_bad_hello_replies[] = {
    "\x01\x02 not json",
    "{\"v\":1,\"type\":\"reply\",\"ok\":false,\"error\":{\"code\":\"internal\","
    "\"message\":\"storm says no\"}}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"fake\",\"task_port\":70000,"
    "\"report_port\":0,\"heartbeat_ms\":1,\"liveness\":0}",
};
#define NBAD_HELLO (int) (sizeof s_bad_hello_replies / sizeof s_bad_hello_replies[0])
/* Legal task ids start far from the templates' 800000001..: a mutation
   (say "task":0000001 for an abort, which the decoder accepts) must not
   hit a legal task by chance. */
#define LEGAL_BASE INT64_C(7000000000000)

static void w_answer_hellos(wstorm_t *w)
{
    for (;;) {
        zmqx_frames_t f;
        if (zmqx_recv_frames(w->api, &f, 8, ZMQ_DONTWAIT) != 0)
            return;
        if (f.count >= 2) {
            w->hellos++;
            char rep[512];
            const char *text;
            if (w->bad_hellos_left > 0) {
                text = s_bad_hello_replies[NBAD_HELLO - w->bad_hellos_left];
                w->bad_hellos_left--;
            } else {
                /* 200 ms x 5: a worker whose pipe connection libzmq has
                   dropped (a frame over the limit ends it for good on the
                   connecting side) registers again within a second. While
                   idle we ping every 100 ms (w_keepalive). */
                snprintf(rep, sizeof rep,
                         "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"storm-w\","
                         "\"task_port\":%d,\"report_port\":%d,\"heartbeat_ms\":200,"
                         "\"liveness\":5}",
                         w->pipe_port, w->report_port);
                text = rep;
            }
            for (int i = 0; i < f.count - 1; i++)
                zmqx_send(w->api, f.frames[i], f.sizes[i], ZMQ_SNDMORE);
            zmqx_send(w->api, text, strlen(text), 0);
        }
        zmqx_frames_free(&f);
    }
}

static void w_read_reports(wstorm_t *w)
{
    for (;;) {
        size_t len;
        char *buf = zmqx_recv(w->reports, &len, ZMQ_DONTWAIT);
        if (!buf)
            return;
        proto_err_t err;
        proto_report_t *rep = proto_report_decode(buf, len, &err);
        if (!rep) {
            s_fail("the worker sent a report its own protocol refuses (%s: %s): %.200s",
                   err.code, err.message, buf);
        } else if (rep->type == PROTO_REP_HEARTBEAT) {
            w->heartbeats++;
        } else if (rep->type == PROTO_REP_BYE) {
            w->byes++;
        } else if (rep->type == PROTO_REP_RESULTS) {
            for (int i = 0; i < rep->nresults; i++) {
                const proto_result_t *r = rep->results[i];
                w->results++;
                int64_t i = r->task - LEGAL_BASE;
                if (i < 1 || i > w->nlegal) {
                    w->unknown++; /* a mutation that came out a legal task */
                    continue;
                }
                /* square of n = i (small enough for a double's 2^53). */
                char want[48];
                snprintf(want, sizeof want, "%" PRId64, i * i);
                if (r->status != PROTO_ST_DONE || r->attempt != 1 || !r->result_json
                    || strcmp(r->result_json, want)) {
                    w->wrong++;
                    s_fail("legal task %" PRId64 ": wrong result %s (status %d, error %s)",
                           r->task, r->result_json ? r->result_json : "null", (int) r->status,
                           r->error ? r->error : "none");
                } else if (w->answered[i]++) {
                    w->wrong++;
                    s_fail("legal task %" PRId64 " answered twice", r->task);
                }
            }
        }
        proto_report_destroy(&rep);
        free(buf);
    }
}

/* A ping when nothing went down the pipe for 100 ms, as a master does. */
static void w_keepalive(wstorm_t *w)
{
    int64_t now = s_mono_ms();
    if (now - w->last_send < 100)
        return;
    static const char ping[] = "{\"v\":1,\"type\":\"ping\"}";
    if (zmqx_send(w->pipe, ping, sizeof ping - 1, ZMQ_DONTWAIT) == 0)
        w->last_send = now;
}

/* Sends one frame down the pipe without ever blocking on a full queue
   while reports pile up: waits for room, reading reports meanwhile. */
static bool w_send(wstorm_t *w, const char *buf, size_t len, int64_t deadline_ms)
{
    while (zmqx_send(w->pipe, buf, len, ZMQ_DONTWAIT) != 0) {
        if (errno != EAGAIN || s_mono_ms() > deadline_ms)
            return false;
        zmq_pollitem_t items[] = {{w->reports, 0, ZMQ_POLLIN, 0}, {w->pipe, 0, ZMQ_POLLOUT, 0},
                                  {w->api, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 3, 50);
        w_read_reports(w);
        w_answer_hellos(w);
    }
    w->last_send = s_mono_ms();
    return true;
}

static bool w_send_legal(wstorm_t *w)
{
    if (w->nlegal + 1 >= w->caplegal) {
        w->caplegal = w->caplegal ? w->caplegal * 2 : 1024;
        w->answered = xrealloc(w->answered, (size_t) w->caplegal);
    }
    int64_t i = ++w->nlegal;
    w->answered[i] = 0;
    char msg[256];
    snprintf(msg, sizeof msg,
             "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":%" PRId64 ",\"attempt\":1,\"job\":1,"
             "\"spec\":{\"fn\":\"square\",\"args\":{\"n\":%" PRId64 "}}}]}",
             LEGAL_BASE + i, i);
    return w_send(w, msg, strlen(msg), s_mono_ms() + REPLY_TIMEOUT_MS);
}

static const char *const s_pipe_templates[] = {
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":800000001,\"attempt\":1,\"job\":7,\"spec\":"
    "{\"fn\":\"square\",\"args\":{\"n\":3},\"timeout\":2,\"index\":4,\"name\":\"t\"}}]}",
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":800000002,\"attempt\":2,\"job\":7,\"spec\":"
    "{\"fn\":\"echo\",\"args\":[1,\"a\",{\"b\":null}],\"output_cap\":10}},{\"id\":800000003,"
    "\"attempt\":1,\"job\":7,\"spec\":{\"argv\":[\"true\"],\"env\":{\"A\":\"1\"}}}]}",
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":800000004,\"attempt\":1,\"job\":7,\"spec\":"
    "{\"shell\":\"echo hi\",\"stdin\":\"x\",\"cwd\":\"/\",\"require\":[\"gpu\"]}}]}",
    "{\"v\":1,\"type\":\"abort\",\"task\":800000001,\"attempt\":1}",
    "{\"v\":1,\"type\":\"ping\"}",
};
#define NPIPE (sizeof s_pipe_templates / sizeof s_pipe_templates[0])

static void w_wait_results(wstorm_t *w, int64_t timeout_ms)
{
    int64_t deadline = s_mono_ms() + timeout_ms;
    for (;;) {
        int64_t missing = 0;
        for (int64_t id = 1; id <= w->nlegal; id++)
            missing += !w->answered[id];
        if (missing == 0 || s_mono_ms() > deadline || s_failures)
            return;
        zmq_pollitem_t items[] = {{w->reports, 0, ZMQ_POLLIN, 0}, {w->api, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 2, 50);
        w_read_reports(w);
        w_answer_hellos(w);
        w_keepalive(w);
    }
}

/* Legal tasks 1..upto without a result. */
static int64_t w_missing(const wstorm_t *w, int64_t upto)
{
    int64_t missing = 0;
    for (int64_t id = 1; id <= upto; id++)
        missing += !w->answered[id];
    return missing;
}

static pid_t w_spawn(char **argv, int argc, int api_port)
{
    char api[64];
    snprintf(api, sizeof api, "127.0.0.1:%d", api_port);
    char **args = xcalloc((size_t) argc + 1, sizeof(char *));
    for (int i = 0; i < argc; i++) {
        const char *at = strstr(argv[i], "{API}");
        if (at)
            args[i] = xasprintf("%.*s%s%s", (int) (at - argv[i]), argv[i], api, at + 5);
        else
            args[i] = xstrdup(argv[i]);
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        execvp(args[0], args);
        _exit(127);
    }
    for (int i = 0; i < argc; i++)
        free(args[i]);
    free(args);
    return pid;
}

static int run_worker(int argc, char **argv)
{
    static const struct option opts[] = {
        {"count", required_argument, 0, 'n'}, {"seed", required_argument, 0, 's'}, {0, 0, 0, 0}};
    int64_t count = 100000, seed = 1;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        int rc = 0;
        switch (o) {
        case 'n': rc = parse_int64(optarg, 1, INT64_MAX, &count); break;
        case 's': rc = parse_int64(optarg, 0, INT64_MAX, &seed); break;
        default: return 2;
        }
        if (rc != 0)
            return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "chaos-storm worker: give the worker command after --\n");
        return 2;
    }
    s_seed ^= (uint64_t) seed * 0x2545F4914F6CDD1Dull;
    wstorm_t w = {0};
    w.bad_hellos_left = NBAD_HELLO;
    w.ctx = zmq_ctx_new();
    w.api = s_socket(w.ctx, ZMQ_ROUTER, 1000);
    w.pipe = s_socket(w.ctx, ZMQ_PUSH, 1000);
    w.reports = s_socket(w.ctx, ZMQ_PULL, 1000);
    int hwm = 100000;
    zmq_setsockopt(w.reports, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_bind(w.api, "tcp://127.0.0.1:*") || zmq_bind(w.pipe, "tcp://127.0.0.1:*")
        || zmq_bind(w.reports, "tcp://127.0.0.1:*")) {
        fprintf(stderr, "chaos-storm: bind: %s\n", zmq_strerror(errno));
        return 2;
    }
    w.api_port = zmqx_bound_port(w.api);
    w.pipe_port = zmqx_bound_port(w.pipe);
    w.report_port = zmqx_bound_port(w.reports);
    w.pid = w_spawn(argv + optind, argc - optind, w.api_port);
    printf("  fake master: api %d, pipe %d, reports %d; worker pid %d\n", w.api_port, w.pipe_port,
           w.report_port, (int) w.pid);
    fflush(stdout);

    /* Registration: broken replies first, then a good one; the worker is
       ready when its PULL has connected (a PUSH send stops failing). */
    int64_t deadline = s_mono_ms() + REPLY_TIMEOUT_MS;
    while (w.bad_hellos_left > 0 || w.hellos <= NBAD_HELLO) {
        if (s_mono_ms() > deadline || !s_alive(w.pid)) {
            s_fail("the worker did not get through its hellos (%d seen)", w.hellos);
            goto out;
        }
        zmq_pollitem_t items[] = {{w.api, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 1, 50);
        w_answer_hellos(&w);
    }
    if (!w_send_legal(&w)) {
        s_fail("the worker's task pipe never connected");
        goto out;
    }
    w_wait_results(&w, REPLY_TIMEOUT_MS);
    if (w_missing(&w, w.nlegal)) {
        s_fail("the first legal task got no result");
        goto out;
    }
    mem_t before = s_mem(w.pid), warm = before;
    s_print_mem("worker", "registered", before);

    gbuf_t g = {0};
    int64_t t0 = s_mono_ms(), warm_at = count / 10;
    for (int64_t i = 0; i < count && s_failures == 0; i++) {
        if (i == warm_at) {
            warm = s_mem(w.pid);
            s_print_mem("worker", "after 10% (warm-up)", warm);
        }
        gkind_t k = g_next(&g, s_pipe_templates, NPIPE, false);
        w.kinds[k]++;
        bool multipart = s_below(500) == 0;
        if (multipart)
            zmqx_send(w.pipe, "x", 1, ZMQ_SNDMORE);
        if (!w_send(&w, g.buf, g.len, s_mono_ms() + REPLY_TIMEOUT_MS)) {
            s_fail("the worker stopped reading its pipe (after %" PRId64 " messages)", i);
            break;
        }
        if (i % WINDOW == 0 && !w_send_legal(&w)) {
            s_fail("the worker stopped reading its pipe (after %" PRId64 " messages)", i);
            break;
        }
        if (i % 256 == 0) {
            w_read_reports(&w);
            w_answer_hellos(&w);
            if (!s_alive(w.pid)) {
                s_fail("the worker died after %" PRId64 " messages", i);
                break;
            }
        }
    }
    double secs = (double) (s_mono_ms() - t0) / 1000.0;
    w_wait_results(&w, REPLY_TIMEOUT_MS);
    int64_t legal = w.nlegal, probes = 0;
    if (w_missing(&w, legal))
        s_fail("%" PRId64 " of %" PRId64 " legal tasks got no result", w_missing(&w, legal), legal);
    mem_t end = s_mem(w.pid);
    s_print_mem("worker", "after the storm", end);

    /* Frames over the limit: libzmq drops the connection and, on the
       connecting side, does not reconnect; the worker hears nothing, says
       hello again and connects a new pipe. Then a legal task must come
       back. */
    if (s_failures == 0) {
        size_t len = (size_t) PROTO_MAX_PIPE_MSG + 1024 * 1024;
        char *huge = xmalloc(len);
        memset(huge, ' ', len);
        huge[0] = '{';
        huge[len - 1] = '}';
        for (int i = 0; i < OVERSIZE_FRAMES; i++)
            if (!w_send(&w, huge, len, s_mono_ms() + REPLY_TIMEOUT_MS))
                s_fail("cannot send an oversize frame");
        free(huge);
        /* What was queued behind a dropped connection may be gone: resend
           fresh tasks until one comes back. */
        int64_t first = w.nlegal + 1, until = s_mono_ms() + REPLY_TIMEOUT_MS;
        bool back = false;
        while (!back && s_mono_ms() < until && s_failures == 0) {
            w_send_legal(&w);
            probes++;
            w_wait_results(&w, 500);
            for (int64_t id = first; id <= w.nlegal; id++)
                back = back || w.answered[id];
        }
        if (!back)
            s_fail("no legal task came back after the oversize frames");
    }
    if (!s_alive(w.pid))
        s_fail("the worker is gone");
    /* SIGTERM: it drains (nothing to do) and exits 0, saying bye. */
    kill(w.pid, SIGTERM);
    int status = 0;
    int64_t until = s_mono_ms() + REPLY_TIMEOUT_MS;
    pid_t got = 0;
    while ((got = waitpid(w.pid, &status, WNOHANG)) == 0 && s_mono_ms() < until) {
        zmq_pollitem_t items[] = {{w.reports, 0, ZMQ_POLLIN, 0}, {w.api, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 2, 50);
        w_read_reports(&w);
        w_answer_hellos(&w);
    }
    if (got != w.pid) {
        s_fail("the worker did not exit within %d ms of SIGTERM", REPLY_TIMEOUT_MS);
        kill(w.pid, SIGKILL);
        waitpid(w.pid, &status, 0);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        s_fail("the worker ended with status 0x%x on SIGTERM, want exit 0", status);
    }
    w_read_reports(&w);
    w.pid = 0;

    printf("  worker storm: %" PRId64 " pipe messages, %.1f s (%.0f msg/s)\n", count, secs,
           (double) count / secs);
    printf("  kinds:");
    for (int k = 0; k < G_KINDS; k++)
        printf(" %s %ld", s_kind_names[k], w.kinds[k]);
    printf("\n  legal tasks: %" PRId64 " sent, %" PRId64 " answered right, %ld wrong; "
           "%ld results for mutated tasks; %d hellos (%d refused on purpose); %ld heartbeats; "
           "bye %ld; %" PRId64 " probe(s) after %d oversize frames\n",
           legal, legal - w_missing(&w, legal), w.wrong, w.unknown, w.hellos, NBAD_HELLO,
           w.heartbeats, w.byes, probes, OVERSIZE_FRAMES);
    printf("  figures: rss_before_kb=%ld rss_warm_kb=%ld rss_end_kb=%ld hwm_kb=%ld\n",
           before.rss_kb, warm.rss_kb, end.rss_kb, end.hwm_kb);
    if (w.byes != 1)
        s_fail("the worker said bye %ld times on SIGTERM, want 1", w.byes);
    free(g.buf);
out:
    if (w.pid > 0) {
        kill(w.pid, SIGKILL);
        waitpid(w.pid, NULL, 0);
    }
    free(w.answered);
    zmq_close(w.api);
    zmq_close(w.pipe);
    zmq_close(w.reports);
    zmq_ctx_term(w.ctx);
    return s_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "master"))
        return run_master(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "worker"))
        return run_worker(argc - 1, argv + 1);
    fprintf(stderr, "usage: chaos-storm master --api HOST:PORT --report PORT --pid PID --job J\n"
                    "                          --job-tasks K --record FILE --jobs-out FILE\n"
                    "                          [--count N] [--seed S] [--hellos H]\n"
                    "       chaos-storm worker [--count N] [--seed S] -- WORKER COMMAND...\n");
    return 2;
}
