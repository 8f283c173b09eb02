/*  e2e alloc: workers started for a while (issue 18, docs/deploy.md):
    a worker with --idle-timeout leaves on its own once it has had no task;
    a worker with an end (--ends-at) is sent no task whose --time-request
    would outlast it; and the master's allocation queues (ztask alloc)
    against stand-in sbatch/squeue scripts put first on the master's PATH:
    what they submit, the backlog and worker caps, an allocation that
    ends before any worker came, failed submissions backed off, and the
    allocations found again after a master kill -9 rather than submitted
    twice (also one whose sbatch answer the dying master never read), an
    sbatch in flight that dies with its killed master; a
    squeue that writes without end or more than is kept; a held job; ids
    never given twice. The queue tests run the master's allocation timings
    faster (--alloc-time-scale, FAST below). The real Slurm is
    tests/slurm/run.sh (`make test-slurm`). */
#include "harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

START_TIMED_TEST(a_worker_with_an_idle_timeout_leaves_once_it_has_had_no_task, 60)
{
    h_cluster_t *c = h_cluster_new("idle");
    h_proc_t *m = h_master_start(c, 0, NULL);
    /* Submitted first: a submit slower than the 1.5 s (ASan, a loaded
       host) let the worker leave before it had any task. */
    int64_t job = h_submit(c, NULL, "--array", "1-6", "--", "true", NULL);
    h_proc_t *w = h_worker_start(c, "idler", 2, "--idle-timeout", "1.5", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    /* Gone on its own, cleanly: exit 0, "bye" at the master. */
    ck_assert_int_eq(h_proc_wait_exit(w, 20000), 0);
    ck_assert(h_proc_count_log(w, "event=draining reason=idle") == 1);
    ck_assert(h_proc_wait_log(m, "event=worker_bye", 1, 5000));
    h_cluster_destroy(&c);
}
END_TEST

/* The worker record of name (borrowed from ws), or NULL. */
static const cJSON *s_worker(const cJSON *ws, const char *name)
{
    const cJSON *w;
    cJSON_ArrayForEach(w, ws)
        if (h_jstr(w, "worker") && strcmp(h_jstr(w, "worker"), name) == 0)
            return w;
    return NULL;
}

START_TIMED_TEST(a_task_whose_time_request_outlasts_a_workers_end_waits_for_one_that_can_finish_it,
                 90)
{
    h_cluster_t *c = h_cluster_new("timereq");
    h_master_start(c, 0, NULL);
    char ends[32];
    snprintf(ends, sizeof ends, "%lld", (long long) time(NULL) + 60);
    h_worker_start(c, "short", 2, "--ends-at", ends, NULL);

    h_run_t *r = h_cli(c, "workers", "--json", NULL);
    ck_assert_msg(r->rc == 0, "workers: %s", h_run_desc(r));
    cJSON *ws = h_json_lines(r->out);
    const cJSON *w = s_worker(ws, "short");
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq((int64_t) h_jnum(w, "ends_at", 0), atoll(ends));
    cJSON_Delete(ws);
    h_run_free(&r);

    /* 2 minutes cannot finish in what is left of 60 s; 5 s can. */
    int64_t longer = h_submit(c, NULL, "--time-request", "2m", "--", "echo", "long", NULL);
    int64_t shorter = h_submit(c, NULL, "--time-request", "5s", "--", "echo", "short", NULL);
    ck_assert_int_eq(h_wait(c, shorter, 30000), 0);
    r = h_cli(c, "stats", "--json", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "\"exec~120\""),
                  "stats does not say a 120 s task waits: %s", r->out);
    h_run_free(&r);
    ck_assert_int_eq(h_status_count(c, longer, "queued"), 1);

    /* A worker with no end takes it. */
    h_worker_start(c, "long", 1, NULL);
    ck_assert_int_eq(h_wait(c, longer, 30000), 0);
    cJSON *res = h_results(c, longer, NULL);
    ck_assert_str_eq(h_jstr(cJSON_GetArrayItem(res, 0), "worker"), "long");
    cJSON_Delete(res);
    h_cluster_destroy(&c);
}
END_TEST

/* ---- allocation queues against stand-in Slurm commands ---- */

static int s_lines(h_cluster_t *c, const char *name)
{
    char *p = h_path(c, name);
    FILE *f = fopen(p, "r");
    free(p);
    if (!f)
        return 0;
    int n = 0, ch;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

static void s_write(h_cluster_t *c, const char *name, const char *text)
{
    char *p = h_path(c, name);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    free(p);
}

static char *s_read(h_cluster_t *c, const char *name)
{
    char *p = h_path(c, name);
    FILE *f = fopen(p, "r");
    free(p);
    ck_assert_ptr_nonnull(f);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* `alloc list --json`: the one queue's record (caller owns). */
static cJSON *s_queue(h_cluster_t *c)
{
    h_run_t *r = h_cli(c, "alloc", "list", "--json", NULL);
    ck_assert_msg(r->rc == 0, "alloc list: %s", h_run_desc(r));
    cJSON *q = h_json_first(r->out);
    ck_assert_ptr_nonnull(q);
    h_run_free(&r);
    return q;
}

/* The state of allocation i of the queue, or "" when it has none. */
static bool s_alloc_is(h_cluster_t *c, int i, const char *state)
{
    cJSON *q = s_queue(c);
    const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(q, "allocations"), i);
    bool same = a && h_jstr(a, "state") && strcmp(h_jstr(a, "state"), state) == 0;
    cJSON_Delete(q);
    return same;
}

static int64_t s_queue_int(h_cluster_t *c, const char *field)
{
    cJSON *q = s_queue(c);
    int64_t v = h_jint(q, field, -1);
    cJSON_Delete(q);
    return v;
}

/* The queue tests' masters run the allocation timings (the tick, the
   squeue period, the backoff, the grace for a job squeue does not list,
   the command limit) `scale` times as long as in production
   (--alloc-time-scale): every wait below is for an event (a squeue call,
   a state, a log line), so only the time they take changes. A sanitizer
   build is slower: its scale grows with it, up to 1. FAST suits most
   tests: a 6 s command limit still outlasts by far the few steps of a
   test that holds the command slot on purpose (a hung squeue, a slow
   scancel or sbatch). */
#define FAST 0.2

/* The --alloc-time-scale for base (what the master is given). */
static double s_scale(double base)
{
    char text[32];
    double v = base * h_slowdown();
    snprintf(text, sizeof text, "%g", v < 1 ? v : 1);
    return strtod(text, NULL);
}

/* A master whose allocation timings are scale times production's, in
   every build. */
static h_proc_t *s_master_start_at(h_cluster_t *c, double scale)
{
    char arg[32];
    snprintf(arg, sizeof arg, "%g", scale);
    return h_master_start(c, 0, "--alloc-time-scale", arg, NULL);
}

static h_proc_t *s_master_start(h_cluster_t *c, double base)
{
    return s_master_start_at(c, s_scale(base));
}

START_TIMED_TEST(an_allocation_queue_submits_when_tasks_wait_backs_off_and_survives_a_restart,
                 180)
{
    h_cluster_t *c = h_cluster_new("allocq");
    h_fake_slurm(c);
    /* Slower than FAST: what is read while the queue backs off must come
       before its retry (5 s after the second failure, scaled). */
    const double base = 0.5;
    s_master_start(c, base);

    h_run_t *r = h_cli(c, "alloc", "add", "slurm", "--time-limit", "10m", "--max-workers", "1",
                       "--idle-timeout", "2m", "--worker-arg=--threads=3", "--json", "--",
                       "--partition=cpu", NULL);
    ck_assert_msg(r->rc == 0, "alloc add: %s", h_run_desc(r));
    cJSON *q = h_json_first(r->out);
    ck_assert_int_eq(h_jint(q, "id", 0), 1);
    ck_assert_int_eq(h_jint(q, "time_limit_s", 0), 600);
    cJSON_Delete(q);
    h_run_free(&r);

    /* Nothing waits: nothing is submitted. */
    ck_assert_int_eq(s_lines(c, "sbatch.log"), 0);
    int64_t job = h_submit(c, NULL, "--array", "1-5", "--", "true", NULL);
    ck_assert_msg(H_POLL(s_lines(c, "sbatch.log") == 1, 10000), "no sbatch for waiting tasks");
    ck_assert(H_POLL(s_alloc_is(c, 0, "queued"), 5000));
    const char *args = s_read(c, "sbatch.log");
    ck_assert_msg(strstr(args, "--parsable") && strstr(args, "--time=0-00:10:00")
                      && strstr(args, "--partition=cpu")
                      && strstr(args, "--job-name=ztask-alloc-1"),
                  "sbatch arguments: %s", args);
    const char *script = s_read(c, "script.1");
    ck_assert_msg(strstr(script, "ztask-worker") && strstr(script, h_master_addr(c))
                      && strstr(script, "--idle-timeout 120") && strstr(script, "'--threads=3'"),
                  "batch script: %s", script);

    /* Running, and max 1 worker: the tasks still wait, no second one. */
    s_write(c, "squeue.txt", "1001 RUNNING\n");
    ck_assert(H_POLL(s_alloc_is(c, 0, "running"), 15000));
    int polls = s_lines(c, "squeue.log");
    ck_assert(H_POLL(s_lines(c, "squeue.log") >= polls + 1, 15000));
    ck_assert_int_eq(s_lines(c, "sbatch.log"), 1);

    /* kill -9 and a restart: the allocation is found again, not redone. */
    h_proc_kill9(h_master(c));
    s_master_start(c, base);
    polls = s_lines(c, "squeue.log");
    ck_assert(H_POLL(s_lines(c, "squeue.log") >= polls + 1, 15000));
    ck_assert(s_alloc_is(c, 0, "running"));
    ck_assert_int_eq(s_lines(c, "sbatch.log"), 1);
    ck_assert_int_eq(s_queue_int(c, "submitted"), 1);

    /* It ends with no worker ever seen: a failure, backed off 5 s. Then
       sbatch itself fails: said, and not retried in a tight loop (10 s).
       sbatch fails from before the first failure: the retry after it
       must not find one that works. The first failure's record is read
       from the log (the list shows the second one soon after). */
    double scale = s_scale(base);
    double before_failures = h_wall();
    s_write(c, "fail", "");
    s_write(c, "squeue.txt", "1001 FAILED\n");
    char want[200];
    snprintf(want, sizeof want,
             "event=alloc_failed queue=1 failures=1 retry_in_s=%g error=\"allocation 1001 ended "
             "(failed) before any worker registered",
             5 * scale);
    ck_assert_msg(h_proc_wait_log(h_master(c), want, 1, 15000), "no line %s", want);
    ck_assert(H_POLL(s_queue_int(c, "failures") == 2, 20000));
    ck_assert_int_eq(s_lines(c, "sbatch.log"), 2);
    q = s_queue(c);
    ck_assert_msg(strstr(h_jstr(q, "last_error"), "invalid partition"), "%s",
                  h_jstr(q, "last_error"));
    /* The first failure came after before_failures, the second at least
       its backoff (5 s) later, and the retry after the second 10 s on:
       15 s (scaled) after before_failures at the earliest. A lower bound
       on the master's own times, not the time left now, which a slow
       test run would eat into. */
    double wait_s = h_jnum(q, "retry_at", 0) - before_failures;
    ck_assert_msg(wait_s >= 15 * scale - 1e-3, "retry %.3f s after the failures began, want %g",
                  wait_s, 15 * scale);
    cJSON_Delete(q);
    snprintf(want, sizeof want,
             "event=alloc_failed queue=1 failures=2 retry_in_s=%g error=\"sbatch failed (exit 1)",
             10 * scale);
    ck_assert_msg(h_proc_count_log(h_master(c), want) == 1, "no line %s", want);
    h_run_t *list = h_cli(c, "alloc", "list", NULL);
    ck_assert_msg(list->rc == 0 && strstr(list->out, "backing-off")
                      && strstr(list->out, "invalid partition"),
                  "alloc list: %s", list->out);
    h_run_free(&list);

    /* Pause, resume (at once: no backoff), remove: refused while the new
       allocation waits in Slurm, then forced, which cancels it. */
    r = h_cli(c, "alloc", "pause", "1", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "paused"), "pause: %s", h_run_desc(r));
    h_run_free(&r);
    char *fail = h_path(c, "fail");
    unlink(fail);
    free(fail);
    r = h_cli(c, "alloc", "resume", "1", NULL);
    ck_assert_msg(r->rc == 0, "resume: %s", h_run_desc(r));
    h_run_free(&r);
    ck_assert_msg(H_POLL(s_lines(c, "sbatch.log") == 3, 10000), "resume did not submit at once");
    ck_assert(H_POLL(s_alloc_is(c, 1, "queued"), 5000));
    r = h_cli(c, "alloc", "remove", "1", NULL);
    ck_assert_msg(r->rc == 4 && strstr(r->err, "1002 (queued)") && strstr(r->err, "--force")
                      && strchr(r->err, '\n') == strrchr(r->err, '\n'),
                  "remove without --force: %s", h_run_desc(r));
    h_run_free(&r);
    ck_assert_int_eq(s_queue_int(c, "id"), 1);   /* still there */
    ck_assert_int_eq(s_lines(c, "scancel.log"), 0);
    r = h_cli(c, "alloc", "remove", "1", "--force", "--json", NULL);
    ck_assert_msg(r->rc == 0, "remove --force: %s", h_run_desc(r));
    q = h_json_first(r->out);
    ck_assert_int_eq(h_jint(q, "id", 0), 1);
    cJSON_Delete(q);
    h_run_free(&r);
    ck_assert_msg(H_POLL(s_lines(c, "scancel.log") == 1, 10000), "no scancel");
    ck_assert_str_eq(s_read(c, "scancel.log"), "1002\n");
    r = h_cli(c, "alloc", "list", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "no allocation queues"), "%s", h_run_desc(r));
    h_run_free(&r);
    r = h_cli(c, "alloc", "pause", "1", NULL);
    ck_assert_msg(r->rc == 4 && strstr(r->err, "no allocation queue 1"), "%s", h_run_desc(r));
    h_run_free(&r);
    (void) job;
    h_cluster_destroy(&c);
}
END_TEST

/* An executable shell script DIR/name: "d=DIR", then body. */
static void s_script_file(h_cluster_t *c, const char *name, const char *body)
{
    char *path = h_path(c, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "#!/bin/sh\nd='%s'\n%s", h_dir(c), body);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0755), 0);
    free(path);
}

/* squeue is replaced by a script that writes what DIR/squeue.sh says
   (run with sh) once DIR/squeue.sh exists, and otherwise does what
   h_fake_slurm's does. */
static void s_squeue_from_script(h_cluster_t *c)
{
    s_script_file(c, "bin/squeue",
                  "echo \"$*\" >> \"$d/squeue.log\"\n"
                  "[ -e \"$d/squeue.sh\" ] && exec sh \"$d/squeue.sh\"\n"
                  "cat \"$d/squeue.txt\" 2>/dev/null\n"
                  "exit 0\n");
}

/* One queue of one worker at most, an allocation of it submitted and
   running (1001): the start of the squeue tests below. The master's
   timings are scale times production's (s_scale(FAST) for a test with a
   step that must fit in one of them). */
static h_cluster_t *s_one_allocation(const char *name, double scale)
{
    h_cluster_t *c = h_cluster_new(name);
    h_fake_slurm(c);
    s_squeue_from_script(c);
    s_master_start_at(c, scale);
    h_run_t *r = h_cli(c, "alloc", "add", "slurm", "--time-limit", "10m", "--max-workers", "1",
                       "--idle-timeout", "2m", NULL);
    ck_assert_msg(r->rc == 0, "alloc add: %s", h_run_desc(r));
    h_run_free(&r);
    s_write(c, "squeue.txt", "1001 RUNNING\n");
    h_submit(c, NULL, "--array", "1-5", "--", "true", NULL);
    ck_assert_msg(H_POLL(s_lines(c, "sbatch.log") == 1, 10000), "no sbatch for waiting tasks");
    ck_assert(H_POLL(s_alloc_is(c, 0, "running"), 15000));
    return c;
}

/* This test and the next only wait for the master's own events (squeue
   polls, a command's time limit: the commands are shell scripts, which
   no sanitizer slows), so they run at FAST in every build: grown with
   the slowdown they took 90 s of make tsan (5x release) waiting on
   timers. The one step that races a timing here, the stats calls below,
   has the command limit (6 s at FAST) to start in while squeue writes,
   and each takes well under a second under TSan. */
START_TIMED_TEST(a_squeue_that_never_stops_writing_does_not_hold_the_master, 120)
{
    h_cluster_t *c = s_one_allocation("allocflood", FAST);
    /* From the next poll on, squeue writes without end. */
    s_write(c, "squeue.sh", "exec yes '1001 RUNNING'\n");
    int polls = s_lines(c, "squeue.log");
    ck_assert(H_POLL(s_lines(c, "squeue.log") >= polls + 1, 15000));
    /* The master still answers, again and again while squeue writes. */
    for (int i = 0; i < 5; i++) {
        h_run_t *r = h_cliv(c, (const char *const[]){"stats", "--json", NULL}, 10000);
        ck_assert_msg(r->rc == 0, "stats while squeue floods (try %d): %s", i, h_run_desc(r));
        h_run_free(&r);
    }
    /* It is killed at its time limit, and the polls go on. */
    char *sh = h_path(c, "squeue.sh");
    unlink(sh);
    free(sh);
    polls = s_lines(c, "squeue.log");
    ck_assert_msg(H_POLL(s_lines(c, "squeue.log") >= polls + 1, 60000),
                  "no squeue after the endless one");
    ck_assert(s_alloc_is(c, 0, "running"));
    ck_assert_int_eq(s_lines(c, "sbatch.log"), 1);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(an_allocation_missing_from_a_cut_squeue_listing_is_not_judged_ended, 150)
{
    h_cluster_t *c = s_one_allocation("alloccut", FAST);
    /* squeue lists more than the master keeps of its output, the running
       allocation last: what was cut off says nothing about it. */
    s_write(c, "squeue.sh",
            "i=0; while [ $i -lt 9000 ]; do echo \"$((5000 + i)) COMPLETED\"; i=$((i + 1)); done\n"
            "echo '1001 RUNNING'\n");
    /* Past the grace for a job squeue does not list (six polls), and a
       few polls. */
    int polls = s_lines(c, "squeue.log");
    ck_assert(H_POLL(s_lines(c, "squeue.log") >= polls + 8, 90000));
    ck_assert_msg(s_alloc_is(c, 0, "running"), "the running allocation was judged ended");
    ck_assert_int_eq(s_lines(c, "sbatch.log"), 1);
    h_cluster_destroy(&c);
}
END_TEST

/* scancel takes its time (a busy slurmctld): it cancels once DIR/go
   exists, whoever is left to wait for it. */
static void s_slow_scancel(h_cluster_t *c)
{
    s_script_file(c, "bin/scancel",
                  "touch \"$d/scancel.started\"\n"
                  "i=0; while [ ! -e \"$d/go\" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); "
                  "done\n"
                  "echo \"$*\" >> \"$d/scancel.log\"\n");
}

/* squeue hangs (30 s at most) from now on, so the command slot stays
   taken; returns once one such squeue runs. */
static void s_hang_squeue(h_cluster_t *c)
{
    s_write(c, "squeue.sh",
            "touch \"$(dirname \"$0\")/squeue.hung\"\n"
            "i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done\n");
    char *hung = h_path(c, "squeue.hung");
    ck_assert_msg(H_POLL(access(hung, F_OK) == 0, 30000), "no squeue");
    free(hung);
}

/* The user was told the allocations are being cancelled: a master that
   stops meanwhile (SIGTERM) must not kill that scancel, or they would
   hold their nodes with no queue left to follow them. */
START_TIMED_TEST(a_master_stopping_while_scancel_runs_lets_it_cancel, 120)
{
    h_cluster_t *c = s_one_allocation("allocstop", s_scale(FAST));
    s_slow_scancel(c);
    h_run_t *r = h_cli(c, "alloc", "remove", "1", "--force", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "cancelling (scancel) 1001"), "remove --force: %s",
                  h_run_desc(r));
    h_run_free(&r);
    char *started = h_path(c, "scancel.started");
    ck_assert_msg(H_POLL(access(started, F_OK) == 0, 10000), "no scancel");
    free(started);
    h_proc_stop(h_master(c), 20000);
    s_write(c, "go", "");
    ck_assert_msg(H_POLL(s_lines(c, "scancel.log") == 1, 10000),
                  "the stopping master killed scancel: 1001 never cancelled");
    ck_assert_str_eq(s_read(c, "scancel.log"), "1001\n");
    h_cluster_destroy(&c);
}
END_TEST

/* s_one_allocation, then its queue removed with --force while squeue
   holds the command slot (hung): scancel waits for the slot. */
static h_cluster_t *s_removed_while_squeue_hangs(const char *name)
{
    h_cluster_t *c = s_one_allocation(name, s_scale(FAST));
    s_hang_squeue(c);
    h_run_t *r = h_cli(c, "alloc", "remove", "1", "--force", NULL);
    ck_assert_msg(r->rc == 0, "remove --force: %s", h_run_desc(r));
    h_run_free(&r);
    ck_assert_int_eq(s_lines(c, "scancel.log"), 0);
    return c;
}

/* A forced remove while squeue holds the command slot: its scancel waits
   for the slot. A master that stops before then still cancels. */
START_TIMED_TEST(a_master_stopping_before_a_waiting_scancel_starts_still_cancels, 120)
{
    h_cluster_t *c = s_removed_while_squeue_hangs("allocstop2");
    h_proc_stop(h_master(c), 20000);
    ck_assert_msg(H_POLL(s_lines(c, "scancel.log") == 1, 10000),
                  "the stopping master dropped the scancel of 1001");
    ck_assert_str_eq(s_read(c, "scancel.log"), "1001\n");
    h_cluster_destroy(&c);
}
END_TEST

/* A forced remove while squeue holds the command slot, then a kill -9
   before its scancel could start: the restarted master still knows the
   queue and follows its allocation (it was forgotten, and the allocation
   left running with nothing to follow or cancel it), paused: the client
   was told it is removed, so nothing more is submitted for it (it came
   back active); removed again, it is cancelled. */
START_TIMED_TEST(a_master_killed_before_a_forced_remove_could_cancel_still_follows_the_queue, 150)
{
    h_cluster_t *c = s_removed_while_squeue_hangs("allockill");
    h_proc_kill9(h_master(c));
    char *script = h_path(c, "squeue.sh");
    ck_assert_int_eq(unlink(script), 0);
    free(script);
    h_run_t *r;
    s_master_start(c, FAST);
    r = h_cli(c, "alloc", "list", "--json", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "\"1001\""),
                  "queue 1 and its allocation 1001 forgotten, nothing cancelled: %s",
                  h_run_desc(r));
    ck_assert_msg(strstr(r->out, "\"paused\":true"),
                  "the queue the client was told is removed came back active: %s", r->out);
    h_run_free(&r);
    r = h_cli(c, "alloc", "remove", "1", "--force", NULL);
    ck_assert_msg(r->rc == 0, "remove --force: %s", h_run_desc(r));
    h_run_free(&r);
    ck_assert_msg(H_POLL(s_lines(c, "scancel.log") == 1, 10000), "no scancel");
    ck_assert_str_eq(s_read(c, "scancel.log"), "1001\n");
    /* For good this time (the journal wrote it once scancel started). */
    h_proc_stop(h_master(c), 20000);
    s_master_start(c, FAST);
    r = h_cli(c, "alloc", "list", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "no allocation queues"), "%s", h_run_desc(r));
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

/* sbatch takes its time (a busy slurmctld): DIR/bin/sbatch becomes a
   script of body (after "d=DIR"), h_fake_slurm's sbatch kept as
   DIR/bin/sbatch.fast for it to run. */
static void s_slow_sbatch(h_cluster_t *c, const char *body)
{
    char *sbatch = h_path(c, "bin/sbatch");
    char *fast = h_path(c, "bin/sbatch.fast");
    ck_assert_int_eq(rename(sbatch, fast), 0);
    free(sbatch);
    free(fast);
    s_script_file(c, "bin/sbatch", body);
}

/* What a slow sbatch waits for: DIR/go (60 s at most). */
#define WAIT_FOR_GO "i=0; while [ ! -e \"$d/go\" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done\n"

/* One queue of one worker at most and five tasks waiting for it, with
   the stand-in Slurm of h_fake_slurm, sbatch slowed down (s_slow_sbatch)
   to body; returns once DIR/started_file exists (written by body). */
static h_cluster_t *s_sbatch_in_flight(const char *name, const char *body,
                                       const char *started_file)
{
    h_cluster_t *c = h_cluster_new(name);
    h_fake_slurm(c);
    s_squeue_from_script(c);
    s_slow_sbatch(c, body);
    s_master_start(c, FAST);
    h_run_t *r = h_cli(c, "alloc", "add", "slurm", "--time-limit", "10m", "--max-workers", "1",
                       "--idle-timeout", "2m", NULL);
    ck_assert_msg(r->rc == 0, "alloc add: %s", h_run_desc(r));
    h_run_free(&r);
    h_submit(c, NULL, "--array", "1-5", "--", "true", NULL);
    char *started = h_path(c, started_file);
    ck_assert_msg(H_POLL(access(started, F_OK) == 0, 10000), "no sbatch for waiting tasks");
    free(started);
    return c;
}

/* Slurm took the job; the master died (-9) before sbatch answered. The
   restarted master finds the allocation by its name, and does not
   submit again. */
START_TIMED_TEST(an_allocation_submitted_as_the_master_died_is_found_again_not_submitted_twice,
                 150)
{
    h_cluster_t *c = s_sbatch_in_flight("allocdied",
                                        "out=$(\"$d/bin/sbatch.fast\" \"$@\") || exit 1\n"
                                        "touch \"$d/sbatch.submitted\"\n" WAIT_FOR_GO
                                        "echo \"$out\"\n",
                                        "sbatch.submitted");
    char *jobfile = h_path(c, "job.1001");
    ck_assert_msg(access(jobfile, F_OK) == 0, "sbatch did not submit");
    free(jobfile);
    h_proc_kill9(h_master(c));
    s_write(c, "squeue.txt", "1001 PENDING ztask-alloc-1\n");
    /* A restart: the allocation is found by its name, not submitted again. */
    s_master_start(c, FAST);
    ck_assert_msg(H_POLL(s_alloc_is(c, 0, "queued"), 15000), "allocation 1001 not found again");
    int polls = s_lines(c, "squeue.log");
    ck_assert(H_POLL(s_lines(c, "squeue.log") >= polls + 1, 15000));
    ck_assert_int_eq(s_lines(c, "sbatch.log"), 1);
    cJSON *q = s_queue(c);
    const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(q, "allocations"), 0);
    ck_assert_str_eq(h_jstr(a, "id"), "1001");
    cJSON_Delete(q);
    h_cluster_destroy(&c);
}
END_TEST

/* An sbatch that has not submitted when its master is killed (-9) dies
   with it. Left running (as it was), it submitted once slurmctld took
   it (here: once DIR/go exists), which may be after the restarted
   master's first squeue found nothing: that master submitted too, two
   allocations for one. */
START_TIMED_TEST(an_sbatch_in_flight_dies_with_its_killed_master_and_submits_nothing, 150)
{
    /* What the master leaves comes to this process (the master's
       parent), so the sbatch's end can be waited for. */
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    h_cluster_t *c = s_sbatch_in_flight("allocorphan",
                                        "echo $$ > \"$d/sbatch.pid.new\"\n"
                                        "mv \"$d/sbatch.pid.new\" \"$d/sbatch.pid\"\n" WAIT_FOR_GO
                                        "exec \"$d/bin/sbatch.fast\" \"$@\"\n",
                                        "sbatch.pid");
    pid_t sbatch = (pid_t) atoi(s_read(c, "sbatch.pid"));
    ck_assert_int_gt(sbatch, 1);
    h_proc_kill9(h_master(c));
    s_write(c, "go", "");
    int st;
    ck_assert_int_eq(waitpid(sbatch, &st, 0), sbatch);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                  "the killed master's sbatch went on (%s %d)",
                  WIFSIGNALED(st) ? "killed by signal" : "exit",
                  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    char *jobfile = h_path(c, "job.1001");
    ck_assert_msg(access(jobfile, F_OK) != 0, "the killed master's sbatch submitted 1001");
    /* The restarted master submits the one allocation. */
    s_master_start(c, FAST);
    ck_assert_msg(H_POLL(access(jobfile, F_OK) == 0, 15000), "no sbatch after the restart");
    free(jobfile);
    ck_assert_msg(H_POLL(s_alloc_is(c, 0, "queued"), 15000), "allocation 1001 not followed");
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_held_job_makes_no_allocation_until_it_is_released, 120)
{
    h_cluster_t *c = h_cluster_new("allocheld");
    h_fake_slurm(c);
    s_squeue_from_script(c);
    /* An allocation of the queue, running with no worker yet (found by the
       first poll): squeue runs every 5 s (scaled) from then on, the clock
       below. */
    s_write(c, "squeue.txt", "999 RUNNING ztask-alloc-1\n");
    s_master_start(c, FAST);
    h_run_t *r = h_cli(c, "alloc", "add", "slurm", "--time-limit", "10m", "--max-workers", "3",
                       "--backlog", "2", "--idle-timeout", "2m", NULL);
    ck_assert_msg(r->rc == 0, "alloc add: %s", h_run_desc(r));
    h_run_free(&r);
    r = h_cli(c, "alloc", "pause", "1", NULL);
    ck_assert_msg(r->rc == 0, "alloc pause: %s", h_run_desc(r));
    h_run_free(&r);
    int64_t job = h_submit(c, NULL, "--array", "1-5", "--", "true", NULL);
    char jobarg[32];
    snprintf(jobarg, sizeof jobarg, "%lld", (long long) job);
    r = h_cli(c, "hold", jobarg, NULL);
    ck_assert_msg(r->rc == 0, "hold: %s", h_run_desc(r));
    h_run_free(&r);
    r = h_cli(c, "alloc", "resume", "1", NULL);
    ck_assert_msg(r->rc == 0, "alloc resume: %s", h_run_desc(r));
    h_run_free(&r);
    /* Held tasks wait for a release, not for workers: two polls (10 s of
       ticks, scaled) and no sbatch. */
    ck_assert(H_POLL(s_alloc_is(c, 0, "running"), 15000));
    int polls = s_lines(c, "squeue.log");
    ck_assert(H_POLL(s_lines(c, "squeue.log") >= polls + 2, 30000));
    ck_assert_int_eq(s_lines(c, "sbatch.log"), 0);
    /* Released, they want a worker. */
    r = h_cli(c, "release", jobarg, NULL);
    ck_assert_msg(r->rc == 0, "release: %s", h_run_desc(r));
    h_run_free(&r);
    ck_assert_msg(H_POLL(s_lines(c, "sbatch.log") == 1, 15000), "no sbatch after the release");
    h_cluster_destroy(&c);
}
END_TEST

/* `alloc add`: the new queue's id. */
static int64_t s_add_queue(h_cluster_t *c)
{
    h_run_t *r = h_cli(c, "alloc", "add", "slurm", "--time-limit", "10m", "--json", NULL);
    ck_assert_msg(r->rc == 0, "alloc add: %s", h_run_desc(r));
    cJSON *q = h_json_first(r->out);
    ck_assert_ptr_nonnull(q);
    int64_t id = h_jint(q, "id", 0);
    cJSON_Delete(q);
    h_run_free(&r);
    return id;
}

static void s_remove_queue(h_cluster_t *c, int64_t id)
{
    char arg[32];
    snprintf(arg, sizeof arg, "%lld", (long long) id);
    h_run_t *r = h_cli(c, "alloc", "remove", arg, NULL);
    ck_assert_msg(r->rc == 0, "alloc remove %s: %s", arg, h_run_desc(r));
    h_run_free(&r);
}

/* The ids of `alloc list --json`, "1 2 " (a request flushes the journal
   before it is answered: what it lists is committed). */
static char *s_queue_ids(h_cluster_t *c)
{
    static char ids[256];
    h_run_t *r = h_cli(c, "alloc", "list", "--json", NULL);
    ck_assert_msg(r->rc == 0, "alloc list: %s", h_run_desc(r));
    cJSON *qs = h_json_lines(r->out);
    size_t n = 0;
    ids[0] = '\0';
    const cJSON *q;
    cJSON_ArrayForEach(q, qs)
        n += (size_t) snprintf(ids + n, sizeof ids - n, "%lld ", (long long) h_jint(q, "id", 0));
    cJSON_Delete(qs);
    h_run_free(&r);
    return ids;
}

/* A script that holds an old queue id must never reach a new queue, nor
   may logs and metrics mix two queues under one id: ids are not reused,
   even once the newest (or every) queue was removed and the master
   restarted, by kill -9 or SIGTERM. */
START_TIMED_TEST(an_alloc_queue_id_is_never_given_twice_even_across_a_master_restart, 60)
{
    h_cluster_t *c = h_cluster_new("allocids");
    /* The queues poll squeue: the stand-in, not a Slurm that may be
       installed here without a controller (its squeue looks slurmctld up
       in the DNS). */
    h_fake_slurm(c);
    h_master_start(c, 0, NULL);
    for (int i = 1; i <= 3; i++)
        ck_assert_int_eq(s_add_queue(c), i);
    s_remove_queue(c, 3);
    ck_assert_str_eq(s_queue_ids(c), "1 2 ");
    h_proc_kill9(h_master(c));
    h_master_start(c, 0, NULL);
    ck_assert_str_eq(s_queue_ids(c), "1 2 ");
    ck_assert_msg(s_add_queue(c) == 4, "queue 3 was removed: its id was given again");

    /* Every queue removed: the next id still goes up. */
    for (int i = 1; i <= 4; i++)
        if (i != 3)
            s_remove_queue(c, i);
    ck_assert_str_eq(s_queue_ids(c), "");
    h_proc_stop(h_master(c), 20000);
    h_master_start(c, 0, NULL);
    ck_assert_msg(s_add_queue(c) == 5, "with no queue left, an old id was given again");
    h_cluster_destroy(&c);
}
END_TEST

/* --alloc-time-scale is for tests and tuning, within reason: a typo must
   not make the master hammer slurmctld (or never poll it). */
START_TIMED_TEST(a_master_refuses_an_alloc_time_scale_out_of_its_range, 60)
{
    char bin[1024];
    snprintf(bin, sizeof bin, "%s/ztask-master", h_bin_dir());
    static const char *const bad[] = {"0", "0.001", "101", "-1", "fast", "1x", "nan", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *const argv[] = {bin, "--db", ":memory:", "--port", "0", "--alloc-time-scale",
                              (char *) bad[i], NULL};
        h_run_t *r = h_run(argv, NULL, 20000);
        ck_assert_msg(r->rc == 2 && strstr(r->err, "--alloc-time-scale wants a factor from 0.01 "
                                                   "to 100"),
                      "--alloc-time-scale '%s': %s", bad[i], h_run_desc(r));
        h_run_free(&r);
    }
}
END_TEST

/* Below 1 the command limit and the grace are shorter than a real
   slurmctld may need: a master run so says it at warn, with what goes
   wrong; above 1 (tuning) the scaled timings are info. */
START_TIMED_TEST(a_master_with_alloc_timings_below_production_warns_that_they_are_for_tests, 60)
{
    h_cluster_t *c = h_cluster_new("allocscale");
    h_proc_t *m = h_master_start(c, 0, "--alloc-time-scale", "0.5", NULL);
    char want[400];
    snprintf(want, sizeof want,
             "WARN ztask-master[%d] event=alloc_time_scale scale=0.5 tick_ms=500 "
             "squeue_every_ms=2500 command_limit_ms=15000 backoff_s=2.5..300 grace_s=15 "
             "note=\"below 1 is for tests",
             (int) h_proc_pid(m));
    ck_assert_msg(h_proc_wait_log(m, want, 1, 10000), "no line %s (log %s)", want,
                  h_proc_log(m));
    h_proc_stop(m, 20000);
    m = h_master_start(c, 0, "--alloc-time-scale", "2", NULL);
    snprintf(want, sizeof want,
             "INFO ztask-master[%d] event=alloc_time_scale scale=2 tick_ms=2000 "
             "squeue_every_ms=10000 command_limit_ms=60000 backoff_s=10..1200 grace_s=60",
             (int) h_proc_pid(m));
    ck_assert_msg(h_proc_wait_log(m, want, 1, 10000) && h_proc_count_log(m, "below 1") == 0,
                  "no line %s (log %s)", want, h_proc_log(m));
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(alloc_add_refuses_what_cannot_work, 60)
{
    h_cluster_t *c = h_cluster_new("allocbad");
    h_master_start(c, 0, NULL);
    static const char *const bad[][10] = {
        {"alloc", "add", "pbs", "--time-limit", "1h", NULL},
        {"alloc", "add", "slurm", NULL},
        {"alloc", "add", "slurm", "--time-limit", "30s", NULL},
        {"alloc", "add", "slurm", "--time-limit", "1h", "--idle-timeout", "2h", NULL},
        {"alloc", "add", "slurm", "--time-limit", "1h", "--max-workers", "2",
         "--workers-per-alloc", "4", NULL},
        {"alloc", "add", "slurm", "--time-limit", "1h", "--partition=x", NULL},
        {"alloc", "add", "slurm", "--time-limit", "30d", "--idle-timeout", "21d", NULL},
        {"alloc", "frobnicate", NULL},
        {"alloc", "pause", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        h_run_t *r = h_cliv(c, bad[i], 20000);
        ck_assert_msg(r->rc == 2 && strstr(r->err, "ztask alloc"), "case %zu: %s", i,
                      h_run_desc(r));
        h_run_free(&r);
    }
    /* A batch script too long for the pipe that carries it to sbatch. */
    static char big[4001];
    memset(big, 'x', sizeof big - 1);
    char arg[4100];
    snprintf(arg, sizeof arg, "--worker-arg=--name=%s", big);
    const char *many[32] = {"alloc", "add", "slurm", "--time-limit", "1h"};
    int n = 5;
    for (int i = 0; i < 12; i++)
        many[n++] = arg;
    many[n] = NULL;
    h_run_t *r = h_cliv(c, many, 20000);
    ck_assert_msg(r->rc == 4 && strstr(r->err, "batch script"), "%s", h_run_desc(r));
    h_run_free(&r);
    /* A worker's idle timeout fits its milliseconds in an int. */
    h_proc_t *w = h_worker_spawn(c, "idle", 1, "--idle-timeout", "21d", NULL);
    ck_assert_int_eq(h_proc_wait_exit(w, 10000), 2);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_alloc", h_slowdown()));
}
