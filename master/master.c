#include "master_internal.h"

#include "../common/clock.h"
#include "../common/keys.h"
#include "../common/log.h"
#include "../common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

void master_config_defaults(master_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->bind_addr = "127.0.0.1";
    cfg->port = 5555;
    cfg->db_path = "ztask.db";
    cfg->sync = STORE_SYNC_FULL;
    cfg->heartbeat_ms = 1000;
    cfg->liveness = 3;
    cfg->lease_ms = 10000;
    cfg->recovery_grace_ms = 5000;
    cfg->prefetch = -1;
    cfg->crash_limit = 5;
    cfg->retry_backoff_ms = 500;
    cfg->flush_ms = 5;
}

/* ---- start-up: rebuild memory from the store ---- */

static int s_load_task(const store_task_row_t *row, void *arg)
{
    master_t *self = arg;
    int64_t now = clock_mono_ms();
    if (row->state == PROTO_ST_QUEUED) {
        int left = row->retries - row->attempt;
        sched_task_t *t = sched_add(self->sched, row->id, row->job, row->priority,
                                    sched_class(self->sched, row->needs), row->attempt,
                                    left < 0 ? 0 : left, 0);
        t->recovered = true;
    } else {
        /* It was on a worker when we stopped: give that worker the recovery
           grace to come back and claim it before running it again. */
        int left = row->retries - (row->attempt > 0 ? row->attempt - 1 : 0);
        sched_add_orphan(self->sched, row->id, row->job, row->priority,
                         sched_class(self->sched, row->needs), row->attempt,
                         left < 0 ? 0 : left, row->worker ? row->worker : "",
                         now + self->cfg.recovery_grace_ms);
        self->orphans++;
    }
    return 0;
}

static void *s_bind(master_t *self, int type, int port, int64_t maxmsg, const char *domain,
                    int *bound, char *err, size_t errlen)
{
    void *s = zmqx_socket(self->ctx, type, 0, maxmsg);
    if (!s) {
        snprintf(err, errlen, "cannot create socket: %s", zmq_strerror(errno));
        return NULL;
    }
    if (self->auth && auth_make_server(s, self->curve_secret, domain) != 0) {
        snprintf(err, errlen, "cannot enable CURVE: %s", zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    int hwm = 100000;
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    char ep[300];
    if (port)
        snprintf(ep, sizeof ep, "tcp://%s:%d", self->bind_addr, port);
    else
        snprintf(ep, sizeof ep, "tcp://%s:*", self->bind_addr);
    if (zmq_bind(s, ep) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s (%s)", ep, zmq_strerror(errno),
                 errno == ENODEV ? "--bind takes an IP address of this host or an interface "
                                   "name, not a host name"
                                 : "another master running? use --port");
        zmq_close(s);
        return NULL;
    }
    *bound = zmqx_bound_port(s);
    return s;
}

/* Literal addresses ("localhost" became 127.0.0.1 in master_new). */
static bool s_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0
           || strcmp(addr, "[::1]") == 0;
}

/* CURVE keys, or a loopback-only bind, or an explicit --insecure. */
static int s_security(master_t *self, const master_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->curve_secret) {
        if (cfg->clients || cfg->workers) {
            snprintf(err, errlen, "--clients/--workers need --curve-secret (the master's key file)");
            return -1;
        }
        if (!s_loopback(cfg->bind_addr) && !cfg->insecure) {
            snprintf(err, errlen,
                     "refusing to listen on %s without authentication: anyone who can reach it "
                     "could run commands on your workers; give --curve-secret KEY --clients DIR "
                     "--workers DIR (see ztask keygen), or --insecure on a trusted network",
                     cfg->bind_addr);
            return -1;
        }
        /* At error level so that no --log-level hides it. */
        if (!s_loopback(cfg->bind_addr))
            log_error("event=insecure bind=%s note=\"--insecure: no authentication, no "
                      "encryption: anyone who can reach these ports can submit commands to run "
                      "on the workers\"",
                      cfg->bind_addr);
        return 0;
    }
    keypair_t kp;
    if (keys_load(cfg->curve_secret, &kp, err, errlen) != 0)
        return -1;
    if (!kp.sec[0]) {
        snprintf(err, errlen, "%s holds no secret-key (give the .key file, not the .pub)",
                 cfg->curve_secret);
        return -1;
    }
    if (!cfg->clients || !cfg->workers) {
        snprintf(err, errlen, "with --curve-secret, give both --clients and --workers allowlists "
                              "(a directory of .pub files, or a file of keys)");
        return -1;
    }
    memcpy(self->curve_secret, kp.sec, sizeof self->curve_secret);
    self->auth = auth_new(self->ctx, cfg->clients, cfg->workers, err, errlen);
    return self->auth ? 0 : -1;
}

master_t *master_new(const master_config_t *cfg, char *err, size_t errlen)
{
    master_t *self = xcalloc(1, sizeof *self);
    self->cfg = *cfg;
    /* libzmq binds addresses and interface names, not host names: the one
       host name people type for --bind is read as what it means. */
    self->bind_addr = xstrdup(strcmp(cfg->bind_addr, "localhost") == 0 ? "127.0.0.1"
                                                                         : cfg->bind_addr);
    self->db_path = xstrdup(cfg->db_path);
    self->cfg.bind_addr = self->bind_addr;
    self->cfg.db_path = self->db_path;
    self->started_ms = clock_mono_ms();
    self->started_wall = clock_wall();
    self->sched = sched_new();

    self->store = store_new(cfg->db_path, cfg->sync, err, errlen);
    if (!self->store)
        goto fail;
    self->journal = journal_new(self->store, self->sched, cfg->flush_ms, self->db_path);
    if (!self->journal) {
        snprintf(err, errlen, "cannot start the writer thread: %s", strerror(errno));
        goto fail;
    }
    self->jobs = jobs_new(self->journal, cfg->keep_jobs, cfg->keep_secs);
    self->waiters = waiters_new(self->jobs);
    if (jobs_load(self->jobs, self->store) != 0
        || store_unfinished_each(self->store, s_load_task, self) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", cfg->db_path, store_error(self->store));
        goto fail;
    }
    if (store_last_ids(self->store, &self->last_job_id, &self->last_task_id) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", cfg->db_path, store_error(self->store));
        goto fail;
    }

    self->ctx = zmq_ctx_new();
    /* Each worker costs a socket (its pipe); libzmq's default cap of 1023
       sockets would refuse the 1,022nd worker whatever the fd limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 1100) {
        rlim_t n = rl.rlim_cur - 64;
        zmq_ctx_set(self->ctx, ZMQ_MAX_SOCKETS, n > 65535 ? 65535 : (int) n);
    }
    if (s_security(self, &self->cfg, err, errlen) != 0)
        goto fail;
    self->api = s_bind(self, ZMQ_ROUTER, cfg->port, PROTO_MAX_API_MSG, AUTH_DOMAIN_API,
                       &self->api_port, err, errlen);
    if (!self->api)
        goto fail;
    self->reports = s_bind(self, ZMQ_PULL, cfg->port ? cfg->port + 1 : 0, PROTO_MAX_REPORT_MSG,
                           AUTH_DOMAIN_REPORTS, &self->report_port, err, errlen);
    if (!self->reports)
        goto fail;
    self->registry = registry_new(self->ctx, self->bind_addr, cfg->task_port_lo, cfg->task_port_hi,
                                  self->auth ? self->curve_secret : NULL);

    log_info("event=listening api=tcp://%s:%d reports=tcp://%s:%d db=%s jobs=%zu unfinished=%zu "
             "orphans=%zu",
             self->bind_addr, self->api_port, self->bind_addr, self->report_port, self->db_path,
             jobs_count(self->jobs), sched_size(self->sched), self->orphans);
    return self;
fail:
    master_destroy(&self);
    return NULL;
}

int master_api_port(const master_t *self)
{
    return self->api_port;
}

void master_send_reply(master_t *self, const zmqx_frames_t *envelope, const proto_reply_t *rep,
                       proto_req_type_t type)
{
    char *body = proto_reply_encode(rep, type);
    /* Routing frames first; a peer gone since is silently dropped by ROUTER. */
    for (int i = 0; i < envelope->count; i++)
        zmqx_send(self->api, envelope->frames[i], envelope->sizes[i], ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmqx_send(self->api, body, strlen(body), ZMQ_DONTWAIT);
    free(body);
}

/* ---- the loop ---- */

static long s_poll_timeout(master_t *self, int64_t now)
{
    int64_t t = journal_timeout(self->journal, now, 100);
    int64_t next = sched_next_due(self->sched, now);
    if (next >= 0 && next < t)
        t = next;
    int64_t held = waiters_deadline(self->waiters);
    if (held >= 0 && held - now < t)
        t = held - now;
    return t < 0 ? 0 : (long) t;
}

int master_run(master_t *self, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    /* Atomic loads: the flags are set by a signal handler, or by another
       thread when the master is embedded (the unit tests do that). */
    while (!__atomic_load_n(stop, __ATOMIC_RELAXED)) {
        if (reload && __atomic_load_n(reload, __ATOMIC_RELAXED)) {
            __atomic_store_n(reload, 0, __ATOMIC_RELAXED);
            char err[512];
            if (!self->auth)
                log_info("event=reload_ignored why=\"no --curve-secret: no allowlists to reload\"");
            else if (auth_reload(self->auth, err, sizeof err) != 0)
                log_error("event=reload_failed error=\"%s\" note=\"old allowlists kept\"", err);
        }
        int64_t now = clock_mono_ms();
        zmq_pollitem_t items[4] = {{self->reports, 0, ZMQ_POLLIN, 0},
                                   {self->api, 0, ZMQ_POLLIN, 0},
                                   {NULL, journal_fd(self->journal), ZMQ_POLLIN, 0},
                                   {self->auth ? auth_socket(self->auth) : NULL, 0, ZMQ_POLLIN, 0}};
        int rc = zmq_poll(items, self->auth ? 4 : 3, s_poll_timeout(self, now));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            log_error("event=poll_failed error=\"%s\"", zmq_strerror(errno));
            return -1;
        }
        now = clock_mono_ms();
        if (self->auth)
            auth_handle(self->auth);
        /* A written batch: its submits get their acks (and their tasks can
           go out in this turn's dispatch). */
        journal_collect(self->journal);
        api_acks(self);
        /* Reports first: results free worker credit. Both loops are bounded
           so neither socket can starve the other or the timers. A socket
           the poll did not flag is not tried: a receive that finds nothing
           still costs libzmq system calls (~20 us each on a VM). */
        for (int i = 0; i < 2000 && (items[0].revents & ZMQ_POLLIN); i++) {
            size_t len;
            char uid[ZMQX_USER_ID_MAX] = "";
            char *buf = self->auth ? zmqx_recv_from(self->reports, &len, ZMQ_DONTWAIT, uid)
                                   : zmqx_recv(self->reports, &len, ZMQ_DONTWAIT);
            if (!buf) {
                if (errno == EPROTO) {
                    int64_t held;
                    if (log_limit(&self->lim_report, now, &held))
                        log_warn("event=bad_report error=\"multipart message dropped\" "
                                 "suppressed=%" PRId64, held);
                    continue;
                }
                break;
            }
            tasks_on_report(self, buf, len, self->auth ? auth_user_key(uid) : NULL, now);
            free(buf);
        }
        /* Hand out freed credit before anything that may wait on the disk
           (a query waits for its commit): workers should not idle through
           an fsync. Sending a task needs no durability first: a crash
           before its assignment is written finds it queued, and its worker
           claims it or it runs again under the same attempt number. */
        tasks_dispatch(self, now);
        for (int i = 0; i < 500 && (items[1].revents & ZMQ_POLLIN); i++) {
            zmqx_frames_t frames;
            if (zmqx_recv_frames(self->api, &frames, 8, ZMQ_DONTWAIT) != 0) {
                if (errno == EPROTO) {
                    int64_t held;
                    if (log_limit(&self->lim_request, now, &held))
                        log_warn("event=bad_request error=\"too many frames\" suppressed=%" PRId64,
                                 held);
                    continue;
                }
                break;
            }
            api_on_request(self, &frames, now);
            zmqx_frames_free(&frames);
        }
        if (now - self->last_timers >= 100) {
            self->last_timers = now;
            tasks_timers(self, now);
        }
        /* Held status requests whose job has just finished: after this
           turn's reports, requests and timers, any of which may end it. */
        api_waiters(self, now, false);
        jobs_retention(self->jobs, now);
        /* Start the next commit if the writer is free: submits go at once
           (a client waits for each), the rest every flush_ms. A small one
           is written here and its tasks are queued now: dispatch after. */
        journal_commit(self->journal, now);
        api_acks(self);
        tasks_dispatch(self, now);
        /* Workers count the master dead after heartbeat x liveness of
           silence: a turn this long is worth a line in the log. */
        int64_t spent = clock_mono_ms() - now;
        if (spent > self->cfg.heartbeat_ms)
            log_warn("event=loop_stall ms=%" PRId64 " heartbeat_ms=%d", spent, self->cfg.heartbeat_ms);
    }
    log_info("event=stopping");
    journal_stopping(self->journal);   /* a restart finds every task out claimable */
    int rc = api_flush(self) == 0 ? 0 : -1;
    /* Held status requests get the state as of now: their clients ask
       again (and find the master gone or restarted) instead of waiting. */
    api_waiters(self, clock_mono_ms(), true);
    return rc;
}

void master_destroy(master_t **p)
{
    if (!p || !*p)
        return;
    master_t *self = *p;
    if (self->journal)
        api_flush(self);
    journal_destroy(&self->journal);
    waiters_destroy(&self->waiters);
    registry_destroy(&self->registry);
    auth_destroy(&self->auth);
    if (self->api)
        zmq_close(self->api);
    if (self->reports)
        zmq_close(self->reports);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    store_destroy(&self->store);
    jobs_destroy(&self->jobs);
    sched_destroy(&self->sched);
    free(self->bind_addr);
    free(self->db_path);
    free(self);
    *p = NULL;
}
