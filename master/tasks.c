/*  tasks: the life of a task inside the master (see tasks.h). */
#include "tasks.h"

#include "auth.h"
#include "deps.h"
#include "jobs.h"
#include "journal.h"
#include "registry.h"
#include "resources.h"
#include "sched.h"
#include "store.h"

#include "../common/clock.h"
#include "../common/imap.h"
#include "../common/log.h"
#include "../common/testhook.h"
#include "../common/util.h"
#include "../common/zmqx.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <zmq.h>

/* Tasks per "tasks" message: big enough to amortise a frame, small enough
   that one batch never holds a worker's whole share of a job. */
#define DISPATCH_BATCH 256
/* How often a worker whose pipe is not connected yet is probed. */
#define PIPE_PROBE_MS 20
/* Retry backoff never grows beyond this. */
#define MAX_BACKOFF_MS 60000
/* A retry's requeue commit is hurried this long before its backoff ends
   (s_park_for_commit): the loop runs a dispatch every 100 ms at least
   (master.c, s_poll_timeout), and the fsync then takes some ms. */
#define COMMIT_HURRY_AHEAD_MS 200
/* Tasks of jobs at their --max-running limit parked by one worker's
   dispatch, at most: a big capped job is parked over several turns of
   the loop, not in one long one. */
#define PARKS_PER_DISPATCH 4096
/* Results kept for a worker that has not registered yet (s_park): at most
   this many, and this many bytes of them; beyond, they are judged at once
   as from nobody. Only a task waiting for its worker's claim can have one,
   so a master restart with a big backlog of finished work stays in bounds. */
#define PARKED_MAX 65536
#define PARKED_BYTES (64 << 20)

/* A gap this long between two runs of tasks_timers (every ~100 ms) means
   the master itself stood still (s_stalled). */
#define STALL_MS 500

/* A result that came before its worker's hello (see s_park). */
typedef struct {
    char *worker;            /* the name it came under, owned */
    char key[48];            /* the key it came with ("" without CURVE) */
    proto_result_t *res;     /* owned */
    size_t bytes;
    int64_t until;           /* judged as from nobody after this */
} parked_t;

struct tasks {
    tasks_config_t cfg;
    sched_t *sched;          /* borrowed, as are the next three */
    registry_t *registry;
    jobs_t *jobs;
    journal_t *journal;
    size_t orphans;          /* tasks waiting for their worker to come back */
    imap_t *orphan_keys;     /* task id -> the key of the worker it was on (char *,
                                owned): an orphan's, when the store had one, or a
                                taken-back task's last holder's (s_take_back) */
    size_t rr;               /* round-robin start for dispatch */
    int64_t duplicates;
    int64_t refused;         /* reports from a worker that does not hold the task */
    int64_t results_total;
    parked_t *parked;        /* results waiting for their worker's hello */
    size_t nparked, parked_cap, parked_bytes;
    int64_t last_prune;
    int64_t keep_gone_ms;    /* REGISTRY_KEEP_GONE_MS, or the test hook's
                                ZTASK_TEST_KEEP_GONE_MS */
    int64_t last_timers;     /* when tasks_timers last ran, 0 = never */
    int64_t rejoin_until;    /* mono ms: after a restart that found queued tasks,
                                those stay parked until then (s_rejoin_window) */
    /* Lines a peer can cause at will, rate-limited (log_limit): bad,
       refused or unknown reports. */
    log_limit_t lim_report;
    /* Reservation (see s_reserve): the task a worker is kept for. */
    int64_t reserve_task;    /* 0 = none */
    char *reserve_worker;    /* its worker's id, owned */
    int64_t blocked_task;    /* the oldest task asking resources that fits nowhere now */
    int64_t blocked_since;   /* since when (monotonic ms), 0 = none */
    log_limit_t lim_dup;     /* duplicate results */
    int64_t stuck_since;     /* tasks ready but no live worker can take them, 0 = none */
    int64_t stuck_logged;    /* when that was last logged */
    int64_t last_stuck_check;
    /* Specs read ahead from the store (s_take_spec, tasks_read_ahead):
       the next id to read from (0 = nothing to read ahead) and how many
       read ahead are not dispatched yet. */
    int64_t ahead_from;
    int ahead_left;
    int64_t ahead_wanted;    /* a dispatch found this task's spec only in the
                                store while the writer had it: read from here
                                when it is free; dispatch waits till then */
    /* Tasks parked SCHED_PARK_COMMIT (s_park_for_commit), in the order
       they were parked, with the journal mark each waits for: marks grow,
       so the first one not written ends the scan. A retry parked when
       due (s_dispatch_to) brings an older mark: it may wait behind a later
       one, for the next commit, never past its own. Entries of tasks
       gone, claimed or requeued again since are skipped. */
    struct commit_wait { uint64_t mark; int64_t id; } *commit_waits;
    size_t commit_head, commit_n, commit_cap;
    /* Retries in their backoff whose requeue is not written yet
       (s_requeue): the commit is hurried at commit_hurry_at (mono ms, 0 =
       none), unless commit_hurry_mark, the latest of their marks, is
       written before. */
    int64_t commit_hurry_at;
    uint64_t commit_hurry_mark;
    /* Held tasks to judge again (s_judge): a queue, not recursion, since a
       verdict ends a job whose dependants are judged in turn, and a client
       can chain jobs (--after) as long as it likes. */
    int64_t *judge_ids;
    size_t judge_head, judge_n, judge_cap;
    bool judging;
    /* The number of the last "tasks" message sent, to any worker (the
       pipe's "seq"; heartbeats echo it as "seen": s_compare_heartbeat).
       It starts at a random point of a 2^52 range (s_seq_start), so that
       a heartbeat a worker made for an earlier master run, delivered to
       this one from its report socket, names a number this run sent
       only by a 1 in 2^52 chance, and grows by one a message: 2^52
       messages before it could pass 2^53 - 1, the protocol's bound. */
    int64_t pipe_seq;
};

#define SEQ_RANGE ((int64_t) 1 << 52)

static int64_t s_seq_start(void)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t) sizeof r)
        r = (uint64_t) clock_mono_ms() * 1000003u ^ (uint64_t) getpid() << 32
            ^ (uint64_t) (clock_wall() * 1e6);
    return (int64_t) (r % (uint64_t) SEQ_RANGE);
}

tasks_t *tasks_new(const tasks_config_t *cfg)
{
    tasks_t *self = xcalloc(1, sizeof *self);
    self->cfg = *cfg;
    self->sched = cfg->sched;
    self->registry = cfg->registry;
    self->jobs = cfg->jobs;
    self->journal = cfg->journal;
    self->orphan_keys = imap_new();
    self->keep_gone_ms = REGISTRY_KEEP_GONE_MS;
    testhook_i64("ZTASK_TEST_KEEP_GONE_MS", 1, REGISTRY_KEEP_GONE_MS, &self->keep_gone_ms);
    self->pipe_seq = s_seq_start();
    return self;
}

void tasks_destroy(tasks_t **p)
{
    if (!p || !*p)
        return;
    tasks_t *self = *p;
    for (size_t i = 0; i < self->nparked; i++) {
        free(self->parked[i].worker);
        proto_result_destroy(&self->parked[i].res);
    }
    free(self->parked);
    size_t pos = 0;
    char *key;
    while ((key = imap_next(self->orphan_keys, &pos, NULL)))
        free(key);
    imap_destroy(&self->orphan_keys);
    free(self->reserve_worker);
    free(self->judge_ids);
    free(self->commit_waits);
    free(self);
    *p = NULL;
}

tasks_counts_t tasks_counts(const tasks_t *self)
{
    return (tasks_counts_t){.duplicates = self->duplicates,
                            .refused = self->refused,
                            .results = self->results_total,
                            .orphans = self->orphans,
                            .parked = self->nparked};
}

/* ---- start-up: rebuild the queue from the store ---- */

static int s_load_task(const store_task_row_t *row, void *arg)
{
    tasks_t *self = arg;
    int64_t now = clock_mono_ms();
    sched_new_task_t task = {.id = row->id,
                             .job = row->job,
                             .index = row->index,
                             .priority = row->priority,
                             .cls = sched_class(self->sched, row->needs),
                             .attempt = row->attempt};
    sched_task_t *t;
    if (row->state == PROTO_ST_QUEUED) {
        /* Attempts since its last `ztask retry` used its retries. */
        int left = row->retries - (row->attempt - row->retry_base);
        task.retries_left = left < 0 ? 0 : left;
        /* Held while its job waits for others; judged once everything is
           loaded (tasks_load), as a new task is at tasks_enter. */
        task.held = deps_has(self->cfg.deps, row->job);
        t = sched_add(self->sched, &task, 0);
        t->ready_ms = clock_mono_ms();
        t->recovered = true;
        /* Its worker may hold it (s_rejoin_window): out of the queue
           until the window ends or that worker's hello claims it. */
        sched_park(self->sched, t, SCHED_PARK_REJOIN);
        const job_t *job = jobs_get(self->jobs, row->job);
        if (row->held || (job && job->held))
            sched_park(self->sched, t, SCHED_PARK_HELD);
    } else {
        /* It was on a worker when we stopped: give that worker the recovery
           grace to come back and claim it before running it again. */
        int left = row->retries - (row->attempt > 0 ? row->attempt - 1 - row->retry_base : 0);
        task.retries_left = left < 0 ? 0 : left;
        t = sched_add_orphan(self->sched, &task, row->worker ? row->worker : "",
                             now + self->cfg.recovery_grace_ms);
        self->orphans++;
        if (row->worker_key && *row->worker_key)
            imap_put(self->orphan_keys, t->id, xstrdup(row->worker_key));
    }
    /* Its job counted these bytes from the same column (jobs_load). */
    t->spec_len = (uint32_t) row->spec_bytes;
    return 0;
}

static void s_judge(tasks_t *self, const int64_t *ids, size_t n);

/* After a restart, the tasks the old master had sent in its last second
   are found queued (their assignments not written yet, ASSIGN_WRITE_MS),
   like tasks never sent: only their workers' hellos tell them apart. A
   task sent to the first worker that registers before another's hello
   claims it runs twice, though it may have ended before the crash (its
   result then comes again, the hello's resend). So no task found queued
   is sent until every live worker has had the time to find this master
   silent and say hello: they are parked (SCHED_PARK_REJOIN, s_load_task)
   for a liveness window and one heartbeat, at most the recovery grace;
   a hello's claim takes one out at once (sched_claim). It does not end
   when the workers the store knows to hold tasks are back: the one a
   task went to in the last second may hold nothing the store knows of
   (its first task, or only tasks shorter than ASSIGN_WRITE_MS, whose
   assignments are never written). Every other task (submitted since,
   taken back since, an orphan's requeue) was never out under the old
   master as its next attempt, and goes out meanwhile. */
static void s_rejoin_window(tasks_t *self)
{
    int64_t ms = (int64_t) self->cfg.heartbeat_ms * (self->cfg.liveness + 1);
    if (ms > self->cfg.recovery_grace_ms)
        ms = self->cfg.recovery_grace_ms;
    self->rejoin_until = clock_mono_ms() + ms;
    log_info("event=rejoin_window ms=%" PRId64 " note=\"no task found queued is sent before "
             "the workers have had the time to register again\"",
             ms);
}

/* The ids of the tasks parked for reason (caller frees; NULL when none):
   collected first, since what is done with each may change the table. */
static int64_t *s_parked_ids(const tasks_t *self, unsigned reason, size_t *n)
{
    size_t cap = 0, pos = 0;
    int64_t *ids = NULL;
    sched_task_t *t;
    *n = 0;
    while ((t = sched_next(self->sched, &pos)))
        if (t->parked & reason) {
            if (*n == cap)
                ids = xrealloc(ids, (cap = cap ? cap * 2 : 1024) * sizeof *ids);
            ids[(*n)++] = t->id;
        }
    return ids;
}

/* The window is over: every task still parked for it is queued again. */
static void s_rejoin_window_over(tasks_t *self)
{
    size_t n;
    int64_t *ids = s_parked_ids(self, SCHED_PARK_REJOIN, &n);
    for (size_t i = 0; i < n; i++)
        sched_unpark(self->sched, sched_get(self->sched, ids[i]), SCHED_PARK_REJOIN);
    free(ids);
    self->rejoin_until = 0;
    log_info("event=rejoin_window_over tasks=%zu note=\"the tasks found queued are sent again\"",
             n);
}

int tasks_rejoin_left_ms(const tasks_t *self, int64_t now)
{
    if (!self->rejoin_until || now >= self->rejoin_until)
        return 0;
    int64_t left = self->rejoin_until - now;
    return left > PROTO_MAX_HOLD_MS ? PROTO_MAX_HOLD_MS : (int) left;
}

int tasks_load(tasks_t *self, store_t *store)
{
    if (store_unfinished_each(store, s_load_task, self) != 0)
        return -1;
    /* Only a task found queued can have been sent in the old master's
       last second; orphans (their assignments written) wait for their
       own workers anyway (tasks_claim), so a restart that found only
       those opens no window. sched_size counts both. */
    assert(sched_size(self->sched) >= self->orphans);
    if (sched_size(self->sched) > self->orphans)
        s_rejoin_window(self);
    /* The held tasks, judged now that every job and task is known. */
    size_t n;
    int64_t *ids = s_parked_ids(self, SCHED_PARK_DEPS, &n);
    s_judge(self, ids, n);
    free(ids);
    return 0;
}

/* ---- pipes ---- */

static void s_send_pipe(worker_t *w, const char *msg)
{
    if (w->pipe)
        zmqx_send(w->pipe, msg, strlen(msg), ZMQ_DONTWAIT);
}

/* Sends an abort for (task, attempt) down a worker's pipe (best effort). */
static void s_send_abort(tasks_t *self, worker_t *w, int64_t task, int attempt)
{
    (void) self;
    if (!w || !w->pipe)
        return;
    proto_pipe_t *msg = proto_pipe_new(PROTO_PIPE_ABORT);
    msg->task = task;
    msg->attempt = attempt;
    char *text = proto_pipe_encode(msg);
    s_send_pipe(w, text);
    free(text);
    proto_pipe_destroy(&msg);
}

/* ---- resources (resources.h) ---- */

/* What a task's class asks (NULL: a plain task). */
static const res_set_t *s_req(const tasks_t *self, const sched_task_t *t)
{
    return sched_class_get(self->sched, t->cls)->req;
}

/* Counts t as held by w; GPU devices handed to it are kept in w->grants. */
static void s_res_take(tasks_t *self, worker_t *w, const sched_task_t *t)
{
    const res_set_t *req = s_req(self, t);
    res_grant_t g;
    res_take(&w->pool, req, &g);
    if (req && g.n) {
        if (!w->grants)
            w->grants = imap_new();
        res_grant_t *copy = xmalloc(sizeof *copy);
        *copy = g;
        imap_put(w->grants, t->id, copy);
    }
}

static void s_res_release(tasks_t *self, worker_t *w, const sched_task_t *t)
{
    const res_set_t *req = s_req(self, t);
    res_grant_t *g = req && w->grants ? imap_remove(w->grants, t->id) : NULL;
    res_release(&w->pool, req, g);
    free(g);
}

/* t, just claimed by w after a master restart, holds the GPU devices ids
   names (its worker's hello): its grant moves there, from the first free
   ones s_res_take picked, or a new task would be handed a device in use.
   Without ids (a worker older than that, or no GPU) it keeps that pick. */
static void s_res_claimed(tasks_t *self, worker_t *w, const sched_task_t *t, const char *ids)
{
    const res_set_t *req = s_req(self, t);
    if (!req || !ids)
        return;
    res_grant_t *g = w->grants ? imap_get(w->grants, t->id) : NULL;
    res_grant_t fresh = {0};
    if (res_claim_gpus(&w->pool, req, g ? g : &fresh, ids) != 0) {
        log_info("event=claim_gpus_unknown task=%" PRId64 " worker=%s (not its devices, or not "
                 "as many as it asked: counted on the first free ones)",
                 t->id, LOG_V(w->id));
        return;
    }
    if (!g && fresh.n) {
        if (!w->grants)
            w->grants = imap_new();
        res_grant_t *copy = xmalloc(sizeof *copy);
        *copy = fresh;
        imap_put(w->grants, t->id, copy);
    }
}

/* The members a task with a request gets in its "tasks" entry: its CPUs
   and devices (caller frees); NULL for a plain task. */
static char *s_grant_text(const tasks_t *self, const worker_t *w, const sched_task_t *t)
{
    const res_set_t *req = s_req(self, t);
    if (!req)
        return NULL;
    int64_t cpus = 1;
    for (int i = 0; i < req->n; i++)
        if (strcmp(req->name[i], "cpus") == 0)
            cpus = req->amount[i];
    const res_grant_t *g = w->grants ? imap_get(w->grants, t->id) : NULL;
    if (!g)
        return xasprintf("\"cpus\":%" PRId64, cpus);
    char ids[RES_MAX_GPUS * (RES_GPU_ID_MAX + 1) + 1];
    res_grant_format(&w->pool, g, ids, sizeof ids);
    return xasprintf("\"cpus\":%" PRId64 ",\"gpus\":\"%s\"", cpus, ids);
}

/* ---- state transitions ---- */

/* Where t's job counts it: on a worker, or (after a restart) waiting for
   its worker to claim it, it runs; otherwise it is queued, a task just
   popped for dispatch included. A record in a final state is a finished
   task coming back (tasks_retry): only for the move that requeues it. */
static proto_state_t s_counted(const sched_task_t *t)
{
    if (t->state == PROTO_ST_FAILED || t->state == PROTO_ST_CANCELLED
        || t->state == PROTO_ST_DEP_FAILED)
        return (proto_state_t) t->state;
    return t->worker || t->orphan ? PROTO_ST_RUNNING : PROTO_ST_QUEUED;
}

/* Lets up to n tasks of job parked at its --max-running limit back into
   the queue (the oldest first; ids of tasks gone since are skipped). */
static void s_let_out(tasks_t *self, job_t *job, int64_t n)
{
    int64_t id;
    while (n > 0 && job_capped_pop(job, &id)) {
        sched_task_t *t = sched_get(self->sched, id);
        if (!t || !(t->parked & SCHED_PARK_CAPPED))
            continue;
        sched_unpark(self->sched, t, SCHED_PARK_CAPPED);
        n--;
    }
}

/* The one place a task changes state in the master: it leaves the queue,
   its orphan wait or its worker for `to`, and its job's counters, its
   worker's list and the orphan count follow. With w (to is ASSIGNED or
   RUNNING) it goes onto w's list, as a new attempt when it comes from
   the queue (a claimed orphan keeps its attempt). Without w, to ASSIGNED
   takes a queued task to waiting for the worker t->worker_name names to
   claim it (an orphan: see s_park). The scheduler's queue (pop, claim,
   requeue, remove) and what the move writes are the caller's. */
static void s_move(tasks_t *self, sched_task_t *t, proto_state_t to, worker_t *w)
{
    bool await = !w && to == PROTO_ST_ASSIGNED;
    assert(w ? to == PROTO_ST_ASSIGNED || to == PROTO_ST_RUNNING : to != PROTO_ST_RUNNING);
    proto_state_t from = s_counted(t);
    /* A finished task only ever comes back to the queue. */
    assert(from <= PROTO_ST_RUNNING || (to == PROTO_ST_QUEUED && !t->worker));
    assert(!await || (from == PROTO_ST_QUEUED && t->worker_name));
    if (t->worker) {
        s_res_release(self, t->worker, t);
        worker_detach(t->worker, t);
    }
    t->awaiting = false;
    t->unlisted = false;    /* left out by a heartbeat of the holder it had */
    t->recalling = false;   /* wherever it goes, a recall answer no longer takes it */
    if (t->orphan) {
        assert(self->orphans > 0);
        self->orphans--;
        t->orphan = false;
    }
    /* Whoever it was on is no longer its holder (s_take_back keeps the
       last holder's key again when it keeps its name). */
    if (imap_size(self->orphan_keys))
        free(imap_remove(self->orphan_keys, t->id));
    if (await) {
        t->orphan = true;
        t->recovered = false;
        self->orphans++;
    }
    if (w) {
        if (from == PROTO_ST_QUEUED) {
            assert(t->attempt < PROTO_MAX_ATTEMPT);   /* s_dispatch_to ends it first */
            t->attempt++;
        }
        t->recovered = false;
        free(t->worker_name);
        t->worker_name = xstrdup(w->id);
        worker_attach(w, t);
        s_res_take(self, w, t);
    }
    t->state = (uint8_t) to;
    job_t *job = jobs_get(self->jobs, t->job);
    if (!job)
        return;
    job_move(job, from, to, 1, t->spec_len);
    /* A task stopped running: room for one parked at the job's limit. */
    if (from == PROTO_ST_RUNNING && to != PROTO_ST_RUNNING && to != PROTO_ST_ASSIGNED)
        s_let_out(self, job, 1);
}

void tasks_enter(tasks_t *self, job_t *job, pending_submit_t *p)
{
    /* A job cancelled meanwhile had these rows cancelled in the same
       transaction (J_CANCEL_QUEUED): they never enter the queue. */
    if (job->cancelled) {
        job_add(job, PROTO_ST_CANCELLED, p->ntasks, p->bytes);
        return;
    }
    int64_t bytes = 0, now = clock_mono_ms();
    metrics_submitted(self->cfg.metrics, p->ntasks);
    bool deps = deps_has(self->cfg.deps, job->id);
    for (int i = 0; i < p->ntasks; i++) {
        const pending_task_t *pt = &p->tasks[i];
        sched_task_t *t = sched_add(self->sched,
                                    &(sched_new_task_t){.id = pt->id,
                                                        .job = job->id,
                                                        .index = pt->index,
                                                        .priority = pt->priority,
                                                        .cls = pt->cls,
                                                        .retries_left = pt->retries,
                                                        .held = deps},
                                    0);
        t->ready_ms = now;
        if (job->held)
            sched_park(self->sched, t, SCHED_PARK_HELD);
        /* Keep the spec in memory until dispatch: no read back. */
        t->spec = p->tasks[i].spec;
        t->spec_len = (uint32_t) strlen(t->spec);
        bytes += t->spec_len;
        p->tasks[i].spec = NULL;
    }
    job_add(job, PROTO_ST_QUEUED, p->ntasks, bytes);
    if (deps) {
        /* Judged once counted: one that can never run ends at once. */
        int64_t *ids = xmalloc(((size_t) p->ntasks + 1) * sizeof *ids);
        for (int i = 0; i < p->ntasks; i++)
            ids[i] = p->tasks[i].id;
        s_judge(self, ids, (size_t) p->ntasks);
        free(ids);
    }
}

/* ---- dependencies (deps.h) ---- */

/* Ends a held task whose dependency can never be met. */
static void s_finish(tasks_t *self, sched_task_t *t, proto_state_t state, char *outcome,
                     const char *error);

/* Judges the held tasks ids again (some may be gone: skipped): each runs,
   waits again, or ends dep_failed (cancelled, when its job was). A
   verdict can end a job, whose dependants come back here through
   s_finish: called inside a judgement, the ids join its queue and are
   judged before the outer call returns (a chain of 100,000 jobs would
   otherwise be as deep a recursion: the master's stack ran out). */
static void s_judge(tasks_t *self, const int64_t *ids, size_t n)
{
    if (self->judge_n + n > self->judge_cap) {
        while (self->judge_n + n > self->judge_cap)
            self->judge_cap = self->judge_cap ? self->judge_cap * 2 : 1024;
        self->judge_ids = xrealloc(self->judge_ids, self->judge_cap * sizeof(int64_t));
    }
    if (n)
        memcpy(self->judge_ids + self->judge_n, ids, n * sizeof(int64_t));
    self->judge_n += n;
    if (self->judging)
        return;
    self->judging = true;
    while (self->judge_head < self->judge_n) {
        sched_task_t *t = sched_get(self->sched, self->judge_ids[self->judge_head++]);
        if (!t || !(t->parked & SCHED_PARK_DEPS))
            continue;
        const job_t *job = jobs_get(self->jobs, t->job);
        if (job && job->cancelled) {
            s_finish(self, t, PROTO_ST_CANCELLED, NULL, "cancelled before it started");
            continue;
        }
        char why[256];
        switch (deps_judge(self->cfg.deps, t->job, t->index, why, sizeof why)) {
        case DEPS_RUN:
            t->ready_ms = clock_mono_ms();   /* its wait in the queue starts now */
            sched_unpark(self->sched, t, SCHED_PARK_DEPS);
            break;
        case DEPS_WAIT: deps_hold(self->cfg.deps, t->job, t->index, t->id); break;
        case DEPS_FAIL: s_finish(self, t, PROTO_ST_DEP_FAILED, NULL, why); break;
        }
    }
    self->judge_head = self->judge_n = 0;
    self->judging = false;
}

/* A task of job ended: the tasks that wait for it (--after-each) are
   judged again. */
static void s_task_ended(tasks_t *self, int64_t job, int64_t index, proto_state_t state)
{
    size_t n;
    int64_t *ids = deps_task_ended(self->cfg.deps, job, index, state, &n);
    if (ids) {
        s_judge(self, ids, n);
        free(ids);
    }
}

void tasks_check_finished(tasks_t *self, job_t *job)
{
    if (job->finished > 0)
        return;
    jobs_check_finished(self->jobs, job);
    if (job->finished == 0)
        return;
    size_t n;
    int64_t *ids = deps_job_ended(self->cfg.deps, job->id, &n);
    if (ids) {
        log_info("event=dependants_judged job=%" PRId64 " tasks=%zu", job->id, n);
        s_judge(self, ids, n);
        free(ids);
    }
}

void tasks_retry(tasks_t *self, job_t *job, const tasks_retry_t *task)
{
    assert(task->state == PROTO_ST_FAILED || task->state == PROTO_ST_CANCELLED
           || task->state == PROTO_ST_DEP_FAILED);
    bool deps = deps_has(self->cfg.deps, job->id);
    sched_task_t *t = sched_add(self->sched,
                                &(sched_new_task_t){.id = task->id,
                                                    .job = job->id,
                                                    .index = task->index,
                                                    .priority = task->priority,
                                                    .cls = task->cls,
                                                    .attempt = task->attempt,
                                                    .retries_left = task->retries,
                                                    .held = deps},
                                0);
    t->spec_len = (uint32_t) task->spec_bytes;
    t->ready_ms = clock_mono_ms();
    /* Counted where it ended until s_move brings it back (see s_counted). */
    t->state = (uint8_t) task->state;
    s_move(self, t, PROTO_ST_QUEUED, NULL);
    if (job->held)
        sched_park(self->sched, t, SCHED_PARK_HELD);
    journal_add(self->journal,
                &(jop_t){.type = J_RETRY,
                         .task = t->id,
                         .job = t->job,
                         .attempt = t->attempt,
                         .row_bytes = t->spec_len});
    deps_task_reset(self->cfg.deps, job->id, task->index);
    if (deps)
        s_judge(self, &task->id, 1);
}

static int s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

typedef struct {
    tasks_t *self;
    tasks_retry_pick_t pick;   /* indexes sorted */
    tasks_retry_set_t *set;
} retry_rows_t;

static int s_retry_row(const store_task_row_t *row, void *arg)
{
    retry_rows_t *r = arg;
    if (row->state == PROTO_ST_FAILED    ? !r->pick.failed
        : row->state == PROTO_ST_CANCELLED ? !r->pick.cancelled
                                           : row->state != PROTO_ST_DEP_FAILED)
        return 0;
    if (r->pick.indexes
        && !bsearch(&row->index, r->pick.indexes, (size_t) r->pick.nindexes, sizeof(int64_t),
                    s_cmp_i64))
        return 0;
    tasks_retry_set_t *set = r->set;
    if (set->n == set->cap) {
        set->cap = set->cap ? set->cap * 2 : 64;
        set->v = xrealloc(set->v, set->cap * sizeof *set->v);
    }
    set->v[set->n++] = (tasks_retry_t){.id = row->id,
                                       .priority = row->priority,
                                       .cls = sched_class(r->self->sched, row->needs),
                                       .attempt = row->attempt,
                                       .retries = row->retries,
                                       .spec_bytes = row->spec_bytes,
                                       .index = row->index,
                                       .state = row->state};
    set->bytes += row->spec_bytes;
    return 0;
}

int tasks_retry_select(tasks_t *self, const job_t *job, const tasks_retry_pick_t *pick,
                       tasks_retry_set_t *set)
{
    bool both = !pick->failed && !pick->cancelled;
    retry_rows_t rows = {.self = self,
                         .pick = {.failed = both || pick->failed,
                                  .cancelled = both || pick->cancelled},
                         .set = set};
    int64_t *sorted = NULL;
    if (pick->indexes) {
        sorted = xmalloc((size_t) pick->nindexes * sizeof(int64_t) + 1);
        memcpy(sorted, pick->indexes, (size_t) pick->nindexes * sizeof(int64_t));
        qsort(sorted, (size_t) pick->nindexes, sizeof(int64_t), s_cmp_i64);
        rows.pick.indexes = sorted;
        rows.pick.nindexes = pick->nindexes;
    }
    int rc = store_retryable_each(journal_store(self->journal), job->id, s_retry_row, &rows);
    free(sorted);
    return rc;
}

void tasks_retry_set_free(tasks_retry_set_t *set)
{
    free(set->v);
    *set = (tasks_retry_set_t){0};
}

/* A retried job runs again, so what gave up on it waits for it again:
   the dep_failed tasks of the jobs that depend on it (theirs in turn),
   back in the queue, parked until it ends (tasks_retry). Returns how
   many. */
static int64_t s_revive_dependants(tasks_t *self, job_t *job)
{
    size_t n = 0, cap = 16;
    int64_t total = 0;
    job_t **seen = xmalloc(cap * sizeof *seen);
    seen[n++] = job;
    imap_t *known_ids = imap_new();   /* seen, by id: a chain is as long as a client likes */
    imap_put(known_ids, job->id, job);
    store_t *store = journal_store(self->journal);
    for (size_t i = 0; i < n; i++) {
        int nc;
        const int64_t *kids = deps_children(self->cfg.deps, seen[i]->id, &nc);
        for (int k = 0; k < nc; k++) {
            job_t *c = jobs_get(self->jobs, kids[k]);
            if (!c || imap_get(known_ids, c->id) || c->dep_failed == 0)
                continue;
            tasks_retry_set_t set = {0};
            retry_rows_t rows = {.self = self, .set = &set};
            if (store_dep_failed_each(store, c->id, s_retry_row, &rows) != 0)
                log_error("event=revive_failed job=%" PRId64 " error=\"%s\"", c->id,
                          store_error(store));
            for (size_t r = 0; r < set.n; r++)
                tasks_retry(self, c, &set.v[r]);
            if (set.n)
                jobs_reopen(self->jobs, c);
            log_info("event=dependants_revived job=%" PRId64 " parent=%" PRId64 " tasks=%zu",
                     c->id, seen[i]->id, set.n);
            total += (int64_t) set.n;
            tasks_retry_set_free(&set);
            if (n == cap)
                seen = xrealloc(seen, (cap *= 2) * sizeof *seen);
            seen[n++] = c;
            imap_put(known_ids, c->id, c);
        }
    }
    imap_destroy(&known_ids);
    free(seen);
    return total;
}

int64_t tasks_retry_apply(tasks_t *self, job_t *job, const tasks_retry_set_t *set)
{
    for (size_t i = 0; i < set->n; i++)
        tasks_retry(self, job, &set->v[i]);
    if (set->n) {
        jobs_reopen(self->jobs, job);
        s_revive_dependants(self, job);
    }
    return (int64_t) set->n;
}

static metrics_kind_t s_kind(const tasks_t *self, const sched_task_t *t)
{
    return sched_class_get(self->sched, t->cls)->exec ? M_KIND_EXEC : M_KIND_FN;
}

static void s_finish_as(tasks_t *self, sched_task_t *t, proto_state_t state, char *outcome,
                        const char *error, metrics_outcome_t counted);

/* Ends a task that is still in the scheduler with a final state (DONE,
   FAILED, CANCELLED or DEP_FAILED). outcome (proto_result_encode text, or NULL to
   record just `error`) is taken: the journal owns it from here. */
static void s_finish(tasks_t *self, sched_task_t *t, proto_state_t state, char *outcome,
                     const char *error)
{
    s_finish_as(self, t, state, outcome, error,
                state == PROTO_ST_DONE          ? M_OUT_DONE
                : state == PROTO_ST_CANCELLED   ? M_OUT_CANCELLED
                : state == PROTO_ST_DEP_FAILED ? M_OUT_DEP_FAILED
                                                : M_OUT_FAILED);
}

/* s_finish, counted in the metrics as `counted` (a timeout is a failure
   that the metrics tell apart). */
static void s_finish_as(tasks_t *self, sched_task_t *t, proto_state_t state, char *outcome,
                        const char *error, metrics_outcome_t counted)
{
    assert(state == PROTO_ST_DONE || state == PROTO_ST_FAILED || state == PROTO_ST_CANCELLED
           || state == PROTO_ST_DEP_FAILED);
    if (!outcome && error) {
        proto_result_t *res = proto_result_new();
        res->task = t->id;
        res->attempt = t->attempt;
        /* A result says done, failed or cancelled; the task's state says
           dep_failed. */
        res->status = state == PROTO_ST_DEP_FAILED ? PROTO_ST_FAILED : state;
        res->error = xstrdup(error);
        res->finished = clock_wall();
        outcome = proto_result_encode(res);
        proto_result_destroy(&res);
    }
    worker_t *w = t->worker;
    /* Who ran it: its worker, or the one an orphan waits for; a queued
       task's last holder (s_take_back) did not end it. */
    const char *holder = t->orphan ? t->worker_name : NULL;
    s_move(self, t, state, NULL);
    if (w) {
        if (state == PROTO_ST_DONE)
            w->done++;
        else
            w->failed++;
    }
    journal_add(self->journal, &(jop_t){.type = J_FINISH,
                                        .task = t->id,
                                        .job = t->job,
                                        .attempt = t->attempt,
                                        .state = state,
                                        .worker = w ? w->id : holder,
                                        .outcome = outcome,
                                        .t = clock_wall(),
                                        .row_bytes = t->spec_len});
    self->results_total++;
    metrics_finished(self->cfg.metrics, counted, clock_mono_ms());
    job_t *job = jobs_get(self->jobs, t->job);
    int64_t job_id = t->job, index = t->index;
    sched_remove(self->sched, t->id);
    s_task_ended(self, job_id, index, state);
    if (job)
        tasks_check_finished(self, job);
}

/* Parks t, taken back and due, until the commit of its requeue
   (t->requeue_mark) is written (tasks_requeues_written). Taken back from
   attempt a, it goes out as a + 1 only once the store says a (J_REQUEUE):
   a master killed before that commit finds the row at a - 1 (a send
   younger than ASSIGN_WRITE_MS is not written) or on a's worker, refuses
   the claim of a + 1 by the worker that has it (a restart takes a claim of
   the stored attempt + 1 only), aborts it there and sends a number a
   worker already had (a given back by a recall, or a + 1 itself). Parked,
   not left in the queue: a task there that may not go would be popped and
   put back by every dispatch, and with commits failing (a full disk)
   enough of them at the head of the queue kept every worker from the
   tasks behind. One commit, hurried (fsynced at once with --sync acked,
   whose journal_written counts fsynced commits only): a flush_ms at most.
   t: just requeued (QUEUED), or just popped by a dispatch (a retry whose
   backoff ended before its requeue was written: s_requeue). */
static void s_park_for_commit(tasks_t *self, sched_task_t *t)
{
    assert((t->state == PROTO_ST_QUEUED || t->state == PROTO_ST_ASSIGNED) && !t->worker);
    sched_park(self->sched, t, SCHED_PARK_COMMIT);
    assert(t->state == PROTO_ST_QUEUED);
    if (self->commit_n == self->commit_cap) {
        /* Give back the slots already scanned before growing. */
        if (self->commit_head > 0) {
            self->commit_n -= self->commit_head;
            memmove(self->commit_waits, self->commit_waits + self->commit_head,
                    self->commit_n * sizeof *self->commit_waits);
            self->commit_head = 0;
        }
        if (self->commit_n == self->commit_cap) {
            self->commit_cap = self->commit_cap ? self->commit_cap * 2 : 256;
            self->commit_waits = xrealloc(self->commit_waits,
                                          self->commit_cap * sizeof *self->commit_waits);
        }
    }
    self->commit_waits[self->commit_n++] =
        (struct commit_wait){.mark = t->requeue_mark, .id = t->id};
    journal_commit_soon(self->journal);
}

/* Queues again the tasks whose requeue is written now (s_park_for_commit).
   Cheap when there are none: one comparison. */
void tasks_requeues_written(tasks_t *self)
{
    while (self->commit_head < self->commit_n) {
        const struct commit_wait *cw = &self->commit_waits[self->commit_head];
        if (!journal_written(self->journal, cw->mark))
            return;
        sched_task_t *t = sched_get(self->sched, cw->id);
        /* Still waiting for this very commit (a later requeue has a later
           entry). Parked, so QUEUED: requeue_mark is the live member. */
        if (t && (t->parked & SCHED_PARK_COMMIT)) {
            assert(t->state == PROTO_ST_QUEUED && !t->worker);
            if (t->requeue_mark == cw->mark)
                sched_unpark(self->sched, t, SCHED_PARK_COMMIT);
        }
        self->commit_head++;
    }
    self->commit_head = self->commit_n = 0;
}

/* Back in the queue, ready at not_before (0 = now): a retry, or a task
   taken back from its worker. A task due now waits parked for its
   requeue's commit (s_park_for_commit). A retry waits for its backoff in
   the delayed queue, as `ztask tasks --waiting`, the metrics' retry_wait
   and the recalls count it: its commit is hurried COMMIT_HURRY_AHEAD_MS
   before the backoff ends (tasks_dispatch), unless the acked fsync of
   what nobody was told yet (JOURNAL_FSYNC_MS) wrote it before, and a
   dispatch that pops it unwritten all the same parks it then. Hurrying
   each retry at once fsynced every flush that held one (2000 tasks
   failing with --retries 3: 18 to 41 fsyncs, against 5 to 8). */
static void s_requeue(tasks_t *self, sched_task_t *t, int64_t not_before)
{
    s_move(self, t, PROTO_ST_QUEUED, NULL);
    sched_requeue(self->sched, t, not_before);
    t->ready_ms = not_before ? not_before : clock_mono_ms();
    const job_t *job = jobs_get(self->jobs, t->job);
    if (job && job->held)
        sched_park(self->sched, t, SCHED_PARK_HELD);
    journal_add(self->journal,
                &(jop_t){.type = J_REQUEUE,
                         .task = t->id,
                         .job = t->job,
                         .attempt = t->attempt,
                         .row_bytes = t->spec_len});
    t->requeue_mark = journal_mark(self->journal);
    int64_t hurry_at = not_before - COMMIT_HURRY_AHEAD_MS;
    if (hurry_at <= clock_mono_ms()) {
        s_park_for_commit(self, t);
        return;
    }
    if (!self->commit_hurry_at || hurry_at < self->commit_hurry_at)
        self->commit_hurry_at = hurry_at;
    self->commit_hurry_mark = t->requeue_mark;   /* marks only grow */
}

/* Puts a task that was on a worker back in the queue, or ends it when it
   was cancelled or (crashed) has killed its workers crash_limit times. A
   crashed task waits before it runs again, as a retry does (the same
   --retry-backoff doubling), so a task that takes its workers down -- or
   their links, lost_in_old_pipe -- cannot make the master spin.
   Back in the queue it keeps its worker's name (worker_name) as its last
   holder, and its attempt until it goes out again: that worker's result
   for it, under the key it held it with, still counts until then
   (s_sender, LAST_HOLDER), so work a
   worker finished while it was thought lost is not done twice. A caller
   that told the worker to drop the task frees worker_name first. */
static void s_take_back(tasks_t *self, sched_task_t *t, bool crashed, const char *why)
{
    if (t->cancel_requested) {
        s_finish(self, t, PROTO_ST_CANCELLED, NULL, "cancelled");
        return;
    }
    bool in_pipe = strcmp(why, "lost_in_old_pipe") == 0;
    if (crashed && ++t->crashes >= self->cfg.crash_limit) {
        char msg[200];
        if (in_pipe)
            snprintf(msg, sizeof msg,
                     "it was lost %d times on the way to its worker, whose link to the master "
                     "kept dropping (crash limit %d)",
                     t->crashes, self->cfg.crash_limit);
        else
            snprintf(msg, sizeof msg,
                     "its worker died %d times while running it (crash limit %d)", t->crashes,
                     self->cfg.crash_limit);
        log_warn("event=task_poisoned task=%" PRId64 " job=%" PRId64 " crashes=%d why=%s", t->id,
                 t->job, t->crashes, why);
        s_finish(self, t, PROTO_ST_FAILED, NULL, msg);
        return;
    }
    int64_t not_before = 0;
    if (crashed) {
        int shift = t->crashes > 8 ? 7 : t->crashes - 1;
        int64_t backoff = (int64_t) self->cfg.retry_backoff_ms << shift;
        not_before = clock_mono_ms() + (backoff > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : backoff);
    }
    /* The key it was held under: its last holder's result counts only
       with that key (S_LAST_HOLDER), whoever registers the name later. */
    char *key = t->worker && t->worker->key[0] ? xstrdup(t->worker->key)
                : t->orphan                    ? imap_remove(self->orphan_keys, t->id)
                                               : NULL;
    s_requeue(self, t, not_before);
    if (key && t->worker_name)
        imap_put(self->orphan_keys, t->id, key);
    else
        free(key);
    log_debug("event=requeued task=%" PRId64 " attempt=%d why=%s", t->id, t->attempt, why);
}

/* s_take_back for a task that did not run from the send it comes back
   from: its worker gave it back (a recall, whose report may have been
   overtaken by the worker's new hello), its lease ran out before it
   started (it is aborted there), or the send never left. Its queue wait
   was observed at that send, and the send that runs it is the same
   execution: the histogram counts one wait per execution, so that one
   is not observed again. A take-back after which the task may have run
   (its worker died or lost its pipe, a result was lost) is not one of
   these: its next send is observed as a new wait. */
static void s_take_back_unrun(tasks_t *self, sched_task_t *t, const char *why)
{
    t->wait_counted = true;
    s_take_back(self, t, false, why);
}

/* Takes every task back from a worker that died or left. */
static void s_worker_lost(tasks_t *self, worker_t *w, int64_t now, const char *why, bool crashed)
{
    int n = 0;
    /* A worker that died may have been killed by one of its tasks, started
       or not (its "started" report may never have left): every task it held
       is charged a crash and becomes a suspect. A worker holds one suspect
       at a time, beside ordinary tasks: a poison task then crashes every
       worker it reaches and meets the crash limit by itself, while the
       innocent tasks it took down with it (charged once each) never share
       a worker with it again, each being some worker's one suspect. Two
       suspects together would charge each other for the one that kills.
       Suspects are not held back for an idle worker, which a busy cluster
       never has: each runs as soon as a worker without one has a free
       thread (issue 14, item 2). Silence is not proof of death (a
       partition, SIGSTOP): the charged tasks are noted, and if this very
       process comes back, tasks_rejoin takes the charge back. */
    free(w->charged);
    w->charged = NULL;
    w->ncharged = 0;
    int held = w->inflight;
    if (crashed && held > 0)
        w->charged = xcalloc((size_t) held, sizeof *w->charged);
    for (; w->tasks; n++) {
        if (crashed && w->ncharged < held)
            w->charged[w->ncharged++] = w->tasks->id;
        s_take_back(self, w->tasks, crashed, why);
    }
    log_warn("event=worker_lost worker=%s why=%s requeued=%d", LOG_V(w->id), why, n);
    if (strcmp(why, "bye") != 0)
        metrics_worker_lost(self->cfg.metrics);
    registry_gone(self->registry, w, now, strcmp(why, "bye") == 0);
}

/* A worker declared dead registers again as the same process (host, pid,
   key): it did not crash, so the tasks charged a crash at its loss are
   uncharged (the poison-task limit counts real crashes only). */
static void s_worker_returned(tasks_t *self, worker_t *w)
{
    int n = 0;
    for (int i = 0; i < w->ncharged; i++) {
        sched_task_t *t = sched_get(self->sched, w->charged[i]);
        if (t && t->crashes > 0) {
            t->crashes--;
            n++;
        }
    }
    if (n)
        log_info("event=crashes_uncharged worker=%s tasks=%d note=\"the worker declared dead "
                 "came back: it did not crash\"",
                 LOG_V(w->id), n);
    free(w->charged);
    w->charged = NULL;
    w->ncharged = 0;
}

static bool s_listed(const proto_task_ref_t *running, int nrunning, const sched_task_t *t)
{
    for (int i = 0; i < nrunning; i++)
        if (running[i].task == t->id && running[i].attempt == t->attempt)
            return true;
    return false;
}

/* t, on a worker that said in its hello it ended it, stays there while its
   result comes (see tasks_claim). */
static void s_await_result(tasks_t *self, sched_task_t *t, int64_t now)
{
    t->awaiting = true;
    t->deadline = now + self->cfg.recovery_grace_ms;
}

bool tasks_rejoin(tasks_t *self, worker_t *w, const char *host, int pid, const char *key,
                  const tasks_held_t *held, int64_t now)
{
    bool same = w && w->pid == pid && strcmp(w->host, host ? host : "") == 0
                && strcmp(w->key, key) == 0;
    if (!same)
        return false;
    /* Declared dead but alive after all (it was cut off or stopped). */
    if (!w->alive) {
        s_worker_returned(self, w);
        return false;
    }
    /* A live worker registering again lost its pipe: whatever we sent it
       and it does not report running (or ended, its result on its way) is
       lost in that pipe. That counts against the crash limit (and backs
       off): a task whose message makes the worker drop its link (over its
       size limit, a libzmq or network fault) would otherwise be sent again
       at once, for ever. */
    sched_task_t *t = w->tasks;
    while (t) {
        sched_task_t *next = t->wnext;
        if (s_listed(held->ended, held->nended, t))
            s_await_result(self, t, now);
        else if (t->recalling && t->state == PROTO_ST_ASSIGNED
                 && !s_listed(held->running, held->nrunning, t))
            /* Asked back before the pipe went, and not reported started:
               most likely given back, its "recalled" still on the way
               (the report socket is not the hello's), which then finds it
               queued and changes nothing. Not charged: it did not run,
               and the message that carried it reached the worker (a
               recall is only asked of tasks sent before it). One
               reported started was not given back (recalling stays set
               through the start: s_on_recalled's refusal says so): it is
               lost as any other below. */
            s_take_back_unrun(self, t, "recalled_in_old_pipe");
        else if (!s_listed(held->running, held->nrunning, t))
            s_take_back(self, t, true, "lost_in_old_pipe");
        t = next;
    }
    return true;
}

/* What a report's sender is to the task it names. A report counts only
   from the worker that holds the task's current attempt (registered under
   that name, with that key: s_on_report checks the key); after a master
   restart, a task may wait for its worker's claim, and that worker's
   report is its claim; a task taken back from a worker (thought lost, cut
   off, its pipe lost) is still that worker's until it goes out again.
   Anything else is a duplicate (an older attempt) or refused. */
typedef enum {
    S_HOLDER,       /* holds that attempt: counts */
    S_CLAIMABLE,    /* registered, the task waits for its claim: claimed, then counts */
    S_LAST_HOLDER,  /* held that attempt until it was taken back, not sent again since */
    S_EARLY,        /* not registered (yet), the task waits for a claim: kept (s_park) */
    S_STALE,        /* a superseded attempt: a duplicate */
    S_REFUSED,      /* not its task, or an attempt never sent */
    S_UNPROVEN      /* claims an attempt with no stored assignment without its token */
} sender_t;

/* The words of a refusal's error="..." for who. */
static const char *s_refusal(sender_t who)
{
    return who == S_UNPROVEN ? "no valid claim token for this attempt: it was not sent to this "
                               "worker's key"
                             : "not the worker that holds this attempt of the task";
}

/* w: the registry's record of name (NULL: none); its key matched. key:
   the key the report came with (NULL without CURVE, or for a hello: w's).
   claim: the claim token the report or hello gave for that attempt (NULL
   or "": none). */
static sender_t s_sender(const tasks_t *self, const sched_task_t *t, const worker_t *w,
                         const char *name, const char *key, int attempt, const char *claim)
{
    bool registered = w && w->alive;
    if (t->worker) {
        if (attempt < t->attempt)
            return S_STALE;
        return attempt == t->attempt && t->worker == w ? S_HOLDER : S_REFUSED;
    }
    bool named = t->worker_name && strcmp(t->worker_name, name) == 0;
    if (t->orphan) {
        /* The store knows the key it was sent to (schema 11): only that key
           claims it, whoever registered the name first. */
        const char *held = imap_get(self->orphan_keys, t->id);
        if (attempt < t->attempt)
            return S_STALE;
        if (attempt > t->attempt || !named || (held && (!key || strcmp(held, key) != 0)))
            return S_REFUSED;
        return registered ? S_CLAIMABLE : S_EARLY;
    }
    /* Queued. Sent just before a master restart as the attempt above the
       stored one, and never written (ASSIGN_WRITE_MS in journal.h); or
       never sent at all: nothing stored tells them apart. With CURVE, only
       the worker it was sent to has that attempt's token for its key
       (claim.h), so no other worker key can claim every task found queued
       at start; without CURVE there are no keys, and a claim is by name. */
    if (t->recovered && attempt - 1 == t->attempt) {   /* not t->attempt + 1: it may be the last */
        if (self->cfg.claims && !claim_valid(self->cfg.claims, t->id, attempt, key, claim))
            return S_UNPROVEN;
        return registered ? S_CLAIMABLE : S_EARLY;
    }
    const char *held = imap_get(self->orphan_keys, t->id);
    if (attempt == t->attempt && attempt > 0 && named && w
        && (!held || (key && strcmp(held, key) == 0)))
        return S_LAST_HOLDER;
    return attempt <= t->attempt ? S_STALE : S_REFUSED;
}

static void s_judge_parked(tasks_t *self, worker_t *w, int64_t now);

/* w takes t, which waits for its claim: an orphan of the attempt w runs,
   or a queued task w runs as the attempt above (sent just before a master
   restart, never written: ASSIGN_WRITE_MS in journal.h). gpus: the devices
   w says t holds (NULL: not said). */
static void s_claim(tasks_t *self, sched_task_t *t, worker_t *w, const char *gpus)
{
    if (!t->orphan) {
        sched_claim(self->sched, t);
        free(t->spec);
        t->spec = NULL;
        log_info("event=claim_unrecorded task=%" PRId64 " attempt=%d worker=%s", t->id,
                 t->attempt + 1, LOG_V(w->id));
    }
    s_move(self, t, PROTO_ST_RUNNING, w);
    s_res_claimed(self, w, t, gpus);
    t->deadline = 0;
    if (t->started <= 0)
        t->started = clock_wall();   /* it started before: when is unknown */
    journal_add(self->journal, &(jop_t){.type = J_ASSIGN,
                                        .task = t->id,
                                        .job = t->job,
                                        .attempt = t->attempt,
                                        .worker = w->id,
                                        .text = w->key[0] ? xstrdup(w->key) : NULL,
                                        .row_bytes = t->spec_len});
}

/* w's hello claims an attempt it has no token for (S_UNPROVEN): the task
   stays where it is (queued, for whoever it goes to next); one line,
   rate-limited with the refused reports. */
static void s_refuse_claim(tasks_t *self, const worker_t *w, const proto_task_ref_t *ref,
                           int64_t now)
{
    self->refused++;
    int64_t held;
    if (log_limit(&self->lim_report, now, &held))
        log_warn("event=claim_refused task=%" PRId64 " attempt=%d worker=%s key=%s error=\"%s\" "
                 "suppressed=%" PRId64,
                 ref->task, ref->attempt, LOG_V(w->id), w->key[0] ? w->key : "-",
                 s_refusal(S_UNPROVEN), held);
}

int tasks_claim(tasks_t *self, worker_t *w, const tasks_held_t *held, int64_t now)
{
    /* A new pipe: its heartbeats are compared from the first message sent
       on it (s_compare_heartbeat); one that names a message of its last
       registration names a smaller number than any sent from now on. */
    w->seq_sent = 0;
    int claimed = 0;
    for (int i = 0; i < held->nrunning + held->nended; i++) {
        bool ended = i >= held->nrunning;
        const proto_task_ref_t *ref = ended ? &held->ended[i - held->nrunning]
                                            : &held->running[i];
        sched_task_t *t = sched_get(self->sched, ref->task);
        /* Queued since the restart with the attempt below the claimed one,
           or an orphan of this very attempt sent to this worker. A task
           submitted since, or sent again since, cannot be claimed. */
        sender_t who = t ? s_sender(self, t, w, w->id, w->key, ref->attempt, ref->claim)
                         : S_REFUSED;
        if (who == S_UNPROVEN) {
            s_refuse_claim(self, w, ref, now);
            continue;
        }
        if (who != S_CLAIMABLE)
            continue;
        s_claim(self, t, w, ref->gpus);
        claimed++;
        /* It ended there: its result is on its way (behind this hello,
           or lost with the old master's socket). Kept for it meanwhile,
           not sent to another worker; taken back if none comes. */
        if (ended)
            s_await_result(self, t, now);
    }
    s_judge_parked(self, w, now);
    return claimed;
}

proto_task_ref_t *tasks_unreported(const tasks_t *self, const worker_t *w,
                                   const tasks_held_t *held, int *n)
{
    *n = 0;
    proto_task_ref_t *refs = NULL;
    /* Those listed ended first: their results are surely due, while most
       listed running still run. A worker holding more than
       PROTO_MAX_ENDED running would otherwise crowd them out. */
    for (int i = 0; i < held->nended + held->nrunning && *n < PROTO_MAX_ENDED; i++) {
        bool ended = i < held->nended;
        const proto_task_ref_t *ref = ended ? &held->ended[i]
                                            : &held->running[i - held->nended];
        const sched_task_t *t = sched_get(self->sched, ref->task);
        /* Its own, at that attempt, and no result yet (an ended one that
           is not awaiting has its result already). */
        if (!t || t->worker != w || t->attempt != ref->attempt || (ended && !t->awaiting))
            continue;
        if (!refs)
            refs = xcalloc((size_t) PROTO_MAX_ENDED, sizeof *refs);
        refs[(*n)++] = (proto_task_ref_t){.task = t->id, .attempt = t->attempt};
    }
    return refs;
}

void tasks_cancel(tasks_t *self, sched_task_t *t)
{
    if (t->state == PROTO_ST_QUEUED || (t->orphan && !t->worker)) {
        s_finish(self, t, PROTO_ST_CANCELLED, NULL, "cancelled before it started");
        return;
    }
    if (!t->cancel_requested) {
        t->cancel_requested = true;
        s_send_abort(self, t->worker, t->id, t->attempt);
    }
}

int64_t tasks_cancel_job(tasks_t *self, job_t *job)
{
    /* Queued tasks are cancelled in one statement; running ones get an
       abort and come back as cancelled results. */
    size_t cap = 1024, n = 0, pos = 0;
    int64_t *ids = xmalloc(cap * sizeof(int64_t));
    sched_task_t *t;
    while ((t = sched_next(self->sched, &pos)))
        if (t->job == job->id) {
            if (n == cap)
                ids = xrealloc(ids, (cap *= 2) * sizeof(int64_t));
            ids[n++] = t->id;
        }
    int64_t queued = 0, count = 0;
    for (size_t i = 0; i < n; i++) {
        t = sched_get(self->sched, ids[i]);
        if (t->state == PROTO_ST_QUEUED) {
            int64_t index = t->index;
            s_move(self, t, PROTO_ST_CANCELLED, NULL);
            sched_remove(self->sched, ids[i]);
            s_task_ended(self, job->id, index, PROTO_ST_CANCELLED);
            queued++;
        } else {
            tasks_cancel(self, t);
            count++;
        }
    }
    free(ids);
    if (queued)
        journal_add(self->journal,
                    &(jop_t){.type = J_CANCEL_QUEUED, .job = job->id, .t = clock_wall()});
    count += queued;
    log_info("event=job_cancelled job=%" PRId64 " queued=%" PRId64 " running=%" PRId64, job->id,
             queued, count - queued);
    tasks_check_finished(self, job);
    return count;
}

/* ---- steering: hold, release, priority, limit ---- */

/* The ids of job's unfinished tasks (caller frees), *n of them: acting
   on them may change the scheduler, so they are collected first. */
static int64_t *s_job_task_ids(tasks_t *self, const job_t *job, size_t *n)
{
    size_t cap = 1024, pos = 0;
    int64_t *ids = xmalloc(cap * sizeof(int64_t));
    *n = 0;
    sched_task_t *t;
    while ((t = sched_next(self->sched, &pos)))
        if (t->job == job->id) {
            if (*n == cap)
                ids = xrealloc(ids, (cap *= 2) * sizeof(int64_t));
            ids[(*n)++] = t->id;
        }
    return ids;
}

/* Holds (parks) or releases one queued task; true when that changed it. */
static bool s_hold_one(tasks_t *self, sched_task_t *t, bool hold)
{
    if (hold) {
        if (t->state != PROTO_ST_QUEUED || (t->parked & SCHED_PARK_HELD))
            return false;
        sched_park(self->sched, t, SCHED_PARK_HELD);
        return true;
    }
    if (!(t->parked & SCHED_PARK_HELD))
        return false;
    sched_unpark(self->sched, t, SCHED_PARK_HELD);
    return true;
}

int tasks_hold(tasks_t *self, sched_task_t *t, bool hold)
{
    if (!s_hold_one(self, t, hold))
        return 0;
    journal_add(self->journal,
                &(jop_t){.type = J_TASK_HOLD,
                         .task = t->id,
                         .job = t->job,
                         .value = hold,
                         .row_bytes = t->spec_len});
    log_info("event=task_%s task=%" PRId64 " job=%" PRId64, hold ? "held" : "released", t->id,
             t->job);
    return 1;
}

int64_t tasks_hold_job(tasks_t *self, job_t *job, bool hold)
{
    job->held = hold;
    journal_add(self->journal, &(jop_t){.type = J_JOB_HOLD, .job = job->id, .value = hold});
    size_t n;
    int64_t *ids = s_job_task_ids(self, job, &n);
    int64_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += s_hold_one(self, sched_get(self->sched, ids[i]), hold);
    free(ids);
    log_info("event=job_%s job=%" PRId64 " tasks=%" PRId64, hold ? "held" : "released", job->id,
             count);
    return count;
}

int64_t tasks_set_priority(tasks_t *self, job_t *job, int32_t priority)
{
    journal_add(self->journal,
                &(jop_t){.type = J_JOB_PRIORITY, .job = job->id, .value = priority});
    size_t n;
    int64_t *ids = s_job_task_ids(self, job, &n);
    int64_t queued = 0;
    for (size_t i = 0; i < n; i++) {
        sched_task_t *t = sched_get(self->sched, ids[i]);
        queued += t->state == PROTO_ST_QUEUED;
        sched_set_priority(self->sched, t, priority);
    }
    free(ids);
    log_info("event=job_priority job=%" PRId64 " priority=%d queued=%" PRId64, job->id,
             (int) priority, queued);
    return queued;
}

void tasks_set_limit(tasks_t *self, job_t *job, int max_running)
{
    job->max_running = max_running;
    journal_add(self->journal,
                &(jop_t){.type = J_JOB_LIMIT, .job = job->id, .value = max_running});
    /* A higher limit (or none) lets parked tasks out at once; a lower one
       lets running tasks finish and parks the next ones. */
    int64_t room = max_running == 0 ? INT64_MAX : (int64_t) max_running - job->running;
    if (room > 0)
        s_let_out(self, job, room);
    log_info("event=job_limit job=%" PRId64 " max_running=%d running=%" PRId64, job->id,
             max_running, job->running);
}

/* ---- dispatch ---- */

static bool s_pipe_ready(worker_t *w, int64_t now)
{
    if (w->pipe_ready)
        return true;
    if (now - w->last_ping < PIPE_PROBE_MS)
        return false;
    w->last_ping = now;
    proto_pipe_t *msg = proto_pipe_new(PROTO_PIPE_PING);
    char *text = proto_pipe_encode(msg);
    /* A bound PUSH with no connected peer refuses with EAGAIN: that is how
       we learn the worker's PULL has connected. */
    if (zmqx_send(w->pipe, text, strlen(text), ZMQ_DONTWAIT) == 0)
        w->pipe_ready = true;
    free(text);
    proto_pipe_destroy(&msg);
    return w->pipe_ready;
}

/* Whether a worker's end (its allocation's) leaves a --time-request's
   time and the margin it drains in. */
static bool s_time_ok(const sched_class_t *cls, const worker_t *w)
{
    return cls->time_request <= 0 || w->ends_at <= 0
           || clock_wall() + cls->time_request <= w->ends_at - PROTO_END_MARGIN_S;
}

/* Whether a worker is the kind a class needs: a command needs a worker
   that runs commands, a function one that has it, labels the worker's,
   a --time-request a worker with that long left. */
static bool s_kind_ok(const sched_class_t *cls, const worker_t *w)
{
    return (!cls->exec || !w->no_exec) && worker_has_fn(w, cls->fn)
           && worker_has_labels(w, cls->require, cls->nrequire) && s_time_ok(cls, w);
}

/* Whether a worker can take tasks of a class at all (ever, on an idle
   worker): its kind, and resources it declared enough of. */
static bool s_could_take(const sched_class_t *cls, const worker_t *w)
{
    return s_kind_ok(cls, w) && (!cls->req || res_could_fit(&w->pool, cls->req));
}

/* Whether a worker can take a task of a class now: its kind, and what it
   has free now. */
static bool s_takes_now(const sched_class_t *cls, const worker_t *w)
{
    return s_kind_ok(cls, w) && res_fits(&w->pool, cls->req);
}

/* What sched_pop asks of a class for one worker now. */
typedef struct {
    const worker_t *w;
    const sched_class_t *only;   /* the worker is reserved for this class's head */
} accept_t;

static bool s_accepts(const sched_class_t *cls, void *arg)
{
    const accept_t *a = arg;
    return (!a->only || cls == a->only) && s_takes_now(cls, a->w);
}

bool tasks_class_served(tasks_t *self, int cls)
{
    const sched_class_t *c = sched_class_get(self->sched, cls);
    size_t pos = 0;
    worker_t *w;
    while (c && (w = registry_next(self->registry, &pos)))
        if (w->alive && !w->draining && s_could_take(c, w))
            return true;
    return false;
}

int tasks_unrunnable(tasks_t *self, const char **keys, int max)
{
    int n = 0;
    for (int c = 0; c < sched_nclasses(self->sched) && n < max; c++)
        if (sched_class_ready(self->sched, c) && !tasks_class_served(self, c))
            keys[n++] = sched_class_get(self->sched, c)->key;
    return n;
}

/* Tasks that wait for a kind of worker none of the live ones is (all
   --no-exec, none with the label) are not an error, since one may join;
   but they must not wait in silence: logged once they have waited 5 s, and
   every minute while they still do. The CLI's `wait` says so too (stats). */
static void s_check_stuck(tasks_t *self, int64_t now)
{
    if (now - self->last_stuck_check < 1000)
        return;
    self->last_stuck_check = now;
    const char *keys[8];
    int n = tasks_unrunnable(self, keys, 8);
    if (!n) {
        if (self->stuck_logged)
            log_info("event=tasks_runnable_again");
        self->stuck_since = self->stuck_logged = 0;
        return;
    }
    if (!self->stuck_since)
        self->stuck_since = now;
    if (now - self->stuck_since < 5000 || (self->stuck_logged && now - self->stuck_logged < 60000))
        return;
    self->stuck_logged = now;
    char list[512] = "";
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof list; i++)
        used += (size_t) snprintf(list + used, sizeof list - used, "%s%s", i ? " " : "", keys[i]);
    log_warn("event=tasks_without_worker needs=\"%s\" waiting_s=%lld note=\"no live worker "
             "can run these queued tasks (exec: runs commands, not --no-exec; fn=NAME: has "
             "that function, built in or from a --plugin; after ':' the labels they "
             "--require); they wait until one registers\"",
             log_quote((char[512]){0}, 512, list), (long long) ((now - self->stuck_since) / 1000));
}

/* Specs read ahead at a miss (a task loaded at a restart or requeued has
   its spec only in the store): the tasks that follow it in id order are
   most often the next to go (FIFO within a priority), so one read, and at
   most one wait for the writer thread to be done with the store, serves
   this many dispatches instead of one. Measured (50,000 queued tasks
   loaded at a restart, two workers of 4 threads, noop): one read per task
   made the loop wait for the writer 20,020 times, 96 ms of a 0.58 s run,
   up to 13 ms at once. */
#define SPEC_READ_AHEAD 1024

typedef struct {
    tasks_t *self;
    sched_task_t *popped;    /* the task being dispatched (popped: not QUEUED), or NULL */
} ahead_t;

static int s_keep_spec(int64_t id, const char *spec, void *arg)
{
    ahead_t *a = arg;
    tasks_t *self = a->self;
    sched_task_t *t = sched_get(self->sched, id);
    if (t && !t->spec && (t == a->popped || (t->state == PROTO_ST_QUEUED && !t->orphan))) {
        t->spec = xstrdup(spec);
        self->ahead_left++;
    }
    self->ahead_from = id + 1;
    return 0;
}

/* Reads the specs of up to SPEC_READ_AHEAD queued tasks (and popped's)
   from id first on. */
static void s_read_ahead(tasks_t *self, int64_t first, sched_task_t *popped)
{
    self->ahead_from = 0;
    int before = self->ahead_left;
    ahead_t a = {.self = self, .popped = popped};
    store_specs_each(journal_store(self->journal), first, SPEC_READ_AHEAD, s_keep_spec, &a);
    /* Nothing queued among those rows (finished tasks, specs in memory):
       the next miss says where to read, not a walk through the table. */
    if (self->ahead_left == before)
        self->ahead_from = 0;
}

/* The spec to send for t (the caller's), from memory or read ahead from
   the store; NULL when the store has none. */
static char *s_take_spec(tasks_t *self, sched_task_t *t)
{
    if (!t->spec)
        s_read_ahead(self, t->id, t);
    else if (t->id < self->ahead_from && self->ahead_left > 0)
        self->ahead_left--;
    char *spec = t->spec;
    t->spec = NULL;   /* a requeued task reads it back from the store */
    return spec;
}

void tasks_read_ahead(tasks_t *self)
{
    if (self->ahead_wanted > 0) {
        s_read_ahead(self, self->ahead_wanted, NULL);
        self->ahead_wanted = 0;
    } else if (self->ahead_from > 0 && self->ahead_left < SPEC_READ_AHEAD / 2) {
        s_read_ahead(self, self->ahead_from, NULL);
    }
}

static int s_prefetch(const tasks_t *self, const worker_t *w);

/* How many tasks w is sent now (0: none this turn). A worker that still
   holds tasks queued beyond its threads is refilled once half its
   prefetch is free, in one message: one send (and one wakeup on each
   side) per prefetch/2 results of short tasks, not one per result. It
   never runs dry meanwhile. */
static int s_credit(const tasks_t *self, const worker_t *w)
{
    if (!w->alive || w->draining || !w->pipe)
        return 0;
    int prefetch = s_prefetch(self, w);
    int credit = w->threads + prefetch - w->inflight;
    if (prefetch >= 4 && credit < prefetch / 2)
        return 0;
    return credit > 0 ? credit : 0;
}

/* Whether t, a retry after a failure on w (or given back by w), should
   wait for another worker: one that can take it (its class, a free slot)
   is there now. A task given back for a worker with a free thread waits
   too when w has none (it would only wait in w's queue, and be recalled
   again, sent once more each time) while one with a free thread can
   take it now. */
static bool s_better_elsewhere(tasks_t *self, const worker_t *w, const sched_task_t *t)
{
    bool failed_here = t->failed_on && strcmp(t->failed_on, w->id) == 0;
    bool would_queue = t->given_back && w->inflight >= w->threads;
    if (!failed_here && !would_queue)
        return false;
    const sched_class_t *cls = sched_class_get(self->sched, t->cls);
    size_t pos = 0;
    worker_t *o;
    while ((o = registry_next(self->registry, &pos)))
        if (o != w && s_credit(self, o) > 0 && o->pipe_ready && s_takes_now(cls, o)
            && (failed_here || o->inflight < o->threads))
            return true;
    return false;
}

/* A "tasks" message numbered seq went into w's pipe: the counter moves
   on, and w's heartbeats that say they have read it are compared with
   what it holds (s_compare_heartbeat). Numbers are taken only by messages
   that went, so the one a worker read last is the one we sent it last
   exactly when nothing we sent it since is still on its way. */
static void s_sent_seq(tasks_t *self, worker_t *w, int64_t seq)
{
    assert(seq == self->pipe_seq + 1 && seq <= PROTO_MAX_SEQ);
    self->pipe_seq = seq;
    w->seq_sent = seq;
}

void tasks_attempts_exhausted(int attempt, char *buf, size_t len)
{
    snprintf(buf, len, "it was sent %d times, the most attempts a task can have: submit it again",
             attempt);
}

/* A "tasks" message is bounded by count (DISPATCH_BATCH) and by bytes:
   the worker's pipe drops its link on a message over PROTO_MAX_PIPE_MSG,
   and the tasks in it would then be sent again, and again. A task whose
   spec would push the message over is sent first in the next one (every
   spec fits alone: submit refuses bigger ones).
   Tasks of a job at its --max-running are parked instead (at most
   PARKS_PER_DISPATCH a call); a retry that failed on w waits for the
   next worker's turn when another can take it now (s_better_elsewhere). */
static void s_dispatch_to(tasks_t *self, worker_t *w, int64_t now, int credit,
                          const sched_class_t *only)
{
    int parks = 0;
    /* What `ztask tasks` shows as its start until the worker reports one. */
    double wall = clock_wall();
    /* Retries left for another worker: back in the queue at the end. */
    sched_task_t *later[DISPATCH_BATCH];
    int nlater = 0;
    int64_t ids[DISPATCH_BATCH], jobs[DISPATCH_BATCH];
    int attempts[DISPATCH_BATCH];
    char *specs[DISPATCH_BATCH], *grants[DISPATCH_BATCH];
    /* Each task's claim token for w's key (claim.h), with CURVE. */
    char claims[DISPATCH_BATCH][CLAIM_TOKEN_LEN + 1];
    const char *claimp[DISPATCH_BATCH];
    bool claiming = self->cfg.claims && w->key[0];
    sched_task_t *tasks[DISPATCH_BATCH];
    accept_t acc = {.w = w, .only = only};
    sched_task_t *carry = NULL;   /* popped and assigned, for the next message */
    char *carry_spec = NULL;
    while (credit > 0) {
        int n = 0;
        size_t bytes = PROTO_PIPE_ENVELOPE;
        bool full = false, granted = false;
        while (n < credit && n < DISPATCH_BATCH) {
            sched_task_t *t;
            char *spec;
            if (carry) {
                t = carry;
                spec = carry_spec;
                carry = NULL;
                carry_spec = NULL;
            } else {
                /* One suspect per worker at a time (w->suspects counts the
                   one just taken too): see s_worker_lost; none to a worker
                   reserved for a big task. */
                t = sched_pop(self->sched, now, s_accepts, &acc, w->suspects == 0 && !only);
                if (!t)
                    break;
                job_t *job = jobs_get(self->jobs, t->job);
                if (job_at_limit(job)) {
                    sched_park(self->sched, t, SCHED_PARK_CAPPED);
                    job_capped_push(job, t->id);
                    if (++parks >= PARKS_PER_DISPATCH)
                        break;
                    continue;
                }
                if (!journal_written(self->journal, t->requeue_mark)) {
                    /* A retry due before its requeue is written (s_requeue:
                       a slow or failing disk): it waits parked for it. */
                    s_park_for_commit(self, t);
                    if (++parks >= PARKS_PER_DISPATCH)
                        break;
                    continue;
                }
                if (nlater < DISPATCH_BATCH && s_better_elsewhere(self, w, t)) {
                    later[nlater++] = t;
                    continue;
                }
                if (!t->spec && !journal_idle(self->journal)) {
                    /* Its spec is only in the store, which the writer has:
                       reading it now would block the loop for up to a
                       commit. It goes back, and dispatch waits for that
                       commit, after which tasks_read_ahead reads it and
                       the ones after it. */
                    sched_requeue(self->sched, t, 0);
                    self->ahead_wanted = t->id;
                    break;
                }
                if (t->attempt >= PROTO_MAX_ATTEMPT) {
                    /* Recalls resend with no retry charged: only this
                       bounds them (a next number would wrap). */
                    char why[160];
                    tasks_attempts_exhausted(t->attempt, why, sizeof why);
                    log_warn("event=attempts_exhausted task=%" PRId64 " attempt=%d", t->id,
                             t->attempt);
                    s_finish(self, t, PROTO_ST_FAILED, NULL, why);
                    continue;
                }
                spec = s_take_spec(self, t);
                if (!spec) {
                    log_error("event=spec_missing task=%" PRId64 " error=\"%s\"", t->id,
                              store_error(journal_store(self->journal)));
                    s_finish(self, t, PROTO_ST_FAILED, NULL, "the master lost this task's spec");
                    continue;
                }
                s_move(self, t, PROTO_ST_ASSIGNED, w);
                /* One wait per execution (s_take_back_unrun). */
                if (!t->wait_counted)
                    metrics_queue_wait(self->cfg.metrics, s_kind(self, t),
                                       (double) (now - t->ready_ms) / 1000.0);
                t->deadline = now + self->cfg.lease_ms;
                t->started = wall;
                if (!t->failed) {   /* where a retry failed stays avoided */
                    free(t->failed_on);
                    t->failed_on = NULL;
                }
                t->given_back = false;
                t->wait_counted = false;
                journal_assigned(self->journal, t->id, t->attempt, w->key, now);
            }
            char *grant = s_grant_text(self, w, t);
            size_t add = strlen(spec) + PROTO_PIPE_TASK_OVERHEAD + (grant ? strlen(grant) + 1 : 0)
                         + (claiming ? CLAIM_TOKEN_LEN + sizeof ",\"claim\":\"\"" : 0);
            if (n > 0 && bytes + add > (size_t) PROTO_MAX_PIPE_MSG) {
                free(grant);
                carry = t;
                carry_spec = spec;
                full = true;
                break;
            }
            bytes += add;
            grants[n] = grant;
            granted |= grant != NULL;
            ids[n] = t->id;
            jobs[n] = t->job;
            attempts[n] = t->attempt;
            specs[n] = spec;
            tasks[n] = t;
            claimp[n] = NULL;
            if (claiming) {
                claim_token(self->cfg.claims, t->id, t->attempt, w->key, claims[n]);
                claimp[n] = claims[n];
            }
            n++;
        }
        if (!n)
            break;
        assert(bytes <= (size_t) PROTO_MAX_PIPE_MSG);
        bool dry = n < credit && n < DISPATCH_BATCH && !full;
        if (self->ahead_wanted > 0 && !carry)
            dry = true;   /* specs to read first (tasks_read_ahead); a carried
                             task has its spec and goes in the next message */
        int64_t seq = self->pipe_seq + 1;
        char *msg = proto_pipe_encode_tasks_out(
            &(proto_tasks_out_t){.n = n,
                                 .ids = ids,
                                 .attempts = attempts,
                                 .jobs = jobs,
                                 .specs = (const char *const *) specs,
                                 .grants = granted ? (const char *const *) grants : NULL,
                                 .claims = claiming ? claimp : NULL,
                                 .seq = seq});
        int rc = zmqx_send(w->pipe, msg, strlen(msg), ZMQ_DONTWAIT);
        if (rc == 0)
            s_sent_seq(self, w, seq);
        free(msg);
        for (int i = 0; i < n; i++) {
            free(specs[i]);
            free(grants[i]);
        }
        if (rc != 0) {
            /* The pipe refused (peer gone): take them back at once. */
            w->pipe_ready = false;
            for (int i = 0; i < n; i++)
                s_take_back_unrun(self, tasks[i], "pipe_refused");
            break;
        }
        credit -= n;
        if (dry)
            break;
    }
    if (carry) {
        /* Not sent: the pipe refused (a carry leaves credit for itself
           and never ends the loop dry). */
        free(carry_spec);
        s_take_back_unrun(self, carry, "not_sent");
    }
    /* Back in the queue, ready now: the next worker's turn takes them. */
    for (int i = 0; i < nlater; i++)
        sched_requeue(self->sched, later[i], 0);
}

/* Tasks sent beyond a worker's free threads. Prefetch hides the round trip
   of tiny tasks, but a prefetched task waits in that worker's queue:
   behind long tasks it would wait while another worker idles, unless it
   is taken back (a recall, s_recall: what an idle worker could run is
   asked back from the worker that holds it unstarted). So in auto mode a
   worker gets about PREFETCH_QUEUE_MS of its recent tasks per thread
   queued (rounded): none for tasks of PREFETCH_LONG_MS or more, about 2
   per thread for tasks of 16-20 ms, 3 for 10 ms, 6 for 5 ms, and up to
   PREFETCH_PER_THREAD per thread (PREFETCH_MAX in all) for tiny ones,
   whose refills (at half, in one message) then carry ~100 tasks.
   Measured on fn noop, 2 workers x 4 threads: 64 queued per worker gave
   92,000 tasks/s, 256 gave 104,000 (fewer, bigger messages on both
   sides). 32 ms, not 8: with 8, on a busy 2-core host, the pool threads
   running `exec true` (2-3 ms a command) still waited 3.5-4% of the time
   for a refill (a result's report, a master wakeup and a pipe message,
   each hop waiting for the CPU: 10-20 ms), about nothing with 32
   (docs/performance.md, "The exec path, fourth pass"). It was held back
   until the recall existed: without it, a job whose tasks turned long
   part way left most of them queued on one worker while another idled
   (issue 14, item 6; tests/e2e/test_balance.c). */
#define PREFETCH_QUEUE_MS 32.0
#define PREFETCH_PER_THREAD 64
#define PREFETCH_MAX 256
#define PREFETCH_LONG_MS 20.0

static int s_prefetch(const tasks_t *self, const worker_t *w)
{
    if (self->cfg.prefetch >= 0)
        return self->cfg.prefetch;
    if (w->samples < w->threads || w->task_ms >= PREFETCH_LONG_MS)
        return 0;
    double per = w->task_ms > 0 ? PREFETCH_QUEUE_MS / w->task_ms : PREFETCH_PER_THREAD;
    if (per < 1)
        per = 1;
    if (per > PREFETCH_PER_THREAD)
        per = PREFETCH_PER_THREAD;
    double extra = per * w->threads + 0.5;
    return extra > PREFETCH_MAX ? PREFETCH_MAX : (int) extra;
}

/* Big tasks are not starved by small ones (docs/architecture.md, "What
   fits where"): tasks asking resources are placed wherever they fit now,
   so small ones fill the gaps a big one leaves (backfill). When the
   oldest ready task asking resources (highest priority, then lowest id)
   has fitted on no live worker for RESERVE_AFTER_MS although one could
   hold it, a worker is reserved for it: the one closest to fitting it
   (res_shortfall), which from then on gets no other task until that one
   fits there. Its tasks end, nothing new arrives, so it fits within the
   time its longest task takes. One reservation at a time: the rest keep
   backfilling. */
#define RESERVE_AFTER_MS 1000

/* The oldest ready task asking resources, and its class; NULL when none. */
static sched_task_t *s_oldest_requesting(tasks_t *self, int *cls_out)
{
    sched_task_t *best = NULL;
    for (int c = 0; c < sched_nclasses(self->sched); c++) {
        if (!sched_class_get(self->sched, c)->req)
            continue;
        sched_task_t *t = sched_class_peek(self->sched, c);
        if (t && (!best || t->priority > best->priority
                  || (t->priority == best->priority && t->id < best->id))) {
            best = t;
            *cls_out = c;
        }
    }
    return best;
}

static void s_unreserve(tasks_t *self)
{
    self->reserve_task = 0;
    free(self->reserve_worker);
    self->reserve_worker = NULL;
}

/* Keeps the reservation up to date; returns the worker reserved and sets
   *only to the class it may take (NULL, NULL when none). */
static worker_t *s_reserve(tasks_t *self, int64_t now, const sched_class_t **only)
{
    *only = NULL;
    if (self->reserve_task) {
        sched_task_t *t = sched_get(self->sched, self->reserve_task);
        worker_t *w = registry_find(self->registry, self->reserve_worker);
        if (t && t->state == PROTO_ST_QUEUED && !t->parked && w && w->alive && !w->draining) {
            *only = sched_class_get(self->sched, t->cls);
            return w;
        }
        log_info("event=reservation_ended task=%" PRId64 " worker=%s placed=%d",
                 self->reserve_task, self->reserve_worker, t && t->state != PROTO_ST_QUEUED);
        s_unreserve(self);
    }
    int cls = -1;
    sched_task_t *h = s_oldest_requesting(self, &cls);
    if (!h) {
        self->blocked_task = self->blocked_since = 0;
        return NULL;
    }
    const sched_class_t *c = sched_class_get(self->sched, cls);
    /* The live workers that could take it; res_reserve_pick says whether
       one has room now (no reservation) or which is closest to it. */
    size_t count = registry_count(self->registry), pos = 0;
    int n = 0;
    worker_t **ws = xmalloc((count + 1) * sizeof *ws), *w;
    const res_pool_t **pools = xmalloc((count + 1) * sizeof *pools);
    while ((w = registry_next(self->registry, &pos)))
        if (w->alive && !w->draining && s_could_take(c, w)) {
            ws[n] = w;
            pools[n++] = &w->pool;
        }
    int k = res_reserve_pick(pools, n, c->req);
    worker_t *pick = k >= 0 ? ws[k] : NULL;
    free(ws);
    free(pools);
    if (!pick) {
        /* It fits somewhere now (dispatch places it), or nowhere ever
           (unrunnable: s_check_stuck says so). */
        self->blocked_task = self->blocked_since = 0;
        return NULL;
    }
    if (self->blocked_task != h->id) {
        self->blocked_task = h->id;
        self->blocked_since = now;
    }
    if (now - self->blocked_since < RESERVE_AFTER_MS)
        return NULL;
    self->reserve_task = h->id;
    self->reserve_worker = xstrdup(pick->id);
    log_info("event=reserved task=%" PRId64 " needs=\"%s\" worker=%s waited_ms=%" PRId64,
             h->id, c->key, pick->id, now - self->blocked_since);
    *only = c;
    return pick;
}

/* ---- recall: taking unstarted tasks back from a busy worker ---- */

/* Prefetched tasks wait in their worker's queue; when a job's tasks turn
   long part way, those would wait behind long ones while another worker
   idles. So a worker with a free thread and nothing in the queue it can
   take asks a worker holding tasks beyond its threads to give back the
   ones it has not started (a "recall", docs/protocol.md section 8): the
   most recently sent first, as many as the idle worker has free threads,
   at most RECALL_MAX. The holder answers "recalled" with exactly those it
   took off its queue (it never starts them), and they are queued again
   as never sent (s_on_recalled). One recall is out to a worker at a time,
   until its answer or a lease (a lost answer leaves those tasks with
   their holder: it runs them, or their lease requeues them). Only workers
   whose hello said "recall": an older one would log the message as
   unknown. */
#define RECALL_MAX 64
/* How long a recall that found nothing waits before it is tried again:
   after an empty answer, the holder is not asked again before then
   (about when it reports the starts that made it empty: it reports a
   start once a task has run 20 ms); an idle worker no holder had anything
   for is not looked for again before then (s_recall). */
#define RECALL_EMPTY_WAIT_MS 25

/* Whether t, on its holder, may be asked back for idle: sent but not
   reported started, not being cancelled, not a suspect (one per worker,
   see s_worker_lost), of a kind idle can take now, and not a retry that
   failed on idle (its holder is one that can take it: the rule of
   s_better_elsewhere). */
static bool s_recallable(tasks_t *self, const sched_task_t *t, const worker_t *idle)
{
    return t->state == PROTO_ST_ASSIGNED && !t->cancel_requested && !t->suspect && !t->orphan
           && !t->awaiting && !(t->failed && t->failed_on && strcmp(t->failed_on, idle->id) == 0)
           && s_takes_now(sched_class_get(self->sched, t->cls), idle);
}

/* Asks h for up to want of its unstarted tasks that idle can take;
   returns how many it asked for (0: none of them, nothing sent). */
static int s_recall_from(tasks_t *self, worker_t *h, const worker_t *idle, int want, int64_t now)
{
    if (want > h->inflight - h->threads)
        want = h->inflight - h->threads;
    if (want > RECALL_MAX)
        want = RECALL_MAX;
    if (want <= 0)
        return 0;
    proto_pipe_t *msg = proto_pipe_new(PROTO_PIPE_RECALL);
    msg->refs = xcalloc((size_t) want, sizeof *msg->refs);
    sched_task_t *asked[RECALL_MAX];
    /* w->tasks is newest first: the tasks that would wait longest. */
    for (sched_task_t *t = h->tasks; t && msg->nrefs < want; t = t->wnext)
        if (s_recallable(self, t, idle)) {
            asked[msg->nrefs] = t;
            msg->refs[msg->nrefs++] = (proto_task_ref_t){.task = t->id, .attempt = t->attempt};
        }
    int n = msg->nrefs;
    if (n > 0) {
        char *text = proto_pipe_encode(msg);
        if (text && zmqx_send(h->pipe, text, strlen(text), ZMQ_DONTWAIT) == 0) {
            for (int i = 0; i < n; i++)
                asked[i]->recalling = true;
            h->recall_until = now + self->cfg.lease_ms;
            h->recall_asked = n;
            free(h->recall_for);
            h->recall_for = xstrdup(idle->id);
            log_debug("event=recall_sent worker=%s for=%s asked=%d", LOG_V(h->id),
                      LOG_V(idle->id), n);
        } else {
            n = 0;
        }
        free(text);
    }
    proto_pipe_destroy(&msg);
    return n;
}

/* Whether w could run a task now and has nothing to run it on: a free
   thread after dispatch had its turn. */
static bool s_idle(const worker_t *w)
{
    return w->alive && !w->draining && w->pipe && w->pipe_ready && w->inflight < w->threads;
}

/* Whether h may be asked for tasks back now. */
static bool s_holds_extra(const worker_t *h, int64_t now)
{
    return h->alive && h->recall && h->pipe && h->pipe_ready && h->inflight > h->threads
           && (h->recall_until == 0 || now >= h->recall_until);
}

/* How many tasks the recalls still out ask back for idle: they count
   against its free threads, or every turn until the first answer would
   ask another holder for the same threads (and what came back beyond
   them would be queued again, each sent once more). A holder lost
   meanwhile answers nothing: its tasks are queued already. */
static int s_recalling_for(tasks_t *self, const worker_t *idle, int64_t now)
{
    int n = 0;
    size_t pos = 0;
    worker_t *h;
    while ((h = registry_next(self->registry, &pos)))
        if (h->alive && h->recall_for && now < h->recall_until
            && strcmp(h->recall_for, idle->id) == 0)
            n += h->recall_asked;
    return n;
}

/* After a dispatch: every idle worker's free threads are offered the
   unstarted tasks of the workers holding more than they run. */
static void s_recall(tasks_t *self, int64_t now)
{
    /* Cheap when nobody holds extra tasks (most turns): one pass. */
    size_t pos = 0;
    worker_t *idle, *any = NULL;
    while (!any && (idle = registry_next(self->registry, &pos)))
        if (s_holds_extra(idle, now))
            any = idle;
    if (!any)
        return;
    /* Tasks taken back that wait for their requeue's commit (a given-back
       one among them) go out within a commit to the free threads there
       are: as many free threads are not asked for meanwhile, or what they
       take would be recalled twice over. Whatever their kind: an upper
       bound, and only as many as are held (not every recall stops while
       one is). */
    size_t coming = sched_parked(self->sched).commit;
    pos = 0;
    while ((idle = registry_next(self->registry, &pos))) {
        /* A worker kept for a big task takes nothing else (s_reserve). */
        if (!s_idle(idle)
            || (self->reserve_worker && strcmp(self->reserve_worker, idle->id) == 0))
            continue;
        if (now < idle->recall_idle_until)
            continue;
        int want = idle->threads - idle->inflight - s_recalling_for(self, idle, now);
        if (want > 0 && coming > 0) {
            int covered = coming < (size_t) want ? (int) coming : want;
            coming -= (size_t) covered;
            want -= covered;
        }
        int asked = 0;
        size_t hpos = 0;
        worker_t *h;
        while (want - asked > 0 && (h = registry_next(self->registry, &hpos)))
            if (h != idle && s_holds_extra(h, now))
                asked += s_recall_from(self, h, idle, want - asked, now);
        /* Nothing any holder has is for it (its labels, resources, or
           every task started): the walk of every holder's tasks is not
           made again each turn of the loop, which with many holders of
           deep queues and a worker that can take none of it would cost
           the loop most of its time, but once per RECALL_EMPTY_WAIT_MS. */
        if (want > 0 && asked == 0)
            idle->recall_idle_until = now + RECALL_EMPTY_WAIT_MS;
    }
}

void tasks_dispatch(tasks_t *self, int64_t now)
{
    /* Called after every step that may complete a commit (master.c). */
    tasks_requeues_written(self);
    if (self->commit_hurry_at
        && (now >= self->commit_hurry_at || journal_written(self->journal, self->commit_hurry_mark))) {
        /* A retry's backoff ends soon, its requeue not written (s_requeue). */
        if (!journal_written(self->journal, self->commit_hurry_mark))
            journal_commit_soon(self->journal);
        self->commit_hurry_at = 0;
    }
    if (self->rejoin_until && now >= self->rejoin_until)
        s_rejoin_window_over(self);
    size_t count = registry_count(self->registry);
    if (!count)
        return;
    if (!sched_size(self->sched)) {
        s_recall(self, now);
        return;
    }
    if (self->ahead_wanted > 0) {
        if (!journal_idle(self->journal))
            return;
        tasks_read_ahead(self);
    }
    const sched_class_t *only = NULL;
    worker_t *reserved = s_reserve(self, now, &only);
    /* Start from a different worker each round so scarce tasks spread. */
    size_t start = self->rr++ % count;
    for (size_t k = 0; k < count; k++) {
        size_t pos = (start + k) % count;
        worker_t *w = registry_next(self->registry, &pos);
        int credit = w ? s_credit(self, w) : 0;
        if (credit <= 0 || !s_pipe_ready(w, now))
            continue;
        s_dispatch_to(self, w, now, credit, w == reserved ? only : NULL);
        if (self->ahead_wanted > 0)
            return;
    }
    s_recall(self, now);
}

/* ---- reports ---- */

/* The text to store for a result, handed to the journal: as the worker
   sent it when the decoder kept it (no encode per result), else encoded. */
static char *s_outcome(proto_result_t *res)
{
    char *text = res->text;
    res->text = NULL;
    res->claim[0] = '\0';   /* a worker's proof, not part of the outcome (text has none) */
    return text ? text : proto_result_encode(res);
}

/* A report that does not count, from a worker that does not hold the task
   it names (error says why: s_refusal): one line, rate-limited (a worker
   key can send these at will). */
static void s_refuse(tasks_t *self, const char *what, const char *name, const char *key,
                     const sched_task_t *t, int64_t task, int attempt, const char *error,
                     int64_t now)
{
    self->refused++;
    int64_t held;
    if (!log_limit(&self->lim_report, now, &held))
        return;
    char q[128], h[128];
    log_warn("event=report_refused type=%s task=%" PRId64 " attempt=%d worker=\"%s\" key=%s "
             "holder=\"%s\" holder_attempt=%d error=\"%s\" suppressed=%" PRId64,
             what, task, attempt, log_quote(q, sizeof q, name), key && *key ? key : "-",
             log_quote(h, sizeof h, t && t->worker_name ? t->worker_name : ""),
             t ? t->attempt : 0, error, held);
}

/* A result for an attempt that is over (or a task that has ended): kept
   as a duplicate with its task's record when it comes from the worker
   that was sent that attempt. With CURVE that is what the attempt's claim
   token for the key the result came with proves (claim.h): nothing in
   memory says which key held an attempt before the current one, and
   without the proof any worker key could add counted duplicate rows (and
   raise ztask_duplicate_results_total) for any task by naming an attempt
   at or below its current one. Anything else is refused (one line,
   rate-limited) and dropped. Without CURVE there are no keys: counted by
   name, as every report is. t: the task in memory, NULL once ended. */
static void s_duplicate(tasks_t *self, const sched_task_t *t, const char *name, const char *key,
                        proto_result_t *res, int64_t now)
{
    if (self->cfg.claims
        && !claim_valid(self->cfg.claims, res->task, res->attempt, key, res->claim)) {
        s_refuse(self, "result", name, key, t, res->task, res->attempt,
                 "no valid claim token for this attempt: only the worker key it was sent to "
                 "may report it again",
                 now);
        return;
    }
    self->duplicates++;
    metrics_duplicate(self->cfg.metrics);
    int64_t held;
    if (log_limit(&self->lim_dup, now, &held))
        log_info("event=duplicate_result task=%" PRId64 " attempt=%d worker=%s suppressed=%" PRId64,
                 res->task, res->attempt, LOG_V(name), held);
    journal_add(self->journal, &(jop_t){.type = J_DUP,
                                        .task = res->task,
                                        .attempt = res->attempt,
                                        .worker = name,
                                        .outcome = s_outcome(res),
                                        .t = clock_wall()});
}

static size_t s_result_bytes(const proto_result_t *res)
{
    const char *parts[] = {res->stdout_data, res->stderr_data, res->result_json, res->error,
                           res->text};
    size_t n = sizeof *res;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        n += parts[i] ? strlen(parts[i]) : 0;
    return n;
}

/* A result from a worker the master does not know yet, for a task that
   waits for a claim: after a master restart, results a worker finished
   while the master was away arrive before its hello. Neither trusted (the
   hello ties the name to the key) nor thrown away (the task ran): kept
   until that worker registers with the key it came with (tasks_claim
   judges it then) or the recovery grace ends (a duplicate then). A queued
   task it names waits for that worker meanwhile, not sent to another.
   Takes *resp when it keeps it; false when full. */
static bool s_park(tasks_t *self, sched_task_t *t, const char *name, const char *key,
                   proto_result_t **resp, int64_t now)
{
    proto_result_t *res = *resp;
    size_t bytes = s_result_bytes(res);
    if (self->nparked >= PARKED_MAX || self->parked_bytes + bytes > PARKED_BYTES)
        return false;
    if (!t->orphan) {
        /* Sent as attempt+1 just before the restart: wait for the worker
           that says it ran it, as an orphan of that attempt. */
        sched_claim(self->sched, t);
        free(t->worker_name);
        t->worker_name = xstrdup(name);
        t->attempt = res->attempt;
        s_move(self, t, PROTO_ST_ASSIGNED, NULL);
        t->deadline = now + self->cfg.recovery_grace_ms;
        /* Its token proved this key (s_sender): it waits for that key,
           as an orphan stored with one does. */
        if (key && *key)
            imap_put(self->orphan_keys, t->id, xstrdup(key));
    }
    if (self->nparked == self->parked_cap) {
        self->parked_cap = self->parked_cap ? 2 * self->parked_cap : 64;
        self->parked = xrealloc(self->parked, self->parked_cap * sizeof *self->parked);
    }
    parked_t *p = &self->parked[self->nparked++];
    *p = (parked_t){.worker = xstrdup(name),
                    .res = res,
                    .bytes = bytes,
                    .until = now + self->cfg.recovery_grace_ms};
    snprintf(p->key, sizeof p->key, "%s", key ? key : "");
    self->parked_bytes += bytes;
    *resp = NULL;
    int64_t held;
    char q[128];
    if (log_limit(&self->lim_dup, now, &held))
        log_info("event=result_kept task=%" PRId64 " attempt=%d worker=\"%s\" key=%s "
                 "note=\"until that worker registers with this key\" suppressed=%" PRId64,
                 res->task, res->attempt, log_quote(q, sizeof q, name), key && *key ? key : "-",
                 held);
    return true;
}

/* The one parked result i out of the list (the caller owns what it returns). */
static parked_t s_unpark(tasks_t *self, size_t i)
{
    parked_t p = self->parked[i];
    self->parked[i] = self->parked[--self->nparked];
    self->parked_bytes -= p.bytes;
    return p;
}

/* Records the run time of a result from the task's holder, for prefetch. */
static void s_sample(worker_t *w, const proto_result_t *res)
{
    if (res->started <= 0 || res->finished < res->started)
        return;
    double ms = (res->finished - res->started) * 1000.0;
    /* One sample moves the average at most as far as 4x itself + 1 ms:
       a noop preempted for 30 ms on a crowded machine (64 workers on
       2 cores) is not a long task, and taking it as one cut that
       worker's prefetch from its full to none and back, hundreds of
       times a second across workers (unfair dispatch). A run of long
       tasks still passes 4 ms within 6 results and 20 ms within 9. */
    double cap = 4.0 * w->task_ms + 1.0;
    if (w->samples && ms > cap)
        ms = cap;
    w->task_ms = w->samples ? 0.8 * w->task_ms + 0.2 * ms : ms;
    w->samples++;
}

/* A result that counts came without (some of) its output: the report
   that carried it held more than the master takes from one (the result
   is kept, failed with an error saying why: proto_result.c). */
static void s_output_dropped(tasks_t *self, const char *name, const proto_result_t *res,
                             int64_t now)
{
    int64_t held;
    if (!log_limit(&self->lim_report, now, &held))
        return;
    char q[128];
    log_warn("event=result_output_dropped task=%" PRId64 " attempt=%d worker=\"%s\" limit=%d "
             "error=\"the report held more output than the master takes from one report: "
             "upgrade the worker\" suppressed=%" PRId64,
             res->task, res->attempt, log_quote(q, sizeof q, name), PROTO_MAX_REPORT_MSG, held);
}

/* One result, from the worker named name (w: its record, NULL when none;
   key: the key it came with, NULL without CURVE). *resp is taken when it
   is kept for later (s_park). */
static void s_on_result(tasks_t *self, worker_t *w, const char *name, const char *key,
                        proto_result_t **resp, int64_t now)
{
    proto_result_t *res = *resp;
    sched_task_t *t = sched_get(self->sched, res->task);
    if (!t) {
        bool found = false;
        if (store_task_get(journal_store(self->journal), res->task, NULL, NULL, &found) != 0)
            found = false;
        if (found) {
            s_duplicate(self, NULL, name, key, res, now);
            return;
        }
        char q[128];
        int64_t held;
        if (log_limit(&self->lim_report, now, &held))
            log_warn("event=result_unknown_task task=%" PRId64 " worker=\"%s\" suppressed=%" PRId64,
                     res->task, log_quote(q, sizeof q, name), held);
        return;
    }
    sender_t who = s_sender(self, t, w, name, key, res->attempt, res->claim);
    switch (who) {
    case S_CLAIMABLE:
        s_claim(self, t, w, NULL);   /* it has ended: its devices are free */
        break;
    case S_HOLDER:
        break;
    case S_LAST_HOLDER:
        /* Only a success ends it: a failure (the worker stopping, say) is
           what the run that comes next is for. */
        if (res->status != PROTO_ST_DONE) {
            s_duplicate(self, t, name, key, res, now);
            return;
        }
        log_info("event=result_after_takeback task=%" PRId64 " attempt=%d worker=%s", t->id,
                 t->attempt, LOG_V(w->id));
        sched_claim(self->sched, t);
        w->done++;
        s_finish(self, t, PROTO_ST_DONE, s_outcome(res), NULL);
        return;
    case S_EARLY:
        if (!s_park(self, t, name, key, resp, now))
            s_refuse(self, "result", name, key, t, res->task, res->attempt, s_refusal(who), now);
        return;
    case S_STALE:
        s_duplicate(self, t, name, key, res, now);
        return;
    case S_REFUSED:
    case S_UNPROVEN:
        s_refuse(self, "result", name, key, t, res->task, res->attempt, s_refusal(who), now);
        return;
    }
    assert(t->worker == w && t->attempt == res->attempt);
    /* Said here, for a result that counts, and not where the report is
       read: a duplicate (or refused, or parked) result whose output was
       dropped changes nothing, and a warning for it would send the
       operator after a task that is fine. */
    if (res->output_dropped)
        s_output_dropped(self, name, res, now);
    s_sample(w, res);
    if (res->started > 0 && res->finished >= res->started)
        metrics_run_time(self->cfg.metrics, s_kind(self, t), res->finished - res->started);
    /* At the last attempt number there is no next one to run as: a retry
       would only fail at dispatch (attempts_exhausted), its error in place
       of this attempt's. */
    if (res->status == PROTO_ST_FAILED && !t->cancel_requested && t->retries_left > 0
        && t->attempt < PROTO_MAX_ATTEMPT) {
        t->retries_left--;
        metrics_retried(self->cfg.metrics);
        int64_t backoff = (int64_t) self->cfg.retry_backoff_ms << (t->attempt > 7 ? 7 : t->attempt - 1);
        if (backoff > MAX_BACKOFF_MS)
            backoff = MAX_BACKOFF_MS;
        char q[256];
        log_info("event=retry task=%" PRId64 " attempt=%d backoff_ms=%" PRId64 " error=\"%s\"", t->id,
                 t->attempt, backoff, log_quote(q, sizeof q, res->error));
        /* Its worker reported this attempt: no later result of it counts.
           Where it failed is remembered apart (s_better_elsewhere). */
        free(t->failed_on);
        t->failed_on = t->worker_name;
        t->failed = true;
        t->worker_name = NULL;
        s_requeue(self, t, now + backoff);
        return;
    }
    proto_state_t st = res->status;
    if (t->cancel_requested && st != PROTO_ST_DONE)
        st = PROTO_ST_CANCELLED;
    if (st != PROTO_ST_DONE && st != PROTO_ST_FAILED && st != PROTO_ST_CANCELLED)
        st = PROTO_ST_FAILED;
    bool timed_out = st == PROTO_ST_FAILED && res->timed_out;
    s_finish_as(self, t, st, s_outcome(res), NULL,
                st == PROTO_ST_DONE        ? M_OUT_DONE
                : st == PROTO_ST_CANCELLED ? M_OUT_CANCELLED
                : timed_out                ? M_OUT_TIMEOUT
                                           : M_OUT_FAILED);
}

/* Judges w's parked results (it has just registered and claimed what its
   hello listed): those that came with its key, as if they came now. */
static void s_judge_parked(tasks_t *self, worker_t *w, int64_t now)
{
    for (size_t i = 0; i < self->nparked;) {
        const parked_t *at = &self->parked[i];
        if (strcmp(at->worker, w->id) != 0 || strcmp(at->key, w->key) != 0) {
            i++;
            continue;
        }
        parked_t p = s_unpark(self, i);
        s_on_result(self, w, p.worker, p.key, &p.res, now);
        free(p.worker);
        proto_result_destroy(&p.res);
    }
}

/* Parked results whose worker did not register within the grace: the
   task ran again (or will), these are duplicates. */
static void s_expire_parked(tasks_t *self, int64_t now)
{
    for (size_t i = 0; i < self->nparked;) {
        if (now <= self->parked[i].until) {
            i++;
            continue;
        }
        parked_t p = s_unpark(self, i);
        log_info("event=kept_result_expired task=%" PRId64 " attempt=%d worker=%s note=\"no "
                 "worker registered under this name with this key within --recovery-grace\"",
                 p.res->task, p.res->attempt, LOG_V(p.worker));
        s_duplicate(self, sched_get(self->sched, p.res->task), p.worker, p.key, p.res, now);
        free(p.worker);
        proto_result_destroy(&p.res);
    }
}

static void s_append_output(sched_task_t *t, int stream, const char *data)
{
    int i = stream == 2 ? 1 : 0;
    size_t n = strlen(data);
    if (!t->output)
        t->output = xcalloc(1, sizeof *t->output);
    sched_output_t *o = t->output;
    /* Live output is for watching; the full (capped) output arrives with the
       result. Past the cap, keep nothing more in memory. */
    if (o->len[i] + n > PROTO_DEFAULT_OUTPUT_CAP)
        return;
    o->data[i] = xrealloc(o->data[i], o->len[i] + n + 1);
    memcpy(o->data[i] + o->len[i], data, n + 1);
    o->len[i] += n;
}

/* h's answer to a recall: the attempts it took off its queue, which it
   will never start. Each goes back to the queue as if never sent: no
   retry and no crash is charged (it did not run), and its next send is
   attempt + 1 like every resend (10.4). h does not count as its last
   holder (nothing of it will come), and it is not sent back to h while
   another worker can take it now (failed_on, s_better_elsewhere); a
   retry keeps avoiding the worker it failed on instead. An attempt h
   does not hold is refused like any report about it. */
static void s_on_recalled(tasks_t *self, worker_t *w, const proto_report_t *rep, const char *key,
                          int64_t now)
{
    int back = 0;
    for (int i = 0; i < rep->nrecalled; i++) {
        const proto_task_ref_t *ref = &rep->recalled[i];
        sched_task_t *t = sched_get(self->sched, ref->task);
        sender_t who = t ? s_sender(self, t, w, rep->worker, key, ref->attempt, NULL) : S_REFUSED;
        if (who == S_HOLDER && (!t->recalling || t->state != PROTO_ST_ASSIGNED)) {
            /* Its own task, but not asked back, or reported started:
               taking it would run it twice if the worker runs it. */
            s_refuse(self, "recalled", rep->worker, key, t, ref->task, ref->attempt,
                     t->recalling ? "this attempt was reported started: it stays with its worker"
                                  : "this attempt was not asked back: it stays with its worker",
                     now);
            continue;
        }
        if (who != S_HOLDER) {
            if (who == S_REFUSED)
                s_refuse(self, "recalled", rep->worker, key, t, ref->task, ref->attempt,
                         s_refusal(who), now);
            continue;
        }
        /* A retry keeps the worker it failed on to avoid (h, with a
           free thread, may have it again); any other avoids h. */
        if (t->failed) {
            free(t->worker_name);
        } else {
            free(t->failed_on);
            t->failed_on = t->worker_name;
        }
        t->worker_name = NULL;
        t->given_back = true;
        s_take_back_unrun(self, t, "recalled");
        back++;
    }
    if (back)
        metrics_recalled(self->cfg.metrics, back);
    if (!w)
        return;
    free(w->recall_for);   /* its asks no longer count against the idle worker */
    w->recall_for = NULL;
    /* Nothing given back: what it holds beyond its threads has started
       (not reported yet: START_REPORT_MS in worker/session.c) or ended
       (its result held back briefly): asking again at once would ask for
       the same ones. */
    if (w->alive)
        w->recall_until = back ? 0 : now + RECALL_EMPTY_WAIT_MS;
    if (back)
        log_info("event=tasks_recalled worker=%s asked=%d returned=%d refused=%d", LOG_V(w->id),
                 w->recall_asked, back, rep->nrecalled - back);
    else
        log_debug("event=tasks_recalled worker=%s asked=%d returned=0 refused=%d", LOG_V(w->id),
                  w->recall_asked, rep->nrecalled);
}

/* w's answer to its hello reply's resend: attempts it neither holds nor
   keeps a result of (it ended them, their results went to a master that
   died, too big to keep). Without it such an attempt, claimed from a
   hello made before it ended (the hello waited in its socket for this
   master), stays running here until a heartbeat comparison finds it
   missing, if ever: a claimed, started task has no lease, and w's
   heartbeats are compared with what we hold only once it has read a
   "tasks" message sent since its hello (s_compare_heartbeat), which a
   worker we send nothing never does. This answer is made after the
   reply, so after the claim, and comes behind every result the
   worker sent before (one socket, in order): what it names has no
   result coming, and runs again at once (attempt + 1, no crash charged:
   the worker did not fail it). Counts only for the attempt w holds; any
   other changes nothing. */
static void s_on_lost(tasks_t *self, worker_t *w, const proto_report_t *rep, const char *key,
                      int64_t now)
{
    for (int i = 0; i < rep->nlost; i++) {
        const proto_task_ref_t *ref = &rep->lost[i];
        sched_task_t *t = sched_get(self->sched, ref->task);
        /* Gone: finished, most likely by the result that came first
           (this answer follows it), as it should. */
        if (!t)
            continue;
        sender_t who = s_sender(self, t, w, rep->worker, key, ref->attempt, NULL);
        if (who == S_REFUSED)
            s_refuse(self, "lost", rep->worker, key, t, ref->task, ref->attempt,
                     s_refusal(who), now);
        if (who != S_HOLDER)
            continue;   /* ended, or taken back already: nothing to do */
        log_info("event=result_lost task=%" PRId64 " attempt=%d worker=%s note=\"it ended there, "
                 "its result went to a master that died: it runs again\"",
                 t->id, t->attempt, LOG_V(w->id));
        /* w stays its last holder: a result that comes after all (one
           that waited in a socket w has closed) still ends it until it
           goes out again (s_sender, S_LAST_HOLDER). */
        s_take_back(self, t, false, "result_lost");
    }
}

static int s_ref_cmp(const void *a, const void *b)
{
    const proto_task_ref_t *x = a, *y = b;
    if (x->task != y->task)
        return x->task < y->task ? -1 : 1;
    return (x->attempt > y->attempt) - (x->attempt < y->attempt);
}

/* w's heartbeat (rep) against what we hold for it. Without this a task
   w no longer holds but never reported ended (a worker that lost it
   between its pipe and its pool, a result that went into a report socket
   w has since closed, a bug) stays running here for ever: a started task
   has no lease. Plain comparison was wrong, though: a task just sent is
   not yet in a heartbeat made before it arrived, and a heartbeat can
   wait in the report socket while a hello, a reply and new tasks go by.
   So w's heartbeat says which "tasks" message it had read last ("seen",
   the number we stamped on it: s_sent_seq), and promises that every
   attempt it had read and does not list has had its result or
   "recalled" sent before the heartbeat, on this socket (which keeps
   order, so we have read those already). Compared only when that is the
   last message we sent w since its hello (w->seq_sent): then every task
   w holds here was sent at or before it, or claimed from its hello,
   which w made before it read any message of this registration; the
   ones it does not list are lost there. A heartbeat that names an
   earlier message is not compared (no per-task number is kept for the
   finer "sent at or before seen": sched_task_t is paid per queued task);
   a worker we send to continually is compared at the first heartbeat
   that lands between two messages, at the latest when its tasks run
   out. A task is lost only when two compared heartbeats leave it out
   (t->unlisted marks the first): the promise holds on one connection,
   but a report connection that drops and comes back (a network fault)
   gives us a second pipe, and libzmq reads the two in turn, so a
   heartbeat sent on the new one can be read before a result still
   waiting in the old one; that result is read long before the next
   heartbeat is made. Each lost one is taken back like a lost result
   (s_on_lost): attempt + 1, no crash charged (the worker did not die of
   it), and w stays its last holder, its result counting if it comes
   after all. */
static void s_compare_heartbeat(tasks_t *self, worker_t *w, proto_report_t *rep)
{
    if (!w || !w->alive || rep->seen <= 0 || rep->seen != w->seq_sent)
        return;
    if (rep->nrunning > 1)
        qsort(rep->running, (size_t) rep->nrunning, sizeof *rep->running, s_ref_cmp);
    sched_task_t *t = w->tasks;
    while (t) {
        sched_task_t *next = t->wnext;
        proto_task_ref_t key = {.task = t->id, .attempt = t->attempt};
        bool listed = rep->nrunning > 0
                      && bsearch(&key, rep->running, (size_t) rep->nrunning, sizeof key,
                                 s_ref_cmp);
        if (listed || t->awaiting) {
            /* Held there, or ended there by its hello: its result is due. */
            t->unlisted = false;
        } else if (!t->unlisted) {
            t->unlisted = true;
            log_info("event=task_unlisted task=%" PRId64 " attempt=%d worker=%s seen=%" PRId64
                     " note=\"taken back if its worker's next heartbeat does not list it "
                     "either\"",
                     t->id, t->attempt, LOG_V(w->id), rep->seen);
        } else {
            log_warn("event=task_not_held task=%" PRId64 " attempt=%d worker=%s seen=%" PRId64
                     " note=\"its worker's heartbeat, made after it read every task sent to "
                     "it, does not list it, nor did the one before, and no result came: it "
                     "runs again\"",
                     t->id, t->attempt, LOG_V(w->id), rep->seen);
            s_take_back(self, t, false, "not_held");
        }
        t = next;
    }
}

/* key: the sender's CURVE key (NULL without CURVE): a worker's reports
   count only from the key that registered it. */
static void s_on_report(tasks_t *self, const char *buf, size_t len, const char *key, int64_t now)
{
    proto_err_t err;
    proto_report_t *rep = proto_report_decode(buf, len, &err);
    int64_t held;
    if (!rep) {
        char q[256];
        if (log_limit(&self->lim_report, now, &held))
            log_warn("event=bad_report code=%s error=\"%s\" suppressed=%" PRId64, err.code,
                     log_quote(q, sizeof q, err.message), held);
        return;
    }
    worker_t *w = registry_find(self->registry, rep->worker);
    /* Reports name their worker; with CURVE the name must come with the
       key that registered it, or any worker key could speak for another
       (say bye for it, keep it alive). Then each task a report names
       counts only from the worker that holds it (s_sender). */
    if (key && w && strcmp(w->key, key) != 0) {
        char q[128];
        self->refused++;
        if (log_limit(&self->lim_report, now, &held))
            log_warn("event=report_refused worker=\"%s\" key=%s error=\"not the key that "
                     "registered this worker\" suppressed=%" PRId64,
                     log_quote(q, sizeof q, rep->worker), key, held);
        proto_report_destroy(&rep);
        return;
    }
    bool live = w && w->alive;
    if (live) {
        w->last_seen = now;
        w->last_heartbeat = clock_wall();
    }
    switch (rep->type) {
    case PROTO_REP_HEARTBEAT:
        s_compare_heartbeat(self, w, rep);
        break;
    case PROTO_REP_STARTED:
        for (int i = 0; i < rep->nstarted; i++) {
            const proto_task_ref_t *ref = &rep->started[i];
            sched_task_t *t = sched_get(self->sched, ref->task);
            /* No token here: a start claims nothing (a start of an
               attempt that waits for its claim changes nothing). */
            sender_t who =
                t ? s_sender(self, t, w, rep->worker, key, ref->attempt, NULL) : S_REFUSED;
            if (who == S_HOLDER && t->state == PROTO_ST_ASSIGNED) {
                t->state = PROTO_ST_RUNNING;
                t->started = rep->started_at[i];
            } else if (who == S_REFUSED) {
                s_refuse(self, "started", rep->worker, key, t, ref->task, ref->attempt,
                         s_refusal(who), now);
            }
        }
        break;
    case PROTO_REP_OUTPUT: {
        sched_task_t *t = sched_get(self->sched, rep->task);
        sender_t who =
            t ? s_sender(self, t, w, rep->worker, key, rep->attempt, NULL) : S_REFUSED;
        if (who == S_HOLDER && rep->data)
            s_append_output(t, rep->stream, rep->data);
        else if (who == S_REFUSED)
            s_refuse(self, "output", rep->worker, key, t, rep->task, rep->attempt,
                     s_refusal(who), now);
        break;
    }
    case PROTO_REP_RESULTS:
        for (int i = 0; i < rep->nresults; i++)
            s_on_result(self, w, rep->worker, key, &rep->results[i], now);
        break;
    case PROTO_REP_RECALLED:
        s_on_recalled(self, w, rep, key, now);
        break;
    case PROTO_REP_LOST:
        s_on_lost(self, w, rep, key, now);
        break;
    case PROTO_REP_BYE:
        if (live) {
            log_info("event=worker_bye worker=%s", LOG_V(w->id));
            s_worker_lost(self, w, now, "bye", false);
        }
        break;
    }
    proto_report_destroy(&rep);
}

/* Reports per turn of the loop, at most: the API socket and the timers
   get their turn even under a flood of results. */
#define REPORTS_PER_TURN 2000

void tasks_read_reports(tasks_t *self, void *reports, bool curve, int64_t now)
{
    for (int i = 0; i < REPORTS_PER_TURN; i++) {
        size_t len;
        char uid[ZMQX_USER_ID_MAX] = "";
        char *buf = curve ? zmqx_recv_from(reports, &len, ZMQ_DONTWAIT, uid)
                          : zmqx_recv(reports, &len, ZMQ_DONTWAIT);
        if (!buf) {
            if (errno == EPROTO) {
                int64_t held;
                if (log_limit(&self->lim_report, now, &held))
                    log_warn("event=bad_report error=\"multipart message dropped\" "
                             "suppressed=%" PRId64, held);
                continue;
            }
            break;
        }
        const char *key = curve ? auth_user_key(uid) : NULL;
        /* The key that connected may have been revoked since (SIGHUP):
           refused from its next report, like an API request. */
        if (key && !(auth_key_roles(self->cfg.auth, key) & AUTH_WORKER)) {
            int64_t held;
            if (log_limit(&self->lim_report, now, &held))
                log_warn("event=report_refused key=%s reason=revoked error=\"this key is no "
                         "longer in the workers list\" suppressed=%" PRId64,
                         key, held);
            free(buf);
            continue;
        }
        s_on_report(self, buf, len, key, now);
        free(buf);
    }
}

void tasks_keys_reloaded(tasks_t *self, int64_t now)
{
    size_t pos = 0;
    worker_t *w;
    while ((w = registry_next(self->registry, &pos)))
        if (w->alive && w->key[0] && !(auth_key_roles(self->cfg.auth, w->key) & AUTH_WORKER))
            s_worker_lost(self, w, now, "key_revoked", false);
}

/* ---- timers ---- */

/* The master's own stall (SIGSTOP, a suspended VM, a loop blocked on the
   disk): while its loop stood still nobody's reports were read, so the
   time is its silence, not the workers'. Every clock that judges a worker
   by what the master has heard (liveness, leases, the recovery grace, kept
   results) moves on by the gap: each worker gets its full window again,
   and what waits in the sockets is read before anyone is judged. A worker
   that really died meanwhile is found that much later. */
static void s_stalled(tasks_t *self, int64_t gap)
{
    size_t pos = 0, n = 0;
    worker_t *w;
    while ((w = registry_next(self->registry, &pos)))
        if (w->alive) {
            w->last_seen += gap;
            n++;
        }
    pos = 0;
    sched_task_t *t;
    while ((t = sched_next(self->sched, &pos)))
        if ((t->orphan || t->awaiting || t->state == PROTO_ST_ASSIGNED) && t->deadline)
            t->deadline += gap;
    for (size_t i = 0; i < self->nparked; i++)
        self->parked[i].until += gap;
    if (self->rejoin_until)
        self->rejoin_until += gap;
    log_warn("event=master_stalled ms=%" PRId64 " workers=%zu note=\"the master did not run for "
             "this long: liveness and leases restart from now\"",
             gap, n);
}

void tasks_timers(tasks_t *self, int64_t now)
{
    int64_t dead_after = (int64_t) self->cfg.heartbeat_ms * self->cfg.liveness;
    /* Timers run every ~100 ms (master.c); a longer gap is a stall. */
    if (self->last_timers && now - self->last_timers > STALL_MS)
        s_stalled(self, now - self->last_timers);
    self->last_timers = now;
    size_t pos = 0;
    worker_t *w;
    char *ping = NULL;
    while ((w = registry_next(self->registry, &pos))) {
        if (!w->alive)
            continue;
        if (now - w->last_seen > dead_after) {
            s_worker_lost(self, w, now, "heartbeat_timeout", true);
            continue;
        }
        /* Ping every worker, idle ones too: its liveness check on us
           depends on it. A pipe not yet known connected is probed. */
        if (!w->pipe_ready)
            s_pipe_ready(w, now);
        else if (now - w->last_ping >= self->cfg.heartbeat_ms) {
            if (!ping) {
                proto_pipe_t *msg = proto_pipe_new(PROTO_PIPE_PING);
                ping = proto_pipe_encode(msg);
                proto_pipe_destroy(&msg);
            }
            s_send_pipe(w, ping);
            w->last_ping = now;
        }
        /* A drain asked for before the pipe connected goes out now. */
        if (w->draining && !w->drain_sent && w->pipe_ready)
            worker_send_drain(w);
        /* Leases: a task sent but not started in time goes back. */
        sched_task_t *t = w->tasks;
        while (t) {
            sched_task_t *next = t->wnext;
            if (t->state == PROTO_ST_ASSIGNED && t->deadline && now > t->deadline) {
                log_warn("event=lease_expired task=%" PRId64 " attempt=%d worker=%s", t->id,
                         t->attempt, LOG_V(w->id));
                s_send_abort(self, w, t->id, t->attempt);
                free(t->worker_name);   /* told to drop it: not its last holder */
                t->worker_name = NULL;
                s_take_back_unrun(self, t, "lease_expired");
            } else if (t->awaiting && now > t->deadline) {
                /* Sent to a master that died with it, most likely. */
                log_info("event=result_not_delivered task=%" PRId64 " attempt=%d worker=%s "
                         "note=\"it ended there, its result did not come: it runs again\"",
                         t->id, t->attempt, LOG_V(w->id));
                s_take_back(self, t, false, "result_not_delivered");
            }
            t = next;
        }
    }
    free(ping);
    if (self->orphans) {
        /* After a restart: tasks nobody claimed within the grace run again. */
        int64_t ids[1024];
        size_t n = 0;
        size_t it = 0;
        sched_task_t *t;
        while (n < 1024 && (t = sched_next(self->sched, &it)))
            if (t->orphan && now > t->deadline)
                ids[n++] = t->id;
        for (size_t i = 0; i < n; i++) {
            t = sched_get(self->sched, ids[i]);
            log_info("event=orphan_requeued task=%" PRId64 " attempt=%d", t->id, t->attempt);
            s_take_back(self, t, false, "recovery_grace_expired");
        }
    }
    if (self->nparked)
        s_expire_parked(self, now);
    if (now - self->last_prune > (self->keep_gone_ms < 60000 ? self->keep_gone_ms : 60000)) {
        self->last_prune = now;
        registry_prune(self->registry, now, self->keep_gone_ms);
        deps_prune(self->cfg.deps);
    }
    s_check_stuck(self, now);
}
