/* Fuzz target: the body of POST /v1/enroll (proto_enroll_req_parse), which
 * the server parses from anyone. What parses formats to a body that parses
 * to the same request; the proof must verify exactly when it is the one the
 * fixed key makes for that token and name. */
#include <string.h>

#include "fuzz.h"
#include "proto_auth.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct fuzz_key *k = fuzz_init();
    struct proto_enroll_req r, r2;
    struct fs_buf b;
    struct fs_err err;
    unsigned char th[PROTO_HASH_BYTES], sig[PROTO_SIG_BYTES];
    char fp[PROTO_TOKEN_FP_HEX + 1];

    if (proto_enroll_req_parse(data, size, &r, &err))
        return 0;
    FUZZ_ASSERT(proto_token_parse(r.token, strlen(r.token), fp) == FS_OK);
    FUZZ_ASSERT(proto_name_valid(r.name));
    fs_buf_init(&b, 16384);
    FUZZ_ASSERT(proto_enroll_req_format(&r, &b) == FS_OK);
    FUZZ_ASSERT(proto_enroll_req_parse(b.data, b.len, &r2, &err) == FS_OK);
    FUZZ_ASSERT(strcmp(r.token, r2.token) == 0 && strcmp(r.name, r2.name) == 0 &&
                memcmp(r.feed, r2.feed, sizeof r.feed) == 0 &&
                memcmp(r.sig, r2.sig, sizeof r.sig) == 0);
    fs_buf_release(&b);
    proto_token_hash(r.token, strlen(r.token), th);
    proto_enroll_sign(r.token, strlen(r.token), r.name, k->pk, k->sk, sig);
    FUZZ_ASSERT(proto_enroll_verify(th, r.name, k->pk, sig) == FS_OK);
    if (memcmp(r.sig, sig, sizeof sig) != 0)
        FUZZ_ASSERT(proto_enroll_verify(th, r.name, k->pk, r.sig) != FS_OK);
    return 0;
}
