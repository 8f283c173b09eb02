/*  imap: a hash map from int64 keys to pointers (open addressing, linear
    probing, backward-shift deletion). The master indexes tasks and jobs by
    id with it. A slot is 16 bytes and the table is kept at most 70% full
    (it doubles before passing that, and halves once it is over 1,024
    slots and under 12.5% full), so a million entries take 2^21 slots:
    32 MiB.

    Ownership: the map stores pointers and never frees them. Keys must not
    be INT64_MIN (reserved as the empty marker) and values must not be
    NULL (NULL is how imap_get and imap_remove say "absent"); both are
    checked with assert().
    Threads: an instance belongs to one thread.
*/
#ifndef ZTASK_IMAP_H
#define ZTASK_IMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct imap imap_t;

imap_t *imap_new(void);
void imap_destroy(imap_t **p);

/* Sets key to value (replacing any previous value). */
void imap_put(imap_t *self, int64_t key, void *value);
/* The value for key, or NULL. */
void *imap_get(const imap_t *self, int64_t key);
/* Removes key; returns its value, or NULL when absent. */
void *imap_remove(imap_t *self, int64_t key);
size_t imap_size(const imap_t *self);

/* Iteration: *pos starts at 0; returns the next value (and its key, when
   key is not NULL), or NULL at the end. The map must not change during an
   iteration, not even by removing the key just returned: a removal moves
   later entries back into slots already passed (backward shift) and may
   shrink the table. Collect the keys first, then remove them. */
void *imap_next(const imap_t *self, size_t *pos, int64_t *key);

#endif
