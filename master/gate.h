/*  gate: what a peer that has not authenticated can make the master hold.

    libzmq gives a listening socket one frame limit (ZMQ_MAXMSGSIZE) for
    every phase of a connection, and no cap on connections: a peer with
    no key could open hundreds of TCP connections (each a descriptor) and,
    on each, announce a 30 MB frame in place of its CURVE HELLO; libzmq
    reads the whole frame into memory before the handshake code sees it.
    The gate watches the API and report sockets through socket monitors
    (ZMQ_EVENT_ACCEPTED / DISCONNECTED, which carry the connection's
    descriptor) and sheds a connection with shutdown(2), which makes libzmq
    drop it and free what it held, when

      - it has not authenticated and has sent more than GATE_PREAUTH_BYTES
        (a CURVE handshake takes well under 1 KiB from a client: a frame
        that big is not a handshake);
      - more than GATE_MAX_PENDING connections of its socket have not
        authenticated: a silent one goes first (a real client sends its
        greeting as soon as it is connected), then one without a valid
        CURVE HELLO, the oldest first, so a storm cycles through itself
        while a real client's handshake, a few milliseconds long,
        completes;
      - descriptors run short: an accepted descriptor within
        GATE_RESERVE_FDS of the limit, or an accept that failed for want of
        one: every unauthenticated connection goes, and the reserve keeps
        the master able to open its database, bind a worker's pipe and
        answer listed clients.

    "Not authenticated" is read from the kernel's TCP counters
    (TCP_INFO): before a handshake completes, the master has sent its
    greeting (64 bytes) and, with CURVE, its WELCOME (170): a connection
    to which the master has sent more has passed its handshake (the
    monitor's HANDSHAKE_SUCCEEDED event does not say which descriptor it
    is about). Without CURVE every peer that sent a greeting is a client,
    so only the descriptor rules apply (docs/security.md).

    Every shed is logged, rate-limited (event=connection_shed), with the
    reason and the peer's address.

    Threads: main loop only (the monitor sockets belong to it).
*/
#ifndef ZTASK_GATE_H
#define ZTASK_GATE_H

#include <stdbool.h>
#include <stdint.h>

/* Bytes an unauthenticated connection may send before it is shed. */
#define GATE_PREAUTH_BYTES (64 * 1024)
/* Unauthenticated connections kept per watched socket. */
#define GATE_MAX_PENDING 64
/* Descriptors kept free below the soft RLIMIT_NOFILE. */
#define GATE_RESERVE_FDS 128
/* How long libzmq gives a handshake (ZMQ_HANDSHAKE_IVL; its default is
   30 s): a connection that has not authenticated by then is dropped. A
   handshake waits for the loop's ZAP answer, so this is generous. */
#define GATE_HANDSHAKE_MS 10000

typedef struct gate gate_t;

/* A gate for sockets of ctx; curve says whether they use CURVE (the
   greeting-and-WELCOME test above) or not. Never fails (aborts on OOM). */
gate_t *gate_new(void *ctx, bool curve);

/* Watches sock (a bound ROUTER or PULL, borrowed, outliving the gate's
   use of it), named in log lines ("api", "reports"); sets its
   ZMQ_HANDSHAKE_IVL. Call before zmq_bind so no connection is missed.
   0, or -1 with errno (the monitor could not start). */
int gate_watch(gate_t *self, void *sock, const char *name);

/* The monitor sockets to poll for input (ZMQ_POLLIN), count in *n
   (borrowed). */
void *const *gate_sockets(const gate_t *self, int *n);

/* Reads the monitors' events when events (the poll flagged one of
   gate_sockets) and sheds what the rules above say. Call after every
   poll: with no event and no connection waiting for its handshake it
   returns at once, with no system call. */
void gate_handle(gate_t *self, bool events, int64_t now_ms);

/* Milliseconds until gate_handle should run again (while connections
   are still unauthenticated, the byte rule is checked every few
   milliseconds); -1 when nothing is pending. */
int64_t gate_timeout(const gate_t *self, int64_t now_ms);

/* Open connections on the watched sockets, and those not yet
   authenticated (for stats and tests). */
int gate_connections(const gate_t *self);
int gate_pending(const gate_t *self);

/* Stops the monitors and frees. Call before the watched sockets close.
   Accepts NULL; nulls *p. */
void gate_destroy(gate_t **p);

#endif
