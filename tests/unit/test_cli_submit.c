/* cli submit pipeline without a master: "{}" templates (tmpl), task
   sources (taskgen: array, --each lines, --file JSONL with line-numbered
   errors), task options (specopt) and batch splitting (batch). */
#include "../../cli/batch.h"
#include "../../cli/range.h"
#include "../../cli/specopt.h"
#include "../../cli/taskgen.h"
#include "../../cli/tmpl.h"
#include "../../common/util.h"

#include "../ztest.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

static proto_spec_t *s_argv_spec(int argc, const char *const *argv)
{
    proto_spec_t *s = proto_spec_new(PROTO_KIND_EXEC);
    s->argv = xcalloc((size_t) argc + 1, sizeof(char *));
    for (int i = 0; i < argc; i++)
        s->argv[i] = xstrdup(argv[i]);
    s->argc = argc;
    return s;
}

static tmpl_t *s_tmpl(proto_spec_t *spec)
{
    char err[256] = "";
    tmpl_t *t = tmpl_new(&spec, err, sizeof err);
    ck_assert_msg(t != NULL, "template refused: %s", err);
    ck_assert_ptr_null(spec);
    return t;
}

/* Writes text to a new temporary file; returns its path (caller frees and
   unlinks). */
static char *s_file(const char *text, size_t len)
{
    const char *dir = getenv("TMPDIR");
    char *path = xasprintf("%s/ztask-cli-test-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, len), (ssize_t) len);
    close(fd);
    return path;
}

/* --------------------------------------------------------------- tmpl */

START_TEST(an_array_template_fills_in_the_index)
{
    const char *argv[] = { "./render", "--frame", "{}", "--out", "frame-{}.png" };
    tmpl_t *t = s_tmpl(s_argv_spec(5, argv));
    ck_assert(tmpl_has_placeholder(t));
    proto_spec_t *s = tmpl_expand(t, "42", 42, TMPL_REPLACE);
    ck_assert_int_eq(s->argc, 5);
    ck_assert_str_eq(s->argv[2], "42");
    ck_assert_str_eq(s->argv[4], "frame-42.png");
    ck_assert_str_eq(s->argv[0], "./render");
    ck_assert_int_eq(s->index, 42);
    proto_spec_destroy(&s);
    /* The template itself is untouched. */
    ck_assert_str_eq(tmpl_base(t)->argv[2], "{}");
    ck_assert_int_eq(tmpl_base(t)->index, -1);
    tmpl_destroy(&t);
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(subst_replaces_every_placeholder_once)
{
    char *s = tmpl_subst("a{}b{}{}c", "X");
    ck_assert_str_eq(s, "aXbXXc");
    free(s);
    s = tmpl_subst("none here", "X");
    ck_assert_str_eq(s, "none here");
    free(s);
    s = tmpl_subst("{}", "{}"); /* the value is not scanned again */
    ck_assert_str_eq(s, "{}");
    free(s);
    s = tmpl_subst("{{}}", "7");
    ck_assert_str_eq(s, "{7}");
    free(s);
    s = tmpl_subst("x{}", "");
    ck_assert_str_eq(s, "x");
    free(s);
}
END_TEST

START_TEST(a_template_without_placeholder_only_sets_the_index)
{
    const char *argv[] = { "true" };
    tmpl_t *t = s_tmpl(s_argv_spec(1, argv));
    ck_assert(!tmpl_has_placeholder(t));
    proto_spec_t *s = tmpl_expand(t, "7", 7, TMPL_REPLACE);
    ck_assert_int_eq(s->argc, 1);
    ck_assert_int_eq(s->index, 7);
    proto_spec_destroy(&s);
    tmpl_destroy(&t);
}
END_TEST

START_TEST(shell_strings_take_the_value_verbatim)
{
    proto_spec_t *base = proto_spec_new(PROTO_KIND_EXEC);
    base->shell = xstrdup("wc -l \"{}\" > out-{}.txt");
    tmpl_t *t = s_tmpl(base);
    proto_spec_t *s = tmpl_expand(t, "my file", 3, TMPL_REPLACE_OR_APPEND);
    ck_assert_str_eq(s->shell, "wc -l \"my file\" > out-my file.txt");
    proto_spec_destroy(&s);
    tmpl_destroy(&t);

    base = proto_spec_new(PROTO_KIND_EXEC);
    base->shell = xstrdup("echo");
    t = s_tmpl(base);
    ck_assert(tmpl_can_append(t));
    s = tmpl_expand(t, "a b", 0, TMPL_REPLACE_OR_APPEND);
    ck_assert_str_eq(s->shell, "echo a b");
    proto_spec_destroy(&s);
    tmpl_destroy(&t);
}
END_TEST

START_TEST(each_appends_the_line_when_the_command_has_no_placeholder)
{
    const char *argv[] = { "python3", "process.py" };
    tmpl_t *t = s_tmpl(s_argv_spec(2, argv));
    ck_assert(tmpl_can_append(t));
    proto_spec_t *s = tmpl_expand(t, "data 1.csv", 0, TMPL_REPLACE_OR_APPEND);
    ck_assert_int_eq(s->argc, 3);
    ck_assert_str_eq(s->argv[2], "data 1.csv");
    ck_assert_ptr_null(s->argv[3]);
    proto_spec_destroy(&s);
    /* --array never appends. */
    s = tmpl_expand(t, "5", 5, TMPL_REPLACE);
    ck_assert_int_eq(s->argc, 2);
    proto_spec_destroy(&s);
    tmpl_destroy(&t);
}
END_TEST

START_TEST(fn_args_are_substituted_as_json_strings)
{
    proto_spec_t *base = proto_spec_new(PROTO_KIND_FN);
    base->fn = xstrdup("echo");
    base->args_json = xstrdup("{\"file\":\"in-{}.txt\",\"list\":[\"{}\",1],\"opts\":{},\"{}\":2}");
    tmpl_t *t = s_tmpl(base);
    ck_assert(tmpl_has_placeholder(t));
    /* A value with quotes and a backslash must still give valid JSON. */
    proto_spec_t *s = tmpl_expand(t, "a\"b\\c", 1, TMPL_REPLACE_OR_APPEND);
    cJSON *args = cJSON_Parse(s->args_json);
    ck_assert_msg(args != NULL, "args not JSON: %s", s->args_json);
    ck_assert_str_eq(cJSON_GetObjectItem(args, "file")->valuestring, "in-a\"b\\c.txt");
    ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(args, "list"), 0)->valuestring,
                     "a\"b\\c");
    ck_assert(cJSON_IsObject(cJSON_GetObjectItem(args, "opts"))); /* {} object kept */
    ck_assert_ptr_nonnull(cJSON_GetObjectItem(args, "{}"));      /* keys kept */
    cJSON_Delete(args);
    proto_spec_destroy(&s);
    tmpl_destroy(&t);

    /* Args that are one bare string. */
    base = proto_spec_new(PROTO_KIND_FN);
    base->fn = xstrdup("echo");
    base->args_json = xstrdup("\"n={}\"");
    t = s_tmpl(base);
    s = tmpl_expand(t, "9", 9, TMPL_REPLACE);
    ck_assert_str_eq(s->args_json, "\"n=9\"");
    proto_spec_destroy(&s);
    tmpl_destroy(&t);
}
END_TEST

START_TEST(fn_without_args_gets_the_line_as_args)
{
    proto_spec_t *base = proto_spec_new(PROTO_KIND_FN);
    base->fn = xstrdup("echo");
    tmpl_t *t = s_tmpl(base);
    ck_assert(tmpl_can_append(t));
    proto_spec_t *s = tmpl_expand(t, "say \"hi\"", 4, TMPL_REPLACE_OR_APPEND);
    ck_assert_str_eq(s->args_json, "\"say \\\"hi\\\"\"");
    ck_assert_int_eq(s->index, 4);
    proto_spec_destroy(&s);
    tmpl_destroy(&t);

    /* With args but no placeholder there is nowhere to put the line. */
    base = proto_spec_new(PROTO_KIND_FN);
    base->fn = xstrdup("square");
    base->args_json = xstrdup("{\"n\":3}");
    t = s_tmpl(base);
    ck_assert(!tmpl_can_append(t));
    tmpl_destroy(&t);
}
END_TEST

START_TEST(a_template_the_master_would_refuse_is_refused_up_front)
{
    const char *argv[] = { "true" };
    proto_spec_t *base = s_argv_spec(1, argv);
    base->retries = 1000;
    char err[256] = "";
    tmpl_t *t = tmpl_new(&base, err, sizeof err);
    ck_assert_ptr_null(t);
    ck_assert_ptr_null(base); /* taken even on failure */
    ck_assert_msg(strstr(err, "retries") != NULL, "reason: %s", err);
}
END_TEST

/* ------------------------------------------------------------ specopt */

START_TEST(task_options_override_and_merge)
{
    specopt_t o;
    specopt_init(&o);
    ck_assert(!specopt_any(&o));
    char err[128];
    ck_assert_int_eq(specopt_add_env(&o, "A=1", err, sizeof err), 0);
    ck_assert_int_eq(specopt_add_env(&o, "B=x=y", err, sizeof err), 0);
    ck_assert_int_eq(specopt_add_env(&o, "A=2", err, sizeof err), 0); /* later wins */
    ck_assert_int_eq(specopt_add_env(&o, "=v", err, sizeof err), -1);
    ck_assert_int_eq(specopt_add_env(&o, "NOEQ", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "KEY=VALUE"));
    specopt_add_require(&o, "gpu");
    specopt_add_require(&o, "gpu");
    o.has_timeout = true;
    o.timeout = 2.5;
    ck_assert(specopt_any(&o));
    ck_assert_int_eq(o.envc, 2);
    ck_assert_int_eq(o.nrequire, 1);

    const char *line = "{\"argv\":[\"x\"],\"timeout\":9,\"env\":{\"A\":\"0\",\"C\":\"3\"},"
                       "\"require\":[\"ssd\"]}";
    proto_err_t perr;
    proto_spec_t *s = proto_spec_decode(line, strlen(line), &perr);
    ck_assert_ptr_nonnull(s);
    specopt_apply(&o, s);
    ck_assert(s->timeout == 2.5);
    ck_assert_int_eq(s->envc, 3);
    int seen = 0;
    for (int i = 0; i < s->envc; i++) {
        if (strcmp(s->env[i], "A=2") == 0 || strcmp(s->env[i], "C=3") == 0
            || strcmp(s->env[i], "B=x=y") == 0)
            seen++;
    }
    ck_assert_int_eq(seen, 3);
    ck_assert_int_eq(s->nrequire, 2);
    proto_spec_destroy(&s);
    specopt_clear(&o);
    ck_assert(!specopt_any(&o));
}
END_TEST

/* ------------------------------------------------------------- taskgen */

START_TEST(each_makes_one_task_per_non_blank_line_indexed_by_line_number)
{
    const char text[] = "a\n\n   \nb c\r\n{}\nlast-without-newline";
    char *path = s_file(text, sizeof text - 1);
    const char *argv[] = { "echo", "<{}>" };
    tmpl_t *t = s_tmpl(s_argv_spec(2, argv));
    char err[256] = "";
    taskgen_t *g = taskgen_each(&t, path, err, sizeof err);
    ck_assert_msg(g != NULL, "%s", err);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(taskgen_count(g), 4);
    const char *want[] = { "<a>", "<b c>", "<{}>", "<last-without-newline>" };
    int64_t want_index[] = { 0, 3, 4, 5 };
    for (int i = 0; i < 4; i++) {
        proto_spec_t *s = NULL;
        ck_assert_int_eq(taskgen_next(g, &s, err, sizeof err), 1);
        ck_assert_str_eq(s->argv[1], want[i]);
        ck_assert_int_eq(s->index, want_index[i]);
        proto_spec_destroy(&s);
    }
    proto_spec_t *s = NULL;
    ck_assert_int_eq(taskgen_next(g, &s, err, sizeof err), 0);
    ck_assert_ptr_null(s);
    taskgen_destroy(&g);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(each_refuses_a_bad_line_with_its_number_before_anything_is_made)
{
    const char text[] = "ok\nfine\n\xc3\x28 broken\n";
    char *path = s_file(text, sizeof text - 1);
    const char *argv[] = { "cat" };
    tmpl_t *t = s_tmpl(s_argv_spec(1, argv));
    char err[256] = "";
    taskgen_t *g = taskgen_each(&t, path, err, sizeof err);
    ck_assert_ptr_null(g);
    ck_assert_ptr_null(t); /* freed with the failure */
    char *want = xasprintf("%s:3: the line is not valid UTF-8", path);
    ck_assert_str_eq(err, want);
    free(want);
    unlink(path);
    free(path);

    const char nul[] = "a\nb\0c\n";
    path = s_file(nul, sizeof nul - 1);
    t = s_tmpl(s_argv_spec(1, argv));
    g = taskgen_each(&t, path, err, sizeof err);
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(strstr(err, ":2: the line holds a NUL byte"));
    unlink(path);
    free(path);

    t = s_tmpl(s_argv_spec(1, argv));
    g = taskgen_each(&t, "/nonexistent/input.txt", err, sizeof err);
    ck_assert_ptr_null(g);
    ck_assert_str_eq(err, "cannot open /nonexistent/input.txt: No such file or directory");
}
END_TEST

START_TEST(each_reads_stdin_through_a_temporary_copy)
{
    const char text[] = "x\ny\n";
    char *path = s_file(text, sizeof text - 1);
    ck_assert_ptr_nonnull(freopen(path, "r", stdin));
    const char *argv[] = { "echo" };
    tmpl_t *t = s_tmpl(s_argv_spec(1, argv));
    char err[256] = "";
    taskgen_t *g = taskgen_each(&t, "-", err, sizeof err);
    ck_assert_msg(g != NULL, "%s", err);
    ck_assert_int_eq(taskgen_count(g), 2);
    proto_spec_t *s = NULL;
    ck_assert_int_eq(taskgen_next(g, &s, err, sizeof err), 1);
    ck_assert_str_eq(s->argv[1], "x");
    proto_spec_destroy(&s);
    ck_assert_int_eq(taskgen_next(g, &s, err, sizeof err), 1);
    ck_assert_str_eq(s->argv[1], "y");
    proto_spec_destroy(&s);
    taskgen_destroy(&g);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(jsonl_errors_name_the_file_and_line)
{
    /* 16 good lines (and a blank one), then a bad timeout on line 18. */
    size_t cap = 4096, len = 0;
    char *text = xmalloc(cap);
    for (int i = 0; i < 16; i++)
        len += (size_t) snprintf(text + len, cap - len, "{\"argv\":[\"echo\",\"%d\"]}\n", i);
    len += (size_t) snprintf(text + len, cap - len, "\n{\"shell\":\"true\",\"timeout\":-1}\n");
    char *path = s_file(text, len);
    free(text);
    char err[512] = "";
    taskgen_t *g = taskgen_jsonl(path, NULL, err, sizeof err);
    ck_assert_ptr_null(g);
    char *prefix = xasprintf("%s:18: ", path);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "error: %s", err);
    ck_assert_msg(strstr(err, "timeout") != NULL, "error does not name the field: %s", err);
    free(prefix);
    unlink(path);
    free(path);

    const char bad[] = "{\"argv\":[\"a\"]}\nnot json\n";
    path = s_file(bad, sizeof bad - 1);
    g = taskgen_jsonl(path, NULL, err, sizeof err);
    ck_assert_ptr_null(g);
    ck_assert_msg(strstr(err, ":2: ") != NULL, "error: %s", err);
    unlink(path);
    free(path);

    const char typo[] = "{\"argv\":[\"a\"],\"timeuot\":3}\n";
    path = s_file(typo, sizeof typo - 1);
    g = taskgen_jsonl(path, NULL, err, sizeof err);
    ck_assert_ptr_null(g);
    ck_assert_msg(strstr(err, ":1: ") != NULL && strstr(err, "timeuot") != NULL, "error: %s",
                  err);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(jsonl_specs_come_out_with_the_options_applied)
{
    const char text[] = "{\"argv\":[\"a\"],\"index\":4}\n\n{\"fn\":\"square\",\"args\":{\"n\":2}}\n";
    char *path = s_file(text, sizeof text - 1);
    specopt_t o;
    specopt_init(&o);
    o.has_retries = true;
    o.retries = 3;
    char err[256] = "";
    taskgen_t *g = taskgen_jsonl(path, &o, err, sizeof err);
    ck_assert_msg(g != NULL, "%s", err);
    ck_assert_int_eq(taskgen_count(g), 2);
    proto_spec_t *s = NULL;
    ck_assert_int_eq(taskgen_next(g, &s, err, sizeof err), 1);
    ck_assert_str_eq(s->argv[0], "a");
    ck_assert_int_eq(s->index, 4);
    ck_assert_int_eq(s->retries, 3);
    proto_spec_destroy(&s);
    ck_assert_int_eq(taskgen_next(g, &s, err, sizeof err), 1);
    ck_assert_str_eq(s->fn, "square");
    ck_assert_int_eq(s->retries, 3);
    proto_spec_destroy(&s);
    ck_assert_int_eq(taskgen_next(g, &s, err, sizeof err), 0);
    taskgen_destroy(&g);
    specopt_clear(&o);
    unlink(path);
    free(path);
}
END_TEST

/* The options are part of what the master will read: a line valid on its
   own but not with them must be refused by the first pass, before any
   batch has gone out (256 labels is the limit; --require adds one). */
START_TEST(jsonl_lines_are_checked_with_the_options_applied)
{
    size_t cap = 8192, len = 0;
    char *text = xmalloc(cap);
    len += (size_t) snprintf(text + len, cap - len, "{\"argv\":[\"a\"]}\n{\"argv\":[\"b\"],\"require\":[");
    for (int i = 0; i < 256; i++)
        len += (size_t) snprintf(text + len, cap - len, "%s\"l%d\"", i ? "," : "", i);
    len += (size_t) snprintf(text + len, cap - len, "]}\n");
    char *path = s_file(text, len);
    free(text);
    char err[512] = "";
    taskgen_t *g = taskgen_jsonl(path, NULL, err, sizeof err);
    ck_assert_msg(g != NULL, "256 labels are allowed: %s", err);
    ck_assert_int_eq(taskgen_count(g), 2);
    taskgen_destroy(&g);

    specopt_t o;
    specopt_init(&o);
    specopt_add_require(&o, "gpu");
    g = taskgen_jsonl(path, &o, err, sizeof err);
    ck_assert_ptr_null(g);
    ck_assert_msg(strstr(err, ":2: with the submit options applied: ") != NULL
                      && strstr(err, "require") != NULL,
                  "error: %s", err);
    specopt_clear(&o);
    unlink(path);
    free(path);
}
END_TEST

/* --------------------------------------------------------------- batch */

/* What the fake sender saw. */
typedef struct {
    int calls;
    int fail_at;             /* refuse this call (1-based), 0 = never */
    int64_t total;
    int ntasks[512];
    bool more[512];
    int64_t job[512];
    bool named[512];
    size_t spec_bytes[512];
    int ndeps[512];
    proto_dep_t deps[PROTO_MAX_DEPS];   /* the first request's, decoded */
    int64_t next_index;      /* indices must arrive in order */
    bool in_order;
    int64_t want;            /* s_count_send: the tasks the run makes */
} seen_t;

static int s_fake_send(void *arg, const proto_req_t *req, int64_t *job)
{
    seen_t *s = arg;
    int i = s->calls++;
    ck_assert_int_lt(i, 512);
    if (s->fail_at && s->calls == s->fail_at)
        return -1;
    /* Check the request the way the master will read it. */
    char *text = proto_req_encode(req);
    ck_assert_ptr_nonnull(text);
    proto_err_t perr;
    proto_req_t *back = proto_req_decode(text, strlen(text), &perr);
    ck_assert_msg(back != NULL, "request does not decode: %s", perr.message);
    free(text);
    s->ntasks[i] = back->ntasks;
    s->more[i] = back->more;
    s->job[i] = back->job;
    s->named[i] = back->name != NULL;
    s->ndeps[i] = back->ndeps;
    if (i == 0 && back->ndeps)
        memcpy(s->deps, back->deps, (size_t) back->ndeps * sizeof *back->deps);
    for (int k = 0; k < back->ntasks; k++) {
        char *st = proto_spec_encode(back->tasks[k]);
        s->spec_bytes[i] += strlen(st);
        free(st);
        if (back->tasks[k]->index != s->next_index)
            s->in_order = false;
        s->next_index++;
    }
    proto_req_destroy(&back);
    s->total += req->ntasks;
    *job = 77;
    return 0;
}

static taskgen_t *s_array_gen(const char *spec)
{
    char err[256];
    range_t *r = range_parse(spec, err, sizeof err);
    ck_assert_ptr_nonnull(r);
    const char *argv[] = { "echo", "{}" };
    tmpl_t *t = s_tmpl(s_argv_spec(2, argv));
    return taskgen_array(&t, &r);
}

static void s_check_split(const char *spec, int batch, int64_t n)
{
    taskgen_t *g = s_array_gen(spec);
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    seen.in_order = true;
    batch_opts_t o = { .max_specs = batch, .job_name = "myjob" };
    batch_result_t res;
    char err[256] = "";
    ck_assert_int_eq(batch_run(g, &o, s_fake_send, &seen, &res, err, sizeof err), 0);
    int64_t want = (n + batch - 1) / batch;
    ck_assert_int_eq(seen.calls, want);
    ck_assert_int_eq(res.requests, want);
    ck_assert_int_eq(res.submitted, n);
    ck_assert_int_eq(seen.total, n);
    ck_assert_int_eq(res.job, 77);
    ck_assert(seen.in_order);
    for (int i = 0; i < seen.calls; i++) {
        bool last = i == seen.calls - 1;
        ck_assert_msg(seen.more[i] == !last, "request %d: more=%d", i, seen.more[i]);
        ck_assert_int_eq(seen.job[i], i == 0 ? 0 : 77);
        ck_assert(seen.named[i] == (i == 0)); /* the name goes with the first */
        ck_assert_int_eq(seen.ntasks[i], last ? n - (int64_t) batch * i : batch);
    }
    taskgen_destroy(&g);
}

START_TEST(batches_split_at_the_spec_limit_with_more_on_all_but_the_last)
{
    s_check_split("0", 5000, 1);
    s_check_split("0-4999", 5000, 5000);   /* exactly one full batch: more=false */
    s_check_split("0-5000", 5000, 5001);
    s_check_split("0-12344", 5000, 12345);
    s_check_split("0-9", 3, 10);
    s_check_split("0-8", 3, 9);
}
END_TEST

START_TEST(dependencies_go_with_the_first_batch_only)
{
    taskgen_t *g = s_array_gen("0-9");
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    const proto_dep_t deps[] = {{.job = 3, .kind = PROTO_DEP_OK},
                                {.job = 5, .kind = PROTO_DEP_EACH},
                                {.job = 4, .kind = PROTO_DEP_ANY}};
    batch_opts_t o = {.max_specs = 4, .deps = deps, .ndeps = 3};
    batch_result_t res;
    char err[256] = "";
    ck_assert_int_eq(batch_run(g, &o, s_fake_send, &seen, &res, err, sizeof err), 0);
    ck_assert_int_eq(seen.calls, 3);
    ck_assert_int_eq(seen.ndeps[0], 3);
    ck_assert_int_eq(seen.ndeps[1], 0);
    ck_assert_int_eq(seen.ndeps[2], 0);
    /* Every kind comes back, whatever order the wire groups them in. */
    int found = 0;
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 3; k++)
            found += seen.deps[i].job == deps[k].job && seen.deps[i].kind == deps[k].kind;
    ck_assert_int_eq(found, 3);
    taskgen_destroy(&g);
}
END_TEST

START_TEST(batches_split_at_the_byte_limit)
{
    /* 1000 tasks carrying 3000 bytes of stdin each, 20000 bytes a batch. */
    const char *argv[] = { "cat" };
    proto_spec_t *base = s_argv_spec(1, argv);
    base->stdin_data = xmalloc(3001);
    memset(base->stdin_data, 'x', 3000);
    base->stdin_data[3000] = '\0';
    base->stdin_len = 3000;
    tmpl_t *t = s_tmpl(base);
    char err[256];
    range_t *r = range_parse("0-999", err, sizeof err);
    taskgen_t *g = taskgen_array(&t, &r);
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    seen.in_order = true;
    batch_opts_t o = { .max_specs = 5000, .max_bytes = 20000 };
    batch_result_t res;
    ck_assert_int_eq(batch_run(g, &o, s_fake_send, &seen, &res, err, sizeof err), 0);
    ck_assert_int_eq(res.submitted, 1000);
    ck_assert_int_gt(seen.calls, 1000 / 7);
    for (int i = 0; i < seen.calls; i++) {
        ck_assert_msg(seen.spec_bytes[i] <= 20000, "request %d: %zu bytes", i,
                      seen.spec_bytes[i]);
        ck_assert(seen.more[i] == (i < seen.calls - 1));
    }
    ck_assert(seen.in_order);
    taskgen_destroy(&g);
}
END_TEST

START_TEST(a_spec_larger_than_a_batch_travels_alone)
{
    const char *argv[] = { "cat" };
    proto_spec_t *base = s_argv_spec(1, argv);
    base->stdin_data = xstrdup("0123456789012345678901234567890123456789");
    base->stdin_len = strlen(base->stdin_data);
    tmpl_t *t = s_tmpl(base);
    char err[256];
    range_t *r = range_parse("0-2", err, sizeof err);
    taskgen_t *g = taskgen_array(&t, &r);
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    seen.in_order = true;
    batch_opts_t o = { .max_specs = 100, .max_bytes = 10 };
    batch_result_t res;
    ck_assert_int_eq(batch_run(g, &o, s_fake_send, &seen, &res, err, sizeof err), 0);
    ck_assert_int_eq(seen.calls, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(seen.ntasks[i], 1);
    taskgen_destroy(&g);
}
END_TEST

START_TEST(a_refused_batch_stops_the_run_and_says_how_far_it_got)
{
    taskgen_t *g = s_array_gen("0-99");
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    seen.in_order = true;
    seen.fail_at = 3;
    batch_opts_t o = { .max_specs = 10 };
    batch_result_t res;
    char err[256] = "";
    ck_assert_int_eq(batch_run(g, &o, s_fake_send, &seen, &res, err, sizeof err), -1);
    ck_assert(res.send_failed);
    ck_assert_int_eq(res.job, 77);
    ck_assert_int_eq(res.submitted, 20);
    ck_assert_int_eq(res.requests, 2);
    ck_assert_int_eq(seen.calls, 3);
    taskgen_destroy(&g);

    /* Refused at the first request: no job. */
    g = s_array_gen("0-4");
    memset(&seen, 0, sizeof seen);
    seen.fail_at = 1;
    ck_assert_int_eq(batch_run(g, &o, s_fake_send, &seen, &res, err, sizeof err), -1);
    ck_assert_int_eq(res.job, 0);
    ck_assert_int_eq(res.submitted, 0);
    taskgen_destroy(&g);
}
END_TEST

START_TEST(an_empty_input_submits_nothing)
{
    const char text[] = "\n  \n";
    char *path = s_file(text, sizeof text - 1);
    const char *argv[] = { "echo" };
    tmpl_t *t = s_tmpl(s_argv_spec(1, argv));
    char err[256] = "";
    taskgen_t *g = taskgen_each(&t, path, err, sizeof err);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(taskgen_count(g), 0);
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    batch_opts_t o = { 0 };
    batch_result_t res;
    ck_assert_int_eq(batch_run(g, &o, s_fake_send, &seen, &res, err, sizeof err), -1);
    ck_assert(!res.send_failed);
    ck_assert_str_eq(err, "no tasks to submit");
    ck_assert_int_eq(seen.calls, 0);
    taskgen_destroy(&g);
    unlink(path);
    free(path);
}
END_TEST

/* Counts without decoding: the million-task run measures the batcher. */
static int s_count_send(void *arg, const proto_req_t *req, int64_t *job)
{
    seen_t *s = arg;
    ck_assert_int_le(req->ntasks, BATCH_MAX_SPECS);
    ck_assert(req->more == (s->total + req->ntasks < s->want));
    s->calls++;
    s->total += req->ntasks;
    *job = 5;
    return 0;
}

/* A tenth under valgrind (zt_loops): the same batches, 20 of them. */
START_TEST(a_million_tasks_stream_in_bounded_batches)
{
    const int n = zt_loops(1000000);
    char range[32];
    snprintf(range, sizeof range, "1-%d", n);
    taskgen_t *g = s_array_gen(range);
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    seen.want = n;
    batch_opts_t o = { 0 };
    batch_result_t res;
    char err[256] = "";
    ck_assert_int_eq(batch_run(g, &o, s_count_send, &seen, &res, err, sizeof err), 0);
    ck_assert_int_eq(seen.total, n);
    ck_assert_int_eq(seen.calls, n / BATCH_MAX_SPECS);
    taskgen_destroy(&g);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "cli_submit", .tcase = "submit", .timeout_s = 60 });
}
