/*  Unit tests for worker/fn: built-ins, fn_run's checks, plugins. */
#include "../../worker/fn.h"

#include "../../common/clock.h"
#include "../../worker/fn_builtins.h"

#include "../ztest.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A spec built by hand: only the fields fn_run reads. The strings are
   borrowed, never freed through the spec. */
static proto_spec_t s_spec(const char *fn, const char *args)
{
    proto_spec_t spec;
    memset(&spec, 0, sizeof spec);
    spec.kind = PROTO_KIND_FN;
    spec.fn = (char *) fn;
    spec.args_json = (char *) args;
    spec.index = -1;
    return spec;
}

static void s_clear(proto_result_t *res)
{
    free(res->result_json);
    free(res->error);
    memset(res, 0, sizeof *res);
}

/* Runs fn(args) on reg and returns the result (caller clears). */
static proto_result_t s_run(const fn_registry_t *reg, const char *fn, const char *args)
{
    proto_spec_t spec = s_spec(fn, args);
    proto_result_t res;
    memset(&res, 0, sizeof res);
    ck_assert_int_eq(fn_run(reg, &spec, 42, 7, 1, NULL, &res), 0);
    return res;
}

#define ck_done(res, json)                                                   \
    do {                                                                     \
        ck_assert_msg((res).status == PROTO_ST_DONE, "status %d error %s",   \
                      (int) (res).status, (res).error ? (res).error : "-");  \
        ck_assert_str_eq((res).result_json, json);                           \
        ck_assert_ptr_null((res).error);                                     \
    } while (0)

#define ck_failed(res, msg)                                                  \
    do {                                                                     \
        ck_assert_int_eq((res).status, PROTO_ST_FAILED);                     \
        ck_assert_ptr_null((res).result_json);                               \
        ck_assert_str_eq((res).error, msg);                                  \
    } while (0)

/* One call of a built-in and what it must give: its result when DONE, its
   error when FAILED. */
typedef struct {
    const char *args;
    proto_state_t status;
    const char *want;
} fn_case_t;

/* Runs fn on reg once per case and checks each outcome. */
static void s_expect_cases(const fn_registry_t *reg, const char *fn, const fn_case_t *cases,
                           size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const fn_case_t *c = &cases[i];
        proto_result_t res = s_run(reg, fn, c->args);
        const char *args = c->args ? c->args : "(none)";
        ck_assert_msg(res.status == c->status, "%s %s: status %d, want %d (error %s)", fn, args,
                      (int) res.status, (int) c->status, res.error ? res.error : "-");
        const char *got = c->status == PROTO_ST_DONE ? res.result_json : res.error;
        const char *other = c->status == PROTO_ST_DONE ? res.error : res.result_json;
        ck_assert_msg(got && strcmp(got, c->want) == 0, "%s %s: got %s, want %s", fn, args,
                      got ? got : "NULL", c->want);
        ck_assert_msg(other == NULL, "%s %s: both a result and an error", fn, args);
        s_clear(&res);
    }
}

/* ---- built-ins --------------------------------------------------------- */

START_TEST(square_of_args_n_runs_as_a_task)
{
    fn_registry_t *reg = fn_registry_new();
    ck_assert_ptr_nonnull(reg);

    proto_spec_t spec = s_spec("square", "{\"n\":7}");
    proto_result_t res = {0};
    atomic_bool cancel = false;
    double before = (double) time(NULL);
    ck_assert_int_eq(fn_run(reg, &spec, 42, 7, 2, &cancel, &res), 0);
    ck_done(res, "49");
    ck_assert_int_eq(res.task, 42);
    ck_assert_int_eq(res.attempt, 2);
    ck_assert(!res.timed_out);
    ck_assert(!res.has_exit_code);
    ck_assert(res.started >= before - 1 && res.finished >= res.started);
    s_clear(&res);

    fn_registry_destroy(&reg);
    ck_assert_ptr_null(reg);
}
END_TEST

START_TEST(noop_gives_a_null_result)
{
    static const fn_case_t cases[] = {
        { NULL, PROTO_ST_DONE, "null" },
        { "{\"ignored\":1}", PROTO_ST_DONE, "null" },
    };
    fn_registry_t *reg = fn_registry_new();
    s_expect_cases(reg, "noop", cases, sizeof cases / sizeof *cases);
    fn_registry_destroy(&reg);
}
END_TEST

START_TEST(echo_returns_its_args)
{
    static const fn_case_t cases[] = {
        { "{\"a\":[1,2.5,\"x\"],\"b\":{\"c\":null}}", PROTO_ST_DONE,
          "{\"a\":[1,2.5,\"x\"],\"b\":{\"c\":null}}" },
        { NULL, PROTO_ST_DONE, "null" },
        { "\"h\\u00e9\"", PROTO_ST_DONE, "\"h\xc3\xa9\"" },   /* re-printed compact, as UTF-8 */
    };
    fn_registry_t *reg = fn_registry_new();
    s_expect_cases(reg, "echo", cases, sizeof cases / sizeof *cases);
    fn_registry_destroy(&reg);
}
END_TEST

START_TEST(square_handles_integers_floats_and_the_index)
{
    static const fn_case_t cases[] = {
        { "{\"n\":-4}", PROTO_ST_DONE, "16" },
        { "{\"n\":2.5}", PROTO_ST_DONE, "6.25" },
        { "3", PROTO_ST_DONE, "9" },
        /* Exact as long as a JSON number (a double, in cJSON and so in every
           ztask program) holds the square exactly: below 2^53. */
        { "{\"n\":94906265}", PROTO_ST_DONE, "9007199136250225" },
    };
    fn_registry_t *reg = fn_registry_new();
    s_expect_cases(reg, "square", cases, sizeof cases / sizeof *cases);
    /* Past int64 the square is computed as a double. */
    proto_result_t res = s_run(reg, "square", "{\"n\":3037000500}");
    ck_assert_int_eq(res.status, PROTO_ST_DONE);
    cJSON *num = cJSON_Parse(res.result_json);
    ck_assert(cJSON_IsNumber(num));
    ck_assert(fabs(num->valuedouble - 9223372037000250000.0) < 1e4);
    cJSON_Delete(num);
    s_clear(&res);

    /* No n: the task's array index. */
    proto_spec_t spec = s_spec("square", NULL);
    spec.index = 12;
    ck_assert_int_eq(fn_run(reg, &spec, 1, 1, 1, NULL, &res), 0);
    ck_done(res, "144");
    s_clear(&res);
    spec = s_spec("square", "{\"other\":true}");
    spec.index = 5;
    ck_assert_int_eq(fn_run(reg, &spec, 1, 1, 1, NULL, &res), 0);
    ck_done(res, "25");
    s_clear(&res);
    fn_registry_destroy(&reg);
}
END_TEST

START_TEST(square_rejects_what_is_not_a_number)
{
    static const fn_case_t cases[] = {
        { "{\"n\":\"3\"}", PROTO_ST_FAILED, "square: args.n must be a number" },
        { "{\"n\":null}", PROTO_ST_FAILED, "square: args.n must be a number" },
        { "[1]", PROTO_ST_FAILED, "square: args.n must be a number" },
        /* no n and no index */
        { "{}", PROTO_ST_FAILED, "square: args.n is missing and the task has no index" },
        { "{\"n\":1e200}", PROTO_ST_FAILED, "square: n*n is too large for a JSON number" },
    };
    fn_registry_t *reg = fn_registry_new();
    s_expect_cases(reg, "square", cases, sizeof cases / sizeof *cases);
    fn_registry_destroy(&reg);
}
END_TEST

START_TEST(fail_fails_with_its_message)
{
    static const fn_case_t cases[] = {
        { "{\"message\":\"disk on fire\"}", PROTO_ST_FAILED, "disk on fire" },
        { "{\"message\":42}", PROTO_ST_FAILED, "failed on purpose" },
        /* Errors are made one line and valid UTF-8 (cJSON passes raw bytes). */
        { "{\"message\":\"one\\ntwo \xff!\"}", PROTO_ST_FAILED, "one two \xef\xbf\xbd!" },
    };
    fn_registry_t *reg = fn_registry_new();
    proto_result_t res = s_run(reg, "fail", NULL);
    ck_failed(res, "failed on purpose");
    ck_assert(!res.timed_out);
    s_clear(&res);
    s_expect_cases(reg, "fail", cases, sizeof cases / sizeof *cases);
    fn_registry_destroy(&reg);
}
END_TEST

START_TEST(sleep_takes_seconds_or_a_bare_number)
{
    fn_registry_t *reg = fn_registry_new();
    int64_t t0 = s_now_ms();
    proto_result_t res = s_run(reg, "sleep", "{\"seconds\":0.12}");
    int64_t took = s_now_ms() - t0;
    ck_done(res, "null");
    ck_assert_int_ge(took, 120);
    ck_assert_int_lt(took, 2000);
    s_clear(&res);
    t0 = s_now_ms();
    res = s_run(reg, "sleep", "0.03");
    ck_done(res, "null");
    ck_assert_int_ge(s_now_ms() - t0, 30);
    s_clear(&res);

    const char *bad[] = {"{\"seconds\":-1}", "\"1\"", "{\"secs\":1}", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        res = s_run(reg, "sleep", bad[i]);
        ck_failed(res, "sleep: args must be a number of seconds >= 0, or {\"seconds\":S}");
        s_clear(&res);
    }
    fn_registry_destroy(&reg);
}
END_TEST

static void s_on_usr2(int sig)
{
    (void) sig;
}

typedef struct {
    pthread_t target;
    atomic_bool stop;
} poker_t;

/* Interrupts the target thread's sleeps every 0.3 ms. */
static void *s_poke(void *arg)
{
    poker_t *p = arg;
    while (!atomic_load(&p->stop)) {
        pthread_kill(p->target, SIGUSR2);
        struct timespec ts = {0, 300000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

START_TEST(sleep_is_never_shorter_than_asked_even_when_interrupted)
{
    /* A signal cuts a nanosleep short; with a deadline in whole
       milliseconds the sleep then ended up to 1 ms early (a 10 ms task
       ran 9.0 ms). The task's own times must show the full length (10 us
       of slack for the wall clock being slewed). */
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_usr2;   /* no SA_RESTART: nanosleep returns EINTR */
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR2, &sa, &old), 0);
    poker_t p = {.target = pthread_self()};
    atomic_init(&p.stop, false);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, s_poke, &p), 0);
    fn_registry_t *reg = fn_registry_new();
    double shortest = 1;
    for (int i = 0; i < 20; i++) {
        proto_result_t res = s_run(reg, "sleep", "0.01");
        ck_done(res, "null");
        if (res.finished - res.started < shortest)
            shortest = res.finished - res.started;
        s_clear(&res);
    }
    atomic_store(&p.stop, true);
    pthread_join(th, NULL);
    sigaction(SIGUSR2, &old, NULL);
    fn_registry_destroy(&reg);
    ck_assert_msg(shortest >= 0.00999, "a 10 ms sleep took %.6f s", shortest);
}
END_TEST

START_TEST(unknown_function_lists_what_the_worker_has)
{
    fn_registry_t *reg = fn_registry_new();
    ck_assert(!fn_registry_has(reg, "nope"));
    proto_result_t res = s_run(reg, "nope", "{}");
    ck_failed(res, "unknown function 'nope' (this worker has: noop, echo, sleep, square, fail)");
    s_clear(&res);

    /* Not an FN spec at all. */
    proto_spec_t spec = s_spec(NULL, NULL);
    spec.kind = PROTO_KIND_EXEC;
    ck_assert_int_eq(fn_run(reg, &spec, 1, 1, 1, NULL, &res), -1);
    ck_failed(res, "not a function task");
    s_clear(&res);
    fn_registry_destroy(&reg);
}
END_TEST

/* ---- cancel and timeout ------------------------------------------------ */

/* The tests' own functions, added with fn_registry_add. Test-global state
   is fine here: each Check test runs in its own process. */
static sem_t s_entered;             /* posted when a probe function starts */
static atomic_bool *s_cancel_ptr;   /* for the function that cancels itself */
static atomic_int s_calls;

/* Posts s_entered, then is the built-in sleep: the test knows the sleep
   has started before it cancels. */
static int s_probe_sleep(const ztask_call_t *call, char **result, char **error)
{
    sem_post(&s_entered);
    for (const ztask_fn_entry_t *e = fn_builtins(); e->name; e++)
        if (strcmp(e->name, "sleep") == 0)
            return e->fn(call, result, error);
    return 1;
}

typedef struct {
    const fn_registry_t *reg;
    proto_spec_t spec;
    atomic_bool cancel;
    proto_result_t res;
    int rc;
} runner_t;

static void *s_runner(void *arg)
{
    runner_t *r = arg;
    r->rc = fn_run(r->reg, &r->spec, 9, 3, 1, &r->cancel, &r->res);
    return NULL;
}

static void s_wait_entered(void)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    int rc;
    while ((rc = sem_timedwait(&s_entered, &dl)) != 0 && errno == EINTR)
        ;
    ck_assert_msg(rc == 0, "the function never started");
}

START_TEST(sleep_is_cancelled_promptly_from_another_thread)
{
    sem_init(&s_entered, 0, 0);
    fn_registry_t *reg = fn_registry_new();
    char err[256];
    ck_assert_int_eq(fn_registry_add(reg, "probe_sleep", s_probe_sleep, err, sizeof err), 0);

    runner_t *r = calloc(1, sizeof *r);
    r->reg = reg;
    r->spec = s_spec("probe_sleep", "{\"seconds\":30}");
    atomic_init(&r->cancel, false);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, s_runner, r), 0);
    s_wait_entered();
    int64_t t0 = s_now_ms();
    atomic_store(&r->cancel, true);
    pthread_join(th, NULL);
    int64_t took = s_now_ms() - t0;

    ck_assert_int_eq(r->rc, 0);
    ck_assert_int_eq(r->res.status, PROTO_ST_CANCELLED);
    ck_assert(!r->res.timed_out);
    ck_assert_str_eq(r->res.error, "cancelled");
    ck_assert_ptr_null(r->res.result_json);
    /* Sleep looks at cancel every 50 ms; allow for slow sanitizer runs. */
    ck_assert_int_lt(took, 1000);
    s_clear(&r->res);
    free(r);
    fn_registry_destroy(&reg);
    sem_destroy(&s_entered);
}
END_TEST

static int s_counted(const ztask_call_t *call, char **result, char **error)
{
    (void) call;
    (void) result;
    (void) error;
    atomic_fetch_add(&s_calls, 1);
    return 0;
}

START_TEST(a_task_cancelled_before_it_starts_does_not_run)
{
    fn_registry_t *reg = fn_registry_new();
    ck_assert_int_eq(fn_registry_add(reg, "counted", s_counted, NULL, 0), 0);
    proto_spec_t spec = s_spec("counted", NULL);
    atomic_bool cancel = true;
    proto_result_t res = {0};
    ck_assert_int_eq(fn_run(reg, &spec, 1, 1, 1, &cancel, &res), 0);
    ck_assert_int_eq(res.status, PROTO_ST_CANCELLED);
    ck_assert_int_eq(atomic_load(&s_calls), 0);
    s_clear(&res);
    atomic_store(&cancel, false);
    ck_assert_int_eq(fn_run(reg, &spec, 1, 1, 1, &cancel, &res), 0);
    ck_done(res, "null");
    ck_assert_int_eq(atomic_load(&s_calls), 1);
    s_clear(&res);
    fn_registry_destroy(&reg);
}
END_TEST

/* Ignores cancel and succeeds, but the task was cancelled while it ran. */
static int s_cancels_itself(const ztask_call_t *call, char **result, char **error)
{
    (void) call;
    (void) error;
    atomic_store(s_cancel_ptr, true);
    *result = malloc(2);
    memcpy(*result, "1", 2);
    return 0;
}

START_TEST(a_cancel_during_the_run_wins_over_a_result)
{
    fn_registry_t *reg = fn_registry_new();
    ck_assert_int_eq(fn_registry_add(reg, "stubborn", s_cancels_itself, NULL, 0), 0);
    atomic_bool cancel = false;
    s_cancel_ptr = &cancel;
    proto_spec_t spec = s_spec("stubborn", NULL);
    proto_result_t res = {0};
    ck_assert_int_eq(fn_run(reg, &spec, 1, 1, 1, &cancel, &res), 0);
    ck_assert_int_eq(res.status, PROTO_ST_CANCELLED);
    ck_assert_ptr_null(res.result_json);
    s_clear(&res);
    fn_registry_destroy(&reg);
}
END_TEST

START_TEST(timeout_stops_sleep_and_fails_the_task)
{
    fn_registry_t *reg = fn_registry_new();
    proto_spec_t spec = s_spec("sleep", "{\"seconds\":30}");
    spec.timeout = 0.2;
    atomic_bool cancel = false;
    proto_result_t res = {0};
    int64_t t0 = s_now_ms();
    ck_assert_int_eq(fn_run(reg, &spec, 1, 1, 1, &cancel, &res), 0);
    int64_t took = s_now_ms() - t0;
    ck_assert_int_eq(res.status, PROTO_ST_FAILED);
    ck_assert(res.timed_out);
    ck_assert_str_eq(res.error, "function 'sleep' timed out after 0.2s");
    ck_assert_int_ge(took, 200);
    ck_assert_int_lt(took, 1500);
    s_clear(&res);

    /* A task that ends before its timeout is not touched by it. */
    spec = s_spec("sleep", "0.01");
    spec.timeout = 5;
    ck_assert_int_eq(fn_run(reg, &spec, 1, 1, 1, &cancel, &res), 0);
    ck_done(res, "null");
    ck_assert(!res.timed_out);
    s_clear(&res);
    fn_registry_destroy(&reg);
}
END_TEST

/* Args "<jump> <ms>": sets the wall clock <jump> seconds off, then works
   in 10 ms steps for <ms> (monotonic) unless cancelled() says stop. */
static int s_jump_then_work(const ztask_call_t *call, char **result, char **error)
{
    (void) result;
    double jump = 0;
    int ms = 0;
    ck_assert_int_eq(sscanf(call->args_json, "%lf %d", &jump, &ms), 2);
    clock_wall_offset_set(jump);
    for (int64_t end = s_now_ms() + ms; s_now_ms() < end;) {
        if (call->cancelled(call)) {
            *error = strdup("stopped: cancelled() said so");
            return 1;
        }
        struct timespec step = {0, 10 * 1000 * 1000};
        nanosleep(&step, NULL);
    }
    return 0;
}

/* The timeout runs on the monotonic clock: the wall clock set a day
   forward while the function runs does not time it out, set a day back
   it does not let the function run past its timeout. */
START_TEST(wall_clock_jumps_neither_time_out_a_function_early_nor_late)
{
    fn_registry_t *reg = fn_registry_new();
    char err[256];
    ck_assert_int_eq(fn_registry_add(reg, "jump", s_jump_then_work, err, sizeof err), 0);
    proto_spec_t spec = s_spec("jump", "86400 300");
    spec.timeout = 30;
    proto_result_t res = {0};
    ck_assert_int_eq(fn_run(reg, &spec, 1, 1, 1, NULL, &res), 0);
    ck_assert_msg(res.status == PROTO_ST_DONE && !res.timed_out,
                  "the wall clock a day ahead ended the function: %s",
                  res.error ? res.error : "-");
    /* The record has the jump in it: it came between start and end. */
    ck_assert_double_ge(res.finished - res.started, 86400.0);
    s_clear(&res);

    spec = s_spec("jump", "-86400 10000");
    spec.timeout = 0.3;
    int64_t t0 = s_now_ms();
    ck_assert_int_eq(fn_run(reg, &spec, 1, 1, 1, NULL, &res), 0);
    int64_t took = s_now_ms() - t0;
    ck_assert_msg(res.timed_out, "the wall clock a day back let the function run %d ms",
                  (int) took);
    ck_assert_int_eq(res.status, PROTO_ST_FAILED);
    ck_assert_int_lt(took, 5000);
    ck_assert_double_le(res.finished - res.started, -86000.0);
    s_clear(&res);
    fn_registry_destroy(&reg);
}
END_TEST

/* ---- what functions return ---------------------------------------------- */

/* A function scripted by its args, which for this test are plain text,
   not JSON (fn_run passes args through untouched): "R:<text>" returns
   text as the result, "E:<text>" fails with text, "N:<rc>" fails with rc
   and no message, "B:" returns a result over FN_MAX_RESULT. */
static int s_scripted(const ztask_call_t *call, char **result, char **error)
{
    const char *a = call->args_json;
    if (a[0] == 'B') {  /* a JSON string one byte over the limit */
        size_t n = FN_MAX_RESULT + 1;
        char *big = malloc(n + 1);
        memset(big, 'x', n);
        big[0] = big[n - 1] = '"';
        big[n] = '\0';
        *result = big;
        return 0;
    }
    if (a[0] == 'R')
        *result = strdup(a + 2);
    else if (a[0] == 'E')
        *error = strdup(a + 2);
    return a[0] == 'R' ? 0 : a[0] == 'E' ? 1 : atoi(a + 2);
}

START_TEST(results_are_checked_and_made_compact)
{
    fn_registry_t *reg = fn_registry_new();
    ck_assert_int_eq(fn_registry_add(reg, "scripted", s_scripted, NULL, 0), 0);
    struct {
        const char *args;
        proto_state_t status;
        const char *text;  /* result_json when DONE, error when FAILED */
    } cases[] = {
        {"R:  { \"a\" : [1, 2],\n \"b\": \"\\u00e9\" }\n", PROTO_ST_DONE,
         "{\"a\":[1,2],\"b\":\"\xc3\xa9\"}"},
        {"R:[01, 1.]", PROTO_ST_DONE, "[1,1]"},  /* cJSON tolerates these; re-printing fixes them */
        {"R:\"tab\there\"", PROTO_ST_DONE, "\"tab\\there\""},
        {"B:", PROTO_ST_FAILED, "function 'scripted' returned a result over 4194304 bytes"},
        {"R:+1", PROTO_ST_FAILED, "function 'scripted' returned invalid JSON"},
        {"R:{", PROTO_ST_FAILED, "function 'scripted' returned invalid JSON"},
        {"R:1 2", PROTO_ST_FAILED, "function 'scripted' returned invalid JSON"},
        {"R:", PROTO_ST_FAILED, "function 'scripted' returned invalid JSON"},
        {"R:nul", PROTO_ST_FAILED, "function 'scripted' returned invalid JSON"},
        {"R:\"\xff\"", PROTO_ST_FAILED, "function 'scripted' returned invalid JSON (not UTF-8)"},
        {"E:line one\r\nline two", PROTO_ST_FAILED, "line one  line two"},
        {"N:3", PROTO_ST_FAILED, "function 'scripted' failed (returned 3)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        proto_result_t res = s_run(reg, "scripted", cases[i].args);
        ck_assert_msg(res.status == cases[i].status, "case %zu: status %d (%s)", i,
                      (int) res.status, res.error ? res.error : "-");
        if (cases[i].status == PROTO_ST_DONE)
            ck_assert_str_eq(res.result_json, cases[i].text);
        else
            ck_assert_str_eq(res.error, cases[i].text);
        s_clear(&res);
    }
    fn_registry_destroy(&reg);
}
END_TEST

static int s_show_call(const ztask_call_t *call, char **result, char **error)
{
    (void) error;
    char buf[256];
    snprintf(buf, sizeof buf, "[%d,%lld,%lld,%lld,%d,\"%s\",%d]", call->abi,
             (long long) call->task_id, (long long) call->job_id, (long long) call->index,
             call->attempt, call->args_json, call->cancelled(call));
    *result = strdup(buf);
    return 0;
}

START_TEST(the_function_sees_the_task_in_its_call)
{
    fn_registry_t *reg = fn_registry_new();
    ck_assert_int_eq(fn_registry_add(reg, "show", s_show_call, NULL, 0), 0);
    proto_spec_t spec = s_spec("show", NULL);
    spec.index = 4;
    spec.timeout = 60;
    atomic_bool cancel = false;
    proto_result_t res = {0};
    ck_assert_int_eq(fn_run(reg, &spec, 100, 200, 3, &cancel, &res), 0);
    ck_done(res, "[1,100,200,4,3,\"null\",0]");
    s_clear(&res);
    fn_registry_destroy(&reg);
}
END_TEST

START_TEST(names_are_unique_and_listed_in_order)
{
    fn_registry_t *reg = fn_registry_new();
    char err[256] = "";
    ck_assert(fn_registry_has(reg, "sleep"));
    ck_assert(!fn_registry_has(reg, NULL));
    ck_assert_int_eq(fn_registry_add(reg, "square", s_counted, err, sizeof err), -1);
    ck_assert_str_eq(err, "function 'square' already defined (built-in)");
    ck_assert_int_eq(fn_registry_add(reg, "", s_counted, err, sizeof err), -1);
    ck_assert_str_eq(err, "cannot add a function with an empty name");
    ck_assert_int_eq(fn_registry_add(reg, "tab\there", s_counted, err, sizeof err), -1);
    ck_assert_int_eq(fn_registry_add(reg, "mine", s_counted, err, sizeof err), 0);
    char *names = fn_registry_names(reg);
    ck_assert_str_eq(names, "noop, echo, sleep, square, fail, mine");
    free(names);
    fn_registry_destroy(&reg);
    fn_registry_destroy(&reg);  /* NULL is fine */
}
END_TEST

/* ---- plugins ----------------------------------------------------------- */

/* Where the build put libmytasks.so: tests/run.sh exports ZTASK_LIB_DIR. */
static char *s_plugin_path(void)
{
    const char *dir = getenv("ZTASK_LIB_DIR");
    char *path;
    if (asprintf(&path, "%s/libmytasks.so", dir && *dir ? dir : "build/release/lib") < 0)
        abort();
    ck_assert_msg(access(path, R_OK) == 0, "%s missing (build it, set ZTASK_LIB_DIR)", path);
    return path;
}

START_TEST(the_example_plugin_loads_and_its_functions_run)
{
    fn_registry_t *reg = fn_registry_new();
    char *path = s_plugin_path();
    char err[512] = "";
    ck_assert_msg(fn_registry_load(reg, path, err, sizeof err) == 0, "%s", err);
    ck_assert(fn_registry_has(reg, "wordcount"));
    ck_assert(fn_registry_has(reg, "upper"));
    ck_assert(fn_registry_has(reg, "fib"));

    proto_result_t res = s_run(reg, "wordcount", "{\"text\":\"a b  c\\n\\td\"}");
    ck_done(res, "4");
    s_clear(&res);
    res = s_run(reg, "wordcount", "{\"x\":{\"text\":1},\"text\":\"\"}");
    ck_done(res, "0");
    s_clear(&res);
    res = s_run(reg, "wordcount", "{\"text\":3}");
    ck_failed(res, "wordcount: args.text must be a string");
    s_clear(&res);
    res = s_run(reg, "upper", "{\"text\":\"h\\u00e9llo \\\"x\\\"\\n\"}");
    ck_done(res, "\"H\xc3\xa9LLO \\\"X\\\"\\n\"");
    s_clear(&res);
    res = s_run(reg, "fib", "{\"n\":20}");
    ck_done(res, "6765");
    s_clear(&res);
    res = s_run(reg, "fib", "{\"n\":93}");
    ck_failed(res, "fib: args.n must be an integer from 0 to 92");
    s_clear(&res);

    /* fib is slow on purpose and polls cancelled(): a timeout stops it. */
    proto_spec_t spec = s_spec("fib", "{\"n\":80}");
    spec.timeout = 0.2;
    int64_t t0 = s_now_ms();
    ck_assert_int_eq(fn_run(reg, &spec, 1, 1, 1, NULL, &res), 0);
    ck_assert_int_eq(res.status, PROTO_ST_FAILED);
    ck_assert(res.timed_out);
    ck_assert_int_lt(s_now_ms() - t0, 3000);
    s_clear(&res);

    free(path);
    fn_registry_destroy(&reg);
}
END_TEST

START_TEST(a_plugin_cannot_redefine_a_function)
{
    fn_registry_t *reg = fn_registry_new();
    char *path = s_plugin_path();
    char err[1024] = "";
    char want[1200];
    ck_assert_int_eq(fn_registry_load(reg, path, err, sizeof err), 0);
    ck_assert_int_eq(fn_registry_load(reg, path, err, sizeof err), -1);
    snprintf(want, sizeof want, "plugin %s: function 'wordcount' already defined (%s)", path,
             path);
    ck_assert_str_eq(err, want);
    fn_registry_destroy(&reg);

    /* A clash on the last entry adds none of the plugin's functions. */
    reg = fn_registry_new();
    ck_assert_int_eq(fn_registry_add(reg, "fib", s_counted, NULL, 0), 0);
    ck_assert_int_eq(fn_registry_load(reg, path, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "function 'fib' already defined"));
    ck_assert(!fn_registry_has(reg, "wordcount"));
    fn_registry_destroy(&reg);
    free(path);
}
END_TEST

START_TEST(plugin_load_errors_say_what_is_wrong)
{
    fn_registry_t *reg = fn_registry_new();
    char err[1024] = "";

    ck_assert_int_eq(fn_registry_load(reg, "/nonexistent/libnope.so", err, sizeof err), -1);
    ck_assert_str_eq(err, "plugin /nonexistent/libnope.so: cannot open: No such file or directory");

    char dir[] = "/tmp/test_fn_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char text[64];
    snprintf(text, sizeof text, "%s/notelf.so", dir);
    FILE *f = fopen(text, "w");
    ck_assert_ptr_nonnull(f);
    fputs("this is not a shared object\n", f);
    fclose(f);
    ck_assert_int_eq(fn_registry_load(reg, text, err, sizeof err), -1);
    char want[256];
    snprintf(want, sizeof want, "plugin %s: cannot load: ", text);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
    unlink(text);
    rmdir(dir);

    /* A real shared object that is not a plugin. */
    ck_assert_int_eq(fn_registry_load(reg, "libm.so.6", err, sizeof err), -1);
    ck_assert_str_eq(err, "plugin libm.so.6: not a ztask plugin (no symbol ztask_plugin_functions)");

    ck_assert_int_eq(fn_registry_load(reg, "", err, sizeof err), -1);
    char *names = fn_registry_names(reg);
    ck_assert_str_eq(names, "noop, echo, sleep, square, fail");  /* nothing was added */
    free(names);
    fn_registry_destroy(&reg);
}
END_TEST

/* Builds a one-function plugin variant with the system compiler, for the
   cases the example plugin cannot show (wrong ABI, bad tables). Returns
   the .so path, or NULL when no compiler is around (the test skips). */
static char *s_build_variant(const char *dir, const char *tag, const char *defines)
{
    const char *src_dir = getenv("ZTASK_SRC_DIR");
    const char *cc = getenv("CC");
    char *c_path, *so_path, *cmd;
    if (asprintf(&c_path, "%s/%s.c", dir, tag) < 0 || asprintf(&so_path, "%s/%s.so", dir, tag) < 0)
        abort();
    FILE *f = fopen(c_path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("#include \"ztask_plugin.h\"\n"
          "#include <stddef.h>\n"
          "static int f(const ztask_call_t *c, char **r, char **e)\n"
          "{ (void) c; (void) r; (void) e; return 0; }\n"
          "static const ztask_fn_entry_t t[] = {{\"v1\", f}, {NAME2, f}, {NULL, NULL}};\n"
          "const ztask_fn_entry_t *ztask_plugin_functions(int *abi)\n"
          "{ *abi = ABI; return TABLE; }\n",
          f);
    fclose(f);
    if (asprintf(&cmd, "%s -shared -fPIC -I%s/include %s -o %s %s 2>/dev/null",
                 cc && *cc ? cc : "cc", src_dir && *src_dir ? src_dir : ".", defines, so_path,
                 c_path) < 0)
        abort();
    int rc = system(cmd);
    free(cmd);
    unlink(c_path);
    free(c_path);
    if (rc != 0) {
        free(so_path);
        return NULL;
    }
    return so_path;
}

START_TEST(plugins_with_a_wrong_abi_or_table_are_refused)
{
    char dir[] = "/tmp/test_fn_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    struct {
        const char *tag, *defines, *error_tail;
    } cases[] = {
        {"good", "-DABI=1 -DTABLE=t -DNAME2='\"v2\"'", NULL},
        {"abi2", "-DABI=2 -DTABLE=t -DNAME2='\"v2\"'", "plugin ABI 2, this worker supports ABI 1"},
        {"notable", "-DABI=1 -DTABLE=NULL -DNAME2='\"v2\"'", "returned no function table"},
        {"twice", "-DABI=1 -DTABLE=t -DNAME2='\"v1\"'", "function 'v1' defined twice in its table"},
        {"noname", "-DABI=1 -DTABLE=t+1 -DNAME2='\"\"'", "entry 0 has an empty name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *so = s_build_variant(dir, cases[i].tag, cases[i].defines);
        if (!so) {
            printf("SKIP: no C compiler to build test plugins\n");
            rmdir(dir);
            return;
        }
        fn_registry_t *reg = fn_registry_new();
        char err[1024] = "";
        int rc = fn_registry_load(reg, so, err, sizeof err);
        if (!cases[i].error_tail) {
            ck_assert_msg(rc == 0, "%s", err);
            ck_assert(fn_registry_has(reg, "v1") && fn_registry_has(reg, "v2"));
        } else {
            char want[1200];
            snprintf(want, sizeof want, "plugin %s: %s", so, cases[i].error_tail);
            ck_assert_int_eq(rc, -1);
            ck_assert_str_eq(err, want);
            ck_assert(!fn_registry_has(reg, "v1"));
        }
        fn_registry_destroy(&reg);
        unlink(so);
        free(so);
    }
    rmdir(dir);
}
END_TEST

/* Undone after each case, for CK_FORK=no runs where cases share a process. */
static void s_wall_clock_reset(void)
{
    clock_wall_offset_set(0);
}

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "fn",
                                 .tcase = "core",
                                 .timeout_s = 60,
                                 .teardown = s_wall_clock_reset });
}
