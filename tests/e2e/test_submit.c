/*  e2e submit: a submit whose reply is lost after its commit (the master
    killed between the commit and the answer) is sent again by the CLI and
    makes one job, not two; the same for one batch of a big submit. The
    master's test-only hook ZTASK_TEST_KILL_BEFORE_ACK=N (master/api.c)
    makes it SIGKILL itself as it is about to answer its Nth committed
    submit. */
#include "harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A master that kills itself before answering its nth committed submit. */
static h_proc_t *s_master_dying_at_ack(h_cluster_t *c, int port, const char *nth)
{
    setenv("ZTASK_TEST_KILL_BEFORE_ACK", nth, 1);
    h_proc_t *m = h_master_start(c, port, "--sync", "full", NULL);
    unsetenv("ZTASK_TEST_KILL_BEFORE_ACK");
    return m;
}

/* Waits for the dying master to go, checks why, and starts its successor
   on the same port (a supervisor's restart). */
static h_proc_t *s_restart_after_kill(h_cluster_t *c, h_proc_t *m, int port)
{
    ck_assert_msg(h_proc_wait_exit(m, 30000) != -1, "the master did not kill itself (log %s)",
                  h_proc_log(m));
    /* Waited for, not counted: the log's reader may not have read the
       last line of a process that has just died. */
    ck_assert_msg(h_proc_wait_log(m, "event=test_kill_before_ack", 1, 5000),
                  "the master died of something else (log %s)", h_proc_log(m));
    return h_master_start(c, port, "--sync", "full", NULL);
}

/* The CLI's stdout and stderr (its log), once it has exited with 0. */
static char *s_cli_output(h_proc_t *cli)
{
    int code = h_proc_wait_exit(cli, 60000);
    ck_assert_msg(h_proc_wait_log(cli, "\"tasks\":", 1, 5000), "no submit line (log %s)",
                  h_proc_log(cli));
    char *text = h_read_file(h_proc_log(cli));
    ck_assert_msg(code == 0, "ztask submit exited %d: %s", code, text);
    return text;
}

/* `ztask jobs --json`: exactly one job, with total tasks, returned. */
static int64_t s_the_one_job(h_cluster_t *c, int64_t total)
{
    h_run_t *r = h_cli(c, "jobs", "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    cJSON *jobs = h_json_lines(r->out);
    ck_assert_msg(cJSON_GetArraySize(jobs) == 1, "want one job, got: %s", r->out);
    const cJSON *job = cJSON_GetArrayItem(jobs, 0);
    ck_assert_int_eq(h_jint(job, "total", -1), total);
    ck_assert(h_jtrue(job, "closed"));
    int64_t id = h_jint(job, "job", -1);
    cJSON_Delete(jobs);
    h_run_free(&r);
    return id;
}

/* `ztask submit --json --fn FN --array RANGE` (request timeout
   timeout_s) against a master that dies before answering its nth
   committed submit and is restarted meanwhile: the CLI's output (caller
   frees), once it has said it sent the batch again. *m2: the new master. */
static char *s_submit_losing_reply(h_cluster_t *c, const char *nth, const char *timeout_s,
                                   const char *fn, const char *range, h_proc_t **m2)
{
    int port = h_free_base_port();
    h_proc_t *m = s_master_dying_at_ack(c, port, nth);
    h_proc_t *cli = h_cli_start(c, "--request-timeout", timeout_s, "submit", "--json", "--fn", fn,
                                "--array", range, NULL);
    *m2 = s_restart_after_kill(c, m, port);
    char *out = s_cli_output(cli);
    ck_assert_msg(strstr(out, "sending it again"), "the CLI did not say it resent: %s", out);
    return out;
}

START_TIMED_TEST(a_submit_whose_reply_was_lost_is_sent_again_and_makes_one_job, 120)
{
    h_cluster_t *c = h_cluster_new("lostreply");
    h_proc_t *m2;
    char *out = s_submit_losing_reply(c, "1", "2", "square", "0-99", &m2);
    ck_assert_msg(strstr(out, "{\"job\":1,\"tasks\":100}"), "unexpected answer: %s", out);
    ck_assert_msg(h_proc_count_log(m2, "event=submit_repeated") >= 1,
                  "the restarted master saw no copy (log %s)", h_proc_log(m2));
    ck_assert_int_eq(s_the_one_job(c, 100), 1);
    /* And its tasks run, each once. */
    h_worker_start(c, "a", 2, NULL);
    ck_assert_int_eq(h_wait(c, 1, 60000), 0);
    cJSON *res = h_results(c, 1, NULL);
    free(h_results_by_index(res, 100));
    cJSON_Delete(res);
    free(out);
    h_cluster_destroy(&c);
}
END_TEST

/* 12,000 tasks go in three batches of up to 5,000; the reply to the
   second is lost. Each batch has its own key: the second is not added
   twice, and the third still lands in the same job. */
START_TIMED_TEST(a_lost_reply_to_one_batch_of_a_big_submit_adds_that_batch_once, 120)
{
    h_cluster_t *c = h_cluster_new("lostbatch");
    h_proc_t *m2;
    char *out = s_submit_losing_reply(c, "2", "3", "noop", "0-11999", &m2);
    ck_assert_msg(strstr(out, "{\"job\":1,\"tasks\":12000}"), "unexpected answer: %s", out);
    ck_assert_int_eq(h_proc_count_log(m2, "event=submit_repeated"), 1);
    ck_assert_int_eq(s_the_one_job(c, 12000), 1);
    free(out);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_submit", h_slowdown()));
}
