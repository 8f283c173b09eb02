#include "allow.h"

#include "../common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct allow {
    char **entries;
    size_t n;
    char **env;      /* --allow-env names */
    size_t nenv;
};

static bool s_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits list into entries appended to *out (n counts them). -1 with err
   on a bad entry; what was appended so far is the caller's to free. */
static int s_split(const char *list, char ***out, size_t *n, char *err, size_t errlen)
{
    if (!list || !*list) {
        snprintf(err, errlen, "--allow-exec: expected a comma-separated list of programs");
        return -1;
    }
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && s_blank(*a))
            a++;
        while (b > a && s_blank(b[-1]))
            b--;
        if (a == b) {
            snprintf(err, errlen, "--allow-exec: empty entry in '%s'", list);
            return -1;
        }
        char *entry = xstrndup(a, (size_t) (b - a));
        if (strchr(entry, '/') && entry[0] != '/') {
            snprintf(err, errlen,
                     "--allow-exec: '%s' is neither an absolute path nor a bare program name",
                     entry);
            free(entry);
            return -1;
        }
        *out = xrealloc(*out, (*n + 1) * sizeof **out);
        (*out)[(*n)++] = entry;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static void s_free_entries(char **entries, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(entries[i]);
    free(entries);
}

allow_t *allow_parse(const char *list, char *err, size_t errlen)
{
    allow_t *self = xcalloc(1, sizeof *self);
    if (s_split(list, &self->entries, &self->n, err, errlen) != 0) {
        allow_destroy(&self);
        return NULL;
    }
    return self;
}

int allow_extend(allow_t *self, const char *list, char *err, size_t errlen)
{
    char **more = NULL;
    size_t n = 0;
    if (s_split(list, &more, &n, err, errlen) != 0) {
        s_free_entries(more, n);
        return -1;
    }
    self->entries = xrealloc(self->entries, (self->n + n) * sizeof *self->entries);
    memcpy(self->entries + self->n, more, n * sizeof *more);
    self->n += n;
    free(more);
    return 0;
}

static bool s_env_name(const char *s)
{
    if (!(*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')))
        return false;
    for (s++; *s; s++)
        if (!(*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
              (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

int allow_env_extend(allow_t *self, const char *list, char *err, size_t errlen)
{
    char *copy = xstrdup(list ? list : ""), *cursor = copy;
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    /* Blank items are skipped, as in every comma list of the options. */
    for (char *tok; (tok = list_next(&cursor));) {
        if (!s_env_name(tok)) {
            snprintf(err, errlen, "--allow-env: '%.64s' is not a variable name", tok);
            rc = -1;
            break;
        }
        names = xrealloc(names, (n + 1) * sizeof *names);
        names[n++] = xstrdup(tok);
    }
    free(copy);
    if (rc == 0 && !n) {
        snprintf(err, errlen, "--allow-env: expected a comma-separated list of variable names");
        rc = -1;
    }
    if (rc != 0) {
        s_free_entries(names, n);
        return -1;
    }
    self->env = xrealloc(self->env, (self->nenv + n) * sizeof *self->env);
    memcpy(self->env + self->nenv, names, n * sizeof *names);
    self->nenv += n;
    free(names);
    return 0;
}

size_t allow_count(const allow_t *self)
{
    return self ? self->n : 0;
}

static bool s_listed(const allow_t *self, const char *program)
{
    for (size_t i = 0; i < self->n; i++)
        if (strcmp(self->entries[i], program) == 0)
            return true;
    return false;
}

static bool s_env_listed(const allow_t *self, const char *name, size_t n)
{
    for (size_t i = 0; i < self->nenv; i++)
        if (strlen(self->env[i]) == n && strncmp(self->env[i], name, n) == 0)
            return true;
    return false;
}

/* The first variable of the task's env (from "NAME=value") that the list
   forbids, copied printable into name; NULL when none. *listed tells
   whether it was on --allow-env (LD_*, or PATH for a bare name). */
static const char *s_forbidden_env(const allow_t *self, const proto_spec_t *spec, bool bare,
                                   char *name, size_t namelen, bool *listed)
{
    for (int i = 0; spec->env && i < spec->envc; i++) {
        const char *e = spec->env[i];
        size_t n = strcspn(e, "=");
        bool ld = strncmp(e, "LD_", 3) == 0;
        bool path = bare && n == 4 && strncmp(e, "PATH", 4) == 0;
        bool ours = n > 6 && strncmp(e, "ZTASK_", 6) == 0;
        *listed = s_env_listed(self, e, n);
        if (ld || path || (!ours && !*listed)) {
            size_t k = 0;
            for (size_t j = 0; j < n && k + 1 < namelen && j < 64; j++) {
                unsigned char c = (unsigned char) e[j];
                name[k++] = c < 0x20 || c >= 0x7f ? '?' : (char) c;
            }
            name[k] = '\0';
            return name;
        }
    }
    return NULL;
}

int allow_check(const allow_t *self, const proto_spec_t *spec, char *why, size_t whylen)
{
    if (!self || !spec || spec->kind != PROTO_KIND_EXEC)
        return 0;
    const char *program = spec->shell ? "/bin/sh" : spec->argc > 0 ? spec->argv[0] : "";
    if (!s_listed(self, program)) {
        /* Program names come from the submitter: keep the message one
           short line of printable ASCII (a cut UTF-8 sequence would make
           the whole report invalid). */
        char shown[80];
        size_t n = 0;
        for (const unsigned char *c = (const unsigned char *) program; *c && n + 4 < sizeof shown;
             c++)
            shown[n++] = *c < 0x20 || *c >= 0x7f ? '?' : (char) *c;
        shown[n] = '\0';
        snprintf(why, whylen, "program '%s%s' is not in this worker's --allow-exec list%s", shown,
                 program[n] ? "..." : "",
                 spec->shell ? " (shell tasks run /bin/sh)" : "");
        return -1;
    }
    char name[80];
    bool bare = !spec->shell && !strchr(program, '/');
    bool listed = false;
    if (s_forbidden_env(self, spec, bare, name, sizeof name, &listed)) {
        if (strcmp(name, "PATH") == 0 && bare)
            snprintf(why, whylen,
                     "this worker runs only its --allow-exec programs, so a task may not set "
                     "PATH (give the program's absolute path)");
        else if (listed || strncmp(name, "LD_", 3) == 0)
            snprintf(why, whylen,
                     "this worker runs only its --allow-exec programs, so a task may not set %s",
                     name);
        else
            snprintf(why, whylen,
                     "this worker runs only its --allow-exec programs, so a task may set only "
                     "the env variables of its --allow-env list: not %s",
                     name);
        return -1;
    }
    return 0;
}

void allow_destroy(allow_t **p)
{
    if (!p || !*p)
        return;
    s_free_entries((*p)->entries, (*p)->n);
    s_free_entries((*p)->env, (*p)->nenv);
    free(*p);
    *p = NULL;
}
