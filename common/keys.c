#include "keys.h"

#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

struct keyset {
    char (*keys)[KEY_Z85_LEN + 1];
    size_t n, cap;
};

bool keys_valid_z85(const char *text)
{
    if (!text || strlen(text) != KEY_Z85_LEN)
        return false;
    unsigned char bin[32];
    return zmq_z85_decode(bin, text) != NULL;
}

/* Finds `NAME = "VALUE"` (or bare VALUE when name is NULL) on one line. */
static bool s_value(const char *line, const char *name, char out[KEY_Z85_LEN + 1])
{
    while (*line == ' ' || *line == '\t')
        line++;
    if (*line == '#' || !*line)
        return false;
    if (name) {
        size_t n = strlen(name);
        if (strncmp(line, name, n) != 0)
            return false;
        line += n;
        while (*line == ' ' || *line == '\t')
            line++;
        if (*line++ != '=')
            return false;
        while (*line == ' ' || *line == '\t')
            line++;
    }
    bool quoted = *line == '"';
    if (quoted)
        line++;
    size_t len = 0;
    while (line[len] && line[len] != '"' && line[len] != '\n' && line[len] != '\r'
           && line[len] != ' ' && line[len] != '\t')
        len++;
    if (len != KEY_Z85_LEN)
        return false;
    memcpy(out, line, KEY_Z85_LEN);
    out[KEY_Z85_LEN] = '\0';
    return keys_valid_z85(out);
}

int keys_load(const char *path, keypair_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read key file %s: %s", path, strerror(errno));
        return -1;
    }
    /* Whole lines, however long: a fixed buffer would split a long comment
       and read its tail as a line of its own. */
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0) {
        char v[KEY_Z85_LEN + 1];
        if (s_value(line, "public-key", v))
            memcpy(out->pub, v, sizeof v);
        else if (s_value(line, "secret-key", v))
            memcpy(out->sec, v, sizeof v);
    }
    free(line);
    fclose(f);
    if (!out->pub[0]) {
        snprintf(err, errlen, "%s holds no valid public-key line (make one with: ztask keygen NAME)",
                 path);
        return -1;
    }
    return 0;
}

int keys_load_secret(const char *path, keypair_t *out, char *err, size_t errlen)
{
    if (keys_load(path, out, err, errlen) != 0)
        return -1;
    if (!out->sec[0]) {
        snprintf(err, errlen, "%s holds no secret-key (give the .key file, not the .pub)", path);
        return -1;
    }
    return 0;
}

int keys_load_public(const char *key_or_path, keypair_t *out, char *err, size_t errlen)
{
    if (keys_valid_z85(key_or_path)) {
        memset(out, 0, sizeof *out);
        memcpy(out->pub, key_or_path, KEY_Z85_LEN);
        return 0;
    }
    int rc = keys_load(key_or_path, out, err, errlen);
    explicit_bzero(out->sec, sizeof out->sec);
    return rc;
}

/* Creates path for writing, refusing to replace anything there. */
static FILE *s_create(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "w");
    if (!f)
        close(fd);
    return f;
}

int keys_generate(const char *dir, const char *name, keypair_t *out, char *err, size_t errlen)
{
    if (!name || !*name || strchr(name, '/') || strcmp(name, ".") == 0
        || strcmp(name, "..") == 0) {
        snprintf(err, errlen, "a key name must be a plain file name, not '%s'", name ? name : "");
        return -1;
    }
    if (zmq_curve_keypair(out->pub, out->sec) != 0) {
        snprintf(err, errlen, "cannot generate keys: %s (libzmq built without CURVE?)",
                 zmq_strerror(errno));
        return -1;
    }
    /* Both files are created exclusively: a pair that half-replaces an old
       one (new .key, old .pub) would lock its owner out without a word. */
    char key_path[4096], pub_path[4096];
    snprintf(key_path, sizeof key_path, "%s/%s.key", dir, name);
    snprintf(pub_path, sizeof pub_path, "%s/%s.pub", dir, name);
    FILE *kf = s_create(key_path, 0600);
    if (!kf) {
        snprintf(err, errlen, "cannot create %s: %s", key_path, strerror(errno));
        return -1;
    }
    FILE *pf = s_create(pub_path, 0644);
    if (!pf) {
        snprintf(err, errlen, "cannot create %s: %s", pub_path, strerror(errno));
        fclose(kf);
        unlink(key_path);
        return -1;
    }
    bool ok = fprintf(kf,
                      "# ztask CURVE secret key: keep this file private\n"
                      "public-key = \"%s\"\nsecret-key = \"%s\"\n",
                      out->pub, out->sec)
              > 0;
    ok = fclose(kf) == 0 && ok;
    ok = fprintf(pf, "# ztask CURVE public key of %s\npublic-key = \"%s\"\n", name, out->pub) > 0
         && ok;
    ok = fclose(pf) == 0 && ok;
    if (!ok) {
        snprintf(err, errlen, "cannot write %s: %s", key_path, strerror(errno));
        unlink(key_path);
        unlink(pub_path);
        return -1;
    }
    return 0;
}

static void s_add(keyset_t *self, const char *key)
{
    if (keyset_has(self, key))
        return;
    if (self->n == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 16;
        self->keys = xrealloc(self->keys, self->cap * sizeof *self->keys);
    }
    memcpy(self->keys[self->n++], key, KEY_Z85_LEN + 1);
}

static bool s_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

keyset_t *keyset_load(const char *path, char *err, size_t errlen)
{
    keyset_t *self = xcalloc(1, sizeof *self);
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "cannot read allowlist %s: %s", path, strerror(errno));
        keyset_destroy(&self);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) {
            snprintf(err, errlen, "cannot read allowlist %s: %s", path, strerror(errno));
            keyset_destroy(&self);
            return NULL;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!s_ends_with(de->d_name, ".pub") && !s_ends_with(de->d_name, ".key"))
                continue;
            char file[4096];
            snprintf(file, sizeof file, "%s/%s", path, de->d_name);
            keypair_t kp;
            char e2[256];
            if (keys_load(file, &kp, e2, sizeof e2) == 0)
                s_add(self, kp.pub);
            else { /* the others still count; say why this one does not */
                char qf[512], qe[300];
                log_warn("event=allowlist_skipped file=\"%s\" error=\"%s\"",
                         log_quote(qf, sizeof qf, file), log_quote(qe, sizeof qe, e2));
            }
        }
        closedir(d);
        return self;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read allowlist %s: %s", path, strerror(errno));
        keyset_destroy(&self);
        return NULL;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char v[KEY_Z85_LEN + 1];
        if (s_value(line, "public-key", v) || s_value(line, NULL, v))
            s_add(self, v);
        else {
            const char *p = line;
            while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
                p++;
            if (*p && *p != '#' && strncmp(p, "secret-key", 10) != 0) {
                snprintf(err, errlen, "%s:%d: not a public key (want 40 Z85 characters)", path,
                         lineno);
                free(line);
                fclose(f);
                keyset_destroy(&self);
                return NULL;
            }
        }
    }
    free(line);
    fclose(f);
    return self;
}

bool keyset_has(const keyset_t *self, const char *z85)
{
    for (size_t i = 0; self && i < self->n; i++)
        if (strcmp(self->keys[i], z85) == 0)
            return true;
    return false;
}

size_t keyset_size(const keyset_t *self)
{
    return self ? self->n : 0;
}

void keyset_destroy(keyset_t **p)
{
    if (!p || !*p)
        return;
    free((*p)->keys);
    free(*p);
    *p = NULL;
}
