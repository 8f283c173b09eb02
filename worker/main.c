/*  ztask-worker: runs tasks for a ztask master.

    main() only parses flags, sets up logging and signals, builds the
    function registry (built-ins and --plugin libraries) and hands over to
    the session (worker/session.h), which owns everything else.

    Before any thread exists, main() starts the reaper (worker/reaper.h):
    it kills what tasks of a dead earlier worker still run here, and forks
    the small process that kills this worker's running commands when the
    worker ends, however it ends (kill -9 included).

    Orphaned grandchildren: we deliberately do NOT make the worker a child
    subreaper (PR_SET_CHILD_SUBREAPER). As a subreaper the worker would
    inherit every orphan of every task and would have to reap them with
    waitpid(-1, ...), which can just as well reap the direct child that a
    pool thread's exec_run is waiting for with waitpid(pid) -- that thread
    would then lose the exit status. exec.c already puts each task in its
    own process group and kills what is left of the group when the task
    ends (and on timeout and cancel), so the grandchildren we could reap
    are already dead; those that escaped with setsid() are init's to reap,
    as for any daemon.
*/
#include "../common/config.h"
#include "../common/keys.h"
#include "../common/log.h"
#include "../common/testhook.h"
#include "../common/util.h"
#include "../common/version.h"
#include "../common/zmqx.h"
#include "../proto/proto.h"
#include "allow.h"
#include "fn.h"
#include "machine.h"
#include "policy.h"
#include "reaper.h"
#include "session.h"

#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_MASTER "127.0.0.1"
#define DEFAULT_PORT 5555
#define MAX_THREADS 1024

/* The process's only global: SIGTERM/SIGINT received so far. */
static volatile sig_atomic_t g_signals;

static void s_on_signal(int sig)
{
    (void) sig;
    if (g_signals < 1000)
        g_signals = g_signals + 1;
}

/* Every setting after flags, environment and config file (all owned). */
typedef struct {
    char *master_host;
    int master_port;
    int threads;
    char *name;
    char **plugins;
    int nplugins;
    char **labels;
    int nlabels;
    bool no_exec;
    allow_t *allow;             /* --allow-exec; NULL = any program */
    log_level_t level;
    char *curve_secret;         /* our key file */
    char *master_key;           /* the master's .pub/.key file, or its Z85 public key */
    char *state_dir;            /* the reaper's state files (reaper.h) */
    machine_t machine;          /* what it offers tasks (--resources) */
    exec_policy_t *policy;      /* --run-as, --task-rlimit (never NULL after s_parse) */
    bool allow_root;            /* --allow-root */
    double idle_timeout;        /* seconds; 0 = never leave when idle */
    double ends_at;             /* wall seconds to be gone by; 0 = no end */
    char config_warning[700];   /* a per-user config file skipped, logged once logging is up */
} options_t;

/* The flags as given (borrowed from argv), before the rest fills gaps. */
typedef struct {
    const char *master, *threads, *name, *curve_secret, *master_key, *state_dir, *run_as;
    const char *resources;
    const char **rlimits;
    int nrlimits;
    const char **plugins;
    int nplugins;
    const char **labels;
    int nlabels;
    const char **allow;
    int nallow;
    const char **allow_env;
    int nallow_env;
} flags_t;

static void s_usage(FILE *out)
{
    fprintf(out,
            "Usage: ztask-worker [OPTIONS]\n"
            "Runs tasks for a ztask master.\n"
            "\n"
            "  --master HOST[:PORT]  master's API address (env ZTASK_MASTER; default\n"
            "                        127.0.0.1:5555), or ipc:///DIR for a master\n"
            "                        bound to a directory of Unix sockets\n"
            "  --threads N           tasks run at once (default: the cpus of --resources,\n"
            "                        else the CPUs it may run on)\n"
            "  --name NAME           worker name (default HOSTNAME-PID)\n"
            "  --plugin PATH         load task functions from a shared object (repeatable)\n"
            "  --label L[,L...]      labels that tasks can \"require\" (repeatable)\n"
            "  --resources LIST      what tasks may use here, NAME=AMOUNT,...: cpus=N\n"
            "                        (default: the CPUs it may run on, or --threads if\n"
            "                        more), mem=SIZE (default: physical memory; K/M/G/T),\n"
            "                        gpus=auto|N (default auto: NVIDIA devices found, or\n"
            "                        the ids in ZTASK_GPU_DEVICES), any NAME=N of your own\n"
            "                        (licence=2); tasks ask with submit --cpus/--mem/\n"
            "                        --gpus/--resource, and run only where it is free\n"
            "  --no-exec             refuse command tasks (argv/shell); run only functions\n"
            "  --allow-exec P[,P...] run only these programs (absolute paths or bare names\n"
            "                        found on PATH; /bin/sh allows shell tasks); other\n"
            "                        command tasks fail at once (repeatable)\n"
            "  --allow-env NAME[,NAME...]  with --allow-exec, the env variables a task may\n"
            "                        set besides ZTASK_* (default none: BASH_ENV or\n"
            "                        PERL5OPT would run code in an allowed program;\n"
            "                        LD_* never); repeatable\n"
            "  --run-as USER         run command tasks as USER (name or uid), not as the\n"
            "                        worker's user: recommended, so that a task cannot read\n"
            "                        the worker's key (needs root or CAP_SETUID, CAP_SETGID\n"
            "                        and CAP_KILL; see docs/security.md)\n"
            "  --task-rlimit NAME=VALUE[,...]  limits for each command task, set in the\n"
            "                        child before it execs: as, core, cpu, data, fsize,\n"
            "                        memlock, nofile, nproc, stack (sizes take K/M/G;\n"
            "                        'unlimited'); repeatable\n"
            "  --allow-root          run command tasks as root for a master without CURVE\n"
            "                        keys (refused otherwise: any local user who can reach\n"
            "                        an insecure master would run commands as root)\n"
            "  --curve-secret FILE   this worker's key file (from ztask keygen; env\n"
            "                        ZTASK_CURVE_SECRET); with\n"
            "  --master-key KEY      the master's public key (a .pub file or 40 Z85\n"
            "                        characters; env ZTASK_MASTER_KEY): talk to a master\n"
            "                        run with CURVE\n"
            "  --state-dir DIR       where the worker records its running commands' process\n"
            "                        groups, so that none outlives it (default\n"
            "                        /run/ztask-worker for root, else\n"
            "                        $XDG_RUNTIME_DIR/ztask-worker or /tmp/ztask-worker-UID);\n"
            "                        at start, what a dead worker recorded there and still\n"
            "                        runs is killed\n"
            "  --idle-timeout T      leave after T with no task (90, 30s, 5m, 1h; default:\n"
            "                        never): a worker started for a while, e.g. in a\n"
            "                        Slurm allocation (ztask alloc)\n"
            "  --ends-at EPOCH       the wall time (seconds since 1970) this worker must be\n"
            "                        gone by, e.g. its allocation's end: the master sends\n"
            "                        it no task whose --time-request cannot finish by\n"
            "                        then, and it leaves 10 s before (inside a Slurm job,\n"
            "                        SLURM_JOB_ID is shown in `ztask workers` too)\n"
            "  --log-level LEVEL     debug, info (default), warn or error\n"
            "  --help                show this help\n"
            "  --version             show the version\n"
            "\n"
            "Config file: $ZTASK_CONFIG, else $XDG_CONFIG_HOME/ztask/config (default\n"
            "~/.config/ztask/config), else /etc/ztask/config: 'key = value' lines;\n"
            "keys master, curve-secret, master-key, threads, name, labels, resources, plugin,\n"
            "allow-exec, allow-env, state-dir, run-as, task-rlimit (lists comma-separated; relative paths are relative\n"
            "to the file). A flag beats the environment, which beats the file; a repeatable\n"
            "flag replaces the file's list. A per-user file that exists but cannot be\n"
            "read (another user's $HOME) is skipped with a warning (event=config_skipped).\n"
            "See docs/security.md.\n"
            "\n"
            "SIGTERM or SIGINT: finish the running tasks, then leave. A second one:\n"
            "cancel the running tasks and leave.\n");
}

static void s_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void s_usage_error(const char *fmt, ...)
{
    fprintf(stderr, "ztask-worker: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'ztask-worker --help'.\n");
    exit(2);
}

static void s_add_labels(options_t *o, const char *arg, const char *what)
{
    char *copy = xstrdup(arg), *cursor = copy;
    int added = 0;
    /* "gpu, ssd" in a config file: blanks around a label are not part of it. */
    for (char *tok; (tok = list_next(&cursor));) {
        size_t n = strlen(tok);
        if (n > PROTO_MAX_NAME || !utf8_valid(tok, n))
            s_usage_error("%s: invalid label '%s'", what, tok);
        o->labels = xrealloc(o->labels, (size_t) (o->nlabels + 1) * sizeof *o->labels);
        o->labels[o->nlabels++] = xstrdup(tok);
        added++;
    }
    free(copy);
    if (!added)
        s_usage_error("%s: expected a label, got '%s'", what, arg);
}

static void s_add_plugin(options_t *o, char *path)
{
    o->plugins = xrealloc(o->plugins, (size_t) (o->nplugins + 1) * sizeof *o->plugins);
    o->plugins[o->nplugins++] = path;
}

static void s_add_allow(options_t *o, const char *list, const char *what)
{
    char err[512];
    if (!o->allow)
        o->allow = allow_parse(list, err, sizeof err);
    else if (allow_extend(o->allow, list, err, sizeof err) != 0)
        allow_destroy(&o->allow);
    if (!o->allow)
        s_usage_error("%s: %s", what, err);
}

static void s_set_master(options_t *o, const char *text, const char *what)
{
    char *host = NULL;
    int port = DEFAULT_PORT;
    if (hostport_parse(text, &host, &port) != 0)
        s_usage_error("%s: expected HOST[:PORT], got '%s'", what, text);
    free(o->master_host);
    o->master_host = host;
    o->master_port = port;
}

static void s_set_threads(options_t *o, const char *text, const char *what)
{
    int64_t n;
    if (parse_int64(text, 1, MAX_THREADS, &n) != 0)
        s_usage_error("%s: expected an integer from 1 to 1024, got '%s'", what, text);
    o->threads = (int) n;
}

static void s_set_name(options_t *o, const char *text, const char *what)
{
    if (!*text || strlen(text) > PROTO_MAX_NAME || !utf8_valid(text, strlen(text)))
        s_usage_error("%s: expected 1 to 256 bytes of UTF-8, got '%s'", what, text);
    free(o->name);
    o->name = xstrdup(text);
}

/* Applies flag > environment > config file > default. Exits 2 on an
   error, naming where the bad value came from. */
static void s_resolve(options_t *o, const flags_t *fl)
{
    config_t *cfg = NULL;
    char err[600];
    if (config_load_default(&cfg, err, sizeof err, o->config_warning,
                            sizeof o->config_warning) != 0)
        s_usage_error("%s", err);
    config_from_t from;
    const char *v = config_pick(fl->master, "ZTASK_MASTER", cfg, "master", &from);
    s_set_master(o, v ? v : DEFAULT_MASTER,
                 config_origin(cfg, from, "--master", "ZTASK_MASTER", "master"));
    if ((v = config_pick(fl->threads, NULL, cfg, "threads", &from)))
        s_set_threads(o, v, config_origin(cfg, from, "--threads", NULL, "threads"));
    if ((v = config_pick(fl->name, NULL, cfg, "name", &from)))
        s_set_name(o, v, config_origin(cfg, from, "--name", NULL, "name"));

    /* Repeatable flags: given at all, they replace the file's list. */
    if (fl->nlabels)
        for (int i = 0; i < fl->nlabels; i++)
            s_add_labels(o, fl->labels[i], "--label");
    else if ((v = config_get(cfg, "labels")))
        s_add_labels(o, v, config_where(cfg, "labels"));
    if (fl->nplugins) {
        for (int i = 0; i < fl->nplugins; i++)
            s_add_plugin(o, xstrdup(fl->plugins[i]));
    } else if ((v = config_get(cfg, "plugin"))) {
        char *copy = xstrdup(v), *cursor = copy;
        for (char *tok; (tok = list_next(&cursor));)
            s_add_plugin(o, config_join(cfg, tok));
        free(copy);
    }
    if (fl->nallow)
        for (int i = 0; i < fl->nallow; i++)
            s_add_allow(o, fl->allow[i], "--allow-exec");
    else if ((v = config_get(cfg, "allow-exec")))
        s_add_allow(o, v, config_where(cfg, "allow-exec"));
    if (o->no_exec && o->allow)
        s_usage_error("%s", "--no-exec refuses every command: drop it or --allow-exec");
    const char *env_where = fl->nallow_env ? "--allow-env" : config_where(cfg, "allow-env");
    if ((fl->nallow_env || config_get(cfg, "allow-env")) && !o->allow)
        s_usage_error("%s: only a worker with --allow-exec narrows a task's env: give "
                      "--allow-exec too, or drop it", env_where);
    for (int i = 0; i < fl->nallow_env; i++)
        if (allow_env_extend(o->allow, fl->allow_env[i], err, sizeof err) != 0)
            s_usage_error("%s", err);
    if (!fl->nallow_env && (v = config_get(cfg, "allow-env")) &&
        allow_env_extend(o->allow, v, err, sizeof err) != 0)
        s_usage_error("%s: %s", env_where, err);

    o->policy = policy_new();
    if ((v = config_pick(fl->run_as, NULL, cfg, "run-as", &from)) &&
        policy_run_as(o->policy, v, err, sizeof err) != 0)
        s_usage_error("%s%s%s", from == CONFIG_FROM_FILE ? config_where(cfg, "run-as") : "",
                      from == CONFIG_FROM_FILE ? ": " : "", err);
    if (fl->nrlimits) {
        for (int i = 0; i < fl->nrlimits; i++)
            if (policy_add_rlimits(o->policy, fl->rlimits[i], err, sizeof err) != 0)
                s_usage_error("%s", err);
    } else if ((v = config_get(cfg, "task-rlimit")) &&
               policy_add_rlimits(o->policy, v, err, sizeof err) != 0) {
        s_usage_error("%s: %s", config_where(cfg, "task-rlimit"), err);
    }

    config_curve_t cc;
    if (config_pick_curve(cfg, fl->curve_secret, fl->master_key, &cc, err, sizeof err) != 0)
        s_usage_error("%s: --curve-secret and --master-key go together", err);
    o->curve_secret = cc.secret;      /* taken */
    o->master_key = cc.master_key;
    cc.secret = cc.master_key = NULL;
    config_curve_clear(&cc);
    if ((v = config_pick(fl->state_dir, NULL, cfg, "state-dir", &from)))
        o->state_dir = from == CONFIG_FROM_FILE ? config_path(cfg, "state-dir") : xstrdup(v);
    else
        o->state_dir = reaper_default_dir();
    const char *what = fl->resources ? "--resources" : config_where(cfg, "resources");
    if (!(v = fl->resources))
        v = config_get(cfg, "resources");
    /* --threads caps the tasks run at once; without it, one per CPU the
       worker declares (or finds). */
    if (machine_resources(&o->machine, v, o->threads, err, sizeof err) != 0)
        s_usage_error("%s: %s", what ? what : "--resources", err);
    if (o->threads == 0) {
        int64_t cpus = res_get(&o->machine.res, "cpus");
        o->threads = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (int) cpus;
    }
    config_destroy(&cfg);
}

static void s_parse(options_t *o, int argc, char **argv)
{
    enum { OPT_MASTER = 256, OPT_THREADS, OPT_NAME, OPT_PLUGIN, OPT_LABEL, OPT_NO_EXEC,
           OPT_LOG_LEVEL, OPT_HELP, OPT_VERSION, OPT_CURVE_SECRET, OPT_MASTER_KEY,
           OPT_ALLOW_EXEC, OPT_STATE_DIR, OPT_RESOURCES, OPT_RUN_AS, OPT_TASK_RLIMIT,
           OPT_ALLOW_ROOT, OPT_ALLOW_ENV, OPT_IDLE_TIMEOUT, OPT_ENDS_AT };
    static const struct option longopts[] = {
        {"master", required_argument, NULL, OPT_MASTER},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"name", required_argument, NULL, OPT_NAME},
        {"plugin", required_argument, NULL, OPT_PLUGIN},
        {"label", required_argument, NULL, OPT_LABEL},
        {"no-exec", no_argument, NULL, OPT_NO_EXEC},
        {"allow-exec", required_argument, NULL, OPT_ALLOW_EXEC},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"curve-secret", required_argument, NULL, OPT_CURVE_SECRET},
        {"master-key", required_argument, NULL, OPT_MASTER_KEY},
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"resources", required_argument, NULL, OPT_RESOURCES},
        {"run-as", required_argument, NULL, OPT_RUN_AS},
        {"task-rlimit", required_argument, NULL, OPT_TASK_RLIMIT},
        {"allow-root", no_argument, NULL, OPT_ALLOW_ROOT},
        {"allow-env", required_argument, NULL, OPT_ALLOW_ENV},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"ends-at", required_argument, NULL, OPT_ENDS_AT},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->level = LOG_LVL_INFO;
    flags_t fl;
    memset(&fl, 0, sizeof fl);
    /* At most argc of each list. */
    fl.plugins = xcalloc((size_t) argc + 1, sizeof *fl.plugins);
    fl.labels = xcalloc((size_t) argc + 1, sizeof *fl.labels);
    fl.allow = xcalloc((size_t) argc + 1, sizeof *fl.allow);
    fl.rlimits = xcalloc((size_t) argc + 1, sizeof *fl.rlimits);
    fl.allow_env = xcalloc((size_t) argc + 1, sizeof *fl.allow_env);
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_MASTER:
            fl.master = optarg;
            break;
        case OPT_THREADS:
            fl.threads = optarg;
            break;
        case OPT_NAME:
            fl.name = optarg;
            break;
        case OPT_PLUGIN:
            fl.plugins[fl.nplugins++] = optarg;
            break;
        case OPT_LABEL:
            fl.labels[fl.nlabels++] = optarg;
            break;
        case OPT_NO_EXEC:
            o->no_exec = true;
            break;
        case OPT_ALLOW_EXEC:
            fl.allow[fl.nallow++] = optarg;
            break;
        case OPT_LOG_LEVEL:
            if (log_level_parse(optarg, &o->level) != 0)
                s_usage_error("--log-level: expected debug, info, warn or error, got '%s'",
                              optarg);
            break;
        case OPT_CURVE_SECRET:
            fl.curve_secret = optarg;
            break;
        case OPT_MASTER_KEY:
            fl.master_key = optarg;
            break;
        case OPT_STATE_DIR:
            if (!*optarg)
                s_usage_error("%s", "--state-dir: expected a directory, got ''");
            fl.state_dir = optarg;
            break;
        case OPT_RESOURCES:
            fl.resources = optarg;
            break;
        case OPT_RUN_AS:
            fl.run_as = optarg;
            break;
        case OPT_TASK_RLIMIT:
            fl.rlimits[fl.nrlimits++] = optarg;
            break;
        case OPT_ALLOW_ENV:
            fl.allow_env[fl.nallow_env++] = optarg;
            break;
        case OPT_ALLOW_ROOT:
            o->allow_root = true;
            break;
        case OPT_IDLE_TIMEOUT:
            if (parse_duration(optarg, PROTO_MAX_IDLE_S, &o->idle_timeout) != 0
                || o->idle_timeout < 0.001)
                s_usage_error("--idle-timeout: expected a duration such as 90, 30s, 5m or 1h, "
                              "at most 20d, got '%s'",
                              optarg);
            break;
        case OPT_ENDS_AT:
            if (parse_double(optarg, &o->ends_at) != 0 || o->ends_at < 0 || o->ends_at > 1e11)
                s_usage_error("--ends-at: expected seconds since 1970 (date +%%s), got '%s'",
                              optarg);
            break;
        case OPT_HELP:
            s_usage(stdout);
            exit(0);
        case OPT_VERSION:
            printf("ztask-worker %s\n", ztask_version());
            exit(0);
        case ':':
            s_usage_error("%s: missing argument", argv[optind - 1]);
            break;
        default:
            s_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        s_usage_error("unexpected argument '%s'", argv[optind]);
    s_resolve(o, &fl);
    free(fl.plugins);
    free(fl.labels);
    free(fl.allow);
    free(fl.rlimits);
    free(fl.allow_env);
}

static void s_options_free(options_t *o)
{
    free(o->master_host);
    free(o->name);
    for (int i = 0; i < o->nplugins; i++)
        free(o->plugins[i]);
    free(o->plugins);
    for (int i = 0; i < o->nlabels; i++)
        free(o->labels[i]);
    free(o->labels);
    allow_destroy(&o->allow);
    machine_clear(&o->machine);
    free(o->curve_secret);
    free(o->master_key);
    free(o->state_dir);
    policy_destroy(&o->policy);
}

/* Who may run what, decided before anything starts. Exits 2 after
   printing why when the setup would hand tasks more than they should
   have:
   - with no CURVE keys the master admits every local user, so commands
     run as root would make every local user root: refused unless
     --allow-root (or --run-as another user, or --no-exec);
   - with --run-as, the task user must not be able to read our key file
     (the point of --run-as); without it, a task can, which is logged. */
static void s_check_task_rights(const options_t *o)
{
    if (o->no_exec)
        return;
    /* An ipc:// master is reached only by who may enter its directory. */
    if (!o->curve_secret && !zmqx_ipc(o->master_host) && policy_task_uid(o->policy) == 0 &&
        !o->allow_root) {
        fprintf(stderr,
                "ztask-worker: command tasks would run as root for a master without CURVE "
                "keys, so every local user who can reach the master could run commands as "
                "root: give --run-as USER (recommended), --no-exec, CURVE keys "
                "(--curve-secret, --master-key), or --allow-root to accept it\n");
        exit(2);
    }
    if (!o->curve_secret || !policy_task_can_read(o->policy, o->curve_secret))
        return;
    if (o->policy->run_as) {
        fprintf(stderr,
                "ztask-worker: --run-as %s: that user can read this worker's key file %s, so "
                "its tasks could take this worker's tasks: make the file readable by the "
                "worker's user only (chmod 0600 %s)\n",
                o->policy->user, o->curve_secret, o->curve_secret);
        exit(2);
    }
    log_warn("event=tasks_can_read_key file=\"%s\" hint=\"tasks run as the worker's user and "
             "can read its key; run them as another user with --run-as\"",
             o->curve_secret);
}

/* Our key pair and the master's public key, when CURVE is asked for.
   -1 after printing why. */
static int s_load_keys(const options_t *o, keypair_t *mine, keypair_t *master)
{
    memset(mine, 0, sizeof *mine);
    memset(master, 0, sizeof *master);
    if (!o->curve_secret)
        return 0;
    char err[512];
    if (keys_load_secret(o->curve_secret, mine, err, sizeof err) != 0) {
        fprintf(stderr, "ztask-worker: %s\n", err);
        return -1;
    }
    if (keys_load_public(o->master_key, master, err, sizeof err) != 0) {
        fprintf(stderr, "ztask-worker: --master-key: %s\n", err);
        return -1;
    }
    return 0;
}

/* The Slurm job this worker runs in (srun/sbatch set SLURM_JOB_ID), shown
   by the master; NULL outside Slurm or for a value that is not a job id. */
static const char *s_slurm_job(void)
{
    const char *id = getenv("SLURM_JOB_ID");
    if (!id || !*id || strlen(id) > 64 || strspn(id, "0123456789_") != strlen(id))
        return NULL;
    return id;
}

/* Buffers of this size and up get mappings of their own (glibc malloc's
   mmap threshold, fixed): a task's capture, its encoded result, its
   report. Growing one is then an mremap (no copy held beside it), and
   freeing one gives its pages back at once. Left to itself glibc raises
   the threshold to the biggest buffer freed so far, after which such
   buffers come from the threads' heaps: a capture that doubles is
   copied (1.5 x held), and what the pool threads and the session free is
   kept resident by each thread's heap -- together some 2.8 x the output
   cap per thread, over the 2.5 x bound docs/worker.md states ("Output
   capture"). Costs an mmap and a munmap per buffer this big: nothing
   next to filling it. */
#define WORKER_MMAP_THRESHOLD (256 * 1024)

int main(int argc, char **argv)
{
    mallopt(M_MMAP_THRESHOLD, WORKER_MMAP_THRESHOLD);
    options_t o;
    s_parse(&o, argc, argv);
    log_init("ztask-worker", o.level);
    if (o.config_warning[0])
        log_warn("event=config_skipped error=\"%s\"", o.config_warning);
    s_check_task_rights(&o);
    testhook_warn();

    /* A master that goes away must not kill us through a socket write;
       SIGTERM/SIGINT only count (the session acts on the count). No
       SA_RESTART: the session's poll is to be interrupted. */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    char hostname[HOST_NAME_MAX + 1] = "localhost";
    if (gethostname(hostname, sizeof hostname) != 0)
        snprintf(hostname, sizeof hostname, "localhost");
    hostname[HOST_NAME_MAX] = '\0';
    if (!o.name)
        o.name = xasprintf("%s-%d", hostname, (int) getpid());

    keypair_t mine, master;
    if (s_load_keys(&o, &mine, &master) != 0) {
        s_options_free(&o);
        return 1;
    }

    /* Forks: before any thread (plugins' constructors may start some). */
    char rerr[600];
    reaper_t *reaper = reaper_start(o.state_dir, o.threads, rerr, sizeof rerr);
    if (!reaper) {
        fprintf(stderr, "ztask-worker: %s\n", rerr);
        s_options_free(&o);
        return 1;
    }

    fn_registry_t *fns = fn_registry_new();
    if (!fns) {
        log_error("event=start_failed error=\"cannot create the function registry\"");
        reaper_stop(&reaper);
        s_options_free(&o);
        return 1;
    }
    for (int i = 0; i < o.nplugins; i++) {
        char err[512] = "";
        if (fn_registry_load(fns, o.plugins[i], err, sizeof err) != 0) {
            /* err names the plugin and says what is wrong with it. */
            fprintf(stderr, "ztask-worker: %s\n", err[0] ? err : "cannot load a plugin");
            fn_registry_destroy(&fns);
            reaper_stop(&reaper);
            s_options_free(&o);
            return 1;
        }
        log_info("event=plugin_loaded path=%s", o.plugins[i]);
    }

    session_config_t cfg = {
        .master_host = o.master_host,
        .master_port = o.master_port,
        .name = o.name,
        .hostname = hostname,
        .threads = o.threads,
        .labels = (const char *const *) o.labels,
        .nlabels = o.nlabels,
        .no_exec = o.no_exec,
        .resources = &o.machine.res,
        .gpu_ids = (const char *const *) o.machine.gpu_ids,
        .ngpu_ids = o.machine.ngpus,
        .allow_exec = o.allow,
        .policy = o.policy,
        .fns = fns,
        .signals = &g_signals,
        .reaper = reaper,
        .curve_server_key = o.curve_secret ? master.pub : NULL,
        .curve_public_key = o.curve_secret ? mine.pub : NULL,
        .curve_secret_key = o.curve_secret ? mine.sec : NULL,
        .idle_timeout_ms = (int) (o.idle_timeout * 1000.0),
        .ends_at = o.ends_at,
        .slurm_job = s_slurm_job(),
    };
    /* Test only: a hello that waits for a master restarted later
       (tests/e2e/test_faults.c: a hello older than its tasks' ends). */
    int64_t hello_ms;
    if (testhook_i64("ZTASK_TEST_HELLO_TIMEOUT_MS", 1, 600000, &hello_ms) == 0)
        cfg.hello_timeout_ms = (int) hello_ms;
    /* Test only: a task lost on its way to the pool (tests/e2e/test_faults.c:
       the master finds it missing from a heartbeat). */
    testhook_i64("ZTASK_TEST_DROP_TASK", 1, INT64_MAX, &cfg.drop_task);
    session_t *session = session_new(&cfg);
    if (!session) {
        log_error("event=start_failed error=\"bad session configuration\"");
        fn_registry_destroy(&fns);
        reaper_stop(&reaper);
        s_options_free(&o);
        return 1;
    }
    memset(&mine, 0, sizeof mine);   /* the session keeps its own copy */
    int rc = session_run(session);
    if (rc == 1) {
        /* Some task ignored the stop: its thread may be inside a plugin, so
           neither the registry nor the session can be torn down. The
           reaper kills whatever commands still run once we are gone. */
        log_error("event=exit code=1 reason=\"tasks abandoned\"");
        _exit(1);
    }
    session_destroy(&session);
    reaper_stop(&reaper);         /* every pool thread has ended */
    fn_registry_destroy(&fns);
    s_options_free(&o);
    if (rc == 0)
        log_info("event=exit code=0");
    return rc == 0 ? 0 : 1;
}
