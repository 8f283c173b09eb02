#include "client.h"

#include "../common/clock.h"
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

struct client {
    void *ctx;
    void *sock;          /* NULL until the first call, and after a timeout */
    char *endpoint;      /* tcp://HOST:PORT */
    char *address;       /* HOST:PORT, for messages */
    bool ipv6;
    int timeout_ms;
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

static void s_close_socket(client_t *self)
{
    if (self->sock) {
        zmq_close(self->sock);
        self->sock = NULL;
    }
}

void client_destroy(client_t **p)
{
    if (!p || !*p)
        return;
    client_t *self = *p;
    s_close_socket(self);
    zmq_ctx_term(self->ctx);
    free(self->endpoint);
    free(self->address);
    free(self);
    *p = NULL;
}

const char *client_address(const client_t *self)
{
    return self->address;
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
    if (zmq_connect(self->sock, self->endpoint) != 0) {
        snprintf(err->message, sizeof err->message, "cannot connect to %s: %s", self->address,
                 zmq_strerror(errno));
        err->exit_code = CLI_EXIT_UNREACHABLE;
        s_close_socket(self);
        return -1;
    }
    return 0;
}

/* Waits until the socket is readable or until deadline (monotonic ms).
   1 readable, 0 timed out, -1 interrupted or failed (err filled). */
static int s_wait(client_t *self, int64_t deadline, client_err_t *err)
{
    for (;;) {
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0)
            return 0;
        zmq_pollitem_t item = { self->sock, 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll(&item, 1, (long) left);
        if (cli_interrupted()) {
            snprintf(err->message, sizeof err->message, "interrupted");
            err->exit_code = CLI_EXIT_INTERRUPTED;
            return -1;
        }
        if (rc > 0)
            return 1;
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
        snprintf(err->message, sizeof err->message, "%s (%s)",
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
