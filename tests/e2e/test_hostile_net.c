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
#include <sys/stat.h>
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

/* ------------------------------------------------------- key file modes */

/* "DIR/NAME.key" made by `ztask keygen` (caller frees). */
static char *s_keygen(h_cluster_t *c, const char *name)
{
    char *bin = s_bin("ztask");
    char *argv[] = { bin, "keygen", (char *) name, "--dir", (char *) h_dir(c), NULL };
    h_run_t *r = h_run(argv, NULL, 10000);
    ck_assert_msg(r->rc == 0, "keygen %s: %s", name, h_run_desc(r));
    h_run_free(&r);
    free(bin);
    char *out = NULL;
    ck_assert_int_ge(asprintf(&out, "%s/%s.key", h_dir(c), name), 0);
    return out;
}

/* Expects argv to exit with rc, saying to chmod path. */
static void s_expect_chmod(char *const argv[], int rc, const char *path)
{
    h_run_t *r = h_run(argv, NULL, 10000);
    char want[512];
    snprintf(want, sizeof want, "run: chmod 0600 %s", path);
    ck_assert_msg(r->rc == rc && strstr(r->err, "refusing key file") && strstr(r->err, want)
                      && !strstr(r->err, "event=listening") && !strstr(r->err, "event=registered"),
                  "%s with its key mode 0666: %s", argv[0], h_run_desc(r));
    h_run_free(&r);
}

/* ssh refuses an identity file others can read; ztask took a 0666 secret
   key silently. The master, a worker and the CLI each refuse it with the
   chmod to run; the service setup's 0640 still works. */
START_TIMED_TEST(a_secret_key_readable_by_others_is_refused_with_the_chmod_to_run, 60)
{
    h_cluster_t *c = h_cluster_new("a_secret_key_readable_by_others_is_refused_with_the_chmod_to_run");
    char *mkey = s_keygen(c, "master"), *wkey = s_keygen(c, "w1"), *ckey = s_keygen(c, "cli");
    char *mpub = h_path(c, "master.pub"), *wpub = h_path(c, "w1.pub"), *cpub = h_path(c, "cli.pub");
    char *master = s_bin("ztask-master"), *worker = s_bin("ztask-worker"), *cli = s_bin("ztask");

    ck_assert_int_eq(chmod(mkey, 0666), 0);
    char *margv[] = { master, "--db", ":memory:", "--port", "0", "--curve-secret", mkey,
                      "--clients", cpub, "--workers", wpub, NULL };
    s_expect_chmod(margv, 1, mkey);
    ck_assert_int_eq(chmod(mkey, 0640), 0);
    h_master_start(c, 0, "--curve-secret", mkey, "--clients", cpub, "--workers", wpub, NULL);

    ck_assert_int_eq(chmod(wkey, 0666), 0);
    char *wargv[] = { worker, "--master", (char *) h_master_addr(c), "--curve-secret", wkey,
                      "--master-key", mpub, "--threads", "1", NULL };
    s_expect_chmod(wargv, 1, wkey);
    ck_assert_int_eq(chmod(ckey, 0644), 0);
    char *cargv[] = { cli, "--master", (char *) h_master_addr(c), "--curve-secret", ckey,
                      "--master-key", mpub, "stats", NULL };
    s_expect_chmod(cargv, 2, ckey);
    ck_assert_int_eq(chmod(ckey, 0600), 0);
    h_run_t *r = h_run(cargv, NULL, 20000);
    ck_assert_msg(r->rc == 0, "stats with a 0600 key: %s", h_run_desc(r));
    h_run_free(&r);

    free(mkey), free(wkey), free(ckey), free(mpub), free(wpub), free(cpub);
    free(master), free(worker), free(cli);
    h_cluster_destroy(&c);
}
END_TEST

int main(void)
{
    return h_run_suite(zt_case_per_test("e2e_hostile_net", h_slowdown()));
}
