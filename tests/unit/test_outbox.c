/*  Unit tests for worker/outbox: what is held back, and when it goes.
    The outbox's PUSH talks to a PULL of ours over inproc; the clock is
    the test's (outbox_flush takes now), so nothing here waits on time. */
#include "../../worker/outbox.h"

#include "../../common/util.h"
#include "../../common/zmqx.h"
#include "../../proto/proto.h"

#include "../ztest.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

typedef struct {
    void *ctx;
    void *pull;
    outbox_t *outbox;
} env_t;

static void s_start(env_t *e)
{
    e->ctx = zmq_ctx_new();
    e->pull = zmq_socket(e->ctx, ZMQ_PULL);
    ck_assert_int_eq(zmq_bind(e->pull, "inproc://reports"), 0);
    void *push = zmq_socket(e->ctx, ZMQ_PUSH);
    ck_assert_int_eq(zmq_connect(push, "inproc://reports"), 0);
    e->outbox = outbox_new();
    outbox_set_worker(e->outbox, "w1");
    outbox_attach(e->outbox, &push);
    ck_assert_ptr_null(push);
}

static void s_stop(env_t *e)
{
    outbox_close(e->outbox, 0);
    outbox_destroy(&e->outbox);
    zmq_close(e->pull);
    zmq_ctx_term(e->ctx);
}

/* The next report sent, decoded; NULL when none is waiting (inproc
   delivers at once: a sent report is there when the send returns). */
static proto_report_t *s_next(env_t *e)
{
    size_t len;
    char *buf = zmqx_recv(e->pull, &len, ZMQ_DONTWAIT);
    if (!buf)
        return NULL;
    proto_err_t err;
    proto_report_t *rep = proto_report_decode(buf, len, &err);
    free(buf);
    ck_assert_msg(rep != NULL, "bad report: %s", err.message);
    return rep;
}

static char *s_result(int64_t task)
{
    return xasprintf("{\"task\":%lld,\"attempt\":1,\"status\":\"done\",\"started\":1,\"finished\":2}",
                     (long long) task);
}

/* A result whose stdout is n bytes of 'x' (plus the task's digits). */
static char *s_big_result(int64_t task, size_t n)
{
    char *out = xmalloc(n + 1);
    memset(out, 'x', n);
    out[n] = '\0';
    char *json = xasprintf("{\"task\":%lld,\"attempt\":1,\"status\":\"done\",\"stdout\":\"%s\","
                           "\"started\":1,\"finished\":2}",
                           (long long) task, out);
    free(out);
    return json;
}

START_TEST(big_results_go_alone_and_wait_whole_in_order_while_the_master_is_away)
{
    /* The report socket takes two messages, then refuses (EAGAIN): the
       zero-copy send (zmqx_send_take) fails and the report stays the
       outbox's, in its backlog, sent again later. Under ASan this is the
       check that a refused or accepted buffer is freed exactly once. */
    env_t e;
    e.ctx = zmq_ctx_new();
    e.pull = zmq_socket(e.ctx, ZMQ_PULL);
    int one = 1;
    ck_assert_int_eq(zmq_setsockopt(e.pull, ZMQ_RCVHWM, &one, sizeof one), 0);
    ck_assert_int_eq(zmq_bind(e.pull, "inproc://reports"), 0);
    void *push = zmq_socket(e.ctx, ZMQ_PUSH);
    ck_assert_int_eq(zmq_setsockopt(push, ZMQ_SNDHWM, &one, sizeof one), 0);
    ck_assert_int_eq(zmq_connect(push, "inproc://reports"), 0);
    void *sock = push;   /* the outbox's from here; polled for room below */
    e.outbox = outbox_new();
    outbox_set_worker(e.outbox, "w1");
    outbox_attach(e.outbox, &push);

    /* 1: small, 2 and 3: 100 KB each (alone), 4 and 5: small, together. */
    const size_t big = 100000;
    outbox_result(e.outbox, s_result(1));
    outbox_result(e.outbox, s_big_result(2, big));
    outbox_result(e.outbox, s_big_result(3, big));
    outbox_result(e.outbox, s_result(4));
    outbox_result(e.outbox, s_result(5));
    outbox_flush(e.outbox, 1000, false);
    ck_assert_int_gt(outbox_backlog(e.outbox), 0);

    int64_t want[] = {1, 2, 3, 4, 5};
    int got = 0;
    for (int round = 0; round < 20 && got < 5; round++) {
        proto_report_t *rep;
        while ((rep = s_next(&e)) != NULL) {
            ck_assert_int_eq(rep->type, PROTO_REP_RESULTS);
            /* The big ones alone; 4 and 5 joined. */
            ck_assert_int_eq(rep->nresults, got == 3 ? 2 : 1);
            for (int i = 0; i < rep->nresults; i++) {
                ck_assert_int_lt(got, 5);
                ck_assert_int_eq(rep->results[i]->task, want[got]);
                size_t n = rep->results[i]->stdout_data ? strlen(rep->results[i]->stdout_data) : 0;
                ck_assert_uint_eq(n, want[got] == 2 || want[got] == 3 ? big : 0);
                got++;
            }
            proto_report_destroy(&rep);
        }
        /* Room again once libzmq has seen the reads (an event, not a time). */
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLOUT};
        zmq_poll(&it, 1, 2000);
        outbox_flush(e.outbox, 1000 + round, false);
    }
    ck_assert_int_eq(got, 5);
    ck_assert_int_eq(outbox_backlog(e.outbox), 0);
    s_stop(&e);
}
END_TEST

START_TEST(results_that_may_wait_go_together_when_due)
{
    env_t e;
    s_start(&e);
    outbox_result_until(e.outbox, s_result(1), 0, 1005);
    outbox_flush(e.outbox, 1000, false);
    ck_assert_ptr_null(s_next(&e));
    ck_assert_int_eq(outbox_due(e.outbox), 1005);
    outbox_result_until(e.outbox, s_result(2), 0, 1008);
    outbox_flush(e.outbox, 1004, false);
    ck_assert_ptr_null(s_next(&e));
    ck_assert_int_eq(outbox_due(e.outbox), 1005);   /* the first one's */
    outbox_flush(e.outbox, 1005, false);
    proto_report_t *rep = s_next(&e);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, PROTO_REP_RESULTS);
    ck_assert_int_eq(rep->nresults, 2);
    ck_assert_int_eq(rep->results[0]->task, 1);
    ck_assert_int_eq(rep->results[1]->task, 2);
    proto_report_destroy(&rep);
    ck_assert_ptr_null(s_next(&e));
    ck_assert_int_eq(outbox_due(e.outbox), -1);
    s_stop(&e);
}
END_TEST

START_TEST(a_result_that_may_not_wait_takes_the_held_ones_along)
{
    env_t e;
    s_start(&e);
    outbox_result_until(e.outbox, s_result(1), 0, 1005);
    outbox_result(e.outbox, s_result(2));
    ck_assert_int_le(outbox_due(e.outbox), 1000);
    outbox_flush(e.outbox, 1000, false);
    proto_report_t *rep = s_next(&e);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->nresults, 2);
    proto_report_destroy(&rep);
    s_stop(&e);
}
END_TEST

START_TEST(an_idle_worker_sends_what_it_holds)
{
    env_t e;
    s_start(&e);
    outbox_started(e.outbox, 3, 1, 1.5);
    outbox_result_until(e.outbox, s_result(1), 0, 1005);
    outbox_flush(e.outbox, 1000, true);
    proto_report_t *rep = s_next(&e);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, PROTO_REP_STARTED);
    ck_assert_int_eq(rep->nstarted, 1);
    ck_assert_int_eq(rep->started[0].task, 3);
    proto_report_destroy(&rep);
    rep = s_next(&e);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, PROTO_REP_RESULTS);
    proto_report_destroy(&rep);
    s_stop(&e);
}
END_TEST

/* A heartbeat that says which "tasks" message it read (seen) promises
   the master that every attempt it does not list has its result before
   it (docs/protocol.md 10.1): the results held back go first, and while
   reports wait in the backlog it says nothing of seen. A heartbeat
   without seen leaves held results held. */
START_TEST(a_heartbeat_that_says_seen_never_overtakes_a_result)
{
    env_t e;
    s_start(&e);
    outbox_result_until(e.outbox, s_result(1), 0, 1005);
    outbox_heartbeat(e.outbox, NULL, 0, 0);
    proto_report_t *rep = s_next(&e);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, PROTO_REP_HEARTBEAT);
    ck_assert(rep->seen == 0);
    proto_report_destroy(&rep);
    ck_assert_ptr_null(s_next(&e));
    proto_task_ref_t held = {.task = 2, .attempt = 1};
    outbox_heartbeat(e.outbox, &held, 1, 7);
    rep = s_next(&e);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, PROTO_REP_RESULTS);
    ck_assert_int_eq(rep->nresults, 1);
    ck_assert_int_eq(rep->results[0]->task, 1);
    proto_report_destroy(&rep);
    rep = s_next(&e);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, PROTO_REP_HEARTBEAT);
    ck_assert(rep->seen == 7);
    ck_assert_int_eq(rep->nrunning, 1);
    ck_assert_int_eq(rep->running[0].task, 2);
    proto_report_destroy(&rep);
    ck_assert_int_eq(outbox_due(e.outbox), -1);
    s_stop(&e);

    /* No socket yet: the result waits in the backlog, and a heartbeat
       sent meanwhile would arrive before it. */
    e.ctx = zmq_ctx_new();
    e.pull = zmq_socket(e.ctx, ZMQ_PULL);
    ck_assert_int_eq(zmq_bind(e.pull, "inproc://reports"), 0);
    e.outbox = outbox_new();
    outbox_set_worker(e.outbox, "w1");
    outbox_result(e.outbox, s_result(3));
    outbox_flush(e.outbox, 1000, false);
    ck_assert_int_eq(outbox_backlog(e.outbox), 1);
    void *push = zmq_socket(e.ctx, ZMQ_PUSH);
    ck_assert_int_eq(zmq_connect(push, "inproc://reports"), 0);
    outbox_attach(e.outbox, &push);
    outbox_heartbeat(e.outbox, NULL, 0, 9);
    rep = s_next(&e);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, PROTO_REP_HEARTBEAT);
    ck_assert(rep->seen == 0);
    proto_report_destroy(&rep);
    outbox_flush(e.outbox, 1001, false);
    rep = s_next(&e);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, PROTO_REP_RESULTS);
    ck_assert_int_eq(rep->results[0]->task, 3);
    proto_report_destroy(&rep);
    ck_assert_int_eq(outbox_backlog(e.outbox), 0);
    s_stop(&e);
}
END_TEST

START_TEST(starts_go_at_the_next_flush_even_while_results_wait)
{
    env_t e;
    s_start(&e);
    outbox_result_until(e.outbox, s_result(1), 0, 1005);
    outbox_started(e.outbox, 2, 1, 1.5);
    outbox_flush(e.outbox, 1000, false);
    proto_report_t *rep = s_next(&e);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, PROTO_REP_STARTED);
    ck_assert_int_eq(rep->started[0].task, 2);
    proto_report_destroy(&rep);
    ck_assert_ptr_null(s_next(&e));
    ck_assert_int_eq(outbox_due(e.outbox), 1005);
    s_stop(&e);
}
END_TEST

START_TEST(output_sends_the_batched_starts_first)
{
    env_t e;
    s_start(&e);
    outbox_started(e.outbox, 4, 1, 1.5);
    proto_report_t *out = proto_report_new(PROTO_REP_OUTPUT, "w1");
    out->task = 4;
    out->attempt = 1;
    out->stream = 1;
    out->data = xstrdup("hello\n");
    char *text = proto_report_encode(out);
    proto_report_destroy(&out);
    outbox_output(e.outbox, text, strlen(text));
    free(text);
    proto_report_t *rep = s_next(&e);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, PROTO_REP_STARTED);
    proto_report_destroy(&rep);
    rep = s_next(&e);
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, PROTO_REP_OUTPUT);
    proto_report_destroy(&rep);
    s_stop(&e);
}
END_TEST

/* A result as a worker's pool thread encodes it for a master that reads
   base64: n bytes of 0x01 on stdout, 4/3 of n in the report, 6 x n as
   the master stores it (\u0001); *stored: the encoder's figure. */
static char *s_b64_result(int64_t task, size_t n, size_t *stored)
{
    proto_result_t *res = proto_result_new();
    res->task = task;
    res->attempt = 1;
    res->status = PROTO_ST_DONE;
    res->started = 1;
    res->finished = 2;
    res->stdout_raw = xmalloc(n);
    memset(res->stdout_raw, 1, n);
    res->stdout_raw_len = n;
    res->raw_b64 = true;
    size_t len = 0;
    char *json = proto_result_encode_at(res, 0, &len, stored);
    proto_result_destroy(&res);
    return json;
}

START_TEST(results_are_joined_only_while_what_the_master_stores_fits_one_report)
{
    /* 150 results of 40,000 bytes of 0x01: 53 KB each in the report
       (under the 64 KiB that goes alone), 240 KB each once stored: 8 MB
       of report, 36 MB as the master stores it, over the 32 MiB it
       takes from one report. They must go in more than one report, each
       within the limit as stored, and every output arrive (the master's
       decoder drops outputs past the limit: none may be dropped). */
    env_t e;
    s_start(&e);
    enum { N = 150 };
    const size_t n = 40000;
    for (int i = 0; i < N; i++) {
        size_t stored = 0;
        char *json = s_b64_result(i + 1, n, &stored);
        ck_assert_uint_lt(strlen(json), 64 * 1024);
        ck_assert_uint_gt(stored, 6 * n);
        outbox_result_until(e.outbox, json, stored, INT64_MIN);
    }
    outbox_flush(e.outbox, 1000, true);
    int reports = 0, got = 0;
    proto_report_t *rep;
    while ((rep = s_next(&e)) != NULL) {
        ck_assert_int_eq(rep->type, PROTO_REP_RESULTS);
        reports++;
        size_t stored = 0;
        for (int i = 0; i < rep->nresults; i++) {
            proto_result_t *r = rep->results[i];
            ck_assert_int_eq(r->task, ++got);
            ck_assert_msg(!r->output_dropped && r->status == PROTO_ST_DONE,
                          "task %d: %s", got, r->error ? r->error : "?");
            ck_assert_uint_eq(strlen(r->stdout_data), n);
            char *text = proto_result_encode(r);
            stored += strlen(text);
            free(text);
        }
        ck_assert_uint_le(stored, PROTO_MAX_REPORT_MSG);
        proto_report_destroy(&rep);
    }
    ck_assert_int_eq(got, N);
    ck_assert_int_ge(reports, 2);
    s_stop(&e);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "outbox", .tcase = "outbox", .timeout_s = 60 });
}
