/*  storm_master: `chaos-storm master`, hostile input against a running
    master's API ROUTER and REPORT PULL with legal requests interleaved
    (see chaos_storm.c for the whole tool). Threads: one.
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
#include <zmq.h>

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

int storm_master_main(int argc, char **argv)
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
    if (!m_legal(&m, 0))
        return 1;
    gbuf_t g = {0};
    int64_t warm_at = count / 10, t0 = storm_mono_ms();
    long turn = 1;
    for (int64_t i = 0; i < count && storm_failures() == 0;) {
        if (i >= warm_at && warm.rss_kb == before.rss_kb && warm.fds == before.fds) {
            warm = storm_mem(m.pid);
            storm_print_mem("master", "after 10% (warm-up)", warm);
        }
        /* A window: garbage to both sockets, then one legal request. */
        int napi = 0;
        for (int w = 0; w < WINDOW && i < count; w++, i++) {
            bool to_api = storm_below(10) < 6;
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
    return storm_failures() ? 1 : 0;
}
