#include "connector.h"

#include "clock.h"
#include "keys.h"
#include "util.h"
#include "zmqx.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct connector {
    char *host;
    int port;
    bool ipv6;
    bool curve;
    char *address;           /* HOST:PORT, for messages */
    char server[KEY_Z85_LEN + 1];
    char public[KEY_Z85_LEN + 1];
    char secret[KEY_Z85_LEN + 1];
};

/* Names monitor endpoints uniquely in the process (inproc names live in
   a context, but a process may hold several connectors and contexts). */
static atomic_uint s_monitor_serial;

connector_t *connector_new(const connector_config_t *cfg)
{
    if (!cfg || !cfg->host || !*cfg->host || cfg->port < 1 || cfg->port > 65535)
        return NULL;
    bool any = cfg->server_key || cfg->public_key || cfg->secret_key;
    if (any
        && !(cfg->server_key && keys_valid_z85(cfg->server_key) && cfg->public_key
             && keys_valid_z85(cfg->public_key) && cfg->secret_key
             && keys_valid_z85(cfg->secret_key)))
        return NULL;
    connector_t *self = xcalloc(1, sizeof *self);
    self->host = xstrdup(cfg->host);
    self->port = cfg->port;
    /* "ipc://DIR" (zmqx.h): a directory of Unix sockets, said as is. */
    bool ipc = zmqx_ipc(cfg->host);
    self->ipv6 = !ipc && strchr(cfg->host, ':') != NULL;
    self->address = ipc         ? xstrdup(cfg->host)
                    : self->ipv6 ? xasprintf("[%s]:%d", cfg->host, cfg->port)
                                 : xasprintf("%s:%d", cfg->host, cfg->port);
    if (any) {
        self->curve = true;
        memcpy(self->server, cfg->server_key, KEY_Z85_LEN);
        memcpy(self->public, cfg->public_key, KEY_Z85_LEN);
        memcpy(self->secret, cfg->secret_key, KEY_Z85_LEN);
    }
    return self;
}

void connector_destroy(connector_t **p)
{
    if (!p || !*p)
        return;
    connector_t *self = *p;
    /* explicit_bzero: a plain memset before free may be optimised away. */
    explicit_bzero(self->secret, sizeof self->secret);
    free(self->host);
    free(self->address);
    free(self);
    *p = NULL;
}

const char *connector_host(const connector_t *self)
{
    return self->host;
}

int connector_port(const connector_t *self)
{
    return self->port;
}

bool connector_curve(const connector_t *self)
{
    return self->curve;
}

const char *connector_address(const connector_t *self)
{
    return self->address;
}

void connector_endpoint(const connector_t *self, int port, char *buf, size_t size)
{
    zmqx_endpoint(buf, size, self->host, port ? port : self->port);
}

/* Starts a monitor on sock; NULL when it cannot (diagnoses only). Before
   the connect, or the first handshake's events are lost. */
static void *s_monitor(void *ctx, void *sock)
{
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://ztask-connector-monitor-%u",
             atomic_fetch_add(&s_monitor_serial, 1));
    void *mon = zmqx_socket(ctx, ZMQ_PAIR, 0, 0);
    if (!mon)
        return NULL;
    int events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED
                 | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                 | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_CONNECT_RETRIED;
    if (zmq_socket_monitor(sock, ep, events) != 0) {
        zmq_close(mon);
        return NULL;
    }
    if (zmq_connect(mon, ep) != 0) {
        zmq_socket_monitor(sock, NULL, 0);
        zmq_close(mon);
        return NULL;
    }
    return mon;
}

/* Closes link keeping errno, for the failure paths of connector_open. */
static int s_fail(connector_link_t *link, connector_err_t *why, connector_err_t kind)
{
    int saved = errno;
    connector_close(link);
    errno = saved;
    *why = kind;
    return -1;
}

int connector_open(const connector_t *self, void *ctx, const connector_socket_t *opt,
                   connector_link_t *link, connector_err_t *why)
{
    memset(link, 0, sizeof *link);
    link->sock = zmqx_socket(ctx, opt->type, 0, opt->maxmsg);
    if (!link->sock)
        return s_fail(link, why, CONNECTOR_ERR_SOCKET);
    if (self->ipv6) {
        int on = 1;
        zmq_setsockopt(link->sock, ZMQ_IPV6, &on, sizeof on);
    }
    if (self->curve
        && (zmq_setsockopt(link->sock, ZMQ_CURVE_SERVERKEY, self->server, KEY_Z85_LEN) != 0
            || zmq_setsockopt(link->sock, ZMQ_CURVE_PUBLICKEY, self->public, KEY_Z85_LEN) != 0
            || zmq_setsockopt(link->sock, ZMQ_CURVE_SECRETKEY, self->secret, KEY_Z85_LEN) != 0))
        return s_fail(link, why, CONNECTOR_ERR_CURVE);
    if (opt->monitor)
        link->monitor = s_monitor(ctx, link->sock);
    char ep[512];
    connector_endpoint(self, opt->port, ep, sizeof ep);
    if (zmq_connect(link->sock, ep) != 0)
        return s_fail(link, why, CONNECTOR_ERR_CONNECT);
    *why = CONNECTOR_OK;
    return 0;
}

void connector_close(connector_link_t *link)
{
    if (link->monitor) {
        if (link->sock)
            zmq_socket_monitor(link->sock, NULL, 0);
        zmq_close(link->monitor);
        link->monitor = NULL;
    }
    if (link->sock) {
        zmq_close(link->sock);
        link->sock = NULL;
    }
}

connector_event_t connector_read_event(connector_link_t *link)
{
    connector_event_t ev = { CONNECTOR_EV_NONE, 0 };
    zmqx_frames_t f;
    if (!link->monitor || zmqx_recv_frames(link->monitor, &f, 2, ZMQ_DONTWAIT) != 0)
        return ev;
    /* Frame 1: a 16-bit event id, then a 32-bit value; frame 2: the
       endpoint. */
    uint16_t event = 0;
    uint32_t value = 0;
    if (f.count >= 1 && f.sizes[0] >= sizeof event + sizeof value) {
        memcpy(&event, f.frames[0], sizeof event);
        memcpy(&value, f.frames[0] + sizeof event, sizeof value);
    }
    zmqx_frames_free(&f);
    ev.value = value;
    switch (event) {
    case ZMQ_EVENT_CONNECTED:
        link->connected = true;
        ev.kind = CONNECTOR_EV_CONNECTED;
        break;
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        link->no_detail = 0;
        link->up = true;
        ev.kind = CONNECTOR_EV_SECURED;
        break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        ev.kind = CONNECTOR_EV_REFUSED;
        break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        ev.kind = value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ? CONNECTOR_EV_MECHANISM
                                                                      : CONNECTOR_EV_PROTOCOL;
        break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        link->no_detail++;
        ev.kind = CONNECTOR_EV_NO_DETAIL;
        break;
    case ZMQ_EVENT_DISCONNECTED:
        /* Also after a failed handshake: only a connection that was up
           counts as a drop. */
        if (link->up)
            link->drops++;
        link->up = false;
        ev.kind = CONNECTOR_EV_DISCONNECTED;
        break;
    case ZMQ_EVENT_CONNECT_RETRIED:
        ev.kind = CONNECTOR_EV_RETRIED;
        break;
    default:
        break;
    }
    return ev;
}

/* True when ev ends the handshake for good. */
static bool s_handshake_failed(const connector_link_t *link, connector_event_t ev)
{
    switch (ev.kind) {
    case CONNECTOR_EV_REFUSED:
    case CONNECTOR_EV_MECHANISM:
    case CONNECTOR_EV_PROTOCOL:
        return true;
    case CONNECTOR_EV_NO_DETAIL:
        return link->no_detail >= CONNECTOR_NO_DETAIL_FAILURES;
    default:
        return false;
    }
}

/* Reads the monitor's pending events: HANDSHAKE when one ended the
   handshake (kept in link->failure), REFUSED when a connection attempt
   failed and none was ever made, else OK. */
static connector_err_t s_drain_monitor(connector_link_t *link)
{
    for (;;) {
        connector_event_t ev = connector_read_event(link);
        if (ev.kind == CONNECTOR_EV_NONE)
            return CONNECTOR_OK;
        if (s_handshake_failed(link, ev)) {
            link->failure = ev;
            return CONNECTOR_ERR_HANDSHAKE;
        }
        if (ev.kind == CONNECTOR_EV_RETRIED && !link->connected)
            return CONNECTOR_ERR_REFUSED;
    }
}

bool connector_held_since(connector_link_t *link, unsigned drops)
{
    if (!link->monitor)
        return false;
    while (connector_read_event(link).kind != CONNECTOR_EV_NONE)
        ;
    return link->up && link->drops == drops;
}

bool connector_resolves(const connector_t *self)
{
    if (zmqx_ipc(self->host))
        return true;   /* a path: nothing to resolve */
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = self->ipv6 ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(self->host, NULL, &hints, &res) != 0)
        return false;
    freeaddrinfo(res);
    return true;
}

connector_err_t connector_wait(connector_link_t *link, int64_t deadline,
                               connector_interrupt_fn interrupted, void *arg)
{
    assert(link->sock);
    for (;;) {
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0)
            return link->connected ? CONNECTOR_ERR_TIMEOUT
                   : link->monitor ? CONNECTOR_ERR_UNREACHABLE
                                   : CONNECTOR_ERR_TIMEOUT;
        zmq_pollitem_t items[2] = { { link->sock, 0, ZMQ_POLLIN, 0 },
                                    { link->monitor, 0, ZMQ_POLLIN, 0 } };
        int rc = zmq_poll(items, link->monitor ? 2 : 1, (long) left);
        if (interrupted && interrupted(arg))
            return CONNECTOR_ERR_INTERRUPTED;
        if (rc > 0 && (items[1].revents & ZMQ_POLLIN)) {
            connector_err_t why = s_drain_monitor(link);
            if (why != CONNECTOR_OK)
                return why;
        }
        if (rc > 0 && (items[0].revents & ZMQ_POLLIN))
            return CONNECTOR_OK;
        if (rc < 0 && errno != EINTR)
            return CONNECTOR_ERR_POLL;
    }
}
