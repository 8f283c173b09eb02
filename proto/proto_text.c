/*  proto_text: the text rules of the protocol (proto_text.h). */
#include "proto_text.h"

#include "../common/util.h"
#include "proto.h"

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

size_t pu_plain_len(const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *) data;
    const uint64_t hi = 0x8080808080808080ULL, lo = 0x0101010101010101ULL;
    size_t i = 0;
    while (len - i >= 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        /* A byte below 0x20, a '"', a '\\' (exact: no false alarm). */
        uint64_t ctl = (w - lo * 0x20) & ~w & hi;
        uint64_t q = w ^ (lo * '"'), b = w ^ (lo * '\\');
        if (ctl | ((q - lo) & ~q & hi) | ((b - lo) & ~b & hi))
            break;
        i += 8;
    }
    while (i < len && p[i] >= 0x20 && p[i] != '"' && p[i] != '\\')
        i++;
    return i;
}

/* ------------------------------------------------------- string vectors */

void proto_refs_free(proto_task_ref_t *v, int n)
{
    for (int i = 0; v && i < n; i++)
        free(v[i].gpus);
    free(v);
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
