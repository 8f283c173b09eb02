/*  Task specs: decode with strict validation, normalized encode, copy.
    Also the task state names, which every record uses. */
#include "proto_hooks.h"
#include "proto_reader.h"
#include "proto_text.h"
#include "proto_writer.h"

#include "../common/util.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Labels a spec may require; generous, but it bounds the matching work
   the master does per task and worker. */
#define PROTO_MAX_LABELS 256

static const char *const s_state_names[] = {
    [PROTO_ST_QUEUED] = "queued",   [PROTO_ST_ASSIGNED] = "assigned",
    [PROTO_ST_RUNNING] = "running", [PROTO_ST_DONE] = "done",
    [PROTO_ST_FAILED] = "failed",   [PROTO_ST_CANCELLED] = "cancelled",
    [PROTO_ST_DEP_FAILED] = "dep_failed",
};

static const char *const s_dep_kind_names[] = {
    [PROTO_DEP_OK] = "ok", [PROTO_DEP_ANY] = "any", [PROTO_DEP_EACH] = "each"};

const char *proto_dep_kind_name(proto_dep_kind_t kind)
{
    if (kind < PROTO_DEP_OK || kind > PROTO_DEP_EACH)
        return NULL;
    return s_dep_kind_names[kind];
}

const char *proto_state_name(proto_state_t st)
{
    if ((int) st < 0 || (size_t) st >= sizeof s_state_names / sizeof *s_state_names)
        return "unknown";
    return s_state_names[st];
}

int proto_state_parse(const char *name, proto_state_t *st)
{
    if (!name)
        return -1;
    for (size_t i = 0; i < sizeof s_state_names / sizeof *s_state_names; i++) {
        if (strcmp(name, s_state_names[i]) == 0) {
            *st = (proto_state_t) i;
            return 0;
        }
    }
    return -1;
}

/* ---------------------------------------------------------------- decode */

/* Every field a spec may carry, in the normalized encoding order. */
static const char *const s_fields[] = {
    "argv",  "shell",   "fn",       "args", "stdin", "env",     "cwd",
    "timeout", "retries", "priority", "name", "index", "require", "output_cap",
    "time_request",
    "stdout_file", "stderr_file", "capture", "resources",
};
#define NFIELDS (sizeof s_fields / sizeof *s_fields)

/* Unknown fields are an error in a spec, so a typo ("timout") cannot
   silently drop a user's setting; duplicates too, since which of two
   values a parser keeps is not something a user should have to know. */
static int s_check_fields(const cJSON *o, proto_err_t *err)
{
    unsigned seen = 0;
    for (const cJSON *c = o->child; c; c = c->next) {
        size_t i = 0;
        while (i < NFIELDS && strcmp(c->string, s_fields[i]) != 0)
            i++;
        if (i == NFIELDS) {
            proto_err_set(err, PROTO_E_FIELD, "unknown field \"%.64s\" in task spec", c->string);
            return -1;
        }
        if (seen & (1u << i)) {
            proto_err_set(err, PROTO_E_FIELD, "field \"%s\" given twice in task spec", s_fields[i]);
            return -1;
        }
        seen |= 1u << i;
    }
    return 0;
}

static int s_cmp_env_key(const void *a, const void *b)
{
    const char *x = *(const char *const *) a, *y = *(const char *const *) b;
    return strcmp(x, y);
}

static int s_env_from(cJSON *o, proto_spec_t *spec, proto_err_t *err)
{
    cJSON *env = pj_get(o, "env");
    if (!env)
        return 0;
    if (!cJSON_IsObject(env)) {
        proto_err_set(err, PROTO_E_FIELD, "field \"env\" must be an object of strings");
        return -1;
    }
    int n = cJSON_GetArraySize(env);
    if (n == 0)
        return 0;
    spec->env = xcalloc((size_t) n + 1, sizeof *spec->env);
    for (cJSON *c = env->child; c; c = c->next) {
        const char *key = c->string;
        if (!*key || strchr(key, '=')) {
            proto_err_set(err, PROTO_E_FIELD,
                          "field \"env\": variable name \"%.64s\" must be non-empty without '='",
                          key);
            return -1;
        }
        if (!cJSON_IsString(c) || !c->valuestring) {
            proto_err_set(err, PROTO_E_FIELD, "field \"env\": value of \"%.64s\" must be a string",
                          key);
            return -1;
        }
        spec->env[spec->envc++] = xasprintf("%s=%s", key, c->valuestring);
    }
    /* Duplicate names: sort a scratch copy of the keys (n log n; env
       objects can be large). */
    const char **keys = xcalloc((size_t) n, sizeof *keys);
    int i = 0;
    for (const cJSON *c = env->child; c; c = c->next)
        keys[i++] = c->string;
    qsort(keys, (size_t) n, sizeof *keys, s_cmp_env_key);
    for (i = 1; i < n; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            proto_err_set(err, PROTO_E_FIELD, "field \"env\": variable \"%.64s\" given twice",
                          keys[i]);
            free(keys);
            return -1;
        }
    }
    free(keys);
    return 0;
}

int ps_resources_from(const cJSON *o, const char *k, res_set_t **out, proto_err_t *err)
{
    *out = NULL;
    const cJSON *obj = pj_get(o, k);
    if (!obj)
        return 0;
    if (!cJSON_IsObject(obj)) {
        proto_err_set(err, PROTO_E_FIELD, "field \"%s\" must be an object of amounts", k);
        return -1;
    }
    res_set_t *set = xcalloc(1, sizeof *set);
    for (const cJSON *c = obj->child; c; c = c->next) {
        char text[64], why[200];
        int64_t amount;
        if (!res_name_ok(c->string)) {
            proto_err_set(err, PROTO_E_FIELD,
                          "field \"%s\": \"%.40s\" is not a resource name (letters, digits, "
                          "'_', '-', at most %d bytes)",
                          k, c->string, RES_NAME_MAX);
            goto fail;
        }
        /* The number as text, so JSON and the command line read amounts
           alike (gpus 0.5, whole numbers elsewhere). */
        if (!cJSON_IsNumber(c) || !isfinite(c->valuedouble) || c->valuedouble < 0
            || c->valuedouble > 1e15) {
            proto_err_set(err, PROTO_E_FIELD, "field \"%s\": \"%s\" must be a number >= 0", k,
                          c->string);
            goto fail;
        }
        snprintf(text, sizeof text, "%.3f", c->valuedouble);
        if (strcmp(c->string, "gpus") != 0) {
            if (c->valuedouble != (double) (int64_t) c->valuedouble) {
                proto_err_set(err, PROTO_E_FIELD, "field \"%s\": \"%s\" must be a whole number",
                              k, c->string);
                goto fail;
            }
            snprintf(text, sizeof text, "%lld", (long long) c->valuedouble);
        } else {
            /* "0.500" -> "0.5"; "2.000" -> "2" (res_amount_parse's forms). */
            char *end = text + strlen(text);
            while (end[-1] == '0')
                *--end = '\0';
            if (end[-1] == '.')
                end[-1] = '\0';
        }
        if (res_get(set, c->string) != 0 || res_amount_parse(c->string, text, &amount, why,
                                                              sizeof why) != 0) {
            proto_err_set(err, PROTO_E_FIELD, "field \"%s\": %s", k,
                          res_get(set, c->string) ? "a resource given twice" : why);
            goto fail;
        }
        if (res_set(set, c->string, amount) != 0) {
            proto_err_set(err, PROTO_E_FIELD, "field \"%s\": more than %d resources", k, RES_MAX);
            goto fail;
        }
    }
    if (set->n == 0)
        free(set);
    else
        *out = set;
    return 0;
fail:
    free(set);
    return -1;
}

void ps_resources_write(pb_t *b, const char *k, const res_set_t *set)
{
    if (!set)
        return;
    pb_key(b, k);
    pb_char(b, '{');
    for (int i = 0; i < set->n; i++) {
        char amount[32];
        res_amount_format(set->name[i], set->amount[i], amount, sizeof amount);
        pb_sep(b);
        pb_cstr(b, set->name[i]);
        pb_char(b, ':');
        pb_raw(b, amount, strlen(amount));
    }
    pb_char(b, '}');
}

proto_spec_t *proto_spec_new(proto_kind_t kind)
{
    assert(kind == 0 || kind == PROTO_KIND_EXEC || kind == PROTO_KIND_FN);
    proto_spec_t *spec = xcalloc(1, sizeof *spec);
    spec->kind = kind;
    spec->index = -1;
    spec->output_cap = PROTO_DEFAULT_OUTPUT_CAP;
    return spec;
}

proto_spec_t *ps_spec_from(cJSON *o, proto_err_t *err)
{
    if (!cJSON_IsObject(o)) {
        proto_err_set(err, PROTO_E_FIELD, "task spec must be a JSON object");
        return NULL;
    }
    if (s_check_fields(o, err) != 0)
        return NULL;
    proto_spec_t *spec = proto_spec_new(0);

    const char *given[3];
    int ngiven = 0;
    if (pj_get(o, "argv"))
        given[ngiven++] = "argv";
    if (pj_get(o, "shell"))
        given[ngiven++] = "shell";
    if (pj_get(o, "fn"))
        given[ngiven++] = "fn";
    if (ngiven == 0) {
        proto_err_set(err, PROTO_E_FIELD, "task spec needs one of \"argv\", \"shell\" or \"fn\"");
        goto fail;
    }
    if (ngiven > 1) {
        proto_err_set(err, PROTO_E_FIELD,
                      "fields \"%s\" and \"%s\" cannot be combined: a task spec has exactly one "
                      "of \"argv\", \"shell\" or \"fn\"",
                      given[0], given[1]);
        goto fail;
    }
    if (pj_get(o, "args") && !pj_get(o, "fn")) {
        proto_err_set(err, PROTO_E_FIELD, "field \"args\" is only allowed with \"fn\"");
        goto fail;
    }

    if (pj_get(o, "argv")) {
        spec->kind = PROTO_KIND_EXEC;
        if (pj_str_array(o, "argv", true, INT32_MAX - 1, 0, 0, &spec->argv, &spec->argc, err) != 0)
            goto fail;
        if (spec->argc == 0) {
            proto_err_set(err, PROTO_E_FIELD, "field \"argv\" must not be empty");
            goto fail;
        }
        if (!spec->argv[0][0]) {
            proto_err_set(err, PROTO_E_FIELD, "field \"argv\": the program name must not be empty");
            goto fail;
        }
    } else if (pj_get(o, "shell")) {
        spec->kind = PROTO_KIND_EXEC;
        if (pj_str(o, "shell", true, 1, 0, &spec->shell, err) != 0)
            goto fail;
    } else {
        spec->kind = PROTO_KIND_FN;
        if (pj_str(o, "fn", true, 1, PROTO_MAX_NAME, &spec->fn, err) != 0
            || pj_json(o, "args", &spec->args_json, err) != 0)
            goto fail;
    }
    if (pj_str(o, "stdin", false, 0, 0, &spec->stdin_data, err) != 0)
        goto fail;
    if (spec->stdin_data)
        spec->stdin_len = strlen(spec->stdin_data);
    if (s_env_from(o, spec, err) != 0
        || pj_str(o, "cwd", false, 1, 0, &spec->cwd, err) != 0
        || pj_dbl(o, "timeout", false, 0, PROTO_MAX_TIMEOUT, &spec->timeout, err) != 0
        || pj_int(o, "retries", false, 0, 100, &spec->retries, err) != 0)
        goto fail;
    {
        int prio = 0;
        if (pj_int(o, "priority", false, INT32_MIN, INT32_MAX, &prio, err) != 0)
            goto fail;
        spec->priority = prio;
    }
    if (pj_str(o, "name", false, 1, PROTO_MAX_NAME, &spec->name, err) != 0
        || pj_i64(o, "index", false, 0, PJ_MAX_SAFE_INT, &spec->index, err) != 0
        || pj_str_array(o, "require", false, PROTO_MAX_LABELS, 1, PROTO_MAX_NAME, &spec->require,
                        &spec->nrequire, err) != 0
        || pj_i64(o, "output_cap", false, 1, PROTO_MAX_OUTPUT_CAP, &spec->output_cap, err) != 0
        || pj_dbl(o, "time_request", false, 0, PROTO_MAX_TIMEOUT, &spec->time_request, err) != 0
        || pj_str(o, "stdout_file", false, 1, PROTO_MAX_PATH, &spec->stdout_file, err) != 0
        || pj_str(o, "stderr_file", false, 1, PROTO_MAX_PATH, &spec->stderr_file, err) != 0
        || ps_resources_from(o, "resources", &spec->resources, err) != 0)
        goto fail;
    bool capture = true;
    if (pj_bool(o, "capture", false, &capture, err) != 0)
        goto fail;
    spec->no_capture = !capture;
    if ((spec->stdout_file || spec->stderr_file || spec->no_capture)
        && spec->kind != PROTO_KIND_EXEC) {
        proto_err_set(err, PROTO_E_FIELD,
                      "fields \"stdout_file\", \"stderr_file\" and \"capture\" are for "
                      "commands (\"argv\" or \"shell\"): a function has no output streams");
        goto fail;
    }
    const char *const files[] = {spec->stdout_file, spec->stderr_file};
    for (int i = 0; i < 2; i++) {
        char *p = files[i] ? proto_spec_path(files[i], 1, 1, 1, 1, err) : NULL;
        if (files[i] && !p) {
            pj_err_prefix(err, "field \"%s\"", i ? "stderr_file" : "stdout_file");
            goto fail;
        }
        free(p);
    }
    return spec;
fail:
    proto_spec_destroy(&spec);
    return NULL;
}

proto_spec_t *proto_spec_decode(const char *json, size_t len, proto_err_t *err)
{
    cJSON *root = pj_parse(json, len, PROTO_MAX_API_MSG, err);
    if (!root)
        return NULL;
    proto_spec_t *spec = ps_spec_from(root, err);
    cJSON_Delete(root);
    return spec;
}

/* ---------------------------------------------------------------- encode */

/* Normalized form: fields in s_fields order, defaults left out, so equal
   specs have equal texts and stored specs stay small. */
void ps_spec_write(pb_t *b, const proto_spec_t *spec)
{
    pb_char(b, '{');
    if (spec->argv) {
        pb_key(b, "argv");
        pb_strv(b, spec->argv, spec->argc);
    } else if (spec->shell) {
        pb_kstr(b, "shell", spec->shell);
    } else {
        pb_kstr(b, "fn", spec->fn ? spec->fn : "");
        if (spec->args_json) {
            pb_key(b, "args");
            pb_json(b, spec->args_json);
        }
    }
    if (spec->stdin_data) {
        pb_key(b, "stdin");
        pb_str(b, spec->stdin_data, spec->stdin_len);
    }
    if (spec->env && spec->envc > 0) {
        pb_key(b, "env");
        pb_char(b, '{');
        for (int i = 0; i < spec->envc; i++) {
            const char *kv = spec->env[i];
            const char *eq = strchr(kv, '=');
            size_t klen = eq ? (size_t) (eq - kv) : strlen(kv);
            pb_sep(b);
            pb_str(b, kv, klen);
            pb_char(b, ':');
            pb_cstr(b, eq ? eq + 1 : "");
        }
        pb_char(b, '}');
    }
    if (spec->cwd)
        pb_kstr(b, "cwd", spec->cwd);
    if (spec->timeout != 0)
        pb_kdbl(b, "timeout", spec->timeout);
    if (spec->retries != 0)
        pb_ki64(b, "retries", spec->retries);
    if (spec->priority != 0)
        pb_ki64(b, "priority", spec->priority);
    if (spec->name)
        pb_kstr(b, "name", spec->name);
    if (spec->index >= 0)
        pb_ki64(b, "index", spec->index);
    if (spec->require && spec->nrequire > 0) {
        pb_key(b, "require");
        pb_strv(b, spec->require, spec->nrequire);
    }
    if (spec->output_cap != PROTO_DEFAULT_OUTPUT_CAP)
        pb_ki64(b, "output_cap", spec->output_cap);
    if (spec->time_request != 0)
        pb_kdbl(b, "time_request", spec->time_request);
    if (spec->stdout_file)
        pb_kstr(b, "stdout_file", spec->stdout_file);
    if (spec->stderr_file)
        pb_kstr(b, "stderr_file", spec->stderr_file);
    if (spec->no_capture)
        pb_kbool(b, "capture", false);
    ps_resources_write(b, "resources", spec->resources);
    pb_char(b, '}');
}

char *proto_spec_encode(const proto_spec_t *spec)
{
    if (!spec)
        return NULL;
    pb_t b;
    pb_init(&b, 256);
    ps_spec_write(&b, spec);
    return pb_take(&b);
}

/* ---------------------------------------------------------------- copy */

proto_spec_t *proto_spec_dup(const proto_spec_t *spec)
{
    if (!spec)
        return NULL;
    proto_spec_t *d = xcalloc(1, sizeof *d);
    *d = *spec;
    d->argv = pu_strv_dup(spec->argv, spec->argc);
    d->argc = d->argv ? spec->argc : 0;
    d->shell = xstrdup(spec->shell);
    d->fn = xstrdup(spec->fn);
    d->args_json = xstrdup(spec->args_json);
    if (spec->stdin_data) {
        d->stdin_data = xmalloc(spec->stdin_len + 1);
        memcpy(d->stdin_data, spec->stdin_data, spec->stdin_len);
        d->stdin_data[spec->stdin_len] = '\0';
    }
    d->env = pu_strv_dup(spec->env, spec->envc);
    d->envc = d->env ? spec->envc : 0;
    d->cwd = xstrdup(spec->cwd);
    d->name = xstrdup(spec->name);
    d->require = pu_strv_dup(spec->require, spec->nrequire);
    d->nrequire = d->require ? spec->nrequire : 0;
    if (spec->resources) {
        d->resources = xmalloc(sizeof *d->resources);
        *d->resources = *spec->resources;
    }
    d->stdout_file = xstrdup(spec->stdout_file);
    d->stderr_file = xstrdup(spec->stderr_file);
    return d;
}

void proto_spec_destroy(proto_spec_t **p)
{
    if (!p || !*p)
        return;
    proto_spec_t *s = *p;
    pu_strv_free(s->argv, s->argc);
    free(s->shell);
    free(s->fn);
    free(s->args_json);
    free(s->stdin_data);
    pu_strv_free(s->env, s->envc);
    free(s->cwd);
    free(s->name);
    pu_strv_free(s->require, s->nrequire);
    free(s->resources);
    free(s->stdout_file);
    free(s->stderr_file);
    free(s);
    *p = NULL;
}

char *proto_spec_path(const char *pattern, int64_t job, int64_t index, int64_t task, int attempt,
                      proto_err_t *err)
{
    static const char *const names[] = {"job", "index", "task", "attempt"};
    const int64_t values[] = {job, index >= 0 ? index : task, task, attempt};
    pb_t b;
    pb_init(&b, strlen(pattern) + 32);
    for (const char *p = pattern; *p;) {
        if (p[0] != '%' || p[1] != '{') {
            pb_char(&b, *p++);
            continue;
        }
        const char *end = strchr(p, '}');
        size_t k = 0, len = end ? (size_t) (end - p - 2) : 0;
        while (k < 4 && !(end && strlen(names[k]) == len && strncmp(p + 2, names[k], len) == 0))
            k++;
        if (k == 4) {
            proto_err_set(err, PROTO_E_FIELD,
                          "unknown placeholder \"%.32s\": use %%{job}, %%{index}, %%{task} or "
                          "%%{attempt}",
                          p);
            free(pb_take(&b));
            return NULL;
        }
        char num[24];
        int n = snprintf(num, sizeof num, "%lld", (long long) values[k]);
        pb_raw(&b, num, (size_t) n);
        p = end + 1;
    }
    return pb_take(&b);
}
