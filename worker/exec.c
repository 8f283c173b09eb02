/*  exec: runs one command task as a child process (see exec.h).

    Why fork + execve rather than posix_spawn: posix_spawn can set the
    process group, signal mask and defaults, dup2 the pipes, close other
    descriptors and chdir (glibc extensions), but when it fails it returns
    one errno without saying which step failed, so "cannot chdir to '/x'"
    and "cannot execute 'x'" would be indistinguishable; and posix_spawnp
    searches the worker's PATH, not the task's. With fork the child reports
    the failing step and its errno through a close-on-exec pipe, and the
    PATH search is done here over candidates prepared before fork. The
    price is copying the worker's page tables per task, small for a worker.

    Between fork and execve the child runs only async-signal-safe system
    calls (setpgid, sigaction, sigprocmask, fcntl, dup2, close_range, close,
    chdir, execve, write, _exit) on memory prepared before fork: no malloc,
    no locks, no ZeroMQ, no logging.

    Order of the end game matters for safety: the process group is only
    signalled while our child is still unreaped (exit noticed with
    waitid(WNOWAIT)). An unreaped zombie keeps its pid, hence the group id,
    from being reused, so kill(-pgid) can never hit some other task's
    group that happens to get the same number later.
*/
#include "exec.h"

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The poll loop wakes at least this often to look at *cancel and the
   deadline; it is also the coalescing interval of on_output. */
#define EXEC_TICK_MS 100
#define EXEC_NO_PIDFD_TICK_MS 10
#define EXEC_DEFAULT_GRACE_MS 2000
/* After the child exits, descendants still holding our pipes get this
   long to finish writing and exit (a pipeline stage the shell did not
   wait for) before the whole group is SIGKILLed. */
#define EXEC_LINGER_MS 100
/* After that SIGKILL, pipes still open can only be held by a process that
   left the group (setsid); we stop reading rather than hang forever. */
#define EXEC_ABANDON_MS 1000
#define EXEC_IO_CHUNK 65536
/* Reads per stream per wakeup, so one chatty stream cannot starve the
   other or the timers (16 x 64 KiB = 1 MiB). */
#define EXEC_READS_PER_WAKE 16

/* What the child reports through the error pipe when a step fails. */
enum { STAGE_SETUP = 1, STAGE_CHDIR, STAGE_EXEC };
typedef struct {
    int stage;
    int err;
} child_report_t;

/* Everything the child needs, built before fork (the child may not
   allocate). */
typedef struct {
    char **envp;           /* array owned; strings borrowed or in owned[] */
    char *owned[4];        /* the ZTASK_* strings */
    char *const *argv;     /* argv for a path candidate */
    char *sh_argv[4];      /* {"sh", "-c", shell, NULL} */
    char **paths;          /* execve candidates + NULL; array and strings owned */
    char **script_argv;    /* {"/bin/sh", <candidate>, argv[1..], NULL} for ENOEXEC */
    const char *display;   /* the program name in error messages */
    const char *cwd;       /* borrowed from the spec, NULL = stay */
    bool shell;
    int max_fd;            /* bound of the close loop when close_range fails */
} launch_t;

typedef struct {
    int id;                /* 1 = stdout, 2 = stderr */
    int fd;                /* our read end, -1 once at EOF */
    char *buf;
    size_t len, alloc, cap;
    bool truncated;
    size_t flushed;        /* bytes already given to on_output */
    int64_t last_flush;
} stream_t;

/* ---------------------------------------------------------------- env */

/* True when two "KEY=VALUE" (or bare "KEY") strings have the same key. */
static bool s_same_key(const char *a, const char *b)
{
    while (*a && *a != '=' && *a == *b) {
        a++;
        b++;
    }
    return (*a == '=' || *a == '\0') && (*b == '=' || *b == '\0');
}

static bool s_is_ztask_var(const char *entry)
{
    static const char *const ours[] = {"ZTASK_TASK_ID", "ZTASK_JOB_ID", "ZTASK_ATTEMPT",
                                       "ZTASK_TASK_INDEX"};
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
        if (s_same_key(entry, ours[i]))
            return true;
    return false;
}

/* Replaces the entry with entry's key, or appends it. */
static void s_env_set(char **envp, size_t *n, char *entry)
{
    for (size_t i = 0; i < *n; i++)
        if (s_same_key(envp[i], entry)) {
            envp[i] = entry;
            return;
        }
    envp[(*n)++] = entry;
}

/* The worker's environment, minus ZTASK_* variables it may itself have
   inherited, plus the spec's env, plus this task's ZTASK_* variables.
   Reading environ is safe only because the worker never changes its
   environment once threads run (exec.h says so). */
static void s_build_env(launch_t *L, const exec_req_t *req)
{
    const proto_spec_t *spec = req->spec;
    size_t nenv = 0;
    while (environ && environ[nenv])
        nenv++;
    size_t envc = spec->env ? (size_t) (spec->envc > 0 ? spec->envc : 0) : 0;
    L->envp = xcalloc(nenv + envc + 4 + 1, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; i < nenv; i++)
        if (!s_is_ztask_var(environ[i]))
            L->envp[n++] = environ[i];
    for (size_t i = 0; i < envc && spec->env[i]; i++)
        if (strchr(spec->env[i], '=') && spec->env[i][0] != '=')
            s_env_set(L->envp, &n, spec->env[i]);
    L->owned[0] = xasprintf("ZTASK_TASK_ID=%lld", (long long) req->task_id);
    L->owned[1] = xasprintf("ZTASK_JOB_ID=%lld", (long long) req->job_id);
    L->owned[2] = xasprintf("ZTASK_ATTEMPT=%d", req->attempt);
    if (spec->index >= 0)
        L->owned[3] = xasprintf("ZTASK_TASK_INDEX=%lld", (long long) spec->index);
    for (int i = 0; i < 4; i++)
        if (L->owned[i])
            s_env_set(L->envp, &n, L->owned[i]);
    L->envp[n] = NULL;
}

/* --------------------------------------------------------------- argv */

/* execvp's search, done before fork: the candidates are the PATH entries
   of the task's environment (so a spec env PATH applies, as with
   `env PATH=.. cmd`), or glibc's default when it has none. */
static void s_build_paths(launch_t *L, const char *file)
{
    if (strchr(file, '/')) {
        L->paths = xcalloc(2, sizeof(char *));
        L->paths[0] = xstrdup(file);
        return;
    }
    const char *path = "/bin:/usr/bin";
    for (char **e = L->envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) {
            path = *e + 5;
            break;
        }
    size_t parts = 1;
    for (const char *p = path; *p; p++)
        parts += *p == ':';
    L->paths = xcalloc(parts + 1, sizeof(char *));
    if (!*file)
        return;                   /* "" is never found: ENOENT */
    size_t n = 0;
    const char *p = path;
    for (;;) {
        const char *end = strchrnul(p, ':');
        if (end == p)             /* an empty entry means the cwd */
            L->paths[n++] = xstrdup(file);
        else
            L->paths[n++] = xasprintf("%.*s/%s", (int) (end - p), p, file);
        if (!*end)
            break;
        p = end + 1;
    }
}

static int s_launch_init(launch_t *L, const exec_req_t *req)
{
    const proto_spec_t *spec = req->spec;
    memset(L, 0, sizeof *L);
    s_build_env(L, req);
    L->cwd = spec->cwd;
    if (spec->shell) {
        L->shell = true;
        L->sh_argv[0] = "sh";
        L->sh_argv[1] = "-c";
        L->sh_argv[2] = spec->shell;
        L->sh_argv[3] = NULL;
        L->argv = L->sh_argv;
        L->display = "/bin/sh";
    } else {
        int argc = 0;
        while (spec->argv[argc])
            argc++;
        L->argv = spec->argv;
        L->display = spec->argv[0];
        s_build_paths(L, spec->argv[0]);
        L->script_argv = xcalloc((size_t) argc + 2, sizeof(char *));
        L->script_argv[0] = "/bin/sh";
        for (int i = 1; i < argc; i++)
            L->script_argv[i + 1] = spec->argv[i];
    }
    long open_max = sysconf(_SC_OPEN_MAX);
    L->max_fd = open_max > 0 && open_max < INT_MAX ? (int) open_max : 65536;
    return 0;
}

static void s_launch_fini(launch_t *L)
{
    free(L->envp);
    for (int i = 0; i < 4; i++)
        free(L->owned[i]);
    if (L->paths)
        for (char **p = L->paths; *p; p++)
            free(*p);
    free(L->paths);
    free(L->script_argv);
}

/* -------------------------------------------------------------- child */

static void s_child_fail(int report_fd, int stage, int err) __attribute__((noreturn));
static void s_child_fail(int report_fd, int stage, int err)
{
    child_report_t r = {stage, err};
    ssize_t n = write(report_fd, &r, sizeof r);
    (void) n;
    _exit(127);
}

/* Runs in the child between fork and exec: async-signal-safe calls only.
   fds: stdin source, stdout and stderr write ends, report write end (all
   close-on-exec). */
static void s_child(launch_t *L, int fd_in, int fd_out, int fd_err, int fd_report)
    __attribute__((noreturn));
static void s_child(launch_t *L, int fd_in, int fd_out, int fd_err, int fd_report)
{
    /* Own group, so a timeout can signal every descendant at once. */
    if (setpgid(0, 0) < 0)
        s_child_fail(fd_report, STAGE_SETUP, errno);

    /* The parent blocked every signal around fork, so no handler of the
       worker can run here; restore defaults before unblocking (ignored
       signals like the worker's SIGPIPE would survive exec otherwise). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);   /* fails harmlessly for libc-internal signals */

    /* Move any source fd out of 0..2 first, in case the worker runs with
       one of its standard descriptors closed and pipe2 handed it out. */
    int *fds[4] = {&fd_in, &fd_out, &fd_err, &fd_report};
    for (int i = 0; i < 4; i++)
        if (*fds[i] < 3) {
            int moved = fcntl(*fds[i], F_DUPFD_CLOEXEC, 3);
            if (moved < 0)
                s_child_fail(fd_report, STAGE_SETUP, errno);
            *fds[i] = moved;
        }
    if (dup2(fd_in, 0) < 0 || dup2(fd_out, 1) < 0 || dup2(fd_err, 2) < 0)
        s_child_fail(fd_report, STAGE_SETUP, errno);

    /* The report pipe goes to fd 3 (still close-on-exec); everything above
       it is closed, so the task inherits nothing but 0, 1 and 2. */
    if (fd_report != 3) {
        if (dup2(fd_report, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
            s_child_fail(fd_report, STAGE_SETUP, errno);
        fd_report = 3;
    }
    if (close_range(4, ~0U, 0) < 0)
        for (int fd = 4; fd < L->max_fd; fd++)
            close(fd);

    if (L->cwd && chdir(L->cwd) < 0)
        s_child_fail(fd_report, STAGE_CHDIR, errno);

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (L->shell) {
        execve("/bin/sh", L->argv, L->envp);
        s_child_fail(fd_report, STAGE_EXEC, errno);
    }
    /* execvp's rules: remember EACCES, skip entries that do not exist or
       are not directories, stop at any other error; a file the kernel
       cannot run (ENOEXEC) is handed to /bin/sh as a script. */
    bool eacces = false;
    int err = ENOENT;
    for (char **p = L->paths; *p; p++) {
        execve(*p, L->argv, L->envp);
        err = errno;
        if (err == ENOEXEC) {
            L->script_argv[1] = *p;
            execve("/bin/sh", L->script_argv, L->envp);
            s_child_fail(fd_report, STAGE_EXEC, ENOEXEC);
        }
        if (err == EACCES)
            eacces = true;
        else if (err != ENOENT && err != ENOTDIR && err != ESTALE && err != ENODEV &&
                 err != ETIMEDOUT)
            break;
    }
    s_child_fail(fd_report, STAGE_EXEC, eacces ? EACCES : err);
}

/* ------------------------------------------------------------- parent */

static void s_close(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static int s_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Keeps what fits under the cap; the rest is dropped (and read anyway, so
   the child never blocks on a full pipe). */
static void s_stream_keep(stream_t *s, const char *data, size_t n)
{
    size_t take = s->cap - s->len < n ? s->cap - s->len : n;
    if (take < n)
        s->truncated = true;
    if (!take)
        return;
    if (s->len + take > s->alloc) {
        size_t want = s->alloc ? s->alloc : 4096;
        while (want < s->len + take)
            want *= 2;
        if (want > s->cap)
            want = s->cap;
        s->buf = xrealloc(s->buf, want);
        s->alloc = want;
    }
    memcpy(s->buf + s->len, data, take);
    s->len += take;
}

static void s_stream_read(stream_t *s, char *scratch)
{
    for (int i = 0; i < EXEC_READS_PER_WAKE && s->fd >= 0; i++) {
        ssize_t n = read(s->fd, scratch, EXEC_IO_CHUNK);
        if (n > 0) {
            s_stream_keep(s, scratch, (size_t) n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        s_close(&s->fd);          /* EOF, or an error that is as good as one */
    }
}

/* Length of the prefix of p[0..len) that does not end inside a UTF-8
   sequence: live chunks are cut on character boundaries so a consumer
   that repairs each chunk separately does not mangle a split character. */
static size_t s_utf8_whole(const char *p, size_t len)
{
    for (size_t back = 1; back <= 4 && back <= len; back++) {
        unsigned char c = (unsigned char) p[len - back];
        if ((c & 0xC0) == 0x80)
            continue;
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? len - back : len;
    }
    return len;
}

static void s_stream_flush(stream_t *s, const exec_req_t *req, int64_t now, bool final)
{
    if (!req->on_output || s->len == s->flushed)
        return;
    if (!final && now - s->last_flush < EXEC_TICK_MS)
        return;
    size_t end = s->len;
    if (!final)
        end = s->flushed + s_utf8_whole(s->buf + s->flushed, s->len - s->flushed);
    if (end == s->flushed)
        return;
    req->on_output(req->arg, s->id, s->buf + s->flushed, end - s->flushed);
    s->flushed = end;
    s->last_flush = now;
}

/* Signals the child's group; falls back to the child alone when a member
   we may not signal (a setuid program) makes the group kill fail. */
static void s_kill_group(pid_t pid, int sig)
{
    if (kill(-pid, sig) < 0 && errno == EPERM)
        kill(pid, sig);
}

static const char *s_strerror(int err, char *buf, size_t len)
{
    return strerror_r(err, buf, len);   /* GNU variant: thread-safe */
}

static void s_set_error(proto_result_t *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void s_set_error(proto_result_t *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = xmalloc((size_t) (n > 0 ? n : 0) + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t) (n > 0 ? n : 0) + 1, fmt, ap);
    va_end(ap);
    free(res->error);
    res->error = s;
}

static void s_result_reset(proto_result_t *res, const exec_req_t *req)
{
    free(res->stdout_data);
    free(res->stderr_data);
    free(res->result_json);
    free(res->error);
    memset(res, 0, sizeof *res);
    res->task = req->task_id;
    res->attempt = req->attempt;
    res->status = PROTO_ST_FAILED;
}

/* The loop's state for one run. */
typedef struct {
    const exec_req_t *req;
    pid_t pid;
    int pidfd;                   /* -1 when the kernel has no pidfd_open */
    stream_t out, err;
    int in_fd;                   /* our write end of stdin, -1 when done */
    size_t in_off;
    bool saw_epipe;
    int report_fd;
    child_report_t report;
    size_t report_len;
    int64_t deadline;            /* 0 = none */
    int grace_ms;
    bool timed_out, cancelled;
    bool stopping;               /* SIGTERM sent; SIGKILL due at kill_at */
    int64_t kill_at;
    bool group_killed;           /* SIGKILL sent to the group at group_killed_at */
    int64_t group_killed_at;
    bool exited;
    int64_t exited_at;
    bool abandoned;              /* stopped reading pipes held outside the group */
} run_t;

static void s_stdin_write(run_t *r)
{
    const proto_spec_t *spec = r->req->spec;
    while (r->in_fd >= 0 && r->in_off < spec->stdin_len) {
        size_t n = spec->stdin_len - r->in_off;
        if (n > EXEC_IO_CHUNK)
            n = EXEC_IO_CHUNK;
        ssize_t w = write(r->in_fd, spec->stdin_data + r->in_off, n);
        if (w > 0) {
            r->in_off += (size_t) w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (w < 0 && errno == EPIPE)
            r->saw_epipe = true;
        break;                    /* the child closed its stdin: drop the rest */
    }
    s_close(&r->in_fd);
}

static void s_report_read(run_t *r)
{
    for (;;) {
        char *dst = (char *) &r->report + r->report_len;
        size_t room = sizeof r->report - r->report_len;
        char sink[sizeof r->report];
        ssize_t n = read(r->report_fd, room ? dst : sink, room ? room : sizeof sink);
        if (n > 0) {
            if (room)
                r->report_len += (size_t) n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        s_close(&r->report_fd);
        return;
    }
}

static void s_stop(run_t *r, int64_t now)
{
    s_kill_group(r->pid, SIGTERM);
    r->stopping = true;
    r->kill_at = now + r->grace_ms;
}

static void s_group_kill9(run_t *r, int64_t now)
{
    s_kill_group(r->pid, SIGKILL);
    r->group_killed = true;
    r->group_killed_at = now;
}

static int64_t s_min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Drives the child to its end: returns once it has exited (not yet
   reaped) and its pipes are closed or abandoned. */
static void s_loop(run_t *r)
{
    char *scratch = xmalloc(EXEC_IO_CHUNK);
    const atomic_bool *cancel = r->req->cancel;
    for (;;) {
        int64_t now = clock_mono_ms();
        if (!r->timed_out && !r->cancelled && !r->exited) {
            if (cancel && atomic_load(cancel)) {
                r->cancelled = true;
                s_stop(r, now);
            } else if (r->deadline && now >= r->deadline) {
                r->timed_out = true;
                s_stop(r, now);
            }
        }
        if (r->stopping && !r->group_killed && now >= r->kill_at)
            s_group_kill9(r, now);
        if (!r->exited) {
            siginfo_t si;
            memset(&si, 0, sizeof si);
            if (waitid(P_PID, (id_t) r->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                si.si_pid == r->pid) {
                r->exited = true;
                r->exited_at = now;
                s_close(&r->in_fd);     /* nobody left to read it */
                s_close(&r->pidfd);
            }
        }
        s_stream_flush(&r->out, r->req, now, false);
        s_stream_flush(&r->err, r->req, now, false);

        bool pipes_open = r->out.fd >= 0 || r->err.fd >= 0 || r->report_fd >= 0;
        if (r->exited && !pipes_open)
            break;
        if (r->exited && !r->group_killed && now >= r->exited_at + EXEC_LINGER_MS) {
            log_info("event=exec_group_killed pid=%d reason=pipes_held_after_exit", (int) r->pid);
            s_group_kill9(r, now);
        }
        if (r->exited && r->group_killed && now >= r->group_killed_at + EXEC_ABANDON_MS) {
            log_warn("event=exec_pipes_abandoned pid=%d reason=held_outside_group", (int) r->pid);
            r->abandoned = true;
            break;
        }

        /* Without a pidfd (kernels before 5.3, valgrind) nothing wakes us
           when the child exits after closing its pipes, so look often. */
        int64_t next = now + (r->pidfd < 0 && !pipes_open ? EXEC_NO_PIDFD_TICK_MS : EXEC_TICK_MS);
        if (r->deadline && !r->timed_out && !r->cancelled)
            next = s_min(next, r->deadline);
        if (r->stopping && !r->group_killed)
            next = s_min(next, r->kill_at);
        if (r->exited && !r->group_killed)
            next = s_min(next, r->exited_at + EXEC_LINGER_MS);
        if (r->exited && r->group_killed)
            next = s_min(next, r->group_killed_at + EXEC_ABANDON_MS);

        struct pollfd pfd[5];
        stream_t *slot_stream[5] = {NULL};
        int n = 0, in_slot = -1, report_slot = -1;
        if (r->out.fd >= 0) {
            slot_stream[n] = &r->out;
            pfd[n++] = (struct pollfd){.fd = r->out.fd, .events = POLLIN};
        }
        if (r->err.fd >= 0) {
            slot_stream[n] = &r->err;
            pfd[n++] = (struct pollfd){.fd = r->err.fd, .events = POLLIN};
        }
        if (r->in_fd >= 0) {
            in_slot = n;
            pfd[n++] = (struct pollfd){.fd = r->in_fd, .events = POLLOUT};
        }
        if (r->report_fd >= 0) {
            report_slot = n;
            pfd[n++] = (struct pollfd){.fd = r->report_fd, .events = POLLIN};
        }
        if (r->pidfd >= 0)
            pfd[n++] = (struct pollfd){.fd = r->pidfd, .events = POLLIN};

        int wait_ms = (int) (next > now ? next - now : 0);
        int ready = poll(pfd, (nfds_t) n, wait_ms);
        if (ready <= 0)
            continue;             /* timeout or EINTR: the top re-checks */
        for (int i = 0; i < n; i++) {
            if (!pfd[i].revents)
                continue;
            if (slot_stream[i])
                s_stream_read(slot_stream[i], scratch);
            else if (i == in_slot)
                s_stdin_write(r);
            else if (i == report_slot)
                s_report_read(r);
            /* pidfd: readable once the child exited; waitid above sees it. */
        }
    }
    free(scratch);
    s_close(&r->out.fd);
    s_close(&r->err.fd);
    s_close(&r->in_fd);
    s_close(&r->report_fd);
    s_close(&r->pidfd);
}

static void s_fill_result(run_t *r, int status, proto_result_t *res, const launch_t *L)
{
    const proto_spec_t *spec = r->req->spec;
    char ebuf[128];
    if (WIFEXITED(status)) {
        res->has_exit_code = true;
        res->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        res->signal = WTERMSIG(status);
    }
    res->timed_out = r->timed_out;
    bool setup_failed = r->report_len == sizeof r->report;
    if (setup_failed)
        res->has_exit_code = false;  /* 127 came from us, not from the program */

    if (r->cancelled) {
        res->status = PROTO_ST_CANCELLED;
        s_set_error(res, "cancelled");
    } else if (setup_failed) {
        const char *why = s_strerror(r->report.err, ebuf, sizeof ebuf);
        if (r->report.stage == STAGE_CHDIR)
            s_set_error(res, "cannot chdir to '%s': %s", L->cwd ? L->cwd : "", why);
        else if (r->report.stage == STAGE_EXEC)
            s_set_error(res, "cannot execute '%s': %s", L->display, why);
        else
            s_set_error(res, "cannot set up the child process: %s", why);
    } else if (r->timed_out) {
        s_set_error(res, "timed out after %g s", spec->timeout);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        res->status = PROTO_ST_DONE;
    } else if (WIFEXITED(status)) {
        s_set_error(res, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        const char *desc = sigdescr_np(WTERMSIG(status));
        s_set_error(res, "killed by signal %d (%s)", WTERMSIG(status),
                    desc ? desc : "unknown signal");
    } else {
        s_set_error(res, "ended with wait status %#x", (unsigned) status);
    }
    res->stdout_data = utf8_sanitize(r->out.buf ? r->out.buf : "", r->out.len, NULL);
    res->stderr_data = utf8_sanitize(r->err.buf ? r->err.buf : "", r->err.len, NULL);
    res->stdout_truncated = r->out.truncated;
    res->stderr_truncated = r->err.truncated;
}

static int s_fail_start(proto_result_t *res, const char *what, int err)
{
    char ebuf[128];
    s_set_error(res, "cannot start: %s: %s", what, s_strerror(err, ebuf, sizeof ebuf));
    res->started = res->finished = clock_wall();
    return -1;
}

int exec_run(const exec_req_t *req, proto_result_t *res)
{
    s_result_reset(res, req);
    const proto_spec_t *spec = req->spec;
    if (!spec || spec->kind != PROTO_KIND_EXEC ||
        !(spec->shell || (spec->argv && spec->argv[0]))) {
        s_set_error(res, "not a command task (no argv or shell)");
        res->started = res->finished = clock_wall();
        return 0;
    }
    if (req->cancel && atomic_load(req->cancel)) {
        res->status = PROTO_ST_CANCELLED;
        s_set_error(res, "cancelled before start");
        res->started = res->finished = clock_wall();
        return 0;
    }

    launch_t L;
    s_launch_init(&L, req);

    /* All pipes close-on-exec, so a fork on another thread never leaks
       them into that thread's child past its exec. */
    int p_out[2] = {-1, -1}, p_err[2] = {-1, -1}, p_in[2] = {-1, -1}, p_rep[2] = {-1, -1};
    int rc = 0;
    if (pipe2(p_out, O_CLOEXEC) < 0 || pipe2(p_err, O_CLOEXEC) < 0 ||
        pipe2(p_rep, O_CLOEXEC) < 0) {
        rc = s_fail_start(res, "pipe", errno);
        goto out;
    }
    if (spec->stdin_data) {
        if (pipe2(p_in, O_CLOEXEC) < 0) {
            rc = s_fail_start(res, "pipe", errno);
            goto out;
        }
    } else if ((p_in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
        rc = s_fail_start(res, "/dev/null", errno);
        goto out;
    }
    if (s_set_nonblock(p_out[0]) < 0 || s_set_nonblock(p_err[0]) < 0 ||
        s_set_nonblock(p_rep[0]) < 0 || (p_in[1] >= 0 && s_set_nonblock(p_in[1]) < 0)) {
        rc = s_fail_start(res, "fcntl", errno);
        goto out;
    }

    /* Every signal stays blocked across fork so no handler of the worker
       runs in the child before it restores defaults. SIGPIPE stays blocked
       on this thread for the run: writing stdin to a child that closed it
       must give EPIPE, not kill the worker (whatever its SIGPIPE setting). */
    sigset_t all, old, run_mask, pending_before;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    run_mask = old;
    sigaddset(&run_mask, SIGPIPE);
    sigpending(&pending_before);

    res->started = clock_wall();
    int64_t start_ms = clock_mono_ms();
    pid_t pid = fork();
    if (pid == 0)
        s_child(&L, p_in[0], p_out[1], p_err[1], p_rep[1]);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &run_mask, NULL);
    if (pid < 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        rc = s_fail_start(res, "fork", fork_errno);
        goto out;
    }
    /* Also from the parent, so the group exists before we may signal it
       (fails with EACCES once the child has exec'd: it did it itself). */
    setpgid(pid, pid);
    s_close(&p_in[0]);
    s_close(&p_out[1]);
    s_close(&p_err[1]);
    s_close(&p_rep[1]);

    run_t r;
    memset(&r, 0, sizeof r);
    r.req = req;
    r.pid = pid;
    r.pidfd = pidfd_open(pid, 0);   /* close-on-exec by default */
    size_t cap = spec->output_cap > 0 && spec->output_cap <= PROTO_MAX_OUTPUT_CAP
                     ? (size_t) spec->output_cap
                     : (spec->output_cap > PROTO_MAX_OUTPUT_CAP ? PROTO_MAX_OUTPUT_CAP
                                                                : PROTO_DEFAULT_OUTPUT_CAP);
    r.out = (stream_t){.id = 1, .fd = p_out[0], .cap = cap, .last_flush = start_ms - EXEC_TICK_MS};
    r.err = (stream_t){.id = 2, .fd = p_err[0], .cap = cap, .last_flush = start_ms - EXEC_TICK_MS};
    p_out[0] = p_err[0] = -1;
    r.in_fd = p_in[1];
    p_in[1] = -1;
    if (r.in_fd >= 0 && spec->stdin_len == 0)
        s_close(&r.in_fd);            /* empty stdin: EOF at once */
    r.report_fd = p_rep[0];
    p_rep[0] = -1;
    if (spec->timeout > 0) {
        double ms = ceil(spec->timeout * 1000.0);
        r.deadline = start_ms + (ms < 1 ? 1 : ms > 1e15 ? (int64_t) 1e15 : (int64_t) ms);
    }
    r.grace_ms = req->kill_grace_ms > 0 ? req->kill_grace_ms : EXEC_DEFAULT_GRACE_MS;

    s_loop(&r);

    /* A timed-out or cancelled task leaves nothing behind in its group,
       even members that closed their output and shrugged off SIGTERM.
       Still before the reap: see the comment at the top. */
    if (r.stopping && !r.group_killed)
        s_kill_group(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    res->finished = clock_wall();
    int64_t end_ms = clock_mono_ms();
    s_stream_flush(&r.out, req, end_ms, true);
    s_stream_flush(&r.err, req, end_ms, true);

    /* Swallow the SIGPIPE our own stdin write raised before unblocking. */
    if (r.saw_epipe && !sigismember(&pending_before, SIGPIPE)) {
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
        sigset_t now_pending;
        if (sigpending(&now_pending) == 0 && sigismember(&now_pending, SIGPIPE)) {
            struct timespec zero = {0, 0};
            sigtimedwait(&pipe_only, NULL, &zero);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    s_fill_result(&r, status, res, &L);
    free(r.out.buf);
    free(r.err.buf);

out:
    for (int i = 0; i < 2; i++) {
        s_close(&p_out[i]);
        s_close(&p_err[i]);
        s_close(&p_in[i]);
        s_close(&p_rep[i]);
    }
    s_launch_fini(&L);
    return rc;
}
