/*  proto_writer: the JSON writer every encoder uses (proto_writer.h). */
#include "proto_writer.h"

#include "../common/util.h"
#include "proto_text.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pb_init(pb_t *b, size_t hint)
{
    b->cap = hint < 64 ? 64 : hint;
    b->buf = xmalloc(b->cap);
    b->len = 0;
}

void pb_reserve(pb_t *b, size_t more)
{
    if (b->cap - b->len > more)
        return;
    size_t cap = b->cap * 2;
    while (cap - b->len <= more)
        cap *= 2;
    b->buf = xrealloc(b->buf, cap);
    b->cap = cap;
}

void pb_raw(pb_t *b, const char *s, size_t n)
{
    pb_reserve(b, n);
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

void pb_char(pb_t *b, char c)
{
    pb_reserve(b, 1);
    b->buf[b->len++] = c;
}

void pb_sep(pb_t *b)
{
    if (b->len == 0)
        return;
    char last = b->buf[b->len - 1];
    if (last != '{' && last != '[' && last != ':')
        pb_char(b, ',');
}

void pb_key(pb_t *b, const char *key)
{
    pb_sep(b);
    size_t n = strlen(key);
    pb_reserve(b, n + 3);
    b->buf[b->len++] = '"';
    memcpy(b->buf + b->len, key, n);
    b->len += n;
    b->buf[b->len++] = '"';
    b->buf[b->len++] = ':';
}

/* Bytes that cannot appear raw inside a JSON string. */
static bool s_needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

/* The escaped text of valid UTF-8 s[0..n), without quotes. */
static void s_escaped_body(pb_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case is \u00XX for every byte; reserving the common case
       (no escapes) up front and growing per escape keeps big outputs to
       one or two reallocations. */
    pb_reserve(b, n + 2);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        i += pu_plain_len(s + i, n - i);
        if (i >= n)
            break;
        unsigned char c = (unsigned char) s[i];
        if (!s_needs_escape(c))
            continue;
        pb_raw(b, s + run, i - run);
        run = i + 1;
        pb_reserve(b, 6);
        char *o = b->buf + b->len;
        switch (c) {
        case '"': memcpy(o, "\\\"", 2); b->len += 2; break;
        case '\\': memcpy(o, "\\\\", 2); b->len += 2; break;
        case '\n': memcpy(o, "\\n", 2); b->len += 2; break;
        case '\r': memcpy(o, "\\r", 2); b->len += 2; break;
        case '\t': memcpy(o, "\\t", 2); b->len += 2; break;
        case '\b': memcpy(o, "\\b", 2); b->len += 2; break;
        case '\f': memcpy(o, "\\f", 2); b->len += 2; break;
        default:
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            b->len += 6;
        }
    }
    pb_raw(b, s + run, n - run);
}

static void s_str_escaped(pb_t *b, const char *s, size_t n)
{
    pb_reserve(b, n + 2);
    b->buf[b->len++] = '"';
    s_escaped_body(b, s, n);
    pb_char(b, '"');
}

void pb_str(pb_t *b, const char *s, size_t n)
{
    if (pu_utf8_bad_at(s, n) == n) {
        s_str_escaped(b, s, n);
        return;
    }
    /* Repaired as it is written, a valid stretch at a time: no sanitized
       copy of the whole (up to 3 x n bytes) beside the output. Each bad
       byte is one U+FFFD, as utf8_sanitize makes it. */
    pb_reserve(b, n + 2);
    b->buf[b->len++] = '"';
    pb_str_part(b, s, n);
    pb_char(b, '"');
}

void pb_str_part(pb_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t good = pu_utf8_bad_at(s + i, n - i);
        s_escaped_body(b, s + i, good);
        i += good;
        if (i < n) {
            pb_raw(b, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
}

size_t pb_str_len(const char *s, size_t n)
{
    size_t len = 2;
    for (size_t i = 0; i < n;) {
        size_t end = i + pu_utf8_bad_at(s + i, n - i);
        while (i < end) {
            size_t plain = pu_plain_len(s + i, end - i);
            len += plain;
            i += plain;
            if (i < end) {
                unsigned char c = (unsigned char) s[i++];
                len += c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b'
                               || c == '\f'
                           ? 2
                           : 6;
            }
        }
        if (i < n) {
            len += 3;            /* a bad byte: U+FFFD */
            i++;
        }
    }
    return len;
}

size_t pb_b64_len(size_t n)
{
    return (n + 2) / 3 * 4 + 2;
}

void pb_b64(pb_t *b, const char *s, size_t n)
{
    pb_char(b, '"');
    pb_b64_part(b, s, n);
    pb_char(b, '"');
}

void pb_b64_part(pb_t *b, const char *s, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pb_reserve(b, pb_b64_len(n));
    char *o = b->buf + b->len;
    const unsigned char *p = (const unsigned char *) s;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned) p[i] << 16 | (unsigned) p[i + 1] << 8 | p[i + 2];
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        *o++ = abc[(v >> 6) & 63];
        *o++ = abc[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned) p[i] << 16 | (i + 1 < n ? (unsigned) p[i + 1] << 8 : 0);
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        *o++ = i + 1 < n ? abc[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t) (o - b->buf);
}

void pb_cstr(pb_t *b, const char *s)
{
    if (s)
        pb_str(b, s, strlen(s));
    else
        pb_lit(b, "null");
}

void pb_i64(pb_t *b, int64_t v)
{
    /* Without snprintf (two per result: ~800 instructions of a worker's
       task). */
    char tmp[I64_TEXT_MAX];
    const char *p = i64_text(tmp, v);
    pb_raw(b, p, (size_t) (tmp + sizeof tmp - 1 - p));
}

void pb_dbl(pb_t *b, double v)
{
    if (!isfinite(v))
        v = 0;
    char tmp[40];
    int n;
    if (v == floor(v) && fabs(v) <= (double) PJ_MAX_SAFE_INT) {
        n = snprintf(tmp, sizeof tmp, "%lld", (long long) v);
    } else {
        /* The shortest of 15 or 17 significant digits that reads back as
           the same double, as cJSON does: timestamps keep their exact
           value, and 0.1 still prints as 0.1. */
        n = snprintf(tmp, sizeof tmp, "%.15g", v);
        if (strtod(tmp, NULL) != v)
            n = snprintf(tmp, sizeof tmp, "%.17g", v);
    }
    pb_raw(b, tmp, (size_t) n);
}

/* Wall-clock seconds with microsecond precision, by integer arithmetic:
   every result carries two timestamps, and printf's %g (with a strtod
   round-trip check) was the worker's single biggest cost per task. */
void pb_time(pb_t *b, double v)
{
    if (!isfinite(v) || v < 0 || v > 1e12) {   /* beyond: microseconds overflow int64 */
        pb_dbl(b, v);
        return;
    }
    /* Whole seconds and the fraction apart: v - floor(v) is exact, so the
       microseconds are rounded once. llround(v * 1e6) rounds twice (the
       product, then the integer) and can print a microsecond off, and past
       2^32 s that reads back as a different double: the text would not
       survive a decode and an encode unchanged. */
    double whole = floor(v);
    long long sec = (long long) whole;
    long long frac = llround((v - whole) * 1e6);
    if (frac >= 1000000) {
        sec++;
        frac -= 1000000;
    }
    char tmp[40];
    char *p = tmp + sizeof tmp;
    if (frac) {
        /* Six digits, trailing zeros dropped (1.5 not 1.500000). */
        int digits = 6;
        while (frac % 10 == 0) {
            frac /= 10;
            digits--;
        }
        for (int i = 0; i < digits; i++) {
            *--p = (char) ('0' + frac % 10);
            frac /= 10;
        }
        *--p = '.';
    }
    do {
        *--p = (char) ('0' + sec % 10);
        sec /= 10;
    } while (sec);
    pb_raw(b, p, (size_t) (tmp + sizeof tmp - p));
}

void pb_ktime(pb_t *b, const char *key, double v)
{
    pb_key(b, key);
    pb_time(b, v);
}

void pb_bool(pb_t *b, bool v)
{
    if (v)
        pb_lit(b, "true");
    else
        pb_lit(b, "false");
}

void pb_json(pb_t *b, const char *json)
{
    if (!json) {
        pb_lit(b, "null");
        return;
    }
    size_t n = strlen(json);
    const char *end = NULL;
    cJSON *v = NULL;
    if (pu_utf8_bad_at(json, n) == n)
        v = cJSON_ParseWithLengthOpts(json, n, &end, false);
    char *text = NULL;
    if (v && (size_t) (end - json) == n)
        text = cJSON_PrintUnformatted(v);
    cJSON_Delete(v);
    if (text) {
        pb_raw(b, text, strlen(text));
        cJSON_free(text);
    } else {
        pb_lit(b, "null");
    }
}

void pb_strv(pb_t *b, char *const *v, int n)
{
    pb_char(b, '[');
    for (int i = 0; v && i < n; i++) {
        pb_sep(b);
        pb_cstr(b, v[i]);
    }
    pb_char(b, ']');
}

void pb_i64v(pb_t *b, const int64_t *v, int n)
{
    pb_char(b, '[');
    for (int i = 0; v && i < n; i++) {
        pb_sep(b);
        pb_i64(b, v[i]);
    }
    pb_char(b, ']');
}

void pb_refs(pb_t *b, const proto_task_ref_t *v, int n)
{
    pb_char(b, '[');
    for (int i = 0; v && i < n; i++) {
        pb_sep(b);
        pb_char(b, '{');
        pb_ki64(b, "task", v[i].task);
        pb_ki64(b, "attempt", v[i].attempt);
        if (v[i].gpus)
            pb_kstr(b, "gpus", v[i].gpus);
        if (v[i].claim[0])
            pb_kstr(b, "claim", v[i].claim);
        pb_char(b, '}');
    }
    pb_char(b, ']');
}

void pb_open(pb_t *b, const char *type)
{
    pb_lit(b, "{\"v\":1,\"type\":");
    pb_cstr(b, type);
}

char *pb_take(pb_t *b)
{
    pb_char(b, '\0');
    /* Hand back only what is used: stored specs live in memory while their
       task is queued, a million at a time. */
    char *s = b->cap > b->len + 64 ? xrealloc(b->buf, b->len) : b->buf;
    b->buf = NULL;
    b->len = b->cap = 0;
    return s;
}

void pb_kstr(pb_t *b, const char *key, const char *s)
{
    pb_key(b, key);
    pb_cstr(b, s);
}

void pb_ki64(pb_t *b, const char *key, int64_t v)
{
    pb_key(b, key);
    pb_i64(b, v);
}

void pb_kdbl(pb_t *b, const char *key, double v)
{
    pb_key(b, key);
    pb_dbl(b, v);
}

void pb_kbool(pb_t *b, const char *key, bool v)
{
    pb_key(b, key);
    pb_bool(b, v);
}
