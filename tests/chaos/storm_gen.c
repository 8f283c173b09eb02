/*  storm_gen: what both modes of chaos-storm share (storm.h): the failure
    count, reproducible randomness, /proc figures, the garbage generator and
    socket helpers. Threads: one (the tool has no other).
*/
#include "storm.h"

#include "../../common/util.h"
#include "../../common/zmqx.h"
#include "../../proto/proto.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
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

/* ---- raw TCP ---- */

const char *const storm_raw_names[] = {"random", "cut-greeting", "bad-greeting",
                                       "bad-command", "oversize", "frames"};

static int r_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *) &a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Writes it all (loopback: the daemon reads as fast as we write, or its
   buffer is big enough for the few kB here); false when the daemon closed. */
static bool r_write(int fd, const void *buf, size_t len, rstats_t *st)
{
    const char *p = buf;
    while (len > 0) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        if (poll(&pfd, 1, REPLY_TIMEOUT_MS) != 1)
            return false;
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return false;
        st->bytes += n;
        p += n;
        len -= (size_t) n;
    }
    return true;
}

/* Reads until want bytes came (the daemon's greeting); false on EOF,
   error or after 2 s. */
static bool r_await(int fd, size_t want)
{
    unsigned char buf[256];
    size_t got = 0;
    int64_t deadline = storm_mono_ms() + 2000;
    while (got < want) {
        int64_t left = deadline - storm_mono_ms();
        struct pollfd pfd = {fd, POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, (int) left) != 1)
            return false;
        ssize_t n = recv(fd, buf, want - got < sizeof buf ? want - got : sizeof buf, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return false;
        got += (size_t) n;
    }
    return true;
}

void storm_raw_close(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

/* A ZMTP 3.0 greeting (64 bytes). */
static void r_greeting(unsigned char *g, int major, int minor, const char *mech)
{
    memset(g, 0, 64);
    g[0] = 0xff;
    g[8] = 1;
    g[9] = 0x7f;
    g[10] = (unsigned char) major;
    g[11] = (unsigned char) minor;
    memcpy(g + 12, mech, strlen(mech) < 20 ? strlen(mech) : 20);
}

/* A command frame (short form); returns its length. */
static size_t r_command(unsigned char *out, const char *name, const char *prop, const char *value)
{
    size_t p = 2, nlen = strlen(name);
    out[p++] = (unsigned char) nlen;
    memcpy(out + p, name, nlen);
    p += nlen;
    if (prop) {
        size_t plen = strlen(prop), vlen = strlen(value);
        out[p++] = (unsigned char) plen;
        memcpy(out + p, prop, plen);
        p += plen;
        out[p++] = 0;
        out[p++] = 0;
        out[p++] = (unsigned char) (vlen >> 8);
        out[p++] = (unsigned char) vlen;
        memcpy(out + p, value, vlen);
        p += vlen;
    }
    out[0] = 0x04;
    out[1] = (unsigned char) (p - 2);
    return p;
}

static size_t r_long_header(unsigned char *out, unsigned char flags, uint64_t size)
{
    out[0] = flags | 0x02;
    for (int i = 0; i < 8; i++)
        out[1 + i] = (unsigned char) (size >> (56 - 8 * i));
    return 9;
}

/* Greeting, wait for the daemon's, READY as peer_type. */
static bool r_handshake(int fd, const char *peer_type, rstats_t *st)
{
    unsigned char g[64], cmd[128];
    r_greeting(g, 3, storm_below(2), "NULL");
    if (!r_write(fd, g, 64, st))
        return false;
    if (!r_await(fd, 64)) {
        st->no_greeting++;
        return false;
    }
    return r_write(fd, cmd, r_command(cmd, "READY", "Socket-Type", peer_type), st);
}

static const char *const s_socket_types[] = {"PAIR", "PUB", "SUB", "REQ", "REP", "DEALER",
                                             "ROUTER", "PULL", "PUSH", "XPUB", "XSUB",
                                             "STREAM", "", "SERVER", "dealer", "PUSH\x01"};

void storm_raw(int port, const char *peer_type, int64_t max_msg, rstats_t *st)
{
    int fd = r_connect(port);
    if (fd < 0) {
        st->failed++;
        return;
    }
    st->conns++;
    rkind_t kind = (rkind_t) storm_below(R_KINDS);
    st->kinds[kind]++;
    unsigned char buf[4096], g[64];
    size_t n = 0;
    switch (kind) {
    case R_RANDOM:
        /* Half start like a greeting, so the parse goes further. */
        n = 1 + storm_below(sizeof buf - 1);
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char) storm_rand();
        if (storm_below(2))
            buf[0] = 0xff;
        r_write(fd, buf, n, st);
        break;
    case R_CUT:
        r_greeting(g, 3, 0, "NULL");
        r_write(fd, g, 1 + storm_below(63), st);
        break;
    case R_GREETING: {
        static const char *const mechs[] = {"CURVE", "PLAIN", "GSSAPI", "NUL", "NULLX", ""};
        static const int majors[] = {0, 1, 2, 3, 4, 255};
        r_greeting(g, majors[storm_below(6)], (int) storm_below(256), mechs[storm_below(6)]);
        switch (storm_below(4)) {
        case 0: g[9] = (unsigned char) storm_rand(); break;      /* not versioned */
        case 1: g[32] = 1; break;                                 /* as-server */
        case 2: g[1] = 0x7f; g[8] = 0; break;                     /* a 2^62 identity */
        default: g[40 + storm_below(24)] = (unsigned char) storm_rand(); break; /* filler */
        }
        if (r_write(fd, g, 64, st))
            r_await(fd, 10); /* its signature: it is reading us */
        break;
    }
    case R_COMMAND: {
        r_greeting(g, 3, 0, "NULL");
        if (!r_write(fd, g, 64, st))
            break;
        if (!r_await(fd, 64)) {
            st->no_greeting++;
            break;
        }
        switch (storm_below(8)) {
        case 0: /* a socket type this port refuses (or an unknown one) */
            n = r_command(buf, "READY", "Socket-Type",
                          s_socket_types[storm_below(sizeof s_socket_types / sizeof *s_socket_types)]);
            break;
        case 1: /* no properties */
            n = r_command(buf, "READY", NULL, NULL);
            break;
        case 2: /* a property longer than the command */
            n = r_command(buf, "READY", "Socket-Type", peer_type);
            buf[2 + 1 + 5 + 1 + 11] = 0xff;
            break;
        case 3:
            n = r_command(buf, "ERROR", "Reason", "storm");
            break;
        case 4: /* CURVE's first command, to a NULL server */
            n = r_command(buf, "HELLO", "x", "y");
            break;
        case 5: /* a command claiming 2^62 bytes */
            n = r_long_header(buf, 0x04, UINT64_C(1) << 62);
            memcpy(buf + n, "\x05READY", 6);
            n += 6;
            break;
        case 6: /* READY, then random command bytes */
            n = r_command(buf, "READY", "Socket-Type", peer_type);
            for (size_t i = 0; i < 200; i++)
                buf[n + i] = (unsigned char) storm_rand();
            buf[n] = 0x04 | (unsigned char) (storm_rand() & 0x03);
            n += 200;
            break;
        default: /* Identity and Resource properties, huge declared value */
            n = r_command(buf, "READY", "Identity", "storm-raw");
            buf[2 + 1 + 5 + 1 + 8] = 0x7f;
            break;
        }
        r_write(fd, buf, n, st);
        break;
    }
    case R_OVERSIZE: {
        if (!r_handshake(fd, peer_type, st))
            break;
        static const uint64_t sizes[] = {0, UINT64_C(1) << 31, UINT64_C(1) << 40,
                                         UINT64_C(1) << 62, UINT64_MAX};
        uint64_t size = sizes[storm_below(5)];
        if (size == 0)
            size = max_msg > 0 ? (uint64_t) max_msg + 1 + storm_below(1 << 20) : UINT64_C(1) << 33;
        n = r_long_header(buf, storm_below(2) ? 0x01 : 0, size);
        size_t data = storm_below(sizeof buf - n);
        memset(buf + n, 'x', data);
        r_write(fd, buf, n + data, st);
        break;
    }
    default: { /* frames */
        if (!r_handshake(fd, peer_type, st))
            break;
        int frames = 1 + (int) storm_below(8);
        for (int f = 0; f < frames && n + 16 < sizeof buf; f++) {
            size_t len = storm_below(sizeof buf / 8);
            if (n + 9 + len > sizeof buf)
                len = sizeof buf - n - 9;
            unsigned char flags = (unsigned char) (f + 1 < frames ? 0x01 : 0);
            if (storm_below(8) == 0)
                flags |= 0x04; /* a command where a message should be */
            if (len < 256 && storm_below(2)) {
                buf[n++] = flags;
                buf[n++] = (unsigned char) len;
            } else {
                n += r_long_header(buf + n, flags, len);
            }
            for (size_t i = 0; i < len; i++)
                buf[n + i] = (unsigned char) storm_rand();
            n += len;
        }
        /* The last frame often cut short. */
        if (storm_below(2) && n > 1)
            n -= 1 + storm_below(n / 4 + 1);
        r_write(fd, buf, n, st);
        break;
    }
    }
    storm_raw_close(fd);
}

int storm_raw_unending(int port, const char *peer_type, int mb, rstats_t *st)
{
    int fd = r_connect(port);
    if (fd < 0) {
        st->failed++;
        return -1;
    }
    st->conns++;
    if (!r_handshake(fd, peer_type, st)) {
        storm_raw_close(fd);
        return -1;
    }
    size_t len = 64 * 1024;
    unsigned char *frame = xmalloc(len + 9);
    size_t h = r_long_header(frame, 0x01, len);
    memset(frame + h, 'm', len);
    for (int i = 0; i < mb * 16; i++)
        if (!r_write(fd, frame, h + len, st))
            break;
    free(frame);
    return fd;
}

void storm_print_raw(const char *what, const rstats_t *st)
{
    printf("  raw %-8s %ld connections (", what, st->conns);
    for (int k = 0; k < R_KINDS; k++)
        printf("%s%s %ld", k ? ", " : "", storm_raw_names[k], st->kinds[k]);
    printf("), %ld bytes, %ld closed before their greeting, %ld connects failed\n", st->bytes,
           st->no_greeting, st->failed);
}
