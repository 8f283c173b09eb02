/*  conns: flow control on the API ROUTER (see conns.h). */
#include "conns.h"

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../proto/proto.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Connections are found by routing id in a fixed table: a record exists
   while the connection has something waiting here or a reply in libzmq,
   so a few thousand at most even under a flood of connections. */
#define NBUCKETS 1024
/* What a parked request costs besides its bytes (its item and frames). */
#define PARK_OVERHEAD 256
/* A blocked connection is tried again after 1 ms, doubling up to this:
   a client that reads gets its next reply within a millisecond or two; a
   thousand that never read cost ~8,000 failed sends a second. */
#define RETRY_MAX_MS 128

typedef enum { IT_REPLY, IT_BUSY, IT_REQUEST } item_kind_t;

typedef struct item {
    item_kind_t kind;
    zmqx_frames_t frames;    /* REPLY, BUSY: the envelope; REQUEST: the whole message */
    char *body;              /* REPLY: owned; BUSY: borrowed from conns_t */
    size_t len;
    int64_t count;           /* BUSY: answers still to send (identical ones merge) */
    int64_t cost;            /* REQUEST: counted against the park bounds */
    struct item *next;
} item_t;

/* One connection, by routing id. Fields are the main loop's but for
   refs and inflight, which libzmq's I/O thread decrements as it frees a
   reply. The items are in answer order: replies and busy answers first,
   then parked requests (and busy answers to those refused among them);
   a reply made later is inserted before the first request or busy item,
   since it answers a request older than any of those. */
typedef struct conn {
    struct conns *owner;
    int refs;                /* atomic: the table's, and one per reply libzmq holds */
    int64_t inflight;        /* atomic: bytes of its replies libzmq holds */
    char *id;
    size_t idlen;
    item_t *head, *tail;
    int64_t queued;          /* bytes of REPLY items */
    int64_t parked;          /* cost of REQUEST items */
    int64_t retry_at;        /* monotonic ms: when to try the head again */
    int64_t delay;           /* the backoff now (0: not blocked) */
    struct conn *next;       /* bucket chain */
} conn_t;

struct conns {
    void *sock;
    metrics_t *metrics;
    int refs;                /* atomic: conns_new's, and one per conn record */
    int64_t inflight;        /* atomic: bytes of replies libzmq holds, all connections */
    int64_t budget;          /* bytes: CONNS_REPLY_BUDGET, or a test's smaller one */
    int64_t queued, parked;  /* sums of the connections' */
    int64_t nitems;          /* items waiting, all connections */
    char *busy_conn, *busy_total;   /* the two "busy" replies, encoded */
    size_t busy_conn_len, busy_total_len;
    log_limit_t lim_busy;
    conn_t *buckets[NBUCKETS];
};

/* A reply handed to libzmq: whom to credit when it is freed. */
typedef struct {
    conn_t *conn;
    size_t len;
} sent_t;

static void s_conns_unref(conns_t *self)
{
    if (__atomic_sub_fetch(&self->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    free(self->busy_conn);
    free(self->busy_total);
    free(self);
}

static void s_conn_unref(conn_t *c)
{
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    conns_t *owner = c->owner;
    free(c->id);
    free(c);
    s_conns_unref(owner);
}

/* libzmq's free callback, on its I/O thread (or in zmq_msg_close here):
   the reply is written out, or dropped with its connection. */
static void s_sent_free(void *data, void *hint)
{
    sent_t *s = hint;
    /* Pairs with the release in s_try: what the main thread wrote before
       (the reply, this record, the connection's) is seen from here. */
    conn_t *c = __atomic_load_n(&s->conn, __ATOMIC_ACQUIRE);
    __atomic_sub_fetch(&c->inflight, (int64_t) s->len, __ATOMIC_ACQ_REL);
    __atomic_sub_fetch(&c->owner->inflight, (int64_t) s->len, __ATOMIC_ACQ_REL);
    free(data);
    free(s);
    s_conn_unref(c);
}

static char *s_busy_body(size_t *len, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *s_busy_body(size_t *len, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    proto_reply_t *rep = proto_reply_error(PROTO_E_BUSY, "%s", message);
    char *body = proto_reply_encode(rep, PROTO_REQ_STATUS);
    proto_reply_destroy(&rep);
    *len = strlen(body);
    return body;
}

/* The figure in this one is CONNS_PARK_CONN; BUSY_TOTAL's is the budget. */
#define BUSY_CONN                                                                          \
    "busy: this connection has replies it has not read and 1 MiB of requests waiting "    \
    "behind them; this request was not run: read your replies, then send it again"
#define BUSY_TOTAL                                                                         \
    "busy: clients have not read %" PRId64 " MiB of replies, as much as the master holds; " \
    "this request was not run: read the replies you have and send it again shortly"
_Static_assert(CONNS_PARK_CONN == (int64_t) 1 << 20, "the busy message names this bound");

conns_t *conns_new(void *sock, metrics_t *metrics, int64_t budget_mib)
{
    assert(budget_mib >= 0 && budget_mib <= CONNS_REPLY_BUDGET >> 20);
    conns_t *self = xcalloc(1, sizeof *self);
    self->sock = sock;
    self->metrics = metrics;
    self->refs = 1;
    self->budget = budget_mib ? budget_mib << 20 : CONNS_REPLY_BUDGET;
    self->busy_conn = s_busy_body(&self->busy_conn_len, "%s", BUSY_CONN);
    self->busy_total = s_busy_body(&self->busy_total_len, BUSY_TOTAL, self->budget >> 20);
    return self;
}

static void s_item_free(item_t *it)
{
    zmqx_frames_free(&it->frames);
    if (it->kind == IT_REPLY)
        free(it->body);
    free(it);
}

/* Takes the head item out, with its counts. */
static item_t *s_pop(conns_t *self, conn_t *c)
{
    item_t *it = c->head;
    assert(it);
    c->head = it->next;
    if (!c->head)
        c->tail = NULL;
    it->next = NULL;
    self->nitems--;
    if (it->kind == IT_REPLY) {
        c->queued -= (int64_t) it->len;
        self->queued -= (int64_t) it->len;
    } else if (it->kind == IT_REQUEST) {
        c->parked -= it->cost;
        self->parked -= it->cost;
    }
    assert(c->queued >= 0 && c->parked >= 0 && self->nitems >= 0);
    return it;
}

static void s_drop_items(conns_t *self, conn_t *c)
{
    while (c->head)
        s_item_free(s_pop(self, c));
    c->delay = 0;
}

void conns_destroy(conns_t **p)
{
    if (!p || !*p)
        return;
    conns_t *self = *p;
    for (int b = 0; b < NBUCKETS; b++) {
        while (self->buckets[b]) {
            conn_t *c = self->buckets[b];
            self->buckets[b] = c->next;
            s_drop_items(self, c);
            s_conn_unref(c);
        }
    }
    s_conns_unref(self);
    *p = NULL;
}

static unsigned s_hash(const char *id, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char) id[i]) * 16777619u;
    return h % NBUCKETS;
}

static conn_t *s_find(conns_t *self, const zmqx_frames_t *env)
{
    if (env->count < 1)
        return NULL;
    for (conn_t *c = self->buckets[s_hash(env->frames[0], env->sizes[0])]; c; c = c->next)
        if (c->idlen == env->sizes[0] && memcmp(c->id, env->frames[0], c->idlen) == 0)
            return c;
    return NULL;
}

static conn_t *s_get(conns_t *self, const zmqx_frames_t *env)
{
    conn_t *c = s_find(self, env);
    if (c)
        return c;
    c = xcalloc(1, sizeof *c);
    c->owner = self;
    c->refs = 1;
    __atomic_add_fetch(&self->refs, 1, __ATOMIC_ACQ_REL);
    c->idlen = env->sizes[0];
    c->id = xmalloc(c->idlen + 1);
    memcpy(c->id, env->frames[0], c->idlen);
    unsigned b = s_hash(c->id, c->idlen);
    c->next = self->buckets[b];
    self->buckets[b] = c;
    return c;
}

typedef enum { SENT, BLOCKED, GONE } try_t;

/* Hands body (taken when SENT) to libzmq for c at env. The routing frame
   first: the socket is ROUTER_MANDATORY, so a peer gone since fails it
   (EHOSTUNREACH) and so does a full queue (EAGAIN). libzmq learns what
   its I/O thread has taken from a queue only when it processes its
   commands, which a send does at most every few milliseconds, so a quick
   client can look full when it is not: the commands are processed
   (ZMQ_EVENTS) and the send tried once more. */
static try_t s_try(conns_t *self, conn_t *c, const zmqx_frames_t *env, char *body, size_t len)
{
    if (env->count < 1)
        return GONE;
    int rc = zmqx_send(self->sock, env->frames[0], env->sizes[0], ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc != 0 && errno == EAGAIN) {
        int events;
        size_t elen = sizeof events;
        zmq_getsockopt(self->sock, ZMQ_EVENTS, &events, &elen);
        rc = zmqx_send(self->sock, env->frames[0], env->sizes[0], ZMQ_SNDMORE | ZMQ_DONTWAIT);
    }
    if (rc != 0)
        return errno == EAGAIN ? BLOCKED : GONE;
    for (int i = 1; i < env->count; i++)
        zmqx_send(self->sock, env->frames[i], env->sizes[i], ZMQ_SNDMORE | ZMQ_DONTWAIT);
    /* Without a copy: libzmq frees it (s_sent_free) when it is written
       out, and only then is it off the counts. */
    sent_t *s = xmalloc(sizeof *s);
    s->len = len;
    __atomic_store_n(&s->conn, c, __ATOMIC_RELEASE);
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_ACQ_REL);
    __atomic_add_fetch(&c->inflight, (int64_t) len, __ATOMIC_ACQ_REL);
    __atomic_add_fetch(&self->inflight, (int64_t) len, __ATOMIC_ACQ_REL);
    zmq_msg_t m;
    if (zmq_msg_init_data(&m, body, len, s_sent_free, s) != 0)
        s_sent_free(body, s);   /* out of memory in libzmq: the reply is lost, as the message */
    else if (zmq_msg_send(&m, self->sock, ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&m);   /* cannot fail after the routing frame; freed and uncounted if so */
    return SENT;
}

static void s_blocked(conn_t *c, int64_t now)
{
    c->delay = c->delay ? (c->delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : c->delay * 2) : 1;
    /* Saturated: a caller may pass "every retry time has passed" as
       INT64_MAX (test_conns does). */
    c->retry_at = now > INT64_MAX - c->delay ? INT64_MAX : now + c->delay;
}

static item_t *s_item(item_kind_t kind)
{
    item_t *it = xcalloc(1, sizeof *it);
    it->kind = kind;
    return it;
}

static void s_append(conns_t *self, conn_t *c, item_t *it)
{
    if (c->tail)
        c->tail->next = it;
    else
        c->head = it;
    c->tail = it;
    self->nitems++;
}

/* A reply goes before the first parked request or busy answer: those
   answer requests newer than the one it answers. */
static void s_insert_reply(conns_t *self, conn_t *c, item_t *it)
{
    item_t **at = &c->head;
    while (*at && (*at)->kind == IT_REPLY)
        at = &(*at)->next;
    it->next = *at;
    *at = it;
    if (!it->next)
        c->tail = it;
    self->nitems++;
    c->queued += (int64_t) it->len;
    self->queued += (int64_t) it->len;
}

/* Who has unread replies, in bytes: what libzmq holds and what waits. */
static int64_t s_unread(const conns_t *self)
{
    return __atomic_load_n(&self->inflight, __ATOMIC_ACQUIRE) + self->queued;
}

static int64_t s_conn_unread(const conn_t *c)
{
    return __atomic_load_n(&c->inflight, __ATOMIC_ACQUIRE) + c->queued;
}

/* Whether a request of c (NULL: no record) may run, and how. */
static conns_admit_t s_may_run(const conns_t *self, const conn_t *c)
{
    if (s_unread(self) < self->budget)
        return CONNS_RUN;
    if (!c || s_conn_unread(c) == 0)
        return CONNS_RUN_SMALL;
    return CONNS_TAKEN;
}

void conns_send(conns_t *self, const zmqx_frames_t *env, char **body, size_t len)
{
    assert(body && *body);
    if (env->count < 1) {
        free(*body);
        *body = NULL;
        return;
    }
    conn_t *c = s_get(self, env);
    if (c->head) {
        item_t *it = s_item(IT_REPLY);
        zmqx_frames_copy(&it->frames, env);
        it->body = *body;
        it->len = len;
        s_insert_reply(self, c, it);
    } else {
        try_t r = s_try(self, c, env, *body, len);
        if (r == BLOCKED) {
            item_t *it = s_item(IT_REPLY);
            zmqx_frames_copy(&it->frames, env);
            it->body = *body;
            it->len = len;
            s_insert_reply(self, c, it);
            s_blocked(c, clock_mono_ms());
        } else if (r == GONE) {
            free(*body);
        }
    }
    *body = NULL;
}

/* Answers "busy" for a request of c at env (c: NULL when it has no
   record), after what c has waiting; at_head: before it all (the
   request was first in line). Identical answers next to each other are
   one item with a count. */
static void s_busy(conns_t *self, conn_t *c, const zmqx_frames_t *env, bool total, bool at_head)
{
    metrics_api_request(self->metrics, "unread", PROTO_E_BUSY);   /* not parsed: type unknown */
    int64_t held;
    if (log_limit(&self->lim_busy, clock_mono_ms(), &held))
        log_warn("event=api_busy reason=\"%s\" unread_bytes=%" PRId64 " parked_bytes=%" PRId64
                 " suppressed=%" PRId64,
                 total ? "replies not read, all clients" : "this client's parked requests",
                 s_unread(self), self->parked, held);
    const char *body = total ? self->busy_total : self->busy_conn;
    size_t len = total ? self->busy_total_len : self->busy_conn_len;
    if (!c || !c->head) {
        c = c ? c : s_get(self, env);
        char *copy = xmalloc(len);
        memcpy(copy, body, len);
        try_t r = s_try(self, c, env, copy, len);
        if (r == SENT)
            return;
        free(copy);
        if (r == GONE)
            return;
        s_blocked(c, clock_mono_ms());
    }
    item_t *near = at_head ? c->head : c->tail;
    if (near && near->kind == IT_BUSY && near->body == body) {
        near->count++;
        return;
    }
    item_t *it = s_item(IT_BUSY);
    zmqx_frames_copy(&it->frames, env);
    it->body = (char *) body;
    it->len = len;
    it->count = 1;
    if (at_head) {
        it->next = c->head;
        c->head = it;
        if (!c->tail)
            c->tail = it;
        self->nitems++;
    } else {
        s_append(self, c, it);
    }
}

conns_admit_t conns_admit(conns_t *self, zmqx_frames_t *frames)
{
    /* Not a request (api.c answers nothing to it): no routing, no body. */
    if (frames->count < 2)
        return CONNS_RUN;
    zmqx_frames_t env = {.count = frames->count - 1, .frames = frames->frames,
                         .sizes = frames->sizes};
    conn_t *c = s_find(self, &env);
    conns_admit_t how;
    if (c && c->head) {
        int64_t cost = PARK_OVERHEAD;
        for (int i = 0; i < frames->count; i++)
            cost += (int64_t) frames->sizes[i];
        if ((c->parked == 0 || c->parked + cost <= CONNS_PARK_CONN)
            && self->parked + cost <= CONNS_PARK_TOTAL) {
            item_t *it = s_item(IT_REQUEST);
            it->frames = *frames;
            it->cost = cost;
            memset(frames, 0, sizeof *frames);
            s_append(self, c, it);
            c->parked += cost;
            self->parked += cost;
            return CONNS_TAKEN;
        }
        s_busy(self, c, &env, false, false);
    } else if ((how = s_may_run(self, c)) != CONNS_TAKEN) {
        return how;
    } else {
        s_busy(self, c, &env, true, false);
    }
    zmqx_frames_free(frames);
    return CONNS_TAKEN;
}

/* Sends what c has at its head until it blocks or a parked request is
   next; that one is taken into *out (true), or answered "busy" when the
   budget is spent and c has unread replies of its own. */
static bool s_pump(conns_t *self, conn_t *c, int64_t now, zmqx_frames_t *out,
                   conns_admit_t *how)
{
    while (c->head) {
        item_t *it = c->head;
        if (it->kind == IT_REQUEST) {
            it = s_pop(self, c);
            zmqx_frames_t env = {.count = it->frames.count - 1, .frames = it->frames.frames,
                                 .sizes = it->frames.sizes};
            conns_admit_t may = s_may_run(self, c);
            if (may == CONNS_TAKEN) {
                s_busy(self, c, &env, true, true);
                s_item_free(it);
                continue;
            }
            *out = it->frames;
            *how = may;
            memset(&it->frames, 0, sizeof it->frames);
            s_item_free(it);
            return true;
        }
        char *body = it->body;
        if (it->kind == IT_BUSY) {
            body = xmalloc(it->len);
            memcpy(body, it->body, it->len);
        }
        try_t r = s_try(self, c, &it->frames, body, it->len);
        if (r == BLOCKED) {
            if (it->kind == IT_BUSY)
                free(body);
            s_blocked(c, now);
            return false;
        }
        if (r == GONE) {
            if (it->kind == IT_BUSY)
                free(body);
            s_drop_items(self, c);
            return false;
        }
        c->delay = 0;
        if (it->kind == IT_REPLY)
            it->body = NULL;   /* libzmq's now */
        if (it->kind == IT_REPLY || --it->count == 0)
            s_item_free(s_pop(self, c));
    }
    return false;
}

bool conns_next(conns_t *self, int64_t now, zmqx_frames_t *out, conns_admit_t *how)
{
    for (int b = 0; b < NBUCKETS; b++) {
        for (conn_t **at = &self->buckets[b]; *at;) {
            conn_t *c = *at;
            /* Nothing waiting and nothing in libzmq: forgotten until its
               next reply. */
            if (!c->head && __atomic_load_n(&c->inflight, __ATOMIC_ACQUIRE) == 0) {
                *at = c->next;
                s_conn_unref(c);
                continue;
            }
            at = &c->next;
            if (c->head && c->retry_at <= now && s_pump(self, c, now, out, how))
                return true;
        }
    }
    return false;
}

int64_t conns_timeout(const conns_t *self, int64_t now)
{
    if (self->nitems == 0)
        return -1;
    int64_t t = -1;
    for (int b = 0; b < NBUCKETS; b++)
        for (const conn_t *c = self->buckets[b]; c; c = c->next)
            if (c->head) {
                int64_t in = c->retry_at > now ? c->retry_at - now : 0;
                if (t < 0 || in < t)
                    t = in;
            }
    return t;
}

int64_t conns_reply_bytes(const conns_t *self)
{
    return s_unread(self);
}
