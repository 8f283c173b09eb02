/*  why: why each queued task is not on a worker (`ztask tasks --waiting`,
    the API's "waiting" request), squeue's REASON column for ztask.

    Tasks are listed in the order the scheduler takes them (the highest
    priority, then the oldest: sched_walk), each with one reason, the
    first of: held (ztask hold), waiting for the jobs its job depends on
    (deps.h), its job at its --max-running (parked so, or still in the
    ready queue and about to be: jobs.h), found queued at a master
    restart and waiting out its rejoin window, taken back from a worker
    and waiting for its requeue's commit (tasks.c), in a retry backoff,
    needing a
    kind of worker no live one is (tasks_class_served: the judgement
    `ztask stats` and submit's warning use), else ready, with how many
    ready tasks are ahead of it in run order (of any kind: an upper bound
    when those need other workers).

    Cost (main loop, one request): the walk reads heap entries in run
    order, O(v log v) for the v entries looked at, and stops at `max`
    records or WHY_VISIT_MAX entries, whichever comes first, however many
    tasks are queued; a task's reason is a few hash lookups (its job, a
    parent job) and one registry pass per class met (cached for the
    call). Nothing is read from the store (records carry no task name).

    Ownership: the records are the caller's (proto_task_info_clear each).
    Threads: main loop only.
*/
#ifndef ZTASK_WHY_H
#define ZTASK_WHY_H

#include "deps.h"
#include "jobs.h"
#include "sched.h"
#include "tasks.h"

#include "../proto/proto.h"

#include <stdbool.h>
#include <stdint.h>

/* Heap entries looked at, at most, per request: past them the listing
   stops (truncated). Measured on a master with 1,000,001 queued tasks
   on a 2-core machine shared with other builds (load 8): a walk that
   stopped here (a job behind the million) took 15-28 ms; listing 10,000
   took 7-31 ms, plus 8-20 ms to encode and send them; the running view's
   pass over every task took 37 ms there. sched_walk alone: ~240 ns an
   entry in heaps that size (cache misses). Bounded whatever the queue's
   length, and room enough for the 10,000 records a reply carries. */
#define WHY_VISIT_MAX 50000

typedef struct {
    sched_t *sched;          /* all borrowed */
    tasks_t *tasks;
    jobs_t *jobs;
    deps_t *deps;
} why_config_t;

typedef struct {
    /* Which tasks to list: those of jobs want() says yes to. */
    bool (*want)(const job_t *job, void *arg);
    void *arg;
    int max;                 /* records, at most (out has room for them) */
    int64_t now;             /* monotonic ms (retry backoffs end at it) */
} why_query_t;

/* Lists the queued tasks q->want accepts into out (n records, returned),
   in run order, each with its wait and reason. *truncated: the listing
   stopped before the last queued task (max records, or WHY_VISIT_MAX
   looked at): more may wait. */
int why_list(const why_config_t *cfg, const why_query_t *q, proto_task_info_t *out,
             bool *truncated);

#endif
