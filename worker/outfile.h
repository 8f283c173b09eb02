/*  outfile: the files a command task's stdout and stderr are written to
    in full (`ztask submit --stdout PATTERN --stderr PATTERN`), beside the
    copy the master keeps (capped at output_cap, or none with
    --no-capture).

    Paths: the spec's stdout_file / stderr_file with their placeholders
    filled (proto_spec_path); a relative one is taken from the task's
    working directory (its "cwd", else the worker's). Missing directories
    are made (0755, mkdir_parents), the file is created or truncated
    (0666 less the umask). Both patterns naming one file share it (the
    streams are interleaved as they are read). Several hosts writing to
    one place need a shared filesystem: each worker writes where its own
    view of the path points.

    Errors: a file that cannot be opened fails the task before it starts
    ("cannot write stdout to 'out/7/3.out': Permission denied"); a write
    that fails later (disk full) stops writing that file and fails a task
    that otherwise succeeded.

    Threads: an outfiles_t belongs to the thread running the task.
*/
#ifndef ZTASK_OUTFILE_H
#define ZTASK_OUTFILE_H

#include "../proto/proto.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int fd[2];          /* stdout, stderr; -1 = none (or stopped after an error) */
    char *path[2];      /* owned */
    int error[2];       /* first errno of a write or close, 0 = none */
    bool shared;        /* fd[1] is fd[0] */
} outfiles_t;

/* Opens what spec asks for (nothing when it asks for no file: fd -1).
   Returns 0, or -1 with err filled ("cannot write stdout to 'P': why");
   nothing is left open then. */
int outfiles_open(outfiles_t *self, const proto_spec_t *spec, int64_t job, int64_t task,
                  int attempt, char *err, size_t errlen);

/* Appends n bytes of stream (1 = stdout, 2 = stderr) to its file, if it
   has one. Blocks on the disk. */
void outfiles_write(outfiles_t *self, int stream, const char *data, size_t n);

/* Closes the files. Returns 0, or -1 with err filled ("writing stdout to
   'P': why") when a write or the close failed. */
int outfiles_close(outfiles_t *self, char *err, size_t errlen);

#endif
