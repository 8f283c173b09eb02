/*  alloc: worker allocation queues (see alloc.h for the policy and why the
    loop never waits on Slurm). */
#include "alloc.h"

#include "../common/clock.h"
#include "../common/log.h"
#include "../common/util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Timings at --alloc-time-scale 1 (alloc_t holds them scaled). */
#define POLL_EVERY_MS 5000     /* squeue while allocations are not ended */
#define BACKOFF_BASE_S 5.0
#define BACKOFF_MAX_S 600.0
#define GONE_GRACE_S 30.0      /* squeue may not list a job it was just given */
#define KEEP_ENDED 20          /* ended allocations a queue remembers */
#define OUT_MAX 65536          /* bytes of a command's stdout/stderr kept */
#define ERR_MAX 300            /* bytes of an error kept for `alloc list` */
/* Slurm jobs waiting for scancel (alloc remove --force): a queue holds at
   most 1,000 allocations (proto), so a few removals fit; beyond, an id is
   logged for a person to cancel. */
#define CANCEL_MAX 4096
#define REFUSAL_NAMED 8        /* allocations a refused remove names */

typedef enum { CMD_NONE = 0, CMD_SBATCH, CMD_SQUEUE, CMD_SCANCEL } cmd_kind_t;

/* The one command running at a time. */
typedef struct {
    cmd_kind_t kind;
    pid_t pid;
    int fd[2];                 /* stdout, stderr: read ends, -1 once closed */
    char *buf[2];
    size_t len[2];
    bool cut[2];               /* more came than OUT_MAX: buf holds the start */
    int64_t started;           /* mono ms */
    bool over_limit;           /* killed at the command limit (s_cmd_done) */
    int64_t queue;             /* sbatch: the queue it submits for */
    bool cancel;               /* sbatch: its queue was removed with --force
                                  meanwhile: cancel what it submitted */
    char **ids;                /* scancel: the Slurm jobs it cancels (owned) */
    int nids;
} cmd_t;

struct alloc {
    journal_t *journal;
    jobs_t *jobs;
    registry_t *registry;
    char *worker_cmd, *master_addr, *master_key;
    /* The timings, scaled by --alloc-time-scale (alloc.h). */
    int64_t tick_ms, poll_ms, cmd_timeout_ms;
    double backoff_base_s, backoff_max_s, grace_s;
    proto_alloc_t **queues;    /* by id, ascending */
    int nqueues;
    int64_t last_id;
    cmd_t cmd;
    int64_t last_tick;
    int64_t next_poll;         /* mono ms; 0 = at the next free tick */
    bool polled;               /* one squeue answered since start (before any sbatch) */
    char *poll_error;          /* the last failed poll's error, owned: logged once while
                                  it repeats (every 5 s, maybe for days) */
    int poll_failures;         /* failed polls since the last that answered */
    int next_queue;            /* round robin among queues wanting to submit */
    char **cancels;            /* Slurm job ids for the next scancel, owned */
    int ncancels;
    /* Queues removed with --force, still in the store until the scancel
       of their allocations starts: a master killed before then finds them
       again, followed, rather than leave them running for nothing. */
    int64_t *forget;
    int nforget;
};

/* ---- small helpers ---- */

/* A copy of text's first line, at most ERR_MAX bytes. Logged through
   LOG_V like any text a peer or a command chose; `alloc list` makes it
   printable (fmt_cell) and --json escapes it. */
static char *s_first_line(const char *text)
{
    size_t n = strcspn(text, "\n");
    return xstrndup(text, n > ERR_MAX ? ERR_MAX : n);
}

static proto_alloc_t *s_find(const alloc_t *self, int64_t id)
{
    for (int i = 0; i < self->nqueues; i++)
        if (self->queues[i]->id == id)
            return self->queues[i];
    return NULL;
}

static void s_save(alloc_t *self, const proto_alloc_t *q)
{
    journal_add(self->journal,
                &(jop_t){.type = J_ALLOC_SAVE, .alloc = q->id, .text = proto_alloc_encode(q)});
}

/* s_save of a record of what the master did outside (a Slurm job sbatch
   made, one found, a removal whose scancel started), committed at the
   loop's next turn and fsynced (journal_commit_soon), not after flush_ms
   and only written (--sync acked fsyncs within JOURNAL_FSYNC_MS what no
   answer waits for): the master goes on from it at once (the queue's
   limits count the job), and a machine crash in that second would forget
   a job Slurm runs and bills. A crash before the record is on disk is
   what a master killed while sbatch ran leaves too: the restarted master
   polls squeue by the queue's name before any sbatch and adopts the job
   (s_adopt). */
static void s_save_now(alloc_t *self, const proto_alloc_t *q)
{
    s_save(self, q);
    journal_commit_soon(self->journal);
}

static proto_alloc_t *s_copy(const proto_alloc_t *q)
{
    char *text = proto_alloc_encode(q);
    proto_err_t err;
    proto_alloc_t *c = proto_alloc_decode(text, strlen(text), &err);
    free(text);
    assert(c && "a queue's own text reads back");
    return c;
}

/* Seconds in Slurm's --time form, D-HH:MM:SS. */
static void s_slurm_time(int seconds, char *buf, size_t size)
{
    snprintf(buf, size, "%d-%02d:%02d:%02d", seconds / 86400, seconds / 3600 % 24,
             seconds / 60 % 60, seconds % 60);
}

/* Appends s to b single-quoted for sh. */
static void s_quote(char **b, size_t *len, size_t *cap, const char *s)
{
    size_t need = *len + 4 * strlen(s) + 4;
    if (need > *cap) {
        *cap = need * 2;
        *b = xrealloc(*b, *cap);
    }
    char *p = *b + *len;
    *p++ = '\'';
    for (; *s; s++) {
        if (*s == '\'') {
            memcpy(p, "'\\''", 4);
            p += 4;
        } else {
            *p++ = *s;
        }
    }
    *p++ = '\'';
    *p = '\0';
    *len = (size_t) (p - *b);
}

static void s_append(char **b, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *b = xrealloc(*b, *cap);
    }
    memcpy(*b + *len, s, n + 1);
    *len += n;
}

/* The batch script of one allocation of q: its workers point back at this
   master and leave when idle, or before the allocation's end (which the
   script reads from squeue; none when it cannot). */
static char *s_script(const alloc_t *self, const proto_alloc_t *q)
{
    char *b = NULL;
    size_t len = 0, cap = 0;
    char line[256];
    s_append(&b, &len, &cap, "#!/bin/sh\n");
    snprintf(line, sizeof line,
             "# ztask worker allocation, queue %" PRId64 " of the master at %.100s\n"
             "# (submitted by ztask-master: docs/deploy.md, Slurm)\n",
             q->id, self->master_addr);
    s_append(&b, &len, &cap, line);
    s_append(&b, &len, &cap,
             "end=$(squeue -h -j \"$SLURM_JOB_ID\" -o %e 2>/dev/null)\n"
             "ends_at=$(date -d \"$end\" +%s 2>/dev/null) || ends_at=0\n"
             "exec ");
    if (q->workers_per_alloc > 1) {
        snprintf(line, sizeof line, "srun --ntasks=%d ", q->workers_per_alloc);
        s_append(&b, &len, &cap, line);
    }
    s_quote(&b, &len, &cap, self->worker_cmd);
    s_append(&b, &len, &cap, " --master ");
    s_quote(&b, &len, &cap, self->master_addr);
    snprintf(line, sizeof line,
             " --idle-timeout %d --ends-at \"$ends_at\" --name \"slurm-$SLURM_JOB_ID\"",
             q->idle_timeout_s);
    s_append(&b, &len, &cap, line);
    if (self->master_key) {
        s_append(&b, &len, &cap, " --master-key ");
        s_quote(&b, &len, &cap, self->master_key);
    }
    for (int i = 0; i < q->nworker_args; i++) {
        s_append(&b, &len, &cap, " ");
        s_quote(&b, &len, &cap, q->worker_args[i]);
    }
    s_append(&b, &len, &cap, "\n");
    return b;
}

/* ---- the command runner ---- */

static void s_cmd_reset(cmd_t *c)
{
    for (int i = 0; i < 2; i++) {
        if (c->fd[i] >= 0)
            close(c->fd[i]);
        free(c->buf[i]);
    }
    for (int i = 0; i < c->nids; i++)
        free(c->ids[i]);
    free(c->ids);
    memset(c, 0, sizeof *c);
    c->fd[0] = c->fd[1] = -1;
}

/* Where execve finds name: name itself when it holds a slash, else the
   first PATH entry where it is an executable file (execvp's search, made
   here because the vfork'd child may only make async-signal-safe calls).
   0, or -1 when there is none. */
static int s_find_program(const char *name, char *out, size_t len)
{
    if (strchr(name, '/'))
        return snprintf(out, len, "%s", name) < (int) len ? 0 : -1;
    const char *path = getenv("PATH");
    for (const char *dir = path && *path ? path : "/usr/bin:/bin"; dir;) {
        const char *end = strchr(dir, ':');
        int n = end ? (int) (end - dir) : (int) strlen(dir);
        struct stat st;
        if (snprintf(out, len, "%.*s/%s", n ? n : 1, n ? dir : ".", name) < (int) len
            && stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
            return 0;
        dir = end ? end + 1 : NULL;
    }
    return -1;
}

static void s_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* fd as the child's stdin, stdout or stderr (target): dup2 leaves the
   copy open across exec; an fd already in place loses close-on-exec. */
static void s_child_fd(int fd, int target)
{
    if (fd == target)
        fcntl(fd, F_SETFD, 0);
    else
        dup2(fd, target);
}

/* What the child of s_spawn needs, all made before it starts: the child
   reads it and writes nothing of the master's but its own stack (and
   errno, the forking thread's, which the master does not read across
   it). */
typedef struct {
    const char *path;          /* what execve runs (s_find_program) */
    char *const *argv;
    int io[3];                 /* its stdin, stdout, stderr */
    int ex;                    /* where exec's errno goes when it fails */
    bool dies_with_master;     /* PR_SET_PDEATHSIG (s_cmd_start says why) */
    pid_t parent;              /* the master's pid */
} child_t;

/* The child of s_spawn: async-signal-safe calls only, then exec. It runs
   in the master's memory (vfork), with every signal blocked. */
static _Noreturn void s_child(const child_t *ch)
{
    /* A handler of the master's run here would run in the master's
       memory: every signal it catches goes back to the default before
       any signal is let in (exec would reset them anyway). SIGPIPE,
       which the master ignores, is not ignored by its children. */
    struct sigaction dfl = {.sa_handler = SIG_DFL}, was;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig == SIGPIPE
            || (sigaction(sig, NULL, &was) == 0 && was.sa_handler != SIG_DFL
                && was.sa_handler != SIG_IGN))
            sigaction(sig, &dfl, NULL);
    int e = 0;
    if (ch->dies_with_master) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
            e = errno;
            goto failed;
        }
        /* A parent that died before the signal was set will never send
           it; nobody is left to read why this one ends. */
        if (getppid() != ch->parent)
            _exit(127);
    }
    for (int i = 0; i < 3; i++)
        s_child_fd(ch->io[i], i);
    /* The master may block signals: not its children. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(ch->path, ch->argv, environ);
    e = errno;
failed:
    if (write(ch->ex, &e, sizeof e) < 0)
        _exit(126);
    _exit(127);
}

/* Starts ch's program: its pid, or -1 with errno. vfork, not fork: the
   master's loop waits (this thread only) until the child has exec'd,
   and the master's memory is neither copied nor charged
   again. fork copies the page tables of the whole master (its SQLite
   cache, a burst's buffers: gigabytes), write-protects every page, so
   that each thread's next write to each one faults, and under strict
   overcommit (vm.overcommit_memory=2, common on cluster head nodes)
   fails with ENOMEM once the master is larger than the commit left.
   posix_spawn does the same (CLONE_VFORK) but cannot set the parent-death
   signal. Signals are blocked across it: none may run a handler of the
   master's in the child (s_child). Sanitizer builds fork (ZT_SANITIZED). */
static pid_t s_spawn(const child_t *ch)
{
    sigset_t all, was;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &was);
#ifdef ZT_SANITIZED
    pid_t pid = fork();
#else
    pid_t pid = vfork();
#endif
    if (pid == 0)
        s_child(ch);
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &was, NULL);
    errno = e;
    return pid;
}

/* Starts argv with input on its stdin (small: it fits the pipe's buffer,
   so the write never blocks). 0, or -1 with err.
   sbatch and squeue die with the master (a parent-death signal); scancel
   does not. An sbatch left running by a master killed with -9 could
   submit long after (sbatch retries while slurmctld is busy or down),
   when the restarted master's first squeue, which looks for its queues'
   jobs by name before any sbatch, has not listed it: one allocation too
   many. Killed with its master, an sbatch that had not submitted submits
   nothing, and the job of one that had is found by that squeue (s_adopt)
   as before: only its answer is lost, which nobody was left to read. A
   master that stops cleanly kills it too (alloc_destroy), as the command
   limit does a slow one. A scancel carries out a removal the client was
   told is done: it goes on alone, as alloc_destroy leaves it. The signal
   follows the thread that starts it: the master's loop (main's thread in
   ztask-master).
   s_spawn rather than posix_spawn, which cannot set that signal. */
static int s_cmd_start(alloc_t *self, cmd_kind_t kind, char *const *argv, const char *input,
                       int64_t now, char *err, size_t errlen)
{
    cmd_t *c = &self->cmd;
    assert(c->kind == CMD_NONE);
    char path[4096];
    if (s_find_program(argv[0], path, sizeof path) != 0) {
        snprintf(err, errlen, "cannot run %s: not found in PATH", argv[0]);
        return -1;
    }
    /* The child's stdin, stdout and stderr, and exec's errno. */
    int in[2] = {-1, -1}, out[2] = {-1, -1}, er[2] = {-1, -1}, ex[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(er, O_CLOEXEC) != 0
        || pipe2(ex, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot make a pipe: %s", strerror(errno));
        for (int i = 0; i < 2; i++) {
            s_close(&in[i]);
            s_close(&out[i]);
            s_close(&er[i]);
            s_close(&ex[i]);
        }
        return -1;
    }
    pid_t pid = s_spawn(&(child_t){.path = path,
                                   .argv = argv,
                                   .io = {in[0], out[1], er[1]},
                                   .ex = ex[1],
                                   .dies_with_master = kind != CMD_SCANCEL,
                                   .parent = getpid()});
    int fork_errno = errno, exec_errno = 0;
    s_close(&in[0]);
    s_close(&out[1]);
    s_close(&er[1]);
    s_close(&ex[1]);
    if (pid > 0) {
        /* Nothing: exec closed it; an int: exec's errno. */
        ssize_t n;
        do
            n = read(ex[0], &exec_errno, sizeof exec_errno);
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t) sizeof exec_errno)
            exec_errno = 0;
    }
    s_close(&ex[0]);
    if (pid < 0 || exec_errno) {
        if (pid < 0) {
            snprintf(err, errlen, "cannot start %s: %s", argv[0], strerror(fork_errno));
        } else {
            waitpid(pid, NULL, 0);
            snprintf(err, errlen, "cannot run %s: %s", argv[0], strerror(exec_errno));
        }
        s_close(&in[1]);
        s_close(&out[0]);
        s_close(&er[0]);
        return -1;
    }
    if (input && *input) {
        size_t n = strlen(input);
        fcntl(in[1], F_SETFL, O_NONBLOCK);
        /* alloc add refused a script over ALLOC_SCRIPT_MAX, so it fits
           the pipe's buffer: a short write is a broken pipe (the command
           exited at once), which its exit status reports. */
        if (write(in[1], input, n) != (ssize_t) n)
            log_warn("event=alloc_input_short cmd=%s", argv[0]);
    }
    close(in[1]);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(er[0], F_SETFL, O_NONBLOCK);
    c->kind = kind;
    c->pid = pid;
    c->fd[0] = out[0];
    c->fd[1] = er[0];
    c->started = now;
    return 0;
}

/* Reads what the command wrote so far (never blocks). */
static void s_cmd_read(cmd_t *c)
{
    for (int i = 0; i < 2; i++) {
        while (c->fd[i] >= 0) {
            char tmp[4096];
            ssize_t n = read(c->fd[i], tmp, sizeof tmp);
            if (n > 0) {
                size_t keep = c->len[i] + (size_t) n > OUT_MAX ? OUT_MAX - c->len[i] : (size_t) n;
                c->cut[i] |= keep < (size_t) n;
                c->buf[i] = xrealloc(c->buf[i], c->len[i] + keep + 1);
                memcpy(c->buf[i] + c->len[i], tmp, keep);
                c->len[i] += keep;
                c->buf[i][c->len[i]] = '\0';
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(c->fd[i]);
                c->fd[i] = -1;
            } else {
                break;
            }
        }
    }
}

/* 1 with *status when the command has ended (its output read), 0 while it
   runs. One over timeout_ms is killed first (status: killed by SIGKILL). */
static int s_cmd_done(cmd_t *c, int64_t now, int64_t timeout_ms, int *status)
{
    s_cmd_read(c);
    pid_t r = waitpid(c->pid, status, WNOHANG);
    if (r == 0 && now - c->started > timeout_ms) {
        kill(c->pid, SIGKILL);
        c->over_limit = true;
        r = waitpid(c->pid, status, 0);
    }
    if (r == 0)
        return 0;
    if (r < 0)
        *status = -1;
    s_cmd_read(c);
    return 1;
}

/* How a command that did not succeed ended, for people (a log line, a
   queue's last_error), from its wait status: "NAME failed (exit N): its
   error's first line", killed at the command limit, or killed by a
   signal, named (SIGSEGV, SIGTERM: a person's kill or the OOM killer). */
static void s_failure_text(const alloc_t *self, const char *name, int status, const char *err,
                           char *buf, size_t len)
{
    char *first = s_first_line(err);
    const char *said = *first ? first : "no output";
    if (status == -1) {
        snprintf(buf, len, "%s could not be waited for", name);
    } else if (WIFSIGNALED(status) && self->cmd.over_limit) {
        snprintf(buf, len, "%s ran over the %g s command limit and was killed", name,
                 (double) self->cmd_timeout_ms / 1000);
    } else if (WIFSIGNALED(status)) {
        const char *sig = sigabbrev_np(WTERMSIG(status));
        char num[16];
        snprintf(num, sizeof num, "%d", WTERMSIG(status));
        snprintf(buf, len, "%s killed by signal %s%s: %s", name, sig ? "SIG" : "",
                 sig ? sig : num, said);
    } else {
        assert(WIFEXITED(status) && "waitpid without WUNTRACED reports exits and kills only");
        snprintf(buf, len, "%s failed (exit %d): %s", name, WEXITSTATUS(status), said);
    }
    free(first);
}

/* ---- queue state ---- */

static double s_backoff(const alloc_t *self, int failing)
{
    double d = self->backoff_base_s;
    for (int i = 1; i < failing && d < self->backoff_max_s; i++)
        d *= 2;
    return d < self->backoff_max_s ? d : self->backoff_max_s;
}

static void s_failed(alloc_t *self, proto_alloc_t *q, const char *why)
{
    q->failures++;
    q->failing++;
    free(q->last_error);
    q->last_error = s_first_line(why);
    double wait = s_backoff(self, q->failing);
    q->retry_at = clock_wall() + wait;
    log_warn("event=alloc_failed queue=%" PRId64 " failures=%" PRId64 " retry_in_s=%g "
             "error=%s",
             q->id, q->failures, wait, LOG_V(q->last_error));
    s_save(self, q);
}

/* Forgets the oldest ended allocations beyond KEEP_ENDED. */
static void s_prune(proto_alloc_t *q)
{
    int ended = 0;
    for (int i = 0; i < q->nallocs; i++)
        ended += q->allocs[i].state == PROTO_ALLOC_ENDED;
    int drop = ended - KEEP_ENDED, w = 0;
    for (int i = 0; i < q->nallocs; i++) {
        if (drop > 0 && q->allocs[i].state == PROTO_ALLOC_ENDED) {
            free(q->allocs[i].id);
            drop--;
            continue;
        }
        q->allocs[w++] = q->allocs[i];
    }
    q->nallocs = w;
}

static void s_add_allocation(alloc_t *self, proto_alloc_t *q, const char *id)
{
    q->allocs = xrealloc(q->allocs, (size_t) (q->nallocs + 1) * sizeof *q->allocs);
    q->allocs[q->nallocs++] = (proto_allocation_t){
        .id = xstrdup(id),
        .state = PROTO_ALLOC_QUEUED,
        .submitted = clock_wall(),
    };
    q->submitted++;
    q->failing = 0;
    q->retry_at = 0;
    s_prune(q);
    log_info("event=alloc_submitted queue=%" PRId64 " slurm_job=%s", q->id, id);
    s_save_now(self, q);
}

static void s_ended(alloc_t *self, proto_alloc_t *q, proto_allocation_t *a, const char *how)
{
    a->state = PROTO_ALLOC_ENDED;
    a->ended = clock_wall();
    a->workers = 0;
    log_info("event=alloc_ended queue=%" PRId64 " slurm_job=%s how=%s had_worker=%d", q->id,
             a->id, how, a->had_worker);
    if (!a->had_worker) {
        char why[300];
        snprintf(why, sizeof why,
                 "allocation %s ended (%s) before any worker registered: see its Slurm output "
                 "(slurm-%s.out unless the queue's sbatch arguments name another)",
                 a->id, how, a->id);
        s_failed(self, q, why);   /* saves */
    } else {
        s_save(self, q);
    }
}

/* Counts each allocation's live workers (by their Slurm job id). */
static void s_count_workers(alloc_t *self)
{
    for (int i = 0; i < self->nqueues; i++) {
        proto_alloc_t *q = self->queues[i];
        for (int k = 0; k < q->nallocs; k++) {
            proto_allocation_t *a = &q->allocs[k];
            if (a->state == PROTO_ALLOC_ENDED)
                continue;
            int n = 0;
            size_t pos = 0;
            worker_t *w;
            while ((w = registry_next(self->registry, &pos)))
                n += w->alive && w->slurm_job && strcmp(w->slurm_job, a->id) == 0;
            a->workers = n;
            if (n > 0 && !a->had_worker) {
                a->had_worker = true;
                if (a->state == PROTO_ALLOC_QUEUED) {
                    a->state = PROTO_ALLOC_RUNNING;
                    a->started = clock_wall();
                }
                s_save(self, q);
            }
        }
    }
}

/* ---- squeue ---- */

static bool s_any_unended(const alloc_t *self)
{
    for (int i = 0; i < self->nqueues; i++)
        for (int k = 0; k < self->queues[i]->nallocs; k++)
            if (self->queues[i]->allocs[k].state != PROTO_ALLOC_ENDED)
                return true;
    return false;
}

/* squeue's state names: what is still to run, what runs, the rest ended. */
static proto_alloc_state_t s_slurm_state(const char *st)
{
    static const char *const waiting[] = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                                          "RESV_DEL_HOLD", "SUSPENDED", "CONFIGURING", NULL};
    static const char *const running[] = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING",
                                          "RESIZING", NULL};
    for (int i = 0; waiting[i]; i++)
        if (strcmp(st, waiting[i]) == 0)
            return PROTO_ALLOC_QUEUED;
    for (int i = 0; running[i]; i++)
        if (strcmp(st, running[i]) == 0)
            return PROTO_ALLOC_RUNNING;
    return PROTO_ALLOC_ENDED;
}

/* Why no allocation goes out while no squeue has answered (alloc_tick),
   ahead of the failure in the queues' last_error: `ztask alloc list`
   shows an active queue that submits nothing, and says why. */
static const char s_unpolled[] = "no allocation until squeue answers (it lists what Slurm "
                                 "already runs for the queue): ";

/* A poll that failed (why: the command's error). Logged when its error
   differs from the last failed poll's: squeue missing or slurmctld down
   would otherwise say the same line every 5 s for as long as it lasts
   (s_poll_answered counts them). Before any poll has answered, it is
   also every queue's last_error (no failure counted: nothing was
   submitted), saved when it changed, not at every poll. */
static void s_poll_failed(alloc_t *self, const char *why)
{
    self->poll_failures++;
    if (!self->poll_error || strcmp(self->poll_error, why) != 0) {
        log_warn("event=alloc_poll_failed error=%s note=\"%sasked again every %g s; the same "
                 "error again is not logged\"",
                 LOG_V(why), self->polled ? "" : "no sbatch until squeue answers; ",
                 (double) self->poll_ms / 1000);
        free(self->poll_error);
        self->poll_error = xstrdup(why);
    }
    if (self->polled)
        return;
    char *text = xasprintf("%s%s", s_unpolled, why);
    char *line = s_first_line(text);
    free(text);
    for (int i = 0; i < self->nqueues; i++) {
        proto_alloc_t *q = self->queues[i];
        if (q->last_error && strcmp(q->last_error, line) == 0)
            continue;
        free(q->last_error);
        q->last_error = xstrdup(line);
        s_save(self, q);
    }
    free(line);
}

/* A poll that answered: after failed ones, said with their count. The
   first one since the start clears a queue's last_error that said it
   waited for one (a stale one would say it still waits). */
static void s_poll_answered(alloc_t *self)
{
    if (self->poll_failures)
        log_info("event=alloc_poll_answered failed_polls=%d", self->poll_failures);
    self->poll_failures = 0;
    free(self->poll_error);
    self->poll_error = NULL;
    if (self->polled)
        return;
    for (int i = 0; i < self->nqueues; i++) {
        proto_alloc_t *q = self->queues[i];
        if (!q->last_error || strncmp(q->last_error, s_unpolled, sizeof s_unpolled - 1) != 0)
            continue;
        free(q->last_error);
        q->last_error = NULL;
        s_save(self, q);
    }
}

static void s_start_squeue(alloc_t *self, int64_t now)
{
    /* By name: squeue refuses a list of ids when one is unknown to it. */
    char *names = NULL;
    size_t len = 0, cap = 0;
    for (int i = 0; i < self->nqueues; i++) {
        char one[48];
        snprintf(one, sizeof one, "%sztask-alloc-%" PRId64, len ? "," : "", self->queues[i]->id);
        s_append(&names, &len, &cap, one);
    }
    char *name_arg = xasprintf("--name=%s", names ? names : "ztask-alloc-0");
    char *argv[] = {"squeue", "-h", "-t", "all", "-o", "%i %T %j", name_arg, NULL};
    char err[300];
    if (s_cmd_start(self, CMD_SQUEUE, argv, NULL, now, err, sizeof err) != 0)
        s_poll_failed(self, err);
    free(name_arg);
    free(names);
}

/* The allocation id of q, or NULL. */
static proto_allocation_t *s_allocation(proto_alloc_t *q, const char *id, size_t idlen)
{
    for (int k = 0; k < q->nallocs; k++)
        if (strlen(q->allocs[k].id) == idlen && strncmp(q->allocs[k].id, id, idlen) == 0)
            return &q->allocs[k];
    return NULL;
}

/* A squeue line "ID STATE ztask-alloc-Q" of a job that queue Q does not
   know and that has not ended: submitted by this master as it died (sbatch
   ran, its answer was never read or never stored). Followed from now on
   like the others, and counted against the queue's limits. */
static void s_adopt(alloc_t *self, const char *line, size_t n)
{
    size_t idlen = strspn(line, "0123456789_");
    if (idlen == 0 || idlen > 64 || idlen >= n || line[idlen] != ' ')
        return;
    char state[32], name[48];
    int64_t qid;
    char rest[128];
    snprintf(rest, sizeof rest, "%.*s", (int) (n - idlen - 1 < 127 ? n - idlen - 1 : 127),
             line + idlen + 1);
    if (sscanf(rest, "%31s %47s", state, name) != 2
        || sscanf(name, "ztask-alloc-%" SCNd64, &qid) != 1)
        return;
    proto_alloc_state_t st = s_slurm_state(state);
    proto_alloc_t *q = s_find(self, qid);
    if (!q || st == PROTO_ALLOC_ENDED || s_allocation(q, line, idlen))
        return;
    char id[65];
    snprintf(id, sizeof id, "%.*s", (int) idlen, line);
    q->allocs = xrealloc(q->allocs, (size_t) (q->nallocs + 1) * sizeof *q->allocs);
    q->allocs[q->nallocs++] = (proto_allocation_t){
        .id = xstrdup(id),
        .state = st,
        .submitted = clock_wall(),
        .started = st == PROTO_ALLOC_RUNNING ? clock_wall() : 0,
    };
    q->submitted++;
    s_prune(q);
    log_warn("event=alloc_found queue=%" PRId64 " slurm_job=%s state=%s note=\"submitted before "
             "a restart, never recorded: followed from now on\"",
             q->id, id, state);
    s_save_now(self, q);
}

static void s_squeue_done(alloc_t *self, int status)
{
    const char *out = self->cmd.buf[0] ? self->cmd.buf[0] : "";
    if (status != 0) {
        char why[400];
        s_failure_text(self, "squeue", status, self->cmd.buf[1] ? self->cmd.buf[1] : "", why,
                       sizeof why);
        s_poll_failed(self, why);
        return;   /* judge nothing on a failed poll */
    }
    s_poll_answered(self);
    self->polled = true;
    double wall = clock_wall();
    if (self->cmd.cut[0])
        log_warn("event=alloc_poll_cut bytes=%d note=\"squeue listed more than is kept: no "
                 "allocation is judged ended from this poll\"",
                 OUT_MAX);
    for (int i = 0; i < self->nqueues; i++) {
        proto_alloc_t *q = self->queues[i];
        for (int k = 0; k < q->nallocs; k++) {
            proto_allocation_t *a = &q->allocs[k];
            if (a->state == PROTO_ALLOC_ENDED)
                continue;
            /* Its line: "ID STATE". */
            const char *st = NULL;
            size_t idlen = strlen(a->id);
            for (const char *line = out; *line;) {
                if (strncmp(line, a->id, idlen) == 0 && line[idlen] == ' ') {
                    st = line + idlen + 1;
                    break;
                }
                const char *nl = strchr(line, '\n');
                line = nl ? nl + 1 : line + strlen(line);
            }
            /* Missing from a listing cut at OUT_MAX says nothing. */
            if (!st) {
                if (!self->cmd.cut[0] && wall - a->submitted > self->grace_s)
                    s_ended(self, q, a, "gone");
                continue;
            }
            char state[32];
            size_t n = strcspn(st, " \n");
            snprintf(state, sizeof state, "%.*s", (int) (n < 31 ? n : 31), st);
            proto_alloc_state_t s = s_slurm_state(state);
            if (s == a->state)
                continue;
            if (s == PROTO_ALLOC_ENDED) {
                for (char *p = state; *p; p++)
                    *p = (char) (*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
                s_ended(self, q, a, state);
            } else {
                if (s == PROTO_ALLOC_RUNNING && !a->started)
                    a->started = wall;
                a->state = s;
                log_info("event=alloc_%s queue=%" PRId64 " slurm_job=%s",
                         s == PROTO_ALLOC_RUNNING ? "started" : "queued", q->id, a->id);
                s_save(self, q);
            }
        }
    }
    for (const char *line = out; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t) (nl - line) : strlen(line);
        if (!nl && self->cmd.cut[0])
            break;   /* a line cut short */
        s_adopt(self, line, n);
        line += n + (nl != NULL);
    }
}

/* ---- scancel (alloc remove --force) ---- */

/* Slurm job id to cancel at the next free turn of the command slot. */
static void s_cancel_later(alloc_t *self, const char *id)
{
    if (self->ncancels >= CANCEL_MAX) {
        log_error("event=alloc_cancel_dropped slurm_job=%s note=\"too many waiting for scancel: "
                  "cancel it by hand (scancel %s)\"",
                  id, id);
        return;
    }
    if (!self->cancels)
        self->cancels = xcalloc(CANCEL_MAX, sizeof *self->cancels);
    self->cancels[self->ncancels++] = xstrdup(id);
}

/* Deletes queue id from the store now (forget) or once the scancel of
   its allocations has started (s_forget_now). */
static void s_forget(alloc_t *self, int64_t id, bool now)
{
    if (now) {
        journal_add(self->journal, &(jop_t){.type = J_ALLOC_DELETE, .alloc = id});
        return;
    }
    self->forget = xrealloc(self->forget, (size_t) (self->nforget + 1) * sizeof *self->forget);
    self->forget[self->nforget++] = id;
}

static void s_forget_now(alloc_t *self)
{
    /* The scancel has started: the deletion is fsynced at once (see
       s_save_now), else a machine crash in the next second brings the
       queue back, and with it sbatch for its tasks. */
    if (self->nforget && self->journal)
        journal_commit_soon(self->journal);
    for (int i = 0; i < self->nforget; i++)
        s_forget(self, self->forget[i], true);
    free(self->forget);
    self->forget = NULL;
    self->nforget = 0;
}

/* "ID ID ..." of ids for a log line (cut at 255 bytes). */
static void s_ids_text(char *const *ids, int n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < len; i++)
        used += (size_t) snprintf(buf + used, len - used, "%s%s", i ? " " : "", ids[i]);
}

/* scancel of every id waiting, as one command (the slot is free). */
static void s_start_scancel(alloc_t *self, int64_t now)
{
    assert(self->cmd.kind == CMD_NONE && self->ncancels > 0);
    char **argv = xcalloc((size_t) self->ncancels + 2, sizeof *argv);
    argv[0] = "scancel";
    for (int i = 0; i < self->ncancels; i++)
        argv[i + 1] = self->cancels[i];
    char err[300];
    int rc = s_cmd_start(self, CMD_SCANCEL, argv, NULL, now, err, sizeof err);
    free(argv);
    if (rc != 0) {
        /* Said once and dropped (no scancel on the PATH, out of
           processes): tried again each tick it would fill the log. */
        char ids[256];
        s_ids_text(self->cancels, self->ncancels, ids, sizeof ids);
        log_error("event=alloc_cancel_failed slurm_jobs=\"%s\" error=\"%s\" note=\"cancel them by "
                  "hand (scancel ID)\"",
                  ids, err);
        for (int i = 0; i < self->ncancels; i++)
            free(self->cancels[i]);
    } else {
        /* The command owns the ids now (logged when it ends). */
        self->cmd.ids = self->cancels;
        self->cmd.nids = self->ncancels;
        self->cancels = NULL;
    }
    self->ncancels = 0;
    /* Started (or said to be impossible): the removals are for good. */
    s_forget_now(self);
}

static void s_scancel_done(alloc_t *self, int status)
{
    const cmd_t *c = &self->cmd;
    char ids[256];
    s_ids_text(c->ids, c->nids, ids, sizeof ids);
    if (status == 0) {
        log_info("event=alloc_cancelled slurm_jobs=\"%s\"", ids);
        return;
    }
    /* Not tried again: scancel fails for a job that has ended meanwhile
       too, and squeue (while a queue follows it) or a person sees the rest. */
    char why[400];
    s_failure_text(self, "scancel", status, c->buf[1] ? c->buf[1] : "", why, sizeof why);
    log_error("event=alloc_cancel_failed slurm_jobs=\"%s\" error=%s note=\"check with "
              "squeue, cancel what still runs by hand (scancel ID)\"",
              ids, LOG_V(why));
}

/* ---- sbatch ---- */

/* Whether q should submit one more allocation now: tasks wait beyond the
   live workers' free slots, fewer than backlog of its allocations wait for
   their workers, its workers stay within max_workers. */
static bool s_wants(const alloc_t *self, const proto_alloc_t *q, int64_t waiting)
{
    if (q->paused || waiting <= 0 || clock_wall() < q->retry_at)
        return false;
    int pending = 0, unended = 0;
    for (int k = 0; k < q->nallocs; k++) {
        const proto_allocation_t *a = &q->allocs[k];
        if (a->state == PROTO_ALLOC_ENDED)
            continue;
        unended++;
        pending += !a->had_worker;
    }
    (void) self;
    return pending < q->backlog
           && (int64_t) (unended + 1) * q->workers_per_alloc <= q->max_workers;
}

/* Tasks queued beyond what the live workers have free. A held job's
   tasks wait for a release, and a job at its --max-running limit starts
   no more than the limit lets: neither wants a worker (counted, they
   would make allocations whose workers idle out, again and again). */
static int64_t s_waiting(const alloc_t *self)
{
    int64_t queued = 0, free_slots = 0;
    size_t pos = 0;
    job_t *job;
    while ((job = jobs_next(self->jobs, &pos))) {
        int64_t startable = job->held ? 0 : job->queued;
        if (job->max_running > 0 && startable > job->max_running - job->running)
            startable = job->max_running > job->running ? job->max_running - job->running : 0;
        queued += startable;
    }
    pos = 0;
    worker_t *w;
    while ((w = registry_next(self->registry, &pos)))
        if (w->alive && !w->draining && w->threads > w->inflight)
            free_slots += w->threads - w->inflight;
    return queued - free_slots;
}

static void s_start_sbatch(alloc_t *self, proto_alloc_t *q, int64_t now)
{
    char name[48], time_arg[48], ntasks[32];
    snprintf(name, sizeof name, "--job-name=ztask-alloc-%" PRId64, q->id);
    char t[32];
    s_slurm_time(q->time_limit_s, t, sizeof t);
    snprintf(time_arg, sizeof time_arg, "--time=%s", t);
    snprintf(ntasks, sizeof ntasks, "--ntasks=%d", q->workers_per_alloc);
    /* Ours first, the queue's own after (sbatch takes the last of an
       option), the job name last: squeue finds the allocations by it. */
    char **argv = xcalloc((size_t) q->nargs + 8, sizeof *argv);
    int n = 0;
    argv[n++] = "sbatch";
    argv[n++] = "--parsable";
    argv[n++] = time_arg;
    argv[n++] = ntasks;
    for (int i = 0; i < q->nargs; i++)
        argv[n++] = q->args[i];
    argv[n++] = name;
    argv[n] = NULL;
    char *script = s_script(self, q);
    char err[300];
    if (s_cmd_start(self, CMD_SBATCH, argv, script, now, err, sizeof err) != 0)
        s_failed(self, q, err);
    else
        self->cmd.queue = q->id;
    free(script);
    free(argv);
}

static void s_sbatch_done(alloc_t *self, int status)
{
    proto_alloc_t *q = s_find(self, self->cmd.queue);
    const char *out = self->cmd.buf[0] ? self->cmd.buf[0] : "";
    size_t idlen = strspn(out, "0123456789_");
    if (!q) {
        /* Removed meanwhile: its allocation, if any, ends when idle, or
           now when the removal was forced. */
        if (self->cmd.cancel && status == 0 && idlen > 0 && idlen <= 64) {
            char id[65];
            memcpy(id, out, idlen);
            id[idlen] = '\0';
            s_cancel_later(self, id);
            s_forget(self, self->cmd.queue, false);
        } else if (self->cmd.cancel) {
            s_forget(self, self->cmd.queue, true);   /* nothing was submitted */
        }
        return;
    }
    if (status == 0 && idlen > 0 && idlen <= 64) {
        char id[65];
        memcpy(id, out, idlen);
        id[idlen] = '\0';
        s_add_allocation(self, q, id);
        return;
    }
    const char *e = self->cmd.buf[1] && self->cmd.buf[1][0] ? self->cmd.buf[1] : out;
    char why[400];
    s_failure_text(self, "sbatch", status, e, why, sizeof why);
    s_failed(self, q, why);
}

/* ---- the tick ---- */

void alloc_tick(alloc_t *self, int64_t now)
{
    if (now - self->last_tick < self->tick_ms
        || (!self->nqueues && !self->ncancels && self->cmd.kind == CMD_NONE))
        return;
    self->last_tick = now;
    s_count_workers(self);
    if (self->cmd.kind != CMD_NONE) {
        int status;
        if (!s_cmd_done(&self->cmd, now, self->cmd_timeout_ms, &status))
            return;
        if (self->cmd.kind == CMD_SQUEUE)
            s_squeue_done(self, status);
        else if (self->cmd.kind == CMD_SCANCEL)
            s_scancel_done(self, status);
        else
            s_sbatch_done(self, status);
        s_cmd_reset(&self->cmd);
    }
    /* Cancels first: a removed queue's allocations hold nodes for nothing. */
    if (self->ncancels) {
        s_start_scancel(self, now);
        return;
    }
    if (!self->nqueues)
        return;
    /* A first poll before any sbatch: it finds what a master that died
       while sbatch ran (or whose record of it a machine crash took) had
       submitted (s_adopt). One that failed (slurmctld down, as after the
       power loss that took the master down too) found nothing: asked
       again every poll_ms, and no sbatch until one has answered, else
       the queue's limits would not count those jobs. */
    if ((!self->polled || s_any_unended(self)) && now >= self->next_poll) {
        self->next_poll = now + self->poll_ms;
        s_start_squeue(self, now);
        return;
    }
    if (!self->polled)
        return;
    int64_t waiting = s_waiting(self);
    for (int k = 0; k < self->nqueues; k++) {
        int i = (self->next_queue + k) % self->nqueues;
        proto_alloc_t *q = self->queues[i];
        if (s_wants(self, q, waiting)) {
            self->next_queue = (i + 1) % self->nqueues;
            s_start_sbatch(self, q, now);
            return;
        }
    }
}

/* ---- life ---- */

alloc_t *alloc_new(const alloc_config_t *cfg)
{
    alloc_t *self = xcalloc(1, sizeof *self);
    self->journal = cfg->journal;
    self->jobs = cfg->jobs;
    self->registry = cfg->registry;
    self->worker_cmd = xstrdup(cfg->worker_cmd);
    self->master_addr = xstrdup(cfg->master_addr);
    self->master_key = xstrdup(cfg->master_key);
    double scale = cfg->time_scale > 0 ? cfg->time_scale : 1.0;
    assert(scale >= ALLOC_TIME_SCALE_MIN && scale <= ALLOC_TIME_SCALE_MAX
           && "the caller validates --alloc-time-scale");
    self->tick_ms = (int64_t) (ALLOC_TICK_MS * scale);
    self->poll_ms = (int64_t) (POLL_EVERY_MS * scale);
    self->cmd_timeout_ms = (int64_t) (ALLOC_CMD_TIMEOUT_MS * scale);
    self->backoff_base_s = BACKOFF_BASE_S * scale;
    self->backoff_max_s = BACKOFF_MAX_S * scale;
    self->grace_s = GONE_GRACE_S * scale;
    char timings[256];
    snprintf(timings, sizeof timings,
             "event=alloc_time_scale scale=%g tick_ms=%" PRId64 " squeue_every_ms=%" PRId64
             " command_limit_ms=%" PRId64 " backoff_s=%g..%g grace_s=%g",
             scale, self->tick_ms, self->poll_ms, self->cmd_timeout_ms, self->backoff_base_s,
             self->backoff_max_s, self->grace_s);
    /* Below 1 the limits are shorter than a real slurmctld may need
       (Slurm's own MessageTimeout is 10 s): a slow sbatch killed (its
       job submitted all the same), a job not listed yet taken for ended,
       and squeue and sbatch asked more often. Said at warn, so that a
       production master run so by mistake shows it. */
    if (scale < 1.0)
        log_warn("%s note=\"below 1 is for tests with stand-in Slurm commands: a real sbatch or "
                 "squeue slower than the command limit is killed, and a job squeue has not "
                 "listed within the grace is taken for ended\"",
                 timings);
    else if (scale > 1.0)
        log_info("%s", timings);
    self->cmd.fd[0] = self->cmd.fd[1] = -1;
    return self;
}

void alloc_destroy(alloc_t **p)
{
    if (!p || !*p)
        return;
    alloc_t *self = *p;
    /* The master stops. A scancel is left to finish on its own (init
       reaps it): killed, or never started, what alloc remove --force said
       it cancels would hold nodes with no queue left to follow it. So the
       cancels still waiting for the slot start now, in its place; its
       output is not read any more (scancel says nothing when it works). */
    if (self->cmd.kind == CMD_SCANCEL) {
        log_info("event=alloc_cancel_left_running pid=%d", (int) self->cmd.pid);
    } else if (self->cmd.kind != CMD_NONE) {
        /* Its queue is kept in the store (and its job found again at the
           next start, s_adopt) unless other allocations of it were
           cancelled meanwhile. */
        bool lost = false;
        for (int i = 0; i < self->nforget; i++)
            lost |= self->cmd.kind == CMD_SBATCH && self->cmd.cancel
                    && self->forget[i] == self->cmd.queue;
        if (lost)
            log_error("event=alloc_cancel_lost queue=%" PRId64 " note=\"an sbatch of this removed "
                      "queue was cut short: cancel what it submitted by hand (squeue "
                      "--name=ztask-alloc-%" PRId64 ", scancel ID)\"",
                      self->cmd.queue, self->cmd.queue);
        kill(self->cmd.pid, SIGKILL);
        waitpid(self->cmd.pid, NULL, 0);
    }
    s_cmd_reset(&self->cmd);
    bool forgetting = self->nforget > 0;
    if (self->ncancels) {
        s_start_scancel(self, clock_mono_ms());
        if (self->cmd.kind == CMD_SCANCEL)
            log_info("event=alloc_cancel_left_running pid=%d", (int) self->cmd.pid);
        s_cmd_reset(&self->cmd);
    }
    /* The journal was flushed before: the deletions just written go now. */
    s_forget_now(self);
    if (forgetting && self->journal)
        journal_flush(self->journal);
    for (int i = 0; i < self->ncancels; i++)
        free(self->cancels[i]);
    free(self->cancels);
    for (int i = 0; i < self->nqueues; i++)
        proto_alloc_destroy(&self->queues[i]);
    free(self->queues);
    free(self->worker_cmd);
    free(self->master_addr);
    free(self->master_key);
    free(self->poll_error);
    free(self);
    *p = NULL;
}

static void s_insert(alloc_t *self, proto_alloc_t *q)
{
    self->queues = xrealloc(self->queues, (size_t) (self->nqueues + 1) * sizeof *self->queues);
    self->queues[self->nqueues++] = q;
    if (q->id > self->last_id)
        self->last_id = q->id;
}

static int s_load_one(int64_t id, const char *def, void *arg)
{
    alloc_t *self = arg;
    proto_err_t err;
    proto_alloc_t *q = proto_alloc_decode(def, strlen(def), &err);
    if (!q) {
        log_error("event=alloc_queue_unreadable queue=%" PRId64 " error=\"%s\" note=\"skipped\"",
                  id, err.message);
        if (id > self->last_id)
            self->last_id = id;
        return 0;
    }
    q->id = id;
    s_insert(self, q);
    return 0;
}

int alloc_load(alloc_t *self, store_t *store)
{
    /* Above every id handed out before, removed queues' too: a script
       holding an old id must never reach a new queue, and a Slurm job
       named ztask-alloc-ID that a removed queue left must not be taken
       for the new queue's (s_adopt goes by that name). */
    int64_t last = 0;
    int rc = store_alloc_last_id(store, &last);
    if (rc == 0 && last > self->last_id)
        self->last_id = last;
    if (rc == 0)
        rc = store_allocs_each(store, s_load_one, self);
    if (rc == 0 && self->nqueues)
        log_info("event=alloc_queues_loaded queues=%d", self->nqueues);
    return rc;
}

/* ---- requests ---- */

static bool s_has_arg(const proto_alloc_t *q, const char *flag)
{
    size_t n = strlen(flag);
    for (int i = 0; i < q->nworker_args; i++)
        if (strncmp(q->worker_args[i], flag, n) == 0
            && (q->worker_args[i][n] == '\0' || q->worker_args[i][n] == '='))
            return true;
    return false;
}

static proto_reply_t *s_add(alloc_t *self, const proto_alloc_t *given)
{
    /* The script goes to sbatch through a pipe written without blocking:
       it must fit the pipe's buffer (64 KiB on Linux). */
    char *script = s_script(self, given);
    size_t script_len = strlen(script);
    free(script);
    if (script_len > ALLOC_SCRIPT_MAX)
        return proto_reply_error(PROTO_E_TOO_BIG,
                                 "the batch script would be %zu bytes, over %d: give fewer or "
                                 "shorter --worker-arg values",
                                 script_len, ALLOC_SCRIPT_MAX);
    if (given->idle_timeout_s > given->time_limit_s)
        return proto_reply_error(PROTO_E_FIELD,
                                 "the idle timeout (%d s) is longer than the time limit (%d s): "
                                 "give a shorter --idle-timeout",
                                 given->idle_timeout_s, given->time_limit_s);
    if (self->master_key && !s_has_arg(given, "--curve-secret"))
        return proto_reply_error(
            PROTO_E_FIELD,
            "this master uses CURVE keys: give the workers' key file with --worker-arg "
            "--curve-secret=PATH (readable on the nodes, its public key in the master's --workers)");
    proto_alloc_t *q = s_copy(given);
    /* A new queue starts with a clean history, whatever was sent. */
    q->id = ++self->last_id;
    q->submitted = q->failures = 0;
    q->failing = 0;
    free(q->last_error);
    q->last_error = NULL;
    q->retry_at = 0;
    for (int i = 0; i < q->nallocs; i++)
        free(q->allocs[i].id);
    free(q->allocs);
    q->allocs = NULL;
    q->nallocs = 0;
    s_insert(self, q);
    s_save(self, q);
    log_info("event=alloc_queue_added queue=%" PRId64 " engine=%s max_workers=%d "
             "workers_per_alloc=%d backlog=%d time_limit_s=%d idle_timeout_s=%d",
             q->id, q->engine, q->max_workers, q->workers_per_alloc, q->backlog, q->time_limit_s,
             q->idle_timeout_s);
    proto_reply_t *rep = proto_reply_new(true);
    rep->allocs = s_copy(q);
    rep->nallocs = 1;
    return rep;
}

/* "1234 (running), 1235 (queued)": q's allocations not ended, the first
   REFUSAL_NAMED of them (caller frees); *n: how many there are. */
static char *s_unended_text(const proto_alloc_t *q, int *n)
{
    char *text = NULL;
    size_t len = 0, cap = 0;
    *n = 0;
    for (int k = 0; k < q->nallocs; k++) {
        const proto_allocation_t *a = &q->allocs[k];
        if (a->state == PROTO_ALLOC_ENDED)
            continue;
        if (++*n > REFUSAL_NAMED)
            continue;
        char one[128];
        snprintf(one, sizeof one, "%s%s (%s)", len ? ", " : "", a->id,
                 a->state == PROTO_ALLOC_RUNNING ? "running" : "queued");
        s_append(&text, &len, &cap, one);
    }
    if (*n > REFUSAL_NAMED) {
        char more[48];
        snprintf(more, sizeof more, " and %d more", *n - REFUSAL_NAMED);
        s_append(&text, &len, &cap, more);
    }
    return text;
}

/* alloc remove: as HyperQueue does, a queue whose allocations are queued
   or running in Slurm is removed only when asked to cancel them (force):
   left behind, they would hold nodes (or start workers) that nothing
   follows any more. Forced, they are handed to scancel, run like sbatch
   and squeue (never waited on), then the queue is forgotten. */
static proto_reply_t *s_remove(alloc_t *self, int at, bool force)
{
    proto_alloc_t *q = self->queues[at];
    int n;
    char *names = s_unended_text(q, &n);
    bool submitting = self->cmd.kind == CMD_SBATCH && self->cmd.queue == q->id;
    if ((n > 0 || submitting) && !force) {
        proto_reply_t *rep = proto_reply_error(
            PROTO_E_STATE,
            "queue %" PRId64 " still has %s%s%s in Slurm: give --force to cancel %s (scancel) "
            "and remove the queue, or pause it and remove it once %s ended",
            q->id, n ? (n == 1 ? "allocation " : "allocations ") : "", n ? names : "",
            submitting ? (n ? " and one being submitted" : "an allocation being submitted") : "",
            n + submitting == 1 ? "it" : "them", n + submitting == 1 ? "it has" : "they have");
        free(names);
        return rep;
    }
    for (int k = 0; k < q->nallocs; k++)
        if (q->allocs[k].state != PROTO_ALLOC_ENDED)
            s_cancel_later(self, q->allocs[k].id);
    if (submitting)
        self->cmd.cancel = true;   /* its answer is cancelled when it comes */
    /* Deleted from the store once what it has in Slurm is being cancelled
       (s_start_scancel), or when sbatch answers. Until then it is kept,
       paused: a master that dies meanwhile (the answer, written before it
       goes, says removed) finds it again and follows what it has in Slurm,
       but submits nothing more for it. */
    if (n > 0 || submitting) {
        proto_alloc_t *kept = s_copy(q);
        kept->paused = true;
        s_save(self, kept);
        proto_alloc_destroy(&kept);
    }
    if (n > 0)
        s_forget(self, q->id, false);
    else if (!submitting)
        s_forget(self, q->id, true);
    /* At once when the slot is free: the queue is forgotten below, and
       its allocations should not wait for the next tick's squeue. */
    if (self->ncancels && self->cmd.kind == CMD_NONE)
        s_start_scancel(self, clock_mono_ms());
    memmove(&self->queues[at], &self->queues[at + 1],
            (size_t) (self->nqueues - at - 1) * sizeof *self->queues);
    self->nqueues--;
    self->next_queue = 0;
    log_info("event=alloc_queue_removed queue=%" PRId64 " cancelled=%d%s%s%s", q->id,
             n + submitting, n ? " slurm_jobs=\"" : "", n ? names : "", n ? "\"" : "");
    free(names);
    proto_reply_t *rep = proto_reply_new(true);
    rep->allocs = q;   /* the reply takes it */
    rep->nallocs = 1;
    return rep;
}

proto_reply_t *alloc_request(alloc_t *self, const proto_req_t *req, bool admin)
{
    if (req->alloc_op != PROTO_ALLOC_OP_LIST && !admin)
        return proto_reply_error(PROTO_E_AUTH,
                                 "only an admin key may change allocation queues (they run "
                                 "sbatch as the master's user): see the master's --admins");
    if (req->alloc_op == PROTO_ALLOC_OP_ADD)
        return s_add(self, req->queue);
    proto_reply_t *rep;
    if (req->alloc_op == PROTO_ALLOC_OP_LIST) {
        rep = proto_reply_new(true);
        rep->allocs = xcalloc((size_t) self->nqueues + 1, sizeof *rep->allocs);
        for (int i = 0; i < self->nqueues; i++) {
            proto_alloc_t *c = s_copy(self->queues[i]);
            rep->allocs[rep->nallocs++] = *c;
            free(c);
        }
        return rep;
    }
    int at = -1;
    for (int i = 0; i < self->nqueues; i++)
        if (self->queues[i]->id == req->alloc)
            at = i;
    if (at < 0)
        return proto_reply_error(PROTO_E_NOT_FOUND,
                                 "no allocation queue %" PRId64 " (see ztask alloc list)",
                                 req->alloc);
    proto_alloc_t *q = self->queues[at];
    if (req->alloc_op == PROTO_ALLOC_OP_REMOVE)
        return s_remove(self, at, req->force);
    q->paused = req->alloc_op == PROTO_ALLOC_OP_PAUSE;
    if (!q->paused)
        q->retry_at = 0;   /* resume: try now */
    s_save(self, q);
    log_info("event=alloc_queue_%s queue=%" PRId64, q->paused ? "paused" : "resumed", q->id);
    rep = proto_reply_new(true);
    rep->allocs = s_copy(q);
    rep->nallocs = 1;
    return rep;
}
