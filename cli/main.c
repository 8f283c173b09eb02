/*  ztask: the command-line client. Global options, then one subcommand
    (cmd_*.c). Process state lives in one cli_t owned here. */
#include "../common/config.h"
#include "../common/keys.h"
#include "../common/util.h"
#include "../common/version.h"
#include "cli.h"
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char s_usage[] =
    "usage: ztask [--master HOST[:PORT]] [--request-timeout SEC]\n"
    "             [--curve-secret FILE --master-key FILE|KEY] COMMAND [ARGS...]\n"
    "\n"
    "Submits jobs to a ztask master and reports on them.\n"
    "\n"
    "Commands:\n"
    "  submit    submit a job: a command, --array, --each, --file or --fn\n"
    "  wait      wait for a job to finish, with a progress bar\n"
    "  status    a job's counters (or every job's)\n"
    "  jobs      list jobs\n"
    "  show      what a job is: its command, options, who submitted it, when\n"
    "  results   list a job's tasks and how they ended\n"
    "  tasks     what runs where across jobs, and (--waiting) why tasks wait\n"
    "  logs      a task's stdout and stderr (-f to follow)\n"
    "  cancel    cancel a job or one task\n"
    "  retry     run a job's failed and cancelled tasks again\n"
    "  hold      keep a job's (or a task's) queued tasks from starting\n"
    "  release   let held tasks start again\n"
    "  priority  change the priority of a job's queued tasks\n"
    "  limit     run at most N of a job's tasks at once\n"
    "  workers   list workers\n"
    "  drain     let a worker finish its tasks and leave\n"
    "  stats     the master's totals\n"
    "  forget    delete a finished job and its results\n"
    "  keygen    create a CURVE key pair (NAME.key, NAME.pub)\n"
    "  alloc     worker allocation queues: Slurm jobs that start workers while\n"
    "            tasks wait (add, list, pause, resume, remove)\n"
    "\n"
    "Global options (before the command):\n"
    "  --master HOST[:PORT]    the master's API address (env ZTASK_MASTER;\n"
    "                          default 127.0.0.1:5555), or ipc:///DIR for a\n"
    "                          master bound to a directory of Unix sockets\n"
    "  --request-timeout SEC   how long to wait for each reply (env\n"
    "                          ZTASK_REQUEST_TIMEOUT; default 10)\n"
    "  --curve-secret FILE     this client's key file (from 'ztask keygen'; env\n"
    "                          ZTASK_CURVE_SECRET); with --master-key, talk CURVE\n"
    "  --master-key FILE|KEY   the master's public key: its .pub file or 40 Z85\n"
    "                          characters (env ZTASK_MASTER_KEY)\n"
    "  --help                  this text ('ztask COMMAND --help' for a command)\n"
    "  --version               print the version\n"
    "\n"
    "Long options are spelled out in full (no abbreviations). Shell completion\n"
    "(bash, zsh) and man pages (man ztask) come with 'make install'.\n"
    "\n"
    "Config file: $ZTASK_CONFIG, else $XDG_CONFIG_HOME/ztask/config (default\n"
    "~/.config/ztask/config), else /etc/ztask/config: 'key = value' lines with\n"
    "keys master, request-timeout, curve-secret, master-key ('#' starts a comment\n"
    "line). A flag beats the environment, which beats the file; a per-user file\n"
    "that cannot be read is skipped with a warning. See docs/security.md.\n"
    "\n"
    "Examples:\n"
    "  ztask submit --array 1-100 --wait -- ./simulate --seed {}\n"
    "  ztask --master build01:5555 jobs\n"
    "  ztask results 7 --failed\n"
    "  ztask keygen ana --dir ~/.config/ztask\n"
    "\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  some tasks failed or were cancelled (wait, submit --wait)\n"
    "  2  usage error (bad option or input)\n"
    "  3  cannot reach the master (refused or no such host: at once; silent: after\n"
    "     the request timeout; with wait --timeout, none reached by then)\n"
    "  4  the master refused the request (busy: for the whole request timeout, or\n"
    "     until wait --timeout)\n"
    "  5  wait --timeout expired before the job finished\n"
    "  6  authentication failed (key refused, missing or wrong)\n"
    "  130 interrupted\n";

typedef struct {
    const char *name;
    int (*fn)(cli_t *cli, int argc, char **argv);
} command_t;

static const command_t s_commands[] = {
    { "submit", cmd_submit },   { "wait", cmd_wait },       { "status", cmd_status },
    { "jobs", cmd_jobs },       { "results", cmd_results }, { "logs", cmd_logs },
    { "cancel", cmd_cancel },   { "workers", cmd_workers }, { "drain", cmd_drain },
    { "stats", cmd_stats },     { "forget", cmd_forget },   { "keygen", cmd_keygen },
    { "retry", cmd_retry },     { "hold", cmd_hold },       { "release", cmd_release },
    { "priority", cmd_priority }, { "limit", cmd_limit },   { "show", cmd_show },
    { "tasks", cmd_tasks },     { "alloc", cmd_alloc },     { NULL, NULL }
};

static const command_t *s_find(const char *name)
{
    for (const command_t *c = s_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

/* "unknown command 'x'", with the closest command when one is near
   ("did you mean 'submit'?"); returns 2. */
static int s_unknown_command(const char *name)
{
    const command_t *best = NULL;
    for (const command_t *c = s_commands; c->name; c++)
        if (cli_close_enough(name, c->name)
            && (!best || cli_distance(name, c->name) < cli_distance(name, best->name)))
            best = c;
    if (best)
        return cli_usage_error(NULL, "unknown command '%s' (did you mean '%s'?)", name,
                               best->name);
    return cli_usage_error(NULL, "unknown command '%s'", name);
}

static int s_set_master(cli_t *cli, const char *text, const char *from)
{
    char *host = NULL;
    int port = CLI_DEFAULT_PORT;
    if (hostport_parse(text, &host, &port) != 0) {
        fprintf(stderr, "ztask: %s '%s' is not HOST[:PORT]; see 'ztask --help'\n", from, text);
        return -1;
    }
    free(cli->host);
    cli->host = host;
    cli->port = port;
    return 0;
}

static int s_set_timeout(cli_t *cli, const char *text, const char *from)
{
    double s;
    if (cli_parse_seconds(text, &s) != 0 || s <= 0 || s > 86400) {
        fprintf(stderr, "ztask: %s '%s' is not a number of seconds (0 < SEC <= 86400); see "
                        "'ztask --help'\n",
                from, text);
        return -1;
    }
    cli->timeout_ms = (int) (s * 1000 + 0.5);
    if (cli->timeout_ms < 1)
        cli->timeout_ms = 1;
    return 0;
}

/* What the global options said, before the environment and the config
   file fill the gaps. */
typedef struct {
    const char *master;
    const char *timeout;
    const char *curve_secret;
    const char *master_key;
} flags_t;

/* Our key pair and the master's public key, when CURVE is configured.
   0, or -1 after printing why. */
static int s_set_keys(cli_t *cli, config_t *cfg, const flags_t *fl)
{
    config_curve_t cc;
    char err[600];
    int rc = -1;
    keypair_t mine, master;
    memset(&mine, 0, sizeof mine);
    if (config_pick_curve(cfg, fl->curve_secret, fl->master_key, &cc, err, sizeof err) != 0) {
        fprintf(stderr,
                "ztask: %s: CURVE needs both this client's key file and the master's public "
                "key; see 'ztask --help'\n",
                err);
        goto out;
    }
    if (!cc.secret) {
        rc = 0;
        goto out;
    }
    if (keys_load_secret(cc.secret, &mine, err, sizeof err) != 0) {
        fprintf(stderr, "ztask: curve-secret (from %s): %s\n", cc.secret_from, err);
        goto out;
    }
    if (keys_load_public(cc.master_key, &master, err, sizeof err) != 0) {
        fprintf(stderr,
                "ztask: master-key (from %s) is neither 40 Z85 characters nor a key file: %s\n",
                cc.master_key_from, err);
        goto out;
    }
    cli->curve = true;
    memcpy(cli->server_key, master.pub, sizeof cli->server_key);
    memcpy(cli->public_key, mine.pub, sizeof cli->public_key);
    memcpy(cli->secret_key, mine.sec, sizeof cli->secret_key);
    rc = 0;
out:
    explicit_bzero(&mine, sizeof mine);
    config_curve_clear(&cc);
    return rc;
}

/* Applies flag > environment > config file > default to every global
   setting. 0, or -1 after printing why (a usage error). */
static int s_resolve(cli_t *cli, const flags_t *fl)
{
    config_t *cfg = NULL;
    char err[600], warn[700];
    if (config_load_default(&cfg, err, sizeof err, warn, sizeof warn) != 0) {
        fprintf(stderr, "ztask: %s\n", err);
        return -1;
    }
    if (warn[0])
        fprintf(stderr, "ztask: warning: %s\n", warn);
    int rc = -1;
    config_from_t from;
    const char *v = config_pick(fl->master, "ZTASK_MASTER", cfg, "master", &from);
    if (v
        && s_set_master(cli, v, config_origin(cfg, from, "--master", "ZTASK_MASTER", "master"))
               != 0)
        goto out;
    v = config_pick(fl->timeout, "ZTASK_REQUEST_TIMEOUT", cfg, "request-timeout", &from);
    if (v
        && s_set_timeout(cli, v,
                         config_origin(cfg, from, "--request-timeout",
                                       "ZTASK_REQUEST_TIMEOUT", "request-timeout"))
               != 0)
        goto out;
    if (s_set_keys(cli, cfg, fl) != 0)
        goto out;
    rc = 0;
out:
    config_destroy(&cfg);
    return rc;
}

enum { OPT_MASTER = 256, OPT_TIMEOUT, OPT_VERSION, OPT_CURVE_SECRET, OPT_MASTER_KEY };

static const struct option s_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, OPT_VERSION },
    { "master", required_argument, NULL, OPT_MASTER },
    { "request-timeout", required_argument, NULL, OPT_TIMEOUT },
    { "curve-secret", required_argument, NULL, OPT_CURVE_SECRET },
    { "master-key", required_argument, NULL, OPT_MASTER_KEY },
    { NULL, 0, NULL, 0 }
};

int main(int argc, char **argv)
{
    cli_t cli = { .host = xstrdup(CLI_DEFAULT_HOST),
                  .port = CLI_DEFAULT_PORT,
                  .timeout_ms = CLI_DEFAULT_TIMEOUT_MS };
    flags_t fl = { NULL, NULL, NULL, NULL };
    int rc = CLI_EXIT_USAGE;

    optind = 0;
    int c;
    while ((c = cli_getopt(NULL, argc, argv, "+:h", s_longopts)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_usage, stdout);
            rc = CLI_EXIT_OK;
            goto out;
        case OPT_VERSION:
            printf("ztask %s (protocol v%d)\n", ztask_version(), PROTO_VERSION);
            rc = CLI_EXIT_OK;
            goto out;
        case OPT_MASTER:
            fl.master = optarg;
            break;
        case OPT_TIMEOUT:
            fl.timeout = optarg;
            break;
        case OPT_CURVE_SECRET:
            fl.curve_secret = optarg;
            break;
        case OPT_MASTER_KEY:
            fl.master_key = optarg;
            break;
        default:
            goto out;
        }
    }
    if (optind >= argc) {
        fputs(s_usage, stderr);
        goto out;
    }
    const char *name = argv[optind];
    /* "ztask help submit" is "ztask submit --help". */
    char *help_argv[] = { NULL, "--help", NULL };
    if (strcmp(name, "help") == 0) {
        if (optind + 1 >= argc) {
            fputs(s_usage, stdout);
            rc = CLI_EXIT_OK;
            goto out;
        }
        name = argv[optind + 1];
        const command_t *cmd = s_find(name);
        if (!cmd) {
            rc = s_unknown_command(name);
            goto out;
        }
        help_argv[0] = (char *) cmd->name;
        rc = cmd->fn(&cli, 2, help_argv);
        goto out;
    }
    const command_t *cmd = s_find(name);
    if (!cmd) {
        rc = s_unknown_command(name);
        goto out;
    }
    /* keygen talks to no master: a broken config file must not stop it. */
    if (cmd->fn != cmd_keygen && s_resolve(&cli, &fl) != 0)
        goto out;
    cli_signals_install();
    rc = cmd->fn(&cli, argc - optind, argv + optind);
out:
    fflush(stdout);
    client_destroy(&cli.client);
    explicit_bzero(cli.secret_key, sizeof cli.secret_key);
    free(cli.host);
    return rc;
}
