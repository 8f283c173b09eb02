#include "clock.h"

#include <math.h>
#include <stdatomic.h>
#include <time.h>

/* clock_wall_offset_set's offset, in microseconds (0 outside tests).
   Process-wide on purpose: a test's jump must reach the clock_wall() of
   every thread of the master or worker it runs. Relaxed: the offset
   orders nothing else, and the load is a plain one on 64-bit targets. */
static _Atomic int64_t s_wall_offset_us;

int64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t clock_deadline_ms(int64_t now_ms, double seconds)
{
    if (!(seconds > 0))
        return 0;
    /* Compared as a double first: seconds may be too large (or infinite)
       for any integer. */
    double ms = ceil(seconds * 1000.0);
    return now_ms + (ms > (double) CLOCK_DEADLINE_MAX_MS ? CLOCK_DEADLINE_MAX_MS : (int64_t) ms);
}

double clock_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t offset_us = atomic_load_explicit(&s_wall_offset_us, memory_order_relaxed);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9 + (double) offset_us / 1e6;
}

void clock_wall_offset_set(double seconds)
{
    atomic_store_explicit(&s_wall_offset_us, (int64_t) (seconds * 1e6), memory_order_relaxed);
}
