/*  fn_builtins: the worker's built-in task functions (noop, echo, sleep,
    square, fail), written against the same ABI as plugins
    (include/ztask_plugin.h) so fn_run treats both alike.

    Threads: any; the functions keep no state.
*/
#ifndef ZTASK_FN_BUILTINS_H
#define ZTASK_FN_BUILTINS_H

#include "ztask_plugin.h"

/* The built-in table, ending with {NULL, NULL}; static storage. */
const ztask_fn_entry_t *fn_builtins(void);

#endif
