#include "registry.h"

#include "auth.h"

#include "../common/clock.h"
#include "../common/imap.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../common/zmqx.h"
#include "../proto/proto.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct registry {
    void *ctx;
    char *bind_addr;
    const char *curve_secret;   /* borrowed (registry_config_t) */
    int port_lo, port_hi;
    int max_per_key;
    int next_ipc;            /* where the search for a free ipc number starts (from port_lo) */
    worker_t **v;
    size_t n, cap;
};

registry_t *registry_new(const registry_config_t *cfg)
{
    registry_t *self = xcalloc(1, sizeof *self);
    self->curve_secret = cfg->curve_secret;
    self->ctx = cfg->zmq_ctx;
    self->bind_addr = xstrdup(cfg->bind_addr);
    self->port_lo = cfg->port_lo;
    self->port_hi = cfg->port_hi;
    self->max_per_key = cfg->max_per_key;
    return self;
}

/* Live workers registered under key, other than except. */
static int s_live_for_key(const registry_t *self, const char *key, const worker_t *except)
{
    int n = 0;
    for (size_t i = 0; i < self->n; i++)
        n += self->v[i] != except && self->v[i]->alive && strcmp(self->v[i]->key, key) == 0;
    return n;
}

static void s_close_pipe(worker_t *w)
{
    if (w->pipe) {
        zmq_close(w->pipe);
        w->pipe = NULL;
    }
    w->pipe_ready = false;
    w->task_port = 0;
}

/* What a hello says a worker has: its labels and functions. */
static void s_free_labels(worker_t *w)
{
    for (int i = 0; i < w->nlabels; i++)
        free(w->labels[i]);
    free(w->labels);
    w->labels = NULL;
    w->nlabels = 0;
    for (int i = 0; i < w->nfns; i++)
        free(w->fns[i]);
    free(w->fns);
    w->fns = NULL;
    w->nfns = 0;
}

static void s_free_grants(worker_t *w)
{
    size_t pos = 0;
    void *g;
    while (w->grants && (g = imap_next(w->grants, &pos, NULL)))
        free(g);
    imap_destroy(&w->grants);
}

static void s_free_worker(worker_t *w)
{
    s_close_pipe(w);
    s_free_labels(w);
    free(w->charged);
    free(w->recall_for);
    s_free_grants(w);
    free(w->id);
    free(w->host);
    free(w->slurm_job);
    free(w);
}

void registry_destroy(registry_t **p)
{
    if (!p || !*p)
        return;
    registry_t *self = *p;
    for (size_t i = 0; i < self->n; i++)
        s_free_worker(self->v[i]);
    free(self->v);
    free(self->bind_addr);
    free(self);
    *p = NULL;
}

worker_t *registry_find(registry_t *self, const char *id)
{
    for (size_t i = 0; i < self->n; i++)
        if (strcmp(self->v[i]->id, id) == 0)
            return self->v[i];
    return NULL;
}

/* True when a worker's open pipe holds port. */
static bool s_port_taken(const registry_t *self, int port)
{
    for (size_t i = 0; i < self->n; i++)
        if (self->v[i]->pipe && self->v[i]->task_port == port)
            return true;
    return false;
}

/* Binds a PUSH for one worker. Its high-water mark is generous because the
   master's credit accounting, not the HWM, bounds what is in flight. */
static void *s_bind_pipe(registry_t *self, const char *key, int *port, char *err,
                         size_t errlen)
{
    /* Nothing legitimate comes in on a pipe (the worker only reads), so a
       small size limit costs nothing and drops a peer that sends a huge
       frame; 4 KiB still passes every ZMTP/CURVE handshake command. */
    void *s = zmqx_socket(self->ctx, ZMQ_PUSH, 0, 4096);
    if (!s) {
        snprintf(err, errlen, "cannot create a task pipe: %s", zmq_strerror(errno));
        return NULL;
    }
    int hwm = 100000;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    /* Its ZAP domain names the worker's key: only that key may connect. */
    char domain[sizeof(AUTH_DOMAIN_PIPE) + 48];
    snprintf(domain, sizeof domain, AUTH_DOMAIN_PIPE " %s", key);
    if (self->curve_secret && auth_make_server(s, self->curve_secret, domain) != 0) {
        snprintf(err, errlen, "cannot enable CURVE on a task pipe: %s", zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    char ep[300];
    if (self->port_lo == 0) {
        if (zmqx_bind(s, self->bind_addr, 0, port, ep, sizeof ep) == 0)
            return s;
    } else {
        /* In an ipc directory a bind replaces the file of that name, so a
           number another worker's pipe holds is skipped, never bound
           again; the search goes round from after the last one taken, so
           a number whose pipe just closed (libzmq unlinks its file on its
           I/O thread, a moment later) is not the next one bound. */
        bool ipc = zmqx_ipc(self->bind_addr);
        int span = self->port_hi - self->port_lo + 1;
        for (int k = 0; k < span; k++) {
            int p = self->port_lo + (ipc ? (self->next_ipc + k) % span : k);
            if (ipc && s_port_taken(self, p))
                continue;
            if (zmqx_bind(s, self->bind_addr, p, port, ep, sizeof ep) == 0) {
                if (ipc)
                    self->next_ipc = (p - self->port_lo + 1) % span;
                return s;
            }
        }
    }
    snprintf(err, errlen, "cannot bind a task pipe on %s%s: %s", self->bind_addr,
             self->port_lo ? " (--task-ports range exhausted?)" : "", zmq_strerror(errno));
    zmq_close(s);
    return NULL;
}

worker_t *registry_hello(registry_t *self, const registry_hello_t *hello, int64_t now,
                         const char **code, char *err, size_t errlen)
{
    *code = PROTO_E_INTERNAL;
    const char *name = hello->name, *key = hello->key, *host = hello->host;
    int pid = hello->pid;
    /* The same process registering again (it lost the master for a while)
       keeps its record; another live process with the same name gets the
       first free "name#k". With CURVE the same process means the same key
       too: another worker key cannot take over a live worker's record. */
    const char *h = host ? host : "";
    worker_t *w = NULL;
    char id[PROTO_MAX_NAME + 16];
    snprintf(id, sizeof id, "%s", name);
    for (int k = 2; k < 10000; k++) {
        worker_t *other = registry_find(self, id);
        if (!other || !other->alive
            || (other->pid == pid && strcmp(other->host, h) == 0 && strcmp(other->key, key) == 0)) {
            w = other;
            break;
        }
        snprintf(id, sizeof id, "%s#%d", name, k);
    }
    /* A new live worker (not the same process again): one key may hold
       only so many, or a single stolen or shared worker key could
       register fake workers until every task port is taken. */
    if (self->max_per_key > 0 && key[0] && !(w && w->alive)
        && s_live_for_key(self, key, w) >= self->max_per_key) {
        *code = PROTO_E_QUOTA;
        snprintf(err, errlen, "this worker key already has %d live workers, the most one key may "
                              "register (the master's --max-workers-per-key); stop one, or give "
                              "these workers keys of their own", self->max_per_key);
        return NULL;
    }
    if (!w) {
        if (registry_find(self, id)) {
            snprintf(err, errlen, "too many live workers named '%s'", name);
            return NULL;
        }
        w = xcalloc(1, sizeof *w);
        w->id = xstrdup(id);
    }
    bool is_new = true;
    for (size_t i = 0; i < self->n; i++)
        if (self->v[i] == w)
            is_new = false;
    /* The pool first: a declaration that does not hold together is
       refused before anything changes. */
    res_pool_t pool = {0};
    if (!w->inflight) {
        res_set_t cap = {0};
        if (hello->resources)
            cap = *hello->resources;
        if (!res_get(&cap, "cpus") && res_set(&cap, "cpus", hello->threads) != 0) {
            snprintf(err, errlen, "more than %d resources", RES_MAX);
            if (is_new)
                s_free_worker(w);
            return NULL;
        }
        if (res_pool_init(&pool, &cap, (const char *const *) hello->gpu_ids, hello->ngpu_ids,
                          hello->threads, err, errlen) != 0) {
            if (is_new)
                s_free_worker(w);
            return NULL;
        }
    }

    int port = 0;
    void *pipe = s_bind_pipe(self, key, &port, err, errlen);
    if (!pipe) {
        if (is_new)
            s_free_worker(w);
        return NULL;
    }
    s_close_pipe(w);
    w->pipe = pipe;
    w->task_port = port;
    free(w->host);
    w->host = xstrdup(h);
    snprintf(w->key, sizeof w->key, "%s", key);
    /* Crashes charged at its loss stay charged unless the same process
       came back (the caller uncharged them then). */
    free(w->charged);
    w->charged = NULL;
    w->ncharged = 0;
    w->pid = pid;
    w->threads = hello->threads;
    s_free_labels(w);
    w->labels = xcalloc((size_t) hello->nlabels + 1, sizeof(char *));
    for (int i = 0; i < hello->nlabels; i++)
        w->labels[i] = xstrdup(hello->labels[i]);
    w->nlabels = hello->nlabels;
    w->fns = xcalloc((size_t) hello->nfns + 1, sizeof(char *));
    for (int i = 0; i < hello->nfns; i++)
        w->fns[i] = xstrdup(hello->fns[i]);
    w->nfns = hello->nfns;
    /* Asked for every fn dispatch: binary search. */
    qsort(w->fns, (size_t) w->nfns, sizeof(char *), strp_cmp);
    w->no_exec = hello->no_exec;
    w->recall = hello->recall;
    w->recall_until = 0;   /* a recall in the old pipe is lost with it */
    free(w->recall_for);
    w->recall_for = NULL;
    if (!w->inflight) {
        s_free_grants(w);
        w->pool = pool;
    }
    free(w->slurm_job);
    w->slurm_job = hello->slurm_job ? xstrdup(hello->slurm_job) : NULL;
    w->ends_at = hello->ends_at;
    w->alive = true;
    w->draining = false;
    w->drain_sent = false;
    w->left = false;
    w->gone_at = 0;
    w->last_seen = now;
    w->last_ping = 0;
    w->gone_since = 0;
    if (is_new) {
        if (self->n == self->cap) {
            self->cap = self->cap ? self->cap * 2 : 16;
            self->v = xrealloc(self->v, self->cap * sizeof(worker_t *));
        }
        self->v[self->n++] = w;
    }
    return w;
}

void registry_gone(registry_t *self, worker_t *w, int64_t now, bool left)
{
    (void) self;
    assert(!w->tasks && w->inflight == 0);
    s_close_pipe(w);
    w->alive = false;
    w->draining = false;
    w->left = left;
    w->gone_since = now;
    w->gone_at = clock_wall();
}

void registry_prune(registry_t *self, int64_t now, int64_t keep_ms)
{
    size_t j = 0;
    for (size_t i = 0; i < self->n; i++) {
        worker_t *w = self->v[i];
        if (!w->alive && !w->tasks && now - w->gone_since > keep_ms)
            s_free_worker(w);
        else
            self->v[j++] = w;
    }
    self->n = j;
}

worker_t *registry_next(registry_t *self, size_t *pos)
{
    return *pos < self->n ? self->v[(*pos)++] : NULL;
}

size_t registry_count(const registry_t *self)
{
    return self->n;
}

void worker_attach(worker_t *w, sched_task_t *t)
{
    assert(!t->worker);
    t->worker = w;
    t->wprev = NULL;
    t->wnext = w->tasks;
    if (w->tasks)
        w->tasks->wprev = t;
    w->tasks = t;
    w->inflight++;
    t->suspect = t->crashes > 0;
    if (t->suspect)
        w->suspects++;
}

void worker_detach(worker_t *w, sched_task_t *t)
{
    assert(t->worker == w && w->inflight > 0);
    if (t->wprev)
        t->wprev->wnext = t->wnext;
    else
        w->tasks = t->wnext;
    if (t->wnext)
        t->wnext->wprev = t->wprev;
    t->wprev = t->wnext = NULL;
    t->worker = NULL;
    w->inflight--;
    if (t->suspect)
        w->suspects--;
    t->suspect = false;
}

bool worker_has_fn(const worker_t *w, const char *fn)
{
    return !fn || w->nfns == 0
           || bsearch(&fn, w->fns, (size_t) w->nfns, sizeof(char *), strp_cmp) != NULL;
}

bool worker_has_labels(const worker_t *w, char *const *require, int nrequire)
{
    for (int i = 0; i < nrequire; i++) {
        bool found = false;
        for (int j = 0; j < w->nlabels && !found; j++)
            found = strcmp(require[i], w->labels[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

void worker_send_drain(worker_t *w)
{
    assert(w->draining);
    if (w->drain_sent || !w->pipe)
        return;
    proto_pipe_t *msg = proto_pipe_new(PROTO_PIPE_DRAIN);
    char *text = proto_pipe_encode(msg);
    w->drain_sent = zmqx_send(w->pipe, text, strlen(text), ZMQ_DONTWAIT) == 0;
    free(text);
    proto_pipe_destroy(&msg);
}
