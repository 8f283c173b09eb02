/*  resources: what fits on a worker, and which devices a task gets (see
    resources.h). */
#include "resources.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* Index of name in the pool's declaration, -1 when it declares none. */
static int s_cap_index(const res_pool_t *pool, const char *name)
{
    for (int i = 0; i < pool->cap.n; i++)
        if (strcmp(pool->cap.name[i], name) == 0)
            return i;
    return -1;
}

int res_pool_init(res_pool_t *pool, const res_set_t *cap, const char *const *gpu_ids, int ngpus,
                  int threads, char *err, size_t errlen)
{
    memset(pool, 0, sizeof *pool);
    pool->cap = *cap;
    pool->threads = threads > 0 ? threads : 1;
    if (ngpus < 0 || ngpus > RES_MAX_GPUS) {
        snprintf(err, errlen, "%d GPU devices: at most %d", ngpus, RES_MAX_GPUS);
        return -1;
    }
    for (int i = 0; i < ngpus; i++) {
        if (!gpu_ids[i][0] || strlen(gpu_ids[i]) > RES_GPU_ID_MAX || strchr(gpu_ids[i], ',')) {
            snprintf(err, errlen, "GPU device id '%.40s' must be 1..%d bytes without ','",
                     gpu_ids[i], RES_GPU_ID_MAX);
            return -1;
        }
        /* Named twice, one device would be handed out whole twice. */
        for (int k = 0; k < i; k++)
            if (strcmp(pool->gpu_id[k], gpu_ids[i]) == 0) {
                snprintf(err, errlen, "GPU device id '%.40s' named twice: name each device once",
                         gpu_ids[i]);
                return -1;
            }
        snprintf(pool->gpu_id[i], sizeof pool->gpu_id[i], "%s", gpu_ids[i]);
    }
    pool->ngpus = ngpus;
    int64_t gpus = res_get(cap, "gpus");
    if (gpus == 0 && ngpus > 0 && s_cap_index(pool, "gpus") < 0) {
        if (res_set(&pool->cap, "gpus", (int64_t) ngpus * RES_GPU_UNIT) != 0) {
            snprintf(err, errlen, "more than %d resources", RES_MAX);
            return -1;
        }
    } else if (gpus != (int64_t) ngpus * RES_GPU_UNIT) {
        snprintf(err, errlen, "gpus=%g but %d GPU device%s", (double) gpus / RES_GPU_UNIT, ngpus,
                 ngpus == 1 ? "" : "s");
        return -1;
    }
    return 0;
}

/* CPUs the plain tasks held can use at once: at most one per thread. */
static int64_t s_plain_cpus(const res_pool_t *pool, int plain)
{
    return plain < pool->threads ? plain : pool->threads;
}

int64_t res_in_use(const res_pool_t *pool, int i)
{
    int64_t v = pool->used[i];
    if (strcmp(pool->cap.name[i], "cpus") == 0)
        v += s_plain_cpus(pool, pool->plain);
    return v;
}

/* Devices a GPU request would get, into g (when not NULL); false when the
   pool cannot give them now. */
static bool s_pick_gpus(const res_pool_t *pool, int64_t want, res_grant_t *g)
{
    res_grant_t tmp;
    if (!g)
        g = &tmp;
    g->n = 0;
    g->share = 0;
    if (want <= 0)
        return true;
    if (want < RES_GPU_UNIT) {
        /* A share: the device that has room for it and is already the
           most used, so whole devices stay whole. */
        int best = -1;
        for (int d = 0; d < pool->ngpus; d++)
            if (pool->gpu_used[d] + want <= RES_GPU_UNIT
                && (best < 0 || pool->gpu_used[d] > pool->gpu_used[best]))
                best = d;
        if (best < 0)
            return false;
        g->dev[g->n++] = (uint8_t) best;
        g->share = (int32_t) want;
        return true;
    }
    int64_t whole = want / RES_GPU_UNIT;
    for (int d = 0; d < pool->ngpus && g->n < whole; d++)
        if (pool->gpu_used[d] == 0)
            g->dev[g->n++] = (uint8_t) d;
    g->share = RES_GPU_UNIT;
    return g->n == whole;
}

/* Whether req fits beside `used` (NULL: nothing in use) with `plain`
   plain tasks and `requested` requesting ones held, plus this one. */
static bool s_fits(const res_pool_t *pool, const res_set_t *req, const int64_t *used, int plain,
                   int requested, bool empty)
{
    if (!req) {
        /* A plain task: one more CPU once it can run. */
        int ci = s_cap_index(pool, "cpus");
        int64_t cpus = ci >= 0 ? pool->cap.amount[ci] : 0;
        int64_t busy = ci >= 0 && used ? used[ci] : 0;
        return busy + s_plain_cpus(pool, plain + 1) <= cpus;
    }
    /* A thread for it, beside the requesting tasks and the plain ones that
       can run. */
    if (requested + s_plain_cpus(pool, plain) + 1 > pool->threads)
        return false;
    bool asked_cpus = false;
    for (int k = 0; k < req->n; k++) {
        int i = s_cap_index(pool, req->name[k]);
        if (strcmp(req->name[k], "cpus") == 0)
            asked_cpus = true;
        if (req->amount[k] == 0)
            continue;
        if (i < 0)
            return false;
        int64_t busy = used ? used[i] : 0;
        if (strcmp(req->name[k], "cpus") == 0)
            busy += s_plain_cpus(pool, plain);
        if (busy + req->amount[k] > pool->cap.amount[i])
            return false;
    }
    if (!asked_cpus) {
        /* One CPU unless it says otherwise. */
        int ci = s_cap_index(pool, "cpus");
        if (ci < 0)
            return false;
        int64_t busy = (used ? used[ci] : 0) + s_plain_cpus(pool, plain);
        if (busy + 1 > pool->cap.amount[ci])
            return false;
    }
    int64_t gpus = res_get(req, "gpus");
    if (gpus > 0) {
        if (empty) {
            /* An idle worker: whole devices, or one device for a share. */
            return gpus < RES_GPU_UNIT ? pool->ngpus > 0 : gpus / RES_GPU_UNIT <= pool->ngpus;
        }
        return s_pick_gpus(pool, gpus, NULL);
    }
    return true;
}

bool res_fits(const res_pool_t *pool, const res_set_t *req)
{
    return s_fits(pool, req, pool->used, pool->plain, pool->requested, false);
}

bool res_could_fit(const res_pool_t *pool, const res_set_t *req)
{
    return s_fits(pool, req, NULL, 0, 0, true);
}

/* The amount req takes of cap entry i: what it names, or the default
   of one CPU. */
static int64_t s_taken(const res_pool_t *pool, const res_set_t *req, int i)
{
    const char *name = pool->cap.name[i];
    for (int k = 0; k < req->n; k++)
        if (strcmp(req->name[k], name) == 0)
            return req->amount[k];
    return strcmp(name, "cpus") == 0 ? 1 : 0;
}

double res_shortfall(const res_pool_t *pool, const res_set_t *req)
{
    double miss = 0;
    if (req && pool->requested + s_plain_cpus(pool, pool->plain) + 1 > pool->threads)
        miss += 1;
    for (int i = 0; i < pool->cap.n; i++) {
        int64_t want = req ? s_taken(pool, req, i) : strcmp(pool->cap.name[i], "cpus") == 0;
        int64_t free_now = pool->cap.amount[i] - res_in_use(pool, i);
        if (want > free_now && pool->cap.amount[i] > 0)
            miss += (double) (want - free_now) / (double) pool->cap.amount[i];
    }
    int64_t gpus = req ? res_get(req, "gpus") : 0;
    if (gpus > 0 && !s_pick_gpus(pool, gpus, NULL))
        miss += 1;
    return miss;
}

int res_reserve_pick(const res_pool_t *const *pools, int n, const res_set_t *req)
{
    int pick = -1;
    double best = 0;
    for (int i = 0; i < n; i++) {
        if (!pools[i] || !res_could_fit(pools[i], req))
            continue;
        if (res_fits(pools[i], req))
            return -1;
        double miss = res_shortfall(pools[i], req);
        if (pick < 0 || miss < best) {
            pick = i;
            best = miss;
        }
    }
    return pick;
}

void res_take(res_pool_t *pool, const res_set_t *req, res_grant_t *grant)
{
    if (grant) {
        grant->n = 0;
        grant->share = 0;
    }
    if (!req) {
        pool->plain++;
        return;
    }
    pool->requested++;
    for (int i = 0; i < pool->cap.n; i++)
        pool->used[i] += s_taken(pool, req, i);
    int64_t gpus = res_get(req, "gpus");
    if (gpus > 0) {
        res_grant_t g = {0};   /* whole: a grant is copied and compared as a value */
        /* Only a claim after a master restart takes what does not fit
           (the task already runs there): it is counted, without devices. */
        if (!s_pick_gpus(pool, gpus, &g))
            g.n = 0;
        for (int k = 0; k < g.n; k++)
            pool->gpu_used[g.dev[k]] += g.share;
        if (grant)
            *grant = g;
    }
}

int res_claim_gpus(res_pool_t *pool, const res_set_t *req, res_grant_t *grant, const char *ids)
{
    int64_t gpus = req ? res_get(req, "gpus") : 0;
    if (gpus <= 0 || !ids)
        return -1;
    int64_t want = gpus < RES_GPU_UNIT ? 1 : gpus / RES_GPU_UNIT;
    res_grant_t g = {.share = (int32_t) (gpus < RES_GPU_UNIT ? gpus : RES_GPU_UNIT)};
    const char *at = ids;
    for (;;) {
        size_t len = strcspn(at, ",");
        int d = 0;
        while (d < pool->ngpus
               && !(strlen(pool->gpu_id[d]) == len && memcmp(pool->gpu_id[d], at, len) == 0))
            d++;
        if (d == pool->ngpus || g.n == want)
            return -1;   /* not one of ours, or more than it asked */
        for (int k = 0; k < g.n; k++)
            if (g.dev[k] == d)
                return -1;
        g.dev[g.n++] = (uint8_t) d;
        if (!at[len])
            break;
        at += len + 1;
    }
    if (g.n != want)
        return -1;
    for (int k = 0; k < grant->n; k++) {
        pool->gpu_used[grant->dev[k]] -= grant->share;
        assert(pool->gpu_used[grant->dev[k]] >= 0);
    }
    for (int k = 0; k < g.n; k++)
        pool->gpu_used[g.dev[k]] += g.share;
    *grant = g;
    return 0;
}

void res_release(res_pool_t *pool, const res_set_t *req, const res_grant_t *grant)
{
    if (!req) {
        assert(pool->plain > 0);
        pool->plain--;
        return;
    }
    assert(pool->requested > 0);
    pool->requested--;
    for (int i = 0; i < pool->cap.n; i++) {
        pool->used[i] -= s_taken(pool, req, i);
        assert(pool->used[i] >= 0);
    }
    for (int k = 0; grant && k < grant->n; k++) {
        pool->gpu_used[grant->dev[k]] -= grant->share;
        assert(pool->gpu_used[grant->dev[k]] >= 0);
    }
}

void res_grant_format(const res_pool_t *pool, const res_grant_t *grant, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; grant && k < grant->n && used < len; k++)
        used += (size_t) snprintf(buf + used, len - used, "%s%s", k ? "," : "",
                                  pool->gpu_id[grant->dev[k]]);
}
