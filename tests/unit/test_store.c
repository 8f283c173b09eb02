/*  Unit tests for master/store: the master's durable state in SQLite.

    The first case reads as a usage example. File databases live in a fresh
    temporary directory per test. Two test-only hooks reach under the store
    without widening its API: an SQLite auto-extension that remembers the
    last connection opened (to set PRAGMA max_page_count and read settings
    back), and a shim VFS that makes WAL writes fail as on a full disk.

    ZTASK_STORE_BENCH_N sets the number of tasks in the insert-rate
    measurement (default 200000; lower it under valgrind).
*/
#include "../../common/clock.h"
#include "../../master/journal.h"
#include "../../master/metrics.h"
#include "../../master/sched.h"
#include "../../master/store.h"

#include "../ztest.h"
#include "sqlfault.h"
#include <sqlite3.h>

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- test hooks (process state on purpose: SQLite's hooks are global) ---- */

static sqlite3 *s_last_db; /* the connection the last store_new opened */

static int s_capture_db(sqlite3 *db, const char **errmsg, const struct sqlite3_api_routines *api)
{
    (void)errmsg;
    (void)api;
    s_last_db = db;
    return SQLITE_OK;
}

/* ---- helpers ---- */

typedef struct {
    char dir[256];
    char db[300];
} tmp_t;

static void tmp_make(tmp_t *t)
{
    const char *base = getenv("TMPDIR");
    snprintf(t->dir, sizeof t->dir, "%s/ztask-store-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    snprintf(t->db, sizeof t->db, "%s/state.db", t->dir);
}

/* Removes the files SQLite made (db, -wal, -shm) and the directory. */
static void tmp_remove(tmp_t *t)
{
    DIR *d = opendir(t->dir);
    if (!d)
        return;
    struct dirent *e;
    char path[600];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", t->dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(t->dir);
}

static store_t *s_open(const char *path, store_sync_t sync)
{
    char err[512];
    store_t *store = store_new(path, sync, err, sizeof err);
    ck_assert_msg(store != NULL, "store_new(%s): %s", path, err);
    return store;
}

/* A copy of what the callbacks were given (their strings are borrowed). */
typedef struct {
    int64_t id, job, index;
    proto_state_t state;
    int attempt, retries;
    int32_t priority;
    char name[32];
    char worker[32];       /* "" when NULL */
    bool has_worker;
    char outcome[128];     /* "" when NULL */
    bool has_outcome;
    double started, finished;
    int64_t spec_bytes;
    bool held;
} row_t;

typedef struct {
    int n;
    int stop_after;        /* stop the iteration after this many rows; 0 = never */
    row_t r[64];
} rows_t;

static int s_collect(const store_task_row_t *row, void *arg)
{
    rows_t *rows = arg;
    ck_assert_int_lt(rows->n, 64);
    row_t *r = &rows->r[rows->n++];
    r->id = row->id;
    r->job = row->job;
    r->index = row->index;
    r->state = row->state;
    r->attempt = row->attempt;
    r->retries = row->retries;
    r->priority = row->priority;
    ck_assert_ptr_nonnull(row->name);
    snprintf(r->name, sizeof r->name, "%s", row->name);
    r->has_worker = row->worker != NULL;
    snprintf(r->worker, sizeof r->worker, "%s", row->worker ? row->worker : "");
    r->has_outcome = row->outcome_json != NULL;
    snprintf(r->outcome, sizeof r->outcome, "%s", row->outcome_json ? row->outcome_json : "");
    r->started = row->started;
    r->finished = row->finished;
    r->spec_bytes = row->spec_bytes;
    r->held = row->held;
    return rows->stop_after > 0 && rows->n >= rows->stop_after;
}

static row_t s_get(store_t *store, int64_t task)
{
    rows_t rows = {0};
    bool found = false;
    ck_assert_int_eq(store_task_get(store, task, s_collect, &rows, &found), 0);
    ck_assert_msg(found, "task %lld not found", (long long)task);
    ck_assert_int_eq(rows.n, 1);
    return rows.r[0];
}

/* All tasks of a job, in id order (one big page). */
static int s_job_tasks(store_t *store, int64_t job, rows_t *rows)
{
    memset(rows, 0, sizeof *rows);
    int64_t last;
    ck_assert_int_eq(store_results_each(store, job, 0, -1, false, s_collect, rows, &last), 0);
    return rows->n;
}

static int64_t s_insert(store_t *store, int64_t job, int64_t index)
{
    char spec[96], name[32];
    snprintf(spec, sizeof spec, "{\"argv\":[\"echo\",\"%lld\"],\"index\":%lld}", (long long)index,
             (long long)index);
    snprintf(name, sizeof name, "t%lld", (long long)index);
    int64_t id = -1;
    ck_assert_int_eq(store_task_insert(store, 0, job, index, name, 0, 0, spec, NULL, &id), 0);
    ck_assert_int_gt(id, 0);
    return id;
}

static int64_t s_job(store_t *store, const char *name)
{
    int64_t job = -1;
    ck_assert_int_eq(store_job_create(store,
        &(store_job_new_t){.name = name, .created = 1000.0}, &job), 0);
    ck_assert_int_gt(job, 0);
    return job;
}

static int64_t s_pragma_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- tests ---- */

START_TEST(test_usage_submit_run_finish_and_read_back)
{
    char err[256];
    store_t *store = store_new(":memory:", STORE_SYNC_FULL, err, sizeof err);
    ck_assert_msg(store != NULL, "%s", err);

    /* Submit: a job and its tasks in one group, committed before the ack. */
    int64_t job, t0, t1;
    ck_assert_int_eq(store_job_create(store,
        &(store_job_new_t){.name = "nightly", .created = 1000.0}, &job), 0);
    const char *spec0 = "{\"argv\":[\"true\"]}", *spec1 = "{\"shell\":\"exit 3\"}";
    ck_assert_int_eq(store_task_insert(store, 0, job, 0, "first", 3, 1, spec0, NULL, &t0), 0);
    ck_assert_int_eq(store_task_insert(store, 0, job, 1, "second", 0, 0, spec1, NULL, &t1), 0);
    ck_assert(store_dirty(store));
    ck_assert_int_eq(store_commit(store), 0);
    ck_assert(!store_dirty(store));

    /* Dispatch to a worker's pipe, it starts, it finishes. */
    ck_assert_int_eq(store_task_set_running(store, t0, PROTO_ST_ASSIGNED, 1, "w1", 0, NULL), 0);
    ck_assert_int_eq(store_task_set_running(store, t0, PROTO_ST_RUNNING, 1, "w1", 1001.5, NULL), 0);
    ck_assert_int_eq(store_task_finish(store, t0, PROTO_ST_DONE, 1, "w1", "{\"exit\":0}", 1002),
                     0);
    ck_assert_int_eq(store_commit(store), 0);

    /* Read one task back... */
    row_t r = s_get(store, t0);
    ck_assert_int_eq(r.id, t0);
    ck_assert_int_eq(r.job, job);
    ck_assert_int_eq(r.index, 0);
    ck_assert_str_eq(r.name, "first");
    ck_assert_int_eq(r.state, PROTO_ST_DONE);
    ck_assert_int_eq(r.attempt, 1);
    ck_assert_int_eq(r.retries, 1);
    ck_assert_int_eq(r.priority, 3);
    ck_assert_str_eq(r.worker, "w1");
    ck_assert_str_eq(r.outcome, "{\"exit\":0}");
    ck_assert_double_eq(r.started, 1001.5);
    ck_assert_double_eq(r.finished, 1002.0);

    char *spec = store_task_spec(store, t1);
    ck_assert_str_eq(spec, "{\"shell\":\"exit 3\"}");
    free(spec);

    /* ...and the job's results, in submission order. */
    rows_t rows = {0};
    int64_t last = 0;
    ck_assert_int_eq(store_results_each(store, job, 0, 100, false, s_collect, &rows, &last), 0);
    ck_assert_int_eq(rows.n, 2);
    ck_assert_int_eq(rows.r[0].id, t0);
    ck_assert_int_eq(rows.r[1].id, t1);
    ck_assert_int_eq(rows.r[1].state, PROTO_ST_QUEUED);
    ck_assert(!rows.r[1].has_outcome);
    ck_assert(!rows.r[1].has_worker);
    ck_assert_int_eq(last, t1);

    ck_assert_int_eq(store_check(store), 0);
    store_destroy(&store);
    ck_assert_ptr_null(store);
    store_destroy(&store); /* NULL is fine */
}
END_TEST

START_TEST(test_results_page_by_id_with_after_limit_and_failed_only)
{
    store_t *store = s_open(":memory:", STORE_SYNC_OFF);
    int64_t a = s_job(store, "a"), b = s_job(store, "b");
    int64_t ids[7];
    /* Interleaved with another job's tasks: pages must skip those. */
    for (int i = 0; i < 7; i++) {
        ids[i] = s_insert(store, a, i);
        s_insert(store, b, i);
    }
    for (int i = 0; i < 7; i++) {
        proto_state_t st = i == 1 || i == 4 ? PROTO_ST_FAILED
                           : i == 5         ? PROTO_ST_CANCELLED
                                            : PROTO_ST_DONE;
        ck_assert_int_eq(store_task_finish(store, ids[i], st, 1, "w", "{}", 5.0), 0);
    }
    ck_assert_int_eq(store_commit(store), 0);

    /* All results, three per page, until an empty page. */
    int64_t after = 0, last = 0, seen[8];
    int nseen = 0, pages = 0;
    for (;;) {
        ck_assert_int_lt(pages, 10);
        rows_t rows = {0};
        ck_assert_int_eq(store_results_each(store, a, after, 3, false, s_collect, &rows, &last), 0);
        pages++;
        if (rows.n == 0) {
            ck_assert_int_eq(last, -1);
            break;
        }
        ck_assert_int_le(rows.n, 3);
        ck_assert_int_eq(last, rows.r[rows.n - 1].id);
        for (int i = 0; i < rows.n; i++) {
            ck_assert_int_eq(rows.r[i].job, a);
            seen[nseen++] = rows.r[i].id;
        }
        after = last;
    }
    ck_assert_int_eq(pages, 4); /* 3 + 3 + 1, then empty */
    ck_assert_int_eq(nseen, 7);
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(seen[i], ids[i]);

    /* Failed only (cancelled ones too): two per page. */
    rows_t rows = {0};
    ck_assert_int_eq(store_results_each(store, a, 0, 2, true, s_collect, &rows, &last), 0);
    ck_assert_int_eq(rows.n, 2);
    ck_assert_int_eq(rows.r[0].id, ids[1]);
    ck_assert_int_eq(rows.r[1].id, ids[4]);
    ck_assert_int_eq(rows.r[0].state, PROTO_ST_FAILED);
    ck_assert_int_eq(last, ids[4]);
    memset(&rows, 0, sizeof rows);
    ck_assert_int_eq(store_results_each(store, a, last, 2, true, s_collect, &rows, &last), 0);
    ck_assert_int_eq(rows.n, 1);
    ck_assert_int_eq(rows.r[0].id, ids[5]);
    ck_assert_int_eq(rows.r[0].state, PROTO_ST_CANCELLED);

    /* A callback that stops early: last_id is the last row it was given. */
    memset(&rows, 0, sizeof rows);
    rows.stop_after = 2;
    ck_assert_int_eq(store_results_each(store, a, 0, 100, false, s_collect, &rows, &last), 0);
    ck_assert_int_eq(rows.n, 2);
    ck_assert_int_eq(last, ids[1]);

    /* Limit 0 gives nothing; an unknown job gives nothing. */
    memset(&rows, 0, sizeof rows);
    ck_assert_int_eq(store_results_each(store, a, 0, 0, false, s_collect, &rows, &last), 0);
    ck_assert_int_eq(rows.n, 0);
    ck_assert_int_eq(last, -1);
    ck_assert_int_eq(store_results_each(store, 999, 0, 10, false, s_collect, &rows, &last), 0);
    ck_assert_int_eq(rows.n, 0);
    store_destroy(&store);
}
END_TEST

START_TEST(test_requeue_puts_task_back_in_queue_keeping_attempt)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t job = s_job(store, "j");
    int64_t t = s_insert(store, job, 0);
    ck_assert_int_eq(store_task_set_running(store, t, PROTO_ST_ASSIGNED, 1, "w1", 0, NULL), 0);
    ck_assert_int_eq(store_task_set_running(store, t, PROTO_ST_RUNNING, 1, "w1", 50.0, NULL), 0);
    ck_assert_int_eq(store_commit(store), 0);
    row_t r = s_get(store, t);
    ck_assert_int_eq(r.state, PROTO_ST_RUNNING);
    ck_assert_double_eq(r.started, 50.0);

    /* The worker vanished: back to the queue, same attempt count. */
    ck_assert_int_eq(store_task_requeue(store, t, 1), 0);
    ck_assert_int_eq(store_commit(store), 0);
    r = s_get(store, t);
    ck_assert_int_eq(r.state, PROTO_ST_QUEUED);
    ck_assert_int_eq(r.attempt, 1);
    ck_assert(!r.has_worker);
    ck_assert_double_eq(r.started, 0);

    /* The next attempt on another worker; it has not started yet. */
    ck_assert_int_eq(store_task_set_running(store, t, PROTO_ST_RUNNING, 1, "w1", 60.0, NULL), 0);
    ck_assert_int_eq(store_task_set_running(store, t, PROTO_ST_ASSIGNED, 2, "w2", 77.0, NULL), 0);
    r = s_get(store, t);
    ck_assert_int_eq(r.state, PROTO_ST_ASSIGNED);
    ck_assert_double_eq(r.started, 0);
    ck_assert_int_eq(r.attempt, 2);
    ck_assert_str_eq(r.worker, "w2");

    /* States that are not "running" are refused without touching the task. */
    ck_assert_int_eq(store_task_set_running(store, t, PROTO_ST_DONE, 2, "w2", 0, NULL), -1);
    ck_assert_ptr_nonnull(strstr(store_error(store), "set_running"));
    ck_assert_int_eq(store_task_finish(store, t, PROTO_ST_RUNNING, 2, "w2", NULL, 0), -1);
    ck_assert_int_eq(s_get(store, t).state, PROTO_ST_ASSIGNED);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
}
END_TEST

/* A task sent as attempt 2 and taken back (a recall) before its
   assignment was written (ASSIGN_WRITE_MS): the row still says attempt 0,
   and a restart would send attempt 2 again and refuse the claim of the
   attempt 3 sent meanwhile. The requeue stores the attempt that was out,
   never lowering it (scn_recall). */
START_TEST(test_requeue_stores_the_attempt_that_was_out)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t job = s_job(store, "j");
    int64_t t = s_insert(store, job, 0);
    ck_assert_int_eq(store_commit(store), 0);
    ck_assert_int_eq(s_get(store, t).attempt, 0);
    ck_assert_int_eq(store_task_requeue(store, t, 2), 0);
    ck_assert_int_eq(store_commit(store), 0);
    row_t r = s_get(store, t);
    ck_assert_int_eq(r.state, PROTO_ST_QUEUED);
    ck_assert_int_eq(r.attempt, 2);
    ck_assert_int_eq(store_task_requeue(store, t, 1), 0);
    ck_assert_int_eq(store_commit(store), 0);
    ck_assert_int_eq(s_get(store, t).attempt, 2);
    store_destroy(&store);
}
END_TEST

START_TEST(test_cancel_queued_cancels_only_the_queued_tasks_of_the_job)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t a = s_job(store, "a"), b = s_job(store, "b");
    int64_t q1 = s_insert(store, a, 0), run = s_insert(store, a, 1), done = s_insert(store, a, 2);
    int64_t q2 = s_insert(store, a, 3), other = s_insert(store, b, 0);
    ck_assert_int_eq(store_task_set_running(store, run, PROTO_ST_RUNNING, 1, "w", 10, NULL), 0);
    ck_assert_int_eq(store_task_finish(store, done, PROTO_ST_DONE, 1, "w", "{}", 11), 0);
    ck_assert_int_eq(store_commit(store), 0);

    int64_t count = -1;
    ck_assert_int_eq(store_job_cancel_queued(store, a, 20.0, &count), 0);
    ck_assert_int_eq(count, 2);
    ck_assert_int_eq(store_commit(store), 0);

    ck_assert_int_eq(s_get(store, q1).state, PROTO_ST_CANCELLED);
    ck_assert_double_eq(s_get(store, q1).finished, 20.0);
    ck_assert(!s_get(store, q1).has_outcome);
    ck_assert_int_eq(s_get(store, q2).state, PROTO_ST_CANCELLED);
    ck_assert_int_eq(s_get(store, run).state, PROTO_ST_RUNNING);
    ck_assert_int_eq(s_get(store, done).state, PROTO_ST_DONE);
    ck_assert_int_eq(s_get(store, other).state, PROTO_ST_QUEUED);

    ck_assert_int_eq(store_job_cancel_queued(store, a, 21.0, &count), 0);
    ck_assert_int_eq(count, 0);
    store_destroy(&store);
}
END_TEST

START_TEST(test_ids_are_never_reused_after_a_job_is_deleted)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t job, task, deleted;
    ck_assert_int_eq(store_job_create(store,
        &(store_job_new_t){.name = "a", .created = 1.0}, &job), 0);
    ck_assert_int_eq(store_task_insert(store, 0, job, 0, NULL, 0, 0, "{}", NULL, &task), 0);
    ck_assert_int_eq(store_job_delete(store, job, &deleted), 0);
    ck_assert_int_eq(deleted, 1);
    ck_assert_int_eq(store_commit(store), 0);
    int64_t job2, task2;
    ck_assert_int_eq(store_job_create(store,
        &(store_job_new_t){.name = "b", .created = 2.0}, &job2), 0);
    ck_assert_int_eq(store_task_insert(store, 0, job2, 0, NULL, 0, 0, "{}", NULL, &task2), 0);
    /* A late result for the forgotten task must not land on a new one. */
    ck_assert_int_gt(job2, job);
    ck_assert_int_gt(task2, task);
    store_destroy(&store);
}
END_TEST

/* Many tasks at once: whole statements of 16 rows and single rows for the
   rest, each row as given; a bad task refuses the call before anything is
   written; a failing row takes the whole group with it. */
START_TEST(test_many_tasks_inserted_at_once)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t job = s_job(store, "many");
    enum { N = 37 };
    store_task_new_t t[N];
    char specs[N][32], names[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(specs[i], sizeof specs[i], "{\"fn\":\"f%d\"}", i);
        snprintf(names[i], sizeof names[i], "n%d", i);
        t[i] = (store_task_new_t){.id = 100 + i,
                                  .index = 1000 + i,
                                  .name = i % 3 ? names[i] : NULL,
                                  .priority = i - 5,
                                  .retries = i % 4,
                                  .spec_json = specs[i],
                                  .needs = i % 2 ? "fn:gpu" : NULL};
    }
    ck_assert_int_eq(store_tasks_insert(store, job, t, N), 0);
    ck_assert_int_eq(store_commit(store), 0);
    for (int i = 0; i < N; i++) {
        row_t r = s_get(store, 100 + i);
        ck_assert_int_eq(r.job, job);
        ck_assert_int_eq(r.index, 1000 + i);
        ck_assert_str_eq(r.name, i % 3 ? names[i] : "");
        ck_assert_int_eq(r.priority, i - 5);
        ck_assert_int_eq(r.retries, i % 4);
        ck_assert_int_eq(r.state, PROTO_ST_QUEUED);
        char *spec = store_task_spec(store, 100 + i);
        ck_assert_str_eq(spec, specs[i]);
        free(spec);
    }
    rows_t rows = {0};
    ck_assert_int_eq(store_unfinished_each(store, s_collect, &rows), 0);
    ck_assert_int_eq(rows.n, N);
    int64_t last_job, last_task;
    ck_assert_int_eq(store_last_ids(store, &last_job, &last_task), 0);
    ck_assert_int_eq(last_task, 100 + N - 1);

    /* No id: refused, nothing written, the store still usable. */
    t[20].id = 0;
    ck_assert_int_eq(store_tasks_insert(store, job, &t[16], 8), -1);
    ck_assert(!store_dirty(store));
    /* Id 117 is taken: the write fails inside the second statement's
       group and the first 16 new rows go with it. */
    for (int i = 0; i < N; i++)
        t[i].id = 200 + i;
    t[20].id = 117;
    ck_assert_int_eq(store_tasks_insert(store, job, t, N), -1);
    ck_assert_int_eq(store_commit(store), -1);
    rows.n = 0;
    ck_assert_int_eq(store_unfinished_each(store, s_collect, &rows), 0);
    ck_assert_int_eq(rows.n, N);
    ck_assert_int_eq(store_tasks_insert(store, job, t, 0), 0);
    store_destroy(&store);
}
END_TEST

START_TEST(test_duplicates_are_recorded_and_counted_without_changing_the_task)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t job = s_job(store, "j");
    int64_t t1 = s_insert(store, job, 0), t2 = s_insert(store, job, 1);
    ck_assert_int_eq(store_task_finish(store, t1, PROTO_ST_DONE, 2, "w2", "{\"exit\":0}", 9), 0);
    ck_assert_int_eq(store_duplicate_count(store, t1), 0);
    ck_assert_int_eq(store_duplicate_count(store, 0), 0);

    /* Attempt 1's result arrives late, twice; and one for t2. */
    ck_assert_int_eq(store_duplicate_add(store, t1, 1, "w1", "{\"exit\":1}", 10), 0);
    ck_assert_int_eq(store_duplicate_add(store, t1, 1, "w1", "{\"exit\":1}", 11), 0);
    ck_assert_int_eq(store_duplicate_add(store, t2, 1, NULL, NULL, 12), 0);
    ck_assert_int_eq(store_commit(store), 0);

    ck_assert_int_eq(store_duplicate_count(store, t1), 2);
    ck_assert_int_eq(store_duplicate_count(store, t2), 1);
    ck_assert_int_eq(store_duplicate_count(store, 0), 3);
    ck_assert_int_eq(store_duplicate_count(store, 12345), 0);

    row_t r = s_get(store, t1);
    ck_assert_int_eq(r.state, PROTO_ST_DONE);
    ck_assert_int_eq(r.attempt, 2);
    ck_assert_str_eq(r.worker, "w2");
    ck_assert_str_eq(r.outcome, "{\"exit\":0}");
    ck_assert_int_eq(s_get(store, t2).state, PROTO_ST_QUEUED);
    store_destroy(&store);
}
END_TEST

typedef struct {
    int n;
    struct {
        int64_t id;
        char name[32];
        char owner[48];
        bool has_name, has_owner, closed;
        double created, finished;
    } j[8];
} jobs_t;

static int s_collect_job(const store_job_row_t *row, void *arg)
{
    jobs_t *jobs = arg;
    ck_assert_int_lt(jobs->n, 8);
    jobs->j[jobs->n].id = row->id;
    jobs->j[jobs->n].has_name = row->name != NULL;
    snprintf(jobs->j[jobs->n].name, sizeof jobs->j[0].name, "%s", row->name ? row->name : "");
    jobs->j[jobs->n].has_owner = row->owner != NULL;
    snprintf(jobs->j[jobs->n].owner, sizeof jobs->j[0].owner, "%s", row->owner ? row->owner : "");
    jobs->j[jobs->n].closed = row->closed;
    jobs->j[jobs->n].created = row->created;
    jobs->j[jobs->n].finished = row->finished;
    jobs->n++;
    return 0;
}

START_TEST(test_reopened_file_database_has_everything_committed)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open(tmp.db, STORE_SYNC_FULL);
    ck_assert_str_eq((const char *)sqlite3_db_filename(s_last_db, "main"), tmp.db);
    int64_t job = s_job(store, "nightly");
    int64_t t1 = s_insert(store, job, 7), t2 = s_insert(store, job, 8);
    ck_assert_int_eq(store_task_finish(store, t1, PROTO_ST_FAILED, 1, "w1", "{\"exit\":2}", 3),
                     0);
    ck_assert_int_eq(store_task_set_running(store, t2, PROTO_ST_RUNNING, 1, "w1", 2.5, NULL), 0);
    ck_assert_int_eq(store_duplicate_add(store, t1, 1, "w9", "{}", 4.0), 0);
    ck_assert_int_eq(store_job_close(store, job), 0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);

    store = s_open(tmp.db, STORE_SYNC_INTERVAL);
    jobs_t jobs = {0};
    ck_assert_int_eq(store_jobs_each(store, s_collect_job, &jobs), 0);
    ck_assert_int_eq(jobs.n, 1);
    ck_assert_int_eq(jobs.j[0].id, job);
    ck_assert_str_eq(jobs.j[0].name, "nightly");
    ck_assert(jobs.j[0].closed);
    ck_assert_double_eq(jobs.j[0].created, 1000.0);

    row_t r = s_get(store, t1);
    ck_assert_int_eq(r.state, PROTO_ST_FAILED);
    ck_assert_int_eq(r.index, 7);
    ck_assert_str_eq(r.outcome, "{\"exit\":2}");
    r = s_get(store, t2);
    ck_assert_int_eq(r.state, PROTO_ST_RUNNING);
    ck_assert_double_eq(r.started, 2.5);
    char *spec = store_task_spec(store, t2);
    ck_assert_str_eq(spec, "{\"argv\":[\"echo\",\"8\"],\"index\":8}");
    free(spec);
    ck_assert_int_eq(store_duplicate_count(store, t1), 1);
    ck_assert_int_eq(s_pragma_int(s_last_db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    ck_assert_int_eq(store_check(store), 0);

    /* Ids keep growing after a restart. */
    int64_t t3 = s_insert(store, job, 9);
    ck_assert_int_gt(t3, t2);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    tmp_remove(&tmp);
}
END_TEST

START_TEST(test_sync_modes_set_synchronous_and_files_use_wal)
{
    tmp_t tmp;
    tmp_make(&tmp);
    static const struct {
        store_sync_t sync;
        int synchronous;
    } modes[] = {{STORE_SYNC_FULL, 2},
                 {STORE_SYNC_INTERVAL, 1},
                 {STORE_SYNC_OFF, 0},
                 {STORE_SYNC_ACKED, 1}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        store_t *store = s_open(tmp.db, modes[i].sync);
        ck_assert_int_eq(s_pragma_int(s_last_db, "PRAGMA synchronous"), modes[i].synchronous);
        sqlite3_stmt *st = NULL;
        ck_assert_int_eq(sqlite3_prepare_v2(s_last_db, "PRAGMA journal_mode", -1, &st, NULL),
                         SQLITE_OK);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
        sqlite3_finalize(st);
        ck_assert_int_eq(s_pragma_int(s_last_db, "PRAGMA busy_timeout") > 0, 1);
        store_destroy(&store);
    }
    char err[128];
    ck_assert_ptr_null(store_new(tmp.db, (store_sync_t)7, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "sync"));
    tmp_remove(&tmp);
}
END_TEST

START_TEST(test_uncommitted_writes_are_gone_after_close_without_commit)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open(tmp.db, STORE_SYNC_FULL);
    int64_t job = s_job(store, "j");
    int64_t kept = s_insert(store, job, 0);
    ck_assert_int_eq(store_commit(store), 0);
    int64_t lost = s_insert(store, job, 1);
    ck_assert_int_eq(store_task_finish(store, kept, PROTO_ST_DONE, 1, "w", "{}", 1), 0);
    ck_assert(store_dirty(store));
    store_destroy(&store); /* no commit */

    store = s_open(tmp.db, STORE_SYNC_FULL);
    rows_t rows;
    ck_assert_int_eq(s_job_tasks(store, job, &rows), 1);
    ck_assert_int_eq(rows.r[0].id, kept);
    ck_assert_int_eq(rows.r[0].state, PROTO_ST_QUEUED);
    bool found = true;
    ck_assert_int_eq(store_task_get(store, lost, s_collect, &rows, &found), 0);
    ck_assert(!found);
    store_destroy(&store);
    tmp_remove(&tmp);
}
END_TEST

/* The killed child's store, kept reachable: valgrind (which reports even for
   a SIGKILLed process) must not count the deliberate crash as a leak. */
static store_t *volatile s_crashed_store;

START_TEST(test_killed_process_loses_only_uncommitted_writes)
{
    tmp_t tmp;
    tmp_make(&tmp);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* The "master": commit a job with 3 tasks, start another group,
           then die without warning in the middle of it. */
        char err[256];
        store_t *store = store_new(tmp.db, STORE_SYNC_FULL, err, sizeof err);
        if (!store)
            _exit(2);
        s_crashed_store = store;
        int64_t job, id;
        int rc = store_job_create(store, &(store_job_new_t){.name = "j", .created = 1}, &job);
        for (int i = 0; i < 3; i++)
            rc |= store_task_insert(store, 0, job, i, "t", 0, 0, "{}", NULL, &id);
        rc |= store_commit(store);
        for (int i = 3; i < 100; i++)
            rc |= store_task_insert(store, 0, job, i, "t", 0, 0, "{}", NULL, &id);
        rc |= store_task_finish(store, 1, PROTO_ST_DONE, 1, "w", "{}", 2);
        if (rc != 0)
            _exit(3);
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);

    store_t *store = s_open(tmp.db, STORE_SYNC_FULL);
    rows_t rows;
    ck_assert_int_eq(s_job_tasks(store, 1, &rows), 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rows.r[i].state, PROTO_ST_QUEUED);
    ck_assert_int_eq(store_check(store), 0);
    store_destroy(&store);
    tmp_remove(&tmp);
}
END_TEST

START_TEST(test_rollback_discards_writes_since_last_commit)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t job = s_job(store, "j");
    int64_t t = s_insert(store, job, 0);
    ck_assert_int_eq(store_commit(store), 0);

    s_insert(store, job, 1);
    ck_assert_int_eq(store_task_set_running(store, t, PROTO_ST_RUNNING, 1, "w", 1, NULL), 0);
    ck_assert(store_dirty(store));
    store_rollback(store);
    ck_assert(!store_dirty(store));
    store_rollback(store); /* nothing open: no-op */
    ck_assert_int_eq(store_commit(store), 0);

    rows_t rows;
    ck_assert_int_eq(s_job_tasks(store, job, &rows), 1);
    ck_assert_int_eq(rows.r[0].state, PROTO_ST_QUEUED);

    /* The store takes writes again after a rollback. */
    s_insert(store, job, 2);
    ck_assert_int_eq(store_commit(store), 0);
    ck_assert_int_eq(s_job_tasks(store, job, &rows), 2);
    store_destroy(&store);
}
END_TEST

START_TEST(test_unfinished_each_gives_exactly_the_unfinished_tasks_in_id_order)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t a = s_job(store, "a"), b = s_job(store, "b");
    int64_t t[10];
    for (int i = 0; i < 10; i++)
        t[i] = s_insert(store, i % 2 ? a : b, i);
    ck_assert_int_eq(store_task_set_running(store, t[1], PROTO_ST_ASSIGNED, 1, "w", 0, NULL), 0);
    ck_assert_int_eq(store_task_set_running(store, t[2], PROTO_ST_RUNNING, 1, "w", 3, NULL), 0);
    ck_assert_int_eq(store_task_finish(store, t[3], PROTO_ST_DONE, 1, "w", "{}", 4), 0);
    ck_assert_int_eq(store_task_finish(store, t[4], PROTO_ST_FAILED, 1, "w", "{}", 4), 0);
    ck_assert_int_eq(store_task_finish(store, t[5], PROTO_ST_CANCELLED, 0, NULL, NULL, 4), 0);
    ck_assert_int_eq(store_task_set_running(store, t[6], PROTO_ST_RUNNING, 1, "w", 3, NULL), 0);
    ck_assert_int_eq(store_task_requeue(store, t[6], 1), 0);
    ck_assert_int_eq(store_task_set_running(store, t[9], PROTO_ST_RUNNING, 1, "w", 3, NULL), 0);
    ck_assert_int_eq(store_task_finish(store, t[9], PROTO_ST_DONE, 1, "w", "{}", 5), 0);
    ck_assert_int_eq(store_commit(store), 0);

    rows_t rows = {0};
    ck_assert_int_eq(store_unfinished_each(store, s_collect, &rows), 0);
    static const int want[] = {0, 1, 2, 6, 7, 8};
    static const proto_state_t want_state[] = {PROTO_ST_QUEUED, PROTO_ST_ASSIGNED,
                                               PROTO_ST_RUNNING, PROTO_ST_QUEUED,
                                               PROTO_ST_QUEUED, PROTO_ST_QUEUED};
    ck_assert_int_eq(rows.n, 6);
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(rows.r[i].id, t[want[i]]);
        ck_assert_int_eq(rows.r[i].state, want_state[i]);
        ck_assert_int_eq(rows.r[i].job, want[i] % 2 ? a : b);
    }

    /* Stopping early is not an error. */
    memset(&rows, 0, sizeof rows);
    rows.stop_after = 2;
    ck_assert_int_eq(store_unfinished_each(store, s_collect, &rows), 0);
    ck_assert_int_eq(rows.n, 2);
    store_destroy(&store);
}
END_TEST

typedef struct {
    int n;
    struct {
        int64_t job;
        proto_state_t state;
        int64_t count;
        int64_t bytes;
    } c[16];
} counts_t;

static int s_collect_count(int64_t job, proto_state_t state, int64_t count, int64_t bytes,
                           void *arg)
{
    counts_t *counts = arg;
    ck_assert_int_lt(counts->n, 16);
    counts->c[counts->n].job = job;
    counts->c[counts->n].state = state;
    counts->c[counts->n].count = count;
    counts->c[counts->n].bytes = bytes;
    counts->n++;
    return 0;
}

static int64_t s_count_of(const counts_t *counts, int64_t job, proto_state_t state)
{
    for (int i = 0; i < counts->n; i++)
        if (counts->c[i].job == job && counts->c[i].state == state)
            return counts->c[i].count;
    return 0;
}

START_TEST(test_counts_each_gives_task_counts_by_job_and_state)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t a = s_job(store, "a"), b = s_job(store, "b");
    s_job(store, "empty");
    int64_t ta[6];
    for (int i = 0; i < 6; i++)
        ta[i] = s_insert(store, a, i);
    for (int i = 0; i < 2; i++)
        s_insert(store, b, i);
    ck_assert_int_eq(store_task_finish(store, ta[0], PROTO_ST_DONE, 1, "w", "{}", 1), 0);
    ck_assert_int_eq(store_task_finish(store, ta[1], PROTO_ST_DONE, 1, "w", "{}", 1), 0);
    ck_assert_int_eq(store_task_finish(store, ta[2], PROTO_ST_FAILED, 1, "w", "{}", 1), 0);
    ck_assert_int_eq(store_task_set_running(store, ta[3], PROTO_ST_RUNNING, 1, "w", 1, NULL), 0);
    ck_assert_int_eq(store_commit(store), 0);

    counts_t counts = {0};
    ck_assert_int_eq(store_counts_each(store, s_collect_count, &counts), 0);
    ck_assert_int_eq(counts.n, 5); /* a: done, failed, running, queued; b: queued */
    ck_assert_int_eq(s_count_of(&counts, a, PROTO_ST_DONE), 2);
    ck_assert_int_eq(s_count_of(&counts, a, PROTO_ST_FAILED), 1);
    ck_assert_int_eq(s_count_of(&counts, a, PROTO_ST_RUNNING), 1);
    ck_assert_int_eq(s_count_of(&counts, a, PROTO_ST_QUEUED), 2);
    ck_assert_int_eq(s_count_of(&counts, b, PROTO_ST_QUEUED), 2);
    /* The bytes of unfinished tasks' specs (what quotas count), none for
       finished ones: s_insert's spec for index i is {"argv":["echo","i"],"index":i}. */
    size_t one = strlen("{\"argv\":[\"echo\",\"4\"],\"index\":4}");
    for (int i = 0; i < counts.n; i++) {
        bool unfinished = counts.c[i].state < PROTO_ST_DONE;
        ck_assert_int_eq(counts.c[i].bytes, unfinished ? counts.c[i].count * (int64_t) one : 0);
    }
    rows_t rows = {0};
    ck_assert_int_eq(store_unfinished_each(store, s_collect, &rows), 0);
    ck_assert_int_eq(rows.n, 5);
    for (int i = 0; i < rows.n; i++)
        ck_assert_int_eq(rows.r[i].spec_bytes, (int64_t) one);
    store_destroy(&store);
}
END_TEST

START_TEST(test_jobs_each_lists_jobs_in_id_order)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t a = s_job(store, "nightly");
    int64_t b = -1;
    ck_assert_int_eq(store_job_create(store,
        &(store_job_new_t){.name = NULL, .owner = "KEY-OF-ANA", .created = 2000.0}, &b), 0);
    ck_assert_int_gt(b, a);
    ck_assert_int_eq(store_job_set_finished(store, a, 1500.0), 0);
    ck_assert_int_eq(store_commit(store), 0);

    jobs_t jobs = {0};
    ck_assert_int_eq(store_jobs_each(store, s_collect_job, &jobs), 0);
    ck_assert_int_eq(jobs.n, 2);
    ck_assert_int_eq(jobs.j[0].id, a);
    ck_assert_str_eq(jobs.j[0].name, "nightly");
    ck_assert(!jobs.j[0].closed);
    ck_assert_double_eq(jobs.j[0].finished, 1500.0);
    ck_assert(!jobs.j[0].has_owner);   /* nobody's */
    ck_assert_int_eq(jobs.j[1].id, b);
    ck_assert(!jobs.j[1].has_name);
    ck_assert_str_eq(jobs.j[1].owner, "KEY-OF-ANA");
    ck_assert_double_eq(jobs.j[1].created, 2000.0);
    ck_assert_double_eq(jobs.j[1].finished, 0);
    store_destroy(&store);
}
END_TEST

START_TEST(test_job_delete_removes_its_tasks_and_duplicates_only)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t a = s_job(store, "a"), b = s_job(store, "b");
    int64_t ta = s_insert(store, a, 0), tb = s_insert(store, b, 0);
    s_insert(store, a, 1);
    ck_assert_int_eq(store_duplicate_add(store, ta, 1, "w", "{}", 1), 0);
    ck_assert_int_eq(store_duplicate_add(store, tb, 1, "w", "{}", 1), 0);
    ck_assert_int_eq(store_commit(store), 0);

    int64_t deleted = -1;
    ck_assert_int_eq(store_job_delete(store, a, &deleted), 0);
    ck_assert_int_eq(deleted, 1);
    ck_assert_int_eq(store_commit(store), 0);

    rows_t rows;
    ck_assert_int_eq(s_job_tasks(store, a, &rows), 0);
    ck_assert_int_eq(s_job_tasks(store, b, &rows), 1);
    ck_assert_int_eq(store_duplicate_count(store, ta), 0);
    ck_assert_int_eq(store_duplicate_count(store, 0), 1);
    char *spec = store_task_spec(store, ta);
    ck_assert_ptr_null(spec);
    memset(&rows, 0, sizeof rows);
    ck_assert_int_eq(store_unfinished_each(store, s_collect, &rows), 0);
    ck_assert_int_eq(rows.n, 1);
    ck_assert_int_eq(rows.r[0].id, tb);
    jobs_t jobs = {0};
    ck_assert_int_eq(store_jobs_each(store, s_collect_job, &jobs), 0);
    ck_assert_int_eq(jobs.n, 1);
    ck_assert_int_eq(jobs.j[0].id, b);

    ck_assert_int_eq(store_job_delete(store, a, &deleted), 0);
    ck_assert_int_eq(deleted, 0);
    store_destroy(&store);
}
END_TEST

START_TEST(test_task_find_gives_the_first_task_with_an_index)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t a = s_job(store, "a"), b = s_job(store, "b");
    int64_t first = s_insert(store, a, 5);
    s_insert(store, b, 5);
    s_insert(store, a, 5); /* a repeated index */
    int64_t six = s_insert(store, a, 6);
    ck_assert_int_eq(store_commit(store), 0);

    int64_t id = -1;
    bool found = false;
    ck_assert_int_eq(store_task_find(store, a, 5, &id, &found), 0);
    ck_assert(found);
    ck_assert_int_eq(id, first);
    ck_assert_int_eq(store_task_find(store, a, 6, &id, &found), 0);
    ck_assert(found);
    ck_assert_int_eq(id, six);
    ck_assert_int_eq(store_task_find(store, a, 7, &id, &found), 0);
    ck_assert(!found);
    ck_assert_int_eq(store_task_find(store, 99, 5, &id, &found), 0);
    ck_assert(!found);
    store_destroy(&store);
}
END_TEST

/* Without a row callback, store_task_get says only whether the task is
   there (how the master tells a stale result from an unknown task). */
START_TEST(test_task_get_without_a_callback_says_only_whether_the_task_exists)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t task = s_insert(store, s_job(store, "a"), 0);
    ck_assert_int_eq(store_commit(store), 0);
    bool found = false;
    ck_assert_int_eq(store_task_get(store, task, NULL, NULL, &found), 0);
    ck_assert(found);
    ck_assert_int_eq(store_task_get(store, task + 1, NULL, NULL, &found), 0);
    ck_assert(!found);
    store_destroy(&store);
}
END_TEST

typedef struct {
    store_t *store;
    int specs;
    int nested_rc;
    char nested_err[256];
} reentry_t;

static int s_read_specs(const store_task_row_t *row, void *arg)
{
    reentry_t *re = arg;
    char *spec = store_task_spec(re->store, row->id);
    ck_assert_ptr_nonnull(spec);
    re->specs++;
    free(spec);
    return 0;
}

static int s_nested_get(const store_task_row_t *row, void *arg)
{
    reentry_t *re = arg;
    rows_t rows = {0};
    bool found;
    re->nested_rc = store_task_get(re->store, row->id, s_collect, &rows, &found);
    snprintf(re->nested_err, sizeof re->nested_err, "%s", store_error(re->store));
    return 0;
}

START_TEST(test_callbacks_may_read_but_not_reenter_their_own_iterator)
{
    store_t *store = s_open(":memory:", STORE_SYNC_FULL);
    int64_t job = s_job(store, "j");
    int64_t t = s_insert(store, job, 0);
    s_insert(store, job, 1);
    ck_assert_int_eq(store_commit(store), 0);

    /* The start-up rebuild reads each spec while iterating. */
    reentry_t re = {.store = store};
    ck_assert_int_eq(store_unfinished_each(store, s_read_specs, &re), 0);
    ck_assert_int_eq(re.specs, 2);

    /* The same statement from its own callback would reset it mid-way. */
    bool found = false;
    ck_assert_int_eq(store_task_get(store, t, s_nested_get, &re, &found), 0);
    ck_assert(found);
    ck_assert_int_eq(re.nested_rc, -1);
    ck_assert_ptr_nonnull(strstr(re.nested_err, "own callback"));
    /* ...and the statement is usable again afterwards. */
    ck_assert_int_eq(s_get(store, t).id, t);
    store_destroy(&store);
}
END_TEST

/* What schema 6 added (hold, limit, definitions), dropped again. */
#define S_DROP_OPS                                                                  \
    "ALTER TABLE tasks DROP COLUMN held; ALTER TABLE jobs DROP COLUMN held;"        \
    "ALTER TABLE jobs DROP COLUMN max_running; ALTER TABLE jobs DROP COLUMN definition;"    \
    "ALTER TABLE tasks DROP COLUMN retry_base;"

/* Runs sql on a closed database file, behind the store's back. */
static void s_file_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK, "%s: %s", sql, msg);
    sqlite3_close(db);
}

/* Turns a closed database file into what an older ztask left: runs sql
   on it behind the store's back, after taking out what every version the
   tests make lacks (schema 11's tasks.worker_key). */
static void s_make_older(const char *path, const char *sql)
{
    s_file_exec(path, "ALTER TABLE tasks DROP COLUMN worker_key");
    s_file_exec(path, sql);
}

/* One integer read from a closed database file. */
static int64_t s_file_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    int64_t v = s_pragma_int(db, sql);
    sqlite3_close(db);
    return v;
}

static store_t *s_open_file(const char *path)
{
    char err[512] = "";
    store_t *store = store_new(path, STORE_SYNC_FULL, err, sizeof err);
    ck_assert_msg(store != NULL, "%s", err);
    return store;
}

/* A schema 1 database (with its tasks_unfinished index) is upgraded in
   place: data kept, index gone, version STORE_SCHEMA_VERSION. */
START_TEST(test_schema_1_is_upgraded)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open_file(tmp.db);
    int64_t job = s_job(store, "old");
    int64_t t1 = s_insert(store, job, 0), t2 = s_insert(store, job, 1);
    ck_assert_int_eq(store_task_finish(store, t1, PROTO_ST_DONE, 1, "w", "{}", 4), 0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    s_make_older(tmp.db, "CREATE INDEX tasks_unfinished ON tasks(id) WHERE state < 3;"
                         "DROP TABLE last_ids; ALTER TABLE jobs DROP COLUMN owner;" S_DROP_OPS
                         "PRAGMA user_version = 1;");

    store = s_open_file(tmp.db);
    rows_t rows = {0};
    ck_assert_int_eq(store_unfinished_each(store, s_collect, &rows), 0);
    ck_assert_int_eq(rows.n, 1);
    ck_assert_int_eq(rows.r[0].id, t2);
    int64_t last_job = 0, last_task = 0;
    ck_assert_int_eq(store_last_ids(store, &last_job, &last_task), 0);
    ck_assert_int_eq(last_job, job);
    ck_assert_int_eq(last_task, t2);
    store_destroy(&store);
    ck_assert_int_eq(s_file_int(tmp.db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    ck_assert_int_eq(
        s_file_int(tmp.db, "SELECT count(*) FROM sqlite_schema WHERE name = 'tasks_unfinished'"), 0);
    tmp_remove(&tmp);
}
END_TEST

/* A schema 2 database kept its highest task id in sqlite_sequence (its
   tasks table had AUTOINCREMENT): after the upgrade to 3 that id is still
   never reused, also once the rows that held it are gone. */
START_TEST(test_schema_2_is_upgraded_and_its_ids_are_not_reused)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open_file(tmp.db);
    int64_t job = s_job(store, "old");
    int64_t t1 = s_insert(store, job, 0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    /* As schema 2 left it after a job with tasks up to 500 was forgotten. */
    s_make_older(tmp.db, "DROP TABLE last_ids; ALTER TABLE jobs DROP COLUMN owner;" S_DROP_OPS
                         "INSERT INTO sqlite_sequence(name, seq) VALUES ('tasks', 500);"
                         "PRAGMA user_version = 2;");

    store = s_open_file(tmp.db);
    int64_t last_job = 0, last_task = 0;
    ck_assert_int_eq(store_last_ids(store, &last_job, &last_task), 0);
    ck_assert_int_eq(last_task, 500);
    int64_t id = 0, deleted = 0;
    ck_assert_int_eq(store_task_insert(store, 0, job, 1, NULL, 0, 0, "{}", NULL, &id), 0);
    ck_assert_int_eq(id, 501);
    ck_assert_int_eq(store_job_delete(store, job, &deleted), 0);
    ck_assert_int_eq(deleted, 1);
    ck_assert_int_eq(store_commit(store), 0);
    ck_assert_int_eq(store_last_ids(store, &last_job, &last_task), 0);
    ck_assert_int_eq(last_task, 501);
    ck_assert_int_gt(501, t1);
    ck_assert_int_eq(store_check(store), 0);
    store_destroy(&store);
    ck_assert_int_eq(s_file_int(tmp.db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    tmp_remove(&tmp);
}
END_TEST

/* A schema 3 database (jobs without owners) is upgraded in place: its
   jobs are kept, owned by nobody, and new jobs record their owner. */
/* Schema steps of parallel branches land out of order: a database already
   at this version made by a build without step 5 still gets its table. */
START_TEST(a_database_at_this_version_without_the_submit_keys_table_gets_it)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open_file(tmp.db);
    store_destroy(&store);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(tmp.db, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "DROP TABLE submit_keys", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    store = s_open_file(tmp.db);
    ck_assert_int_eq(store_submit_key_add(store, &(store_key_row_t){.owner = "", .key = "k.0",
                                                                     .job = 1, .accepted = 1,
                                                                     .created = 1.0}),
                     0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    ck_assert_int_eq(s_file_int(tmp.db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    tmp_remove(&tmp);
}
END_TEST

START_TEST(test_schema_3_is_upgraded_and_its_jobs_have_no_owner)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open_file(tmp.db);
    int64_t old = s_job(store, "old");
    s_insert(store, old, 0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    s_make_older(tmp.db, "ALTER TABLE jobs DROP COLUMN owner; " S_DROP_OPS "PRAGMA user_version = 3;");

    store = s_open_file(tmp.db);
    int64_t mine = -1;
    ck_assert_int_eq(store_job_create(store,
        &(store_job_new_t){.name = "new", .owner = "KEY-OF-ANA", .created = 5.0}, &mine), 0);
    ck_assert_int_eq(store_commit(store), 0);
    jobs_t jobs = {0};
    ck_assert_int_eq(store_jobs_each(store, s_collect_job, &jobs), 0);
    ck_assert_int_eq(jobs.n, 2);
    ck_assert_int_eq(jobs.j[0].id, old);
    ck_assert_str_eq(jobs.j[0].name, "old");
    ck_assert(!jobs.j[0].has_owner);
    ck_assert_int_eq(jobs.j[1].id, mine);
    ck_assert_str_eq(jobs.j[1].owner, "KEY-OF-ANA");
    rows_t rows = {0};
    ck_assert_int_eq(store_unfinished_each(store, s_collect, &rows), 0);
    ck_assert_int_eq(rows.n, 1);
    ck_assert_int_eq(store_check(store), 0);
    store_destroy(&store);
    ck_assert_int_eq(s_file_int(tmp.db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    tmp_remove(&tmp);
}
END_TEST

static int s_count_alloc(int64_t id, const char *def, void *arg)
{
    int *n = arg;
    ck_assert_int_eq(id, 3);
    ck_assert_str_eq(def, "{\"second\":true}");
    (*n)++;
    return 0;
}

/* Allocation queues (schema 8): kept whole, replaced at each save,
   deleted; a schema 4 database gains the table in place. */
START_TEST(test_alloc_queues_are_saved_whole_and_deleted_and_old_databases_gain_them)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open_file(tmp.db);
    int64_t old = s_job(store, "old");
    s_insert(store, old, 0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    s_make_older(tmp.db, "DROP TABLE alloc_queues; PRAGMA user_version = 4;");

    store = s_open_file(tmp.db);
    ck_assert_int_eq(store_alloc_save(store, 3, "{\"first\":true}"), 0);
    ck_assert_int_eq(store_alloc_save(store, 3, "{\"second\":true}"), 0);
    ck_assert_int_eq(store_alloc_save(store, 4, "{}"), 0);
    ck_assert_int_eq(store_alloc_delete(store, 4), 0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    ck_assert_int_eq(s_file_int(tmp.db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);

    store = s_open_file(tmp.db);
    int n = 0;
    ck_assert_int_eq(store_allocs_each(store, s_count_alloc, &n), 0);
    ck_assert_int_eq(n, 1);
    jobs_t jobs = {0};
    ck_assert_int_eq(store_jobs_each(store, s_collect_job, &jobs), 0);
    ck_assert_int_eq(jobs.n, 1);
    ck_assert_int_eq(store_check(store), 0);
    store_destroy(&store);
    tmp_remove(&tmp);
}
END_TEST

/* An allocation queue id is never given twice (schema 14): a deleted
   queue's id stays the last one, the newest deleted or every queue gone;
   a database of 13 marks the highest of its rows at the upgrade, all it
   knows. */
START_TEST(test_alloc_queue_ids_stay_used_after_their_queues_are_deleted)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open_file(tmp.db);
    int64_t last = -1;
    ck_assert_int_eq(store_alloc_last_id(store, &last), 0);
    ck_assert_int_eq(last, 0);
    for (int64_t id = 1; id <= 5; id++)
        ck_assert_int_eq(store_alloc_save(store, id, "{}"), 0);
    ck_assert_int_eq(store_alloc_delete(store, 5), 0);
    ck_assert_int_eq(store_commit(store), 0);
    ck_assert_int_eq(store_alloc_last_id(store, &last), 0);
    ck_assert_int_eq(last, 5);
    for (int64_t id = 1; id <= 4; id++)
        ck_assert_int_eq(store_alloc_delete(store, id), 0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    store = s_open_file(tmp.db);
    ck_assert_int_eq(store_alloc_last_id(store, &last), 0);
    ck_assert_int_eq(last, 5);
    /* As 13 left it: rows 6 and 7, no mark (queues up to 9 were removed). */
    ck_assert_int_eq(store_alloc_save(store, 6, "{}"), 0);
    ck_assert_int_eq(store_alloc_save(store, 7, "{}"), 0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    s_file_exec(tmp.db, "DELETE FROM last_ids WHERE name = 'alloc_queues';"
                        "PRAGMA user_version = 13;");
    store = s_open_file(tmp.db);
    store_destroy(&store);
    ck_assert_int_eq(s_file_int(tmp.db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    ck_assert_int_eq(s_file_int(tmp.db, "SELECT last FROM last_ids WHERE name = 'alloc_queues'"),
                     7);
    store = s_open_file(tmp.db);
    ck_assert_int_eq(store_alloc_delete(store, 7), 0);
    ck_assert_int_eq(store_commit(store), 0);
    ck_assert_int_eq(store_alloc_last_id(store, &last), 0);
    ck_assert_int_eq(last, 7);
    ck_assert_int_eq(store_check(store), 0);
    store_destroy(&store);
    tmp_remove(&tmp);
}
END_TEST

/* A database from before hold, limit and definitions (schema 4, or one
   at 8 made by a build without them: the branches landed out of order)
   gains their columns in place: its jobs and tasks are kept, none held,
   none limited. */
START_TEST(test_a_database_without_the_steering_columns_gains_them)
{
    static const char *const older[] = {S_DROP_OPS "PRAGMA user_version = 4;",
                                        S_DROP_OPS "PRAGMA user_version = 8;"};
    for (int i = 0; i < 2; i++) {
        tmp_t tmp;
        tmp_make(&tmp);
        store_t *store = s_open_file(tmp.db);
        int64_t old = s_job(store, "old");
        s_insert(store, old, 0);
        ck_assert_int_eq(store_commit(store), 0);
        store_destroy(&store);
        s_make_older(tmp.db, older[i]);

        store = s_open_file(tmp.db);
        ck_assert_int_eq(store_job_set_held(store, old, true), 0);
        ck_assert_int_eq(store_job_set_limit(store, old, 3), 0);
        ck_assert_int_eq(store_commit(store), 0);
        rows_t rows = {0};
        ck_assert_int_eq(store_unfinished_each(store, s_collect, &rows), 0);
        ck_assert_int_eq(rows.n, 1);
        ck_assert(!rows.r[0].held);
        ck_assert_int_eq(store_check(store), 0);
        store_destroy(&store);
        ck_assert_int_eq(s_file_int(tmp.db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        tmp_remove(&tmp);
    }
}
END_TEST

static int s_worker_key_of(const store_task_row_t *row, void *arg)
{
    char *out = arg;
    snprintf(out, 64, "%s %s", row->worker ? row->worker : "-",
             row->worker_key ? row->worker_key : "-");
    return 0;
}

/* An assignment keeps its worker's key (schema 11), read back with the
   unfinished tasks at a restart and forgotten when the task is requeued;
   a schema 8 database gains the column in place. */
START_TEST(test_an_assignment_keeps_its_workers_key_and_old_databases_gain_it)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open_file(tmp.db);
    int64_t job = s_job(store, "keys");
    int64_t t = s_insert(store, job, 0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    s_make_older(tmp.db, "PRAGMA user_version = 8;");

    store = s_open_file(tmp.db);
    ck_assert_int_eq(store_task_set_running(store, t, PROTO_ST_ASSIGNED, 1, "w1", 0, "KEY1"), 0);
    ck_assert_int_eq(store_commit(store), 0);
    char seen[64] = "";
    ck_assert_int_eq(store_unfinished_each(store, s_worker_key_of, seen), 0);
    ck_assert_str_eq(seen, "w1 KEY1");
    ck_assert_int_eq(store_task_requeue(store, t, 1), 0);
    ck_assert_int_eq(store_commit(store), 0);
    ck_assert_int_eq(store_unfinished_each(store, s_worker_key_of, seen), 0);
    ck_assert_str_eq(seen, "- -");
    store_destroy(&store);
    ck_assert_int_eq(s_file_int(tmp.db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    tmp_remove(&tmp);
}
END_TEST

/* Schema 4 indexed failed tasks only; the upgrade to 12 rebuilds the
   index so that failed_only finds the cancelled tasks of older jobs. */
START_TEST(test_a_schema_4_database_lists_its_cancelled_tasks_as_not_succeeded)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open_file(tmp.db);
    int64_t job = s_job(store, "old");
    int64_t done = s_insert(store, job, 0), cancelled = s_insert(store, job, 1);
    ck_assert_int_eq(store_task_finish(store, done, PROTO_ST_DONE, 1, "w", "{}", 5.0), 0);
    ck_assert_int_eq(store_task_finish(store, cancelled, PROTO_ST_CANCELLED, 1, "w", "{}", 5.0), 0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    s_make_older(tmp.db, "DROP INDEX tasks_failed;"
                         "CREATE INDEX tasks_failed ON tasks(job) WHERE state = 4;"
                         "PRAGMA user_version = 4;");

    store = s_open_file(tmp.db);
    rows_t rows = {0};
    int64_t last = 0;
    ck_assert_int_eq(store_results_each(store, job, 0, 10, true, s_collect, &rows, &last), 0);
    ck_assert_int_eq(rows.n, 1);
    ck_assert_int_eq(rows.r[0].id, cancelled);
    ck_assert_int_eq(store_check(store), 0);
    store_destroy(&store);
    ck_assert_int_eq(s_file_int(tmp.db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    tmp_remove(&tmp);
}
END_TEST

/* The partial index as schemas 12 to 14 wrote it. */
#define S_FAILED_INDEX_14 "CREATE INDEX tasks_failed ON tasks(job) WHERE state IN (4, 5, 6)"

/* Schema 15 writes tasks_failed's predicate as a range (store.c,
   TASKS_FAILED_WHERE): a database of 14 gets the index rebuilt at the
   upgrade, and the queries that need it (results --failed, what retry
   puts back, dep_failed tasks) still give the same tasks. */
START_TEST(test_a_schema_14_database_gets_the_failed_index_as_a_range_and_reads_the_same)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open_file(tmp.db);
    int64_t job = s_job(store, "old");
    int64_t t[5];
    for (int i = 0; i < 5; i++)
        t[i] = s_insert(store, job, i);
    /* t[4] stays queued. */
    ck_assert_int_eq(store_task_finish(store, t[0], PROTO_ST_DONE, 1, "w", "{}", 5.0), 0);
    ck_assert_int_eq(store_task_finish(store, t[1], PROTO_ST_FAILED, 1, "w", "{}", 5.0), 0);
    ck_assert_int_eq(store_task_finish(store, t[2], PROTO_ST_CANCELLED, 1, "w", "{}", 5.0), 0);
    ck_assert_int_eq(store_task_finish(store, t[3], PROTO_ST_DEP_FAILED, 0, NULL, NULL, 5.0), 0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    s_file_exec(tmp.db, "DROP INDEX tasks_failed;" S_FAILED_INDEX_14 "; PRAGMA user_version = 14;");

    store = s_open_file(tmp.db);
    rows_t rows = {0};
    int64_t last = 0;
    ck_assert_int_eq(store_results_each(store, job, 0, 10, true, s_collect, &rows, &last), 0);
    ck_assert_int_eq(rows.n, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rows.r[i].id, t[i + 1]);
    memset(&rows, 0, sizeof rows);
    ck_assert_int_eq(store_retryable_each(store, job, s_collect, &rows), 0);
    ck_assert_int_eq(rows.n, 2);
    ck_assert_int_eq(rows.r[0].id, t[1]);
    ck_assert_int_eq(rows.r[1].id, t[2]);
    memset(&rows, 0, sizeof rows);
    ck_assert_int_eq(store_dep_failed_each(store, job, s_collect, &rows), 0);
    ck_assert_int_eq(rows.n, 1);
    ck_assert_int_eq(rows.r[0].id, t[3]);
    /* A retry takes a task that did not succeed, and only such a task. */
    ck_assert_int_eq(store_task_retry(store, t[0]), 0);
    ck_assert_int_eq(store_task_retry(store, t[1]), 0);
    ck_assert_int_eq(store_commit(store), 0);
    ck_assert_int_eq(s_get(store, t[0]).state, PROTO_ST_DONE);
    ck_assert_int_eq(s_get(store, t[1]).state, PROTO_ST_QUEUED);
    ck_assert_int_eq(store_check(store), 0);
    store_destroy(&store);
    ck_assert_int_eq(s_file_int(tmp.db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    ck_assert_int_eq(s_file_int(tmp.db, "SELECT count(*) FROM sqlite_schema WHERE name = "
                                        "'tasks_failed' AND sql = 'CREATE INDEX tasks_failed ON "
                                        "tasks(job) WHERE state BETWEEN 4 AND 6'"),
                     1);
    tmp_remove(&tmp);
}
END_TEST

/* The opcodes of one statement's program (EXPLAIN), on the store's
   connection, joined by spaces. */
static void s_program(const char *sql, char *out, size_t outlen)
{
    char explain[4096];
    snprintf(explain, sizeof explain, "EXPLAIN %s", sql);
    sqlite3_stmt *st = NULL;
    ck_assert_msg(sqlite3_prepare_v2(s_last_db, explain, -1, &st, NULL) == SQLITE_OK, "%s: %s",
                  explain, sqlite3_errmsg(s_last_db));
    size_t used = 0;
    out[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW && used < outlen)
        used += (size_t)snprintf(out + used, outlen - used, "%s ", sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
}

/* Every write to the tasks table is on a task's path (submit, assign,
   finish, retry, cancel, forget): none may build a temporary b-tree, as
   `state IN (4, 5, 6)` in tasks_failed's predicate made each of them do
   (two per finish: ~58,000 instructions, over half of the master's cost
   per task; store.c, TASKS_FAILED_WHERE). Read from the programs SQLite
   compiled for the statements the store prepared. */
START_TEST(test_no_write_to_the_tasks_table_builds_a_temporary_table)
{
    store_t *store = s_open(":memory:", STORE_SYNC_OFF);
    int writes = 0, bad = 0;
    static char program[1 << 16], offenders[1 << 14];
    size_t used = 0;
    for (sqlite3_stmt *st = sqlite3_next_stmt(s_last_db, NULL); st;
         st = sqlite3_next_stmt(s_last_db, st)) {
        const char *sql = sqlite3_sql(st);
        if (strncmp(sql, "UPDATE tasks ", 13) != 0 && strncmp(sql, "INSERT INTO tasks(", 18) != 0
            && strncmp(sql, "DELETE FROM tasks ", 18) != 0)
            continue;
        writes++;
        s_program(sql, program, sizeof program);
        if (strstr(program, "OpenEphemeral") && used < sizeof offenders) {
            bad++;
            used += (size_t)snprintf(offenders + used, sizeof offenders - used, "\n  %.120s", sql);
        }
    }
    ck_assert_msg(bad == 0, "%d writes build a temporary table (OpenEphemeral) each time they run:%s",
                  bad, offenders);
    /* Insert one and many, assign, requeue, retry, finish, cancel, hold,
       release, priority, forget. */
    ck_assert_int_ge(writes, 11);
    store_destroy(&store);
}
END_TEST

/* The queries over tasks that did not succeed read tasks_failed by job:
   their WHERE must carry the index's predicate word for word, or SQLite
   cannot use it (then INDEXED BY makes store_new fail). */
START_TEST(test_the_queries_of_tasks_that_did_not_succeed_search_tasks_failed_by_job)
{
    store_t *store = s_open(":memory:", STORE_SYNC_OFF);
    int queries = 0;
    for (sqlite3_stmt *st = sqlite3_next_stmt(s_last_db, NULL); st;
         st = sqlite3_next_stmt(s_last_db, st)) {
        const char *sql = sqlite3_sql(st);
        if (!strstr(sql, "INDEXED BY tasks_failed"))
            continue;
        queries++;
        char explain[4096];
        snprintf(explain, sizeof explain, "EXPLAIN QUERY PLAN %s", sql);
        sqlite3_stmt *plan = NULL;
        ck_assert_msg(sqlite3_prepare_v2(s_last_db, explain, -1, &plan, NULL) == SQLITE_OK,
                      "%s: %s", explain, sqlite3_errmsg(s_last_db));
        ck_assert_int_eq(sqlite3_step(plan), SQLITE_ROW);
        const char *detail = (const char *)sqlite3_column_text(plan, 3);
        ck_assert_msg(strncmp(detail, "SEARCH tasks USING INDEX tasks_failed (job=?", 44) == 0,
                      "%s\nplan: %s", sql, detail);
        ck_assert_int_eq(sqlite3_step(plan), SQLITE_DONE);
        sqlite3_finalize(plan);
    }
    /* results --failed, store_retryable_each, store_dep_failed_each. */
    ck_assert_int_eq(queries, 3);
    store_destroy(&store);
}
END_TEST

/* The master picks ids itself; the store keeps them, and the last ones
   survive deletes, so ids are never reused. */
START_TEST(test_explicit_ids_are_kept_and_never_reused)
{
    tmp_t tmp;
    tmp_make(&tmp);
    char err[512] = "";
    store_t *store = store_new(tmp.db, STORE_SYNC_FULL, err, sizeof err);
    ck_assert_msg(store != NULL, "%s", err);
    int64_t lj = -1, lt = -1;
    ck_assert_int_eq(store_last_ids(store, &lj, &lt), 0);
    ck_assert_int_eq(lj, 0);
    ck_assert_int_eq(lt, 0);
    int64_t job = 0, id = 0;
    ck_assert_int_eq(store_job_create(store,
        &(store_job_new_t){.id = 41, .name = "j", .created = 1.0}, &job), 0);
    ck_assert_int_eq(job, 41);
    ck_assert_int_eq(store_task_insert(store, 1000, job, 0, NULL, 0, 0, "{}", NULL, &id), 0);
    ck_assert_int_eq(id, 1000);
    ck_assert_int_eq(store_commit(store), 0);
    int64_t deleted = 0;
    ck_assert_int_eq(store_job_delete(store, job, &deleted), 0);
    ck_assert_int_eq(store_commit(store), 0);
    ck_assert_int_eq(store_last_ids(store, &lj, &lt), 0);
    ck_assert_int_eq(lj, 41);
    ck_assert_int_eq(lt, 1000);
    ck_assert_int_eq(store_task_insert(store, 0, 41, 1, NULL, 0, 0, "{}", NULL, &id), 0);
    ck_assert_int_eq(id, 1001);
    store_rollback(store);
    store_destroy(&store);
    tmp_remove(&tmp);
}
END_TEST

static int s_count_dep(int64_t job, const proto_dep_t *dep, void *arg)
{
    int64_t *sum = arg;
    *sum += job * 100 + dep->job * 10 + (int64_t) dep->kind;
    return 0;
}

static int s_count_end(int64_t index, proto_state_t state, void *arg)
{
    int64_t *sum = arg;
    *sum += index * 10 + (int64_t) state;
    return 0;
}

/* A schema 4 database gets job_deps; a job's dependencies are written
   with it and deleted with it; a dep_failed task reads back as such. */
START_TEST(test_schema_4_is_upgraded_and_jobs_keep_their_dependencies)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open_file(tmp.db);
    int64_t parent = s_job(store, "parent");
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);
    s_make_older(tmp.db, "DROP TABLE job_deps; PRAGMA user_version = 4;");

    store = s_open_file(tmp.db);
    const proto_dep_t deps[] = {{.job = parent, .kind = PROTO_DEP_OK},
                                {.job = parent, .kind = PROTO_DEP_EACH}};
    int64_t child = 0, id = 0;
    ck_assert_int_eq(store_job_create(store,
        &(store_job_new_t){.name = "child", .created = 2.0, .deps = deps, .ndeps = 2}, &child),
        0);
    ck_assert_int_eq(store_task_insert(store, 0, parent, 3, NULL, 0, 0, "{}", NULL, &id), 0);
    ck_assert_int_eq(store_task_finish(store, id, PROTO_ST_DEP_FAILED, 0, NULL, NULL, 3.0), 0);
    ck_assert_int_eq(store_commit(store), 0);
    int64_t sum = 0;
    ck_assert_int_eq(store_deps_each(store, s_count_dep, &sum), 0);
    ck_assert_int_eq(sum, 2 * (child * 100 + parent * 10) + PROTO_DEP_OK + PROTO_DEP_EACH);
    sum = 0;
    ck_assert_int_eq(store_task_ends_each(store, parent, s_count_end, &sum), 0);
    ck_assert_int_eq(sum, 3 * 10 + PROTO_ST_DEP_FAILED);
    rows_t rows = {0};
    int64_t last = 0;
    ck_assert_int_eq(store_results_each(store, parent, 0, 10, false, s_collect, &rows, &last), 0);
    ck_assert_int_eq(rows.n, 1);
    ck_assert_int_eq(rows.r[0].state, PROTO_ST_DEP_FAILED);
    int64_t deleted = 0;
    ck_assert_int_eq(store_job_delete(store, child, &deleted), 0);
    ck_assert_int_eq(store_commit(store), 0);
    sum = 0;
    ck_assert_int_eq(store_deps_each(store, s_count_dep, &sum), 0);
    ck_assert_int_eq(sum, 0);
    store_destroy(&store);
    ck_assert_int_eq(s_file_int(tmp.db, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    tmp_remove(&tmp);
}
END_TEST

START_TEST(test_newer_schema_version_is_refused)
{
    tmp_t tmp;
    tmp_make(&tmp);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(tmp.db, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE jobs(id INTEGER PRIMARY KEY, x);"
                                      "PRAGMA user_version = 99;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    char err[512] = "";
    store_t *store = store_new(tmp.db, STORE_SYNC_FULL, err, sizeof err);
    ck_assert_ptr_null(store);
    ck_assert_msg(strstr(err, "schema version 99 is newer") != NULL, "err: %s", err);

    /* The refused file is left as it was. */
    ck_assert_int_eq(sqlite3_open(tmp.db, &db), SQLITE_OK);
    ck_assert_int_eq(s_pragma_int(db, "PRAGMA user_version"), 99);
    sqlite3_close(db);
    tmp_remove(&tmp);
}
END_TEST

START_TEST(test_a_second_store_on_the_same_file_is_refused)
{
    /* Two masters on one database would both hand out the same ids. */
    tmp_t tmp;
    tmp_make(&tmp);
    char err[512] = "";
    store_t *first = store_new(tmp.db, STORE_SYNC_FULL, err, sizeof err);
    ck_assert_msg(first != NULL, "%s", err);
    ck_assert_ptr_null(store_new(tmp.db, STORE_SYNC_FULL, err, sizeof err));
    ck_assert_msg(strstr(err, "another ztask-master is using it") != NULL, "err: %s", err);
    store_destroy(&first);
    /* Free again once the first is gone. */
    store_t *again = store_new(tmp.db, STORE_SYNC_FULL, err, sizeof err);
    ck_assert_msg(again != NULL, "%s", err);
    store_destroy(&again);
    tmp_remove(&tmp);
}
END_TEST

START_TEST(test_foreign_database_and_garbage_file_are_refused)
{
    tmp_t tmp;
    tmp_make(&tmp);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(tmp.db, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE photos(id INTEGER PRIMARY KEY)", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char err[512] = "";
    ck_assert_ptr_null(store_new(tmp.db, STORE_SYNC_FULL, err, sizeof err));
    ck_assert_msg(strstr(err, "not a ztask database") != NULL, "err: %s", err);
    unlink(tmp.db);

    FILE *f = fopen(tmp.db, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 200; i++)
        fputs("this is not an SQLite database. ", f);
    fclose(f);
    err[0] = '\0';
    ck_assert_ptr_null(store_new(tmp.db, STORE_SYNC_FULL, err, sizeof err));
    ck_assert_msg(strstr(err, "not a database") != NULL, "err: %s", err);

    char dir_db[300];
    snprintf(dir_db, sizeof dir_db, "%s/missing/dir/state.db", tmp.dir);
    ck_assert_ptr_null(store_new(dir_db, STORE_SYNC_FULL, err, sizeof err));
    ck_assert_msg(strstr(err, "unable to open") != NULL, "err: %s", err);
    tmp_remove(&tmp);
}
END_TEST

START_TEST(test_full_database_fails_the_commit_cleanly_and_recovers)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open(tmp.db, STORE_SYNC_FULL);
    sqlite3 *db = s_last_db;
    int64_t job = s_job(store, "j");
    for (int i = 0; i < 50; i++)
        s_insert(store, job, i);
    ck_assert_int_eq(store_commit(store), 0);

    /* Leave room for a few pages only, then write until it is full. */
    int64_t pages = s_pragma_int(db, "PRAGMA page_count");
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)pages + 4);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    char spec[600];
    memset(spec, 'x', sizeof spec - 1);
    spec[sizeof spec - 1] = '\0';
    int i, rc = 0;
    for (i = 0; i < 10000 && rc == 0; i++)
        rc = store_task_insert(store, 0, job, 1000 + i, "big", 0, 0, spec, NULL, NULL);
    ck_assert_int_eq(rc, -1);
    ck_assert_int_gt(i, 1); /* some fitted, then the disk was "full" */
    ck_assert_msg(strstr(store_error(store), "database or disk is full") != NULL, "%s",
                  store_error(store));

    /* The group is lost: more writes are refused, commit says why. */
    ck_assert(store_dirty(store));
    ck_assert_int_eq(store_task_requeue(store, 1, 0), -1);
    ck_assert_ptr_nonnull(strstr(store_error(store), "earlier write failed"));
    ck_assert_int_eq(store_commit(store), -1);
    ck_assert_msg(strstr(store_error(store), "database or disk is full") != NULL, "%s",
                  store_error(store));
    ck_assert(!store_dirty(store));

    /* What was committed before is intact. */
    rows_t rows;
    int64_t last;
    memset(&rows, 0, sizeof rows);
    ck_assert_int_eq(store_results_each(store, job, 0, 64, false, s_collect, &rows, &last), 0);
    ck_assert_int_eq(rows.n, 50);
    ck_assert_int_eq(rows.r[49].index, 49);
    ck_assert_int_eq(store_check(store), 0);

    /* Space again: the store keeps working. */
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA max_page_count = 1000000", NULL, NULL, NULL),
                     SQLITE_OK);
    for (i = 0; i < 10; i++)
        ck_assert_int_eq(store_task_insert(store, 0, job, 2000 + i, "big", 0, 0, spec, NULL, NULL), 0);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);

    store = s_open(tmp.db, STORE_SYNC_FULL);
    memset(&rows, 0, sizeof rows);
    ck_assert_int_eq(store_results_each(store, job, 0, 64, false, s_collect, &rows, &last), 0);
    ck_assert_int_eq(rows.n, 60);
    ck_assert_int_eq(rows.r[50].index, 2000);
    ck_assert_int_eq(store_check(store), 0);
    store_destroy(&store);
    tmp_remove(&tmp);
}
END_TEST

/* A group of writes whose COMMIT fails with fault: the whole group must be
   undone, the earlier data intact, and the store usable afterwards. */
static void s_commit_fault_case(int fault, const char *want_error)
{
    tmp_t tmp;
    tmp_make(&tmp);
    s_fault_vfs_install();
    store_t *store = s_open(tmp.db, STORE_SYNC_FULL);
    int64_t job = s_job(store, "j");
    int64_t t0 = s_insert(store, job, 0);
    for (int i = 1; i < 10; i++)
        s_insert(store, job, i);
    ck_assert_int_eq(store_commit(store), 0);

    ck_assert_int_eq(store_task_finish(store, t0, PROTO_ST_DONE, 1, "w", "{}", 5), 0);
    for (int i = 10; i < 15; i++)
        s_insert(store, job, i);
    s_wal_fault = fault;
    ck_assert_int_eq(store_commit(store), -1);
    ck_assert_msg(strstr(store_error(store), want_error) != NULL, "%s", store_error(store));
    ck_assert(!store_dirty(store));
    ck_assert(sqlite3_get_autocommit(s_last_db)); /* no transaction left open */
    s_wal_fault = 0;

    rows_t rows;
    ck_assert_int_eq(s_job_tasks(store, job, &rows), 10);
    ck_assert_int_eq(rows.r[0].state, PROTO_ST_QUEUED);
    ck_assert_int_eq(store_check(store), 0);

    ck_assert_int_eq(store_task_finish(store, t0, PROTO_ST_DONE, 1, "w", "{}", 6), 0);
    s_insert(store, job, 10);
    ck_assert_int_eq(store_commit(store), 0);
    store_destroy(&store);

    store = s_open(tmp.db, STORE_SYNC_FULL);
    ck_assert_int_eq(s_job_tasks(store, job, &rows), 11);
    ck_assert_int_eq(rows.r[0].state, PROTO_ST_DONE);
    ck_assert_int_eq(store_check(store), 0);
    store_destroy(&store);
    s_fault_vfs_remove();
    tmp_remove(&tmp);
}

/* SQLite rolls the transaction back by itself after SQLITE_FULL. */
START_TEST(test_disk_full_at_commit_rolls_back_and_recovers)
{
    s_commit_fault_case(SQLITE_FULL, "database or disk is full");
}
END_TEST

/* After SQLITE_BUSY SQLite keeps the transaction open: the store must
   still roll it back, as its contract says. */
START_TEST(test_commit_failure_leaving_the_transaction_open_still_rolls_back)
{
    s_commit_fault_case(SQLITE_BUSY, "database is locked");
}
END_TEST

static int s_count_rows(const store_task_row_t *row, void *arg)
{
    (void)row;
    (*(int64_t *)arg)++;
    return 0;
}

/* Measures, does not assert, the insert rate: one transaction of N tasks
   with realistic spec text into a file database, then one FULL commit. */
START_TEST(test_insert_rate_is_measured)
{
    long n = 200000;
    const char *env = getenv("ZTASK_STORE_BENCH_N");
    if (env && atol(env) > 0)
        n = atol(env);
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open(tmp.db, STORE_SYNC_FULL);
    int64_t job = s_job(store, "bench");
    ck_assert_int_eq(store_commit(store), 0);

    char spec[256], name[32];
    int rc = 0;
    double t0 = s_now();
    /* No ck_assert in the loop: in fork mode each one writes to a pipe. */
    for (long i = 0; i < n && rc == 0; i++) {
        snprintf(spec, sizeof spec,
                 "{\"argv\":[\"/usr/bin/convert\",\"in/%06ld.png\",\"out/%06ld.jpg\"],"
                 "\"timeout\":60,\"retries\":2,\"index\":%ld}",
                 i, i, i);
        snprintf(name, sizeof name, "img-%06ld", i);
        rc = store_task_insert(store, 0, job, i, name, 0, 2, spec, NULL, NULL);
    }
    double t1 = s_now();
    ck_assert_msg(rc == 0, "%s", store_error(store));
    ck_assert_int_eq(store_commit(store), 0);
    double t2 = s_now();
    fprintf(stderr,
            "store: inserted %ld tasks in one transaction in %.3f s = %.0f tasks/s; "
            "commit (synchronous=FULL) %.1f ms; total %.0f tasks/s\n",
            n, t1 - t0, (double)n / (t1 - t0), (t2 - t1) * 1e3, (double)n / (t2 - t0));

    int64_t count = 0;
    ck_assert_int_eq(store_unfinished_each(store, s_count_rows, &count), 0);
    ck_assert_int_eq(count, n);
    store_destroy(&store);
    tmp_remove(&tmp);
}
END_TEST

/* Every test defined in this file is recorded (tests/ztest.h). */
START_TEST(test_every_test_case_is_registered)
{
    const char *src = getenv("ZTASK_SRC_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/" __FILE__, src && *src ? src : ".");
    int defined = zt_check_recorded(path);
    if (defined < 0) {
        printf("SKIP: test_every_test_case_is_registered: cannot read %s\n", path);
        return;
    }
    ck_assert_int_gt(defined, 10);
}
END_TEST

/* ---- the journal: where a commit runs, and when a change is on disk ---- */

/* A submit of one task whose spec is spec_bytes long (the job is new). */
static pending_submit_t *s_big_submit(int64_t job, int64_t task, size_t spec_bytes)
{
    pending_submit_t *p = calloc(1, sizeof *p);
    ck_assert_ptr_nonnull(p);
    p->job_id = job;
    p->new_job = true;
    p->owner = strdup("");
    p->close = true;
    p->tasks = calloc(1, sizeof *p->tasks);
    p->ntasks = 1;
    char *spec = malloc(spec_bytes + 1);
    ck_assert_ptr_nonnull(spec);
    const char *head = "{\"argv\":[\"wc\"],\"stdin\":\"";
    size_t hl = strlen(head);
    memcpy(spec, head, hl);
    memset(spec + hl, 'a', spec_bytes - hl - 2);
    memcpy(spec + spec_bytes - 2, "\"}", 2);
    spec[spec_bytes] = '\0';
    p->tasks[0] = (pending_task_t){.id = task, .index = 0, .spec = spec};
    p->bytes = (int64_t) spec_bytes;
    return p;
}

/* One task of a few bytes is two rows: written on the loop at once (two
   thread wakeups would cost more). One of 1 MB is two rows too, but its
   insert and WAL pages took the loop from every socket: the writer thread
   takes it, and the loop is free meanwhile. */
START_TEST(a_submit_of_a_big_task_is_committed_on_the_writer_thread_not_the_loop)
{
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open(tmp.db, STORE_SYNC_FULL);
    sched_t *sched = sched_new();
    journal_t *j = journal_new(store, sched, 50, tmp.db);
    ck_assert_ptr_nonnull(j);

    pending_submit_t *p = s_big_submit(1, 1, 200);
    journal_submit(j, &p);
    journal_commit(j, 0);
    ck_assert_msg(journal_idle(j), "a small submit went to the writer thread");
    p = journal_take_done(j);
    ck_assert_msg(p && !p->refused, "the small submit was not committed at once");
    pending_submit_free(&p);

    p = s_big_submit(2, 2, 1024 * 1024);
    journal_submit(j, &p);
    journal_commit(j, 0);
    ck_assert_msg(!journal_idle(j), "a 1 MB submit was written on the loop");
    ck_assert_int_eq(journal_flush(j), 0);
    p = journal_take_done(j);
    ck_assert_msg(p && !p->refused, "the big submit was not committed");
    pending_submit_free(&p);

    journal_destroy(&j);
    sched_destroy(&sched);
    store_destroy(&store);
    tmp_remove(&tmp);
}
END_TEST

/* A journal (flush_ms 5) over a store opened --sync acked in a fresh
   directory, through the fault VFS (s_wal_syncs, s_wal_fault); the
   caller ends it with s_journal_close. */
static journal_t *s_acked_journal(tmp_t *tmp, store_t **store, sched_t **sched)
{
    s_fault_vfs_install();
    tmp_make(tmp);
    *store = s_open(tmp->db, STORE_SYNC_ACKED);
    *sched = sched_new();
    journal_t *j = journal_new(*store, *sched, 5, tmp->db);
    ck_assert_ptr_nonnull(j);
    return j;
}

/* Undoes s_acked_journal (or the same made by hand): journal, sched,
   store, the fault VFS, the directory. */
static void s_journal_close(tmp_t *tmp, store_t **store, sched_t **sched, journal_t **j)
{
    journal_destroy(j);
    sched_destroy(sched);
    store_destroy(store);
    s_fault_vfs_remove();
    tmp_remove(tmp);
}

/* ztask wait's answer is made when its job finishes and sent once that
   is on disk: a mark is written once the commit holding every change
   journalled before it is done, and never while commits fail. */
START_TEST(a_mark_is_written_once_the_commit_holding_its_changes_is_done)
{
    s_fault_vfs_install();
    tmp_t tmp;
    tmp_make(&tmp);
    store_t *store = s_open(tmp.db, STORE_SYNC_FULL);
    sched_t *sched = sched_new();
    journal_t *j = journal_new(store, sched, 60000, tmp.db);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(journal_written(j, journal_mark(j)), "nothing journalled is not written");

    pending_submit_t *p = s_big_submit(1, 1, 1024 * 1024);
    journal_submit(j, &p);
    journal_add(j, &(jop_t){.type = J_JOB_CLOSE, .job = 1});
    uint64_t mark = journal_mark(j);
    ck_assert(!journal_written(j, mark));
    /* Not due for a minute (flush_ms), unless asked to hurry; the big
       batch goes to the writer, and the mark is written once it is back. */
    journal_commit_soon(j);
    journal_commit(j, 0);
    ck_assert_msg(!journal_idle(j), "a 1 MB batch was written on the loop");
    while (!journal_idle(j)) {
        /* The loop's wait: the writer's fd says the batch is back. */
        struct pollfd pfd = {.fd = journal_fd(j), .events = POLLIN};
        ck_assert_int_ge(poll(&pfd, 1, 60000), 0);
        journal_collect(j);
    }
    ck_assert_msg(journal_written(j, mark), "the commit that held the mark is done");
    p = journal_take_done(j);
    ck_assert_ptr_nonnull(p);
    pending_submit_free(&p);

    /* A change journalled later moves the mark on; while the disk refuses
       the commit, it is not written. */
    journal_add(j, &(jop_t){.type = J_JOB_FINISHED, .job = 1, .t = 1.0});
    uint64_t later = journal_mark(j);
    ck_assert(later > mark && journal_written(j, mark) && !journal_written(j, later));
    s_wal_fault = SQLITE_FULL;
    ck_assert_int_eq(journal_flush(j), -1);
    ck_assert(!journal_written(j, later));
    s_wal_fault = 0;

    s_journal_close(&tmp, &store, &sched, &j);
}
END_TEST

/* A submit of job 1 (one task) through j, committed at once (a client
   waits for it: fsynced with --sync acked). */
static void s_submit_one(journal_t *j)
{
    pending_submit_t *p = s_big_submit(1, 1, 200);
    journal_submit(j, &p);
    journal_commit(j, clock_mono_ms());
    p = journal_take_done(j);
    ck_assert_msg(p && !p->refused, "the submit was not committed");
    pending_submit_free(&p);
}

/* --sync acked: a commit no answer waits for (results, every flush_ms)
   is written without an fsync; an answer waits until one has covered its
   changes (journal_written), and the commit it waits for, or a query's
   forced flush, fsyncs the WAL, even with nothing new left to write; a
   change nobody asked about is fsynced within JOURNAL_FSYNC_MS. With
   --sync full every commit is fsynced, as before. */
START_TEST(with_sync_acked_only_what_an_answer_waits_for_is_fsynced_at_once)
{
    tmp_t tmp;
    store_t *store;
    sched_t *sched;
    journal_t *j = s_acked_journal(&tmp, &store, &sched);

    /* A submit is acknowledged only after an fsync. */
    int syncs = s_wal_syncs;
    s_submit_one(j);
    ck_assert_int_ge(s_wal_syncs, syncs + 1);

    /* Results arrive, their commit falls due: written, not fsynced, and
       an answer made now still waits. */
    syncs = s_wal_syncs;
    journal_add(j, &(jop_t){.type = J_JOB_FINISHED, .job = 1, .t = 1.0});
    uint64_t mark = journal_mark(j);
    int64_t now = clock_mono_ms() + 10;
    journal_commit(j, now);
    ck_assert(journal_idle(j));
    ck_assert_int_eq(s_wal_syncs, syncs);
    ck_assert_msg(!journal_written(j, mark), "an answer went out before an fsync covered it");
    /* The loop wakes for the fsync within a second at the latest (asked
       at the real time: the commit was taken after now, by as long as a
       loaded host kept this thread off its core). */
    int64_t t = journal_timeout(j, clock_mono_ms(), 60000);
    ck_assert_msg(t >= 0 && t <= JOURNAL_FSYNC_MS, "next wakeup in %lld ms", (long long) t);

    /* A query's forced flush, with nothing new to write: the WAL is
       fsynced, and the answer can go. */
    ck_assert_int_eq(journal_flush(j), 0);
    ck_assert_int_ge(s_wal_syncs, syncs + 1);
    ck_assert(journal_written(j, mark));

    /* A held answer (journal_commit_soon) makes its commit an fsynced one. */
    syncs = s_wal_syncs;
    journal_add(j, &(jop_t){.type = J_JOB_FINISHED, .job = 1, .t = 2.0});
    mark = journal_mark(j);
    journal_commit_soon(j);
    journal_commit(j, clock_mono_ms());
    ck_assert_int_ge(s_wal_syncs, syncs + 1);
    ck_assert(journal_written(j, mark));

    /* Changes nobody asked about are fsynced JOURNAL_FSYNC_MS after their
       commit, by the loop's timer alone. */
    syncs = s_wal_syncs;
    journal_add(j, &(jop_t){.type = J_JOB_FINISHED, .job = 1, .t = 3.0});
    mark = journal_mark(j);
    now = clock_mono_ms() + 10;
    journal_commit(j, now);
    ck_assert_int_eq(s_wal_syncs, syncs);
    journal_commit(j, now + JOURNAL_FSYNC_MS / 2);
    ck_assert_int_eq(s_wal_syncs, syncs);
    /* Due JOURNAL_FSYNC_MS after the commit was taken, which a stalled
       thread took after now: counted from the real time. */
    int64_t later = clock_mono_ms() + JOURNAL_FSYNC_MS;
    journal_commit(j, later);
    ck_assert_int_ge(s_wal_syncs, syncs + 1);
    ck_assert(journal_written(j, mark));
    ck_assert_int_eq(journal_timeout(j, later, 60000), 60000);

    journal_destroy(&j);
    store_destroy(&store);

    /* --sync full: every commit, results' too. */
    store = s_open(tmp.db, STORE_SYNC_FULL);
    j = journal_new(store, sched, 5, tmp.db);
    syncs = s_wal_syncs;
    journal_add(j, &(jop_t){.type = J_JOB_FINISHED, .job = 1, .t = 4.0});
    mark = journal_mark(j);
    journal_commit(j, clock_mono_ms() + 10);
    ck_assert_int_ge(s_wal_syncs, syncs + 1);
    ck_assert(journal_written(j, mark));

    s_journal_close(&tmp, &store, &sched, &j);
}
END_TEST

/* --sync acked: SQLite fsyncs the WAL only at a commit that appends
   frames to it. One that an answer waits for may change no page (a
   DELETE that matches nothing, a row rewritten as it was: a worker's
   claim after a restart): it must still fsync, else the results' commits
   before it, only written, are answered as durable and no timer is left
   to fsync them. */
START_TEST(with_sync_acked_a_commit_that_changes_no_page_still_fsyncs_the_ones_before)
{
    tmp_t tmp;
    store_t *store;
    sched_t *sched;
    journal_t *j = s_acked_journal(&tmp, &store, &sched);
    s_submit_one(j);

    /* A result's commit, written and not fsynced. */
    int syncs = s_wal_syncs;
    journal_add(j, &(jop_t){.type = J_JOB_FINISHED, .job = 1, .t = 1.0});
    uint64_t before = journal_mark(j);
    journal_commit(j, clock_mono_ms() + 10);
    ck_assert_int_eq(s_wal_syncs, syncs);
    ck_assert(!journal_written(j, before));

    /* A query's forced flush whose only op changes nothing on disk. */
    journal_add(j, &(jop_t){.type = J_KEYS_PRUNE, .t = 0});
    uint64_t mark = journal_mark(j);
    ck_assert_int_eq(journal_flush(j), 0);
    ck_assert(journal_written(j, mark));
    ck_assert_msg(s_wal_syncs >= syncs + 1,
                  "answered as fsynced, but the WAL was not fsynced (%d syncs before, %d after)",
                  syncs, s_wal_syncs);

    s_journal_close(&tmp, &store, &sched, &j);
}
END_TEST

/* A master run --sync acked, killed after a commit written with NORMAL:
   the commit is in its WAL, in the page cache only. */
static void s_kill_acked_master(const char *db)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char err[256];
        store_t *store = store_new(db, STORE_SYNC_ACKED, err, sizeof err);
        if (!store)
            _exit(2);
        s_crashed_store = store;
        int64_t job, id;
        int rc = store_job_create(store, &(store_job_new_t){.name = "j", .created = 1}, &job);
        rc |= store_task_insert(store, 0, job, 0, "t", 0, 0, "{}", NULL, &id);
        rc |= store_commit(store);
        if (rc != 0)
            _exit(3);
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);
}

/* A ztask database made before auto_vacuum was set (an older master's):
   store_new's PRAGMA auto_vacuum leaves it alone, so opening it commits
   nothing. On one that has it, that pragma rewrites page 1 at every open
   in a commit made at SQLite's default synchronous (FULL in this build),
   which fsyncs the WAL found by accident: a test on such a database
   cannot tell whether store_new fsyncs it itself. */
static void s_make_pre_auto_vacuum(const char *path)
{
    store_t *store = s_open(path, STORE_SYNC_FULL);
    store_destroy(&store);
    s_file_exec(path, "PRAGMA auto_vacuum = NONE; VACUUM");
    ck_assert_int_eq(s_file_int(path, "PRAGMA auto_vacuum"), 0);
}

/* A master killed after commits written with NORMAL (--sync acked)
   leaves them in the WAL, in the page cache only. The next master reads
   them and would answer from them, whatever its own --sync: store_new
   fsyncs the WAL before it returns (nothing else is committed before:
   the database predates auto_vacuum, s_make_pre_auto_vacuum), and then
   there is nothing left to fsync. */
START_TEST(a_restarted_master_fsyncs_the_wal_it_found_before_answering_whatever_its_sync_mode)
{
    static const store_sync_t modes[] = {STORE_SYNC_ACKED, STORE_SYNC_FULL, STORE_SYNC_INTERVAL,
                                         STORE_SYNC_OFF};
    static const char *const names[] = {"acked", "full", "interval", "off"};
    for (size_t m = 0; m < sizeof modes / sizeof *modes; m++) {
        s_fault_vfs_install();
        tmp_t tmp;
        tmp_make(&tmp);
        s_make_pre_auto_vacuum(tmp.db);
        s_kill_acked_master(tmp.db);

        int syncs = s_wal_syncs;
        store_t *store = s_open(tmp.db, modes[m]);
        ck_assert_msg(s_wal_syncs >= syncs + 1,
                      "--sync %s: the master would answer from a WAL never fsynced (%d syncs "
                      "before, %d after)",
                      names[m], syncs, s_wal_syncs);
        rows_t rows;
        ck_assert_int_eq(s_job_tasks(store, 1, &rows), 1);
        sched_t *sched = sched_new();
        journal_t *j = journal_new(store, sched, 5, tmp.db);
        ck_assert_ptr_nonnull(j);
        ck_assert_int_eq(journal_flush(j), 0);
        ck_assert_msg(journal_timeout(j, clock_mono_ms(), 60000) == 60000,
                      "--sync %s: an fsync still due", names[m]);
        s_journal_close(&tmp, &store, &sched, &j);
    }
}
END_TEST

/* The value of ztask_commits_fsynced_total in a rendering of m. */
static double s_fsynced_metric(const metrics_t *m)
{
    strbuf_t out = {0};
    metrics_render(m, &out);
    const char *line = strstr(out.data, "\nztask_commits_fsynced_total ");
    ck_assert_msg(line, "no ztask_commits_fsynced_total in:\n%s", out.data);
    double v = strtod(line + strlen("\nztask_commits_fsynced_total "), NULL);
    free(out.data);
    return v;
}

/* With nothing new to write, an answer's fsync is of the WAL alone: no
   row, so a full disk does not refuse it (a master restarted on a full
   disk answers queries once the WAL it found is fsynced). */
START_TEST(with_sync_acked_an_fsync_alone_needs_no_room_on_the_disk)
{
    tmp_t tmp;
    store_t *store;
    sched_t *sched;
    journal_t *j = s_acked_journal(&tmp, &store, &sched);
    /* The WAL found at the open is fsynced before the first answer. */
    int syncs = s_wal_syncs;
    s_wal_fault = SQLITE_FULL;
    ck_assert_msg(journal_flush(j) == 0, "an fsync alone was refused on a full disk: %s",
                  journal_failing(j) ? journal_failing(j) : "?");
    ck_assert_int_ge(s_wal_syncs, syncs);
    s_wal_fault = 0;
    /* A job's rows, then a change only written: on a full disk, the query
       that follows is answered once the WAL alone is fsynced. */
    s_submit_one(j);
    journal_add(j, &(jop_t){.type = J_JOB_FINISHED, .job = 1, .t = 1.0});
    uint64_t mark = journal_mark(j);
    journal_commit(j, clock_mono_ms() + 10);
    ck_assert(!journal_written(j, mark));
    syncs = s_wal_syncs;
    s_wal_fault = SQLITE_FULL;
    ck_assert_msg(journal_flush(j) == 0, "an fsync alone was refused on a full disk: %s",
                  journal_failing(j) ? journal_failing(j) : "?");
    s_wal_fault = 0;
    ck_assert_int_ge(s_wal_syncs, syncs + 1);
    ck_assert(journal_written(j, mark));

    s_journal_close(&tmp, &store, &sched, &j);
}
END_TEST

/* ztask_commits_fsynced_total counts the commits that were fsynced:
   every one with --sync full, none with interval or off (NORMAL and OFF
   fsync no commit), whatever an answer waited for. */
START_TEST(commits_fsynced_counts_no_commit_with_sync_interval_or_off)
{
    static const store_sync_t modes[] = {STORE_SYNC_FULL, STORE_SYNC_INTERVAL, STORE_SYNC_OFF};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        tmp_t tmp;
        tmp_make(&tmp);
        store_t *store = s_open(tmp.db, modes[i]);
        sched_t *sched = sched_new();
        journal_t *j = journal_new(store, sched, 5, tmp.db);
        metrics_t *m = metrics_new(clock_mono_ms());
        journal_set_metrics(j, m);
        pending_submit_t *p = s_big_submit(1, 1, 200);
        journal_submit(j, &p);
        ck_assert_int_eq(journal_flush(j), 0);
        p = journal_take_done(j);
        ck_assert_msg(p && !p->refused, "the submit was not committed");
        pending_submit_free(&p);
        journal_add(j, &(jop_t){.type = J_JOB_FINISHED, .job = 1, .t = 1.0});
        ck_assert_int_eq(journal_flush(j), 0);
        double fsynced = s_fsynced_metric(m);
        if (modes[i] == STORE_SYNC_FULL)
            ck_assert_msg(fsynced == 2, "--sync full: %.0f of 2 commits counted fsynced", fsynced);
        else
            ck_assert_msg(fsynced == 0, "--sync %s: %.0f commits counted fsynced (none is)",
                          modes[i] == STORE_SYNC_OFF ? "off" : "interval", fsynced);
        journal_destroy(&j);
        metrics_destroy(&m);
        sched_destroy(&sched);
        store_destroy(&store);
        tmp_remove(&tmp);
    }
}
END_TEST

int main(void)
{
    sqlite3_auto_extension((void (*)(void))s_capture_db);
    /* The insert measurement takes a second or more under sanitizers. */
    int rc = zt_run(&(zt_suite_t){ .suite = "store", .tcase = "store", .timeout_s = 120 });
    sqlite3_reset_auto_extension();
    sqlite3_shutdown();
    return rc;
}
