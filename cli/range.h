/*  range: the index set of `ztask submit --array SPEC`.

    SPEC is a comma-separated list of elements, each one of
        N          one index
        A-B        A, A+1, ..., B            (A <= B)
        A-B:S      A, A+S, A+2S, ... <= B    (S >= 1)
    e.g. "1-1000", "1-1000:5", "1,5,9", "1-3,7,10-20:2". Indices are
    integers in 0..RANGE_MAX_INDEX; spaces around elements are allowed.
    Elements are used in the order written; an index written twice makes
    two tasks (we do not sort or merge, so the order of submission is the
    order the user wrote).

    A range is kept as its elements, never expanded: "0-999999999" costs a
    few bytes, and submit walks it lazily with a range_iter_t.

    Ownership: range_parse returns a range the caller frees with
    range_destroy. Threads: any; no shared state.
*/
#ifndef ZTASK_CLI_RANGE_H
#define ZTASK_CLI_RANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Indices travel as JSON numbers, exact only up to 2^53 - 1. */
#define RANGE_MAX_INDEX 9007199254740991LL
/* A billion tasks is far past what one master holds; a larger count is
   almost certainly a typo (an extra digit), so refuse it up front. */
#define RANGE_MAX_COUNT 1000000000LL

typedef struct range range_t;

/* Parses text. Returns NULL and writes a one-line reason into err (e.g.
   "element 2 (\"10-1\") is reversed; write 1-10") on any malformed,
   empty, reversed, zero-step or out-of-range input. */
range_t *range_parse(const char *text, char *err, size_t errlen);
void range_destroy(range_t **p);

/* Number of indices (duplicates counted), computed without expanding. */
int64_t range_count(const range_t *self);

/* Lazy walk over the indices in order. The iterator borrows the range. */
typedef struct {
    const range_t *range;
    int elem;          /* current element */
    int64_t next;      /* next index of that element */
} range_iter_t;

void range_iter_init(range_iter_t *it, const range_t *range);
/* Stores the next index and returns true, or returns false at the end. */
bool range_iter_next(range_iter_t *it, int64_t *index);

#endif
