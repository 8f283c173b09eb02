/*  spawn-loop: the raw cost of running a command, the baseline for ztask's
    exec tasks.

      spawn-loop [--n N] [--inflight K] [--timeout SEC] [--capture] [--] CMD [ARGS...]

    Runs CMD N times (default 5000), K at a time (default 2), with
    posix_spawnp, stdin/stdout/stderr on /dev/null, and reaps every child.
    --capture: stdout and stderr go to two pipes instead, which the thread
    reads (poll, then read) until both are at end of file before it reaps
    the child: what Python's subprocess.run(capture_output=True) pays to
    run a command, and what a ztask exec task does too (it also captures).
    K threads each run spawn -> waitpid(that child) in a loop, taking the
    next number from a shared counter: the same shape as a ztask worker
    with K pool threads, so on a busy machine both get the same share of
    the CPU (one thread juggling K children would get less). Prints one
    JSON line with the rate and its CPU: its own and its commands'.
    Bounded by --timeout (default 120 s): past it, no new child is started.
*/
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_INFLIGHT 256

static double s_secs(const struct rusage *r)
{
    return (double) (r->ru_utime.tv_sec + r->ru_stime.tv_sec)
           + (double) (r->ru_utime.tv_usec + r->ru_stime.tv_usec) / 1e6;
}

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

typedef struct {
    char **cmd;
    int capture;
    posix_spawn_file_actions_t fa;
    long n;
    int64_t deadline;
    atomic_long next;       /* numbers taken so far */
    atomic_long done;       /* children reaped */
    atomic_long failed;     /* exited non-zero, or could not be spawned */
} loop_t;

/* Spawns with stdout and stderr on pipes and reads both to their end;
   0 with the pid, or -1. */
static int s_spawn_capture(loop_t *l, pid_t *pid)
{
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(err, O_CLOEXEC) != 0) {
        close(out[0]);
        close(out[1]);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    int rc = posix_spawnp(pid, l->cmd[0], &fa, NULL, l->cmd, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    close(err[1]);
    if (rc != 0) {
        close(out[0]);
        close(err[0]);
        return -1;
    }
    struct pollfd p[2] = {{.fd = out[0], .events = POLLIN}, {.fd = err[0], .events = POLLIN}};
    char buf[65536];
    while (p[0].fd >= 0 || p[1].fd >= 0) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !p[i].revents)
                continue;
            if (read(p[i].fd, buf, sizeof buf) <= 0) {
                close(p[i].fd);
                p[i].fd = -1;   /* poll skips negative descriptors */
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (p[i].fd >= 0)
            close(p[i].fd);
    return 0;
}

static void *s_thread(void *arg)
{
    loop_t *l = arg;
    while (atomic_fetch_add(&l->next, 1) < l->n && s_now_us() < l->deadline) {
        pid_t pid;
        int rc = l->capture ? s_spawn_capture(l, &pid)
                            : posix_spawnp(&pid, l->cmd[0], &l->fa, NULL, l->cmd, environ);
        if (rc != 0) {
            atomic_fetch_add(&l->failed, 1);
            break;
        }
        int status = 0;
        pid_t r;
        do
            r = waitpid(pid, &status, 0);
        while (r < 0 && errno == EINTR);
        if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            atomic_fetch_add(&l->failed, 1);
        atomic_fetch_add(&l->done, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long n = 5000, inflight = 2, timeout_s = 120;
    int capture = 0;
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0 && argv[i][2]; i += 2) {
        if (strcmp(argv[i], "--capture") == 0) {
            capture = 1;
            i--;
            continue;
        }
        long v = strtol(argv[i + 1], NULL, 10);
        if (strcmp(argv[i], "--n") == 0)
            n = v;
        else if (strcmp(argv[i], "--inflight") == 0)
            inflight = v;
        else if (strcmp(argv[i], "--timeout") == 0)
            timeout_s = v;
        else
            break;
    }
    if (i < argc && strcmp(argv[i], "--") == 0)
        i++;
    if (i >= argc || n < 1 || inflight < 1 || inflight > MAX_INFLIGHT || timeout_s < 1) {
        fprintf(stderr,
                "usage: spawn-loop [--n N] [--inflight K] [--timeout SEC] [--capture] [--] CMD "
                "[ARGS...]\n");
        return 2;
    }

    loop_t l = { .cmd = &argv[i], .n = n, .capture = capture };
    posix_spawn_file_actions_init(&l.fa);
    posix_spawn_file_actions_addopen(&l.fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&l.fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&l.fa, 2, "/dev/null", O_WRONLY, 0);
    atomic_init(&l.next, 0);
    atomic_init(&l.done, 0);
    atomic_init(&l.failed, 0);

    pthread_t thr[MAX_INFLIGHT];
    int64_t t0 = s_now_us();
    l.deadline = t0 + (int64_t) timeout_s * 1000000;
    long started = 0;
    for (long k = 0; k < inflight; k++)
        if (pthread_create(&thr[started], NULL, s_thread, &l) == 0)
            started++;
    for (long k = 0; k < started; k++)
        pthread_join(thr[k], NULL);
    int64_t t1 = s_now_us();
    posix_spawn_file_actions_destroy(&l.fa);

    long done = atomic_load(&l.done), failed = atomic_load(&l.failed);
    double secs = (double) (t1 - t0) / 1e6;
    /* Our own CPU apart from the commands' (what ztask's master and
       worker threads are set against: the commands cost the same). */
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    printf("{\"n\":%ld,\"inflight\":%ld,\"capture\":%s,\"total_s\":%.6f,\"tasks_per_s\":%.1f,"
           "\"failed\":%ld,\"own_cpu_s\":%.3f,\"commands_cpu_s\":%.3f}\n",
           done, started, capture ? "true" : "false", secs, secs > 0 ? (double) done / secs : 0.0,
           failed, s_secs(&self), s_secs(&kids));
    return done == n && failed == 0 ? 0 : 1;
}
