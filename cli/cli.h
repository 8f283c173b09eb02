/*  cli: what the `ztask` subcommands share: the process state main.c
    owns (where the master is, the request timeout, the one client), exit
    codes, option-error reporting, argument parsing, the interrupt flag,
    and the entry point of every subcommand.

    Exit codes (also in `ztask --help` and docs/cli.md):
      0   success
      1   some tasks failed or were cancelled (wait, submit --wait)
      2   usage error (bad option, bad input file)
      3   cannot reach the master
      4   the master refused the request (or sent a reply we cannot read)
      5   `wait --timeout` expired before the job finished
      6   authentication failed (CURVE: key refused, keys missing or wrong,
          or an "auth" error reply)
      130 interrupted (Ctrl-C)

    Output conventions: results go to stdout, progress and errors to
    stderr; errors are one line, "ztask: <message>".

    Threads: the CLI is single-threaded.
*/
#ifndef ZTASK_CLI_CLI_H
#define ZTASK_CLI_CLI_H

#include "../common/keys.h"
#include "../proto/proto.h"
#include "client.h"

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLI_DEFAULT_HOST "127.0.0.1"
#define CLI_DEFAULT_PORT 5555
#define CLI_DEFAULT_TIMEOUT_MS 10000

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_TASKS_FAILED = 1,
    CLI_EXIT_USAGE = 2,
    CLI_EXIT_UNREACHABLE = 3,
    CLI_EXIT_REFUSED = 4,
    CLI_EXIT_TIMEOUT = 5,
    CLI_EXIT_AUTH = 6,
    CLI_EXIT_INTERRUPTED = 130
};

/* The process state, owned by main(). */
typedef struct {
    char *host;           /* owned */
    int port;
    int timeout_ms;       /* per request */
    client_t *client;     /* made on first use by cli_call */
    /* CURVE (main.c resolves flags, environment and config file): the
       master's public key and our pair, Z85; all empty when plain TCP. */
    bool curve;
    char server_key[KEY_Z85_LEN + 1];
    char public_key[KEY_Z85_LEN + 1];
    char secret_key[KEY_Z85_LEN + 1];
} cli_t;

/* ---- talking to the master ---- */

/* Sends req through the process's client (made on first use) and returns
   the reply (caller owns, always ok). On failure prints "ztask: <why>" on
   stderr, stores the exit code in *rc and returns NULL. retry_safe: see
   client.h. */
proto_reply_t *cli_call(cli_t *cli, const proto_req_t *req, bool retry_safe, int *rc);

/* cli_call for a caller with a deadline of its own (`wait --timeout`)
   and an error it acts on itself:
   - until (monotonic ms, clock_mono_ms(); 0 = none): the call ends by
     then at the latest (client_call_until); when no reply came by then,
     NULL with *rc CLI_EXIT_TIMEOUT and nothing printed (the caller says
     what ran out);
   - code (NULL = none): an error reply with this code is not printed:
     NULL with *rc CLI_EXIT_OK and the message (without "ztask: ") in
     message, for the caller to act on (e.g. wait through "storage"). */
proto_reply_t *cli_call_until(cli_t *cli, const proto_req_t *req, bool retry_safe,
                              int64_t until, const char *code, int *rc, char *message,
                              size_t msglen);

/* cli_call for a request that carries an idempotency key (req->key: a
   submit): when its reply is lost (no reply in time from a master that
   took the connection: it died, paused or restarted), sends it again, up
   to resends more times, each said on stderr ("sending it again"); the
   master answers a copy as the first one. Blocks up to (resends + 1)
   timeouts. */
proto_reply_t *cli_call_keyed(cli_t *cli, const proto_req_t *req, int resends, int *rc);

/* ---- exit codes ---- */

/* 0 when every task of a finished job is done, 1 when any failed or was
   cancelled. */
int cli_exit_for_job(const proto_job_t *job);
/* The exit code for an error reply's code: 6 for "auth", else 4. */
int cli_exit_for_error_code(const char *code);
/* The exit code for a failed client call: 3 unreachable or no reply in
   time, 6 authentication, 4 refused or unreadable, 130 interrupted, 2 a
   request that cannot be encoded, 5 the caller's deadline. */
int cli_exit_for_client_error(client_err_kind_t kind);

/* ---- options and arguments ---- */

/* getopt_long with ztask's error reporting: returns the option, -1 at the
   end, or '?' after printing "ztask CMD: unknown option '--x'; see 'ztask
   CMD --help'" (or "... needs a value") on stderr. shortopts must start
   with ':' (or "+:" to stop at the first operand). Call with optind = 0
   before the first use for a new argv. */
int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts);

/* getopt_long refuses abbreviated long options here (a unique prefix
   would silently pick an option the user did not name) and says which
   options a prefix or a misspelling could mean. */

/* The edit distance of two short words (their first 64 bytes):
   Levenshtein, with a swap of two neighbours counting as one edit. */
size_t cli_distance(const char *a, const char *b);
/* True when word is a likely misspelling of name: a few edits apart
   (1 for short words, up to 3 for long ones), and not equal. */
bool cli_close_enough(const char *word, const char *name);

/* Prints "ztask CMD: <message>; see 'ztask CMD --help'" and returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A job id: a decimal integer >= 1. */
int cli_parse_job(const char *text, int64_t *job);
/* "JOB.INDEX" (sets *job and *index, *task = 0) or "TASK", a global task
   id (sets *task, *job = 0, *index = -1). -1 when malformed. */
int cli_parse_task_ref(const char *text, int64_t *job, int64_t *index, int64_t *task);
/* Seconds >= 0 ("10", "2.5"). */
int cli_parse_seconds(const char *text, double *out);

/* ---- signals ---- */

/* SIGINT/SIGTERM set a flag (no SA_RESTART, so blocking calls return
   EINTR) and loops stop at the next check. */
void cli_signals_install(void);
bool cli_interrupted(void);
/* Sleeps ms; returns -1 early when interrupted. */
int cli_sleep_ms(int ms);

/* ---- subcommands (argv[0] is the subcommand name) ---- */
int cmd_submit(cli_t *cli, int argc, char **argv);
int cmd_wait(cli_t *cli, int argc, char **argv);
int cmd_status(cli_t *cli, int argc, char **argv);
int cmd_jobs(cli_t *cli, int argc, char **argv);
int cmd_results(cli_t *cli, int argc, char **argv);
int cmd_logs(cli_t *cli, int argc, char **argv);
int cmd_cancel(cli_t *cli, int argc, char **argv);
int cmd_workers(cli_t *cli, int argc, char **argv);
int cmd_drain(cli_t *cli, int argc, char **argv);
int cmd_stats(cli_t *cli, int argc, char **argv);
int cmd_forget(cli_t *cli, int argc, char **argv);
int cmd_keygen(cli_t *cli, int argc, char **argv);
int cmd_retry(cli_t *cli, int argc, char **argv);
int cmd_hold(cli_t *cli, int argc, char **argv);
int cmd_release(cli_t *cli, int argc, char **argv);
int cmd_priority(cli_t *cli, int argc, char **argv);
int cmd_limit(cli_t *cli, int argc, char **argv);
int cmd_show(cli_t *cli, int argc, char **argv);
int cmd_tasks(cli_t *cli, int argc, char **argv);
int cmd_alloc(cli_t *cli, int argc, char **argv);

/* ---- shared by submit --wait ---- */

typedef struct {
    double timeout;          /* seconds, 0 = none */
    bool progress;           /* bar (terminal) or periodic lines on stderr */
    bool summary;            /* the final human line on stdout */
    bool json;               /* the final job record as JSON on stdout */
} cli_wait_opts_t;

/* Polls the job until it is finished (or the timeout). Returns the exit
   code: 0, 1, 5, or that of a failed request. */
int cli_wait_job(cli_t *cli, int64_t job, const cli_wait_opts_t *opts);

/* Tells stderr when queued tasks need what no live worker has (labels,
   a kind, resources: the master's stats), as `wait` does when a job
   stalls; said at submit for a job that asks resources or labels. mine:
   text every need of this job contains (its resources, "cpus=64"), NULL
   = all the master's. True when it said something. */
bool cli_needs_hint(cli_t *cli, int64_t job, const char *mine);

typedef struct {
    bool json;
    bool failed_only;
    int64_t limit;           /* 0 = all */
} cli_results_opts_t;

/* Pages through a job's results and prints them (table or JSON lines).
   Returns an exit code. */
int cli_print_results(cli_t *cli, int64_t job, const cli_results_opts_t *opts);

#endif
