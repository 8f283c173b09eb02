/* sched: priorities first, FIFO within a priority, retry backoff on an
   injected clock, lazy removal. */
#include "../../master/sched.h"

#include "../ztest.h"
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
static int s_walk_ids(const sched_t *s, int64_t *ids, int max)
{
    sched_walk_t *w = sched_walk_new(s);
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
       after looking at about ten entries, not 300,000. */
    for (int64_t i = 1; i <= 300000; i++) {
        sched_task_t *t = sched_add(s, &(sched_new_task_t){.id = i, .job = 1}, 0);
        if (i % 3)
            sched_park(s, t, SCHED_PARK_HELD);
    }
    sched_walk_t *w = sched_walk_new(s);
    for (int64_t i = 1; i <= 10; i++)
        ck_assert_int_eq(sched_walk_next(w)->id, i);
    ck_assert_uint_le(sched_walk_visited(w), 20);
    sched_walk_destroy(&w);
    sched_destroy(&s);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "sched", .tcase = "sched" });
}
