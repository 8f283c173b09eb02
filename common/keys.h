/*  keys: CURVE key files and allowlists.

    A key pair is two text files, as `ztask keygen NAME` writes them:
      NAME.key  (mode 0600)   public-key = "<40 Z85 chars>"
                              secret-key = "<40 Z85 chars>"
      NAME.pub                public-key = "<40 Z85 chars>"
    Lines starting with '#' are comments. An allowlist is either a
    directory (every *.pub or *.key file in it contributes its public key,
    named after the file: "ana" for ana.pub) or one file with one public
    key per line (bare Z85 or the `public-key = "..."` form), comments
    allowed.

    Only regular files are read, and never with a blocking open: a fifo
    named like a key file (or given as one) is refused at once instead of
    stopping the reader until someone writes to it (the master reads its
    allowlists on its event loop). Key files over 64 KiB and list files
    over 64 MiB are refused too.

    Errors fill err with one line naming the file and what is wrong.
    Threads: any; no shared state.
*/
#ifndef ZTASK_KEYS_H
#define ZTASK_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#define KEY_Z85_LEN 40

typedef struct {
    char pub[KEY_Z85_LEN + 1];
    char sec[KEY_Z85_LEN + 1];   /* empty when only the public key is known */
} keypair_t;

/* Generates a pair and writes DIR/NAME.key (0600) and DIR/NAME.pub (0644,
   less the umask). Refuses (-1, nothing written) when either file exists
   or NAME is not a plain file name. 0 or -1. */
int keys_generate(const char *dir, const char *name, keypair_t *out, char *err, size_t errlen);

/* Reads a key file: a .key gives both keys, a .pub (or any file with only
   public-key) gives the public one. 0 or -1. Every copy of the file's
   text it makes on the way (stdio's buffer, the line) is wiped before it
   returns; out->sec is the caller's to wipe (sodium_memzero) once used. */
int keys_load(const char *path, keypair_t *out, char *err, size_t errlen);

/* Reads this program's own key pair: keys_load, and the file must hold
   the secret key too and be private, as ssh wants: a file readable by
   others or writable by its group is refused with the chmod to run
   (readable by its group is fine: the service setup is 0640, group
   ztask). 0, or -1 with err (keys_load's, "refusing key file PATH: it
   holds a secret key and is readable by others (mode 0644); run: chmod
   0600 PATH", or "PATH holds no secret-key (give the .key file, not the
   .pub)"). */
int keys_load_secret(const char *path, keypair_t *out, char *err, size_t errlen);

/* A copy of a secret key's Z85 text for a program that needs it for its
   whole life (a master makes a CURVE server socket per worker), in memory
   of its own from libsodium's sodium_malloc: guard pages around it,
   locked out of swap (where RLIMIT_MEMLOCK allows: a failed mlock is not
   an error), left out of core dumps, and read-only once filled. Why that
   and not a plain buffer wiped at exit: it costs one page and a few of
   address space, once per process, and keeps the one copy out of swap,
   cores and stray writes. NULL (err) when libsodium cannot start or the
   mapping fails. Free with keys_secret_free. */
char *keys_secret_new(const char *z85, char *err, size_t errlen);
/* Wipes and frees (sodium_free); accepts NULL, nulls *p. */
void keys_secret_free(char **p);

/* A peer's public key, given as its 40 Z85 characters or as its key file
   (a .pub, or a .key of which only the public key is kept). out->sec is
   left empty. 0, or -1 with keys_load's err. */
int keys_load_public(const char *key_or_path, keypair_t *out, char *err, size_t errlen);

/* A set of allowed public keys (binary-compared in Z85 text). */
typedef struct keyset keyset_t;

/* Loads an allowlist directory or file. In a directory, a file that holds
   no key or is not a regular file is skipped and logged
   (event=allowlist_skipped); the others count. NULL with err on failure. */
keyset_t *keyset_load(const char *path, char *err, size_t errlen);
/* True when z85 is in the set (a binary search; NULL sets hold nothing). */
bool keyset_has(const keyset_t *self, const char *z85);
/* The name a key was listed under: its file's name without .pub/.key
   (the smallest one when several files hold it); NULL when the key is not
   in the set or came from a list file. Borrowed, until keyset_destroy. */
const char *keyset_name(const keyset_t *self, const char *z85);
size_t keyset_size(const keyset_t *self);
void keyset_destroy(keyset_t **p);

/* True when text is 40 valid Z85 characters that decode to 32 bytes. */
bool keys_valid_z85(const char *text);

#endif
