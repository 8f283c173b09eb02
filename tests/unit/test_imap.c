/* imap: the master's int64 -> pointer map. Open addressing with linear
   probing and backward-shift deletion: removing a key from the middle of a
   run of colliding keys moves the later ones back, and every other key must
   still be found. The slots are not visible, but iteration walks them in
   order, so a test learns where a key sits from imap_next's position. */
#include "../../common/imap.h"

#include "../ztest.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* A distinct non-NULL value per key, so a lookup that finds the wrong
   slot is caught, not just a missing one. */
static void *s_val(int64_t key)
{
    return (void *) (uintptr_t) (0x1000 + (uint64_t) key * 16);
}

/* The slot key sits in (its position in iteration order), or -1. */
static long s_slot(const imap_t *m, int64_t key)
{
    size_t pos = 0;
    int64_t k;
    while (imap_next(m, &pos, &k))
        if (k == key)
            return (long) pos - 1;
    return -1;
}

/* The number of slots: iteration ends with the position at the capacity. */
static size_t s_capacity(const imap_t *m)
{
    size_t pos = 0;
    while (imap_next(m, &pos, NULL))
        ;
    return pos;
}

/* The home slot of key in an empty map of the starting capacity. */
static long s_home(int64_t key)
{
    imap_t *m = imap_new();
    imap_put(m, key, s_val(key));
    long slot = s_slot(m, key);
    imap_destroy(&m);
    return slot;
}

/* n keys (from 1 up) whose home slot in a fresh map is home. */
static void s_colliding(long home, int64_t *keys, int n)
{
    int found = 0;
    for (int64_t k = 1; found < n && k < 1000000; k++)
        if (s_home(k) == home)
            keys[found++] = k;
    ck_assert_int_eq(found, n);
}

START_TEST(a_map_stores_replaces_and_removes_values_by_key)
{
    imap_t *m = imap_new();
    ck_assert_uint_eq(imap_size(m), 0);
    ck_assert_ptr_null(imap_get(m, 42));

    imap_put(m, 42, s_val(42));
    imap_put(m, -7, s_val(-7));
    imap_put(m, INT64_MAX, s_val(INT64_MAX));
    ck_assert_uint_eq(imap_size(m), 3);
    ck_assert_ptr_eq(imap_get(m, 42), s_val(42));
    ck_assert_ptr_eq(imap_get(m, -7), s_val(-7));
    ck_assert_ptr_eq(imap_get(m, INT64_MAX), s_val(INT64_MAX));

    imap_put(m, 42, s_val(43));   /* replaces: the size stays */
    ck_assert_uint_eq(imap_size(m), 3);
    ck_assert_ptr_eq(imap_get(m, 42), s_val(43));

    ck_assert_ptr_eq(imap_remove(m, 42), s_val(43));
    ck_assert_ptr_null(imap_remove(m, 42));
    ck_assert_ptr_null(imap_get(m, 42));
    ck_assert_uint_eq(imap_size(m), 2);

    imap_destroy(&m);
    ck_assert_ptr_null(m);
    imap_destroy(&m);
}
END_TEST

/* Five keys with one home slot fill five slots in a row; removing the
   third moves the fourth and fifth back one slot each, and all four are
   still found (a plain "mark empty" would cut the run in two and lose the
   last two). The second round starts two slots before the end, so the run
   wraps around to slot 0. */
START_TEST(removing_from_the_middle_of_a_run_keeps_every_other_key_reachable)
{
    size_t cap = 0;
    {
        imap_t *m = imap_new();
        cap = s_capacity(m);
        imap_destroy(&m);
    }
    ck_assert_uint_ge(cap, 8);
    long homes[2] = { 5, (long) cap - 2 };
    for (int round = 0; round < 2; round++) {
        long home = homes[round];
        int64_t keys[5];
        s_colliding(home, keys, 5);
        imap_t *m = imap_new();
        for (int i = 0; i < 5; i++)
            imap_put(m, keys[i], s_val(keys[i]));
        for (int i = 0; i < 5; i++)
            ck_assert_int_eq(s_slot(m, keys[i]), (home + i) % (long) cap);

        ck_assert_ptr_eq(imap_remove(m, keys[2]), s_val(keys[2]));
        ck_assert_ptr_null(imap_get(m, keys[2]));
        ck_assert_uint_eq(imap_size(m), 4);
        int64_t rest[4] = { keys[0], keys[1], keys[3], keys[4] };
        for (int i = 0; i < 4; i++) {
            ck_assert_msg(imap_get(m, rest[i]) == s_val(rest[i]),
                          "round %d: key %lld lost after the middle of its run was removed", round,
                          (long long) rest[i]);
            ck_assert_int_eq(s_slot(m, rest[i]), (home + i) % (long) cap);
        }

        /* The head of the run goes too: the rest shift again. */
        ck_assert_ptr_eq(imap_remove(m, keys[0]), s_val(keys[0]));
        for (int i = 1; i < 4; i++) {
            ck_assert_ptr_eq(imap_get(m, rest[i]), s_val(rest[i]));
            ck_assert_int_eq(s_slot(m, rest[i]), (home + i - 1) % (long) cap);
        }
        imap_destroy(&m);
    }
}
END_TEST

/* A key that sits in a run it does not belong to (its home is later)
   must not be moved before its home by a removal. */
START_TEST(a_removal_never_moves_a_key_before_its_home_slot)
{
    int64_t a[3], b[2];
    s_colliding(10, a, 3);   /* slots 10, 11, 12 */
    s_colliding(11, b, 2);   /* homes 11: pushed to 13, 14 */
    imap_t *m = imap_new();
    for (int i = 0; i < 3; i++)
        imap_put(m, a[i], s_val(a[i]));
    for (int i = 0; i < 2; i++)
        imap_put(m, b[i], s_val(b[i]));
    ck_assert_int_eq(s_slot(m, b[0]), 13);
    ck_assert_int_eq(s_slot(m, b[1]), 14);

    imap_remove(m, a[0]);   /* hole at 10: a[1] (home 10) moves in, b[0] may not */
    ck_assert_int_eq(s_slot(m, a[1]), 10);
    ck_assert_int_eq(s_slot(m, a[2]), 11);
    ck_assert_int_eq(s_slot(m, b[0]), 12);
    ck_assert_int_eq(s_slot(m, b[1]), 13);
    imap_remove(m, a[1]);
    imap_remove(m, a[2]);
    ck_assert_int_eq(s_slot(m, b[0]), 11);   /* its home, not 10 */
    ck_assert_int_eq(s_slot(m, b[1]), 12);
    for (int i = 0; i < 2; i++)
        ck_assert_ptr_eq(imap_get(m, b[i]), s_val(b[i]));
    imap_destroy(&m);
}
END_TEST

/* Random puts and removes against a plain array of what should be there:
   after each step every present key is found with its value, every absent
   one is not, and the size agrees. Small key space, so runs collide and
   removals land in the middle of them all the time. */
START_TEST(random_puts_and_removes_agree_with_a_model)
{
    enum { KEYS = 300, STEPS = 20000 };
    static bool present[KEYS];
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    imap_t *m = imap_new();
    size_t size = 0;
    for (int step = 0; step < STEPS; step++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        int idx = (int) (rng % KEYS);
        int64_t key = (int64_t) idx * 1000003 - 150000000;   /* negatives too */
        if ((rng >> 40) % 3 == 0) {
            void *got = imap_remove(m, key);
            ck_assert_ptr_eq(got, present[idx] ? s_val(key) : NULL);
            if (present[idx])
                size--;
            present[idx] = false;
        } else {
            imap_put(m, key, s_val(key));
            if (!present[idx])
                size++;
            present[idx] = true;
        }
        ck_assert_uint_eq(imap_size(m), size);
        if (step % 97 == 0 || step == STEPS - 1)
            for (int i = 0; i < KEYS; i++) {
                int64_t k = (int64_t) i * 1000003 - 150000000;
                ck_assert_msg(imap_get(m, k) == (present[i] ? s_val(k) : NULL),
                              "step %d: key %lld %s", step, (long long) k,
                              present[i] ? "lost" : "still found after removal");
            }
    }
    imap_destroy(&m);
}
END_TEST

/* Past 70% full the map doubles; a big map that drains under 1/8 halves
   again. Every key survives both. */
START_TEST(the_map_grows_and_shrinks_without_losing_a_key)
{
    enum { N = 100000 };
    imap_t *m = imap_new();
    size_t cap0 = s_capacity(m);
    for (int64_t k = 0; k < N; k++)
        imap_put(m, k * 7919, s_val(k));
    ck_assert_uint_eq(imap_size(m), N);
    size_t big = s_capacity(m);
    ck_assert_uint_gt(big, cap0);
    ck_assert_uint_ge(big * 7, (size_t) N * 10);   /* load stays under 0.7 */
    for (int64_t k = 0; k < N; k++)
        ck_assert_ptr_eq(imap_get(m, k * 7919), s_val(k));

    for (int64_t k = 0; k < N; k++)
        if (k % 100 != 0)
            ck_assert_ptr_eq(imap_remove(m, k * 7919), s_val(k));
    ck_assert_uint_eq(imap_size(m), N / 100);
    ck_assert_uint_lt(s_capacity(m), big);
    for (int64_t k = 0; k < N; k++)
        ck_assert_ptr_eq(imap_get(m, k * 7919), k % 100 == 0 ? s_val(k) : NULL);
    imap_destroy(&m);
}
END_TEST

START_TEST(iteration_visits_every_entry_once)
{
    enum { N = 1000 };
    imap_t *m = imap_new();
    size_t pos = 0;
    ck_assert_ptr_null(imap_next(m, &pos, NULL));
    for (int64_t k = 1; k <= N; k++)
        imap_put(m, k, s_val(k));
    static int seen[N + 1];
    size_t count = 0;
    int64_t key = 0;
    void *v;
    pos = 0;
    while ((v = imap_next(m, &pos, &key)) != NULL) {
        ck_assert(key >= 1 && key <= N);
        ck_assert_ptr_eq(v, s_val(key));
        seen[key]++;
        count++;
    }
    ck_assert_uint_eq(count, N);
    for (int k = 1; k <= N; k++)
        ck_assert_int_eq(seen[k], 1);
    imap_destroy(&m);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "imap", .tcase = "imap", .timeout_s = 60 });
}
