/* master: credits, leases, stale results, worker death and wall-clock
   jumps, observed from a fake worker and a fake client speaking the real
   protocol to a real master running on its own thread (in-memory
   database, loopback). */
#include "../../common/clock.h"
#include "../../common/util.h"
#include "../../common/zmqx.h"
#include "../../master/master.h"
#include "../../proto/proto.h"

#include "../ztest.h"
#include "capture.h"
#include "sqlfault.h"
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

typedef struct {
    master_t *master;
    pthread_t thread;
    volatile sig_atomic_t stop;
    void *ctx;
    void *client;          /* DEALER to the API */
    char api[64], reports[64];
} env_t;

static void *s_run(void *arg)
{
    env_t *e = arg;
    master_run(e->master, &e->stop, NULL);
    return NULL;
}

/* The tests' master: in-memory database, any free ports, fast heartbeats
   (a worker is dead after 300 ms of silence), short retry backoff.
   prefetch: the master's --prefetch (-1 = auto); most tests want 0, so
   that credits are exactly the free threads. */
static master_config_t s_config(int lease_ms, int keep_jobs, int prefetch)
{
    master_config_t cfg;
    master_config_defaults(&cfg);
    cfg.db_path = ":memory:";
    cfg.port = 0;
    cfg.heartbeat_ms = 100;
    cfg.liveness = 3;
    cfg.lease_ms = lease_ms;
    cfg.retry_backoff_ms = 10;
    cfg.keep_jobs = keep_jobs;
    cfg.prefetch = prefetch;
    return cfg;
}

static void s_env_start_config(env_t *e, const master_config_t *cfg)
{
    memset(e, 0, sizeof *e);
    char err[256];
    e->master = master_new(cfg, err, sizeof err);
    ck_assert_msg(e->master != NULL, "%s", err);
    snprintf(e->api, sizeof e->api, "tcp://127.0.0.1:%d", master_api_port(e->master));
    ck_assert_int_eq(pthread_create(&e->thread, NULL, s_run, e), 0);
    e->ctx = zmq_ctx_new();
    e->client = zmqx_socket(e->ctx, ZMQ_DEALER, 0, -1);
    ck_assert_int_eq(zmq_connect(e->client, e->api), 0);
}

static void s_env_start_with(env_t *e, int lease_ms, int keep_jobs, int prefetch)
{
    master_config_t cfg = s_config(lease_ms, keep_jobs, prefetch);
    s_env_start_config(e, &cfg);
}

static void s_env_start(env_t *e, int lease_ms)
{
    s_env_start_with(e, lease_ms, 0, 0);
}

static void s_env_stop(env_t *e)
{
    __atomic_store_n(&e->stop, 1, __ATOMIC_RELAXED);
    pthread_join(e->thread, NULL);
    master_destroy(&e->master);
    zmq_close(e->client);
    zmq_ctx_term(e->ctx);
}

/* One request, one reply (20 s bound: a query is answered after the
   commit of what came before it, and under TSan on a loaded host the
   commit of 27 MB of outputs took over 5 s). */
static proto_reply_t *s_call(env_t *e, void *sock, proto_req_t *req)
{
    char *text = proto_req_encode(req);
    ck_assert_int_eq(zmqx_send(sock, text, strlen(text), 0), 0);
    free(text);
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    ck_assert_int_eq(zmq_poll(&it, 1, 20000), 1);
    size_t len;
    char *buf = zmqx_recv(sock, &len, 0);
    ck_assert_ptr_nonnull(buf);
    proto_err_t err;
    proto_reply_t *rep = proto_reply_decode(buf, len, req->type, &err);
    ck_assert_msg(rep != NULL, "bad reply: %s", err.message);
    free(buf);
    (void) e;
    return rep;
}

/* A submit of n noops to job (0 = a new one). */
static proto_req_t *s_noops(int64_t job, int n, bool more)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_SUBMIT);
    req->job = job;
    req->more = more;
    req->tasks = xcalloc((size_t) n + 1, sizeof(proto_spec_t *));
    for (int i = 0; i < n; i++) {
        proto_err_t err;
        req->tasks[i] = proto_spec_decode("{\"fn\":\"noop\"}", 13, &err);
        ck_assert_ptr_nonnull(req->tasks[i]);
    }
    req->ntasks = n;
    return req;
}

static int64_t s_submit_noops(env_t *e, int n)
{
    proto_req_t *req = s_noops(0, n, false);
    proto_reply_t *rep = s_call(e, e->client, req);
    ck_assert(rep->ok);
    ck_assert_int_eq(rep->accepted, n);
    int64_t job = rep->job;
    proto_reply_destroy(&rep);
    proto_req_destroy(&req);
    return job;
}

/* A fake worker: registers, then receives on its pipe and reports. */
typedef struct {
    env_t *e;
    void *api, *pipe, *push;
    char *id;
    int threads;
    bool recall;           /* its hello says it answers recalls */
    const char *label;     /* its one label, or NULL */
} fake_t;

/* Registers (again) as the same process: name, host, pid 1000 + threads,
   saying it runs the nrunning attempts running (NULL: none); connects a
   new pipe and report socket to what the reply names. */
static void s_fake_hello_running(fake_t *f, const char *name, const proto_task_ref_t *running,
                                 int nrunning)
{
    env_t *e = f->e;
    if (f->pipe) {
        zmq_close(f->pipe);
        zmq_close(f->push);
        free(f->id);
    }
    proto_req_t *req = proto_req_new(PROTO_REQ_HELLO);
    req->name = xstrdup(name);
    req->host = xstrdup("testhost");
    req->pid = 1000 + f->threads;
    req->threads = f->threads;
    req->recall = f->recall;
    if (nrunning > 0) {
        req->running = xcalloc((size_t) nrunning, sizeof *req->running);
        for (int i = 0; i < nrunning; i++)
            req->running[i] = (proto_task_ref_t){.task = running[i].task,
                                                 .attempt = running[i].attempt};
        req->nrunning = nrunning;
    }
    if (f->label) {
        req->labels = xcalloc(2, sizeof *req->labels);
        req->labels[0] = xstrdup(f->label);
        req->nlabels = 1;
    }
    proto_reply_t *rep = s_call(e, f->api, req);
    ck_assert(rep->ok);
    f->id = xstrdup(rep->worker_id);
    char ep[64];
    f->pipe = zmqx_socket(e->ctx, ZMQ_PULL, 0, -1);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", rep->task_port);
    ck_assert_int_eq(zmq_connect(f->pipe, ep), 0);
    f->push = zmqx_socket(e->ctx, ZMQ_PUSH, 0, -1);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", rep->report_port);
    ck_assert_int_eq(zmq_connect(f->push, ep), 0);
    proto_reply_destroy(&rep);
    proto_req_destroy(&req);
}

static void s_fake_hello(fake_t *f, const char *name)
{
    s_fake_hello_running(f, name, NULL, 0);
}

/* A fake worker whose hello says recall (or not) and has label. */
static void s_fake_start_as(fake_t *f, env_t *e, const char *name, int threads, bool recall,
                            const char *label)
{
    memset(f, 0, sizeof *f);
    f->e = e;
    f->threads = threads;
    f->recall = recall;
    f->label = label;
    f->api = zmqx_socket(e->ctx, ZMQ_DEALER, 0, -1);
    ck_assert_int_eq(zmq_connect(f->api, e->api), 0);
    s_fake_hello(f, name);
}

static void s_fake_start(fake_t *f, env_t *e, const char *name, int threads)
{
    memset(f, 0, sizeof *f);
    f->e = e;
    f->threads = threads;
    f->api = zmqx_socket(e->ctx, ZMQ_DEALER, 0, -1);
    ck_assert_int_eq(zmq_connect(f->api, e->api), 0);
    s_fake_hello(f, name);
}

static void s_fake_stop(fake_t *f)
{
    zmq_close(f->api);
    zmq_close(f->pipe);
    zmq_close(f->push);
    free(f->id);
}

static void s_report(fake_t *f, proto_report_t *rep)
{
    char *text = proto_report_encode(rep);
    ck_assert_int_eq(zmqx_send(f->push, text, strlen(text), 0), 0);
    free(text);
    proto_report_destroy(&rep);
}

static void s_heartbeat(fake_t *f)
{
    s_report(f, proto_report_new(PROTO_REP_HEARTBEAT, f->id));
}

static void s_started(fake_t *f, int64_t task, int attempt)
{
    proto_report_t *rep = proto_report_new(PROTO_REP_STARTED, f->id);
    rep->started = xcalloc(1, sizeof(proto_task_ref_t));
    rep->started_at = xcalloc(1, sizeof(double));
    rep->started[0] = (proto_task_ref_t){.task = task, .attempt = attempt};
    rep->nstarted = 1;
    s_report(f, rep);
}

/* A done result that ran for ms (< 0: no times reported). */
static void s_result_ran(fake_t *f, int64_t task, int attempt, double ms)
{
    proto_report_t *rep = proto_report_new(PROTO_REP_RESULTS, f->id);
    rep->results = xcalloc(1, sizeof(proto_result_t *));
    rep->results[0] = proto_result_new();
    rep->results[0]->task = task;
    rep->results[0]->attempt = attempt;
    rep->results[0]->status = PROTO_ST_DONE;
    if (ms >= 0) {
        rep->results[0]->started = 1.8e9;
        rep->results[0]->finished = 1.8e9 + ms / 1000.0;
    }
    rep->nresults = 1;
    s_report(f, rep);
}

static void s_result(fake_t *f, int64_t task, int attempt)
{
    s_result_ran(f, task, attempt, -1);
}

/* Waits up to ms for the next pipe message other than a ping, sending
   heartbeats meanwhile (when beat). NULL on timeout. */
static proto_pipe_t *s_next(fake_t *f, int ms, bool beat)
{
    for (int waited = 0; waited < ms; waited += 50) {
        if (beat)
            s_heartbeat(f);
        zmq_pollitem_t it = {f->pipe, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) == 1) {
            size_t len;
            char *buf = zmqx_recv(f->pipe, &len, 0);
            proto_err_t err;
            proto_pipe_t *msg = proto_pipe_decode(buf, len, &err);
            free(buf);
            ck_assert_msg(msg != NULL, "bad pipe message: %s", err.message);
            if (msg->type != PROTO_PIPE_PING)
                return msg;
            proto_pipe_destroy(&msg);
            waited -= 50; /* a ping is not time spent waiting */
            if (waited < -5000)
                break;
        }
    }
    return NULL;
}

/* Collects tasks until `want` have arrived (bounded); returns how many. */
static int s_take_tasks(fake_t *f, int want, proto_task_t *out, int ms)
{
    int got = 0;
    while (got < want) {
        proto_pipe_t *msg = s_next(f, zt_ms(ms), true);
        if (!msg)
            break;
        if (msg->type == PROTO_PIPE_TASKS)
            for (int i = 0; i < msg->ntasks; i++) {
                out[got].id = msg->tasks[i].id;
                out[got].attempt = msg->tasks[i].attempt;
                got++;
            }
        proto_pipe_destroy(&msg);
    }
    return got;
}

START_TEST(a_worker_gets_no_more_tasks_than_free_threads)
{
    env_t e;
    s_env_start(&e, 10000);
    fake_t f;
    s_fake_start(&f, &e, "w", 2);
    s_submit_noops(&e, 10);
    proto_task_t got[16];
    ck_assert_int_eq(s_take_tasks(&f, 2, got, 3000), 2);
    /* Its credit is spent: nothing more arrives in a generous window. */
    proto_pipe_t *extra = s_next(&f, 400, true);
    ck_assert_msg(extra == NULL, "a third task arrived with both threads busy");
    /* One result frees one thread: exactly one more task comes. */
    s_started(&f, got[0].id, got[0].attempt);
    s_result(&f, got[0].id, got[0].attempt);
    ck_assert_int_eq(s_take_tasks(&f, 1, got + 2, 3000), 1);
    ck_assert_int_ne(got[2].id, got[0].id);
    ck_assert_int_ne(got[2].id, got[1].id);
    extra = s_next(&f, 300, true);
    ck_assert_ptr_null(extra);
    s_fake_stop(&f);
    s_env_stop(&e);
}
END_TEST

START_TEST(one_slow_result_among_short_ones_keeps_a_workers_prefetch)
{
    env_t e;
    s_env_start_with(&e, 60000, 0, -1);
    fake_t f;
    s_fake_start(&f, &e, "w", 1);
    s_submit_noops(&e, 300);
    proto_task_t got[160];
    /* One short result earns the worker its prefetch: for tiny tasks,
       1 thread + 64. */
    ck_assert_int_eq(s_take_tasks(&f, 1, got, 3000), 1);
    s_result_ran(&f, got[0].id, got[0].attempt, 0.01);
    ck_assert_int_eq(s_take_tasks(&f, 65, got + 1, 3000), 65);
    /* A task that took 10 s (a noop preempted on a crowded machine, or a
       stray long one), then 32 short ones: the worker holds 32 and is
       refilled once half its prefetch (32) is free. Taken at face value,
       that one sample would have cut its prefetch to 2 for the next 30
       results: nothing more would come. (At least 32: the master may read
       the results over several turns, so the 33rd may not be in the
       refill.) */
    s_result_ran(&f, got[1].id, got[1].attempt, 10000.0);
    for (int i = 2; i < 34; i++)
        s_result_ran(&f, got[i].id, got[i].attempt, 0.01);
    ck_assert_int_ge(s_take_tasks(&f, 32, got + 66, 3000), 32);
    s_fake_stop(&f);
    s_env_stop(&e);
}
END_TEST

/* Tasks of a few ms (an `exec true`) get about 32 ms of them queued per
   thread (master/tasks.c, PREFETCH_QUEUE_MS), and no more: a queued task
   waits on its worker (until another worker idles: a recall). */
START_TEST(a_worker_of_3_ms_tasks_gets_about_32_ms_of_them_queued_per_thread)
{
    env_t e;
    s_env_start_with(&e, 60000, 0, -1);
    fake_t f;
    s_fake_start(&f, &e, "w", 2);
    s_submit_noops(&e, 300);
    proto_task_t got[64];
    /* No samples yet: one task per thread, nothing queued. */
    ck_assert_int_eq(s_take_tasks(&f, 2, got, 3000), 2);
    s_result_ran(&f, got[0].id, got[0].attempt, 3.0);
    s_result_ran(&f, got[1].id, got[1].attempt, 3.0);
    /* Two 3 ms samples: 2 threads + 2 x 32 / 3 queued (21, rounded) = 23
       out, all of them free now. */
    ck_assert_int_eq(s_take_tasks(&f, 23, got + 2, 3000), 23);
    /* And not one more until a result frees a slot. */
    proto_pipe_t *extra = s_next(&f, 300, true);
    ck_assert_msg(extra == NULL, "more than 32 ms of 3 ms tasks were queued");
    s_fake_stop(&f);
    s_env_stop(&e);
}
END_TEST

START_TEST(a_task_not_started_within_its_lease_goes_back)
{
    env_t e;
    s_env_start(&e, 300);
    fake_t f;
    s_fake_start(&f, &e, "w", 1);
    s_submit_noops(&e, 1);
    proto_task_t got[4];
    ck_assert_int_eq(s_take_tasks(&f, 1, got, 3000), 1);
    ck_assert_int_eq(got[0].attempt, 1);
    /* Never report it started: the master aborts attempt 1 and sends
       attempt 2. */
    bool aborted = false;
    proto_pipe_t *msg;
    int64_t second = 0;
    while (!second && (msg = s_next(&f, zt_ms(3000), true))) {
        if (msg->type == PROTO_PIPE_ABORT) {
            ck_assert_int_eq(msg->task, got[0].id);
            ck_assert_int_eq(msg->attempt, 1);
            aborted = true;
        } else if (msg->type == PROTO_PIPE_TASKS) {
            ck_assert_int_eq(msg->tasks[0].id, got[0].id);
            ck_assert_int_eq(msg->tasks[0].attempt, 2);
            second = msg->tasks[0].id;
        }
        proto_pipe_destroy(&msg);
    }
    ck_assert(aborted);
    ck_assert_int_eq(second, got[0].id);
    s_fake_stop(&f);
    s_env_stop(&e);
}
END_TEST

static proto_reply_t *s_query(env_t *e, proto_req_type_t type, int64_t job)
{
    proto_req_t *req = proto_req_new(type);
    req->job = job;
    proto_reply_t *rep = s_call(e, e->client, req);
    proto_req_destroy(&req);
    ck_assert(rep->ok);
    return rep;
}

START_TEST(a_dead_workers_tasks_run_elsewhere_and_its_late_result_is_a_duplicate)
{
    env_t e;
    s_env_start(&e, 10000);
    fake_t a, b;
    s_fake_start(&a, &e, "a", 1);
    int64_t job = s_submit_noops(&e, 1);
    proto_task_t got[4];
    ck_assert_int_eq(s_take_tasks(&a, 1, got, 3000), 1);
    s_started(&a, got[0].id, got[0].attempt);
    /* a goes silent; b arrives and, once a is declared dead, gets the task. */
    s_fake_start(&b, &e, "b", 1);
    proto_task_t got_b[4];
    ck_assert_int_eq(s_take_tasks(&b, 1, got_b, 5000), 1);
    ck_assert_int_eq(got_b[0].id, got[0].id);
    ck_assert_int_eq(got_b[0].attempt, 2);
    s_result(&b, got_b[0].id, got_b[0].attempt);
    /* a's late result for attempt 1 changes nothing. */
    s_result(&a, got[0].id, got[0].attempt);
    proto_reply_t *rep = NULL;
    for (int i = 0; i < 100; i++) {
        proto_reply_destroy(&rep);
        rep = s_query(&e, PROTO_REQ_STATS, 0);
        if (rep->stats.duplicates == 1)
            break;
        zmq_poll(NULL, 0, 20);
    }
    ck_assert_int_eq(rep->stats.duplicates, 1);
    proto_reply_destroy(&rep);
    rep = s_query(&e, PROTO_REQ_RESULTS, job);
    ck_assert_int_eq(rep->ntasks, 1);
    ck_assert_int_eq(rep->tasks[0].status, PROTO_ST_DONE);
    ck_assert_int_eq(rep->tasks[0].attempts, 2);
    ck_assert_str_eq(rep->tasks[0].worker, b.id);
    proto_reply_destroy(&rep);
    rep = s_query(&e, PROTO_REQ_WORKERS, 0);
    ck_assert_int_eq(rep->nworkers, 2);
    for (int i = 0; i < 2; i++)
        ck_assert(rep->workers[i].alive == (strcmp(rep->workers[i].id, b.id) == 0));
    proto_reply_destroy(&rep);
    s_fake_stop(&a);
    s_fake_stop(&b);
    s_env_stop(&e);
}
END_TEST

START_TEST(a_report_of_more_output_than_the_master_takes_fails_the_rest_and_loses_none)
{
    /* One report (12 MiB) of six results, each 1.5 MiB of 0x01 as
       base64: 9 MiB each once stored, 54 MiB in all, over the 32 MiB the
       master takes from one report. It keeps the first three whole; the
       other three end failed saying why (none left running, none lost). */
    env_t e;
    /* Making 12 MiB of report takes a while on a loaded host: a
       liveness of 3 s rather than 300 ms, and heartbeats between the
       results, so that the worker is not declared dead meanwhile. */
    master_config_t cfg = s_config(10000, 0, 0);
    cfg.liveness = 30;
    s_env_start_config(&e, &cfg);
    fake_t f;
    s_fake_start(&f, &e, "w", 6);
    int64_t job = s_submit_noops(&e, 6);
    proto_task_t got[8];
    ck_assert_int_eq(s_take_tasks(&f, 6, got, 3000), 6);
    const size_t n = (size_t) 3 << 19;
    char *texts[6];
    for (int i = 0; i < 6; i++) {
        s_heartbeat(&f);
        proto_result_t *r = proto_result_new();
        r->task = got[i].id;
        r->attempt = got[i].attempt;
        r->status = PROTO_ST_DONE;
        r->started = 1.8e9;
        r->finished = 1.8e9 + 1;
        r->stdout_raw = xmalloc(n);
        memset(r->stdout_raw, 1, n);
        r->stdout_raw_len = n;
        r->raw_b64 = true;
        texts[i] = proto_result_encode(r);
        proto_result_destroy(&r);
    }
    char *text = proto_report_encode_results_raw(f.id, 6, (const char *const *) texts);
    for (int i = 0; i < 6; i++)
        free(texts[i]);
    ck_assert_int_eq(zmqx_send(f.push, text, strlen(text), 0), 0);
    free(text);
    proto_reply_t *st = NULL;
    for (int i = 0; i < 250; i++) {
        proto_reply_destroy(&st);
        s_heartbeat(&f);
        st = s_query(&e, PROTO_REQ_STATUS, job);
        if (st->jobs[0].done + st->jobs[0].failed == 6)
            break;
        zmq_poll(NULL, 0, 20);
    }
    ck_assert_msg(st->jobs[0].done == 3, "done %lld failed %lld queued %lld running %lld", (long long) st->jobs[0].done, (long long) st->jobs[0].failed, (long long) st->jobs[0].queued, (long long) st->jobs[0].running);
    ck_assert_msg(st->jobs[0].failed == 3, "done %lld failed %lld queued %lld running %lld", (long long) st->jobs[0].done, (long long) st->jobs[0].failed, (long long) st->jobs[0].queued, (long long) st->jobs[0].running);
    proto_reply_destroy(&st);
    proto_req_t *req = proto_req_new(PROTO_REQ_RESULTS);
    req->job = job;
    req->failed_only = true;
    proto_reply_t *res = s_call(&e, e.client, req);
    proto_req_destroy(&req);
    ck_assert(res->ok);
    ck_assert_int_eq(res->ntasks, 3);
    for (int i = 0; i < 3; i++) {
        const proto_result_t *r = res->tasks[i].result;
        ck_assert_ptr_nonnull(r);
        ck_assert_ptr_null(r->stdout_data);
        ck_assert(r->stdout_truncated);
        ck_assert_msg(r->error && strstr(r->error, "stdout was dropped"), "error: %s",
                      r->error ? r->error : "(none)");
    }
    proto_reply_destroy(&res);
    s_fake_stop(&f);
    s_env_stop(&e);
}
END_TEST

START_TEST(a_dropped_output_is_logged_for_the_result_that_counts_not_for_its_duplicate)
{
    /* A result whose 6 MiB of 0x01 output (36 MiB once stored) is over
       what the master takes from one report: it counts, failed, and is
       logged once. The same report again is a duplicate: it changes
       nothing, so it is not logged as a dropped output again. */
    env_t e;
    master_config_t cfg = s_config(10000, 0, 0);
    cfg.liveness = 30;
    /* The master's log: stderr (it runs on a thread of this process). */
    capture_t cap;
    s_capture_start(&cap, STDERR_FILENO);
    s_env_start_config(&e, &cfg);
    fake_t f;
    s_fake_start(&f, &e, "w", 1);
    int64_t job = s_submit_noops(&e, 1);
    proto_task_t got[2];
    ck_assert_int_eq(s_take_tasks(&f, 1, got, 3000), 1);
    proto_result_t *r = proto_result_new();
    r->task = got[0].id;
    r->attempt = got[0].attempt;
    r->status = PROTO_ST_DONE;
    r->stdout_raw_len = (size_t) 6 << 20;
    r->stdout_raw = xmalloc(r->stdout_raw_len);
    memset(r->stdout_raw, 1, r->stdout_raw_len);
    r->raw_b64 = true;
    char *one = proto_result_encode(r);
    proto_result_destroy(&r);
    char *text = proto_report_encode_results_raw(f.id, 1, (const char *const *) &one);
    free(one);
    for (int copy = 0; copy < 2; copy++) {
        ck_assert_int_eq(zmqx_send(f.push, text, strlen(text), 0), 0);
        proto_reply_t *st = NULL;
        for (int i = 0; i < 250; i++) {
            proto_reply_destroy(&st);
            s_heartbeat(&f);
            st = s_query(&e, PROTO_REQ_STATS, 0);
            if (st->stats.duplicates == copy && st->stats.tasks_failed == 1)
                break;
            zmq_poll(NULL, 0, 20);
        }
        ck_assert_int_eq(st->stats.tasks_failed, 1);
        ck_assert_int_eq(st->stats.duplicates, copy);
        proto_reply_destroy(&st);
    }
    free(text);
    proto_reply_t *st = s_query(&e, PROTO_REQ_STATUS, job);
    ck_assert_int_eq(st->jobs[0].failed, 1);
    proto_reply_destroy(&st);
    s_fake_stop(&f);
    s_env_stop(&e);
    char *log = s_capture_end(&cap);
    fputs(log, stderr);   /* still seen in the test's output */
    int logged = s_capture_count(log, "event=result_output_dropped");
    free(log);
    ck_assert_msg(logged == 1, "event=result_output_dropped logged %d times", logged);
}
END_TEST

START_TEST(malformed_requests_get_error_replies)
{
    env_t e;
    s_env_start(&e, 10000);
    const char *bad[] = {"", "{", "[]", "{\"v\":2,\"type\":\"jobs\"}", "{\"v\":1,\"type\":\"nope\"}",
                         "{\"v\":1,\"type\":\"status\",\"job\":\"x\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(zmqx_send(e.client, bad[i], strlen(bad[i]), 0), 0);
        zmq_pollitem_t it = {e.client, 0, ZMQ_POLLIN, 0};
        ck_assert_int_eq(zmq_poll(&it, 1, 5000), 1);
        size_t len;
        char *buf = zmqx_recv(e.client, &len, 0);
        proto_err_t err;
        proto_reply_t *rep = proto_reply_decode(buf, len, PROTO_REQ_STATUS, &err);
        ck_assert_ptr_nonnull(rep);
        ck_assert_msg(!rep->ok, "request %zu was accepted", i);
        ck_assert(rep->error.code[0] != '\0');
        proto_reply_destroy(&rep);
        free(buf);
    }
    /* Still serving. */
    int64_t job = s_submit_noops(&e, 3);
    proto_reply_t *rep = s_query(&e, PROTO_REQ_STATUS, job);
    ck_assert_int_eq(rep->jobs[0].total, 3);
    proto_reply_destroy(&rep);
    s_env_stop(&e);
}
END_TEST

static void s_send_status(void *sock, int64_t job, int wait_ms)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_STATUS);
    req->job = job;
    req->wait_ms = wait_ms;
    char *text = proto_req_encode(req);
    ck_assert_int_eq(zmqx_send(sock, text, strlen(text), 0), 0);
    free(text);
    proto_req_destroy(&req);
}

/* The answer on sock within ms, read as the reply to a request of type
   (which decides the members a reply has), or NULL. */
static proto_reply_t *s_answer_to(void *sock, int ms, proto_req_type_t type)
{
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, ms) != 1)
        return NULL;
    size_t len;
    char *buf = zmqx_recv(sock, &len, 0);
    ck_assert_ptr_nonnull(buf);
    proto_err_t err;
    proto_reply_t *rep = proto_reply_decode(buf, len, type, &err);
    free(buf);
    ck_assert_ptr_nonnull(rep);
    return rep;
}

static proto_reply_t *s_answer(void *sock, int ms)
{
    return s_answer_to(sock, ms, PROTO_REQ_STATUS);
}

/* Sends a status request for job held up to wait_ms, on a socket of its
   own, and returns that socket once the master holds the request: a
   second request on the same connection (status of a job that does not
   exist) is read after it and answered first. */
static void *s_status_held(env_t *e, int64_t job, int wait_ms)
{
    void *sock = zmqx_socket(e->ctx, ZMQ_DEALER, 0, -1);
    ck_assert_int_eq(zmq_connect(sock, e->api), 0);
    s_send_status(sock, job, wait_ms);
    s_send_status(sock, job + 1000000, 0);
    proto_reply_t *marker = s_answer(sock, 10000);
    ck_assert_ptr_nonnull(marker);
    ck_assert_msg(!marker->ok, "the held request was answered at once");
    ck_assert_str_eq(marker->error.code, PROTO_E_NOT_FOUND);
    proto_reply_destroy(&marker);
    return sock;
}

START_TEST(a_held_status_is_answered_when_its_job_finishes)
{
    env_t e;
    s_env_start(&e, 10000);
    fake_t f;
    s_fake_start(&f, &e, "w", 4);
    int64_t job = s_submit_noops(&e, 2);
    proto_task_t got[2];
    ck_assert_int_eq(s_take_tasks(&f, 2, got, 3000), 2);
    void *held = s_status_held(&e, job, 60000);
    s_result(&f, got[0].id, got[0].attempt);
    /* One of two finished (seen by a status, which also orders the
       result before it): still held. */
    for (;;) {
        proto_reply_t *now = s_query(&e, PROTO_REQ_STATUS, job);
        bool one = now->jobs[0].done == 1;
        proto_reply_destroy(&now);
        if (one)
            break;
        zmq_poll(NULL, 0, 5);
    }
    ck_assert_ptr_null(s_answer(held, 0));
    s_result(&f, got[1].id, got[1].attempt);
    proto_reply_t *rep = s_answer(held, 10000);
    ck_assert_ptr_nonnull(rep);
    ck_assert(rep->ok);
    ck_assert_int_eq(rep->njobs, 1);
    ck_assert_int_eq(rep->jobs[0].done, 2);
    ck_assert(rep->jobs[0].finished > 0);
    proto_reply_destroy(&rep);
    zmq_close(held);
    s_fake_stop(&f);
    s_env_stop(&e);
}
END_TEST

/* GET path from the master's --http on loopback: the whole response
   (caller frees), headers and body. */
static char *s_http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *) &sa, sizeof sa), 0);
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    ck_assert_int_eq(write(fd, req, (size_t) n), n);
    size_t cap = 1 << 16, len = 0;
    char *out = xmalloc(cap);
    ssize_t r;
    while ((r = read(fd, out + len, cap - len - 1)) > 0) {
        len += (size_t) r;
        if (cap - len < 2)
            out = xrealloc(out, cap *= 2);
    }
    out[len] = '\0';
    close(fd);
    return out;
}

/* Removes a database name in dir and the files beside it. */
static void s_rm_db(const char *dir, const char *name)
{
    const char *ends[] = {"", "-wal", "-shm", ".reserve"};
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        char path[192];
        snprintf(path, sizeof path, "%s/%s%s", dir, name, ends[i]);
        unlink(path);
    }
}

/* The value of the first /metrics line that starts with name. */
static long s_metric(env_t *e, const char *name)
{
    char *m = s_http_get(master_http_port(e->master), "/metrics");
    const char *at = m;
    while ((at = strstr(at, name)) && at != m && at[-1] != '\n')
        at++;
    long v = at ? strtol(at + strlen(name), NULL, 10) : -1;
    free(m);
    return v;
}

START_TEST(a_held_answer_whose_commit_fails_is_counted_once_as_what_was_sent)
{
    /* A held status is answered from memory when its job finishes, and
       sent once that finish is committed. Here the commit fails (WAL
       writes fail as on a full disk): the client gets "storage", and
       the metrics count that one reply, not also the "ok" never sent. */
    char dir[] = "/tmp/ztask-test-master-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char db[128];
    snprintf(db, sizeof db, "%s/state.db", dir);
    s_fault_vfs_install();
    env_t e;
    master_config_t cfg = s_config(10000, 0, 0);
    cfg.db_path = db;
    cfg.http_addr = "127.0.0.1:0";
    s_env_start_config(&e, &cfg);
    fake_t f;
    s_fake_start(&f, &e, "w", 1);
    int64_t job = s_submit_noops(&e, 1);
    proto_task_t got[1];
    ck_assert_int_eq(s_take_tasks(&f, 1, got, 3000), 1);
    void *held = s_status_held(&e, job, 60000);
    /* A query is answered after a flush: nothing is left to commit now,
       so the next commit is the result's. */
    proto_reply_t *q = s_query(&e, PROTO_REQ_STATS, 0);
    proto_reply_destroy(&q);
    s_wal_fault = SQLITE_FULL;
    s_result(&f, got[0].id, got[0].attempt);
    proto_reply_t *rep = s_answer(held, 10000);
    ck_assert_ptr_nonnull(rep);
    ck_assert_msg(!rep->ok && strcmp(rep->error.code, PROTO_E_STORAGE) == 0,
                  "the held status got %s", rep->ok ? "ok" : rep->error.code);
    proto_reply_destroy(&rep);
    char *m = s_http_get(master_http_port(e.master), "/metrics");
    /* The status lines alone (the marker's not_found among them). */
    char lines[1024] = "";
    for (const char *at = m; (at = strstr(at, "ztask_api_requests_total{type=\"status\"")); at++)
        snprintf(lines + strlen(lines), sizeof lines - strlen(lines), "%.*s ",
                 (int) strcspn(at, "\n"), at);
    free(m);
    ck_assert_msg(strstr(lines, "outcome=\"storage\"} 1 ") && !strstr(lines, "outcome=\"ok\""),
                  "want one status counted, as storage; got: %s", lines);
    s_wal_fault = 0;
    zmq_close(held);
    s_fake_stop(&f);
    s_env_stop(&e);
    s_fault_vfs_remove();
    s_rm_db(dir, "state.db");
    rmdir(dir);
}
END_TEST

START_TEST(a_held_status_is_answered_when_its_wait_is_over_or_the_master_stops)
{
    env_t e;
    s_env_start(&e, 10000);
    int64_t job = s_submit_noops(&e, 1);   /* no worker: it never finishes */
    void *sock = zmqx_socket(e.ctx, ZMQ_DEALER, 0, -1);
    ck_assert_int_eq(zmq_connect(sock, e.api), 0);
    s_send_status(sock, job, 50);
    proto_reply_t *rep = s_answer(sock, 10000);
    ck_assert_ptr_nonnull(rep);
    ck_assert(rep->ok);
    ck_assert_int_eq(rep->jobs[0].queued, 1);
    ck_assert(rep->jobs[0].finished == 0);
    proto_reply_destroy(&rep);
    /* An unknown job is answered at once. */
    s_send_status(sock, job + 100, 60000);
    rep = s_answer(sock, 10000);
    ck_assert_ptr_nonnull(rep);
    ck_assert(!rep->ok);
    ck_assert_str_eq(rep->error.code, PROTO_E_NOT_FOUND);
    proto_reply_destroy(&rep);
    zmq_close(sock);
    /* Held for a minute, but the master stops: answered as of then. */
    void *held = s_status_held(&e, job, 60000);
    __atomic_store_n(&e.stop, 1, __ATOMIC_RELAXED);
    rep = s_answer(held, 10000);
    ck_assert_ptr_nonnull(rep);
    ck_assert(rep->ok);
    ck_assert_int_eq(rep->jobs[0].queued, 1);
    proto_reply_destroy(&rep);
    zmq_close(held);
    s_env_stop(&e);
}
END_TEST

/* Sends a one-batch job of n noops, held up to wait_ms, on sock. */
static void s_send_submit_held(void *sock, int n, int wait_ms)
{
    proto_req_t *req = s_noops(0, n, false);
    req->wait_ms = wait_ms;
    char *text = proto_req_encode(req);
    ck_assert_int_eq(zmqx_send(sock, text, strlen(text), 0), 0);
    free(text);
    proto_req_destroy(&req);
}

/* A held submit of n noops and its answer: accepted, with its job's record. */
static proto_reply_t *s_held_submit(void *sock, int n, int wait_ms)
{
    s_send_submit_held(sock, n, wait_ms);
    proto_reply_t *rep = s_answer_to(sock, 10000, PROTO_REQ_SUBMIT);
    ck_assert_ptr_nonnull(rep);
    ck_assert(rep->ok);
    ck_assert_int_eq(rep->accepted, n);
    ck_assert_int_eq(rep->njobs, 1);
    ck_assert_int_eq(rep->jobs[0].id, rep->job);
    return rep;
}

/* A submit of a job's last batch with wait_ms is answered once the job
   has finished, with the job's record: submit, run and result in one
   request (the single-task round trip). Not before: a status of a job
   that does not exist, sent after it on the same connection, is answered
   first (the master reads them in order, and would have answered the
   submit in the commit that came before). */
START_TEST(a_held_submit_is_answered_when_its_job_finishes)
{
    env_t e;
    s_env_start(&e, 10000);
    fake_t f;
    s_fake_start(&f, &e, "w", 4);
    void *sock = zmqx_socket(e.ctx, ZMQ_DEALER, 0, -1);
    ck_assert_int_eq(zmq_connect(sock, e.api), 0);
    s_send_submit_held(sock, 2, 60000);
    s_send_status(sock, 1000000, 0);
    proto_reply_t *marker = s_answer(sock, 10000);
    ck_assert_ptr_nonnull(marker);
    ck_assert_msg(!marker->ok, "the held submit was answered at once");
    ck_assert_str_eq(marker->error.code, PROTO_E_NOT_FOUND);
    proto_reply_destroy(&marker);
    proto_task_t got[2];
    ck_assert_int_eq(s_take_tasks(&f, 2, got, 3000), 2);
    s_result(&f, got[0].id, got[0].attempt);
    s_result(&f, got[1].id, got[1].attempt);
    proto_reply_t *rep = s_answer_to(sock, 10000, PROTO_REQ_SUBMIT);
    ck_assert_ptr_nonnull(rep);
    ck_assert(rep->ok);
    ck_assert_int_gt(rep->job, 0);
    ck_assert_int_eq(rep->accepted, 2);
    ck_assert_int_eq(rep->total, 2);
    ck_assert_int_eq(rep->njobs, 1);
    ck_assert_int_eq(rep->jobs[0].id, rep->job);
    ck_assert_int_eq(rep->jobs[0].done, 2);
    ck_assert(rep->jobs[0].finished > 0);
    proto_reply_destroy(&rep);

    /* A job with nothing to run finishes with its commit: answered then
       (well before its minute). */
    rep = s_held_submit(sock, 0, 60000);
    ck_assert(rep->jobs[0].finished > 0);
    proto_reply_destroy(&rep);

    /* No worker for this one: answered when the wait is over, with the
       record of a job still queued. */
    s_fake_stop(&f);
    rep = s_held_submit(sock, 1, 50);
    ck_assert_int_eq(rep->jobs[0].queued + rep->jobs[0].running, 1);
    ck_assert(rep->jobs[0].finished == 0);
    proto_reply_destroy(&rep);

    /* A batch with more to come cannot wait for its job. */
    proto_req_t *req = s_noops(0, 1, true);
    req->wait_ms = 100;
    char *text = proto_req_encode(req);
    ck_assert_int_eq(zmqx_send(sock, text, strlen(text), 0), 0);
    free(text);
    proto_req_destroy(&req);
    rep = s_answer_to(sock, 10000, PROTO_REQ_SUBMIT);
    ck_assert_ptr_nonnull(rep);
    ck_assert(!rep->ok);
    ck_assert_ptr_nonnull(strstr(rep->error.message, "wait_ms"));
    proto_reply_destroy(&rep);
    zmq_close(sock);
    s_env_stop(&e);
}
END_TEST

/* Sends a submit of n noops to job (0 = new) on sock, without waiting. */
static void s_send_submit(void *sock, int64_t job, int n, bool more)
{
    proto_req_t *req = s_noops(job, n, more);
    char *text = proto_req_encode(req);
    ck_assert_int_eq(zmqx_send(sock, text, strlen(text), 0), 0);
    free(text);
    proto_req_destroy(&req);
}

static proto_reply_t *s_submit_reply(void *sock)
{
    proto_reply_t *rep = s_answer_to(sock, 10000, PROTO_REQ_SUBMIT);
    ck_assert_ptr_nonnull(rep);
    return rep;
}

START_TEST(batches_added_to_one_job_at_once_get_distinct_indexes)
{
    env_t e;
    s_env_start(&e, 10000);
    void *a = zmqx_socket(e.ctx, ZMQ_DEALER, 0, -1), *b = zmqx_socket(e.ctx, ZMQ_DEALER, 0, -1);
    ck_assert_int_eq(zmq_connect(a, e.api), 0);
    ck_assert_int_eq(zmq_connect(b, e.api), 0);
    s_send_submit(a, 0, 1, true);
    proto_reply_t *rep = s_submit_reply(a);
    ck_assert(rep->ok);
    int64_t job = rep->job;
    proto_reply_destroy(&rep);
    /* Two clients add to it at once: a big batch (written on the commit
       thread) and, while it is being written, a small one. */
    s_send_submit(a, job, 3000, true);
    s_send_submit(b, job, 10, true);
    rep = s_submit_reply(a);
    ck_assert(rep->ok);
    proto_reply_destroy(&rep);
    rep = s_submit_reply(b);
    ck_assert(rep->ok);
    proto_reply_destroy(&rep);
    /* A batch that closes the job and one sent right behind it, before
       the first is committed: the second is refused (and answered first:
       the close waits for its commit). */
    s_send_submit(a, job, 0, false);
    s_send_submit(a, job, 1, true);
    int ok = 0, refused = 0;
    for (int i = 0; i < 2; i++) {
        rep = s_submit_reply(a);
        if (rep->ok)
            ok++;
        else if (strcmp(rep->error.code, PROTO_E_STATE) == 0)
            refused++;
        proto_reply_destroy(&rep);
    }
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(refused, 1);
    /* Every task of the job, page by page: 3,011 distinct indexes. */
    bool *seen = xcalloc(4000, sizeof *seen);
    int count = 0;
    int64_t after = 0;
    while (after >= 0) {
        proto_req_t *req = proto_req_new(PROTO_REQ_RESULTS);
        req->job = job;
        req->after = after;
        rep = s_call(&e, e.client, req);
        proto_req_destroy(&req);
        ck_assert(rep->ok);
        for (int i = 0; i < rep->ntasks; i++) {
            int64_t idx = rep->tasks[i].index;
            ck_assert(idx >= 0 && idx < 4000);
            ck_assert_msg(!seen[idx], "index %lld given twice", (long long) idx);
            seen[idx] = true;
            count++;
        }
        after = rep->next_after;
        proto_reply_destroy(&rep);
    }
    ck_assert_int_eq(count, 3011);
    free(seen);
    zmq_close(a);
    zmq_close(b);
    s_env_stop(&e);
}
END_TEST

START_TEST(keep_results_forgets_the_oldest_finished_jobs)
{
    env_t e;
    s_env_start_with(&e, 10000, 2, 0);
    fake_t f;
    s_fake_start(&f, &e, "w", 4);
    int64_t jobs[3];
    for (int j = 0; j < 3; j++) {
        jobs[j] = s_submit_noops(&e, 2);
        proto_task_t got[4];
        ck_assert_int_eq(s_take_tasks(&f, 2, got, 3000), 2);
        for (int i = 0; i < 2; i++)
            s_result(&f, got[i].id, got[i].attempt);
        /* Wait until the job is finished before the next one. */
        for (int i = 0; i < 200; i++) {
            proto_reply_t *rep = s_query(&e, PROTO_REQ_STATUS, jobs[j]);
            bool done = rep->jobs[0].finished > 0;
            proto_reply_destroy(&rep);
            if (done)
                break;
            zmq_poll(NULL, 0, 10);
        }
    }
    /* Two kept: the first job is gone, the last two remain. */
    proto_reply_t *rep = NULL;
    for (int i = 0; i < 200; i++) {
        proto_reply_destroy(&rep);
        rep = s_query(&e, PROTO_REQ_JOBS, 0);
        if (rep->njobs == 2)
            break;
        zmq_poll(NULL, 0, 10);
    }
    ck_assert_int_eq(rep->njobs, 2);
    ck_assert_int_eq(rep->jobs[0].id, jobs[1]);
    ck_assert_int_eq(rep->jobs[1].id, jobs[2]);
    proto_reply_destroy(&rep);
    s_fake_stop(&f);
    s_env_stop(&e);
}
END_TEST

/* ---- wall-clock jumps ---- */

/* A one-batch job of the given specs (JSON texts); its id. */
static int64_t s_submit_specs(env_t *e, const char *const *specs, int n)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_SUBMIT);
    req->tasks = xcalloc((size_t) n + 1, sizeof(proto_spec_t *));
    for (int i = 0; i < n; i++) {
        proto_err_t err;
        req->tasks[i] = proto_spec_decode(specs[i], strlen(specs[i]), &err);
        ck_assert_msg(req->tasks[i] != NULL, "%s: %s", specs[i], err.message);
    }
    req->ntasks = n;
    proto_reply_t *rep = s_call(e, e->client, req);
    ck_assert(rep->ok);
    ck_assert_int_eq(rep->accepted, n);
    int64_t job = rep->job;
    proto_reply_destroy(&rep);
    proto_req_destroy(&req);
    return job;
}

static void s_result_failed(fake_t *f, int64_t task, int attempt)
{
    proto_report_t *rep = proto_report_new(PROTO_REP_RESULTS, f->id);
    rep->results = xcalloc(1, sizeof(proto_result_t *));
    rep->results[0] = proto_result_new();
    rep->results[0]->task = task;
    rep->results[0]->attempt = attempt;
    rep->results[0]->status = PROTO_ST_FAILED;
    rep->results[0]->error = xstrdup("failed on purpose");
    rep->nresults = 1;
    s_report(f, rep);
}

/* Reads f's pipe until `pings` pings have come, heartbeating between
   reads when beat. The master pings from its timers, on the same pass
   that checks liveness and leases, so each ping after the first (which
   may have left before the caller's jump) is one more pass of those
   checks. Returns the first message that is not a ping, for the caller
   to fail on, or NULL once the pings have come; fails when they stop
   (the master no longer takes the worker for alive). */
static proto_pipe_t *s_pings(fake_t *f, int pings, bool beat)
{
    int seen = 0;
    int64_t until = clock_mono_ms() + 5000;
    while (seen < pings && clock_mono_ms() < until) {
        if (beat)
            s_heartbeat(f);
        zmq_pollitem_t it = {f->pipe, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) != 1)
            continue;
        size_t len;
        char *buf = zmqx_recv(f->pipe, &len, 0);
        proto_err_t err;
        proto_pipe_t *msg = proto_pipe_decode(buf, len, &err);
        free(buf);
        ck_assert_msg(msg != NULL, "bad pipe message: %s", err.message);
        if (msg->type != PROTO_PIPE_PING)
            return msg;
        proto_pipe_destroy(&msg);
        seen++;
    }
    ck_assert_msg(seen == pings, "%d pings of %d in 5 s: the master stopped pinging %s", seen,
                  pings, f->id);
    return NULL;
}

static const char *s_pipe_name(const proto_pipe_t *msg)
{
    switch (msg->type) {
    case PROTO_PIPE_TASKS: return "a task";
    case PROTO_PIPE_ABORT: return "an abort";
    case PROTO_PIPE_DRAIN: return "a drain";
    case PROTO_PIPE_PING: return "a ping";
    case PROTO_PIPE_RECALL: return "a recall";
    }
    return "?";
}

/* The one worker the master knows of, as the workers request shows it. */
static proto_worker_info_t s_only_worker(env_t *e, proto_reply_t **rep)
{
    *rep = s_query(e, PROTO_REQ_WORKERS, 0);
    ck_assert_int_eq((*rep)->nworkers, 1);
    return (*rep)->workers[0];
}

/* Leases, retry backoff and held requests run on the monotonic clock:
   the wall clock set a day forward, then a day back, neither fires one
   early nor holds one back. Timed by clock_wall(), the jump forward would
   abort B, send A again and answer the held status at once, and the jump
   back would keep all three waiting for a day. */
START_TEST(wall_clock_jumps_fire_no_lease_retry_or_held_request_early_and_delay_none)
{
    /* From their start, the held status waits 2.5 s, A's backoff 3 s and
       B's lease 4 s; the quiet spell with the clock ahead takes ~0.5 s. */
    master_config_t cfg = s_config(4000, 0, 0);
    cfg.retry_backoff_ms = 3000;
    env_t e;
    s_env_start_config(&e, &cfg);
    fake_t f;
    s_fake_start(&f, &e, "w", 2);
    const char *specs[] = {"{\"fn\":\"noop\",\"retries\":1}", "{\"fn\":\"noop\"}"};
    int64_t job = s_submit_specs(&e, specs, 2);
    proto_task_t got[2];
    ck_assert_int_eq(s_take_tasks(&f, 2, got, 3000), 2);
    proto_task_t a = got[0].id < got[1].id ? got[0] : got[1];
    proto_task_t b = got[0].id < got[1].id ? got[1] : got[0];
    int64_t held_since = clock_mono_ms();
    void *held = s_status_held(&e, job, 2500);
    /* A runs and fails: back to the queue for its backoff. B stays sent
       and not started: its lease runs. */
    s_started(&f, a.id, a.attempt);
    s_result_failed(&f, a.id, a.attempt);
    for (;;) {
        proto_reply_t *rep = s_query(&e, PROTO_REQ_STATUS, job);
        bool requeued = rep->jobs[0].queued == 1;
        proto_reply_destroy(&rep);
        if (requeued)
            break;
        zmq_poll(NULL, 0, 5);
    }
    double real = clock_wall();

    clock_wall_offset_set(86400.0);
    proto_pipe_t *msg = s_pings(&f, 5, true);
    ck_assert_msg(msg == NULL, "the wall clock a day ahead brought %s",
                  msg ? s_pipe_name(msg) : "");
    ck_assert_msg(s_answer(held, 0) == NULL, "the wall clock a day ahead answered a held status");
    /* The master did read the clock ahead: it stamped the heartbeats. */
    proto_reply_t *rep;
    proto_worker_info_t w = s_only_worker(&e, &rep);
    ck_assert(w.alive);
    ck_assert_double_gt(w.last_heartbeat, real + 86000.0);
    proto_reply_destroy(&rep);
    /* Else the spell outlasted the shortest wait and proved nothing. */
    ck_assert_int_lt(clock_mono_ms() - held_since, 2500);

    clock_wall_offset_set(-86400.0);
    /* The held status is answered when its wait is over, A comes back
       after its backoff, B is aborted at the end of its lease and sent
       again. */
    bool answered = false, aborted = false, a2 = false, b2 = false;
    int64_t until = clock_mono_ms() + 10000;
    while (!(answered && aborted && a2 && b2) && clock_mono_ms() < until) {
        if (!answered && (rep = s_answer(held, 0))) {
            ck_assert(rep->ok);
            ck_assert(rep->jobs[0].finished == 0);
            proto_reply_destroy(&rep);
            answered = true;
        }
        if (!(msg = s_next(&f, 100, true)))
            continue;
        if (msg->type == PROTO_PIPE_ABORT && msg->task == b.id && msg->attempt == b.attempt)
            aborted = true;
        for (int i = 0; msg->type == PROTO_PIPE_TASKS && i < msg->ntasks; i++) {
            a2 |= msg->tasks[i].id == a.id && msg->tasks[i].attempt == 2;
            b2 |= msg->tasks[i].id == b.id && msg->tasks[i].attempt == 2;
        }
        proto_pipe_destroy(&msg);
    }
    ck_assert_msg(answered && aborted && a2 && b2,
                  "with the wall clock a day back, within 10 s: held status answered %d, "
                  "B aborted %d, A sent again %d, B sent again %d",
                  answered, aborted, a2, b2);
    zmq_close(held);
    s_fake_stop(&f);
    s_env_stop(&e);
}
END_TEST

/* Liveness runs on the monotonic clock too: the wall clock a day forward
   does not make a quiet worker dead before its time, a day back does not
   keep a silent one alive. */
START_TEST(wall_clock_jumps_neither_kill_a_quiet_worker_early_nor_keep_a_silent_one)
{
    master_config_t cfg = s_config(10000, 0, 0);
    cfg.liveness = 20;   /* dead after 2 s of silence: room for the quiet spell */
    env_t e;
    s_env_start_config(&e, &cfg);
    fake_t a;
    s_fake_start(&a, &e, "a", 1);
    s_submit_noops(&e, 1);
    proto_task_t got[1];
    ck_assert_int_eq(s_take_tasks(&a, 1, got, 3000), 1);
    /* a's last report: the master has read it once it shows in a's
       last_heartbeat (wall time of the last report, so it is later than
       any wall time before the report was sent). */
    double before = clock_wall();
    int64_t quiet_since = clock_mono_ms();
    s_started(&a, got[0].id, got[0].attempt);
    proto_reply_t *rep;
    for (;;) {
        bool seen = s_only_worker(&e, &rep).last_heartbeat >= before;
        proto_reply_destroy(&rep);
        if (seen)
            break;
        zmq_poll(NULL, 0, 5);
    }

    /* a says nothing from here on. */
    clock_wall_offset_set(86400.0);
    proto_pipe_t *msg = s_pings(&a, 5, false);
    ck_assert_msg(msg == NULL, "the wall clock a day ahead brought %s",
                  msg ? s_pipe_name(msg) : "");
    ck_assert_msg(s_only_worker(&e, &rep).alive,
                  "a quiet worker died with the wall clock a day ahead");
    proto_reply_destroy(&rep);
    /* Else the quiet spell outlasted the liveness and proved nothing. */
    ck_assert_int_lt(clock_mono_ms() - quiet_since, 2000);

    clock_wall_offset_set(-86400.0);
    /* Still silent: dead 2 s after its last report, its task runs on b. */
    fake_t b;
    s_fake_start(&b, &e, "b", 1);
    proto_task_t got_b[1];
    ck_assert_int_eq(s_take_tasks(&b, 1, got_b, 10000), 1);
    ck_assert_int_eq(got_b[0].id, got[0].id);
    ck_assert_int_eq(got_b[0].attempt, 2);
    rep = s_query(&e, PROTO_REQ_WORKERS, 0);
    ck_assert_int_eq(rep->nworkers, 2);
    for (int i = 0; i < 2; i++)
        ck_assert(rep->workers[i].alive == (strcmp(rep->workers[i].id, b.id) == 0));
    proto_reply_destroy(&rep);
    s_fake_stop(&a);
    s_fake_stop(&b);
    s_env_stop(&e);
}
END_TEST

/* Whether the master lists worker id as alive. */
static bool s_alive(env_t *e, const char *id)
{
    proto_reply_t *rep = s_query(e, PROTO_REQ_WORKERS, 0);
    bool alive = false;
    for (int i = 0; i < rep->nworkers; i++)
        if (strcmp(rep->workers[i].id, id) == 0)
            alive = rep->workers[i].alive;
    proto_reply_destroy(&rep);
    return alive;
}

/* Takes one task, starts it and goes silent until the master declares
   the worker dead (its heartbeats stop: 300 ms here). */
static proto_task_t s_take_and_vanish(env_t *e, fake_t *f)
{
    proto_task_t got[2];
    ck_assert_int_eq(s_take_tasks(f, 1, got, 5000), 1);
    s_started(f, got[0].id, got[0].attempt);
    bool dead = false;
    for (int i = 0; i < 250 && !dead; i++) {
        dead = !s_alive(e, f->id);
        if (!dead)
            zmq_poll(NULL, 0, 20); /* a poll of the master's view, 5 s in all */
    }
    ck_assert_msg(dead, "the silent worker was not declared dead within 5 s");
    return got[0];
}

/* With --crash-limit 2, a task whose worker goes silent twice would be
   failed as poison; but the worker came back both times, the same process
   (it was cut off, not crashed): the task runs to the end. */
START_TEST(a_worker_declared_dead_that_comes_back_did_not_crash_its_tasks)
{
    env_t e;
    master_config_t cfg = s_config(10000, 0, 0);
    cfg.crash_limit = 2;
    s_env_start_config(&e, &cfg);
    fake_t a;
    s_fake_start(&a, &e, "a", 1);
    int64_t job = s_submit_noops(&e, 1);
    for (int lost = 1; lost <= 2; lost++) {
        proto_task_t t = s_take_and_vanish(&e, &a);
        ck_assert_int_eq(t.attempt, lost);
        s_fake_hello(&a, "a");
    }
    proto_task_t got[2];
    ck_assert_int_eq(s_take_tasks(&a, 1, got, 5000), 1);
    ck_assert_int_eq(got[0].attempt, 3);
    s_result(&a, got[0].id, got[0].attempt);
    proto_req_t *st = proto_req_new(PROTO_REQ_STATUS);
    st->job = job;
    st->wait_ms = 5000;
    proto_reply_t *rep = s_call(&e, e.client, st);
    proto_req_destroy(&st);
    ck_assert(rep->ok && rep->njobs == 1);
    ck_assert_msg(rep->jobs[0].done == 1 && rep->jobs[0].failed == 0,
                  "want the task done, not failed as poison: done %lld failed %lld",
                  (long long) rep->jobs[0].done, (long long) rep->jobs[0].failed);
    proto_reply_destroy(&rep);
    s_fake_stop(&a);
    s_env_stop(&e);
}
END_TEST

/* Undone after each case, for CK_FORK=no runs where cases share a process. */
static void s_wall_clock_reset(void)
{
    clock_wall_offset_set(0);
}

/* ---- recall ---- */

/* Waits up to ms for a recall on h's pipe while idle (NULL: none to
   keep alive) beats too; NULL on timeout. Tasks that come to h fail the
   test. */
static proto_pipe_t *s_wait_recall(fake_t *h, fake_t *idle, int ms)
{
    for (int waited = 0; waited < ms; waited += 50) {
        if (idle)
            s_heartbeat(idle);
        proto_pipe_t *msg = s_next(h, 50, true);
        if (!msg)
            continue;
        ck_assert_msg(msg->type == PROTO_PIPE_RECALL, "%s came instead of a recall",
                      s_pipe_name(msg));
        return msg;
    }
    return NULL;
}

/* s_wait_recall, with a heartbeat of also (a worker that joined, kept
   alive meanwhile) every 100 ms. */
static proto_pipe_t *s_wait_recall_beating(fake_t *h, fake_t *idle, fake_t *also, int ms)
{
    proto_pipe_t *msg = NULL;
    for (int waited = 0; waited < ms && !msg; waited += 100) {
        s_heartbeat(also);
        msg = s_wait_recall(h, idle, 100);
    }
    return msg;
}

static void s_recalled(fake_t *f, const proto_task_ref_t *refs, int n)
{
    proto_report_t *rep = proto_report_new(PROTO_REP_RECALLED, f->id);
    rep->recalled = xcalloc((size_t) n + 1, sizeof *rep->recalled);
    for (int i = 0; i < n; i++)
        rep->recalled[i] = (proto_task_ref_t){.task = refs[i].task, .attempt = refs[i].attempt};
    rep->nrecalled = n;
    s_report(f, rep);
}

static void s_lost(fake_t *f, int64_t task, int attempt)
{
    proto_report_t *rep = proto_report_new(PROTO_REP_LOST, f->id);
    rep->lost = xcalloc(1, sizeof *rep->lost);
    rep->lost[0] = (proto_task_ref_t){.task = task, .attempt = attempt};
    rep->nlost = 1;
    s_report(f, rep);
}

/* job's results once n of its tasks are done, or as they are after 100
   tries 20 ms apart, each worker of beat (NULL-ended) heartbeating
   between tries; the caller destroys the reply. */
static proto_reply_t *s_results_done(env_t *e, int64_t job, int n, fake_t *const *beat)
{
    proto_reply_t *rep = NULL;
    for (int k = 0; k < 100; k++) {
        proto_reply_destroy(&rep);
        rep = s_query(e, PROTO_REQ_RESULTS, job);
        int done = 0;
        for (int t = 0; t < rep->ntasks; t++)
            done += rep->tasks[t].status == PROTO_ST_DONE;
        if (done == n)
            break;
        for (int i = 0; beat[i]; i++)
            s_heartbeat(beat[i]);
        zmq_poll(NULL, 0, 20);
    }
    return rep;
}

/* "lost" (the answer to a hello reply's resend): an attempt the sender
   does not hold changes nothing; the one it holds, started, goes back
   to the queue and out again as the next attempt, charged no crash. */
START_TEST(a_lost_report_requeues_only_the_attempt_its_sender_holds)
{
    env_t e;
    master_config_t cfg = s_config(60000, 0, 0);
    cfg.crash_limit = 1;   /* a crash charged would fail the task */
    s_env_start_config(&e, &cfg);
    fake_t w;
    s_fake_start(&w, &e, "w", 1);
    int64_t job = s_submit_noops(&e, 1);
    proto_task_t got[2];
    ck_assert_int_eq(s_take_tasks(&w, 1, got, 3000), 1);
    s_started(&w, got[0].id, got[0].attempt);
    s_lost(&w, got[0].id, got[0].attempt + 1);   /* never sent */
    s_lost(&w, got[0].id + 1000, 1);             /* no such task */
    s_heartbeat(&w);
    ck_assert_int_eq(s_take_tasks(&w, 1, got + 1, 300), 0);
    s_lost(&w, got[0].id, got[0].attempt);
    ck_assert_int_eq(s_take_tasks(&w, 1, got + 1, 3000), 1);
    ck_assert_int_eq(got[1].id, got[0].id);
    ck_assert_int_eq(got[1].attempt, got[0].attempt + 1);
    s_result(&w, got[1].id, got[1].attempt);
    proto_reply_t *rep = s_results_done(&e, job, 1, (fake_t *[]){&w, NULL});
    ck_assert_int_eq(rep->ntasks, 1);
    ck_assert_int_eq(rep->tasks[0].status, PROTO_ST_DONE);
    ck_assert_int_eq(rep->tasks[0].attempts, 2);
    proto_reply_destroy(&rep);
    s_fake_stop(&w);
    s_env_stop(&e);
}
END_TEST

/* A heartbeat listing the n attempts refs that says it was made after
   the worker read the "tasks" message numbered seen (0: says nothing,
   as an older worker). */
static void s_heartbeat_seen(fake_t *f, const proto_task_ref_t *refs, int n, int64_t seen)
{
    proto_report_t *rep = proto_report_new(PROTO_REP_HEARTBEAT, f->id);
    rep->running = xcalloc((size_t) n + 1, sizeof *rep->running);
    for (int i = 0; i < n; i++)
        rep->running[i] = (proto_task_ref_t){.task = refs[i].task, .attempt = refs[i].attempt};
    rep->nrunning = n;
    rep->seen = seen;
    s_report(f, rep);
}

/* The n tasks of the first "tasks" messages w is sent (n at most 4),
   into got; returns the seq of the last message read. */
static int64_t s_take_numbered(fake_t *w, int n, proto_task_ref_t *got)
{
    int k = 0;
    int64_t last = 0;
    while (k < n) {
        proto_pipe_t *msg = s_next(w, zt_ms(3000), false);
        ck_assert_ptr_nonnull(msg);
        ck_assert_int_eq(msg->type, PROTO_PIPE_TASKS);
        ck_assert_msg(msg->seq > last, "seq %lld after %lld", (long long) msg->seq,
                      (long long) last);
        last = msg->seq;
        for (int i = 0; i < msg->ntasks && k < n; i++)
            got[k++] = (proto_task_ref_t){.task = msg->tasks[i].id,
                                          .attempt = msg->tasks[i].attempt};
        proto_pipe_destroy(&msg);
    }
    return last;
}

/* Heartbeats compared (docs/protocol.md 10.1): one that says it read an
   earlier "tasks" message than the last one sent, or says nothing (an
   older worker), changes nothing whatever it lists; two that read the
   last one and leave out a task it was sent have that task taken back
   and sent again as the next attempt, charged no crash. */
START_TEST(a_heartbeat_made_after_the_last_tasks_message_takes_back_what_it_does_not_list)
{
    env_t e;
    master_config_t cfg = s_config(60000, 0, 0);
    cfg.crash_limit = 1;   /* a crash charged would fail the task */
    s_env_start_config(&e, &cfg);
    fake_t w;
    s_fake_start(&w, &e, "w", 2);
    int64_t job = s_submit_noops(&e, 2);
    proto_task_ref_t got[2];
    int64_t last = s_take_numbered(&w, 2, got);
    s_heartbeat_seen(&w, NULL, 0, last - 1);
    s_heartbeat_seen(&w, NULL, 0, 0);
    proto_task_t more[1];
    ck_assert_int_eq(s_take_tasks(&w, 1, more, 300), 0);
    /* It read the last message and lists only the first task, twice:
       one such heartbeat may have overtaken a result (a report
       connection that came back), two have not. */
    s_heartbeat_seen(&w, got, 1, last);
    s_heartbeat_seen(&w, got, 1, last);
    proto_pipe_t *msg = s_next(&w, zt_ms(3000), false);
    ck_assert_ptr_nonnull(msg);
    ck_assert_int_eq(msg->type, PROTO_PIPE_TASKS);
    ck_assert_int_eq(msg->ntasks, 1);
    ck_assert_int_eq(msg->tasks[0].id, got[1].task);
    ck_assert_int_eq(msg->tasks[0].attempt, got[1].attempt + 1);
    ck_assert(msg->seq > last);
    s_result(&w, got[0].task, got[0].attempt);
    s_result(&w, msg->tasks[0].id, msg->tasks[0].attempt);
    proto_pipe_destroy(&msg);
    proto_reply_t *rep = s_results_done(&e, job, 2, (fake_t *[]){&w, NULL});
    ck_assert_int_eq(rep->ntasks, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(rep->tasks[i].status, PROTO_ST_DONE);
        ck_assert_int_eq(rep->tasks[i].attempts, rep->tasks[i].task == got[1].task ? 2 : 1);
    }
    proto_reply_destroy(&rep);
    s_fake_stop(&w);
    s_env_stop(&e);
}
END_TEST

/* A report connection that drops and comes back is a second pipe in the
   master's socket, and libzmq reads the two in turn: a heartbeat sent on
   the new one can be read before a result still waiting in the old one.
   Such a heartbeat, though made after the last "tasks" message, leaves
   out a task whose result comes next: the task is not taken back, and
   its result counts as attempt 1. Its job is held, so a task taken back
   would wait queued (not sent again) and its worker would hold nothing. */
START_TEST(a_result_read_after_one_heartbeat_that_left_its_task_out_still_counts)
{
    env_t e;
    master_config_t cfg = s_config(60000, 0, 0);
    s_env_start_config(&e, &cfg);
    fake_t w;
    s_fake_start(&w, &e, "w", 2);
    int64_t job = s_submit_noops(&e, 2);
    proto_task_ref_t got[2];
    int64_t last = s_take_numbered(&w, 2, got);
    proto_req_t *req = proto_req_new(PROTO_REQ_HOLD);
    req->job = job;
    proto_reply_t *rep = s_call(&e, e.client, req);
    proto_req_destroy(&req);
    ck_assert(rep->ok);
    proto_reply_destroy(&rep);
    /* got[0]'s result is "behind" this heartbeat; got[1]'s follows it on
       the same socket, so once got[1] is done the heartbeat was read. */
    s_heartbeat_seen(&w, &got[1], 1, last);
    s_result(&w, got[1].task, got[1].attempt);
    for (int k = 0; k < 200; k++) {
        rep = s_query(&e, PROTO_REQ_RESULTS, job);
        bool done = false;
        for (int i = 0; i < rep->ntasks; i++)
            done |= rep->tasks[i].task == got[1].task && rep->tasks[i].status == PROTO_ST_DONE;
        proto_reply_destroy(&rep);
        if (done)
            break;
        zmq_poll(NULL, 0, 20);
    }
    rep = s_query(&e, PROTO_REQ_WORKERS, 0);
    ck_assert_int_eq(rep->nworkers, 1);
    ck_assert_msg(rep->workers[0].running == 1,
                  "the worker holds %d tasks: one heartbeat that left got[0] out took it back",
                  rep->workers[0].running);
    proto_reply_destroy(&rep);
    s_result(&w, got[0].task, got[0].attempt);
    rep = NULL;
    for (int k = 0; k < 200; k++) {
        proto_reply_destroy(&rep);
        rep = s_query(&e, PROTO_REQ_RESULTS, job);
        if (rep->ntasks == 2 && rep->tasks[0].status == PROTO_ST_DONE
            && rep->tasks[1].status == PROTO_ST_DONE)
            break;
        zmq_poll(NULL, 0, 20);
    }
    ck_assert_int_eq(rep->ntasks, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(rep->tasks[i].status, PROTO_ST_DONE);
        ck_assert_int_eq(rep->tasks[i].attempts, 1);
    }
    proto_reply_destroy(&rep);
    s_fake_stop(&w);
    s_env_stop(&e);
}
END_TEST

/* A master with 3 tasks of prefetch and a crash limit of 1: a recalled
   task charged as a crash would fail at once. */
static void s_env_recall_http(env_t *e, const char *http_addr)
{
    master_config_t cfg = s_config(60000, 0, 3);
    cfg.crash_limit = 1;
    cfg.http_addr = http_addr;
    s_env_start_config(e, &cfg);
}

static void s_env_recall(env_t *e)
{
    s_env_recall_http(e, NULL);
}

/* h (1 thread + 3 prefetched) runs the first of 4 tasks; i joins idle:
   the master asks h for the most recently sent task it has not started
   (one: i has one thread), once; what h gives back goes to i as the next
   attempt, charged nothing; a "recalled" from i for h's task is refused. */
START_TEST(an_idle_worker_gets_the_unstarted_tasks_a_busy_one_gives_back)
{
    env_t e;
    s_env_recall(&e);
    fake_t h, i;
    s_fake_start_as(&h, &e, "h", 1, true, NULL);
    int64_t job = s_submit_noops(&e, 4);
    proto_task_t got[8];
    ck_assert_int_eq(s_take_tasks(&h, 4, got, 3000), 4);
    s_started(&h, got[0].id, got[0].attempt);
    /* Nothing to recall for: nobody idles. */
    proto_pipe_t *msg = s_wait_recall(&h, NULL, 300);
    ck_assert_ptr_null(msg);
    s_fake_start_as(&i, &e, "i", 1, false, NULL);
    msg = s_wait_recall(&h, &i, 3000);
    ck_assert_msg(msg != NULL, "no recall came for the idle worker");
    ck_assert_int_eq(msg->nrefs, 1);
    ck_assert_int_eq(msg->refs[0].task, got[3].id);   /* the last sent */
    ck_assert_int_eq(msg->refs[0].attempt, 1);
    proto_task_ref_t back = msg->refs[0];
    proto_pipe_destroy(&msg);
    /* One recall out at a time: no second while the first is unanswered. */
    msg = s_wait_recall(&h, &i, 400);
    ck_assert_ptr_null(msg);
    /* i is not its holder: its "recalled" for h's task changes nothing. */
    s_recalled(&i, &(proto_task_ref_t){.task = got[2].id, .attempt = 1}, 1);
    s_recalled(&h, &back, 1);
    proto_task_t on_i[4];
    ck_assert_int_eq(s_take_tasks(&i, 1, on_i, 3000), 1);
    ck_assert_int_eq(on_i[0].id, back.task);
    ck_assert_int_eq(on_i[0].attempt, 2);   /* a resend is the next attempt */
    s_result(&i, on_i[0].id, on_i[0].attempt);
    /* h still holds the rest, got[2] included: their results count. */
    for (int k = 0; k < 3; k++)
        s_result(&h, got[k].id, got[k].attempt);
    proto_reply_t *rep = s_results_done(&e, job, 4, (fake_t *[]){&i, &h, NULL});
    ck_assert_int_eq(rep->ntasks, 4);
    for (int t = 0; t < 4; t++) {
        ck_assert_int_eq(rep->tasks[t].status, PROTO_ST_DONE);
        bool recalled = rep->tasks[t].task == back.task;
        ck_assert_str_eq(rep->tasks[t].worker, recalled ? i.id : h.id);
        ck_assert_int_eq(rep->tasks[t].attempts, recalled ? 2 : 1);
    }
    proto_reply_destroy(&rep);
    rep = s_query(&e, PROTO_REQ_STATS, 0);
    ck_assert_int_eq(rep->stats.duplicates, 0);
    proto_reply_destroy(&rep);
    s_fake_stop(&i);
    s_fake_stop(&h);
    s_env_stop(&e);
}
END_TEST

/* A worker whose hello did not say recall (older than this) is never
   sent one, however long another idles. */
START_TEST(no_recall_goes_to_a_worker_that_did_not_offer_it)
{
    env_t e;
    s_env_recall(&e);
    fake_t h, i;
    s_fake_start_as(&h, &e, "h", 1, false, NULL);
    s_submit_noops(&e, 4);
    proto_task_t got[8];
    ck_assert_int_eq(s_take_tasks(&h, 4, got, 3000), 4);
    s_started(&h, got[0].id, got[0].attempt);
    s_fake_start_as(&i, &e, "i", 1, true, NULL);
    proto_pipe_t *msg = s_wait_recall(&h, &i, 1000);
    ck_assert_msg(msg == NULL, "a recall went to a worker that does not know the message");
    s_fake_stop(&i);
    s_fake_stop(&h);
    s_env_stop(&e);
}
END_TEST

/* Only what the idle worker could run is asked back: tasks that require
   a label it lacks stay; a worker with the label that joins gets them. */
START_TEST(only_tasks_the_idle_worker_can_take_are_recalled)
{
    env_t e;
    s_env_recall(&e);
    fake_t h, i, j;
    s_fake_start_as(&h, &e, "h", 1, true, "gpu");
    const char *specs[] = {"{\"fn\":\"noop\",\"require\":[\"gpu\"]}",
                           "{\"fn\":\"noop\",\"require\":[\"gpu\"]}",
                           "{\"fn\":\"noop\",\"require\":[\"gpu\"]}"};
    s_submit_specs(&e, specs, 3);
    proto_task_t got[8];
    ck_assert_int_eq(s_take_tasks(&h, 3, got, 3000), 3);
    s_started(&h, got[0].id, got[0].attempt);
    s_fake_start_as(&i, &e, "i", 2, true, NULL);
    proto_pipe_t *msg = s_wait_recall(&h, &i, 800);
    ck_assert_msg(msg == NULL, "tasks were recalled for a worker without their label");
    s_fake_start_as(&j, &e, "j", 2, true, "gpu");
    msg = s_wait_recall_beating(&h, &i, &j, 2000);
    ck_assert_msg(msg != NULL, "no recall for the worker with the label");
    /* j has 2 free threads, h 2 unstarted tasks: both, newest first. */
    ck_assert_int_eq(msg->nrefs, 2);
    ck_assert_int_eq(msg->refs[0].task, got[2].id);
    ck_assert_int_eq(msg->refs[1].task, got[1].id);
    proto_pipe_destroy(&msg);
    s_fake_stop(&j);
    s_fake_stop(&i);
    s_fake_stop(&h);
    s_env_stop(&e);
}
END_TEST

/* Runs (reports done) whatever tasks reach f within ms; recalls are
   left unanswered. Returns how many it ran. */
static int s_serve(fake_t *f, int ms)
{
    int ran = 0;
    proto_pipe_t *msg = s_next(f, ms, true);
    if (msg && msg->type == PROTO_PIPE_TASKS)
        for (int k = 0; k < msg->ntasks; k++, ran++)
            s_result(f, msg->tasks[k].id, msg->tasks[k].attempt);
    proto_pipe_destroy(&msg);
    return ran;
}

/* The job's status: done and failed counts (waits up to a few ms). */
static void s_done_failed(env_t *e, int64_t job, int64_t *done, int64_t *failed)
{
    proto_reply_t *rep = s_query(e, PROTO_REQ_STATUS, job);
    ck_assert(rep->ok && rep->njobs == 1);
    *done = rep->jobs[0].done;
    *failed = rep->jobs[0].failed;
    proto_reply_destroy(&rep);
}

/* A "recalled" from the holder itself counts only for tasks the master
   asked back and that have not started: one that names a started task,
   or one never asked for, changes nothing (else the task would run
   again elsewhere while its worker runs it). */
START_TEST(a_holders_recalled_for_tasks_never_asked_back_changes_nothing)
{
    env_t e;
    s_env_recall(&e);
    fake_t h;
    s_fake_start_as(&h, &e, "h", 1, true, NULL);
    int64_t job = s_submit_noops(&e, 4);
    proto_task_t got[8];
    ck_assert_int_eq(s_take_tasks(&h, 4, got, 3000), 4);
    s_started(&h, got[0].id, got[0].attempt);
    /* Nobody idles: nothing was asked back. */
    const proto_task_ref_t bogus[] = {{.task = got[0].id, .attempt = 1},
                                      {.task = got[1].id, .attempt = 1}};
    s_recalled(&h, bogus, 2);
    proto_pipe_t *msg = s_next(&h, 500, true);
    ck_assert_msg(msg == NULL, "%s came: a task not asked back was taken from its worker",
                  s_pipe_name(msg));
    for (int k = 0; k < 4; k++)
        s_result(&h, got[k].id, got[k].attempt);
    int64_t done = 0, failed = 0;
    for (int k = 0; k < 100 && done < 4; k++) {
        s_heartbeat(&h);
        zmq_poll(NULL, 0, 20);
        s_done_failed(&e, job, &done, &failed);
    }
    ck_assert_int_eq(done, 4);
    proto_reply_t *rep = s_query(&e, PROTO_REQ_STATS, 0);
    ck_assert_int_eq(rep->stats.duplicates, 0);
    proto_reply_destroy(&rep);
    s_fake_stop(&h);
    s_env_stop(&e);
}
END_TEST

/* One idle thread asks back one task, whichever workers hold extra ones:
   while the first recall is unanswered, a second holder is not asked too
   (what came back would be more than the idle worker can start, and the
   rest would wait queued again, each sent once more). */
START_TEST(an_idle_thread_is_not_recalled_for_twice)
{
    env_t e;
    s_env_recall(&e);
    fake_t h1, h2, i;
    s_fake_start_as(&h1, &e, "h1", 1, true, NULL);
    s_fake_start_as(&h2, &e, "h2", 1, true, NULL);
    s_submit_noops(&e, 8);
    proto_task_t got1[8], got2[8];
    ck_assert_int_eq(s_take_tasks(&h1, 4, got1, 3000), 4);
    ck_assert_int_eq(s_take_tasks(&h2, 4, got2, 3000), 4);
    s_started(&h1, got1[0].id, got1[0].attempt);
    s_started(&h2, got2[0].id, got2[0].attempt);
    s_fake_start_as(&i, &e, "i", 1, false, NULL);
    int asked = 0, recalls = 0;
    fake_t *other = NULL;   /* the holder not asked */
    for (int k = 0; k < 15; k++) {
        s_heartbeat(&h2);
        proto_pipe_t *msg = s_wait_recall(&h1, &i, 50);
        if (msg) {
            recalls++;
            asked += msg->nrefs;
            other = &h2;
            proto_pipe_destroy(&msg);
        }
        s_heartbeat(&h1);
        msg = s_wait_recall(&h2, &i, 50);
        if (msg) {
            recalls++;
            asked += msg->nrefs;
            other = &h1;
            proto_pipe_destroy(&msg);
        }
    }
    ck_assert_msg(recalls == 1 && asked == 1,
                  "%d recalls asked %d tasks back for one idle thread", recalls, asked);
    /* The holder asked goes silent (lost: its tasks fail, crash limit 1):
       its unanswered recall no longer holds the idle thread, which the
       other holder is asked for now. */
    proto_pipe_t *msg = s_wait_recall(other, &i, 3000);
    ck_assert_msg(msg != NULL, "the idle thread stayed counted for a holder that was lost");
    ck_assert_int_eq(msg->nrefs, 1);
    proto_pipe_destroy(&msg);
    s_fake_stop(&i);
    s_fake_stop(&h2);
    s_fake_stop(&h1);
    s_env_stop(&e);
}
END_TEST

/* h (1 thread, recall) takes 4 tasks into got and starts the first; i
   (1 thread) joins idle, and h is asked back one task: *asked. Returns
   the job. */
static int64_t s_recall_one(env_t *e, fake_t *h, fake_t *i, proto_task_t got[4],
                            proto_task_ref_t *asked)
{
    s_fake_start_as(h, e, "h", 1, true, NULL);
    int64_t job = s_submit_noops(e, 4);
    ck_assert_int_eq(s_take_tasks(h, 4, got, 3000), 4);
    s_started(h, got[0].id, got[0].attempt);
    s_fake_start_as(i, e, "i", 1, false, NULL);
    proto_pipe_t *msg = s_wait_recall(h, i, 3000);
    ck_assert_msg(msg != NULL, "no recall came for the idle worker");
    ck_assert_int_eq(msg->nrefs, 1);
    *asked = msg->refs[0];
    proto_pipe_destroy(&msg);
    return job;
}

/* The holder registers again (its pipe was lost) after it gave a task
   back and before its "recalled" arrives: the hello does not list that
   task, which did not run there and was not lost by a bad link. It is
   not charged a crash (with --crash-limit 1 it would fail at once): it
   runs once, elsewhere or there. */
START_TEST(a_task_given_back_before_its_worker_registers_again_is_not_charged_a_crash)
{
    env_t e;
    s_env_recall(&e);
    fake_t h, i;
    proto_task_t got[8];
    proto_task_ref_t back;
    int64_t job = s_recall_one(&e, &h, &i, got, &back);
    proto_task_ref_t running[3];
    for (int k = 0; k < 3; k++)
        running[k] = (proto_task_ref_t){.task = got[k].id, .attempt = got[k].attempt};
    s_fake_hello_running(&h, "h", running, 3);
    s_recalled(&h, &back, 1);
    for (int k = 0; k < 3; k++)
        s_result(&h, got[k].id, got[k].attempt);
    int64_t done = 0, failed = 0;
    for (int k = 0; k < 100 && done + failed < 4; k++) {
        s_serve(&i, 20);
        s_serve(&h, 20);
        s_done_failed(&e, job, &done, &failed);
    }
    ck_assert_msg(done == 4 && failed == 0, "done %lld failed %lld (want 4 done)",
                  (long long) done, (long long) failed);
    s_fake_stop(&i);
    s_fake_stop(&h);
    s_env_stop(&e);
}
END_TEST

/* The same, except that the task asked back was reported started (the
   worker's pool thread won the race, and it was not given back): not
   listed by the hello, it is lost in the old pipe like any other started
   task the hello leaves out, charged a crash (--crash-limit 1: failed),
   not taken for one given back. */
START_TEST(a_started_task_asked_back_that_the_hello_leaves_out_is_charged_a_crash)
{
    env_t e;
    s_env_recall(&e);
    fake_t h, i;
    proto_task_t got[8];
    proto_task_ref_t asked;
    int64_t job = s_recall_one(&e, &h, &i, got, &asked);
    s_started(&h, asked.task, asked.attempt);
    /* The start is read (reports and hellos come on different sockets). */
    bool running = false;
    for (int k = 0; k < 100 && !running; k++) {
        proto_reply_t *rep = s_query(&e, PROTO_REQ_RESULTS, job);
        for (int t = 0; t < rep->ntasks; t++)
            running = running
                      || (rep->tasks[t].task == asked.task
                          && rep->tasks[t].status == PROTO_ST_RUNNING);
        proto_reply_destroy(&rep);
        if (!running)
            zmq_poll(NULL, 0, 20);
    }
    ck_assert_msg(running, "the asked-back task was not shown running");
    proto_task_ref_t listed[3];
    int nlisted = 0;
    for (int k = 0; k < 4; k++)
        if (got[k].id != asked.task)
            listed[nlisted++] = (proto_task_ref_t){.task = got[k].id, .attempt = got[k].attempt};
    s_fake_hello_running(&h, "h", listed, nlisted);
    for (int k = 0; k < nlisted; k++)
        s_result(&h, listed[k].task, listed[k].attempt);
    int64_t done = 0, failed = 0;
    for (int k = 0; k < 100 && done + failed < 4; k++) {
        s_serve(&i, 20);
        s_serve(&h, 20);
        s_done_failed(&e, job, &done, &failed);
    }
    ck_assert_msg(done == 3 && failed == 1,
                  "done %lld failed %lld (want 3 done, the started one failed at the crash "
                  "limit)",
                  (long long) done, (long long) failed);
    s_fake_stop(&i);
    s_fake_stop(&h);
    s_env_stop(&e);
}
END_TEST

/* Which of the n fakes a task message comes to within ms (all beat
   meanwhile); its tasks (at most 4) into got, how many into *ngot. -1:
   none came. A recall that comes to fake k meanwhile is kept in
   recalls[k] (the first one). */
static int s_who_gets(fake_t *const *f, int n, proto_task_t *got, int *ngot, int ms,
                      proto_pipe_t **recalls)
{
    for (int waited = 0; waited < ms; waited += 50 * n)
        for (int k = 0; k < n; k++) {
            proto_pipe_t *msg = s_next(f[k], 20, true);
            if (msg && msg->type == PROTO_PIPE_TASKS) {
                *ngot = 0;
                for (int i = 0; i < msg->ntasks && i < 4; i++)
                    got[(*ngot)++] = (proto_task_t){.id = msg->tasks[i].id,
                                                    .attempt = msg->tasks[i].attempt};
                proto_pipe_destroy(&msg);
                return k;
            }
            if (msg && msg->type == PROTO_PIPE_RECALL && !recalls[k]) {
                recalls[k] = msg;
                msg = NULL;
            }
            proto_pipe_destroy(&msg);
        }
    return -1;
}

/* Waits up to ms for a ping on f's pipe (the master pings a pipe once
   it knows it connected, and sends it nothing before): true if one came. */
static bool s_pinged(fake_t *f, int ms)
{
    for (int waited = 0; waited < ms; waited += 50) {
        s_heartbeat(f);
        zmq_pollitem_t it = {f->pipe, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 50) != 1)
            continue;
        size_t len;
        char *buf = zmqx_recv(f->pipe, &len, 0);
        proto_err_t err;
        proto_pipe_t *msg = proto_pipe_decode(buf, len, &err);
        free(buf);
        bool ping = msg && msg->type == PROTO_PIPE_PING;
        proto_pipe_destroy(&msg);
        if (ping)
            return true;
    }
    return false;
}

/* A task given back for an idle worker goes to a worker with a free
   thread, not into the queue of another busy one that has prefetch room
   (it would wait there, and be recalled again, each time sent once more).
   Which worker's turn comes first varies: several rounds, each with the
   holder, the busy one and the idle one found from who got what. */
START_TEST(a_task_given_back_goes_to_the_idle_worker_not_another_busy_one)
{
    env_t e;
    s_env_recall(&e);
    fake_t w[3];
    s_fake_start_as(&w[0], &e, "w0", 1, true, NULL);
    s_fake_start_as(&w[1], &e, "w1", 1, true, NULL);
    s_fake_start_as(&w[2], &e, "w2", 1, true, NULL);
    fake_t *all[3] = {&w[0], &w[1], &w[2]};
    /* Every pipe known connected: an idle worker whose pipe is not is
       not sent tasks yet. */
    for (int k = 0; k < 3; k++)
        ck_assert_msg(s_pinged(all[k], 3000), "w%d: no ping", k);
    for (int round = 0; round < 6; round++) {
        /* 4 tasks: one worker's thread and prefetch (3) take them all. */
        int64_t job = s_submit_noops(&e, 4);
        proto_task_t held[4], one[4], again[4];
        int nheld = 0, none = 0, nagain = 0;
        proto_pipe_t *recalls[3] = {NULL, NULL, NULL};
        int a = s_who_gets(all, 3, held, &nheld, 3000, recalls);
        ck_assert_int_ge(a, 0);
        if (nheld < 4)
            nheld += s_take_tasks(all[a], 4 - nheld, held + nheld, 3000);
        ck_assert_int_eq(nheld, 4);
        /* 1 more: to one of the other two (b), busy with room to spare. */
        int64_t job_b = s_submit_noops(&e, 1);
        int b = s_who_gets(all, 3, one, &none, 3000, recalls);
        ck_assert_int_ge(b, 0);
        ck_assert_int_ne(a, b);
        int c = 3 - a - b;
        s_started(all[a], held[0].id, held[0].attempt);
        s_started(all[b], one[0].id, one[0].attempt);
        /* a holds extra tasks while a worker idles (b did too until it got
           its one): a is asked for its newest, once. */
        proto_pipe_t *msg = recalls[a] ? recalls[a] : s_wait_recall(all[a], all[c], 3000);
        recalls[a] = NULL;
        ck_assert_msg(!recalls[b] && !recalls[c], "round %d: a recall to a worker that holds "
                      "nothing extra (a=w%d b=w%d c=w%d; to b: %lld, to c: %lld)", round, a, b, c,
                      recalls[b] ? (long long) recalls[b]->refs[0].task : 0LL,
                      recalls[c] ? (long long) recalls[c]->refs[0].task : 0LL);
        ck_assert_msg(msg != NULL, "round %d: no recall for the idle worker", round);
        ck_assert_int_eq(msg->nrefs, 1);
        proto_task_ref_t back = msg->refs[0];
        proto_pipe_destroy(&msg);
        s_heartbeat(all[b]);
        s_recalled(all[a], &back, 1);
        int to = s_who_gets(all, 3, again, &nagain, 3000, recalls);
        ck_assert_msg(to == c,
                      "round %d: the task given back (%lld) for idle w%d went to w%d (busy; "
                      "it got task %lld attempt %d)",
                      round, (long long) back.task, c, to, to >= 0 ? (long long) again[0].id : 0LL,
                      to >= 0 ? again[0].attempt : 0);
        ck_assert_int_eq(nagain, 1);
        ck_assert_int_eq(again[0].id, back.task);
        /* Everything ends, a's tasks first (while it holds extra ones and
           another idles, it is asked again): the next round starts with
           three idle workers and no recall out. */
        for (int k = 0; k < 4; k++)
            if (held[k].id != back.task)
                s_result(all[a], held[k].id, held[k].attempt);
        int64_t done = 0, failed = 0;
        for (int k = 0; k < 100 && done < 3; k++) {
            for (int f = 0; f < 3; f++)
                s_heartbeat(all[f]);
            zmq_poll(NULL, 0, 20);
            s_done_failed(&e, job, &done, &failed);
        }
        ck_assert_int_eq(done, 3);
        s_result(all[c], again[0].id, again[0].attempt);
        s_result(all[b], one[0].id, one[0].attempt);
        /* Both jobs done as the master sees it before the next round: a
           result still unread there would leave its worker less room, and
           the next 4 tasks split between two workers (on a loaded host). */
        int64_t done_b = 0;
        for (int k = 0; k < 250 && (done < 4 || done_b < 1); k++) {
            for (int f = 0; f < 3; f++)
                s_heartbeat(all[f]);
            zmq_poll(NULL, 0, 20);
            s_done_failed(&e, job, &done, &failed);
            s_done_failed(&e, job_b, &done_b, &failed);
        }
        ck_assert_msg(done == 4 && done_b == 1, "round %d: done %lld of 4 and %lld of 1", round,
                      (long long) done, (long long) done_b);
        for (int k = 0; k < 3; k++)
            ck_assert_msg(!recalls[k], "round %d: a recall to w%d", round, k);
    }
    for (int k = 0; k < 3; k++)
        s_fake_stop(&w[k]);
    s_env_stop(&e);
}
END_TEST

/* A retry keeps away from the worker it failed on while another can take
   it (s_better_elsewhere), and a recall keeps that rule: w fails R, whose
   retry goes to x's queue behind x's running task; w, idle, is not given
   R back through a recall (it would run where it failed, with x there to
   take it), while y, idle too, is: R, given back, goes to y. */
START_TEST(a_retry_is_not_recalled_for_the_worker_it_failed_on)
{
    env_t e;
    s_env_recall(&e);
    fake_t w, x, y;
    s_fake_start_as(&w, &e, "w", 1, true, NULL);
    const char *retried[] = {"{\"fn\":\"noop\",\"retries\":2}"};
    s_submit_specs(&e, retried, 1);
    proto_task_t r[1], a[1];
    ck_assert_int_eq(s_take_tasks(&w, 1, r, 3000), 1);
    s_fake_start_as(&x, &e, "x", 1, true, "x");
    const char *on_x[] = {"{\"fn\":\"noop\",\"require\":[\"x\"]}"};
    s_submit_specs(&e, on_x, 1);
    ck_assert_int_eq(s_take_tasks(&x, 1, a, 3000), 1);
    s_started(&x, a[0].id, a[0].attempt);
    s_result_failed(&w, r[0].id, r[0].attempt);
    /* The retry: w has a free thread, but it failed there and x has room. */
    proto_task_t again[1];
    for (int k = 0; k < 60 && s_take_tasks(&x, 1, again, 50) == 0; k++)
        s_heartbeat(&w);
    ck_assert_int_eq(again[0].id, r[0].id);
    ck_assert_int_eq(again[0].attempt, 2);
    /* The master pings from its timers, in the turn after that turn's
       dispatch and recalls: two pings after the retry reached x, every
       recall w could have been given has been weighed (no time window). */
    proto_pipe_t *msg = NULL;
    for (int k = 0; k < 2 && !msg; k++) {
        s_heartbeat(&w);
        msg = s_pings(&x, 1, true);
    }
    ck_assert_msg(msg == NULL, "the retry was asked back for the worker it failed on (%s came)",
                  msg ? s_pipe_name(msg) : "");
    s_fake_start_as(&y, &e, "y", 1, true, NULL);
    msg = s_wait_recall_beating(&x, &w, &y, 3000);
    ck_assert_msg(msg != NULL, "no recall for the idle worker it did not fail on");
    ck_assert_int_eq(msg->nrefs, 1);
    ck_assert_int_eq(msg->refs[0].task, r[0].id);
    proto_task_ref_t back = msg->refs[0];
    proto_pipe_destroy(&msg);
    s_recalled(&x, &back, 1);
    fake_t *both[2] = {&w, &y};
    proto_task_t got[4];
    int ngot = 0;
    proto_pipe_t *recalls[2] = {NULL, NULL};
    int to = s_who_gets(both, 2, got, &ngot, 3000, recalls);
    ck_assert_msg(to == 1, "the retry given back went to %s", to == 0 ? "w, where it failed" : "nobody");
    ck_assert_int_eq(got[0].id, r[0].id);
    ck_assert_int_eq(got[0].attempt, 3);
    s_fake_stop(&y);
    s_fake_stop(&x);
    s_fake_stop(&w);
    s_env_stop(&e);
}
END_TEST

/* The dashboard's record of a task given back and sent again is of the
   attempt that runs: its "started" is that attempt's send (the first
   send's time would say it waited on a worker it never ran on). */
START_TEST(the_dashboard_shows_the_send_of_the_attempt_a_given_back_task_runs)
{
    env_t e;
    s_env_recall_http(&e, "127.0.0.1:0");
    fake_t h, i;
    proto_task_t got[8];
    proto_task_ref_t back;
    s_recall_one(&e, &h, &i, got, &back);
    double before = clock_wall();
    s_recalled(&h, &back, 1);
    proto_task_t on_i[1];
    ck_assert_int_eq(s_take_tasks(&i, 1, on_i, 3000), 1);
    ck_assert_int_eq(on_i[0].id, back.task);
    char path[64];
    snprintf(path, sizeof path, "/api/task?id=%lld", (long long) back.task);
    char *page = s_http_get(master_http_port(e.master), path);
    const char *body = strstr(page, "\r\n\r\n");
    ck_assert_ptr_nonnull(body);
    cJSON *o = cJSON_Parse(body + 4);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(cJSON_GetObjectItem(o, "attempt")->valuedouble, 2);
    ck_assert_str_eq(cJSON_GetObjectItem(o, "worker")->valuestring, i.id);
    double started = cJSON_GetObjectItem(o, "started")->valuedouble;
    ck_assert_msg(started >= before, "started %.6f: before the give-back (%.6f)", started, before);
    cJSON_Delete(o);
    free(page);
    s_fake_stop(&i);
    s_fake_stop(&h);
    s_env_stop(&e);
}
END_TEST

/* A task given back (attempt 1, never written: younger than
   ASSIGN_WRITE_MS) goes out again as attempt 2 only once its requeue is
   written: sent before, a master killed before that commit would find
   it queued at attempt 0, refuse the claim of attempt 2 by the worker
   that has it (a restart takes only the stored attempt + 1), abort it
   there and send attempt 1 again. Commits fail (a full disk) from the
   give-back on: it waits; once they succeed it goes, and a master
   restarted from the database as a kill -9 then leaves it (a copy) lets
   its worker claim it. */
START_TEST(a_task_given_back_goes_out_again_only_once_its_requeue_is_written)
{
    char dir[] = "/tmp/ztask-test-master-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char db[128];
    snprintf(db, sizeof db, "%s/state.db", dir);
    s_fault_vfs_install();
    env_t e;
    master_config_t cfg = s_config(60000, 0, 3);
    cfg.crash_limit = 1;
    cfg.db_path = db;
    cfg.http_addr = "127.0.0.1:0";
    s_env_start_config(&e, &cfg);
    fake_t h, i;
    proto_task_t got[8];
    proto_task_ref_t back;
    int64_t job = s_recall_one(&e, &h, &i, got, &back);
    ck_assert_int_eq(back.attempt, 1);
    proto_reply_t *rep = s_query(&e, PROTO_REQ_STATS, 0);   /* answered after a commit */
    proto_reply_destroy(&rep);
    s_wal_fault = SQLITE_FULL;
    s_recalled(&h, &back, 1);
    /* Read (the dispatch of the same turn came before the answer). */
    for (int k = 0; k < 250 && s_metric(&e, "ztask_tasks_recalled_total ") < 1; k++) {
        s_heartbeat(&h);
        s_heartbeat(&i);
        zmq_poll(NULL, 0, 20);
    }
    ck_assert_int_eq(s_metric(&e, "ztask_tasks_recalled_total "), 1);
    /* The turn that read the give-back dispatched before its timers
       pinged: what is in i's pipe now (until 50 ms of silence), then two
       pings sent after it, and no task among them (no time window). */
    proto_pipe_t *early = s_next(&i, 50, true);
    if (!early)
        early = s_pings(&i, 2, true);
    ck_assert_msg(early == NULL, "%s went to i before the requeue was written",
                  early ? s_pipe_name(early) : "");
    proto_task_t on_i[1];
    s_wal_fault = 0;
    ck_assert_int_eq(s_take_tasks(&i, 1, on_i, 5000), 1);
    ck_assert_int_eq(on_i[0].id, back.task);
    ck_assert_int_eq(on_i[0].attempt, 2);
    /* A kill -9 now: nothing more reaches the disk (attempt 2's send is
       younger than ASSIGN_WRITE_MS: not written; the stop's last commit
       fails), and a master starts on what is there. */
    s_wal_fault = SQLITE_FULL;
    s_fake_stop(&i);
    s_fake_stop(&h);
    s_env_stop(&e);
    s_wal_fault = 0;
    s_fault_vfs_remove();
    cfg.http_addr = NULL;
    s_env_start_config(&e, &cfg);
    fake_t again = {.e = &e, .threads = 1};
    again.api = zmqx_socket(e.ctx, ZMQ_DEALER, 0, -1);
    ck_assert_int_eq(zmq_connect(again.api, e.api), 0);
    proto_task_ref_t running = {.task = back.task, .attempt = 2};
    s_fake_hello_running(&again, "i", &running, 1);
    rep = s_query(&e, PROTO_REQ_RESULTS, job);
    bool claimed = false;
    for (int t = 0; t < rep->ntasks; t++)
        if (rep->tasks[t].task == back.task)
            claimed = rep->tasks[t].worker && strcmp(rep->tasks[t].worker, again.id) == 0
                      && rep->tasks[t].attempts == 2;
    proto_reply_destroy(&rep);
    ck_assert_msg(claimed, "the restarted master did not let i claim attempt 2");
    s_fake_stop(&again);
    s_env_stop(&e);
    s_rm_db(dir, "state.db");
    rmdir(dir);
}
END_TEST

/* The queue-wait histogram's observations, all kinds together. */
static long s_queue_waits(env_t *e)
{
    char *m = s_http_get(master_http_port(e->master), "/metrics");
    long n = 0;
    for (const char *at = m; (at = strstr(at, "ztask_task_queue_wait_seconds_count{")); at++)
        n += strtol(strchr(at, '}') + 1, NULL, 10);
    free(m);
    return n;
}

/* A task given back and sent again waited in the queue once for its one
   run: the histogram counts one wait per execution (the send a recall
   undoes is not one), so its count is the number of tasks here. The
   give-back comes as h's "recalled", or (hello_first) as h's new hello
   that leaves the task out before that report comes
   (recalled_in_old_pipe). */
static void s_given_back_is_counted_once(bool hello_first)
{
    env_t e;
    s_env_recall_http(&e, "127.0.0.1:0");
    fake_t h, i;
    proto_task_t got[8];
    proto_task_ref_t back;
    s_recall_one(&e, &h, &i, got, &back);
    ck_assert_int_eq(s_queue_waits(&e), 4);
    if (hello_first) {
        proto_task_ref_t running[3];
        int nrunning = 0;
        for (int k = 0; k < 4; k++)
            if (got[k].id != back.task)
                running[nrunning++] = (proto_task_ref_t){.task = got[k].id,
                                                         .attempt = got[k].attempt};
        s_fake_hello_running(&h, "h", running, nrunning);
    } else {
        s_recalled(&h, &back, 1);
    }
    /* Sent again to i, or (hello_first) possibly to h again: its new
       hello gave it a thread's credit back, and a given-back task has no
       preference for the idle worker. Either way one wait, not two. */
    proto_task_t again[1];
    int n = 0;
    for (int k = 0; k < 100 && !n; k++) {
        n = s_take_tasks(&i, 1, again, 50);
        if (!n && hello_first)
            n = s_take_tasks(&h, 1, again, 50);
    }
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(again[0].id, back.task);
    ck_assert_int_eq(again[0].attempt, back.attempt + 1);
    ck_assert_int_eq(s_queue_waits(&e), 4);
    s_fake_stop(&i);
    s_fake_stop(&h);
    s_env_stop(&e);
}

START_TEST(a_task_given_back_is_counted_once_in_the_queue_wait)
{
    s_given_back_is_counted_once(false);
}
END_TEST

START_TEST(a_task_given_back_before_its_worker_registers_again_is_counted_once_in_the_queue_wait)
{
    s_given_back_is_counted_once(true);
}
END_TEST

/* A task whose lease ran out before it started is aborted and sent
   again: that send runs it, and the first never did, so one wait. */
START_TEST(a_task_whose_lease_ran_out_is_counted_once_in_the_queue_wait)
{
    env_t e;
    master_config_t cfg = s_config(300, 0, 0);
    cfg.http_addr = "127.0.0.1:0";
    s_env_start_config(&e, &cfg);
    fake_t f;
    s_fake_start(&f, &e, "w", 1);
    s_submit_noops(&e, 1);
    proto_task_t got[2];
    ck_assert_int_eq(s_take_tasks(&f, 1, got, 3000), 1);
    ck_assert_int_eq(s_queue_waits(&e), 1);
    /* Never started: the abort of attempt 1 comes, then attempt 2. */
    ck_assert_int_eq(s_take_tasks(&f, 1, got + 1, 3000), 1);
    ck_assert_int_eq(got[1].id, got[0].id);
    ck_assert_int_eq(got[1].attempt, 2);
    ck_assert_int_eq(s_queue_waits(&e), 1);
    s_fake_stop(&f);
    s_env_stop(&e);
}
END_TEST

/* ---- attempt numbers ---- */

/* A master on a database in a new directory (dir, at least 32 bytes)
   whose one task (a noop, the job returned) was sent `attempt` times
   before the restart this env is: the row is written as a master would
   have left it, queued at that attempt, with `retries` left. backoff_ms:
   the restarted master's --retry-backoff-ms. */
static int64_t s_env_start_at_attempt(env_t *e, char *dir, int64_t attempt, int retries,
                                      int backoff_ms)
{
    snprintf(dir, 32, "/tmp/ztask-test-master-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char db[128];
    snprintf(db, sizeof db, "%s/state.db", dir);
    master_config_t cfg = s_config(60000, 0, 0);
    cfg.db_path = db;
    /* No grace, so no rejoin window (tasks.c): the fake worker, which
       sends no heartbeat, gets the task before it is found silent. */
    cfg.recovery_grace_ms = 0;
    s_env_start_config(e, &cfg);
    int64_t job = s_submit_noops(e, 1);
    s_env_stop(e);
    sqlite3 *sql;
    ck_assert_int_eq(sqlite3_open(db, &sql), SQLITE_OK);
    char *text = sqlite3_mprintf("UPDATE tasks SET attempt = %lld, retries = %d, retry_base = %lld",
                                 (long long) attempt, retries, (long long) attempt);
    ck_assert_int_eq(sqlite3_exec(sql, text, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_free(text);
    ck_assert_int_eq(sqlite3_changes(sql), 1);
    sqlite3_close(sql);
    cfg.retry_backoff_ms = backoff_ms;
    s_env_start_config(e, &cfg);
    return job;
}

static void s_env_stop_at_attempt(env_t *e, const char *dir)
{
    s_env_stop(e);
    s_rm_db(dir, "state.db");
    rmdir(dir);
}

/* Waits for the job's one task to end; its row as the results query
   shows it (the caller destroys rep). */
static const proto_task_info_t *s_one_ended(env_t *e, int64_t job, proto_reply_t **rep)
{
    for (int k = 0; k < 200; k++) {
        *rep = s_query(e, PROTO_REQ_RESULTS, job);
        ck_assert_int_eq((*rep)->ntasks, 1);
        proto_state_t st = (*rep)->tasks[0].status;
        if (st == PROTO_ST_DONE || st == PROTO_ST_FAILED)
            return &(*rep)->tasks[0];
        proto_reply_destroy(rep);
        zmq_poll(NULL, 0, 20);
    }
    ck_abort_msg("the task did not end");
    return NULL;
}

/* Recalls send a task again with no retry charged, so its attempt number
   has no bound but the protocol's: past 65,535 it goes on counting (a
   16-bit number wrapped to 0 here, which is no attempt, and the stale
   result checks compare these numbers), and the result of the attempt
   before is a duplicate. */
START_TEST(a_task_sent_65535_times_goes_out_as_attempt_65536)
{
    env_t e;
    char dir[32];
    int64_t job = s_env_start_at_attempt(&e, dir, 65535, 0, 10);
    fake_t f;
    s_fake_start(&f, &e, "w", 1);
    proto_task_t got[1];
    ck_assert_int_eq(s_take_tasks(&f, 1, got, 3000), 1);
    ck_assert_int_eq(got[0].attempt, 65536);
    s_result(&f, got[0].id, 65535);
    s_result(&f, got[0].id, got[0].attempt);
    proto_reply_t *rep;
    const proto_task_info_t *t = s_one_ended(&e, job, &rep);
    ck_assert_int_eq(t->status, PROTO_ST_DONE);
    ck_assert_int_eq(t->attempts, 65536);
    proto_reply_destroy(&rep);
    rep = s_query(&e, PROTO_REQ_STATS, 0);
    ck_assert_int_eq(rep->stats.duplicates, 1);
    proto_reply_destroy(&rep);
    s_fake_stop(&f);
    s_env_stop_at_attempt(&e, dir);
}
END_TEST

/* The last attempt number the protocol carries (PROTO_MAX_ATTEMPT) is
   never passed: a task sent that many times fails, saying why, instead
   of going out as a number a worker refuses (or one already used). */
START_TEST(a_task_at_the_last_attempt_number_fails_instead_of_going_out_again)
{
    env_t e;
    char dir[32];
    int64_t job = s_env_start_at_attempt(&e, dir, INT32_MAX, 0, 10);
    fake_t f;
    s_fake_start(&f, &e, "w", 1);
    proto_reply_t *rep;
    const proto_task_info_t *t = s_one_ended(&e, job, &rep);
    ck_assert_int_eq(t->status, PROTO_ST_FAILED);
    ck_assert_ptr_nonnull(t->result);
    ck_assert_msg(t->result->error && strstr(t->result->error, "attempt"), "error: %s",
                  t->result->error ? t->result->error : "(none)");
    proto_reply_destroy(&rep);
    proto_pipe_t *msg = s_next(&f, 300, true);
    ck_assert_msg(msg == NULL, "%s came to the worker", s_pipe_name(msg));
    s_fake_stop(&f);
    s_env_stop_at_attempt(&e, dir);
}
END_TEST

/* A worker f joins e (started by s_env_start_at_attempt at INT32_MAX - 1)
   and takes its one task, sent as the last attempt number: got[0]. */
static void s_take_the_last_attempt(env_t *e, fake_t *f, proto_task_t got[1])
{
    s_fake_start(f, e, "w", 1);
    ck_assert_int_eq(s_take_tasks(f, 1, got, 3000), 1);
    ck_assert_int_eq(got[0].attempt, INT32_MAX);
}

/* A task that failed at the last attempt number has no next one to run
   as: it ends with its own failure (its error, its output), not a retry
   that could only fail at dispatch, saying the attempts ran out, in
   place of what went wrong. */
START_TEST(a_task_that_fails_at_the_last_attempt_number_ends_with_its_own_failure)
{
    env_t e;
    char dir[32];
    int64_t job = s_env_start_at_attempt(&e, dir, INT32_MAX - 1, 1, 10);
    fake_t f;
    proto_task_t got[1];
    s_take_the_last_attempt(&e, &f, got);
    s_result_failed(&f, got[0].id, got[0].attempt);
    proto_reply_t *rep;
    const proto_task_info_t *t = s_one_ended(&e, job, &rep);
    ck_assert_int_eq(t->status, PROTO_ST_FAILED);
    ck_assert_int_eq(t->attempts, INT32_MAX);
    ck_assert_ptr_nonnull(t->result);
    ck_assert_msg(t->result->error && strcmp(t->result->error, "failed on purpose") == 0,
                  "error: %s", t->result->error ? t->result->error : "(none)");
    proto_reply_destroy(&rep);
    s_fake_stop(&f);
    s_env_stop_at_attempt(&e, dir);
}
END_TEST

/* Why a task at the last attempt number waits out a backoff (its worker
   died with it) says what comes next: it fails when the backoff ends,
   there being no attempt after it (not "attempt -2147483648": the next
   number, computed, overflowed). */
START_TEST(why_a_task_at_the_last_attempt_number_waits_names_no_next_attempt)
{
    env_t e;
    char dir[32];
    int64_t job = s_env_start_at_attempt(&e, dir, INT32_MAX - 1, 0, 60000);
    fake_t f;
    proto_task_t got[1];
    s_take_the_last_attempt(&e, &f, got);
    s_fake_stop(&f);   /* silent: declared dead, the task charged a crash */
    proto_reply_t *rep = NULL;
    for (int k = 0; k < 250; k++) {
        rep = s_query(&e, PROTO_REQ_WAITING, job);
        if (rep->ntasks == 1 && rep->tasks[0].wait == PROTO_WAIT_RETRY)
            break;
        proto_reply_destroy(&rep);
        zmq_poll(NULL, 0, 20);
    }
    ck_assert_msg(rep != NULL, "the task was not taken back from its dead worker");
    const char *why = rep->tasks[0].reason;
    ck_assert_msg(why && !strstr(why, "attempt -") && strstr(why, "2147483647"), "why: %s",
                  why ? why : "(none)");
    proto_reply_destroy(&rep);
    s_env_stop_at_attempt(&e, dir);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "master",
                                 .tcase = "master",
                                 .timeout_s = 60,
                                 .teardown = s_wall_clock_reset });
}
