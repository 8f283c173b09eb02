/*  proto_reader: frame checks and typed field readers (proto_reader.h). */
#include "proto_reader.h"

#include "../common/util.h"
#include "proto_text.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

cJSON *pj_parse_typed(const char *buf, size_t len, size_t max, const pj_types_t *types,
                      int *type, proto_err_t *err)
{
    const char *name;
    cJSON *root = pj_parse_msg(buf, len, max, &name, err);
    if (!root)
        return NULL;
    for (size_t t = 1; t < types->count; t++) {
        if (types->names[t] && strcmp(name, types->names[t]) == 0) {
            *type = (int) t;
            return root;
        }
    }
    proto_err_set(err, PROTO_E_TYPE, "unknown %s \"%.64s\"", types->what, name);
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
    assert(*out == NULL);   /* a string already there would leak */
    cJSON *v = pj_get(o, k);
    if (!v)
        return req ? s_missing(k, err) : 0;
    char what[80];
    snprintf(what, sizeof what, "field \"%s\"", k);
    return s_take_string(v, what, minlen, maxlen, out, err);
}

bool proto_claim_valid(const char *s, size_t len)
{
    if (!s || len < 1 || len > PROTO_CLAIM_MAX)
        return false;
    /* No format beyond this (proto.h): a worker keeps what the master
       gave, whatever its version; nothing here ever needs escaping. */
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~' || s[i] == '"' || s[i] == '\\')
            return false;
    return true;
}

int pj_claim(const cJSON *o, const char *k, char out[PROTO_CLAIM_MAX + 1], proto_err_t *err)
{
    out[0] = '\0';
    const cJSON *v = pj_get(o, k);
    if (!v)
        return 0;
    size_t len = cJSON_IsString(v) && v->valuestring ? strlen(v->valuestring) : 0;
    if (!proto_claim_valid(v->valuestring, len)) {
        proto_err_set(err, PROTO_E_FIELD,
                      "field \"%s\" must be a string of 1..%d printable ASCII characters "
                      "without space, quote or backslash",
                      k, PROTO_CLAIM_MAX);
        return -1;
    }
    memcpy(out, v->valuestring, len + 1);
    return 0;
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

/* pj_array, and how many elements it has (0 when absent). */
static int s_array_count(const cJSON *o, const char *k, bool req, int maxn, cJSON **arr,
                         int *count, proto_err_t *err)
{
    *count = 0;
    if (pj_array(o, k, req, maxn, arr, err) != 0)
        return -1;
    if (*arr)
        *count = cJSON_GetArraySize(*arr);
    return 0;
}

int pj_str_array(cJSON *o, const char *k, bool req, int maxn, size_t minlen, size_t maxlen,
                 char ***out, int *n, proto_err_t *err)
{
    cJSON *arr;
    int count;
    if (s_array_count(o, k, req, maxn, &arr, &count, err) != 0)
        return -1;
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

/* Reads one element of array k (index i) into slot; -1 with err set. */
typedef int (*elem_read_fn)(const cJSON *e, const char *k, int i, void *slot, const void *arg,
                            proto_err_t *err);
/* Frees the first n elements' members and the array itself. */
typedef void (*elems_free_fn)(void *v, int n);

/* Array k, at most maxn elements, each read by read into a fresh array of
   elements of size bytes: *out and *n set when it has any (*out left
   alone when empty or absent; the caller frees). */
static int s_array_of(const cJSON *o, const char *k, bool req, int maxn, size_t size,
                      elem_read_fn read, elems_free_fn drop, const void *arg, void **out, int *n,
                      proto_err_t *err)
{
    cJSON *arr;
    int count;
    if (s_array_count(o, k, req, maxn, &arr, &count, err) != 0)
        return -1;
    if (count == 0)
        return 0;
    char *v = xcalloc((size_t) count, size);
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++)
        if (read(e, k, i, v + (size_t) i * size, arg, err) != 0) {
            /* The failing element may hold what it read before the error. */
            if (drop)
                drop(v, i + 1);
            else
                free(v);
            return -1;
        }
    *out = v;
    *n = count;
    return 0;
}

static int s_read_ref(const cJSON *e, const char *k, int i, void *slot, const void *arg,
                      proto_err_t *err)
{
    (void) arg;
    proto_task_ref_t *ref = slot;
    if (!cJSON_IsObject(e)) {
        proto_err_set(err, PROTO_E_FIELD, "field \"%s\" element %d must be an object", k, i);
        return -1;
    }
    if (pj_i64(e, "task", true, 1, PJ_MAX_SAFE_INT, &ref->task, err) != 0
        || pj_int(e, "attempt", true, 1, PROTO_MAX_ATTEMPT, &ref->attempt, err) != 0) {
        pj_err_prefix(err, "%s[%d]", k, i);
        return -1;
    }
    /* Optional (a worker older than it sends none): the devices as the
       "tasks" entry named them, no longer than a pipe message's. */
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(e, "gpus");
    if (g) {
        size_t len = cJSON_IsString(g) ? strlen(g->valuestring) : 0;
        if (len < 1 || len > PROTO_MAX_GPUS_TEXT) {
            proto_err_set(err, PROTO_E_FIELD,
                          "field \"%s\" element %d: \"gpus\" must be a string of 1..%d bytes", k,
                          i, PROTO_MAX_GPUS_TEXT);
            return -1;
        }
        ref->gpus = xstrdup(g->valuestring);
    }
    if (pj_claim(e, "claim", ref->claim, err) != 0) {
        pj_err_prefix(err, "%s[%d]", k, i);
        return -1;
    }
    return 0;
}

static void s_refs_free(void *v, int n)
{
    proto_refs_free(v, n);
}

int pj_refs(const cJSON *o, const char *k, bool req, proto_task_ref_t **out, int *n,
            proto_err_t *err)
{
    return pj_refs_max(o, k, req, INT32_MAX, out, n, err);
}

int pj_refs_max(const cJSON *o, const char *k, bool req, int maxn, proto_task_ref_t **out,
                int *n, proto_err_t *err)
{
    void *v = NULL;
    int rc =
        s_array_of(o, k, req, maxn, sizeof **out, s_read_ref, s_refs_free, NULL, &v, n, err);
    if (v)
        *out = v;
    return rc;
}

static int s_read_i64(const cJSON *e, const char *k, int i, void *slot, const void *arg,
                      proto_err_t *err)
{
    const int64_t *range = arg;   /* lo, hi */
    if (!s_integral_in(e, (double) range[0], (double) range[1])) {
        proto_err_set(err, PROTO_E_FIELD, "field \"%s\" element %d must be an integer >= %lld", k,
                      i, (long long) range[0]);
        return -1;
    }
    *(int64_t *) slot = (int64_t) e->valuedouble;
    return 0;
}

int pj_i64_array(const cJSON *o, const char *k, bool req, int maxn, int64_t lo, int64_t hi,
                 int64_t **out, int *n, proto_err_t *err)
{
    void *v = NULL;
    int rc = s_array_of(o, k, req, maxn, sizeof **out, s_read_i64, NULL, (int64_t[2]){lo, hi}, &v,
                        n, err);
    if (v)
        *out = v;
    return rc;
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
