/*  idem: the submit keys the master remembers, so that a submit sent
    again (its reply was lost: the master crashed or paused between the
    commit and the answer, or the link dropped) is answered as the first
    copy was and adds nothing (docs/protocol.md, "Idempotent submits").

    A key belongs to its owner (the submitting client's CURVE key, "" for
    nobody): the same key from two clients names two requests. An entry is
    made when a keyed submit is taken in, pending until its commit (a copy
    that arrives meanwhile is answered after that commit, see api.c), and
    committed with the batch's own rows (store_submit_key_add in the same
    transaction), so a crash after the commit finds the key at start-up
    (idem_load) and before it finds neither key nor rows. A refused commit
    drops the entry: the client may send the batch again.

    Entries live IDEM_TTL_S seconds from their submit: idem_prune drops the
    older ones (the api calls it at most once a minute, on a keyed submit,
    and journals the same cut for the store). A retry later than that makes
    a second job; clients retry within seconds (cli/cmd_submit.c).

    Memory: one entry (about 200 bytes with its strings and its slot) per
    keyed submit request of the last IDEM_TTL_S seconds, and at most
    IDEM_MAX_KEYS of them (about 50 MiB): past that the oldest committed
    ones go early (idem_trim), so a flood of tiny submits is remembered for
    IDEM_MAX_KEYS / its rate seconds (250 s at 1,000 submits a second),
    still far longer than a client's resends take.

    Threads: main loop only.
*/
#ifndef ZTASK_IDEM_H
#define ZTASK_IDEM_H

#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How long a submit key is remembered (seconds). */
#define IDEM_TTL_S 3600
/* How many submit keys are remembered at most. */
#define IDEM_MAX_KEYS 250000

typedef struct idem idem_t;

/* What a keyed submit was answered (or will be, once committed). */
typedef struct {
    int64_t job;
    int64_t accepted;        /* tasks that request added */
    bool committed;          /* false while its commit is pending */
} idem_entry_t;

idem_t *idem_new(void);
/* Frees every entry. Accepts NULL, nulls *p. */
void idem_destroy(idem_t **p);

/* Reads the keys of the last IDEM_TTL_S seconds (before now_wall) from
   the store (committed entries). 0, or -1 (store_error says why). */
int idem_load(idem_t *self, store_t *store, double now_wall);

/* The entry of owner's key (borrowed until the next idem call), NULL when
   none. */
idem_entry_t *idem_get(idem_t *self, const char *owner, const char *key);

/* Remembers owner's key (strings copied) for a submit taken in at created
   (wall seconds), pending its commit; the key must be new (assert). */
void idem_put(idem_t *self, const char *owner, const char *key, const idem_entry_t *entry,
              double created);

/* Forgets owner's key (its commit was refused); nothing when absent. */
void idem_remove(idem_t *self, const char *owner, const char *key);

/* Forgets the committed keys taken in before cutoff (wall seconds).
   Returns how many. Pending ones stay: their answer is still to come. */
size_t idem_prune(idem_t *self, double cutoff);

/* Forgets the oldest committed keys while more than max are remembered.
   Returns the creation time of the newest one forgotten (a cut for the
   store's rows: the ones before it and it), or 0 when none went. */
double idem_trim(idem_t *self, size_t max);

size_t idem_size(const idem_t *self);

#endif
