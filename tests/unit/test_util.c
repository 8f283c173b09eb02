/* util: strict number parsing, host:port splitting and UTF-8 repair, by
   example. tests/fuzz (target "util") checks the same functions' properties
   on arbitrary bytes; these rows pin the answers a reader expects. */
#include "../../common/util.h"

#include "../ztest.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_OF(a) (sizeof(a) / sizeof *(a))

START_TEST(numbers_parse_only_when_the_whole_text_is_one_in_range)
{
    static const struct {
        const char *text;
        int64_t min, max;
        int rc;
        int64_t want;
    } ints[] = {
        { "42", 0, 100, 0, 42 },
        { "-7", -10, 10, 0, -7 },
        { "9223372036854775807", INT64_MIN, INT64_MAX, 0, INT64_MAX },
        { "9223372036854775808", INT64_MIN, INT64_MAX, -1, 0 },   /* overflows */
        { "101", 0, 100, -1, 0 },                                 /* above max */
        { "-1", 0, 100, -1, 0 },                                  /* below min */
        { "12abc", 0, 100, -1, 0 },
        { "0x10", 0, 100, -1, 0 },                                /* decimal only */
        { "1.5", 0, 100, -1, 0 },
        { "", 0, 100, -1, 0 },
    };
    for (size_t i = 0; i < N_OF(ints); i++) {
        int64_t out = -99;
        int rc = parse_int64(ints[i].text, ints[i].min, ints[i].max, &out);
        ck_assert_msg(rc == ints[i].rc, "parse_int64(\"%s\"): %d", ints[i].text, rc);
        ck_assert_msg(out == (rc == 0 ? ints[i].want : -99),
                      "parse_int64(\"%s\"): out %lld (untouched on failure)", ints[i].text,
                      (long long) out);
    }
    int64_t out;
    ck_assert_int_eq(parse_int64(NULL, 0, 1, &out), -1);

    static const struct {
        const char *text;
        int rc;
        double want;
    } dbls[] = {
        { "1.5", 0, 1.5 }, { "-2", 0, -2 }, { "1e3", 0, 1000 },
        { "nan", -1, 0 },  { "1e999", -1, 0 }, { "1.5s", -1, 0 }, { "", -1, 0 },
    };
    for (size_t i = 0; i < N_OF(dbls); i++) {
        double d = -99;
        int rc = parse_double(dbls[i].text, &d);
        ck_assert_msg(rc == dbls[i].rc, "parse_double(\"%s\"): %d", dbls[i].text, rc);
        ck_assert_msg(d == (rc == 0 ? dbls[i].want : -99), "parse_double(\"%s\"): %g",
                      dbls[i].text, d);
    }
}
END_TEST

START_TEST(integers_print_in_decimal_at_every_magnitude_and_sign)
{
    char buf[I64_TEXT_MAX];
    const int64_t vals[] = {0, 7, -1, 10, 1234567890123LL, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        char want[32];
        snprintf(want, sizeof want, "%lld", (long long) vals[i]);
        memset(buf, 'x', sizeof buf);
        ck_assert_str_eq(i64_text(buf, vals[i]), want);
    }
}
END_TEST

START_TEST(sizes_take_k_m_g_suffixes_in_powers_of_1024)
{
    static const struct {
        const char *text;
        int rc;
        int64_t want;
    } sizes[] = {
        { "4096", 0, 4096 },  { "64K", 0, 65536 },       { "2m", 0, 2 * 1024 * 1024 },
        { "1G", 0, 1 << 30 }, { "0", -1, 0 },            { "K", -1, 0 },
        { "1.5M", -1, 0 },    { "99999999999G", -1, 0 }, { "", -1, 0 },
        { "-1K", -1, 0 },
    };
    for (size_t i = 0; i < N_OF(sizes); i++) {
        int64_t b = -99;
        int rc = parse_bytes(sizes[i].text, &b);
        ck_assert_msg(rc == sizes[i].rc, "parse_bytes(\"%s\"): %d", sizes[i].text, rc);
        ck_assert_msg(b == (rc == 0 ? sizes[i].want : -99), "parse_bytes(\"%s\"): %lld",
                      sizes[i].text, (long long) b);
    }
    ck_assert_int_eq(parse_bytes(NULL, NULL), -1);
}
END_TEST

START_TEST(host_and_port_split_with_brackets_for_ipv6)
{
    static const struct {
        const char *text;
        int rc;
        const char *host;
        int port;   /* -1: left as it was */
    } cases[] = {
        { "example.org", 0, "example.org", -1 },
        { "example.org:5555", 0, "example.org", 5555 },
        { "10.0.0.1:1", 0, "10.0.0.1", 1 },
        { "[::1]:6000", 0, "::1", 6000 },
        { "[fe80::1]", 0, "fe80::1", -1 },
        { "::1", -1, NULL, -1 },            /* bare IPv6 needs brackets */
        { "host:0", -1, NULL, -1 },
        { "host:65536", -1, NULL, -1 },
        { "host:", -1, NULL, -1 },
        { ":5555", -1, NULL, -1 },
        { "[]:5555", -1, NULL, -1 },
        { "[::1]x", -1, NULL, -1 },
        { "[::1", -1, NULL, -1 },
        { "", -1, NULL, -1 },
    };
    for (size_t i = 0; i < N_OF(cases); i++) {
        char *host = NULL;
        int port = -1;
        int rc = hostport_parse(cases[i].text, &host, &port);
        ck_assert_msg(rc == cases[i].rc, "hostport_parse(\"%s\"): %d", cases[i].text, rc);
        if (rc == 0)
            ck_assert_str_eq(host, cases[i].host);
        else
            ck_assert_ptr_null(host);
        ck_assert_msg(port == cases[i].port, "hostport_parse(\"%s\"): port %d", cases[i].text,
                      port);
        free(host);
    }
}
END_TEST

/* Every byte that does not start a valid sequence becomes one U+FFFD;
   valid text (1- to 4-byte characters) is copied as it is. */
START_TEST(invalid_utf8_is_replaced_byte_by_byte_and_valid_text_kept)
{
#define R "\xEF\xBF\xBD"
    static const struct {
        const char *in;
        size_t len;
        bool valid;
        const char *out;
    } cases[] = {
        { "plain ascii", 11, true, "plain ascii" },
        { "h\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 12, true,
          "h\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80" },
        { "a\xFF" "b", 3, false, "a" R "b" },
        { "a\0b", 3, false, "a" R "b" },                         /* NUL: not in a JSON string */
        { "\xC0\xAF", 2, false, R R },                            /* overlong '/' */
        { "\xED\xA0\x80", 3, false, R R R },                      /* a surrogate */
        { "\xF4\x90\x80\x80", 4, false, R R R R },                /* above U+10FFFF */
        { "ok\xE2\x82", 4, false, "ok" R R },                     /* cut short at the end */
        { "", 0, true, "" },
    };
#undef R
    for (size_t i = 0; i < N_OF(cases); i++) {
        ck_assert_msg(utf8_valid(cases[i].in, cases[i].len) == cases[i].valid, "case %zu", i);
        size_t n = 0;
        char *out = utf8_sanitize(cases[i].in, cases[i].len, &n);
        ck_assert_uint_eq(n, strlen(cases[i].out));
        ck_assert_msg(memcmp(out, cases[i].out, n) == 0 && out[n] == '\0', "case %zu: got \"%s\"",
                      i, out);
        ck_assert(utf8_valid(out, n));
        free(out);
    }
}
END_TEST

START_TEST(string_helpers_copy_and_format)
{
    ck_assert_ptr_null(xstrdup(NULL));
    char *a = xstrdup("abc");
    ck_assert_str_eq(a, "abc");
    char *b = xstrndup("abcdef", 3);
    ck_assert_str_eq(b, "abc");
    char *c = xasprintf("%s-%d", a, 42);
    ck_assert_str_eq(c, "abc-42");
    free(a);
    free(b);
    free(c);
    ck_assert_int_ge(cpu_count(), 1);
}
END_TEST

/* Splits the next item off, as the worker's lists (labels, plugins,
   --task-rlimit) read them. */
static void s_items(const char *text, const char *want)
{
    char *copy = xstrdup(text), *cursor = copy;
    strbuf_t got = {0};
    strbuf_append(&got, "", 0);
    for (char *item; (item = list_next(&cursor));)
        strbuf_printf(&got, "[%s]", item);
    ck_assert_msg(strcmp(got.data, want) == 0, "'%s': %s, not %s", text, got.data, want);
    free(got.data);
    free(copy);
}

START_TEST(comma_lists_split_into_trimmed_items_without_empty_ones)
{
    s_items("gpu,ssd", "[gpu][ssd]");
    s_items(" gpu ,\tssd\t, big disk ", "[gpu][ssd][big disk]");
    s_items("a,,b,", "[a][b]");
    s_items(", ,\t,", "");
    s_items("", "");
    s_items("one", "[one]");
    s_items("as=1, fsize=2M", "[as=1][fsize=2M]");
}
END_TEST

START_TEST(the_first_line_skips_blank_lines_and_ends_before_the_newline)
{
    size_t n = 99;
    ck_assert_ptr_null(text_first_line(NULL, &n));
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(text_first_line(" \n\t\r\n", &n));
    ck_assert_ptr_null(text_first_line("", &n));
    const char *text = "\n  \nerror: boom\r\nmore\n";
    const char *line = text_first_line(text, &n);
    ck_assert_ptr_eq(line, text + 4);
    ck_assert_uint_eq(n, strlen("error: boom\r"));
    line = text_first_line("last", &n);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(strncmp(line, "last", n), 0);
}
END_TEST

START_TEST(mkdir_parents_makes_the_path_and_gives_the_leaf_its_mode)
{
    char base[] = "/tmp/ztask-util-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(base));
    char *leaf = xasprintf("%s/a/b/keys", base);
    mode_t old = umask(077);   /* the leaf's mode is exact whatever the umask */
    ck_assert_int_eq(mkdir_parents(leaf, 0711), 0);
    umask(old);
    struct stat st;
    ck_assert_int_eq(stat(leaf, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(st.st_mode & 07777, 0711);
    /* Again: an existing directory is fine and keeps its mode. */
    ck_assert_int_eq(mkdir_parents(leaf, 0700), 0);
    ck_assert_int_eq(stat(leaf, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0711);
    /* A file in the way: ENOTDIR, for the leaf and for a parent. */
    char *file = xasprintf("%s/f", base), *under = xasprintf("%s/f/x", base);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    errno = 0;
    ck_assert_int_eq(mkdir_parents(file, 0700), -1);
    ck_assert_int_eq(errno, ENOTDIR);
    ck_assert_int_eq(mkdir_parents(under, 0700), -1);
    ck_assert_int_eq(errno, ENOTDIR);
    unlink(file);
    char *b = xasprintf("%s/a/b", base), *a = xasprintf("%s/a", base);
    rmdir(leaf);
    rmdir(b);
    rmdir(a);
    rmdir(base);
    free(a);
    free(b);
    free(under);
    free(file);
    free(leaf);
}
END_TEST

START_TEST(a_shell_line_is_told_from_a_program_name)
{
    ck_assert(looks_like_shell_line("echo 1 | wc -c"));
    ck_assert(looks_like_shell_line("make&&make install"));
    ck_assert(looks_like_shell_line("ls *.csv"));
    ck_assert(!looks_like_shell_line("/usr/bin/python3"));
    ck_assert(!looks_like_shell_line("./simulate"));
    ck_assert(!looks_like_shell_line("render-frame_2.sh"));
}
END_TEST

START_TEST(jitter_is_xorshift64_and_never_sticks_at_zero)
{
    /* The worker's reconnect delay and the CLI's busy pauses share it. */
    uint64_t state = 1;
    ck_assert_uint_eq(jitter_next(&state), 1082269761u);   /* 8257 * 131073 */
    ck_assert_uint_eq(state, 1082269761u);
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_ne(jitter_next(&state), 0);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "util", .tcase = "util" });
}
