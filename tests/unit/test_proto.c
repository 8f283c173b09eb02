/*  Unit tests for proto: the wire format. Every message type round-trips,
    every validation rule refuses what it should with the right code, the
    raw encoders produce what the decoders accept, and no decoder crashes
    or reads past its buffer on damaged input (decoders always get an
    exact-size heap copy without a terminating NUL, so ASan sees any
    over-read). */
#include "../../common/util.h"
#include "../../proto/proto.h"
/* Internal: the fast paths and the cJSON decoders behind them. */
#include "../../proto/proto_hooks.h"
#include "../../proto/proto_text.h"
#include "../../proto/proto_writer.h"

#include "../ztest.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

typedef enum { CH_SPEC, CH_RESULT, CH_REQ, CH_REPLY, CH_PIPE, CH_REPORT } chan_t;

/* Decodes text[0..len) on channel ch from an exact-size heap copy; frees
   what was decoded. Returns true when the decoder accepted it. */
static bool s_decodes(chan_t ch, const char *text, size_t len, proto_req_type_t rt,
                      proto_err_t *err)
{
    char *buf = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, text, len);
    memset(err, 0, sizeof *err);
    bool ok = false;
    switch (ch) {
    case CH_SPEC: {
        proto_spec_t *s = proto_spec_decode(buf, len, err);
        ok = s != NULL;
        proto_spec_destroy(&s);
        break;
    }
    case CH_RESULT: {
        proto_result_t *r = proto_result_decode(buf, len, err);
        ok = r != NULL;
        proto_result_destroy(&r);
        break;
    }
    case CH_REQ: {
        proto_req_t *r = proto_req_decode(buf, len, err);
        ok = r != NULL;
        proto_req_destroy(&r);
        break;
    }
    case CH_REPLY: {
        proto_reply_t *r = proto_reply_decode(buf, len, rt, err);
        ok = r != NULL;
        proto_reply_destroy(&r);
        break;
    }
    case CH_PIPE: {
        proto_pipe_t *p = proto_pipe_decode(buf, len, err);
        ok = p != NULL;
        proto_pipe_destroy(&p);
        break;
    }
    case CH_REPORT: {
        proto_report_t *r = proto_report_decode(buf, len, err);
        ok = r != NULL;
        proto_report_destroy(&r);
        break;
    }
    }
    free(buf);
    if (!ok) {
        /* Every refusal says what and why, in one line. */
        ck_assert_msg(err->code[0] != '\0', "refusal without a code");
        ck_assert_msg(err->message[0] != '\0', "refusal without a message");
        ck_assert_ptr_null(strchr(err->message, '\n'));
    }
    return ok;
}

/* Asserts that text is refused on ch with code, and that the message
   contains want (when not NULL). */
static void s_refused_as(chan_t ch, proto_req_type_t rt, const char *text, const char *code,
                         const char *want)
{
    proto_err_t err;
    ck_assert_msg(!s_decodes(ch, text, strlen(text), rt, &err), "accepted: %s", text);
    ck_assert_msg(strcmp(err.code, code) == 0, "%s: code %s, want %s (%s)", text, err.code, code,
                  err.message);
    if (want)
        ck_assert_msg(strstr(err.message, want), "%s: message \"%s\" lacks \"%s\"", text,
                      err.message, want);
}

#define REFUSED(ch, text, code, want) s_refused_as((ch), PROTO_REQ_STATUS, (text), (code), (want))

static void s_accepted(chan_t ch, proto_req_type_t rt, const char *text)
{
    proto_err_t err;
    ck_assert_msg(s_decodes(ch, text, strlen(text), rt, &err), "%s refused: %s %s", text,
                  err.code, err.message);
}

static proto_spec_t *s_spec(const char *json)
{
    proto_err_t err = {0};
    proto_spec_t *s = proto_spec_decode(json, strlen(json), &err);
    ck_assert_msg(s != NULL, "%s: %s", json, err.message);
    return s;
}

static bool s_streq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool s_strv_eq(char **a, int na, char **b, int nb)
{
    if (na != nb || (!a) != (!b))
        return false;
    for (int i = 0; i < na; i++)
        if (!s_streq(a[i], b[i]))
            return false;
    return !a || (a[na] == NULL && b[nb] == NULL);
}

static void s_spec_eq(const proto_spec_t *a, const proto_spec_t *b)
{
    ck_assert_int_eq(a->kind, b->kind);
    ck_assert(s_strv_eq(a->argv, a->argc, b->argv, b->argc));
    ck_assert(s_streq(a->shell, b->shell));
    ck_assert(s_streq(a->fn, b->fn));
    ck_assert(s_streq(a->args_json, b->args_json));
    ck_assert_uint_eq(a->stdin_len, b->stdin_len);
    ck_assert(s_streq(a->stdin_data, b->stdin_data));
    ck_assert(s_strv_eq(a->env, a->envc, b->env, b->envc));
    ck_assert(s_streq(a->cwd, b->cwd));
    ck_assert(a->timeout == b->timeout);
    ck_assert_int_eq(a->retries, b->retries);
    ck_assert_int_eq(a->priority, b->priority);
    ck_assert(s_streq(a->name, b->name));
    ck_assert_int_eq(a->index, b->index);
    ck_assert(s_strv_eq(a->require, a->nrequire, b->require, b->nrequire));
    ck_assert_int_eq(a->output_cap, b->output_cap);
}

static void s_result_eq(const proto_result_t *a, const proto_result_t *b)
{
    ck_assert_int_eq(a->task, b->task);
    ck_assert_int_eq(a->attempt, b->attempt);
    ck_assert_int_eq(a->status, b->status);
    ck_assert_int_eq(a->has_exit_code, b->has_exit_code);
    if (a->has_exit_code)
        ck_assert_int_eq(a->exit_code, b->exit_code);
    ck_assert_int_eq(a->signal, b->signal);
    ck_assert_int_eq(a->timed_out, b->timed_out);
    ck_assert(s_streq(a->stdout_data, b->stdout_data));
    ck_assert(s_streq(a->stderr_data, b->stderr_data));
    ck_assert_int_eq(a->stdout_truncated, b->stdout_truncated);
    ck_assert_int_eq(a->stderr_truncated, b->stderr_truncated);
    ck_assert(s_streq(a->result_json, b->result_json));
    ck_assert(s_streq(a->error, b->error));
    ck_assert(a->started == b->started);
    ck_assert(a->finished == b->finished);
}

static proto_result_t *s_full_result(int64_t task, int attempt)
{
    proto_result_t *r = proto_result_new();
    r->task = task;
    r->attempt = attempt;
    r->status = PROTO_ST_FAILED;
    r->has_exit_code = true;
    r->exit_code = 3;
    r->signal = 0;
    r->timed_out = true;
    r->stdout_data = strdup("line 1\nline \"2\"\t\\ caf\xc3\xa9 \x01\x1f end");
    r->stderr_data = strdup("");
    r->stdout_truncated = true;
    r->stderr_truncated = true;
    r->result_json = strdup("{\"sum\":[1,2.5,\"x\",null,true]}");
    r->error = strdup("exit status 3");
    r->started = 1764410400.123456;
    r->finished = 1764410401.987654;
    return r;
}

static char *s_str_of(size_t n, char c)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ------------------------------------------------------- usage example */

START_TEST(a_client_submits_a_spec_and_the_master_reads_it_back)
{
    /* The CLI turns a JSONL line into a spec, wraps specs in a submit... */
    proto_spec_t *spec = s_spec("{\"argv\":[\"echo\",\"hello\"],\"timeout\":30,\"retries\":2}");
    proto_req_t *req = proto_req_new(PROTO_REQ_SUBMIT);
    req->name = strdup("greetings");
    req->tasks = calloc(1, sizeof *req->tasks);
    req->tasks[0] = spec;
    req->ntasks = 1;
    char *frame = proto_req_encode(req);

    /* ...and the master decodes the frame into the same specs. */
    proto_err_t err;
    proto_req_t *got = proto_req_decode(frame, strlen(frame), &err);
    ck_assert_msg(got != NULL, "%s", err.message);
    ck_assert_int_eq(got->type, PROTO_REQ_SUBMIT);
    ck_assert_str_eq(got->name, "greetings");
    ck_assert_int_eq(got->ntasks, 1);
    ck_assert_int_eq(got->tasks[0]->kind, PROTO_KIND_EXEC);
    ck_assert_str_eq(got->tasks[0]->argv[1], "hello");
    ck_assert(got->tasks[0]->timeout == 30);
    s_spec_eq(got->tasks[0], spec);

    /* It answers with a reply the client decodes for that request type. */
    proto_reply_t *rep = proto_reply_new(true);
    rep->job = 7;
    rep->accepted = 1;
    rep->total = 1;
    char *text = proto_reply_encode(rep, PROTO_REQ_SUBMIT);
    proto_reply_t *back = proto_reply_decode(text, strlen(text), PROTO_REQ_SUBMIT, &err);
    ck_assert_ptr_nonnull(back);
    ck_assert(back->ok);
    ck_assert_int_eq(back->job, 7);
    ck_assert_int_eq(back->accepted, 1);

    free(frame);
    free(text);
    proto_req_destroy(&req);
    ck_assert_ptr_null(req);
    proto_req_destroy(&got);
    proto_reply_destroy(&rep);
    proto_reply_destroy(&back);
}
END_TEST

/* ---------------------------------------------------------------- specs */

START_TEST(spec_with_every_field_round_trips)
{
    const char *in =
        "{\"argv\":[\"sh\",\"-c\",\"echo $A\",\"\"],\"stdin\":\"in\\nput \\u00e9\","
        "\"env\":{\"A\":\"1\",\"B\":\"x=y\",\"C\":\"\"},\"cwd\":\"/tmp\",\"timeout\":2.25,"
        "\"retries\":100,\"priority\":-2147483648,\"name\":\"t\",\"index\":9007199254740991,"
        "\"require\":[\"gpu\",\"big\"],\"output_cap\":67108864}";
    proto_spec_t *a = s_spec(in);
    ck_assert_int_eq(a->kind, PROTO_KIND_EXEC);
    ck_assert_int_eq(a->argc, 4);
    ck_assert_ptr_null(a->argv[4]);
    ck_assert_str_eq(a->stdin_data, "in\nput \xc3\xa9");
    ck_assert_uint_eq(a->stdin_len, 9);
    ck_assert_int_eq(a->envc, 3);
    ck_assert_str_eq(a->env[1], "B=x=y");
    ck_assert_str_eq(a->env[2], "C=");
    ck_assert_int_eq(a->priority, INT32_MIN);
    ck_assert_int_eq(a->index, 9007199254740991LL);
    ck_assert_int_eq(a->nrequire, 2);
    ck_assert_int_eq(a->output_cap, PROTO_MAX_OUTPUT_CAP);

    char *text = proto_spec_encode(a);
    proto_spec_t *b = s_spec(text);
    s_spec_eq(a, b);
    proto_spec_t *c = proto_spec_dup(a);
    s_spec_eq(a, c);
    ck_assert_ptr_ne(c->argv, a->argv);
    char *text2 = proto_spec_encode(c);
    ck_assert_str_eq(text, text2);

    free(text);
    free(text2);
    proto_spec_destroy(&a);
    proto_spec_destroy(&b);
    proto_spec_destroy(&c);
    ck_assert_ptr_null(c);
    proto_spec_destroy(&c); /* NULL is fine */
}
END_TEST

START_TEST(fn_spec_embeds_args_as_json_not_as_a_string)
{
    proto_spec_t *s = s_spec("{ \"fn\" : \"sum\", \"args\" : { \"xs\" : [ 1, 2.5, null ] } }");
    ck_assert_int_eq(s->kind, PROTO_KIND_FN);
    ck_assert_str_eq(s->fn, "sum");
    ck_assert_str_eq(s->args_json, "{\"xs\":[1,2.5,null]}");
    ck_assert_ptr_null(s->argv);
    ck_assert_ptr_null(s->shell);
    char *text = proto_spec_encode(s);
    ck_assert_str_eq(text, "{\"fn\":\"sum\",\"args\":{\"xs\":[1,2.5,null]}}");
    free(text);
    proto_spec_destroy(&s);

    s = s_spec("{\"fn\":\"f\",\"args\":\"a string\"}");
    ck_assert_str_eq(s->args_json, "\"a string\"");
    proto_spec_destroy(&s);
}
END_TEST

START_TEST(spec_encoding_is_normalized_and_leaves_defaults_out)
{
    proto_spec_t *a = s_spec("{\"retries\":0,\"shell\":\"ls\",\"timeout\":0,\"priority\":0,"
                             "\"output_cap\":1048576,\"require\":[],\"env\":{},\"index\":null}");
    proto_spec_t *b = s_spec("{\"shell\":\"ls\"}");
    char *ta = proto_spec_encode(a), *tb = proto_spec_encode(b);
    ck_assert_str_eq(ta, "{\"shell\":\"ls\"}");
    ck_assert_str_eq(ta, tb);
    ck_assert_int_eq(a->index, -1);
    ck_assert_int_eq(a->output_cap, PROTO_DEFAULT_OUTPUT_CAP);
    ck_assert_ptr_null(a->require);
    ck_assert_ptr_null(a->env);
    free(ta);
    free(tb);
    proto_spec_destroy(&a);
    proto_spec_destroy(&b);

    /* Field order in the input does not matter. */
    a = s_spec("{\"name\":\"n\",\"priority\":5,\"shell\":\"x\",\"cwd\":\"/\"}");
    b = s_spec("{\"cwd\":\"/\",\"shell\":\"x\",\"name\":\"n\",\"priority\":5}");
    ta = proto_spec_encode(a);
    tb = proto_spec_encode(b);
    ck_assert_str_eq(ta, tb);
    ck_assert_str_eq(ta, "{\"shell\":\"x\",\"cwd\":\"/\",\"priority\":5,\"name\":\"n\"}");
    free(ta);
    free(tb);
    proto_spec_destroy(&a);
    proto_spec_destroy(&b);
}
END_TEST

START_TEST(output_files_round_trip_and_their_placeholders_are_filled)
{
    const char *text = "{\"argv\":[\"a\"],\"stdout_file\":\"out/%{job}/%{index}.o\","
                       "\"stderr_file\":\"e-%{task}-%{attempt}-100%\",\"capture\":false}";
    proto_err_t err;
    proto_spec_t *spec = proto_spec_decode(text, strlen(text), &err);
    ck_assert_msg(spec != NULL, "%s", err.message);
    ck_assert(spec->no_capture);
    char *again = proto_spec_encode(spec);
    ck_assert_str_eq(again, text);
    free(again);
    char *p = proto_spec_path(spec->stdout_file, 7, 3, 40, 2, &err);
    ck_assert_str_eq(p, "out/7/3.o");
    free(p);
    p = proto_spec_path(spec->stderr_file, 7, -1, 40, 2, &err);
    ck_assert_str_eq(p, "e-40-2-100%");
    free(p);
    ck_assert_ptr_null(proto_spec_path("x-%{jobs}", 1, 1, 1, 1, &err));
    ck_assert_ptr_nonnull(strstr(err.message, "unknown placeholder"));
    proto_spec_destroy(&spec);
    REFUSED(CH_SPEC, "{\"argv\":[\"a\"],\"stdout_file\":\"%{nope}\"}", PROTO_E_FIELD,
            "stdout_file");
    REFUSED(CH_SPEC, "{\"fn\":\"f\",\"stdout_file\":\"x\"}", PROTO_E_FIELD, "commands");
    REFUSED(CH_SPEC, "{\"argv\":[\"a\"],\"stderr_file\":\"\"}", PROTO_E_FIELD, "stderr_file");
}
END_TEST

START_TEST(integral_numbers_are_accepted_in_any_spelling)
{
    proto_spec_t *s = s_spec("{\"shell\":\"x\",\"retries\":2.0,\"priority\":1e2,\"index\":-0}");
    ck_assert_int_eq(s->retries, 2);
    ck_assert_int_eq(s->priority, 100);
    ck_assert_int_eq(s->index, 0);
    proto_spec_destroy(&s);
}
END_TEST

START_TEST(spec_exec_fn_exclusivity_is_enforced)
{
    REFUSED(CH_SPEC, "{}", PROTO_E_FIELD, "needs one of");
    REFUSED(CH_SPEC, "{\"timeout\":1}", PROTO_E_FIELD, "needs one of");
    REFUSED(CH_SPEC, "{\"argv\":[\"a\"],\"shell\":\"b\"}", PROTO_E_FIELD, "exactly one");
    REFUSED(CH_SPEC, "{\"shell\":\"b\",\"fn\":\"c\"}", PROTO_E_FIELD, "exactly one");
    REFUSED(CH_SPEC, "{\"argv\":[\"a\"],\"fn\":\"c\"}", PROTO_E_FIELD, "exactly one");
    REFUSED(CH_SPEC, "{\"shell\":\"b\",\"args\":[1]}", PROTO_E_FIELD, "\"args\" is only allowed");
    REFUSED(CH_SPEC, "{\"argv\":[\"a\"],\"args\":{}}", PROTO_E_FIELD, "\"args\" is only allowed");
    s_accepted(CH_SPEC, 0, "{\"fn\":\"c\",\"args\":null}");
    s_accepted(CH_SPEC, 0, "{\"shell\":\"b\",\"fn\":null}");
}
END_TEST

START_TEST(spec_unknown_and_duplicate_fields_are_errors)
{
    REFUSED(CH_SPEC, "{\"shell\":\"x\",\"timout\":3}", PROTO_E_FIELD, "unknown field \"timout\"");
    REFUSED(CH_SPEC, "{\"shell\":\"x\",\"Shell\":\"y\"}", PROTO_E_FIELD, "unknown field \"Shell\"");
    REFUSED(CH_SPEC, "{\"shell\":\"x\",\"shell\":\"y\"}", PROTO_E_FIELD, "twice");
    REFUSED(CH_SPEC, "{\"shell\":\"x\",\"env\":{\"A\":\"1\",\"A\":\"2\"}}", PROTO_E_FIELD, "twice");
}
END_TEST

START_TEST(spec_fields_of_the_wrong_type_or_range_are_named)
{
    static const struct {
        const char *json, *field;
    } cases[] = {
        {"{\"argv\":\"ls\"}", "\"argv\""},
        {"{\"argv\":[]}", "\"argv\""},
        {"{\"argv\":[\"ls\",1]}", "\"argv\" element 1"},
        {"{\"argv\":[\"\"]}", "\"argv\""},
        {"{\"shell\":\"\"}", "\"shell\""},
        {"{\"shell\":[\"x\"]}", "\"shell\""},
        {"{\"fn\":\"\"}", "\"fn\""},
        {"{\"fn\":7}", "\"fn\""},
        {"{\"shell\":\"x\",\"stdin\":1}", "\"stdin\""},
        {"{\"shell\":\"x\",\"env\":[\"A=1\"]}", "\"env\""},
        {"{\"shell\":\"x\",\"env\":{\"A\":1}}", "\"env\""},
        {"{\"shell\":\"x\",\"env\":{\"A=B\":\"1\"}}", "\"env\""},
        {"{\"shell\":\"x\",\"env\":{\"\":\"1\"}}", "\"env\""},
        {"{\"shell\":\"x\",\"cwd\":\"\"}", "\"cwd\""},
        {"{\"shell\":\"x\",\"cwd\":false}", "\"cwd\""},
        {"{\"shell\":\"x\",\"timeout\":-1}", "field \"timeout\" must be a number >= 0"},
        {"{\"shell\":\"x\",\"timeout\":\"5\"}", "\"timeout\""},
        {"{\"shell\":\"x\",\"timeout\":2592001}", "\"timeout\""},
        {"{\"shell\":\"x\",\"timeout\":1e999}", "\"timeout\""},
        {"{\"shell\":\"x\",\"retries\":101}", "\"retries\""},
        {"{\"shell\":\"x\",\"retries\":-1}", "\"retries\""},
        {"{\"shell\":\"x\",\"retries\":1.5}", "\"retries\""},
        {"{\"shell\":\"x\",\"retries\":true}", "\"retries\""},
        {"{\"shell\":\"x\",\"priority\":2147483648}", "\"priority\""},
        {"{\"shell\":\"x\",\"priority\":-2147483649}", "\"priority\""},
        {"{\"shell\":\"x\",\"name\":3}", "\"name\""},
        {"{\"shell\":\"x\",\"name\":\"\"}", "\"name\""},
        {"{\"shell\":\"x\",\"index\":-1}", "\"index\""},
        {"{\"shell\":\"x\",\"index\":0.5}", "\"index\""},
        {"{\"shell\":\"x\",\"index\":9007199254740993}", "\"index\""},
        {"{\"shell\":\"x\",\"require\":\"gpu\"}", "\"require\""},
        {"{\"shell\":\"x\",\"require\":[1]}", "\"require\" element 0"},
        {"{\"shell\":\"x\",\"require\":[\"\"]}", "\"require\""},
        {"{\"shell\":\"x\",\"output_cap\":0}", "\"output_cap\""},
        {"{\"shell\":\"x\",\"output_cap\":67108865}", "\"output_cap\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        REFUSED(CH_SPEC, cases[i].json, PROTO_E_FIELD, cases[i].field);
}
END_TEST

START_TEST(names_longer_than_the_limit_are_refused)
{
    char *name = s_str_of(PROTO_MAX_NAME, 'n');
    char json[1024];
    snprintf(json, sizeof json, "{\"fn\":\"%s\",\"name\":\"%s\",\"require\":[\"%s\"]}", name, name,
             name);
    s_accepted(CH_SPEC, 0, json);
    snprintf(json, sizeof json, "{\"fn\":\"%sx\"}", name);
    REFUSED(CH_SPEC, json, PROTO_E_FIELD, "\"fn\" is longer than 256");
    snprintf(json, sizeof json, "{\"fn\":\"f\",\"name\":\"%sx\"}", name);
    REFUSED(CH_SPEC, json, PROTO_E_FIELD, "\"name\"");
    snprintf(json, sizeof json, "{\"fn\":\"f\",\"require\":[\"%sx\"]}", name);
    REFUSED(CH_SPEC, json, PROTO_E_FIELD, "\"require\"");
    free(name);
}
END_TEST

START_TEST(text_that_is_not_one_json_object_is_refused)
{
    REFUSED(CH_SPEC, "", PROTO_E_PARSE, NULL);
    REFUSED(CH_SPEC, "   ", PROTO_E_PARSE, NULL);
    REFUSED(CH_SPEC, "{\"shell\":", PROTO_E_PARSE, "not valid JSON");
    REFUSED(CH_SPEC, "{'shell':'x'}", PROTO_E_PARSE, NULL);
    REFUSED(CH_SPEC, "[{\"shell\":\"x\"}]", PROTO_E_PARSE, "not a JSON object");
    REFUSED(CH_SPEC, "\"shell\"", PROTO_E_PARSE, "not a JSON object");
    REFUSED(CH_SPEC, "null", PROTO_E_PARSE, NULL);
    REFUSED(CH_SPEC, "{\"shell\":\"x\"}{}", PROTO_E_PARSE, "trailing");
    REFUSED(CH_SPEC, "{\"shell\":\"x\"} x", PROTO_E_PARSE, "trailing");
    REFUSED(CH_SPEC, "{\"shell\":\"\\ud800\"}", PROTO_E_PARSE, NULL); /* lone surrogate */
    s_accepted(CH_SPEC, 0, " \t\r\n{\"shell\":\"x\"} \n");
}
END_TEST

START_TEST(bad_utf8_and_nul_are_refused_everywhere)
{
    /* raw invalid bytes, overlong '/', an encoded surrogate, a code point
       above U+10FFFF, a truncated sequence */
    static const char *const bad[] = {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                      "\xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char json[64];
        snprintf(json, sizeof json, "{\"shell\":\"%s\"}", bad[i]);
        REFUSED(CH_SPEC, json, PROTO_E_PARSE, "invalid UTF-8 at byte 10");
        snprintf(json, sizeof json, "{\"fn\":\"f\",\"args\":{\"%s\":1}}", bad[i]);
        REFUSED(CH_SPEC, json, PROTO_E_PARSE, "invalid UTF-8");
        snprintf(json, sizeof json, "{\"v\":1,\"type\":\"bye\",\"worker\":\"w%s\"}", bad[i]);
        REFUSED(CH_REPORT, json, PROTO_E_PARSE, "invalid UTF-8");
    }
    /* A NUL byte inside the frame, and a \u0000 escape, which cJSON would
       decode into a string cut short. */
    proto_err_t err;
    const char nul[] = "{\"shell\":\"a\0b\"}";
    ck_assert(!s_decodes(CH_SPEC, nul, sizeof nul - 1, 0, &err));
    ck_assert_str_eq(err.code, PROTO_E_PARSE);
    ck_assert_ptr_nonnull(strstr(err.message, "NUL byte at byte 11"));
    REFUSED(CH_SPEC, "{\"shell\":\"a\\u0000b\"}", PROTO_E_FIELD, "\\u0000");
    REFUSED(CH_SPEC, "{\"fn\":\"f\",\"args\":[\"\\u0000\"]}", PROTO_E_FIELD, "\\u0000");
    REFUSED(CH_REQ, "{\"v\":1,\"type\":\"drain\",\"worker\":\"w\\u0000\"}", PROTO_E_FIELD,
            "\\u0000");
    /* ...but an escaped backslash followed by "u0000" is plain text. */
    proto_spec_t *s = s_spec("{\"shell\":\"a\\\\u0000b\"}");
    ck_assert_str_eq(s->shell, "a\\u0000b");
    proto_spec_destroy(&s);
    /* Valid multi-byte text passes, raw or escaped. */
    s = s_spec("{\"shell\":\"\xe2\x82\xac \\u20ac \xf0\x9f\x98\x80 \\ud83d\\ude00\"}");
    ck_assert_str_eq(s->shell, "\xe2\x82\xac \xe2\x82\xac \xf0\x9f\x98\x80 \xf0\x9f\x98\x80");
    proto_spec_destroy(&s);
}
END_TEST

START_TEST(messages_over_the_size_limit_are_refused_before_parsing)
{
    size_t n = (size_t) PROTO_MAX_API_MSG + 1;
    char *big = malloc(n);
    ck_assert_ptr_nonnull(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    proto_err_t err;
    proto_req_t *req = proto_req_decode(big, n, &err);
    ck_assert_ptr_null(req);
    ck_assert_str_eq(err.code, PROTO_E_TOO_BIG);
    ck_assert_ptr_null(proto_pipe_decode(big, n, &err));
    ck_assert_str_eq(err.code, PROTO_E_TOO_BIG);
    ck_assert_ptr_null(proto_report_decode(big, n, &err));
    ck_assert_str_eq(err.code, PROTO_E_TOO_BIG);
    ck_assert_ptr_null(proto_spec_decode(big, n, &err));
    ck_assert_str_eq(err.code, PROTO_E_TOO_BIG);
    free(big);
    ck_assert_ptr_null(proto_req_decode(NULL, 0, NULL)); /* err may be NULL */
}
END_TEST

/* -------------------------------------------------------------- results */

START_TEST(result_with_every_field_round_trips)
{
    proto_result_t *r = s_full_result(42, 3);
    char *text = proto_result_encode(r);
    /* The fn result is embedded as JSON, not as a string. */
    ck_assert_ptr_nonnull(strstr(text, "\"result\":{\"sum\":[1,2.5,\"x\",null,true]}"));
    ck_assert_ptr_nonnull(strstr(text, "\"status\":\"failed\""));
    ck_assert_ptr_nonnull(strstr(text, "\\u0001\\u001f"));
    proto_err_t err;
    proto_result_t *b = proto_result_decode(text, strlen(text), &err);
    ck_assert_msg(b != NULL, "%s", err.message);
    s_result_eq(r, b);
    free(text);
    proto_result_destroy(&r);
    proto_result_destroy(&b);
    ck_assert_ptr_null(b);
}
END_TEST

/* The wire form leaves members at their default out; decoding gives the
   defaults back. */
START_TEST(minimal_result_round_trips_with_nulls)
{
    proto_result_t *r = proto_result_new();
    ck_assert_int_eq(r->status, PROTO_ST_FAILED); /* unfilled never reads as success */
    r->task = 1;
    r->attempt = 1;
    r->status = PROTO_ST_CANCELLED;
    r->signal = 9;
    r->started = 1.5;
    r->finished = 2;
    char *text = proto_result_encode(r);
    ck_assert_str_eq(text, "{\"task\":1,\"attempt\":1,\"status\":\"cancelled\",\"signal\":9,"
                           "\"started\":1.5,\"finished\":2}");
    proto_err_t err;
    proto_result_t *b = proto_result_decode(text, strlen(text), &err);
    ck_assert_ptr_nonnull(b);
    s_result_eq(r, b);
    ck_assert(!b->has_exit_code);
    ck_assert_ptr_null(b->stdout_data);
    free(text);
    proto_result_destroy(&r);
    proto_result_destroy(&b);
}
END_TEST

/* Timestamps print to the microsecond and survive any number of decodes
   and encodes unchanged, also past 2^32 s where a double holds a
   microsecond with less than one bit to spare (found by fuzz_report). */
START_TEST(timestamps_print_microseconds_and_round_trip_stably)
{
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {1764410400.123456, "\"started\":1764410400.123456"},
        {1764410400.5, "\"started\":1764410400.5"},
        {4404110400.100001, "\"started\":4404110400.100001"},
        {8589934591.999999, "\"started\":8589934591.999999"},
        {4294967295.9999996, "\"started\":4294967296"},
        {0.000001, "\"started\":0.000001"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        proto_result_t *r = proto_result_new();
        r->task = 1;
        r->attempt = 1;
        r->started = cases[i].v;
        char *text = proto_result_encode(r);
        ck_assert_msg(strstr(text, cases[i].text) != NULL, "%s not in %s", cases[i].text, text);
        for (int round = 0; round < 3; round++) {
            proto_err_t err;
            proto_result_t *b = proto_result_decode(text, strlen(text), &err);
            ck_assert_msg(b != NULL, "%s", err.message);
            char *again = proto_result_encode(b);
            ck_assert_str_eq(again, text);
            free(again);
            proto_result_destroy(&b);
        }
        free(text);
        proto_result_destroy(&r);
    }
}
END_TEST

START_TEST(encoders_never_emit_what_decoders_refuse)
{
    proto_result_t *r = proto_result_new();
    r->task = 5;
    r->attempt = 1;
    r->status = PROTO_ST_DONE;
    r->stdout_data = strdup("ok \xff\xfe bad \xc3");    /* invalid UTF-8 from a child */
    r->result_json = strdup("{not json");              /* a broken plugin */
    r->error = strdup("\x80");
    char *text = proto_result_encode(r);
    proto_err_t err;
    proto_result_t *b = proto_result_decode(text, strlen(text), &err);
    ck_assert_msg(b != NULL, "%s", err.message);
    ck_assert_str_eq(b->stdout_data, "ok \xef\xbf\xbd\xef\xbf\xbd bad \xef\xbf\xbd");
    ck_assert_ptr_null(b->result_json);
    ck_assert_str_eq(b->error, "\xef\xbf\xbd");
    free(text);
    proto_result_destroy(&r);
    proto_result_destroy(&b);

    /* stdin with a NUL byte (counted by stdin_len) */
    proto_spec_t *s = s_spec("{\"shell\":\"cat\",\"stdin\":\"ab\"}");
    s->stdin_data[1] = '\0';
    char *st = proto_spec_encode(s);
    proto_spec_t *t = s_spec(st);
    ck_assert_str_eq(t->stdin_data, "a\xef\xbf\xbd");
    free(st);
    proto_spec_destroy(&s);
    proto_spec_destroy(&t);
}
END_TEST

START_TEST(megabyte_outputs_round_trip_exactly)
{
    size_t n = 1024 * 1024;
    proto_result_t *r = proto_result_new();
    r->task = 9;
    r->attempt = 2;
    r->status = PROTO_ST_DONE;
    r->stdout_data = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        r->stdout_data[i] = "ab\"\\\n\t\x02z"[i % 8];
    r->stdout_data[n] = '\0';
    r->stderr_data = s_str_of(n, 'e');
    char *text = proto_result_encode(r);
    proto_err_t err;
    proto_result_t *b = proto_result_decode(text, strlen(text), &err);
    ck_assert_msg(b != NULL, "%s", err.message);
    s_result_eq(r, b);
    free(text);
    proto_result_destroy(&r);
    proto_result_destroy(&b);
}
END_TEST

START_TEST(result_fields_are_validated)
{
    REFUSED(CH_RESULT, "{\"attempt\":1,\"status\":\"done\"}", PROTO_E_FIELD, "\"task\"");
    REFUSED(CH_RESULT, "{\"task\":0,\"attempt\":1,\"status\":\"done\"}", PROTO_E_FIELD, "\"task\"");
    REFUSED(CH_RESULT, "{\"task\":1,\"status\":\"done\"}", PROTO_E_FIELD, "\"attempt\"");
    REFUSED(CH_RESULT, "{\"task\":1,\"attempt\":-1,\"status\":\"done\"}", PROTO_E_FIELD,
            "\"attempt\"");
    REFUSED(CH_RESULT, "{\"task\":1,\"attempt\":1}", PROTO_E_FIELD, "\"status\"");
    REFUSED(CH_RESULT, "{\"task\":1,\"attempt\":1,\"status\":\"running\"}", PROTO_E_FIELD,
            "\"status\"");
    REFUSED(CH_RESULT, "{\"task\":1,\"attempt\":1,\"status\":1}", PROTO_E_FIELD, "\"status\"");
    const char *base = "{\"task\":1,\"attempt\":1,\"status\":\"done\",";
    static const struct {
        const char *tail, *field;
    } cases[] = {
        {"\"exit_code\":1.5}", "\"exit_code\""}, {"\"exit_code\":\"0\"}", "\"exit_code\""},
        {"\"signal\":-1}", "\"signal\""},        {"\"timed_out\":0}", "\"timed_out\""},
        {"\"stdout\":5}", "\"stdout\""},         {"\"stderr\":[]}", "\"stderr\""},
        {"\"stdout_truncated\":\"no\"}", "\"stdout_truncated\""},
        {"\"error\":{}}", "\"error\""},          {"\"started\":-1}", "\"started\""},
        {"\"finished\":\"now\"}", "\"finished\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[256];
        snprintf(json, sizeof json, "%s%s", base, cases[i].tail);
        REFUSED(CH_RESULT, json, PROTO_E_FIELD, cases[i].field);
    }
    s_accepted(CH_RESULT, 0, "{\"task\":1,\"attempt\":1,\"status\":\"done\",\"result\":[1]}");
}
END_TEST

/* ---------------------------------------------------------- API requests */

/* Encodes req, decodes it back, and checks the re-encoding is identical
   (the caller asserts the fields it set). */
static proto_req_t *s_req_round_trip(const proto_req_t *req)
{
    char *text = proto_req_encode(req);
    ck_assert_ptr_nonnull(text);
    proto_err_t err;
    proto_req_t *got = proto_req_decode(text, strlen(text), &err);
    ck_assert_msg(got != NULL, "%s: %s", text, err.message);
    ck_assert_int_eq(got->type, req->type);
    char *again = proto_req_encode(got);
    ck_assert_str_eq(text, again);
    free(text);
    free(again);
    return got;
}

START_TEST(every_request_type_round_trips)
{
    proto_req_t *r, *g;

    r = proto_req_new(PROTO_REQ_STATUS);
    r->job = 12;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->job, 12);
    ck_assert_int_eq(g->wait_ms, 0);
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    r = proto_req_new(PROTO_REQ_STATUS);
    r->job = 12;
    r->wait_ms = PROTO_MAX_WAIT_MS;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->job, 12);
    ck_assert_int_eq(g->wait_ms, PROTO_MAX_WAIT_MS);
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    proto_req_type_t bare[] = {PROTO_REQ_JOBS, PROTO_REQ_WORKERS, PROTO_REQ_STATS};
    for (size_t i = 0; i < 3; i++) {
        r = proto_req_new(bare[i]);
        g = s_req_round_trip(r);
        ck_assert(!g->all);
        proto_req_destroy(&r);
        proto_req_destroy(&g);
    }

    /* Every client's jobs (an admin's request). */
    proto_req_type_t lists[] = {PROTO_REQ_JOBS, PROTO_REQ_STATUS};
    for (size_t i = 0; i < 2; i++) {
        r = proto_req_new(lists[i]);
        r->all = true;
        g = s_req_round_trip(r);
        ck_assert(g->all);
        proto_req_destroy(&r);
        proto_req_destroy(&g);
    }

    r = proto_req_new(PROTO_REQ_RESULTS);
    ck_assert_int_eq(r->limit, 1000);
    r->job = 3;
    r->after = 99;
    r->limit = 10000;
    r->failed_only = true;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->job, 3);
    ck_assert_int_eq(g->after, 99);
    ck_assert_int_eq(g->limit, 10000);
    ck_assert(g->failed_only);
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    r = proto_req_new(PROTO_REQ_LOGS);
    r->task = 77;
    r->out_offset = 10;
    r->err_offset = 20;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->task, 77);
    ck_assert_int_eq(g->index, -1);
    ck_assert_int_eq(g->out_offset, 10);
    ck_assert_int_eq(g->err_offset, 20);
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    r = proto_req_new(PROTO_REQ_LOGS);
    r->job = 4;
    r->index = 0;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->task, 0);
    ck_assert_int_eq(g->job, 4);
    ck_assert_int_eq(g->index, 0);
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    r = proto_req_new(PROTO_REQ_CANCEL);
    r->job = 5;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->job, 5);
    ck_assert_int_eq(g->task, 0);
    ck_assert_int_eq(g->index, -1);
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    r = proto_req_new(PROTO_REQ_CANCEL);
    r->job = 5;
    r->index = 8;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->index, 8);
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    r = proto_req_new(PROTO_REQ_DRAIN);
    r->worker = strdup("w-3");
    g = s_req_round_trip(r);
    ck_assert_str_eq(g->worker, "w-3");
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    r = proto_req_new(PROTO_REQ_FORGET);
    r->job = 2;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->job, 2);
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    r = proto_req_new(PROTO_REQ_RETRY);
    r->job = 6;
    r->retry_failed = true;
    r->indexes = calloc(2, sizeof *r->indexes);
    r->indexes[0] = 9;
    r->indexes[1] = 3;
    r->nindexes = 2;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->job, 6);
    ck_assert(g->retry_failed && !g->retry_cancelled);
    ck_assert_int_eq(g->nindexes, 2);
    ck_assert_int_eq(g->indexes[0], 9);
    ck_assert_int_eq(g->indexes[1], 3);
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    r = proto_req_new(PROTO_REQ_HELLO);
    r->name = strdup("gpu-box");
    r->host = strdup("host.example");
    r->pid = 4242;
    r->threads = 8;
    r->labels = calloc(3, sizeof *r->labels);
    r->labels[0] = strdup("gpu");
    r->labels[1] = strdup("linux");
    r->nlabels = 2;
    r->running = calloc(2, sizeof *r->running);
    r->running[0] = (proto_task_ref_t){.task = 10, .attempt = 1};
    r->running[1] = (proto_task_ref_t){.task = 11, .attempt = 4, .gpus = strdup("0,GPU-8f2c")};
    r->nrunning = 2;
    r->ended = calloc(1, sizeof *r->ended);
    r->ended[0] = (proto_task_ref_t){.task = 9, .attempt = 2};
    r->nended = 1;
    r->no_exec = true;
    r->recall = true;
    r->resend = true;
    g = s_req_round_trip(r);
    ck_assert(g->recall);
    ck_assert(g->resend);
    ck_assert_str_eq(g->name, "gpu-box");
    ck_assert_str_eq(g->host, "host.example");
    ck_assert_int_eq(g->pid, 4242);
    ck_assert_int_eq(g->threads, 8);
    ck_assert(s_strv_eq(g->labels, g->nlabels, r->labels, r->nlabels));
    ck_assert_int_eq(g->nrunning, 2);
    ck_assert_int_eq(g->running[1].task, 11);
    ck_assert_int_eq(g->running[1].attempt, 4);
    ck_assert_ptr_null(g->running[0].gpus);   /* none said: an older worker's */
    ck_assert_str_eq(g->running[1].gpus, "0,GPU-8f2c");
    ck_assert_int_eq(g->nended, 1);
    ck_assert_int_eq(g->ended[0].task, 9);
    ck_assert_int_eq(g->ended[0].attempt, 2);
    ck_assert(g->no_exec);
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    r = proto_req_new(PROTO_REQ_SUBMIT);
    r->job = 9;
    r->more = true;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->job, 9);
    ck_assert(g->more);
    ck_assert_int_eq(g->ntasks, 0);
    ck_assert_ptr_null(g->name);
    ck_assert_int_eq(g->wait_ms, 0);
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    /* The last batch may wait for its job. */
    r = proto_req_new(PROTO_REQ_SUBMIT);
    r->wait_ms = 2500;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->wait_ms, 2500);
    ck_assert(!g->more);
    proto_req_destroy(&r);
    proto_req_destroy(&g);
}
END_TEST

START_TEST(request_envelope_errors_have_their_own_codes)
{
    REFUSED(CH_REQ, "{\"type\":\"jobs\"}", PROTO_E_VERSION, "\"v\"");
    REFUSED(CH_REQ, "{\"v\":2,\"type\":\"jobs\"}", PROTO_E_VERSION, NULL);
    REFUSED(CH_REQ, "{\"v\":\"1\",\"type\":\"jobs\"}", PROTO_E_VERSION, NULL);
    REFUSED(CH_REQ, "{\"v\":1.5,\"type\":\"jobs\"}", PROTO_E_VERSION, NULL);
    REFUSED(CH_REQ, "{\"v\":1}", PROTO_E_TYPE, "\"type\"");
    REFUSED(CH_REQ, "{\"v\":1,\"type\":7}", PROTO_E_TYPE, "\"type\"");
    REFUSED(CH_REQ, "{\"v\":1,\"type\":\"launch\"}", PROTO_E_TYPE, "\"launch\"");
    REFUSED(CH_REQ, "[1]", PROTO_E_PARSE, NULL);
    REFUSED(CH_REQ, "nope", PROTO_E_PARSE, NULL);
    /* Unknown fields in messages (not specs) are ignored. */
    s_accepted(CH_REQ, 0, "{\"v\":1,\"type\":\"jobs\",\"future\":[1,2]}");
}
END_TEST

START_TEST(each_channel_accepts_only_its_own_types)
{
    static const char *const api[] = {"submit", "status", "jobs", "results", "logs", "cancel",
                                      "workers", "drain", "stats", "forget", "hello", "reply"};
    static const char *const pipe[] = {"tasks", "abort", "drain", "ping"};
    static const char *const report[] = {"heartbeat", "started", "output", "results", "bye"};
    char json[128];
    for (size_t i = 0; i < sizeof api / sizeof *api; i++) {
        snprintf(json, sizeof json, "{\"v\":1,\"type\":\"%s\"}", api[i]);
        if (strcmp(api[i], "drain") != 0)
            REFUSED(CH_PIPE, json, PROTO_E_TYPE, api[i]);
        if (strcmp(api[i], "results") != 0)
            REFUSED(CH_REPORT, json, PROTO_E_TYPE, api[i]);
    }
    for (size_t i = 0; i < sizeof pipe / sizeof *pipe; i++) {
        snprintf(json, sizeof json, "{\"v\":1,\"type\":\"%s\",\"worker\":\"w\"}", pipe[i]);
        if (strcmp(pipe[i], "drain") != 0)
            REFUSED(CH_REQ, json, PROTO_E_TYPE, pipe[i]);
        REFUSED(CH_REPORT, json, PROTO_E_TYPE, pipe[i]);
        REFUSED(CH_REPLY, json, PROTO_E_TYPE, pipe[i]);
    }
    for (size_t i = 0; i < sizeof report / sizeof *report; i++) {
        snprintf(json, sizeof json, "{\"v\":1,\"type\":\"%s\"}", report[i]);
        if (strcmp(report[i], "results") != 0)
            REFUSED(CH_REQ, json, PROTO_E_TYPE, report[i]);
        REFUSED(CH_PIPE, json, PROTO_E_TYPE, report[i]);
    }
    /* A reply is not a request. */
    REFUSED(CH_REQ, "{\"v\":1,\"type\":\"reply\",\"ok\":true}", PROTO_E_TYPE, "reply");
}
END_TEST

START_TEST(request_fields_are_validated_per_type)
{
    static const struct {
        const char *json, *field;
    } cases[] = {
        {"{\"v\":1,\"type\":\"status\",\"job\":-1}", "\"job\""},
        {"{\"v\":1,\"type\":\"status\",\"job\":\"3\"}", "\"job\""},
        {"{\"v\":1,\"type\":\"status\",\"job\":3,\"wait_ms\":-1}", "\"wait_ms\""},
        {"{\"v\":1,\"type\":\"status\",\"job\":3,\"wait_ms\":60001}", "\"wait_ms\""},
        {"{\"v\":1,\"type\":\"status\",\"job\":3,\"wait_ms\":true}", "\"wait_ms\""},
        {"{\"v\":1,\"type\":\"status\",\"wait_ms\":100}", "\"wait_ms\" needs \"job\""},
        {"{\"v\":1,\"type\":\"status\",\"all\":1}", "\"all\""},
        {"{\"v\":1,\"type\":\"jobs\",\"all\":\"yes\"}", "\"all\""},
        {"{\"v\":1,\"type\":\"submit\",\"more\":true,\"wait_ms\":100}",
         "\"wait_ms\" needs the job's last batch"},
        {"{\"v\":1,\"type\":\"submit\",\"wait_ms\":60001}", "\"wait_ms\""},
        {"{\"v\":1,\"type\":\"results\"}", "missing field \"job\""},
        {"{\"v\":1,\"type\":\"results\",\"job\":1,\"limit\":0}", "\"limit\""},
        {"{\"v\":1,\"type\":\"results\",\"job\":1,\"limit\":10001}", "\"limit\""},
        {"{\"v\":1,\"type\":\"results\",\"job\":1,\"after\":-5}", "\"after\""},
        {"{\"v\":1,\"type\":\"results\",\"job\":1,\"failed_only\":\"yes\"}", "\"failed_only\""},
        {"{\"v\":1,\"type\":\"logs\"}", "\"task\""},
        {"{\"v\":1,\"type\":\"logs\",\"job\":1}", "\"index\""},
        {"{\"v\":1,\"type\":\"logs\",\"task\":1,\"out_offset\":-1}", "\"out_offset\""},
        {"{\"v\":1,\"type\":\"logs\",\"task\":1,\"err_offset\":0.5}", "\"err_offset\""},
        {"{\"v\":1,\"type\":\"cancel\"}", "\"job\""},
        {"{\"v\":1,\"type\":\"cancel\",\"task\":1,\"index\":2}", "\"index\" needs \"job\""},
        {"{\"v\":1,\"type\":\"cancel\",\"job\":0}", "\"job\""},
        {"{\"v\":1,\"type\":\"drain\"}", "missing field \"worker\""},
        {"{\"v\":1,\"type\":\"drain\",\"worker\":\"\"}", "\"worker\""},
        {"{\"v\":1,\"type\":\"forget\"}", "\"job\""},
        {"{\"v\":1,\"type\":\"hello\",\"threads\":1}", "missing field \"host\""},
        {"{\"v\":1,\"type\":\"hello\",\"host\":\"h\"}", "missing field \"threads\""},
        {"{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":0}", "\"threads\""},
        {"{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1,\"pid\":-2}", "\"pid\""},
        {"{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1,\"labels\":[2]}", "\"labels\""},
        {"{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1,\"running\":[{\"task\":1}]}",
         "running[0]: missing field \"attempt\""},
        {"{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1,\"running\":[3]}", "\"running\""},
        /* A bad element after one that read its "gpus": nothing leaks (ASan). */
        {"{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1,\"running\":[{\"task\":1,"
         "\"attempt\":1,\"gpus\":\"0\"},{\"task\":2,\"attempt\":1,\"gpus\":\"1\"},{\"task\":3}]}",
         "running[2]: missing field \"attempt\""},
        {"{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1,\"running\":[{\"task\":1,"
         "\"attempt\":1,\"gpus\":\"\"}]}",
         "\"gpus\" must be a string"},
        {"{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1,\"running\":[{\"task\":1,"
         "\"attempt\":1,\"gpus\":7}]}",
         "\"gpus\" must be a string"},
        {"{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1,\"no_exec\":1}", "\"no_exec\""},
        {"{\"v\":1,\"type\":\"submit\",\"tasks\":{}}", "\"tasks\" must be an array"},
        {"{\"v\":1,\"type\":\"submit\",\"more\":\"no\"}", "\"more\""},
        {"{\"v\":1,\"type\":\"submit\",\"name\":\"\"}", "\"name\""},
        {"{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"shell\":\"a\"},{\"shell\":\"b\"},{},"
         "{\"shell\":\"d\"}]}",
         "tasks[2]: task spec needs one of"},
        {"{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"shell\":\"a\",\"retries\":-1}]}",
         "tasks[0]: field \"retries\""},
        {"{\"v\":1,\"type\":\"submit\",\"tasks\":[7]}", "tasks[0]"},
        {"{\"v\":1,\"type\":\"submit\",\"after\":3}", "\"after\" must be an array"},
        {"{\"v\":1,\"type\":\"submit\",\"after\":[\"3\"]}", "\"after\" must be an array of job"},
        {"{\"v\":1,\"type\":\"submit\",\"after_any\":[0]}", "\"after_any\""},
        {"{\"v\":1,\"type\":\"submit\",\"after_each\":[1.5]}", "\"after_each\""},
        {"{\"v\":1,\"type\":\"submit\",\"job\":4,\"after\":[3]}", "first batch"},
        {"{\"v\":1,\"type\":\"cancel\",\"job\":1,\"with_dependants\":1}",
         "\"with_dependants\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        REFUSED(CH_REQ, cases[i].json, PROTO_E_FIELD, cases[i].field);
    s_accepted(CH_REQ, 0, "{\"v\":1,\"type\":\"cancel\",\"task\":1}");
    s_accepted(CH_REQ, 0, "{\"v\":1,\"type\":\"logs\",\"job\":1,\"index\":0}");
    s_accepted(CH_REQ, 0, "{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"threads\":1}");
}
END_TEST

START_TEST(a_submit_carries_its_dependencies_and_a_cancel_its_dependants)
{
    proto_req_t *req = proto_req_new(PROTO_REQ_SUBMIT);
    req->deps = malloc(3 * sizeof *req->deps);
    req->deps[0] = (proto_dep_t){.job = 7, .kind = PROTO_DEP_EACH};
    req->deps[1] = (proto_dep_t){.job = 3, .kind = PROTO_DEP_OK};
    req->deps[2] = (proto_dep_t){.job = 9, .kind = PROTO_DEP_OK};
    req->ndeps = 3;
    char *text = proto_req_encode(req);
    ck_assert_ptr_nonnull(strstr(text, "\"after\":[3,9]"));
    ck_assert_ptr_nonnull(strstr(text, "\"after_each\":[7]"));
    ck_assert_ptr_null(strstr(text, "\"after_any\""));
    proto_err_t err;
    proto_req_t *back = proto_req_decode(text, strlen(text), &err);
    ck_assert_msg(back, "%s", err.message);
    ck_assert_int_eq(back->ndeps, 3);
    ck_assert_int_eq(back->deps[0].job, 3);
    ck_assert_int_eq(back->deps[2].kind, PROTO_DEP_EACH);
    free(text);
    proto_req_destroy(&back);
    proto_req_destroy(&req);

    req = proto_req_new(PROTO_REQ_CANCEL);
    req->job = 4;
    req->with_dependants = true;
    text = proto_req_encode(req);
    back = proto_req_decode(text, strlen(text), &err);
    ck_assert_msg(back && back->with_dependants, "%s", text);
    free(text);
    proto_req_destroy(&back);
    proto_req_destroy(&req);

    /* PROTO_MAX_DEPS in all kinds together. */
    char json[2048];
    size_t len = (size_t) snprintf(json, sizeof json, "{\"v\":1,\"type\":\"submit\",\"after\":[");
    for (int i = 0; i < PROTO_MAX_DEPS; i++)
        len += (size_t) snprintf(json + len, sizeof json - len, "%s%d", i ? "," : "", i + 1);
    snprintf(json + len, sizeof json - len, "],\"after_any\":[99]}");
    REFUSED(CH_REQ, json, PROTO_E_TOO_BIG, "at most");
}
END_TEST

START_TEST(job_records_carry_dep_failed_and_waiting)
{
    proto_job_t j = {.id = 5, .closed = true, .total = 3, .queued = 3, .waiting = true};
    ck_assert_str_eq(proto_job_state_name(&j), "waiting");
    j.queued = 0;
    j.done = 1;
    j.dep_failed = 2;
    j.waiting = false;
    ck_assert_str_eq(proto_job_state_name(&j), "dep_failed");
    j.failed = 1;
    j.dep_failed = 1;
    ck_assert_str_eq(proto_job_state_name(&j), "failed");
    char *text = proto_job_encode(&j);
    ck_assert_ptr_nonnull(strstr(text, "\"dep_failed\":1"));
    free(text);
    proto_state_t st;
    ck_assert_int_eq(proto_state_parse("dep_failed", &st), 0);
    ck_assert_int_eq(st, PROTO_ST_DEP_FAILED);
}
END_TEST

START_TEST(submit_batches_over_the_limit_are_too_big)
{
    size_t cap = 64 + (size_t) (PROTO_MAX_SUBMIT_BATCH + 1) * 16;
    char *json = malloc(cap);
    size_t len = (size_t) snprintf(json, cap, "{\"v\":1,\"type\":\"submit\",\"tasks\":[");
    for (int i = 0; i < PROTO_MAX_SUBMIT_BATCH; i++)
        len += (size_t) snprintf(json + len, cap - len, "%s{\"fn\":\"f\"}", i ? "," : "");
    strcpy(json + len, "]}");
    proto_err_t err;
    proto_req_t *req = proto_req_decode(json, strlen(json), &err);
    ck_assert_msg(req != NULL, "%s", err.message);
    ck_assert_int_eq(req->ntasks, PROTO_MAX_SUBMIT_BATCH);
    proto_req_destroy(&req);
    strcpy(json + len, ",{\"fn\":\"f\"}]}");
    REFUSED(CH_REQ, json, PROTO_E_TOO_BIG, "\"tasks\"");
    free(json);
}
END_TEST

/* -------------------------------------------------------------- replies */

static proto_reply_t *s_reply_round_trip(const proto_reply_t *rep, proto_req_type_t rt)
{
    char *text = proto_reply_encode(rep, rt);
    ck_assert_ptr_nonnull(text);
    proto_err_t err;
    proto_reply_t *got = proto_reply_decode(text, strlen(text), rt, &err);
    ck_assert_msg(got != NULL, "%s: %s", text, err.message);
    char *again = proto_reply_encode(got, rt);
    ck_assert_str_eq(text, again);
    free(text);
    free(again);
    return got;
}

START_TEST(error_replies_carry_code_and_message)
{
    proto_reply_t *rep = proto_reply_error(PROTO_E_NOT_FOUND, "no job %d", 12);
    ck_assert(!rep->ok);
    ck_assert_str_eq(rep->error.code, "not_found");
    ck_assert_str_eq(rep->error.message, "no job 12");
    char *text = proto_reply_encode(rep, PROTO_REQ_STATUS);
    ck_assert_str_eq(text, "{\"v\":1,\"type\":\"reply\",\"ok\":false,\"error\":"
                           "{\"code\":\"not_found\",\"message\":\"no job 12\"}}");
    /* A failed reply decodes the same whatever was asked. */
    proto_err_t err;
    proto_reply_t *got = proto_reply_decode(text, strlen(text), PROTO_REQ_HELLO, &err);
    ck_assert_ptr_nonnull(got);
    ck_assert(!got->ok);
    ck_assert_str_eq(got->error.code, "not_found");
    ck_assert_str_eq(got->error.message, "no job 12");
    free(text);
    proto_reply_destroy(&rep);
    proto_reply_destroy(&got);

    proto_err_t e2;
    proto_err_set(&e2, PROTO_E_FIELD, "field \"%s\" bad", "x");
    ck_assert_str_eq(e2.code, "bad_field");
    ck_assert_str_eq(e2.message, "field \"x\" bad");
    proto_err_set(NULL, PROTO_E_FIELD, "ignored"); /* NULL err is allowed */

    REFUSED(CH_REPLY, "{\"v\":1,\"type\":\"reply\",\"ok\":false}", PROTO_E_FIELD, "\"error\"");
    REFUSED(CH_REPLY, "{\"v\":1,\"type\":\"reply\",\"ok\":false,\"error\":{\"message\":\"m\"}}",
            PROTO_E_FIELD, "error.code");
    REFUSED(CH_REPLY, "{\"v\":1,\"type\":\"reply\",\"ok\":false,\"error\":{\"code\":\"x\","
                      "\"message\":3}}",
            PROTO_E_FIELD, "error.message");
    REFUSED(CH_REPLY, "{\"v\":1,\"type\":\"reply\"}", PROTO_E_FIELD, "\"ok\"");
    REFUSED(CH_REPLY, "{\"v\":1,\"type\":\"reply\",\"ok\":1}", PROTO_E_FIELD, "\"ok\"");
    REFUSED(CH_REPLY, "{\"v\":1,\"type\":\"status\",\"ok\":true}", PROTO_E_TYPE, "status");
}
END_TEST

START_TEST(every_reply_type_round_trips)
{
    proto_reply_t *r, *g;

    r = proto_reply_new(true);
    r->job = 4;
    r->accepted = 1000;
    r->total = 5000;
    g = s_reply_round_trip(r, PROTO_REQ_SUBMIT);
    ck_assert_int_eq(g->total, 5000);
    ck_assert_int_eq(g->njobs, 0);
    proto_reply_destroy(&r);
    proto_reply_destroy(&g);

    /* A held submit's answer carries the job's record. */
    r = proto_reply_new(true);
    r->job = 4;
    r->accepted = 1;
    r->total = 1;
    r->njobs = 1;
    r->jobs = calloc(1, sizeof *r->jobs);
    r->jobs[0] = (proto_job_t){.id = 4, .closed = true, .total = 1, .done = 1, .created = 1.5,
                               .finished = 2.25};
    g = s_reply_round_trip(r, PROTO_REQ_SUBMIT);
    ck_assert_int_eq(g->job, 4);
    ck_assert_int_eq(g->njobs, 1);
    ck_assert_int_eq(g->jobs[0].done, 1);
    ck_assert(g->jobs[0].finished == 2.25);
    proto_reply_destroy(&r);
    proto_reply_destroy(&g);

    r = proto_reply_new(true);
    r->njobs = 2;
    r->jobs = calloc(2, sizeof *r->jobs);
    r->jobs[0] = (proto_job_t){.id = 1, .name = strdup("a"), .closed = true, .total = 3,
                               .done = 2, .failed = 1, .created = 1.5, .finished = 9.25,
                               .owner = strdup("rq:rg(h)xHB0MdUO?B*RwRv7ZwG1i2wyq!g9$@*p"),
                               .owner_name = strdup("ana")};
    r->jobs[1] = (proto_job_t){.id = 2, .total = 1, .queued = 1, .created = 2};
    g = s_reply_round_trip(r, PROTO_REQ_JOBS);
    ck_assert_int_eq(g->njobs, 2);
    ck_assert_str_eq(g->jobs[0].name, "a");
    ck_assert_str_eq(g->jobs[0].owner, "rq:rg(h)xHB0MdUO?B*RwRv7ZwG1i2wyq!g9$@*p");
    ck_assert_str_eq(g->jobs[0].owner_name, "ana");
    ck_assert_ptr_null(g->jobs[1].owner);   /* nobody's */
    ck_assert_ptr_null(g->jobs[1].owner_name);
    ck_assert(g->jobs[0].closed);
    ck_assert_int_eq(g->jobs[0].failed, 1);
    ck_assert(g->jobs[0].finished == 9.25);
    ck_assert_ptr_null(g->jobs[1].name);
    proto_reply_destroy(&g);
    g = s_reply_round_trip(r, PROTO_REQ_STATUS);
    ck_assert_int_eq(g->njobs, 2);
    proto_reply_destroy(&r);
    proto_reply_destroy(&g);

    r = proto_reply_new(true);
    ck_assert_int_eq(r->next_after, -1);
    r->ntasks = 2;
    r->tasks = calloc(2, sizeof *r->tasks);
    r->tasks[0] = (proto_task_info_t){.task = 42, .job = 1, .index = 0, .name = strdup("t0"),
                                      .status = PROTO_ST_FAILED, .attempts = 3,
                                      .worker = strdup("w1"), .result = s_full_result(42, 3)};
    r->tasks[1] = (proto_task_info_t){.task = 43, .job = 1, .index = 1,
                                      .status = PROTO_ST_RUNNING, .attempts = 1};
    r->next_after = 43;
    g = s_reply_round_trip(r, PROTO_REQ_RESULTS);
    ck_assert_int_eq(g->ntasks, 2);
    ck_assert_int_eq(g->next_after, 43);
    ck_assert_str_eq(g->tasks[0].worker, "w1");
    ck_assert_ptr_nonnull(g->tasks[0].result);
    s_result_eq(r->tasks[0].result, g->tasks[0].result);
    ck_assert_ptr_null(g->tasks[1].result);
    ck_assert_int_eq(g->tasks[1].status, PROTO_ST_RUNNING);
    proto_reply_destroy(&r);
    proto_reply_destroy(&g);

    r = proto_reply_new(true);
    r->task_state = PROTO_ST_RUNNING;
    r->out_chunk = strdup("partial\n");
    r->out_offset = 8;
    r->err_offset = 0;
    g = s_reply_round_trip(r, PROTO_REQ_LOGS);
    ck_assert_int_eq(g->task_state, PROTO_ST_RUNNING);
    ck_assert_str_eq(g->out_chunk, "partial\n");
    ck_assert_ptr_null(g->err_chunk);
    ck_assert_int_eq(g->out_offset, 8);
    proto_reply_destroy(&r);
    proto_reply_destroy(&g);

    r = proto_reply_new(true);
    r->count = 17;
    g = s_reply_round_trip(r, PROTO_REQ_CANCEL);
    ck_assert_int_eq(g->count, 17);
    proto_reply_destroy(&g);
    g = s_reply_round_trip(r, PROTO_REQ_FORGET);
    ck_assert_int_eq(g->count, 17);
    proto_reply_destroy(&r);
    proto_reply_destroy(&g);

    r = proto_reply_new(true);
    r->nworkers = 1;
    r->workers = calloc(1, sizeof *r->workers);
    r->workers[0] = (proto_worker_info_t){.id = strdup("w1"), .host = strdup("h"), .pid = 9,
                                          .threads = 4, .alive = true, .draining = true, .running = 2,
                                          .done = 100, .failed = 1, .last_heartbeat = 5.5,
                                          .left = true, .gone = 7.25};
    r->workers[0].labels = calloc(2, sizeof(char *));
    r->workers[0].labels[0] = strdup("gpu");
    r->workers[0].nlabels = 1;
    g = s_reply_round_trip(r, PROTO_REQ_WORKERS);
    ck_assert_int_eq(g->nworkers, 1);
    ck_assert_str_eq(g->workers[0].id, "w1");
    ck_assert_str_eq(g->workers[0].labels[0], "gpu");
    ck_assert_int_eq(g->workers[0].done, 100);
    ck_assert(g->workers[0].last_heartbeat == 5.5);
    ck_assert(g->workers[0].left && g->workers[0].gone == 7.25);
    ck_assert(g->workers[0].alive && g->workers[0].draining);
    ck_assert_int_eq(g->workers[0].pid, 9);
    ck_assert_int_eq(g->workers[0].running, 2);
    proto_reply_destroy(&r);
    proto_reply_destroy(&g);

    r = proto_reply_new(true);
    r->stats = (proto_stats_t){.jobs = 3, .tasks_queued = 4, .tasks_running = 5,
                               .tasks_done = 6, .tasks_failed = 7, .workers_alive = 2,
                               .threads_total = 16, .duplicates = 1, .results_per_s_1m = 250,
                               .uptime = 12.5, .db_path = strdup("/var/lib/ztask.db")};
    r->stats.unrunnable = calloc(3, sizeof(char *));
    r->stats.unrunnable[0] = strdup("exec");
    r->stats.unrunnable[1] = strdup("fn:gpu,ssd");
    r->stats.nunrunnable = 2;
    g = s_reply_round_trip(r, PROTO_REQ_STATS);
    ck_assert_int_eq(g->stats.tasks_failed, 7);
    ck_assert_int_eq(g->stats.results_per_s_1m, 250);
    ck_assert_str_eq(g->stats.db_path, "/var/lib/ztask.db");
    ck_assert_int_eq(g->stats.nunrunnable, 2);
    ck_assert_str_eq(g->stats.unrunnable[0], "exec");
    ck_assert_str_eq(g->stats.unrunnable[1], "fn:gpu,ssd");
    proto_reply_destroy(&r);
    proto_reply_destroy(&g);

    r = proto_reply_new(true);
    r->worker_id = strdup("w7");
    r->task_port = 40001;
    r->report_port = 5556;
    r->heartbeat_ms = 1000;
    r->liveness = 3;
    g = s_reply_round_trip(r, PROTO_REQ_HELLO);
    ck_assert_str_eq(g->worker_id, "w7");
    ck_assert_int_eq(g->task_port, 40001);
    ck_assert_int_eq(g->report_port, 5556);
    ck_assert_int_eq(g->heartbeat_ms, 1000);
    ck_assert_int_eq(g->liveness, 3);
    ck_assert_int_eq(g->nresend, 0);   /* none: the member is left out */
    /* The results a restarted master lacks, by attempt. */
    r->resend = calloc(2, sizeof *r->resend);
    r->resend[0] = (proto_task_ref_t){.task = 9, .attempt = 2};
    r->resend[1] = (proto_task_ref_t){.task = 12, .attempt = 1};
    r->nresend = 2;
    proto_reply_destroy(&g);
    g = s_reply_round_trip(r, PROTO_REQ_HELLO);
    ck_assert_int_eq(g->nresend, 2);
    ck_assert_int_eq(g->resend[0].task, 9);
    ck_assert_int_eq(g->resend[0].attempt, 2);
    ck_assert_int_eq(g->resend[1].task, 12);
    ck_assert_int_eq(g->resend[1].attempt, 1);
    ck_assert_int_eq(g->hold_ms, 0);   /* no window: the member is left out */
    /* A restarted master's rejoin window: kept within bounds. */
    r->hold_ms = 2500;
    proto_reply_destroy(&g);
    g = s_reply_round_trip(r, PROTO_REQ_HELLO);
    ck_assert_int_eq(g->hold_ms, 2500);
    proto_reply_destroy(&r);
    proto_reply_destroy(&g);
    proto_err_t err;
    const char *bad[] = {
        "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":1,"
        "\"report_port\":2,\"heartbeat_ms\":1000,\"liveness\":3,\"hold_ms\":-1}",
        "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":1,"
        "\"report_port\":2,\"heartbeat_ms\":1000,\"liveness\":3,\"hold_ms\":3600001}",
        "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":1,"
        "\"report_port\":2,\"heartbeat_ms\":1000,\"liveness\":3,\"hold_ms\":\"5\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        g = proto_reply_decode(bad[i], strlen(bad[i]), PROTO_REQ_HELLO, &err);
        ck_assert_msg(g == NULL, "accepted %s", bad[i]);
    }

    r = proto_reply_new(true);
    char *text = proto_reply_encode(r, PROTO_REQ_DRAIN);
    ck_assert_str_eq(text, "{\"v\":1,\"type\":\"reply\",\"ok\":true}");
    free(text);
    g = s_reply_round_trip(r, PROTO_REQ_DRAIN);
    ck_assert(g->ok);
    proto_reply_destroy(&r);
    proto_reply_destroy(&g);
}
END_TEST

START_TEST(reply_fields_are_validated_per_request_type)
{
    s_refused_as(CH_REPLY, PROTO_REQ_HELLO,
                 "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":0,"
                 "\"report_port\":5556,\"heartbeat_ms\":1000,\"liveness\":3}",
                 PROTO_E_FIELD, "\"task_port\"");
    s_refused_as(CH_REPLY, PROTO_REQ_HELLO,
                 "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":1,"
                 "\"report_port\":70000,\"heartbeat_ms\":1000,\"liveness\":3}",
                 PROTO_E_FIELD, "\"report_port\"");
    s_refused_as(CH_REPLY, PROTO_REQ_HELLO, "{\"v\":1,\"type\":\"reply\",\"ok\":true}",
                 PROTO_E_FIELD, "\"worker\"");
    s_refused_as(CH_REPLY, PROTO_REQ_HELLO,
                 "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"worker\":\"w\",\"task_port\":1,"
                 "\"report_port\":5556,\"heartbeat_ms\":1000,\"liveness\":3,\"resend\":"
                 "[{\"task\":1}]}",
                 PROTO_E_FIELD, "\"attempt\"");
    s_refused_as(CH_REPLY, PROTO_REQ_LOGS,
                 "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"state\":\"sleeping\"}", PROTO_E_FIELD,
                 "\"state\"");
    s_refused_as(CH_REPLY, PROTO_REQ_STATS, "{\"v\":1,\"type\":\"reply\",\"ok\":true}",
                 PROTO_E_FIELD, "\"stats\"");
    s_refused_as(CH_REPLY, PROTO_REQ_JOBS,
                 "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"jobs\":[{\"job\":1},{\"job\":-1}]}",
                 PROTO_E_FIELD, "jobs[1]");
    s_refused_as(CH_REPLY, PROTO_REQ_RESULTS,
                 "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"tasks\":[{\"task\":1,\"status\":"
                 "\"done\",\"finished\":1,\"exit_code\":\"x\"}]}",
                 PROTO_E_FIELD, "tasks[0]: field \"exit_code\"");
    s_refused_as(CH_REPLY, PROTO_REQ_WORKERS,
                 "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"workers\":[{\"host\":\"h\"}]}",
                 PROTO_E_FIELD, "\"worker\"");
    s_refused_as(CH_REPLY, PROTO_REQ_SUBMIT, "{\"v\":1,\"type\":\"reply\",\"ok\":true}",
                 PROTO_E_FIELD, "\"job\"");
    s_accepted(CH_REPLY, PROTO_REQ_JOBS, "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"jobs\":[]}");
}
END_TEST

/* -------------------------------------------------------------- records */

static void s_contains(const char *text, const char *part)
{
    ck_assert_msg(strstr(text, part) != NULL, "%s lacks %s", text, part);
}

START_TEST(job_records_show_a_derived_state)
{
    static const struct {
        proto_job_t job;
        const char *state;
    } cases[] = {
        {{.closed = false, .total = 3, .done = 3}, "open"},
        {{.closed = true, .total = 3, .queued = 3}, "queued"},
        {{.closed = true, .total = 3, .queued = 2, .running = 1}, "running"},
        {{.closed = true, .total = 3, .queued = 2, .done = 1}, "running"},
        {{.closed = true, .total = 3, .done = 3}, "done"},
        {{.closed = true, .total = 0}, "done"},
        {{.closed = true, .total = 3, .done = 1, .failed = 1, .cancelled = 1}, "failed"},
        {{.closed = true, .total = 3, .done = 2, .cancelled = 1}, "cancelled"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ck_assert_str_eq(proto_job_state_name(&cases[i].job), cases[i].state);
        char *text = proto_job_encode(&cases[i].job);
        char want[64];
        snprintf(want, sizeof want, "\"state\":\"%s\"", cases[i].state);
        s_contains(text, want);
        free(text);
    }
    proto_job_t j = {.id = 5, .name = strdup("nightly"), .closed = true, .total = 2, .done = 2,
                     .created = 100, .finished = 0};
    char *text = proto_job_encode(&j);
    ck_assert_str_eq(text, "{\"job\":5,\"name\":\"nightly\",\"state\":\"done\",\"closed\":true,"
                           "\"total\":2,\"queued\":0,\"running\":0,\"done\":2,\"failed\":0,"
                           "\"cancelled\":0,\"dep_failed\":0,\"created\":100,\"finished\":null,"
                           "\"owner\":null,\"owner_name\":null,\"held\":false,\"max_running\":0}");
    free(text);
    proto_job_clear(&j);
    ck_assert_ptr_null(j.name);
}
END_TEST

START_TEST(task_records_flatten_the_result_with_nulls_when_absent)
{
    proto_task_info_t t = {.task = 8, .job = 2, .index = 7, .status = PROTO_ST_QUEUED};
    char *text = proto_task_info_encode(&t);
    ck_assert_str_eq(text, "{\"task\":8,\"job\":2,\"index\":7,\"name\":null,\"status\":\"queued\","
                           "\"attempts\":0,\"worker\":null,\"exit_code\":null,\"signal\":null,"
                           "\"timed_out\":null,\"stdout\":null,\"stderr\":null,"
                           "\"stdout_truncated\":null,\"stderr_truncated\":null,\"result\":null,"
                           "\"error\":null,\"started\":null,\"finished\":null}");
    free(text);

    t.status = PROTO_ST_DONE;
    t.attempts = 1;
    t.result = proto_result_new();
    t.result->task = 8;
    t.result->attempt = 1;
    t.result->status = PROTO_ST_DONE;
    t.result->result_json = strdup("[1,2]");
    t.result->has_exit_code = true;
    t.result->finished = 3;
    text = proto_task_info_encode(&t);
    s_contains(text, "\"status\":\"done\"");
    s_contains(text, "\"exit_code\":0");
    s_contains(text, "\"result\":[1,2]");
    s_contains(text, "\"finished\":3}");
    free(text);
    proto_task_info_clear(&t);
    ck_assert_ptr_null(t.result);

    proto_worker_info_t w = {.id = strdup("w1"), .host = strdup("h"), .threads = 2};
    text = proto_worker_info_encode(&w);
    ck_assert_str_eq(text, "{\"worker\":\"w1\",\"host\":\"h\",\"pid\":0,\"threads\":2,"
                           "\"labels\":[],\"alive\":false,\"draining\":false,\"left\":false,"
                           "\"running\":0,\"done\":0,\"failed\":0,\"last_heartbeat\":null,"
                           "\"gone\":null}");
    free(text);
    proto_worker_info_clear(&w);

    proto_stats_t s = {.jobs = 1, .uptime = 0.5};
    text = proto_stats_encode(&s);
    s_contains(text, "\"jobs\":1,");
    s_contains(text, "\"uptime\":0.5,\"db_path\":null,\"unrunnable\":[]}");
    free(text);
    proto_stats_clear(&s);
}
END_TEST

START_TEST(state_names_round_trip)
{
    for (int st = PROTO_ST_QUEUED; st <= PROTO_ST_CANCELLED; st++) {
        proto_state_t got;
        ck_assert_int_eq(proto_state_parse(proto_state_name((proto_state_t) st), &got), 0);
        ck_assert_int_eq(got, st);
    }
    ck_assert_str_eq(proto_state_name(PROTO_ST_ASSIGNED), "assigned");
    proto_state_t st;
    ck_assert_int_eq(proto_state_parse("Done", &st), -1);
    ck_assert_int_eq(proto_state_parse(NULL, &st), -1);
    ck_assert_str_eq(proto_state_name((proto_state_t) 99), "unknown");
}
END_TEST

/* ----------------------------------------------------------------- pipe */

START_TEST(pipe_messages_round_trip)
{
    proto_pipe_t *m = proto_pipe_new(PROTO_PIPE_TASKS);
    m->ntasks = 2;
    m->tasks = calloc(2, sizeof *m->tasks);
    m->tasks[0] = (proto_task_t){.id = 100, .attempt = 1, .job = 3,
                                 .spec = s_spec("{\"argv\":[\"true\"],\"timeout\":5}")};
    m->tasks[1] = (proto_task_t){.id = 101, .attempt = 2, .job = 3,
                                 .spec = s_spec("{\"fn\":\"sum\",\"args\":[1,2]}")};
    char *text = proto_pipe_encode(m);
    proto_err_t err;
    proto_pipe_t *g = proto_pipe_decode(text, strlen(text), &err);
    ck_assert_msg(g != NULL, "%s", err.message);
    ck_assert_int_eq(g->type, PROTO_PIPE_TASKS);
    ck_assert_int_eq(g->ntasks, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(g->tasks[i].id, m->tasks[i].id);
        ck_assert_int_eq(g->tasks[i].attempt, m->tasks[i].attempt);
        ck_assert_int_eq(g->tasks[i].job, m->tasks[i].job);
        s_spec_eq(g->tasks[i].spec, m->tasks[i].spec);
    }

    /* The raw encoder, fed the stored spec texts, writes the same frame. */
    int64_t ids[2] = {100, 101}, jobs[2] = {3, 3};
    int attempts[2] = {1, 2};
    char *s0 = proto_spec_encode(m->tasks[0].spec), *s1 = proto_spec_encode(m->tasks[1].spec);
    const char *specs[2] = {s0, s1};
    char *raw = proto_pipe_encode_tasks_raw(2, ids, attempts, jobs, specs);
    ck_assert_str_eq(raw, text);
    free(raw);
    raw = proto_pipe_encode_tasks_raw(0, NULL, NULL, NULL, NULL);
    ck_assert_str_eq(raw, "{\"v\":1,\"type\":\"tasks\",\"tasks\":[]}");
    proto_pipe_t *empty = proto_pipe_decode(raw, strlen(raw), &err);
    ck_assert_ptr_nonnull(empty);
    ck_assert_int_eq(empty->ntasks, 0);
    proto_pipe_destroy(&empty);
    free(raw);
    free(s0);
    free(s1);
    free(text);
    proto_pipe_destroy(&m);
    proto_pipe_destroy(&g);
    ck_assert_ptr_null(g);

    m = proto_pipe_new(PROTO_PIPE_ABORT);
    m->task = 55;
    m->attempt = 2;
    text = proto_pipe_encode(m);
    ck_assert_str_eq(text, "{\"v\":1,\"type\":\"abort\",\"task\":55,\"attempt\":2}");
    g = proto_pipe_decode(text, strlen(text), &err);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(g->task, 55);
    ck_assert_int_eq(g->attempt, 2);
    free(text);
    proto_pipe_destroy(&m);
    proto_pipe_destroy(&g);

    proto_pipe_type_t bare[] = {PROTO_PIPE_DRAIN, PROTO_PIPE_PING};
    for (int i = 0; i < 2; i++) {
        m = proto_pipe_new(bare[i]);
        text = proto_pipe_encode(m);
        g = proto_pipe_decode(text, strlen(text), &err);
        ck_assert_ptr_nonnull(g);
        ck_assert_int_eq(g->type, bare[i]);
        free(text);
        proto_pipe_destroy(&m);
        proto_pipe_destroy(&g);
    }
}
END_TEST

/* A recall and its answer: {"task","attempt"} lists, at most
   PROTO_MAX_RECALL of them; the answer may be empty. */
START_TEST(recall_and_recalled_round_trip)
{
    proto_err_t err;
    proto_pipe_t *m = proto_pipe_new(PROTO_PIPE_RECALL);
    m->refs = calloc(2, sizeof *m->refs);
    m->refs[0] = (proto_task_ref_t){.task = 7, .attempt = 1};
    m->refs[1] = (proto_task_ref_t){.task = 9007199254740991LL, .attempt = 3};
    m->nrefs = 2;
    char *text = proto_pipe_encode(m);
    ck_assert_str_eq(text, "{\"v\":1,\"type\":\"recall\",\"tasks\":[{\"task\":7,\"attempt\":1},"
                           "{\"task\":9007199254740991,\"attempt\":3}]}");
    proto_pipe_t *g = proto_pipe_decode(text, strlen(text), &err);
    ck_assert_msg(g != NULL, "%s", err.message);
    ck_assert_int_eq(g->type, PROTO_PIPE_RECALL);
    ck_assert_int_eq(g->nrefs, 2);
    ck_assert_int_eq(g->refs[1].task, 9007199254740991LL);
    ck_assert_int_eq(g->refs[1].attempt, 3);
    free(text);
    proto_pipe_destroy(&m);
    proto_pipe_destroy(&g);

    proto_report_t *r = proto_report_new(PROTO_REP_RECALLED, "w1");
    r->recalled = calloc(1, sizeof *r->recalled);
    r->recalled[0] = (proto_task_ref_t){.task = 7, .attempt = 1};
    r->nrecalled = 1;
    text = proto_report_encode(r);
    ck_assert_str_eq(text, "{\"v\":1,\"type\":\"recalled\",\"worker\":\"w1\",\"tasks\":"
                           "[{\"task\":7,\"attempt\":1}]}");
    proto_report_t *rg = proto_report_decode(text, strlen(text), &err);
    ck_assert_msg(rg != NULL, "%s", err.message);
    ck_assert_int_eq(rg->type, PROTO_REP_RECALLED);
    ck_assert_str_eq(rg->worker, "w1");
    ck_assert_int_eq(rg->nrecalled, 1);
    ck_assert_int_eq(rg->recalled[0].task, 7);
    ck_assert_int_eq(rg->recalled[0].attempt, 1);
    free(text);
    proto_report_destroy(&r);
    proto_report_destroy(&rg);

    /* "lost", the answer to a hello reply's resend: the same refs. */
    r = proto_report_new(PROTO_REP_LOST, "w1");
    r->lost = calloc(1, sizeof *r->lost);
    r->lost[0] = (proto_task_ref_t){.task = 8, .attempt = 2};
    r->nlost = 1;
    text = proto_report_encode(r);
    ck_assert_str_eq(text, "{\"v\":1,\"type\":\"lost\",\"worker\":\"w1\",\"tasks\":"
                           "[{\"task\":8,\"attempt\":2}]}");
    rg = proto_report_decode(text, strlen(text), &err);
    ck_assert_msg(rg != NULL, "%s", err.message);
    ck_assert_int_eq(rg->type, PROTO_REP_LOST);
    ck_assert_int_eq(rg->nlost, 1);
    ck_assert_int_eq(rg->nrecalled, 0);
    ck_assert_int_eq(rg->lost[0].task, 8);
    ck_assert_int_eq(rg->lost[0].attempt, 2);
    free(text);
    proto_report_destroy(&r);
    proto_report_destroy(&rg);

    /* Nothing could be given back: an empty list, still an answer. */
    r = proto_report_new(PROTO_REP_RECALLED, "w1");
    text = proto_report_encode(r);
    ck_assert_str_eq(text, "{\"v\":1,\"type\":\"recalled\",\"worker\":\"w1\",\"tasks\":[]}");
    rg = proto_report_decode(text, strlen(text), &err);
    ck_assert_ptr_nonnull(rg);
    ck_assert_int_eq(rg->nrecalled, 0);
    free(text);
    proto_report_destroy(&r);
    proto_report_destroy(&rg);
}
END_TEST

/* Hostile recalls and answers: refused with a reason, nothing leaks
   (ASan), never more than PROTO_MAX_RECALL refs decoded. */
START_TEST(recall_and_recalled_fields_are_validated)
{
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"recall\"}", PROTO_E_FIELD, "\"tasks\"");
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"recall\",\"tasks\":{}}", PROTO_E_FIELD, "\"tasks\"");
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"recall\",\"tasks\":[{\"task\":1}]}", PROTO_E_FIELD,
            "tasks[0]: missing field \"attempt\"");
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"recall\",\"tasks\":[{\"task\":1,\"attempt\":1},"
                     "{\"task\":0,\"attempt\":1}]}",
            PROTO_E_FIELD, "\"task\"");
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"recall\",\"tasks\":[{\"task\":1,\"attempt\":0}]}",
            PROTO_E_FIELD, "\"attempt\"");
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"recall\",\"tasks\":[3]}", PROTO_E_FIELD, "\"tasks\"");
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"recall\",\"tasks\":[{\"task\":1.5,\"attempt\":1}]}",
            PROTO_E_FIELD, "\"task\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"recalled\",\"tasks\":[]}", PROTO_E_FIELD,
            "\"worker\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"recalled\",\"worker\":\"w\"}", PROTO_E_FIELD,
            "\"tasks\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"lost\",\"worker\":\"w\"}", PROTO_E_FIELD,
            "\"tasks\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"lost\",\"worker\":\"w\",\"tasks\":"
                       "[{\"task\":1,\"attempt\":0}]}",
            PROTO_E_FIELD, "\"attempt\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"recalled\",\"worker\":\"w\",\"tasks\":"
                       "[{\"task\":1,\"attempt\":1},{\"attempt\":1}]}",
            PROTO_E_FIELD, "tasks[1]: missing field \"task\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"recalled\",\"worker\":\"w\",\"tasks\":[null]}",
            PROTO_E_FIELD, "\"tasks\"");
    /* Over the bound: too_big, for both. */
    size_t cap = 64 + (PROTO_MAX_RECALL + 1) * 32;
    char *big = malloc(cap), *rep = malloc(cap + 32);
    size_t len = (size_t) snprintf(big, cap, "[");
    for (int i = 0; i <= PROTO_MAX_RECALL; i++)
        len += (size_t) snprintf(big + len, cap - len, "%s{\"task\":%d,\"attempt\":1}",
                                 i ? "," : "", i + 1);
    snprintf(big + len, cap - len, "]");
    snprintf(rep, cap + 32, "{\"v\":1,\"type\":\"recall\",\"tasks\":%s}", big);
    REFUSED(CH_PIPE, rep, PROTO_E_TOO_BIG, "\"tasks\"");
    snprintf(rep, cap + 32, "{\"v\":1,\"type\":\"recalled\",\"worker\":\"w\",\"tasks\":%s}", big);
    REFUSED(CH_REPORT, rep, PROTO_E_TOO_BIG, "\"tasks\"");
    free(big);
    free(rep);
    /* Members it does not know are ignored, as everywhere. */
    s_accepted(CH_PIPE, 0, "{\"v\":1,\"type\":\"recall\",\"tasks\":[],\"why\":\"idle\"}");
    s_accepted(CH_REPORT, 0, "{\"v\":1,\"type\":\"recalled\",\"worker\":\"w\",\"tasks\":[]}");
}
END_TEST

START_TEST(pipe_fields_are_validated)
{
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"tasks\"}", PROTO_E_FIELD, "\"tasks\"");
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":1,\"attempt\":1,\"job\":1}]}",
            PROTO_E_FIELD, "tasks[0]: missing field \"spec\"");
    REFUSED(CH_PIPE,
            "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":1,\"attempt\":1,\"job\":1,"
            "\"spec\":{\"fn\":\"f\"}},{\"id\":2,\"attempt\":1,\"job\":1,\"spec\":{\"fn\":1}}]}",
            PROTO_E_FIELD, "tasks[1]: spec: field \"fn\"");
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":0,\"attempt\":1,\"job\":1,"
                     "\"spec\":{\"fn\":\"f\"}}]}",
            PROTO_E_FIELD, "\"id\"");
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"abort\",\"task\":1}", PROTO_E_FIELD, "\"attempt\"");
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"abort\",\"attempt\":1}", PROTO_E_FIELD, "\"task\"");
    REFUSED(CH_PIPE, "{\"v\":1,\"type\":\"tasks\",\"tasks\":[null]}", PROTO_E_FIELD, "tasks[0]");
}
END_TEST

/* --------------------------------------------------------------- report */

START_TEST(report_messages_round_trip)
{
    proto_err_t err;
    proto_report_t *m = proto_report_new(PROTO_REP_HEARTBEAT, "w1");
    m->nrunning = 2;
    m->running = calloc(2, sizeof *m->running);
    m->running[0] = (proto_task_ref_t){.task = 5, .attempt = 1};
    m->running[1] = (proto_task_ref_t){.task = 6, .attempt = 2};
    char *text = proto_report_encode(m);
    ck_assert_str_eq(text, "{\"v\":1,\"type\":\"heartbeat\",\"worker\":\"w1\",\"running\":"
                           "[{\"task\":5,\"attempt\":1},{\"task\":6,\"attempt\":2}]}");
    proto_report_t *g = proto_report_decode(text, strlen(text), &err);
    ck_assert_ptr_nonnull(g);
    ck_assert_str_eq(g->worker, "w1");
    ck_assert_int_eq(g->nrunning, 2);
    ck_assert_int_eq(g->running[1].task, 6);
    ck_assert_int_eq(g->running[1].attempt, 2);
    free(text);
    proto_report_destroy(&m);
    proto_report_destroy(&g);

    m = proto_report_new(PROTO_REP_STARTED, "w1");
    m->nstarted = 1;
    m->started = calloc(1, sizeof *m->started);
    m->started_at = calloc(1, sizeof *m->started_at);
    m->started[0] = (proto_task_ref_t){.task = 9, .attempt = 3};
    m->started_at[0] = 1764410400.25;
    text = proto_report_encode(m);
    g = proto_report_decode(text, strlen(text), &err);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(g->nstarted, 1);
    ck_assert_int_eq(g->started[0].task, 9);
    ck_assert_int_eq(g->started[0].attempt, 3);
    ck_assert(g->started_at[0] == 1764410400.25);
    free(text);
    proto_report_destroy(&m);
    proto_report_destroy(&g);

    for (int stream = 1; stream <= 2; stream++) {
        m = proto_report_new(PROTO_REP_OUTPUT, "w2");
        m->task = 4;
        m->attempt = 1;
        m->stream = stream;
        m->data = strdup("chunk\n\"quoted\"");
        text = proto_report_encode(m);
        g = proto_report_decode(text, strlen(text), &err);
        ck_assert_ptr_nonnull(g);
        ck_assert_int_eq(g->stream, stream);
        ck_assert_str_eq(g->data, m->data);
        ck_assert_int_eq(g->task, 4);
        free(text);
        proto_report_destroy(&m);
        proto_report_destroy(&g);
    }

    m = proto_report_new(PROTO_REP_RESULTS, "w3");
    m->nresults = 2;
    m->results = calloc(2, sizeof *m->results);
    m->results[0] = s_full_result(1, 1);
    m->results[1] = proto_result_new();
    m->results[1]->task = 2;
    m->results[1]->attempt = 1;
    m->results[1]->status = PROTO_ST_DONE;
    text = proto_report_encode(m);
    g = proto_report_decode(text, strlen(text), &err);
    ck_assert_msg(g != NULL, "%s", err.message);
    ck_assert_int_eq(g->nresults, 2);
    s_result_eq(m->results[0], g->results[0]);
    s_result_eq(m->results[1], g->results[1]);

    /* The raw encoder, fed results each encoded on its own, writes the
       same frame. */
    char *r0 = proto_result_encode(m->results[0]), *r1 = proto_result_encode(m->results[1]);
    const char *rs[2] = {r0, r1};
    char *raw = proto_report_encode_results_raw("w3", 2, rs);
    ck_assert_str_eq(raw, text);
    free(raw);
    free(r0);
    free(r1);
    free(text);
    proto_report_destroy(&m);
    proto_report_destroy(&g);

    m = proto_report_new(PROTO_REP_BYE, "w4");
    text = proto_report_encode(m);
    ck_assert_str_eq(text, "{\"v\":1,\"type\":\"bye\",\"worker\":\"w4\"}");
    g = proto_report_decode(text, strlen(text), &err);
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(g->type, PROTO_REP_BYE);
    free(text);
    proto_report_destroy(&m);
    proto_report_destroy(&g);
    proto_report_destroy(&g); /* NULL is fine */
}
END_TEST

/* What our workers send is read by the fast path (no cJSON tree), with
   the values the cJSON decoder reads; other spellings fall back to it. */
START_TEST(results_reports_our_workers_send_take_the_fast_path)
{
    proto_report_t *m = proto_report_new(PROTO_REP_RESULTS, "w\u00e9\"1");
    m->nresults = 2;
    m->results = calloc(2, sizeof *m->results);
    m->results[0] = s_full_result(7, 2);
    free(m->results[0]->result_json);
    m->results[0]->result_json = NULL;
    free(m->results[0]->stderr_data);
    m->results[0]->stderr_data = strdup("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    proto_result_t *noop = proto_result_new();
    noop->task = 8;
    noop->attempt = 1;
    noop->status = PROTO_ST_DONE;
    noop->started = 1764410400.5;
    noop->finished = 1764410400.500001;
    m->results[1] = noop;
    char *text = proto_report_encode(m);
    proto_report_t *fast = pf_results_report(text, strlen(text));
    ck_assert_msg(fast != NULL, "fast path declined %s", text);
    proto_err_t err;
    proto_report_t *slow = pr_report_decode_tree(text, strlen(text), &err);
    ck_assert_ptr_nonnull(slow);
    ck_assert_str_eq(fast->worker, slow->worker);
    ck_assert_int_eq(fast->nresults, 2);
    for (int i = 0; i < 2; i++) {
        s_result_eq(m->results[i], fast->results[i]);
        s_result_eq(slow->results[i], fast->results[i]);
    }
    /* Each result's text as it came, for the master to store as is. */
    ck_assert_str_eq(fast->results[1]->text,
                     "{\"task\":8,\"attempt\":1,\"status\":\"done\",\"started\":1764410400.5,"
                     "\"finished\":1764410400.500001}");
    ck_assert_ptr_null(slow->results[1]->text);
    char *one = proto_result_encode(m->results[0]);
    proto_result_t *r = pf_result(one, strlen(one));
    ck_assert_ptr_nonnull(r);
    s_result_eq(m->results[0], r);
    proto_result_destroy(&r);
    free(one);
    free(text);
    proto_report_destroy(&fast);
    proto_report_destroy(&slow);
    proto_report_destroy(&m);

    /* Shapes it leaves to cJSON, which takes them. */
    static const char *const other[] = {
        "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":[{\"task\":1,\"task\":2,"
        "\"attempt\":1,\"status\":\"done\"}]}",
        "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":[{\"task\":1,"
        "\"attempt\":1.0,\"status\":\"done\"}]}",
        "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":[{\"task\":1,"
        "\"attempt\":1,\"status\":\"done\",\"result\":[1]}]}",
        "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":[{\"task\":1,"
        "\"attempt\":1,\"status\":\"done\",\"later\":1}]}",
        "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":[{\"\\u0074ask\":1,"
        "\"attempt\":1,\"status\":\"done\"}]}",
        "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":[{\"task\":1,"
        "\"attempt\":1,\"status\":\"done\",\"stdout\":\"\\ud83d\\ude00\"}]}",
    };
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        ck_assert_msg(pf_results_report(other[i], strlen(other[i])) == NULL, "%s", other[i]);
        proto_report_t *g = proto_report_decode(other[i], strlen(other[i]), &err);
        ck_assert_msg(g != NULL, "%s: %s", other[i], err.message);
        ck_assert_int_eq(g->nresults, 1);
        ck_assert_int_eq(g->results[0]->task, 1);
        proto_report_destroy(&g);
    }
}
END_TEST

/* A claim token (master/claim.h) goes out with a task, comes back in a
   hello's refs and with the attempt's result, and never reaches the text
   the master stores. */
START_TEST(a_claim_token_goes_out_with_a_task_and_comes_back_but_is_not_stored)
{
    const char *tok = "00112233445566778899aabbccddeeff";
    static const char *const specs[] = {"{\"fn\":\"noop\"}", "{\"shell\":\"true\"}"};
    int64_t ids[] = {1, 2}, jobs[] = {9, 9};
    int attempts[] = {1, 3};
    const char *claims[] = {tok, NULL};
    char *raw = proto_pipe_encode_tasks_out(&(proto_tasks_out_t){
        .n = 2, .ids = ids, .attempts = attempts, .jobs = jobs, .specs = specs, .claims = claims});
    proto_pipe_t *fast = pf_tasks(raw, strlen(raw));
    ck_assert_msg(fast != NULL, "fast path declined %s", raw);
    proto_err_t err;
    proto_pipe_t *slow = pr_pipe_decode_tree(raw, strlen(raw), &err);
    ck_assert_msg(slow != NULL, "%s", err.message);
    ck_assert_str_eq(fast->tasks[0].claim, tok);
    ck_assert_str_eq(slow->tasks[0].claim, tok);
    ck_assert_str_eq(fast->tasks[1].claim, "");
    ck_assert_str_eq(slow->tasks[1].claim, "");
    char *again = proto_pipe_encode(slow);
    ck_assert_str_eq(again, raw);
    free(again);
    proto_pipe_destroy(&fast);
    proto_pipe_destroy(&slow);
    free(raw);

    proto_req_t *hello = proto_req_new(PROTO_REQ_HELLO);
    hello->host = strdup("h");
    hello->threads = 1;
    hello->nrunning = hello->nended = 1;
    hello->running = calloc(1, sizeof *hello->running);
    hello->ended = calloc(1, sizeof *hello->ended);
    hello->running[0] = (proto_task_ref_t){.task = 1, .attempt = 1};
    hello->ended[0] = (proto_task_ref_t){.task = 2, .attempt = 3};
    strcpy(hello->running[0].claim, tok);
    strcpy(hello->ended[0].claim, tok);
    char *text = proto_req_encode(hello);
    proto_req_t *back = proto_req_decode(text, strlen(text), &err);
    ck_assert_msg(back != NULL, "%s", err.message);
    ck_assert_str_eq(back->running[0].claim, tok);
    ck_assert_str_eq(back->ended[0].claim, tok);
    proto_req_destroy(&back);
    proto_req_destroy(&hello);
    free(text);

    /* Wherever the token is in the object: read, and cut from the text. */
    static const char *const objs[] = {
        "{\"claim\":\"00112233445566778899aabbccddeeff\",\"task\":3,\"attempt\":1,"
        "\"status\":\"done\"}",
        "{\"task\":3,\"attempt\":1,\"claim\":\"00112233445566778899aabbccddeeff\","
        "\"status\":\"done\"}",
        "{\"task\":3,\"attempt\":1,\"status\":\"done\",\"claim\":"
        "\"00112233445566778899aabbccddeeff\"}",
        "{ \"claim\" : \"00112233445566778899aabbccddeeff\" , \"task\":3,\"attempt\":1,"
        "\"status\":\"done\"}",
    };
    for (size_t i = 0; i < sizeof objs / sizeof *objs; i++) {
        proto_result_t *r = pf_result(objs[i], strlen(objs[i]));
        ck_assert_msg(r != NULL, "fast path declined %s", objs[i]);
        ck_assert_str_eq(r->claim, tok);
        ck_assert_msg(!strstr(r->text, "claim"), "%s kept as %s", objs[i], r->text);
        proto_result_t *stored = pr_result_decode_tree(r->text, strlen(r->text), &err);
        ck_assert_msg(stored != NULL, "%s: %s", r->text, err.message);
        ck_assert_int_eq(stored->task, 3);
        ck_assert_int_eq(stored->attempt, 1);
        ck_assert_int_eq(stored->status, PROTO_ST_DONE);
        ck_assert_str_eq(stored->claim, "");
        proto_result_destroy(&stored);
        proto_result_t *tree = pr_result_decode_tree(objs[i], strlen(objs[i]), &err);
        ck_assert_ptr_nonnull(tree);
        ck_assert_str_eq(tree->claim, tok);
        proto_result_destroy(&tree);
        proto_result_destroy(&r);
    }
    proto_result_t *res = proto_result_new();
    res->task = 3;
    res->attempt = 1;
    strcpy(res->claim, tok);
    text = proto_result_encode(res);
    ck_assert_msg(strstr(text, tok) != NULL, "%s", text);
    proto_result_destroy(&res);
    free(text);

    /* The token is opaque (proto.h): any other format within the bound
       is kept by both decoders, as a newer master may send it. */
    char longest[PROTO_CLAIM_MAX + 2];
    memset(longest, 'Z', PROTO_CLAIM_MAX);
    longest[PROTO_CLAIM_MAX] = '\0';
    const char *const good[] = {"0011", "00112233445566778899AABBCCDDEEFF",
                                "v2.00112233445566778899aabbccddeeffa", "a-b_c~d+e/f=g!", longest};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char obj[512];
        snprintf(obj, sizeof obj, "{\"task\":3,\"attempt\":1,\"status\":\"done\",\"claim\":\"%s\"}",
                 good[i]);
        proto_result_t *r = proto_result_decode(obj, strlen(obj), &err);
        ck_assert_msg(r != NULL, "refused %s: %s", obj, err.message);
        ck_assert_str_eq(r->claim, good[i]);
        proto_result_destroy(&r);
        snprintf(obj, sizeof obj,
                 "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":1,\"attempt\":1,\"job\":1,"
                 "\"claim\":\"%s\",\"spec\":{\"fn\":\"noop\"}}]}",
                 good[i]);
        proto_pipe_t *p = proto_pipe_decode(obj, strlen(obj), &err);
        ck_assert_msg(p != NULL, "refused %s: %s", obj, err.message);
        ck_assert_str_eq(p->tasks[0].claim, good[i]);
        ck_assert(!p->tasks[0].claim_refused);
        proto_pipe_destroy(&p);
    }
    /* Past the bound: a worker's result or hello is refused (the master
       reads it), and a task the master sends is decoded with its token
       refused, for the worker to refuse that task alone. */
    longest[PROTO_CLAIM_MAX] = 'Z';
    longest[PROTO_CLAIM_MAX + 1] = '\0';
    const char *const bad[] = {"", "has space", "quote\\\"d", "back\\\\slash", "tab\\t",
                               "caf\u00e9", longest};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char obj[512];
        snprintf(obj, sizeof obj, "{\"task\":3,\"attempt\":1,\"status\":\"done\",\"claim\":\"%s\"}",
                 bad[i]);
        ck_assert_msg(proto_result_decode(obj, strlen(obj), &err) == NULL, "took %s", obj);
        ck_assert_msg(strstr(err.message, "claim") != NULL, "%s", err.message);
        snprintf(obj, sizeof obj,
                 "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":1,\"attempt\":1,\"job\":1,"
                 "\"claim\":\"%s\",\"spec\":{\"fn\":\"noop\"}},"
                 "{\"id\":2,\"attempt\":1,\"job\":1,\"spec\":{\"fn\":\"noop\"}}]}",
                 bad[i]);
        proto_pipe_t *p = proto_pipe_decode(obj, strlen(obj), &err);
        ck_assert_msg(p != NULL && p->ntasks == 2, "refused %s: %s", obj, err.message);
        ck_assert_msg(p->tasks[0].claim_refused, "kept the token of %s", obj);
        ck_assert_str_eq(p->tasks[0].claim, "");
        ck_assert(!p->tasks[1].claim_refused);
        proto_pipe_destroy(&p);
    }
    const char *num = "{\"task\":3,\"attempt\":1,\"status\":\"done\",\"claim\":7}";
    ck_assert_ptr_null(proto_result_decode(num, strlen(num), &err));
}
END_TEST

/* Integers are printed without printf: the same text as %lld, at both
   ends of the range and in between. */
START_TEST(integers_print_as_printf_does)
{
    static const int64_t fixed[] = {0, 1, -1, 9, 10, -10, 99, 100, 1234567890123,
                                    INT64_MAX, INT64_MIN, INT64_MIN + 1, PJ_MAX_SAFE_INT};
    enum { NFIXED = sizeof fixed / sizeof *fixed };
    uint64_t x = 0x2545F4914F6CDD1Dull;
    const int n = zt_loops(100000) + NFIXED;
    for (int i = 0; i < n; i++) {
        int64_t v;
        if (i < NFIXED) {
            v = fixed[i];
        } else {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            v = (int64_t) (x >> (1 + x % 63));   /* every magnitude */
            if (x & 2)
                v = -v;
        }
        pb_t b;
        pb_init(&b, 4);
        pb_i64(&b, v);
        char *got = pb_take(&b);
        char want[32];
        snprintf(want, sizeof want, "%lld", (long long) v);
        ck_assert_str_eq(got, want);
        free(got);
    }
}
END_TEST

/* The fast path reads a number without exponent whose digits make an
   integer m <= 2^53 as m / 10^k, without strtod: it must give strtod's
   double, bit for bit, for every place of the point and every digit
   count, on both sides of 2^53 (a fixed-seed sample of 200,000, a tenth
   under valgrind, plus the classic hard cases). */
START_TEST(fast_path_numbers_are_strtods_doubles)
{
    static const char *const fixed[] = {
        "0.1", "0.3", "0.000001", "1764410400.500001", "1764410400.123456", "999999999999999",
        "99999999999999.9", "0.999999999999999", "0.000000000000001", "123456789012.345",
        "9007199254740.993", "1.7976931348623157", "4.35", "2.675", "1e0", "0.0", "5e-324", "9007199254740992",
        "9007199254740993", "900719925474.0993", "9007199254.740992", "0.9007199254740993"};
    enum { NFIXED = sizeof fixed / sizeof *fixed };
    uint64_t x = 0x9E3779B97F4A7C15ull;
    char num[48], text[192];
    const int n = zt_loops(200000) + NFIXED;
    for (int i = 0; i < n; i++) {
        if (i < NFIXED) {
            snprintf(num, sizeof num, "%s", fixed[i]);
        } else {
            /* An integer part (none: "0"), then maybe a fraction: 1 to 17
               digits in all, so both sides of 2^53. */
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int total = 1 + (int) (x % 17);
            int whole = (int) ((x >> 8) % (uint64_t) (total + 1));   /* digits before the point */
            char *o = num;
            if (whole == 0)
                *o++ = '0';
            for (int d = 0; d < total; d++) {
                if (d == whole)
                    *o++ = '.';
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                *o++ = (char) (d == 0 && whole > 0 ? '1' + x % 9 : '0' + x % 10);
            }
            *o = '\0';
        }
        snprintf(text, sizeof text,
                 "{\"task\":1,\"attempt\":1,\"status\":\"done\",\"started\":%s,"
                 "\"finished\":%s}",
                 num, num);
        proto_result_t *r = pf_result(text, strlen(text));
        double want = strtod(num, NULL);
        ck_assert_msg(r != NULL, "fast path declined %s", text);
        ck_assert_msg(memcmp(&r->started, &want, sizeof want) == 0, "%s: %.17g, strtod %.17g",
                      num, r->started, want);
        proto_result_destroy(&r);
    }
}
END_TEST

/* The frames the master sends and the CLI submits take the fast paths
   too, with the values the cJSON decoders read. */
START_TEST(tasks_messages_and_submits_take_the_fast_path)
{
    static const char *const specs[] = {
        "{\"fn\":\"noop\"}",
        "{\"argv\":[\"sh\",\"-c\",\"echo \\\"hi\\\"\\n\"],\"stdin\":\"x\",\"cwd\":\"/tmp\","
        "\"timeout\":1.5,\"retries\":2,\"priority\":-3,\"name\":\"t\",\"index\":7}",
        "{\"shell\":\"true\",\"index\":0}",
    };
    int64_t ids[] = {1, 2, 3}, jobs[] = {9, 9, 9};
    int attempts[] = {1, 2, 1};
    char *text = proto_pipe_encode_tasks_raw(3, ids, attempts, jobs, specs);
    proto_pipe_t *fast = pf_tasks(text, strlen(text));
    ck_assert_msg(fast != NULL, "fast path declined %s", text);
    proto_err_t err;
    proto_pipe_t *slow = pr_pipe_decode_tree(text, strlen(text), &err);
    ck_assert_ptr_nonnull(slow);
    ck_assert_int_eq(fast->ntasks, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(fast->tasks[i].id, ids[i]);
        ck_assert_int_eq(fast->tasks[i].attempt, attempts[i]);
        ck_assert_int_eq(fast->tasks[i].job, 9);
        char *a = proto_spec_encode(fast->tasks[i].spec), *b = proto_spec_encode(slow->tasks[i].spec);
        ck_assert_str_eq(a, b);
        ck_assert_str_eq(a, specs[i]);
        free(a);
        free(b);
    }
    proto_pipe_destroy(&fast);
    proto_pipe_destroy(&slow);
    free(text);

    proto_req_t *req = proto_req_new(PROTO_REQ_SUBMIT);
    req->name = strdup("nightly");
    req->key = strdup("4f2a9c.1");
    req->more = true;
    req->ntasks = 3;
    req->tasks = calloc(3, sizeof *req->tasks);
    for (int i = 0; i < 3; i++)
        req->tasks[i] = proto_spec_decode(specs[i], strlen(specs[i]), &err);
    text = proto_req_encode(req);
    proto_req_t *f = pf_submit(text, strlen(text));
    ck_assert_msg(f != NULL, "fast path declined %s", text);
    ck_assert_str_eq(f->name, "nightly");
    ck_assert_str_eq(f->key, "4f2a9c.1");
    ck_assert(f->more);
    ck_assert_int_eq(f->ntasks, 3);
    for (int i = 0; i < 3; i++) {
        char *a = proto_spec_encode(f->tasks[i]);
        ck_assert_str_eq(a, specs[i]);
        free(a);
    }
    proto_req_destroy(&f);
    proto_req_destroy(&req);
    free(text);

    /* Specs it leaves to cJSON, which takes them. */
    static const char *const other[] = {
        "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"f\",\"args\":{\"n\":1}}]}",
        "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"argv\":[\"a\"],\"env\":{\"A\":\"1\"}}]}",
        "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"f\",\"require\":[\"gpu\"]}]}",
        "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"fn\":\"f\",\"retries\":1.0}]}",
    };
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        ck_assert_msg(pf_submit(other[i], strlen(other[i])) == NULL, "%s", other[i]);
        proto_req_t *g = proto_req_decode(other[i], strlen(other[i]), &err);
        ck_assert_msg(g != NULL, "%s: %s", other[i], err.message);
        ck_assert_int_eq(g->ntasks, 1);
        proto_req_destroy(&g);
    }
}
END_TEST

/* The run the readers skip and the writers copy whole, eight bytes at a
   time: it ends at the first quote, backslash or control byte wherever it
   sits in a word, and takes every other byte (UTF-8 included). */
START_TEST(a_plain_run_ends_at_the_first_byte_a_json_string_must_escape)
{
    const char stops[] = {'"', '\\', '\n', 0x01, 0x1f};
    char buf[41];
    for (size_t k = 0; k < sizeof stops; k++) {
        for (size_t at = 0; at < 40; at++) {
            memset(buf, 'a', 40);
            buf[40] = '\0';
            buf[(at + 7) % 40] = (char) 0xc3;   /* a high byte is plain */
            buf[at] = stops[k];
            ck_assert_uint_eq(pu_plain_len(buf, 40), at);
            ck_assert_uint_eq(pu_plain_len(buf, at), at);
        }
    }
    memset(buf, ' ', 40);
    ck_assert_uint_eq(pu_plain_len(buf, 40), 40);
    ck_assert_uint_eq(pu_plain_len(buf, 0), 0);
}
END_TEST

/* The first batch of every job the CLI submits carries its definition
   (after the tasks), and a closing one may wait or limit the job: the
   fast path takes them, as the tree path reads them, so a big first
   batch is parsed once. */
START_TEST(a_first_batch_with_its_definition_is_read_by_the_fast_path_as_by_cjson)
{
    const char *text =
        "{\"v\":1,\"type\":\"submit\",\"job\":0,\"name\":\"render\",\"tasks\":"
        "[{\"argv\":[\"wc\",\"-c\"],\"stdin\":\"aaa\\nb\"}],\"more\":false,"
        "\"wait_ms\":2500,\"max_running\":3,"
        "\"definition\": {\"argv\":[\"wc\", \"-c\"],\"opts\":{\"n\":1.5,\"s\":\"x\\\"}\",\"a\":[[],{}]}}}";
    proto_req_t *fast = pf_submit(text, strlen(text));
    ck_assert_msg(fast != NULL, "fast path declined %s", text);
    proto_err_t err;
    proto_req_t *tree = pr_req_decode_tree(text, strlen(text), &err);
    ck_assert_msg(tree != NULL, "%s", err.message);
    ck_assert_int_eq(fast->wait_ms, 2500);
    ck_assert_int_eq(fast->max_running, 3);
    ck_assert_int_eq(fast->wait_ms, tree->wait_ms);
    ck_assert_int_eq(fast->max_running, tree->max_running);
    ck_assert_str_eq(fast->definition, tree->definition);
    ck_assert_str_eq(fast->definition,
                     "{\"argv\":[\"wc\",\"-c\"],\"opts\":{\"n\":1.5,\"s\":\"x\\\"}\",\"a\":[[],{}]}}");
    ck_assert_int_eq(fast->ntasks, 1);
    ck_assert_uint_eq(fast->tasks[0]->stdin_len, 5);
    proto_req_destroy(&fast);
    proto_req_destroy(&tree);

    /* Left to cJSON (which refuses or takes them with its own reading): a
       definition that is no object, waiting with more to come,
       dependencies. */
    static const char *const other[] = {
        "{\"v\":1,\"type\":\"submit\",\"tasks\":[],\"definition\":[1]}",
        "{\"v\":1,\"type\":\"submit\",\"tasks\":[],\"definition\":{\"a\":1e999}}",
        "{\"v\":1,\"type\":\"submit\",\"tasks\":[],\"definition\":{\"a\":}}",
        "{\"v\":1,\"type\":\"submit\",\"tasks\":[],\"more\":true,\"wait_ms\":5}",
        "{\"v\":1,\"type\":\"submit\",\"tasks\":[],\"after\":[1]}",
    };
    for (size_t i = 0; i < sizeof other / sizeof *other; i++)
        ck_assert_msg(pf_submit(other[i], strlen(other[i])) == NULL, "fast path took %s",
                      other[i]);
}
END_TEST

/* A submit's idempotency key goes into log lines and the store as it is:
   both decoders take only short keys of a few safe characters. */
START_TEST(a_submit_key_of_other_characters_or_too_long_is_refused_by_both_decoders)
{
    char long_key[PROTO_MAX_KEY + 2];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    const char *bad[] = {"", "a b", "a\\nb", "k\\u00e9", "a/b", long_key};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[300];
        snprintf(text, sizeof text, "{\"v\":1,\"type\":\"submit\",\"key\":\"%s\",\"tasks\":[]}",
                 bad[i]);
        ck_assert_msg(pf_submit(text, strlen(text)) == NULL, "fast path took %s", text);
        proto_err_t err;
        proto_req_t *req = proto_req_decode(text, strlen(text), &err);
        ck_assert_msg(req == NULL, "took %s", text);
        ck_assert_str_eq(err.code, PROTO_E_FIELD);
    }
    long_key[PROTO_MAX_KEY] = '\0';
    ck_assert(proto_key_valid(long_key));
    ck_assert(proto_key_valid("Az09._:-"));
    ck_assert(!proto_key_valid(NULL));
}
END_TEST

START_TEST(a_new_spec_has_the_defaults_every_decoder_starts_from)
{
    proto_spec_t *made = proto_spec_new(PROTO_KIND_EXEC);
    ck_assert_int_eq(made->kind, PROTO_KIND_EXEC);
    ck_assert_int_eq(made->index, -1);
    ck_assert_int_eq(made->output_cap, PROTO_DEFAULT_OUTPUT_CAP);
    ck_assert(made->timeout == 0);
    ck_assert_int_eq(made->retries, 0);
    ck_assert_int_eq(made->priority, 0);
    ck_assert_ptr_null(made->argv);
    ck_assert_ptr_null(made->env);
    ck_assert_ptr_null(made->require);
    made->shell = strdup("make -j2");
    /* Defaults are what the encoder leaves out... */
    char *text = proto_spec_encode(made);
    ck_assert_str_eq(text, "{\"shell\":\"make -j2\"}");
    free(text);
    /* ...and what both decoders fill in when a member is absent. */
    proto_spec_t *tree = s_spec("{\"shell\":\"make -j2\"}");
    s_spec_eq(tree, made);
    const char *submit = "{\"v\":1,\"type\":\"submit\",\"tasks\":[{\"shell\":\"make -j2\"}]}";
    proto_req_t *fast = pf_submit(submit, strlen(submit));
    ck_assert_msg(fast != NULL, "fast path declined %s", submit);
    ck_assert_int_eq(fast->ntasks, 1);
    s_spec_eq(fast->tasks[0], made);
    proto_req_destroy(&fast);
    proto_spec_destroy(&tree);
    proto_spec_destroy(&made);
}
END_TEST

START_TEST(a_reset_result_forgets_the_last_attempt)
{
    proto_result_t *r = s_full_result(9, 2);
    r->text = strdup("{\"task\":9}");
    r->status = PROTO_ST_DONE;
    proto_result_reset(r, 12, 3);
    proto_result_t *want = proto_result_new();
    want->task = 12;
    want->attempt = 3;
    s_result_eq(r, want);
    ck_assert_int_eq(r->status, PROTO_ST_FAILED);
    ck_assert_ptr_null(r->text);
    proto_result_destroy(&want);
    proto_result_destroy(&r);
}
END_TEST

START_TEST(a_failed_result_carries_one_line_of_utf8_and_no_value)
{
    proto_result_t *r = s_full_result(1, 1);
    r->status = PROTO_ST_DONE;
    proto_result_fail(r, PROTO_ST_CANCELLED, "stopped at %s:\n\tline %d\r\xff", "job.c", 7);
    ck_assert_int_eq(r->status, PROTO_ST_CANCELLED);
    ck_assert_ptr_null(r->result_json);
    ck_assert_str_eq(r->error, "stopped at job.c:  line 7 \xef\xbf\xbd");
    /* The rest of the attempt stays as it was. */
    ck_assert_int_eq(r->exit_code, 3);
    ck_assert(r->stdout_truncated);
    /* proto_result_error replaces the text and leaves the status alone. */
    proto_result_error(r, "exited with status %d", 3);
    ck_assert_str_eq(r->error, "exited with status 3");
    ck_assert_int_eq(r->status, PROTO_ST_CANCELLED);
    proto_result_destroy(&r);
}
END_TEST

START_TEST(report_fields_are_validated)
{
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"bye\"}", PROTO_E_FIELD, "\"worker\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"bye\",\"worker\":5}", PROTO_E_FIELD, "\"worker\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"heartbeat\",\"worker\":\"w\",\"running\":{}}",
            PROTO_E_FIELD, "\"running\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"started\",\"worker\":\"w\"}", PROTO_E_FIELD,
            "\"started\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"started\",\"worker\":\"w\",\"started\":"
                       "[{\"task\":1,\"attempt\":1}]}",
            PROTO_E_FIELD, "started[0]: missing field \"at\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"output\",\"worker\":\"w\",\"task\":1,\"attempt\":1,"
                       "\"stream\":\"stdin\",\"data\":\"\"}",
            PROTO_E_FIELD, "\"stream\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"output\",\"worker\":\"w\",\"task\":1,\"attempt\":1,"
                       "\"stream\":\"stdout\"}",
            PROTO_E_FIELD, "\"data\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":"
                       "[{\"task\":1,\"attempt\":1,\"status\":\"done\"},"
                       "{\"task\":2,\"attempt\":1,\"status\":\"queued\"}]}",
            PROTO_E_FIELD, "results[1]: field \"status\"");
    REFUSED(CH_REPORT, "{\"v\":1,\"type\":\"results\",\"worker\":\"w\"}", PROTO_E_FIELD,
            "\"results\"");
    s_accepted(CH_REPORT, 0, "{\"v\":1,\"type\":\"heartbeat\",\"worker\":\"w\"}");
    s_accepted(CH_REPORT, 0, "{\"v\":1,\"type\":\"results\",\"worker\":\"w\",\"results\":[]}");
}
END_TEST

START_TEST(an_output_reports_data_comes_plain_or_base64_bounded_as_stored)
{
    /* Live output, as a result's outputs are read (one reader of both
       forms): "data", or "data_b64" when it is absent, repaired to text. */
    proto_err_t err;
    const char *plain = "{\"v\":1,\"type\":\"output\",\"worker\":\"w\",\"task\":1,\"attempt\":1,"
                        "\"stream\":\"stderr\",\"data\":\"hi\"}";
    proto_report_t *rep = proto_report_decode(plain, strlen(plain), &err);
    ck_assert_msg(rep != NULL, "%s", err.message);
    ck_assert_int_eq(rep->stream, 2);
    ck_assert_str_eq(rep->data, "hi");
    proto_report_destroy(&rep);
    const char *b64 = "{\"v\":1,\"type\":\"output\",\"worker\":\"w\",\"task\":1,\"attempt\":1,"
                      "\"stream\":\"stdout\",\"data_b64\":\"aP9p\"}";
    rep = proto_report_decode(b64, strlen(b64), &err);
    ck_assert_msg(rep != NULL, "%s", err.message);
    ck_assert_int_eq(rep->stream, 1);
    ck_assert_str_eq(rep->data, "h\xef\xbf\xbdi");   /* the stray byte as U+FFFD */
    proto_report_destroy(&rep);
    /* 6 MiB of 0x01: 8 MiB of base64, 36 MiB once stored (\u0001), over
       what one report may make the master hold. */
    const char head[] = "{\"v\":1,\"type\":\"output\",\"worker\":\"w\",\"task\":1,\"attempt\":1,"
                        "\"stream\":\"stdout\",\"data_b64\":\"";
    size_t quads = (size_t) 2 << 20, n = sizeof head - 1 + quads * 4 + 2;
    char *big = xmalloc(n + 1);
    memcpy(big, head, sizeof head - 1);
    for (size_t i = 0; i < quads; i++)
        memcpy(big + sizeof head - 1 + i * 4, "AQEB", 4);
    memcpy(big + n - 2, "\"}", 3);
    ck_assert_ptr_null(proto_report_decode(big, n, &err));
    ck_assert_str_eq(err.code, PROTO_E_TOO_BIG);
    ck_assert_msg(strstr(err.message, "field \"data_b64\" is over 33554432 bytes"), "%s",
                  err.message);
    free(big);
}
END_TEST

/* ----------------------------------------------------------- robustness */

/* Every channel's decoder, on every prefix and on many corrupted copies of
   valid frames: refusals must be clean (code + message), never a crash or
   an over-read (the sanitizer builds run this too). */
static void s_torture(chan_t ch, proto_req_type_t rt, const char *text)
{
    size_t n = strlen(text);
    proto_err_t err;
    ck_assert_msg(s_decodes(ch, text, n, rt, &err), "%s: %s", text, err.message);
    for (size_t i = 0; i < n; i++) {
        if (s_decodes(ch, text, i, rt, &err)) {
            /* only a prefix that ends after the closing brace may pass */
            ck_assert_msg(strspn(text + i, " \t\r\n") == n - i, "prefix %zu accepted", i);
        }
    }
    char *buf = malloc(n);
    uint32_t seed = 2463534242u;
    static const char junk[] = "\0\"\\{}[]:,0-9e.tfn\x80\xff\xc3 u";
    for (int round = 0; round < 400; round++) {
        memcpy(buf, text, n);
        int flips = 1 + round % 4;
        for (int f = 0; f < flips; f++) {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            buf[seed % n] = junk[(seed >> 16) % (sizeof junk - 1)];
        }
        s_decodes(ch, buf, n, rt, &err);
    }
    free(buf);
}

START_TEST(damaged_frames_are_refused_cleanly)
{
    proto_result_t *res = s_full_result(3, 1);
    char *rtext = proto_result_encode(res);
    const char *rs[1] = {rtext};
    char *report = proto_report_encode_results_raw("w1", 1, rs);
    s_torture(CH_RESULT, 0, rtext);
    s_torture(CH_REPORT, 0, report);
    free(report);
    free(rtext);
    proto_result_destroy(&res);

    s_torture(CH_SPEC, 0,
              "{\"argv\":[\"a\",\"b\"],\"env\":{\"K\":\"v\"},\"timeout\":1.5,\"retries\":2,"
              "\"require\":[\"x\"],\"stdin\":\"\\u00e9\\n\"}");
    s_torture(CH_SPEC, 0, "{\"fn\":\"f\",\"args\":{\"a\":[1,{\"b\":null}]}}");
    s_torture(CH_REQ, 0,
              "{\"v\":1,\"type\":\"submit\",\"job\":0,\"name\":\"n\",\"tasks\":[{\"shell\":\"x\"},"
              "{\"fn\":\"f\",\"args\":[1]}],\"more\":false}");
    s_torture(CH_REQ, 0,
              "{\"v\":1,\"type\":\"hello\",\"host\":\"h\",\"pid\":1,\"threads\":2,\"labels\":"
              "[\"a\"],\"running\":[{\"task\":1,\"attempt\":1}],\"no_exec\":false}");
    s_torture(CH_PIPE, 0,
              "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":1,\"attempt\":1,\"job\":1,"
              "\"spec\":{\"shell\":\"x\"}}]}");
    s_torture(CH_REPORT, 0,
              "{\"v\":1,\"type\":\"started\",\"worker\":\"w\",\"started\":[{\"task\":1,"
              "\"attempt\":1,\"at\":2.5}]}");
    s_torture(CH_REPLY, PROTO_REQ_RESULTS,
              "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"tasks\":[{\"task\":1,\"job\":1,"
              "\"index\":0,\"name\":null,\"status\":\"done\",\"attempts\":1,\"worker\":\"w\","
              "\"exit_code\":0,\"signal\":0,\"timed_out\":false,\"stdout\":\"x\",\"stderr\":\"\","
              "\"stdout_truncated\":false,\"stderr_truncated\":false,\"result\":null,"
              "\"error\":null,\"started\":1,\"finished\":2}],\"next_after\":1}");
    s_torture(CH_REPLY, PROTO_REQ_STATUS,
              "{\"v\":1,\"type\":\"reply\",\"ok\":false,\"error\":{\"code\":\"x\",\"message\":\"m\"}}");
}
END_TEST

/* ztask alloc: a queue record survives the request, the reply and the
   store's text whole; what cannot work is refused with the field named. */
START_TEST(alloc_queues_round_trip_and_bad_ones_are_refused)
{
    proto_req_t *r = proto_req_new(PROTO_REQ_ALLOC);
    r->alloc_op = PROTO_ALLOC_OP_ADD;
    r->queue = calloc(1, sizeof *r->queue);
    *r->queue = (proto_alloc_t){.name = strdup("cpu"), .engine = strdup("slurm"),
                                .max_workers = 20, .workers_per_alloc = 2, .backlog = 3,
                                .time_limit_s = 3600, .idle_timeout_s = 300, .failures = 2,
                                .last_error = strdup("sbatch: no"), .retry_at = 12.5};
    r->queue->args = calloc(2, sizeof(char *));
    r->queue->args[0] = strdup("--partition=cpu");
    r->queue->nargs = 1;
    r->queue->allocs = calloc(1, sizeof *r->queue->allocs);
    r->queue->allocs[0] = (proto_allocation_t){.id = strdup("4242"), .state = PROTO_ALLOC_RUNNING,
                                               .submitted = 1.5, .started = 2.5,
                                               .had_worker = true, .workers = 2};
    r->queue->nallocs = 1;
    proto_req_t *g = s_req_round_trip(r);
    ck_assert_int_eq(g->alloc_op, PROTO_ALLOC_OP_ADD);
    const proto_alloc_t *q = g->queue;
    ck_assert_str_eq(q->name, "cpu");
    ck_assert_int_eq(q->max_workers, 20);
    ck_assert_int_eq(q->workers_per_alloc, 2);
    ck_assert_int_eq(q->backlog, 3);
    ck_assert_int_eq(q->time_limit_s, 3600);
    ck_assert_str_eq(q->args[0], "--partition=cpu");
    ck_assert_str_eq(q->last_error, "sbatch: no");
    ck_assert(q->retry_at == 12.5);
    ck_assert_int_eq(q->nallocs, 1);
    ck_assert_str_eq(q->allocs[0].id, "4242");
    ck_assert_int_eq(q->allocs[0].state, PROTO_ALLOC_RUNNING);
    ck_assert(q->allocs[0].had_worker && q->allocs[0].workers == 2);
    /* The store's text reads back the same. */
    char *text = proto_alloc_encode(q);
    proto_err_t err;
    proto_alloc_t *back = proto_alloc_decode(text, strlen(text), &err);
    ck_assert_ptr_nonnull(back);
    char *again = proto_alloc_encode(back);
    ck_assert_str_eq(text, again);
    free(again);
    free(text);
    proto_alloc_destroy(&back);

    proto_reply_t *rep = proto_reply_new(true);
    rep->allocs = calloc(1, sizeof *rep->allocs);
    rep->nallocs = 1;
    text = proto_alloc_encode(q);
    proto_alloc_t *copy = proto_alloc_decode(text, strlen(text), &err);
    free(text);
    rep->allocs[0] = *copy;
    free(copy);
    proto_reply_t *grep = s_reply_round_trip(rep, PROTO_REQ_ALLOC);
    ck_assert_int_eq(grep->nallocs, 1);
    ck_assert_str_eq(grep->allocs[0].allocs[0].id, "4242");
    proto_reply_destroy(&rep);
    proto_reply_destroy(&grep);
    proto_req_destroy(&r);
    proto_req_destroy(&g);

    static const struct { const char *json, *field; } bad[] = {
        {"{\"v\":1,\"type\":\"alloc\",\"op\":\"grow\"}", "op"},
        {"{\"v\":1,\"type\":\"alloc\",\"op\":\"pause\"}", "alloc"},
        {"{\"v\":1,\"type\":\"alloc\",\"op\":\"add\"}", "queue"},
        {"{\"v\":1,\"type\":\"alloc\",\"op\":\"add\",\"queue\":{\"engine\":\"pbs\","
         "\"max_workers\":1,\"time_limit_s\":60,\"idle_timeout_s\":5}}", "engine"},
        {"{\"v\":1,\"type\":\"alloc\",\"op\":\"add\",\"queue\":{\"engine\":\"slurm\","
         "\"max_workers\":1,\"time_limit_s\":59,\"idle_timeout_s\":5}}", "time_limit_s"},
        {"{\"v\":1,\"type\":\"alloc\",\"op\":\"add\",\"queue\":{\"engine\":\"slurm\","
         "\"max_workers\":1,\"workers_per_alloc\":2,\"time_limit_s\":60,\"idle_timeout_s\":5}}",
         "workers_per_alloc"},
        {"{\"v\":1,\"type\":\"alloc\",\"op\":\"add\",\"queue\":{\"engine\":\"slurm\","
         "\"max_workers\":1,\"time_limit_s\":60,\"idle_timeout_s\":5,\"args\":[7]}}", "args"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        proto_req_t *b = proto_req_decode(bad[i].json, strlen(bad[i].json), &err);
        ck_assert_msg(!b, "accepted: %s", bad[i].json);
        ck_assert_str_eq(err.code, PROTO_E_FIELD);
        ck_assert_msg(strstr(err.message, bad[i].field), "%s: %s", bad[i].json, err.message);
    }
}
END_TEST

/* What `ztask results` and the dashboard show for a task that did not
   succeed: a command's own stderr before an error that only repeats its
   exit status; the error when it was killed, timed out or never ran. */
START_TEST(a_failed_commands_reason_is_its_stderr_before_its_exit_status)
{
    proto_result_t exited = {.has_exit_code = true, .exit_code = 3,
                             .error = (char *) "exited with status 3",
                             .stderr_data = (char *) "\n  \nboom at 3\nmore\n",
                             .stdout_data = (char *) "ok\n"};
    ck_assert_ptr_eq(proto_result_reason(&exited), exited.stderr_data);
    proto_result_t quiet = exited;
    quiet.stderr_data = (char *) " \n";
    ck_assert_ptr_eq(proto_result_reason(&quiet), quiet.error);
    proto_result_t killed = exited;
    killed.signal = 9;
    killed.error = (char *) "killed by signal 9";
    ck_assert_ptr_eq(proto_result_reason(&killed), killed.error);
    proto_result_t timed = exited;
    timed.timed_out = true;
    timed.error = (char *) "timed out after 1s";
    ck_assert_ptr_eq(proto_result_reason(&timed), timed.error);
    proto_result_t only_out = {.stdout_data = (char *) "partial\n"};
    ck_assert_ptr_eq(proto_result_reason(&only_out), only_out.stdout_data);
    proto_result_t nothing = {0};
    ck_assert_ptr_null(proto_result_reason(&nothing));
}
END_TEST

/* Every test defined above is recorded (tests/ztest.h): a forgotten one
   would silently never run. Reads this file from the source tree. */
/* A "tasks" message's seq and a heartbeat's seen (docs/protocol.md
   10.1, "Heartbeats compared"): both optional (an older peer sends
   neither: 0), written only when set, 1..2^53 - 1 and integral, read the
   same by the fast path as by cJSON; anything else refuses the frame. */
START_TEST(a_tasks_seq_and_a_heartbeats_seen_round_trip_and_are_bounded)
{
    static const char *const specs[] = {"{\"fn\":\"noop\"}"};
    int64_t ids[] = {4}, jobs[] = {2};
    int attempts[] = {1};
    char *text = proto_pipe_encode_tasks_out(&(proto_tasks_out_t){.n = 1,
                                                                  .ids = ids,
                                                                  .attempts = attempts,
                                                                  .jobs = jobs,
                                                                  .specs = specs,
                                                                  .seq = PROTO_MAX_SEQ});
    ck_assert_str_eq(text, "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":4,\"attempt\":1,"
                           "\"job\":2,\"spec\":{\"fn\":\"noop\"}}],\"seq\":9007199254740991}");
    ck_assert_int_le((int) strlen("{\"v\":1,\"type\":\"tasks\",\"tasks\":[],\"seq\":"
                                  "9007199254740991}"),
                     PROTO_PIPE_ENVELOPE);
    proto_pipe_t *fast = pf_tasks(text, strlen(text));
    ck_assert_msg(fast != NULL, "fast path declined %s", text);
    ck_assert(fast->seq == PROTO_MAX_SEQ);
    proto_err_t err;
    proto_pipe_t *slow = pr_pipe_decode_tree(text, strlen(text), &err);
    ck_assert_ptr_nonnull(slow);
    ck_assert(slow->seq == PROTO_MAX_SEQ);
    char *again = proto_pipe_encode(slow);
    ck_assert_str_eq(again, text);
    free(again);
    free(text);
    proto_pipe_destroy(&fast);
    proto_pipe_destroy(&slow);
    /* None: not written, and read as 0. */
    text = proto_pipe_encode_tasks_out(&(proto_tasks_out_t){
        .n = 1, .ids = ids, .attempts = attempts, .jobs = jobs, .specs = specs});
    ck_assert_ptr_null(strstr(text, "seq"));
    slow = proto_pipe_decode(text, strlen(text), &err);
    ck_assert_ptr_nonnull(slow);
    ck_assert(slow->seq == 0);
    proto_pipe_destroy(&slow);
    free(text);

    static const char *const bad[] = {"0", "-1", "1.5", "9007199254740992", "1e300", "\"7\"",
                                      "true", "[]"};
    char frame[256];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(frame, sizeof frame,
                 "{\"v\":1,\"type\":\"tasks\",\"tasks\":[{\"id\":1,\"attempt\":1,\"job\":1,"
                 "\"spec\":{\"fn\":\"f\"}}],\"seq\":%s}",
                 bad[i]);
        ck_assert_msg(pf_tasks(frame, strlen(frame)) == NULL, "fast path took seq %s", bad[i]);
        REFUSED(CH_PIPE, frame, PROTO_E_FIELD, "\"seq\"");
        snprintf(frame, sizeof frame,
                 "{\"v\":1,\"type\":\"heartbeat\",\"worker\":\"w\",\"running\":[],\"seen\":%s}",
                 bad[i]);
        REFUSED(CH_REPORT, frame, PROTO_E_FIELD, "\"seen\"");
    }
    s_accepted(CH_PIPE, 0, "{\"v\":1,\"type\":\"tasks\",\"tasks\":[],\"seq\":null}");
    s_accepted(CH_PIPE, 0, "{\"v\":1,\"type\":\"tasks\",\"tasks\":[],\"seq\":3.0}");

    proto_report_t *m = proto_report_new(PROTO_REP_HEARTBEAT, "w1");
    m->seen = 12;
    text = proto_report_encode(m);
    ck_assert_str_eq(text, "{\"v\":1,\"type\":\"heartbeat\",\"worker\":\"w1\",\"running\":[],"
                           "\"seen\":12}");
    proto_report_t *g = proto_report_decode(text, strlen(text), &err);
    ck_assert_ptr_nonnull(g);
    ck_assert(g->seen == 12);
    proto_report_destroy(&g);
    free(text);
    m->seen = 0;   /* none: left out, as an older worker sends it */
    text = proto_report_encode(m);
    ck_assert_ptr_null(strstr(text, "seen"));
    g = proto_report_decode(text, strlen(text), &err);
    ck_assert_ptr_nonnull(g);
    ck_assert(g->seen == 0);
    proto_report_destroy(&g);
    free(text);
    proto_report_destroy(&m);
}
END_TEST

START_TEST(every_test_is_registered)
{
    char path[4096];
    const char *src = getenv("ZTASK_SRC_DIR");
    snprintf(path, sizeof path, "%s/" __FILE__, src ? src : ".");
    if (zt_check_recorded(path) < 0)
        printf("SKIP: every_test_is_registered: %s not readable\n", path);
}
END_TEST

/* The requests and records that steer jobs (retry is in
   every_request_type_round_trips): hold/release, priority, limit, show,
   running, a first batch's max_running and definition, a hello's
   functions; the records carry held, max_running, definition, the start
   of a task on a worker, and a submit's no_worker. */
START_TEST(steering_requests_and_their_records_round_trip)
{
    proto_req_t *r = proto_req_new(PROTO_REQ_HOLD), *g;
    r->job = 4;
    r->index = 2;
    g = s_req_round_trip(r);
    ck_assert(g->job == 4 && g->index == 2);
    proto_req_destroy(&g);
    r->type = PROTO_REQ_RELEASE;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->type, PROTO_REQ_RELEASE);
    proto_req_destroy(&g);
    proto_req_destroy(&r);

    r = proto_req_new(PROTO_REQ_PRIORITY);
    r->job = 4;
    r->priority = -7;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->priority, -7);
    proto_req_destroy(&g);
    proto_req_destroy(&r);

    r = proto_req_new(PROTO_REQ_LIMIT);
    r->job = 4;
    r->max_running = 50;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->max_running, 50);
    proto_req_destroy(&g);
    proto_req_destroy(&r);

    r = proto_req_new(PROTO_REQ_TASKS);
    r->worker = strdup("w3");
    r->all = true;
    g = s_req_round_trip(r);
    ck_assert(g->all && strcmp(g->worker, "w3") == 0 && g->job == 0);
    proto_req_destroy(&g);
    proto_req_destroy(&r);

    r = proto_req_new(PROTO_REQ_SUBMIT);
    r->max_running = 3;
    r->definition = strdup("{\"argv\":[\"submit\"],\"user\":\"ana\"}");
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->max_running, 3);
    ck_assert_str_eq(g->definition, r->definition);
    proto_req_destroy(&g);
    proto_req_destroy(&r);

    r = proto_req_new(PROTO_REQ_HELLO);
    r->host = strdup("h");
    r->threads = 1;
    r->functions = calloc(3, sizeof *r->functions);
    r->functions[0] = strdup("square");
    r->functions[1] = strdup("wordcount");
    r->nfunctions = 2;
    g = s_req_round_trip(r);
    ck_assert_int_eq(g->nfunctions, 2);
    ck_assert_str_eq(g->functions[1], "wordcount");
    proto_req_destroy(&g);
    proto_req_destroy(&r);

    REFUSED(CH_REQ, "{\"v\":1,\"type\":\"limit\",\"job\":1}", PROTO_E_FIELD, "max_running");
    REFUSED(CH_REQ, "{\"v\":1,\"type\":\"limit\",\"job\":1,\"max_running\":-1}", PROTO_E_FIELD,
            "max_running");
    REFUSED(CH_REQ, "{\"v\":1,\"type\":\"priority\",\"job\":1,\"priority\":3e10}", PROTO_E_FIELD,
            "priority");
    REFUSED(CH_REQ, "{\"v\":1,\"type\":\"hold\"}", PROTO_E_FIELD, "job");
    REFUSED(CH_REQ, "{\"v\":1,\"type\":\"submit\",\"definition\":[1]}", PROTO_E_FIELD,
            "definition");
    REFUSED(CH_REQ, "{\"v\":1,\"type\":\"retry\",\"job\":1,\"indexes\":[-1]}", PROTO_E_FIELD,
            "indexes");

    proto_reply_t *rep = proto_reply_new(true), *got;
    rep->jobs = calloc(1, sizeof *rep->jobs);
    rep->njobs = 1;
    rep->jobs[0].id = 9;
    rep->jobs[0].held = true;
    rep->jobs[0].max_running = 2;
    rep->jobs[0].definition = strdup("{\"user\":\"ana\"}");
    rep->jobs[0].first_spec = strdup("{\"argv\":[\"x\"]}");
    got = s_reply_round_trip(rep, PROTO_REQ_SHOW);
    ck_assert(got->jobs[0].held && got->jobs[0].max_running == 2);
    ck_assert_str_eq(got->jobs[0].first_spec, "{\"argv\":[\"x\"]}");
    proto_reply_destroy(&got);
    proto_reply_destroy(&rep);

    rep = proto_reply_new(true);
    rep->tasks = calloc(1, sizeof *rep->tasks);
    rep->ntasks = 1;
    rep->tasks[0].task = 5;
    rep->tasks[0].index = 1;
    rep->tasks[0].status = PROTO_ST_RUNNING;
    rep->tasks[0].attempts = 2;
    rep->tasks[0].started = 1700000000.25;
    got = s_reply_round_trip(rep, PROTO_REQ_TASKS);
    ck_assert(got->tasks[0].started == 1700000000.25 && !got->tasks[0].result);
    proto_reply_destroy(&got);
    proto_reply_destroy(&rep);

    /* waiting: the queued tasks with why, and whether the list stopped. */
    r = proto_req_new(PROTO_REQ_WAITING);
    r->job = 12;
    g = s_req_round_trip(r);
    ck_assert(g->type == PROTO_REQ_WAITING && g->job == 12 && !g->all);
    proto_req_destroy(&g);
    proto_req_destroy(&r);
    rep = proto_reply_new(true);
    rep->tasks = calloc(2, sizeof *rep->tasks);
    rep->ntasks = 2;
    rep->truncated = true;
    rep->tasks[0] = (proto_task_info_t){.task = 5, .job = 2, .index = 0,
                                        .status = PROTO_ST_QUEUED, .wait = PROTO_WAIT_READY,
                                        .reason = strdup("ready: 3 ahead of it"),
                                        .priority = -4, .ahead = 3};
    rep->tasks[1] = (proto_task_info_t){.task = 6, .job = 2, .index = 1, .held = true,
                                        .status = PROTO_ST_QUEUED, .wait = PROTO_WAIT_HELD,
                                        .reason = strdup("held: ztask release 2")};
    got = s_reply_round_trip(rep, PROTO_REQ_WAITING);
    ck_assert(got->truncated && got->ntasks == 2);
    ck_assert(got->tasks[0].wait == PROTO_WAIT_READY && got->tasks[0].ahead == 3
              && got->tasks[0].priority == -4);
    ck_assert_str_eq(got->tasks[0].reason, "ready: 3 ahead of it");
    ck_assert(got->tasks[1].wait == PROTO_WAIT_HELD && got->tasks[1].held);
    proto_reply_destroy(&got);
    proto_reply_destroy(&rep);
    /* Every wait has a name that reads back as itself. */
    for (int w = PROTO_WAIT_HELD; w <= PROTO_WAIT_COMMIT; w++) {
        proto_wait_t back = PROTO_WAIT_NONE;
        ck_assert_ptr_nonnull(proto_wait_name((proto_wait_t) w));
        ck_assert_int_eq(proto_wait_parse(proto_wait_name((proto_wait_t) w), &back), 0);
        ck_assert_int_eq(back, w);
    }
    ck_assert_str_eq(proto_wait_name(PROTO_WAIT_COMMIT), "commit");
    /* A wait a newer master names and this build does not know is taken
       as PROTO_WAIT_OTHER with its name kept (the words say the rest):
       the list still shows, and --json writes the name back as it came. */
    proto_err_t perr;
    const char *later = "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"tasks\":[{\"task\":1,"
                        "\"status\":\"queued\",\"wait\":\"bored_2\",\"reason\":\"x\"}]}";
    got = proto_reply_decode(later, strlen(later), PROTO_REQ_WAITING, &perr);
    ck_assert_msg(got != NULL, "an unknown wait name refused: %s", perr.message);
    ck_assert(got->ntasks == 1 && got->tasks[0].wait == PROTO_WAIT_OTHER);
    ck_assert_str_eq(got->tasks[0].wait_other, "bored_2");
    ck_assert_str_eq(got->tasks[0].reason, "x");
    rep = s_reply_round_trip(got, PROTO_REQ_WAITING);
    ck_assert(rep->tasks[0].wait == PROTO_WAIT_OTHER);
    ck_assert_str_eq(rep->tasks[0].wait_other, "bored_2");
    proto_reply_destroy(&rep);
    proto_reply_destroy(&got);
    ck_assert_int_eq(proto_wait_parse("bored_2", &(proto_wait_t){0}), -1);
    ck_assert_ptr_null(proto_wait_name(PROTO_WAIT_OTHER));
    /* Not a word: refused, as a wait that is no string. */
    s_refused_as(CH_REPLY, PROTO_REQ_WAITING, "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"tasks\":[{\"task\":1,"
            "\"status\":\"queued\",\"wait\":\"Bored now!\",\"reason\":\"x\"}]}", PROTO_E_FIELD, "wait");
    s_refused_as(CH_REPLY, PROTO_REQ_WAITING, "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"tasks\":[{\"task\":1,"
            "\"status\":\"queued\",\"wait\":\"\",\"reason\":\"x\"}]}", PROTO_E_FIELD, "wait");
    s_refused_as(CH_REPLY, PROTO_REQ_WAITING, "{\"v\":1,\"type\":\"reply\",\"ok\":true,\"tasks\":[{\"task\":1,"
            "\"status\":\"queued\",\"wait\":7,\"reason\":\"x\"}]}", PROTO_E_FIELD, "wait");
    char words[256];
    proto_need_words(words, sizeof words, "exec:gpu;cpus=2");
    ck_assert_str_eq(words, "a worker that runs commands, labelled gpu with cpus=2");

    rep = proto_reply_new(true);
    rep->job = 3;
    rep->no_worker = calloc(2, sizeof *rep->no_worker);
    rep->no_worker[0] = strdup("fn=wordcount");
    rep->nno_worker = 1;
    got = s_reply_round_trip(rep, PROTO_REQ_SUBMIT);
    ck_assert_int_eq(got->nno_worker, 1);
    ck_assert_str_eq(got->no_worker[0], "fn=wordcount");
    proto_reply_destroy(&got);
    proto_reply_destroy(&rep);
}
END_TEST

/* A result made from raw output: `n` bytes of a mix that escaping and
   repair blow up (control bytes, bad bytes, a split character, quotes)
   plus a valid multi-byte character, more than one encoding slice. */
static char *s_raw_mix(size_t n)
{
    static const char pat[] = "\x01\xff" "a\"\\\n\xe2\x82\xac" "\xe2\x82" "b\x00" "\xf0\x9f\x98\x80";
    char *raw = malloc(n + 1);
    ck_assert_ptr_nonnull(raw);
    for (size_t i = 0; i < n; i++)
        raw[i] = pat[i % (sizeof pat - 1)];
    return raw;
}

static proto_result_t *s_raw_result(size_t nout, bool b64, bool release)
{
    proto_result_t *res = proto_result_new();
    res->task = 7;
    res->attempt = 2;
    res->status = PROTO_ST_DONE;
    res->has_exit_code = true;
    res->started = 1764410400.25;
    res->finished = 1764410401.5;
    res->stdout_raw = s_raw_mix(nout);
    res->stdout_raw_len = nout;
    res->stderr_raw = strdup("err\n");
    res->stderr_raw_len = 4;
    res->raw_b64 = b64;
    res->raw_release = release;
    return res;
}

START_TEST(raw_output_encodes_to_what_the_master_stores_plain_or_base64)
{
    /* The old way: repaired copies, then the encoder. */
    size_t sizes[] = {0, 1, 2, 3, 100, 3 * 262144 + 5, 2 * 3 * 262144 + 1};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        proto_result_t *old = s_raw_result(n, false, false);
        old->stdout_data = utf8_sanitize(old->stdout_raw, n, NULL);
        old->stderr_data = strdup("err\n");
        free(old->stdout_raw);
        free(old->stderr_raw);
        old->stdout_raw = old->stderr_raw = NULL;
        char *want = proto_result_encode(old);

        /* Plain from raw: the same text, byte for byte. */
        proto_result_t *plain = s_raw_result(n, false, true);
        char *got = proto_result_encode(plain);
        ck_assert_str_eq(got, want);
        free(got);

        /* Base64 where shorter: at most 4/3 of the bytes plus the rest,
           and what the master decodes and stores is the same text. */
        proto_result_t *b = s_raw_result(n, true, true);
        size_t len = 0, plain_len = 0;
        char *buf = proto_result_encode_at(b, 16, &len, &plain_len);
        char *text = buf + 16;
        ck_assert_uint_eq(strlen(text), len);
        ck_assert_msg(len <= (n + 2) / 3 * 4 + 300, "%zu bytes for %zu raw", len, n);
        ck_assert(n < 3 || strstr(text, "\"stdout_b64\":\"") != NULL);
        ck_assert(strstr(text, "\"stderr\":\"err\\n\"") != NULL);   /* short: plain */
        proto_err_t err;
        proto_result_t *dec = proto_result_decode(text, len, &err);
        ck_assert_msg(dec != NULL, "%s", err.message);
        char *stored = proto_result_encode(dec);
        ck_assert_str_eq(stored, want);
        /* The encoder's figure for what the master stores is exact. */
        ck_assert_uint_eq(plain_len, strlen(want));
        free(stored);
        proto_result_destroy(&dec);
        free(buf);
        proto_result_destroy(&b);
        proto_result_destroy(&plain);
        free(want);
        proto_result_destroy(&old);
    }
    /* Bad base64 is a field error. */
    proto_err_t err;
    const char *bad = "{\"task\":1,\"attempt\":1,\"status\":\"done\",\"stdout_b64\":\"AB=C\","
                      "\"started\":1,\"finished\":2}";
    ck_assert_ptr_null(proto_result_decode(bad, strlen(bad), &err));
    ck_assert_str_eq(err.code, PROTO_E_FIELD);
    /* Base64 that would be over a report once stored as JSON (6 MiB of
       0x01: 36 MiB escaped; a worker cuts it first) is dropped: the
       result is kept, failed, and says why. */
    proto_result_t *big = s_raw_result(0, true, false);
    free(big->stdout_raw);
    big->stdout_raw_len = 6 << 20;
    big->stdout_raw = calloc(1, big->stdout_raw_len);
    memset(big->stdout_raw, 1, big->stdout_raw_len);
    char *text = proto_result_encode(big);
    proto_result_t *dec = proto_result_decode(text, strlen(text), &err);
    ck_assert_msg(dec != NULL, "%s", err.message);
    ck_assert(dec->output_dropped && dec->stdout_truncated);
    ck_assert_int_eq(dec->status, PROTO_ST_FAILED);
    ck_assert_ptr_null(dec->stdout_data);
    ck_assert_str_eq(dec->stderr_data, "err\n");
    ck_assert_ptr_nonnull(strstr(dec->error, "stdout was dropped"));
    proto_result_destroy(&dec);
    free(text);
    /* A result that had its own error keeps it after the drop's: why
       the task failed is not lost with its output. */
    big->status = PROTO_ST_FAILED;
    big->error = strdup("the command exited with status 3");
    text = proto_result_encode(big);
    dec = proto_result_decode(text, strlen(text), &err);
    ck_assert_msg(dec != NULL, "%s", err.message);
    ck_assert(dec->output_dropped);
    ck_assert_int_eq(dec->status, PROTO_ST_FAILED);
    ck_assert_msg(strstr(dec->error, "stdout was dropped")
                      && strstr(dec->error, "the command exited with status 3"),
                  "error: %s", dec->error);
    proto_result_destroy(&dec);
    free(text);
    proto_result_destroy(&big);
}
END_TEST

START_TEST(base64_outputs_of_one_report_are_bounded_as_stored_all_together)
{
    /* Six results of 1.5 MiB of 0x01 each, as base64: 2 MiB each on the
       wire (a 12 MiB report), each well under the limit for one result,
       but 9 MiB each once stored (\u0001): 54 MiB for the report. The
       master keeps the outputs while they fit the report limit (three:
       27 MiB) and fails the rest with an error that says why; it never
       holds more output from one report than a report may carry. */
    enum { N = 6 };
    const size_t n = (size_t) 3 << 19;
    proto_report_t *rep = proto_report_new(PROTO_REP_RESULTS, "w1");
    rep->results = calloc(N, sizeof *rep->results);
    ck_assert_ptr_nonnull(rep->results);
    for (int i = 0; i < N; i++) {
        proto_result_t *r = s_raw_result(0, true, false);
        r->task = i + 1;
        free(r->stdout_raw);
        r->stdout_raw = malloc(n);
        ck_assert_ptr_nonnull(r->stdout_raw);
        memset(r->stdout_raw, 1, n);
        r->stdout_raw_len = n;
        rep->results[rep->nresults++] = r;
    }
    char *text = proto_report_encode(rep);
    proto_report_destroy(&rep);
    size_t len = strlen(text);
    ck_assert_uint_lt(len, PROTO_MAX_REPORT_MSG / 2);
    proto_err_t err;
    proto_report_t *dec = proto_report_decode(text, len, &err);
    free(text);
    ck_assert_msg(dec != NULL, "%s", err.message);
    ck_assert_int_eq(dec->nresults, N);
    size_t stored = 0;
    for (int i = 0; i < N; i++) {
        proto_result_t *r = dec->results[i];
        ck_assert_int_eq(r->task, i + 1);
        char *t = proto_result_encode(r);
        stored += strlen(t);
        free(t);
        /* Every result is there; only the first three keep their output. */
        ck_assert_str_eq(r->stderr_data, "err\n");
        if (i < 3) {
            ck_assert_int_eq(r->status, PROTO_ST_DONE);
            ck_assert(!r->output_dropped);
            ck_assert_uint_eq(strlen(r->stdout_data), n);
        } else {
            ck_assert_msg(r->status == PROTO_ST_FAILED, "task %d kept its output", i + 1);
            ck_assert(r->output_dropped && r->stdout_truncated);
            ck_assert_ptr_null(r->stdout_data);
            ck_assert_ptr_null(r->result_json);
            ck_assert_ptr_nonnull(strstr(r->error, "stdout was dropped"));
            ck_assert_ptr_nonnull(strstr(r->error, "33554432"));
        }
    }
    ck_assert_uint_le(stored, PROTO_MAX_REPORT_MSG + N * 1024);
    proto_report_destroy(&dec);
}
END_TEST

START_TEST(repair_in_place_matches_a_repaired_copy)
{
    /* utf8_sanitize_take grows the buffer once and repairs it in place:
       the same text as utf8_sanitize, for valid, bad and mixed bytes. */
    const char *cases[] = {"", "abc", "\xff", "\xff\xff\xff", "a\xff" "b", "\xe2\x82",
                           "\xf0\x9f\x98\x80\x80x", "\x01\xff" "a\"\\\n\xe2\x82\xac" "\xe2\x82" "b"};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        size_t n = strlen(cases[k]);
        size_t want_len, got_len;
        char *want = utf8_sanitize(cases[k], n, &want_len);
        char *buf = malloc(n + 1);
        ck_assert_ptr_nonnull(buf);
        memcpy(buf, cases[k], n);
        char *got = utf8_sanitize_take(buf, n, &got_len);
        ck_assert_uint_eq(got_len, want_len);
        ck_assert_mem_eq(got, want, want_len + 1);
        free(got);
        free(want);
    }
    /* With NUL bytes and every byte value, past a slice. */
    size_t n = 70000;
    char *raw = s_raw_mix(n);
    for (size_t i = 0; i < n; i += 7)
        raw[i] = (char) (i & 0xff);
    size_t want_len, got_len;
    char *want = malloc(3 * n + 1);
    ck_assert_ptr_nonnull(want);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq_len((const unsigned char *) raw + i, n - i);
        if (k) {
            memcpy(want + o, raw + i, k);
            o += k;
            i += k;
        } else {
            memcpy(want + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    want[o] = '\0';
    want_len = o;
    char *got = utf8_sanitize_take(raw, n, &got_len);
    ck_assert_uint_eq(got_len, want_len);
    ck_assert_mem_eq(got, want, want_len + 1);
    free(got);
    free(want);
}
END_TEST

START_TEST(raw_output_too_big_as_plain_json_is_cut_as_it_always_was)
{
    /* 100 KB of 0x01: 600 KB as JSON, over a 200 KB limit: each stream
       is cut to 1000 bytes once repaired, on a character. */
    proto_result_t *res = proto_result_new();
    res->task = 1;
    res->attempt = 1;
    res->stdout_raw = malloc(100000);
    memset(res->stdout_raw, 1, 100000);
    res->stdout_raw_len = 100000;
    res->stderr_raw = malloc(1000);
    for (int i = 0; i < 1000; i++)
        res->stderr_raw[i] = (char) 0xff;   /* 3000 bytes once repaired */
    res->stderr_raw_len = 1000;
    ck_assert(proto_result_cut_raw(res, 200000, 1000));
    ck_assert_uint_eq(res->stdout_raw_len, 1000);
    ck_assert_uint_eq(res->stderr_raw_len, 333);   /* 999 bytes of U+FFFD */
    ck_assert(res->stdout_truncated && res->stderr_truncated);
    ck_assert(!proto_result_cut_raw(res, 200000, 1000));
    proto_result_destroy(&res);
}
END_TEST

START_TEST(raw_output_split_into_slices_keeps_a_character_before_a_stray_byte)
{
    /* Plain raw output is written a slice (768 KiB) at a time, each
       slice ending where a character starts. Here a 4-byte character
       ends just before the slice's end and a stray continuation byte
       sits on it: four continuation bytes in a row, of which only the
       last belongs to no character. The text must be what repairing the
       whole gives: the emoji, then one U+FFFD. */
    const size_t slice = (size_t) 3 << 18, n = 2 * slice;
    for (int release = 0; release < 2; release++) {
        proto_result_t *res = s_raw_result(0, false, release);
        free(res->stdout_raw);
        res->stdout_raw = malloc(n);
        ck_assert_ptr_nonnull(res->stdout_raw);
        memset(res->stdout_raw, 'a', n);
        memcpy(res->stdout_raw + slice - 4, "\xf0\x9f\x98\x80\x80", 5);
        res->stdout_raw_len = n;
        char *clean = utf8_sanitize(res->stdout_raw, n, NULL);
        char *got = proto_result_encode(res);
        ck_assert_ptr_nonnull(strstr(got, "aaaa\xf0\x9f\x98\x80\xef\xbf\xbd" "aaaa"));
        proto_err_t err;
        proto_result_t *dec = proto_result_decode(got, strlen(got), &err);
        ck_assert_msg(dec != NULL, "%s", err.message);
        ck_assert_str_eq(dec->stdout_data, clean);
        proto_result_destroy(&dec);
        free(got);
        free(clean);
        proto_result_destroy(&res);
    }
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "proto", .tcase = "core", .timeout_s = 60 });
}
