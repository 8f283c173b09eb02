/*  test_alloc: the allocation queues (master/alloc.c) against stand-in
    Slurm commands, with a real store and journal under them: what the
    master records of what it did outside (an sbatch's job) is on disk
    before the master goes on, and nothing is submitted (and `alloc list`
    says why) while no squeue has answered. The rest of the policy (when
    to submit, backoff, adoption, remove) is driven end to end in
    tests/e2e/test_alloc.c.
*/
#include "../../common/clock.h"
#include "../../common/util.h"
#include "../../master/alloc.h"
#include "../../master/jobs.h"
#include "../../master/journal.h"
#include "../../master/registry.h"
#include "../../master/sched.h"
#include "../../master/store.h"

#include "../ztest.h"
#include "capture.h"
#include "sqlfault.h"

#include <poll.h>
#include <zmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* A directory with the database and bin/ (stand-in sbatch and squeue,
   first on PATH); the master's parts over a store opened --sync acked
   through the fault VFS (s_wal_syncs), flush_ms a minute: nothing is
   committed unless due for an answer or hurried. */
typedef struct {
    char dir[256], db[300], bin[300];
    char *old_path;
    void *zmq_ctx;
    store_t *store;
    sched_t *sched;
    journal_t *journal;
    jobs_t *jobs;
    registry_t *registry;
    alloc_t *alloc;
} fix_t;

static void s_script(const fix_t *f, const char *name, const char *body)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", f->bin, name);
    FILE *out = fopen(path, "w");
    ck_assert_ptr_nonnull(out);
    fprintf(out, "#!/bin/sh\nd='%s'\n%s", f->dir, body);
    fclose(out);
    ck_assert_int_eq(chmod(path, 0755), 0);
}

static void s_fix(fix_t *f)
{
    memset(f, 0, sizeof *f);
    const char *base = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/ztask-alloc-XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/state.db", f->dir);
    snprintf(f->bin, sizeof f->bin, "%s/bin", f->dir);
    ck_assert_int_eq(mkdir(f->bin, 0755), 0);
    /* sbatch reads its script, prints the job id (--parsable); squeue
       lists nothing (no job of a queue it does not know is adopted), or
       fails while DIR/squeue.fail exists (slurmctld down). Each logs its
       calls. */
    s_script(f, "sbatch", "cat > \"$d/script\"\necho \"$*\" >> \"$d/sbatch.log\"\necho 4242\n");
    s_script(f, "squeue",
             "echo \"$*\" >> \"$d/squeue.log\"\n"
             "if [ -e \"$d/squeue.fail\" ]; then\n"
             "  echo 'squeue: error: Unable to contact slurm controller' >&2; exit 1\n"
             "fi\n");
    const char *path = getenv("PATH");
    f->old_path = strdup(path ? path : "");
    char *newpath = NULL;
    ck_assert_int_gt(asprintf(&newpath, "%s:%s", f->bin, f->old_path), 0);
    setenv("PATH", newpath, 1);
    free(newpath);

    s_fault_vfs_install();
    char err[512];
    f->store = store_new(f->db, STORE_SYNC_ACKED, err, sizeof err);
    ck_assert_msg(f->store, "store_new: %s", err);
    f->sched = sched_new();
    f->journal = journal_new(f->store, f->sched, 60000, f->db);
    ck_assert_ptr_nonnull(f->journal);
    f->jobs = jobs_new(NULL, 0, 0);
    f->zmq_ctx = zmq_ctx_new();
    f->registry = registry_new(&(registry_config_t){.zmq_ctx = f->zmq_ctx,
                                                    .bind_addr = "127.0.0.1"});
    ck_assert_ptr_nonnull(f->registry);
    /* A tenth of every timing: a tick each 100 ms, 3 s for a command. */
    f->alloc = alloc_new(&(alloc_config_t){.journal = f->journal,
                                           .jobs = f->jobs,
                                           .registry = f->registry,
                                           .worker_cmd = "ztask-worker",
                                           .master_addr = "127.0.0.1:5555",
                                           .time_scale = 0.1});
}

static void s_unfix(fix_t *f)
{
    alloc_destroy(&f->alloc);
    registry_destroy(&f->registry);
    zmq_ctx_term(f->zmq_ctx);
    jobs_destroy(&f->jobs);
    journal_destroy(&f->journal);
    sched_destroy(&f->sched);
    store_destroy(&f->store);
    s_fault_vfs_remove();
    setenv("PATH", f->old_path, 1);
    free(f->old_path);
    static const char *const files[] = {"bin/sbatch",   "bin/squeue",   "script",
                                        "sbatch.log",   "squeue.log",   "squeue.fail",
                                        "state.db",     "state.db-wal", "state.db-shm",
                                        "state.db.reserve"};
    char path[400];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", f->dir, files[i]);
        unlink(path);
    }
    rmdir(f->bin);
    rmdir(f->dir);
}

/* Adds a queue of one worker at a time, as `ztask alloc add` would, and
   flushes as the API does before it answers. */
static void s_add_queue(fix_t *f)
{
    proto_alloc_t q = {.engine = "slurm",
                       .max_workers = 1,
                       .workers_per_alloc = 1,
                       .backlog = 1,
                       .time_limit_s = 600,
                       .idle_timeout_s = 60};
    proto_reply_t *rep = alloc_request(
        f->alloc, &(proto_req_t){.type = PROTO_REQ_ALLOC, .alloc_op = PROTO_ALLOC_OP_ADD, .queue = &q},
        true);
    ck_assert_msg(rep->ok, "alloc add refused");
    proto_reply_destroy(&rep);
    ck_assert_int_eq(journal_flush(f->journal), 0);
}

/* Lines in DIR/name (0 when it does not exist). */
static int s_lines(const fix_t *f, const char *name)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    FILE *in = fopen(path, "r");
    if (!in)
        return 0;
    int n = 0, ch;
    while ((ch = fgetc(in)) != EOF)
        n += ch == '\n';
    fclose(in);
    return n;
}

/* Turns of the loop (a tick, the journal's commit) until DIR/name has
   at least n lines; fails after 30 s. */
static void s_tick_until_lines(fix_t *f, const char *name, int n)
{
    int64_t deadline = clock_mono_ms() + 30000;
    while (s_lines(f, name) < n) {
        ck_assert_msg(clock_mono_ms() < deadline, "%s: %d lines after 30 s, want %d", name,
                      s_lines(f, name), n);
        int64_t now = clock_mono_ms();
        alloc_tick(f->alloc, now);
        journal_commit(f->journal, now);
        poll(NULL, 0, 10);   /* the next tick: the commands' pipes are alloc's own */
    }
}

/* Commits what is due at now, and waits for a batch that went to the
   writer thread. */
static void s_commit_at(fix_t *f, int64_t now)
{
    journal_commit(f->journal, now);
    while (!journal_idle(f->journal)) {
        struct pollfd pfd = {.fd = journal_fd(f->journal), .events = POLLIN};
        ck_assert_int_ge(poll(&pfd, 1, 60000), 0);
        journal_collect(f->journal);
    }
}

/* sbatch submitted an allocation that Slurm runs (and bills) whatever
   becomes of the master. Its job id, recorded only in a commit no
   client's answer waits for, was written without an fsync (--sync acked)
   and fsynced up to 1 s later: a machine crash in that second lost the
   record while the master had gone on counting the allocation against
   the queue's limits. It is fsynced at once, before the next turn. */
START_TEST(an_sbatch_job_id_is_fsynced_before_the_master_goes_on)
{
    fix_t f;
    s_fix(&f);
    s_add_queue(&f);
    job_t *job = jobs_create(f.jobs, &(store_job_new_t){.id = 1, .name = "j", .created = 1});
    job_add(job, PROTO_ST_QUEUED, 3, 0);

    /* Ticks (a first squeue, then sbatch) until the tick that reads
       sbatch's answer journals the allocation. */
    uint64_t before = journal_mark(f.journal);
    int64_t now = 0, deadline = clock_mono_ms() + 30000;
    while (journal_mark(f.journal) == before) {
        ck_assert_msg(clock_mono_ms() < deadline, "no allocation recorded within 30 s");
        now = clock_mono_ms();
        alloc_tick(f.alloc, now);
        if (journal_mark(f.journal) == before)
            poll(NULL, 0, 10);   /* the next tick: the commands' pipes are alloc's own */
    }
    proto_reply_t *rep = alloc_request(
        f.alloc, &(proto_req_t){.type = PROTO_REQ_ALLOC, .alloc_op = PROTO_ALLOC_OP_LIST}, false);
    ck_assert_int_eq(rep->nallocs, 1);
    ck_assert_int_eq(rep->allocs[0].nallocs, 1);
    ck_assert_str_eq(rep->allocs[0].allocs[0].id, "4242");
    proto_reply_destroy(&rep);

    /* The loop's next commit, at the same instant (not due by flush_ms
       nor by JOURNAL_FSYNC_MS): the record is on disk. */
    uint64_t mark = journal_mark(f.journal);
    int syncs = s_wal_syncs;
    s_commit_at(&f, now);
    ck_assert_msg(journal_written(f.journal, mark),
                  "the Slurm job's record is not fsynced: a machine crash now forgets an "
                  "allocation Slurm runs");
    ck_assert_int_ge(s_wal_syncs, syncs + 1);

    s_unfix(&f);
}
END_TEST

/* The fixture with one queue and a job of 3 queued tasks for it, and
   squeue failing (slurmctld down) until the file fail names is removed. */
static void s_fix_failing_squeue(fix_t *f, char *fail, size_t len)
{
    s_fix(f);
    snprintf(fail, len, "%s/squeue.fail", f->dir);
    FILE *flag = fopen(fail, "w");
    ck_assert_ptr_nonnull(flag);
    fclose(flag);
    s_add_queue(f);
    job_t *job = jobs_create(f->jobs, &(store_job_new_t){.id = 1, .name = "j", .created = 1});
    job_add(job, PROTO_ST_QUEUED, 3, 0);
}

/* A restarted master learns from its first squeue what Slurm runs that
   it has no record of (a machine crash took the record, or it died while
   sbatch ran) and counts it against the queue's limits. A first squeue
   that failed (slurmctld down, as after the power loss that took the
   master down too) learnt nothing: no sbatch goes out until one answers,
   asked again every poll. (The first failed poll let sbatch run at the
   next tick.) */
START_TEST(no_sbatch_goes_out_before_a_squeue_has_answered)
{
    fix_t f;
    char fail[400];
    s_fix_failing_squeue(&f, fail, sizeof fail);

    /* Two failed polls (and the ticks between): no sbatch. */
    s_tick_until_lines(&f, "squeue.log", 2);
    ck_assert_msg(s_lines(&f, "sbatch.log") == 0,
                  "sbatch ran while no squeue had answered: what Slurm runs for this queue "
                  "is not counted");

    /* slurmctld is back: a poll answers, then the allocation goes out. */
    ck_assert_int_eq(unlink(fail), 0);
    s_tick_until_lines(&f, "sbatch.log", 1);
    ck_assert_int_ge(s_lines(&f, "squeue.log"), 3);
    s_unfix(&f);
}
END_TEST

/* The queue's last_error as `ztask alloc list` shows it (caller frees;
   NULL for none). */
static char *s_last_error(fix_t *f)
{
    proto_reply_t *rep = alloc_request(
        f->alloc, &(proto_req_t){.type = PROTO_REQ_ALLOC, .alloc_op = PROTO_ALLOC_OP_LIST}, false);
    ck_assert_int_eq(rep->nallocs, 1);
    char *e = rep->allocs[0].last_error ? strdup(rep->allocs[0].last_error) : NULL;
    proto_reply_destroy(&rep);
    return e;
}

/* While no squeue has answered, nothing is submitted: `ztask alloc list`
   says why in the queue's LAST-ERROR, with squeue's own error (it showed
   an active queue, no error, nothing submitted: a stall seen only in the
   master's log), and no longer once one has answered. */
START_TEST(a_queue_held_back_by_a_failing_squeue_says_why_in_alloc_list)
{
    fix_t f;
    char fail[400];
    s_fix_failing_squeue(&f, fail, sizeof fail);

    s_tick_until_lines(&f, "squeue.log", 2);
    char *e = s_last_error(&f);
    ck_assert_msg(e && strstr(e, "no allocation until squeue answers")
                      && strstr(e, "squeue failed (exit 1): squeue: error: Unable to contact "
                                   "slurm controller"),
                  "alloc list does not say why nothing is submitted: %s", e ? e : "(none)");
    free(e);

    ck_assert_int_eq(unlink(fail), 0);
    s_tick_until_lines(&f, "sbatch.log", 1);
    e = s_last_error(&f);
    ck_assert_msg(!e, "still says it waits for squeue: %s", e);
    s_unfix(&f);
}
END_TEST

/* Occurrences of needle in text. */
static int s_count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* squeue missing or slurmctld down can last days, and the master asks
   again every poll: the same failure is logged once (it was a warn line
   every 5 s), and the poll that answers at last says how many failed. */
START_TEST(a_squeue_that_keeps_failing_alike_is_logged_once)
{
    fix_t f;
    char fail[400];
    s_fix_failing_squeue(&f, fail, sizeof fail);

    capture_t cap;
    s_capture_start(&cap, STDERR_FILENO);
    s_tick_until_lines(&f, "squeue.log", 4);
    ck_assert_int_eq(unlink(fail), 0);
    s_tick_until_lines(&f, "sbatch.log", 1);
    char *log = s_capture_end(&cap);
    ck_assert_msg(s_count(log, "event=alloc_poll_failed ") == 1,
                  "the same squeue failure logged at each poll:\n%s", log);
    ck_assert_msg(strstr(log, "event=alloc_poll_answered failed_polls="), "%s", log);
    free(log);
    s_unfix(&f);
}
END_TEST

/* A command killed by a signal says which, by name, with what it wrote
   (the log and last_error showed "killed by signal 15 (ran over 0.3 s?)":
   a number to look up, and a guess at the command limit whoever sent it). */
START_TEST(a_squeue_killed_by_a_signal_says_which_by_name)
{
    fix_t f;
    char fail[400];
    s_fix_failing_squeue(&f, fail, sizeof fail);
    s_script(&f, "squeue",
             "echo \"$*\" >> \"$d/squeue.log\"\n"
             "echo 'squeue: going down' >&2\n"
             "kill -TERM $$\n");

    /* The second poll starts once the first one's end is judged. */
    s_tick_until_lines(&f, "squeue.log", 2);
    char *e = s_last_error(&f);
    ck_assert_msg(e && strstr(e, "squeue killed by signal SIGTERM: squeue: going down"),
                  "alloc list: %s", e ? e : "(none)");
    free(e);
    s_unfix(&f);
}
END_TEST

/* Starting a Slurm command leaves the master's memory as it is: with
   fork every page of it was write-protected (and its page tables
   copied), so that the master's next write to each one faulted, and
   under strict overcommit a large master could not start sbatch at all.
   (fork: 8192 faults for the 8192 pages of the buffer below.) Sanitizer
   builds fork (ZT_SANITIZED), and valgrind runs a vfork as a fork (make
   memcheck: 8242 faults), so neither can tell. */
START_TEST(starting_a_slurm_command_copies_none_of_the_masters_memory)
{
#ifdef ZT_SANITIZED
    return;
#endif
    if (zt_valgrind())
        return;
    fix_t f;
    s_fix(&f);
    const size_t pages = 8192, page = (size_t) sysconf(_SC_PAGESIZE);
    char *mem = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(mem, MAP_FAILED);
    madvise(mem, pages * page, MADV_NOHUGEPAGE);   /* one fault per page, not per 2 MiB */
    for (size_t i = 0; i < pages; i++)
        mem[i * page] = 1;

    /* The queue's first squeue has run (it logs once exec'd). */
    s_add_queue(&f);
    s_tick_until_lines(&f, "squeue.log", 1);
    struct rusage before, after;
    ck_assert_int_eq(getrusage(RUSAGE_SELF, &before), 0);
    for (size_t i = 0; i < pages; i++)
        mem[i * page] = 2;
    ck_assert_int_eq(getrusage(RUSAGE_SELF, &after), 0);
    long faults = after.ru_minflt - before.ru_minflt;
    ck_assert_msg(faults < (long) pages / 4, "%ld faults writing %zu pages already written", faults,
                  pages);
    munmap(mem, pages * page);
    s_unfix(&f);
}
END_TEST

int main(void)
{
    /* The helpers wait up to 30 s for the stand-in commands (a loaded
       host): Check's 4 s default would end a test first. */
    return zt_run(&(zt_suite_t){.suite = "alloc", .tcase = "alloc", .timeout_s = 60});
}
