/*  resources: what a worker has (cpus, memory, GPUs, named resources) and
    what a task asks for; whether a task fits on a worker now, or ever;
    which GPU devices it gets. Pure bookkeeping: no I/O, no clock, no
    sockets, so the placement rules are unit-tested on their own
    (tests/unit/test_resources.c) and the dispatch in tasks.c only asks.

    Amounts: every resource is a named integer amount. "cpus" counts
    CPUs, "mem" bytes, "gpus" thousandths of a GPU (RES_GPU_UNIT: a task
    asking 0.5 GPU asks 500, one asking 2 asks 2000), any other name
    (a licence, a disk) whole units. A request names what it needs; a
    task that names nothing (a "plain" task) needs one CPU.

    A worker's pool (res_pool_t) holds what it declared and what the
    tasks it holds use. Two kinds of task share it:

      - tasks with a request are counted in full from the moment they are
        sent (assigned) until they leave the worker: they are never sent
        beyond what is free, so no prefetch for them;
      - plain tasks keep the credit of before (threads + prefetch): they
        may wait in the worker's queue, and at most `threads` of them
        run at once, so they count as min(plain tasks held, threads) CPUs.

    So the CPUs of running tasks never exceed the declaration: requested
    ones + plain ones that can run <= cpus. Every task takes a thread; a
    task with a request is sent only while requested tasks + the plain
    ones that can run leave a thread for it.

    GPUs are devices, not only a count: a whole-GPU request (1, 2, ...)
    gets that many devices no other task holds any share of; a fraction
    (0.25, 0.5) gets one device with that much of its share free, packed
    onto the device already most used (so whole devices stay free for
    whole requests). res_take says which (res_grant_t), res_release gives
    them back.

    Threads: none of its own; a pool belongs to its caller's thread.
*/
#ifndef ZTASK_RESOURCES_H
#define ZTASK_RESOURCES_H

#include "../common/resset.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RES_MAX_GPUS 64       /* devices one worker may declare */
#define RES_GPU_ID_MAX 32     /* bytes of a device id ("0", "GPU-8f2c...") */

/* What the tasks on one worker may use, and use. */
typedef struct {
    res_set_t cap;                 /* declared */
    int64_t used[RES_MAX];         /* by requesting tasks, per cap entry */
    int threads;                   /* the worker's task threads */
    int plain;                     /* plain tasks held (queued there or running) */
    int requested;                 /* tasks with a request held */
    int ngpus;
    char gpu_id[RES_MAX_GPUS][RES_GPU_ID_MAX + 1];
    int32_t gpu_used[RES_MAX_GPUS];   /* thousandths of each device in use */
} res_pool_t;

/* A fresh pool: cap (gpus = RES_GPU_UNIT x the number of gpu_ids; one is
   set from the ids when cap does not name it), threads > 0. Returns 0, or
   -1 with why in err (gpus that disagree with the ids, too many ids). */
int res_pool_init(res_pool_t *pool, const res_set_t *cap, const char *const *gpu_ids, int ngpus,
                  int threads, char *err, size_t errlen);

/* Devices handed to one task. */
typedef struct {
    int n;
    uint8_t dev[RES_MAX_GPUS];     /* indexes into the pool's gpu_id */
    int32_t share;                 /* thousandths of each device it holds */
} res_grant_t;

/* Whether a task asking req (NULL: a plain task) fits in what is free now. */
bool res_fits(const res_pool_t *pool, const res_set_t *req);
/* Whether it would fit on this worker with nothing else on it. */
bool res_could_fit(const res_pool_t *pool, const res_set_t *req);

/* How far req is from fitting now: the sum over what it asks of the
   amount missing as a share of the declaration (0 when it fits, except
   for a GPU device or a thread it lacks, which count 1 each). The master
   reserves the worker closest to fitting for a task that waits. */
double res_shortfall(const res_pool_t *pool, const res_set_t *req);

/* Which of n pools to reserve for a task asking req that fits in none
   of them now: among those it could fit on (res_could_fit), the one
   closest to fitting (smallest res_shortfall; the first of equals). -1
   when it fits on one now (no reservation needed) or could fit on none.
   A pool that takes no other task from then on frees what its tasks hold
   as they end, so req fits there once they have: the starvation bound
   (docs/architecture.md, "What fits where"). */
int res_reserve_pick(const res_pool_t *const *pools, int n, const res_set_t *req);

/* Counts a task asking req (NULL: plain) as held, handing out devices
   into grant (may be NULL for a plain task). Dispatch asks res_fits
   first; a task that was already running there (claimed after a master
   restart) is counted even beyond the declaration, on the first free
   devices (none when none are free) until res_claim_gpus moves it to the
   ones its worker names. */
void res_take(res_pool_t *pool, const res_set_t *req, res_grant_t *grant);
/* A task that already runs there (claimed after a master restart) holds
   the devices ids names ("0,2": what its worker was told, and tells again
   in its hello): its grant moves to them from what res_take picked, so
   a new task is not handed a device in use. Counted even when another
   claimed task names the same device (the worker's word is what runs).
   Returns 0, or -1 with the grant unchanged when ids are not this pool's
   devices or not as many as req asks (a whole request: one per GPU; a
   share: one). */
int res_claim_gpus(res_pool_t *pool, const res_set_t *req, res_grant_t *grant, const char *ids);
/* Gives back what res_take took for that task. */
void res_release(res_pool_t *pool, const res_set_t *req, const res_grant_t *grant);

/* The device ids of a grant, comma-separated ("0,1"; "" for none). */
void res_grant_format(const res_pool_t *pool, const res_grant_t *grant, char *buf, size_t len);

/* In use now, per cap entry (plain tasks included in "cpus"). */
int64_t res_in_use(const res_pool_t *pool, int i);

#endif
