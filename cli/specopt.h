/*  specopt: the task options of `ztask submit` (--timeout, --retries,
    --priority, --env, --cwd, --stdin, --output-cap, --require, --stdout,
    --stderr, --no-capture, --cpus, --mem, --gpus, --resource) as one
    value that is applied to every task of a job.

    With a command (argv, --shell, --fn) they fill in the base spec; with
    --file they override what each JSONL line says: scalars replace the
    line's value, --env adds variables (replacing the line's value of the
    same name), --require adds labels and the resources replace the
    line's amount of each one named.

    Ownership: a specopt_t owns its strings; specopt_clear frees them.
    Threads: any.
*/
#ifndef ZTASK_CLI_SPECOPT_H
#define ZTASK_CLI_SPECOPT_H

#include "../proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    bool has_timeout;
    double timeout;
    bool has_retries;
    int retries;
    bool has_priority;
    int32_t priority;
    bool has_output_cap;
    int64_t output_cap;
    bool has_time_request;
    double time_request;
    char *cwd;               /* NULL = not given */
    char *stdin_data;        /* NULL = not given */
    size_t stdin_len;
    char **env;              /* "KEY=VALUE" */
    int envc;
    char **require;
    int nrequire;
    res_set_t resources;     /* asked of a worker; n == 0 = nothing given */
    char *stdout_file;       /* patterns (proto_spec_path); NULL = not given */
    char *stderr_file;
    bool no_capture;
} specopt_t;

void specopt_init(specopt_t *self);
void specopt_clear(specopt_t *self);

/* True when any option is set. */
bool specopt_any(const specopt_t *self);

/* Adds one "KEY=VALUE" (KEY non-empty, no '=' in it; later values of the
   same KEY win). -1 with a reason in err when malformed. */
int specopt_add_env(specopt_t *self, const char *kv, char *err, size_t errlen);
/* Adds one label (ignored when already present). */
void specopt_add_require(specopt_t *self, const char *label);

/* Sets what every task asks of resource name ("cpus", "mem", "gpus" or
   one of the worker's own), from text as the command line has it ("2",
   "16G", "0.5"). -1 with a reason in err when malformed. */
int specopt_add_resource(specopt_t *self, const char *name, const char *text, char *err,
                         size_t errlen);

/* Writes the options into spec (see above for how they combine). */
void specopt_apply(const specopt_t *self, proto_spec_t *spec);

#endif
