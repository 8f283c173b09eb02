/*  fn: the function registry and fn_run (see fn.h).

    The registry is a small array searched linearly: a worker has a handful
    of functions, and a strcmp per entry costs nothing next to a task. It
    is written only before the pool starts, so fn_run reads it unlocked.
*/
#include "fn.h"

#include "fn_builtins.h"

#include "../common/clock.h"
#include "../common/util.h"

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A plugin table with more entries than this is taken as missing its
   {NULL, NULL} end rather than read forever. */
#define FN_MAX_PLUGIN_FUNCTIONS 10000

/* Errors are one line for logs and the CLI; a function that returns a
   whole report as its error is cut here. */
#define FN_MAX_ERROR 4096

/* The "this worker has: ..." list in an unknown-function error is cut
   near this length. */
#define FN_MAX_NAMES_IN_ERROR 800

typedef struct {
    char *name;
    ztask_fn_t fn;
    char *origin;  /* plugin path, or NULL for built-ins and fn_registry_add */
} fn_entry_t;

typedef struct {
    char *path;
    void *handle;
} fn_plugin_t;

struct fn_registry {
    fn_entry_t *fns;
    size_t nfns, capfns;
    fn_plugin_t *plugins;
    size_t nplugins, capplugins;
};

/* What cancelled() looks at: the worker's cancel flag and the deadline. */
typedef struct {
    const atomic_bool *cancel;
    int64_t deadline_ms;  /* CLOCK_MONOTONIC ms; 0 = no timeout */
} fn_ctx_t;

static void s_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const fn_entry_t *s_find(const fn_registry_t *self, const char *name)
{
    for (size_t i = 0; i < self->nfns; i++)
        if (strcmp(self->fns[i].name, name) == 0)
            return &self->fns[i];
    return NULL;
}

static void s_push(fn_registry_t *self, const char *name, ztask_fn_t fn, const char *origin)
{
    if (self->nfns == self->capfns) {
        self->capfns = self->capfns ? self->capfns * 2 : 16;
        self->fns = xrealloc(self->fns, self->capfns * sizeof *self->fns);
    }
    self->fns[self->nfns++] = (fn_entry_t){xstrdup(name), fn, xstrdup(origin)};
}

/* Why name cannot be a function name, or NULL when it can. Names travel
   in specs and error messages, so they obey the protocol's name rules. */
static const char *s_bad_name(const char *name)
{
    if (!name || !*name)
        return "an empty name";
    size_t len = strnlen(name, PROTO_MAX_NAME);
    if (len >= PROTO_MAX_NAME)
        return "a name too long";
    if (!utf8_valid(name, len))
        return "a name that is not UTF-8";
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) name[i] < 0x20 || name[i] == 0x7f)
            return "a name with control characters";
    return NULL;
}

/* Where an existing function came from, for a duplicate-name error. */
static const char *s_origin(const fn_entry_t *e)
{
    return e->origin ? e->origin : "built-in";
}

fn_registry_t *fn_registry_new(void)
{
    fn_registry_t *self = xcalloc(1, sizeof *self);
    for (const ztask_fn_entry_t *b = fn_builtins(); b->name; b++)
        s_push(self, b->name, b->fn, NULL);
    return self;
}

int fn_registry_add(fn_registry_t *self, const char *name, ztask_fn_t fn, char *err,
                    size_t errlen)
{
    if (!self || !fn) {
        s_err(err, errlen, "function '%s': no registry or no function", name ? name : "");
        return -1;
    }
    const char *why = s_bad_name(name);
    if (why) {
        s_err(err, errlen, "cannot add a function with %s", why);
        return -1;
    }
    const fn_entry_t *old = s_find(self, name);
    if (old) {
        s_err(err, errlen, "function '%s' already defined (%s)", name, s_origin(old));
        return -1;
    }
    s_push(self, name, fn, NULL);
    return 0;
}

/* Checks a plugin's table before any entry is added, so a plugin loads
   whole or not at all. Returns the number of functions, or -1. */
static int s_check_table(const fn_registry_t *self, const char *shown,
                         const ztask_fn_entry_t *table, char *err, size_t errlen)
{
    int n = 0;
    while (n < FN_MAX_PLUGIN_FUNCTIONS && table[n].name)
        n++;
    if (n == FN_MAX_PLUGIN_FUNCTIONS) {
        s_err(err, errlen, "plugin %s: function table has no {NULL, NULL} end within %d entries",
              shown, FN_MAX_PLUGIN_FUNCTIONS);
        return -1;
    }
    if (n == 0) {
        s_err(err, errlen, "plugin %s: defines no functions", shown);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *name = table[i].name;
        const char *why = s_bad_name(name);
        if (why) {
            s_err(err, errlen, "plugin %s: entry %d has %s", shown, i, why);
            return -1;
        }
        if (!table[i].fn) {
            s_err(err, errlen, "plugin %s: function '%s' has no code (NULL)", shown, name);
            return -1;
        }
        const fn_entry_t *old = s_find(self, name);
        if (old) {
            s_err(err, errlen, "plugin %s: function '%s' already defined (%s)", shown, name,
                  s_origin(old));
            return -1;
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(table[j].name, name) == 0) {
                s_err(err, errlen, "plugin %s: function '%s' defined twice in its table", shown,
                      name);
                return -1;
            }
        }
    }
    return n;
}

int fn_registry_load(fn_registry_t *self, const char *path, char *err, size_t errlen)
{
    if (!self || !path || !*path) {
        s_err(err, errlen, "plugin: no path given");
        return -1;
    }
    char *shown = utf8_sanitize(path, strlen(path), NULL);
    int rc = -1;
    void *handle = NULL;

    /* dlopen's message for a missing file is its own search's; a path
       with a slash is opened as is, so say plainly when it is not there.
       A bare name is searched for like any library (LD_LIBRARY_PATH...). */
    if (strchr(path, '/') && access(path, R_OK) != 0) {
        s_err(err, errlen, "plugin %s: cannot open: %s", shown, strerror(errno));
        goto done;
    }
    /* RTLD_NOW: an unresolved symbol fails here, not mid-task.
       RTLD_LOCAL: two plugins with equal internal names do not collide. */
    dlerror();
    handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = dlerror();
        s_err(err, errlen, "plugin %s: cannot load: %s", shown, why ? why : "unknown error");
        goto done;
    }
    dlerror();
    void *sym = dlsym(handle, "ztask_plugin_functions");
    if (!sym) {
        s_err(err, errlen, "plugin %s: not a ztask plugin (no symbol ztask_plugin_functions)",
              shown);
        goto done;
    }
    /* ISO C has no object-to-function pointer conversion; POSIX
       guarantees this copy works for dlsym results. */
    const ztask_fn_entry_t *(*get)(int *abi);
    memcpy(&get, &sym, sizeof get);
    int abi = -1;
    const ztask_fn_entry_t *table = get(&abi);
    if (abi != ZTASK_PLUGIN_ABI) {
        s_err(err, errlen, "plugin %s: plugin ABI %d, this worker supports ABI %d", shown, abi,
              ZTASK_PLUGIN_ABI);
        goto done;
    }
    if (!table) {
        s_err(err, errlen, "plugin %s: returned no function table", shown);
        goto done;
    }
    int n = s_check_table(self, shown, table, err, errlen);
    if (n < 0)
        goto done;

    for (int i = 0; i < n; i++)
        s_push(self, table[i].name, table[i].fn, path);
    if (self->nplugins == self->capplugins) {
        self->capplugins = self->capplugins ? self->capplugins * 2 : 4;
        self->plugins = xrealloc(self->plugins, self->capplugins * sizeof *self->plugins);
    }
    self->plugins[self->nplugins++] = (fn_plugin_t){xstrdup(path), handle};
    handle = NULL;
    rc = 0;
done:
    if (handle)
        dlclose(handle);
    free(shown);
    return rc;
}

bool fn_registry_has(const fn_registry_t *self, const char *name)
{
    return self && name && s_find(self, name) != NULL;
}

size_t fn_registry_count(const fn_registry_t *self)
{
    return self ? self->nfns : 0;
}

const char *fn_registry_name(const fn_registry_t *self, size_t i)
{
    return self && i < self->nfns ? self->fns[i].name : NULL;
}

char *fn_registry_names(const fn_registry_t *self)
{
    size_t len = 1;
    for (size_t i = 0; self && i < self->nfns; i++)
        len += strlen(self->fns[i].name) + 2;
    char *out = xmalloc(len);
    size_t o = 0;
    for (size_t i = 0; self && i < self->nfns; i++) {
        size_t n = strlen(self->fns[i].name);
        if (i) {
            memcpy(out + o, ", ", 2);
            o += 2;
        }
        memcpy(out + o, self->fns[i].name, n);
        o += n;
    }
    out[o] = '\0';
    return out;
}

void fn_registry_destroy(fn_registry_t **p)
{
    if (!p || !*p)
        return;
    fn_registry_t *self = *p;
    *p = NULL;
    for (size_t i = 0; i < self->nfns; i++) {
        free(self->fns[i].name);
        free(self->fns[i].origin);
    }
    free(self->fns);
    /* Reverse order, so a plugin that happens to use an earlier one's
       symbols never outlives it. */
    for (size_t i = self->nplugins; i-- > 0;) {
        dlclose(self->plugins[i].handle);
        free(self->plugins[i].path);
    }
    free(self->plugins);
    free(self);
}

/* ------------------------------------------------------------------------
   fn_run
   ------------------------------------------------------------------------ */

static int s_cancelled(const ztask_call_t *call)
{
    const fn_ctx_t *ctx = call->internal;
    if (ctx->cancel && atomic_load(ctx->cancel))
        return 1;
    if (ctx->deadline_ms && clock_mono_ms() >= ctx->deadline_ms)
        return 1;
    return 0;
}

/* "noop, echo, ..." cut at a name boundary near FN_MAX_NAMES_IN_ERROR. */
static char *s_names_for_error(const fn_registry_t *self)
{
    char *names = fn_registry_names(self);
    if (strlen(names) > FN_MAX_NAMES_IN_ERROR) {
        char *cut = names + FN_MAX_NAMES_IN_ERROR;
        while (cut > names && strncmp(cut, ", ", 2) != 0)
            cut--;
        strcpy(cut, ", ...");  /* ", ..." is no longer than what it replaces */
    }
    return names;
}

/* Validates a function's *result and stores its compact form; FAILED with
   a clear error when it is not one JSON value in UTF-8. */
static void s_take_result(proto_result_t *res, const char *name, const char *out)
{
    if (!out) {
        res->status = PROTO_ST_DONE;
        res->result_json = xstrdup("null");
        return;
    }
    size_t len = strnlen(out, (size_t) FN_MAX_RESULT + 1);
    if (len > FN_MAX_RESULT) {
        proto_result_fail(res, PROTO_ST_FAILED, "function '%s' returned a result over %d bytes",
                          name, FN_MAX_RESULT);
        return;
    }
    /* JSON text is UTF-8 (RFC 8259); cJSON copies string bytes unchecked,
       so check here or the master would refuse the whole report. */
    if (!utf8_valid(out, len)) {
        proto_result_fail(res, PROTO_ST_FAILED, "function '%s' returned invalid JSON (not UTF-8)",
                          name);
        return;
    }
    /* require_null_terminated: one value and only whitespace after it. */
    cJSON *json = cJSON_ParseWithOpts(out, NULL, true);
    /* Re-printing normalises what cJSON tolerates but JSON does not (a
       leading '+', raw control characters) and drops whitespace. */
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!text) {
        proto_result_fail(res, PROTO_ST_FAILED, "function '%s' returned invalid JSON", name);
        return;
    }
    res->status = PROTO_ST_DONE;
    res->result_json = xstrdup(text);
    cJSON_free(text);
}

int fn_run(const fn_registry_t *self, const proto_spec_t *spec, int64_t task_id,
           int64_t job_id, int attempt, const atomic_bool *cancel, proto_result_t *res)
{
    if (!res)
        return -1;
    proto_result_reset(res, task_id, attempt);
    res->started = clock_wall();
    res->finished = res->started;

    if (!self || !spec || spec->kind != PROTO_KIND_FN || !spec->fn) {
        proto_result_fail(res, PROTO_ST_FAILED, "not a function task");
        return -1;
    }
    const char *name = spec->fn;
    const fn_entry_t *entry = s_find(self, name);
    if (!entry) {
        char *names = s_names_for_error(self);
        proto_result_fail(res, PROTO_ST_FAILED, "unknown function '%.*s' (this worker has: %s)",
                          PROTO_MAX_NAME, name, names);
        free(names);
        return 0;
    }
    /* A cancel that came before the start: do not run at all. */
    if (cancel && atomic_load(cancel)) {
        proto_result_fail(res, PROTO_ST_CANCELLED, "cancelled before it started");
        return 0;
    }

    fn_ctx_t ctx = {.cancel = cancel,
                    .deadline_ms = clock_deadline_ms(clock_mono_ms(), spec->timeout)};
    ztask_call_t call = {
        .abi = ZTASK_PLUGIN_ABI,
        .task_id = task_id,
        .job_id = job_id,
        .index = spec->index,
        .attempt = attempt,
        .args_json = spec->args_json ? spec->args_json : "null",
        .cancelled = s_cancelled,
        .internal = &ctx,
    };
    char *out = NULL, *ferr = NULL;
    int rc = entry->fn(&call, &out, &ferr);
    res->finished = clock_wall();

    if (cancel && atomic_load(cancel)) {
        proto_result_fail(res, PROTO_ST_CANCELLED, "cancelled");
    } else if (ctx.deadline_ms && clock_mono_ms() >= ctx.deadline_ms) {
        proto_result_fail(res, PROTO_ST_FAILED, "function '%s' timed out after %gs", name,
                          spec->timeout);
        res->timed_out = true;
    } else if (rc != 0) {
        if (ferr)
            proto_result_fail(res, PROTO_ST_FAILED, "%.*s", FN_MAX_ERROR, ferr);
        else
            proto_result_fail(res, PROTO_ST_FAILED, "function '%s' failed (returned %d)", name, rc);
    } else {
        s_take_result(res, name, out);
    }
    free(out);
    free(ferr);
    return 0;
}
