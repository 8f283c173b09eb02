/*  harness: see harness.h. */
#include "harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define H_MAX_PROCS 32
#define H_MAX_ARGS 64

/* Lines that mean a sanitizer found something in a program. */
static const char *const s_sanitizer_marks[] = {
    "ERROR: AddressSanitizer", "WARNING: AddressSanitizer", "ERROR: LeakSanitizer",
    "LeakSanitizer",           "WARNING: ThreadSanitizer",  "ERROR: ThreadSanitizer",
    "runtime error:",          "ERROR: UndefinedBehaviorSanitizer", NULL,
};

struct h_proc {
    h_cluster_t *cluster;
    char *name;
    char *log_path;
    bool is_worker;
    pid_t pid;
    int fd;               /* read end of the child's stdout+stderr */
    int log_fd;
    pthread_t reader;
    bool reader_started;

    pthread_mutex_t mu;   /* guards buf, len, eof, stop */
    pthread_cond_t cv;
    char *buf;            /* everything the child printed, NUL-terminated */
    size_t len, cap;
    bool eof;
    bool stop;

    bool reaped;
    int exit_code;        /* as h_proc_wait_exit returns it */
    bool exit_observed;   /* the test saw the exit code (so it judged it) */
    bool killed;          /* SIGKILLed on purpose */
    char *worker_id;
};

struct h_cluster {
    char *name;
    char *dir;
    h_proc_t *procs[H_MAX_PROCS];
    int nprocs;
    h_proc_t *master;
    int api_port, report_port;
    char addr[300];   /* "127.0.0.1:PORT", or "ipc://DIR" */
    int nworkers;
    const char *const *worker_wrap;   /* h_worker_wrap (borrowed), NULL = none */
};

/* ------------------------------------------------------------------ timing */

double h_slowdown(void)
{
    const char *env = getenv("ZTASK_TEST_SLOWDOWN");
    if (env && *env) {
        double v = strtod(env, NULL);
        if (v >= 1.0)
            return v;
    }
    const char *bin = h_bin_dir();
    if (strstr(bin, "/asan/") || strstr(bin, "/asan"))
        return 3.0;
    if (strstr(bin, "/tsan/") || strstr(bin, "/tsan"))
        return 5.0;
    return 1.0;
}

int h_ms(int base_ms)
{
    return (int)(base_ms * h_slowdown());
}

int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double h_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void h_nap(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------------- paths */

const char *h_bin_dir(void)
{
    const char *env = getenv("ZTASK_BIN_DIR");
    return env && *env ? env : "build/release/bin";
}

const char *h_lib_dir(void)
{
    const char *env = getenv("ZTASK_LIB_DIR");
    return env && *env ? env : "build/release/lib";
}

static char *s_strdup(const char *s)
{
    char *d = strdup(s ? s : "");
    ck_assert_ptr_nonnull(d);
    return d;
}

static char *s_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *s_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    ck_assert_int_ge(n, 0);
    return out;
}

/* --------------------------------------------------------------- sanitizer */

static const char *s_sanitizer_line(const char *text)
{
    for (int i = 0; s_sanitizer_marks[i]; i++) {
        const char *hit = strstr(text, s_sanitizer_marks[i]);
        if (hit)
            return hit;
    }
    return NULL;
}

/* The tail of a process's output, for failure messages. */
static char *s_tail(h_proc_t *p, size_t max)
{
    pthread_mutex_lock(&p->mu);
    size_t from = p->len > max ? p->len - max : 0;
    char *t = s_strdup(p->buf + from);
    pthread_mutex_unlock(&p->mu);
    return t;
}

/* ----------------------------------------------------------------- cluster */

h_cluster_t *h_cluster_new(const char *test_name)
{
    h_cluster_t *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    c->name = s_strdup(test_name);
    const char *tmp = getenv("TMPDIR");
    c->dir = s_printf("%s/ztask-e2e-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", test_name);
    ck_assert_msg(mkdtemp(c->dir) != NULL, "mkdtemp %s: %s", c->dir, strerror(errno));
    fprintf(stderr, "[%s] logs and data in %s\n", test_name, c->dir);
    return c;
}

const char *h_dir(const h_cluster_t *c)
{
    return c->dir;
}

char *h_path(const h_cluster_t *c, const char *name)
{
    return s_printf("%s/%s", c->dir, name);
}

int h_api_port(const h_cluster_t *c)
{
    return c->api_port;
}

int h_report_port(const h_cluster_t *c)
{
    return c->report_port;
}

const char *h_master_addr(const h_cluster_t *c)
{
    return c->addr;
}

h_proc_t *h_master(const h_cluster_t *c)
{
    return c->master;
}

static int s_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void s_proc_reap(h_proc_t *p, int wait_flags);
static void s_proc_join_reader(h_proc_t *p);
static void s_proc_free(h_proc_t *p);

void h_cluster_destroy(h_cluster_t **pp)
{
    if (!pp || !*pp)
        return;
    h_cluster_t *c = *pp;
    *pp = NULL;
    char problems[4096] = "";
    size_t plen = 0;
#define PROBLEM(...)                                                                     \
    do {                                                                                 \
        if (plen < sizeof problems - 1)                                                  \
            plen += (size_t)snprintf(problems + plen, sizeof problems - plen, __VA_ARGS__); \
    } while (0)

    /* Workers first: a worker stopping after its master may wait on it. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < c->nprocs; i++) {
            h_proc_t *p = c->procs[i];
            if (p->is_worker != (pass == 0))
                continue;
            s_proc_reap(p, WNOHANG);
            if (p->reaped)
                continue;
            kill(p->pid, SIGTERM);
        }
        for (int i = 0; i < c->nprocs; i++) {
            h_proc_t *p = c->procs[i];
            if (p->is_worker != (pass == 0) || p->reaped)
                continue;
            int code = h_proc_wait_exit(p, 15000);
            p->exit_observed = false;
            if (code == -1) {
                kill(p->pid, SIGKILL);
                s_proc_reap(p, 0);
                PROBLEM("%s did not exit within %d ms of SIGTERM (killed); ", p->name,
                        h_ms(15000));
            } else if (code != 0) {
                PROBLEM("%s exited %d after SIGTERM (want 0); ", p->name, code);
            }
            p->exit_observed = true;
        }
    }
    for (int i = 0; i < c->nprocs; i++) {
        h_proc_t *p = c->procs[i];
        if (!p->exit_observed && !p->killed && p->reaped && p->exit_code != 0)
            PROBLEM("%s exited %d unexpectedly; ", p->name, p->exit_code);
        s_proc_join_reader(p);
        pthread_mutex_lock(&p->mu);
        const char *hit = s_sanitizer_line(p->buf);
        if (hit) {
            const char *eol = strchr(hit, '\n');
            int n = eol ? (int)(eol - hit) : (int)strlen(hit);
            PROBLEM("sanitizer report in %s: %.*s; ", p->log_path, n > 200 ? 200 : n, hit);
        }
        pthread_mutex_unlock(&p->mu);
    }
    bool ok = plen == 0;
    const char *keep = getenv("ZTASK_TEST_KEEP");
    if (ok && !(keep && *keep && strcmp(keep, "0") != 0))
        nftw(c->dir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    char *dir = s_strdup(c->dir);
    for (int i = 0; i < c->nprocs; i++)
        s_proc_free(c->procs[i]);
    free(c->name);
    free(c->dir);
    free(c);
    if (!ok) {
        char msg[4600];
        snprintf(msg, sizeof msg, "teardown: %s(logs kept in %s)", problems, dir);
        free(dir);
        ck_abort_msg("%s", msg);
    }
    free(dir);
#undef PROBLEM
}

/* --------------------------------------------------------------- processes */

static void *s_reader_main(void *arg)
{
    h_proc_t *p = arg;
    char chunk[65536];
    for (;;) {
        pthread_mutex_lock(&p->mu);
        bool stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        struct pollfd pfd = {p->fd, POLLIN, 0};
        int r = poll(&pfd, 1, 100);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        ssize_t n = read(p->fd, chunk, sizeof chunk);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break;
        if (p->log_fd >= 0) {
            ssize_t off = 0;
            while (off < n) {
                ssize_t w = write(p->log_fd, chunk + off, (size_t)(n - off));
                if (w <= 0)
                    break;
                off += w;
            }
        }
        pthread_mutex_lock(&p->mu);
        if (p->len + (size_t)n + 1 > p->cap) {
            size_t cap = p->cap ? p->cap : 65536;
            while (cap < p->len + (size_t)n + 1)
                cap *= 2;
            char *nb = realloc(p->buf, cap);
            if (!nb) {
                pthread_mutex_unlock(&p->mu);
                abort();
            }
            p->buf = nb;
            p->cap = cap;
        }
        memcpy(p->buf + p->len, chunk, (size_t)n);
        p->len += (size_t)n;
        p->buf[p->len] = '\0';
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&p->mu);
    p->eof = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Forks and execs argv with stdout and stderr into *out_fd (pipe read end)
   and stdin from stdin_fd (or /dev/null when -1). Only async-signal-safe
   calls between fork and exec: the test may have threads. */
static pid_t s_spawn(char *const argv[], int stdin_fd, int out_fd_w, int err_fd_w)
{
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(devnull, 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* The child dies with the test, even when Check _exits on a failure. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (dup2(stdin_fd >= 0 ? stdin_fd : devnull, 0) < 0 || dup2(out_fd_w, 1) < 0 ||
            dup2(err_fd_w, 2) < 0)
            _exit(127);
        /* Check's own descriptors and anything else stay with the test. */
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], argv);
        static const char msg[] = "harness: exec failed\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    close(devnull);
    return pid;
}

static h_proc_t *s_proc_start(h_cluster_t *c, const char *name, bool is_worker, char *const argv[])
{
    ck_assert_int_lt(c->nprocs, H_MAX_PROCS);
    h_proc_t *p = calloc(1, sizeof *p);
    ck_assert_ptr_nonnull(p);
    p->cluster = c;
    p->name = s_strdup(name);
    p->is_worker = is_worker;
    /* A restarted master keeps its earlier log: number the files. */
    p->log_path = s_printf("%s/%s.log", c->dir, name);
    for (int n = 2; access(p->log_path, F_OK) == 0; n++) {
        free(p->log_path);
        p->log_path = s_printf("%s/%s.%d.log", c->dir, name, n);
    }
    p->log_fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_msg(p->log_fd >= 0, "open %s: %s", p->log_path, strerror(errno));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->buf = s_strdup("");
    p->cap = 1;

    /* Write the command line first: the log then explains itself. */
    char head[2048];
    size_t hl = 0;
    hl += (size_t)snprintf(head + hl, sizeof head - hl, "# harness:");
    for (int i = 0; argv[i] && hl < sizeof head - 2; i++)
        hl += (size_t)snprintf(head + hl, sizeof head - hl, " %s", argv[i]);
    if (hl > sizeof head - 2)
        hl = sizeof head - 2;
    head[hl++] = '\n';
    ssize_t w = write(p->log_fd, head, hl);
    (void)w;

    int pfd[2];
    ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
    p->pid = s_spawn(argv, -1, pfd[1], pfd[1]);
    close(pfd[1]);
    p->fd = pfd[0];
    ck_assert_int_eq(pthread_create(&p->reader, NULL, s_reader_main, p), 0);
    p->reader_started = true;
    c->procs[c->nprocs++] = p;
    return p;
}

static void s_proc_join_reader(h_proc_t *p)
{
    if (!p->reader_started)
        return;
    /* The pipe reaches EOF when the process and every child that inherited
       it are gone; give that a moment, then stop reading regardless. */
    int64_t deadline = h_now_ms() + 2000;
    pthread_mutex_lock(&p->mu);
    while (!p->eof && h_now_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    p->stop = true;
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->reader, NULL);
    p->reader_started = false;
}

static void s_proc_free(h_proc_t *p)
{
    if (!p)
        return;
    if (!p->reaped) {
        kill(p->pid, SIGKILL);
        s_proc_reap(p, 0);
    }
    s_proc_join_reader(p);
    if (p->fd >= 0)
        close(p->fd);
    if (p->log_fd >= 0)
        close(p->log_fd);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->buf);
    free(p->name);
    free(p->log_path);
    free(p->worker_id);
    free(p);
}

static void s_proc_reap(h_proc_t *p, int wait_flags)
{
    if (p->reaped)
        return;
    int st;
    pid_t r;
    do {
        r = waitpid(p->pid, &st, wait_flags);
    } while (r < 0 && errno == EINTR);
    if (r == p->pid) {
        p->reaped = true;
        p->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    } else if (r < 0) {
        p->reaped = true;   /* not our child any more: nothing to wait for */
        p->exit_code = -2;
    }
}

pid_t h_proc_pid(const h_proc_t *p)
{
    return p->pid;
}

const char *h_proc_log(const h_proc_t *p)
{
    return p->log_path;
}

bool h_proc_running(h_proc_t *p)
{
    s_proc_reap(p, WNOHANG);
    return !p->reaped;
}

static int s_count_in(const char *buf, size_t from, size_t to, const char *needle)
{
    int n = 0;
    size_t nl = strlen(needle);
    const char *at = buf + from;
    const char *end = buf + to;
    while (at < end) {
        const char *hit = memmem(at, (size_t)(end - at), needle, nl);
        if (!hit)
            break;
        n++;
        /* one match per line */
        const char *eol = memchr(hit, '\n', (size_t)(end - hit));
        at = eol ? eol + 1 : end;
    }
    return n;
}

int h_proc_count_log(h_proc_t *p, const char *needle)
{
    pthread_mutex_lock(&p->mu);
    const char *last_nl = p->len ? memrchr(p->buf, '\n', p->len) : NULL;
    size_t upto = last_nl ? (size_t)(last_nl - p->buf) + 1 : 0;
    int n = s_count_in(p->buf, 0, upto, needle);
    pthread_mutex_unlock(&p->mu);
    return n;
}

bool h_proc_wait_log(h_proc_t *p, const char *needle, int count, int timeout_ms)
{
    int64_t deadline = h_now_ms() + h_ms(timeout_ms);
    int seen = 0;
    size_t scanned = 0;   /* bytes of whole lines already counted */
    pthread_mutex_lock(&p->mu);
    for (;;) {
        const char *last_nl =
            p->len > scanned ? memrchr(p->buf + scanned, '\n', p->len - scanned) : NULL;
        if (last_nl) {
            size_t upto = (size_t)(last_nl - p->buf) + 1;
            seen += s_count_in(p->buf, scanned, upto, needle);
            scanned = upto;
        }
        if (seen >= count)
            break;
        if (p->eof || h_now_ms() >= deadline)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
    return seen >= count;
}

void h_proc_signal(h_proc_t *p, int sig)
{
    s_proc_reap(p, WNOHANG);
    if (!p->reaped)
        kill(p->pid, sig);
}

int h_proc_wait_exit(h_proc_t *p, int timeout_ms)
{
    int64_t deadline = h_now_ms() + h_ms(timeout_ms);
    for (;;) {
        s_proc_reap(p, WNOHANG);
        if (p->reaped) {
            p->exit_observed = true;
            return p->exit_code;
        }
        if (h_now_ms() >= deadline)
            return -1;
        h_nap(10);
    }
}

void h_proc_kill9(h_proc_t *p)
{
    p->killed = true;
    h_proc_signal(p, SIGKILL);
    s_proc_reap(p, 0);
}

void h_proc_stop(h_proc_t *p, int timeout_ms)
{
    h_proc_signal(p, SIGTERM);
    int code = h_proc_wait_exit(p, timeout_ms);
    if (code == -1) {
        p->killed = true;
        kill(p->pid, SIGKILL);
        s_proc_reap(p, 0);
        char *tail = s_tail(p, 800);
        ck_abort_msg("%s did not exit within %d ms of SIGTERM (log %s): ...%s", p->name,
                     h_ms(timeout_ms), p->log_path, tail);
    }
    if (code != 0) {
        char *tail = s_tail(p, 800);
        ck_abort_msg("%s exited %d after SIGTERM, want 0 (log %s): ...%s", p->name, code,
                     p->log_path, tail);
    }
}

/* Collects NULL-terminated varargs after a fixed prefix into argv. */
static int s_collect(char **argv, int n, va_list ap)
{
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(n, H_MAX_ARGS - 1);
        argv[n++] = (char *)a;
    }
    argv[n] = NULL;
    return n;
}

/* Parses "key=tcp://HOST:PORT" out of a log line. */
static int s_port_after(const char *line, const char *key)
{
    const char *at = strstr(line, key);
    if (!at)
        return -1;
    at += strlen(key);
    const char *eol = strchr(at, '\n');
    const char *colon = NULL;
    bool ipc = strstr(key, "ipc://") != NULL;   /* the port follows the last '/' there */
    for (const char *q = at; *q && q != eol && *q != ' '; q++)
        if (*q == ':' || (ipc && *q == '/'))
            colon = q;
    if (!colon)
        return -1;
    return atoi(colon + 1);
}

h_proc_t *h_master_start(h_cluster_t *c, int port, ...)
{
    char *bin = s_printf("%s/ztask-master", h_bin_dir());
    char *db = h_path(c, "master.db");
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    char *argv[H_MAX_ARGS];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--db";
    argv[n++] = db;
    argv[n++] = "--port";
    argv[n++] = portbuf;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    va_list ap;
    va_start(ap, port);
    s_collect(argv, n, ap);
    va_end(ap);
    h_proc_t *p = s_proc_start(c, "master", false, argv);
    free(bin);
    free(db);

    bool up = h_proc_wait_log(p, "event=listening", 1, 20000);
    if (!up) {
        char *tail = s_tail(p, 1500);
        ck_abort_msg("master did not log event=listening (log %s): ...%s", p->log_path, tail);
    }
    pthread_mutex_lock(&p->mu);
    const char *line = strstr(p->buf, "event=listening");
    /* A master in an ipc:// directory (--bind ipc://DIR) says
       api=ipc://DIR/PORT: its address is then the directory. */
    const char *ipc = strstr(line, "api=ipc://");
    char dir[sizeof c->addr] = "";
    if (ipc && ipc < strchr(line, '\n')) {
        ipc += 4;
        size_t len = strcspn(ipc, " \n");
        while (len > 0 && ipc[len - 1] != '/')
            len--;
        if (len > 1 && len < sizeof dir)
            snprintf(dir, sizeof dir, "%.*s", (int) (len - 1), ipc);
    }
    int api = s_port_after(line, ipc ? "api=ipc://" : "api=tcp://");
    int rep = s_port_after(line, ipc ? "reports=ipc://" : "reports=tcp://");
    pthread_mutex_unlock(&p->mu);
    ck_assert_msg(api > 0 && rep > 0, "cannot parse ports from the listening line (log %s)",
                  p->log_path);
    c->api_port = api;
    c->report_port = rep;
    if (dir[0])
        snprintf(c->addr, sizeof c->addr, "%s", dir);
    else
        snprintf(c->addr, sizeof c->addr, "127.0.0.1:%d", api);
    c->master = p;
    return p;
}

static h_proc_t *s_worker_spawn(h_cluster_t *c, const char *name, int threads, va_list ap)
{
    ck_assert_msg(c->api_port > 0, "start the master before workers");
    char *bin = s_printf("%s/ztask-worker", h_bin_dir());
    char thr[16];
    snprintf(thr, sizeof thr, "%d", threads);
    char *argv[H_MAX_ARGS];
    int n = 0;
    for (int i = 0; c->worker_wrap && c->worker_wrap[i]; i++) {
        ck_assert_int_lt(n, H_MAX_ARGS / 2);
        argv[n++] = (char *) c->worker_wrap[i];
    }
    argv[n++] = bin;
    argv[n++] = "--master";
    argv[n++] = c->addr;
    argv[n++] = "--threads";
    argv[n++] = thr;
    argv[n++] = "--name";
    argv[n++] = (char *)name;
    /* The cluster is one host: its workers share one state directory,
       apart from every other test's (a worker sweeps what a dead one
       left there). */
    char *state = h_path(c, "state");
    argv[n++] = "--state-dir";
    argv[n++] = state;
    /* Tests run as root in CI; a worker refuses to run commands as root
       for a master without keys unless told (ztask-worker --help). A
       test that wants the refusal starts the worker with h_run. */
    if (geteuid() == 0)
        argv[n++] = "--allow-root";
    s_collect(argv, n, ap);
    char *pname = s_printf("worker-%s", name);
    h_proc_t *p = s_proc_start(c, pname, true, argv);
    free(pname);
    free(state);
    free(bin);
    c->nworkers++;
    return p;
}

void h_worker_wrap(h_cluster_t *c, const char *const *wrap)
{
    c->worker_wrap = wrap;
}

h_proc_t *h_worker_spawn(h_cluster_t *c, const char *name, int threads, ...)
{
    va_list ap;
    va_start(ap, threads);
    h_proc_t *p = s_worker_spawn(c, name, threads, ap);
    va_end(ap);
    return p;
}

h_proc_t *h_worker_start(h_cluster_t *c, const char *name, int threads, ...)
{
    va_list ap;
    va_start(ap, threads);
    h_proc_t *p = s_worker_spawn(c, name, threads, ap);
    va_end(ap);
    if (!h_proc_wait_log(p, "event=registered", 1, 20000)) {
        char *tail = s_tail(p, 1500);
        ck_abort_msg("worker %s did not log event=registered (log %s): ...%s", name,
                     p->log_path, tail);
    }
    ck_assert_ptr_nonnull(h_worker_id(p));
    return p;
}

const char *h_worker_id(h_proc_t *p)
{
    pthread_mutex_lock(&p->mu);
    const char *last = NULL;
    /* "event=registered worker=ID" or, after a master restart,
       "event=reregistered worker=ID". */
    for (const char *at = p->buf; (at = strstr(at, "registered worker=")) != NULL; at++)
        last = at;
    char *id = NULL;
    if (last) {
        const char *eol = strchr(last, '\n');
        const char *w = strstr(last, "worker=");
        if (w && (!eol || w < eol)) {
            w += strlen("worker=");
            size_t n = strcspn(w, " \n");
            id = strndup(w, n);
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (id) {
        free(p->worker_id);
        p->worker_id = id;
    }
    return p->worker_id;
}

/* -------------------------------------------------------------- run to end */

h_run_t *h_run(char *const argv[], const char *stdin_data, int timeout_ms)
{
    h_run_t *r = calloc(1, sizeof *r);
    ck_assert_ptr_nonnull(r);
    int in_fd = -1;
    if (stdin_data) {
        /* A file rather than a pipe: no writer to juggle against the readers. */
        char tmpl[] = "/tmp/ztask-e2e-stdin-XXXXXX";
        in_fd = mkostemp(tmpl, O_CLOEXEC);
        ck_assert_int_ge(in_fd, 0);
        unlink(tmpl);
        size_t len = strlen(stdin_data), off = 0;
        while (off < len) {
            ssize_t w = write(in_fd, stdin_data + off, len - off);
            ck_assert_int_gt(w, 0);
            off += (size_t)w;
        }
        lseek(in_fd, 0, SEEK_SET);
    }
    int out[2], err[2];
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
    int64_t start = h_now_ms();
    pid_t pid = s_spawn(argv, in_fd, out[1], err[1]);
    close(out[1]);
    close(err[1]);
    if (in_fd >= 0)
        close(in_fd);

    size_t cap[2] = {65536, 4096}, len[2] = {0, 0};
    char *buf[2] = {malloc(cap[0]), malloc(cap[1])};
    ck_assert(buf[0] && buf[1]);
    struct pollfd pfd[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    int open_fds = 2;
    int64_t deadline = start + h_ms(timeout_ms);
    bool timed_out = false;
    while (open_fds > 0) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0) {
            timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        int pr = poll(pfd, 2, (int)(left > 1000 ? 1000 : left));
        if (pr < 0 && errno == EINTR)
            continue;
        ck_assert_int_ge(pr, 0);
        for (int i = 0; i < 2; i++) {
            if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (len[i] + 65536 + 1 > cap[i]) {
                while (len[i] + 65536 + 1 > cap[i])
                    cap[i] *= 2;
                buf[i] = realloc(buf[i], cap[i]);
                ck_assert_ptr_nonnull(buf[i]);
            }
            ssize_t n = read(pfd[i].fd, buf[i] + len[i], 65536);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                close(pfd[i].fd);
                pfd[i].fd = -1;
                open_fds--;
                continue;
            }
            len[i] += (size_t)n;
        }
    }
    for (int i = 0; i < 2; i++)
        if (pfd[i].fd >= 0)
            close(pfd[i].fd);
    int st = 0;
    pid_t w;
    do {
        w = waitpid(pid, &st, 0);
    } while (w < 0 && errno == EINTR);
    r->elapsed = (double)(h_now_ms() - start) / 1000.0;
    if (timed_out)
        r->rc = -1;
    else
        r->rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    buf[0][len[0]] = '\0';
    buf[1][len[1]] = '\0';
    r->out = buf[0];
    r->out_len = len[0];
    r->err = buf[1];
    r->err_len = len[1];
    const char *san = s_sanitizer_line(r->err);
    if (san) {
        /* The whole report goes to the test's log for the post mortem. */
        fprintf(stderr, "---- stderr of %s ----\n%.16384s\n---- end ----\n", argv[0], r->err);
        const char *eol = strchr(san, '\n');
        int n = eol ? (int)(eol - san) : (int)strlen(san);
        ck_abort_msg("sanitizer report from %s: %.*s", argv[0], n > 300 ? 300 : n, san);
    }
    return r;
}

h_run_t *h_cliv(h_cluster_t *c, const char *const *args, int timeout_ms)
{
    char *bin = s_printf("%s/ztask", h_bin_dir());
    char *argv[H_MAX_ARGS];
    int n = 0;
    argv[n++] = bin;
    if (c && c->addr[0]) {
        argv[n++] = "--master";
        argv[n++] = c->addr;
    }
    for (int i = 0; args[i]; i++) {
        ck_assert_int_lt(n, H_MAX_ARGS - 1);
        argv[n++] = (char *)args[i];
    }
    argv[n] = NULL;
    h_run_t *r = h_run(argv, NULL, timeout_ms);
    free(bin);
    return r;
}

h_run_t *h_cli(h_cluster_t *c, ...)
{
    const char *args[H_MAX_ARGS];
    int n = 0;
    va_list ap;
    va_start(ap, c);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(n, H_MAX_ARGS - 1);
        args[n++] = a;
    }
    va_end(ap);
    args[n] = NULL;
    return h_cliv(c, args, 60000);
}

h_proc_t *h_cli_start(h_cluster_t *c, ...)
{
    ck_assert_msg(c->addr[0], "start the master before the CLI");
    char *bin = s_printf("%s/ztask", h_bin_dir());
    char *argv[H_MAX_ARGS];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--master";
    argv[n++] = c->addr;
    va_list ap;
    va_start(ap, c);
    s_collect(argv, n, ap);
    va_end(ap);
    h_proc_t *p = s_proc_start(c, "cli", false, argv);
    free(bin);
    return p;
}

void h_run_free(h_run_t **p)
{
    if (!p || !*p)
        return;
    free((*p)->out);
    free((*p)->err);
    free(*p);
    *p = NULL;
}

const char *h_run_desc(const h_run_t *r)
{
    static char buf[1200];
    snprintf(buf, sizeof buf, "rc=%d after %.2fs; stdout: %.300s; stderr: %.600s", r->rc,
             r->elapsed, r->out, r->err);
    return buf;
}

/* -------------------------------------------------------------------- JSON */

cJSON *h_json_first(const char *text)
{
    const char *at = text;
    while (*at == '\n' || *at == ' ' || *at == '\r' || *at == '\t')
        at++;
    const char *eol = strchr(at, '\n');
    size_t n = eol ? (size_t)(eol - at) : strlen(at);
    if (n == 0)
        return NULL;
    return cJSON_ParseWithLength(at, n);
}

cJSON *h_json_lines(const char *text)
{
    cJSON *arr = cJSON_CreateArray();
    ck_assert_ptr_nonnull(arr);
    const char *at = text;
    int lineno = 0;
    while (*at) {
        const char *eol = strchr(at, '\n');
        size_t n = eol ? (size_t)(eol - at) : strlen(at);
        lineno++;
        if (n > 0) {
            cJSON *item = cJSON_ParseWithLength(at, n);
            ck_assert_msg(item != NULL, "line %d is not JSON: %.*s", lineno,
                          (int)(n > 200 ? 200 : n), at);
            cJSON_AddItemToArray(arr, item);
        }
        at = eol ? eol + 1 : at + n;
    }
    return arr;
}

int64_t h_jint(const cJSON *obj, const char *key, int64_t def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : def;
}

double h_jnum(const cJSON *obj, const char *key, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

const char *h_jstr(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool h_jtrue(const cJSON *obj, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

/* ------------------------------------------------------------ CLI shortcuts */

int64_t h_submit(h_cluster_t *c, int64_t *ntasks, ...)
{
    const char *args[H_MAX_ARGS];
    int n = 0;
    args[n++] = "submit";
    args[n++] = "--json";
    va_list ap;
    va_start(ap, ntasks);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        ck_assert_int_lt(n, H_MAX_ARGS - 1);
        args[n++] = a;
    }
    va_end(ap);
    args[n] = NULL;
    h_run_t *r = h_cliv(c, args, 120000);
    ck_assert_msg(r->rc == 0, "submit failed: %s", h_run_desc(r));
    cJSON *j = h_json_first(r->out);
    ck_assert_msg(j != NULL, "submit --json printed no JSON: %s", h_run_desc(r));
    int64_t job = h_jint(j, "job", -1);
    int64_t tasks = h_jint(j, "tasks", -1);
    ck_assert_msg(job > 0 && tasks >= 0, "submit --json: want {\"job\":ID,\"tasks\":N}: %s",
                  h_run_desc(r));
    if (ntasks)
        *ntasks = tasks;
    cJSON_Delete(j);
    h_run_free(&r);
    return job;
}

cJSON *h_status(h_cluster_t *c, int64_t job)
{
    char jb[32];
    snprintf(jb, sizeof jb, "%lld", (long long)job);
    h_run_t *r = h_cli(c, "status", jb, "--json", NULL);
    cJSON *j = r->rc == 0 ? h_json_first(r->out) : NULL;
    h_run_free(&r);
    return j;
}

int64_t h_status_count(h_cluster_t *c, int64_t job, const char *field)
{
    cJSON *j = h_status(c, job);
    int64_t v = j ? h_jint(j, field, -1) : -1;
    cJSON_Delete(j);
    return v;
}

void h_task_wait(h_cluster_t *c, int64_t job, int index, char *wait, size_t size)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long) job);
    h_run_t *r = h_cli(c, "tasks", "--waiting", "--job", id, "--json", NULL);
    ck_assert_msg(r->rc == 0, "tasks --waiting: %s", h_run_desc(r));
    cJSON *all = h_json_lines(r->out);
    const cJSON *t;
    snprintf(wait, size, "%s", "");
    cJSON_ArrayForEach(t, all) if (h_jint(t, "index", -1) == index)
        snprintf(wait, size, "%s", h_jstr(t, "wait") ? h_jstr(t, "wait") : "(none)");
    cJSON_Delete(all);
    h_run_free(&r);
}

void h_cancel(h_cluster_t *c, int64_t job)
{
    char jb[32];
    snprintf(jb, sizeof jb, "%lld", (long long)job);
    const char *args[] = {"cancel", jb, NULL};
    h_run_t *r = h_cliv(c, args, 30000);
    ck_assert_msg(r->rc == 0, "cancel %s: %s", jb, h_run_desc(r));
    h_run_free(&r);
    ck_assert_int_eq(h_wait(c, job, 30000), 1);
}

int h_wait(h_cluster_t *c, int64_t job, int timeout_ms)
{
    char jb[32];
    snprintf(jb, sizeof jb, "%lld", (long long)job);
    const char *args[] = {"wait", jb, NULL};
    h_run_t *r = h_cliv(c, args, timeout_ms);
    int rc = r->rc;
    if (rc != 0 && rc != 1)
        fprintf(stderr, "h_wait(%lld): %s\n", (long long)job, h_run_desc(r));
    h_run_free(&r);
    return rc;
}

cJSON *h_results(h_cluster_t *c, int64_t job, const char *extra)
{
    char jb[32];
    snprintf(jb, sizeof jb, "%lld", (long long)job);
    const char *args[] = {"results", jb, "--json", extra, NULL};
    h_run_t *r = h_cliv(c, args, 120000);
    ck_assert_msg(r->rc == 0 || r->rc == 1, "results %s: %s", jb, h_run_desc(r));
    cJSON *arr = h_json_lines(r->out);
    h_run_free(&r);
    return arr;
}

cJSON **h_results_by_index(cJSON *results, int n)
{
    int got = cJSON_GetArraySize(results);
    ck_assert_msg(got == n, "want %d result records, got %d", n, got);
    cJSON **by = calloc((size_t)n, sizeof *by);
    ck_assert_ptr_nonnull(by);
    const cJSON *item;
    cJSON_ArrayForEach(item, results) {
        int64_t idx = h_jint(item, "index", -1);
        ck_assert_msg(idx >= 0 && idx < n, "result with index %lld outside 0..%d",
                      (long long)idx, n - 1);
        ck_assert_msg(by[idx] == NULL, "index %lld has two result records", (long long)idx);
        by[idx] = (cJSON *)item;
    }
    return by;
}

/* --------------------------------------------------------------- ports */

/* Binds 127.0.0.1:port as a listener would (SO_REUSEADDR, like libzmq);
   returns the socket or -1. */
static int s_try_bind(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int h_loopback_socket(bool listening, int *port)
{
    int fd = s_try_bind(0);
    ck_assert_msg(fd >= 0, "cannot bind a loopback socket");
    if (listening)
        ck_assert_int_eq(listen(fd, 16), 0);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

int h_free_base_port(void)
{
    int lo = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
    if (f) {
        int a, b;
        if (fscanf(f, "%d %d", &a, &b) == 2 && a > 12000)
            lo = a;
        fclose(f);
    }
    /* Below the ephemeral range and above the well-known one; random so
       tests running side by side rarely try the same ports. */
    unsigned seed = (unsigned)getpid() ^ (unsigned)h_now_ms();
    for (int attempt = 0; attempt < 500; attempt++) {
        int port = 10000 + (int)(rand_r(&seed) % (unsigned)(lo - 10002));
        int a = s_try_bind(port);
        if (a < 0)
            continue;
        int b = s_try_bind(port + 1);
        close(a);
        if (b < 0)
            continue;
        close(b);
        return port;
    }
    ck_abort_msg("no free port pair below %d", lo);
    return -1;
}

/* ------------------------------------------------------- processes by id */

/* Reads /proc/PID/stat: state and process group. -1 when the pid is gone. */
static int s_proc_stat(pid_t pid, char *state, pid_t *pgrp)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[1024];
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* comm may hold spaces and parens: fields start after the last ')'. */
    char *rp = strrchr(line, ')');
    if (!rp)
        return -1;
    char st;
    int ppid, pg;
    if (sscanf(rp + 1, " %c %d %d", &st, &ppid, &pg) != 3)
        return -1;
    if (state)
        *state = st;
    if (pgrp)
        *pgrp = pg;
    return 0;
}

long h_vm_kib(pid_t pid, const char *field)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
    char *text = h_read_file(path);
    if (!text)
        return -1;
    const char *at = strstr(text, field);
    long kib = at ? atol(at + strlen(field) + 1) : -1;
    free(text);
    return kib;
}

bool h_pid_gone(pid_t pid)
{
    if (kill(pid, 0) == -1 && errno == ESRCH)
        return true;
    char st;
    if (s_proc_stat(pid, &st, NULL) < 0)
        return true;
    return st == 'Z' || st == 'X';
}

int h_pgid_alive(pid_t pgid)
{
    if (kill(-pgid, 0) == -1 && errno == ESRCH)
        return 0;
    /* kill() also finds zombies; count the living members. */
    DIR *d = opendir("/proc");
    if (!d)
        return 1;
    int alive = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char st;
        pid_t pg;
        if (s_proc_stat((pid_t)pid, &st, &pg) == 0 && pg == pgid && st != 'Z' && st != 'X')
            alive++;
    }
    closedir(d);
    return alive;
}

char *h_read_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

void h_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "we");
    ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
    size_t len = strlen(text);
    ck_assert_int_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* ------------------------------------------------------------------ suites */

int h_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    /* Each test in its own process: a crash or a failed assertion in one
       cannot leak daemons or state into the next (PDEATHSIG reaps them). */
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

int h_http_port(h_proc_t *m)
{
    ck_assert_msg(h_proc_wait_log(m, "event=http_listening", 1, 10000), "no http_listening in %s",
                  h_proc_log(m));
    FILE *f = fopen(h_proc_log(m), "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    int port = 0;
    while (!port && fgets(line, sizeof line, f)) {
        char *p = strstr(line, "event=http_listening url=http");
        char *colon = p ? strstr(p, "127.0.0.1:") : NULL;
        if (colon)
            port = atoi(colon + strlen("127.0.0.1:"));
    }
    fclose(f);
    ck_assert_int_gt(port, 0);
    return port;
}

void h_slow_bytes_allowance(char *liveness, char *lease, size_t n)
{
    double k = 2 * h_slowdown();
    int live = (int) (3 * k + 0.5);
    snprintf(liveness, n, "%d", live > 100 ? 100 : live);
    snprintf(lease, n, "%d", (int) (10 * k + 0.5));
    char secs[32];
    snprintf(secs, sizeof secs, "%d", (int) (10 * k + 0.5));
    setenv("ZTASK_REQUEST_TIMEOUT", secs, 1);
}

/* An executable shell script bin/name, written as printf writes fmt. */
static void s_fake_command(const char *bin, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_fake_command(const char *bin, const char *name, const char *fmt, ...)
{
    char *path = NULL;
    ck_assert_int_gt(asprintf(&path, "%s/%s", bin, name), 0);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0755), 0);
    free(path);
}

/* Stand-in Slurm commands (harness.h). */
void h_fake_slurm(h_cluster_t *c)
{
    char *bin = h_path(c, "bin");
    ck_assert_int_eq(mkdir(bin, 0755), 0);
    const char *dir = h_dir(c);
    s_fake_command(bin, "sbatch",
                   "#!/bin/sh\n"
                   "d='%s'\n"
                   "echo \"$*\" >> \"$d/sbatch.log\"\n"
                   "n=$(wc -l < \"$d/sbatch.log\")\n"
                   "cat > \"$d/script.$n\"\n"
                   "if [ -e \"$d/fail\" ]; then\n"
                   "  echo 'sbatch: error: invalid partition specified: nosuch' >&2; exit 1\n"
                   "fi\n"
                   "id=$((1000 + $(ls \"$d\"/job.* 2>/dev/null | wc -l) + 1))\n"
                   "touch \"$d/job.$id\"\n"
                   "echo \"$id\"\n",
                   dir);
    s_fake_command(bin, "squeue",
                   "#!/bin/sh\n"
                   "d='%s'\n"
                   "echo \"$*\" >> \"$d/squeue.log\"\n"
                   "cat \"$d/squeue.txt\" 2>/dev/null\n"
                   "exit 0\n",
                   dir);
    s_fake_command(bin, "scancel", "#!/bin/sh\necho \"$*\" >> '%s/scancel.log'\n", dir);
    /* The master (started after this) inherits it. */
    char *newpath = NULL;
    ck_assert_int_gt(asprintf(&newpath, "%s:%s", bin, getenv("PATH") ? getenv("PATH") : ""), 0);
    setenv("PATH", newpath, 1);
    free(newpath);
    free(bin);
}
