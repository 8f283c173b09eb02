/*  Unit tests for worker/exec: one command task as a child process.

    The tests run real programs (/bin/sh, cat, ls, sleep, head, tr) from
    Debian's coreutils and dash. Waiting is done on events (exec_run
    returning, output arriving, waitpid), never on sleeps; the sleeps in
    the shell commands below are the tasks' own work. Tests that check a
    process group is gone make the test process a child subreaper, so the
    group's orphans become our children and can be awaited with
    waitpid(-pgid) before asking kill(-pgid, 0) whether anyone is left.
*/
#include "../../worker/exec.h"

#include "../../common/clock.h"
#include "../../common/util.h"

#include "../ztest.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* A command spec as the proto decoder would produce it. */
static proto_spec_t s_spec(void)
{
    proto_spec_t spec;
    memset(&spec, 0, sizeof spec);
    spec.kind = PROTO_KIND_EXEC;
    spec.index = -1;
    spec.output_cap = PROTO_DEFAULT_OUTPUT_CAP;
    return spec;
}

static proto_result_t *s_run(const proto_spec_t *spec)
{
    exec_req_t req = {.spec = spec, .task_id = 7, .job_id = 3, .attempt = 1};
    proto_result_t *res = proto_result_new();
    ck_assert_int_eq(exec_run(&req, res), 0);
    return res;
}

static proto_result_t *s_run_shell(const char *cmd)
{
    proto_spec_t spec = s_spec();
    spec.shell = (char *) cmd;
    return s_run(&spec);
}

/* Every child of ours has been reaped: nothing left to wait for. */
static void s_assert_no_children(void)
{
    errno = 0;
    ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
    ck_assert_int_eq(errno, ECHILD);
}

/* Waits for the group's members that were orphaned to us (we are a
   subreaper), then asserts no process of the group remains. */
static void s_assert_group_gone(pid_t pgid)
{
    ck_assert_int_gt(pgid, 1);
    for (int i = 0; i < 64; i++)
        if (waitpid(-pgid, NULL, 0) < 0) {
            ck_assert_int_eq(errno, ECHILD);
            break;
        }
    errno = 0;
    ck_assert_int_eq(kill(-pgid, 0), -1);
    ck_assert_int_eq(errno, ESRCH);
}

static void s_become_subreaper(void)
{
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
}

/* Undone after each case, for CK_FORK=no runs (valgrind) where the cases
   share one process. */
static void s_teardown(void)
{
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
    clock_wall_offset_set(0);
}

/* One command and what its run must give: most tests below are one such
   row. The status, exit code, signal and error are always checked (an
   unset error must be NULL); stdout and stderr when given. */
#define NO_EXIT_CODE (-1)   /* killed, or never started */
typedef struct {
    char *argv[8];            /* NULL-terminated; unused when shell is set */
    const char *shell;
    const char *stdin_data;   /* NULL: no stdin */
    const char *cwd;
    proto_state_t status;
    int exit_code;            /* NO_EXIT_CODE: has_exit_code must be false */
    int signal;
    const char *out, *err;    /* NULL: not checked */
    const char *error;
} exec_case_t;

/* Runs c's command and checks the result against it. */
static void s_expect_run(const exec_case_t *c)
{
    proto_spec_t spec = s_spec();
    int argc = 0;
    while (c->argv[argc])
        argc++;
    if (c->shell) {
        spec.shell = (char *) c->shell;
    } else {
        spec.argv = (char **) c->argv;
        spec.argc = argc;
    }
    if (c->stdin_data) {
        spec.stdin_data = (char *) c->stdin_data;
        spec.stdin_len = strlen(c->stdin_data);
    }
    spec.cwd = (char *) c->cwd;
    const char *what = c->shell ? c->shell : c->argv[0];
    proto_result_t *res = s_run(&spec);
    ck_assert_msg(res->status == c->status, "%s: status %d, want %d (error %s)", what,
                  (int) res->status, (int) c->status, res->error ? res->error : "-");
    if (c->exit_code == NO_EXIT_CODE) {
        ck_assert_msg(!res->has_exit_code, "%s: has an exit code (%d)", what, res->exit_code);
    } else {
        ck_assert_msg(res->has_exit_code, "%s: no exit code", what);
        ck_assert_int_eq(res->exit_code, c->exit_code);
    }
    ck_assert_int_eq(res->signal, c->signal);
    ck_assert(!res->timed_out);
    if (c->out)
        ck_assert_str_eq(res->stdout_data, c->out);
    if (c->err)
        ck_assert_str_eq(res->stderr_data, c->err);
    if (c->error)
        ck_assert_str_eq(res->error, c->error);
    else
        ck_assert_ptr_null(res->error);
    proto_result_destroy(&res);
}

/* ---- forms, exit codes, signals ----------------------------------------- */

START_TEST(runs_a_command_and_captures_its_output)
{
    char *argv[] = {"echo", "hello", "world", NULL};
    proto_spec_t spec = s_spec();
    spec.argv = argv;
    spec.argc = 3;
    exec_req_t req = {.spec = &spec, .task_id = 42, .job_id = 5, .attempt = 2};
    proto_result_t *res = proto_result_new();

    double before = clock_wall();
    ck_assert_int_eq(exec_run(&req, res), 0);

    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    ck_assert(res->has_exit_code);
    ck_assert_int_eq(res->exit_code, 0);
    ck_assert_int_eq(res->signal, 0);
    ck_assert(!res->timed_out);
    ck_assert_str_eq(res->stdout_data, "hello world\n");
    ck_assert_str_eq(res->stderr_data, "");
    ck_assert_ptr_null(res->error);
    ck_assert_int_eq(res->task, 42);
    ck_assert_int_eq(res->attempt, 2);
    ck_assert(res->started >= before - 0.001 && res->finished >= res->started);
    proto_result_destroy(&res);
    s_assert_no_children();
}
END_TEST

START_TEST(shell_form_runs_through_sh_and_reports_its_exit_status)
{
    s_expect_run(&(exec_case_t){ .shell = "echo out; echo err >&2; exit 3",
                                 .status = PROTO_ST_FAILED, .exit_code = 3,
                                 .out = "out\n", .err = "err\n",
                                 .error = "exited with status 3" });
}
END_TEST

START_TEST(argv_is_passed_verbatim_without_a_shell)
{
    s_expect_run(&(exec_case_t){ .argv = { "printf", "[%s]", "a b", "$HOME", "*" },
                                 .status = PROTO_ST_DONE, .out = "[a b][$HOME][*]" });
}
END_TEST

START_TEST(death_by_signal_is_reported_with_its_name)
{
    s_expect_run(&(exec_case_t){ .shell = "kill -9 $$", .status = PROTO_ST_FAILED,
                                 .exit_code = NO_EXIT_CODE, .signal = 9,
                                 .error = "killed by signal 9 (Killed)" });
}
END_TEST

START_TEST(child_runs_in_its_own_process_group)
{
    char *argv[] = {"cat", "/proc/self/stat", NULL};
    proto_spec_t spec = s_spec();
    spec.argv = argv;
    spec.argc = 2;
    proto_result_t *res = s_run(&spec);
    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    int pid = 0, ppid = 0, pgrp = 0;
    char state;
    const char *after_comm = strrchr(res->stdout_data, ')');
    ck_assert_ptr_nonnull(after_comm);
    ck_assert_int_eq(sscanf(res->stdout_data, "%d", &pid), 1);
    ck_assert_int_eq(sscanf(after_comm + 1, " %c %d %d", &state, &ppid, &pgrp), 3);
    ck_assert_int_eq(ppid, getpid());
    ck_assert_int_eq(pgrp, pid);
    proto_result_destroy(&res);
}
END_TEST

START_TEST(child_starts_with_default_signal_dispositions_and_empty_mask)
{
    /* The worker ignores SIGPIPE and a pool thread blocks some signals;
       neither may leak into the task. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    char *argv[] = {"grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status", NULL};
    proto_spec_t spec = s_spec();
    spec.argv = argv;
    spec.argc = 4;
    /* Both ways: every signal reset (reset NULL), and only the ones this
       process changed, as the worker asks. */
    sigset_t changed;
    exec_changed_signals(&changed);
    ck_assert_int_eq(sigismember(&changed, SIGPIPE), 1);
    ck_assert_int_eq(sigismember(&changed, SIGHUP), 1);
    ck_assert_int_eq(sigismember(&changed, SIGUSR2), 0);
    for (int way = 0; way < 2; way++) {
        exec_req_t req = {.spec = &spec, .task_id = 7, .job_id = 3, .attempt = 1,
                          .reset = way ? &changed : NULL};
        proto_result_t *res = proto_result_new();
        ck_assert_int_eq(exec_run(&req, res), 0);
        ck_assert_int_eq(res->status, PROTO_ST_DONE);
        unsigned long long blk = 1, ign = 1;
        ck_assert_int_eq(sscanf(res->stdout_data, "SigBlk:\t%llx\nSigIgn:\t%llx", &blk, &ign), 2);
        ck_assert_uint_eq(blk, 0);
        /* Signals 32 and 33 belong to glibc (thread cancel/setxid): sigaction
           cannot change them, so whatever the environment that started the
           tests left on them is inherited; they are not ours to judge. */
        ck_assert_uint_eq(ign & ~((1ULL << 31) | (1ULL << 32)), 0);
        proto_result_destroy(&res);
    }
}
END_TEST

/* ---- stdin ------------------------------------------------------------- */

START_TEST(stdin_data_is_fed_to_the_child)
{
    s_expect_run(&(exec_case_t){ .argv = { "cat" }, .stdin_data = "line one\nline two\n",
                                 .status = PROTO_ST_DONE, .out = "line one\nline two\n" });
}
END_TEST

START_TEST(absent_stdin_reads_as_empty)
{
    /* cat would wait forever on an inherited terminal or pipe. */
    s_expect_run(&(exec_case_t){ .argv = { "cat" }, .status = PROTO_ST_DONE, .out = "" });
}
END_TEST

START_TEST(large_stdin_and_large_output_do_not_deadlock)
{
    /* cat writes its output before it has read all its input: a runner
       that wrote all of stdin before reading would block forever. */
    size_t len = 6 * 1024 * 1024;
    char *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (char) ('a' + (i * 7 + i / 4096) % 26);
    data[len - 1] = '\n';
    char *argv[] = {"cat", NULL};
    proto_spec_t spec = s_spec();
    spec.argv = argv;
    spec.argc = 1;
    spec.stdin_data = data;
    spec.stdin_len = len;
    spec.output_cap = 8 * 1024 * 1024;
    proto_result_t *res = s_run(&spec);
    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    ck_assert(!res->stdout_truncated);
    ck_assert_uint_eq(strlen(res->stdout_data), len);
    ck_assert(memcmp(res->stdout_data, data, len) == 0);
    proto_result_destroy(&res);
    free(data);
}
END_TEST

START_TEST(child_that_stops_reading_stdin_does_not_hurt_the_runner)
{
    /* The rest of stdin hits a closed pipe: EPIPE, and no SIGPIPE may
       reach this process (SIGPIPE is at its default, fatal, here). */
    signal(SIGPIPE, SIG_DFL);
    size_t len = 4 * 1024 * 1024;
    char *data = malloc(len);
    memset(data, 'x', len);
    char *argv[] = {"head", "-c", "5", NULL};
    proto_spec_t spec = s_spec();
    spec.argv = argv;
    spec.argc = 3;
    spec.stdin_data = data;
    spec.stdin_len = len;
    proto_result_t *res = s_run(&spec);
    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    ck_assert_str_eq(res->stdout_data, "xxxxx");
    sigset_t pending;
    sigpending(&pending);
    ck_assert(!sigismember(&pending, SIGPIPE));
    proto_result_destroy(&res);
    free(data);
}
END_TEST

/* ---- environment and cwd ------------------------------------------------ */

START_TEST(environment_is_inherited_overridden_and_tagged)
{
    setenv("ZT_TEST_INHERITED", "from-parent", 1);
    setenv("ZT_TEST_OVERRIDDEN", "from-parent", 1);
    setenv("ZTASK_TASK_INDEX", "99", 1);   /* stale, from a worker started by a task */
    char *env[] = {"ZT_TEST_OVERRIDDEN=from-spec", "ZT_TEST_NEW=new value", NULL};
    proto_spec_t spec = s_spec();
    spec.shell = "echo \"$ZT_TEST_INHERITED|$ZT_TEST_OVERRIDDEN|$ZT_TEST_NEW|"
                 "$ZTASK_TASK_ID|$ZTASK_JOB_ID|$ZTASK_ATTEMPT|${ZTASK_TASK_INDEX-unset}\"";
    spec.env = env;
    spec.envc = 2;
    exec_req_t req = {.spec = &spec, .task_id = 1234, .job_id = 56, .attempt = 3};
    proto_result_t *res = proto_result_new();
    ck_assert_int_eq(exec_run(&req, res), 0);
    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    ck_assert_str_eq(res->stdout_data, "from-parent|from-spec|new value|1234|56|3|unset\n");

    spec.index = 17;
    ck_assert_int_eq(exec_run(&req, res), 0);
    ck_assert_str_eq(res->stdout_data, "from-parent|from-spec|new value|1234|56|3|17\n");
    proto_result_destroy(&res);
}
END_TEST

START_TEST(program_is_found_on_the_path_given_in_the_spec_env)
{
    /* The spec's PATH is searched (as `env PATH=.. prog` would); a file
       without "#!" is run by /bin/sh, as execvp does. */
    char dir[] = "/tmp/zt-exec-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *tool = xasprintf("%s/zt-tool", dir);
    FILE *f = fopen(tool, "w");
    ck_assert_ptr_nonnull(f);
    fputs("echo tool ran with \"$1\"\n", f);
    fclose(f);
    ck_assert_int_eq(chmod(tool, 0755), 0);

    char *path_var = xasprintf("PATH=/nonexistent:%s:/usr/bin:/bin", dir);
    char *env[] = {path_var, NULL};
    char *argv[] = {"zt-tool", "arg", NULL};
    proto_spec_t spec = s_spec();
    spec.argv = argv;
    spec.argc = 2;
    spec.env = env;
    spec.envc = 1;
    proto_result_t *res = s_run(&spec);
    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    ck_assert_str_eq(res->stdout_data, "tool ran with arg\n");
    proto_result_destroy(&res);

    unlink(tool);
    rmdir(dir);
    free(tool);
    free(path_var);
}
END_TEST

START_TEST(cwd_is_where_the_child_runs)
{
    s_expect_run(&(exec_case_t){ .argv = { "pwd" }, .cwd = "/usr/share",
                                 .status = PROTO_ST_DONE, .out = "/usr/share\n" });
}
END_TEST

START_TEST(bad_cwd_fails_with_a_clear_error)
{
    s_expect_run(&(exec_case_t){
        .argv = { "pwd" }, .cwd = "/nonexistent/zt-dir", .status = PROTO_ST_FAILED,
        .exit_code = NO_EXIT_CODE, .out = "",
        .error = "cannot chdir to '/nonexistent/zt-dir': No such file or directory" });
    s_assert_no_children();
}
END_TEST

START_TEST(missing_program_fails_with_a_clear_error)
{
    s_expect_run(&(exec_case_t){
        .argv = { "zt-no-such-program" }, .status = PROTO_ST_FAILED, .exit_code = NO_EXIT_CODE,
        .error = "cannot execute 'zt-no-such-program': No such file or directory" });

    /* Exists but has no execute bit (even root may not run it). */
    char plain[] = "/tmp/zt-exec-plain-XXXXXX";
    int fd = mkstemp(plain);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(chmod(plain, 0644), 0);
    char *want = xasprintf("cannot execute '%s': Permission denied", plain);
    s_expect_run(&(exec_case_t){ .argv = { plain }, .status = PROTO_ST_FAILED,
                                 .exit_code = NO_EXIT_CODE, .error = want });
    unlink(plain);
    free(want);
    s_assert_no_children();
}
END_TEST

START_TEST(non_command_specs_are_refused)
{
    proto_spec_t spec = s_spec();
    spec.kind = PROTO_KIND_FN;
    spec.fn = "noop";
    proto_result_t *res = s_run(&spec);
    ck_assert_int_eq(res->status, PROTO_ST_FAILED);
    ck_assert_ptr_nonnull(res->error);
    proto_result_destroy(&res);
}
END_TEST

/* ---- output ----------------------------------------------------------- */

START_TEST(output_beyond_the_cap_is_dropped_and_marked_truncated)
{
    /* 5 MiB against a 1 MiB cap: the child must still finish (the rest is
       read and dropped, never left to fill the pipe). */
    proto_spec_t spec = s_spec();
    spec.shell = "head -c 5242880 /dev/zero | tr '\\0' a; echo small >&2";
    spec.output_cap = 1024 * 1024;
    proto_result_t *res = s_run(&spec);
    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    ck_assert(res->stdout_truncated);
    ck_assert_uint_eq(strlen(res->stdout_data), 1024 * 1024);
    ck_assert_int_eq(res->stdout_data[1024 * 1024 - 1], 'a');
    ck_assert(!res->stderr_truncated);
    ck_assert_str_eq(res->stderr_data, "small\n");
    proto_result_destroy(&res);
}
END_TEST

START_TEST(invalid_utf8_output_is_repaired)
{
    proto_result_t *res = s_run_shell("printf 'ok\\377\\376end\\000x'; printf '\\303' >&2");
    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    ck_assert(utf8_valid(res->stdout_data, strlen(res->stdout_data)));
    ck_assert_str_eq(res->stdout_data, "ok\xEF\xBF\xBD\xEF\xBF\xBD" "end\xEF\xBF\xBDx");
    ck_assert_str_eq(res->stderr_data, "\xEF\xBF\xBD");
    proto_result_destroy(&res);
}
END_TEST

typedef struct {
    char *data[3];                /* per stream, concatenated */
    size_t len[3];
    int calls[3];
    bool chunks_valid_utf8;
    atomic_bool *cancel_on_output;  /* set once any output arrived */
    sem_t *post_on_output;          /* posted once on the first output */
    bool posted;
    int64_t first_output_ms;
} sink_t;

static void s_on_output(void *arg, int stream, const char *data, size_t len)
{
    sink_t *s = arg;
    ck_assert(stream == 1 || stream == 2);
    ck_assert_uint_gt(len, 0);
    s->data[stream] = xrealloc(s->data[stream], s->len[stream] + len + 1);
    memcpy(s->data[stream] + s->len[stream], data, len);
    s->len[stream] += len;
    s->data[stream][s->len[stream]] = '\0';
    s->calls[stream]++;
    if (!utf8_valid(data, len))
        s->chunks_valid_utf8 = false;
    if (!s->first_output_ms)
        s->first_output_ms = clock_mono_ms();
    if (s->cancel_on_output)
        atomic_store(s->cancel_on_output, true);
    if (s->post_on_output && !s->posted) {
        s->posted = true;
        sem_post(s->post_on_output);
    }
}

static void s_sink_free(sink_t *s)
{
    for (int i = 0; i < 3; i++)
        free(s->data[i]);
}

START_TEST(on_output_receives_the_bytes_coalesced)
{
    /* 30 lines over ~0.6 s: the callback sees them all, in order, but
       in at most about one chunk per 100 ms. */
    sink_t sink = {.chunks_valid_utf8 = true};
    proto_spec_t spec = s_spec();
    spec.shell = "i=0; while [ $i -lt 30 ]; do echo line$i; i=$((i+1)); sleep 0.02; done;"
                 "echo to-stderr >&2";
    exec_req_t req = {.spec = &spec, .task_id = 1, .attempt = 1, .on_output = s_on_output,
                      .arg = &sink};
    proto_result_t *res = proto_result_new();
    int64_t t0 = clock_mono_ms();
    ck_assert_int_eq(exec_run(&req, res), 0);
    int64_t took = clock_mono_ms() - t0;
    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    ck_assert_ptr_nonnull(sink.data[1]);
    ck_assert_str_eq(sink.data[1], res->stdout_data);
    ck_assert_str_eq(sink.data[2], "to-stderr\n");
    /* Live (more than one chunk), but not one call per line: one at the
       start, one per 100 ms, one for the remainder at the end. */
    ck_assert_int_ge(sink.calls[1], 2);
    ck_assert_int_lt(sink.calls[1], 30);
    ck_assert_int_le(sink.calls[1], took / 100 + 2);
    proto_result_destroy(&res);
    s_sink_free(&sink);
}
END_TEST

START_TEST(on_output_chunks_do_not_split_a_character)
{
    /* "é" is C3 A9; the child writes C3, pauses past a flush, writes A9. */
    sink_t sink = {.chunks_valid_utf8 = true};
    proto_spec_t spec = s_spec();
    spec.shell = "printf 'a\\303'; sleep 0.3; printf '\\251b'";
    exec_req_t req = {.spec = &spec, .on_output = s_on_output, .arg = &sink};
    proto_result_t *res = proto_result_new();
    ck_assert_int_eq(exec_run(&req, res), 0);
    ck_assert_str_eq(res->stdout_data, "a\xC3\xA9" "b");
    ck_assert_str_eq(sink.data[1], "a\xC3\xA9" "b");
    ck_assert(sink.chunks_valid_utf8);
    ck_assert_int_eq(sink.calls[1], 2);
    proto_result_destroy(&res);
    s_sink_free(&sink);
}
END_TEST

/* ---- timeout, cancel, process groups ------------------------------------- */

START_TEST(timeout_kills_the_whole_process_group_promptly)
{
    s_become_subreaper();
    proto_spec_t spec = s_spec();
    spec.shell = "echo $$; sleep 100 & sleep 100 & wait";
    spec.timeout = 0.3;
    exec_req_t req = {.spec = &spec, .kill_grace_ms = 5000};
    proto_result_t *res = proto_result_new();
    int64_t t0 = clock_mono_ms();
    ck_assert_int_eq(exec_run(&req, res), 0);
    int64_t took = clock_mono_ms() - t0;

    ck_assert_int_ge(took, 300);
    ck_assert_int_lt(took, 2000);   /* SIGTERM sufficed: no wait for the grace */
    ck_assert_int_eq(res->status, PROTO_ST_FAILED);
    ck_assert(res->timed_out);
    ck_assert_int_eq(res->signal, SIGTERM);
    ck_assert_str_eq(res->error, "timed out after 0.3 s");
    s_assert_group_gone((pid_t) atoi(res->stdout_data));
    s_assert_no_children();
    proto_result_destroy(&res);
}
END_TEST

/* on_output that sets the wall clock by *(double *) arg on its first call:
   on exec_run's own thread, after the deadline was set, while the child
   runs (the commands below print first, then sleep). */
static void s_jump_on_output(void *arg, int stream, const char *data, size_t len)
{
    (void) stream;
    (void) data;
    (void) len;
    double *jump = arg;
    if (*jump != 0)
        clock_wall_offset_set(*jump);
    *jump = 0;
}

/* The timeout runs on the monotonic clock: the wall clock set a day
   forward while the child runs does not time it out, set a day back it
   does not let the child run past its timeout. */
START_TEST(wall_clock_jumps_neither_time_out_a_command_early_nor_late)
{
    proto_spec_t spec = s_spec();
    spec.shell = "echo go; sleep 0.5";
    spec.timeout = 30;
    double jump = 86400.0;
    exec_req_t req = {.spec = &spec, .on_output = s_jump_on_output, .arg = &jump};
    proto_result_t *res = proto_result_new();
    ck_assert_int_eq(exec_run(&req, res), 0);
    ck_assert_msg(res->status == PROTO_ST_DONE && !res->timed_out,
                  "the wall clock a day ahead ended the command: %s",
                  res->error ? res->error : "-");
    /* The record has the jump in it: it came between start and end. */
    ck_assert_double_ge(res->finished - res->started, 86400.0);

    spec.shell = "echo go; sleep 10";
    spec.timeout = 0.3;
    jump = -86400.0;
    int64_t t0 = clock_mono_ms();
    ck_assert_int_eq(exec_run(&req, res), 0);
    int64_t took = clock_mono_ms() - t0;
    ck_assert_msg(res->timed_out, "the wall clock a day back let the command run %d ms",
                  (int) took);
    ck_assert_int_eq(res->status, PROTO_ST_FAILED);
    ck_assert_int_lt(took, 5000);
    ck_assert_double_le(res->finished - res->started, -86000.0);
    proto_result_destroy(&res);
    s_assert_no_children();
}
END_TEST

START_TEST(child_ignoring_sigterm_is_killed_after_the_grace)
{
    /* Cancel as soon as the trap is in place (the child says so), then
       SIGTERM is ignored by the shell and its sleep alike. */
    s_become_subreaper();
    atomic_bool cancel = false;
    sink_t sink = {.cancel_on_output = &cancel};
    proto_spec_t spec = s_spec();
    spec.shell = "trap '' TERM; echo $$; while :; do sleep 1; done";
    exec_req_t req = {.spec = &spec, .kill_grace_ms = 300, .cancel = &cancel,
                      .on_output = s_on_output, .arg = &sink};
    proto_result_t *res = proto_result_new();
    ck_assert_int_eq(exec_run(&req, res), 0);
    int64_t after_cancel = clock_mono_ms() - sink.first_output_ms;

    ck_assert_int_ge(after_cancel, 300);
    ck_assert_int_lt(after_cancel, 1500);
    ck_assert_int_eq(res->status, PROTO_ST_CANCELLED);
    ck_assert_int_eq(res->signal, SIGKILL);
    ck_assert_str_eq(res->error, "cancelled");
    s_assert_group_gone((pid_t) atoi(res->stdout_data));
    s_assert_no_children();
    proto_result_destroy(&res);
    s_sink_free(&sink);
}
END_TEST

typedef struct {
    sem_t started;
    atomic_bool cancel;
    int64_t cancelled_at;
} canceller_t;

static void *s_canceller(void *arg)
{
    canceller_t *c = arg;
    while (sem_wait(&c->started) < 0 && errno == EINTR)
        ;
    c->cancelled_at = clock_mono_ms();
    atomic_store(&c->cancel, true);
    return NULL;
}

START_TEST(cancel_from_another_thread_stops_the_task)
{
    canceller_t c;
    sem_init(&c.started, 0, 0);
    atomic_init(&c.cancel, false);
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, s_canceller, &c), 0);

    sink_t sink = {.post_on_output = &c.started};
    proto_spec_t spec = s_spec();
    spec.shell = "echo started; sleep 100";
    exec_req_t req = {.spec = &spec, .cancel = &c.cancel, .on_output = s_on_output,
                      .arg = &sink};
    proto_result_t *res = proto_result_new();
    ck_assert_int_eq(exec_run(&req, res), 0);
    int64_t returned_at = clock_mono_ms();
    pthread_join(thread, NULL);

    ck_assert_int_eq(res->status, PROTO_ST_CANCELLED);
    ck_assert_str_eq(res->error, "cancelled");
    ck_assert_str_eq(res->stdout_data, "started\n");
    ck_assert_int_lt(returned_at - c.cancelled_at, 1000);
    s_assert_no_children();
    proto_result_destroy(&res);
    s_sink_free(&sink);
    sem_destroy(&c.started);
}
END_TEST

START_TEST(cancel_before_start_runs_nothing)
{
    atomic_bool cancel = true;
    proto_spec_t spec = s_spec();
    spec.shell = "echo ran";
    exec_req_t req = {.spec = &spec, .cancel = &cancel};
    proto_result_t *res = proto_result_new();
    ck_assert_int_eq(exec_run(&req, res), 0);
    ck_assert_int_eq(res->status, PROTO_ST_CANCELLED);
    ck_assert_ptr_null(res->stdout_data);
    s_assert_no_children();
    proto_result_destroy(&res);
}
END_TEST

START_TEST(grandchild_holding_stdout_does_not_hang_the_runner)
{
    s_become_subreaper();
    proto_spec_t spec = s_spec();
    spec.shell = "echo $$; sleep 100 & echo parent-done";
    exec_req_t req = {.spec = &spec};
    proto_result_t *res = proto_result_new();
    int64_t t0 = clock_mono_ms();
    ck_assert_int_eq(exec_run(&req, res), 0);
    ck_assert_int_lt(clock_mono_ms() - t0, 1500);
    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    pid_t pgid = (pid_t) atoi(res->stdout_data);
    ck_assert(strstr(res->stdout_data, "\nparent-done\n") != NULL);
    s_assert_group_gone(pgid);
    s_assert_no_children();
    proto_result_destroy(&res);
}
END_TEST

START_TEST(child_that_closes_its_output_is_still_awaited_and_timed)
{
    /* End of output is not end of task: the runner waits for the exit. */
    int64_t t0 = clock_mono_ms();
    proto_result_t *res = s_run_shell("echo bye; exec >&- 2>&-; sleep 0.3; exit 5");
    ck_assert_int_ge(clock_mono_ms() - t0, 300);
    ck_assert_int_eq(res->status, PROTO_ST_FAILED);
    ck_assert_int_eq(res->exit_code, 5);
    ck_assert_str_eq(res->stdout_data, "bye\n");
    proto_result_destroy(&res);

    /* ... and the timeout still applies to it. */
    proto_spec_t spec = s_spec();
    spec.shell = "exec >&- 2>&-; sleep 100";
    spec.timeout = 0.2;
    t0 = clock_mono_ms();
    res = s_run(&spec);
    ck_assert_int_lt(clock_mono_ms() - t0, 2000);
    ck_assert(res->timed_out);
    ck_assert_str_eq(res->error, "timed out after 0.2 s");
    proto_result_destroy(&res);
    s_assert_no_children();
}
END_TEST

START_TEST(a_process_left_in_the_group_is_killed_when_the_task_ends)
{
    /* It closed our pipes, so nothing made the runner wait for it: the
       task is over when its shell exits, and so is the sleep. */
    s_become_subreaper();
    proto_spec_t spec = s_spec();
    spec.shell = "sleep 100 >/dev/null 2>&1 </dev/null & echo $$ $!";
    int64_t t0 = clock_mono_ms();
    proto_result_t *res = s_run(&spec);
    ck_assert_int_lt(clock_mono_ms() - t0, 1500);
    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    int pgid = 0, bg = 0;
    ck_assert_int_eq(sscanf(res->stdout_data, "%d %d", &pgid, &bg), 2);
    s_assert_group_gone((pid_t) pgid);
    s_assert_no_children();
    proto_result_destroy(&res);
}
END_TEST

typedef struct {
    reaper_slot_t *slot;
    int32_t seen;             /* the slot's group while output arrived */
} slot_watch_t;

static void s_watch_slot(void *arg, int stream, const char *data, size_t len)
{
    (void) stream;
    (void) data;
    (void) len;
    slot_watch_t *w = arg;
    if (!w->seen)
        w->seen = atomic_load(&w->slot->pgid);
}

START_TEST(the_reaper_slot_names_the_group_while_it_runs_and_is_cleared_after)
{
    /* Shared like the reaper's table, so a fork-built child (sanitizers)
       writes where we read. */
    reaper_slot_t *slot = mmap(NULL, sizeof *slot, PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(slot, MAP_FAILED);
    exec_kit_t *kit = exec_kit_new();
    ck_assert_ptr_nonnull(kit);
    for (int with_kit = 0; with_kit < 2; with_kit++) {
        slot_watch_t w = {.slot = slot};
        proto_spec_t spec = s_spec();
        spec.shell = "echo $$; sleep 0.3";
        exec_req_t req = {.spec = &spec, .task_id = 41, .job_id = 6, .attempt = 3,
                          .on_output = s_watch_slot, .arg = &w, .slot = slot,
                          .kit = with_kit ? kit : NULL};
        proto_result_t *res = proto_result_new();
        ck_assert_int_eq(exec_run(&req, res), 0);
        ck_assert_int_eq(res->status, PROTO_ST_DONE);
        ck_assert_int_eq(w.seen, atoi(res->stdout_data));
        ck_assert_int_eq(atomic_load(&slot->pgid), 0);
        ck_assert_int_eq(slot->task, 41);
        ck_assert_int_eq(slot->job, 6);
        ck_assert_int_eq(slot->attempt, 3);
        proto_result_destroy(&res);
    }
    exec_kit_destroy(&kit);
    munmap(slot, sizeof *slot);
    s_assert_no_children();
}
END_TEST

START_TEST(output_held_outside_the_group_is_abandoned_not_awaited)
{
    /* setsid takes the sleep out of our group, so the group kill misses
       it; the runner gives up on the pipe instead of hanging. */
    s_become_subreaper();
    proto_spec_t spec = s_spec();
    spec.shell = "setsid sleep 30 & echo $!";
    int64_t t0 = clock_mono_ms();
    proto_result_t *res = s_run(&spec);
    ck_assert_int_lt(clock_mono_ms() - t0, 3000);
    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    pid_t escaped = (pid_t) atoi(res->stdout_data);
    ck_assert_int_gt(escaped, 1);
    ck_assert_int_eq(kill(escaped, SIGKILL), 0);   /* it did survive: clean up */
    ck_assert_int_eq(waitpid(escaped, NULL, 0), escaped);
    s_assert_no_children();
    proto_result_destroy(&res);
}
END_TEST

/* ---- descriptors, zombies, threads ------------------------------------ */

START_TEST(child_inherits_no_descriptor_but_0_1_2)
{
    /* Descriptors of ours that are not close-on-exec must not leak. */
    int leak1 = open("/dev/null", O_RDONLY);
    int leak2[2];
    ck_assert_int_eq(pipe(leak2), 0);
    ck_assert_int_ge(leak1, 0);
    char *argv[] = {"ls", "/proc/self/fd", NULL};
    proto_spec_t spec = s_spec();
    spec.argv = argv;
    spec.argc = 2;
    proto_result_t *res = s_run(&spec);
    ck_assert_int_eq(res->status, PROTO_ST_DONE);
    /* 0, 1, 2 and the directory ls itself opened to list. */
    ck_assert_str_eq(res->stdout_data, "0\n1\n2\n3\n");
    proto_result_destroy(&res);
    close(leak1);
    close(leak2[0]);
    close(leak2[1]);
}
END_TEST

static proto_result_t *s_run_kit(const proto_spec_t *spec, exec_kit_t *kit)
{
    exec_req_t req = {.spec = spec, .task_id = 7, .job_id = 3, .attempt = 1, .kit = kit};
    proto_result_t *res = proto_result_new();
    ck_assert_int_eq(exec_run(&req, res), 0);
    return res;
}

START_TEST(one_kit_serves_many_runs)
{
    /* What a pool thread does: one kit, command after command. */
    exec_kit_t *kit = exec_kit_new();
    ck_assert_ptr_nonnull(kit);
    for (int round = 0; round < 3; round++) {
        char *cat[] = {"cat", NULL};
        proto_spec_t spec = s_spec();
        spec.argv = cat;
        spec.argc = 1;
        proto_result_t *res = s_run_kit(&spec, kit);   /* stdin: the kit's /dev/null */
        ck_assert_int_eq(res->status, PROTO_ST_DONE);
        ck_assert_str_eq(res->stdout_data, "");
        proto_result_destroy(&res);

        spec.stdin_data = "fed\n";
        spec.stdin_len = 4;
        res = s_run_kit(&spec, kit);
        ck_assert_int_eq(res->status, PROTO_ST_DONE);
        ck_assert_str_eq(res->stdout_data, "fed\n");
        proto_result_destroy(&res);

        /* The kit's descriptor does not reach the child. */
        char *ls[] = {"ls", "/proc/self/fd", NULL};
        spec = s_spec();
        spec.argv = ls;
        spec.argc = 2;
        res = s_run_kit(&spec, kit);
        ck_assert_int_eq(res->status, PROTO_ST_DONE);
        ck_assert_str_eq(res->stdout_data, "0\n1\n2\n3\n");
        proto_result_destroy(&res);

        char *missing[] = {"ztask-no-such-program", NULL};
        spec.argv = missing;
        spec.argc = 1;
        res = s_run_kit(&spec, kit);
        ck_assert_int_eq(res->status, PROTO_ST_FAILED);
        ck_assert_ptr_nonnull(strstr(res->error, "cannot execute 'ztask-no-such-program'"));
        proto_result_destroy(&res);
    }
    exec_kit_destroy(&kit);
    ck_assert_ptr_null(kit);
    s_assert_no_children();
}
END_TEST

START_TEST(no_zombie_is_left_after_any_ending)
{
    const char *cmds[] = {"true", "exit 4", "kill -TERM $$", "sleep 100 & echo bg"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        proto_result_t *res = s_run_shell(cmds[i]);
        proto_result_destroy(&res);
        s_assert_no_children();
    }
}
END_TEST

#define NTHREADS 8

typedef struct {
    int index;
    char *stdin_data;
    size_t stdin_len;
    proto_result_t *res;
    int rc;
} worker_arg_t;

static void *s_thread_run(void *arg)
{
    worker_arg_t *w = arg;
    char *env_entry = xasprintf("ZT_THREAD=%d", w->index);
    char *env[] = {env_entry, NULL};
    proto_spec_t spec = s_spec();
    spec.shell = "echo \"thread $ZT_THREAD task $ZTASK_TASK_ID\"; cat; echo end >&2";
    spec.env = env;
    spec.envc = 1;
    spec.stdin_data = w->stdin_data;
    spec.stdin_len = w->stdin_len;
    exec_req_t req = {.spec = &spec, .task_id = 100 + w->index, .attempt = 1};
    w->res = proto_result_new();
    w->rc = exec_run(&req, w->res);
    free(env_entry);
    return NULL;
}

START_TEST(concurrent_runs_get_their_own_outputs)
{
    pthread_t threads[NTHREADS];
    worker_arg_t args[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = (worker_arg_t){.index = i};
        args[i].stdin_len = 256 * 1024;
        args[i].stdin_data = malloc(args[i].stdin_len);
        for (size_t j = 0; j < args[i].stdin_len; j++)
            args[i].stdin_data[j] = (char) ('A' + (i + j) % 26);
        ck_assert_int_eq(pthread_create(&threads[i], NULL, s_thread_run, &args[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < NTHREADS; i++) {
        proto_result_t *res = args[i].res;
        ck_assert_int_eq(args[i].rc, 0);
        ck_assert_int_eq(res->status, PROTO_ST_DONE);
        char *head = xasprintf("thread %d task %d\n", i, 100 + i);
        size_t hl = strlen(head);
        ck_assert_uint_eq(strlen(res->stdout_data), hl + args[i].stdin_len);
        ck_assert(memcmp(res->stdout_data, head, hl) == 0);
        ck_assert(memcmp(res->stdout_data + hl, args[i].stdin_data, args[i].stdin_len) == 0);
        ck_assert_str_eq(res->stderr_data, "end\n");
        free(head);
        free(args[i].stdin_data);
        proto_result_destroy(&args[i].res);
    }
    s_assert_no_children();
}
END_TEST

int main(void)
{
    /* Real processes; valgrind on the test binary slows the parent. */
    return zt_run(&(zt_suite_t){ .suite = "exec",
                                 .tcase = "exec",
                                 .timeout_s = 60,
                                 .teardown = s_teardown });
}
