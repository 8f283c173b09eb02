/*  chaos-check: the total-queue checker of the fault-storm scenarios.

    Compares three views of a run, in the manner of Jepsen's total-queue
    checker:

      submitted  what the master acknowledged: "JOB N" lines (--expect), job
                 JOB holding array indexes 0..N-1, one task each;
      executed   what the workers did: one line "TASK ATTEMPT PID JOB INDEX"
                 per attempt that started (--records, written by
                 chaos_plugin's record function before it does anything
                 else);
      recorded   what the master says: `ztask results JOB --json` of every
                 job (--results, JSON lines).

    and counts

      lost        acknowledged tasks without a final recorded result (missing
                  from the results, or still queued/running, or failed when
                  they should be done);
      duplicated  a task (job, index) or a task id listed more than once;
      unexpected  results or executions of tasks never acknowledged;
      phantom     a done result that no execution produced: its value
                  [INDEX, ATTEMPT, PID] is not on record, or names another
                  index, or its attempt is not the task's last attempt;
      extra       executions beyond one per task. They are expected only when
                  an execution was cut short: each execution on a killed or
                  stopped worker (--suspects, one PID a line) may cause one
                  more; anything beyond that is "unexplained". --max-extra
                  bounds the total (threads + prefetch per kill).

    With kill marks in the records ("kill LABEL" lines a scenario appends
    as it kills the master) and end lines ("end TASK ATTEMPT PID JOB INDEX",
    the record function's "ends": true), each extra execution is told by
    the execution before it and the first kill mark after that one's start
    (the line order is the time order: one O_APPEND file):
      ended before the kill  its end is on record before the mark: the work
                  was done and only its result went missing in the crash
                  (--max-ended-before-kill bounds these);
      ran across the kill    started before the mark, ended after it;
      cut short   started before the mark, no end on record (its worker
                  was killed, or it was aborted);
      no kill     no kill mark between the two starts.

    Poison tasks (--poison JOB:INDEX) must end failed, with --poison-error
    text in their error; their executions are counted apart.

    Prints a table and one summary line; exits 0 when lost, duplicated,
    unexpected, phantom, unexplained and malformed are all 0 and extra is
    within the bound, 1 when not, 2 on a usage or input error.

    Threads: one. Memory: about 64 bytes per task.
*/
#include "../../common/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int attempt;
    long pid;
    long start, end;     /* record line numbers (the time order); end 0 = none */
} exec_t;

typedef struct {
    int rows;            /* result rows naming this (job, index) */
    int64_t task;        /* task id from the first row */
    char status[16];     /* from the first row */
    int attempts;
    int res_index, res_attempt; /* the result value [INDEX, ATTEMPT, PID] */
    long res_pid;
    bool has_value;
    bool error_ok;       /* poison: error text matched */
    bool poison;
    exec_t *execs;       /* executions on record */
    int nexecs, capexecs;
} slot_t;

typedef struct {
    int64_t job;
    int64_t n;
    slot_t *slots;
} job_t;

typedef struct {
    job_t *jobs;
    int njobs;
    long *suspects;
    int nsuspects;
    long *kills;         /* record line numbers of the kill marks, ascending */
    int nkills;
    /* Task ids seen in the results: open addressing, 0 = empty. */
    int64_t *ids;
    size_t idcap, nids;
    /* Counters. */
    int64_t submitted, result_rows, missing, not_final, wrong_state, dup_rows, dup_ids,
        unexpected_results, unexpected_execs, phantom, executions, executed_tasks, extra,
        unexplained, poison_execs, poison_ok, malformed;
    /* Extra executions told by the kill marks (see the header). */
    int64_t ended_before_kill, across_kill, cut_short, no_kill;
    char first_problem[512];
} check_t;

static void s_problem(check_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_problem(check_t *c, const char *fmt, ...)
{
    if (c->first_problem[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->first_problem, sizeof c->first_problem, fmt, ap);
    va_end(ap);
}

static job_t *s_job(check_t *c, int64_t job)
{
    for (int i = 0; i < c->njobs; i++)
        if (c->jobs[i].job == job)
            return &c->jobs[i];
    return NULL;
}

static slot_t *s_slot(check_t *c, int64_t job, int64_t index)
{
    job_t *j = s_job(c, job);
    if (!j || index < 0 || index >= j->n)
        return NULL;
    return &j->slots[index];
}

static int s_add_job(check_t *c, int64_t job, int64_t n)
{
    if (job < 1 || n < 0 || n > 100000000 || s_job(c, job)) {
        fprintf(stderr, "chaos-check: bad or repeated expectation: job %" PRId64 " n %" PRId64 "\n",
                job, n);
        return -1;
    }
    c->jobs = xrealloc(c->jobs, (size_t) (c->njobs + 1) * sizeof *c->jobs);
    c->jobs[c->njobs++] = (job_t){job, n, xcalloc((size_t) n + 1, sizeof(slot_t))};
    c->submitted += n;
    return 0;
}

static int s_load_expect(check_t *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "chaos-check: %s: %s\n", path, strerror(errno));
        return -1;
    }
    long long job, n;
    int rc = 0, got;
    while ((got = fscanf(f, "%lld %lld", &job, &n)) == 2)
        if (s_add_job(c, job, n) != 0)
            rc = -1;
    if (got != EOF) {
        fprintf(stderr, "chaos-check: %s: expected lines \"JOB N\"\n", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

static int s_load_suspects(check_t *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0; /* nobody was killed */
    long pid;
    while (fscanf(f, "%ld", &pid) == 1) {
        c->suspects = xrealloc(c->suspects, (size_t) (c->nsuspects + 1) * sizeof(long));
        c->suspects[c->nsuspects++] = pid;
    }
    fclose(f);
    return 0;
}

static bool s_suspect(const check_t *c, long pid)
{
    for (int i = 0; i < c->nsuspects; i++)
        if (c->suspects[i] == pid)
            return true;
    return false;
}

/* Adds id to the set; false when it was there already. */
static bool s_id_add(check_t *c, int64_t id)
{
    if ((c->nids + 1) * 2 > c->idcap) {
        size_t cap = c->idcap ? c->idcap * 2 : 1024;
        int64_t *ids = xcalloc(cap, sizeof *ids);
        for (size_t i = 0; i < c->idcap; i++) {
            if (!c->ids[i])
                continue;
            size_t h = (size_t) (c->ids[i] * 0x9E3779B97F4A7C15ull) & (cap - 1);
            while (ids[h])
                h = (h + 1) & (cap - 1);
            ids[h] = c->ids[i];
        }
        free(c->ids);
        c->ids = ids;
        c->idcap = cap;
    }
    size_t h = (size_t) (id * 0x9E3779B97F4A7C15ull) & (c->idcap - 1);
    while (c->ids[h]) {
        if (c->ids[h] == id)
            return false;
        h = (h + 1) & (c->idcap - 1);
    }
    c->ids[h] = id;
    c->nids++;
    return true;
}

static int64_t s_int(const cJSON *o, const char *key, int64_t dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (int64_t) v->valuedouble : dflt;
}

static int s_load_results(check_t *c, const char *path, const char *poison_error)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "chaos-check: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (len == 1 && line[0] == '\n')
            continue;
        cJSON *row = cJSON_ParseWithLength(line, (size_t) len);
        if (!cJSON_IsObject(row)) {
            c->malformed++;
            s_problem(c, "results line %ld is not a JSON object", lineno);
            cJSON_Delete(row);
            continue;
        }
        c->result_rows++;
        int64_t task = s_int(row, "task", -1), job = s_int(row, "job", -1),
                index = s_int(row, "index", -1);
        if (task >= 1 && !s_id_add(c, task)) {
            c->dup_ids++;
            s_problem(c, "task id %" PRId64 " listed twice", task);
        }
        slot_t *s = s_slot(c, job, index);
        if (!s) {
            c->unexpected_results++;
            s_problem(c, "result for a task never submitted: job %" PRId64 " index %" PRId64
                         " task %" PRId64, job, index, task);
            cJSON_Delete(row);
            continue;
        }
        if (s->rows++ > 0) {
            c->dup_rows++;
            s_problem(c, "job %" PRId64 " index %" PRId64 " has %d results", job, index, s->rows);
            cJSON_Delete(row);
            continue;
        }
        s->task = task;
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(row, "status");
        snprintf(s->status, sizeof s->status, "%s", cJSON_IsString(st) ? st->valuestring : "?");
        s->attempts = (int) s_int(row, "attempts", -1);
        const cJSON *val = cJSON_GetObjectItemCaseSensitive(row, "result");
        if (cJSON_IsArray(val) && cJSON_GetArraySize(val) == 3) {
            s->has_value = true;
            s->res_index = (int) cJSON_GetArrayItem(val, 0)->valuedouble;
            s->res_attempt = (int) cJSON_GetArrayItem(val, 1)->valuedouble;
            s->res_pid = (long) cJSON_GetArrayItem(val, 2)->valuedouble;
        }
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(row, "error");
        s->error_ok = poison_error && cJSON_IsString(err) && strstr(err->valuestring, poison_error);
        cJSON_Delete(row);
    }
    free(line);
    fclose(f);
    return 0;
}

static int s_load_records(check_t *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0; /* no execution at all (e.g. a noop job) */
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        long long task, job, index;
        int attempt, used = 0;
        long pid;
        if (!strncmp(line, "kill ", 5)) {
            c->kills = xrealloc(c->kills, (size_t) (c->nkills + 1) * sizeof *c->kills);
            c->kills[c->nkills++] = lineno;
            continue;
        }
        bool end = !strncmp(line, "end ", 4);
        const char *rec = end ? line + 4 : line;
        if (sscanf(rec, "%lld %d %ld %lld %lld%n", &task, &attempt, &pid, &job, &index, &used)
                != 5
            || rec[used] != '\n') {
            c->malformed++;
            s_problem(c, "record line %ld is malformed: %.80s", lineno, line);
            continue;
        }
        slot_t *s = s_slot(c, job, index);
        if (end) {
            exec_t *e = NULL;
            for (int i = 0; s && i < s->nexecs && !e; i++)
                if (s->execs[i].attempt == attempt && s->execs[i].pid == pid && !s->execs[i].end)
                    e = &s->execs[i];
            if (!e) {
                c->malformed++;
                s_problem(c, "record line %ld ends an execution never started: %.80s", lineno,
                          line);
                continue;
            }
            e->end = lineno;
            continue;
        }
        c->executions++;
        if (!s) {
            c->unexpected_execs++;
            s_problem(c, "execution of a task never submitted: job %lld index %lld", job, index);
            continue;
        }
        if (s->nexecs == s->capexecs) {
            s->capexecs = s->capexecs ? s->capexecs * 2 : 1;
            s->execs = xrealloc(s->execs, (size_t) s->capexecs * sizeof *s->execs);
        }
        s->execs[s->nexecs++] = (exec_t){.attempt = attempt, .pid = pid, .start = lineno};
    }
    free(line);
    fclose(f);
    return 0;
}

static bool s_executed(const slot_t *s, int attempt, long pid)
{
    for (int i = 0; i < s->nexecs; i++)
        if (s->execs[i].attempt == attempt && s->execs[i].pid == pid)
            return true;
    return false;
}

/* The first kill mark after line `after`, 0 if none. */
static long s_kill_after(const check_t *c, long after)
{
    for (int i = 0; i < c->nkills; i++)
        if (c->kills[i] > after)
            return c->kills[i];
    return 0;
}

/* Tells execution k (k >= 1) of s by the one before it (see the header). */
static void s_tell_extra(check_t *c, const job_t *job, int64_t index, const slot_t *s, int k)
{
    const exec_t *prev = &s->execs[k - 1];
    long kill = s_kill_after(c, prev->start);
    if (!kill || kill > s->execs[k].start) {
        c->no_kill++;
    } else if (!prev->end) {
        c->cut_short++;
    } else if (prev->end < kill) {
        c->ended_before_kill++;
        s_problem(c, "job %" PRId64 " index %" PRId64 " (task %" PRId64 "): attempt %d ended "
                     "(record line %ld) before the kill (line %ld), and ran again as attempt %d",
                  job->job, index, s->task, prev->attempt, prev->end, kill, s->execs[k].attempt);
    } else {
        c->across_kill++;
    }
}

static void s_judge(check_t *c, bool have_records)
{
    for (int j = 0; j < c->njobs; j++) {
        job_t *job = &c->jobs[j];
        for (int64_t i = 0; i < job->n; i++) {
            slot_t *s = &job->slots[i];
            const char *want = s->poison ? "failed" : "done";
            if (s->rows == 0) {
                c->missing++;
                s_problem(c, "job %" PRId64 " index %" PRId64 ": no result listed", job->job, i);
            } else if (strcmp(s->status, "done") && strcmp(s->status, "failed")
                       && strcmp(s->status, "cancelled")) {
                c->not_final++;
                s_problem(c, "job %" PRId64 " index %" PRId64 " (task %" PRId64 "): still %s",
                          job->job, i, s->task, s->status);
            } else if (strcmp(s->status, want)) {
                c->wrong_state++;
                s_problem(c, "job %" PRId64 " index %" PRId64 " (task %" PRId64 "): %s, want %s",
                          job->job, i, s->task, s->status, want);
            } else if (s->poison && !s->error_ok) {
                c->wrong_state++;
                s_problem(c, "job %" PRId64 " index %" PRId64 ": poison task failed without the "
                             "expected error", job->job, i);
            } else if (s->poison) {
                c->poison_ok++;
            }
            if (s->poison) {
                c->poison_execs += s->nexecs;
                continue;
            }
            if (have_records && s->rows > 0 && !strcmp(s->status, "done")) {
                if (!s->has_value || s->res_index != i || s->res_attempt != s->attempts
                    || !s_executed(s, s->res_attempt, s->res_pid)) {
                    c->phantom++;
                    s_problem(c, "job %" PRId64 " index %" PRId64 " (task %" PRId64 "): result "
                                 "[%d,%d,%ld] at attempts %d matches no execution",
                              job->job, i, s->task, s->res_index, s->res_attempt, s->res_pid,
                              s->attempts);
                }
            }
            if (s->nexecs > 0)
                c->executed_tasks++;
            if (s->nexecs > 1) {
                int cut = 0;
                for (int k = 0; k < s->nexecs; k++)
                    if (s_suspect(c, s->execs[k].pid))
                        cut++;
                c->extra += s->nexecs - 1;
                for (int k = 1; k < s->nexecs; k++)
                    s_tell_extra(c, job, i, s, k);
                if (s->nexecs - 1 > cut) {
                    c->unexplained += s->nexecs - 1 - cut;
                    s_problem(c, "job %" PRId64 " index %" PRId64 " (task %" PRId64 "): %d "
                                 "executions, only %d on killed or stopped workers",
                              job->job, i, s->task, s->nexecs, cut);
                }
            }
        }
    }
}

static void s_usage(FILE *to)
{
    fprintf(to,
            "usage: chaos-check --expect FILE --results FILE [--records FILE]\n"
            "                   [--suspects FILE] [--max-extra N] [--poison JOB:INDEX]...\n"
            "                   [--poison-error TEXT] [--max-ended-before-kill N] [--name NAME]\n"
            "  --expect FILE     lines \"JOB N\": job JOB was acknowledged with indexes 0..N-1\n"
            "  --results FILE    ztask results JOB --json of every job, concatenated\n"
            "  --records FILE    the record plugin's lines (omit for jobs without records)\n"
            "  --suspects FILE   PIDs of workers killed or stopped, one a line\n"
            "  --max-extra N     bound on extra executions (default 0)\n"
            "  --poison J:I      this task must end failed (repeatable)\n"
            "  --poison-error T  ... with T in its error\n"
            "  --max-ended-before-kill N\n"
            "                    bound on extra executions of work that had ended before a\n"
            "                    kill mark (needs end lines; default: not judged)\n"
            "Exit: 0 pass, 1 a check failed, 2 usage or input error.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"expect", required_argument, 0, 'e'},   {"results", required_argument, 0, 'r'},
        {"records", required_argument, 0, 'x'},  {"suspects", required_argument, 0, 's'},
        {"max-extra", required_argument, 0, 'm'}, {"poison", required_argument, 0, 'p'},
        {"poison-error", required_argument, 0, 'E'}, {"name", required_argument, 0, 'n'},
        {"max-ended-before-kill", required_argument, 0, 'k'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0},
    };
    const char *expect = NULL, *results = NULL, *records = NULL, *suspects = NULL,
               *poison_error = NULL, *name = "run";
    int64_t max_extra = 0, max_ended = -1;
    char **poison = NULL;
    int npoison = 0, o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'e': expect = optarg; break;
        case 'r': results = optarg; break;
        case 'x': records = optarg; break;
        case 's': suspects = optarg; break;
        case 'E': poison_error = optarg; break;
        case 'n': name = optarg; break;
        case 'm':
            if (parse_int64(optarg, 0, INT64_MAX, &max_extra) != 0) {
                s_usage(stderr);
                return 2;
            }
            break;
        case 'k':
            if (parse_int64(optarg, 0, INT64_MAX, &max_ended) != 0) {
                s_usage(stderr);
                return 2;
            }
            break;
        case 'p':
            poison = xrealloc(poison, (size_t) (npoison + 1) * sizeof(char *));
            poison[npoison++] = optarg;
            break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (!expect || !results || optind != argc) {
        s_usage(stderr);
        return 2;
    }
    check_t c = {0};
    if (s_load_expect(&c, expect) != 0 || s_load_suspects(&c, suspects ? suspects : "") != 0)
        return 2;
    for (int i = 0; i < npoison; i++) {
        long long job, index;
        slot_t *s = sscanf(poison[i], "%lld:%lld", &job, &index) == 2 ? s_slot(&c, job, index)
                                                                       : NULL;
        if (!s) {
            fprintf(stderr, "chaos-check: --poison %s names no submitted task\n", poison[i]);
            return 2;
        }
        s->poison = true;
    }
    if (s_load_results(&c, results, poison_error) != 0 || s_load_records(&c, records ? records : "")
                                                              != 0)
        return 2;
    s_judge(&c, records != NULL);

    int64_t lost = c.missing + c.not_final + c.wrong_state;
    int64_t dups = c.dup_rows + c.dup_ids;
    int64_t unexpected = c.unexpected_results + c.unexpected_execs;
    bool pass = lost == 0 && dups == 0 && unexpected == 0 && c.phantom == 0 && c.unexplained == 0
                && c.malformed == 0 && c.extra <= max_extra
                && (max_ended < 0 || c.ended_before_kill <= max_ended);
    printf("  %-22s %12s\n", "what", "count");
    printf("  %-22s %12" PRId64 "   (%d jobs)\n", "submitted (acked)", c.submitted, c.njobs);
    printf("  %-22s %12" PRId64 "\n", "result rows", c.result_rows);
    printf("  %-22s %12" PRId64 "   (missing %" PRId64 ", unfinished %" PRId64
           ", wrong state %" PRId64 ")\n", "lost", lost, c.missing, c.not_final, c.wrong_state);
    printf("  %-22s %12" PRId64 "   (rows %" PRId64 ", task ids %" PRId64 ")\n", "duplicated",
           dups, c.dup_rows, c.dup_ids);
    printf("  %-22s %12" PRId64 "   (results %" PRId64 ", executions %" PRId64 ")\n",
           "unexpected", unexpected, c.unexpected_results, c.unexpected_execs);
    if (records) {
        printf("  %-22s %12" PRId64 "   (tasks executed %" PRId64 ")\n", "executions",
               c.executions, c.executed_tasks);
        printf("  %-22s %12" PRId64 "   (bound %" PRId64 ", unexplained %" PRId64 ")\n",
               "extra executions", c.extra, max_extra, c.unexplained);
        printf("  %-22s %12" PRId64 "\n", "phantom results", c.phantom);
        if (c.nkills)
            printf("  %-22s %12s   (ended before the kill %" PRId64 "%s, ran across it %" PRId64
                   ", cut short %" PRId64 ", no kill between %" PRId64 ")\n",
                   "extra, by the kills", "", c.ended_before_kill,
                   max_ended >= 0 ? (c.ended_before_kill <= max_ended ? " (within bound)"
                                                                      : " (OVER BOUND)")
                                  : "",
                   c.across_kill, c.cut_short, c.no_kill);
    }
    if (npoison)
        printf("  %-22s %12" PRId64 "   (failed as expected %" PRId64 "/%d)\n",
               "poison executions", c.poison_execs, c.poison_ok, npoison);
    if (c.malformed)
        printf("  %-22s %12" PRId64 "\n", "malformed lines", c.malformed);
    if (c.first_problem[0])
        printf("  first problem: %s\n", c.first_problem);
    char ended[48] = "";
    if (c.nkills)
        snprintf(ended, sizeof ended, " ended_before_kill=%" PRId64, c.ended_before_kill);
    printf("chaos-check %s: submitted=%" PRId64 " lost=%" PRId64 " duplicated=%" PRId64
           " unexpected=%" PRId64 " extra=%" PRId64 "/%" PRId64 " unexplained=%" PRId64
           " phantom=%" PRId64 "%s => %s\n",
           name, c.submitted, lost, dups, unexpected, c.extra, max_extra, c.unexplained, c.phantom,
           ended, pass ? "PASS" : "FAIL");

    for (int j = 0; j < c.njobs; j++) {
        for (int64_t i = 0; i < c.jobs[j].n; i++)
            free(c.jobs[j].slots[i].execs);
        free(c.jobs[j].slots);
    }
    free(c.jobs);
    free(c.ids);
    free(c.suspects);
    free(c.kills);
    free(poison);
    return pass ? 0 : 1;
}
