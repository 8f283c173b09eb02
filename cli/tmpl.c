#include "tmpl.h"

#include "../common/util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tmpl {
    proto_spec_t *base;
    cJSON *args;            /* parsed base->args_json when it holds "{}", else NULL */
    bool has_placeholder;
};

char *tmpl_subst(const char *text, const char *value)
{
    size_t vlen = strlen(value);
    size_t n = 0;
    for (const char *p = strstr(text, "{}"); p; p = strstr(p + 2, "{}"))
        n++;
    size_t tlen = strlen(text);
    char *out = xmalloc(tlen + n * vlen + 1); /* n * 2 bytes of "{}" go away */
    char *o = out;
    const char *s = text;
    for (const char *p = strstr(s, "{}"); p; p = strstr(s, "{}")) {
        memcpy(o, s, (size_t) (p - s));
        o += p - s;
        memcpy(o, value, vlen);
        o += vlen;
        s = p + 2;
    }
    strcpy(o, s);
    return out;
}

static bool s_has(const char *text)
{
    return text && strstr(text, "{}");
}

static bool s_json_has(const cJSON *node)
{
    if (cJSON_IsString(node))
        return s_has(node->valuestring);
    for (const cJSON *c = node->child; c; c = c->next)
        if (s_json_has(c))
            return true;
    return false;
}

static void s_oom(void)
{
    fprintf(stderr, "ztask: out of memory\n");
    abort();
}

/* Replaces "{}" in node and every string value below it, in place (keys
   are left alone). */
static void s_json_subst(cJSON *node, const char *value)
{
    if (cJSON_IsString(node)) {
        if (s_has(node->valuestring)) {
            char *s = tmpl_subst(node->valuestring, value);
            if (!cJSON_SetValuestring(node, s))
                s_oom();
            free(s);
        }
        return;
    }
    for (cJSON *c = node->child; c; c = c->next)
        s_json_subst(c, value);
}

tmpl_t *tmpl_new(proto_spec_t **base, char *err, size_t errlen)
{
    proto_spec_t *spec = *base;
    *base = NULL;
    char *text = proto_spec_encode(spec);
    proto_err_t perr = { { 0 }, { 0 } };
    proto_spec_t *check = text ? proto_spec_decode(text, strlen(text), &perr) : NULL;
    free(text);
    if (!check) {
        snprintf(err, errlen, "%s", perr.message[0] ? perr.message : "the task spec is invalid");
        proto_spec_destroy(&spec);
        return NULL;
    }
    proto_spec_destroy(&check);

    tmpl_t *self = xcalloc(1, sizeof *self);
    self->base = spec;
    for (int i = 0; i < spec->argc; i++)
        if (s_has(spec->argv[i]))
            self->has_placeholder = true;
    if (s_has(spec->shell))
        self->has_placeholder = true;
    if (spec->args_json) {
        cJSON *args = cJSON_ParseWithLength(spec->args_json, strlen(spec->args_json));
        if (args && s_json_has(args)) {
            self->args = args;
            self->has_placeholder = true;
        } else {
            cJSON_Delete(args);
        }
    }
    return self;
}

void tmpl_destroy(tmpl_t **p)
{
    if (!p || !*p)
        return;
    tmpl_t *self = *p;
    proto_spec_destroy(&self->base);
    cJSON_Delete(self->args);
    free(self);
    *p = NULL;
}

bool tmpl_has_placeholder(const tmpl_t *self)
{
    return self->has_placeholder;
}

bool tmpl_can_append(const tmpl_t *self)
{
    return self->has_placeholder || self->base->kind == PROTO_KIND_EXEC
           || !self->base->args_json;
}

const proto_spec_t *tmpl_base(const tmpl_t *self)
{
    return self->base;
}

static void s_set_args(proto_spec_t *spec, cJSON *tree)
{
    char *printed = cJSON_PrintUnformatted(tree);
    if (!printed)
        s_oom();
    free(spec->args_json);
    spec->args_json = xstrdup(printed); /* the spec frees with free() */
    cJSON_free(printed);
}

proto_spec_t *tmpl_expand(const tmpl_t *self, const char *value, int64_t index, tmpl_mode_t mode)
{
    proto_spec_t *spec = proto_spec_dup(self->base);
    if (!spec)
        s_oom();
    if (index >= 0)
        spec->index = index;
    if (!value)
        return spec;
    if (self->has_placeholder) {
        for (int i = 0; i < spec->argc; i++) {
            if (s_has(spec->argv[i])) {
                char *s = tmpl_subst(spec->argv[i], value);
                free(spec->argv[i]);
                spec->argv[i] = s;
            }
        }
        if (s_has(spec->shell)) {
            char *s = tmpl_subst(spec->shell, value);
            free(spec->shell);
            spec->shell = s;
        }
        if (self->args) {
            cJSON *tree = cJSON_Duplicate(self->args, true);
            if (!tree)
                s_oom();
            s_json_subst(tree, value);
            s_set_args(spec, tree);
            cJSON_Delete(tree);
        }
        return spec;
    }
    if (mode != TMPL_REPLACE_OR_APPEND)
        return spec;
    if (spec->argv) {
        spec->argv = xrealloc(spec->argv, (size_t) (spec->argc + 2) * sizeof(char *));
        spec->argv[spec->argc++] = xstrdup(value);
        spec->argv[spec->argc] = NULL;
    } else if (spec->shell) {
        char *s = xasprintf("%s %s", spec->shell, value);
        free(spec->shell);
        spec->shell = s;
    } else if (spec->kind == PROTO_KIND_FN && !spec->args_json) {
        cJSON *str = cJSON_CreateString(value);
        if (!str)
            s_oom();
        s_set_args(spec, str);
        cJSON_Delete(str);
    }
    return spec;
}
