/* clock: the one conversion of a task's timeout into a monotonic deadline,
   which commands (exec.c) and functions (fn.c) both go through. */
#include "../../common/clock.h"

#include "../ztest.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

START_TEST(a_timeout_becomes_a_deadline_rounded_up_to_the_millisecond)
{
    ck_assert_int_eq(clock_deadline_ms(1000, 2.5), 3500);
    ck_assert_int_eq(clock_deadline_ms(1000, 0.0014), 1002);
    /* However short, a timeout is a deadline at least 1 ms away, never
       "now" (which would fire before the task ran) nor "none". */
    ck_assert_int_eq(clock_deadline_ms(1000, 1e-9), 1001);
    ck_assert_int_eq(clock_deadline_ms(1000, 4.9e-324), 1001);
}
END_TEST

START_TEST(no_timeout_means_no_deadline)
{
    ck_assert_int_eq(clock_deadline_ms(1000, 0), 0);
    ck_assert_int_eq(clock_deadline_ms(1000, -1), 0);
    ck_assert_int_eq(clock_deadline_ms(1000, -INFINITY), 0);
    ck_assert_int_eq(clock_deadline_ms(1000, NAN), 0);
}
END_TEST

START_TEST(huge_timeouts_are_clamped_far_from_overflow)
{
    int64_t now = INT64_C(1) << 40;   /* a monotonic clock after 35 years */
    ck_assert_int_eq(clock_deadline_ms(now, 1e9), now + CLOCK_DEADLINE_MAX_MS);
    ck_assert_int_eq(clock_deadline_ms(now, 1e300), now + CLOCK_DEADLINE_MAX_MS);
    ck_assert_int_eq(clock_deadline_ms(now, INFINITY), now + CLOCK_DEADLINE_MAX_MS);
    /* Just under the clamp: exact. */
    ck_assert_int_eq(clock_deadline_ms(now, 999999999.999), now + CLOCK_DEADLINE_MAX_MS - 1);
    /* The longest timeout a spec may carry (30 days) is far below it. */
    ck_assert_int_eq(clock_deadline_ms(0, 30.0 * 24 * 3600), INT64_C(2592000000));
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "clock", .tcase = "clock" });
}
