/*  e2e hostile, the network part: what an outsider, a listed client or a
    listed worker can make the master do with its sockets and its log,
    through the real programs and raw ZeroMQ/TCP peers (docs/security.md,
    "Threat model"). The barrage of malformed messages is test_hostile.c;
    this suite holds the limits: the --bind address, key file modes,
    memory and descriptors before authentication, reply sizes,
    registrations per key, peer text in the log. */
#include "harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* libzmq is not built with TSan: its internal threads are suppressed, as
   in the unit suites that open sockets. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:libzmq.so\n";
}

/* "BIN/name" (caller frees). */
static char *s_bin(const char *name)
{
    char *out = NULL;
    ck_assert_int_ge(asprintf(&out, "%s/%s", h_bin_dir(), name), 0);
    return out;
}

/* ---------------------------------------------------------------- --bind */

/* libzmq reads "127.0.0.1:19999;0.0.0.0" as a source address and listens
   on 0.0.0.0: a prefix check took it for loopback, and the master listened
   on every address without keys and without event=insecure. */
START_TIMED_TEST(a_bind_that_is_not_one_address_is_refused, 60)
{
    h_cluster_t *c = h_cluster_new("a_bind_that_is_not_one_address_is_refused");
    char *master = s_bin("ztask-master");
    const char *bad[] = { "127.0.0.1:19999;0.0.0.0", "127.0.0.1;0.0.0.0", "127.0.0.1.nip.io",
                          "127.0.0.1 ", "tcp://127.0.0.1", "" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *argv[] = { master, "--db", ":memory:", "--port", "0", "--bind", (char *) bad[i],
                         NULL };
        h_run_t *r = h_run(argv, NULL, 5000);
        ck_assert_msg(r->rc == 1 && strstr(r->err, "--bind wants one IP address")
                          && !strstr(r->err, "event=listening"),
                      "--bind '%s' was not refused: %s", bad[i], h_run_desc(r));
        h_run_free(&r);
    }
    /* Loopback literals still start without keys; a non-loopback one
       still needs keys or --insecure. */
    char *argv[] = { master, "--db", ":memory:", "--port", "0", "--bind", "0.0.0.0", NULL };
    h_run_t *r = h_run(argv, NULL, 5000);
    ck_assert_msg(r->rc == 1 && strstr(r->err, "without authentication"), "%s", h_run_desc(r));
    h_run_free(&r);
    h_master_start(c, 0, "--bind", "127.0.0.2", NULL);
    free(master);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_hostile_net", h_slowdown()));
}
