/*  zmqx: the few ZeroMQ helpers every program uses.

    Ownership: buffers returned by zmqx_recv* are the caller's (free()).
    Sends copy the caller's bytes, so the caller keeps its buffer whatever
    happens. Threads: a socket belongs to one thread; these helpers add no
    state of their own.
*/
#ifndef ZTASK_ZMQX_H
#define ZTASK_ZMQX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Creates a socket with ZMQ_LINGER = linger_ms and, when maxmsg > 0,
   ZMQ_MAXMSGSIZE = maxmsg (peers sending more are disconnected by libzmq
   before a byte of it reaches us). Returns NULL on failure (errno set). */
void *zmqx_socket(void *ctx, int type, int linger_ms, int64_t maxmsg);

/* Sends one frame (flags: 0, ZMQ_DONTWAIT, ZMQ_SNDMORE). 0 or -1 (errno). */
int zmqx_send(void *sock, const void *data, size_t len, int flags);
/* The same for a malloc'd buffer, handed to libzmq rather than copied
   when it is big (4 KiB and up): on success *data is taken (nulled) and
   freed by libzmq once written (on its I/O thread); on failure (-1,
   errno) it is still the caller's. For reports of megabytes, so a worker
   does not hold one twice. */
int zmqx_send_take(void *sock, char **data, size_t len, int flags);

/* Receives one single-frame message as a NUL-terminated malloc'd buffer;
   *len gets its size without the NUL. Extra frames of a multipart message
   are read and dropped, and the call fails with EPROTO, so a peer cannot
   smuggle frames past a single-frame decoder. NULL on failure (errno:
   EAGAIN with ZMQ_DONTWAIT and nothing there, EINTR on a signal, EPROTO). */
char *zmqx_recv(void *sock, size_t *len, int flags);

/* The ZAP handler's User-Id for a peer travels with each of its messages;
   this bounds what is kept of it (longer ones are cut). */
#define ZMQX_USER_ID_MAX 64

/* zmqx_recv, also copying the message's User-Id into user_id (size
   ZMQX_USER_ID_MAX; "" when the socket has no ZAP handler). */
char *zmqx_recv_from(void *sock, size_t *len, int flags, char *user_id);

/* One multipart message, all frames, for ROUTER sockets. */
typedef struct {
    int count;
    char **frames;   /* each NUL-terminated, caller-owned via zmqx_frames_free */
    size_t *sizes;
    char user_id[ZMQX_USER_ID_MAX];  /* the ZAP handler's User-Id ("" without ZAP) */
} zmqx_frames_t;

/* Receives every frame of one message (at most max_frames are kept; the
   rest are read and dropped and the call fails with EPROTO).
   0 on success; -1 with errno otherwise. */
int zmqx_recv_frames(void *sock, zmqx_frames_t *out, int max_frames, int flags);
void zmqx_frames_free(zmqx_frames_t *f);
/* Fills *dst with a deep copy of src's first src->count frames (binary
   safe), e.g. a ROUTER envelope kept to answer later. */
void zmqx_frames_copy(zmqx_frames_t *dst, const zmqx_frames_t *src);

/* Returns the TCP port a socket is bound to (after binding to port 0 or
   "*"), or -1. */
int zmqx_bound_port(void *sock);

/* Addresses. A master's address is a host (a name, an IPv4 or IPv6
   address, an interface name for binding) with ports, or "ipc://DIR": a
   directory on this host where each "port" is a Unix socket file named by
   its number (DIR/5555 the API, DIR/5556 the reports, one more per task
   pipe). Who may connect there is whoever file permissions let into DIR. */

/* True for "ipc://" followed by an absolute path. */
bool zmqx_ipc(const char *addr);

/* Writes the endpoint of port at addr: "ipc://DIR/PORT", or
   "tcp://ADDR:PORT" ("tcp://[ADDR]:PORT" for an IPv6 address; "*" for
   port 0, which an ipc address does not take). */
void zmqx_endpoint(char *buf, size_t size, const char *addr, int port);

/* Binds sock to port at addr (port 0: any free TCP port). At an ipc
   address the socket file is made 0660 (libzmq leaves it to the umask):
   the directory decides who may connect, its owner and, when it lets
   them in, its group. Note that libzmq replaces an existing file of that
   name: the caller must not bind a number in use. 0 with *bound the
   port, or -1 with errno (ep holds the endpoint tried, for messages). */
int zmqx_bind(void *sock, const char *addr, int port, int *bound, char *ep, size_t eplen);

#endif
