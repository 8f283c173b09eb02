#include "claim.h"

#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define CLAIM_KEY_BYTES 32
#define CLAIM_MAC_BYTES (CLAIM_TOKEN_LEN / 2)
/* Bytes a Z85 CURVE key takes, and the 32 it stands for. */
#define Z85_KEY_LEN 40

/* Domain separation: the master's CURVE secret keys nothing else with
   these words, so a token is never some other MAC of the same secret. */
static const char s_derive_context[] = "ztask claim key v1";
static const char s_token_context[] = "ztask claim v1";

struct claim_key {
    unsigned char key[CLAIM_KEY_BYTES];
    /* BLAKE2b already keyed with key, for 16-byte output: each token
       starts from a copy (the key is set up once, not per task). */
    crypto_generichash_state keyed;
};

claim_key_t *claim_key_new(const char *curve_secret, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium cannot start");
        return NULL;
    }
    uint8_t secret[32];
    if (!curve_secret || strlen(curve_secret) != Z85_KEY_LEN
        || !zmq_z85_decode(secret, curve_secret)) {
        snprintf(err, errlen, "the master's CURVE secret key is not a Z85 key");
        return NULL;
    }
    /* sodium_malloc, as the master's secret key (keys_secret_new): guard
       pages, locked out of swap, out of core dumps, read-only once made,
       wiped by sodium_free; one page, once per process. Its alignment:
       keyed is a CRYPTO_ALIGN(64) type (malloc's 16 made an AVX-512 build,
       which copies the state with aligned 64-byte moves, SIGSEGV), and
       sodium_malloc ends the block at a page boundary, so a size that is a
       multiple of 64 (a type's size is a multiple of its alignment) starts
       64-aligned; checked, not assumed. */
    claim_key_t *self = sodium_malloc(sizeof *self);
    if (!self || (uintptr_t) self % _Alignof(claim_key_t) != 0) {
        sodium_free(self);
        sodium_memzero(secret, sizeof secret);
        snprintf(err, errlen, "cannot map memory for the claim key");
        return NULL;
    }
    memset(self, 0, sizeof *self);
    /* A key of its own rather than the secret itself: the secret is
       CURVE's, and stays out of every other computation. */
    int rc = crypto_generichash(self->key, sizeof self->key,
                                (const unsigned char *) s_derive_context,
                                sizeof s_derive_context - 1, secret, sizeof secret);
    sodium_memzero(secret, sizeof secret);
    rc |= crypto_generichash_init(&self->keyed, self->key, sizeof self->key, CLAIM_MAC_BYTES);
    assert(rc == 0);   /* sizes within BLAKE2b's bounds: cannot fail */
    (void) rc;
    sodium_mprotect_readonly(self);
    return self;
}

void claim_key_destroy(claim_key_t **p)
{
    if (!p || !*p)
        return;
    sodium_free(*p);   /* wipes it first */
    *p = NULL;
}

void claim_token(const claim_key_t *self, int64_t task, int attempt, const char *worker_key,
                 char out[CLAIM_TOKEN_LEN + 1])
{
    assert(self && worker_key);
    /* context | task (8 bytes, little endian) | attempt (4) | worker key */
    unsigned char msg[sizeof s_token_context - 1 + 8 + 4 + Z85_KEY_LEN + 1];
    size_t n = 0;
    memcpy(msg, s_token_context, sizeof s_token_context - 1);
    n += sizeof s_token_context - 1;
    for (int i = 0; i < 8; i++)
        msg[n++] = (unsigned char) ((uint64_t) task >> (8 * i));
    for (int i = 0; i < 4; i++)
        msg[n++] = (unsigned char) ((uint32_t) attempt >> (8 * i));
    size_t klen = strnlen(worker_key, Z85_KEY_LEN + 1);
    memcpy(msg + n, worker_key, klen);
    n += klen;
    unsigned char mac[CLAIM_MAC_BYTES];
    crypto_generichash_state st = self->keyed;
    int rc = crypto_generichash_update(&st, msg, n);
    rc |= crypto_generichash_final(&st, mac, sizeof mac);
    assert(rc == 0);
    (void) rc;
    sodium_memzero(&st, sizeof st);
    sodium_bin2hex(out, CLAIM_TOKEN_LEN + 1, mac, sizeof mac);
}

bool claim_valid(const claim_key_t *self, int64_t task, int attempt, const char *worker_key,
                 const char *token)
{
    if (!token || strnlen(token, CLAIM_TOKEN_LEN + 1) != CLAIM_TOKEN_LEN || !worker_key)
        return false;
    char want[CLAIM_TOKEN_LEN + 1];
    claim_token(self, task, attempt, worker_key, want);
    return sodium_memcmp(want, token, CLAIM_TOKEN_LEN) == 0;
}
