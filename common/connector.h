/*  connector: ZeroMQ sockets that connect to one server over TCP (or Unix
    sockets in a directory, host "ipc://DIR": zmqx.h), as CURVE
    clients when keys are given, each with a monitor on its handshakes.

    The worker reaches its master this way (api, task pipe and report
    sockets) and so does the CLI's client. A connector knows the server's
    host and default port and writes the endpoints (an IPv6 host goes in
    brackets, with ZMQ_IPV6 on); with keys, every socket it opens is a
    CURVE client of the server.

    Why a monitor: over CURVE, a handshake the server refuses (our key is
    not in its allowlist), a mechanism mismatch (it wants CURVE and we
    have no keys, or the reverse) and a wrong server key (it cannot read
    our HELLO and hangs up) would otherwise all look like a server that
    never answers. The monitor reports them as neutral events
    (connector_event_t); each program turns them into its own words. It
    also sees a connection attempt fail before any was made (nothing
    listens at the port, or the host name does not resolve), which the
    kernel and the resolver say at once: a wait ends then, not at its
    deadline, and only a silent or unroutable peer is waited for.

    connector_wait waits for a socket to become readable while it reads
    the monitor, up to a deadline, and can be interrupted by a callback
    (a signal flag); it ends with a neutral kind (connector_err_t) that the
    caller turns into a message and an exit code. Nothing here logs or
    prints.

    Threads: connector_new and connector_destroy on one thread; in between
    the connector is read-only, so any thread may open links from it. A
    link (its socket and its monitor) belongs to the thread that opened it.
*/
#ifndef ZTASK_CONNECTOR_H
#define ZTASK_CONNECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct connector connector_t;

typedef struct {
    const char *host;        /* a name or an address (IPv6 without brackets) */
    int port;                /* the server's default port, 1..65535 */
    /* CURVE: the server's public key and our pair, 40 Z85 characters
       each; all three, or all NULL for plain TCP. */
    const char *server_key;
    const char *public_key;
    const char *secret_key;
} connector_config_t;

/* Copies cfg (keys included). NULL when the host is empty, the port out
   of range, or the keys not all valid Z85 (or not all given). */
connector_t *connector_new(const connector_config_t *cfg);
/* Wipes the secret key and frees. Accepts NULL, nulls *p. */
void connector_destroy(connector_t **p);

const char *connector_host(const connector_t *self);
int connector_port(const connector_t *self);
bool connector_curve(const connector_t *self);
/* "HOST:PORT" ("[V6]:PORT") of the default port, for messages; borrowed. */
const char *connector_address(const connector_t *self);
/* Writes "tcp://HOST:PORT" for port (0 = the default) into buf, or
   "ipc://DIR/PORT" when the host is "ipc://DIR" (zmqx.h). */
void connector_endpoint(const connector_t *self, int port, char *buf, size_t size);

/* Why a call failed. */
typedef enum {
    CONNECTOR_OK = 0,
    CONNECTOR_ERR_SOCKET,      /* no socket could be made (errno) */
    CONNECTOR_ERR_CURVE,       /* libzmq took no CURVE keys: built without CURVE? (errno) */
    CONNECTOR_ERR_CONNECT,     /* zmq_connect refused the endpoint (errno) */
    CONNECTOR_ERR_UNREACHABLE, /* the deadline passed and no TCP connection was ever made:
                                  nothing listens at the port, the host is down or has no
                                  route */
    CONNECTOR_ERR_TIMEOUT,     /* the deadline passed on a connection: the server is silent
                                  (or there was no monitor to tell) */
    CONNECTOR_ERR_REFUSED,     /* a connection attempt failed before any connection was
                                  made: nothing listens at the port (refused), or the host
                                  name does not resolve (connector_resolves tells which) */
    CONNECTOR_ERR_HANDSHAKE,   /* the handshake failed for good; link->failure says how */
    CONNECTOR_ERR_INTERRUPTED, /* the interrupt callback said stop */
    CONNECTOR_ERR_POLL         /* zmq_poll failed (errno) */
} connector_err_t;

/* What the monitor saw. */
typedef enum {
    CONNECTOR_EV_NONE = 0,     /* nothing pending, or an event not tracked */
    CONNECTOR_EV_CONNECTED,    /* a TCP connection was made; the handshake follows */
    CONNECTOR_EV_SECURED,      /* the handshake succeeded */
    CONNECTOR_EV_REFUSED,      /* the server's ZAP handler refused our key; value: its
                                  status code (400) */
    CONNECTOR_EV_MECHANISM,    /* the server speaks another mechanism: it wants CURVE and
                                  we have no keys, or the reverse */
    CONNECTOR_EV_PROTOCOL,     /* another protocol error in the handshake; value:
                                  ZMQ_PROTOCOL_ERROR_* */
    CONNECTOR_EV_NO_DETAIL,    /* the handshake failed without detail: a wrong server key
                                  (the server cannot read our HELLO and hangs up), or a
                                  connection cut in the middle */
    CONNECTOR_EV_DISCONNECTED, /* the connection closed */
    CONNECTOR_EV_RETRIED       /* a connection attempt failed (refused, no such host) and
                                  libzmq will try again; value: its retry interval (ms) */
} connector_ev_t;

typedef struct {
    connector_ev_t kind;
    uint32_t value;
} connector_event_t;

/* One socket and its monitor. Zero it (or let connector_open do it);
   the fields are for reading. */
typedef struct {
    void *sock;                  /* NULL when closed */
    void *monitor;               /* a PAIR receiving sock's events, or NULL */
    bool connected;              /* a TCP connection was made at least once */
    bool up;                     /* a handshake succeeded and the connection has not
                                    closed since: what is sent now reaches the server */
    unsigned drops;              /* connections that closed after their handshake */
    int no_detail;               /* NO_DETAIL failures since the last success */
    connector_event_t failure;   /* what ended connector_wait with HANDSHAKE */
} connector_link_t;

/* What connector_open makes (designated initialisers at the call site). */
typedef struct {
    int type;                    /* ZMQ_DEALER, ZMQ_PULL, ZMQ_PUSH... */
    int port;                    /* 0 = the connector's default port */
    int64_t maxmsg;              /* ZMQ_MAXMSGSIZE; 0 = none */
    bool monitor;                /* watch its handshakes */
} connector_socket_t;

/* Opens link (zeroed first): a socket per opt, ZMQ_LINGER 0, its monitor
   when asked (best effort: without one the socket still works, only
   without diagnoses), connected to the server. The connect is
   asynchronous: libzmq queues what is sent until the connection is up
   and reconnects by itself. 0, or -1 with *why SOCKET, CURVE or CONNECT
   (errno kept) and link closed. */
int connector_open(const connector_t *self, void *ctx, const connector_socket_t *opt,
                   connector_link_t *link, connector_err_t *why);
/* Closes the socket and its monitor; accepts a closed link. */
void connector_close(connector_link_t *link);

/* True when the connector's host resolves to an address (getaddrinfo;
   blocks while the resolver works), to tell "refused" from "no such
   host" after REFUSED; always true for an "ipc://DIR" host. */
bool connector_resolves(const connector_t *self);

/* Reads one pending monitor event without blocking (NONE when there is
   none, or no monitor) and keeps link->connected, up, drops and
   no_detail. */
connector_event_t connector_read_event(connector_link_t *link);

/* True when the link's connection has stayed up since the caller saw
   link->drops equal to `drops` (reads the pending monitor events first):
   what was sent then is in the server's hands, unless it drops it. False
   without a monitor (nothing is known). */
bool connector_held_since(connector_link_t *link, unsigned drops);

/* How many NO_DETAIL failures in a row, without a success in between,
   make a failed handshake (connector_wait). One can be a connection cut
   mid-handshake; libzmq reconnects within ~0.1-0.3 s, so a second comes
   quickly when the key is wrong and settles it. */
#define CONNECTOR_NO_DETAIL_FAILURES 2

/* Returns true when the caller must stop waiting; arg as given. */
typedef bool (*connector_interrupt_fn)(void *arg);

/* Waits until link's socket is readable, or until deadline (monotonic
   ms), reading its monitor meanwhile. Blocks. OK when readable; else:
   REFUSED at once when a connection attempt fails while none was ever
   made on this link (a port where nothing listens answers at once, and
   so does a name that does not resolve: waiting out the deadline would
   tell the user nothing more; libzmq keeps retrying, so a caller that
   expects the server back may call again, and gets REFUSED again at the
   next failed attempt, ~0.1 s later),
   UNREACHABLE or TIMEOUT at the deadline (as link->connected says: a
   host that drops our packets, or a silent server),
   HANDSHAKE when the server refused our key, speaks another mechanism,
   reported a protocol error, or failed CONNECTOR_NO_DETAIL_FAILURES
   handshakes in a row (link->failure holds the event), INTERRUPTED when
   interrupted(arg) returned true (asked after every wakeup, so a signal
   that makes zmq_poll return EINTR ends the wait at once; interrupted may
   be NULL), POLL when zmq_poll failed (errno). */
connector_err_t connector_wait(connector_link_t *link, int64_t deadline,
                               connector_interrupt_fn interrupted, void *arg);

#endif
