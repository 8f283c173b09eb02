/*  journal: the write-behind journal and the grouped commits (see
    journal.h for why they are written this way). */
#include "journal.h"

#include "sched.h"
#include "store.h"
#include "writer.h"

#include "../common/clock.h"
#include "../common/imap.h"
#include "../common/log.h"
#include "../common/testhook.h"
#include "../common/util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <libgen.h>
#include <sys/statvfs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A dispatch whose assignment is not written yet. */
typedef struct {
    int64_t task;
    int64_t since;           /* monotonic ms of the dispatch */
    int attempt;
    const char *key;         /* its worker's key, borrowed (see journal_assigned) */
} assign_t;

struct journal {
    store_t *store;          /* borrowed; the writer's while a batch is out */
    const sched_t *sched;    /* borrowed */
    writer_t *writer;        /* the commit thread */
    char *db_path;
    int flush_ms;
    int64_t assign_write_ms; /* ASSIGN_WRITE_MS, or the test hook's
                                ZTASK_TEST_ASSIGN_WRITE_MS (a test that needs a
                                task out with no stored assignment) */
    jop_t *ops;
    size_t nops, capops;
    /* The array of the last written batch, kept for the next journal:
       freeing and growing one of ~100 KB per commit made glibc consolidate
       its free lists every time (measured: malloc ~20% of the loop). */
    jop_t *spare;
    size_t capspare;
    int64_t since;           /* monotonic ms of the oldest unflushed op */
    assign_t *assigns;       /* unwritten assignments, oldest first, from assign_head */
    size_t assign_head, nassigns, capassigns;
    bool stopping;           /* every flush writes every assignment */
    int64_t retry_at;        /* after a failed commit, not before this */
    bool failing;            /* the last commit failed: the store lags the memory */
    bool full;               /* no new work: a commit failed, and since then the disk
                                has not had `reserve` bytes free */
    uint64_t reserve;        /* JOURNAL_RESERVE_BYTES, or an eighth of a smaller disk */
    char why[512];           /*   why the last failed commit failed */
    char *ballast;           /* "<db>.reserve": `reserve` bytes held on the disk
                                for a full disk's checkpoint; NULL: none (":memory:") */
    bool ballast_held;       /* the file is there */
    bool checkpoint_next;    /* the next batch checkpoints first (the ballast went) */
    bool tight;              /* a commit failed and the disk has stayed small since:
                                every commit truncates the WAL after it */
    /* How long the loop waited for the writer in journal_store (a read
       of the store while a batch is out): logged at the end. */
    int64_t store_waits, store_wait_us, store_wait_max_us;
    pending_submit_t *pending, **pending_tail;   /* waiting for a commit */
    pending_submit_t *done, **done_tail;         /* committed or refused, not yet taken */
    metrics_t *metrics;      /* borrowed; NULL = not counted */
    uint64_t seq;            /* changes journalled so far (ops and submits) */
    uint64_t written;        /* of which the first `written` are committed */
    uint64_t synced;         /*   and the first `synced` fsynced (= written but in
                                --sync acked, where a commit no answer waits for
                                is only written: see s_fsync_wanted) */
    int64_t unsynced_since;  /* monotonic ms of the oldest commit not fsynced
                                (acked), 0 when every commit is */
    bool hurry;              /* journal_commit_soon: the next journal_commit writes what
                                is journalled without waiting for flush_ms */
};

/* What one commit writes: the journal's ops and the submits waiting for
   it. Handed whole to the writer thread and back. */
typedef struct {
    jop_t *ops;
    size_t nops, capops;
    pending_submit_t *pending;
    bool checkpoint_first;   /* checkpoint (TRUNCATE) before writing */
    bool truncate_after;     /* and after a commit that succeeded */
    int64_t taken_us;        /* monotonic us it was taken (commit latency) */
    int64_t rows;            /* ops + submitted tasks (commit size) */
    bool probe;              /* nothing to write but the last commit failed: a probe
                                row tells whether space has returned */
    uint64_t seq_end;        /* the journal's seq when it was taken: committed, every
                                change up to it is on disk */
    bool sync_only;          /* nothing to write, not failing: an fsync of the WAL
                                alone (acked: an answer waits, or the timer) */
    bool fsync;              /* an answer may count on its commit (s_fsync_wanted):
                                fsynced with acked or full, as the mode says else */
} batch_t;

static writer_apply_fn s_write_batch;

/* The size (or with avail, the bytes free for us) of the file system
   that holds db_path; UINT64_MAX when it cannot be asked (":memory:", a
   URI name). */
static uint64_t s_fs_bytes(const char *db_path, bool avail)
{
    char *copy = xstrdup(db_path);
    struct statvfs fs;
    int rc = statvfs(dirname(copy), &fs);
    free(copy);
    if (rc != 0)
        return UINT64_MAX;
    return (uint64_t) (avail ? fs.f_bavail : fs.f_blocks) * fs.f_frsize;
}

/* Writes the ballast file (zeros, not sparse: the blocks are really
   taken). False, with nothing left behind, when the disk has no room. */
static bool s_ballast_make(const char *path, uint64_t bytes)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    static const char zeros[65536];
    size_t done = 0;
    while (done < bytes) {
        ssize_t n = write(fd, zeros, sizeof zeros);
        if (n <= 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t) n;
    }
    bool ok = done >= bytes && fsync(fd) == 0;
    close(fd);
    if (!ok)
        unlink(path);
    return ok;
}

void journal_set_metrics(journal_t *self, metrics_t *metrics)
{
    self->metrics = metrics;
}

journal_t *journal_new(store_t *store, const sched_t *sched, int flush_ms, const char *db_path)
{
    journal_t *self = xcalloc(1, sizeof *self);
    self->store = store;
    self->sched = sched;
    self->flush_ms = flush_ms;
    self->assign_write_ms = ASSIGN_WRITE_MS;
    testhook_i64("ZTASK_TEST_ASSIGN_WRITE_MS", 1, 3600 * 1000, &self->assign_write_ms);
    self->db_path = xstrdup(db_path);
    self->pending_tail = &self->pending;
    self->done_tail = &self->done;
    /* The WAL found at open (a killed master's commits, maybe never
       fsynced) is on disk already: store_new fsyncs it, whatever the
       mode. */
    self->writer = writer_new(store, s_write_batch);
    if (!self->writer) {
        free(self->db_path);
        free(self);
        return NULL;
    }
    /* A small disk gets a smaller reserve and ballast: an eighth of it
       each, so that together with the database they still fit. */
    uint64_t disk = s_fs_bytes(db_path, false);
    self->reserve = disk / 8 < JOURNAL_RESERVE_BYTES ? disk / 8 : JOURNAL_RESERVE_BYTES;
    if (strcmp(db_path, ":memory:") != 0 && strncmp(db_path, "file:", 5) != 0) {
        self->ballast = xmalloc(strlen(db_path) + sizeof ".reserve");
        sprintf(self->ballast, "%s.reserve", db_path);
        self->ballast_held = s_ballast_make(self->ballast, self->reserve);
    }
    return self;
}

static void s_ops_clear(jop_t *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *) ops[i].worker);
        free(ops[i].outcome);
        free(ops[i].text);
    }
}

void pending_submit_free(pending_submit_t **p)
{
    if (!p || !*p)
        return;
    pending_submit_t *s = *p;
    for (int i = 0; i < s->ntasks; i++) {
        free(s->tasks[i].name);
        free(s->tasks[i].spec);
        free(s->tasks[i].needs);
    }
    zmqx_frames_free(&s->envelope);
    free(s->job_name);
    free(s->deps);
    free(s->job_definition);
    free(s->owner);
    free(s->key);
    free(s->refused);
    free(s->tasks);
    free(s);
    *p = NULL;
}

static void s_submits_free(pending_submit_t *list)
{
    while (list) {
        pending_submit_t *next = list->next;
        pending_submit_free(&list);
        list = next;
    }
}

void journal_destroy(journal_t **p)
{
    if (!p || !*p)
        return;
    journal_t *self = *p;
    writer_destroy(&self->writer);
    if (self->ballast_held)
        unlink(self->ballast);
    free(self->ballast);
    if (self->store_waits)
        log_info("event=loop_store_waits waits=%lld total_ms=%.1f max_ms=%.1f",
                 (long long) self->store_waits, self->store_wait_us / 1000.0,
                 self->store_wait_max_us / 1000.0);
    s_submits_free(self->pending);
    s_submits_free(self->done);
    s_ops_clear(self->ops, self->nops);
    free(self->ops);
    free(self->spare);
    free(self->assigns);
    free(self->db_path);
    free(self);
    *p = NULL;
}

void journal_add(journal_t *self, const jop_t *op)
{
    if (self->nops == self->capops) {
        self->capops = self->capops ? self->capops * 2 : 1024;
        self->ops = xrealloc(self->ops, self->capops * sizeof(jop_t));
    }
    if (!self->nops)
        self->since = clock_mono_ms();
    jop_t *j = &self->ops[self->nops++];
    self->seq++;
    *j = *op;
    j->worker = xstrdup(op->worker);
}

void journal_assigned(journal_t *self, int64_t task, int attempt, const char *key, int64_t now)
{
    if (self->nassigns == self->capassigns) {
        /* Reuse the written prefix before growing. */
        if (self->assign_head > self->nassigns / 2) {
            self->nassigns -= self->assign_head;
            memmove(self->assigns, self->assigns + self->assign_head,
                    self->nassigns * sizeof *self->assigns);
            self->assign_head = 0;
        } else {
            self->capassigns = self->capassigns ? self->capassigns * 2 : 1024;
            self->assigns = xrealloc(self->assigns, self->capassigns * sizeof *self->assigns);
        }
    }
    self->assigns[self->nassigns++] =
        (assign_t){.task = task, .since = now, .attempt = attempt, .key = key};
}

void journal_submit(journal_t *self, pending_submit_t **p)
{
    pending_submit_t *s = *p;
    *p = NULL;
    s->next = NULL;
    self->seq++;
    *self->pending_tail = s;
    self->pending_tail = &s->next;
}

void journal_stopping(journal_t *self)
{
    self->stopping = true;
}

int journal_fd(const journal_t *self)
{
    return writer_fd(self->writer);
}

/* End of the prefix of assignments due for writing at now. */
static size_t s_assigns_due(const journal_t *self, int64_t now)
{
    size_t k = self->assign_head;
    while (k < self->nassigns
           && (self->stopping || now - self->assigns[k].since >= self->assign_write_ms))
        k++;
    return k;
}

/* Journals the due assignments of tasks still out under that attempt;
   the others have finished or gone back to the queue, and their later rows
   say so. They go after the ops already journalled, so the rows end as the
   memory is now. */
static void s_journal_assigns(journal_t *self, size_t end)
{
    for (size_t k = self->assign_head; k < end; k++) {
        const assign_t *a = &self->assigns[k];
        const sched_task_t *t = sched_get(self->sched, a->task);
        if (!t || t->attempt != a->attempt || t->orphan
            || (t->state != PROTO_ST_ASSIGNED && t->state != PROTO_ST_RUNNING))
            continue;
        journal_add(self, &(jop_t){.type = J_ASSIGN,
                                   .task = t->id,
                                   .job = t->job,
                                   .attempt = t->attempt,
                                   .worker = t->worker_name,
                                   .text = a->key && *a->key ? xstrdup(a->key) : NULL,
                                   .row_bytes = t->spec_len});
    }
    self->assign_head = end;
    if (self->assign_head == self->nassigns)
        self->assign_head = self->nassigns = 0;
}

/* ---- the writer thread's side: the batch and the store only ---- */

static int s_apply(store_t *st, const jop_t *op)
{
    int64_t n;
    switch (op->type) {
    case J_ASSIGN:
        return store_task_set_running(st, op->task, PROTO_ST_ASSIGNED, op->attempt, op->worker, 0,
                                      op->text);
    case J_REQUEUE: return store_task_requeue(st, op->task, op->attempt);
    case J_FINISH:
        return store_task_finish(st, op->task, op->state, op->attempt, op->worker, op->outcome,
                                 op->t);
    case J_DUP:
        return store_duplicate_add(st, op->task, op->attempt, op->worker, op->outcome, op->t);
    case J_CANCEL_QUEUED: return store_job_cancel_queued(st, op->job, op->t, &n);
    case J_JOB_CLOSE: return store_job_close(st, op->job);
    case J_JOB_FINISHED: return store_job_set_finished(st, op->job, op->t);
    case J_JOB_DELETE: return store_job_delete(st, op->job, &n);
    case J_KEYS_PRUNE: return store_submit_keys_prune(st, op->t);
    case J_ALLOC_SAVE: return store_alloc_save(st, op->alloc, op->text);
    case J_ALLOC_DELETE: return store_alloc_delete(st, op->alloc);
    case J_RETRY: return store_task_retry(st, op->task);
    case J_TASK_HOLD: return store_task_set_held(st, op->task, op->value != 0);
    case J_JOB_HOLD: return store_job_set_held(st, op->job, op->value != 0);
    case J_JOB_LIMIT: return store_job_set_limit(st, op->job, (int) op->value);
    case J_JOB_PRIORITY: return store_job_set_priority(st, op->job, (int32_t) op->value);
    }
    return -1;
}

/* The rows of the submits waiting in a batch. */
static int s_write_submits(store_t *st, const pending_submit_t *list)
{
    int rc = 0;
    for (const pending_submit_t *p = list; p && rc == 0; p = p->next) {
        if (p->new_job)
            rc = store_job_create(st,
                                  &(store_job_new_t){.id = p->job_id,
                                                     .name = p->job_name,
                                                     .owner = p->owner,
                                                     .created = p->job_created,
                                                     .deps = p->deps,
                                                     .ndeps = p->ndeps,
                                                     .max_running = p->job_max_running,
                                                     .definition = p->job_definition},
                                  NULL);
        if (rc == 0 && p->ntasks > 0) {
            store_task_new_t *rows = xcalloc((size_t) p->ntasks, sizeof *rows);
            for (int i = 0; i < p->ntasks; i++) {
                const pending_task_t *t = &p->tasks[i];
                rows[i] = (store_task_new_t){.id = t->id,
                                             .index = t->index,
                                             .name = t->name,
                                             .priority = t->priority,
                                             .retries = t->retries,
                                             .spec_json = t->spec,
                                             .needs = t->needs};
            }
            rc = store_tasks_insert(st, p->job_id, rows, (size_t) p->ntasks);
            free(rows);
        }
        if (rc == 0 && p->close)
            rc = store_job_close(st, p->job_id);
        /* In the same transaction as the rows: committed together or not
           at all, which is what lets a resent copy be answered. */
        if (rc == 0 && p->key && !p->echo)
            rc = store_submit_key_add(st, &(store_key_row_t){.owner = p->owner,
                                                             .key = p->key,
                                                             .job = p->job_id,
                                                             .accepted = p->ntasks,
                                                             .created = p->key_created});
    }
    return rc;
}

/* On the writer thread (or on the loop for a small batch while the writer
   is idle): the batch and the store only. */
static int s_write_batch(store_t *st, void *arg, char *err, size_t errlen)
{
    batch_t *b = arg;
    if (b->checkpoint_first)
        store_checkpoint(st);
    if (b->sync_only) {
        /* No row, so no room on the disk needed: a master restarted on a
           full disk answers once the WAL it found is fsynced. */
        int rc = store_sync_wal(st);
        if (rc != 0)
            snprintf(err, errlen, "%s", store_error(st));
        return rc;
    }
    int rc = store_fsync_next(st, b->fsync);
    if (rc == 0)
        rc = b->probe ? store_probe(st) : s_write_submits(st, b->pending);
    /* A claim (hello) journals its assignment at once; one whose task
       finished within the same batch needs only the finish row, which
       carries attempt and worker too. */
    imap_t *finished = NULL;
    for (size_t k = 0; k < b->nops && !finished; k++)
        if (b->ops[k].type == J_ASSIGN)
            finished = imap_new();
    for (size_t k = 0; finished && k < b->nops; k++)
        if (b->ops[k].type == J_FINISH)
            imap_put(finished, b->ops[k].task, &b->ops[k]);
    bool deleted = false;
    for (size_t i = 0; rc == 0 && i < b->nops; i++) {
        const jop_t *op = &b->ops[i];
        if (op->type == J_ASSIGN && finished && imap_get(finished, op->task))
            continue;
        deleted = deleted || op->type == J_JOB_DELETE;
        rc = s_apply(st, op);
    }
    imap_destroy(&finished);
    /* A forgotten job's pages go back to the disk: freed here, the file
       cut at the checkpoint (which also truncates the WAL its delete
       grew). */
    if (rc == 0 && deleted)
        rc = store_vacuum(st);
    if (rc == 0)
        rc = store_commit(st);
    if (rc == 0 && (deleted || b->truncate_after))
        store_checkpoint(st);
    if (rc != 0) {
        snprintf(err, errlen, "%s", store_error(st));
        store_rollback(st);
        /* On a full disk the WAL holds most of the blocks: moving its
           committed pages into the database and truncating it is what
           gives them back (without it a small disk refills as soon as
           the next commits grow the WAL again). */
        store_checkpoint(st);
    }
    return rc;
}

/* ---- the loop's side ---- */

/* --sync acked: a commit that no answer waits for is written without an
   fsync (synchronous=NORMAL), which survives a crash of the master, not
   of the machine. At the rates where commits are many (a result every
   few milliseconds, a commit every flush_ms), their fsyncs were a third
   to a half of the master's CPU (perf, `exec true`: 45% of its samples
   in the commit, 25% in fdatasync), on a 2-core host CPU the commands
   need. What a client is told is never taken back by a power loss: every
   answer waits for journal_written, which counts fsynced commits only,
   and a commit that an answer waits for (a submit's, a forced flush
   before a query, a held answer's: hurry) is fsynced, with an fsync of
   the WAL alone (store_sync_wal) when nothing new is left to write. What is
   not yet told (results, assignments) is fsynced within
   JOURNAL_FSYNC_MS: a power loss loses at most that much of it, and the
   tasks whose results it held run again, as after a master crash before
   their commit. */
static bool s_sync_due(const journal_t *self, int64_t now, bool force)
{
    return self->unsynced_since
           && (force || self->stopping || now >= self->unsynced_since + JOURNAL_FSYNC_MS);
}

/* Whether the commit of what is taken now is fsynced (see s_sync_due). */
static bool s_fsync_wanted(const journal_t *self, int64_t now, bool force)
{
    if (store_sync_mode(self->store) != STORE_SYNC_ACKED)
        return true;   /* the mode decides every commit alike */
    return force || self->pending || self->stopping || self->failing
           || (self->unsynced_since && now >= self->unsynced_since + JOURNAL_FSYNC_MS);
}

/* True when a flush has something to write at now. */
static bool s_flush_due(const journal_t *self, int64_t now, bool force)
{
    /* While failing, one try every 500 ms, forced or not (a flush per
       query would only hammer a full disk), with a probe row when there
       is nothing else to write. */
    if (self->failing)
        return now >= self->retry_at;
    bool work = self->nops || self->pending || self->assign_head < self->nassigns;
    if (!work)
        return s_sync_due(self, now, force);
    if (force)
        return true;
    return self->pending || (self->nops && now >= self->since + self->flush_ms)
           || s_assigns_due(self, now) > self->assign_head || s_sync_due(self, now, false);
}

int64_t journal_timeout(const journal_t *self, int64_t now, int64_t max)
{
    int64_t t = max;
    /* While a batch is out, the writer's fd wakes the loop when it is back. */
    if (writer_busy(self->writer))
        return t;
    if (self->failing || self->full)
        t = self->retry_at - now < t ? self->retry_at - now : t;
    if (self->failing)
        return t;
    if (self->pending || (self->hurry && (self->nops || self->unsynced_since)))
        t = 0;
    if (self->unsynced_since && self->unsynced_since + JOURNAL_FSYNC_MS - now < t)
        t = self->unsynced_since + JOURNAL_FSYNC_MS - now;
    if (self->nops) {
        int64_t due = self->failing ? self->retry_at : self->since + self->flush_ms;
        if (due - now < t)
            t = due - now;
    }
    if (self->assign_head < self->nassigns) {
        int64_t due = self->assigns[self->assign_head].since + self->assign_write_ms;
        if (self->failing && self->retry_at > due)
            due = self->retry_at;
        if (due - now < t)
            t = due - now;
    }
    return t;
}

/* Takes the journal and the waiting submits out as one batch (with the
   assignments now due); NULL when there is nothing to write. force: an
   answer waits for it (it is fsynced, even with nothing new to write). */
static batch_t *s_take_batch(journal_t *self, int64_t now, bool force)
{
    s_journal_assigns(self, s_assigns_due(self, now));
    if (!self->nops && !self->pending && !self->failing && !s_sync_due(self, now, force))
        return NULL;
    batch_t *b = xcalloc(1, sizeof *b);
    b->fsync = s_fsync_wanted(self, now, force);
    b->taken_us = clock_mono_us();
    b->rows = (int64_t) self->nops;
    for (const pending_submit_t *p = self->pending; p; p = p->next)
        b->rows += p->ntasks;
    b->probe = !self->nops && !self->pending && self->failing;
    b->sync_only = !self->nops && !self->pending && !self->failing;
    assert(!b->sync_only || b->fsync);
    b->seq_end = self->seq;
    self->hurry = false;
    b->checkpoint_first = self->checkpoint_next;
    b->truncate_after = self->tight;
    self->checkpoint_next = false;
    b->ops = self->ops;
    b->nops = self->nops;
    b->capops = self->capops;
    b->pending = self->pending;
    self->ops = self->spare;
    self->capops = self->capspare;
    self->nops = 0;
    self->spare = NULL;
    self->capspare = 0;
    self->pending = NULL;
    self->pending_tail = &self->pending;
    return b;
}

/* Bytes free on the database's file system for us (UINT64_MAX when it
   cannot be asked: ":memory:", a URI name). */
static uint64_t s_free_bytes(const journal_t *self)
{
    return s_fs_bytes(self->db_path, true);
}

/* While full: takes new work again once the disk has room, else looks
   again in 500 ms (journal_commit). */
static void s_check_space(journal_t *self)
{
    if (!self->full)
        return;
    uint64_t free_bytes = s_free_bytes(self);
    /* Room for the reserve, and for the ballast again: the blocks the
       ballast gave back are not space that returned. */
    bool rebuild = self->ballast && !self->ballast_held;
    if (free_bytes < self->reserve * (rebuild ? 2 : 1)) {
        self->retry_at = clock_mono_ms() + 500;
        return;
    }
    if (rebuild)
        self->ballast_held = s_ballast_make(self->ballast, self->reserve);
    if (free_bytes >= JOURNAL_TIGHT_BYTES)
        self->tight = false;
    self->full = false;
    log_info("event=storage_recovered db=%s free_kb=%llu note=\"submits are taken again\"",
             self->db_path, (unsigned long long) (free_bytes / 1024));
}

/* Moves a batch's submits to the done list: refused with why, or (why
   NULL) committed. */
static void s_submits_done(journal_t *self, pending_submit_t *list, const char *why)
{
    while (list) {
        pending_submit_t *p = list;
        list = p->next;
        p->next = NULL;
        if (why)
            p->refused = xstrdup(why);
        *self->done_tail = p;
        self->done_tail = &p->next;
    }
}

/* A written batch: its submits are done, and on failure its ops go back
   in front of the journal. Returns rc. */
static int s_batch_done(journal_t *self, batch_t *b, int rc, const char *why)
{
    if (rc == 0) {
        /* b->fsync says an answer may count on it; with interval or off
           that is decided by the mode, which fsyncs no commit. */
        store_sync_t mode = store_sync_mode(self->store);
        if (self->metrics)
            metrics_commit(self->metrics, (double) (clock_mono_us() - b->taken_us) / 1e6, b->rows,
                           b->fsync && (mode == STORE_SYNC_FULL || mode == STORE_SYNC_ACKED));
        s_ops_clear(b->ops, b->nops);
        /* Keep the bigger one, up to 64 Ki ops (3 MiB): past that it was
           a burst, and the memory goes back. */
        if (b->capops > self->capspare && b->capops <= 65536) {
            free(self->spare);
            self->spare = b->ops;
            self->capspare = b->capops;
        } else
            free(b->ops);
        self->failing = false;
        s_check_space(self);
        self->retry_at = 0;
        /* One batch is out at a time, taken in journal order. */
        assert(b->seq_end >= self->written);
        self->written = b->seq_end;
        if (b->fsync) {
            self->synced = b->seq_end;
            self->unsynced_since = 0;
        } else if (!self->unsynced_since) {
            self->unsynced_since = b->taken_us / 1000;
        }
        /* What is only written has a time the timer fsyncs it by: else an
           answer held for it (journal_written) would wait for ever. */
        assert(self->synced == self->written || self->unsynced_since);
        s_submits_done(self, b->pending, NULL);
    } else {
        if (!self->failing)
            log_error("event=commit_failed db=%s error=\"%s\" pending_ops=%zu note=\"no new "
                      "submits and no answers until a commit succeeds (retried every 500 ms)\"",
                      self->db_path, why, b->nops + self->nops);
        self->failing = true;
        self->full = true;
        self->tight = true;
        /* The WAL cannot be checkpointed into a database that has to grow
           on a disk with no block left (a small disk, where the WAL holds
           most of them): the ballast's blocks let it, and the checkpoint
           then truncates the WAL and gives back far more. */
        if (self->ballast_held) {
            unlink(self->ballast);
            self->ballast_held = false;
            self->checkpoint_next = true;
            log_warn("event=ballast_released db=%s bytes=%llu", self->db_path,
                     (unsigned long long) self->reserve);
        }
        snprintf(self->why, sizeof self->why, "%s", why);
        self->retry_at = clock_mono_ms() + 500;
        /* Nothing decided is lost: the ops are replayed at the next flush,
           before the ones journalled since. */
        if (b->nops) {
            size_t n = b->nops + self->nops;
            jop_t *ops = xrealloc(b->ops, n * sizeof *ops);
            if (self->nops)
                memcpy(ops + b->nops, self->ops, self->nops * sizeof *ops);
            free(self->ops);
            self->ops = ops;
            self->nops = self->capops = n;
            self->since = clock_mono_ms();
        } else {
            free(b->ops);
        }
        s_submits_done(self, b->pending, why);
    }
    free(b);
    return rc;
}

/* Takes a batch back from the writer (waiting for it if wait). Returns the
   commit's result; 0 when none was out or it is not written yet. */
static int s_complete(journal_t *self, bool wait)
{
    int rc = 0;
    char why[512];
    batch_t *b = writer_finish(self->writer, wait, &rc, why, sizeof why);
    return b ? s_batch_done(self, b, rc, why) : 0;
}

void journal_collect(journal_t *self)
{
    s_complete(self, false);
}

/* True when a batch is small enough to write on the loop: rows and the
   bytes of text they carry, about. */
static bool s_batch_small(const batch_t *b)
{
    size_t n = b->nops, bytes = 0;
    for (size_t i = 0; i < b->nops; i++) {
        /* A job's delete (and the vacuum after it) writes as many rows as
           the job has: never on the loop. */
        if (b->ops[i].type == J_JOB_DELETE)
            n += INLINE_WRITE_MAX;
        bytes += b->ops[i].row_bytes;
        if (b->ops[i].outcome)
            bytes += strlen(b->ops[i].outcome);
    }
    for (const pending_submit_t *p = b->pending; p; p = p->next) {
        n += (size_t) p->ntasks + 1;
        bytes += (size_t) p->bytes + (p->job_definition ? strlen(p->job_definition) : 0);
    }
    return n <= INLINE_WRITE_MAX && bytes <= INLINE_WRITE_MAX_BYTES;
}

/* Starts a commit of what is journalled and waiting (the writer must be
   idle). A small one is written here at once: handing it over would cost
   two thread wakeups, which is most of a lone task's round trip; a big one
   goes to the writer, and with wait this returns once it is written.
   Returns the commit's result (0 when it is still being written). */
static int s_flush_start(journal_t *self, int64_t now, bool wait, bool force)
{
    assert(!writer_busy(self->writer));
    batch_t *b = s_take_batch(self, now, force);
    if (!b)
        return 0;
    if (s_batch_small(b)) {
        char why[512] = "";
        int rc = s_write_batch(self->store, b, why, sizeof why);
        return s_batch_done(self, b, rc, why);
    }
    writer_start(self->writer, b);
    return wait ? s_complete(self, true) : 0;
}

void journal_commit(journal_t *self, int64_t now)
{
    if (self->full && !self->failing && now >= self->retry_at)
        s_check_space(self);
    if (!writer_busy(self->writer) && s_flush_due(self, now, self->hurry))
        s_flush_start(self, now, false, self->hurry);
}

uint64_t journal_mark(const journal_t *self)
{
    return self->seq;
}

bool journal_written(const journal_t *self, uint64_t mark)
{
    assert(self->synced <= self->written);
    assert(self->synced == self->written || self->unsynced_since);
    return self->synced >= mark;
}

void journal_commit_soon(journal_t *self)
{
    self->hurry = true;
}

int journal_flush(journal_t *self)
{
    if (writer_busy(self->writer))
        s_complete(self, true);
    int64_t now = clock_mono_ms();
    if (s_flush_due(self, now, true))
        s_flush_start(self, now, true, true);
    return self->failing ? -1 : 0;
}

const char *journal_failing(const journal_t *self)
{
    return self->failing ? self->why : NULL;
}

const char *journal_full(const journal_t *self)
{
    return self->full ? self->why : NULL;
}

pending_submit_t *journal_take_done(journal_t *self)
{
    pending_submit_t *p = self->done;
    if (p) {
        self->done = p->next;
        if (!self->done)
            self->done_tail = &self->done;
        p->next = NULL;
    }
    return p;
}

bool journal_idle(const journal_t *self)
{
    return !writer_busy(self->writer);
}

store_t *journal_store(journal_t *self)
{
    if (writer_busy(self->writer)) {
        int64_t t0 = clock_mono_us();
        writer_idle(self->writer);
        int64_t us = clock_mono_us() - t0;
        self->store_waits++;
        self->store_wait_us += us;
        if (us > self->store_wait_max_us)
            self->store_wait_max_us = us;
    }
    return self->store;
}
