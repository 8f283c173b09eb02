#include "session.h"

#include "../common/clock.h"
#include "../common/connector.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../common/zmqx.h"
#include "../proto/proto.h"
#include "exec.h"
#include "mailbox.h"
#include "outbox.h"
#include "pool.h"
#include "runner.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* Hello retry: quick at first (a master that is just starting), then at
   most every 5 s so a fleet of workers does not hammer a master that is
   down; +-25% jitter so workers that lost the same master do not come
   back in lockstep. */
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 5000
#define HELLO_TIMEOUT_MS 2000
/* The longest poll sleep (s_wait): a signal that lands just before the
   poll is seen within this time even if it did not interrupt the call. */
#define POLL_CAP_MS 200
/* Results waiting for a master that is away: at most this many reports
   (libzmq queues them on the connect side and sends them when the master's
   port answers again; beyond, results wait in the outbox's backlog). */
#define REPORT_HWM 100000
/* How long the report socket may try to deliver BYE and the last results
   when the worker exits. */
#define EXIT_LINGER_MS 1000
/* Results of tasks that ran at least RESULT_HOLD_MIN_RUN_US may wait up to
   RESULT_HOLD_MS (and their own run time) for others (s_result_until). */
#define RESULT_HOLD_MIN_RUN_US 200
#define RESULT_HOLD_MS 5
#define STOP_GRACE_MS 5000
/* A worker with an end (ends_at) drains this long before it, so running
   tasks can finish and BYE arrives before the engine kills it (the master
   sends it no task with a --time-request that would not end by then). */
#define END_MARGIN_MS (PROTO_END_MARGIN_S * 1000)
/* Messages handled from the pipe per wakeup, so a busy master cannot
   starve the timers (the inbox is taken whole: what the pool threads put
   since the last wakeup). */
#define PIPE_BATCH 64
/* The result texts kept for a master that restarts (the ended ring's
   text): at most RESEND_KEEP_BYTES in all, the oldest dropped first, and
   none over RESEND_KEEP_ONE: a result carrying a big output is not kept
   (the worker's memory per thread stays within docs/worker.md's "Output
   capture" bound, e2e test_outmem). A task whose result is not kept runs
   again after the master's grace, as with a worker that keeps none. */
#define RESEND_KEEP_BYTES (4 << 20)
#define RESEND_KEEP_ONE (64 << 10)
/* How many times one kept result is sent again: two masters killed in a
   row before committing it are covered, and a master that asks at every
   hello while it reads no report (a buggy one) cannot grow the report
   backlog by RESEND_KEEP_BYTES a hello. After the last, the text goes
   with it (no copy). */
#define RESEND_TIMES 2
/* Accepted from a hello reply; anything outside is a broken master. */
#define HEARTBEAT_MS_MIN 10
#define HEARTBEAT_MS_MAX 600000

typedef enum { API_IDLE = 0, API_HELLO, API_DRAIN } api_state_t;
typedef enum { PHASE_RUN = 0, PHASE_DRAIN, PHASE_STOP } phase_t;

struct session {
    /* Config, deep-copied. */
    connector_t *uplink;    /* master host, API port, CURVE keys */
    char *name;
    char *hostname;
    int threads;
    char **labels;
    int nlabels;
    bool no_exec;
    res_set_t *resources;       /* what it offers tasks, owned; NULL = not said */
    char **gpu_ids;             /* its GPU devices, owned */
    int ngpu_ids;
    const allow_t *allow;   /* borrowed; NULL = any program */
    const fn_registry_t *fns;
    volatile sig_atomic_t *signals;
    int kill_grace_ms;
    int hello_timeout_ms;
    int stop_grace_ms;
    int idle_timeout_ms;    /* 0 = never leave when idle */
    double ends_at;         /* wall seconds, 0 = no end */
    char *slurm_job;        /* NULL = none */
    int64_t idle_since;     /* mono ms the last task ended (or we started or
                               registered: s_idle_restart), 0 = busy */
    int64_t idle_hold_until; /* mono ms: idle time does not count before (the
                                master's hold_ms) */

    void *ctx;
    connector_link_t api;   /* DEALER while a request is outstanding, and its
                               handshake monitor (CURVE only) */
    const char *api_note;   /* what the monitor saw, for a hello that times out */
    api_state_t api_state;
    int64_t api_deadline;
    void *pipe;             /* PULL while registered */
    /* Whether the pipe may hold messages we have not read: false once a
       receive on it found nothing (see s_wait). */
    bool pipe_more;
    outbox_t *outbox;       /* owns the report PUSH */
    int report_port;        /* the port the outbox's socket is connected to */
    mailbox_t *inbox;       /* from the pool threads */
    runner_ctx_t rctx;
    pool_t *pool;

    char *worker_id;        /* last id the master gave us; NULL before */
    bool registered;
    int heartbeat_ms;
    int liveness;
    int64_t last_rx;        /* last pipe message (mono ms) */
    /* The "seq" of the last "tasks" message read from the pipe since the
       hello reply (0 = none, or a master that numbers none): heartbeats
       say it (s_send_heartbeat). */
    int64_t pipe_seen;
    int64_t drop_task;      /* test only: the task to drop (cfg) */
    int64_t tasks_received; /* for drop_task */
    log_limit_t lim_pipe;   /* bad pipe messages: the master's side can send any */
    int64_t next_hb;
    int64_t next_hello;
    int backoff_ms;
    unsigned hello_failures;
    uint64_t rng;

    /* The last PROTO_MAX_ENDED attempts whose results went to the outbox
       (a ring: ended_next is the oldest once full), for the next hello:
       after a master restart their results may arrive after it, or never
       (a master that died before committing them): the hello's reply
       names those it lacks ("resend") and the kept text goes again. */
    struct {
        proto_task_ref_t ref;
        int64_t at;          /* mono ms */
        char *text;          /* the encoded result, owned; NULL = not kept
                                (too big, or too old to be asked for) */
        size_t len, stored;  /* its length, and as the master stores it */
        int resent;          /* times sent again, at most RESEND_TIMES */
    } ended[PROTO_MAX_ENDED];
    int ended_next, nended;
    /* Entries by number: the n-th ever is at n % PROTO_MAX_ENDED (as
       ended_next is). Those before kept_seq hold no text: texts go oldest
       first, so s_ended drops them in amortised constant time. */
    uint64_t ended_seq, kept_seq;
    size_t kept_bytes;       /* the texts' lengths summed */

    /* Every task the pool may still touch, oldest first. */
    runner_task_t *head, *tail;
    int nactive;            /* of which not yet ended (queued or running) */

    phase_t phase;
    int64_t stop_deadline;
    int signals_seen;
    bool abandoned;
};

/* ---- small helpers ---- */

static int64_t s_min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static void s_close(void **sock)
{
    if (*sock) {
        zmq_close(*sock);
        *sock = NULL;
    }
}

/* A socket connected to the master (opt->port 0: the API port) into
   link. 0, or -1 logged. */
static int s_connect(session_t *self, const connector_socket_t *opt, connector_link_t *link)
{
    connector_err_t why;
    if (connector_open(self->uplink, self->ctx, opt, link, &why) == 0)
        return 0;
    const char *error = zmq_strerror(errno);
    if (why == CONNECTOR_ERR_SOCKET) {
        log_error("event=socket_failed error=\"%s\"", error);
    } else if (why == CONNECTOR_ERR_CURVE) {
        log_error("event=curve_failed error=\"%s\"", error);
    } else {
        char ep[512];
        connector_endpoint(self->uplink, opt->port, ep, sizeof ep);
        log_error("event=connect_failed endpoint=%s error=\"%s\"", ep, error);
    }
    return -1;
}

/* A socket without a monitor, for the task pipe and the reports. NULL
   when it cannot be made (logged). */
static void *s_connect_plain(session_t *self, int type, int port, int64_t maxmsg)
{
    connector_link_t link;
    const connector_socket_t opt = { .type = type, .port = port, .maxmsg = maxmsg };
    return s_connect(self, &opt, &link) == 0 ? link.sock : NULL;
}

static void s_close_api(session_t *self)
{
    connector_close(&self->api);
    self->api_state = API_IDLE;
    self->api_note = NULL;
}

/* A fresh api DEALER (with a handshake monitor under CURVE). A fresh one
   per request: a late reply to an abandoned attempt can never be mistaken
   for the answer to the next one. */
static int s_open_api(session_t *self)
{
    s_close_api(self);
    const connector_socket_t opt = {
        .type = ZMQ_DEALER,
        .maxmsg = PROTO_MAX_API_MSG,
        .monitor = connector_curve(self->uplink),
    };
    return s_connect(self, &opt, &self->api);
}

/* ---- the task table ---- */

static void s_link(session_t *self, runner_task_t *t)
{
    t->prev = self->tail;
    t->next = NULL;
    if (self->tail)
        self->tail->next = t;
    else
        self->head = t;
    self->tail = t;
    self->nactive++;
}

static void s_unlink(session_t *self, runner_task_t *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        self->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        self->tail = t->prev;
    t->prev = t->next = NULL;
    if (!t->ended)
        self->nactive--;
    assert(self->nactive >= 0);
}

/* Linear: the table holds at most the master's credit (threads +
   prefetch), and aborts are rare. */
static runner_task_t *s_find(session_t *self, int64_t id, int attempt)
{
    for (runner_task_t *t = self->head; t; t = t->next)
        if (!t->ended && t->id == id && t->attempt == attempt)
            return t;
    return NULL;
}

/* Refs of the tasks queued or running here (hello, heartbeat), with the
   GPU devices each was given and its claim token when hello (a restarted
   master counts those devices taken again, and takes the claim only with
   its token); the caller frees them (proto_refs_free). */
static proto_task_ref_t *s_running_refs(session_t *self, int *n, bool hello)
{
    proto_task_ref_t *refs = xcalloc((size_t) (self->nactive ? self->nactive : 1), sizeof *refs);
    int k = 0;
    for (runner_task_t *t = self->head; t && k < self->nactive; t = t->next)
        if (!t->ended) {
            refs[k].task = t->id;
            refs[k].attempt = t->attempt;
            refs[k].gpus = hello && t->gpus ? xstrdup(t->gpus) : NULL;
            if (hello)
                memcpy(refs[k].claim, t->claim, sizeof refs[k].claim);
            k++;
        }
    *n = k;
    return refs;
}

/* The ring's i-th entry, oldest first. */
static int s_ended_at(const session_t *self, int i)
{
    return (self->ended_next - self->nended + i + PROTO_MAX_ENDED) % PROTO_MAX_ENDED;
}

/* Where the hello's "ended" begins: the attempts that ended since shortly
   before the master went silent (its liveness window before last_rx).
   last_rx only grows, so what ended before this is never asked for. */
static int64_t s_ended_since(const session_t *self)
{
    return self->last_rx - (int64_t) self->liveness * self->heartbeat_ms;
}

/* The ring entry of attempt (id, attempt) that still keeps its result
   text, or -1. Linear: the ring holds PROTO_MAX_ENDED entries, and only
   a hello's reply asks (s_resend, s_lost_refs). */
static int s_kept(const session_t *self, int64_t id, int attempt)
{
    for (int i = 0; i < self->nended; i++) {
        int at = s_ended_at(self, i);
        if (self->ended[at].text && self->ended[at].ref.task == id
            && self->ended[at].ref.attempt == attempt)
            return at;
    }
    return -1;
}

/* The kept text of entry at, taken out of the store (the caller's; NULL
   when none). */
static char *s_take_text(session_t *self, int at)
{
    char *text = self->ended[at].text;
    if (!text)
        return NULL;
    assert(self->kept_bytes >= self->ended[at].len);
    self->kept_bytes -= self->ended[at].len;
    self->ended[at].text = NULL;
    return text;
}

static void s_drop_text(session_t *self, int at)
{
    free(s_take_text(self, at));
}

/* The result of t's attempt (json, len bytes, stored as the master
   stores it) went to the outbox: on record for the next hello, with a
   copy of the text while it may be asked for again and RESEND_KEEP_BYTES
   allows (the oldest, and those too old, make room). */
static void s_ended(session_t *self, const runner_task_t *t, const char *json, size_t len,
                    size_t stored, int64_t now)
{
    assert(self->ended_next == (int) (self->ended_seq % PROTO_MAX_ENDED));
    int64_t since = s_ended_since(self);
    bool fits = len <= RESEND_KEEP_ONE;   /* else it is not kept, and evicts nothing */
    /* The oldest first: those too old to be asked for, then to make room;
       and the one this entry takes the place of. */
    assert(self->ended_seq < PROTO_MAX_ENDED || self->kept_seq >= self->ended_seq - PROTO_MAX_ENDED);
    while (self->kept_seq < self->ended_seq) {
        int old = (int) (self->kept_seq % PROTO_MAX_ENDED);
        bool overwritten = self->kept_seq + PROTO_MAX_ENDED == self->ended_seq;
        if (!overwritten && self->ended[old].at >= since
            && (!fits || self->kept_bytes + len <= RESEND_KEEP_BYTES))
            break;
        s_drop_text(self, old);
        self->kept_seq++;
    }
    int at = self->ended_next;
    assert(!self->ended[at].text);
    proto_task_ref_t *ref = &self->ended[at].ref;
    *ref = (proto_task_ref_t){.task = t->id, .attempt = t->attempt};
    memcpy(ref->claim, t->claim, sizeof ref->claim);
    self->ended[at].at = now;
    self->ended[at].resent = 0;
    if (fits && self->kept_bytes + len <= RESEND_KEEP_BYTES) {
        self->ended[at].text = xmalloc(len + 1);
        memcpy(self->ended[at].text, json, len + 1);
        self->ended[at].len = len;
        self->ended[at].stored = stored;
        self->kept_bytes += len;
    }
    self->ended_next = (self->ended_next + 1) % PROTO_MAX_ENDED;
    self->ended_seq++;
    if (self->nended < PROTO_MAX_ENDED)
        self->nended++;
}

/* Refs of the attempts that ended since s_ended_since: their results may
   not have reached the master, and a restarted master keeps those tasks
   for us while they come (the hello's "ended"). The caller frees them. */
static proto_task_ref_t *s_ended_refs(session_t *self, int *n)
{
    int64_t since = s_ended_since(self);
    proto_task_ref_t *refs = xcalloc((size_t) (self->nended ? self->nended : 1), sizeof *refs);
    int k = 0;
    for (int i = 0; i < self->nended; i++) {
        int at = s_ended_at(self, i);
        if (self->ended[at].at >= since)
            refs[k++] = self->ended[at].ref;
    }
    *n = k;
    return refs;
}

/* The hello's reply names the attempts it listed whose results the
   master lacks: the kept texts of those that ended go again (a result is
   safe to repeat: one that arrived after all is a duplicate,
   docs/protocol.md 10.4). That includes attempts the hello listed
   running that ended since it was made: their results went to the
   report socket of the master we had lost (a hello can wait in its
   socket for the next master). One still running sends its result when
   it ends; one whose text is not kept runs again after the master's
   grace. */
static void s_resend(session_t *self, const proto_task_ref_t *refs, int n)
{
    int sent = 0;
    for (int i = 0; i < n; i++) {
        int at = s_kept(self, refs[i].task, refs[i].attempt);
        if (at < 0)
            continue;
        char *text;
        assert(self->ended[at].resent < RESEND_TIMES);
        if (++self->ended[at].resent == RESEND_TIMES) {
            text = s_take_text(self, at);   /* the last time: no copy */
        } else {
            text = xmalloc(self->ended[at].len + 1);
            memcpy(text, self->ended[at].text, self->ended[at].len + 1);
        }
        outbox_result_until(self->outbox, text, self->ended[at].stored, INT64_MIN);
        sent++;
    }
    if (n || sent)
        log_info("event=results_resent worker=%s asked=%d sent=%d", LOG_V(self->worker_id), n,
                 sent);
}

/* The attempts of the reply's resend (refs, n) that we neither hold
   (queued or running: their results come when they end) nor keep a
   result of (s_resend sends those: call this first), into lost (room
   for n): they ended here and their results went to the master we lost
   (too big to keep, dropped to make room, or sent again twice already),
   or never were ours. Without a word the
   master would hold them as running here for ever (it claimed them from
   our hello, which can be older than their end: it may have waited in
   its socket for this master); told, it runs them again at once.
   Returns how many. */
static int s_lost_refs(session_t *self, const proto_task_ref_t *refs, int n,
                       proto_task_ref_t *lost)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!s_find(self, refs[i].task, refs[i].attempt)
            && s_kept(self, refs[i].task, refs[i].attempt) < 0)
            lost[k++] = (proto_task_ref_t){.task = refs[i].task, .attempt = refs[i].attempt};
    }
    return k;
}

/* A heartbeat lists every attempt we hold (queued or running) and says
   which "tasks" message we had read last (pipe_seen): the master takes
   back what it sent us up to there that we do not list (master/tasks.c,
   s_compare_heartbeat). That holds only if every attempt we read and no
   longer list has had its result, "recalled" or "cancelled" sent before
   this heartbeat: the outbox sends held results first, and says nothing
   of pipe_seen while reports wait in its backlog. */
static void s_send_heartbeat(session_t *self)
{
    int n;
    proto_task_ref_t *refs = s_running_refs(self, &n, false);
    outbox_heartbeat(self->outbox, refs, n, self->pipe_seen);
    proto_refs_free(refs, n);
}

/* ---- task lifecycle (session side) ---- */

/* Takes t from the pool before a thread starts it: QUEUED -> ABORTED,
   the compare-and-swap a pool thread makes the other way to start it
   (one wins). True when we won: t never starts, sends no result of its
   own, and is ended here (the pool thread that reaches it hands it back,
   RELEASE, and the session frees it then). */
static bool s_take_unstarted(session_t *self, runner_task_t *t)
{
    int expected = RUNNER_QUEUED;
    if (!atomic_compare_exchange_strong(&t->state, &expected, RUNNER_ABORTED))
        return false;
    t->ended = true;
    self->nactive--;
    assert(self->nactive >= 0);
    return true;
}

/* Ends a task that has not started: CANCELLED now, reported in this
   wakeup. A running one gets its cancel flag and ends through its runner. */
static void s_cancel_task(session_t *self, runner_task_t *t, const char *why)
{
    atomic_store(&t->cancel, true);
    if (s_take_unstarted(self, t)) {
        outbox_result(self->outbox,
                      runner_result_now(t->id, t->attempt, t->claim, PROTO_ST_CANCELLED, why));
        log_debug("event=task_cancelled task=%lld attempt=%d queued=1", (long long) t->id,
                  t->attempt);
    }
}

/* What the master gave a task (its CPUs, its GPU devices) goes into the
   command's environment: ZTASK_CPUS, and ZTASK_GPUS and
   CUDA_VISIBLE_DEVICES for GPUs (after the spec's own env, so the grant
   wins). A task that asked nothing gets ZTASK_CPUS=1 from exec. */
static void s_grant_env(proto_task_t *pt)
{
    proto_spec_t *spec = pt->spec;
    if (spec->kind != PROTO_KIND_EXEC || (pt->cpus <= 0 && !pt->gpus))
        return;
    int add = (pt->cpus > 0) + (pt->gpus ? 2 : 0);
    spec->env = xrealloc(spec->env, (size_t) (spec->envc + add + 1) * sizeof *spec->env);
    if (pt->cpus > 0)
        spec->env[spec->envc++] = xasprintf("ZTASK_CPUS=%d", pt->cpus);
    if (pt->gpus) {
        spec->env[spec->envc++] = xasprintf("ZTASK_GPUS=%s", pt->gpus);
        spec->env[spec->envc++] = xasprintf("CUDA_VISIBLE_DEVICES=%s", pt->gpus);
    }
    spec->env[spec->envc] = NULL;
}

static void s_on_tasks(session_t *self, proto_pipe_t *msg)
{
    for (int i = 0; i < msg->ntasks; i++) {
        proto_task_t *pt = &msg->tasks[i];
        if (!pt->spec)
            continue;
        if (++self->tasks_received == self->drop_task) {
            log_warn("event=test_task_dropped task=%lld attempt=%d note=\"ZTASK_TEST_DROP_TASK\"",
                     (long long) pt->id, pt->attempt);
            continue;
        }
        if (self->phase == PHASE_STOP) {
            /* Not started, not answered: the master takes it back when it
               sees our BYE (or the lease expires). */
            log_debug("event=task_ignored task=%lld attempt=%d reason=stopping",
                      (long long) pt->id, pt->attempt);
            continue;
        }
        _Static_assert(PROTO_CLAIM_MAX == 128, "the refusal below says 128");
        if (pt->claim_refused) {
            /* Answered, so the master does not wait for it: a token past
               the protocol's bound is a master this worker is too old
               (or too strict) for, which the error says. */
            log_warn("event=task_refused task=%lld attempt=%d reason=claim_token",
                     (long long) pt->id, pt->attempt);
            outbox_result(self->outbox,
                          runner_result_now(pt->id, pt->attempt, NULL, PROTO_ST_FAILED,
                                            "the master sent this task with a claim token this "
                                            "worker cannot keep (it takes 1..128 printable "
                                            "ASCII characters without space, quote or "
                                            "backslash): upgrade the worker to the master's "
                                            "version"));
            continue;
        }
        if (pt->spec->kind == PROTO_KIND_EXEC && self->no_exec) {
            outbox_result(self->outbox,
                          runner_result_now(pt->id, pt->attempt, pt->claim, PROTO_ST_FAILED,
                                            "this worker does not run commands (--no-exec)"));
            continue;
        }
        char why[256];
        if (allow_check(self->allow, pt->spec, why, sizeof why) != 0) {
            log_info("event=task_refused task=%lld attempt=%d reason=allow_exec",
                     (long long) pt->id, pt->attempt);
            outbox_result(self->outbox,
                          runner_result_now(pt->id, pt->attempt, pt->claim, PROTO_ST_FAILED,
                                            why));
            continue;
        }
        s_grant_env(pt);
        runner_task_t *t =
            runner_task_new(pt->id, pt->job, pt->attempt, &pt->spec, self->worker_id);
        t->gpus = pt->gpus ? xstrdup(pt->gpus) : NULL;
        memcpy(t->claim, pt->claim, sizeof t->claim);
        s_link(self, t);
        if (pool_submit(self->pool, t) != 0) {
            s_unlink(self, t);
            outbox_result(self->outbox, runner_result_now(t->id, t->attempt, t->claim,
                                                          PROTO_ST_FAILED, "the worker is stopping"));
            runner_task_destroy(&t);
        } else {
            log_debug("event=task_queued task=%lld attempt=%d job=%lld", (long long) t->id,
                      t->attempt, (long long) t->job);
        }
    }
}

static void s_on_abort(session_t *self, int64_t id, int attempt)
{
    runner_task_t *t = s_find(self, id, attempt);
    if (!t) {
        log_debug("event=abort_unknown task=%lld attempt=%d", (long long) id, attempt);
        return;
    }
    s_cancel_task(self, t, "cancelled before it started");
}

/* Gives back the named attempts that have not started: each one the
   pool has not taken yet is moved QUEUED -> ABORTED (the same race a
   cancel runs against the pool thread: one compare-and-swap wins), so no
   thread ever starts it and no result is sent for it; the pool thread
   that reaches it hands it back (RELEASE) and the session frees it then
   (the pool's queue cannot be edited from here). Unknown, running or
   ended attempts are left alone. One RECALLED report answers, listing
   exactly what was taken, empty when nothing was: the master waits for
   it before it recalls from this worker again. */
static void s_on_recall(session_t *self, const proto_pipe_t *msg)
{
    proto_task_ref_t *back = xcalloc((size_t) (msg->nrefs ? msg->nrefs : 1), sizeof *back);
    int n = 0;
    for (int i = 0; i < msg->nrefs; i++) {
        runner_task_t *t = s_find(self, msg->refs[i].task, msg->refs[i].attempt);
        if (!t || !s_take_unstarted(self, t))
            continue;
        back[n++] = (proto_task_ref_t){.task = t->id, .attempt = t->attempt};
    }
    outbox_recalled(self->outbox, back, n);
    log_debug("event=tasks_recalled asked=%d returned=%d", msg->nrefs, n);
    free(back);
}

/* ---- drain and stop ---- */

static void s_send_drain_request(session_t *self, int64_t now)
{
    if (!self->worker_id || self->api_state != API_IDLE)
        return;
    proto_req_t *req = proto_req_new(PROTO_REQ_DRAIN);
    req->worker = xstrdup(self->worker_id);
    char *text = proto_req_encode(req);
    proto_req_destroy(&req);
    if (text && s_open_api(self) == 0
        && zmqx_send(self->api.sock, text, strlen(text), ZMQ_DONTWAIT) == 0) {
        self->api_state = API_DRAIN;
        self->api_deadline = now + self->hello_timeout_ms;
    } else {
        s_close_api(self);
    }
    free(text);
}

static void s_start_drain(session_t *self, const char *reason, int64_t now)
{
    if (self->phase != PHASE_RUN)
        return;
    self->phase = PHASE_DRAIN;
    log_info("event=draining reason=%s running=%d", reason, self->nactive);
    /* The master only learns of a signal-initiated drain if we tell it;
       otherwise it would keep assigning tasks as our credit returns and the
       drain might never end. The master's own drain needs no request. */
    if (strcmp(reason, "master") != 0 && self->registered)
        s_send_drain_request(self, now);
}

static void s_start_stop(session_t *self, int64_t now)
{
    if (self->phase == PHASE_STOP)
        return;
    self->phase = PHASE_STOP;
    self->stop_deadline = now + self->stop_grace_ms;
    log_info("event=stopping running=%d grace_ms=%d", self->nactive, self->stop_grace_ms);
    for (runner_task_t *t = self->head; t; t = t->next)
        if (!t->ended)
            s_cancel_task(self, t, "cancelled: the worker is stopping");
}

static void s_check_signals(session_t *self, int64_t now)
{
    int n = self->signals ? (int) *self->signals : 0;
    if (n <= self->signals_seen)
        return;
    self->signals_seen = n;
    s_start_drain(self, "signal", now);
    if (n >= 2)
        s_start_stop(self, now);
}

/* ---- hello ---- */

static void s_send_hello(session_t *self, int64_t now)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_HELLO);
    req->name = xstrdup(self->name);
    req->host = xstrdup(self->hostname);
    req->pid = (int) getpid();
    req->threads = self->threads;
    req->nlabels = self->nlabels;
    req->labels = xcalloc((size_t) self->nlabels + 1, sizeof *req->labels);
    for (int i = 0; i < self->nlabels; i++)
        req->labels[i] = xstrdup(self->labels[i]);
    req->running = s_running_refs(self, &req->nrunning, true);
    /* Registered before: what ended around the loss of that master. */
    if (self->worker_id)
        req->ended = s_ended_refs(self, &req->nended);
    req->no_exec = self->no_exec;
    req->recall = true;   /* s_on_recall */
    req->resend = true;   /* s_resend */
    if (self->resources) {
        req->resources = xmalloc(sizeof *req->resources);
        *req->resources = *self->resources;
    }
    if (self->ngpu_ids) {
        req->gpu_ids = xcalloc((size_t) self->ngpu_ids + 1, sizeof *req->gpu_ids);
        for (int i = 0; i < self->ngpu_ids; i++)
            req->gpu_ids[i] = xstrdup(self->gpu_ids[i]);
        req->ngpu_ids = self->ngpu_ids;
    }
    /* What fn tasks the master may send here: built-ins and plugins. */
    size_t nfns = fn_registry_count(self->fns);
    req->functions = xcalloc(nfns + 1, sizeof *req->functions);
    for (size_t i = 0; i < nfns; i++)
        req->functions[req->nfunctions++] = xstrdup(fn_registry_name(self->fns, i));
    req->slurm_job = xstrdup(self->slurm_job);
    req->ends_at = self->ends_at;
    char *text = proto_req_encode(req);
    proto_req_destroy(&req);
    if (!text || s_open_api(self) != 0
        || zmqx_send(self->api.sock, text, strlen(text), ZMQ_DONTWAIT) != 0)
        log_error("event=hello_send_failed error=\"%s\"", zmq_strerror(errno));
    free(text);
    /* Even when the send failed: the deadline then schedules the retry. */
    self->api_state = API_HELLO;
    self->api_deadline = now + self->hello_timeout_ms;
    log_debug("event=hello master=%s:%d running=%d", connector_host(self->uplink),
              connector_port(self->uplink), self->nactive);
}

static void s_hello_failed(session_t *self, int64_t now, const char *why)
{
    s_close_api(self);
    self->hello_failures++;
    int delay = self->backoff_ms;
    delay += (int) (jitter_next(&self->rng) % (uint64_t) (delay / 2 + 1)) - delay / 4;
    self->next_hello = now + delay;
    if (self->backoff_ms < BACKOFF_MAX_MS)
        self->backoff_ms =
            self->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : self->backoff_ms * 2;
    /* Loud on the first failure, then about once a minute at full backoff.
       why may hold the master's words: quoted, so they stay in their field. */
    char q[300];
    log_quote(q, sizeof q, why);
    if (self->hello_failures == 1 || self->hello_failures % 12 == 0)
        log_warn("event=hello_failed master=%s:%d reason=\"%s\" attempts=%u retry_ms=%d",
                 connector_host(self->uplink), connector_port(self->uplink), q,
                 self->hello_failures, delay);
    else
        log_debug("event=hello_failed reason=\"%s\" attempts=%u retry_ms=%d", q,
                  self->hello_failures, delay);
}

/* The pipe and report sockets for the ports of a hello reply. */
static int s_connect_ports(session_t *self, int task_port, int report_port)
{
    s_close(&self->pipe);
    self->pipe = s_connect_plain(self, ZMQ_PULL, task_port, PROTO_MAX_PIPE_MSG);
    if (!self->pipe)
        return -1;
    self->pipe_more = true;       /* a new socket: never read yet */
    /* Keep the report socket when the port is the same: results queued in
       it while the master was away are delivered to the new master. */
    if (outbox_attached(self->outbox) && self->report_port == report_port)
        return 0;
    if (outbox_attached(self->outbox))
        log_warn("event=report_port_changed old=%d new=%d", self->report_port, report_port);
    void *push = s_connect_plain(self, ZMQ_PUSH, report_port, 0);
    if (!push) {
        s_close(&self->pipe);
        return -1;
    }
    int hwm = REPORT_HWM;
    zmq_setsockopt(push, ZMQ_SNDHWM, &hwm, sizeof hwm);
    outbox_attach(self->outbox, &push);
    self->report_port = report_port;
    return 0;
}

/* Idle time counts from a registration, and not through the time the
   master says it holds tasks back (hold_ms: a restarted master's rejoin
   window, in which the tasks it found queued wait for it). Time before
   the master may send is not time with no work: a worker with a short
   --idle-timeout (a Slurm allocation's) left during a master restart
   while its tasks waited, and a new allocation was submitted for them.
   Time with no master at all still counts: a master gone for good must
   not keep an allocation until its time limit. */
static void s_idle_restart(session_t *self, int64_t now, int hold_ms)
{
    if (self->idle_since)
        self->idle_since = now;
    self->idle_hold_until = now + hold_ms;
}

static void s_on_hello_reply(session_t *self, const char *buf, size_t len, int64_t now)
{
    proto_err_t err;
    proto_reply_t *rep = proto_reply_decode(buf, len, PROTO_REQ_HELLO, &err);
    char why[320];
    if (!rep) {
        snprintf(why, sizeof why, "bad reply: %s", err.message);
        s_hello_failed(self, now, why);
        return;
    }
    if (!rep->ok) {
        snprintf(why, sizeof why, "%s: %s", rep->error.code, rep->error.message);
        proto_reply_destroy(&rep);
        s_hello_failed(self, now, why);
        return;
    }
    if (!rep->worker_id || !*rep->worker_id || rep->task_port < 1 || rep->task_port > 65535
        || rep->report_port < 1 || rep->report_port > 65535
        || rep->heartbeat_ms < HEARTBEAT_MS_MIN || rep->heartbeat_ms > HEARTBEAT_MS_MAX
        || rep->liveness < 1 || rep->liveness > 1000) {
        proto_reply_destroy(&rep);
        s_hello_failed(self, now, "reply fields out of range");
        return;
    }
    s_close_api(self);
    if (s_connect_ports(self, rep->task_port, rep->report_port) != 0) {
        proto_reply_destroy(&rep);
        s_hello_failed(self, now, "cannot connect to the master's ports");
        return;
    }
    bool again = self->worker_id != NULL;
    self->pipe_seen = 0;   /* a new pipe: what the old one carried says nothing now */
    free(self->worker_id);
    self->worker_id = xstrdup(rep->worker_id);
    outbox_set_worker(self->outbox, self->worker_id);
    atomic_store(&self->rctx.report_b64, rep->report_b64);
    self->heartbeat_ms = rep->heartbeat_ms;
    self->liveness = rep->liveness;
    self->registered = true;
    self->last_rx = now;
    self->next_hb = now + self->heartbeat_ms;
    self->backoff_ms = BACKOFF_MIN_MS;
    self->hello_failures = 0;
    s_idle_restart(self, now, rep->hold_ms);
    log_info("event=%s worker=%s master=%s:%d task_port=%d report_port=%d threads=%d "
             "running=%d",
             again ? "reregistered" : "registered", LOG_V(self->worker_id),
             connector_host(self->uplink), connector_port(self->uplink), rep->task_port,
             rep->report_port, self->threads, self->nactive);
    proto_task_ref_t *lost = NULL;
    int nlost = 0;
    if (rep->nresend) {
        /* Before the resend, which takes the text it sends the last time. */
        lost = xcalloc((size_t) rep->nresend, sizeof *lost);
        nlost = s_lost_refs(self, rep->resend, rep->nresend, lost);
        s_resend(self, rep->resend, rep->nresend);
    }
    proto_reply_destroy(&rep);
    outbox_flush(self->outbox, INT64_MAX, true);
    /* After the flush: behind every result we had, so the master judges
       a result that was on its way before it hears that we lack it. */
    if (nlost) {
        log_info("event=results_lost worker=%s tasks=%d note=\"ended here, their results went "
                 "to the master we lost and were not kept: the master runs them again\"",
                 LOG_V(self->worker_id), nlost);
        outbox_lost(self->outbox, lost, nlost);
    }
    free(lost);
    /* A new master (or one that forgot us) must hear of a drain in
       progress too. */
    if (self->phase == PHASE_DRAIN && self->signals_seen > 0)
        s_send_drain_request(self, now);
}

static void s_master_lost(session_t *self, int64_t now)
{
    log_warn("event=master_lost worker=%s master=%s:%d silent_ms=%lld running=%d",
             LOG_V(self->worker_id), connector_host(self->uplink), connector_port(self->uplink),
             (long long) (now - self->last_rx), self->nactive);
    /* Tasks the old pipe still held are the master's to reassign: the
       hello tells it which ones we really have. */
    s_close(&self->pipe);
    self->registered = false;
    self->next_hello = now;
    self->backoff_ms = BACKOFF_MIN_MS;
}

/* ---- sockets' input ---- */

/* A task's start is reported once it has run this long: one that ends
   sooner is reported by its result alone, which saves a report (and a
   master wakeup) per short task, and the pool thread sends no message
   when it starts one. Far below any lease (the master's default is
   10 s): the master sees a task "running" this much later. */
#define START_REPORT_MS 20

/* Puts t's start in the outbox, once, if the pool has started it. */
static void s_report_start(session_t *self, runner_task_t *t)
{
    if (t->ended || t->start_reported
        || !atomic_load_explicit(&t->started_us, memory_order_acquire))
        return;
    outbox_started(self->outbox, t->id, t->attempt, t->started_wall);
    t->start_reported = true;
}

/* Reports the starts of the tasks that have run START_REPORT_MS; returns
   when to look again (monotonic ms), or -1 when no task needs it. A
   queued task gives no sign when it starts, so while one waits we look
   every START_REPORT_MS. */
static int64_t s_report_starts(session_t *self, int64_t now)
{
    int64_t next = -1;
    for (runner_task_t *t = self->head; t; t = t->next) {
        if (t->ended || t->start_reported)
            continue;
        int64_t us = atomic_load_explicit(&t->started_us, memory_order_acquire);
        int64_t due = us ? us / 1000 + START_REPORT_MS : now + START_REPORT_MS;
        if (us && now >= due) {
            s_report_start(self, t);
            continue;
        }
        if (next < 0 || due < next)
            next = due;
    }
    return next;
}

/* When a result may be sent, at the latest. A task that ran for a while
   (a command: a fork, an exec, a wait) while others still run here may
   wait for their results, so that one report carries several: a report
   costs the master a wakeup, which next to a short command is most of
   what ztask adds to it. The wait is the task's own run time in whole
   milliseconds, at least one and at most RESULT_HOLD_MS: the master keeps
   about 32 ms of tasks this short (at least one) queued per thread here
   (master/tasks.c, PREFETCH_QUEUE_MS), so a thread seldom runs dry
   meanwhile (docs/performance.md, "The exec path, fourth pass"). From
   RESULT_HOLD_MIN_RUN_US, not 1 ms: an `exec true` takes ~0.5 ms where a
   fork is cheap, and unheld its results went one report each
   (tests/unit/test_session.c). Tinier tasks (fn noop) are not held: they
   batch by themselves. */
static int64_t s_result_until(const session_t *self, runner_task_t *t, int64_t now)
{
    bool others = self->nactive > 1;   /* t itself is still counted */
    int64_t us = atomic_load_explicit(&t->started_us, memory_order_acquire);
    int64_t ran_us = us ? clock_mono_us() - us : 0;
    if (!others || !us || ran_us < RESULT_HOLD_MIN_RUN_US)
        return INT64_MIN;
    /* Whole milliseconds (the session's clock): at least one. */
    int64_t hold = (ran_us + 999) / 1000;
    return now + (hold < RESULT_HOLD_MS ? hold : RESULT_HOLD_MS);
}

static void s_read_inbox(session_t *self, int64_t now)
{
    mailbox_frame_t *f = mailbox_take(self->inbox);
    while (f) {
        mailbox_frame_t *next = f->next;
        runner_msg_t hdr;
        const char *payload;
        size_t plen;
        if (runner_msg_parse(f->data, f->size, &hdr, &payload, &plen) != 0) {
            log_error("event=bad_inbox_message size=%zu", f->size);
            free(f);
            f = next;
            continue;
        }
        switch (hdr.tag) {
        case RUNNER_MSG_OUTPUT: {
            /* The master hears of a start before the task's output. */
            runner_task_t *t = s_find(self, hdr.id, hdr.attempt);
            if (t)
                s_report_start(self, t);
            outbox_output(self->outbox, payload, plen);
            break;
        }
        case RUNNER_MSG_RESULT:
        case RUNNER_MSG_RELEASE: {
            /* From our own pool threads: the task they were given back. */
            runner_task_t *t = hdr.task;
            assert(t != NULL);
            if (hdr.tag == RUNNER_MSG_RESULT && !t->ended) {
                /* The result's text becomes the whole allocation, moved
                   to its front rather than copied: a result may be most
                   of a megabyte-sized output (docs/worker.md). */
                char *json = (char *) f;
                memmove(json, payload, plen);
                json[plen] = '\0';
                f = NULL;
                s_ended(self, t, json, plen, hdr.stored, now);
                outbox_result_until(self->outbox, json, hdr.stored,
                                    s_result_until(self, t, now));
            }
            else if (!t->ended)
                log_error("event=result_lost task=%lld attempt=%d", (long long) t->id,
                          t->attempt);
            s_unlink(self, t);
            runner_task_destroy(&t);
            break;
        }
        }
        free(f);
        f = next;
    }
}

static void s_read_pipe(session_t *self, int64_t now)
{
    self->pipe_more = true;       /* unless a receive finds it empty */
    for (int i = 0; i < PIPE_BATCH && self->pipe; i++) {
        size_t len;
        char *buf = zmqx_recv(self->pipe, &len, ZMQ_DONTWAIT);
        if (!buf) {
            if (errno == EPROTO) {
                self->last_rx = now;
                int64_t held;
                if (log_limit(&self->lim_pipe, now, &held))
                    log_warn("event=bad_pipe_message error=\"multipart message\" suppressed=%lld",
                             (long long) held);
                continue;
            }
            self->pipe_more = false;
            return;
        }
        /* Anything from the master proves it alive. */
        self->last_rx = now;
        proto_err_t err;
        proto_pipe_t *msg = proto_pipe_decode(buf, len, &err);
        free(buf);
        if (!msg) {
            int64_t held;
            char q[256];
            if (log_limit(&self->lim_pipe, now, &held))
                log_warn("event=bad_pipe_message code=%s error=\"%s\" suppressed=%lld", err.code,
                         log_quote(q, sizeof q, err.message), (long long) held);
            continue;
        }
        switch (msg->type) {
        case PROTO_PIPE_TASKS:
            s_on_tasks(self, msg);
            if (msg->seq > self->pipe_seen)
                self->pipe_seen = msg->seq;
            break;
        case PROTO_PIPE_ABORT:
            s_on_abort(self, msg->task, msg->attempt);
            break;
        case PROTO_PIPE_DRAIN:
            s_start_drain(self, "master", now);
            break;
        case PROTO_PIPE_PING:
            break;
        case PROTO_PIPE_RECALL:
            s_on_recall(self, msg);
            break;
        }
        proto_pipe_destroy(&msg);
    }
}

/* Handshake events of the api socket (CURVE only). A refusal by the
   master's allowlist is final for this attempt; a connection dropped in
   the middle of the handshake is what a wrong master key looks like from
   here, so it is kept as the reason should the hello time out. */
static void s_read_api_monitor(session_t *self, int64_t now)
{
    switch (connector_read_event(&self->api).kind) {
    case CONNECTOR_EV_SECURED:
        self->api_note = "no reply";
        break;
    case CONNECTOR_EV_REFUSED:
        if (self->api_state == API_HELLO)
            s_hello_failed(self, now,
                           "the master refused this worker's CURVE key (is its public key in "
                           "the master's --workers list?)");
        break;
    case CONNECTOR_EV_MECHANISM:
    case CONNECTOR_EV_PROTOCOL:
    case CONNECTOR_EV_NO_DETAIL:
        self->api_note = "CURVE handshake failed (is --master-key the master's public key?)";
        break;
    case CONNECTOR_EV_DISCONNECTED:
        if (!self->api_note)
            self->api_note = "the master closed the connection during the CURVE handshake (is "
                          "--master-key the master's public key?)";
        break;
    case CONNECTOR_EV_CONNECTED:
    case CONNECTOR_EV_RETRIED:   /* libzmq retries on its own; the hello times out */
    case CONNECTOR_EV_NONE:
        break;
    }
}

static void s_read_api(session_t *self, int64_t now)
{
    size_t len;
    char *buf = zmqx_recv(self->api.sock, &len, ZMQ_DONTWAIT);
    if (!buf)
        return;
    if (self->api_state == API_HELLO) {
        s_on_hello_reply(self, buf, len, now);
    } else {
        /* The drain request's answer: the master's "drain" pipe message is
           what matters, the reply only says whether it understood. */
        proto_err_t err;
        proto_reply_t *rep = proto_reply_decode(buf, len, PROTO_REQ_DRAIN, &err);
        if (rep && !rep->ok)
            log_warn("event=drain_request_refused code=%s error=\"%s\"", LOG_V(rep->error.code),
                     log_quote((char[512]){0}, 512, rep->error.message));
        proto_reply_destroy(&rep);
        s_close_api(self);
    }
    free(buf);
}

/* ---- the loop ---- */

/* Leaving on its own (idle, or the allocation's end): starts the drain
   when due; returns when to look again. */
static int64_t s_leave_timers(session_t *self, int64_t now)
{
    int64_t next = now + POLL_CAP_MS;
    if (self->phase != PHASE_RUN)
        return next;
    if (self->idle_timeout_ms > 0) {
        if (self->nactive > 0) {
            self->idle_since = 0;
        } else {
            if (!self->idle_since)
                self->idle_since = now;
            int64_t from = self->idle_since > self->idle_hold_until ? self->idle_since
                                                                    : self->idle_hold_until;
            int64_t due = from + self->idle_timeout_ms;
            if (now >= due) {
                log_info("event=idle_timeout idle_ms=%d", self->idle_timeout_ms);
                s_start_drain(self, "idle", now);
                return next;
            }
            next = s_min(next, due);
        }
    }
    if (self->ends_at > 0) {
        int64_t left_ms = (int64_t) ((self->ends_at - clock_wall()) * 1000.0) - END_MARGIN_MS;
        if (left_ms <= 0) {
            s_start_drain(self, "allocation_end", now);
            return next;
        }
        next = s_min(next, now + left_ms);
    }
    return next;
}

/* Timers due now; returns the time of the next one. */
static int64_t s_timers(session_t *self, int64_t now)
{
    int64_t next = now + POLL_CAP_MS;
    int64_t held = outbox_due(self->outbox);   /* held results */
    if (held >= 0)
        next = s_min(next, held);
    int64_t starts = s_report_starts(self, now);
    if (starts >= 0)
        next = s_min(next, starts);
    if (self->api_state != API_IDLE) {
        if (now >= self->api_deadline) {
            if (self->api_state == API_HELLO)
                s_hello_failed(self, now, self->api_note ? self->api_note : "no reply");
            else
                s_close_api(self);
        } else {
            next = s_min(next, self->api_deadline);
        }
    }
    if (self->registered) {
        int64_t dead_at = self->last_rx + (int64_t) self->liveness * self->heartbeat_ms;
        if (now >= dead_at) {
            s_master_lost(self, now);
        } else {
            next = s_min(next, dead_at);
            if (now >= self->next_hb) {
                s_send_heartbeat(self);
                self->next_hb = now + self->heartbeat_ms;
            }
            next = s_min(next, self->next_hb);
        }
    }
    if (!self->registered && self->api_state == API_IDLE) {
        if (now >= self->next_hello)
            s_send_hello(self, now);
        else
            next = s_min(next, self->next_hello);
        if (self->api_state != API_IDLE)
            next = s_min(next, self->api_deadline);
    }
    if (self->phase == PHASE_STOP)
        next = s_min(next, self->stop_deadline);
    return s_min(next, s_leave_timers(self, now));
}

static bool s_finished(session_t *self, int64_t now)
{
    if (self->phase == PHASE_RUN)
        return false;
    if (self->nactive == 0)
        return true;
    if (self->phase == PHASE_STOP && now >= self->stop_deadline) {
        log_error("event=tasks_abandoned count=%d reason=\"did not stop within %d ms\"",
                  self->nactive, self->stop_grace_ms);
        self->abandoned = true;
        return true;
    }
    return false;
}

/* BYE and the sockets. When tasks were abandoned their threads still hold
   sockets, so the context is left alone (the process is about to exit). */
static void s_shutdown(session_t *self)
{
    s_close_api(self);
    s_close(&self->pipe);
    if (outbox_bye(self->outbox))
        log_info("event=bye worker=%s unsent_reports=%d", LOG_V(self->worker_id),
                 outbox_backlog(self->outbox));
    if (self->abandoned) {
        outbox_close(self->outbox, EXIT_LINGER_MS);
        /* Give the I/O thread its linger to deliver BYE, since nobody will
           call zmq_ctx_term. */
        zmq_poll(NULL, 0, EXIT_LINGER_MS);
        return;
    }
    pool_destroy(&self->pool);
    mailbox_destroy(&self->inbox);
    outbox_close(self->outbox, EXIT_LINGER_MS);
    /* Returns once the report socket has delivered or its linger passed. */
    zmq_ctx_term(self->ctx);
    self->ctx = NULL;
}

/* Context, inbox and pool, with SIGTERM/SIGINT blocked so the threads
   libzmq and the pool start inherit the mask and never take them. */
static int s_start(session_t *self)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = -1;
    self->ctx = zmq_ctx_new();
    if (!self->ctx) {
        log_error("event=start_failed error=\"zmq_ctx_new: %s\"", zmq_strerror(errno));
        goto out;
    }
    /* Unbounded: pool threads must never block on us (runner.c). */
    self->inbox = mailbox_new();
    if (!self->inbox) {
        log_error("event=start_failed error=\"inbox: %s\"", strerror(errno));
        goto out;
    }
    self->rctx.mailbox = self->inbox;
    self->rctx.fns = self->fns;
    self->rctx.kill_grace_ms = self->kill_grace_ms;
    /* main() has installed its handlers (and ignores SIGPIPE) by now. */
    exec_changed_signals(&self->rctx.changed_signals);
    pool_callbacks_t cb;
    runner_pool_callbacks(&self->rctx, &cb);
    self->pool = pool_new(self->threads, &cb);
    if (!self->pool) {
        log_error("event=start_failed error=\"cannot start %d threads\"", self->threads);
        goto out;
    }
    rc = 0;
out:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_sigmask(SIG_UNBLOCK, &block, NULL);
    if (rc != 0) {
        pool_destroy(&self->pool);
        mailbox_destroy(&self->inbox);
        if (self->ctx)
            zmq_ctx_term(self->ctx);
        self->ctx = NULL;
    }
    return rc;
}

/* Which sockets s_wait found worth reading. */
typedef struct {
    bool inbox, pipe, api, monitor;
} ready_t;

/* zmq_poll asks every ZeroMQ socket for its events before it sleeps and
   again after (libzmq: a getpid and a poll of the socket's command
   mailbox each time): with the pipe (and the inbox when it was an inproc
   socket) that cost up to ten system calls a wakeup, per command for
   short ones. The pipe only ever receives here, and a receive that found
   nothing has first processed its pending commands (libzmq does that
   before it answers EAGAIN): from then on its ZMQ_FD turns readable when
   a message arrives, so one poll of that descriptor and the inbox's
   eventfd does. A pipe that may still hold messages (a new socket, a
   batch cut short) is read again without sleeping. While a request to
   the API is out (hello, drain: that socket sends too, and has a
   monitor), zmq_poll as before. 0, or -1 with errno. */
static int s_wait(session_t *self, long timeout, ready_t *r)
{
    memset(r, 0, sizeof *r);
    if (self->api.sock || self->api.monitor) {
        zmq_pollitem_t items[4];
        int n = 0, ipipe = -1, iapi = -1, imon = -1;
        items[n++] = (zmq_pollitem_t) {.fd = mailbox_fd(self->inbox), .events = ZMQ_POLLIN};
        if (self->pipe) {
            ipipe = n;
            items[n++] = (zmq_pollitem_t) {.socket = self->pipe, .events = ZMQ_POLLIN};
        }
        if (self->api.sock) {
            iapi = n;
            items[n++] = (zmq_pollitem_t) {.socket = self->api.sock, .events = ZMQ_POLLIN};
        }
        if (self->api.monitor) {
            imon = n;
            items[n++] = (zmq_pollitem_t) {.socket = self->api.monitor, .events = ZMQ_POLLIN};
        }
        if (zmq_poll(items, n, timeout) < 0)
            return -1;
        r->inbox = items[0].revents & ZMQ_POLLIN;
        r->pipe = ipipe >= 0 && (items[ipipe].revents & ZMQ_POLLIN);
        r->api = iapi >= 0 && (items[iapi].revents & ZMQ_POLLIN);
        r->monitor = imon >= 0 && (items[imon].revents & ZMQ_POLLIN);
        return 0;
    }
    struct pollfd pfd[2];
    int n = 0;
    pfd[n++] = (struct pollfd) {.fd = mailbox_fd(self->inbox), .events = POLLIN};
    if (self->pipe) {
        int fd = -1;
        size_t size = sizeof fd;
        if (zmq_getsockopt(self->pipe, ZMQ_FD, &fd, &size) != 0)
            return -1;
        pfd[n++] = (struct pollfd) {.fd = fd, .events = POLLIN};
    }
    bool pipe_more = self->pipe && self->pipe_more;
    if (poll(pfd, (nfds_t) n, pipe_more ? 0 : (int) timeout) < 0)
        return -1;
    r->inbox = pfd[0].revents != 0;
    r->pipe = pipe_more || (n > 1 && pfd[1].revents);
    return 0;
}

int session_run(session_t *self)
{
    if (!self || self->ctx)
        return -1;
    if (s_start(self) != 0)
        return -1;
    int64_t now = clock_mono_ms();
    self->next_hello = now;
    const exec_policy_t *pol = self->rctx.policy;
    log_info("event=start name=%s master=%s:%d threads=%d no_exec=%d allow_exec=%zu curve=%d "
             "run_as=%s task_rlimit=\"%s\"",
             LOG_V(self->name), connector_host(self->uplink), connector_port(self->uplink),
             self->threads, self->no_exec ? 1 : 0, allow_count(self->allow),
             connector_curve(self->uplink) ? 1 : 0, pol && pol->run_as ? pol->user : "-",
             policy_rlimits_text(pol));
    for (;;) {
        now = clock_mono_ms();
        s_check_signals(self, now);
        int64_t next = s_timers(self, now);
        if (s_finished(self, now))
            break;
        long timeout = (long) (next - now);
        if (timeout < 0)
            timeout = 0;
        ready_t ready;
        if (s_wait(self, timeout, &ready) < 0) {
            if (errno == EINTR)
                continue;
            log_error("event=poll_failed error=\"%s\"", zmq_strerror(errno));
            break;
        }
        now = clock_mono_ms();
        if (ready.inbox)
            s_read_inbox(self, now);
        if (ready.pipe && self->pipe)
            s_read_pipe(self, now);
        /* Each handler below may close the api socket the other polled. */
        if (ready.api && self->api.sock)
            s_read_api(self, now);
        if (ready.monitor && self->api.monitor)
            s_read_api_monitor(self, now);
        outbox_flush(self->outbox, now, self->nactive == 0);
    }
    outbox_flush(self->outbox, INT64_MAX, true);
    s_shutdown(self);
    return self->abandoned ? 1 : 0;
}

/* ---- new / destroy ---- */

session_t *session_new(const session_config_t *cfg)
{
    if (!cfg || !cfg->name || !*cfg->name || cfg->threads < 1 || !cfg->fns || cfg->nlabels < 0
        || (cfg->nlabels > 0 && !cfg->labels))
        return NULL;
    connector_t *uplink = connector_new(&(connector_config_t){
        .host = cfg->master_host,
        .port = cfg->master_port,
        .server_key = cfg->curve_server_key,
        .public_key = cfg->curve_public_key,
        .secret_key = cfg->curve_secret_key,
    });
    if (!uplink)
        return NULL;
    session_t *self = xcalloc(1, sizeof *self);
    self->uplink = uplink;
    self->outbox = outbox_new();
    self->name = xstrdup(cfg->name);
    self->hostname = xstrdup(cfg->hostname ? cfg->hostname : "");
    self->threads = cfg->threads;
    self->nlabels = cfg->nlabels;
    self->labels = xcalloc((size_t) cfg->nlabels + 1, sizeof *self->labels);
    for (int i = 0; i < cfg->nlabels; i++)
        self->labels[i] = xstrdup(cfg->labels[i]);
    self->no_exec = cfg->no_exec;
    if (cfg->resources) {
        self->resources = xmalloc(sizeof *self->resources);
        *self->resources = *cfg->resources;
    }
    if (cfg->ngpu_ids > 0) {
        self->gpu_ids = xcalloc((size_t) cfg->ngpu_ids + 1, sizeof *self->gpu_ids);
        for (int i = 0; i < cfg->ngpu_ids; i++)
            self->gpu_ids[i] = xstrdup(cfg->gpu_ids[i]);
        self->ngpu_ids = cfg->ngpu_ids;
    }
    self->allow = cfg->allow_exec;
    self->fns = cfg->fns;
    self->signals = cfg->signals;
    self->kill_grace_ms = cfg->kill_grace_ms;
    self->rctx.reaper = cfg->reaper;
    self->rctx.policy = cfg->policy;
    self->hello_timeout_ms = cfg->hello_timeout_ms > 0 ? cfg->hello_timeout_ms : HELLO_TIMEOUT_MS;
    self->drop_task = cfg->drop_task;
    self->stop_grace_ms = cfg->stop_grace_ms > 0 ? cfg->stop_grace_ms : STOP_GRACE_MS;
    self->idle_timeout_ms = cfg->idle_timeout_ms > 0 ? cfg->idle_timeout_ms : 0;
    self->ends_at = cfg->ends_at > 0 ? cfg->ends_at : 0;
    self->slurm_job = xstrdup(cfg->slurm_job);
    self->backoff_ms = BACKOFF_MIN_MS;
    self->rng = jitter_seed(self);
    return self;
}

void session_destroy(session_t **p)
{
    if (!p || !*p)
        return;
    session_t *self = *p;
    *p = NULL;
    if (self->abandoned)
        return;     /* threads still use it; the process is exiting */
    /* session_run has returned (or never ran): no pool thread is left, so
       every task still in the table is ours to free. */
    pool_destroy(&self->pool);
    while (self->head) {
        runner_task_t *t = self->head;
        s_unlink(self, t);
        runner_task_destroy(&t);
    }
    s_close_api(self);
    s_close(&self->pipe);
    mailbox_destroy(&self->inbox);
    outbox_destroy(&self->outbox);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    for (int i = 0; i < self->nlabels; i++)
        free(self->labels[i]);
    free(self->labels);
    free(self->resources);
    for (int i = 0; i < self->ngpu_ids; i++)
        free(self->gpu_ids[i]);
    free(self->gpu_ids);
    for (int i = 0; i < self->nended; i++)
        s_drop_text(self, s_ended_at(self, i));
    free(self->worker_id);
    free(self->name);
    free(self->hostname);
    free(self->slurm_job);
    connector_destroy(&self->uplink);
    free(self);
}
