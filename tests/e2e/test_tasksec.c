/*  e2e tasksec: what a command task may reach on its worker
    (docs/security.md, the threat model's task row), through the real
    programs: the worker's own ZTASK_* variables never reach a task; with
    --run-as, as documented (the worker as its own user with CAP_SETUID,
    CAP_SETGID and CAP_KILL, the key file readable by that user only), a
    task can read neither the key nor the worker's environment and keeps
    no capability; a keyless master gets no root commands unless the
    worker is told --allow-root; --task-rlimit applies to each command;
    --allow-exec takes only --allow-env variables from a task's env.

    The tests that change users need root: they print a SKIP line and
    pass otherwise. */
#include "harness.h"

#include <check.h>
#include <errno.h>
#include <pwd.h>
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

/* True when the test may change users; else prints why it skips. */
static bool s_root_or_skip(const char *test)
{
    if (geteuid() == 0)
        return true;
    printf("SKIP: %s: needs root (--run-as changes users)\n", test);
    return false;
}

/* BIN/ztask keygen NAME --dir DIR; fails the test otherwise. */
static void s_keygen(const char *dir, const char *name)
{
    char *bin = NULL;
    ck_assert_int_ge(asprintf(&bin, "%s/ztask", h_bin_dir()), 0);
    char *argv[] = {bin, "keygen", (char *) name, "--dir", (char *) dir, NULL};
    h_run_t *r = h_run(argv, NULL, 10000);
    ck_assert_msg(r->rc == 0, "keygen %s: %s", name, h_run_desc(r));
    h_run_free(&r);
    free(bin);
}

static char *s_cat(const char *a, const char *b)
{
    char *out = NULL;
    ck_assert_int_ge(asprintf(&out, "%s%s", a, b), 0);
    return out;
}

/* Runs one shell task and returns its result record (caller owns the
   array it belongs to through *all). */
static const cJSON *s_run_shell(h_cluster_t *c, const char *script, cJSON **all)
{
    int64_t job = h_submit(c, NULL, "--shell", script, NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    *all = h_results(c, job, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(*all), 1);
    return cJSON_GetArrayItem(*all, 0);
}

START_TIMED_TEST(the_worker_s_own_ztask_variables_never_reach_a_task, 60)
{
    h_cluster_t *c = h_cluster_new("own_ztask_variables");
    /* What a worker configured through its environment carries: its
       config file (and, with keys, ZTASK_CURVE_SECRET). */
    char *conf = h_path(c, "worker.conf");
    h_write_file(conf, "# empty\n");
    ck_assert_int_eq(setenv("ZTASK_CONFIG", conf, 1), 0);
    ck_assert_int_eq(setenv("ZTASK_WORKER_SECRET_THING", "hush", 1), 0);
    h_master_start(c, 0, NULL);
    h_worker_start(c, "w1", 1, NULL);
    unsetenv("ZTASK_CONFIG");
    unsetenv("ZTASK_WORKER_SECRET_THING");

    cJSON *all = NULL;
    const cJSON *r = s_run_shell(c, "env", &all);
    const char *out = h_jstr(r, "stdout");
    ck_assert_ptr_nonnull(out);
    ck_assert_msg(strstr(out, "ZTASK_TASK_ID=") != NULL, "the task's own variables: %s", out);
    ck_assert_msg(strstr(out, "ZTASK_CONFIG") == NULL && strstr(out, "hush") == NULL,
                  "the worker's ZTASK_* variables reached the task: %s", out);
    cJSON_Delete(all);
    free(conf);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(a_task_run_as_another_user_cannot_read_the_worker_key, 90)
{
    if (!s_root_or_skip("a_task_run_as_another_user_cannot_read_the_worker_key"))
        return;
    /* The documented setup (docs/worker.md): the worker runs as its own
       user (here daemon) with CAP_SETUID, CAP_SETGID and CAP_KILL, its
       key readable by that user only, tasks as another (nobody). */
    struct passwd *wp = getpwnam("daemon");   /* a static buffer: copy at once */
    uid_t wuid = wp ? wp->pw_uid : 0;
    gid_t wgid = wp ? wp->pw_gid : 0;
    struct passwd *tp = getpwnam("nobody");
    uid_t tuid = tp ? tp->pw_uid : 0;
    if (!wp || !tp) {
        printf("SKIP: a_task_run_as_another_user_cannot_read_the_worker_key: no users "
               "daemon and nobody\n");
        return;
    }
    h_cluster_t *c = h_cluster_new("run_as_key");
    ck_assert_int_eq(chmod(h_dir(c), 0711), 0);
    char *keys = h_path(c, "keys"), *workers = h_path(c, "workers"), *clients = h_path(c, "clients");
    char *state = h_path(c, "state");
    ck_assert_int_eq(mkdir(keys, 0711), 0);
    ck_assert_int_eq(mkdir(workers, 0700), 0);
    ck_assert_int_eq(mkdir(clients, 0700), 0);
    ck_assert_int_eq(mkdir(state, 0700), 0);
    ck_assert_int_eq(chown(state, wuid, wgid), 0);
    s_keygen(keys, "master");
    s_keygen(keys, "w1");
    s_keygen(keys, "cli");
    const char *names[] = {"w1", "cli"};
    char *lists[] = {workers, clients};
    for (int i = 0; i < 2; i++) {
        char *from = NULL, *to = NULL;
        ck_assert_int_ge(asprintf(&from, "%s/%s.pub", keys, names[i]), 0);
        ck_assert_int_ge(asprintf(&to, "%s/%s.pub", lists[i], names[i]), 0);
        char *text = h_read_file(from);
        h_write_file(to, text);
        free(text);
        free(from);
        free(to);
    }
    char *wkey = s_cat(keys, "/w1.key"), *mkey = s_cat(keys, "/master.key");
    char *mpub = s_cat(keys, "/master.pub"), *ckey = s_cat(keys, "/cli.key");
    ck_assert_int_eq(chown(wkey, wuid, wgid), 0);
    ck_assert_int_eq(chmod(wkey, 0600), 0);
    char *key_text = h_read_file(wkey);
    const char *secret = strstr(key_text, "secret-key");
    ck_assert_ptr_nonnull(secret);
    char z85[41] = "";
    ck_assert_int_eq(sscanf(secret, "secret-key = \"%40[^\"]\"", z85), 1);

    h_master_start(c, 0, "--curve-secret", mkey, "--workers", workers, "--clients", clients,
                   NULL);
    char reuid[32], regid[32];
    snprintf(reuid, sizeof reuid, "--reuid=%u", (unsigned) wuid);
    snprintf(regid, sizeof regid, "--regid=%u", (unsigned) wgid);
    if (access("/usr/bin/setpriv", X_OK) != 0) {
        printf("SKIP: a_task_run_as_another_user_cannot_read_the_worker_key: no "
               "/usr/bin/setpriv (util-linux)\n");
        h_cluster_destroy(&c);
        return;
    }
    const char *wrap[] = {"/usr/bin/setpriv", reuid, regid, "--clear-groups",
                          "--inh-caps=+setuid,+setgid,+kill",
                          "--ambient-caps=+setuid,+setgid,+kill", "--pdeathsig=KILL", "--",
                          NULL};
    h_worker_wrap(c, wrap);
    /* The key through the environment, as the unit's EnvironmentFile may
       give it. */
    ck_assert_int_eq(setenv("ZTASK_CURVE_SECRET", wkey, 1), 0);
    char *conf = h_path(c, "worker.conf");   /* not root's ~/.config */
    h_write_file(conf, "# empty\n");
    ck_assert_int_eq(chmod(conf, 0644), 0);
    ck_assert_int_eq(setenv("ZTASK_CONFIG", conf, 1), 0);
    h_worker_start(c, "w1", 1, "--master-key", mpub, "--run-as", "nobody", NULL);
    unsetenv("ZTASK_CURVE_SECRET");
    unsetenv("ZTASK_CONFIG");
    free(conf);

    char *script = NULL;
    ck_assert_int_ge(asprintf(&script,
                              "id -u; cat %s; cat /proc/$PPID/environ; tr '\\0' '\\n' "
                              "</proc/$PPID/environ; env; grep -E '^Cap(Prm|Eff|Amb)' "
                              "/proc/self/status; true",
                              wkey),
                     0);
    const char *args[] = {"--curve-secret", ckey, "--master-key", mpub, "submit", "--json",
                          "--shell", script, NULL};
    h_run_t *sub = h_cliv(c, args, 30000);
    ck_assert_msg(sub->rc == 0, "submit: %s", h_run_desc(sub));
    cJSON *o = h_json_first(sub->out);
    char job[32];
    snprintf(job, sizeof job, "%lld", (long long) h_jint(o, "job", -1));
    cJSON_Delete(o);
    h_run_free(&sub);
    const char *wargs[] = {"--curve-secret", ckey, "--master-key", mpub, "wait", job, NULL};
    h_run_t *w = h_cliv(c, wargs, 60000);
    ck_assert_msg(w->rc == 0, "wait: %s", h_run_desc(w));
    h_run_free(&w);
    const char *rargs[] = {"--curve-secret", ckey, "--master-key", mpub, "results", job, "--json",
                           NULL};
    h_run_t *res = h_cliv(c, rargs, 30000);
    ck_assert_msg(res->rc == 0, "results: %s", h_run_desc(res));
    cJSON *rec = h_json_first(res->out);
    const char *out = h_jstr(rec, "stdout"), *err = h_jstr(rec, "stderr");
    ck_assert_ptr_nonnull(out);
    char want_uid[32];
    snprintf(want_uid, sizeof want_uid, "%u\n", (unsigned) tuid);
    ck_assert_msg(strncmp(out, want_uid, strlen(want_uid)) == 0, "the task ran as: %s", out);
    ck_assert_msg(strstr(out, z85) == NULL && strstr(out, "secret-key") == NULL,
                  "the task read the worker's key: %s", out);
    ck_assert_msg(strstr(out, "ZTASK_CURVE_SECRET") == NULL,
                  "the task saw the worker's key file's name: %s", out);
    ck_assert_msg(strstr(err, "Permission denied") != NULL, "the task's errors: %s", err);
    const char *caps[] = {"CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
                          "CapAmb:\t0000000000000000"};
    for (int i = 0; i < 3; i++)
        ck_assert_msg(strstr(out, caps[i]) != NULL, "the task kept capabilities: %s", out);
    cJSON_Delete(rec);
    h_run_free(&res);

    free(script);
    free(key_text);
    free(wkey);
    free(mkey);
    free(mpub);
    free(ckey);
    free(keys);
    free(workers);
    free(clients);
    free(state);
    h_cluster_destroy(&c);
}
END_TEST

/* Runs BIN/ztask-worker with the arguments (NULL-terminated) until it
   exits (a start-up refusal). */
static h_run_t *s_worker_run(h_cluster_t *c, ...)
{
    char *argv[32];
    int n = 0;
    char *bin = NULL;
    ck_assert_int_ge(asprintf(&bin, "%s/ztask-worker", h_bin_dir()), 0);
    argv[n++] = bin;
    argv[n++] = "--master";
    argv[n++] = (char *) h_master_addr(c);
    va_list ap;
    va_start(ap, c);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 31)
        argv[n++] = (char *) a;
    va_end(ap);
    argv[n] = NULL;
    h_run_t *r = h_run(argv, NULL, 20000);
    free(bin);
    return r;
}

START_TIMED_TEST(a_keyless_master_gets_no_root_commands_unless_the_worker_is_told, 60)
{
    if (!s_root_or_skip("a_keyless_master_gets_no_root_commands_unless_the_worker_is_told"))
        return;
    h_cluster_t *c = h_cluster_new("no_root_commands");
    h_master_start(c, 0, NULL);
    h_run_t *r = s_worker_run(c, "--name", "root1", NULL);
    ck_assert_msg(r->rc == 2 && strstr(r->err, "would run as root") &&
                      strstr(r->err, "--run-as USER") && strstr(r->err, "--allow-root"),
                  "a root worker for a keyless master: %s", h_run_desc(r));
    h_run_free(&r);
    /* Functions only, or tasks as another user: accepted. */
    h_worker_start(c, "fns", 1, "--no-exec", NULL);
    h_worker_start(c, "nobody", 1, "--run-as", "nobody", NULL);
    cJSON *all = NULL;
    const cJSON *rec = s_run_shell(c, "id -u", &all);
    char want[32];
    snprintf(want, sizeof want, "%u\n", (unsigned) getpwnam("nobody")->pw_uid);
    ck_assert_str_eq(h_jstr(rec, "stdout"), want);
    cJSON_Delete(all);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(task_rlimits_apply_to_each_command_and_bad_ones_are_refused, 60)
{
    h_cluster_t *c = h_cluster_new("task_rlimits");
    h_master_start(c, 0, NULL);
    h_run_t *r = s_worker_run(c, "--task-rlimit", "nofile=abc", NULL);
    ck_assert_msg(r->rc == 2 && strstr(r->err, "--task-rlimit: nofile: expected a number"),
                  "a bad limit: %s", h_run_desc(r));
    h_run_free(&r);
    r = s_worker_run(c, "--task-rlimit", "files=10", NULL);
    ck_assert_msg(r->rc == 2 && strstr(r->err, "unknown limit 'files'"), "an unknown limit: %s",
                  h_run_desc(r));
    h_run_free(&r);
    h_worker_start(c, "w1", 1, "--task-rlimit", "nofile=64,fsize=1M", "--task-rlimit", "cpu=30",
                   NULL);
    cJSON *all = NULL;
    const cJSON *rec = s_run_shell(c, "grep -E 'open files|file size|cpu time' /proc/self/limits",
                                   &all);
    const char *out = h_jstr(rec, "stdout");
    const char *want[] = {"Max cpu time              30                   30                   "
                          "seconds",
                          "Max file size             1048576              1048576              "
                          "bytes",
                          "Max open files            64                   64                   "
                          "files"};
    for (int i = 0; i < 3; i++)
        ck_assert_msg(strstr(out, want[i]), "want '%s' in %s", want[i], out);
    cJSON_Delete(all);
    /* The worker itself is not limited. */
    ck_assert(h_proc_running(h_master(c)));
    h_cluster_destroy(&c);
}
END_TEST

/* The attack: an allowed bash script (ldd) reads BASH_ENV, here
   /dev/stdin, and the task's stdin says what to run. */
START_TIMED_TEST(allow_exec_takes_only_allow_env_variables_from_a_task, 60)
{
    h_cluster_t *c = h_cluster_new("allow_env");
    h_master_start(c, 0, NULL);
    h_run_t *r = s_worker_run(c, "--allow-env", "LANG", NULL);
    ck_assert_msg(r->rc == 2 && strstr(r->err, "--allow-env: only a worker with --allow-exec"),
                  "--allow-env alone: %s", h_run_desc(r));
    h_run_free(&r);
    r = s_worker_run(c, "--allow-exec", "/usr/bin/ldd", "--allow-env", "LANG,1X", NULL);
    ck_assert_msg(r->rc == 2 && strstr(r->err, "'1X' is not a variable name"),
                  "a bad name: %s", h_run_desc(r));
    h_run_free(&r);
    h_worker_start(c, "w1", 1, "--allow-exec", "/usr/bin/ldd,/usr/bin/perl,/usr/bin/env",
                   "--allow-env", "LANG", NULL);

    char *marker = h_path(c, "pwned");
    char *input = h_path(c, "input.sh"), *script = NULL;
    ck_assert_int_ge(asprintf(&script, "touch %s\n", marker), 0);
    h_write_file(input, script);
    int64_t job = h_submit(c, NULL, "--stdin", input, "--env", "BASH_ENV=/dev/stdin", "--",
                           "/usr/bin/ldd", "/bin/true", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);
    cJSON *all = h_results(c, job, NULL);
    const cJSON *rec = cJSON_GetArrayItem(all, 0);
    const char *err = h_jstr(rec, "error");
    ck_assert_msg(err && strstr(err, "may set only the env variables of its --allow-env list: "
                                     "not BASH_ENV"),
                  "BASH_ENV: %s", err ? err : "(no error)");
    ck_assert_msg(access(marker, F_OK) != 0, "BASH_ENV ran the task's stdin");
    cJSON_Delete(all);

    job = h_submit(c, NULL, "--env", "PERL5OPT=-Mwarnings", "--", "/usr/bin/perl", "-e1", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);
    all = h_results(c, job, NULL);
    err = h_jstr(cJSON_GetArrayItem(all, 0), "error");
    ck_assert_msg(err && strstr(err, "not PERL5OPT"), "PERL5OPT: %s", err ? err : "(no error)");
    cJSON_Delete(all);

    /* What the list names, and the task's own ZTASK_* variables, pass. */
    job = h_submit(c, NULL, "--env", "LANG=C.UTF-8", "--env", "ZTASK_STEP=2", "--",
                   "/usr/bin/env", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    all = h_results(c, job, NULL);
    const char *out = h_jstr(cJSON_GetArrayItem(all, 0), "stdout");
    ck_assert_msg(out && strstr(out, "LANG=C.UTF-8\n") && strstr(out, "ZTASK_STEP=2\n"),
                  "env: %s", out ? out : "");
    cJSON_Delete(all);
    free(script);
    free(input);
    free(marker);
    h_cluster_destroy(&c);
}
END_TEST

/* The database's mode bits (-1 when absent). */
static int s_mode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int) (st.st_mode & 07777) : -1;
}

START_TIMED_TEST(the_database_and_its_wal_are_private_whatever_the_umask, 60)
{
    umask(022);   /* the usual one: SQLite alone would make 0644 files */
    h_cluster_t *c = h_cluster_new("db_modes");
    ck_assert_int_eq(chmod(h_dir(c), 0755), 0);
    /* A free pair: the restart below binds the report port (api + 1) too,
       which a master on port 0 never held (another process had it once). */
    int port = h_free_base_port();
    h_master_start(c, port, NULL);
    h_worker_start(c, "w1", 1, NULL);
    int64_t job = h_submit(c, NULL, "--env", "API_TOKEN=s3cr3t", "--", "true", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    const char *files[] = {"master.db", "master.db-wal", "master.db-shm"};
    for (int i = 0; i < 3; i++) {
        char *path = h_path(c, files[i]);
        int mode = s_mode(path);
        free(path);
        if (mode < 0 && i == 2)
            continue;   /* no -shm in exclusive locking mode */
        ck_assert_msg(mode == 0600, "%s has mode %04o, want 0600", files[i], (unsigned) mode);
    }
    /* A database made before (0644): used, and said. */
    h_proc_stop(h_master(c), 20000);
    char *db = h_path(c, "master.db");
    ck_assert_int_eq(chmod(db, 0644), 0);
    h_proc_t *m = h_master_start(c, port, NULL);
    ck_assert(h_proc_wait_log(m, "event=db_readable_by_others", 1, 10000));
    ck_assert_int_eq(s_mode(db), 0644);
    free(db);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(logs_show_terminal_control_sequences_unless_raw, 60)
{
    h_cluster_t *c = h_cluster_new("logs_escaped");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "w1", 1, NULL);
    /* A title change, a screen clear, a carriage return over the line,
       and the 8-bit CSI (U+009B). */
    int64_t job = h_submit(c, NULL, "--shell",
                           "printf 'ok\\033]0;pwned\\007\\033[2J\\rfake\\302\\2332J\\tend\\n'; "
                           "printf 'e\\033[31mred\\n' >&2",
                           NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    char ref[32];
    snprintf(ref, sizeof ref, "%lld.0", (long long) job);
    h_run_t *r = h_cli(c, "logs", ref, NULL);
    ck_assert_msg(r->rc == 0, "logs: %s", h_run_desc(r));
    ck_assert_str_eq(r->out, "ok\\x1b]0;pwned\\x07\\x1b[2J\\x0dfake\\u009b2J\tend\n");
    ck_assert_str_eq(r->err, "e\\x1b[31mred\n");
    h_run_free(&r);
    r = h_cli(c, "logs", "--raw", ref, NULL);
    ck_assert_msg(r->rc == 0, "logs --raw: %s", h_run_desc(r));
    ck_assert_str_eq(r->out, "ok\033]0;pwned\007\033[2J\rfake\302\2332J\tend\n");
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

START_TIMED_TEST(an_ipc_master_is_reached_only_through_its_directory, 90)
{
    h_cluster_t *c = h_cluster_new("ipc_master");
    /* A directory every local user may enter is refused. */
    char *open_dir = h_path(c, "open"), *bad = NULL;
    ck_assert_int_eq(mkdir(open_dir, 0755), 0);
    ck_assert_int_eq(chmod(open_dir, 0755), 0);
    ck_assert_int_ge(asprintf(&bad, "ipc://%s", open_dir), 0);
    char *bin = NULL, *db = h_path(c, "open.db");
    ck_assert_int_ge(asprintf(&bin, "%s/ztask-master", h_bin_dir()), 0);
    char *argv[] = {bin, "--db", db, "--bind", bad, NULL};
    h_run_t *r = h_run(argv, NULL, 20000);
    ck_assert_msg(r->rc == 1 && strstr(r->err, "open to every local user (mode 0755)") &&
                      strstr(r->err, "chmod o-rwx"),
                  "an open directory: %s", h_run_desc(r));
    h_run_free(&r);

    /* A missing one is made 0700; the master listens there and nowhere
       else; a worker and the CLI reach it by its name. */
    char *dir = h_path(c, "ipc"), *addr = NULL;
    ck_assert_int_ge(asprintf(&addr, "ipc://%s", dir), 0);
    h_proc_t *m = h_master_start(c, 0, "--bind", addr, NULL);
    ck_assert_str_eq(h_master_addr(c), addr);
    ck_assert_int_eq(s_mode(dir), 0700);
    ck_assert_int_eq(h_proc_count_log(m, "tcp://"), 0);
    ck_assert_int_eq(h_proc_count_log(m, "event=no_keys"), 0);
    /* As root, no --allow-root is needed: only root may enter. */
    h_worker_start(c, "w1", 2, NULL);
    cJSON *all = NULL;
    const cJSON *rec = s_run_shell(c, "echo over ipc", &all);
    ck_assert_str_eq(h_jstr(rec, "stdout"), "over ipc\n");
    cJSON_Delete(all);
    char api[400];
    snprintf(api, sizeof api, "%s/%d", dir, h_api_port(c));
    ck_assert_int_eq(s_mode(api) & 0777, 0660);

    /* Another local user is kept out by the directory. */
    if (geteuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0) {
        char *cli = NULL;
        ck_assert_int_ge(asprintf(&cli, "%s/ztask", h_bin_dir()), 0);
        char *nobody[] = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          "--", cli, "--master", addr, "--request-timeout", "2", "submit",
                          "--", "id", NULL};
        r = h_run(nobody, NULL, 30000);
        ck_assert_msg(r->rc != 0, "nobody submitted through %s: %s", addr, h_run_desc(r));
        h_run_free(&r);
        free(cli);
    } else {
        printf("SKIP: an_ipc_master_is_reached_only_through_its_directory: the other-user "
               "part needs root and setpriv\n");
    }
    free(bin);
    free(db);
    free(bad);
    free(open_dir);
    free(dir);
    free(addr);
    h_cluster_destroy(&c);
}
END_TEST

/* --stdout/--stderr files are the task's writes: made and opened with the
   --run-as user's permissions, not the worker's (root's), so a client
   cannot truncate or fill a file only the worker's user may write. */
START_TIMED_TEST(output_files_are_opened_as_the_run_as_user, 60)
{
    if (!s_root_or_skip("output_files_are_opened_as_the_run_as_user"))
        return;
    h_cluster_t *c = h_cluster_new("outfile_run_as");
    h_master_start(c, 0, NULL);
    h_worker_start(c, "nobody", 1, "--run-as", "nobody", NULL);
    ck_assert_int_eq(chmod(h_dir(c), 0711), 0);
    char *victim = h_path(c, "victim");
    h_write_file(victim, "the worker's own file\n");
    ck_assert_int_eq(chmod(victim, 0644), 0);
    int64_t job = h_submit(c, NULL, "--stdout", victim, "--shell", "echo overwritten", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);
    cJSON *all = h_results(c, job, NULL);
    const char *err = h_jstr(cJSON_GetArrayItem(all, 0), "error");
    ck_assert_msg(err && strstr(err, "Permission denied"), "error: %s", err ? err : "(none)");
    cJSON_Delete(all);
    char *text = h_read_file(victim);
    ck_assert_str_eq(text, "the worker's own file\n");
    free(text);
    /* Where the task user may write, the files are made, and are its. */
    char *pub = h_path(c, "pub");
    ck_assert_int_eq(mkdir(pub, 0777), 0);
    ck_assert_int_eq(chmod(pub, 0777), 0);
    char *pattern = NULL;
    ck_assert_int_gt(asprintf(&pattern, "%s/%%{job}/out", pub), 0);
    job = h_submit(c, NULL, "--stdout", pattern, "--shell", "echo ok", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    char *out = NULL;
    ck_assert_int_gt(asprintf(&out, "%s/%lld/out", pub, (long long) job), 0);
    struct stat st;
    ck_assert_int_eq(stat(out, &st), 0);
    ck_assert_uint_eq(st.st_uid, getpwnam("nobody")->pw_uid);
    text = h_read_file(out);
    ck_assert_str_eq(text, "ok\n");
    free(text);
    free(out);
    free(pattern);
    free(pub);
    free(victim);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_tasksec", h_slowdown()));
}
