/*  proto_writer: a small JSON writer into a growing buffer (pb_*), used by
    every encoder. Internal to proto/ (see proto_text.h).

    Encoders write JSON directly instead of building a cJSON tree: the hot
    paths (task batches, results with a megabyte of output) would otherwise
    copy every string twice and walk a tree just to print it, and the
    writer gives us a stable field order for free. Writing never fails
    (allocation aborts, common/util.h); what is written is always valid
    JSON text our decoders accept.

    Threads: any; a pb_t belongs to the thread writing it.
*/
#ifndef ZTASK_PROTO_WRITER_H
#define ZTASK_PROTO_WRITER_H

#include "proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *buf;
    size_t len;
    size_t cap;
} pb_t;

void pb_init(pb_t *b, size_t hint);
void pb_reserve(pb_t *b, size_t more);
void pb_raw(pb_t *b, const char *s, size_t n);
#define pb_lit(b, s) pb_raw((b), (s), sizeof(s) - 1)
void pb_char(pb_t *b, char c);
/* A comma, unless the buffer ends with '{', '[' or ':' (start of a
   container or right after a key): lets writers emit members blindly. */
void pb_sep(pb_t *b);
/* pb_sep, then "key": (key is a plain ASCII literal). */
void pb_key(pb_t *b, const char *key);
/* A JSON string from s[0..n). Invalid UTF-8 and NUL bytes become U+FFFD,
   so an encoder never emits a frame our decoders would refuse. */
void pb_str(pb_t *b, const char *s, size_t n);
void pb_cstr(pb_t *b, const char *s);     /* NULL -> null */
/* What pb_str writes for s[0..n), in bytes (quotes included), without
   writing it: up to 6 x n for control characters (\u0001). */
size_t pb_str_len(const char *s, size_t n);
/* s[0..n) as a JSON string of its base64 (RFC 4648, padded): any bytes,
   4/3 x n whatever they are; pb_b64_len(n) bytes, quotes included. */
void pb_b64(pb_t *b, const char *s, size_t n);
size_t pb_b64_len(size_t n);
/* The insides of those strings, without quotes, for a string written in
   parts: pb_str_part parts must end on a character (or a bad byte),
   pb_b64_part parts but the last must be multiples of 3 bytes. */
void pb_str_part(pb_t *b, const char *s, size_t n);
void pb_b64_part(pb_t *b, const char *s, size_t n);
void pb_i64(pb_t *b, int64_t v);
void pb_dbl(pb_t *b, double v);           /* shortest exact form; non-finite -> 0 */
void pb_bool(pb_t *b, bool v);
/* An embedded JSON value given as text: parsed and re-printed compact, so
   a malformed text cannot break the frame. NULL or invalid -> null. */
void pb_json(pb_t *b, const char *json);
/* {"v":1,"type":"<type>" (the caller adds members and the closing brace). */
void pb_open(pb_t *b, const char *type);
/* [..] of strings / of {"task","attempt"} objects (v may be NULL). */
void pb_strv(pb_t *b, char *const *v, int n);
void pb_refs(pb_t *b, const proto_task_ref_t *v, int n);
void pb_i64v(pb_t *b, const int64_t *v, int n);   /* [n integers] */
/* NUL-terminates and hands the buffer to the caller (free()). */
char *pb_take(pb_t *b);

/* key + value shorthands */
void pb_kstr(pb_t *b, const char *key, const char *s);   /* NULL -> null */
void pb_ki64(pb_t *b, const char *key, int64_t v);
void pb_kdbl(pb_t *b, const char *key, double v);
/* A wall-clock time in seconds, printed with microsecond precision. */
void pb_time(pb_t *b, double v);
void pb_ktime(pb_t *b, const char *key, double v);
void pb_kbool(pb_t *b, const char *key, bool v);

#endif
