/*  web: the master's HTTP server (--http): /metrics, the dashboard's
    assets and its JSON endpoints, on libmicrohttpd's own threads.

    Who answers what. The HTTP threads own no ztask state and read none:
    they parse HTTP, check the bearer token, serve the embedded assets
    (master/web/, compiled in), and forward every data request (/metrics,
    /api/...) to the loop over an inproc DEALER -> ROUTER pair (dash.h),
    then wait for its answer. The loop answers it between two turns, from
    the state it owns, exactly as it answers a CLI request: nothing is
    shared, so nothing needs a lock, and what the page shows is what the
    CLI would show at that instant. Snapshots published by the loop were
    the other choice; they would cost the loop a full rendering every
    interval whether anybody looks or not, and could not page through a
    million tasks in SQLite or follow one task's live output.

    Bounds, so that HTTP input never blocks or floods the loop: at most
    WEB_THREADS requests are forwarded at once (one inproc socket per
    HTTP thread, each with one request out); the loop answers a bounded
    number per turn, each bounded in size (pages of at most 200 tasks);
    a request the loop has not answered in WEB_LOOP_TIMEOUT_MS gets a 503.
    libmicrohttpd bounds the rest: connections (64, 16 per address), an
    idle or slow connection's life (10 s), a request's headers (32 KiB:
    past that it answers 431), strict parsing of the request line and
    headers. A request body (only POST has a use for one, and it is
    ignored) announced over 4 KiB gets a 413 before it is read; a chunked
    one past 4 KiB closes the connection. Paths are matched exactly against a
    fixed table: no file is ever opened from a path.

    Security (docs/security.md): loopback by default; any other address
    needs --http-token FILE (or --insecure). On loopback without tokens,
    a request whose Host header names anything but localhost, 127.0.0.0/8
    or ::1 gets a 403 (a web page using DNS rebinding would otherwise
    read every job through the user's browser). The token file holds one
    token per line, optionally followed by a right: `read` (the default:
    /metrics and every page) or `control` (also cancel and retry). Tokens are
    compared in constant time, each of them, whatever matched. The
    dashboard's assets are public (they hold no data); every data path
    needs a token when tokens are configured. TLS with --http-cert and
    --http-key (libmicrohttpd's GnuTLS). Every response says Cache-Control:
    no-store and carries a Content-Security-Policy that allows only the
    page's own scripts, styles and requests.

    Ownership: web_t belongs to the loop's owner (master.c), which makes it
    after the loop's ROUTER is bound and destroys it first.
    Threads: web_new/web_destroy on the main thread; everything else runs
    on libmicrohttpd's threads.
*/
#ifndef ZTASK_WEB_H
#define ZTASK_WEB_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#define WEB_THREADS 2
#define WEB_LOOP_TIMEOUT_MS 5000

/* What the HTTP threads forward to the loop, frame by frame (after the
   DEALER's routing): sequence number (8 bytes), method, path, the query
   arguments as "key=value\n" lines (keys and values of [A-Za-z0-9_.,:-]
   only, at most 16), and the right: "read" or "control". The loop
   answers: the sequence number, the status code as text ("200"), the
   content type, the body. */

typedef struct {
    const char *addr;          /* HOST:PORT to listen on (PORT 0: any free port) */
    const char *token_file;    /* NULL = no tokens: read for anyone who connects */
    const char *cert_file;     /* PEM certificate: HTTPS (with key_file) */
    const char *key_file;
    bool insecure;             /* allow a non-loopback address without tokens */
    void *zmq_ctx;             /* the master's context (inproc needs the same one) */
    const char *loop_endpoint; /* the loop's inproc ROUTER (dash_endpoint) */
} web_config_t;

typedef struct web web_t;

/* Reads the token file and the certificate, connects to the loop, starts
   the HTTP threads and logs event=http_listening url=... NULL with err
   filled (a one-line reason and what to do) on failure. */
web_t *web_new(const web_config_t *cfg, char *err, size_t errlen);

/* The bound port (useful with port 0). */
int web_port(const web_t *self);

/* Requests refused by the token check since start (any thread). */
int64_t web_refused(const web_t *self);

/* Stops the HTTP threads (waiting for them), closes the sockets, frees.
   Accepts NULL; nulls *p. */
void web_destroy(web_t **p);

#endif
