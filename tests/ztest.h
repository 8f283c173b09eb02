/*  ztest: Check tests that register themselves.

    Defining a test registers it. Every suite used to name each test twice,
    once in START_TEST and again in a tcase_add_test line, and a grep in CI
    caught the ones added to the first list and forgotten in the second.
    Here START_TEST (Check's macro, redefined) also records the test in a
    list built before main runs (a constructor per test), and the suite adds
    the whole list at once, in source order:

        START_TEST(a_queue_pops_in_priority_order) { ... } END_TEST
        ...
        int main(void)
        {
            return zt_run(&(zt_suite_t){ .suite = "sched", .tcase = "sched" });
        }

    zt_run builds the suite (one test case, every test of the file) and
    runs it; zt_add_tests adds the list to a test case built by hand.

    Variants: START_LOOP_TEST(name, start, end) is Check's loop test (run for
    _i in [start, end), both evaluated before main); START_TIMED_TEST(name,
    seconds) gives a test its own timeout, used by zt_case_per_test (one test
    case per test, as the end-to-end suites run them).

    tcase_add_test and tcase_add_loop_test are poisoned after this header and
    START_TEST no longer declares the `name` pointer they took, so a
    registration line left over from the old style fails to compile instead
    of running a test twice.

    Threads: the list is built by constructors before main and only read
    after (by main's thread, and by zt_check_recorded inside a test).
    Records are static: nothing here allocates but Check's own objects.
    Include this header instead of <check.h>, in the file that holds the
    tests and main (the list is per translation unit: static).
*/
#ifndef ZTASK_TESTS_ZTEST_H
#define ZTASK_TESTS_ZTEST_H

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/util.h"   /* ZT_SANITIZED */

typedef struct zt_test {
    const TTest *test;     /* Check's record: name, function, file, line */
    int loop_start;        /* Check's loop range; [0, 1) for a plain test */
    int loop_end;
    double timeout_s;      /* START_TIMED_TEST's; 0: the test case's */
    struct zt_test *next;  /* in source order */
} zt_test_t;

/* This file's tests, in source order. */
static zt_test_t *zt_tests_ __attribute__((unused));

/* Called by each test's constructor: links t in by line number, so the
   order does not depend on the order in which constructors run. */
static inline void zt_record_(zt_test_t *t)
{
    zt_test_t **p = &zt_tests_;
    while (*p && (*p)->test->line <= t->test->line)
        p = &(*p)->next;
    t->next = *p;
    *p = t;
}

#define ZT_DEFINE_(name, start, end, timeout)                                                     \
    static void name##_fn(int _i CK_ATTRIBUTE_UNUSED);                                            \
    static const TTest name##_ttest = { #name, name##_fn, __FILE__, __LINE__ };                   \
    static zt_test_t name##_zt = { .test = &name##_ttest, .timeout_s = (timeout) };               \
    __attribute__((constructor)) static void name##_zt_record(void)                              \
    {                                                                                             \
        name##_zt.loop_start = (start);                                                           \
        name##_zt.loop_end = (end);                                                               \
        zt_record_(&name##_zt);                                                                   \
    }                                                                                             \
    static void name##_fn(int _i CK_ATTRIBUTE_UNUSED)

#undef START_TEST
/* A test: Check's START_TEST, recorded for zt_add_tests. End with END_TEST. */
#define START_TEST(name) ZT_DEFINE_(name, 0, 1, 0)
/* A loop test: the body runs once per _i in [start, end). */
#define START_LOOP_TEST(name, start, end) ZT_DEFINE_(name, start, end, 0)
/* A test with its own timeout in seconds (for zt_case_per_test). */
#define START_TIMED_TEST(name, seconds) ZT_DEFINE_(name, 0, 1, seconds)

/* How many tests this file defines. */
static inline int zt_count(void)
{
    int n = 0;
    for (const zt_test_t *t = zt_tests_; t; t = t->next)
        n++;
    return n;
}

/* The suite runs under valgrind (tests/memcheck.sh sets
   ZTASK_TEST_VALGRIND=1). */
static inline bool zt_valgrind(void)
{
    const char *v = getenv("ZTASK_TEST_VALGRIND");
    return v && strcmp(v, "1") == 0;
}

/* n, or n / 10 (at least 1) when the suite runs under valgrind
   (tests/memcheck.sh sets ZTASK_TEST_VALGRIND=1), for the size of a
   property loop: the property is checked whole by make test, asan and
   tsan, and memcheck looks for invalid accesses, uninitialised reads and
   leaks on the paths, which a tenth of the inputs takes as well
   (test_proto's two number loops were a third of make memcheck's time). */
static inline int zt_loops(int n)
{
    return zt_valgrind() ? (n / 10 > 0 ? n / 10 : 1) : n;
}

/* A wait for something that must come (ms), stretched 4 times under
   valgrind and 3 times in sanitizer builds, where a loaded machine makes
   a master thread take seconds for a turn (test_master took 0 of 65
   tasks in 3 s under valgrind at load 10, and no resend in 3 s under
   TSan at load 6). Only for positive waits: a window in which nothing
   may arrive needs no stretching. */
static inline int zt_ms(int ms)
{
    if (zt_valgrind())
        return ms * 4;
#ifdef ZT_SANITIZED
    return ms * 3;
#else
    return ms;
#endif
}

/* Adds every test of this file to tc, in source order. */
static inline void zt_add_tests(TCase *tc)
{
    for (const zt_test_t *t = zt_tests_; t; t = t->next)
        _tcase_add_test(tc, t->test, 0, 0, t->loop_start, t->loop_end);
}

/* A unit suite: one test case holding every test of this file, with its
   timeout (0: Check's default, 4 s) and checked fixture (either function
   may be NULL; run around each test, in the test's process). */
typedef struct {
    const char *suite;
    const char *tcase;
    double timeout_s;
    SFun setup;
    SFun teardown;
} zt_suite_t;

/* Runs every test of this file as the suite cfg describes and returns
   main's exit status: EXIT_SUCCESS when none failed. Blocks until done. */
static inline int zt_run(const zt_suite_t *cfg)
{
    Suite *s = suite_create(cfg->suite);
    TCase *tc = tcase_create(cfg->tcase);
    if (cfg->timeout_s > 0)
        tcase_set_timeout(tc, cfg->timeout_s);
    if (cfg->setup || cfg->teardown)
        tcase_add_checked_fixture(tc, cfg->setup, cfg->teardown);
    zt_add_tests(tc);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* A suite named name with one test case per test of this file, each named
   after its test, with the test's START_TIMED_TEST seconds times scale as
   its timeout. Returns the suite (the caller's; srunner_free frees it). */
static inline Suite *zt_case_per_test(const char *name, double scale)
{
    Suite *s = suite_create(name);
    for (const zt_test_t *t = zt_tests_; t; t = t->next) {
        TCase *tc = tcase_create(t->test->name);
        if (t->timeout_s > 0)
            tcase_set_timeout(tc, t->timeout_s * scale);
        _tcase_add_test(tc, t->test, 0, 0, t->loop_start, t->loop_end);
        suite_add_tcase(s, tc);
    }
    return s;
}

/* The check on this header: every line of the source file at path (this
   file's, found through ZTASK_SRC_DIR) that opens with START_TEST(,
   START_LOOP_TEST( or START_TIMED_TEST( names a recorded test; a missing
   one fails the current test with its name. Returns how many definitions
   the file holds, or -1 when it cannot be read. */
static inline int zt_check_recorded(const char *path)
{
    static const char *const tags[] = { "START_TEST(", "START_LOOP_TEST(", "START_TIMED_TEST(" };
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[1024];
    int defined = 0;
    while (fgets(line, sizeof line, f)) {
        for (size_t k = 0; k < sizeof tags / sizeof *tags; k++) {
            size_t n = strlen(tags[k]);
            if (strncmp(line, tags[k], n) != 0)
                continue;
            char name[256] = "";
            sscanf(line + n, "%255[A-Za-z0-9_]", name);
            const zt_test_t *t = zt_tests_;
            while (t && strcmp(t->test->name, name) != 0)
                t = t->next;
            ck_assert_msg(t != NULL, "%s: test %s is defined but not recorded", path, name);
            defined++;
        }
    }
    fclose(f);
    ck_assert_int_eq(defined, zt_count());
    return defined;
}

#undef tcase_add_test
#undef tcase_add_loop_test
#pragma GCC poison tcase_add_test tcase_add_loop_test

#endif
