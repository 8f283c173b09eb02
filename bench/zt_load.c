/*  zt-load: the benchmark's load generator for a ztask master.

    Speaks the API channel directly with proto/ (one DEALER, one request in
    flight), so what it measures is the master and its workers, not the
    CLI's progress drawing or polling interval.

      zt-load --master H:P throughput --n N [--exec [--cmd PATH]] [--batch B] [--wait-ms W]
              [--timeout S]
          Submits one job of N tasks ({"fn":"noop"}, or {"argv":[PATH]},
          PATH "true" unless --cmd gives another)
          in batches of B (default 10000, the protocol's limit), then asks
          for the job's status, each request held by the master until the
          job finishes or W ms pass (default 1000). The clock runs from the
          first submit to the status reply that shows the last task
          finished, which the master sends as soon as that result is
          committed. The requests stay rare on purpose: the master commits
          before it answers any, so a client asking every few milliseconds
          would add commits (and wakeups) of its own.

      zt-load --master H:P latency [--samples K] [--exec] [--timeout S]
          K times (default 1000): submit a one-task job with wait_ms, a
          submit the master answers when the task's result is committed
          (an older master answers at once: then a status request with
          wait_ms follows). One sample is submit sent -> that answer
          received. After each sample (outside its time) one plain status
          request is timed, for reference (printed as poll_rtt_us).

    Output: one JSON object on stdout (the driver, bench/run.py, reads it).
    Exit: 0 ok, 1 the master refused or timed out, 2 usage.
    Every wait is bounded by --timeout (default 300 s) and by a 10 s
    timeout per request.

    Threads: one. Owns one ZeroMQ context and socket.
*/
#include "../common/clock.h"
#include "../common/util.h"
#include "../common/zmqx.h"
#include "../proto/proto.h"
#include "quantile.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define REQUEST_TIMEOUT_MS 10000

typedef struct {
    void *ctx;
    void *sock;
    proto_spec_t *template;   /* the one task every job repeats */
    int64_t deadline_ms;      /* monotonic; the whole run ends by then */
} load_t;

/* Sends req, waits at most REQUEST_TIMEOUT_MS for the reply. Returns the
   reply (caller owns) when it is ok; NULL after printing why otherwise. */
static proto_reply_t *s_call(load_t *self, const proto_req_t *req)
{
    char *text = proto_req_encode(req);
    if (!text || zmqx_send(self->sock, text, strlen(text), 0) != 0) {
        fprintf(stderr, "zt-load: cannot send a request\n");
        free(text);
        return NULL;
    }
    free(text);
    zmq_pollitem_t item = { self->sock, 0, ZMQ_POLLIN, 0 };
    int rc = zmq_poll(&item, 1, REQUEST_TIMEOUT_MS);
    if (rc <= 0) {
        fprintf(stderr, "zt-load: no reply within %d ms\n", REQUEST_TIMEOUT_MS);
        return NULL;
    }
    size_t len = 0;
    char *buf = zmqx_recv(self->sock, &len, 0);
    if (!buf) {
        fprintf(stderr, "zt-load: receive failed\n");
        return NULL;
    }
    proto_err_t err;
    proto_reply_t *rep = proto_reply_decode(buf, len, req->type, &err);
    free(buf);
    if (!rep) {
        fprintf(stderr, "zt-load: unreadable reply: %s\n", err.message);
        return NULL;
    }
    if (!rep->ok) {
        fprintf(stderr, "zt-load: refused: %s (%s)\n", rep->error.message, rep->error.code);
        proto_reply_destroy(&rep);
        return NULL;
    }
    return rep;
}

/* Submits tasks [first, first + n) of a job (0 = new); fills *job. With
   wait_ms (the last batch only), the master holds the answer until the
   job has finished or the wait is over, and *finished / *failed get what
   its record says (-1: no record, an older master). */
static int s_submit(load_t *self, int64_t *job, int64_t first, int n, bool more, int wait_ms,
                    int64_t *finished, int64_t *failed)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_SUBMIT);
    req->job = *job;
    req->more = more;
    req->wait_ms = wait_ms;
    req->tasks = xcalloc((size_t) (n > 0 ? n : 1), sizeof *req->tasks);
    for (int i = 0; i < n; i++) {
        req->tasks[i] = proto_spec_dup(self->template);
        req->tasks[i]->index = first + i;
    }
    req->ntasks = n;
    proto_reply_t *rep = s_call(self, req);
    proto_req_destroy(&req);
    if (!rep)
        return -1;
    *job = rep->job;
    if (finished)
        *finished = *failed = -1;
    for (int i = 0; finished && i < rep->njobs; i++) {
        if (rep->jobs[i].id == rep->job) {
            *finished = rep->jobs[i].done + rep->jobs[i].failed + rep->jobs[i].cancelled;
            *failed = rep->jobs[i].failed + rep->jobs[i].cancelled;
        }
    }
    proto_reply_destroy(&rep);
    return 0;
}

/* One status request, held by the master until the job has finished or
   wait_ms have passed; *finished gets done + failed + cancelled. */
static int s_finished(load_t *self, int64_t job, int wait_ms, int64_t *finished, int64_t *failed)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_STATUS);
    req->job = job;
    req->wait_ms = wait_ms;
    proto_reply_t *rep = s_call(self, req);
    proto_req_destroy(&req);
    if (!rep)
        return -1;
    int rc = -1;
    for (int i = 0; i < rep->njobs; i++) {
        if (rep->jobs[i].id == job) {
            *finished = rep->jobs[i].done + rep->jobs[i].failed + rep->jobs[i].cancelled;
            *failed = rep->jobs[i].failed + rep->jobs[i].cancelled;
            rc = 0;
        }
    }
    if (rc != 0)
        fprintf(stderr, "zt-load: job %" PRId64 " missing from its status reply\n", job);
    proto_reply_destroy(&rep);
    return rc;
}

static bool s_expired(const load_t *self)
{
    if (clock_mono_ms() < self->deadline_ms)
        return false;
    fprintf(stderr, "zt-load: timed out\n");
    return true;
}

static int s_throughput(load_t *self, int64_t n, int batch, int wait_ms)
{
    int64_t t0 = clock_mono_us();
    int64_t job = 0;
    int64_t first = 0;
    do {   /* at least one submit, so n = 0 still makes (and closes) a job */
        int count = (int) (n - first < batch ? n - first : batch);
        if (s_submit(self, &job, first, count, first + count < n, 0, NULL, NULL) != 0)
            return 1;
        if (s_expired(self))
            return 1;
        first += count;
    } while (first < n);
    int64_t t_submitted = clock_mono_us();
    int64_t finished = 0, failed = 0, polls = 0;
    while (true) {
        polls++;
        if (s_finished(self, job, wait_ms, &finished, &failed) != 0)
            return 1;
        if (finished >= n)
            break;
        if (s_expired(self))
            return 1;
    }
    int64_t t1 = clock_mono_us();
    double total_s = (double) (t1 - t0) / 1e6;
    printf("{\"n\":%" PRId64 ",\"job\":%" PRId64 ",\"submit_s\":%.6f,\"total_s\":%.6f,"
           "\"tasks_per_s\":%.1f,\"failed\":%" PRId64 ",\"polls\":%" PRId64 "}\n",
           n, job, (double) (t_submitted - t0) / 1e6, total_s,
           total_s > 0 ? (double) n / total_s : 0.0, failed, polls);
    return failed == 0 ? 0 : 1;
}

static int s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

static int s_latency(load_t *self, int samples)
{
    int64_t *lat = xcalloc((size_t) samples, sizeof *lat);
    int64_t polls = 0, poll_us_sum = 0;
    int rc = 1;
    for (int i = 0; i < samples; i++) {
        int64_t t0 = clock_mono_us();
        int64_t job = 0, finished = 0, failed = 0;
        /* One request: submit, held until the task's result is committed. */
        if (s_submit(self, &job, 0, 1, false, 5000, &finished, &failed) != 0)
            goto out;
        while (finished < 1) {
            if (s_expired(self))
                goto out;
            if (s_finished(self, job, 5000, &finished, &failed) != 0)
                goto out;
        }
        lat[i] = clock_mono_us() - t0;
        int64_t tp = clock_mono_us();
        if (s_finished(self, job, 0, &finished, &failed) != 0)
            goto out;
        polls++;
        poll_us_sum += clock_mono_us() - tp;
        if (failed) {
            fprintf(stderr, "zt-load: latency task failed\n");
            goto out;
        }
    }
    qsort(lat, (size_t) samples, sizeof *lat, s_cmp_i64);
    double sum = 0;
    for (int i = 0; i < samples; i++)
        sum += (double) lat[i];
    printf("{\"samples\":%d,\"p50_ms\":%.4f,\"p90_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f,"
           "\"mean_ms\":%.4f,\"poll_rtt_us\":%.1f}\n",
           samples, (double) quantile_nearest_rank(lat, samples, 0.50) / 1e3,
           (double) quantile_nearest_rank(lat, samples, 0.90) / 1e3,
           (double) quantile_nearest_rank(lat, samples, 0.99) / 1e3, (double) lat[samples - 1] / 1e3,
           sum / samples / 1e3, polls ? (double) poll_us_sum / (double) polls : 0.0);
    rc = 0;
out:
    free(lat);
    return rc;
}

static int s_usage(void)
{
    fprintf(stderr,
            "usage: zt-load --master HOST:PORT throughput --n N [--exec [--cmd PATH]] [--batch B]\n"
            "                                             [--wait-ms W]\n"
            "       zt-load --master HOST:PORT latency [--samples K] [--exec]\n"
            "       common: [--timeout SEC] (default 300)\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *master = NULL, *mode = NULL;
    int64_t n = 0, batch = PROTO_MAX_SUBMIT_BATCH, samples = 1000, wait_ms = 1000,
            timeout_s = 300;
    bool exec = false;
    const char *cmd = "true";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t *num = NULL, lo = 0, hi = 0;
        if (strcmp(a, "--master") == 0 && v) {
            master = v;
            i++;
            continue;
        } else if (strcmp(a, "--exec") == 0) {
            exec = true;
            continue;
        } else if (strcmp(a, "--cmd") == 0 && v && strlen(v) < 512 && !strpbrk(v, "\"\\")) {
            cmd = v;
            i++;
            continue;
        } else if (strcmp(a, "--n") == 0) {
            num = &n, lo = 0, hi = INT64_C(1) << 40;
        } else if (strcmp(a, "--batch") == 0) {
            num = &batch, lo = 1, hi = PROTO_MAX_SUBMIT_BATCH;
        } else if (strcmp(a, "--samples") == 0) {
            num = &samples, lo = 1, hi = 10000000;
        } else if (strcmp(a, "--wait-ms") == 0) {
            num = &wait_ms, lo = 0, hi = 5000;
        } else if (strcmp(a, "--timeout") == 0) {
            num = &timeout_s, lo = 1, hi = 86400;
        } else if (!mode && a[0] != '-') {
            mode = a;
            continue;
        } else {
            return s_usage();
        }
        if (!v || parse_int64(v, lo, hi, num) != 0)
            return s_usage();
        i++;
    }
    if (!master || !mode)
        return s_usage();

    char *spec_text = exec ? xasprintf("{\"argv\":[\"%s\"]}", cmd) : xstrdup("{\"fn\":\"noop\"}");
    proto_err_t err;
    load_t self = { 0 };
    self.template = proto_spec_decode(spec_text, strlen(spec_text), &err);
    self.deadline_ms = clock_mono_ms() + timeout_s * 1000;
    self.ctx = zmq_ctx_new();
    self.sock = self.ctx ? zmqx_socket(self.ctx, ZMQ_DEALER, 0, PROTO_MAX_API_MSG) : NULL;
    char *endpoint = xasprintf("tcp://%s", master);
    int rc = 1;
    if (!self.template || !self.sock || zmq_connect(self.sock, endpoint) != 0) {
        fprintf(stderr, "zt-load: cannot set up a socket to %s\n", endpoint);
    } else if (strcmp(mode, "throughput") == 0) {
        rc = s_throughput(&self, n, (int) batch, (int) wait_ms);
    } else if (strcmp(mode, "latency") == 0) {
        rc = s_latency(&self, (int) samples);
    } else {
        rc = s_usage();
    }
    free(endpoint);
    if (self.sock)
        zmq_close(self.sock);
    if (self.ctx)
        zmq_ctx_term(self.ctx);
    proto_spec_destroy(&self.template);
    free(spec_text);
    return rc;
}
