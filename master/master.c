/*  master: the daemon's state and its one event loop (see master.h). The
    loop owns every module and calls down into them; none calls up:
    commits are handed back by the journal and acknowledged through api. */
#include "master.h"

#include "alloc.h"
#include "api.h"
#include "auth.h"
#include "claim.h"
#include "deps.h"
#include "dash.h"
#include "idem.h"
#include "gate.h"
#include "jobs.h"
#include "journal.h"
#include "metrics.h"
#include "registry.h"
#include "sched.h"
#include "store.h"
#include "tasks.h"
#include "waiters.h"
#include "web.h"

#include "../common/clock.h"
#include "../common/keys.h"
#include "../common/log.h"
#include "../common/util.h"
#include "../common/zmqx.h"
#include "../proto/proto.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* How often tasks_timers runs (liveness, pings, leases, orphans). */
#define TIMERS_EVERY_MS 100

/* Messages queued per peer, each way, on the API socket, in libzmq. A
   request waits here at most until the loop's next turn, so a few are
   plenty; more would let one client that sends without reading make
   the master hold that many requests of up to 32 MiB each. Replies past
   8 wait in the master instead (conns.h), where they are counted
   against a total bound with the ones libzmq holds. */
#define API_HWM 8
/* Reports come from many worker threads through one connection per
   worker and are read in bounded batches: a deep queue absorbs bursts. */
#define REPORTS_HWM 100000

struct master {
    master_config_t cfg;
    char *bind_addr;
    char *db_path;
    void *ctx;
    void *api_sock;          /* ROUTER */
    void *reports;           /* PULL */
    int api_port, report_port;
    auth_t *auth;            /* NULL without CURVE */
    claim_key_t *claims;     /* NULL without CURVE: claim tokens' key (claim.h) */
    gate_t *gate;            /* sheds unauthenticated connections */
    char *curve_secret;      /* Z85, NULL without CURVE: the one copy the master
                                keeps (keys_secret_new: locked, read-only) */
    char curve_public[41];   /* Z85, "" without CURVE (allocations' workers get it) */
    int64_t started_ms;
    /* The modules, in the order they are made: each takes the ones
       before it that it needs (borrowed). */
    store_t *store;
    sched_t *sched;
    journal_t *journal;      /* durable changes and grouped commits */
    jobs_t *jobs;
    deps_t *deps;
    idem_t *idem;            /* submit keys remembered */
    waiters_t *waiters;      /* requests held until their job finishes */
    registry_t *registry;
    tasks_t *tasks;
    alloc_t *alloc;          /* worker allocation queues (Slurm) */
    api_t *api;
    metrics_t *metrics;      /* made first: every module may count */
    dash_t *dash;            /* the loop's side of --http, NULL without it */
    web_t *web;              /* the HTTP threads, NULL without --http */
    int64_t last_timers;
};

void master_config_defaults(master_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->bind_addr = "127.0.0.1";
    cfg->port = 5555;
    cfg->db_path = "ztask.db";
    cfg->sync = STORE_SYNC_ACKED;
    cfg->heartbeat_ms = 1000;
    cfg->liveness = 3;
    cfg->lease_ms = 10000;
    cfg->recovery_grace_ms = 5000;
    cfg->prefetch = -1;
    cfg->crash_limit = 5;
    cfg->retry_backoff_ms = 500;
    cfg->flush_ms = 5;
    cfg->max_workers_per_key = 256;
    cfg->alloc_time_scale = 1.0;
}

/* ---- start-up ---- */

static void *s_bind(master_t *self, int type, int port, int64_t maxmsg, int hwm,
                    const char *domain, int *bound, char *err, size_t errlen)
{
    void *s = zmqx_socket(self->ctx, type, 0, maxmsg);
    if (!s) {
        snprintf(err, errlen, "cannot create socket: %s", zmq_strerror(errno));
        return NULL;
    }
    if (self->auth && auth_make_server(s, self->curve_secret, domain) != 0) {
        snprintf(err, errlen, "cannot enable CURVE: %s", zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (type == ZMQ_ROUTER) {
        /* A reply that cannot be queued fails its send instead of
           vanishing: api.c tells a full queue from a slow credit update. */
        int one = 1;
        zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    }
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (gate_watch(self->gate, s, domain) != 0) {
        snprintf(err, errlen, "cannot monitor the %s socket: %s", domain, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    char ep[300];
    if (zmqx_bind(s, self->bind_addr, port, bound, ep, sizeof ep) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s (%s)", ep, zmq_strerror(errno),
                 errno == ENODEV ? "--bind takes an IP address of this host or an interface "
                                   "name, not a host name"
                                 : "another master running? use --port");
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* --bind is one address, parsed, not matched by prefix: libzmq reads
   more than an address in an endpoint ("127.0.0.1:1;0.0.0.0" names a
   source and listens on 0.0.0.0), so text that only starts like a
   loopback address must not pass as one. Accepted: "*" (every address),
   an IPv4 or IPv6 literal ("[::1]" too), or the name of an interface of
   this host (never loopback here: keys or --insecure). ("localhost" became
   127.0.0.1 in master_new.) 0 with *loopback set, or -1 with err. */
static int s_parse_bind(const char *addr, bool *loopback, char *err, size_t errlen)
{
    *loopback = false;
    struct in_addr v4;
    struct in6_addr v6;
    char inner[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(addr);
    if (strcmp(addr, "*") == 0)
        return 0;
    if (inet_pton(AF_INET, addr, &v4) == 1) {
        *loopback = (ntohl(v4.s_addr) >> 24) == 127;
        return 0;
    }
    if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']' && n - 2 < sizeof inner)
        snprintf(inner, sizeof inner, "%.*s", (int) (n - 2), addr + 1);
    else
        snprintf(inner, sizeof inner, "%s", n < sizeof inner ? addr : "");
    if (inet_pton(AF_INET6, inner, &v6) == 1) {
        *loopback = IN6_IS_ADDR_LOOPBACK(&v6)
                    || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
        return 0;
    }
    bool name = n > 0 && n < IF_NAMESIZE;
    for (size_t i = 0; name && i < n; i++)
        name = isalnum((unsigned char) addr[i]) || strchr("-_.@", addr[i]);
    if (name && if_nametoindex(addr) != 0)
        return 0;
    char q[160];
    snprintf(err, errlen, "--bind wants one IP address of this host (127.0.0.1, 10.0.0.5, ::1), "
                          "* for every address, or an interface name, not \"%s\"",
             log_quote(q, sizeof q, addr));
    return -1;
}

/* An ipc:// directory: made 0700 when missing; one that every local user
   may enter is refused unless --insecure (its sockets would be anyone's).
   Who else may reach the master is then the operator's choice: the
   directory's group, when its mode lets the group in. */
static int s_ipc_dir(const master_config_t *cfg, const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0 && (errno != ENOENT || mkdir(dir, 0700) != 0 || stat(dir, &st) != 0)) {
        snprintf(err, errlen, "--bind ipc://%s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "--bind ipc://%s: not a directory", dir);
        return -1;
    }
    if ((st.st_mode & 0007) && !cfg->insecure) {
        snprintf(err, errlen,
                 "--bind ipc://%s: the directory is open to every local user (mode %04o), who "
                 "could all submit commands: chmod o-rwx %s (and give a group g+rx to let it "
                 "in), or --insecure",
                 dir, (unsigned) (st.st_mode & 07777), dir);
        return -1;
    }
    log_info("event=ipc dir=\"%s\" mode=%04o note=\"who may enter the directory may use the "
             "master\"",
             dir, (unsigned) (st.st_mode & 07777));
    return 0;
}

/* CURVE keys, or a loopback-only bind, or an explicit --insecure. */
static int s_security(master_t *self, const master_config_t *cfg, char *err, size_t errlen)
{
    bool ipc = zmqx_ipc(cfg->bind_addr), loopback = false;
    if (ipc && s_ipc_dir(cfg, cfg->bind_addr + 6, err, errlen) != 0)
        return -1;
    if (!ipc && s_parse_bind(cfg->bind_addr, &loopback, err, errlen) != 0)
        return -1;
    if (!cfg->curve_secret && ipc)
        return 0;
    if (!cfg->curve_secret) {
        if (cfg->clients || cfg->workers || cfg->admins) {
            snprintf(err, errlen,
                     "--clients/--workers/--admins need --curve-secret (the master's key file)");
            return -1;
        }
        if (!loopback && !cfg->insecure) {
            snprintf(err, errlen,
                     "refusing to listen on %s without authentication: anyone who can reach it "
                     "could run commands on your workers; give --curve-secret KEY --clients DIR "
                     "--workers DIR (see ztask keygen), or --insecure on a trusted network",
                     cfg->bind_addr);
            return -1;
        }
        if (loopback)
            log_warn("event=no_keys bind=%s note=\"without --curve-secret every local user "
                     "of this host can submit commands to run on the workers, as the workers' "
                     "user: use keys on a shared host (docs/security.md)\"",
                     cfg->bind_addr);
        /* At error level so that no --log-level hides it. */
        if (!loopback)
            log_error("event=insecure bind=%s note=\"--insecure: no authentication, no "
                      "encryption: anyone who can reach these ports can submit commands to run "
                      "on the workers\"",
                      cfg->bind_addr);
        return 0;
    }
    keypair_t kp;
    if (keys_load_secret(cfg->curve_secret, &kp, err, errlen) != 0) {
        sodium_memzero(&kp, sizeof kp);
        return -1;
    }
    if (!cfg->clients || !cfg->workers) {
        sodium_memzero(&kp, sizeof kp);
        snprintf(err, errlen, "with --curve-secret, give both --clients and --workers allowlists "
                              "(a directory of .pub files, or a file of keys)");
        return -1;
    }
    /* From here the secret is in one place, wiped at master_destroy. */
    self->curve_secret = keys_secret_new(kp.sec, err, errlen);
    memcpy(self->curve_public, kp.pub, sizeof self->curve_public);
    sodium_memzero(&kp, sizeof kp);
    if (!self->curve_secret)
        return -1;
    self->claims = claim_key_new(self->curve_secret, err, errlen);
    if (!self->claims)
        return -1;
    self->auth = auth_new(self->ctx,
                          &(auth_lists_t){.clients = cfg->clients,
                                          .workers = cfg->workers,
                                          .admins = cfg->admins},
                          err, errlen);
    if (self->auth)
        auth_set_metrics(self->auth, self->metrics);
    return self->auth ? 0 : -1;
}

/* The store, and what is rebuilt from it before any socket is bound:
   jobs and their counters, the ids handed out last. */
static int s_open_store(master_t *self, char *err, size_t errlen)
{
    self->sched = sched_new();
    self->metrics = metrics_new(clock_mono_ms());
    self->store = store_new(self->db_path, self->cfg.sync, err, errlen);
    if (!self->store)
        return -1;
    /* A database made before ztask created them 0600: its WAL holds every
       spec's env (tokens) too. Said, not changed: the mode is the
       operator's. */
    int mode = store_file_mode(self->db_path);
    if (mode > 0 && (mode & 077))
        log_warn("event=db_readable_by_others path=\"%s\" mode=%04o hint=\"other local users "
                 "may read task specs and outputs, env included: chmod 0600 it and its -wal "
                 "and -shm files\"",
                 self->db_path, (unsigned) mode);
    self->journal = journal_new(self->store, self->sched, self->cfg.flush_ms, self->db_path);
    if (!self->journal) {
        snprintf(err, errlen, "cannot start the writer thread: %s", strerror(errno));
        return -1;
    }
    journal_set_metrics(self->journal, self->metrics);
    if (!store_shrinks(self->store))
        log_info("event=db_keeps_free_pages db=%s note=\"made before ztask gave forgotten jobs' "
                 "pages back: the file never shrinks; to change that once, stop the master and "
                 "run: sqlite3 %s 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;' "
                 "(docs/deploy.md)\"",
                 self->db_path, self->db_path);
    self->jobs = jobs_new(self->journal, self->cfg.keep_jobs, self->cfg.keep_secs);
    self->waiters = waiters_new(self->jobs);
    self->deps = deps_new(self->jobs);
    self->idem = idem_new();
    if (jobs_load(self->jobs, self->store) != 0 || deps_load(self->deps, self->store) != 0
        || idem_load(self->idem, self->store, clock_wall()) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", self->db_path, store_error(self->store));
        return -1;
    }
    return 0;
}

/* The ZeroMQ context, CURVE, the API and report sockets, the registry
   (which binds each worker's pipe at its hello). */
static int s_open_sockets(master_t *self, char *err, size_t errlen)
{
    self->ctx = zmq_ctx_new();
    /* Every connection and every worker's pipe is a descriptor, and the
       soft limit (often 1024) is a default, not a decision: raise it to
       the hard limit (LimitNOFILE in the unit). gate.c keeps a reserve
       below it. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            log_info("event=descriptors_raised from=%llu to=%llu", (unsigned long long) was,
                     (unsigned long long) rl.rlim_cur);
        else
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Each worker costs a socket (its pipe); libzmq's default cap of 1023
       sockets would refuse the 1,022nd worker whatever the fd limit. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 1100) {
        rlim_t n = rl.rlim_cur - 64;
        zmq_ctx_set(self->ctx, ZMQ_MAX_SOCKETS, n > 65535 ? 65535 : (int) n);
    }
    if (s_security(self, &self->cfg, err, errlen) != 0)
        return -1;
    self->gate = gate_new(self->ctx, self->auth != NULL);
    int port = self->cfg.port;
    bool ipc = zmqx_ipc(self->bind_addr);
    if (ipc && !port)
        port = 5555;   /* no "any free port" among files: the usual numbers */
    self->api_sock = s_bind(self, ZMQ_ROUTER, port, PROTO_MAX_API_MSG, API_HWM, AUTH_DOMAIN_API,
                            &self->api_port, err, errlen);
    if (!self->api_sock)
        return -1;
    self->reports = s_bind(self, ZMQ_PULL, port ? port + 1 : 0, PROTO_MAX_REPORT_MSG, REPORTS_HWM,
                           AUTH_DOMAIN_REPORTS, &self->report_port, err, errlen);
    if (!self->reports)
        return -1;
    /* In a directory the pipes need numbers of their own: after the
       reports port unless --task-ports says otherwise. */
    int lo = self->cfg.task_port_lo, hi = self->cfg.task_port_hi;
    if (ipc && !lo) {
        lo = port + 2 <= 65535 ? port + 2 : 1;
        hi = port + 2 <= 65535 ? 65535 : port - 1;
    }
    self->registry = registry_new(&(registry_config_t){
        .zmq_ctx = self->ctx,
        .bind_addr = self->bind_addr,
        .port_lo = lo,
        .port_hi = hi,
        .curve_secret = self->auth ? self->curve_secret : NULL,
        .max_per_key = self->cfg.max_workers_per_key,
    });
    return 0;
}

/* The ztask-worker beside this program (an installed or built tree), else
   the one on PATH: what allocations start. */
static void s_worker_cmd(char *buf, size_t size)
{
    char self_path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n > 0) {
        self_path[n] = '\0';
        char *slash = strrchr(self_path, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, size, "%s/ztask-worker", self_path);
            if (access(buf, X_OK) == 0)
                return;
        }
    }
    snprintf(buf, size, "ztask-worker");
}

/* Where allocations' workers reach this master: its API address, or this
   host's name when it listens on every address. */
static void s_master_addr(const master_t *self, char *buf, size_t size)
{
    const char *a = self->bind_addr;
    char host[256] = "localhost";
    if (strcmp(a, "0.0.0.0") == 0 || strcmp(a, "*") == 0 || strcmp(a, "::") == 0
        || strcmp(a, "[::]") == 0) {
        gethostname(host, sizeof host - 1);
        a = host;
    }
    if (strchr(a, ':') && a[0] != '[')
        snprintf(buf, size, "[%s]:%d", a, self->api_port);
    else
        snprintf(buf, size, "%s:%d", a, self->api_port);
}

/* The task life cycle (with the queue rebuilt from the store) and the API
   on top of it all. */
static int s_start(master_t *self, char *err, size_t errlen)
{
    const master_config_t *cfg = &self->cfg;
    self->tasks = tasks_new(&(tasks_config_t){
        .sched = self->sched,
        .registry = self->registry,
        .jobs = self->jobs,
        .journal = self->journal,
        .auth = self->auth,
        .claims = self->claims,
        .deps = self->deps,
        .metrics = self->metrics,
        .heartbeat_ms = cfg->heartbeat_ms,
        .liveness = cfg->liveness,
        .lease_ms = cfg->lease_ms,
        .recovery_grace_ms = cfg->recovery_grace_ms,
        .prefetch = cfg->prefetch,
        .crash_limit = cfg->crash_limit,
        .retry_backoff_ms = cfg->retry_backoff_ms,
    });
    char worker_cmd[PATH_MAX + 32], master_addr[300];
    s_worker_cmd(worker_cmd, sizeof worker_cmd);
    s_master_addr(self, master_addr, sizeof master_addr);
    self->alloc = alloc_new(&(alloc_config_t){
        .journal = self->journal,
        .jobs = self->jobs,
        .registry = self->registry,
        .worker_cmd = worker_cmd,
        .master_addr = master_addr,
        .master_key = self->auth ? self->curve_public : NULL,
        .time_scale = cfg->alloc_time_scale,
    });
    int64_t last_job_id, last_task_id;
    if (tasks_load(self->tasks, self->store) != 0 || alloc_load(self->alloc, self->store) != 0
        || store_last_ids(self->store, &last_job_id, &last_task_id) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", self->db_path, store_error(self->store));
        return -1;
    }
    self->api = api_new(&(api_config_t){
        .sock = self->api_sock,
        .auth = self->auth,
        .sched = self->sched,
        .registry = self->registry,
        .jobs = self->jobs,
        .journal = self->journal,
        .waiters = self->waiters,
        .tasks = self->tasks,
        .deps = self->deps,
        .metrics = self->metrics,
        .idem = self->idem,
        .alloc = self->alloc,
        .db_path = self->db_path,
        .report_port = self->report_port,
        .heartbeat_ms = cfg->heartbeat_ms,
        .liveness = cfg->liveness,
        .last_job_id = last_job_id,
        .last_task_id = last_task_id,
        .started_ms = self->started_ms,
        .quota_tasks = cfg->quota_tasks,
        .quota_bytes = cfg->quota_bytes,
    });
    return 0;
}

/* Removes a database file and its WAL companions (after the store is
   closed). */
static void s_remove_db(const char *path)
{
    static const char *const suffix[] = { "", "-wal", "-shm", "-journal" };
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        char *p = xasprintf("%s%s", path, suffix[i]);
        unlink(p);
        free(p);
    }
}

/* --http: the loop's inproc ROUTER, then the HTTP threads that ask it
   (web.h says why requests are answered on the loop). */
static int s_start_http(master_t *self, char *err, size_t errlen)
{
    const master_config_t *cfg = &self->cfg;
    if (!cfg->http_addr) {
        if (cfg->http_token || cfg->http_cert || cfg->http_key) {
            snprintf(err, errlen, "--http-token/--http-cert/--http-key need --http ADDR:PORT");
            return -1;
        }
        return 0;
    }
    self->dash = dash_new(self->ctx,
                          &(dash_config_t){.sched = self->sched,
                                           .registry = self->registry,
                                           .jobs = self->jobs,
                                           .journal = self->journal,
                                           .tasks = self->tasks,
                                           .metrics = self->metrics,
                                           .started_ms = self->started_ms,
                                           .quota_tasks = cfg->quota_tasks,
                                           .quota_bytes = cfg->quota_bytes},
                          err, errlen);
    if (!self->dash)
        return -1;
    self->web = web_new(&(web_config_t){.addr = cfg->http_addr,
                                        .token_file = cfg->http_token,
                                        .cert_file = cfg->http_cert,
                                        .key_file = cfg->http_key,
                                        .insecure = cfg->insecure,
                                        .zmq_ctx = self->ctx,
                                        .loop_endpoint = dash_endpoint(self->dash)},
                        err, errlen);
    if (!self->web)
        return -1;
    dash_set_web(self->dash, self->web);
    return 0;
}

master_t *master_new(const master_config_t *cfg, char *err, size_t errlen)
{
    master_t *self = xcalloc(1, sizeof *self);
    self->cfg = *cfg;
    /* libzmq binds addresses and interface names, not host names: the one
       host name people type for --bind is read as what it means. */
    self->bind_addr = xstrdup(strcmp(cfg->bind_addr, "localhost") == 0 ? "127.0.0.1"
                                                                         : cfg->bind_addr);
    self->db_path = xstrdup(cfg->db_path);
    self->cfg.bind_addr = self->bind_addr;
    self->cfg.db_path = self->db_path;
    self->started_ms = clock_mono_ms();
    /* A database this master creates and then cannot serve (a busy port,
       bad keys) is removed: an empty file left behind would read as a
       master that once ran there. Only once the store is open (so the
       file is ours: its lock refuses any other master). */
    struct stat st;
    bool fresh = stat(cfg->db_path, &st) != 0 && errno == ENOENT;
    if (s_open_store(self, err, errlen) != 0) {
        master_destroy(&self);
        return NULL;
    }
    if (s_open_sockets(self, err, errlen) != 0 || s_start(self, err, errlen) != 0
        || s_start_http(self, err, errlen) != 0) {
        char *path = fresh ? xstrdup(self->db_path) : NULL;
        master_destroy(&self);
        if (path)
            s_remove_db(path);
        free(path);
        return NULL;
    }
    char api_ep[300], rep_ep[300];
    zmqx_endpoint(api_ep, sizeof api_ep, self->bind_addr, self->api_port);
    zmqx_endpoint(rep_ep, sizeof rep_ep, self->bind_addr, self->report_port);
    log_info("event=listening api=%s reports=%s db=%s jobs=%zu unfinished=%zu orphans=%zu",
             api_ep, rep_ep, self->db_path,
             jobs_count(self->jobs), sched_size(self->sched), tasks_counts(self->tasks).orphans);
    return self;
}

int master_api_port(const master_t *self)
{
    return self->api_port;
}

int master_http_port(const master_t *self)
{
    return self->web ? web_port(self->web) : 0;
}

/* ---- the loop ---- */

static long s_poll_timeout(master_t *self, int64_t now)
{
    int64_t t = journal_timeout(self->journal, now, 100);
    int64_t next = sched_next_due(self->sched, now);
    if (next >= 0 && next < t)
        t = next;
    int64_t held = waiters_deadline(self->waiters);
    if (held >= 0 && held - now < t)
        t = held - now;
    int64_t gate = gate_timeout(self->gate, now);
    if (gate >= 0 && gate < t)
        t = gate;
    int64_t replies = api_timeout(self->api, now);
    if (replies >= 0 && replies < t)
        t = replies;
    return t < 0 ? 0 : (long) t;
}

/* SIGHUP: the key allowlists are read again. A key no longer listed is
   refused from its next message (api.c, tasks.c ask auth per message);
   a worker whose key went is lost now, so no more tasks go down its
   pipe. */
static void s_reload(master_t *self)
{
    char err[700];
    if (!self->auth)
        log_info("event=reload_ignored why=\"no --curve-secret: no allowlists to reload\"");
    else if (auth_reload(self->auth, err, sizeof err) != 0)
        log_error("event=reload_failed error=\"%s\" note=\"old allowlists kept\"", err);
    else
        tasks_keys_reloaded(self->tasks, clock_mono_ms());
}

/* One turn of the loop after the poll: items says which sockets have
   input (gate_events: a shed connection's socket; http: the HTTP threads'
   socket). The order is the point (see each step). */
static void s_turn(master_t *self, const zmq_pollitem_t *items, bool gate_events, bool http,
                   int64_t now)
{
    /* Connections first: one that has not authenticated and sends a
       big frame is shed before it can send much more. */
    gate_handle(self->gate, gate_events, now);
    if (self->auth)
        auth_handle(self->auth);
    /* A written batch: its submits get their acks (and their tasks can
       go out in this turn's dispatch). */
    journal_collect(self->journal);
    api_acks(self->api);
    /* Specs only in the store are read while it is free, not when a
       dispatch needs them and the writer has it. */
    if (journal_idle(self->journal))
        tasks_read_ahead(self->tasks);
    /* Reports first: results free worker credit. Both reads are bounded
       so neither socket can starve the other or the timers. A socket
       the poll did not flag is not tried: a receive that finds nothing
       still costs libzmq system calls (~20 us each on a VM). */
    if (items[0].revents & ZMQ_POLLIN)
        tasks_read_reports(self->tasks, self->reports, self->auth != NULL, now);
    /* Hand out freed credit before anything that may wait on the disk
       (a query waits for its commit): workers should not idle through
       an fsync. Sending a task needs no durability first: a crash
       before its assignment is written finds it queued, and its worker
       claims it or it runs again under the same attempt number. A
       resend waits for its requeue's commit (tasks.c, s_park_for_commit),
       or that claim would be of two attempts above the stored one. */
    tasks_dispatch(self->tasks, now);
    /* Replies that waited for their clients, and the requests parked
       behind them, before new requests: they came first. */
    api_pump(self->api, now);
    if (items[1].revents & ZMQ_POLLIN)
        api_read(self->api, now);
    /* The HTTP threads' requests: a bounded few per turn (dash.h). */
    if (http)
        dash_read(self->dash, now);
    if (now - self->last_timers >= TIMERS_EVERY_MS) {
        self->last_timers = now;
        tasks_timers(self->tasks, now);
    }
    alloc_tick(self->alloc, now);
    /* Held status requests whose job has just finished: after this
       turn's reports, requests and timers, any of which may end it. */
    api_waiters(self->api, now, false);
    jobs_retention(self->jobs, now);
    /* Start the next commit if the writer is free: submits go at once
       (a client waits for each), the rest every flush_ms. A small one
       is written here and its tasks are queued now: dispatch after. */
    journal_commit(self->journal, now);
    api_acks(self->api);
    tasks_dispatch(self->tasks, now);
}

/* The last commit, with every assignment still out; then the held
   requests get the state as of now. Returns 0, or -1 when the commit
   failed. */
static int s_stop(master_t *self)
{
    log_info("event=stopping");
    journal_stopping(self->journal);   /* a restart finds every task out claimable */
    int rc = api_flush(self->api) == 0 ? 0 : -1;
    /* Held status requests get the state as of now: their clients ask
       again (and find the master gone or restarted) instead of waiting. */
    api_waiters(self->api, clock_mono_ms(), true);
    return rc;
}

int master_run(master_t *self, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    /* Atomic loads: the flags are set by a signal handler, or by another
       thread when the master is embedded (the unit tests do that). */
    while (!__atomic_load_n(stop, __ATOMIC_RELAXED)) {
        if (reload && __atomic_load_n(reload, __ATOMIC_RELAXED)) {
            __atomic_store_n(reload, 0, __ATOMIC_RELAXED);
            s_reload(self);
        }
        int64_t now = clock_mono_ms();
        zmq_pollitem_t items[9] = {{self->reports, 0, ZMQ_POLLIN, 0},
                                   {self->api_sock, 0, ZMQ_POLLIN, 0},
                                   {NULL, journal_fd(self->journal), ZMQ_POLLIN, 0}};
        int n = 3, ngate, http_at = -1;
        if (self->auth)
            items[n++] = (zmq_pollitem_t){auth_socket(self->auth), 0, ZMQ_POLLIN, 0};
        if (self->dash) {
            http_at = n;
            items[n++] = (zmq_pollitem_t){dash_socket(self->dash), 0, ZMQ_POLLIN, 0};
        }
        void *const *gate = gate_sockets(self->gate, &ngate);
        int first_gate = n;
        for (int i = 0; i < ngate && n < 9; i++)
            items[n++] = (zmq_pollitem_t){gate[i], 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(items, n, s_poll_timeout(self, now));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            log_error("event=poll_failed error=\"%s\"", zmq_strerror(errno));
            return -1;
        }
        int64_t turn_us = clock_mono_us();
        now = turn_us / 1000;
        bool gate_events = false;
        for (int i = first_gate; i < n; i++)
            gate_events |= (items[i].revents & ZMQ_POLLIN) != 0;
        s_turn(self, items, gate_events, http_at >= 0 && (items[http_at].revents & ZMQ_POLLIN),
               now);
        /* Workers count the master dead after heartbeat x liveness of
           silence: a turn this long is worth a line in the log. */
        turn_us = clock_mono_us() - turn_us;
        metrics_loop_turn(self->metrics, (double) turn_us / 1e6);
        int64_t spent = turn_us / 1000;
        if (spent > self->cfg.heartbeat_ms)
            log_warn("event=loop_stall ms=%" PRId64 " heartbeat_ms=%d", spent, self->cfg.heartbeat_ms);
    }
    return s_stop(self);
}

void master_destroy(master_t **p)
{
    if (!p || !*p)
        return;
    master_t *self = *p;
    /* The HTTP threads first: they may be waiting on the loop's socket. */
    web_destroy(&self->web);
    dash_destroy(&self->dash);
    /* Commits what is pending; its submits are answered while the API
       socket is still open. */
    if (self->api)
        api_flush(self->api);
    else if (self->journal)
        journal_flush(self->journal);
    api_destroy(&self->api);
    alloc_destroy(&self->alloc);
    tasks_destroy(&self->tasks);
    journal_destroy(&self->journal);
    waiters_destroy(&self->waiters);
    registry_destroy(&self->registry);
    auth_destroy(&self->auth);
    claim_key_destroy(&self->claims);
    keys_secret_free(&self->curve_secret);
    gate_destroy(&self->gate);
    if (self->api_sock)
        zmq_close(self->api_sock);
    if (self->reports)
        zmq_close(self->reports);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    store_destroy(&self->store);
    deps_destroy(&self->deps);
    jobs_destroy(&self->jobs);
    idem_destroy(&self->idem);
    sched_destroy(&self->sched);
    metrics_destroy(&self->metrics);
    free(self->bind_addr);
    free(self->db_path);
    free(self);
    *p = NULL;
}
