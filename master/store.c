/*  store: the master's durable state in SQLite (see store.h).

    Design notes (the why):

    - One connection, every statement prepared once in store_new and reused
      with reset + clear_bindings: preparing costs more than executing the
      small statements on the hot paths.

    - Group commit: the first write after a commit opens a transaction with
      BEGIN IMMEDIATE; store_commit ends it. IMMEDIATE rather than DEFERRED
      because every transaction we open starts with a write anyway: taking
      the write lock at BEGIN is where busy_timeout applies cleanly, whereas
      a DEFERRED transaction that upgrades from read to write can get
      SQLITE_BUSY(_SNAPSHOT) mid-transaction without the busy handler being
      called, after earlier writes of the group were already accepted.

    - A failed write poisons the open transaction: SQLite may already have
      rolled it back by itself (disk full, I/O errors), and even when it has
      not, a group in which one write silently went missing would commit a
      state the master never had in memory. So the whole group is rolled
      back at once, further writes fail until the caller commits or rolls
      back, and the next store_commit returns -1 with the original reason.
      That keeps the header's one rule: after a failed commit, every write
      since the last successful commit is not done.

    - Task states are stored as the numbers of proto_state_t; the partial
      indexes below name them literally, so the enum is part of the on-disk
      format (checked at compile time; changing it needs a schema bump).

    - Indexes, and why each pays for itself (every task insert also writes
      one entry per index whose WHERE matches a queued task):
        (none for unfinished tasks) the start-up rebuild scans the table; it
                          already does for the counts per job and state, and
                          an index would cost an entry per submit and per
                          finish (schema 1 had one: ~15% of a task's writes).
        tasks_job (job) = (job, id) in SQLite   results paging by id and cancel.
        tasks_job_idx (job, idx)                store_task_find; its key grows
                          with the index in a normal submit, so appends are cheap.
        tasks_failed (job) WHERE state BETWEEN 4 AND 6
                                                failed_only paging (failed,
                          cancelled, dep_failed) without reading every result of a big
                          job; costs two comparisons per write of a state until a
                          task does not succeed (how the predicate is written
                          matters: see TASKS_FAILED_WHERE).
        duplicates_task (task)                  duplicates are rare; counting and
                          deleting by task then stays cheap.
      No index on state alone: transitions would move entries on every
      dispatch, start and finish, and counts are only needed at start-up.
*/
#include "store.h"

#include "../common/util.h"

#include <sqlite3.h>

#include <assert.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The event loop blocks while SQLite waits for a lock, so keep this short;
   only outside readers (sqlite3 shell, backups) and checkpoints contend. */
#define STORE_BUSY_TIMEOUT_MS 5000
/* After a big transaction the WAL file would stay as large as it grew;
   truncate it back to this after checkpoints. */
#define STORE_WAL_SIZE_LIMIT (64 * 1024 * 1024)
/* Page cache (KiB, negative for SQLite): large enough that a submit of
   many thousands of tasks does not spill to the WAL before its commit. */
#define STORE_CACHE_KIB 32768

_Static_assert(PROTO_ST_QUEUED == 0 && PROTO_ST_ASSIGNED == 1 && PROTO_ST_RUNNING == 2 &&
                   PROTO_ST_DONE == 3 && PROTO_ST_FAILED == 4 && PROTO_ST_CANCELLED == 5 &&
                   PROTO_ST_DEP_FAILED == 6 && PROTO_DEP_OK == 1 && PROTO_DEP_ANY == 2 &&
                   PROTO_DEP_EACH == 3,
               "task states are stored as numbers: a change needs a schema version bump");

/* Schema 4: who submitted each job (the client's key; NULL: nobody, as
   a master without CURVE, or one before schema 4, made them). */
#define JOBS_OWNER_COLUMN "ALTER TABLE jobs ADD COLUMN owner TEXT;"

/* Schema 12: `results --failed` lists the tasks that did not succeed,
   failed (4) or cancelled (5), from one partial index; 13: and
   dep_failed (6). Every query meant to use the index repeats this
   predicate word for word (SQLite uses a partial index only when the
   query's WHERE has its terms).
   Written as a range, not `state IN (4, 5, 6)` (schemas 13 and 14): every
   write to a task's state evaluates the predicate for the old row and
   the new, and SQLite codes an IN list of more than two constants as a
   temporary b-tree, built and freed at each evaluation (schema 12's
   `IN (4, 5)` was two comparisons). That cost ~58,000
   instructions per task finish UPDATE (69,100 against 11,100, callgrind,
   SQLite 3.40), most of the master's ~107,000 per task, as well as two
   tables per assignment and one per insert. BETWEEN rather than
   `state >= 4`: 47 instructions more per finish (two comparisons instead
   of one), and no rule that a state added later must not need the index. */
#define TASKS_FAILED_WHERE "state BETWEEN 4 AND 6"
#define TASKS_FAILED_INDEX "CREATE INDEX tasks_failed ON tasks(job) WHERE " TASKS_FAILED_WHERE ";"

/* Schema 8: worker allocation queues (master/alloc.h), one JSON text
   each (proto_alloc_encode): they change a few times a minute at most. */
#define ALLOC_QUEUES_TABLE \
    "CREATE TABLE IF NOT EXISTS alloc_queues(id INTEGER PRIMARY KEY, def TEXT NOT NULL);"

/* Schema 6: steering a job in place (ztask hold, limit) and what it was
   submitted as (ztask show). */
#define OPS_COLUMNS                                                          \
    "ALTER TABLE tasks ADD COLUMN held INTEGER NOT NULL DEFAULT 0;"          \
    "ALTER TABLE jobs ADD COLUMN held INTEGER NOT NULL DEFAULT 0;"           \
    "ALTER TABLE jobs ADD COLUMN max_running INTEGER NOT NULL DEFAULT 0;"    \
    "ALTER TABLE jobs ADD COLUMN definition TEXT;"                           \
    "ALTER TABLE tasks ADD COLUMN retry_base INTEGER NOT NULL DEFAULT 0;"

/* Schema 13 (the sched helper's step: its brief's number was 7, taken
   above main's 12 at the merge): what each job's tasks wait for (submit
   --after): one row per parent job and kind (proto_dep_kind_t). A row outlives its parent's
   forget: a parent is forgotten only once finished, when its dependants
   were already judged (docs/architecture.md, "Dependencies"). Tasks in
   state 6 (dep_failed) never ran. */
#define JOB_DEPS_TABLE \
    "CREATE TABLE IF NOT EXISTS job_deps(job INTEGER NOT NULL, parent INTEGER NOT NULL, " \
    "kind INTEGER NOT NULL);" \
    "CREATE INDEX IF NOT EXISTS job_deps_job ON job_deps(job);"

/* Schema 3: the highest task id deleted so far (see SCHEMA); since
   schema 14 also the highest allocation queue id ('alloc_queues'). */
#define LAST_IDS_TABLE "CREATE TABLE IF NOT EXISTS last_ids(name TEXT PRIMARY KEY, last INTEGER NOT NULL);"
/* Schema 11: the CURVE key of the worker an assignment went to, so that
   after a restart only that key claims the task (tasks.c, s_sender). */
#define TASKS_WORKER_KEY_COLUMN "ALTER TABLE tasks ADD COLUMN worker_key TEXT;"

/* Schema 14: allocation queue ids are never reused, across restarts too
   (a script holding an old id must not act on a new queue, nor logs and
   metrics mix two queues under one id). The master takes the next id
   above the highest row and above the mark a queue's deletion leaves in
   last_ids (the only time the highest id could be lost, as for tasks).
   A database of 13 has lost the ids of the queues removed before: the
   step marks the highest of the rows left, all it knows. Older masters
   would not look at the mark (and hand out a removed queue's id again):
   the version bump makes them refuse the file. */
#define ALLOC_IDS_KEEP \
    "INSERT INTO last_ids(name, last) " \
    "SELECT 'alloc_queues', coalesce(max(id), 0) FROM alloc_queues WHERE true " \
    "ON CONFLICT(name) DO UPDATE SET last = max(last, excluded.last)"

/* Schema 5: the idempotency keys of recent submits (master/idem.h), one
   row per owner ("" = nobody) and key; pruned by age, a scan (an hour's
   submits at most: no index on created to pay for on every insert). */
#define SUBMIT_KEYS_TABLE \
    "CREATE TABLE IF NOT EXISTS submit_keys(owner TEXT NOT NULL, key TEXT NOT NULL," \
    " job INTEGER NOT NULL, accepted INTEGER NOT NULL, created REAL NOT NULL," \
    " PRIMARY KEY(owner, key)) WITHOUT ROWID;"

static const char *const SCHEMA =
    /* Ids are never reused after a job is forgotten, so a late result for
       a forgotten task can never land on a new one. Jobs: AUTOINCREMENT
       (one row per job, its cost does not matter). Tasks: AUTOINCREMENT
       would read and write sqlite_sequence on every insert (a fifth of an
       insert's instructions); instead the highest id goes to last_ids
       when tasks are deleted, the only time it could be lost. Schema 2
       databases keep their AUTOINCREMENT tasks table (still correct). */
    "CREATE TABLE jobs("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  name TEXT,"
    "  closed INTEGER NOT NULL DEFAULT 0,"
    "  created REAL NOT NULL,"
    "  finished REAL NOT NULL DEFAULT 0,"
    "  owner TEXT,"
    "  held INTEGER NOT NULL DEFAULT 0,"          /* ztask hold JOB */
    "  max_running INTEGER NOT NULL DEFAULT 0,"   /* 0 = no limit */
    "  definition TEXT);"                         /* JSON: what it was submitted as */
    "CREATE TABLE tasks("
    "  id INTEGER PRIMARY KEY,"
    "  job INTEGER NOT NULL,"
    "  idx INTEGER NOT NULL,"
    "  name TEXT,"
    "  priority INTEGER NOT NULL,"
    "  retries INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL DEFAULT 0,"
    "  worker TEXT,"
    "  worker_key TEXT,"
    "  spec TEXT NOT NULL,"
    "  needs TEXT,"
    "  outcome TEXT,"
    "  started REAL NOT NULL DEFAULT 0,"
    "  finished REAL NOT NULL DEFAULT 0,"
    "  held INTEGER NOT NULL DEFAULT 0,"          /* ztask hold JOB.INDEX */
    /* Attempts before its last `ztask retry`: its retries count from there. */
    "  retry_base INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX tasks_job ON tasks(job);"
    "CREATE INDEX tasks_job_idx ON tasks(job, idx);"
    TASKS_FAILED_INDEX
    "CREATE TABLE duplicates("
    "  id INTEGER PRIMARY KEY,"
    "  task INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL,"
    "  worker TEXT,"
    "  outcome TEXT,"
    "  received REAL NOT NULL);"
    "CREATE INDEX duplicates_task ON duplicates(task);"
    LAST_IDS_TABLE
    SUBMIT_KEYS_TABLE
    ALLOC_QUEUES_TABLE
    JOB_DEPS_TABLE;

/* Columns read into a store_task_row_t, in this order (see s_task_row). */
#define TASK_COLS \
    "id, job, idx, name, state, attempt, retries, priority, worker, outcome, started, finished, " \
    "needs, held, retry_base"

/* A spec's size in bytes (length() of text counts characters). */
#define SPEC_BYTES "length(CAST(spec AS BLOB))"

/* Rows per multi-row insert (measured: 16 rows cost ~7,800 instructions
   each, 4 rows ~10,400, single rows ~16,100; more rows gain little). */
#define STORE_INSERT_ROWS 16
#define INSERT_ROW "(?,?,?,?,?,?,0,?,?)"
#define INSERT_ROWS4 INSERT_ROW "," INSERT_ROW "," INSERT_ROW "," INSERT_ROW
#define INSERT_ROWS16 INSERT_ROWS4 "," INSERT_ROWS4 "," INSERT_ROWS4 "," INSERT_ROWS4
#define INSERT_ROW_PARAMS 8

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_JOB_CREATE,
    S_JOB_CLOSE,
    S_JOB_FINISHED,
    S_JOB_DEL_DUPS,
    S_JOB_DEL_TASKS,
    S_JOB_DEL,
    S_JOB_DEL_DEPS,
    S_DEP_ADD,
    S_DEPS,
    S_TASK_ENDS,
    S_TASK_IDS_KEEP,
    S_TASK_LAST_ID,
    S_JOBS,
    S_JOB_HELD,
    S_JOB_SHOW,
    S_JOB_TASKS_RELEASE,
    S_JOB_LIMIT,
    S_JOB_PRIORITY,
    S_TASK_HELD,
    S_COUNTS,
    S_TASK_INSERT,
    S_TASK_INSERT_MANY,
    S_TASK_SPEC,
    S_TASK_RUNNING,
    S_TASK_REQUEUE,
    S_TASK_RETRY,
    S_TASK_FINISH,
    S_JOB_CANCEL_QUEUED,
    S_DUP_ADD,
    S_DUP_COUNT,
    S_DUP_COUNT_ALL,
    S_UNFINISHED,
    S_RESULTS,
    S_RESULTS_FAILED,
    S_DEP_FAILED_EACH,
    S_RETRYABLE,
    S_TASK_FIND,
    S_TASK_GET,
    S_CHECK,
    S_KEY_ADD,
    S_KEYS_PRUNE,
    S_KEYS,
    S_PROBE,
    S_SPECS_FROM,
    S_ALLOC_SAVE,
    S_ALLOC_IDS_KEEP,
    S_ALLOC_DEL,
    S_ALLOCS,
    S_ALLOC_LAST_ID,
    S_COUNT_
};

/* INDEXED BY pins the plans the indexes exist for: if a schema change ever
   made one unusable, store_new fails instead of silently scanning. */
static const char *const SQL[S_COUNT_] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    /* ?3 NULL: SQLite picks the next id. */
    [S_JOB_CREATE] = "INSERT INTO jobs(id, name, created, owner, max_running, definition) "
                     "VALUES (?3, ?1, ?2, ?4, ?5, ?6)",
    [S_JOB_CLOSE] = "UPDATE jobs SET closed = 1 WHERE id = ?1",
    [S_JOB_FINISHED] = "UPDATE jobs SET finished = ?2 WHERE id = ?1",
    [S_JOB_DEL_DUPS] = "DELETE FROM duplicates WHERE task IN "
                       "(SELECT id FROM tasks INDEXED BY tasks_job WHERE job = ?1)",
    [S_JOB_DEL_TASKS] = "DELETE FROM tasks WHERE job = ?1",
    [S_JOB_DEL] = "DELETE FROM jobs WHERE id = ?1",
    [S_JOB_DEL_DEPS] = "DELETE FROM job_deps WHERE job = ?1",
    [S_DEP_ADD] = "INSERT INTO job_deps(job, parent, kind) VALUES (?1, ?2, ?3)",
    [S_DEPS] = "SELECT job, parent, kind FROM job_deps ORDER BY job, rowid",
    [S_TASK_ENDS] = "SELECT idx, state FROM tasks INDEXED BY tasks_job_idx "
                    "WHERE job = ?1 AND state >= 3",
    /* Before tasks are deleted: remember the highest id (WHERE true: the
       upsert after a SELECT needs it to parse). */
    [S_TASK_IDS_KEEP] = "INSERT INTO last_ids(name, last) "
                        "SELECT 'tasks', coalesce(max(id), 0) FROM tasks WHERE true "
                        "ON CONFLICT(name) DO UPDATE SET last = max(last, excluded.last)",
    /* sqlite_sequence: schema 2 tables (it always exists: jobs use it). */
    [S_TASK_LAST_ID] = "SELECT max(coalesce((SELECT max(id) FROM tasks), 0), "
                       "coalesce((SELECT last FROM last_ids WHERE name = 'tasks'), 0), "
                       "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0))",
    [S_JOBS] = "SELECT id, name, closed, created, finished, owner, held, max_running "
               "FROM jobs ORDER BY id",
    /* Read only for `ztask show`: definitions stay out of memory. */
    [S_JOB_SHOW] = "SELECT definition, (SELECT spec FROM tasks INDEXED BY tasks_job "
                   "WHERE job = ?1 ORDER BY id LIMIT 1) FROM jobs WHERE id = ?1",
    [S_JOB_HELD] = "UPDATE jobs SET held = ?2 WHERE id = ?1",
    /* A released job releases every task held alone too. */
    [S_JOB_TASKS_RELEASE] = "UPDATE tasks INDEXED BY tasks_job SET held = 0 "
                            "WHERE job = ?1 AND held = 1",
    [S_JOB_LIMIT] = "UPDATE jobs SET max_running = ?2 WHERE id = ?1",
    [S_JOB_PRIORITY] = "UPDATE tasks INDEXED BY tasks_job SET priority = ?2 "
                       "WHERE job = ?1 AND state < 3",
    [S_TASK_HELD] = "UPDATE tasks SET held = ?2 WHERE id = ?1",
    /* Spec bytes only of unfinished tasks (what quotas count): a finished
       task's spec is not read. */
    [S_COUNTS] = "SELECT job, state, count(*), "
                 "sum(CASE WHEN state < 3 THEN " SPEC_BYTES " ELSE 0 END) "
                 "FROM tasks GROUP BY job, state",
    [S_TASK_INSERT] = "INSERT INTO tasks(id, job, idx, name, priority, retries, state, spec, needs) "
                      "VALUES (?8, ?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)",
    /* STORE_INSERT_ROWS rows of (id, job, idx, name, priority, retries,
       spec, needs): one statement opens the table and index cursors once
       for all of them, about half the instructions of single inserts. */
    [S_TASK_INSERT_MANY] = "INSERT INTO tasks(id, job, idx, name, priority, retries, state, spec, "
                           "needs) VALUES " INSERT_ROWS16,
    [S_TASK_SPEC] = "SELECT spec FROM tasks WHERE id = ?1",
    /* A new attempt (ASSIGNED) has not started yet: clear the old start. */
    [S_TASK_RUNNING] = "UPDATE tasks SET state = ?2, attempt = ?3, worker = ?4, "
                       "started = CASE WHEN ?2 = 2 THEN ?5 ELSE 0 END, worker_key = ?6 "
                       "WHERE id = ?1",
    /* The attempt that was out: an assignment younger than ASSIGN_WRITE_MS
       was never written, and without it a restart would find the attempt
       before, refuse the next attempt's claim (one above the stored one)
       and send that number again (scn_recall). */
    [S_TASK_REQUEUE] = "UPDATE tasks SET state = 0, attempt = max(attempt, ?2), worker = NULL, "
                       "worker_key = NULL, started = 0 WHERE id = ?1",
    /* The outcome of the attempt that failed or was cancelled goes: the
       row shows the new attempt (queued, then how it ends). */
    [S_TASK_RETRY] = "UPDATE tasks SET state = 0, worker = NULL, worker_key = NULL, "
                     "outcome = NULL, started = 0, finished = 0, retry_base = attempt "
                     "WHERE id = ?1 AND " TASKS_FAILED_WHERE,
    [S_TASK_FINISH] = "UPDATE tasks SET state = ?2, attempt = ?3, worker = ?4, outcome = ?5, "
                      "finished = ?6 WHERE id = ?1",
    [S_JOB_CANCEL_QUEUED] = "UPDATE tasks INDEXED BY tasks_job SET state = 5, finished = ?2 "
                            "WHERE job = ?1 AND state = 0",
    [S_DUP_ADD] = "INSERT INTO duplicates(task, attempt, worker, outcome, received) "
                  "VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_DUP_COUNT] = "SELECT count(*) FROM duplicates WHERE task = ?1",
    [S_DUP_COUNT_ALL] = "SELECT count(*) FROM duplicates",
    [S_UNFINISHED] = "SELECT " TASK_COLS ", " SPEC_BYTES ", worker_key FROM tasks "
                     "WHERE state < 3 ORDER BY id",
    [S_RESULTS] = "SELECT " TASK_COLS " FROM tasks INDEXED BY tasks_job "
                  "WHERE job = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    [S_RESULTS_FAILED] = "SELECT " TASK_COLS " FROM tasks INDEXED BY tasks_failed "
                         "WHERE job = ?1 AND id > ?2 AND " TASKS_FAILED_WHERE " ORDER BY id LIMIT ?3",
    [S_DEP_FAILED_EACH] = "SELECT " TASK_COLS ", " SPEC_BYTES " FROM tasks INDEXED BY tasks_failed "
                          "WHERE job = ?1 AND " TASKS_FAILED_WHERE " AND state = 6 ORDER BY id",
    [S_RETRYABLE] = "SELECT " TASK_COLS ", " SPEC_BYTES " FROM tasks INDEXED BY tasks_failed "
                    "WHERE job = ?1 AND " TASKS_FAILED_WHERE " AND state <> 6 ORDER BY id",
    [S_TASK_FIND] = "SELECT id FROM tasks INDEXED BY tasks_job_idx "
                    "WHERE job = ?1 AND idx = ?2 ORDER BY id LIMIT 1",
    [S_TASK_GET] = "SELECT " TASK_COLS " FROM tasks WHERE id = ?1",
    [S_CHECK] = "PRAGMA integrity_check",
    /* OR REPLACE: a key pruned from memory may come back before the
       prune of its row is committed (submits are written first). */
    [S_KEY_ADD] = "INSERT OR REPLACE INTO submit_keys(owner, key, job, accepted, created) "
                  "VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_KEYS_PRUNE] = "DELETE FROM submit_keys WHERE created < ?1",
    [S_KEYS] = "SELECT owner, key, job, accepted, created FROM submit_keys "
               "WHERE created >= ?1 ORDER BY created",
    /* One small row rewritten: whether a commit fits on the disk again. */
    [S_PROBE] = "INSERT OR REPLACE INTO last_ids(name, last) VALUES ('probe', 0)",
    /* A rowid range: the read-ahead of specs at dispatch. */
    [S_SPECS_FROM] = "SELECT id, spec FROM tasks WHERE id >= ?1 ORDER BY id LIMIT ?2",
    [S_ALLOC_SAVE] = "INSERT INTO alloc_queues(id, def) VALUES (?1, ?2) "
                     "ON CONFLICT(id) DO UPDATE SET def = excluded.def",
    /* Before a queue is deleted: remember the highest id (schema 14). */
    [S_ALLOC_IDS_KEEP] = ALLOC_IDS_KEEP,
    [S_ALLOC_DEL] = "DELETE FROM alloc_queues WHERE id = ?1",
    [S_ALLOCS] = "SELECT id, def FROM alloc_queues ORDER BY id",
    [S_ALLOC_LAST_ID] = "SELECT max(coalesce((SELECT max(id) FROM alloc_queues), 0), "
                        "coalesce((SELECT last FROM last_ids WHERE name = 'alloc_queues'), 0))",
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT_];
    /* A statement handed out and not yet released: a callback that calls
       the same iterator again would otherwise reset it under its caller. */
    bool busy[S_COUNT_];
    bool in_tx;          /* we opened a transaction and have not ended it */
    bool poisoned;       /* a write failed; the group was rolled back */
    store_sync_t sync;   /* the mode it was opened with */
    bool fsync_next;     /* ACKED: synchronous is FULL now, not NORMAL */
    bool unsynced;       /* ACKED: the WAL may hold commits not fsynced (one
                            made with NORMAL since the last fsynced one;
                            the WAL found at open is fsynced by store_new) */
    char err[512];
    char poison[512];    /* why (reported by the next store_commit) */
};

__attribute__((format(printf, 2, 3))) static void s_seterr(store_t *self, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->err, sizeof self->err, fmt, ap);
    va_end(ap);
}

/* Records "what: <sqlite message>"; call right after the failing call,
   before anything else touches the connection. */
static int s_dberr(store_t *self, const char *what)
{
    s_seterr(self, "%s: %s", what, sqlite3_errmsg(self->db));
    return -1;
}

/* Hands out a prepared statement for one use; NULL if it is in use by a
   caller up the stack (a re-entrant call from a callback). */
static sqlite3_stmt *s_get(store_t *self, int id, const char *what)
{
    if (self->busy[id]) {
        s_seterr(self, "%s: called again from its own callback", what);
        return NULL;
    }
    self->busy[id] = true;
    return self->stmt[id];
}

static void s_put(store_t *self, int id)
{
    sqlite3_reset(self->stmt[id]);
    sqlite3_clear_bindings(self->stmt[id]);
    self->busy[id] = false;
}

/* Rolls back whatever transaction is open on the connection (SQLite may
   already have done it) and forgets ours. */
static void s_rollback_now(store_t *self)
{
    if (!sqlite3_get_autocommit(self->db)) {
        sqlite3_stmt *st = self->stmt[S_ROLLBACK];
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    self->in_tx = false;
}

/* A write failed: see "A failed write poisons" above. self->err already
   holds the reason. */
static int s_poison(store_t *self)
{
    if (self->in_tx) {
        s_rollback_now(self);
        self->poisoned = true;
        memcpy(self->poison, self->err, sizeof self->poison);
    }
    return -1;
}

/* Every write starts here: refuses while poisoned, opens the group's
   transaction when none is open. */
static int s_write_begin(store_t *self, const char *what)
{
    if (self->poisoned) {
        s_seterr(self, "%s: an earlier write failed (%s); commit or roll back first", what,
                 self->poison);
        return -1;
    }
    if (self->in_tx) {
        if (!sqlite3_get_autocommit(self->db))
            return 0;
        /* SQLite rolled our transaction back by itself (an I/O error in a
           read, say): writing on would commit row by row. */
        s_seterr(self, "%s: the open transaction was rolled back by SQLite", what);
        self->in_tx = false;
        self->poisoned = true;
        memcpy(self->poison, self->err, sizeof self->poison);
        return -1;
    }
    sqlite3_stmt *st = self->stmt[S_BEGIN];
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        s_dberr(self, "begin");
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    self->in_tx = true;
    return 0;
}

/* Steps a write statement to completion and releases it; on failure
   poisons the transaction. *changes (may be NULL) gets the rows changed. */
static int s_write_step(store_t *self, int id, const char *what, int64_t *changes)
{
    int rc = sqlite3_step(self->stmt[id]);
    if (rc != SQLITE_DONE) {
        s_dberr(self, what);
        s_put(self, id);
        return s_poison(self);
    }
    if (changes)
        *changes = sqlite3_changes64(self->db);
    s_put(self, id);
    return 0;
}

static int s_bind_text(sqlite3_stmt *st, int i, const char *text)
{
    /* SQLITE_STATIC: every statement is stepped and reset before we return. */
    return text ? sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static int s_state_from_db(store_t *self, int64_t v, int64_t task, proto_state_t *st)
{
    if (v < PROTO_ST_QUEUED || v > PROTO_ST_DEP_FAILED) {
        s_seterr(self, "corrupt state %lld in task %lld", (long long)v, (long long)task);
        return -1;
    }
    *st = (proto_state_t)v;
    return 0;
}

/* Fills row from the current result row of a TASK_COLS query. Strings stay
   valid until the statement is stepped or reset. */
static int s_task_row(store_t *self, sqlite3_stmt *st, store_task_row_t *row)
{
    memset(row, 0, sizeof *row);
    row->id = sqlite3_column_int64(st, 0);
    row->job = sqlite3_column_int64(st, 1);
    row->index = sqlite3_column_int64(st, 2);
    /* The header promises a name: a task without one reads back as "". */
    const char *name = (const char *)sqlite3_column_text(st, 3);
    row->name = name ? name : "";
    if (s_state_from_db(self, sqlite3_column_int64(st, 4), row->id, &row->state) < 0)
        return -1;
    row->attempt = sqlite3_column_int(st, 5);
    row->retries = sqlite3_column_int(st, 6);
    row->priority = sqlite3_column_int(st, 7);
    row->worker = (const char *)sqlite3_column_text(st, 8);
    row->outcome_json = (const char *)sqlite3_column_text(st, 9);
    row->started = sqlite3_column_double(st, 10);
    row->finished = sqlite3_column_double(st, 11);
    row->needs = (const char *)sqlite3_column_text(st, 12);
    row->held = sqlite3_column_int(st, 13) != 0;
    row->retry_base = sqlite3_column_int(st, 14);
    /* S_UNFINISHED adds the spec's size and the worker's key,
       S_RETRYABLE the spec's size. */
    int ncols = sqlite3_column_count(st);
    if (ncols > 15)
        row->spec_bytes = sqlite3_column_int64(st, 15);
    if (ncols > 16)
        row->worker_key = (const char *)sqlite3_column_text(st, 16);
    return 0;
}

/* Steps a TASK_COLS query, calling fn (if any) per row, then releases it. */
static int s_task_rows(store_t *self, int id, const char *what,
                       int (*fn)(const store_task_row_t *row, void *arg), void *arg,
                       int64_t *last_id, int64_t *nrows)
{
    sqlite3_stmt *st = self->stmt[id];
    int64_t last = -1, n = 0;
    int rc, result = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_task_row_t row;
        if (s_task_row(self, st, &row) < 0) {
            result = -1;
            break;
        }
        last = row.id;
        n++;
        if (fn && fn(&row, arg) != 0)
            break;
    }
    if (result == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = s_dberr(self, what);
    s_put(self, id);
    if (last_id)
        *last_id = last;
    if (nrows)
        *nrows = n;
    return result;
}

/* ---- open / close ---- */

static int s_exec(sqlite3 *db, const char *sql, char *err, size_t errlen, const char *what)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", what, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Runs a one-row, one-column query; the text result is copied to out. */
static int s_query_text(sqlite3 *db, const char *sql, char *out, size_t outlen, char *err,
                        size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", sql, sqlite3_errmsg(db));
        return -1;
    }
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "%s: %s", sql,
                 rc == SQLITE_DONE ? "no result" : sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    const char *text = (const char *)sqlite3_column_text(st, 0);
    snprintf(out, outlen, "%s", text ? text : "");
    sqlite3_finalize(st);
    return 0;
}

static int s_query_int(sqlite3 *db, const char *sql, int64_t *out, char *err, size_t errlen)
{
    char text[64];
    if (s_query_text(db, sql, text, sizeof text, err, errlen) < 0)
        return -1;
    if (parse_int64(text, INT64_MIN, INT64_MAX, out) < 0) {
        snprintf(err, errlen, "%s: unexpected result '%s'", sql, text);
        return -1;
    }
    return 0;
}

/* Brings a database of an older schema to ours, one step per version it
   lacks, inside the caller's transaction. Cheap steps only, whatever the
   size of the file: a schema 2 tasks table keeps its AUTOINCREMENT
   (rebuilding it would copy every row); adding a column or a table
   rewrites no row. Jobs from before schema 4 have no owner: every client
   may act on them, as before (docs/security.md). */
static int s_upgrade(sqlite3 *db, int64_t version, char *err, size_t errlen)
{
    int rc = 0;
    if (version < 2)
        rc = s_exec(db, "DROP INDEX IF EXISTS tasks_unfinished", err, errlen,
                    "upgrade schema 1 to 2");
    if (rc == 0 && version < 3)
        rc = s_exec(db, LAST_IDS_TABLE, err, errlen, "upgrade schema to 3");
    if (rc == 0 && version < 4)
        rc = s_exec(db, JOBS_OWNER_COLUMN, err, errlen, "upgrade schema to 4");
    /* Schema 5 landed after 8, 11 and 12 too: a database already past 5
       may lack its table, which IF NOT EXISTS makes at any version. */
    if (rc == 0)
        rc = s_exec(db, SUBMIT_KEYS_TABLE, err, errlen, "upgrade schema to 5");
    if (rc == 0 && version < 8)
        rc = s_exec(db, ALLOC_QUEUES_TABLE, err, errlen, "upgrade schema to 8");
    if (rc == 0 && version < 11)
        rc = s_exec(db, TASKS_WORKER_KEY_COLUMN, err, errlen, "upgrade schema to 11");
    /* Schema 6 landed after 8 and 11 (branches merged out of order): a
       database already past 6 may lack its columns, so the step asks the
       table. */
    int64_t has_held = 0;
    if (rc == 0)
        rc = s_query_int(db, "SELECT count(*) FROM pragma_table_info('tasks') WHERE name = 'held'",
                         &has_held, err, errlen);
    if (rc == 0 && !has_held)
        rc = s_exec(db, OPS_COLUMNS, err, errlen, "upgrade schema to 6");
    /* Dependencies (dep_failed tasks, state 6, join tasks_failed at 15). */
    if (rc == 0 && version < 13)
        rc = s_exec(db, JOB_DEPS_TABLE, err, errlen, "upgrade schema to 13");
    /* Steps may land out of order (above): a database that skipped this
       one still reads right, as the last id is the higher of the rows
       and the mark. */
    if (rc == 0 && version < 14)
        rc = s_exec(db, ALLOC_IDS_KEEP, err, errlen, "upgrade schema to 14");
    /* tasks_failed: 12 made it take cancelled tasks too (before, failed
       only), 13 dep_failed ones, 15 wrote its predicate as a range
       (TASKS_FAILED_WHERE). One rebuild for the three, whichever the
       database lacks: one read of the tasks table, an entry per task that
       did not succeed. */
    if (rc == 0 && version < 15)
        rc = s_exec(db, "DROP INDEX IF EXISTS tasks_failed;" TASKS_FAILED_INDEX, err, errlen,
                    "upgrade schema to 15");
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
    if (rc == 0)
        rc = s_exec(db, sql, err, errlen, "upgrade schema");
    return rc;
}

/* Creates the schema in an empty database, accepts ours, refuses the rest.
   The check runs inside a write transaction so two processes opening a new
   file at once cannot both create it. */
static int s_schema(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    if (s_exec(db, "BEGIN IMMEDIATE", err, errlen, path) < 0)
        return -1;
    int64_t version = 0, objects = 0;
    int rc = s_query_int(db, "PRAGMA user_version", &version, err, errlen);
    if (rc == 0 && version == 0) {
        rc = s_query_int(db, "SELECT count(*) FROM sqlite_schema", &objects, err, errlen);
        if (rc == 0 && objects > 0) {
            snprintf(err, errlen, "%s: not a ztask database (it has tables but no schema version)",
                     path);
            rc = -1;
        }
        if (rc == 0)
            rc = s_exec(db, SCHEMA, err, errlen, "create schema");
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
        if (rc == 0)
            rc = s_exec(db, sql, err, errlen, "create schema");
    } else if (rc == 0 && version >= 1 && version <= STORE_SCHEMA_VERSION) {
        /* At our version too: the step of schema 6 asks the table (see
           s_upgrade). */
        rc = s_upgrade(db, version, err, errlen);
    } else if (rc == 0 && version > STORE_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "%s: database schema version %lld is newer than this ztask supports (%d); "
                 "use a newer ztask-master",
                 path, (long long)version, STORE_SCHEMA_VERSION);
        rc = -1;
    } else if (rc == 0 && version < 0) {
        snprintf(err, errlen, "%s: bad schema version %lld", path, (long long)version);
        rc = -1;
    }
    if (rc == 0)
        rc = s_exec(db, "COMMIT", err, errlen, "create schema");
    if (rc < 0 && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int s_configure(sqlite3 *db, const char *path, store_sync_t sync, char *err,
                       size_t errlen)
{
    static const char *const sync_sql[] = {
        [STORE_SYNC_FULL] = "PRAGMA synchronous = FULL",
        [STORE_SYNC_INTERVAL] = "PRAGMA synchronous = NORMAL",
        [STORE_SYNC_OFF] = "PRAGMA synchronous = OFF",
        [STORE_SYNC_ACKED] = "PRAGMA synchronous = NORMAL",
    };
    if ((unsigned)sync > STORE_SYNC_ACKED) {
        snprintf(err, errlen, "bad sync mode %d", (int)sync);
        return -1;
    }
    /* One master owns the file: the lock is taken at the first read and
       kept, so a second master on the same file stops here with "database
       is locked" instead of writing rows beside ours, and with no other
       reader to share it with, WAL keeps its index in memory (no -shm
       file) and a commit takes no file locks (~4 fcntl calls less each,
       which on a VM is most of a small commit's system calls). */
    if (s_exec(db, "PRAGMA locking_mode = EXCLUSIVE", err, errlen, path) < 0)
        return -1;
    /* Only a new file takes it (before WAL mode writes its first page),
       an older one ignores it: pages freed by a forget are given back to
       the file system (store_vacuum) instead of kept. */
    if (s_exec(db, "PRAGMA auto_vacuum = INCREMENTAL", err, errlen, path) < 0) {
        if (sqlite3_errcode(db) == SQLITE_BUSY)
            snprintf(err, errlen,
                     "%s is locked: another ztask-master is using it (one master per database)",
                     path);
        return -1;
    }
    /* The first statement that reads the file: a file that is not a
       database fails here ("file is not a database"), one another master
       holds with "database is locked". */
    char mode[32];
    if (s_query_text(db, "PRAGMA journal_mode = WAL", mode, sizeof mode, err, errlen) < 0) {
        if (sqlite3_errcode(db) == SQLITE_BUSY)
            snprintf(err, errlen,
                     "%s is locked: another ztask-master is using it (one master per database)",
                     path);
        return -1;
    }
    /* Only now the busy timeout: the lock above is taken without one, so
       a second master is refused at once rather than after waiting it
       out for a lock that is never given back. */
    if (sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
        return -1;
    }
    /* In-memory databases answer "memory": WAL does not apply to them. */
    if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0) {
        snprintf(err, errlen, "%s: cannot use WAL (journal_mode is %s)", path, mode);
        return -1;
    }
    char extra[128];
    snprintf(extra, sizeof extra, "PRAGMA journal_size_limit = %d; PRAGMA cache_size = -%d;",
             STORE_WAL_SIZE_LIMIT, STORE_CACHE_KIB);
    if (s_exec(db, sync_sql[sync], err, errlen, path) < 0 ||
        s_exec(db, extra, err, errlen, path) < 0)
        return -1;
    return 0;
}

void store_process_init(void)
{
    /* SQLITE_MISUSE if SQLite is already initialized: then it stays as it is. */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* A plain file path (not ":memory:", "" or a "file:" URI). */
static bool s_plain_path(const char *path)
{
    return *path && strcmp(path, ":memory:") != 0 && strncmp(path, "file:", 5) != 0;
}

/* Creates a missing database file empty with mode 0600 (SQLite takes an
   empty file as a new database): SQLite itself would create it 0644 less
   the umask, and it gives the -wal and -shm files the database's mode, so
   this one mode keeps every task's spec (env, stdin: tokens) and output
   from other local users, whatever the umask. When it cannot (a missing
   directory, no right to write there), SQLite's open fails the same way
   right after and says so in its words. */
static void s_create_private(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
}

int store_file_mode(const char *path)
{
    struct stat st;
    if (!path || !s_plain_path(path) || stat(path, &st) != 0)
        return -1;
    return (int) (st.st_mode & 07777);
}

/* fsyncs the WAL file as it is, whatever the mode: SQLite's own handle of
   it (sqlite3PagerJrnlFile), the same xSync it makes at a commit with
   synchronous=FULL. None open means no WAL (":memory:"). */
static int s_wal_fsync(store_t *self)
{
    sqlite3_file *wal = NULL;
    if (sqlite3_file_control(self->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal) != SQLITE_OK)
        return s_dberr(self, "fsync of the WAL");
    if (wal && wal->pMethods) {
        int rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
        if (rc != SQLITE_OK) {
            s_seterr(self, "fsync of the WAL: %s", sqlite3_errstr(rc));
            return -1;
        }
    }
    return 0;
}

store_t *store_new(const char *path, store_sync_t sync, char *err, size_t errlen)
{
    char scratch[8];
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = '\0';
    if (!path) {
        snprintf(err, errlen, "no database path");
        return NULL;
    }
    if (s_plain_path(path))
        s_create_private(path);
    store_t *self = xcalloc(1, sizeof *self);
    /* URI names ("file:...?mode=...") are allowed so tests and operators
       can pass SQLite options; a plain path behaves as usual. */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI |
                SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &self->db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path,
                 self->db ? sqlite3_errmsg(self->db) : sqlite3_errstr(rc));
        store_destroy(&self);
        return NULL;
    }
    sqlite3_extended_result_codes(self->db, 1);
    self->sync = sync;
    if (s_configure(self->db, path, sync, err, errlen) < 0 ||
        s_schema(self->db, path, err, errlen) < 0) {
        store_destroy(&self);
        return NULL;
    }
    /* The WAL found may hold a killed master's commits never fsynced (one
       run --sync acked, interval or off: in the page cache only), and
       this one answers from them whatever its own mode: they are made
       durable before anything is read. (The commits of the open itself
       fsync them too today, by accident: PRAGMA auto_vacuum rewrites page 1
       at SQLite's default synchronous, FULL in this build, before ours is
       set; neither that order nor that default is ours to count on.) */
    if (s_wal_fsync(self) != 0) {
        snprintf(err, errlen, "%s: %s (the master answers from it only once it is on disk: see "
                 "the system log for disk errors)", path, self->err);
        store_destroy(&self);
        return NULL;
    }
    for (int i = 0; i < S_COUNT_; i++) {
        rc = sqlite3_prepare_v3(self->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT,
                                &self->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            snprintf(err, errlen, "prepare '%s': %s", SQL[i], sqlite3_errmsg(self->db));
            store_destroy(&self);
            return NULL;
        }
    }
    return self;
}

void store_destroy(store_t **p)
{
    if (!p || !*p)
        return;
    store_t *self = *p;
    *p = NULL;
    /* An open transaction is rolled back by the close: uncommitted writes
       are gone, as after a crash. */
    for (int i = 0; i < S_COUNT_; i++)
        sqlite3_finalize(self->stmt[i]);
    if (self->db)
        sqlite3_close(self->db);
    free(self);
}

const char *store_error(const store_t *self)
{
    return self ? self->err : "no store";
}

/* ---- transactions ---- */

int store_commit(store_t *self)
{
    /* SQLite fsyncs the WAL only at a commit that appends frames to it.
       One whose writes changed no page (a DELETE that matched nothing, a
       row rewritten as it was: a claim after a restart) appends none, and
       the commits before it, only written, would stay so while the caller
       is told they are durable. Which commit changes no page is not known
       here, so every fsynced commit that follows commits only written gets
       the probe row: a page it always writes. */
    if (!self->poisoned && self->sync == STORE_SYNC_ACKED && self->fsync_next && self->unsynced
        && store_probe(self) != 0 && !self->poisoned) {
        s_rollback_now(self);   /* its begin failed: nothing of ours is open */
        return -1;
    }
    if (self->poisoned) {
        s_seterr(self, "commit: transaction rolled back after a failed write: %s", self->poison);
        self->poisoned = false;
        return -1;
    }
    if (!self->in_tx)
        return 0;
    if (sqlite3_get_autocommit(self->db)) {
        self->in_tx = false;
        s_seterr(self, "commit: the open transaction was rolled back by SQLite");
        return -1;
    }
    sqlite3_stmt *st = self->stmt[S_COMMIT];
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        s_dberr(self, "commit");
        sqlite3_reset(st);
        /* SQLite rolls back by itself after some failures (SQLITE_FULL,
           I/O errors) and keeps the transaction open after others
           (SQLITE_BUSY); the contract is "rolled back" either way. */
        s_rollback_now(self);
        return -1;
    }
    sqlite3_reset(st);
    self->in_tx = false;
    if (self->sync == STORE_SYNC_ACKED)
        self->unsynced = !self->fsync_next;
    return 0;
}

void store_rollback(store_t *self)
{
    self->poisoned = false;
    if (self->in_tx)
        s_rollback_now(self);
}

store_sync_t store_sync_mode(const store_t *self)
{
    return self->sync;
}

int store_fsync_next(store_t *self, bool fsync)
{
    assert(!self->in_tx);
    if (self->sync != STORE_SYNC_ACKED || fsync == self->fsync_next)
        return 0;
    /* A flag of the connection's pager, read at each commit: no I/O. */
    char *msg = NULL;
    if (sqlite3_exec(self->db, fsync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                     NULL, NULL, &msg) != SQLITE_OK) {
        s_seterr(self, "synchronous: %s", msg ? msg : sqlite3_errmsg(self->db));
        sqlite3_free(msg);
        return -1;
    }
    self->fsync_next = fsync;
    return 0;
}

int store_sync_wal(store_t *self)
{
    assert(!self->in_tx);
    if (self->sync != STORE_SYNC_ACKED || !self->unsynced)
        return 0;
    if (s_wal_fsync(self) != 0)
        return -1;
    self->unsynced = false;
    return 0;
}

bool store_dirty(const store_t *self)
{
    /* Poisoned counts as dirty so the caller's next store_commit reports it. */
    return self->in_tx || self->poisoned;
}

/* The one integer a prepared statement of one row answers (the last
   ids below). */
static int s_stmt_int(store_t *self, int id, const char *what, int64_t *out)
{
    sqlite3_stmt *st = s_get(self, id, what);
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        s_dberr(self, what);
    s_put(self, id);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* The highest task id ever used: in the table, kept in last_ids by a
   delete, or in sqlite_sequence (schema 2). */
static int s_last_task_id(store_t *self, int64_t *out)
{
    return s_stmt_int(self, S_TASK_LAST_ID, "last task id", out);
}

int store_last_ids(store_t *self, int64_t *job, int64_t *task)
{
    if (s_query_int(self->db,
                    "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0)",
                    job, self->err, sizeof self->err) != 0)
        return -1;
    return s_last_task_id(self, task);
}

/* ---- jobs ---- */

int store_job_create(store_t *self, const store_job_new_t *job, int64_t *job_id)
{
    if (s_write_begin(self, "job create") < 0)
        return -1;
    sqlite3_stmt *st = self->stmt[S_JOB_CREATE];
    s_bind_text(st, 1, job->name);
    sqlite3_bind_double(st, 2, job->created);
    if (job->id > 0)
        sqlite3_bind_int64(st, 3, job->id);
    else
        sqlite3_bind_null(st, 3);
    s_bind_text(st, 4, job->owner && *job->owner ? job->owner : NULL);
    sqlite3_bind_int(st, 5, job->max_running);
    s_bind_text(st, 6, job->definition);
    if (s_write_step(self, S_JOB_CREATE, "job create", NULL) < 0)
        return -1;
    int64_t id = sqlite3_last_insert_rowid(self->db);
    if (job_id)
        *job_id = id;
    for (int i = 0; i < job->ndeps; i++) {
        sqlite3_stmt *d = self->stmt[S_DEP_ADD];
        sqlite3_bind_int64(d, 1, id);
        sqlite3_bind_int64(d, 2, job->deps[i].job);
        sqlite3_bind_int(d, 3, (int)job->deps[i].kind);
        if (s_write_step(self, S_DEP_ADD, "job dependency", NULL) < 0)
            return -1;
    }
    return 0;
}

int store_deps_each(store_t *self, int (*fn)(int64_t job, const proto_dep_t *dep, void *arg),
                    void *arg)
{
    sqlite3_stmt *st = s_get(self, S_DEPS, "dependencies");
    if (!st)
        return -1;
    int rc, result = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int kind = sqlite3_column_int(st, 2);
        proto_dep_t dep = {.job = sqlite3_column_int64(st, 1), .kind = (proto_dep_kind_t)kind};
        /* A kind this master does not know: the row is left alone. */
        if (!proto_dep_kind_name(dep.kind))
            continue;
        if (fn(sqlite3_column_int64(st, 0), &dep, arg) != 0)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = s_dberr(self, "dependencies");
    s_put(self, S_DEPS);
    return result;
}

int store_task_ends_each(store_t *self, int64_t job,
                         int (*fn)(int64_t index, proto_state_t state, void *arg), void *arg)
{
    sqlite3_stmt *st = s_get(self, S_TASK_ENDS, "task ends");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, job);
    int rc, result = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(sqlite3_column_int64(st, 0), (proto_state_t)sqlite3_column_int(st, 1), arg) != 0)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = s_dberr(self, "task ends");
    s_put(self, S_TASK_ENDS);
    return result;
}

int store_job_close(store_t *self, int64_t job)
{
    if (s_write_begin(self, "job close") < 0)
        return -1;
    sqlite3_bind_int64(self->stmt[S_JOB_CLOSE], 1, job);
    return s_write_step(self, S_JOB_CLOSE, "job close", NULL);
}

int store_job_set_finished(store_t *self, int64_t job, double finished)
{
    if (s_write_begin(self, "job finish") < 0)
        return -1;
    sqlite3_stmt *st = self->stmt[S_JOB_FINISHED];
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_double(st, 2, finished);
    return s_write_step(self, S_JOB_FINISHED, "job finish", NULL);
}

/* Steps one two-integer update (?1 an id, ?2 a value). */
static int s_update2(store_t *self, int id, const char *what, int64_t key, int64_t value)
{
    if (s_write_begin(self, what) < 0)
        return -1;
    sqlite3_stmt *st = self->stmt[id];
    sqlite3_bind_int64(st, 1, key);
    sqlite3_bind_int64(st, 2, value);
    return s_write_step(self, id, what, NULL);
}

int store_job_show(store_t *self, int64_t job, char **definition, char **first_spec)
{
    *definition = *first_spec = NULL;
    sqlite3_stmt *st = s_get(self, S_JOB_SHOW, "job show");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, job);
    int rc = sqlite3_step(st), result = 0;
    if (rc == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(st, 0);
        const char *s = (const char *)sqlite3_column_text(st, 1);
        *definition = d ? xstrdup(d) : NULL;
        *first_spec = s ? xstrdup(s) : NULL;
    } else if (rc != SQLITE_DONE) {
        result = s_dberr(self, "job show");
    }
    s_put(self, S_JOB_SHOW);
    return result;
}

int store_job_set_held(store_t *self, int64_t job, bool held)
{
    if (s_update2(self, S_JOB_HELD, "job hold", job, held) < 0)
        return -1;
    if (held)
        return 0;
    if (s_write_begin(self, "job release") < 0)
        return -1;
    sqlite3_bind_int64(self->stmt[S_JOB_TASKS_RELEASE], 1, job);
    return s_write_step(self, S_JOB_TASKS_RELEASE, "job release", NULL);
}

int store_job_set_limit(store_t *self, int64_t job, int max_running)
{
    return s_update2(self, S_JOB_LIMIT, "job limit", job, max_running);
}

int store_job_set_priority(store_t *self, int64_t job, int32_t priority)
{
    return s_update2(self, S_JOB_PRIORITY, "job priority", job, priority);
}

int store_task_set_held(store_t *self, int64_t task, bool held)
{
    return s_update2(self, S_TASK_HELD, "task hold", task, held);
}

int store_job_delete(store_t *self, int64_t job, int64_t *deleted)
{
    if (deleted)
        *deleted = 0;
    if (s_write_begin(self, "job delete") < 0)
        return -1;
    /* Children first: the duplicates are found through the job's tasks. */
    static const int steps[] = {S_JOB_DEL_DUPS, S_TASK_IDS_KEEP, S_JOB_DEL_TASKS, S_JOB_DEL_DEPS,
                                S_JOB_DEL};
    int64_t changes = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (steps[i] != S_TASK_IDS_KEEP)
            sqlite3_bind_int64(self->stmt[steps[i]], 1, job);
        if (s_write_step(self, steps[i], "job delete", &changes) < 0)
            return -1;
    }
    if (deleted)
        *deleted = changes > 0 ? 1 : 0;
    return 0;
}

int store_probe(store_t *self)
{
    if (s_write_begin(self, "probe") < 0)
        return -1;
    return s_write_step(self, S_PROBE, "probe", NULL);
}

int store_vacuum(store_t *self)
{
    if (s_write_begin(self, "vacuum") < 0)
        return -1;
    char *msg = NULL;
    if (sqlite3_exec(self->db, "PRAGMA incremental_vacuum", NULL, NULL, &msg) != SQLITE_OK) {
        s_seterr(self, "vacuum: %s", msg ? msg : sqlite3_errmsg(self->db));
        sqlite3_free(msg);
        return s_poison(self);
    }
    return 0;
}

bool store_shrinks(store_t *self)
{
    int64_t mode = 0;
    char err[256];
    return s_query_int(self->db, "PRAGMA auto_vacuum", &mode, err, sizeof err) == 0 && mode == 2;
}

int store_checkpoint(store_t *self)
{
    if (self->in_tx)
        return 0;
    int rc = sqlite3_wal_checkpoint_v2(self->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    return rc == SQLITE_OK ? 0 : s_dberr(self, "checkpoint");
}

int store_submit_key_add(store_t *self, const store_key_row_t *row)
{
    if (s_write_begin(self, "submit key") < 0)
        return -1;
    sqlite3_stmt *st = self->stmt[S_KEY_ADD];
    s_bind_text(st, 1, row->owner ? row->owner : "");
    s_bind_text(st, 2, row->key);
    sqlite3_bind_int64(st, 3, row->job);
    sqlite3_bind_int64(st, 4, row->accepted);
    sqlite3_bind_double(st, 5, row->created);
    return s_write_step(self, S_KEY_ADD, "submit key", NULL);
}

int store_submit_keys_prune(store_t *self, double cutoff)
{
    if (s_write_begin(self, "prune submit keys") < 0)
        return -1;
    sqlite3_bind_double(self->stmt[S_KEYS_PRUNE], 1, cutoff);
    return s_write_step(self, S_KEYS_PRUNE, "prune submit keys", NULL);
}

int store_submit_keys_each(store_t *self, double since,
                           int (*fn)(const store_key_row_t *row, void *arg), void *arg)
{
    sqlite3_stmt *st = s_get(self, S_KEYS, "submit keys");
    if (!st)
        return -1;
    sqlite3_bind_double(st, 1, since);
    int rc, result = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *owner = (const char *)sqlite3_column_text(st, 0);
        const char *key = (const char *)sqlite3_column_text(st, 1);
        store_key_row_t row = {
            .owner = owner ? owner : "",
            .key = key ? key : "",
            .job = sqlite3_column_int64(st, 2),
            .accepted = sqlite3_column_int64(st, 3),
            .created = sqlite3_column_double(st, 4),
        };
        if (fn(&row, arg) != 0)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = s_dberr(self, "submit keys");
    s_put(self, S_KEYS);
    return result;
}

int store_jobs_each(store_t *self, int (*fn)(const store_job_row_t *row, void *arg), void *arg)
{
    sqlite3_stmt *st = s_get(self, S_JOBS, "jobs");
    if (!st)
        return -1;
    int rc, result = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_job_row_t row = {
            .id = sqlite3_column_int64(st, 0),
            .name = (const char *)sqlite3_column_text(st, 1),
            .closed = sqlite3_column_int(st, 2) != 0,
            .created = sqlite3_column_double(st, 3),
            .finished = sqlite3_column_double(st, 4),
            .owner = (const char *)sqlite3_column_text(st, 5),
            .held = sqlite3_column_int(st, 6) != 0,
            .max_running = sqlite3_column_int(st, 7),
        };
        if (fn(&row, arg) != 0)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = s_dberr(self, "jobs");
    s_put(self, S_JOBS);
    return result;
}

int store_counts_each(store_t *self,
                      int (*fn)(int64_t job, proto_state_t state, int64_t count, int64_t bytes,
                                void *arg),
                      void *arg)
{
    sqlite3_stmt *st = s_get(self, S_COUNTS, "counts");
    if (!st)
        return -1;
    int rc, result = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t job = sqlite3_column_int64(st, 0);
        proto_state_t state;
        if (s_state_from_db(self, sqlite3_column_int64(st, 1), -1, &state) < 0) {
            result = -1;
            break;
        }
        if (fn(job, state, sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3), arg) != 0)
            break;
    }
    if (result == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = s_dberr(self, "counts");
    s_put(self, S_COUNTS);
    return result;
}

/* ---- tasks ---- */

int store_task_insert(store_t *self, int64_t id, int64_t job, int64_t index, const char *name,
                      int32_t priority, int retries, const char *spec_json, const char *needs,
                      int64_t *task_id)
{
    if (!spec_json) {
        s_seterr(self, "task insert: no spec");
        return -1;
    }
    if (s_write_begin(self, "task insert") < 0)
        return -1;
    /* Not max(id) + 1, which SQLite would pick: ids of deleted tasks stay used. */
    if (id <= 0) {
        if (s_last_task_id(self, &id) != 0)
            return s_poison(self);
        id++;
    }
    sqlite3_stmt *st = self->stmt[S_TASK_INSERT];
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, index);
    s_bind_text(st, 3, name);
    sqlite3_bind_int(st, 4, priority);
    sqlite3_bind_int(st, 5, retries);
    s_bind_text(st, 6, spec_json);
    s_bind_text(st, 7, needs);
    sqlite3_bind_int64(st, 8, id);
    if (s_write_step(self, S_TASK_INSERT, "task insert", NULL) < 0)
        return -1;
    if (task_id)
        *task_id = id;
    return 0;
}

int store_tasks_insert(store_t *self, int64_t job, const store_task_new_t *tasks, size_t n)
{
    size_t i = 0;
    for (; i < n; i++)
        if (tasks[i].id <= 0 || !tasks[i].spec_json) {
            s_seterr(self, "tasks insert: task %zu has no id or no spec", i);
            return -1;
        }
    if (n > 0 && s_write_begin(self, "tasks insert") < 0)
        return -1;
    sqlite3_stmt *st = self->stmt[S_TASK_INSERT_MANY];
    for (i = 0; i + STORE_INSERT_ROWS <= n; i += STORE_INSERT_ROWS) {
        for (int r = 0; r < STORE_INSERT_ROWS; r++) {
            const store_task_new_t *t = &tasks[i + (size_t) r];
            int b = r * INSERT_ROW_PARAMS;
            sqlite3_bind_int64(st, b + 1, t->id);
            sqlite3_bind_int64(st, b + 2, job);
            sqlite3_bind_int64(st, b + 3, t->index);
            s_bind_text(st, b + 4, t->name);
            sqlite3_bind_int(st, b + 5, t->priority);
            sqlite3_bind_int(st, b + 6, t->retries);
            s_bind_text(st, b + 7, t->spec_json);
            s_bind_text(st, b + 8, t->needs);
        }
        if (s_write_step(self, S_TASK_INSERT_MANY, "tasks insert", NULL) < 0)
            return -1;
    }
    for (; i < n; i++) {
        const store_task_new_t *t = &tasks[i];
        if (store_task_insert(self, t->id, job, t->index, t->name, t->priority, t->retries,
                              t->spec_json, t->needs, NULL) < 0)
            return -1;
    }
    return 0;
}

char *store_task_spec(store_t *self, int64_t task)
{
    sqlite3_stmt *st = s_get(self, S_TASK_SPEC, "task spec");
    if (!st)
        return NULL;
    sqlite3_bind_int64(st, 1, task);
    char *spec = NULL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        spec = xstrdup((const char *)sqlite3_column_text(st, 0));
    else if (rc == SQLITE_DONE)
        s_seterr(self, "task spec: no task %lld", (long long)task);
    else
        s_dberr(self, "task spec");
    s_put(self, S_TASK_SPEC);
    return spec;
}

int store_specs_each(store_t *self, int64_t first, int limit,
                     int (*fn)(int64_t task, const char *spec, void *arg), void *arg)
{
    sqlite3_stmt *st = s_get(self, S_SPECS_FROM, "specs");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, first);
    sqlite3_bind_int(st, 2, limit);
    int rc, result = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *spec = (const char *)sqlite3_column_text(st, 1);
        if (spec && fn(sqlite3_column_int64(st, 0), spec, arg) != 0)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = s_dberr(self, "specs");
    s_put(self, S_SPECS_FROM);
    return result;
}

int store_task_set_running(store_t *self, int64_t task, proto_state_t state, int attempt,
                           const char *worker, double started, const char *worker_key)
{
    if (state != PROTO_ST_ASSIGNED && state != PROTO_ST_RUNNING) {
        s_seterr(self, "task %lld: set_running with state %d", (long long)task, (int)state);
        return -1;
    }
    if (s_write_begin(self, "task running") < 0)
        return -1;
    sqlite3_stmt *st = self->stmt[S_TASK_RUNNING];
    sqlite3_bind_int64(st, 1, task);
    sqlite3_bind_int(st, 2, (int)state);
    sqlite3_bind_int(st, 3, attempt);
    s_bind_text(st, 4, worker);
    sqlite3_bind_double(st, 5, started);
    s_bind_text(st, 6, worker_key);
    return s_write_step(self, S_TASK_RUNNING, "task running", NULL);
}

int store_task_requeue(store_t *self, int64_t task, int attempt)
{
    if (s_write_begin(self, "task requeue") < 0)
        return -1;
    sqlite3_bind_int64(self->stmt[S_TASK_REQUEUE], 1, task);
    sqlite3_bind_int(self->stmt[S_TASK_REQUEUE], 2, attempt);
    return s_write_step(self, S_TASK_REQUEUE, "task requeue", NULL);
}

int store_task_retry(store_t *self, int64_t task)
{
    if (s_write_begin(self, "task retry") < 0)
        return -1;
    sqlite3_bind_int64(self->stmt[S_TASK_RETRY], 1, task);
    return s_write_step(self, S_TASK_RETRY, "task retry", NULL);
}

int store_task_finish(store_t *self, int64_t task, proto_state_t state, int attempt,
                      const char *worker, const char *outcome_json, double finished)
{
    if (state != PROTO_ST_DONE && state != PROTO_ST_FAILED && state != PROTO_ST_CANCELLED
        && state != PROTO_ST_DEP_FAILED) {
        s_seterr(self, "task %lld: finish with state %d", (long long)task, (int)state);
        return -1;
    }
    if (s_write_begin(self, "task finish") < 0)
        return -1;
    sqlite3_stmt *st = self->stmt[S_TASK_FINISH];
    sqlite3_bind_int64(st, 1, task);
    sqlite3_bind_int(st, 2, (int)state);
    sqlite3_bind_int(st, 3, attempt);
    s_bind_text(st, 4, worker);
    s_bind_text(st, 5, outcome_json);
    sqlite3_bind_double(st, 6, finished);
    return s_write_step(self, S_TASK_FINISH, "task finish", NULL);
}

int store_job_cancel_queued(store_t *self, int64_t job, double finished, int64_t *count)
{
    if (count)
        *count = 0;
    if (s_write_begin(self, "job cancel") < 0)
        return -1;
    sqlite3_stmt *st = self->stmt[S_JOB_CANCEL_QUEUED];
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_double(st, 2, finished);
    return s_write_step(self, S_JOB_CANCEL_QUEUED, "job cancel", count);
}

int store_duplicate_add(store_t *self, int64_t task, int attempt, const char *worker,
                        const char *outcome_json, double received)
{
    if (s_write_begin(self, "duplicate add") < 0)
        return -1;
    sqlite3_stmt *st = self->stmt[S_DUP_ADD];
    sqlite3_bind_int64(st, 1, task);
    sqlite3_bind_int(st, 2, attempt);
    s_bind_text(st, 3, worker);
    s_bind_text(st, 4, outcome_json);
    sqlite3_bind_double(st, 5, received);
    return s_write_step(self, S_DUP_ADD, "duplicate add", NULL);
}

int64_t store_duplicate_count(store_t *self, int64_t task)
{
    int id = task == 0 ? S_DUP_COUNT_ALL : S_DUP_COUNT;
    sqlite3_stmt *st = s_get(self, id, "duplicate count");
    if (!st)
        return -1;
    if (id == S_DUP_COUNT)
        sqlite3_bind_int64(st, 1, task);
    int64_t n = -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    else
        s_dberr(self, "duplicate count");
    s_put(self, id);
    return n;
}

int store_unfinished_each(store_t *self, int (*fn)(const store_task_row_t *row, void *arg),
                          void *arg)
{
    if (!s_get(self, S_UNFINISHED, "unfinished"))
        return -1;
    return s_task_rows(self, S_UNFINISHED, "unfinished", fn, arg, NULL, NULL);
}

int store_results_each(store_t *self, int64_t job, int64_t after, int limit, bool failed_only,
                       int (*fn)(const store_task_row_t *row, void *arg), void *arg,
                       int64_t *last_id)
{
    int id = failed_only ? S_RESULTS_FAILED : S_RESULTS;
    if (last_id)
        *last_id = -1;
    sqlite3_stmt *st = s_get(self, id, "results");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int(st, 3, limit); /* SQLite: a negative LIMIT means none */
    return s_task_rows(self, id, "results", fn, arg, last_id, NULL);
}

int store_retryable_each(store_t *self, int64_t job,
                         int (*fn)(const store_task_row_t *row, void *arg), void *arg)
{
    sqlite3_stmt *st = s_get(self, S_RETRYABLE, "retryable tasks");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, job);
    return s_task_rows(self, S_RETRYABLE, "retryable tasks", fn, arg, NULL, NULL);
}

int store_dep_failed_each(store_t *self, int64_t job,
                          int (*fn)(const store_task_row_t *row, void *arg), void *arg)
{
    sqlite3_stmt *st = s_get(self, S_DEP_FAILED_EACH, "dep_failed tasks");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, job);
    return s_task_rows(self, S_DEP_FAILED_EACH, "dep_failed tasks", fn, arg, NULL, NULL);
}

int store_task_find(store_t *self, int64_t job, int64_t index, int64_t *task_id, bool *found)
{
    *found = false;
    sqlite3_stmt *st = s_get(self, S_TASK_FIND, "task find");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int64(st, 2, index);
    int result = 0, rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *found = true;
        if (task_id)
            *task_id = sqlite3_column_int64(st, 0);
    } else if (rc != SQLITE_DONE) {
        result = s_dberr(self, "task find");
    }
    s_put(self, S_TASK_FIND);
    return result;
}

int store_task_get(store_t *self, int64_t task, int (*fn)(const store_task_row_t *row, void *arg),
                   void *arg, bool *found)
{
    *found = false;
    sqlite3_stmt *st = s_get(self, S_TASK_GET, "task get");
    if (!st)
        return -1;
    sqlite3_bind_int64(st, 1, task);
    int64_t n = 0;
    int rc = s_task_rows(self, S_TASK_GET, "task get", fn, arg, NULL, &n);
    *found = n > 0;
    return rc;
}

int store_check(store_t *self)
{
    sqlite3_stmt *st = s_get(self, S_CHECK, "integrity check");
    if (!st)
        return -1;
    int result = -1, rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        if (text && strcmp(text, "ok") == 0)
            result = 0;
        else
            s_seterr(self, "integrity check: %s", text ? text : "(null)");
    } else {
        s_dberr(self, "integrity check");
    }
    s_put(self, S_CHECK);
    return result;
}

/* ---- allocation queues ---- */

int store_alloc_save(store_t *self, int64_t id, const char *def)
{
    if (s_write_begin(self, "save allocation queue") < 0)
        return -1;
    sqlite3_stmt *st = self->stmt[S_ALLOC_SAVE];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, def, -1, SQLITE_STATIC);
    return s_write_step(self, S_ALLOC_SAVE, "save allocation queue", NULL);
}

int store_alloc_delete(store_t *self, int64_t id)
{
    if (s_write_begin(self, "delete allocation queue") < 0
        || s_write_step(self, S_ALLOC_IDS_KEEP, "delete allocation queue", NULL) < 0)
        return -1;
    sqlite3_bind_int64(self->stmt[S_ALLOC_DEL], 1, id);
    return s_write_step(self, S_ALLOC_DEL, "delete allocation queue", NULL);
}

int store_alloc_last_id(store_t *self, int64_t *out)
{
    return s_stmt_int(self, S_ALLOC_LAST_ID, "last allocation queue id", out);
}

int store_allocs_each(store_t *self, int (*fn)(int64_t id, const char *def, void *arg), void *arg)
{
    sqlite3_stmt *st = s_get(self, S_ALLOCS, "allocation queues");
    if (!st)
        return -1;
    int rc, result = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *def = (const char *)sqlite3_column_text(st, 1);
        if (fn(sqlite3_column_int64(st, 0), def ? def : "", arg) != 0)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = s_dberr(self, "allocation queues");
    s_put(self, S_ALLOCS);
    return result;
}
