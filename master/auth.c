#include "auth.h"

#include "../common/clock.h"
#include "../common/keys.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../common/zmqx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct auth {
    void *zap;
    char *clients_path, *workers_path;
    keyset_t *clients, *workers;
    log_limit_t lim_refused;   /* a stranger can connect at will */
};

static int s_load(auth_t *self, char *err, size_t errlen)
{
    keyset_t *c = keyset_load(self->clients_path, err, errlen);
    if (!c)
        return -1;
    keyset_t *w = keyset_load(self->workers_path, err, errlen);
    if (!w) {
        keyset_destroy(&c);
        return -1;
    }
    keyset_destroy(&self->clients);
    keyset_destroy(&self->workers);
    self->clients = c;
    self->workers = w;
    return 0;
}

auth_t *auth_new(void *ctx, const char *clients_path, const char *workers_path, char *err,
                 size_t errlen)
{
    auth_t *self = xcalloc(1, sizeof *self);
    self->clients_path = xstrdup(clients_path);
    self->workers_path = xstrdup(workers_path);
    if (s_load(self, err, errlen) != 0) {
        auth_destroy(&self);
        return NULL;
    }
    self->zap = zmqx_socket(ctx, ZMQ_REP, 0, 4096);
    if (!self->zap || zmq_bind(self->zap, "inproc://zeromq.zap.01") != 0) {
        snprintf(err, errlen, "cannot start the ZAP handler: %s", zmq_strerror(errno));
        auth_destroy(&self);
        return NULL;
    }
    log_info("event=auth_enabled clients=%zu workers=%zu", keyset_size(self->clients),
             keyset_size(self->workers));
    return self;
}

void auth_destroy(auth_t **p)
{
    if (!p || !*p)
        return;
    auth_t *self = *p;
    if (self->zap)
        zmq_close(self->zap);
    keyset_destroy(&self->clients);
    keyset_destroy(&self->workers);
    free(self->clients_path);
    free(self->workers_path);
    free(self);
    *p = NULL;
}

void *auth_socket(auth_t *self)
{
    return self->zap;
}

int auth_reload(auth_t *self, char *err, size_t errlen)
{
    if (s_load(self, err, errlen) != 0)
        return -1;
    log_info("event=auth_reloaded clients=%zu workers=%zu", keyset_size(self->clients),
             keyset_size(self->workers));
    return 0;
}

/* ZAP request (RFC 27): version, request id, domain, address, identity,
   mechanism, then credentials (CURVE: the client's 32-byte public key). */
static void s_answer(auth_t *self, const zmqx_frames_t *req)
{
    const char *status = "400", *text = "not allowed", *role = "";
    char key[KEY_Z85_LEN + 1] = "";
    size_t plen = strlen(AUTH_DOMAIN_PIPE);
    const char *domain = req->count > 2 ? req->frames[2] : "";
    const char *address = req->count > 3 ? req->frames[3] : "";
    if (req->count >= 7 && strcmp(req->frames[5], "CURVE") == 0 && req->sizes[6] == 32) {
        zmq_z85_encode(key, (const uint8_t *) req->frames[6], 32);
        bool client = keyset_has(self->clients, key);
        bool worker = keyset_has(self->workers, key);
        bool own_pipe = strncmp(domain, AUTH_DOMAIN_PIPE " ", plen + 1) == 0
                        && strcmp(domain + plen + 1, key) == 0;
        if (strcmp(domain, AUTH_DOMAIN_API) == 0 && (client || worker)) {
            status = "200";
            role = client && worker ? "client+worker" : client ? "client" : "worker";
        } else if ((strcmp(domain, AUTH_DOMAIN_REPORTS) == 0 || own_pipe) && worker) {
            status = "200";
            role = "worker";
        }
    } else
        text = "CURVE required";
    char user[ZMQX_USER_ID_MAX] = "";
    if (strcmp(status, "200") == 0) {
        text = "OK";
        snprintf(user, sizeof user, "%s %s", role, key);
    } else {
        /* A pipe's domain is "pipe KEY": the key is not the refused one. */
        int64_t held;
        if (log_limit(&self->lim_refused, clock_mono_ms(), &held))
            log_warn("event=auth_refused domain=%.*s address=%s key=%s suppressed=%lld",
                     strncmp(domain, AUTH_DOMAIN_PIPE " ", plen + 1) == 0 ? (int) plen : 64,
                     domain, address, key[0] ? key : "none", (long long) held);
    }
    /* Reply: version, request id, status code, status text, user id, metadata. */
    const char *version = "1.0";
    zmqx_send(self->zap, version, 3, ZMQ_SNDMORE);
    zmqx_send(self->zap, req->count > 1 ? req->frames[1] : "", req->count > 1 ? req->sizes[1] : 0,
              ZMQ_SNDMORE);
    zmqx_send(self->zap, status, 3, ZMQ_SNDMORE);
    zmqx_send(self->zap, text, strlen(text), ZMQ_SNDMORE);
    zmqx_send(self->zap, user, strlen(user), ZMQ_SNDMORE);
    zmqx_send(self->zap, "", 0, 0);
}

void auth_handle(auth_t *self)
{
    for (int i = 0; i < 100; i++) {
        zmqx_frames_t req;
        if (zmqx_recv_frames(self->zap, &req, 16, ZMQ_DONTWAIT) != 0)
            return;
        s_answer(self, &req);
        zmqx_frames_free(&req);
    }
}

int auth_make_server(void *sock, const char *secret_z85, const char *domain)
{
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) != 0
        || zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0
        || zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret_z85, KEY_Z85_LEN) != 0)
        return -1;
    return 0;
}

bool auth_role_allows(const char *user_id, const char *role)
{
    /* The role is the User-Id's first word: "client", "worker" or
       "client+worker" (the key after it is Z85, which has letters). */
    size_t n = strcspn(user_id, " ");
    size_t r = strlen(role);
    for (const char *p = user_id; p + r <= user_id + n; p++)
        if (strncmp(p, role, r) == 0 && (p == user_id || p[-1] == '+')
            && (p + r == user_id + n || p[r] == '+'))
            return true;
    return false;
}

const char *auth_user_key(const char *user_id)
{
    const char *sp = strchr(user_id, ' ');
    return sp ? sp + 1 : "";
}
