/*  web: the HTTP threads (see web.h): parse, check the token, serve the
    embedded assets, forward data requests to the loop and relay its
    answers. */
#include "web.h"

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../common/zmqx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <zmq.h>

/* The dashboard's files, compiled in by scripts/embed-assets.sh (the
   generated web_assets.c). */
typedef struct {
    const char *path;          /* "/", "/app.js", ... */
    const char *type;          /* Content-Type */
    const unsigned char *data;
    size_t len;
} web_asset_t;
extern const web_asset_t web_assets[];
extern const size_t web_nassets;

#define MAX_TOKENS 64
#define MAX_BODY 4096
#define MAX_ARGS 16
#define MAX_ARG_LEN 64

/* Allows the page's own files and requests only: no inline script or
   style, no other origin, no framing, no forms. */
#define CSP "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " \
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

typedef enum { RIGHT_NONE = 0, RIGHT_READ, RIGHT_CONTROL } right_t;

typedef struct {
    char *token;
    size_t len;
    right_t right;
} token_t;

/* One inproc DEALER with at most one request out. */
typedef struct {
    void *sock;
    uint64_t seq;
    bool busy;
} channel_t;

struct web {
    struct MHD_Daemon *daemon;
    int port;
    token_t tokens[MAX_TOKENS];
    int ntokens;
    char *cert, *key;          /* PEM text while the daemon runs */
    pthread_mutex_t mu;        /* guards the channels' busy flags */
    pthread_cond_t freed;
    channel_t chans[WEB_THREADS];
    int64_t refused;           /* atomic */
    bool loopback_only;        /* loopback without tokens: Host must name loopback */
};

/* Per request: how much body has arrived. */
typedef struct {
    size_t body;
} request_t;

/* ---- tokens ---- */

/* Compares in time that depends only on the lengths: every byte of the
   longer text is looked at, whatever differs first. */
static bool s_equal_ct(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen > blen ? alen : blen;
    unsigned char diff = (unsigned char) (alen != blen);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < alen ? (unsigned char) a[i] : 0;
        unsigned char y = i < blen ? (unsigned char) b[i] : 0;
        diff |= (unsigned char) (x ^ y);
    }
    return diff == 0;
}

static int s_load_tokens(web_t *self, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read --http-token %s: %s", path, strerror(errno));
        return -1;
    }
    char line[512];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *save = NULL;
        char *tok = strtok_r(line, " \t\r\n", &save);
        if (!tok || tok[0] == '#')
            continue;
        char *right = strtok_r(NULL, " \t\r\n", &save);
        right_t r = right && strcmp(right, "control") == 0 ? RIGHT_CONTROL : RIGHT_READ;
        if (right && r != RIGHT_CONTROL && strcmp(right, "read") != 0) {
            snprintf(err, errlen, "--http-token %s line %d: the right after a token is read or "
                                  "control, not '%s'", path, lineno, right);
            rc = -1;
        } else if (strlen(tok) < 16) {
            snprintf(err, errlen, "--http-token %s line %d: a token needs at least 16 characters "
                                  "(e.g. head -c 24 /dev/urandom | base64)", path, lineno);
            rc = -1;
        } else if (self->ntokens == MAX_TOKENS) {
            snprintf(err, errlen, "--http-token %s: more than %d tokens", path, MAX_TOKENS);
            rc = -1;
        } else {
            token_t *t = &self->tokens[self->ntokens++];
            t->token = xstrdup(tok);
            t->len = strlen(tok);
            t->right = r;
        }
    }
    fclose(f);
    if (rc == 0 && self->ntokens == 0) {
        snprintf(err, errlen, "--http-token %s holds no token (one per line, then optionally "
                              "read or control)", path);
        rc = -1;
    }
    return rc;
}

/* The right the request's bearer token carries (every token compared). */
static right_t s_right(web_t *self, struct MHD_Connection *con)
{
    if (self->ntokens == 0)
        return RIGHT_READ;
    const char *auth = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_AUTHORIZATION);
    if (!auth || strncmp(auth, "Bearer ", 7) != 0)
        return RIGHT_NONE;
    const char *given = auth + 7;
    size_t glen = strlen(given);
    right_t best = RIGHT_NONE;
    for (int i = 0; i < self->ntokens; i++)
        if (s_equal_ct(self->tokens[i].token, self->tokens[i].len, given, glen)
            && self->tokens[i].right > best)
            best = self->tokens[i].right;
    return best;
}

/* Whether a Host header names this machine's loopback: localhost, an
   address in 127.0.0.0/8 or ::1, with any port. A page on another site
   whose name was made to resolve to 127.0.0.1 (DNS rebinding) reaches a
   loopback server with its own name here. */
static bool s_loopback_host(const char *host)
{
    char name[256];
    const char *end;
    if (host[0] == '[') {
        end = strchr(host, ']');
        if (!end || (end[1] && end[1] != ':'))
            return false;
        host++;
    } else {
        end = strchr(host, ':');
        if (!end)
            end = host + strlen(host);
    }
    if ((size_t) (end - host) >= sizeof name)
        return false;
    memcpy(name, host, (size_t) (end - host));
    name[end - host] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(name, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, name, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, name, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* ---- responses ---- */

static enum MHD_Result s_respond(struct MHD_Connection *con, unsigned status, const char *type,
                                 const void *data, size_t len, bool asset)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *) data,
                                        asset ? MHD_RESPMEM_PERSISTENT : MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY, CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"ztask\"");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, POST");
    enum MHD_Result ret = MHD_queue_response(con, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result s_error(struct MHD_Connection *con, unsigned status, const char *msg)
{
    char body[300];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}\n", msg);
    return s_respond(con, status, "application/json", body, (size_t) n, false);
}

/* ---- the loop ---- */

static bool s_arg_ok(const char *s)
{
    size_t n = strlen(s);
    if (n > MAX_ARG_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '_' || c == '.' || c == ',' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

typedef struct {
    strbuf_t text;
    int n;
    bool bad;
} args_t;

static enum MHD_Result s_collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void) kind;
    args_t *a = cls;
    if (++a->n > MAX_ARGS || !s_arg_ok(key) || (value && !s_arg_ok(value))) {
        a->bad = true;
        return MHD_NO;
    }
    strbuf_printf(&a->text, "%s=%s\n", key, value ? value : "");
    return MHD_YES;
}

static channel_t *s_take_channel(web_t *self)
{
    pthread_mutex_lock(&self->mu);
    channel_t *c = NULL;
    for (;;) {
        for (int i = 0; i < WEB_THREADS && !c; i++)
            if (!self->chans[i].busy)
                c = &self->chans[i];
        if (c)
            break;
        pthread_cond_wait(&self->freed, &self->mu);
    }
    c->busy = true;
    pthread_mutex_unlock(&self->mu);
    return c;
}

static void s_give_channel(web_t *self, channel_t *c)
{
    pthread_mutex_lock(&self->mu);
    c->busy = false;
    pthread_cond_signal(&self->freed);
    pthread_mutex_unlock(&self->mu);
}

/* Sends the request to the loop and relays its answer; a 503 when it
   does not come in time (a late answer is recognised by its sequence
   number and dropped by the next request on this channel). */
static enum MHD_Result s_forward(web_t *self, struct MHD_Connection *con, const char *method,
                                 const char *url, const char *args, right_t right)
{
    channel_t *c = s_take_channel(self);
    uint64_t seq = ++c->seq;
    const char *rights = right == RIGHT_CONTROL ? "control" : "read";
    int rc = zmqx_send(c->sock, &seq, sizeof seq, ZMQ_SNDMORE);
    rc |= zmqx_send(c->sock, method, strlen(method), ZMQ_SNDMORE);
    rc |= zmqx_send(c->sock, url, strlen(url), ZMQ_SNDMORE);
    rc |= zmqx_send(c->sock, args, strlen(args), ZMQ_SNDMORE);
    rc |= zmqx_send(c->sock, rights, strlen(rights), 0);
    enum MHD_Result ret = MHD_NO;
    bool answered = false;
    int64_t waited = 0;
    while (rc == 0 && !answered && waited < WEB_LOOP_TIMEOUT_MS) {
        zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLIN, 0};
        int64_t t0 = clock_mono_ms();
        if (zmq_poll(&item, 1, WEB_LOOP_TIMEOUT_MS - waited) < 0 && errno != EINTR)
            break;
        waited += clock_mono_ms() - t0;
        if (!(item.revents & ZMQ_POLLIN))
            continue;
        zmqx_frames_t f;
        if (zmqx_recv_frames(c->sock, &f, 4, ZMQ_DONTWAIT) != 0)
            continue;
        if (f.count == 4 && f.sizes[0] == sizeof seq && memcmp(f.frames[0], &seq, sizeof seq) == 0) {
            char status[8] = "", type[64] = "";
            snprintf(status, sizeof status, "%.*s", (int) f.sizes[1], f.frames[1]);
            snprintf(type, sizeof type, "%.*s", (int) f.sizes[2], f.frames[2]);
            int code = atoi(status);
            ret = s_respond(con, code >= 200 && code < 600 ? (unsigned) code : 500, type,
                            f.frames[3], f.sizes[3], false);
            answered = true;
        }
        zmqx_frames_free(&f);
    }
    s_give_channel(self, c);
    if (!answered)
        ret = s_error(con, MHD_HTTP_SERVICE_UNAVAILABLE, "the master is busy; try again");
    return ret;
}

/* ---- the handler ---- */

static const web_asset_t *s_asset(const char *url)
{
    for (size_t i = 0; i < web_nassets; i++)
        if (strcmp(web_assets[i].path, url) == 0)
            return &web_assets[i];
    return NULL;
}

static bool s_data_path(const char *url)
{
    return strcmp(url, "/metrics") == 0 || strncmp(url, "/api/", 5) == 0;
}

static enum MHD_Result s_handle(void *cls, struct MHD_Connection *con, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **con_cls)
{
    (void) version;
    (void) upload;
    web_t *self = cls;
    request_t *req = *con_cls;
    if (!req) {
        req = xcalloc(1, sizeof *req);
        *con_cls = req;
        /* A body announced too big is refused before it is read (a
           response can be queued now, not while a body arrives). */
        const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        int64_t announced;
        if (cl && (parse_int64(cl, 0, INT64_MAX, &announced) != 0 || announced > MAX_BODY))
            return s_error(con, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
        return MHD_YES;
    }
    if (*upload_size) {
        /* A chunked body has no length up front: past the limit, the
           connection is closed (no answer can be queued mid-body). */
        req->body += *upload_size;
        *upload_size = 0;
        return req->body > MAX_BODY ? MHD_NO : MHD_YES;
    }
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool post = strcmp(method, "POST") == 0;
    if (!get && !post)
        return s_error(con, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET, HEAD and POST");
    if (req->body > MAX_BODY)
        return s_error(con, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
    const char *host = MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (self->loopback_only && host && !s_loopback_host(host))
        return s_error(con, MHD_HTTP_FORBIDDEN,
                       "this loopback server answers requests for localhost or 127.0.0.1 only; "
                       "behind a proxy or another name, give --http-token");
    const web_asset_t *a = get ? s_asset(url) : NULL;
    if (a)
        return s_respond(con, MHD_HTTP_OK, a->type, a->data, a->len, true);
    if (!s_data_path(url) || strlen(url) > 64)
        return s_error(con, MHD_HTTP_NOT_FOUND, "no such page");
    right_t right = s_right(self, con);
    if (right == RIGHT_NONE) {
        __atomic_add_fetch(&self->refused, 1, __ATOMIC_RELAXED);
        return s_error(con, MHD_HTTP_UNAUTHORIZED,
                       "this needs a token: Authorization: Bearer TOKEN (see --http-token)");
    }
    if (post && right != RIGHT_CONTROL)
        return s_error(con, MHD_HTTP_FORBIDDEN,
                       "this token may only read: actions need a token with the control right");
    args_t args = {0};
    strbuf_append(&args.text, "", 0);
    MHD_get_connection_values(con, MHD_GET_ARGUMENT_KIND, s_collect_arg, &args);
    enum MHD_Result ret;
    if (args.bad)
        ret = s_error(con, MHD_HTTP_BAD_REQUEST, "bad query arguments");
    else
        ret = s_forward(self, con, post ? "POST" : "GET", url, args.text.data, right);
    free(args.text.data);
    return ret;
}

static void s_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                        enum MHD_RequestTerminationCode toe)
{
    (void) cls;
    (void) con;
    (void) toe;
    free(*con_cls);
    *con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void s_mhd_log(void *cls, const char *fmt,
                                                          va_list ap)
{
    (void) cls;
    char msg[300];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    char q[400];
    log_debug("event=http_error error=\"%s\"", log_quote(q, sizeof q, msg));
}

/* ---- start and stop ---- */

static char *s_read_file(const char *path, const char *what, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    strbuf_t sb = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0 && sb.len < (1 << 20))
        strbuf_append(&sb, buf, n);
    fclose(f);
    if (!sb.data)
        snprintf(err, errlen, "%s %s is empty", what, path);
    return sb.data;
}

/* HOST:PORT into a socket address (literal addresses only). */
static int s_address(const char *text, struct sockaddr_storage *ss, char **host, char *err,
                     size_t errlen)
{
    /* HOST:PORT or [V6]:PORT; PORT 0 (any free port) is allowed here,
       which hostport_parse refuses. */
    const char *colon = strrchr(text, ':');
    int64_t port = -1;
    size_t hlen = colon ? (size_t) (colon - text) : 0;
    if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']')
        *host = xstrndup(text + 1, hlen - 2);
    else if (hlen && !memchr(text, ':', hlen))
        *host = xstrndup(text, hlen);
    if (!*host || parse_int64(colon + 1, 0, 65535, &port) != 0) {
        snprintf(err, errlen, "--http wants ADDR:PORT (e.g. 127.0.0.1:8080), not '%s'", text);
        return -1;
    }
    if (strcmp(*host, "localhost") == 0) {
        free(*host);
        *host = xstrdup("127.0.0.1");
    }
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *) ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ss;
    if (inet_pton(AF_INET, *host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t) port);
    } else if (inet_pton(AF_INET6, *host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t) port);
    } else {
        snprintf(err, errlen, "--http takes an IP address (127.0.0.1:8080, [::1]:8080, "
                              "0.0.0.0:8080), not '%s'", *host);
        return -1;
    }
    return 0;
}

web_t *web_new(const web_config_t *cfg, char *err, size_t errlen)
{
    web_t *self = xcalloc(1, sizeof *self);
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->freed, NULL);
    struct sockaddr_storage ss;
    char *host = NULL;
    bool tls = cfg->cert_file || cfg->key_file;
    if (s_address(cfg->addr, &ss, &host, err, errlen) != 0)
        goto fail;
    if (cfg->token_file && s_load_tokens(self, cfg->token_file, err, errlen) != 0)
        goto fail;
    if (!cfg->token_file && !addr_is_loopback(host) && !cfg->insecure) {
        snprintf(err, errlen, "refusing to serve HTTP on %s without a token: anyone who can "
                              "reach it would see every job; give --http-token FILE, or "
                              "--insecure on a trusted network", host);
        goto fail;
    }
    self->loopback_only = !cfg->token_file && addr_is_loopback(host);
    if (!cfg->token_file && !addr_is_loopback(host))
        log_error("event=insecure http=%s note=\"--insecure: no token: anyone who can reach "
                  "this port sees every job and task\"", cfg->addr);
    if (tls) {
        if (!cfg->cert_file || !cfg->key_file) {
            snprintf(err, errlen, "HTTPS needs both --http-cert and --http-key");
            goto fail;
        }
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            snprintf(err, errlen, "this libmicrohttpd has no TLS support: install one built with "
                                  "GnuTLS (Debian's is), or drop --http-cert");
            goto fail;
        }
        self->cert = s_read_file(cfg->cert_file, "--http-cert", err, errlen);
        self->key = self->cert ? s_read_file(cfg->key_file, "--http-key", err, errlen) : NULL;
        if (!self->key)
            goto fail;
    }
    for (int i = 0; i < WEB_THREADS; i++) {
        channel_t *c = &self->chans[i];
        c->sock = zmqx_socket(cfg->zmq_ctx, ZMQ_DEALER, 0, 64 << 20);
        if (!c->sock || zmq_connect(c->sock, cfg->loop_endpoint) != 0) {
            snprintf(err, errlen, "cannot connect to %s: %s", cfg->loop_endpoint,
                     zmq_strerror(errno));
            goto fail;
        }
    }
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG
                     | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0) | (tls ? MHD_USE_TLS : 0);
    /* Connections and their sizes are bounded here (see web.h). */
    self->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, s_handle, self, MHD_OPTION_SOCK_ADDR, &ss,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned) WEB_THREADS, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned) 64, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned) 16,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) 10, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t) 32 * 1024, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_NOTIFY_COMPLETED,
        s_completed, NULL, MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, NULL,
        tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, self->cert, MHD_OPTION_HTTPS_MEM_KEY,
        self->key, MHD_OPTION_END);
    if (!self->daemon) {
        snprintf(err, errlen, "cannot serve HTTP on %s (%s): port in use, or a bad certificate? "
                              "pick another --http port",
                 cfg->addr, strerror(errno));
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : 0;
    log_info("event=http_listening url=%s://%s%s%s:%d/ tokens=%d",
             tls ? "https" : "http", strchr(host, ':') ? "[" : "", host,
             strchr(host, ':') ? "]" : "", self->port, self->ntokens);
    free(host);
    return self;
fail:
    free(host);
    web_destroy(&self);
    return NULL;
}

int web_port(const web_t *self)
{
    return self->port;
}

int64_t web_refused(const web_t *self)
{
    return __atomic_load_n(&self->refused, __ATOMIC_RELAXED);
}

void web_destroy(web_t **p)
{
    if (!p || !*p)
        return;
    web_t *self = *p;
    if (self->daemon)
        MHD_stop_daemon(self->daemon);
    for (int i = 0; i < WEB_THREADS; i++)
        if (self->chans[i].sock)
            zmq_close(self->chans[i].sock);
    for (int i = 0; i < self->ntokens; i++)
        free(self->tokens[i].token);
    free(self->cert);
    free(self->key);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->freed);
    free(self);
    *p = NULL;
}
