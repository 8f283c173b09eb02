/*  proto_text: the text rules every proto file shares. Internal to proto/
    (its sources and its tests), like proto_writer.h, proto_reader.h and
    proto_hooks.h.

    JSON on the wire is UTF-8 without NUL bytes (pu_utf8_bad_at); an error
    message meant for a log line or a terminal is made one line
    (pu_one_line, which proto_err_set applies); integers travel as JSON
    numbers, exact only up to PJ_MAX_SAFE_INT; lists of strings are
    NULL-terminated vectors (pu_strv_*).

    Threads: any; no shared state.
*/
#ifndef ZTASK_PROTO_TEXT_H
#define ZTASK_PROTO_TEXT_H

#include <stddef.h>

/* Integers travel as JSON numbers, which most readers (cJSON included)
   hold as doubles: only integers up to 2^53 survive exactly, so that is
   the largest id, counter or offset the protocol carries. */
#define PJ_MAX_SAFE_INT 9007199254740991LL

/* Makes s fit for one log line and for a user's terminal, in place: every
   control character (newlines, escapes) and every byte that is not part of
   valid UTF-8 becomes '?'. Never changes the length. */
void pu_one_line(char *s);

/* Offset of the first byte of data[0..len) that is not part of valid UTF-8
   (NUL counts as invalid), or len when all of it is valid. */
size_t pu_utf8_bad_at(const char *data, size_t len);
/* How many bytes from data on a JSON string may hold as they are (none
   of '"', '\\' or a control character): the run the readers skip and
   the writers copy whole. Eight bytes at a time: a 16 MB stdin is read
   and written a word per step (under TSan, every step is a checked
   access). */
size_t pu_plain_len(const char *data, size_t len);

/* NULL-terminated string vectors of n strings: free (accepts NULL), and a
   deep copy (NULL for NULL or n <= 0; the caller owns it). */
void pu_strv_free(char **v, int n);
char **pu_strv_dup(char *const *v, int n);

#endif
