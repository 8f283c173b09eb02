/*  fn_builtins: noop, echo, sleep, square, fail (see fn_builtins.h).

    Each function follows the plugin rules: *result and *error are
    malloc'd text that fn_run frees with free(); a NULL *result is a null
    result. Errors start with the function's name so a user reading a
    failed task sees which function complained.
*/
#include "fn_builtins.h"

#include "../common/clock.h"
#include "../common/util.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The longest a sleep waits between two looks at cancelled(): the bound on
   how late a cancel or timeout is noticed. */
#define SLEEP_SLICE_MS 50

/* Parses the call's args; NULL (with *error set) when they are not JSON,
   which a validated spec never gives but a direct caller might. */
static cJSON *s_args(const ztask_call_t *call, const char *fn, char **error)
{
    const char *text = call->args_json ? call->args_json : "null";
    cJSON *args = cJSON_Parse(text);
    if (!args)
        *error = xasprintf("%s: args are not valid JSON", fn);
    return args;
}

static int s_noop(const ztask_call_t *call, char **result, char **error)
{
    (void) call;
    (void) result;
    (void) error;
    return 0;
}

static int s_echo(const ztask_call_t *call, char **result, char **error)
{
    (void) error;
    *result = xstrdup(call->args_json ? call->args_json : "null");
    return 0;
}

static int s_sleep(const ztask_call_t *call, char **result, char **error)
{
    (void) result;
    cJSON *args = s_args(call, "sleep", error);
    if (!args)
        return 1;
    const cJSON *secs = cJSON_IsObject(args) ? cJSON_GetObjectItemCaseSensitive(args, "seconds")
                                             : args;
    if (!cJSON_IsNumber(secs) || !isfinite(secs->valuedouble) || secs->valuedouble < 0) {
        cJSON_Delete(args);
        *error = xstrdup("sleep: args must be a number of seconds >= 0, or {\"seconds\":S}");
        return 1;
    }
    double seconds = secs->valuedouble;
    cJSON_Delete(args);

    /* Beyond ~31 years the exact length stops mattering; clamping keeps the
       deadline arithmetic far from overflow. Microseconds: a deadline in
       whole milliseconds, taken late in one, ended a 10 ms sleep after
       9.0 ms. */
    int64_t us = seconds > 1e9 ? (int64_t) 1e15 : (int64_t) ceil(seconds * 1e6);
    int64_t end = clock_mono_us() + us;
    for (;;) {
        if (call->cancelled(call)) {
            *error = xstrdup("sleep: cancelled");
            return 1;
        }
        int64_t left = end - clock_mono_us();
        if (left <= 0)
            return 0;
        if (left > SLEEP_SLICE_MS * 1000)
            left = SLEEP_SLICE_MS * 1000;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long) left * 1000L};
        nanosleep(&ts, NULL);
    }
}

/* Largest |n| whose square fits in int64: floor(sqrt(INT64_MAX)). */
#define SQUARE_INT_MAX INT64_C(3037000499)

/* Doubles up to 2^53 hold every integer exactly; beyond, "integer" loses
   meaning and the result is computed as a double. */
#define EXACT_INT_LIMIT 9007199254740992.0

static int s_square_text(bool is_int, int64_t n, double d, char **result, char **error)
{
    if (is_int && n >= -SQUARE_INT_MAX && n <= SQUARE_INT_MAX) {
        *result = xasprintf("%" PRId64, n * n);
        return 0;
    }
    double sq = is_int ? (double) n * (double) n : d * d;
    if (!isfinite(sq)) {
        *error = xstrdup("square: n*n is too large for a JSON number");
        return 1;
    }
    cJSON *num = cJSON_CreateNumber(sq);
    char *text = cJSON_PrintUnformatted(num);
    cJSON_Delete(num);
    if (!text) {
        *error = xstrdup("square: cannot format the result");
        return 1;
    }
    *result = xstrdup(text);
    cJSON_free(text);
    return 0;
}

static int s_square(const ztask_call_t *call, char **result, char **error)
{
    cJSON *args = s_args(call, "square", error);
    if (!args)
        return 1;
    /* {"n":N}, a bare number, or nothing at all (then the array index). */
    const cJSON *n = NULL;
    if (cJSON_IsObject(args))
        n = cJSON_GetObjectItemCaseSensitive(args, "n");
    else if (!cJSON_IsNull(args))
        n = args;

    int rc;
    if (!n) {
        if (call->index < 0) {
            *error = xstrdup("square: args.n is missing and the task has no index");
            rc = 1;
        } else {
            rc = s_square_text(true, call->index, 0, result, error);
        }
    } else if (!cJSON_IsNumber(n) || !isfinite(n->valuedouble)) {
        *error = xstrdup("square: args.n must be a number");
        rc = 1;
    } else {
        double d = n->valuedouble;
        bool is_int = d == trunc(d) && fabs(d) <= EXACT_INT_LIMIT;
        rc = s_square_text(is_int, is_int ? (int64_t) d : 0, d, result, error);
    }
    cJSON_Delete(args);
    return rc;
}

static int s_fail(const ztask_call_t *call, char **result, char **error)
{
    (void) result;
    cJSON *args = cJSON_Parse(call->args_json ? call->args_json : "null");
    const cJSON *msg = cJSON_IsObject(args) ? cJSON_GetObjectItemCaseSensitive(args, "message")
                                            : NULL;
    *error = xstrdup(cJSON_IsString(msg) ? msg->valuestring : "failed on purpose");
    cJSON_Delete(args);
    return 1;
}

static const ztask_fn_entry_t s_table[] = {
    {"noop", s_noop},     {"echo", s_echo}, {"sleep", s_sleep},
    {"square", s_square}, {"fail", s_fail}, {NULL, NULL},
};

const ztask_fn_entry_t *fn_builtins(void)
{
    return s_table;
}
