/*  Fuzz checks for the CLI's readers of user input: the --array range
    text, --file JSONL and --each line files.

    range   differential: an independent reading of the grammar in range.h
            must agree on accept/refuse, on the count and on the indices.
    jsonl   the input is a --file; submit's options are applied the way
            `ztask submit --file F --timeout .. --env .. --require ..` does.
            Every spec the generator yields must be one the master accepts
            (decodes and re-encodes stably), and exactly taskgen_count of
            them come out: the first pass promises that nothing wrong is
            found after submission has started.
    each    line 1 is a template spec (JSON), the rest is the --each input;
            the same promises hold for every expanded spec.
*/
#include "fuzz.h"

#include "../../cli/range.h"
#include "../../cli/specopt.h"
#include "../../cli/taskgen.h"
#include "../../cli/tmpl.h"
#include "../../common/util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- range */

typedef struct {
    int64_t lo, hi, step;
} ref_elem_t;

static bool s_blank_char(char c)
{
    return c == ' ' || c == '\t';
}

/* s[0..n) all digits, at least one, value <= RANGE_MAX_INDEX. */
static bool s_ref_number(const char *s, size_t n, int64_t *out)
{
    if (n == 0)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        if (v > (RANGE_MAX_INDEX - (s[i] - '0')) / 10)
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* The grammar of range.h, read independently of range.c: comma-separated
   N | A-B | A-B:S, blanks around elements, A <= B, S >= 1, at most
   RANGE_MAX_COUNT indices in all. Returns the element count or -1. */
static int s_ref_parse(const char *text, ref_elem_t **out, int64_t *count)
{
    *out = NULL;
    *count = 0;
    size_t len = strlen(text);
    int n = 0;
    for (size_t start = 0;;) {
        const char *comma = memchr(text + start, ',', len - start);
        size_t end = comma ? (size_t) (comma - text) : len;
        size_t b = start, e = end;
        while (b < e && s_blank_char(text[b]))
            b++;
        while (e > b && s_blank_char(text[e - 1]))
            e--;
        const char *el = text + b;
        size_t elen = e - b;
        const char *dash = memchr(el, '-', elen);
        const char *colon = memchr(el, ':', elen);
        ref_elem_t r = { 0, 0, 1 };
        bool ok;
        if (!dash) {
            ok = !colon && s_ref_number(el, elen, &r.lo);
            r.hi = r.lo;
        } else {
            const char *rest = dash + 1;
            size_t rlen = elen - (size_t) (rest - el);
            const char *c2 = memchr(rest, ':', rlen);
            ok = (!colon || colon > dash) && s_ref_number(el, (size_t) (dash - el), &r.lo);
            if (c2)
                ok = ok && s_ref_number(rest, (size_t) (c2 - rest), &r.hi)
                     && s_ref_number(c2 + 1, rlen - (size_t) (c2 + 1 - rest), &r.step)
                     && r.step >= 1;
            else
                ok = ok && s_ref_number(rest, rlen, &r.hi);
            ok = ok && r.hi >= r.lo;
        }
        if (!ok)
            goto fail;
        int64_t c = (r.hi - r.lo) / r.step + 1;
        if (c > RANGE_MAX_COUNT - *count)
            goto fail;
        *count += c;
        *out = xrealloc(*out, (size_t) (n + 1) * sizeof **out);
        (*out)[n++] = r;
        if (!comma)
            break;
        start = end + 1;
    }
    return n;
fail:
    free(*out);
    *out = NULL;
    return -1;
}

/* How many indices are compared one by one (the rest only by count). */
#define RANGE_WALK_MAX 4096

fuzz_verdict_t fuzz_check_range(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    char *text = xstrndup((const char *) data, size);
    char err[512] = "";
    range_t *r = range_parse(text, err, sizeof err);
    ref_elem_t *ref;
    int64_t ref_count;
    int nref = s_ref_parse(text, &ref, &ref_count);
    fuzz_verdict_t v = FUZZ_ACCEPTED;
    if (!r && nref >= 0)
        v = fuzz_broken(why, whylen, "refused \"%.100s\" (%s), which the grammar allows", text,
                        err);
    else if (r && nref < 0)
        v = fuzz_broken(why, whylen, "accepted \"%.100s\", which the grammar refuses", text);
    else if (!r)
        v = err[0] ? FUZZ_REJECTED : fuzz_broken(why, whylen, "refused without a reason");
    else if (range_count(r) != ref_count)
        v = fuzz_broken(why, whylen, "\"%.100s\": count %lld, want %lld", text,
                        (long long) range_count(r), (long long) ref_count);
    if (v != FUZZ_ACCEPTED)
        goto out;
    range_iter_t it;
    range_iter_init(&it, r);
    int e = 0;
    int64_t want = nref > 0 ? ref[0].lo : 0, got;
    for (int64_t i = 0; i < RANGE_WALK_MAX && i < ref_count; i++) {
        if (!range_iter_next(&it, &got)) {
            v = fuzz_broken(why, whylen, "\"%.100s\": iteration ended after %lld of %lld", text,
                            (long long) i, (long long) ref_count);
            goto out;
        }
        if (got != want) {
            v = fuzz_broken(why, whylen, "\"%.100s\": index %lld is %lld, want %lld", text,
                            (long long) i, (long long) got, (long long) want);
            goto out;
        }
        if (ref[e].hi - want >= ref[e].step)
            want += ref[e].step;
        else if (++e < nref)
            want = ref[e].lo;
    }
    if (ref_count <= RANGE_WALK_MAX && range_iter_next(&it, &got))
        v = fuzz_broken(why, whylen, "\"%.100s\": iteration goes past %lld indices", text,
                        (long long) ref_count);
out:
    range_destroy(&r);
    free(ref);
    free(text);
    return v;
}

/* ---------------------------------------------------------------- files */

/* Drains gen, checking every spec and the promised count; with by_line,
   also that task indices increase (--each numbers tasks by input line). */
static fuzz_verdict_t s_drain(taskgen_t *gen, const char *what, bool by_line, char *why,
                              size_t whylen)
{
    int64_t count = taskgen_count(gen), n = 0, last_index = -1;
    char err[512] = "";
    for (;;) {
        proto_spec_t *spec = NULL;
        int rc = taskgen_next(gen, &spec, err, sizeof err);
        if (rc == 0)
            break;
        if (rc < 0)
            return fuzz_broken(why, whylen, "%s: second pass failed after %lld of %lld: %s", what,
                               (long long) n, (long long) count, err);
        n++;
        char label[64];
        snprintf(label, sizeof label, "%s spec %lld", what, (long long) n);
        fuzz_verdict_t v = n > count ? fuzz_broken(why, whylen, "%s: more than the %lld counted",
                                                   what, (long long) count)
                                     : fuzz_spec_stable(spec, label, why, whylen);
        if (v == FUZZ_ACCEPTED && by_line) {
            if (spec->index <= last_index)
                v = fuzz_broken(why, whylen, "each: index %lld after %lld",
                                (long long) spec->index, (long long) last_index);
            last_index = spec->index;
        }
        proto_spec_destroy(&spec);
        if (v != FUZZ_ACCEPTED)
            return v;
    }
    if (n != count)
        return fuzz_broken(why, whylen, "%s: %lld specs, %lld counted", what, (long long) n,
                           (long long) count);
    return FUZZ_ACCEPTED;
}

/* Every option `ztask submit` applies on top of a --file line. */
static void s_submit_opts(specopt_t *o)
{
    char err[128];
    specopt_init(o);
    o->has_timeout = true;
    o->timeout = 5;
    o->has_retries = true;
    o->retries = 2;
    o->has_priority = true;
    o->priority = -3;
    o->has_output_cap = true;
    o->output_cap = 4096;
    o->cwd = xstrdup("/tmp");
    o->stdin_data = xstrdup("fuzz\n");
    o->stdin_len = 5;
    specopt_add_env(o, "PATH=/usr/bin", err, sizeof err);
    specopt_add_env(o, "ZTASK_FUZZ=1", err, sizeof err);
    specopt_add_require(o, "gpu");
}

fuzz_verdict_t fuzz_check_jsonl(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0)
        return fuzz_broken(why, whylen, "cannot make an in-memory file");
    specopt_t opts;
    s_submit_opts(&opts);
    char err[512] = "";
    taskgen_t *gen = taskgen_jsonl(path, &opts, err, sizeof err);
    fuzz_verdict_t v;
    if (!gen)
        v = err[0] ? FUZZ_REJECTED : fuzz_broken(why, whylen, "jsonl refused without a reason");
    else
        v = s_drain(gen, "jsonl", false, why, whylen);
    taskgen_destroy(&gen);
    specopt_clear(&opts);
    close(fd);
    return v;
}

fuzz_verdict_t fuzz_check_each(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl)
        return FUZZ_REJECTED;
    proto_err_t perr = { { 0 }, { 0 } };
    proto_spec_t *base = proto_spec_decode((const char *) data, (size_t) (nl - data), &perr);
    if (!base)
        return FUZZ_REJECTED;
    char err[512] = "";
    tmpl_t *t = tmpl_new(&base, err, sizeof err);
    if (!t)
        return fuzz_broken(why, whylen, "tmpl_new refused a decoded spec: %s", err);
    if (!tmpl_can_append(t)) { /* submit refuses this template for --each */
        tmpl_destroy(&t);
        return FUZZ_REJECTED;
    }
    char path[64];
    const uint8_t *lines = nl + 1;
    int fd = fuzz_memfile(lines, size - (size_t) (lines - data), path, sizeof path);
    if (fd < 0) {
        tmpl_destroy(&t);
        return fuzz_broken(why, whylen, "cannot make an in-memory file");
    }
    taskgen_t *gen = taskgen_each(&t, path, err, sizeof err);
    fuzz_verdict_t v;
    if (t)
        v = fuzz_broken(why, whylen, "taskgen_each left the template with the caller");
    else if (!gen)
        v = err[0] ? FUZZ_REJECTED : fuzz_broken(why, whylen, "each refused without a reason");
    else
        v = s_drain(gen, "each", true, why, whylen);
    tmpl_destroy(&t);
    taskgen_destroy(&gen);
    close(fd);
    return v;
}
