/*  auth: who may talk to the master (CURVE + a ZAP allowlist).

    CURVE alone admits any client that knows the server's public key; the
    allowlist is the point. libzmq asks a ZAP handler (an inproc REP socket
    at inproc://zeromq.zap.01 in the same context) about every new
    connection; this module is that handler, run from the master's loop.

    Domains and who is admitted:
      "api"        keys in the clients list or the workers list
      "reports"    keys in the workers list
      "pipe KEY"   KEY only, while it is in the workers list: each worker's
                   task pipe is bound for the key that registered it, so
                   another worker key cannot take its tasks
    The admitted peer's role and key travel with each of its messages as
    the User-Id property, "ROLE KEY" (ROLE: "client", "worker" or
    "client+worker"; KEY: Z85). The API handler refuses a submit from a
    worker key and a hello from a client key, and lets a worker key drain
    only its own worker; the report handler takes a worker's reports only
    from the key that registered it. Refusals are logged with the key.

    Threads: main loop only (the ZAP socket belongs to it).
*/
#ifndef ZTASK_AUTH_H
#define ZTASK_AUTH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct auth auth_t;

#define AUTH_DOMAIN_API "api"
#define AUTH_DOMAIN_REPORTS "reports"
#define AUTH_DOMAIN_PIPE "pipe" /* + " " + the worker's key */

/* Loads both allowlists and binds the ZAP handler in ctx. NULL with err. */
auth_t *auth_new(void *ctx, const char *clients_path, const char *workers_path, char *err,
                 size_t errlen);
void auth_destroy(auth_t **p);

/* The socket to poll for ZAP requests (borrowed). */
void *auth_socket(auth_t *self);

/* Answers every ZAP request waiting (non-blocking). */
void auth_handle(auth_t *self);

/* Re-reads both allowlists (SIGHUP). On failure the old lists stay. */
int auth_reload(auth_t *self, char *err, size_t errlen);

/* Makes sock a CURVE server with the given secret key (Z85) in a ZAP
   domain. 0 or -1 (errno). */
int auth_make_server(void *sock, const char *secret_z85, const char *domain);

/* True when a peer with this User-Id may act as role ("client"/"worker"). */
bool auth_role_allows(const char *user_id, const char *role);
/* The Z85 key in a User-Id ("" when there is none: no CURVE). */
const char *auth_user_key(const char *user_id);

#endif
