/*  store: the master's durable state in SQLite (WAL).

    SQLite is the source of truth: jobs, tasks (spec, state, attempt, the
    recorded outcome) and duplicate results. The master keeps only what it
    needs to schedule in memory and rebuilds it from here at start-up.

    Grouped commits: writes go into one open transaction (store_begin is
    implicit in every write); the master's journal (journal.h) calls
    store_commit every few milliseconds, and always before the master
    acknowledges a submit or answers a query, so "acknowledged" always
    means "committed". One fsync covers thousands of rows.

    Sync modes (--sync): FULL = synchronous=FULL (fsync at every commit);
    ACKED = synchronous=NORMAL, but FULL for each commit the caller asks
    to be durable (store_fsync_next: the journal asks it for every commit
    a client's answer waits for, and at least every second); INTERVAL =
    synchronous=NORMAL in WAL (no fsync at commit, fsync at checkpoints;
    survives a process crash, may lose the last commits on power loss);
    OFF = synchronous=OFF.

    Errors: functions return 0 on success, -1 on failure with a message
    available from store_error() (e.g. "database or disk is full"). A failed
    commit rolls back the whole open transaction: the caller must treat
    every write since the last successful commit as not done. A write
    that fails in SQLite (disk full, I/O error) does the same at once
    (SQLite may already have rolled back): later writes fail until
    store_commit (which then returns -1 with the first reason) or
    store_rollback. A refused argument (e.g. a state set_running does not
    take) changes nothing.

    Callbacks of the *_each/get functions may call other store functions
    (e.g. store_task_spec while rebuilding), but not the same one again.

    Threads: an instance is used by one thread at a time, never by two at
    once (the connection is opened SQLITE_OPEN_NOMUTEX: SQLite does not
    guard it). In the master, the loop owns the store: it opens it, reads
    it and closes it; while a commit batch is out (writer.h), the loop
    lends it to the writer thread, which alone writes it until the loop
    waits for that thread to be done (writer_idle, writer_finish). The
    writer's mutex orders every use by one thread before the other's.
*/
#ifndef ZTASK_STORE_H
#define ZTASK_STORE_H

#include "../proto/proto.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct store store_t;

typedef enum {
    STORE_SYNC_FULL = 0,
    STORE_SYNC_INTERVAL,
    STORE_SYNC_OFF,
    STORE_SYNC_ACKED,
} store_sync_t;

/* The schema this build writes (PRAGMA user_version). 2: no
   tasks_unfinished index; 3: tasks without AUTOINCREMENT, last_ids; 4:
   jobs.owner; 5: submit_keys; 6: tasks.held, tasks.retry_base, jobs.held,
   jobs.max_running, jobs.definition (ztask hold, retry, limit, show); 8:
   alloc_queues; 11: tasks.worker_key; 12: tasks_failed indexes cancelled
   tasks too; 13: job_deps and task state 6 (dep_failed) (the sched
   helper's step, its brief's 7, above main's 12 at the merge); 14: the
   highest allocation queue id in last_ids (ids never reused); 15:
   tasks_failed's predicate written as a range (the same rows; the
   finish UPDATE no longer builds temporary tables). Older
   databases are upgraded in place, a step per version (s_upgrade in
   store.c); a newer one is refused. */
#define STORE_SCHEMA_VERSION 15

/* Process-wide SQLite settings that make every store cheaper: no memory
   statistics (they take a global mutex on every allocation, ~8% of a
   task's SQLite instructions). SQLite's rule for such settings: call once,
   before any store exists and before other threads start; optional. */
void store_process_init(void);

/* The permission bits of the database file at path (e.g. 0600), or -1
   for ":memory:", a URI or a file that cannot be stat'ed. A database that
   store_new creates is 0600 (and so are its -wal and -shm files); one
   that existed keeps its mode, which the caller may want to warn about. */
int store_file_mode(const char *path);

/* Opens (creating if needed) the database at path (":memory:" allowed),
   sets WAL and the sync mode, creates or checks the schema (a schema
   version is kept in PRAGMA user_version; a newer version is refused),
   and fsyncs the WAL it found, whatever the mode: a master killed after
   commits it only wrote (--sync acked, interval, off) leaves them in the
   page cache, and nothing read from them is told before they are on
   disk. Blocks on that fsync. Returns NULL and fills err on failure. */
store_t *store_new(const char *path, store_sync_t sync, char *err, size_t errlen);
void store_destroy(store_t **p);

/* Last error message (borrowed; valid until the next call). */
const char *store_error(const store_t *self);

/* Commits the open transaction, if any. On failure the transaction is
   rolled back and -1 returned. */
int store_commit(store_t *self);
/* Rolls back the open transaction, if any. */
void store_rollback(store_t *self);
/* The sync mode the store was opened with. */
store_sync_t store_sync_mode(const store_t *self);
/* ACKED only (a no-op in the other modes): whether the next commit is
   fsynced (synchronous=FULL) or only written (NORMAL). Call with no
   transaction open. In WAL every commit is appended in order, so an
   fsynced one makes every earlier one durable too, if it appends to the
   WAL (SQLite fsyncs nothing at a commit that writes no page): so every
   fsynced commit that follows commits only written gets the probe row
   from store_commit, whatever it writes itself, unless store_sync_wal has
   fsynced the WAL since. 0, or -1. */
int store_fsync_next(store_t *self, bool fsync);
/* ACKED (a no-op in the other modes): fsyncs the WAL as it is, with no
   transaction open: every commit so far becomes durable, and no row is
   written (a full disk does not stop it). 0, or -1 (store_error). */
int store_sync_wal(store_t *self);
/* Writes one small row (in the open group): a commit of it tells whether
   the disk has room again after a failed commit. */
int store_probe(store_t *self);
/* Gives the database's free pages (a deleted job's) back to the file
   system, in the open group: the file shrinks at the next checkpoint.
   Nothing in a database made before schema 5 (store_shrinks). */
int store_vacuum(store_t *self);
/* True when the database gives freed pages back (auto_vacuum incremental:
   every database this version creates); an older one keeps them until a
   VACUUM with the master stopped (docs/deploy.md). */
bool store_shrinks(store_t *self);
/* Moves the WAL's pages into the database and truncates the WAL file to
   nothing, giving its blocks back (a full disk); nothing while a group is
   open. 0, or -1 (a checkpoint that could not finish is harmless). */
int store_checkpoint(store_t *self);
/* True while a transaction with uncommitted writes is open. */
bool store_dirty(const store_t *self);
/* The highest job and task ids ever handed out (kept after deletes), 0
   when none: whoever picks ids itself starts above. */
int store_last_ids(store_t *self, int64_t *job, int64_t *task);

/* ---- jobs ---- */
/* A new job for store_job_create; the strings are borrowed. */
typedef struct {
    int64_t id;              /* 0: the next free id */
    const char *name;        /* NULL = none */
    const char *owner;       /* who submitted it (a client's key); NULL or "" = nobody */
    double created;          /* wall seconds */
    const proto_dep_t *deps; /* what its tasks wait for (ndeps, borrowed) */
    int ndeps;
    int max_running;         /* its tasks running at once, at most; 0 = no limit */
    const char *definition;  /* what it was submitted as (JSON text), NULL = unknown */
} store_job_new_t;

/* Inserts a job and its dependencies; the id used goes to *job_id (may
   be NULL). */
int store_job_create(store_t *self, const store_job_new_t *job, int64_t *job_id);
/* Calls fn for every dependency of every job (job, the parent and kind),
   in job order: how the master rebuilds them at start-up. A kind this
   build does not know is skipped. */
int store_deps_each(store_t *self, int (*fn)(int64_t job, const proto_dep_t *dep, void *arg),
                    void *arg);
int store_job_close(store_t *self, int64_t job);                 /* all batches received */
int store_job_set_finished(store_t *self, int64_t job, double finished);
/* What `ztask show` prints of a job beside its record: its definition
   (as submitted) and the spec of its first task, each the caller's (NULL
   when there is none, or no such job). */
int store_job_show(store_t *self, int64_t job, char **definition, char **first_spec);

/* A job held or released (ztask hold/release JOB); a release clears the
   hold of each of its tasks too. */
int store_job_set_held(store_t *self, int64_t job, bool held);
/* A job's --max-running (0 = no limit). */
int store_job_set_limit(store_t *self, int64_t job, int max_running);
/* The priority of every unfinished task of job. */
int store_job_set_priority(store_t *self, int64_t job, int32_t priority);
/* One task held or released (ztask hold/release JOB.INDEX). */
int store_task_set_held(store_t *self, int64_t task, bool held);

/* Deletes a job with its tasks, duplicates and dependencies; *deleted
   gets 1 or 0. */
int store_job_delete(store_t *self, int64_t job, int64_t *deleted);

typedef struct {
    int64_t id;
    const char *name;     /* borrowed for the callback's duration, may be NULL */
    bool closed;
    double created, finished;
    const char *owner;    /* borrowed like name; NULL = nobody */
    bool held;            /* ztask hold JOB: its queued tasks wait */
    int max_running;      /* 0 = no limit */
} store_job_row_t;

/* ---- submit keys (idempotent submits, master/idem.h) ---- */
typedef struct {
    const char *owner;       /* "" = nobody; borrowed */
    const char *key;         /* borrowed */
    int64_t job;
    int64_t accepted;        /* tasks the keyed request added */
    double created;          /* wall seconds */
} store_key_row_t;

/* Remembers a submit's key (replacing an older row of the same owner and
   key). */
int store_submit_key_add(store_t *self, const store_key_row_t *row);
/* Forgets the keys created before cutoff (wall seconds). */
int store_submit_keys_prune(store_t *self, double cutoff);
/* Calls fn for every key created at or after since, oldest first (strings
   borrowed for the callback's duration). fn returns non-zero to stop. */
int store_submit_keys_each(store_t *self, double since,
                           int (*fn)(const store_key_row_t *row, void *arg), void *arg);

/* Calls fn for every job, in id order. fn returns non-zero to stop. */
int store_jobs_each(store_t *self, int (*fn)(const store_job_row_t *row, void *arg), void *arg);

/* Calls fn with (job, state, count, bytes) for every job and task state
   present: how the master rebuilds its counters at start-up. bytes: the
   size of those tasks' specs for an unfinished state (QUEUED, ASSIGNED,
   RUNNING), 0 for a finished one. */
int store_counts_each(store_t *self,
                      int (*fn)(int64_t job, proto_state_t state, int64_t count, int64_t bytes,
                                void *arg),
                      void *arg);

/* ---- tasks ---- */
/* Inserts a queued task (attempt 0) with its normalized spec text and what
   it needs of a worker (the scheduler's class key, e.g. "exec" or
   "fn:gpu,ssd"; NULL = anything), under id, or under the next free id when
   id is 0; the id used goes to *task_id (may be NULL). */
int store_task_insert(store_t *self, int64_t id, int64_t job, int64_t index, const char *name,
                      int32_t priority, int retries, const char *spec_json, const char *needs,
                      int64_t *task_id);

/* A new task for store_tasks_insert; the strings are borrowed. */
typedef struct {
    int64_t id;              /* > 0, picked by the caller */
    int64_t index;
    const char *name;        /* NULL = none */
    int32_t priority;
    int retries;
    const char *spec_json;   /* required */
    const char *needs;       /* NULL = anything */
} store_task_new_t;

/* The same as store_task_insert for each of n tasks of job (ids given),
   cheaper: many rows go in one statement. Tasks without an id or a spec
   are refused before anything is written; a failed write poisons the
   open group as any other (see store_commit). */
int store_tasks_insert(store_t *self, int64_t job, const store_task_new_t *tasks, size_t n);

/* The spec text of a task (caller frees), or NULL when there is none. */
char *store_task_spec(store_t *self, int64_t task);

/* Calls fn with the id and spec text (borrowed for the call) of up to
   limit tasks with id >= first, in id order: one read for the specs of
   many tasks about to be dispatched. fn returns non-zero to stop. */
int store_specs_each(store_t *self, int64_t first, int limit,
                     int (*fn)(int64_t task, const char *spec, void *arg), void *arg);

/* Records a dispatch or a start: state ASSIGNED or RUNNING, with the
   attempt number, worker id and that worker's CURVE key (NULL without
   CURVE: a restart then knows the name only); started (wall) is set when
   RUNNING. */
int store_task_set_running(store_t *self, int64_t task, proto_state_t state, int attempt,
                           const char *worker, double started, const char *worker_key);

/* Puts a task back in the queue (state QUEUED); attempt: the one that was
   out, stored if above the stored one (its assignment may never have been
   written), so the next send is the attempt above it after a restart too. */
int store_task_requeue(store_t *self, int64_t task, int attempt);

/* Puts a FAILED, CANCELLED or DEP_FAILED task back in the queue for a new attempt
   (`ztask retry`): state QUEUED, its outcome, worker and times cleared,
   attempt kept (the next dispatch is attempt + 1) and noted as its
   retry_base. */
int store_task_retry(store_t *self, int64_t task);

/* Records the final outcome: state DONE, FAILED, CANCELLED or DEP_FAILED, the attempt
   that produced it, its worker and the outcome as proto_result_encode text
   (may be NULL, e.g. for a task cancelled before it ran). */
int store_task_finish(store_t *self, int64_t task, proto_state_t state, int attempt,
                      const char *worker, const char *outcome_json, double finished);

/* Marks every QUEUED task of a job CANCELLED; *count gets how many. */
int store_job_cancel_queued(store_t *self, int64_t job, double finished, int64_t *count);

/* Records a result that arrived for a stale attempt (never changes the task). */
int store_duplicate_add(store_t *self, int64_t task, int attempt, const char *worker,
                        const char *outcome_json, double received);
int64_t store_duplicate_count(store_t *self, int64_t task);   /* -1 on error; task 0 = all */

typedef struct {
    int64_t id, job, index;
    const char *name;          /* borrowed for the callback's duration; "" when none */
    proto_state_t state;
    int attempt;
    int retries;
    int32_t priority;
    const char *worker;        /* borrowed, may be NULL */
    const char *outcome_json;  /* borrowed, NULL while not finished */
    double started, finished;
    const char *needs;         /* borrowed, may be NULL */
    bool held;                 /* held alone (ztask hold JOB.INDEX) */
    int retry_base;            /* attempts before its last `ztask retry`: its spec's
                                  retries count from there */
    int64_t spec_bytes;        /* size of its spec: store_unfinished_each and
                                  store_retryable_each only, else 0 */
    const char *worker_key;    /* borrowed, NULL when none: store_unfinished_each only */
} store_task_row_t;

/* Calls fn for every task not finished (QUEUED, ASSIGNED, RUNNING), in id
   order: how the master rebuilds its queue at start-up. */
int store_unfinished_each(store_t *self, int (*fn)(const store_task_row_t *row, void *arg),
                          void *arg);

/* Calls fn for up to limit tasks of job with task id > after, in id order
   (which is submission order; failed_only: only FAILED and CANCELLED, the
   tasks that did not succeed). *last_id gets the
   id of the last row given, or -1 when there were none. */
int store_results_each(store_t *self, int64_t job, int64_t after, int limit, bool failed_only,
                       int (*fn)(const store_task_row_t *row, void *arg), void *arg,
                       int64_t *last_id);

/* Calls fn with (index, state) for every finished task of job (DONE,
   FAILED, CANCELLED, DEP_FAILED), in no particular order: what tasks of
   a job waiting for it task by task (after_each) need. */
int store_task_ends_each(store_t *self, int64_t job,
                         int (*fn)(int64_t index, proto_state_t state, void *arg), void *arg);

/* Calls fn for every FAILED or CANCELLED task of job, in id order, with
   spec_bytes set (what `ztask retry` may put back). */
int store_retryable_each(store_t *self, int64_t job,
                         int (*fn)(const store_task_row_t *row, void *arg), void *arg);
/* The same for every DEP_FAILED task of job: what a retry of a job it
   depends on revives. */
int store_dep_failed_each(store_t *self, int64_t job,
                          int (*fn)(const store_task_row_t *row, void *arg), void *arg);

/* The id of the task of job with the given index (the first one, if a job
   repeats an index); *found false when none. */
int store_task_find(store_t *self, int64_t job, int64_t index, int64_t *task_id, bool *found);

/* One task by id; fn is called once, or not at all when there is no such task
   (then *found is false). fn may be NULL: *found is all the caller asks. */
int store_task_get(store_t *self, int64_t task, int (*fn)(const store_task_row_t *row, void *arg),
                   void *arg, bool *found);

/* Runs PRAGMA integrity_check; 0 when "ok". */
int store_check(store_t *self);

/* Worker allocation queues (alloc.h), each kept as its JSON text
   (proto_alloc_encode): saved whole at every change, in the open
   transaction like every other write. A delete first records the highest
   id so far (schema 14), so that no id is handed out twice. */
int store_alloc_save(store_t *self, int64_t id, const char *def);
int store_alloc_delete(store_t *self, int64_t id);
int store_allocs_each(store_t *self, int (*fn)(int64_t id, const char *def, void *arg), void *arg);
/* The highest allocation queue id ever stored, deleted ones included (0
   when none): the next queue takes the one above. */
int store_alloc_last_id(store_t *self, int64_t *out);

#endif
