/*  proto_hooks: how the proto source files call each other. Internal to
    proto/ (see proto_text.h); the fuzz targets and test_proto use the
    tree decoders and fast paths directly, to check that both agree.

    A spec and a result are written and read inside several messages, so
    proto_spec.c and proto_result.c lend their member writers and readers
    to the message files; proto_fast.c reads the hot frames without a
    cJSON tree and falls back to the tree decoders for anything else.

    Threads: any; no shared state.
*/
#ifndef ZTASK_PROTO_HOOKS_H
#define ZTASK_PROTO_HOOKS_H

#include "proto.h"
#include "proto_writer.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* Spec to/from a cJSON object (proto_spec.c). */
proto_spec_t *ps_spec_from(cJSON *o, proto_err_t *err);
void ps_spec_write(pb_t *b, const proto_spec_t *spec);
/* A resources object (name -> amount, common/resset.h) at member k of o:
   *out NULL when absent or empty, else a set the caller owns. */
int ps_resources_from(const cJSON *o, const char *k, res_set_t **out, proto_err_t *err);
/* Writes "k":{...} for set (nothing when set is NULL). */
void ps_resources_write(pb_t *b, const char *k, const res_set_t *set);

/* Allocation queue records (proto_alloc.c): a queue to/from a cJSON
   object, and the op of an `alloc` request. */
int pa_alloc_from(cJSON *o, proto_alloc_t *q, proto_err_t *err);
void pa_alloc_write(pb_t *b, const proto_alloc_t *q);
int pa_op_from(cJSON *o, const char *k, proto_alloc_op_t *op, proto_err_t *err);

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
/* *room: the bytes the result's outputs may take as stored (JSON
   strings, quotes included), reduced by what they take; an output that
   does not fit is dropped and the result ends failed saying so
   (output_dropped). One room for all the results of one message. */
proto_result_t *pr_result_from(cJSON *o, size_t *room, proto_err_t *err);
void pr_result_write(pb_t *b, const proto_result_t *res);
/* Writes the result's members (without braces) after "task"/"attempt"/
   "status"; with res NULL, writes them all as null. */
void pr_result_members(pb_t *b, const proto_result_t *res);
/* Reads those members into res (which already has task/attempt/status). */
int pr_result_members_from(cJSON *o, proto_result_t *res, bool req, size_t *room,
                           proto_err_t *err);
/* Raw output (proto_result.c): writes "key":STRING, or "key_b64":BASE64
   when b64 is allowed and shorter; release: give raw's pages back to the
   kernel as they are written (mem_release: raw is garbage after); plain:
   raw's length as a plain string (pb_str_len) when the caller has it
   from pr_raw_len, else 0 (then scanned here if b64); returns how many
   bytes longer the member would be as a plain string than as written
   (0 when written plain); pr_raw_len is what that member's value
   takes, and gives that plain length (*plain_len, may be NULL), so that
   sizing a buffer and writing the member scan raw once. pr_b64_text
   reads member k of o (base64) into *out as repaired text (UTF-8,
   U+FFFD for bad bytes) when that, as a JSON string, fits in *room
   (which it then reduces): 0; 1 when it does not fit (*out untouched,
   and base64 longer than the room is not even decoded); -1 with err for
   bad base64. */
size_t pr_raw_member(pb_t *b, const char *key, const char *raw, size_t n, size_t plain, bool b64,
                     bool release);
size_t pr_raw_len(const char *raw, size_t n, bool b64, size_t *plain_len);
int pr_b64_text(cJSON *o, const char *k, char **out, size_t *room, proto_err_t *err);
/* An output as a member of o (proto_result.c, the one reader of both
   forms, for a result's stdout/stderr and an output report's data):
   member k, a string (required: it or k_b64 must be there), or, when k
   is absent and k_b64 present, that base64 (pr_b64_text). Either is
   counted against *room as it is stored (a JSON string) and reduces it:
   0 (*out replaced; untouched when neither is there); 1 when it does not
   fit (nothing read, *out untouched); -1 with err when malformed. */
int pr_output_text(cJSON *o, const char *k, bool required, char **out, size_t *room,
                   proto_err_t *err);

#endif
