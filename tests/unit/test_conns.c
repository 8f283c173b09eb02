/* conns: flow control on the API ROUTER. A reply the client has no room
   for waits and goes out in order; requests behind unread replies park
   and run in order once those are out; past the park bound a request is
   answered "busy" in its place; reply bytes are counted until libzmq
   frees them. Over inproc, with a queue of 1 each way, so "no room" is
   reached at the second reply. */
#include "../../master/conns.h"
#include "../../master/metrics.h"

#include "../../common/util.h"
#include "../../common/zmqx.h"
#include "../ztest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* libzmq is not built with TSan: its internal threads are suppressed. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:libzmq.so\n";
}

typedef struct {
    void *ctx, *router, *dealer;
    metrics_t *metrics;
    conns_t *conns;
    zmqx_frames_t env;       /* the dealer's routing frame, as the router sees it */
    zmqx_frames_t ran;       /* a parked request conns_next gave back, not yet run */
} rig_t;

static void s_rig(rig_t *r)
{
    memset(r, 0, sizeof *r);
    r->ctx = zmq_ctx_new();
    r->router = zmq_socket(r->ctx, ZMQ_ROUTER);
    r->dealer = zmq_socket(r->ctx, ZMQ_DEALER);
    int one = 1, zero = 0, timeout = 5000;
    zmq_setsockopt(r->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(r->router, ZMQ_SNDHWM, &one, sizeof one);
    zmq_setsockopt(r->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(r->router, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(r->dealer, ZMQ_RCVHWM, &one, sizeof one);
    zmq_setsockopt(r->dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(r->dealer, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    ck_assert_int_eq(zmq_bind(r->router, "inproc://conns"), 0);
    ck_assert_int_eq(zmq_connect(r->dealer, "inproc://conns"), 0);
    r->metrics = metrics_new(0);
    r->conns = conns_new(r->router, r->metrics, 0);
    /* One request, so the router knows the dealer and we its routing id. */
    ck_assert_int_eq(zmqx_send(r->dealer, "hi", 2, 0), 0);
    zmqx_frames_t f;
    ck_assert_int_eq(zmqx_recv_frames(r->router, &f, 8, 0), 0);
    zmqx_frames_copy(&r->env, &(zmqx_frames_t){.count = 1, .frames = f.frames, .sizes = f.sizes});
    zmqx_frames_free(&f);
}

static void s_unrig(rig_t *r)
{
    zmqx_frames_free(&r->env);
    zmqx_frames_free(&r->ran);
    conns_destroy(&r->conns);
    ck_assert_ptr_null(r->conns);
    zmq_close(r->dealer);
    zmq_close(r->router);
    zmq_ctx_term(r->ctx);
    metrics_destroy(&r->metrics);
}

static void s_reply(rig_t *r, const char *text)
{
    char *body = xstrdup(text);
    conns_send(r->conns, &r->env, &body, strlen(text));
    ck_assert_ptr_null(body);
}

/* The dealer sends text; the router reads it and asks conns about it. */
static conns_admit_t s_request(rig_t *r, const char *text, size_t len)
{
    ck_assert_int_eq(zmqx_send(r->dealer, text, len, 0), 0);
    zmqx_frames_t f;
    ck_assert_int_eq(zmqx_recv_frames(r->router, &f, 8, 0), 0);
    conns_admit_t how = conns_admit(r->conns, &f);
    if (how == CONNS_TAKEN)
        ck_assert_int_eq(f.count, 0);
    zmqx_frames_free(&f);
    return how;
}

/* Replies "a0", "a1", ... until one has to wait (inproc holds both
   sides' queues: 2 here); returns how many were sent. */
static int s_fill(rig_t *r)
{
    char text[16];
    for (int i = 0; i < 10; i++) {
        snprintf(text, sizeof text, "a%d", i);
        s_reply(r, text);
        if (conns_timeout(r->conns, 0) >= 0)
            return i + 1;
    }
    ck_abort_msg("10 replies and none had to wait");
    return 0;
}

/* One loop turn: conns sends what waits; a parked request it gives back
   is kept in r->ran until the test runs it (answers it), as api.c runs
   one before it asks for the next. */
static void s_turn(rig_t *r)
{
    conns_admit_t how;
    if (r->ran.count == 0 && conns_next(r->conns, INT64_MAX, &r->ran, &how))
        ck_assert_int_eq(how, CONNS_RUN);
}

/* The next message the dealer gets (caller frees), turning the loop. */
static char *s_read(rig_t *r)
{
    for (int i = 0; i < 5000; i++) {
        s_turn(r);
        size_t len;
        char *got = zmqx_recv(r->dealer, &len, ZMQ_DONTWAIT);
        if (got)
            return got;
        zmq_poll(NULL, 0, 1);
    }
    ck_abort_msg("nothing came in 5 s");
    return NULL;
}

/* The parked request due to run next (caller frees), turning the loop. */
static zmqx_frames_t s_due(rig_t *r)
{
    for (int i = 0; i < 5000 && r->ran.count == 0; i++)
        s_turn(r);
    ck_assert_msg(r->ran.count > 0, "no parked request came due");
    zmqx_frames_t out = r->ran;
    memset(&r->ran, 0, sizeof r->ran);
    return out;
}

/* Reads "a0" .. "a<n-1>". */
static void s_read_filled(rig_t *r, int n)
{
    for (int i = 0; i < n; i++) {
        char *got = s_read(r), want[16];
        snprintf(want, sizeof want, "a%d", i);
        ck_assert_str_eq(got, want);
        free(got);
    }
}

START_TEST(replies_a_client_has_no_room_for_wait_and_go_out_in_order)
{
    rig_t r;
    s_rig(&r);
    char text[32];
    for (int i = 0; i < 50; i++) {
        snprintf(text, sizeof text, "reply %d", i);
        s_reply(&r, text);
    }
    ck_assert_int_ge(conns_timeout(r.conns, 0), 0);   /* something waits */
    ck_assert_int_gt(conns_reply_bytes(r.conns), 0);
    for (int i = 0; i < 50; i++) {
        char *got = s_read(&r);
        snprintf(text, sizeof text, "reply %d", i);
        ck_assert_str_eq(got, text);
        free(got);
    }
    ck_assert_int_eq(conns_timeout(r.conns, 0), -1);
    /* Read and closed: libzmq freed them, and they are off the count. */
    ck_assert_int_eq(conns_reply_bytes(r.conns), 0);
    s_unrig(&r);
}
END_TEST

START_TEST(requests_behind_unread_replies_park_and_run_in_order_after_them)
{
    rig_t r;
    s_rig(&r);
    ck_assert_int_eq(s_request(&r, "q", 1), CONNS_RUN);
    int n = s_fill(&r);   /* the last waits, and so does what comes next */
    ck_assert_int_eq(s_request(&r, "q1", 2), CONNS_TAKEN);
    ck_assert_int_eq(s_request(&r, "q2", 2), CONNS_TAKEN);
    s_read_filled(&r, n);
    for (int i = 1; i <= 2; i++) {
        /* q1 runs once every reply before it is out; its answer goes
           out before q2 runs. */
        zmqx_frames_t ran = s_due(&r);
        char want[16];
        snprintf(want, sizeof want, "q%d", i);
        ck_assert_str_eq(ran.frames[ran.count - 1], want);
        zmqx_frames_free(&ran);
        snprintf(want, sizeof want, "r%d", i);
        s_reply(&r, want);
        char *got = s_read(&r);
        ck_assert_str_eq(got, want);
        free(got);
    }
    ck_assert_int_eq(conns_timeout(r.conns, 0), -1);
    s_unrig(&r);
}
END_TEST

START_TEST(past_the_park_bound_a_request_is_answered_busy_in_its_place)
{
    rig_t r;
    s_rig(&r);
    int n = s_fill(&r);
    /* 1 MiB parks (the first request is always taken); the next that
       would go over is busy, and a small one after it parks again. */
    size_t big = (size_t) CONNS_PARK_CONN / 2;
    char *blob = xmalloc(big);
    memset(blob, 'x', big);
    ck_assert_int_eq(s_request(&r, blob, big), CONNS_TAKEN);
    ck_assert_int_eq(s_request(&r, blob, big), CONNS_TAKEN);   /* over: busy */
    ck_assert_int_eq(s_request(&r, "small", 5), CONNS_TAKEN);
    free(blob);
    s_read_filled(&r, n);
    const char *want[] = { "(run big)", "big's answer", "busy", "(run small)", "small's answer" };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        if (want[i][0] == '(') {
            zmqx_frames_t ran = s_due(&r);
            ck_assert_uint_eq(ran.sizes[ran.count - 1], strcmp(want[i], "(run big)") == 0 ? big : 5);
            zmqx_frames_free(&ran);
            s_reply(&r, want[i + 1]);
            continue;
        }
        char *got = s_read(&r);
        if (strcmp(want[i], "busy") == 0)
            ck_assert_msg(strstr(got, "\"code\":\"busy\"") && strstr(got, "was not run"), "%zu: %s",
                          i, got);
        else
            ck_assert_msg(strcmp(got, want[i]) == 0, "%zu: got %s, wanted %s", i, got, want[i]);
        free(got);
    }
    ck_assert_int_eq(conns_timeout(r.conns, 0), -1);
    s_unrig(&r);
}
END_TEST

START_TEST(replies_still_in_libzmq_at_destroy_are_freed_with_the_context)
{
    rig_t r;
    s_rig(&r);
    for (int i = 0; i < 5; i++)
        s_reply(&r, "never read");
    /* conns goes first (as in master_destroy): the records of replies
       libzmq still holds live until zmq_ctx_term frees them; ASan and
       valgrind would see a use after free or a leak otherwise. */
    s_unrig(&r);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "conns", .tcase = "conns", .timeout_s = 60 });
}
