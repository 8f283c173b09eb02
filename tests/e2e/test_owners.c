/*  e2e owners: the multi-user model (docs/security.md), through the real
    programs. A CURVE master with three allowlists (--clients, --workers,
    --admins); the CLI as two clients, alice and bob, and as an admin,
    root; raw CURVE DEALERs where the attack needs one (a task added to
    another client's open job; a request on a connection opened before
    its key was revoked). Also: a fifo in an allowlist directory at
    SIGHUP, and quotas per client. */
#include "harness.h"

#include "../../common/keys.h"
#include "../../master/claim.h"
#include "../../proto/proto.h"

#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

/* libzmq is not built with TSan: its internal threads are suppressed, as
   in the unit suites that open sockets. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:libzmq.so\n";
}

typedef struct {
    h_cluster_t *c;
    char *keys;      /* every key pair */
    char *clients;   /* the allowlists */
    char *workers;
    char *admins;
    int port;        /* the master's --port (0 until a test sets one: any) */
} env_t;

/* "DIR/NAME" followed by ext (may be ""); caller frees. */
static char *s_file(const char *dir, const char *name, const char *ext)
{
    char *out = NULL;
    ck_assert_int_ge(asprintf(&out, "%s/%s%s", dir, name, ext), 0);
    return out;
}

/* Copies keys/NAME.pub into the allowlist dir. */
static void s_allow(env_t *e, const char *dir, const char *name)
{
    char *from = s_file(e->keys, name, ".pub");
    char *to = s_file(dir, name, ".pub");
    char *text = h_read_file(from);
    ck_assert_ptr_nonnull(text);
    h_write_file(to, text);
    free(text);
    free(from);
    free(to);
}

static void s_revoke(env_t *e, const char *dir, const char *name)
{
    (void) e;
    char *path = s_file(dir, name, ".pub");
    ck_assert_int_eq(unlink(path), 0);
    free(path);
}

/* Keys for master, alice, bob, eve (clients), root (admin), w1, w2
   (workers); eve is listed as a client too. */
static void s_env(env_t *e, const char *test)
{
    e->c = h_cluster_new(test);
    e->port = 0;
    e->keys = h_path(e->c, "keys");
    e->clients = h_path(e->c, "clients");
    e->workers = h_path(e->c, "workers");
    e->admins = h_path(e->c, "admins");
    const char *dirs[] = { e->keys, e->clients, e->workers, e->admins };
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(mkdir(dirs[i], 0700), 0);
    const char *names[] = { "master", "alice", "bob", "eve", "root", "w1", "w2" };
    for (int i = 0; i < 7; i++) {
        char *bin = s_file(h_bin_dir(), "ztask", "");
        char *argv[] = { bin, "keygen", (char *) names[i], "--dir", e->keys, NULL };
        h_run_t *r = h_run(argv, NULL, 10000);
        ck_assert_msg(r->rc == 0, "keygen %s: %s", names[i], h_run_desc(r));
        h_run_free(&r);
        free(bin);
    }
    s_allow(e, e->clients, "alice");
    s_allow(e, e->clients, "bob");
    s_allow(e, e->clients, "eve");
    s_allow(e, e->admins, "root");
    s_allow(e, e->workers, "w1");
    s_allow(e, e->workers, "w2");
}

static void s_env_free(env_t *e)
{
    h_cluster_destroy(&e->c);
    free(e->keys);
    free(e->clients);
    free(e->workers);
    free(e->admins);
}

/* The CURVE master with the client and worker lists, the admins list
   when admins, and up to four extra arguments (NULL ends them). The
   tests that need no admin start it without one, as a master before
   --admins would run. */
static h_proc_t *s_master(env_t *e, bool admins, const char *x0, const char *x1, const char *x2,
                          const char *x3)
{
    char *secret = s_file(e->keys, "master", ".key");
    h_proc_t *m = admins ? h_master_start(e->c, e->port, "--curve-secret", secret, "--clients",
                                          e->clients, "--workers", e->workers, "--admins",
                                          e->admins, x0, x1, x2, x3, NULL)
                         : h_master_start(e->c, e->port, "--curve-secret", secret, "--clients",
                                          e->clients, "--workers", e->workers, x0, x1, x2, x3,
                                          NULL);
    free(secret);
    return m;
}

static h_proc_t *s_worker(env_t *e, const char *name)
{
    char *secret = s_file(e->keys, name, ".key");
    char *master = s_file(e->keys, "master", ".pub");
    h_proc_t *w = h_worker_start(e->c, name, 2, "--curve-secret", secret, "--master-key", master,
                                 NULL);
    free(secret);
    free(master);
    return w;
}

/* `ztask` as who (their key), with the NULL-terminated arguments. */
static h_run_t *s_as(env_t *e, const char *who, ...)
{
    char *secret = s_file(e->keys, who, ".key");
    char *master = s_file(e->keys, "master", ".pub");
    const char *args[64] = { "--curve-secret", secret, "--master-key", master };
    int n = 4;
    va_list ap;
    va_start(ap, who);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(n, 63);
        args[n++] = a;
    }
    va_end(ap);
    args[n] = NULL;
    h_run_t *r = h_cliv(e->c, args, 30000);
    free(secret);
    free(master);
    return r;
}

/* `ztask submit --json ARGS` as who; the job id (fails the test otherwise). */
#define S_SUBMIT(e, who, ...)                                                          \
    ({                                                                                 \
        h_run_t *r_ = s_as(e, who, "submit", "--json", __VA_ARGS__, NULL);             \
        ck_assert_msg(r_->rc == 0, "%s submits: %s", who, h_run_desc(r_));             \
        cJSON *o_ = h_json_first(r_->out);                                             \
        int64_t id_ = h_jint(o_, "job", -1);                                           \
        ck_assert_int_gt(id_, 0);                                                      \
        cJSON_Delete(o_);                                                              \
        h_run_free(&r_);                                                               \
        id_;                                                                           \
    })

/* True when text holds needle, or needle is NULL. */
static bool s_says(const char *text, const char *needle)
{
    return !needle || strstr(text, needle) != NULL;
}

/* Runs `ztask ARGS` as who and expects exit code rc, and (when not NULL)
   text in its stderr. */
#define S_EXPECT(e, who, want, text, ...)                                              \
    do {                                                                               \
        h_run_t *r_ = s_as(e, who, __VA_ARGS__, NULL);                                 \
        ck_assert_msg(r_->rc == (want) && s_says(r_->err, text),                       \
                      "%s: ztask %s: want exit %d%s%s: %s", who, #__VA_ARGS__, want,   \
                      (text) ? " saying " : "", (text) ? (text) : "", h_run_desc(r_)); \
        h_run_free(&r_);                                                               \
    } while (0)

/* The job records `ztask jobs --json [--all]` shows who (caller owns). */
static cJSON *s_jobs(env_t *e, const char *who, bool all)
{
    h_run_t *r = s_as(e, who, "jobs", "--json", all ? "--all" : NULL, NULL);
    ck_assert_msg(r->rc == 0, "%s: ztask jobs: %s", who, h_run_desc(r));
    cJSON *v = h_json_lines(r->out);
    h_run_free(&r);
    return v;
}

static const cJSON *s_find_job(const cJSON *jobs, int64_t id)
{
    const cJSON *j;
    cJSON_ArrayForEach(j, jobs)
        if (h_jint(j, "job", -1) == id)
            return j;
    return NULL;
}

static char s_idbuf[8][32];
static int s_idnext;
/* A job id (or "JOB.INDEX") as a CLI argument; valid for the next seven calls. */
static const char *s_id(int64_t id, int index)
{
    char *b = s_idbuf[s_idnext++ % 8];
    if (index >= 0)
        snprintf(b, sizeof s_idbuf[0], "%lld.%d", (long long) id, index);
    else
        snprintf(b, sizeof s_idbuf[0], "%lld", (long long) id);
    return b;
}

/* ---- raw CURVE peers ---- */

/* A socket of type that speaks CURVE as who to the master's port. */
static void *s_curve_socket(env_t *e, void *ctx, const char *who, int type, int port)
{
    keypair_t kp, m;
    char err[600];
    char *secret = s_file(e->keys, who, ".key");
    char *master = s_file(e->keys, "master", ".pub");
    ck_assert_msg(keys_load(secret, &kp, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(keys_load(master, &m, err, sizeof err) == 0, "%s", err);
    free(secret);
    free(master);
    void *s = zmq_socket(ctx, type);
    ck_assert_ptr_nonnull(s);
    /* A PUSH delivers what it was given before it is closed. */
    int linger = type == ZMQ_PUSH ? 5000 : 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, m.pub, KEY_Z85_LEN), 0);
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, kp.pub, KEY_Z85_LEN), 0);
    ck_assert_int_eq(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, kp.sec, KEY_Z85_LEN), 0);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    ck_assert_int_eq(zmq_connect(s, ep), 0);
    return s;
}

/* A DEALER that speaks CURVE as who to the master's API. */
static void *s_dealer(env_t *e, void *ctx, const char *who)
{
    return s_curve_socket(e, ctx, who, ZMQ_DEALER, h_api_port(e->c));
}

/* Sends one report, encoded, on a PUSH; takes *rp. */
static void s_push_report(void *push, proto_report_t **rp)
{
    char *text = proto_report_encode(*rp);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(zmq_send(push, text, strlen(text), 0), (int) strlen(text));
    free(text);
    proto_report_destroy(rp);
}

/* Sends a results report under worker's name: task's attempt 1 done, with
   "forged" as its output and claim as its claim token ("" = none). */
static void s_push_result(void *push, const char *worker, int64_t task, const char *claim)
{
    proto_report_t *rp = proto_report_new(PROTO_REP_RESULTS, worker);
    rp->results = calloc(1, sizeof *rp->results);
    proto_result_t *res = proto_result_new();
    res->task = task;
    res->attempt = 1;
    res->status = PROTO_ST_DONE;
    res->has_exit_code = true;
    res->stdout_data = strdup("forged\n");
    res->started = 1.0;
    res->finished = 2.0;
    snprintf(res->claim, sizeof res->claim, "%s", claim);
    rp->results[rp->nresults++] = res;
    s_push_report(push, &rp);
}

/* The same without a claim token. */
static void s_push_forged_result(void *push, const char *worker, int64_t task)
{
    s_push_result(push, worker, task, "");
}

/* One request, one reply (10 s, scaled): the reply object (caller owns). */
static cJSON *s_request(void *s, const char *json)
{
    ck_assert_int_eq(zmq_send(s, json, strlen(json), 0), (int) strlen(json));
    zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
    ck_assert_msg(zmq_poll(&it, 1, h_ms(10000)) == 1, "no reply to %s", json);
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, s, 0), 0);
    cJSON *rep = cJSON_ParseWithLength(zmq_msg_data(&m), zmq_msg_size(&m));
    zmq_msg_close(&m);
    ck_assert_ptr_nonnull(rep);
    return rep;
}

static const char *s_error_code(const cJSON *rep)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(rep, "error");
    return err ? h_jstr(err, "code") : NULL;
}

/* The first case reads as a usage example of the model: alice's job is
   hers; bob neither sees it nor reads, waits for, cancels or forgets it,
   by job id or by task id. */
START_TIMED_TEST(a_client_sees_and_acts_only_on_its_own_jobs, 90)
{
    env_t e;
    s_env(&e, "own_jobs");
    s_master(&e, false, NULL, NULL, NULL, NULL);
    s_worker(&e, "w1");

    int64_t a = S_SUBMIT(&e, "alice", "--array", "0-1", "--", "/bin/echo", "alice-secret-{}");
    S_EXPECT(&e, "alice", 0, NULL, "wait", s_id(a, -1), "--quiet");
    int64_t b = S_SUBMIT(&e, "bob", "--", "/bin/echo", "bob");

    /* Each one lists only their own. */
    cJSON *jobs = s_jobs(&e, "bob", false);
    ck_assert_msg(s_find_job(jobs, a) == NULL, "bob's `ztask jobs` lists alice's job %lld",
                  (long long) a);
    ck_assert_ptr_nonnull(s_find_job(jobs, b));
    cJSON_Delete(jobs);
    jobs = s_jobs(&e, "alice", false);
    ck_assert_ptr_nonnull(s_find_job(jobs, a));
    ck_assert_ptr_null(s_find_job(jobs, b));
    cJSON_Delete(jobs);
    h_run_t *r = s_as(&e, "bob", "status", "--json", NULL);
    ck_assert_msg(r->rc == 0, "bob's status: %s", h_run_desc(r));
    cJSON *all = h_json_lines(r->out);
    ck_assert_ptr_null(s_find_job(all, a));
    ck_assert_ptr_nonnull(s_find_job(all, b));
    cJSON_Delete(all);
    h_run_free(&r);

    /* Alice's job is "no job" to bob, whatever he asks. */
    S_EXPECT(&e, "bob", 4, "no job", "status", s_id(a, -1));
    S_EXPECT(&e, "bob", 4, "no job", "results", s_id(a, -1));
    S_EXPECT(&e, "bob", 4, "no such task", "logs", s_id(a, 0));
    S_EXPECT(&e, "bob", 4, "no job", "wait", s_id(a, -1));
    S_EXPECT(&e, "bob", 4, "no job", "cancel", s_id(a, -1));
    S_EXPECT(&e, "bob", 4, "no such task", "cancel", s_id(a, 1));
    S_EXPECT(&e, "bob", 4, "no job", "forget", s_id(a, -1));
    /* By global task id too. */
    r = s_as(&e, "alice", "results", s_id(a, -1), "--json", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "alice-secret-0"), "alice's results: %s",
                  h_run_desc(r));
    cJSON *rows = h_json_lines(r->out);
    h_run_free(&r);
    ck_assert_int_eq(cJSON_GetArraySize(rows), 2);
    char task[32];
    snprintf(task, sizeof task, "%lld", (long long) h_jint(cJSON_GetArrayItem(rows, 0), "task", 0));
    cJSON_Delete(rows);
    S_EXPECT(&e, "bob", 4, "no such task", "logs", "--task", task);

    /* Alice does all of it. */
    r = s_as(&e, "alice", "logs", s_id(a, 0), NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "alice-secret-0"), "alice's logs: %s",
                  h_run_desc(r));
    h_run_free(&r);
    S_EXPECT(&e, "alice", 0, NULL, "status", s_id(a, -1));
    S_EXPECT(&e, "alice", 0, NULL, "forget", s_id(a, -1));
    S_EXPECT(&e, "alice", 4, "no job", "status", s_id(a, -1));
    S_EXPECT(&e, "bob", 0, NULL, "wait", s_id(b, -1), "--quiet");
    s_env_free(&e);
}
END_TEST

/* The attack of issue 13: a raw submit naming another client's open job
   added a task to it. Only the job's owner may add to it. */
START_TIMED_TEST(a_client_cannot_add_tasks_to_another_clients_open_job, 60)
{
    env_t e;
    s_env(&e, "append");
    s_master(&e, false, NULL, NULL, NULL, NULL);
    void *ctx = zmq_ctx_new();
    void *alice = s_dealer(&e, ctx, "alice");
    void *bob = s_dealer(&e, ctx, "bob");

    cJSON *rep = s_request(alice, "{\"v\":1,\"type\":\"submit\",\"job\":0,\"more\":true,"
                                  "\"tasks\":[{\"fn\":\"noop\"}]}");
    ck_assert_msg(h_jtrue(rep, "ok"), "alice opens a job");
    int64_t job = h_jint(rep, "job", -1);
    cJSON_Delete(rep);

    char req[256];
    snprintf(req, sizeof req,
             "{\"v\":1,\"type\":\"submit\",\"job\":%lld,\"more\":false,"
             "\"tasks\":[{\"argv\":[\"/bin/echo\",\"bob-was-here\"]}]}",
             (long long) job);
    rep = s_request(bob, req);
    ck_assert_msg(!h_jtrue(rep, "ok"), "bob added a task to alice's open job %lld",
                  (long long) job);
    ck_assert_str_eq(s_error_code(rep), "not_found");
    cJSON_Delete(rep);

    /* Nor can he cancel or read its task by the task's global id. */
    cJSON *res = NULL;
    h_run_t *r = s_as(&e, "alice", "results", s_id(job, -1), "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    res = h_json_first(r->out);
    h_run_free(&r);
    int64_t task = h_jint(res, "task", -1);
    cJSON_Delete(res);
    ck_assert_int_gt(task, 0);
    const char *kinds[] = { "cancel", "logs" };
    for (int i = 0; i < 2; i++) {
        snprintf(req, sizeof req, "{\"v\":1,\"type\":\"%s\",\"task\":%lld}", kinds[i],
                 (long long) task);
        rep = s_request(bob, req);
        ck_assert_msg(!h_jtrue(rep, "ok"), "bob's %s of alice's task %lld was done", kinds[i],
                      (long long) task);
        ck_assert_str_eq(s_error_code(rep), "not_found");
        cJSON_Delete(rep);
    }

    /* The job is as alice left it: one task, still open. */
    cJSON *st = NULL;
    r = s_as(&e, "alice", "status", s_id(job, -1), "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    st = h_json_first(r->out);
    h_run_free(&r);
    ck_assert_int_eq(h_jint(st, "total", -1), 1);
    ck_assert_str_eq(h_jstr(st, "state"), "open");
    cJSON_Delete(st);

    /* Its owner still can. */
    snprintf(req, sizeof req,
             "{\"v\":1,\"type\":\"submit\",\"job\":%lld,\"more\":false,"
             "\"tasks\":[{\"fn\":\"noop\"}]}",
             (long long) job);
    rep = s_request(alice, req);
    ck_assert_msg(h_jtrue(rep, "ok"), "alice adds to her own job");
    ck_assert_int_eq(h_jint(rep, "total", -1), 2);
    cJSON_Delete(rep);

    zmq_close(alice);
    zmq_close(bob);
    zmq_ctx_term(ctx);
    s_env_free(&e);
}
END_TEST

/* root is in --admins only: it sees every job (--all) and acts on any;
   a client asking for --all is refused; owners survive a restart. */
START_TIMED_TEST(an_admin_acts_on_every_job_and_owners_survive_a_restart, 90)
{
    env_t e;
    s_env(&e, "admin");
    h_proc_t *m = s_master(&e, true, NULL, NULL, NULL, NULL);
    /* No worker: the jobs stay queued. */
    int64_t a = S_SUBMIT(&e, "alice", "--name", "alices", "--fn", "noop");
    int64_t b = S_SUBMIT(&e, "bob", "--name", "bobs", "--fn", "noop");

    cJSON *jobs = s_jobs(&e, "root", true);
    const cJSON *ja = s_find_job(jobs, a), *jb = s_find_job(jobs, b);
    ck_assert_msg(ja && jb, "root's `ztask jobs --all` lists both jobs");
    ck_assert_str_eq(h_jstr(ja, "owner_name"), "alice");
    ck_assert_str_eq(h_jstr(jb, "owner_name"), "bob");
    char *pubpath = s_file(e.keys, "alice", ".pub");
    keypair_t kp;
    char err[600];
    ck_assert_msg(keys_load(pubpath, &kp, err, sizeof err) == 0, "%s", err);
    free(pubpath);
    ck_assert_str_eq(h_jstr(ja, "owner"), kp.pub);
    cJSON_Delete(jobs);
    /* Without --all, root's own: none. */
    jobs = s_jobs(&e, "root", false);
    ck_assert_int_eq(cJSON_GetArraySize(jobs), 0);
    cJSON_Delete(jobs);
    /* The table shows whose each job is. */
    h_run_t *r = s_as(&e, "root", "jobs", "--all", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "OWNER") && strstr(r->out, "alice")
                      && strstr(r->out, "bob"),
                  "jobs --all: %s", h_run_desc(r));
    h_run_free(&r);

    S_EXPECT(&e, "alice", 6, "admin", "jobs", "--all");
    S_EXPECT(&e, "root", 0, NULL, "status", s_id(a, -1));
    S_EXPECT(&e, "root", 0, NULL, "cancel", s_id(b, -1));
    S_EXPECT(&e, "root", 0, NULL, "forget", s_id(b, -1));
    S_EXPECT(&e, "bob", 4, "no job", "status", s_id(b, -1));

    /* A restart: the owner comes back from the database. */
    h_proc_stop(m, 10000);
    s_master(&e, true, NULL, NULL, NULL, NULL);
    S_EXPECT(&e, "bob", 4, "no job", "status", s_id(a, -1));
    S_EXPECT(&e, "alice", 0, NULL, "status", s_id(a, -1));
    jobs = s_jobs(&e, "root", true);
    ja = s_find_job(jobs, a);
    ck_assert_ptr_nonnull(ja);
    ck_assert_str_eq(h_jstr(ja, "owner_name"), "alice");
    cJSON_Delete(jobs);
    s_env_free(&e);
}
END_TEST

/* The jobs of `ztask tasks --waiting --json` as who, one per record, into
   jobs (at most max); the count. */
static int s_waiting_jobs(env_t *e, const char *who, const char *extra, int64_t *jobs, int max)
{
    h_run_t *r = s_as(e, who, "tasks", "--waiting", "--json", extra, NULL);
    ck_assert_msg(r->rc == 0, "%s: tasks --waiting: %s", who, h_run_desc(r));
    cJSON *lines = h_json_lines(r->out);
    h_run_free(&r);
    int n = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, lines)
    {
        ck_assert_str_eq(h_jstr(t, "wait"), "no_worker");
        if (n < max)
            jobs[n] = h_jint(t, "job", -1);
        n++;
    }
    cJSON_Delete(lines);
    return n;
}

/* Why tasks wait is told to their owner only, as the running view: bob
   neither lists alice's waiting tasks nor names her job; an admin sees
   everyone's with --all. */
START_TIMED_TEST(a_client_sees_why_only_its_own_tasks_wait, 60)
{
    env_t e;
    s_env(&e, "why_owners");
    s_master(&e, true, NULL, NULL, NULL, NULL);
    /* No worker: every task waits for one. */
    int64_t a = S_SUBMIT(&e, "alice", "--array", "0-1", "--fn", "noop");
    int64_t b = S_SUBMIT(&e, "bob", "--fn", "noop");
    int64_t jobs[8];
    ck_assert_int_eq(s_waiting_jobs(&e, "alice", NULL, jobs, 8), 2);
    ck_assert(jobs[0] == a && jobs[1] == a);
    ck_assert_int_eq(s_waiting_jobs(&e, "bob", NULL, jobs, 8), 1);
    ck_assert_int_eq(jobs[0], b);
    S_EXPECT(&e, "bob", 4, "no job", "tasks", "--waiting", "--job", s_id(a, -1));
    S_EXPECT(&e, "bob", 6, "admin", "tasks", "--waiting", "--all");
    ck_assert_int_eq(s_waiting_jobs(&e, "root", NULL, jobs, 8), 0);
    ck_assert_int_eq(s_waiting_jobs(&e, "root", "--all", jobs, 8), 3);
    h_run_t *r = s_as(&e, "alice", "tasks", "--waiting", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "no live worker can run it: it needs a worker "
                                               "with the function noop (see ztask workers)"),
                  "alice's table: %s", h_run_desc(r));
    h_run_free(&r);
    s_env_free(&e);
}
END_TEST

/* Without keys (a loopback master) nobody can be told apart: jobs have no
   owner and every client acts on every job, as documented. */
START_TIMED_TEST(a_master_without_keys_has_no_owners_and_everyone_is_admin, 60)
{
    h_cluster_t *c = h_cluster_new("nokeys");
    h_master_start(c, 0, NULL);
    int64_t job = h_submit(c, NULL, "--fn", "noop", NULL);
    h_run_t *r = h_cli(c, "jobs", "--all", "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    cJSON *j = h_json_first(r->out);
    ck_assert_int_eq(h_jint(j, "job", -1), job);
    ck_assert_ptr_null(h_jstr(j, "owner"));
    cJSON_Delete(j);
    h_run_free(&r);
    r = h_cli(c, "cancel", "1", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

/* Issue 13, item 11: eve's key, removed from --clients and SIGHUP sent,
   kept working on the connection it had open. It must be refused from
   its next message. */
START_TIMED_TEST(a_revoked_client_key_is_refused_on_the_connection_it_has_open, 60)
{
    env_t e;
    s_env(&e, "revoke_client");
    h_proc_t *m = s_master(&e, false, NULL, NULL, NULL, NULL);
    void *ctx = zmq_ctx_new();
    void *eve = s_dealer(&e, ctx, "eve");
    cJSON *rep = s_request(eve, "{\"v\":1,\"type\":\"jobs\"}");
    ck_assert_msg(h_jtrue(rep, "ok"), "eve, listed, is answered");
    cJSON_Delete(rep);

    s_revoke(&e, e.clients, "eve");
    h_proc_signal(m, SIGHUP);
    ck_assert_msg(h_proc_wait_log(m, "event=auth_reloaded", 1, 10000), "no reload logged");
    rep = s_request(eve, "{\"v\":1,\"type\":\"jobs\"}");
    ck_assert_msg(!h_jtrue(rep, "ok"), "eve's key, revoked, was answered on its open connection");
    ck_assert_str_eq(s_error_code(rep), "auth");
    cJSON_Delete(rep);
    rep = s_request(eve, "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"noop\"}]}");
    ck_assert_msg(!h_jtrue(rep, "ok"), "eve's key, revoked, submitted");
    cJSON_Delete(rep);
    ck_assert(h_proc_wait_log(m, "reason=revoked", 1, 5000));
    /* A new connection is refused at the handshake, as before; others go on. */
    S_EXPECT(&e, "eve", 6, "authentication failed", "jobs");
    S_EXPECT(&e, "alice", 0, NULL, "jobs");

    zmq_close(eve);
    zmq_ctx_term(ctx);
    s_env_free(&e);
}
END_TEST

/* The same for a worker key: its worker is lost at once (its tasks go
   elsewhere, its pipe is closed) and it cannot register again. */
START_TIMED_TEST(a_revoked_worker_key_loses_its_worker_at_once, 90)
{
    env_t e;
    s_env(&e, "revoke_worker");
    h_proc_t *m = s_master(&e, false, NULL, NULL, NULL, NULL);
    h_proc_t *w1 = s_worker(&e, "w1");
    s_worker(&e, "w2");

    s_revoke(&e, e.workers, "w1");
    h_proc_signal(m, SIGHUP);
    ck_assert_msg(h_proc_wait_log(m, "event=worker_lost worker=w1 why=key_revoked", 1, 10000),
                  "the master did not drop w1 when its key was revoked (log %s)", h_proc_log(m));
    h_run_t *r = s_as(&e, "alice", "workers", "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    cJSON *ws = h_json_lines(r->out);
    h_run_free(&r);
    const cJSON *w;
    cJSON_ArrayForEach(w, ws)
        if (strcmp(h_jstr(w, "worker"), "w1") == 0)
            ck_assert_msg(!h_jtrue(w, "alive"), "w1 is still alive after its key was revoked");
    cJSON_Delete(ws);

    /* Every task now runs on w2. */
    int64_t job = S_SUBMIT(&e, "alice", "--array", "0-19", "--", "/bin/echo", "{}");
    S_EXPECT(&e, "alice", 0, NULL, "wait", s_id(job, -1), "--quiet");
    r = s_as(&e, "alice", "results", s_id(job, -1), "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    cJSON *rows = h_json_lines(r->out);
    h_run_free(&r);
    ck_assert_int_eq(cJSON_GetArraySize(rows), 20);
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
        ck_assert_str_eq(h_jstr(row, "worker"), "w2");
    cJSON_Delete(rows);
    /* w1 tries to come back and is told why not. */
    ck_assert_msg(h_proc_wait_log(w1, "event=hello_failed", 1, 20000),
                  "w1 never tried again (log %s)", h_proc_log(w1));
    s_env_free(&e);
}
END_TEST

/* Submits as alice a job of one task that writes "run" to runs, runs
   until the file go exists (60 s at most) and prints "real"; waits until
   it runs. Returns the job, its task's id in *task. */
static int64_t s_submit_gated(env_t *e, const char *runs, const char *go, int64_t *task)
{
    char script[1024];
    snprintf(script, sizeof script,
             "echo run >> '%s'; n=0; while [ ! -e '%s' ] && [ $n -lt 3000 ]; do sleep 0.02; "
             "n=$((n+1)); done; echo real",
             runs, go);
    int64_t job = S_SUBMIT(e, "alice", "--", "sh", "-c", script);
    ck_assert(H_POLL(access(runs, F_OK) == 0, 30000));
    h_run_t *r = s_as(e, "alice", "results", s_id(job, -1), "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    cJSON *row = h_json_first(r->out);
    h_run_free(&r);
    *task = h_jint(row, "task", -1);
    ck_assert_int_gt(*task, 0);
    cJSON_Delete(row);
    return job;
}

/* Issue 13, item 1: w2's key, registered as w2, reports a result, a start
   and output for the task w1 runs, and results under a name no worker has
   and under w1's name; all refused, none touches the task or w1's count
   of tasks (its credit); then w1's own result ends the task. */
START_TIMED_TEST(a_worker_reports_only_for_the_tasks_it_holds, 90)
{
    env_t e;
    s_env(&e, "holder");
    h_proc_t *m = s_master(&e, false, NULL, NULL, NULL, NULL);
    s_worker(&e, "w1");
    char *runs = h_path(e.c, "runs"), *go = h_path(e.c, "go");
    int64_t task;
    int64_t job = s_submit_gated(&e, runs, go, &task);
    s_worker(&e, "w2");
    h_run_t *r;
    cJSON *row;

    void *ctx = zmq_ctx_new();
    void *push = s_curve_socket(&e, ctx, "w2", ZMQ_PUSH, h_report_port(e.c));
    const char *names[] = { "w2", "ghost", "w1" };
    for (int i = 0; i < 3; i++)
        s_push_forged_result(push, names[i], task);
    proto_report_t *rp = proto_report_new(PROTO_REP_STARTED, "w2");
    rp->started = calloc(1, sizeof *rp->started);
    rp->started_at = calloc(1, sizeof *rp->started_at);
    rp->started[0] = (proto_task_ref_t){ .task = task, .attempt = 1 };
    rp->started_at[0] = 1.0;
    rp->nstarted = 1;
    s_push_report(push, &rp);
    rp = proto_report_new(PROTO_REP_OUTPUT, "w2");
    rp->task = task;
    rp->attempt = 1;
    rp->stream = 1;
    rp->data = strdup("forged output\n");
    s_push_report(push, &rp);
    zmq_close(push);
    zmq_ctx_term(ctx);

    /* Refused, each with a line: w2's and ghost's reports for w1's task,
       w1's name with w2's key. */
    ck_assert_msg(h_proc_wait_log(m, "event=report_refused type=result", 2, 10000)
                      && h_proc_wait_log(m, "event=report_refused type=started", 1, 10000)
                      && h_proc_wait_log(m, "event=report_refused type=output", 1, 10000)
                      && h_proc_wait_log(m, "error=\"not the key that registered", 1, 10000),
                  "the master did not refuse w2's reports for w1's task (log %s)",
                  h_proc_log(m));
    cJSON *st = s_jobs(&e, "alice", false);
    const cJSON *j = s_find_job(st, job);
    ck_assert_ptr_nonnull(j);
    ck_assert_msg(h_jint(j, "running", -1) == 1 && h_jint(j, "done", -1) == 0,
                  "w2's forged result counted: running %lld done %lld",
                  (long long) h_jint(j, "running", -1), (long long) h_jint(j, "done", -1));
    cJSON_Delete(st);
    r = s_as(&e, "alice", "workers", "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    cJSON *ws = h_json_lines(r->out);
    h_run_free(&r);
    const cJSON *w;
    int seen = 0;
    cJSON_ArrayForEach(w, ws) {
        int want = strcmp(h_jstr(w, "worker"), "w1") == 0 ? 1 : 0;
        ck_assert_msg(h_jint(w, "running", -1) == want, "worker %s runs %lld tasks, want %d",
                      h_jstr(w, "worker"), (long long) h_jint(w, "running", -1), want);
        seen++;
    }
    ck_assert_int_eq(seen, 2);
    cJSON_Delete(ws);
    r = s_as(&e, "alice", "logs", s_id(job, 0), NULL);
    ck_assert_msg(r->rc == 0 && !strstr(r->out, "forged"), "w2's output was taken: %s",
                  h_run_desc(r));
    h_run_free(&r);

    /* w1's own result ends it: its output, its credit. */
    h_write_file(go, "");
    S_EXPECT(&e, "alice", 0, NULL, "wait", s_id(job, -1), "--quiet");
    r = s_as(&e, "alice", "results", s_id(job, -1), "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    row = h_json_first(r->out);
    h_run_free(&r);
    ck_assert_str_eq(h_jstr(row, "status"), "done");
    ck_assert_str_eq(h_jstr(row, "stdout"), "real\n");
    ck_assert_str_eq(h_jstr(row, "worker"), "w1");
    ck_assert_int_eq(h_jint(row, "attempts", -1), 1);
    cJSON_Delete(row);
    free(runs);
    free(go);
    s_env_free(&e);
}
END_TEST

/* stats --json as alice: its "duplicates". */
static int64_t s_duplicates(env_t *e)
{
    h_run_t *r = s_as(e, "alice", "stats", "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    cJSON *st = h_json_first(r->out);
    h_run_free(&r);
    int64_t n = h_jint(st, "duplicates", -1);
    cJSON_Delete(st);
    return n;
}

/* The claim token the master sent with task's attempt 1 to who's key,
   made here from the master's key file as the master makes it. */
static void s_token(env_t *e, const char *who, int64_t task, char out[CLAIM_TOKEN_LEN + 1])
{
    keypair_t mk, wk;
    char err[600];
    char *mpath = s_file(e->keys, "master", ".key"), *wpath = s_file(e->keys, who, ".pub");
    ck_assert_msg(keys_load(mpath, &mk, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(keys_load(wpath, &wk, err, sizeof err) == 0, "%s", err);
    claim_key_t *k = claim_key_new(mk.sec, err, sizeof err);
    ck_assert_msg(k != NULL, "%s", err);
    claim_token(k, task, 1, wk.pub, out);
    claim_key_destroy(&k);
    free(mpath);
    free(wpath);
}

/* Any worker key could add counted duplicate rows for any task: a result
   for an attempt at or below the task's current one was recorded as a
   duplicate whoever sent it (ztask_duplicate_results_total rose with
   it). Now, with CURVE, only the key the attempt was sent to (its claim
   token proves it) adds one. w1 runs the task to its end; w2's key then
   sends results for that attempt under its own name and one no worker
   has, without a token and with w1's: refused, no duplicate, the master
   up. w1's key sending its result again, with its token, is still
   counted. */
START_TIMED_TEST(another_worker_key_cannot_add_duplicates_of_an_attempt_it_was_not_sent, 90)
{
    env_t e;
    s_env(&e, "dups");
    h_proc_t *m = s_master(&e, false, NULL, NULL, NULL, NULL);
    s_worker(&e, "w1");
    int64_t job = S_SUBMIT(&e, "alice", "--", "true");
    S_EXPECT(&e, "alice", 0, NULL, "wait", s_id(job, -1), "--quiet");
    h_run_t *r = s_as(&e, "alice", "results", s_id(job, -1), "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    cJSON *row = h_json_first(r->out);
    h_run_free(&r);
    int64_t task = h_jint(row, "task", -1);
    ck_assert_int_gt(task, 0);
    ck_assert_str_eq(h_jstr(row, "worker"), "w1");
    cJSON_Delete(row);
    char w1_token[CLAIM_TOKEN_LEN + 1];
    s_token(&e, "w1", task, w1_token);

    void *ctx = zmq_ctx_new();
    void *push = s_curve_socket(&e, ctx, "w2", ZMQ_PUSH, h_report_port(e.c));
    const char *names[] = { "w2", "ghost" };
    for (int i = 0; i < 2; i++) {
        s_push_result(push, names[i], task, "");
        s_push_result(push, names[i], task, w1_token);
    }
    zmq_close(push);
    ck_assert_msg(h_proc_wait_log(m, "error=\"no valid claim token for this attempt: only the "
                                     "worker key it was sent to",
                                  4, 10000),
                  "w2's late results were not refused (log %s)", h_proc_log(m));
    ck_assert_int_eq(h_proc_count_log(m, "event=duplicate_result"), 0);
    ck_assert_int_eq(s_duplicates(&e), 0);
    ck_assert(h_proc_running(m));

    push = s_curve_socket(&e, ctx, "w1", ZMQ_PUSH, h_report_port(e.c));
    s_push_result(push, "w1", task, w1_token);
    zmq_close(push);
    zmq_ctx_term(ctx);
    ck_assert_msg(h_proc_wait_log(m, "event=duplicate_result", 1, 10000),
                  "w1's own late result was not a duplicate (log %s)", h_proc_log(m));
    ck_assert_int_eq(s_duplicates(&e), 1);
    s_env_free(&e);
}
END_TEST

/* The task of job as its only results row (caller owns), read as alice. */
static cJSON *s_only_row(env_t *e, int64_t job)
{
    h_run_t *r = s_as(e, "alice", "results", s_id(job, -1), "--json", NULL);
    ck_assert_msg(r->rc == 0 || r->rc == 1, "%s", h_run_desc(r));
    cJSON *row = h_json_first(r->out);
    h_run_free(&r);
    ck_assert_ptr_nonnull(row);
    return row;
}

/* The gated task of job goes on (its go file appears) and ends as the
   real worker ran it: "real" from worker (any when NULL), one attempt,
   one run in runs. */
static void s_ends_real_once(env_t *e, int64_t job, const char *go, const char *runs,
                             const char *worker)
{
    h_write_file(go, "");
    S_EXPECT(e, "alice", 0, NULL, "wait", s_id(job, -1), "--quiet");
    cJSON *row = s_only_row(e, job);
    ck_assert_str_eq(h_jstr(row, "stdout"), "real\n");
    if (worker)
        ck_assert_str_eq(h_jstr(row, "worker"), worker);
    ck_assert_int_eq(h_jint(row, "attempts", -1), 1);
    cJSON_Delete(row);
    char *text = h_read_file(runs);
    ck_assert_str_eq(text, "run\n");
    free(text);
}

/* Issue 13, item 1 with issue 14, item 3: after a master restart, a
   result from a worker the master does not know yet is judged against the
   stored assignment and its key (or kept until the worker registers when
   there is none; test_faults). w2's key sends, before anyone registered,
   a result under w1's name for the task w1 runs: refused at once, the
   task still waits for w1; w1 then registers with its own key and claims
   it, and w1's own result counts. */
START_TIMED_TEST(an_early_result_under_another_key_than_the_stored_one_never_counts, 120)
{
    env_t e;
    s_env(&e, "early");
    /* A fixed base port: the restarted master binds the same ports. */
    e.port = h_free_base_port();
    h_proc_t *m = s_master(&e, false, "--recovery-grace", "5", "--heartbeat-ms", "200");
    h_proc_t *w1 = s_worker(&e, "w1");
    char *runs = h_path(e.c, "runs"), *go = h_path(e.c, "go");
    int64_t task;
    int64_t job = s_submit_gated(&e, runs, go, &task);
    /* w1 stopped while the master restarts, so that the forged result is
       there first; the master stops cleanly, so that the task's
       assignment to w1 is on disk (an orphan waiting for w1's claim). */
    h_proc_signal(w1, SIGSTOP);
    h_proc_stop(m, 10000);
    m = s_master(&e, false, "--recovery-grace", "5", "--heartbeat-ms", "200");

    void *ctx = zmq_ctx_new();
    void *push = s_curve_socket(&e, ctx, "w2", ZMQ_PUSH, h_report_port(e.c));
    s_push_forged_result(push, "w1", task);
    zmq_close(push);
    zmq_ctx_term(ctx);
    ck_assert_msg(h_proc_wait_log(m, "event=report_refused type=result", 1, 10000),
                  "the master did not refuse the early result (log %s)", h_proc_log(m));

    h_proc_signal(w1, SIGCONT);
    ck_assert_msg(h_proc_wait_log(m, "event=worker_registered worker=w1 ", 1, 30000)
                      && h_proc_wait_log(m, "claimed=1", 1, 1000),
                  "w1 did not come back and claim its task (log %s)", h_proc_log(m));
    cJSON *st = s_jobs(&e, "alice", false);
    const cJSON *j = s_find_job(st, job);
    ck_assert_msg(j && h_jint(j, "running", -1) == 1 && h_jint(j, "done", -1) == 0,
                  "the forged result counted");
    cJSON_Delete(st);

    s_ends_real_once(&e, job, go, runs, "w1");
    free(runs);
    free(go);
    s_env_free(&e);
}
END_TEST

/* Issue 13, item 1 after a restart: the store keeps the key each task was
   sent to, so taking the name of its worker is not enough. w1 runs a task
   when the master restarts; before w1 comes back, w2's key says hello as
   "w1" listing that task: it claims nothing, and its result for it is
   refused. w1 then registers and claims it, and its own result counts. */
START_TIMED_TEST(a_worker_taking_anothers_name_after_a_restart_claims_none_of_its_tasks, 120)
{
    env_t e;
    s_env(&e, "squat");
    e.port = h_free_base_port();
    h_proc_t *m = s_master(&e, false, "--recovery-grace", "10", "--heartbeat-ms", "200");
    h_proc_t *w1 = s_worker(&e, "w1");
    char *runs = h_path(e.c, "runs"), *go = h_path(e.c, "go");
    int64_t task;
    int64_t job = s_submit_gated(&e, runs, go, &task);
    /* The master stops cleanly: the task's assignment (and key) is on disk. */
    h_proc_signal(w1, SIGSTOP);
    h_proc_stop(m, 10000);
    m = s_master(&e, false, "--recovery-grace", "10", "--heartbeat-ms", "200");

    void *ctx = zmq_ctx_new();
    void *dealer = s_dealer(&e, ctx, "w2");
    char hello[256];
    snprintf(hello, sizeof hello,
             "{\"v\":1,\"type\":\"hello\",\"name\":\"w1\",\"host\":\"elsewhere\",\"pid\":1,"
             "\"threads\":1,\"running\":[{\"task\":%lld,\"attempt\":1}]}",
             (long long) task);
    cJSON *rep = s_request(dealer, hello);
    ck_assert_msg(h_jtrue(rep, "ok") && strcmp(h_jstr(rep, "worker"), "w1") == 0,
                  "w2's key did not register as w1");
    cJSON_Delete(rep);
    ck_assert_msg(h_proc_wait_log(m, "event=worker_registered worker=w1 ", 1, 10000)
                      && h_proc_count_log(m, "claimed=0") == 1,
                  "w2's key, named w1, claimed w1's task (log %s)", h_proc_log(m));
    void *push = s_curve_socket(&e, ctx, "w2", ZMQ_PUSH, h_report_port(e.c));
    s_push_forged_result(push, "w1", task);
    zmq_close(push);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    ck_assert_msg(h_proc_wait_log(m, "event=report_refused type=result", 1, 10000),
                  "the impostor's result was not refused (log %s)", h_proc_log(m));

    /* The impostor goes silent and is lost; w1 comes back under its name. */
    ck_assert(h_proc_wait_log(m, "event=worker_lost worker=w1 ", 1, 10000));
    h_proc_signal(w1, SIGCONT);
    ck_assert_msg(h_proc_wait_log(m, "claimed=1", 1, 30000),
                  "w1 did not claim its task (log %s)", h_proc_log(m));
    s_ends_real_once(&e, job, go, runs, NULL);
    free(runs);
    free(go);
    s_env_free(&e);
}
END_TEST

/* The ztask-worker named name under its own key, with the NULL-ended
   extra arguments x0, x1 (e.g. "--label", "real"). */
static h_proc_t *s_worker_with(env_t *e, const char *name, const char *x0, const char *x1)
{
    char *secret = s_file(e->keys, name, ".key");
    char *master = s_file(e->keys, "master", ".pub");
    h_proc_t *w = h_worker_start(e->c, name, 2, "--curve-secret", secret, "--master-key", master,
                                 x0, x1, NULL);
    free(secret);
    free(master);
    return w;
}

/* w2's key says hello as "w2" (no labels: the tasks of these tests that
   require "real" are never sent to it), listing task's attempt 1 in list
   ("running" or "ended": both are claims) with claim as its token (NULL:
   none); returns once the master has registered it. */
static void s_hostile_hello(env_t *e, void *ctx, h_proc_t *m, const char *list, int64_t task,
                            const char *claim)
{
    void *dealer = s_dealer(e, ctx, "w2");
    char hello[512];
    snprintf(hello, sizeof hello,
             "{\"v\":1,\"type\":\"hello\",\"name\":\"w2\",\"host\":\"elsewhere\",\"pid\":1,"
             "\"threads\":1,\"%s\":[{\"task\":%lld,\"attempt\":1%s%s%s}]}",
             list, (long long) task, claim ? ",\"claim\":\"" : "", claim ? claim : "",
             claim ? "\"" : "");
    cJSON *rep = s_request(dealer, hello);
    ck_assert_msg(h_jtrue(rep, "ok"), "w2's hello was refused");
    cJSON_Delete(rep);
    zmq_close(dealer);
    ck_assert_msg(h_proc_wait_log(m, "event=worker_registered worker=w2 ", 1, 10000),
                  "w2 did not register (log %s)", h_proc_log(m));
}

/* After a master restart, nothing stored tells a task sent less than a
   second before the crash (its assignment not written yet:
   ASSIGN_WRITE_MS) from a task that was never sent: both are found
   queued. A worker key that was never sent a task must not claim it
   anyway: the claim needs the token only the task's worker was given.
   A task waits, queued, for a worker labelled "real"; the master is
   killed and restarted; w2's key then sends a result for it before any
   hello (kept on main until w2 registers, then taken), says hello
   claiming it with a made-up token (as ended: the other test claims in
   "running"), and sends a result again: each
   refused, the task still queued. w1 ("real") then runs it: its own
   output, one attempt. */
START_TIMED_TEST(a_worker_key_cannot_claim_a_task_it_was_never_sent_after_a_restart, 120)
{
    env_t e;
    s_env(&e, "neversent");
    e.port = h_free_base_port();
    h_proc_t *m = s_master(&e, false, "--recovery-grace", "5", "--heartbeat-ms", "200");
    int64_t job = S_SUBMIT(&e, "alice", "--require", "real", "--", "echo", "real");
    cJSON *row = s_only_row(&e, job);
    int64_t task = h_jint(row, "task", -1);
    ck_assert_int_gt(task, 0);
    cJSON_Delete(row);
    h_proc_kill9(m);
    m = s_master(&e, false, "--recovery-grace", "5", "--heartbeat-ms", "200");

    void *ctx = zmq_ctx_new();
    void *push = s_curve_socket(&e, ctx, "w2", ZMQ_PUSH, h_report_port(e.c));
    s_push_forged_result(push, "w2", task);
    ck_assert_msg(h_proc_wait_log(m, "event=report_refused type=result", 1, 10000),
                  "w2's result, before its hello, for a task it was never sent was not refused "
                  "(log %s)",
                  h_proc_log(m));
    s_hostile_hello(&e, ctx, m, "ended", task, "0123456789abcdef0123456789abcdef");
    ck_assert_msg(h_proc_count_log(m, "claimed=0") == 1
                      && h_proc_wait_log(m, "event=claim_refused task=", 1, 1000),
                  "w2's hello claimed a task it was never sent (log %s)", h_proc_log(m));
    s_push_forged_result(push, "w2", task);
    zmq_close(push);
    zmq_ctx_term(ctx);
    ck_assert_msg(h_proc_wait_log(m, "event=report_refused type=result", 2, 10000),
                  "w2's result after its hello was not refused (log %s)", h_proc_log(m));
    cJSON *st = s_jobs(&e, "alice", false);
    const cJSON *j = s_find_job(st, job);
    ck_assert_msg(j && h_jint(j, "queued", -1) == 1 && h_jint(j, "done", -1) == 0,
                  "the task did not stay queued after w2's claims");
    cJSON_Delete(st);

    s_worker_with(&e, "w1", "--label", "real");
    S_EXPECT(&e, "alice", 0, NULL, "wait", s_id(job, -1), "--quiet");
    row = s_only_row(&e, job);
    ck_assert_str_eq(h_jstr(row, "status"), "done");
    ck_assert_str_eq(h_jstr(row, "stdout"), "real\n");
    ck_assert_str_eq(h_jstr(row, "worker"), "w1");
    ck_assert_int_eq(h_jint(row, "attempts", -1), 1);
    cJSON_Delete(row);
    s_env_free(&e);
}
END_TEST

/* The task w1 runs was sent just before the master was killed, and its
   assignment never written (the test hook ZTASK_TEST_ASSIGN_WRITE_MS
   holds the write back, as a crash within ASSIGN_WRITE_MS does): the
   restarted master finds it queued. w2's key says hello claiming that
   very attempt without its token, then sends a result: refused, both.
   w1, stopped meanwhile, comes back and claims it with the token it was
   given; its own result ends it, and it ran once. */
START_TIMED_TEST(a_task_sent_just_before_a_master_crash_is_claimed_only_by_its_worker, 120)
{
    env_t e;
    s_env(&e, "sentjustbefore");
    e.port = h_free_base_port();
    setenv("ZTASK_TEST_ASSIGN_WRITE_MS", "600000", 1);
    h_proc_t *m = s_master(&e, false, "--recovery-grace", "10", "--heartbeat-ms", "200");
    unsetenv("ZTASK_TEST_ASSIGN_WRITE_MS");
    h_proc_t *w1 = s_worker(&e, "w1");
    char *runs = h_path(e.c, "runs"), *go = h_path(e.c, "go");
    int64_t task;
    int64_t job = s_submit_gated(&e, runs, go, &task);
    h_proc_signal(w1, SIGSTOP);
    h_proc_kill9(m);
    m = s_master(&e, false, "--recovery-grace", "10", "--heartbeat-ms", "200");

    void *ctx = zmq_ctx_new();
    s_hostile_hello(&e, ctx, m, "running", task, NULL);
    ck_assert_msg(h_proc_count_log(m, "claimed=0") == 1
                      && h_proc_wait_log(m, "event=claim_refused task=", 1, 1000),
                  "w2's hello claimed w1's unrecorded task (log %s)", h_proc_log(m));
    void *push = s_curve_socket(&e, ctx, "w2", ZMQ_PUSH, h_report_port(e.c));
    s_push_forged_result(push, "w2", task);
    zmq_close(push);
    zmq_ctx_term(ctx);
    ck_assert_msg(h_proc_wait_log(m, "event=report_refused type=result", 1, 10000),
                  "w2's result for w1's task was not refused (log %s)", h_proc_log(m));

    h_proc_signal(w1, SIGCONT);
    char want[96];
    snprintf(want, sizeof want, "event=claim_unrecorded task=%lld attempt=1 worker=w1",
             (long long) task);
    ck_assert_msg(h_proc_wait_log(m, want, 1, 30000)
                      && h_proc_wait_log(m, "event=worker_registered worker=w1 ", 1, 1000)
                      && h_proc_count_log(m, "claimed=1") == 1,
                  "w1 did not claim its own task (log %s)", h_proc_log(m));
    s_ends_real_once(&e, job, go, runs, "w1");
    free(runs);
    free(go);
    s_env_free(&e);
}
END_TEST

/* Issue 14, item 3 under CURVE: w1 finishes a task while no master runs
   (sent just before the kill, its assignment never written); its result,
   with the task's token, reaches the restarted master before w1's hello
   (w1 says hello after 3 heartbeats of 2 s without a ping): kept, the
   task waits for w1, and once w1 registers the result counts. One run,
   one attempt. */
START_TIMED_TEST(a_result_finished_while_the_master_was_down_is_kept_for_its_worker, 120)
{
    env_t e;
    s_env(&e, "earlyresult");
    e.port = h_free_base_port();
    setenv("ZTASK_TEST_ASSIGN_WRITE_MS", "600000", 1);
    h_proc_t *m = s_master(&e, false, "--recovery-grace", "20", "--heartbeat-ms", "2000");
    unsetenv("ZTASK_TEST_ASSIGN_WRITE_MS");
    h_proc_t *w1 = s_worker(&e, "w1");
    char *runs = h_path(e.c, "runs"), *go = h_path(e.c, "go");
    char script[1024];
    snprintf(script, sizeof script,
             "echo run >> '%s'; n=0; while [ ! -e '%s' ] && [ $n -lt 3000 ]; do sleep 0.02; "
             "n=$((n+1)); done; echo real; echo end >> '%s'",
             runs, go, runs);
    int64_t job = S_SUBMIT(&e, "alice", "--", "sh", "-c", script);
    ck_assert(H_POLL(access(runs, F_OK) == 0, 30000));
    h_proc_kill9(m);
    h_write_file(go, "");
    char *text = NULL;
    ck_assert(H_POLL((free(text), text = h_read_file(runs), text && strstr(text, "end")), 30000));
    free(text);
    m = s_master(&e, false, "--recovery-grace", "20", "--heartbeat-ms", "2000");
    ck_assert_msg(h_proc_wait_log(m, "event=result_kept", 1, 10000),
                  "w1's early result was not kept for it (log %s)", h_proc_log(m));
    ck_assert_msg(h_proc_wait_log(m, "event=worker_registered worker=w1 ", 1, 30000),
                  "w1 did not register again (log %s, worker log %s)", h_proc_log(m),
                  h_proc_log(w1));
    S_EXPECT(&e, "alice", 0, NULL, "wait", s_id(job, -1), "--quiet");
    cJSON *row = s_only_row(&e, job);
    ck_assert_str_eq(h_jstr(row, "stdout"), "real\n");
    ck_assert_str_eq(h_jstr(row, "worker"), "w1");
    ck_assert_int_eq(h_jint(row, "attempts", -1), 1);
    cJSON_Delete(row);
    text = h_read_file(runs);
    ck_assert_str_eq(text, "run\nend\n");
    free(text);
    free(runs);
    free(go);
    s_env_free(&e);
}
END_TEST

/* w2's key registers as "w1" (no exec: the task is not sent to it) and
   sends a result under that name for task, of job: it is judged (a
   duplicate, or refused), not taken. */
static void s_impostor_result_is_not_taken(env_t *e, h_proc_t *m, int64_t job, int64_t task)
{
    void *ctx = zmq_ctx_new();
    void *dealer = s_dealer(e, ctx, "w2");
    cJSON *rep = s_request(dealer, "{\"v\":1,\"type\":\"hello\",\"name\":\"w1\",\"host\":"
                                   "\"elsewhere\",\"pid\":1,\"threads\":1,\"no_exec\":true}");
    ck_assert_msg(h_jtrue(rep, "ok") && strcmp(h_jstr(rep, "worker"), "w1") == 0,
                  "w2's key did not register as w1");
    cJSON_Delete(rep);
    void *push = s_curve_socket(e, ctx, "w2", ZMQ_PUSH, h_report_port(e->c));
    s_push_forged_result(push, "w1", task);
    zmq_close(push);
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    /* Judged (a duplicate of a run over, or refused), not taken. */
    ck_assert_msg(H_POLL(h_proc_count_log(m, "event=duplicate_result task=")
                                 + h_proc_count_log(m, "event=report_refused type=result")
                             > 0,
                         10000),
                  "the impostor's result was not judged (log %s)", h_proc_log(m));
    ck_assert_msg(h_proc_count_log(m, "event=result_after_takeback") == 0,
                  "the impostor's result was taken (log %s)", h_proc_log(m));
    cJSON *st = s_jobs(e, "alice", false);
    const cJSON *j = s_find_job(st, job);
    ck_assert_msg(j && h_jint(j, "done", -1) == 0, "the impostor's result ended the task");
    cJSON_Delete(st);
}

/* The gated task's go file appears and the stopped w1 goes on: the job
   ends with w1's real output. */
static void s_stopped_w1_ends_it(env_t *e, h_proc_t *w1, const char *go, int64_t job)
{
    h_write_file(go, "");
    h_proc_signal(w1, SIGCONT);
    S_EXPECT(e, "alice", 0, NULL, "wait", s_id(job, -1), "--quiet");
    h_run_t *r = s_as(e, "alice", "results", s_id(job, -1), "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    cJSON *row = h_json_first(r->out);
    h_run_free(&r);
    ck_assert_str_eq(h_jstr(row, "status"), "done");
    ck_assert_str_eq(h_jstr(row, "stdout"), "real\n");
    cJSON_Delete(row);
}

/* What the cases below start from: a master (heartbeat 200 ms) and a
   worker w1 running one of alice's gated tasks (s_submit_gated), then
   stopped until the master counts it lost. */
typedef struct {
    h_proc_t *m, *w1;
    char *runs, *go;   /* the caller frees them */
    int64_t job, task;
} lost_w1_t;

static lost_w1_t s_lost_w1(env_t *e, const char *name)
{
    lost_w1_t l;
    s_env(e, name);
    l.m = s_master(e, false, "--heartbeat-ms", "200", NULL, NULL);
    l.w1 = s_worker(e, "w1");
    l.runs = h_path(e->c, "runs");
    l.go = h_path(e->c, "go");
    l.job = s_submit_gated(e, l.runs, l.go, &l.task);
    h_proc_signal(l.w1, SIGSTOP);
    ck_assert_msg(h_proc_wait_log(l.m, "event=worker_lost worker=w1 ", 1, 10000),
                  "w1 was not lost (log %s)", h_proc_log(l.m));
    return l;
}

/* Issue 13, item 1 beside issue 14's last holder: a task taken back from
   a worker thought lost still takes that worker's result (s_take_back),
   but that worker is the key it held the task under, not its name. w1 is
   stopped and lost; w2's key registers as "w1" (it may: the name is free)
   and sends a result under that name for w1's task: not taken (a
   duplicate), the task still to run; w1's own run then ends it. */
START_TIMED_TEST(a_worker_taking_a_lost_workers_name_cannot_end_its_tasks, 120)
{
    env_t e;
    lost_w1_t l = s_lost_w1(&e, "lastholder");
    h_proc_t *m = l.m, *w1 = l.w1;
    char *runs = l.runs, *go = l.go;
    int64_t task = l.task, job = l.job;

    s_impostor_result_is_not_taken(&e, m, job, task);

    /* w1 comes back (under another name: the impostor holds "w1" until it
       is lost) and its run counts. */
    s_stopped_w1_ends_it(&e, w1, go, job);
    free(runs);
    free(go);
    s_env_free(&e);
}
END_TEST

/* The other side of the case above: the result of a worker thought lost,
   under its own key, still ends the task it was taken back from (issue
   14: finished work is kept). w1 is stopped and lost; a result for its
   task comes under its name with its key (a raw peer stands in for w1,
   so that nothing else can happen first): taken. */
START_TIMED_TEST(a_lost_workers_own_result_under_its_key_still_ends_its_task, 90)
{
    env_t e;
    lost_w1_t l = s_lost_w1(&e, "ownresult");
    h_proc_t *m = l.m, *w1 = l.w1;
    char *runs = l.runs, *go = l.go;
    int64_t task = l.task, job = l.job;
    void *ctx = zmq_ctx_new();
    void *push = s_curve_socket(&e, ctx, "w1", ZMQ_PUSH, h_report_port(e.c));
    s_push_forged_result(push, "w1", task);
    zmq_close(push);
    zmq_ctx_term(ctx);
    ck_assert_msg(h_proc_wait_log(m, "event=result_after_takeback", 1, 10000),
                  "w1's own result was not taken (log %s)", h_proc_log(m));
    S_EXPECT(&e, "alice", 0, NULL, "wait", s_id(job, -1), "--quiet");
    h_proc_kill9(w1);
    free(runs);
    free(go);
    s_env_free(&e);
}
END_TEST

/* The other side of another_worker_key_cannot_add_duplicates_...: the
   worker an attempt was sent to still adds its duplicate, on its own,
   with the token it was given. w1 is stopped and lost, its task goes to
   w2 as attempt 2; w1 comes back and ends attempt 1: a duplicate (its
   claim token proves it), never refused; w2's run ends the task. */
START_TIMED_TEST(a_lost_workers_late_result_for_an_attempt_sent_again_is_a_duplicate, 120)
{
    env_t e;
    lost_w1_t l = s_lost_w1(&e, "latedup");
    h_proc_t *m = l.m, *w1 = l.w1;
    char *runs = l.runs, *go = l.go;
    int64_t task = l.task, job = l.job;
    s_worker(&e, "w2");
    char *text = NULL;
    ck_assert_msg(H_POLL((free(text), text = h_read_file(runs), text && strstr(text, "run\nrun\n")),
                         30000),
                  "the task did not run again on w2 (runs: %s)", text ? text : "(none)");
    free(text);
    h_write_file(go, "");
    h_proc_signal(w1, SIGCONT);
    S_EXPECT(&e, "alice", 0, NULL, "wait", s_id(job, -1), "--quiet");
    char want[96];
    snprintf(want, sizeof want, "event=duplicate_result task=%lld ", (long long) task);
    ck_assert_msg(h_proc_wait_log(m, want, 1, 30000),
                  "w1's late result was not a duplicate (log %s)", h_proc_log(m));
    ck_assert_msg(h_proc_count_log(m, "event=report_refused type=result") == 0,
                  "w1's late result was refused (log %s)", h_proc_log(m));
    ck_assert_int_eq(s_duplicates(&e), 1);
    free(runs);
    free(go);
    s_env_free(&e);
}
END_TEST

/* The same after a restart, once the grace is over: w1's task, stored
   with w1's key, waited for w1's claim; none came within the grace and
   it went back to the queue. w2's key then registers as "w1" (no record
   of that name exists since the restart) and sends a result for it: not
   taken, the task still to run, and w1's own run ends it. */
START_TIMED_TEST(a_worker_taking_a_name_after_the_grace_cannot_end_its_tasks, 120)
{
    env_t e;
    s_env(&e, "graceover");
    e.port = h_free_base_port();
    h_proc_t *m = s_master(&e, false, "--recovery-grace", "1", "--heartbeat-ms", "200");
    h_proc_t *w1 = s_worker(&e, "w1");
    char *runs = h_path(e.c, "runs"), *go = h_path(e.c, "go");
    int64_t task;
    int64_t job = s_submit_gated(&e, runs, go, &task);
    h_proc_signal(w1, SIGSTOP);
    h_proc_stop(m, 10000);
    m = s_master(&e, false, "--recovery-grace", "1", "--heartbeat-ms", "200");
    ck_assert_msg(h_proc_wait_log(m, "event=orphan_requeued", 1, 10000),
                  "the orphan was not requeued after the grace (log %s)", h_proc_log(m));

    s_impostor_result_is_not_taken(&e, m, job, task);

    s_stopped_w1_ends_it(&e, w1, go, job);
    free(runs);
    free(go);
    s_env_free(&e);
}
END_TEST

/* True when `ztask workers --all` lists a worker named name. */
static bool s_worker_listed(env_t *e, const char *name)
{
    h_run_t *r = s_as(e, "alice", "workers", "--all", "--json", NULL);
    ck_assert_msg(r->rc == 0, "%s", h_run_desc(r));
    cJSON *ws = h_json_lines(r->out);
    h_run_free(&r);
    bool found = false;
    const cJSON *w;
    cJSON_ArrayForEach(w, ws)
        found = found || strcmp(h_jstr(w, "worker"), name) == 0;
    cJSON_Delete(ws);
    return found;
}

/* The same once the lost worker's record is forgotten (a gone worker is
   listed for an hour, REGISTRY_KEEP_GONE_MS; the test-only hook
   ZTASK_TEST_KEEP_GONE_MS shortens it): w1 is killed while it runs a task
   no other worker can take; its record goes; w2's key then registers as
   "w1", a name with no record, and sends a result for that task: not
   taken, the task still queued. */
START_TIMED_TEST(a_worker_taking_a_forgotten_workers_name_cannot_end_its_tasks, 120)
{
    env_t e;
    s_env(&e, "forgotten");
    setenv("ZTASK_TEST_KEEP_GONE_MS", "300", 1);
    h_proc_t *m = s_master(&e, false, "--heartbeat-ms", "200", NULL, NULL);
    unsetenv("ZTASK_TEST_KEEP_GONE_MS");
    h_proc_t *w1 = s_worker(&e, "w1");
    char *runs = h_path(e.c, "runs"), *go = h_path(e.c, "go");
    int64_t task;
    int64_t job = s_submit_gated(&e, runs, go, &task);
    h_proc_kill9(w1);
    ck_assert_msg(h_proc_wait_log(m, "event=worker_lost worker=w1 ", 1, 10000),
                  "w1 was not lost (log %s)", h_proc_log(m));
    ck_assert_msg(H_POLL(!s_worker_listed(&e, "w1"), 20000), "w1's record was never forgotten");
    s_impostor_result_is_not_taken(&e, m, job, task);
    free(runs);
    free(go);
    s_env_free(&e);
}
END_TEST

/* Issue 13, item 17: a fifo named like a key file blocked the master's
   loop at SIGHUP (an open for reading waits for a writer). */
START_TIMED_TEST(a_fifo_in_an_allowlist_does_not_stop_the_master, 60)
{
    env_t e;
    s_env(&e, "fifo");
    h_proc_t *m = s_master(&e, false, NULL, NULL, NULL, NULL);
    char *fifo = s_file(e.clients, "trap", ".pub");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    char *dir = s_file(e.clients, "adir", ".pub");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    h_proc_signal(m, SIGHUP);
    ck_assert_msg(h_proc_wait_log(m, "event=auth_reloaded", 1, 10000),
                  "the master did not finish its reload (log %s)", h_proc_log(m));
    ck_assert(h_proc_count_log(m, "trap.pub") >= 1 && h_proc_count_log(m, "a fifo") >= 1);
    S_EXPECT(&e, "alice", 0, NULL, "jobs");

    /* A list given as a fifo: refused at start, with the reason. */
    char *bin = s_file(h_bin_dir(), "ztask-master", "");
    char *secret = s_file(e.keys, "master", ".key");
    char *db = h_path(e.c, "other.db");
    char *argv[] = { bin, "--db", db, "--port", "0", "--curve-secret", secret, "--clients", fifo,
                     "--workers", e.workers, NULL };
    h_run_t *r = h_run(argv, NULL, 10000);
    ck_assert_msg(r->rc == 1 && strstr(r->err, "fifo"), "a fifo as --clients: %s", h_run_desc(r));
    h_run_free(&r);
    unlink(fifo);
    rmdir(dir);
    free(bin);
    free(secret);
    free(db);
    free(fifo);
    free(dir);
    s_env_free(&e);
}
END_TEST

/* Issue 13, item 18: --quota-tasks and --quota-bytes bound what each
   client may have queued or running; others are not held back by it,
   the count survives a restart, and finished tasks free it. */
START_TIMED_TEST(a_client_over_its_quota_is_refused_and_others_are_not, 90)
{
    env_t e;
    s_env(&e, "quota");
    h_proc_t *m = s_master(&e, false, "--quota-tasks", "10", "--quota-bytes", "64K");
    S_SUBMIT(&e, "alice", "--array", "0-7", "--fn", "noop");
    S_EXPECT(&e, "alice", 4, "quota", "submit", "--array", "0-4", "--fn", "noop");
    S_SUBMIT(&e, "bob", "--array", "0-7", "--fn", "noop");

    /* Bytes: two tasks of 40 KB do not fit in 64 KiB. */
    char *big = malloc(40001);
    memset(big, 'x', 40000);
    big[40000] = '\0';
    S_SUBMIT(&e, "alice", "--", "/bin/echo", big);
    S_EXPECT(&e, "alice", 4, "quota", "submit", "--", "/bin/echo", big);
    S_SUBMIT(&e, "bob", "--", "/bin/echo", big);
    free(big);

    /* A restart counts what is queued from the database. */
    h_proc_stop(m, 10000);
    s_master(&e, false, "--quota-tasks", "10", "--quota-bytes", "64K");
    S_EXPECT(&e, "alice", 4, "quota", "submit", "--array", "0-1", "--fn", "noop");

    /* Once her tasks have run, alice may submit again. */
    s_worker(&e, "w1");
    ck_assert(H_POLL(({
                         h_run_t *r_ = s_as(&e, "alice", "stats", "--json", NULL);
                         bool idle_ = r_->rc == 0 && strstr(r_->out, "\"tasks_queued\":0,")
                                      && strstr(r_->out, "\"tasks_running\":0,");
                         h_run_free(&r_);
                         idle_;
                     }),
                     30000));
    S_SUBMIT(&e, "alice", "--array", "0-9", "--fn", "noop");
    s_env_free(&e);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_owners", h_slowdown()));
}
