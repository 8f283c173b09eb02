/*  storm_worker: `chaos-storm worker`, a fake master that starts a worker
    and storms its task pipe with legal tasks interleaved (see
    chaos_storm.c for the whole tool). Threads: one; the worker is a child
    process (PR_SET_PDEATHSIG, so it dies with us).
*/
#include "storm.h"

#include "../../common/util.h"
#include "../../common/zmqx.h"
#include "../../proto/proto.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

/* ======================================================================
   worker mode: a fake master
   ====================================================================== */

/* The hello storm. Each hello until the last is answered by HELLO_BURST
   multipart messages of garbage (the worker reads each and drops it: a
   reply is one frame) and then one single-frame reply: a bad one (judged:
   the worker must refuse it and back off), or a good one with a 10 ms
   heartbeat and a liveness of 1, so the worker finds us silent at once,
   says hello again without delay (a registration resets its backoff) and
   the next bad reply costs one backoff step (200 ms +-25%), not a growing
   one. One bad reply is a frame over the 32 MiB limit: libzmq drops the
   connection and the hello times out (2 s). */
#define HELLO_BURST 100
/* The least wait after a bad reply: BACKOFF_MIN_MS (worker/session.c,
   200 ms) minus its 25% jitter, less a margin for timer granularity. */
#define HELLO_BACKOFF_MIN_MS 120

typedef enum { B_GARBAGE, B_FIXED, B_OVERSIZE, B_KINDS } bkind_t;

typedef struct {
    void *ctx, *api, *pipe, *reports;
    int api_port, pipe_port, report_port;
    pid_t pid;
    int64_t last_send;
    int hellos;
    long results, wrong, unknown, heartbeats, byes;
    /* legal task i (id LEGAL_BASE + i, i in 1..nlegal) answered? Those
       before counted_from were probes (some may have gone to a pipe that
       was closing), not judged. */
    unsigned char *answered;
    int64_t nlegal, caplegal, counted_from;
    long kinds[G_KINDS];
    /* the hello storm */
    int64_t bad_total, bad_left, oversize_at;
    size_t next_fixed;
    bool short_next, final_sent;
    long bad_kinds[B_KINDS], hello_kinds[G_KINDS], burst, short_regs, skipped;
    int64_t last_bad_ms, gap_min, gap_max, gap_sum;
    long gaps;
    gbuf_t hg;
} wstorm_t;

/* Replies a worker must refuse (ports filled in: %d task, %d report),
   given in turn. The first ones carry peer text made to forge log lines
   (a newline and a timestamp, quotes and key=value pairs). */
static const char *const s_bad_hello_replies[] = {
    "{\"v\":1,\"type\":\"x\\n2026-01-01T00:00:00.000Z ERROR ztask-worker[1] event=forged\","
    "\"ok\":true}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":false,\"error\":{\"code\":\"internal\","
    "\"message\":\"no\\r\\n2026-01-01T00:00:00.000Z ERROR ztask-worker[1] event=forged\"}}",
    "\x01\x02 not json",
    "",
    "   ",
    "[]",
    "null",
    "{\"v\":1,\"type\":\"reply\",\"ok\":false,\"error\":{\"code\":\"internal\","
    "\"message\":\"storm says no\"}}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":false,\"error\":{\"code\":\"x\\\"y\","
    "\"message\":\"line one\\nevent=forged worker=\\\"z\\\" \\u0000 \\u001b[31m\"}}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":false}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":false,\"error\":{\"code\":7}}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"fake\",\"task_port\":70000,"
    "\"report_port\":0,\"heartbeat_ms\":1,\"liveness\":0}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"\",\"task_port\":%d,"
    "\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":5,\"task_port\":%d,"
    "\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":0,"
    "\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":%d,"
    "\"report_port\":65536,\"heartbeat_ms\":10,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":\"%d\","
    "\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":%d,"
    "\"report_port\":%d,\"heartbeat_ms\":9,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":%d,"
    "\"report_port\":%d,\"heartbeat_ms\":600001,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":%d,"
    "\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1001}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":%d,"
    "\"report_port\":%d,\"heartbeat_ms\":1e400,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":%d.5,"
    "\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1}",
    "{\"v\":2,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":%d,"
    "\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1}",
    "{\"v\":1,\"type\":\"hello\",\"ok\":true,\"worker\":\"w\",\"task_port\":%d,"
    "\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":\"true\",\"worker\":\"w\",\"task_port\":%d,"
    "\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\\ud800\",\"task_port\":%d,"
    "\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\xc0\xaf\",\"task_port\":%d,"
    "\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":0,"
    "\"task_port\":%d,\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":%d,"
    "\"report_port\":%d,\"heartbeat_ms\":10,\"liveness\":1} trailing",
};
#define NBAD_HELLO (sizeof s_bad_hello_replies / sizeof s_bad_hello_replies[0])
/* Legal task ids start far from the templates' 800000001..: a mutation
   (say "task":0000001 for an abort, which the decoder accepts) must not
   hit a legal task by chance. */
#define LEGAL_BASE INT64_C(7000000000000)

/* Whether the worker would take this hello reply (worker/session.c:
   s_on_hello_reply); a "bad" reply that would pass is not sent as one. */
static bool w_acceptable(const char *buf, size_t len)
{
    proto_err_t err;
    proto_reply_t *rep = proto_reply_decode(buf, len, PROTO_REQ_HELLO, &err);
    bool ok = rep && rep->ok && rep->worker_id && *rep->worker_id && rep->task_port >= 1
              && rep->task_port <= 65535 && rep->report_port >= 1 && rep->report_port <= 65535
              && rep->heartbeat_ms >= 10 && rep->heartbeat_ms <= 600000 && rep->liveness >= 1
              && rep->liveness <= 1000;
    proto_reply_destroy(&rep);
    return ok;
}

static void w_good_reply(const wstorm_t *w, char *rep, size_t n, bool short_lived)
{
    /* Final: 200 ms x 5: a worker whose pipe connection libzmq has dropped
       (a frame over the limit ends it for good on the connecting side)
       registers again within a second. While idle we ping every 100 ms
       (w_keepalive). Short-lived: 10 ms x 1 and no ping. */
    snprintf(rep, n,
             "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"storm-w\",\"task_port\":%d,"
             "\"report_port\":%d,\"heartbeat_ms\":%d,\"liveness\":%d}",
             w->pipe_port, w->report_port, short_lived ? 10 : 200, short_lived ? 1 : 5);
}

/* One bad reply into w->hg. */
static bkind_t w_bad_reply(wstorm_t *w)
{
    gbuf_t *g = &w->hg;
    if (w->bad_left == w->oversize_at) {
        size_t len = (size_t) PROTO_MAX_API_MSG + 1024 * 1024;
        if (g->cap < len) {
            g->buf = xrealloc(g->buf, len);
            g->cap = len;
        }
        memset(g->buf, ' ', len);
        g->buf[0] = '{';
        g->buf[len - 1] = '}';
        g->len = len;
        return B_OVERSIZE;
    }
    char good[256], refusal[] = "{\"v\":1,\"type\":\"reply\",\"ok\":false,\"error\":{\"code\":"
                                "\"internal\",\"message\":\"no\"}}";
    w_good_reply(w, good, sizeof good, true);
    const char *templates[] = {good, good, refusal};
    for (int tries = 0; tries < 1000; tries++) {
        bkind_t kind;
        if (storm_below(10) < 4) {
            /* The ports go where the text says %d: task, then report. */
            const char *t = s_bad_hello_replies[w->next_fixed++ % NBAD_HELLO];
            int ports[2] = {w->pipe_port, w->report_port}, np = 0;
            if (g->cap < 1024) {
                g->buf = xrealloc(g->buf, 1024);
                g->cap = 1024;
            }
            g->len = 0;
            for (; *t && g->len < 1000; t++) {
                if (t[0] == '%' && t[1] == 'd' && np < 2) {
                    g->len += (size_t) sprintf(g->buf + g->len, "%d", ports[np++]);
                    t++;
                } else {
                    g->buf[g->len++] = *t;
                }
            }
            kind = B_FIXED;
        } else {
            w->hello_kinds[storm_garbage(g, templates, 3, false)]++;
            kind = B_GARBAGE;
        }
        if (!w_acceptable(g->buf, g->len))
            return kind;
        w->skipped++; /* a mutation that came out a good reply */
    }
    storm_fail("no bad hello reply in 1000 tries");
    return B_GARBAGE;
}

/* HELLO_BURST multipart messages of garbage behind the envelope. */
static void w_burst(wstorm_t *w, const zmqx_frames_t *f)
{
    static const char *const templates[] = {
        "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"storm-w\",\"task_port\":1,"
        "\"report_port\":1,\"heartbeat_ms\":10,\"liveness\":1}",
        "{\"v\":1,\"type\":\"reply\",\"ok\":false,\"error\":{\"code\":\"internal\","
        "\"message\":\"no\"}}",
    };
    for (int b = 0; b < HELLO_BURST; b++) {
        for (int i = 0; i < f->count - 1; i++)
            zmqx_send(w->api, f->frames[i], f->sizes[i], ZMQ_SNDMORE);
        int parts = 2 + (int) storm_below(3);
        for (int p = 0; p < parts; p++) {
            if (p == 0 && storm_below(4) == 0) {
                zmqx_send(w->api, "", 0, ZMQ_SNDMORE); /* a REQ-style delimiter */
                continue;
            }
            w->hello_kinds[storm_garbage(&w->hg, templates, 2, false)]++;
            zmqx_send(w->api, w->hg.buf, w->hg.len, p + 1 < parts ? ZMQ_SNDMORE : 0);
        }
        w->burst++;
    }
}

static void w_answer_hellos(wstorm_t *w)
{
    for (;;) {
        zmqx_frames_t f;
        if (zmqx_recv_frames(w->api, &f, 8, ZMQ_DONTWAIT) != 0)
            return;
        if (f.count >= 2) {
            int64_t now = storm_mono_ms();
            w->hellos++;
            if (w->last_bad_ms) {
                /* It backed off (and, after the frame over the limit, waited
                   for its hello to time out). */
                int64_t gap = now - w->last_bad_ms;
                w->last_bad_ms = 0;
                if (gap < HELLO_BACKOFF_MIN_MS)
                    storm_fail("a hello %" PRId64 " ms after a bad reply: no backoff", gap);
                w->gap_min = w->gaps && w->gap_min < gap ? w->gap_min : gap;
                w->gap_max = w->gap_max > gap ? w->gap_max : gap;
                w->gap_sum += gap;
                w->gaps++;
            }
            char rep[512];
            bool bad = false;
            if (w->bad_left > 0 || w->short_next) {
                w_burst(w, &f);
                if (w->short_next) {
                    w_good_reply(w, rep, sizeof rep, true);
                    w->short_next = false;
                    w->short_regs++;
                } else {
                    w->bad_kinds[w_bad_reply(w)]++;
                    w->bad_left--;
                    w->short_next = w->bad_left > 0;
                    bad = true;
                }
            } else {
                w_good_reply(w, rep, sizeof rep, false);
                w->final_sent = true;
            }
            for (int i = 0; i < f.count - 1; i++)
                zmqx_send(w->api, f.frames[i], f.sizes[i], ZMQ_SNDMORE);
            if (bad) {
                zmqx_send(w->api, w->hg.buf, w->hg.len, 0);
                w->last_bad_ms = storm_mono_ms();
            } else {
                zmqx_send(w->api, rep, strlen(rep), 0);
            }
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
            storm_fail("the worker sent a report its own protocol refuses (%s: %s): %.200s",
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
                    storm_fail("legal task %" PRId64 ": wrong result %s (status %d, error %s)",
                           r->task, r->result_json ? r->result_json : "null", (int) r->status,
                           r->error ? r->error : "none");
                } else if (w->answered[i]++) {
                    w->wrong++;
                    storm_fail("legal task %" PRId64 " answered twice", r->task);
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
    int64_t now = storm_mono_ms();
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
        if (errno != EAGAIN || storm_mono_ms() > deadline_ms)
            return false;
        zmq_pollitem_t items[] = {{w->reports, 0, ZMQ_POLLIN, 0}, {w->pipe, 0, ZMQ_POLLOUT, 0},
                                  {w->api, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 3, 50);
        w_read_reports(w);
        w_answer_hellos(w);
    }
    w->last_send = storm_mono_ms();
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
    return w_send(w, msg, strlen(msg), storm_mono_ms() + REPLY_TIMEOUT_MS);
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

/* Legal tasks counted_from..upto without a result. */
static int64_t w_missing(const wstorm_t *w, int64_t upto)
{
    int64_t missing = 0;
    for (int64_t id = w->counted_from; id <= upto; id++)
        missing += !w->answered[id];
    return missing;
}

static void w_wait_results(wstorm_t *w, int64_t timeout_ms)
{
    int64_t deadline = storm_mono_ms() + timeout_ms;
    for (;;) {
        if (w_missing(w, w->nlegal) == 0 || storm_mono_ms() > deadline || storm_failures())
            return;
        zmq_pollitem_t items[] = {{w->reports, 0, ZMQ_POLLIN, 0}, {w->api, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 2, 50);
        w_read_reports(w);
        w_answer_hellos(w);
        w_keepalive(w);
    }
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

int storm_worker_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"count", required_argument, 0, 'n'}, {"seed", required_argument, 0, 's'},
        {"hellos", required_argument, 0, 'H'}, {0, 0, 0, 0}};
    int64_t count = 100000, seed = 1, hellos = 24;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        int rc = 0;
        switch (o) {
        case 'n': rc = parse_int64(optarg, 1, INT64_MAX, &count); break;
        case 's': rc = parse_int64(optarg, 0, INT64_MAX, &seed); break;
        case 'H': rc = parse_int64(optarg, 0, 100000, &hellos); break;
        default: return 2;
        }
        if (rc != 0)
            return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "chaos-storm worker: give the worker command after --\n");
        return 2;
    }
    storm_seed((uint64_t) seed);
    wstorm_t w = {0};
    w.counted_from = 1;
    w.bad_total = w.bad_left = hellos;
    /* The frame over the limit halfway (bad_left counts down). */
    w.oversize_at = hellos >= 2 ? hellos / 2 : -1;
    w.ctx = zmq_ctx_new();
    w.api = storm_socket(w.ctx, ZMQ_ROUTER, 1000);
    w.pipe = storm_socket(w.ctx, ZMQ_PUSH, 1000);
    w.reports = storm_socket(w.ctx, ZMQ_PULL, 1000);
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

    /* The hello storm (w_answer_hellos), then the good reply. The worker
       must keep saying hello: the deadline moves with each one. */
    int64_t hello_t0 = storm_mono_ms(), deadline = hello_t0 + REPLY_TIMEOUT_MS;
    int seen = 0;
    bool hwarmed = false;
    mem_t hwarm = {-1, -1, -1};
    while (!w.final_sent) {
        if (w.hellos != seen) {
            seen = w.hellos;
            deadline = storm_mono_ms() + REPLY_TIMEOUT_MS;
        }
        if (storm_failures() || storm_mono_ms() > deadline || !storm_alive(w.pid)) {
            storm_fail("the worker stopped saying hello (%d seen, %" PRId64 " bad replies to go)",
                       w.hellos, w.bad_left);
            goto out;
        }
        if (!hwarmed && w.bad_total - w.bad_left > w.bad_total / 10) {
            hwarm = storm_mem(w.pid);
            hwarmed = true;
            storm_print_mem("worker", "after 10% of the hellos", hwarm);
        }
        zmq_pollitem_t items[] = {{w.api, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 1, 50);
        w_answer_hellos(&w);
    }
    double hello_secs = (double) (storm_mono_ms() - hello_t0) / 1000.0;
    mem_t hend = storm_mem(w.pid);
    storm_print_mem("worker", "after the hellos", hend);
    if (!hwarmed)
        hwarm = hend;
    /* Its pipe is connected when a legal task comes back: the first ones
       may go to the pipe of a short registration that is closing, so they
       are probes, resent until one returns, and not counted. */
    int64_t first = w.nlegal + 1, probe_until = storm_mono_ms() + REPLY_TIMEOUT_MS;
    long probes0 = 0;
    bool back = false;
    while (!back && storm_mono_ms() < probe_until && storm_failures() == 0) {
        if (!w_send_legal(&w)) {
            storm_fail("the worker's task pipe never connected");
            goto out;
        }
        probes0++;
        w_wait_results(&w, 500);
        for (int64_t id = first; id <= w.nlegal; id++)
            back = back || w.answered[id];
    }
    if (!back) {
        storm_fail("no legal task came back after the worker registered");
        goto out;
    }
    w.counted_from = w.nlegal + 1;
    mem_t before = storm_mem(w.pid), warm = before;
    storm_print_mem("worker", "registered", before);

    gbuf_t g = {0};
    int64_t t0 = storm_mono_ms(), warm_at = count / 10;
    for (int64_t i = 0; i < count && storm_failures() == 0; i++) {
        if (i == warm_at) {
            warm = storm_mem(w.pid);
            storm_print_mem("worker", "after 10% (warm-up)", warm);
        }
        gkind_t k = storm_garbage(&g, s_pipe_templates, NPIPE, false);
        w.kinds[k]++;
        bool multipart = storm_below(500) == 0;
        if (multipart)
            zmqx_send(w.pipe, "x", 1, ZMQ_SNDMORE);
        if (!w_send(&w, g.buf, g.len, storm_mono_ms() + REPLY_TIMEOUT_MS)) {
            storm_fail("the worker stopped reading its pipe (after %" PRId64 " messages)", i);
            break;
        }
        if (i % WINDOW == 0 && !w_send_legal(&w)) {
            storm_fail("the worker stopped reading its pipe (after %" PRId64 " messages)", i);
            break;
        }
        if (i % 256 == 0) {
            w_read_reports(&w);
            w_answer_hellos(&w);
            if (!storm_alive(w.pid)) {
                storm_fail("the worker died after %" PRId64 " messages", i);
                break;
            }
        }
    }
    double secs = (double) (storm_mono_ms() - t0) / 1000.0;
    w_wait_results(&w, REPLY_TIMEOUT_MS);
    int64_t legal = w.nlegal, probes = 0;
    if (w_missing(&w, legal))
        storm_fail("%" PRId64 " of %" PRId64 " legal tasks got no result", w_missing(&w, legal), legal);
    mem_t end = storm_mem(w.pid);
    storm_print_mem("worker", "after the storm", end);

    /* Frames over the limit: libzmq drops the connection and, on the
       connecting side, does not reconnect; the worker hears nothing, says
       hello again and connects a new pipe. Then a legal task must come
       back. */
    if (storm_failures() == 0) {
        size_t len = (size_t) PROTO_MAX_PIPE_MSG + 1024 * 1024;
        char *huge = xmalloc(len);
        memset(huge, ' ', len);
        huge[0] = '{';
        huge[len - 1] = '}';
        for (int i = 0; i < OVERSIZE_FRAMES; i++)
            if (!w_send(&w, huge, len, storm_mono_ms() + REPLY_TIMEOUT_MS))
                storm_fail("cannot send an oversize frame");
        free(huge);
        /* What was queued behind a dropped connection may be gone: resend
           fresh tasks until one comes back. */
        int64_t first = w.nlegal + 1, until = storm_mono_ms() + REPLY_TIMEOUT_MS;
        bool back = false;
        while (!back && storm_mono_ms() < until && storm_failures() == 0) {
            w_send_legal(&w);
            probes++;
            w_wait_results(&w, 500);
            for (int64_t id = first; id <= w.nlegal; id++)
                back = back || w.answered[id];
        }
        if (!back)
            storm_fail("no legal task came back after the oversize frames");
    }
    if (!storm_alive(w.pid))
        storm_fail("the worker is gone");
    /* SIGTERM: it drains (nothing to do) and exits 0, saying bye. */
    kill(w.pid, SIGTERM);
    int status = 0;
    int64_t until = storm_mono_ms() + REPLY_TIMEOUT_MS;
    pid_t got = 0;
    while ((got = waitpid(w.pid, &status, WNOHANG)) == 0 && storm_mono_ms() < until) {
        zmq_pollitem_t items[] = {{w.reports, 0, ZMQ_POLLIN, 0}, {w.api, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 2, 50);
        w_read_reports(&w);
        w_answer_hellos(&w);
    }
    if (got != w.pid) {
        storm_fail("the worker did not exit within %d ms of SIGTERM", REPLY_TIMEOUT_MS);
        kill(w.pid, SIGKILL);
        waitpid(w.pid, &status, 0);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        storm_fail("the worker ended with status 0x%x on SIGTERM, want exit 0", status);
    }
    w_read_reports(&w);
    w.pid = 0;

    printf("  worker storm: %" PRId64 " pipe messages, %.1f s (%.0f msg/s)\n", count, secs,
           (double) count / secs);
    printf("  kinds:");
    for (int k = 0; k < G_KINDS; k++)
        printf(" %s %ld", storm_kind_names[k], w.kinds[k]);
    printf("\n  legal tasks: %" PRId64 " sent, %" PRId64 " answered right, %ld wrong; "
           "%ld results for mutated tasks; %ld heartbeats; bye %ld; %ld probe(s) after the "
           "hellos, %" PRId64 " after %d oversize frames\n",
           legal - w.counted_from + 1, legal - w.counted_from + 1 - w_missing(&w, legal), w.wrong,
           w.unknown, w.heartbeats, w.byes, probes0, probes, OVERSIZE_FRAMES);
    printf("  hello storm: %d hellos; %" PRId64 " bad replies (garbage %ld, fixed %ld, oversize "
           "%ld; %ld legal mutations not sent), %ld short registrations, %ld multipart garbage "
           "replies; wait after a bad reply min / mean / max %" PRId64 " / %" PRId64 " / %" PRId64
           " ms\n",
           w.hellos, w.bad_total, w.bad_kinds[B_GARBAGE], w.bad_kinds[B_FIXED],
           w.bad_kinds[B_OVERSIZE], w.skipped, w.short_regs, w.burst, w.gap_min,
           w.gaps ? w.gap_sum / w.gaps : 0, w.gap_max);
    printf("  hello garbage kinds:");
    for (int k = 0; k < G_KINDS; k++)
        printf(" %s %ld", storm_kind_names[k], w.hello_kinds[k]);
    printf("\n");
    printf("  figures: rss_before_kb=%ld rss_warm_kb=%ld rss_end_kb=%ld hwm_kb=%ld "
           "hello_rss_warm_kb=%ld hello_rss_end_kb=%ld hello_s=%.1f storm_s=%.1f\n",
           before.rss_kb, warm.rss_kb, end.rss_kb, end.hwm_kb, hwarm.rss_kb, hend.rss_kb,
           hello_secs, secs);
    if (w.byes != 1)
        storm_fail("the worker said bye %ld times on SIGTERM, want 1", w.byes);
    free(g.buf);
out:
    if (w.pid > 0) {
        kill(w.pid, SIGKILL);
        waitpid(w.pid, NULL, 0);
    }
    free(w.answered);
    free(w.hg.buf);
    zmq_close(w.api);
    zmq_close(w.pipe);
    zmq_close(w.reports);
    zmq_ctx_term(w.ctx);
    return storm_failures() ? 1 : 0;
}
