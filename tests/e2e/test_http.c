/*  e2e http: the master's --http server (web.h, dash.h) through a real
    master and workers: off by default, refused on a public address
    without a token, tokens and their rights, the headers of every
    response, hostile HTTP (huge headers, slow clients, malformed requests,
    path tricks, big bodies) that gets errors while the loop keeps
    serving, and /metrics parsed by a real parser (python3-prometheus-
    client, and promtool when installed) against a job whose counts are
    known.

    HTTP is spoken over raw sockets here, so that a test can send what no
    well-behaved client would.
*/
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define READ_TOKEN "read-token-0123456789abcdef"
#define CONTROL_TOKEN "control-token-0123456789abcdef"

/* ------------------------------------------------------------ raw HTTP */

static int s_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {.tv_sec = h_ms(15000) / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ck_assert_msg(connect(fd, (struct sockaddr *) &a, sizeof a) == 0, "connect: %s", strerror(errno));
    return fd;
}

static void s_send_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;   /* the server may close on us: what it answered is what counts */
        data += n;
        len -= (size_t) n;
    }
}

typedef struct {
    int status;      /* 0 when the server closed without an answer */
    char *head;      /* status line and headers */
    char *body;
} resp_t;

static void s_resp_free(resp_t *r)
{
    free(r->head);
    free(r->body);
}

/* Sends raw (the whole request) on a fresh connection and reads the answer
   until the server closes (every request says Connection: close). */
static resp_t s_raw(int port, const char *raw, size_t len)
{
    int fd = s_connect(port);
    s_send_all(fd, raw, len);
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 4096 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k <= 0)
            break;
        n += (size_t) k;
    }
    close(fd);
    buf[n] = 0;
    resp_t r = {0};
    sscanf(buf, "HTTP/1.%*d %d", &r.status);
    char *sep = strstr(buf, "\r\n\r\n");
    r.head = strndup(buf, sep ? (size_t) (sep - buf) : n);
    r.body = strdup(sep ? sep + 4 : "");
    free(buf);
    return r;
}

static resp_t s_req(int port, const char *method, const char *path, const char *token)
{
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s"
                     "Content-Length: 0\r\n\r\n",
                     method, path, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "");
    return s_raw(port, req, (size_t) n);
}

static resp_t s_get(int port, const char *path, const char *token)
{
    return s_req(port, "GET", path, token);
}

/* Every answer of ours carries these (web.h). */
static void s_check_headers(const resp_t *r)
{
    ck_assert_msg(strstr(r->head, "Cache-Control: no-store"), "no Cache-Control in:\n%s", r->head);
    ck_assert_msg(strstr(r->head, "Content-Security-Policy: default-src 'none'; script-src 'self'"),
                  "no CSP in:\n%s", r->head);
    ck_assert_msg(strstr(r->head, "X-Content-Type-Options: nosniff"), "no nosniff in:\n%s", r->head);
}

/* One request whose answer must have status and, when want is given,
   contain it; every answer carries the headers. */
static void s_expect(int port, const char *method, const char *path, const char *token,
                     int status, const char *want)
{
    resp_t r = s_req(port, method, path, token);
    ck_assert_msg(r.status == status && (!want || strstr(r.body, want)),
                  "%s %s: %d %s (wanted %d %s)", method, path, r.status, r.body, status,
                  want ? want : "");
    s_check_headers(&r);
    s_resp_free(&r);
}

static char *s_write_file(h_cluster_t *c, const char *name, const char *text)
{
    char *path = h_path(c, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* ------------------------------------------------------------ the tests */

START_TIMED_TEST(http_is_off_by_default_and_a_public_address_needs_a_token, 60)
{
    h_cluster_t *c = h_cluster_new("http_off_by_default");
    h_proc_t *m = h_master_start(c, 0, NULL);
    ck_assert_int_eq(h_proc_count_log(m, "event=http_listening"), 0);

    char *db = h_path(c, "other.db");
    char master[512];
    snprintf(master, sizeof master, "%s/ztask-master", h_bin_dir());
    char *argv[] = {master, "--db", db, "--port", "0", "--http", "0.0.0.0:0", NULL};
    h_run_t *r = h_run(argv, NULL, 20000);
    ck_assert_msg(r->rc == 1 && strstr(r->err, "--http-token"),
                  "a public --http without a token must be refused: %s", h_run_desc(r));
    h_run_free(&r);
    char *bad[] = {master, "--db", db, "--port", "0", "--http", "127.0.0.1", NULL};
    r = h_run(bad, NULL, 20000);
    ck_assert_msg(r->rc == 1 && strstr(r->err, "ADDR:PORT"), "--http without a port: %s",
                  h_run_desc(r));
    h_run_free(&r);
    char *orphan[] = {master, "--db", db, "--port", "0", "--http-token", "/nonexistent", NULL};
    r = h_run(orphan, NULL, 20000);
    ck_assert_msg(r->rc == 1 && strstr(r->err, "need --http"), "--http-token alone: %s",
                  h_run_desc(r));
    h_run_free(&r);
    char *tokens = s_write_file(c, "short.tokens", "tooshort\n");
    char *weak[] = {master, "--db", db, "--port", "0", "--http", "127.0.0.1:0", "--http-token",
                    tokens, NULL};
    r = h_run(weak, NULL, 20000);
    ck_assert_msg(r->rc == 1 && strstr(r->err, "at least 16"), "a short token: %s", h_run_desc(r));
    h_run_free(&r);
    free(tokens);
    free(db);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(data_needs_a_token_and_only_a_control_token_may_cancel, 90)
{
    h_cluster_t *c = h_cluster_new("http_tokens");
    char *tokens = s_write_file(c, "http.tokens",
                                "# who may look, who may act\n" READ_TOKEN "\n" CONTROL_TOKEN
                                " control\n");
    h_proc_t *m = h_master_start(c, 0, "--http", "127.0.0.1:0", "--http-token", tokens, NULL);
    int port = h_http_port(m);
    h_worker_start(c, "w1", 2, NULL);
    int64_t job = h_submit(c, NULL, "--array", "1-4", "--", "sleep", "30", NULL);

    /* The page itself is public (it holds no data); data is not. */
    resp_t r = s_get(port, "/", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strstr(r.body, "<html"), "no page: %s", r.body);
    s_check_headers(&r);
    s_resp_free(&r);
    const char *paths[] = {"/metrics", "/api/overview", "/api/jobs", "/api/workers"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        r = s_get(port, paths[i], NULL);
        ck_assert_msg(r.status == 401, "%s without a token: %d", paths[i], r.status);
        ck_assert_msg(strstr(r.head, "WWW-Authenticate: Bearer"), "no challenge:\n%s", r.head);
        s_check_headers(&r);
        s_resp_free(&r);
        r = s_get(port, paths[i], READ_TOKEN "x");
        ck_assert_msg(r.status == 401, "%s with a wrong token: %d", paths[i], r.status);
        s_resp_free(&r);
        r = s_get(port, paths[i], READ_TOKEN);
        ck_assert_msg(r.status == 200, "%s with the read token: %d %s", paths[i], r.status, r.body);
        s_check_headers(&r);
        s_resp_free(&r);
    }
    /* The refusals are counted: 4 without a token, 4 with a wrong one. */
    r = s_get(port, "/metrics", READ_TOKEN);
    ck_assert_msg(strstr(r.body, "ztask_auth_refusals_total{reason=\"http_token\"} 8\n"),
                  "refusals:\n%s", r.body);
    s_resp_free(&r);
    char path[64];
    snprintf(path, sizeof path, "/api/cancel?job=%lld", (long long) job);
    s_expect(port, "POST", path, READ_TOKEN, 403, NULL);
    ck_assert_int_eq(h_status_count(c, job, "cancelled"), 0);
    s_expect(port, "GET", path, CONTROL_TOKEN, 405, NULL);
    s_expect(port, "POST", path, CONTROL_TOKEN, 200, "\"cancelled\":4");
    ck_assert_int_eq(h_wait(c, job, 30000), 1);
    ck_assert_int_eq(h_status_count(c, job, "cancelled"), 4);
    free(tokens);
    h_cluster_destroy(&c);
}
END_TEST

/* The dashboard's Retry is `ztask retry JOB` behind the control right:
   a read token is refused and nothing runs again; a control token puts
   the failed tasks back and the job ends done. Before it, the failed
   tasks' error is the command's first stderr line (as `ztask results`
   shows), not "exited with status 3". */
START_TIMED_TEST(only_a_control_token_may_retry_a_job_and_its_failed_tasks_run_again, 90)
{
    h_cluster_t *c = h_cluster_new("http_retry");
    char *tokens = s_write_file(c, "http.tokens", READ_TOKEN " read\n" CONTROL_TOKEN " control\n");
    h_proc_t *m = h_master_start(c, 0, "--http", "127.0.0.1:0", "--http-token", tokens, NULL);
    int port = h_http_port(m);
    h_worker_start(c, "w1", 2, NULL);
    char *mark = h_path(c, "second-try");
    char script[600];
    snprintf(script, sizeof script,
             "if [ -e %s ]; then echo ok; else echo \"first try of $ZTASK_TASK_INDEX\" >&2; "
             "exit 3; fi", mark);
    int64_t job = h_submit(c, NULL, "--array", "1-3", "--shell", script, NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);
    ck_assert_int_eq(h_status_count(c, job, "failed"), 3);
    char path[80];
    snprintf(path, sizeof path, "/api/tasks?job=%lld&filter=failed", (long long) job);
    resp_t r = s_get(port, path, READ_TOKEN);
    ck_assert_msg(r.status == 200 && strstr(r.body, "\"error\":\"first try of 2\"")
                      && !strstr(r.body, "exited with status"),
                  "the failed tasks' error: %d %s", r.status, r.body);
    s_resp_free(&r);
    snprintf(path, sizeof path, "/api/jobs");
    r = s_get(port, path, READ_TOKEN);
    ck_assert_msg(strstr(r.body, "\"failed\":3"), "jobs: %s", r.body);
    s_resp_free(&r);

    FILE *f = fopen(mark, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(path, sizeof path, "/api/retry?job=%lld", (long long) job);
    s_expect(port, "POST", path, READ_TOKEN, 403, NULL);
    s_expect(port, "POST", path, NULL, 401, NULL);
    s_expect(port, "GET", path, CONTROL_TOKEN, 405, NULL);
    ck_assert_int_eq(h_status_count(c, job, "failed"), 3);
    ck_assert_int_eq(h_status_count(c, job, "queued") + h_status_count(c, job, "running"), 0);
    s_expect(port, "POST", "/api/retry?job=999", CONTROL_TOKEN, 404, NULL);
    const char *bad[] = {"/api/retry", "/api/retry?job=0", "/api/retry?job=-1",
                         "/api/retry?job=99999999999999999999", "/api/retry?job=1x",
                         "/api/retry?task=1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        s_expect(port, "POST", bad[i], CONTROL_TOKEN, 400, "give job=ID");

    s_expect(port, "POST", path, CONTROL_TOKEN, 200, "\"retried\":3");
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    ck_assert_int_eq(h_status_count(c, job, "done"), 3);
    ck_assert_int_eq(h_status_count(c, job, "failed"), 0);
    /* Nothing left to retry: 0, not an error. */
    s_expect(port, "POST", path, CONTROL_TOKEN, 200, "\"retried\":0");
    free(mark);
    free(tokens);
    h_cluster_destroy(&c);
}
END_TEST

/* A page on another site that makes its host name resolve to 127.0.0.1
   (DNS rebinding) gets the victim's browser to ask under that name: its
   Host header. Without tokens, loopback is the only protection: a loopback
   server answers only requests for a loopback name. */
START_TIMED_TEST(a_loopback_dashboard_answers_only_requests_for_a_loopback_name, 60)
{
    h_cluster_t *c = h_cluster_new("http_rebind");
    h_proc_t *m = h_master_start(c, 0, "--http", "127.0.0.1:0", NULL);
    int port = h_http_port(m);
    h_submit(c, NULL, "--name", "secret-payroll", "--", "true", NULL);
    static const char *const refused[] = {"evil.example", "evil.example:P", "127.0.0.1.evil.example",
                                          "localhost.evil.example:P", "10.0.0.1:P"};
    static const char *const taken[] = {"127.0.0.1:P", "localhost:P", "localhost", "[::1]:P",
                                        "127.0.0.1", "LOCALHOST:P"};
    for (int k = 0; k < 2; k++) {
        const char *const *hosts = k ? taken : refused;
        size_t n = k ? sizeof taken / sizeof *taken : sizeof refused / sizeof *refused;
        for (size_t i = 0; i < n; i++) {
            char host[128], req[512];
            /* ":P" stands for the port. */
            const char *p = strstr(hosts[i], ":P");
            if (p)
                snprintf(host, sizeof host, "%.*s:%d", (int) (p - hosts[i]), hosts[i], port);
            else
                snprintf(host, sizeof host, "%s", hosts[i]);
            int len = snprintf(req, sizeof req,
                               "GET /api/jobs HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                               host);
            resp_t r = s_raw(port, req, (size_t) len);
            if (k) {
                ck_assert_msg(r.status == 200 && strstr(r.body, "secret-payroll"),
                              "Host: %s answered %d: %s", host, r.status, r.body);
            } else {
                ck_assert_msg(r.status == 403 && !strstr(r.body, "secret-payroll"),
                              "Host: %s answered %d: %s", host, r.status, r.body);
                s_check_headers(&r);
            }
            s_resp_free(&r);
        }
    }
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(hostile_http_gets_errors_and_never_stops_the_loop, 120)
{
    h_cluster_t *c = h_cluster_new("http_hostile");
    h_proc_t *m = h_master_start(c, 0, "--http", "127.0.0.1:0", NULL);
    int port = h_http_port(m);
    h_worker_start(c, "w1", 2, NULL);

    /* Slow clients: connections that send half a request and stall hold
       an HTTP connection each, nothing of the loop. */
    int slow[8];
    for (int i = 0; i < 8; i++) {
        slow[i] = s_connect(port);
        s_send_all(slow[i], "GET /metrics HTTP/1.1\r\nHost: x", 30);
    }

    /* Headers over the per-connection memory: 431 (or 413), not a crash. */
    size_t big = 64 * 1024;
    char *huge = malloc(big + 256);
    int n = snprintf(huge, 256, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ");
    memset(huge + n, 'a', big);
    memcpy(huge + n + big, "\r\n\r\n", 5);
    resp_t r = s_raw(port, huge, (size_t) n + big + 4);
    ck_assert_msg(r.status == 431 || r.status == 413, "huge headers: %d", r.status);
    s_resp_free(&r);
    /* Many headers, each small, more than the memory allowed. */
    char *p = huge + sprintf(huge, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (int i = 0; i < 7000; i++)
        p += sprintf(p, "X-A: b\r\n");
    strcpy(p, "\r\n");
    r = s_raw(port, huge, strlen(huge));
    ck_assert_msg(r.status == 431 || r.status == 413, "7,000 headers: %d", r.status);
    s_resp_free(&r);
    free(huge);

    /* Malformed requests. */
    const char *junk[] = {"GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET /metrics HTTP/9.9\r\n\r\n",
                          "GET /metrics HTTP/1.1\r\nHost x\r\n\r\n",
                          "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 tls hello\r\n\r\n"};
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
        r = s_raw(port, junk[i], strlen(junk[i]));
        ck_assert_msg(r.status == 0 || (r.status >= 400 && r.status < 600),
                      "junk %zu answered %d", i, r.status);
        s_resp_free(&r);
    }

    /* Path tricks: nothing outside the fixed table, no file is opened. */
    const char *tricks[] = {"/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                            "/metrics/../../etc/passwd", "//etc/passwd", "/app.js/../../etc/passwd",
                            "/api/../../etc/passwd", "/index.html%00.js", "/api/jobs/../../x"};
    for (size_t i = 0; i < sizeof tricks / sizeof *tricks; i++) {
        r = s_get(port, tricks[i], NULL);
        ck_assert_msg(r.status >= 400 && r.status < 500 && !strstr(r.body, "root:"),
                      "%s answered %d: %s", tricks[i], r.status, r.body);
        s_resp_free(&r);
    }
    /* Arguments: only short plain words reach the loop. */
    const char *args[] = {"/api/tasks?job=1%27;DROP", "/api/tasks?job=abc", "/api/task?id=-1",
                          "/api/tasks?job=1&filter=%3Cscript%3E", "/api/jobs?limit=100000",
                          ("/api/tasks?job=1&a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9&j=10&k=11&l=12"
                           "&m=13&n=14&o=15&p=16&q=17")};
    for (size_t i = 0; i < sizeof args / sizeof *args; i++) {
        r = s_get(port, args[i], NULL);
        ck_assert_msg(r.status == 400 || r.status == 404, "%s answered %d: %s", args[i], r.status,
                      r.body);
        s_check_headers(&r);
        s_resp_free(&r);
    }
    /* A body where none is wanted, too big: 413. */
    size_t blen = 100 * 1024;
    char *post = malloc(blen + 256);
    n = snprintf(post, 256, "POST /api/cancel?job=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            "Content-Length: %zu\r\n\r\n", blen);
    memset(post + n, 'z', blen);
    r = s_raw(port, post, (size_t) n + blen);
    ck_assert_msg(r.status == 413, "a 100 KiB body: %d", r.status);
    s_resp_free(&r);
    free(post);
    /* A chunked body without end: the connection is closed past 4 KiB,
       whatever keeps coming. */
    int fd = s_connect(port);
    const char *head = "POST /api/cancel?job=1 HTTP/1.1\r\nHost: x\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    s_send_all(fd, head, strlen(head));
    char chunk[1024 + 16];
    int clen = snprintf(chunk, sizeof chunk, "400\r\n");
    memset(chunk + clen, 'c', 1024);
    memcpy(chunk + clen + 1024, "\r\n", 2);
    bool closed = false;
    for (int i = 0; i < 100000 && !closed; i++) {
        if (send(fd, chunk, (size_t) clen + 1026, MSG_NOSIGNAL) < 0)
            closed = true;
    }
    close(fd);
    ck_assert_msg(closed, "a 100 MiB chunked body was read to its end");
    r = s_req(port, "DELETE", "/metrics", NULL);
    ck_assert_int_eq(r.status, 405);
    s_resp_free(&r);
    r = s_req(port, "POST", "/api/cancel?job=1", NULL);
    ck_assert_msg(r.status == 403, "cancel without a token carrying the right: %d", r.status);
    s_resp_free(&r);

    /* With the slow clients still stalled, the loop serves: a job runs to
       its end, and HTTP still answers. */
    int64_t job = h_submit(c, NULL, "--array", "1-200", "--fn", "noop", NULL);
    ck_assert_int_eq(h_wait(c, job, 60000), 0);
    r = s_get(port, "/metrics", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strstr(r.body, "ztask_tasks_finished_total{outcome=\"done\"} 200"),
                  "metrics after the barrage:\n%s", r.body);
    s_resp_free(&r);
    for (int i = 0; i < 8; i++)
        close(slow[i]);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(https_serves_with_the_given_certificate, 60)
{
    h_cluster_t *c = h_cluster_new("http_tls");
    if (access("/usr/bin/openssl", X_OK) != 0) {
        fprintf(stderr, "note: https test skipped: no /usr/bin/openssl to make a certificate\n");
        h_cluster_destroy(&c);
        return;
    }
    char *cert = h_path(c, "cert.pem"), *key = h_path(c, "key.pem");
    char *gen[] = {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                   "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                   "subjectAltName=IP:127.0.0.1", NULL};
    h_run_t *r = h_run(gen, NULL, 30000);
    ck_assert_msg(r->rc == 0, "openssl: %s", h_run_desc(r));
    h_run_free(&r);
    h_proc_t *m = h_master_start(c, 0, "--http", "127.0.0.1:0", "--http-cert", cert, "--http-key",
                                 key, NULL);
    ck_assert(h_proc_wait_log(m, "event=http_listening url=https://127.0.0.1:", 1, 10000));
    int port = h_http_port(m);
    /* A client that trusts the certificate gets /metrics over TLS. */
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/metrics", port);
    char *fetch[] = {"/usr/bin/python3", "-c",
                     "import ssl, sys, urllib.request\n"
                     "ctx = ssl.create_default_context(cafile=sys.argv[1])\n"
                     "print(urllib.request.urlopen(sys.argv[2], context=ctx, timeout=10)"
                     ".read().decode())",
                     cert, url, NULL};
    r = h_run(fetch, NULL, 30000);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "ztask_build_info"), "https fetch: %s\n%s",
                  h_run_desc(r), r->err);
    h_run_free(&r);
    /* Plain HTTP to the TLS port gets no page. */
    resp_t plain = s_get(port, "/metrics", NULL);
    ck_assert_msg(plain.status != 200, "plain HTTP on the TLS port answered 200");
    s_resp_free(&plain);
    /* A key without its certificate, or a file that is not one: refused at start. */
    char master[512];
    snprintf(master, sizeof master, "%s/ztask-master", h_bin_dir());
    char *db = h_path(c, "other.db");
    char *half[] = {master, "--db", db, "--port", "0", "--http", "127.0.0.1:0", "--http-key", key,
                    NULL};
    r = h_run(half, NULL, 20000);
    ck_assert_msg(r->rc == 1 && strstr(r->err, "--http-cert"), "key alone: %s", h_run_desc(r));
    h_run_free(&r);
    char *junk = s_write_file(c, "junk.pem", "not a certificate\n");
    char *bad[] = {master, "--db", db, "--port", "0", "--http", "127.0.0.1:0", "--http-cert", junk,
                   "--http-key", key, NULL};
    r = h_run(bad, NULL, 20000);
    ck_assert_msg(r->rc == 1 && strstr(r->err, "cannot serve HTTP"), "a junk certificate: %s",
                  h_run_desc(r));
    h_run_free(&r);
    free(junk);
    free(db);
    free(cert);
    free(key);
    h_cluster_destroy(&c);
}
END_TEST

/* Runs tests/e2e/check_metrics.py on the text with the expectations. */
static void s_check_metrics(h_cluster_t *c, const char *text, const char *const *expect)
{
    char *file = s_write_file(c, "metrics.txt", text);
    char script[600];
    snprintf(script, sizeof script, "%s/tests/e2e/check_metrics.py",
             getenv("ZTASK_SRC_DIR") ? getenv("ZTASK_SRC_DIR") : ".");
    const char *argv[64] = {"/usr/bin/python3", script, file};
    int n = 3;
    for (int i = 0; expect[i] && n < 62; i++)
        argv[n++] = expect[i];
    argv[n] = NULL;
    h_run_t *r = h_run((char *const *) argv, NULL, 60000);
    ck_assert_msg(r->rc == 0, "metrics check: %s\n%s%s", h_run_desc(r), r->out, r->err);
    h_run_free(&r);
    free(file);
}

/* A number from the metrics text: the value of the line that starts
   with name and a space; -1 when there is none. */
static double s_metric(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

/* The default --sync acked: results come back every few milliseconds,
   and their grouped commits (one each flush_ms) are written, not fsynced;
   what a client is answered is (here: the submit, the wait), and the
   rest within a second. With --sync full every commit is fsynced. */
START_TIMED_TEST(results_are_committed_every_few_ms_but_fsynced_only_for_answers, 120)
{
    for (int full = 0; full <= 1; full++) {
        h_cluster_t *c = h_cluster_new(full ? "http_sync_full" : "http_sync_acked");
        h_proc_t *m = full ? h_master_start(c, 0, "--http", "127.0.0.1:0", "--sync", "full", NULL)
                           : h_master_start(c, 0, "--http", "127.0.0.1:0", NULL);
        int port = h_http_port(m);
        h_worker_start(c, "w1", 2, NULL);
        /* 300 results of 5 ms tasks on 2 threads: about 0.75 s of them. */
        int64_t job = h_submit(c, NULL, "--fn", "sleep", "--args", "0.005", "--array", "1-300",
                               NULL);
        ck_assert_int_eq(h_wait(c, job, 60000), 0);
        resp_t mr = s_get(port, "/metrics", NULL);
        double commits = s_metric(mr.body, "ztask_commit_duration_seconds_count");
        double fsynced = s_metric(mr.body, "ztask_commits_fsynced_total");
        fprintf(stderr, "[sync %s] %.0f commits, %.0f fsynced\n", full ? "full" : "acked",
                commits, fsynced);
        ck_assert_msg(commits >= 20, "only %.0f commits for 300 results:\n%s", commits, mr.body);
        if (full)
            ck_assert_msg(fsynced == commits, "--sync full: %.0f of %.0f commits fsynced",
                          fsynced, commits);
        else
            ck_assert_msg(fsynced >= 1 && fsynced * 4 < commits,
                          "--sync acked: %.0f of %.0f commits fsynced", fsynced, commits);
        s_resp_free(&mr);
        h_cluster_destroy(&c);
    }
}
END_TEST

/* The dashboard's job list (done, failed, finished) is what the store
   holds for good: like `ztask jobs`, it is made after a flush that
   fsyncs with the default --sync acked, so while results flow each look
   costs an fsynced commit. Answered from memory, 20 looks in a second
   showed results only written (the 1 s timer fsynced once or twice
   meanwhile): a power loss could take back what they showed. */
START_TIMED_TEST(dashboard_job_list_is_answered_after_an_fsync, 120)
{
    h_cluster_t *c = h_cluster_new("http_jobs_fsync");
    h_proc_t *m = h_master_start(c, 0, "--http", "127.0.0.1:0", NULL);
    int port = h_http_port(m);
    h_worker_start(c, "w1", 2, NULL);
    /* 4000 tasks of 5 ms on 2 threads: results for 10 s at least. */
    int64_t job = h_submit(c, NULL, "--fn", "sleep", "--args", "0.005", "--array", "1-4000",
                           NULL);
    ck_assert(H_POLL(h_status_count(c, job, "done") > 0, 20000));
    resp_t mr = s_get(port, "/metrics", NULL);
    double before = s_metric(mr.body, "ztask_commits_fsynced_total");
    s_resp_free(&mr);
    const int looks = 20;
    for (int i = 0; i < looks; i++) {
        resp_t r = s_get(port, "/api/jobs", NULL);
        ck_assert_msg(r.status == 200, "/api/jobs: %d %s", r.status, r.body);
        s_resp_free(&r);
        usleep(50 * 1000);   /* pacing, not a wait: results arrive between looks */
    }
    mr = s_get(port, "/metrics", NULL);
    double after = s_metric(mr.body, "ztask_commits_fsynced_total");
    s_resp_free(&mr);
    int64_t done = h_status_count(c, job, "done");
    fprintf(stderr, "[jobs fsync] %d looks, %.0f commits fsynced meanwhile, %lld done\n", looks,
            after - before, (long long) done);
    ck_assert_msg(done < 4000, "the job ended before the looks: nothing was shown");
    ck_assert_msg(after - before >= looks / 2,
                  "%d looks at /api/jobs while results flowed, %.0f fsynced commits", looks,
                  after - before);
    h_cancel(c, job);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(metrics_parse_and_count_a_job_whose_counts_are_known, 120)
{
    h_cluster_t *c = h_cluster_new("http_metrics");
    h_proc_t *m = h_master_start(c, 0, "--http", "127.0.0.1:0", "--heartbeat-ms", "200",
                                 "--retry-backoff-ms", "10", NULL);
    int port = h_http_port(m);
    h_worker_start(c, "w1", 2, NULL);
    h_proc_t *doomed = h_worker_start(c, "w2", 1, NULL);
    /* 4 commands and 2 functions that succeed, 2 that fail, one that
       times out, one that fails after 2 retries: 10 tasks. */
    char *specs = s_write_file(c, "job.jsonl",
                               "{\"argv\":[\"true\"]}\n{\"argv\":[\"true\"]}\n{\"argv\":[\"true\"]}\n"
                               "{\"argv\":[\"true\"]}\n{\"fn\":\"noop\"}\n{\"fn\":\"noop\"}\n"
                               "{\"argv\":[\"false\"]}\n{\"argv\":[\"false\"]}\n"
                               "{\"argv\":[\"sleep\",\"30\"],\"timeout\":0.3}\n"
                               "{\"argv\":[\"false\"],\"retries\":2}\n");
    int64_t job = h_submit(c, NULL, "--file", specs, NULL);
    ck_assert_int_eq(h_wait(c, job, 60000), 1);
    /* Three cancelled, and a worker lost. */
    int64_t job2 = h_submit(c, NULL, "--array", "1-3", "--", "sleep", "30", NULL);
    ck_assert(H_POLL(h_status_count(c, job2, "running") == 3, 20000));
    h_cancel(c, job2);
    h_proc_kill9(doomed);
    resp_t mr = {0};
    ck_assert_msg(H_POLL((s_resp_free(&mr), mr = s_get(port, "/metrics", NULL),
                          strstr(mr.body, "ztask_workers_lost_total 1") != NULL),
                         20000),
                  "the lost worker never showed:\n%s", mr.body);
    const char *expect[] = {
        "ztask_tasks_submitted_total=13",
        "ztask_tasks_finished_total{outcome=done}=6",
        "ztask_tasks_finished_total{outcome=failed}=3",
        "ztask_tasks_finished_total{outcome=timeout}=1",
        "ztask_tasks_finished_total{outcome=cancelled}=3",
        "ztask_tasks_retried_total=2",
        "ztask_workers_lost_total=1",
        "ztask_duplicate_results_total=0",
        "ztask_task_queue_wait_seconds_count{kind=exec}>=10",
        /* Per dispatch: a task a busy worker gave back for an idle one
           (a recall, docs/protocol.md section 8) is sent, and counted,
           again. */
        "ztask_task_queue_wait_seconds_count{kind=fn}>=2",
        "ztask_task_run_seconds_count{kind=fn}=2",
        "ztask_task_run_seconds_count{kind=exec}>=10",
        "ztask_tasks{state=queued}=0",
        "ztask_tasks{state=running}=0",
        "ztask_workers{state=alive}=1",
        "ztask_workers{state=dead}=1",
        "ztask_worker_slots{worker=w1}=2",
        "ztask_worker_slots_busy{worker=w1}=0",
        "ztask_jobs{state=finished}=2",
        "ztask_api_requests_total{type=submit,outcome=ok}>=2",
        "ztask_api_requests_total{type=cancel,outcome=ok}=1",
        "ztask_commit_duration_seconds_count>=1",
        /* Two submits were acknowledged: each after an fsync. */
        "ztask_commits_fsynced_total>=2",
        /* A turn at least per submit and per report: 13 tasks took more. */
        "ztask_loop_turn_seconds_count>=13",
        "ztask_loop_turn_max_seconds>=0.000001",
        "process_open_fds>=1",
        "process_resident_memory_bytes>=1000000",
        NULL};
    ck_assert_msg(strstr(mr.body, "ztask_build_info{version=\""), "no build info:\n%s", mr.body);
    s_check_metrics(c, mr.body, expect);
    s_resp_free(&mr);
    free(specs);
    h_cluster_destroy(&c);
}
END_TEST

/* `ztask_tasks{state="queued"}` is what a free worker would start:
   held tasks, tasks waiting for the jobs they depend on, and tasks at
   their job's --max-running are states of their own. One worker with 2
   CPUs, tasks asking one each (so none waits on the worker: no prefetch):
   a held job of 3, a job of 2 after it, a job of 5 limited to 1 at a time
   (1 runs, 4 capped), a job of 2 (1 runs, 1 queued). */
START_TIMED_TEST(metrics_tell_tasks_waiting_for_a_worker_from_held_and_capped_ones, 90)
{
    h_cluster_t *c = h_cluster_new("http_held");
    h_proc_t *m = h_master_start(c, 0, "--http", "127.0.0.1:0", NULL);
    int port = h_http_port(m);
    int64_t held = h_submit(c, NULL, "--cpus", "1", "--array", "1-3", "--", "sleep", "30", NULL);
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long) held);
    h_run_t *r = h_cli(c, "hold", id, NULL);
    ck_assert_msg(r->rc == 0, "hold: %s", h_run_desc(r));
    h_run_free(&r);
    int64_t jobs[4] = {held};
    jobs[1] = h_submit(c, NULL, "--after", id, "--cpus", "1", "--array", "1-2", "--", "sleep", "30",
                       NULL);
    jobs[2] = h_submit(c, NULL, "--max-running", "1", "--cpus", "1", "--array", "1-5", "--",
                       "sleep", "30", NULL);
    jobs[3] = h_submit(c, NULL, "--cpus", "1", "--array", "1-2", "--", "sleep", "30", NULL);
    h_worker_start(c, "w1", 2, "--resources", "cpus=2", NULL);
    resp_t mr = {0};
    ck_assert_msg(H_POLL((s_resp_free(&mr), mr = s_get(port, "/metrics", NULL),
                          strstr(mr.body, "ztask_tasks{state=\"running\"} 2\n") != NULL),
                         20000),
                  "two tasks never ran:\n%s", mr.body);
    const char *expect[] = {"ztask_tasks{state=queued}=1",  "ztask_tasks{state=held}=3",
                            "ztask_tasks{state=dep_wait}=2", "ztask_tasks{state=capped}=4",
                            "ztask_tasks{state=retry_wait}=0", "ztask_tasks{state=assigned}=0",
                            "ztask_tasks{state=running}=2",  NULL};
    s_check_metrics(c, mr.body, expect);
    s_resp_free(&mr);
    /* Released, the held job's tasks wait for a worker like any other. */
    r = h_cli(c, "release", id, NULL);
    ck_assert_msg(r->rc == 0, "release: %s", h_run_desc(r));
    h_run_free(&r);
    mr = s_get(port, "/metrics", NULL);
    const char *released[] = {"ztask_tasks{state=queued}=4", "ztask_tasks{state=held}=0",
                              "ztask_tasks{state=capped}=4", NULL};
    s_check_metrics(c, mr.body, released);
    s_resp_free(&mr);
    for (int i = 0; i < 4; i++) {
        snprintf(id, sizeof id, "%lld", (long long) jobs[i]);
        r = h_cli(c, "cancel", id, NULL);
        ck_assert_msg(r->rc == 0, "cancel %s: %s", id, h_run_desc(r));
        h_run_free(&r);
        ck_assert_int_eq(h_wait(c, jobs[i], 30000), 1);
    }
    h_cluster_destroy(&c);
}
END_TEST

/* ztask_tasks{state=S} of a /metrics text, or -1. */
static int64_t s_metric_state(const char *text, const char *state)
{
    char key[64];
    snprintf(key, sizeof key, "ztask_tasks{state=\"%s\"} ", state);
    const char *at = strstr(text, key);
    return at ? strtoll(at + strlen(key), NULL, 10) : -1;
}

/* Whether /metrics' task states agree with the tasks themselves (`ztask
   results --json` of every job): the waiting states add up to the tasks
   queued, held to the tasks marked held, assigned and running to those
   on a worker; none is negative. *why says what differs. */
static bool s_states_agree(h_cluster_t *c, int port, const int64_t *jobs, int njobs, char *why,
                           size_t len)
{
    int64_t queued = 0, held = 0, on_worker = 0;
    for (int j = 0; j < njobs; j++) {
        cJSON *res = h_results(c, jobs[j], NULL);
        const cJSON *t;
        cJSON_ArrayForEach(t, res) {
            const char *st = h_jstr(t, "status");
            queued += st && strcmp(st, "queued") == 0;
            on_worker += st && (strcmp(st, "running") == 0 || strcmp(st, "assigned") == 0);
            held += h_jtrue(t, "held");
        }
        cJSON_Delete(res);
    }
    resp_t mr = s_get(port, "/metrics", NULL);
    const char *names[] = {"queued", "retry_wait", "held", "dep_wait", "capped", "assigned", "running"};
    int64_t m[7];
    for (int i = 0; i < 7; i++)
        m[i] = s_metric_state(mr.body, names[i]);
    s_resp_free(&mr);
    snprintf(why, len,
             "tasks: %lld queued (%lld held), %lld on a worker; metrics: queued %lld retry_wait "
             "%lld held %lld dep_wait %lld capped %lld assigned %lld running %lld",
             (long long) queued, (long long) held, (long long) on_worker, (long long) m[0],
             (long long) m[1], (long long) m[2], (long long) m[3], (long long) m[4],
             (long long) m[5], (long long) m[6]);
    for (int i = 0; i < 7; i++)
        if (m[i] < 0)
            return false;
    return m[0] + m[1] + m[2] + m[3] + m[4] == queued && m[2] == held && m[5] + m[6] == on_worker;
}

#define S_AGREE(c, port, jobs, n)                                                               \
    do {                                                                                        \
        char why_[512];                                                                         \
        ck_assert_msg(H_POLL(s_states_agree(c, port, jobs, n, why_, sizeof why_), 20000), "%s", \
                      why_);                                                                    \
    } while (0)

static void s_cli_ok(h_cluster_t *c, const char *a, const char *b, const char *d)
{
    h_run_t *r = h_cli(c, a, b, d, NULL);
    ck_assert_msg(r->rc == 0, "%s %s: %s", a, b, h_run_desc(r));
    h_run_free(&r);
}

/* The state counts are kept in O(1) as the tasks change: after each step
   of steering (limits, holds of jobs and tasks, priorities, a dependency
   that fails, a worker lost, a master restart, cancels) they agree with
   the tasks themselves. */
START_TIMED_TEST(metrics_task_states_agree_with_the_tasks_through_steering_and_restarts, 240)
{
    h_cluster_t *c = h_cluster_new("http_agree");
    h_proc_t *m = h_master_start(c, 0, "--http", "127.0.0.1:0", "--heartbeat-ms", "200", NULL);
    int port = h_http_port(m);
    h_proc_t *w = h_worker_start(c, "w1", 2, "--resources", "cpus=2", NULL);
    int64_t jobs[5];
    char id[5][24];
    jobs[0] = h_submit(c, NULL, "--max-running", "1", "--cpus", "1", "--array", "1-4", "--",
                       "sleep", "60", NULL);
    jobs[1] = h_submit(c, NULL, "--cpus", "1", "--", "false", NULL);
    for (int i = 0; i < 2; i++)
        snprintf(id[i], sizeof id[i], "%lld", (long long) jobs[i]);
    jobs[2] = h_submit(c, NULL, "--after", id[1], "--cpus", "1", "--array", "1-3", "--", "sleep",
                       "60", NULL);
    jobs[3] = h_submit(c, NULL, "--cpus", "1", "--array", "1-3", "--", "sleep", "60", NULL);
    jobs[4] = h_submit(c, NULL, "--cpus", "1", "--array", "1-3", "--", "sleep", "60", NULL);
    for (int i = 2; i < 5; i++)
        snprintf(id[i], sizeof id[i], "%lld", (long long) jobs[i]);
    s_cli_ok(c, "hold", id[3], NULL);
    ck_assert_int_eq(h_wait(c, jobs[2], 30000), 1);   /* dep_failed, once job 1 failed */
    S_AGREE(c, port, jobs, 5);
    s_cli_ok(c, "limit", id[0], "2");
    S_AGREE(c, port, jobs, 5);
    s_cli_ok(c, "priority", id[4], "5");
    char one[40];
    snprintf(one, sizeof one, "%s.2", id[4]);
    s_cli_ok(c, "hold", one, NULL);
    s_cli_ok(c, "release", id[3], NULL);
    S_AGREE(c, port, jobs, 5);
    s_cli_ok(c, "hold", id[3], NULL);
    s_cli_ok(c, "limit", id[0], "1");
    S_AGREE(c, port, jobs, 5);
    /* A worker lost: what it ran is queued again (held, for the held job). */
    h_proc_kill9(w);
    S_AGREE(c, port, jobs, 5);
    /* A restart: the counts are rebuilt from the store. */
    h_proc_stop(m, 20000);
    m = h_master_start(c, 0, "--http", "127.0.0.1:0", "--heartbeat-ms", "200", NULL);
    port = h_http_port(m);
    S_AGREE(c, port, jobs, 5);
    h_worker_start(c, "w2", 2, "--resources", "cpus=2", NULL);
    S_AGREE(c, port, jobs, 5);
    s_cli_ok(c, "release", one, NULL);
    s_cli_ok(c, "limit", id[0], "0");
    S_AGREE(c, port, jobs, 5);
    for (int i = 0; i < 5; i++) {
        h_run_t *r = h_cli(c, "cancel", id[i], NULL);
        h_run_free(&r);
        h_wait(c, jobs[i], 30000);
    }
    S_AGREE(c, port, jobs, 5);
    resp_t mr = s_get(port, "/metrics", NULL);
    const char *zero[] = {"queued", "retry_wait", "held", "dep_wait", "capped", "assigned", "running"};
    for (int i = 0; i < 7; i++)
        ck_assert_msg(s_metric_state(mr.body, zero[i]) == 0, "%s after cancels:\n%s", zero[i],
                      mr.body);
    s_resp_free(&mr);
    h_cluster_destroy(&c);
}
END_TEST

/* The resources the live workers declare and their tasks use, summed
   per resource name, in base units (bytes for mem): no worker or task id
   in the labels. */
START_TIMED_TEST(metrics_sum_the_resources_of_live_workers_and_what_their_tasks_use, 90)
{
    h_cluster_t *c = h_cluster_new("http_resources");
    h_proc_t *m = h_master_start(c, 0, "--http", "127.0.0.1:0", "--heartbeat-ms", "200", NULL);
    int port = h_http_port(m);
    h_worker_start(c, "w1", 4, "--resources", "cpus=4,mem=2G,licence=3", NULL);
    h_worker_start(c, "w2", 2, "--resources", "cpus=2,mem=1G", NULL);
    int64_t job = h_submit(c, NULL, "--cpus", "2", "--mem", "512M", "--resource", "licence=1",
                           "--", "sleep", "30", NULL);
    ck_assert(H_POLL(h_status_count(c, job, "running") == 1, 20000));
    resp_t r = s_get(port, "/metrics", NULL);
    ck_assert_int_eq(r.status, 200);
    const char *expect[] = {
        "ztask_resource_capacity{resource=cpus}=6",
        "ztask_resource_capacity{resource=mem}=3221225472",
        "ztask_resource_capacity{resource=licence}=3",
        "ztask_resource_in_use{resource=cpus}=2",
        "ztask_resource_in_use{resource=mem}=536870912",
        "ztask_resource_in_use{resource=licence}=1",
        NULL};
    s_check_metrics(c, r.body, expect);
    s_resp_free(&r);
    h_cancel(c, job);
    resp_t mr = {0};
    ck_assert_msg(H_POLL((s_resp_free(&mr), mr = s_get(port, "/metrics", NULL),
                          strstr(mr.body, "ztask_resource_in_use{resource=\"mem\"} 0\n") != NULL),
                         20000),
                  "the memory was never given back:\n%s", mr.body);
    s_resp_free(&mr);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_http", h_slowdown()));
}
