/*  deps: dependencies between jobs (submit --after, --after-any,
    --after-each), and the tasks that wait for them.

    A job may name earlier jobs it depends on, each with a kind
    (proto_dep_kind_t): OK, its tasks run once that job has finished with
    every task done; ANY, once it has finished however it ended; EACH,
    task i runs once that job's task of index i is done. Parents exist
    before their dependants, so there are no cycles.

    deps_judge says what one task may do now: run, wait, or never run
    (a parent did not end as it needed: the task ends dep_failed, and its
    own job's dependants follow when that job finishes). Waiting tasks
    are remembered here by job and index (deps_hold); the events "a task
    of job J ended" and "job J finished" hand back the waiting tasks that
    may have a new verdict, for the caller (tasks.c) to judge again. A
    task handed back and judged to wait again is held again.

    What it reads: parents' counters (jobs.h) for OK and ANY; for EACH, how
    each of the parent's tasks ended, by index, read from the store once
    when the first EACH dependant is added (its caller has flushed the
    journal, so the store holds every task that has ended) and kept up to
    date by deps_task_ended from then on. A parent that no longer exists
    was forgotten, which a job can only be once finished, when its
    dependants were already judged: it counts as met.

    Retry of a parent (ztask retry) revives its dep_failed dependants:
    api.c walks deps_children and puts their dep_failed tasks back
    (tasks_retry), where they wait for the parent's new end.

    Memory: a few words per dependency and per waiting task; for an EACH
    parent, one map entry per ended task, kept until the parent is
    forgotten (deps_prune).

    Ownership: the deps_t owns its records; arrays handed back are the
    caller's (free()).
    Threads: main loop only.
*/
#ifndef ZTASK_DEPS_H
#define ZTASK_DEPS_H

#include "jobs.h"
#include "store.h"

#include "../proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct deps deps_t;

typedef enum {
    DEPS_RUN = 0,   /* nothing to wait for */
    DEPS_WAIT,      /* a parent (or its task) has not ended yet */
    DEPS_FAIL       /* a parent ended in a way that can never satisfy it */
} deps_verdict_t;

/* jobs (borrowed) is where parents' counters are read. */
deps_t *deps_new(jobs_t *jobs);
void deps_destroy(deps_t **p);

/* Records that job's tasks wait for deps (n of them), at the commit that
   makes the job or at start-up. An EACH parent's ended tasks are read
   from store the first time one of its dependants is added (every ended
   task must be in the store: flush first). Returns 0, or -1 (store_error
   says why; the dependencies are recorded anyway, the EACH ones judged
   from what was read). */
int deps_add(deps_t *self, int64_t job, const proto_dep_t *deps, int n, store_t *store);

/* Rebuilds every job's dependencies from store at start-up (after
   jobs_load). Returns 0, or -1 (store_error says why). */
int deps_load(deps_t *self, store_t *store);

/* Whether job has dependencies (its tasks need a verdict). */
bool deps_has(const deps_t *self, int64_t job);

/* The verdict for a task of job with that index; on DEPS_FAIL, why (one
   line for the task's error) goes into why. */
deps_verdict_t deps_judge(const deps_t *self, int64_t job, int64_t index, char *why,
                          size_t whylen);

/* What a task of job with that index waits for: the first of its job's
   dependencies judged DEPS_WAIT, into *out (its job and kind). False
   when it waits for none (it may run, or never will). */
bool deps_waits_for(const deps_t *self, int64_t job, int64_t index, proto_dep_t *out);

/* Remembers a task of job (with index) that waits. */
void deps_hold(deps_t *self, int64_t job, int64_t index, int64_t task);

/* Whether tasks of job are held (its state shows "waiting"). */
bool deps_waiting(const deps_t *self, int64_t job);

/* A task of job (index) ended in state. Returns the held tasks (their
   ids, *n of them; NULL when none) of jobs waiting for that task
   (after_each), no longer held: the caller judges them again. */
int64_t *deps_task_ended(deps_t *self, int64_t job, int64_t index, proto_state_t state,
                         size_t *n);

/* A task of job (index) runs again (ztask retry): the jobs waiting for it
   task by task wait again. */
void deps_task_reset(deps_t *self, int64_t job, int64_t index);

/* job has finished. Returns every held task of the jobs that depend on
   it, as deps_task_ended does. */
int64_t *deps_job_ended(deps_t *self, int64_t job, size_t *n);

/* The jobs that depend on job directly (*n of them; borrowed until the
   next change, NULL when none). */
const int64_t *deps_children(const deps_t *self, int64_t job, int *n);

/* Drops what is kept for jobs that were forgotten (every minute or so). */
void deps_prune(deps_t *self);

#endif
