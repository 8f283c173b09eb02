/* idem: the submit keys the master remembers. A key is its owner's; an
   entry is pending until its commit; expired committed keys are pruned;
   what the store holds comes back at start-up, minus the expired. */
#include "../../master/idem.h"
#include "../../master/store.h"

#include "../ztest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

START_TEST(a_key_is_found_again_by_its_owner_only)
{
    idem_t *k = idem_new();
    idem_put(k, "ANA", "k1.0", &(idem_entry_t){.job = 7, .accepted = 100}, 1000.0);
    idem_entry_t *e = idem_get(k, "ANA", "k1.0");
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->job, 7);
    ck_assert_int_eq(e->accepted, 100);
    ck_assert(!e->committed);
    ck_assert_ptr_null(idem_get(k, "BOB", "k1.0"));
    ck_assert_ptr_null(idem_get(k, "ANA", "k1.1"));
    /* Owner and key are not one string: "AN"+"Ak1.0" is another pair. */
    ck_assert_ptr_null(idem_get(k, "AN", "Ak1.0"));
    ck_assert_ptr_null(idem_get(k, "", "k1.0"));
    idem_destroy(&k);
    ck_assert_ptr_null(k);
    idem_destroy(&k);
}
END_TEST

START_TEST(a_removed_key_is_gone_and_the_others_stay)
{
    idem_t *k = idem_new();
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "key.%d", i);
        idem_put(k, "", key, &(idem_entry_t){.job = i}, 1000.0 + i);
    }
    for (int i = 0; i < 1000; i += 2) {
        snprintf(key, sizeof key, "key.%d", i);
        idem_remove(k, "", key);
    }
    idem_remove(k, "", "never");
    ck_assert_uint_eq(idem_size(k), 500);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "key.%d", i);
        idem_entry_t *e = idem_get(k, "", key);
        if (i % 2)
            ck_assert(e && e->job == i);
        else
            ck_assert_ptr_null(e);
    }
    idem_destroy(&k);
}
END_TEST

START_TEST(prune_drops_old_committed_keys_and_keeps_pending_ones)
{
    idem_t *k = idem_new();
    idem_put(k, "", "old", &(idem_entry_t){.job = 1, .committed = true}, 100.0);
    idem_put(k, "", "old-pending", &(idem_entry_t){.job = 2}, 101.0);
    idem_put(k, "", "new", &(idem_entry_t){.job = 3, .committed = true}, 500.0);
    ck_assert_uint_eq(idem_prune(k, 200.0), 1);
    ck_assert_ptr_null(idem_get(k, "", "old"));
    ck_assert_ptr_nonnull(idem_get(k, "", "old-pending"));
    ck_assert_ptr_nonnull(idem_get(k, "", "new"));
    ck_assert_uint_eq(idem_size(k), 2);
    idem_destroy(&k);
}
END_TEST

START_TEST(past_the_cap_the_oldest_committed_keys_go_first)
{
    idem_t *k = idem_new();
    idem_put(k, "", "pending", &(idem_entry_t){.job = 1}, 10.0);
    char key[16];
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "k%d", i);
        idem_put(k, "", key, &(idem_entry_t){.job = 2 + i, .committed = true}, 20.0 + i);
    }
    ck_assert(idem_trim(k, 3) == 22.0);
    ck_assert_uint_eq(idem_size(k), 3);
    ck_assert_ptr_nonnull(idem_get(k, "", "pending"));
    ck_assert_ptr_null(idem_get(k, "", "k2"));
    ck_assert_ptr_nonnull(idem_get(k, "", "k3"));
    ck_assert(idem_trim(k, 3) == 0);
    idem_destroy(&k);
}
END_TEST

START_TEST(keys_in_the_store_come_back_unless_expired)
{
    char dir[] = "/tmp/ztask-idem-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char db[64];
    snprintf(db, sizeof db, "%s/m.db", dir);
    char err[512];
    store_t *st = store_new(db, STORE_SYNC_OFF, err, sizeof err);
    ck_assert_msg(st != NULL, "%s", err);
    double now = 1e9;
    ck_assert_int_eq(store_submit_key_add(st, &(store_key_row_t){.owner = "ANA", .key = "a.0",
                                                                  .job = 4, .accepted = 10,
                                                                  .created = now - 10}),
                     0);
    ck_assert_int_eq(store_submit_key_add(st, &(store_key_row_t){.owner = "", .key = "b.0",
                                                                  .job = 5, .accepted = 1,
                                                                  .created = now - IDEM_TTL_S
                                                                             - 1}),
                     0);
    /* The same owner and key again replaces the row. */
    ck_assert_int_eq(store_submit_key_add(st, &(store_key_row_t){.owner = "ANA", .key = "a.0",
                                                                  .job = 4, .accepted = 11,
                                                                  .created = now - 5}),
                     0);
    ck_assert_int_eq(store_commit(st), 0);
    idem_t *k = idem_new();
    ck_assert_int_eq(idem_load(k, st, now), 0);
    ck_assert_uint_eq(idem_size(k), 1);
    idem_entry_t *e = idem_get(k, "ANA", "a.0");
    ck_assert(e && e->committed && e->job == 4 && e->accepted == 11);
    idem_destroy(&k);
    /* A prune deletes the rows as well. */
    ck_assert_int_eq(store_submit_keys_prune(st, now), 0);
    ck_assert_int_eq(store_commit(st), 0);
    k = idem_new();
    ck_assert_int_eq(idem_load(k, st, now), 0);
    ck_assert_uint_eq(idem_size(k), 0);
    idem_destroy(&k);
    store_destroy(&st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "idem", .tcase = "idem", .timeout_s = 60 });
}
