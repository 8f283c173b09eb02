/* connector: the sockets the worker and the CLI open to a master, and what
   a wait on one ends with. Against real peers on loopback: a closed port,
   a ROUTER that never answers, one that answers, and CURVE servers that
   refuse our key (through a ZAP handler, as the master's allowlist does)
   or hold another key than the one we were given. */
#include "../../common/clock.h"
#include "../../common/connector.h"
#include "../../common/util.h"
#include "../../common/zmqx.h"

#include "../ztest.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* libzmq is not built with TSan (see test_cli_client.c). */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:libzmq.so\n";
}

/* Long enough that a handshake verdict "before the deadline" can only
   mean the wait did not sit it out. */
#define LONG_MS 10000
#define FAST_MS 3000

/* ------------------------------------------------------------ a server */

typedef struct {
    void *ctx;
    void *router;
    void *zap;                   /* ZAP REP when the server checks keys, or NULL */
    int port;
    char pub[41], sec[41];
    atomic_bool stop;
    pthread_t thread;
    bool has_thread;
} server_t;

/* Refuses every key (RFC 27 status 400), as the master does for a key in
   none of its lists. */
static void *s_zap_run(void *arg)
{
    server_t *sv = arg;
    while (!atomic_load(&sv->stop)) {
        zmq_pollitem_t it = { sv->zap, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        zmqx_frames_t req;
        if (zmqx_recv_frames(sv->zap, &req, 16, ZMQ_DONTWAIT) != 0)
            continue;
        const char *id = req.count >= 2 ? req.frames[1] : "";
        size_t idlen = req.count >= 2 ? req.sizes[1] : 0;
        zmqx_send(sv->zap, "1.0", 3, ZMQ_SNDMORE);
        zmqx_send(sv->zap, id, idlen, ZMQ_SNDMORE);
        zmqx_send(sv->zap, "400", 3, ZMQ_SNDMORE);
        zmqx_send(sv->zap, "", 0, ZMQ_SNDMORE);
        zmqx_send(sv->zap, "", 0, ZMQ_SNDMORE);
        zmqx_send(sv->zap, "", 0, 0);
        zmqx_frames_free(&req);
    }
    return NULL;
}

/* A ROUTER on a free loopback port; a CURVE server when curve, refusing
   every client key when refuse. Nobody reads it unless a test does. */
static server_t *s_server_start(bool curve, bool refuse)
{
    server_t *sv = xcalloc(1, sizeof *sv);
    sv->ctx = zmq_ctx_new();
    ck_assert_int_eq(zmq_curve_keypair(sv->pub, sv->sec), 0);
    if (refuse) {
        /* The ZAP handler must be bound before the server socket exists. */
        sv->zap = zmqx_socket(sv->ctx, ZMQ_REP, 0, 0);
        ck_assert_int_eq(zmq_bind(sv->zap, "inproc://zeromq.zap.01"), 0);
        ck_assert_int_eq(pthread_create(&sv->thread, NULL, s_zap_run, sv), 0);
        sv->has_thread = true;
    }
    sv->router = zmqx_socket(sv->ctx, ZMQ_ROUTER, 0, 0);
    if (curve) {
        int on = 1;
        ck_assert_int_eq(zmq_setsockopt(sv->router, ZMQ_CURVE_SERVER, &on, sizeof on), 0);
        ck_assert_int_eq(zmq_setsockopt(sv->router, ZMQ_CURVE_SECRETKEY, sv->sec, 40), 0);
        ck_assert_int_eq(zmq_setsockopt(sv->router, ZMQ_ZAP_DOMAIN, "api", 3), 0);
    }
    ck_assert_int_eq(zmq_bind(sv->router, "tcp://127.0.0.1:*"), 0);
    sv->port = zmqx_bound_port(sv->router);
    ck_assert_int_gt(sv->port, 0);
    return sv;
}

static void s_server_stop(server_t **p)
{
    server_t *sv = *p;
    atomic_store(&sv->stop, true);
    if (sv->has_thread)
        pthread_join(sv->thread, NULL);
    zmq_close(sv->router);
    if (sv->zap)
        zmq_close(sv->zap);
    zmq_ctx_term(sv->ctx);
    free(sv);
    *p = NULL;
}

/* A port nothing listens on: bound once, then closed. */
static int s_closed_port(void)
{
    void *ctx = zmq_ctx_new();
    void *s = zmqx_socket(ctx, ZMQ_ROUTER, 0, 0);
    ck_assert_int_eq(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    int port = zmqx_bound_port(s);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return port;
}

/* Our side: a connector, a context, and one monitored DEALER that has
   sent one frame. */
typedef struct {
    connector_t *conn;
    void *ctx;
    connector_link_t link;
} dealer_t;

static void s_dealer_start(dealer_t *c, const connector_config_t *cfg)
{
    c->conn = connector_new(cfg);
    ck_assert_ptr_nonnull(c->conn);
    c->ctx = zmq_ctx_new();
    connector_err_t why = CONNECTOR_ERR_POLL;
    const connector_socket_t opt = { .type = ZMQ_DEALER, .monitor = true };
    ck_assert_int_eq(connector_open(c->conn, c->ctx, &opt, &c->link, &why), 0);
    ck_assert_int_eq(why, CONNECTOR_OK);
    ck_assert_ptr_nonnull(c->link.sock);
    ck_assert_ptr_nonnull(c->link.monitor);
    ck_assert_int_eq(zmqx_send(c->link.sock, "ping", 4, ZMQ_DONTWAIT), 0);
}

static void s_dealer_stop(dealer_t *c)
{
    connector_close(&c->link);
    ck_assert_ptr_null(c->link.sock);
    ck_assert_ptr_null(c->link.monitor);
    connector_close(&c->link);   /* a closed link may be closed again */
    zmq_ctx_term(c->ctx);
    connector_destroy(&c->conn);
    ck_assert_ptr_null(c->conn);
}

/* Waits on c's link; returns what it ended with, and how long it took
   through *ms. */
static connector_err_t s_wait(dealer_t *c, int64_t timeout_ms, connector_interrupt_fn fn,
                              void *arg, int64_t *ms)
{
    int64_t t0 = clock_mono_ms();
    connector_err_t rc = connector_wait(&c->link, t0 + timeout_ms, fn, arg);
    *ms = clock_mono_ms() - t0;
    return rc;
}

/* ---------------------------------------------------------------- tests */

START_TEST(a_reply_ends_the_wait_and_is_read_from_the_socket)
{
    server_t *sv = s_server_start(false, false);
    dealer_t c;
    s_dealer_start(&c, &(connector_config_t){ .host = "127.0.0.1", .port = sv->port });
    /* The server answers: the envelope back, then the body. */
    zmq_pollitem_t it = { sv->router, 0, ZMQ_POLLIN, 0 };
    ck_assert_int_eq(zmq_poll(&it, 1, LONG_MS), 1);
    zmqx_frames_t req;
    ck_assert_int_eq(zmqx_recv_frames(sv->router, &req, 4, 0), 0);
    ck_assert_int_eq(req.count, 2);
    ck_assert_int_eq(zmqx_send(sv->router, req.frames[0], req.sizes[0], ZMQ_SNDMORE), 0);
    ck_assert_int_eq(zmqx_send(sv->router, "pong", 4, 0), 0);
    zmqx_frames_free(&req);

    int64_t ms;
    ck_assert_int_eq(s_wait(&c, LONG_MS, NULL, NULL, &ms), CONNECTOR_OK);
    size_t len = 0;
    char *reply = zmqx_recv(c.link.sock, &len, ZMQ_DONTWAIT);
    ck_assert_str_eq(reply, "pong");
    free(reply);
    s_dealer_stop(&c);
    s_server_stop(&sv);
}
END_TEST

START_TEST(a_closed_port_is_refused_before_the_deadline)
{
    dealer_t c;
    s_dealer_start(&c, &(connector_config_t){ .host = "127.0.0.1", .port = s_closed_port() });
    /* The deadline is far: only the refusal can end the wait. */
    int64_t ms;
    ck_assert_int_eq(s_wait(&c, 10 * LONG_MS, NULL, NULL, &ms), CONNECTOR_ERR_REFUSED);
    ck_assert(!c.link.connected);
    ck_assert(connector_resolves(c.conn));
    s_dealer_stop(&c);
}
END_TEST

START_TEST(a_host_that_does_not_resolve_is_refused_before_the_deadline)
{
    dealer_t c;
    s_dealer_start(&c, &(connector_config_t){ .host = "no-such-host.invalid", .port = 5555 });
    int64_t ms;
    ck_assert_int_eq(s_wait(&c, 10 * LONG_MS, NULL, NULL, &ms), CONNECTOR_ERR_REFUSED);
    ck_assert(!connector_resolves(c.conn));
    s_dealer_stop(&c);
}
END_TEST

START_TEST(without_a_monitor_a_closed_port_times_out_at_the_deadline)
{
    dealer_t c;
    s_dealer_start(&c, &(connector_config_t){ .host = "127.0.0.1", .port = s_closed_port() });
    connector_close(&c.link);
    connector_err_t why;
    ck_assert_int_eq(connector_open(c.conn, c.ctx,
                                    &(connector_socket_t){ .type = ZMQ_DEALER, .monitor = false },
                                    &c.link, &why),
                     0);
    int64_t ms;
    ck_assert_int_eq(s_wait(&c, 300, NULL, NULL, &ms), CONNECTOR_ERR_TIMEOUT);
    ck_assert_int_ge(ms, 300);
    s_dealer_stop(&c);
}
END_TEST

START_TEST(a_silent_peer_is_a_timeout_on_a_connection)
{
    server_t *sv = s_server_start(false, false);
    dealer_t c;
    s_dealer_start(&c, &(connector_config_t){ .host = "127.0.0.1", .port = sv->port });
    int64_t ms;
    ck_assert_int_eq(s_wait(&c, 300, NULL, NULL, &ms), CONNECTOR_ERR_TIMEOUT);
    ck_assert_int_ge(ms, 300);
    ck_assert(c.link.connected);
    s_dealer_stop(&c);
    s_server_stop(&sv);
}
END_TEST

START_TEST(a_key_the_server_refuses_fails_the_handshake_at_once)
{
    server_t *sv = s_server_start(true, true);
    char pub[41], sec[41];
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
    dealer_t c;
    s_dealer_start(&c, &(connector_config_t){ .host = "127.0.0.1",
                                              .port = sv->port,
                                              .server_key = sv->pub,
                                              .public_key = pub,
                                              .secret_key = sec });
    ck_assert(connector_curve(c.conn));
    int64_t ms;
    ck_assert_int_eq(s_wait(&c, LONG_MS, NULL, NULL, &ms), CONNECTOR_ERR_HANDSHAKE);
    ck_assert_int_lt(ms, FAST_MS);
    ck_assert_int_eq(c.link.failure.kind, CONNECTOR_EV_REFUSED);
    ck_assert_uint_eq(c.link.failure.value, 400);
    s_dealer_stop(&c);
    s_server_stop(&sv);
}
END_TEST

START_TEST(a_server_with_another_key_fails_the_handshake_at_once)
{
    server_t *sv = s_server_start(true, false);
    char pub[41], sec[41], other[41], osec[41];
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
    ck_assert_int_eq(zmq_curve_keypair(other, osec), 0);
    /* We were told the server's key is `other`: it cannot read our HELLO
       and hangs up, without detail, on every attempt. */
    dealer_t c;
    s_dealer_start(&c, &(connector_config_t){ .host = "127.0.0.1",
                                              .port = sv->port,
                                              .server_key = other,
                                              .public_key = pub,
                                              .secret_key = sec });
    int64_t ms;
    ck_assert_int_eq(s_wait(&c, LONG_MS, NULL, NULL, &ms), CONNECTOR_ERR_HANDSHAKE);
    ck_assert_int_lt(ms, FAST_MS);
    ck_assert_int_eq(c.link.failure.kind, CONNECTOR_EV_NO_DETAIL);
    ck_assert_int_ge(c.link.no_detail, CONNECTOR_NO_DETAIL_FAILURES);
    ck_assert(c.link.connected);
    s_dealer_stop(&c);
    s_server_stop(&sv);
}
END_TEST

static bool s_stop_now(void *arg)
{
    atomic_int *calls = arg;
    atomic_fetch_add(calls, 1);
    return true;
}

START_TEST(the_interrupt_callback_is_asked_at_every_wakeup)
{
    server_t *sv = s_server_start(false, false);
    dealer_t c;
    s_dealer_start(&c, &(connector_config_t){ .host = "127.0.0.1", .port = sv->port });
    /* The server never answers, but the connection's events wake the
       wait (as a signal's EINTR does in the CLI): the callback is asked
       then, and its "stop" ends the wait long before the deadline. */
    atomic_int calls = 0;
    int64_t ms;
    ck_assert_int_eq(s_wait(&c, LONG_MS, s_stop_now, &calls, &ms), CONNECTOR_ERR_INTERRUPTED);
    ck_assert_int_eq(atomic_load(&calls), 1);
    ck_assert_int_lt(ms, FAST_MS);
    s_dealer_stop(&c);
    s_server_stop(&sv);
}
END_TEST

START_TEST(addresses_are_checked_and_written_for_messages_and_endpoints)
{
    char pub[41], sec[41];
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
    ck_assert_ptr_null(connector_new(&(connector_config_t){ .host = "", .port = 5555 }));
    ck_assert_ptr_null(connector_new(&(connector_config_t){ .host = NULL, .port = 5555 }));
    ck_assert_ptr_null(connector_new(&(connector_config_t){ .host = "h", .port = 0 }));
    ck_assert_ptr_null(connector_new(&(connector_config_t){ .host = "h", .port = 65536 }));
    /* All three keys or none, each valid Z85. */
    ck_assert_ptr_null(connector_new(
        &(connector_config_t){ .host = "h", .port = 1, .server_key = pub, .public_key = pub }));
    ck_assert_ptr_null(connector_new(&(connector_config_t){
        .host = "h", .port = 1, .server_key = "short", .public_key = pub, .secret_key = sec }));

    connector_t *v4 = connector_new(&(connector_config_t){ .host = "build01", .port = 5555 });
    ck_assert_str_eq(connector_address(v4), "build01:5555");
    ck_assert_str_eq(connector_host(v4), "build01");
    ck_assert_int_eq(connector_port(v4), 5555);
    ck_assert(!connector_curve(v4));
    char ep[128];
    connector_endpoint(v4, 0, ep, sizeof ep);
    ck_assert_str_eq(ep, "tcp://build01:5555");
    connector_endpoint(v4, 6001, ep, sizeof ep);
    ck_assert_str_eq(ep, "tcp://build01:6001");
    connector_destroy(&v4);

    connector_t *v6 = connector_new(&(connector_config_t){ .host = "::1", .port = 5555 });
    ck_assert_str_eq(connector_address(v6), "[::1]:5555");
    connector_endpoint(v6, 5556, ep, sizeof ep);
    ck_assert_str_eq(ep, "tcp://[::1]:5556");
    connector_destroy(&v6);
    connector_destroy(&v6);   /* accepts NULL */
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "connector", .tcase = "connector", .timeout_s = 30 });
}
