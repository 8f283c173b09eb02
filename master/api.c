/*  api: one request in, one reply out (see api.h). */
#include "api.h"

#include "alloc.h"

#include "auth.h"
#include "conns.h"
#include "deps.h"
#include "idem.h"
#include "jobs.h"
#include "journal.h"
#include "registry.h"
#include "sched.h"
#include "store.h"
#include "tasks.h"
#include "waiters.h"
#include "why.h"

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/testhook.h"
#include "../common/util.h"
#include "../common/zmqx.h"
#include "../proto/proto.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Requests per turn of the loop, at most: reports and timers get their
   turn even under a flood of requests. */
#define REQUESTS_PER_TURN 500

/* Keyed submits prune the expired keys at most this often. */
#define IDEM_PRUNE_EVERY_MS 60000

/* A held request's answer, made from memory when it was due, sent once
   every change it shows is committed (journal_written(mark)). Made then,
   not when sent: the memory may have moved on since, past the commit.
   Counted (metrics_api_request) when sent, not when made: if the commit
   fails it is never sent, and the answer sent instead counts. */
typedef struct held_reply {
    zmqx_frames_t envelope;  /* the client's routing frames */
    char *body;              /* the encoded reply */
    size_t len;
    char outcome[32];        /* its metrics outcome: "ok" or the error code */
    uint64_t mark;           /* journal_mark when it was made */
    proto_req_type_t type;   /* status or submit: */
    int64_t job, accepted;   /*   a submit's plain answer if the commit fails */
    struct held_reply *next;
} held_reply_t;

static void s_held_free(held_reply_t *h)
{
    zmqx_frames_free(&h->envelope);
    free(h->body);
    free(h);
}

static void s_held_send(api_t *self);

struct api {
    api_config_t cfg;        /* its pointers borrowed */
    int64_t last_job_id, last_task_id;   /* the ids handed out last */
    int64_t keys_pruned_ms;  /* monotonic ms of the last idem_prune (0: never) */
    /* Test only (ZTASK_TEST_KILL_BEFORE_ACK=N, docs/protocol.md): the
       master kills itself (SIGKILL) when the Nth committed submit is to be
       answered, so a test can lose a reply after its commit; 0 = never. */
    int64_t kill_before_ack;
    /* Lines a peer can cause at will, rate-limited (log_limit). */
    log_limit_t lim_request;
    log_limit_t hello_log;   /* refused hellos */
    /* The type name of the request being answered (counted with its
       reply); NULL outside s_on_request: deferred replies use theirs. */
    const char *cur_type;
    /* Replies and parked requests per connection, and their bounds. */
    conns_t *conns;
    /* The request being answered may have only a small reply (conns.h,
       CONNS_RUN_SMALL): a bigger one to a query is "busy" instead. */
    bool small_only;
    /* Answers of held requests made while some change they show was not
       committed yet: sent in this order once it is (api_acks). */
    held_reply_t *held, **held_tail;
    size_t nheld;              /* below 2 x MAX_WAITERS (api_waiters) */
    held_reply_t *hold_into;   /* set: s_send_reply fills it instead of sending */
};

api_t *api_new(const api_config_t *cfg)
{
    api_t *self = xcalloc(1, sizeof *self);
    self->cfg = *cfg;
    self->last_job_id = cfg->last_job_id;
    self->last_task_id = cfg->last_task_id;
    self->held_tail = &self->held;
    testhook_i64("ZTASK_TEST_KILL_BEFORE_ACK", 1, INT64_MAX, &self->kill_before_ack);
    /* Test only (docs/protocol.md): a smaller reply budget, in MiB. */
    int64_t budget_mib = 0;
    testhook_i64("ZTASK_TEST_REPLY_BUDGET_MIB", 1, CONNS_REPLY_BUDGET >> 20, &budget_mib);
    self->conns = conns_new(cfg->sock, cfg->metrics, budget_mib);
    return self;
}

void api_destroy(api_t **p)
{
    if (!p || !*p)
        return;
    api_t *self = *p;
    conns_destroy(&self->conns);
    while (self->held) {
        held_reply_t *h = self->held;
        self->held = h->next;
        s_held_free(h);
    }
    free(self);
    *p = NULL;
}

/* ---- replies ---- */


/* What a client accepts (its ZMQ_MAXMSGSIZE): a bigger reply would make
   libzmq drop the connection, and the client would only see silence. */
#define API_MAX_REPLY ((size_t) PROTO_MAX_API_MSG - 4096)

/* Requests that change nothing: over the reply budget, a big answer to
   one of them can be "busy" instead (sent again later, it is the same
   question). Anything else has run: its answer goes out whatever its
   size (they are small: acks and counts). */
static bool s_read_only(proto_req_type_t type)
{
    switch (type) {
    case PROTO_REQ_STATUS:
    case PROTO_REQ_JOBS:
    case PROTO_REQ_RESULTS:
    case PROTO_REQ_LOGS:
    case PROTO_REQ_WORKERS:
    case PROTO_REQ_STATS:
    case PROTO_REQ_SHOW:
    case PROTO_REQ_TASKS: return true;
    default: return false;
    }
}

/* The answer to a query not run, or whose answer is too big to send,
   while clients hold CONNS_REPLY_BUDGET of unread replies (conns.h).
   Logged as conns.c logs its own "busy" answers (docs/protocol.md says
   every one is): an operator sees why a `ztask results` was refused. */
static proto_reply_t *s_busy_error(api_t *self, proto_req_type_t type)
{
    int64_t held;
    if (log_limit(&self->lim_request, clock_mono_ms(), &held))
        log_warn("event=api_busy reason=\"replies not read, all clients; a query with a big "
                 "answer\" type=%s unread_bytes=%" PRId64 " suppressed=%" PRId64,
                 proto_req_type_name(type), conns_reply_bytes(self->conns), held);
    return proto_reply_error(PROTO_E_BUSY,
                             "busy: clients have not read %" PRId64 " MiB of replies, as much as "
                             "the master holds; this request was not run: send it again shortly",
                             conns_reply_bytes(self->conns) >> 20);
}

static void s_send_body(api_t *self, const zmqx_frames_t *envelope, char *body, size_t len,
                        proto_req_type_t type);

/* Encodes and sends a reply; while hold_into is set, encodes it into that
   held reply instead (api_waiters). */
static void s_send_reply(api_t *self, const zmqx_frames_t *envelope, const proto_reply_t *rep,
                         proto_req_type_t type)
{
    const char *outcome = rep->ok ? "ok" : rep->error.code;
    char *body = proto_reply_encode(rep, type);
    size_t len = strlen(body);
    proto_reply_t *err = NULL;
    if (len > API_MAX_REPLY) {
        err = proto_reply_error(
            PROTO_E_TOO_BIG,
            "the reply to this %s request would be %zu MiB, over the %d MiB a client accepts; "
            "ask for less (results: --limit; a task's output: ztask logs)",
            proto_req_type_name(type), len >> 20, PROTO_MAX_API_MSG >> 20);
        int64_t held;
        if (log_limit(&self->lim_request, clock_mono_ms(), &held))
            log_warn("event=reply_too_big type=%s suppressed=%" PRId64, proto_req_type_name(type),
                     held);
    } else if (self->small_only && len > CONNS_SMALL_REPLY && s_read_only(type)) {
        err = s_busy_error(self, type);
    }
    if (err) {
        free(body);
        body = proto_reply_encode(err, type);
        len = strlen(body);
        outcome = err->error.code;
    }
    if (self->hold_into) {
        self->hold_into->body = body;
        self->hold_into->len = len;
        snprintf(self->hold_into->outcome, sizeof self->hold_into->outcome, "%s", outcome);
        proto_reply_destroy(&err);
        return;
    }
    metrics_api_request(self->cfg.metrics,
                        self->cur_type ? self->cur_type : proto_req_type_name(type), outcome);
    proto_reply_destroy(&err);
    s_send_body(self, envelope, body, len, type);
}

/* Sends an encoded reply (body is taken): now, or after this client's
   earlier replies; never dropped while the client is connected
   (conns.h). */
static void s_send_body(api_t *self, const zmqx_frames_t *envelope, char *body, size_t len,
                        proto_req_type_t type)
{
    (void) type;
    conns_send(self->conns, envelope, &body, len);
}

static void s_reply_error(api_t *self, const zmqx_frames_t *env, const char *code,
                          const char *msg)
{
    proto_reply_t *rep = proto_reply_error(code, "%s", msg);
    s_send_reply(self, env, rep, PROTO_REQ_STATUS);
    proto_reply_destroy(&rep);
}

/* A query while the store cannot be written (journal_failing). */
static void s_reply_unwritable(api_t *self, const zmqx_frames_t *env)
{
    const char *why = journal_failing(self->cfg.journal);
    proto_reply_t *rep = proto_reply_error(
        PROTO_E_STORAGE,
        "the master cannot write its database (%s): it answers again once space returns "
        "(free some; it retries every 0.5 s); what it has in memory is kept",
        why ? why : "commit failed");
    s_send_reply(self, env, rep, PROTO_REQ_STATUS);
    proto_reply_destroy(&rep);
}

/* Who may act on a job (docs/security.md, "The multi-user model"): its
   owner; an admin; anyone, for a job that has no owner (made without
   CURVE, or before jobs had owners). */
static bool s_may_act(const auth_peer_t *peer, const job_t *job)
{
    return (peer->roles & AUTH_ADMIN) || !job->owner[0] || strcmp(job->owner, peer->owner) == 0;
}

/* The jobs a peer calls its own: what `ztask jobs` lists without --all,
   and the only ones it may add tasks to (an admin included). */
static bool s_mine(const auth_peer_t *peer, const job_t *job)
{
    return !job->owner[0] || strcmp(job->owner, peer->owner) == 0;
}

/* Logs (rate-limited) a request turned away from a job it may not touch;
   the peer itself is told only "no job N", as for a job that does not
   exist, so that job ids cannot be probed. */
static void s_log_not_owner(api_t *self, const auth_peer_t *peer, const job_t *job,
                            const char *what)
{
    int64_t held;
    if (log_limit(&self->lim_request, clock_mono_ms(), &held))
        log_warn("event=request_refused reason=not_owner job=%" PRId64 " key=%s request=%s "
                 "suppressed=%" PRId64,
                 job->id, LOG_V(peer->owner), what, held);
}

/* The job of that id if allowed(peer, job); else NULL after answering
   "no job N" (what: the request, for the log). */
static job_t *s_allowed_job(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                            int64_t id, bool (*allowed)(const auth_peer_t *, const job_t *),
                            const char *what)
{
    job_t *job = jobs_get(self->cfg.jobs, id);
    if (job && !allowed(peer, job)) {
        s_log_not_owner(self, peer, job, what);
        job = NULL;
    }
    if (!job) {
        char msg[80];
        snprintf(msg, sizeof msg, "no job %" PRId64 " (see: ztask jobs)", id);
        s_reply_error(self, env, PROTO_E_NOT_FOUND, msg);
    }
    return job;
}

/* The job a request names, if this peer may act on it; else NULL after
   answering "no job N". */
static job_t *s_job_or_reply(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                             int64_t id)
{
    return s_allowed_job(self, env, peer, id, s_may_act, "job");
}

static void s_job_record(const api_t *self, const job_t *job, proto_job_t *out)
{
    memset(out, 0, sizeof *out);
    out->id = job->id;
    out->name = xstrdup(job->name);
    out->closed = job->closed;
    out->total = job->total;
    out->queued = job->queued;
    out->running = job->running;
    out->done = job->done;
    out->failed = job->failed;
    out->cancelled = job->cancelled_n;
    out->dep_failed = job->dep_failed;
    out->waiting = deps_waiting(self->cfg.deps, job->id);
    out->created = job->created;
    out->finished = job->finished;
    out->owner = job->owner[0] ? xstrdup(job->owner) : NULL;
    out->owner_name = xstrdup(auth_key_name(self->cfg.auth, job->owner));
    out->held = job->held;
    out->max_running = job->max_running;
}

/* ---- submit ---- */

static void s_submit_answer(api_t *self, const zmqx_frames_t *env, int64_t job,
                            int64_t accepted, int wait_ms, int64_t now,
                            const char *const *no_worker, int nno_worker);

static char *s_labels_key(const proto_spec_t *spec);

/* The scheduler class key of a spec: what it needs of a worker, in a
   canonical form ("exec", "fn=square", "exec:gpu,ssd" with labels sorted),
   then ";cpus=2,gpus=0.5" for the resources it asks (res_format's text),
   then "~SECONDS" for a --time-request (sched.h). */
static char *s_needs_key(const proto_spec_t *spec)
{
    char *key = s_labels_key(spec);
    if (spec->resources) {
        char res[RES_MAX * (RES_NAME_MAX + 24)];
        res_format(spec->resources, res, sizeof res);
        char *full = xasprintf("%s;%s", key, res);
        free(key);
        key = full;
    }
    if (spec->time_request > 0) {
        char *timed = xasprintf("%s~%.17g", key, spec->time_request);
        free(key);
        key = timed;
    }
    return key;
}

/* The kind and labels part of a class key. */
static char *s_labels_key(const proto_spec_t *spec)
{
    char *fn = spec->kind == PROTO_KIND_FN ? pct_encode(spec->fn, ":~") : NULL;
    char *kind = fn ? xasprintf("fn=%s", fn) : xstrdup("exec");
    free(fn);
    if (spec->nrequire == 0)
        return kind;
    char **labels = xcalloc((size_t) spec->nrequire, sizeof(char *));
    size_t len = strlen(kind) + 2;
    for (int i = 0; i < spec->nrequire; i++) {
        labels[i] = spec->require[i];
        len += strlen(labels[i]) + 1;
    }
    qsort(labels, (size_t) spec->nrequire, sizeof(char *), strp_cmp);
    char *key = xmalloc(len);
    char *p = key + sprintf(key, "%s:", kind);
    for (int i = 0; i < spec->nrequire; i++) {
        if (i && strcmp(labels[i], labels[i - 1]) == 0)
            continue;
        p += sprintf(p, "%s%s", p[-1] == ':' ? "" : ",", labels[i]);
    }
    free(labels);
    free(kind);
    return key;
}

/* The open job a submit adds to, if this peer may add to it (its owner's
   only, admins included: a job's tasks are its owner's); else NULL after
   answering. */
static job_t *s_job_to_extend(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                              int64_t id)
{
    job_t *job = s_allowed_job(self, env, peer, id, s_mine, "submit");
    if (job && (job->closed || job->closing || job->cancelled)) {
        char msg[160];
        snprintf(msg, sizeof msg, "job %" PRId64 " is %s: no more tasks can be added", job->id,
                 job->cancelled ? "cancelled" : "complete");
        s_reply_error(self, env, PROTO_E_STATE, msg);
        job = NULL;
    }
    return job;
}

/* Whether a batch of p->ntasks tasks and p->bytes bytes fits in the
   owner's quota (--quota-tasks, --quota-bytes) beside what it has queued
   or running and what waits for a commit; else false after answering
   (code "quota"; nothing of the batch is taken). */
static bool s_quota_allows(api_t *self, const zmqx_frames_t *env, const owner_usage_t *u,
                           const pending_submit_t *p)
{
    usage_over_t o = usage_over(u, p->ntasks, p->bytes, self->cfg.quota_tasks,
                                self->cfg.quota_bytes);
    const char *what = o.what;
    int64_t have = o.have, add = o.add, limit = o.limit;
    if (!what)
        return true;
    int64_t held;
    if (log_limit(&self->lim_request, clock_mono_ms(), &held))
        log_warn("event=quota_refused key=%s %s=%" PRId64 " batch=%" PRId64 " limit=%" PRId64
                 " suppressed=%" PRId64,
                 u->owner[0] ? LOG_V(u->owner) : "none", what, have, add, limit, held);
    proto_reply_t *rep = proto_reply_error(
        PROTO_E_QUOTA,
        "over quota: %" PRId64 " %s queued or running + %" PRId64 " in this batch > %" PRId64
        " (--quota-%s); nothing of this batch was accepted: wait for tasks to finish, or "
        "cancel some",
        have, strcmp(what, "tasks") == 0 ? "tasks" : "bytes of specs", add, limit, what);
    s_send_reply(self, env, rep, PROTO_REQ_SUBMIT);
    proto_reply_destroy(&rep);
    return false;
}

/* Whether every job a new job depends on exists and this peer may act on
   it (a job it may not see is "no job N", as everywhere); then they go
   with the submit (p). Else false after answering. */
static bool s_deps_allowed(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                           const proto_req_t *req, pending_submit_t *p)
{
    for (int i = 0; i < req->ndeps; i++) {
        const job_t *parent = jobs_get(self->cfg.jobs, req->deps[i].job);
        if (parent && !s_may_act(peer, parent)) {
            s_log_not_owner(self, peer, parent, "submit --after");
            parent = NULL;
        }
        if (!parent) {
            proto_reply_t *rep = proto_reply_error(
                PROTO_E_NOT_FOUND,
                "no job %" PRId64 " to depend on (--after%s); nothing was submitted (see: ztask "
                "jobs)",
                req->deps[i].job,
                req->deps[i].kind == PROTO_DEP_ANY    ? "-any"
                : req->deps[i].kind == PROTO_DEP_EACH ? "-each"
                                                      : "");
            s_send_reply(self, env, rep, PROTO_REQ_SUBMIT);
            proto_reply_destroy(&rep);
            return false;
        }
    }
    if (req->ndeps) {
        p->deps = xmalloc((size_t) req->ndeps * sizeof *p->deps);
        memcpy(p->deps, req->deps, (size_t) req->ndeps * sizeof *p->deps);
        p->ndeps = req->ndeps;
    }
    return true;
}

/* A keyed submit whose key is known: a copy of a request taken in
   before. Answered as that one (its job, its count) and nothing is added;
   while its commit is pending, an echo is queued behind it and answered
   once it is done. A key seen with another job is refused. */
static void s_submit_again(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                           const proto_req_t *req, const idem_entry_t *e)
{
    if (req->job != 0 && req->job != e->job) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "key %s was used for job %" PRId64 ", not job %" PRId64
                 "; give each request its own key",
                 req->key, e->job, req->job);
        s_reply_error(self, env, PROTO_E_STATE, msg);
        return;
    }
    log_info("event=submit_repeated key=%s job=%" PRId64 " accepted=%" PRId64 " committed=%d",
             req->key, e->job, e->accepted, e->committed);
    if (e->committed) {
        s_submit_answer(self, env, e->job, e->accepted, req->wait_ms, clock_mono_ms(), NULL, 0);
        return;
    }
    pending_submit_t *p = xcalloc(1, sizeof *p);
    p->echo = true;
    p->owner = xstrdup(peer->owner);
    p->key = xstrdup(req->key);
    p->job_id = e->job;
    p->wait_ms = req->wait_ms;
    zmqx_frames_copy(&p->envelope, env);
    journal_submit(self->cfg.journal, &p);
}

/* Remembers a keyed submit's key until its commit is done; now and then
   forgets the expired ones, in memory and (journalled) in the store. */
static void s_key_taken(api_t *self, pending_submit_t *p, const char *key)
{
    int64_t now = clock_mono_ms();
    p->key = xstrdup(key);
    p->key_created = clock_wall();
    if (self->keys_pruned_ms == 0 || now - self->keys_pruned_ms >= IDEM_PRUNE_EVERY_MS) {
        self->keys_pruned_ms = now;
        double cutoff = p->key_created - IDEM_TTL_S;
        idem_prune(self->cfg.idem, cutoff);
        journal_add(self->cfg.journal, &(jop_t){.type = J_KEYS_PRUNE, .t = cutoff});
    }
    idem_put(self->cfg.idem, p->owner, key,
             &(idem_entry_t){.job = p->job_id, .accepted = p->ntasks, .committed = false},
             p->key_created);
    double cut = idem_trim(self->cfg.idem, IDEM_MAX_KEYS);
    if (cut > 0)
        journal_add(self->cfg.journal,
                    &(jop_t){.type = J_KEYS_PRUNE, .t = nextafter(cut, INFINITY)});
}

/* Whether the batch's tasks fit the classes the master keeps
   (SCHED_MAX_CLASSES): each distinct kind is kept while it runs and looked
   at on every dispatch, so a client must not make them without end (nor
   wrap a task's 16-bit class index). Checked before any is made: a
   refused batch takes no room. Replies the error itself. */
static bool s_classes_allowed(api_t *self, const zmqx_frames_t *env, const proto_req_t *req)
{
    char **fresh = xcalloc((size_t) req->ntasks + 1, sizeof(char *));
    int nfresh = 0;
    for (int i = 0; i < req->ntasks; i++) {
        char *needs = s_needs_key(req->tasks[i]);
        if (sched_class_find(self->cfg.sched, needs) >= 0)
            free(needs);
        else
            fresh[nfresh++] = needs;
    }
    qsort(fresh, (size_t) nfresh, sizeof(char *), strp_cmp);
    int distinct = 0;
    for (int i = 0; i < nfresh; i++)
        distinct += i == 0 || strcmp(fresh[i], fresh[i - 1]) != 0;
    for (int i = 0; i < nfresh; i++)
        free(fresh[i]);
    free(fresh);
    int have = sched_nclasses(self->cfg.sched);
    if (have + distinct <= SCHED_MAX_CLASSES)
        return true;
    proto_reply_t *rep = proto_reply_error(
        PROTO_E_TOO_BIG,
        "this batch asks %d kinds of task (function, labels, resources, time request) the "
        "master has not seen; it keeps %d already, and at most %d until it restarts: nothing "
        "of this batch was accepted; ask fewer distinct combinations (e.g. round "
        "--time-request and --mem)",
        distinct, have, SCHED_MAX_CLASSES);
    s_send_reply(self, env, rep, PROTO_REQ_SUBMIT);
    proto_reply_destroy(&rep);
    return false;
}

static void s_submit(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                     proto_req_t *req)
{
    /* Before anything else: a copy of a submit that closed its job must
       not be told the job is complete. */
    const idem_entry_t *seen = req->key ? idem_get(self->cfg.idem, peer->owner, req->key) : NULL;
    if (seen) {
        s_submit_again(self, env, peer, req, seen);
        return;
    }
    /* A disk that refused the last commit takes no new work: the batch
       could only fail (or squeeze in and starve the journal of room). */
    const char *full = journal_full(self->cfg.journal);
    if (full) {
        proto_reply_t *rep = proto_reply_error(
            PROTO_E_STORAGE,
            "the master cannot write its database (%s): it takes no new work until space "
            "returns (free some, it retries every 0.5 s); nothing of this batch was accepted",
            full);
        s_send_reply(self, env, rep, PROTO_REQ_SUBMIT);
        proto_reply_destroy(&rep);
        return;
    }
    /* Everything the writer needs to store the rows travels with the
       submit; the tasks enter the queue when that commit is done. */
    job_t *job = NULL;
    if (req->job != 0 && !(job = s_job_to_extend(self, env, peer, req->job)))
        return;
    if (!s_classes_allowed(self, env, req))
        return;
    pending_submit_t *p = xcalloc(1, sizeof *p);
    p->owner = xstrdup(peer->owner);
    p->close = !req->more;
    p->wait_ms = req->wait_ms;
    p->tasks = xcalloc((size_t) req->ntasks + 1, sizeof(pending_task_t));
    for (int i = 0; i < req->ntasks; i++) {
        const proto_spec_t *spec = req->tasks[i];
        char *needs = s_needs_key(spec);
        int cls = sched_class(self->cfg.sched, needs);
        if (strcmp(needs, "fn") == 0) {
            free(needs);
            needs = NULL;
        }
        p->tasks[i] = (pending_task_t){
            .priority = spec->priority,
            .retries = spec->retries,
            .cls = cls,
            .name = spec->name ? xstrdup(spec->name) : NULL,
            .spec = proto_spec_encode(spec),
            .needs = needs,
        };
        size_t len = strlen(p->tasks[i].spec);
        p->bytes += (int64_t) len;
        p->ntasks++;
        if (len > (size_t) PROTO_MAX_TASK_SPEC) {
            /* No worker could ever receive it: its pipe refuses messages
               over PROTO_MAX_PIPE_MSG. */
            proto_reply_t *rep = proto_reply_error(
                PROTO_E_TOO_BIG,
                "task %d of this batch is %zu bytes as JSON (stdin and env included, "
                "escaped), over %d, the most a worker accepts: nothing of this batch was "
                "accepted; give big inputs as files the workers can read",
                i, len, PROTO_MAX_TASK_SPEC);
            s_send_reply(self, env, rep, PROTO_REQ_SUBMIT);
            proto_reply_destroy(&rep);
            pending_submit_free(&p);
            return;
        }
    }
    owner_usage_t *u = jobs_usage(self->cfg.jobs, peer->owner);
    if (!s_deps_allowed(self, env, peer, req, p) || !s_quota_allows(self, env, u, p)) {
        pending_submit_free(&p);
        return;
    }
    int64_t indexed = 0;
    if (!job) {
        /* The job is made when its first batch is committed: nobody can
           name it before its id is acknowledged. */
        p->new_job = true;
        p->job_id = ++self->last_job_id;
        p->job_name = xstrdup(req->name);
        p->job_created = clock_wall();
        p->job_max_running = req->max_running;
        p->job_definition = req->definition;   /* taken */
        req->definition = NULL;
    } else {
        p->job_id = job->id;
        /* Default indexes continue from every batch taken so far, committed
           or not: two batches of one job at once get distinct ones (a
           refused batch leaves a gap). */
        if (job->indexed < job->total)
            job->indexed = job->total;   /* a job loaded from the store */
        indexed = job->indexed;
        job->indexed += req->ntasks;
        if (p->close)
            job->closing = true;
    }
    for (int i = 0; i < p->ntasks; i++) {
        p->tasks[i].id = ++self->last_task_id;
        p->tasks[i].index = req->tasks[i]->index >= 0 ? req->tasks[i]->index : indexed + i;
    }
    if (req->key)
        s_key_taken(self, p, req->key);
    /* Counted against the quota until its commit is done either way. */
    usage_pending(u, p->ntasks, p->bytes);
    /* The envelope is kept to answer after the commit. */
    zmqx_frames_copy(&p->envelope, env);
    journal_submit(self->cfg.journal, &p);
}

/* A new job's dependencies, now that it exists. A task-by-task one
   (after_each) reads how the parent's tasks ended from the store: every
   ended task must be written first, hence the flush (once per such job). */
static void s_deps_record(api_t *self, const job_t *job, const pending_submit_t *p)
{
    bool each = false;
    for (int i = 0; i < p->ndeps; i++)
        each |= p->deps[i].kind == PROTO_DEP_EACH;
    if (each && journal_flush(self->cfg.journal) != 0)
        log_warn("event=deps_flush_failed job=%" PRId64 " note=\"tasks ended since the last "
                 "commit count when their results are written\"",
                 job->id);
    store_t *store = journal_store(self->cfg.journal);
    if (deps_add(self->cfg.deps, job->id, p->deps, p->ndeps, store) != 0)
        log_error("event=deps_read_failed job=%" PRId64 " error=\"%s\"", job->id,
                  store_error(store));
    for (int i = 0; i < p->ndeps; i++)
        log_info("event=job_depends job=%" PRId64 " parent=%" PRId64 " kind=%s", job->id,
                 p->deps[i].job, proto_dep_kind_name(p->deps[i].kind));
}

/* The commit of this submit succeeded: its tasks enter the queue and the
   client gets its ack. */
static void s_submit_committed(api_t *self, pending_submit_t *p)
{
    if (p->echo) {
        /* Queued behind the copy it repeats, whose commit is done: answered
           as that one, or refused when that one was. */
        const idem_entry_t *e = idem_get(self->cfg.idem, p->owner, p->key);
        if (e && e->committed)
            s_submit_answer(self, &p->envelope, e->job, e->accepted, p->wait_ms,
                            clock_mono_ms(), NULL, 0);
        else
            s_reply_error(self, &p->envelope, PROTO_E_STORAGE,
                          "the master could not store the first copy of this request; "
                          "nothing of it was accepted: send it again");
        return;
    }
    if (p->key) {
        idem_entry_t *e = idem_get(self->cfg.idem, p->owner, p->key);
        assert(e && !e->committed);
        e->committed = true;
    }
    if (self->kill_before_ack > 0 && --self->kill_before_ack == 0) {
        log_warn("event=test_kill_before_ack job=%" PRId64 " note=\"ZTASK_TEST_KILL_BEFORE_ACK\"",
                 p->job_id);
        raise(SIGKILL);
    }
    usage_pending(jobs_usage(self->cfg.jobs, p->owner), -p->ntasks, -p->bytes);
    job_t *job = p->new_job ? jobs_create(self->cfg.jobs, &(store_job_new_t){.id = p->job_id,
                                                                              .name = p->job_name,
                                                                              .owner = p->owner,
                                                                              .created =
                                                                                  p->job_created,
                                                                              .max_running =
                                                                                  p->job_max_running})
                            : jobs_get(self->cfg.jobs, p->job_id);
    if (!job)
        return;
    if (p->new_job && p->ndeps)
        s_deps_record(self, job, p);
    tasks_enter(self->cfg.tasks, job, p);
    if (p->close)
        job->closed = true;
    log_debug("event=submitted job=%" PRId64 " tasks=%d total=%" PRId64, job->id, p->ntasks,
              job->total);
    /* Checked first: a job with nothing left to run is finished now, and a
       submit that waits for that is due at once. */
    tasks_check_finished(self->cfg.tasks, job);
    /* Needs of this batch no live worker meets: the client warns at once
       (the tasks wait; one may register). */
    const char *no_worker[16];
    int nno = 0;
    for (int i = 0; i < p->ntasks && nno < 16; i++) {
        int cls = p->tasks[i].cls;
        const char *key = sched_class_get(self->cfg.sched, cls)->key;
        bool listed = false;
        for (int k = 0; k < nno && !listed; k++)
            listed = no_worker[k] == key;
        if (!listed && !tasks_class_served(self->cfg.tasks, cls))
            no_worker[nno++] = key;
    }
    s_submit_answer(self, &p->envelope, job->id, p->ntasks, p->wait_ms, clock_mono_ms(),
                    no_worker, nno);
}

/* The commit of this submit failed (or will never come): refuse it. */
static void s_submit_refused(api_t *self, const pending_submit_t *p)
{
    /* Not stored: a copy sent again is a new request. */
    if (p->key && !p->echo)
        idem_remove(self->cfg.idem, p->owner, p->key);
    usage_pending(jobs_usage(self->cfg.jobs, p->owner), -p->ntasks, -p->bytes);
    /* A refused batch that would have closed its job does not: the client
       may send it again. */
    job_t *job = p->close ? jobs_get(self->cfg.jobs, p->job_id) : NULL;
    if (job)
        job->closing = false;
    proto_reply_t *rep = proto_reply_error(
        PROTO_E_STORAGE, "the master could not store the tasks (%s); nothing of this batch was accepted",
        p->refused);
    s_send_reply(self, &p->envelope, rep, PROTO_REQ_SUBMIT);
    proto_reply_destroy(&rep);
}

void api_acks(api_t *self)
{
    pending_submit_t *p;
    while ((p = journal_take_done(self->cfg.journal))) {
        if (p->refused)
            s_submit_refused(self, p);
        else
            s_submit_committed(self, p);
        pending_submit_free(&p);
    }
    s_held_send(self);
}

int api_flush(api_t *self)
{
    int rc = journal_flush(self->cfg.journal);
    api_acks(self);
    return rc;
}

/* ---- queries ---- */

typedef struct {
    api_t *self;
    proto_task_info_t *v;
    int n;
    size_t bytes;       /* of the records so far (their stored JSON) */
    bool full;          /* stopped at PROTO_REPLY_PAGE_BYTES */
    int64_t last;       /* id of the last record taken */
} rows_t;

/* The largest prefix of text (a UTF-8 string) of at most max bytes that
   ends on a character boundary. */
static size_t s_utf8_prefix(const char *text, size_t max)
{
    size_t n = strlen(text);
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char) text[max] & 0xc0) == 0x80)
        max--;
    return max;
}

/* A result whose stored JSON (bytes) is more than a reply may hold:
   its outputs are cut in proportion to fit, and marked truncated (the
   whole output stays readable with `ztask logs`, which pages it). */
static void s_fit_outputs(proto_result_t *res, size_t bytes)
{
    double keep = 0.9 * (double) API_MAX_REPLY / (double) bytes;
    char **out[2] = {&res->stdout_data, &res->stderr_data};
    bool *cut[2] = {&res->stdout_truncated, &res->stderr_truncated};
    for (int i = 0; i < 2; i++) {
        size_t len = *out[i] ? strlen(*out[i]) : 0;
        size_t max = (size_t) ((double) len * keep);
        if (len > max) {
            (*out[i])[s_utf8_prefix(*out[i], max)] = '\0';
            *cut[i] = true;
        }
    }
}

static int s_task_row(const store_task_row_t *row, void *arg)
{
    rows_t *rows = arg;
    /* Paged by bytes too: a page ends before the record that would take
       it over PROTO_REPLY_PAGE_BYTES (the first record always goes in;
       the next page starts after the last one taken). */
    size_t bytes = row->outcome_json ? strlen(row->outcome_json) : 0;
    if (rows->n > 0 && rows->bytes + bytes > PROTO_REPLY_PAGE_BYTES) {
        rows->full = true;
        return 1;
    }
    rows->bytes += bytes;
    rows->last = row->id;
    proto_task_info_t *info = &rows->v[rows->n++];
    memset(info, 0, sizeof *info);
    info->task = row->id;
    info->job = row->job;
    info->index = row->index;
    info->name = row->name && *row->name ? xstrdup(row->name) : NULL;
    info->status = row->state;
    info->attempts = row->attempt;
    info->worker = xstrdup(row->worker);
    sched_task_t *t = sched_get(rows->self->cfg.sched, row->id);
    if (t) {
        info->status = t->state;   /* memory knows ASSIGNED from RUNNING */
        info->held = (t->parked & SCHED_PARK_HELD) != 0;
    }
    if (row->outcome_json) {
        proto_err_t err;
        info->result = proto_result_decode(row->outcome_json, strlen(row->outcome_json), &err);
        if (info->result && bytes > API_MAX_REPLY)
            s_fit_outputs(info->result, bytes);
        if (!info->result)
            {
            char q[256];
            log_warn("event=bad_outcome task=%" PRId64 " error=\"%s\"", row->id,
                     log_quote(q, sizeof q, err.message));
        }
    }
    /* On a worker: the attempt running now, where, since when (the store
       learns the assignment a second late, the start with the result). */
    if (t && t->worker_name && (t->state == PROTO_ST_ASSIGNED || t->state == PROTO_ST_RUNNING)) {
        free(info->worker);
        info->worker = xstrdup(t->worker_name);
        info->attempts = t->attempt;
        info->started = t->started;
        proto_result_destroy(&info->result);   /* the failed attempt before this one */
    }
    return 0;
}

static void s_results(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                      const proto_req_t *req)
{
    if (!s_job_or_reply(self, env, peer, req->job))
        return;
    int limit = req->limit > 0 ? req->limit : 1000;
    rows_t rows = {.self = self, .v = xcalloc((size_t) limit, sizeof(proto_task_info_t)),
                   .last = -1};
    proto_reply_t *rep;
    store_t *store = journal_store(self->cfg.journal);
    if (store_results_each(store, req->job, req->after, limit, req->failed_only, s_task_row, &rows,
                           NULL) != 0) {
        rep = proto_reply_error(PROTO_E_STORAGE, "cannot read results: %s", store_error(store));
        for (int i = 0; i < rows.n; i++)
            proto_task_info_clear(&rows.v[i]);
        free(rows.v);
    } else {
        rep = proto_reply_new(true);
        rep->tasks = rows.v;
        rep->ntasks = rows.n;
        rep->next_after = rows.full || rows.n == limit ? rows.last : -1;
    }
    s_send_reply(self, env, rep, PROTO_REQ_RESULTS);
    proto_reply_destroy(&rep);
}

typedef struct {
    char *outcome;
    proto_state_t state;
    int64_t job;
    bool seen;
} one_row_t;

static int s_one_row(const store_task_row_t *row, void *arg)
{
    one_row_t *o = arg;
    o->outcome = xstrdup(row->outcome_json);
    o->state = row->state;
    o->job = row->job;
    o->seen = true;
    return 0;
}

/* Resolves a request's task: a global id, or job + index. 0 = none. */
static int64_t s_task_id(api_t *self, const proto_req_t *req)
{
    if (req->task > 0)
        return req->task;
    int64_t id = 0;
    bool found = false;
    if (req->job > 0 && req->index >= 0
        && store_task_find(journal_store(self->cfg.journal), req->job, req->index, &id, &found) == 0
        && found)
        return id;
    return 0;
}

/* One logs chunk of a stream: data[offset..len) up to a quarter page,
   cut on a UTF-8 boundary; *next gets the offset after it (the client
   asks again from there: `ztask logs` reads until nothing is new). */
static char *s_slice(const char *data, size_t len, int64_t offset, int64_t *next)
{
    *next = (int64_t) len > offset ? (int64_t) len : offset;
    if (!data || offset < 0 || (size_t) offset >= len)
        return xstrdup("");
    size_t n = len - (size_t) offset, max = PROTO_REPLY_PAGE_BYTES / 4;
    if (n > max) {
        n = max;
        for (int back = 0; back < 3 && ((unsigned char) data[offset + (int64_t) n] & 0xc0) == 0x80;
             back++)
            n--;
        *next = offset + (int64_t) n;
    }
    return xstrndup(data + offset, n);
}

/* Whether peer may act on the task of that id (through its job); when
   not (or there is no such task), false after answering "no such task".
   o (may be NULL) gets the task's stored row. */
static bool s_task_or_reply(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                            int64_t id, one_row_t *o)
{
    one_row_t mine = {0};
    if (!o)
        o = &mine;
    bool found = false;
    if (id > 0 && store_task_get(journal_store(self->cfg.journal), id, s_one_row, o, &found) != 0)
        found = false;
    const job_t *job = found ? jobs_get(self->cfg.jobs, o->job) : NULL;
    if (job && !s_may_act(peer, job)) {
        s_log_not_owner(self, peer, job, "task");
        job = NULL;
    }
    free(mine.outcome);
    if (!job)
        s_reply_error(self, env, PROTO_E_NOT_FOUND, "no such task");
    return job != NULL;
}

static void s_logs(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                   const proto_req_t *req)
{
    int64_t id = s_task_id(self, req);
    one_row_t o = {0};
    if (!s_task_or_reply(self, env, peer, id, &o)) {
        free(o.outcome);
        return;
    }
    proto_reply_t *rep = proto_reply_new(true);
    sched_task_t *t = sched_get(self->cfg.sched, id);
    if (t) {
        rep->task_state = t->state;
        const sched_output_t *o = t->output;
        size_t ol = o ? o->len[0] : 0, el = o ? o->len[1] : 0;
        rep->out_chunk = s_slice(o ? o->data[0] : NULL, ol, req->out_offset, &rep->out_offset);
        rep->err_chunk = s_slice(o ? o->data[1] : NULL, el, req->err_offset, &rep->err_offset);
    } else {
        rep->task_state = o.state;
        proto_err_t err;
        proto_result_t *res = o.outcome ? proto_result_decode(o.outcome, strlen(o.outcome), &err) : NULL;
        size_t ol = res && res->stdout_data ? strlen(res->stdout_data) : 0;
        size_t el = res && res->stderr_data ? strlen(res->stderr_data) : 0;
        rep->out_chunk = s_slice(res ? res->stdout_data : NULL, ol, req->out_offset,
                                 &rep->out_offset);
        rep->err_chunk = s_slice(res ? res->stderr_data : NULL, el, req->err_offset,
                                 &rep->err_offset);
        rep->task_error = res && res->error ? xstrdup(res->error) : NULL;
        proto_result_destroy(&res);
    }
    free(o.outcome);
    s_send_reply(self, env, rep, PROTO_REQ_LOGS);
    proto_reply_destroy(&rep);
}

/* ---- cancel, hold, release, priority, limit ---- */

/* A change a client is told of is written first, as a submit's batch is:
   a master killed right after the answer must not lose it (a held job
   running after a restart). False after answering with the disk's error:
   the change stays in memory and is written with the next commit. */
static bool s_written(api_t *self, const zmqx_frames_t *env)
{
    if (api_flush(self) == 0)
        return true;
    s_reply_error(self, env, PROTO_E_STORAGE,
                  "the master could not write this change to its database (see its log: a full "
                  "disk?); it is applied but would be lost if the master stopped now: ask again");
    return false;
}

static void s_count_reply(api_t *self, const zmqx_frames_t *env, int64_t count,
                          proto_req_type_t type)
{
    if (!s_written(self, env))
        return;
    proto_reply_t *rep = proto_reply_new(true);
    rep->count = count;
    s_send_reply(self, env, rep, type);
    proto_reply_destroy(&rep);
}

/* What cancel, hold and release act on: one task (JOB.INDEX or a task id:
   *job NULL, *t NULL when it has finished) or a job (*t NULL). False
   after answering when there is none the peer may act on. */
static bool s_target(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                     const proto_req_t *req, sched_task_t **t, job_t **job)
{
    *t = NULL;
    *job = NULL;
    if (req->task > 0 || req->index >= 0) {
        int64_t id = s_task_id(self, req);
        if (!s_task_or_reply(self, env, peer, id, NULL))
            return false;
        *t = sched_get(self->cfg.sched, id);
        return true;
    }
    *job = s_job_or_reply(self, env, peer, req->job);
    return *job != NULL;
}

static int64_t s_cancel_job(api_t *self, job_t *job)
{
    jobs_cancel(self->cfg.jobs, job);
    return tasks_cancel_job(self->cfg.tasks, job);
}

/* Cancels job and every unfinished job that depends on it, directly or
   not, that this peer may act on. All are marked cancelled before any
   task is: a dependant whose parent ends (cancelled) then finds itself
   cancelled, not dep_failed. */
static int64_t s_cancel_with_dependants(api_t *self, const auth_peer_t *peer, job_t *job)
{
    size_t n = 0, cap = 16;
    job_t **all = xmalloc(cap * sizeof *all);
    all[n++] = job;
    jobs_cancel(self->cfg.jobs, job);
    for (size_t i = 0; i < n; i++) {
        int nc;
        const int64_t *kids = deps_children(self->cfg.deps, all[i]->id, &nc);
        for (int k = 0; k < nc; k++) {
            job_t *c = jobs_get(self->cfg.jobs, kids[k]);
            /* Each job once (a diamond reaches one twice): cancelled marks it. */
            if (!c || c->cancelled || c->finished > 0 || !s_may_act(peer, c))
                continue;
            jobs_cancel(self->cfg.jobs, c);
            if (n == cap)
                all = xrealloc(all, (cap *= 2) * sizeof *all);
            all[n++] = c;
        }
    }
    int64_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            log_info("event=dependant_cancelled job=%" PRId64 " parent=%" PRId64, all[i]->id,
                     job->id);
        count += tasks_cancel_job(self->cfg.tasks, all[i]);
    }
    free(all);
    return count;
}

static void s_cancel(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                     const proto_req_t *req)
{
    sched_task_t *t;
    job_t *job;
    if (!s_target(self, env, peer, req, &t, &job))
        return;
    int64_t count = 0;
    if (job) {
        count = req->with_dependants ? s_cancel_with_dependants(self, peer, job)
                                     : s_cancel_job(self, job);
    } else if (t) {
        tasks_cancel(self->cfg.tasks, t);
        count = 1;
    }
    s_count_reply(self, env, count, PROTO_REQ_CANCEL);
}

/* hold/release a job, or one task of it (JOB.INDEX or a task id). */
static void s_hold(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                   const proto_req_t *req)
{
    bool hold = req->type == PROTO_REQ_HOLD;
    sched_task_t *t;
    job_t *job;
    if (!s_target(self, env, peer, req, &t, &job))
        return;
    int64_t count = job ? tasks_hold_job(self->cfg.tasks, job, hold)
                    : t ? tasks_hold(self->cfg.tasks, t, hold)
                        : 0;
    s_count_reply(self, env, count, req->type);
}

static void s_priority(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                       const proto_req_t *req)
{
    job_t *job = s_job_or_reply(self, env, peer, req->job);
    if (job)
        s_count_reply(self, env, tasks_set_priority(self->cfg.tasks, job, req->priority),
                      req->type);
}

static void s_limit(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                    const proto_req_t *req)
{
    job_t *job = s_job_or_reply(self, env, peer, req->job);
    if (!job)
        return;
    tasks_set_limit(self->cfg.tasks, job, req->max_running);
    s_count_reply(self, env, job->running, req->type);
}

/* ---- tasks: what runs where ---- */

static int s_cmp_started(const void *a, const void *b)
{
    const proto_task_info_t *x = a, *y = b;
    return x->started < y->started ? -1 : x->started > y->started;
}

/* What the tasks views (running and waiting) may list for this peer:
   one job it may see, or with "all" (an admin only) everyone's. False
   after answering when neither. */
static bool s_tasks_scope(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                          const proto_req_t *req)
{
    if (req->job > 0 && !s_job_or_reply(self, env, peer, req->job))
        return false;
    if (req->all && !(peer->roles & AUTH_ADMIN)) {
        s_reply_error(self, env, PROTO_E_AUTH,
                      "only an admin key sees every client's tasks (the master's --admins "
                      "list); without --all: your own");
        return false;
    }
    return true;
}

/* The tasks on workers now (sent or started; orphans waiting for their
   worker too), of one job or of every job the peer sees (its own; with
   "all", an admin: everyone's), on one worker or all, the longest
   running first. Their index and name come from the store. */
static void s_tasks(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                    const proto_req_t *req)
{
    if (!s_tasks_scope(self, env, peer, req))
        return;
    rows_t rows = {.self = self, .v = xcalloc(PROTO_MAX_TASKS_LISTED, sizeof(proto_task_info_t))};
    store_t *store = journal_store(self->cfg.journal);
    size_t pos = 0;
    sched_task_t *t;
    while (rows.n < PROTO_MAX_TASKS_LISTED && (t = sched_next(self->cfg.sched, &pos))) {
        if (t->state != PROTO_ST_ASSIGNED && t->state != PROTO_ST_RUNNING)
            continue;
        if ((req->job > 0 && t->job != req->job)
            || (req->worker && (!t->worker_name || strcmp(t->worker_name, req->worker) != 0)))
            continue;
        const job_t *job = jobs_get(self->cfg.jobs, t->job);
        if (!job || (req->job == 0 && !req->all && !s_mine(peer, job)))
            continue;
        bool found = false;
        int before = rows.n;
        if (store_task_get(store, t->id, s_task_row, &rows, &found) != 0 || !found) {
            for (int i = before; i < rows.n; i++)
                proto_task_info_clear(&rows.v[i]);
            rows.n = before;
        }
    }
    qsort(rows.v, (size_t) rows.n, sizeof(proto_task_info_t), s_cmp_started);
    proto_reply_t *rep = proto_reply_new(true);
    rep->tasks = rows.v;
    rep->ntasks = rows.n;
    s_send_reply(self, env, rep, PROTO_REQ_TASKS);
    proto_reply_destroy(&rep);
}

/* ---- waiting: why queued tasks are not on a worker ---- */

typedef struct {
    const auth_peer_t *peer;
    int64_t job;             /* 0 = any the peer sees */
    bool all;
} want_t;

static bool s_want(const job_t *job, void *arg)
{
    const want_t *w = arg;
    return w->job > 0 ? job->id == w->job : w->all || s_mine(w->peer, job);
}

/* The queued tasks of one job or of every job the peer sees (its own;
   with "all", an admin: everyone's), in run order, each with why it
   waits (why.h: bounded, no store read). */
static void s_waiting(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                      const proto_req_t *req, int64_t now)
{
    if (!s_tasks_scope(self, env, peer, req))
        return;
    want_t want = {.peer = peer, .job = req->job, .all = req->all};
    /* The flush before this answer may have written requeues that the
       next dispatch would let out: none is listed as waiting for it. */
    tasks_requeues_written(self->cfg.tasks);
    proto_reply_t *rep = proto_reply_new(true);
    rep->tasks = xcalloc(PROTO_MAX_TASKS_LISTED, sizeof(proto_task_info_t));
    rep->ntasks = why_list(&(why_config_t){.sched = self->cfg.sched,
                                           .tasks = self->cfg.tasks,
                                           .jobs = self->cfg.jobs,
                                           .deps = self->cfg.deps},
                           &(why_query_t){.want = s_want,
                                          .arg = &want,
                                          .max = PROTO_MAX_TASKS_LISTED,
                                          .now = now},
                           rep->tasks, &rep->truncated);
    s_send_reply(self, env, rep, PROTO_REQ_WAITING);
    proto_reply_destroy(&rep);
}

/* ---- show ---- */

/* One job's record with what it was submitted as and its first task's
   spec (read from the store: definitions are not kept in memory). */
static void s_show(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                   const proto_req_t *req)
{
    job_t *job = s_job_or_reply(self, env, peer, req->job);
    if (!job)
        return;
    proto_reply_t *rep = proto_reply_new(true);
    rep->jobs = xcalloc(1, sizeof(proto_job_t));
    rep->njobs = 1;
    s_job_record(self, job, &rep->jobs[0]);
    store_t *store = journal_store(self->cfg.journal);
    if (store_job_show(store, job->id, &rep->jobs[0].definition, &rep->jobs[0].first_spec)
        != 0) {
        proto_reply_destroy(&rep);
        char msg[300];
        snprintf(msg, sizeof msg, "cannot read the job's definition: %s", store_error(store));
        s_reply_error(self, env, PROTO_E_STORAGE, msg);
        return;
    }
    s_send_reply(self, env, rep, PROTO_REQ_SHOW);
    proto_reply_destroy(&rep);
}

/* ---- retry ---- */

/* Failed and/or cancelled tasks of a job (some indexes, or all) back in
   the queue as new attempts; the job runs again. Counted against its
   owner's quota like a submit. */
static void s_retry(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                    const proto_req_t *req)
{
    job_t *job = s_job_or_reply(self, env, peer, req->job);
    if (!job)
        return;
    tasks_retry_set_t set = {0};
    if (tasks_retry_select(self->cfg.tasks, job,
                           &(tasks_retry_pick_t){.failed = req->retry_failed,
                                                 .cancelled = req->retry_cancelled,
                                                 .indexes = req->indexes,
                                                 .nindexes = req->nindexes},
                           &set)
        != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "cannot read the job's tasks: %s",
                 store_error(journal_store(self->cfg.journal)));
        s_reply_error(self, env, PROTO_E_STORAGE, msg);
        goto out;
    }
    owner_usage_t *u = jobs_usage(self->cfg.jobs, job->owner);
    if (set.n
        && !s_quota_allows(self, env, u,
                           &(pending_submit_t){.ntasks = (int) set.n, .bytes = set.bytes}))
        goto out;
    int64_t n = tasks_retry_apply(self->cfg.tasks, job, &set);
    log_info("event=job_retry job=%" PRId64 " tasks=%" PRId64, job->id, n);
    if (!s_written(self, env))
        goto out;
    proto_reply_t *rep = proto_reply_new(true);
    rep->count = n;
    s_send_reply(self, env, rep, PROTO_REQ_RETRY);
    proto_reply_destroy(&rep);
out:
    tasks_retry_set_free(&set);
}

/* ---- workers ---- */

static void s_hello_reply(api_t *self, const zmqx_frames_t *env, const worker_t *w,
                          const tasks_held_t *resend, int64_t now)
{
    proto_reply_t *rep = proto_reply_new(true);
    /* What it listed whose result did not arrive: results lost with a
       master that died before committing them. A worker that kept them
       sends them again now rather than those tasks running again after
       the grace (docs/protocol.md, 10.3). */
    if (resend)
        rep->resend = tasks_unreported(self->cfg.tasks, w, resend, &rep->nresend);
    rep->worker_id = xstrdup(w->id);
    rep->task_port = w->task_port;
    rep->report_port = self->cfg.report_port;
    rep->heartbeat_ms = self->cfg.heartbeat_ms;
    rep->liveness = self->cfg.liveness;
    rep->report_b64 = true;      /* results and output may carry base64 (proto.h) */
    rep->hold_ms = tasks_rejoin_left_ms(self->cfg.tasks, now);
    s_send_reply(self, env, rep, PROTO_REQ_HELLO);
    proto_reply_destroy(&rep);
}

/* A worker registers (again, after it lost the master or the master
   restarted): it gets its own task pipe, and keeps what it still runs. */
static void s_hello(api_t *self, const zmqx_frames_t *env, const proto_req_t *req, int64_t now)
{
    const char *name = req->name && *req->name ? req->name : "worker";
    const char *key = auth_user_key(env->user_id);
    worker_t *old = registry_find(self->cfg.registry, name);
    const tasks_held_t held = {.running = req->running,
                               .nrunning = req->nrunning,
                               .ended = req->ended,
                               .nended = req->nended};
    bool again = tasks_rejoin(self->cfg.tasks, old, req->host, req->pid, key, &held, now);
    char err[256];
    const char *code;
    worker_t *w = registry_hello(self->cfg.registry,
                                 &(registry_hello_t){.name = name,
                                                     .key = key,
                                                     .host = req->host,
                                                     .pid = req->pid,
                                                     .threads = req->threads,
                                                     .labels = req->labels,
                                                     .nlabels = req->nlabels,
                                                     .fns = req->functions,
                                                     .nfns = req->nfunctions,
                                                     .no_exec = req->no_exec,
                                                     .recall = req->recall,
                                                     .resources = req->resources,
                                                     .gpu_ids = req->gpu_ids,
                                                     .ngpu_ids = req->ngpu_ids,
                                                     .slurm_job = req->slurm_job,
                                                     .ends_at = req->ends_at},
                                 now, &code, err, sizeof err);
    if (!w) {
        /* A worker retries its hello: one line a second at most. */
        int64_t held;
        if (log_limit(&self->hello_log, now, &held))
            log_error("event=hello_refused name=%s key=%s code=%s error=\"%s\" suppressed=%" PRId64,
                      LOG_V(name), key, code, log_quote((char[256]){0}, 256, err), held);
        s_reply_error(self, env, code, err);
        return;
    }
    /* Claim what it still runs: tasks from before a master restart (orphans)
       or ours already; anything else it runs is stale and gets aborted once
       its pipe is up (its result will be a duplicate anyway). */
    int claimed = tasks_claim(self->cfg.tasks, w, &held, now);
    char res[RES_MAX * (RES_NAME_MAX + 24)];
    res_format(&w->pool.cap, res, sizeof res);
    log_info("event=worker_registered worker=%s host=%s pid=%d threads=%d task_port=%d running=%d "
             "claimed=%d resources=%s%s",
             LOG_V(w->id), LOG_V(w->host), w->pid, w->threads, w->task_port, req->nrunning, claimed,
             res,
             again ? " again=1" : "");
    /* A live worker registering again with this very master lost its
       pipe, not the master: its results are on their way in the report
       socket, which never closed, and asking for them would only make
       duplicates. */
    s_hello_reply(self, env, w, req->resend && !again ? &held : NULL, now);
}

static void s_workers(api_t *self, const zmqx_frames_t *env)
{
    proto_reply_t *rep = proto_reply_new(true);
    size_t n = registry_count(self->cfg.registry), pos = 0;
    rep->workers = xcalloc(n + 1, sizeof(proto_worker_info_t));
    worker_t *w;
    while ((w = registry_next(self->cfg.registry, &pos))) {
        proto_worker_info_t *info = &rep->workers[rep->nworkers++];
        info->id = xstrdup(w->id);
        info->host = xstrdup(w->host);
        info->pid = w->pid;
        info->threads = w->threads;
        info->labels = xcalloc((size_t) w->nlabels + 1, sizeof(char *));
        for (int i = 0; i < w->nlabels; i++)
            info->labels[i] = xstrdup(w->labels[i]);
        info->nlabels = w->nlabels;
        info->alive = w->alive;
        info->draining = w->draining;
        info->left = w->left;
        info->gone = w->gone_at;
        info->running = w->inflight;
        info->done = w->done;
        info->failed = w->failed;
        info->last_heartbeat = w->last_heartbeat;
        info->resources = xmalloc(sizeof *info->resources);
        *info->resources = w->pool.cap;
        info->used = xcalloc(1, sizeof *info->used);
        for (int i = 0; i < w->pool.cap.n; i++)
            res_set(info->used, w->pool.cap.name[i], res_in_use(&w->pool, i));
        info->slurm_job = w->slurm_job ? xstrdup(w->slurm_job) : NULL;
        info->ends_at = w->ends_at;
    }
    s_send_reply(self, env, rep, PROTO_REQ_WORKERS);
    proto_reply_destroy(&rep);
}

static void s_drain(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                    const proto_req_t *req)
{
    worker_t *w = req->worker ? registry_find(self->cfg.registry, req->worker) : NULL;
    if (!w || !w->alive) {
        s_reply_error(self, env, PROTO_E_NOT_FOUND, "no such live worker (see: ztask workers)");
        return;
    }
    /* A worker key (not also a client's) drains only the worker it
       registered: its own SIGTERM, nobody else's. */
    if (!(peer->roles & AUTH_CLIENT) && strcmp(w->key, peer->owner) != 0) {
        log_warn("event=request_refused type=drain worker=%s key=%s need=client", LOG_V(w->id),
                 auth_user_key(env->user_id));
        s_reply_error(self, env, PROTO_E_AUTH, "a worker key may drain only its own worker");
        return;
    }
    w->draining = true;
    worker_send_drain(w);
    log_info("event=worker_draining worker=%s running=%d%s", LOG_V(w->id), w->inflight,
             w->drain_sent ? "" : " note=\"its pipe is not connected yet: told once it is\"");
    proto_reply_t *rep = proto_reply_new(true);
    s_send_reply(self, env, rep, PROTO_REQ_DRAIN);
    proto_reply_destroy(&rep);
}

/* ---- jobs ---- */

static int s_cmp_job(const void *a, const void *b)
{
    const proto_job_t *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Answers with one job's record. */
static void s_job_reply(api_t *self, const zmqx_frames_t *env, const job_t *job,
                        proto_req_type_t type)
{
    proto_reply_t *rep = proto_reply_new(true);
    rep->jobs = xcalloc(1, sizeof(proto_job_t));
    s_job_record(self, job, &rep->jobs[0]);
    rep->njobs = 1;
    s_send_reply(self, env, rep, type);
    proto_reply_destroy(&rep);
}

/* status/jobs: one job, or the peer's own jobs, or with "all" every
   client's (admins only: without CURVE everyone is one). */
static void s_jobs(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                   const proto_req_t *req, proto_req_type_t type)
{
    if (req->job > 0) {
        job_t *job = s_job_or_reply(self, env, peer, req->job);
        if (job)
            s_job_reply(self, env, job, type);
        return;
    }
    if (req->all && !(peer->roles & AUTH_ADMIN)) {
        s_reply_error(self, env, PROTO_E_AUTH,
                      "only an admin key sees every client's jobs (the master's --admins list); "
                      "without --all: your own");
        return;
    }
    proto_reply_t *rep = proto_reply_new(true);
    size_t n = jobs_count(self->cfg.jobs), pos = 0;
    rep->jobs = xcalloc(n + 1, sizeof(proto_job_t));
    job_t *job;
    while ((job = jobs_next(self->cfg.jobs, &pos)))
        if (req->all || s_mine(peer, job))
            s_job_record(self, job, &rep->jobs[rep->njobs++]);
    qsort(rep->jobs, (size_t) rep->njobs, sizeof(proto_job_t), s_cmp_job);
    s_send_reply(self, env, rep, type);
    proto_reply_destroy(&rep);
}

static void s_forget(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                     const proto_req_t *req)
{
    job_t *job = s_job_or_reply(self, env, peer, req->job);
    if (!job)
        return;
    char msg[160];
    if (!job->closed || job->queued || job->running) {
        snprintf(msg, sizeof msg, "job %" PRId64 " has not finished; cancel it first (ztask cancel %" PRId64 ")",
                 job->id, job->id);
        s_reply_error(self, env, PROTO_E_STATE, msg);
        return;
    }
    jobs_forget(self->cfg.jobs, job);
    proto_reply_t *rep = proto_reply_new(true);
    rep->count = 1;
    s_send_reply(self, env, rep, PROTO_REQ_FORGET);
    proto_reply_destroy(&rep);
}

static void s_stats(api_t *self, const zmqx_frames_t *env)
{
    proto_reply_t *rep = proto_reply_new(true);
    proto_stats_t *s = &rep->stats;
    size_t pos = 0;
    job_t *job;
    while ((job = jobs_next(self->cfg.jobs, &pos))) {
        s->jobs++;
        s->tasks_queued += job->queued;
        s->tasks_running += job->running;
        s->tasks_done += job->done;
        s->tasks_failed += job->failed;
        s->tasks_dep_failed += job->dep_failed;
    }
    pos = 0;
    worker_t *w;
    while ((w = registry_next(self->cfg.registry, &pos)))
        if (w->alive) {
            s->workers_alive++;
            s->threads_total += w->threads;
        }
    tasks_counts_t counts = tasks_counts(self->cfg.tasks);
    s->duplicates = counts.duplicates;
    double up = (double) (clock_mono_ms() - self->cfg.started_ms) / 1000.0;
    s->uptime = up;
    s->results_per_s_1m = up > 0 ? (int64_t) ((double) counts.results / up) : 0;
    s->db_path = xstrdup(self->cfg.db_path);
    const char *keys[64];
    int n = tasks_unrunnable(self->cfg.tasks, keys, 64);
    s->unrunnable = xcalloc((size_t) n + 1, sizeof(char *));
    for (int i = 0; i < n; i++)
        s->unrunnable[i] = xstrdup(keys[i]);
    s->nunrunnable = n;
    s_send_reply(self, env, rep, PROTO_REQ_STATS);
    proto_reply_destroy(&rep);
}

/* ---- status and submit with wait_ms: held until the job finishes ---- */

/* A submit's answer; with_record: the job's record too, as a held submit
   ends (the client sees from it whether the job finished). */
static void s_submit_reply(api_t *self, const zmqx_frames_t *env, int64_t job_id,
                           int64_t accepted, bool with_record, const char *const *no_worker,
                           int nno_worker)
{
    const job_t *job = jobs_get(self->cfg.jobs, job_id);
    proto_reply_t *rep = proto_reply_new(true);
    rep->job = job_id;
    rep->accepted = accepted;
    rep->total = job ? job->total : 0;
    if (nno_worker) {
        rep->no_worker = xcalloc((size_t) nno_worker + 1, sizeof(char *));
        for (int i = 0; i < nno_worker; i++)
            rep->no_worker[rep->nno_worker++] = xstrdup(no_worker[i]);
    }
    if (job && with_record) {
        rep->jobs = xcalloc(1, sizeof(proto_job_t));
        s_job_record(self, job, &rep->jobs[0]);
        rep->njobs = 1;
    }
    s_send_reply(self, env, rep, PROTO_REQ_SUBMIT);
    proto_reply_destroy(&rep);
}

/* Answers a submit whose batch is committed: at once, or, with wait_ms,
   once its job has finished or the wait is over (held like a status). */
static void s_submit_answer(api_t *self, const zmqx_frames_t *env, int64_t job,
                            int64_t accepted, int wait_ms, int64_t now,
                            const char *const *no_worker, int nno_worker)
{
    /* Called as the batch's commit is acknowledged: a job it finished (one
       that had nothing left to run) is answered by api_waiters after the
       commit of that finish, like any held request. */
    if (!waiters_hold(self->cfg.waiters, env, PROTO_REQ_SUBMIT, job, accepted, wait_ms, now))
        s_submit_reply(self, env, job, accepted, wait_ms > 0, no_worker, nno_worker);
}

/* A held status whose wait is over: the job's record, or "no job N" when
   it is gone since (forgotten). Whether the peer may see it was decided
   when it was held. */
static void s_waited_reply(api_t *self, const zmqx_frames_t *env, int64_t id)
{
    const job_t *job = jobs_get(self->cfg.jobs, id);
    if (job) {
        s_job_reply(self, env, job, PROTO_REQ_STATUS);
        return;
    }
    char msg[80];
    snprintf(msg, sizeof msg, "no job %" PRId64 " (see: ztask jobs)", id);
    s_reply_error(self, env, PROTO_E_NOT_FOUND, msg);
}

/* A held request's answer made now: the record of its job, or (submit)
   the plain answer when its job's changes could not be written. */
static void s_waiter_answer(api_t *self, const waiter_t *w, bool written)
{
    if (w->type == PROTO_REQ_SUBMIT)
        s_submit_reply(self, &w->envelope, w->job, w->accepted, written, NULL, 0);
    else if (!written)
        s_reply_unwritable(self, &w->envelope);
    else
        s_waited_reply(self, &w->envelope, w->job);
}

/* Held answers whose changes are committed go out, in the order they were
   made (their marks only grow); while commits fail, each gets what
   api_waiters gives when its flush fails. */
static void s_held_send(api_t *self)
{
    while (self->held) {
        held_reply_t *h = self->held;
        if (journal_written(self->cfg.journal, h->mark)) {
            metrics_api_request(self->cfg.metrics, proto_req_type_name(h->type), h->outcome);
            s_send_body(self, &h->envelope, h->body, h->len, h->type);
            h->body = NULL;
        } else if (journal_failing(self->cfg.journal)) {
            s_waiter_answer(self, &(waiter_t){.envelope = h->envelope, .type = h->type,
                                              .job = h->job, .accepted = h->accepted},
                            false);
        } else {
            return;
        }
        self->held = h->next;
        if (!self->held)
            self->held_tail = &self->held;
        assert(self->nheld > 0);
        self->nheld--;
        s_held_free(h);
    }
}

void api_waiters(api_t *self, int64_t now, bool all_now)
{
    if (!waiters_any_due(self->cfg.waiters, now, all_now))
        return;
    /* The finishing results may still be in the journal: like any other
       answer, this one is told only once they are committed. The loop
       does not wait for that commit (it may be a big one: a finished
       task's row holds its spec, 16 MB ones made ztask wait stop the loop
       for 0.7 s, seconds under TSan, the workers' results waiting behind
       it): the answer is made now, from memory as it is now, and held
       until journal_written says its mark is on disk (s_held_send, from
       api_acks). Stopping (all_now) and failing commits keep the old way:
       flush, then answer. If the commit cannot be made, a held status is
       refused as a query would be, and a held submit (its batch was
       committed) gets its plain answer without the record.
       The held answers are bounded like the waiters they come from: a
       client sending status with wait_ms=1 in a stream while a big commit
       is with the writer would otherwise grow the list at the loop's read
       rate. Past MAX_WAITERS the old way applies (the flush sends them). */
    journal_t *j = self->cfg.journal;
    uint64_t mark = journal_mark(j);
    if (!all_now && !journal_failing(j) && !journal_written(j, mark)
        && self->nheld < MAX_WAITERS) {
        waiter_t *w = waiters_take_due(self->cfg.waiters, now, all_now);
        while (w) {
            waiter_t *next = w->next;
            held_reply_t *h = xcalloc(1, sizeof *h);
            h->mark = mark;
            h->type = w->type;
            h->job = w->job;
            h->accepted = w->accepted;
            zmqx_frames_copy(&h->envelope, &w->envelope);
            self->hold_into = h;
            s_waiter_answer(self, w, true);
            self->hold_into = NULL;
            assert(h->body);
            *self->held_tail = h;
            self->held_tail = &h->next;
            self->nheld++;
            waiter_free(&w);
            w = next;
        }
        journal_commit_soon(j);
        return;
    }
    bool written = api_flush(self) == 0;
    waiter_t *w = waiters_take_due(self->cfg.waiters, now, all_now);
    while (w) {
        waiter_t *next = w->next;
        s_waiter_answer(self, w, written);
        waiter_free(&w);
        w = next;
    }
}

/* ---- entry ---- */

/* A request from a peer without the role it needs: a key revoked since
   its connection was admitted (it holds no role now), or a key of the
   other kind. Logged (rate-limited: a peer can send these at will) and
   answered with code auth. */
static void s_refuse(api_t *self, const zmqx_frames_t *env, const char *user_id,
                     const auth_peer_t *peer, proto_req_type_t type, unsigned need, int64_t now)
{
    char held_roles[32], need_roles[32];
    const char *key = auth_user_key(user_id);
    int64_t held;
    if (log_limit(&self->lim_request, now, &held))
        log_warn("event=request_refused type=%s role=%s key=%s need=%s reason=%s "
                 "suppressed=%" PRId64,
                 proto_req_type_name(type),
                 peer->roles ? auth_roles_text(peer->roles, held_roles, sizeof held_roles) : "none",
                 key[0] ? key : "none", auth_roles_text(need, need_roles, sizeof need_roles),
                 peer->roles ? "role" : "revoked", held);
    metrics_auth_refused(self->cfg.metrics, peer->roles ? "role" : "revoked");
    s_reply_error(self, env, PROTO_E_AUTH,
                  !peer->roles ? "this key is no longer allowed (it was removed from the "
                                 "master's allowlists)"
                  : type == PROTO_REQ_HELLO ? "this key is not allowed to register as a worker"
                                            : "this key is not allowed to act as a client");
}

/* Allocation queues: anyone lists them, only admins change them. */
static void s_alloc(api_t *self, const zmqx_frames_t *env, const auth_peer_t *peer,
                    const proto_req_t *req)
{
    proto_reply_t *rep = alloc_request(self->cfg.alloc, req, (peer->roles & AUTH_ADMIN) != 0);
    /* A change (add, pause, resume, remove) is written before it is
       answered, as every steering request is: a new queue's id answered
       and then lost to a kill -9 would be given again by the restarted
       master, to another queue (ids are never given twice). Not written,
       the change stays in memory and goes with the next commit: the
       answer says so, and that asking again would add a second queue. */
    if (rep->ok && req->alloc_op != PROTO_ALLOC_OP_LIST && api_flush(self) != 0) {
        s_reply_error(self, env, PROTO_E_STORAGE,
                      "the master could not write this change to its database (see its log: a "
                      "full disk?): it is applied, as `ztask alloc list` shows, and written once "
                      "space returns, but lost if the master stops before then; look before "
                      "asking again (an add would make a second queue)");
        proto_reply_destroy(&rep);
        return;
    }
    s_send_reply(self, env, rep, PROTO_REQ_ALLOC);
    proto_reply_destroy(&rep);
}

static void s_handle_request(api_t *self, zmqx_frames_t *frames, int64_t now)
{
    /* [identity][empty delimiter, from REQ peers][body]: anything else is
       not ours to answer sensibly. */
    if (frames->count < 2)
        return;
    for (int i = 1; i < frames->count - 1; i++)
        if (frames->sizes[i] != 0)
            return;
    zmqx_frames_t env = {.count = frames->count - 1, .frames = frames->frames, .sizes = frames->sizes};
    memcpy(env.user_id, frames->user_id, sizeof env.user_id);
    const char *body = frames->frames[frames->count - 1];
    size_t len = frames->sizes[frames->count - 1];
    proto_err_t err;
    proto_req_t *req = proto_req_decode(body, len, &err);
    if (!req) {
        char q[256];
        int64_t held;
        if (log_limit(&self->lim_request, now, &held))
            log_warn("event=bad_request code=%s error=\"%s\" suppressed=%" PRId64, err.code,
                     log_quote(q, sizeof q, err.message), held);
        self->cur_type = "invalid";
        s_reply_error(self, &env, err.code, err.message);
        return;
    }
    self->cur_type = proto_req_type_name(req->type);
    /* Who this is, with the roles its key holds now (a key revoked since
       its connection was admitted holds none): workers register, clients
       do everything else (a worker asks for its own drain at SIGTERM). */
    auth_peer_t peer;
    auth_peer(self->cfg.auth, frames->user_id, &peer);
    unsigned need = req->type == PROTO_REQ_HELLO ? AUTH_WORKER
                    : req->type == PROTO_REQ_DRAIN ? AUTH_CLIENT | AUTH_WORKER
                                                   : AUTH_CLIENT;
    if (!(peer.roles & need)) {
        s_refuse(self, &env, frames->user_id, &peer, req->type, need, now);
        proto_req_destroy(&req);
        return;
    }
    /* Over the reply budget (conns.h): results and logs are bulk by
       design (pages of 8 MiB, chunks of 2 MiB), so they are not run, to
       be thrown away after; other queries run and go out if small. */
    if (self->small_only && (req->type == PROTO_REQ_RESULTS || req->type == PROTO_REQ_LOGS)) {
        proto_reply_t *rep = s_busy_error(self, req->type);
        s_send_reply(self, &env, rep, req->type);
        proto_reply_destroy(&rep);
        proto_req_destroy(&req);
        return;
    }
    /* A status that waits for one job: held only when the peer may see it. */
    if (req->type == PROTO_REQ_STATUS && req->job > 0 && req->wait_ms > 0
        && !s_job_or_reply(self, &env, &peer, req->job)) {
        proto_req_destroy(&req);
        return;
    }
    if (req->type == PROTO_REQ_STATUS
        && waiters_hold(self->cfg.waiters, &env, PROTO_REQ_STATUS, req->job, 0, req->wait_ms,
                        now)) {
        proto_req_destroy(&req);
        return;
    }
    /* Every answer reflects committed state: flush first (cheap when idle).
       When that fails (a full disk), the memory is ahead of the store and
       nothing read from either may be told: `status` (memory) and
       `results` (store) would disagree. A drain changes only memory. */
    if (req->type != PROTO_REQ_SUBMIT && req->type != PROTO_REQ_HELLO && api_flush(self) != 0
        && req->type != PROTO_REQ_DRAIN) {
        s_reply_unwritable(self, &env);
        proto_req_destroy(&req);
        return;
    }
    switch (req->type) {
    case PROTO_REQ_SUBMIT: s_submit(self, &env, &peer, req); break;
    case PROTO_REQ_STATUS: s_jobs(self, &env, &peer, req, PROTO_REQ_STATUS); break;
    case PROTO_REQ_JOBS: s_jobs(self, &env, &peer, req, PROTO_REQ_JOBS); break;
    case PROTO_REQ_RESULTS: s_results(self, &env, &peer, req); break;
    case PROTO_REQ_LOGS: s_logs(self, &env, &peer, req); break;
    case PROTO_REQ_CANCEL: s_cancel(self, &env, &peer, req); break;
    case PROTO_REQ_WORKERS: s_workers(self, &env); break;
    case PROTO_REQ_DRAIN: s_drain(self, &env, &peer, req); break;
    case PROTO_REQ_STATS: s_stats(self, &env); break;
    case PROTO_REQ_FORGET: s_forget(self, &env, &peer, req); break;
    case PROTO_REQ_HELLO: s_hello(self, &env, req, now); break;
    case PROTO_REQ_ALLOC: s_alloc(self, &env, &peer, req); break;
    case PROTO_REQ_RETRY: s_retry(self, &env, &peer, req); break;
    case PROTO_REQ_HOLD:
    case PROTO_REQ_RELEASE: s_hold(self, &env, &peer, req); break;
    case PROTO_REQ_PRIORITY: s_priority(self, &env, &peer, req); break;
    case PROTO_REQ_LIMIT: s_limit(self, &env, &peer, req); break;
    case PROTO_REQ_SHOW: s_show(self, &env, &peer, req); break;
    case PROTO_REQ_TASKS: s_tasks(self, &env, &peer, req); break;
    case PROTO_REQ_WAITING: s_waiting(self, &env, &peer, req, now); break;
    }
    proto_req_destroy(&req);
}

static void s_on_request(api_t *self, zmqx_frames_t *frames, conns_admit_t how, int64_t now)
{
    self->small_only = how == CONNS_RUN_SMALL;
    s_handle_request(self, frames, now);
    self->small_only = false;
    self->cur_type = NULL;
}

void api_pump(api_t *self, int64_t now)
{
    zmqx_frames_t frames;
    conns_admit_t how;
    for (int i = 0; i < REQUESTS_PER_TURN && conns_next(self->conns, now, &frames, &how); i++) {
        s_on_request(self, &frames, how, now);
        zmqx_frames_free(&frames);
    }
}

int64_t api_timeout(const api_t *self, int64_t now)
{
    return conns_timeout(self->conns, now);
}

void api_read(api_t *self, int64_t now)
{
    for (int i = 0; i < REQUESTS_PER_TURN; i++) {
        zmqx_frames_t frames;
        if (zmqx_recv_frames(self->cfg.sock, &frames, 8, ZMQ_DONTWAIT) != 0) {
            if (errno == EPROTO) {
                int64_t held;
                if (log_limit(&self->lim_request, now, &held))
                    log_warn("event=bad_request error=\"too many frames\" suppressed=%" PRId64,
                             held);
                continue;
            }
            break;
        }
        /* Run now, or parked behind this client's unread replies, or
           answered "busy" (conns.h). */
        conns_admit_t how = conns_admit(self->conns, &frames);
        if (how != CONNS_TAKEN)
            s_on_request(self, &frames, how, now);
        zmqx_frames_free(&frames);
    }
}
