/*  master: the ztask-master daemon's state and its one event loop.

    One thread, one zmq_poll loop, no locks: the API ROUTER (clients and
    worker registration), the report PULL (fan-in from every worker), one
    PUSH task pipe per worker, and timers (pings, liveness, leases, the
    grouped commit). See docs/architecture.md for the path of a task.

    Layers, top to bottom: main, master (this loop), api, dash, tasks,
    waiters, jobs, journal, registry, writer, sched, auth, gate, metrics,
    web, store. The HTTP server (--http) runs on threads of its own (web.h)
    and asks the loop for everything it shows (dash.h). A module calls
    (and includes) only modules below it, never one above: a completion is
    handed back up, as the journal hands back its committed submits for
    the loop to have api acknowledge. The loop owns every module and
    lends each the ones below it that it needs.

    Threads: main thread only. The only state shared with a signal handler
    is the stop flag passed to master_run.
*/
#ifndef ZTASK_MASTER_H
#define ZTASK_MASTER_H

#include "store.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *bind_addr;     /* default 127.0.0.1 */
    int port;                  /* API port; reports on port + 1; 0 = both ephemeral */
    const char *db_path;       /* default ./ztask.db */
    store_sync_t sync;
    int task_port_lo, task_port_hi;   /* 0 = ephemeral task pipes */
    int heartbeat_ms;          /* default 1000 */
    int liveness;              /* missed intervals before a worker is dead; default 3 */
    int lease_ms;              /* a dispatched task must start within this; default 10000 */
    int recovery_grace_ms;     /* after a restart, wait this long for workers to claim tasks */
    int prefetch;              /* tasks sent beyond a worker's free threads; -1 = auto
                                  (default): none for long tasks, more the shorter
                                  that worker's recent tasks are */
    int crash_limit;           /* worker deaths while running a task before it fails; default 5 */
    int retry_backoff_ms;      /* first retry delay, doubled per attempt; default 500 */
    int flush_ms;              /* grouped commit interval; default 5 */
    const char *curve_secret;  /* key file of the master (CURVE on when set) */
    const char *clients;       /* allowlist of client keys (dir or file) */
    const char *workers;       /* allowlist of worker keys (dir or file) */
    const char *admins;        /* allowlist of admin keys (dir or file); NULL = none */
    bool insecure;             /* allow a non-loopback bind without keys */
    int keep_jobs;             /* keep at most this many finished jobs (0 = all) */
    double keep_secs;          /* forget finished jobs older than this (0 = never) */
    int64_t quota_tasks;       /* per owner: tasks queued or running at most (0 = no limit) */
    int64_t quota_bytes;       /* per owner: bytes of their specs at most (0 = no limit) */
    int max_workers_per_key;   /* live workers one CURVE key may register; default 256, 0 = no cap */
    const char *http_addr;     /* --http ADDR:PORT: metrics and dashboard; NULL = off */
    const char *http_token;    /* --http-token FILE; NULL = none (loopback or --insecure only) */
    const char *http_cert;     /* --http-cert / --http-key: HTTPS */
    const char *http_key;
    double alloc_time_scale;   /* --alloc-time-scale: multiplies the Slurm allocation
                                  timings (alloc.h); default 1, for tests and tuning */
} master_config_t;

/* Fills the defaults above. */
void master_config_defaults(master_config_t *cfg);

typedef struct master master_t;

/* Opens the store, rebuilds the queue from it, binds the sockets and logs
   the readiness line (event=listening api=... reports=...). NULL with err
   filled on failure. */
master_t *master_new(const master_config_t *cfg, char *err, size_t errlen);

/* Runs until *stop becomes non-zero (set by a signal handler); commits and
   returns 0, or -1 on a fatal error (logged). When reload is not NULL and
   *reload becomes non-zero, the key allowlists are re-read and *reload
   cleared. Blocks. */
int master_run(master_t *self, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);

/* The bound API port (useful with port 0; reports are announced in hello). */
int master_api_port(const master_t *self);

/* The bound HTTP port, 0 without --http. */
int master_http_port(const master_t *self);

/* Commits what is pending, closes every socket (bounded linger), frees. */
void master_destroy(master_t **p);

#endif
