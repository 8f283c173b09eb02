/*  why: why each queued task is not on a worker (see why.h). */
#include "why.h"

#include "../common/util.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per call: whether a live worker could take each class (0 = not asked
   yet, 1 = yes, 2 = no): tasks_class_served walks the registry. */
typedef struct {
    const why_config_t *cfg;
    uint8_t *served;
} why_t;

static bool s_served(why_t *w, int cls)
{
    if (!w->served[cls])
        w->served[cls] = tasks_class_served(w->cfg->tasks, cls) ? 1 : 2;
    return w->served[cls] == 1;
}

/* The state `ztask status` shows for a job (proto_job_state_name). */
static const char *s_job_state(const why_t *w, const job_t *job)
{
    proto_job_t j = {.closed = job->closed,
                     .total = job->total,
                     .running = job->running,
                     .done = job->done,
                     .failed = job->failed,
                     .cancelled = job->cancelled_n,
                     .dep_failed = job->dep_failed,
                     .waiting = deps_waiting(w->cfg->deps, job->id)};
    return proto_job_state_name(&j);
}

/* "J.I", or "--task ID" for a task without an index: what `ztask
   release` (and hold) take. */
static void s_task_ref(char *buf, size_t size, const sched_task_t *t)
{
    if (t->index >= 0)
        snprintf(buf, size, "%" PRId64 ".%" PRId64, t->job, t->index);
    else
        snprintf(buf, size, "--task %" PRId64, t->id);
}

/* What t waits for: the first reason that holds (why.h). Cheap: every
   task the walk meets is judged (the ready ones ahead count), only
   those listed are put in words. */
static proto_wait_t s_wait(why_t *w, const sched_task_t *t, const job_t *job, int64_t now)
{
    if (t->parked & SCHED_PARK_HELD)
        return PROTO_WAIT_HELD;
    if (t->parked & SCHED_PARK_DEPS)
        return PROTO_WAIT_DEPS;
    /* A task of a job at its limit still in the ready queue is parked
       when a dispatch reaches it: the same wait. */
    if ((t->parked & SCHED_PARK_CAPPED) || job_at_limit(job))
        return PROTO_WAIT_CAPPED;
    if (t->parked & SCHED_PARK_REJOIN)
        return PROTO_WAIT_REJOIN;
    if (t->parked & SCHED_PARK_COMMIT)
        return PROTO_WAIT_COMMIT;
    if (t->not_before > now)
        return PROTO_WAIT_RETRY;
    return s_served(w, t->cls) ? PROTO_WAIT_READY : PROTO_WAIT_NO_WORKER;
}

/* wait in words, with what to do, into why. */
static void s_words(const why_t *w, const sched_task_t *t, const job_t *job, proto_wait_t wait,
                    int64_t now, int64_t ahead, char *why, size_t size)
{
    switch (wait) {
    case PROTO_WAIT_HELD: {
        char ref[48];
        if (job && job->held)
            snprintf(ref, sizeof ref, "%" PRId64, t->job);
        else
            s_task_ref(ref, sizeof ref, t);
        snprintf(why, size, "held: ztask release %s", ref);
        return;
    }
    case PROTO_WAIT_DEPS: {
        proto_dep_t d;
        const job_t *p = deps_waits_for(w->cfg->deps, t->job, t->index, &d)
                             ? jobs_get(w->cfg->jobs, d.job)
                             : NULL;
        /* A held parent is the real cause: say how to end it. */
        char held[64] = "";
        if (p && p->held)
            snprintf(held, sizeof held, ", held: ztask release %" PRId64, p->id);
        if (!p)   /* judged again this turn: it has no verdict yet */
            snprintf(why, size, "after the jobs job %" PRId64 " depends on", t->job);
        else if (d.kind == PROTO_DEP_EACH)
            snprintf(why, size, "after task %" PRId64 ".%" PRId64 " (--after-each; job %" PRId64
                     " %s%s)", d.job, t->index, d.job, s_job_state(w, p), held);
        else
            snprintf(why, size, "after job %" PRId64 " (%s%s%s)", d.job,
                     d.kind == PROTO_DEP_ANY ? "--after-any; " : "", s_job_state(w, p), held);
        return;
    }
    case PROTO_WAIT_CAPPED:
        snprintf(why, size, "job limit %d reached: ztask limit %" PRId64 " N changes it",
                 job ? job->max_running : 0, t->job);
        return;
    case PROTO_WAIT_REJOIN:
        /* tasks.c, s_rejoin_window: its worker may still claim it. */
        snprintf(why, size, "rejoin window: found queued at the master's restart, it may be on a "
                            "worker that has not said hello yet; it goes once the workers have "
                            "had the time to register again");
        return;
    case PROTO_WAIT_COMMIT:
        /* tasks.c, s_park_for_commit. */
        snprintf(why, size, "its requeue is being written: it goes out again once the database "
                            "has it");
        return;
    case PROTO_WAIT_RETRY:
        /* A crash's backoff can fall on the last attempt number: there is
           no next attempt to name (t->attempt + 1 would overflow). */
        if (t->attempt >= PROTO_MAX_ATTEMPT) {
            char end[160];
            tasks_attempts_exhausted(t->attempt, end, sizeof end);
            snprintf(why, size, "backoff: %.1f s left, then it fails: %s",
                     (double) (t->not_before - now) / 1000.0, end);
        } else {
            snprintf(why, size, "retry backoff: attempt %d in %.1f s", t->attempt + 1,
                     (double) (t->not_before - now) / 1000.0);
        }
        return;
    case PROTO_WAIT_NO_WORKER: {
        char need[400];
        proto_need_words(need, sizeof need, sched_class_get(w->cfg->sched, t->cls)->key);
        snprintf(why, size, "no live worker can run it: it needs %s (see ztask workers)", need);
        return;
    }
    case PROTO_WAIT_READY:
        if (ahead == 0)
            snprintf(why, size, "ready: next in line for a free slot");
        else
            snprintf(why, size, "ready: %" PRId64 " ahead of it", ahead);
        return;
    case PROTO_WAIT_NONE:
    case PROTO_WAIT_OTHER: break;   /* decoded only: never a wait of ours */
    }
    assert(!"a waiting task without a wait");
}

int why_list(const why_config_t *cfg, const why_query_t *q, proto_task_info_t *out,
             bool *truncated)
{
    why_t w = {.cfg = cfg, .served = xcalloc((size_t) sched_nclasses(cfg->sched) + 1, 1)};
    /* The bound is the walk's: checked here, between tasks, it let one
       sched_walk_next read every stale entry in a row. */
    sched_walk_t *walk = sched_walk_new(cfg->sched, WHY_VISIT_MAX);
    int n = 0;
    int64_t ready = 0;   /* ready tasks met so far, anyone's */
    const sched_task_t *t = NULL;
    while (n < q->max && (t = sched_walk_next(walk))) {
        const job_t *job = jobs_get(cfg->jobs, t->job);
        proto_wait_t wait = s_wait(&w, t, job, q->now);
        if (job && q->want(job, q->arg)) {
            char why[600];
            s_words(&w, t, job, wait, q->now, ready, why, sizeof why);
            out[n++] = (proto_task_info_t){.task = t->id,
                                           .job = t->job,
                                           .index = t->index >= 0 ? t->index : -1,
                                           .status = PROTO_ST_QUEUED,
                                           .attempts = t->attempt,
                                           .held = (t->parked & SCHED_PARK_HELD) != 0,
                                           .wait = wait,
                                           .reason = xstrdup(why),
                                           .priority = t->priority,
                                           .ahead = wait == PROTO_WAIT_READY ? ready : 0};
        }
        ready += wait == PROTO_WAIT_READY;
    }
    /* Stopped early (full with tasks left, or looked at enough). */
    *truncated = (n == q->max && sched_walk_next(walk)) || sched_walk_cut(walk);
    sched_walk_destroy(&walk);
    free(w.served);
    return n;
}
