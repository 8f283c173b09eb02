/*  storm_gen: what both modes of chaos-storm share (storm.h): the failure
    count, reproducible randomness, /proc figures, the garbage generator and
    socket helpers. Threads: one (the tool has no other).
*/
#include "storm.h"

#include "../../common/util.h"
#include "../../common/zmqx.h"
#include "../../proto/proto.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static int s_failures;

void storm_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "  STORM FAILURE: ");
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
    s_failures++;
}

/* ---- randomness (xorshift64*, reproducible from --seed) ---- */

static uint64_t s_seed = 0x9E3779B97F4A7C15ull;

void storm_seed(uint64_t seed)
{
    s_seed ^= seed * 0x2545F4914F6CDD1Dull;
}

int storm_failures(void)
{
    return s_failures;
}

uint64_t storm_rand(void)
{
    s_seed ^= s_seed >> 12;
    s_seed ^= s_seed << 25;
    s_seed ^= s_seed >> 27;
    return s_seed * 2685821657736338717ull;
}

size_t storm_below(size_t n)
{
    return n ? (size_t) (storm_rand() % n) : 0;
}

int64_t storm_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- /proc figures ---- */


mem_t storm_mem(pid_t pid)
{
    mem_t m = {-1, -1, -1};
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen(path, "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "VmRSS:", 6))
                m.rss_kb = atol(line + 6);
            else if (!strncmp(line, "VmHWM:", 6))
                m.hwm_kb = atol(line + 6);
        }
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/fd", (int) pid);
    DIR *d = opendir(path);
    if (d) {
        m.fds = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.')
                m.fds++;
        closedir(d);
    }
    return m;
}

void storm_print_mem(const char *who, const char *when, mem_t m)
{
    printf("  %-6s %-26s VmRSS %7ld kB  VmHWM %7ld kB  fds %4d\n", who, when, m.rss_kb, m.hwm_kb,
           m.fds);
    fflush(stdout);
}

bool storm_alive(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool alive = true;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "State:", 6) && strchr(line, 'Z'))
            alive = false;
    fclose(f);
    return alive;
}

/* ---- garbage ---- */

/* Tricky texts every channel must refuse (or, rarely, accept). */
static const char *const s_fixed[] = {
    "",
    " ",
    "{",
    "}",
    "[]",
    "null",
    "true",
    "0",
    "\"str\"",
    "{}",
    "{\"v\":1}",
    "{\"type\":\"status\"}",
    "{\"v\":2,\"type\":\"status\"}",
    "{\"v\":\"1\",\"type\":\"status\"}",
    "{\"v\":1.5,\"type\":\"status\"}",
    "{\"v\":1,\"type\":7}",
    "{\"v\":1,\"type\":\"nope\"}",
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":[]}",
    "{\"v\":1,\"type\":\"reply\",\"ok\":true}",
    "{\"v\":1,\"type\":\"status\",\"job\":-1}",
    "{\"v\":1,\"type\":\"status\",\"job\":1.5}",
    "{\"v\":1,\"type\":\"status\",\"job\":9007199254740993}",
    "{\"v\":1,\"type\":\"status\",\"job\":1e400}",
    "{\"v\":1,\"type\":\"status\",\"job\":-1e400}",
    "{\"v\":1,\"type\":\"status\",\"job\":\"1\"}",
    "{\"v\":1,\"type\":\"status\"} trailing",
    "{\"v\":1,\"type\":\"status\"}{\"v\":1}",
    "{\"v\":1,\"type\":\"stat\\u0000us\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"a\\u0000b\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"\\ud800\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"\\udc00\\ud800\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"\xc0\xaf\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"\xed\xa0\x80\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"\xf4\x90\x80\x80\"}",
    "{\"v\":1,\"type\":\"jobs\",\"x\":\"\xff\xfe\"}",
    "{\"v\":1,\"type\":\"jobs\"\x00}",
    "{\"v\":1,\"v\":2,\"type\":\"jobs\"}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"fn\":\"y\"}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"timout\":1}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"argv\":[\"a\"]}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"argv\":[]}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"argv\":[\"\"]}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"shell\":\"\"}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"timeout\":-1}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"retries\":101}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"output_cap\":0}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"priority\":2147483648}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"env\":{\"A=B\":\"c\"}}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"env\":{\"\":\"c\"}}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"x\",\"require\":[\"\"]}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"args\":1}]}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":{}}",
    "{\"v\":1,\"type\":\"submit\",\"tasks\":[1,2,3]}",
    "{\"v\":1,\"type\":\"submit\",\"job\":424242,\"tasks\":[]}",
    "{\"v\":1,\"type\":\"results\",\"job\":1,\"limit\":0}",
    "{\"v\":1,\"type\":\"results\",\"job\":1,\"limit\":10001}",
    "{\"v\":1,\"type\":\"results\"}",
    "{\"v\":1,\"type\":\"logs\"}",
    "{\"v\":1,\"type\":\"logs\",\"job\":1}",
    "{\"v\":1,\"type\":\"logs\",\"task\":1,\"out_offset\":-5}",
    "{\"v\":1,\"type\":\"cancel\"}",
    "{\"v\":1,\"type\":\"cancel\",\"index\":3}",
    "{\"v\":1,\"type\":\"drain\"}",
    "{\"v\":1,\"type\":\"forget\"}",
    "{\"v\":1,\"type\":\"hello\"}",
    "{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":0}",
    "{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":65537}",
    "{\"v\":1,\"type\":\"hello\",\"host\":\"\",\"threads\":1}",
    "{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1,\"running\":[{\"task\":0}]}",
    "{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1,\"labels\":[5]}",
    "{\"v\":1,\"type\":\"heartbeat\",\"worker\":\"w\",\"running\":[{\"task\":-1,\"attempt\":0}]}",
    "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":\"x\"}",
    "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":[{\"task\":1e400}]}",
    "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":[{}]}",
    "{\"v\":1,\"type\":\"output\",\"worker\":\"w\",\"task\":1,\"attempt\":1,\"stream\":\"x\","
    "\"data\":\"\"}",
    "{\"v\":1,\"type\":\"started\",\"worker\":\"w\",\"started\":[{\"task\":1,\"attempt\":1,"
    "\"at\":\"x\"}]}",
    "{\"v\":1,\"type\":\"bye\"}",
    "{\"v\":1,\"type\":\"bye\",\"worker\":5}",
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":0,\"attempt\":1,\"job\":1,\"spec\":{}}]}",
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":1,\"attempt\":0,\"job\":1,"
    "\"spec\":{\"fn\":\"noop\"}}]}",
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":1,\"attempt\":1,\"job\":1,"
    "\"spec\":{\"fn\":\"noop\",\"bogus\":1}}]}",
    "{\"v\":1,\"type\":\"tasks\",\"tasks\":\"x\"}",
    "{\"v\":1,\"type\":\"abort\"}",
    "{\"v\":1,\"type\":\"abort\",\"task\":\"x\",\"attempt\":1}",
};
#define NFIXED (sizeof s_fixed / sizeof s_fixed[0])


static void g_reserve(gbuf_t *g, size_t need)
{
    if (need > g->cap) {
        g->cap = need * 2;
        g->buf = xrealloc(g->buf, g->cap);
    }
}

static void g_set(gbuf_t *g, const char *data, size_t len)
{
    g_reserve(g, len + 1);
    memcpy(g->buf, data, len);
    g->len = len;
}

/* Nesting far beyond any parser's limit. */
static void g_deep(gbuf_t *g)
{
    size_t depth = 20000 + storm_below(80000);
    g_reserve(g, depth * 2 + 64);
    char *p = g->buf;
    p += sprintf(p, "{\"v\":1,\"type\":\"jobs\",\"x\":");
    memset(p, '[', depth);
    p += depth;
    memset(p, ']', depth);
    p += depth;
    *p++ = '}';
    g->len = (size_t) (p - g->buf);
}

/* A few byte-level edits of a legal message. */
static void g_mutate(gbuf_t *g, const char *base)
{
    g_set(g, base, strlen(base));
    int edits = 1 + (int) storm_below(3);
    for (int e = 0; e < edits && g->len > 0; e++) {
        size_t at = storm_below(g->len);
        switch (storm_below(6)) {
        case 0: /* flip bits */
            g->buf[at] ^= (char) (1u << storm_below(8));
            break;
        case 1: /* any byte */
            g->buf[at] = (char) storm_rand();
            break;
        case 2: /* delete one */
            memmove(g->buf + at, g->buf + at + 1, g->len - at - 1);
            g->len--;
            break;
        case 3: /* insert a structural character */
            g_reserve(g, g->len + 2);
            memmove(g->buf + at + 1, g->buf + at, g->len - at);
            g->buf[at] = "{}[]\",:\\0-e."[storm_below(13)];
            g->len++;
            break;
        case 4: /* repeat a chunk */
        {
            size_t n = 1 + storm_below(g->len - at < 32 ? g->len - at : 32);
            g_reserve(g, g->len + n + 1);
            memmove(g->buf + at + n, g->buf + at, g->len - at);
            g->len += n;
            break;
        }
        default: /* a digit for a digit */
            if (g->buf[at] >= '0' && g->buf[at] <= '9')
                g->buf[at] = (char) ('0' + storm_below(10));
            else
                g->buf[at] = (char) ('0' + storm_below(10));
            break;
        }
    }
}

const char *const storm_kind_names[] = {"random", "truncated", "mutated",
                                           "fixed", "deep", "large"};

/* One garbage frame, built from the channel's legal templates. */
gkind_t storm_garbage(gbuf_t *g, const char *const *templates, size_t ntemplates, bool api)
{
    uint64_t r = storm_below(1000);
    gkind_t kind = r < 250 ? G_RANDOM : r < 500 ? G_TRUNC : r < 850 ? G_MUTATE : r < 998 ? G_FIXED
                   : r < 999 ? G_DEEP : G_BIGNAME;
    const char *base = templates[storm_below(ntemplates)];
    switch (kind) {
    case G_RANDOM: {
        size_t len = storm_below(600);
        g_reserve(g, len + 1);
        for (size_t i = 0; i < len; i++)
            g->buf[i] = (char) storm_rand();
        g->len = len;
        break;
    }
    case G_TRUNC:
        g_set(g, base, storm_below(strlen(base)));
        break;
    case G_MUTATE:
        g_mutate(g, base);
        break;
    case G_FIXED: {
        const char *f = s_fixed[storm_below(NFIXED)];
        /* Legal on a pipe (it would drain the worker): not garbage there. */
        while (!api && !strcmp(f, "{\"v\":1,\"type\":\"drain\"}"))
            f = s_fixed[storm_below(NFIXED)];
        /* The one with an embedded NUL is 22 bytes long. */
        size_t flen = strlen(f);
        g_set(g, f, flen == 20 && !memcmp(f, "{\"v\":1,\"type\":\"jobs\"", 20) ? 22 : flen);
        break;
    }
    case G_DEEP:
        g_deep(g);
        break;
    default:
        if (api && storm_below(2)) {
            /* 10,001 specs: too_big. */
            size_t n = PROTO_MAX_SUBMIT_BATCH + 1;
            g_reserve(g, n * 16 + 128);
            char *p = g->buf + sprintf(g->buf, "{\"v\":1,\"type\":\"submit\",\"tasks\":[");
            for (size_t i = 0; i < n; i++)
                p += sprintf(p, "%s{\"fn\":\"noop\"}", i ? "," : "");
            p += sprintf(p, "]}");
            g->len = (size_t) (p - g->buf);
        } else {
            /* A 2 MiB name: under the frame limit, over the field's. */
            size_t n = 2 * 1024 * 1024;
            g_reserve(g, n + 128);
            char *p = g->buf + sprintf(g->buf, "{\"v\":1,\"type\":\"%s\",\"worker\":\"",
                                       api ? "drain" : "bye");
            memset(p, 'w', n);
            p += n;
            p += sprintf(p, "\"}");
            g->len = (size_t) (p - g->buf);
        }
        break;
    }
    return kind;
}

/* ---- sockets ---- */

void *storm_socket(void *ctx, int type, int timeout_ms)
{
    void *s = zmqx_socket(ctx, type, 0, 0);
    if (!s) {
        fprintf(stderr, "chaos-storm: socket: %s\n", zmq_strerror(errno));
        exit(2);
    }
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout_ms, sizeof timeout_ms);
    return s;
}

void storm_connect(void *s, const char *host, int port)
{
    char ep[300];
    snprintf(ep, sizeof ep, "tcp://%s:%d", host, port);
    if (zmq_connect(s, ep) != 0) {
        fprintf(stderr, "chaos-storm: connect %s: %s\n", ep, zmq_strerror(errno));
        exit(2);
    }
}
