#include "client.h"

#include "../common/clock.h"
#include "../common/keys.h"
#include "../common/util.h"
#include "../common/zmqx.h"
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Resends of a read-only request happen every third of its timeout, but
   never faster than this: a master busy committing a big batch must not
   be asked the same question ten times a second. */
#define RESEND_MIN_MS 1000

/* A handshake that fails "with no detail" is what a wrong --master-key
   looks like (the master cannot decrypt our HELLO and hangs up), but one
   such failure can also be a connection cut mid-handshake. libzmq retries
   within ~0.1-0.3 s, so a second failure without a success in between
   comes quickly and settles it. */
#define NO_DETAIL_FAILURES 2

struct client {
    void *ctx;
    void *sock;          /* NULL until the first call, and after a timeout */
    void *monitor;       /* PAIR receiving sock's handshake events, or NULL */
    unsigned serial;     /* names monitor endpoints */
    int no_detail;       /* handshake failures "with no detail" on sock */
    char *endpoint;      /* tcp://HOST:PORT */
    char *address;       /* HOST:PORT, for messages */
    bool ipv6;
    int timeout_ms;
    bool curve;
    char server_key[KEY_Z85_LEN + 1];
    char public_key[KEY_Z85_LEN + 1];
    char secret_key[KEY_Z85_LEN + 1];
};

client_t *client_new(const char *host, int port, int timeout_ms)
{
    void *ctx = zmq_ctx_new();
    if (!ctx)
        return NULL;
    client_t *self = xcalloc(1, sizeof *self);
    self->ctx = ctx;
    self->ipv6 = strchr(host, ':') != NULL;
    if (self->ipv6) {
        self->endpoint = xasprintf("tcp://[%s]:%d", host, port);
        self->address = xasprintf("[%s]:%d", host, port);
    } else {
        self->endpoint = xasprintf("tcp://%s:%d", host, port);
        self->address = xasprintf("%s:%d", host, port);
    }
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    return self;
}

int client_set_curve(client_t *self, const char *server_key, const char *public_key,
                     const char *secret_key)
{
    if (self->sock || !keys_valid_z85(server_key) || !keys_valid_z85(public_key)
        || !keys_valid_z85(secret_key))
        return -1;
    memcpy(self->server_key, server_key, sizeof self->server_key);
    memcpy(self->public_key, public_key, sizeof self->public_key);
    memcpy(self->secret_key, secret_key, sizeof self->secret_key);
    self->curve = true;
    return 0;
}

static void s_close_socket(client_t *self)
{
    if (self->monitor) {
        if (self->sock)
            zmq_socket_monitor(self->sock, NULL, 0);
        zmq_close(self->monitor);
        self->monitor = NULL;
    }
    if (self->sock) {
        zmq_close(self->sock);
        self->sock = NULL;
    }
    self->no_detail = 0;
}

void client_destroy(client_t **p)
{
    if (!p || !*p)
        return;
    client_t *self = *p;
    s_close_socket(self);
    zmq_ctx_term(self->ctx);
    /* explicit_bzero: a memset before free may be optimised away. */
    explicit_bzero(self->secret_key, sizeof self->secret_key);
    free(self->endpoint);
    free(self->address);
    free(self);
    *p = NULL;
}

const char *client_address(const client_t *self)
{
    return self->address;
}

/* Watches the socket's handshakes: over CURVE, a key the master refuses
   (or a master that wants keys we do not have) otherwise looks just like
   a master that never answers, and the user would wait out the whole
   timeout for "cannot reach the master". Without a monitor (it could not
   be made) that timeout is still the fallback. */
static void s_monitor(client_t *self)
{
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://ztask-client-monitor-%p-%u", (void *) self,
             self->serial++);
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                 | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    void *mon = zmqx_socket(self->ctx, ZMQ_PAIR, 0, 0);
    if (!mon)
        return;
    if (zmq_socket_monitor(self->sock, ep, events) != 0) {
        zmq_close(mon);
        return;
    }
    if (zmq_connect(mon, ep) != 0) {
        zmq_socket_monitor(self->sock, NULL, 0);
        zmq_close(mon);
        return;
    }
    self->monitor = mon;
}

static int s_open_socket(client_t *self, client_err_t *err)
{
    if (self->sock)
        return 0;
    self->sock = zmqx_socket(self->ctx, ZMQ_DEALER, 0, PROTO_MAX_API_MSG);
    if (!self->sock) {
        snprintf(err->message, sizeof err->message, "cannot create a socket: %s",
                 zmq_strerror(errno));
        err->exit_code = CLI_EXIT_UNREACHABLE;
        return -1;
    }
    if (self->ipv6) {
        int on = 1;
        zmq_setsockopt(self->sock, ZMQ_IPV6, &on, sizeof on);
    }
    if (self->curve
        && (zmq_setsockopt(self->sock, ZMQ_CURVE_SERVERKEY, self->server_key, KEY_Z85_LEN) != 0
            || zmq_setsockopt(self->sock, ZMQ_CURVE_PUBLICKEY, self->public_key, KEY_Z85_LEN) != 0
            || zmq_setsockopt(self->sock, ZMQ_CURVE_SECRETKEY, self->secret_key, KEY_Z85_LEN)
                   != 0)) {
        snprintf(err->message, sizeof err->message,
                 "cannot use CURVE: %s (libzmq built without it?)", zmq_strerror(errno));
        err->exit_code = CLI_EXIT_AUTH;
        s_close_socket(self);
        return -1;
    }
    /* Before connect, or the first handshake's events are lost. */
    s_monitor(self);
    if (zmq_connect(self->sock, self->endpoint) != 0) {
        snprintf(err->message, sizeof err->message, "cannot connect to %s: %s", self->address,
                 zmq_strerror(errno));
        err->exit_code = CLI_EXIT_UNREACHABLE;
        s_close_socket(self);
        return -1;
    }
    return 0;
}

/* Reads the monitor's pending events. 0, or -1 with err filled when a
   handshake failed for good (CLI_EXIT_AUTH). */
static int s_read_monitor(client_t *self, client_err_t *err)
{
    for (;;) {
        zmqx_frames_t f;
        if (zmqx_recv_frames(self->monitor, &f, 2, ZMQ_DONTWAIT) != 0)
            return 0;
        /* Frame 1: 16-bit event id, then a 32-bit value; frame 2: the
           endpoint. */
        uint16_t event = 0;
        uint32_t value = 0;
        if (f.count >= 1 && f.sizes[0] >= 6) {
            memcpy(&event, f.frames[0], sizeof event);
            memcpy(&value, (const char *) f.frames[0] + 2, sizeof value);
        }
        zmqx_frames_free(&f);
        const char *why = NULL;
        char buf[400];
        switch (event) {
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            self->no_detail = 0;
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            snprintf(buf, sizeof buf,
                     "the master at %s refused this client's key (status %u): add its .pub "
                     "file to the master's --clients list, then send the master SIGHUP",
                     self->address, value);
            why = buf;
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH && !self->curve)
                snprintf(buf, sizeof buf,
                         "the master at %s requires CURVE keys: give --curve-secret and "
                         "--master-key (or ZTASK_CURVE_SECRET and ZTASK_MASTER_KEY, or the "
                         "config file)",
                         self->address);
            else if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
                snprintf(buf, sizeof buf,
                         "the master at %s does not use CURVE, but this client was given "
                         "keys",
                         self->address);
            else
                snprintf(buf, sizeof buf,
                         "the handshake with %s failed (protocol error 0x%x); is --master-key "
                         "the master's public key?",
                         self->address, value);
            why = buf;
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            if (++self->no_detail < NO_DETAIL_FAILURES)
                break;
            if (self->curve)
                snprintf(buf, sizeof buf,
                         "the CURVE handshake with %s failed; is --master-key the master's "
                         "public key?",
                         self->address);
            else
                snprintf(buf, sizeof buf,
                         "the master at %s hangs up during the handshake: it probably requires "
                         "CURVE keys (give --curve-secret and --master-key, or set "
                         "ZTASK_CURVE_SECRET and ZTASK_MASTER_KEY, or use the config file)",
                         self->address);
            why = buf;
            break;
        default:
            break;
        }
        if (why) {
            snprintf(err->message, sizeof err->message, "authentication failed: %s", why);
            err->exit_code = CLI_EXIT_AUTH;
            return -1;
        }
    }
}

/* Waits until the socket is readable or until deadline (monotonic ms).
   1 readable, 0 timed out, -1 interrupted or failed (err filled). */
static int s_wait(client_t *self, int64_t deadline, client_err_t *err)
{
    for (;;) {
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0)
            return 0;
        zmq_pollitem_t items[2] = { { self->sock, 0, ZMQ_POLLIN, 0 },
                                    { self->monitor, 0, ZMQ_POLLIN, 0 } };
        int rc = zmq_poll(items, self->monitor ? 2 : 1, (long) left);
        if (cli_interrupted()) {
            snprintf(err->message, sizeof err->message, "interrupted");
            err->exit_code = CLI_EXIT_INTERRUPTED;
            return -1;
        }
        if (rc > 0 && (items[1].revents & ZMQ_POLLIN) && s_read_monitor(self, err) != 0)
            return -1;
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN))
            return 1;
        if (rc > 0)
            continue;
        if (rc < 0 && errno != EINTR) {
            snprintf(err->message, sizeof err->message, "waiting for the master: %s",
                     zmq_strerror(errno));
            err->exit_code = CLI_EXIT_UNREACHABLE;
            return -1;
        }
    }
}

/* Turns one reply frame into the caller's result. */
static proto_reply_t *s_decode(const char *buf, size_t len, proto_req_type_t type,
                               client_err_t *err)
{
    proto_err_t perr = { { 0 }, { 0 } };
    proto_reply_t *rep = proto_reply_decode(buf, len, type, &perr);
    if (!rep) {
        snprintf(err->message, sizeof err->message,
                 "cannot read the master's reply: %s (is it a ztask master of the same "
                 "version?)",
                 perr.message[0] ? perr.message : "malformed");
        err->exit_code = CLI_EXIT_REFUSED;
        return NULL;
    }
    if (!rep->ok) {
        snprintf(err->message, sizeof err->message, "%s%s (%s)",
                 strcmp(rep->error.code, PROTO_E_AUTH) == 0 ? "authentication failed: " : "",
                 rep->error.message[0] ? rep->error.message : "request refused",
                 rep->error.code[0] ? rep->error.code : "error");
        err->exit_code = cli_exit_for_error_code(rep->error.code);
        proto_reply_destroy(&rep);
        return NULL;
    }
    return rep;
}

proto_reply_t *client_call(client_t *self, const proto_req_t *req, bool retry_safe,
                           client_err_t *err)
{
    memset(err, 0, sizeof *err);
    char *text = proto_req_encode(req);
    if (!text) {
        snprintf(err->message, sizeof err->message, "cannot encode the request");
        err->exit_code = CLI_EXIT_USAGE;
        return NULL;
    }
    size_t len = strlen(text);
    proto_reply_t *rep = NULL;
    int64_t start = clock_mono_ms();
    int64_t deadline = start + self->timeout_ms;
    int64_t attempt_ms = self->timeout_ms;
    if (retry_safe) {
        attempt_ms = self->timeout_ms / 3;
        if (attempt_ms < RESEND_MIN_MS)
            attempt_ms = RESEND_MIN_MS;
    }
    for (;;) {
        if (s_open_socket(self, err) != 0)
            goto out;
        /* DONTWAIT: a DEALER without ZMQ_IMMEDIATE queues the frame while
           it connects; it could only refuse when its queue is full, which
           one request at a time never makes it. */
        if (zmqx_send(self->sock, text, len, ZMQ_DONTWAIT) != 0) {
            snprintf(err->message, sizeof err->message, "cannot send to the master at %s: %s",
                     self->address, zmq_strerror(errno));
            err->exit_code = CLI_EXIT_UNREACHABLE;
            s_close_socket(self);
            goto out;
        }
        int64_t attempt_end = clock_mono_ms() + attempt_ms;
        if (attempt_end > deadline)
            attempt_end = deadline;
        int rc = s_wait(self, attempt_end, err);
        if (rc < 0) {
            s_close_socket(self);
            goto out;
        }
        if (rc > 0) {
            size_t rlen = 0;
            char *buf = zmqx_recv(self->sock, &rlen, ZMQ_DONTWAIT);
            if (!buf) {
                snprintf(err->message, sizeof err->message,
                         "cannot read the master's reply: %s",
                         errno == EPROTO ? "more than one frame" : zmq_strerror(errno));
                err->exit_code = CLI_EXIT_REFUSED;
                s_close_socket(self);
                goto out;
            }
            rep = s_decode(buf, rlen, req->type, err);
            free(buf);
            goto out;
        }
        /* No reply in time: this socket may still get one, later, for
           this request. Drop it so that reply can never be mistaken. */
        s_close_socket(self);
        if (clock_mono_ms() >= deadline)
            break;
    }
    snprintf(err->message, sizeof err->message,
             "cannot reach the master at %s (no reply within %g s); is ztask-master running? "
             "set --master or ZTASK_MASTER",
             self->address, self->timeout_ms / 1000.0);
    err->exit_code = CLI_EXIT_UNREACHABLE;
out:
    free(text);
    return rep;
}
