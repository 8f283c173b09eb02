/*  registry: the workers the master knows, alive or recently gone.

    A worker registers with "hello" on the API socket; the master then binds
    a PUSH socket for it alone (its task pipe), so it always knows which
    worker holds which task and sends a task only where a thread is free.
    A worker is alive while its reports keep arriving; after `liveness`
    missed heartbeat intervals it is dead, and the master takes its tasks
    back. Dead workers stay listed for a while (ztask workers shows them).

    Ownership: worker records and their pipe sockets belong to the registry;
    pointers it returns are borrowed until registry_forget/registry_destroy.
    Threads: main loop only.
*/
#ifndef ZTASK_REGISTRY_H
#define ZTASK_REGISTRY_H

#include "sched.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct worker {
    char *id;                 /* unique: the worker's name, suffixed on clashes */
    char *host;
    char key[48];             /* Z85 CURVE key that registered it ("" without CURVE) */
    int pid;
    int threads;
    char **labels;
    int nlabels;
    char **fns;               /* the functions it runs, sorted (nfns); none = any
                                 (a worker that did not say: older than this master) */
    int nfns;
    bool no_exec;
    char *slurm_job;          /* the Slurm job it runs in (alloc.h), NULL = none */
    double ends_at;           /* wall seconds it leaves at (its allocation ends), 0 = never */
    void *pipe;               /* PUSH bound for this worker, NULL when dead */
    int task_port;
    bool pipe_ready;          /* a ping went through: the worker's PULL is connected */
    bool alive;
    bool draining;
    int64_t last_seen;        /* monotonic ms of the last report */
    double last_heartbeat;    /* wall seconds, for people */
    int64_t last_ping;        /* monotonic ms of the last ping sent */
    int64_t gone_since;       /* monotonic ms it died or left */
    int inflight;             /* tasks assigned or running on it */
    int suspects;             /* of those, tasks that were on a worker that died */
    double task_ms;           /* moving average of its tasks' run time */
    int64_t samples;          /* results that fed task_ms */
    int64_t done, failed;
    sched_task_t *tasks;      /* its tasks, linked through wprev/wnext */
    int64_t *charged;         /* tasks charged a crash when it was lost, owned */
    int ncharged;
} worker_t;

typedef struct registry registry_t;

/* Task pipes bind on bind_addr, on an ephemeral port when port_lo is 0,
   else on the first free port of [port_lo, port_hi]; as CURVE servers in
   the ZAP domain "pipe KEY" (KEY: the worker's) when curve_secret (Z85) is
   not NULL. */
registry_t *registry_new(void *zmq_ctx, const char *bind_addr, int port_lo, int port_hi,
                         const char *curve_secret);
void registry_destroy(registry_t **p);

/* What a worker says of itself in its hello; the strings are borrowed. */
typedef struct {
    const char *name;         /* wanted id; suffixed "#k" when a live other has it */
    const char *key;          /* Z85 CURVE key it registered with ("" without CURVE) */
    const char *host;         /* NULL = "" */
    int pid;
    int threads;
    char *const *labels;      /* nlabels of them, copied */
    int nlabels;
    char *const *fns;         /* the functions it runs, nfns of them, copied; 0 = any */
    int nfns;
    bool no_exec;             /* runs functions only */
    const char *slurm_job;    /* the Slurm job it runs in, NULL = none */
    double ends_at;           /* wall seconds it leaves at, 0 = never */
} registry_hello_t;

/* Registers a worker: a new record (id derived from name), or the same
   record when a live worker of that id registers again (after it lost the
   master for a while: same host, pid and key). Binds a fresh pipe either
   way. NULL with err filled when no pipe could be bound. */
worker_t *registry_hello(registry_t *self, const registry_hello_t *hello, int64_t now, char *err,
                         size_t errlen);

worker_t *registry_find(registry_t *self, const char *id);

/* Marks a worker gone (dead or said bye) and closes its pipe. Its tasks
   must have been taken back by the caller first (asserted). */
void registry_gone(registry_t *self, worker_t *w, int64_t now);

/* Drops records of workers gone for longer than keep_ms. */
void registry_prune(registry_t *self, int64_t now, int64_t keep_ms);

/* Iteration in registration order: *pos starts at 0. */
worker_t *registry_next(registry_t *self, size_t *pos);
size_t registry_count(const registry_t *self);

/* Links/unlinks a task to/from a worker's list, keeping inflight in step.
   A task is on one worker's list at most: attach takes one on none,
   detach one on w (asserted). */
void worker_attach(worker_t *w, sched_task_t *t);
void worker_detach(worker_t *w, sched_task_t *t);

/* True when the worker has every label in require. */
bool worker_has_labels(const worker_t *w, char *const *require, int nrequire);

/* True when the worker runs function fn (NULL: any function will do);
   a worker that did not list its functions is taken to run every one. */
bool worker_has_fn(const worker_t *w, const char *fn);

#endif
