/*  Commands that steer a job in place: ztask retry (finished tasks run
    again in the same job). Each request is sent once, never resent: a
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
