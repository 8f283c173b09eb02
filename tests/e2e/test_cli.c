/*  e2e cli: the programs meet their user. An unreachable master is
    reported at once (refused, no such host) and only a silent one is
    waited for; option mistakes say what was meant; a shell line given as
    one word says --shell; keygen makes its directory; a worker with an
    unreadable per-user config file warns and runs; a second master on a
    database is refused at once, and one refused for a busy port leaves no
    database behind. */
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

/* Runs the CLI with args (NULL-terminated) against addr, killed after
   timeout_ms; caller frees. */
static h_run_t *s_cli_at(const char *addr, const char *const *args, int timeout_ms)
{
    const char *argv[24] = { "--master", addr };
    int n = 2;
    for (int k = 0; args[k]; k++) {
        ck_assert_int_lt(n, 23);
        argv[n++] = args[k];
    }
    argv[n] = NULL;
    return h_cliv(NULL, argv, timeout_ms);
}

/* The first case reads as a usage example: with a request timeout of ten
   minutes, a refused connection and a host name that does not resolve
   still end at once (the run is killed long before the timeout), each
   with its own words and exit 3; a peer that accepts and says nothing is
   what the timeout is for. */
START_TIMED_TEST(an_unreachable_master_is_reported_at_once_and_only_a_silent_one_waits, 90)
{
    int closed_port, silent_port;
    int closed = h_loopback_socket(false, &closed_port);
    int silent = h_loopback_socket(true, &silent_port);
    char addr[64];
    const char *jobs_600[] = { "--request-timeout", "600", "jobs", NULL };

    snprintf(addr, sizeof addr, "127.0.0.1:%d", closed_port);
    h_run_t *r = s_cli_at(addr, jobs_600, 20000);
    ck_assert_msg(r->rc == 3, "refused: want exit 3 before the timeout: %s", h_run_desc(r));
    ck_assert_msg(strstr(r->err, "connection refused") && strstr(r->err, addr),
                  "refused: says so: %s", r->err);
    h_run_free(&r);

    r = s_cli_at("no-such-host.invalid:5555", jobs_600, 20000);
    ck_assert_msg(r->rc == 3, "no such host: want exit 3 before the timeout: %s", h_run_desc(r));
    ck_assert_msg(strstr(r->err, "'no-such-host.invalid' not found"), "no such host: says so: %s",
                  r->err);
    h_run_free(&r);

    /* A socket directory where no master listens: refused too. */
    r = s_cli_at("ipc:///nonexistent/ztask-test", jobs_600, 20000);
    ck_assert_msg(r->rc == 3 && strstr(r->err, "connection refused"), "ipc: %s", h_run_desc(r));
    h_run_free(&r);

    snprintf(addr, sizeof addr, "127.0.0.1:%d", silent_port);
    const char *jobs_1[] = { "--request-timeout", "1", "jobs", NULL };
    r = s_cli_at(addr, jobs_1, 20000);
    ck_assert_msg(r->rc == 3, "silent peer: want exit 3: %s", h_run_desc(r));
    ck_assert_msg(strstr(r->err, "no reply within 1 s"), "silent peer: waits the timeout: %s",
                  r->err);
    h_run_free(&r);
    close(closed);
    close(silent);
}
END_TEST

/* `ztask wait --timeout` bounds each request by its timeout (exit 5, "did
   not finish"): right for a master that was reached, whose job is slow.
   One that was never reached by then (a host that drops the packets: a
   listener whose accept queue is full, so the kernel drops every SYN
   after it) says nothing of the job: that is exit 3, "cannot reach the
   master" and what to set, as without --timeout (it said "job 1 did not
   finish within 1 s; it keeps running", exit 5). */
START_TIMED_TEST(a_wait_that_never_reaches_the_master_by_its_timeout_says_it_cannot_reach_it, 60)
{
    int port;
    int lfd = h_loopback_socket(true, &port);
    ck_assert_int_eq(listen(lfd, 0), 0);
    /* Fills the accept queue (one connection with backlog 0; two to be
       sure): nothing more gets past the SYN. */
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fillers[2];
    for (int i = 0; i < 2; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fillers[i], 0);
        connect(fillers[i], (struct sockaddr *) &sa, sizeof sa);   /* EINPROGRESS or done */
    }
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    const char *wait_1[] = { "--request-timeout", "600", "wait", "1", "--timeout", "1", NULL };
    h_run_t *r = s_cli_at(addr, wait_1, 20000);
    ck_assert_msg(r->rc == 3, "never reached: want exit 3 at the wait's timeout: %s",
                  h_run_desc(r));
    ck_assert_msg(strstr(r->err, "cannot reach the master at") && strstr(r->err, addr)
                      && strstr(r->err, "set --master or ZTASK_MASTER")
                      && !strstr(r->err, "did not finish"),
                  "never reached: says so and what to do: %s", r->err);
    h_run_free(&r);
    for (int i = 0; i < 2; i++)
        close(fillers[i]);
    close(lfd);

    /* A real master, reached, whose job (no worker) does not finish: the
       wait's own exit 5. */
    h_cluster_t *c = h_cluster_new("cli_wait_reached");
    h_master_start(c, 0, NULL);
    int64_t job = h_submit(c, NULL, "--", "true", NULL);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) job);
    r = h_cliv(c, (const char *[]){ "wait", id, "--timeout", "1", NULL }, 20000);
    ck_assert_msg(r->rc == 5 && strstr(r->err, "did not finish within 1 s"),
                  "reached: want exit 5: %s", h_run_desc(r));
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

/* A wait that already talked to the master rides out its restart: a
   refused connection then means "restarting", not "wrong address". */
START_TIMED_TEST(wait_rides_out_a_master_restart_on_the_same_port, 120)
{
    h_cluster_t *c = h_cluster_new("cli_restart");
    int base = h_free_base_port();
    h_master_start(c, base, NULL);
    h_worker_start(c, "w", 1, NULL);
    char *go = h_path(c, "go");
    char *cmd = NULL;
    ck_assert_int_gt(asprintf(&cmd, "while [ ! -e %s ]; do sleep 0.05; done", go), 0);
    int64_t job = h_submit(c, NULL, "--shell", cmd, NULL);
    ck_assert(H_POLL(h_status_count(c, job, "running") == 1, 20000));

    /* wait in the background (a child of ours), the master killed and
       restarted under it. */
    char *bin = NULL, *jobtext = NULL, *out = h_path(c, "wait.out");
    ck_assert_int_gt(asprintf(&bin, "%s/ztask", h_bin_dir()), 0);
    ck_assert_int_gt(asprintf(&jobtext, "%lld", (long long) job), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        FILE *f = freopen(out, "w", stderr);
        (void) f;
        execl(bin, bin, "--master", h_master_addr(c), "--request-timeout", "30", "wait", jobtext,
              (char *) NULL);
        _exit(127);
    }
    /* Its first progress line (after 5 s off a terminal) says it has
       talked to the master. */
    char *line = NULL;
    ck_assert_int_gt(asprintf(&line, "job %s:", jobtext), 0);
    ck_assert(H_POLL(({
                         char *t = h_read_file(out);
                         bool seen = t && strstr(t, line);
                         free(t);
                         seen;
                     }),
                     20000));
    free(line);
    h_proc_kill9(h_master(c));
    h_master_start(c, base, NULL);
    h_write_file(go, "");
    int status = 0;
    int64_t deadline = h_now_ms() + h_ms(60000);
    pid_t got = 0;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && h_now_ms() < deadline)
        h_nap(50);
    if (got == 0)
        kill(pid, SIGKILL);
    char *err = h_read_file(out);
    ck_assert_msg(got == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "wait across the restart: status %d, stderr: %s", status, err ? err : "");
    free(err);
    free(out);
    free(bin);
    free(jobtext);
    free(cmd);
    free(go);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(option_mistakes_say_what_was_meant, 60)
{
    int port;
    int fd = h_loopback_socket(false, &port);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    static const struct {
        const char *args[8];
        const char *says[3];
    } cases[] = {
        /* An abbreviation that could be several options names them all. */
        { { "submit", "--w", "--", "true", NULL }, { "'--w'", "--wait or --wait-timeout", NULL } },
        /* A unique prefix is not taken for the option it begins. */
        { { "submit", "--output", "out-{}.txt", "--", "true", NULL },
          { "'--output'", "not abbreviated", "--output-cap" } },
        { { "submit", "--output=out-{}.txt", "--", "true", NULL }, { "--output-cap", NULL } },
        /* A misspelling gets the closest option, and command. */
        { { "submit", "--reties", "3", "--", "true", NULL }, { "did you mean --retries", NULL } },
        { { "sbumit", "--", "true", NULL }, { "did you mean 'submit'", NULL } },
        { { "help", "wiat", NULL }, { "did you mean 'wait'", NULL } },
        /* Nothing near: no guess. */
        { { "frobnicate", NULL }, { "unknown command 'frobnicate'", NULL } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        h_run_t *r = s_cli_at(addr, cases[i].args, 20000);
        ck_assert_msg(r->rc == 2, "case %zu: want exit 2: %s", i, h_run_desc(r));
        for (int k = 0; k < 3 && cases[i].says[k]; k++)
            ck_assert_msg(strstr(r->err, cases[i].says[k]), "case %zu: stderr lacks \"%s\": %s", i,
                          cases[i].says[k], r->err);
        if (i == 6)
            ck_assert_msg(!strstr(r->err, "did you mean"), "no guess: %s", r->err);
        h_run_free(&r);
    }
    close(fd);
}
END_TEST

START_TIMED_TEST(a_shell_line_given_as_one_word_fails_with_a_hint_at_shell, 60)
{
    h_cluster_t *c = h_cluster_new("cli_shell_hint");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "w", 1, NULL);
    /* Submitted (a program may be called that), with a warning. */
    h_run_t *r = h_cli(c, "submit", "--json", "--", "echo 1 | wc -c", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->err, "warning") && strstr(r->err, "--shell"),
                  "submit: %s", h_run_desc(r));
    cJSON *sub = h_json_first(r->out);
    int64_t job = h_jint(sub, "job", 0);
    cJSON_Delete(sub);
    h_run_free(&r);
    ck_assert_int_gt(job, 0);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);
    cJSON *res = h_results(c, job, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(res), 1);
    const char *err = h_jstr(cJSON_GetArrayItem(res, 0), "error");
    ck_assert_msg(err && strstr(err, "cannot execute 'echo 1 | wc -c'") && strstr(err, "--shell"),
                  "error: %s", err ? err : "(none)");
    cJSON_Delete(res);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(keygen_creates_its_directory_private, 30)
{
    h_cluster_t *c = h_cluster_new("cli_keygen_dir");
    char *dir = h_path(c, "home/ana/.config/ztask");
    const char *args[] = { "keygen", "ana", "--dir", dir, NULL };
    h_run_t *r = h_cliv(NULL, args, 20000);
    ck_assert_msg(r->rc == 0, "keygen into a missing directory: %s", h_run_desc(r));
    h_run_free(&r);
    struct stat st;
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert_msg((st.st_mode & 07777) == 0700, "mode %o", st.st_mode & 07777);
    char *key = NULL, *pub = NULL;
    ck_assert_int_gt(asprintf(&key, "%s/ana.key", dir), 0);
    ck_assert_int_gt(asprintf(&pub, "%s/ana.pub", dir), 0);
    ck_assert_int_eq(access(key, R_OK), 0);
    ck_assert_int_eq(access(pub, R_OK), 0);
    /* A file where the directory should be: a clear error, exit 2. */
    char *file = h_path(c, "plain");
    h_write_file(file, "x");
    const char *bad[] = { "keygen", "bob", "--dir", file, NULL };
    r = h_cliv(NULL, bad, 20000);
    ck_assert_msg(r->rc == 2 && strstr(r->err, "cannot create directory"), "%s", h_run_desc(r));
    h_run_free(&r);
    free(file);
    free(key);
    free(pub);
    free(dir);
    h_cluster_destroy(&c);
}
END_TEST

/* The per-user file exists but cannot be read (here a directory in its
   place; for a daemon it is typically another user's $HOME): the worker
   and the CLI say so and carry on. */
START_TIMED_TEST(an_unreadable_home_config_is_skipped_with_a_warning, 60)
{
    h_cluster_t *c = h_cluster_new("cli_home_config");
    h_master_start(c, 0, NULL);
    char *home = h_path(c, "home");
    char *cfg = h_path(c, "home/.config/ztask/config");
    const char *mk[] = { "/bin/mkdir", "-p", cfg, NULL };
    h_run_t *r = h_run((char *const *) mk, NULL, 10000);
    ck_assert_int_eq(r->rc, 0);
    h_run_free(&r);
    setenv("HOME", home, 1);
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("ZTASK_CONFIG");

    h_proc_t *w = h_worker_start(c, "w", 1, NULL);
    ck_assert(h_proc_wait_log(w, "event=config_skipped", 1, 5000));
    ck_assert_int_eq(h_proc_count_log(w, cfg), 1);
    r = h_cli(c, "workers", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    ck_assert_msg(strstr(r->err, "warning") && strstr(r->err, cfg), "CLI warns: %s", r->err);
    h_run_free(&r);
    free(home);
    free(cfg);
    h_cluster_destroy(&c);
}
END_TEST

/* Runs ztask-master on db and port (0 = any) until it exits; caller frees. */
static h_run_t *s_master_run(const char *db, int port, int timeout_ms)
{
    char bin[1024], portbuf[16];
    snprintf(bin, sizeof bin, "%s/ztask-master", h_bin_dir());
    snprintf(portbuf, sizeof portbuf, "%d", port);
    char *const argv[] = { bin, "--db", (char *) db, "--port", portbuf, "--bind", "127.0.0.1",
                           NULL };
    return h_run(argv, NULL, timeout_ms);
}

/* SQLite's busy timeout (5 s) is for a lock that will be given back; a
   running master never gives its database back, so a second one must
   stop at once (it is killed at 3 s here). */
START_TIMED_TEST(a_second_master_on_the_same_database_is_refused_at_once, 60)
{
    h_cluster_t *c = h_cluster_new("cli_second_master");
    h_master_start(c, 0, NULL);
    char *db = h_path(c, "master.db");
    h_run_t *r = s_master_run(db, 0, 3000);
    ck_assert_msg(r->rc == 1, "second master: want exit 1 at once: %s", h_run_desc(r));
    ck_assert_msg(strstr(r->err, "another ztask-master is using it"), "%s", r->err);
    h_run_free(&r);
    free(db);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_master_refused_for_a_busy_port_leaves_no_database, 60)
{
    h_cluster_t *c = h_cluster_new("cli_busy_port");
    h_master_start(c, 0, NULL);
    char *db = h_path(c, "second.db");
    h_run_t *r = s_master_run(db, h_api_port(c), 20000);
    ck_assert_msg(r->rc == 1, "busy port: want exit 1: %s", h_run_desc(r));
    struct stat st;
    ck_assert_msg(stat(db, &st) != 0, "%s was left behind (%lld bytes)", db,
                  (long long) st.st_size);
    h_run_free(&r);
    /* A database that was there before is kept, of course. */
    char *old = h_path(c, "master.db");
    r = s_master_run(old, h_api_port(c), 20000);
    ck_assert_int_ne(r->rc, 0);
    ck_assert_int_eq(stat(old, &st), 0);
    h_run_free(&r);
    free(old);
    free(db);
    h_cluster_destroy(&c);
}
END_TEST

/* ---- logs and results: what a task said, by an unambiguous name ---- */

START_TIMED_TEST(logs_takes_job_index_or_task_id_and_refuses_a_bare_number, 60)
{
    h_cluster_t *c = h_cluster_new("cli_logs_forms");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "w", 1, NULL);
    int64_t job = h_submit(c, NULL, "--array", "0-1", "--", "echo", "out-{}", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    cJSON *res = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(res, 2);
    char ref[48], id[32], bare[32];
    snprintf(ref, sizeof ref, "%lld.1", (long long) job);
    snprintf(id, sizeof id, "%lld", (long long) h_jint(by[1], "task", 0));
    snprintf(bare, sizeof bare, "%lld", (long long) job);
    free(by);
    cJSON_Delete(res);

    h_run_t *r = h_cli(c, "logs", ref, NULL);
    ck_assert_msg(r->rc == 0 && strcmp(r->out, "out-1\n") == 0, "logs %s: %s", ref,
                  h_run_desc(r));
    h_run_free(&r);
    r = h_cli(c, "logs", "--task", id, NULL);
    ck_assert_msg(r->rc == 0 && strcmp(r->out, "out-1\n") == 0, "logs --task %s: %s", id,
                  h_run_desc(r));
    h_run_free(&r);
    /* A bare number: job or task? Refused, with both readings. */
    r = h_cli(c, "logs", bare, NULL);
    ck_assert_msg(r->rc == 2 && strstr(r->err, "ambiguous") && strstr(r->err, "--task")
                      && strstr(r->err, ".0"),
                  "logs %s: %s", bare, h_run_desc(r));
    h_run_free(&r);
    r = h_cli(c, "logs", ref, "--task", id, NULL);
    ck_assert_msg(r->rc == 2, "both forms: %s", h_run_desc(r));
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(logs_and_results_say_why_a_task_failed, 60)
{
    h_cluster_t *c = h_cluster_new("cli_failure_words");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "w", 1, NULL);
    /* A function that fails: no output at all, only its error. */
    int64_t fn = h_submit(c, NULL, "--fn", "fail", "--args", "{\"message\":\"no input rows\"}",
                          NULL);
    ck_assert_int_eq(h_wait(c, fn, 30000), 1);
    char ref[48], want[96];
    snprintf(ref, sizeof ref, "%lld.0", (long long) fn);
    snprintf(want, sizeof want, "ztask: task %s failed: no input rows", ref);
    h_run_t *r = h_cli(c, "logs", ref, NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->err, want), "logs %s: %s", ref, h_run_desc(r));
    h_run_free(&r);

    /* A command that exits 2 after saying why on stderr: results shows
       its words, not "exited with status 2". */
    int64_t cmd = h_submit(c, NULL, "--shell", "echo 'grep: data.csv: No such file' >&2; exit 2",
                           NULL);
    ck_assert_int_eq(h_wait(c, cmd, 30000), 1);
    char jobtext[32];
    snprintf(jobtext, sizeof jobtext, "%lld", (long long) cmd);
    r = h_cli(c, "results", jobtext, NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "grep: data.csv: No such file")
                      && !strstr(r->out, "exited with status"),
                  "results: %s", h_run_desc(r));
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(results_failed_lists_cancelled_tasks_too, 60)
{
    h_cluster_t *c = h_cluster_new("cli_failed_cancelled");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "w", 1, NULL);
    /* Task 0 fails; tasks 1-3 wait for a worker thread and are cancelled. */
    char *go = h_path(c, "go");
    char *cmd = NULL;
    ck_assert_int_gt(asprintf(&cmd, "[ {} = 0 ] && exit 3; while [ ! -e %s ]; do sleep 0.05; done",
                              go),
                     0);
    int64_t job = h_submit(c, NULL, "--array", "0-3", "--shell", cmd, NULL);
    ck_assert(H_POLL(h_status_count(c, job, "failed") == 1, 20000));
    char jobtext[32];
    snprintf(jobtext, sizeof jobtext, "%lld", (long long) job);
    h_run_t *r = h_cli(c, "cancel", jobtext, NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    h_run_free(&r);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);
    cJSON *res = h_results(c, job, "--failed");
    ck_assert_int_eq(cJSON_GetArraySize(res), 4);
    int failed = 0, cancelled = 0;
    cJSON *t;
    cJSON_ArrayForEach(t, res)
    {
        const char *st = h_jstr(t, "status");
        failed += st && strcmp(st, "failed") == 0;
        cancelled += st && strcmp(st, "cancelled") == 0;
    }
    ck_assert_int_eq(failed, 1);
    ck_assert_int_eq(cancelled, 3);
    cJSON_Delete(res);
    free(cmd);
    free(go);
    h_cluster_destroy(&c);
}
END_TEST

/* ---- workers: who is there, who left, who died ---- */

/* The line of `ztask workers` (with extra args) for worker id, or NULL;
   caller frees. */
static char *s_worker_line(h_cluster_t *c, const char *id, const char *extra)
{
    h_run_t *r = h_cli(c, "workers", extra, NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    char *found = NULL;
    for (char *line = strtok(r->out, "\n"); line && !found; line = strtok(NULL, "\n"))
        if (strncmp(line, id, strlen(id)) == 0 && line[strlen(id)] == ' ')
            found = strdup(line);
    h_run_free(&r);
    return found;
}

static bool s_worker_says(h_cluster_t *c, const char *id, const char *text)
{
    char *line = s_worker_line(c, id, NULL);
    bool says = line && strstr(line, text);
    free(line);
    return says;
}

START_TIMED_TEST(a_worker_that_said_bye_has_left_and_a_killed_one_is_dead, 90)
{
    h_cluster_t *c = h_cluster_new("cli_workers_gone");
    h_master_start(c, 0, "--heartbeat-ms", "200", "--liveness", "3", NULL);
    h_proc_t *a = h_worker_start(c, "leaver", 1, NULL);
    h_proc_t *b = h_worker_start(c, "victim", 1, NULL);
    char *ida = strdup(h_worker_id(a)), *idb = strdup(h_worker_id(b));
    ck_assert(H_POLL(s_worker_says(c, ida, " alive ") && s_worker_says(c, idb, " alive "), 10000));

    h_proc_stop(a, 20000);          /* SIGTERM: drains, says bye, exits 0 */
    h_proc_kill9(b);                /* no bye: missed heartbeats */
    ck_assert(H_POLL(s_worker_says(c, ida, " left "), 10000));
    ck_assert(H_POLL(s_worker_says(c, idb, " dead "), 10000));

    h_run_t *r = h_cli(c, "workers", "--json", NULL);
    cJSON *all = h_json_lines(r->out);
    h_run_free(&r);
    int seen = 0;
    cJSON *w;
    cJSON_ArrayForEach(w, all)
    {
        const char *id = h_jstr(w, "worker");
        if (id && strcmp(id, ida) == 0) {
            ck_assert(h_jtrue(w, "left") && !h_jtrue(w, "alive"));
            ck_assert_int_gt(h_jint(w, "gone", 0), 0);
            seen++;
        } else if (id && strcmp(id, idb) == 0) {
            ck_assert(!h_jtrue(w, "left") && !h_jtrue(w, "alive"));
            seen++;
        }
    }
    ck_assert_int_eq(seen, 2);
    cJSON_Delete(all);
    /* Recently gone workers are listed by default, and with --all. */
    char *line = s_worker_line(c, ida, "--all");
    ck_assert_msg(line && strstr(line, " left "), "--all: %s", line ? line : "(none)");
    free(line);
    free(ida);
    free(idb);
    h_cluster_destroy(&c);
}
END_TEST

/* `ztask drain` right after a worker's hello, before its PULL has
   connected to its task pipe: the drain must still reach it (a PUSH with
   no peer refuses, and the message used to be dropped: the worker then
   stayed "draining" forever, taking nothing, never leaving). A raw worker
   here connects its PULL only after the drain. */
START_TIMED_TEST(a_drain_asked_before_the_workers_pipe_connects_still_reaches_it, 60)
{
    h_cluster_t *c = h_cluster_new("cli_early_drain");
    h_master_start(c, 0, "--liveness", "30", NULL);
    void *ctx = zmq_ctx_new();
    int zero = 0;
    void *api = zmq_socket(ctx, ZMQ_DEALER);
    zmq_setsockopt(api, ZMQ_LINGER, &zero, sizeof zero);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", h_api_port(c));
    ck_assert_int_eq(zmq_connect(api, ep), 0);
    const char *hello =
        "{\"v\":1,\"type\":\"hello\",\"name\":\"early\",\"host\":\"h\",\"pid\":1,\"threads\":1}";
    ck_assert_int_eq(zmq_send(api, hello, strlen(hello), 0), (int) strlen(hello));
    zmq_pollitem_t it = { api, 0, ZMQ_POLLIN, 0 };
    ck_assert_int_eq(zmq_poll(&it, 1, h_ms(10000)), 1);
    char buf[4096];
    int n = zmq_recv(api, buf, sizeof buf - 1, 0);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    cJSON *rep = h_json_first(buf);
    int64_t port = h_jint(rep, "task_port", 0);
    cJSON_Delete(rep);
    ck_assert_msg(port > 0, "hello reply: %s", buf);

    h_run_t *r = h_cli(c, "drain", "early", NULL);
    ck_assert_msg(r->rc == 0, "drain: %s", h_run_desc(r));
    h_run_free(&r);

    void *pull = zmq_socket(ctx, ZMQ_PULL);
    zmq_setsockopt(pull, ZMQ_LINGER, &zero, sizeof zero);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%lld", (long long) port);
    ck_assert_int_eq(zmq_connect(pull, ep), 0);
    bool drained = false;
    int64_t deadline = h_now_ms() + h_ms(10000);
    while (!drained && h_now_ms() < deadline) {
        zmq_pollitem_t p = { pull, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&p, 1, 200) != 1)
            continue;
        n = zmq_recv(pull, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n < (int) sizeof buf - 1 ? n : (int) sizeof buf - 1] = '\0';
            drained = strstr(buf, "\"drain\"") != NULL;
        }
    }
    ck_assert_msg(drained, "the drain never reached the worker's pipe (log %s)",
                  h_proc_log(h_master(c)));
    zmq_close(pull);
    zmq_close(api);
    zmq_ctx_term(ctx);
    h_cluster_destroy(&c);
}
END_TEST

/* A worker registers at once, and heartbeats once per interval: until the
   first, LAST-HEARTBEAT says so (not "never", not 1970). */
START_TIMED_TEST(a_worker_without_a_heartbeat_yet_says_none_yet, 60)
{
    h_cluster_t *c = h_cluster_new("cli_workers_first_beat");
    h_master_start(c, 0, "--heartbeat-ms", "60000", NULL);
    h_proc_t *w = h_worker_start(c, "slowbeat", 1, NULL);
    const char *id = h_worker_id(w);
    char *line = s_worker_line(c, id, NULL);
    ck_assert_msg(line && strstr(line, "none yet") && strstr(line, " alive "), "%s",
                  line ? line : "(none)");
    free(line);
    h_run_t *r = h_cli(c, "workers", "--json", NULL);
    cJSON *rec = h_json_first(r->out);
    ck_assert_ptr_nonnull(rec);
    cJSON *hb = cJSON_GetObjectItemCaseSensitive(rec, "last_heartbeat");
    ck_assert_msg(cJSON_IsNull(hb), "last_heartbeat: %s", r->out);
    cJSON_Delete(rec);
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

/* ---- make install: programs, man pages, completion, systemd units ---- */

static const char *s_src_dir(void)
{
    const char *d = getenv("ZTASK_SRC_DIR");
    return d && *d ? d : ".";
}

/* True when prog is on PATH (for the tools a test may lack). */
static bool s_have(const char *prog)
{
    char *const argv[] = { "/bin/sh", "-c", "command -v \"$0\" >/dev/null", (char *) prog,
                           NULL };
    h_run_t *r = h_run(argv, NULL, 10000);
    bool have = r->rc == 0;
    h_run_free(&r);
    return have;
}

/* Runs /bin/sh -c script with $1 = arg; caller frees. */
static h_run_t *s_sh(const char *script, const char *arg)
{
    char *const argv[] = { "/bin/sh", "-c", (char *) script, "sh", (char *) arg, NULL };
    return h_run(argv, NULL, 60000);
}

/* `make install PREFIX=DIR` of the build under test (its variant, and its
   version stamp, so nothing is rebuilt), then every installed piece used
   as a person would: the units verified by systemd, the pages rendered by
   man, the completion loaded by bash. */
START_TIMED_TEST(make_install_puts_pages_completion_and_units_under_the_prefix, 300)
{
    h_cluster_t *c = h_cluster_new("cli_install");
    char *prefix = h_path(c, "prefix");
    char build[1024];
    snprintf(build, sizeof build, "%s", h_bin_dir());
    char *slash = strrchr(build, '/');          /* .../build/VARIANT/bin */
    ck_assert_ptr_nonnull(slash);
    *slash = '\0';
    const char *variant = strrchr(build, '/') + 1;
    char stamp_path[1100];
    snprintf(stamp_path, sizeof stamp_path, "%s/version.stamp", build);
    char *stamp = h_read_file(stamp_path);
    ck_assert_msg(stamp != NULL, "no %s: is %s a make build?", stamp_path, build);
    stamp[strcspn(stamp, "\n")] = '\0';
    char *a_variant = NULL, *a_prefix = NULL, *a_version = NULL;
    ck_assert_int_gt(asprintf(&a_variant, "VARIANT=%s", variant), 0);
    ck_assert_int_gt(asprintf(&a_prefix, "PREFIX=%s", prefix), 0);
    ck_assert_int_gt(asprintf(&a_version, "ZTASK_VERSION=%s", stamp), 0);
    /* Not the jobserver of a `make test` this may run under. */
    char *const make[] = { "/usr/bin/env", "-u", "MAKEFLAGS", "-u", "MFLAGS", "-u", "MAKELEVEL",
                           "make", "--no-print-directory", "-C", (char *) s_src_dir(),
                           a_variant, a_prefix, a_version, "install", NULL };
    h_run_t *r = h_run(make, NULL, 240000);
    ck_assert_msg(r->rc == 0, "make install: %s", h_run_desc(r));
    h_run_free(&r);

    /* The units name the installed programs, keep a drained worker
       stopped, give tasks a writable directory, and pass systemd's check. */
    char *worker_unit = NULL, *want = NULL;
    ck_assert_int_gt(asprintf(&worker_unit, "%s/lib/systemd/system/ztask-worker.service", prefix),
                     0);
    char *unit = h_read_file(worker_unit);
    ck_assert_msg(unit != NULL, "no %s", worker_unit);
    ck_assert_int_gt(asprintf(&want, "ExecStart=%s/bin/ztask-worker ", prefix), 0);
    /* (Messages name the file, not its text: Check caps their length.) */
    ck_assert_msg(strstr(unit, want), "%s: no %s", worker_unit, want);
    ck_assert_msg(strstr(unit, "\nRestart=on-failure\n") && !strstr(unit, "\nRestart=always"),
                  "%s: a drained worker (exit 0) must stay stopped", worker_unit);
    /* Tasks run as ztask-task (--run-as), in its home: writable by it. */
    ck_assert_msg(strstr(unit, "\nWorkingDirectory=/var/lib/ztask-task\n")
                      && strstr(unit, "--run-as ztask-task"),
                  "%s: tasks need a working directory they may write", worker_unit);
    ck_assert_msg(!strstr(unit, "/usr/local/bin") && !strstr(unit, "@BINDIR@"),
                  "%s: a path not made for this prefix", worker_unit);
    free(unit);
    if (s_have("systemd-analyze")) {
        r = s_sh("systemd-analyze verify \"$1\"/lib/systemd/system/ztask-master.service "
                 "\"$1\"/lib/systemd/system/ztask-worker.service",
                 prefix);
        ck_assert_msg(r->rc == 0 && r->err_len == 0, "systemd-analyze verify: %s",
                      h_run_desc(r));
        h_run_free(&r);
    } else {
        printf("SKIP: systemd-analyze is not installed: the units were not verified\n");
    }

    /* The man pages render, ztask's with every command. */
    r = s_sh("for p in ztask ztask-master ztask-worker; do "
             "MANWIDTH=80 man -l \"$1/share/man/man1/$p.1\" || exit 1; done",
             prefix);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "COMMANDS") && strstr(r->out, "ztask submit")
                      && strstr(r->out, "--curve-secret") && strstr(r->out, "--threads"),
                  "man -l: %s", h_run_desc(r));
    h_run_free(&r);

    /* bash loads the completion and completes a command and an option
       (the installed ztask answers the --help it reads). */
    r = s_sh("PATH=\"$1/bin:$PATH\" bash -c '"
             ". \"$0/share/bash-completion/completions/ztask\" || exit 1; "
             "COMP_WORDS=(ztask sub); COMP_CWORD=1; _ztask; echo \"1:${COMPREPLY[*]}\"; "
             "COMP_WORDS=(ztask submit --arr); COMP_CWORD=2; _ztask; echo \"2:${COMPREPLY[*]}\"; "
             "COMP_WORDS=(ztask-worker --thr); COMP_CWORD=1; _ztask_daemon; "
             "echo \"3:${COMPREPLY[*]}\"' \"$1\"",
             prefix);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "1:submit\n") && strstr(r->out, "2:--array\n")
                      && strstr(r->out, "3:--threads\n"),
                  "bash completion: %s", h_run_desc(r));
    h_run_free(&r);
    if (s_have("zsh")) {
        r = s_sh("zsh -n \"$1/share/zsh/vendor-completions/_ztask\"", prefix);
        ck_assert_msg(r->rc == 0, "zsh -n: %s", h_run_desc(r));
        h_run_free(&r);
    }
    free(want);
    free(worker_unit);
    free(a_variant);
    free(a_prefix);
    free(a_version);
    free(stamp);
    free(prefix);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_cli", h_slowdown()));
}
