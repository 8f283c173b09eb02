/*  sched: the master's in-memory view of unfinished tasks, and the order in
    which queued ones run.

    Every task that is queued, assigned (on a worker's pipe) or running has
    a record here; finished tasks live only in the store. The ready queue
    runs the highest priority first and, within a priority, the lowest task
    id first (submission order: FIFO). Tasks waiting for a retry backoff sit
    in a delayed queue until their time comes.

    Classes: tasks differ in what they need of a worker (a command needs a
    worker that runs commands; `--fn wordcount` a worker that has that
    function; `--require gpu` needs the label). Each distinct need (a
    "class", keyed by a short text such as "exec", "fn=wordcount" or
    "fn=wordcount:gpu") has its own ready heap; a worker pops the best head among the
    classes it can serve, so a task no worker can take never blocks others.

    Parked tasks: a QUEUED task may be parked, out of every ready heap
    (listed only in the one sched_walk reads), for one
    or more reasons (a user's hold, its job at its --max-running limit,
    a restart's rejoin window, its requeue not written yet: SCHED_PARK_*).
    It stays QUEUED (its job counts it queued) and is never popped; when
    its last reason is lifted it enters the ready (or delayed) queue again.
    A task requeued while parked stays parked.

    Heap entries are (key, id, generation) values rather than pointers, so a
    task that is cancelled, finished or requeued simply leaves stale entries
    behind, skipped when popped (lazy deletion keeps cancel O(1)).

    Time: every function that decides on time takes `now` (monotonic ms),
    so tests inject any clock and wall-clock jumps change nothing.

    Ownership: records belong to the scheduler; pointers returned are
    borrowed and valid until sched_remove of that id or sched_destroy.
    Threads: main loop only.
*/
#ifndef ZTASK_SCHED_H
#define ZTASK_SCHED_H

#include "../common/resset.h"
#include "../proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sched sched_t;
struct worker;

typedef struct {
    char *key;                /* "exec", "fn", "fn=NAME", "exec:gpu,ssd", "fn;cpus=2", ... */
    bool exec;                /* needs a worker that runs commands */
    char *fn;                 /* needs a worker with this function; NULL = any */
    char **require;           /* labels, nrequire of them */
    int nrequire;
    double time_request;      /* seconds its tasks expect to run ("~T" in the key), 0 = any */
    res_set_t *req;           /* the resources it asks (after ';'), owned; NULL = none
                                 named (a plain task: one CPU, resources.h) */
} sched_class_t;

/* Live output of a running task, for `ztask logs -f` (allocated on the
   first output report: most tasks never need it). */
typedef struct {
    char *data[2];            /* stdout, stderr */
    size_t len[2];
} sched_output_t;

/* One unfinished task. Kept small (a million may be queued at once). */
typedef struct sched_task {
    int64_t id;
    int64_t job;
    int64_t index;            /* its index in its job (--after-each matches on it) */
    int64_t not_before;       /* QUEUED: not before this time (retry backoff) */
    /* One field, two lives that never overlap: deadline is read only
       while the task is on a worker or waits for one (ASSIGNED, RUNNING,
       an orphan, awaiting), requeue_mark only while it is QUEUED (and by
       the dispatch that just popped it). Every way onto a worker
       (sched_pop, sched_claim, then tasks.c) writes deadline before it is
       read, and the one way back into the queue from there (tasks.c,
       s_requeue) writes requeue_mark; a task new to the queue has 0. */
    union {
        int64_t deadline;     /* ASSIGNED: lease end; orphan: recovery grace end;
                                 awaiting: when its result is due */
        uint64_t requeue_mark;   /* QUEUED: the journal mark (journal.h) of its
                                    last requeue, written before it is sent
                                    again (tasks.c, s_park_for_commit); 0 = none */
    };
    int64_t ready_ms;         /* QUEUED: monotonic ms it became ready to run (set by
                                 tasks.c; the queue-wait metric and the oldest
                                 queued task's age read it) */
    double started;           /* ASSIGNED/RUNNING: wall time it was sent, then the start
                                 its worker reported; 0 = not on a worker */
    char *spec;               /* spec text while queued, owned; NULL = read it from the store */
    char *worker_name;        /* the worker holding it (ASSIGNED/RUNNING), owned */
    struct worker *worker;    /* borrowed from the registry, NULL when none */
    struct sched_task *wprev, *wnext;   /* the worker's list of its tasks */
    sched_output_t *output;   /* live output, owned, NULL when none */
    int32_t priority;
    uint32_t gen;             /* matches the current heap entry */
    uint32_t spec_len;        /* bytes of its spec (its owner's quota counts them) */
    int32_t attempt;          /* number of the latest dispatch, 0..PROTO_MAX_ATTEMPT;
                                 0 = never sent. Full width: recalls resend
                                 with no retry charged, so nothing else bounds
                                 it, and a wrapped number would be an attempt
                                 already sent (stale results compare them) */
    uint16_t cls;             /* index of its class */
    uint8_t retries_left;
    uint8_t crashes;          /* workers that died while holding it */
    uint8_t state;            /* proto_state_t: QUEUED, ASSIGNED or RUNNING */
    bool cancel_requested;    /* an abort was sent; do not retry or requeue */
    bool orphan;              /* ASSIGNED/RUNNING from before a master restart */
    bool suspect;             /* counted in its worker's suspects */
    bool recovered;           /* loaded queued at a restart: a worker may hold a
                                 dispatch of it that was never written */
    uint8_t parked;           /* SCHED_PARK_* reasons it waits out of the queue */
    bool awaiting;            /* RUNNING: its worker said in its hello that it
                                 ended; its result is due by deadline */
    bool unlisted;            /* on a worker: one heartbeat compared with what
                                 we hold left it out; taken back if the next
                                 one does too (tasks.c, s_compare_heartbeat).
                                 false again when it moves */
    bool recalling;           /* ASSIGNED: asked back by a recall to its worker
                                 (tasks.c, s_recall_from); false again when it
                                 moves. Only such a task is taken back on a
                                 "recalled" report */
    bool given_back;          /* QUEUED: its worker gave it back (a recall) for
                                 one with a free thread, which it goes to first
                                 (tasks.c, s_better_elsewhere); false once sent */
    bool wait_counted;        /* QUEUED: its queue wait was observed at a send
                                 that did not run it (tasks.c, s_take_back_unrun):
                                 the send that does is the same execution, not
                                 observed again; false once sent */
    bool failed;              /* failed_on names the worker its last attempt
                                 failed on (a retry): kept through its sends and
                                 give-backs, so neither a dispatch nor a recall
                                 hands it back there while another can take it */
    char *failed_on;          /* a retry after a failure (failed), or a queued task
                                 its worker gave back (a recall): the worker it
                                 failed on or came from (owned; another that can
                                 take it now goes first); NULL = none */
} sched_task_t;

/* Why a queued task is parked (sched_task_t.parked, a bit set). */
enum {
    SCHED_PARK_HELD = 1,      /* ztask hold (the task, or its job) */
    SCHED_PARK_CAPPED = 2,    /* its job runs --max-running tasks already */
    SCHED_PARK_DEPS = 4,      /* it waits for the jobs its job depends on (deps.h) */
    SCHED_PARK_REJOIN = 8,    /* found queued at a restart: its worker may still
                                 claim it, until the rejoin window ends (tasks.c) */
    SCHED_PARK_COMMIT = 16,   /* taken back from a worker (a retry: once due):
                                 not sent again before its requeue is
                                 written (tasks.c, s_park_for_commit) */
    SCHED_PARK_ALL = 31
};

sched_t *sched_new(void);
void sched_destroy(sched_t **p);

/* The class for a need key (NULL = "fn", anything goes), made on first
   use. Keys: "exec", "fn" (any function: tasks stored before workers said
   theirs) or "fn=NAME" (NAME with '%', ':' and '~' written %25, %3A and
   %7E: pct_encode), optionally followed by ":" and comma-separated
   labels, then optionally ";" and the resources its tasks ask
   (res_format text: "cpus=2,gpus=0.5"), then optionally "~" and the
   seconds its tasks expect to run
   (--time-request: only workers whose end leaves that long take them).
   Returns its index. Every caller that takes a key from outside (a
   client's submit or retry) asks sched_class_room first: the classes are
   never freed while the master runs, each is looked at on every dispatch,
   and a task keeps its class index in 16 bits (asserted): a client makes
   at most SCHED_MAX_CLASSES (api checks a batch with sched_class_find
   before it makes any); the tasks a restart loads make theirs. */
int sched_class(sched_t *self, const char *key);
#define SCHED_MAX_CLASSES 4096
/* The class of key (NULL = "fn") if it exists, else -1. */
int sched_class_find(const sched_t *self, const char *key);
const sched_class_t *sched_class_get(const sched_t *self, int cls);

/* A task to add: what the scheduler keeps of it. */
typedef struct {
    int64_t id;               /* > 0, not present yet */
    int64_t job;
    int64_t index;            /* its index in its job */
    int32_t priority;
    int cls;                  /* its class (sched_class); 0 = "fn" */
    int attempt;              /* dispatches so far (0 for a new task) */
    int retries_left;
    bool held;                /* added parked for SCHED_PARK_DEPS */
} sched_new_task_t;

/* Adds a queued task; returns its record (borrowed). not_before (monotonic
   ms): not ready before then, 0 = ready now. An id already present is a
   programmer error. */
sched_task_t *sched_add(sched_t *self, const sched_new_task_t *task, int64_t not_before);

/* Adds a task that a worker held when the master stopped: it stays ASSIGNED
   (orphan) until its worker claims it or `deadline` passes. */
sched_task_t *sched_add_orphan(sched_t *self, const sched_new_task_t *task,
                               const char *worker_name, int64_t deadline);

sched_task_t *sched_get(const sched_t *self, int64_t id);

/* The task class cls would hand out next (ready, not a suspect), or NULL;
   it stays queued. Drops stale heap entries on the way. */
sched_task_t *sched_class_peek(sched_t *self, int cls);

/* How many classes exist (indexes 0..n-1). */
int sched_nclasses(const sched_t *self);
/* Whether class cls has a task ready to run now (not counting retry
   backoffs and suspects). Drops stale heap entries on the way. */
bool sched_class_ready(sched_t *self, int cls);

/* Takes the next task to run at `now` (highest priority, then lowest id)
   among the classes accept() says yes to (NULL = all), out of the queue, and
   marks it ASSIGNED; NULL when none is ready. The caller sets attempt,
   worker and deadline.

   Suspects: a task that was on a worker when it died (crashes > 0) may be
   what killed it. Suspects wait in a queue of their own and are handed out
   only when suspects_ok (the caller gives a worker one suspect at a time),
   so two suspects never share a worker: a poison task reaches the crash
   limit by itself and does not keep charging the same innocent tasks. */
sched_task_t *sched_pop(sched_t *self, int64_t now,
                        bool (*accept)(const sched_class_t *cls, void *arg), void *arg,
                        bool suspects_ok);

/* Takes a QUEUED task out of the queue, ASSIGNED, as sched_pop would:
   for a worker that claims a dispatch the store never recorded (see
   ASSIGN_WRITE_MS in journal.h). It is parked no more (whatever held
   it, it runs). The caller sets the rest. */
void sched_claim(sched_t *self, sched_task_t *task);

/* Puts a popped or assigned task back: QUEUED, ready at not_before. */
void sched_requeue(sched_t *self, sched_task_t *task, int64_t not_before);

/* Parks a QUEUED task (one just popped included: it is QUEUED again)
   for reason (SCHED_PARK_*): out of the queue until sched_unpark lifts
   every reason it has. */
void sched_park(sched_t *self, sched_task_t *task, unsigned reason);

/* Lifts reason from a task; one with no reason left is queued again
   (ready now, or at its retry time). Returns true when it was. */
bool sched_unpark(sched_t *self, sched_task_t *task, unsigned reason);

/* Gives a task a new priority; a queued one takes its new place in the
   queue at once. */
void sched_set_priority(sched_t *self, sched_task_t *task, int32_t priority);

/* Forgets a task (finished or cancelled); frees the record. */
void sched_remove(sched_t *self, int64_t id);

/* Milliseconds until the next delayed task is due (0 = now), -1 = none. */
int64_t sched_next_due(const sched_t *self, int64_t now);

/* Parked records by their first reason, each counted once: held (a
   user's hold, whatever else), else waiting for the jobs its job depends
   on, else at its job's --max-running, else waiting for the rejoin
   window, else for its requeue's commit. O(1). A parked task is QUEUED
   (sched_claim lifts every reason from the one it takes). */
typedef struct {
    size_t held, deps, capped, rejoin, commit;
} sched_parked_t;
sched_parked_t sched_parked(const sched_t *self);

/* Tasks waiting for their retry backoff to end after now: the live
   entries of the delayed queue. O(tasks in backoff), not O(tasks). */
size_t sched_retry_waiting(const sched_t *self, int64_t now);

/* The earliest ready_ms among the tasks at the head of the ready queues
   (the next to run of each class, and of the suspects), -1 when no task is
   ready. With one priority that is the oldest ready task; a task behind
   higher-priority ones is not looked at. O(classes); drops stale heap
   tops on the way, as sched_class_ready. */
int64_t sched_head_ready_ms(sched_t *self);

/* Unfinished tasks tracked (queued + assigned + running). */
size_t sched_size(const sched_t *self);

/* A walk over the QUEUED tasks (parked, in a retry backoff and ready
   alike) in the order the scheduler takes them: the highest priority
   first, then the lowest id (the oldest). For `ztask tasks --waiting`.
   Cost: the first k tasks take O((k + s) log k), s the stale heap
   entries met among them (lazy deletion: at most about as many as there
   are tasks, swept as the heaps grow), not a pass over every task; and
   never more than max_visits entries, stale ones included (SIZE_MAX: no
   bound). Opening one may sweep the heap of parked tasks (amortised O(1)
   per entry it drops). The scheduler must not change while a walk is
   open (main loop: open, read, destroy in one turn). The walk is the
   caller's (sched_walk_destroy); tasks it returns are borrowed. */
typedef struct sched_walk sched_walk_t;
sched_walk_t *sched_walk_new(sched_t *self, size_t max_visits);
/* The next queued task in run order, or NULL at the end or once
   max_visits entries were looked at (sched_walk_cut tells which). */
const sched_task_t *sched_walk_next(sched_walk_t *w);
/* Heap entries looked at so far, stale ones included (what the walk cost). */
size_t sched_walk_visited(const sched_walk_t *w);
/* Whether the walk stopped at max_visits with entries left to read (more
   tasks may be queued than it returned). */
bool sched_walk_cut(const sched_walk_t *w);
void sched_walk_destroy(sched_walk_t **p);

/* Heap entries held, stale ones included (lazy deletion): at most a few
   per task and a margin, whatever the steering (for tests). */
size_t sched_entries(const sched_t *self);

/* Iterates every record (any order). *pos starts at 0. The scheduler must not
   change during the iteration: collect ids, then act. */
sched_task_t *sched_next(const sched_t *self, size_t *pos);

#endif
