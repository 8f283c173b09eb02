/*  e2e ops: steering jobs in place, as a user does day to day: failed
    and cancelled tasks run again in the same job (retry). */
#include "harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* `ztask CMD... --json` that must exit 0: its first JSON line (caller
   deletes). */
static cJSON *s_json(h_cluster_t *c, const char *const *args)
{
    h_run_t *r = h_cliv(c, args, 60000);
    ck_assert_msg(r->rc == 0, "%s: %s", args[0], h_run_desc(r));
    cJSON *o = h_json_first(r->out);
    ck_assert_msg(o != NULL, "%s printed no JSON: %s", args[0], h_run_desc(r));
    h_run_free(&r);
    return o;
}

/* A job of four commands in dir: each fails until dir/flag exists;
   index 3 first sleeps until then (so it can be cancelled while it runs).
   Each prints its attempt. */
static int64_t s_flag_job(h_cluster_t *c, const char *dir)
{
    const char *script = "if [ {} = 3 ] && [ ! -e flag ]; then sleep 60; fi; "
                         "echo attempt=$ZTASK_ATTEMPT; [ -e flag ] || { echo no flag >&2; exit 3; }";
    return h_submit(c, NULL, "--array", "0-3", "--cwd", dir, "--", "sh", "-c", script, NULL);
}

static const cJSON *s_by_index(const cJSON *res, int64_t index)
{
    const cJSON *r;
    cJSON_ArrayForEach(r, res)
    if (h_jint(r, "index", -1) == index)
        return r;
    ck_abort_msg("no result for index %lld", (long long)index);
    return NULL;
}

/* The usage example: a job whose tasks failed for a reason since fixed
   (a missing file) runs them again in place, and `wait` follows it. */
START_TIMED_TEST(retry_runs_failed_then_cancelled_tasks_again_in_the_same_job, 90)
{
    h_cluster_t *c = h_cluster_new("retry");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 4, NULL);
    char *dir = h_path(c, "work");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    int64_t job = s_flag_job(c, dir);
    char jtext[32], ref[48];
    snprintf(jtext, sizeof jtext, "%lld", (long long)job);
    snprintf(ref, sizeof ref, "%lld.3", (long long)job);

    /* Three fail; the fourth is cancelled while it runs. */
    ck_assert(H_POLL(h_status_count(c, job, "failed") == 3, 30000));
    h_run_t *r = h_cli(c, "cancel", ref, NULL);
    ck_assert_msg(r->rc == 0, "cancel: %s", h_run_desc(r));
    h_run_free(&r);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);
    ck_assert_int_eq(h_status_count(c, job, "cancelled"), 1);

    /* Fixed: only the failed ones go back, as new attempts. */
    char *flag = h_path(c, "work/flag");
    h_write_file(flag, "");
    cJSON *o = s_json(c, (const char *[]){"retry", jtext, "--failed", "--json", NULL});
    ck_assert_int_eq(h_jint(o, "job", -1), job);
    ck_assert_int_eq(h_jint(o, "tasks", -1), 3);
    cJSON_Delete(o);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);   /* the cancelled one is still cancelled */
    cJSON *st = h_status(c, job);
    ck_assert_int_eq(h_jint(st, "total", -1), 4);
    ck_assert_int_eq(h_jint(st, "done", -1), 3);
    ck_assert_int_eq(h_jint(st, "cancelled", -1), 1);
    ck_assert_int_eq(h_jint(st, "failed", -1), 0);
    cJSON_Delete(st);

    /* Then the cancelled one, by its index. */
    o = s_json(c, (const char *[]){"retry", jtext, "--index", "3", "--json", NULL});
    ck_assert_int_eq(h_jint(o, "tasks", -1), 1);
    cJSON_Delete(o);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);

    cJSON *res = h_results(c, job, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(res), 4);
    for (int i = 0; i < 4; i++) {
        const cJSON *t = s_by_index(res, i);
        ck_assert_str_eq(h_jstr(t, "status"), "done");
        ck_assert_int_eq(h_jint(t, "attempts", -1), 2);
        ck_assert_str_eq(h_jstr(t, "stdout"), "attempt=2\n");
    }
    cJSON_Delete(res);

    /* Nothing left to put back: 0, and the job stays done. */
    o = s_json(c, (const char *[]){"retry", jtext, "--json", NULL});
    ck_assert_int_eq(h_jint(o, "tasks", -1), 0);
    cJSON_Delete(o);
    ck_assert_int_eq(h_wait(c, job, 10000), 0);
    free(flag);
    free(dir);
    h_cluster_destroy(&c);
}
END_TEST

/* A retry is stored at once: tasks put back while no worker runs survive
   a master restart and run when a worker comes. */
START_TIMED_TEST(retried_tasks_survive_a_master_restart, 120)
{
    h_cluster_t *c = h_cluster_new("retryrestart");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, NULL);
    h_proc_t *w = h_worker_start(c, "a", 2, NULL);
    int64_t job = h_submit(c, NULL, "--array", "0-1", "--", "sh", "-c",
                           "[ $ZTASK_ATTEMPT -ge 2 ] || exit 4", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);
    h_proc_stop(w, 10000);
    char jtext[32];
    snprintf(jtext, sizeof jtext, "%lld", (long long)job);
    cJSON *o = s_json(c, (const char *[]){"retry", jtext, "--json", NULL});
    ck_assert_int_eq(h_jint(o, "tasks", -1), 2);
    cJSON_Delete(o);
    cJSON *st = h_status(c, job);
    ck_assert_str_eq(h_jstr(st, "state"), "queued");
    ck_assert_int_eq(h_jint(st, "queued", -1), 2);
    ck_assert(h_jnum(st, "finished", 0) == 0);   /* null: not finished */
    cJSON_Delete(st);

    h_proc_stop(m, 10000);
    h_master_start(c, port, NULL);
    st = h_status(c, job);
    ck_assert_int_eq(h_jint(st, "queued", -1), 2);
    ck_assert_int_eq(h_jint(st, "failed", -1), 0);
    cJSON_Delete(st);
    h_worker_start(c, "b", 2, NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(retry_of_a_job_that_does_not_exist_is_refused, 30)
{
    h_cluster_t *c = h_cluster_new("retrynojob");
    h_master_start(c, 0, NULL);
    h_run_t *r = h_cli(c, "retry", "99", NULL);
    ck_assert_msg(r->rc == 4 && strstr(r->err, "no job 99"), "retry 99: %s", h_run_desc(r));
    h_run_free(&r);
    r = h_cli(c, "retry", "1", "--index", "5-1", NULL);
    ck_assert_msg(r->rc == 2 && strstr(r->err, "reversed"), "bad --index: %s", h_run_desc(r));
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_ops", h_slowdown()));
}
