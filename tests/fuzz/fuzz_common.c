/*  Fuzz checks for common/: CURVE key files and allowlists (read from disk,
    possibly written by someone else), the config file, and the UTF-8 and
    host:port helpers every decoder and flag parser leans on.

    keys    the input is one file, read both as a key file (keys_load) and
            as an allowlist file (keyset_load), and compared with an
            independent whole-line reading of the formats in keys.h: same
            keys found, same lines refused.
    config  the ztask config file, parsed from the buffer and compared with
            an independent reading of the format in config.h: same verdict,
            same values, lines and joined paths.
    util    utf8_valid, the word-at-a-time scanner of proto_text.c and
            utf8_sanitize agree; hostport_parse either refuses or yields a
            non-empty host and a port in 1..65535; log_value (peer text
            in log lines) gives one value with no control byte that reads
            back, unescaped, as the text (or a cut prefix of it).
*/
#include "fuzz.h"

#include "../../common/config.h"
#include "../../common/keys.h"
#include "../../common/log.h"
#include "../../common/util.h"
#include "../../proto/proto_text.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- keys */

/* An independent reading of the formats in keys.h, whole line by whole
   line (a line ends at '\n'; a NUL ends what is read of it, as with any C
   string). The token rules follow keys.c: after `public-key =` or at the
   start of a bare line, an optional '"' and then exactly 40 characters up
   to '"', a blank, '\r' or the end, which must be valid Z85. */
static bool s_ref_token(const char *p, char out[KEY_Z85_LEN + 1])
{
    if (*p == '"')
        p++;
    size_t n = 0;
    while (p[n] && p[n] != '"' && p[n] != '\r' && p[n] != ' ' && p[n] != '\t')
        n++;
    if (n != KEY_Z85_LEN)
        return false;
    memcpy(out, p, KEY_Z85_LEN);
    out[KEY_Z85_LEN] = '\0';
    return keys_valid_z85(out);
}

static const char *s_ref_skip(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* `NAME = TOKEN` on line (leading blanks already skipped). */
static bool s_ref_named(const char *p, const char *name, char out[KEY_Z85_LEN + 1])
{
    size_t n = strlen(name);
    if (strncmp(p, name, n) != 0)
        return false;
    p = s_ref_skip(p + n);
    if (*p++ != '=')
        return false;
    return s_ref_token(s_ref_skip(p), out);
}

typedef struct {
    char pub[KEY_Z85_LEN + 1], sec[KEY_Z85_LEN + 1];  /* key file: last of each */
    char (*allow)[KEY_Z85_LEN + 1];                   /* allowlist, deduplicated */
    size_t nallow;
    bool allow_ok;                                    /* false: a line is not a key */
} ref_keys_t;

static void s_ref_keys(const uint8_t *data, size_t size, ref_keys_t *r)
{
    memset(r, 0, sizeof *r);
    r->allow_ok = true;
    r->allow = xcalloc(size / 2 + 1, sizeof *r->allow);
    for (size_t at = 0; at < size;) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t end = nl ? (size_t) (nl - data) : size;
        char *line = xstrndup((const char *) data + at, end - at);
        at = end + 1;
        const char *p = s_ref_skip(line);
        char k[KEY_Z85_LEN + 1];
        if (*p == '#' || *p == '\0' || (*p == '\r' && !p[1])) {
            free(line);
            continue;
        }
        if (s_ref_named(p, "public-key", k))
            memcpy(r->pub, k, sizeof k);
        else if (s_ref_named(p, "secret-key", k))
            memcpy(r->sec, k, sizeof k);
        if (s_ref_named(p, "public-key", k) || s_ref_token(p, k)) {
            bool dup = false;
            for (size_t i = 0; i < r->nallow && !dup; i++)
                dup = strcmp(r->allow[i], k) == 0;
            if (!dup)
                memcpy(r->allow[r->nallow++], k, sizeof k);
        } else {
            while (*p == '\r')
                p = s_ref_skip(p + 1);
            if (*p && *p != '#' && strncmp(p, "secret-key", 10) != 0)
                r->allow_ok = false;
        }
        free(line);
    }
}

fuzz_verdict_t fuzz_check_keys(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    char path[64];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0)
        return fuzz_broken(why, whylen, "cannot make an in-memory file");
    ref_keys_t ref;
    s_ref_keys(data, size, &ref);
    fuzz_verdict_t v = FUZZ_REJECTED;
    char err[512] = "";
    keypair_t kp;
    if (keys_load(path, &kp, err, sizeof err) == 0) {
        v = FUZZ_ACCEPTED;
        if (!keys_valid_z85(kp.pub) || (kp.sec[0] && !keys_valid_z85(kp.sec)))
            v = fuzz_broken(why, whylen, "keys_load gave an invalid key");
        else if (strcmp(kp.pub, ref.pub) != 0 || strcmp(kp.sec, ref.sec) != 0)
            v = fuzz_broken(why, whylen, "keys_load read public %s secret %s, the lines say "
                            "public %s secret %s", kp.pub, kp.sec[0] ? "set" : "none",
                            ref.pub[0] ? ref.pub : "none", ref.sec[0] ? "set" : "none");
    } else if (!err[0]) {
        v = fuzz_broken(why, whylen, "keys_load refused without a reason");
    } else if (ref.pub[0]) {
        v = fuzz_broken(why, whylen, "keys_load refused a file with public-key %s: %s", ref.pub,
                        err);
    }
    if (v == FUZZ_BROKEN)
        goto out;

    err[0] = '\0';
    keyset_t *set = keyset_load(path, err, sizeof err);
    if (set) {
        v = FUZZ_ACCEPTED;
        if (!ref.allow_ok)
            v = fuzz_broken(why, whylen, "allowlist accepted with a line that is not a key");
        else if (keyset_size(set) != ref.nallow)
            v = fuzz_broken(why, whylen, "allowlist of %zu keys, the lines hold %zu",
                            keyset_size(set), ref.nallow);
        for (size_t i = 0; v == FUZZ_ACCEPTED && i < ref.nallow; i++)
            if (!keyset_has(set, ref.allow[i]))
                v = fuzz_broken(why, whylen, "allowlist lacks %s", ref.allow[i]);
        keyset_destroy(&set);
    } else if (!err[0]) {
        v = fuzz_broken(why, whylen, "keyset_load refused without a reason");
    } else if (ref.allow_ok) {
        v = fuzz_broken(why, whylen, "allowlist refused though every line is a key, a comment "
                        "or blank: %s", err);
    }
out:
    free(ref.allow);
    close(fd);
    return v;
}

/* ---------------------------------------------------------------- config */

static const char *const s_config_keys[] = {
    "master", "curve-secret", "master-key", "request-timeout", "threads",
    "name",   "labels",       "plugin",     "allow-exec",      "run-as",
    "task-rlimit", "state-dir", "allow-env",
};
#define NCONFIG_KEYS (sizeof s_config_keys / sizeof *s_config_keys)

/* Where the fuzzed text claims to come from: relative values join to its
   directory. */
#define CONFIG_ORIGIN "/etc/ztask/config"
#define CONFIG_DIR "/etc/ztask"

typedef struct {
    char *value[NCONFIG_KEYS];
    int line[NCONFIG_KEYS];
} ref_config_t;

static bool s_cfg_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* config.h's format, read independently: true when the text is valid. */
static bool s_ref_config(const char *text, size_t len, ref_config_t *r)
{
    memset(r, 0, sizeof *r);
    int lineno = 0;
    for (size_t at = 0; at < len;) {
        lineno++;
        const char *nl = memchr(text + at, '\n', len - at);
        size_t b = at, e = nl ? (size_t) (nl - text) : len;
        at = e + 1;
        if (memchr(text + b, '\0', e - b) || !utf8_valid(text + b, e - b))
            return false;
        while (b < e && s_cfg_blank(text[b]))
            b++;
        while (e > b && s_cfg_blank(text[e - 1]))
            e--;
        if (b == e || text[b] == '#')
            continue;
        const char *eq = memchr(text + b, '=', e - b);
        if (!eq)
            return false;
        size_t ke = (size_t) (eq - text), vb = ke + 1;
        while (ke > b && s_cfg_blank(text[ke - 1]))
            ke--;
        while (vb < e && s_cfg_blank(text[vb]))
            vb++;
        size_t k = 0;
        while (k < NCONFIG_KEYS && (strlen(s_config_keys[k]) != ke - b
                                    || memcmp(s_config_keys[k], text + b, ke - b) != 0))
            k++;
        if (k == NCONFIG_KEYS || r->value[k])
            return false;
        size_t ve = e;
        if (vb < ve && text[vb] == '"') {
            if (ve - vb < 2 || text[ve - 1] != '"')
                return false;
            vb++;
            ve--;
        }
        if (vb == ve)
            return false;
        r->value[k] = xstrndup(text + vb, ve - vb);
        r->line[k] = lineno;
    }
    return true;
}

fuzz_verdict_t fuzz_check_config(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    const char *text = (const char *) data;
    ref_config_t ref;
    bool ref_ok = s_ref_config(text, size, &ref);
    char err[512] = "";
    config_t *cfg = config_parse(text, size, CONFIG_ORIGIN, err, sizeof err);
    fuzz_verdict_t v = cfg ? FUZZ_ACCEPTED : FUZZ_REJECTED;
    if (!cfg && ref_ok)
        v = fuzz_broken(why, whylen, "config refused (%s) though every line is valid", err);
    else if (cfg && !ref_ok)
        v = fuzz_broken(why, whylen, "config accepted with an invalid line");
    else if (!cfg && strncmp(err, CONFIG_ORIGIN ":", strlen(CONFIG_ORIGIN) + 1) != 0)
        v = fuzz_broken(why, whylen, "config error does not start with FILE:LINE: %s", err);
    for (size_t k = 0; cfg && v == FUZZ_ACCEPTED && k < NCONFIG_KEYS; k++) {
        const char *key = s_config_keys[k];
        const char *got = config_get(cfg, key);
        if (!config_key_known(key)) {
            v = fuzz_broken(why, whylen, "key %s not known", key);
        } else if (!got != !ref.value[k] || (got && strcmp(got, ref.value[k]) != 0)) {
            v = fuzz_broken(why, whylen, "%s = \"%.100s\", the line says \"%.100s\"", key,
                            got ? got : "(unset)", ref.value[k] ? ref.value[k] : "(unset)");
        } else if (got) {
            char where[64], *path = config_path(cfg, key);
            char *want = got[0] == '/' ? xstrdup(got) : xasprintf(CONFIG_DIR "/%s", got);
            snprintf(where, sizeof where, CONFIG_ORIGIN ":%d", ref.line[k]);
            if (strcmp(config_where(cfg, key), where) != 0)
                v = fuzz_broken(why, whylen, "%s set at %s, config_where says %s", key, where,
                                config_where(cfg, key));
            else if (!path || strcmp(path, want) != 0)
                v = fuzz_broken(why, whylen, "%s: path \"%.100s\", want \"%.100s\"", key,
                                path ? path : "(null)", want);
            free(path);
            free(want);
        }
    }
    config_destroy(&cfg);
    for (size_t k = 0; k < NCONFIG_KEYS; k++)
        free(ref.value[k]);
    return v;
}

/* ---------------------------------------------------------------- util */

/* log_value's promise, read back independently: bare plain text, or one
   quoted value with no control byte whose unescaping is text (or, when
   it ends in "...", a prefix of it). */
static fuzz_verdict_t s_check_log_value(const char *text, size_t cap, char *why, size_t whylen)
{
    char buf[LOG_VALUE_MAX];
    const char *v = log_value(buf, cap, text);
    size_t n = strlen(v), tlen = strlen(text);
    if (n >= cap)
        return fuzz_broken(why, whylen, "log_value wrote %zu bytes into %zu", n, cap);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char) v[i] < 0x20 || v[i] == 0x7f)
            return fuzz_broken(why, whylen, "log_value left control byte 0x%02x", v[i]);
    if (v[0] != '"') {
        if (strcmp(v, text) != 0 || strpbrk(v, " \"=\\") != NULL)
            return fuzz_broken(why, whylen, "bare log_value \"%.60s\" is not the plain text", v);
        return FUZZ_ACCEPTED;
    }
    if (n < 2 || v[n - 1] != '"')
        return fuzz_broken(why, whylen, "log_value \"%.60s\" does not end its quotes", v);
    bool cut = n >= 5 && memcmp(v + n - 4, "...", 3) == 0;
    char *back = xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 1; i < n - 1 - (cut ? 3 : 0); i++) {
        if (v[i] == '"')
            return free(back), fuzz_broken(why, whylen, "a bare quote inside log_value");
        if (v[i] != '\\') {
            back[o++] = v[i];
            continue;
        }
        char e = v[++i];
        if (e == 'x') {
            unsigned x;
            if (sscanf(v + i + 1, "%2x", &x) != 1)
                return free(back), fuzz_broken(why, whylen, "a bad \\x escape in log_value");
            back[o++] = (char) x;
            i += 2;
        } else {
            back[o++] = e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e;
        }
    }
    fuzz_verdict_t r = FUZZ_ACCEPTED;
    if (cut ? (o > tlen || memcmp(back, text, o) != 0) : (o != tlen || memcmp(back, text, o) != 0))
        r = fuzz_broken(why, whylen, "log_value \"%.60s\" does not read back as its text", v);
    free(back);
    return r;
}

fuzz_verdict_t fuzz_check_util(const uint8_t *data, size_t size, char *why, size_t whylen)
{
    const char *s = (const char *) data;
    bool valid = utf8_valid(s, size);
    size_t bad_at = pu_utf8_bad_at(s, size);
    if (valid != (bad_at == size))
        return fuzz_broken(why, whylen, "utf8_valid says %d, pu_utf8_bad_at says %zu of %zu",
                           valid, bad_at, size);
    if (bad_at < size && utf8_valid(s, bad_at) == false)
        return fuzz_broken(why, whylen, "the %zu bytes before the bad one are not valid",
                           bad_at);
    size_t n;
    char *clean = utf8_sanitize(s, size, &n);
    fuzz_verdict_t v = FUZZ_ACCEPTED;
    if (strlen(clean) != n || !utf8_valid(clean, n))
        v = fuzz_broken(why, whylen, "utf8_sanitize output is not valid UTF-8");
    else if (valid && (n != size || memcmp(clean, s, size) != 0))
        v = fuzz_broken(why, whylen, "utf8_sanitize changed valid text");
    else if (!valid && n == size && memcmp(clean, s, size) == 0)
        v = fuzz_broken(why, whylen, "utf8_sanitize left invalid text as it was");
    else {
        /* The exact text, against the plain way (a copy of up to 3 x,
           U+FFFD per bad byte): utf8_sanitize repairs in place
           (utf8_sanitize_take), which valid output alone would not check. */
        char *want = xmalloc(size * 3 + 1);
        size_t o = 0;
        for (size_t i = 0; i < size;) {
            size_t k = utf8_seq_len(data + i, size - i);
            memcpy(want + o, k ? s + i : "\xEF\xBF\xBD", k ? k : 3);
            o += k ? k : 3;
            i += k ? k : 1;
        }
        if (o != n || memcmp(want, clean, n) != 0)
            v = fuzz_broken(why, whylen, "utf8_sanitize differs from a repaired copy (%zu bytes, "
                            "want %zu)", n, o);
        free(want);
    }
    free(clean);
    if (v != FUZZ_ACCEPTED)
        return v;

    char *text = xstrndup(s, size);
    char *host = NULL;
    int port = -1;
    if (hostport_parse(text, &host, &port) == 0) {
        if (!host || !*host)
            v = fuzz_broken(why, whylen, "hostport_parse(\"%.80s\") gave an empty host", text);
        else if (port != -1 && (port < 1 || port > 65535))
            v = fuzz_broken(why, whylen, "hostport_parse(\"%.80s\") gave port %d", text, port);
        else if (!strchr(text, ':') && text[0] != '[' && strcmp(host, text) != 0)
            v = fuzz_broken(why, whylen, "hostport_parse(\"%.80s\") changed a bare host",
                            text);
        else if (strlen(host) > strlen(text))
            v = fuzz_broken(why, whylen, "hostport_parse(\"%.80s\") host longer than input",
                            text);
    }
    free(host);
    if (v == FUZZ_ACCEPTED)
        v = s_check_log_value(text, LOG_VALUE_MAX, why, whylen);
    if (v == FUZZ_ACCEPTED)
        v = s_check_log_value(text, 16, why, whylen);
    free(text);
    return v;
}
