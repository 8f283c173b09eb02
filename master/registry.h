/*  registry: the workers the master knows, alive or recently gone.

    A worker registers with "hello" on the API socket; the master then binds
    a PUSH socket for it alone (its task pipe), so it always knows which
    worker holds which task and sends a task only where a thread is free.
    A worker is alive while its reports keep arriving; after `liveness`
    missed heartbeat intervals it is dead, and the master takes its tasks
    back. A worker that says bye has left (a drain, a stop) rather than
    died. Gone workers stay listed for REGISTRY_KEEP_GONE_MS (ztask workers
    --all shows them; a worker that comes back as the same process gets
    its record back), then registry_prune forgets them.

    Ownership: worker records and their pipe sockets belong to the registry;
    pointers it returns are borrowed until registry_forget/registry_destroy.
    Threads: main loop only.
*/
#ifndef ZTASK_REGISTRY_H
#define ZTASK_REGISTRY_H

#include "resources.h"
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
    bool recall;              /* its hello said it answers "recall" (tasks.c) */
    int64_t recall_until;     /* monotonic ms: a recall is out to it until its
                                 "recalled" comes or this passes; 0 = none */
    int recall_asked;         /* tasks that recall asked for */
    int64_t recall_idle_until; /* monotonic ms: idle, it found nothing to recall for
                                  it (s_recall) and is not looked for again before */
    char *recall_for;         /* owned: the idle worker that recall is for (its
                                 asks count against that worker's free threads
                                 until the answer); NULL = none */
    char *slurm_job;          /* the Slurm job it runs in (alloc.h), NULL = none */
    double ends_at;           /* wall seconds it leaves at (its allocation ends), 0 = never */
    void *pipe;               /* PUSH bound for this worker, NULL when dead */
    int task_port;
    bool pipe_ready;          /* a ping went through: the worker's PULL is connected */
    bool alive;
    bool draining;
    bool drain_sent;          /* the drain message went into its pipe (worker_send_drain) */
    bool left;                /* gone because it said bye (not dead: a drain, a stop) */
    int64_t last_seen;        /* monotonic ms of the last report */
    double last_heartbeat;    /* wall seconds, for people */
    int64_t last_ping;        /* monotonic ms of the last ping sent */
    int64_t seq_sent;         /* the "seq" of the last "tasks" message sent to it
                                 since its hello, 0 = none: a heartbeat that says
                                 it has read this one is compared with its tasks
                                 (tasks.c, s_compare_heartbeat) */
    int64_t gone_since;       /* monotonic ms it died or left */
    double gone_at;           /* wall seconds it died or left, for people; 0 while alive */
    int inflight;             /* tasks assigned or running on it */
    int suspects;             /* of those, tasks that were on a worker that died */
    double task_ms;           /* moving average of its tasks' run time */
    int64_t samples;          /* results that fed task_ms */
    int64_t done, failed;
    sched_task_t *tasks;      /* its tasks, linked through wprev/wnext */
    int64_t *charged;         /* tasks charged a crash when it was lost, owned */
    int ncharged;
    res_pool_t pool;          /* what it declared and what its tasks use (resources.h) */
    struct imap *grants;      /* task id -> res_grant_t (owned) of its tasks given
                                 GPU devices; NULL while none */
} worker_t;

typedef struct registry registry_t;

typedef struct {
    void *zmq_ctx;
    const char *bind_addr;    /* task pipes bind here (copied) */
    int port_lo, port_hi;     /* on the first free port of the range; 0 = ephemeral */
    const char *curve_secret; /* Z85 (borrowed: the master's one copy outlives the
                                 registry): pipes are CURVE servers in the ZAP
                                 domain "pipe KEY" (KEY: the worker's); NULL = none */
    int max_per_key;          /* live workers one CURVE key may hold; 0 = no cap
                                 (without CURVE every worker has the key "": no cap) */
} registry_config_t;

registry_t *registry_new(const registry_config_t *cfg);
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
    bool recall;              /* answers "recall" pipe messages */
    const res_set_t *resources;   /* what it declared; NULL = cpus=threads */
    char *const *gpu_ids;     /* its GPU devices, ngpu_ids of them */
    int ngpu_ids;
    const char *slurm_job;    /* the Slurm job it runs in, NULL = none */
    double ends_at;           /* wall seconds it leaves at, 0 = never */
} registry_hello_t;

/* Registers a worker: a new record (id derived from name), or the same
   record when a live worker of that id registers again (after it lost the
   master for a while: same host, pid and key). Binds a fresh pipe either
   way. Its resource pool is made from its declaration, unless it still
   holds tasks (the same live process registering again keeps its pool).
   NULL with *code (a PROTO_E_* code) and err filled when its key already
   holds max_per_key live workers (PROTO_E_QUOTA: one key cannot take
   every task port), no pipe could be bound (PROTO_E_INTERNAL) or its
   declaration does not hold together (PROTO_E_FIELD: gpus that disagree
   with the devices). */
worker_t *registry_hello(registry_t *self, const registry_hello_t *hello, int64_t now,
                         const char **code, char *err, size_t errlen);

worker_t *registry_find(registry_t *self, const char *id);

/* Marks a worker gone, dead or left (it said bye), and closes its pipe.
   Its tasks must have been taken back by the caller first (asserted). */
void registry_gone(registry_t *self, worker_t *w, int64_t now, bool left);

/* How long a gone worker's record is kept (docs/cli.md, workers). */
#define REGISTRY_KEEP_GONE_MS (3600 * 1000)

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

/* Tells a draining worker, over its pipe, to finish its tasks and leave;
   once it went out (drain_sent), never again. A pipe whose worker has not
   connected yet refuses it (EAGAIN: a `ztask drain` right after the
   hello), so tasks_timers calls this again once the pipe is ready: a
   drain is never lost. */
void worker_send_drain(worker_t *w);

/* True when the worker has every label in require. */
bool worker_has_labels(const worker_t *w, char *const *require, int nrequire);

/* True when the worker runs function fn (NULL: any function will do);
   a worker that did not list its functions is taken to run every one. */
bool worker_has_fn(const worker_t *w, const char *fn);

#endif
