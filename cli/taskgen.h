/*  taskgen: where the task specs of one `ztask submit` come from, one at
    a time, so a million tasks never sit in memory together.

      single   one task (a command, a shell string or an fn)
      array    a template expanded once per index of a range (--array)
      each     a template expanded once per input line (--each FILE|-)
      jsonl    one spec per JSONL line (--file FILE|-)

    Input files are read twice: a first pass checks every line (UTF-8 and
    no NUL byte for --each; a full spec decode for --file) and counts the
    tasks, so a mistake on line 900,000 is reported with its line number
    before a single task is submitted; the second pass produces the specs.
    Standard input ("-") cannot be re-read, so it is first copied to an
    anonymous temporary file (tmpfile(3), in $TMPDIR or /tmp).

    --each lines: the trailing "\n" (and a "\r" before it) is removed;
    lines that are empty or only blanks are skipped; every other line is
    used verbatim. A task's index is the 0-based line number in the input
    (so `sed -n "$((INDEX+1))p" FILE` shows the line behind a task; skipped
    blank lines leave gaps). JSONL: blank lines are skipped as well.

    Ownership: constructors take the template/range they are given (and
    null the caller's pointers); taskgen_next returns specs the caller
    owns. Threads: an instance belongs to one thread.
*/
#ifndef ZTASK_CLI_TASKGEN_H
#define ZTASK_CLI_TASKGEN_H

#include "../proto/proto.h"
#include "range.h"
#include "specopt.h"
#include "tmpl.h"

#include <stddef.h>
#include <stdint.h>

typedef struct taskgen taskgen_t;

taskgen_t *taskgen_single(tmpl_t **tmpl);
taskgen_t *taskgen_array(tmpl_t **tmpl, range_t **range);
/* NULL with a reason in err ("tasks.txt:17: not valid UTF-8", "cannot
   open x: No such file or directory", ...). */
taskgen_t *taskgen_each(tmpl_t **tmpl, const char *path, char *err, size_t errlen);
/* opts (borrowed, may be NULL) are applied to every spec read. */
taskgen_t *taskgen_jsonl(const char *path, const specopt_t *opts, char *err, size_t errlen);
void taskgen_destroy(taskgen_t **p);

/* How many specs the generator yields in all (known from the start). */
int64_t taskgen_count(const taskgen_t *self);

/* 1 with the next spec in *spec (caller owns), 0 at the end, -1 with a
   reason in err when the input could not be read (or changed between the
   two passes). */
int taskgen_next(taskgen_t *self, proto_spec_t **spec, char *err, size_t errlen);

#endif
