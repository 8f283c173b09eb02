/*  e2e bigpipe: big tasks on their way to a worker (issue 13 item 5),
    through the real programs. A "tasks" message to a worker is bounded
    by bytes as well as by count, so four tasks of 16 MB stdin each
    (under the CLI's cap, 64 MB together, twice the worker's message
    limit) reach one worker in several messages and run once each, and a
    small job behind them runs too; a task that no worker could receive
    is refused at submit, by the master to a raw client and by the CLI
    before it sends. */
#include "harness.h"

#include "../../common/zmqx.h"
#include "../../proto/proto.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* libzmq is not built with TSan: its internal threads are suppressed, as
   in the unit suites that open sockets. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:libzmq.so\n";
}

#define BIG_STDIN (16 * 1024 * 1024 - 16)

START_TIMED_TEST(four_16_mb_tasks_and_a_small_job_behind_them_all_run, 240)
{
    h_cluster_t *c = h_cluster_new("four_big_tasks");
    char liveness[16], lease[16];
    h_slow_bytes_allowance(liveness, lease, sizeof liveness);
    h_master_start(c, 0, "--liveness", liveness, "--lease", lease, NULL);
    char *input = h_path(c, "big.txt");
    char *text = malloc(BIG_STDIN + 1);
    ck_assert_ptr_nonnull(text);
    memset(text, 'a', BIG_STDIN);
    text[BIG_STDIN] = '\0';
    h_write_file(input, text);
    free(text);
    /* Queued before any worker exists, so that the first dispatch to the
       worker has all four at hand (its 4 threads give it credit for 4). */
    int64_t big[4];
    for (int i = 0; i < 4; i++)
        big[i] = h_submit(c, NULL, "--stdin", input, "--", "wc", "-c", NULL);
    int64_t small = h_submit(c, NULL, "--", "echo", "small", NULL);
    h_proc_t *w = h_worker_start(c, "w1", 4, NULL);

    ck_assert_msg(h_wait(c, small, 120000) == 0, "the small job behind the big ones did not run");
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(h_wait(c, big[i], 120000), 0);
        cJSON *all = h_results(c, big[i], NULL);
        const cJSON *r = cJSON_GetArrayItem(all, 0);
        char want[32];
        snprintf(want, sizeof want, "%d\n", BIG_STDIN);
        ck_assert_str_eq(h_jstr(r, "stdout"), want);
        ck_assert_msg(h_jint(r, "attempts", -1) == 1, "task of job %lld ran %lld times",
                      (long long) big[i], (long long) h_jint(r, "attempts", -1));
        cJSON_Delete(all);
    }
    /* The worker kept its one registration: no link lost on the way. */
    ck_assert_int_eq(h_proc_count_log(w, "event=registered"), 1);
    free(input);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_task_no_worker_could_receive_is_refused_at_submit, 120)
{
    h_cluster_t *c = h_cluster_new("too_big_for_a_worker");
    h_master_start(c, 0, NULL);

    /* A raw client: one spec just under the API's message limit, over
       what a worker's pipe takes once the master wraps it. */
    const char *head = "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"argv\":[\"true\"],\"stdin\":\"";
    const char *tail = "\"}]}";
    size_t len = PROTO_MAX_API_MSG - 16;
    char *req = malloc(len + 1);
    ck_assert_ptr_nonnull(req);
    size_t hl = strlen(head), tl = strlen(tail);
    memcpy(req, head, hl);
    memset(req + hl, 'b', len - hl - tl);
    memcpy(req + len - tl, tail, tl);
    req[len] = '\0';
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, timeout = h_ms(30000);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", h_api_port(c));
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    ck_assert_int_eq(zmq_send(s, req, len, 0), (int) len);
    free(req);
    size_t rlen = 0;
    char *rep = zmqx_recv(s, &rlen, 0);
    ck_assert_msg(rep != NULL, "no reply to a too big task: %s", zmq_strerror(zmq_errno()));
    cJSON *o = cJSON_ParseWithLength(rep, rlen);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    ck_assert_msg(e && h_jstr(e, "code") && strcmp(h_jstr(e, "code"), PROTO_E_TOO_BIG) == 0 &&
                      strstr(h_jstr(e, "message"), "the most a worker accepts"),
                  "reply: %.300s", rep);
    cJSON_Delete(o);
    free(rep);
    zmq_close(s);
    zmq_ctx_term(ctx);

    /* Nothing was queued: a job submitted now is job 1, and runs. */
    h_worker_start(c, "w1", 1, NULL);
    int64_t job = h_submit(c, NULL, "--", "true", NULL);
    ck_assert_int_eq(job, 1);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);

    /* The CLI says so before it sends: 16 MB of newlines are 32 MB once
       escaped. */
    char *input = h_path(c, "newlines.txt");
    char *text = malloc(BIG_STDIN + 1);
    ck_assert_ptr_nonnull(text);
    memset(text, '\n', BIG_STDIN);
    text[BIG_STDIN] = '\0';
    h_write_file(input, text);
    free(text);
    h_run_t *r = h_cli(c, "submit", "--stdin", input, "--", "cat", NULL);
    ck_assert_msg(r->rc == 2 && strstr(r->err, "bytes once encoded") &&
                      strstr(r->err, "worker"),
                  "the CLI with a task too big: %s", h_run_desc(r));
    h_run_free(&r);
    free(input);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_bigpipe", h_slowdown()));
}
