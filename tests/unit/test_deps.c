/* deps (master/deps.c): the verdict for a task of a job that depends on
   others, and which held tasks an event hands back. Jobs are made with
   jobs_create and their counters moved with job_add/job_move, as the
   master does; the store is an in-memory one (after_each reads how a
   parent's tasks ended from it). */
#include "../../master/deps.h"
#include "../../master/jobs.h"
#include "../../master/store.h"

#include "../ztest.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    store_t *store;
    jobs_t *jobs;
    deps_t *deps;
} fix_t;

static void s_fix(fix_t *f)
{
    char err[256];
    f->store = store_new(":memory:", STORE_SYNC_OFF, err, sizeof err);
    ck_assert_msg(f->store, "%s", err);
    f->jobs = jobs_new(NULL, 0, 0);
    f->deps = deps_new(f->jobs);
}

static void s_unfix(fix_t *f)
{
    deps_destroy(&f->deps);
    jobs_destroy(&f->jobs);
    store_destroy(&f->store);
}

/* A job with n queued tasks. */
static job_t *s_job(fix_t *f, int64_t id, int n)
{
    job_t *j = jobs_create(f->jobs, &(store_job_new_t){.id = id, .name = "j", .created = 1});
    job_add(j, PROTO_ST_QUEUED, n, 0);
    j->closed = true;
    return j;
}

/* Ends n of job's queued tasks in state; finished once nothing is left. */
static void s_end(job_t *j, int n, proto_state_t st)
{
    job_move(j, PROTO_ST_QUEUED, st, n, 0);
    if (j->queued == 0 && j->running == 0)
        j->finished = 2;
}

static deps_verdict_t s_judge(fix_t *f, int64_t job, int64_t index)
{
    char why[256];
    return deps_judge(f->deps, job, index, why, sizeof why);
}

START_TEST(a_job_after_another_waits_until_it_is_done_and_runs_then)
{
    fix_t f;
    s_fix(&f);
    job_t *parent = s_job(&f, 1, 2);
    s_job(&f, 2, 1);
    ck_assert_int_eq(deps_add(f.deps, 2, &(proto_dep_t){.job = 1, .kind = PROTO_DEP_OK}, 1,
                              f.store),
                     0);
    ck_assert(deps_has(f.deps, 2));
    ck_assert(!deps_has(f.deps, 1));
    ck_assert_int_eq(s_judge(&f, 2, 0), DEPS_WAIT);
    deps_hold(f.deps, 2, 0, 100);
    ck_assert(deps_waiting(f.deps, 2));
    s_end(parent, 2, PROTO_ST_DONE);
    size_t n;
    int64_t *ids = deps_job_ended(f.deps, 1, &n);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(ids[0], 100);
    free(ids);
    ck_assert(!deps_waiting(f.deps, 2));
    ck_assert_int_eq(s_judge(&f, 2, 0), DEPS_RUN);
    s_unfix(&f);
}
END_TEST

START_TEST(a_parent_that_did_not_succeed_fails_after_but_not_after_any)
{
    fix_t f;
    s_fix(&f);
    job_t *parent = s_job(&f, 1, 3);
    s_job(&f, 2, 1);
    s_job(&f, 3, 1);
    deps_add(f.deps, 2, &(proto_dep_t){.job = 1, .kind = PROTO_DEP_OK}, 1, f.store);
    deps_add(f.deps, 3, &(proto_dep_t){.job = 1, .kind = PROTO_DEP_ANY}, 1, f.store);
    s_end(parent, 2, PROTO_ST_DONE);
    s_end(parent, 1, PROTO_ST_CANCELLED);
    char why[256] = "";
    ck_assert_int_eq(deps_judge(f.deps, 2, 0, why, sizeof why), DEPS_FAIL);
    ck_assert_msg(strstr(why, "job 1") && strstr(why, "1 cancelled"), "%s", why);
    ck_assert_int_eq(s_judge(&f, 3, 0), DEPS_RUN);
    s_unfix(&f);
}
END_TEST

START_TEST(one_failed_parent_decides_while_another_still_runs)
{
    fix_t f;
    s_fix(&f);
    job_t *a = s_job(&f, 1, 1);
    s_job(&f, 2, 1);
    s_job(&f, 3, 1);
    const proto_dep_t both[] = {{.job = 1, .kind = PROTO_DEP_OK}, {.job = 2, .kind = PROTO_DEP_OK}};
    deps_add(f.deps, 3, both, 2, f.store);
    ck_assert_int_eq(s_judge(&f, 3, 0), DEPS_WAIT);
    s_end(a, 1, PROTO_ST_FAILED);
    ck_assert_int_eq(s_judge(&f, 3, 0), DEPS_FAIL);
    s_unfix(&f);
}
END_TEST

START_TEST(a_forgotten_parent_counts_as_met)
{
    fix_t f;
    s_fix(&f);
    s_job(&f, 2, 1);
    deps_add(f.deps, 2, &(proto_dep_t){.job = 1, .kind = PROTO_DEP_OK}, 1, f.store);
    ck_assert_int_eq(s_judge(&f, 2, 0), DEPS_RUN);
    s_unfix(&f);
}
END_TEST

START_TEST(after_each_hands_back_task_i_when_task_i_of_the_parent_ends)
{
    fix_t f;
    s_fix(&f);
    /* Task 0 of the parent ended before the dependant came: the store
       says so. */
    ck_assert_int_eq(store_job_create(f.store, &(store_job_new_t){.id = 1, .created = 1}, NULL),
                     0);
    int64_t tid = 0;
    ck_assert_int_eq(store_task_insert(f.store, 10, 1, 0, NULL, 0, 0, "{}", NULL, &tid), 0);
    ck_assert_int_eq(store_task_finish(f.store, 10, PROTO_ST_DONE, 1, "w", NULL, 2), 0);
    ck_assert_int_eq(store_commit(f.store), 0);
    job_t *parent = s_job(&f, 1, 3);
    s_end(parent, 1, PROTO_ST_DONE);
    s_job(&f, 2, 3);
    ck_assert_int_eq(deps_add(f.deps, 2, &(proto_dep_t){.job = 1, .kind = PROTO_DEP_EACH}, 1,
                              f.store),
                     0);
    ck_assert_int_eq(s_judge(&f, 2, 0), DEPS_RUN);
    ck_assert_int_eq(s_judge(&f, 2, 1), DEPS_WAIT);
    ck_assert_int_eq(s_judge(&f, 2, 2), DEPS_WAIT);
    deps_hold(f.deps, 2, 1, 201);
    deps_hold(f.deps, 2, 2, 202);
    /* Task 2 of the parent fails: only the dependant's task 2 comes back. */
    size_t n;
    int64_t *ids = deps_task_ended(f.deps, 1, 2, PROTO_ST_FAILED, &n);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(ids[0], 202);
    free(ids);
    char why[256];
    ck_assert_int_eq(deps_judge(f.deps, 2, 2, why, sizeof why), DEPS_FAIL);
    ck_assert_msg(strstr(why, "task 2 of job 1"), "%s", why);
    /* The parent finishes with no task 5: a dependant's task 5 fails. */
    s_end(parent, 2, PROTO_ST_DONE);
    ck_assert_int_eq(deps_judge(f.deps, 2, 5, why, sizeof why), DEPS_FAIL);
    ck_assert_msg(strstr(why, "no task 5"), "%s", why);
    s_unfix(&f);
}
END_TEST

START_TEST(the_children_of_a_job_are_listed_each_once)
{
    fix_t f;
    s_fix(&f);
    s_job(&f, 1, 1);
    s_job(&f, 2, 1);
    const proto_dep_t twice[] = {{.job = 1, .kind = PROTO_DEP_OK}, {.job = 1, .kind = PROTO_DEP_ANY}};
    deps_add(f.deps, 2, twice, 2, f.store);
    int n;
    const int64_t *kids = deps_children(f.deps, 1, &n);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(kids[0], 2);
    ck_assert_ptr_null(deps_children(f.deps, 2, &n));
    s_unfix(&f);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){.suite = "deps", .tcase = "deps"});
}
