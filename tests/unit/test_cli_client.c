/* cli client and shared helpers: request/reply against a scripted fake
   master (a ROUTER in a thread), timeouts and late replies, error replies
   mapped to exit codes; argument parsing and option errors. */
#include "../../cli/cli.h"
#include "../../cli/client.h"
#include "../../common/clock.h"
#include "../../common/util.h"
#include "../../common/zmqx.h"

#include "../ztest.h"
#include "capture.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* libzmq is not built with TSan: its lock-free pipes between the I/O
   thread and the socket's thread use atomics TSan cannot see, so a ROUTER
   answering a peer that just went away (the late-reply test) shows up as
   a race inside libzmq. Only frames inside libzmq are suppressed; our own
   code stays fully checked. Called by TSan only in -fsanitize=thread
   builds; harmless elsewhere. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:libzmq.so\n";
}

/* ------------------------------------------------------- a fake master */

typedef enum {
    ACT_REPLY,       /* answer with a status reply naming job `id` */
    ACT_ERROR,       /* answer with an error reply (code, message) */
    ACT_HOLD,        /* keep the request; answer it (job `id`) after the next one arrives */
    ACT_IGNORE,      /* never answer */
    ACT_WORKERS,     /* answer with s_workers_reply() */
    ACT_SLOW,        /* answer (job `id`) after `ms` milliseconds: a busy master */
    ACT_RESTART,     /* lose the request with the socket, and bind again on the same port */
    ACT_SLOW_RESTART, /* hold it `ms` milliseconds (busy), then as ACT_RESTART */
    ACT_BUSY,         /* answer "busy": a master over its reply budget */
    ACT_BUSY_ALWAYS   /* answer "busy", to this request and every later one */
} act_t;

typedef struct {
    act_t act;
    int64_t id;
    const char *code;
    int ms;
} step_t;

typedef struct {
    void *ctx;
    void *router;
    int port;
    step_t steps[8];
    int nsteps;
    atomic_int received;
    atomic_bool stop;
    pthread_t thread;
} fake_t;

static void s_send_frames(void *sock, zmqx_frames_t *env, const char *body)
{
    for (int i = 0; i < env->count - 1; i++)
        ck_assert_int_eq(zmqx_send(sock, env->frames[i], env->sizes[i], ZMQ_SNDMORE), 0);
    ck_assert_int_eq(zmqx_send(sock, body, strlen(body), 0), 0);
}

static char *s_status_reply(int64_t id)
{
    proto_reply_t *rep = proto_reply_new(true);
    rep->jobs = xcalloc(1, sizeof(proto_job_t));
    rep->jobs[0].id = id;
    rep->jobs[0].closed = true;
    rep->njobs = 1;
    char *text = proto_reply_encode(rep, PROTO_REQ_STATUS);
    proto_reply_destroy(&rep);
    return text;
}

/* Three workers: one alive, one that left 10 s ago, one dead for 400 s. */
static char *s_workers_reply(void)
{
    proto_reply_t *rep = proto_reply_new(true);
    rep->workers = xcalloc(3, sizeof(proto_worker_info_t));
    double now = clock_wall();
    const proto_worker_info_t w[3] = {
        { .id = "busy", .alive = true, .last_heartbeat = now },
        { .id = "leaver", .left = true, .last_heartbeat = now - 11, .gone = now - 10 },
        { .id = "crashed", .last_heartbeat = now - 402, .gone = now - 400 },
    };
    for (int i = 0; i < 3; i++) {
        rep->workers[i] = w[i];
        rep->workers[i].id = xstrdup(w[i].id);
        rep->workers[i].host = xstrdup("h");
        rep->workers[i].labels = xcalloc(1, sizeof(char *));
    }
    rep->nworkers = 3;
    char *text = proto_reply_encode(rep, PROTO_REQ_WORKERS);
    proto_reply_destroy(&rep);
    return text;
}

/* A restart: the connection drops, and what the old socket held is gone. */
static void s_fake_rebind(fake_t *f)
{
    zmq_close(f->router);
    f->router = zmqx_socket(f->ctx, ZMQ_ROUTER, 0, 0);
    ck_assert_ptr_nonnull(f->router);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", f->port);
    /* The old socket lets go of the port in libzmq's own thread, after
       zmq_close returns: try again until it has (bounded). */
    int rc = -1;
    for (int i = 0; i < 200 && (rc = zmq_bind(f->router, ep)) != 0 && errno == EADDRINUSE; i++)
        usleep(10 * 1000);
    ck_assert_msg(rc == 0, "cannot bind %s again: %s", ep, zmq_strerror(errno));
}

static void *s_fake_run(void *arg)
{
    fake_t *f = arg;
    zmqx_frames_t held;
    bool holding = false;
    int64_t held_id = 0;
    int64_t deadline = clock_mono_ms() + 10000; /* bounded whatever happens */
    while (!f->stop && clock_mono_ms() < deadline) {
        zmq_pollitem_t it = { f->router, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&it, 1, 100) <= 0)
            continue;
        zmqx_frames_t msg;
        if (zmqx_recv_frames(f->router, &msg, 4, 0) != 0)
            continue;
        int k = f->received++;
        if (k >= f->nsteps && f->nsteps > 0 && f->steps[f->nsteps - 1].act == ACT_BUSY_ALWAYS)
            k = f->nsteps - 1;
        if (k >= f->nsteps) { /* unscripted: count it, never answer */
            zmqx_frames_free(&msg);
            continue;
        }
        step_t *st = &f->steps[k];
        char *body = NULL;
        switch (st->act) {
        case ACT_REPLY:
            body = s_status_reply(st->id);
            break;
        case ACT_ERROR: {
            proto_reply_t *rep = proto_reply_error(st->code, "no job %lld", (long long) st->id);
            body = proto_reply_encode(rep, PROTO_REQ_STATUS);
            proto_reply_destroy(&rep);
            break;
        }
        case ACT_BUSY:
        case ACT_BUSY_ALWAYS: {
            /* master/conns.c's words */
            proto_reply_t *rep = proto_reply_error(
                PROTO_E_BUSY, "busy: clients have not read 128 MiB of replies, as much as the "
                              "master holds; this request was not run: read the replies you "
                              "have and send it again shortly");
            body = proto_reply_encode(rep, PROTO_REQ_STATUS);
            proto_reply_destroy(&rep);
            break;
        }
        case ACT_HOLD:
            held = msg;
            holding = true;
            held_id = st->id;
            continue;
        case ACT_IGNORE:
            break;
        case ACT_WORKERS:
            body = s_workers_reply();
            break;
        case ACT_SLOW:
            usleep((useconds_t) st->ms * 1000);
            body = s_status_reply(st->id);
            break;
        case ACT_SLOW_RESTART:
            usleep((useconds_t) st->ms * 1000);
            /* fall through */
        case ACT_RESTART:
            zmqx_frames_free(&msg);
            s_fake_rebind(f);
            continue;
        }
        /* A held request gets its (late) answer first. */
        if (holding) {
            char *late = s_status_reply(held_id);
            s_send_frames(f->router, &held, late);
            free(late);
            zmqx_frames_free(&held);
            holding = false;
        }
        if (body)
            s_send_frames(f->router, &msg, body);
        free(body);
        zmqx_frames_free(&msg);
    }
    if (holding)
        zmqx_frames_free(&held);
    return NULL;
}

static fake_t *s_fake_start(const step_t *steps, int n)
{
    fake_t *f = xcalloc(1, sizeof *f);
    f->ctx = zmq_ctx_new();
    f->router = zmqx_socket(f->ctx, ZMQ_ROUTER, 0, 0);
    ck_assert_ptr_nonnull(f->router);
    ck_assert_int_eq(zmq_bind(f->router, "tcp://127.0.0.1:*"), 0);
    f->port = zmqx_bound_port(f->router);
    ck_assert_int_gt(f->port, 0);
    memcpy(f->steps, steps, (size_t) n * sizeof *steps);
    f->nsteps = n;
    ck_assert_int_eq(pthread_create(&f->thread, NULL, s_fake_run, f), 0);
    return f;
}

static void s_fake_stop(fake_t **p)
{
    fake_t *f = *p;
    f->stop = true;
    pthread_join(f->thread, NULL);
    zmq_close(f->router);
    zmq_ctx_term(f->ctx);
    free(f);
    *p = NULL;
}

static proto_req_t *s_status_req(void)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_STATUS);
    req->job = 1;
    return req;
}

/* --------------------------------------------------------------- client */

START_TEST(a_request_gets_its_reply)
{
    step_t steps[] = { { ACT_REPLY, 41, NULL, 0 }, { ACT_REPLY, 42, NULL, 0 } };
    fake_t *f = s_fake_start(steps, 2);
    client_t *c = client_new("127.0.0.1", f->port, 5000);
    ck_assert_ptr_nonnull(c);
    char want[32];
    snprintf(want, sizeof want, "127.0.0.1:%d", f->port);
    ck_assert_str_eq(client_address(c), want);
    proto_req_t *req = s_status_req();
    client_err_t err;
    for (int64_t id = 41; id <= 42; id++) { /* the socket is reused */
        proto_reply_t *rep = client_call(c, req, false, &err);
        ck_assert_msg(rep != NULL, "%s", err.message);
        ck_assert(rep->ok);
        ck_assert_int_eq(rep->njobs, 1);
        ck_assert_int_eq(rep->jobs[0].id, id);
        proto_reply_destroy(&rep);
    }
    proto_req_destroy(&req);
    client_destroy(&c);
    ck_assert_ptr_null(c);
    s_fake_stop(&f);
}
END_TEST

START_TEST(error_replies_become_exit_4_or_6_with_the_message)
{
    step_t steps[] = { { ACT_ERROR, 9, PROTO_E_NOT_FOUND, 0 }, { ACT_ERROR, 9, PROTO_E_AUTH, 0 } };
    fake_t *f = s_fake_start(steps, 2);
    client_t *c = client_new("127.0.0.1", f->port, 5000);
    proto_req_t *req = s_status_req();
    client_err_t err;
    ck_assert_ptr_null(client_call(c, req, false, &err));
    ck_assert_int_eq(err.kind, CLIENT_ERR_REFUSED);
    ck_assert_int_eq(cli_exit_for_client_error(err.kind), CLI_EXIT_REFUSED);
    ck_assert_str_eq(err.message, "no job 9 (not_found)");
    ck_assert_ptr_null(client_call(c, req, false, &err));
    ck_assert_int_eq(err.kind, CLIENT_ERR_AUTH);
    ck_assert_int_eq(cli_exit_for_client_error(err.kind), CLI_EXIT_AUTH);
    proto_req_destroy(&req);
    client_destroy(&c);
    s_fake_stop(&f);
}
END_TEST

START_TEST(no_master_means_exit_3_at_once)
{
    /* A port with nothing behind it: bind a ROUTER, note the port, close. */
    void *ctx = zmq_ctx_new();
    void *s = zmqx_socket(ctx, ZMQ_ROUTER, 0, 0);
    ck_assert_int_eq(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    int port = zmqx_bound_port(s);
    zmq_close(s);
    zmq_ctx_term(ctx);

    /* The timeout is far: only the refusal can end the call. */
    client_t *c = client_new("127.0.0.1", port, 600000);
    proto_req_t *req = s_status_req();
    client_err_t err;
    ck_assert_ptr_null(client_call(c, req, true, &err));
    ck_assert_int_eq(err.kind, CLIENT_ERR_UNREACHABLE);
    ck_assert_int_eq(cli_exit_for_client_error(err.kind), CLI_EXIT_UNREACHABLE);
    char want[200];
    snprintf(want, sizeof want,
             "cannot reach the master at 127.0.0.1:%d: connection refused; is ztask-master "
             "running there? set --master or ZTASK_MASTER",
             port);
    ck_assert_str_eq(err.message, want);
    proto_req_destroy(&req);
    client_destroy(&c);
}
END_TEST

START_TEST(a_late_reply_is_never_taken_for_the_next_request)
{
    /* Request 1 gets no answer in time; the fake answers it only after
       request 2 arrives. The client must return request 2's answer. */
    step_t steps[] = { { ACT_HOLD, 111, NULL, 0 }, { ACT_REPLY, 222, NULL, 0 } };
    fake_t *f = s_fake_start(steps, 2);
    client_t *c = client_new("127.0.0.1", f->port, 300);
    proto_req_t *req = s_status_req();
    client_err_t err;
    ck_assert_ptr_null(client_call(c, req, false, &err));
    ck_assert_int_eq(err.kind, CLIENT_ERR_TIMEOUT);
    ck_assert_int_eq(cli_exit_for_client_error(err.kind), CLI_EXIT_UNREACHABLE);
    proto_reply_t *rep = client_call(c, req, false, &err);
    ck_assert_msg(rep != NULL, "%s", err.message);
    ck_assert_int_eq(rep->jobs[0].id, 222);
    proto_reply_destroy(&rep);
    proto_req_destroy(&req);
    client_destroy(&c);
    s_fake_stop(&f);
}
END_TEST

/* A read-only status call with a 4.5 s timeout against a fake master
   playing steps: it must be answered with job `id` after the fake saw
   `received` copies. Returns how long the call took (ms). */
static int64_t s_read_only_call(const step_t *steps, int nsteps, int64_t id, int received)
{
    fake_t *f = s_fake_start(steps, nsteps);
    client_t *c = client_new("127.0.0.1", f->port, 4500);
    proto_req_t *req = s_status_req();
    client_err_t err;
    int64_t t0 = clock_mono_ms();
    proto_reply_t *rep = client_call(c, req, true, &err);
    int64_t took = clock_mono_ms() - t0;
    ck_assert_msg(rep != NULL, "%s", err.message);
    ck_assert_int_eq(rep->jobs[0].id, id);
    ck_assert_int_eq(f->received, received);
    proto_reply_destroy(&rep);
    proto_req_destroy(&req);
    client_destroy(&c);
    s_fake_stop(&f);
    return took;
}

START_TEST(a_read_only_request_is_resent_inside_its_timeout)
{
    /* The first copy is lost with a master that restarted; the resend,
       on a fresh socket after a third of the timeout, is answered. */
    step_t steps[] = { { ACT_RESTART, 0, NULL, 0 }, { ACT_REPLY, 5, NULL, 0 } };
    int64_t took = s_read_only_call(steps, 2, 5, 2);
    ck_assert_int_ge(took, 1400);
    ck_assert_int_lt(took, 4500);
}
END_TEST

START_TEST(a_slow_master_that_holds_the_request_is_waited_for_not_asked_again)
{
    /* The master answers after 2.5 s of a 4.5 s timeout, on a connection
       that stayed up. Resending at 1.5 s (a third) closed the socket the
       answer was coming to, and the copies queued behind the first: the
       call timed out (a 20 MB results page under TSan, in CI). */
    step_t steps[] = { { ACT_SLOW, 9, NULL, 2500 } };
    s_read_only_call(steps, 1, 9, 1);
}
END_TEST

START_TEST(a_held_request_whose_master_restarts_is_asked_again)
{
    /* The master holds the request past a third of the timeout (so the
       client waits on, not asking again), then restarts and loses it:
       the drop is seen at the end of the next third and the request is
       sent again, answered by the master that came back. */
    step_t steps[] = { { ACT_SLOW_RESTART, 0, NULL, 2000 }, { ACT_REPLY, 6, NULL, 0 } };
    s_read_only_call(steps, 2, 6, 2);
}
END_TEST

START_TEST(a_changing_request_is_sent_once)
{
    step_t steps[] = { { ACT_IGNORE, 0, NULL, 0 } };
    fake_t *f = s_fake_start(steps, 1);
    client_t *c = client_new("127.0.0.1", f->port, 1500);
    proto_req_t *req = proto_req_new(PROTO_REQ_CANCEL);
    req->job = 3;
    client_err_t err;
    ck_assert_ptr_null(client_call(c, req, false, &err));
    ck_assert_int_eq(err.kind, CLIENT_ERR_TIMEOUT);
    ck_assert_int_eq(cli_exit_for_client_error(err.kind), CLI_EXIT_UNREACHABLE);
    ck_assert_int_eq(f->received, 1);
    proto_req_destroy(&req);
    client_destroy(&c);
    s_fake_stop(&f);
}
END_TEST

START_TEST(a_busy_answer_is_asked_again_after_a_short_pause)
{
    /* "busy" means the master did not run the request: any request is
       sent again, a changing one too (retry_safe false), on the same
       socket, after pauses of 25-50, 50-100 and 100-200 ms. */
    step_t steps[] = { { ACT_BUSY, 0, NULL, 0 },
                       { ACT_BUSY, 0, NULL, 0 },
                       { ACT_BUSY, 0, NULL, 0 },
                       { ACT_REPLY, 7, NULL, 0 } };
    fake_t *f = s_fake_start(steps, 4);
    client_t *c = client_new("127.0.0.1", f->port, 5000);
    proto_req_t *req = proto_req_new(PROTO_REQ_CANCEL);
    req->job = 3;
    client_err_t err;
    proto_reply_t *rep = client_call(c, req, false, &err);
    ck_assert_msg(rep != NULL, "%s", err.message);
    ck_assert_int_eq(f->received, 4);
    proto_reply_destroy(&rep);
    proto_req_destroy(&req);
    client_destroy(&c);
    s_fake_stop(&f);
}
END_TEST

START_TEST(a_master_busy_until_the_timeout_is_a_refusal_at_the_timeout)
{
    /* Asked again and again (pauses doubling to 1 s, not a flood), then,
       at the timeout and not before, the master's message, exit 4. */
    step_t steps[] = { { ACT_BUSY_ALWAYS, 0, NULL, 0 } };
    fake_t *f = s_fake_start(steps, 1);
    client_t *c = client_new("127.0.0.1", f->port, 2000);
    proto_req_t *req = s_status_req();
    client_err_t err;
    int64_t t0 = clock_mono_ms();
    ck_assert_ptr_null(client_call(c, req, true, &err));
    int64_t took = clock_mono_ms() - t0;
    ck_assert_int_ge(took, 2000);
    ck_assert_int_eq(err.kind, CLIENT_ERR_REFUSED);
    ck_assert_int_eq(cli_exit_for_client_error(err.kind), CLI_EXIT_REFUSED);
    ck_assert_str_eq(err.code, PROTO_E_BUSY);
    int asked = f->received;
    ck_assert_msg(asked >= 3 && asked <= 12, "asked %d times in 2 s", asked);
    char want[400];
    snprintf(want, sizeof want,
             "busy: clients have not read 128 MiB of replies, as much as the master holds; "
             "this request was not run: read the replies you have and send it again shortly; "
             "still busy after %d answers in 2 s (a longer --request-timeout waits longer) "
             "(busy)",
             asked);
    ck_assert_str_eq(err.message, want);
    proto_req_destroy(&req);
    client_destroy(&c);
    s_fake_stop(&f);
}
END_TEST

static bool s_interrupt_now(void *arg)
{
    atomic_int *asked = arg;
    atomic_fetch_add(asked, 1);
    return true;
}

START_TEST(an_interrupt_ends_the_wait_with_exit_130)
{
    /* The client knows nothing of signals: it asks its callback after
       every wakeup (the CLI's says whether SIGINT came). */
    step_t steps[] = { { ACT_IGNORE, 0, NULL, 0 } };
    fake_t *f = s_fake_start(steps, 1);
    client_t *c = client_new("127.0.0.1", f->port, 10000);
    atomic_int asked = 0;
    client_set_interrupt(c, s_interrupt_now, &asked);
    proto_req_t *req = s_status_req();
    client_err_t err;
    int64_t t0 = clock_mono_ms();
    ck_assert_ptr_null(client_call(c, req, true, &err));
    ck_assert_int_lt(clock_mono_ms() - t0, 3000);
    ck_assert_int_eq(err.kind, CLIENT_ERR_INTERRUPTED);
    ck_assert_int_eq(cli_exit_for_client_error(err.kind), CLI_EXIT_INTERRUPTED);
    ck_assert_str_eq(err.message, "interrupted");
    ck_assert_int_ge(atomic_load(&asked), 1);
    proto_req_destroy(&req);
    client_destroy(&c);
    s_fake_stop(&f);
}
END_TEST

/* Interrupted once the fake master has been asked twice: the client is
   then between "busy" answers (pausing, or waiting for the next one). */
static bool s_interrupt_after_two(void *arg)
{
    fake_t *f = arg;
    return atomic_load(&f->received) >= 2;
}

START_TEST(an_interrupt_while_the_master_is_busy_ends_the_call_with_exit_130)
{
    /* The pauses between "busy" answers are waits like any other: Ctrl-C
       ends them at once, not at the 20 s timeout. */
    step_t steps[] = { { ACT_BUSY_ALWAYS, 0, NULL, 0 } };
    fake_t *f = s_fake_start(steps, 1);
    client_t *c = client_new("127.0.0.1", f->port, 20000);
    client_set_interrupt(c, s_interrupt_after_two, f);
    proto_req_t *req = proto_req_new(PROTO_REQ_CANCEL);
    req->job = 3;
    client_err_t err;
    int64_t t0 = clock_mono_ms();
    ck_assert_ptr_null(client_call(c, req, false, &err));
    ck_assert_msg(clock_mono_ms() - t0 < 10000, "interrupted after %lld ms",
                  (long long) (clock_mono_ms() - t0));
    ck_assert_int_eq(err.kind, CLIENT_ERR_INTERRUPTED);
    ck_assert_int_eq(cli_exit_for_client_error(err.kind), CLI_EXIT_INTERRUPTED);
    ck_assert_str_eq(err.message, "interrupted");
    ck_assert_int_eq(err.code[0], 0);
    proto_req_destroy(&req);
    client_destroy(&c);
    s_fake_stop(&f);
}
END_TEST

START_TEST(a_master_silent_until_the_timeout_is_a_refusal_not_no_reply_once_it_said_busy)
{
    /* One "busy", then the copy sent after the pause is never answered:
       the timeout comes during the wait for it. A master that answered
       is not "unreachable": exit 4 with its words, not exit 3. */
    step_t steps[] = { { ACT_BUSY, 0, NULL, 0 }, { ACT_IGNORE, 0, NULL, 0 } };
    fake_t *f = s_fake_start(steps, 2);
    client_t *c = client_new("127.0.0.1", f->port, 1500);
    proto_req_t *req = proto_req_new(PROTO_REQ_CANCEL);
    req->job = 3;
    client_err_t err;
    ck_assert_ptr_null(client_call(c, req, false, &err));
    ck_assert_int_eq(f->received, 2);
    ck_assert_msg(err.kind == CLIENT_ERR_REFUSED, "kind %d: %s", err.kind, err.message);
    ck_assert_int_eq(cli_exit_for_client_error(err.kind), CLI_EXIT_REFUSED);
    ck_assert_str_eq(err.code, PROTO_E_BUSY);
    ck_assert_str_eq(err.message,
                     "busy: clients have not read 128 MiB of replies, as much as the master "
                     "holds; this request was not run: read the replies you have and send it "
                     "again shortly; still busy after 1 answers in 1.5 s (a longer "
                     "--request-timeout waits longer) (busy)");
    proto_req_destroy(&req);
    client_destroy(&c);
    s_fake_stop(&f);
}
END_TEST

START_TEST(a_wait_ends_at_its_timeout_not_a_request_timeout_later)
{
    /* `ztask wait 1 --timeout 1` against a master that takes the status
       request and never answers, with an 8 s request timeout: the wait
       ends at its own timeout (plus the grace for the last answer), with
       its exit 5, not 8 s later with exit 3. */
    step_t steps[] = { { ACT_IGNORE, 0, NULL, 0 } };
    fake_t *f = s_fake_start(steps, 1);
    cli_t cli = { .host = xstrdup("127.0.0.1"), .port = f->port, .timeout_ms = 8000 };
    cli_wait_opts_t opts = { .timeout = 1.0 };
    int64_t t0 = clock_mono_ms();
    int rc = cli_wait_job(&cli, 1, &opts);
    int64_t took = clock_mono_ms() - t0;
    ck_assert_msg(rc == CLI_EXIT_TIMEOUT && took < 2500, "exit %d after %lld ms", rc,
                  (long long) took);
    ck_assert_int_ge(took, 1000);
    ck_assert_int_eq(f->received, 1);
    client_destroy(&cli.client);
    free(cli.host);
    s_fake_stop(&f);
}
END_TEST

/* ------------------------------------------------------ exits and args */

START_TEST(exit_codes_map_outcomes)
{
    proto_job_t j;
    memset(&j, 0, sizeof j);
    j.total = j.done = 10;
    ck_assert_int_eq(cli_exit_for_job(&j), CLI_EXIT_OK);
    j.done = 9;
    j.failed = 1;
    ck_assert_int_eq(cli_exit_for_job(&j), CLI_EXIT_TASKS_FAILED);
    j.failed = 0;
    j.cancelled = 1;
    ck_assert_int_eq(cli_exit_for_job(&j), CLI_EXIT_TASKS_FAILED);
    ck_assert_int_eq(cli_exit_for_error_code(PROTO_E_AUTH), 6);
    ck_assert_int_eq(cli_exit_for_error_code(PROTO_E_NOT_FOUND), 4);
    ck_assert_int_eq(cli_exit_for_error_code(PROTO_E_STORAGE), 4);
    ck_assert_int_eq(cli_exit_for_error_code(""), 4);
    ck_assert_int_eq(cli_exit_for_error_code(NULL), 4);
    /* The documented numbers. */
    ck_assert_int_eq(CLI_EXIT_USAGE, 2);
    ck_assert_int_eq(CLI_EXIT_UNREACHABLE, 3);
    ck_assert_int_eq(CLI_EXIT_TIMEOUT, 5);
}
END_TEST

START_TEST(task_references_and_numbers_parse_strictly)
{
    int64_t job, index, task;
    ck_assert_int_eq(cli_parse_task_ref("7.42", &job, &index, &task), 0);
    ck_assert_int_eq(job, 7);
    ck_assert_int_eq(index, 42);
    ck_assert_int_eq(task, 0);
    ck_assert_int_eq(cli_parse_task_ref("12345", &job, &index, &task), 0);
    ck_assert_int_eq(task, 12345);
    ck_assert_int_eq(job, 0);
    ck_assert_int_eq(index, -1);
    ck_assert_int_eq(cli_parse_task_ref("7.0", &job, &index, &task), 0);
    ck_assert_int_eq(index, 0);
    const char *bad[] = { "", "0", "-1", "7.", ".3", "7.-1", "x.1", "1.2.3", "7,1", "0.3" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(cli_parse_task_ref(bad[i], &job, &index, &task) == -1, "\"%s\"", bad[i]);

    ck_assert_int_eq(cli_parse_job("3", &job), 0);
    ck_assert_int_eq(cli_parse_job("0", &job), -1);
    ck_assert_int_eq(cli_parse_job("3x", &job), -1);

    double s;
    ck_assert_int_eq(cli_parse_seconds("2.5", &s), 0);
    ck_assert(s == 2.5);
    ck_assert_int_eq(cli_parse_seconds("0", &s), 0);
    ck_assert_int_eq(cli_parse_seconds("-1", &s), -1);
    ck_assert_int_eq(cli_parse_seconds("nan", &s), -1);
    ck_assert_int_eq(cli_parse_seconds("10s", &s), -1);
}
END_TEST

START_TEST(a_wait_the_master_never_answered_says_no_counts)
{
    /* `ztask wait 1 --timeout 1` against a master that takes the status
       request and never answers: nothing was seen, so the timeout says
       no counts (as the Python client's WaitTimeout does), not "0/0
       done", which reads as an empty job. */
    step_t steps[] = { { ACT_IGNORE, 0, NULL, 0 } };
    fake_t *f = s_fake_start(steps, 1);
    cli_t cli = { .host = xstrdup("127.0.0.1"), .port = f->port, .timeout_ms = 8000 };
    cli_wait_opts_t opts = { .timeout = 1.0, .progress = true, .summary = true };
    capture_t cap;
    s_capture_start(&cap, STDERR_FILENO);
    int rc = cli_wait_job(&cli, 1, &opts);
    char *err = s_capture_end(&cap);
    ck_assert_int_eq(rc, CLI_EXIT_TIMEOUT);
    ck_assert_str_eq(err, "ztask: job 1 did not finish within 1 s; it keeps running\n");
    free(err);
    client_destroy(&cli.client);
    free(cli.host);
    s_fake_stop(&f);
}
END_TEST

START_TEST(a_wait_the_master_answered_busy_until_its_timeout_says_busy)
{
    /* `ztask wait 1 --timeout 1` against a master that answers "busy"
       every time: at the wait's timeout, the master's own words and how
       long it stayed busy, exit 4 (a refusal, as when the request timeout
       comes first), not "did not finish" with exit 5, which reads as a
       slow job. A real master answers a status however busy it is (a
       small answer: master/conns.h): only a fake says busy to it. */
    step_t steps[] = { { ACT_BUSY_ALWAYS, 0, NULL, 0 } };
    fake_t *f = s_fake_start(steps, 1);
    cli_t cli = { .host = xstrdup("127.0.0.1"), .port = f->port, .timeout_ms = 8000 };
    cli_wait_opts_t opts = { .timeout = 1.0 };
    capture_t cap;
    s_capture_start(&cap, STDERR_FILENO);
    int rc = cli_wait_job(&cli, 1, &opts);
    char *err = s_capture_end(&cap);
    ck_assert_msg(rc == CLI_EXIT_REFUSED, "exit %d: %s", rc, err);
    ck_assert_msg(strstr(err, "ztask: busy: ") && strstr(err, "when the wait's time ran out")
                      && strstr(err, "(busy)\n") && !strstr(err, "did not finish"),
                  "%s", err);
    free(err);
    client_destroy(&cli.client);
    free(cli.host);
    s_fake_stop(&f);
}
END_TEST

/* Runs `ztask workers ARGS` against the fake at port; returns what it
   printed (caller frees) and the exit code. */
static char *s_workers_output(int port, char **argv, int argc, int *rc)
{
    capture_t cap;
    s_capture_start(&cap, STDOUT_FILENO);
    cli_t cli = { .host = xstrdup("127.0.0.1"), .port = port, .timeout_ms = 5000 };
    *rc = cmd_workers(&cli, argc, argv);
    client_destroy(&cli.client);
    free(cli.host);
    return s_capture_end(&cap);
}

/* A gone worker is listed for 5 minutes after it went, then only with
   --all; the state says whether it left or died. */
START_TEST(workers_lists_the_recently_gone_and_all_of_them_with_all)
{
    step_t steps[] = { { ACT_WORKERS, 0, NULL, 0 }, { ACT_WORKERS, 0, NULL, 0 } };
    fake_t *f = s_fake_start(steps, 2);
    int rc = -1;
    char *a1[] = { "workers", NULL };
    char *out = s_workers_output(f->port, a1, 1, &rc);
    ck_assert_int_eq(rc, CLI_EXIT_OK);
    ck_assert_msg(strstr(out, "busy") && strstr(out, " alive "), "%s", out);
    ck_assert_msg(strstr(out, "leaver") && strstr(out, " left "), "%s", out);
    ck_assert_msg(!strstr(out, "crashed"), "gone 400 s ago, listed anyway: %s", out);
    free(out);
    char *a2[] = { "workers", "--all", NULL };
    out = s_workers_output(f->port, a2, 2, &rc);
    ck_assert_int_eq(rc, CLI_EXIT_OK);
    ck_assert_msg(strstr(out, "crashed") && strstr(out, " dead "), "--all: %s", out);
    free(out);
    s_fake_stop(&f);
}
END_TEST

/* Runs cli_getopt over argv with stderr captured; returns what it said. */
static char *s_getopt_errors(char **argv, int argc, const char *shortopts,
                             const struct option *longopts, int *last)
{
    capture_t cap;
    s_capture_start(&cap, STDERR_FILENO);
    optind = 0;
    int c;
    while ((c = cli_getopt("submit", argc, argv, shortopts, longopts)) != -1) {
        *last = c;
        if (c == '?')
            break;
    }
    return s_capture_end(&cap);
}

START_TEST(option_errors_are_one_line_with_a_hint)
{
    static const struct option longopts[] = { { "timeout", required_argument, NULL, 't' },
                                              { "wait", no_argument, NULL, 'w' },
                                              { NULL, 0, NULL, 0 } };
    int last = 0;
    char *a1[] = { "submit", "--wiat", "--", "true", NULL };
    char *out = s_getopt_errors(a1, 4, "+:h", longopts, &last);
    ck_assert_int_eq(last, '?');
    ck_assert_str_eq(out, "ztask submit: unknown option '--wiat' (did you mean --wait?); see "
                          "'ztask submit --help'\n");
    free(out);

    /* No abbreviations: a prefix names what it could mean, whether one
       option (given with or without its value) or several. */
    char *p5[] = { "submit", "--time", "5", NULL };
    out = s_getopt_errors(p5, 3, "+:h", longopts, &last);
    ck_assert_int_eq(last, '?');
    ck_assert_str_eq(out, "ztask submit: unknown option '--time' (options are not abbreviated: "
                          "did you mean --timeout?); see 'ztask submit --help'\n");
    free(out);
    char *p6[] = { "submit", "--time=5", NULL };
    out = s_getopt_errors(p6, 2, "+:h", longopts, &last);
    ck_assert_int_eq(last, '?');
    ck_assert_ptr_nonnull(strstr(out, "did you mean --timeout?"));
    free(out);
    char *p7[] = { "submit", "--timeout", "--wa", NULL };
    out = s_getopt_errors(p7, 3, "+:h", longopts, &last);
    ck_assert_int_eq(last, 't');   /* "--wa" is --timeout's value here */
    ck_assert_str_eq(out, "");
    free(out);

    char *a2[] = { "submit", "--timeout", NULL };
    out = s_getopt_errors(a2, 2, "+:h", longopts, &last);
    ck_assert_int_eq(last, '?');
    ck_assert_str_eq(out,
                     "ztask submit: option '--timeout' needs a value; see 'ztask submit --help'\n");
    free(out);

    char *a3[] = { "submit", "-x", NULL };
    out = s_getopt_errors(a3, 2, "+:h", longopts, &last);
    ck_assert_str_eq(out, "ztask submit: unknown option '-x'; see 'ztask submit --help'\n");
    free(out);

    char *a4[] = { "submit", "--wait=yes", NULL };
    out = s_getopt_errors(a4, 2, "+:h", longopts, &last);
    ck_assert_int_eq(last, '?');
    ck_assert_ptr_nonnull(strstr(out, "'--wait'"));
    free(out);

    /* "+": the command's own options are left alone. */
    char *a5[] = { "submit", "--wait", "ls", "-l", "--timeout", NULL };
    last = 0;
    out = s_getopt_errors(a5, 5, "+:h", longopts, &last);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(last, 'w');
    ck_assert_int_eq(optind, 2);
    free(out);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "cli_client", .tcase = "client", .timeout_s = 30 });
}
