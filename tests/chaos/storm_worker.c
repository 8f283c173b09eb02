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

static void w_wait_results(wstorm_t *w, int64_t timeout_ms)
{
    int64_t deadline = storm_mono_ms() + timeout_ms;
    for (;;) {
        int64_t missing = 0;
        for (int64_t id = 1; id <= w->nlegal; id++)
            missing += !w->answered[id];
        if (missing == 0 || storm_mono_ms() > deadline || storm_failures())
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

int storm_worker_main(int argc, char **argv)
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
    storm_seed((uint64_t) seed);
    wstorm_t w = {0};
    w.bad_hellos_left = NBAD_HELLO;
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

    /* Registration: broken replies first, then a good one; the worker is
       ready when its PULL has connected (a PUSH send stops failing). */
    int64_t deadline = storm_mono_ms() + REPLY_TIMEOUT_MS;
    while (w.bad_hellos_left > 0 || w.hellos <= NBAD_HELLO) {
        if (storm_mono_ms() > deadline || !storm_alive(w.pid)) {
            storm_fail("the worker did not get through its hellos (%d seen)", w.hellos);
            goto out;
        }
        zmq_pollitem_t items[] = {{w.api, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, 1, 50);
        w_answer_hellos(&w);
    }
    if (!w_send_legal(&w)) {
        storm_fail("the worker's task pipe never connected");
        goto out;
    }
    w_wait_results(&w, REPLY_TIMEOUT_MS);
    if (w_missing(&w, w.nlegal)) {
        storm_fail("the first legal task got no result");
        goto out;
    }
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
           "%ld results for mutated tasks; %d hellos (%d refused on purpose); %ld heartbeats; "
           "bye %ld; %" PRId64 " probe(s) after %d oversize frames\n",
           legal, legal - w_missing(&w, legal), w.wrong, w.unknown, w.hellos, NBAD_HELLO,
           w.heartbeats, w.byes, probes, OVERSIZE_FRAMES);
    printf("  figures: rss_before_kb=%ld rss_warm_kb=%ld rss_end_kb=%ld hwm_kb=%ld\n",
           before.rss_kb, warm.rss_kb, end.rss_kb, end.hwm_kb);
    if (w.byes != 1)
        storm_fail("the worker said bye %ld times on SIGTERM, want 1", w.byes);
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
    return storm_failures() ? 1 : 0;
}
