/* The receiving side of a push, as srv_api.c runs it, for the batch fuzz
 * targets: every step of proto_batch.h in order, then each frame's entry. */
#include <string.h>

#include "fuzz.h"
#include "proto_batch.h"
#include "proto_entry.h"

#define FUZZ_MAX_RAW (1u << 20)

/* The frames of an inflated payload: exactly h->count, each entry verified
 * against the header's feed and following the one before it; in a multi-feed
 * pull (no feed), each against its own feed, content possibly absent. */
static enum fs_rc
frames(const struct fs_buf *raw, const struct proto_batch_header *h)
{
    struct proto_entry e;
    struct fs_err err;
    unsigned char hash[PROTO_HASH_BYTES], prev[PROTO_HASH_BYTES], own[PROTO_KEY_BYTES];
    uint64_t i;
    size_t off = 0;
    enum fs_rc rc;

    for (i = 0;; i++) {
        struct proto_frame f;
        const unsigned char *feed = h->feed;
        size_t before = off;

        rc = proto_batch_next(raw, &off, &f, &err);
        if (rc == FS_ENOTFOUND)
            break;
        if (rc)
            return rc;
        FUZZ_ASSERT(off > before && off <= raw->len);
        FUZZ_ASSERT(f.entry >= raw->data && f.entry + f.entry_len <= raw->data + raw->len);
        FUZZ_ASSERT(f.content_len == 0 || f.content + f.content_len <= raw->data + raw->len);
        if (i >= h->count)
            return FS_EPROTO;
        if (!h->has_feed) {
            rc = proto_entry_parse(f.entry, f.entry_len, &e, &err);
            if (rc)
                return rc;
            memcpy(own, e.feed, sizeof own);
            feed = own;
        }
        rc = proto_entry_verify_full(f.entry, f.entry_len, f.sig, f.content, f.content_len, feed,
                                     !h->has_feed, &e, hash, &err);
        if (rc)
            return rc;
        if (h->has_feed) {
            if (e.seq != h->from + i)
                return FS_EPROTO;
            if (i > 0 && (rc = proto_chain_follows(&e, e.seq - 1, prev, &err)))
                return rc;
        }
        memcpy(prev, hash, sizeof prev);
    }
    if (i != h->count || i == 0 || (h->has_feed && memcmp(prev, h->to_hash, PROTO_HASH_BYTES) != 0))
        return FS_EPROTO;
    return FS_OK;
}

enum fs_rc
fuzz_batch_receive(const uint8_t *data, size_t size, int check_sig)
{
    struct proto_batch_limits lim;
    struct proto_batch_view v;
    struct proto_batch_header h;
    struct fs_buf raw;
    struct fs_err err;
    enum fs_rc rc;

    fuzz_init();
    proto_batch_limits_default(&lim);
    lim.max_raw = FUZZ_MAX_RAW;
    /* Bundles may be sealed; a push never is. */
    if (proto_batch_open(data, size, &lim, 1, &v, &err) == FS_OK)
        FUZZ_ASSERT(v.len == size &&
                    v.header_len + v.payload_len + PROTO_BATCH_FIXED_BYTES == size);
    rc = proto_batch_open(data, size, &lim, 0, &v, &err);
    if (rc)
        return rc;
    if (check_sig) {
        rc = proto_batch_verify(&v, &err);
        if (rc)
            return rc;
    }
    rc = proto_batch_header_parse(&v, &lim, &h, &err);
    if (rc)
        return rc;
    FUZZ_ASSERT(h.raw_len <= lim.max_raw && h.count <= lim.max_count);
    fs_buf_init(&raw, lim.max_raw);
    rc = proto_batch_inflate(&v, &h, &raw, &err);
    if (!rc) {
        FUZZ_ASSERT(raw.len == h.raw_len);
        rc = frames(&raw, &h);
    }
    fs_buf_release(&raw);
    return rc;
}
