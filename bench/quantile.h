/*  quantile: the nearest-rank quantile of sorted samples, shared by the
    bench programs that print p50/p99 so their figures mean the same. */
#ifndef ZTASK_BENCH_QUANTILE_H
#define ZTASK_BENCH_QUANTILE_H

#include <stdint.h>

/* The smallest sample with at least q * n samples at or below it
   (0 < q <= 1, n >= 1). */
static inline int64_t quantile_nearest_rank(const int64_t *sorted, int n, double q)
{
    int rank = (int) (q * n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

#endif
