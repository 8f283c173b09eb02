#include "taskgen.h"

#include "../common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum { GEN_SINGLE, GEN_ARRAY, GEN_EACH, GEN_JSONL } gen_kind_t;

struct taskgen {
    gen_kind_t kind;
    tmpl_t *tmpl;
    range_t *range;
    range_iter_t iter;
    FILE *in;              /* each/jsonl: positioned for the second pass */
    char *name;            /* input name for messages ("stdin" for "-") */
    const specopt_t *opts; /* jsonl, borrowed */
    char *line;            /* getline buffer */
    size_t linecap;
    int64_t lineno;        /* lines read in the second pass */
    int64_t count;
    int64_t produced;
};

static taskgen_t *s_new(gen_kind_t kind)
{
    taskgen_t *self = xcalloc(1, sizeof *self);
    self->kind = kind;
    return self;
}

taskgen_t *taskgen_single(tmpl_t **tmpl)
{
    taskgen_t *self = s_new(GEN_SINGLE);
    self->tmpl = *tmpl;
    *tmpl = NULL;
    self->count = 1;
    return self;
}

taskgen_t *taskgen_array(tmpl_t **tmpl, range_t **range)
{
    taskgen_t *self = s_new(GEN_ARRAY);
    self->tmpl = *tmpl;
    *tmpl = NULL;
    self->range = *range;
    *range = NULL;
    range_iter_init(&self->iter, self->range);
    self->count = range_count(self->range);
    return self;
}

/* Copies everything from src to an anonymous temporary file, rewound. */
static FILE *s_spool(FILE *src, const char *name, char *err, size_t errlen)
{
    FILE *tmp = tmpfile();
    if (!tmp) {
        snprintf(err, errlen, "cannot create a temporary file to buffer %s: %s", name,
                 strerror(errno));
        return NULL;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, src)) > 0) {
        if (fwrite(buf, 1, n, tmp) != n) {
            snprintf(err, errlen, "cannot buffer %s in a temporary file: %s", name,
                     strerror(errno));
            fclose(tmp);
            return NULL;
        }
    }
    if (ferror(src)) {
        snprintf(err, errlen, "cannot read %s: %s", name, strerror(errno));
        fclose(tmp);
        return NULL;
    }
    if (fflush(tmp) != 0) {
        snprintf(err, errlen, "cannot buffer %s in a temporary file: %s", name, strerror(errno));
        fclose(tmp);
        return NULL;
    }
    rewind(tmp);
    return tmp;
}

/* Opens path for two passes. "-" (stdin) and anything that is not a
   regular file (a pipe, `--each <(ls)`) cannot be read twice, so they are
   spooled to a temporary file first. */
static FILE *s_open_input(const char *path, char *err, size_t errlen)
{
    if (strcmp(path, "-") == 0)
        return s_spool(stdin, "stdin", err, errlen);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode))
        return f;
    FILE *tmp = s_spool(f, path, err, errlen);
    fclose(f);
    return tmp;
}

/* Reads the next line without its "\n" / "\r\n". Returns its length, or
   -1 at the end (or on a read error: check ferror). */
static ssize_t s_getline(taskgen_t *self)
{
    ssize_t n = getline(&self->line, &self->linecap, self->in);
    if (n < 0)
        return -1;
    if (n > 0 && self->line[n - 1] == '\n')
        self->line[--n] = '\0';
    if (n > 0 && self->line[n - 1] == '\r')
        self->line[--n] = '\0';
    return n;
}

static bool s_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v')
            return false;
    return true;
}

/* Shared by both file kinds: open, run check() over every non-blank line
   (first pass), count, rewind. */
static taskgen_t *s_file_new(gen_kind_t kind, const char *path, const specopt_t *opts,
                             int (*check)(taskgen_t *self, size_t len, char *err, size_t errlen),
                             char *err, size_t errlen)
{
    FILE *in = s_open_input(path, err, errlen);
    if (!in)
        return NULL;
    taskgen_t *self = s_new(kind);
    self->in = in;
    self->opts = opts;
    self->name = xstrdup(strcmp(path, "-") == 0 ? "stdin" : path);
    ssize_t n;
    while ((n = s_getline(self)) >= 0) {
        self->lineno++;
        if (s_blank(self->line, (size_t) n))
            continue;
        char why[300];
        if (check(self, (size_t) n, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s:%lld: %s", self->name, (long long) self->lineno, why);
            taskgen_destroy(&self);
            return NULL;
        }
        self->count++;
    }
    if (ferror(self->in)) {
        snprintf(err, errlen, "cannot read %s: %s", self->name, strerror(errno));
        taskgen_destroy(&self);
        return NULL;
    }
    if (fseek(self->in, 0, SEEK_SET) != 0) {
        snprintf(err, errlen, "cannot rewind %s: %s", self->name, strerror(errno));
        taskgen_destroy(&self);
        return NULL;
    }
    clearerr(self->in);
    self->lineno = 0;
    return self;
}

static int s_check_each(taskgen_t *self, size_t len, char *err, size_t errlen)
{
    if (!utf8_valid(self->line, len)) {
        snprintf(err, errlen, "%s", memchr(self->line, '\0', len)
                                        ? "the line holds a NUL byte"
                                        : "the line is not valid UTF-8");
        return -1;
    }
    return 0;
}

static int s_check_jsonl(taskgen_t *self, size_t len, char *err, size_t errlen)
{
    proto_err_t perr = { { 0 }, { 0 } };
    proto_spec_t *spec = proto_spec_decode(self->line, len, &perr);
    if (!spec) {
        snprintf(err, errlen, "%s", perr.message[0] ? perr.message : "not a valid task spec");
        return -1;
    }
    if (!self->opts || !specopt_any(self->opts)) {
        proto_spec_destroy(&spec);
        return 0;
    }
    /* The options can make a valid line invalid (--require adding a
       label past the limit, --env past the count): check the spec the
       second pass will send, as the master will read it, so nothing is
       refused after the first batches went out. */
    specopt_apply(self->opts, spec);
    char *text = proto_spec_encode(spec);
    proto_spec_destroy(&spec);
    spec = text ? proto_spec_decode(text, strlen(text), &perr) : NULL;
    free(text);
    if (!spec) {
        snprintf(err, errlen, "with the submit options applied: %s",
                 perr.message[0] ? perr.message : "not a valid task spec");
        return -1;
    }
    proto_spec_destroy(&spec);
    return 0;
}

taskgen_t *taskgen_each(tmpl_t **tmpl, const char *path, char *err, size_t errlen)
{
    taskgen_t *self = s_file_new(GEN_EACH, path, NULL, s_check_each, err, errlen);
    if (self) {
        self->tmpl = *tmpl;
        *tmpl = NULL;
    } else {
        tmpl_destroy(tmpl);
    }
    return self;
}

taskgen_t *taskgen_jsonl(const char *path, const specopt_t *opts, char *err, size_t errlen)
{
    return s_file_new(GEN_JSONL, path, opts, s_check_jsonl, err, errlen);
}

void taskgen_destroy(taskgen_t **p)
{
    if (!p || !*p)
        return;
    taskgen_t *self = *p;
    tmpl_destroy(&self->tmpl);
    range_destroy(&self->range);
    if (self->in)
        fclose(self->in);
    free(self->name);
    free(self->line);
    free(self);
    *p = NULL;
}

int64_t taskgen_count(const taskgen_t *self)
{
    return self->count;
}

/* Next non-blank line of the second pass: 1, 0 at the end, -1 on error. */
static int s_next_line(taskgen_t *self, ssize_t *len, char *err, size_t errlen)
{
    for (;;) {
        ssize_t n = s_getline(self);
        if (n < 0) {
            if (ferror(self->in)) {
                snprintf(err, errlen, "cannot read %s: %s", self->name, strerror(errno));
                return -1;
            }
            return 0;
        }
        self->lineno++;
        if (!s_blank(self->line, (size_t) n)) {
            *len = n;
            return 1;
        }
    }
}

int taskgen_next(taskgen_t *self, proto_spec_t **spec, char *err, size_t errlen)
{
    *spec = NULL;
    if (self->produced >= self->count)
        return 0;
    int64_t index;
    ssize_t len = 0;
    int rc;
    switch (self->kind) {
    case GEN_SINGLE:
        *spec = tmpl_expand(self->tmpl, NULL, -1, TMPL_REPLACE);
        break;
    case GEN_ARRAY:
        if (!range_iter_next(&self->iter, &index))
            return 0;
        char digits[24];
        snprintf(digits, sizeof digits, "%lld", (long long) index);
        *spec = tmpl_expand(self->tmpl, digits, index, TMPL_REPLACE);
        break;
    case GEN_EACH:
        rc = s_next_line(self, &len, err, errlen);
        if (rc <= 0)
            goto short_input;
        if (!utf8_valid(self->line, (size_t) len)) {
            snprintf(err, errlen, "%s:%lld: the line is not valid UTF-8 (the input changed)",
                     self->name, (long long) self->lineno);
            return -1;
        }
        *spec = tmpl_expand(self->tmpl, self->line, self->lineno - 1, TMPL_REPLACE_OR_APPEND);
        break;
    case GEN_JSONL: {
        rc = s_next_line(self, &len, err, errlen);
        if (rc <= 0)
            goto short_input;
        proto_err_t perr = { { 0 }, { 0 } };
        *spec = proto_spec_decode(self->line, (size_t) len, &perr);
        if (!*spec) {
            snprintf(err, errlen, "%s:%lld: %s (the input changed)", self->name,
                     (long long) self->lineno, perr.message);
            return -1;
        }
        if (self->opts)
            specopt_apply(self->opts, *spec);
        break;
    }
    }
    self->produced++;
    return 1;
short_input:
    if (rc == 0)
        snprintf(err, errlen, "%s: the input got shorter between the two passes", self->name);
    return -1;
}
