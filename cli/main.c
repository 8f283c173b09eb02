/*  ztask: the command-line client. Global options, then one subcommand
    (cmd_*.c). Process state lives in one cli_t owned here. */
#include "../common/util.h"
#include "cli.h"
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char s_usage[] =
    "usage: ztask [--master HOST[:PORT]] [--request-timeout SEC] COMMAND [ARGS...]\n"
    "\n"
    "Submits jobs to a ztask master and reports on them.\n"
    "\n"
    "Commands:\n"
    "  submit    submit a job: a command, --array, --each, --file or --fn\n"
    "  wait      wait for a job to finish, with a progress bar\n"
    "  status    a job's counters (or every job's)\n"
    "  jobs      list jobs\n"
    "  results   list a job's tasks and how they ended\n"
    "  logs      a task's stdout and stderr (-f to follow)\n"
    "  cancel    cancel a job or one task\n"
    "  workers   list workers\n"
    "  drain     let a worker finish its tasks and leave\n"
    "  stats     the master's totals\n"
    "  forget    delete a finished job and its results\n"
    "  keygen    create a CURVE key pair (not available yet)\n"
    "\n"
    "Global options (before the command):\n"
    "  --master HOST[:PORT]    the master's API address (env ZTASK_MASTER;\n"
    "                          default 127.0.0.1:5555)\n"
    "  --request-timeout SEC   how long to wait for each reply (env\n"
    "                          ZTASK_REQUEST_TIMEOUT; default 10)\n"
    "  --help                  this text ('ztask COMMAND --help' for a command)\n"
    "  --version               print the version\n"
    "\n"
    "Examples:\n"
    "  ztask submit --array 1-100 --wait -- ./simulate --seed {}\n"
    "  ztask --master build01:5555 jobs\n"
    "  ztask results 7 --failed\n"
    "\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  some tasks failed or were cancelled (wait, submit --wait)\n"
    "  2  usage error (bad option or input)\n"
    "  3  cannot reach the master\n"
    "  4  the master refused the request\n"
    "  5  wait --timeout expired before the job finished\n"
    "  6  authentication failed (reserved)\n"
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
    { NULL, NULL }
};

static const command_t *s_find(const char *name)
{
    for (const command_t *c = s_commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
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

enum { OPT_MASTER = 256, OPT_TIMEOUT, OPT_VERSION };

static const struct option s_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, OPT_VERSION },
    { "master", required_argument, NULL, OPT_MASTER },
    { "request-timeout", required_argument, NULL, OPT_TIMEOUT },
    { NULL, 0, NULL, 0 }
};

int main(int argc, char **argv)
{
    cli_t cli = { xstrdup(CLI_DEFAULT_HOST), CLI_DEFAULT_PORT, CLI_DEFAULT_TIMEOUT_MS, NULL };
    int rc = CLI_EXIT_USAGE;
    const char *env = getenv("ZTASK_MASTER");
    if (env && *env && s_set_master(&cli, env, "ZTASK_MASTER") != 0)
        goto out;
    env = getenv("ZTASK_REQUEST_TIMEOUT");
    if (env && *env && s_set_timeout(&cli, env, "ZTASK_REQUEST_TIMEOUT") != 0)
        goto out;

    optind = 0;
    int c;
    while ((c = cli_getopt(NULL, argc, argv, "+:h", s_longopts)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_usage, stdout);
            rc = CLI_EXIT_OK;
            goto out;
        case OPT_VERSION:
            printf("ztask %s (protocol v%d)\n", ZTASK_CLI_VERSION, PROTO_VERSION);
            rc = CLI_EXIT_OK;
            goto out;
        case OPT_MASTER:
            if (s_set_master(&cli, optarg, "--master") != 0)
                goto out;
            break;
        case OPT_TIMEOUT:
            if (s_set_timeout(&cli, optarg, "--request-timeout") != 0)
                goto out;
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
            rc = cli_usage_error(NULL, "unknown command '%s'", name);
            goto out;
        }
        help_argv[0] = (char *) cmd->name;
        rc = cmd->fn(&cli, 2, help_argv);
        goto out;
    }
    const command_t *cmd = s_find(name);
    if (!cmd) {
        rc = cli_usage_error(NULL, "unknown command '%s'", name);
        goto out;
    }
    cli_signals_install();
    rc = cmd->fn(&cli, argc - optind, argv + optind);
out:
    fflush(stdout);
    client_destroy(&cli.client);
    free(cli.host);
    return rc;
}
