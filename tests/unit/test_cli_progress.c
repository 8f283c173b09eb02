/* cli progress and text output: the wait progress bar, plain line and
   summary as pure functions of a job's counters; the rate window; table
   cells made safe for a terminal. */
#include "../../cli/fmt.h"
#include "../../cli/progress.h"

#include "../ztest.h"
#include <stdlib.h>
#include <string.h>

static proto_job_t s_job(int64_t total, int64_t done, int64_t failed, int64_t cancelled)
{
    proto_job_t j;
    memset(&j, 0, sizeof j);
    j.id = 7;
    j.closed = true;
    j.total = total;
    j.done = done;
    j.failed = failed;
    j.cancelled = cancelled;
    j.queued = total - done - failed - cancelled;
    return j;
}

START_TEST(the_bar_shows_progress_counts_rate_and_eta)
{
    proto_job_t j = s_job(1000, 521, 2, 0);
    const char *tail = "523/1000  failed 2  312/s  ETA 0:02";
    /* A width that leaves 20 columns of bar: "[" 20 "] " tail, plus the
       last column we never write. */
    int width = 1 + 20 + 2 + (int) strlen(tail) + 1;
    char buf[256];
    size_t n = progress_bar(buf, sizeof buf, &j, 312.0, width);
    ck_assert_str_eq(buf, "[=========>          ] 523/1000  failed 2  312/s  ETA 0:02");
    ck_assert_uint_eq(n, strlen(buf));
}
END_TEST

START_TEST(the_bar_never_reaches_the_last_column)
{
    proto_job_t j = s_job(123456789, 1234567, 89, 5);
    char buf[512];
    for (int width = 0; width <= 200; width++) {
        size_t n = progress_bar(buf, sizeof buf, &j, 12345.6, width);
        ck_assert_uint_eq(n, strlen(buf));
        int limit = width - 1 < 1 ? 1 : width - 1;
        ck_assert_msg((int) n <= limit, "width %d: %zu columns: %s", width, n, buf);
    }
    /* Narrow: no bar, the numbers first. */
    progress_bar(buf, sizeof buf, &j, 1.0, 30);
    ck_assert_msg(buf[0] != '[', "%s", buf);
    ck_assert_msg(strncmp(buf, "1234661/123456789", 17) == 0, "%s", buf);
    /* Wide: the bar stops growing at 40. */
    progress_bar(buf, sizeof buf, &j, 1.0, 300);
    ck_assert_ptr_nonnull(strchr(buf, ']'));
    ck_assert_int_eq(strchr(buf, ']') - buf, 41);
    /* A tiny buffer is respected too. */
    char small[8];
    progress_bar(small, sizeof small, &j, 1.0, 200);
    ck_assert_uint_le(strlen(small), 7);
}
END_TEST

START_TEST(the_bar_handles_empty_full_open_and_cancelled_jobs)
{
    char buf[256];
    proto_job_t j = s_job(0, 0, 0, 0);
    j.closed = false;
    progress_bar(buf, sizeof buf, &j, 0, 1 + 20 + 2 + 19 + 1);
    ck_assert_str_eq(buf, "[                    ] 0/0+  failed 0  0/s");

    j = s_job(10, 10, 0, 0);
    progress_bar(buf, sizeof buf, &j, 4.25, 1 + 20 + 2 + 22 + 1);
    ck_assert_str_eq(buf, "[====================] 10/10  failed 0  4.2/s");

    j = s_job(10, 3, 1, 2);
    progress_bar(buf, sizeof buf, &j, 0, 80);
    ck_assert_msg(strstr(buf, "6/10  failed 1  cancelled 2  0/s") != NULL, "%s", buf);
    ck_assert_msg(strstr(buf, "ETA") == NULL, "no ETA without a rate: %s", buf);
}
END_TEST

START_TEST(the_plain_line_and_summary_read_as_documented)
{
    char buf[256];
    proto_job_t j = s_job(1000, 521, 2, 0);
    progress_line(buf, sizeof buf, &j, 312.4);
    ck_assert_str_eq(buf, "job 7: 523/1000 done, 2 failed, 312 tasks/s");

    j = s_job(1000, 998, 2, 0);
    progress_summary(buf, sizeof buf, &j, 3.2);
    ck_assert_str_eq(buf, "job 7: 1000 tasks, 998 done, 2 failed (3.2 s)");

    j = s_job(1, 1, 0, 0);
    progress_summary(buf, sizeof buf, &j, -1);
    ck_assert_str_eq(buf, "job 7: 1 task, 1 done, 0 failed");

    j = s_job(10, 5, 0, 5);
    progress_summary(buf, sizeof buf, &j, 125);
    ck_assert_str_eq(buf, "job 7: 10 tasks, 5 done, 0 failed, 5 cancelled (2m 05s)");
}
END_TEST

START_TEST(durations_and_clocks_format)
{
    char b[32];
    progress_duration(b, sizeof b, 0.04);
    ck_assert_str_eq(b, "0.0 s");
    progress_duration(b, sizeof b, 59.94);
    ck_assert_str_eq(b, "59.9 s");
    progress_duration(b, sizeof b, 3600 * 3 + 7 * 60 + 5);
    ck_assert_str_eq(b, "3h 07m");
    progress_clock(b, sizeof b, 1.2);
    ck_assert_str_eq(b, "0:02");
    progress_clock(b, sizeof b, 760);
    ck_assert_str_eq(b, "12:40");
    progress_clock(b, sizeof b, 3 * 3600 + 7 * 60);
    ck_assert_str_eq(b, "3:07:00");
    progress_clock(b, sizeof b, 1e12);
    ck_assert_str_eq(b, "99:59:59");
}
END_TEST

START_TEST(the_rate_follows_the_recent_window)
{
    progress_rate_t *r = progress_rate_new();
    ck_assert(progress_rate_get(r) == 0);
    progress_rate_add(r, 1000, 0);
    ck_assert(progress_rate_get(r) == 0); /* one sample: unknown */
    progress_rate_add(r, 2000, 100);
    progress_rate_add(r, 3000, 300);
    ck_assert_double_eq_tol(progress_rate_get(r), 150.0, 1e-9);
    /* Ten seconds later the job speeds up: only the last 5 s count. */
    for (int t = 4; t <= 13; t++)
        progress_rate_add(r, t * 1000, 300 + (t - 3) * 1000);
    ck_assert_double_eq_tol(progress_rate_get(r), 1000.0, 1e-9);
    /* A stall after a long gap: the previous sample is used. */
    progress_rate_add(r, 60000, 10300);
    ck_assert_double_eq_tol(progress_rate_get(r), 0.0, 1e-9);
    progress_rate_destroy(&r);
    ck_assert_ptr_null(r);
}
END_TEST

START_TEST(table_cells_are_printable_and_cut_at_characters)
{
    char b[64];
    fmt_first_line(b, sizeof b, "\n  \nhello\tworld\x1b[31m\nsecond", 40);
    ck_assert_str_eq(b, "hello world [31m");
    fmt_first_line(b, sizeof b, "abcdefghijklmnop", 10);
    ck_assert_str_eq(b, "abcdefg...");
    fmt_first_line(b, sizeof b, "abcdefghij", 10);
    ck_assert_str_eq(b, "abcdefghij");
    /* "é" is two bytes, one column. */
    fmt_first_line(b, sizeof b, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 5);
    ck_assert_str_eq(b, "\xc3\xa9\xc3\xa9...");
    fmt_first_line(b, sizeof b, NULL, 10);
    ck_assert_str_eq(b, "");
    /* A buffer too small for the text never ends inside a character. */
    char tiny[6];
    fmt_cell(tiny, sizeof tiny, "ab\xe2\x82\xac\xe2\x82\xac", 100);
    ck_assert_str_eq(tiny, "ab\xe2\x82\xac");
    fmt_cell(b, sizeof b, NULL, 10);
    ck_assert_str_eq(b, "-");
}
END_TEST

START_TEST(ages_read_naturally)
{
    char b[32];
    fmt_ago(b, sizeof b, 0.44);
    ck_assert_str_eq(b, "0.4s ago");
    fmt_ago(b, sizeof b, -0.2);
    ck_assert_str_eq(b, "0.0s ago");
    fmt_ago(b, sizeof b, 42);
    ck_assert_str_eq(b, "42s ago");
    fmt_ago(b, sizeof b, 300);
    ck_assert_str_eq(b, "5m ago");
    fmt_ago(b, sizeof b, 7200);
    ck_assert_str_eq(b, "2h ago");
    fmt_ago(b, sizeof b, 86400 * 3);
    ck_assert_str_eq(b, "3d ago");
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "cli_progress", .tcase = "progress" });
}
