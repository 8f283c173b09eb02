/*  e2e orphans: no process of a task outlives its worker.

    Each task here is a shell that starts a child, which starts a
    grandchild, and writes the three pids to a file of its own (through a
    rename, so a file is complete once it exists). The worker is then
    killed -9 and every one of those processes must be gone within about
    a second (the bound is scaled for sanitizer builds): whether the task
    had a timeout, whether its job is cancelled meanwhile, and, when the
    worker's reaper was killed with it, once the next worker starts on
    the same host (the cluster's state directory). Waiting is polling the
    pids with a deadline: their state is another process's, and no event
    of ours announces it. */
#include "harness.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Quick failure detection, so the master requeues the killed worker's
   tasks within a second. */
#define FAST_HEARTBEAT "--heartbeat-ms", "200", "--liveness", "3", "--recovery-grace", "1"
/* How long a killed worker's processes may outlive it (release build). */
#define OUTLIVE_MS 1000
#define MAX_PIDS 64

/* The task: pids of itself, its child and grandchild in DIR/pids-INDEX,
   then the grandchild sleeps (bounded: a failed test leaves nothing for
   long) and marks DIR/end-INDEX-ATTEMPT if it ever wakes. */
static char *s_family_script(h_cluster_t *c, int sleep_s)
{
    char *script = NULL;
    int n = asprintf(&script,
                     "d='%s'; me=$$; "
                     "( sh -c 'sleep %d; touch \"$0\"' \"$d/end-{}-$ZTASK_ATTEMPT\" & "
                     "echo $! > \"$d/gc-{}\"; wait ) & "
                     "c=$!; while [ ! -s \"$d/gc-{}\" ]; do sleep 0.01; done; "
                     "echo \"$me $c $(cat \"$d/gc-{}\")\" > \"$d/.pids-{}\"; "
                     "mv \"$d/.pids-{}\" \"$d/pids-{}\"; wait",
                     h_dir(c), sleep_s);
    ck_assert_int_gt(n, 0);
    return script;
}

/* Reads DIR/pids-I for i in 0..n-1 into pids; returns how many tasks had
   written theirs (each gives 3 pids). */
static int s_read_families(h_cluster_t *c, int n, pid_t *pids, int *npids)
{
    int tasks = 0;
    *npids = 0;
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "pids-%d", i);
        char *path = h_path(c, name);
        char *text = h_read_file(path);
        free(path);
        if (!text)
            continue;
        int a = 0, b = 0, g = 0;
        if (sscanf(text, "%d %d %d", &a, &b, &g) == 3 && a > 0 && b > 0 && g > 0 &&
            *npids + 3 <= MAX_PIDS) {
            pids[(*npids)++] = a;
            pids[(*npids)++] = b;
            pids[(*npids)++] = g;
            tasks++;
        }
        free(text);
    }
    return tasks;
}

static bool s_all_written(h_cluster_t *c, int n)
{
    pid_t pids[MAX_PIDS];
    int np;
    return s_read_families(c, n, pids, &np) == n;
}

static int s_alive(const pid_t *pids, int n)
{
    int alive = 0;
    for (int i = 0; i < n; i++)
        alive += !h_pid_gone(pids[i]);
    return alive;
}

/* Starts n tasks of `script` on a worker of n threads and waits until
   every one has written its pids; returns the job. */
static int64_t s_start_families(h_cluster_t *c, int n, const char *script, const char *timeout)
{
    char range[32];
    snprintf(range, sizeof range, "0-%d", n - 1);
    int64_t job = timeout ? h_submit(c, NULL, "--timeout", timeout, "--array", range, "--", "sh",
                                     "-c", script, NULL)
                          : h_submit(c, NULL, "--array", range, "--", "sh", "-c", script, NULL);
    ck_assert_msg(H_POLL(s_all_written(c, n), 20000), "the tasks did not all start");
    return job;
}

/* `ztask cancel JOB`, expecting it acknowledged. */
static void s_cancel(h_cluster_t *c, int64_t job)
{
    char jb[32];
    snprintf(jb, sizeof jb, "%lld", (long long)job);
    h_run_t *r = h_cli(c, "cancel", jb, NULL);
    ck_assert_msg(r->rc == 0, "cancel %s: %s", jb, h_run_desc(r));
    h_run_free(&r);
}

/* kill -9 of the worker, then every pid gone within OUTLIVE_MS. */
static void s_kill_and_expect_gone(h_cluster_t *c, h_proc_t *w, int n)
{
    pid_t pids[MAX_PIDS];
    int np;
    ck_assert_int_eq(s_read_families(c, n, pids, &np), n);
    ck_assert_int_eq(s_alive(pids, np), np);
    int64_t t0 = h_now_ms();
    h_proc_kill9(w);
    bool gone = H_POLL(s_alive(pids, np) == 0, OUTLIVE_MS);
    ck_assert_msg(gone, "%d of %d task processes still run %lld ms after the worker's kill -9",
                  s_alive(pids, np), np, (long long)(h_now_ms() - t0));
}

START_TIMED_TEST(kill_9_of_a_worker_leaves_no_process_of_its_tasks_running, 60)
{
    h_cluster_t *c = h_cluster_new("orphans");
    h_master_start(c, 0, FAST_HEARTBEAT, NULL);
    h_proc_t *w = h_worker_start(c, "a", 3, NULL);
    char *script = s_family_script(c, 30);
    s_start_families(c, 3, script, NULL);
    s_kill_and_expect_gone(c, w, 3);
    ck_assert_msg(h_proc_wait_log(w, "event=reaper_killed", 1, 5000),
                  "the reaper did not say what it killed (log %s)", h_proc_log(w));
    ck_assert_int_eq(h_proc_count_log(w, "groups=3"), 1);
    free(script);
    h_cluster_destroy(&c);
}
END_TEST

/* --timeout 3, and the grandchild would mark its end after 6 s: killed
   with its worker well before either. */
START_TIMED_TEST(a_task_whose_worker_was_killed_does_not_run_past_its_timeout, 90)
{
    h_cluster_t *c = h_cluster_new("orphantimeout");
    h_master_start(c, 0, FAST_HEARTBEAT, NULL);
    h_proc_t *wa = h_worker_start(c, "a", 2, NULL);
    char *script = s_family_script(c, 6);
    int64_t job = s_start_families(c, 2, script, "3");
    s_kill_and_expect_gone(c, wa, 2);

    /* The second attempts run on b and time out; by then nothing of the
       first attempts may have reached its end. */
    h_worker_start(c, "b", 2, NULL);
    ck_assert_int_eq(h_wait(c, job, 60000), 1);
    cJSON *res = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(res, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(h_jtrue(by[i], "timed_out"), "index %d did not time out", i);
        ck_assert_int_eq(h_jint(by[i], "attempts", -1), 2);
        char name[32];
        snprintf(name, sizeof name, "end-%d-1", i);
        char *end = h_path(c, name);
        ck_assert_msg(access(end, F_OK) != 0, "attempt 1 of index %d ran to its end", i);
        free(end);
    }
    free(by);
    cJSON_Delete(res);
    free(script);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_cancel_acknowledged_after_the_worker_died_leaves_nothing_running, 60)
{
    h_cluster_t *c = h_cluster_new("orphancancel");
    h_master_start(c, 0, FAST_HEARTBEAT, NULL);
    h_proc_t *w = h_worker_start(c, "a", 2, NULL);
    char *script = s_family_script(c, 30);
    int64_t job = s_start_families(c, 2, script, NULL);
    pid_t pids[MAX_PIDS];
    int np;
    ck_assert_int_eq(s_read_families(c, 2, pids, &np), 2);
    int64_t t0 = h_now_ms();
    h_proc_kill9(w);
    s_cancel(c, job);
    ck_assert_msg(H_POLL(s_alive(pids, np) == 0, OUTLIVE_MS),
                  "%d of %d processes of a cancelled job run %lld ms after the cancel",
                  s_alive(pids, np), np, (long long)(h_now_ms() - t0));
    ck_assert_msg(H_POLL(h_status_count(c, job, "cancelled") == 2, 10000),
                  "the job's tasks are not all cancelled");
    free(script);
    h_cluster_destroy(&c);
}
END_TEST

/* The worker and its reaper killed together (a cgroup's OOM kill, a
   `kill -9 -1`): the processes run on until a worker starts on the same
   host, which kills them before it registers. */
START_TIMED_TEST(a_worker_started_where_one_died_with_its_reaper_kills_what_it_left_running, 60)
{
    h_cluster_t *c = h_cluster_new("orphansweep");
    h_master_start(c, 0, FAST_HEARTBEAT, NULL);
    h_proc_t *wa = h_worker_start(c, "a", 3, NULL);
    char *script = s_family_script(c, 30);
    int64_t job = s_start_families(c, 3, script, NULL);
    pid_t pids[MAX_PIDS];
    int np;
    ck_assert_int_eq(s_read_families(c, 3, pids, &np), 3);

    int reaper = 0;
    char *log = h_read_file(h_proc_log(wa));
    const char *at = log ? strstr(log, "event=reaper_started pid=") : NULL;
    ck_assert_msg(at, "no event=reaper_started in %s", h_proc_log(wa));
    reaper = atoi(at + strlen("event=reaper_started pid="));
    free(log);
    ck_assert_int_gt(reaper, 1);
    ck_assert_int_eq(kill(reaper, SIGKILL), 0);
    ck_assert(H_POLL(h_pid_gone(reaper), 5000));
    h_proc_kill9(wa);
    /* Nobody is left to kill them: they run on. */
    ck_assert_int_eq(s_alive(pids, np), np);

    h_proc_t *wb = h_worker_start(c, "b", 1, NULL);
    ck_assert_int_eq(h_proc_count_log(wb, "event=orphan_killed"), 3);
    ck_assert_int_eq(h_proc_count_log(wb, "groups_killed=3"), 1);
    ck_assert_msg(H_POLL(s_alive(pids, np) == 0, OUTLIVE_MS),
                  "%d of %d processes of the dead worker's tasks outlived the new one's start",
                  s_alive(pids, np), np);
    /* Their second attempts run on b: stop them, so b can drain. */
    s_cancel(c, job);
    free(script);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_process_a_task_leaves_in_the_background_ends_with_the_task, 60)
{
    h_cluster_t *c = h_cluster_new("bgtask");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 1, NULL);
    int64_t job = h_submit(c, NULL, "--", "sh", "-c",
                           "sleep 30 >/dev/null 2>&1 </dev/null & echo $!", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    cJSON *res = h_results(c, job, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(res), 1);
    pid_t bg = (pid_t)atoi(h_jstr(cJSON_GetArrayItem(res, 0), "stdout"));
    cJSON_Delete(res);
    ck_assert_int_gt(bg, 1);
    ck_assert_msg(H_POLL(h_pid_gone(bg), OUTLIVE_MS), "the background sleep %d outlived its task",
                  bg);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_orphans", h_slowdown()));
}
