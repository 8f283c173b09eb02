/* cli/range: the --array index spec, parsed into elements and walked
   lazily; every malformed form is refused with a reason. */
#include "../../cli/range.h"

#include "../ztest.h"
#include <stdlib.h>
#include <string.h>

/* Walks r into out (at most max); returns how many were produced. */
static int s_walk(const range_t *r, int64_t *out, int max)
{
    range_iter_t it;
    range_iter_init(&it, r);
    int n = 0;
    int64_t v;
    while (range_iter_next(&it, &v)) {
        ck_assert_int_lt(n, max);
        out[n++] = v;
    }
    return n;
}

static void s_expect(const char *spec, const int64_t *want, int nwant)
{
    char err[256] = "";
    range_t *r = range_parse(spec, err, sizeof err);
    ck_assert_msg(r != NULL, "\"%s\" refused: %s", spec, err);
    ck_assert_int_eq(range_count(r), nwant);
    int64_t got[64];
    int n = s_walk(r, got, 64);
    ck_assert_int_eq(n, nwant);
    for (int i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "\"%s\"[%d] = %lld, want %lld", spec, i,
                      (long long) got[i], (long long) want[i]);
    range_destroy(&r);
    ck_assert_ptr_null(r);
}

static void s_refuse(const char *spec, const char *needle)
{
    char err[256] = "";
    range_t *r = range_parse(spec, err, sizeof err);
    ck_assert_msg(r == NULL, "\"%s\" was accepted", spec);
    ck_assert_msg(err[0] != '\0', "\"%s\": no reason given", spec);
    if (needle)
        ck_assert_msg(strstr(err, needle) != NULL, "\"%s\": reason \"%s\" lacks \"%s\"", spec,
                      err, needle);
}

START_TEST(a_mixed_spec_yields_its_indices_in_order)
{
    char err[256];
    range_t *r = range_parse("1-3,7,10-20:2", err, sizeof err);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(range_count(r), 10);
    range_iter_t it;
    range_iter_init(&it, r);
    int64_t want[] = { 1, 2, 3, 7, 10, 12, 14, 16, 18, 20 };
    int64_t v;
    for (int i = 0; i < 10; i++) {
        ck_assert(range_iter_next(&it, &v));
        ck_assert_int_eq(v, want[i]);
    }
    ck_assert(!range_iter_next(&it, &v));
    ck_assert(!range_iter_next(&it, &v)); /* stays at the end */
    range_destroy(&r);
    range_destroy(&r); /* NULL is fine */
}
END_TEST

START_TEST(every_form_parses)
{
    s_expect("0", (int64_t[]){ 0 }, 1);
    s_expect("5-5", (int64_t[]){ 5 }, 1);
    s_expect("1-5", (int64_t[]){ 1, 2, 3, 4, 5 }, 5);
    s_expect("0-10:3", (int64_t[]){ 0, 3, 6, 9 }, 4);     /* step past hi stops */
    s_expect("0-9:5", (int64_t[]){ 0, 5 }, 2);
    s_expect("2-2:7", (int64_t[]){ 2 }, 1);
    s_expect("1,5,9", (int64_t[]){ 1, 5, 9 }, 3);
    s_expect("9,1", (int64_t[]){ 9, 1 }, 2);               /* order as written */
    s_expect("3,3", (int64_t[]){ 3, 3 }, 2);               /* duplicates kept */
}
END_TEST

START_TEST(spaces_around_elements_are_allowed)
{
    s_expect(" 1-3 , 7 ", (int64_t[]){ 1, 2, 3, 7 }, 4);
    s_expect("\t4", (int64_t[]){ 4 }, 1);
}
END_TEST

START_TEST(malformed_specs_are_refused_with_a_reason)
{
    s_refuse("", "empty");
    s_refuse("   ", "empty");
    s_refuse(NULL, "empty");
    s_refuse("1,,2", "element 2 is empty");
    s_refuse("1,", "element 2 is empty");
    s_refuse(",1", "element 1 is empty");
    s_refuse("10-1", "reversed; write 1-10");
    s_refuse("1-10:0", "step must be >= 1");
    s_refuse("abc", "not N, A-B or A-B:STEP");
    s_refuse("1-x", "not N, A-B or A-B:STEP");
    s_refuse("5-x", "element 1 (\"5-x\")");
    s_refuse("1-", NULL);
    s_refuse("1-5:", NULL);
    s_refuse("1-5:2:3", NULL);
    s_refuse("1.5", NULL);
    s_refuse("1 2", NULL);
    s_refuse("0x10", NULL);
    s_refuse("+3", NULL);
    s_refuse("-5", ">= 0");
    s_refuse("1--5", ">= 0");
    s_refuse("5:2", "a step needs a range");
    s_refuse("1-5:-1", NULL);
    s_refuse("99999999999999999999", "too large");
    s_refuse("9007199254740992", "too large");  /* 2^53: not exact as JSON */
}
END_TEST

START_TEST(huge_ranges_are_counted_without_being_expanded)
{
    char err[256];
    /* A billion indices: counting and walking the start must be instant
       and cost no memory proportional to the count. */
    range_t *r = range_parse("0-999999999", err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_int_eq(range_count(r), 1000000000LL);
    int64_t first[3];
    range_iter_t it;
    range_iter_init(&it, r);
    for (int i = 0; i < 3; i++)
        ck_assert(range_iter_next(&it, &first[i]));
    ck_assert_int_eq(first[2], 2);
    range_destroy(&r);

    r = range_parse("0-1999999999:2", err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_int_eq(range_count(r), 1000000000LL);
    range_destroy(&r);

    r = range_parse("0-99999999,5-104,7", err, sizeof err);
    ck_assert_msg(r != NULL, "%s", err);
    ck_assert_int_eq(range_count(r), 100000101LL);
    range_destroy(&r);

    s_refuse("0-1000000000", "1000000000");                 /* one over the limit */
    s_refuse("0-999999999,0-999999999", "typo");            /* the sum counts */
    s_refuse("0-1999999999:2,5", "typo");
}
END_TEST

START_TEST(walking_near_the_largest_index_does_not_overflow)
{
    s_expect("9007199254740989-9007199254740991",
             (int64_t[]){ 9007199254740989LL, 9007199254740990LL, 9007199254740991LL }, 3);
    s_expect("9007199254740980-9007199254740991:5",
             (int64_t[]){ 9007199254740980LL, 9007199254740985LL, 9007199254740990LL }, 3);
    s_expect("0-9007199254740991:9007199254740991", (int64_t[]){ 0, 9007199254740991LL }, 2);
}
END_TEST

START_TEST(a_million_indices_walk_in_order)
{
    char err[256];
    range_t *r = range_parse("1-1000000", err, sizeof err);
    ck_assert_ptr_nonnull(r);
    range_iter_t it;
    range_iter_init(&it, r);
    /* Counted, then asserted once: a million ck_asserts (each a message
       to Check's parent process) took longer than the test's timeout
       under ASan on a slow machine. */
    int64_t v, expect = 1, n = 0, out_of_order = 0;
    while (range_iter_next(&it, &v)) {
        if (v != expect)
            out_of_order++;
        expect++;
        n++;
    }
    ck_assert_int_eq(out_of_order, 0);
    ck_assert_int_eq(n, 1000000);
    range_destroy(&r);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "cli_range", .tcase = "range" });
}
