/* allow: the worker's --allow-exec list: parsing, absolute paths vs bare
   names, shell tasks, env that could redirect an allowed name (PATH) or
   inject code (LD_*), and function tasks. */
#include "../../common/util.h"
#include "../../worker/allow.h"

#include "../ztest.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static proto_spec_t *s_spec(const char *json)
{
    proto_err_t err;
    proto_spec_t *spec = proto_spec_decode(json, strlen(json), &err);
    ck_assert_msg(spec != NULL, "%s: %s", json, err.message);
    return spec;
}

/* Checks spec against list: want_ok, or a refusal whose reason has want. */
static void s_expect(const allow_t *list, const char *json, bool want_ok, const char *want)
{
    proto_spec_t *spec = s_spec(json);
    char why[256] = "";
    int rc = allow_check(list, spec, why, sizeof why);
    if (want_ok)
        ck_assert_msg(rc == 0, "%s refused: %s", json, why);
    else {
        ck_assert_msg(rc == -1, "%s allowed", json);
        ck_assert_msg(strstr(why, want) != NULL, "%s: '%s' lacks '%s'", json, why, want);
    }
    proto_spec_destroy(&spec);
}

START_TEST(a_worker_runs_only_the_listed_programs)
{
    char err[256];
    allow_t *list = allow_parse("/usr/bin/convert, python3", err, sizeof err);
    ck_assert_msg(list != NULL, "%s", err);
    ck_assert_uint_eq(allow_count(list), 2);
    s_expect(list, "{\"argv\":[\"/usr/bin/convert\",\"a.png\",\"b.jpg\"]}", true, NULL);
    s_expect(list, "{\"argv\":[\"python3\",\"-c\",\"print(1)\"]}", true, NULL);
    s_expect(list, "{\"argv\":[\"/usr/bin/rm\",\"-rf\",\"/\"]}", false,
             "program '/usr/bin/rm' is not in this worker's --allow-exec list");
    s_expect(list, "{\"fn\":\"echo\"}", true, NULL);
    allow_destroy(&list);
    ck_assert_ptr_null(list);
    allow_destroy(&list);
}
END_TEST

START_TEST(paths_match_exactly)
{
    char err[256];
    allow_t *list = allow_parse("/usr/bin/convert,python3", err, sizeof err);
    ck_assert_ptr_nonnull(list);
    /* A bare name does not allow a path that ends in it, nor the reverse. */
    s_expect(list, "{\"argv\":[\"/tmp/evil/python3\"]}", false, "'/tmp/evil/python3'");
    s_expect(list, "{\"argv\":[\"convert\"]}", false, "'convert'");
    s_expect(list, "{\"argv\":[\"/usr/bin/../bin/convert\"]}", false, "not in this worker");
    s_expect(list, "{\"argv\":[\"./convert\"]}", false, "not in this worker");
    s_expect(list, "{\"argv\":[\"/usr/bin/convert2\"]}", false, "not in this worker");
    allow_destroy(&list);
}
END_TEST

START_TEST(shell_tasks_need_bin_sh)
{
    char err[256];
    allow_t *list = allow_parse("python3,sh", err, sizeof err);
    s_expect(list, "{\"shell\":\"echo hi\"}", false,
             "program '/bin/sh' is not in this worker's --allow-exec list (shell tasks run "
             "/bin/sh)");
    allow_destroy(&list);
    list = allow_parse("/bin/sh", err, sizeof err);
    s_expect(list, "{\"shell\":\"echo hi\"}", true, NULL);
    /* A shell task may set PATH when --allow-env lists it: /bin/sh itself
       is found by path. */
    s_expect(list, "{\"shell\":\"echo hi\",\"env\":{\"PATH\":\"/tmp\"}}", false,
             "--allow-env list: not PATH");
    ck_assert_int_eq(allow_env_extend(list, "PATH", err, sizeof err), 0);
    s_expect(list, "{\"shell\":\"echo hi\",\"env\":{\"PATH\":\"/tmp\"}}", true, NULL);
    allow_destroy(&list);
}
END_TEST

START_TEST(env_that_could_redirect_or_inject_is_refused)
{
    char err[256];
    allow_t *list = allow_parse("python3,/usr/bin/convert", err, sizeof err);
    /* A comma list like the others (labels, --task-rlimit): blank items
       are not names, nor errors. */
    ck_assert_msg(allow_env_extend(list, "PATH,PATHX, HOME , ,LD_PRELOAD,", err, sizeof err) == 0,
                  "%s", err);
    s_expect(list, "{\"argv\":[\"python3\"],\"env\":{\"PATH\":\"/tmp/evil\"}}", false,
             "may not set PATH");
    /* With an absolute program PATH only matters to what it runs. */
    s_expect(list, "{\"argv\":[\"/usr/bin/convert\"],\"env\":{\"PATH\":\"/tmp\"}}", true, NULL);
    s_expect(list, "{\"argv\":[\"/usr/bin/convert\"],\"env\":{\"LD_PRELOAD\":\"/tmp/x.so\"}}",
             false, "may not set LD_PRELOAD");
    s_expect(list, "{\"argv\":[\"python3\"],\"env\":{\"LD_LIBRARY_PATH\":\"/tmp\"}}", false,
             "LD_LIBRARY_PATH");
    s_expect(list, "{\"argv\":[\"python3\"],\"env\":{\"PATHX\":\"1\",\"HOME\":\"/tmp\"}}", true,
             NULL);
    allow_destroy(&list);
}
END_TEST

START_TEST(only_allow_env_variables_and_ztask_ones_pass_an_allow_exec_list)
{
    char err[256];
    allow_t *list = allow_parse("/usr/bin/ldd,/usr/bin/perl", err, sizeof err);
    /* The attacks: code through a variable an allowed program reads. */
    s_expect(list, "{\"argv\":[\"/usr/bin/ldd\",\"/bin/true\"],\"env\":{\"BASH_ENV\":"
                   "\"/dev/stdin\"}}",
             false, "may set only the env variables of its --allow-env list: not BASH_ENV");
    s_expect(list, "{\"argv\":[\"/usr/bin/perl\",\"-e1\"],\"env\":{\"PERL5OPT\":\"-Mx\"}}",
             false, "not PERL5OPT");
    s_expect(list, "{\"argv\":[\"/usr/bin/ldd\"],\"env\":{\"ZTASK_MINE\":\"1\"}}", true, NULL);
    s_expect(list, "{\"argv\":[\"/usr/bin/ldd\"],\"env\":{\"ZTASK_\":\"1\"}}", false,
             "not ZTASK_");
    ck_assert_int_eq(allow_env_extend(list, "LANG,TZ", err, sizeof err), 0);
    s_expect(list, "{\"argv\":[\"/usr/bin/ldd\"],\"env\":{\"LANG\":\"C\",\"TZ\":\"UTC\"}}",
             true, NULL);
    s_expect(list, "{\"argv\":[\"/usr/bin/ldd\"],\"env\":{\"LANG\":\"C\",\"BASH_ENV\":\"x\"}}",
             false, "not BASH_ENV");
    /* A hostile name is shown printable. */
    s_expect(list, "{\"argv\":[\"/usr/bin/ldd\"],\"env\":{\"A\\nB\":\"x\"}}", false,
             "not A?B");
    const char *bad[] = {"", ",", "1X", "A-B", "A=B", NULL};
    for (int i = 0; bad[i]; i++) {
        ck_assert_msg(allow_env_extend(list, bad[i], err, sizeof err) == -1, "took '%s'", bad[i]);
        ck_assert_ptr_nonnull(strstr(err, "--allow-env"));
    }
    allow_destroy(&list);
}
END_TEST

START_TEST(no_list_allows_everything)
{
    s_expect(NULL, "{\"argv\":[\"/usr/bin/rm\"],\"env\":{\"LD_PRELOAD\":\"x\"}}", true, NULL);
    s_expect(NULL, "{\"shell\":\"true\"}", true, NULL);
    ck_assert_uint_eq(allow_count(NULL), 0);
}
END_TEST

START_TEST(bad_lists_are_refused)
{
    char err[256];
    const char *bad[] = { "", ",", "a,,b", "a, ,b", "bin/x", "./x", "python3,", NULL };
    for (int i = 0; bad[i]; i++) {
        ck_assert_msg(allow_parse(bad[i], err, sizeof err) == NULL, "accepted '%s'", bad[i]);
        ck_assert_ptr_nonnull(strstr(err, "--allow-exec"));
    }
    ck_assert_ptr_null(allow_parse(NULL, err, sizeof err));
    allow_t *list = allow_parse("/bin/true", err, sizeof err);
    ck_assert_int_eq(allow_extend(list, "bin/x", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "neither an absolute path nor a bare program name"));
    ck_assert_uint_eq(allow_count(list), 1);
    ck_assert_int_eq(allow_extend(list, " env , /bin/sh ", err, sizeof err), 0);
    ck_assert_uint_eq(allow_count(list), 3);
    s_expect(list, "{\"argv\":[\"env\"]}", true, NULL);
    s_expect(list, "{\"shell\":\"x\"}", true, NULL);
    allow_destroy(&list);
}
END_TEST

START_TEST(hostile_program_names_make_a_short_printable_reason)
{
    char err[256];
    allow_t *list = allow_parse("python3", err, sizeof err);
    char json[1200];
    char longname[600];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    snprintf(json, sizeof json, "{\"argv\":[\"%s\"]}", longname);
    proto_spec_t *spec = s_spec(json);
    char why[256];
    ck_assert_int_eq(allow_check(list, spec, why, sizeof why), -1);
    ck_assert_ptr_nonnull(strstr(why, "...' is not in"));
    proto_spec_destroy(&spec);
    spec = s_spec("{\"argv\":[\"a\\u001b[2Jb\\u00e9\"]}");
    ck_assert_int_eq(allow_check(list, spec, why, sizeof why), -1);
    for (const char *c = why; *c; c++)
        ck_assert_msg((unsigned char) *c >= 0x20 && (unsigned char) *c < 0x7f, "%s", why);
    ck_assert_ptr_nonnull(strstr(why, "'a?[2Jb?" "?'"));
    proto_spec_destroy(&spec);
    allow_destroy(&list);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "allow", .tcase = "allow" });
}
