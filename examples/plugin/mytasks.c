/*  mytasks: an example ztask plugin.

    Three functions that show the plugin API (include/ztask_plugin.h):

      wordcount  {"text":"a b c"}  -> 3          words separated by whitespace
      upper      {"text":"abc"}    -> "ABC"      ASCII letters upper-cased
      fib        {"n":30}          -> 832040     deliberately slow (naive
                                                 recursion) so that it shows
                                                 how to honour cancelled()

    Build:  cc -shared -fPIC -I<ztask>/include -o libmytasks.so mytasks.c
    Use:    ztask-worker --plugin ./libmytasks.so
            ztask submit --fn wordcount --args '{"text":"a b"}'

    It needs nothing but libc: args arrive as compact JSON text, and the few
    values these functions need are read with the small scanner below. A
    real plugin may link any JSON library instead (cJSON, jansson...).

    Every function may run on several worker threads at once, so nothing
    here is global or static-mutable; results and errors are malloc'd and
    the worker free()s them.
*/
#include "ztask_plugin.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
   A tiny JSON reader: finds a top-level key of an object and reads a
   string or an integer value. The worker only passes valid JSON, so this
   does not validate; it only never reads past the terminating NUL.
   ------------------------------------------------------------------------ */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* p at an opening quote; returns the byte after the closing one. */
static const char *skip_string(const char *p)
{
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1])
            p++;
    return *p ? p + 1 : NULL;
}

/* Skips one value (string, number, literal, object or array). */
static const char *skip_value(const char *p)
{
    if (*p == '"')
        return skip_string(p);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (*p) {
            if (*p == '"') {
                p = skip_string(p);
                if (!p)
                    return NULL;
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return NULL;
    }
    while (*p && !strchr(",}] \t\r\n", *p))
        p++;
    return p;
}

static void put_utf8(char **o, unsigned cp)
{
    unsigned char *u = (unsigned char *) *o;
    if (cp < 0x80) {
        *u++ = (unsigned char) cp;
    } else if (cp < 0x800) {
        *u++ = (unsigned char) (0xC0 | (cp >> 6));
        *u++ = (unsigned char) (0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *u++ = (unsigned char) (0xE0 | (cp >> 12));
        *u++ = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
        *u++ = (unsigned char) (0x80 | (cp & 0x3F));
    } else {
        *u++ = (unsigned char) (0xF0 | (cp >> 18));
        *u++ = (unsigned char) (0x80 | ((cp >> 12) & 0x3F));
        *u++ = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
        *u++ = (unsigned char) (0x80 | (cp & 0x3F));
    }
    *o = (char *) u;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned) (c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned) (c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned) (c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Decodes the JSON string at p into malloc'd UTF-8 (NULL if p is not a
   string). An escaped NUL (\u0000) ends the text early: fine here. */
static char *read_string(const char *p)
{
    if (*p != '"')
        return NULL;
    const char *end = skip_string(p);
    if (!end)
        return NULL;
    /* Decoding never grows the text: "\uXXXX" (6 bytes) is at most 3
       bytes of UTF-8, a surrogate pair (12) is 4. */
    char *out = malloc((size_t) (end - p));
    if (!out)
        return NULL;
    char *o = out;
    for (p++; p < end - 1; p++) {
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        p++;
        switch (*p) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(p + 1, &cp) != 0)
                break;
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[1] == '\\' && p[2] == 'u' &&
                hex4(p + 3, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD;  /* a lone surrogate */
            }
            put_utf8(&o, cp);
            break;
        }
        default: *o++ = *p; break;  /* \" \\ \/ */
        }
    }
    *o = '\0';
    return out;
}

/* The value of key in the top-level object json, or NULL. */
static const char *find_key(const char *json, const char *key)
{
    const char *p = skip_ws(json);
    if (*p != '{')
        return NULL;
    p = skip_ws(p + 1);
    while (*p == '"') {
        char *name = read_string(p);
        int match = name && strcmp(name, key) == 0;
        free(name);
        p = skip_string(p);
        if (!p)
            return NULL;
        p = skip_ws(p);
        if (*p != ':')
            return NULL;
        p = skip_ws(p + 1);
        if (match)
            return p;
        p = skip_value(p);
        if (!p)
            return NULL;
        p = skip_ws(p);
        if (*p != ',')
            return NULL;
        p = skip_ws(p + 1);
    }
    return NULL;
}

/* Reads a JSON integer (no fraction or exponent). */
static int read_int(const char *p, long long *out)
{
    if (!p)
        return -1;
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p || *end == '.' || *end == 'e' || *end == 'E')
        return -1;
    *out = v;
    return 0;
}

/* strdup is POSIX, not C11; this keeps the plugin plain C. */
static char *dup_text(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

/* A JSON number as malloc'd text. */
static char *dup_number(long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    return dup_text(buf);
}

/* args.key as a decoded string, or NULL when absent or not a string. */
static char *arg_string(const ztask_call_t *call, const char *key)
{
    const char *value = find_key(call->args_json, key);
    return value ? read_string(value) : NULL;
}

/* ------------------------------------------------------------------------
   The functions.
   ------------------------------------------------------------------------ */

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int wordcount(const ztask_call_t *call, char **result, char **error)
{
    char *text = arg_string(call, "text");
    if (!text) {
        *error = dup_text("wordcount: args.text must be a string");
        return 1;
    }
    long long words = 0;
    int in_word = 0;
    for (const unsigned char *c = (const unsigned char *) text; *c; c++) {
        if (is_space(*c)) {
            in_word = 0;
        } else if (!in_word) {
            in_word = 1;
            words++;
        }
    }
    free(text);
    *result = dup_number(words);
    return 0;
}

static int upper(const ztask_call_t *call, char **result, char **error)
{
    char *text = arg_string(call, "text");
    if (!text) {
        *error = dup_text("upper: args.text must be a string");
        return 1;
    }
    /* The result is a JSON string: quote it, escaping what JSON requires.
       Worst case every byte becomes \u00XX (6 bytes). */
    size_t len = strlen(text);
    char *out = malloc(len * 6 + 3);
    if (!out) {
        free(text);
        return 1;  /* the worker reports a generic error */
    }
    char *o = out;
    *o++ = '"';
    for (const unsigned char *c = (const unsigned char *) text; *c; c++) {
        unsigned char ch = *c;
        if (ch >= 'a' && ch <= 'z')
            ch = (unsigned char) (ch - 'a' + 'A');
        if (ch == '"' || ch == '\\') {
            *o++ = '\\';
            *o++ = (char) ch;
        } else if (ch < 0x20) {
            o += sprintf(o, "\\u%04x", ch);
        } else {
            *o++ = (char) ch;
        }
    }
    *o++ = '"';
    *o = '\0';
    free(text);
    *result = out;
    return 0;
}

typedef struct {
    const ztask_call_t *call;
    unsigned long calls;
    int stopped;
} fib_state_t;

/* Naive on purpose: fib(40) makes ~330 million calls. Every 2^20 calls
   (well under a millisecond) it asks the worker whether to stop; that is
   the whole cancellation protocol. */
static int64_t fib_slow(fib_state_t *st, int n)
{
    if (st->stopped)
        return 0;
    if ((++st->calls & 0xFFFFF) == 0 && st->call->cancelled(st->call)) {
        st->stopped = 1;
        return 0;
    }
    return n < 2 ? n : fib_slow(st, n - 1) + fib_slow(st, n - 2);
}

static int fib(const ztask_call_t *call, char **result, char **error)
{
    long long n;
    /* fib(92) is the largest that fits in int64. */
    if (read_int(find_key(call->args_json, "n"), &n) != 0 || n < 0 || n > 92) {
        *error = dup_text("fib: args.n must be an integer from 0 to 92");
        return 1;
    }
    fib_state_t st = {.call = call, .calls = 0, .stopped = 0};
    int64_t f = fib_slow(&st, (int) n);
    if (st.stopped) {
        *error = dup_text("fib: cancelled");
        return 1;
    }
    *result = dup_number((long long) f);
    return 0;
}

static const ztask_fn_entry_t table[] = {
    {"wordcount", wordcount},
    {"upper", upper},
    {"fib", fib},
    {NULL, NULL},
};

const ztask_fn_entry_t *ztask_plugin_functions(int *abi)
{
    *abi = ZTASK_PLUGIN_ABI;
    return table;
}
