/*  Unit tests for worker/reaper: the processes a worker recorded die with
    it, and a starting worker kills what a dead one (and its reaper) left,
    but nothing else.

    A "worker" here is a child process of the test that calls
    reaper_start, starts `sleep` processes in groups of their own with a
    task's ZTASK_* environment (or another), records them in its slots and
    sends their pids to the test, which then kills it -9. The test process
    is a child subreaper, so every orphan comes back to it; "gone" means
    dead or a zombie. Waiting for a process of someone else's to die is
    polling with a deadline: nothing of ours can announce it. */
#include "../../worker/reaper.h"

#include "../../common/clock.h"
#include "../../common/util.h"

#include "../ztest.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define GONE_MS 5000

static bool s_gone(pid_t pid)
{
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return !rp || rp[2] == 'Z' || rp[2] == 'X';
}

static bool s_wait_gone(pid_t pid, int ms)
{
    int64_t deadline = clock_mono_ms() + ms;
    while (!s_gone(pid)) {
        if (clock_mono_ms() >= deadline)
            return false;
        usleep(10 * 1000);
    }
    return true;
}

static void s_reap_all(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static char *s_tempdir(void)
{
    char *dir = xstrdup("/tmp/ztask-reaper-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    return dir;
}

static int s_count_files(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void s_rmdir_all(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                char *p = xasprintf("%s/%s", dir, e->d_name);
                unlink(p);
                free(p);
            }
        closedir(d);
    }
    rmdir(dir);
}

/* In a worker child: `sleep 60` in a group of its own with this task's
   environment (task < 0: an environment that names no task). Returns
   once it has exec'd: until then the child holds the worker's
   descriptors, the state file's lock among them. The strings are made
   before the fork: the child only execs (after a fork in a sanitizer
   build, anything more may deadlock). */
static pid_t s_start_sleep(int64_t task, int64_t job, int attempt)
{
    char e[3][64];
    snprintf(e[0], sizeof e[0], "ZTASK_TASK_ID=%lld", (long long) (task < 0 ? 999 : task));
    snprintf(e[1], sizeof e[1], "ZTASK_JOB_ID=%lld", (long long) job);
    snprintf(e[2], sizeof e[2], "ZTASK_ATTEMPT=%d", attempt);
    char *envp[] = {e[0], e[1], e[2], NULL};
    int execd[2];
    if (pipe2(execd, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        execle("/bin/sleep", "sleep", "60", (char *) NULL, envp);
        _exit(127);
    }
    close(execd[1]);
    if (pid > 0) {
        setpgid(pid, pid);
        char c;
        while (read(execd[0], &c, 1) < 0 && errno == EINTR)
            ;                     /* end of file: the exec closed it */
    }
    close(execd[0]);
    return pid;
}

/* What a worker child records: slot i runs a sleep for (task, job, attempt),
   and `as` says which task the slot claims it is (as != task: a group
   number reused by someone else since). */
typedef struct {
    int64_t task, job, as;
    int attempt;
} rec_t;

typedef struct {
    pid_t worker, reaper;
    pid_t sleeps[4];
} worker_t;

/* Forks a worker child that records n sleeps and stays until killed. */
static worker_t s_worker(const char *dir, const rec_t *recs, int n)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        char err[512];
        reaper_t *r = reaper_start(dir, n, err, sizeof err);
        if (!r)
            _exit(1);
        pid_t msg[5] = {reaper_pid(r)};
        for (int i = 0; i < n; i++) {
            msg[i + 1] = s_start_sleep(recs[i].task, recs[i].job, recs[i].attempt);
            reaper_slot_t *slot = reaper_slot(r, i);
            slot->task = recs[i].as;
            slot->job = recs[i].job;
            slot->attempt = recs[i].attempt;
            atomic_store(&slot->pgid, msg[i + 1]);
        }
        if (write(p[1], msg, sizeof msg) != (ssize_t) sizeof msg)
            _exit(1);
        for (;;)
            pause();
    }
    close(p[1]);
    worker_t w = {.worker = pid};
    pid_t msg[5];
    ck_assert_int_eq(read(p[0], msg, sizeof msg), (ssize_t) sizeof msg);
    close(p[0]);
    w.reaper = msg[0];
    for (int i = 0; i < n; i++)
        w.sleeps[i] = msg[i + 1];
    return w;
}

/* A worker's reaper: killed, then (once its worker is gone, it is
   orphaned to us, the subreaper) reaped by s_reap_orphan. */
static void s_kill9(pid_t pid)
{
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
}

/* Waits for an orphan of ours to be reaped: every one of its threads has
   then exited and closed its files. */
static void s_reap_orphan(pid_t pid)
{
    int64_t deadline = clock_mono_ms() + GONE_MS;
    pid_t r;
    while ((r = waitpid(pid, NULL, WNOHANG)) == 0 && clock_mono_ms() < deadline)
        usleep(10 * 1000);
    ck_assert_int_eq(r, pid);
}

/* A worker child: reaped, which waits for every one of its threads (a
   sanitizer's too) to have exited and closed its files; its main thread
   alone can be a zombie before then. */
static void s_kill9_child(pid_t pid)
{
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
}

START_TEST(the_groups_a_worker_recorded_die_with_it)
{
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    char *dir = s_tempdir();
    rec_t recs[2] = {{.task = 11, .job = 3, .as = 11, .attempt = 1},
                     {.task = 12, .job = 3, .as = 12, .attempt = 2}};
    worker_t w = s_worker(dir, recs, 2);
    ck_assert_int_eq(s_count_files(dir), 1);
    ck_assert(!s_gone(w.sleeps[0]) && !s_gone(w.sleeps[1]));

    s_kill9_child(w.worker);
    ck_assert_msg(s_wait_gone(w.sleeps[0], GONE_MS) && s_wait_gone(w.sleeps[1], GONE_MS),
                  "a recorded group outlived its worker");
    s_reap_orphan(w.reaper);
    s_reap_all();
    ck_assert_int_eq(s_count_files(dir), 0);   /* the reaper removed the state file */
    s_rmdir_all(dir);
    free(dir);
}
END_TEST

START_TEST(a_starting_worker_kills_only_what_a_dead_worker_left_running)
{
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    char *dir = s_tempdir();
    /* The dead worker: slot 0 is its task; slot 1's group number now
       belongs to a process that is not that task (task 21 claimed, 999
       found). */
    rec_t dead[2] = {{.task = 20, .job = 4, .as = 20, .attempt = 1},
                     {.task = -1, .job = 4, .as = 21, .attempt = 1}};
    worker_t d = s_worker(dir, dead, 2);
    /* A live worker with a task of its own, on the same host. */
    rec_t live[1] = {{.task = 30, .job = 5, .as = 30, .attempt = 1}};
    worker_t l = s_worker(dir, live, 1);
    ck_assert_int_eq(s_count_files(dir), 2);

    s_kill9(d.reaper);
    s_kill9_child(d.worker);
    s_reap_orphan(d.reaper);
    ck_assert(!s_gone(d.sleeps[0]));   /* nobody killed it */

    char err[512];
    reaper_t *r = reaper_start(dir, 1, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_msg(s_wait_gone(d.sleeps[0], GONE_MS), "the dead worker's task still runs");
    ck_assert_msg(!s_gone(d.sleeps[1]), "a group that is no longer the task's was killed");
    ck_assert_msg(!s_gone(l.sleeps[0]), "a live worker's task was killed");
    ck_assert_int_eq(s_count_files(dir), 2);   /* the live worker's and ours */

    reaper_stop(&r);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(s_count_files(dir), 1);
    s_kill9_child(l.worker);
    ck_assert(s_wait_gone(l.sleeps[0], GONE_MS));
    kill(d.sleeps[1], SIGKILL);
    ck_assert(s_wait_gone(d.sleeps[1], GONE_MS));
    s_reap_orphan(l.reaper);
    s_reap_all();
    s_rmdir_all(dir);
    free(dir);
}
END_TEST

START_TEST(stop_removes_the_state_file_and_the_reaper)
{
    char *dir = s_tempdir();
    char err[512];
    reaper_t *r = reaper_start(dir, 4, err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    pid_t rp = reaper_pid(r);
    ck_assert_int_gt(rp, 1);
    ck_assert_ptr_nonnull(reaper_slot(r, 3));
    ck_assert_ptr_null(reaper_slot(r, 4));
    ck_assert_int_eq(s_count_files(dir), 1);
    reaper_stop(&r);
    ck_assert_int_eq(s_count_files(dir), 0);
    errno = 0;
    ck_assert_int_eq(kill(rp, 0), -1);   /* reaped by reaper_stop */
    ck_assert_int_eq(errno, ESRCH);
    reaper_stop(&r);                       /* NULL is fine */
    s_rmdir_all(dir);
    free(dir);
}
END_TEST

START_TEST(a_state_directory_others_may_write_is_refused)
{
    char *dir = s_tempdir();
    ck_assert_int_eq(chmod(dir, 0777), 0);
    char err[512] = "";
    ck_assert_ptr_null(reaper_start(dir, 1, err, sizeof err));
    ck_assert_msg(strstr(err, "mode 0700") && strstr(err, "--state-dir"), "error: %s", err);
    char *missing = xasprintf("%s/no/such", dir);
    ck_assert_ptr_null(reaper_start(missing, 1, err, sizeof err));
    ck_assert_msg(strstr(err, "cannot create the state directory"), "error: %s", err);
    free(missing);
    s_rmdir_all(dir);
    free(dir);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "reaper", .tcase = "reaper", .timeout_s = 60 });
}
