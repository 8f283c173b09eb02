#include "master_internal.h"

#include "../common/clock.h"
#include "../common/keys.h"
#include "../common/log.h"
#include "../common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
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

static int s_load_job(const store_job_row_t *row, void *arg)
{
    master_t *self = arg;
    job_t *job = xcalloc(1, sizeof *job);
    job->id = row->id;
    job->name = xstrdup(row->name);
    job->closed = row->closed;
    job->created = row->created;
    job->finished = row->finished;
    imap_put(self->jobs, job->id, job);
    return 0;
}

static int s_load_count(int64_t id, proto_state_t state, int64_t count, void *arg)
{
    master_t *self = arg;
    job_t *job = imap_get(self->jobs, id);
    if (!job)
        return 0;
    job->total += count;
    switch (state) {
    case PROTO_ST_QUEUED: job->queued += count; break;
    case PROTO_ST_ASSIGNED:
    case PROTO_ST_RUNNING: job->running += count; break;
    case PROTO_ST_DONE: job->done += count; break;
    case PROTO_ST_FAILED: job->failed += count; break;
    case PROTO_ST_CANCELLED: job->cancelled_n += count; break;
    }
    return 0;
}

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

static writer_apply_fn s_write_batch;

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
    self->pending_tail = &self->pending;
    self->started_ms = clock_mono_ms();
    self->started_wall = clock_wall();
    self->jobs = imap_new();
    self->sched = sched_new();

    self->store = store_new(cfg->db_path, cfg->sync, err, errlen);
    if (!self->store)
        goto fail;
    if (store_jobs_each(self->store, s_load_job, self) != 0
        || store_counts_each(self->store, s_load_count, self) != 0
        || store_unfinished_each(self->store, s_load_task, self) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", cfg->db_path, store_error(self->store));
        goto fail;
    }
    if (store_last_ids(self->store, &self->last_job_id, &self->last_task_id) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", cfg->db_path, store_error(self->store));
        goto fail;
    }
    self->writer = writer_new(self->store, s_write_batch);
    if (!self->writer) {
        snprintf(err, errlen, "cannot start the writer thread: %s", strerror(errno));
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
             imap_size(self->jobs), sched_size(self->sched), self->orphans);
    return self;
fail:
    master_destroy(&self);
    return NULL;
}

int master_api_port(const master_t *self)
{
    return self->api_port;
}

/* ---- journal and grouped commits ---- */

void master_journal(master_t *self, jop_type_t type, int64_t task, int64_t job, int attempt,
                    proto_state_t state, const char *worker, char *outcome_owned, double t)
{
    if (self->njournal == self->capjournal) {
        self->capjournal = self->capjournal ? self->capjournal * 2 : 1024;
        self->journal = xrealloc(self->journal, self->capjournal * sizeof(jop_t));
    }
    if (!self->njournal)
        self->journal_since = clock_mono_ms();
    self->journal[self->njournal++] = (jop_t){
        .type = type, .state = state, .attempt = attempt, .task = task, .job = job,
        .worker = xstrdup(worker), .outcome = outcome_owned, .t = t};
}

void master_assigned(master_t *self, int64_t task, int attempt, int64_t now)
{
    if (self->nassigns == self->capassigns) {
        /* Reuse the written prefix before growing. */
        if (self->assign_head > self->nassigns / 2) {
            self->nassigns -= self->assign_head;
            memmove(self->assigns, self->assigns + self->assign_head,
                    self->nassigns * sizeof *self->assigns);
            self->assign_head = 0;
        } else {
            self->capassigns = self->capassigns ? self->capassigns * 2 : 1024;
            self->assigns = xrealloc(self->assigns, self->capassigns * sizeof *self->assigns);
        }
    }
    self->assigns[self->nassigns++] = (assign_t){.task = task, .since = now, .attempt = attempt};
}

/* End of the prefix of assignments due for writing at now. */
static size_t s_assigns_due(const master_t *self, int64_t now)
{
    size_t k = self->assign_head;
    while (k < self->nassigns
           && (self->stopping || now - self->assigns[k].since >= ASSIGN_WRITE_MS))
        k++;
    return k;
}

/* Journals the due assignments of tasks still out under that attempt;
   the others have finished or gone back to the queue, and their later rows
   say so. They go after the ops already journalled, so the rows end as the
   memory is now. */
static void s_journal_assigns(master_t *self, size_t end)
{
    for (size_t k = self->assign_head; k < end; k++) {
        const assign_t *a = &self->assigns[k];
        sched_task_t *t = sched_get(self->sched, a->task);
        if (!t || t->attempt != a->attempt || t->orphan
            || (t->state != PROTO_ST_ASSIGNED && t->state != PROTO_ST_RUNNING))
            continue;
        master_journal(self, J_ASSIGN, t->id, t->job, t->attempt, 0, t->worker_name, NULL, 0);
    }
    self->assign_head = end;
    if (self->assign_head == self->nassigns)
        self->assign_head = self->nassigns = 0;
}

static int s_apply(store_t *st, const jop_t *op)
{
    int64_t n;
    switch (op->type) {
    case J_ASSIGN:
        return store_task_set_running(st, op->task, PROTO_ST_ASSIGNED, op->attempt, op->worker, 0);
    case J_REQUEUE: return store_task_requeue(st, op->task);
    case J_FINISH:
        return store_task_finish(st, op->task, op->state, op->attempt, op->worker, op->outcome,
                                 op->t);
    case J_DUP:
        return store_duplicate_add(st, op->task, op->attempt, op->worker, op->outcome, op->t);
    case J_CANCEL_QUEUED: return store_job_cancel_queued(st, op->job, op->t, &n);
    case J_JOB_CLOSE: return store_job_close(st, op->job);
    case J_JOB_FINISHED: return store_job_set_finished(st, op->job, op->t);
    case J_JOB_DELETE: return store_job_delete(st, op->job, &n);
    }
    return -1;
}

job_t *master_job(master_t *self, int64_t id)
{
    return imap_get(self->jobs, id);
}

static void s_job_free(job_t *job)
{
    if (job) {
        free(job->name);
        free(job);
    }
}

void master_forget_job(master_t *self, job_t *job)
{
    master_journal(self, J_JOB_DELETE, 0, job->id, 0, 0, NULL, NULL, 0);
    imap_remove(self->jobs, job->id);
    log_info("event=job_forgotten job=%" PRId64 " tasks=%" PRId64, job->id, job->total);
    bool big = job->total > 10000;
    s_job_free(job);
    /* A big job's task records were many small allocations: hand the freed
       pages back to the system so RSS returns near its baseline. */
    if (big)
        malloc_trim(0);
}

static int s_cmp_finished(const void *a, const void *b)
{
    const job_t *x = *(job_t *const *) a, *y = *(job_t *const *) b;
    return x->finished < y->finished ? 1 : x->finished > y->finished ? -1 : 0;
}

void master_retention(master_t *self)
{
    if (!self->cfg.keep_jobs && self->cfg.keep_secs <= 0)
        return;
    size_t n = 0, pos = 0;
    job_t **done = xcalloc(imap_size(self->jobs) + 1, sizeof(job_t *));
    job_t *job;
    while ((job = imap_next(self->jobs, &pos, NULL)))
        if (job->finished > 0)
            done[n++] = job;
    qsort(done, n, sizeof(job_t *), s_cmp_finished);   /* newest first */
    double now = clock_wall();
    for (size_t i = 0; i < n; i++) {
        bool too_many = self->cfg.keep_jobs && i >= (size_t) self->cfg.keep_jobs;
        bool too_old = self->cfg.keep_secs > 0 && now - done[i]->finished > self->cfg.keep_secs;
        if (too_many || too_old)
            master_forget_job(self, done[i]);
    }
    free(done);
}

static void s_pending_free(pending_submit_t *p)
{
    for (int i = 0; i < p->ntasks; i++) {
        free(p->tasks[i].name);
        free(p->tasks[i].spec);
        free(p->tasks[i].needs);
    }
    zmqx_frames_free(&p->envelope);
    s_job_free(p->new_job);
    free(p->tasks);
    free(p);
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

/* The commit of these submits succeeded: their tasks enter the queue and
   the clients get their acks. */
static void s_pending_commit(master_t *self, pending_submit_t *list)
{
    pending_submit_t *p;
    while ((p = list)) {
        list = p->next;
        job_t *job = p->new_job;
        if (job) {
            imap_put(self->jobs, job->id, job);
            p->new_job = NULL;
        } else
            job = imap_get(self->jobs, p->job_id);
        if (job) {
            /* A job cancelled meanwhile had these rows cancelled in the same
               transaction (J_CANCEL_QUEUED): they never enter the queue. */
            if (job->cancelled)
                job->cancelled_n += p->ntasks;
            else {
                for (int i = 0; i < p->ntasks; i++) {
                    sched_task_t *t = sched_add(self->sched, p->tasks[i].id, job->id,
                                                p->tasks[i].priority, p->tasks[i].cls, 0,
                                                p->tasks[i].retries, 0);
                    /* Keep the spec in memory until dispatch: no read back. */
                    t->spec = p->tasks[i].spec;
                    p->tasks[i].spec = NULL;
                }
                job->queued += p->ntasks;
            }
            job->total += p->ntasks;
            if (p->close)
                job->closed = true;
            log_debug("event=submitted job=%" PRId64 " tasks=%d total=%" PRId64, job->id,
                      p->ntasks, job->total);
            /* Checked first: a job with nothing left to run is finished
               now, and a submit that waits for that is due at once. */
            tasks_job_check(self, job);
            api_submit_answer(self, &p->envelope, job->id, p->ntasks, p->wait_ms,
                              clock_mono_ms());
        }
        s_pending_free(p);
    }
}

/* The commit of these submits failed (or will never come): refuse them. */
static void s_pending_fail(master_t *self, pending_submit_t *list, const char *why)
{
    pending_submit_t *p;
    while ((p = list)) {
        list = p->next;
        /* A refused batch that would have closed its job does not: the
           client may send it again. */
        job_t *job = p->close ? imap_get(self->jobs, p->job_id) : NULL;
        if (job)
            job->closing = false;
        proto_reply_t *rep = proto_reply_error(
            PROTO_E_STORAGE, "the master could not store the tasks (%s); nothing of this batch was accepted",
            why);
        master_send_reply(self, &p->envelope, rep, PROTO_REQ_SUBMIT);
        proto_reply_destroy(&rep);
        s_pending_free(p);
    }
}

/* What one commit writes: the journal's ops and the submits waiting for
   it. Handed whole to the writer thread and back. */
typedef struct {
    jop_t *ops;
    size_t nops, capops;
    pending_submit_t *pending;
} batch_t;

static void s_ops_clear(jop_t *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ops[i].worker);
        free(ops[i].outcome);
    }
}

/* On the writer thread: the batch and the store only. */
static int s_write_batch(store_t *st, void *arg, char *err, size_t errlen)
{
    batch_t *b = arg;
    int rc = 0;
    for (const pending_submit_t *p = b->pending; p && rc == 0; p = p->next) {
        const job_t *nj = p->new_job;
        if (nj)
            rc = store_job_create(st, nj->id, nj->name, nj->created, NULL);
        if (rc == 0 && p->ntasks > 0) {
            store_task_new_t *rows = xcalloc((size_t) p->ntasks, sizeof *rows);
            for (int i = 0; i < p->ntasks; i++) {
                const pending_task_t *t = &p->tasks[i];
                rows[i] = (store_task_new_t){.id = t->id,
                                             .index = t->index,
                                             .name = t->name,
                                             .priority = t->priority,
                                             .retries = t->retries,
                                             .spec_json = t->spec,
                                             .needs = t->needs};
            }
            rc = store_tasks_insert(st, p->job_id, rows, (size_t) p->ntasks);
            free(rows);
        }
        if (rc == 0 && p->close)
            rc = store_job_close(st, p->job_id);
    }
    /* A claim (hello) journals its assignment at once; one whose task
       finished within the same batch needs only the finish row, which
       carries attempt and worker too. */
    imap_t *finished = NULL;
    for (size_t k = 0; k < b->nops && !finished; k++)
        if (b->ops[k].type == J_ASSIGN)
            finished = imap_new();
    for (size_t k = 0; finished && k < b->nops; k++)
        if (b->ops[k].type == J_FINISH)
            imap_put(finished, b->ops[k].task, &b->ops[k]);
    for (size_t i = 0; rc == 0 && i < b->nops; i++) {
        const jop_t *op = &b->ops[i];
        if (op->type == J_ASSIGN && finished && imap_get(finished, op->task))
            continue;
        rc = s_apply(st, op);
    }
    imap_destroy(&finished);
    if (rc == 0)
        rc = store_commit(st);
    if (rc != 0) {
        snprintf(err, errlen, "%s", store_error(st));
        store_rollback(st);
    }
    return rc;
}

/* True when a flush has something to write at now. */
static bool s_flush_due(const master_t *self, int64_t now, bool force)
{
    bool work = self->njournal || self->pending || self->assign_head < self->nassigns;
    if (!work)
        return false;
    if (force)
        return true;
    if (self->storage_failing)
        return now >= self->flush_retry_at;
    return self->pending || (self->njournal && now >= self->journal_since + self->cfg.flush_ms)
           || s_assigns_due(self, now) > self->assign_head;
}

/* Takes the journal and the waiting submits out as one batch (with the
   assignments now due); NULL when there is nothing to write. */
static batch_t *s_take_batch(master_t *self, int64_t now)
{
    s_journal_assigns(self, s_assigns_due(self, now));
    if (!self->njournal && !self->pending)
        return NULL;
    batch_t *b = xcalloc(1, sizeof *b);
    b->ops = self->journal;
    b->nops = self->njournal;
    b->capops = self->capjournal;
    b->pending = self->pending;
    self->journal = self->spare;
    self->capjournal = self->capspare;
    self->njournal = 0;
    self->spare = NULL;
    self->capspare = 0;
    self->pending = NULL;
    self->pending_tail = &self->pending;
    return b;
}

/* A written batch: acks its submits, or refuses them and puts its ops back
   in front of the journal. Returns rc. */
static int s_batch_done(master_t *self, batch_t *b, int rc, const char *why)
{
    if (rc == 0) {
        s_ops_clear(b->ops, b->nops);
        /* Keep the bigger one, up to 64 Ki ops (3 MiB): past that it was
           a burst, and the memory goes back. */
        if (b->capops > self->capspare && b->capops <= 65536) {
            free(self->spare);
            self->spare = b->ops;
            self->capspare = b->capops;
        } else
            free(b->ops);
        if (self->storage_failing)
            log_info("event=storage_recovered db=%s", self->db_path);
        self->storage_failing = false;
        self->flush_retry_at = 0;
        s_pending_commit(self, b->pending);
    } else {
        if (!self->storage_failing)
            log_error("event=commit_failed db=%s error=\"%s\" pending_ops=%zu", self->db_path, why,
                      b->nops + self->njournal);
        self->storage_failing = true;
        self->flush_retry_at = clock_mono_ms() + 500;
        /* Nothing decided is lost: the ops are replayed at the next flush,
           before the ones journalled since. */
        if (b->nops) {
            size_t n = b->nops + self->njournal;
            jop_t *ops = xrealloc(b->ops, n * sizeof *ops);
            if (self->njournal)
                memcpy(ops + b->nops, self->journal, self->njournal * sizeof *ops);
            free(self->journal);
            self->journal = ops;
            self->njournal = self->capjournal = n;
            self->journal_since = clock_mono_ms();
        } else {
            free(b->ops);
        }
        s_pending_fail(self, b->pending, why);
    }
    free(b);
    return rc;
}

/* Takes a batch back from the writer (waiting for it if wait). Returns the
   commit's result; 0 when none was out or it is not written yet. */
static int s_complete(master_t *self, bool wait)
{
    int rc = 0;
    char why[512];
    batch_t *b = writer_finish(self->writer, wait, &rc, why, sizeof why);
    return b ? s_batch_done(self, b, rc, why) : 0;
}

/* Rows a batch writes, about. */
static size_t s_batch_size(const batch_t *b)
{
    size_t n = b->nops;
    for (const pending_submit_t *p = b->pending; p; p = p->next)
        n += (size_t) p->ntasks + 1;
    return n;
}

/* Starts a commit of what is journalled and waiting (the writer must be
   idle). A small one is written here at once: handing it over would cost
   two thread wakeups, which is most of a lone task's round trip; a big one
   goes to the writer, and with wait this returns once it is written.
   Returns the commit's result (0 when it is still being written). */
static int s_flush_start(master_t *self, int64_t now, bool wait)
{
    batch_t *b = s_take_batch(self, now);
    if (!b)
        return self->storage_failing && self->njournal ? -1 : 0;
    if (s_batch_size(b) <= INLINE_WRITE_MAX) {
        char why[512] = "";
        int rc = s_write_batch(self->store, b, why, sizeof why);
        return s_batch_done(self, b, rc, why);
    }
    writer_start(self->writer, b);
    return wait ? s_complete(self, true) : 0;
}

int master_flush(master_t *self)
{
    if (writer_busy(self->writer))
        s_complete(self, true);
    int64_t now = clock_mono_ms();
    if (!s_flush_due(self, now, true))
        return self->storage_failing && self->njournal ? -1 : 0;
    return s_flush_start(self, now, true);
}

store_t *master_store(master_t *self)
{
    if (writer_busy(self->writer))
        writer_idle(self->writer);
    return self->store;
}

/* ---- the loop ---- */

static long s_poll_timeout(master_t *self, int64_t now)
{
    int64_t t = 100;
    /* While a batch is out, the writer's fd wakes us when it is back. */
    if (!writer_busy(self->writer)) {
        if (self->pending)
            t = 0;
        if (self->njournal) {
            int64_t due = self->storage_failing ? self->flush_retry_at
                                                : self->journal_since + self->cfg.flush_ms;
            if (due - now < t)
                t = due - now;
        }
        if (self->assign_head < self->nassigns) {
            int64_t due = self->assigns[self->assign_head].since + ASSIGN_WRITE_MS;
            if (self->storage_failing && self->flush_retry_at > due)
                due = self->flush_retry_at;
            if (due - now < t)
                t = due - now;
        }
    }
    int64_t next = sched_next_due(self->sched, now);
    if (next >= 0 && next < t)
        t = next;
    int64_t held = api_waiters_due(self);
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
                                   {NULL, writer_fd(self->writer), ZMQ_POLLIN, 0},
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
        s_complete(self, false);
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
        if (self->waiters)
            api_waiters(self, now, false);
        if (self->retention_due || now - self->last_retention >= 5000) {
            self->retention_due = false;
            self->last_retention = now;
            master_retention(self);
        }
        /* Start the next commit if the writer is free: submits go at once
           (a client waits for each), the rest every flush_ms. A small one
           is written here and its tasks are queued now: dispatch after. */
        if (!writer_busy(self->writer) && s_flush_due(self, now, false))
            s_flush_start(self, now, false);
        tasks_dispatch(self, now);
        /* Workers count the master dead after heartbeat x liveness of
           silence: a turn this long is worth a line in the log. */
        int64_t spent = clock_mono_ms() - now;
        if (spent > self->cfg.heartbeat_ms)
            log_warn("event=loop_stall ms=%" PRId64 " heartbeat_ms=%d", spent, self->cfg.heartbeat_ms);
    }
    log_info("event=stopping");
    self->stopping = true;   /* a restart finds every task out claimable */
    int rc = master_flush(self) == 0 ? 0 : -1;
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
    if (self->writer) {
        master_flush(self);
        writer_destroy(&self->writer);
    }
    s_pending_fail(self, self->pending, "the master is stopping");
    api_waiters_free(self);
    s_ops_clear(self->journal, self->njournal);
    free(self->journal);
    free(self->spare);
    free(self->assigns);
    registry_destroy(&self->registry);
    auth_destroy(&self->auth);
    if (self->api)
        zmq_close(self->api);
    if (self->reports)
        zmq_close(self->reports);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    store_destroy(&self->store);
    size_t pos = 0;
    job_t *job;
    while ((job = imap_next(self->jobs, &pos, NULL)))
        s_job_free(job);
    imap_destroy(&self->jobs);
    sched_destroy(&self->sched);
    free(self->bind_addr);
    free(self->db_path);
    free(self);
    *p = NULL;
}
