#include "specopt.h"

#include "../common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void specopt_init(specopt_t *self)
{
    memset(self, 0, sizeof *self);
}

static void s_free_list(char **list, int n)
{
    for (int i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

void specopt_clear(specopt_t *self)
{
    free(self->cwd);
    free(self->stdin_data);
    free(self->stdout_file);
    free(self->stderr_file);
    s_free_list(self->env, self->envc);
    s_free_list(self->require, self->nrequire);
    memset(self, 0, sizeof *self);
}

bool specopt_any(const specopt_t *self)
{
    return self->has_timeout || self->has_retries || self->has_priority || self->has_output_cap
           || self->has_time_request || self->cwd || self->stdin_data || self->envc
           || self->nrequire || self->stdout_file || self->stderr_file || self->no_capture
           || self->resources.n;
}

/* Index of the "KEY=..." entry with the same key as kv in list, or -1. */
static int s_env_find(char **list, int n, const char *kv)
{
    size_t klen = (size_t) (strchr(kv, '=') - kv);
    for (int i = 0; i < n; i++)
        if (strncmp(list[i], kv, klen) == 0 && list[i][klen] == '=')
            return i;
    return -1;
}

/* Adds kv to a NULL-terminated list, replacing an entry with the same key. */
static void s_env_put(char ***list, int *n, const char *kv)
{
    int i = s_env_find(*list, *n, kv);
    if (i >= 0) {
        free((*list)[i]);
        (*list)[i] = xstrdup(kv);
        return;
    }
    *list = xrealloc(*list, (size_t) (*n + 2) * sizeof(char *));
    (*list)[(*n)++] = xstrdup(kv);
    (*list)[*n] = NULL;
}

static void s_label_put(char ***list, int *n, const char *label)
{
    for (int i = 0; i < *n; i++)
        if (strcmp((*list)[i], label) == 0)
            return;
    *list = xrealloc(*list, (size_t) (*n + 2) * sizeof(char *));
    (*list)[(*n)++] = xstrdup(label);
    (*list)[*n] = NULL;
}

int specopt_add_env(specopt_t *self, const char *kv, char *err, size_t errlen)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        snprintf(err, errlen, "--env wants KEY=VALUE, got \"%s\"", kv);
        return -1;
    }
    s_env_put(&self->env, &self->envc, kv);
    return 0;
}

void specopt_add_require(specopt_t *self, const char *label)
{
    s_label_put(&self->require, &self->nrequire, label);
}

int specopt_add_resource(specopt_t *self, const char *name, const char *text, char *err,
                         size_t errlen)
{
    int64_t amount;
    if (!res_name_ok(name)) {
        snprintf(err, errlen,
                 "'%s' is not a resource name (letters, digits, '_', '-'; %d bytes at most)", name,
                 RES_NAME_MAX);
        return -1;
    }
    if (res_amount_parse(name, text, &amount, err, errlen) != 0)
        return -1;
    if (res_set(&self->resources, name, amount) != 0) {
        snprintf(err, errlen, "more than %d resources", RES_MAX);
        return -1;
    }
    return 0;
}

void specopt_apply(const specopt_t *self, proto_spec_t *spec)
{
    if (self->has_timeout)
        spec->timeout = self->timeout;
    if (self->has_retries)
        spec->retries = self->retries;
    if (self->has_priority)
        spec->priority = self->priority;
    if (self->has_output_cap)
        spec->output_cap = self->output_cap;
    if (self->has_time_request)
        spec->time_request = self->time_request;
    if (self->cwd) {
        free(spec->cwd);
        spec->cwd = xstrdup(self->cwd);
    }
    if (self->stdin_data) {
        free(spec->stdin_data);
        spec->stdin_data = xstrndup(self->stdin_data, self->stdin_len);
        spec->stdin_len = self->stdin_len;
    }
    if (self->stdout_file) {
        free(spec->stdout_file);
        spec->stdout_file = xstrdup(self->stdout_file);
    }
    if (self->stderr_file) {
        free(spec->stderr_file);
        spec->stderr_file = xstrdup(self->stderr_file);
    }
    if (self->no_capture)
        spec->no_capture = true;
    for (int i = 0; i < self->envc; i++)
        s_env_put(&spec->env, &spec->envc, self->env[i]);
    for (int i = 0; i < self->nrequire; i++)
        s_label_put(&spec->require, &spec->nrequire, self->require[i]);
    if (self->resources.n && !spec->resources)
        spec->resources = xcalloc(1, sizeof *spec->resources);
    for (int i = 0; i < self->resources.n; i++)
        res_set(spec->resources, self->resources.name[i], self->resources.amount[i]);
}
