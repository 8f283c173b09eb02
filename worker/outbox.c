#include "outbox.h"

#include "../common/log.h"
#include "../common/util.h"
#include "../common/zmqx.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* A RESULTS report stays under the master's message limit, and so does
   what the master stores of it: results are joined while the sum of
   their plain sizes (base64 output is up to 4.5 x longer once stored)
   stays under this too, or the master would drop outputs past its limit
   for one report (proto_result.c, pr_result_from's room). */
#define REPORT_MAX_BYTES ((size_t) PROTO_MAX_REPORT_MSG - 16 * 1024)

struct outbox {
    void *sock;
    char *worker;
    /* Batched until the next flush. */
    proto_task_ref_t *started;
    double *started_at;
    int nstarted, capstarted;
    char **results;
    size_t *stored;          /* each result's plain size (outbox_result_until) */
    int nresults, capresults;
    int64_t results_due;     /* monotonic ms; meaningful while nresults > 0 */
    /* Reports that must arrive and found no room, oldest first. */
    char **backlog;
    int nbacklog, capbacklog;
};

static void s_push(char ***arr, int *n, int *cap, char *item)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *arr = xrealloc(*arr, (size_t) *cap * sizeof **arr);
    }
    (*arr)[(*n)++] = item;
}

outbox_t *outbox_new(void)
{
    return xcalloc(1, sizeof(outbox_t));
}

void outbox_destroy(outbox_t **p)
{
    if (!p || !*p)
        return;
    outbox_t *self = *p;
    if (self->sock)
        zmq_close(self->sock);
    for (int i = 0; i < self->nresults; i++)
        free(self->results[i]);
    free(self->results);
    free(self->stored);
    for (int i = 0; i < self->nbacklog; i++)
        free(self->backlog[i]);
    free(self->backlog);
    free(self->started);
    free(self->started_at);
    free(self->worker);
    free(self);
    *p = NULL;
}

void outbox_attach(outbox_t *self, void **sock)
{
    assert(sock && *sock);
    if (self->sock)
        zmq_close(self->sock);
    self->sock = *sock;
    *sock = NULL;
}

bool outbox_attached(const outbox_t *self)
{
    return self->sock != NULL;
}

void outbox_close(outbox_t *self, int linger_ms)
{
    if (!self->sock)
        return;
    zmq_setsockopt(self->sock, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    zmq_close(self->sock);
    self->sock = NULL;
}

void outbox_set_worker(outbox_t *self, const char *id)
{
    free(self->worker);
    self->worker = xstrdup(id);
}

int outbox_backlog(const outbox_t *self)
{
    return self->nbacklog;
}

/* Sends the backlog in order; stops at the first refusal. */
static void s_flush_backlog(outbox_t *self)
{
    if (!self->sock)
        return;
    int sent = 0;
    while (sent < self->nbacklog) {
        char **text = &self->backlog[sent];
        if (zmqx_send_take(self->sock, text, strlen(*text), ZMQ_DONTWAIT) != 0)
            break;
        sent++;
    }
    if (sent) {
        memmove(self->backlog, self->backlog + sent,
                (size_t) (self->nbacklog - sent) * sizeof *self->backlog);
        self->nbacklog -= sent;
    }
}

/* Sends one encoded report (taken). must: keep it until it can go. */
static void s_send(outbox_t *self, char *text, bool must)
{
    if (!text)
        return;
    if (must && self->nbacklog > 0) {
        s_push(&self->backlog, &self->nbacklog, &self->capbacklog, text);
        s_flush_backlog(self);
        return;
    }
    if (self->sock && zmqx_send_take(self->sock, &text, strlen(text), ZMQ_DONTWAIT) == 0)
        return;
    if (must) {
        if (self->nbacklog == 0)
            log_warn("event=report_backlog reason=\"%s\"",
                     self->sock ? zmq_strerror(errno) : "no report socket");
        s_push(&self->backlog, &self->nbacklog, &self->capbacklog, text);
    } else {
        log_debug("event=report_dropped error=\"%s\"", zmq_strerror(errno));
        free(text);
    }
}

static const char *s_worker(const outbox_t *self)
{
    return self->worker ? self->worker : "";
}

static void s_flush_started(outbox_t *self)
{
    if (self->nstarted == 0)
        return;
    proto_report_t *rep = proto_report_new(PROTO_REP_STARTED, s_worker(self));
    rep->started = self->started;
    rep->started_at = self->started_at;
    rep->nstarted = self->nstarted;
    self->started = NULL;
    self->started_at = NULL;
    self->nstarted = self->capstarted = 0;
    char *text = proto_report_encode(rep);
    proto_report_destroy(&rep);
    s_send(self, text, false);
}

void outbox_started(outbox_t *self, int64_t task, int attempt, double at)
{
    if (self->nstarted == self->capstarted) {
        self->capstarted = self->capstarted ? self->capstarted * 2 : 16;
        self->started = xrealloc(self->started, (size_t) self->capstarted * sizeof *self->started);
        self->started_at =
            xrealloc(self->started_at, (size_t) self->capstarted * sizeof *self->started_at);
    }
    self->started[self->nstarted].task = task;
    self->started[self->nstarted].attempt = attempt;
    self->started_at[self->nstarted] = at;
    self->nstarted++;
}

void outbox_output(outbox_t *self, const char *text, size_t len)
{
    s_flush_started(self);
    s_send(self, xstrndup(text, len), false);
}

void outbox_result_until(outbox_t *self, char *json, size_t stored, int64_t until)
{
    if (!json)
        return;
    if (self->nresults == 0 || until < self->results_due)
        self->results_due = until;
    size_t len = strlen(json);
    int cap = self->capresults;
    s_push(&self->results, &self->nresults, &self->capresults, json);
    if (cap != self->capresults)
        self->stored = xrealloc(self->stored, (size_t) self->capresults * sizeof *self->stored);
    /* Never less than the text: plain strings are stored as they came. */
    self->stored[self->nresults - 1] = stored > len ? stored : len;
}

void outbox_result(outbox_t *self, char *json)
{
    outbox_result_until(self, json, 0, INT64_MIN);
}

static void s_flush_results(outbox_t *self);

void outbox_heartbeat(outbox_t *self, const proto_task_ref_t *running, int n, int64_t seen)
{
    if (seen > 0) {
        /* The master reads seen as "every attempt not listed has its
           report before this one": the held results go now (once a
           heartbeat: their few milliseconds of batching are not missed),
           and while the backlog holds reports the heartbeat would
           overtake them, so it says nothing of seen. */
        if (self->nresults)
            s_flush_results(self);
        if (self->nbacklog)
            seen = 0;
    }
    proto_report_t *rep = proto_report_new(PROTO_REP_HEARTBEAT, s_worker(self));
    rep->seen = seen;
    rep->running = xcalloc((size_t) (n ? n : 1), sizeof *rep->running);
    /* Ids only: a heartbeat names no devices (the report owns what it holds). */
    for (int i = 0; i < n; i++)
        rep->running[i] = (proto_task_ref_t){.task = running[i].task, .attempt = running[i].attempt};
    rep->nrunning = n;
    char *text = proto_report_encode(rep);
    proto_report_destroy(&rep);
    s_send(self, text, false);
}

/* A report of refs (RECALLED or LOST), sent now and never dropped. */
static void s_send_refs(outbox_t *self, proto_report_type_t type, const proto_task_ref_t *refs,
                        int n)
{
    proto_report_t *rep = proto_report_new(type, s_worker(self));
    proto_task_ref_t *copy = xcalloc((size_t) (n ? n : 1), sizeof *copy);
    for (int i = 0; i < n; i++)
        copy[i] = (proto_task_ref_t){.task = refs[i].task, .attempt = refs[i].attempt};
    if (type == PROTO_REP_LOST) {
        rep->lost = copy;
        rep->nlost = n;
    } else {
        rep->recalled = copy;
        rep->nrecalled = n;
    }
    char *text = proto_report_encode(rep);
    proto_report_destroy(&rep);
    s_send(self, text, true);
}

void outbox_recalled(outbox_t *self, const proto_task_ref_t *refs, int n)
{
    /* Must: the master holds those tasks until it hears (or its lease
       for them runs out), and lets no other recall go to this worker. */
    s_send_refs(self, PROTO_REP_RECALLED, refs, n);
}

void outbox_lost(outbox_t *self, const proto_task_ref_t *refs, int n)
{
    /* Must: the master holds those tasks as running here until it hears,
       with nothing else to end them. Behind every result already given
       (s_send keeps order), so a result that was on its way comes first. */
    s_send_refs(self, PROTO_REP_LOST, refs, n);
}

/* A result this big goes in a report of its own, made in its buffer:
   joined with others it would be copied, and the copy held beside it. */
#define RESULT_ALONE_BYTES ((size_t) 64 * 1024)

static void s_flush_results(outbox_t *self)
{
    int i = 0;
    while (i < self->nresults) {
        size_t first = strlen(self->results[i]);
        if (first >= RESULT_ALONE_BYTES) {
            s_send(self, proto_report_wrap_result(s_worker(self), &self->results[i]), true);
            i++;
            continue;
        }
        /* Joined while what the master stores of the report stays under
           the limit: results of base64 output may be small here and 4.5 x
           as big there. A stored size is never less than its text
           (outbox_result_until), so the report as sent stays under too. */
        size_t stored = 0;
        int j = i;
        do
            stored += self->stored[j++] + 1;
        while (j < self->nresults && strlen(self->results[j]) < RESULT_ALONE_BYTES
               && stored + self->stored[j] < REPORT_MAX_BYTES);
        char *text = proto_report_encode_results_raw(s_worker(self), j - i,
                                                     (const char *const *) self->results + i);
        /* Freed before the report is sent (handed to libzmq, not
           copied): a result is held twice at most, as itself and in its
           report, and only while the report is made. */
        for (int k = i; k < j; k++) {
            free(self->results[k]);
            self->results[k] = NULL;
        }
        if (text)
            s_send(self, text, true);
        else
            log_error("event=results_encode_failed count=%d", j - i);
        i = j;
    }
    self->nresults = 0;
}

int64_t outbox_due(const outbox_t *self)
{
    if (!self->nresults)
        return -1;
    return self->results_due < 0 ? 0 : self->results_due;
}

void outbox_flush(outbox_t *self, int64_t now, bool idle)
{
    s_flush_started(self);
    if (self->nresults && (idle || now >= self->results_due))
        s_flush_results(self);
    s_flush_backlog(self);
}

bool outbox_bye(outbox_t *self)
{
    outbox_flush(self, INT64_MAX, true);
    if (!self->worker || !self->sock)
        return false;
    /* Through the backlog, so BYE never overtakes results: a master that
       saw BYE first would requeue those tasks. */
    proto_report_t *rep = proto_report_new(PROTO_REP_BYE, self->worker);
    s_send(self, proto_report_encode(rep), true);
    proto_report_destroy(&rep);
    return true;
}
