/*  alloc: worker allocation queues (`ztask alloc`, docs/deploy.md). While
    tasks wait that the live workers cannot take, the master submits jobs to
    Slurm (sbatch) that start ztask-worker pointed back at it; those workers
    leave once idle for the queue's idle timeout (or just before their
    allocation ends), and the allocation ends with them.

    Why in the master and not a process of its own: a queue is state like a
    job (stored, kept over a restart, shown through the API), and the demand
    is the master's own view (queued tasks, free worker slots); a separate
    allocator would have to poll the master for both and keep its own
    database. What must not happen is the loop waiting on Slurm: sbatch,
    squeue and scancel run as child processes (vfork, exec), one at a time,
    their output read from non-blocking pipes and their exit taken with
    waitpid WNOHANG at each tick; one that runs longer than
    ALLOC_CMD_TIMEOUT_MS is killed and counts as a failure. sbatch and
    squeue die with the master, even a kill -9 (a parent-death signal:
    alloc.c, s_cmd_start, says why); scancel does not.

    Every timing below (the tick, the squeue period, the backoff, the grace
    for a job squeue does not list yet, the command limit) is multiplied
    by the master's --alloc-time-scale (default 1): the e2e tests run them
    2 to 5 times faster against stand-in Slurm commands, and a site whose
    slurmctld is busy may poll less often. One factor for all of them, so
    their ratios (a grace of six polls, a backoff of one poll) stay as
    designed.

    Policy, per queue, at each tick (once a second, scaled as above):
      - submit one allocation when tasks are queued beyond the free slots of
        the live workers (not held, nor beyond their job's --max-running), fewer than `backlog` of its allocations wait for
        their workers, and its allocations (each `workers_per_alloc`
        workers) stay within `max_workers`;
      - a failed sbatch, or an allocation that ends before any of its
        workers registered, is a failure: the queue backs off (5 s, doubling
        up to 10 min) and says why in `alloc list` and the log;
      - allocations are followed with squeue (by the queue's job name) every
        5 s while any is not ended; one squeue no longer lists, submitted
        more than 30 s ago, has ended (unless the listing was cut at its
        64 KiB bound: then absence says nothing). A restarted master finds the
        allocations it had submitted this way instead of submitting again:
        it polls once before any sbatch (again every 5 s, and no sbatch
        meanwhile, while squeue fails: said in each queue's last_error
        until one answers), and a job of a queue's name that
        it does not know and that has not ended (sbatch ran as the master
        died, its answer never stored) is followed like the others. What
        records a side effect in Slurm (a job sbatch made or one found,
        the removal of a queue whose scancel started) is fsynced at once,
        not within the second --sync acked gives other commits: a machine
        crash then leaves what a master killed while sbatch ran leaves.
    `remove` of a queue with allocations queued or running is refused
    (they would hold nodes nothing follows); `remove --force` hands them
    to scancel (a command like sbatch and squeue, ahead of them) and
    forgets the queue at once. A master that stops leaves a scancel running
    (and starts the ones still waiting) rather than kill it.

    Ownership: queues are the module's; replies carry copies.
    Threads: main loop only (the children are processes, not threads).
*/
#ifndef ZTASK_ALLOC_H
#define ZTASK_ALLOC_H

#include "jobs.h"
#include "journal.h"
#include "registry.h"
#include "store.h"

#include "../proto/proto.h"

#include <stdbool.h>
#include <stdint.h>

#define ALLOC_TICK_MS 1000
#define ALLOC_CMD_TIMEOUT_MS 30000
/* The range of alloc_config_t.time_scale (--alloc-time-scale). */
#define ALLOC_TIME_SCALE_MIN 0.01
#define ALLOC_TIME_SCALE_MAX 100.0
/* The longest batch script (what the queue's --worker-arg values make). */
#define ALLOC_SCRIPT_MAX 32768

typedef struct alloc alloc_t;

/* What alloc_new works with: pointers borrowed (the loop owns them and
   outlives the alloc_t), strings copied. */
typedef struct {
    journal_t *journal;
    jobs_t *jobs;
    registry_t *registry;
    const char *worker_cmd;   /* the ztask-worker the allocations start */
    const char *master_addr;  /* HOST:PORT the workers connect to */
    const char *master_key;   /* the master's Z85 public key; NULL without CURVE */
    double time_scale;        /* multiplies every timing (see the top); 0 = 1; else
                                 within ALLOC_TIME_SCALE_MIN..MAX (asserted) */
} alloc_config_t;

alloc_t *alloc_new(const alloc_config_t *cfg);
/* Kills a command still running (and reaps it); frees everything. */
void alloc_destroy(alloc_t **p);

/* Reads the stored queues, and the highest queue id ever given (removed
   queues' too): new queues take ids above it, never one used before. -1
   on a store error (store_error says it); a queue whose text cannot be
   read is logged and skipped. */
int alloc_load(alloc_t *self, store_t *store);

/* Once per ALLOC_TICK_MS (scaled): reads a finished command, starts the
   next one (squeue, sbatch) when due. Never blocks. */
void alloc_tick(alloc_t *self, int64_t now);

/* The reply to an `alloc` request (add, list, pause, resume, remove);
   admin: the peer may change queues (the master's --admins, or anyone
   without CURVE). Always a reply (errors included); the caller frees. */
proto_reply_t *alloc_request(alloc_t *self, const proto_req_t *req, bool admin);

#endif
