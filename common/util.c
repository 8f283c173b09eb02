#include "util.h"

#include "clock.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void s_oom(size_t size)
{
    fprintf(stderr, "ztask: out of memory allocating %zu bytes\n", size);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        s_oom(size);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        s_oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q)
        s_oom(size);
    return q;
}

char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *d = xmalloc(n + 1);
    memcpy(d, s, n + 1);
    return d;
}

char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *s = xmalloc((size_t) n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t) n + 1, fmt, ap);
    va_end(ap);
    return s;
}

char *i64_text(char buf[I64_TEXT_MAX], int64_t v)
{
    /* Digits from the end; the magnitude as unsigned, so INT64_MIN has
       one too. */
    char *p = buf + I64_TEXT_MAX - 1;
    *p = '\0';
    uint64_t u = v < 0 ? 0 - (uint64_t) v : (uint64_t) v;
    do {
        *--p = (char) ('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return p;
}

void strbuf_append(strbuf_t *sb, const char *data, size_t n)
{
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 256;
        while (cap < sb->len + n + 1)
            cap *= 2;
        sb->data = xrealloc(sb->data, cap);
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, data, n);
    sb->len += n;
    sb->data[sb->len] = 0;
}

void strbuf_printf(strbuf_t *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    strbuf_append(sb, "", 0);   /* allocates on first use */
    if (sb->len + (size_t) n + 1 > sb->cap) {
        size_t need = (size_t) n;
        char *tmp = xmalloc(need + 1);
        va_start(ap, fmt);
        vsnprintf(tmp, need + 1, fmt, ap);
        va_end(ap);
        strbuf_append(sb, tmp, need);
        free(tmp);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, sb->cap - sb->len, fmt, ap);
    va_end(ap);
    sb->len += (size_t) n;
}

bool addr_is_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0
           || strcmp(addr, "[::1]") == 0;
}

int parse_int64(const char *text, int64_t min, int64_t max, int64_t *out)
{
    if (!text || !*text)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end || end == text || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int parse_double(const char *text, double *out)
{
    if (!text || !*text)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || *end || end == text || v != v)
        return -1;
    *out = v;
    return 0;
}

int parse_duration(const char *text, double max, double *out)
{
    if (!text || !*text)
        return -1;
    size_t n = strlen(text);
    double unit = 1;
    switch (text[n - 1]) {
    case 's': unit = 1; n--; break;
    case 'm': unit = 60; n--; break;
    case 'h': unit = 3600; n--; break;
    case 'd': unit = 86400; n--; break;
    default: break;
    }
    char num[64];
    if (n == 0 || n >= sizeof num)
        return -1;
    memcpy(num, text, n);
    num[n] = '\0';
    double v;
    if (parse_double(num, &v) != 0 || v < 0 || v * unit > max)
        return -1;
    *out = v * unit;
    return 0;
}

int parse_bytes(const char *text, int64_t *out)
{
    if (!text || !*text)
        return -1;
    size_t n = strlen(text);
    int64_t mult = 1;
    char last = text[n - 1];
    if (last == 'K' || last == 'k')
        mult = 1024;
    else if (last == 'M' || last == 'm')
        mult = 1024 * 1024;
    else if (last == 'G' || last == 'g')
        mult = 1024LL * 1024 * 1024;
    char *num = xstrndup(text, mult == 1 ? n : n - 1);
    int64_t v;
    int rc = parse_int64(num, 1, INT64_MAX / mult, &v);
    free(num);
    if (rc != 0)
        return -1;
    *out = v * mult;
    return 0;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid.
   Rejects overlong forms, surrogates and code points above U+10FFFF. */
size_t utf8_seq_len(const unsigned char *p, size_t left)
{
    unsigned c = p[0];
    if (c >= 0x01 && c < 0x80)
        return 1;
    size_t n;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else
        return 0;
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF
        || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

bool utf8_valid(const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *) data;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(p + i, len - i);
        if (!n)
            return false;
        i += n;
    }
    return true;
}

char *utf8_sanitize(const char *data, size_t len, size_t *outlen)
{
    char *copy = xmalloc(len + 1);
    memcpy(copy, data, len);
    return utf8_sanitize_take(copy, len, outlen);
}

char *utf8_sanitize_take(char *data, size_t len, size_t *outlen)
{
    const unsigned char *p = (const unsigned char *) data;
    size_t bad = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(p + i, len - i);
        bad += n == 0;
        i += n ? n : 1;
    }
    /* Sized exactly (each bad byte grows by 2), never 3 x len: text of
       megabytes (a result's output decoded from base64 on the master)
       is repaired in its own buffer, grown once (for a big buffer, an
       mremap rather than a copy). */
    size_t total = len + 2 * bad;
    char *out = xrealloc(data, total + 1);
    if (bad) {
        /* The bytes move to the end, then are written back from the
           front: the gap between reading and writing starts at 2 x bad
           and shrinks by 2 at each bad byte, so a write never reaches a
           byte not yet read. */
        memmove(out + 2 * bad, out, len);
        size_t r = 2 * bad, o = 0;
        while (r < total) {
            size_t run = 0, n;
            while (r + run < total
                   && (n = utf8_seq_len((const unsigned char *) out + r + run, total - r - run)))
                run += n;
            memmove(out + o, out + r, run);
            o += run;
            r += run;
            if (r < total) {
                memcpy(out + o, "\xEF\xBF\xBD", 3);
                o += 3;
                r++;
            }
        }
    }
    out[total] = '\0';
    if (outlen)
        *outlen = total;
    return out;
}

int hostport_parse(const char *text, char **host, int *port)
{
    if (!text || !*text)
        return -1;
    if (strncmp(text, "ipc://", 6) == 0) {
        /* A directory of Unix sockets (common/zmqx.h): the whole text is
           the host, the port stays the default. */
        if (text[6] != '/' || !text[7])
            return -1;
        *host = xstrdup(text);
        return 0;
    }
    const char *colon = NULL;
    const char *hs = text, *he;
    if (text[0] == '[') {
        const char *rb = strchr(text, ']');
        if (!rb || rb == text + 1)
            return -1;
        hs = text + 1;
        he = rb;
        if (rb[1] == ':')
            colon = rb + 1;
        else if (rb[1])
            return -1;
    } else {
        colon = strchr(text, ':');
        if (colon && strchr(colon + 1, ':'))
            return -1; /* bare IPv6 needs brackets */
        he = colon ? colon : text + strlen(text);
        if (he == hs)
            return -1;
    }
    if (colon) {
        int64_t p;
        if (parse_int64(colon + 1, 1, 65535, &p) != 0)
            return -1;
        *port = (int) p;
    }
    *host = xstrndup(hs, (size_t) (he - hs));
    return 0;
}

int cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int) n;
}

uint64_t jitter_seed(const void *salt)
{
    uint64_t x = ((uint64_t) getpid() << 32) ^ (uint64_t) clock_mono_us() ^ (uintptr_t) salt;
    return x ? x : 0x9E3779B97F4A7C15ull;   /* xorshift64 sticks at zero */
}

uint64_t jitter_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

int strp_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

char *pct_encode(const char *s, const char *special)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        n += (*p == '%' || strchr(special, *p)) ? 3 : 1;
    char *out = xmalloc(n + 1), *o = out;
    for (const char *p = s; *p; p++) {
        if (*p == '%' || strchr(special, *p))
            o += sprintf(o, "%%%02X", (unsigned char) *p);
        else
            *o++ = *p;
    }
    *o = '\0';
    return out;
}

static int s_hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

char *pct_decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = s_hex(s[i + 1])) >= 0 && (lo = s_hex(s[i + 2])) >= 0) {
            *o++ = (char) (hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

bool looks_like_shell_line(const char *program)
{
    return strpbrk(program, " \t|&;<>()$`*?~") != NULL;
}

int mkdir_parents(const char *path, mode_t mode)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        errno = ENOTDIR;
        return -1;
    }
    char *copy = xstrdup(path);
    int rc = 0;
    /* Each parent in turn: "a/b/c" makes "a", then "a/b". */
    for (char *p = copy + 1; *p && rc == 0; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0755) != 0 && errno != EEXIST)
            rc = -1;
        else if (stat(copy, &st) != 0)
            rc = -1;
        else if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            rc = -1;
        }
        *p = '/';
    }
    if (rc == 0) {
        if (mkdir(copy, mode) == 0)
            rc = chmod(copy, mode);
        else if (errno != EEXIST)
            rc = -1;
    }
    int saved = errno;
    free(copy);
    errno = saved;
    return rc;
}

const char *text_first_line(const char *text, size_t *len)
{
    *len = 0;
    for (const char *p = text; p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t) (nl - p) : strlen(p);
        for (size_t i = 0; i < n; i++)
            if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') {
                *len = n;
                return p;
            }
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

char *list_next(char **cursor)
{
    for (char *p = *cursor; p; p = *cursor) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        *cursor = comma ? comma + 1 : NULL;
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strlen(p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            p[--n] = '\0';
        if (n)
            return p;
    }
    return NULL;
}

void mem_release(const void *p, size_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        return;
    uintptr_t lo = ((uintptr_t) p + (uintptr_t) page - 1) & ~((uintptr_t) page - 1);
    uintptr_t hi = ((uintptr_t) p + n) & ~((uintptr_t) page - 1);
    if (hi > lo)
        madvise((void *) lo, hi - lo, MADV_DONTNEED);
}
