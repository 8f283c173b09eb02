/*  e2e deps: dependencies between jobs (submit --after, --after-any,
    --after-each) through the real programs.

    Tasks here hold on a "go" file the test creates, so what may run
    when is the test's decision, and record what they did in files of
    their own (a line appended per stage, a marker per index); the test
    reads those and the master's counters. Waiting is polling a condition
    with a deadline, or `ztask wait`. */
#include "harness.h"

#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

#define FAST_HEARTBEAT "--heartbeat-ms", "200", "--liveness", "3", "--recovery-grace", "1"

/* `ztask submit -q ARGS...`: expects exit 0 and stdout that is only the
   job id (digits and a newline); returns it. */
static int64_t s_submit_q(h_cluster_t *c, const char *const *args)
{
    const char *argv[64] = {"submit", "-q"};
    int n = 2;
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    h_run_t *r = h_cliv(c, argv, 60000);
    ck_assert_msg(r->rc == 0, "submit: %s", h_run_desc(r));
    size_t len = strlen(r->out);
    ck_assert_msg(len >= 2 && r->out[len - 1] == '\n', "submit -q printed '%s'", r->out);
    for (size_t i = 0; i + 1 < len; i++)
        ck_assert_msg(isdigit((unsigned char) r->out[i]), "submit -q printed '%s'", r->out);
    int64_t id = strtoll(r->out, NULL, 10);
    h_run_free(&r);
    return id;
}

#define SUBMIT_Q(c, ...) s_submit_q((c), (const char *const[]){__VA_ARGS__, NULL})

static const char *s_id(int64_t id, char *buf, size_t len)
{
    snprintf(buf, len, "%lld", (long long) id);
    return buf;
}

static char *s_state(h_cluster_t *c, int64_t job)
{
    cJSON *st = h_status(c, job);
    ck_assert_msg(st, "status %lld failed", (long long) job);
    char *state = strdup(h_jstr(st, "state") ? h_jstr(st, "state") : "?");
    cJSON_Delete(st);
    return state;
}

static bool s_state_is(h_cluster_t *c, int64_t job, const char *want)
{
    char *state = s_state(c, job);
    bool same = strcmp(state, want) == 0;
    free(state);
    return same;
}

/* Kills the master -9 and starts it again on port; returns it once the
   worker w has registered for the nth time. */
static h_proc_t *s_restart(h_cluster_t *c, h_proc_t *m, h_proc_t *w, int port, int nth)
{
    h_proc_kill9(m);
    m = h_master_start(c, port, FAST_HEARTBEAT, "--sync", "full", NULL);
    ck_assert_msg(h_proc_wait_log(w, "registered worker=", nth, 30000),
                  "the worker did not re-register (log %s)", h_proc_log(w));
    return m;
}

/* prepare -> array of 4 -> merge, each stage after the one before; the
   master is killed -9 while the first stage runs (the later ones wait)
   and again between the second and third stages. The stages append to
   one file: the order of its lines is the order they ran in. */
START_TIMED_TEST(a_three_stage_pipeline_runs_in_order_across_master_restarts, 150)
{
    h_cluster_t *c = h_cluster_new("pipeline");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, FAST_HEARTBEAT, "--sync", "full", NULL);
    h_proc_t *w = h_worker_start(c, "a", 4, NULL);
    char *log = h_path(c, "stages"), *go = h_path(c, "go"), *go2 = h_path(c, "go2");
    char prep[512], render[512], merge[512], b1[32], b2[32];
    /* Bounded waits (60 s) so that a failed test leaves nothing behind. */
    snprintf(prep, sizeof prep,
             "n=0; while [ ! -e '%s' ] && [ $n -lt 3000 ]; do sleep 0.02; n=$((n+1)); done; "
             "echo prepare >> '%s'",
             go, log);
    snprintf(render, sizeof render,
             "n=0; while [ ! -e '%s' ] && [ $n -lt 3000 ]; do sleep 0.02; n=$((n+1)); done; "
             "echo render >> '%s'",
             go2, log);
    snprintf(merge, sizeof merge, "echo merge >> '%s'", log);
    int64_t a = SUBMIT_Q(c, "--shell", prep);
    int64_t b = SUBMIT_Q(c, "--after", s_id(a, b1, sizeof b1), "--array", "0-3", "--shell",
                         render);
    int64_t m3 = SUBMIT_Q(c, "--after", s_id(b, b2, sizeof b2), "--shell", merge);
    ck_assert(H_POLL(h_status_count(c, a, "running") == 1, 20000));
    ck_assert(s_state_is(c, b, "waiting"));
    ck_assert(s_state_is(c, m3, "waiting"));

    /* The dependencies are on disk: they survive kill -9. */
    m = s_restart(c, m, w, port, 2);
    ck_assert(s_state_is(c, b, "waiting"));
    ck_assert_int_eq(h_status_count(c, b, "queued"), 4);
    h_write_file(go, "");
    /* Stage 2 starts only after stage 1; it holds on go2. */
    ck_assert(H_POLL(h_status_count(c, b, "running") == 4, 30000));
    ck_assert_int_eq(h_status_count(c, a, "done"), 1);
    ck_assert(s_state_is(c, m3, "waiting"));

    /* Again between the stages: stage 2 running, stage 3 waiting. */
    m = s_restart(c, m, w, port, 3);
    ck_assert(s_state_is(c, m3, "waiting"));
    h_write_file(go2, "");
    ck_assert_int_eq(h_wait(c, m3, 60000), 0);
    ck_assert_int_eq(h_wait(c, b, 10000), 0);

    char *text = h_read_file(log);
    ck_assert_msg(text && strcmp(text, "prepare\nrender\nrender\nrender\nrender\nmerge\n") == 0,
                  "stages ran as:\n%s", text ? text : "(nothing)");
    free(text);
    free(log);
    free(go);
    free(go2);
    h_cluster_destroy(&c);
}
END_TEST

/* A job that fails: what waits for it with --after never runs and ends
   dep_failed, and so does what waits for that; --after-any runs. */
START_TIMED_TEST(a_failed_parent_ends_its_dependants_dep_failed_and_theirs_too, 90)
{
    h_cluster_t *c = h_cluster_new("depfail");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 2, NULL);
    char *ran = h_path(c, "ran");
    char touch[300], b1[32], b2[32];
    snprintf(touch, sizeof touch, "echo ran >> '%s'", ran);
    int64_t f = SUBMIT_Q(c, "--", "false");
    int64_t g = SUBMIT_Q(c, "--after", s_id(f, b1, sizeof b1), "--array", "0-2", "--shell", touch);
    int64_t h = SUBMIT_Q(c, "--after", s_id(g, b2, sizeof b2), "--shell", touch);
    int64_t any = SUBMIT_Q(c, "--after-any", s_id(f, b1, sizeof b1), "--", "true");

    ck_assert_int_eq(h_wait(c, h, 30000), 1);
    ck_assert_int_eq(h_wait(c, g, 30000), 1);
    ck_assert_int_eq(h_wait(c, any, 30000), 0);
    cJSON *st = h_status(c, g);
    ck_assert_str_eq(h_jstr(st, "state"), "dep_failed");
    ck_assert_int_eq(h_jint(st, "dep_failed", -1), 3);
    ck_assert_int_eq(h_jint(st, "failed", -1), 0);
    cJSON_Delete(st);
    ck_assert_int_eq(h_status_count(c, h, "dep_failed"), 1);
    ck_assert_msg(access(ran, F_OK) != 0, "a task that depended on a failed job ran");

    /* Results say which task and why. */
    cJSON *res = h_results(c, g, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(res), 3);
    const cJSON *t;
    char want[64];
    snprintf(want, sizeof want, "job %lld", (long long) f);
    cJSON_ArrayForEach(t, res)
    {
        ck_assert_str_eq(h_jstr(t, "status"), "dep_failed");
        ck_assert_msg(h_jstr(t, "error") && strstr(h_jstr(t, "error"), want),
                      "error '%s' does not name %s", h_jstr(t, "error"), want);
    }
    cJSON_Delete(res);

    /* --failed lists them: they did not succeed. */
    res = h_results(c, g, "--failed");
    ck_assert_int_eq(cJSON_GetArraySize(res), 3);
    cJSON_Delete(res);

    /* The plain text says it too. */
    h_run_t *r = h_cli(c, "status", s_id(h, b2, sizeof b2), NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "1 dep_failed"), "status: %s", h_run_desc(r));
    h_run_free(&r);
    free(ran);
    h_cluster_destroy(&c);
}
END_TEST

/* --after-each: task i of the child runs once task i of the parent is
   done, not before and not waiting for the others; a parent task that
   fails leaves its child task dep_failed. */
START_TIMED_TEST(after_each_runs_task_i_once_task_i_of_its_parent_is_done, 90)
{
    h_cluster_t *c = h_cluster_new("aftereach");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 8, NULL);
    const char *d = h_dir(c);
    char parent[512], child[512], b1[32];
    /* Parent task i waits for go-i, then marks p-i; task 3 fails. */
    snprintf(parent, sizeof parent,
             "n=0; while [ ! -e '%s/go-{}' ] && [ $n -lt 3000 ]; do sleep 0.02; n=$((n+1)); "
             "done; [ {} = 3 ] && exit 1; touch '%s/p-{}'",
             d, d);
    /* Child task i fails unless p-i exists, then marks c-i. */
    snprintf(child, sizeof child, "[ -e '%s/p-{}' ] && touch '%s/c-{}'", d, d);
    int64_t p = SUBMIT_Q(c, "--array", "0-3", "--shell", parent);
    int64_t k = SUBMIT_Q(c, "--after-each", s_id(p, b1, sizeof b1), "--array", "0-3", "--shell",
                         child);
    ck_assert(H_POLL(h_status_count(c, p, "running") == 4, 20000));
    ck_assert(s_state_is(c, k, "waiting"));

    char *go2 = h_path(c, "go-2"), *c2 = h_path(c, "c-2");
    h_write_file(go2, "");
    ck_assert_msg(H_POLL(access(c2, F_OK) == 0, 20000), "child task 2 did not run");
    /* Only task 2 of the child: the others still wait for theirs. */
    ck_assert(H_POLL(h_status_count(c, k, "done") == 1, 20000));
    ck_assert_int_eq(h_status_count(c, k, "queued"), 3);
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "go-%d", i);
        char *path = h_path(c, name);
        h_write_file(path, "");
        free(path);
    }
    ck_assert_int_eq(h_wait(c, k, 30000), 1);
    ck_assert_int_eq(h_status_count(c, k, "done"), 3);
    ck_assert_int_eq(h_status_count(c, k, "dep_failed"), 1);
    ck_assert_int_eq(h_status_count(c, k, "failed"), 0);
    cJSON *res = h_results(c, k, NULL);
    cJSON **by = h_results_by_index(res, 4);
    ck_assert_str_eq(h_jstr(by[3], "status"), "dep_failed");
    ck_assert_msg(strstr(h_jstr(by[3], "error"), "task 3 of job"), "error: %s",
                  h_jstr(by[3], "error"));
    free(by);
    cJSON_Delete(res);
    free(go2);
    free(c2);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_dependency_on_a_job_that_does_not_exist_is_refused_at_submit, 60)
{
    h_cluster_t *c = h_cluster_new("depnone");
    h_master_start(c, 0, NULL);
    h_run_t *r = h_cli(c, "submit", "--after", "999", "--", "true", NULL);
    ck_assert_int_eq(r->rc, 4);
    ck_assert_msg(strstr(r->err, "no job 999"), "stderr: %s", r->err);
    h_run_free(&r);
    r = h_cli(c, "submit", "--after", "1,x", "--", "true", NULL);
    ck_assert_int_eq(r->rc, 2);
    h_run_free(&r);
    /* Nothing was made. */
    r = h_cli(c, "jobs", "--json", NULL);
    ck_assert_msg(r->rc == 0 && r->out[0] == '\0', "jobs: %s", h_run_desc(r));
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

/* Cancelling a parent: its dependants end dep_failed (and theirs);
   with --with-dependants they are cancelled instead. */
START_TIMED_TEST(cancel_of_a_parent_leaves_dependants_dep_failed_unless_with_dependants, 90)
{
    h_cluster_t *c = h_cluster_new("depcancel");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 2, NULL);
    char b1[32], b2[32];
    const char *hold = "sleep 30";
    for (int with = 0; with < 2; with++) {
        int64_t p = SUBMIT_Q(c, "--shell", hold);
        int64_t d = SUBMIT_Q(c, "--after", s_id(p, b1, sizeof b1), "--array", "0-1", "--", "true");
        int64_t e = SUBMIT_Q(c, "--after", s_id(d, b2, sizeof b2), "--", "true");
        ck_assert(H_POLL(h_status_count(c, p, "running") == 1, 20000));
        h_run_t *r = with ? h_cli(c, "cancel", s_id(p, b1, sizeof b1), "--with-dependants", NULL)
                          : h_cli(c, "cancel", s_id(p, b1, sizeof b1), NULL);
        ck_assert_msg(r->rc == 0, "cancel: %s", h_run_desc(r));
        h_run_free(&r);
        ck_assert_int_eq(h_wait(c, e, 30000), 1);
        ck_assert_int_eq(h_wait(c, d, 30000), 1);
        const char *want = with ? "cancelled" : "dep_failed";
        ck_assert_msg(s_state_is(c, d, want), "job d: %s, want %s", s_state(c, d), want);
        ck_assert_msg(s_state_is(c, e, want), "job e: %s, want %s", s_state(c, e), want);
        ck_assert_int_eq(h_status_count(c, d, "cancelled"), with ? 2 : 0);
        ck_assert_int_eq(h_status_count(c, d, "dep_failed"), with ? 0 : 2);
        ck_assert_int_eq(h_wait(c, p, 30000), 1);
        ck_assert_int_eq(h_status_count(c, p, "cancelled"), 1);
    }
    h_cluster_destroy(&c);
}
END_TEST

/* ztask retry of a failed parent revives its dep_failed dependants, and
   theirs: they wait for its new end and run once it is done. */
START_TIMED_TEST(retry_of_a_failed_parent_revives_its_dep_failed_dependants, 90)
{
    h_cluster_t *c = h_cluster_new("deprevive");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 2, NULL);
    char *flag = h_path(c, "flag"), *ran = h_path(c, "ran");
    char parent[300], touch[300], b1[32], b2[32];
    snprintf(parent, sizeof parent, "[ -e '%s' ]", flag);
    snprintf(touch, sizeof touch, "echo ran >> '%s'", ran);
    int64_t f = SUBMIT_Q(c, "--shell", parent);
    int64_t g = SUBMIT_Q(c, "--after", s_id(f, b1, sizeof b1), "--array", "0-1", "--shell", touch);
    int64_t h = SUBMIT_Q(c, "--after", s_id(g, b2, sizeof b2), "--shell", touch);
    ck_assert_int_eq(h_wait(c, h, 30000), 1);
    ck_assert_int_eq(h_status_count(c, g, "dep_failed"), 2);

    h_write_file(flag, "");
    h_run_t *r = h_cli(c, "retry", s_id(f, b1, sizeof b1), NULL);
    ck_assert_msg(r->rc == 0, "retry: %s", h_run_desc(r));
    h_run_free(&r);
    ck_assert_int_eq(h_wait(c, h, 30000), 0);
    ck_assert_int_eq(h_wait(c, g, 30000), 0);
    ck_assert_int_eq(h_status_count(c, g, "done"), 2);
    ck_assert_int_eq(h_status_count(c, g, "dep_failed"), 0);
    char *text = h_read_file(ran);
    ck_assert_msg(text && strcmp(text, "ran\nran\nran\n") == 0, "ran: %s", text ? text : "");
    free(text);
    free(flag);
    free(ran);
    h_cluster_destroy(&c);
}
END_TEST

/* A chain of jobs, each --after the one before, as long as a client likes:
   when its head fails, the verdicts run down the chain one job after the
   other, not as a recursion as deep as the chain (it ran the master's
   stack out: SIGSEGV). The master gets a 1 MiB stack so that a chain of
   4000 jobs shows it, cheaply. */
START_TIMED_TEST(a_long_chain_of_dependants_fails_without_exhausting_the_stack, 180)
{
    h_cluster_t *c = h_cluster_new("dep_chain");
    struct rlimit old, small = {.rlim_cur = 1 << 20, .rlim_max = RLIM_INFINITY};
    ck_assert_int_eq(getrlimit(RLIMIT_STACK, &old), 0);
    small.rlim_max = old.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_STACK, &small), 0);
    h_proc_t *m = h_master_start(c, 0, "--sync", "off", NULL);
    ck_assert_int_eq(setrlimit(RLIMIT_STACK, &old), 0);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int ms = h_ms(20000), zero = 0;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof ms);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    char ep[64], msg[256], rep[512];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", h_api_port(c));
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    long long prev = 0;
    for (int i = 0; i <= 4000; i++) {
        int len = i == 0 ? snprintf(msg, sizeof msg,
                                    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"argv\":[\"true\"]}]}")
                         : snprintf(msg, sizeof msg,
                                    "{\"v\":1,\"type\":\"submit\",\"after\":[%lld],"
                                    "\"tasks\":[{\"argv\":[\"true\"]}]}",
                                    prev);
        ck_assert_int_eq(zmq_send(s, msg, (size_t) len, 0), len);
        int n = zmq_recv(s, rep, sizeof rep - 1, 0);
        ck_assert_msg(n > 0, "no reply to submit %d", i);
        rep[n < (int) sizeof rep - 1 ? n : (int) sizeof rep - 1] = '\0';
        const char *job = strstr(rep, "\"job\":");
        ck_assert_msg(job, "submit %d: %s", i, rep);
        prev = atoll(job + 6);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    h_run_t *r = h_cli(c, "cancel", "1", NULL);
    ck_assert_msg(r->rc == 0, "cancel: %s", h_run_desc(r));
    h_run_free(&r);
    char last[32];
    snprintf(last, sizeof last, "%lld", prev);
    r = h_cli(c, "wait", last, NULL);
    ck_assert_msg(r->rc == 1 && h_proc_running(m), "wait %s: %s (master running: %d)", last,
                  h_run_desc(r), h_proc_running(m));
    h_run_free(&r);
    ck_assert_int_eq(h_status_count(c, prev, "dep_failed"), 1);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_deps", h_slowdown()));
}
