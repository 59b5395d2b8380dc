/* Fuzz target: heartbeat lines (proto_heartbeat_parse), which the server
 * reads from anyone. The input is parsed as it is; then its decoded bytes,
 * put under the fixed key and signed again, are parsed too, so that mutants
 * reach the payload rules behind the signature: such a line must be taken
 * exactly when the rules hold, and say what was signed. */
#include <sodium.h>
#include <string.h>

#include "fuzz.h"
#include "proto_auth.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct fuzz_key *k = fuzz_init();
    static const unsigned char zero[PROTO_HASH_BYTES];
    unsigned char raw[PROTO_HEARTBEAT_BYTES];
    char line[PROTO_HEARTBEAT_LINE_LEN + 1];
    struct proto_heartbeat hb;
    struct fs_err err;
    size_t got = 0;
    uint64_t seq, at;
    int rules;

    if (proto_heartbeat_parse((const char *)data, size, &hb, &err) == FS_OK) {
        FUZZ_ASSERT(size == PROTO_HEARTBEAT_LINE_LEN);
        FUZZ_ASSERT(hb.seq <= PROTO_MAX_SAFE_INT && hb.at_ms >= 0);
        FUZZ_ASSERT((hb.seq == 0) == (memcmp(hb.head, zero, sizeof zero) == 0));
    }
    if (size != PROTO_HEARTBEAT_LINE_LEN ||
        sodium_base642bin(raw, sizeof raw, (const char *)data, size, NULL, &got, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        got != sizeof raw)
        return 0;
    memcpy(raw + 1, k->pk, PROTO_KEY_BYTES);
    proto_sign_tagged(PROTO_TAG_HEARTBEAT, raw, PROTO_HEARTBEAT_PAYLOAD, k->sk,
                      raw + PROTO_HEARTBEAT_PAYLOAD);
    sodium_bin2base64(line, sizeof line, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    seq = fs_get_u64be(raw + 1 + PROTO_KEY_BYTES);
    at = fs_get_u64be(raw + 9 + PROTO_KEY_BYTES + PROTO_HASH_BYTES);
    rules = raw[0] == PROTO_HEARTBEAT_VERSION && seq <= PROTO_MAX_SAFE_INT &&
            (seq == 0) == (memcmp(raw + 9 + PROTO_KEY_BYTES, zero, sizeof zero) == 0) &&
            at <= (uint64_t)INT64_MAX;
    FUZZ_ASSERT((proto_heartbeat_parse(line, strlen(line), &hb, &err) == FS_OK) == rules);
    if (rules)
        FUZZ_ASSERT(hb.seq == seq && hb.at_ms == (int64_t)at &&
                    memcmp(hb.feed, k->pk, PROTO_KEY_BYTES) == 0 &&
                    memcmp(hb.head, raw + 9 + PROTO_KEY_BYTES, PROTO_HASH_BYTES) == 0);
    return 0;
}
