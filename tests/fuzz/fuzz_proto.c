/*  Fuzz checks for the proto/ decoders: every frame a process receives
    from the network goes through one of these.

    For an accepted input: the decoded struct is checked against the limits
    proto.h promises, then encoded (t1); t1 must decode again and re-encode
    to exactly t1. The first encode may legitimately differ from the input
    (unknown fields dropped, numbers normalized), the second may not: a
    difference means a value that does not survive its own wire format.
    The "raw" hot-path encoders (pipe tasks, results reports) must produce a
    frame that decodes to the same t1 as the struct encoder.

    For a refused input: the error must carry a known PROTO_E_* code and a
    message fit for one log line (the master logs it and sends it back).
*/
#include "fuzz.h"

#include "../../common/util.h"
#include "../../proto/proto.h"
/* Internal, for the fast paths and the cJSON decoders behind them. */
#include "../../proto/proto_hooks.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Labels per spec or hello (proto_spec.c / proto_api.c). */
#define MAX_LABELS 256

static const char *const s_codes[] = {
    PROTO_E_PARSE, PROTO_E_VERSION, PROTO_E_TYPE,  PROTO_E_FIELD,    PROTO_E_TOO_BIG,
    PROTO_E_NOT_FOUND, PROTO_E_STATE, PROTO_E_STORAGE, PROTO_E_INTERNAL, PROTO_E_AUTH,
};

static fuzz_verdict_t s_refused(const char *what, const proto_err_t *err, char *why,
                                size_t whylen)
{
    if (!memchr(err->code, '\0', sizeof err->code)
        || !memchr(err->message, '\0', sizeof err->message))
        return fuzz_broken(why, whylen, "%s refused with an unterminated error", what);
    bool known = false;
    for (size_t i = 0; i < sizeof s_codes / sizeof *s_codes; i++)
        known = known || strcmp(err->code, s_codes[i]) == 0;
    if (!known)
        return fuzz_broken(why, whylen, "%s refused with unknown code \"%s\"", what, err->code);
    if (!fuzz_one_line(err->message))
        return fuzz_broken(why, whylen, "%s refused (%s) with a message that is not one line "
                           "of UTF-8: \"%.200s\"", what, err->code, err->message);
    return FUZZ_REJECTED;
}

/* t1 was encoded from a decoded struct; t2 from decoding t1 (NULL when
   that failed, with err saying why). */
static fuzz_verdict_t s_same(const char *what, const char *t1, const char *t2,
                             const proto_err_t *err, char *why, size_t whylen)
{
    if (!t1)
        return fuzz_broken(why, whylen, "a decoded %s does not encode", what);
    if (!t2)
        return fuzz_broken(why, whylen, "re-encoded %s refused: %s: %s; text: %.300s", what,
                           err->code, err->message, t1);
    if (strcmp(t1, t2) != 0) {
        size_t i = 0;
        while (t1[i] && t1[i] == t2[i])
            i++;
        size_t from = i > 40 ? i - 40 : 0;
        return fuzz_broken(why, whylen,
                           "%s round trip unstable at byte %zu: \"%.100s\" became \"%.100s\"",
                           what, i, t1 + from, t2 + from);
    }
    return FUZZ_ACCEPTED;
}

static bool s_str_ok(const char *s, size_t minlen, size_t maxlen)
{
    if (!s)
        return minlen == 0;
    size_t n = strlen(s);
    return n >= minlen && (!maxlen || n <= maxlen) && utf8_valid(s, n);
}

static bool s_strv_ok(char *const *v, int n, size_t minlen, size_t maxlen)
{
    if (n == 0)
        return true;
    if (!v || n < 0 || v[n] != NULL)
        return false;
    for (int i = 0; i < n; i++)
        if (!v[i] || !s_str_ok(v[i], minlen, maxlen))
            return false;
    return true;
}

/* What proto.h promises about a decoded spec. NULL when it holds. */
static const char *s_spec_bad(const proto_spec_t *s)
{
    int forms = (s->argv != NULL) + (s->shell != NULL) + (s->fn != NULL);
    if (forms != 1)
        return "not exactly one of argv, shell, fn";
    if (s->kind != (s->fn ? PROTO_KIND_FN : PROTO_KIND_EXEC))
        return "kind does not match the form";
    if (s->argv && (s->argc < 1 || !s_strv_ok(s->argv, s->argc, 0, 0) || !s->argv[0][0]))
        return "argv malformed";
    if (s->shell && !s_str_ok(s->shell, 1, 0))
        return "shell malformed";
    if (s->fn && !s_str_ok(s->fn, 1, PROTO_MAX_NAME))
        return "fn malformed";
    if (s->args_json && !s->fn)
        return "args without fn";
    if (s->stdin_data && (strlen(s->stdin_data) != s->stdin_len
                          || !utf8_valid(s->stdin_data, s->stdin_len)))
        return "stdin length or UTF-8 wrong";
    if (!s_strv_ok(s->env, s->envc, 2, 0))
        return "env malformed";
    for (int i = 0; i < s->envc; i++) {
        const char *eq = strchr(s->env[i], '=');
        if (!eq || eq == s->env[i])
            return "env entry is not KEY=VALUE";
    }
    if (s->cwd && !s_str_ok(s->cwd, 1, 0))
        return "cwd malformed";
    if (!isfinite(s->timeout) || s->timeout < 0 || s->timeout > PROTO_MAX_TIMEOUT)
        return "timeout out of range";
    if (s->retries < 0 || s->retries > 100)
        return "retries out of range";
    if (s->name && !s_str_ok(s->name, 1, PROTO_MAX_NAME))
        return "name malformed";
    if (s->index < -1)
        return "index below -1";
    if (s->nrequire > MAX_LABELS || !s_strv_ok(s->require, s->nrequire, 1, PROTO_MAX_NAME))
        return "require malformed";
    if (s->output_cap < 1 || s->output_cap > PROTO_MAX_OUTPUT_CAP)
        return "output_cap out of range";
    if ((s->stdout_file && !s_str_ok(s->stdout_file, 1, PROTO_MAX_PATH))
        || (s->stderr_file && !s_str_ok(s->stderr_file, 1, PROTO_MAX_PATH)))
        return "output file malformed";
    if ((s->stdout_file || s->stderr_file || s->no_capture) && s->kind != PROTO_KIND_EXEC)
        return "output files on a function";
    return NULL;
}

static const char *s_result_bad(const proto_result_t *r)
{
    /* Attempt 0: a task the master ended before any dispatch (cancelled
       or dep_failed while queued; proto_result.c). */
    if (r->task < 1 || r->attempt < 0)
        return "task below 1 or attempt below 0";
    if (r->status != PROTO_ST_DONE && r->status != PROTO_ST_FAILED
        && r->status != PROTO_ST_CANCELLED)
        return "status is not a final state";
    if (r->signal < 0 || r->signal > 1024)
        return "signal out of range";
    if (!s_str_ok(r->stdout_data, 0, 0) || !s_str_ok(r->stderr_data, 0, 0)
        || !s_str_ok(r->error, 0, 0) || !s_str_ok(r->result_json, 0, 0))
        return "a text field is not UTF-8";
    if (!isfinite(r->started) || !isfinite(r->finished) || r->started < 0 || r->finished < 0)
        return "times out of range";
    return NULL;
}

/* ---------------------------------------------------------------- spec */

fuzz_verdict_t fuzz_spec_stable(const proto_spec_t *spec, const char *what, char *why,
                                size_t whylen)
{
    const char *bad = s_spec_bad(spec);
    if (bad)
        return fuzz_broken(why, whylen, "%s: %s", what, bad);
    proto_err_t err = { { 0 }, { 0 } };
    char *t1 = proto_spec_encode(spec);
    proto_spec_t *again = t1 ? proto_spec_decode(t1, strlen(t1), &err) : NULL;
    char *t2 = again ? proto_spec_encode(again) : NULL;
    fuzz_verdict_t v = s_same(what, t1, t2, &err, why, whylen);
    proto_spec_destroy(&again);
    free(t1);
    free(t2);
    return v;
}

fuzz_verdict_t fuzz_check_spec(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    proto_err_t err = { { 0 }, { 0 } };
    proto_spec_t *spec = proto_spec_decode((const char *) data, size, &err);
    if (!spec)
        return s_refused("spec", &err, why, whylen);
    const char *bad = s_spec_bad(spec);
    char *t1 = proto_spec_encode(spec);
    proto_spec_t *dup = proto_spec_dup(spec);
    char *tdup = proto_spec_encode(dup);
    proto_spec_destroy(&dup);
    proto_spec_destroy(&spec);
    proto_spec_t *again = t1 ? proto_spec_decode(t1, strlen(t1), &err) : NULL;
    char *t2 = again ? proto_spec_encode(again) : NULL;
    fuzz_verdict_t v;
    if (bad)
        v = fuzz_broken(why, whylen, "decoded spec: %s", bad);
    else if ((v = s_same("spec", t1, t2, &err, why, whylen)) == FUZZ_ACCEPTED)
        v = s_same("spec copy", t1, tdup, &err, why, whylen);
    proto_spec_destroy(&again);
    free(t1);
    free(t2);
    free(tdup);
    return v;
}

/* ---------------------------------------------------------------- result */

static bool s_str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Field by field, doubles bit for bit: what the fast path read must be
   what cJSON read. NULL when equal, else the first field that differs. */
static const char *s_result_diff(const proto_result_t *a, const proto_result_t *b)
{
    if (a->task != b->task || a->attempt != b->attempt || a->status != b->status)
        return "task, attempt or status";
    if (a->has_exit_code != b->has_exit_code || a->exit_code != b->exit_code
        || a->signal != b->signal || a->timed_out != b->timed_out)
        return "exit_code, signal or timed_out";
    if (!s_str_eq(a->stdout_data, b->stdout_data) || !s_str_eq(a->stderr_data, b->stderr_data))
        return "stdout or stderr";
    if (a->stdout_truncated != b->stdout_truncated || a->stderr_truncated != b->stderr_truncated)
        return "a truncated flag";
    if (!s_str_eq(a->result_json, b->result_json) || !s_str_eq(a->error, b->error))
        return "result or error";
    if (memcmp(&a->started, &b->started, sizeof a->started) != 0
        || memcmp(&a->finished, &b->finished, sizeof a->finished) != 0)
        return "started or finished";
    if (strcmp(a->claim, b->claim) != 0)
        return "claim";
    return NULL;
}

/* What the fast path keeps as the stored text: the same result without
   its claim token (s_text_without in proto_fast.c). NULL when it is. */
static const char *s_text_diff(const proto_result_t *fast, const proto_result_t *slow)
{
    if (!fast->text)
        return NULL;
    proto_err_t err = { { 0 }, { 0 } };
    proto_result_t *stored = pr_result_decode_tree(fast->text, strlen(fast->text), &err);
    if (!stored)
        return "stored text that cJSON refuses";
    proto_result_t want = *slow;
    want.claim[0] = '\0';
    const char *diff = stored->claim[0] ? "stored text with a claim" : s_result_diff(stored, &want);
    proto_result_destroy(&stored);
    return diff;
}

/* The fast path may decline anything, but what it accepts cJSON must
   accept too, with the same values. */
static fuzz_verdict_t s_fast_result_agrees(const uint8_t *data, size_t size, char *why,
                                           size_t whylen)
{
    proto_result_t *fast = pf_result((const char *) data, size);
    if (!fast)
        return FUZZ_ACCEPTED;
    proto_err_t err = { { 0 }, { 0 } };
    proto_result_t *slow = pr_result_decode_tree((const char *) data, size, &err);
    const char *diff = slow ? s_result_diff(fast, slow) : NULL;
    if (slow && !diff)
        diff = s_text_diff(fast, slow);
    fuzz_verdict_t v = !slow ? fuzz_broken(why, whylen, "fast path took a result cJSON refuses "
                                           "(%s: %s)", err.code, err.message)
                       : diff ? fuzz_broken(why, whylen, "fast path read another %s", diff)
                              : FUZZ_ACCEPTED;
    proto_result_destroy(&fast);
    proto_result_destroy(&slow);
    return v;
}

fuzz_verdict_t fuzz_check_result(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    if (s_fast_result_agrees(data, size, why, whylen) != FUZZ_ACCEPTED)
        return FUZZ_BROKEN;
    proto_err_t err = { { 0 }, { 0 } };
    proto_result_t *res = proto_result_decode((const char *) data, size, &err);
    if (!res)
        return s_refused("result", &err, why, whylen);
    const char *bad = s_result_bad(res);
    char *t1 = proto_result_encode(res);
    proto_result_destroy(&res);
    proto_result_t *again = t1 ? proto_result_decode(t1, strlen(t1), &err) : NULL;
    char *t2 = again ? proto_result_encode(again) : NULL;
    fuzz_verdict_t v = bad ? fuzz_broken(why, whylen, "decoded result: %s", bad)
                           : s_same("result", t1, t2, &err, why, whylen);
    proto_result_destroy(&again);
    free(t1);
    free(t2);
    return v;
}

/* ---------------------------------------------------------------- requests */

static const char *s_req_bad(const proto_req_t *r)
{
    if (r->type < PROTO_REQ_SUBMIT || r->type > PROTO_REQ_LAST)
        return "type out of range";
    if (r->job < 0 || r->task < 0 || r->index < -1 || r->after < 0 || r->out_offset < 0
        || r->err_offset < 0)
        return "an id or offset is negative";
    if (r->limit < 1 || r->limit > 10000)
        return "limit out of range";
    if (r->name && !s_str_ok(r->name, 1, PROTO_MAX_NAME))
        return "name malformed";
    if (r->type == PROTO_REQ_SUBMIT) {
        if (r->ntasks < 0 || r->ntasks > PROTO_MAX_SUBMIT_BATCH || (r->ntasks && !r->tasks))
            return "tasks count out of range";
        for (int i = 0; i < r->ntasks; i++) {
            const char *bad = s_spec_bad(r->tasks[i]);
            if (bad)
                return bad;
        }
    }
    if (r->type == PROTO_REQ_DRAIN && !s_str_ok(r->worker, 1, PROTO_MAX_NAME))
        return "drain without a worker";
    if (r->type == PROTO_REQ_LOGS && r->task == 0 && (r->job == 0 || r->index < 0))
        return "logs without task or job+index";
    if ((r->type == PROTO_REQ_CANCEL || r->type == PROTO_REQ_HOLD
         || r->type == PROTO_REQ_RELEASE)
        && r->task == 0 && r->job == 0)
        return "cancel/hold/release without job or task";
    if ((r->type == PROTO_REQ_PRIORITY || r->type == PROTO_REQ_LIMIT) && r->job < 1)
        return "priority/limit without a job";
    if (r->max_running < 0 || r->max_running > PROTO_MAX_RUNNING_LIMIT)
        return "max_running out of range";
    if (r->definition && strlen(r->definition) > PROTO_MAX_DEFINITION)
        return "definition over its limit";
    if (r->nfunctions > 4096 || !s_strv_ok(r->functions, r->nfunctions, 1, PROTO_MAX_NAME))
        return "hello functions malformed";
    if (r->type == PROTO_REQ_RETRY && r->job < 1)
        return "retry without a job";
    if (r->nindexes < 0 || r->nindexes > PROTO_MAX_INDEXES || (r->nindexes && !r->indexes))
        return "indexes count out of range";
    for (int i = 0; i < r->nindexes; i++)
        if (r->indexes[i] < 0)
            return "an index is negative";
    if (r->type == PROTO_REQ_HELLO) {
        if (!s_str_ok(r->host, 1, PROTO_MAX_NAME) || r->threads < 1 || r->pid < 0)
            return "hello host/threads/pid malformed";
        if (r->nlabels > MAX_LABELS || !s_strv_ok(r->labels, r->nlabels, 1, PROTO_MAX_NAME))
            return "hello labels malformed";
        for (int i = 0; i < r->nrunning; i++)
            if (r->running[i].task < 1 || r->running[i].attempt < 1)
                return "hello running ref below 1";
    }
    return NULL;
}

/* Specs compared through their normalized text (every field, doubles
   in their shortest exact form). */
static bool s_spec_same(const proto_spec_t *a, const proto_spec_t *b)
{
    char *ta = proto_spec_encode(a), *tb = proto_spec_encode(b);
    bool same = ta && tb && strcmp(ta, tb) == 0 && a->stdin_len == b->stdin_len
                && a->kind == b->kind;
    free(ta);
    free(tb);
    return same;
}

static fuzz_verdict_t s_fast_req_agrees(const uint8_t *data, size_t size, char *why,
                                        size_t whylen)
{
    proto_req_t *fast = pf_submit((const char *) data, size);
    if (!fast)
        return FUZZ_ACCEPTED;
    proto_err_t err = { { 0 }, { 0 } };
    proto_req_t *slow = pr_req_decode_tree((const char *) data, size, &err);
    fuzz_verdict_t v = FUZZ_ACCEPTED;
    if (!slow)
        v = fuzz_broken(why, whylen, "fast path took a submit cJSON refuses (%s: %s)", err.code,
                        err.message);
    else if (slow->type != fast->type || slow->job != fast->job || slow->more != fast->more
             || !s_str_eq(slow->name, fast->name) || !s_str_eq(slow->key, fast->key)
             || slow->ntasks != fast->ntasks || slow->wait_ms != fast->wait_ms
             || slow->max_running != fast->max_running
             || !s_str_eq(slow->definition, fast->definition) || slow->ndeps != fast->ndeps)
        v = fuzz_broken(why, whylen,
                        "fast path read another job, name, key, more, wait_ms, max_running, "
                        "definition, dependencies or task count");
    for (int i = 0; v == FUZZ_ACCEPTED && i < fast->ntasks; i++)
        if (!s_spec_same(fast->tasks[i], slow->tasks[i]))
            v = fuzz_broken(why, whylen, "fast path read another spec in tasks[%d]", i);
    proto_req_destroy(&fast);
    proto_req_destroy(&slow);
    return v;
}

fuzz_verdict_t fuzz_check_req(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    if (s_fast_req_agrees(data, size, why, whylen) != FUZZ_ACCEPTED)
        return FUZZ_BROKEN;
    proto_err_t err = { { 0 }, { 0 } };
    proto_req_t *req = proto_req_decode((const char *) data, size, &err);
    if (!req)
        return s_refused("request", &err, why, whylen);
    const char *bad = s_req_bad(req);
    char *t1 = proto_req_encode(req);
    proto_req_destroy(&req);
    proto_req_t *again = t1 ? proto_req_decode(t1, strlen(t1), &err) : NULL;
    char *t2 = again ? proto_req_encode(again) : NULL;
    fuzz_verdict_t v = bad ? fuzz_broken(why, whylen, "decoded request: %s", bad)
                           : s_same("request", t1, t2, &err, why, whylen);
    proto_req_destroy(&again);
    free(t1);
    free(t2);
    return v;
}

/* ---------------------------------------------------------------- replies */

/* The record encoders are also the CLI's --json output: each record must
   decode again when put back inside a reply. */
static fuzz_verdict_t s_records_ok(const proto_reply_t *rep, char *why, size_t whylen)
{
    for (int i = 0; i < rep->njobs; i++) {
        char *t = proto_job_encode(&rep->jobs[i]);
        char *frame = xasprintf("{\"v\":1,\"type\":\"reply\",\"ok\":true,\"jobs\":[%s]}", t);
        proto_err_t err = { { 0 }, { 0 } };
        proto_reply_t *r = proto_reply_decode(frame, strlen(frame), PROTO_REQ_JOBS, &err);
        const char *state = proto_job_state_name(&rep->jobs[i]);
        free(frame);
        free(t);
        if (!r)
            return fuzz_broken(why, whylen, "job record does not decode: %s", err.message);
        proto_reply_destroy(&r);
        if (!state || !*state)
            return fuzz_broken(why, whylen, "job without a state name");
    }
    for (int i = 0; i < rep->ntasks; i++) {
        char *t = proto_task_info_encode(&rep->tasks[i]);
        char *frame = xasprintf("{\"v\":1,\"type\":\"reply\",\"ok\":true,\"tasks\":[%s]}", t);
        proto_err_t err = { { 0 }, { 0 } };
        proto_reply_t *r = proto_reply_decode(frame, strlen(frame), PROTO_REQ_RESULTS, &err);
        free(frame);
        free(t);
        if (!r)
            return fuzz_broken(why, whylen, "task record does not decode: %s", err.message);
        proto_reply_destroy(&r);
    }
    for (int i = 0; i < rep->nworkers; i++) {
        char *t = proto_worker_info_encode(&rep->workers[i]);
        char *frame = xasprintf("{\"v\":1,\"type\":\"reply\",\"ok\":true,\"workers\":[%s]}", t);
        proto_err_t err = { { 0 }, { 0 } };
        proto_reply_t *r = proto_reply_decode(frame, strlen(frame), PROTO_REQ_WORKERS, &err);
        free(frame);
        free(t);
        if (!r)
            return fuzz_broken(why, whylen, "worker record does not decode: %s", err.message);
        proto_reply_destroy(&r);
    }
    char *t = proto_stats_encode(&rep->stats);
    char *frame = xasprintf("{\"v\":1,\"type\":\"reply\",\"ok\":true,\"stats\":%s}", t);
    proto_err_t err = { { 0 }, { 0 } };
    proto_reply_t *r = proto_reply_decode(frame, strlen(frame), PROTO_REQ_STATS, &err);
    free(frame);
    free(t);
    if (!r)
        return fuzz_broken(why, whylen, "stats record does not decode: %s", err.message);
    proto_reply_destroy(&r);
    return FUZZ_ACCEPTED;
}

/* A reply's meaning depends on the request it answers, which the frame
   does not say: every input is decoded as the reply to each request type. */
fuzz_verdict_t fuzz_check_reply(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    fuzz_verdict_t verdict = FUZZ_REJECTED;
    for (int type = PROTO_REQ_SUBMIT; type <= PROTO_REQ_LAST; type++) {
        proto_err_t err = { { 0 }, { 0 } };
        proto_reply_t *rep = proto_reply_decode((const char *) data, size,
                                                (proto_req_type_t) type, &err);
        if (!rep) {
            if (s_refused("reply", &err, why, whylen) == FUZZ_BROKEN)
                return FUZZ_BROKEN;
            continue;
        }
        fuzz_verdict_t v = FUZZ_ACCEPTED;
        /* The receiver shows and logs both: one line each. */
        if (!rep->ok && (!memchr(rep->error.code, '\0', sizeof rep->error.code)
                         || !memchr(rep->error.message, '\0', sizeof rep->error.message)))
            v = fuzz_broken(why, whylen, "failed reply with an unterminated error");
        else if (!rep->ok && (!fuzz_one_line(rep->error.code)
                              || (rep->error.message[0] && !fuzz_one_line(rep->error.message))))
            v = fuzz_broken(why, whylen, "failed reply whose code or message is not one line "
                            "of UTF-8: \"%.40s\" \"%.200s\"", rep->error.code,
                            rep->error.message);
        if (v == FUZZ_ACCEPTED && rep->ok)
            v = s_records_ok(rep, why, whylen);
        char *t1 = proto_reply_encode(rep, (proto_req_type_t) type);
        proto_reply_destroy(&rep);
        proto_reply_t *again =
            t1 ? proto_reply_decode(t1, strlen(t1), (proto_req_type_t) type, &err) : NULL;
        char *t2 = again ? proto_reply_encode(again, (proto_req_type_t) type) : NULL;
        if (v == FUZZ_ACCEPTED)
            v = s_same("reply", t1, t2, &err, why, whylen);
        proto_reply_destroy(&again);
        free(t1);
        free(t2);
        if (v == FUZZ_BROKEN) {
            size_t n = strlen(why);
            snprintf(why + n, whylen - n, " (as the reply to request type %d)", type);
            return v;
        }
        verdict = FUZZ_ACCEPTED;
    }
    return verdict;
}

/* ---------------------------------------------------------------- pipe */

/* What task t was given, as the members the master adds to its object
   ("cpus":N,"gpus":"0,1"), or NULL for nothing (caller frees). cJSON
   writes them, escapes included: a decoded "gpus" may hold anything. */
static char *s_grant_text(const proto_task_t *t)
{
    if (t->cpus <= 0 && !t->gpus)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    if (t->cpus > 0)
        cJSON_AddNumberToObject(o, "cpus", t->cpus);
    if (t->gpus)
        cJSON_AddStringToObject(o, "gpus", t->gpus);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    size_t len = strlen(text);                  /* {...}: the members alone */
    memmove(text, text + 1, len - 2);
    text[len - 2] = '\0';
    return text;
}

/* The master's hot path pastes stored spec texts into a frame: it must
   decode to what the struct encoder writes, with each task's grant. */
static fuzz_verdict_t s_pipe_raw_same(const proto_pipe_t *msg, const char *t1, char *why,
                                      size_t whylen)
{
    int n = msg->ntasks;
    int64_t *ids = xcalloc((size_t) n + 1, sizeof *ids);
    int64_t *jobs = xcalloc((size_t) n + 1, sizeof *jobs);
    int *attempts = xcalloc((size_t) n + 1, sizeof *attempts);
    char **specs = xcalloc((size_t) n + 1, sizeof *specs);
    char **grants = xcalloc((size_t) n + 1, sizeof *grants);
    const char **claims = xcalloc((size_t) n + 1, sizeof *claims);
    for (int i = 0; i < n; i++) {
        ids[i] = msg->tasks[i].id;
        jobs[i] = msg->tasks[i].job;
        attempts[i] = msg->tasks[i].attempt;
        specs[i] = proto_spec_encode(msg->tasks[i].spec);
        claims[i] = msg->tasks[i].claim;
        grants[i] = s_grant_text(&msg->tasks[i]);
    }
    char *raw = proto_pipe_encode_tasks_out(
        &(proto_tasks_out_t){.n = n,
                             .ids = ids,
                             .attempts = attempts,
                             .jobs = jobs,
                             .specs = (const char *const *) specs,
                             .grants = (const char *const *) grants,
                             .claims = claims,
                             .seq = msg->seq});
    proto_err_t err = { { 0 }, { 0 } };
    proto_pipe_t *back = proto_pipe_decode(raw, strlen(raw), &err);
    char *t2 = back ? proto_pipe_encode(back) : NULL;
    fuzz_verdict_t v = s_same("pipe tasks (raw encoder)", t1, t2, &err, why, whylen);
    proto_pipe_destroy(&back);
    free(t2);
    free(raw);
    for (int i = 0; i < n; i++) {
        free(specs[i]);
        free(grants[i]);
    }
    free(specs);
    free(grants);
    free(claims);
    free(attempts);
    free(jobs);
    free(ids);
    return v;
}

static fuzz_verdict_t s_fast_pipe_agrees(const uint8_t *data, size_t size, char *why,
                                         size_t whylen)
{
    proto_pipe_t *fast = pf_tasks((const char *) data, size);
    if (!fast)
        return FUZZ_ACCEPTED;
    proto_err_t err = { { 0 }, { 0 } };
    proto_pipe_t *slow = pr_pipe_decode_tree((const char *) data, size, &err);
    fuzz_verdict_t v = FUZZ_ACCEPTED;
    if (!slow)
        v = fuzz_broken(why, whylen, "fast path took a tasks message cJSON refuses (%s: %s)",
                        err.code, err.message);
    else if (slow->type != fast->type || slow->ntasks != fast->ntasks || slow->seq != fast->seq)
        v = fuzz_broken(why, whylen, "fast path read another type, task count or seq");
    for (int i = 0; v == FUZZ_ACCEPTED && i < fast->ntasks; i++) {
        const proto_task_t *a = &fast->tasks[i], *b = &slow->tasks[i];
        if (a->id != b->id || a->attempt != b->attempt || a->job != b->job
            || strcmp(a->claim, b->claim) != 0 || a->claim_refused != b->claim_refused
            || !s_spec_same(a->spec, b->spec))
            v = fuzz_broken(why, whylen, "fast path read another task %d", i);
    }
    proto_pipe_destroy(&fast);
    proto_pipe_destroy(&slow);
    return v;
}

fuzz_verdict_t fuzz_check_pipe(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    if (s_fast_pipe_agrees(data, size, why, whylen) != FUZZ_ACCEPTED)
        return FUZZ_BROKEN;
    proto_err_t err = { { 0 }, { 0 } };
    proto_pipe_t *msg = proto_pipe_decode((const char *) data, size, &err);
    if (!msg)
        return s_refused("pipe message", &err, why, whylen);
    const char *bad = NULL;
    if (msg->type < PROTO_PIPE_TASKS || msg->type > PROTO_PIPE_RECALL)
        bad = "type out of range";
    if (!bad && (msg->nrefs > PROTO_MAX_RECALL || (msg->nrefs && msg->type != PROTO_PIPE_RECALL)))
        bad = "recall refs over the bound or on another type";
    for (int i = 0; !bad && i < msg->nrefs; i++)
        if (msg->refs[i].task < 1 || msg->refs[i].attempt < 1)
            bad = "recall ref below 1";
    for (int i = 0; !bad && i < msg->ntasks; i++) {
        const proto_task_t *t = &msg->tasks[i];
        if (t->id < 1 || t->attempt < 1 || t->job < 1 || !t->spec)
            bad = "task id/attempt/job below 1 or no spec";
        else
            bad = s_spec_bad(t->spec);
    }
    if (!bad && (msg->seq < 0 || msg->seq > PROTO_MAX_SEQ || (msg->seq && msg->type != PROTO_PIPE_TASKS)))
        bad = "seq out of range or on another type";
    if (!bad && msg->type == PROTO_PIPE_ABORT && (msg->task < 1 || msg->attempt < 1))
        bad = "abort task/attempt below 1";
    char *t1 = proto_pipe_encode(msg);
    fuzz_verdict_t v = bad ? fuzz_broken(why, whylen, "decoded pipe message: %s", bad)
                           : FUZZ_ACCEPTED;
    if (v == FUZZ_ACCEPTED && t1 && msg->type == PROTO_PIPE_TASKS)
        v = s_pipe_raw_same(msg, t1, why, whylen);
    proto_pipe_destroy(&msg);
    proto_pipe_t *again = t1 ? proto_pipe_decode(t1, strlen(t1), &err) : NULL;
    char *t2 = again ? proto_pipe_encode(again) : NULL;
    if (v == FUZZ_ACCEPTED)
        v = s_same("pipe message", t1, t2, &err, why, whylen);
    proto_pipe_destroy(&again);
    free(t1);
    free(t2);
    return v;
}

/* ---------------------------------------------------------------- report */

/* The worker's hot path pastes results encoded by pool threads into the
   envelope: it must decode to what the struct encoder writes. */
static fuzz_verdict_t s_results_raw_same(const proto_report_t *msg, const char *t1, char *why,
                                         size_t whylen)
{
    int n = msg->nresults;
    char **texts = xcalloc((size_t) n + 1, sizeof *texts);
    for (int i = 0; i < n; i++)
        texts[i] = proto_result_encode(msg->results[i]);
    char *raw = proto_report_encode_results_raw(msg->worker, n, (const char *const *) texts);
    proto_err_t err = { { 0 }, { 0 } };
    proto_report_t *back = proto_report_decode(raw, strlen(raw), &err);
    char *t2 = back ? proto_report_encode(back) : NULL;
    fuzz_verdict_t v = s_same("results report (raw encoder)", t1, t2, &err, why, whylen);
    proto_report_destroy(&back);
    free(t2);
    free(raw);
    for (int i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    return v;
}

static const char *s_report_bad(const proto_report_t *m)
{
    if (m->type < PROTO_REP_HEARTBEAT || m->type > PROTO_REP_LOST)
        return "type out of range";
    if (m->nrecalled > PROTO_MAX_RECALL || (m->nrecalled && m->type != PROTO_REP_RECALLED))
        return "recalled refs over the bound or on another type";
    for (int i = 0; i < m->nrecalled; i++)
        if (m->recalled[i].task < 1 || m->recalled[i].attempt < 1)
            return "recalled ref below 1";
    if (m->nlost > PROTO_MAX_ENDED || (m->nlost && m->type != PROTO_REP_LOST))
        return "lost refs over the bound or on another type";
    for (int i = 0; i < m->nlost; i++)
        if (m->lost[i].task < 1 || m->lost[i].attempt < 1)
            return "lost ref below 1";
    if (!s_str_ok(m->worker, 1, PROTO_MAX_NAME))
        return "worker malformed";
    for (int i = 0; i < m->nrunning; i++)
        if (m->running[i].task < 1 || m->running[i].attempt < 1)
            return "running ref below 1";
    if (m->seen < 0 || m->seen > PROTO_MAX_SEQ || (m->seen && m->type != PROTO_REP_HEARTBEAT))
        return "seen out of range or on another type";
    for (int i = 0; i < m->nstarted; i++)
        if (m->started[i].task < 1 || m->started[i].attempt < 1 || !isfinite(m->started_at[i])
            || m->started_at[i] < 0)
            return "started entry out of range";
    if (m->type == PROTO_REP_OUTPUT
        && (m->task < 1 || m->attempt < 1 || (m->stream != 1 && m->stream != 2)
            || !m->data || !s_str_ok(m->data, 0, 0)))
        return "output fields out of range";
    for (int i = 0; i < m->nresults; i++) {
        const char *bad = s_result_bad(m->results[i]);
        if (bad)
            return bad;
    }
    return NULL;
}

static fuzz_verdict_t s_fast_report_agrees(const uint8_t *data, size_t size, char *why,
                                           size_t whylen)
{
    proto_report_t *fast = pf_results_report((const char *) data, size);
    if (!fast)
        return FUZZ_ACCEPTED;
    proto_err_t err = { { 0 }, { 0 } };
    proto_report_t *slow = pr_report_decode_tree((const char *) data, size, &err);
    fuzz_verdict_t v = FUZZ_ACCEPTED;
    if (!slow)
        v = fuzz_broken(why, whylen, "fast path took a report cJSON refuses (%s: %s)", err.code,
                        err.message);
    else if (slow->type != fast->type || !s_str_eq(slow->worker, fast->worker)
             || slow->nresults != fast->nresults)
        v = fuzz_broken(why, whylen, "fast path read another type, worker or result count");
    for (int i = 0; v == FUZZ_ACCEPTED && i < fast->nresults; i++) {
        const char *diff = s_result_diff(fast->results[i], slow->results[i]);
        if (diff)
            v = fuzz_broken(why, whylen, "fast path read another %s in results[%d]", diff, i);
    }
    proto_report_destroy(&fast);
    proto_report_destroy(&slow);
    return v;
}

fuzz_verdict_t fuzz_check_report(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    if (s_fast_report_agrees(data, size, why, whylen) != FUZZ_ACCEPTED)
        return FUZZ_BROKEN;
    proto_err_t err = { { 0 }, { 0 } };
    proto_report_t *msg = proto_report_decode((const char *) data, size, &err);
    if (!msg)
        return s_refused("report", &err, why, whylen);
    const char *bad = s_report_bad(msg);
    char *t1 = proto_report_encode(msg);
    fuzz_verdict_t v = bad ? fuzz_broken(why, whylen, "decoded report: %s", bad)
                           : FUZZ_ACCEPTED;
    if (v == FUZZ_ACCEPTED && t1 && msg->type == PROTO_REP_RESULTS)
        v = s_results_raw_same(msg, t1, why, whylen);
    proto_report_destroy(&msg);
    proto_report_t *again = t1 ? proto_report_decode(t1, strlen(t1), &err) : NULL;
    char *t2 = again ? proto_report_encode(again) : NULL;
    if (v == FUZZ_ACCEPTED)
        v = s_same("report", t1, t2, &err, why, whylen);
    proto_report_destroy(&again);
    free(t1);
    free(t2);
    return v;
}
