#include "config.h"

#include "keys.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key;
    char *value;
    int line;
} entry_t;

struct config {
    char *origin;       /* the file name, for messages */
    char *dir;          /* its directory, for relative paths; NULL = cwd */
    entry_t *entries;
    size_t n, cap;
    char where[4200];   /* config_where's buffer */
};

static const char *const s_known[] = {
    "master", "curve-secret", "master-key", "request-timeout", "threads",
    "name",   "labels",       "plugin",     "allow-exec",      "run-as",
    "task-rlimit", "state-dir", "allow-env", NULL
};

bool config_key_known(const char *key)
{
    for (int i = 0; key && s_known[i]; i++)
        if (strcmp(s_known[i], key) == 0)
            return true;
    return false;
}

static bool s_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static const entry_t *s_find(const config_t *self, const char *key)
{
    for (size_t i = 0; self && i < self->n; i++)
        if (strcmp(self->entries[i].key, key) == 0)
            return &self->entries[i];
    return NULL;
}

/* Parses one line [p, end) (no '\n'). 0, or -1 with err filled. */
static int s_line(config_t *self, const char *p, const char *end, int lineno, char *err,
                  size_t errlen)
{
    while (p < end && s_blank(*p))
        p++;
    while (end > p && s_blank(end[-1]))
        end--;
    if (p == end || *p == '#')
        return 0;
    const char *eq = memchr(p, '=', (size_t) (end - p));
    if (!eq) {
        snprintf(err, errlen, "%s:%d: expected 'key = value'", self->origin, lineno);
        return -1;
    }
    const char *kend = eq;
    while (kend > p && s_blank(kend[-1]))
        kend--;
    const char *v = eq + 1;
    while (v < end && s_blank(*v))
        v++;
    if (kend == p) {
        snprintf(err, errlen, "%s:%d: a setting needs a key before '='", self->origin, lineno);
        return -1;
    }
    char *key = xstrndup(p, (size_t) (kend - p));
    if (!config_key_known(key)) {
        snprintf(err, errlen,
                 "%s:%d: unknown key '%.64s' (known: master, curve-secret, master-key, "
                 "request-timeout, threads, name, labels, plugin, allow-exec, run-as, "
                 "task-rlimit, state-dir, allow-env)",
                 self->origin, lineno, key);
        free(key);
        return -1;
    }
    const entry_t *prev = s_find(self, key);
    if (prev) {
        snprintf(err, errlen, "%s:%d: '%s' is already set on line %d", self->origin, lineno, key,
                 prev->line);
        free(key);
        return -1;
    }
    size_t vlen = (size_t) (end - v);
    if (vlen >= 1 && *v == '"') {
        if (vlen < 2 || v[vlen - 1] != '"') {
            snprintf(err, errlen, "%s:%d: '%s': unterminated quote", self->origin, lineno, key);
            free(key);
            return -1;
        }
        v++;
        vlen -= 2;
    }
    if (vlen == 0) {
        snprintf(err, errlen, "%s:%d: '%s' has no value", self->origin, lineno, key);
        free(key);
        return -1;
    }
    if (self->n == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 8;
        self->entries = xrealloc(self->entries, self->cap * sizeof *self->entries);
    }
    self->entries[self->n++] = (entry_t) { key, xstrndup(v, vlen), lineno };
    return 0;
}

config_t *config_parse(const char *text, size_t len, const char *origin, char *err,
                       size_t errlen)
{
    config_t *self = xcalloc(1, sizeof *self);
    self->origin = xstrdup(origin ? origin : "<config>");
    if (origin) {
        const char *slash = strrchr(origin, '/');
        if (slash)
            self->dir = xstrndup(origin, slash == origin ? 1 : (size_t) (slash - origin));
    }
    if (!text && len) {
        snprintf(err, errlen, "%s: no text", self->origin);
        config_destroy(&self);
        return NULL;
    }
    const char *p = text, *end = text + len;
    int lineno = 0;
    while (p < end) {
        lineno++;
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        const char *lend = nl ? nl : end;
        if (memchr(p, '\0', (size_t) (lend - p))) {
            snprintf(err, errlen, "%s:%d: NUL byte (is this a text file?)", self->origin, lineno);
            config_destroy(&self);
            return NULL;
        }
        if (!utf8_valid(p, (size_t) (lend - p))) {
            snprintf(err, errlen, "%s:%d: not valid UTF-8", self->origin, lineno);
            config_destroy(&self);
            return NULL;
        }
        if (s_line(self, p, lend, lineno, err, errlen) != 0) {
            config_destroy(&self);
            return NULL;
        }
        p = nl ? nl + 1 : end;
    }
    return self;
}

config_t *config_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
        return NULL;
    }
    /* One byte more than allowed, to tell "exactly the limit" from "more". */
    char *buf = xmalloc(CONFIG_MAX_BYTES + 1);
    size_t len = fread(buf, 1, CONFIG_MAX_BYTES + 1, f);
    bool failed = ferror(f) != 0;
    int saved = errno;
    fclose(f);
    config_t *self = NULL;
    if (failed)
        snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(saved));
    else if (len > CONFIG_MAX_BYTES)
        snprintf(err, errlen, "config file %s is larger than %d bytes", path, CONFIG_MAX_BYTES);
    else
        self = config_parse(buf, len, path, err, errlen);
    free(buf);
    return self;
}

/* True when path names something that exists (a missing default file is
   not an error; an unreadable one is, reported by config_load). */
static bool s_exists(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f) {
        fclose(f);
        return true;
    }
    return errno != ENOENT && errno != ENOTDIR;
}

/* True when config_load failed for want of reading the file (not for
   what it holds). */
static bool s_unreadable(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    char c;
    bool failed = fread(&c, 1, 1, f) == 0 && ferror(f);
    fclose(f);
    return failed;
}

int config_load_default(config_t **out, char *err, size_t errlen, char *warn, size_t warnlen)
{
    *out = NULL;
    if (warn && warnlen)
        warn[0] = '\0';
    const char *env = getenv("ZTASK_CONFIG");
    if (env && *env) {
        *out = config_load(env, err, errlen);
        if (!*out && !s_exists(env)) {
            /* Say where the name came from: the user may not remember. */
            size_t n = strlen(err);
            if (n + 1 < errlen)
                snprintf(err + n, errlen - n, " (named by ZTASK_CONFIG)");
        }
        return *out ? 0 : -1;
    }
    char *candidates[2] = { NULL, NULL };
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    if (xdg && *xdg == '/')
        candidates[0] = xasprintf("%s/ztask/config", xdg);
    else if (home && *home)
        candidates[0] = xasprintf("%s/.config/ztask/config", home);
    candidates[1] = xstrdup("/etc/ztask/config");
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (!candidates[i] || !s_exists(candidates[i]))
            continue;
        *out = config_load(candidates[i], err, errlen);
        rc = *out ? 0 : -1;
        if (rc != 0 && i == 0 && warn && s_unreadable(candidates[i])) {
            snprintf(warn, warnlen, "%s; skipped", err);
            rc = 0;
            continue;
        }
        break;
    }
    free(candidates[0]);
    free(candidates[1]);
    return rc;
}

void config_destroy(config_t **p)
{
    if (!p || !*p)
        return;
    config_t *self = *p;
    for (size_t i = 0; i < self->n; i++) {
        free(self->entries[i].key);
        free(self->entries[i].value);
    }
    free(self->entries);
    free(self->origin);
    free(self->dir);
    free(self);
    *p = NULL;
}

const char *config_get(const config_t *self, const char *key)
{
    const entry_t *e = s_find(self, key);
    return e ? e->value : NULL;
}

char *config_join(const config_t *self, const char *path)
{
    if (path[0] == '/' || !self || !self->dir)
        return xstrdup(path);
    if (strcmp(self->dir, "/") == 0)
        return xasprintf("/%s", path);
    return xasprintf("%s/%s", self->dir, path);
}

char *config_path(const config_t *self, const char *key)
{
    const char *v = config_get(self, key);
    return v ? config_join(self, v) : NULL;
}

const char *config_where(config_t *self, const char *key)
{
    const entry_t *e = s_find(self, key);
    if (!e)
        return "";
    snprintf(self->where, sizeof self->where, "%.4000s:%d", self->origin, e->line);
    return self->where;
}

const char *config_pick(const char *flag, const char *env_name, const config_t *cfg,
                        const char *key, config_from_t *from)
{
    config_from_t f = CONFIG_FROM_DEFAULT;
    const char *v = NULL;
    const char *env = env_name ? getenv(env_name) : NULL;
    if (flag) {
        v = flag;
        f = CONFIG_FROM_FLAG;
    } else if (env && *env) {
        v = env;
        f = CONFIG_FROM_ENV;
    } else if ((v = config_get(cfg, key)) != NULL) {
        f = CONFIG_FROM_FILE;
    }
    if (from)
        *from = f;
    return v;
}

const char *config_origin(config_t *self, config_from_t from, const char *flag,
                          const char *env, const char *key)
{
    switch (from) {
    case CONFIG_FROM_FLAG: return flag;
    case CONFIG_FROM_ENV: return env;
    case CONFIG_FROM_FILE: return config_where(self, key);
    default: return "default";
    }
}

char *config_pick_path(const char *flag, const char *env_name, const config_t *cfg,
                       const char *key, config_from_t *from)
{
    config_from_t f;
    const char *v = config_pick(flag, env_name, cfg, key, &f);
    if (from)
        *from = f;
    if (!v)
        return NULL;
    return f == CONFIG_FROM_FILE ? config_join(cfg, v) : xstrdup(v);
}

int config_pick_curve(config_t *cfg, const char *flag_secret, const char *flag_master_key,
                      config_curve_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    config_from_t sfrom, kfrom;
    out->secret = config_pick_path(flag_secret, "ZTASK_CURVE_SECRET", cfg, "curve-secret",
                                   &sfrom);
    /* The master's key is a path only when it is not the key itself. */
    const char *mkey = config_pick(flag_master_key, "ZTASK_MASTER_KEY", cfg, "master-key",
                                   &kfrom);
    if (mkey)
        out->master_key = kfrom == CONFIG_FROM_FILE && !keys_valid_z85(mkey)
                              ? config_join(cfg, mkey)
                              : xstrdup(mkey);
    if (out->secret)
        out->secret_from = xstrdup(
            config_origin(cfg, sfrom, "--curve-secret", "ZTASK_CURVE_SECRET", "curve-secret"));
    if (out->master_key)
        out->master_key_from = xstrdup(
            config_origin(cfg, kfrom, "--master-key", "ZTASK_MASTER_KEY", "master-key"));
    if (!out->secret == !out->master_key)
        return 0;
    snprintf(err, errlen, "%s is set (from %s) but %s is not",
             out->secret ? "curve-secret" : "master-key",
             out->secret ? out->secret_from : out->master_key_from,
             out->secret ? "master-key" : "curve-secret");
    return -1;
}

void config_curve_clear(config_curve_t *c)
{
    free(c->secret);
    free(c->master_key);
    free(c->secret_from);
    free(c->master_key_from);
    memset(c, 0, sizeof *c);
}
