/*  storm.h: the parts of chaos-storm (chaos_storm.c) shared by its two
    modes, storm_master.c and storm_worker.c.

    Randomness is xorshift64*, reproducible from --seed. Failures are
    counted (storm_fail prints one line each); a mode ends with exit 1 when
    any was counted. Threads: one.
*/
#ifndef ZTASK_CHAOS_STORM_H
#define ZTASK_CHAOS_STORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Garbage frames between two legal requests. */
#define WINDOW 32
/* API requests a storm window sends before it reads their replies. */
#define API_INFLIGHT 3
/* Every reply must come within this (the daemons answer in microseconds;
   this is the sanitizer-build and busy-machine margin). */
#define REPLY_TIMEOUT_MS 20000
/* Frames over the 32 MiB limit, each on a fresh socket or connection. */
#define OVERSIZE_FRAMES 3

/* ---- failures ---- */
void storm_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int storm_failures(void);

/* ---- randomness and time ---- */
void storm_seed(uint64_t seed);
uint64_t storm_rand(void);
size_t storm_below(size_t n);           /* uniform-ish in 0..n-1; 0 for n = 0 */
int64_t storm_mono_ms(void);

/* ---- /proc figures of a process ---- */
typedef struct {
    long rss_kb, hwm_kb;                /* VmRSS, VmHWM; -1 when gone */
    int fds;                            /* open descriptors; -1 when gone */
} mem_t;
mem_t storm_mem(pid_t pid);
void storm_print_mem(const char *who, const char *when, mem_t m);
bool storm_alive(pid_t pid);            /* exists and is not a zombie */

/* ---- garbage ---- */
typedef struct {
    char *buf;                          /* owned; free() it */
    size_t len, cap;
} gbuf_t;

typedef enum { G_RANDOM, G_TRUNC, G_MUTATE, G_FIXED, G_DEEP, G_BIGNAME, G_KINDS } gkind_t;
extern const char *const storm_kind_names[G_KINDS];

/* Fills g with one garbage frame made from the channel's legal templates
   (api: the API channel, else a pipe or report channel); returns its kind. */
gkind_t storm_garbage(gbuf_t *g, const char *const *templates, size_t ntemplates, bool api);

/* ---- sockets ---- */
/* A socket with linger 0 and send/receive timeouts; exits 2 on failure. */
void *storm_socket(void *ctx, int type, int timeout_ms);
void storm_connect(void *s, const char *host, int port);

/* ---- raw TCP: garbage below ZeroMQ, on short connections ---- */
/* What one connection carries: random bytes; a ZMTP greeting cut short; a
   full greeting with a bad version, mechanism or filler; a good greeting
   and then a bad or foreign command (READY of the wrong socket type,
   malformed properties, ERROR, CURVE's HELLO, a command claiming 2^62
   bytes); a good handshake and a frame header over the limit (or of
   2^31..2^64-1 bytes) with a little data; a good handshake and a few
   random frames (flags, sizes, the last one cut). */
typedef enum { R_RANDOM, R_CUT, R_GREETING, R_COMMAND, R_OVERSIZE, R_FRAMES, R_KINDS } rkind_t;
extern const char *const storm_raw_names[R_KINDS];

typedef struct {
    long conns, kinds[R_KINDS];
    long bytes;                         /* written */
    long no_greeting;                   /* the daemon closed before its greeting */
    long failed;                        /* connect() failed */
} rstats_t;

/* One connection to 127.0.0.1:port with one kind of garbage, the rest of
   the handshake sent once the daemon's greeting came (a bounded wait);
   closed with a RST (no TIME_WAIT left behind: tens of thousands of them
   would use up the ephemeral ports). peer_type: the socket type a legal
   peer announces; max_msg: the port's frame limit, 0 = none. */
void storm_raw(int port, const char *peer_type, int64_t max_msg, rstats_t *st);
/* A connection that completes the handshake as peer_type and sends mb MiB
   in 64 KiB frames that all say "more": a message that never ends.
   Returns the descriptor (the caller closes it with storm_raw_close), or
   -1. */
int storm_raw_unending(int port, const char *peer_type, int mb, rstats_t *st);
void storm_raw_close(int fd);
void storm_print_raw(const char *what, const rstats_t *st);

/* ---- the modes ---- */
int storm_master_main(int argc, char **argv);
int storm_worker_main(int argc, char **argv);

#endif
