/*  API replies and the records they carry (jobs, task infos, workers,
    stats). The record encoders are also the CLI's --json output. */
#include "proto_hooks.h"
#include "proto_reader.h"
#include "proto_text.h"
#include "proto_writer.h"

#include "../common/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- records */

static const char *const s_wait_names[] = {
    [PROTO_WAIT_HELD] = "held",           [PROTO_WAIT_DEPS] = "deps",
    [PROTO_WAIT_CAPPED] = "capped",       [PROTO_WAIT_RETRY] = "retry",
    [PROTO_WAIT_NO_WORKER] = "no_worker", [PROTO_WAIT_READY] = "ready",
    [PROTO_WAIT_REJOIN] = "rejoin",       [PROTO_WAIT_COMMIT] = "commit",
};
#define NWAIT (sizeof s_wait_names / sizeof *s_wait_names)

const char *proto_wait_name(proto_wait_t w)
{
    return w > PROTO_WAIT_NONE && (size_t) w < NWAIT ? s_wait_names[w] : NULL;
}

/* A wait name as a later master may add one: a letter, then letters,
   digits or '_', PROTO_MAX_WAIT_NAME at most. */
static bool s_wait_word(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > PROTO_MAX_WAIT_NAME || name[0] < 'a' || name[0] > 'z')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9')
              || name[i] == '_'))
            return false;
    return true;
}

int proto_wait_parse(const char *name, proto_wait_t *w)
{
    for (size_t i = 1; name && i < NWAIT; i++)
        if (strcmp(name, s_wait_names[i]) == 0) {
            *w = (proto_wait_t) i;
            return 0;
        }
    return -1;
}

void proto_need_words(char *buf, size_t size, const char *key)
{
    if (size == 0)
        return;
    /* "exec:gpu,ssd;cpus=64~3600": kind, labels, resources (after ';'),
       then "~SECONDS" for a --time-request. */
    const char *tilde = strchr(key, '~');
    size_t keylen = tilde ? (size_t) (tilde - key) : strlen(key);
    const char *semi = memchr(key, ';', keylen);
    size_t head = semi ? (size_t) (semi - key) : keylen;
    const char *colon = memchr(key, ':', head);
    size_t kind = colon ? (size_t) (colon - key) : head;
    bool exec = kind == 4 && strncmp(key, "exec", 4) == 0;
    /* "fn=NAME": NAME written with pct_encode (master/sched.h). */
    char *fn = strncmp(key, "fn=", 3) == 0 ? pct_decode(key + 3, kind - 3) : NULL;
    char what[320] = "";
    if (exec)
        snprintf(what, sizeof what, " that runs commands");
    else if (fn)
        snprintf(what, sizeof what, " with the function %.256s", fn);
    free(fn);
    int nlabels = colon ? (int) (head - (size_t) (colon + 1 - key)) : 0;
    int nres = semi ? (int) (keylen - head - 1) : 0;
    int n = snprintf(buf, size, "a worker%s%s%s%.*s%s%.*s", what, colon && *what ? "," : "",
                     colon ? " labelled " : "", nlabels > 300 ? 300 : nlabels,
                     colon ? colon + 1 : "", nres ? " with " : "", nres > 200 ? 200 : nres,
                     semi ? semi + 1 : "");
    if (tilde && n > 0 && (size_t) n < size)
        snprintf(buf + n, size - (size_t) n, "%s whose allocation lasts %.40s s more",
                 *what || colon || semi ? "," : "", tilde + 1);
    /* Cut inside a UTF-8 sequence, or a control byte in a name: '?'. */
    pu_one_line(buf);
}

const char *proto_job_state_name(const proto_job_t *job)
{
    int64_t finished = job->done + job->failed + job->cancelled + job->dep_failed;
    if (!job->closed)
        return "open";
    if (finished < job->total) {
        if (job->running == 0 && finished == 0)
            return job->waiting ? "waiting" : "queued";
        return "running";
    }
    if (job->failed > 0)
        return "failed";
    if (job->dep_failed > 0)
        return "dep_failed";
    if (job->cancelled > 0)
        return "cancelled";
    return "done";
}

static void s_job_write(pb_t *b, const proto_job_t *j)
{
    pb_char(b, '{');
    pb_ki64(b, "job", j->id);
    pb_kstr(b, "name", j->name);
    pb_kstr(b, "state", proto_job_state_name(j));
    pb_kbool(b, "closed", j->closed);
    pb_ki64(b, "total", j->total);
    pb_ki64(b, "queued", j->queued);
    pb_ki64(b, "running", j->running);
    pb_ki64(b, "done", j->done);
    pb_ki64(b, "failed", j->failed);
    pb_ki64(b, "cancelled", j->cancelled);
    pb_ki64(b, "dep_failed", j->dep_failed);
    if (j->waiting)
        pb_kbool(b, "waiting", true);
    pb_ktime(b, "created", j->created);
    pb_key(b, "finished");
    /* A time under a second (since 1970) is not a finish; one under half a
       microsecond would even print as 0 and read back as "not finished"
       (found by fuzz_reply: the round trip must be stable). */
    if (j->finished >= 1)
        pb_time(b, j->finished);
    else
        pb_lit(b, "null");
    pb_kstr(b, "owner", j->owner);
    pb_kstr(b, "owner_name", j->owner_name);
    pb_kbool(b, "held", j->held);
    pb_ki64(b, "max_running", j->max_running);
    if (j->definition) {
        pb_key(b, "definition");
        pb_json(b, j->definition);
    }
    if (j->first_spec) {
        pb_key(b, "first_spec");
        pb_json(b, j->first_spec);
    }
    pb_char(b, '}');
}

static void s_task_info_write(pb_t *b, const proto_task_info_t *t)
{
    pb_char(b, '{');
    pb_ki64(b, "task", t->task);
    pb_ki64(b, "job", t->job);
    pb_key(b, "index");
    if (t->index >= 0)
        pb_i64(b, t->index);
    else
        pb_lit(b, "null");
    pb_kstr(b, "name", t->name);
    pb_kstr(b, "status", proto_state_name(t->status));
    pb_ki64(b, "attempts", t->attempts);
    pb_kstr(b, "worker", t->worker);
    if (t->held)
        pb_kbool(b, "held", true);
    if (t->wait != PROTO_WAIT_NONE) {
        pb_ki64(b, "priority", t->priority);
        pb_kstr(b, "wait", t->wait == PROTO_WAIT_OTHER ? t->wait_other : proto_wait_name(t->wait));
        pb_kstr(b, "reason", t->reason);
        if (t->wait == PROTO_WAIT_READY)
            pb_ki64(b, "ahead", t->ahead);
    }
    if (!t->result && t->started > 0) {
        /* On a worker: no result yet, but a start (or dispatch) time. */
        pb_lit(b, ",\"exit_code\":null,\"signal\":null,\"timed_out\":null,\"stdout\":null,"
                  "\"stderr\":null,\"stdout_truncated\":null,\"stderr_truncated\":null,"
                  "\"result\":null,\"error\":null");
        pb_ktime(b, "started", t->started);
        pb_lit(b, ",\"finished\":null");
    } else {
        pr_result_members(b, t->result);
    }
    pb_char(b, '}');
}

static void s_worker_write(pb_t *b, const proto_worker_info_t *w)
{
    pb_char(b, '{');
    pb_kstr(b, "worker", w->id);
    pb_kstr(b, "host", w->host);
    pb_ki64(b, "pid", w->pid);
    pb_ki64(b, "threads", w->threads);
    pb_key(b, "labels");
    pb_strv(b, w->labels, w->nlabels);
    pb_kbool(b, "alive", w->alive);
    pb_kbool(b, "draining", w->draining);
    pb_kbool(b, "left", w->left);
    pb_ki64(b, "running", w->running);
    pb_ki64(b, "done", w->done);
    pb_ki64(b, "failed", w->failed);
    /* 0 is "none": null, not a time in 1970. */
    if (w->last_heartbeat > 0)
        pb_ktime(b, "last_heartbeat", w->last_heartbeat);
    else
        pb_kstr(b, "last_heartbeat", NULL);
    if (w->gone > 0)
        pb_ktime(b, "gone", w->gone);
    else
        pb_kstr(b, "gone", NULL);
    ps_resources_write(b, "resources", w->resources);
    ps_resources_write(b, "used", w->used);
    if (w->slurm_job)
        pb_kstr(b, "slurm_job", w->slurm_job);
    if (w->ends_at > 0)
        pb_ktime(b, "ends_at", w->ends_at);
    pb_char(b, '}');
}

static void s_stats_write(pb_t *b, const proto_stats_t *s)
{
    pb_char(b, '{');
    pb_ki64(b, "jobs", s->jobs);
    pb_ki64(b, "tasks_queued", s->tasks_queued);
    pb_ki64(b, "tasks_running", s->tasks_running);
    pb_ki64(b, "tasks_done", s->tasks_done);
    pb_ki64(b, "tasks_failed", s->tasks_failed);
    pb_ki64(b, "tasks_dep_failed", s->tasks_dep_failed);
    pb_ki64(b, "workers_alive", s->workers_alive);
    pb_ki64(b, "threads_total", s->threads_total);
    pb_ki64(b, "duplicates", s->duplicates);
    pb_ki64(b, "results_per_s_1m", s->results_per_s_1m);
    pb_kdbl(b, "uptime", s->uptime);
    pb_kstr(b, "db_path", s->db_path);
    pb_key(b, "unrunnable");
    pb_strv(b, s->unrunnable, s->nunrunnable);
    pb_char(b, '}');
}

char *proto_job_encode(const proto_job_t *job)
{
    pb_t b;
    pb_init(&b, 256);
    s_job_write(&b, job);
    return pb_take(&b);
}

char *proto_task_info_encode(const proto_task_info_t *info)
{
    pb_t b;
    pb_init(&b, 512);
    s_task_info_write(&b, info);
    return pb_take(&b);
}

char *proto_worker_info_encode(const proto_worker_info_t *w)
{
    pb_t b;
    pb_init(&b, 256);
    s_worker_write(&b, w);
    return pb_take(&b);
}

char *proto_stats_encode(const proto_stats_t *s)
{
    pb_t b;
    pb_init(&b, 256);
    s_stats_write(&b, s);
    return pb_take(&b);
}

void proto_job_clear(proto_job_t *job)
{
    if (!job)
        return;
    free(job->name);
    free(job->owner);
    free(job->owner_name);
    free(job->definition);
    free(job->first_spec);
    memset(job, 0, sizeof *job);
}

void proto_task_info_clear(proto_task_info_t *info)
{
    if (!info)
        return;
    free(info->name);
    free(info->worker);
    free(info->reason);
    free(info->wait_other);
    proto_result_destroy(&info->result);
    memset(info, 0, sizeof *info);
}

void proto_worker_info_clear(proto_worker_info_t *w)
{
    if (!w)
        return;
    free(w->id);
    free(w->host);
    pu_strv_free(w->labels, w->nlabels);
    free(w->resources);
    free(w->used);
    free(w->slurm_job);
    memset(w, 0, sizeof *w);
}

void proto_stats_clear(proto_stats_t *s)
{
    if (!s)
        return;
    free(s->db_path);
    pu_strv_free(s->unrunnable, s->nunrunnable);
    memset(s, 0, sizeof *s);
}

/* Record decoders: lenient on string lengths (the master wrote them from
   validated input), strict on types and ranges. */
static int s_job_from(cJSON *o, proto_job_t *j, proto_err_t *err)
{
    const int64_t M = PJ_MAX_SAFE_INT;
    if (!cJSON_IsObject(o)) {
        proto_err_set(err, PROTO_E_FIELD, "job record must be an object");
        return -1;
    }
    if (pj_i64(o, "job", true, 0, M, &j->id, err) != 0
        || pj_str(o, "name", false, 0, 0, &j->name, err) != 0
        || pj_bool(o, "closed", false, &j->closed, err) != 0
        || pj_i64(o, "total", false, 0, M, &j->total, err) != 0
        || pj_i64(o, "queued", false, 0, M, &j->queued, err) != 0
        || pj_i64(o, "running", false, 0, M, &j->running, err) != 0
        || pj_i64(o, "done", false, 0, M, &j->done, err) != 0
        || pj_i64(o, "failed", false, 0, M, &j->failed, err) != 0
        || pj_i64(o, "cancelled", false, 0, M, &j->cancelled, err) != 0
        || pj_i64(o, "dep_failed", false, 0, M, &j->dep_failed, err) != 0
        || pj_bool(o, "waiting", false, &j->waiting, err) != 0
        || pj_dbl(o, "created", false, 0, 1e300, &j->created, err) != 0
        || pj_dbl(o, "finished", false, 0, 1e300, &j->finished, err) != 0
        || pj_str(o, "owner", false, 0, 0, &j->owner, err) != 0
        || pj_str(o, "owner_name", false, 0, 0, &j->owner_name, err) != 0
        || pj_bool(o, "held", false, &j->held, err) != 0
        || pj_int(o, "max_running", false, 0, INT32_MAX, &j->max_running, err) != 0
        || pj_json(o, "definition", &j->definition, err) != 0
        || pj_json(o, "first_spec", &j->first_spec, err) != 0)
        return -1;
    return 0;
}

static int s_task_info_from(cJSON *o, proto_task_info_t *t, proto_err_t *err)
{
    const int64_t M = PJ_MAX_SAFE_INT;
    if (!cJSON_IsObject(o)) {
        proto_err_set(err, PROTO_E_FIELD, "task record must be an object");
        return -1;
    }
    t->index = -1;
    if (pj_i64(o, "task", true, 1, M, &t->task, err) != 0
        || pj_i64(o, "job", false, 0, M, &t->job, err) != 0
        || pj_i64(o, "index", false, 0, M, &t->index, err) != 0
        || pj_str(o, "name", false, 0, 0, &t->name, err) != 0
        || pj_int(o, "attempts", false, 0, PROTO_MAX_ATTEMPT, &t->attempts, err) != 0
        || pj_str(o, "worker", false, 0, 0, &t->worker, err) != 0
        || pj_bool(o, "held", false, &t->held, err) != 0)
        return -1;
    const cJSON *st = pj_get(o, "status");
    if (!st || !cJSON_IsString(st) || proto_state_parse(st->valuestring, &t->status) != 0) {
        proto_err_set(err, PROTO_E_FIELD, "field \"status\" must be a task state name");
        return -1;
    }
    const cJSON *wait = pj_get(o, "wait");
    if (wait) {
        if (!cJSON_IsString(wait) || !s_wait_word(wait->valuestring)) {
            proto_err_set(err, PROTO_E_FIELD, "field \"wait\" must be a wait's name (held, deps, "
                                              "capped, rejoin, commit, retry, no_worker, ready, "
                                              "or one a later master adds)");
            return -1;
        }
        /* A name this build does not know comes from a newer master: its
           reason still says it in words, so the list is not refused for
           it (an older CLI refused every reply naming rejoin or commit). */
        if (proto_wait_parse(wait->valuestring, &t->wait) != 0) {
            t->wait = PROTO_WAIT_OTHER;
            t->wait_other = xstrdup(wait->valuestring);
        }
        int priority = 0;
        if (pj_int(o, "priority", false, INT32_MIN, INT32_MAX, &priority, err) != 0
            || pj_str(o, "reason", true, 0, 0, &t->reason, err) != 0
            || pj_i64(o, "ahead", false, 0, M, &t->ahead, err) != 0)
            return -1;
        t->priority = priority;
    }
    /* The result's fields are flattened into the record; "finished" is
       null exactly when there is no result. A result on a task that is not
       finished is the failed attempt before a retry (while the retry
       waits); without one, "started" may say when the attempt on a worker
       was sent or began. */
    if (!pj_get(o, "finished"))
        return pj_dbl(o, "started", false, 0, 1e300, &t->started, err);
    t->result = proto_result_new();
    t->result->task = t->task;
    t->result->attempt = t->attempts;
    if (t->status == PROTO_ST_DONE || t->status == PROTO_ST_FAILED
        || t->status == PROTO_ST_CANCELLED)
        t->result->status = t->status;
    size_t room = PROTO_MAX_REPORT_MSG;   /* as the master stores one result */
    return pr_result_members_from(o, t->result, false, &room, err);
}

static int s_worker_from(cJSON *o, proto_worker_info_t *w, proto_err_t *err)
{
    const int64_t M = PJ_MAX_SAFE_INT;
    if (!cJSON_IsObject(o)) {
        proto_err_set(err, PROTO_E_FIELD, "worker record must be an object");
        return -1;
    }
    if (pj_str(o, "worker", true, 0, 0, &w->id, err) != 0
        || pj_str(o, "host", false, 0, 0, &w->host, err) != 0
        || pj_int(o, "pid", false, 0, INT32_MAX, &w->pid, err) != 0
        || pj_int(o, "threads", false, 0, INT32_MAX, &w->threads, err) != 0
        || pj_str_array(o, "labels", false, INT32_MAX - 1, 0, 0, &w->labels, &w->nlabels, err)
               != 0
        || pj_bool(o, "alive", false, &w->alive, err) != 0
        || pj_bool(o, "draining", false, &w->draining, err) != 0
        || pj_bool(o, "left", false, &w->left, err) != 0
        || pj_int(o, "running", false, 0, INT32_MAX, &w->running, err) != 0
        || pj_i64(o, "done", false, 0, M, &w->done, err) != 0
        || pj_i64(o, "failed", false, 0, M, &w->failed, err) != 0
        || pj_dbl(o, "last_heartbeat", false, 0, 1e300, &w->last_heartbeat, err) != 0
        || pj_dbl(o, "gone", false, 0, 1e300, &w->gone, err) != 0
        || ps_resources_from(o, "resources", &w->resources, err) != 0
        || ps_resources_from(o, "used", &w->used, err) != 0
        || pj_str(o, "slurm_job", false, 0, 0, &w->slurm_job, err) != 0
        || pj_dbl(o, "ends_at", false, 0, 1e300, &w->ends_at, err) != 0)
        return -1;
    return 0;
}

static int s_stats_from(cJSON *o, proto_stats_t *s, proto_err_t *err)
{
    const int64_t M = PJ_MAX_SAFE_INT;
    if (!cJSON_IsObject(o)) {
        proto_err_set(err, PROTO_E_FIELD, "field \"stats\" must be an object");
        return -1;
    }
    if (pj_i64(o, "jobs", false, 0, M, &s->jobs, err) != 0
        || pj_i64(o, "tasks_queued", false, 0, M, &s->tasks_queued, err) != 0
        || pj_i64(o, "tasks_running", false, 0, M, &s->tasks_running, err) != 0
        || pj_i64(o, "tasks_done", false, 0, M, &s->tasks_done, err) != 0
        || pj_i64(o, "tasks_failed", false, 0, M, &s->tasks_failed, err) != 0
        || pj_i64(o, "tasks_dep_failed", false, 0, M, &s->tasks_dep_failed, err) != 0
        || pj_i64(o, "workers_alive", false, 0, M, &s->workers_alive, err) != 0
        || pj_i64(o, "threads_total", false, 0, M, &s->threads_total, err) != 0
        || pj_i64(o, "duplicates", false, 0, M, &s->duplicates, err) != 0
        || pj_i64(o, "results_per_s_1m", false, 0, M, &s->results_per_s_1m, err) != 0
        || pj_dbl(o, "uptime", false, 0, 1e300, &s->uptime, err) != 0
        || pj_str(o, "db_path", false, 0, 0, &s->db_path, err) != 0
        || pj_str_array(o, "unrunnable", false, INT32_MAX - 1, 0, 0, &s->unrunnable,
                        &s->nunrunnable, err) != 0)
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- replies */

proto_reply_t *proto_reply_new(bool ok)
{
    proto_reply_t *rep = xcalloc(1, sizeof *rep);
    rep->ok = ok;
    /* A reply whose cursor nobody set ends the paging loop. */
    rep->next_after = -1;
    return rep;
}

proto_reply_t *proto_reply_error(const char *code, const char *fmt, ...)
{
    proto_reply_t *rep = proto_reply_new(false);
    snprintf(rep->error.code, sizeof rep->error.code, "%s", code ? code : PROTO_E_INTERNAL);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->error.message, sizeof rep->error.message, fmt, ap);
    va_end(ap);
    return rep;
}

void proto_reply_destroy(proto_reply_t **p)
{
    if (!p || !*p)
        return;
    proto_reply_t *r = *p;
    for (int i = 0; r->jobs && i < r->njobs; i++)
        proto_job_clear(&r->jobs[i]);
    free(r->jobs);
    for (int i = 0; r->tasks && i < r->ntasks; i++)
        proto_task_info_clear(&r->tasks[i]);
    free(r->tasks);
    for (int i = 0; r->workers && i < r->nworkers; i++)
        proto_worker_info_clear(&r->workers[i]);
    free(r->workers);
    free(r->out_chunk);
    free(r->err_chunk);
    free(r->task_error);
    proto_refs_free(r->resend, r->nresend);
    proto_stats_clear(&r->stats);
    free(r->worker_id);
    pu_strv_free(r->no_worker, r->nno_worker);
    for (int i = 0; r->allocs && i < r->nallocs; i++)
        proto_alloc_clear(&r->allocs[i]);
    free(r->allocs);
    free(r);
    *p = NULL;
}

char *proto_reply_encode(const proto_reply_t *rep, proto_req_type_t req_type)
{
    if (!rep)
        return NULL;
    pb_t b;
    size_t hint = 128;
    if (rep->ok && req_type == PROTO_REQ_LOGS)
        hint += (rep->out_chunk ? strlen(rep->out_chunk) : 0)
              + (rep->err_chunk ? strlen(rep->err_chunk) : 0);
    else if (rep->ok && req_type == PROTO_REQ_RESULTS)
        hint += (size_t) rep->ntasks * 512;
    pb_init(&b, hint);
    pb_open(&b, "reply");
    pb_kbool(&b, "ok", rep->ok);
    if (!rep->ok) {
        pb_key(&b, "error");
        pb_char(&b, '{');
        /* The fixed-size fields may be unterminated in a hand-built reply. */
        size_t clen = strnlen(rep->error.code, sizeof rep->error.code);
        pb_key(&b, "code");
        if (clen)
            pb_str(&b, rep->error.code, clen);
        else
            pb_cstr(&b, PROTO_E_INTERNAL);
        pb_key(&b, "message");
        pb_str(&b, rep->error.message, strnlen(rep->error.message, sizeof rep->error.message));
        pb_char(&b, '}');
        pb_char(&b, '}');
        return pb_take(&b);
    }
    switch (req_type) {
    case PROTO_REQ_SUBMIT:
        pb_ki64(&b, "job", rep->job);
        pb_ki64(&b, "accepted", rep->accepted);
        pb_ki64(&b, "total", rep->total);
        if (rep->nno_worker) {
            pb_key(&b, "no_worker");
            pb_strv(&b, rep->no_worker, rep->nno_worker);
        }
        if (rep->njobs == 0)
            break;
        /* A held submit (wait_ms): the job's record as it ended the hold. */
        /* fall through */
    case PROTO_REQ_STATUS:
    case PROTO_REQ_SHOW:
    case PROTO_REQ_JOBS:
        pb_key(&b, "jobs");
        pb_char(&b, '[');
        for (int i = 0; rep->jobs && i < rep->njobs; i++) {
            pb_sep(&b);
            s_job_write(&b, &rep->jobs[i]);
        }
        pb_char(&b, ']');
        break;
    case PROTO_REQ_RESULTS:
    case PROTO_REQ_TASKS:
    case PROTO_REQ_WAITING:
        if (rep->truncated)
            pb_kbool(&b, "truncated", true);
        pb_key(&b, "tasks");
        pb_char(&b, '[');
        for (int i = 0; rep->tasks && i < rep->ntasks; i++) {
            pb_sep(&b);
            s_task_info_write(&b, &rep->tasks[i]);
        }
        pb_char(&b, ']');
        pb_ki64(&b, "next_after", rep->next_after);
        break;
    case PROTO_REQ_LOGS:
        pb_kstr(&b, "state", proto_state_name(rep->task_state));
        pb_kstr(&b, "stdout", rep->out_chunk);
        pb_kstr(&b, "stderr", rep->err_chunk);
        if (rep->task_error)
            pb_kstr(&b, "error", rep->task_error);
        pb_ki64(&b, "out_offset", rep->out_offset);
        pb_ki64(&b, "err_offset", rep->err_offset);
        break;
    case PROTO_REQ_CANCEL:
    case PROTO_REQ_FORGET:
    case PROTO_REQ_RETRY:
    case PROTO_REQ_HOLD:
    case PROTO_REQ_RELEASE:
    case PROTO_REQ_PRIORITY:
    case PROTO_REQ_LIMIT:
        pb_ki64(&b, "count", rep->count);
        break;
    case PROTO_REQ_WORKERS:
        pb_key(&b, "workers");
        pb_char(&b, '[');
        for (int i = 0; rep->workers && i < rep->nworkers; i++) {
            pb_sep(&b);
            s_worker_write(&b, &rep->workers[i]);
        }
        pb_char(&b, ']');
        break;
    case PROTO_REQ_STATS:
        pb_key(&b, "stats");
        s_stats_write(&b, &rep->stats);
        break;
    case PROTO_REQ_HELLO:
        pb_kstr(&b, "worker", rep->worker_id);
        pb_ki64(&b, "task_port", rep->task_port);
        pb_ki64(&b, "report_port", rep->report_port);
        pb_ki64(&b, "heartbeat_ms", rep->heartbeat_ms);
        pb_ki64(&b, "liveness", rep->liveness);
        if (rep->report_b64)
            pb_kbool(&b, "report_b64", true);
        if (rep->nresend) {
            pb_key(&b, "resend");
            pb_refs(&b, rep->resend, rep->nresend);
        }
        if (rep->hold_ms > 0)
            pb_ki64(&b, "hold_ms", rep->hold_ms);
        break;
    case PROTO_REQ_ALLOC:
        pb_key(&b, "queues");
        pb_char(&b, '[');
        for (int i = 0; rep->allocs && i < rep->nallocs; i++) {
            pb_sep(&b);
            pa_alloc_write(&b, &rep->allocs[i]);
        }
        pb_char(&b, ']');
        break;
    case PROTO_REQ_DRAIN:
        break;
    }
    pb_char(&b, '}');
    return pb_take(&b);
}

/* Decodes the array member k into a calloc'd array of records of size
   elem, with from() filling each; *out and *n are set even on failure so the
   caller's destroy frees what was decoded. */
typedef int (*s_from_fn)(cJSON *o, void *rec, proto_err_t *err);

static int s_records_from(cJSON *o, const char *k, size_t elem, s_from_fn from, void **out,
                          int *n, proto_err_t *err)
{
    cJSON *arr;
    if (pj_array(o, k, false, INT32_MAX, &arr, err) != 0)
        return -1;
    int count = arr ? cJSON_GetArraySize(arr) : 0;
    if (count == 0)
        return 0;
    char *v = xcalloc((size_t) count, elem);
    *out = v;
    *n = 0;
    for (cJSON *e = arr->child; e; e = e->next) {
        /* Counted before decoding: a half-decoded record is cleared too. */
        (*n)++;
        if (from(e, v + (size_t) (*n - 1) * elem, err) != 0) {
            pj_err_prefix(err, "%s[%d]", k, *n - 1);
            return -1;
        }
    }
    return 0;
}

static int s_job_from_v(cJSON *o, void *rec, proto_err_t *err)
{
    return s_job_from(o, rec, err);
}
static int s_task_info_from_v(cJSON *o, void *rec, proto_err_t *err)
{
    return s_task_info_from(o, rec, err);
}
static int s_worker_from_v(cJSON *o, void *rec, proto_err_t *err)
{
    return s_worker_from(o, rec, err);
}
static int s_alloc_from_v(cJSON *o, void *rec, proto_err_t *err)
{
    return pa_alloc_from(o, rec, err);
}

static int s_error_from(cJSON *o, proto_reply_t *rep, proto_err_t *err)
{
    cJSON *e = pj_get(o, "error");
    if (!cJSON_IsObject(e)) {
        proto_err_set(err, PROTO_E_FIELD, "a failed reply needs an \"error\" object");
        return -1;
    }
    const cJSON *code = pj_get(e, "code");
    const cJSON *msg = pj_get(e, "message");
    if (!cJSON_IsString(code) || !code->valuestring[0]
        || strlen(code->valuestring) >= sizeof rep->error.code) {
        proto_err_set(err, PROTO_E_FIELD, "field \"error.code\" must be a short string");
        return -1;
    }
    if (msg && !cJSON_IsString(msg)) {
        proto_err_set(err, PROTO_E_FIELD, "field \"error.message\" must be a string");
        return -1;
    }
    snprintf(rep->error.code, sizeof rep->error.code, "%s", code->valuestring);
    /* Long messages are cut, on a character boundary. */
    const char *m = msg ? msg->valuestring : "";
    size_t n = strlen(m);
    if (n >= sizeof rep->error.message) {
        n = sizeof rep->error.message - 1;
        while (n > 0 && ((unsigned char) m[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(rep->error.message, m, n);
    rep->error.message[n] = '\0';
    /* Both are shown and logged by the receiver: one line each. */
    pu_one_line(rep->error.code);
    pu_one_line(rep->error.message);
    return 0;
}

static int s_jobs_from(cJSON *o, proto_reply_t *rep, proto_err_t *err)
{
    void *v = NULL;
    int rc = s_records_from(o, "jobs", sizeof(proto_job_t), s_job_from_v, &v, &rep->njobs, err);
    rep->jobs = v;
    return rc;
}

static int s_fields_from(cJSON *o, proto_reply_t *rep, proto_req_type_t req_type,
                         proto_err_t *err)
{
    const int64_t M = PJ_MAX_SAFE_INT;
    switch (req_type) {
    case PROTO_REQ_SUBMIT:
        /* A held submit's answer (wait_ms) has the job's record too. */
        return pj_i64(o, "job", true, 0, M, &rep->job, err) != 0
                       || pj_i64(o, "accepted", false, 0, M, &rep->accepted, err) != 0
                       || pj_i64(o, "total", false, 0, M, &rep->total, err) != 0
                       || pj_str_array(o, "no_worker", false, 1024, 1, 0, &rep->no_worker,
                                       &rep->nno_worker, err) != 0
                   ? -1
                   : s_jobs_from(o, rep, err);
    case PROTO_REQ_STATUS:
    case PROTO_REQ_SHOW:
    case PROTO_REQ_JOBS:
        return s_jobs_from(o, rep, err);
    case PROTO_REQ_RESULTS:
    case PROTO_REQ_TASKS:
    case PROTO_REQ_WAITING:
    {
        if (pj_bool(o, "truncated", false, &rep->truncated, err) != 0)
            return -1;
        void *v = NULL;
        int rc = s_records_from(o, "tasks", sizeof(proto_task_info_t), s_task_info_from_v, &v,
                                &rep->ntasks, err);
        rep->tasks = v;
        if (rc != 0)
            return -1;
        return pj_i64(o, "next_after", false, -1, M, &rep->next_after, err);
    }
    case PROTO_REQ_LOGS: {
        const cJSON *st = pj_get(o, "state");
        if (!st || !cJSON_IsString(st) || proto_state_parse(st->valuestring, &rep->task_state) != 0) {
            proto_err_set(err, PROTO_E_FIELD, "field \"state\" must be a task state name");
            return -1;
        }
        return pj_str(o, "stdout", false, 0, 0, &rep->out_chunk, err) != 0
                       || pj_str(o, "stderr", false, 0, 0, &rep->err_chunk, err) != 0
                       || pj_str(o, "error", false, 0, 0, &rep->task_error, err) != 0
                       || pj_i64(o, "out_offset", false, 0, M, &rep->out_offset, err) != 0
                       || pj_i64(o, "err_offset", false, 0, M, &rep->err_offset, err) != 0
                   ? -1
                   : 0;
    }
    case PROTO_REQ_CANCEL:
    case PROTO_REQ_FORGET:
    case PROTO_REQ_RETRY:
    case PROTO_REQ_HOLD:
    case PROTO_REQ_RELEASE:
    case PROTO_REQ_PRIORITY:
    case PROTO_REQ_LIMIT:
        return pj_i64(o, "count", false, 0, M, &rep->count, err);
    case PROTO_REQ_WORKERS:
    {
        void *v = NULL;
        int rc = s_records_from(o, "workers", sizeof(proto_worker_info_t), s_worker_from_v, &v,
                                &rep->nworkers, err);
        rep->workers = v;
        return rc;
    }
    case PROTO_REQ_STATS: {
        cJSON *s = pj_get(o, "stats");
        if (!s) {
            proto_err_set(err, PROTO_E_FIELD, "missing field \"stats\"");
            return -1;
        }
        return s_stats_from(s, &rep->stats, err);
    }
    case PROTO_REQ_HELLO:
        return pj_str(o, "worker", true, 1, PROTO_MAX_NAME, &rep->worker_id, err) != 0
                       || pj_int(o, "task_port", true, 1, 65535, &rep->task_port, err) != 0
                       || pj_int(o, "report_port", true, 1, 65535, &rep->report_port, err) != 0
                       || pj_int(o, "heartbeat_ms", true, 1, 3600000, &rep->heartbeat_ms, err) != 0
                       || pj_int(o, "liveness", true, 1, 1000, &rep->liveness, err) != 0
                       || pj_bool(o, "report_b64", false, &rep->report_b64, err) != 0
                       || pj_refs_max(o, "resend", false, PROTO_MAX_ENDED, &rep->resend,
                                      &rep->nresend, err) != 0
                       || pj_int(o, "hold_ms", false, 0, PROTO_MAX_HOLD_MS, &rep->hold_ms, err) != 0
                   ? -1
                   : 0;
    case PROTO_REQ_ALLOC:
    {
        void *v = NULL;
        int rc = s_records_from(o, "queues", sizeof(proto_alloc_t), s_alloc_from_v, &v,
                                &rep->nallocs, err);
        rep->allocs = v;
        return rc;
    }
    case PROTO_REQ_DRAIN:
        return 0;
    }
    return 0;
}

proto_reply_t *proto_reply_decode(const char *buf, size_t len, proto_req_type_t req_type,
                                  proto_err_t *err)
{
    const char *type;
    cJSON *root = pj_parse_msg(buf, len, PROTO_MAX_API_MSG, &type, err);
    if (!root)
        return NULL;
    proto_reply_t *rep = NULL;
    if (strcmp(type, "reply") != 0) {
        proto_err_set(err, PROTO_E_TYPE, "expected a reply, got type \"%.64s\"", type);
        goto done;
    }
    bool ok = false;
    if (pj_bool(root, "ok", true, &ok, err) != 0)
        goto done;
    rep = proto_reply_new(ok);
    if ((ok ? s_fields_from(root, rep, req_type, err) : s_error_from(root, rep, err)) != 0)
        proto_reply_destroy(&rep);
done:
    cJSON_Delete(root);
    return rep;
}
