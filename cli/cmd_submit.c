/*  ztask submit: builds the job's task specs (taskgen), streams them to
    the master in bounded batches (batch), then optionally waits. */
#include "../common/util.h"
#include "batch.h"
#include "cli.h"
#include "fmt.h"
#include "range.h"
#include "specopt.h"
#include "taskgen.h"
#include "tmpl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static const char s_usage[] =
    "usage: ztask submit [OPTIONS] [--] COMMAND [ARGS...]\n"
    "       ztask submit [OPTIONS] --shell 'COMMAND LINE'\n"
    "       ztask submit [OPTIONS] --fn NAME [--args JSON]\n"
    "       ztask submit [OPTIONS] --file FILE|-\n"
    "\n"
    "Submits one job: a single task, one task per index (--array), one task per\n"
    "input line (--each), or one task per line of a JSONL file of specs (--file).\n"
    "Prints \"job ID: N tasks submitted\" (with --quiet just ID, for scripts).\n"
    "\n"
    "What to run (exactly one):\n"
    "  COMMAND [ARGS...]    run this program; the first word that is not an option\n"
    "                       (or everything after '--') is the command\n"
    "  --shell 'CMD'        run CMD with /bin/sh -c\n"
    "  --fn NAME            call a function the workers provide (built-in or plugin)\n"
    "  --args JSON          with --fn: its arguments, any JSON value\n"
    "  --file FILE|-        one JSON task spec per line (fields: docs/protocol.md);\n"
    "                       the whole file is checked before anything is submitted\n"
    "\n"
    "How many tasks:\n"
    "  --array SPEC         one task per index: 1-1000, 0-999:5 (step), 1,5,9 or\n"
    "                       1-3,7,10-20:2; '{}' in the command becomes the index and\n"
    "                       every task gets ZTASK_TASK_INDEX\n"
    "  --each FILE|-        one task per non-blank line: '{}' in the command becomes\n"
    "                       the line, or, without '{}', the line is appended as the\n"
    "                       last argument (--fn without --args: the line is the args);\n"
    "                       the task's index is the 0-based line number\n"
    "\n"
    "Task options (every task; with --file they override what each line says):\n"
    "  --name NAME          the job's name\n"
    "  --timeout SEC        kill a task still running after SEC seconds (0 = never)\n"
    "  --retries N          run a failed task again up to N more times (0-100)\n"
    "  --priority N         higher runs first (default 0)\n"
    "  --env KEY=VALUE      set an environment variable (repeatable)\n"
    "  --cwd DIR            working directory on the worker\n"
    "  --stdin FILE|-       FILE's contents are every task's standard input\n"
    "  --output-cap BYTES   keep at most BYTES of stdout and of stderr per task\n"
    "                       (suffix K, M; default 1M)\n"
    "  --require LABEL      run only on workers started with this label (repeatable)\n"
    "  --time-request T     how long a task expects to run (90, 30s, 5m, 1h): a worker\n"
    "                       in an allocation that ends sooner is not sent it\n"
    "  --stdout PATTERN     the worker writes the task's whole stdout to this file\n"
    "                       (relative to --cwd; directories are made); %{job},\n"
    "                       %{index}, %{task}, %{attempt} are filled in:\n"
    "                       --stdout 'out/%{job}/%{index}.out'. Several hosts: a\n"
    "                       shared filesystem\n"
    "  --stderr PATTERN     the same for stderr (may name the same file)\n"
    "  --no-capture         the master keeps none of the output (only the files)\n"
    "\n"
    "The job:\n"
    "  --max-running N      at most N of its tasks run at once (Slurm's %N; change it\n"
    "                       later with 'ztask limit JOB N')\n"
    "\n"
    "Resources (a task runs only where all it asks is free; default: 1 CPU):\n"
    "  --cpus N             CPUs (ZTASK_CPUS tells the task)\n"
    "  --mem SIZE           memory (suffix K, M, G, T)\n"
    "  --gpus N             GPUs: whole ones (1, 2) or a share of one (0.5, 0.25);\n"
    "                       the task gets their ids in CUDA_VISIBLE_DEVICES and\n"
    "                       ZTASK_GPUS, whole GPUs never shared\n"
    "  --resource NAME=N    N of a resource workers declare (--resources on the\n"
    "                       worker: licence=2); repeatable\n"
    "\n"
    "Dependencies (each repeatable, JOB[,JOB...]; the jobs must exist):\n"
    "  --after JOBS         run once every listed job has finished with all its tasks\n"
    "                       done; if one did not, these tasks end dep_failed unrun\n"
    "  --after-any JOBS     run once every listed job has finished, however it ended\n"
    "  --after-each JOB     task i runs once task i (same index) of JOB is done;\n"
    "                       dep_failed if that task failed or JOB has no task i\n"
    "\n"
    "After submitting:\n"
    "  --wait               wait like 'ztask wait' (progress, summary, exit code)\n"
    "  --wait-timeout SEC   with --wait: stop waiting after SEC seconds (exit 5)\n"
    "  -q, --quiet          print only the job id; with --wait, no progress and no\n"
    "                       summary either\n"
    "  --json               print {\"job\":ID,\"tasks\":N}; with --wait, then one task\n"
    "                       object per line (as 'ztask results --json')\n"
    "\n"
    "Examples:\n"
    "  ztask submit -- echo hello\n"
    "  ztask submit --array 1-1000 -- ./render --frame {} --out frame-{}.png\n"
    "  ls *.csv | ztask submit --each - --timeout 60 python3 process.py\n"
    "  ztask submit --each hosts.txt --shell 'ping -c1 {} >/dev/null'\n"
    "  ztask submit --fn square --array 0-99 --wait\n"
    "  ztask submit --file tasks.jsonl --name nightly --retries 2\n"
    "  A=$(ztask submit -q ./prepare); B=$(ztask submit -q --after $A --array 0-99 \\\n"
    "    ./render {}); ztask submit --after $B ./merge\n"
    "\n"
    "Each request carries an idempotency key: one whose reply is lost (the master\n"
    "was killed or paused after taking it) is sent again, up to 4 times, saying so\n"
    "on stderr; the master answers a copy as the first and adds nothing.\n"
    "\n"
    "Exit: 0 submitted (with --wait: every task done), 1 some tasks failed, were\n"
    "cancelled or dep_failed (--wait), 2 usage or input error, 3 master\n"
    "unreachable, 4 refused (e.g. --after a job that does not exist),\n"
    "5 --wait-timeout expired.\n";

enum {
    OPT_SHELL = 256,
    OPT_FN,
    OPT_ARGS,
    OPT_FILE,
    OPT_ARRAY,
    OPT_EACH,
    OPT_NAME,
    OPT_TIMEOUT,
    OPT_TIME_REQUEST,
    OPT_RETRIES,
    OPT_PRIORITY,
    OPT_ENV,
    OPT_CWD,
    OPT_STDIN,
    OPT_OUTPUT_CAP,
    OPT_REQUIRE,
    OPT_WAIT,
    OPT_WAIT_TIMEOUT,
    OPT_JSON,
    OPT_AFTER,
    OPT_AFTER_ANY,
    OPT_AFTER_EACH,
    OPT_CPUS,
    OPT_MEM,
    OPT_GPUS,
    OPT_RESOURCE,
    OPT_MAX_RUNNING,
    OPT_STDOUT,
    OPT_STDERR,
    OPT_NO_CAPTURE
};

static const struct option s_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "shell", required_argument, NULL, OPT_SHELL },
    { "fn", required_argument, NULL, OPT_FN },
    { "args", required_argument, NULL, OPT_ARGS },
    { "file", required_argument, NULL, OPT_FILE },
    { "array", required_argument, NULL, OPT_ARRAY },
    { "each", required_argument, NULL, OPT_EACH },
    { "name", required_argument, NULL, OPT_NAME },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "time-request", required_argument, NULL, OPT_TIME_REQUEST },
    { "retries", required_argument, NULL, OPT_RETRIES },
    { "priority", required_argument, NULL, OPT_PRIORITY },
    { "env", required_argument, NULL, OPT_ENV },
    { "cwd", required_argument, NULL, OPT_CWD },
    { "stdin", required_argument, NULL, OPT_STDIN },
    { "output-cap", required_argument, NULL, OPT_OUTPUT_CAP },
    { "require", required_argument, NULL, OPT_REQUIRE },
    { "wait", no_argument, NULL, OPT_WAIT },
    { "wait-timeout", required_argument, NULL, OPT_WAIT_TIMEOUT },
    { "quiet", no_argument, NULL, 'q' },
    { "after", required_argument, NULL, OPT_AFTER },
    { "after-any", required_argument, NULL, OPT_AFTER_ANY },
    { "after-each", required_argument, NULL, OPT_AFTER_EACH },
    { "cpus", required_argument, NULL, OPT_CPUS },
    { "mem", required_argument, NULL, OPT_MEM },
    { "gpus", required_argument, NULL, OPT_GPUS },
    { "resource", required_argument, NULL, OPT_RESOURCE },
    { "json", no_argument, NULL, OPT_JSON },
    { "max-running", required_argument, NULL, OPT_MAX_RUNNING },
    { "stdout", required_argument, NULL, OPT_STDOUT },
    { "stderr", required_argument, NULL, OPT_STDERR },
    { "no-capture", no_argument, NULL, OPT_NO_CAPTURE },
    { NULL, 0, NULL, 0 }
};

/* How many times a batch whose reply was lost is sent again (each waits
   the request timeout): a master restarted by its supervisor is back
   well within four timeouts. */
#define SUBMIT_RESENDS 4

/* The stdin we accept for --stdin: it travels inside every task's spec,
   so a big one multiplies; past this, use a shared file and --cwd. */
#define STDIN_MAX (16 * 1024 * 1024)

typedef struct {
    const char *shell, *fn, *args, *file, *array, *each, *name, *stdin_path;
    bool wait, quiet, json;
    double wait_timeout;
    int max_running;
    char **argv; /* the command (borrowed from main's argv) */
    int argc;
    specopt_t opts;
    proto_dep_t deps[PROTO_MAX_DEPS];
    int ndeps;
} submit_args_t;

static const char *s_cmd = "submit";

static int s_check_utf8(const char *what, const char *text)
{
    if (text && !utf8_valid(text, strlen(text)))
        return cli_usage_error(s_cmd, "%s is not valid UTF-8", what);
    return 0;
}

/* Reads --stdin FILE into opts. */
static int s_read_stdin_file(submit_args_t *a)
{
    bool is_stdin = strcmp(a->stdin_path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(a->stdin_path, "rb");
    if (!f) {
        fprintf(stderr, "ztask: cannot open %s: %s\n", a->stdin_path, strerror(errno));
        return CLI_EXIT_USAGE;
    }
    size_t cap = 65536, len = 0;
    char *buf = xmalloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len > STDIN_MAX)
            break;
        if (len == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
    }
    bool err = ferror(f);
    if (!is_stdin)
        fclose(f);
    int rc = 0;
    if (err) {
        fprintf(stderr, "ztask: cannot read %s: %s\n", a->stdin_path, strerror(errno));
        rc = CLI_EXIT_USAGE;
    } else if (len > STDIN_MAX) {
        rc = cli_usage_error(s_cmd, "--stdin %s is larger than %d MiB", a->stdin_path,
                             STDIN_MAX / (1024 * 1024));
    } else if (!utf8_valid(buf, len)) {
        rc = cli_usage_error(s_cmd,
                             "--stdin %s is not UTF-8 text (binary input cannot travel in a "
                             "task spec; put it in a file the workers can read)",
                             a->stdin_path);
    }
    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[len < cap ? len : cap - 1] = '\0';
    a->opts.stdin_data = buf;
    a->opts.stdin_len = len;
    return 0;
}

/* Adds the job ids of list ("12,15") as dependencies of kind; 0 or an
   exit code. */
static int s_add_deps(submit_args_t *a, const char *opt, const char *list, proto_dep_kind_t kind)
{
    char *copy = xstrdup(list), *save = NULL;
    int rc = 0, n = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        int64_t id;
        if (parse_int64(tok, 1, INT64_MAX, &id) != 0)
            rc = cli_usage_error(s_cmd, "%s wants job ids (JOB[,JOB...]), got '%s'", opt, list);
        else if (a->ndeps == PROTO_MAX_DEPS)
            rc = cli_usage_error(s_cmd, "a job may depend on at most %d jobs", PROTO_MAX_DEPS);
        else
            a->deps[a->ndeps++] = (proto_dep_t){.job = id, .kind = kind};
        n++;
    }
    if (!rc && n == 0)
        rc = cli_usage_error(s_cmd, "%s wants job ids (JOB[,JOB...])", opt);
    free(copy);
    return rc;
}

/* Parses argv into a; returns -1 to go on, or an exit code. */
static int s_parse(int argc, char **argv, submit_args_t *a)
{
    char err[256];
    int64_t v;
    optind = 0;
    int c;
    while ((c = cli_getopt(s_cmd, argc, argv, "+:hq", s_longopts)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_usage, stdout);
            return CLI_EXIT_OK;
        case OPT_SHELL: a->shell = optarg; break;
        case OPT_FN: a->fn = optarg; break;
        case OPT_ARGS: a->args = optarg; break;
        case OPT_FILE: a->file = optarg; break;
        case OPT_ARRAY: a->array = optarg; break;
        case OPT_EACH: a->each = optarg; break;
        case OPT_NAME: a->name = optarg; break;
        case OPT_MAX_RUNNING:
            if (parse_int64(optarg, 1, PROTO_MAX_RUNNING_LIMIT, &v) != 0)
                return cli_usage_error(s_cmd, "--max-running wants a number of tasks in 1..%d, "
                                              "got '%s'",
                                       PROTO_MAX_RUNNING_LIMIT, optarg);
            a->max_running = (int) v;
            break;
        case OPT_STDIN: a->stdin_path = optarg; break;
        case OPT_WAIT: a->wait = true; break;
        case 'q': a->quiet = true; break;
        case OPT_AFTER:
        case OPT_AFTER_ANY:
        case OPT_AFTER_EACH: {
            proto_dep_kind_t kind = c == OPT_AFTER       ? PROTO_DEP_OK
                                    : c == OPT_AFTER_ANY ? PROTO_DEP_ANY
                                                         : PROTO_DEP_EACH;
            const char *opt = c == OPT_AFTER       ? "--after"
                              : c == OPT_AFTER_ANY ? "--after-any"
                                                   : "--after-each";
            int rc = s_add_deps(a, opt, optarg, kind);
            if (rc)
                return rc;
            break;
        }
        case OPT_JSON: a->json = true; break;
        case OPT_TIME_REQUEST:
            if (parse_duration(optarg, 1e9, &a->opts.time_request) != 0)
                return cli_usage_error(s_cmd, "--time-request wants a duration (90, 30s, 5m, "
                                              "1h), got '%s'",
                                       optarg);
            a->opts.has_time_request = true;
            break;
        case OPT_TIMEOUT:
            if (cli_parse_seconds(optarg, &a->opts.timeout) != 0)
                return cli_usage_error(s_cmd, "--timeout wants seconds >= 0, got '%s'", optarg);
            a->opts.has_timeout = true;
            break;
        case OPT_WAIT_TIMEOUT:
            if (cli_parse_seconds(optarg, &a->wait_timeout) != 0)
                return cli_usage_error(s_cmd, "--wait-timeout wants seconds >= 0, got '%s'",
                                       optarg);
            break;
        case OPT_RETRIES:
            if (parse_int64(optarg, 0, 100, &v) != 0)
                return cli_usage_error(s_cmd, "--retries wants 0..100, got '%s'", optarg);
            a->opts.retries = (int) v;
            a->opts.has_retries = true;
            break;
        case OPT_PRIORITY:
            if (parse_int64(optarg, INT32_MIN, INT32_MAX, &v) != 0)
                return cli_usage_error(s_cmd, "--priority wants a 32-bit integer, got '%s'",
                                       optarg);
            a->opts.priority = (int32_t) v;
            a->opts.has_priority = true;
            break;
        case OPT_OUTPUT_CAP:
            if (parse_bytes(optarg, &v) != 0 || v > PROTO_MAX_OUTPUT_CAP)
                return cli_usage_error(s_cmd, "--output-cap wants 1..%dM bytes, got '%s'",
                                       PROTO_MAX_OUTPUT_CAP / (1024 * 1024), optarg);
            a->opts.output_cap = v;
            a->opts.has_output_cap = true;
            break;
        case OPT_ENV:
            if (s_check_utf8("--env", optarg) != 0)
                return CLI_EXIT_USAGE;
            if (specopt_add_env(&a->opts, optarg, err, sizeof err) != 0)
                return cli_usage_error(s_cmd, "%s", err);
            break;
        case OPT_CWD:
            free(a->opts.cwd);
            a->opts.cwd = xstrdup(optarg);
            break;
        case OPT_CPUS:
        case OPT_MEM:
        case OPT_GPUS: {
            const char *name = c == OPT_CPUS ? "cpus" : c == OPT_MEM ? "mem" : "gpus";
            if (specopt_add_resource(&a->opts, name, optarg, err, sizeof err) != 0)
                return cli_usage_error(s_cmd, "--%s: %s", name, err);
            break;
        }
        case OPT_RESOURCE: {
            char name[RES_NAME_MAX + 2];
            const char *eq = strchr(optarg, '=');
            if (!eq || (size_t) (eq - optarg) > RES_NAME_MAX)
                return cli_usage_error(s_cmd, "--resource wants NAME=N (licence=1), got '%s'",
                                       optarg);
            snprintf(name, sizeof name, "%.*s", (int) (eq - optarg), optarg);
            if (specopt_add_resource(&a->opts, name, eq + 1, err, sizeof err) != 0)
                return cli_usage_error(s_cmd, "--resource %s: %s", optarg, err);
            break;
        }
        case OPT_STDOUT:
        case OPT_STDERR: {
            char **slot = c == OPT_STDOUT ? &a->opts.stdout_file : &a->opts.stderr_file;
            proto_err_t perr = {{0}, "want a path of 1..4096 bytes"};
            char *probe = proto_spec_path(optarg, 1, 1, 1, 1, &perr);
            bool ok = probe && *optarg && strlen(optarg) <= PROTO_MAX_PATH;
            free(probe);
            if (!ok)
                return cli_usage_error(s_cmd, "--%s '%s': %s",
                                       c == OPT_STDOUT ? "stdout" : "stderr", optarg, perr.message);
            free(*slot);
            *slot = xstrdup(optarg);
            break;
        }
        case OPT_NO_CAPTURE: a->opts.no_capture = true; break;
        case OPT_REQUIRE:
            if (!*optarg)
                return cli_usage_error(s_cmd, "--require wants a label");
            specopt_add_require(&a->opts, optarg);
            break;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    a->argv = argv + optind;
    a->argc = argc - optind;
    return -1;
}

/* Cross-option rules. 0 or an exit code. */
static int s_validate(submit_args_t *a)
{
    int forms = (a->argc > 0) + (a->shell != NULL) + (a->fn != NULL) + (a->file != NULL);
    if (forms == 0)
        return cli_usage_error(s_cmd,
                               "nothing to run: give a command (after '--'), --shell, --fn or "
                               "--file");
    if (forms > 1)
        return cli_usage_error(s_cmd, "give only one of a command, --shell, --fn and --file");
    if (a->args && !a->fn)
        return cli_usage_error(s_cmd, "--args goes with --fn");
    if (a->array && a->each)
        return cli_usage_error(s_cmd, "--array and --each cannot be combined");
    if (a->file && (a->array || a->each))
        return cli_usage_error(s_cmd, "--file cannot be combined with --array or --each");
    if (!a->wait && a->wait_timeout > 0)
        return cli_usage_error(s_cmd, "--wait-timeout goes with --wait");
    int stdin_users = (a->each && strcmp(a->each, "-") == 0)
                      + (a->file && strcmp(a->file, "-") == 0)
                      + (a->stdin_path && strcmp(a->stdin_path, "-") == 0);
    if (stdin_users > 1)
        return cli_usage_error(s_cmd, "only one option can read standard input ('-')");
    if (s_check_utf8("--shell", a->shell) || s_check_utf8("--fn", a->fn)
        || s_check_utf8("--args", a->args) || s_check_utf8("--name", a->name)
        || s_check_utf8("--cwd", a->opts.cwd))
        return CLI_EXIT_USAGE;
    for (int i = 0; i < a->opts.nrequire; i++)
        if (s_check_utf8("--require", a->opts.require[i]))
            return CLI_EXIT_USAGE;
    for (int i = 0; i < a->argc; i++) {
        if (!utf8_valid(a->argv[i], strlen(a->argv[i])))
            return cli_usage_error(s_cmd, "command word %d is not valid UTF-8", i + 1);
    }
    if (a->name && !*a->name)
        return cli_usage_error(s_cmd, "--name wants a non-empty name");
    if (a->name && strlen(a->name) > PROTO_MAX_NAME)
        return cli_usage_error(s_cmd, "--name is longer than %d bytes", PROTO_MAX_NAME);
    /* Quoted as one word, a shell line is a program name nobody has: say
       so now (the tasks will fail with the same hint), but submit: a
       program may really be called that. */
    if (a->argc == 1 && looks_like_shell_line(a->argv[0]) && access(a->argv[0], F_OK) != 0)
        fprintf(stderr,
                "ztask submit: warning: '%s' is one word, run as a program of that name; for "
                "a shell command line use --shell '%s'\n",
                a->argv[0], a->argv[0]);
    return 0;
}

/* The base spec of a command/--shell/--fn job, checked; NULL after
   printing why. */
static tmpl_t *s_template(submit_args_t *a)
{
    proto_spec_t *base;
    if (a->fn) {
        base = proto_spec_new(PROTO_KIND_FN);
        base->fn = xstrdup(a->fn);
        if (a->args) {
            cJSON *tree = cJSON_ParseWithLength(a->args, strlen(a->args));
            if (!tree) {
                cli_usage_error(s_cmd, "--args is not valid JSON: %s", a->args);
                proto_spec_destroy(&base);
                return NULL;
            }
            char *compact = cJSON_PrintUnformatted(tree);
            cJSON_Delete(tree);
            if (!compact) {
                fprintf(stderr, "ztask: out of memory\n");
                abort();
            }
            base->args_json = xstrdup(compact);
            cJSON_free(compact);
        }
    } else {
        base = proto_spec_new(PROTO_KIND_EXEC);
        if (a->shell) {
            base->shell = xstrdup(a->shell);
        } else {
            base->argv = xcalloc((size_t) a->argc + 1, sizeof(char *));
            for (int i = 0; i < a->argc; i++)
                base->argv[i] = xstrdup(a->argv[i]);
            base->argc = a->argc;
        }
    }
    specopt_apply(&a->opts, base);
    char err[300];
    tmpl_t *t = tmpl_new(&base, err, sizeof err);
    if (!t)
        cli_usage_error(s_cmd, "%s", err);
    return t;
}

typedef struct {
    cli_t *cli;
    int64_t total;
    int64_t sent;
    bool show;      /* draw "submitting" progress on stderr */
    bool warned;    /* said that no live worker can run some of the tasks */
    int rc;         /* exit code when a send failed */
} sender_t;

static int s_send(void *arg, const proto_req_t *req, int64_t *job)
{
    sender_t *s = arg;
    if (cli_interrupted()) {
        fprintf(stderr, "%sztask: interrupted\n", s->show ? "\r\033[K" : "");
        s->rc = CLI_EXIT_INTERRUPTED;
        return -1;
    }
    proto_reply_t *rep = cli_call_keyed(s->cli, req, SUBMIT_RESENDS, &s->rc);
    if (!rep)
        return -1;
    *job = rep->job;
    /* Tasks no live worker can run wait for one: say so now, not after
       a silent wait. */
    for (int i = 0; i < rep->nno_worker && !s->warned; i++) {
        char need[256];
        fmt_need(need, sizeof need, rep->no_worker[i]);
        fprintf(stderr,
                "%sztask: warning: job %lld: no live worker can run some of its tasks: they "
                "need %s; they wait until one registers (see 'ztask workers')\n",
                s->show ? "\r\033[K" : "", (long long) rep->job, need);
    }
    if (rep->nno_worker)
        s->warned = true;
    proto_reply_destroy(&rep);
    s->sent += req->ntasks;
    if (s->show) {
        fprintf(stderr, "\rsubmitting job %lld: %lld/%lld tasks\033[K", (long long) *job,
                (long long) s->sent, (long long) s->total);
        fflush(stderr);
    }
    return 0;
}

/* A new idempotency key for this run's requests: 128 random bits in hex
   (docs/protocol.md, "Idempotent submits"). */
static void s_new_key(char out[33])
{
    unsigned char r[16];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "ztask: no random numbers for the submit key: %s\n",
                    strerror(errno));
            abort();
        }
        if (n > 0)
            got += (size_t) n;
    }
    for (size_t i = 0; i < sizeof r; i++)
        sprintf(out + 2 * i, "%02x", r[i]);
}

static taskgen_t *s_generator(submit_args_t *a, int *rc)
{
    char err[512];
    *rc = CLI_EXIT_USAGE;
    if (a->file) {
        taskgen_t *gen = taskgen_jsonl(a->file, &a->opts, err, sizeof err);
        if (!gen)
            fprintf(stderr, "ztask: %s\n", err);
        return gen;
    }
    range_t *range = NULL;
    if (a->array) {
        range = range_parse(a->array, err, sizeof err);
        if (!range) {
            cli_usage_error(s_cmd, "--array %s: %s", a->array, err);
            return NULL;
        }
    }
    tmpl_t *t = s_template(a);
    if (!t) {
        range_destroy(&range);
        return NULL;
    }
    if (a->each) {
        if (!tmpl_can_append(t)) {
            cli_usage_error(s_cmd,
                            "with --each and --args, put '{}' where the line goes in --args");
            tmpl_destroy(&t);
            return NULL;
        }
        taskgen_t *gen = taskgen_each(&t, a->each, err, sizeof err);
        if (!gen)
            fprintf(stderr, "ztask: %s\n", err);
        return gen;
    }
    if (range)
        return taskgen_array(&t, &range);
    return taskgen_single(&t);
}

/* What `ztask show` prints of the job: this command line, who ran it,
   where (JSON object text, caller frees). A command line too long for
   the protocol's limit is left out (argv_omitted). */
static char *s_definition(int argc, char **argv)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *args = cJSON_AddArrayToObject(o, "argv");
    for (int i = 0; args && i < argc; i++)
        cJSON_AddItemToArray(args, cJSON_CreateString(argv[i]));
    const char *user = getenv("USER");
    struct passwd *pw = user ? NULL : getpwuid(getuid());
    cJSON_AddStringToObject(o, "user", user ? user : pw ? pw->pw_name : "?");
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) == 0)
        cJSON_AddStringToObject(o, "host", host);
    char *cwd = getcwd(NULL, 0);
    if (cwd && utf8_valid(cwd, strlen(cwd)))
        cJSON_AddStringToObject(o, "cwd", cwd);
    free(cwd);
    char *text = cJSON_PrintUnformatted(o);
    if (text && strlen(text) > PROTO_MAX_DEFINITION - 1024) {
        cJSON_free(text);
        cJSON_DeleteItemFromObject(o, "argv");
        cJSON_AddTrueToObject(o, "argv_omitted");
        text = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(o);
    char *out = text ? xstrdup(text) : NULL;
    cJSON_free(text);
    return out;
}

int cmd_submit(cli_t *cli, int argc, char **argv)
{
    submit_args_t a;
    memset(&a, 0, sizeof a);
    specopt_init(&a.opts);
    taskgen_t *gen = NULL;
    char *definition = NULL;
    int rc = s_parse(argc, argv, &a);
    if (rc >= 0)
        goto out;
    if ((rc = s_validate(&a)) != 0)
        goto out;
    if (a.stdin_path && (rc = s_read_stdin_file(&a)) != 0)
        goto out;
    gen = s_generator(&a, &rc);
    if (!gen)
        goto out;

    sender_t s = { .cli = cli, .total = taskgen_count(gen) };
    s.show = !a.quiet && isatty(STDERR_FILENO) && s.total > BATCH_MAX_SPECS;
    definition = s_definition(argc, argv);
    char key[33];
    s_new_key(key);
    batch_opts_t bopts = { .job_name = a.name,
                           .deps = a.deps,
                           .ndeps = a.ndeps,
                           .max_running = a.max_running,
                           .definition = definition,
                           .key = key };
    batch_result_t res;
    char err[512];
    if (batch_run(gen, &bopts, s_send, &s, &res, err, sizeof err) != 0) {
        if (s.show)
            fprintf(stderr, "\r\033[K");
        if (!res.send_failed) {
            fprintf(stderr, "ztask: %s\n", err);
            rc = CLI_EXIT_USAGE;
        } else {
            rc = s.rc;
        }
        if (res.job != 0)
            fprintf(stderr,
                    "ztask: job %lld is incomplete: %lld of %lld tasks were submitted; "
                    "cancel it with 'ztask cancel %lld'\n",
                    (long long) res.job, (long long) res.submitted, (long long) s.total,
                    (long long) res.job);
        goto out;
    }
    if (s.show)
        fprintf(stderr, "\r\033[K");
    if (a.json)
        printf("{\"job\":%lld,\"tasks\":%lld}\n", (long long) res.job,
               (long long) res.submitted);
    else if (a.quiet)
        printf("%lld\n", (long long) res.job);
    else
        printf("job %lld: %lld task%s submitted\n", (long long) res.job,
               (long long) res.submitted, res.submitted == 1 ? "" : "s");
    fflush(stdout);
    rc = CLI_EXIT_OK;
    /* A task no live worker could ever hold (64 CPUs, a label nobody has)
       is said at once; it waits all the same (a worker may join). */
    if (a.opts.resources.n || a.opts.nrequire || a.file) {
        char mine[RES_MAX * (RES_NAME_MAX + 24)] = "";
        if (a.opts.resources.n && !a.file)
            res_format(&a.opts.resources, mine, sizeof mine);
        cli_needs_hint(cli, res.job, mine[0] ? mine : NULL);
    }
    if (a.wait) {
        cli_wait_opts_t w = { a.wait_timeout, !a.quiet, !a.quiet && !a.json, false };
        rc = cli_wait_job(cli, res.job, &w);
        if (a.json && (rc == CLI_EXIT_OK || rc == CLI_EXIT_TASKS_FAILED)) {
            cli_results_opts_t r = { true, false, 0 };
            int rrc = cli_print_results(cli, res.job, &r);
            if (rrc != CLI_EXIT_OK)
                rc = rrc;
        }
    }
out:
    free(definition);
    taskgen_destroy(&gen);
    specopt_clear(&a.opts);
    return rc;
}
