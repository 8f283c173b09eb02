/*  e2e balance: with 2 workers x 2 threads, 4 tasks of 2 s and 200 of
    10 ms in one job (the long ones first), no task waits while a thread is
    idle, so no short task is stuck behind a long one on a busy worker.

    How it is judged, from the started/finished times in `results --json`:
    every task was submitted at once, so at any instant t the cluster
    should be running min(4, tasks not finished by t) tasks. Sweeping the
    start and finish events in time order gives that count between any two
    events; a stretch where fewer run is a deficit (a thread idle while a
    task waits somewhere). Each thread needs a moment to take its next task
    (the dispatch delay), so only a deficit lasting longer than a tolerance
    fails, as does more than a small total of idle thread-time.

    The tolerance (250 ms, times the sanitizer slowdown) sits well above
    the few milliseconds a dispatch takes and the occasional 100 ms stall
    of a loaded 2-core CI machine, and well below what a scheduling mistake
    costs here: a 2 s task queued behind another on a busy worker leaves a
    thread elsewhere idle for a second or more.
*/
#include "harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define LONG_TASKS 4
#define SHORT_TASKS 200
#define LONG_S 2.0
#define SHORT_S 0.01

typedef struct {
    double t;
    int delta;   /* +1 start, -1 finish */
} ev_t;

static int s_ev_cmp(const void *a, const void *b)
{
    const ev_t *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->delta - y->delta;   /* finishes first at the same instant */
}

START_TIMED_TEST(no_thread_idles_while_a_task_waits, 90)
{
    h_cluster_t *c = h_cluster_new("balance");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 2, NULL);
    h_worker_start(c, "b", 2, NULL);

    /* One job, long tasks first, as JSONL specs. */
    size_t cap = 128 * (LONG_TASKS + SHORT_TASKS), len = 0;
    char *jsonl = malloc(cap);
    ck_assert_ptr_nonnull(jsonl);
    for (int i = 0; i < LONG_TASKS + SHORT_TASKS; i++)
        len += (size_t)snprintf(jsonl + len, cap - len,
                                "{\"fn\":\"sleep\",\"args\":{\"seconds\":%g},\"index\":%d}\n",
                                i < LONG_TASKS ? LONG_S : SHORT_S, i);
    char *path = h_path(c, "tasks.jsonl");
    h_write_file(path, jsonl);
    free(jsonl);
    int64_t n = 0;
    int64_t job = h_submit(c, &n, "--file", path, NULL);
    ck_assert_int_eq(n, LONG_TASKS + SHORT_TASKS);
    ck_assert_int_eq(h_wait(c, job, 60000), 0);

    int total = LONG_TASKS + SHORT_TASKS;
    cJSON *res = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(res, total);
    ev_t *ev = calloc((size_t)total * 2, sizeof *ev);
    ck_assert_ptr_nonnull(ev);
    double first = 1e300, last = 0;
    for (int i = 0; i < total; i++) {
        ck_assert_str_eq(h_jstr(by[i], "status"), "done");
        double s = h_jnum(by[i], "started", 0), f = h_jnum(by[i], "finished", 0);
        ck_assert_msg(s > 1e9 && f >= s, "task %d: started %f finished %f", i, s, f);
        double want = i < LONG_TASKS ? LONG_S : SHORT_S;
        ck_assert_msg(f - s >= want * 0.95, "task %d ran %.3fs, shorter than its %.2fs sleep", i,
                      f - s, want);
        ev[2 * i] = (ev_t){s, +1};
        ev[2 * i + 1] = (ev_t){f, -1};
        first = s < first ? s : first;
        last = f > last ? f : last;
    }
    qsort(ev, (size_t)total * 2, sizeof *ev, s_ev_cmp);

    double tolerance = 0.25 * h_slowdown();
    double deficit_run = 0, worst_run = 0, worst_at = 0, idle = 0;
    int running = 0, finished = 0, max_running = 0;
    for (int k = 0; k < total * 2 - 1; k++) {
        if (ev[k].delta > 0)
            running++;
        else {
            running--;
            finished++;
        }
        max_running = running > max_running ? running : max_running;
        double dt = ev[k + 1].t - ev[k].t;
        int left = total - finished;
        int want = left < THREADS ? left : THREADS;
        if (running < want) {
            deficit_run += dt;
            idle += (want - running) * dt;
            if (deficit_run > worst_run) {
                worst_run = deficit_run;
                worst_at = ev[k + 1].t - first;
            }
        } else {
            deficit_run = 0;
        }
    }
    fprintf(stderr,
            "balance: makespan %.3fs, longest stretch with an idle thread and a waiting task "
            "%.3fs (ending at +%.3fs), idle thread-time %.3fs, max concurrent %d\n",
            last - first, worst_run, worst_at, idle, max_running);
    if (worst_run > tolerance) {
        /* What ran around the worst stretch, for the post mortem. */
        double from = worst_at - worst_run - 0.05, to = worst_at + 0.05;
        int shown = 0;
        for (int i = 0; i < total && shown < 40; i++) {
            double s = h_jnum(by[i], "started", 0) - first, f = h_jnum(by[i], "finished", 0) - first;
            if (f >= from && s <= to && ++shown)
                fprintf(stderr, "  index %3d on %-8s +%.3f .. +%.3f\n", i,
                        h_jstr(by[i], "worker"), s, f);
        }
    }
    ck_assert_msg(max_running <= THREADS, "%d tasks ran at once on %d threads", max_running,
                  THREADS);
    ck_assert_msg(worst_run <= tolerance,
                  "a thread idled %.3fs (ending at +%.3fs) while a task waited (tolerance %.3fs)",
                  worst_run, worst_at, tolerance);
    ck_assert_msg(idle <= 4 * tolerance, "%.3f idle thread-seconds while tasks waited", idle);

    free(ev);
    free(by);
    cJSON_Delete(res);
    free(path);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_balance", h_slowdown()));
}
