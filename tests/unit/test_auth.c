/* master with CURVE: who may do what, observed through real CURVE sockets
   against a real master on its own thread (keys in a temporary directory,
   in-memory database, loopback). The multi-host test (tests/netns) covers
   the same across hosts as root; these run everywhere. */
#include "../../common/keys.h"
#include "../../common/util.h"
#include "../../common/zmqx.h"
#include "../../master/master.h"
#include "../../proto/proto.h"

#include "../ztest.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

typedef struct {
    char dir[64];
    keypair_t master, alice, w1, w2; /* alice: a client; w1, w2: workers */
    master_t *m;
    pthread_t thread;
    volatile sig_atomic_t stop;
    void *ctx;
    char api[64];
} env_t;

static void *s_run(void *arg)
{
    env_t *e = arg;
    master_run(e->m, &e->stop, NULL);
    return NULL;
}

static void s_keygen(env_t *e, const char *sub, const char *name, keypair_t *kp)
{
    char dir[128], err[256];
    snprintf(dir, sizeof dir, "%s/%s", e->dir, sub);
    mkdir(dir, 0700);
    ck_assert_msg(keys_generate(dir, name, kp, err, sizeof err) == 0, "%s", err);
}

static void s_start(env_t *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/ztask-auth-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(e->dir));
    s_keygen(e, "master", "master", &e->master);
    s_keygen(e, "clients", "alice", &e->alice);
    s_keygen(e, "workers", "w1", &e->w1);
    s_keygen(e, "workers", "w2", &e->w2);
    char secret[128], clients[128], workers[128], err[256];
    snprintf(secret, sizeof secret, "%s/master/master.key", e->dir);
    snprintf(clients, sizeof clients, "%s/clients", e->dir);
    snprintf(workers, sizeof workers, "%s/workers", e->dir);
    master_config_t cfg;
    master_config_defaults(&cfg);
    cfg.db_path = ":memory:";
    cfg.port = 0;
    cfg.curve_secret = secret;
    cfg.clients = clients;
    cfg.workers = workers;
    e->m = master_new(&cfg, err, sizeof err);
    ck_assert_msg(e->m != NULL, "%s", err);
    snprintf(e->api, sizeof e->api, "tcp://127.0.0.1:%d", master_api_port(e->m));
    ck_assert_int_eq(pthread_create(&e->thread, NULL, s_run, e), 0);
    e->ctx = zmq_ctx_new();
}

static void s_stop(env_t *e)
{
    __atomic_store_n(&e->stop, 1, __ATOMIC_RELAXED);
    pthread_join(e->thread, NULL);
    master_destroy(&e->m);
    zmq_ctx_term(e->ctx);
    const char *subs[] = { "master", "clients", "workers" };
    for (int i = 0; i < 3; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s/%s", e->dir, subs[i]);
        char *names[] = { "master", "alice", "w1", "w2" };
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 2; k++) {
                char f[320];
                snprintf(f, sizeof f, "%s/%s.%s", cmd, names[j], k ? "pub" : "key");
                unlink(f);
            }
        rmdir(cmd);
    }
    rmdir(e->dir);
}

/* A socket of type that speaks CURVE as kp to the master, connected to
   tcp://127.0.0.1:port (the API when port is 0). With monitor, its
   handshake events go to inproc://NAME for s_handshake. */
static void *s_sock(env_t *e, int type, const keypair_t *kp, int port, const char *monitor)
{
    void *s = zmqx_socket(e->ctx, type, 0, -1);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, e->master.pub, KEY_Z85_LEN), 0);
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, kp->pub, KEY_Z85_LEN), 0);
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, kp->sec, KEY_Z85_LEN), 0);
    if (monitor)
        ck_assert_int_eq(zmq_socket_monitor(s, monitor,
                                            ZMQ_EVENT_HANDSHAKE_SUCCEEDED
                                                | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH),
                         0);
    char ep[64];
    if (port)
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    ck_assert_int_eq(zmq_connect(s, port ? ep : e->api), 0);
    return s;
}

/* The first handshake event of a monitored socket (5 s bound): 1 when it
   succeeded, 0 when the ZAP handler refused the key. */
static int s_handshake(env_t *e, const char *monitor)
{
    void *mon = zmqx_socket(e->ctx, ZMQ_PAIR, 0, -1);
    ck_assert_int_eq(zmq_connect(mon, monitor), 0);
    zmq_pollitem_t it = { mon, 0, ZMQ_POLLIN, 0 };
    ck_assert_msg(zmq_poll(&it, 1, 5000) == 1, "no handshake event within 5 s");
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, mon, 0), 6);
    uint16_t event;
    memcpy(&event, zmq_msg_data(&m), sizeof event);
    zmq_msg_close(&m);
    zmq_msg_init(&m);
    zmq_msg_recv(&m, mon, 0); /* the endpoint */
    zmq_msg_close(&m);
    zmq_close(mon);
    return event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
}

/* One request, one reply (5 s bound). */
static proto_reply_t *s_call(void *sock, proto_req_t *req)
{
    char *text = proto_req_encode(req);
    ck_assert_int_eq(zmqx_send(sock, text, strlen(text), 0), 0);
    free(text);
    zmq_pollitem_t it = { sock, 0, ZMQ_POLLIN, 0 };
    ck_assert_msg(zmq_poll(&it, 1, 5000) == 1, "no reply within 5 s");
    size_t len;
    char *buf = zmqx_recv(sock, &len, 0);
    ck_assert_ptr_nonnull(buf);
    proto_err_t err;
    proto_reply_t *rep = proto_reply_decode(buf, len, req->type, &err);
    ck_assert_msg(rep != NULL, "bad reply: %s", err.message);
    free(buf);
    proto_req_destroy(&req);
    return rep;
}

static proto_req_t *s_hello_req(const char *name, int pid)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_HELLO);
    req->name = xstrdup(name);
    req->host = xstrdup("testhost");
    req->pid = pid;
    req->threads = 1;
    return req;
}

static proto_req_t *s_submit_req(void)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_SUBMIT);
    req->tasks = xcalloc(2, sizeof(proto_spec_t *));
    proto_err_t err;
    req->tasks[0] = proto_spec_decode("{\"fn\":\"noop\"}", 13, &err);
    req->ntasks = 1;
    return req;
}

static proto_req_t *s_drain_req(const char *worker)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_DRAIN);
    req->worker = xstrdup(worker);
    return req;
}

/* The reply is a refusal with code auth. */
static void s_assert_auth_refused(proto_reply_t *rep, const char *what)
{
    ck_assert_msg(!rep->ok && strcmp(rep->error.code, PROTO_E_AUTH) == 0,
                  "%s: want an auth refusal, got ok=%d code=%s", what, rep->ok, rep->error.code);
}

START_TEST(clients_and_workers_keep_to_their_roles)
{
    env_t e;
    s_start(&e);
    void *alice = s_sock(&e, ZMQ_DEALER, &e.alice, 0, NULL);
    void *w1 = s_sock(&e, ZMQ_DEALER, &e.w1, 0, NULL);

    proto_reply_t *rep = s_call(alice, s_submit_req());
    ck_assert_msg(rep->ok, "a client key submits: %s", rep->error.message);
    proto_reply_destroy(&rep);
    rep = s_call(w1, s_submit_req());
    s_assert_auth_refused(rep, "a worker key submits");
    proto_reply_destroy(&rep);

    rep = s_call(alice, s_hello_req("alice", 1));
    s_assert_auth_refused(rep, "a client key registers as a worker");
    proto_reply_destroy(&rep);
    rep = s_call(w1, s_hello_req("w1", 1));
    ck_assert_msg(rep->ok, "a worker key registers: %s", rep->error.message);
    proto_reply_destroy(&rep);

    zmq_close(alice);
    zmq_close(w1);
    s_stop(&e);
}
END_TEST

START_TEST(a_worker_key_drains_only_its_own_worker_and_cannot_take_over_another)
{
    env_t e;
    s_start(&e);
    void *alice = s_sock(&e, ZMQ_DEALER, &e.alice, 0, NULL);
    void *w1 = s_sock(&e, ZMQ_DEALER, &e.w1, 0, NULL);
    void *w2 = s_sock(&e, ZMQ_DEALER, &e.w2, 0, NULL);
    proto_reply_t *rep = s_call(w1, s_hello_req("w1", 11));
    ck_assert(rep->ok);
    ck_assert_str_eq(rep->worker_id, "w1");
    proto_reply_destroy(&rep);
    rep = s_call(w2, s_hello_req("w2", 12));
    ck_assert(rep->ok);
    proto_reply_destroy(&rep);

    /* w2's key registering with w1's name, host and pid: a new record,
       not w1's (which would close w1's pipe and take its tasks). */
    rep = s_call(w2, s_hello_req("w1", 11));
    ck_assert(rep->ok);
    ck_assert_msg(strcmp(rep->worker_id, "w1") != 0, "w2's key took over w1's record");
    proto_reply_destroy(&rep);

    rep = s_call(w2, s_drain_req("w1"));
    s_assert_auth_refused(rep, "w2's key drains w1");
    proto_reply_destroy(&rep);
    rep = s_call(w1, s_drain_req("w1"));
    ck_assert_msg(rep->ok, "w1's key drains w1: %s", rep->error.message);
    proto_reply_destroy(&rep);
    rep = s_call(alice, s_drain_req("w2"));
    ck_assert_msg(rep->ok, "a client key drains any worker: %s", rep->error.message);
    proto_reply_destroy(&rep);

    zmq_close(alice);
    zmq_close(w1);
    zmq_close(w2);
    s_stop(&e);
}
END_TEST

START_TEST(a_task_pipe_admits_only_the_key_that_registered_it)
{
    env_t e;
    s_start(&e);
    void *w1 = s_sock(&e, ZMQ_DEALER, &e.w1, 0, NULL);
    proto_reply_t *rep = s_call(w1, s_hello_req("w1", 21));
    ck_assert(rep->ok);
    int port = rep->task_port;
    proto_reply_destroy(&rep);

    void *thief = s_sock(&e, ZMQ_PULL, &e.w2, port, "inproc://mon-thief");
    ck_assert_msg(s_handshake(&e, "inproc://mon-thief") == 0,
                  "another worker key connected to w1's task pipe");
    void *own = s_sock(&e, ZMQ_PULL, &e.w1, port, "inproc://mon-own");
    ck_assert_msg(s_handshake(&e, "inproc://mon-own") == 1, "w1's key refused on its own pipe");

    zmq_close(thief);
    zmq_close(own);
    zmq_close(w1);
    s_stop(&e);
}
END_TEST

/* A report naming w1 sent with w2's key changes nothing. The forged
   result goes first on w2's connection, then w2's own bye: once w2 shows
   dead, the forged result has been handled (one connection is FIFO). */
START_TEST(reports_count_only_from_the_key_that_registered_the_worker)
{
    env_t e;
    s_start(&e);
    void *alice = s_sock(&e, ZMQ_DEALER, &e.alice, 0, NULL);
    void *w1 = s_sock(&e, ZMQ_DEALER, &e.w1, 0, NULL);
    void *w2 = s_sock(&e, ZMQ_DEALER, &e.w2, 0, NULL);
    proto_reply_t *rep = s_call(w1, s_hello_req("w1", 31));
    ck_assert(rep->ok);
    int task_port = rep->task_port, report_port = rep->report_port;
    proto_reply_destroy(&rep);
    rep = s_call(w2, s_hello_req("w2", 32));
    ck_assert(rep->ok);
    proto_reply_destroy(&rep);
    void *pipe1 = s_sock(&e, ZMQ_PULL, &e.w1, task_port, NULL);
    void *push1 = s_sock(&e, ZMQ_PUSH, &e.w1, report_port, NULL);
    void *push2 = s_sock(&e, ZMQ_PUSH, &e.w2, report_port, NULL);

    rep = s_call(alice, s_submit_req());
    ck_assert(rep->ok);
    int64_t job = rep->job;
    proto_reply_destroy(&rep);

    /* w1 gets the task (pings may come first). */
    proto_pipe_t *msg = NULL;
    for (int i = 0; i < 50 && !msg; i++) {
        zmq_pollitem_t it = { pipe1, 0, ZMQ_POLLIN, 0 };
        ck_assert_msg(zmq_poll(&it, 1, 5000) == 1, "no task for w1 within 5 s");
        size_t len;
        char *buf = zmqx_recv(pipe1, &len, 0);
        proto_err_t err;
        msg = proto_pipe_decode(buf, len, &err);
        free(buf);
        ck_assert_ptr_nonnull(msg);
        if (msg->type != PROTO_PIPE_TASKS)
            proto_pipe_destroy(&msg);
    }
    ck_assert_ptr_nonnull(msg);
    int64_t task = msg->tasks[0].id;
    int attempt = msg->tasks[0].attempt;
    proto_pipe_destroy(&msg);

    proto_report_t *forged = proto_report_new(PROTO_REP_RESULTS, "w1");
    forged->results = xcalloc(1, sizeof(proto_result_t *));
    forged->results[0] = proto_result_new();
    forged->results[0]->task = task;
    forged->results[0]->attempt = attempt;
    forged->results[0]->status = PROTO_ST_FAILED;
    forged->nresults = 1;
    char *text = proto_report_encode(forged);
    ck_assert_int_eq(zmqx_send(push2, text, strlen(text), 0), 0);
    free(text);
    proto_report_t *bye = proto_report_new(PROTO_REP_BYE, "w2");
    text = proto_report_encode(bye);
    ck_assert_int_eq(zmqx_send(push2, text, strlen(text), 0), 0);
    free(text);
    proto_report_destroy(&bye);

    bool w2_gone = false;
    for (int i = 0; i < 500 && !w2_gone; i++) {
        rep = s_call(alice, proto_req_new(PROTO_REQ_WORKERS));
        for (int j = 0; j < rep->nworkers; j++)
            if (strcmp(rep->workers[j].id, "w2") == 0 && !rep->workers[j].alive)
                w2_gone = true;
        proto_reply_destroy(&rep);
        if (!w2_gone)
            usleep(10000); /* polls the master's view; each call is a round trip */
    }
    ck_assert_msg(w2_gone, "w2's bye was not handled within 5 s");

    proto_req_t *st = proto_req_new(PROTO_REQ_STATUS);
    st->job = job;
    rep = s_call(alice, st);
    ck_assert(rep->ok && rep->njobs == 1);
    ck_assert_msg(rep->jobs[0].failed == 0 && rep->jobs[0].done == 0,
                  "a result forged with another worker's key counted: done %lld failed %lld",
                  (long long) rep->jobs[0].done, (long long) rep->jobs[0].failed);
    proto_reply_destroy(&rep);

    /* w1's own result, with its own key, counts. */
    forged->results[0]->status = PROTO_ST_DONE;
    text = proto_report_encode(forged);
    ck_assert_int_eq(zmqx_send(push1, text, strlen(text), 0), 0);
    free(text);
    proto_report_destroy(&forged);
    st = proto_req_new(PROTO_REQ_STATUS);
    st->job = job;
    st->wait_ms = 5000;
    rep = s_call(alice, st);
    ck_assert(rep->ok && rep->njobs == 1);
    ck_assert_int_eq(rep->jobs[0].done, 1);
    proto_reply_destroy(&rep);

    zmq_close(pipe1);
    zmq_close(push1);
    zmq_close(push2);
    zmq_close(alice);
    zmq_close(w1);
    zmq_close(w2);
    s_stop(&e);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "auth", .tcase = "roles", .timeout_s = 30 });
}
