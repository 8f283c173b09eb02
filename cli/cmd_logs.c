/*  ztask logs: a task's stdout and stderr, once or followed while the
    task runs. */
#include "../common/util.h"
#include "cli.h"
#include "fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char s_usage[] =
    "usage: ztask logs TASK [-f] [--raw]\n"
    "\n"
    "Prints a task's standard output to stdout and its standard error to stderr.\n"
    "Control characters a terminal would obey (ESC, \\r, backspace, ...; not \\n or\n"
    "\\t) are shown as \\xHH (\\u00HH for U+0080..U+009F), so a task cannot redraw\n"
    "or reprogram your terminal; --raw prints the bytes as the task wrote them.\n"
    "TASK is JOB.INDEX (the task with that index in job JOB: its array index, its\n"
    "--each line number, or 0 for a single-task job) or a global task id (a plain\n"
    "number, as in the TASK column of 'ztask results').\n"
    "\n"
    "Options:\n"
    "  -f, --follow   keep printing new output while the task runs; stop when it\n"
    "                 has finished\n"
    "      --raw      no escaping: the output as the task wrote it (made valid UTF-8)\n"
    "\n"
    "Examples:\n"
    "  ztask logs 7.42\n"
    "  ztask logs -f 7.0\n"
    "  ztask logs 12345 2>/dev/null | less\n";

/* How often -f asks for new output: live output reaches the master in
   chunks anyway, so faster polling would only add load. */
#define FOLLOW_MS 200

static const struct option s_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "follow", no_argument, NULL, 'f' },
    { "raw", no_argument, NULL, 'r' },
    { NULL, 0, NULL, 0 }
};

static bool s_terminal(proto_state_t st)
{
    return st == PROTO_ST_DONE || st == PROTO_ST_FAILED || st == PROTO_ST_CANCELLED;
}

static void s_write(FILE *f, const char *chunk, bool raw)
{
    if (chunk && *chunk) {
        if (raw)
            fputs(chunk, f);
        else
            fmt_write_escaped(f, chunk);
        fflush(f);
    }
}

int cmd_logs(cli_t *cli, int argc, char **argv)
{
    const char *cmd = "logs";
    bool follow = false, raw = false;
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":hf", s_longopts)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_usage, stdout);
            return CLI_EXIT_OK;
        case 'f':
            follow = true;
            break;
        case 'r':
            raw = true;
            break;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(cmd, argc - optind == 0 ? "which task? give JOB.INDEX or a task id"
                                                       : "give exactly one task");
    int64_t job, index, task;
    if (cli_parse_task_ref(argv[optind], &job, &index, &task) != 0)
        return cli_usage_error(cmd, "'%s' is not JOB.INDEX or a task id", argv[optind]);

    int64_t out_off = 0, err_off = 0;
    for (;;) {
        proto_req_t *req = proto_req_new(PROTO_REQ_LOGS);
        req->job = job;
        req->index = index;
        req->task = task;
        req->out_offset = out_off;
        req->err_offset = err_off;
        int rc = CLI_EXIT_OK;
        proto_reply_t *rep = cli_call(cli, req, true, &rc);
        proto_req_destroy(&req);
        if (!rep)
            return rc;
        s_write(stdout, rep->out_chunk, raw);
        s_write(stderr, rep->err_chunk, raw);
        bool progressed = rep->out_offset > out_off || rep->err_offset > err_off;
        if (rep->out_offset > out_off)
            out_off = rep->out_offset;
        if (rep->err_offset > err_off)
            err_off = rep->err_offset;
        bool finished = s_terminal(rep->task_state);
        proto_reply_destroy(&rep);
        /* Without -f: read until nothing new (output may come in pages).
           With -f: until the task has finished and nothing new came. */
        if (!progressed && (!follow || finished))
            break;
        if (!progressed && cli_sleep_ms(FOLLOW_MS) != 0)
            return CLI_EXIT_INTERRUPTED;
    }
    return CLI_EXIT_OK;
}
