/*  e2e plugin: a worker started with --plugin runs the example plugin's
    functions (examples/plugin/mytasks.c) end to end; such tasks go only
    to workers that have the function, and wait (said at once, and while
    they wait) when no live worker has it; a plugin that cannot load
    stops the worker. */
#include "harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *s_plugin(void)
{
    char *p = NULL;
    ck_assert_int_gt(asprintf(&p, "%s/libmytasks.so", h_lib_dir()), 0);
    return p;
}

/* The single result record of a one-task job. */
static cJSON *s_only_result(h_cluster_t *c, int64_t job)
{
    cJSON *res = h_results(c, job, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(res), 1);
    return res;
}

START_TIMED_TEST(plugin_functions_run_on_a_worker_that_loaded_them, 90)
{
    h_cluster_t *c = h_cluster_new("plugin");
    h_master_start(c, 0, NULL);
    char *plugin = s_plugin();
    h_proc_t *w = h_worker_start(c, "p", 2, "--plugin", plugin, NULL);
    ck_assert(h_proc_count_log(w, "event=plugin_loaded") == 1);

    int64_t job = h_submit(c, NULL, "--fn", "wordcount", "--args",
                           "{\"text\":\"the quick\\n brown  fox\\tjumps\"}", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    cJSON *res = s_only_result(c, job);
    const cJSON *r = cJSON_GetArrayItem(res, 0);
    ck_assert_str_eq(h_jstr(r, "status"), "done");
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(r, "result");
    ck_assert_msg(cJSON_IsNumber(val) && val->valueint == 5, "wordcount result is not 5");
    cJSON_Delete(res);

    /* An array over a plugin function: {} in the args is each index. */
    job = h_submit(c, NULL, "--fn", "upper", "--args", "{\"text\":\"task-{}\"}", "--array", "0-19",
                   NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    res = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(res, 20);
    for (int i = 0; i < 20; i++) {
        char want[32];
        snprintf(want, sizeof want, "TASK-%d", i);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(by[i], "result");
        ck_assert_msg(cJSON_IsString(v) && !strcmp(v->valuestring, want), "index %d: want %s", i,
                      want);
    }
    free(by);
    cJSON_Delete(res);

    /* A slow plugin function honours the timeout through cancelled(). */
    job = h_submit(c, NULL, "--fn", "fib", "--args", "{\"n\":80}", "--timeout", "1", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);
    res = s_only_result(c, job);
    r = cJSON_GetArrayItem(res, 0);
    ck_assert_str_eq(h_jstr(r, "status"), "failed");
    ck_assert(h_jtrue(r, "timed_out"));
    double took = h_jnum(r, "finished", 0) - h_jnum(r, "started", 0);
    ck_assert_msg(took < 10 * h_slowdown(), "fib ran %.1fs past its 1 s timeout", took);
    cJSON_Delete(res);

    job = h_submit(c, NULL, "--fn", "fib", "--args", "{\"n\":20}", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    res = s_only_result(c, job);
    val = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(res, 0), "result");
    ck_assert_msg(cJSON_IsNumber(val) && val->valueint == 6765, "fib(20) is not 6765");
    cJSON_Delete(res);
    free(plugin);
    h_cluster_destroy(&c);
}
END_TEST

/* A function no live worker has: the tasks are not sent to the plain
   worker (which would fail them), submit warns at once, stats, the
   master's log and wait's note say what they wait for, and they run when
   a worker with the plugin registers. */
START_TIMED_TEST(a_function_no_live_worker_has_waits_for_one_and_says_so, 90)
{
    h_cluster_t *c = h_cluster_new("noplugin");
    h_proc_t *m = h_master_start(c, 0, NULL);
    h_worker_start(c, "plain", 1, NULL);
    h_run_t *r = h_cli(c, "submit", "--json", "--fn", "wordcount", "--args",
                       "{\"text\":\"a b\"}", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->err, "warning") && strstr(r->err, "function wordcount"),
                  "submit: %s", h_run_desc(r));
    cJSON *o = h_json_first(r->out);
    int64_t job = h_jint(o, "job", -1);
    cJSON_Delete(o);
    h_run_free(&r);

    r = h_cli(c, "stats", "--json", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "fn=wordcount"), "stats: %s", h_run_desc(r));
    h_run_free(&r);
    ck_assert_msg(h_proc_wait_log(m, "needs=\"fn=wordcount\"", 1, 15000),
                  "the master did not log what the tasks wait for (log %s)", h_proc_log(m));
    char jt[32];
    snprintf(jt, sizeof jt, "%lld", (long long)job);
    r = h_cli(c, "wait", jt, "--timeout", "4", NULL);
    ck_assert_msg(r->rc == 5 && strstr(r->err, "function wordcount"), "wait: %s", h_run_desc(r));
    h_run_free(&r);
    ck_assert_int_eq(h_status_count(c, job, "queued"), 1);

    char *plugin = s_plugin();
    h_worker_start(c, "p", 1, "--plugin", plugin, NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    cJSON *res = s_only_result(c, job);
    const cJSON *t = cJSON_GetArrayItem(res, 0);
    ck_assert_str_eq(h_jstr(t, "worker"), "p");
    ck_assert_int_eq(h_jint(t, "attempts", -1), 1);
    cJSON_Delete(res);
    free(plugin);
    h_cluster_destroy(&c);
}
END_TEST

/* With a plain worker and one with the plugin, every task of a plugin
   function goes to the one that has it, the first time. */
START_TIMED_TEST(function_tasks_go_only_to_workers_that_have_the_function, 90)
{
    h_cluster_t *c = h_cluster_new("fnroute");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "plain", 4, NULL);
    char *plugin = s_plugin();
    h_worker_start(c, "p", 1, "--plugin", plugin, NULL);
    int64_t job = h_submit(c, NULL, "--fn", "wordcount", "--args", "{\"text\":\"a b c\"}",
                           "--array", "1-6", "--retries", "3", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    cJSON *res = h_results(c, job, NULL);
    const cJSON *t;
    cJSON_ArrayForEach(t, res)
    {
        ck_assert_str_eq(h_jstr(t, "worker"), "p");
        ck_assert_int_eq(h_jint(t, "attempts", -1), 1);
    }
    cJSON_Delete(res);
    /* Built-ins still go anywhere. */
    job = h_submit(c, NULL, "--fn", "square", "--array", "0-9", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    free(plugin);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_plugin_that_cannot_load_stops_the_worker, 60)
{
    h_cluster_t *c = h_cluster_new("badplugin");
    h_master_start(c, 0, NULL);
    char *missing = h_path(c, "no-such-plugin.so");
    h_proc_t *w = h_worker_spawn(c, "bad", 1, "--plugin", missing, NULL);
    int code = h_proc_wait_exit(w, 10000);
    ck_assert_msg(code > 0 && code < 128, "worker with a missing plugin: exit %d", code);
    ck_assert(h_proc_count_log(w, "no-such-plugin.so") >= 1);
    ck_assert_int_eq(h_proc_count_log(w, "event=registered"), 0);
    free(missing);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_plugin", h_slowdown()));
}
