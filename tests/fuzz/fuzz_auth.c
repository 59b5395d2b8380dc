/* Fuzz target: the Authorization header value of a signed request
 * (proto_req_auth_parse), as the server reads it before anything else. What
 * parses formats to a value that parses to the same fields; the signature it
 * carries is then checked as the server would (it must not verify unless it
 * is the fixed key's, made here afresh over a request drawn from the input). */
#include <string.h>

#include "fuzz.h"
#include "proto_auth.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct fuzz_key *k = fuzz_init();
    struct proto_req_auth a, b;
    char text[PROTO_AUTH_HEADER_MAX], fp[PROTO_TOKEN_FP_HEX + 1];

    /* Tokens travel in enrollment bodies; the same bytes make a fine input. */
    if (proto_token_parse((const char *)data, size, fp) == FS_OK)
        FUZZ_ASSERT(strlen(fp) == PROTO_TOKEN_FP_HEX);
    if (proto_req_auth_parse((const char *)data, size, &a))
        return 0;
    proto_req_auth_format(&a, text);
    FUZZ_ASSERT(proto_req_auth_parse(text, strlen(text), &b) == FS_OK);
    FUZZ_ASSERT(memcmp(&a, &b, sizeof a) == 0);
    /* The parsed signature over a GET with no body, then the same request
     * signed by the fixed key as the feed the header names. */
    if (memcmp(a.feed, k->pk, PROTO_KEY_BYTES) != 0)
        FUZZ_ASSERT(proto_req_verify(&a, "GET", "/v1/health", NULL, 0, k->pk) != FS_OK);
    memcpy(b.feed, k->pk, PROTO_KEY_BYTES);
    proto_req_sign(&b, "POST", text, data, size, k->pk, k->sk);
    FUZZ_ASSERT(proto_req_verify(&b, "POST", text, data, size, k->pk) == FS_OK);
    FUZZ_ASSERT(proto_req_verify(&b, "PUT", text, data, size, k->pk) != FS_OK);
    proto_req_sign_chunk(&b, "PATCH", text, a.ts >= 0 ? (uint64_t)a.ts : 0, size, k->pk, k->sk);
    FUZZ_ASSERT(proto_req_verify_chunk(&b, "PATCH", text, a.ts >= 0 ? (uint64_t)a.ts : 0, size,
                                       k->pk) == FS_OK);
    return 0;
}
