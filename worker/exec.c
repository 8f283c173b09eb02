/*  exec: runs one command task as a child process (see exec.h).

    Why fork + execve rather than posix_spawn: posix_spawn can set the
    process group, signal mask and defaults, dup2 the pipes, close other
    descriptors and chdir (glibc extensions), but when it fails it returns
    one errno without saying which step failed, so "cannot chdir to '/x'"
    and "cannot execute 'x'" would be indistinguishable; and posix_spawnp
    searches the worker's PATH, not the task's. With fork the child reports
    the failing step and its errno, and the PATH search is done here over
    candidates prepared before fork.

    The child is started with clone(CLONE_VM | CLONE_VFORK) on a stack of
    its own, as glibc's posix_spawn does: no copy of the worker's page
    tables, no copy-on-write faults, no TLB shootdowns on the other cores,
    which made plain fork() cost about twice a raw posix_spawn per command.
    The parent thread is suspended until the child execs or exits; the
    child writes no memory of ours but its own stack, the prepared argv
    and, when a step fails, the report in exec_launch_t (see
    exec_child.h), which the parent reads once it resumes -- no pipe for
    it, as in posix_spawn. Sanitizer builds use fork(): ASan and TSan keep
    per-thread state that a CLONE_VM child would share and corrupt; they,
    and a clone that turns out not to share memory (valgrind makes it a
    fork: each kit probes once), report through a close-on-exec pipe
    instead.

    The child's side lives in exec_child.c. Between fork and execve it
    makes only async-signal-safe system calls (setpgid, getpid, sigaction,
    sigprocmask, fcntl, dup2, close_range, close, setrlimit, setgroups,
    setresgid, setresuid, chdir, execve, write, _exit) on memory prepared before fork: no malloc, no locks, no
    ZeroMQ, no logging.

    A short command's cost here is mostly system calls and wakeups of the
    calling thread (each a few microseconds on a virtual machine): the
    pidfd comes with the clone (CLONE_PIDFD); the exit is learnt from the
    pidfd, not from waitid each turn; end of file from POLLHUP, not from a
    read that returns 0; the output pipes are blocking and read once per
    wakeup, so they need no fcntl; we hold their write ends until the
    pidfd says the child exited, so its exit wakes us once rather than
    once per pipe it closes and again for the pidfd; the signal mask is
    changed twice, not four times, unless stdin is written. A `true`
    costs the calling thread about 15 system calls and two wakeups (the
    vfork, the exit), against 35 and three or more before
    (docs/performance.md).

    Order of the end game matters for safety: the process group is only
    signalled while our child is still unreaped (its exit is learnt from
    the pidfd or from waitid(WNOWAIT)). An unreaped zombie keeps its pid,
    hence the group id, from being reused, so kill(-pgid) can never hit
    some other task's group that happens to get the same number later.
    The same rule makes the reaper's slot safe (reaper.h): the child
    writes its group there before it execs, and the slot is cleared after
    the group's last kill and before the reap.
*/
#include "exec.h"
#include "exec_child.h"
#include "outfile.h"

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

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

typedef struct {
    int id;                /* 1 = stdout, 2 = stderr */
    int fd;                /* our read end, -1 once at EOF */
    char *buf;
    size_t len, alloc, cap;
    bool truncated;
    size_t flushed;        /* bytes already given to on_output */
    int64_t last_flush;
    outfiles_t *files;     /* where it is written in full too; NULL = nowhere */
    bool drop;             /* --no-capture: keep nothing (the file has it) */
} stream_t;

/* ------------------------------------------------------------- parent */

static void s_close(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* For our end of a pipe just made: its status flags are known to be
   empty, so one call sets them (no F_GETFL first). */
static int s_set_nonblock(int fd)
{
    return fcntl(fd, F_SETFL, O_NONBLOCK);
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

/* One read, for a stream the poll found readable: it cannot block (we
   are its only reader), so the output pipes need no O_NONBLOCK (two
   system calls a command), and one read a wakeup takes what the pipe
   holds (64 KiB) while keeping a chatty stream from starving the other
   or the timers. */
static void s_stream_read(stream_t *s, char *scratch)
{
    ssize_t n = read(s->fd, scratch, EXEC_IO_CHUNK);
    if (n > 0 && s->files)
        outfiles_write(s->files, s->id, scratch, (size_t) n);
    if (n > 0 && !s->drop)
        s_stream_keep(s, scratch, (size_t) n);
    else if (n == 0 || (errno != EINTR && errno != EAGAIN))
        s_close(&s->fd);          /* EOF, or an error that is as good as one */
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

/* The loop's state for one run. */
typedef struct {
    const exec_req_t *req;
    pid_t pid;
    int pidfd;                   /* -1 when the kernel gives none */
    stream_t out, err;
    int in_fd;                   /* our write end of stdin, -1 when done */
    size_t in_off;
    bool saw_epipe;
    int report_fd;               /* -1 when done, or when the child reports in memory */
    exec_child_report_t report;
    size_t report_len;           /* == sizeof report: a setup step failed */
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
    /* Our copies of the output pipes' write ends, held while the child
       runs when there is a pidfd (see s_start), else -1. */
    int out_w, err_w;
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

static void s_mark_exited(run_t *r, int64_t now)
{
    r->exited = true;
    r->exited_at = now;
    /* The pipes may hang up now: at once, or when the last descendant
       that holds them lets go. */
    s_close(&r->out_w);
    s_close(&r->err_w);
    s_close(&r->in_fd);           /* nobody left to read it */
    s_close(&r->pidfd);
}

/* Without a pidfd: has the child exited? (Not reaped: WNOWAIT.) */
static void s_check_exit(run_t *r, int64_t now)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t) r->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == r->pid)
        s_mark_exited(r, now);
}

/* A pipe the poll flagged: data is read; a hang-up with nothing left to
   read is end of file, known without a read that would return 0. */
static bool s_at_eof(short revents)
{
    return !(revents & POLLIN) && (revents & (POLLHUP | POLLERR | POLLNVAL));
}

/* Acts on the timeout, a cancel and the grace periods due by now. */
static void s_timers(run_t *r, int64_t now)
{
    const atomic_bool *cancel = r->req->cancel;
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
}

/* When the loop must look again at the latest (monotonic ms). */
static int64_t s_next_wake(const run_t *r, int64_t now, bool pipes_open)
{
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
    return next;
}

/* Drives the child to its end: returns once it has exited (not yet
   reaped) and its pipes are closed or abandoned. System calls per wakeup
   are what a short command pays here: the exit is learnt from the pidfd
   (no waitid until then), end of file from POLLHUP (no read). */
static void s_loop(run_t *r, char *scratch)
{
    for (;;) {
        int64_t now = clock_mono_ms();
        s_timers(r, now);
        if (!r->exited && r->pidfd < 0)
            s_check_exit(r, now);
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
        int64_t next = s_next_wake(r, now, pipes_open);

        struct pollfd pfd[5];
        stream_t *slot_stream[5] = {NULL};
        int n = 0, in_slot = -1, report_slot = -1, pid_slot = -1;
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
        if (r->pidfd >= 0) {
            pid_slot = n;
            pfd[n++] = (struct pollfd){.fd = r->pidfd, .events = POLLIN};
        }

        int wait_ms = (int) (next > now ? next - now : 0);
        int ready = poll(pfd, (nfds_t) n, wait_ms);
        if (ready <= 0)
            continue;             /* timeout or EINTR: the top re-checks */
        now = clock_mono_ms();
        for (int i = 0; i < n; i++) {
            short ev = pfd[i].revents;
            if (!ev)
                continue;
            if (slot_stream[i] && s_at_eof(ev))
                s_close(&slot_stream[i]->fd);
            else if (slot_stream[i])
                s_stream_read(slot_stream[i], scratch);
            else if (i == in_slot)
                s_stdin_write(r);
            else if (i == report_slot && s_at_eof(ev))
                s_close(&r->report_fd);   /* closed by the exec: it succeeded */
            else if (i == report_slot)
                s_report_read(r);
            else if (i == pid_slot)
                s_mark_exited(r, now);    /* readable once the child is a zombie */
        }
    }
    s_close(&r->out.fd);
    s_close(&r->err.fd);
    s_close(&r->in_fd);
    s_close(&r->report_fd);
    s_close(&r->pidfd);
    s_close(&r->out_w);
    s_close(&r->err_w);
}

/* Whether the child reported a failed setup step (chdir, exec, rlimit,
   user): the 127 it exited with came from us, not from the program. */
static bool s_setup_failed(const run_t *r)
{
    return r->report_len == sizeof r->report;
}

/* Whether the run succeeded: its program exited 0, and it was neither
   cancelled, nor timed out, nor failed to set up (127 from us). Decided
   here alone: s_run_to_end skips the last live chunk of such a run, and
   s_fill_result makes it done. */
static bool s_succeeded(const run_t *r, int status)
{
    return !r->cancelled && !s_setup_failed(r) && !r->timed_out && WIFEXITED(status)
           && WEXITSTATUS(status) == 0;
}

/* succeeded: s_succeeded(r, status), as s_run_to_end decided it. */
static void s_fill_result(run_t *r, int status, bool succeeded, proto_result_t *res,
                          const exec_launch_t *L)
{
    assert(succeeded == s_succeeded(r, status));
    const proto_spec_t *spec = r->req->spec;
    char ebuf[128];
    if (WIFEXITED(status)) {
        res->has_exit_code = true;
        res->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        res->signal = WTERMSIG(status);
    }
    res->timed_out = r->timed_out;
    bool setup_failed = s_setup_failed(r);
    if (setup_failed)
        res->has_exit_code = false;  /* 127 came from us, not from the program */

    if (succeeded) {
        res->status = PROTO_ST_DONE;
    } else if (r->cancelled) {
        res->status = PROTO_ST_CANCELLED;
        proto_result_error(res, "cancelled");
    } else if (setup_failed) {
        const char *why = s_strerror(r->report.err, ebuf, sizeof ebuf);
        if (r->report.stage == EXEC_STAGE_CHDIR)
            proto_result_error(res, "cannot chdir to '%s': %s", L->cwd ? L->cwd : "", why);
        else if (r->report.stage == EXEC_STAGE_EXEC)
            proto_result_error(res, "cannot execute '%s': %s%s", L->display, why,
                               r->report.err == ENOENT && looks_like_shell_line(L->display)
                                   ? " (a shell command line? submit it with --shell)"
                                   : "");
        else if (r->report.stage == EXEC_STAGE_RLIMIT)
            proto_result_error(res, "cannot apply --task-rlimit: %s", why);
        else if (r->report.stage == EXEC_STAGE_USER)
            proto_result_error(res, "cannot run as --run-as user '%s': %s",
                               L->policy && L->policy->user ? L->policy->user : "", why);
        else
            proto_result_error(res, "cannot set up the child process: %s", why);
    } else if (r->timed_out) {
        proto_result_error(res, "timed out after %g s", spec->timeout);
    } else if (WIFEXITED(status)) {
        proto_result_error(res, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        const char *desc = sigdescr_np(WTERMSIG(status));
        proto_result_error(res, "killed by signal %d (%s)", WTERMSIG(status),
                    desc ? desc : "unknown signal");
    } else {
        proto_result_error(res, "ended with wait status %#x", (unsigned) status);
    }
    if (r->req->raw_output) {
        /* Handed over, not copied: the capture is the biggest thing a
           task holds (docs/worker.md, "Output capture"). */
        res->stdout_raw = r->out.buf ? r->out.buf : xmalloc(1);
        res->stdout_raw_len = r->out.len;
        res->stderr_raw = r->err.buf ? r->err.buf : xmalloc(1);
        res->stderr_raw_len = r->err.len;
        r->out.buf = r->err.buf = NULL;
    } else {
        res->stdout_data = utf8_sanitize(r->out.buf ? r->out.buf : "", r->out.len, NULL);
        res->stderr_data = utf8_sanitize(r->err.buf ? r->err.buf : "", r->err.len, NULL);
    }
    res->stdout_truncated = r->out.truncated;
    res->stderr_truncated = r->err.truncated;
}

static int s_fail_start(proto_result_t *res, const char *what, int err)
{
    char ebuf[128];
    proto_result_error(res, "cannot start: %s: %s", what, s_strerror(err, ebuf, sizeof ebuf));
    res->started = res->finished = clock_wall();
    return -1;
}

typedef struct {
    exec_launch_t *L;
    int fds[4];   /* stdin source, stdout, stderr, report pipe (-1: report in L) */
} child_args_t;

static int s_child_main(void *arg)
{
    child_args_t *a = arg;
    exec_child(a->L, a->fds[0], a->fds[1], a->fds[2], a->fds[3]);
}

#ifdef ZT_SANITIZED
#define EXEC_USE_FORK 1
#endif

/* Child stack for clone: exec_child uses a few hundred bytes; the rest is
   headroom for execve's own frames and the libc calls before it. */
#define CHILD_STACK (64 * 1024)

struct exec_kit {
    void *stack;     /* CHILD_STACK bytes, NULL in fork builds */
    int devnull;     /* O_RDONLY, close-on-exec */
    int max_fd;
    char *scratch;   /* EXEC_IO_CHUNK bytes to read pipes into */
    /* What the probe at exec_kit_new found (both false in fork builds):
       the child of our clone really shares our memory, so it can report
       a failed step there instead of through a pipe (valgrind, for one,
       turns the clone into a fork); clone takes CLONE_PIDFD (5.2). */
    bool shared_vm;
    bool clone_pidfd;
};

static void *s_stack_new(void)
{
#ifdef EXEC_USE_FORK
    return NULL;
#else
    void *stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    return stack == MAP_FAILED ? NULL : stack;
#endif
}

#ifndef EXEC_USE_FORK
static int s_probe_main(void *arg)
{
    *(volatile int *) arg = 1;
    _exit(0);
}

/* Starts one child that only writes to our memory and exits, the way
   commands will be started, to learn what this kernel and this process
   (under valgrind or not) give: see exec_kit. */
static void s_kit_probe(exec_kit_t *kit)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    volatile int wrote = 0;
    int pidfd = -1;
    int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
    char *top = (char *) kit->stack + CHILD_STACK;
    pid_t pid = clone(s_probe_main, top, flags | CLONE_PIDFD, (void *) &wrote, &pidfd);
    if (pid > 0)
        kit->clone_pidfd = true;
    else if (errno == EINVAL)
        pid = clone(s_probe_main, top, flags, (void *) &wrote);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid > 0) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        kit->shared_vm = wrote == 1;
    }
    s_close(&pidfd);
}
#endif

exec_kit_t *exec_kit_new(void)
{
    exec_kit_t *kit = xcalloc(1, sizeof *kit);
    kit->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    kit->stack = s_stack_new();
    long open_max = sysconf(_SC_OPEN_MAX);
    kit->max_fd = open_max > 0 && open_max < INT_MAX ? (int) open_max : 65536;
    kit->scratch = xmalloc(EXEC_IO_CHUNK);
#ifndef EXEC_USE_FORK
    if (!kit->stack)
        s_close(&kit->devnull);   /* no stack, no kit */
#endif
    if (kit->devnull < 0) {
        exec_kit_destroy(&kit);
        return NULL;
    }
#ifndef EXEC_USE_FORK
    s_kit_probe(kit);
#endif
    return kit;
}

int exec_kit_max_fd(const exec_kit_t *kit)
{
    return kit->max_fd;
}

void exec_kit_destroy(exec_kit_t **p)
{
    if (!p || !*p)
        return;
    exec_kit_t *kit = *p;
    s_close(&kit->devnull);
    if (kit->stack)
        munmap(kit->stack, CHILD_STACK);
    free(kit->scratch);
    free(kit);
    *p = NULL;
}

/* Starts the child, on the kit's stack when there is a kit (else on one
   made for this call); returns its pid in the parent (and a pidfd in
   *pidfd when clone made one, else -1), -1 with errno. */
static pid_t s_spawn(child_args_t *args, const exec_kit_t *kit, int *pidfd)
{
    *pidfd = -1;
#ifdef EXEC_USE_FORK
    (void) kit;
    pid_t pid = fork();
    if (pid == 0)
        s_child_main(args);
    return pid;
#else
    void *own = kit ? NULL : s_stack_new();
    if (!kit && !own)
        return -1;
    char *top = (char *) (kit ? kit->stack : own) + CHILD_STACK;
    /* CLONE_VFORK: we resume once the child has exec'd or exited, so its
       stack is free again right after (for the next command, or to go).
       CLONE_PIDFD: the pidfd comes with the pid, one system call less. */
    int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
    pid_t pid = kit && kit->clone_pidfd ? clone(s_child_main, top, flags | CLONE_PIDFD, args, pidfd)
                                        : clone(s_child_main, top, flags, args);
    int e = errno;
    if (own)
        munmap(own, CHILD_STACK);
    errno = e;
    return pid;
#endif
}

void exec_changed_signals(sigset_t *out)
{
    sigemptyset(out);
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction old;
        if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, NULL, &old) == 0
            && old.sa_handler != SIG_DFL)
            sigaddset(out, sig);
    }
}

/* ---------------------------------------------------------- the steps */

/* The descriptors of one run: [0] is the read end, [1] the write end. */
typedef struct {
    int out[2], err[2], in[2], rep[2];
} pipes_t;

static void s_pipes_close(pipes_t *p)
{
    for (int i = 0; i < 2; i++) {
        s_close(&p->out[i]);
        s_close(&p->err[i]);
        s_close(&p->in[i]);
        s_close(&p->rep[i]);
    }
}

/* Opens the pipes, all close-on-exec (a fork on another thread never
   leaks them into that thread's child past its exec); our ends of stdin
   and of the report pipe non-blocking (the output pipes are read only
   when readable, see s_stream_read). stdin is a pipe when the spec has stdin data, else the
   kit's /dev/null (in[0] stays -1) or one opened here. The report pipe
   only when the child cannot report in our memory. 0, or -1 with res
   filled. */
static int s_pipes_open(pipes_t *p, const exec_req_t *req, bool report_pipe, proto_result_t *res)
{
    *p = (pipes_t){{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
    if (pipe2(p->out, O_CLOEXEC) < 0 || pipe2(p->err, O_CLOEXEC) < 0 ||
        (report_pipe && pipe2(p->rep, O_CLOEXEC) < 0))
        return s_fail_start(res, "pipe", errno);
    if (req->spec->stdin_data) {
        if (pipe2(p->in, O_CLOEXEC) < 0)
            return s_fail_start(res, "pipe", errno);
    } else if (!req->kit && (p->in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
        return s_fail_start(res, "/dev/null", errno);
    }
    if ((p->rep[0] >= 0 && s_set_nonblock(p->rep[0]) < 0) ||
        (p->in[1] >= 0 && s_set_nonblock(p->in[1]) < 0))
        return s_fail_start(res, "fcntl", errno);
    return 0;
}

/* What s_start leaves for the end of the run. */
typedef struct {
    pid_t pid;
    int pidfd;                   /* -1 when the kernel gives none */
    bool feeds_stdin;            /* SIGPIPE is blocked on this thread until the end */
    sigset_t old_mask;           /* to restore then */
    sigset_t pending_before;     /* signals pending before the run */
} child_t;

/* Starts the child on the prepared pipes with every signal blocked, so
   no handler of the worker runs in the child before it restores defaults;
   closes the child's ends in the parent. Leaves SIGPIPE blocked on this
   thread when we will write a stdin (writing to a child that closed it
   must give EPIPE, whatever the process's SIGPIPE setting). Returns 0
   with c filled, or -1 with res filled and the mask restored. */
static int s_start(const exec_req_t *req, exec_launch_t *L, pipes_t *p, child_t *c,
                   proto_result_t *res)
{
    c->feeds_stdin = p->in[1] >= 0 && req->spec->stdin_len > 0;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &c->old_mask);
    sigemptyset(&c->pending_before);
    if (c->feeds_stdin)
        sigpending(&c->pending_before);

    res->started = clock_wall();
    /* The kit's /dev/null is shared by every run of this thread: the
       child gets its own copy as fd 0, and ours stays open. */
    int stdin_src = p->in[0] >= 0 ? p->in[0] : req->kit->devnull;
    child_args_t args = {L, {stdin_src, p->out[1], p->err[1], p->rep[1]}};
    c->pid = s_spawn(&args, req->kit, &c->pidfd);
    int spawn_errno = errno;
    if (c->feeds_stdin && c->pid >= 0) {
        sigset_t run_mask = c->old_mask;
        sigaddset(&run_mask, SIGPIPE);
        pthread_sigmask(SIG_SETMASK, &run_mask, NULL);
    } else {
        pthread_sigmask(SIG_SETMASK, &c->old_mask, NULL);
    }
    if (c->pid < 0)
        return s_fail_start(res, "fork", spawn_errno);
#ifdef EXEC_USE_FORK
    /* Also from the parent, so the group exists before we may signal it
       (fails with EACCES once the child has exec'd: it did it itself).
       After a CLONE_VFORK the child has exec'd or exited by now, having
       made its group first, so there the call could only fail. */
    setpgid(c->pid, c->pid);
#endif
    if (c->pidfd < 0)
        c->pidfd = pidfd_open(c->pid, 0);   /* close-on-exec by default */
    s_close(&p->in[0]);
    s_close(&p->rep[1]);
    /* With a pidfd we keep the output pipes' write ends until the child
       has exited: its exit then wakes this thread once (the pidfd), not
       once for each pipe it closes on its way out and again for the
       pidfd. Without one the pipes' hang-up is what wakes us. */
    if (c->pidfd < 0) {
        s_close(&p->out[1]);
        s_close(&p->err[1]);
    }
    return 0;
}

/* The loop's state for the child just started; takes our pipe ends. */
static void s_run_init(run_t *r, const exec_req_t *req, const child_t *c, pipes_t *p,
                       const exec_launch_t *L)
{
    const proto_spec_t *spec = req->spec;
    int64_t start_ms = clock_mono_ms();
    memset(r, 0, sizeof *r);
    r->req = req;
    r->pid = c->pid;
    r->pidfd = c->pidfd;
    /* The decoder enforces 1..PROTO_MAX_OUTPUT_CAP; a hand-made spec
       with 0 gets the default. */
    int64_t cap64 = spec->output_cap > 0 ? spec->output_cap : PROTO_DEFAULT_OUTPUT_CAP;
    size_t cap = (size_t) (cap64 < PROTO_MAX_OUTPUT_CAP ? cap64 : PROTO_MAX_OUTPUT_CAP);
    r->out = (stream_t){.id = 1, .fd = p->out[0], .cap = cap, .last_flush = start_ms - EXEC_TICK_MS};
    r->err = (stream_t){.id = 2, .fd = p->err[0], .cap = cap, .last_flush = start_ms - EXEC_TICK_MS};
    p->out[0] = p->err[0] = -1;
    r->out_w = p->out[1];
    r->err_w = p->err[1];
    p->out[1] = p->err[1] = -1;
    r->in_fd = p->in[1];
    p->in[1] = -1;
    if (r->in_fd >= 0 && spec->stdin_len == 0)
        s_close(&r->in_fd);            /* empty stdin: EOF at once */
    r->report_fd = p->rep[0];
    p->rep[0] = -1;
    if (r->report_fd < 0 && L->report.stage) {
        /* Reported in our memory (shared_vm), complete once we resumed. */
        r->report = L->report;
        r->report_len = sizeof r->report;
    }
    r->deadline = clock_deadline_ms(start_ms, spec->timeout);
    r->grace_ms = req->kill_grace_ms > 0 ? req->kill_grace_ms : EXEC_DEFAULT_GRACE_MS;
}

/* The end of the run: what is left of the task's group is killed (a
   background process that closed our pipes, members that shrugged off
   SIGTERM), so that no process of a task outlives it, hence none can
   outlive the worker either (reaper.h); the reaper's slot is cleared,
   then the child is reaped -- both after the kill and before the reap,
   see the top. Returns the wait status. */
static int s_reap(run_t *r)
{
    if (!r->group_killed)
        s_kill_group(r->pid, SIGKILL);
    if (r->req->slot)
        atomic_store_explicit(&r->req->slot->pgid, 0, memory_order_release);
    int status = 0;
    while (waitpid(r->pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

/* Swallows the SIGPIPE our own stdin write raised (pending on this
   thread, which blocks it), unless one was pending before the run. */
static void s_swallow_sigpipe(const run_t *r, const sigset_t *pending_before)
{
    if (!r->saw_epipe || sigismember(pending_before, SIGPIPE))
        return;
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    sigset_t now_pending;
    if (sigpending(&now_pending) == 0 && sigismember(&now_pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_only, NULL, &zero);
    }
}

/* Drives the started child to its end, reaps it and fills res; its
   streams go to files too (may be NULL). */
static void s_run_to_end(const exec_req_t *req, const exec_launch_t *L, pipes_t *p,
                         child_t *c, outfiles_t *files, proto_result_t *res)
{
    run_t r;
    s_run_init(&r, req, c, p, L);
    r.out.files = r.err.files = files;
    r.out.drop = r.err.drop = req->spec->no_capture;
    char *scratch = req->kit ? req->kit->scratch : xmalloc(EXEC_IO_CHUNK);
    s_loop(&r, scratch);
    if (!req->kit)
        free(scratch);
    int status = s_reap(&r);
    res->finished = clock_wall();
    int64_t end_ms = clock_mono_ms();
    /* With raw_output the result goes out right after this: for a task
       that succeeded, the master drops its live output when the result
       comes (the result has it all), so the last chunk -- for a quick
       task, its whole output -- would only be held a second time on its
       way (docs/worker.md, "Output capture"). */
    bool succeeded = s_succeeded(&r, status);
    if (!(req->raw_output && succeeded)) {
        s_stream_flush(&r.out, req, end_ms, true);
        s_stream_flush(&r.err, req, end_ms, true);
    }
    if (c->feeds_stdin) {
        s_swallow_sigpipe(&r, &c->pending_before);
        pthread_sigmask(SIG_SETMASK, &c->old_mask, NULL);
    }
    s_fill_result(&r, status, succeeded, res, L);
    free(r.out.buf);
    free(r.err.buf);
}

int exec_run(const exec_req_t *req, proto_result_t *res)
{
    proto_result_reset(res, req->task_id, req->attempt);
    const proto_spec_t *spec = req->spec;
    if (!spec || spec->kind != PROTO_KIND_EXEC ||
        !(spec->shell || (spec->argv && spec->argv[0]))) {
        proto_result_error(res, "not a command task (no argv or shell)");
        res->started = res->finished = clock_wall();
        return 0;
    }
    if (req->cancel && atomic_load(req->cancel)) {
        res->status = PROTO_ST_CANCELLED;
        proto_result_error(res, "cancelled before start");
        res->started = res->finished = clock_wall();
        return 0;
    }

    exec_launch_t L;
    exec_launch_init(&L, req);
    if (req->slot) {
        /* Whose group the slot will name (the child writes pgid). */
        req->slot->task = req->task_id;
        req->slot->job = req->job_id;
        req->slot->attempt = req->attempt;
    }
    /* Output files first: one that cannot be written fails the task
       before anything runs. */
    outfiles_t files;
    char ferr[PROTO_MAX_PATH + 200];
    policy_fs_t fs;
    int frc = -1;
    bool any_file = spec->stdout_file || spec->stderr_file;
    if (any_file && policy_fs_enter(req->policy, &fs) != 0) {
        char eb[128];
        snprintf(ferr, sizeof ferr, "cannot open output files as --run-as user '%s': %s",
                 req->policy->user ? req->policy->user : "", s_strerror(errno, eb, sizeof eb));
    } else {
        frc = outfiles_open(&files, spec, req->job_id, req->task_id, req->attempt, ferr,
                            sizeof ferr);
        if (any_file)
            policy_fs_leave(&fs);
    }
    if (frc != 0) {
        proto_result_error(res, "%s", ferr);
        res->started = res->finished = clock_wall();
        exec_launch_fini(&L);
        return 0;
    }
    pipes_t p;
    child_t c;
    bool report_pipe = !(req->kit && req->kit->shared_vm);
    int rc = s_pipes_open(&p, req, report_pipe, res);
    if (rc == 0)
        rc = s_start(req, &L, &p, &c, res);
    if (rc == 0)
        s_run_to_end(req, &L, &p, &c, &files, res);
    s_pipes_close(&p);
    exec_launch_fini(&L);
    if (outfiles_close(&files, ferr, sizeof ferr) != 0 && res->status == PROTO_ST_DONE) {
        res->status = PROTO_ST_FAILED;
        proto_result_error(res, "%s", ferr);
    }
    return rc;
}
