/* config: the key = value parser (comments, quotes, errors with line
   numbers), finding the file (ZTASK_CONFIG, XDG/HOME, none), relative
   paths, and the flag > env > file > default precedence. */
#include "../../common/config.h"
#include "../../common/util.h"

#include "../ztest.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static config_t *s_parse(const char *text, char *err, size_t errlen)
{
    return config_parse(text, strlen(text), "/etc/ztask/config", err, errlen);
}

/* Parsing must fail, with a message containing want. */
static void s_refused(const char *text, const char *want)
{
    char err[512] = "";
    config_t *c = s_parse(text, err, sizeof err);
    ck_assert_msg(c == NULL, "accepted: %s", text);
    ck_assert_msg(strstr(err, want) != NULL, "error '%s' lacks '%s'", err, want);
}

static char *s_tmpdir(void)
{
    char tmpl[] = "/tmp/ztask-config-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    return xstrdup(tmpl);
}

static void s_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(a_config_file_reads_as_its_settings)
{
    char err[512] = "";
    config_t *c = s_parse("# the cluster\n"
                          "master = build01:5555\n"
                          "\n"
                          "   curve-secret=ana.key   \n"
                          "master-key = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n"
                          "labels = gpu, ssd\n",
                          err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(config_get(c, "master"), "build01:5555");
    ck_assert_str_eq(config_get(c, "curve-secret"), "ana.key");
    ck_assert_str_eq(config_get(c, "master-key"), "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    ck_assert_str_eq(config_get(c, "labels"), "gpu, ssd");
    ck_assert_ptr_null(config_get(c, "threads"));
    ck_assert_str_eq(config_where(c, "curve-secret"), "/etc/ztask/config:4");
    ck_assert_str_eq(config_where(c, "threads"), "");
    config_destroy(&c);
    ck_assert_ptr_null(c);
    config_destroy(&c);   /* NULL is fine */
}
END_TEST

START_TEST(hash_and_equals_inside_a_value_are_kept)
{
    /* Z85 keys contain both '#' and '=': no inline comments. */
    char err[512] = "";
    config_t *c = s_parse("master-key = ab#cd=ef # not a comment\n", err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(config_get(c, "master-key"), "ab#cd=ef # not a comment");
    config_destroy(&c);
}
END_TEST

START_TEST(crlf_and_a_missing_final_newline_are_fine)
{
    char err[512] = "";
    config_t *c = s_parse("threads = 4\r\nname = w1", err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_str_eq(config_get(c, "threads"), "4");
    ck_assert_str_eq(config_get(c, "name"), "w1");
    config_destroy(&c);
    c = s_parse("", err, sizeof err);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(config_get(c, "master"));
    config_destroy(&c);
}
END_TEST

START_TEST(errors_name_the_file_and_line)
{
    s_refused("master = a\nthis line has no equals sign\n", "/etc/ztask/config:2: expected");
    s_refused("# ok\n\nmastre = a\n", "config:3: unknown key 'mastre'");
    s_refused("master = a\nmaster = b\n", "config:2: 'master' is already set on line 1");
    s_refused("= value\n", ":1: a setting needs a key");
    s_refused("threads =   \n", ":1: 'threads' has no value");
    s_refused("name = \"\"\n", ":1: 'name' has no value");
    s_refused("name = \"abc\n", ":1: 'name': unterminated quote");
    s_refused("name = \"\n", ":1: 'name': unterminated quote");
    s_refused("name = a\nlabels = \xff\xfe\n", ":2: not valid UTF-8");
}
END_TEST

START_TEST(a_nul_byte_is_an_error_not_an_end)
{
    const char text[] = "master = a\nname = b\0c\n";
    char err[512] = "";
    config_t *c = config_parse(text, sizeof text - 1, "cfg", err, sizeof err);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(err, "cfg:2: NUL byte"));
    /* A buffer that is not NUL-terminated is read only up to len. */
    char raw[] = { 'n', 'a', 'm', 'e', '=', 'x', 'y' };
    c = config_parse(raw, 6, NULL, err, sizeof err);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(config_get(c, "name"), "x");
    config_destroy(&c);
}
END_TEST

START_TEST(every_documented_key_is_known)
{
    const char *keys[] = { "master", "curve-secret", "master-key", "request-timeout", "threads",
                           "name",   "labels",       "plugin",     "allow-exec" };
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        ck_assert_msg(config_key_known(keys[i]), "%s", keys[i]);
    ck_assert(!config_key_known("Master"));
    ck_assert(!config_key_known(""));
    ck_assert(!config_key_known(NULL));
}
END_TEST

START_TEST(relative_paths_are_relative_to_the_file)
{
    char err[512] = "";
    const char *text = "curve-secret = me.key\nmaster-key = /abs/master.pub\n";
    config_t *c = config_parse(text, strlen(text), "/home/ana/.config/ztask/config", err,
                               sizeof err);
    ck_assert_ptr_nonnull(c);
    char *p = config_path(c, "curve-secret");
    ck_assert_str_eq(p, "/home/ana/.config/ztask/me.key");
    free(p);
    p = config_path(c, "master-key");
    ck_assert_str_eq(p, "/abs/master.pub");
    free(p);
    ck_assert_ptr_null(config_path(c, "plugin"));
    config_destroy(&c);
    /* A file named without a directory: relative to the current one. */
    c = config_parse(text, strlen(text), "config", err, sizeof err);
    p = config_path(c, "curve-secret");
    ck_assert_str_eq(p, "me.key");
    free(p);
    config_destroy(&c);
    c = config_parse(text, strlen(text), "/config", err, sizeof err);
    p = config_path(c, "curve-secret");
    ck_assert_str_eq(p, "/me.key");
    free(p);
    config_destroy(&c);
}
END_TEST

START_TEST(flag_beats_env_beats_file_beats_default)
{
    char err[512] = "";
    config_t *c = s_parse("master = from-file\n", err, sizeof err);
    ck_assert_ptr_nonnull(c);
    config_from_t from;
    setenv("ZTASK_TEST_MASTER", "from-env", 1);
    ck_assert_str_eq(config_pick("from-flag", "ZTASK_TEST_MASTER", c, "master", &from),
                     "from-flag");
    ck_assert_int_eq(from, CONFIG_FROM_FLAG);
    ck_assert_str_eq(config_pick(NULL, "ZTASK_TEST_MASTER", c, "master", &from), "from-env");
    ck_assert_int_eq(from, CONFIG_FROM_ENV);
    /* An empty variable counts as unset. */
    setenv("ZTASK_TEST_MASTER", "", 1);
    ck_assert_str_eq(config_pick(NULL, "ZTASK_TEST_MASTER", c, "master", &from), "from-file");
    ck_assert_int_eq(from, CONFIG_FROM_FILE);
    unsetenv("ZTASK_TEST_MASTER");
    ck_assert_str_eq(config_pick(NULL, "ZTASK_TEST_MASTER", c, "master", &from), "from-file");
    ck_assert_int_eq(from, CONFIG_FROM_FILE);
    ck_assert_ptr_null(config_pick(NULL, "ZTASK_TEST_MASTER", c, "name", &from));
    ck_assert_int_eq(from, CONFIG_FROM_DEFAULT);
    ck_assert_ptr_null(config_pick(NULL, NULL, NULL, "master", NULL));
    /* An empty flag is still the user's word (the program rejects it). */
    ck_assert_str_eq(config_pick("", "ZTASK_TEST_MASTER", c, "master", &from), "");
    ck_assert_int_eq(from, CONFIG_FROM_FLAG);
    config_destroy(&c);
}
END_TEST

START_TEST(messages_name_where_a_setting_came_from)
{
    char err[512] = "";
    const char *text = "master = box\ncurve-secret = me.key\n";
    config_t *c = config_parse(text, strlen(text), "/etc/ztask/config", err, sizeof err);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(config_origin(c, CONFIG_FROM_FLAG, "--master", "ZTASK_MASTER", "master"),
                     "--master");
    ck_assert_str_eq(config_origin(c, CONFIG_FROM_ENV, "--master", "ZTASK_MASTER", "master"),
                     "ZTASK_MASTER");
    ck_assert_str_eq(config_origin(c, CONFIG_FROM_FILE, "--master", "ZTASK_MASTER", "master"),
                     "/etc/ztask/config:1");
    ck_assert_str_eq(config_origin(c, CONFIG_FROM_DEFAULT, "--master", "ZTASK_MASTER", "master"),
                     "default");
    /* A path from the file is the file's; from a flag it is as given. */
    unsetenv("ZTASK_TEST_SECRET");
    config_from_t from;
    char *p = config_pick_path(NULL, "ZTASK_TEST_SECRET", c, "curve-secret", &from);
    ck_assert_str_eq(p, "/etc/ztask/me.key");
    ck_assert_int_eq(from, CONFIG_FROM_FILE);
    free(p);
    p = config_pick_path("mine.key", "ZTASK_TEST_SECRET", c, "curve-secret", &from);
    ck_assert_str_eq(p, "mine.key");
    ck_assert_int_eq(from, CONFIG_FROM_FLAG);
    free(p);
    ck_assert_ptr_null(config_pick_path(NULL, NULL, c, "plugin", &from));
    ck_assert_int_eq(from, CONFIG_FROM_DEFAULT);
    config_destroy(&c);
}
END_TEST

START_TEST(curve_keys_are_picked_as_a_pair)
{
    unsetenv("ZTASK_CURVE_SECRET");
    unsetenv("ZTASK_MASTER_KEY");
    char err[512] = "";
    const char *z85 = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    char text[256];
    snprintf(text, sizeof text, "curve-secret = me.key\nmaster-key = %s\n", z85);
    config_t *c = config_parse(text, strlen(text), "/etc/ztask/config", err, sizeof err);
    ck_assert_ptr_nonnull(c);
    config_curve_t cc;
    /* Both from the file: the path joined to the file's directory, the
       key itself left as it is. */
    ck_assert_int_eq(config_pick_curve(c, NULL, NULL, &cc, err, sizeof err), 0);
    ck_assert_str_eq(cc.secret, "/etc/ztask/me.key");
    ck_assert_str_eq(cc.master_key, z85);
    ck_assert_str_eq(cc.secret_from, "/etc/ztask/config:1");
    ck_assert_str_eq(cc.master_key_from, "/etc/ztask/config:2");
    config_curve_clear(&cc);
    ck_assert_ptr_null(cc.secret);
    /* A master-key that is not a key is a path, relative to the file. */
    config_destroy(&c);
    snprintf(text, sizeof text, "master-key = keys/master.pub\n");
    c = config_parse(text, strlen(text), "/etc/ztask/config", err, sizeof err);
    ck_assert_int_eq(config_pick_curve(c, "ana.key", NULL, &cc, err, sizeof err), 0);
    ck_assert_str_eq(cc.secret, "ana.key");
    ck_assert_str_eq(cc.secret_from, "--curve-secret");
    ck_assert_str_eq(cc.master_key, "/etc/ztask/keys/master.pub");
    config_curve_clear(&cc);
    /* One without the other: refused, saying where the one came from. */
    ck_assert_int_eq(config_pick_curve(c, NULL, NULL, &cc, err, sizeof err), -1);
    ck_assert_str_eq(err, "master-key is set (from /etc/ztask/config:1) but curve-secret is not");
    config_curve_clear(&cc);
    setenv("ZTASK_CURVE_SECRET", "env.key", 1);
    ck_assert_int_eq(config_pick_curve(NULL, NULL, NULL, &cc, err, sizeof err), -1);
    ck_assert_str_eq(err, "curve-secret is set (from ZTASK_CURVE_SECRET) but master-key is not");
    config_curve_clear(&cc);
    unsetenv("ZTASK_CURVE_SECRET");
    /* Neither: plain TCP. */
    ck_assert_int_eq(config_pick_curve(NULL, NULL, NULL, &cc, err, sizeof err), 0);
    ck_assert_ptr_null(cc.secret);
    ck_assert_ptr_null(cc.master_key);
    config_curve_clear(&cc);
    config_destroy(&c);
}
END_TEST

START_TEST(the_file_is_found_in_order)
{
    char *dir = s_tmpdir();
    char *xdg = xasprintf("%s/xdg", dir);
    char *zdir = xasprintf("%s/xdg/ztask", dir);
    char *file = xasprintf("%s/xdg/ztask/config", dir);
    char *other = xasprintf("%s/other", dir);
    ck_assert_int_eq(mkdir(xdg, 0700), 0);
    ck_assert_int_eq(mkdir(zdir, 0700), 0);
    char err[512] = "";
    config_t *c = NULL;

    /* Nothing there: no config, no error (unless /etc/ztask/config exists
       on this machine, in which case it is what we get). */
    unsetenv("ZTASK_CONFIG");
    setenv("XDG_CONFIG_HOME", xdg, 1);
    ck_assert_int_eq(config_load_default(&c, err, sizeof err, NULL, 0), 0);
    if (access("/etc/ztask/config", F_OK) != 0)
        ck_assert_ptr_null(c);
    config_destroy(&c);

    s_write(file, "name = xdg\n");
    ck_assert_int_eq(config_load_default(&c, err, sizeof err, NULL, 0), 0);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(config_get(c, "name"), "xdg");
    config_destroy(&c);

    /* HOME/.config when XDG_CONFIG_HOME is unset. */
    unsetenv("XDG_CONFIG_HOME");
    char *home = xasprintf("%s/home", dir);
    char *hcfg = xasprintf("%s/home/.config", dir);
    char *hz = xasprintf("%s/home/.config/ztask", dir);
    char *hfile = xasprintf("%s/home/.config/ztask/config", dir);
    ck_assert_int_eq(mkdir(home, 0700), 0);
    ck_assert_int_eq(mkdir(hcfg, 0700), 0);
    ck_assert_int_eq(mkdir(hz, 0700), 0);
    s_write(hfile, "name = home\n");
    setenv("HOME", home, 1);
    ck_assert_int_eq(config_load_default(&c, err, sizeof err, NULL, 0), 0);
    ck_assert_str_eq(config_get(c, "name"), "home");
    config_destroy(&c);

    /* ZTASK_CONFIG wins, and must exist. */
    s_write(other, "name = other\n");
    setenv("ZTASK_CONFIG", other, 1);
    ck_assert_int_eq(config_load_default(&c, err, sizeof err, NULL, 0), 0);
    ck_assert_str_eq(config_get(c, "name"), "other");
    config_destroy(&c);
    unlink(other);
    ck_assert_int_eq(config_load_default(&c, err, sizeof err, NULL, 0), -1);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(err, "ZTASK_CONFIG"));
    ck_assert_ptr_nonnull(strstr(err, other));

    /* A malformed file found by the search is an error, not skipped. */
    unsetenv("ZTASK_CONFIG");
    s_write(hfile, "name = a\nbogus\n");
    ck_assert_int_eq(config_load_default(&c, err, sizeof err, NULL, 0), -1);
    ck_assert_msg(strstr(err, "config:2:") != NULL, "%s", err);

    unlink(hfile);
    rmdir(hz);
    rmdir(hcfg);
    rmdir(home);
    unlink(file);
    rmdir(zdir);
    rmdir(xdg);
    rmdir(dir);
    free(home);
    free(hcfg);
    free(hz);
    free(hfile);
    free(dir);
    free(xdg);
    free(zdir);
    free(file);
    free(other);
}
END_TEST

START_TEST(a_file_too_large_or_missing_is_refused)
{
    char *dir = s_tmpdir();
    char *path = xasprintf("%s/big", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < CONFIG_MAX_BYTES / 10 + 1; i++)
        fputs("# comment\n", f);
    fclose(f);
    char err[512] = "";
    ck_assert_ptr_null(config_load(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "larger than"));
    unlink(path);
    ck_assert_ptr_null(config_load(path, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "cannot read config file"));
    rmdir(dir);
    free(path);
    free(dir);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "config", .tcase = "config" });
}
