/*  beanstalk-load: the fn-noop work on beanstalkd, for bench/peers.py.

      beanstalk-load --port P [--n N] [--workers W] [--timeout SEC]
      beanstalk-load --worker P                     (spawned by itself)

    The same work as bench/ceiling.c and ztask's fn noop, over beanstalkd's
    text protocol on plain sockets: a producer puts N tiny cJSON task
    objects into tube "tasks" (pipelined, 100 puts per write); each of W
    worker processes reserves a job, parses it, deletes it and puts one
    small cJSON result into tube "results" (delete, put and the next
    reserve go out in one write); a collector reserves and deletes every
    result and parses it. The producer runs in a thread with its own
    connection; the collector is the main thread.

    The clock starts once every worker watches "tasks" (stats-tube
    current-watching) and stops at the last result. beanstalkd is started
    by the caller on 127.0.0.1:P. Reserves use reserve-with-timeout and
    every wait is bounded by --timeout (default 120 s); workers are
    SIGTERMed and reaped.
*/
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_WORKERS 64
#define PIPELINE 100

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- a buffered beanstalkd connection ---- */

typedef struct {
    int fd;
    char buf[65536];
    size_t start, end;
    char *out;           /* pending writes */
    size_t outlen, outcap;
} conn_t;

static int s_connect(conn_t *c, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* A silent server cannot block us for ever: reads time out. */
    struct timeval tv = { 5, 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return connect(c->fd, (struct sockaddr *) &sa, sizeof sa);
}

static void s_close(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->out);
    c->fd = -1;
    c->out = NULL;
}

static void s_queue(conn_t *c, const char *data, size_t len)
{
    if (c->outlen + len > c->outcap) {
        size_t cap = c->outcap ? c->outcap * 2 : 4096;
        while (cap < c->outlen + len)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p)
            abort();
        c->out = p;
        c->outcap = cap;
    }
    memcpy(c->out + c->outlen, data, len);
    c->outlen += len;
}

static void s_queue_str(conn_t *c, const char *s)
{
    s_queue(c, s, strlen(s));
}

static void s_queue_put(conn_t *c, const char *body)
{
    char head[64];
    size_t len = strlen(body);
    snprintf(head, sizeof head, "put 0 0 60 %zu\r\n", len);
    s_queue_str(c, head);
    s_queue(c, body, len);
    s_queue(c, "\r\n", 2);
}

static int s_flush(conn_t *c)
{
    size_t off = 0;
    while (off < c->outlen) {
        ssize_t w = write(c->fd, c->out + off, c->outlen - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += (size_t) w;
    }
    c->outlen = 0;
    return 0;
}

static int s_fill(conn_t *c)
{
    if (c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (c->end == sizeof c->buf)
        return -1;
    ssize_t r = read(c->fd, c->buf + c->end, sizeof c->buf - c->end);
    if (r <= 0)
        return -1;
    c->end += (size_t) r;
    return 0;
}

/* Reads one "\r\n"-terminated line into line (NUL-terminated, without the
   CRLF). 0 or -1 (connection closed, read timeout, line too long). */
static int s_line(conn_t *c, char *line, size_t cap)
{
    while (true) {
        char *crlf = memmem(c->buf + c->start, c->end - c->start, "\r\n", 2);
        if (crlf) {
            size_t len = (size_t) (crlf - (c->buf + c->start));
            if (len >= cap)
                return -1;
            memcpy(line, c->buf + c->start, len);
            line[len] = 0;
            c->start += len + 2;
            return 0;
        }
        if (s_fill(c) != 0)
            return -1;
    }
}

/* Reads a body of len bytes plus its CRLF into a malloc'd buffer. */
static char *s_body(conn_t *c, size_t len)
{
    if (len + 2 > sizeof c->buf)
        return NULL;
    while (c->end - c->start < len + 2)
        if (s_fill(c) != 0)
            return NULL;
    char *b = malloc(len + 1);
    if (!b)
        abort();
    memcpy(b, c->buf + c->start, len);
    b[len] = 0;
    c->start += len + 2;
    return b;
}

/* Expects a reply line starting with want. */
static int s_expect(conn_t *c, const char *want)
{
    char line[256];
    if (s_line(c, line, sizeof line) != 0)
        return -1;
    if (strncmp(line, want, strlen(want)) != 0) {
        fprintf(stderr, "beanstalk-load: wanted %s, got %s\n", want, line);
        return -1;
    }
    return 0;
}

/* Reads the answer to a reserve-with-timeout: 1 with *id and *body set,
   0 on TIMED_OUT, -1 on error. */
static int s_reserved(conn_t *c, uint64_t *id, char **body, size_t *len)
{
    char line[256];
    if (s_line(c, line, sizeof line) != 0)
        return -1;
    if (strcmp(line, "TIMED_OUT") == 0)
        return 0;
    size_t bytes;
    if (sscanf(line, "RESERVED %" SCNu64 " %zu", id, &bytes) != 2) {
        fprintf(stderr, "beanstalk-load: reserve: %s\n", line);
        return -1;
    }
    *body = s_body(c, bytes);
    *len = bytes;
    return *body ? 1 : -1;
}

static char *s_task_json(int64_t i)
{
    cJSON *task = cJSON_CreateObject();
    cJSON_AddNumberToObject(task, "id", (double) i);
    cJSON_AddNumberToObject(task, "attempt", 1);
    cJSON_AddNumberToObject(task, "job", 1);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(task, "spec"), "fn", "noop");
    char *text = cJSON_PrintUnformatted(task);
    cJSON_Delete(task);
    return text;
}

/* ---- worker ---- */

static volatile sig_atomic_t s_stop;

static void s_on_term(int sig)
{
    (void) sig;
    s_stop = 1;
}

static int s_worker(int port)
{
    signal(SIGTERM, s_on_term);
    conn_t c;
    if (s_connect(&c, port) != 0)
        return 1;
    s_queue_str(&c, "watch tasks\r\nignore default\r\nuse results\r\nreserve-with-timeout 1\r\n");
    if (s_flush(&c) != 0 || s_expect(&c, "WATCHING") != 0 || s_expect(&c, "WATCHING") != 0 ||
        s_expect(&c, "USING") != 0) {
        s_close(&c);
        return 1;
    }
    int rc = 0;
    while (true) {
        uint64_t id;
        char *body = NULL;
        size_t len = 0;
        int got = s_reserved(&c, &id, &body, &len);
        if (got < 0) {
            rc = 1;
            break;
        }
        if (got == 0) {
            if (s_stop)
                break;
            s_queue_str(&c, "reserve-with-timeout 1\r\n");
            if (s_flush(&c) != 0) {
                rc = 1;
                break;
            }
            continue;
        }
        cJSON *task = cJSON_ParseWithLength(body, len);
        free(body);
        const cJSON *tid = cJSON_GetObjectItemCaseSensitive(task, "id");
        cJSON *res = cJSON_CreateObject();
        cJSON_AddNumberToObject(res, "task", cJSON_IsNumber(tid) ? tid->valuedouble : -1);
        cJSON_AddNumberToObject(res, "attempt", 1);
        cJSON_AddStringToObject(res, "status", "done");
        cJSON_AddNullToObject(res, "result");
        cJSON_Delete(task);
        char *text = cJSON_PrintUnformatted(res);
        cJSON_Delete(res);
        char del[64];
        snprintf(del, sizeof del, "delete %" PRIu64 "\r\n", id);
        s_queue_str(&c, del);
        s_queue_put(&c, text);
        cJSON_free(text);
        if (s_stop)
            break;
        s_queue_str(&c, "reserve-with-timeout 1\r\n");
        if (s_flush(&c) != 0 || s_expect(&c, "DELETED") != 0 || s_expect(&c, "INSERTED") != 0) {
            rc = 1;
            break;
        }
    }
    s_close(&c);
    return rc;
}

/* ---- producer thread ---- */

typedef struct {
    int port;
    int64_t n;
    int rc;
} producer_t;

static void *s_producer(void *arg)
{
    producer_t *p = arg;
    conn_t c;
    p->rc = -1;
    if (s_connect(&c, p->port) != 0)
        goto out;
    s_queue_str(&c, "use tasks\r\n");
    if (s_flush(&c) != 0 || s_expect(&c, "USING") != 0)
        goto out;
    for (int64_t first = 1; first <= p->n; first += PIPELINE) {
        int64_t last = first + PIPELINE - 1 < p->n ? first + PIPELINE - 1 : p->n;
        for (int64_t i = first; i <= last; i++) {
            char *text = s_task_json(i);
            s_queue_put(&c, text);
            cJSON_free(text);
        }
        if (s_flush(&c) != 0)
            goto out;
        for (int64_t i = first; i <= last; i++)
            if (s_expect(&c, "INSERTED") != 0)
                goto out;
    }
    p->rc = 0;
out:
    s_close(&c);
    return NULL;
}

/* current-watching of tube "tasks", or -1. */
static int s_watching(conn_t *c)
{
    s_queue_str(c, "stats-tube tasks\r\n");
    char line[256];
    if (s_flush(c) != 0 || s_line(c, line, sizeof line) != 0)
        return -1;
    size_t bytes;
    if (sscanf(line, "OK %zu", &bytes) != 1)
        return 0;   /* NOT_FOUND: nobody watches it yet */
    char *yaml = s_body(c, bytes);
    const char *w = yaml ? strstr(yaml, "current-watching: ") : NULL;
    int n = w ? atoi(w + strlen("current-watching: ")) : -1;
    free(yaml);
    return n;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--worker") == 0)
        return s_worker(atoi(argv[2]));
    int64_t n = 100000;
    int port = 0, workers = 2, timeout_s = 120;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--n") == 0)
            n = strtoll(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--workers") == 0)
            workers = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--timeout") == 0)
            timeout_s = atoi(argv[i + 1]);
        else
            port = -1;
    }
    if (port <= 0 || n < 1 || workers < 1 || workers > MAX_WORKERS || timeout_s < 1 ||
        argc % 2 == 0) {
        fprintf(stderr, "usage: beanstalk-load --port P [--n N] [--workers W] [--timeout SEC]\n");
        return 2;
    }
    int64_t deadline = s_now_us() + (int64_t) timeout_s * 1000000;
    pid_t pids[MAX_WORKERS];
    char pbuf[16];
    snprintf(pbuf, sizeof pbuf, "%d", port);
    for (int i = 0; i < workers; i++) {
        char *wargv[] = { argv[0], "--worker", pbuf, NULL };
        if (posix_spawn(&pids[i], "/proc/self/exe", NULL, NULL, wargv, environ) != 0) {
            fprintf(stderr, "beanstalk-load: cannot spawn a worker\n");
            return 1;
        }
    }
    int rc = 1;
    conn_t c;
    int64_t got = 0;
    producer_t prod = { port, n, -1 };
    pthread_t thr;
    bool started = false;
    if (s_connect(&c, port) != 0) {
        fprintf(stderr, "beanstalk-load: cannot connect to 127.0.0.1:%d\n", port);
        goto out;
    }
    while (s_now_us() < deadline && s_watching(&c) < workers)
        usleep(10000);
    s_queue_str(&c, "watch results\r\nignore default\r\n");
    if (s_flush(&c) != 0 || s_expect(&c, "WATCHING") != 0 || s_expect(&c, "WATCHING") != 0)
        goto out;

    int64_t t0 = s_now_us();
    if (pthread_create(&thr, NULL, s_producer, &prod) != 0)
        goto out;
    started = true;
    s_queue_str(&c, "reserve-with-timeout 1\r\n");
    if (s_flush(&c) != 0)
        goto out;
    while (got < n && s_now_us() < deadline) {
        uint64_t id;
        char *body = NULL;
        size_t len = 0;
        int r = s_reserved(&c, &id, &body, &len);
        if (r < 0)
            goto out;
        if (r == 1) {
            cJSON *res = cJSON_ParseWithLength(body, len);
            if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(res, "task")))
                got++;
            cJSON_Delete(res);
            free(body);
            char del[64];
            snprintf(del, sizeof del, "delete %" PRIu64 "\r\n", id);
            s_queue_str(&c, del);
        }
        if (got < n)
            s_queue_str(&c, "reserve-with-timeout 1\r\n");
        if (s_flush(&c) != 0 || (r == 1 && s_expect(&c, "DELETED") != 0))
            goto out;
    }
    int64_t t1 = s_now_us();
    if (got == n) {
        double secs = (double) (t1 - t0) / 1e6;
        printf("{\"n\":%" PRId64 ",\"workers\":%d,\"total_s\":%.6f,\"tasks_per_s\":%.1f}\n", n,
               workers, secs, (double) n / secs);
        rc = 0;
    } else {
        fprintf(stderr, "beanstalk-load: %" PRId64 " of %" PRId64 " results\n", got, n);
    }
out:
    if (started)
        pthread_join(thr, NULL);   /* bounded: its reads time out after 5 s */
    if (rc == 0 && prod.rc != 0)
        rc = 1;
    s_close(&c);
    for (int i = 0; i < workers; i++)
        kill(pids[i], SIGTERM);
    for (int i = 0; i < workers; i++)
        waitpid(pids[i], NULL, 0);
    return rc;
}
