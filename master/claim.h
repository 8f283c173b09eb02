/*  claim: the token that proves a worker was sent an attempt of a task.

    After a master crash, a task sent less than ASSIGN_WRITE_MS before it
    has no stored assignment (journal.h): the restarted master finds it
    queued, exactly like a task that was never sent, and its worker claims
    it in its hello (or with its result). Without proof, any worker key
    could claim every task found queued at start and report an outcome
    for it. So each task the master sends carries a claim token, a MAC of
    (task id, attempt, the key of the worker it is sent to) under a key
    only the master holds, and a claim of an attempt with no stored
    assignment counts only with the token of that attempt for the
    claimant's key. The worker keeps the token with the task, never reads
    it, and gives it back with the claim.

    Why a MAC and not a write: the write is what ASSIGN_WRITE_MS saves
    (most tasks end before it, and their finish row is their only write);
    the token costs no I/O, 0.33-0.36 us of hashing per send (measured on
    this repository's 2-core test machine, hex included) and 43 bytes on
    the wire each way.

    The key is derived from the master's CURVE secret key, so it survives
    a restart with nothing stored, and is there exactly when worker keys
    mean something: without CURVE a claim is by name (docs/security.md).
    A master given another --curve-secret refuses the tokens of the old
    one: those tasks run again, which is what a lost claim always meant.
    BLAKE2b-128 keyed (libsodium's crypto_generichash), compared in
    constant time (sodium_memcmp). Why libsodium: libzmq already links it
    for CURVE (Debian's libzmq5 depends on libsodium23, and libzmq3-dev on
    libsodium-dev), so it adds a pkg-config name and headers, not a
    library the processes did not load; the alternatives were a MAC of our
    own (no: crypto is not written here) or OpenSSL or GnuTLS, which
    nothing else in ztask uses directly.

    Threads: a claim_key_t is read-only after claim_key_new; any thread.
*/
#ifndef ZTASK_CLAIM_H
#define ZTASK_CLAIM_H

#include "../proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct claim_key claim_key_t;

/* The tokens this master makes: 32 lowercase hex digits. Workers keep
   any token within proto_claim_valid's bound (PROTO_CLAIM_MAX), so this
   format may change without older workers refusing tasks; what a master
   takes back is checked here (claim_valid), strictly. */
#define CLAIM_TOKEN_LEN 32

/* The claim key of a master whose CURVE secret key is curve_secret (Z85,
   40 characters). NULL when it is not a Z85 key or libsodium cannot
   start (err says which). The caller owns the result. */
claim_key_t *claim_key_new(const char *curve_secret, char *err, size_t errlen);
/* Wipes and frees; accepts NULL, nulls *p. */
void claim_key_destroy(claim_key_t **p);

/* The token of attempt of task sent to the worker whose CURVE public key
   is worker_key (Z85): CLAIM_TOKEN_LEN lowercase hex digits into out. */
void claim_token(const claim_key_t *self, int64_t task, int attempt, const char *worker_key,
                 char out[CLAIM_TOKEN_LEN + 1]);

/* True when token (NULL or "" = none) is the token of that attempt of
   task for worker_key. Takes the same time whatever bytes differ. */
bool claim_valid(const claim_key_t *self, int64_t task, int attempt, const char *worker_key,
                 const char *token);

#endif
