/*  harness: runs the real ztask programs for end-to-end tests.

    A cluster is one temp directory holding a master (on ephemeral ports
    unless told otherwise), any number of workers, and their logs. Every
    daemon's stderr is read by a thread that copies each line to
    DIR/<name>.log and wakes anyone waiting for a line (h_proc_wait_log), so
    tests synchronise on events the programs print ("event=listening",
    "event=registered"), never on sleeps. The CLI is run to completion with
    its stdout, stderr and exit code captured (h_cli).

    Failure handling: the h_* functions that start or stop things fail the
    current Check test themselves (ck_abort_msg) with the log directory in
    the message. Check's fork mode ends a failing test with _exit, so no
    teardown runs then; every child therefore gets PR_SET_PDEATHSIG=SIGKILL
    and dies with the test, and the temp directory is kept for a post
    mortem. h_cluster_destroy stops every daemon with SIGTERM (workers
    first), fails the test when one does not exit 0 in time (it is then
    SIGKILLed) or when any daemon or CLI run printed a sanitizer report, and
    removes the directory when everything passed (ZTASK_TEST_KEEP=1 keeps
    it anyway).

    Timeouts: every timeout given to the harness is in release-build
    milliseconds and is multiplied by h_slowdown() (sanitizer builds run
    5-20x slower): ZTASK_TEST_SLOWDOWN when set, else 3 for a binary
    directory under .../asan/..., 5 under .../tsan/..., else 1.

    Environment: ZTASK_BIN_DIR (the programs), ZTASK_LIB_DIR (the example
    plugin), both set by tests/run.sh.

    Ownership: h_cluster_new / h_run results / h_json_* roots are the
    caller's; h_proc_t pointers belong to their cluster. Threads: call
    everything from the test's main thread (children are forked there, so
    PDEATHSIG follows the test process).
*/
#ifndef ZTASK_E2E_HARNESS_H
#define ZTASK_E2E_HARNESS_H

#include "../ztest.h"
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct h_cluster h_cluster_t;
typedef struct h_proc h_proc_t;

/* ---- timing ---- */

/* The sanitizer slowdown factor (>= 1). */
double h_slowdown(void);
/* base_ms scaled by the slowdown. */
int h_ms(int base_ms);
/* Monotonic milliseconds. */
int64_t h_now_ms(void);
/* Wall-clock seconds (the master's clock_wall: retry_at, finished). */
double h_wall(void);
/* Sleeps ms milliseconds: only between polls of a condition (H_POLL). */
void h_nap(int ms);

/* Polls cond every 20 ms until it holds or timeout_ms (scaled) passes;
   evaluates to its last value. */
#define H_POLL(cond, timeout_ms)                                                    \
    ({                                                                              \
        int64_t h_deadline_ = h_now_ms() + h_ms(timeout_ms);                        \
        bool h_ok_;                                                                 \
        while (!(h_ok_ = (cond)) && h_now_ms() < h_deadline_)                       \
            h_nap(20);                                                              \
        h_ok_;                                                                      \
    })

/* ---- paths ---- */

const char *h_bin_dir(void);   /* ZTASK_BIN_DIR, or build/release/bin */
const char *h_lib_dir(void);   /* ZTASK_LIB_DIR, or build/release/lib */

/* ---- cluster ---- */

/* Makes a temp directory for the test (named after it). Fails the test on
   error. Caller owns; free with h_cluster_destroy. */
h_cluster_t *h_cluster_new(const char *test_name);
/* Stops every daemon (SIGTERM, expecting exit 0), checks every log for
   sanitizer reports (failing the test on any), removes the directory when
   all is well. Accepts NULL; nulls *p. */
void h_cluster_destroy(h_cluster_t **p);

/* The cluster's temp directory (borrowed). */
const char *h_dir(const h_cluster_t *c);
/* "DIR/name" in a static-free malloc'd string the caller frees. */
char *h_path(const h_cluster_t *c, const char *name);

/* Starts ztask-master with --db DIR/master.db --port port (0 = ephemeral)
   --bind 127.0.0.1 and the NULL-terminated extra arguments, and waits for
   its event=listening line; afterwards h_api_port/h_report_port give the
   ports and the CLI talks to it. Fails the test when it does not come up.
   The returned process belongs to the cluster. */
h_proc_t *h_master_start(h_cluster_t *c, int port, ...) __attribute__((sentinel));
int h_api_port(const h_cluster_t *c);
int h_report_port(const h_cluster_t *c);
/* "127.0.0.1:API" (borrowed). */
const char *h_master_addr(const h_cluster_t *c);
/* The current master (last started), or NULL. */
h_proc_t *h_master(const h_cluster_t *c);

/* Starts ztask-worker --master 127.0.0.1:API --threads threads --name name
   --state-dir DIR/state (the cluster's workers share it, as on one host)
   with the NULL-terminated extra arguments and waits for its
   event=registered line. Fails the test when it does not register. */
h_proc_t *h_worker_start(h_cluster_t *c, const char *name, int threads, ...)
    __attribute__((sentinel));
/* Starts a worker without waiting for anything (to test start-up errors). */
h_proc_t *h_worker_spawn(h_cluster_t *c, const char *name, int threads, ...)
    __attribute__((sentinel));
/* Workers started afterwards run under wrap, a NULL-terminated command
   prefix such as {"setpriv", "--reuid=1", ..., "--", NULL} (borrowed:
   keep it alive; NULL = none). */
void h_worker_wrap(h_cluster_t *c, const char *const *wrap);
/* The worker id from its last event=registered line ("worker=ID"), or NULL
   (borrowed, valid until the next registration). */
const char *h_worker_id(h_proc_t *p);

/* ---- processes ---- */

pid_t h_proc_pid(const h_proc_t *p);
/* Path of the process's log (borrowed). */
const char *h_proc_log(const h_proc_t *p);
/* True once a line containing needle has been seen `count` times in the
   process's stderr (counting from its start), waiting up to timeout_ms
   (scaled). Returns false on timeout or when the process exited first and
   the count was never reached. */
bool h_proc_wait_log(h_proc_t *p, const char *needle, int count, int timeout_ms);
/* Number of lines seen so far containing needle. */
int h_proc_count_log(h_proc_t *p, const char *needle);
/* The port of a master started with --http 127.0.0.1:0, read from its
   event=http_listening line (waits up to 10 s, scaled; fails the test
   when the line never comes). */
int h_http_port(h_proc_t *master);
/* Sends sig. */
void h_proc_signal(h_proc_t *p, int sig);
/* Waits up to timeout_ms (scaled) for the process to exit. Returns its exit
   code, 128+signal when killed by a signal, or -1 on timeout (still
   running). A process already reaped returns its recorded status. */
int h_proc_wait_exit(h_proc_t *p, int timeout_ms);
/* SIGKILL and reap; the process is then expected to be dead at teardown. */
void h_proc_kill9(h_proc_t *p);
/* SIGTERM, then expects exit 0 within timeout_ms (scaled); fails the test
   otherwise (after SIGKILL). */
void h_proc_stop(h_proc_t *p, int timeout_ms);
/* True while the process runs. */
bool h_proc_running(h_proc_t *p);

/* ---- running programs to completion ---- */

typedef struct {
    int rc;          /* exit code; 128+signal; -1 when it timed out (killed) */
    char *out;       /* stdout, NUL-terminated (never NULL) */
    size_t out_len;
    char *err;       /* stderr, NUL-terminated (never NULL) */
    size_t err_len;
    double elapsed;  /* seconds */
} h_run_t;

/* Runs argv (argv[0] a path) with stdin from stdin_data (NULL = /dev/null),
   capturing its output, killing it after timeout_ms (scaled). Caller owns
   the result (h_run_free). Fails the test when it cannot start or when its
   stderr holds a sanitizer report. */
h_run_t *h_run(char *const argv[], const char *stdin_data, int timeout_ms);
/* Runs the CLI: BIN/ztask --master ADDR <args...> (NULL-terminated), with
   a 60 s (scaled) timeout. */
h_run_t *h_cli(h_cluster_t *c, ...) __attribute__((sentinel));
/* The same with an argument vector (NULL-terminated) and a timeout. */
h_run_t *h_cliv(h_cluster_t *c, const char *const *args, int timeout_ms);
void h_run_free(h_run_t **p);
/* Starts the CLI like h_cli without waiting for it: a process of the
   cluster named "cli", its stdout and stderr in its log (h_proc_wait_log
   reads them as they come). Wait for its end with h_proc_wait_exit. */
h_proc_t *h_cli_start(h_cluster_t *c, ...) __attribute__((sentinel));

/* A one-line description of a run for failure messages (static buffer). */
const char *h_run_desc(const h_run_t *r);

/* ---- JSON ---- */

/* Parses the first non-empty line of text; NULL when it is not JSON. */
cJSON *h_json_first(const char *text);
/* Parses every non-empty line of text into an array (caller owns the
   array; cJSON_Delete it). Fails the test on a line that is not JSON. */
cJSON *h_json_lines(const char *text);
/* Integer member (or def when absent/not a number). */
int64_t h_jint(const cJSON *obj, const char *key, int64_t def);
double h_jnum(const cJSON *obj, const char *key, double def);
/* String member (borrowed) or NULL. */
const char *h_jstr(const cJSON *obj, const char *key);
/* True when the member is the JSON true. */
bool h_jtrue(const cJSON *obj, const char *key);

/* ---- CLI shortcuts (each fails the test on an unexpected answer) ---- */

/* `ztask submit --json <args...>`: expects exit 0 and {"job":ID,"tasks":N};
   returns the job id and stores N in *ntasks (may be NULL). */
int64_t h_submit(h_cluster_t *c, int64_t *ntasks, ...) __attribute__((sentinel));
/* `ztask status JOB --json` parsed (caller owns); NULL when the command
   failed. */
cJSON *h_status(h_cluster_t *c, int64_t job);
/* One counter from status JOB ("done", "running", ...), -1 on failure. */
int64_t h_status_count(h_cluster_t *c, int64_t job, const char *field);
/* The wait of a job's queued task of that index in `ztask tasks
   --waiting --json` ("held", "retry", ...) into wait; "" when it is not
   listed. */
void h_task_wait(h_cluster_t *c, int64_t job, int index, char *wait, size_t size);
/* `ztask wait JOB` with timeout_ms; returns its exit code. */
int h_wait(h_cluster_t *c, int64_t job, int timeout_ms);
/* `ztask cancel JOB`, which must succeed, then its end (`wait` exits 1:
   not every task done). */
void h_cancel(h_cluster_t *c, int64_t job);
/* `ztask results JOB --json [extra]`: the records as a JSON array (caller
   owns). Fails the test unless the command exits 0 or 1. */
cJSON *h_results(h_cluster_t *c, int64_t job, const char *extra);

/* Checks a results array: exactly n records, indexes 0..n-1 each once.
   Returns an array of n borrowed pointers by index (caller frees the
   array, not the items). Fails the test otherwise. */
cJSON **h_results_by_index(cJSON *results, int n);

/* A TCP socket bound to a free port of 127.0.0.1 (*port), for a master
   that is not there: only bound, a connection to it is refused; listening,
   the kernel completes connections that nobody accepts or answers (a
   silent peer). The caller closes it. Fails the test on error. */
int h_loopback_socket(bool listening, int *port);

/* A base port P with P and P+1 both free on 127.0.0.1, chosen below the
   kernel's ephemeral range, so no client connection can take P+1 while a
   master restarts on P (its reports port). Fails the test when none is
   found. */
int h_free_base_port(void);

/* ---- processes by id ---- */

/* True when no process with that pid is alive (zombies count as gone: the
   machine's init may not reap orphans). */
bool h_pid_gone(pid_t pid);
/* "VmRSS" or "VmHWM" of pid in KiB (-1 when unreadable). */
long h_vm_kib(pid_t pid, const char *field);
/* Number of live (non-zombie) processes in process group pgid. */
int h_pgid_alive(pid_t pgid);

/* Reads a whole small file (caller frees), NULL when absent. */
char *h_read_file(const char *path);
/* Writes text to path; fails the test on error. */
void h_write_file(const char *path, const char *text);

/* ---- big data under sanitizers ---- */

/* For tests about big data, not liveness: sanitizer builds are far slower
   at byte work than h_slowdown() says. Seen under TSan on a loaded 2-core
   machine (test_bigpipe, test_outmem): a worker's session thread spent
   7-10 s decoding two 32 MB tasks messages without a heartbeat, and the
   master's loop stalled 3-10 s on 16 MB submits and on results of
   megabytes, past its liveness, the lease and the CLI's 10 s. Writes a
   --liveness and a --lease (seconds) for the master, scaled by twice the
   slowdown, into liveness and lease (n bytes each), and sets
   ZTASK_REQUEST_TIMEOUT likewise for the CLI: twice the defaults (3, 10,
   10 s) in a release build. */
void h_slow_bytes_allowance(char *liveness, char *lease, size_t n);

/* ---- suites ---- */

/* Runs a suite in fork mode (each test in its own process) and returns
   main's exit status. The suites are built by zt_case_per_test (one test
   case per test, defined with START_TIMED_TEST(name, seconds)):
       return h_run_suite(zt_case_per_test("e2e_basic", h_slowdown()));
   so each test's timeout is its seconds scaled by the slowdown. */
/* Stand-in Slurm commands, first on PATH for the programs started after
   it (the master's alloc queues), in c's directory:
   sbatch: records its arguments (one line per call, DIR/sbatch.log) and
   its script (DIR/script.N), fails while DIR/fail exists, else prints the
   next job id (1001, 1002...). squeue: prints DIR/squeue.txt ("ID STATE"
   lines) and records each call (DIR/squeue.log). scancel: records its
   arguments (DIR/scancel.log). A test whose master has a queue uses it
   even when Slurm is not its subject: an installed Slurm without a
   controller looks slurmctld up in the DNS. */
void h_fake_slurm(h_cluster_t *c);

int h_run_suite(Suite *s);

#endif
