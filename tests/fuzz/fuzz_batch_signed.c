/* Fuzz target: a batch envelope re-signed before it is read, so that the
 * header parser, the inflater and the frame decoder see every mutant. The
 * signer field is set to the fixed key (fuzz.h) and the last 64 bytes become
 * that key's batch signature, as a device holding a valid key could send. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proto_batch.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct fuzz_key *k = fuzz_init();
    unsigned char *b, d[PROTO_HASH_BYTES];
    struct proto_batch_view v;
    struct proto_batch_limits lim;
    struct fs_err err;

    if (size < PROTO_BATCH_FIXED_BYTES)
        return 0;
    b = malloc(size);
    if (!b)
        abort();
    memcpy(b, data, size);
    memcpy(b + 8, k->pk, PROTO_KEY_BYTES);
    proto_hash(b, size - PROTO_SIG_BYTES, d);
    proto_sign_tagged(PROTO_TAG_BATCH, d, sizeof d, k->sk, b + size - PROTO_SIG_BYTES);
    /* Whatever opens now carries a signature that verifies. */
    proto_batch_limits_default(&lim);
    if (proto_batch_open(b, size, &lim, 1, &v, &err) == FS_OK)
        FUZZ_ASSERT(proto_batch_verify(&v, &err) == FS_OK);
    (void)fuzz_batch_receive(b, size, 1);
    free(b);
    return 0;
}
