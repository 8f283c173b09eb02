/*  e2e basic: a cluster runs jobs to the right results, and the CLI keeps
    its exit-code contract (0 ok, 1 failed tasks, 2 usage, 3 no master). */
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The first case reads as a usage example: master, two workers, an array
   job of 10,000 function calls, every result checked. */
START_TIMED_TEST(square_array_of_10000_tasks_gives_every_result_once, 180)
{
    h_cluster_t *c = h_cluster_new("square10k");
    h_master_start(c, 0, NULL);
    h_proc_t *wa = h_worker_start(c, "a", 2, NULL);
    h_proc_t *wb = h_worker_start(c, "b", 2, NULL);
    char *ida = strdup(h_worker_id(wa));
    char *idb = strdup(h_worker_id(wb));

    int64_t ntasks = 0;
    int64_t job = h_submit(c, &ntasks, "--fn", "square", "--array", "0-9999", NULL);
    ck_assert_int_eq(ntasks, 10000);
    ck_assert_int_eq(h_wait(c, job, 120000), 0);

    cJSON *res = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(res, 10000);
    int on_a = 0, on_b = 0;
    for (int i = 0; i < 10000; i++) {
        const cJSON *r = by[i];
        ck_assert_msg(strcmp(h_jstr(r, "status") ? h_jstr(r, "status") : "", "done") == 0,
                      "task %d status %s", i, h_jstr(r, "status"));
        const cJSON *val = cJSON_GetObjectItemCaseSensitive(r, "result");
        ck_assert_msg(cJSON_IsNumber(val) && (long long)val->valuedouble == (long long)i * i,
                      "task %d: result is not %lld", i, (long long)i * i);
        ck_assert_int_ge(h_jint(r, "attempts", 0), 1);
        const char *w = h_jstr(r, "worker");
        ck_assert_msg(w && (!strcmp(w, ida) || !strcmp(w, idb)), "task %d ran on '%s'", i,
                      w ? w : "(none)");
        if (!strcmp(w, ida))
            on_a++;
        else
            on_b++;
    }
    /* Both workers were registered before the submit: both must get work. */
    ck_assert_msg(on_a > 0 && on_b > 0, "work split a=%d b=%d", on_a, on_b);
    free(by);
    cJSON_Delete(res);

    cJSON *st = h_status(c, job);
    ck_assert_ptr_nonnull(st);
    ck_assert_str_eq(h_jstr(st, "state"), "done");
    ck_assert(h_jtrue(st, "closed"));
    ck_assert_int_eq(h_jint(st, "total", -1), 10000);
    ck_assert_int_eq(h_jint(st, "done", -1), 10000);
    ck_assert_int_eq(h_jint(st, "failed", -1), 0);
    ck_assert_int_eq(h_jint(st, "queued", -1), 0);
    ck_assert_int_eq(h_jint(st, "running", -1), 0);
    cJSON_Delete(st);

    /* Nothing ran twice. */
    h_run_t *r = h_cli(c, "stats", "--json", NULL);
    ck_assert_msg(r->rc == 0, "stats: %s", h_run_desc(r));
    cJSON *stats = h_json_first(r->out);
    ck_assert_ptr_nonnull(stats);
    ck_assert_int_eq(h_jint(stats, "duplicates", -1), 0);
    ck_assert_int_ge(h_jint(stats, "tasks_done", -1), 10000);
    cJSON_Delete(stats);
    h_run_free(&r);

    free(ida);
    free(idb);
    h_cluster_destroy(&c);
}
END_TEST

/* 200 commands, each checking its own stdin, environment, working
   directory and index, and leaving a file and output behind. */
START_TIMED_TEST(exec_tasks_get_stdin_env_cwd_and_index, 120)
{
    h_cluster_t *c = h_cluster_new("exec200");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 2, NULL);
    h_worker_start(c, "b", 2, NULL);

    char *work = h_path(c, "work");
    ck_assert_int_eq(mkdir(work, 0755), 0);
    char *real = realpath(work, NULL);
    ck_assert_ptr_nonnull(real);
    char *input = h_path(c, "input.txt");
    h_write_file(input, "stdin-token-42\nsecond line\n");
    char *script = NULL;
    ck_assert_int_gt(asprintf(&script,
                              "read line || exit 3; [ \"$line\" = stdin-token-42 ] || exit 4; "
                              "[ \"$ZT_TOKEN\" = env-ok ] || exit 5; "
                              "[ \"$(pwd -P)\" = '%s' ] || exit 6; "
                              "[ \"$ZTASK_TASK_INDEX\" = {} ] || exit 7; "
                              "echo \"{} $ZTASK_JOB_ID\" > out-{}.txt; echo ok-{}; echo err-{} >&2",
                              real),
                     0);
    char *envarg = "ZT_TOKEN=env-ok";
    int64_t ntasks = 0;
    int64_t job = h_submit(c, &ntasks, "--array", "0-199", "--stdin", input, "--env", envarg,
                           "--cwd", real, "--", "sh", "-c", script, NULL);
    ck_assert_int_eq(ntasks, 200);
    ck_assert_int_eq(h_wait(c, job, 60000), 0);

    cJSON *res = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(res, 200);
    for (int i = 0; i < 200; i++) {
        const cJSON *r = by[i];
        char want_out[32], want_err[32], want_file[64], fname[64];
        snprintf(want_out, sizeof want_out, "ok-%d\n", i);
        snprintf(want_err, sizeof want_err, "err-%d\n", i);
        snprintf(want_file, sizeof want_file, "%d %lld\n", i, (long long)job);
        ck_assert_msg(!strcmp(h_jstr(r, "status") ? h_jstr(r, "status") : "", "done"),
                      "task %d: status %s exit %lld error %s stderr %s", i, h_jstr(r, "status"),
                      (long long)h_jint(r, "exit_code", -1), h_jstr(r, "error"),
                      h_jstr(r, "stderr"));
        ck_assert_int_eq(h_jint(r, "exit_code", -1), 0);
        ck_assert_str_eq(h_jstr(r, "stdout"), want_out);
        ck_assert_str_eq(h_jstr(r, "stderr"), want_err);
        ck_assert(!h_jtrue(r, "timed_out"));
        ck_assert_double_le(h_jnum(r, "started", 0), h_jnum(r, "finished", 0));
        ck_assert_double_gt(h_jnum(r, "started", 0), 1e9);
        snprintf(fname, sizeof fname, "out-%d.txt", i);
        char *path = NULL;
        ck_assert_int_gt(asprintf(&path, "%s/%s", real, fname), 0);
        char *text = h_read_file(path);
        ck_assert_msg(text != NULL, "task %d left no %s", i, path);
        ck_assert_str_eq(text, want_file);
        free(text);
        free(path);
    }
    free(by);
    cJSON_Delete(res);

    /* logs by JOB.INDEX shows that task's output. */
    char ref[48];
    snprintf(ref, sizeof ref, "%lld.7", (long long)job);
    h_run_t *r = h_cli(c, "logs", ref, NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "ok-7"), "logs %s: %s", ref, h_run_desc(r));
    h_run_free(&r);

    free(script);
    free(input);
    free(real);
    free(work);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(submit_wait_exits_0_when_every_task_succeeds, 60)
{
    h_cluster_t *c = h_cluster_new("submitwait");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 2, NULL);
    h_run_t *r = h_cli(c, "submit", "--fn", "square", "--array", "0-9", "--wait", NULL);
    ck_assert_msg(r->rc == 0, "submit --wait: %s", h_run_desc(r));
    h_run_free(&r);

    /* --json --wait: the job line comes first, and the job is finished. */
    r = h_cli(c, "submit", "--json", "--wait", "--fn", "echo", "--args", "{\"x\":[1,2]}", NULL);
    ck_assert_msg(r->rc == 0, "submit --json --wait: %s", h_run_desc(r));
    cJSON *j = h_json_first(r->out);
    ck_assert_msg(j != NULL, "no JSON first line: %s", h_run_desc(r));
    int64_t job = h_jint(j, "job", -1);
    ck_assert_int_gt(job, 0);
    ck_assert_int_eq(h_jint(j, "tasks", -1), 1);
    cJSON_Delete(j);
    h_run_free(&r);
    ck_assert_int_eq(h_status_count(c, job, "done"), 1);
    cJSON *res = h_results(c, job, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(res), 1);
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(res, 0), "result");
    char *txt = cJSON_PrintUnformatted(val);
    ck_assert_str_eq(txt, "{\"x\":[1,2]}");
    cJSON_free(txt);
    cJSON_Delete(res);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_failing_task_makes_wait_exit_1_and_results_failed_lists_it, 60)
{
    h_cluster_t *c = h_cluster_new("failing");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 2, NULL);

    int64_t job = h_submit(c, NULL, "--array", "0-4", "--", "sh", "-c", "test {} -ne 3", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);

    cJSON *failed = h_results(c, job, "--failed");
    ck_assert_int_eq(cJSON_GetArraySize(failed), 1);
    const cJSON *f = cJSON_GetArrayItem(failed, 0);
    ck_assert_int_eq(h_jint(f, "index", -1), 3);
    ck_assert_str_eq(h_jstr(f, "status"), "failed");
    ck_assert_int_eq(h_jint(f, "exit_code", -1), 1);
    ck_assert_int_eq(h_jint(f, "job", -1), job);
    cJSON_Delete(failed);

    cJSON *all = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(all, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_str_eq(h_jstr(by[i], "status"), i == 3 ? "failed" : "done");
    free(by);
    cJSON_Delete(all);

    cJSON *st = h_status(c, job);
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(h_jint(st, "failed", -1), 1);
    ck_assert_int_eq(h_jint(st, "done", -1), 4);
    cJSON_Delete(st);

    /* A built-in that fails: submit --wait says so with 1 too. */
    h_run_t *r = h_cli(c, "submit", "--wait", "--fn", "fail", "--args",
                       "{\"message\":\"boom\"}", NULL);
    ck_assert_msg(r->rc == 1, "submit --wait of a failing fn: %s", h_run_desc(r));
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(usage_errors_exit_2_without_contacting_a_master, 60)
{
    int port;
    int fd = h_loopback_socket(false, &port);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    static const char *const cases[][8] = {
        {NULL},
        {"frobnicate", NULL},
        {"submit", NULL},
        {"submit", "--array", "5-x", "--", "true", NULL},
        {"submit", "--retries", "abc", "--", "true", NULL},
        {"submit", "--fn", "square", "--args", "{not json", NULL},
        {"wait", NULL},
        {"status", "not-a-job", "--json", NULL},
        {"submit", "--no-such-flag", "--", "true", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[12] = {"--master", addr};
        int n = 2;
        for (int k = 0; cases[i][k]; k++)
            args[n++] = cases[i][k];
        args[n] = NULL;
        h_run_t *r = h_cliv(NULL, args, 20000);
        ck_assert_msg(r->rc == 2, "case %zu (%s %s): want exit 2: %s", i,
                      cases[i][0] ? cases[i][0] : "", cases[i][0] && cases[i][1] ? cases[i][1] : "",
                      h_run_desc(r));
        ck_assert_msg(r->err_len > 0, "case %zu: a usage error says something on stderr", i);
        h_run_free(&r);
    }
    close(fd);
}
END_TEST

START_TIMED_TEST(no_master_exits_3_quickly, 90)
{
    int port;
    int fd = h_loopback_socket(false, &port);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    /* The default request timeout (10 s), and a short one. */
    const char *status[] = {"--master", addr, "status", "--json", NULL};
    const char *submit[] = {"--master", addr, "--request-timeout", "1", "submit", "--", "true",
                            NULL};
    const char *const *cases[] = {status, submit};
    const double limit[] = {15.0, 4.0};
    for (int i = 0; i < 2; i++) {
        h_run_t *r = h_cliv(NULL, cases[i], 30000);
        ck_assert_msg(r->rc == 3, "case %d without a master: want exit 3: %s", i, h_run_desc(r));
        ck_assert_msg(r->elapsed < limit[i] * h_slowdown(), "case %d took %.1fs to give up", i,
                      r->elapsed);
        ck_assert_msg(r->err_len > 0, "says why on stderr");
        h_run_free(&r);
    }
    close(fd);
}
END_TEST

START_TIMED_TEST(workers_stats_jobs_and_forget_report_the_cluster, 60)
{
    h_cluster_t *c = h_cluster_new("clistate");
    h_master_start(c, 0, NULL);
    h_proc_t *wa = h_worker_start(c, "a", 2, NULL);
    h_proc_t *wb = h_worker_start(c, "b", 3, "--label", "gpu", "--label", "ssd", NULL);
    char host[256];
    ck_assert_int_eq(gethostname(host, sizeof host), 0);
    host[sizeof host - 1] = '\0';

    h_run_t *r = h_cli(c, "workers", "--json", NULL);
    ck_assert_msg(r->rc == 0, "workers: %s", h_run_desc(r));
    cJSON *ws = h_json_lines(r->out);
    ck_assert_int_eq(cJSON_GetArraySize(ws), 2);
    int seen = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, ws) {
        const char *id = h_jstr(w, "worker");
        ck_assert_ptr_nonnull(id);
        ck_assert(h_jtrue(w, "alive"));
        ck_assert_str_eq(h_jstr(w, "host"), host);
        const cJSON *labels = cJSON_GetObjectItemCaseSensitive(w, "labels");
        if (!strcmp(id, h_worker_id(wa))) {
            ck_assert_int_eq(h_jint(w, "threads", -1), 2);
            ck_assert_int_eq(h_jint(w, "pid", -1), h_proc_pid(wa));
            ck_assert_int_eq(cJSON_GetArraySize(labels), 0);
            seen |= 1;
        } else if (!strcmp(id, h_worker_id(wb))) {
            ck_assert_int_eq(h_jint(w, "threads", -1), 3);
            ck_assert_int_eq(h_jint(w, "pid", -1), h_proc_pid(wb));
            ck_assert_int_eq(cJSON_GetArraySize(labels), 2);
            ck_assert_str_eq(cJSON_GetArrayItem(labels, 0)->valuestring, "gpu");
            ck_assert_str_eq(cJSON_GetArrayItem(labels, 1)->valuestring, "ssd");
            seen |= 2;
        }
    }
    ck_assert_int_eq(seen, 3);
    cJSON_Delete(ws);
    h_run_free(&r);

    /* The table shows the same: host, pid, threads and labels per worker. */
    r = h_cli(c, "workers", NULL);
    ck_assert_msg(r->rc == 0, "workers: %s", h_run_desc(r));
    char want[512];
    snprintf(want, sizeof want, "%d       3 ", (int) h_proc_pid(wb));
    ck_assert_msg(strstr(r->out, want) && strstr(r->out, "gpu,ssd") && strstr(r->out, host)
                      && strstr(r->out, " PID "),
                  "workers table lacks host, pid %d, threads or labels: %s", (int) h_proc_pid(wb),
                  r->out);
    h_run_free(&r);

    int64_t job = h_submit(c, NULL, "--fn", "noop", "--array", "1-20", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);

    r = h_cli(c, "stats", "--json", NULL);
    ck_assert_msg(r->rc == 0, "stats: %s", h_run_desc(r));
    cJSON *st = h_json_first(r->out);
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(h_jint(st, "workers_alive", -1), 2);
    ck_assert_int_eq(h_jint(st, "threads_total", -1), 5);
    ck_assert_int_ge(h_jint(st, "tasks_done", -1), 20);
    cJSON_Delete(st);
    h_run_free(&r);

    char jb[32];
    snprintf(jb, sizeof jb, "%lld", (long long)job);
    r = h_cli(c, "jobs", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, jb), "jobs: %s", h_run_desc(r));
    h_run_free(&r);

    r = h_cli(c, "forget", jb, NULL);
    ck_assert_msg(r->rc == 0, "forget: %s", h_run_desc(r));
    h_run_free(&r);
    r = h_cli(c, "status", jb, "--json", NULL);
    ck_assert_msg(r->rc == 4, "status of a forgotten job: want exit 4 (refused): %s",
                  h_run_desc(r));
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(require_routes_tasks_to_labelled_workers_only, 60)
{
    h_cluster_t *c = h_cluster_new("labels");
    h_master_start(c, 0, NULL);
    h_proc_t *gpu = h_worker_start(c, "gpu", 2, "--label", "gpu", NULL);
    h_worker_start(c, "plain", 2, NULL);
    int64_t job = h_submit(c, NULL, "--require", "gpu", "--fn", "noop", "--array", "0-39", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    cJSON *res = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(res, 40);
    for (int i = 0; i < 40; i++)
        ck_assert_str_eq(h_jstr(by[i], "worker"), h_worker_id(gpu));
    free(by);
    cJSON_Delete(res);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(no_exec_workers_get_function_tasks_only, 60)
{
    h_cluster_t *c = h_cluster_new("noexec");
    h_master_start(c, 0, NULL);
    h_proc_t *fnonly = h_worker_start(c, "fnonly", 2, "--no-exec", NULL);
    h_proc_t *any = h_worker_start(c, "any", 2, NULL);
    int64_t job = h_submit(c, NULL, "--array", "0-19", "--", "true", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    cJSON *res = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(res, 20);
    for (int i = 0; i < 20; i++)
        ck_assert_str_eq(h_jstr(by[i], "worker"), h_worker_id(any));
    free(by);
    cJSON_Delete(res);
    /* Function tasks may go to either. */
    job = h_submit(c, NULL, "--fn", "sleep", "--args", "{\"seconds\":0.02}", "--array", "0-39",
                   NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    (void)fnonly;
    h_cluster_destroy(&c);
}
END_TEST

/* The unrunnable classes the master reports in stats (a JSON array as
   text, "" when the field is missing). */
static char *s_unrunnable(h_cluster_t *c)
{
    h_run_t *r = h_cli(c, "stats", "--json", NULL);
    ck_assert_msg(r->rc == 0, "stats: %s", h_run_desc(r));
    cJSON *st = h_json_first(r->out);
    ck_assert_ptr_nonnull(st);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(st, "unrunnable");
    char *text = u ? cJSON_PrintUnformatted(u) : strdup("");
    cJSON_Delete(st);
    h_run_free(&r);
    return text;
}

static bool s_unrunnable_is(h_cluster_t *c, const char *want)
{
    char *got = s_unrunnable(c);
    bool same = strcmp(got, want) == 0;
    free(got);
    return same;
}

/* Only --no-exec workers: a command task waits (a worker that runs
   commands may still join), but not in silence: stats names what it
   needs, `wait` says so, the master logs it; once such a worker comes,
   it runs. */
START_TIMED_TEST(a_command_job_with_no_worker_that_runs_commands_says_what_it_waits_for, 90)
{
    h_cluster_t *c = h_cluster_new("unrunnable");
    h_proc_t *m = h_master_start(c, 0, NULL);
    h_worker_start(c, "fnonly", 1, "--no-exec", NULL);
    int64_t job = h_submit(c, NULL, "--", "true", NULL);
    ck_assert_msg(H_POLL(s_unrunnable_is(c, "[\"exec\"]"), 10000),
                  "stats does not say the job waits for a worker that runs commands");

    char jb[32];
    snprintf(jb, sizeof jb, "%lld", (long long) job);
    const char *args[] = { "wait", jb, "--timeout", "8", NULL };
    h_run_t *r = h_cliv(c, args, 30000);
    ck_assert_msg(r->rc == 5, "wait: want exit 5 (timeout): %s", h_run_desc(r));
    ck_assert_msg(strstr(r->err, "need a worker that runs commands, and no live worker is one")
                      && strstr(r->err, "ztask cancel"),
                  "wait does not say what the job waits for: %s", r->err);
    h_run_free(&r);
    ck_assert_msg(h_proc_wait_log(m, "event=tasks_without_worker needs=\"exec\"", 1, 10000),
                  "the master did not log the waiting tasks");

    h_worker_start(c, "any", 1, NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    ck_assert_msg(s_unrunnable_is(c, "[]"), "stats still lists tasks without a worker");
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(higher_priority_jobs_overtake_queued_work, 60)
{
    h_cluster_t *c = h_cluster_new("priority");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "one", 1, NULL);
    int64_t low = h_submit(c, NULL, "--fn", "sleep", "--args", "{\"seconds\":0.05}", "--array",
                           "0-29", NULL);
    ck_assert(H_POLL(h_status_count(c, low, "done") >= 2, 20000));
    int64_t high = h_submit(c, NULL, "--priority", "10", "--fn", "noop", "--array", "0-4", NULL);
    ck_assert_int_eq(h_wait(c, high, 30000), 0);
    ck_assert_int_eq(h_wait(c, low, 30000), 0);
    /* From when the master took the high job in (its "created"), not from
       before the CLI started: a CLI that takes 0.1 s to start (under
       TSan, on a busy machine) lets low tasks run meanwhile, rightly. */
    cJSON *hj = h_status(c, high);
    ck_assert_ptr_nonnull(hj);
    double before = h_jnum(hj, "created", 0);
    cJSON_Delete(hj);
    ck_assert(before > 1e9);

    cJSON *hres = h_results(c, high, NULL);
    double last_high = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, hres) {
        double st = h_jnum(r, "started", 0);
        last_high = st > last_high ? st : last_high;
    }
    cJSON_Delete(hres);
    /* Low tasks that started after the high job arrived but before its
       last task: at most the one already on its way to the only thread. */
    cJSON *lres = h_results(c, low, NULL);
    int overtaken = 0, remaining = 0;
    cJSON_ArrayForEach(r, lres) {
        double st = h_jnum(r, "started", 0);
        if (st > before)
            remaining++;
        if (st > before && st < last_high)
            overtaken++;
    }
    cJSON_Delete(lres);
    ck_assert_msg(remaining > 5, "the low job was nearly done before the test could look");
    ck_assert_msg(overtaken <= 1, "%d low-priority tasks started before the high job ended",
                  overtaken);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(output_is_capped_and_made_valid_utf8, 60)
{
    h_cluster_t *c = h_cluster_new("output");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 1, NULL);
    int64_t job = h_submit(c, NULL, "--output-cap", "1K", "--", "sh", "-c",
                           "head -c 10000 /dev/zero | tr '\\0' x; printf 'bad\\377\\376end\\n' >&2",
                           NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    cJSON *res = h_results(c, job, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(res), 1);
    const cJSON *r = cJSON_GetArrayItem(res, 0);
    const char *out = h_jstr(r, "stdout");
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(strlen(out), 1024);
    ck_assert_int_eq(strspn(out, "x"), 1024);
    ck_assert(h_jtrue(r, "stdout_truncated"));
    ck_assert(!h_jtrue(r, "stderr_truncated"));
    const char *err = h_jstr(r, "stderr");
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, "bad") && strstr(err, "end") && strstr(err, "\xef\xbf\xbd"),
                  "stderr not repaired to UTF-8: %s", err);
    cJSON_Delete(res);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(logs_follow_a_running_task_to_its_end, 60)
{
    h_cluster_t *c = h_cluster_new("logsf");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 1, NULL);
    char *go = h_path(c, "go");
    char *script = NULL;
    /* The task prints, then waits for the test to say go. */
    ck_assert_int_gt(asprintf(&script,
                              "echo first; i=0; while [ ! -e '%s' ] && [ $i -lt 600 ]; do "
                              "sleep 0.05; i=$((i+1)); done; echo second; echo oops >&2",
                              go),
                     0);
    int64_t job = h_submit(c, NULL, "--", "sh", "-c", script, NULL);
    char ref[48];
    snprintf(ref, sizeof ref, "%lld.0", (long long)job);
    /* Live output reaches the master while the task runs. */
    ck_assert_msg(H_POLL(({
                      h_run_t *lr = h_cli(c, "logs", ref, NULL);
                      bool seen = lr->rc == 0 && strstr(lr->out, "first") != NULL;
                      h_run_free(&lr);
                      seen;
                  }),
                         10000),
                  "no live output from the running task");
    ck_assert_int_eq(h_status_count(c, job, "running"), 1);
    h_write_file(go, "");
    h_run_t *r = h_cli(c, "logs", ref, "-f", NULL);
    ck_assert_msg(r->rc == 0, "logs -f: %s", h_run_desc(r));
    ck_assert_msg(strstr(r->out, "first\n") && strstr(r->out, "second\n"),
                  "logs -f missed output: %s", h_run_desc(r));
    ck_assert_msg(strstr(r->err, "oops"), "logs -f missed stderr: %s", h_run_desc(r));
    h_run_free(&r);
    ck_assert_int_eq(h_status_count(c, job, "done"), 1);
    free(script);
    free(go);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(drain_by_cli_lets_a_worker_finish_and_leave, 60)
{
    h_cluster_t *c = h_cluster_new("clidrain");
    h_master_start(c, 0, NULL);
    h_proc_t *wa = h_worker_start(c, "a", 2, NULL);
    h_proc_t *wb = h_worker_start(c, "b", 2, NULL);
    int64_t job = h_submit(c, NULL, "--fn", "sleep", "--args", "{\"seconds\":0.05}", "--array",
                           "0-99", NULL);
    ck_assert(H_POLL(h_status_count(c, job, "done") >= 10, 20000));
    h_run_t *r = h_cli(c, "drain", h_worker_id(wa), NULL);
    ck_assert_msg(r->rc == 0, "drain: %s", h_run_desc(r));
    h_run_free(&r);
    int code = h_proc_wait_exit(wa, 20000);
    ck_assert_msg(code == 0, "drained worker: exit %d (log %s)", code, h_proc_log(wa));
    ck_assert_int_eq(h_wait(c, job, 60000), 0);
    cJSON *res = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(res, 100);
    for (int i = 0; i < 100; i++)
        ck_assert_str_eq(h_jstr(by[i], "status"), "done");
    free(by);
    cJSON_Delete(res);
    r = h_cli(c, "drain", "no-such-worker", NULL);
    ck_assert_msg(r->rc == 4, "drain of an unknown worker: %s", h_run_desc(r));
    h_run_free(&r);
    (void)wb;
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_basic", h_slowdown()));
}
