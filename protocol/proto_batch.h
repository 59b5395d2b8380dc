/*
 * The batch envelope (DESIGN §4): one format for push, pull and bundles.
 *
 *   "FSB1" | u8 version=1 | u8 flags | u16 reserved=0 | 32-byte signer key
 *          | u32 header_len | header | u32 payload_len | payload | 64-byte sig
 *   payload (inflated) := frame*
 *   frame := u32 entry_len | entry | 64-byte sig | u32 content_len | content
 *
 * Receivers call the steps in this order and stop at the first failure, so
 * that nothing is decompressed before it is authenticated:
 *   proto_batch_open   lengths and limits, no parsing
 *   (caller)           is the signer known and allowed?
 *   proto_batch_verify the batch signature
 *   proto_batch_header strict header JSON
 *   (caller)           replay / gap decisions from the header alone
 *   proto_batch_inflate exactly raw_len bytes, ending exactly at the payload end
 *   proto_batch_next   exactly count frames
 */
#ifndef PROTO_BATCH_H
#define PROTO_BATCH_H

#include "proto.h"

#define PROTO_BATCH_MAGIC       "FSB1"
#define PROTO_BATCH_VERSION     1
#define PROTO_BATCH_FLAG_SEALED 0x01u
/* Bytes of an envelope besides header and payload. */
#define PROTO_BATCH_FIXED_BYTES (4 + 1 + 1 + 2 + PROTO_KEY_BYTES + 4 + 4 + PROTO_SIG_BYTES)

enum proto_purpose { PROTO_PURPOSE_PUSH = 1, PROTO_PURPOSE_PULL, PROTO_PURPOSE_BUNDLE };

/* Limits a receiver applies; proto_batch_limits_default fills the v1 ones. */
struct proto_batch_limits {
    size_t max_bytes; /* whole envelope */
    size_t max_raw;   /* inflated payload */
    size_t max_count; /* frames */
};
void proto_batch_limits_default(struct proto_batch_limits *l);

/* A view into an envelope's bytes: every pointer is borrowed from them and
 * valid while they are. */
struct proto_batch_view {
    unsigned flags;
    const unsigned char *signer; /* PROTO_KEY_BYTES */
    const unsigned char *header;
    size_t header_len;
    const unsigned char *payload;
    size_t payload_len;
    const unsigned char *sig;
    const unsigned char *bytes; /* the whole envelope */
    size_t len;
};

struct proto_batch_header {
    enum proto_purpose purpose;
    int has_feed; /* 0 for a multi-feed pull: feed, from, to, to_hash are null */
    unsigned char feed[PROTO_KEY_BYTES];
    uint64_t from, to;
    unsigned char to_hash[PROTO_HASH_BYTES];
    uint64_t count;
    uint64_t raw_len;
    char created[PROTO_TIME_MAX_LEN];
};

/* One frame; pointers borrowed from the inflated payload. */
struct proto_frame {
    const unsigned char *entry;
    size_t entry_len;
    const unsigned char *sig;
    const unsigned char *content;
    size_t content_len;
};

/* Step 1: magic, version, flags (only the sealed bit, and only when
 * allow_sealed), reserved zero, every length exact and under the limits.
 * FS_ETOOBIG past a limit, FS_EPROTO otherwise. */
FS_WUR enum fs_rc proto_batch_open(const void *bytes, size_t len,
                                   const struct proto_batch_limits *lim, int allow_sealed,
                                   struct proto_batch_view *v /* OUT */, struct fs_err *err);
/* Step 3: the signer's signature over BLAKE2b-256 of every byte before it. */
FS_WUR enum fs_rc proto_batch_verify(const struct proto_batch_view *v, struct fs_err *err);
/* Step 4: strict header; count and raw_len within the limits; for push and
 * bundle the signer must be the header's feed. */
FS_WUR enum fs_rc proto_batch_header_parse(const struct proto_batch_view *v,
                                           const struct proto_batch_limits *lim,
                                           struct proto_batch_header *h /* OUT */,
                                           struct fs_err *err);
/* Step 6: inflates the (unsealed) payload into raw, which must yield exactly
 * h->raw_len bytes and end exactly at the end of the payload. Never inflates
 * more than raw_len + 1 bytes. raw is reset first. */
FS_WUR enum fs_rc proto_batch_inflate(const struct proto_batch_view *v,
                                      const struct proto_batch_header *h, struct fs_buf *raw,
                                      struct fs_err *err);
/* Step 7: the frame at *off in raw; advances *off. FS_ENOTFOUND at the exact
 * end, FS_EPROTO for a truncated or oversized frame. */
FS_WUR enum fs_rc proto_batch_next(const struct fs_buf *raw, size_t *off,
                                   struct proto_frame *f /* OUT */, struct fs_err *err);

/* ---- writing ------------------------------------------------------------------ */

struct proto_batch_enc;

/* A new encoder; deflate at level (1 recommended). Caller frees with
 * proto_batch_enc_free. */
FS_WUR enum fs_rc proto_batch_enc_new(int level, struct proto_batch_enc **out /* OUT */);
void proto_batch_enc_free(struct proto_batch_enc *enc);
/* Appends a frame. FS_ETOOBIG when the batch would pass the v1 limits (raw
 * bytes or count): the frame is not added, finish what is there. */
FS_WUR enum fs_rc proto_batch_enc_add(struct proto_batch_enc *enc, const void *entry,
                                      size_t entry_len, const unsigned char sig[PROTO_SIG_BYTES],
                                      const void *content, size_t content_len);
/* Raw (inflated) bytes and frames added so far. */
size_t proto_batch_enc_raw_len(const struct proto_batch_enc *enc);
size_t proto_batch_enc_count(const struct proto_batch_enc *enc);
/* Finishes the envelope into out (appended): h's purpose, feed, from, to,
 * to_hash and created are used; count and raw_len are filled in. Signed with
 * sk, whose public key is pk. The encoder can be freed or reused after. */
FS_WUR enum fs_rc proto_batch_enc_finish(struct proto_batch_enc *enc,
                                         const struct proto_batch_header *h,
                                         const unsigned char pk[PROTO_KEY_BYTES],
                                         const unsigned char sk[PROTO_SECRET_BYTES],
                                         struct fs_buf *out);

#endif
