/*  gate: sheds connections that have not authenticated (see gate.h). */
#include "gate.h"

#include "../common/log.h"
#include "../common/util.h"
#include "../common/zmqx.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <zmq.h>

#define GATE_MAX_WATCHED 4
/* While a connection is unauthenticated, its byte count is looked at this
   often (a few system calls per such connection). */
#define GATE_CHECK_MS 5
/* What the master sends before a handshake completes: its greeting (64
   bytes, ZMTP 3), and with CURVE its WELCOME command (a 168-byte body and
   a 2-byte frame header, CurveZMQ). More than that means it has sent
   READY (or ERROR, and the peer is about to go anyway). */
#define GATE_GREETING_BYTES 64
#define GATE_WELCOME_BYTES 170
/* The kernel's TCP_LISTEN state (include/net/tcp_states.h); glibc's
   <netinet/tcp.h>, which names it, clashes with <linux/tcp.h>, which has
   tcpi_bytes_sent. */
#define GATE_TCP_LISTEN 10
/* A connection this young may not have had the round trip its first
   handshake step needs (on a distant network): a shortage of descriptors
   does not shed it yet. */
#define GATE_YOUNG_MS 250

typedef struct {
    void *sock;               /* watched, borrowed */
    void *mon;                /* PAIR connected to its monitor, owned */
    char name[16];
    int port;                 /* local port of its connections */
} watch_t;

typedef struct {
    int fd;
    int watch;
    int64_t since_ms;         /* when the gate learned of it */
    uint64_t seq;             /* accept order: lower is older */
    bool authed;              /* has passed its handshake */
    bool advanced;            /* CURVE: sent a valid HELLO (the master sent WELCOME) */
    bool talked;              /* has sent a byte (a client sends its greeting at once) */
    bool shed;                /* shut down; waiting for DISCONNECTED */
} conn_t;

struct gate {
    void *ctx;
    bool curve;
    watch_t watch[GATE_MAX_WATCHED];
    void *mons[GATE_MAX_WATCHED];
    int nwatch;
    conn_t *conns;
    size_t nconns, cap;
    int npending;             /* conns neither authed nor shed */
    uint64_t seq;             /* accepted so far */
    int fd_limit;             /* soft RLIMIT_NOFILE */
    bool short_fds;           /* set by an event, handled in gate_handle */
    log_limit_t shed_log, short_log;
};

gate_t *gate_new(void *ctx, bool curve)
{
    gate_t *self = xcalloc(1, sizeof *self);
    self->ctx = ctx;
    self->curve = curve;
    struct rlimit rl;
    self->fd_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t) INT32_MAX
                         ? (int) rl.rlim_cur
                         : INT32_MAX;
    return self;
}

int gate_watch(gate_t *self, void *sock, const char *name)
{
    assert(self->nwatch < GATE_MAX_WATCHED);
    int ivl = GATE_HANDSHAKE_MS;
    zmq_setsockopt(sock, ZMQ_HANDSHAKE_IVL, &ivl, sizeof ivl);
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://ztask-gate-%p-%d", (void *) self, self->nwatch);
    if (zmq_socket_monitor(sock, ep, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED
                                         | ZMQ_EVENT_ACCEPT_FAILED | ZMQ_EVENT_LISTENING)
        != 0)
        return -1;
    void *mon = zmqx_socket(self->ctx, ZMQ_PAIR, 0, 0);
    if (!mon || zmq_connect(mon, ep) != 0) {
        int e = errno;
        if (mon)
            zmq_close(mon);
        zmq_socket_monitor(sock, NULL, 0);
        errno = e;
        return -1;
    }
    watch_t *w = &self->watch[self->nwatch];
    w->sock = sock;
    w->mon = mon;
    snprintf(w->name, sizeof w->name, "%s", name);
    self->mons[self->nwatch++] = mon;
    return 0;
}

void *const *gate_sockets(const gate_t *self, int *n)
{
    *n = self->nwatch;
    return self->mons;
}

static int s_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *) &ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *) &ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *) &ss)->sin6_port);
    return -1;
}

/* "IP:PORT" of fd's peer into buf. */
static const char *s_peer(int fd, char *buf, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getpeername(fd, (struct sockaddr *) &ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *) &ss;
            inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *) &ss;
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(buf, n, "%s:%d", ip, port);
    return buf;
}

static conn_t *s_find(gate_t *self, int fd)
{
    for (size_t i = 0; i < self->nconns; i++)
        if (self->conns[i].fd == fd)
            return &self->conns[i];
    return NULL;
}

static void s_remove(gate_t *self, int fd)
{
    conn_t *c = s_find(self, fd);
    if (!c)
        return;
    self->npending -= !c->authed && !c->shed;
    *c = self->conns[--self->nconns];
}

/* The one way a connection stops waiting: authenticated, or shed (or
   found not to be ours). */
static void s_settle(gate_t *self, conn_t *c, bool authed)
{
    assert(!c->authed && !c->shed && self->npending > 0);
    self->npending--;
    if (authed)
        c->authed = true;
    else
        c->shed = true;
}

static bool s_counters(const watch_t *w, int fd, uint64_t *sent, uint64_t *received);

static void s_shed(gate_t *self, conn_t *c, const char *reason, int64_t now)
{
    uint64_t sent = 0, received = 0;
    s_counters(&self->watch[c->watch], c->fd, &sent, &received);
    char peer[INET6_ADDRSTRLEN + 8];
    s_peer(c->fd, peer, sizeof peer);
    /* shutdown, not close: the descriptor stays libzmq's, which sees the
       end of the stream, drops the connection and frees its buffers. */
    shutdown(c->fd, SHUT_RDWR);
    s_settle(self, c, false);
    int64_t held;
    if (log_limit(&self->shed_log, now, &held))
        log_warn("event=connection_shed socket=%s peer=%s reason=%s sent=%" PRIu64
                 " received=%" PRIu64 " age_ms=%" PRId64 " suppressed=%" PRId64,
                 self->watch[c->watch].name, peer, reason, sent, received, now - c->since_ms,
                 held);
}

/* The kernel's counters for fd: false when fd is no longer one of w's
   connections (closed and its number reused since the event). */
static bool s_counters(const watch_t *w, int fd, uint64_t *sent, uint64_t *received)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || ti.tcpi_state == GATE_TCP_LISTEN
        || (w->port > 0 && s_local_port(fd) != w->port))
        return false;
    /* tcpi_bytes_sent came with Linux 4.19; bytes acknowledged before. */
    *sent = len >= offsetof(struct tcp_info, tcpi_bytes_sent) + sizeof ti.tcpi_bytes_sent
                ? ti.tcpi_bytes_sent
                : ti.tcpi_bytes_acked;
    *received = ti.tcpi_bytes_received;
    return true;
}

static void s_event(gate_t *self, int wi, const zmqx_frames_t *f)
{
    if (f->count < 1 || f->sizes[0] < 6)
        return;
    uint16_t event;
    uint32_t value;
    memcpy(&event, f->frames[0], sizeof event);
    memcpy(&value, f->frames[0] + 2, sizeof value);
    watch_t *w = &self->watch[wi];
    if (event == ZMQ_EVENT_LISTENING) {
        w->port = s_local_port((int) value);
    } else if (event == ZMQ_EVENT_ACCEPTED) {
        int fd = (int) value;
        s_remove(self, fd);   /* a DISCONNECTED missed: the number is new */
        if (self->nconns == self->cap) {
            self->cap = self->cap ? self->cap * 2 : 64;
            self->conns = xrealloc(self->conns, self->cap * sizeof *self->conns);
        }
        self->conns[self->nconns++] =
            (conn_t){.fd = fd, .watch = wi, .since_ms = 0, .seq = ++self->seq};
        self->npending++;
        /* Read again: an operator (prlimit) may have changed it. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
            self->fd_limit = rl.rlim_cur < (rlim_t) INT32_MAX ? (int) rl.rlim_cur : INT32_MAX;
        if (fd >= self->fd_limit - GATE_RESERVE_FDS)
            self->short_fds = true;
    } else if (event == ZMQ_EVENT_DISCONNECTED) {
        s_remove(self, (int) value);
    } else if (event == ZMQ_EVENT_ACCEPT_FAILED) {
        if (value == EMFILE || value == ENFILE)
            self->short_fds = true;
    }
}

/* Reads up to max events of every monitor. */
static void s_read_events(gate_t *self, int64_t now, int max)
{
    for (int wi = 0; wi < self->nwatch; wi++)
        for (int i = 0; i < max; i++) {
            zmqx_frames_t f;
            if (zmqx_recv_frames(self->watch[wi].mon, &f, 2, ZMQ_DONTWAIT) != 0)
                break;
            s_event(self, wi, &f);
            zmqx_frames_free(&f);
        }
    for (size_t i = 0; i < self->nconns; i++)
        if (self->conns[i].since_ms == 0)
            self->conns[i].since_ms = now;
}

/* Whether a should be shed before b: a connection that has sent nothing
   before one that has (a real client sends its greeting as soon as it is
   connected), one that has not sent a valid CURVE HELLO before one that
   has (its handshake is then a round trip from done), and the older
   first (a real handshake takes milliseconds; a storm cycles through
   itself). */
static bool s_worse(const conn_t *a, const conn_t *b)
{
    if (a->talked != b->talked)
        return !a->talked;
    if (a->advanced != b->advanced)
        return !a->advanced;
    return a->seq < b->seq;
}

/* The unauthenticated connection of watch wi to shed first (s_worse),
   NULL if none. Connections younger than min_age_ms are spared (0: none
   are). */
static conn_t *s_worst_pending(gate_t *self, int wi, int64_t now, int64_t min_age_ms)
{
    conn_t *best = NULL;
    for (size_t i = 0; i < self->nconns; i++) {
        conn_t *c = &self->conns[i];
        if (c->watch != wi || c->authed || c->shed || now - c->since_ms < min_age_ms)
            continue;
        if (!best || s_worse(c, best))
            best = c;
    }
    return best;
}

void gate_handle(gate_t *self, bool events, int64_t now_ms)
{
    if (events)
        s_read_events(self, now_ms, 10000);
    if (self->npending == 0 && !self->short_fds)
        return;
    uint64_t before_ready = GATE_GREETING_BYTES + (self->curve ? GATE_WELCOME_BYTES : 0);
    int pending[GATE_MAX_WATCHED] = {0};
    for (size_t i = 0; i < self->nconns; i++) {
        conn_t *c = &self->conns[i];
        if (c->authed || c->shed)
            continue;
        uint64_t sent, received;
        if (!s_counters(&self->watch[c->watch], c->fd, &sent, &received)) {
            s_settle(self, c, false);   /* not ours any more: forgotten at its DISCONNECTED */
            continue;
        }
        c->advanced = self->curve && sent > GATE_GREETING_BYTES;
        c->talked = received > 0;
        if (sent > before_ready)
            s_settle(self, c, true);
        else if (received > GATE_PREAUTH_BYTES)
            s_shed(self, c, "frame_before_handshake", now_ms);
        else
            pending[c->watch]++;
    }
    for (int wi = 0; wi < self->nwatch; wi++)
        for (; pending[wi] > GATE_MAX_PENDING; pending[wi]--)
            s_shed(self, s_worst_pending(self, wi, now_ms, 0), "too_many_handshakes", now_ms);
    if (self->short_fds) {
        self->short_fds = false;
        int64_t held;
        if (log_limit(&self->short_log, now_ms, &held))
            log_error("event=descriptors_short limit=%d reserve=%d connections=%zu "
                      "note=\"unauthenticated connections are shed; raise LimitNOFILE (ulimit "
                      "-n) if listed peers need more\" suppressed=%" PRId64,
                      self->fd_limit, GATE_RESERVE_FDS, self->nconns, held);
        for (int wi = 0; wi < self->nwatch; wi++)
            for (conn_t *c; (c = s_worst_pending(self, wi, now_ms, GATE_YOUNG_MS))
                            && !c->advanced;)
                s_shed(self, c, "descriptors_short", now_ms);
    }
}

int64_t gate_timeout(const gate_t *self, int64_t now_ms)
{
    (void) now_ms;
    return gate_pending(self) > 0 ? GATE_CHECK_MS : -1;
}

int gate_connections(const gate_t *self)
{
    return (int) self->nconns;
}

int gate_pending(const gate_t *self)
{
    return self->npending;
}

void gate_destroy(gate_t **p)
{
    if (!p || !*p)
        return;
    gate_t *self = *p;
    for (int i = 0; i < self->nwatch; i++) {
        zmq_socket_monitor(self->watch[i].sock, NULL, 0);
        zmq_close(self->watch[i].mon);
    }
    free(self->conns);
    free(self);
    *p = NULL;
}
