#include "auth.h"

#include "../common/clock.h"
#include "../common/keys.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../common/zmqx.h"

#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* The lists, by role: clients, workers, admins (admins optional). */
enum { L_CLIENTS, L_WORKERS, L_ADMINS, L_COUNT };

struct auth {
    void *zap;
    char *paths[L_COUNT];      /* owned; paths[L_ADMINS] NULL without --admins */
    keyset_t *lists[L_COUNT];  /* the lists now (a reload swaps all three at once) */
    log_limit_t lim_refused;   /* a stranger can connect at will */
    metrics_t *metrics;        /* borrowed; NULL = not counted */
};

void auth_set_metrics(auth_t *self, metrics_t *metrics)
{
    self->metrics = metrics;
}

/* Loads every list; only when all load do they replace the old ones. */
static int s_load(auth_t *self, char *err, size_t errlen)
{
    keyset_t *fresh[L_COUNT] = {NULL};
    for (int i = 0; i < L_COUNT; i++)
        if (self->paths[i] && !(fresh[i] = keyset_load(self->paths[i], err, errlen))) {
            for (int j = 0; j < i; j++)
                keyset_destroy(&fresh[j]);
            return -1;
        }
    for (int i = 0; i < L_COUNT; i++) {
        keyset_destroy(&self->lists[i]);
        self->lists[i] = fresh[i];
    }
    return 0;
}

auth_t *auth_new(void *ctx, const auth_lists_t *lists, char *err, size_t errlen)
{
    auth_t *self = xcalloc(1, sizeof *self);
    self->paths[L_CLIENTS] = xstrdup(lists->clients);
    self->paths[L_WORKERS] = xstrdup(lists->workers);
    self->paths[L_ADMINS] = xstrdup(lists->admins);
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
    log_info("event=auth_enabled clients=%zu workers=%zu admins=%zu",
             keyset_size(self->lists[L_CLIENTS]), keyset_size(self->lists[L_WORKERS]),
             keyset_size(self->lists[L_ADMINS]));
    return self;
}

void auth_destroy(auth_t **p)
{
    if (!p || !*p)
        return;
    auth_t *self = *p;
    if (self->zap)
        zmq_close(self->zap);
    for (int i = 0; i < L_COUNT; i++) {
        keyset_destroy(&self->lists[i]);
        free(self->paths[i]);
    }
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
    log_info("event=auth_reloaded clients=%zu workers=%zu admins=%zu",
             keyset_size(self->lists[L_CLIENTS]), keyset_size(self->lists[L_WORKERS]),
             keyset_size(self->lists[L_ADMINS]));
    return 0;
}

unsigned auth_key_roles(const auth_t *self, const char *key)
{
    if (!self)
        return AUTH_CLIENT | AUTH_WORKER | AUTH_ADMIN;
    unsigned roles = 0;
    if (keyset_has(self->lists[L_CLIENTS], key))
        roles |= AUTH_CLIENT;
    if (keyset_has(self->lists[L_WORKERS], key))
        roles |= AUTH_WORKER;
    if (keyset_has(self->lists[L_ADMINS], key))
        roles |= AUTH_ADMIN | AUTH_CLIENT;
    return roles;
}

void auth_peer(const auth_t *self, const char *user_id, auth_peer_t *out)
{
    memset(out, 0, sizeof *out);
    if (!self) {
        /* No CURVE: over TCP nothing tells one local user from another,
           so nobody owns anything and everyone may do everything (see the
           top of auth.h for how an ipc:// API could tell users apart). */
        out->roles = AUTH_CLIENT | AUTH_WORKER | AUTH_ADMIN;
        return;
    }
    const char *key = auth_user_key(user_id);
    out->roles = auth_key_roles(self, key);
    snprintf(out->owner, sizeof out->owner, "%s", key);
}

const char *auth_key_name(const auth_t *self, const char *key)
{
    if (!self || !key || !*key)
        return NULL;
    for (int i = 0; i < L_COUNT; i++) {
        const char *name = keyset_name(self->lists[i], key);
        if (name)
            return name;
    }
    return NULL;
}

const char *auth_roles_text(unsigned roles, char *buf, size_t n)
{
    static const char *const names[] = {"client", "worker", "admin"};
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < 3; i++)
        if (roles & (1u << i))
            used += (size_t) snprintf(buf + used, n - used, "%s%s", used ? "+" : "", names[i]);
    return buf;
}

/* ZAP request (RFC 27): version, request id, domain, address, identity,
   mechanism, then credentials (CURVE: the client's 32-byte public key). */
static void s_answer(auth_t *self, const zmqx_frames_t *req)
{
    const char *status = "400", *text = "not allowed";
    unsigned roles = 0;
    char key[KEY_Z85_LEN + 1] = "";
    size_t plen = strlen(AUTH_DOMAIN_PIPE);
    const char *domain = req->count > 2 ? req->frames[2] : "";
    const char *address = req->count > 3 ? req->frames[3] : "";
    if (req->count >= 7 && strcmp(req->frames[5], "CURVE") == 0 && req->sizes[6] == 32) {
        zmq_z85_encode(key, (const uint8_t *) req->frames[6], 32);
        unsigned held = auth_key_roles(self, key);
        bool own_pipe = strncmp(domain, AUTH_DOMAIN_PIPE " ", plen + 1) == 0
                        && strcmp(domain + plen + 1, key) == 0;
        if (strcmp(domain, AUTH_DOMAIN_API) == 0 && held) {
            status = "200";
            roles = held;
        } else if ((strcmp(domain, AUTH_DOMAIN_REPORTS) == 0 || own_pipe)
                   && (held & AUTH_WORKER)) {
            status = "200";
            roles = AUTH_WORKER;
        }
    } else
        text = "CURVE required";
    char user[ZMQX_USER_ID_MAX] = "";
    if (strcmp(status, "200") == 0) {
        text = "OK";
        char r[32];
        snprintf(user, sizeof user, "%s %s", auth_roles_text(roles, r, sizeof r), key);
    } else {
        if (self->metrics)
            metrics_auth_refused(self->metrics, key[0] ? "unknown_key" : "no_curve");
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
    /* Decoded here and given as 32 bytes: libzmq decodes a Z85 key on its
       own stack and leaves that copy there; this one is wiped. (libzmq
       keeps the 32 bytes in each socket's options, which ztask cannot
       wipe: closed sockets' memory goes back to the heap as it is.) */
    uint8_t secret[32];
    if (strlen(secret_z85) != KEY_Z85_LEN || !zmq_z85_decode(secret, secret_z85)) {
        errno = EINVAL;
        return -1;
    }
    int one = 1;
    int rc = zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) != 0
                     || zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0
                     || zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, sizeof secret) != 0
                 ? -1
                 : 0;
    sodium_memzero(secret, sizeof secret);
    return rc;
}

const char *auth_user_key(const char *user_id)
{
    const char *sp = strchr(user_id, ' ');
    return sp ? sp + 1 : "";
}
