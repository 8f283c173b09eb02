/*  resset: named resource amounts (see resset.h). */
#include "resset.h"

#include "util.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest amount of anything: far above any machine, far below overflow
   when a pool sums thousands of tasks' requests. */
#define RES_AMOUNT_MAX ((int64_t) 1 << 52)

bool res_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > RES_NAME_MAX || !isalpha((unsigned char) name[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char) name[i]) && name[i] != '_' && name[i] != '-')
            return false;
    return true;
}

/* "0.5", "2", "1.25" (>= 1 must be whole) into thousandths of a GPU. */
static int s_gpus_parse(const char *text, int64_t *out)
{
    int64_t whole = 0, frac = 0;
    const char *p = text;
    if (!isdigit((unsigned char) *p))
        return -1;
    for (; isdigit((unsigned char) *p); p++) {
        whole = whole * 10 + (*p - '0');
        if (whole > RES_AMOUNT_MAX / RES_GPU_UNIT)
            return -1;
    }
    if (*p == '.') {
        p++;
        int digits = 0;
        for (; isdigit((unsigned char) *p); p++, digits++) {
            if (digits == 3)
                return -1;
            frac = frac * 10 + (*p - '0');
        }
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            frac *= 10;
    }
    if (*p || (whole > 0 && frac > 0))
        return -1;
    *out = whole * RES_GPU_UNIT + frac;
    return 0;
}

int res_amount_parse(const char *name, const char *text, int64_t *amount, char *err,
                     size_t errlen)
{
    int rc;
    if (strcmp(name, "gpus") == 0) {
        rc = s_gpus_parse(text, amount);
        if (rc != 0)
            snprintf(err, errlen,
                     "gpus wants a whole number of GPUs or a share of one below 1 (0.5, 0.25; "
                     "3 decimals at most), got '%s'",
                     text);
        return rc;
    }
    if (strcmp(name, "mem") == 0) {
        rc = *text == '0' && !text[1] ? (*amount = 0, 0) : parse_bytes(text, amount);
        if (rc != 0 || *amount > RES_AMOUNT_MAX) {
            snprintf(err, errlen, "mem wants bytes (suffix K, M, G, T: 512M, 16G), got '%s'",
                     text);
            return -1;
        }
        return 0;
    }
    if (parse_int64(text, 0, RES_AMOUNT_MAX, amount) != 0) {
        snprintf(err, errlen, "%s wants a whole number >= 0, got '%s'", name, text);
        return -1;
    }
    return 0;
}

void res_amount_format(const char *name, int64_t amount, char *buf, size_t len)
{
    if (strcmp(name, "gpus") == 0 && amount % RES_GPU_UNIT)
        snprintf(buf, len, "%" PRId64 ".%03" PRId64, amount / RES_GPU_UNIT,
                 amount % RES_GPU_UNIT);
    else if (strcmp(name, "gpus") == 0)
        snprintf(buf, len, "%" PRId64, amount / RES_GPU_UNIT);
    else
        snprintf(buf, len, "%" PRId64, amount);
    /* "0.500" -> "0.5": the shortest form reads back the same. */
    char *dot = strchr(buf, '.');
    if (dot) {
        char *end = buf + strlen(buf);
        while (end > dot + 1 && end[-1] == '0')
            *--end = '\0';
    }
}

int64_t res_get(const res_set_t *set, const char *name)
{
    for (int i = 0; i < set->n; i++)
        if (strcmp(set->name[i], name) == 0)
            return set->amount[i];
    return 0;
}

int res_set(res_set_t *set, const char *name, int64_t amount)
{
    if (!res_name_ok(name))
        return -1;
    int i = 0;
    while (i < set->n && strcmp(set->name[i], name) < 0)
        i++;
    if (i < set->n && strcmp(set->name[i], name) == 0) {
        set->amount[i] = amount;
        return 0;
    }
    if (set->n == RES_MAX)
        return -1;
    memmove(&set->name[i + 1], &set->name[i], (size_t) (set->n - i) * sizeof set->name[0]);
    memmove(&set->amount[i + 1], &set->amount[i], (size_t) (set->n - i) * sizeof set->amount[0]);
    snprintf(set->name[i], sizeof set->name[i], "%s", name);
    set->amount[i] = amount;
    set->n++;
    return 0;
}

int res_parse(const char *text, res_set_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char *copy = xstrdup(text), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            snprintf(err, errlen, "'%s' is not NAME=AMOUNT", tok);
            rc = -1;
            break;
        }
        *eq = '\0';
        int64_t amount;
        bool twice = false;
        for (int i = 0; i < out->n; i++)
            twice |= strcmp(out->name[i], tok) == 0;
        if (!res_name_ok(tok)) {
            snprintf(err, errlen,
                     "'%s' is not a resource name (letters, digits, '_', '-'; %d bytes at most)",
                     tok, RES_NAME_MAX);
            rc = -1;
        } else if (twice) {
            snprintf(err, errlen, "%s given twice", tok);
            rc = -1;
        } else if (res_amount_parse(tok, eq + 1, &amount, err, errlen) != 0) {
            rc = -1;
        } else if (res_set(out, tok, amount) != 0) {
            snprintf(err, errlen, "more than %d resources", RES_MAX);
            rc = -1;
        }
    }
    free(copy);
    return rc;
}

void res_format(const res_set_t *set, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < set->n && used < len; i++) {
        char amount[32];
        res_amount_format(set->name[i], set->amount[i], amount, sizeof amount);
        used += (size_t) snprintf(buf + used, len - used, "%s%s=%s", i ? "," : "", set->name[i],
                                  amount);
    }
}
