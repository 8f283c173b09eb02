/*  ztask-master: flags, signals, and the master's event loop. */
#include "alloc.h"
#include "master.h"
#include "store.h"

#include "../common/log.h"
#include "../common/testhook.h"
#include "../common/util.h"
#include "../common/version.h"

#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The signal flags, set by the handler, read by the loop: the only globals. */
static volatile sig_atomic_t s_stop;
static volatile sig_atomic_t s_reload;

static void s_on_signal(int sig)
{
    if (sig == SIGHUP)
        s_reload = 1;
    else
        s_stop = 1;
}

static void s_usage(FILE *out)
{
    fprintf(out,
"usage: ztask-master [options]\n"
"\n"
"The ztask master: keeps jobs and tasks in SQLite, hands tasks to workers,\n"
"collects their results, and answers the ztask CLI.\n"
"\n"
"options:\n"
"  --db PATH            database file (default ./ztask.db; ':memory:' for throwaway runs);\n"
"                       created mode 0600, as are its -wal and -shm files: they hold\n"
"                       every task's env, stdin and output\n"
"  --bind ADDR          the one address to listen on (default 127.0.0.1): an IP\n"
"                       address of this host, * for every address, an interface\n"
"                       name, or ipc://DIR: Unix sockets in DIR (made 0700 when\n"
"                       missing), reached only by who may enter DIR: the safe\n"
"                       keyless choice on a shared host\n"
"  --port BASE          API port; worker reports on BASE+1 (default 5555; 0 = any free ports)\n"
"  --task-ports LO-HI   ports for the per-worker task pipes (default: any free port)\n"
"  --sync MODE          acked (default: fsync before every answer and submit acknowledged,\n"
"                       results no client was told of yet within 1 s; a power loss may\n"
"                       lose that last second of them, and their tasks run again), full\n"
"                       (fsync every grouped commit), interval (fsync at checkpoints:\n"
"                       survives a crash of the master, may lose the last commits and\n"
"                       answers on power loss) or off\n"
"  --heartbeat-ms N     heartbeat interval (default 1000)\n"
"  --liveness N         missed heartbeats before a worker is dead (default 3)\n"
"  --lease SEC          a task sent to a worker must start within SEC (default 10)\n"
"  --recovery-grace SEC after a restart, wait SEC for workers to claim their tasks, and\n"
"                       for the results of tasks they ended meanwhile (default 5);\n"
"                       a restart that finds queued tasks sends none of them for\n"
"                       liveness + 1 heartbeats, at most SEC, while the workers\n"
"                       register again\n"
"  --prefetch N|auto    tasks sent to a worker beyond its free threads; auto (default)\n"
"                       sends more the shorter that worker's recent tasks are, and\n"
"                       none while they take 20 ms or more\n"
"  --crash-limit N      a task whose workers die N times fails (default 5)\n"
"  --retry-backoff-ms N first retry delay, doubled per attempt (default 500)\n"
"  --curve-secret FILE  the master's key file (from ztask keygen): turns on CURVE\n"
"                       encryption and authentication on every socket\n"
"  --clients PATH       allowed client keys: a directory of .pub files, or a file\n"
"  --workers PATH       allowed worker keys: a directory of .pub files, or a file\n"
"  --admins PATH        admin keys (optional): clients that see and act on every\n"
"                       client's jobs; other clients act only on their own\n"
"                       (the lists are re-read on SIGHUP; a key removed is\n"
"                       refused from its next message)\n"
"  --quota-tasks N      each client may have at most N tasks queued or running\n"
"                       (default: no limit); a submit over it is refused\n"
"  --quota-bytes SIZE   each client's queued or running tasks may hold at most\n"
"                       SIZE bytes of specs (64K, 512M, 2G; default: no limit)\n"
"  --max-workers-per-key N  live workers one worker key may register (default\n"
"                       256; 0 = no cap); a hello over it is refused. Replicas\n"
"                       that share one key (compose, swarm) count together\n"
"  --insecure           allow --bind (and --http) on a non-loopback address\n"
"                       without keys (a token)\n"
"  --http ADDR:PORT     serve Prometheus /metrics and the web dashboard there\n"
"                       (off by default; e.g. 127.0.0.1:8080; PORT 0 = any free port)\n"
"  --http-token FILE    bearer tokens, one per line, each optionally followed by\n"
"                       its right: read (default) or control (may also cancel);\n"
"                       required for a non-loopback --http unless --insecure\n"
"  --http-cert FILE     PEM certificate: serve HTTPS (with --http-key)\n"
"  --http-key FILE      PEM private key of --http-cert\n"
"  --keep-results SPEC  forget finished jobs with their results: N keeps the N\n"
"                       newest, or an age: 7d, 12h, 30m (default: keep all);\n"
"                       both go by the jobs' wall-clock finish times, so a\n"
"                       clock set forward forgets sooner (timers do not move)\n"
"  --alloc-time-scale F multiplies the timings of `ztask alloc` queues (tick 1 s,\n"
"                       squeue every 5 s, backoff 5 s..10 min, 30 s grace and\n"
"                       command limit) by F, 0.01..100 (default 1): for tests,\n"
"                       or above 1 to poll a busy slurmctld less often\n"
"  --log-level LEVEL    debug, info (default), warn, error\n"
"  --help, --version\n"
"\n"
"WARNING: without --curve-secret nobody is told apart. On loopback (the default)\n"
"EVERY LOCAL USER of this host can submit commands, which run on the workers as\n"
"the workers' user, and see and cancel every job. Keep a keyless master on a host\n"
"whose every user you trust, run workers with --run-as an unprivileged user (a\n"
"worker that would run commands as root for it refuses unless --allow-root), or\n"
"use CURVE keys: ztask keygen, then --curve-secret/--clients/--workers\n"
"(docs/security.md).\n"
"\n"
"Signals: SIGTERM/SIGINT commit, close and exit 0; SIGHUP re-reads the key allowlists.\n"
"One master per database: a second one on the same file stops at once (exit 1).\n"
"A master that cannot start leaves no database file it created behind.\n"
"Exit codes: 0 clean stop, 1 cannot start (port in use, database, keys, refused\n"
"bind) or failed while running, 2 usage error.\n"
"Example: ztask-master --db ./ztask.db\n");
}

static int s_int_opt(const char *name, const char *val, int64_t min, int64_t max, int *out)
{
    int64_t v;
    if (parse_int64(val, min, max, &v) != 0) {
        fprintf(stderr, "ztask-master: --%s wants an integer in %lld..%lld, not '%s'\n", name,
                (long long) min, (long long) max, val);
        return -1;
    }
    *out = (int) v;
    return 0;
}

static int s_sec_opt(const char *name, const char *val, int *ms)
{
    double v;
    if (parse_double(val, &v) != 0 || v < 0 || v > 86400 * 30) {
        fprintf(stderr, "ztask-master: --%s wants seconds (e.g. 2.5), not '%s'\n", name, val);
        return -1;
    }
    *ms = (int) (v * 1000);
    return 0;
}

/* --keep-results: a count (100) or an age (7d, 12h, 30m). */
static int s_keep_opt(const char *val, master_config_t *cfg)
{
    size_t n = strlen(val);
    char unit = n ? val[n - 1] : 0;
    double mult = unit == 'd' ? 86400 : unit == 'h' ? 3600 : unit == 'm' ? 60 : unit == 's' ? 1 : 0;
    if (mult > 0) {
        char num[32];
        double v;
        snprintf(num, sizeof num, "%.*s", (int) (n - 1), val);
        if (n > 1 && n < sizeof num && parse_double(num, &v) == 0 && v > 0) {
            cfg->keep_secs = v * mult;
            return 0;
        }
    } else {
        int64_t v;
        if (parse_int64(val, 1, 100000000, &v) == 0) {
            cfg->keep_jobs = (int) v;
            return 0;
        }
    }
    fprintf(stderr, "ztask-master: --keep-results wants a job count (100) or an age (7d, 12h, 30m), "
                    "not '%s'\n", val);
    return -1;
}

int main(int argc, char **argv)
{
    master_config_t cfg;
    master_config_defaults(&cfg);
    log_level_t level = LOG_LVL_INFO;
    enum { O_DB = 1, O_BIND, O_PORT, O_TASKPORTS, O_SYNC, O_HB, O_LIVE, O_LEASE, O_GRACE,
           O_PREFETCH, O_CRASH, O_BACKOFF, O_LOG, O_HELP, O_VERSION, O_SECRET, O_CLIENTS,
           O_WORKERS, O_INSECURE, O_KEEP, O_ADMINS, O_QUOTA_TASKS, O_QUOTA_BYTES, O_MAX_PER_KEY,
           O_HTTP, O_HTTP_TOKEN, O_HTTP_CERT, O_HTTP_KEY, O_ALLOC_SCALE };
    static const struct option opts[] = {
        {"db", required_argument, 0, O_DB},
        {"bind", required_argument, 0, O_BIND},
        {"port", required_argument, 0, O_PORT},
        {"task-ports", required_argument, 0, O_TASKPORTS},
        {"sync", required_argument, 0, O_SYNC},
        {"heartbeat-ms", required_argument, 0, O_HB},
        {"liveness", required_argument, 0, O_LIVE},
        {"lease", required_argument, 0, O_LEASE},
        {"recovery-grace", required_argument, 0, O_GRACE},
        {"prefetch", required_argument, 0, O_PREFETCH},
        {"crash-limit", required_argument, 0, O_CRASH},
        {"retry-backoff-ms", required_argument, 0, O_BACKOFF},
        {"log-level", required_argument, 0, O_LOG},
        {"curve-secret", required_argument, 0, O_SECRET},
        {"clients", required_argument, 0, O_CLIENTS},
        {"workers", required_argument, 0, O_WORKERS},
        {"admins", required_argument, 0, O_ADMINS},
        {"quota-tasks", required_argument, 0, O_QUOTA_TASKS},
        {"quota-bytes", required_argument, 0, O_QUOTA_BYTES},
        {"max-workers-per-key", required_argument, 0, O_MAX_PER_KEY},
        {"insecure", no_argument, 0, O_INSECURE},
        {"http", required_argument, 0, O_HTTP},
        {"http-token", required_argument, 0, O_HTTP_TOKEN},
        {"http-cert", required_argument, 0, O_HTTP_CERT},
        {"http-key", required_argument, 0, O_HTTP_KEY},
        {"keep-results", required_argument, 0, O_KEEP},
        {"alloc-time-scale", required_argument, 0, O_ALLOC_SCALE},
        {"help", no_argument, 0, O_HELP},
        {"version", no_argument, 0, O_VERSION},
        {0, 0, 0, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case O_DB: cfg.db_path = optarg; break;
        case O_BIND: cfg.bind_addr = optarg; break;
        case O_PORT: rc = s_int_opt("port", optarg, 0, 65534, &cfg.port); break;
        case O_TASKPORTS: {
            int lo = 0, hi = 0;
            if (sscanf(optarg, "%d-%d", &lo, &hi) != 2 || lo < 1 || hi > 65535 || lo > hi) {
                fprintf(stderr, "ztask-master: --task-ports wants LO-HI (e.g. 6000-6100), not '%s'\n",
                        optarg);
                rc = -1;
            }
            cfg.task_port_lo = lo;
            cfg.task_port_hi = hi;
            break;
        }
        case O_SYNC:
            if (strcmp(optarg, "acked") == 0)
                cfg.sync = STORE_SYNC_ACKED;
            else if (strcmp(optarg, "full") == 0)
                cfg.sync = STORE_SYNC_FULL;
            else if (strcmp(optarg, "interval") == 0)
                cfg.sync = STORE_SYNC_INTERVAL;
            else if (strcmp(optarg, "off") == 0)
                cfg.sync = STORE_SYNC_OFF;
            else {
                fprintf(stderr, "ztask-master: --sync wants acked, full, interval or off, not '%s'\n", optarg);
                rc = -1;
            }
            break;
        case O_HB: rc = s_int_opt("heartbeat-ms", optarg, 10, 60000, &cfg.heartbeat_ms); break;
        case O_LIVE: rc = s_int_opt("liveness", optarg, 1, 100, &cfg.liveness); break;
        case O_LEASE: rc = s_sec_opt("lease", optarg, &cfg.lease_ms); break;
        case O_GRACE: rc = s_sec_opt("recovery-grace", optarg, &cfg.recovery_grace_ms); break;
        case O_PREFETCH:
            if (strcmp(optarg, "auto") == 0)
                cfg.prefetch = -1;
            else
                rc = s_int_opt("prefetch", optarg, 0, 10000, &cfg.prefetch);
            break;
        case O_CRASH: rc = s_int_opt("crash-limit", optarg, 1, 100, &cfg.crash_limit); break;
        case O_BACKOFF: rc = s_int_opt("retry-backoff-ms", optarg, 0, 3600000, &cfg.retry_backoff_ms); break;
        case O_LOG:
            if (log_level_parse(optarg, &level) != 0) {
                fprintf(stderr, "ztask-master: --log-level wants debug, info, warn or error\n");
                rc = -1;
            }
            break;
        case O_SECRET: cfg.curve_secret = optarg; break;
        case O_CLIENTS: cfg.clients = optarg; break;
        case O_WORKERS: cfg.workers = optarg; break;
        case O_ADMINS: cfg.admins = optarg; break;
        case O_QUOTA_TASKS:
            if (parse_int64(optarg, 1, INT64_MAX, &cfg.quota_tasks) != 0) {
                fprintf(stderr, "ztask-master: --quota-tasks wants a number of tasks >= 1, not "
                                "'%s'\n", optarg);
                rc = -1;
            }
            break;
        case O_QUOTA_BYTES:
            if (parse_bytes(optarg, &cfg.quota_bytes) != 0) {
                fprintf(stderr, "ztask-master: --quota-bytes wants a size (65536, 64K, 512M, "
                                "2G), not '%s'\n", optarg);
                rc = -1;
            }
            break;
        case O_MAX_PER_KEY:
            rc = s_int_opt("max-workers-per-key", optarg, 0, 1000000, &cfg.max_workers_per_key);
            break;
        case O_INSECURE: cfg.insecure = true; break;
        case O_HTTP: cfg.http_addr = optarg; break;
        case O_HTTP_TOKEN: cfg.http_token = optarg; break;
        case O_HTTP_CERT: cfg.http_cert = optarg; break;
        case O_HTTP_KEY: cfg.http_key = optarg; break;
        case O_KEEP: rc = s_keep_opt(optarg, &cfg); break;
        case O_ALLOC_SCALE:
            if (parse_double(optarg, &cfg.alloc_time_scale) != 0
                || !(cfg.alloc_time_scale >= ALLOC_TIME_SCALE_MIN
                     && cfg.alloc_time_scale <= ALLOC_TIME_SCALE_MAX)) {
                fprintf(stderr, "ztask-master: --alloc-time-scale wants a factor from %g to %g "
                                "(1 = the documented timings), not '%s'\n",
                        ALLOC_TIME_SCALE_MIN, ALLOC_TIME_SCALE_MAX, optarg);
                rc = -1;
            }
            break;
        case O_HELP: s_usage(stdout); return 0;
        case O_VERSION: printf("ztask-master %s\n", ztask_version()); return 0;
        default:
            fprintf(stderr, "ztask-master: unknown or incomplete option '%s' (see ztask-master --help)\n",
                    argv[optind - 1]);
            return 2;
        }
        if (rc != 0)
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "ztask-master: unexpected argument '%s' (see ztask-master --help)\n", argv[optind]);
        return 2;
    }
    log_init("ztask-master", level);
    /* Before anything they change: an operator who inherited one sees it. */
    testhook_warn();

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    store_process_init();
    /* Big buffers (a peer's frame, a reply with outputs) come from mmap
       and go back to the system when freed: glibc otherwise raises its
       mmap threshold after the first such free, and later ones stay in
       the heap, where a burst leaves the master large for good. */
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);

    char err[512];
    master_t *master = master_new(&cfg, err, sizeof err);
    if (!master) {
        fprintf(stderr, "ztask-master: %s\n", err);
        return 1;
    }
    int rc = master_run(master, &s_stop, &s_reload);
    master_destroy(&master);
    log_info("event=stopped");
    return rc == 0 ? 0 : 1;
}
