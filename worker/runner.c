#include "runner.h"

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/util.h"
#include "exec.h"

#include <assert.h>
#include <stddef.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A RESULTS report must fit the master's PROTO_MAX_REPORT_MSG or libzmq
   drops the connection. One result alone may not exceed this; what does is
   cut down (see s_encode_result). The slack leaves room for the report
   envelope and a few small results joined with it. */
#define RESULT_MAX_BYTES ((size_t) PROTO_MAX_REPORT_MSG - 64 * 1024)

typedef struct {
    exec_kit_t *kit;    /* NULL if it could not be made */
    reaper_slot_t *slot;  /* this thread's in the reaper's table, or NULL */
} runner_thread_t;

runner_task_t *runner_task_new(int64_t id, int64_t job, int attempt, proto_spec_t **spec,
                               const char *worker_id)
{
    assert(spec && *spec);   /* a task without a spec could not run */
    runner_task_t *t = xcalloc(1, sizeof *t);
    t->id = id;
    t->job = job;
    t->attempt = attempt;
    t->spec = *spec;
    *spec = NULL;
    t->worker_id = xstrdup(worker_id ? worker_id : "");
    atomic_init(&t->cancel, false);
    atomic_init(&t->state, RUNNER_QUEUED);
    return t;
}

void runner_task_destroy(runner_task_t **p)
{
    if (!p || !*p)
        return;
    runner_task_t *t = *p;
    proto_spec_destroy(&t->spec);
    free(t->worker_id);
    free(t->gpus);
    free(t);
    *p = NULL;
}

int runner_msg_parse(const void *data, size_t size, runner_msg_t *hdr, const char **payload,
                     size_t *payload_len)
{
    if (size < sizeof *hdr)
        return -1;
    memcpy(hdr, data, sizeof *hdr);
    switch (hdr->tag) {
    case RUNNER_MSG_OUTPUT:
    case RUNNER_MSG_RESULT:
    case RUNNER_MSG_RELEASE:
        break;
    default:
        return -1;
    }
    *payload = (const char *) data + sizeof *hdr;
    *payload_len = size - sizeof *hdr;
    return 0;
}

char *runner_result_now(int64_t id, int attempt, const char *claim, proto_state_t status,
                        const char *error)
{
    proto_result_t *res = proto_result_new();
    if (!res)
        return NULL;
    res->task = id;
    res->attempt = attempt;
    if (claim)
        snprintf(res->claim, sizeof res->claim, "%s", claim);
    res->status = status;
    res->error = xstrdup(error);
    res->started = res->finished = clock_wall();
    char *json = proto_result_encode(res);
    proto_result_destroy(&res);
    return json;
}

/* ---- the thread's channel to the session ---- */

/* A message's header (the frame starts with it). */
static runner_msg_t s_header(int tag, runner_task_t *t, int64_t id, int attempt)
{
    runner_msg_t hdr;
    memset(&hdr, 0, sizeof hdr);
    hdr.tag = tag;
    hdr.id = id;
    hdr.attempt = attempt;
    hdr.task = t;
    return hdr;
}

/* Sends one message to the session. The task pointer must not be used by
   the caller after a RESULT or RELEASE. */
static void s_send(runner_ctx_t *ctx, int tag, runner_task_t *t, int64_t id, int attempt,
                   const char *payload, size_t len)
{
    runner_msg_t hdr = s_header(tag, t, id, attempt);
    mailbox_put(ctx->mailbox, &hdr, sizeof hdr, payload, len);
}

static void *s_thread_init(int index, void *arg)
{
    runner_ctx_t *ctx = arg;
    runner_thread_t *th = xcalloc(1, sizeof *th);
    th->kit = exec_kit_new();
    th->slot = ctx->reaper ? reaper_slot(ctx->reaper, index) : NULL;
    return th;
}

static void s_thread_fini(void *state, void *arg)
{
    (void) arg;
    runner_thread_t *th = state;
    if (!th)
        return;
    exec_kit_destroy(&th->kit);
    free(th);
}

/* ---- live output ---- */

typedef struct {
    runner_ctx_t *ctx;
    const runner_task_t *task;
    int64_t cap;              /* bytes forwarded per stream at most */
    int64_t sent[2];
    char carry[2][4];         /* an incomplete UTF-8 sequence held back */
    size_t ncarry[2];
} output_ctx_t;

/* Bytes at the end of buf[0..n) that start a multi-byte UTF-8 sequence
   the chunk does not complete (0..3). Holding them for the next chunk keeps
   a character split across two reads from turning into two U+FFFD. */
static size_t s_incomplete_tail(const char *buf, size_t n)
{
    for (size_t i = 1; i <= 3 && i <= n; i++) {
        unsigned char c = (unsigned char) buf[n - i];
        if ((c & 0xC0) == 0x80)
            continue;             /* continuation byte: keep looking back */
        if (c < 0xC0)
            return 0;             /* ASCII */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        return need > i ? i : 0;
    }
    return 0;
}

/* Raw bytes per OUTPUT report at most: a burst (a task that printed its
   whole cap in one go is flushed at once when it ends) goes out as
   reports of this size, each made and handed on before the next, so the
   live copy of a burst is never held whole beside the capture. */
#define LIVE_PIECE ((size_t) 64 * 1024)

/* One OUTPUT report of raw bytes (they end on a character or are the
   last), sent to the session. */
static void s_output_report(output_ctx_t *o, int stream, const char *data, size_t len)
{
    proto_report_t *rep = proto_report_new(PROTO_REP_OUTPUT, o->task->worker_id);
    rep->task = o->task->id;
    rep->attempt = o->task->attempt;
    rep->stream = stream;
    rep->data_raw = data;   /* borrowed until the encode below */
    rep->data_raw_len = len;
    rep->raw_b64 = atomic_load_explicit(&o->ctx->report_b64, memory_order_relaxed);
    char *json = proto_report_encode(rep);
    proto_report_destroy(&rep);
    if (!json)
        return;
    s_send(o->ctx, RUNNER_MSG_OUTPUT, NULL, o->task->id, o->task->attempt, json, strlen(json));
    free(json);
}

/* exec's on_output: raw bytes in, OUTPUT reports out (LIVE_PIECE raw
   bytes each at most). Live output is a convenience (the result carries
   the captured output), so it stops at the task's output_cap per stream
   and is dropped on any error. */
static void s_on_output(void *arg, int stream, const char *data, size_t len)
{
    output_ctx_t *o = arg;
    if ((stream != 1 && stream != 2) || len == 0)
        return;
    int k = stream - 1;
    char piece[LIVE_PIECE + 4];
    while (len > 0 && o->sent[k] < o->cap) {
        size_t take = len < LIVE_PIECE ? len : LIVE_PIECE;
        size_t total = o->ncarry[k] + take;
        memcpy(piece, o->carry[k], o->ncarry[k]);
        memcpy(piece + o->ncarry[k], data, take);
        data += take;
        len -= take;
        size_t keep = s_incomplete_tail(piece, total);
        size_t use = total - keep;
        memcpy(o->carry[k], piece + use, keep);
        o->ncarry[k] = keep;
        if ((int64_t) use > o->cap - o->sent[k])
            use = (size_t) (o->cap - o->sent[k]);
        if (use == 0)
            continue;
        o->sent[k] += (int64_t) use;
        s_output_report(o, stream, piece, use);
    }
}

/* ---- one task ---- */

/* Cuts a stream to at most max bytes (on a character boundary). */
static void s_cut(char **data, bool *truncated, size_t max)
{
    if (!*data || strlen(*data) <= max)
        return;
    size_t n = max;
    while (n > 0 && ((unsigned char) (*data)[n] & 0xC0) == 0x80)
        n--;
    (*data)[n] = '\0';
    *truncated = true;
}

/* Room before a result's text for its mailbox frame's header. */
#define FRAME_HEAD (offsetof(mailbox_frame_t, data) + sizeof(runner_msg_t))

/* Encodes res after FRAME_HEAD bytes of room (*len: the text's length).
   A result too big for one report (a task with a huge output_cap that
   printed a lot of escapable bytes) keeps a cut-down output rather than
   being lost: each stream is cut to 1/16 of the limit (worst-case JSON
   escaping is 6x, two streams: well under the limit). The test is on the
   result with plain strings, what the master stores, whichever form the
   output travels in. */
static char *s_encode_result(proto_result_t *res, size_t *len, size_t *stored)
{
    if (proto_result_cut_raw(res, RESULT_MAX_BYTES, RESULT_MAX_BYTES / 16))
        log_warn("event=result_cut limit=%zu", RESULT_MAX_BYTES);
    char *buf = proto_result_encode_at(res, FRAME_HEAD, len, stored);
    if (buf && *len > RESULT_MAX_BYTES) {
        free(buf);
        s_cut(&res->stdout_data, &res->stdout_truncated, RESULT_MAX_BYTES / 16);
        s_cut(&res->stderr_data, &res->stderr_truncated, RESULT_MAX_BYTES / 16);
        if (res->result_json && strlen(res->result_json) > RESULT_MAX_BYTES / 2) {
            free(res->result_json);
            res->result_json = NULL;
            res->status = PROTO_ST_FAILED;
            free(res->error);
            res->error = xstrdup("the function's result is too large to report");
        }
        buf = proto_result_encode_at(res, FRAME_HEAD, len, stored);
        log_warn("event=result_cut limit=%zu", RESULT_MAX_BYTES);
    }
    if (!buf) {
        log_error("event=result_encode_failed");
        char *json = runner_result_now(res->task, res->attempt, res->claim, PROTO_ST_FAILED,
                                       "the worker could not encode this task's result");
        if (!json)
            return NULL;
        *len = *stored = strlen(json);
        buf = xmalloc(FRAME_HEAD + *len + 1);
        memcpy(buf + FRAME_HEAD, json, *len + 1);
        free(json);
    }
    return buf;
}

static void s_run(void *item, void *state, void *arg)
{
    runner_ctx_t *ctx = arg;
    runner_thread_t *th = state;
    runner_task_t *t = item;
    assert(th != NULL);   /* s_thread_init cannot fail */
    const int64_t id = t->id;
    const int attempt = t->attempt;
    int expected = RUNNER_QUEUED;
    if (!atomic_compare_exchange_strong(&t->state, &expected, RUNNER_RUNNING)) {
        /* The session ended it while it was queued (abort, hard stop). */
        s_send(ctx, RUNNER_MSG_RELEASE, t, id, attempt, NULL, 0);
        return;
    }
    log_set_task(id, attempt);
    double started = clock_wall();
    t->started_wall = started;
    atomic_store_explicit(&t->started_us, clock_mono_us(), memory_order_release);

    proto_result_t *res = proto_result_new();
    const proto_spec_t *spec = t->spec;
    log_debug("event=task_start kind=%s", spec->kind == PROTO_KIND_EXEC ? "exec" : "fn");
    if (atomic_load(&t->cancel)) {
        res->status = PROTO_ST_CANCELLED;
        res->error = xstrdup("cancelled before it started");
    } else if (spec->kind == PROTO_KIND_EXEC) {
        output_ctx_t out;
        memset(&out, 0, sizeof out);
        out.ctx = ctx;
        out.task = t;
        out.cap = spec->output_cap > 0 ? spec->output_cap : PROTO_DEFAULT_OUTPUT_CAP;
        exec_req_t req = {
            .spec = spec,
            .task_id = id,
            .job_id = t->job,
            .attempt = attempt,
            .kill_grace_ms = ctx->kill_grace_ms,
            .cancel = &t->cancel,
            .on_output = s_on_output,
            .arg = &out,
            .reset = &ctx->changed_signals,
            .kit = th->kit,
            .slot = th->slot,
            .policy = ctx->policy,
            .raw_output = true,
        };
        if (exec_run(&req, res) != 0)
            log_warn("event=exec_failed error=\"%s\"",
                     log_quote((char[512]){0}, 512, res->error ? res->error : "unknown"));
    } else if (spec->kind == PROTO_KIND_FN) {
        fn_run(ctx->fns, spec, id, t->job, attempt, &t->cancel, res);
    } else {
        res->status = PROTO_ST_FAILED;
        res->error = xstrdup("unknown task kind");
    }
    res->task = id;
    res->attempt = attempt;
    memcpy(res->claim, t->claim, sizeof res->claim);
    if (res->started <= 0)
        res->started = started;
    if (res->finished <= 0)
        res->finished = clock_wall();
    log_debug("event=task_end state=%s", proto_state_name(res->status));
    res->raw_b64 = atomic_load_explicit(&ctx->report_b64, memory_order_relaxed);
    /* Encoded once, destroyed right after -- unless the encoding may be
       over the limit and made again (s_encode_result), which needs the
       raw bytes intact: once cut_raw has cut the outputs (6 x 2 MiB at
       most each), only an error or fn result over 1 MiB can do that. */
    res->raw_release = (res->error ? strlen(res->error) : 0)
                           + (res->result_json ? strlen(res->result_json) : 0)
                       <= RESULT_MAX_BYTES / 32;
    size_t len = 0, stored = 0;
    char *buf = s_encode_result(res, &len, &stored);
    /* The capture goes before the result is handed on: it and the
       encoded result are the two copies a task's output has at most. */
    proto_result_destroy(&res);
    if (buf) {
        /* The frame is the result's own buffer: its header goes in the
           room left before the text, so the result is not copied. */
        runner_msg_t hdr = s_header(RUNNER_MSG_RESULT, t, id, attempt);
        hdr.stored = stored;
        mailbox_frame_t *f = (mailbox_frame_t *) buf;
        f->size = sizeof hdr + len;
        memcpy(f->data, &hdr, sizeof hdr);
        mailbox_put_frame(ctx->mailbox, &f);
    } else {
        s_send(ctx, RUNNER_MSG_RELEASE, t, id, attempt, NULL, 0);
    }
    /* t belongs to the session again from here. */
    log_clear_context();
}

void runner_pool_callbacks(runner_ctx_t *ctx, pool_callbacks_t *cb)
{
    memset(cb, 0, sizeof *cb);
    cb->init = s_thread_init;
    cb->run = s_run;
    cb->fini = s_thread_fini;
    cb->discard = NULL;     /* queued tasks stay in the session's table */
    cb->arg = ctx;
}
