/* claim: the tokens that prove a worker was sent an attempt (master/claim.h). */
#include "../../master/claim.h"
#include "../../proto/proto.h"

#include "../ztest.h"
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* A fresh CURVE key pair, Z85 (41 bytes each, NUL included). */
static void s_keypair(char pub[41], char sec[41])
{
    ck_assert_int_eq(zmq_curve_keypair(pub, sec), 0);
}

static claim_key_t *s_key(const char *secret)
{
    char err[200] = "";
    claim_key_t *k = claim_key_new(secret, err, sizeof err);
    ck_assert_msg(k != NULL, "claim_key_new: %s", err);
    return k;
}

/* The usage: the master makes a token for each task it sends, the worker
   gives it back, and the master (restarted: a new key object from the same
   CURVE secret) takes it for that attempt and that worker key only. */
START_TEST(a_token_proves_that_attempt_was_sent_to_that_worker_key)
{
    char mpub[41], msec[41], wpub[41], wsec[41];
    s_keypair(mpub, msec);
    s_keypair(wpub, wsec);
    claim_key_t *k = s_key(msec);
    char token[CLAIM_TOKEN_LEN + 1];
    claim_token(k, 42, 3, wpub, token);
    ck_assert_int_eq(strlen(token), CLAIM_TOKEN_LEN);
    ck_assert(proto_claim_valid(token, strlen(token)));
    claim_key_destroy(&k);
    ck_assert_ptr_null(k);

    claim_key_t *after_restart = s_key(msec);
    ck_assert(claim_valid(after_restart, 42, 3, wpub, token));
    claim_key_destroy(&after_restart);
}
END_TEST

START_TEST(a_token_proves_nothing_for_another_task_attempt_key_or_master)
{
    char mpub[41], msec[41], wpub[41], wsec[41], opub[41], osec[41];
    s_keypair(mpub, msec);
    s_keypair(wpub, wsec);
    s_keypair(opub, osec);
    claim_key_t *k = s_key(msec);
    claim_key_t *other_master = s_key(osec);
    char token[CLAIM_TOKEN_LEN + 1];
    claim_token(k, 42, 3, wpub, token);
    ck_assert(!claim_valid(k, 43, 3, wpub, token));
    ck_assert(!claim_valid(k, 42, 4, wpub, token));
    ck_assert(!claim_valid(k, 42, 3, opub, token));
    ck_assert(!claim_valid(other_master, 42, 3, wpub, token));
    /* The task id's high bytes count too. */
    char high[CLAIM_TOKEN_LEN + 1];
    claim_token(k, 42 + ((int64_t) 1 << 40), 3, wpub, high);
    ck_assert_str_ne(token, high);
    claim_key_destroy(&k);
    claim_key_destroy(&other_master);
}
END_TEST

START_TEST(a_missing_or_malformed_token_proves_nothing)
{
    char mpub[41], msec[41], wpub[41], wsec[41];
    s_keypair(mpub, msec);
    s_keypair(wpub, wsec);
    claim_key_t *k = s_key(msec);
    char token[CLAIM_TOKEN_LEN + 1];
    claim_token(k, 7, 1, wpub, token);
    ck_assert(!claim_valid(k, 7, 1, wpub, NULL));
    ck_assert(!claim_valid(k, 7, 1, wpub, ""));
    ck_assert(!claim_valid(k, 7, 1, NULL, token));
    char longer[CLAIM_TOKEN_LEN + 2];
    snprintf(longer, sizeof longer, "%s0", token);
    ck_assert(!claim_valid(k, 7, 1, wpub, longer));
    token[CLAIM_TOKEN_LEN - 1] = token[CLAIM_TOKEN_LEN - 1] == '0' ? '1' : '0';
    ck_assert(!claim_valid(k, 7, 1, wpub, token));
    claim_key_destroy(&k);
    claim_key_destroy(NULL);
}
END_TEST

START_TEST(a_secret_that_is_not_a_z85_key_makes_no_claim_key)
{
    char err[200] = "";
    ck_assert_ptr_null(claim_key_new("not a key", err, sizeof err));
    ck_assert_msg(strstr(err, "not a Z85 key") != NULL, "%s", err);
    ck_assert_ptr_null(claim_key_new(NULL, err, sizeof err));
}
END_TEST

/* A claim key holds libsodium's BLAKE2b state, a CRYPTO_ALIGN(64) type:
   malloc aligns to 16, and a build for AVX-512 (-march=native) copies the
   state with aligned 64-byte moves (vmovdqa64), which fault elsewhere: the
   master crashed at its first token (SIGSEGV in claim_token). Several keys,
   as malloc would place them at 16 bytes past 64 three times in four. */
START_TEST(a_claim_key_is_aligned_as_the_blake2b_state_in_it_requires)
{
    char mpub[41], msec[41];
    s_keypair(mpub, msec);
    claim_key_t *keys[16];
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        keys[i] = s_key(msec);
        ck_assert_msg((uintptr_t) keys[i] % _Alignof(crypto_generichash_state) == 0,
                      "claim key %zu at %p: not aligned to %zu bytes", i, (void *) keys[i],
                      _Alignof(crypto_generichash_state));
    }
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        claim_key_destroy(&keys[i]);
}
END_TEST

int main(void)
{
    return zt_run(&(zt_suite_t){ .suite = "claim", .tcase = "core" });
}
