#include "uplink.h"

#include "../common/keys.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../common/zmqx.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct uplink {
    char *host;
    int port;
    bool ipv6;
    bool curve;
    char server[KEY_Z85_LEN + 1];
    char public[KEY_Z85_LEN + 1];
    char secret[KEY_Z85_LEN + 1];
};

/* Names monitor endpoints uniquely in the process. */
static atomic_uint s_monitor_serial;

uplink_t *uplink_new(const char *host, int port, const char *server_key, const char *public_key,
                     const char *secret_key)
{
    if (!host || !*host || port < 1 || port > 65535)
        return NULL;
    bool any = server_key || public_key || secret_key;
    if (any
        && !(server_key && keys_valid_z85(server_key) && public_key && keys_valid_z85(public_key)
             && secret_key && keys_valid_z85(secret_key)))
        return NULL;
    uplink_t *self = xcalloc(1, sizeof *self);
    self->host = xstrdup(host);
    self->port = port;
    self->ipv6 = strchr(host, ':') != NULL;
    if (any) {
        self->curve = true;
        memcpy(self->server, server_key, KEY_Z85_LEN);
        memcpy(self->public, public_key, KEY_Z85_LEN);
        memcpy(self->secret, secret_key, KEY_Z85_LEN);
    }
    return self;
}

void uplink_destroy(uplink_t **p)
{
    if (!p || !*p)
        return;
    uplink_t *self = *p;
    /* explicit_bzero: a plain memset before free may be optimised away. */
    explicit_bzero(self->secret, sizeof self->secret);
    free(self->host);
    free(self);
    *p = NULL;
}

const char *uplink_host(const uplink_t *self)
{
    return self->host;
}

int uplink_port(const uplink_t *self)
{
    return self->port;
}

bool uplink_curve(const uplink_t *self)
{
    return self->curve;
}

/* Starts a monitor on sock; NULL when it cannot (diagnostics only). */
static void *s_monitor(void *ctx, void *sock)
{
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://ztask-uplink-monitor-%u",
             atomic_fetch_add(&s_monitor_serial, 1));
    void *mon = zmqx_socket(ctx, ZMQ_PAIR, 0, 0);
    if (!mon)
        return NULL;
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED
                 | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                 | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
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

void *uplink_socket(const uplink_t *self, void *ctx, int type, int port, int64_t maxmsg,
                    void **monitor)
{
    if (monitor)
        *monitor = NULL;
    void *sock = zmqx_socket(ctx, type, 0, maxmsg);
    if (!sock) {
        log_error("event=socket_failed error=\"%s\"", zmq_strerror(errno));
        return NULL;
    }
    if (self->ipv6) {
        int on = 1;
        zmq_setsockopt(sock, ZMQ_IPV6, &on, sizeof on);
    }
    if (self->curve
        && (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, self->server, KEY_Z85_LEN) != 0
            || zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, self->public, KEY_Z85_LEN) != 0
            || zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, self->secret, KEY_Z85_LEN) != 0)) {
        log_error("event=curve_failed error=\"%s\"", zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }
    /* Monitor before connect, or the first handshake's events are lost. */
    if (monitor && self->curve)
        *monitor = s_monitor(ctx, sock);
    char ep[512];
    if (self->ipv6)
        snprintf(ep, sizeof ep, "tcp://[%s]:%d", self->host, port ? port : self->port);
    else
        snprintf(ep, sizeof ep, "tcp://%s:%d", self->host, port ? port : self->port);
    if (zmq_connect(sock, ep) != 0) {
        log_error("event=connect_failed endpoint=%s error=\"%s\"", ep, zmq_strerror(errno));
        uplink_close(&sock, monitor);
        return NULL;
    }
    return sock;
}

void uplink_close(void **sock, void **monitor)
{
    if (monitor && *monitor) {
        if (sock && *sock)
            zmq_socket_monitor(*sock, NULL, 0);
        zmq_close(*monitor);
        *monitor = NULL;
    }
    if (sock && *sock) {
        zmq_close(*sock);
        *sock = NULL;
    }
}

uplink_event_t uplink_monitor_read(void *monitor)
{
    zmqx_frames_t f;
    if (!monitor || zmqx_recv_frames(monitor, &f, 2, ZMQ_DONTWAIT) != 0)
        return UPLINK_EV_NONE;
    /* Frame 1: 16-bit event id then 32-bit value; frame 2: the endpoint. */
    uint16_t event = 0;
    if (f.count >= 1 && f.sizes[0] >= sizeof event)
        memcpy(&event, f.frames[0], sizeof event);
    zmqx_frames_free(&f);
    switch (event) {
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        return UPLINK_EV_SECURED;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        return UPLINK_EV_REFUSED;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return UPLINK_EV_FAILED;
    case ZMQ_EVENT_DISCONNECTED:
        return UPLINK_EV_DISCONNECTED;
    default:
        return UPLINK_EV_NONE;
    }
}
