/*  spawn-loop: the raw cost of running a command, the baseline for ztask's
    exec tasks.

      spawn-loop [--n N] [--inflight K] [--timeout SEC] [--] CMD [ARGS...]

    Runs CMD N times (default 5000) with posix_spawnp, keeping K (default 2)
    children alive at once, stdin/stdout/stderr on /dev/null, and reaps
    every child. Prints one JSON line with the rate. Bounded by --timeout
    (default 120 s): past it, no new child is started and the rest are
    reaped.
*/
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
    long n = 5000, inflight = 2, timeout_s = 120;
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0 && argv[i][2]; i += 2) {
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
    if (i >= argc || n < 1 || inflight < 1 || timeout_s < 1) {
        fprintf(stderr,
                "usage: spawn-loop [--n N] [--inflight K] [--timeout SEC] [--] CMD [ARGS...]\n");
        return 2;
    }
    char **cmd = &argv[i];

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);

    int64_t t0 = s_now_us(), deadline = t0 + (int64_t) timeout_s * 1000000;
    long started = 0, reaped = 0, failed = 0;
    long running = 0;
    while (reaped < started || (started < n && s_now_us() < deadline)) {
        while (running < inflight && started < n && s_now_us() < deadline) {
            pid_t pid;
            if (posix_spawnp(&pid, cmd[0], &fa, NULL, cmd, environ) != 0) {
                fprintf(stderr, "spawn-loop: cannot run %s\n", cmd[0]);
                deadline = 0;   /* start nothing more; reap what runs */
                break;
            }
            started++;
            running++;
        }
        if (running == 0)
            break;
        int status;
        if (waitpid(-1, &status, 0) > 0) {
            reaped++;
            running--;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                failed++;
        }
    }
    int64_t t1 = s_now_us();
    posix_spawn_file_actions_destroy(&fa);
    double secs = (double) (t1 - t0) / 1e6;
    printf("{\"n\":%ld,\"inflight\":%ld,\"total_s\":%.6f,\"tasks_per_s\":%.1f,\"failed\":%ld}\n",
           reaped, inflight, secs, secs > 0 ? (double) reaped / secs : 0.0, failed);
    return reaped == n && failed == 0 ? 0 : 1;
}
