/* sched: priorities first, FIFO within a priority, retry backoff on an
   injected clock, lazy removal. */
#include "../../master/sched.h"

#include "../ztest.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

START_TEST(runs_higher_priority_first_then_fifo)
{
    sched_t *s = sched_new();
    sched_add(s, &(sched_new_task_t){.id = 1, .job = 1}, 0);
    sched_add(s, &(sched_new_task_t){.id = 2, .job = 1, .priority = 5}, 0);
    sched_add(s, &(sched_new_task_t){.id = 3, .job = 1}, 0);
    sched_add(s, &(sched_new_task_t){.id = 4, .job = 1, .priority = 5}, 0);
    sched_add(s, &(sched_new_task_t){.id = 5, .job = 1, .priority = -1}, 0);
    int64_t want[] = {2, 4, 1, 3, 5};
    for (int i = 0; i < 5; i++) {
        sched_task_t *t = sched_pop(s, 0, NULL, NULL, true);
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(t->id, want[i]);
        ck_assert_int_eq(t->state, PROTO_ST_ASSIGNED);
    }
    ck_assert_ptr_null(sched_pop(s, 0, NULL, NULL, true));
    ck_assert_int_eq(sched_size(s), 5);
    sched_destroy(&s);
    ck_assert_ptr_null(s);
}
END_TEST

START_TEST(fifo_holds_for_many_tasks)
{
    sched_t *s = sched_new();
    for (int64_t i = 1; i <= 100000; i++)
        sched_add(s, &(sched_new_task_t){.id = i, .job = 1, .priority = (int32_t) (i % 3)}, 0);
    int64_t last_id[3] = {0, 0, 0};
    int32_t last_prio = 3;
    /* Checked in plain C, asserted once: 300,000 ck_asserts (each a
       message to Check's parent process) come near the test's timeout
       under the sanitizers on a slow machine. */
    int bad_at = -1;
    for (int i = 0; i < 100000; i++) {
        sched_task_t *t = sched_pop(s, 0, NULL, NULL, true);
        if (!t || t->priority > last_prio || t->id <= last_id[t->priority]) {
            bad_at = i;
            break;
        }
        last_prio = t->priority;
        last_id[t->priority] = t->id;
        sched_remove(s, t->id);
    }
    ck_assert_msg(bad_at < 0, "pop %d out of priority/FIFO order", bad_at);
    ck_assert_ptr_null(sched_pop(s, 0, NULL, NULL, true));
    ck_assert_int_eq(sched_size(s), 0);
    sched_destroy(&s);
}
END_TEST

START_TEST(requeue_with_backoff_waits_for_its_time)
{
    sched_t *s = sched_new();
    sched_task_t *t = sched_add(s, &(sched_new_task_t){.id = 7, .job = 1, .retries_left = 1}, 0);
    ck_assert_ptr_eq(sched_pop(s, 1000, NULL, NULL, true), t);
    sched_requeue(s, t, 1500);
    ck_assert_int_eq(t->state, PROTO_ST_QUEUED);
    ck_assert_ptr_null(sched_pop(s, 1000, NULL, NULL, true));
    ck_assert_int_eq(sched_next_due(s, 1000), 500);
    ck_assert_ptr_null(sched_pop(s, 1499, NULL, NULL, true));
    ck_assert_ptr_eq(sched_pop(s, 1500, NULL, NULL, true), t);
    ck_assert_int_eq(sched_next_due(s, 1500), -1);
    sched_destroy(&s);
}
END_TEST

START_TEST(backoff_does_not_block_ready_tasks)
{
    sched_t *s = sched_new();
    sched_task_t *a =
        sched_add(s, &(sched_new_task_t){.id = 1, .job = 1, .priority = 9, .retries_left = 1}, 0);
    ck_assert_ptr_eq(sched_pop(s, 0, NULL, NULL, true), a);
    sched_requeue(s, a, 10000);
    sched_add(s, &(sched_new_task_t){.id = 2, .job = 1}, 0);
    sched_task_t *b = sched_pop(s, 0, NULL, NULL, true);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(b->id, 2);
    sched_destroy(&s);
}
END_TEST

START_TEST(removed_or_requeued_tasks_leave_no_ghosts)
{
    sched_t *s = sched_new();
    sched_add(s, &(sched_new_task_t){.id = 1, .job = 1}, 0);
    sched_add(s, &(sched_new_task_t){.id = 2, .job = 1}, 0);
    sched_task_t *t3 = sched_add(s, &(sched_new_task_t){.id = 3, .job = 1}, 0);
    sched_remove(s, 1);               /* cancelled while queued */
    sched_task_t *t = sched_pop(s, 0, NULL, NULL, true);
    ck_assert_int_eq(t->id, 2);
    sched_requeue(s, t, 0);           /* back to the queue: one entry only */
    ck_assert_ptr_eq(sched_pop(s, 0, NULL, NULL, true), t);  /* FIFO: 2 is older than 3 */
    ck_assert_ptr_eq(sched_pop(s, 0, NULL, NULL, true), t3);
    ck_assert_ptr_null(sched_pop(s, 0, NULL, NULL, true));
    ck_assert_ptr_null(sched_get(s, 1));
    sched_destroy(&s);
}
END_TEST

START_TEST(orphans_wait_outside_the_queue)
{
    sched_t *s = sched_new();
    sched_task_t *o =
        sched_add_orphan(s, &(sched_new_task_t){.id = 4, .job = 1, .attempt = 2}, "w1", 5000);
    ck_assert(o->orphan);
    ck_assert_str_eq(o->worker_name, "w1");
    ck_assert_ptr_null(sched_pop(s, 0, NULL, NULL, true));
    sched_requeue(s, o, 0);
    ck_assert(!o->orphan);
    ck_assert_ptr_eq(sched_pop(s, 0, NULL, NULL, true), o);
    ck_assert_int_eq(o->attempt, 2);
    sched_destroy(&s);
}
END_TEST

/* The scheduler reads no clock of its own: only the caller's `now`
   decides. 200 ms is long past on any real clock, yet at now = 199 the
   task is not due. (That the master's `now` is monotonic, so wall-clock
   jumps fire nothing early or late, is test_master's to show.) */
START_TEST(only_the_callers_now_decides_when_a_retry_is_due)
{
    sched_t *s = sched_new();
    sched_task_t *t = sched_add(s, &(sched_new_task_t){.id = 1, .job = 1, .retries_left = 1}, 0);
    sched_pop(s, 100, NULL, NULL, true);
    sched_requeue(s, t, 200);
    ck_assert_ptr_null(sched_pop(s, 199, NULL, NULL, true));
    ck_assert_ptr_eq(sched_pop(s, 200, NULL, NULL, true), t);
    sched_destroy(&s);
}
END_TEST

static bool s_no_exec(const sched_class_t *cls, void *arg)
{
    (void) arg;
    return !cls->exec;
}

static bool s_has_gpu(const sched_class_t *cls, void *arg)
{
    (void) arg;
    for (int i = 0; i < cls->nrequire; i++)
        if (strcmp(cls->require[i], "gpu") != 0)
            return false;
    return true;
}

START_TEST(a_worker_only_gets_classes_it_accepts_in_global_order)
{
    sched_t *s = sched_new();
    int exec = sched_class(s, "exec");
    int gpu = sched_class(s, "fn:gpu");
    ck_assert_int_eq(sched_class(s, "exec"), exec);
    ck_assert_int_eq(sched_class(s, NULL), 0);
    const sched_class_t *c = sched_class_get(s, gpu);
    ck_assert(!c->exec);
    ck_assert_int_eq(c->nrequire, 1);
    ck_assert_str_eq(c->require[0], "gpu");
    sched_add(s, &(sched_new_task_t){.id = 1, .job = 1, .cls = exec}, 0);
    sched_add(s, &(sched_new_task_t){.id = 2, .job = 1, .cls = gpu}, 0);
    sched_add(s, &(sched_new_task_t){.id = 3, .job = 1}, 0);
    sched_add(s, &(sched_new_task_t){.id = 4, .job = 1, .priority = 7, .cls = exec}, 0);
    /* A worker refusing commands skips 1 and 4 without losing them. */
    ck_assert_int_eq(sched_pop(s, 0, s_no_exec, NULL, true)->id, 2);
    ck_assert_int_eq(sched_pop(s, 0, s_no_exec, NULL, true)->id, 3);
    ck_assert_ptr_null(sched_pop(s, 0, s_no_exec, NULL, true));
    /* Priority still wins across classes for a worker that takes all. */
    ck_assert_int_eq(sched_pop(s, 0, NULL, NULL, true)->id, 4);
    ck_assert_int_eq(sched_pop(s, 0, NULL, NULL, true)->id, 1);
    sched_add(s, &(sched_new_task_t){.id = 5, .job = 1, .cls = gpu}, 0);
    ck_assert_int_eq(sched_pop(s, 0, s_has_gpu, NULL, true)->id, 5);
    sched_destroy(&s);
}
END_TEST

START_TEST(suspects_are_handed_out_only_to_a_worker_without_one)
{
    sched_t *s = sched_new();
    sched_task_t *a = sched_add(s, &(sched_new_task_t){.id = 1, .job = 1}, 0);
    sched_add(s, &(sched_new_task_t){.id = 2, .job = 1}, 0);
    ck_assert_ptr_eq(sched_pop(s, 0, NULL, NULL, true), a);
    a->crashes = 1;                   /* its worker died holding it */
    sched_requeue(s, a, 0);
    /* A worker that holds a suspect gets the innocent task, not this one. */
    sched_task_t *b = sched_pop(s, 0, NULL, NULL, false);
    ck_assert_int_eq(b->id, 2);
    ck_assert_ptr_null(sched_pop(s, 0, NULL, NULL, false));
    /* A worker without one may take it (busy or not). */
    ck_assert_ptr_eq(sched_pop(s, 0, NULL, NULL, true), a);
    sched_destroy(&s);
}
END_TEST

START_TEST(counts_parked_tasks_by_their_first_reason_without_a_pass_over_all)
{
    sched_t *s = sched_new();
    sched_task_t *a = sched_add(s, &(sched_new_task_t){.id = 1, .job = 1}, 0);
    sched_task_t *b = sched_add(s, &(sched_new_task_t){.id = 2, .job = 1}, 0);
    sched_add(s, &(sched_new_task_t){.id = 3, .job = 2, .held = true}, 0);   /* deps */
    sched_parked_t n = sched_parked(s);
    ck_assert_uint_eq(n.deps, 1);
    ck_assert_uint_eq(n.held + n.capped, 0);
    sched_park(s, a, SCHED_PARK_CAPPED);
    sched_park(s, b, SCHED_PARK_CAPPED);
    sched_park(s, b, SCHED_PARK_HELD);   /* held wins over capped */
    n = sched_parked(s);
    ck_assert_uint_eq(n.held, 1);
    ck_assert_uint_eq(n.capped, 1);
    sched_unpark(s, b, SCHED_PARK_HELD);   /* still capped */
    sched_unpark(s, a, SCHED_PARK_CAPPED);  /* queued again */
    n = sched_parked(s);
    ck_assert_uint_eq(n.held, 0);
    ck_assert_uint_eq(n.capped, 1);
    ck_assert_ptr_eq(sched_pop(s, 0, NULL, NULL, true), a);
    sched_remove(s, 2);   /* a parked task that ends is no longer counted */
    sched_remove(s, 3);
    n = sched_parked(s);
    ck_assert_uint_eq(n.held + n.deps + n.capped, 0);
    sched_destroy(&s);
}
END_TEST

/* The rejoin window's and the requeue commit's waits (tasks.c) park a
   task like any other reason: it is never popped, counted apart (after
   the user's hold, the dependencies and the job's limit), and a task
   taken back while in a retry backoff keeps that backoff once its
   commit lets it out. */
START_TEST(tasks_waiting_for_the_rejoin_window_or_their_commit_are_never_popped)
{
    sched_t *s = sched_new();
    sched_task_t *found = sched_add(s, &(sched_new_task_t){.id = 1, .job = 1}, 0);
    sched_task_t *back = sched_add(s, &(sched_new_task_t){.id = 2, .job = 1}, 0);
    sched_add(s, &(sched_new_task_t){.id = 3, .job = 1}, 0);
    sched_park(s, found, SCHED_PARK_REJOIN);
    ck_assert_ptr_eq(sched_pop(s, 0, NULL, NULL, true), back);
    sched_requeue(s, back, 100);   /* a retry, backoff until 100 */
    sched_park(s, back, SCHED_PARK_COMMIT);
    sched_parked_t n = sched_parked(s);
    ck_assert_uint_eq(n.rejoin, 1);
    ck_assert_uint_eq(n.commit, 1);
    ck_assert_uint_eq(n.held + n.deps + n.capped, 0);
    sched_park(s, back, SCHED_PARK_HELD);   /* held wins */
    ck_assert_uint_eq(sched_parked(s).commit, 0);
    ck_assert_uint_eq(sched_parked(s).held, 1);
    sched_unpark(s, back, SCHED_PARK_HELD);
    /* Only the task that waits for nothing goes, whatever the time. */
    sched_task_t *t = sched_pop(s, 1000, NULL, NULL, true);
    ck_assert_int_eq(t->id, 3);
    ck_assert_ptr_null(sched_pop(s, 1000, NULL, NULL, true));
    ck_assert(sched_unpark(s, back, SCHED_PARK_COMMIT));
    ck_assert_ptr_null(sched_pop(s, 50, NULL, NULL, true));   /* its backoff */
    ck_assert_ptr_eq(sched_pop(s, 100, NULL, NULL, true), back);
    ck_assert(sched_unpark(s, found, SCHED_PARK_REJOIN));
    ck_assert_ptr_eq(sched_pop(s, 100, NULL, NULL, true), found);
    n = sched_parked(s);
    ck_assert_uint_eq(n.rejoin + n.commit, 0);
    sched_destroy(&s);
}
END_TEST

/* After a master restart a task loaded queued and held (its job was held
   after its dispatch, which was never written) is claimed by the worker
   that runs it: it runs, and is not counted held or queued any more (the
   metrics took it out of the queued ones twice, and said it was held). */
START_TEST(a_held_task_claimed_by_its_worker_is_no_longer_counted_parked)
{
    sched_t *s = sched_new();
    sched_task_t *t = sched_add(s, &(sched_new_task_t){.id = 1, .job = 1}, 0);
    sched_park(s, t, SCHED_PARK_HELD);
    ck_assert_uint_eq(sched_parked(s).held, 1);
    sched_claim(s, t);
    ck_assert_int_eq(t->state, PROTO_ST_ASSIGNED);
    sched_parked_t n = sched_parked(s);
    ck_assert_uint_eq(n.held + n.deps + n.capped, 0);
    ck_assert_int_eq(t->parked, 0);
    /* Taken back (its worker lost), it is queued like a popped task. */
    sched_requeue(s, t, 0);
    ck_assert_ptr_eq(sched_pop(s, 0, NULL, NULL, true), t);
    sched_remove(s, 1);
    n = sched_parked(s);
    ck_assert_uint_eq(n.held + n.deps + n.capped, 0);
    sched_destroy(&s);
}
END_TEST

START_TEST(counts_retry_waits_and_finds_the_oldest_head_without_a_pass_over_all)
{
    sched_t *s = sched_new();
    sched_task_t *a = sched_add(s, &(sched_new_task_t){.id = 1, .job = 1}, 0);
    sched_task_t *b = sched_add(s, &(sched_new_task_t){.id = 2, .job = 1}, 0);
    sched_task_t *c = sched_add(s, &(sched_new_task_t){.id = 3, .job = 1, .cls = sched_class(s, "exec")}, 0);
    a->ready_ms = 100;
    b->ready_ms = 50;    /* behind a in its queue (FIFO by id): not a head */
    c->ready_ms = 70;
    ck_assert_int_eq(sched_head_ready_ms(s), 70);
    sched_task_t *t = sched_pop(s, 0, NULL, NULL, true);
    ck_assert_int_eq(t->id, 1);
    sched_requeue(s, t, 5000);   /* a retry backoff until 5000 */
    ck_assert_uint_eq(sched_retry_waiting(s, 1000), 1);
    ck_assert_uint_eq(sched_retry_waiting(s, 5000), 0);   /* due: no longer waiting */
    ck_assert_int_eq(sched_head_ready_ms(s), 50);
    sched_remove(s, 1);          /* its delayed entry goes stale */
    ck_assert_uint_eq(sched_retry_waiting(s, 1000), 0);
    sched_remove(s, 2);
    sched_remove(s, 3);
    ck_assert_int_eq(sched_head_ready_ms(s), -1);
    sched_destroy(&s);
}
END_TEST

/* The ids a walk yields, in order, into ids (at most max); the count. */
static int s_walk_ids(sched_t *s, int64_t *ids, int max)
{
    sched_walk_t *w = sched_walk_new(s, SIZE_MAX);
    int n = 0;
    const sched_task_t *t;
    while ((t = sched_walk_next(w)))
        if (n < max)
            ids[n++] = t->id;
        else
            n++;
    sched_walk_destroy(&w);
    ck_assert_ptr_null(w);
    return n;
}

START_TEST(a_walk_lists_ready_parked_and_delayed_tasks_in_run_order)
{
    sched_t *s = sched_new();
    int exec = sched_class(s, "exec");
    sched_add(s, &(sched_new_task_t){.id = 1, .job = 1}, 0);
    sched_task_t *held = sched_add(s, &(sched_new_task_t){.id = 2, .job = 1, .priority = 3}, 0);
    sched_park(s, held, SCHED_PARK_HELD);
    sched_add(s, &(sched_new_task_t){.id = 3, .job = 2, .cls = exec, .priority = 3}, 0);
    sched_add(s, &(sched_new_task_t){.id = 4, .job = 2, .held = true}, 0);   /* deps */
    sched_task_t *retry = sched_add(s, &(sched_new_task_t){.id = 5, .job = 2, .priority = 7}, 0);
    ck_assert_ptr_eq(sched_pop(s, 0, NULL, NULL, true), retry);
    sched_requeue(s, retry, 9000);   /* a backoff: listed at its priority */
    sched_add(s, &(sched_new_task_t){.id = 6, .job = 3, .priority = -2}, 0);
    sched_task_t *gone = sched_add(s, &(sched_new_task_t){.id = 7, .job = 3}, 0);
    sched_task_t *running = sched_add(s, &(sched_new_task_t){.id = 8, .job = 3, .priority = 9}, 0);
    ck_assert_ptr_eq(sched_pop(s, 0, NULL, NULL, true), running);   /* on a worker: not listed */
    sched_remove(s, gone->id);

    int64_t ids[16], want[] = {5, 2, 3, 1, 4, 6};
    ck_assert_int_eq(s_walk_ids(s, ids, 16), 6);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(ids[i], want[i]);

    /* A new priority moves a parked task in the walk as in the queue. */
    sched_set_priority(s, held, -5);
    int64_t want2[] = {5, 3, 1, 4, 6, 2};
    ck_assert_int_eq(s_walk_ids(s, ids, 16), 6);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(ids[i], want2[i]);
    /* Released, due: still once each. */
    sched_unpark(s, held, SCHED_PARK_HELD);
    ck_assert_ptr_eq(sched_pop(s, 9000, NULL, NULL, true), retry);
    int64_t want3[] = {3, 1, 4, 6, 2};
    ck_assert_int_eq(s_walk_ids(s, ids, 16), 5);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(ids[i], want3[i]);
    sched_destroy(&s);
}
END_TEST

START_TEST(a_walk_finds_the_first_tasks_without_a_pass_over_all)
{
    sched_t *s = sched_new();
    /* 200,000 held and 100,000 ready, one priority: the first ten come
       after looking at about ten entries, not 300,000 (30,000 under
       valgrind: zt_loops). */
    const int64_t n = zt_loops(300000);
    for (int64_t i = 1; i <= n; i++) {
        sched_task_t *t = sched_add(s, &(sched_new_task_t){.id = i, .job = 1}, 0);
        if (i % 3)
            sched_park(s, t, SCHED_PARK_HELD);
    }
    sched_walk_t *w = sched_walk_new(s, SIZE_MAX);
    for (int64_t i = 1; i <= 10; i++)
        ck_assert_int_eq(sched_walk_next(w)->id, i);
    ck_assert_uint_le(sched_walk_visited(w), 20);
    sched_walk_destroy(&w);
    sched_destroy(&s);
}
END_TEST

/* The waiting heap is never popped: a job held, released and started
   leaves its entries there, stale. A walk must not wade through them to
   reach the tasks that still wait (they came first in run order: the
   listing stopped at its bound with nothing listed, and one
   sched_walk_next read them all). */
START_TEST(a_walk_does_not_wade_through_what_a_released_job_left_behind)
{
    sched_t *s = sched_new();
    enum { N = 20000 };
    for (int64_t i = 1; i <= N; i++)
        sched_add(s, &(sched_new_task_t){.id = i, .job = 1, .priority = 5}, 0);
    for (int64_t i = 1; i <= N; i++)
        sched_park(s, sched_get(s, i), SCHED_PARK_HELD);
    for (int64_t i = 1; i <= N; i++)
        sched_unpark(s, sched_get(s, i), SCHED_PARK_HELD);
    for (int64_t i = 1; i <= N; i++)
        ck_assert_ptr_nonnull(sched_pop(s, 0, NULL, NULL, true));   /* on workers */
    sched_task_t *held = sched_add(s, &(sched_new_task_t){.id = N + 1, .job = 2}, 0);
    sched_park(s, held, SCHED_PARK_HELD);
    sched_walk_t *w = sched_walk_new(s, SIZE_MAX);
    ck_assert_ptr_eq(sched_walk_next(w), held);
    ck_assert_msg(sched_walk_visited(w) <= 10, "looked at %zu entries for the one task waiting",
                  sched_walk_visited(w));
    ck_assert_ptr_null(sched_walk_next(w));
    sched_walk_destroy(&w);
    sched_destroy(&s);
}
END_TEST

/* Nor are they kept once the tasks that left them have ended: a master
   that ran a big held job held its entries (24 bytes each) until enough
   new pushes came to sweep them. */
START_TEST(a_released_job_that_ended_leaves_no_entries_behind)
{
    sched_t *s = sched_new();
    enum { N = 20000 };
    for (int64_t i = 1; i <= N; i++)
        sched_park(s, sched_add(s, &(sched_new_task_t){.id = i, .job = 1}, 0), SCHED_PARK_HELD);
    for (int64_t i = 1; i <= N; i++)
        sched_unpark(s, sched_get(s, i), SCHED_PARK_HELD);
    for (int64_t i = 1; i <= N; i++) {
        sched_task_t *t = sched_pop(s, 0, NULL, NULL, true);
        ck_assert_ptr_nonnull(t);
        sched_remove(s, t->id);
    }
    ck_assert_int_eq(sched_size(s), 0);
    ck_assert_msg(sched_entries(s) <= 4096, "%zu heap entries left for no task",
                  sched_entries(s));
    sched_destroy(&s);
}
END_TEST

/* A walk's bound counts the stale entries it reads: a run of them ahead
   of the live ones (a priority changed back and forth where no worker
   pops) is not read in one call past it. */
START_TEST(a_walk_stops_at_its_bound_even_among_stale_entries)
{
    sched_t *s = sched_new();
    for (int64_t i = 1; i <= 1000; i++)
        sched_add(s, &(sched_new_task_t){.id = i, .job = 1}, 0);
    for (int64_t i = 1; i <= 1000; i++)
        sched_set_priority(s, sched_get(s, i), 1);
    for (int64_t i = 1; i <= 1000; i++)
        sched_set_priority(s, sched_get(s, i), 0);
    sched_walk_t *w = sched_walk_new(s, 100);
    ck_assert_ptr_null(sched_walk_next(w));
    ck_assert_uint_eq(sched_walk_visited(w), 100);
    ck_assert(sched_walk_cut(w));
    sched_walk_destroy(&w);
    /* Unbounded, it gets there; at the end it was not cut. */
    int64_t ids[1];
    ck_assert_int_eq(s_walk_ids(s, ids, 1), 1000);
    ck_assert_int_eq(ids[0], 1);
    w = sched_walk_new(s, SIZE_MAX);
    while (sched_walk_next(w))
        ;
    ck_assert(!sched_walk_cut(w));
    sched_walk_destroy(&w);
    sched_destroy(&s);
}
END_TEST

/* Whether a (priority desc, id asc) comes before b: run order. */
static int s_cmp_run_order(const void *a, const void *b)
{
    const sched_task_t *x = *(sched_task_t *const *) a, *y = *(sched_task_t *const *) b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static uint64_t s_rng = 0x2545f4914f6cdd1dull;

static unsigned s_rand(unsigned n)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (unsigned) (s_rng % n);
}

/* Every way a task moves, at random, on a few thousand tasks for many
   rounds: hold and release (a task's, its job's limit, its
   dependencies), a new priority, a pop and a requeue with or without a
   backoff (a retry, a lost worker), a claim, a backoff's end, a cancel
   and a new task in its place. After each round the heaps hold a
   bounded number of entries (lazy deletion does not grow with the
   steering) and a walk yields every queued task once, in run order. */
START_TEST(lazy_deletion_stays_bounded_and_a_walk_exact_under_any_steering)
{
    sched_t *s = sched_new();
    int gpu = sched_class(s, "exec:gpu");
    enum { N = 3000, ROUNDS = 40 };
    const unsigned reasons[] = {SCHED_PARK_HELD, SCHED_PARK_CAPPED, SCHED_PARK_DEPS};
    int64_t next_id = 1, now = 0;
    for (int i = 0; i < N; i++, next_id++)
        sched_add(s, &(sched_new_task_t){.id = next_id, .job = next_id % 7,
                                         .cls = next_id % 3 ? 0 : gpu},
                  0);
    sched_task_t **queued = malloc(sizeof *queued * (N + 1));
    int64_t *walked = malloc(sizeof *walked * (N + 1));
    for (int round = 0; round < ROUNDS; round++) {
        for (int op = 0; op < N; op++) {
            int64_t id = next_id - N + (int64_t) s_rand(N);
            sched_task_t *t = sched_get(s, id);
            if (!t)
                continue;
            unsigned reason = reasons[s_rand(3)];
            switch (s_rand(9)) {
            case 0:
            case 1:
                if (t->state == PROTO_ST_QUEUED || (t->state == PROTO_ST_ASSIGNED && !t->worker))
                    sched_park(s, t, reason);
                break;
            case 2: sched_unpark(s, t, reason); break;
            case 3:
            case 4: sched_set_priority(s, t, (int32_t) s_rand(5) - 2); break;
            case 5: {
                sched_task_t *p = sched_pop(s, now, NULL, NULL, true);
                if (p) {
                    p->crashes = (uint8_t) s_rand(2);   /* a lost worker's: a suspect */
                    sched_requeue(s, p, s_rand(2) ? now + 1 + s_rand(50) : 0);
                }
                break;
            }
            case 6:
                if (t->state == PROTO_ST_QUEUED)
                    sched_claim(s, t);
                else
                    sched_requeue(s, t, 0);
                break;
            case 7: now += 10; break;
            case 8:   /* cancelled, finished or forgotten; a new task comes */
                sched_remove(s, id);
                sched_add(s, &(sched_new_task_t){.id = next_id, .job = next_id % 7,
                                                 .held = s_rand(4) == 0},
                          0);
                next_id++;
                break;
            }
        }
        size_t entries = sched_entries(s);
        ck_assert_msg(entries <= 6 * N + 3 * 4096, "round %d: %zu heap entries for %d tasks",
                      round, entries, N);

        int nq = 0;
        size_t pos = 0;
        sched_task_t *t;
        while ((t = sched_next(s, &pos)))
            if (t->state == PROTO_ST_QUEUED)
                queued[nq++] = t;
        qsort(queued, (size_t) nq, sizeof *queued, s_cmp_run_order);
        ck_assert_int_eq(s_walk_ids(s, walked, N + 1), nq);
        for (int i = 0; i < nq; i++)
            ck_assert_msg(walked[i] == queued[i]->id, "round %d: walk's %d-th is %lld, want %lld",
                          round, i, (long long) walked[i], (long long) queued[i]->id);
    }
    /* Everything ends: the waiting heap keeps nothing. */
    int64_t *ids = malloc(sizeof *ids * sched_size(s));
    size_t n = 0, pos = 0;
    sched_task_t *t;
    while ((t = sched_next(s, &pos)))
        ids[n++] = t->id;
    for (size_t i = 0; i < n; i++)
        sched_remove(s, ids[i]);
    free(ids);
    ck_assert_int_eq(sched_size(s), 0);
    sched_walk_t *w = sched_walk_new(s, SIZE_MAX);
    ck_assert_ptr_null(sched_walk_next(w));
    sched_walk_destroy(&w);
    free(walked);
    free(queued);
    sched_destroy(&s);
}
END_TEST

int main(void)
{
    /* 60 s: the big-queue cases take seconds under TSan on a loaded machine. */
    return zt_run(&(zt_suite_t){ .suite = "sched", .tcase = "sched", .timeout_s = 60 });
}
