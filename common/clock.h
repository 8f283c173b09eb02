/*  clock: monotonic time for timers and wall time for records.

    Every timer, lease and timeout in ztask runs on the monotonic clock, so a
    wall-clock jump (NTP, an admin's `date -s`) never fires or delays one.
    Wall time is only recorded (task started/finished) and shown to people.
    Modules that take decisions on time take `now` as a parameter so tests
    can inject any clock; clock_wall_offset_set lets a test jump the wall
    clock under a whole running master or worker. Threads: any.
*/
#ifndef ZTASK_CLOCK_H
#define ZTASK_CLOCK_H

#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t clock_mono_ms(void);

/* Microseconds on CLOCK_MONOTONIC (latency measurements). */
int64_t clock_mono_us(void);

/* The longest timeout a deadline holds: about 31 years, as good as none,
   and far enough from INT64_MAX that now + it never overflows. */
#define CLOCK_DEADLINE_MAX_MS 1000000000000LL

/* The monotonic deadline (ms) of a timeout of seconds that starts at
   now_ms: 0 (no deadline) when seconds is not above 0 (NaN included),
   else now_ms plus the timeout rounded up to a whole ms (so at least 1),
   at most CLOCK_DEADLINE_MAX_MS. The one conversion every timeout of a
   task goes through (commands and functions alike). */
int64_t clock_deadline_ms(int64_t now_ms, double seconds);

/* Seconds since the epoch, with sub-second precision (plus the test
   offset below, 0 outside tests). */
double clock_wall(void);

/* Test hook, never called by the programs: from now on clock_wall()
   returns the system's wall time plus `seconds` (> 0: as if the clock had
   been set forward, < 0: back; 0 undoes it). Process-wide and atomic: a
   test calls it while the master's or the worker's threads run. The
   monotonic clock is untouched, which is the point: a timer that read
   clock_wall() would fire early or late, one on clock_mono_* does not.
   Wall time read any other way (time(), CLOCK_REALTIME) misses the
   offset: only log.c's line stamps do that. */
void clock_wall_offset_set(double seconds);

#endif
