/*  clock: monotonic time for timers and wall time for records.

    Every timer, lease and timeout in ztask runs on the monotonic clock, so a
    wall-clock jump (NTP, an admin's `date -s`) never fires or delays one.
    Wall time is only recorded (task started/finished) and shown to people.
    Modules that take decisions on time take `now` as a parameter so tests
    can inject any clock. Threads: any.
*/
#ifndef ZTASK_CLOCK_H
#define ZTASK_CLOCK_H

#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t clock_mono_ms(void);

/* Microseconds on CLOCK_MONOTONIC (latency measurements). */
int64_t clock_mono_us(void);

/* Seconds since the epoch, with sub-second precision. */
double clock_wall(void);

#endif
