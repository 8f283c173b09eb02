/*  proto_fast: readers for the hottest frames that build no cJSON tree: a
    worker's "results" report and a submit request (on the master), a
    "tasks" message (on the worker).

    Parsing a frame into a cJSON tree costs a node and a key string per
    member, all freed again at once: measured, a fifth of the master's
    instructions per task and half of the worker's, and most of their
    malloc traffic. These readers walk the text once and fill the structs
    directly.

    It is a fast path, not a second decoder: it takes only the plain shapes
    our encoders write (members in any order, strings with the common
    escapes, integers spelled as integers), and declines everything else
    (a duplicate or unknown member, a number spelled 1.0 or 1e0, a \u escape
    outside the plain range, an embedded "result" or "args" value, a spec
    with env, require or output_cap, a submit with dependencies, a null,
    any error at all) by
    returning NULL. The caller then decodes the frame with cJSON as
    before, which also makes every error message. So whatever this file
    accepts, the cJSON decoder accepts too, with the same values: the
    report, result, pipe and request fuzz targets check exactly that on
    every input.
*/
#include "proto_hooks.h"
#include "proto_reader.h"
#include "proto_text.h"

#include "../common/util.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p, *end;
} fr_t;

static void s_ws(fr_t *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static bool s_eat(fr_t *r, char c)
{
    s_ws(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return true;
    }
    return false;
}

static bool s_literal(fr_t *r, const char *word, size_t n)
{
    s_ws(r);
    if ((size_t) (r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return false;
    r->p += n;
    return true;
}

/* A string's raw bytes between its quotes; *esc when it holds a
   backslash. Control characters decline (cJSON's rules for them are its
   own). */
static bool s_span(fr_t *r, const char **s, size_t *n, bool *esc)
{
    s_ws(r);
    if (r->p >= r->end || *r->p != '"')
        return false;
    const char *q = ++r->p;
    bool e = false;
    while (r->p < r->end) {
        r->p += pu_plain_len(r->p, (size_t) (r->end - r->p));
        if (r->p >= r->end)
            break;
        unsigned char c = (unsigned char) *r->p;
        if (c == '"') {
            *s = q;
            *n = (size_t) (r->p - q);
            *esc = e;
            r->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            e = true;
            r->p++;
            if (r->p >= r->end)
                return false;
        }
        r->p++;
    }
    return false;
}

static int s_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A string value, unescaped, in new memory; NULL to decline. */
static char *s_string(fr_t *r)
{
    const char *s;
    size_t n;
    bool esc;
    if (!s_span(r, &s, &n, &esc))
        return NULL;
    if (!esc)
        return xstrndup(s, n);
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            *o++ = s[i];
            continue;
        }
        char c = s[++i];
        switch (c) {
        case '"': case '\\': case '/': *o++ = c; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            for (int k = 1; k <= 4; k++) {
                int h = i + (size_t) k < n ? s_hex(s[i + (size_t) k]) : -1;
                if (h < 0) {
                    free(out);
                    return NULL;
                }
                cp = cp << 4 | (unsigned) h;
            }
            /* NUL and surrogate pairs are left to cJSON (and to the NUL
               rule of pj_parse). */
            if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) {
                free(out);
                return NULL;
            }
            if (cp < 0x80) {
                *o++ = (char) cp;
            } else if (cp < 0x800) {
                *o++ = (char) (0xC0 | cp >> 6);
                *o++ = (char) (0x80 | (cp & 0x3F));
            } else {
                *o++ = (char) (0xE0 | cp >> 12);
                *o++ = (char) (0x80 | ((cp >> 6) & 0x3F));
                *o++ = (char) (0x80 | (cp & 0x3F));
            }
            i += 4;
            break;
        }
        default:
            free(out);
            return NULL;
        }
    }
    *o = '\0';
    return out;
}

/* A number in strict JSON spelling. *integral: spelled as an integer
   (no fraction, no exponent). The value is what cJSON would hold: strtod
   of the same characters (computed without it, exactly, for a number
   without exponent whose digits make an integer <= 2^53). */
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "the exact decimal fast path below needs double arithmetic in double precision"
#endif
static bool s_number(fr_t *r, double *d, bool *integral)
{
    s_ws(r);
    const char *q = r->p, *e = r->end;
    const char *p = q;
    if (p < e && *p == '-')
        p++;
    if (p >= e || *p < '0' || *p > '9')
        return false;
    if (*p == '0')
        p++;
    else
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    *integral = true;
    if (p < e && *p == '.') {
        *integral = false;
        p++;
        if (p >= e || *p < '0' || *p > '9')
            return false;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    bool exponent = false;
    if (p < e && (*p == 'e' || *p == 'E')) {
        *integral = false;
        exponent = true;
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9')
            return false;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    size_t n = (size_t) (p - q);
    /* No exponent and the digits make an integer m <= 2^53 (a time in
       microseconds has 16): the value is m / 10^k (k digits after the
       point), two exact doubles whose quotient IEEE rounds correctly, as
       strtod does: the same double, without strtod (a result's two times
       cost the master ~1,600 instructions in it). */
    const char *digits = q[0] == '-' ? q + 1 : q;
    size_t ndigits = (size_t) (p - digits) - (*integral ? 0 : 1);   /* without the point */
    int64_t v = 0;
    int k = 0;
    if (!exponent && ndigits <= 16) {
        bool frac = false;
        for (const char *c = digits; c < p; c++) {
            if (*c == '.') {
                frac = true;
                continue;
            }
            v = v * 10 + (*c - '0');
            k += frac;
        }
    }
    if (!exponent && ndigits <= 16 && v <= (INT64_C(1) << 53)) {
        static const double pow10[] = {1e0, 1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,
                                       1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16};
        *d = (double) v / pow10[k];
        if (q[0] == '-')
            *d = -*d;   /* "-0" is -0.0, as strtod reads it */
    } else {
        char tmp[64];
        if (n >= sizeof tmp)
            return false;
        memcpy(tmp, q, n);
        tmp[n] = '\0';
        *d = strtod(tmp, NULL);
    }
    r->p = p;
    return isfinite(*d);
}

static bool s_int(fr_t *r, double lo, double hi, int64_t *out)
{
    double d;
    bool integral;
    if (!s_number(r, &d, &integral) || !integral || d < lo || d > hi)
        return false;
    *out = (int64_t) d;
    return true;
}

static bool s_bool(fr_t *r, bool *out)
{
    if (s_literal(r, "true", 4))
        *out = true;
    else if (s_literal(r, "false", 5))
        *out = false;
    else
        return false;
    return true;
}

/* A member name without escapes, and its colon. */
static bool s_key(fr_t *r, const char **k, size_t *n)
{
    bool esc;
    return s_span(r, k, n, &esc) && !esc && s_eat(r, ':');
}

static bool s_is(const char *k, size_t n, const char *name)
{
    return strlen(name) == n && memcmp(k, name, n) == 0;
}

/* Reads a member name and finds it in names (count of them): its index,
   or count when it is not there or was seen before (both decline). Marks
   it in *seen. */
static size_t s_member(fr_t *r, const char *const *names, size_t count, unsigned *seen)
{
    const char *k;
    size_t n;
    if (!s_key(r, &k, &n))
        return count;
    size_t which = 0;
    while (which < count && !s_is(k, n, names[which]))
        which++;
    if (which == count || (*seen & 1u << which))
        return count;
    *seen |= 1u << which;
    return which;
}

/* Members of a result object, in the order of the seen bits. */
static const char *const s_result_keys[] = {
    "task",   "attempt",          "status",           "exit_code", "signal",
    "timed_out", "stdout",        "stderr",           "stdout_truncated",
    "stderr_truncated", "result", "error",            "started",   "finished",
    "claim",
};
#define NRESULT_KEYS (sizeof s_result_keys / sizeof *s_result_keys)

/* A claim token's value into out (PROTO_CLAIM_MAX + 1 bytes); false for
   anything else (an escaped one too: the tree path reads it). */
static bool s_claim(fr_t *r, char *out)
{
    const char *s;
    size_t n;
    bool esc;
    if (!s_span(r, &s, &n, &esc) || esc || !proto_claim_valid(s, n))
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

/* One member's value into res; false to decline. A null value is the
   member's absence, as in pj_get. */
static bool s_result_member(fr_t *r, size_t which, proto_result_t *res)
{
    int64_t v;
    double d;
    bool integral;
    if (which != 0 && which != 1 && which != 2 && s_literal(r, "null", 4))
        return true;
    switch (which) {
    case 0: return s_int(r, 1, (double) PJ_MAX_SAFE_INT, &res->task);
    case 1:
        /* 0: a task the master ended before any dispatch (cancelled or
           dep_failed while queued). */
        if (!s_int(r, 0, PROTO_MAX_ATTEMPT, &v))
            return false;
        res->attempt = (int) v;
        return true;
    case 2: {
        const char *s;
        size_t n;
        bool esc;
        if (!s_span(r, &s, &n, &esc) || esc)
            return false;
        if (s_is(s, n, "done"))
            res->status = PROTO_ST_DONE;
        else if (s_is(s, n, "failed"))
            res->status = PROTO_ST_FAILED;
        else if (s_is(s, n, "cancelled"))
            res->status = PROTO_ST_CANCELLED;
        else
            return false;
        return true;
    }
    case 3:
        if (!s_int(r, INT_MIN, INT_MAX, &v))
            return false;
        res->exit_code = (int) v;
        res->has_exit_code = true;
        return true;
    case 4:
        if (!s_int(r, 0, 1024, &v))
            return false;
        res->signal = (int) v;
        return true;
    case 5: return s_bool(r, &res->timed_out);
    case 6: return (res->stdout_data = s_string(r)) != NULL;
    case 7: return (res->stderr_data = s_string(r)) != NULL;
    case 8: return s_bool(r, &res->stdout_truncated);
    case 9: return s_bool(r, &res->stderr_truncated);
    case 10: return false;   /* an embedded value: cJSON normalizes it */
    case 11: return (res->error = s_string(r)) != NULL;
    case 12:
    case 13:
        if (!s_number(r, &d, &integral) || d < 0 || d > 1e300)
            return false;
        if (which == 12)
            res->started = d;
        else
            res->finished = d;
        return true;
    case 14: return s_claim(r, res->claim);
    }
    return false;
}

/* The result object [start, end) without its claim member [lo, hi) (lo
   just after the ',' or '{' before it): what the master stores, which
   never holds a token. */
static char *s_text_without(const char *start, const char *end, const char *lo, const char *hi)
{
    if (lo[-1] == ',') {
        lo--;   /* the separator before it goes with it */
    } else {
        while (hi < end && (*hi == ' ' || *hi == '\t' || *hi == '\n' || *hi == '\r'))
            hi++;
        if (hi < end && *hi == ',')
            hi++;   /* the first member: the separator after it */
    }
    size_t a = (size_t) (lo - start), b = (size_t) (end - hi);
    char *text = xmalloc(a + b + 1);
    memcpy(text, start, a);
    memcpy(text + a, hi, b);
    text[a + b] = '\0';
    return text;
}

static proto_result_t *s_result(fr_t *r)
{
    if (!s_eat(r, '{'))
        return NULL;
    const char *start = r->p - 1;
    proto_result_t *res = proto_result_new();
    unsigned seen = 0;
    const char *claim_lo = NULL, *claim_hi = NULL;
    if (s_eat(r, '}'))
        goto decline;
    do {
        const char *at = r->p;
        size_t which = s_member(r, s_result_keys, NRESULT_KEYS, &seen);
        if (which == NRESULT_KEYS || !s_result_member(r, which, res))
            goto decline;
        if (which == 14) {
            claim_lo = at;
            claim_hi = r->p;
        }
    } while (s_eat(r, ','));
    if (!s_eat(r, '}') || (seen & 7u) != 7u)
        goto decline;
    res->text = claim_lo ? s_text_without(start, r->p, claim_lo, claim_hi)
                         : xstrndup(start, (size_t) (r->p - start));
    return res;
decline:
    proto_result_destroy(&res);
    return NULL;
}

/* Input the cJSON path would refuse before parsing, or that holds a
   \u0000: declined, so the refusal keeps its message. */
static bool s_plain_input(const char *buf, size_t len, size_t max)
{
    return buf && len > 0 && len <= max && pu_utf8_bad_at(buf, len) == len
           && !memmem(buf, len, "\\u0000", 6);
}

static bool s_at_end(fr_t *r)
{
    s_ws(r);
    return r->p == r->end;
}

/* {"v":1,"type":TYPE, then the members that member() takes}, with the
   member bits in need seen: shared by the framed messages below. */
typedef bool (*s_member_fn)(fr_t *r, const char *k, size_t n, void *msg, unsigned *seen);

static bool s_frame(const char *buf, size_t len, size_t max, const char *type, s_member_fn member,
                    void *msg, unsigned need)
{
    if (!s_plain_input(buf, len, max))
        return false;
    fr_t r = {buf, buf + len};
    if (!s_eat(&r, '{'))
        return false;
    unsigned seen = 0;   /* bit 0: v, bit 1: type, above: the member's own */
    do {
        const char *k;
        size_t n;
        double d;
        bool integral;
        if (!s_key(&r, &k, &n))
            return false;
        if (s_is(k, n, "v")) {
            if ((seen & 1) || !s_number(&r, &d, &integral) || d != PROTO_VERSION)
                return false;
            seen |= 1;
        } else if (s_is(k, n, "type")) {
            const char *t;
            size_t tn;
            bool esc;
            if ((seen & 2) || !s_span(&r, &t, &tn, &esc) || esc || !s_is(t, tn, type))
                return false;
            seen |= 2;
        } else if (!member(&r, k, n, msg, &seen)) {
            return false;
        }
    } while (s_eat(&r, ','));
    need |= 3;
    return s_eat(&r, '}') && s_at_end(&r) && (seen & need) == need;
}

static bool s_results_member(fr_t *r, const char *k, size_t n, void *arg, unsigned *seen)
{
    proto_report_t *msg = arg;
    if (s_is(k, n, "worker") && !(*seen & 4)) {
        *seen |= 4;
        size_t wn = (msg->worker = s_string(r)) ? strlen(msg->worker) : 0;
        return wn >= 1 && wn <= PROTO_MAX_NAME;
    }
    if (!s_is(k, n, "results") || (*seen & 8) || !s_eat(r, '['))
        return false;
    *seen |= 8;
    int cap = 0;
    if (s_eat(r, ']'))
        return true;
    do {
        proto_result_t *res = s_result(r);
        if (!res)
            return false;
        if (msg->nresults == cap) {
            cap = cap ? cap * 2 : 32;
            msg->results = xrealloc(msg->results, (size_t) cap * sizeof *msg->results);
        }
        msg->results[msg->nresults++] = res;
    } while (s_eat(r, ','));
    return s_eat(r, ']');
}

proto_report_t *pf_results_report(const char *buf, size_t len)
{
    proto_report_t *msg = proto_report_new(PROTO_REP_RESULTS, NULL);
    if (!s_frame(buf, len, PROTO_MAX_REPORT_MSG, "results", s_results_member, msg, 4 | 8))
        proto_report_destroy(&msg);
    return msg;
}

proto_result_t *pf_result(const char *buf, size_t len)
{
    if (!s_plain_input(buf, len, PROTO_MAX_REPORT_MSG))
        return NULL;
    fr_t r = {buf, buf + len};
    proto_result_t *res = s_result(&r);
    if (res && !s_at_end(&r))
        proto_result_destroy(&res);
    return res;
}

/* ---------------------------------------------------------------- specs */

/* Spec members the fast path reads; the rest (args, env, require,
   output_cap) decline. */
static const char *const s_spec_keys[] = {
    "argv", "shell", "fn", "stdin", "cwd", "timeout", "retries", "priority", "name", "index",
};
#define NSPEC_KEYS (sizeof s_spec_keys / sizeof *s_spec_keys)

static bool s_strv(fr_t *r, char ***out, int *n)
{
    if (!s_eat(r, '['))
        return false;
    int cap = 0;
    if (s_eat(r, ']'))
        return true;
    do {
        char *v = s_string(r);
        if (!v)
            return false;
        if (*n + 1 >= cap) {
            cap = cap ? cap * 2 : 8;
            *out = xrealloc(*out, (size_t) cap * sizeof **out);
        }
        (*out)[(*n)++] = v;
        (*out)[*n] = NULL;
    } while (s_eat(r, ','));
    return s_eat(r, ']');
}

static bool s_spec_member(fr_t *r, size_t which, proto_spec_t *spec)
{
    int64_t v;
    double d;
    bool integral;
    size_t n;
    switch (which) {
    case 0:
        spec->kind = PROTO_KIND_EXEC;
        return s_strv(r, &spec->argv, &spec->argc) && spec->argc > 0 && spec->argv[0][0];
    case 1:
        spec->kind = PROTO_KIND_EXEC;
        return (spec->shell = s_string(r)) != NULL && spec->shell[0];
    case 2:
        spec->kind = PROTO_KIND_FN;
        if (!(spec->fn = s_string(r)))
            return false;
        n = strlen(spec->fn);
        return n >= 1 && n <= PROTO_MAX_NAME;
    case 3:
        if (!(spec->stdin_data = s_string(r)))
            return false;
        spec->stdin_len = strlen(spec->stdin_data);
        return true;
    case 4: return (spec->cwd = s_string(r)) != NULL && spec->cwd[0];
    case 5:
        if (!s_number(r, &d, &integral) || d < 0 || d > PROTO_MAX_TIMEOUT)
            return false;
        spec->timeout = d;
        return true;
    case 6:
        if (!s_int(r, 0, 100, &v))
            return false;
        spec->retries = (int) v;
        return true;
    case 7:
        if (!s_int(r, INT32_MIN, INT32_MAX, &v))
            return false;
        spec->priority = (int32_t) v;
        return true;
    case 8:
        if (!(spec->name = s_string(r)))
            return false;
        n = strlen(spec->name);
        return n >= 1 && n <= PROTO_MAX_NAME;
    case 9: return s_int(r, 0, (double) PJ_MAX_SAFE_INT, &spec->index);
    }
    return false;
}

static proto_spec_t *s_spec(fr_t *r)
{
    if (!s_eat(r, '{'))
        return NULL;
    proto_spec_t *spec = proto_spec_new(0);
    unsigned seen = 0;
    if (s_eat(r, '}'))
        goto decline;
    do {
        unsigned before = seen;
        size_t which = s_member(r, s_spec_keys, NSPEC_KEYS, &seen);
        /* One of argv, shell, fn (bits 0-2). */
        if (which == NSPEC_KEYS || (which < 3 && (before & 7u)) || !s_spec_member(r, which, spec))
            goto decline;
    } while (s_eat(r, ','));
    if (!s_eat(r, '}') || !(seen & 7u))
        goto decline;
    return spec;
decline:
    proto_spec_destroy(&spec);
    return NULL;
}

/* ---------------------------------------------------------------- tasks */

static bool s_task(fr_t *r, proto_task_t *t)
{
    if (!s_eat(r, '{'))
        return false;
    unsigned seen = 0;
    do {
        const char *k;
        size_t n;
        int64_t v;
        if (!s_key(r, &k, &n))
            return false;
        if (s_is(k, n, "id") && !(seen & 1)) {
            if (!s_int(r, 1, (double) PJ_MAX_SAFE_INT, &t->id))
                return false;
            seen |= 1;
        } else if (s_is(k, n, "attempt") && !(seen & 2)) {
            if (!s_int(r, 1, PROTO_MAX_ATTEMPT, &v))
                return false;
            t->attempt = (int) v;
            seen |= 2;
        } else if (s_is(k, n, "job") && !(seen & 4)) {
            if (!s_int(r, 1, (double) PJ_MAX_SAFE_INT, &t->job))
                return false;
            seen |= 4;
        } else if (s_is(k, n, "spec") && !(seen & 8)) {
            if (!(t->spec = s_spec(r)))
                return false;
            seen |= 8;
        } else if (s_is(k, n, "claim") && !(seen & 16)) {
            if (!s_claim(r, t->claim))
                return false;
            seen |= 16;
        } else {
            return false;
        }
    } while (s_eat(r, ','));
    return s_eat(r, '}') && (seen & 15) == 15;
}

static bool s_tasks_member(fr_t *r, const char *k, size_t n, void *arg, unsigned *seen)
{
    proto_pipe_t *msg = arg;
    if (s_is(k, n, "seq") && !(*seen & 8)) {
        *seen |= 8;
        return s_int(r, 1, (double) PROTO_MAX_SEQ, &msg->seq);
    }
    if (!s_is(k, n, "tasks") || (*seen & 4) || !s_eat(r, '['))
        return false;
    *seen |= 4;
    int cap = 0;
    if (s_eat(r, ']'))
        return true;
    do {
        if (msg->ntasks == cap) {
            cap = cap ? cap * 2 : 64;
            msg->tasks = xrealloc(msg->tasks, (size_t) cap * sizeof *msg->tasks);
        }
        /* Counted first so that destroy frees a half-read entry. */
        proto_task_t *t = &msg->tasks[msg->ntasks++];
        memset(t, 0, sizeof *t);
        if (!s_task(r, t))
            return false;
    } while (s_eat(r, ','));
    return s_eat(r, ']');
}

proto_pipe_t *pf_tasks(const char *buf, size_t len)
{
    proto_pipe_t *msg = proto_pipe_new(PROTO_PIPE_TASKS);
    if (!s_frame(buf, len, PROTO_MAX_PIPE_MSG, "tasks", s_tasks_member, msg, 4))
        proto_pipe_destroy(&msg);
    return msg;
}

/* ---------------------------------------------------------------- submit */

/* A job's definition: an object of any shape (what the CLI was given),
   kept as cJSON prints it. Its span is found here (strings skipped
   whole, brackets counted) and only that small span is parsed with
   cJSON, then printed as the tree path prints it (pj_json). Declining
   here would cost the whole frame a second parse: the CLI's first batch
   of every job carries a definition after its tasks, which once made a
   16 MB submit parse twice on the master's loop. Nesting over
   DEF_MAX_DEPTH declines: cJSON counts its depth limit from the frame's
   root, this parse from the definition's. */
#define DEF_MAX_DEPTH 32

static bool s_definition(fr_t *r, char **out)
{
    s_ws(r);
    if (r->p >= r->end || *r->p != '{')
        return false;
    const char *start = r->p;
    int depth = 0;
    while (r->p < r->end) {
        char c = *r->p;
        if (c == '"') {
            const char *s;
            size_t n;
            bool esc;
            if (!s_span(r, &s, &n, &esc))
                return false;
            continue;
        }
        if (c == '{' || c == '[') {
            if (++depth > DEF_MAX_DEPTH)
                return false;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            r->p++;
            break;
        }
        r->p++;
    }
    if (depth != 0)
        return false;
    cJSON *v = cJSON_ParseWithLength(start, (size_t) (r->p - start));
    if (!cJSON_IsObject(v)) {
        cJSON_Delete(v);
        return false;
    }
    cJSON *wrap = cJSON_CreateObject();
    if (!wrap || !cJSON_AddItemToObject(wrap, "definition", v)) {
        cJSON_Delete(v);
        cJSON_Delete(wrap);
        return false;
    }
    proto_err_t err;
    bool ok = pj_json(wrap, "definition", out, &err) == 0 && *out
              && strlen(*out) <= PROTO_MAX_DEFINITION;
    cJSON_Delete(wrap);
    return ok;
}

static bool s_submit_member(fr_t *r, const char *k, size_t n, void *arg, unsigned *seen)
{
    proto_req_t *req = arg;
    if (s_is(k, n, "job") && !(*seen & 4)) {
        *seen |= 4;
        return s_int(r, 0, (double) PJ_MAX_SAFE_INT, &req->job);
    }
    if (s_is(k, n, "name") && !(*seen & 8)) {
        *seen |= 8;
        size_t len;
        return (req->name = s_string(r)) != NULL && (len = strlen(req->name)) >= 1
               && len <= PROTO_MAX_NAME;
    }
    if (s_is(k, n, "more") && !(*seen & 16)) {
        *seen |= 16;
        return s_bool(r, &req->more);
    }
    if (s_is(k, n, "key") && !(*seen & 64)) {
        *seen |= 64;
        return (req->key = s_string(r)) != NULL && proto_key_valid(req->key);
    }
    int64_t v;
    if (s_is(k, n, "wait_ms") && !(*seen & 128)) {
        *seen |= 128;
        if (!s_int(r, 0, PROTO_MAX_WAIT_MS, &v))
            return false;
        req->wait_ms = (int) v;
        return true;
    }
    if (s_is(k, n, "max_running") && !(*seen & 256)) {
        *seen |= 256;
        if (!s_int(r, 0, PROTO_MAX_RUNNING_LIMIT, &v))
            return false;
        req->max_running = (int) v;
        return true;
    }
    if (s_is(k, n, "definition") && !(*seen & 512)) {
        *seen |= 512;
        return s_definition(r, &req->definition);
    }
    if (!s_is(k, n, "tasks") || (*seen & 32) || !s_eat(r, '['))
        return false;
    *seen |= 32;
    int cap = 0;
    if (s_eat(r, ']'))
        return true;
    do {
        if (req->ntasks == PROTO_MAX_SUBMIT_BATCH)
            return false;
        if (req->ntasks == cap) {
            cap = cap ? cap * 2 : 64;
            req->tasks = xrealloc(req->tasks, (size_t) cap * sizeof *req->tasks);
        }
        if (!(req->tasks[req->ntasks] = s_spec(r)))
            return false;
        req->ntasks++;
    } while (s_eat(r, ','));
    return s_eat(r, ']');
}

proto_req_t *pf_submit(const char *buf, size_t len)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_SUBMIT);
    /* The tree path's one rule across members: a job that waits must be
       closed by this batch (its message is the tree path's to make). */
    if (!s_frame(buf, len, PROTO_MAX_API_MSG, "submit", s_submit_member, req, 0)
        || (req->wait_ms > 0 && req->more))
        proto_req_destroy(&req);
    return req;
}
