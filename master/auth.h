/*  auth: who may talk to the master (CURVE + a ZAP allowlist), and in
    which roles.

    CURVE alone admits any client that knows the server's public key; the
    allowlist is the point. libzmq asks a ZAP handler (an inproc REP socket
    at inproc://zeromq.zap.01 in the same context) about every new
    connection; this module is that handler, run from the master's loop.

    Three lists, one per role: clients (submit and act on their own jobs),
    workers (register and report), admins (act on every client's jobs; an
    admin is a client too, without being listed as one). docs/security.md
    has the whole model.

    Domains and who is admitted:
      "api"        keys in any list
      "reports"    keys in the workers list
      "pipe KEY"   KEY only, while it is in the workers list: each worker's
                   task pipe is bound for the key that registered it, so
                   another worker key cannot take its tasks
    The admitted peer's roles and key travel with each of its messages as
    the User-Id property, "ROLES KEY" (ROLES: "client", "worker",
    "client+admin", ...; KEY: Z85).

    Roles are decided per message, not per connection: the roles in the
    User-Id are those of the handshake, but a reload (SIGHUP) may since
    have removed the key from a list. auth_peer and auth_key_roles look
    the key up in the lists as they are now (a binary search), so a
    revoked key is refused from its next message on a connection that was
    admitted before.

    Without CURVE there is no auth_t, and every function here that takes
    one accepts NULL: over TCP the master cannot tell one local user from
    another, so every peer holds every role and owns nothing (owner "").
    Designed for, not built: an ipc:// API could tell users apart. libzmq
    gives a ZAP handler a Unix-socket peer's credentials as its address
    (":UID:GID:PID", from SO_PEERCRED; also a message's "Peer-Address"
    property); a handler on that socket would put "local UID" in the
    User-Id, auth_peer would make the owner "uid:UID", and the master's
    own uid and root would be its admins. Nothing else would change.

    Threads: main loop only (the ZAP socket belongs to it).
*/
#ifndef ZTASK_AUTH_H
#define ZTASK_AUTH_H

#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct auth auth_t;

#define AUTH_DOMAIN_API "api"
#define AUTH_DOMAIN_REPORTS "reports"
#define AUTH_DOMAIN_PIPE "pipe" /* + " " + the worker's key */

/* Roles, as bits. */
enum {
    AUTH_CLIENT = 1u << 0,   /* submits; acts on its own jobs */
    AUTH_WORKER = 1u << 1,   /* registers, reports, drains its own worker */
    AUTH_ADMIN = 1u << 2     /* acts on every job; always with AUTH_CLIENT */
};

/* The allowlists: a directory of .pub/.key files or a file of keys each
   (keys.h). admins may be NULL (no admins). Borrowed. */
typedef struct {
    const char *clients;
    const char *workers;
    const char *admins;
} auth_lists_t;

/* Loads the allowlists and binds the ZAP handler in ctx. NULL with err. */
auth_t *auth_new(void *ctx, const auth_lists_t *lists, char *err, size_t errlen);
void auth_destroy(auth_t **p);

/* The socket to poll for ZAP requests (borrowed). */
void *auth_socket(auth_t *self);

/* Answers every ZAP request waiting (non-blocking). */
void auth_handle(auth_t *self);

/* Re-reads every allowlist (SIGHUP). All or nothing: when one fails to
   load, the old lists all stay. 0 or -1 with err. */
int auth_reload(auth_t *self, char *err, size_t errlen);

/* Makes sock a CURVE server with the given secret key (Z85) in a ZAP
   domain. 0 or -1 (errno). */
int auth_make_server(void *sock, const char *secret_z85, const char *domain);

/* The roles key (Z85) holds in the lists now: AUTH_* bits, 0 for a key
   in no list (never listed, or revoked). self NULL (no CURVE): all. */
unsigned auth_key_roles(const auth_t *self, const char *key);

/* Who sent a message with this User-Id, as the API decides on it. */
#define AUTH_OWNER_MAX 48
typedef struct {
    unsigned roles;                  /* AUTH_* held now; 0: revoked */
    char owner[AUTH_OWNER_MAX];      /* owns the jobs it makes: its key; "" = nobody */
} auth_peer_t;

/* Fills *out for the peer behind user_id (zmqx_frames_t.user_id). With
   self NULL (no CURVE): every role, owner "". */
void auth_peer(const auth_t *self, const char *user_id, auth_peer_t *out);

/* The name a key is listed under (its .pub file's name without the
   extension, "ana"), or NULL (unlisted, from a list file, or no CURVE).
   Borrowed until the next reload. */
const char *auth_key_name(const auth_t *self, const char *key);

/* roles as text: "client", "worker+admin", ... (in buf, size n). */
const char *auth_roles_text(unsigned roles, char *buf, size_t n);

/* The Z85 key in a User-Id ("" when there is none: no CURVE). */
const char *auth_user_key(const char *user_id);

/* Counts every refused connection (ztask_auth_refusals_total) in metrics
   (borrowed; NULL: none). */
void auth_set_metrics(auth_t *self, metrics_t *metrics);

#endif
