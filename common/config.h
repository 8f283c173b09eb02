/*  config: the ztask config file, shared by the CLI and the worker.

    A tiny `key = value` format, one setting per line:

        # where the master is, and our keys
        master       = build01:5555
        curve-secret = /home/ana/.config/ztask/ana.key
        master-key   = /home/ana/.config/ztask/master.pub
        labels       = gpu, ssd

    Blank lines and lines whose first non-blank character is '#' are
    ignored. The key is everything before the first '=', the value
    everything after it, both trimmed of blanks; a value may be wrapped in
    double quotes (the quotes are dropped). There are no inline comments:
    '#' and '=' are Z85 characters, so a master-key value may hold them.
    A key may appear once; unknown keys are errors (a typo must not
    silently drop a setting). Known keys:
      master, curve-secret, master-key, request-timeout   (the CLI)
      master, curve-secret, master-key, threads, name, labels, plugin,
      allow-exec                                          (ztask-worker)
    The parser checks only the syntax and the key names; each program
    validates the values it uses, naming the file and line (config_where).

    Which file: $ZTASK_CONFIG when set (it must exist), else the first of
    $XDG_CONFIG_HOME/ztask/config (or ~/.config/ztask/config) and
    /etc/ztask/config that exists; none is fine. A relative path value
    (config_path) is taken relative to the file's directory.

    Precedence, for every setting: command-line flag > environment
    variable > config file > built-in default (config_pick).

    Errors fill err with one line, "FILE:LINE: what is wrong".
    Threads: an instance belongs to one thread; no shared state.
*/
#ifndef ZTASK_CONFIG_H
#define ZTASK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct config config_t;

/* Largest config file read (bytes); a bigger one is an error. */
#define CONFIG_MAX_BYTES (64 * 1024)

/* Parses len bytes of text (need not be NUL-terminated; a NUL byte is an
   error). origin names the text in messages and is the base for relative
   paths (its directory); NULL means "<config>" and the current directory.
   Returns a new config (caller owns) or NULL with err filled. */
config_t *config_parse(const char *text, size_t len, const char *origin, char *err,
                       size_t errlen);

/* Reads and parses the file at path. NULL with err filled (a missing file
   is an error here too). */
config_t *config_load(const char *path, char *err, size_t errlen);

/* Finds the config file as described above and loads it into *out (caller
   owns; NULL when there is none). 0, or -1 with err filled: an unreadable
   or malformed file, or a $ZTASK_CONFIG that does not exist.
   warn: when not NULL, a per-user file ($XDG_CONFIG_HOME or ~/.config)
   that exists but cannot be read (a daemon started as another user with
   this $HOME, a directory in its place) is skipped, not an error: the
   search goes on to /etc/ztask/config and warn says what was skipped
   (else warn[0] is '\0'), for the caller to log. A malformed file is an
   error wherever it is: a setting the user wrote must not be dropped. */
int config_load_default(config_t **out, char *err, size_t errlen, char *warn, size_t warnlen);

void config_destroy(config_t **p);

/* The value of key (borrowed, valid until destroy), or NULL when the file
   does not set it. Accepts a NULL config. */
const char *config_get(const config_t *self, const char *key);

/* Like config_get, but a relative value is joined to the file's directory.
   Returns a new string (caller frees) or NULL when unset. */
char *config_path(const config_t *self, const char *key);

/* path joined to the file's directory when it is relative (a copy of it
   when absolute, or when self is NULL). Caller frees. */
char *config_join(const config_t *self, const char *path);

/* "FILE:LINE" of key's setting, for messages (borrowed, valid until the
   next call or destroy), or "" when unset. */
const char *config_where(config_t *self, const char *key);

/* True when key is one of the known keys listed above. */
bool config_key_known(const char *key);

/* Where a setting came from, after config_pick. */
typedef enum {
    CONFIG_FROM_DEFAULT = 0,
    CONFIG_FROM_FLAG,
    CONFIG_FROM_ENV,
    CONFIG_FROM_FILE
} config_from_t;

/* Applies the precedence: flag (when non-NULL), else the environment
   variable env_name (when set and non-empty; env_name may be NULL), else
   the file's key (cfg may be NULL), else NULL (the caller's default).
   *from (may be NULL) says which. Returns a borrowed string. */
const char *config_pick(const char *flag, const char *env_name, const config_t *cfg,
                        const char *key, config_from_t *from);

/* Names where a setting came from, for messages: flag ("--master"), env
   ("ZTASK_MASTER"), "FILE:LINE" (config_where's buffer) or "default".
   Borrowed. */
const char *config_origin(config_t *self, config_from_t from, const char *flag,
                          const char *env, const char *key);

/* config_pick for a path: a relative value from the file is taken
   relative to the file's directory (config_join). Returns a new string
   (caller frees), or NULL when no source sets it. */
char *config_pick_path(const char *flag, const char *env_name, const config_t *cfg,
                       const char *key, config_from_t *from);

/* The CURVE settings of ztask and ztask-worker, both picked the same way:
   curve-secret (this program's .key file: --curve-secret,
   ZTASK_CURVE_SECRET, curve-secret) and master-key (the master's public
   key, 40 Z85 characters or its key file: --master-key, ZTASK_MASTER_KEY,
   master-key). A path from the file is relative to it. Strings owned;
   config_curve_clear frees them. */
typedef struct {
    char *secret;            /* a path, or NULL */
    char *master_key;        /* Z85 text or a path, or NULL */
    char *secret_from;       /* config_origin of each, for messages, or NULL */
    char *master_key_from;
} config_curve_t;

/* Fills *out from flags (NULL when not given), environment and cfg (may
   be NULL). 0 when both or neither are set; -1 when only one is, with err
   "curve-secret is set (from WHERE) but master-key is not" (or the
   reverse) for the caller to finish with what to do; *out is filled
   anyway. */
int config_pick_curve(config_t *cfg, const char *flag_secret, const char *flag_master_key,
                      config_curve_t *out, char *err, size_t errlen);
void config_curve_clear(config_curve_t *c);

#endif
