/* Fuzz target: entry bytes through the strict parser (proto_entry_parse) and
 * the receiver's full check (proto_entry_verify_full), with properties: what
 * parses passes proto_entry_check, re-encodes to bytes that parse to the same
 * entry, and is the canonical form after one round; a signature made by the
 * fixed key verifies exactly when the entry names that key as its feed. */
#include <string.h>

#include "fuzz.h"
#include "proto_entry.h"

static int
same_entry(const struct proto_entry *a, const struct proto_entry *b)
{
    return memcmp(a->feed, b->feed, sizeof a->feed) == 0 && a->seq == b->seq &&
           a->has_prev == b->has_prev && memcmp(a->prev, b->prev, sizeof a->prev) == 0 &&
           strcmp(a->at, b->at) == 0 && a->op == b->op && strcmp(a->record_id, b->record_id) == 0 &&
           a->gen == b->gen && a->has_parent == b->has_parent &&
           memcmp(a->parent, b->parent, sizeof a->parent) == 0 &&
           a->has_content == b->has_content &&
           memcmp(a->content_hash, b->content_hash, sizeof a->content_hash) == 0 &&
           a->content_len == b->content_len && a->enc == b->enc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct fuzz_key *k = fuzz_init();
    struct proto_entry e, e2, e3;
    struct fs_buf b1, b2;
    struct fs_err err;
    unsigned char sig[PROTO_SIG_BYTES], hash[PROTO_HASH_BYTES];
    enum fs_rc rc;

    rc = proto_entry_parse(data, size, &e, &err);
    /* The fast path for canonical bytes and jansson agree, on everything. */
    FUZZ_ASSERT(proto_entry_parse_general(data, size, &e2, &err) == rc);
    FUZZ_ASSERT(rc != FS_OK || same_entry(&e, &e2));
    /* The receiver's check, with the fixed key's signature of these bytes
     * and the content absent (as for a redacted record). */
    proto_entry_sign(data, size, k->sk, sig);
    if (proto_entry_verify_full(data, size, sig, NULL, 0, k->pk, 1, &e3, hash, &err) == FS_OK)
        FUZZ_ASSERT(rc == FS_OK && memcmp(e.feed, k->pk, PROTO_KEY_BYTES) == 0);
    else
        FUZZ_ASSERT(rc != FS_OK || memcmp(e.feed, k->pk, PROTO_KEY_BYTES) != 0 ||
                    (e.has_content && e.content_len == 0));
    if (rc)
        return 0;
    FUZZ_ASSERT(proto_entry_check(&e, &err) == FS_OK);
    fs_buf_init(&b1, 2 * PROTO_ENTRY_MAX_BYTES);
    fs_buf_init(&b2, 2 * PROTO_ENTRY_MAX_BYTES);
    FUZZ_ASSERT(proto_entry_encode(&e, &b1) == FS_OK);
    rc = proto_entry_parse(b1.data, b1.len, &e2, &err);
    FUZZ_ASSERT(rc == FS_OK && same_entry(&e, &e2));
    FUZZ_ASSERT(proto_entry_parse_general(b1.data, b1.len, &e3, &err) == FS_OK &&
                same_entry(&e2, &e3));
    FUZZ_ASSERT(proto_entry_encode(&e2, &b2) == FS_OK);
    FUZZ_ASSERT(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
    fs_buf_release(&b1);
    fs_buf_release(&b2);
    return 0;
}
