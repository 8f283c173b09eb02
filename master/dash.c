/*  dash: the loop's answers to the HTTP threads (see dash.h, web.h). */
#include "dash.h"

#include "resources.h"
#include "store.h"

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../common/version.h"
#include "../common/zmqx.h"
#include "../proto/proto.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Requests answered per dash_read: at most WEB_THREADS are ever out, so
   this only bounds a turn if that changes. */
#define REQUESTS_PER_TURN 8
#define MAX_PAGE 200
#define OUTPUT_CHUNK (64 * 1024)
#define SERIES_SHOWN 120   /* seconds of throughput the overview sends */
#define REASON_MAX 512     /* bytes of a task's error line a row carries */

struct dash {
    dash_config_t cfg;
    const web_t *web;        /* borrowed; NULL until dash_set_web */
    void *sock;
    char endpoint[64];
};

/* An answer: status, content type, body (owned). */
typedef struct {
    int status;
    const char *type;
    char *body;
} answer_t;

dash_t *dash_new(void *ctx, const dash_config_t *cfg, char *err, size_t errlen)
{
    dash_t *self = xcalloc(1, sizeof *self);
    self->cfg = *cfg;
    snprintf(self->endpoint, sizeof self->endpoint, "inproc://ztask-http-%p", (void *) self);
    self->sock = zmqx_socket(ctx, ZMQ_ROUTER, 0, 1 << 20);
    if (!self->sock || zmq_bind(self->sock, self->endpoint) != 0) {
        snprintf(err, errlen, "cannot bind %s: %s", self->endpoint, zmq_strerror(errno));
        dash_destroy(&self);
        return NULL;
    }
    return self;
}

void dash_destroy(dash_t **p)
{
    if (!p || !*p)
        return;
    if ((*p)->sock)
        zmq_close((*p)->sock);
    free(*p);
    *p = NULL;
}

void dash_set_web(dash_t *self, const web_t *web)
{
    self->web = web;
}

void *dash_socket(const dash_t *self)
{
    return self->sock;
}

const char *dash_endpoint(const dash_t *self)
{
    return self->endpoint;
}

/* ---- arguments ("key=value\n" lines, checked by the HTTP thread) ---- */

static const char *s_arg(const char *args, const char *key, char *buf, size_t len)
{
    size_t klen = strlen(key);
    for (const char *p = args; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t) (nl - p) : strlen(p);
        if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            snprintf(buf, len, "%.*s", (int) (n - klen - 1), p + klen + 1);
            return buf;
        }
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* An integer argument in [min, max]; def when absent; -1 when bad. */
static int s_arg_int(const char *args, const char *key, int64_t min, int64_t max, int64_t def,
                     int64_t *out)
{
    char buf[80];
    const char *v = s_arg(args, key, buf, sizeof buf);
    if (!v) {
        *out = def;
        return 0;
    }
    return parse_int64(v, min, max, out);
}

/* ---- answers ---- */

static answer_t s_json(int status, cJSON *root)
{
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    answer_t a = {status, "application/json", xstrdup(text)};
    cJSON_free(text);
    return a;
}

static answer_t s_fail(int status, const char *msg)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "error", msg);
    return s_json(status, root);
}

/* The unfinished tasks by state, and when the oldest ready one became
   ready, from what the modules keep: the jobs' counters (O(jobs)), the
   tasks in retry backoff, the workers' lists (O(tasks out)), the orphan
   count and the heads of the ready queues: never a pass over every task
   (a million queued would cost the loop a few hundred ms per scrape). */
typedef struct {
    int64_t queued, retry_wait, held, dep_wait, capped, assigned, running;
    int64_t oldest_ready_ms;   /* -1 when nothing is ready */
} task_states_t;

static task_states_t s_task_states(const dash_t *self, int64_t now)
{
    task_states_t s = {.oldest_ready_ms = sched_head_ready_ms(self->cfg.sched)};
    size_t pos = 0;
    job_t *job;
    int64_t queued = 0;
    while ((job = jobs_next(self->cfg.jobs, &pos)))
        queued += job->queued;
    s.retry_wait = (int64_t) sched_retry_waiting(self->cfg.sched, now);
    /* The jobs count every unfinished task not on a worker as queued;
       what waits for something else than a worker comes out of it: the
       parked (held, waiting for the jobs it depends on, at its job's
       --max-running) and those in a retry backoff (never parked at once:
       a parked task leaves the delayed queue). docs/metrics.md says why
       capped tasks are a state of their own, and why those parked for
       the rejoin window or their requeue's commit stay queued. */
    sched_parked_t parked = sched_parked(self->cfg.sched);
    s.held = (int64_t) parked.held;
    s.dep_wait = (int64_t) parked.deps;
    s.capped = (int64_t) parked.capped;
    int64_t waiting = s.retry_wait + s.held + s.dep_wait + s.capped;
    s.queued = queued > waiting ? queued - waiting : 0;
    pos = 0;
    worker_t *w;
    while ((w = registry_next(self->cfg.registry, &pos)))
        for (const sched_task_t *t = w->tasks; t; t = t->wnext)
            *(t->state == PROTO_ST_RUNNING ? &s.running : &s.assigned) += 1;
    /* Orphans (sent before a master restart, not claimed yet) wait like
       tasks sent and not started. */
    s.assigned += (int64_t) tasks_counts(self->cfg.tasks).orphans;
    return s;
}

/* One resource's sums over the live workers (s_resource_metrics). */
typedef struct {
    const char *name;          /* borrowed from a worker's pool */
    int64_t capacity, in_use;
} res_sum_t;

/* What the live workers declared and what their tasks use, summed per
   resource name: one series per name, never per worker or task (the
   names are few; a worker declares at most RES_MAX). In base units:
   bytes for mem, GPUs for gpus (the pools count thousandths). */
static void s_resource_metrics(dash_t *self, strbuf_t *out)
{
    size_t n = 0, cap = 16;
    res_sum_t *v = xcalloc(cap, sizeof *v);
    size_t pos = 0;
    worker_t *w;
    while ((w = registry_next(self->cfg.registry, &pos))) {
        if (!w->alive)
            continue;
        const res_pool_t *pool = &w->pool;
        for (int i = 0; i < pool->cap.n; i++) {
            size_t k = 0;
            while (k < n && strcmp(v[k].name, pool->cap.name[i]) != 0)
                k++;
            if (k == n) {
                if (n == cap)
                    v = xrealloc(v, (cap *= 2) * sizeof *v);
                v[n++] = (res_sum_t){.name = pool->cap.name[i]};
            }
            v[k].capacity += pool->cap.amount[i];
            v[k].in_use += res_in_use(pool, i);
        }
    }
    const char *which[2] = {"capacity", "in_use"};
    const char *help[2] = {"Resources the live workers declared, summed per resource (bytes "
                           "for mem, GPUs for gpus).",
                           "Resources the tasks on live workers use, summed per resource "
                           "(bytes for mem, GPUs for gpus)."};
    for (int m = 0; m < 2; m++) {
        char name[40];
        snprintf(name, sizeof name, "ztask_resource_%s", which[m]);
        metrics_header(out, name, "gauge", help[m]);
        for (size_t k = 0; k < n; k++) {
            int64_t amount = m == 0 ? v[k].capacity : v[k].in_use;
            strbuf_printf(out, "%s{resource=\"", name);
            metrics_label(out, v[k].name);
            if (strcmp(v[k].name, "gpus") == 0)
                strbuf_printf(out, "\"} %.3f\n", (double) amount / RES_GPU_UNIT);
            else
                strbuf_printf(out, "\"} %" PRId64 "\n", amount);
        }
    }
    free(v);
}

static answer_t s_metrics(dash_t *self, int64_t now)
{
    strbuf_t out = {0};
    if (self->web)
        metrics_set_http_refused(self->cfg.metrics, web_refused(self->web));
    metrics_render(self->cfg.metrics, &out);
    task_states_t s = s_task_states(self, now);
    metrics_header(&out, "ztask_tasks", "gauge", "Unfinished tasks by state.");
    strbuf_printf(&out,
                  "ztask_tasks{state=\"queued\"} %" PRId64 "\nztask_tasks{state=\"retry_wait\"} %" PRId64
                  "\nztask_tasks{state=\"held\"} %" PRId64 "\nztask_tasks{state=\"dep_wait\"} %" PRId64
                  "\nztask_tasks{state=\"capped\"} %" PRId64
                  "\nztask_tasks{state=\"assigned\"} %" PRId64 "\nztask_tasks{state=\"running\"} %" PRId64
                  "\n",
                  s.queued, s.retry_wait, s.held, s.dep_wait, s.capped, s.assigned, s.running);
    metrics_header(&out, "ztask_oldest_queued_task_age_seconds", "gauge",
                   "How long the oldest task ready to run has waited (0 when none).");
    strbuf_printf(&out, "ztask_oldest_queued_task_age_seconds %.3f\n",
                  s.oldest_ready_ms < 0 ? 0.0 : (double) (now - s.oldest_ready_ms) / 1000.0);
    int64_t unfinished = 0, finished = 0;
    size_t pos = 0;
    job_t *job;
    while ((job = jobs_next(self->cfg.jobs, &pos)))
        *(job->finished > 0 ? &finished : &unfinished) += 1;
    metrics_header(&out, "ztask_jobs", "gauge", "Jobs the master keeps, by state.");
    strbuf_printf(&out, "ztask_jobs{state=\"unfinished\"} %" PRId64 "\nztask_jobs{state=\"finished\"} %"
                  PRId64 "\n", unfinished, finished);
    int64_t alive = 0, draining = 0, dead = 0;
    pos = 0;
    worker_t *w;
    while ((w = registry_next(self->cfg.registry, &pos)))
        *(!w->alive ? &dead : w->draining ? &draining : &alive) += 1;
    metrics_header(&out, "ztask_workers", "gauge", "Workers the master knows, by state.");
    strbuf_printf(&out, "ztask_workers{state=\"alive\"} %" PRId64 "\nztask_workers{state=\"draining\"} %"
                  PRId64 "\nztask_workers{state=\"dead\"} %" PRId64 "\n", alive, draining, dead);
    metrics_header(&out, "ztask_worker_slots", "gauge", "Task threads of each live worker.");
    pos = 0;
    while ((w = registry_next(self->cfg.registry, &pos)))
        if (w->alive) {
            strbuf_printf(&out, "ztask_worker_slots{worker=\"");
            metrics_label(&out, w->id);
            strbuf_printf(&out, "\"} %d\n", w->threads);
        }
    metrics_header(&out, "ztask_worker_slots_busy", "gauge",
                   "Tasks each live worker holds (assigned or running; may exceed its slots "
                   "by the prefetch).");
    pos = 0;
    while ((w = registry_next(self->cfg.registry, &pos)))
        if (w->alive) {
            strbuf_printf(&out, "ztask_worker_slots_busy{worker=\"");
            metrics_label(&out, w->id);
            strbuf_printf(&out, "\"} %d\n", w->inflight);
        }
    s_resource_metrics(self, &out);
    metrics_header(&out, "ztask_uptime_seconds", "gauge", "Seconds since this master started.");
    strbuf_printf(&out, "ztask_uptime_seconds %.3f\n", (double) (now - self->cfg.started_ms) / 1000.0);
    return (answer_t){200, "text/plain; version=0.0.4; charset=utf-8", out.data};
}

static answer_t s_overview(dash_t *self, int64_t now, bool control)
{
    cJSON *root = cJSON_CreateObject();
    /* What the page may offer: cancel only with a control token. */
    cJSON_AddBoolToObject(root, "control", control);
    cJSON_AddStringToObject(root, "version", ztask_version());
    cJSON_AddNumberToObject(root, "uptime", (double) (now - self->cfg.started_ms) / 1000.0);
    cJSON_AddNumberToObject(root, "now", clock_wall());
    metrics_totals_t t = metrics_totals(self->cfg.metrics);
    cJSON *tot = cJSON_AddObjectToObject(root, "totals");
    cJSON_AddNumberToObject(tot, "submitted", (double) t.submitted);
    cJSON_AddNumberToObject(tot, "done", (double) t.finished[M_OUT_DONE]);
    cJSON_AddNumberToObject(tot, "failed", (double) (t.finished[M_OUT_FAILED] + t.finished[M_OUT_TIMEOUT]));
    cJSON_AddNumberToObject(tot, "cancelled", (double) t.finished[M_OUT_CANCELLED]);
    cJSON_AddNumberToObject(tot, "retried", (double) t.retried);
    cJSON_AddNumberToObject(tot, "workers_lost", (double) t.workers_lost);
    task_states_t s = s_task_states(self, now);
    cJSON *st = cJSON_AddObjectToObject(root, "tasks");
    cJSON_AddNumberToObject(st, "queued", (double) s.queued);
    cJSON_AddNumberToObject(st, "retry_wait", (double) s.retry_wait);
    cJSON_AddNumberToObject(st, "held", (double) s.held);
    cJSON_AddNumberToObject(st, "dep_wait", (double) s.dep_wait);
    cJSON_AddNumberToObject(st, "capped", (double) s.capped);
    cJSON_AddNumberToObject(st, "assigned", (double) s.assigned);
    cJSON_AddNumberToObject(st, "running", (double) s.running);
    int64_t done[SERIES_SHOWN], failed[SERIES_SHOWN];
    int n = metrics_series(self->cfg.metrics, now, SERIES_SHOWN, done, failed);
    cJSON *series = cJSON_AddObjectToObject(root, "series");
    cJSON *d = cJSON_AddArrayToObject(series, "done");
    cJSON *f = cJSON_AddArrayToObject(series, "failed");
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(d, cJSON_CreateNumber((double) done[i]));
        cJSON_AddItemToArray(f, cJSON_CreateNumber((double) failed[i]));
    }
    return s_json(200, root);
}

static int s_cmp_job_desc(const void *a, const void *b)
{
    const job_t *x = *(const job_t *const *) a, *y = *(const job_t *const *) b;
    return x->id < y->id ? 1 : x->id > y->id ? -1 : 0;
}

static answer_t s_jobs(dash_t *self, const char *args)
{
    int64_t limit;
    if (s_arg_int(args, "limit", 1, MAX_PAGE, 50, &limit) != 0)
        return s_fail(400, "limit wants 1..200");
    /* The jobs' ends and counts are the store's for good only once
       fsynced (--sync acked commits results without): shown after a
       flush, as `ztask jobs` is. Best effort, as for a page of tasks:
       a full disk must not blind the dashboard. */
    journal_flush(self->cfg.journal);
    size_t n = jobs_count(self->cfg.jobs), pos = 0, k = 0;
    job_t **all = xcalloc(n + 1, sizeof *all);
    job_t *job;
    while ((job = jobs_next(self->cfg.jobs, &pos)) && k < n)
        all[k++] = job;
    qsort(all, k, sizeof *all, s_cmp_job_desc);
    double now = clock_wall();
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "jobs");
    for (size_t i = 0; i < k && (int64_t) i < limit; i++) {
        job = all[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double) job->id);
        cJSON_AddStringToObject(o, "name", job->name ? job->name : "");
        cJSON_AddNumberToObject(o, "total", (double) job->total);
        cJSON_AddNumberToObject(o, "queued", (double) job->queued);
        cJSON_AddNumberToObject(o, "running", (double) job->running);
        cJSON_AddNumberToObject(o, "done", (double) job->done);
        cJSON_AddNumberToObject(o, "failed", (double) job->failed);
        cJSON_AddNumberToObject(o, "cancelled", (double) job->cancelled_n);
        cJSON_AddNumberToObject(o, "dep_failed", (double) job->dep_failed);
        cJSON_AddBoolToObject(o, "closed", job->closed);
        cJSON_AddBoolToObject(o, "finished", job->finished > 0);
        cJSON_AddNumberToObject(o, "created", job->created);
        cJSON_AddNumberToObject(o, "finished_at", job->finished);
        /* Rate: tasks ended per second over the job's life so far; the
           ETA assumes it holds for what is left. */
        int64_t ended = job->done + job->failed + job->cancelled_n;
        double end = job->finished > 0 ? job->finished : now;
        double secs = end - job->created;
        double rate = secs > 0.5 ? (double) ended / secs : 0;
        cJSON_AddNumberToObject(o, "rate", rate);
        int64_t left = job->queued + job->running;
        if (job->finished <= 0 && rate > 0)
            cJSON_AddNumberToObject(o, "eta", (double) left / rate);
        else
            cJSON_AddNullToObject(o, "eta");
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddNumberToObject(root, "count", (double) k);
    free(all);
    return s_json(200, root);
}

static answer_t s_workers(dash_t *self, int64_t now)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "workers");
    size_t pos = 0;
    worker_t *w;
    while ((w = registry_next(self->cfg.registry, &pos))) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", w->id);
        cJSON_AddStringToObject(o, "host", w->host ? w->host : "");
        cJSON_AddNumberToObject(o, "pid", w->pid);
        cJSON *labels = cJSON_AddArrayToObject(o, "labels");
        for (int i = 0; i < w->nlabels; i++)
            cJSON_AddItemToArray(labels, cJSON_CreateString(w->labels[i]));
        cJSON_AddNumberToObject(o, "slots", w->threads);
        cJSON_AddNumberToObject(o, "busy", w->inflight);
        cJSON_AddStringToObject(o, "state", !w->alive ? "lost" : w->draining ? "draining" : "alive");
        cJSON_AddNumberToObject(o, "last_heartbeat", w->last_heartbeat);
        cJSON_AddNumberToObject(o, "silent", (double) (now - w->last_seen) / 1000.0);
        cJSON_AddNumberToObject(o, "done", (double) w->done);
        cJSON_AddNumberToObject(o, "failed", (double) w->failed);
        cJSON_AddBoolToObject(o, "exec", !w->no_exec);
        cJSON_AddItemToArray(arr, o);
    }
    return s_json(200, root);
}

/* ---- tasks ---- */

/* One row of a page: what the store has, with the state memory knows
   (memory tells ASSIGNED from RUNNING and is ahead of the store). */
static cJSON *s_task_obj(dash_t *self, const store_task_row_t *row)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double) row->id);
    cJSON_AddNumberToObject(o, "job", (double) row->job);
    cJSON_AddNumberToObject(o, "index", (double) row->index);
    cJSON_AddStringToObject(o, "name", row->name ? row->name : "");
    proto_state_t state = row->state;
    const char *worker = row->worker;
    int attempt = row->attempt;
    sched_task_t *t = sched_get(self->cfg.sched, row->id);
    if (t) {
        state = t->state;
        worker = t->worker_name;
        attempt = t->attempt;
    }
    cJSON_AddStringToObject(o, "state", proto_state_name(state));
    cJSON_AddNumberToObject(o, "attempt", attempt);
    cJSON_AddStringToObject(o, "worker", worker ? worker : "");
    double started = t && t->started > 0 ? t->started : row->started;
    cJSON_AddNumberToObject(o, "finished", row->finished);
    if (row->outcome_json && !t) {
        proto_err_t err;
        proto_result_t *res = proto_result_decode(row->outcome_json, strlen(row->outcome_json), &err);
        if (res) {
            if (res->started > 0)
                started = res->started;
            if (res->has_exit_code)
                cJSON_AddNumberToObject(o, "exit_code", res->exit_code);
            if (res->signal)
                cJSON_AddNumberToObject(o, "signal", res->signal);
            cJSON_AddBoolToObject(o, "timed_out", res->timed_out);
            /* The words `ztask results` shows: a command's own stderr
               before "exited with status N", which the exit column says. */
            size_t len;
            const char *why = text_first_line(proto_result_reason(res), &len);
            if (why) {
                char *text = utf8_sanitize(why, len > REASON_MAX ? REASON_MAX : len, NULL);
                cJSON_AddStringToObject(o, "error", text);
                free(text);
            }
            proto_result_destroy(&res);
        }
    }
    cJSON_AddNumberToObject(o, "started", started);
    return o;
}

typedef struct {
    dash_t *self;
    cJSON *arr;
} page_t;

static int s_page_row(const store_task_row_t *row, void *arg)
{
    page_t *pg = arg;
    cJSON_AddItemToArray(pg->arr, s_task_obj(pg->self, row));
    return 0;
}

static int s_cmp_task_id(const void *a, const void *b)
{
    const sched_task_t *x = *(sched_task_t *const *) a, *y = *(sched_task_t *const *) b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The running page comes from memory: the tasks on the workers (a
   bounded set: their threads plus prefetch). */
static void s_running_page(dash_t *self, int64_t job, int64_t after, int64_t limit, cJSON *arr,
                           int64_t *next)
{
    size_t cap = 64, n = 0, pos = 0;
    sched_task_t **v = xcalloc(cap, sizeof *v);
    worker_t *w;
    while ((w = registry_next(self->cfg.registry, &pos)))
        for (sched_task_t *t = w->tasks; t; t = t->wnext)
            if (t->job == job && t->id > after) {
                if (n == cap)
                    v = xrealloc(v, (cap *= 2) * sizeof *v);
                v[n++] = t;
            }
    qsort(v, n, sizeof *v, s_cmp_task_id);
    *next = -1;
    for (size_t i = 0; i < n && (int64_t) i < limit; i++) {
        store_task_row_t row = {.id = v[i]->id, .job = v[i]->job, .index = -1, .state = v[i]->state};
        cJSON *o = s_task_obj(self, &row);
        cJSON_DeleteItemFromObject(o, "index");
        cJSON_AddItemToArray(arr, o);
        if ((int64_t) i == limit - 1 && (int64_t) n > limit)
            *next = v[i]->id;
    }
    free(v);
}

static answer_t s_tasks(dash_t *self, const char *args)
{
    int64_t job_id, after, limit;
    char fbuf[16];
    const char *filter = s_arg(args, "filter", fbuf, sizeof fbuf);
    if (!filter)
        filter = "all";
    if (s_arg_int(args, "job", 1, INT64_MAX, 0, &job_id) != 0 || job_id == 0)
        return s_fail(400, "give job=ID");
    if (s_arg_int(args, "after", 0, INT64_MAX, 0, &after) != 0
        || s_arg_int(args, "limit", 1, MAX_PAGE, 50, &limit) != 0)
        return s_fail(400, "after wants a task id, limit 1..200");
    if (strcmp(filter, "all") != 0 && strcmp(filter, "failed") != 0 && strcmp(filter, "running") != 0)
        return s_fail(400, "filter wants all, failed or running");
    if (!jobs_get(self->cfg.jobs, job_id))
        return s_fail(404, "no such job");
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "tasks");
    int64_t next = -1;
    if (strcmp(filter, "running") == 0) {
        s_running_page(self, job_id, after, limit, arr, &next);
    } else {
        /* Every answer reflects committed state, as the CLI's. */
        journal_flush(self->cfg.journal);
        store_t *store = journal_store(self->cfg.journal);
        page_t pg = {self, arr};
        int64_t last = -1;
        if (store_results_each(store, job_id, after, (int) limit, strcmp(filter, "failed") == 0,
                               s_page_row, &pg, &last) != 0) {
            cJSON_Delete(root);
            return s_fail(500, "cannot read the tasks from the database");
        }
        next = cJSON_GetArraySize(arr) == limit ? last : -1;
    }
    cJSON_AddNumberToObject(root, "next_after", (double) next);
    return s_json(200, root);
}

typedef struct {
    dash_t *self;
    cJSON *obj;
    char *outcome;
} one_t;

static int s_one_row(const store_task_row_t *row, void *arg)
{
    one_t *o = arg;
    o->obj = s_task_obj(o->self, row);
    o->outcome = xstrdup(row->outcome_json);
    return 0;
}

/* data[offset..] (at most OUTPUT_CHUNK of it) under key, and the offset
   after it under key_next. */
static void s_chunk(cJSON *o, const char *key, const char *data, size_t len, int64_t offset)
{
    char next_key[32];
    snprintf(next_key, sizeof next_key, "%s_next", key);
    size_t from = offset > 0 && (size_t) offset < len ? (size_t) offset : offset > 0 ? len : 0;
    size_t n = len - from > OUTPUT_CHUNK ? OUTPUT_CHUNK : len - from;
    char *text = utf8_sanitize(data ? data + from : "", data ? n : 0, NULL);
    cJSON_AddStringToObject(o, key, text);
    free(text);
    cJSON_AddNumberToObject(o, next_key, (double) (from + n));
}

static answer_t s_task(dash_t *self, const char *args)
{
    int64_t id, out_off, err_off;
    if (s_arg_int(args, "id", 1, INT64_MAX, 0, &id) != 0 || id == 0)
        return s_fail(400, "give id=TASK");
    if (s_arg_int(args, "out", 0, INT64_MAX, 0, &out_off) != 0
        || s_arg_int(args, "err", 0, INT64_MAX, 0, &err_off) != 0)
        return s_fail(400, "out and err want byte offsets");
    journal_flush(self->cfg.journal);
    store_t *store = journal_store(self->cfg.journal);
    one_t one = {self, NULL, NULL};
    bool found = false;
    if (store_task_get(store, id, s_one_row, &one, &found) != 0 || !found) {
        free(one.outcome);
        cJSON_Delete(one.obj);
        return s_fail(404, "no such task");
    }
    cJSON *o = one.obj;
    sched_task_t *t = sched_get(self->cfg.sched, id);
    char *spec = t && t->spec ? xstrdup(t->spec) : store_task_spec(store, id);
    cJSON *spec_obj = spec ? cJSON_Parse(spec) : NULL;
    cJSON_AddItemToObject(o, "spec", spec_obj ? spec_obj : cJSON_CreateNull());
    free(spec);
    if (t) {
        const sched_output_t *out = t->output;
        s_chunk(o, "stdout", out ? out->data[0] : NULL, out ? out->len[0] : 0, out_off);
        s_chunk(o, "stderr", out ? out->data[1] : NULL, out ? out->len[1] : 0, err_off);
        cJSON_AddBoolToObject(o, "live", true);
    } else {
        proto_err_t err;
        proto_result_t *res = one.outcome ? proto_result_decode(one.outcome, strlen(one.outcome), &err)
                                          : NULL;
        const char *so = res ? res->stdout_data : NULL, *se = res ? res->stderr_data : NULL;
        s_chunk(o, "stdout", so, so ? strlen(so) : 0, out_off);
        s_chunk(o, "stderr", se, se ? strlen(se) : 0, err_off);
        if (res && res->result_json) {
            cJSON *r = cJSON_Parse(res->result_json);
            cJSON_AddItemToObject(o, "result", r ? r : cJSON_CreateNull());
        }
        cJSON_AddBoolToObject(o, "live", false);
        proto_result_destroy(&res);
    }
    free(one.outcome);
    return s_json(200, o);
}

/* A change the dashboard is told of is written first, as every steering
   request of the API is (api.c's s_written): a master killed right after
   the answer must not lose it. The answer when it could not be. */
static answer_t s_unwritten(const char *what)
{
    char msg[300];
    snprintf(msg, sizeof msg,
             "the master could not write this %s to its database (see its log: a full disk?); "
             "it is applied but would be lost if the master stopped now: ask again",
             what);
    return s_fail(500, msg);
}

static answer_t s_cancel(dash_t *self, const char *args)
{
    int64_t job_id, task_id;
    if (s_arg_int(args, "job", 1, INT64_MAX, 0, &job_id) != 0
        || s_arg_int(args, "task", 1, INT64_MAX, 0, &task_id) != 0 || (!job_id == !task_id))
        return s_fail(400, "give job=ID or task=ID");
    int64_t count = 0;
    if (task_id) {
        sched_task_t *t = sched_get(self->cfg.sched, task_id);
        if (!t)
            return s_fail(404, "no such unfinished task");
        tasks_cancel(self->cfg.tasks, t);
        count = 1;
    } else {
        job_t *job = jobs_get(self->cfg.jobs, job_id);
        if (!job)
            return s_fail(404, "no such job");
        jobs_cancel(self->cfg.jobs, job);
        count = tasks_cancel_job(self->cfg.tasks, job);
    }
    log_info("event=http_cancel job=%" PRId64 " task=%" PRId64 " count=%" PRId64, job_id, task_id,
             count);
    if (journal_flush(self->cfg.journal) != 0)
        return s_unwritten("cancel");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "cancelled", (double) count);
    return s_json(200, root);
}

/* A job's failed and cancelled tasks (and its dep_failed ones) run again,
   as `ztask retry JOB`: the same selection and revival (tasks.h), the
   same quota, and written before the answer like every steering request. */
static answer_t s_retry(dash_t *self, const char *args)
{
    int64_t job_id;
    if (s_arg_int(args, "job", 1, INT64_MAX, 0, &job_id) != 0 || job_id == 0)
        return s_fail(400, "give job=ID");
    job_t *job = jobs_get(self->cfg.jobs, job_id);
    if (!job)
        return s_fail(404, "no such job");
    /* The ends the store has are the ones retry selects: flush first.
       When that fails the store is behind the memory (a retry applied
       but not written still reads "failed" there) and a retry from it
       would put tasks back that already are: refused, as the API does. */
    if (journal_flush(self->cfg.journal) != 0) {
        char msg[300];
        const char *why = journal_failing(self->cfg.journal);
        snprintf(msg, sizeof msg,
                 "the master cannot write its database (%s): ask again once space returns "
                 "(free some; it retries every 0.5 s)",
                 why ? why : "commit failed");
        return s_fail(503, msg);
    }
    tasks_retry_set_t set = {0};
    if (tasks_retry_select(self->cfg.tasks, job, &(tasks_retry_pick_t){0}, &set) != 0) {
        tasks_retry_set_free(&set);
        return s_fail(500, "cannot read the job's tasks from the database");
    }
    usage_over_t over = usage_over(jobs_usage(self->cfg.jobs, job->owner), (int64_t) set.n,
                                   set.bytes, self->cfg.quota_tasks, self->cfg.quota_bytes);
    if (over.what) {
        tasks_retry_set_free(&set);
        char msg[200];
        snprintf(msg, sizeof msg, "over the job owner's quota (--quota-%s %" PRId64 "): wait for "
                 "tasks to finish, or cancel some", over.what, over.limit);
        return s_fail(409, msg);
    }
    int64_t n = tasks_retry_apply(self->cfg.tasks, job, &set);
    tasks_retry_set_free(&set);
    log_info("event=http_retry job=%" PRId64 " tasks=%" PRId64, job_id, n);
    if (journal_flush(self->cfg.journal) != 0)
        return s_unwritten("retry");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "retried", (double) n);
    return s_json(200, root);
}

static answer_t s_route(dash_t *self, const char *method, const char *path, const char *args,
                        bool control, int64_t now)
{
    bool get = strcmp(method, "GET") == 0;
    /* The actions: POST (no link or image can make a browser send one)
       and the control right (web.c refuses a read token's POST first). */
    bool cancel = strcmp(path, "/api/cancel") == 0, retry = strcmp(path, "/api/retry") == 0;
    if (cancel || retry) {
        if (get)
            return s_fail(405, cancel ? "cancel wants POST" : "retry wants POST");
        if (!control)
            return s_fail(403, "this token may only read");
        return cancel ? s_cancel(self, args) : s_retry(self, args);
    }
    if (!get)
        return s_fail(405, "this path wants GET");
    if (strcmp(path, "/metrics") == 0)
        return s_metrics(self, now);
    if (strcmp(path, "/api/overview") == 0)
        return s_overview(self, now, control);
    if (strcmp(path, "/api/jobs") == 0)
        return s_jobs(self, args);
    if (strcmp(path, "/api/workers") == 0)
        return s_workers(self, now);
    if (strcmp(path, "/api/tasks") == 0)
        return s_tasks(self, args);
    if (strcmp(path, "/api/task") == 0)
        return s_task(self, args);
    return s_fail(404, "no such page");
}

void dash_read(dash_t *self, int64_t now)
{
    for (int i = 0; i < REQUESTS_PER_TURN; i++) {
        zmqx_frames_t f;
        if (zmqx_recv_frames(self->sock, &f, 6, ZMQ_DONTWAIT) != 0) {
            if (errno == EPROTO)
                continue;
            return;
        }
        /* [routing id][seq][method][path][args][right]: from web.c only. */
        if (f.count == 6) {
            char method[8], path[80], right[8];
            snprintf(method, sizeof method, "%.*s", (int) f.sizes[2], f.frames[2]);
            snprintf(path, sizeof path, "%.*s", (int) f.sizes[3], f.frames[3]);
            char *args = xstrndup(f.frames[4], f.sizes[4]);
            snprintf(right, sizeof right, "%.*s", (int) f.sizes[5], f.frames[5]);
            answer_t a = s_route(self, method, path, args, strcmp(right, "control") == 0, now);
            free(args);
            char status[8];
            snprintf(status, sizeof status, "%d", a.status);
            size_t len = a.body ? strlen(a.body) : 0;
            zmqx_send(self->sock, f.frames[0], f.sizes[0], ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmqx_send(self->sock, f.frames[1], f.sizes[1], ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmqx_send(self->sock, status, strlen(status), ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmqx_send(self->sock, a.type, strlen(a.type), ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmqx_send(self->sock, a.body ? a.body : "", len, ZMQ_DONTWAIT);
            free(a.body);
        }
        zmqx_frames_free(&f);
    }
}
