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

/* Step 5b, for a sealed bundle: opens the payload with the server's key
 * pair (Ed25519, converted to X25519 for crypto_box_seal) into opened, and
 * gives a view of the same envelope whose payload is the opened bytes and
 * which is no longer sealed. FS_EPROTO when it was not sealed to that key. */
FS_WUR enum fs_rc proto_batch_unseal(const struct proto_batch_view *v,
                                     const unsigned char server_pk[PROTO_KEY_BYTES],
                                     const unsigned char server_sk[PROTO_SECRET_BYTES],
                                     struct fs_buf *opened, struct proto_batch_view *out /* OUT */,
                                     struct fs_err *err);

/* Envelopes one after another (a bundle file): reads the next one whole into
 * out (reset first) through rd, which returns the bytes it read (0 at the end,
 * -1 on an error). Only the lengths are checked (each part bounded before it
 * is read; the whole under PROTO_BATCH_MAX_BYTES): proto_batch_open and the
 * rest follow. FS_ENOTFOUND at a clean end, FS_EPROTO for a truncated or
 * foreign file, FS_ETOOBIG, FS_EIO when rd fails. */
typedef long (*proto_read_fn)(void *ctx, void *buf, size_t n);
/* A proto_read_fn over a stdio stream (ctx: the FILE *). */
long proto_read_stdio(void *ctx, void *buf, size_t n);
FS_WUR enum fs_rc proto_batch_read(proto_read_fn rd, void *ctx, struct fs_buf *out,
                                   struct fs_err *err);
/* Steps 1-4 for a batch read from a bundle file: lengths (sealed allowed),
 * the signature of the feed it names, a strict header of a bundle or a push
 * of that feed. FS_EINVAL (with the reason) for anything else. */
FS_WUR enum fs_rc proto_batch_check_bundle(const struct fs_buf *b,
                                           struct proto_batch_header *h /* OUT */,
                                           struct fs_err *err);

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
/* The same, its deflated payload sealed (crypto_box_seal) to the server whose
 * Ed25519 key is seal_to, and the sealed flag set: a bundle that whoever
 * carries it cannot read. */
FS_WUR enum fs_rc proto_batch_enc_finish_sealed(struct proto_batch_enc *enc,
                                                const struct proto_batch_header *h,
                                                const unsigned char pk[PROTO_KEY_BYTES],
                                                const unsigned char sk[PROTO_SECRET_BYTES],
                                                const unsigned char seal_to[PROTO_KEY_BYTES],
                                                struct fs_buf *out);

#endif
