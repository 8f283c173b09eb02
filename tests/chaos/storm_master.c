/*  storm_master: `chaos-storm master`, hostile input against a running
    master's API ROUTER, its REPORT PULL and the task pipe (PUSH) of a fake
    worker, with legal requests interleaved (see chaos_storm.c for the
    whole tool). Threads: one.
*/
#include "storm.h"

#include "../../common/util.h"
#include "../../common/zmqx.h"
#include "../../proto/proto.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* ======================================================================
   master mode
   ====================================================================== */

/* The master's three kinds of port. */
enum { P_API, P_REPORT, P_PIPE, P_PORTS };
static const char *const s_port_names[P_PORTS] = {"API", "report", "pipe"};
/* The socket type a legal peer of each announces, and types it refuses. */
static const char *const s_peer_types[P_PORTS] = {"DEALER", "PUSH", "PULL"};
static const int s_wrong_types[P_PORTS][4] = {
    {ZMQ_PUSH, ZMQ_PULL, ZMQ_PUB, ZMQ_PAIR},
    {ZMQ_DEALER, ZMQ_PULL, ZMQ_ROUTER, ZMQ_PAIR},
    {ZMQ_PUSH, ZMQ_DEALER, ZMQ_PAIR, ZMQ_ROUTER},
};
/* Peers of a wrong socket type alive at once: each is replaced every
   WRONG_EVERY windows, so it lives long enough to connect and be refused
   (and, refused, to retry on its own). */
#define WRONG_RING 6
#define WRONG_EVERY 4
/* The fake worker's heartbeats (the master's liveness is 3 x 1 s). */
#define FAKE_HEARTBEAT_MS 250

typedef struct {
    void *ctx, *api, *report;
    char *host;
    int api_port, report_port;
    /* The task pipe: a fake worker registered (hello) and drained at once,
       so the master sends it no task; a stranger PULL connected to its
       pipe the whole storm may receive only pings. */
    char fake[PROTO_MAX_NAME + 16];
    int pipe_port;
    void *stranger;
    long stranger_pings, stranger_other, fake_heartbeats;
    int64_t next_heartbeat;
    void *wrong[WRONG_RING];
    long wrong_peers[P_PORTS];
    rstats_t raw[P_PORTS];
    int unending[P_PORTS];
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
        storm_fail("malformed reply to garbage: %.200s", buf);
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
            storm_fail("refusal without a known code and a short message: %.200s", buf);
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
        storm_fail("no reply to %s within %d ms (%s)", what, REPLY_TIMEOUT_MS, zmq_strerror(errno));
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
        storm_fail("cannot send a legal request: %s", zmq_strerror(errno));
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
        storm_fail("wrong answer to legal request %s: %.300s", req, buf);
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
        void *s = storm_socket(m->ctx, i % 2 ? ZMQ_PUSH : ZMQ_DEALER, 2000);
        storm_connect(s, m->host, i % 2 ? m->report_port : m->api_port);
        if (zmqx_send(s, huge, len, 0) != 0)
            storm_fail("cannot send an oversize frame: %s", zmq_strerror(errno));
        if (i % 2 == 0) {
            /* Never read, so never answered. */
            size_t rlen;
            char *rep = zmqx_recv(s, &rlen, 0);
            if (rep)
                storm_fail("the master answered a frame over the limit: %.100s", rep);
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
                 i, storm_rand() % 1000000);
        if (zmqx_send(m->api, req, strlen(req), 0) != 0) {
            storm_fail("cannot send hello %d", i);
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
            storm_fail("malformed hello reply: %.200s", buf);
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

/* ---- the task pipe of a fake worker, raw TCP and wrong peers ---- */

static int m_port(const mstorm_t *m, int p)
{
    return p == P_API ? m->api_port : p == P_REPORT ? m->report_port : m->pipe_port;
}

/* A fake worker: hello (a task port), then drain at once, so the master
   never sends it a task; a stranger PULL then connects to its pipe. Without
   CURVE a stranger could take a real worker's tasks that way (a known
   property of insecure mode, docs/security.md), which is why it goes on
   this pipe only. */
static bool m_fake_worker(mstorm_t *m)
{
    static const char hello[] = "{\"v\":1,\"type\":\"hello\",\"name\":\"storm-pipe\","
                                "\"host\":\"storm\",\"pid\":2,\"threads\":1}";
    if (zmqx_send(m->api, hello, sizeof hello - 1, 0) != 0) {
        storm_fail("cannot send the fake worker's hello: %s", zmq_strerror(errno));
        return false;
    }
    size_t len;
    char *buf = m_recv(m, &len, "the fake worker's hello");
    if (!buf)
        return false;
    proto_err_t err;
    proto_reply_t *rep = proto_reply_decode(buf, len, PROTO_REQ_HELLO, &err);
    bool ok = rep && rep->ok && rep->worker_id && rep->task_port > 0;
    if (ok) {
        snprintf(m->fake, sizeof m->fake, "%s", rep->worker_id);
        m->pipe_port = rep->task_port;
    } else {
        storm_fail("the fake worker's hello was not answered right: %.200s", buf);
    }
    proto_reply_destroy(&rep);
    free(buf);
    if (!ok)
        return false;
    char req[sizeof m->fake + 64];
    snprintf(req, sizeof req, "{\"v\":1,\"type\":\"drain\",\"worker\":\"%s\"}", m->fake);
    if (zmqx_send(m->api, req, strlen(req), 0) != 0 || !(buf = m_recv(m, &len, "the drain")))
        return false;
    rep = proto_reply_decode(buf, len, PROTO_REQ_DRAIN, &err);
    ok = rep && rep->ok;
    if (!ok)
        storm_fail("the fake worker's drain was not answered right: %.200s", buf);
    proto_reply_destroy(&rep);
    free(buf);
    m->stranger = storm_socket(m->ctx, ZMQ_PULL, 0);
    storm_connect(m->stranger, m->host, m->pipe_port);
    m->next_heartbeat = storm_mono_ms();
    return ok;
}

static void m_fake_report(mstorm_t *m, proto_report_type_t type)
{
    proto_report_t *r = proto_report_new(type, m->fake);
    char *text = proto_report_encode(r);
    if (!text || zmqx_send(m->report, text, strlen(text), 0) != 0)
        storm_fail("cannot send the fake worker's %s: %s",
                   type == PROTO_REP_BYE ? "bye" : "heartbeat", zmq_strerror(errno));
    free(text);
    proto_report_destroy(&r);
}

/* Heartbeats keep the fake (and so its pipe) alive; the stranger's
   messages may be pings (or the drain), never a task. */
static void m_fake_tick(mstorm_t *m)
{
    int64_t now = storm_mono_ms();
    if (now >= m->next_heartbeat) {
        m_fake_report(m, PROTO_REP_HEARTBEAT);
        m->fake_heartbeats++;
        m->next_heartbeat = now + FAKE_HEARTBEAT_MS;
    }
    size_t len;
    char *buf;
    while ((buf = zmqx_recv(m->stranger, &len, ZMQ_DONTWAIT))) {
        proto_err_t err;
        proto_pipe_t *msg = proto_pipe_decode(buf, len, &err);
        if (msg && (msg->type == PROTO_PIPE_PING || msg->type == PROTO_PIPE_DRAIN)) {
            m->stranger_pings++;
        } else {
            m->stranger_other++;
            storm_fail("a stranger on the drained fake worker's pipe got %.200s", buf);
        }
        proto_pipe_destroy(&msg);
        free(buf);
    }
}

/* Replaces one peer of the ring with a new one of a socket type the port
   refuses; those that can send queue a request (never delivered). */
static void m_wrong_peer(mstorm_t *m, long turn)
{
    int slot = (int) (turn % WRONG_RING);
    if (m->wrong[slot])
        zmq_close(m->wrong[slot]);
    int p = (int) storm_below(P_PORTS);
    int type = s_wrong_types[p][storm_below(4)];
    void *s = storm_socket(m->ctx, type, 0);
    storm_connect(s, m->host, m_port(m, p));
    if (type != ZMQ_PULL && type != ZMQ_ROUTER)
        zmqx_send(s, "{\"v\":1,\"type\":\"jobs\"}", 21, ZMQ_DONTWAIT);
    m->wrong[slot] = s;
    m->wrong_peers[p]++;
}

/* After the storm: the stranger got at least one ping (so it was
   connected: awaited, at most 10 s), the fake is alive, draining and holds
   no task; then it says bye (the master closes its pipe). */
static void m_fake_end(mstorm_t *m)
{
    int64_t deadline = storm_mono_ms() + 10000;
    while (m->stranger_pings + m->stranger_other == 0 && storm_mono_ms() < deadline) {
        zmq_pollitem_t items[] = {{m->stranger, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 1, 100);
        m_fake_tick(m);
    }
    if (m->stranger_pings == 0)
        storm_fail("the stranger PULL on the fake worker's pipe never got a ping");
    static const char req[] = "{\"v\":1,\"type\":\"workers\"}";
    size_t len;
    char *buf = NULL;
    if (zmqx_send(m->api, req, sizeof req - 1, 0) == 0)
        buf = m_recv(m, &len, "workers");
    if (buf) {
        proto_err_t err;
        proto_reply_t *rep = proto_reply_decode(buf, len, PROTO_REQ_WORKERS, &err);
        const proto_worker_info_t *w = NULL;
        for (int i = 0; rep && i < rep->nworkers; i++)
            if (rep->workers[i].id && !strcmp(rep->workers[i].id, m->fake))
                w = &rep->workers[i];
        if (!w || !w->alive || !w->draining || w->running != 0)
            storm_fail("the fake worker %s is not listed alive, draining and idle", m->fake);
        proto_reply_destroy(&rep);
        free(buf);
    }
    m_fake_report(m, PROTO_REP_BYE);
}

/* Every socket but the two of the storm itself (zmq_ctx_term waits for
   all), on every path. */
static void m_close_peers(mstorm_t *m)
{
    if (m->stranger)
        zmq_close(m->stranger);
    m->stranger = NULL;
    for (int i = 0; i < WRONG_RING; i++) {
        if (m->wrong[i])
            zmq_close(m->wrong[i]);
        m->wrong[i] = NULL;
    }
}

int storm_master_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"api", required_argument, 0, 'a'},      {"report", required_argument, 0, 'r'},
        {"pid", required_argument, 0, 'p'},      {"job", required_argument, 0, 'j'},
        {"job-tasks", required_argument, 0, 'k'}, {"record", required_argument, 0, 'R'},
        {"jobs-out", required_argument, 0, 'o'}, {"count", required_argument, 0, 'n'},
        {"seed", required_argument, 0, 's'},     {"hellos", required_argument, 0, 'H'},
        {"unending-mb", required_argument, 0, 'u'}, {"no-raw-pipe", no_argument, 0, 'P'},
        {0, 0, 0, 0},
    };
    mstorm_t m = {0};
    int64_t count = 100000, pid = 0, seed = 1, report = 0, hellos = 1000, unending_mb = 0;
    bool raw_pipe = true;
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
        case 'u': rc = parse_int64(optarg, 0, 4096, &unending_mb); break;
        case 'P': raw_pipe = false; break;
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
    storm_seed((uint64_t) seed);
    m.report_port = (int) report;
    m.pid = (pid_t) pid;
    m.jobs_out = fopen(jobs_out, "w");
    if (!m.jobs_out) {
        fprintf(stderr, "chaos-storm: %s: %s\n", jobs_out, strerror(errno));
        return 2;
    }
    m.ctx = zmq_ctx_new();
    m.api = storm_socket(m.ctx, ZMQ_DEALER, REPLY_TIMEOUT_MS);
    storm_connect(m.api, m.host, m.api_port);
    m.report = storm_socket(m.ctx, ZMQ_PUSH, REPLY_TIMEOUT_MS);
    storm_connect(m.report, m.host, m.report_port);

    mem_t before = storm_mem(m.pid), warm = before;
    storm_print_mem("master", "before", before);
    if (!m_legal(&m, 0) || !m_fake_worker(&m)) {
        m_close_peers(&m);
        return 1;
    }
    printf("  fake worker %s: task pipe on port %d, drained, a stranger PULL on it\n", m.fake,
           m.pipe_port);
    for (int p = 0; p < P_PORTS; p++)
        m.unending[p] = -1;
    gbuf_t g = {0};
    int64_t warm_at = count / 10, t0 = storm_mono_ms();
    long turn = 1, windows = 0;
    bool warmed = false;
    for (int64_t i = 0; i < count && storm_failures() == 0;) {
        if (i >= warm_at && !warmed) {
            warm = storm_mem(m.pid);
            warmed = true;
            storm_print_mem("master", "after 10% (warm-up)", warm);
            /* Messages that never end, held open to the end of the storm:
               libzmq keeps their frames (ZMQ_MAXMSGSIZE bounds a frame, not
               a message; the HWM counts whole messages). */
            for (int p = 0; unending_mb > 0 && p < P_PORTS; p++)
                m.unending[p] = storm_raw_unending(m_port(&m, p), s_peer_types[p],
                                                   (int) unending_mb, &m.raw[p]);
        }
        /* A window: garbage to both sockets, then one legal request. */
        int napi = 0;
        for (int w = 0; w < WINDOW && i < count; w++, i++) {
            /* At most API_INFLIGHT requests (and the legal one) before
               their replies are read: a small window keeps each reply
               check near its request. The master would answer more
               (master/conns.h: replies wait, and requests park, until
               the client reads). */
            bool to_api = storm_below(10) < 6 && napi < API_INFLIGHT;
            gkind_t k = storm_garbage(&g, to_api ? s_api_templates : s_report_templates,
                               to_api ? NAPI : NREPORT, to_api);
            m.kinds[k]++;
            if (zmqx_send(to_api ? m.api : m.report, g.buf, g.len, 0) != 0) {
                storm_fail("send blocked for %d ms: the master stopped reading", REPLY_TIMEOUT_MS);
                break;
            }
            if (to_api) {
                napi++;
                m.sent_api++;
            } else {
                m.sent_report++;
            }
        }
        for (int r = 0; r < napi && storm_failures() == 0; r++) {
            size_t len;
            char *buf = m_recv(&m, &len, "a garbage request");
            if (buf)
                m_judge_garbage_reply(&m, buf, len);
            free(buf);
        }
        if (storm_failures() || !m_legal(&m, turn++))
            break;
        /* Below ZeroMQ: one short raw connection a window, to each port in
           turn; every WRONG_EVERY windows a new peer of a wrong type. */
        int p = (int) (windows % (raw_pipe ? P_PORTS : P_PIPE));
        storm_raw(m_port(&m, p), s_peer_types[p],
                  p == P_API ? PROTO_MAX_API_MSG : p == P_REPORT ? PROTO_MAX_REPORT_MSG : 0,
                  &m.raw[p]);
        if (windows % WRONG_EVERY == 0)
            m_wrong_peer(&m, windows / WRONG_EVERY);
        windows++;
        m_fake_tick(&m);
        /* Now and then a multipart message: answered once (empty
           delimiter) or not at all (anything else), never twice. */
        if (storm_below(50) == 0) {
            bool delim = storm_below(2);
            zmqx_send(m.api, delim ? "" : "x", delim ? 0 : 1, ZMQ_SNDMORE);
            zmqx_send(m.api, "{\"v\":1,\"type\":\"jobs\"}", 21, 0);
            m.multipart++;
            i++;
            if (delim) {
                /* REQ-style: the reply comes back behind the same empty
                   delimiter. */
                zmqx_frames_t f;
                if (zmqx_recv_frames(m.api, &f, 4, 0) != 0) {
                    storm_fail("no reply to a request behind an empty delimiter (%s)",
                           zmq_strerror(errno));
                    break;
                }
                proto_err_t err;
                proto_reply_t *rep = f.count == 2 && f.sizes[0] == 0
                                         ? proto_reply_decode(f.frames[1], f.sizes[1],
                                                              PROTO_REQ_JOBS, &err)
                                         : NULL;
                if (!rep || !rep->ok)
                    storm_fail("wrong reply to a request behind an empty delimiter (%d frames)",
                           f.count);
                proto_reply_destroy(&rep);
                zmqx_frames_free(&f);
            }
            if (!m_legal(&m, turn++))
                break;
        }
        if (!storm_alive(m.pid)) {
            storm_fail("the master died after %" PRId64 " messages", i);
            break;
        }
    }
    double secs = (double) (storm_mono_ms() - t0) / 1000.0;
    mem_t end = storm_mem(m.pid);
    storm_print_mem("master", "after the storm", end);
    for (int p = 0; p < P_PORTS; p++)
        if (m.unending[p] >= 0)
            storm_raw_close(m.unending[p]);
    if (storm_failures() == 0)
        m_fake_end(&m);
    m_close_peers(&m);
    if (storm_failures() == 0) {
        m_hello_flood(&m, (int) hellos);
        storm_print_mem("master", "after the hello flood", storm_mem(m.pid));
        m_oversize(&m);
        m_legal(&m, 0);
        m_legal(&m, 1);
    }
    if (!storm_alive(m.pid))
        storm_fail("the master is gone");
    printf("  master storm: %ld to the API, %ld to the report port, %ld multipart, %.1f s "
           "(%.0f msg/s)\n",
           m.sent_api, m.sent_report, m.multipart, secs, (double) (m.sent_api + m.sent_report) / secs);
    printf("  kinds:");
    for (int k = 0; k < G_KINDS; k++)
        printf(" %s %ld", storm_kind_names[k], m.kinds[k]);
    printf("\n  API garbage: %ld refused (", m.refused);
    for (size_t c = 0; c < NCODES; c++)
        if (m.codes[c])
            printf(" %s %ld", s_codes[c], m.codes[c]);
    printf(" ), %ld accepted (mutations that came out legal)\n", m.accepted);
    printf("  legal requests answered right: %ld; oversize frames %d\n", m.legal,
           OVERSIZE_FRAMES);
    for (int p = 0; p < P_PORTS; p++)
        storm_print_raw(s_port_names[p], &m.raw[p]);
    printf("  wrong-type peers: API %ld, report %ld, pipe %ld; messages that never end: %" PRId64
           " MiB on each port\n",
           m.wrong_peers[P_API], m.wrong_peers[P_REPORT], m.wrong_peers[P_PIPE], unending_mb);
    printf("  fake worker %s: %ld heartbeats; its stranger PULL got %ld pings, %ld other\n",
           m.fake, m.fake_heartbeats, m.stranger_pings, m.stranger_other);
    printf("  hello flood: %" PRId64 " hellos, %ld registered, %ld refused%s%s\n", hellos,
           m.hellos_ok, m.hellos_refused, m.hellos_refused ? ", first refusal: " : "",
           m.hello_refusal);
    printf("  figures: rss_before_kb=%ld rss_warm_kb=%ld rss_end_kb=%ld hwm_kb=%ld fds_before=%d "
           "fds_end=%d raw_api=%ld raw_report=%ld raw_pipe=%ld wrong_peers=%ld storm_s=%.1f\n",
           before.rss_kb, warm.rss_kb, end.rss_kb, end.hwm_kb, before.fds, end.fds,
           m.raw[P_API].conns, m.raw[P_REPORT].conns, m.raw[P_PIPE].conns,
           m.wrong_peers[P_API] + m.wrong_peers[P_REPORT] + m.wrong_peers[P_PIPE], secs);
    free(g.buf);
    fclose(m.jobs_out);
    free(m.host);
    zmq_close(m.api);
    zmq_close(m.report);
    zmq_ctx_term(m.ctx);
    return storm_failures() ? 1 : 0;
}
