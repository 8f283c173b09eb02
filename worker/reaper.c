/*  reaper: see reaper.h; the choice of mechanism is argued in
    docs/worker.md ("No task outlives its worker"). */
#include "reaper.h"

#include "../common/log.h"
#include "../common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The state file: a header, then nslots slots. */
#define REAPER_MAGIC "ZTREAPER"
#define REAPER_FORMAT 1
#define REAPER_MAX_SLOTS 4096
/* How long reaper_stop waits for the reaper to remove the file and go. */
#define REAPER_STOP_MS 2000
/* A ".new-" file (a state file being made) older than this belongs to a
   worker that died while starting. */
#define REAPER_STALE_NEW_S 60
/* /proc/PID/environ read at most this far (the kernel's own bound on
   argv + envp is a quarter of the stack limit, usually 2 MiB). */
#define REAPER_ENV_MAX (8 * 1024 * 1024)

typedef struct {
    char magic[8];
    int32_t format;
    int32_t nslots;
    int32_t worker_pid;
    int32_t reaper_pid;
    char boot_id[40];        /* this boot's /proc/sys/kernel/random/boot_id */
} state_header_t;

_Static_assert(sizeof(state_header_t) == 64, "the state file's header is 64 bytes");
_Static_assert(sizeof(reaper_slot_t) == 24, "a state file slot is 24 bytes");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "slots are shared lock-free between processes");

struct reaper {
    char *path;              /* our state file */
    int fd;                  /* open on it, flock'ed (shared with the reaper) */
    void *map;
    size_t map_len;
    reaper_slot_t *slots;
    int nslots;
    int pipe_w;              /* the reaper reads EOF once every copy is closed */
    pid_t pid;               /* the reaper */
};

/* ------------------------------------------------------------ helpers */

static size_t s_file_len(int nslots)
{
    return sizeof(state_header_t) + (size_t) nslots * sizeof(reaper_slot_t);
}

static void s_boot_id(char out[40])
{
    memset(out, 0, 40);
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, 39);
    close(fd);
    if (n <= 0) {
        memset(out, 0, 40);
        return;
    }
    out[n] = '\0';
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = '\0';
}

/* Reads a whole /proc file into a malloc'd buffer (at most max bytes);
   NULL when it cannot be read. */
static char *s_read_proc(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t alloc = 4096, n = 0;
    char *buf = xmalloc(alloc + 1);
    for (;;) {
        if (n == alloc) {
            if (alloc >= max)
                break;
            alloc *= 2;
            buf = xrealloc(buf, alloc + 1);
        }
        ssize_t r = read(fd, buf + n, alloc - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            close(fd);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t) r;
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* True when the NUL-separated environment env[0..len) holds the entry. */
static bool s_env_has(const char *env, size_t len, const char *entry)
{
    size_t elen = strlen(entry);
    for (size_t i = 0; i < len;) {
        const char *e = env + i;
        size_t n = strnlen(e, len - i);
        if (n == elen && memcmp(e, entry, n) == 0)
            return true;
        i += n + 1;
    }
    return false;
}

/* A live (not zombie) process's process group from /proc/PID/stat; -1
   when gone, a zombie or unreadable. */
static pid_t s_proc_pgid(const char *pid)
{
    char path[300];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    size_t len = 0;
    char *stat = s_read_proc(path, 4096, &len);
    if (!stat)
        return -1;
    /* "pid (comm) S ppid pgrp ...": comm may hold anything, even ')'. */
    const char *rp = strrchr(stat, ')');
    char state = 0;
    int ppid = 0, pgrp = -1;
    if (!rp || sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) != 3 || state == 'Z')
        pgrp = -1;
    free(stat);
    return (pid_t) pgrp;
}

/* True when process pid still has the environment exec gave this task. */
static bool s_is_task(const char *pid, const reaper_slot_t *t)
{
    char path[300];
    snprintf(path, sizeof path, "/proc/%s/environ", pid);
    size_t len = 0;
    char *env = s_read_proc(path, REAPER_ENV_MAX, &len);
    if (!env)
        return false;
    char want[3][64];
    snprintf(want[0], sizeof want[0], "ZTASK_TASK_ID=%" PRId64, t->task);
    snprintf(want[1], sizeof want[1], "ZTASK_JOB_ID=%" PRId64, t->job);
    snprintf(want[2], sizeof want[2], "ZTASK_ATTEMPT=%d", (int) t->attempt);
    bool ok = s_env_has(env, len, want[0]) && s_env_has(env, len, want[1]) &&
              s_env_has(env, len, want[2]);
    free(env);
    return ok;
}

/* Signals a group; falls back to the one process we may signal when a
   member we may not (a setuid program) makes the group kill fail. */
static void s_kill_group(pid_t pgid, pid_t member)
{
    if (kill(-pgid, SIGKILL) < 0 && errno == EPERM)
        kill(member, SIGKILL);
}

/* ------------------------------------------------------------- sweep */

/* Kills the groups of a dead worker's slots that still run: one pass
   over /proc, each group killed as soon as one of its live members is
   shown to be that task's (a group kill reaches the members a scan could
   miss, forked meanwhile or hidden). Returns the groups killed. */
static int s_kill_orphans(reaper_slot_t *t, int n)
{
    bool *done = xcalloc((size_t) n, sizeof *done);
    int killed = 0;
    DIR *proc = opendir("/proc");
    if (!proc) {
        free(done);
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(proc)) && killed < n) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        pid_t pgid = s_proc_pgid(de->d_name);
        if (pgid <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            if (done[i] || atomic_load(&t[i].pgid) != pgid || !s_is_task(de->d_name, &t[i]))
                continue;
            s_kill_group(pgid, (pid_t) atoi(de->d_name));
            done[i] = true;
            killed++;
            log_warn("event=orphan_killed pgid=%d task=%" PRId64 " job=%" PRId64 " attempt=%d",
                     (int) pgid, t[i].task, t[i].job, (int) t[i].attempt);
        }
    }
    closedir(proc);
    free(done);
    return killed;
}

/* One file of the state directory (fd open on it): nothing when a live
   worker or reaper holds it; else its orphans are killed and it goes. */
static void s_sweep_file(int dirfd, const char *name, const char *boot_id)
{
    bool temp = name[0] == '.';
    int fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return;                   /* alive (or not ours to judge) */
    }
    if (temp) {
        /* Being made by a worker that has not locked it yet, or left by
           one that died while starting: only the latter is removed. */
        if (time(NULL) - st.st_mtime > REAPER_STALE_NEW_S)
            unlinkat(dirfd, name, 0);
        close(fd);
        return;
    }
    state_header_t h;
    memset(&h, 0, sizeof h);
    int killed = 0;
    if (pread(fd, &h, sizeof h, 0) == (ssize_t) sizeof h &&
        memcmp(h.magic, REAPER_MAGIC, 8) == 0 && h.format == REAPER_FORMAT &&
        h.nslots >= 1 && h.nslots <= REAPER_MAX_SLOTS &&
        (size_t) st.st_size >= s_file_len(h.nslots) &&
        /* After a reboot the numbers name nothing of ours. */
        strncmp(h.boot_id, boot_id, sizeof h.boot_id) == 0) {
        size_t len = (size_t) h.nslots * sizeof(reaper_slot_t);
        reaper_slot_t *slots = xmalloc(len);
        if (pread(fd, slots, len, sizeof h) == (ssize_t) len) {
            int n = 0;
            for (int i = 0; i < h.nslots; i++)
                if (atomic_load(&slots[i].pgid) > 0)
                    slots[n++] = slots[i];
            if (n > 0)
                killed = s_kill_orphans(slots, n);
        }
        free(slots);
    }
    log_info("event=state_swept file=%s worker=%d groups_killed=%d", name, (int) h.worker_pid,
             killed);
    unlinkat(dirfd, name, 0);
    close(fd);
}

static void s_sweep(const char *dir)
{
    char boot_id[40];
    s_boot_id(boot_id);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        size_t n = strlen(name);
        bool state = strncmp(name, "worker-", 7) == 0 && n > 6 && !strcmp(name + n - 6, ".state");
        if (state || strncmp(name, ".new-", 5) == 0)
            s_sweep_file(dirfd(d), name, boot_id);
    }
    closedir(d);
}

/* ---------------------------------------------------- the directory */

char *reaper_default_dir(void)
{
    uid_t uid = geteuid();
    if (uid == 0)
        return xstrdup("/run/ztask-worker");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && xdg[0] == '/')
        return xasprintf("%s/ztask-worker", xdg);
    return xasprintf("/tmp/ztask-worker-%u", (unsigned) uid);
}

/* The directory exists, is ours and nobody else may write in it (a
   file someone else put there would tell us which processes to kill). */
static int s_check_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create the state directory %s: %s (give --state-dir)", dir,
                 strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(dir, &st) != 0) {
        snprintf(err, errlen, "cannot use the state directory %s: %s (give --state-dir)", dir,
                 strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022)) {
        snprintf(err, errlen,
                 "the state directory %s must be a directory owned by uid %u that only it may "
                 "write (mode 0700): fix it or give --state-dir",
                 dir, (unsigned) geteuid());
        return -1;
    }
    return 0;
}

/* ------------------------------------------------- the reaper process */

/* Ignores the signals a terminal or a careless `kill` would send the
   worker's process group: the reaper ends when the worker does. */
static void s_reaper_signals(void)
{
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGTSTP,
                        SIGTTIN, SIGTTOU};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &ign, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void s_reaper_main(reaper_t *self, int rfd) __attribute__((noreturn));
static void s_reaper_main(reaper_t *self, int rfd)
{
    /* Its own group: a signal to the worker's group (a terminal's ^C, a
       `kill -- -PGID`) does not take the reaper with it. */
    setpgid(0, 0);
    prctl(PR_SET_NAME, "ztask-reaper", 0, 0, 0);
    s_reaper_signals();
    if (chdir("/") != 0) {
        /* Only so as not to hold a directory busy; nothing depends on it. */
    }
    /* Nothing is ever written: read returns 0 once the worker, and any
       child of it not yet past its exec, have closed the write end. */
    char buf[64];
    for (;;) {
        ssize_t n = read(rfd, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EINTR))
            break;
    }
    state_header_t *h = self->map;
    int killed = 0;
    for (int i = 0; i < self->nslots; i++) {
        pid_t pgid = atomic_load(&self->slots[i].pgid);
        if (pgid > 0) {
            s_kill_group(pgid, pgid);
            killed++;
        }
    }
    if (killed)
        log_warn("event=reaper_killed worker=%d groups=%d", (int) h->worker_pid, killed);
    unlink(self->path);
    _exit(0);
}

/* ------------------------------------------------------------ public */

/* Creates, locks, maps and names our state file. */
static int s_make_file(reaper_t *self, const char *dir, char *err, size_t errlen)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char *temp = xasprintf("%s/.new-%d", dir, (int) getpid());
    self->path = xasprintf("%s/worker-%d-%lld%09ld.state", dir, (int) getpid(),
                           (long long) ts.tv_sec, ts.tv_nsec);
    unlink(temp);                 /* one of a dead process with our pid */
    int rc = -1;
    self->fd = open(temp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    self->map_len = s_file_len(self->nslots);
    if (self->fd < 0 || flock(self->fd, LOCK_EX) != 0 ||
        ftruncate(self->fd, (off_t) self->map_len) != 0) {
        snprintf(err, errlen, "cannot create a state file in %s: %s (give --state-dir)", dir,
                 strerror(errno));
        goto out;
    }
    void *map = mmap(NULL, self->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "cannot map the state file %s: %s", temp, strerror(errno));
        goto out;
    }
    self->map = map;
    state_header_t *h = map;
    memcpy(h->magic, REAPER_MAGIC, 8);
    h->format = REAPER_FORMAT;
    h->nslots = self->nslots;
    h->worker_pid = (int32_t) getpid();
    s_boot_id(h->boot_id);
    self->slots = (reaper_slot_t *) ((char *) map + sizeof *h);
    if (rename(temp, self->path) != 0) {
        snprintf(err, errlen, "cannot name the state file %s: %s", self->path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        unlink(temp);
    free(temp);
    return rc;
}

static void s_free(reaper_t *self)
{
    if (self->map)
        munmap(self->map, self->map_len);
    if (self->fd >= 0)
        close(self->fd);
    if (self->pipe_w >= 0)
        close(self->pipe_w);
    free(self->path);
    free(self);
}

reaper_t *reaper_start(const char *dir, int nslots, char *err, size_t errlen)
{
    if (nslots < 1 || nslots > REAPER_MAX_SLOTS) {
        snprintf(err, errlen, "the reaper takes 1 to %d slots, not %d", REAPER_MAX_SLOTS, nslots);
        return NULL;
    }
    if (s_check_dir(dir, err, errlen) != 0)
        return NULL;
    s_sweep(dir);

    reaper_t *self = xcalloc(1, sizeof *self);
    self->fd = self->pipe_w = -1;
    self->nslots = nslots;
    if (s_make_file(self, dir, err, errlen) != 0) {
        s_free(self);
        return NULL;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "cannot start the reaper: pipe: %s", strerror(errno));
        unlink(self->path);
        s_free(self);
        return NULL;
    }
    fflush(NULL);                 /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        s_reaper_main(self, p[0]);
    }
    close(p[0]);
    if (pid < 0) {
        snprintf(err, errlen, "cannot start the reaper: fork: %s", strerror(errno));
        close(p[1]);
        unlink(self->path);
        s_free(self);
        return NULL;
    }
    self->pipe_w = p[1];
    self->pid = pid;
    ((state_header_t *) self->map)->reaper_pid = (int32_t) pid;
    log_info("event=reaper_started pid=%d state=%s", (int) pid, self->path);
    return self;
}

reaper_slot_t *reaper_slot(reaper_t *self, int i)
{
    return i >= 0 && i < self->nslots ? &self->slots[i] : NULL;
}

pid_t reaper_pid(const reaper_t *self)
{
    return self->pid;
}

void reaper_stop(reaper_t **p)
{
    if (!p || !*p)
        return;
    reaper_t *self = *p;
    *p = NULL;
    close(self->pipe_w);
    self->pipe_w = -1;
    int pfd = pidfd_open(self->pid, 0);
    if (pfd >= 0) {
        struct pollfd w = {.fd = pfd, .events = POLLIN};
        while (poll(&w, 1, REAPER_STOP_MS) < 0 && errno == EINTR)
            ;
        close(pfd);
    }
    int status;
    pid_t r = pfd >= 0 ? waitpid(self->pid, &status, WNOHANG) : waitpid(self->pid, &status, 0);
    if (r != self->pid)
        log_warn("event=reaper_slow pid=%d reason=\"still running %d ms after the worker's end\"",
                 (int) self->pid, REAPER_STOP_MS);
    s_free(self);
}
