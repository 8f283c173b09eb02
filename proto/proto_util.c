#include "proto_util.h"

#include "../common/util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- errors */

void pu_one_line(char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char) s[i];
        size_t n = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (n == 1 && c >= 0x20 && c != 0x7F) {
            i++;
        } else if (n > 1 && len - i >= n && utf8_valid(s + i, n)) {
            i += n;
        } else {
            s[i++] = '?';
        }
    }
}

void proto_err_set(proto_err_t *err, const char *code, const char *fmt, ...)
{
    if (!err)
        return;
    snprintf(err->code, sizeof err->code, "%s", code ? code : PROTO_E_INTERNAL);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    /* Messages quote names from the input ("unknown field \"%.64s\""): a
       name holding "\n" would forge log lines on the master, and "%.64s" or
       the buffer's end can cut a character in two. */
    pu_one_line(err->message);
}

void pj_err_prefix(proto_err_t *err, const char *fmt, ...)
{
    if (!err)
        return;
    char prefix[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char msg[sizeof prefix + sizeof err->message + 4];
    snprintf(msg, sizeof msg, "%s: %s", prefix, err->message);
    size_t n = strlen(msg);
    if (n >= sizeof err->message) {
        /* Cut on a character boundary. */
        n = sizeof err->message - 1;
        while (n > 0 && ((unsigned char) msg[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(err->message, msg, n);
    err->message[n] = '\0';
}

/* ---------------------------------------------------------------- UTF-8 */

size_t pu_utf8_bad_at(const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *) data;
    size_t i = 0;
    while (i < len) {
        /* Most of what we carry (JSON syntax, program output) is ASCII:
           take eight bytes at a time when none has the high bit set and
           none is zero. */
        if (len - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            const uint64_t hi = 0x8080808080808080ULL, lo = 0x0101010101010101ULL;
            if (!(w & hi) && !((w - lo) & ~w & hi)) {
                i += 8;
                continue;
            }
        }
        unsigned c = p[i];
        if (c >= 0x01 && c < 0x80) {
            i++;
            continue;
        }
        size_t n = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        /* utf8_valid holds the exact rules (overlongs, surrogates, range). */
        if (!n || len - i < n || !utf8_valid(data + i, n))
            return i;
        i += n;
    }
    return len;
}

/* ---------------------------------------------------------------- writer */

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

static void s_str_escaped(pb_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case is \u00XX for every byte; reserving the common case
       (no escapes) up front and growing per escape keeps big outputs to
       one or two reallocations. */
    pb_reserve(b, n + 2);
    b->buf[b->len++] = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
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
    pb_char(b, '"');
}

void pb_str(pb_t *b, const char *s, size_t n)
{
    if (pu_utf8_bad_at(s, n) == n) {
        s_str_escaped(b, s, n);
        return;
    }
    size_t clean_len;
    char *clean = utf8_sanitize(s, n, &clean_len);
    s_str_escaped(b, clean, clean_len);
    free(clean);
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
    /* Digits from the end, without snprintf (two per result: ~800
       instructions of a worker's task). The magnitude as unsigned, so
       INT64_MIN has one too. */
    char tmp[24];
    char *p = tmp + sizeof tmp;
    uint64_t u = v < 0 ? 0 - (uint64_t) v : (uint64_t) v;
    do {
        *--p = (char) ('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    pb_raw(b, p, (size_t) (tmp + sizeof tmp - p));
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

void pb_refs(pb_t *b, const proto_task_ref_t *v, int n)
{
    pb_char(b, '[');
    for (int i = 0; v && i < n; i++) {
        pb_sep(b);
        pb_char(b, '{');
        pb_ki64(b, "task", v[i].task);
        pb_ki64(b, "attempt", v[i].attempt);
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

/* ---------------------------------------------------------------- reader */

/* Offset of the first \u0000 escape, or len. cJSON decodes it into a NUL
   inside a C string, which would silently cut the string short. Outside
   strings a backslash is a syntax error anyway, so no string tracking is
   needed: every backslash starts a two-byte escape, or a six-byte \uXXXX. */
static size_t s_nul_escape_at(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    while (p < end && (p = memchr(p, '\\', (size_t) (end - p))) != NULL) {
        if (end - p >= 6 && memcmp(p + 1, "u0000", 5) == 0)
            return (size_t) (p - buf);
        p += 2;
    }
    return len;
}

cJSON *pj_parse(const char *buf, size_t len, size_t max, proto_err_t *err)
{
    if (!buf || len == 0) {
        proto_err_set(err, PROTO_E_PARSE, "empty message");
        return NULL;
    }
    if (len > max) {
        proto_err_set(err, PROTO_E_TOO_BIG, "message of %zu bytes is over the %zu byte limit",
                      len, max);
        return NULL;
    }
    size_t at = pu_utf8_bad_at(buf, len);
    if (at != len) {
        proto_err_set(err, PROTO_E_PARSE, "%s at byte %zu",
                      buf[at] ? "invalid UTF-8" : "NUL byte", at);
        return NULL;
    }
    at = s_nul_escape_at(buf, len);
    if (at != len) {
        proto_err_set(err, PROTO_E_FIELD, "a string contains \\u0000 (at byte %zu)", at);
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, false);
    if (!root) {
        size_t pos = end && end >= buf && end <= buf + len ? (size_t) (end - buf) : 0;
        proto_err_set(err, PROTO_E_PARSE, "not valid JSON (near byte %zu)", pos);
        return NULL;
    }
    /* cJSON stops after the first value; anything but whitespace after it
       means the frame is not one JSON object. */
    for (const char *p = end; p < buf + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            proto_err_set(err, PROTO_E_PARSE, "trailing data after the JSON value (byte %zu)",
                          (size_t) (p - buf));
            cJSON_Delete(root);
            return NULL;
        }
    }
    if (!cJSON_IsObject(root)) {
        proto_err_set(err, PROTO_E_PARSE, "message is not a JSON object");
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

cJSON *pj_parse_msg(const char *buf, size_t len, size_t max, const char **type,
                    proto_err_t *err)
{
    cJSON *root = pj_parse(buf, len, max, err);
    if (!root)
        return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "v");
    if (!v) {
        proto_err_set(err, PROTO_E_VERSION, "missing field \"v\" (protocol version)");
        goto fail;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != PROTO_VERSION) {
        proto_err_set(err, PROTO_E_VERSION, "unsupported protocol version (this side speaks %d)",
                      PROTO_VERSION);
        goto fail;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (!cJSON_IsString(t)) {
        proto_err_set(err, PROTO_E_TYPE, "field \"type\" is missing or not a string");
        goto fail;
    }
    *type = t->valuestring;
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

cJSON *pj_get(const cJSON *o, const char *k)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNull(v) ? NULL : v;
}

static int s_missing(const char *k, proto_err_t *err)
{
    proto_err_set(err, PROTO_E_FIELD, "missing field \"%s\"", k);
    return -1;
}

/* Integral, finite and in [lo, hi]. */
static bool s_integral_in(const cJSON *v, double lo, double hi)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    return isfinite(d) && d == floor(d) && d >= lo && d <= hi;
}

int pj_i64(const cJSON *o, const char *k, bool req, int64_t lo, int64_t hi, int64_t *out,
           proto_err_t *err)
{
    const cJSON *v = pj_get(o, k);
    if (!v)
        return req ? s_missing(k, err) : 0;
    if (!s_integral_in(v, (double) lo, (double) hi)) {
        if (hi >= PJ_MAX_SAFE_INT)
            proto_err_set(err, PROTO_E_FIELD, "field \"%s\" must be an integer >= %lld", k,
                          (long long) lo);
        else
            proto_err_set(err, PROTO_E_FIELD, "field \"%s\" must be an integer in %lld..%lld",
                          k, (long long) lo, (long long) hi);
        return -1;
    }
    *out = (int64_t) v->valuedouble;
    return 0;
}

int pj_int(const cJSON *o, const char *k, bool req, int lo, int hi, int *out, proto_err_t *err)
{
    int64_t v = *out;
    if (pj_i64(o, k, req, lo, hi, &v, err) != 0)
        return -1;
    *out = (int) v;
    return 0;
}

int pj_dbl(const cJSON *o, const char *k, bool req, double lo, double hi, double *out,
           proto_err_t *err)
{
    const cJSON *v = pj_get(o, k);
    if (!v)
        return req ? s_missing(k, err) : 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo
        || v->valuedouble > hi) {
        if (hi >= 1e300)
            proto_err_set(err, PROTO_E_FIELD, "field \"%s\" must be a number >= %.15g", k, lo);
        else
            proto_err_set(err, PROTO_E_FIELD, "field \"%s\" must be a number >= %.15g and <= %.15g",
                          k, lo, hi);
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}

int pj_bool(const cJSON *o, const char *k, bool req, bool *out, proto_err_t *err)
{
    const cJSON *v = pj_get(o, k);
    if (!v)
        return req ? s_missing(k, err) : 0;
    if (!cJSON_IsBool(v)) {
        proto_err_set(err, PROTO_E_FIELD, "field \"%s\" must be true or false", k);
        return -1;
    }
    *out = cJSON_IsTrue(v);
    return 0;
}

/* Checks a string item's length; takes its text out of the tree. */
static int s_take_string(cJSON *v, const char *what, size_t minlen, size_t maxlen, char **out,
                         proto_err_t *err)
{
    if (!cJSON_IsString(v) || !v->valuestring) {
        proto_err_set(err, PROTO_E_FIELD, "%s must be a string", what);
        return -1;
    }
    size_t n = strlen(v->valuestring);
    if (n < minlen) {
        proto_err_set(err, PROTO_E_FIELD, "%s must not be empty", what);
        return -1;
    }
    if (maxlen && n > maxlen) {
        proto_err_set(err, PROTO_E_FIELD, "%s is longer than %zu bytes", what, maxlen);
        return -1;
    }
    /* cJSON allocates with malloc by default (we never install other
       hooks), so the string can change hands without a copy: outputs of a
       megabyte are common in results. */
    *out = v->valuestring;
    v->valuestring = NULL;
    return 0;
}

int pj_str(cJSON *o, const char *k, bool req, size_t minlen, size_t maxlen, char **out,
           proto_err_t *err)
{
    cJSON *v = pj_get(o, k);
    if (!v)
        return req ? s_missing(k, err) : 0;
    char what[80];
    snprintf(what, sizeof what, "field \"%s\"", k);
    return s_take_string(v, what, minlen, maxlen, out, err);
}

int pj_array(const cJSON *o, const char *k, bool req, int maxn, cJSON **arr, proto_err_t *err)
{
    *arr = NULL;
    cJSON *v = pj_get(o, k);
    if (!v)
        return req ? s_missing(k, err) : 0;
    if (!cJSON_IsArray(v)) {
        proto_err_set(err, PROTO_E_FIELD, "field \"%s\" must be an array", k);
        return -1;
    }
    int n = cJSON_GetArraySize(v);
    if (n > maxn) {
        proto_err_set(err, PROTO_E_TOO_BIG, "field \"%s\" has %d elements, over the limit of %d",
                      k, n, maxn);
        return -1;
    }
    *arr = v;
    return 0;
}

void pu_strv_free(char **v, int n)
{
    if (!v)
        return;
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

char **pu_strv_dup(char *const *v, int n)
{
    if (!v || n <= 0)
        return NULL;
    char **d = xcalloc((size_t) n + 1, sizeof *d);
    for (int i = 0; i < n; i++)
        d[i] = xstrdup(v[i]);
    return d;
}

int pj_str_array(cJSON *o, const char *k, bool req, int maxn, size_t minlen, size_t maxlen,
                 char ***out, int *n, proto_err_t *err)
{
    cJSON *arr;
    if (pj_array(o, k, req, maxn, &arr, err) != 0)
        return -1;
    if (!arr)
        return 0;
    int count = cJSON_GetArraySize(arr);
    if (count == 0)
        return 0;
    char **v = xcalloc((size_t) count + 1, sizeof *v);
    int i = 0;
    for (cJSON *e = arr->child; e; e = e->next, i++) {
        char what[96];
        snprintf(what, sizeof what, "field \"%s\" element %d", k, i);
        if (s_take_string(e, what, minlen, maxlen, &v[i], err) != 0) {
            pu_strv_free(v, i);
            return -1;
        }
    }
    *out = v;
    *n = count;
    return 0;
}

int pj_refs(const cJSON *o, const char *k, bool req, proto_task_ref_t **out, int *n,
            proto_err_t *err)
{
    cJSON *arr;
    if (pj_array(o, k, req, INT32_MAX, &arr, err) != 0)
        return -1;
    if (!arr)
        return 0;
    int count = cJSON_GetArraySize(arr);
    if (count == 0)
        return 0;
    proto_task_ref_t *v = xcalloc((size_t) count, sizeof *v);
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        if (!cJSON_IsObject(e)) {
            proto_err_set(err, PROTO_E_FIELD, "field \"%s\" element %d must be an object", k, i);
            goto fail;
        }
        if (pj_i64(e, "task", true, 1, PJ_MAX_SAFE_INT, &v[i].task, err) != 0
            || pj_int(e, "attempt", true, 1, INT32_MAX, &v[i].attempt, err) != 0) {
            pj_err_prefix(err, "%s[%d]", k, i);
            goto fail;
        }
    }
    *out = v;
    *n = count;
    return 0;
fail:
    free(v);
    return -1;
}

/* True when every number in v is finite. cJSON reads a number too large
   for a double (6e308) as infinity and prints it as null, which would turn
   a value into another one and "args" into no args on the next decode. */
static bool s_all_finite(const cJSON *v)
{
    if (cJSON_IsNumber(v))
        return isfinite(v->valuedouble);
    for (const cJSON *c = v->child; c; c = c->next)
        if (!s_all_finite(c))
            return false;
    return true;
}

int pj_json(const cJSON *o, const char *k, char **out, proto_err_t *err)
{
    const cJSON *v = pj_get(o, k);
    if (!v)
        return 0;
    if (!s_all_finite(v)) {
        proto_err_set(err, PROTO_E_FIELD, "field \"%s\" holds a number too large for a double",
                      k);
        return -1;
    }
    char *text = cJSON_PrintUnformatted(v);
    if (!text) {
        proto_err_set(err, PROTO_E_INTERNAL, "could not print field \"%s\"", k);
        return -1;
    }
    /* cJSON allocates with plain malloc (no hooks are installed), so the
       text can be free()d with the rest of the struct. */
    *out = text;
    return 0;
}
