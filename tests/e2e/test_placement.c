/*  e2e placement: tasks that ask resources (submit --cpus, --gpus,
    --resource) through the real programs.

    Each task appends a start line and an end line to one file: the time
    (date +%s%N), its worker's tag (an environment variable the test sets
    for that worker, which its tasks inherit), what it was given
    (ZTASK_CPUS, ZTASK_GPUS) and what it asked. A line is written after
    the task started and before it ended, so the intervals read back lie
    inside the real ones: an overlap seen is a real overlap. The test
    replays the file in time order per worker and fails on any moment
    where the tasks held more than the worker declared, or where a whole
    GPU was held by two tasks. GPUs are a fake device list
    (ZTASK_GPU_DEVICES): CI has none. */
#include "harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Starts a worker whose tasks see TAG=tag, with these GPU device ids. */
static h_proc_t *s_worker(h_cluster_t *c, const char *tag, const char *gpus, int threads,
                          const char *resources)
{
    setenv("TAG", tag, 1);
    setenv("ZTASK_GPU_DEVICES", gpus, 1);
    h_proc_t *w = h_worker_start(c, tag, threads, "--resources", resources, NULL);
    unsetenv("TAG");
    unsetenv("ZTASK_GPU_DEVICES");
    return w;
}

/* A task that records itself: KIND is what it asked, for the replay. */
static char *s_script(h_cluster_t *c, const char *kind)
{
    char *s = NULL;
    int n = asprintf(&s,
                     "f='%s/events'; "
                     "echo \"$(date +%%s%%N) S $TAG $ZTASK_CPUS ${ZTASK_GPUS:--} %s\" >> \"$f\"; "
                     "sleep 0.3; "
                     "echo \"$(date +%%s%%N) E $TAG $ZTASK_CPUS ${ZTASK_GPUS:--} %s\" >> \"$f\"",
                     h_dir(c), kind, kind);
    ck_assert_int_gt(n, 0);
    return s;
}

typedef struct {
    long long t;
    char ev;
    char tag[8];
    int cpus;
    char gpus[64];
    char kind[16];
} event_t;

static int s_cmp_event(const void *a, const void *b)
{
    const event_t *x = a, *y = b;
    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    return x->ev == 'E' ? -1 : y->ev == 'E';   /* an end before a start at the same ns */
}

/* What one worker declared. */
typedef struct {
    const char *tag;
    int cpus, lic;
    int ngpus;
} decl_t;

/* Replays the events; fails on the first moment over a declaration or
   with a whole GPU shared. Returns the number of tasks seen. */
static int s_replay(const char *text, const decl_t *decl, int ndecl)
{
    int cap = 4096, n = 0;
    event_t *ev = calloc((size_t) cap, sizeof *ev);
    const char *p = text;
    while (*p && n < cap) {
        event_t *e = &ev[n];
        char ev_c;
        if (sscanf(p, "%lld %c %7s %d %63s %15s", &e->t, &ev_c, e->tag, &e->cpus, e->gpus,
                   e->kind)
            == 6) {
            e->ev = ev_c;
            n++;
        }
        p = strchr(p, '\n');
        if (!p)
            break;
        p++;
    }
    qsort(ev, (size_t) n, sizeof *ev, s_cmp_event);
    int starts = 0;
    for (int d = 0; d < ndecl; d++) {
        int cpus = 0, lic = 0;
        int whole[16] = {0}, half[16] = {0};   /* by device id (0..15) */
        for (int i = 0; i < n; i++) {
            const event_t *e = &ev[i];
            if (strcmp(e->tag, decl[d].tag) != 0)
                continue;
            int sign = e->ev == 'S' ? 1 : -1;
            starts += e->ev == 'S';
            cpus += sign * e->cpus;
            if (strcmp(e->kind, "lic") == 0)
                lic += sign;
            if (strcmp(e->gpus, "-") != 0) {
                char copy[64];
                snprintf(copy, sizeof copy, "%s", e->gpus);
                int ndev = 0;
                for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
                     tok = strtok_r(NULL, ",", &save), ndev++) {
                    int id = atoi(tok);
                    ck_assert_msg(id >= 0 && id < 16, "device id %s", tok);
                    if (strcmp(e->kind, "half") == 0)
                        half[id] += sign;
                    else
                        whole[id] += sign;
                    ck_assert_msg(whole[id] <= 1 && (whole[id] == 0 || half[id] == 0)
                                      && half[id] <= 2,
                                  "worker %s: device %d shared (whole %d, halves %d) at %lld",
                                  decl[d].tag, id, whole[id], half[id], e->t);
                }
                if (strcmp(e->kind, "gpu2") == 0)
                    ck_assert_msg(ndev == 2, "a 2-GPU task got '%s'", e->gpus);
            }
            ck_assert_msg(cpus <= decl[d].cpus, "worker %s: %d CPUs in use of %d at %lld",
                          decl[d].tag, cpus, decl[d].cpus, e->t);
            ck_assert_msg(lic <= decl[d].lic, "worker %s: %d licences in use of %d at %lld",
                          decl[d].tag, lic, decl[d].lic, e->t);
            ck_assert_msg(decl[d].ngpus > 0 || strcmp(e->gpus, "-") == 0,
                          "worker %s has no GPU but a task got '%s'", decl[d].tag, e->gpus);
        }
    }
    free(ev);
    return starts;
}

START_TIMED_TEST(no_worker_holds_more_than_it_declared_and_no_whole_gpu_is_shared, 150)
{
    h_cluster_t *c = h_cluster_new("placement");
    h_master_start(c, 0, NULL);
    /* Threads beyond the CPUs: the declaration, not the threads, limits. */
    h_proc_t *wa = s_worker(c, "a", "3,5", 8, "cpus=4,lic=1");
    s_worker(c, "b", "", 8, "cpus=3");
    h_run_t *r = h_cli(c, "workers", "--json", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->out, "\"gpus\":2") && strstr(r->out, "\"lic\":1"),
                  "workers: %s", r->out);
    h_run_free(&r);
    (void) wa;

    static const struct {
        const char *kind, *opt, *val, *array;
    } jobs[] = {
        {"cpu1", "--cpus", "1", "0-11"},   {"cpu2", "--cpus", "2", "0-7"},
        {"gpu1", "--gpus", "1", "0-5"},    {"gpu2", "--gpus", "2", "0-2"},
        {"half", "--gpus", "0.5", "0-7"},  {"lic", "--resource", "lic=1", "0-3"},
    };
    int64_t ids[6];
    int total = 0;
    for (int j = 0; j < 6; j++) {
        char *script = s_script(c, jobs[j].kind);
        ids[j] = h_submit(c, NULL, "--array", jobs[j].array, jobs[j].opt, jobs[j].val, "--shell",
                          script, NULL);
        free(script);
    }
    for (int j = 0; j < 6; j++) {
        ck_assert_int_eq(h_wait(c, ids[j], 90000), 0);
        total += (int) h_status_count(c, ids[j], "done");
    }
    char *path = h_path(c, "events");
    char *text = h_read_file(path);
    ck_assert_ptr_nonnull(text);
    static const decl_t decl[] = {{"a", 4, 1, 2}, {"b", 3, 0, 0}};
    ck_assert_int_eq(s_replay(text, decl, 2), total);
    /* Devices are the fake ids given, never "0". */
    ck_assert_msg(strstr(text, " 3 ") || strstr(text, " 5 "), "no task got device 3 or 5");
    free(text);
    free(path);
    h_cluster_destroy(&c);
}
END_TEST

/* A task asking the whole worker, queued while small tasks run and
   followed by a stream of more small ones, runs before that stream has
   drained: the worker is reserved for it (docs/architecture.md). */
START_TIMED_TEST(a_big_task_is_not_starved_by_a_stream_of_small_ones, 120)
{
    h_cluster_t *c = h_cluster_new("nostarve");
    h_proc_t *m = h_master_start(c, 0, NULL);
    s_worker(c, "a", "", 4, "cpus=4");
    /* Four tasks hold every CPU: the big one and the stream queue behind. */
    int64_t first = h_submit(c, NULL, "--array", "0-3", "--cpus", "1", "--", "sleep", "2", NULL);
    ck_assert(H_POLL(h_status_count(c, first, "running") == 4, 20000));
    int64_t big = h_submit(c, NULL, "--cpus", "4", "--", "true", NULL);
    int64_t stream = h_submit(c, NULL, "--array", "0-149", "--cpus", "1", "--", "sleep", "0.2",
                              NULL);
    ck_assert_int_eq(h_wait(c, big, 60000), 0);
    int64_t done = h_status_count(c, stream, "done");
    ck_assert_msg(done < 100, "the big task waited for %lld of 150 later small tasks",
                  (long long) done);
    ck_assert_msg(h_proc_count_log(m, "event=reserved") >= 1, "no reservation logged (%s)",
                  h_proc_log(m));
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) stream);
    h_run_t *r = h_cli(c, "cancel", id, NULL);   /* no need to wait for the rest */
    h_run_free(&r);
    (void) first;
    h_cluster_destroy(&c);
}
END_TEST

/* A task no worker could ever hold is said at submit and waits. */
START_TIMED_TEST(a_task_no_worker_could_hold_is_reported_at_submit_and_waits, 60)
{
    h_cluster_t *c = h_cluster_new("unplaceable");
    h_master_start(c, 0, NULL);
    s_worker(c, "a", "", 2, "cpus=2");
    h_run_t *r = h_cli(c, "submit", "--cpus", "64", "--", "true", NULL);
    ck_assert_msg(r->rc == 0 && strstr(r->err, "cpus=64"), "submit: %s", h_run_desc(r));
    h_run_free(&r);
    r = h_cli(c, "stats", "--json", NULL);
    ck_assert_msg(strstr(r->out, "cpus=64"), "stats: %s", r->out);
    h_run_free(&r);
    ck_assert_int_eq(h_status_count(c, 1, "queued"), 1);
    /* A bad request is refused before anything is sent. */
    r = h_cli(c, "submit", "--gpus", "1.5", "--", "true", NULL);
    ck_assert_int_eq(r->rc, 2);
    h_run_free(&r);
    r = h_cli(c, "submit", "--resource", "x y=1", "--", "true", NULL);
    ck_assert_int_eq(r->rc, 2);
    h_run_free(&r);
    h_cluster_destroy(&c);
}
END_TEST

/* Each distinct kind of task (function, labels, resources, time request)
   is a class the master keeps until it restarts and looks at on every
   dispatch, its index 16 bits in each task: a client cannot make them
   without end. A batch over the bound is refused whole and takes no room;
   the master goes on serving. */
START_TIMED_TEST(a_client_cannot_make_kinds_of_task_without_end, 90)
{
    h_cluster_t *c = h_cluster_new("classes");
    h_master_start(c, 0, NULL);
    s_worker(c, "a", "", 2, "cpus=2");
    char *path = h_path(c, "kinds.jsonl");
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 5000; i++)
        fprintf(f, "{\"fn\":\"kind%d\"}\n", i);
    fclose(f);
    h_run_t *r = h_cli(c, "submit", "--file", path, NULL);
    ck_assert_msg(r->rc != 0 && strstr(r->err, "kinds of task"), "submit: %s", h_run_desc(r));
    h_run_free(&r);
    free(path);
    /* Known kinds and a few new ones are still taken and run. */
    int64_t job = h_submit(c, NULL, "--array", "0-3", "--", "true", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    job = h_submit(c, NULL, "--cpus", "2", "--", "true", NULL);
    ck_assert_int_eq(h_wait(c, job, 30000), 0);
    h_cluster_destroy(&c);
}
END_TEST

/* ---- after a master restart ---- */

#define RESTART_HEARTBEAT "--heartbeat-ms", "200", "--liveness", "3", "--recovery-grace", "5"

/* A task that writes its devices (or "-") and CPUs to DIR/NAME.dev, then
   waits (60 s at most) for DIR/NAME.go; script has room for 512 bytes. */
static void s_gated(h_cluster_t *c, const char *name, char *script, size_t len)
{
    const char *d = h_dir(c);
    snprintf(script, len,
             "echo \"${CUDA_VISIBLE_DEVICES:--} $ZTASK_CPUS\" > '%s/%s.tmp' && "
             "mv '%s/%s.tmp' '%s/%s.dev'; n=0; "
             "while [ ! -e '%s/%s.go' ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done",
             d, name, d, name, d, name, d, name);
}

/* What gated task `name` wrote (borrowed until the next call), waiting
   for it to start. */
static const char *s_started(h_cluster_t *c, const char *name)
{
    static char seen[64];
    char file[64];
    snprintf(file, sizeof file, "%s.dev", name);
    char *path = h_path(c, file);
    char *text = NULL;
    bool ok = H_POLL((text = h_read_file(path)) != NULL, 30000);
    ck_assert_msg(ok, "task %s did not start", name);
    snprintf(seen, sizeof seen, "%s", text);
    seen[strcspn(seen, "\n")] = '\0';
    free(text);
    free(path);
    return seen;
}

static void s_release(h_cluster_t *c, const char *name)
{
    char file[64];
    snprintf(file, sizeof file, "%s.go", name);
    char *path = h_path(c, file);
    h_write_file(path, "");
    free(path);
}

/* The CPUs in use on worker id as `ztask workers --json` says. */
static int64_t s_cpus_used(h_cluster_t *c, const char *id)
{
    h_run_t *r = h_cli(c, "workers", "--json", NULL);
    ck_assert_msg(r->rc == 0, "workers: %s", h_run_desc(r));
    cJSON *all = h_json_lines(r->out);
    int64_t used = -1;
    const cJSON *w;
    cJSON_ArrayForEach(w, all)
    {
        const char *wid = h_jstr(w, "worker");
        if (wid && strcmp(wid, id) == 0)
            used = h_jint(cJSON_GetObjectItemCaseSensitive(w, "used"), "cpus", 0);
    }
    cJSON_Delete(all);
    h_run_free(&r);
    return used;
}

/* Issue 16: no two tasks hold the same whole GPU at once, a master
   restart included. Task b holds device 1 (a, on device 0, has ended);
   the master is killed and restarted, the worker claims b, and a new
   GPU task must get device 0, not device 1 again: the master has to learn
   which device the claimed task holds, not hand it the first free one.
   The claimed task's CPUs count as in use again too. */
START_TIMED_TEST(a_task_claimed_after_a_master_restart_keeps_its_gpu_and_cpus_to_itself, 120)
{
    h_cluster_t *c = h_cluster_new("claimgpu");
    int port = h_free_base_port();
    h_proc_t *m = h_master_start(c, port, RESTART_HEARTBEAT, "--sync", "full", NULL);
    h_proc_t *w = s_worker(c, "a", "0,1", 4, "cpus=4,gpus=2");
    char id[64];
    snprintf(id, sizeof id, "%s", h_worker_id(w));
    char script[512];
    s_gated(c, "a", script, sizeof script);
    int64_t ja = h_submit(c, NULL, "--gpus", "1", "--cpus", "1", "--", "sh", "-c", script, NULL);
    ck_assert_str_eq(s_started(c, "a"), "0 1");
    s_gated(c, "b", script, sizeof script);
    h_submit(c, NULL, "--gpus", "1", "--cpus", "2", "--", "sh", "-c", script, NULL);
    ck_assert_str_eq(s_started(c, "b"), "1 2");
    s_release(c, "a");
    ck_assert_int_eq(h_wait(c, ja, 30000), 0);

    h_proc_kill9(m);
    h_master_start(c, port, RESTART_HEARTBEAT, "--sync", "full", NULL);
    ck_assert_msg(h_proc_wait_log(w, "registered worker=", 2, 30000),
                  "the worker did not register again (log %s)", h_proc_log(w));
    /* b's 2 CPUs are in use again (before any new task). */
    ck_assert_int_eq(s_cpus_used(c, id), 2);

    /* A new whole-GPU task: device 0 is free, device 1 is b's. */
    s_gated(c, "c", script, sizeof script);
    int64_t jc = h_submit(c, NULL, "--gpus", "1", "--cpus", "2", "--", "sh", "-c", script, NULL);
    const char *got = s_started(c, "c");
    ck_assert_msg(strcmp(got, "0 2") == 0, "task c got '%s' while b holds device 1", got);
    ck_assert_int_eq(s_cpus_used(c, id), 4);
    s_release(c, "b");
    s_release(c, "c");
    ck_assert_int_eq(h_wait(c, jc, 30000), 0);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_placement", h_slowdown()));
}
