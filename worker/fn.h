/*  fn: in-process task functions: the built-ins and plugins.

    Built-ins: noop (result null), echo (result = args), sleep (args
    {"seconds":S} or a bare number; cancellable), square (args.n, or the
    task's index when n is absent: result n*n), fail (always fails, with
    args.message as the error if given).

    Plugins are shared objects following include/ztask_plugin.h. A plugin
    function may not replace a built-in or a function of an earlier plugin:
    loading fails with a clear error instead.

    Threads: build the registry on one thread before the pool starts; after
    that fn_run may be called from any number of threads at once (the
    registry is read-only).
*/
#ifndef ZTASK_FN_H
#define ZTASK_FN_H

#include "../proto/proto.h"
#include "ztask_plugin.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct fn_registry fn_registry_t;

/* A registry holding the built-ins. */
fn_registry_t *fn_registry_new(void);
/* dlopen()s path and adds its functions; -1 with err filled on failure. */
int fn_registry_load(fn_registry_t *self, const char *path, char *err, size_t errlen);
/* Adds one in-process function under name (copied): an embedding
   program's own function, or a test's. -1 with err filled when the name
   is empty, too long, not UTF-8 or already taken. */
int fn_registry_add(fn_registry_t *self, const char *name, ztask_fn_t fn, char *err,
                    size_t errlen);
bool fn_registry_has(const fn_registry_t *self, const char *name);
/* How many functions there are, and the name of the i-th (borrowed,
   0 <= i < count): built-ins first, then in the order added. */
size_t fn_registry_count(const fn_registry_t *self);
const char *fn_registry_name(const fn_registry_t *self, size_t i);
/* The function names, ", "-separated, built-ins first then in the order
   added (for logs and error messages). Caller frees. */
char *fn_registry_names(const fn_registry_t *self);
/* Closes plugins (only after every fn_run has returned). */
void fn_registry_destroy(fn_registry_t **p);

/* The largest result a function may return, in bytes of JSON text; a
   larger one fails the task (a results report must stay far below
   PROTO_MAX_REPORT_MSG even when the text is escaped). */
#define FN_MAX_RESULT (4 * 1024 * 1024)

/* Runs spec (kind FN) and fills res: DONE with result_json, FAILED with
   error (unknown function, invalid args, the function's error, invalid JSON
   returned), CANCELLED when *cancel became true while it ran (a function
   that ignores cancel still runs to its end; one already set before the
   start means the function is not called). Timeout: when
   spec->timeout passes, cancelled() reports true to the function and the
   task FAILS with timed_out set once the function returns. res is the
   caller's; fn_run empties it first (proto_result_reset: strings it held
   are freed), then sets task, attempt, status, timed_out, result_json
   (compact JSON, "null" for a null result), error (one line, UTF-8),
   started and finished. Returns 0, or -1 when called without a registry
   or an FN spec (res then says FAILED when given). Blocks. */
int fn_run(const fn_registry_t *self, const proto_spec_t *spec, int64_t task_id,
           int64_t job_id, int attempt, const atomic_bool *cancel, proto_result_t *res);

#endif
