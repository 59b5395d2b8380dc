/* Fuzz target: an inflated batch payload (frame*), as the receiver walks it
 * after inflating: proto_batch_next, then each entry's full check against
 * the fixed key (fuzz.h) with its signature made afresh, so that the strict
 * entry parser, the feed, content and chain checks all see the mutants. */
#include <string.h>

#include "fuzz.h"
#include "proto_batch.h"
#include "proto_entry.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct fuzz_key *k = fuzz_init();
    struct proto_entry e, prev_e = {0};
    struct fs_buf raw;
    struct fs_err err;
    unsigned char sig[PROTO_SIG_BYTES], hash[PROTO_HASH_BYTES], prev[PROTO_HASH_BYTES];
    size_t off = 0, n = 0;
    enum fs_rc rc;

    fs_buf_init(&raw, size);
    if (fs_buf_add(&raw, data, size))
        abort();
    for (;;) {
        struct proto_frame f;

        rc = proto_batch_next(&raw, &off, &f, &err);
        if (rc)
            break;
        FUZZ_ASSERT(off <= raw.len);
        /* As sent: the frame's own signature verifies only when it is the
         * one the fixed key makes (Ed25519 signing is deterministic). */
        proto_entry_sign(f.entry, f.entry_len, k->sk, sig);
        if (proto_entry_verify_full(f.entry, f.entry_len, f.sig, f.content, f.content_len, k->pk, 0,
                                    &e, hash, &err) == FS_OK)
            FUZZ_ASSERT(memcmp(f.sig, sig, PROTO_SIG_BYTES) == 0);
        /* Re-signed: only the parse, the feed and the content decide. */
        rc = proto_entry_verify_full(f.entry, f.entry_len, sig, f.content, f.content_len, k->pk,
                                     f.content_len == 0, &e, hash, &err);
        if (rc)
            continue;
        FUZZ_ASSERT(memcmp(e.feed, k->pk, PROTO_KEY_BYTES) == 0);
        FUZZ_ASSERT(e.has_content || f.content_len == 0);
        if (n > 0 && proto_chain_follows(&e, prev_e.seq, prev, &err) == FS_OK)
            FUZZ_ASSERT(e.seq == prev_e.seq + 1 && e.has_prev && !memcmp(e.prev, prev, 32));
        prev_e = e;
        memcpy(prev, hash, sizeof prev);
        n++;
    }
    fs_buf_release(&raw);
    return 0;
}
