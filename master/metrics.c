/*  metrics: counters, histograms and their Prometheus text (see metrics.h). */
#include "metrics.h"

#include "../common/clock.h"
#include "../common/version.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Buckets (upper bounds, seconds). Task times span a noop's microseconds
   to a command's half hour; commits, a memory write to a slow fsync. */
static const double TASK_BUCKETS[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800};
#define NTASK_B (sizeof TASK_BUCKETS / sizeof TASK_BUCKETS[0])
static const double COMMIT_BUCKETS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,   0.25,   0.5,   1,    2.5};
#define NCOMMIT_B (sizeof COMMIT_BUCKETS / sizeof COMMIT_BUCKETS[0])
static const double ROWS_BUCKETS[] = {1, 10, 100, 1000, 10000, 100000};
#define NROWS_B (sizeof ROWS_BUCKETS / sizeof ROWS_BUCKETS[0])
/* Turns of the loop: most take microseconds; one past a heartbeat (1 s)
   is a stall every worker and client feels. */
static const double TURN_BUCKETS[] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025,
                                      0.05,   0.1,    0.25,  0.5,   1,    2.5};
#define NTURN_B (sizeof TURN_BUCKETS / sizeof TURN_BUCKETS[0])
#define MAX_BUCKETS 12

typedef struct {
    const double *bounds;
    int nbounds;
    int64_t counts[MAX_BUCKETS + 1];   /* per bucket (not cumulative); last = +Inf */
    double sum;
    int64_t count;
} histo_t;

/* (type, outcome) pairs of API replies seen: a bounded set (types x
   error codes), found by a linear search over a few dozen. */
#define MAX_API_PAIRS 96
typedef struct {
    char type[16], outcome[24];
    int64_t n;
} api_pair_t;

#define MAX_AUTH_REASONS 8

static const char *OUTCOME_NAMES[M_OUT_N] = {"done", "failed", "timeout", "cancelled",
                                              "dep_failed"};
static const char *KIND_NAMES[M_KIND_N] = {"exec", "fn"};

struct metrics {
    double start_wall;
    int64_t submitted, retried, workers_lost, duplicates, commits_fsynced;
    int64_t recalled;
    int64_t finished[M_OUT_N];
    histo_t queue_wait[M_KIND_N], run_time[M_KIND_N];
    histo_t commit_secs, commit_rows;
    histo_t turn_secs;
    double turn_max;           /* the longest turn since start, seconds */
    api_pair_t api[MAX_API_PAIRS];
    int napi;
    struct {
        const char *reason;   /* static */
        int64_t n;
    } auth[MAX_AUTH_REASONS];
    int nauth;
    int64_t http_refused;      /* -1 without --http */
    /* Throughput ring: slot (second % N) holds that second's counts;
       sec[] says which second a slot holds, so a stale one reads 0. */
    int64_t ring_sec[METRICS_SERIES_SECONDS];
    int64_t ring_done[METRICS_SERIES_SECONDS], ring_failed[METRICS_SERIES_SECONDS];
};

static void s_histo_init(histo_t *h, const double *bounds, int n)
{
    h->bounds = bounds;
    h->nbounds = n;
}

static void s_observe(histo_t *h, double v)
{
    int i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

metrics_t *metrics_new(int64_t now_ms)
{
    (void) now_ms;
    metrics_t *self = xcalloc(1, sizeof *self);
    self->start_wall = clock_wall();
    for (int k = 0; k < M_KIND_N; k++) {
        s_histo_init(&self->queue_wait[k], TASK_BUCKETS, NTASK_B);
        s_histo_init(&self->run_time[k], TASK_BUCKETS, NTASK_B);
    }
    s_histo_init(&self->commit_secs, COMMIT_BUCKETS, NCOMMIT_B);
    s_histo_init(&self->commit_rows, ROWS_BUCKETS, NROWS_B);
    s_histo_init(&self->turn_secs, TURN_BUCKETS, NTURN_B);
    for (int i = 0; i < METRICS_SERIES_SECONDS; i++)
        self->ring_sec[i] = -1;
    self->http_refused = -1;
    return self;
}

void metrics_destroy(metrics_t **p)
{
    if (!p || !*p)
        return;
    free(*p);
    *p = NULL;
}

void metrics_submitted(metrics_t *self, int64_t n)
{
    self->submitted += n;
}

void metrics_finished(metrics_t *self, metrics_outcome_t outcome, int64_t now_ms)
{
    self->finished[outcome]++;
    int64_t sec = now_ms / 1000;
    int slot = (int) (sec % METRICS_SERIES_SECONDS);
    if (self->ring_sec[slot] != sec) {
        self->ring_sec[slot] = sec;
        self->ring_done[slot] = self->ring_failed[slot] = 0;
    }
    if (outcome == M_OUT_DONE)
        self->ring_done[slot]++;
    else
        self->ring_failed[slot]++;
}

void metrics_retried(metrics_t *self)
{
    self->retried++;
}

void metrics_queue_wait(metrics_t *self, metrics_kind_t kind, double seconds)
{
    s_observe(&self->queue_wait[kind], seconds < 0 ? 0 : seconds);
}

void metrics_run_time(metrics_t *self, metrics_kind_t kind, double seconds)
{
    s_observe(&self->run_time[kind], seconds < 0 ? 0 : seconds);
}

void metrics_worker_lost(metrics_t *self)
{
    self->workers_lost++;
}

void metrics_recalled(metrics_t *self, int64_t n)
{
    self->recalled += n;
}

void metrics_duplicate(metrics_t *self)
{
    self->duplicates++;
}

void metrics_auth_refused(metrics_t *self, const char *reason)
{
    for (int i = 0; i < self->nauth; i++)
        if (strcmp(self->auth[i].reason, reason) == 0) {
            self->auth[i].n++;
            return;
        }
    if (self->nauth < MAX_AUTH_REASONS) {
        self->auth[self->nauth].reason = reason;
        self->auth[self->nauth++].n = 1;
    }
}

void metrics_set_http_refused(metrics_t *self, int64_t n)
{
    self->http_refused = n;
}

void metrics_commit(metrics_t *self, double seconds, int64_t rows, bool fsynced)
{
    self->commits_fsynced += fsynced;
    s_observe(&self->commit_secs, seconds < 0 ? 0 : seconds);
    s_observe(&self->commit_rows, (double) rows);
}

void metrics_loop_turn(metrics_t *self, double seconds)
{
    if (seconds < 0)
        seconds = 0;
    s_observe(&self->turn_secs, seconds);
    if (seconds > self->turn_max)
        self->turn_max = seconds;
}

void metrics_api_request(metrics_t *self, const char *type, const char *outcome)
{
    for (int i = 0; i < self->napi; i++)
        if (strcmp(self->api[i].type, type) == 0 && strcmp(self->api[i].outcome, outcome) == 0) {
            self->api[i].n++;
            return;
        }
    /* The set is bounded by the protocol; the last slot takes anything
       beyond (it cannot happen with today's types and codes). */
    if (self->napi == MAX_API_PAIRS - 1) {
        type = "other";
        outcome = "other";
        for (int i = 0; i < self->napi; i++)
            if (strcmp(self->api[i].type, type) == 0) {
                self->api[i].n++;
                return;
            }
    }
    api_pair_t *p = &self->api[self->napi++];
    snprintf(p->type, sizeof p->type, "%s", type);
    snprintf(p->outcome, sizeof p->outcome, "%s", outcome);
    p->n = 1;
}

metrics_totals_t metrics_totals(const metrics_t *self)
{
    metrics_totals_t t = {.submitted = self->submitted,
                          .retried = self->retried,
                          .workers_lost = self->workers_lost,
                          .duplicates = self->duplicates};
    memcpy(t.finished, self->finished, sizeof t.finished);
    return t;
}

int metrics_series(const metrics_t *self, int64_t now_ms, int n, int64_t *done, int64_t *failed)
{
    if (n > METRICS_SERIES_SECONDS)
        n = METRICS_SERIES_SECONDS;
    int64_t last = now_ms / 1000;
    for (int i = 0; i < n; i++) {
        int64_t sec = last - (n - 1 - i);
        int slot = (int) (((sec % METRICS_SERIES_SECONDS) + METRICS_SERIES_SECONDS)
                          % METRICS_SERIES_SECONDS);
        bool fresh = self->ring_sec[slot] == sec;
        done[i] = fresh ? self->ring_done[slot] : 0;
        failed[i] = fresh ? self->ring_failed[slot] : 0;
    }
    return n;
}

/* ---- the text format ---- */

void metrics_header(strbuf_t *out, const char *name, const char *type, const char *help)
{
    strbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_label(strbuf_t *out, const char *text)
{
    for (const char *c = text; *c; c++) {
        if (*c == '\\' || *c == '"')
            strbuf_printf(out, "\\%c", *c);
        else if (*c == '\n')
            strbuf_append(out, "\\n", 2);
        else
            strbuf_append(out, c, 1);
    }
}

/* A bucket bound as Prometheus clients print it ("0.005", "1", "+Inf"). */
static void s_bound(char *buf, size_t len, const histo_t *h, int i)
{
    if (i == h->nbounds)
        snprintf(buf, len, "+Inf");
    else
        snprintf(buf, len, "%g", h->bounds[i]);
}

static void s_histo(strbuf_t *out, const char *name, const char *labels, const histo_t *h)
{
    int64_t cum = 0;
    char b[32];
    for (int i = 0; i <= h->nbounds; i++) {
        cum += h->counts[i];
        s_bound(b, sizeof b, h, i);
        strbuf_printf(out, "%s_bucket{%s%sle=\"%s\"} %lld\n", name, labels, labels[0] ? "," : "",
                      b, (long long) cum);
    }
    if (labels[0]) {
        strbuf_printf(out, "%s_sum{%s} %.9g\n%s_count{%s} %lld\n", name, labels, h->sum, name,
                      labels, (long long) h->count);
    } else {
        strbuf_printf(out, "%s_sum %.9g\n%s_count %lld\n", name, h->sum, name,
                      (long long) h->count);
    }
}

/* CPU seconds (user + system) and resident bytes from /proc; -1 when
   /proc cannot be read (the series are then left out). */
static void s_proc_stat(double *cpu, double *rss)
{
    *cpu = *rss = -1;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        /* Fields after the command name, which may hold spaces and ')'. */
        char *p = strrchr(buf, ')');
        unsigned long long ut, st;
        long long rss_pages;
        if (p && sscanf(p + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                        "%*d %*d %*u %*u %lld",
                        &ut, &st, &rss_pages) == 3) {
            long hz = sysconf(_SC_CLK_TCK);
            *cpu = (double) (ut + st) / (double) (hz > 0 ? hz : 100);
            *rss = (double) rss_pages * (double) sysconf(_SC_PAGESIZE);
        }
    }
}

static int s_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;   /* the directory's own fd */
}

static void s_counter(strbuf_t *out, const char *name, const char *help, int64_t v)
{
    metrics_header(out, name, "counter", help);
    strbuf_printf(out, "%s %lld\n", name, (long long) v);
}

void metrics_render(const metrics_t *self, strbuf_t *out)
{
    metrics_header(out, "ztask_build_info", "gauge", "The ztask version of this master (always 1).");
    strbuf_printf(out, "ztask_build_info{version=\"");
    metrics_label(out, ztask_version());
    strbuf_printf(out, "\"} 1\n");
    s_counter(out, "ztask_tasks_submitted_total", "Tasks accepted (committed) by submits.",
              self->submitted);
    metrics_header(out, "ztask_tasks_finished_total", "counter",
                   "Tasks that reached a final state, by outcome.");
    for (int o = 0; o < M_OUT_N; o++)
        strbuf_printf(out, "ztask_tasks_finished_total{outcome=\"%s\"} %lld\n", OUTCOME_NAMES[o],
                      (long long) self->finished[o]);
    s_counter(out, "ztask_tasks_retried_total", "Failed attempts put back in the queue for a retry.",
              self->retried);
    s_counter(out, "ztask_workers_lost_total",
              "Workers declared dead (silent for liveness x heartbeat, or key revoked).",
              self->workers_lost);
    s_counter(out, "ztask_tasks_recalled_total",
              "Tasks a worker gave back unstarted when another worker idled (sent again).",
              self->recalled);
    s_counter(out, "ztask_duplicate_results_total",
              "Results for an attempt that was no longer current (kept, changed nothing).",
              self->duplicates);
    metrics_header(out, "ztask_auth_refusals_total", "counter",
                   "Requests and connections refused by authentication, by reason.");
    for (int i = 0; i < self->nauth; i++)
        strbuf_printf(out, "ztask_auth_refusals_total{reason=\"%s\"} %lld\n", self->auth[i].reason,
                      (long long) self->auth[i].n);
    if (self->http_refused >= 0)
        strbuf_printf(out, "ztask_auth_refusals_total{reason=\"http_token\"} %lld\n",
                      (long long) self->http_refused);
    metrics_header(out, "ztask_api_requests_total", "counter",
                   "API replies, by request type and outcome (ok or the error code).");
    for (int i = 0; i < self->napi; i++) {
        strbuf_printf(out, "ztask_api_requests_total{type=\"");
        metrics_label(out, self->api[i].type);
        strbuf_printf(out, "\",outcome=\"");
        metrics_label(out, self->api[i].outcome);
        strbuf_printf(out, "\"} %lld\n", (long long) self->api[i].n);
    }
    char labels[32];
    metrics_header(out, "ztask_task_queue_wait_seconds", "histogram",
                   "Time from ready (submit committed or retry backoff over) to sent to a worker, once per execution.");
    for (int k = 0; k < M_KIND_N; k++) {
        snprintf(labels, sizeof labels, "kind=\"%s\"", KIND_NAMES[k]);
        s_histo(out, "ztask_task_queue_wait_seconds", labels, &self->queue_wait[k]);
    }
    metrics_header(out, "ztask_task_run_seconds", "histogram",
                   "Run time of finished attempts as their worker measured it.");
    for (int k = 0; k < M_KIND_N; k++) {
        snprintf(labels, sizeof labels, "kind=\"%s\"", KIND_NAMES[k]);
        s_histo(out, "ztask_task_run_seconds", labels, &self->run_time[k]);
    }
    metrics_header(out, "ztask_commit_duration_seconds", "histogram",
                   "Grouped commits: from handing the batch over to its return.");
    s_histo(out, "ztask_commit_duration_seconds", "", &self->commit_secs);
    metrics_header(out, "ztask_commit_rows", "histogram", "Grouped commits: rows written per commit.");
    s_histo(out, "ztask_commit_rows", "", &self->commit_rows);
    s_counter(out, "ztask_commits_fsynced_total",
              "Grouped commits that were fsynced (all with --sync full; with acked, those an "
              "answer waited for and one a second).",
              self->commits_fsynced);
    metrics_header(out, "ztask_loop_turn_seconds", "histogram",
                   "Turns of the master's loop: from the poll's return to the next poll.");
    s_histo(out, "ztask_loop_turn_seconds", "", &self->turn_secs);
    metrics_header(out, "ztask_loop_turn_max_seconds", "gauge",
                   "The longest turn of the master's loop since it started.");
    strbuf_printf(out, "ztask_loop_turn_max_seconds %.6f\n", self->turn_max);

    double cpu, rss;
    s_proc_stat(&cpu, &rss);
    if (cpu >= 0) {
        metrics_header(out, "process_cpu_seconds_total", "counter",
                       "Total user and system CPU time spent in seconds.");
        strbuf_printf(out, "process_cpu_seconds_total %.2f\n", cpu);
        metrics_header(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        strbuf_printf(out, "process_resident_memory_bytes %.0f\n", rss);
    }
    int fds = s_open_fds();
    if (fds >= 0) {
        metrics_header(out, "process_open_fds", "gauge", "Number of open file descriptors.");
        strbuf_printf(out, "process_open_fds %d\n", fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        metrics_header(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        strbuf_printf(out, "process_max_fds %llu\n", (unsigned long long) rl.rlim_cur);
    }
    metrics_header(out, "process_start_time_seconds", "gauge",
                   "Start time of the process since unix epoch in seconds.");
    strbuf_printf(out, "process_start_time_seconds %.3f\n", self->start_wall);
}
