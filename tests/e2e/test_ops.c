/*  e2e ops: steering jobs in place, as a user does day to day: failed
    and cancelled tasks run again in the same job (retry); queued tasks
    held and released, given a new priority, limited in how many run at
    once; all of it kept across a master restart. */
#include "harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* DIR/work, made (caller frees): where a test's tasks run and write. */
static char *s_workdir(h_cluster_t *c)
{
    char *dir = h_path(c, "work");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    return dir;
}

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
    char *dir = s_workdir(c);
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
   a master restart and run when a worker comes, with the retries their
   spec asked for (--retries 1: attempts 1 and 2 fail, the job fails;
   retried, attempt 3 fails too and attempt 4, its retry, succeeds). */
START_TIMED_TEST(retried_tasks_survive_a_master_restart, 120)
{
    h_cluster_t *c = h_cluster_new("retryrestart");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, NULL);
    h_proc_t *w = h_worker_start(c, "a", 2, NULL);
    int64_t job = h_submit(c, NULL, "--array", "0-1", "--retries", "1", "--", "sh", "-c",
                           "[ $ZTASK_ATTEMPT -ge 4 ] || exit 4", NULL);
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

/* `ztask CMD ARGS...` that must exit 0 (its output is dropped). */
static void s_ok(h_cluster_t *c, const char *const *args)
{
    h_run_t *r = h_cliv(c, args, 60000);
    ck_assert_msg(r->rc == 0, "%s %s: %s", args[0], args[1] ? args[1] : "", h_run_desc(r));
    h_run_free(&r);
}

/* A job of n commands that each append "TAG INDEX" to DIR/order. */
static int64_t s_order_job(h_cluster_t *c, const char *dir, const char *tag, const char *n)
{
    char script[128];
    snprintf(script, sizeof script, "echo %s {} >> order", tag);
    return h_submit(c, NULL, "--array", n, "--cwd", dir, "--", "sh", "-c", script, NULL);
}

/* Held tasks wait while later work runs, through a master restart; a
   task held alone waits while the rest of its job runs; release lets
   them all run. */
START_TIMED_TEST(held_tasks_wait_across_a_restart_until_released, 120)
{
    h_cluster_t *c = h_cluster_new("hold");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, NULL);
    char *dir = s_workdir(c);

    /* No worker yet: job a is queued, then held. */
    int64_t a = s_order_job(c, dir, "a", "0-2");
    char at[32];
    snprintf(at, sizeof at, "%lld", (long long)a);
    cJSON *o = s_json(c, (const char *[]){"hold", at, "--json", NULL});
    ck_assert_int_eq(h_jint(o, "tasks", -1), 3);
    cJSON_Delete(o);
    cJSON *st = h_status(c, a);
    ck_assert(h_jtrue(st, "held"));
    cJSON_Delete(st);

    /* Kept across a restart: a job submitted later runs to its end, a
       stays queued. */
    h_proc_stop(m, 10000);
    h_master_start(c, port, NULL);
    h_worker_start(c, "w", 2, NULL);
    int64_t b = s_order_job(c, dir, "b", "0-1");
    ck_assert_int_eq(h_wait(c, b, 30000), 0);
    st = h_status(c, a);
    ck_assert(h_jtrue(st, "held"));
    ck_assert_int_eq(h_jint(st, "queued", -1), 3);
    cJSON_Delete(st);
    /* wait says why it waits. */
    h_run_t *r = h_cli(c, "wait", at, "--timeout", "5", NULL);
    ck_assert_msg(r->rc == 5 && strstr(r->err, "is held"), "wait: %s", h_run_desc(r));
    h_run_free(&r);

    /* Released: it runs. */
    o = s_json(c, (const char *[]){"release", at, "--json", NULL});
    ck_assert_int_eq(h_jint(o, "tasks", -1), 3);
    cJSON_Delete(o);
    ck_assert_int_eq(h_wait(c, a, 30000), 0);
    cJSON *res = h_results(c, a, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(res), 3);
    cJSON_Delete(res);

    char *order = h_path(c, "work/order");
    char *text = h_read_file(order);
    ck_assert_ptr_nonnull(text);
    /* b ran before a although a was submitted first. */
    ck_assert_msg(strstr(text, "b ") < strstr(text, "a "), "order:\n%s", text);
    free(text);
    free(order);
    free(dir);
    h_cluster_destroy(&c);
}
END_TEST

/* A task held alone waits while the rest of its job runs. */
START_TIMED_TEST(a_task_held_alone_waits_while_the_rest_of_its_job_runs, 90)
{
    h_cluster_t *c = h_cluster_new("holdone");
    h_master_start(c, 0, NULL);
    char *dir = s_workdir(c);
    int64_t a = s_order_job(c, dir, "a", "0-3");
    char a2[48];
    snprintf(a2, sizeof a2, "%lld.2", (long long)a);
    cJSON *o = s_json(c, (const char *[]){"hold", a2, "--json", NULL});
    ck_assert_int_eq(h_jint(o, "tasks", -1), 1);
    cJSON_Delete(o);
    h_worker_start(c, "w", 2, NULL);
    ck_assert(H_POLL(h_status_count(c, a, "done") == 3, 30000));
    cJSON *res = h_results(c, a, NULL);
    const cJSON *t = s_by_index(res, 2);
    ck_assert_str_eq(h_jstr(t, "status"), "queued");
    ck_assert(h_jtrue(t, "held"));
    cJSON_Delete(res);
    ck_assert_int_eq(h_status_count(c, a, "queued"), 1);
    o = s_json(c, (const char *[]){"release", a2, "--json", NULL});
    ck_assert_int_eq(h_jint(o, "tasks", -1), 1);
    cJSON_Delete(o);
    ck_assert_int_eq(h_wait(c, a, 30000), 0);
    free(dir);
    h_cluster_destroy(&c);
}
END_TEST

/* A job given a higher priority while queued runs before one submitted
   earlier, after a master restart too. */
START_TIMED_TEST(priority_moves_a_queued_job_ahead_and_is_kept_across_a_restart, 120)
{
    h_cluster_t *c = h_cluster_new("priority");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, "--prefetch", "0", NULL);
    char *dir = s_workdir(c);
    int64_t a = s_order_job(c, dir, "a", "0-2");
    int64_t b = s_order_job(c, dir, "b", "0-2");
    char bt[32];
    snprintf(bt, sizeof bt, "%lld", (long long)b);
    cJSON *o = s_json(c, (const char *[]){"priority", bt, "5", "--json", NULL});
    ck_assert_int_eq(h_jint(o, "tasks", -1), 3);
    cJSON_Delete(o);
    /* A negative priority is a number, not an option. */
    char at[32];
    snprintf(at, sizeof at, "%lld", (long long)a);
    o = s_json(c, (const char *[]){"priority", at, "-1", "--json", NULL});
    ck_assert_int_eq(h_jint(o, "priority", 0), -1);
    cJSON_Delete(o);
    h_proc_stop(m, 10000);
    h_master_start(c, port, "--prefetch", "0", NULL);
    h_worker_start(c, "w", 1, NULL);
    ck_assert_int_eq(h_wait(c, a, 30000), 0);
    ck_assert_int_eq(h_wait(c, b, 30000), 0);
    char *order = h_path(c, "work/order");
    char *text = h_read_file(order);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strncmp(text, "b 0\nb 1\nb 2\n", 12) == 0, "order:\n%s", text);
    free(text);
    free(order);
    free(dir);
    h_cluster_destroy(&c);
}
END_TEST

/* Files named started.N in dir. */
static int s_started(const char *dir)
{
    int n = 0;
    for (int i = 0; i < 8; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/started.%d", dir, i);
        n += access(path, F_OK) == 0;
    }
    return n;
}

/* --max-running 1 runs one task at a time on a worker with four threads;
   `ztask limit` raises it to 3 (kept across a restart), and no more
   start. */
START_TIMED_TEST(max_running_caps_a_job_and_limit_changes_it, 120)
{
    h_cluster_t *c = h_cluster_new("limit");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, NULL);
    char *dir = s_workdir(c);
    int64_t job = h_submit(c, NULL, "--max-running", "1", "--array", "0-4", "--cwd", dir,
                           "--timeout", "100", "--", "sh", "-c",
                           "touch started.{}; while [ ! -e go ]; do sleep 0.05; done", NULL);
    cJSON *st = h_status(c, job);
    ck_assert_int_eq(h_jint(st, "max_running", -1), 1);
    cJSON_Delete(st);
    h_worker_start(c, "w", 4, NULL);
    ck_assert(H_POLL(s_started(dir) == 1, 30000));
    /* Another job runs to its end meanwhile: dispatch had its chances. */
    int64_t other = h_submit(c, NULL, "--array", "0-3", "--", "true", NULL);
    ck_assert_int_eq(h_wait(c, other, 30000), 0);
    ck_assert_int_eq(s_started(dir), 1);
    ck_assert_int_eq(h_status_count(c, job, "running"), 1);

    char jt[32];
    snprintf(jt, sizeof jt, "%lld", (long long)job);
    s_ok(c, (const char *[]){"limit", jt, "3", NULL});
    ck_assert(H_POLL(s_started(dir) == 3, 30000));
    other = h_submit(c, NULL, "--array", "0-3", "--", "true", NULL);
    ck_assert_int_eq(h_wait(c, other, 30000), 0);
    ck_assert_int_eq(s_started(dir), 3);

    /* The limit is stored: after a restart the job still says 3. */
    h_proc_stop(m, 10000);
    h_master_start(c, port, NULL);
    st = h_status(c, job);
    ck_assert_int_eq(h_jint(st, "max_running", -1), 3);
    cJSON_Delete(st);
    char *go = h_path(c, "work/go");
    h_write_file(go, "");
    ck_assert_int_eq(h_wait(c, job, 60000), 0);
    ck_assert_int_eq(s_started(dir), 5);
    free(go);
    free(dir);
    h_cluster_destroy(&c);
}
END_TEST

/* A job keeps what it was submitted as: the command line, who, where,
   its first task's spec; `show` prints it, after a master restart too. */
START_TIMED_TEST(show_prints_what_a_job_was_submitted_as_after_a_restart_too, 90)
{
    h_cluster_t *c = h_cluster_new("show");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, NULL);
    int64_t job = h_submit(c, NULL, "--name", "nightly", "--max-running", "2", "--timeout", "9",
                           "--array", "3-4", "--", "sh", "-c", "echo it's {}", NULL);
    h_proc_stop(m, 10000);
    h_master_start(c, port, NULL);
    char jt[32];
    snprintf(jt, sizeof jt, "%lld", (long long)job);
    cJSON *o = s_json(c, (const char *[]){"show", jt, "--json", NULL});
    ck_assert_str_eq(h_jstr(o, "name"), "nightly");
    ck_assert_int_eq(h_jint(o, "max_running", -1), 2);
    ck_assert_double_gt(h_jnum(o, "created", 0), 1e9);
    const cJSON *def = cJSON_GetObjectItemCaseSensitive(o, "definition");
    ck_assert_ptr_nonnull(def);
    const cJSON *argv = cJSON_GetObjectItemCaseSensitive(def, "argv");
    ck_assert_int_eq(cJSON_GetArraySize(argv), 14);
    ck_assert_str_eq(cJSON_GetArrayItem(argv, 0)->valuestring, "submit");
    ck_assert_str_eq(cJSON_GetArrayItem(argv, 13)->valuestring, "echo it's {}");
    ck_assert_ptr_nonnull(h_jstr(def, "user"));
    ck_assert_ptr_nonnull(h_jstr(def, "cwd"));
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(o, "first_spec");
    ck_assert_int_eq(h_jint(spec, "index", -1), 3);
    ck_assert(h_jnum(spec, "timeout", 0) == 9);
    ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(spec, "argv"), 2)
                         ->valuestring,
                     "echo it's 3");
    cJSON_Delete(o);

    h_run_t *r = h_cli(c, "show", jt, NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "name       nightly")
                      && strstr(r->out, "'echo it'\\''s {}'")
                      && strstr(r->out, "at most 2 running"),
                  "show: %s", h_run_desc(r));
    h_run_free(&r);
    r = h_cli(c, "show", "99", NULL);
    ck_assert_msg(r->rc == 4 && strstr(r->err, "no job 99"), "show 99: %s", h_run_desc(r));
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

/* `ztask tasks --waiting --json` (with args: NULL-terminated, at most 4):
   the records (caller deletes). */
static cJSON *s_waiting(h_cluster_t *c, const char *a0, const char *a1)
{
    h_run_t *r = h_cliv(c, (const char *[]){"tasks", "--waiting", "--json", a0, a1, NULL},
                        30000);
    ck_assert_msg(r->rc == 0, "tasks --waiting: %s", h_run_desc(r));
    cJSON *lines = h_json_lines(r->out);
    h_run_free(&r);
    return lines;
}

/* Why tasks do not run: each queued task says what it waits for, in run
   order (priority, then age): a retry backoff, its job's limit, a hold
   of its job or of itself, the job it depends on (and that job's hold),
   a label no worker has, a free slot behind the ready ones ahead of it. */
START_TIMED_TEST(waiting_tasks_say_why_they_do_not_run, 90)
{
    h_cluster_t *c = h_cluster_new("why");
    /* A worker holds one task per thread; a retry waits a minute. */
    h_proc_t *m = h_master_start(c, 0, "--prefetch", "0", "--retry-backoff-ms", "60000", NULL);
    h_worker_start(c, "a", 2, NULL);
    char *dir = s_workdir(c);
    const char *blocking = "while [ ! -e go ]; do sleep 0.05; done";
    int64_t f = h_submit(c, NULL, "--retries", "1", "--", "false", NULL);
    ck_assert(h_proc_wait_log(m, "event=retry ", 1, 30000));
    int64_t b = h_submit(c, NULL, "--cwd", dir, "--", "sh", "-c", blocking, NULL);
    ck_assert(H_POLL(h_status_count(c, b, "running") == 1, 30000));
    int64_t l = h_submit(c, NULL, "--array", "0-2", "--max-running", "1", "--cwd", dir, "--",
                         "sh", "-c", blocking, NULL);
    ck_assert(H_POLL(h_status_count(c, l, "running") == 1, 30000));
    /* Both threads busy from here on: nothing else starts. */
    int64_t hj = h_submit(c, NULL, "--array", "0-1", "--", "true", NULL);
    int64_t g = h_submit(c, NULL, "--", "true", NULL);
    char bs[32], hs[32], gs[48], ls[32];
    snprintf(bs, sizeof bs, "%lld", (long long) b);
    snprintf(hs, sizeof hs, "%lld", (long long) hj);
    snprintf(gs, sizeof gs, "%lld.0", (long long) g);
    snprintf(ls, sizeof ls, "%lld", (long long) l);
    h_run_t *r = h_cli(c, "hold", hs, NULL);
    ck_assert_msg(r->rc == 0, "hold: %s", h_run_desc(r));
    h_run_free(&r);
    r = h_cli(c, "hold", gs, NULL);
    ck_assert_msg(r->rc == 0, "hold: %s", h_run_desc(r));
    h_run_free(&r);
    int64_t d = h_submit(c, NULL, "--after", bs, "--", "true", NULL);
    int64_t n = h_submit(c, NULL, "--require", "nosuch", "--", "true", NULL);
    int64_t e = h_submit(c, NULL, "--after", hs, "--", "true", NULL);
    int64_t rj = h_submit(c, NULL, "--array", "0-1", "--", "true", NULL);
    char rs[32];
    snprintf(rs, sizeof rs, "%lld", (long long) rj);
    r = h_cli(c, "priority", rs, "5", NULL);
    ck_assert_msg(r->rc == 0, "priority: %s", h_run_desc(r));
    h_run_free(&r);

    /* Run order: the priority 5 job first, then the oldest. */
    enum { N = 11 };
    char want[N][160];
    int64_t jobs[N] = {rj, rj, f, l, l, hj, hj, g, d, n, e};
    int64_t idx[N] = {0, 1, 0, 1, 2, 0, 1, 0, 0, 0, 0};
    const char *waits[N] = {"ready", "ready", "retry", "capped", "capped", "held",
                            "held", "held", "deps", "no_worker", "deps"};
    snprintf(want[0], sizeof want[0], "ready: next in line for a free slot");
    snprintf(want[1], sizeof want[1], "ready: 1 ahead of it");
    snprintf(want[2], sizeof want[2], "retry backoff: attempt 2 in ");   /* then the time */
    snprintf(want[3], sizeof want[3], "job limit 1 reached: ztask limit %s N changes it", ls);
    snprintf(want[4], sizeof want[4], "%s", want[3]);
    snprintf(want[5], sizeof want[5], "held: ztask release %s", hs);
    snprintf(want[6], sizeof want[6], "%s", want[5]);
    snprintf(want[7], sizeof want[7], "held: ztask release %s", gs);
    snprintf(want[8], sizeof want[8], "after job %s (running)", bs);
    snprintf(want[9], sizeof want[9], "no live worker can run it: it needs a worker that runs "
                                      "commands, labelled nosuch (see ztask workers)");
    /* After a held job: its hold is what to act on. */
    snprintf(want[10], sizeof want[10], "after job %s (queued, held: ztask release %s)", hs, hs);
    cJSON *lines = s_waiting(c, NULL, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(lines), N);
    for (int i = 0; i < N; i++) {
        const cJSON *t = cJSON_GetArrayItem(lines, i);
        const char *reason = h_jstr(t, "reason"), *wait = h_jstr(t, "wait");
        ck_assert_msg(h_jint(t, "job", -1) == jobs[i] && h_jint(t, "index", -1) == idx[i],
                      "record %d is %lld.%lld, want %lld.%lld", i,
                      (long long) h_jint(t, "job", -1), (long long) h_jint(t, "index", -1),
                      (long long) jobs[i], (long long) idx[i]);
        bool same = false;
        if (reason && i == 2) {
            /* "... in S s", S at most the minute of the backoff. */
            size_t k = strlen(want[i]);
            char *end = NULL;
            double secs = strncmp(reason, want[i], k) == 0 ? strtod(reason + k, &end) : -1;
            same = secs > 0 && secs <= 60.0 && end && strcmp(end, " s") == 0;
        } else if (reason) {
            same = strcmp(reason, want[i]) == 0;
        }
        ck_assert_msg(same, "%lld.%lld: reason \"%s\", want \"%s\"",
                      (long long) jobs[i], (long long) idx[i], reason ? reason : "(none)",
                      want[i]);
        ck_assert_msg(wait && strcmp(wait, waits[i]) == 0, "%lld.%lld: wait %s, want %s",
                      (long long) jobs[i], (long long) idx[i], wait ? wait : "(none)", waits[i]);
        ck_assert_str_eq(h_jstr(t, "status"), "queued");
        ck_assert_int_eq(h_jint(t, "priority", -1), i < 2 ? 5 : 0);
        ck_assert_int_eq(h_jint(t, "attempts", -1), i == 2 ? 1 : 0);
    }
    ck_assert_int_eq(h_jint(cJSON_GetArrayItem(lines, 1), "ahead", -1), 1);
    cJSON_Delete(lines);

    /* One job's; the table says the same. */
    lines = s_waiting(c, "--job", ls);
    ck_assert_int_eq(cJSON_GetArraySize(lines), 2);
    cJSON_Delete(lines);
    r = h_cli(c, "tasks", "--waiting", "--job", rs, NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "REASON") && strstr(r->out, "ready: 1 ahead of it"),
                  "%s", h_run_desc(r));
    h_run_free(&r);
    r = h_cli(c, "tasks", "--waiting", "--worker", "a", NULL);
    ck_assert_msg(r->rc == 2, "--worker with --waiting: %s", h_run_desc(r));
    h_run_free(&r);

    /* Released, the blocker done: all of them run but the one no worker takes. */
    char *go = h_path(c, "work/go");
    h_write_file(go, "");
    r = h_cli(c, "release", hs, NULL);
    h_run_free(&r);
    r = h_cli(c, "release", gs, NULL);
    h_run_free(&r);
    ck_assert_int_eq(h_wait(c, d, 30000), 0);
    ck_assert_int_eq(h_wait(c, l, 30000), 0);
    ck_assert_int_eq(h_wait(c, e, 30000), 0);
    lines = s_waiting(c, NULL, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(lines), 2);   /* the retry still waits its minute */
    ck_assert_int_eq(h_jint(cJSON_GetArrayItem(lines, 0), "job", -1), f);
    ck_assert_int_eq(h_jint(cJSON_GetArrayItem(lines, 1), "job", -1), n);
    cJSON_Delete(lines);
    free(go);
    free(dir);
    h_cluster_destroy(&c);
}
END_TEST

/* The job ids of `ztask jobs --json ARGS...`, in the order printed. */
static int s_job_list(h_cluster_t *c, const char *const *args, int64_t *ids, int max)
{
    h_run_t *r = h_cliv(c, args, 60000);
    ck_assert_msg(r->rc == 0, "jobs: %s", h_run_desc(r));
    cJSON *lines = h_json_lines(r->out);
    int n = 0;
    const cJSON *j;
    cJSON_ArrayForEach(j, lines)
    if (n < max)
        ids[n++] = h_jint(j, "job", -1);
    cJSON_Delete(lines);
    h_run_free(&r);
    return n;
}

/* What runs where: a task on a worker shows its worker, attempt and
   start from its dispatch on; `tasks` lists them across jobs, by worker
   and job; `jobs` filters by state and name, newest first. */
START_TIMED_TEST(views_show_what_runs_where_and_filter_jobs, 90)
{
    h_cluster_t *c = h_cluster_new("views");
    h_master_start(c, 0, "--prefetch", "0", NULL);   /* a worker holds one task per thread */
    h_proc_t *wa = h_worker_start(c, "a", 2, NULL);
    h_proc_t *wb = h_worker_start(c, "b", 1, NULL);
    char *dir = s_workdir(c);
    int64_t adhoc = h_submit(c, NULL, "--name", "adhoc", "--", "true", NULL);
    ck_assert_int_eq(h_wait(c, adhoc, 30000), 0);
    int64_t n1 = h_submit(c, NULL, "--name", "nightly-1", "--array", "0-2", "--cwd", dir,
                          "--timeout", "100", "--", "sh", "-c",
                          "while [ ! -e go ]; do sleep 0.05; done", NULL);
    ck_assert(H_POLL(h_status_count(c, n1, "running") == 3, 30000));
    h_worker_start(c, "c", 1, NULL);   /* a and b are busy: room for the next job */
    int64_t n2 = h_submit(c, NULL, "--name", "nightly-2", "--", "false", NULL);
    ck_assert_int_eq(h_wait(c, n2, 30000), 1);

    /* Each running task says where, which attempt, since when. */
    cJSON *res = h_results(c, n1, NULL);
    const cJSON *t;
    cJSON_ArrayForEach(t, res)
    {
        ck_assert_msg(h_jstr(t, "worker") != NULL, "a running task without its worker");
        ck_assert_int_eq(h_jint(t, "attempts", -1), 1);
        ck_assert_msg(h_jnum(t, "started", 0) > 1e9, "a running task without its start");
    }
    cJSON_Delete(res);

    /* tasks: across jobs, by worker, by job. */
    h_run_t *r = h_cli(c, "tasks", "--json", NULL);
    ck_assert_msg(r->rc == 0, "tasks: %s", h_run_desc(r));
    cJSON *lines = h_json_lines(r->out);
    ck_assert_int_eq(cJSON_GetArraySize(lines), 3);
    cJSON_ArrayForEach(t, lines)
    ck_assert_int_eq(h_jint(t, "job", -1), n1);
    cJSON_Delete(lines);
    h_run_free(&r);
    r = h_cli(c, "tasks", "--worker", h_worker_id(wb), "--json", NULL);
    lines = h_json_lines(r->out);
    ck_assert_int_eq(cJSON_GetArraySize(lines), 1);
    ck_assert_str_eq(h_jstr(cJSON_GetArrayItem(lines, 0), "worker"), h_worker_id(wb));
    cJSON_Delete(lines);
    h_run_free(&r);
    char jt[32];
    snprintf(jt, sizeof jt, "%lld", (long long)adhoc);
    r = h_cli(c, "tasks", "--job", jt, NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "no task is on a worker"), "%s", h_run_desc(r));
    h_run_free(&r);
    r = h_cli(c, "tasks", "--worker", h_worker_id(wa), NULL);
    int nl = 0;
    for (const char *p = r->out; *p; p++)
        nl += *p == '\n';
    ck_assert_msg(r->rc == 0 && strstr(r->out, "FOR") && nl == 3, "header + a's two tasks: %s",
                  h_run_desc(r));
    h_run_free(&r);

    /* jobs: newest first, by state, by name, limited. */
    int64_t ids[8];
    int n = s_job_list(c, (const char *[]){"jobs", "--json", NULL}, ids, 8);
    ck_assert_int_eq(n, 3);
    ck_assert(ids[0] == n2 && ids[1] == n1 && ids[2] == adhoc);
    n = s_job_list(c, (const char *[]){"jobs", "--json", "--state", "failed", NULL}, ids, 8);
    ck_assert(n == 1 && ids[0] == n2);
    n = s_job_list(c, (const char *[]){"jobs", "--json", "--state", "running,done", NULL}, ids,
                   8);
    ck_assert(n == 2 && ids[0] == n1 && ids[1] == adhoc);
    n = s_job_list(c, (const char *[]){"jobs", "--json", "--name", "nightly-*", NULL}, ids, 8);
    ck_assert(n == 2 && ids[0] == n2 && ids[1] == n1);
    n = s_job_list(c, (const char *[]){"jobs", "--json", "--name", "nightly-*", "--limit", "1",
                                       NULL},
                   ids, 8);
    ck_assert(n == 1 && ids[0] == n2);
    r = h_cli(c, "jobs", "--state", "runing", NULL);
    ck_assert_msg(r->rc == 2 && strstr(r->err, "not a job state"), "%s", h_run_desc(r));
    h_run_free(&r);

    char *go = h_path(c, "work/go");
    h_write_file(go, "");
    ck_assert_int_eq(h_wait(c, n1, 30000), 0);
    free(go);
    free(dir);
    h_cluster_destroy(&c);
}
END_TEST

/* A task that failed on one worker retries on another when one can take
   it. Worker b is busy when the task is first sent (a blocker that only
   b can run, --require blocker, holds its one thread), so attempt 1 runs
   on a; it fails and, as it does, ends the
   blocker: when the retry is due both workers are free, and it must go
   to b. Each attempt writes its worker's pid ($PPID: the worker runs
   it). Six rounds. */
START_TIMED_TEST(a_retry_goes_to_another_worker_when_one_can_take_it, 120)
{
    h_cluster_t *c = h_cluster_new("elsewhere");
    h_master_start(c, 0, "--retry-backoff-ms", "300", "--prefetch", "0", NULL);
    h_proc_t *wa = h_worker_start(c, "a", 1, NULL);
    h_proc_t *wb = h_worker_start(c, "b", 1, "--label", "blocker", NULL);
    char *dir = s_workdir(c);
    for (int i = 0; i < 6; i++) {
        char script[200];
        /* b's one thread: busy until the task below fails once. */
        snprintf(script, sizeof script, "while [ ! -e free.%d ]; do sleep 0.02; done", i);
        int64_t blocker = h_submit(c, NULL, "--cwd", dir, "--timeout", "60", "--require",
                                   "blocker", "--", "sh", "-c", script, NULL);
        ck_assert(H_POLL(h_status_count(c, blocker, "running") == 1, 30000));
        snprintf(script, sizeof script,
                 "echo $PPID > %d.$ZTASK_ATTEMPT; touch free.%d; [ $ZTASK_ATTEMPT -ge 2 ]", i, i);
        int64_t job = h_submit(c, NULL, "--retries", "1", "--cwd", dir, "--", "sh", "-c", script,
                               NULL);
        ck_assert_int_eq(h_wait(c, job, 30000), 0);
        ck_assert_int_eq(h_wait(c, blocker, 30000), 0);
        char name[64];
        snprintf(name, sizeof name, "work/%d.1", i);
        char *p1 = h_path(c, name);
        snprintf(name, sizeof name, "work/%d.2", i);
        char *p2 = h_path(c, name);
        char *t1 = h_read_file(p1), *t2 = h_read_file(p2);
        ck_assert_msg(t1 && t2, "task %d: no pid files", i);
        long a1 = atol(t1), a2 = atol(t2);
        ck_assert_msg(a1 == h_proc_pid(wa), "round %d: attempt 1 did not run on a", i);
        ck_assert_msg(a2 == h_proc_pid(wb), "round %d: the retry ran on a again", i);
        free(t1);
        free(t2);
        free(p1);
        free(p2);
    }
    free(dir);
    h_cluster_destroy(&c);
}
END_TEST

/* Size of a file, -1 when absent. */
static long s_file_size(h_cluster_t *c, const char *name)
{
    char *path = h_path(c, name);
    struct stat st;
    long n = stat(path, &st) == 0 ? (long)st.st_size : -1;
    free(path);
    return n;
}

/* --stdout/--stderr: the worker writes each stream in full to its file
   (placeholders filled, directories made, relative to the task's cwd),
   beside the capped copy the master keeps; --no-capture keeps only the
   files; a path that cannot be written fails the task with the reason. */
START_TIMED_TEST(output_files_get_the_whole_streams_beside_the_capped_copy, 90)
{
    h_cluster_t *c = h_cluster_new("outfiles");
    h_master_start(c, 0, "--retry-backoff-ms", "20", NULL);
    h_worker_start(c, "w", 2, NULL);
    char *dir = s_workdir(c);
    /* 5000 bytes of stdout (the master keeps 1K), a line of stderr; the
       first attempt of each fails, so %{attempt} makes two files. */
    const char *script = "head -c 5000 /dev/zero | tr '\\0' x; echo err {} >&2; "
                         "[ $ZTASK_ATTEMPT -ge 2 ]";
    int64_t job = h_submit(c, NULL, "--array", "1-2", "--cwd", dir, "--retries", "1",
                           "--output-cap", "1K", "--stdout", "out/%{job}/%{index}.%{attempt}.out",
                           "--stderr", "out/%{job}/%{index}.%{attempt}.err", "--", "sh", "-c",
                           script, NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    for (int i = 1; i <= 2; i++)
        for (int a = 1; a <= 2; a++) {
            char name[96], want[32];
            snprintf(name, sizeof name, "work/out/%lld/%d.%d.out", (long long)job, i, a);
            ck_assert_int_eq(s_file_size(c, name), 5000);
            snprintf(name, sizeof name, "work/out/%lld/%d.%d.err", (long long)job, i, a);
            char *path = h_path(c, name);
            char *text = h_read_file(path);
            snprintf(want, sizeof want, "err %d\n", i);
            ck_assert_msg(text && strcmp(text, want) == 0, "%s: %s", name, text ? text : "(none)");
            free(text);
            free(path);
        }
    cJSON *res = h_results(c, job, NULL);
    const cJSON *t = cJSON_GetArrayItem(res, 0);
    ck_assert_int_eq((long)strlen(h_jstr(t, "stdout")), 1024);
    ck_assert(h_jtrue(t, "stdout_truncated"));
    cJSON_Delete(res);

    /* --no-capture: only the file has it; one file for both streams. */
    job = h_submit(c, NULL, "--cwd", dir, "--no-capture", "--stdout", "all-%{task}.log",
                   "--stderr", "all-%{task}.log", "--", "sh", "-c", "echo out; echo err >&2",
                   NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    res = h_results(c, job, NULL);
    t = cJSON_GetArrayItem(res, 0);
    ck_assert_str_eq(h_jstr(t, "stdout"), "");
    ck_assert_str_eq(h_jstr(t, "stderr"), "");
    char name[64];
    snprintf(name, sizeof name, "work/all-%lld.log", (long long)h_jint(t, "task", 0));
    ck_assert_int_eq(s_file_size(c, name), 8);
    cJSON_Delete(res);

    /* A path the worker cannot write: the task fails and says why. */
    char *blocker = h_path(c, "work/plain-file");
    h_write_file(blocker, "");
    job = h_submit(c, NULL, "--cwd", dir, "--stdout", "plain-file/sub/%{task}.out", "--",
                   "echo", "hi", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);
    res = h_results(c, job, NULL);
    t = cJSON_GetArrayItem(res, 0);
    ck_assert_str_eq(h_jstr(t, "status"), "failed");
    ck_assert_msg(strstr(h_jstr(t, "error"), "cannot write stdout to"), "error: %s",
                  h_jstr(t, "error"));
    cJSON_Delete(res);

    /* A placeholder that does not exist is refused before anything is sent. */
    h_run_t *r = h_cli(c, "submit", "--stdout", "x-%{idx}", "--", "true", NULL);
    ck_assert_msg(r->rc == 2 && strstr(r->err, "unknown placeholder"), "%s", h_run_desc(r));
    h_run_free(&r);
    free(blocker);
    free(dir);
    h_cluster_destroy(&c);
}
END_TEST

/* A retry on a worker shows its own attempt, worker and start, not the
   attempt that failed before it. */
START_TIMED_TEST(a_retry_on_a_worker_shows_its_own_attempt_not_the_failed_one, 60)
{
    h_cluster_t *c = h_cluster_new("retryshown");
    h_master_start(c, 0, "--retry-backoff-ms", "20", NULL);
    h_worker_start(c, "w", 1, NULL);
    char *dir = s_workdir(c);
    int64_t job = h_submit(c, NULL, "--retries", "1", "--cwd", dir, "--timeout", "60", "--", "sh",
                           "-c",
                           "[ $ZTASK_ATTEMPT -ge 2 ] || exit 3; while [ ! -e go ]; do sleep 0.05; "
                           "done",
                           NULL);
    cJSON *res = NULL;
    const cJSON *t = NULL;
    bool seen = H_POLL((cJSON_Delete(res), res = h_results(c, job, NULL),
                        t = cJSON_GetArrayItem(res, 0), h_jint(t, "attempts", 0) == 2),
                       30000);
    ck_assert_msg(seen, "the retry never showed as attempt 2");
    ck_assert_ptr_null(h_jstr(t, "error"));
    ck_assert_str_eq(h_jstr(t, "worker"), "w");
    ck_assert(h_jnum(t, "started", 0) > 1e9);
    cJSON_Delete(res);
    char *go = h_path(c, "work/go");
    h_write_file(go, "");
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    free(go);
    free(dir);
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

/* Changing a queued job's priority requeues its tasks; the entries they
   leave behind are swept, so a client that changes it again and again
   while nothing is dispatched (no worker) does not grow the master's
   memory without end (it grew by 24 bytes per task per change). */
START_TIMED_TEST(priority_changes_over_and_over_hold_no_memory, 120)
{
    h_cluster_t *c = h_cluster_new("priority_flood");
    h_proc_t *m = h_master_start(c, 0, "--sync", "off", NULL);
    int64_t job = h_submit(c, NULL, "--array", "1-20000", "--", "true", NULL);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) job);
    long base = h_vm_kib(h_proc_pid(m), "VmRSS");
    ck_assert_int_gt(base, 0);
    /* The sweep runs once the pushes outnumber the tasks: every change or
       two. Under sanitizers (no memory bound below) 12 changes sweep as
       the 150 do, and take 6 s of make tsan, not 90. */
    const int changes = h_slowdown() == 1 ? 150 : 12;
    for (int i = 0; i < changes; i++) {
        h_run_t *r = h_cli(c, "priority", id, i % 2 ? "1" : "2", NULL);
        ck_assert_msg(r->rc == 0, "priority: %s", h_run_desc(r));
        h_run_free(&r);
    }
    long now = h_vm_kib(h_proc_pid(m), "VmRSS");
    /* Without the sweep: 150 x 20000 entries of 24 bytes, 69 MiB. ASan
       keeps freed blocks in its 256 MiB quarantine: only a build without
       sanitizers shows the bound. */
    if (h_slowdown() == 1)
        ck_assert_msg(now < base + 24 * 1024, "the master grew from %ld to %ld KiB", base, now);
    ck_assert_int_eq(h_status_count(c, job, "queued"), 20000);
    h_cluster_destroy(&c);
}
END_TEST

/* A test hook (ZTASK_TEST_*) trades a production guarantee for a test's
   reach, and the master read them silently: an operator who inherited
   one from a shell or a unit file had no way to know. Each one set is a
   warning at start, naming it and its value; a master without any says
   nothing of the kind. */
START_TIMED_TEST(a_master_started_with_a_test_hook_warns_naming_it, 60)
{
    h_cluster_t *c = h_cluster_new("a_master_started_with_a_test_hook_warns_naming_it");
    setenv("ZTASK_TEST_ASSIGN_WRITE_MS", "50", 1);
    setenv("ZTASK_TEST_REPLY_BUDGET_MIB", "8", 1);
    h_proc_t *m = h_master_start(c, 0, NULL);
    unsetenv("ZTASK_TEST_ASSIGN_WRITE_MS");
    unsetenv("ZTASK_TEST_REPLY_BUDGET_MIB");
    ck_assert(h_proc_wait_log(m, "event=test_hook_active name=ZTASK_TEST_ASSIGN_WRITE_MS", 1,
                              10000));
    ck_assert_msg(h_proc_count_log(m, "event=test_hook_active name=ZTASK_TEST_ASSIGN_WRITE_MS "
                                      "value=50") == 1
                      && h_proc_count_log(m, "event=test_hook_active name=ZTASK_TEST_REPLY_BUDGET_MIB "
                                             "value=8") == 1,
                  "no warning naming each test hook in %s", h_proc_log(m));
    h_proc_stop(m, 10000);
    h_proc_t *plain = h_master_start(c, 0, NULL);
    ck_assert_int_eq(h_proc_count_log(plain, "event=test_hook_active"), 0);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_ops", h_slowdown()));
}
