/*  Commands that steer a job in place: ztask retry (finished tasks run
    again in the same job), hold and release (queued tasks wait, then may
    run), priority (of its queued tasks), limit (its tasks running at
    once). Each request is sent once, never resent: a
    retry that reached the master and whose reply was lost must not put
    the same tasks back twice. */
#include "../common/util.h"
#include "cli.h"
#include "range.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Expands an index SPEC (range.h syntax) into *indexes (caller frees) for
   a request; 0, or an exit code after printing why. */
static int s_index_list(const char *cmd, const char *text, int64_t **indexes, int *n)
{
    char err[256];
    range_t *r = range_parse(text, err, sizeof err);
    if (!r)
        return cli_usage_error(cmd, "--index: %s", err);
    int64_t count = range_count(r);
    if (count > PROTO_MAX_INDEXES) {
        range_destroy(&r);
        return cli_usage_error(cmd, "--index names %lld indexes; at most %d at once",
                               (long long) count, PROTO_MAX_INDEXES);
    }
    int64_t *v = xmalloc((size_t) count * sizeof *v);
    range_iter_t it;
    range_iter_init(&it, r);
    int i = 0;
    while (i < count && range_iter_next(&it, &v[i]))
        i++;
    range_destroy(&r);
    *indexes = v;
    *n = i;
    return 0;
}

/* ----------------------------------------------------------------- retry */

static const char s_retry_usage[] =
    "usage: ztask retry JOB [--failed] [--cancelled] [--index SPEC] [--wait] [--json]\n"
    "\n"
    "Runs a job's failed and cancelled tasks again, in the same job: each goes back\n"
    "to the queue as a new attempt (its ZTASK_ATTEMPT grows), with the retries its\n"
    "spec asked for, and the job is running again until they end ('ztask wait JOB'\n"
    "follows it). Tasks that are done, queued or running are left alone. The results\n"
    "then show the new attempt; the old outcome is replaced.\n"
    "\n"
    "This is how a job submitted with --file (or --each, --array) resumes: 'ztask\n"
    "retry JOB --failed' re-runs exactly the lines that failed, nothing else.\n"
    "\n"
    "Options:\n"
    "  --failed        only failed tasks\n"
    "  --cancelled     only cancelled tasks (both, when neither is given)\n"
    "  --index SPEC    only these indexes, as --array writes them (1-10,15)\n"
    "  --wait          then wait for the job, as 'ztask wait' (exit 0, 1 or 5)\n"
    "  --json          print {\"job\":J,\"tasks\":N}, N the tasks put back\n"
    "\n"
    "Examples:\n"
    "  ztask retry 7\n"
    "  ztask retry 7 --failed --index 3,9-12 --wait\n";

enum { OPT_FAILED = 256, OPT_CANCELLED, OPT_INDEX, OPT_WAIT, OPT_JSON };

static const struct option s_retry_opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "failed", no_argument, NULL, OPT_FAILED },
    { "cancelled", no_argument, NULL, OPT_CANCELLED },
    { "index", required_argument, NULL, OPT_INDEX },
    { "wait", no_argument, NULL, OPT_WAIT },
    { "json", no_argument, NULL, OPT_JSON },
    { NULL, 0, NULL, 0 }
};

int cmd_retry(cli_t *cli, int argc, char **argv)
{
    const char *cmd = "retry";
    const char *index_text = NULL;
    bool wait = false, json = false;
    proto_req_t *req = proto_req_new(PROTO_REQ_RETRY);
    int rc = CLI_EXIT_USAGE;
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":h", s_retry_opts)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_retry_usage, stdout);
            rc = CLI_EXIT_OK;
            goto out;
        case OPT_FAILED: req->retry_failed = true; break;
        case OPT_CANCELLED: req->retry_cancelled = true; break;
        case OPT_INDEX: index_text = optarg; break;
        case OPT_WAIT: wait = true; break;
        case OPT_JSON: json = true; break;
        default: goto out;
        }
    }
    if (argc - optind != 1) {
        rc = cli_usage_error(cmd, "give exactly one JOB");
        goto out;
    }
    if (cli_parse_job(argv[optind], &req->job) != 0) {
        rc = cli_usage_error(cmd, "'%s' is not a job id", argv[optind]);
        goto out;
    }
    if (index_text && (rc = s_index_list(cmd, index_text, &req->indexes, &req->nindexes)) != 0)
        goto out;
    proto_reply_t *rep = cli_call(cli, req, false, &rc);
    if (!rep)
        goto out;
    if (json)
        printf("{\"job\":%lld,\"tasks\":%lld}\n", (long long) req->job, (long long) rep->count);
    else
        printf("job %lld: %lld task%s put back\n", (long long) req->job, (long long) rep->count,
               rep->count == 1 ? "" : "s");
    fflush(stdout);
    proto_reply_destroy(&rep);
    rc = CLI_EXIT_OK;
    if (wait) {
        cli_wait_opts_t w = { 0, !json, !json, false };
        rc = cli_wait_job(cli, req->job, &w);
    }
out:
    proto_req_destroy(&req);
    return rc;
}

/* ---------------------------------------------------------- hold, release */

static const char s_hold_usage[] =
    "usage: ztask hold JOB | JOB.INDEX | --task ID\n"
    "\n"
    "Holds a job's queued tasks, or one queued task: they are not dispatched until\n"
    "'ztask release'. Tasks already running finish. A held job's tasks queued later\n"
    "(its next batches, retries, tasks taken back from a lost worker) are held too.\n"
    "The hold is stored: it outlasts a master restart. Prints \"held N tasks\".\n"
    "\n"
    "Examples:\n"
    "  ztask hold 7\n"
    "  ztask hold 7.42\n";

static const char s_release_usage[] =
    "usage: ztask release JOB | JOB.INDEX | --task ID\n"
    "\n"
    "Releases what 'ztask hold' held: the job (every held task of it, those held\n"
    "one by one too) or one task; they are dispatched again in priority order.\n"
    "Prints \"released N tasks\".\n"
    "\n"
    "Examples:\n"
    "  ztask release 7\n"
    "  ztask release 7.42\n";

static const struct option s_hold_opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "task", required_argument, NULL, 't' },
    { "json", no_argument, NULL, OPT_JSON },
    { NULL, 0, NULL, 0 }
};

/* Sends req (job or task set) and prints "<verb> N tasks" or, with json,
   {"job":J,"tasks":N} (job 0 for a task given by id). */
static int s_count_call(cli_t *cli, proto_req_t *req, const char *verb, bool json)
{
    int rc = CLI_EXIT_OK;
    proto_reply_t *rep = cli_call(cli, req, false, &rc);
    if (!rep)
        return rc;
    if (json)
        printf("{\"job\":%lld,\"tasks\":%lld}\n", (long long) req->job, (long long) rep->count);
    else
        printf("%s %lld task%s\n", verb, (long long) rep->count, rep->count == 1 ? "" : "s");
    proto_reply_destroy(&rep);
    return CLI_EXIT_OK;
}

static int s_hold_cmd(cli_t *cli, int argc, char **argv, bool hold)
{
    const char *cmd = hold ? "hold" : "release";
    const char *task_text = NULL;
    bool json = false;
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":h", s_hold_opts)) != -1) {
        switch (c) {
        case 'h':
            fputs(hold ? s_hold_usage : s_release_usage, stdout);
            return CLI_EXIT_OK;
        case 't': task_text = optarg; break;
        case OPT_JSON: json = true; break;
        default: return CLI_EXIT_USAGE;
        }
    }
    proto_req_t *req = proto_req_new(hold ? PROTO_REQ_HOLD : PROTO_REQ_RELEASE);
    int operands = argc - optind;
    int rc = -1;
    if (task_text) {
        if (operands != 0)
            rc = cli_usage_error(cmd, "give --task ID or a job, not both");
        else if (parse_int64(task_text, 1, INT64_MAX, &req->task) != 0)
            rc = cli_usage_error(cmd, "--task wants a task id, got '%s'", task_text);
    } else if (operands != 1) {
        rc = cli_usage_error(cmd, "give exactly one JOB or JOB.INDEX");
    } else {
        const char *t = argv[optind];
        int64_t task = 0;
        int bad = strchr(t, '.') ? cli_parse_task_ref(t, &req->job, &req->index, &task)
                                 : cli_parse_job(t, &req->job);
        if (bad != 0)
            rc = cli_usage_error(cmd, "'%s' is not JOB or JOB.INDEX", t);
    }
    if (rc < 0)
        rc = s_count_call(cli, req, hold ? "held" : "released", json);
    proto_req_destroy(&req);
    return rc;
}

int cmd_hold(cli_t *cli, int argc, char **argv)
{
    return s_hold_cmd(cli, argc, argv, true);
}

int cmd_release(cli_t *cli, int argc, char **argv)
{
    return s_hold_cmd(cli, argc, argv, false);
}

/* ------------------------------------------------------- priority, limit */

static const char s_priority_usage[] =
    "usage: ztask priority JOB N [--json]\n"
    "\n"
    "Gives every unfinished task of JOB the priority N (higher runs first; the\n"
    "default is 0, negative numbers are allowed): its queued tasks take their new\n"
    "place in the queue at once. Stored. Prints \"N queued tasks reprioritised\".\n"
    "\n"
    "Example:\n"
    "  ztask priority 7 10\n";

static const char s_limit_usage[] =
    "usage: ztask limit JOB N [--json]\n"
    "\n"
    "At most N tasks of JOB run at once (0: no limit), as 'submit --max-running N'\n"
    "set it. A higher limit starts waiting tasks at once; a lower one lets running\n"
    "tasks finish and starts no more until the job is under it. Stored. Prints\n"
    "\"job J: at most N running\".\n"
    "\n"
    "Examples:\n"
    "  ztask limit 7 50\n"
    "  ztask limit 7 0\n";

/* JOB N for priority (any int32: "-5" is a number, not an option) and
   limit (0..max), and --json anywhere. */
static int s_job_value(cli_t *cli, int argc, char **argv, bool priority)
{
    const char *cmd = priority ? "priority" : "limit";
    bool json = false;
    const char *operand[2];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(priority ? s_priority_usage : s_limit_usage, stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(a, "--json") == 0)
            json = true;
        else if (a[0] == '-' && !(a[1] >= '0' && a[1] <= '9'))
            return cli_usage_error(cmd, "unknown option '%s'", a);
        else if (n == 2)
            return cli_usage_error(cmd, "give JOB and N, not '%s' too", a);
        else
            operand[n++] = a;
    }
    if (n != 2)
        return cli_usage_error(cmd, "give JOB and N");
    int64_t job, v;
    if (cli_parse_job(operand[0], &job) != 0)
        return cli_usage_error(cmd, "'%s' is not a job id", operand[0]);
    const char *text = operand[1];
    if (priority ? parse_int64(text, INT32_MIN, INT32_MAX, &v) != 0
                 : parse_int64(text, 0, PROTO_MAX_RUNNING_LIMIT, &v) != 0)
        return priority ? cli_usage_error(cmd, "N must be an integer, got '%s'", text)
                        : cli_usage_error(cmd, "N must be a number of tasks in 0..%d, got '%s'",
                                          PROTO_MAX_RUNNING_LIMIT, text);
    proto_req_t *req = proto_req_new(priority ? PROTO_REQ_PRIORITY : PROTO_REQ_LIMIT);
    req->job = job;
    if (priority)
        req->priority = (int32_t) v;
    else
        req->max_running = (int) v;
    int rc = CLI_EXIT_OK;
    proto_reply_t *rep = cli_call(cli, req, false, &rc);
    proto_req_destroy(&req);
    if (!rep)
        return rc;
    if (json)
        printf("{\"job\":%lld,\"%s\":%lld,\"tasks\":%lld}\n", (long long) job,
               priority ? "priority" : "max_running", (long long) v, (long long) rep->count);
    else if (priority)
        printf("job %lld: %lld queued task%s now at priority %lld\n", (long long) job,
               (long long) rep->count, rep->count == 1 ? "" : "s", (long long) v);
    else if (v)
        printf("job %lld: at most %lld running (%lld running now)\n", (long long) job,
               (long long) v, (long long) rep->count);
    else
        printf("job %lld: no limit\n", (long long) job);
    proto_reply_destroy(&rep);
    return CLI_EXIT_OK;
}

int cmd_priority(cli_t *cli, int argc, char **argv)
{
    return s_job_value(cli, argc, argv, true);
}

int cmd_limit(cli_t *cli, int argc, char **argv)
{
    return s_job_value(cli, argc, argv, false);
}
