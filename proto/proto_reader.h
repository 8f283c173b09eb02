/*  proto_reader: frame checks and typed field readers over a parsed cJSON
    tree (pj_*), used by every cJSON decoder. Internal to proto/ (see
    proto_text.h).

    A frame is checked (size, UTF-8, no NUL, one JSON object) before cJSON
    sees it; the envelope ("v" and "type") is checked once for every
    channel (pj_parse_typed). Every reader fills a proto_err_t naming the
    field on failure, so a decoder only says where it was.

    Threads: any; no shared state.
*/
#ifndef ZTASK_PROTO_READER_H
#define ZTASK_PROTO_READER_H

#include "proto.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Checks len <= max, that the text is UTF-8 without NUL bytes or \u0000
   escapes, parses it (trailing whitespace only) and requires an object.
   Returns the root (caller cJSON_Delete()s it) or NULL with err set. */
cJSON *pj_parse(const char *buf, size_t len, size_t max, proto_err_t *err);
/* pj_parse plus the envelope: "v" must be 1, "type" a string; *type is
   borrowed from the returned root. */
cJSON *pj_parse_msg(const char *buf, size_t len, size_t max, const char **type,
                    proto_err_t *err);

/* The types of one channel: names[t] is the "type" text of value t, for
   t in 1..count-1 (names[0] is unused: no type is 0). what names the
   channel's kind of type in the error ("request type"). */
typedef struct {
    const char *const *names;
    size_t count;
    const char *what;
} pj_types_t;

/* pj_parse_msg, then looks "type" up in types: returns the root (caller
   deletes) with *type set, or NULL with err set (PROTO_E_TYPE "unknown
   <what> \"<type>\"" for a name not in the table). */
cJSON *pj_parse_typed(const char *buf, size_t len, size_t max, const pj_types_t *types,
                      int *type, proto_err_t *err);

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
/* An optional claim token (proto_claim_valid) into out ("" when absent). */
int pj_claim(const cJSON *o, const char *k, char out[PROTO_CLAIM_MAX + 1], proto_err_t *err);
/* An array of {"task","attempt"} objects (each with an optional "gpus"
   and "claim"); *out NULL when empty/absent. */
int pj_refs(const cJSON *o, const char *k, bool req, proto_task_ref_t **out, int *n,
            proto_err_t *err);
/* The same with at most maxn of them (more: too_big). */
int pj_refs_max(const cJSON *o, const char *k, bool req, int maxn, proto_task_ref_t **out,
                int *n, proto_err_t *err);
/* An array of at most maxn integers in lo..hi (*out NULL when empty or
   absent; caller frees). */
int pj_i64_array(const cJSON *o, const char *k, bool req, int maxn, int64_t lo, int64_t hi,
                 int64_t **out, int *n, proto_err_t *err);
/* Any JSON value, as compact text (*out NULL when absent or null). A
   number that overflows a double anywhere in it is an error (numbers
   MUST be finite). */
int pj_json(const cJSON *o, const char *k, char **out, proto_err_t *err);
/* Checks that member k, when present, is an array of at most maxn
   elements; returns it (NULL when absent) through *arr. */
int pj_array(const cJSON *o, const char *k, bool req, int maxn, cJSON **arr, proto_err_t *err);

/* Prepends "<prefix>: " to err's message (for errors inside arrays). */
void pj_err_prefix(proto_err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
