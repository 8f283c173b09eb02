/*  metrics: the master's counters and histograms, and their Prometheus
    text (docs/metrics.md lists every series).

    The loop's modules count events here as they happen (a task finished,
    a worker lost, a commit written); what is a state rather than an event
    (tasks by state, workers, slots) is not kept here but read from the
    modules that own it when /metrics is asked for (dash.c), so nothing
    can drift out of step. Counting is a few integer additions: no
    allocation, no lock, no system call.

    Names follow the Prometheus conventions: one prefix (ztask_), base
    units (seconds, bytes), _total on counters, no job or task ids as
    labels (their number is unbounded); the process_* series are the
    standard ones every client library exports.

    A throughput series (tasks finished and failed per second over the
    last SERIES_SECONDS) feeds the dashboard's chart.

    Ownership: the metrics_t belongs to the loop (master.c); modules get
    it borrowed. Threads: main loop only (the HTTP threads never touch it:
    they ask the loop, see dash.h).
*/
#ifndef ZTASK_METRICS_H
#define ZTASK_METRICS_H

#include "../common/util.h"

#include <stdbool.h>
#include <stdint.h>

/* How a task ended, as counted by ztask_tasks_finished_total. */
typedef enum {
    M_OUT_DONE = 0,
    M_OUT_FAILED,       /* failed for any other reason than a timeout */
    M_OUT_TIMEOUT,      /* failed: killed at its timeout */
    M_OUT_CANCELLED,
    M_OUT_DEP_FAILED,   /* never ran: a job it depends on did not succeed */
    M_OUT_N
} metrics_outcome_t;

/* What a task runs (its histograms are apart: a command costs a fork). */
typedef enum { M_KIND_EXEC = 0, M_KIND_FN, M_KIND_N } metrics_kind_t;

/* Seconds of throughput history kept for the dashboard's chart. */
#define METRICS_SERIES_SECONDS 300

typedef struct metrics metrics_t;

/* now_ms: monotonic ms (the series' clock); the process start time is
   taken from the wall clock now. */
metrics_t *metrics_new(int64_t now_ms);
void metrics_destroy(metrics_t **p);

/* ---- events (each a few additions) ---- */
void metrics_submitted(metrics_t *self, int64_t n);
void metrics_finished(metrics_t *self, metrics_outcome_t outcome, int64_t now_ms);
void metrics_retried(metrics_t *self);
/* From ready (its submit committed, or its retry backoff over) to sent
   to a worker: the caller observes it once per execution (not again for
   a send a recall undid). */
void metrics_queue_wait(metrics_t *self, metrics_kind_t kind, double seconds);
/* From the worker's start to its finish (the worker's clock). */
void metrics_run_time(metrics_t *self, metrics_kind_t kind, double seconds);
void metrics_worker_lost(metrics_t *self);
/* n tasks a worker gave back unstarted when asked (a recall, tasks.c). */
void metrics_recalled(metrics_t *self, int64_t n);
void metrics_duplicate(metrics_t *self);
/* A request or connection refused by authentication; reason: a short
   static name ("unknown_key", "revoked", "role", "http_token"). */
void metrics_auth_refused(metrics_t *self, const char *reason);
/* Sets the count of HTTP requests refused for want of a valid token
   (web_refused: the HTTP threads count them; the loop copies the count in
   before each rendering), shown as reason "http_token". */
void metrics_set_http_refused(metrics_t *self, int64_t n);
/* One grouped commit: wall time from handing the batch over to its
   return, the rows it wrote, and whether it was fsynced. */
void metrics_commit(metrics_t *self, double seconds, int64_t rows, bool fsynced);
/* One turn of the master's loop (master.c): from the poll's return to
   the next poll, the time every socket waited on it. */
void metrics_loop_turn(metrics_t *self, double seconds);
/* One API reply: the request's type name and "ok" or the error code
   (both copied; a bounded set, the rest is counted as type "other"). */
void metrics_api_request(metrics_t *self, const char *type, const char *outcome);

/* ---- reading ---- */

/* Totals since start (for the dashboard). */
typedef struct {
    int64_t submitted, retried, workers_lost, duplicates;
    int64_t finished[M_OUT_N];
} metrics_totals_t;
metrics_totals_t metrics_totals(const metrics_t *self);

/* The throughput series, oldest first: done[i] and failed[i] are the
   tasks that finished (failed: failed, timed out or cancelled) in second
   i, the last being the current second. Fills n <= METRICS_SERIES_SECONDS
   entries; returns n. */
int metrics_series(const metrics_t *self, int64_t now_ms, int n, int64_t *done, int64_t *failed);

/* Appends every counter and histogram, the build info and the process
   series to out, in the Prometheus text format (0.0.4). */
void metrics_render(const metrics_t *self, strbuf_t *out);

/* Appends the # HELP and # TYPE lines of a series (for the gauges dash.c
   reads from the modules). type: "gauge", "counter", ... */
void metrics_header(strbuf_t *out, const char *name, const char *type, const char *help);

/* Appends text as a label value, escaped as the format wants (\\, \", \n). */
void metrics_label(strbuf_t *out, const char *text);

#endif
