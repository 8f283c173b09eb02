/*  client: request/reply with the master's API socket, for the CLI.

    One ZMQ_DEALER connected to tcp://HOST:PORT, reused for every request
    of the process. A request is one frame (proto_req_encode), its reply
    one frame (proto_reply_decode). One request is in flight at a time.

    Timeout: each call waits at most timeout_ms for its reply, counting
    from the send; the connect is inside that time too. We do not set
    ZMQ_IMMEDIATE: without it the request is queued while TCP connects.
    The socket's monitor (common/connector.h) sees a connection attempt
    fail: nothing listens at the port, or the host name does not resolve;
    the call then ends at once with CLIENT_ERR_UNREACHABLE and words that
    say which ("connection refused", "host 'x' not found"), unless this
    client has connected to the master before (it is restarting: `wait`
    rides it out, a submit whose reply was lost sends again, each until
    the timeout). A master that accepts and says
    nothing, or a host that drops the packets, ends after the timeout.

    A late reply must never be taken as the answer to the next request, so
    after a timeout the socket is closed (ZMQ_LINGER 0 drops what it still
    holds) and a fresh one is made for the next call. Read-only requests
    may be resent on a fresh socket inside their timeout (every third of
    it) when the first copy may be lost: its connection closed (a master
    that restarted lost it) or never came up; asking again is harmless.
    A connection that stayed up since the send means the master holds
    the request: it is waited for until the timeout, never asked again
    (a slow master only gets slower with copies, and closing the socket
    would throw its reply away). Requests that change state (submit,
    cancel, drain, forget) are sent exactly once, but for "busy".

    "busy" (PROTO_E_BUSY: the master's reply budget is full,
    master/conns.h) means the request was not run, so any request, a
    changing one too, is sent again on the same socket after a pause of
    50 ms doubling to 1 s (each between half and all of that, so clients
    refused together do not return together), until the timeout. Then the
    call fails with CLIENT_ERR_REFUSED, code "busy", and the master's
    message followed by how many answers said so, at the timeout and not
    before; also when the timeout comes during a pause or during the wait
    for the answer to a copy sent after a "busy" (a master that said busy
    is not "unreachable").

    A caller with a deadline of its own (`ztask wait --timeout`) bounds
    the call by it (client_call_until): the call then ends at whichever of
    the two comes first, never a whole request timeout past the caller's;
    by the caller's deadline it fails as by the timeout when the master
    said "busy" (CLIENT_ERR_REFUSED) or was never reached by any socket of
    this client (CLIENT_ERR_UNREACHABLE), else with CLIENT_ERR_DEADLINE.

    CURVE (client_set_curve): the socket is a CURVE client of the master,
    which admits our public key only when it is in its --clients list.
    Every socket has a handshake monitor (common/connector.h): a handshake
    the master refuses (its allowlist), a mechanism mismatch (the master
    wants CURVE and we have no keys, or the reverse) or two failed
    handshakes in a row with no detail (a wrong master key: the master
    cannot read our HELLO) end the call at once with CLIENT_ERR_AUTH and
    "authentication failed: ..." that says what to do, instead of waiting
    out the timeout.

    Errors: calls fill a client_err_t with a neutral kind (the CLI turns it
    into its exit code, cli_exit_for_client_error) and a message for the
    user; they never print. A wait is interrupted through a callback
    (client_set_interrupt), so the client knows nothing of the CLI.

    Threads: an instance belongs to one thread. Blocks in client_call.
*/
#ifndef ZTASK_CLI_CLIENT_H
#define ZTASK_CLI_CLIENT_H

#include "../proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct client client_t;

/* How a call failed. */
typedef enum {
    CLIENT_OK = 0,
    CLIENT_ERR_REQUEST,      /* the request could not be encoded */
    CLIENT_ERR_UNREACHABLE,  /* no connection: refused or no such host (at once), or none
                                made before the timeout (host down); or no socket could
                                be made or connected */
    CLIENT_ERR_TIMEOUT,      /* connected, but no reply before the timeout */
    CLIENT_ERR_AUTH,         /* a failed handshake (see CURVE above), CURVE unusable, or
                                an "auth" error reply */
    CLIENT_ERR_REFUSED,      /* any other error reply */
    CLIENT_ERR_BAD_REPLY,    /* a reply that cannot be read */
    CLIENT_ERR_INTERRUPTED,  /* the interrupt callback said stop */
    CLIENT_ERR_DEADLINE      /* no reply from a master this client reached, by the
                                caller's deadline (client_call_until), which came
                                before the timeout ("busy" then is REFUSED) */
} client_err_kind_t;

typedef struct {
    client_err_kind_t kind;
    char message[600];       /* without the "ztask: " prefix */
    char code[32];           /* an error reply's code (PROTO_E_*), "" for the rest */
} client_err_t;

/* Makes a client for host:port (host: a name, an IPv4 address, or an IPv6
   address without brackets; port 1..65535). Does not connect yet. NULL
   when ZeroMQ cannot make a context or the address is not valid. */
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

/* Asks interrupted(arg) after every wakeup of a wait; when it returns
   true, the call ends with CLIENT_ERR_INTERRUPTED. A signal handler that
   sets a flag without SA_RESTART makes that at once. NULL: never. */
void client_set_interrupt(client_t *self, bool (*interrupted)(void *arg), void *arg);

/* Sends req and waits for its reply. Returns the reply (caller owns; it
   is always ok) or NULL with err filled (see client_err_kind_t).
   retry_safe: the request only reads, so it may be resent. */
proto_reply_t *client_call(client_t *self, const proto_req_t *req, bool retry_safe,
                           client_err_t *err);

/* client_call, ending by until (monotonic ms, clock_mono_ms(); 0 = no
   bound) at the latest: when until comes before the request timeout and
   no reply came by then, NULL with CLIENT_ERR_DEADLINE. Resends keep the
   pace of the request timeout; only the end moves closer. */
proto_reply_t *client_call_until(client_t *self, const proto_req_t *req, bool retry_safe,
                                 int64_t until, client_err_t *err);

#endif
