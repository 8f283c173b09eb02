/*  journal: the master's write-behind journal, the submits that wait for
    their commit, and the grouped commits that write both.

    Write-behind journal: the in-memory state (jobs, sched, registry) is
    what the loop decides on; every change that must be durable is appended
    to the journal and written to SQLite in one transaction at the next
    flush (every flush_ms, and before any query is answered, so a result is
    committed before anyone is told of it). If a commit fails (disk full),
    the transaction is rolled back and the journal is kept and replayed at
    the next flush: nothing already decided is lost. Submits are different:
    their tasks enter the queue and the client gets its ack only after the
    commit that holds their rows succeeds; a failed one is refused. The
    master picks job and task ids itself (from the store's last ones at
    start), so a submit needs nothing from SQLite to be taken in.

    Flushes run on the writer thread (writer.h): the journal hands over its
    ops and the waiting submits as one batch and the loop carries on; the
    batch comes back through journal_fd in the loop's poll. A small batch
    (a lone task's submit or result) is written on the loop itself: two
    thread wakeups would cost more than the write. While a batch is out the
    store is the writer's: the loop reads it only through journal_store(),
    which waits for the writer to be done with it.

    Completions go up, not out: the journal answers nobody. A submit whose
    commit is done (written, or refused with the reason) waits in the
    journal's done list until the caller takes it (journal_take_done) and
    answers its client; the loop drains that list after every step that
    may complete a commit.

    Assignments are written late (journal_assigned): only for a task still
    out ASSIGN_WRITE_MS after its dispatch. The row exists so that after a
    master crash the worker can claim the task; most tasks are short, and
    their finish row (which carries attempt and worker) is the only write
    they need. A task dispatched less than that before a crash is found
    queued: its worker still claims it in its hello (the claimed attempt is
    one above the stored one), unless the restarted master has already sent
    it to another worker, which makes one extra execution of a short task.
    Nothing stored tells it from a task never sent, so with CURVE that claim
    needs the claim token the task was sent with (claim.h), which no other
    worker key has. "One above" holds for a resend only because a task
    taken back goes out again once its requeue (J_REQUEUE, the attempt
    taken back) is written: tasks.c waits for that mark (journal_written).

    Threads: main loop only (the writer thread it starts touches only a
    batch and the store).
*/
#ifndef ZTASK_JOURNAL_H
#define ZTASK_JOURNAL_H

#include "metrics.h"
#include "sched.h"
#include "store.h"

#include "../common/zmqx.h"
#include "../proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How long a dispatched task must stay out before its assignment is
   written (see the top of this file). */
#define ASSIGN_WRITE_MS 1000

/* With --sync acked, a change no answer has waited for is fsynced at most
   this long after its commit (journal.c, s_sync_due): what a power loss
   can take back of results and assignments. */
#define JOURNAL_FSYNC_MS 1000

/* Commits of up to this many rows, holding up to this many bytes of task
   specs and outcomes, are written on the loop thread itself (see
   s_flush_start in journal.c); bigger ones on the writer thread. The
   bytes count as much as the rows: one 16 MB spec is two rows, but its
   insert, the WAL pages and the checkpoint behind it kept the loop from
   every socket for 0.2-0.3 s in a release build (seconds under TSan). */
#define INLINE_WRITE_MAX 64
#define INLINE_WRITE_MAX_BYTES (64 * 1024)

typedef enum {
    J_ASSIGN = 1,    /* task, attempt, worker, text (its worker's key, or NULL) */
    J_REQUEUE,       /* task */
    J_FINISH,        /* task, state, attempt, worker, outcome, t */
    J_DUP,           /* task, attempt, worker, outcome, t */
    J_CANCEL_QUEUED, /* job, t */
    J_JOB_CLOSE,     /* job */
    J_JOB_FINISHED,  /* job, t */
    J_JOB_DELETE,    /* job */
    J_KEYS_PRUNE,    /* t: submit keys taken in before it (master/idem.h) */
    J_ALLOC_SAVE,    /* alloc, text */
    J_ALLOC_DELETE,  /* alloc */
    J_RETRY,         /* task: a failed or cancelled task queued again */
    J_TASK_HOLD,     /* task, value (1 held, 0 released) */
    J_JOB_HOLD,      /* job, value (1 held, 0 released: its tasks too) */
    J_JOB_LIMIT,     /* job, value (max running, 0 = none) */
    J_JOB_PRIORITY   /* job, value (the priority of its unfinished tasks) */
} jop_type_t;

/* One durable change. Fields a type does not use (see above) stay 0. */
typedef struct {
    jop_type_t type;
    proto_state_t state;
    int attempt;
    int64_t task, job;
    const char *worker;  /* journal_add copies it (the journal's copy is its own) */
    char *outcome;       /* proto_result_encode text: journal_add takes it */
    double t;            /* wall seconds */
    int64_t value;       /* a setting's new value */
    int64_t alloc;       /* an allocation queue's id (alloc.h) */
    char *text;          /* J_ALLOC_SAVE: its proto_alloc_encode text; J_ASSIGN: its worker's
                            key (NULL: none); journal_add takes it */
    uint32_t row_bytes;  /* a change of one task's row: the bytes of its spec (SQLite
                            writes a changed row whole, spec included); a hint for
                            where the commit runs, 0 = small */
} jop_t;

/* A task of a submit whose commit is pending. */
typedef struct {
    int64_t id;
    int64_t index;
    int32_t priority;
    int retries;
    int cls;
    char *name;              /* owned, NULL = none */
    char *spec;              /* normalized spec text, owned */
    char *needs;             /* class key, owned, NULL = "fn" */
} pending_task_t;

/* A submit waiting for its commit before it is acknowledged. */
typedef struct pending_submit {
    zmqx_frames_t envelope;  /* the client's routing frames (body dropped) */
    int64_t job_id;
    bool new_job;            /* this request creates the job: */
    char *job_name;          /*   its name, owned (NULL = none) */
    double job_created;      /*   wall seconds */
    proto_dep_t *deps;       /*   what its tasks wait for (ndeps), owned */
    int ndeps;
    int job_max_running;     /*   its --max-running (0 = no limit) */
    char *job_definition;    /*   what it was submitted as (JSON), owned, NULL = none */
    char *owner;             /* who sent it (auth.h: a key; "" = nobody), owned:
                                a new job's owner; the quota this batch counts against */
    int64_t bytes;           /* the size of its tasks' specs (quotas count it) */
    bool close;
    int wait_ms;             /* > 0: answer once the job has finished (or then) */
    char *key;               /* its idempotency key (owned), NULL = none: stored with
                                its rows (master/idem.h), */
    double key_created;      /*   taken in then (wall seconds) */
    bool echo;               /* a copy of a keyed submit whose commit was pending: it
                                writes nothing, and is answered as that one once its
                                commit is done (it is queued behind it) */
    pending_task_t *tasks;
    int ntasks;
    char *refused;           /* done: NULL when committed, else why not (owned) */
    struct pending_submit *next;
} pending_submit_t;

/* Frees a submit (NULL is fine) and nulls *p. */
void pending_submit_free(pending_submit_t **p);

typedef struct journal journal_t;

/* A journal that commits into store (borrowed: the caller keeps it, and
   lends it to the writer thread started here while a batch is out) every
   flush_ms, and asks sched (borrowed) whether a due assignment is still
   current. db_path names the store in log lines. NULL when the writer
   thread cannot be started (errno set). */
journal_t *journal_new(store_t *store, const sched_t *sched, int flush_ms, const char *db_path);

/* Counts every commit (latency, rows) in metrics (borrowed; NULL: none). */
void journal_set_metrics(journal_t *self, metrics_t *metrics);

/* Stops the writer thread (flush first: a batch still out is written and
   dropped unseen) and frees what is left, submits unanswered included. */
void journal_destroy(journal_t **p);

/* Appends one change (see jop_t for who owns its strings). */
void journal_add(journal_t *self, const jop_t *op);

/* Notes that task went out as attempt at now to the worker whose CURVE
   key is key ("" or NULL without CURVE); its assignment (with the key) is
   written by the first flush ASSIGN_WRITE_MS later if the task is still
   out then. key is borrowed from the registry's record of that worker and
   read only while the task is still out at that attempt, that is still on
   that worker, whose record lives at least as long. */
void journal_assigned(journal_t *self, int64_t task, int attempt, const char *key, int64_t now);

/* Queues a submit for the next commit; takes *p (nulls it). */
void journal_submit(journal_t *self, pending_submit_t **p);

/* From now on every flush writes every assignment still out, due or not
   (the master is stopping: a restart finds those tasks claimable). */
void journal_stopping(journal_t *self);

/* The writer's fd, readable while a written batch waits: for the poll. */
int journal_fd(const journal_t *self);

/* Milliseconds until the journal needs a turn of the loop, at most max
   (0 = now); max while a batch is out (journal_fd wakes the poll then). */
int64_t journal_timeout(const journal_t *self, int64_t now, int64_t max);

/* Takes a written batch back from the writer, if one is done (it does not
   wait): its submits go to the done list. */
void journal_collect(journal_t *self);

/* Starts a commit when one is due at now and the writer is free: submits
   at once (a client waits for each), the rest every flush_ms; with
   --sync acked, an fsync alone once the oldest commit not fsynced is
   JOURNAL_FSYNC_MS old, or when hurried with nothing else left. A small one
   is written here, at once; a big one goes to the writer thread. Does not
   wait for the writer. */
void journal_commit(journal_t *self, int64_t now);

/* Answers without waiting for the disk. journal_mark: the point every
   change journalled so far has reached; journal_written: true once every
   change up to a mark is committed and, with --sync acked (or full),
   fsynced (never while failing: the store lags).
   journal_commit_soon: the next journal_commit writes what is journalled
   at once instead of after flush_ms, fsynced (the loop's poll does not wait
   meanwhile). An answer made now from memory and sent only once its mark
   is written tells nothing a crash could undo, and the loop goes on
   serving every other socket while that commit is on the writer thread:
   api.c holds ztask wait's answers so. */
uint64_t journal_mark(const journal_t *self);
bool journal_written(const journal_t *self, uint64_t mark);
void journal_commit_soon(journal_t *self);

/* Writes everything journalled and waiting now, in one transaction, and
   waits for it (and for a batch already out). Returns 0, or -1 when the
   commit failed: the ops are kept for the next try, the submits are
   refused (done list). While failing (journal_failing) it tries at most
   every 500 ms and returns -1 until a commit succeeds: the store then
   lags the memory, and nothing read from either may be told. Blocks on
   the disk. */
int journal_flush(journal_t *self);

/* Why the last commit failed ("database or disk is full"; borrowed), or
   NULL when it succeeded. While failing, the journal tries again every
   500 ms, with a probe row when it has nothing else to write, and a WAL
   checkpoint after each failure (which gives back the WAL's blocks). */
const char *journal_failing(const journal_t *self);

/* Free bytes the disk must have again, after a failed commit, before new
   work is taken: one big batch of WAL (a 5,000-task batch writes about
   1 MiB), so the first that comes does not fill it again at once; on a
   disk smaller than 8 MiB, an eighth of it.

   The ballast: a file of as many bytes next to the database
   ("<db>.reserve"), made at start and deleted at the first failed commit,
   so the checkpoint that truncates the WAL finds blocks to grow the
   database into even on a disk the WAL filled (a checkpoint copies before
   it truncates). New work is taken again once there is room for the
   reserve and the ballast, which is then made again: the ballast's own
   blocks are not space that returned. */
#define JOURNAL_RESERVE_BYTES (1024 * 1024)

/* After a failed commit, every commit truncates the WAL after it until
   the disk has this much free at a recovery check (a small disk would
   otherwise refill with WAL, which grows to 4 MiB between checkpoints). */
#define JOURNAL_TIGHT_BYTES (8 * 1024 * 1024)

/* Why new work is refused (the last failed commit's reason; borrowed), or
   NULL. Set by a failed commit; cleared once a commit has succeeded and
   the database's file system has JOURNAL_RESERVE_BYTES free (looked at
   every 500 ms), which logs event=storage_recovered. */
const char *journal_full(const journal_t *self);

/* The oldest submit whose commit is done (committed, or refused: see
   pending_submit_t.refused), the caller's now; NULL when none. */
pending_submit_t *journal_take_done(journal_t *self);

/* True when no batch is out: journal_store would not wait. */
bool journal_idle(const journal_t *self);

/* The store, for reading on the loop: waits while the writer has it.
   Borrowed. */
store_t *journal_store(journal_t *self);

#endif
