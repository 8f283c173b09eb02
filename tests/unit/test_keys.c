/* keys: generating a pair (files, modes, no overwrite), loading .key and
   .pub files, allowlists from a directory or one file, and bad input. */
#include "../../common/keys.h"
#include "../../common/util.h"

#include "../ztest.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static char *s_dir;

static void s_setup(void)
{
    char tmpl[] = "/tmp/ztask-keys-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    s_dir = xstrdup(tmpl);
}

static void s_teardown(void)
{
    DIR *d = opendir(s_dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *p = xasprintf("%s/%s", s_dir, de->d_name);
        unlink(p);
        free(p);
    }
    if (d)
        closedir(d);
    rmdir(s_dir);
    free(s_dir);
    s_dir = NULL;
}

static char *s_path(const char *name)
{
    return xasprintf("%s/%s", s_dir, name);
}

static void s_write(const char *name, const char *text)
{
    char *p = s_path(name);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    free(p);
}

static int s_count_files(void)
{
    int n = 0;
    DIR *d = opendir(s_dir);
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

START_TEST(a_generated_pair_loads_back_and_makes_a_curve_pair)
{
    keypair_t kp;
    char err[512] = "";
    ck_assert_msg(keys_generate(s_dir, "ana", &kp, err, sizeof err) == 0, "%s", err);
    ck_assert(keys_valid_z85(kp.pub));
    ck_assert(keys_valid_z85(kp.sec));

    char *key = s_path("ana.key");
    char *pub = s_path("ana.pub");
    struct stat st;
    ck_assert_int_eq(stat(key, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(stat(pub, &st), 0);
    ck_assert_int_eq(st.st_mode & 0022, 0);   /* nobody else may change it */

    keypair_t back;
    ck_assert_int_eq(keys_load(key, &back, err, sizeof err), 0);
    ck_assert_str_eq(back.pub, kp.pub);
    ck_assert_str_eq(back.sec, kp.sec);
    ck_assert_int_eq(keys_load(pub, &back, err, sizeof err), 0);
    ck_assert_str_eq(back.pub, kp.pub);
    ck_assert_str_eq(back.sec, "");

    /* The public key is the one libzmq derives from the secret. */
    char derived[41];
    ck_assert_int_eq(zmq_curve_public(derived, kp.sec), 0);
    ck_assert_str_eq(derived, kp.pub);
    free(key);
    free(pub);
}
END_TEST

START_TEST(generate_never_overwrites)
{
    keypair_t kp, again;
    char err[512] = "";
    ck_assert_int_eq(keys_generate(s_dir, "w1", &kp, err, sizeof err), 0);
    ck_assert_int_eq(keys_generate(s_dir, "w1", &again, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "w1.key") && strstr(err, "File exists"), "%s", err);
    keypair_t back;
    char *key = s_path("w1.key");
    ck_assert_int_eq(keys_load(key, &back, err, sizeof err), 0);
    ck_assert_str_eq(back.sec, kp.sec);
    free(key);

    /* Only the .pub there: refused too, and no .key left behind. */
    s_write("w2.pub", "public-key = \"x\"\n");
    ck_assert_int_eq(keys_generate(s_dir, "w2", &again, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "w2.pub") != NULL, "%s", err);
    char *k2 = s_path("w2.key");
    ck_assert_int_ne(access(k2, F_OK), 0);
    free(k2);
    ck_assert_int_eq(s_count_files(), 3);
}
END_TEST

START_TEST(bad_names_and_directories_are_refused)
{
    keypair_t kp;
    char err[512] = "";
    const char *bad[] = { "", "a/b", ".", "..", "../x" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(keys_generate(s_dir, bad[i], &kp, err, sizeof err), -1);
        ck_assert_ptr_nonnull(strstr(err, "plain file name"));
    }
    ck_assert_int_eq(keys_generate(s_dir, NULL, &kp, err, sizeof err), -1);
    char *missing = s_path("no/such/dir");
    ck_assert_int_eq(keys_generate(missing, "k", &kp, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "cannot create"));
    free(missing);
    ck_assert_int_eq(s_count_files(), 0);
}
END_TEST

START_TEST(bad_key_files_are_refused_with_the_file_name)
{
    keypair_t kp;
    char err[512] = "";
    char *p = s_path("missing.key");
    ck_assert_int_eq(keys_load(p, &kp, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "missing.key"));
    free(p);

    s_write("short.pub", "public-key = \"abc\"\n");
    s_write("empty.pub", "");
    s_write("junk.pub", "\x01\x02 not a key at all\n");
    /* 40 characters, but not Z85 ('~' is not in its alphabet). */
    s_write("badz85.pub", "public-key = \"~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\"\n");
    const char *names[] = { "short.pub", "empty.pub", "junk.pub", "badz85.pub" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        p = s_path(names[i]);
        ck_assert_int_eq(keys_load(p, &kp, err, sizeof err), -1);
        ck_assert_msg(strstr(err, names[i]) && strstr(err, "no valid public-key"), "%s", err);
        free(p);
    }
    ck_assert(!keys_valid_z85(NULL));
    ck_assert(!keys_valid_z85(""));
    ck_assert(!keys_valid_z85("~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~"));
}
END_TEST

START_TEST(a_programs_own_pair_needs_the_secret_and_a_peers_key_may_be_text)
{
    keypair_t made, kp;
    char err[512] = "";
    ck_assert_int_eq(keys_generate(s_dir, "ana", &made, err, sizeof err), 0);
    char *key = s_path("ana.key"), *pub = s_path("ana.pub");
    ck_assert_int_eq(keys_load_secret(key, &kp, err, sizeof err), 0);
    ck_assert_str_eq(kp.sec, made.sec);
    /* The .pub where the .key belongs: the message says which to give. */
    ck_assert_int_eq(keys_load_secret(pub, &kp, err, sizeof err), -1);
    char want[600];
    snprintf(want, sizeof want, "%s holds no secret-key (give the .key file, not the .pub)", pub);
    ck_assert_str_eq(err, want);
    /* A peer's key: its 40 characters, or a file; a secret never kept. */
    ck_assert_int_eq(keys_load_public(made.pub, &kp, err, sizeof err), 0);
    ck_assert_str_eq(kp.pub, made.pub);
    ck_assert_str_eq(kp.sec, "");
    ck_assert_int_eq(keys_load_public(key, &kp, err, sizeof err), 0);
    ck_assert_str_eq(kp.pub, made.pub);
    ck_assert_str_eq(kp.sec, "");
    char *missing = s_path("nobody.pub");
    ck_assert_int_eq(keys_load_public(missing, &kp, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "nobody.pub"));
    free(missing);
    free(key);
    free(pub);
}
END_TEST

START_TEST(a_secret_key_readable_by_others_is_refused_with_the_chmod_to_run)
{
    keypair_t made, kp;
    char err[512] = "";
    ck_assert_int_eq(keys_generate(s_dir, "lax", &made, err, sizeof err), 0);
    char *key = s_path("lax.key");
    /* Readable or writable by others, or writable by the group: refused,
       as ssh refuses such an identity file; nothing of the key is kept. */
    const mode_t bad[] = { 0666, 0644, 0604, 0602, 0620 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(chmod(key, bad[i]), 0);
        ck_assert_int_eq(keys_load_secret(key, &kp, err, sizeof err), -1);
        char want[600];
        snprintf(want, sizeof want, "run: chmod 0600 %s", key);
        ck_assert_msg(strstr(err, "refusing key file") && strstr(err, want), "mode %o: %s",
                      (unsigned) bad[i], err);
        ck_assert_str_eq(kp.sec, "");
    }
    /* Private, or readable by its group (the service setup: 0640, group
       ztask): accepted. Its public half may be read by anyone. */
    const mode_t good[] = { 0600, 0400, 0640, 0440 };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        ck_assert_int_eq(chmod(key, good[i]), 0);
        ck_assert_msg(keys_load_secret(key, &kp, err, sizeof err) == 0, "mode %o: %s",
                      (unsigned) good[i], err);
        ck_assert_str_eq(kp.sec, made.sec);
    }
    ck_assert_int_eq(chmod(key, 0666), 0);
    ck_assert_int_eq(keys_load_public(key, &kp, err, sizeof err), 0);
    ck_assert_str_eq(kp.pub, made.pub);
    free(key);
}
END_TEST

START_TEST(an_allowlist_directory_admits_its_pub_and_key_files)
{
    keypair_t a, b, c;
    char err[512] = "";
    ck_assert_int_eq(keys_generate(s_dir, "a", &a, err, sizeof err), 0);
    ck_assert_int_eq(keys_generate(s_dir, "b", &b, err, sizeof err), 0);
    char *bpub = s_path("b.pub");
    unlink(bpub);   /* b only as its .key: still admitted */
    free(bpub);
    ck_assert_int_eq(zmq_curve_keypair(c.pub, c.sec), 0);
    s_write("notes.txt", c.pub);             /* not a .pub or .key: ignored */
    s_write("broken.pub", "nothing here\n"); /* unreadable keys are skipped */

    keyset_t *set = keyset_load(s_dir, err, sizeof err);
    ck_assert_msg(set != NULL, "%s", err);
    ck_assert_uint_eq(keyset_size(set), 2);   /* a.key and a.pub count once */
    ck_assert(keyset_has(set, a.pub));
    ck_assert(keyset_has(set, b.pub));
    ck_assert(!keyset_has(set, c.pub));
    ck_assert(!keyset_has(set, ""));
    /* Each key is named after its file (what `ztask jobs --all` shows). */
    ck_assert_str_eq(keyset_name(set, a.pub), "a");
    ck_assert_str_eq(keyset_name(set, b.pub), "b");
    ck_assert_ptr_null(keyset_name(set, c.pub));
    keyset_destroy(&set);
    ck_assert_ptr_null(set);
    keyset_destroy(&set);
    ck_assert(!keyset_has(NULL, a.pub));
    ck_assert_uint_eq(keyset_size(NULL), 0);
}
END_TEST

START_TEST(an_allowlist_file_lists_one_key_per_line)
{
    char k1[41], s1[41], k2[41], s2[41], k3[41], s3[41];
    ck_assert_int_eq(zmq_curve_keypair(k1, s1), 0);
    ck_assert_int_eq(zmq_curve_keypair(k2, s2), 0);
    ck_assert_int_eq(zmq_curve_keypair(k3, s3), 0);
    char *text = xasprintf("# the build farm\n\n%s\n   public-key = \"%s\"\n", k1, k2);
    s_write("clients", text);
    free(text);
    char err[512] = "";
    char *p = s_path("clients");
    keyset_t *set = keyset_load(p, err, sizeof err);
    ck_assert_msg(set != NULL, "%s", err);
    ck_assert_uint_eq(keyset_size(set), 2);
    ck_assert(keyset_has(set, k1));
    ck_assert(keyset_has(set, k2));
    ck_assert(!keyset_has(set, k3));
    keyset_destroy(&set);

    /* A line that is not a key fails the whole list, with its number: a
       typo must not silently lock someone out (or in). */
    text = xasprintf("%s\n# fine\nnot-a-key\n", k1);
    s_write("clients", text);
    free(text);
    set = keyset_load(p, err, sizeof err);
    ck_assert_ptr_null(set);
    ck_assert_msg(strstr(err, "clients:3:") != NULL, "%s", err);
    free(p);

    p = s_path("nope");
    ck_assert_ptr_null(keyset_load(p, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "cannot read allowlist"));
    free(p);
}
END_TEST

/* A fifo named like a key file would block an ordinary open for reading
   until someone writes to it (the master's loop, at SIGHUP); a directory
   or device would be read as garbage. Each is skipped with the reason,
   at once, and the real keys still count; as a list or a key file of its
   own, each is refused. */
START_TEST(only_regular_files_are_read_and_never_with_a_blocking_open)
{
    keypair_t a;
    char err[600] = "";
    ck_assert_int_eq(keys_generate(s_dir, "a", &a, err, sizeof err), 0);
    char *fifo = s_path("trap.pub"), *dir = s_path("sub.pub"), *dev = s_path("zero.key");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    ck_assert_int_eq(symlink("/dev/zero", dev), 0);
    keyset_t *set = keyset_load(s_dir, err, sizeof err);
    ck_assert_msg(set != NULL, "%s", err);
    ck_assert_uint_eq(keyset_size(set), 1);
    ck_assert(keyset_has(set, a.pub));
    keyset_destroy(&set);

    keypair_t kp;
    ck_assert_ptr_null(keyset_load(fifo, err, sizeof err));
    ck_assert_msg(strstr(err, "a fifo, not a regular file"), "%s", err);
    ck_assert_int_eq(keys_load(fifo, &kp, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "a fifo"), "%s", err);
    ck_assert_int_eq(keys_load(dev, &kp, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "not a regular file"), "%s", err);

    /* A key file far bigger than any key is not one. */
    char *big = xcalloc(70000, 1);
    memset(big, '#', 69999);
    s_write("big.pub", big);
    free(big);
    char *bigp = s_path("big.pub");
    ck_assert_int_eq(keys_load(bigp, &kp, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "too big"), "%s", err);
    free(bigp);
    rmdir(dir);
    free(fifo);
    free(dir);
    free(dev);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "keys",
                                 .tcase = "keys",
                                 .setup = s_setup,
                                 .teardown = s_teardown });
}
