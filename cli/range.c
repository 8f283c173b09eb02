#include "range.h"

#include "../common/util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t lo, hi, step;
} elem_t;

struct range {
    elem_t *elems;
    int nelems;
    int64_t count;
};

/* Reads a run of decimal digits at *p into *out; advances *p. -1 when
   there is no digit or the value exceeds RANGE_MAX_INDEX. */
static int s_number(const char **p, int64_t *out, bool *too_big)
{
    const char *s = *p;
    if (!isdigit((unsigned char) *s))
        return -1;
    int64_t v = 0;
    while (isdigit((unsigned char) *s)) {
        int d = *s - '0';
        if (v > (RANGE_MAX_INDEX - d) / 10) {
            *too_big = true;
            return -1;
        }
        v = v * 10 + d;
        s++;
    }
    *p = s;
    *out = v;
    return 0;
}

static const char *s_skip_spaces(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Parses one element text[0..len) (spaces already trimmed). */
static int s_elem(const char *text, size_t len, int n, elem_t *e, char *err, size_t errlen)
{
    char *copy = xstrndup(text, len);
    const char *p = copy;
    bool too_big = false;
    int rc = -1;
    if (len == 0) {
        snprintf(err, errlen, "element %d is empty (write e.g. 1-100 or 1,5,9)", n);
        goto out;
    }
    if (*p == '-') {
        snprintf(err, errlen, "element %d (\"%s\"): indices must be >= 0", n, copy);
        goto out;
    }
    if (s_number(&p, &e->lo, &too_big) != 0)
        goto bad;
    e->hi = e->lo;
    e->step = 1;
    if (*p == '-') {
        p++;
        if (*p == '-') {
            snprintf(err, errlen, "element %d (\"%s\"): indices must be >= 0", n, copy);
            goto out;
        }
        if (s_number(&p, &e->hi, &too_big) != 0)
            goto bad;
        if (*p == ':') {
            p++;
            int64_t step;
            if (s_number(&p, &step, &too_big) != 0)
                goto bad;
            if (step == 0) {
                snprintf(err, errlen, "element %d (\"%s\"): the step must be >= 1", n, copy);
                goto out;
            }
            e->step = step;
        }
        if (e->hi < e->lo) {
            snprintf(err, errlen, "element %d (\"%s\") is reversed; write %lld-%lld", n, copy,
                     (long long) e->hi, (long long) e->lo);
            goto out;
        }
    } else if (*p == ':') {
        snprintf(err, errlen, "element %d (\"%s\"): a step needs a range (write A-B:STEP)", n,
                 copy);
        goto out;
    }
    if (*p)
        goto bad;
    rc = 0;
    goto out;
bad:
    if (too_big)
        snprintf(err, errlen, "element %d (\"%s\"): index too large (the largest is %lld)", n,
                 copy, (long long) RANGE_MAX_INDEX);
    else
        snprintf(err, errlen,
                 "element %d (\"%s\") is not N, A-B or A-B:STEP with non-negative integers", n,
                 copy);
out:
    free(copy);
    return rc;
}

range_t *range_parse(const char *text, char *err, size_t errlen)
{
    if (!text || !*s_skip_spaces(text)) {
        snprintf(err, errlen, "empty index list (write e.g. 1-100 or 1,5,9)");
        return NULL;
    }
    range_t *self = xcalloc(1, sizeof *self);
    int cap = 0;
    const char *s = text;
    for (int n = 1;; n++) {
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        const char *b = s_skip_spaces(s);
        const char *e = end;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (self->nelems == cap) {
            cap = cap ? cap * 2 : 8;
            self->elems = xrealloc(self->elems, (size_t) cap * sizeof *self->elems);
        }
        elem_t *el = &self->elems[self->nelems];
        if (s_elem(b, (size_t) (e - b), n, el, err, errlen) != 0) {
            range_destroy(&self);
            return NULL;
        }
        self->nelems++;
        /* hi - lo <= RANGE_MAX_INDEX, so this cannot overflow. */
        int64_t c = (el->hi - el->lo) / el->step + 1;
        if (c > RANGE_MAX_COUNT - self->count) {
            snprintf(err, errlen, "more than %lld indices; that is surely a typo",
                     (long long) RANGE_MAX_COUNT);
            range_destroy(&self);
            return NULL;
        }
        self->count += c;
        if (!comma)
            break;
        s = comma + 1;
    }
    return self;
}

void range_destroy(range_t **p)
{
    if (!p || !*p)
        return;
    free((*p)->elems);
    free(*p);
    *p = NULL;
}

int64_t range_count(const range_t *self)
{
    return self->count;
}

void range_iter_init(range_iter_t *it, const range_t *range)
{
    it->range = range;
    it->elem = 0;
    it->next = range->nelems > 0 ? range->elems[0].lo : 0;
}

bool range_iter_next(range_iter_t *it, int64_t *index)
{
    const range_t *r = it->range;
    if (it->elem >= r->nelems)
        return false;
    const elem_t *e = &r->elems[it->elem];
    *index = it->next;
    /* Step without overflowing past hi (hi may be near RANGE_MAX_INDEX). */
    if (e->hi - it->next >= e->step) {
        it->next += e->step;
    } else {
        it->elem++;
        if (it->elem < r->nelems)
            it->next = r->elems[it->elem].lo;
    }
    return true;
}
