/*  e2e disk: the master's database on a small tmpfs that fills up while a
    job runs. The master says the disk is full and takes no new work until
    space returns; `status` (memory) and `results` (the database) never
    disagree: while the memory is ahead of the database neither answers.
    Needs root (a tmpfs in a mount namespace of its own, so nothing is left
    mounted whatever happens); without it the test says SKIP and passes. */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define CONTROL_TOKEN "control-token-0123456789abcdef"

/* Mounts a tmpfs of mb MiB at DIR/mnt in a private mount namespace;
   false (after saying SKIP) when this process may not. */
static bool s_small_disk(h_cluster_t *c, int mb, char **mnt)
{
    *mnt = h_path(c, "mnt");
    ck_assert_int_eq(mkdir(*mnt, 0755), 0);
    char opts[32];
    snprintf(opts, sizeof opts, "size=%dm", mb);
    if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0
        || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0
        || mount("tmpfs", *mnt, "tmpfs", 0, opts) != 0) {
        fprintf(stderr, "SKIP: %s: needs root to mount a %d MiB tmpfs (%s)\n", h_dir(c), mb,
                geteuid() != 0 ? "not root" : strerror(errno));
        return false;
    }
    return true;
}

/* A database path (db) on a 16 MiB tmpfs, and `fill` beside it to take
   the rest; false (after saying SKIP) when this process may not mount one. */
static bool s_db_on_small_disk(h_cluster_t *c, char db[600], char fill[600])
{
    char *mnt = NULL;
    bool ok = s_small_disk(c, 16, &mnt);
    snprintf(db, 600, "%s/m.db", mnt);
    snprintf(fill, 600, "%s/fill", mnt);
    free(mnt);
    return ok;
}

/* Writes path until the disk refuses another block. */
static void s_fill(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    static char zeros[65536];
    for (size_t chunk = sizeof zeros; chunk >= 512; chunk /= 8)
        while (write(fd, zeros, chunk) == (ssize_t) chunk)
            ;
    close(fd);
}

/* A submit of n tasks while the disk is full: refused, saying so. */
static void s_expect_refused(h_cluster_t *c, const char *n)
{
    h_run_t *r = h_cli(c, "submit", "--fn", "noop", "--array", n, NULL);
    ck_assert_msg(r->rc == 4 && strstr(r->err, "disk is full"),
                  "a submit on a full disk: want exit 4 and 'disk is full', got %s",
                  h_run_desc(r));
    h_run_free(&r);
}

/* When `status` answers, `results` (asked after it) says at least as much
   is finished, and nothing finished there is unfinished in status' count
   of what is left. Returns status' done count, or -1 when it was refused
   for the disk. */
static int64_t s_status_and_results_agree(h_cluster_t *c, int64_t job, int n)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long) job);
    h_run_t *st = h_cli(c, "status", id, "--json", NULL);
    if (st->rc != 0) {
        ck_assert_msg(st->rc == 4 && strstr(st->err, "cannot write its database"),
                      "status: %s", h_run_desc(st));
        h_run_free(&st);
        return -1;
    }
    cJSON *rec = h_json_first(st->out);
    int64_t done = h_jint(rec, "done", -1);
    cJSON_Delete(rec);
    h_run_free(&st);
    h_run_t *rr = h_cli(c, "results", id, "--json", NULL);
    if (rr->rc != 0) {
        ck_assert_msg(rr->rc == 4 && strstr(rr->err, "cannot write its database"),
                      "results: %s", h_run_desc(rr));
        h_run_free(&rr);
        return done;
    }
    cJSON *all = h_json_lines(rr->out);
    ck_assert_int_eq(cJSON_GetArraySize(all), n);
    int64_t rdone = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, all) rdone += strcmp(h_jstr(t, "status"), "done") == 0;
    cJSON_Delete(all);
    h_run_free(&rr);
    ck_assert_msg(rdone >= done, "status says %lld done, results only %lld", (long long) done,
                  (long long) rdone);
    return done;
}

START_TIMED_TEST(a_full_disk_stops_new_work_and_status_never_disagrees_with_results, 180)
{
    h_cluster_t *c = h_cluster_new("diskfull");
    char db[600], fill[600];
    if (!s_db_on_small_disk(c, db, fill)) {
        h_cluster_destroy(&c);
        return;
    }
    h_proc_t *m = h_master_start(c, 0, "--db", db, "--sync", "full", NULL);
    h_worker_start(c, "a", 2, NULL);
    const int n = 400;
    int64_t job = h_submit(c, NULL, "--fn", "sleep", "--args", "{\"seconds\":0.01}", "--array",
                           "0-399", NULL);
    s_fill(fill);
    /* The job's results need commits: one fails. */
    ck_assert_msg(h_proc_wait_log(m, "event=commit_failed", 1, 30000),
                  "no failed commit on a full disk (log %s)", h_proc_log(m));
    /* A `ztask wait` meanwhile waits through the disk's refusals. */
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long) job);
    h_proc_t *waiter = h_cli_start(c, "wait", id, NULL);
    /* New work is refused while the disk stays full (refilled before each
       try: a failed commit gives the WAL's blocks back). */
    for (int i = 0; i < 3; i++) {
        s_fill(fill);
        s_expect_refused(c, "0-1999");
    }
    /* Its tasks go on: whenever status answers, results agrees with it. */
    int64_t done = -1;
    for (int i = 0; i < 200 && done < n; i++) {
        done = s_status_and_results_agree(c, job, n);
        h_nap(50);
    }
    /* Space returns: the master says so and takes work again. */
    ck_assert_int_eq(unlink(fill), 0);
    ck_assert_msg(h_proc_wait_log(m, "event=storage_recovered", 1, 30000),
                  "no storage_recovered after freeing the disk (log %s)", h_proc_log(m));
    ck_assert_int_eq(h_wait(c, job, 60000), 0);
    ck_assert_int_eq(s_status_and_results_agree(c, job, n), n);
    ck_assert_msg(h_proc_wait_exit(waiter, 60000) == 0, "ztask wait failed (log %s)",
                  h_proc_log(waiter));
    ck_assert_msg(h_proc_count_log(waiter, "cannot write its database")
                      == h_proc_count_log(waiter, "still waiting for job"),
                  "ztask wait stopped at the disk's refusal (log %s)", h_proc_log(waiter));
    int64_t job2 = h_submit(c, NULL, "--fn", "noop", "--array", "0-99", NULL);
    ck_assert_int_eq(h_wait(c, job2, 60000), 0);
    ck_assert_int_eq(s_status_and_results_agree(c, job2, 100), 100);
    h_cluster_destroy(&c);
}
END_TEST

/* Lines of the file at path that are exactly line. */
static int s_lines(const char *path, const char *line)
{
    char *text = h_read_file(path);
    int n = 0;
    size_t len = strlen(line);
    for (char *p = text; p && *p;) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t) (nl - p) : strlen(p);
        n += l == len && strncmp(p, line, len) == 0;
        p = nl ? nl + 1 : p + l;
    }
    free(text);
    return n;
}

/* A task taken back from its worker (here: a failure to retry) goes out
   again only once its requeue is written. While commits fail (a full
   disk), those tasks wait out of the queue and the tasks behind them run:
   600 retries of a higher priority come first here (the dispatch used to
   pop each and put it back, at most 256 a turn, and what came after them
   never went). Once the disk has room again they go, once each. */
START_TIMED_TEST(tasks_waiting_for_their_requeue_commit_do_not_hold_up_the_others, 180)
{
    h_cluster_t *c = h_cluster_new("diskheld");
    char db[600], fill[600];
    if (!s_db_on_small_disk(c, db, fill)) {
        h_cluster_destroy(&c);
        return;
    }
    h_proc_t *m = h_master_start(c, 0, "--db", db, "--sync", "full", "--retry-backoff-ms", "0",
                                 NULL);
    h_worker_start(c, "a", 1, NULL);
    char *log = h_path(c, "runs"), *go = h_path(c, "go");
    char first[1024], behind[700];
    /* Each attempt says so, waits for go (60 s at most) and fails. */
    snprintf(first, sizeof first,
             "echo A $ZTASK_ATTEMPT >> '%s'; n=0; while [ ! -e '%s' ] && [ $n -lt 3000 ]; do "
             "sleep 0.02; n=$((n+1)); done; exit 1",
             log, go);
    snprintf(behind, sizeof behind, "echo B >> '%s'", log);
    int64_t ja = h_submit(c, NULL, "--priority", "10", "--retries", "1", "--array", "0-599", "--",
                          "sh", "-c", first, NULL);
    int64_t jb = h_submit(c, NULL, "--array", "0-1", "--", "sh", "-c", behind, NULL);
    ck_assert(H_POLL(s_lines(log, "A 1") == 1, 30000));
    /* The disk fills: a submit's commit fails, and so does every commit
       after it (refilled before each try: a failed commit gives the
       WAL's blocks back). */
    s_fill(fill);
    h_run_t *r = h_cli(c, "submit", "--fn", "noop", NULL);
    h_run_free(&r);
    ck_assert_msg(h_proc_wait_log(m, "event=commit_failed", 1, 30000),
                  "no failed commit on a full disk (log %s)", h_proc_log(m));
    for (int i = 0; i < 3; i++) {
        s_fill(fill);
        s_expect_refused(c, "0-1");
    }
    /* Every attempt of the first job fails now: 600 retries wait for
       their requeue's commit, and the second job runs meanwhile. */
    h_write_file(go, "");
    ck_assert_msg(H_POLL((s_fill(fill), s_lines(log, "B") == 2), 60000),
                  "the tasks behind the retries did not run (A 1: %d, A 2: %d, B: %d; log %s)",
                  s_lines(log, "A 1"), s_lines(log, "A 2"), s_lines(log, "B"), h_proc_log(m));
    ck_assert_int_eq(s_lines(log, "A 1"), 600);
    ck_assert_msg(s_lines(log, "A 2") == 0,
                  "a retry went out before its requeue was written (log %s)", h_proc_log(m));
    /* Space returns: each retry goes, once. */
    ck_assert_int_eq(unlink(fill), 0);
    ck_assert_msg(h_proc_wait_log(m, "event=storage_recovered", 1, 30000),
                  "no storage_recovered after freeing the disk (log %s)", h_proc_log(m));
    ck_assert_int_eq(h_wait(c, jb, 60000), 0);
    ck_assert_int_ne(h_wait(c, ja, 60000), 0);
    ck_assert_int_eq(h_status_count(c, ja, "failed"), 600);
    ck_assert_int_eq(s_lines(log, "A 2"), 600);
    free(log);
    free(go);
    h_cluster_destroy(&c);
}
END_TEST

/* method ("GET", "POST") path with the control token: the answer's
   status, 0 when none came (the master closed the connection: it died);
   its body in body. */
static int s_http(int port, const char *method, const char *path, char *body, size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t) port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    body[0] = '\0';
    if (connect(fd, (struct sockaddr *) &a, sizeof a) != 0) {
        close(fd);
        return 0;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Authorization: Bearer " CONTROL_TOKEN "\r\nContent-Length: 0\r\n\r\n",
                     method, path);
    ck_assert_int_eq(write(fd, req, (size_t) n), n);
    char buf[65536];   /* a /metrics page */
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t) r;
    buf[got] = '\0';
    close(fd);
    int status = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
        return 0;
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, size, "%s", b ? b + 4 : "");
    return status;
}

/* The dashboard's Retry selects from the database what to put back: while
   the database cannot be written it is behind the memory (a retry applied
   but not written), so a Retry then is refused, as `ztask retry` is, never
   applied a second time to tasks already back in the queue. */
/* A master with its database (db) on a 16 MiB tmpfs, where `fill` will
   take the rest, and the dashboard (*port) behind CONTROL_TOKEN; NULL
   (after SKIP) when this process may not mount one. */
static h_proc_t *s_dash_master_on_small_disk(h_cluster_t *c, char db[600], char fill[600],
                                             int *port)
{
    if (!s_db_on_small_disk(c, db, fill))
        return NULL;
    char *tokens = h_path(c, "http.tokens");
    h_write_file(tokens, CONTROL_TOKEN " control\n");
    h_proc_t *m = h_master_start(c, 0, "--db", db, "--sync", "full", "--http", "127.0.0.1:0",
                                 "--http-token", tokens, NULL);
    free(tokens);
    *port = h_http_port(m);
    return m;
}

/* The tasks in each state of ztask_tasks, read from one scrape of
   /metrics (-1: no answer, or no such line), so that they add up. */
typedef struct {
    int64_t queued, retry_wait, running, assigned;
} task_states_t;

static int64_t s_state_in(const char *body, const char *state)
{
    char line[80];
    int n = snprintf(line, sizeof line, "ztask_tasks{state=\"%s\"} ", state);
    const char *at = body ? strstr(body, line) : NULL;
    return at ? strtoll(at + n, NULL, 10) : -1;
}

static task_states_t s_tasks_in(int port)
{
    static char body[65536];
    bool ok = s_http(port, "GET", "/metrics", body, sizeof body) == 200;
    return (task_states_t){.queued = s_state_in(ok ? body : NULL, "queued"),
                           .retry_wait = s_state_in(ok ? body : NULL, "retry_wait"),
                           .running = s_state_in(ok ? body : NULL, "running"),
                           .assigned = s_state_in(ok ? body : NULL, "assigned")};
}

/* A retry waits for its backoff in the queue, a retry to the metrics'
   retry_wait (and to `ztask tasks --waiting`, and to the recalls), while
   its requeue's commit is hurried just before the backoff ends: parked
   for that commit at once, every flush holding a retry was fsynced, and
   the retry counted queued, waiting for "commit", for as long as commits
   failed. Due with its requeue still not written (the disk is full), it
   is parked then, and not sent before the requeue is written. */
START_TIMED_TEST(a_retry_waits_as_a_retry_and_for_its_requeue_only_once_due, 180)
{
    h_cluster_t *c = h_cluster_new("diskbackoff");
    char db[600], fill[600];
    if (!s_db_on_small_disk(c, db, fill)) {
        h_cluster_destroy(&c);
        return;
    }
    char *tokens = h_path(c, "http.tokens");
    h_write_file(tokens, CONTROL_TOKEN " control\n");
    /* A backoff long enough for the look below to fall inside it. */
    h_proc_t *m = h_master_start(c, 0, "--db", db, "--retry-backoff-ms", "10000", "--http",
                                 "127.0.0.1:0", "--http-token", tokens, NULL);
    free(tokens);
    int port = h_http_port(m);
    h_worker_start(c, "a", 1, NULL);
    char *log = h_path(c, "runs"), *go = h_path(c, "go");
    char script[1024];
    snprintf(script, sizeof script,
             "echo A $ZTASK_ATTEMPT >> '%s'; n=0; while [ ! -e '%s' ] && [ $n -lt 3000 ]; do "
             "sleep 0.02; n=$((n+1)); done; exit 1",
             log, go);
    int64_t job = h_submit(c, NULL, "--retries", "1", "--", "sh", "-c", script, NULL);
    ck_assert(H_POLL(s_lines(log, "A 1") == 1, 30000));
    s_fill(fill);
    h_run_t *r = h_cli(c, "submit", "--fn", "noop", NULL);
    h_run_free(&r);
    ck_assert_msg(h_proc_wait_log(m, "event=commit_failed", 1, 30000),
                  "no failed commit on a full disk (log %s)", h_proc_log(m));
    /* It fails: off the worker, waiting for its backoff, though its
       requeue cannot be written. */
    h_write_file(go, "");
    ck_assert_msg(h_proc_wait_log(m, "event=retry task=", 1, 30000),
                  "the failure was not retried (log %s)", h_proc_log(m));
    task_states_t st = s_tasks_in(port);
    ck_assert_msg(st.retry_wait == 1 && st.queued == 0 && st.running + st.assigned == 0,
                  "a retry in its backoff: retry_wait %lld, queued %lld, running %lld, "
                  "assigned %lld (log %s)",
                  (long long) st.retry_wait, (long long) st.queued, (long long) st.running,
                  (long long) st.assigned, h_proc_log(m));
    /* Due, its requeue still not written: it waits for that, not sent. */
    ck_assert_msg(H_POLL((s_fill(fill), st = s_tasks_in(port), st.queued == 1), 60000),
                  "the retry did not come due (log %s)", h_proc_log(m));
    ck_assert_int_eq(st.retry_wait, 0);
    ck_assert_int_eq(st.running + st.assigned, 0);
    ck_assert_int_eq(s_lines(log, "A 2"), 0);
    /* Space returns: the requeue is written, and the retry goes, once. */
    ck_assert_int_eq(unlink(fill), 0);
    ck_assert_msg(h_proc_wait_log(m, "event=storage_recovered", 1, 30000),
                  "no storage_recovered after freeing the disk (log %s)", h_proc_log(m));
    ck_assert_int_eq(h_wait(c, job, 60000), 1);
    ck_assert_int_eq(s_lines(log, "A 2"), 1);
    free(log);
    free(go);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_dashboard_retry_is_refused_while_the_database_cannot_be_written, 180)
{
    h_cluster_t *c = h_cluster_new("diskretry");
    char db[600], fill[600];
    int port = 0;
    h_proc_t *m = s_dash_master_on_small_disk(c, db, fill, &port);
    if (!m) {
        h_cluster_destroy(&c);
        return;
    }
    /* No worker: a retried task stays queued. */
    int64_t job = h_submit(c, NULL, "--fn", "noop", "--array", "0-2", NULL);
    h_cancel(c, job);
    char path[80], body[4096];
    snprintf(path, sizeof path, "/api/retry?job=%lld", (long long) job);
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long) job);
    /* Retries (and cancels) until one cannot be written: a commit may
       still fit in blocks the database holds. */
    int status = 200;
    for (int i = 0; i < 50 && status == 200; i++) {
        s_fill(fill);
        status = s_http(port, "POST", path, body, sizeof body);
        ck_assert_msg(status == 200 || status == 500 || status == 503, "retry: %d %s", status,
                      body);
        if (status == 200) {
            h_run_t *r = h_cli(c, "cancel", id, NULL);
            h_run_free(&r);
        }
    }
    ck_assert_msg(status != 200, "no write of a retry ever failed on a full disk");
    /* Asked again: refused, the master alive, each task queued once. */
    status = s_http(port, "POST", path, body, sizeof body);
    ck_assert_msg(status == 503 && strstr(body, "cannot write its database"),
                  "a retry while the database cannot be written: %d %s (master running: %d, "
                  "log %s)",
                  status, body, h_proc_running(m), h_proc_log(m));
    ck_assert(h_proc_running(m));
    /* Space returns: the retry is taken again, each task in the queue once. */
    ck_assert_int_eq(unlink(fill), 0);
    ck_assert_msg(h_proc_wait_log(m, "event=storage_recovered", 1, 30000),
                  "no storage_recovered after freeing the disk (log %s)", h_proc_log(m));
    ck_assert(H_POLL(s_http(port, "POST", path, body, sizeof body) == 200, 20000));
    int64_t queued = h_status_count(c, job, "queued");
    int64_t ended = h_status_count(c, job, "cancelled");
    ck_assert_msg(queued + ended == 3 && queued == 3, "queued %lld cancelled %lld of 3",
                  (long long) queued, (long long) ended);
    h_cluster_destroy(&c);
}
END_TEST

/* The dashboard's Cancel is written before it is answered, as the API's
   is: while the database cannot be written the answer says so (500, "ask
   again"), never 200 for a change a kill -9 right after would lose. Once
   space returns the cancel is written, and a crash keeps it. */
START_TIMED_TEST(a_dashboard_cancel_is_answered_only_once_written, 180)
{
    h_cluster_t *c = h_cluster_new("diskcancel");
    char db[600], fill[600];
    int port = 0;
    h_proc_t *m = s_dash_master_on_small_disk(c, db, fill, &port);
    if (!m) {
        h_cluster_destroy(&c);
        return;
    }
    /* No worker: every task stays queued until cancelled. */
    enum { N = 60 };
    int64_t job = h_submit(c, NULL, "--fn", "noop", "--array", "0-59", NULL);
    cJSON *res = h_results(c, job, NULL);
    cJSON **by = h_results_by_index(res, N);
    char path[80], body[4096];
    int status = 200, posted = 0;
    /* One task at a time, each a change to write, until one cannot be. */
    while (posted < N && status == 200) {
        s_fill(fill);
        snprintf(path, sizeof path, "/api/cancel?task=%lld",
                 (long long) h_jint(by[posted], "task", -1));
        status = s_http(port, "POST", path, body, sizeof body);
        posted++;
        ck_assert_msg(status == 200 || status == 500, "cancel: %d %s", status, body);
    }
    free(by);
    cJSON_Delete(res);
    ck_assert_msg(status == 500 && strstr(body, "could not write this cancel"),
                  "no cancel was refused on a full disk: %d answers were 200 (last: %d %s)",
                  posted, status, body);
    ck_assert(h_proc_running(m));
    ck_assert_int_eq(unlink(fill), 0);
    ck_assert_msg(h_proc_wait_log(m, "event=storage_recovered", 1, 30000),
                  "no storage_recovered after freeing the disk (log %s)", h_proc_log(m));
    ck_assert_int_eq(h_status_count(c, job, "cancelled"), posted);
    /* Written: a crash and a restart on the same database keep every one. */
    h_proc_kill9(m);
    h_master_start(c, 0, "--db", db, NULL);
    ck_assert_int_eq(h_status_count(c, job, "cancelled"), posted);
    ck_assert_int_eq(h_status_count(c, job, "queued"), N - posted);
    h_cluster_destroy(&c);
}
END_TEST

/* `alloc add` is answered once the new queue is written, as a steering
   request is: an id answered and then lost to a kill -9 would be given
   again by the restarted master to another queue, and a script holding
   it would act on that one (ids are never given twice, docs/cli.md).
   While the database cannot be written the add says so, with no id. */
START_TIMED_TEST(an_alloc_queue_id_answered_on_a_full_disk_is_never_given_again, 180)
{
    h_cluster_t *c = h_cluster_new("diskalloc");
    char db[600], fill[600];
    if (!s_db_on_small_disk(c, db, fill)) {
        h_cluster_destroy(&c);
        return;
    }
    h_fake_slurm(c);   /* its queues poll squeue */
    h_proc_t *m = h_master_start(c, 0, "--db", db, "--sync", "full", NULL);
    /* Adds until one cannot be written (a commit may still fit in blocks
       the database holds); told: the highest id answered. */
    int64_t told = 0;
    h_run_t *r = NULL;
    for (int i = 0; i < 50; i++) {
        s_fill(fill);
        r = h_cli(c, "alloc", "add", "slurm", "--time-limit", "10m", "--json", NULL);
        if (r->rc != 0)
            break;
        cJSON *q = h_json_first(r->out);
        ck_assert_ptr_nonnull(q);
        int64_t id = h_jint(q, "id", 0);
        ck_assert_msg(id > told, "alloc add answered queue %lld after %lld", (long long) id,
                      (long long) told);
        told = id;
        cJSON_Delete(q);
        h_run_free(&r);
    }
    ck_assert_msg(r && r->rc != 0 && (strstr(r->err, "could not write")
                                      || strstr(r->err, "cannot write its database")),
                  "no alloc add was refused on a full disk (last: %s)",
                  r ? h_run_desc(r) : "none");
    h_run_free(&r);
    /* The master dies with the disk still full; space returns. */
    s_fill(fill);
    h_proc_kill9(m);
    ck_assert_int_eq(unlink(fill), 0);
    h_master_start(c, 0, "--db", db, NULL);
    r = h_cli(c, "alloc", "add", "slurm", "--time-limit", "10m", "--json", NULL);
    ck_assert_msg(r->rc == 0, "alloc add: %s", h_run_desc(r));
    cJSON *q = h_json_first(r->out);
    ck_assert_ptr_nonnull(q);
    ck_assert_msg(h_jint(q, "id", 0) > told,
                  "queue %lld was answered before it was written, lost to the kill -9, and "
                  "given again after the restart",
                  (long long) h_jint(q, "id", 0));
    cJSON_Delete(q);
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

/* Bytes of the database and its WAL. */
static long long s_db_bytes(h_cluster_t *c)
{
    long long total = 0;
    const char *names[] = {"master.db", "master.db-wal"};
    for (int i = 0; i < 2; i++) {
        char *path = h_path(c, names[i]);
        struct stat st;
        if (stat(path, &st) == 0)
            total += (long long) st.st_size;
        free(path);
    }
    return total;
}

START_TIMED_TEST(the_database_shrinks_after_a_big_job_is_forgotten, 180)
{
    h_cluster_t *c = h_cluster_new("shrink");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "a", 2, NULL);
    /* 20,000 tasks of about 1 KB of spec each: ~20 MB of rows. Under
       sanitizers 5,000 (~5 MB): the vacuum has no size threshold, and the
       20,000 took 30 s of make tsan running tasks. */
    const int tasks = h_slowdown() == 1 ? 20000 : 5000;
    char arg[1100] = "\"", range[32];
    memset(arg + 1, 'x', 1000);
    strcpy(arg + 1001, "\"");
    snprintf(range, sizeof range, "0-%d", tasks - 1);
    int64_t job = h_submit(c, NULL, "--fn", "echo", "--args", arg, "--array", range, NULL);
    ck_assert_int_eq(h_wait(c, job, 120000), 0);
    long long before = s_db_bytes(c);
    ck_assert_msg(before > tasks * 1000LL, "only %lld bytes for %d tasks", before, tasks);
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long) job);
    h_run_t *r = h_cli(c, "forget", id, NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    h_run_free(&r);
    /* The delete is committed with the next flush; the file is cut then. */
    bool shrunk = H_POLL(s_db_bytes(c) < before / 10, 30000);
    ck_assert_msg(shrunk, "the database kept %lld of %lld bytes after the forget",
                  s_db_bytes(c), before);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_disk", h_slowdown()));
}
