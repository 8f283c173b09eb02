/*  fuzz: the checks behind every fuzz target, one per parser of outside
    input. Two callers share them:

      tests/fuzz/entry.c                libFuzzer entry point, built once per
                                        target with clang (make fuzz)
      tests/unit/test_fuzz_regress.c    replays every seed and every saved
                                        crash through the same checks with
                                        any compiler (make test)

    so an input that once broke a parser keeps being proven by the plain
    test run, sanitizers or not.

    A check hands one input to one parser and, when the parser accepts it,
    checks what must then hold: a decoded message re-encodes to a text that
    decodes and re-encodes to the very same text; a range yields exactly
    range_count indices; a refusal names a known error code with a one-line
    message. Memory errors are for the sanitizers (and valgrind) to catch;
    a broken property comes back as FUZZ_BROKEN with a description, and the
    libFuzzer entry turns that into an abort so the input is saved.

    Checks never abort on their own, hold no state between calls and leave
    no file behind (inputs that must be files live in memfd_create(2)
    memory). Threads: any.
*/
#ifndef ZTASK_TESTS_FUZZ_H
#define ZTASK_TESTS_FUZZ_H

#include "../../proto/proto.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    FUZZ_BROKEN = -1,   /* a property failed: why holds one line on what */
    FUZZ_REJECTED = 0,  /* the parser refused the input, properly */
    FUZZ_ACCEPTED = 1   /* the parser took it and every property held */
} fuzz_verdict_t;

/* data[0..size) is borrowed and need not be NUL-terminated. */
typedef fuzz_verdict_t (*fuzz_check_fn)(const uint8_t *data, size_t size, char *why,
                                        size_t whylen);

typedef struct {
    const char *name;      /* directory name under tests/fuzz/{corpus,regress}/ */
    fuzz_check_fn check;
} fuzz_target_t;

/* Every target, in a fixed order; fuzz_ntargets entries. */
extern const fuzz_target_t fuzz_targets[];
extern const int fuzz_ntargets;

/* proto/: one decoder each (fuzz_proto.c). */
fuzz_verdict_t fuzz_check_req(const uint8_t *data, size_t size, char *why, size_t whylen);
fuzz_verdict_t fuzz_check_reply(const uint8_t *data, size_t size, char *why, size_t whylen);
fuzz_verdict_t fuzz_check_pipe(const uint8_t *data, size_t size, char *why, size_t whylen);
fuzz_verdict_t fuzz_check_report(const uint8_t *data, size_t size, char *why, size_t whylen);
fuzz_verdict_t fuzz_check_spec(const uint8_t *data, size_t size, char *why, size_t whylen);
fuzz_verdict_t fuzz_check_result(const uint8_t *data, size_t size, char *why, size_t whylen);

/* cli/: --array ranges, --file JSONL, --each lines (fuzz_cli.c). */
fuzz_verdict_t fuzz_check_range(const uint8_t *data, size_t size, char *why, size_t whylen);
fuzz_verdict_t fuzz_check_jsonl(const uint8_t *data, size_t size, char *why, size_t whylen);
fuzz_verdict_t fuzz_check_each(const uint8_t *data, size_t size, char *why, size_t whylen);

/* common/: key files and allowlists, the config file, UTF-8 and host:port
   (fuzz_common.c). */
fuzz_verdict_t fuzz_check_keys(const uint8_t *data, size_t size, char *why, size_t whylen);
fuzz_verdict_t fuzz_check_config(const uint8_t *data, size_t size, char *why, size_t whylen);
fuzz_verdict_t fuzz_check_util(const uint8_t *data, size_t size, char *why, size_t whylen);

/* ---------------------------------------------- helpers for the checks */

/* Fills why (printf-style) and returns FUZZ_BROKEN. */
fuzz_verdict_t fuzz_broken(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True when msg is fit to show a user and to log on one line: non-empty,
   valid UTF-8, no control characters. */
int fuzz_one_line(const char *msg);

/* Checks a spec the CLI built: what proto.h promises of a decoded spec
   holds, and its encoding decodes and re-encodes to the same text (so the
   master will take it). what names it in why. */
fuzz_verdict_t fuzz_spec_stable(const proto_spec_t *spec, const char *what, char *why,
                                size_t whylen);

/* Puts data in an anonymous in-memory file and writes a path that opens it
   ("/proc/self/fd/N") into path. Returns the fd (the caller closes it,
   which frees the file) or -1. */
int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t pathlen);

#endif
