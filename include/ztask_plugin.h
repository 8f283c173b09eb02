/*  ztask_plugin.h: the public interface for in-process task functions.

    A plugin is a shared object loaded by `ztask-worker --plugin PATH`. It
    exports one symbol, ztask_plugin_functions, returning a table of named
    functions. A task {"fn":"NAME","args":{...}} then runs NAME on a worker
    thread, in the worker's process, with no fork.

        static int hello(const ztask_call_t *call, char **result, char **error)
        {
            *result = strdup("\"hello\"");          // JSON text, malloc'd
            return 0;
        }
        static const ztask_fn_entry_t table[] = {{"hello", hello}, {NULL, NULL}};
        const ztask_fn_entry_t *ztask_plugin_functions(int *abi)
        {
            *abi = ZTASK_PLUGIN_ABI;
            return table;
        }

    Rules for a function:
    - It runs on one of the worker's threads, possibly on several threads at
      once: keep no unsynchronised global state.
    - args_json is the task's "args" as compact JSON text ("null" when the
      task has none). Parse it with any JSON library.
    - Return 0 and set *result to malloc'd JSON text (or leave it NULL for
      a null result); or return non-zero and set *error to a malloc'd
      one-line message (or leave it NULL for a generic one). The worker
      frees both with free(). Invalid JSON in *result fails the task.
    - Long-running functions should poll call->cancelled(call) and return
      early when it is non-zero (the task was cancelled or timed out).
    - Never call exit(), never fork without exec, never touch signals.
*/
#ifndef ZTASK_PLUGIN_H
#define ZTASK_PLUGIN_H

#include <stdint.h>

#define ZTASK_PLUGIN_ABI 1

typedef struct ztask_call ztask_call_t;
struct ztask_call {
    int abi;                    /* ZTASK_PLUGIN_ABI */
    int64_t task_id;            /* global task id */
    int64_t job_id;
    int64_t index;              /* array index, or -1 */
    int attempt;                /* 1 for the first run */
    const char *args_json;      /* borrowed for the call's duration */
    int (*cancelled)(const ztask_call_t *call);
    void *internal;             /* the worker's, do not touch */
};

typedef int (*ztask_fn_t)(const ztask_call_t *call, char **result, char **error);

typedef struct {
    const char *name;
    ztask_fn_t fn;
} ztask_fn_entry_t;

/* The one symbol a plugin exports: sets *abi to ZTASK_PLUGIN_ABI and
   returns a table ending with {NULL, NULL}, valid while loaded. */
const ztask_fn_entry_t *ztask_plugin_functions(int *abi);

#endif
