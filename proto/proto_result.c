/*  Results: how one attempt of a task ended. The same members appear in a
    result object (stored by the master, sent in "results" reports) and,
    flattened, in task info records. */
#include "proto_hooks.h"
#include "proto_reader.h"
#include "proto_text.h"
#include "proto_writer.h"

#include "../common/util.h"

#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

proto_result_t *proto_result_new(void)
{
    proto_result_t *res = xcalloc(1, sizeof *res);
    /* A result nobody filled in must not read as a success. */
    res->status = PROTO_ST_FAILED;
    return res;
}

void proto_result_destroy(proto_result_t **p)
{
    if (!p || !*p)
        return;
    proto_result_t *r = *p;
    free(r->stdout_data);
    free(r->stderr_data);
    free(r->result_json);
    free(r->error);
    free(r->text);
    free(r->stdout_raw);
    free(r->stderr_raw);
    free(r);
    *p = NULL;
}

void proto_result_reset(proto_result_t *res, int64_t task, int attempt)
{
    free(res->stdout_data);
    free(res->stderr_data);
    free(res->result_json);
    free(res->error);
    free(res->text);
    free(res->stdout_raw);
    free(res->stderr_raw);
    memset(res, 0, sizeof *res);
    res->task = task;
    res->attempt = attempt;
    res->status = PROTO_ST_FAILED;
}

void proto_result_verror(proto_result_t *res, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    size_t size = (size_t) (n > 0 ? n : 0) + 1;
    char *text = xmalloc(size);
    vsnprintf(text, size, fmt, again);
    va_end(again);
    /* Errors quote what came from elsewhere (a plugin's message, a path,
       a program name): one line, so a reader of logs and tables sees one
       failure per line, and valid UTF-8, so the report carrying it is
       never refused. */
    char *clean = utf8_sanitize(text, strlen(text), NULL);
    free(text);
    for (char *c = clean; *c; c++)
        if (*c == '\n' || *c == '\r' || *c == '\t')
            *c = ' ';
    free(res->error);
    res->error = clean;
}

void proto_result_error(proto_result_t *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    proto_result_verror(res, fmt, ap);
    va_end(ap);
}

void proto_result_fail(proto_result_t *res, proto_state_t status, const char *fmt, ...)
{
    assert(status == PROTO_ST_FAILED || status == PROTO_ST_CANCELLED);
    res->status = status;
    free(res->result_json);
    res->result_json = NULL;
    va_list ap;
    va_start(ap, fmt);
    proto_result_verror(res, fmt, ap);
    va_end(ap);
}

static size_t s_result_write(pb_t *b, const proto_result_t *res, const size_t *plain);

void pr_result_members(pb_t *b, const proto_result_t *res)
{
    if (!res) {
        pb_lit(b, ",\"exit_code\":null,\"signal\":null,\"timed_out\":null,\"stdout\":null,"
                  "\"stderr\":null,\"stdout_truncated\":null,\"stderr_truncated\":null,"
                  "\"result\":null,\"error\":null,\"started\":null,\"finished\":null");
        return;
    }
    pb_key(b, "exit_code");
    if (res->has_exit_code)
        pb_i64(b, res->exit_code);
    else
        pb_lit(b, "null");
    pb_ki64(b, "signal", res->signal);
    pb_kbool(b, "timed_out", res->timed_out);
    pb_kstr(b, "stdout", res->stdout_data);
    pb_kstr(b, "stderr", res->stderr_data);
    pb_kbool(b, "stdout_truncated", res->stdout_truncated);
    pb_kbool(b, "stderr_truncated", res->stderr_truncated);
    pb_key(b, "result");
    pb_json(b, res->result_json);
    pb_kstr(b, "error", res->error);
    pb_ktime(b, "started", res->started);
    pb_ktime(b, "finished", res->finished);
}

/* The wire and stored form leaves out every member at its default: most
   results are a task that ran and returned nothing, and each member left
   out is one the worker does not print and the master does not parse,
   allocate or store (fn noop: ~110 bytes instead of ~280). Replies to
   clients spell every member out (pr_result_members). */
void pr_result_write(pb_t *b, const proto_result_t *res)
{
    s_result_write(b, res, NULL);
}

/* pr_result_write; returns how many bytes longer the result is with
   plain strings (as the master stores it) than as written. plain: NULL,
   or the raw outputs' plain lengths as pr_raw_len gave them (stdout,
   stderr), so that they are not scanned again. */
static size_t s_result_write(pb_t *b, const proto_result_t *res, const size_t *plain)
{
    size_t longer = 0;
    pb_char(b, '{');
    pb_ki64(b, "task", res->task);
    pb_ki64(b, "attempt", res->attempt);
    pb_kstr(b, "status", proto_state_name(res->status));
    if (res->has_exit_code)
        pb_ki64(b, "exit_code", res->exit_code);
    if (res->signal)
        pb_ki64(b, "signal", res->signal);
    if (res->timed_out)
        pb_kbool(b, "timed_out", true);
    if (res->stdout_raw)
        longer += pr_raw_member(b, "stdout", res->stdout_raw, res->stdout_raw_len,
                                plain ? plain[0] : 0, res->raw_b64, res->raw_release);
    else if (res->stdout_data)
        pb_kstr(b, "stdout", res->stdout_data);
    if (res->stderr_raw)
        longer += pr_raw_member(b, "stderr", res->stderr_raw, res->stderr_raw_len,
                                plain ? plain[1] : 0, res->raw_b64, res->raw_release);
    else if (res->stderr_data)
        pb_kstr(b, "stderr", res->stderr_data);
    if (res->stdout_truncated)
        pb_kbool(b, "stdout_truncated", true);
    if (res->stderr_truncated)
        pb_kbool(b, "stderr_truncated", true);
    if (res->result_json && strcmp(res->result_json, "null") != 0) {
        pb_key(b, "result");
        pb_json(b, res->result_json);
    }
    if (res->error)
        pb_kstr(b, "error", res->error);
    pb_ktime(b, "started", res->started);
    pb_ktime(b, "finished", res->finished);
    if (res->claim[0])
        pb_kstr(b, "claim", res->claim);
    pb_char(b, '}');
    return longer;
}

char *proto_result_encode(const proto_result_t *res)
{
    return proto_result_encode_at(res, 0, NULL, NULL);
}

char *proto_result_encode_at(const proto_result_t *res, size_t headroom, size_t *len,
                             size_t *stored)
{
    if (!res)
        return NULL;
    pb_t b;
    /* One allocation in the common case: the outputs dominate the size. */
    size_t hint = 384;
    if (res->stdout_data)
        hint += strlen(res->stdout_data);
    if (res->stderr_data)
        hint += strlen(res->stderr_data);
    if (res->error)
        hint += strlen(res->error);
    if (res->result_json)
        hint += strlen(res->result_json);
    size_t plain[2] = { 0, 0 };   /* the raw outputs' plain lengths, scanned once */
    if (res->stdout_raw || res->stderr_raw) {
        /* Sized once, exactly but for the small members: the outputs are
           most of it, and growing by doubling would hold the old and the
           new buffer at once (docs/worker.md, "Output capture"). */
        if (res->stdout_raw)
            hint += pr_raw_len(res->stdout_raw, res->stdout_raw_len, res->raw_b64, &plain[0]);
        if (res->stderr_raw)
            hint += pr_raw_len(res->stderr_raw, res->stderr_raw_len, res->raw_b64, &plain[1]);
        pb_init(&b, headroom + hint);
    } else {
        pb_init(&b, headroom + hint + hint / 16);
    }
    b.len = headroom;            /* the caller's; pr_result_write starts with '{' */
    size_t longer = s_result_write(&b, res, plain);
    if (len)
        *len = b.len - headroom;
    if (stored)
        *stored = b.len - headroom + longer;
    return pb_take(&b);
}

/* ------------------------------------------------------------ raw output */

size_t pr_raw_len(const char *raw, size_t n, bool b64, size_t *plain_len)
{
    size_t plain = pb_str_len(raw, n);
    if (plain_len)
        *plain_len = plain;
    size_t b = pb_b64_len(n) + 4;    /* "_b64" */
    return b64 && b < plain ? b : plain;
}

/* Raw bytes are encoded a slice at a time, and the pages of each slice
   given back to the kernel once it is written: the capture and its
   encoded form are then never both held whole (docs/worker.md, "Output
   capture"). A multiple of 3 (base64) and of the page size. */
#define RAW_SLICE ((size_t) 3 << 18)

/* The end of raw[0..n)'s slice that starts at i: at most RAW_SLICE
   bytes, moved back to a character (or bad byte) start. A byte that is
   not a continuation starts a unit; so does a continuation byte after
   three others (a character has at most three), which is then where the
   slice ends: moving back past the fourth would split the character
   the three before it may complete. */
static size_t s_slice_end(const char *raw, size_t n, size_t i, bool b64)
{
    if (n - i <= RAW_SLICE)
        return n;
    size_t end = i + RAW_SLICE;
    if (b64)
        return end;
    for (size_t k = 0; k <= 3; k++)
        if (((unsigned char) raw[end - k] & 0xC0) != 0x80)
            return end - k;
    return end;
}

size_t pr_raw_member(pb_t *b, const char *key, const char *raw, size_t n, size_t plain, bool b64,
                     bool release)
{
    /* The plain string when it is no longer (text, which the master then
       stores as it came, without decoding); base64 only where escaping
       or repair would make it longer. */
    if (b64 && !plain)
        plain = pb_str_len(raw, n);
    b64 = b64 && pb_b64_len(n) + 4 < plain;
    if (b64) {
        char k[32];
        snprintf(k, sizeof k, "%s_b64", key);
        pb_key(b, k);
    } else {
        pb_key(b, key);
    }
    pb_char(b, '"');
    size_t done = 0;
    while (done < n) {
        size_t end = s_slice_end(raw, n, done, b64);
        if (b64)
            pb_b64_part(b, raw + done, end - done);
        else
            pb_str_part(b, raw + done, end - done);
        if (release)
            mem_release(raw + done, end - done);
        done = end;
    }
    pb_char(b, '"');
    return b64 ? plain - (pb_b64_len(n) + 4) : 0;
}

static int s_b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes padded base64 s[0..n) into out (n / 4 * 3 bytes at least);
   the decoded length, or -1 when s is not padded base64. */
static ssize_t s_b64_decode(const char *s, size_t n, unsigned char *out)
{
    if (n % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char) s[i + (size_t) k];
            if (c == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad || (v[k] = s_b64_val(c)) < 0)
                return -1;
        }
        unsigned w = (unsigned) v[0] << 18 | (unsigned) v[1] << 12 | (unsigned) v[2] << 6
                     | (unsigned) v[3];
        out[o++] = (unsigned char) (w >> 16);
        if (pad < 2)
            out[o++] = (unsigned char) (w >> 8);
        if (pad < 1)
            out[o++] = (unsigned char) w;
    }
    return (ssize_t) o;
}

int pr_b64_text(cJSON *o, const char *k, char **out, size_t *room, proto_err_t *err)
{
    const cJSON *v = pj_get(o, k);
    if (!cJSON_IsString(v)) {
        proto_err_set(err, PROTO_E_FIELD, "field \"%s\" must be a base64 string", k);
        return -1;
    }
    size_t n = strlen(v->valuestring);
    if (n % 4) {
        proto_err_set(err, PROTO_E_FIELD, "field \"%s\" is not padded base64", k);
        return -1;
    }
    /* Each decoded byte is at least one byte stored: base64 too long for
       the room left is not decoded at all. */
    if (n / 4 * 3 > *room)
        return 1;
    /* Peak while decoding: the decoded bytes (3/4 of the base64), then
       the same buffer grown to the repaired text (utf8_sanitize_take),
       which the room bounds: no second copy of up to 3 x the bytes. */
    unsigned char *raw = xmalloc(n / 4 * 3 + 1);
    ssize_t len = s_b64_decode(v->valuestring, n, raw);
    if (len < 0) {
        free(raw);
        proto_err_set(err, PROTO_E_FIELD, "field \"%s\" is not padded base64", k);
        return -1;
    }
    size_t stored = pb_str_len((const char *) raw, (size_t) len);
    if (stored > *room) {
        free(raw);
        return 1;
    }
    *room -= stored;
    free(*out);
    *out = utf8_sanitize_take((char *) raw, (size_t) len, NULL);
    return 0;
}

int pr_output_text(cJSON *o, const char *k, bool required, char **out, size_t *room,
                   proto_err_t *err)
{
    char kb[32];
    snprintf(kb, sizeof kb, "%s_b64", k);
    if (pj_get(o, k) || !pj_get(o, kb)) {
        char *s = NULL;
        if (pj_str(o, k, required, 0, 0, &s, err) != 0)
            return -1;
        size_t stored = s ? pb_str_len(s, strlen(s)) : 0;
        if (stored > *room) {
            free(s);
            return 1;
        }
        *room -= stored;
        if (s) {
            free(*out);
            *out = s;
        }
        return 0;
    }
    return pr_b64_text(o, kb, out, room, err);
}

/* The sanitized length of raw[0..n) and, when over keep, the end of its
   longest prefix at most keep bytes once sanitized (*cut). */
static size_t s_sanitized_len(const char *raw, size_t n, size_t keep, size_t *cut)
{
    const unsigned char *p = (const unsigned char *) raw;
    size_t len = 0;
    *cut = n;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq_len(p + i, n - i);
        size_t unit = k ? k : 1, out = k ? k : 3;
        if (len + out > keep && *cut == n)
            *cut = i;
        len += out;
        i += unit;
    }
    return len;
}

bool proto_result_cut_raw(proto_result_t *res, size_t max, size_t keep)
{
    if (!res->stdout_raw && !res->stderr_raw)
        return false;
    /* Most results are under max even with every byte escaped (6 bytes
       for 1; the other members take well under 2 KiB): known without
       encoding the result an extra time, which every task would pay. */
    size_t bytes = res->stdout_raw_len + res->stderr_raw_len
                 + (res->error ? strlen(res->error) : 0)
                 + (res->result_json ? strlen(res->result_json) : 0);
    if (max > 2048 && bytes <= (max - 2048) / 6)
        return false;
    /* The result as the master stores it: plain strings. */
    char *outs[2] = {res->stdout_raw, res->stderr_raw};
    size_t lens[2] = {res->stdout_raw_len, res->stderr_raw_len};
    bool *trunc[2] = {&res->stdout_truncated, &res->stderr_truncated};
    res->stdout_raw = res->stderr_raw = NULL;
    char *rest = proto_result_encode(res);
    size_t total = strlen(rest);
    free(rest);
    for (int i = 0; i < 2; i++)
        if (outs[i])
            total += strlen(",\"stdout\":") + pb_str_len(outs[i], lens[i]);
    bool cut = false;
    for (int i = 0; i < 2; i++) {
        size_t at;
        if (total > max && outs[i] && s_sanitized_len(outs[i], lens[i], keep, &at) > keep) {
            lens[i] = at;
            *trunc[i] = true;
            cut = true;
        }
    }
    res->stdout_raw = outs[0];
    res->stderr_raw = outs[1];
    res->stdout_raw_len = lens[0];
    res->stderr_raw_len = lens[1];
    return cut;
}

int pr_result_members_from(cJSON *o, proto_result_t *res, bool req, size_t *room,
                           proto_err_t *err)
{
    cJSON *ec = pj_get(o, "exit_code");
    if (ec) {
        if (pj_int(o, "exit_code", true, INT_MIN, INT_MAX, &res->exit_code, err) != 0)
            return -1;
        res->has_exit_code = true;
    }
    int out = 0, err_out = 0;
    if (pj_int(o, "signal", false, 0, 1024, &res->signal, err) != 0
        || pj_bool(o, "timed_out", false, &res->timed_out, err) != 0
        || (out = pr_output_text(o, "stdout", false, &res->stdout_data, room, err)) < 0
        || (err_out = pr_output_text(o, "stderr", false, &res->stderr_data, room, err)) < 0
        || pj_bool(o, "stdout_truncated", false, &res->stdout_truncated, err) != 0
        || pj_bool(o, "stderr_truncated", false, &res->stderr_truncated, err) != 0
        || pj_json(o, "result", &res->result_json, err) != 0
        || pj_str(o, "error", false, 0, 0, &res->error, err) != 0
        || pj_dbl(o, "started", req, 0, 1e300, &res->started, err) != 0
        || pj_dbl(o, "finished", req, 0, 1e300, &res->finished, err) != 0)
        return -1;
    /* Output sent as base64 is stored as a JSON string: up to 6 x its
       bytes (4.5 x the base64). What one message may make the master
       hold is bounded as it always was (the room: the report limit for
       all of a report's outputs together), whatever form they came in.
       An output over it is dropped, not the report: the attempt ends
       failed and says why, rather than being lost with the report. A
       worker splits its reports so that this never happens (outbox.c). */
    if (out == 1 || err_out == 1) {
        res->stdout_truncated |= out == 1;
        res->stderr_truncated |= err_out == 1;
        res->output_dropped = true;
        /* The result's own error (a timeout, an exit status) is kept
           after the drop's: it is why the task failed, if it did. */
        char *own = res->error;
        res->error = NULL;
        proto_result_fail(res, res->status == PROTO_ST_CANCELLED ? PROTO_ST_CANCELLED
                                                                 : PROTO_ST_FAILED,
                          "its %s was dropped: the report that carried it held more output "
                          "than the master takes from one report (%d bytes as JSON strings); "
                          "a worker of this version sends such results in reports of their "
                          "own%s%s",
                          out == 1 && err_out == 1 ? "stdout and stderr"
                          : out == 1               ? "stdout"
                                                   : "stderr",
                          PROTO_MAX_REPORT_MSG, own ? "; its own error: " : "", own ? own : "");
        free(own);
    }
    return 0;
}

proto_result_t *pr_result_from(cJSON *o, size_t *room, proto_err_t *err)
{
    if (!cJSON_IsObject(o)) {
        proto_err_set(err, PROTO_E_FIELD, "result must be a JSON object");
        return NULL;
    }
    proto_result_t *res = proto_result_new();
    if (pj_i64(o, "task", true, 1, PJ_MAX_SAFE_INT, &res->task, err) != 0
        || pj_int(o, "attempt", true, 0, PROTO_MAX_ATTEMPT, &res->attempt, err) != 0)
        goto fail;
    const cJSON *st = pj_get(o, "status");
    if (!st) {
        proto_err_set(err, PROTO_E_FIELD, "missing field \"status\"");
        goto fail;
    }
    if (!cJSON_IsString(st) || proto_state_parse(st->valuestring, &res->status) != 0
        || (res->status != PROTO_ST_DONE && res->status != PROTO_ST_FAILED
            && res->status != PROTO_ST_CANCELLED)) {
        proto_err_set(err, PROTO_E_FIELD,
                      "field \"status\" must be \"done\", \"failed\" or \"cancelled\"");
        goto fail;
    }
    if (pr_result_members_from(o, res, false, room, err) != 0
        || pj_claim(o, "claim", res->claim, err) != 0)
        goto fail;
    return res;
fail:
    proto_result_destroy(&res);
    return NULL;
}

proto_result_t *proto_result_decode(const char *json, size_t len, proto_err_t *err)
{
    proto_result_t *res = pf_result(json, len);
    return res ? res : pr_result_decode_tree(json, len, err);
}

proto_result_t *pr_result_decode_tree(const char *json, size_t len, proto_err_t *err)
{
    cJSON *root = pj_parse(json, len, PROTO_MAX_REPORT_MSG, err);
    if (!root)
        return NULL;
    size_t room = PROTO_MAX_REPORT_MSG;
    proto_result_t *res = pr_result_from(root, &room, err);
    cJSON_Delete(root);
    return res;
}

static bool s_has_line(const char *text)
{
    size_t n;
    return text_first_line(text, &n) != NULL;
}

const char *proto_result_reason(const proto_result_t *r)
{
    bool exited = r->has_exit_code && !r->timed_out && r->signal == 0;
    if (exited && s_has_line(r->stderr_data))
        return r->stderr_data;
    const char *order[] = {r->error, r->stderr_data, r->stdout_data};
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        if (s_has_line(order[i]))
            return order[i];
    return NULL;
}
