#include "testhook.h"

#include "log.h"
#include "util.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Every ZTASK_TEST_* variable a daemon reads. */
static const char *const s_hooks[] = {
    "ZTASK_TEST_ASSIGN_WRITE_MS",   /* journal.c: assignments written late */
    "ZTASK_TEST_DROP_TASK",         /* worker/session.c: the Nth task received is dropped */
    "ZTASK_TEST_HELLO_TIMEOUT_MS",  /* worker/main.c: a hello waits longer for its reply */
    "ZTASK_TEST_KEEP_GONE_MS",      /* tasks.c: gone workers forgotten early */
    "ZTASK_TEST_KILL_BEFORE_ACK",   /* api.c: SIGKILL before an answer */
    "ZTASK_TEST_REPLY_BUDGET_MIB",  /* api.c: a smaller reply budget */
};
#define NHOOKS (sizeof s_hooks / sizeof *s_hooks)

static bool s_listed(const char *name)
{
    for (size_t i = 0; i < NHOOKS; i++)
        if (strcmp(s_hooks[i], name) == 0)
            return true;
    return false;
}

int testhook_i64(const char *name, int64_t lo, int64_t hi, int64_t *out)
{
    assert(s_listed(name));
    const char *v = getenv(name);
    int64_t n;
    if (!v || parse_int64(v, lo, hi, &n) != 0)
        return -1;
    *out = n;
    return 0;
}

int testhook_warn(void)
{
    int n = 0;
    for (size_t i = 0; i < NHOOKS; i++) {
        const char *v = getenv(s_hooks[i]);
        if (!v)
            continue;
        /* Warn level, so that the default --log-level shows it. */
        log_warn("event=test_hook_active name=%s value=%s note=\"a test-only hook changes "
                 "what this daemon does (docs/protocol.md); unset it outside tests\"",
                 s_hooks[i], LOG_V(v));
        n++;
    }
    return n;
}
