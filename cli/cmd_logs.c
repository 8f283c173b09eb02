/*  ztask logs: a task's stdout and stderr, once or followed while the
    task runs. */
#include "../common/util.h"
#include "cli.h"
#include "fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char s_usage[] =
    "usage: ztask logs JOB.INDEX [-f] [--raw]\n"
    "       ztask logs --task ID [-f] [--raw]\n"
    "\n"
    "Prints a task's standard output to stdout and its standard error to stderr;\n"
    "when the task has finished with an error (a function that failed, a command\n"
    "that could not start, a timeout), that error is printed last on stderr as\n"
    "\"ztask: task 7.3 failed: ...\".\n"
    "Control characters a terminal would obey (ESC, \\r, backspace, ...; not \\n or\n"
    "\\t) are shown as \\xHH (\\u00HH for U+0080..U+009F), so a task cannot redraw\n"
    "or reprogram your terminal; --raw prints the bytes as the task wrote them.\n"
    "JOB.INDEX is the task with that index in job JOB: its array index, its --each\n"
    "line number, or 0 for a single-task job. --task ID names a task by its global\n"
    "id (the TASK column of 'ztask results'). A bare number is refused: it could\n"
    "be either.\n"
    "\n"
    "Options:\n"
    "  --task ID      the task with global id ID\n"
    "  -f, --follow   keep printing new output while the task runs; stop when it\n"
    "                 has finished\n"
    "      --raw      no escaping: the output as the task wrote it (made valid UTF-8)\n"
    "\n"
    "Examples:\n"
    "  ztask logs 7.42\n"
    "  ztask logs -f 7.0\n"
    "  ztask logs --task 12345 2>/dev/null | less\n";

/* How often -f asks for new output: live output reaches the master in
   chunks anyway, so faster polling would only add load. */
#define FOLLOW_MS 200

static const struct option s_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "follow", no_argument, NULL, 'f' },
    { "task", required_argument, NULL, 't' },
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

/* The task named by the operand (JOB.INDEX) or by --task; 0, or exit 2
   after saying why (a bare number is refused: job or task id?). */
static int s_task_ref(const char *cmd, const char *task_text, int operands, char **ops,
                      int64_t *job, int64_t *index, int64_t *task)
{
    if (task_text) {
        if (operands != 0)
            return cli_usage_error(cmd, "give JOB.INDEX or --task ID, not both");
        *job = 0;
        *index = -1;
        if (parse_int64(task_text, 1, INT64_MAX, task) != 0)
            return cli_usage_error(cmd, "--task wants a task id, got '%s'", task_text);
        return 0;
    }
    if (operands != 1)
        return cli_usage_error(cmd, operands == 0 ? "which task? give JOB.INDEX or --task ID"
                                                  : "give exactly one task");
    const char *t = ops[0];
    int64_t n;
    if (!strchr(t, '.') && parse_int64(t, 1, INT64_MAX, &n) == 0)
        return cli_usage_error(cmd,
                               "'%s' is ambiguous: write %s.0 for task 0 of job %s, or --task "
                               "%s for the task with id %s",
                               t, t, t, t, t);
    if (!strchr(t, '.') || cli_parse_task_ref(t, job, index, task) != 0)
        return cli_usage_error(cmd, "'%s' is not JOB.INDEX (e.g. 7.0)", t);
    return 0;
}

int cmd_logs(cli_t *cli, int argc, char **argv)
{
    const char *cmd = "logs";
    bool follow = false, raw = false;
    const char *task_text = NULL;
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
        case 't':
            task_text = optarg;
            break;
        case 'r':
            raw = true;
            break;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    int64_t job, index, task;
    if (s_task_ref(cmd, task_text, argc - optind, argv + optind, &job, &index, &task) != 0)
        return CLI_EXIT_USAGE;

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
        /* Without -f: read until nothing new (output may come in pages).
           With -f: until the task has finished and nothing new came. */
        if (!progressed && (!follow || finished)) {
            if (finished && rep->task_state != PROTO_ST_DONE && rep->task_error) {
                /* The error comes from the worker (a plugin's words): made
                   harmless like the output. */
                fflush(stdout);
                if (task)
                    fprintf(stderr, "ztask: task %lld %s: ", (long long) task,
                            proto_state_name(rep->task_state));
                else
                    fprintf(stderr, "ztask: task %lld.%lld %s: ", (long long) job,
                            (long long) index, proto_state_name(rep->task_state));
                s_write(stderr, rep->task_error, raw);
                fputs("\n", stderr);
            }
            proto_reply_destroy(&rep);
            break;
        }
        proto_reply_destroy(&rep);
        if (!progressed && cli_sleep_ms(FOLLOW_MS) != 0)
            return CLI_EXIT_INTERRUPTED;
    }
    return CLI_EXIT_OK;
}
