/*  dash: the loop's side of the HTTP server: answers what the HTTP threads
    forward (web.h says why requests are answered here rather than from
    snapshots): /metrics and the dashboard's JSON endpoints.

    The loop binds an inproc ROUTER (dash_new), polls it, and calls
    dash_read when it has input; each request is answered at once, from
    the loop's own state: jobs and their counters (jobs.h), workers
    (registry.h), unfinished tasks and their live output (sched.h), the
    counters (metrics.h), and for pages of tasks and a finished task's
    outcome, the store after a flush (as every CLI query; the job list
    too: what it shows is fsynced first, see s_jobs). Every answer is
    bounded: at most 200 jobs or tasks a page, output tails of 64 KiB.

    Endpoints (GET unless said; JSON unless said; docs/metrics.md):
      /metrics                  the Prometheus text format
      /api/overview             totals, tasks by state, the throughput series
      /api/jobs?limit=N         the newest jobs with progress, rate and ETA
      /api/workers              every worker the registry knows
      /api/tasks?job=J&filter=all|failed|running&after=ID&limit=N
                                a page of a job's tasks, in id order
      /api/task?id=T&out=N&err=N  one task: spec, state, outcome, and its
                                output from those offsets (live while it runs)
      POST /api/cancel?job=J | ?task=T   (control right only)
      POST /api/retry?job=J     its failed and cancelled tasks run again, as
                                `ztask retry J` (control right only)

    Ownership: the socket and the dash_t belong to the loop; every module
    in dash_config_t is borrowed. Threads: main loop only.
*/
#ifndef ZTASK_DASH_H
#define ZTASK_DASH_H

#include "jobs.h"
#include "journal.h"
#include "metrics.h"
#include "registry.h"
#include "sched.h"
#include "tasks.h"
#include "web.h"

#include <stdint.h>

typedef struct {
    sched_t *sched;
    registry_t *registry;
    jobs_t *jobs;
    journal_t *journal;
    tasks_t *tasks;
    metrics_t *metrics;
    int64_t started_ms;        /* monotonic ms of the master's start */
    int64_t quota_tasks;       /* a retry counts against its job owner's quota */
    int64_t quota_bytes;       /* (master.h), as `ztask retry` does */
} dash_config_t;

typedef struct dash dash_t;

/* Binds the inproc ROUTER on ctx (its endpoint: dash_endpoint). NULL with
   err filled on failure. */
dash_t *dash_new(void *ctx, const dash_config_t *cfg, char *err, size_t errlen);
void dash_destroy(dash_t **p);

/* The ROUTER, for the loop's poll. */
void *dash_socket(const dash_t *self);
/* "inproc://..." (borrowed), for web_config_t.loop_endpoint. */
const char *dash_endpoint(const dash_t *self);

/* The HTTP threads whose refusals /metrics reports (borrowed; set once
   they run). */
void dash_set_web(dash_t *self, const web_t *web);

/* Answers the requests waiting (a bounded number per call). */
void dash_read(dash_t *self, int64_t now);

#endif
