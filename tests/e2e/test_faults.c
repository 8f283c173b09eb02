/*  e2e faults: timeouts kill whole process groups, retries retry, cancel
    stops running and queued work, and no task is lost or recorded twice
    when a worker or the master is killed -9 or a worker drains. */
#include "harness.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Quick failure detection, so the kill tests run in seconds. */
#define FAST_HEARTBEAT "--heartbeat-ms", "200", "--liveness", "3", "--recovery-grace", "1"

static pid_t s_read_pid(const char *path)
{
    char *text = h_read_file(path);
    if (!text)
        return -1;
    pid_t pid = (pid_t)atoi(text);
    free(text);
    return pid;
}

/* Checks n records, indexes 0..n-1 once each, all done. */
static void s_expect_all_done(h_cluster_t *c, int64_t job, int n)
{
    cJSON *res = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(res, n);
    for (int i = 0; i < n; i++) {
        const char *st = h_jstr(by[i], "status");
        ck_assert_msg(st && !strcmp(st, "done"), "task index %d: status %s (error %s)", i,
                      st ? st : "(none)", h_jstr(by[i], "error"));
    }
    free(by);
    cJSON_Delete(res);
    cJSON *st = h_status(c, job);
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(h_jint(st, "total", -1), n);
    ck_assert_int_eq(h_jint(st, "done", -1), n);
    ck_assert_int_eq(h_jint(st, "queued", -1), 0);
    ck_assert_int_eq(h_jint(st, "running", -1), 0);
    cJSON_Delete(st);
}

START_TIMED_TEST(timeout_kills_the_task_and_its_whole_process_group, 60)
{
    h_cluster_t *c = h_cluster_new("timeout");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 1, NULL);
    char *pidf = h_path(c, "pid"), *pgidf = h_path(c, "pgid"), *gcf = h_path(c, "grandchild");
    char *script = NULL;
    ck_assert_int_gt(asprintf(&script,
                              "echo $$ > '%s'; cut -d' ' -f5 /proc/$$/stat > '%s'; "
                              "sleep 60 & echo $! > '%s'; wait",
                              pidf, pgidf, gcf),
                     0);
    int64_t job = h_submit(c, NULL, "--timeout", "1", "--", "sh", "-c", script, NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);

    cJSON *res = h_results(c, job, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(res), 1);
    const cJSON *r = cJSON_GetArrayItem(res, 0);
    ck_assert_str_eq(h_jstr(r, "status"), "failed");
    ck_assert_msg(h_jtrue(r, "timed_out"), "timed_out is not true");
    double took = h_jnum(r, "finished", 0) - h_jnum(r, "started", 0);
    ck_assert_msg(took >= 0.9 && took < 10.0 * h_slowdown(), "ran %.2fs with --timeout 1", took);
    cJSON_Delete(res);

    pid_t pid = s_read_pid(pidf), pgid = s_read_pid(pgidf), gc = s_read_pid(gcf);
    ck_assert_msg(pid > 0 && pgid > 0 && gc > 0, "the task did not write its ids");
    ck_assert_msg(pgid == pid, "task not in its own process group (pid %d pgid %d)", pid, pgid);
    ck_assert_msg(H_POLL(h_pgid_alive(pgid) == 0, 5000), "process group %d still alive", pgid);
    ck_assert_msg(h_pid_gone(gc), "grandchild %d still alive", gc);
    free(script);
    free(pidf);
    free(pgidf);
    free(gcf);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_retried_task_succeeds_on_its_second_attempt, 90)
{
    h_cluster_t *c = h_cluster_new("retry");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 2, NULL);
    char *mark = h_path(c, "marker");
    char *script = NULL;
    ck_assert_int_gt(asprintf(&script,
                              "if [ -e '%s' ]; then echo second; "
                              "else touch '%s'; echo first; exit 7; fi",
                              mark, mark),
                     0);
    int64_t job = h_submit(c, NULL, "--retries", "2", "--", "sh", "-c", script, NULL);
    ck_assert_int_eq(h_wait(c, job, 60000), 0);
    cJSON *res = h_results(c, job, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(res), 1);
    const cJSON *r = cJSON_GetArrayItem(res, 0);
    ck_assert_str_eq(h_jstr(r, "status"), "done");
    ck_assert_int_eq(h_jint(r, "attempts", -1), 2);
    ck_assert_str_eq(h_jstr(r, "stdout"), "second\n");
    ck_assert_int_eq(h_jint(r, "exit_code", -1), 0);
    cJSON_Delete(res);
    free(script);
    free(mark);
    h_cluster_destroy(&c);
}
END_TEST

static int s_count_pid_files(h_cluster_t *c, int n)
{
    int count = 0;
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "pid-%d", i);
        char *p = h_path(c, name);
        if (access(p, F_OK) == 0)
            count++;
        free(p);
    }
    return count;
}

START_TIMED_TEST(cancel_stops_running_tasks_and_queued_ones_never_start, 90)
{
    h_cluster_t *c = h_cluster_new("cancel");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 2, NULL);
    char *script = NULL;
    ck_assert_int_gt(asprintf(&script, "echo $$ > '%s/pid-{}'; exec sleep 60", h_dir(c)), 0);
    int64_t job = h_submit(c, NULL, "--array", "0-9", "--", "sh", "-c", script, NULL);
    char jb[32];
    snprintf(jb, sizeof jb, "%lld", (long long)job);

    ck_assert_msg(H_POLL(s_count_pid_files(c, 10) == 2 && h_status_count(c, job, "running") == 2,
                         20000),
                  "two tasks never ran (running=%lld)", (long long)h_status_count(c, job, "running"));
    pid_t pids[10];
    int npids = 0;
    for (int i = 0; i < 10; i++) {
        char name[32];
        snprintf(name, sizeof name, "pid-%d", i);
        char *p = h_path(c, name);
        pid_t pid = s_read_pid(p);
        if (pid > 0)
            pids[npids++] = pid;
        free(p);
    }
    ck_assert_int_eq(npids, 2);

    /* One queued task by JOB.INDEX first. */
    char one[48];
    snprintf(one, sizeof one, "%s.9", jb);
    h_run_t *r = h_cli(c, "cancel", one, NULL);
    ck_assert_msg(r->rc == 0, "cancel %s: %s", one, h_run_desc(r));
    h_run_free(&r);
    ck_assert(H_POLL(h_status_count(c, job, "cancelled") == 1, 5000));
    ck_assert_int_eq(h_status_count(c, job, "running"), 2);

    r = h_cli(c, "cancel", jb, NULL);
    ck_assert_msg(r->rc == 0, "cancel %s: %s", jb, h_run_desc(r));
    h_run_free(&r);
    for (int i = 0; i < npids; i++)
        ck_assert_msg(H_POLL(h_pid_gone(pids[i]), 3000), "task pid %d outlived the cancel",
                      pids[i]);
    ck_assert_msg(H_POLL(h_status_count(c, job, "cancelled") == 10, 10000),
                  "not every task cancelled: %lld", (long long)h_status_count(c, job, "cancelled"));

    /* The worker's pipe is FIFO: once a later job has run there, any
       cancelled task it still held would have started already. */
    int64_t later = h_submit(c, NULL, "--fn", "noop", "--array", "0-3", NULL);
    ck_assert_int_eq(h_wait(c, later, 30000), 0);
    ck_assert_int_eq(s_count_pid_files(c, 10), 2);

    cJSON *res = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(res, 10);
    for (int i = 0; i < 10; i++)
        ck_assert_msg(!strcmp(h_jstr(by[i], "status") ? h_jstr(by[i], "status") : "", "cancelled"),
                      "index %d: %s", i, h_jstr(by[i], "status"));
    free(by);
    cJSON_Delete(res);
    cJSON *st = h_status(c, job);
    ck_assert_int_eq(h_jint(st, "queued", -1), 0);
    ck_assert_int_eq(h_jint(st, "running", -1), 0);
    ck_assert_int_eq(h_jint(st, "done", -1), 0);
    cJSON_Delete(st);
    free(script);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(kill_9_of_a_worker_loses_no_task, 120)
{
    h_cluster_t *c = h_cluster_new("killworker");
    h_master_start(c, 0, FAST_HEARTBEAT, NULL);
    h_proc_t *wa = h_worker_start(c, "a", 2, NULL);
    h_worker_start(c, "b", 2, NULL);
    char *ida = strdup(h_worker_id(wa));
    int64_t job = h_submit(c, NULL, "--fn", "sleep", "--args", "{\"seconds\":0.05}", "--array",
                           "0-199", NULL);
    ck_assert(H_POLL(h_status_count(c, job, "done") >= 30, 30000));
    ck_assert_int_gt(h_status_count(c, job, "running"), 0);
    h_proc_kill9(wa);

    ck_assert_int_eq(h_wait(c, job, 60000), 0);
    s_expect_all_done(c, job, 200);

    /* The master noticed. */
    h_run_t *r = h_cli(c, "workers", "--json", NULL);
    ck_assert_msg(r->rc == 0, "workers: %s", h_run_desc(r));
    cJSON *ws = h_json_lines(r->out);
    const cJSON *w;
    cJSON_ArrayForEach(w, ws) {
        if (h_jstr(w, "worker") && !strcmp(h_jstr(w, "worker"), ida))
            ck_assert_msg(!h_jtrue(w, "alive"), "killed worker still listed alive");
    }
    cJSON_Delete(ws);
    h_run_free(&r);
    free(ida);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(kill_9_of_the_master_and_restart_loses_no_task, 120)
{
    h_cluster_t *c = h_cluster_new("killmaster");
    /* A fixed base port below the ephemeral range: the restarted master
       binds its reports port (base + 1) again, which a worker's outgoing
       connection could otherwise be holding. */
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, FAST_HEARTBEAT, "--sync", "full", NULL);
    ck_assert_int_eq(h_api_port(c), port);
    h_proc_t *wa = h_worker_start(c, "a", 2, NULL);
    h_proc_t *wb = h_worker_start(c, "b", 2, NULL);
    int64_t job = h_submit(c, NULL, "--fn", "sleep", "--args", "{\"seconds\":0.05}", "--array",
                           "0-199", NULL);
    ck_assert(H_POLL(h_status_count(c, job, "done") >= 30, 30000));
    ck_assert_int_lt(h_status_count(c, job, "done"), 200);
    h_proc_kill9(m);

    h_master_start(c, port, FAST_HEARTBEAT, "--sync", "full", NULL);
    ck_assert_int_eq(h_api_port(c), port);
    /* "event=registered worker=" then "event=reregistered worker=". */
    ck_assert_msg(h_proc_wait_log(wa, "registered worker=", 2, 30000),
                  "worker a did not re-register (log %s)", h_proc_log(wa));
    ck_assert_msg(h_proc_wait_log(wb, "registered worker=", 2, 30000),
                  "worker b did not re-register (log %s)", h_proc_log(wb));

    ck_assert_int_eq(h_wait(c, job, 60000), 0);
    s_expect_all_done(c, job, 200);

    /* And the restarted master takes new work. */
    int64_t job2 = h_submit(c, NULL, "--fn", "square", "--array", "0-99", NULL);
    ck_assert_int_eq(h_wait(c, job2, 30000), 0);
    s_expect_all_done(c, job2, 100);
    h_cluster_destroy(&c);
}
END_TEST

/* Lines of the file at path that start with word, per index ("WORD INDEX
   ..."): counts has room for n; returns the lines counted. */
static int s_count_lines(const char *path, const char *word, int *counts, int n)
{
    for (int i = 0; i < n; i++)
        counts[i] = 0;
    char *text = h_read_file(path);
    if (!text)
        return 0;
    int total = 0;
    size_t wl = strlen(word);
    for (char *p = text; *p;) {
        int index;
        if (strncmp(p, word, wl) == 0 && p[wl] == ' ' && sscanf(p + wl, "%d", &index) == 1
            && index >= 0 && index < n) {
            counts[index]++;
            total++;
        }
        char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : p + strlen(p);
    }
    free(text);
    return total;
}

/* A task that writes "start INDEX ATTEMPT" to log, waits (60 s at most)
   for the file go, and writes "end INDEX ATTEMPT". */
static void s_gated_script(char *buf, size_t len, const char *log, const char *go)
{
    snprintf(buf, len,
             "echo start $ZTASK_TASK_INDEX $ZTASK_ATTEMPT >> '%s'; n=0; "
             "while [ ! -e '%s' ] && [ $n -lt 3000 ]; do sleep 0.02; n=$((n+1)); done; "
             "echo end $ZTASK_TASK_INDEX $ZTASK_ATTEMPT >> '%s'",
             log, go, log);
}

/* The two restart cases' start: a master on a free port pair (it is
   restarted there), a worker "a" with GATED_N threads, and a job of
   GATED_N gated tasks (s_gated_script), all started. Free log and go
   with s_gated_free. */
enum { GATED_N = 8 };
typedef struct {
    int port;
    h_proc_t *m, *w;
    char *log, *go;
    int64_t job;
} gated_t;

static gated_t s_gated_start(h_cluster_t *c)
{
    gated_t g = {.port = h_free_base_port()};
    g.m = h_master_start(c, g.port, FAST_HEARTBEAT, "--sync", "full", NULL);
    g.w = h_worker_start(c, "a", GATED_N, NULL);
    g.log = h_path(c, "runs");
    g.go = h_path(c, "go");
    char script[1024];
    s_gated_script(script, sizeof script, g.log, g.go);
    g.job = h_submit(c, NULL, "--array", "0-7", "--", "sh", "-c", script, NULL);
    int counts[GATED_N];
    ck_assert(H_POLL(s_count_lines(g.log, "start", counts, GATED_N) == GATED_N, 30000));
    return g;
}

static void s_gated_free(gated_t *g)
{
    free(g->log);
    free(g->go);
}

/* A master restarted on g's port after a crash while g's job ran: g's
   worker registers again, the job completes, and each of its tasks ran
   once, at attempt 1. Returns the new master. */
static h_proc_t *s_restart_each_runs_once(h_cluster_t *c, const gated_t *g)
{
    h_proc_t *m2 = h_master_start(c, g->port, FAST_HEARTBEAT, "--sync", "full", NULL);
    ck_assert_msg(h_proc_wait_log(g->w, "registered worker=", 2, 30000),
                  "the worker did not re-register (log %s)", h_proc_log(g->w));
    ck_assert_int_eq(h_wait(c, g->job, 60000), 0);
    s_expect_all_done(c, g->job, GATED_N);
    int counts[GATED_N];
    s_count_lines(g->log, "start", counts, GATED_N);
    for (int i = 0; i < GATED_N; i++)
        ck_assert_msg(counts[i] == 1, "task %d ran %d times (master log %s)", i, counts[i],
                      h_proc_log(m2));
    cJSON *res = h_results(c, g->job, NULL);
    const cJSON *r;
    cJSON_ArrayForEach(r, res)
        ck_assert_int_eq(h_jint(r, "attempts", -1), 1);
    cJSON_Delete(res);
    return m2;
}

/* Issue 14, item 3: the master is killed -9 while its worker runs tasks it
   sent less than a second before (their assignments not yet written);
   the tasks finish while no master runs, and their results reach the
   restarted master (before or after the worker's hello). They count:
   each task ran once, none again under the same attempt. */
START_TIMED_TEST(results_finished_while_the_master_was_down_count_after_its_restart, 120)
{
    h_cluster_t *c = h_cluster_new("restartresults");
    enum { N = GATED_N };
    int counts[N];
    gated_t g = s_gated_start(c);
    h_proc_kill9(g.m);
    /* The tasks end with no master: their results wait in the worker. */
    h_write_file(g.go, "");
    ck_assert(H_POLL(s_count_lines(g.log, "end", counts, N) == N, 30000));

    s_restart_each_runs_once(c, &g);
    s_gated_free(&g);
    h_cluster_destroy(&c);
}
END_TEST

/* Issue 14, item 3: the master is SIGSTOPped for longer than a worker's
   liveness (both workers count it lost meanwhile) while tasks end; on
   SIGCONT it reads what waits in its sockets before it judges anyone: no
   worker is lost, no finished task runs again. */
START_TIMED_TEST(a_master_paused_longer_than_the_heartbeat_timeout_loses_no_result, 120)
{
    h_cluster_t *c = h_cluster_new("masterstop");
    h_proc_t *m = h_master_start(c, 0, FAST_HEARTBEAT, NULL);
    h_proc_t *wa = h_worker_start(c, "a", 3, NULL);
    h_proc_t *wb = h_worker_start(c, "b", 3, NULL);
    char *log = h_path(c, "runs"), *go = h_path(c, "go");
    char script[1024];
    s_gated_script(script, sizeof script, log, go);
    enum { N = 6 };
    int counts[N];
    int64_t job = h_submit(c, NULL, "--array", "0-5", "--", "sh", "-c", script, NULL);
    ck_assert(H_POLL(s_count_lines(log, "start", counts, N) == N, 30000));
    h_proc_signal(m, SIGSTOP);
    /* Both workers count the master lost (0.6 s of silence) and wait in
       vain for an answer to their hello (2 s more), and the tasks end
       while it is stopped. */
    h_write_file(go, "");
    bool lost = h_proc_wait_log(wa, "event=hello_failed", 1, 30000)
                && h_proc_wait_log(wb, "event=hello_failed", 1, 30000);
    bool ended = H_POLL(s_count_lines(log, "end", counts, N) == N, 30000);
    h_proc_signal(m, SIGCONT);
    ck_assert_msg(lost && ended, "while the master was stopped: workers lost it %d, tasks ended %d",
                  lost, ended);

    ck_assert_int_eq(h_wait(c, job, 60000), 0);
    s_expect_all_done(c, job, N);
    s_count_lines(log, "start", counts, N);
    for (int i = 0; i < N; i++)
        ck_assert_msg(counts[i] == 1, "task %d ran %d times (master log %s)", i, counts[i],
                      h_proc_log(m));
    ck_assert_msg(h_proc_count_log(m, "event=worker_lost") == 0,
                  "the master held its own pause against a worker (log %s)", h_proc_log(m));
    free(log);
    free(go);
    h_cluster_destroy(&c);
}
END_TEST

/* Issue 14, item 2: a worker SIGSTOPped in a long job of short tasks is
   lost and its tasks requeued as suspects (maybe what killed it). They
   must not wait for an idle worker, which two busy workers never are
   before the job's end: each runs on a worker's next free thread. Every
   task appends "INDEX ATTEMPT" to one file when it ends, so the file's
   order is the order tasks finished: the reruns must come well before
   the end. */
START_TIMED_TEST(a_lost_workers_tasks_run_while_the_others_are_busy, 120)
{
    h_cluster_t *c = h_cluster_new("busyrequeue");
    /* Two tasks queued on each worker beyond its threads, as auto
       prefetch does for short tasks: a worker is never idle while the
       job lasts. */
    h_master_start(c, 0, FAST_HEARTBEAT, "--prefetch", "2", NULL);
    h_worker_start(c, "a", 2, NULL);
    h_worker_start(c, "b", 2, NULL);
    h_proc_t *victim = h_worker_start(c, "c", 2, NULL);
    char *ends = h_path(c, "ends");
    char script[512];
    snprintf(script, sizeof script, "sleep 0.05; echo $ZTASK_TASK_INDEX $ZTASK_ATTEMPT >> '%s'",
             ends);
    enum { N = 600 };
    int64_t job = h_submit(c, NULL, "--array", "0-599", "--", "sh", "-c", script, NULL);
    ck_assert(H_POLL(h_status_count(c, job, "done") >= 50, 60000));
    h_proc_signal(victim, SIGSTOP);
    ck_assert_msg(h_proc_wait_log(h_master(c), "event=worker_lost worker=c ", 1, 30000),
                  "the stopped worker was not lost (log %s)", h_proc_log(h_master(c)));
    int64_t done_at_loss = h_status_count(c, job, "done");
    ck_assert_int_eq(h_wait(c, job, 90000), 0);
    s_expect_all_done(c, job, N);
    h_proc_signal(victim, SIGCONT);

    /* Lines of attempts >= 2 are the reruns of what c held. */
    char *text = h_read_file(ends);
    ck_assert_ptr_nonnull(text);
    int line = 0, reruns = 0, last_rerun = 0, total = 0;
    for (char *p = text; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
        int index, attempt;
        line++;
        if (sscanf(p, "%d %d", &index, &attempt) != 2)
            continue;
        total = line;
        if (attempt >= 2) {
            reruns++;
            last_rerun = line;
        }
    }
    free(text);
    fprintf(stderr, "busyrequeue: %d done at the loss, %d reruns, the last ended %d of %d\n",
            (int) done_at_loss, reruns, last_rerun, total);
    ck_assert_msg(reruns >= 1, "no task of the stopped worker ran again");
    /* Within a few task durations of the loss, with hundreds to go (the
       old rule ran them after the last of those). */
    ck_assert_msg(last_rerun < total - N / 4,
                  "a rerun of the lost worker's tasks ended as line %d of %d: it waited for the "
                  "job's end",
                  last_rerun, total);
    free(ends);
    h_cluster_destroy(&c);
}
END_TEST

/* Bytes the kernel holds unread for the connected TCP sockets whose local
   port is port (/proc/net/tcp and tcp6: the rx_queue of those
   ESTABLISHED). */
static long s_rx_queued(int port)
{
    long sum = 0;
    const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (int f = 0; f < 2; f++) {
        FILE *in = fopen(files[f], "r");
        if (!in)
            continue;
        char line[512];
        while (fgets(line, sizeof line, in)) {
            char local[64];
            unsigned st, lport;
            unsigned long tx, rx;
            if (sscanf(line, " %*u: %63s %*s %x %lx:%lx", local, &st, &tx, &rx) != 4)
                continue;   /* the header */
            const char *colon = strrchr(local, ':');
            if (colon && sscanf(colon + 1, "%x", &lport) == 1 && (int) lport == port
                && st == 1)
                sum += (long) rx;
        }
        fclose(in);
    }
    return sum;
}

/* Issue 14, item 3: results that reached a master that then died before
   committing them (here: in its socket, never read; a master killed
   between reading results and committing them loses them the same way).
   The worker listed those tasks as ended in its hello to the restarted
   master; it kept their results and sends them again when the reply asks
   (resend), so they count and none of the tasks runs a second time. */
START_TIMED_TEST(results_a_killed_master_never_committed_are_sent_again_not_run_again, 120)
{
    h_cluster_t *c = h_cluster_new("resend");
    enum { N = GATED_N };
    int counts[N];
    gated_t g = s_gated_start(c);
    /* A stopped master reads nothing: what the worker sends it stays in
       its socket, and goes with it when it is killed. The worker finds it
       silent first, so nothing but the results comes after. */
    h_proc_signal(g.m, SIGSTOP);
    ck_assert_msg(h_proc_wait_log(g.w, "event=master_lost", 1, 30000),
                  "the worker did not find the master silent (log %s)", h_proc_log(g.w));
    long rx0 = s_rx_queued(h_report_port(c));
    h_write_file(g.go, "");
    ck_assert(H_POLL(s_count_lines(g.log, "end", counts, N) == N, 30000));
    ck_assert_msg(H_POLL(s_rx_queued(h_report_port(c)) > rx0, 30000),
                  "the results did not reach the stopped master's socket (%ld bytes before)",
                  rx0);
    h_proc_kill9(g.m);

    h_proc_t *m2 = s_restart_each_runs_once(c, &g);
    ck_assert_int_eq(h_proc_count_log(m2, "event=result_not_delivered"), 0);
    s_gated_free(&g);
    h_cluster_destroy(&c);
}
END_TEST

/* A hello can be older than the end of a task it lists running: made
   while the master was stopped, it waited unread in its socket (libzmq
   sends nothing before the handshake) while the task ended and its
   result went to that master's socket, which died with it (killed -9);
   then the restarted master read the hello and claimed the task as
   running. Its result, over 64 KiB, was not kept for a resend: the
   worker answers the reply's resend that it lacks it ("lost") and the
   task runs again, instead of staying running for ever. */
START_TIMED_TEST(a_task_a_stale_hello_claims_whose_big_result_died_with_the_master_runs_again,
                 120)
{
    h_cluster_t *c = h_cluster_new("lostresult");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, FAST_HEARTBEAT, "--sync", "full", NULL);
    /* The worker's hello waits for the restarted master, not 2 s. */
    setenv("ZTASK_TEST_HELLO_TIMEOUT_MS", "60000", 1);
    h_proc_t *w = h_worker_start(c, "a", 1, NULL);
    unsetenv("ZTASK_TEST_HELLO_TIMEOUT_MS");
    char *log = h_path(c, "runs"), *go = h_path(c, "go");
    char gated[1024], script[1200];
    s_gated_script(gated, sizeof gated, log, go);
    /* 100,000 bytes of stdout first: a result over 64 KiB, not kept. */
    snprintf(script, sizeof script, "head -c 100000 /dev/zero | tr '\\0' x; %s", gated);
    int counts[1];
    int64_t job = h_submit(c, NULL, "--array", "0-0", "--", "sh", "-c", script, NULL);
    ck_assert(H_POLL(s_count_lines(log, "start", counts, 1) == 1, 30000));
    /* Its live output read by the master before it stops: after the
       stop, the worker sends it nothing but the result (no heartbeat
       once it has found it silent), so bytes that reach its socket then
       are the result's, taken off the worker's queue, and die with it. */
    char ref[48];
    snprintf(ref, sizeof ref, "%lld.0", (long long) job);
    ck_assert_msg(H_POLL(({
                      h_run_t *lr = h_cli(c, "logs", ref, NULL);
                      bool all = lr->rc == 0 && strlen(lr->out) >= 100000;
                      h_run_free(&lr);
                      all;
                  }),
                         30000),
                  "the task's output did not reach the master");
    h_proc_signal(m, SIGSTOP);
    ck_assert_msg(h_proc_wait_log(w, "event=master_lost", 1, 30000),
                  "the worker did not find the master silent (log %s)", h_proc_log(w));
    long rx0 = s_rx_queued(h_report_port(c));
    h_write_file(go, "");
    ck_assert(H_POLL(s_count_lines(log, "end", counts, 1) == 1, 30000));
    ck_assert_msg(H_POLL(s_rx_queued(h_report_port(c)) > rx0, 30000),
                  "the result did not reach the stopped master's socket (%ld bytes before)",
                  rx0);
    h_proc_kill9(m);

    h_proc_t *m2 = h_master_start(c, port, FAST_HEARTBEAT, "--sync", "full", NULL);
    ck_assert_msg(h_proc_wait_log(w, "registered worker=", 2, 30000),
                  "the worker did not re-register (log %s)", h_proc_log(w));
    ck_assert_msg(h_proc_wait_log(m2, "claimed=1", 1, 10000),
                  "the hello claimed nothing (log %s)", h_proc_log(m2));
    ck_assert_msg(h_wait(c, job, 30000) == 0,
                  "the job did not end: its task stayed running (master log %s, worker log %s)",
                  h_proc_log(m2), h_proc_log(w));
    s_expect_all_done(c, job, 1);
    ck_assert_int_eq(h_proc_count_log(m2, "event=result_lost"), 1);
    s_count_lines(log, "start", counts, 1);
    ck_assert_int_eq(counts[0], 2);
    free(log);
    free(go);
    h_cluster_destroy(&c);
}
END_TEST

/* The master writes a task's assignment only once it has been out for a
   while (ASSIGN_WRITE_MS, 1 s): a task sent just before a crash is found
   queued after the restart. Its worker claims it in its hello all the
   same, and it runs once, not twice. */
START_TIMED_TEST(a_task_sent_just_before_a_master_crash_is_claimed_and_runs_once, 90)
{
    h_cluster_t *c = h_cluster_new("claimfresh");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, FAST_HEARTBEAT, "--sync", "full", NULL);
    h_proc_t *w = h_worker_start(c, "a", 1, NULL);
    char *runs = h_path(c, "runs"), *go = h_path(c, "go");
    char script[1024];
    /* Runs until the test says go: it stays running across the restart.
       Bounded (60 s), so a failed test leaves no process behind. */
    snprintf(script, sizeof script,
             "echo run >> '%s'; n=0; while [ ! -e '%s' ] && [ $n -lt 3000 ]; do sleep 0.02; "
             "n=$((n+1)); done",
             runs, go);
    int64_t t0 = h_now_ms();
    int64_t job = h_submit(c, NULL, "--", "sh", "-c", script, NULL);
    ck_assert(H_POLL(access(runs, F_OK) == 0, 30000));
    h_proc_kill9(m);
    int64_t out_ms = h_now_ms() - t0;

    h_proc_t *m2 = h_master_start(c, port, FAST_HEARTBEAT, "--sync", "full", NULL);
    ck_assert_msg(h_proc_wait_log(w, "registered worker=", 2, 30000),
                  "the worker did not re-register (log %s)", h_proc_log(w));
    ck_assert_msg(h_proc_wait_log(m2, "claimed=1", 1, 10000),
                  "the worker's hello claimed nothing (log %s)", h_proc_log(m2));
    /* Killed well within the second: the assignment was not written. */
    if (out_ms < 500)
        ck_assert_msg(h_proc_count_log(m2, "event=claim_unrecorded") == 1,
                      "no unrecorded claim after %lld ms (log %s)", (long long)out_ms,
                      h_proc_log(m2));
    h_write_file(go, "");
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    s_expect_all_done(c, job, 1);
    char *text = h_read_file(runs);
    ck_assert_str_eq(text, "run\n");
    free(text);
    free(runs);
    free(go);
    h_cluster_destroy(&c);
}
END_TEST

/* The rejoin window (docs/protocol.md 10.3) guards the tasks a restarted
   master finds queued, which may have been sent just before the crash. A
   restart that finds only tasks on workers (their assignments written: a
   clean stop) has none to guard and opens no window; one that finds a
   queued task does, and that task still runs once. */
START_TIMED_TEST(a_restart_opens_the_rejoin_window_only_when_it_finds_queued_tasks, 120)
{
    h_cluster_t *c = h_cluster_new("rejoinwin");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, FAST_HEARTBEAT, "--sync", "full", NULL);
    h_proc_t *w = h_worker_start(c, "a", 1, NULL);
    char *log = h_path(c, "runs"), *go = h_path(c, "go");
    char script[1024];
    s_gated_script(script, sizeof script, log, go);
    int counts[1];
    int64_t first = h_submit(c, NULL, "--array", "0-0", "--", "sh", "-c", script, NULL);
    ck_assert(H_POLL(s_count_lines(log, "start", counts, 1) == 1, 30000));
    /* Stopped cleanly: the running task's assignment is on disk, and
       nothing is queued. */
    h_proc_stop(m, 10000);
    m = h_master_start(c, port, FAST_HEARTBEAT, "--sync", "full", NULL);
    ck_assert_msg(h_proc_wait_log(m, "claimed=1", 1, 30000),
                  "the worker did not claim its task (log %s)", h_proc_log(m));
    ck_assert_msg(h_proc_count_log(m, "event=rejoin_window") == 0,
                  "a window with only running tasks to claim (log %s)", h_proc_log(m));

    /* A second task waits behind the first (one thread): found queued. */
    int64_t second = h_submit(c, NULL, "--", "sh", "-c", "true", NULL);
    h_proc_stop(m, 10000);
    m = h_master_start(c, port, FAST_HEARTBEAT, "--sync", "full", NULL);
    ck_assert_msg(h_proc_wait_log(m, "event=rejoin_window ", 1, 30000),
                  "no window with a queued task (log %s)", h_proc_log(m));
    ck_assert_msg(h_proc_wait_log(w, "registered worker=", 3, 30000),
                  "the worker did not re-register (log %s)", h_proc_log(w));
    h_write_file(go, "");
    ck_assert_int_eq(h_wait(c, first, 30000), 0);
    ck_assert_int_eq(h_wait(c, second, 30000), 0);
    ck_assert_msg(h_proc_count_log(m, "event=rejoin_window_over") == 1,
                  "the window's end was not logged (log %s)", h_proc_log(m));
    s_count_lines(log, "start", counts, 1);
    ck_assert_int_eq(counts[0], 1);
    free(log);
    free(go);
    h_cluster_destroy(&c);
}
END_TEST

/* The rejoin window holds back only the tasks a restart found queued
   (their workers may hold them, sent in the old master's last second):
   a job submitted after the restart could not have been sent by the old
   master, and runs at once. The window is long here (10 heartbeats of a
   second), so the new job ends well inside it; the task found queued
   says it waits for the window, and goes once it is over. */
START_TIMED_TEST(new_work_runs_during_the_rejoin_window_while_tasks_found_queued_wait, 120)
{
    h_cluster_t *c = h_cluster_new("rejoinnew");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, FAST_HEARTBEAT, "--sync", "full", NULL);
    h_proc_t *w = h_worker_start(c, "a", 2, NULL);
    char *log = h_path(c, "runs"), *go = h_path(c, "go");
    char script[1024];
    s_gated_script(script, sizeof script, log, go);
    int counts[3];
    /* Two run (gated) on a's two threads; the third waits in the queue. */
    int64_t first = h_submit(c, NULL, "--array", "0-2", "--", "sh", "-c", script, NULL);
    ck_assert(H_POLL(s_count_lines(log, "start", counts, 3) == 2, 30000));
    h_proc_kill9(m);

    m = h_master_start(c, port, "--heartbeat-ms", "1000", "--liveness", "14", "--recovery-grace",
                       "60", "--sync", "full", NULL);
    ck_assert_msg(h_proc_wait_log(m, "event=rejoin_window ", 1, 30000),
                  "no window with a queued task (log %s)", h_proc_log(m));
    /* b registers during the window, with free threads: the new job's. */
    h_worker_start(c, "b", 2, NULL);
    int64_t second = h_submit(c, NULL, "--array", "0-3", "--", "true", NULL);
    char wait[32];
    h_task_wait(c, first, 2, wait, sizeof wait);
    ck_assert_int_eq(h_wait(c, second, 30000), 0);
    /* Both inside the window: it was not over after them. */
    ck_assert_msg(h_proc_count_log(m, "event=rejoin_window_over") == 0,
                  "the new job waited for the window's end (log %s)", h_proc_log(m));
    ck_assert_msg(strcmp(wait, "rejoin") == 0, "the task found queued waits for '%s', not rejoin",
                  wait);
    ck_assert_int_eq(s_count_lines(log, "start", counts, 3), 2);
    ck_assert_msg(h_proc_wait_log(w, "registered worker=", 2, 30000),
                  "a did not re-register (log %s)", h_proc_log(w));
    ck_assert_msg(h_proc_wait_log(m, "claimed=2", 1, 10000),
                  "a's hello did not claim its two tasks (log %s)", h_proc_log(m));

    /* Once the window is over, it goes. */
    ck_assert_msg(h_proc_wait_log(m, "event=rejoin_window_over tasks=1", 1, 30000),
                  "the window did not end with the one task found queued (log %s)",
                  h_proc_log(m));
    h_write_file(go, "");
    ck_assert_int_eq(h_wait(c, first, 30000), 0);
    s_count_lines(log, "start", counts, 3);
    ck_assert_msg(counts[0] == 1 && counts[1] == 1 && counts[2] == 1, "starts %d %d %d",
                  counts[0], counts[1], counts[2]);
    free(log);
    free(go);
    h_cluster_destroy(&c);
}
END_TEST

/* A restarted master's rejoin window is no idle time: a worker with an
   --idle-timeout shorter than the window (a Slurm allocation's) stays for
   the task the window holds back, instead of leaving with it queued (and
   the Slurm queue then submitting a new allocation for it). */
/* A window of 6 s, of which ~2 s are left when the worker, silent for
   liveness heartbeats (4 s), has registered again. */
#define SLOW_WINDOW "--heartbeat-ms", "2000", "--liveness", "2", "--recovery-grace", "10"
START_TIMED_TEST(a_worker_whose_idle_timeout_is_shorter_than_the_rejoin_window_stays_for_its_tasks,
                 120)
{
    h_cluster_t *c = h_cluster_new("rejoinidle");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, SLOW_WINDOW, NULL);
    h_proc_t *w = h_worker_start(c, "a", 1, "--idle-timeout", "0.5", NULL);
    char *log = h_path(c, "runs"), *go = h_path(c, "go");
    char script[1024];
    s_gated_script(script, sizeof script, log, go);
    /* One thread: task 1 waits queued behind task 0. */
    int64_t job = h_submit(c, NULL, "--array", "0-1", "--", "sh", "-c", script, NULL);
    int counts[2];
    ck_assert(H_POLL(s_count_lines(log, "start", counts, 2) == 1, 30000));
    h_proc_kill9(m);
    m = h_master_start(c, port, SLOW_WINDOW, NULL);
    ck_assert_msg(h_proc_wait_log(m, "event=rejoin_window ", 1, 30000),
                  "no window with a queued task (log %s)", h_proc_log(m));
    ck_assert_msg(h_proc_wait_log(w, "registered worker=", 2, 30000),
                  "the worker did not re-register (log %s)", h_proc_log(w));
    /* Task 0 ends in the window: the worker is idle from here, with task
       1 held back for it, longer than its 0.5 s idle timeout. */
    ck_assert_msg(h_proc_count_log(m, "event=rejoin_window_over") == 0,
                  "the window ended before the test could use it (log %s)", h_proc_log(m));
    h_write_file(go, "");
    ck_assert_msg(h_wait(c, job, 30000) == 0, "the job did not finish (worker log %s)",
                  h_proc_log(w));
    s_count_lines(log, "start", counts, 2);
    ck_assert_int_eq(counts[0], 1);
    ck_assert_int_eq(counts[1], 1);
    free(log);
    free(go);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_worker_drained_by_sigterm_exits_0_and_the_job_completes, 120)
{
    h_cluster_t *c = h_cluster_new("drain");
    h_master_start(c, 0, FAST_HEARTBEAT, NULL);
    h_proc_t *wa = h_worker_start(c, "a", 2, NULL);
    h_proc_t *wb = h_worker_start(c, "b", 2, NULL);
    char *idb = strdup(h_worker_id(wb));
    int64_t job = h_submit(c, NULL, "--fn", "sleep", "--args", "{\"seconds\":0.1}", "--array",
                           "0-99", NULL);
    ck_assert(H_POLL(h_status_count(c, job, "done") >= 10, 30000));
    h_proc_signal(wa, SIGTERM);
    int code = h_proc_wait_exit(wa, 20000);
    ck_assert_msg(code == 0, "drained worker exit %d, want 0 (log %s)", code, h_proc_log(wa));
    double gone = h_wall();
    /* It left with work still to do, so the rest ran on b. */
    int64_t done_then = h_status_count(c, job, "done");
    ck_assert_msg(done_then < 100, "the drain waited for the whole job");

    ck_assert_int_eq(h_wait(c, job, 60000), 0);
    s_expect_all_done(c, job, 100);
    cJSON *res = h_results(c, job, NULL);
    const cJSON *r;
    int late = 0;
    cJSON_ArrayForEach(r, res) {
        if (h_jnum(r, "started", 0) > gone) {
            late++;
            ck_assert_str_eq(h_jstr(r, "worker"), idb);
        }
    }
    ck_assert_int_gt(late, 0);
    cJSON_Delete(res);
    free(idb);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_second_sigterm_kills_the_running_tasks, 60)
{
    h_cluster_t *c = h_cluster_new("sigterm2");
    h_master_start(c, 0, FAST_HEARTBEAT, NULL);
    h_proc_t *wa = h_worker_start(c, "a", 2, NULL);
    char *script = NULL;
    ck_assert_int_gt(asprintf(&script, "echo $$ > '%s/pid-{}'; exec sleep 60", h_dir(c)), 0);
    int64_t job = h_submit(c, NULL, "--array", "0-1", "--", "sh", "-c", script, NULL);
    ck_assert(H_POLL(s_count_pid_files(c, 2) == 2 && h_status_count(c, job, "running") == 2,
                     20000));
    char *p0 = h_path(c, "pid-0"), *p1 = h_path(c, "pid-1");
    pid_t pid0 = s_read_pid(p0), pid1 = s_read_pid(p1);
    ck_assert(pid0 > 0 && pid1 > 0);

    h_proc_signal(wa, SIGTERM);
    /* The first SIGTERM drains and the tasks keep running; a second one
       sent before the worker handled the first would merge with it. */
    ck_assert(h_proc_wait_log(wa, "event=draining", 1, 10000));
    ck_assert_msg(h_proc_running(wa) && !h_pid_gone(pid0) && !h_pid_gone(pid1),
                  "the first SIGTERM killed tasks");
    h_proc_signal(wa, SIGTERM);
    ck_assert(h_proc_wait_log(wa, "event=stopping", 1, 10000));
    int code = h_proc_wait_exit(wa, 15000);
    ck_assert_msg(code != -1, "worker still running after two SIGTERMs");
    ck_assert_msg(H_POLL(h_pid_gone(pid0) && h_pid_gone(pid1), 5000),
                  "task processes outlived the worker");

    char jb[32];
    snprintf(jb, sizeof jb, "%lld", (long long)job);
    h_run_t *r = h_cli(c, "cancel", jb, NULL);
    ck_assert_msg(r->rc == 0, "cancel: %s", h_run_desc(r));
    h_run_free(&r);
    free(p0);
    free(p1);
    free(script);
    h_cluster_destroy(&c);
}
END_TEST

/* A task a worker was sent and lost without a word, its link up all
   along: the worker's heartbeat, made after it read that task's message,
   does not list it, so the master takes it back (event=task_not_held)
   and it runs again, once. The worker drops the second task it receives
   (ZTASK_TEST_DROP_TASK, worker/session.c); the lease is an hour, so
   only the heartbeat comparison can find it (docs/protocol.md 10.1,
   "Heartbeats compared"): without it the job never ends. */
START_TIMED_TEST(a_task_its_worker_lost_without_a_word_is_taken_back_by_a_heartbeat, 90)
{
    h_cluster_t *c = h_cluster_new("notheld");
    h_proc_t *m = h_master_start(c, 0, FAST_HEARTBEAT, "--lease", "3600", NULL);
    setenv("ZTASK_TEST_DROP_TASK", "2", 1);
    h_proc_t *w = h_worker_start(c, "a", 1, NULL);
    unsetenv("ZTASK_TEST_DROP_TASK");
    char *runs = h_path(c, "runs");
    char script[1200];
    snprintf(script, sizeof script, "echo $ZTASK_TASK_INDEX $ZTASK_ATTEMPT >> '%s'", runs);
    enum { N = 3 };
    int64_t job = h_submit(c, NULL, "--array", "0-2", "--", "sh", "-c", script, NULL);
    ck_assert_msg(h_proc_wait_log(w, "event=test_task_dropped", 1, 30000),
                  "the worker dropped no task (log %s)", h_proc_log(w));
    ck_assert_msg(h_proc_wait_log(m, "event=task_not_held", 1, 30000),
                  "the master did not find the dropped task missing (log %s)", h_proc_log(m));
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    s_expect_all_done(c, job, N);

    /* Each index ran once: the dropped one as attempt 2, the others as 1. */
    char *text = h_read_file(runs);
    ck_assert_ptr_nonnull(text);
    int seen[N] = {0}, again = 0, lines = 0;
    for (char *p = text; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
        int index, attempt;
        if (sscanf(p, "%d %d", &index, &attempt) != 2)
            continue;
        lines++;
        ck_assert_msg(index >= 0 && index < N, "index %d in the runs file", index);
        seen[index]++;
        again += attempt == 2;
        ck_assert_msg(attempt == 1 || attempt == 2, "index %d ran as attempt %d", index, attempt);
    }
    free(text);
    ck_assert_msg(lines == N && again == 1, "%d runs, %d of them attempt 2", lines, again);
    for (int i = 0; i < N; i++)
        ck_assert_msg(seen[i] == 1, "index %d ran %d times", i, seen[i]);
    ck_assert_int_eq(h_proc_count_log(m, "event=task_not_held"), 1);
    free(runs);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_faults", h_slowdown()));
}
