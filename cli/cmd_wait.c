/*  ztask wait: asks for a job's status until it is finished, drawing
    progress, and turns the outcome into the exit code. Each status
    request is held by the master until the job finishes or POLL_MS pass,
    so the end is seen the moment it is committed, not up to a poll
    interval later. */
#include "../common/clock.h"
#include "../common/util.h"
#include "cli.h"
#include "fmt.h"
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char s_usage[] =
    "usage: ztask wait JOB [--timeout SEC] [--json] [--quiet]\n"
    "\n"
    "Waits until every task of JOB has finished. On a terminal, a progress bar is\n"
    "drawn on stderr:\n"
    "  [=========>          ] 523/1000  failed 2  312/s  ETA 0:02\n"
    "otherwise a line every 5 s (\"job 7: 523/1000 done, 2 failed, 312 tasks/s\",\n"
    "where 523 counts finished tasks). At the end it prints\n"
    "  job 7: 1000 tasks, 998 done, 2 failed (3.2 s)\n"
    "When the job has had tasks queued, none running and no progress for 3 s, it\n"
    "says once what they may be waiting for (no worker connected, or none that\n"
    "runs commands or has a label they --require; see ztask stats).\n"
    "\n"
    "Options:\n"
    "  --timeout SEC   give up after SEC seconds (exit 5); the job keeps running\n"
    "  --json          print the final job record as one JSON object instead\n"
    "  --quiet         no progress and no summary; only the exit code\n"
    "\n"
    "Examples:\n"
    "  ztask wait 7\n"
    "  ztask wait 7 --timeout 600 || echo \"not finished or some tasks failed\"\n"
    "\n"
    "Exit: 0 every task done, 1 some failed, were cancelled or dep_failed (not run:\n"
    "a job they depend on did not succeed), 3 master\n"
    "unreachable (also: never reached within --timeout), 4 refused (no such job;\n"
    "busy until --timeout), 5 --timeout expired.\n";

/* The last status request is held by the master until --timeout; its
   answer (the counts said at the timeout, or the end that came just then)
   is waited for this much longer, and no more: every request of a wait
   ends by --timeout plus this, whatever the request timeout. */
#define WAIT_GRACE_MS 500
/* How long the master holds each status request, i.e. how often the
   progress moves. The end of the job does not wait for it; a hundred
   waiting shells still cost the master 500 tiny queries a second at most. */
#define POLL_MS 200
/* The plain progress line, when stderr is not a terminal. */
#define LINE_EVERY_MS 5000
/* A job with tasks queued, none running and no progress for this long may
   be waiting for a kind of worker no live one is: ask the master (stats,
   at most this often) and say so once. */
#define STALL_HINT_MS 3000

static bool s_finished(const proto_job_t *j)
{
    if (j->finished > 0)
        return true;
    return j->closed && j->queued == 0 && j->running == 0 && progress_finished(j) >= j->total;
}

/* s_status's answer when the master's disk is full: it gives no counts
   until it can commit again (docs/protocol.md, "A full disk"). */
#define WAIT_STORAGE (-1)

/* Asks for one job's counters into *out (caller clears), answered when
   the job has finished or after wait_ms. WAIT_STORAGE (why in storage,
   not printed) when the master cannot write its database now;
   CLI_EXIT_TIMEOUT (not printed) when no answer came by until
   (monotonic ms, 0 = the request timeout alone). */
static int s_status(cli_t *cli, int64_t job, int wait_ms, int64_t until, proto_job_t *out,
                    char *storage, size_t storagelen)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_STATUS);
    req->job = job;
    req->wait_ms = wait_ms;
    int rc = CLI_EXIT_OK;
    proto_reply_t *rep = cli_call_until(cli, req, true, until, PROTO_E_STORAGE, &rc, storage,
                                        storagelen);
    proto_req_destroy(&req);
    if (!rep)
        return rc == CLI_EXIT_OK ? WAIT_STORAGE : rc;
    int found = -1;
    for (int i = 0; i < rep->njobs; i++)
        if (rep->jobs[i].id == job)
            found = i;
    if (found < 0) {
        fprintf(stderr, "ztask: job %lld not found (the master's status reply did not list it)\n",
                (long long) job);
        proto_reply_destroy(&rep);
        return CLI_EXIT_REFUSED;
    }
    /* Take the record: its strings move to *out. */
    *out = rep->jobs[found];
    memset(&rep->jobs[found], 0, sizeof rep->jobs[found]);
    proto_reply_destroy(&rep);
    return CLI_EXIT_OK;
}

/* Says why job is stalled when the master knows (no workers at all, or
   tasks needing a kind of worker none of the live ones is; with
   needs_only, only the latter). True when it said something. Asks by
   until at the latest (monotonic ms, 0 = the request timeout alone). */
static bool s_hint(cli_t *cli, int64_t job, bool bar, bool needs_only, const char *mine,
                   int64_t until)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_STATS);
    int rc;
    proto_reply_t *rep = cli_call_until(cli, req, true, until, NULL, &rc, NULL, 0);
    proto_req_destroy(&req);
    if (!rep)
        return false;
    proto_stats_t *s = &rep->stats;
    /* Only the needs that are this job's, when the caller knows them. */
    int keep = 0;
    for (int i = 0; i < s->nunrunnable; i++) {
        if (mine && !strstr(s->unrunnable[i], mine)) {
            free(s->unrunnable[i]);
            continue;
        }
        s->unrunnable[keep++] = s->unrunnable[i];
    }
    s->nunrunnable = keep;
    bool said = (s->workers_alive == 0 && !needs_only) || (s->workers_alive && s->nunrunnable > 0);
    if (said)
        fprintf(stderr, "%s", bar ? "\r\033[K" : "");
    if (s->workers_alive == 0) {
        if (needs_only) {
            proto_reply_destroy(&rep);
            return false;
        }
        fprintf(stderr,
                "ztask: job %lld is waiting: no worker is connected to the master; start one "
                "(ztask-worker --master HOST)\n",
                (long long) job);
    } else if (s->nunrunnable > 0) {
        fprintf(stderr, "ztask: job %lld may be waiting: queued tasks need ", (long long) job);
        for (int i = 0; i < s->nunrunnable; i++) {
            char need[256];
            fmt_need(need, sizeof need, s->unrunnable[i]);
            fprintf(stderr, "%s%s", i ? ", or " : "", need);
        }
        fprintf(stderr, ", and no live worker is one; start one, or 'ztask cancel %lld'\n",
                (long long) job);
    }
    proto_reply_destroy(&rep);
    return said;
}

/* What one `ztask wait` follows from poll to poll. */
typedef struct {
    cli_t *cli;
    int64_t job;
    const cli_wait_opts_t *opts;
    int64_t start;              /* monotonic ms */
    int64_t until;              /* every request ends by then (--timeout plus WAIT_GRACE_MS);
                                   0 = no --timeout */
    bool bar;                   /* stderr is a terminal: redraw a bar */
    progress_rate_t *rate;
    proto_job_t j;              /* the last status */
    bool seen;                  /* j is an answer (else none came yet: no counts to say) */
    int64_t last_line;          /* when the last plain progress line went out */
    int64_t last_finished;      /* finished tasks when progress last moved */
    int64_t stalled_since;      /* since when nothing moved */
    int64_t last_hint;          /* when the master was last asked why */
    bool hinted;                /* the stall was explained, once */
    bool said_storage;          /* the master's full disk was said (until it answers) */
} wait_state_t;

/* How long the master may hold the next status request: POLL_MS, or
   what is left of --timeout. */
static int s_hold_ms(const wait_state_t *w, int64_t asked)
{
    int wait_ms = POLL_MS;
    if (w->opts->timeout > 0) {
        int64_t left = (int64_t) (w->opts->timeout * 1000) - (asked - w->start);
        if (left < wait_ms)
            wait_ms = left > 0 ? (int) left : 0;
    }
    return wait_ms;
}

/* The bar (redrawn at every poll) or a plain line every LINE_EVERY_MS. */
static void s_draw(wait_state_t *w, int64_t now, bool done)
{
    char line[512];
    double r = progress_rate_get(w->rate);
    if (w->bar) {
        int width = fmt_term_width(STDERR_FILENO); /* follow a resized window */
        progress_bar(line, sizeof line, &w->j, r, width > 0 ? width : 80);
        fprintf(stderr, "\r%s\033[K", line);
        fflush(stderr);
    } else if (w->opts->progress && !done && now - w->last_line >= LINE_EVERY_MS) {
        progress_line(line, sizeof line, &w->j, r);
        fprintf(stderr, "%s\n", line);
        w->last_line = now;
    }
}

/* Notes progress; a job that has not moved for STALL_HINT_MS with tasks
   queued and none running gets the master's explanation, once. */
static void s_watch_stall(wait_state_t *w, int64_t now)
{
    int64_t finished = progress_finished(&w->j);
    if (finished != w->last_finished || w->j.running > 0 || w->j.queued == 0) {
        w->last_finished = finished;
        w->stalled_since = now;
    } else if (w->opts->progress && !w->hinted && now - w->stalled_since >= STALL_HINT_MS
               && now - w->last_hint >= STALL_HINT_MS) {
        w->last_hint = now;
        if (w->j.held) {
            /* Its own doing, not the workers': say so without asking. */
            fprintf(stderr,
                    "%sztask: job %lld is held: its queued tasks wait for 'ztask release "
                    "%lld'\n",
                    w->bar ? "\r\033[K" : "", (long long) w->job, (long long) w->job);
            w->hinted = true;
        } else {
            w->hinted = s_hint(w->cli, w->job, w->bar, false, NULL, w->until);
        }
    }
}

/* Says that --timeout has passed, with the last counts seen: none when
   no answer came (a silent master, a full disk from the start), rather
   than "0/0 done", which reads as an empty job (the Python client's
   WaitTimeout says the same). */
static void s_say_timed_out(const wait_state_t *w)
{
    if (w->bar)
        fprintf(stderr, "\r\033[K");
    char counts[96] = "";
    if (w->seen)
        snprintf(counts, sizeof counts, " (%lld/%lld done, %lld failed)",
                 (long long) progress_finished(&w->j), (long long) w->j.total,
                 (long long) w->j.failed);
    fprintf(stderr, "ztask: job %lld did not finish within %g s%s; it keeps running\n",
            (long long) w->job, w->opts->timeout, counts);
}

/* True (after saying so) when --timeout has passed. */
static bool s_timed_out(const wait_state_t *w, int64_t now)
{
    if (w->opts->timeout <= 0 || now - w->start < (int64_t) (w->opts->timeout * 1000))
        return false;
    s_say_timed_out(w);
    return true;
}

/* The finished job: the summary line and/or its JSON record on stdout. */
static void s_report_end(const wait_state_t *w)
{
    if (w->bar)
        fprintf(stderr, "\r\033[K");
    if (w->opts->summary) {
        char line[512];
        double secs = w->j.finished > 0 && w->j.created > 0
                          ? w->j.finished - w->j.created
                          : (clock_mono_ms() - w->start) / 1000.0;
        progress_summary(line, sizeof line, &w->j, secs);
        printf("%s\n", line);
    }
    if (w->opts->json) {
        char *text = proto_job_encode(&w->j);
        if (text)
            printf("%s\n", text);
        free(text);
    }
    fflush(stdout);
}

int cli_wait_job(cli_t *cli, int64_t job, const cli_wait_opts_t *opts)
{
    int64_t start = clock_mono_ms();
    wait_state_t w = {
        .cli = cli,
        .job = job,
        .opts = opts,
        .start = start,
        .until = opts->timeout > 0 ? start + (int64_t) (opts->timeout * 1000) + WAIT_GRACE_MS : 0,
        .bar = opts->progress && fmt_term_width(STDERR_FILENO) > 0,
        .rate = progress_rate_new(),
        .last_line = start,
        .last_finished = -1,
        .stalled_since = start,
    };
    int rc;
    for (;;) {
        int64_t asked = clock_mono_ms();
        int hold_ms = s_hold_ms(&w, asked);
        char storage[600];
        proto_job_t next;
        memset(&next, 0, sizeof next);
        rc = s_status(cli, job, hold_ms, w.until, &next, storage, sizeof storage);
        if (rc == CLI_EXIT_TIMEOUT) {
            /* No answer by --timeout (and the grace): said with the last
               counts seen, as a timeout between requests is. */
            s_say_timed_out(&w);
            goto out;
        }
        if (rc == CLI_EXIT_OK) {
            proto_job_clear(&w.j);
            w.j = next;   /* its strings move */
            w.seen = true;
        }
        if (rc == WAIT_STORAGE) {
            /* The job goes on; its counts come back with the disk's room.
               Said once, then asked again every second. */
            if (!w.said_storage)
                fprintf(stderr, "%sztask: %s; still waiting for job %lld\n",
                        w.bar ? "\r\033[K" : "", storage, (long long) job);
            w.said_storage = true;
            if (s_timed_out(&w, clock_mono_ms())) {
                rc = CLI_EXIT_TIMEOUT;
                goto out;
            }
            int pause_ms = 1000;   /* but not past --timeout */
            if (w.until > 0) {
                int64_t left = w.until - WAIT_GRACE_MS - clock_mono_ms();
                if (left < pause_ms)
                    pause_ms = left > 0 ? (int) left : 0;
            }
            if (cli_sleep_ms(pause_ms) != 0) {
                fprintf(stderr, "ztask: interrupted (job %lld keeps running)\n", (long long) job);
                rc = CLI_EXIT_INTERRUPTED;
                goto out;
            }
            continue;
        }
        w.said_storage = false;
        if (rc == CLI_EXIT_INTERRUPTED)
            fprintf(stderr, "ztask: job %lld keeps running\n", (long long) job);
        if (rc != CLI_EXIT_OK)
            goto out;
        int64_t now = clock_mono_ms();
        progress_rate_add(w.rate, now, progress_finished(&w.j));
        bool done = s_finished(&w.j);
        s_draw(&w, now, done);
        if (done)
            break;
        s_watch_stall(&w, now);
        if (s_timed_out(&w, now)) {
            rc = CLI_EXIT_TIMEOUT;
            goto out;
        }
        /* A master that does not hold requests (one older than wait_ms)
           answers at once: pause for the rest, or we would spin. */
        int64_t rest = asked + hold_ms - clock_mono_ms();
        if (cli_sleep_ms(rest > 0 ? (int) rest : 0) != 0) {
            fprintf(stderr, "%sztask: interrupted (job %lld keeps running)\n",
                    w.bar ? "\r\033[K" : "\n", (long long) job);
            rc = CLI_EXIT_INTERRUPTED;
            goto out;
        }
    }
    s_report_end(&w);
    rc = cli_exit_for_job(&w.j);
out:
    proto_job_clear(&w.j);
    progress_rate_destroy(&w.rate);
    return rc;
}

static const struct option s_longopts[] = {
    { "help", no_argument, NULL, 'h' },
    { "timeout", required_argument, NULL, 't' },
    { "json", no_argument, NULL, 'j' },
    { "quiet", no_argument, NULL, 'q' },
    { NULL, 0, NULL, 0 }
};

int cmd_wait(cli_t *cli, int argc, char **argv)
{
    const char *cmd = "wait";
    cli_wait_opts_t o = { 0, true, true, false };
    bool quiet = false;
    optind = 0;
    int c;
    while ((c = cli_getopt(cmd, argc, argv, ":ht:q", s_longopts)) != -1) {
        switch (c) {
        case 'h':
            fputs(s_usage, stdout);
            return CLI_EXIT_OK;
        case 't':
            if (cli_parse_seconds(optarg, &o.timeout) != 0)
                return cli_usage_error(cmd, "--timeout wants seconds >= 0, got '%s'", optarg);
            break;
        case 'j':
            o.json = true;
            break;
        case 'q':
            quiet = true;
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
    if (o.json)
        o.summary = false;
    if (quiet) {
        o.progress = false;
        o.summary = false;
    }
    return cli_wait_job(cli, job, &o);
}

bool cli_needs_hint(cli_t *cli, int64_t job, const char *mine)
{
    return s_hint(cli, job, false, true, mine, 0);
}
