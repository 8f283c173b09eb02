/*  uplink: how the worker's sockets reach the master.

    Knows the master's host and API port, writes endpoints (an IPv6 host
    goes in brackets, with ZMQ_IPV6 on), and makes every TCP socket a CURVE
    client when keys are given. A socket can come with a handshake monitor:
    over CURVE, a handshake the master refuses (our key is not in its
    allowlist) or cannot complete (wrong master key) otherwise looks just
    like a master that does not answer.

    Threads: uplink_new/destroy on one thread; uplink_socket may be called
    from any thread (the uplink is read-only), and the sockets it makes
    belong to the calling thread.
*/
#ifndef ZTASK_UPLINK_H
#define ZTASK_UPLINK_H

#include <stdbool.h>
#include <stdint.h>

typedef struct uplink uplink_t;

/* host: name or address (IPv6 without brackets); port: the API port.
   server_key, public_key, secret_key: 40-character Z85 keys, all three or
   all NULL (plain TCP). NULL on a bad argument. Keys are copied. */
uplink_t *uplink_new(const char *host, int port, const char *server_key, const char *public_key,
                     const char *secret_key);
/* Wipes the secret key and frees. Accepts NULL, nulls *p. */
void uplink_destroy(uplink_t **p);

const char *uplink_host(const uplink_t *self);
int uplink_port(const uplink_t *self);
bool uplink_curve(const uplink_t *self);

/* A socket of type connected to the master on port (0 = the API port),
   with ZMQ_LINGER 0 and ZMQ_MAXMSGSIZE maxmsg (0 = none). With monitor
   non-NULL and CURVE on, *monitor gets a PAIR socket that receives the
   handshake events (read them with uplink_monitor_read); otherwise
   *monitor is NULL. NULL on failure (logged). */
void *uplink_socket(const uplink_t *self, void *ctx, int type, int port, int64_t maxmsg,
                    void **monitor);

/* Closes a socket and its monitor (either may be NULL); nulls both. */
void uplink_close(void **sock, void **monitor);

typedef enum {
    UPLINK_EV_NONE = 0,       /* nothing (or nothing we track) */
    UPLINK_EV_SECURED,        /* handshake done */
    UPLINK_EV_REFUSED,        /* the master's allowlist refused our key */
    UPLINK_EV_FAILED,         /* handshake failed (a wrong key, say) */
    UPLINK_EV_DISCONNECTED
} uplink_event_t;

/* Reads one event from a monitor without blocking. */
uplink_event_t uplink_monitor_read(void *monitor);

#endif
