/*  auth: who may talk to the master (CURVE + a ZAP allowlist).

    CURVE alone admits any client that knows the server's public key; the
    allowlist is the point. libzmq asks a ZAP handler (an inproc REP socket
    at inproc://zeromq.zap.01 in the same context) about every new
    connection; this module is that handler, run from the master's loop.

    Domains and who is admitted:
      "api"      keys in the clients list or the workers list
      "reports"  keys in the workers list
      "pipe"     keys in the workers list
    The admitted peer's role travels with each of its messages as the
    User-Id property: "client", "worker" or "client+worker"; the API
    handler then refuses a submit from a worker key and a hello from a
    client key. Refusals are logged with the key.

    Threads: main loop only (the ZAP socket belongs to it).
*/
#ifndef ZTASK_AUTH_H
#define ZTASK_AUTH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct auth auth_t;

#define AUTH_DOMAIN_API "api"
#define AUTH_DOMAIN_REPORTS "reports"
#define AUTH_DOMAIN_PIPE "pipe"

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

#endif
