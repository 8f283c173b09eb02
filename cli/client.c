#include "client.h"

#include "../common/clock.h"
#include "../common/connector.h"
#include "../common/util.h"
#include "../common/zmqx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Resends of a read-only request happen every third of its timeout, but
   never faster than this: a master busy committing a big batch must not
   be asked the same question ten times a second. */
#define RESEND_MIN_MS 1000
/* A "busy" answer (the master's reply budget is full: docs/protocol.md,
   "Pipelining") means the request was not run, so any request may be sent
   again, a submit included. The pauses before doing so: 50 ms doubling
   to 1 s, each drawn between half and all of that (so clients refused
   together do not come back together), all inside the call's timeout. */
#define BUSY_PAUSE_MIN_MS 50
#define BUSY_PAUSE_MAX_MS 1000
/* A send refused for want of a connection: how long the monitor is read
   for the handshake failure that explains it (its event is already there
   when that is the cause). */
#define SEND_WHY_MS 200

struct client {
    void *ctx;
    connector_t *conn;       /* the master's address and our keys */
    connector_link_t link;   /* link.sock NULL until the first call, and after a timeout */
    bool connected;          /* some socket of this call reached the master */
    bool reached;            /* some socket of this client ever connected: a master that
                                refuses now is restarting, and expected back */
    int timeout_ms;
    bool (*interrupted)(void *arg);
    void *interrupt_arg;
    uint64_t rng;            /* xorshift64 state: busy pause jitter only */
};

client_t *client_new(const char *host, int port, int timeout_ms)
{
    connector_t *conn = connector_new(&(connector_config_t){ .host = host, .port = port });
    if (!conn)
        return NULL;
    void *ctx = zmq_ctx_new();
    if (!ctx) {
        connector_destroy(&conn);
        return NULL;
    }
    client_t *self = xcalloc(1, sizeof *self);
    self->ctx = ctx;
    self->conn = conn;
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    /* Different per process, so that CLIs refused together spread out. */
    self->rng = jitter_seed(self);
    return self;
}

int client_set_curve(client_t *self, const char *server_key, const char *public_key,
                     const char *secret_key)
{
    if (self->link.sock)
        return -1;
    connector_t *conn = connector_new(&(connector_config_t){
        .host = connector_host(self->conn),
        .port = connector_port(self->conn),
        .server_key = server_key,
        .public_key = public_key,
        .secret_key = secret_key,
    });
    if (!conn || !connector_curve(conn)) {
        connector_destroy(&conn);
        return -1;
    }
    connector_destroy(&self->conn);
    self->conn = conn;
    return 0;
}

void client_set_interrupt(client_t *self, bool (*interrupted)(void *arg), void *arg)
{
    self->interrupted = interrupted;
    self->interrupt_arg = arg;
}

void client_destroy(client_t **p)
{
    if (!p || !*p)
        return;
    client_t *self = *p;
    connector_close(&self->link);
    zmq_ctx_term(self->ctx);
    connector_destroy(&self->conn);   /* wipes the secret key */
    free(self);
    *p = NULL;
}

const char *client_address(const client_t *self)
{
    return connector_address(self->conn);
}

static void s_fail(client_err_t *err, client_err_kind_t kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_fail(client_err_t *err, client_err_kind_t kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    err->kind = kind;
}

static int s_open_socket(client_t *self, client_err_t *err)
{
    if (self->link.sock)
        return 0;
    /* Always a monitor, CURVE or not: a master that wants CURVE from a
       client without keys is told apart by it too. */
    connector_err_t why;
    const connector_socket_t opt = {
        .type = ZMQ_DEALER,
        .maxmsg = PROTO_MAX_API_MSG,
        .monitor = true,
    };
    if (connector_open(self->conn, self->ctx, &opt, &self->link, &why) == 0)
        return 0;
    if (why == CONNECTOR_ERR_SOCKET)
        s_fail(err, CLIENT_ERR_UNREACHABLE, "cannot create a socket: %s", zmq_strerror(errno));
    else if (why == CONNECTOR_ERR_CURVE)
        s_fail(err, CLIENT_ERR_AUTH, "cannot use CURVE: %s (libzmq built without it?)",
               zmq_strerror(errno));
    else
        s_fail(err, CLIENT_ERR_UNREACHABLE, "cannot connect to %s: %s",
               connector_address(self->conn), zmq_strerror(errno));
    return -1;
}

/* The handshake failure connector_wait reported, in words that say what
   to do. */
static void s_handshake_failed(client_t *self, client_err_t *err)
{
    const char *addr = connector_address(self->conn);
    bool curve = connector_curve(self->conn);
    connector_event_t ev = self->link.failure;
    char why[400];
    switch (ev.kind) {
    case CONNECTOR_EV_REFUSED:
        snprintf(why, sizeof why,
                 "the master at %s refused this client's key (status %u): add its .pub file "
                 "to the master's --clients list, then send the master SIGHUP",
                 addr, ev.value);
        break;
    case CONNECTOR_EV_MECHANISM:
        if (!curve)
            snprintf(why, sizeof why,
                     "the master at %s requires CURVE keys: give --curve-secret and "
                     "--master-key (or ZTASK_CURVE_SECRET and ZTASK_MASTER_KEY, or the "
                     "config file)",
                     addr);
        else
            snprintf(why, sizeof why,
                     "the master at %s does not use CURVE, but this client was given keys", addr);
        break;
    case CONNECTOR_EV_NO_DETAIL:
        if (curve)
            snprintf(why, sizeof why,
                     "the CURVE handshake with %s failed; is --master-key the master's public "
                     "key?",
                     addr);
        else
            snprintf(why, sizeof why,
                     "the master at %s hangs up during the handshake: it probably requires "
                     "CURVE keys (give --curve-secret and --master-key, or set "
                     "ZTASK_CURVE_SECRET and ZTASK_MASTER_KEY, or use the config file)",
                     addr);
        break;
    default:   /* CONNECTOR_EV_PROTOCOL */
        snprintf(why, sizeof why,
                 "the handshake with %s failed (protocol error 0x%x); is --master-key the "
                 "master's public key?",
                 addr, ev.value);
        break;
    }
    s_fail(err, CLIENT_ERR_AUTH, "authentication failed: %s", why);
}

/* A connection refused, or a host that does not resolve, in words that
   say which and what to do. */
static void s_refused(client_t *self, client_err_t *err)
{
    const char *addr = connector_address(self->conn);
    if (!connector_resolves(self->conn))
        s_fail(err, CLIENT_ERR_UNREACHABLE,
               "cannot reach the master at %s: host '%s' not found; set --master or "
               "ZTASK_MASTER",
               addr, connector_host(self->conn));
    else
        s_fail(err, CLIENT_ERR_UNREACHABLE,
               "cannot reach the master at %s: connection refused; is ztask-master running "
               "there? set --master or ZTASK_MASTER",
               addr);
}

/* Waits until the socket is readable or until deadline (monotonic ms).
   1 readable, 0 timed out, -1 interrupted or failed (err filled). A
   refused connection fails at once, unless this client has reached the
   master before: then the master is restarting (`ztask wait` across a
   restart, a submit sent again after its reply was lost), and libzmq's
   retries every ~0.1 s are waited on until the deadline. */
static int s_wait(client_t *self, int64_t deadline, client_err_t *err)
{
    connector_err_t why;
    for (;;) {
        why = connector_wait(&self->link, deadline, self->interrupted, self->interrupt_arg);
        self->reached = self->reached || self->link.connected;
        if (why != CONNECTOR_ERR_REFUSED || !self->reached)
            break;
    }
    self->connected = self->connected || self->link.connected;
    switch (why) {
    case CONNECTOR_ERR_REFUSED:
        s_refused(self, err);
        return -1;
    case CONNECTOR_OK:
        return 1;
    case CONNECTOR_ERR_UNREACHABLE:
    case CONNECTOR_ERR_TIMEOUT:
        return 0;
    case CONNECTOR_ERR_HANDSHAKE:
        s_handshake_failed(self, err);
        return -1;
    case CONNECTOR_ERR_INTERRUPTED:
        s_fail(err, CLIENT_ERR_INTERRUPTED, "interrupted");
        return -1;
    default:
        s_fail(err, CLIENT_ERR_UNREACHABLE, "waiting for the master: %s", zmq_strerror(errno));
        return -1;
    }
}

/* Turns one reply frame into the caller's result. */
static proto_reply_t *s_decode(const char *buf, size_t len, proto_req_type_t type,
                               client_err_t *err)
{
    proto_err_t perr = { { 0 }, { 0 } };
    proto_reply_t *rep = proto_reply_decode(buf, len, type, &perr);
    if (!rep) {
        s_fail(err, CLIENT_ERR_BAD_REPLY,
               "cannot read the master's reply: %s (is it a ztask master of the same version?)",
               perr.message[0] ? perr.message : "malformed");
        return NULL;
    }
    if (!rep->ok) {
        bool auth = strcmp(rep->error.code, PROTO_E_AUTH) == 0;
        snprintf(err->code, sizeof err->code, "%s", rep->error.code);
        s_fail(err, auth ? CLIENT_ERR_AUTH : CLIENT_ERR_REFUSED, "%s%s (%s)",
               auth ? "authentication failed: " : "",
               rep->error.message[0] ? rep->error.message : "request refused",
               rep->error.code[0] ? rep->error.code : "error");
        proto_reply_destroy(&rep);
        return NULL;
    }
    return rep;
}

/* The pause before asking again after the n-th "busy" answer (n from
   0): BUSY_PAUSE_MIN_MS << n, at most BUSY_PAUSE_MAX_MS, drawn between
   half and all of it. */
static int64_t s_busy_pause(client_t *self, int n)
{
    int64_t cap = BUSY_PAUSE_MIN_MS;
    for (int i = 0; i < n && cap < BUSY_PAUSE_MAX_MS; i++)
        cap *= 2;
    if (cap > BUSY_PAUSE_MAX_MS)
        cap = BUSY_PAUSE_MAX_MS;
    return cap / 2 + (int64_t) (jitter_next(&self->rng) % (uint64_t) (cap / 2 + 1));
}

/* secs to a tenth, for people: a caller's deadline measured from the
   call's start is 1.499 s, not the 1.5 it was given as. */
static double s_tenths(double secs)
{
    return (double) (int64_t) (secs * 10 + 0.5) / 10;
}

/* The last "busy" answer's message (s_decode's "MESSAGE (busy)"), once
   the timeout or the caller's deadline (cut) has run out: how long it
   stayed so, still ending with the code as every refusal does
   (docs/cli.md). */
static void s_still_busy(client_err_t *err, int answers, double secs, bool cut)
{
    static const char code[] = " (" PROTO_E_BUSY ")";
    size_t used = strlen(err->message);
    if (used >= sizeof code - 1 && strcmp(err->message + used - (sizeof code - 1), code) == 0)
        used -= sizeof code - 1;
    snprintf(err->message + used, sizeof err->message - used,
             "; still busy after %d answers in %g s (%s)%s", answers, s_tenths(secs),
             cut ? "when the wait's time ran out" : "a longer --request-timeout waits longer",
             code);
}

/* How a call that got no reply by its end fails (secs: from its start to
   that end; cut: the caller's deadline, which came before the timeout):
   the master's last "busy" when one came (busy answers so far, its words
   in busy_err: a master that answered is not "unreachable", even if the
   copy sent after the pause got nothing in time; by the caller's deadline
   too: the same refusal, exit 4, whichever end came first); else, by the
   caller's deadline, unreachable when no socket of this client ever
   connected (a host that drops the packets: nothing says the job is slow,
   so not the caller's timeout either), else the deadline; else no reply
   at all. */
static void s_ran_out(client_t *self, client_err_t *err, double secs, bool cut, int busy,
                      const client_err_t *busy_err)
{
    if (busy > 0) {
        *err = *busy_err;
        s_still_busy(err, busy, secs, cut);
        return;
    }
    if (cut && self->reached) {
        memset(err, 0, sizeof *err);
        s_fail(err, CLIENT_ERR_DEADLINE,
               "no reply from the master at %s before the caller's deadline",
               connector_address(self->conn));
        return;
    }
    /* One message for "master down", "master slow" and "wrong port" (see
       client.h); the kind still tells them apart. */
    s_fail(err, self->connected ? CLIENT_ERR_TIMEOUT : CLIENT_ERR_UNREACHABLE,
           "cannot reach the master at %s (no reply within %g s); is ztask-master running? "
           "set --master or ZTASK_MASTER",
           connector_address(self->conn), s_tenths(secs));
}

proto_reply_t *client_call(client_t *self, const proto_req_t *req, bool retry_safe,
                           client_err_t *err)
{
    return client_call_until(self, req, retry_safe, 0, err);
}

proto_reply_t *client_call_until(client_t *self, const proto_req_t *req, bool retry_safe,
                                 int64_t until, client_err_t *err)
{
    memset(err, 0, sizeof *err);
    char *text = proto_req_encode(req);
    if (!text) {
        s_fail(err, CLIENT_ERR_REQUEST, "cannot encode the request");
        return NULL;
    }
    size_t len = strlen(text);
    proto_reply_t *rep = NULL;
    int64_t start = clock_mono_ms();
    int64_t deadline = start + self->timeout_ms;
    /* The caller's deadline only moves the end; attempt_ms (the resend
       pace) stays that of the request timeout. */
    bool cut = until > 0 && until < deadline;
    if (cut)
        deadline = until;
    int64_t attempt_ms = self->timeout_ms;
    if (retry_safe) {
        attempt_ms = self->timeout_ms / 3;
        if (attempt_ms < RESEND_MIN_MS)
            attempt_ms = RESEND_MIN_MS;
    }
    self->connected = false;
    int busy = 0;                    /* "busy" answers so far */
    client_err_t busy_err = { 0 };   /* the last one's words */
    for (;;) {
        if (s_open_socket(self, err) != 0)
            goto out;
        /* DONTWAIT: a DEALER without ZMQ_IMMEDIATE queues the frame while
           it connects; it could only refuse when its queue is full, which
           one request at a time never makes it. */
        if (zmqx_send(self->link.sock, text, len, ZMQ_DONTWAIT) != 0) {
            int e = errno;
            /* EAGAIN: no pipe left to queue on. libzmq drops the session
               of a connection whose handshake failed (a client without
               keys against a master that wants them), and on a fast link
               that can happen between the connect and this send: the
               monitor then says why, and the caller is told that (exit 6,
               what to give), not "cannot send". */
            if (e == EAGAIN && s_wait(self, clock_mono_ms() + SEND_WHY_MS, err) < 0) {
                connector_close(&self->link);
                goto out;
            }
            s_fail(err, CLIENT_ERR_UNREACHABLE, "cannot send to the master at %s: %s",
                   connector_address(self->conn), zmq_strerror(e));
            connector_close(&self->link);
            goto out;
        }
        unsigned drops = self->link.drops;
        int64_t attempt_end = clock_mono_ms() + attempt_ms;
        if (attempt_end > deadline)
            attempt_end = deadline;
        int rc = s_wait(self, attempt_end, err);
        /* Asked again only if the first copy may be lost: its connection
           closed (a restarting master) or never came up. A master that
           holds the request is slow, not deaf: a second copy would only
           queue behind the first, and closing this socket would throw
           away the reply it is building (a 20 MB page that took longer
           than a third of the timeout was then never received). So while
           the connection stays up the wait goes on, an attempt at a time:
           a drop seen at the end of one is asked again, as before. */
        while (rc == 0 && attempt_end < deadline && connector_held_since(&self->link, drops)) {
            attempt_end += attempt_ms;
            if (attempt_end > deadline)
                attempt_end = deadline;
            rc = s_wait(self, attempt_end, err);
        }
        if (rc < 0) {
            connector_close(&self->link);
            goto out;
        }
        if (rc > 0) {
            size_t rlen = 0;
            char *buf = zmqx_recv(self->link.sock, &rlen, ZMQ_DONTWAIT);
            if (!buf) {
                s_fail(err, CLIENT_ERR_BAD_REPLY, "cannot read the master's reply: %s",
                       errno == EPROTO ? "more than one frame" : zmq_strerror(errno));
                connector_close(&self->link);
                goto out;
            }
            rep = s_decode(buf, rlen, req->type, err);
            free(buf);
            if (rep || strcmp(err->code, PROTO_E_BUSY) != 0)
                goto out;
            /* "busy": not run (master/conns.c answers it in the place of
               a request it did not read; api.c, of a query whose answer
               it threw away), so asking again is safe, on this socket:
               the answer came, nothing more will. Paused first, up to
               the deadline; at the deadline the master's own words say
               what to do. */
            int64_t now = clock_mono_ms();
            int64_t pause_end = now + s_busy_pause(self, busy++);
            if (pause_end > deadline)
                pause_end = deadline;
            if (now < pause_end) {
                client_err_t perr = { 0 };
                rc = s_wait(self, pause_end, &perr);
                if (rc < 0) {
                    *err = perr;
                    connector_close(&self->link);
                    goto out;
                }
            }
            busy_err = *err;
            if (clock_mono_ms() >= deadline) {
                s_ran_out(self, err, (deadline - start) / 1000.0, cut, busy, &busy_err);
                goto out;
            }
            memset(err, 0, sizeof *err);
            continue;
        }
        /* No reply in time: this socket may still get one, later, for
           this request. Drop it so that reply can never be mistaken. */
        connector_close(&self->link);
        if (clock_mono_ms() >= deadline)
            break;
    }
    s_ran_out(self, err, (deadline - start) / 1000.0, cut, busy, &busy_err);
out:
    free(text);
    return rep;
}
