/*  ceiling: what ZeroMQ and cJSON alone allow, with no state at all.

    One producer PUSHes N tiny JSON task objects; W worker processes PULL
    them, parse each with cJSON, build and print one small JSON result each
    and PUSH it to a collector's PULL. The clock runs from the first task
    sent to the last result received. This is the ceiling ztask is compared
    with: the same messages per task (one task object in, one result object
    out, both through cJSON), minus the master's bookkeeping, SQLite and
    batching.

      ceiling [--n N] [--workers W] [--timeout SEC]     prints one JSON line
      ceiling --rtt K [--timeout SEC]                    round trips, one JSON line
      ceiling --worker TASK_PORT RESULT_PORT             (spawned by itself)

    --rtt: the floor of a task's round trip through a broker, for the
    single-task latency rows. A client (a thread with its own ZeroMQ
    context, so its own I/O thread, as a separate program would have)
    sends a one-task request to a relay (the main thread: ROUTER); the
    relay parses it and PUSHes a task to one worker process, which parses
    it and PUSHes a result back; the relay parses that and answers the
    client, which parses the answer. Four TCP messages and a cJSON parse
    at each stop: ztask's path, minus its state, its pool thread and its
    batching. K samples, one at a time; p50/p99 of submit -> answer.

    Processes: the parent binds both sockets on 127.0.0.1 (ports chosen by
    the kernel) before it spawns the workers (fork + exec of itself, so no
    ZeroMQ context crosses a fork). Each worker says "ready" on the result
    channel once connected, and the clock starts when every worker is
    ready, so connection set-up is not measured and PUSH spreads tasks over
    all of them. The parent runs the producer in a second thread (its own
    socket) and collects in the main thread; when done it SIGTERMs and
    reaps the workers. Every wait is bounded by --timeout (default 120 s).
*/
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "quantile.h"

extern char **environ;

#define MAX_WORKERS 64

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *s_socket(void *ctx, int type)
{
    void *s = zmq_socket(ctx, type);
    int linger = 0;
    if (s)
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    return s;
}

static int s_bound_port(void *sock)
{
    char ep[256];
    size_t len = sizeof ep;
    if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &len) != 0)
        return -1;
    const char *colon = strrchr(ep, ':');
    return colon ? atoi(colon + 1) : -1;
}

/* Sends a cJSON object as one frame and deletes it. */
static int s_send_json(void *sock, cJSON **obj)
{
    char *text = cJSON_PrintUnformatted(*obj);
    cJSON_Delete(*obj);
    *obj = NULL;
    if (!text)
        return -1;
    int rc = zmq_send(sock, text, strlen(text), 0) < 0 ? -1 : 0;
    cJSON_free(text);
    return rc;
}

/* ---- worker ---- */

static volatile sig_atomic_t s_stop;

static void s_on_term(int sig)
{
    (void) sig;
    s_stop = 1;
}

static int s_worker(int task_port, int result_port)
{
    signal(SIGTERM, s_on_term);
    void *ctx = zmq_ctx_new();
    void *in = s_socket(ctx, ZMQ_PULL);
    void *out = s_socket(ctx, ZMQ_PUSH);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", task_port);
    zmq_connect(in, ep);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", result_port);
    zmq_connect(out, ep);
    cJSON *ready = cJSON_CreateObject();
    cJSON_AddStringToObject(ready, "type", "ready");
    s_send_json(out, &ready);
    char buf[4096];
    /* Bounded: the parent SIGTERMs us; a 1 s receive timeout lets us see it. */
    int rcvtimeo = 1000;
    zmq_setsockopt(in, ZMQ_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo);
    while (!s_stop) {
        int n = zmq_recv(in, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            break;
        }
        if ((size_t) n > sizeof buf)
            continue;   /* truncated: not one of ours */
        cJSON *task = cJSON_ParseWithLength(buf, (size_t) n);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(task, "id");
        if (!cJSON_IsNumber(id)) {
            cJSON_Delete(task);
            continue;
        }
        cJSON *res = cJSON_CreateObject();
        cJSON_AddNumberToObject(res, "task", id->valuedouble);
        cJSON_AddNumberToObject(res, "attempt", 1);
        cJSON_AddStringToObject(res, "status", "done");
        cJSON_AddNullToObject(res, "result");
        cJSON_Delete(task);
        if (s_send_json(out, &res) != 0)
            break;
    }
    zmq_close(in);
    zmq_close(out);
    zmq_ctx_term(ctx);
    return 0;
}

/* ---- parent ---- */

/* The producer thread's state; its socket is handed over by main before
   the thread starts and given back when it is joined. */
typedef struct {
    void *sock;
    int64_t n;
    int64_t deadline;   /* monotonic us: give up sending after this */
    int rc;
} producer_t;

static void *s_producer(void *arg)
{
    producer_t *p = arg;
    for (int64_t i = 1; i <= p->n; i++) {
        cJSON *task = cJSON_CreateObject();
        cJSON_AddNumberToObject(task, "id", (double) i);
        cJSON_AddNumberToObject(task, "attempt", 1);
        cJSON_AddNumberToObject(task, "job", 1);
        cJSON *spec = cJSON_AddObjectToObject(task, "spec");
        cJSON_AddStringToObject(spec, "fn", "noop");
        char *text = cJSON_PrintUnformatted(task);
        cJSON_Delete(task);
        /* ZMQ_SNDTIMEO is set: a full pipe (dead workers) cannot block us
           past the deadline. */
        int rc = -1;
        while (text && s_now_us() < p->deadline) {
            rc = zmq_send(p->sock, text, strlen(text), 0) < 0 ? -1 : 0;
            if (rc == 0 || (errno != EAGAIN && errno != EINTR))
                break;
        }
        cJSON_free(text);
        if (rc != 0) {
            p->rc = -1;
            break;
        }
    }
    return NULL;
}

/* ---- round trips through a relay (--rtt) ---- */

typedef struct {
    int port;           /* the relay's ROUTER */
    int samples;
    int64_t deadline;   /* monotonic us */
    int64_t *lat_us;    /* samples entries, filled by the client */
    int done;           /* samples completed; read by main after join */
    atomic_int finished;
} rtt_client_t;

static void *s_rtt_client(void *arg)
{
    rtt_client_t *c = arg;
    void *ctx = zmq_ctx_new();
    void *sock = s_socket(ctx, ZMQ_DEALER);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", c->port);
    zmq_connect(sock, ep);
    char buf[4096];
    for (int i = 0; i < c->samples && s_now_us() < c->deadline; i++) {
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "type", "submit");
        cJSON *spec = cJSON_AddObjectToObject(req, "spec");
        cJSON_AddStringToObject(spec, "fn", "noop");
        int64_t t0 = s_now_us();
        if (s_send_json(sock, &req) != 0)
            break;
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        bool got = false;
        while (!got && s_now_us() < c->deadline) {
            if (zmq_poll(&item, 1, 200) <= 0)
                continue;
            int n = zmq_recv(sock, buf, sizeof buf, 0);
            if (n < 0 || (size_t) n > sizeof buf)
                continue;
            cJSON *rep = cJSON_ParseWithLength(buf, (size_t) n);
            got = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(rep, "task"));
            cJSON_Delete(rep);
        }
        if (!got)
            break;
        c->lat_us[i] = s_now_us() - t0;
        c->done = i + 1;
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    atomic_store(&c->finished, 1);
    return NULL;
}

static int s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

static int s_rtt(const char *self_exe, int samples, int timeout_s)
{
    void *ctx = zmq_ctx_new();
    void *front = s_socket(ctx, ZMQ_ROUTER);
    void *tasks = s_socket(ctx, ZMQ_PUSH);
    void *results = s_socket(ctx, ZMQ_PULL);
    if (zmq_bind(front, "tcp://127.0.0.1:*") != 0 || zmq_bind(tasks, "tcp://127.0.0.1:*") != 0
        || zmq_bind(results, "tcp://127.0.0.1:*") != 0) {
        fprintf(stderr, "ceiling: bind: %s\n", zmq_strerror(errno));
        return 1;
    }
    char tport[16], rport[16];
    snprintf(tport, sizeof tport, "%d", s_bound_port(tasks));
    snprintf(rport, sizeof rport, "%d", s_bound_port(results));
    pid_t pid;
    char *wargv[] = {(char *) self_exe, "--worker", tport, rport, NULL};
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, wargv, environ) != 0) {
        fprintf(stderr, "ceiling: cannot spawn a worker\n");
        return 1;
    }
    rtt_client_t c = {.port = s_bound_port(front),
                      .samples = samples,
                      .deadline = s_now_us() + (int64_t) timeout_s * 1000000,
                      .lat_us = calloc((size_t) samples, sizeof(int64_t))};
    atomic_init(&c.finished, 0);
    pthread_t thr;
    bool started = false, worker_ready = false;
    char buf[4096], id[256];
    size_t idlen = 0;
    int64_t next_id = 1;
    while (s_now_us() < c.deadline && !(started && atomic_load(&c.finished))) {
        zmq_pollitem_t items[2] = {{front, 0, ZMQ_POLLIN, 0}, {results, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, 200) <= 0)
            continue;
        if (items[1].revents & ZMQ_POLLIN) {
            int n = zmq_recv(results, buf, sizeof buf, 0);
            if (n >= 0 && (size_t) n <= sizeof buf) {
                cJSON *res = cJSON_ParseWithLength(buf, (size_t) n);
                const cJSON *task = cJSON_GetObjectItemCaseSensitive(res, "task");
                if (!worker_ready) {
                    /* The worker's "ready": now the client may start. */
                    worker_ready = true;
                    started = pthread_create(&thr, NULL, s_rtt_client, &c) == 0;
                    if (!started)
                        break;
                } else if (cJSON_IsNumber(task) && idlen > 0) {
                    cJSON *rep = cJSON_CreateObject();
                    cJSON_AddBoolToObject(rep, "ok", true);
                    cJSON_AddNumberToObject(rep, "task", task->valuedouble);
                    zmq_send(front, id, idlen, ZMQ_SNDMORE);
                    s_send_json(front, &rep);
                }
                cJSON_Delete(res);
            }
        }
        if (items[0].revents & ZMQ_POLLIN) {
            int n = zmq_recv(front, id, sizeof id, 0);
            int more = 0;
            size_t ml = sizeof more;
            zmq_getsockopt(front, ZMQ_RCVMORE, &more, &ml);
            if (n <= 0 || (size_t) n > sizeof id || !more)
                continue;
            idlen = (size_t) n;
            n = zmq_recv(front, buf, sizeof buf, 0);
            if (n < 0 || (size_t) n > sizeof buf)
                continue;
            cJSON *req = cJSON_ParseWithLength(buf, (size_t) n);
            const cJSON *spec = cJSON_GetObjectItemCaseSensitive(req, "spec");
            if (cJSON_IsObject(spec)) {
                cJSON *task = cJSON_CreateObject();
                cJSON_AddNumberToObject(task, "id", (double) next_id++);
                cJSON_AddNumberToObject(task, "attempt", 1);
                cJSON_AddNumberToObject(task, "job", 1);
                cJSON_AddItemToObject(task, "spec", cJSON_Duplicate(spec, true));
                s_send_json(tasks, &task);
            }
            cJSON_Delete(req);
        }
    }
    if (started)
        pthread_join(thr, NULL);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    zmq_close(front);
    zmq_close(tasks);
    zmq_close(results);
    zmq_ctx_term(ctx);
    int rc = 1;
    if (c.done == samples) {
        qsort(c.lat_us, (size_t) samples, sizeof *c.lat_us, s_cmp_i64);
        int64_t sum = 0;
        for (int i = 0; i < samples; i++)
            sum += c.lat_us[i];
        printf("{\"samples\":%d,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"mean_ms\":%.4f}\n", samples,
               (double) quantile_nearest_rank(c.lat_us, samples, 0.50) / 1e3,
               (double) quantile_nearest_rank(c.lat_us, samples, 0.99) / 1e3,
               (double) sum / samples / 1e3);
        rc = 0;
    } else {
        fprintf(stderr, "ceiling: %d of %d round trips before the timeout\n", c.done, samples);
    }
    free(c.lat_us);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--worker") == 0)
        return s_worker(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 3 && strcmp(argv[1], "--rtt") == 0) {
        int samples = atoi(argv[2]), timeout_s = 120;
        if (argc == 5 && strcmp(argv[3], "--timeout") == 0)
            timeout_s = atoi(argv[4]);
        if (samples < 1 || samples > 1000000 || timeout_s < 1 || (argc != 3 && argc != 5)) {
            fprintf(stderr, "usage: ceiling --rtt K [--timeout SEC]\n");
            return 2;
        }
        return s_rtt(argv[0], samples, timeout_s);
    }
    int64_t n = 200000;
    int workers = 2, timeout_s = 120;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--n") == 0)
            n = strtoll(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--workers") == 0)
            workers = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--timeout") == 0)
            timeout_s = atoi(argv[i + 1]);
        else
            break;
    }
    if (n < 1 || workers < 1 || workers > MAX_WORKERS || timeout_s < 1 || argc % 2 == 0) {
        fprintf(stderr, "usage: ceiling [--n N] [--workers 1..%d] [--timeout SEC]\n", MAX_WORKERS);
        return 2;
    }

    void *ctx = zmq_ctx_new();
    producer_t prod = { .n = n, .deadline = s_now_us() + (int64_t) timeout_s * 1000000 };
    prod.sock = s_socket(ctx, ZMQ_PUSH);
    int sndtimeo = 200;
    zmq_setsockopt(prod.sock, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
    void *results = s_socket(ctx, ZMQ_PULL);
    if (zmq_bind(prod.sock, "tcp://127.0.0.1:*") != 0 ||
        zmq_bind(results, "tcp://127.0.0.1:*") != 0) {
        fprintf(stderr, "ceiling: bind: %s\n", zmq_strerror(errno));
        return 1;
    }
    char tport[16], rport[16];
    snprintf(tport, sizeof tport, "%d", s_bound_port(prod.sock));
    snprintf(rport, sizeof rport, "%d", s_bound_port(results));
    pid_t pids[MAX_WORKERS];
    for (int i = 0; i < workers; i++) {
        char *wargv[] = { argv[0], "--worker", tport, rport, NULL };
        if (posix_spawn(&pids[i], "/proc/self/exe", NULL, NULL, wargv, environ) != 0) {
            fprintf(stderr, "ceiling: cannot spawn a worker\n");
            return 1;
        }
    }

    int64_t deadline = prod.deadline;
    char buf[4096];
    int ready = 0, rc = 1;
    int64_t got = 0, t0 = 0, t1 = 0;
    pthread_t thr;
    bool started = false;
    while (s_now_us() < deadline) {
        zmq_pollitem_t item = { results, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&item, 1, 200) <= 0)
            continue;
        int len = zmq_recv(results, buf, sizeof buf, 0);
        if (len < 0 || (size_t) len > sizeof buf)
            continue;
        if (ready < workers) {
            /* Only "ready" messages can come before the first task. */
            if (++ready == workers) {
                t0 = s_now_us();
                if (pthread_create(&thr, NULL, s_producer, &prod) != 0)
                    break;
                started = true;
            }
            continue;
        }
        cJSON *res = cJSON_ParseWithLength(buf, (size_t) len);
        if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(res, "task")))
            got++;
        cJSON_Delete(res);
        if (got == n) {
            t1 = s_now_us();
            rc = 0;
            break;
        }
    }
    if (started)
        pthread_join(thr, NULL);
    for (int i = 0; i < workers; i++)
        kill(pids[i], SIGTERM);
    for (int i = 0; i < workers; i++)
        waitpid(pids[i], NULL, 0);
    if (rc == 0 && prod.rc == 0) {
        double secs = (double) (t1 - t0) / 1e6;
        printf("{\"n\":%" PRId64 ",\"workers\":%d,\"total_s\":%.6f,\"tasks_per_s\":%.1f}\n", n,
               workers, secs, (double) n / secs);
    } else {
        fprintf(stderr, "ceiling: %" PRId64 " of %" PRId64 " results before the timeout\n", got, n);
        rc = 1;
    }
    zmq_close(prod.sock);
    zmq_close(results);
    zmq_ctx_term(ctx);
    return rc;
}
