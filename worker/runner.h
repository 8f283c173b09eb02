/*  runner: what a pool thread does with one task, and how it tells the
    session about it.

    The session thread turns each task of a "tasks" pipe message into a
    runner_task_t, keeps it in its table and hands it to the pool. A pool
    thread then runs it (runner_pool_callbacks wires this up): it sends
    STARTED, runs exec_run or fn_run with the task's cancel flag, forwards
    live output as ready-made OUTPUT reports, encodes the result with
    proto_result_encode and sends RESULT. The session batches STARTED and
    RESULT messages into one report each per loop wakeup.

    Channel: the session's mailbox (mailbox.h, runner_ctx_t.mailbox),
    which every pool thread puts frames into. A message is one frame: a
    runner_msg_t header followed by payload bytes (OUTPUT: an encoded
    OUTPUT report; RESULT: an encoded result object). The payload is in
    the frame (a RESULT's frame is the buffer the result was encoded in,
    with room left for the header, so it is not copied), so no heap
    pointer but the task itself crosses threads and nothing leaks if a
    frame is dropped at exit.

    Task ownership and threads:
    - The session creates a task, fills every field but the atomics, and
      only then pool_submit()s it; after that the plain fields are
      read-only for everyone. The pool thread borrows the task.
    - state decides who ends a task that has not started: the pool thread
      moves it QUEUED -> RUNNING, the session (abort, hard stop, a
      master's recall) QUEUED -> ABORTED; one compare-and-swap wins.
      cancel is set by the session at any time and polled by
      exec_run/fn_run.
    - The pool thread's last word on a task is RESULT (it ran it) or
      RELEASE (the session had already ended it); after sending either it
      never touches the task again and the session frees it on receipt.
      Tasks still queued when the pool is destroyed are freed by the
      session (the pool's discard callback is not used).
    - The pool thread says a task has started without a message: it sets
      started_wall, then started_us (release); the session reads started_us
      (acquire) when it looks for starts to report (a task that ends soon
      after never needs its start reported: its result says it).
    - The session-only fields (prev, next, ended, start_reported) are never
      read by pool threads.
*/
#ifndef ZTASK_RUNNER_H
#define ZTASK_RUNNER_H

#include "../proto/proto.h"
#include "fn.h"
#include "mailbox.h"
#include "policy.h"
#include "pool.h"
#include "reaper.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { RUNNER_QUEUED = 0, RUNNER_RUNNING, RUNNER_ABORTED };

typedef struct runner_task runner_task_t;
struct runner_task {
    /* Written by the session before pool_submit; read-only afterwards. */
    int64_t id;
    int64_t job;
    int attempt;
    proto_spec_t *spec;     /* owned */
    char *worker_id;        /* id to put in OUTPUT reports (the one current
                               when the task arrived) */
    char *gpus;             /* the GPU ids the master gave it (owned), NULL =
                               none: told again in a hello, so a restarted
                               master knows which devices it holds */
    char claim[PROTO_CLAIM_MAX + 1];  /* its claim token ("" = none), given
                               back unread with its result and in a hello:
                               the proof a restarted master asks of a claim */
    /* Shared. */
    atomic_bool cancel;
    atomic_int state;       /* RUNNER_QUEUED / RUNNING / ABORTED */
    double started_wall;    /* pool thread, once, before started_us */
    _Atomic int64_t started_us;  /* monotonic us it started, 0 before */
    /* Session thread only. */
    runner_task_t *prev, *next;
    bool ended;             /* the session already reported a result */
    bool start_reported;    /* its start went into the outbox */
};

/* A queued task; takes ownership of *spec (nulled). worker_id is copied. */
runner_task_t *runner_task_new(int64_t id, int64_t job, int attempt, proto_spec_t **spec,
                               const char *worker_id);
/* Frees a task; accepts NULL, nulls *p. Only when no pool thread holds it. */
void runner_task_destroy(runner_task_t **p);

/* What every pool thread shares; set up by the session before pool_new and
   read-only afterwards. */
typedef struct {
    mailbox_t *mailbox;           /* the session's: where results and output go */
    const fn_registry_t *fns;     /* read-only while the pool runs */
    int kill_grace_ms;            /* 0 = exec's default */
    reaper_t *reaper;             /* slot i for thread i (exec_req_t.slot); may be NULL */
    sigset_t changed_signals;     /* exec_changed_signals at start */
    const exec_policy_t *policy;  /* commands' user and rlimits; NULL = none (borrowed) */
    /* The master reads base64 output (its hello reply said report_b64):
       set by the session at each registration, read by pool threads when
       they encode a result or an OUTPUT report. */
    atomic_bool report_b64;
} runner_ctx_t;

/* Fills cb with the pool callbacks for a pool whose arg is ctx. */
void runner_pool_callbacks(runner_ctx_t *ctx, pool_callbacks_t *cb);

/* Message header (the frame starts with these bytes). */
enum {
    RUNNER_MSG_OUTPUT = 'O',    /* payload: an encoded OUTPUT report */
    RUNNER_MSG_RESULT = 'R',    /* payload: an encoded result; task is back */
    RUNNER_MSG_RELEASE = 'X'    /* task is back, nothing to report */
};

typedef struct {
    int tag;
    int attempt;
    int64_t id;
    runner_task_t *task;        /* NULL for OUTPUT */
    /* RESULT: the result's length as the master stores it (plain
       strings), which the outbox joins results by. */
    size_t stored;
} runner_msg_t;

/* Splits a received frame into header and payload (borrowed from data).
   0, or -1 when the frame is too short or has an unknown tag. */
int runner_msg_parse(const void *data, size_t size, runner_msg_t *hdr, const char **payload,
                     size_t *payload_len);

/* An encoded result for a task that ends without running (refused,
   cancelled while queued): status and error as given, started = finished =
   now, with the attempt's claim token (NULL or "" = none). malloc'd; NULL
   only if encoding failed. */
char *runner_result_now(int64_t id, int attempt, const char *claim, proto_state_t status,
                        const char *error);

#endif
