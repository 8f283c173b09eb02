/*  gearman-load: the fn-noop work on gearmand, for bench/peers.py.

      gearman-load --port P [--n N] [--workers W] [--window K] [--timeout SEC]
      gearman-load --worker P                      (spawned by itself)

    The same work as bench/ceiling.c and ztask's fn noop: N tiny JSON task
    objects built and printed with cJSON, each run by one of W worker
    processes (libgearman, function "noop") that parses it and answers one
    small cJSON result, which the client parses. Foreground jobs, so every
    result comes back to the client. The client keeps K jobs in flight
    (default 1000): it adds K tasks and runs them, then the next K
    (libgearman has no cheaper way to stream foreground jobs).

    The clock starts once every worker has registered "noop" (asked on
    gearmand's admin "status" command) and stops at the last result.
    gearmand is started by the caller on 127.0.0.1:P. Every wait is bounded
    by --timeout (default 120 s); workers are SIGTERMed and reaped.
*/
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <libgearman/gearman.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_WORKERS 64

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- worker ---- */

static volatile sig_atomic_t s_stop;

static void s_on_term(int sig)
{
    (void) sig;
    s_stop = 1;
}

static void *s_noop(gearman_job_st *job, void *context, size_t *result_size,
                    gearman_return_t *ret_ptr)
{
    (void) context;
    cJSON *task = cJSON_ParseWithLength(gearman_job_workload(job), gearman_job_workload_size(job));
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(task, "id");
    cJSON *res = cJSON_CreateObject();
    cJSON_AddNumberToObject(res, "task", cJSON_IsNumber(id) ? id->valuedouble : -1);
    cJSON_AddNumberToObject(res, "attempt", 1);
    cJSON_AddStringToObject(res, "status", "done");
    cJSON_AddNullToObject(res, "result");
    cJSON_Delete(task);
    char *text = cJSON_PrintUnformatted(res);
    cJSON_Delete(res);
    /* libgearman frees the result with free(): hand it a malloc'd copy. */
    size_t len = text ? strlen(text) : 0;
    char *out = malloc(len + 1);
    if (out && text)
        memcpy(out, text, len + 1);
    cJSON_free(text);
    *result_size = out ? len : 0;
    *ret_ptr = out ? GEARMAN_SUCCESS : GEARMAN_WORK_FAIL;
    return out;
}

static int s_worker(int port)
{
    signal(SIGTERM, s_on_term);
    gearman_worker_st *w = gearman_worker_create(NULL);
    if (!w || gearman_worker_add_server(w, "127.0.0.1", (in_port_t) port) != GEARMAN_SUCCESS ||
        gearman_worker_add_function(w, "noop", 0, s_noop, NULL) != GEARMAN_SUCCESS) {
        fprintf(stderr, "gearman-load worker: setup failed\n");
        return 1;
    }
    /* Bounded: work() returns every second, so a SIGTERM is seen. */
    gearman_worker_set_timeout(w, 1000);
    while (!s_stop) {
        gearman_return_t rc = gearman_worker_work(w);
        if (rc != GEARMAN_SUCCESS && rc != GEARMAN_TIMEOUT && rc != GEARMAN_IO_WAIT &&
            rc != GEARMAN_NO_JOBS && rc != GEARMAN_NO_ACTIVE_FDS) {
            if (s_stop)
                break;
            fprintf(stderr, "gearman-load worker: %s\n", gearman_worker_error(w));
            usleep(10000);
        }
    }
    gearman_worker_free(w);
    return 0;
}

/* ---- client ---- */

/* Asks gearmand's admin port how many workers can do "noop". -1 on error. */
static int s_noop_workers(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[4096];
    size_t got = 0;
    int avail = -1;
    if (connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0 && write(fd, "status\n", 7) == 7) {
        while (got < sizeof buf - 1) {
            ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
            if (r <= 0)
                break;
            got += (size_t) r;
            buf[got] = 0;
            if (strstr(buf, ".\n"))
                break;
        }
        buf[got] = 0;
        avail = 0;
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
            int total, running, workers;
            if (strncmp(line, "noop\t", 5) == 0 &&
                sscanf(line + 5, "%d\t%d\t%d", &total, &running, &workers) == 3)
                avail = workers;
        }
    }
    close(fd);
    return avail;
}

typedef struct {
    int64_t done;
    int64_t bad;
} tally_t;

static gearman_return_t s_complete(gearman_task_st *task)
{
    tally_t *t = gearman_task_context(task);
    cJSON *res = cJSON_ParseWithLength(gearman_task_data(task), gearman_task_data_size(task));
    if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(res, "task")))
        t->done++;
    else
        t->bad++;
    cJSON_Delete(res);
    return GEARMAN_SUCCESS;
}

static gearman_return_t s_fail(gearman_task_st *task)
{
    tally_t *t = gearman_task_context(task);
    t->bad++;
    return GEARMAN_SUCCESS;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--worker") == 0)
        return s_worker(atoi(argv[2]));
    int64_t n = 100000;
    int port = 0, workers = 2, window = 1000, timeout_s = 120;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--n") == 0)
            n = strtoll(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--workers") == 0)
            workers = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--window") == 0)
            window = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--timeout") == 0)
            timeout_s = atoi(argv[i + 1]);
        else
            port = -1;
    }
    if (port <= 0 || n < 1 || workers < 1 || workers > MAX_WORKERS || window < 1 ||
        timeout_s < 1 || argc % 2 == 0) {
        fprintf(stderr, "usage: gearman-load --port P [--n N] [--workers W] [--window K] "
                        "[--timeout SEC]\n");
        return 2;
    }
    int64_t deadline = s_now_us() + (int64_t) timeout_s * 1000000;

    pid_t pids[MAX_WORKERS];
    char pbuf[16];
    snprintf(pbuf, sizeof pbuf, "%d", port);
    for (int i = 0; i < workers; i++) {
        char *wargv[] = { argv[0], "--worker", pbuf, NULL };
        if (posix_spawn(&pids[i], "/proc/self/exe", NULL, NULL, wargv, environ) != 0) {
            fprintf(stderr, "gearman-load: cannot spawn a worker\n");
            return 1;
        }
    }
    int rc = 1;
    while (s_now_us() < deadline && s_noop_workers(port) < workers)
        usleep(10000);

    gearman_client_st *client = gearman_client_create(NULL);
    tally_t tally = { 0, 0 };
    if (!client ||
        gearman_client_add_server(client, "127.0.0.1", (in_port_t) port) != GEARMAN_SUCCESS) {
        fprintf(stderr, "gearman-load: client setup failed\n");
        goto out;
    }
    gearman_client_add_options(client, GEARMAN_CLIENT_FREE_TASKS);
    gearman_client_set_complete_fn(client, s_complete);
    gearman_client_set_fail_fn(client, s_fail);
    gearman_client_set_timeout(client, 10000);

    int64_t t0 = s_now_us();
    for (int64_t first = 1; first <= n && s_now_us() < deadline; first += window) {
        int64_t last = first + window - 1 < n ? first + window - 1 : n;
        for (int64_t i = first; i <= last; i++) {
            cJSON *task = cJSON_CreateObject();
            cJSON_AddNumberToObject(task, "id", (double) i);
            cJSON_AddNumberToObject(task, "attempt", 1);
            cJSON_AddNumberToObject(task, "job", 1);
            cJSON_AddStringToObject(cJSON_AddObjectToObject(task, "spec"), "fn", "noop");
            char *text = cJSON_PrintUnformatted(task);
            cJSON_Delete(task);
            gearman_return_t ret;
            /* The workload is copied by libgearman when the task is added. */
            gearman_task_st *t = gearman_client_add_task(client, NULL, &tally, "noop", NULL, text,
                                                         strlen(text), &ret);
            cJSON_free(text);
            if (!t || ret != GEARMAN_SUCCESS) {
                fprintf(stderr, "gearman-load: add_task: %s\n", gearman_client_error(client));
                goto out;
            }
        }
        gearman_return_t ret = gearman_client_run_tasks(client);
        if (ret != GEARMAN_SUCCESS) {
            fprintf(stderr, "gearman-load: run_tasks: %s\n", gearman_client_error(client));
            goto out;
        }
    }
    int64_t t1 = s_now_us();
    if (tally.done == n && tally.bad == 0) {
        double secs = (double) (t1 - t0) / 1e6;
        printf("{\"n\":%" PRId64 ",\"workers\":%d,\"window\":%d,\"total_s\":%.6f,"
               "\"tasks_per_s\":%.1f}\n", n, workers, window, secs, (double) n / secs);
        rc = 0;
    } else {
        fprintf(stderr, "gearman-load: %" PRId64 " done, %" PRId64 " failed of %" PRId64 "\n",
                tally.done, tally.bad, n);
    }
out:
    if (client)
        gearman_client_free(client);
    for (int i = 0; i < workers; i++)
        kill(pids[i], SIGTERM);
    for (int i = 0; i < workers; i++)
        waitpid(pids[i], NULL, 0);
    return rc;
}
