/* log: the rate limit on lines a peer can cause, and quoting of peer text. */
#include "../../common/log.h"

#include "../ztest.h"
#include <stdlib.h>
#include <string.h>

START_TEST(a_flood_is_cut_to_the_limit_and_the_next_line_counts_what_was_held)
{
    log_limit_t lim = { 0 };
    int64_t held = -1, through = 0;
    /* 1,000 lines in one second: LOG_LIMIT_PER_S get through. */
    for (int i = 0; i < 1000; i++)
        if (log_limit(&lim, 5000 + i % 1000, &held)) {
            ck_assert_int_eq(held, 0);
            through++;
        }
    ck_assert_int_eq(through, LOG_LIMIT_PER_S);
    /* The next second's first line says how many were held back. */
    ck_assert(log_limit(&lim, 6000, &held));
    ck_assert_int_eq(held, 1000 - LOG_LIMIT_PER_S);
    ck_assert(log_limit(&lim, 6001, &held));
    ck_assert_int_eq(held, 0);
    /* A quiet stretch does not save up a bigger burst. */
    through = 0;
    for (int i = 0; i < 100; i++)
        through += log_limit(&lim, 60000, &held);
    ck_assert_int_eq(through, LOG_LIMIT_PER_S);
}
END_TEST

START_TEST(quoting_keeps_a_peers_text_inside_its_field)
{
    char buf[64];
    ck_assert_str_eq(log_quote(buf, sizeof buf, "a \"b\"\nevent=forged"),
                     "a 'b' event=forged");
    ck_assert_str_eq(log_quote(buf, 4, "abcdef"), "abc");
}
END_TEST

START_TEST(a_peers_string_is_one_value_bare_when_plain_quoted_and_escaped_otherwise)
{
    char buf[64];
    ck_assert_str_eq(log_value(buf, sizeof buf, "w1.example.org#2"), "w1.example.org#2");
    ck_assert_str_eq(LOG_V("evil\n2026-12-07T00:00:00.000Z ERROR ztask-master[1] event=forged"),
                     "\"evil\\n2026-12-07T00:00:00.000Z ERROR ztask-master[1] event=forged\"");
    ck_assert_str_eq(log_value(buf, sizeof buf, "a b=\"c\"\\"), "\"a b=\\\"c\\\"\\\\\"");
    ck_assert_str_eq(log_value(buf, sizeof buf, "\x1b[31mred\r\t"), "\"\\x1b[31mred\\r\\t\"");
    ck_assert_str_eq(log_value(buf, sizeof buf, ""), "\"\"");
    ck_assert_str_eq(log_value(buf, sizeof buf, NULL), "\"\"");
    /* Valid UTF-8 is kept; bytes that are not UTF-8 are escaped. */
    ck_assert_str_eq(log_value(buf, sizeof buf, "caf\xc3\xa9"), "\"caf\xc3\xa9\"");
    ck_assert_str_eq(log_value(buf, sizeof buf, "x\x9by"), "\"x\\x9by\"");
    /* Too long: cut, and says so, inside its quotes. */
    char big[200];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[5] = ' ';
    const char *v = log_value(buf, 16, big);
    ck_assert_uint_le(strlen(v), 15);
    ck_assert_ptr_nonnull(strstr(v, "...\""));
    ck_assert_int_eq(v[0], '"');
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "log", .tcase = "log" });
}
