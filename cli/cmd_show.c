/*  ztask show JOB: a job's definition (what it was submitted as, by whom,
    when, from where, its first task's spec, its steering) beside its
    counters; ztask tasks: what runs where across jobs, and (--waiting)
    why queued tasks do not run. Both only read. */
#include "../common/clock.h"
#include "../common/util.h"
#include "cli.h"
#include "fmt.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char s_show_usage[] =
    "usage: ztask show JOB [--json]\n"
    "\n"
    "Prints what a job is: its name, owner, when it was submitted, by which user\n"
    "on which host and in which directory, the 'ztask submit' command line that made\n"
    "it, its first task's spec (the command or function with every option), its\n"
    "limit and hold, and its counters.\n"
    "\n"
    "Options:\n"
    "  --json   the job record with \"definition\" ({\"argv\",\"user\",\"host\",\"cwd\"})\n"
    "           and \"first_spec\" (docs/protocol.md)\n"
    "\n"
    "Example:\n"
    "  ztask show 7\n";

static const struct option s_show_opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "json", no_argument, NULL, 'j' },
    { NULL, 0, NULL, 0 }
};

/* A string member of a definition, made printable ("-" when absent). */
static void s_member(char *buf, size_t size, const cJSON *def, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(def, key);
    fmt_cell(buf, size, cJSON_IsString(v) ? v->valuestring : "-", 200);
}

static void s_print(const proto_job_t *j)
{
    char buf[8192], t[64];
    fmt_cell(buf, sizeof buf, j->name ? j->name : "-", 200);
    printf("job        %lld\nname       %s\n", (long long) j->id, buf);
    printf("state      %s%s: %lld tasks, %lld done, %lld failed, %lld cancelled, %lld queued, "
           "%lld running\n",
           proto_job_state_name(j), j->held ? ", held" : "", (long long) j->total,
           (long long) j->done, (long long) j->failed, (long long) j->cancelled,
           (long long) j->queued, (long long) j->running);
    if (j->owner)
        printf("owner      %s (key %s)\n", j->owner_name ? j->owner_name : "-", j->owner);
    cJSON *def = j->definition ? cJSON_Parse(j->definition) : NULL;
    char user[256], host[256], cwd[1024];
    s_member(user, sizeof user, def, "user");
    s_member(host, sizeof host, def, "host");
    s_member(cwd, sizeof cwd, def, "cwd");
    fmt_time(t, sizeof t, j->created);
    if (def)
        printf("submitted  %s by %s on %s in %s\n", t, user, host, cwd);
    else
        printf("submitted  %s\n", t);
    const cJSON *argv = cJSON_GetObjectItemCaseSensitive(def, "argv");
    if (cJSON_IsArray(argv)) {
        snprintf(buf, sizeof buf, "ztask");
        const cJSON *w;
        cJSON_ArrayForEach(w, argv)
        if (cJSON_IsString(w))
            fmt_shell_word(buf, sizeof buf, w->valuestring);
        printf("command    %s\n", buf);
    }
    if (j->first_spec) {
        fmt_cell(buf, sizeof buf, j->first_spec, 2000);
        printf("first task %s\n", buf);
    }
    if (j->max_running)
        printf("limit      at most %d running\n", j->max_running);
    if (j->finished > 0) {
        fmt_time(t, sizeof t, j->finished);
        printf("finished   %s\n", t);
    }
    cJSON_Delete(def);
}

int cmd_show(cli_t *cli, int argc, char **argv)
{
    const char *cmd = "show";
    bool json = false;
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":h", s_show_opts)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_show_usage, stdout);
            return CLI_EXIT_OK;
        case 'j': json = true; break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(cmd, "give exactly one JOB");
    proto_req_t *req = proto_req_new(PROTO_REQ_SHOW);
    if (cli_parse_job(argv[optind], &req->job) != 0) {
        proto_req_destroy(&req);
        return cli_usage_error(cmd, "'%s' is not a job id", argv[optind]);
    }
    int rc = CLI_EXIT_OK;
    proto_reply_t *rep = cli_call(cli, req, true, &rc);
    proto_req_destroy(&req);
    if (!rep)
        return rc;
    if (rep->njobs != 1) {
        fprintf(stderr, "ztask: the master sent %d job records for one job\n", rep->njobs);
        proto_reply_destroy(&rep);
        return CLI_EXIT_REFUSED;
    }
    if (json) {
        char *text = proto_job_encode(&rep->jobs[0]);
        printf("%s\n", text);
        free(text);
    } else {
        s_print(&rep->jobs[0]);
    }
    proto_reply_destroy(&rep);
    return CLI_EXIT_OK;
}

/* ---------------------------------------------------------------- tasks */

static const char s_tasks_usage[] =
    "usage: ztask tasks [--running | --waiting] [--job JOB] [--worker W] [--all] [--json]\n"
    "\n"
    "What runs where, across jobs: every task on a worker now (sent or started),\n"
    "the longest running first:\n"
    "  TASK  JOB.INDEX  STATUS  ATTEMPT  WORKER  FOR  NAME\n"
    "STATUS is \"assigned\" (sent, not started yet) or \"running\"; FOR is how long\n"
    "since it was sent (then since it started, once its worker says so).\n"
    "\n"
    "With --waiting: why tasks do not run. Every queued task (not on a worker), in\n"
    "the order the master will start them (the highest priority, then the oldest):\n"
    "  TASK  JOB.INDEX  PRIORITY  ATTEMPT  REASON\n"
    "REASON is the first of:\n"
    "  held: ztask release 7           held (the job, or 7.3: the task alone)\n"
    "  after job 4 (running)           waits for the jobs it depends on (the\n"
    "                                  submit options after, after-any, after-each)\n"
    "  job limit 8 reached: ...        its job runs its --max-running (ztask limit)\n"
    "  retry backoff: attempt 2 in 3.4 s\n"
    "  no live worker can run it: ...  what it needs (a label, a function,\n"
    "                                  resources) no live worker has: see workers\n"
    "  ready: 12 ahead of it           waits for a free slot behind 12 ready tasks\n"
    "                                  (of any kind: fewer when those need other\n"
    "                                  workers)\n"
    "\n"
    "At most 10,000 tasks are listed; a --waiting list also stops once it has\n"
    "looked at 50,000 queued tasks (anyone's, in run order), and then says so.\n"
    "\n"
    "Options:\n"
    "  --running      the tasks on workers (the default)\n"
    "  --waiting      the queued tasks, each with why it waits\n"
    "  --job JOB      only this job's\n"
    "  --worker W     only those on worker W (an id from 'ztask workers'; --running)\n"
    "  --all          every client's jobs (an admin key), not only yours\n"
    "  --json         one task record per line (as 'ztask results --json'; \"started\"\n"
    "                 is the time above; --waiting adds \"wait\" (held, deps, capped,\n"
    "                 rejoin, commit, retry, no_worker, ready), \"reason\", \"priority\"\n"
    "                 and, when ready, \"ahead\": docs/protocol.md)\n"
    "\n"
    "Examples:\n"
    "  ztask tasks\n"
    "  ztask tasks --worker w3\n"
    "  ztask tasks --waiting --job 7\n";

enum { OPT_T_JOB = 256, OPT_T_WORKER, OPT_T_ALL, OPT_T_RUNNING, OPT_T_WAITING };

static const struct option s_tasks_opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "json", no_argument, NULL, 'j' },
    { "running", no_argument, NULL, OPT_T_RUNNING },
    { "waiting", no_argument, NULL, OPT_T_WAITING },
    { "job", required_argument, NULL, OPT_T_JOB },
    { "worker", required_argument, NULL, OPT_T_WORKER },
    { "all", no_argument, NULL, OPT_T_ALL },
    { NULL, 0, NULL, 0 }
};

static void s_print_ref(char *buf, size_t size, const proto_task_info_t *t)
{
    if (t->index >= 0)
        snprintf(buf, size, "%lld.%lld", (long long) t->job, (long long) t->index);
    else
        snprintf(buf, size, "%lld", (long long) t->job);
}

static void s_print_running(const proto_reply_t *rep)
{
    printf("%-10s %-14s %-9s %7s  %-14s %8s  %s\n", "TASK", "JOB.INDEX", "STATUS", "ATTEMPT",
           "WORKER", "FOR", "NAME");
    double now = clock_wall();
    for (int i = 0; i < rep->ntasks; i++) {
        const proto_task_info_t *t = &rep->tasks[i];
        char ref[48], worker[64], since[32], name[128];
        s_print_ref(ref, sizeof ref, t);
        fmt_cell(worker, sizeof worker, t->worker ? t->worker : "-", 14);
        if (t->started > 0)
            fmt_duration(since, sizeof since, now - t->started);
        else
            snprintf(since, sizeof since, "-");
        fmt_cell(name, sizeof name, t->name ? t->name : "", 40);
        printf("%-10lld %-14s %-9s %7d  %-14s %8s  %s\n", (long long) t->task, ref,
               proto_state_name(t->status), t->attempts, worker, since, name);
    }
    if (rep->ntasks == 0)
        printf("(no task is on a worker)\n");
}

static void s_print_waiting(const proto_reply_t *rep)
{
    printf("%-10s %-14s %8s %7s  %s\n", "TASK", "JOB.INDEX", "PRIORITY", "ATTEMPT", "REASON");
    for (int i = 0; i < rep->ntasks; i++) {
        const proto_task_info_t *t = &rep->tasks[i];
        char ref[48], reason[1024];
        s_print_ref(ref, sizeof ref, t);
        fmt_cell(reason, sizeof reason, t->reason ? t->reason : "-", 200);
        printf("%-10lld %-14s %8d %7d  %s\n", (long long) t->task, ref, (int) t->priority,
               t->attempts, reason);
    }
    if (rep->ntasks == 0 && !rep->truncated)
        printf("(no task waits)\n");
    if (rep->truncated)
        printf("(more tasks may wait than these: a listing stops at 10,000 tasks, or once it "
               "has looked at 50,000 queued tasks, anyone's, in run order)\n");
}

int cmd_tasks(cli_t *cli, int argc, char **argv)
{
    const char *cmd = "tasks";
    bool json = false, waiting = false, running = false;
    proto_req_t *req = proto_req_new(PROTO_REQ_TASKS);
    int rc = CLI_EXIT_USAGE;
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":h", s_tasks_opts)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_tasks_usage, stdout);
            rc = CLI_EXIT_OK;
            goto out;
        case 'j': json = true; break;
        case OPT_T_RUNNING: running = true; break;
        case OPT_T_WAITING: waiting = true; break;
        case OPT_T_ALL: req->all = true; break;
        case OPT_T_JOB:
            if (cli_parse_job(optarg, &req->job) != 0) {
                rc = cli_usage_error(cmd, "--job wants a job id, got '%s'", optarg);
                goto out;
            }
            break;
        case OPT_T_WORKER:
            if (!*optarg || strlen(optarg) > PROTO_MAX_NAME || !utf8_valid(optarg, strlen(optarg))) {
                rc = cli_usage_error(cmd, "'%s' is not a worker id", optarg);
                goto out;
            }
            free(req->worker);
            req->worker = xstrdup(optarg);
            break;
        default: goto out;
        }
    }
    if (argc - optind != 0) {
        rc = cli_usage_error(cmd, "takes no operand ('%s'); see --job", argv[optind]);
        goto out;
    }
    if (waiting && running) {
        rc = cli_usage_error(cmd, "--running or --waiting, not both");
        goto out;
    }
    if (waiting && req->worker) {
        rc = cli_usage_error(cmd, "--worker lists tasks on a worker: not with --waiting");
        goto out;
    }
    if (waiting)
        req->type = PROTO_REQ_WAITING;
    proto_reply_t *rep = cli_call(cli, req, true, &rc);
    if (!rep)
        goto out;
    if (json) {
        for (int i = 0; i < rep->ntasks; i++) {
            char *text = proto_task_info_encode(&rep->tasks[i]);
            printf("%s\n", text);
            free(text);
        }
        if (rep->truncated)
            fprintf(stderr, "ztask: more tasks may wait than these (a listing stops at 10,000 "
                            "tasks, or once it has looked at 50,000 queued tasks, anyone's, in "
                            "run order)\n");
    } else if (waiting) {
        s_print_waiting(rep);
    } else {
        s_print_running(rep);
    }
    proto_reply_destroy(&rep);
    rc = CLI_EXIT_OK;
out:
    proto_req_destroy(&req);
    return rc;
}
