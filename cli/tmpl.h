/*  tmpl: one task spec used as a template for many tasks (`ztask submit
    --array` / `--each`), with "{}" placeholders filled in per task.

    Where "{}" is replaced: in every argv element, in the shell string, and
    in every string value inside fn args (walked as JSON, so "{}" in the
    args can never produce invalid JSON; object keys are left alone). Every
    occurrence is replaced; there is no escape for a literal "{}".

    The value is inserted verbatim. In a shell string that means the shell
    sees it unquoted: `--shell '{}'` runs each input line as a command,
    and a file name with spaces needs quotes around the placeholder
    (`--shell 'wc -l "{}"'`).

    Ownership: tmpl_new takes the base spec; tmpl_expand returns a new spec
    the caller frees with proto_spec_destroy. Threads: any; an instance
    belongs to one thread.
*/
#ifndef ZTASK_CLI_TMPL_H
#define ZTASK_CLI_TMPL_H

#include "../proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tmpl tmpl_t;

typedef enum {
    TMPL_REPLACE = 0,        /* --array: fill in "{}" where present, else nothing */
    TMPL_REPLACE_OR_APPEND   /* --each: with no "{}" anywhere, append the value */
} tmpl_mode_t;

/* Returns a copy of text with every "{}" replaced by value (caller frees). */
char *tmpl_subst(const char *text, const char *value);

/* Takes *base (and nulls it, success or not) and checks it the way the
   master will (by encoding and decoding it), so a bad option is reported
   before anything is sent. Returns NULL with a reason in err on failure. */
tmpl_t *tmpl_new(proto_spec_t **base, char *err, size_t errlen);
void tmpl_destroy(tmpl_t **p);

/* True when "{}" appears in argv, the shell string or the fn args. */
bool tmpl_has_placeholder(const tmpl_t *self);

/* True when TMPL_REPLACE_OR_APPEND has somewhere to put the value: the
   template has a placeholder, or it is an exec task (argv: appended as the
   last argument; shell: appended after a space), or an fn task without
   args (the value becomes args, as a JSON string). */
bool tmpl_can_append(const tmpl_t *self);

/* The spec for one task: a copy of the base with placeholders replaced by
   value (when value is not NULL) and "index" set to index (when >= 0).
   Caller owns the result. */
proto_spec_t *tmpl_expand(const tmpl_t *self, const char *value, int64_t index, tmpl_mode_t mode);

/* The base spec (borrowed). */
const proto_spec_t *tmpl_base(const tmpl_t *self);

#endif
