/*  ztask alloc: the master's worker allocation queues (master/alloc.h,
    docs/deploy.md): add one for Slurm, list them, pause, resume, remove.
    Changes need an admin key; each request is sent once (resent only
    after a "busy" answer, which means it was not run: client.h). */
#include "../common/clock.h"
#include "../common/util.h"
#include "cli.h"
#include "fmt.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char s_usage[] =
    "usage: ztask alloc add slurm --time-limit T [--max-workers N] [--workers-per-alloc K]\n"
    "                             [--backlog B] [--idle-timeout T] [--name NAME]\n"
    "                             [--worker-arg ARG]... [--json] [-- SBATCH_ARGS...]\n"
    "       ztask alloc list [--json]\n"
    "       ztask alloc pause|resume ID [--json]\n"
    "       ztask alloc remove ID [--force] [--json]\n"
    "\n"
    "Worker allocation queues: while tasks wait that the live workers cannot take,\n"
    "the master submits Slurm jobs (sbatch) that start ztask-worker pointed back at\n"
    "it. Those workers leave after --idle-timeout without a task (or 10 s before the\n"
    "allocation's end) and the allocation ends with them. A failed sbatch, or an\n"
    "allocation that ends before any worker registered, backs the queue off (5 s,\n"
    "doubling up to 10 min); `alloc list` says why. Queues and their allocations\n"
    "survive a master restart. Changing queues needs an admin key (the master's\n"
    "--admins): sbatch runs as the master's user.\n"
    "\n"
    "add slurm:\n"
    "  --time-limit T         each allocation's wall-time limit (sbatch --time):\n"
    "                         90s, 30m, 2h, 1d (at least 1 minute)\n"
    "  --max-workers N        workers of this queue at once, queued ones included\n"
    "                         (default 10)\n"
    "  --workers-per-alloc K  workers one allocation starts (srun --ntasks=K;\n"
    "                         default 1)\n"
    "  --backlog B            allocations waiting for their workers at once\n"
    "                         (default 1)\n"
    "  --idle-timeout T       a worker with no task for T leaves (default 5m)\n"
    "  --name NAME            a name for people\n"
    "  --worker-arg ARG       one more ztask-worker argument (repeatable), e.g.\n"
    "                         --worker-arg=--threads=8; with CURVE keys,\n"
    "                         --worker-arg=--curve-secret=PATH is required (a key\n"
    "                         file readable on the nodes, listed in --workers)\n"
    "  -- SBATCH_ARGS...      sbatch's own options: --partition, --account,\n"
    "                         --nodes, --output...\n"
    "\n"
    "list: one line per queue: ID NAME STATE WORKERS(now/max) QUEUED RUNNING\n"
    "SUBMITTED FAILURES LAST-ERROR. STATE is active, paused or backing-off.\n"
    "pause: submit no more allocations (running ones go on); resume: again, at once.\n"
    "remove: forget the queue. Refused while any of its allocations is queued or\n"
    "running in Slurm (the error names them): pause the queue and remove it once\n"
    "they have ended (idle workers leave), or give --force.\n"
    "\n"
    "Options:\n"
    "  --force  remove: cancel the queue's queued and running allocations\n"
    "           (scancel: the tasks running on their workers are killed, and fail\n"
    "           or run again as their --retries say), then forget the queue\n"
    "  --json   one queue record per line (fields: docs/protocol.md)\n"
    "\n"
    "Examples:\n"
    "  ztask alloc add slurm --time-limit 1h --max-workers 20 -- --partition=cpu\n"
    "  ztask alloc list\n"
    "  ztask alloc pause 1\n";

enum { OPT_TIME_LIMIT = 256, OPT_MAX_WORKERS, OPT_PER_ALLOC, OPT_BACKLOG, OPT_IDLE, OPT_NAME,
       OPT_WORKER_ARG, OPT_JSON, OPT_FORCE };

static const struct option s_opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "json", no_argument, NULL, OPT_JSON },
    { "force", no_argument, NULL, OPT_FORCE },
    { "time-limit", required_argument, NULL, OPT_TIME_LIMIT },
    { "max-workers", required_argument, NULL, OPT_MAX_WORKERS },
    { "workers-per-alloc", required_argument, NULL, OPT_PER_ALLOC },
    { "backlog", required_argument, NULL, OPT_BACKLOG },
    { "idle-timeout", required_argument, NULL, OPT_IDLE },
    { "name", required_argument, NULL, OPT_NAME },
    { "worker-arg", required_argument, NULL, OPT_WORKER_ARG },
    { NULL, 0, NULL, 0 }
};

/* The queue's state for people. */
static const char *s_state(const proto_alloc_t *q, double now)
{
    if (q->paused)
        return "paused";
    return q->retry_at > now ? "backing-off" : "active";
}

static void s_print(const proto_alloc_t *q, double now)
{
    int queued = 0, running = 0, workers = 0;
    for (int i = 0; i < q->nallocs; i++) {
        queued += q->allocs[i].state == PROTO_ALLOC_QUEUED;
        running += q->allocs[i].state == PROTO_ALLOC_RUNNING;
        workers += q->allocs[i].workers;
    }
    char name[64], err[128], wk[32], state[40];
    fmt_cell(name, sizeof name, q->name ? q->name : "-", 12);
    fmt_cell(err, sizeof err, q->last_error ? q->last_error : "-", 80);
    snprintf(wk, sizeof wk, "%d/%d", workers, q->max_workers);
    if (q->retry_at > now && !q->paused)
        snprintf(state, sizeof state, "%s(%.0fs)", s_state(q, now), q->retry_at - now);
    else
        snprintf(state, sizeof state, "%s", s_state(q, now));
    printf("%-4" PRId64 " %-12s %-16s %-9s %6d %7d %9" PRId64 " %8" PRId64 "  %s\n", q->id, name,
           state, wk, queued, running, q->submitted, q->failures, err);
}

static int s_send(cli_t *cli, proto_req_t *req, bool json)
{
    int rc = CLI_EXIT_OK;
    /* A list may be resent; a change is sent once (it is not idempotent),
       but for "busy" (client.h). */
    proto_reply_t *rep = cli_call(cli, req, req->alloc_op == PROTO_ALLOC_OP_LIST, &rc);
    proto_alloc_op_t req_op = req->alloc_op;
    proto_req_destroy(&req);
    if (!rep)
        return rc;
    double now = clock_wall();
    if (!json && rep->nallocs > 0)
        printf("%-4s %-12s %-16s %-9s %6s %7s %9s %8s  %s\n", "ID", "NAME", "STATE", "WORKERS",
               "QUEUED", "RUNNING", "SUBMITTED", "FAILURES", "LAST-ERROR");
    for (int i = 0; i < rep->nallocs; i++) {
        if (json) {
            char *text = proto_alloc_encode(&rep->allocs[i]);
            printf("%s\n", text);
            free(text);
        } else {
            s_print(&rep->allocs[i], now);
        }
    }
    if (!json && rep->nallocs == 0)
        printf("(no allocation queues)\n");
    /* A forced remove answers the queue as it was: what it still had in
       Slurm is being cancelled. */
    if (!json && req_op == PROTO_ALLOC_OP_REMOVE && rep->nallocs == 1) {
        const proto_alloc_t *q = &rep->allocs[0];
        int n = 0;
        for (int k = 0; k < q->nallocs; k++)
            if (q->allocs[k].state != PROTO_ALLOC_ENDED)
                printf("%s %s", n++ ? "," : "removed; cancelling (scancel)", q->allocs[k].id);
        if (n)
            printf("\n");
    }
    proto_reply_destroy(&rep);
    return CLI_EXIT_OK;
}

static int s_add(cli_t *cli, int argc, char **argv)
{
    const char *cmd = "alloc add";
    proto_alloc_t *q = xcalloc(1, sizeof *q);
    q->max_workers = 10;
    q->workers_per_alloc = 1;
    q->backlog = 1;
    q->idle_timeout_s = 300;
    q->worker_args = xcalloc((size_t) argc + 1, sizeof *q->worker_args);
    bool json = false;
    int rc = -1;
    if (argc < 2 || strcmp(argv[1], "slurm") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            fputs(s_usage, stdout);
            rc = CLI_EXIT_OK;
        } else {
            rc = cli_usage_error(cmd, "give the engine first: 'ztask alloc add slurm ...' "
                                      "(Slurm is the one supported)");
        }
        proto_alloc_destroy(&q);
        return rc;
    }
    argc--;
    argv++;   /* argv[0] is now the engine, where getopt expects a name */
    optind = 0;
    int c;
    int64_t v;
    double secs;
    /* "+": stop at "--" (taken) or at an operand: sbatch's options are its own. */
    while (rc < 0 && (c = cli_getopt(cmd, argc, argv, "+:h", s_opts)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_usage, stdout);
            rc = CLI_EXIT_OK;
            break;
        case OPT_JSON:
            json = true;
            break;
        case OPT_TIME_LIMIT:
            if (parse_duration(optarg, 366 * 86400.0, &secs) != 0 || secs < 60)
                rc = cli_usage_error(cmd, "--time-limit wants a duration of at least 1m (90s, "
                                          "30m, 2h, 1d), got '%s'",
                                     optarg);
            q->time_limit_s = (int) secs;
            break;
        case OPT_IDLE:
            if (parse_duration(optarg, PROTO_MAX_IDLE_S, &secs) != 0 || secs < 1)
                rc = cli_usage_error(cmd, "--idle-timeout wants a duration of 1s to 20d, "
                                          "got '%s'",
                                     optarg);
            q->idle_timeout_s = (int) secs;
            break;
        case OPT_MAX_WORKERS:
            if (parse_int64(optarg, 1, 100000, &v) != 0)
                rc = cli_usage_error(cmd, "--max-workers wants 1..100000, got '%s'", optarg);
            q->max_workers = (int) v;
            break;
        case OPT_PER_ALLOC:
            if (parse_int64(optarg, 1, 1024, &v) != 0)
                rc = cli_usage_error(cmd, "--workers-per-alloc wants 1..1024, got '%s'", optarg);
            q->workers_per_alloc = (int) v;
            break;
        case OPT_BACKLOG:
            if (parse_int64(optarg, 1, 1000, &v) != 0)
                rc = cli_usage_error(cmd, "--backlog wants 1..1000, got '%s'", optarg);
            q->backlog = (int) v;
            break;
        case OPT_NAME:
            free(q->name);
            q->name = xstrdup(optarg);
            break;
        case OPT_WORKER_ARG:
            q->worker_args[q->nworker_args++] = xstrdup(optarg);
            break;
        default:
            rc = CLI_EXIT_USAGE;
        }
    }
    if (rc < 0 && optind < argc && strcmp(argv[optind - 1], "--") != 0)
        rc = cli_usage_error(cmd, "unexpected '%s': sbatch's own options go after '--'",
                             argv[optind]);
    if (rc < 0 && !q->time_limit_s)
        rc = cli_usage_error(cmd, "--time-limit is required (each allocation's wall time)");
    if (rc < 0 && q->idle_timeout_s > q->time_limit_s)
        rc = cli_usage_error(cmd, "--idle-timeout is longer than --time-limit");
    if (rc < 0 && q->workers_per_alloc > q->max_workers)
        rc = cli_usage_error(cmd, "--workers-per-alloc is more than --max-workers");
    if (rc >= 0) {
        proto_alloc_destroy(&q);
        return rc;
    }
    q->engine = xstrdup("slurm");
    int nargs = argc - optind;
    if (nargs > PROTO_MAX_ALLOC_ARGS) {
        proto_alloc_destroy(&q);
        return cli_usage_error(cmd, "at most %d sbatch arguments", PROTO_MAX_ALLOC_ARGS);
    }
    q->args = xcalloc((size_t) nargs + 1, sizeof *q->args);
    for (int i = 0; i < nargs; i++)
        q->args[q->nargs++] = xstrdup(argv[optind + i]);
    proto_req_t *req = proto_req_new(PROTO_REQ_ALLOC);
    req->alloc_op = PROTO_ALLOC_OP_ADD;
    req->queue = q;
    return s_send(cli, req, json);
}

int cmd_alloc(cli_t *cli, int argc, char **argv)
{
    const char *cmd = "alloc";
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc < 2) {
            fputs(s_usage, stderr);
            return CLI_EXIT_USAGE;
        }
        fputs(s_usage, stdout);
        return CLI_EXIT_OK;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "add") == 0)
        return s_add(cli, argc - 1, argv + 1);
    static const struct { const char *name; proto_alloc_op_t op; } ops[] = {
        { "list", PROTO_ALLOC_OP_LIST },     { "pause", PROTO_ALLOC_OP_PAUSE },
        { "resume", PROTO_ALLOC_OP_RESUME }, { "remove", PROTO_ALLOC_OP_REMOVE },
    };
    proto_alloc_op_t op = 0;
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (strcmp(sub, ops[i].name) == 0)
            op = ops[i].op;
    if (!op)
        return cli_usage_error(cmd, "unknown subcommand '%s' (add, list, pause, resume, remove)",
                               sub);
    argc--;
    argv++;
    bool json = false, force = false;
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":h", s_opts)) != -1) {
        if (c == 'h') {
            fputs(s_usage, stdout);
            return CLI_EXIT_OK;
        }
        if (c == OPT_FORCE && op == PROTO_ALLOC_OP_REMOVE) {
            force = true;
            continue;
        }
        if (c != OPT_JSON)
            return c == '?' ? CLI_EXIT_USAGE
                   : op == PROTO_ALLOC_OP_REMOVE
                       ? cli_usage_error(cmd, "'remove' takes only --force and --json")
                       : cli_usage_error(cmd, "'%s' takes only --json", sub);
        json = true;
    }
    int64_t id = 0;
    int operands = argc - optind;
    if (op == PROTO_ALLOC_OP_LIST && operands != 0)
        return cli_usage_error(cmd, "'list' takes no operand");
    if (op != PROTO_ALLOC_OP_LIST
        && (operands != 1 || parse_int64(argv[optind], 1, INT64_MAX / 2, &id) != 0))
        return cli_usage_error(cmd, "'%s' wants one queue id (see ztask alloc list)", sub);
    proto_req_t *req = proto_req_new(PROTO_REQ_ALLOC);
    req->alloc_op = op;
    req->alloc = id;
    req->force = force;
    return s_send(cli, req, json);
}
