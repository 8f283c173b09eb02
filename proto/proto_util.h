/*  proto_util: internals shared by the proto source files; not a public
    API (nothing outside proto/ includes this header).

    Two halves:
      pb_*  a small JSON writer into a growing buffer. Encoders write JSON
            directly instead of building a cJSON tree: the hot paths (task
            batches, results with a megabyte of output) would otherwise copy
            every string twice and walk a tree just to print it, and the
            writer gives us a stable field order for free.
      pj_*  frame checks and typed field readers over a parsed cJSON tree.
            Every reader fills a proto_err_t naming the field on failure.

    Threads: any; no shared state.
*/
#ifndef ZTASK_PROTO_UTIL_H
#define ZTASK_PROTO_UTIL_H

#include "proto.h"

#include <cjson/cJSON.h>

/* Integers travel as JSON numbers, which most readers (cJSON included)
   hold as doubles: only integers up to 2^53 survive exactly, so that is
   the largest id, counter or offset the protocol carries. */
#define PJ_MAX_SAFE_INT 9007199254740991LL

/* Longest accepted task timeout: 30 days, in seconds. */
#define PROTO_MAX_TIMEOUT (30.0 * 24 * 3600)

/* ---------------------------------------------------------------- writer */

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

/* Makes s fit for one log line and for a user's terminal, in place: every
   control character (newlines, escapes) and every byte that is not part of
   valid UTF-8 becomes '?'. Never changes the length. */
void pu_one_line(char *s);

/* Offset of the first byte of data[0..len) that is not part of valid UTF-8
   (NUL counts as invalid), or len when all of it is valid. */
size_t pu_utf8_bad_at(const char *data, size_t len);

/* ---------------------------------------------------------------- reader */

/* Checks len <= max, that the text is UTF-8 without NUL bytes or \u0000
   escapes, parses it (trailing whitespace only) and requires an object.
   Returns the root (caller cJSON_Delete()s it) or NULL with err set. */
cJSON *pj_parse(const char *buf, size_t len, size_t max, proto_err_t *err);
/* pj_parse plus the envelope: "v" must be 1, "type" a string; *type is
   borrowed from the returned root. */
cJSON *pj_parse_msg(const char *buf, size_t len, size_t max, const char **type,
                    proto_err_t *err);

/* Member k of o, or NULL when absent or JSON null (null means "absent"
   everywhere in the protocol). Case-sensitive; the first of duplicates. */
cJSON *pj_get(const cJSON *o, const char *k);

/* Typed readers. When the member is absent (or null) and !req they return
   0 and leave *out as it was (the caller's default); absent and req is an
   error. Wrong type or range: -1 with err naming the field. */
int pj_i64(const cJSON *o, const char *k, bool req, int64_t lo, int64_t hi, int64_t *out,
           proto_err_t *err);
int pj_int(const cJSON *o, const char *k, bool req, int lo, int hi, int *out, proto_err_t *err);
int pj_dbl(const cJSON *o, const char *k, bool req, double lo, double hi, double *out,
           proto_err_t *err);
int pj_bool(const cJSON *o, const char *k, bool req, bool *out, proto_err_t *err);
/* A string of minlen..maxlen bytes (maxlen 0 = no limit). *out must be
   NULL; on success it owns the string. The string is taken out of the
   tree (no copy), which is why o is not const. */
int pj_str(cJSON *o, const char *k, bool req, size_t minlen, size_t maxlen, char **out,
           proto_err_t *err);
/* A NULL-terminated array of strings (*out NULL when the array is empty
   or absent), at most maxn elements, each minlen..maxlen bytes. */
int pj_str_array(cJSON *o, const char *k, bool req, int maxn, size_t minlen, size_t maxlen,
                 char ***out, int *n, proto_err_t *err);
/* An array of {"task","attempt"} objects; *out NULL when empty/absent. */
int pj_refs(const cJSON *o, const char *k, bool req, proto_task_ref_t **out, int *n,
            proto_err_t *err);
/* Any JSON value, as compact text (*out NULL when absent or null). A
   number that overflows a double anywhere in it is an error (numbers
   MUST be finite). */
int pj_json(const cJSON *o, const char *k, char **out, proto_err_t *err);
/* Checks that member k, when present, is an array of at most maxn
   elements; returns it (NULL when absent) through *arr. */
int pj_array(const cJSON *o, const char *k, bool req, int maxn, cJSON **arr, proto_err_t *err);

/* Prepends "<prefix>: " to err's message (for errors inside arrays). */
void pj_err_prefix(proto_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* NULL-terminated string arrays. */
void pu_strv_free(char **v, int n);
char **pu_strv_dup(char *const *v, int n);

/* ----------------------------------------- shared between message files */

/* Spec to/from a cJSON object (proto_spec.c). */
proto_spec_t *ps_spec_from(cJSON *o, proto_err_t *err);
void ps_spec_write(pb_t *b, const proto_spec_t *spec);

/* Fast paths for the hot frames (proto_fast.c): a worker's results
   report and one stored result, read without a cJSON tree. NULL means
   "not one of the plain shapes: decode it with cJSON" (never an error). */
proto_report_t *pf_results_report(const char *buf, size_t len);
proto_result_t *pf_result(const char *buf, size_t len);
proto_pipe_t *pf_tasks(const char *buf, size_t len);
proto_req_t *pf_submit(const char *buf, size_t len);
/* The cJSON decoders alone, without the fast paths (for the fuzz
   target, which checks that both agree). */
proto_report_t *pr_report_decode_tree(const char *buf, size_t len, proto_err_t *err);
proto_result_t *pr_result_decode_tree(const char *json, size_t len, proto_err_t *err);
proto_pipe_t *pr_pipe_decode_tree(const char *buf, size_t len, proto_err_t *err);
proto_req_t *pr_req_decode_tree(const char *buf, size_t len, proto_err_t *err);

/* Result to/from a cJSON object (proto_result.c). The fields list is what
   task info records embed flattened. */
proto_result_t *pr_result_from(cJSON *o, proto_err_t *err);
void pr_result_write(pb_t *b, const proto_result_t *res);
/* Writes the result's members (without braces) after "task"/"attempt"/
   "status"; with res NULL, writes them all as null. */
void pr_result_members(pb_t *b, const proto_result_t *res);
/* Reads those members into res (which already has task/attempt/status). */
int pr_result_members_from(cJSON *o, proto_result_t *res, bool req, proto_err_t *err);

#endif
