/*
 * Shared by the fuzz targets of tests/fuzz: the libFuzzer entry point's
 * prototype, one-time set-up, and the fixed key the "signed" targets use to
 * re-sign what the fuzzer made (the Ed25519 key of the known-answer vectors,
 * seed 01 02 ... 20, so that tests/data/vectors seeds verify as they are).
 * Test code only. Each target is built either with -fsanitize=fuzzer (the
 * fuzz preset) or with replay_main.c, which runs it over its corpus.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property the target checks failed: abort, so that libFuzzer saves the
 * input and the replay fails. */
#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__, __LINE__, #cond);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct fuzz_key {
    unsigned char pk[PROTO_KEY_BYTES];
    unsigned char sk[PROTO_SECRET_BYTES];
};

/* proto_init once, and the fixed key. */
static inline const struct fuzz_key *
fuzz_init(void)
{
    static struct fuzz_key k;
    static int ready;

    if (!ready) {
        unsigned char seed[PROTO_SEED_BYTES];
        size_t i;

        if (proto_init())
            abort();
        for (i = 0; i < sizeof seed; i++)
            seed[i] = (unsigned char)(i + 1);
        proto_keypair_from_seed(seed, k.pk, k.sk);
        ready = 1;
    }
    return &k;
}

/* A batch as the server receives a push (srv_api.c), step by step, stopping
 * at the first failure: open, then (when check_sig) the batch signature,
 * header, inflate, and every frame's entry verified and chained. Inflated
 * payloads are capped at 1 MiB to keep executions fast (the same code path
 * as the 64 MiB limit). Returns the step's result (fuzz_batch_check.c). */
enum fs_rc fuzz_batch_receive(const uint8_t *data, size_t size, int check_sig);

#endif
