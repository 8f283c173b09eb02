#include "keys.h"

#include "log.h"
#include "util.h"

#include <dirent.h>
#include <sodium.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

/* Key files are a few hundred bytes; an allowlist file holds one line per
   key. Anything bigger is not what the operator meant to list. */
#define KEY_FILE_MAX (64 * 1024)
#define ALLOWLIST_FILE_MAX (64 * 1024 * 1024)

typedef struct {
    char key[KEY_Z85_LEN + 1];
    char *name;              /* the file's name without .pub/.key, owned; NULL from a list file */
} keyset_entry_t;

struct keyset {
    keyset_entry_t *keys;    /* sorted by key once loaded (s_finish) */
    size_t n, cap;
};

bool keys_valid_z85(const char *text)
{
    if (!text || strlen(text) != KEY_Z85_LEN)
        return false;
    unsigned char bin[32];
    bool ok = zmq_z85_decode(bin, text) != NULL;
    sodium_memzero(bin, sizeof bin);   /* it may be a secret key */
    return ok;
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

/* Opens path for reading if it is a regular file of at most max bytes.
   Non-blocking: opening a fifo (or a device) for reading can block until a
   writer comes, and the master reads allowlists on its event loop (at
   SIGHUP); so open without waiting, look at what was opened, and refuse
   anything that is not a plain file. NULL with err filled otherwise. */
static FILE *s_open_regular(const char *path, off_t max, const char *what, char *err,
                            size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0)
        snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        snprintf(err, errlen, "cannot read %s %s: %s", what, path,
                 S_ISFIFO(st.st_mode)  ? "a fifo, not a regular file"
                 : S_ISDIR(st.st_mode) ? "a directory, not a regular file"
                                       : "not a regular file");
    else if (st.st_size > max)
        snprintf(err, errlen, "cannot read %s %s: too big (%lld bytes; at most %lld)", what,
                 path, (long long) st.st_size, (long long) max);
    else {
        /* A regular file never blocks: back to ordinary reads. */
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0)
            fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
        FILE *f = fdopen(fd, "r");
        if (f)
            return f;
        snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(errno));
    }
    close(fd);
    return NULL;
}

/* A secret key file must be private, as ssh wants its identity files:
   readable by others, or writable by its group, is refused. Readable by
   its group is allowed: the documented service setup is mode 0640, group
   ztask. 0, or -1 with err naming the chmod to run. */
static int s_check_private(FILE *f, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        snprintf(err, errlen, "cannot read key file %s: %s", path, strerror(errno));
        return -1;
    }
    if (!(st.st_mode & (S_IWGRP | S_IROTH | S_IWOTH)))
        return 0;
    snprintf(err, errlen, "refusing key file %s: it holds a secret key and is %s by others "
                          "(mode %04o); run: chmod 0600 %s (or 0640 when a service's group "
                          "must read it)",
             path, st.st_mode & S_IROTH ? "readable" : "writable",
             (unsigned) (st.st_mode & 07777), path);
    return -1;
}

/* keys_load; with secret, a file that holds a secret key must be private
   (s_check_private). */
static int s_load(const char *path, bool secret, keypair_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    FILE *f = s_open_regular(path, KEY_FILE_MAX, "key file", err, errlen);
    if (!f)
        return -1;
    /* stdio's own buffer would be freed at fclose with the file's text,
       secret key included, still in it: this one is wiped instead. */
    char iobuf[BUFSIZ];
    setvbuf(f, iobuf, _IOFBF, sizeof iobuf);
    /* Whole lines, however long: a fixed buffer would split a long comment
       and read its tail as a line of its own. */
    char *line = NULL;
    size_t cap = 0;
    char v[KEY_Z85_LEN + 1];
    while (getline(&line, &cap, f) >= 0) {
        if (s_value(line, "public-key", v))
            memcpy(out->pub, v, sizeof v);
        else if (s_value(line, "secret-key", v))
            memcpy(out->sec, v, sizeof v);
    }
    sodium_memzero(v, sizeof v);
    if (line)
        sodium_memzero(line, cap);
    free(line);
    /* Only a file that holds a secret: a .pub given by mistake gets the
       message that says so (keys_load_secret). */
    int rc = secret && out->sec[0] ? s_check_private(f, path, err, errlen) : 0;
    fclose(f);
    sodium_memzero(iobuf, sizeof iobuf);
    if (rc != 0) {
        explicit_bzero(out, sizeof *out);
        return -1;
    }
    if (!out->pub[0]) {
        snprintf(err, errlen, "%s holds no valid public-key line (make one with: ztask keygen NAME)",
                 path);
        return -1;
    }
    return 0;
}

int keys_load(const char *path, keypair_t *out, char *err, size_t errlen)
{
    return s_load(path, false, out, err, errlen);
}

int keys_load_secret(const char *path, keypair_t *out, char *err, size_t errlen)
{
    if (s_load(path, true, out, err, errlen) != 0)
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

char *keys_secret_new(const char *z85, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium cannot start");
        return NULL;
    }
    char *p = sodium_malloc(KEY_Z85_LEN + 1);
    if (!p) {
        snprintf(err, errlen, "cannot map memory for the secret key: %s", strerror(errno));
        return NULL;
    }
    snprintf(p, KEY_Z85_LEN + 1, "%s", z85);
    sodium_mprotect_readonly(p);
    return p;
}

void keys_secret_free(char **p)
{
    if (!p || !*p)
        return;
    sodium_free(*p);   /* wipes it first */
    *p = NULL;
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

/* Adds a key (and the name it came with, may be NULL); duplicates are
   merged once the list is read (s_finish). */
static void s_add(keyset_t *self, const char *key, const char *name, size_t namelen)
{
    if (self->n == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 16;
        self->keys = xrealloc(self->keys, self->cap * sizeof *self->keys);
    }
    keyset_entry_t *e = &self->keys[self->n++];
    memcpy(e->key, key, KEY_Z85_LEN + 1);
    e->name = name ? xstrndup(name, namelen) : NULL;
}

static int s_cmp_entry(const void *a, const void *b)
{
    const keyset_entry_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c || (!x->name && !y->name))
        return c;
    /* One key under several file names: the smallest name wins, so the
       name shown does not depend on the order readdir gives. */
    if (!x->name || !y->name)
        return x->name ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Sorts by key (keyset_has is a binary search: the master asks for every
   message it receives) and keeps one entry per key. */
static void s_finish(keyset_t *self)
{
    if (self->n)
        qsort(self->keys, self->n, sizeof *self->keys, s_cmp_entry);
    size_t kept = 0;
    for (size_t i = 0; i < self->n; i++) {
        if (kept && strcmp(self->keys[kept - 1].key, self->keys[i].key) == 0) {
            free(self->keys[i].name);
            continue;
        }
        self->keys[kept++] = self->keys[i];
    }
    self->n = kept;
}

static bool s_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Every *.pub and *.key file of a directory; a file that holds no key, or
   is not a regular file (a fifo would block the reader), is skipped and
   logged. */
static void s_load_dir(keyset_t *self, const char *path, DIR *d)
{
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!s_ends_with(de->d_name, ".pub") && !s_ends_with(de->d_name, ".key"))
            continue;
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, de->d_name);
        keypair_t kp;
        char e2[600];
        if (keys_load(file, &kp, e2, sizeof e2) == 0) {
            s_add(self, kp.pub, de->d_name, strlen(de->d_name) - 4);
            explicit_bzero(kp.sec, sizeof kp.sec);
        } else { /* the others still count; say why this one does not */
            char qf[512], qe[700];
            log_warn("event=allowlist_skipped file=\"%s\" error=\"%s\"",
                     log_quote(qf, sizeof qf, file), log_quote(qe, sizeof qe, e2));
        }
    }
}

/* One key per line (bare Z85 or the public-key = "..." form). -1 with err
   naming the first line that is not a key. */
static int s_load_file(keyset_t *self, const char *path, FILE *f, char *err, size_t errlen)
{
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        lineno++;
        char v[KEY_Z85_LEN + 1];
        if (s_value(line, "public-key", v) || s_value(line, NULL, v))
            s_add(self, v, NULL, 0);
        else {
            const char *p = line;
            while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
                p++;
            if (*p && *p != '#' && strncmp(p, "secret-key", 10) != 0) {
                snprintf(err, errlen, "%s:%d: not a public key (want 40 Z85 characters)", path,
                         lineno);
                rc = -1;
            }
        }
    }
    free(line);
    return rc;
}

keyset_t *keyset_load(const char *path, char *err, size_t errlen)
{
    keyset_t *self = xcalloc(1, sizeof *self);
    struct stat st;
    int rc = -1;
    if (stat(path, &st) != 0)
        snprintf(err, errlen, "cannot read allowlist %s: %s", path, strerror(errno));
    else if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            snprintf(err, errlen, "cannot read allowlist %s: %s", path, strerror(errno));
        else {
            s_load_dir(self, path, d);
            closedir(d);
            rc = 0;
        }
    } else {
        FILE *f = s_open_regular(path, ALLOWLIST_FILE_MAX, "allowlist", err, errlen);
        if (f) {
            rc = s_load_file(self, path, f, err, errlen);
            fclose(f);
        }
    }
    if (rc != 0) {
        keyset_destroy(&self);
        return NULL;
    }
    s_finish(self);
    return self;
}

static int s_cmp_key(const void *key, const void *entry)
{
    return strcmp(key, ((const keyset_entry_t *) entry)->key);
}

static const keyset_entry_t *s_find(const keyset_t *self, const char *z85)
{
    if (!self || !self->n || !z85)
        return NULL;
    return bsearch(z85, self->keys, self->n, sizeof *self->keys, s_cmp_key);
}

bool keyset_has(const keyset_t *self, const char *z85)
{
    return s_find(self, z85) != NULL;
}

const char *keyset_name(const keyset_t *self, const char *z85)
{
    const keyset_entry_t *e = s_find(self, z85);
    return e ? e->name : NULL;
}

size_t keyset_size(const keyset_t *self)
{
    return self ? self->n : 0;
}

void keyset_destroy(keyset_t **p)
{
    if (!p || !*p)
        return;
    for (size_t i = 0; i < (*p)->n; i++)
        free((*p)->keys[i].name);
    free((*p)->keys);
    free(*p);
    *p = NULL;
}
