/*  Read-only reports: ztask status, jobs, results, workers, stats.
    Human output is a table or a few lines; --json prints one record per
    line, encoded by proto/ (the same records the master sends). */
#include "../common/clock.h"
#include "../common/util.h"
#include "cli.h"
#include "fmt.h"
#include "progress.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Without a terminal, a results line is cut here (task output can be a
   megabyte on one line); $COLUMNS wins when set. */
#define PIPE_WIDTH 160
/* Rows per results request; the protocol allows up to 10000. */
#define RESULTS_PAGE 1000

static const struct option s_json_only[] = {
    { "help", no_argument, NULL, 'h' },
    { "json", no_argument, NULL, 'j' },
    { NULL, 0, NULL, 0 }
};

static const struct option s_list_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "json", no_argument, NULL, 'j' },
    { "all", no_argument, NULL, 'a' },
    { NULL, 0, NULL, 0 }
};

/* Parses "[--json] [--help]", and "[--all]" when all is not NULL, plus up
   to max_operands operands. Returns -1 to go on, or an exit code. */
static int s_opts(const char *cmd, const char *usage, int argc, char **argv, bool *json,
                  bool *all, int max_operands)
{
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":h", all ? s_list_longopts : s_json_only)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return CLI_EXIT_OK;
        }
        if (c == 'j')
            *json = true;
        else if (c == 'a' && all)
            *all = true;
        else
            return CLI_EXIT_USAGE;
    }
    if (argc - optind > max_operands)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind + max_operands]);
    return -1;
}

/* s_opts without --all. */
static int s_simple_opts(const char *cmd, const char *usage, int argc, char **argv, bool *json,
                         int max_operands)
{
    return s_opts(cmd, usage, argc, argv, json, NULL, max_operands);
}

/* Who a job record says owns it, for people: the name the master lists
   its key under, else the key's first 8 characters; "-" for nobody. */
static const char *s_owner(const proto_job_t *j, char *buf, size_t n)
{
    if (j->owner_name)
        fmt_cell(buf, n, j->owner_name, 16);
    else if (j->owner)
        snprintf(buf, n, "%.8s...", j->owner);
    else
        snprintf(buf, n, "-");
    return buf;
}

static void s_print_json(char *text)
{
    if (text)
        printf("%s\n", text);
    free(text);
}

static int s_ask(cli_t *cli, proto_req_type_t type, int64_t job, bool all, proto_reply_t **rep)
{
    proto_req_t *req = proto_req_new(type);
    req->job = job;
    req->all = all;
    int rc = CLI_EXIT_OK;
    *rep = cli_call(cli, req, true, &rc);
    proto_req_destroy(&req);
    return rc;
}

/* ---------------------------------------------------------------- status */

static const char s_status_usage[] =
    "usage: ztask status [JOB] [--all] [--json]\n"
    "\n"
    "Shows a job's counters, or with no JOB, those of each of your jobs.\n"
    "  job 7 \"nightly\": running, 1000 tasks: 523 done, 2 failed, 0 cancelled,\n"
    "    467 queued, 8 running\n"
    "The state is open (batches still arriving), waiting (for the jobs it depends\n"
    "on: submit --after), queued, running, done, failed, dep_failed (tasks not run\n"
    "because a job they depend on did not succeed; counted as \"N dep_failed\") or\n"
    "cancelled. A job of another client (an admin sees them) says whose it is.\n"
    "\n"
    "Options:\n"
    "  --all    every client's jobs, not only yours (an admin key; without keys\n"
    "           everyone sees every job)\n"
    "  --json   one job record per line (fields: docs/protocol.md)\n"
    "\n"
    "Examples:\n"
    "  ztask status 7\n"
    "  ztask status --json | jq .failed\n";

static void s_print_job_status(const cli_t *cli, const proto_job_t *j)
{
    char name[300] = "", owner[64] = "", who[40];
    if (j->name) {
        char cell[256];
        fmt_cell(cell, sizeof cell, j->name, 60);
        snprintf(name, sizeof name, " \"%s\"", cell);
    }
    /* Only another client's job says whose it is: ours is the usual case. */
    if (j->owner && strcmp(j->owner, cli->public_key) != 0)
        snprintf(owner, sizeof owner, " (owner %s)", s_owner(j, who, sizeof who));
    char steer[64] = "", dep[48] = "";
    if (j->max_running)
        snprintf(steer, sizeof steer, " (at most %d running)", j->max_running);
    if (j->dep_failed > 0)
        snprintf(dep, sizeof dep, ", %lld dep_failed", (long long) j->dep_failed);
    printf("job %lld%s%s: %s%s, %lld task%s: %lld done, %lld failed, %lld cancelled%s, %lld "
           "queued, %lld running%s\n",
           (long long) j->id, name, owner, proto_job_state_name(j), j->held ? ", held" : "",
           (long long) j->total, j->total == 1 ? "" : "s", (long long) j->done,
           (long long) j->failed, (long long) j->cancelled, dep, (long long) j->queued,
           (long long) j->running, steer);
}

int cmd_status(cli_t *cli, int argc, char **argv)
{
    bool json = false, all = false;
    int rc = s_opts("status", s_status_usage, argc, argv, &json, &all, 1);
    if (rc >= 0)
        return rc;
    int64_t job = 0;
    if (optind < argc && cli_parse_job(argv[optind], &job) != 0)
        return cli_usage_error("status", "'%s' is not a job id", argv[optind]);
    proto_reply_t *rep;
    if ((rc = s_ask(cli, PROTO_REQ_STATUS, job, all, &rep)) != CLI_EXIT_OK)
        return rc;
    for (int i = 0; i < rep->njobs; i++) {
        if (json)
            s_print_json(proto_job_encode(&rep->jobs[i]));
        else
            s_print_job_status(cli, &rep->jobs[i]);
    }
    if (!json && rep->njobs == 0)
        printf("no jobs\n");
    proto_reply_destroy(&rep);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------ jobs */

static const char s_jobs_usage[] =
    "usage: ztask jobs [--state S[,S...]] [--name GLOB] [--limit N] [--all] [--json]\n"
    "\n"
    "Lists your jobs (with CURVE keys: those your key submitted), newest first, one\n"
    "line each:\n"
    "  JOB  NAME  STATE  TOTAL  DONE  FAILED  CANCELLED  QUEUED  RUNNING  CREATED\n"
    "STATE is open (batches still arriving), waiting (for the jobs it depends on),\n"
    "queued (nothing started yet), running, then done, failed (some task failed),\n"
    "dep_failed (some not run: a job they depend on did not succeed; FAILED counts\n"
    "them too) or cancelled.\n"
    "\n"
    "Options:\n"
    "  --state S      only jobs in state S (open, queued, running, done, failed,\n"
    "                 cancelled; several: running,queued)\n"
    "  --name GLOB    only jobs whose name matches GLOB (shell pattern: 'nightly-*')\n"
    "  --limit N      at most N jobs (the newest)\n"
    "  --all          every client's jobs, with an OWNER column: the name the master\n"
    "                 lists the key under (an admin key; without keys everyone sees\n"
    "                 every job)\n"
    "  --json         one job record per line (fields: docs/protocol.md; \"owner\" is\n"
    "                 the submitting key)\n"
    "\n"
    "Examples:\n"
    "  ztask jobs --state running\n"
    "  ztask jobs --name 'nightly-*' --state failed --limit 5\n";

static const struct option s_jobs_opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "json", no_argument, NULL, 'j' },
    { "all", no_argument, NULL, 'a' },
    { "state", required_argument, NULL, 's' },
    { "name", required_argument, NULL, 'n' },
    { "limit", required_argument, NULL, 'l' },
    { NULL, 0, NULL, 0 }
};

typedef struct {
    bool json, all;
    const char *states;      /* comma-separated state names, NULL = any */
    const char *name;        /* glob, NULL = any */
    int64_t limit;           /* 0 = all */
} jobs_opts_t;

/* Whether state is one of the comma-separated names in list. */
static bool s_state_listed(const char *list, const char *state)
{
    size_t n = strlen(state);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t) (comma - p) : strlen(p);
        if (len == n && strncmp(p, state, n) == 0)
            return true;
        p += len + (comma != NULL);
    }
    return false;
}

static int s_jobs_parse(int argc, char **argv, jobs_opts_t *o)
{
    const char *cmd = "jobs";
    static const char *const states[] = { "open", "queued", "running", "done", "failed",
                                          "cancelled" };
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":h", s_jobs_opts)) != -1) {
        switch (c) {
        case 'h': fputs(s_jobs_usage, stdout); return CLI_EXIT_OK;
        case 'j': o->json = true; break;
        case 'a': o->all = true; break;
        case 'n': o->name = optarg; break;
        case 's': o->states = optarg; break;
        case 'l':
            if (parse_int64(optarg, 1, INT64_MAX, &o->limit) != 0)
                return cli_usage_error(cmd, "--limit wants a number >= 1, got '%s'", optarg);
            break;
        default: return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind > 0)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    /* Every listed state must be one a job can be in: a typo would list nothing. */
    for (const char *p = o->states; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t) (comma - p) : strlen(p);
        bool known = false;
        for (size_t i = 0; i < sizeof states / sizeof *states && !known; i++)
            known = strlen(states[i]) == len && strncmp(states[i], p, len) == 0;
        if (!known)
            return cli_usage_error(cmd, "--state: '%.*s' is not a job state (open, queued, "
                                        "running, done, failed, cancelled)",
                                   (int) len, p);
        p += len + (comma != NULL);
    }
    return -1;
}

int cmd_jobs(cli_t *cli, int argc, char **argv)
{
    jobs_opts_t o = { 0 };
    int rc = s_jobs_parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    bool json = o.json, all = o.all;
    proto_reply_t *rep;
    if ((rc = s_ask(cli, PROTO_REQ_JOBS, 0, all, &rep)) != CLI_EXIT_OK)
        return rc;
    if (!json)
        printf("%-6s %-20s %s%-10s %9s %9s %8s %9s %8s %8s  %s\n", "JOB", "NAME",
               all ? "OWNER            " : "", "STATE", "TOTAL", "DONE", "FAILED", "CANCELLED",
               "QUEUED", "RUNNING", "CREATED");
    double now = clock_wall();
    int64_t shown = 0;
    /* The master lists them oldest first: newest first here. */
    for (int i = rep->njobs - 1; i >= 0 && (!o.limit || shown < o.limit); i--) {
        const proto_job_t *j = &rep->jobs[i];
        if ((o.states && !s_state_listed(o.states, proto_job_state_name(j)))
            || (o.name && fnmatch(o.name, j->name ? j->name : "", 0) != 0))
            continue;
        shown++;
        if (json) {
            s_print_json(proto_job_encode(j));
            continue;
        }
        char name[128], ago[32], who[64] = "", cell[40];
        fmt_cell(name, sizeof name, j->name ? j->name : "-", 20);
        fmt_ago(ago, sizeof ago, now - j->created);
        if (all)
            snprintf(who, sizeof who, "%-16s ", s_owner(j, cell, sizeof cell));
        printf("%-6lld %-20s %s%-10s %9lld %9lld %8lld %9lld %8lld %8lld  %s\n", (long long) j->id,
               name, who, proto_job_state_name(j), (long long) j->total, (long long) j->done,
               (long long) (j->failed + j->dep_failed), (long long) j->cancelled,
               (long long) j->queued,
               (long long) j->running, ago);
    }
    proto_reply_destroy(&rep);
    return CLI_EXIT_OK;
}

/* --------------------------------------------------------------- results */

static const char s_results_usage[] =
    "usage: ztask results JOB [--json] [--failed] [--limit N]\n"
    "\n"
    "Lists the tasks of JOB in task order:\n"
    "  TASK  INDEX  STATUS  EXIT  ATTEMPTS  WORKER  OUTPUT\n"
    "OUTPUT is the fn result, or the first line of stdout; for a task that did not\n"
    "succeed, the first line of stderr of a command that exited non-zero, else the\n"
    "error (a signal, a timeout, a function's error, a command that could not\n"
    "start), cut to the terminal width. EXIT is the exit code, \"sig9\" for a\n"
    "signal, \"time\" for a timeout. Full output: ztask logs JOB.INDEX.\n"
    "\n"
    "Options:\n"
    "  --failed    only tasks that did not succeed: failed, cancelled or dep_failed\n"
    "  --limit N   at most N tasks\n"
    "  --json      one task record per line, with the full result (fields:\n"
    "              docs/protocol.md)\n"
    "\n"
    "Examples:\n"
    "  ztask results 7 --failed\n"
    "  ztask results 7 --json | jq -r 'select(.status==\"done\") | .stdout'\n";

static void s_exit_cell(char *buf, size_t size, const proto_result_t *r)
{
    if (!r)
        snprintf(buf, size, "-");
    else if (r->timed_out)
        snprintf(buf, size, "time");
    else if (r->signal > 0)
        snprintf(buf, size, "sig%d", r->signal);
    else if (r->has_exit_code)
        snprintf(buf, size, "%d", r->exit_code);
    else
        snprintf(buf, size, "-");
}

static void s_output_cell(char *buf, size_t size, const proto_task_info_t *t, int cols)
{
    const proto_result_t *r = t->result;
    buf[0] = '\0';
    if (!r)
        return;
    if (t->status == PROTO_ST_DONE) {
        fmt_first_line(buf, size, r->result_json ? r->result_json : r->stdout_data, cols);
        return;
    }
    /* A command that ran and exited non-zero: its error only repeats the
       EXIT column ("exited with status 2"), so its own words come first
       (proto_result_reason, which the dashboard shows too). */
    fmt_first_line(buf, size, proto_result_reason(r), cols);
}

static void s_print_task_row(const proto_task_info_t *t, int width)
{
    char index[24], exitc[16], worker[64], out[4096], head[256];
    if (t->index >= 0)
        snprintf(index, sizeof index, "%lld", (long long) t->index);
    else
        snprintf(index, sizeof index, "-");
    s_exit_cell(exitc, sizeof exitc, t->result);
    fmt_cell(worker, sizeof worker, t->worker, 14);
    int n = snprintf(head, sizeof head, "%-10lld %-8s %-9s %-5s %8d  %-14s ", (long long) t->task,
                     index, proto_state_name(t->status), exitc, t->attempts, worker);
    int cols = width - n - 1;
    s_output_cell(out, sizeof out, t, cols > 10 ? cols : 10);
    printf("%s%s\n", head, out);
}

int cli_print_results(cli_t *cli, int64_t job, const cli_results_opts_t *opts)
{
    int width = fmt_term_width(STDOUT_FILENO);
    if (width == 0) {
        const char *env = getenv("COLUMNS");
        int64_t v;
        width = env && parse_int64(env, 20, 100000, &v) == 0 ? (int) v : PIPE_WIDTH;
    }
    bool header = !opts->json;
    int64_t after = 0;
    int64_t printed = 0;
    /* Bounded by the cursor: every page moves it forward or ends. */
    for (;;) {
        int64_t want = RESULTS_PAGE;
        if (opts->limit > 0 && opts->limit - printed < want)
            want = opts->limit - printed;
        if (want <= 0)
            break;
        proto_req_t *req = proto_req_new(PROTO_REQ_RESULTS);
        req->job = job;
        req->after = after;
        req->limit = (int) want;
        req->failed_only = opts->failed_only;
        int rc = CLI_EXIT_OK;
        proto_reply_t *rep = cli_call(cli, req, true, &rc);
        proto_req_destroy(&req);
        if (!rep)
            return rc;
        if (header) { /* only once the job is known to exist */
            printf("%-10s %-8s %-9s %-5s %8s  %-14s %s\n", "TASK", "INDEX", "STATUS", "EXIT",
                   "ATTEMPTS", "WORKER", "OUTPUT");
            header = false;
        }
        for (int i = 0; i < rep->ntasks && (opts->limit == 0 || printed < opts->limit); i++) {
            if (opts->json)
                s_print_json(proto_task_info_encode(&rep->tasks[i]));
            else
                s_print_task_row(&rep->tasks[i], width);
            printed++;
        }
        int64_t next = rep->next_after;
        if (rep->ntasks > 0 && next < 0)
            next = rep->tasks[rep->ntasks - 1].task;
        bool more = rep->next_after >= 0 && rep->ntasks > 0 && next > after;
        proto_reply_destroy(&rep);
        if (!more)
            break;
        after = next;
        if (cli_interrupted())
            return CLI_EXIT_INTERRUPTED;
    }
    fflush(stdout);
    return CLI_EXIT_OK;
}

static const struct option s_results_opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "json", no_argument, NULL, 'j' },
    { "failed", no_argument, NULL, 'f' },
    { "limit", required_argument, NULL, 'n' },
    { NULL, 0, NULL, 0 }
};

int cmd_results(cli_t *cli, int argc, char **argv)
{
    const char *cmd = "results";
    cli_results_opts_t o = { false, false, 0 };
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":hn:", s_results_opts)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_results_usage, stdout);
            return CLI_EXIT_OK;
        case 'j':
            o.json = true;
            break;
        case 'f':
            o.failed_only = true;
            break;
        case 'n':
            if (parse_int64(optarg, 1, INT64_MAX, &o.limit) != 0)
                return cli_usage_error(cmd, "--limit wants a number >= 1, got '%s'", optarg);
            break;
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (argc - optind != 1)
        return cli_usage_error(cmd, argc - optind == 0 ? "which job? give its id"
                                                       : "give exactly one job id");
    int64_t job;
    if (cli_parse_job(argv[optind], &job) != 0)
        return cli_usage_error(cmd, "'%s' is not a job id", argv[optind]);
    return cli_print_results(cli, job, &o);
}

/* --------------------------------------------------------------- workers */

static const char s_workers_usage[] =
    "usage: ztask workers [--all] [--json]\n"
    "\n"
    "Lists the workers the master knows:\n"
    "  ID  HOST  PID  THREADS  RUNNING  DONE  FAILED  LAST-HEARTBEAT  STATE  LABELS\n"
    "  RESOURCES\n"
    "STATE is alive, draining (finishing its tasks, taking no new ones), left (it\n"
    "said goodbye: drained or stopped) or dead (missed its heartbeats; its tasks\n"
    "went back to the queue). LAST-HEARTBEAT is 'none yet' for a worker that has\n"
    "registered but not yet sent one. LABELS are the worker's --label values\n"
    "(tasks submitted with --require L run only on workers that have L), or '-'.\n"
    "Gone workers (left or dead) are listed for 5 minutes after they went; the\n"
    "master forgets them after an hour.\n"
    "A worker inside a Slurm job (ztask alloc) ends its line with slurm-job=ID\n"
    "and, when it has an end, time-left=T.\n"
    "RESOURCES, on a line of its own, is what tasks use of what the worker\n"
    "declared (--resources): \"cpus 3/16  gpus 0.5/2  mem 1G/64G\".\n"
    "\n"
    "Options:\n"
    "  --all    also the workers gone more than 5 minutes ago (as long as the\n"
    "           master remembers them)\n"
    "  --json   one worker record per line (fields: docs/protocol.md)\n";

/* "cpus 3/16  gpus 0.5/2  mem 1G/64G": in use of declared, per resource. */
static void s_resources_line(const proto_worker_info_t *w, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < w->resources->n && used < len; i++) {
        const char *name = w->resources->name[i];
        int64_t in_use = w->used ? res_get(w->used, name) : 0;
        char a[32], b[32];
        if (strcmp(name, "mem") == 0) {
            fmt_bytes(a, sizeof a, in_use);
            fmt_bytes(b, sizeof b, w->resources->amount[i]);
        } else {
            res_amount_format(name, in_use, a, sizeof a);
            res_amount_format(name, w->resources->amount[i], b, sizeof b);
        }
        used += (size_t) snprintf(buf + used, len - used, "%s%s %s/%s", i ? "  " : "", name, a, b);
    }
}

/* Gone workers are listed this long after they went (then only with
   --all): a crash stays visible, a day of restarts does not pile up. */
#define WORKERS_GONE_SHOWN_S 300.0

static const char *s_worker_state(const proto_worker_info_t *w)
{
    if (w->alive)
        return w->draining ? "draining" : "alive";
    return w->left ? "left" : "dead";
}

int cmd_workers(cli_t *cli, int argc, char **argv)
{
    bool json = false, all = false;
    int rc = s_opts("workers", s_workers_usage, argc, argv, &json, &all, 0);
    if (rc >= 0)
        return rc;
    proto_reply_t *rep;
    if ((rc = s_ask(cli, PROTO_REQ_WORKERS, 0, false, &rep)) != CLI_EXIT_OK)
        return rc;
    if (!json)
        printf("%-14s %-20s %7s %7s %7s %9s %7s  %-14s %-8s %s\n", "ID", "HOST", "PID",
               "THREADS", "RUNNING", "DONE", "FAILED", "LAST-HEARTBEAT", "STATE", "LABELS");
    double now = clock_wall();
    int shown = 0;
    for (int i = 0; i < rep->nworkers; i++) {
        const proto_worker_info_t *w = &rep->workers[i];
        if (!all && !w->alive && w->gone > 0 && now - w->gone > WORKERS_GONE_SHOWN_S)
            continue;
        shown++;
        if (json) {
            s_print_json(proto_worker_info_encode(w));
            continue;
        }
        char id[64], host[96], ago[32];
        fmt_cell(id, sizeof id, w->id, 14);
        fmt_cell(host, sizeof host, w->host, 20);
        if (w->last_heartbeat > 0)
            fmt_ago(ago, sizeof ago, now - w->last_heartbeat);
        else
            snprintf(ago, sizeof ago, "%s", w->alive ? "none yet" : "-");
        /* Labels come from the worker: joined, then made printable. */
        char joined[512] = "", labels[512];
        size_t used = 0;
        for (int j = 0; j < w->nlabels && used + 2 < sizeof joined; j++) {
            int n = snprintf(joined + used, sizeof joined - used, "%s%s", j ? "," : "",
                             w->labels[j]);
            if (n < 0)
                break;
            used += (size_t) n < sizeof joined - used ? (size_t) n : sizeof joined - used - 1;
        }
        fmt_cell(labels, sizeof labels, w->nlabels ? joined : "-", 60);
        printf("%-14s %-20s %7lld %7d %7d %9lld %7lld  %-14s %-8s %s", id, host,
               (long long) w->pid, w->threads, w->running, (long long) w->done,
               (long long) w->failed, ago, s_worker_state(w), labels);
        /* A worker in a cluster allocation (ztask alloc): its job, time left. */
        if (w->slurm_job) {
            char job[80];
            fmt_cell(job, sizeof job, w->slurm_job, 20);
            printf("  slurm-job=%s", job);
        }
        if (w->ends_at > 0 && w->alive) {
            char left[32];
            if (w->ends_at > now)
                progress_duration(left, sizeof left, w->ends_at - now);
            else
                snprintf(left, sizeof left, "0s");
            printf(" time-left=%s", left);
        }
        printf("\n");
        if (w->resources) {
            char line[1024];
            s_resources_line(w, line, sizeof line);
            printf("  %s\n", line);
        }
    }
    if (!json && shown == 0)
        printf(rep->nworkers ? "(no workers; --all lists those gone a while ago)\n"
                             : "(no workers)\n");
    proto_reply_destroy(&rep);
    return CLI_EXIT_OK;
}

/* ----------------------------------------------------------------- stats */

static const char s_stats_usage[] =
    "usage: ztask stats [--json]\n"
    "\n"
    "Shows the master's totals: jobs, tasks by state, live workers and threads,\n"
    "duplicate results ignored, the recent result rate, uptime, database, and\n"
    "(\"waiting for\") the kinds of worker that queued tasks need and no live\n"
    "worker is: all are --no-exec, or none has a label that tasks --require.\n"
    "\n"
    "Options:\n"
    "  --json   one stats record (fields: docs/protocol.md)\n";

int cmd_stats(cli_t *cli, int argc, char **argv)
{
    bool json = false;
    int rc = s_simple_opts("stats", s_stats_usage, argc, argv, &json, 0);
    if (rc >= 0)
        return rc;
    proto_reply_t *rep;
    if ((rc = s_ask(cli, PROTO_REQ_STATS, 0, false, &rep)) != CLI_EXIT_OK)
        return rc;
    const proto_stats_t *s = &rep->stats;
    if (json) {
        s_print_json(proto_stats_encode(s));
    } else {
        char up[32];
        progress_duration(up, sizeof up, s->uptime);
        printf("jobs            %lld\n", (long long) s->jobs);
        printf("tasks queued    %lld\n", (long long) s->tasks_queued);
        printf("tasks running   %lld\n", (long long) s->tasks_running);
        printf("tasks done      %lld\n", (long long) s->tasks_done);
        printf("tasks failed    %lld\n", (long long) s->tasks_failed);
        if (s->tasks_dep_failed)
            printf("tasks dep_failed %lld\n", (long long) s->tasks_dep_failed);
        printf("workers alive   %lld (%lld threads)\n", (long long) s->workers_alive,
               (long long) s->threads_total);
        printf("duplicates      %lld\n", (long long) s->duplicates);
        printf("results/s (1m)  %lld\n", (long long) s->results_per_s_1m);
        printf("uptime          %s\n", up);
        printf("database        %s\n", s->db_path ? s->db_path : "-");
        /* Tasks that wait for a kind of worker no live one is. */
        for (int i = 0; i < s->nunrunnable; i++) {
            char need[256];
            fmt_need(need, sizeof need, s->unrunnable[i]);
            printf("%s%s\n", i ? "                " : "waiting for     ", need);
        }
    }
    proto_reply_destroy(&rep);
    return CLI_EXIT_OK;
}
