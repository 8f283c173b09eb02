/* resources (master/resources.c) and resset (common/resset.c): what a
   worker declares, what a task asks, what fits, which GPU devices a task
   gets. The random walk at the end takes and releases thousands of tasks
   and checks after every step that no pool is over what it declared and
   that no whole GPU is shared. */
#include "../../common/resset.h"
#include "../../master/resources.h"

#include "../ztest.h"
#include <stdlib.h>
#include <string.h>

static res_set_t s_set(const char *text)
{
    res_set_t s;
    char err[200] = "";
    ck_assert_msg(res_parse(text, &s, err, sizeof err) == 0, "%s: %s", text, err);
    return s;
}

static void s_pool(res_pool_t *p, const char *cap, int ngpus, int threads)
{
    res_set_t c = s_set(cap);
    static const char *const ids[] = {"0", "1", "2", "3", "4", "5", "6", "7"};
    char err[200] = "";
    ck_assert_msg(res_pool_init(p, &c, ids, ngpus, threads, err, sizeof err) == 0, "%s", err);
}

START_TEST(a_worker_with_4_cpus_holds_two_2_cpu_tasks_and_no_third)
{
    res_pool_t p;
    s_pool(&p, "cpus=4,mem=8G", 0, 8);
    res_set_t two = s_set("cpus=2,mem=1G");
    ck_assert(res_fits(&p, &two));
    res_take(&p, &two, NULL);
    res_take(&p, &two, NULL);
    ck_assert(!res_fits(&p, &two));
    ck_assert(!res_fits(&p, NULL));   /* not even a plain task: no CPU left */
    ck_assert(res_could_fit(&p, &two));
    res_release(&p, &two, NULL);
    ck_assert(res_fits(&p, &two));
    ck_assert_int_eq(res_in_use(&p, 0), 2);
}
END_TEST

START_TEST(sets_parse_and_print_in_one_canonical_form)
{
    res_set_t s = s_set("mem=1K,gpus=0.5,cpus=3,licence=2");
    char buf[200];
    res_format(&s, buf, sizeof buf);
    ck_assert_str_eq(buf, "cpus=3,gpus=0.5,licence=2,mem=1024");
    res_set_t back = s_set(buf);
    ck_assert_int_eq(memcmp(&s, &back, sizeof s), 0);
    ck_assert_int_eq(res_get(&s, "gpus"), 500);
    ck_assert_int_eq(res_get(&s, "disk"), 0);
    s = s_set("gpus=2");
    ck_assert_int_eq(res_get(&s, "gpus"), 2000);
    s = s_set("");
    ck_assert_int_eq(s.n, 0);
    static const char *const bad[] = {
        "cpus",         "cpus=-1",  "cpus=1.5", "gpus=1.5", "gpus=0.0001", "gpus=.5",
        "mem=lots",     "9x=1",     "a b=1",    "cpus=1,cpus=2",
        "a=1,b=1,c=1,d=1,e=1,f=1,g=1,h=1,i=1,j=1,k=1,l=1,m=1,n=1,o=1,p=1,q=1",
        "averyveryveryverylongresourcename=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[200] = "";
        ck_assert_msg(res_parse(bad[i], &s, err, sizeof err) != 0, "accepted %s", bad[i]);
        ck_assert_msg(err[0], "no reason for %s", bad[i]);
    }
}
END_TEST

START_TEST(a_task_needs_every_resource_it_names_and_one_cpu_by_default)
{
    res_pool_t p;
    s_pool(&p, "cpus=2,licence=1", 0, 4);
    res_set_t lic = s_set("licence=1");
    res_set_t disk = s_set("disk=1");
    ck_assert(res_fits(&p, &lic));
    ck_assert(!res_could_fit(&p, &disk));   /* this worker has no disk */
    res_take(&p, &lic, NULL);
    ck_assert(!res_fits(&p, &lic));
    ck_assert_int_eq(p.used[0], 1);          /* cpus: its default one */
    res_set_t none = s_set("cpus=0,licence=0");
    ck_assert(res_fits(&p, &none));
}
END_TEST

START_TEST(plain_tasks_count_one_cpu_each_up_to_the_threads)
{
    res_pool_t p;
    s_pool(&p, "cpus=4", 0, 2);
    /* Prefetched plain tasks beyond the threads wait on the worker: they
       use no CPU, so they may be sent. */
    for (int i = 0; i < 10; i++) {
        ck_assert(res_fits(&p, NULL));
        res_take(&p, NULL, NULL);
    }
    ck_assert_int_eq(res_in_use(&p, 0), 2);
    /* But they can fill every thread: no thread is left for a task with
       a request until they drain. */
    res_set_t one = s_set("cpus=1");
    ck_assert(!res_fits(&p, &one));
    for (int i = 0; i < 9; i++)
        res_release(&p, NULL, NULL);
    ck_assert(res_fits(&p, &one));
    res_take(&p, &one, NULL);
    ck_assert(!res_fits(&p, &one));   /* two threads, both taken */
}
END_TEST

START_TEST(whole_gpus_are_handed_out_disjoint_and_shares_packed)
{
    res_pool_t p;
    s_pool(&p, "cpus=16", 4, 16);
    ck_assert_int_eq(res_get(&p.cap, "gpus"), 4000);
    res_set_t two = s_set("gpus=2"), half = s_set("gpus=0.5"), quarter = s_set("gpus=0.25");
    res_grant_t a, b, c, d;
    res_take(&p, &two, &a);
    char buf[64];
    res_grant_format(&p, &a, buf, sizeof buf);
    ck_assert_str_eq(buf, "0,1");
    res_take(&p, &half, &b);
    res_take(&p, &quarter, &c);
    /* The quarter goes onto the half-used device, not a fresh one. */
    ck_assert_int_eq(b.dev[0], c.dev[0]);
    ck_assert_int_eq(b.share, 500);
    /* One whole device left: a 2-GPU task does not fit, a 1-GPU one does. */
    ck_assert(!res_fits(&p, &two));
    res_set_t one = s_set("gpus=1");
    res_take(&p, &one, &d);
    ck_assert(d.dev[0] != a.dev[0] && d.dev[0] != a.dev[1] && d.dev[0] != b.dev[0]);
    ck_assert(!res_fits(&p, &one));
    ck_assert(res_fits(&p, &quarter));
    ck_assert(!res_fits(&p, &half));
    res_release(&p, &two, &a);
    ck_assert(res_fits(&p, &two));
    ck_assert(res_could_fit(&p, &(res_set_t){0}));   /* asks nothing: one CPU */
    res_set_t five = s_set("gpus=5");
    ck_assert(!res_could_fit(&p, &five));
}
END_TEST

/* After a master restart a claimed task says which devices it holds: its
   grant moves there, and a new task gets the others. */
START_TEST(a_claimed_task_keeps_the_devices_its_worker_names)
{
    res_pool_t p;
    s_pool(&p, "cpus=8", 3, 8);
    res_set_t one = s_set("gpus=1"), two = s_set("gpus=2"), half = s_set("gpus=0.5");
    res_grant_t a, b, c, n;
    res_take(&p, &one, &a);   /* picked device 0; it holds 2 */
    ck_assert_int_eq(res_claim_gpus(&p, &one, &a, "2"), 0);
    ck_assert_int_eq(a.n, 1);
    ck_assert_int_eq(a.dev[0], 2);
    res_take(&p, &half, &b);   /* a share: onto a used device, or 0 */
    ck_assert_int_eq(res_claim_gpus(&p, &half, &b, "1"), 0);
    res_take(&p, &one, &n);   /* a new task: the one device nobody holds */
    char buf[64];
    res_grant_format(&p, &n, buf, sizeof buf);
    ck_assert_str_eq(buf, "0");
    res_release(&p, &one, &n);
    /* Not ours, too many, too few, twice the same: refused, grant unchanged. */
    res_take(&p, &two, &c);
    res_grant_t before = c;
    ck_assert_int_eq(res_claim_gpus(&p, &two, &c, "7,0"), -1);
    ck_assert_int_eq(res_claim_gpus(&p, &two, &c, "0,1,2"), -1);
    ck_assert_int_eq(res_claim_gpus(&p, &two, &c, "0"), -1);
    ck_assert_int_eq(res_claim_gpus(&p, &two, &c, "0,0"), -1);
    ck_assert_int_eq(res_claim_gpus(&p, &two, &c, ""), -1);
    ck_assert_int_eq(res_claim_gpus(&p, &one, &c, NULL), -1);
    ck_assert_mem_eq(&before, &c, sizeof c);
    /* Everything given back leaves nothing in use. */
    res_release(&p, &two, &c);
    res_release(&p, &half, &b);
    res_release(&p, &one, &a);
    for (int d = 0; d < 3; d++)
        ck_assert_int_eq(p.gpu_used[d], 0);
}
END_TEST

START_TEST(the_worker_closest_to_fitting_a_big_task_has_the_smallest_shortfall)
{
    res_pool_t near, far;
    s_pool(&near, "cpus=4", 0, 8);
    s_pool(&far, "cpus=4", 0, 8);
    res_set_t one = s_set("cpus=1"), four = s_set("cpus=4");
    res_take(&near, &one, NULL);
    res_take(&far, &one, NULL);
    res_take(&far, &one, NULL);
    res_take(&far, &one, NULL);
    ck_assert(res_shortfall(&near, &four) < res_shortfall(&far, &four));
    ck_assert(res_shortfall(&near, &one) == 0);
    res_release(&near, &one, NULL);
    ck_assert(res_shortfall(&near, &four) == 0);
}
END_TEST

/* Three workers kept full by a stream of 1- and 2-CPU tasks (each step
   one random task ends and small ones refill every gap); a 4-CPU task
   never finds a worker free by chance. Once one worker is reserved for it
   (res_reserve_pick) and takes nothing else, it fits there within as many
   steps as that worker held tasks: the big task is placed. Without the
   reservation the stream keeps it out for the whole run. */
static int s_steps_until_placed(bool reserve, unsigned seed)
{
    enum { W = 3, MAXT = 16 };
    res_pool_t pools[W];
    const res_pool_t *view[W];
    const res_set_t *held[W][MAXT];
    int nheld[W] = {0};
    res_set_t one = s_set("cpus=1"), two = s_set("cpus=2"), big = s_set("cpus=4");
    for (int i = 0; i < W; i++) {
        s_pool(&pools[i], "cpus=4", 0, 8);
        view[i] = &pools[i];
    }
    int reserved = -1;
    for (int step = 0; step < 5000; step++) {
        /* Refill: small tasks wherever they fit, except a reserved worker. */
        for (int i = 0; i < W; i++) {
            if (i == reserved)
                continue;
            for (;;) {
                const res_set_t *r = rand_r(&seed) % 2 ? &one : &two;
                if (!res_fits(&pools[i], r))
                    r = &one;
                if (!res_fits(&pools[i], r) || nheld[i] == MAXT)
                    break;
                res_take(&pools[i], r, NULL);
                held[i][nheld[i]++] = r;
            }
        }
        /* The big one, where it fits. */
        for (int i = 0; i < W; i++)
            if (res_fits(&pools[i], &big)) {
                ck_assert(reserved < 0 || i == reserved || !reserve);
                return step;
            }
        if (reserve && reserved < 0) {
            reserved = res_reserve_pick(view, W, &big);
            ck_assert_int_ge(reserved, 0);
        }
        /* One task ends somewhere. */
        int i = rand_r(&seed) % W;
        if (nheld[i] == 0)
            continue;
        int k = rand_r(&seed) % nheld[i];
        res_release(&pools[i], held[i][k], NULL);
        held[i][k] = held[i][--nheld[i]];
    }
    return -1;
}

START_TEST(a_big_task_is_placed_once_a_worker_is_reserved_for_it)
{
    for (unsigned seed = 1; seed <= 20; seed++) {
        int steps = s_steps_until_placed(true, seed);
        /* Each step ends one task on one of 3 workers; the reserved one
           held at most 4: a few dozen steps, never thousands. */
        ck_assert_msg(steps >= 0 && steps < 200, "seed %u: placed after %d steps", seed, steps);
        ck_assert_int_eq(s_steps_until_placed(false, seed), -1);
    }
}
END_TEST

START_TEST(a_worker_is_reserved_only_when_no_one_fits_and_someone_could)
{
    res_pool_t a, b, small;
    s_pool(&a, "cpus=4", 0, 8);
    s_pool(&b, "cpus=4", 0, 8);
    s_pool(&small, "cpus=2", 0, 8);
    const res_pool_t *view[] = {&small, &a, &b};
    res_set_t big = s_set("cpus=4"), one = s_set("cpus=1");
    ck_assert_int_eq(res_reserve_pick(view, 3, &big), -1);   /* a fits now */
    res_take(&a, &one, NULL);
    res_take(&b, &one, NULL);
    res_take(&b, &one, NULL);
    ck_assert_int_eq(res_reserve_pick(view, 3, &big), 1);    /* a is the closest */
    res_set_t huge = s_set("cpus=8");
    ck_assert_int_eq(res_reserve_pick(view, 3, &huge), -1);  /* nobody ever could */
}
END_TEST

START_TEST(a_declaration_of_gpus_must_match_its_devices)
{
    res_pool_t p;
    res_set_t c = s_set("cpus=1,gpus=2");
    static const char *const ids[] = {"0"};
    char err[200] = "";
    ck_assert_int_ne(res_pool_init(&p, &c, ids, 1, 1, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "gpus=2"), "%s", err);
}
END_TEST

/* A device named twice would be handed out whole twice (two tasks told
   CUDA_VISIBLE_DEVICES=0), and a claim naming it (res_claim_gpus) could
   only ever find the first. */
START_TEST(a_gpu_device_declared_twice_is_refused)
{
    res_pool_t p;
    res_set_t c = s_set("cpus=1");
    static const char *const ids[] = {"0", "1", "0"};
    char err[200] = "";
    ck_assert_int_ne(res_pool_init(&p, &c, ids, 3, 1, err, sizeof err), 0);
    ck_assert_msg(strstr(err, "'0'") && strstr(err, "twice"), "%s", err);
}
END_TEST

/* Checks what a pool holds against what it declared, in plain C (a
   ck_assert per step is a message to Check's parent: 20,000 steps of them
   came near the timeout under the sanitizers); tasks[] are the
   requests held with their grants. */
typedef struct {
    const res_set_t *req;
    res_grant_t grant;
    bool plain;
} held_t;

static void s_check_pool(const res_pool_t *p, const held_t *held, int n)
{
    int64_t sum[RES_MAX] = {0};
    int32_t dev[RES_MAX_GPUS] = {0};
    bool whole[RES_MAX_GPUS] = {false};
    int plain = 0, requested = 0;
    for (int k = 0; k < n; k++) {
        if (held[k].plain) {
            plain++;
            continue;
        }
        requested++;
        for (int i = 0; i < p->cap.n; i++) {
            int64_t a = res_get(held[k].req, p->cap.name[i]);
            bool named = false;
            for (int j = 0; j < held[k].req->n; j++)
                named |= strcmp(held[k].req->name[j], p->cap.name[i]) == 0;
            if (!named && strcmp(p->cap.name[i], "cpus") == 0)
                a = 1;
            sum[i] += a;
        }
        for (int j = 0; j < held[k].grant.n; j++) {
            int d = held[k].grant.dev[j];
            if (whole[d])
                ck_abort_msg("device %d shared with a whole-GPU task", d);
            if (held[k].grant.share == RES_GPU_UNIT) {
                if (dev[d] != 0)
                    ck_abort_msg("a whole GPU given to a task on a used device %d", d);
                whole[d] = true;
            }
            dev[d] += held[k].grant.share;
        }
    }
    int running_plain = plain < p->threads ? plain : p->threads;
    if (requested != p->requested || plain != p->plain)
        ck_abort_msg("held %d requesting + %d plain, the pool counts %d + %d", requested, plain,
                     p->requested, p->plain);
    for (int i = 0; i < p->cap.n; i++) {
        int64_t use = sum[i] + (strcmp(p->cap.name[i], "cpus") == 0 ? running_plain : 0);
        if (use > p->cap.amount[i])
            ck_abort_msg("%s: %lld in use of %lld", p->cap.name[i], (long long) use,
                         (long long) p->cap.amount[i]);
        if (use != res_in_use(p, i))
            ck_abort_msg("%s: %lld held, the pool says %lld", p->cap.name[i], (long long) use,
                         (long long) res_in_use(p, i));
    }
    for (int d = 0; d < p->ngpus; d++)
        if (dev[d] > RES_GPU_UNIT)
            ck_abort_msg("device %d: %d thousandths in use", d, dev[d]);
}

START_TEST(a_random_walk_never_goes_over_capacity_nor_shares_a_whole_gpu)
{
    const char *reqs_text[] = {"cpus=1", "cpus=2", "cpus=4", "gpus=1", "gpus=2", "gpus=0.5",
                               "gpus=0.25,cpus=2", "lic=1", "mem=3G", "cpus=3,mem=1G,lic=1"};
    enum { NREQ = sizeof reqs_text / sizeof *reqs_text, MAXHELD = 256 };
    res_set_t reqs[NREQ];
    for (int i = 0; i < NREQ; i++)
        reqs[i] = s_set(reqs_text[i]);
    res_pool_t p;
    s_pool(&p, "cpus=8,mem=8G,lic=2", 4, 6);
    held_t held[MAXHELD];
    int n = 0, taken = 0, refused = 0;
    unsigned seed = 7;
    for (int step = 0; step < 20000; step++) {
        int r = rand_r(&seed) % (NREQ + 2);
        bool add = rand_r(&seed) % 3 != 0 || n == 0;
        if (add && n < MAXHELD) {
            const res_set_t *req = r >= NREQ ? NULL : &reqs[r];
            if (res_fits(&p, req)) {
                held[n] = (held_t){.req = req, .plain = req == NULL};
                res_take(&p, req, &held[n].grant);
                n++;
                taken++;
            } else {
                refused++;
            }
        } else if (n > 0) {
            int k = rand_r(&seed) % n;
            res_release(&p, held[k].plain ? NULL : held[k].req, &held[k].grant);
            held[k] = held[--n];
        }
        s_check_pool(&p, held, n);
    }
    ck_assert_int_gt(taken, 1000);
    ck_assert_int_gt(refused, 100);
    while (n > 0) {
        res_release(&p, held[n - 1].plain ? NULL : held[n - 1].req, &held[n - 1].grant);
        n--;
    }
    for (int i = 0; i < p.cap.n; i++)
        ck_assert_int_eq(res_in_use(&p, i), 0);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){.suite = "resources", .tcase = "resources", .timeout_s = 60});
}
