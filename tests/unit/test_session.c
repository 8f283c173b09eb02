/*  Unit tests for worker/session (with worker/runner, pool, exec, fn):
    a real session in a thread against a fake master made of the three
    sockets the real one has, bound on 127.0.0.1 port 0:

      api      ROUTER  answers hello (and the worker's own drain request)
      pipe     PUSH    tasks, abort, recall, drain, ping -> the worker's PULL
      reports  PULL    heartbeat, started, output, results, recalled, bye

    The test thread is the master: fm_pump() handles whatever arrives and
    sends pings on schedule (unless a test turns them off), and FM_UNTIL
    waits for a condition on what has been received, with a deadline.
    Nothing waits on a sleep: time only bounds the waits.

    Signals: the test thread blocks SIGTERM/SIGINT before starting any
    thread, so kill(getpid(), SIGTERM) is taken by the session thread alone
    (session_run unblocks them there), as in the real worker.
*/
#include "../../worker/session.h"

#include "../../common/clock.h"
#include "../../common/util.h"
#include "../../common/zmqx.h"
#include "../../proto/proto.h"
#include "../../worker/fn.h"
#include "../../worker/runner.h"

#include "../ztest.h"
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* SIGTERM/SIGINT count, as in worker/main.c. */
static volatile sig_atomic_t g_signals;

static void s_on_signal(int sig)
{
    (void) sig;
    g_signals = g_signals + 1;
}

/* ---- the fake master ---- */

typedef struct {
    void *ctx;
    void *api, *pipe, *reports;
    int api_port, task_port, report_port;
    int heartbeat_ms, liveness;
    bool pinging;
    int64_t next_ping;
    /* hello handling */
    bool answer_hello;          /* reply to hellos (ok) */
    int refuse_hellos;          /* answer this many hellos with ok=false first */
    int hellos;
    int64_t hello_at[16];       /* mono ms of each hello received */
    proto_req_t *last_hello;
    proto_task_ref_t resend[4]; /* the hello reply's "resend" */
    int nresend;
    int drain_requests;
    /* reports received */
    int heartbeats;
    proto_report_t *last_heartbeat;
    int started;
    proto_task_ref_t started_refs[64];
    int results_reports;
    int max_batch;
    proto_result_t *results[64];
    int nresults;
    char outputs[3][8192];      /* concatenated OUTPUT data per stream */
    size_t output_bytes;
    int byes;
    int reports_total;
    int bye_after_results;      /* nresults when BYE arrived */
    char worker_seen[64];       /* worker id in the last report */
    /* recalled reports, and per task id (< 4096) what came of it */
    int recalled_reports;
    int lost_reports;
    int nrecalled;
    unsigned char recalled_seen[4096];   /* times listed in a recalled report */
    unsigned char result_seen[4096];     /* results received */
    /* CURVE (fm_new_curve): the master's keys and a ZAP handler. */
    char server_pub[41], server_sec[41];
    void *zap;
    bool zap_allow;
    int zap_requests;
    char zap_last_key[41];      /* Z85 of the last client key asked about */
} fm_t;

static void *s_bind(fm_t *fm, int type, int *port)
{
    void *s = zmqx_socket(fm->ctx, type, 0, 64 * 1024 * 1024);
    ck_assert_ptr_nonnull(s);
    if (fm->server_sec[0]) {
        int on = 1;
        ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SERVER, &on, sizeof on), 0);
        ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, fm->server_sec, 40), 0);
        ck_assert_int_eq(zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, "test", 4), 0);
    }
    ck_assert_int_eq(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    *port = zmqx_bound_port(s);
    ck_assert_int_gt(*port, 0);
    return s;
}

static fm_t *fm_new_with(int heartbeat_ms, int liveness, bool curve)
{
    fm_t *fm = xcalloc(1, sizeof *fm);
    fm->ctx = zmq_ctx_new();
    if (curve) {
        ck_assert_int_eq(zmq_curve_keypair(fm->server_pub, fm->server_sec), 0);
        /* libzmq asks this socket about every CURVE client. */
        fm->zap = zmq_socket(fm->ctx, ZMQ_REP);
        ck_assert_int_eq(zmq_bind(fm->zap, "inproc://zeromq.zap.01"), 0);
    }
    fm->api = s_bind(fm, ZMQ_ROUTER, &fm->api_port);
    fm->pipe = s_bind(fm, ZMQ_PUSH, &fm->task_port);
    fm->reports = s_bind(fm, ZMQ_PULL, &fm->report_port);
    /* Tasks wait for the worker's PULL to connect (it does right after
       the hello reply) instead of failing with EAGAIN. */
    int tmo = 5000;
    zmq_setsockopt(fm->pipe, ZMQ_SNDTIMEO, &tmo, sizeof tmo);
    fm->heartbeat_ms = heartbeat_ms;
    fm->liveness = liveness;
    fm->pinging = true;
    fm->answer_hello = true;
    return fm;
}

static fm_t *fm_new(int heartbeat_ms, int liveness)
{
    return fm_new_with(heartbeat_ms, liveness, false);
}

/* Answers one ZAP request (RFC 27): admit or refuse the client's key. */
static void fm_on_zap(fm_t *fm)
{
    zmqx_frames_t f;
    if (zmqx_recv_frames(fm->zap, &f, 8, ZMQ_DONTWAIT) != 0)
        return;
    ck_assert_int_ge(f.count, 7);
    ck_assert_str_eq(f.frames[5], "CURVE");
    ck_assert_uint_eq(f.sizes[6], 32);
    zmq_z85_encode(fm->zap_last_key, (const uint8_t *) f.frames[6], 32);
    fm->zap_requests++;
    const char *status = fm->zap_allow ? "200" : "400";
    zmqx_send(fm->zap, "1.0", 3, ZMQ_SNDMORE);
    zmqx_send(fm->zap, f.frames[1], f.sizes[1], ZMQ_SNDMORE);
    zmqx_send(fm->zap, status, 3, ZMQ_SNDMORE);
    zmqx_send(fm->zap, "", 0, ZMQ_SNDMORE);
    zmqx_send(fm->zap, "worker", 6, ZMQ_SNDMORE);
    zmqx_send(fm->zap, "", 0, 0);
    zmqx_frames_free(&f);
}

static void fm_destroy(fm_t **p)
{
    fm_t *fm = *p;
    if (!fm)
        return;
    zmq_close(fm->api);
    zmq_close(fm->pipe);
    if (fm->reports)
        zmq_close(fm->reports);
    if (fm->zap)
        zmq_close(fm->zap);
    zmq_ctx_term(fm->ctx);
    proto_req_destroy(&fm->last_hello);
    proto_report_destroy(&fm->last_heartbeat);
    for (int i = 0; i < fm->nresults; i++)
        proto_result_destroy(&fm->results[i]);
    free(fm);
    *p = NULL;
}

static void fm_send_pipe_text(fm_t *fm, const char *text)
{
    ck_assert_int_eq(zmqx_send(fm->pipe, text, strlen(text), 0), 0);
}

static void fm_send_pipe(fm_t *fm, proto_pipe_type_t type, int64_t task, int attempt)
{
    proto_pipe_t *msg = proto_pipe_new(type);
    msg->task = task;
    msg->attempt = attempt;
    char *text = proto_pipe_encode(msg);
    proto_pipe_destroy(&msg);
    fm_send_pipe_text(fm, text);
    free(text);
}

/* One "tasks" message: task i has id first_id + i, attempt 1, job 1. */
static void fm_send_tasks(fm_t *fm, int64_t first_id, int n, const char *const *specs)
{
    int64_t ids[16], jobs[16];
    int attempts[16];
    for (int i = 0; i < n; i++) {
        ids[i] = first_id + i;
        jobs[i] = 1;
        attempts[i] = 1;
    }
    char *text = proto_pipe_encode_tasks_raw(n, ids, attempts, jobs, specs);
    ck_assert_ptr_nonnull(text);
    fm_send_pipe_text(fm, text);
    free(text);
}

static void fm_on_api(fm_t *fm)
{
    zmqx_frames_t f;
    if (zmqx_recv_frames(fm->api, &f, 2, ZMQ_DONTWAIT) != 0)
        return;
    ck_assert_int_eq(f.count, 2);
    proto_err_t err;
    proto_req_t *req = proto_req_decode(f.frames[1], f.sizes[1], &err);
    ck_assert_msg(req != NULL, "bad request from the worker: %s", err.message);
    proto_reply_t *rep = NULL;
    if (req->type == PROTO_REQ_HELLO) {
        if (fm->hellos < 16)
            fm->hello_at[fm->hellos] = clock_mono_ms();
        fm->hellos++;
        proto_req_destroy(&fm->last_hello);
        fm->last_hello = req;
        req = NULL;
        if (fm->refuse_hellos > 0) {
            fm->refuse_hellos--;
            rep = proto_reply_error(PROTO_E_STATE, "not now");
        } else if (fm->answer_hello) {
            rep = proto_reply_new(true);
            rep->worker_id = xstrdup("w-1");
            rep->task_port = fm->task_port;
            rep->report_port = fm->report_port;
            rep->heartbeat_ms = fm->heartbeat_ms;
            rep->liveness = fm->liveness;
            if (fm->nresend) {
                rep->resend = xcalloc((size_t) fm->nresend, sizeof *rep->resend);
                memcpy(rep->resend, fm->resend, (size_t) fm->nresend * sizeof *rep->resend);
                rep->nresend = fm->nresend;
            }
        }
        if (rep) {
            char *text = proto_reply_encode(rep, PROTO_REQ_HELLO);
            zmqx_send(fm->api, f.frames[0], f.sizes[0], ZMQ_SNDMORE);
            zmqx_send(fm->api, text, strlen(text), 0);
            free(text);
        }
    } else {
        ck_assert_int_eq(req->type, PROTO_REQ_DRAIN);
        ck_assert_str_eq(req->worker, "w-1");
        fm->drain_requests++;
        rep = proto_reply_new(true);
        char *text = proto_reply_encode(rep, PROTO_REQ_DRAIN);
        zmqx_send(fm->api, f.frames[0], f.sizes[0], ZMQ_SNDMORE);
        zmqx_send(fm->api, text, strlen(text), 0);
        free(text);
    }
    proto_reply_destroy(&rep);
    proto_req_destroy(&req);
    zmqx_frames_free(&f);
}

static void fm_on_report(fm_t *fm)
{
    size_t len;
    char *buf = zmqx_recv(fm->reports, &len, ZMQ_DONTWAIT);
    if (!buf)
        return;
    proto_err_t err;
    proto_report_t *rep = proto_report_decode(buf, len, &err);
    ck_assert_msg(rep != NULL, "bad report: %s in %.200s", err.message, buf);
    free(buf);
    fm->reports_total++;
    snprintf(fm->worker_seen, sizeof fm->worker_seen, "%s", rep->worker);
    switch (rep->type) {
    case PROTO_REP_HEARTBEAT:
        fm->heartbeats++;
        proto_report_destroy(&fm->last_heartbeat);
        fm->last_heartbeat = rep;
        rep = NULL;
        break;
    case PROTO_REP_STARTED:
        for (int i = 0; i < rep->nstarted && fm->started < 64; i++) {
            ck_assert_double_gt(rep->started_at[i], 1e9);
            fm->started_refs[fm->started++] = rep->started[i];
        }
        break;
    case PROTO_REP_OUTPUT: {
        ck_assert(rep->stream == 1 || rep->stream == 2);
        size_t n = strlen(rep->data);
        fm->output_bytes += n;
        char *out = fm->outputs[rep->stream];
        size_t have = strlen(out);
        if (have + n < sizeof fm->outputs[0])
            memcpy(out + have, rep->data, n + 1);
        break;
    }
    case PROTO_REP_RESULTS:
        fm->results_reports++;
        if (rep->nresults > fm->max_batch)
            fm->max_batch = rep->nresults;
        for (int i = 0; i < rep->nresults; i++)
            if (rep->results[i]->task >= 0 && rep->results[i]->task < 4096)
                fm->result_seen[rep->results[i]->task]++;
        for (int i = 0; i < rep->nresults && fm->nresults < 64; i++) {
            fm->results[fm->nresults++] = rep->results[i];
            rep->results[i] = NULL;
        }
        break;
    case PROTO_REP_RECALLED:
        fm->recalled_reports++;
        for (int i = 0; i < rep->nrecalled; i++) {
            fm->nrecalled++;
            if (rep->recalled[i].task >= 0 && rep->recalled[i].task < 4096)
                fm->recalled_seen[rep->recalled[i].task]++;
        }
        break;
    case PROTO_REP_BYE:
        fm->byes++;
        fm->bye_after_results = fm->nresults;
        break;
    case PROTO_REP_LOST:
        fm->lost_reports++;
        break;
    }
    proto_report_destroy(&rep);
}

/* Handles what arrives within ms (and pings when due). */
static void fm_pump(fm_t *fm, int64_t ms)
{
    int64_t now = clock_mono_ms();
    if (fm->pinging && now >= fm->next_ping) {
        proto_pipe_t *msg = proto_pipe_new(PROTO_PIPE_PING);
        char *text = proto_pipe_encode(msg);
        zmqx_send(fm->pipe, text, strlen(text), ZMQ_DONTWAIT); /* no peer yet: fine */
        free(text);
        proto_pipe_destroy(&msg);
        fm->next_ping = now + fm->heartbeat_ms / 2;
    }
    if (fm->pinging && ms > fm->next_ping - now)
        ms = fm->next_ping - now;
    if (ms < 0)
        ms = 0;
    zmq_pollitem_t items[3] = {{fm->api, 0, ZMQ_POLLIN, 0}, {fm->zap, 0, ZMQ_POLLIN, 0},
                               {fm->reports, 0, ZMQ_POLLIN, 0}};
    if (!fm->zap)
        items[1].events = 0;
    int n = fm->reports ? 3 : 2;
    if (zmq_poll(items, n, (long) ms) <= 0)
        return;
    if (items[0].revents & ZMQ_POLLIN)
        fm_on_api(fm);
    if (items[1].revents & ZMQ_POLLIN)
        fm_on_zap(fm);
    if (n == 3 && (items[2].revents & ZMQ_POLLIN))
        fm_on_report(fm);
}

#define FM_UNTIL(fm, ms, cond)                                                   \
    do {                                                                         \
        int64_t until_ = clock_mono_ms() + (ms);                                 \
        while (!(cond) && clock_mono_ms() < until_)                              \
            fm_pump((fm), until_ - clock_mono_ms());                             \
        ck_assert_msg((cond), "timed out after %d ms waiting for: %s", (int) (ms), #cond); \
    } while (0)

static const proto_result_t *fm_result(fm_t *fm, int64_t task)
{
    for (int i = 0; i < fm->nresults; i++)
        if (fm->results[i]->task == task)
            return fm->results[i];
    return NULL;
}

static bool fm_started(fm_t *fm, int64_t task)
{
    for (int i = 0; i < fm->started; i++)
        if (fm->started_refs[i].task == task)
            return true;
    return false;
}

/* ---- the worker under test ---- */

typedef struct {
    fn_registry_t *fns;
    session_t *session;
    pthread_t thread;
    int rc;
    bool joined;
} worker_t;

static void *s_worker_main(void *arg)
{
    worker_t *w = arg;
    w->rc = session_run(w->session);
    return NULL;
}

typedef struct {
    int threads;
    bool no_exec;
    int hello_timeout_ms;
    const char *server_key, *public_key, *secret_key;   /* CURVE */
} worker_opts_t;

static worker_t *worker_start(fm_t *fm, worker_opts_t o)
{
    worker_t *w = xcalloc(1, sizeof *w);
    w->fns = fn_registry_new();
    ck_assert_ptr_nonnull(w->fns);
    static const char *const labels[] = {"gpu", "big"};
    session_config_t cfg = {
        .master_host = "127.0.0.1",
        .master_port = fm->api_port,
        .name = "test-worker",
        .hostname = "testhost",
        .threads = o.threads ? o.threads : 2,
        .labels = labels,
        .nlabels = 2,
        .no_exec = o.no_exec,
        .fns = w->fns,
        .signals = &g_signals,
        .kill_grace_ms = 200,
        .hello_timeout_ms = o.hello_timeout_ms ? o.hello_timeout_ms : 1000,
        .stop_grace_ms = 3000,
        .curve_server_key = o.server_key,
        .curve_public_key = o.public_key,
        .curve_secret_key = o.secret_key,
    };
    w->session = session_new(&cfg);
    ck_assert_ptr_nonnull(w->session);
    ck_assert_int_eq(pthread_create(&w->thread, NULL, s_worker_main, w), 0);
    return w;
}

/* Waits for session_run to return (while serving the fake master). */
static int worker_join(fm_t *fm, worker_t *w)
{
    /* session_run returns once BYE is sent; pump until then so nothing
       blocks, then join (it only has its sockets left to close). */
    FM_UNTIL(fm, 10000, fm->byes > 0);
    ck_assert_int_eq(pthread_join(w->thread, NULL), 0);
    w->joined = true;
    return w->rc;
}

static void worker_free(worker_t **p)
{
    worker_t *w = *p;
    ck_assert(w->joined);
    session_destroy(&w->session);
    fn_registry_destroy(&w->fns);
    free(w);
    *p = NULL;
}

/* Registers a worker and returns once the hello was answered and the
   first heartbeat came back on the report socket (so the pipe is up). */
static worker_t *worker_registered(fm_t *fm, worker_opts_t o)
{
    worker_t *w = worker_start(fm, o);
    FM_UNTIL(fm, 5000, fm->hellos >= 1 && fm->heartbeats >= 1);
    return w;
}

static void s_setup(void)
{
    g_signals = 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

/* Undone after each case, for CK_FORK=no runs where cases share a process. */
static void s_teardown(void)
{
    clock_wall_offset_set(0);
}

/* ---- tests ---- */

START_TEST(registers_with_hello_then_runs_tasks_and_reports_results)
{
    fm_t *fm = fm_new(100, 10);
    worker_t *w = worker_start(fm, (worker_opts_t) {.threads = 2});
    FM_UNTIL(fm, 5000, fm->hellos == 1);
    proto_req_t *h = fm->last_hello;
    ck_assert_str_eq(h->name, "test-worker");
    ck_assert_str_eq(h->host, "testhost");
    ck_assert_int_eq(h->pid, getpid());
    ck_assert_int_eq(h->threads, 2);
    ck_assert_int_eq(h->nlabels, 2);
    ck_assert_str_eq(h->labels[0], "gpu");
    ck_assert_str_eq(h->labels[1], "big");
    ck_assert_int_eq(h->nrunning, 0);
    ck_assert(!h->no_exec);

    const char *specs[] = {
        "{\"fn\":\"echo\",\"args\":{\"a\":[1,2]}}",
        "{\"fn\":\"square\",\"args\":{\"n\":7}}",
        "{\"fn\":\"fail\",\"args\":{\"message\":\"nope\"}}",
    };
    fm_send_tasks(fm, 10, 3, specs);
    FM_UNTIL(fm, 5000, fm->nresults == 3);
    ck_assert_str_eq(fm->worker_seen, "w-1");
    const proto_result_t *r = fm_result(fm, 10);
    ck_assert_int_eq(r->status, PROTO_ST_DONE);
    ck_assert_int_eq(r->attempt, 1);
    ck_assert_str_eq(r->result_json, "{\"a\":[1,2]}");
    ck_assert_double_ge(r->finished, r->started);
    ck_assert_str_eq(fm_result(fm, 11)->result_json, "49");
    ck_assert_int_eq(fm_result(fm, 12)->status, PROTO_ST_FAILED);
    ck_assert_str_eq(fm_result(fm, 12)->error, "nope");
    /* A task that ends within one wakeup may be reported by its result
       alone (no separate "started"): its start time travels in it. */
    for (int64_t id = 10; id <= 12; id++)
        ck_assert_double_gt(fm_result(fm, id)->started, 0);

    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    ck_assert_int_eq(fm->drain_requests, 0); /* the master asked: no request back */
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

/* Results of sub-millisecond tasks share reports while others still run
   (worker/session.c, s_result_until): a report costs the master a wakeup,
   which next to a short command (an `exec true` on a host with a fast
   fork: ~0.5 ms) is most of what ztask adds to it. */
START_TEST(results_of_half_millisecond_tasks_share_reports)
{
    fm_t *fm = fm_new(100, 10);
    worker_t *w = worker_registered(fm, (worker_opts_t) {.threads = 2});
    const char *specs[16];
    for (int i = 0; i < 16; i++)
        specs[i] = "{\"fn\":\"sleep\",\"args\":0.0003}";
    int before = fm->results_reports;
    for (int b = 0; b < 3; b++)
        fm_send_tasks(fm, 100 + 16 * b, 16, specs);
    FM_UNTIL(fm, 10000, fm->nresults == 48);
    int reports = fm->results_reports - before;
    /* Without the hold the session sends each result as it comes, bar
       those that happen to meet (20-27 reports here); with it a result
       waits at least 1 ms for the next ones (11-14): 48 results of two
       threads of 0.3 ms tasks take 8 ms or more. */
    ck_assert_msg(reports <= 18, "48 results came in %d reports", reports);
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

START_TEST(command_output_is_streamed_live_and_captured_in_the_result)
{
    fm_t *fm = fm_new(100, 10);
    worker_t *w = worker_registered(fm, (worker_opts_t) {0});
    const char *specs[] = {"{\"shell\":\"printf hello; sleep 0.2; printf world; printf oops >&2\"}"};
    fm_send_tasks(fm, 1, 1, specs);
    FM_UNTIL(fm, 5000, fm->nresults == 1);
    const proto_result_t *r = fm_result(fm, 1);
    ck_assert_int_eq(r->status, PROTO_ST_DONE);
    ck_assert_int_eq(r->exit_code, 0);
    ck_assert_str_eq(r->stdout_data, "helloworld");
    ck_assert_str_eq(r->stderr_data, "oops");
    /* Live output comes before the result on the same socket. */
    ck_assert_str_eq(fm->outputs[1], "helloworld");
    ck_assert_str_eq(fm->outputs[2], "oops");
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

START_TEST(live_output_stops_at_the_output_cap)
{
    fm_t *fm = fm_new(100, 10);
    worker_t *w = worker_registered(fm, (worker_opts_t) {0});
    const char *specs[] = {"{\"shell\":\"head -c 300000 /dev/zero | tr '\\\\0' x\","
                           "\"output_cap\":1000}"};
    fm_send_tasks(fm, 1, 1, specs);
    FM_UNTIL(fm, 5000, fm->nresults == 1);
    const proto_result_t *r = fm_result(fm, 1);
    ck_assert_int_eq(r->status, PROTO_ST_DONE);
    ck_assert(r->stdout_truncated);
    ck_assert_uint_eq(strlen(r->stdout_data), 1000);
    ck_assert_uint_eq(fm->output_bytes, 1000);
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

START_TEST(no_exec_worker_refuses_commands_in_one_batched_report)
{
    fm_t *fm = fm_new(100, 10);
    worker_t *w = worker_start(fm, (worker_opts_t) {.no_exec = true});
    FM_UNTIL(fm, 5000, fm->hellos == 1 && fm->heartbeats >= 1);
    ck_assert(fm->last_hello->no_exec);
    const char *specs[] = {
        "{\"argv\":[\"/bin/true\"]}",
        "{\"shell\":\"true\"}",
        "{\"argv\":[\"/bin/echo\",\"x\"]}",
    };
    fm_send_tasks(fm, 1, 3, specs);
    FM_UNTIL(fm, 5000, fm->nresults == 3);
    /* All three answered at once: one RESULTS report carrying three. */
    ck_assert_int_eq(fm->results_reports, 1);
    ck_assert_int_eq(fm->max_batch, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(fm->results[i]->status, PROTO_ST_FAILED);
        ck_assert_str_eq(fm->results[i]->error, "this worker does not run commands (--no-exec)");
    }
    ck_assert_int_eq(fm->started, 0);
    /* Functions still run. */
    const char *fn[] = {"{\"fn\":\"noop\"}"};
    fm_send_tasks(fm, 4, 1, fn);
    FM_UNTIL(fm, 5000, fm->nresults == 4);
    ck_assert_int_eq(fm_result(fm, 4)->status, PROTO_ST_DONE);
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

/* A claim token is opaque to the worker (proto.h): one of another format
   than today's 32 hex digits, as a newer master may send, is kept and
   given back with the result, and its task runs; the worker refused the
   whole message for it, so every task in it waited forever. A token past
   the bound costs its own task only: answered as failed, saying why,
   while the others in the same message run. */
START_TEST(a_claim_token_of_another_format_is_kept_and_one_past_the_bound_refuses_its_task_only)
{
    fm_t *fm = fm_new(100, 10);
    worker_t *w = worker_registered(fm, (worker_opts_t) {.threads = 2});
    char newer[PROTO_CLAIM_MAX + 1], over[PROTO_CLAIM_MAX + 2];
    snprintf(newer, sizeof newer, "v2.%s", "ABCDEFabcdef-_~.0123456789+/=");
    memset(over, 'a', sizeof over - 1);
    over[sizeof over - 1] = '\0';
    char text[1024];
    snprintf(text, sizeof text,
             "{\"v\":1,\"type\":\"tasks\",\"tasks\":["
             "{\"id\":1,\"attempt\":1,\"job\":1,\"claim\":\"%s\",\"spec\":{\"fn\":\"noop\"}},"
             "{\"id\":2,\"attempt\":1,\"job\":1,\"claim\":\"%s\",\"spec\":{\"fn\":\"noop\"}},"
             "{\"id\":3,\"attempt\":1,\"job\":1,\"claim\":\"has space\",\"spec\":{\"fn\":\"noop\"}},"
             "{\"id\":4,\"attempt\":1,\"job\":1,\"spec\":{\"fn\":\"noop\"}}]}",
             newer, over);
    fm_send_pipe_text(fm, text);
    FM_UNTIL(fm, 5000, fm->nresults == 4);
    ck_assert_int_eq(fm_result(fm, 1)->status, PROTO_ST_DONE);
    ck_assert_str_eq(fm_result(fm, 1)->claim, newer);
    for (int64_t id = 2; id <= 3; id++) {
        const proto_result_t *r = fm_result(fm, id);
        ck_assert_int_eq(r->status, PROTO_ST_FAILED);
        ck_assert_msg(r->error && strstr(r->error, "claim token"), "task %lld: %s",
                      (long long) id, r->error ? r->error : "(no error)");
        ck_assert_str_eq(r->claim, "");
    }
    ck_assert_int_eq(fm_result(fm, 4)->status, PROTO_ST_DONE);
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

START_TEST(abort_cancels_a_running_task)
{
    fm_t *fm = fm_new(100, 10);
    worker_t *w = worker_registered(fm, (worker_opts_t) {0});
    const char *specs[] = {"{\"fn\":\"sleep\",\"args\":{\"seconds\":30}}",
                           "{\"shell\":\"sleep 30\"}"};
    fm_send_tasks(fm, 1, 2, specs);
    FM_UNTIL(fm, 5000, fm_started(fm, 1) && fm_started(fm, 2));
    int64_t t0 = clock_mono_ms();
    fm_send_pipe(fm, PROTO_PIPE_ABORT, 1, 1);
    fm_send_pipe(fm, PROTO_PIPE_ABORT, 2, 1);
    fm_send_pipe(fm, PROTO_PIPE_ABORT, 99, 1); /* unknown: ignored */
    FM_UNTIL(fm, 5000, fm->nresults == 2);
    ck_assert_int_lt(clock_mono_ms() - t0, 3000);
    ck_assert_int_eq(fm_result(fm, 1)->status, PROTO_ST_CANCELLED);
    ck_assert_int_eq(fm_result(fm, 2)->status, PROTO_ST_CANCELLED);
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

START_TEST(a_queued_task_is_reported_started_once_it_runs)
{
    /* One thread: the second command waits in the queue, and its start
       gives the session no message; it is still reported while it runs. */
    fm_t *fm = fm_new(100, 10);
    worker_t *w = worker_registered(fm, (worker_opts_t) {.threads = 1});
    const char *specs[] = {"{\"shell\":\"sleep 0.3\"}", "{\"shell\":\"sleep 1\"}"};
    fm_send_tasks(fm, 1, 2, specs);
    FM_UNTIL(fm, 5000, fm_started(fm, 1));
    FM_UNTIL(fm, 5000, fm_started(fm, 2));
    ck_assert_ptr_null(fm_result(fm, 2));   /* seen while it still runs */
    FM_UNTIL(fm, 5000, fm->nresults == 2);
    ck_assert_int_eq(fm_result(fm, 2)->status, PROTO_ST_DONE);
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

static bool s_heartbeat_is(fm_t *fm, int n, int64_t first)
{
    proto_report_t *hb = fm->last_heartbeat;
    if (!hb || hb->nrunning != n)
        return false;
    return n == 0 || hb->running[0].task == first;
}

START_TEST(abort_of_a_queued_task_answers_at_once_and_heartbeats_track_the_table)
{
    fm_t *fm = fm_new(50, 20);
    worker_t *w = worker_registered(fm, (worker_opts_t) {.threads = 1});
    const char *specs[] = {"{\"fn\":\"sleep\",\"args\":{\"seconds\":30}}",
                           "{\"fn\":\"sleep\",\"args\":{\"seconds\":30}}"};
    fm_send_tasks(fm, 1, 2, specs);
    FM_UNTIL(fm, 5000, fm_started(fm, 1));
    /* One thread: task 2 waits in the queue; heartbeats list both. */
    FM_UNTIL(fm, 5000, s_heartbeat_is(fm, 2, 1));
    fm_send_pipe(fm, PROTO_PIPE_ABORT, 2, 1);
    FM_UNTIL(fm, 5000, fm->nresults == 1);
    const proto_result_t *r = fm_result(fm, 2);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, PROTO_ST_CANCELLED);
    ck_assert(!fm_started(fm, 2));
    FM_UNTIL(fm, 5000, s_heartbeat_is(fm, 1, 1));
    fm_send_pipe(fm, PROTO_PIPE_ABORT, 1, 1);
    FM_UNTIL(fm, 5000, fm->nresults == 2);
    ck_assert_int_eq(fm_result(fm, 1)->status, PROTO_ST_CANCELLED);
    FM_UNTIL(fm, 5000, s_heartbeat_is(fm, 0, 0));
    /* The pool thread reached task 2 and handed it back without running it. */
    ck_assert(!fm_started(fm, 2));
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

/* A "recall" of attempt 1 of tasks ids[0..n). */
static void fm_send_recall(fm_t *fm, const int64_t *ids, int n)
{
    proto_pipe_t *msg = proto_pipe_new(PROTO_PIPE_RECALL);
    msg->refs = xcalloc((size_t) n + 1, sizeof *msg->refs);
    for (int i = 0; i < n; i++)
        msg->refs[msg->nrefs++] = (proto_task_ref_t){.task = ids[i], .attempt = 1};
    char *text = proto_pipe_encode(msg);
    proto_pipe_destroy(&msg);
    fm_send_pipe_text(fm, text);
    free(text);
}

/* A recall gives back exactly the attempts still queued: not the running
   one, not an unknown one, not a queued one of another attempt; those it
   gives back never start and send no result, and the hello says recall. */
START_TEST(a_recall_returns_exactly_the_queued_attempts_and_they_never_start)
{
    fm_t *fm = fm_new(50, 20);
    worker_t *w = worker_registered(fm, (worker_opts_t) {.threads = 1});
    ck_assert(fm->last_hello->recall);
    const char *specs[] = {"{\"fn\":\"sleep\",\"args\":{\"seconds\":30}}",
                           "{\"fn\":\"square\",\"args\":{\"n\":2}}",
                           "{\"fn\":\"square\",\"args\":{\"n\":3}}",
                           "{\"fn\":\"square\",\"args\":{\"n\":4}}"};
    fm_send_tasks(fm, 1, 4, specs);
    FM_UNTIL(fm, 5000, fm_started(fm, 1));
    /* Task 1 runs; 2, 3, 4 wait. 99 is unknown. */
    fm_send_recall(fm, (const int64_t[]){1, 2, 3, 99}, 4);
    FM_UNTIL(fm, 5000, fm->recalled_reports == 1);
    ck_assert_int_eq(fm->nrecalled, 2);
    ck_assert_int_eq(fm->recalled_seen[2], 1);
    ck_assert_int_eq(fm->recalled_seen[3], 1);
    ck_assert_int_eq(fm->recalled_seen[1], 0);
    /* Heartbeats no longer list them: 1 running, 4 queued. */
    FM_UNTIL(fm, 5000, s_heartbeat_is(fm, 2, 1));
    /* A recall of nothing it has is answered too, empty. */
    fm_send_recall(fm, (const int64_t[]){2, 3}, 2);
    FM_UNTIL(fm, 5000, fm->recalled_reports == 2);
    ck_assert_int_eq(fm->nrecalled, 2);
    fm_send_pipe(fm, PROTO_PIPE_ABORT, 1, 1);
    /* 4 was queued after 2 and 3: once it ends, the pool has passed them. */
    FM_UNTIL(fm, 5000, fm->result_seen[4] == 1 && fm->result_seen[1] == 1);
    FM_UNTIL(fm, 5000, s_heartbeat_is(fm, 0, 0));
    ck_assert_int_eq(fm->result_seen[2] + fm->result_seen[3], 0);
    ck_assert(!fm_started(fm, 2) && !fm_started(fm, 3));
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    ck_assert_int_eq(fm->result_seen[2] + fm->result_seen[3], 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

/* Tasks 1..total that came back one way or the other. */
static int s_ended_count(const fm_t *fm, int total)
{
    int n = 0;
    for (int id = 1; id <= total; id++)
        n += fm->result_seen[id] + fm->recalled_seen[id] > 0;
    return n;
}

/* The race a recall runs against the pool threads: each round sends 16
   commands (each touches a file named after its task) and, once the
   first has a result (the threads are then in the middle of the batch:
   some done, two running, the rest queued), recalls all 16, the last sent
   first. Every task ends exactly one way, given back or run (a result),
   and a task given back never ran: its file does not exist. */
START_TEST(recalls_racing_the_pool_threads_never_give_back_a_started_task)
{
    enum { BATCH = 16 };
    /* Under valgrind (tests/memcheck.sh: CK_FORK=no) every command is a
       real fork of a slowed process: 10 rounds, not 60, keep the suite
       within memcheck's time. */
    const char *fork_mode = getenv("CK_FORK");
    const bool slowed = fork_mode && strcmp(fork_mode, "no") == 0;
    const int ROUNDS = slowed ? 10 : 60;
    char dir[] = "/tmp/ztask-recall-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    fm_t *fm = fm_new(50, 20);
    worker_t *w = worker_registered(fm, (worker_opts_t) {.threads = 2});
    char *specs[BATCH];
    int64_t ids[BATCH];
    for (int b = 0; b < ROUNDS; b++) {
        int64_t first = 1 + (int64_t) b * BATCH;
        for (int i = 0; i < BATCH; i++)
            specs[i] = xasprintf("{\"argv\":[\"touch\",\"%s/%lld\"]}", dir,
                                 (long long) (first + i));
        fm_send_tasks(fm, first, BATCH, (const char *const *) specs);
        for (int i = 0; i < BATCH; i++)
            free(specs[i]);
        FM_UNTIL(fm, 30000, fm->result_seen[first] > 0);
        for (int i = 0; i < BATCH; i++)
            ids[i] = first + BATCH - 1 - i;
        fm_send_recall(fm, ids, BATCH);
    }
    int total = BATCH * ROUNDS;
    FM_UNTIL(fm, 30000, fm->recalled_reports == ROUNDS);
    FM_UNTIL(fm, 30000, s_ended_count(fm, total) == total);
    FM_UNTIL(fm, 5000, s_heartbeat_is(fm, 0, 0));
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    int back = 0;
    for (int id = 1; id <= total; id++) {
        ck_assert_msg(fm->result_seen[id] + fm->recalled_seen[id] == 1,
                      "task %d: %d results, given back %d times", id, fm->result_seen[id],
                      fm->recalled_seen[id]);
        char path[64];
        snprintf(path, sizeof path, "%s/%d", dir, id);
        bool ran = access(path, F_OK) == 0;
        ck_assert_msg(ran == (fm->result_seen[id] == 1), "task %d: %s, but it %s", id,
                      fm->recalled_seen[id] ? "given back" : "a result came",
                      ran ? "ran" : "never ran");
        unlink(path);
        back += fm->recalled_seen[id];
    }
    rmdir(dir);
    fprintf(stderr, "recall race: %d of %d tasks given back, %d run\n", back, total, total - back);
    ck_assert_int_eq(back, fm->nrecalled);
    /* Some of each, or the race was not run. Under valgrind a round's
       commands can all end before its first result reaches us (they share
       a report), so 10 rounds may give nothing back (make memcheck, at
       load 3-5): there the case checks memory and the invariants above. */
    if (!slowed)
        ck_assert_int_gt(back, 0);
    ck_assert_int_lt(back, total - ROUNDS);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

/* The session sleeps on the pipe's ZMQ_FD, which libzmq signals when the
   pipe turns from empty to not (an edge, not a level): what is left of a
   burst after one wakeup's batch must be read without waiting for a new
   message. No pings here, so no other message would come. */
START_TEST(a_burst_of_pipe_messages_longer_than_a_batch_is_all_read_with_nothing_after_it)
{
    fm_t *fm = fm_new(1000, 30);
    worker_t *w = worker_registered(fm, (worker_opts_t) {0});
    fm->pinging = false;
    /* Aborts of tasks it does not have: each a pipe message, cheap. */
    for (int i = 0; i < 2000; i++)
        fm_send_pipe(fm, PROTO_PIPE_ABORT, 1000000 + i, 1);
    const char *specs[] = {"{\"fn\":\"square\",\"args\":{\"n\":3}}"};
    fm_send_tasks(fm, 1, 1, specs);
    FM_UNTIL(fm, 5000, fm->nresults == 1);
    ck_assert_str_eq(fm_result(fm, 1)->result_json, "9");
    fm->pinging = true;
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

START_TEST(silent_master_is_dropped_and_hello_repeats_with_the_running_tasks)
{
    fm_t *fm = fm_new(50, 3);
    worker_t *w = worker_registered(fm, (worker_opts_t) {0});
    const char *specs[] = {"{\"fn\":\"sleep\",\"args\":{\"seconds\":30}}"};
    fm_send_tasks(fm, 7, 1, specs);
    FM_UNTIL(fm, 5000, fm_started(fm, 7));
    fm->pinging = false;
    int64_t t0 = clock_mono_ms();
    FM_UNTIL(fm, 5000, fm->hellos == 2);
    /* liveness * heartbeat = 150 ms of silence (from the last ping). */
    ck_assert_int_ge(clock_mono_ms() - t0, 100);
    proto_req_t *h = fm->last_hello;
    ck_assert_int_eq(h->nrunning, 1);
    ck_assert_int_eq(h->running[0].task, 7);
    ck_assert_int_eq(h->running[0].attempt, 1);
    fm->pinging = true;
    /* Registered again: heartbeats flow, the task still runs, and it can
       be aborted through the new pipe. */
    int hb = fm->heartbeats;
    FM_UNTIL(fm, 5000, fm->heartbeats > hb + 2);
    ck_assert_int_eq(fm->hellos, 2);
    ck_assert_int_eq(fm->nresults, 0);
    fm_send_pipe(fm, PROTO_PIPE_ABORT, 7, 1);
    FM_UNTIL(fm, 5000, fm->nresults == 1);
    ck_assert_int_eq(fm_result(fm, 7)->status, PROTO_ST_CANCELLED);
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

/* A master that died before committing results: the worker lists what
   it ended in its next hello, and sends again the results the reply's
   "resend" names (kept since), and no other. */
START_TEST(results_the_hello_reply_asks_for_are_sent_again)
{
    fm_t *fm = fm_new(50, 3);
    worker_t *w = worker_registered(fm, (worker_opts_t) {0});
    ck_assert(fm->last_hello->resend);   /* it keeps them: it says so */
    const char *specs[] = {"{\"fn\":\"square\",\"args\":{\"n\":7}}",
                           "{\"fn\":\"square\",\"args\":{\"n\":8}}"};
    fm_send_tasks(fm, 7, 2, specs);
    FM_UNTIL(fm, 5000, fm->nresults == 2);
    /* The master falls silent (as a dead one does) and, restarted, lacks
       task 7's result. */
    fm->resend[0] = (proto_task_ref_t){.task = 7, .attempt = 1};
    fm->nresend = 1;
    fm->pinging = false;
    FM_UNTIL(fm, 5000, fm->hellos == 2);
    fm->pinging = true;
    proto_req_t *h = fm->last_hello;
    ck_assert_int_eq(h->nended, 2);
    ck_assert(h->resend);
    FM_UNTIL(fm, 5000, fm->result_seen[7] == 2);
    ck_assert_str_eq(fm_result(fm, 7)->result_json, "49");
    /* Task 8's was not asked for: not sent again, even after a while. */
    int hb = fm->heartbeats;
    FM_UNTIL(fm, 5000, fm->heartbeats > hb + 2);
    ck_assert_int_eq(fm->result_seen[8], 1);
    ck_assert_int_eq(fm->result_seen[7], 2);
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

/* A master that asks for the same result at every hello and never
   keeps one (a buggy one, or masters killed in a row): each kept result
   goes again RESEND_TIMES (2) times, not at each hello, so the report
   backlog does not grow with the hellos. */
START_TEST(a_kept_result_is_sent_again_twice_at_most_however_often_it_is_asked)
{
    fm_t *fm = fm_new(50, 3);
    worker_t *w = worker_registered(fm, (worker_opts_t) {0});
    const char *specs[] = {"{\"fn\":\"square\",\"args\":{\"n\":7}}"};
    fm_send_tasks(fm, 7, 1, specs);
    FM_UNTIL(fm, 5000, fm->nresults == 1);
    fm->resend[0] = (proto_task_ref_t){.task = 7, .attempt = 1};
    fm->nresend = 1;
    fm->pinging = false;
    FM_UNTIL(fm, 10000, fm->hellos == 5);   /* asked 4 times */
    fm->pinging = true;
    int hb = fm->heartbeats;
    FM_UNTIL(fm, 5000, fm->heartbeats > hb + 2);
    ck_assert_int_eq(fm->result_seen[7], 1 + 2);
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

/* The session's watch on the master runs on the monotonic clock: with the
   wall clock a day forward a quiet master is not dropped before its time,
   a day back a silent one is still dropped on time. */
START_TEST(wall_clock_jumps_neither_drop_a_quiet_master_early_nor_keep_a_silent_one)
{
    fm_t *fm = fm_new(100, 20);   /* 2 s of silence and the master is lost */
    worker_t *w = worker_registered(fm, (worker_opts_t) {0});
    /* The master falls silent. Once a heartbeat has come back the worker
       has read the last ping (its pipe is read as soon as it polls). */
    int64_t quiet_since = clock_mono_ms();
    fm->pinging = false;
    int hb = fm->heartbeats;
    FM_UNTIL(fm, 5000, fm->heartbeats >= hb + 1);
    clock_wall_offset_set(86400.0);
    /* The session checks the master before each heartbeat it sends: the
       second one on from here comes from a check made after the jump. */
    hb = fm->heartbeats;
    FM_UNTIL(fm, 5000, fm->heartbeats >= hb + 3);
    ck_assert_msg(fm->hellos == 1, "the wall clock a day ahead dropped a quiet master");
    /* Else the quiet spell outlasted the liveness and proved nothing. */
    ck_assert_int_lt(clock_mono_ms() - quiet_since, 1900);

    clock_wall_offset_set(-86400.0);
    FM_UNTIL(fm, 5000, fm->hellos == 2);
    ck_assert_int_ge(clock_mono_ms() - quiet_since, 1900);
    fm->pinging = true;
    hb = fm->heartbeats;
    FM_UNTIL(fm, 5000, fm->heartbeats > hb + 2);
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

START_TEST(results_queue_while_the_master_is_away_and_arrive_when_it_returns)
{
    char dir[] = "/tmp/ztask-test-session-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char go[128], done[128], spec[512];
    snprintf(go, sizeof go, "%s/go", dir);
    snprintf(done, sizeof done, "%s/done", dir);
    /* The task waits for "go", prints, then leaves "done" behind. */
    snprintf(spec, sizeof spec,
             "{\"shell\":\"while [ ! -e %s ]; do sleep 0.01; done; echo late; touch %s\"}", go,
             done);
    fm_t *fm = fm_new(100, 50);
    worker_t *w = worker_registered(fm, (worker_opts_t) {0});
    const char *specs[] = {spec};
    fm_send_tasks(fm, 3, 1, specs);
    FM_UNTIL(fm, 5000, fm_started(fm, 3));
    /* The master's report socket goes away while the task runs... */
    zmq_close(fm->reports);
    fm->reports = NULL;
    FILE *f = fopen(go, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    /* ...the task ends meanwhile (its result has nowhere to go yet)... */
    FM_UNTIL(fm, 5000, access(done, F_OK) == 0);
    /* ...and the master comes back on the same port. */
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", fm->report_port);
    fm->reports = zmqx_socket(fm->ctx, ZMQ_PULL, 0, 64 * 1024 * 1024);
    ck_assert_int_eq(zmq_bind(fm->reports, ep), 0);
    FM_UNTIL(fm, 5000, fm->nresults == 1);
    ck_assert_int_eq(fm_result(fm, 3)->status, PROTO_ST_DONE);
    ck_assert_str_eq(fm_result(fm, 3)->stdout_data, "late\n");
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
    unlink(go);
    unlink(done);
    rmdir(dir);
}
END_TEST

START_TEST(hello_is_retried_with_backoff_until_the_master_answers)
{
    fm_t *fm = fm_new(100, 10);
    fm->answer_hello = false;
    fm->refuse_hellos = 0;
    worker_t *w = worker_start(fm, (worker_opts_t) {.hello_timeout_ms = 200});
    FM_UNTIL(fm, 5000, fm->hellos == 3);
    /* Between tries: the 200 ms reply timeout, then a backoff of 200 ms,
       then 400 ms (each +-25% jitter). The first gap is measured on arrival
       and may be shortened by the first connection's setup, so the
       doubling is checked on the second one. */
    ck_assert_int_ge(fm->hello_at[1] - fm->hello_at[0], 200);
    ck_assert_int_ge(fm->hello_at[2] - fm->hello_at[1], 200 + 300 - 30);
    /* A refusal is retried too (after 800 ms), then an answer (after 1600
       ms) registers the worker. */
    fm->refuse_hellos = 1;
    fm->answer_hello = true;
    FM_UNTIL(fm, 8000, fm->hellos >= 5 && fm->heartbeats >= 1);
    const char *specs[] = {"{\"fn\":\"noop\"}"};
    fm_send_tasks(fm, 1, 1, specs);
    FM_UNTIL(fm, 5000, fm->nresults == 1);
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

START_TEST(first_signal_drains_running_tasks_then_says_bye)
{
    fm_t *fm = fm_new(100, 10);
    worker_t *w = worker_registered(fm, (worker_opts_t) {0});
    /* Long enough for the drain request and one more task to get through. */
    const char *specs[] = {"{\"fn\":\"sleep\",\"args\":{\"seconds\":1}}"};
    fm_send_tasks(fm, 1, 1, specs);
    FM_UNTIL(fm, 5000, fm_started(fm, 1));
    kill(getpid(), SIGTERM);
    /* The worker asks the master to stop sending it work... */
    FM_UNTIL(fm, 5000, fm->drain_requests == 1);
    /* ...still runs what it was given (and what arrives meanwhile)... */
    const char *more[] = {"{\"fn\":\"echo\",\"args\":5}"};
    fm_send_tasks(fm, 2, 1, more);
    ck_assert_int_eq(worker_join(fm, w), 0);
    /* ...and says bye only after the results. */
    ck_assert_int_eq(fm->bye_after_results, 2);
    ck_assert_int_eq(fm_result(fm, 1)->status, PROTO_ST_DONE);
    ck_assert_str_eq(fm_result(fm, 2)->result_json, "5");
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

START_TEST(second_signal_cancels_running_and_queued_tasks)
{
    fm_t *fm = fm_new(100, 10);
    worker_t *w = worker_registered(fm, (worker_opts_t) {.threads = 1});
    const char *specs[] = {"{\"shell\":\"trap '' TERM; sleep 30\"}",
                           "{\"fn\":\"sleep\",\"args\":{\"seconds\":30}}"};
    fm_send_tasks(fm, 1, 2, specs);
    FM_UNTIL(fm, 5000, fm_started(fm, 1));
    kill(getpid(), SIGTERM);
    FM_UNTIL(fm, 5000, fm->drain_requests == 1);
    int64_t t0 = clock_mono_ms();
    kill(getpid(), SIGINT);
    ck_assert_int_eq(worker_join(fm, w), 0);
    /* The TERM-ignoring command is killed after kill_grace_ms (200). */
    ck_assert_int_lt(clock_mono_ms() - t0, 3000);
    ck_assert_int_eq(fm->bye_after_results, 2);
    ck_assert_int_eq(fm_result(fm, 1)->status, PROTO_ST_CANCELLED);
    ck_assert_int_eq(fm_result(fm, 2)->status, PROTO_ST_CANCELLED);
    ck_assert(!fm_started(fm, 2));
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

START_TEST(signal_before_any_master_exits_without_bye)
{
    fm_t *fm = fm_new(100, 10);
    fm->answer_hello = false;
    worker_t *w = worker_start(fm, (worker_opts_t) {.hello_timeout_ms = 5000});
    FM_UNTIL(fm, 5000, fm->hellos == 1);
    kill(getpid(), SIGTERM);
    ck_assert_int_eq(pthread_join(w->thread, NULL), 0);
    w->joined = true;
    ck_assert_int_eq(w->rc, 0);
    ck_assert_int_eq(fm->byes, 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

START_TEST(curve_worker_registers_once_the_master_admits_its_key)
{
    fm_t *fm = fm_new_with(100, 10, true);
    char pub[41], sec[41];
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
    fm->zap_allow = false;
    worker_t *w = worker_start(fm, (worker_opts_t) {.hello_timeout_ms = 300,
                                                    .server_key = fm->server_pub,
                                                    .public_key = pub,
                                                    .secret_key = sec});
    /* Refused at the handshake: no hello gets through, and the worker keeps
       trying (a new connection per attempt). */
    FM_UNTIL(fm, 5000, fm->zap_requests >= 2);
    ck_assert_int_eq(fm->hellos, 0);
    ck_assert_str_eq(fm->zap_last_key, pub);
    /* Admitted: every socket (api, pipe, reports) is CURVE and works. */
    fm->zap_allow = true;
    FM_UNTIL(fm, 8000, fm->hellos == 1 && fm->heartbeats >= 1);
    const char *specs[] = {"{\"shell\":\"echo secret\"}"};
    fm_send_tasks(fm, 1, 1, specs);
    FM_UNTIL(fm, 5000, fm->nresults == 1);
    ck_assert_str_eq(fm_result(fm, 1)->stdout_data, "secret\n");
    fm_send_pipe(fm, PROTO_PIPE_DRAIN, 0, 0);
    ck_assert_int_eq(worker_join(fm, w), 0);
    worker_free(&w);
    fm_destroy(&fm);
}
END_TEST

START_TEST(runner_messages_round_trip_and_reject_garbage)
{
    runner_msg_t hdr = {.tag = RUNNER_MSG_RESULT, .attempt = 2, .id = 42, .task = NULL};
    char frame[sizeof hdr + 3];
    memcpy(frame, &hdr, sizeof hdr);
    memcpy(frame + sizeof hdr, "abc", 3);
    runner_msg_t out;
    const char *payload;
    size_t len;
    ck_assert_int_eq(runner_msg_parse(frame, sizeof frame, &out, &payload, &len), 0);
    ck_assert_int_eq(out.tag, RUNNER_MSG_RESULT);
    ck_assert_int_eq(out.id, 42);
    ck_assert_int_eq(out.attempt, 2);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(memcmp(payload, "abc", 3), 0);
    ck_assert_int_eq(runner_msg_parse(frame, sizeof hdr - 1, &out, &payload, &len), -1);
    hdr.tag = 'Z';
    memcpy(frame, &hdr, sizeof hdr);
    ck_assert_int_eq(runner_msg_parse(frame, sizeof frame, &out, &payload, &len), -1);

    char *json = runner_result_now(5, 3, NULL, PROTO_ST_CANCELLED, "why");
    proto_err_t err;
    proto_result_t *res = proto_result_decode(json, strlen(json), &err);
    ck_assert_ptr_nonnull(res);
    ck_assert_int_eq(res->task, 5);
    ck_assert_int_eq(res->attempt, 3);
    ck_assert_int_eq(res->status, PROTO_ST_CANCELLED);
    ck_assert_str_eq(res->error, "why");
    proto_result_destroy(&res);
    free(json);
}
END_TEST

START_TEST(bad_configs_are_refused)
{
    fn_registry_t *fns = fn_registry_new();
    char pub[41], sec[41];
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
    /* One row per config: what it changes from a good one, and whether
       session_new takes it. */
    const struct {
        const char *what;
        int threads, port;
        const char *name;
        fn_registry_t *fns;
        const char *server_key, *public_key, *secret_key;
        bool ok;
    } cases[] = {
        { "a plain config", 1, 5555, "x", fns, NULL, NULL, NULL, true },
        { "no threads", 0, 5555, "x", fns, NULL, NULL, NULL, false },
        { "port 0", 1, 0, "x", fns, NULL, NULL, NULL, false },
        { "an empty name", 1, 5555, "", fns, NULL, NULL, NULL, false },
        { "no function registry", 1, 5555, "x", NULL, NULL, NULL, NULL, false },
        { "one CURVE key of three", 1, 5555, "x", fns, pub, NULL, NULL, false },
        { "a secret key that is not Z85", 1, 5555, "x", fns, pub, pub, "not z85", false },
        { "all three CURVE keys", 1, 5555, "x", fns, pub, pub, sec, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        session_config_t cfg = { .master_host = "127.0.0.1",
                                 .master_port = cases[i].port,
                                 .name = cases[i].name,
                                 .threads = cases[i].threads,
                                 .fns = cases[i].fns,
                                 .curve_server_key = cases[i].server_key,
                                 .curve_public_key = cases[i].public_key,
                                 .curve_secret_key = cases[i].secret_key };
        session_t *s = session_new(&cfg);
        ck_assert_msg((s != NULL) == cases[i].ok, "%s: session_new %s", cases[i].what,
                      s ? "took it" : "refused it");
        session_destroy(&s);
        ck_assert_ptr_null(s);
    }
    session_t *none = NULL;
    session_destroy(&none); /* NULL is fine */
    fn_registry_destroy(&fns);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "session",
                                 .tcase = "session",
                                 .timeout_s = 60,
                                 .setup = s_setup,
                                 .teardown = s_teardown });
}
