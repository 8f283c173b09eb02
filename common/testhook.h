/*  testhook: the environment variables through which tests change what a
    daemon does (ZTASK_TEST_*: docs/protocol.md, "Test only").

    Each one trades a production guarantee for a test's reach (a master
    that kills itself, forgets gone workers, delays its writes, shrinks a
    budget), and an operator can inherit one from a shell or a unit file
    without knowing. So every hook a daemon reads is in this module's one
    list and read only through testhook_i64, and each daemon (master,
    worker) calls testhook_warn once at start: each hook set is then a
    warning line (event=test_hook_active name=... value=...) before it
    does anything.

    Threads: any (reads the environment only; call testhook_warn before
    starting threads that may setenv, which none does).
*/
#ifndef ZTASK_TESTHOOK_H
#define ZTASK_TESTHOOK_H

#include <stdint.h>

/* The value of the test hook name when it is set to a whole number in
   [lo, hi]: 0 with *out set. -1 when unset or invalid (*out untouched:
   the caller's default stands). name must be one of this module's list
   (a programmer error otherwise: asserted, so that testhook_warn can
   never miss a hook). */
int testhook_i64(const char *name, int64_t lo, int64_t hi, int64_t *out);

/* Logs one warning per hook of the list that is set in the environment,
   valid or not: event=test_hook_active name=NAME value=VALUE. Returns
   how many. */
int testhook_warn(void);

#endif
