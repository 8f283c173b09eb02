/*  allow: the worker's --allow-exec list, which programs command tasks
    may start.

    A list is comma-separated; each entry is either an absolute path
    ("/usr/bin/convert") or a bare program name ("convert"):
      - a task whose argv[0] contains a '/' is allowed only when argv[0] is
        exactly one of the absolute entries (no normalisation: "./x",
        "/usr/bin/../bin/x" or a relative "bin/x" never match);
      - a task whose argv[0] is a bare name is allowed only when that name
        is one of the bare entries; the program is then found on PATH, so
        such a task may not set PATH in its env (it could point the name
        at any file);
      - a shell task runs /bin/sh, so it is allowed only when "/bin/sh" is
        an entry -- which allows any command, since the shell runs whatever
        the task says;
      - under a list, a command task's env may set only ZTASK_* variables
        and those of the --allow-env list (none by default): BASH_ENV,
        PERL5OPT, PYTHONSTARTUP and friends make an allowed program run
        code of the task's choosing. LD_* (LD_PRELOAD would run any
        library inside an allowed program), and PATH for a bare program
        name, are refused even when listed.
    Function tasks are not commands and are always allowed.

    The list limits which program starts, not what it does: an allowed
    program that runs other programs or code (a shell, an interpreter,
    env, xargs, make) hands on everything its arguments ask for.

    Threads: immutable after allow_parse; any thread may check.
*/
#ifndef ZTASK_ALLOW_H
#define ZTASK_ALLOW_H

#include "../proto/proto.h"

#include <stddef.h>

typedef struct allow allow_t;

/* Parses a comma-separated list (blanks around entries are ignored).
   Returns a new list (caller owns) or NULL with err filled: an empty
   list or entry, or a path that is not absolute. */
allow_t *allow_parse(const char *list, char *err, size_t errlen);

/* Adds the entries of another comma-separated list (for a repeated
   option). 0, or -1 with err filled (self unchanged). */
int allow_extend(allow_t *self, const char *list, char *err, size_t errlen);

/* Adds names to the --allow-env list: comma-separated variable names
   ([A-Za-z_][A-Za-z0-9_]*). 0, or -1 with err filled (self unchanged). */
int allow_env_extend(allow_t *self, const char *list, char *err, size_t errlen);

/* Number of entries. */
size_t allow_count(const allow_t *self);

/* 0 when spec may run here; -1 with why filled with one line for the
   task's error, e.g. "program 'x' is not in this worker's --allow-exec
   list". A NULL list allows everything. */
int allow_check(const allow_t *self, const proto_spec_t *spec, char *why, size_t whylen);

void allow_destroy(allow_t **p);

#endif
