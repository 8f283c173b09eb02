/*  client: request/reply with the master's API socket, for the CLI.

    One ZMQ_DEALER connected to tcp://HOST:PORT, reused for every request
    of the process. A request is one frame (proto_req_encode), its reply
    one frame (proto_reply_decode). One request is in flight at a time.

    Timeout: each call waits at most timeout_ms for its reply, counting
    from the send; the connect is inside that time too. We do not set
    ZMQ_IMMEDIATE: without it the request is queued while TCP connects,
    so "master down", "master slow" and "wrong port" all end the same way,
    after the one timeout the user chose, with one clear message.

    A late reply must never be taken as the answer to the next request, so
    after a timeout the socket is closed (ZMQ_LINGER 0 drops what it still
    holds) and a fresh one is made for the next call. Read-only requests
    may be resent on a fresh socket inside their timeout (every third of
    it): a master that restarted lost the first copy, and asking again is
    harmless. Requests that change state (submit, cancel, drain, forget)
    are sent exactly once.

    CURVE (client_set_curve): the socket is a CURVE client of the master,
    which admits our public key only when it is in its --clients list.
    Every socket has a handshake monitor: a handshake the master refuses
    (ZMQ_EVENT_HANDSHAKE_FAILED_AUTH), a mechanism mismatch (the master
    wants CURVE and we have no keys, or the reverse:
    HANDSHAKE_FAILED_PROTOCOL) or two failed handshakes in a row with no
    detail (a wrong master key: the master cannot read our HELLO) end the
    call at once with CLI_EXIT_AUTH and "authentication failed: ..."
    instead of waiting out the timeout.

    Errors: calls fill a client_err_t with the exit code the CLI should
    end with (docs/cli.md) and a message for the user; they never print.

    Threads: an instance belongs to one thread. Blocks in client_call.
*/
#ifndef ZTASK_CLI_CLIENT_H
#define ZTASK_CLI_CLIENT_H

#include "../proto/proto.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct client client_t;

typedef struct {
    int exit_code;           /* CLI_EXIT_* */
    char message[600];       /* without the "ztask: " prefix */
} client_err_t;

/* Makes a client for host:port (host: a name, an IPv4 address, or an IPv6
   address without brackets). Does not connect yet. NULL only when ZeroMQ
   cannot make a context. */
client_t *client_new(const char *host, int port, int timeout_ms);
/* Wipes the secret key and frees. Accepts NULL, nulls *p. */
void client_destroy(client_t **p);

/* Makes the client talk CURVE: the master's public key and our pair, 40
   Z85 characters each (copied). Call before the first client_call. 0, or
   -1 when a key is not valid Z85 or a socket already exists. */
int client_set_curve(client_t *self, const char *server_key, const char *public_key,
                     const char *secret_key);

/* "HOST:PORT" as given (borrowed). */
const char *client_address(const client_t *self);

/* Sends req and waits for its reply. Returns the reply (caller owns; it
   is always ok) or NULL with err filled: CLI_EXIT_UNREACHABLE on timeout,
   CLI_EXIT_REFUSED for an error reply or a reply we cannot read,
   CLI_EXIT_AUTH for an "auth" error reply or a failed handshake (see
   CURVE above), CLI_EXIT_INTERRUPTED when the
   interrupted flag (cli_interrupted) was raised while waiting.
   retry_safe: the request only reads, so it may be resent. */
proto_reply_t *client_call(client_t *self, const proto_req_t *req, bool retry_safe,
                           client_err_t *err);

#endif
