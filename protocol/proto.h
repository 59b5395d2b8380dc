/*
 * fs_protocol: the wire contract of fieldsync, pure. Sizes, limits and the
 * small codecs every other module shares. This library never opens a file or
 * socket and never reads a clock: time and randomness it needs are handed in
 * (libsodium's random generator is the one exception, for key and id bits).
 *
 * Dependency rule: protocol/ includes only base/ and the C, libsodium, zlib
 * and jansson headers. Nothing here knows of the store, sync or server.
 */
#ifndef PROTO_H
#define PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "fs_buf.h"
#include "fs_err.h"
#include "fs_rc.h"

#define PROTO_KEY_BYTES    32 /* Ed25519 public key: the feed id */
#define PROTO_SECRET_BYTES 64 /* Ed25519 secret key (seed ‖ public key) */
#define PROTO_SEED_BYTES   32
#define PROTO_SIG_BYTES    64
#define PROTO_HASH_BYTES   32 /* BLAKE2b-256 */
#define PROTO_HEX_KEY_LEN  64 /* hex characters of a key or hash */
#define PROTO_UUID_LEN     36 /* 8-4-4-4-12 */
#define PROTO_TIME_MAX_LEN 40 /* longest RFC 3339 text accepted */

/* Hard limits. They bound every input and are published by the server. */
#define PROTO_ENTRY_MAX_BYTES   2048u   /* an entry is small metadata */
#define PROTO_CONTENT_MAX_BYTES 262144u /* 256 KiB of content JSON */
#define PROTO_NOTE_MAX_BYTES    65536u  /* 64 KiB of note text */
#define PROTO_TEXT_MAX_BYTES    512u    /* kind, author, site name, region */
#define PROTO_KIND_MAX_BYTES    32u
#define PROTO_FIELD_NAME_MAX    64u
#define PROTO_FIELD_VALUE_MAX   4096u
#define PROTO_FIELDS_MAX        64u
#define PROTO_ATTACHMENTS_MAX   64u
#define PROTO_HEADER_MAX_BYTES  1024u               /* batch header JSON */
#define PROTO_BATCH_MAX_BYTES   (16u << 20)         /* a batch on the wire */
#define PROTO_BATCH_MAX_RAW     (64u << 20)         /* a batch's payload once inflated */
#define PROTO_BATCH_MAX_COUNT   65536u              /* frames in one batch */
#define PROTO_MAX_SAFE_INT      9007199254740991ull /* 2^53 - 1 */

/* Domain tags: each kind of signature has its own, NUL included. */
#define PROTO_TAG_ENTRY     "fieldsync-entry-v1"
#define PROTO_TAG_BATCH     "fieldsync-batch-v1"
#define PROTO_TAG_REQ       "fieldsync-req-v1"
#define PROTO_TAG_ENROLL    "fieldsync-enroll-v1"
#define PROTO_TAG_RECEIPT   "fieldsync-receipt-v1"
#define PROTO_TAG_HEAD      "fieldsync-head-v1"
#define PROTO_TAG_FEEDS     "fieldsync-feeds-v1"
#define PROTO_TAG_HEARTBEAT "fieldsync-heartbeat-v1"

/* Must be called once before anything else (wraps sodium_init). */
FS_WUR enum fs_rc proto_init(void);

/* ---- hex ------------------------------------------------------------------ */

/* Writes 2*n lowercase hex digits and a NUL into out (2*n+1 bytes). */
void proto_hex_encode(const unsigned char *bin, size_t n, char *out);
/* Decodes exactly 2*n lowercase hex digits; anything else is FS_EINVAL. */
FS_WUR enum fs_rc proto_hex_decode(const char *hex, size_t hexlen, unsigned char *out, size_t n);

/* ---- hashing and signing ---------------------------------------------------- */

/* BLAKE2b-256 of data. */
void proto_hash(const void *data, size_t len, unsigned char out[PROTO_HASH_BYTES]);
/* Ed25519 over tag ‖ NUL ‖ msg. */
void proto_sign_tagged(const char *tag, const void *msg, size_t len,
                       const unsigned char sk[PROTO_SECRET_BYTES],
                       unsigned char sig[PROTO_SIG_BYTES]);
/* FS_OK when sig is pk's signature of tag ‖ NUL ‖ msg, else FS_EPROTO. */
FS_WUR enum fs_rc proto_verify_tagged(const char *tag, const void *msg, size_t len,
                                      const unsigned char sig[PROTO_SIG_BYTES],
                                      const unsigned char pk[PROTO_KEY_BYTES]);
/* A new key pair; sk should live in sodium_malloc'd memory. */
void proto_keypair(unsigned char pk[PROTO_KEY_BYTES], unsigned char sk[PROTO_SECRET_BYTES]);
void proto_keypair_from_seed(const unsigned char seed[PROTO_SEED_BYTES],
                             unsigned char pk[PROTO_KEY_BYTES],
                             unsigned char sk[PROTO_SECRET_BYTES]);

/* ---- time ------------------------------------------------------------------- */

/* Formats unix milliseconds as "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 chars + NUL). */
void proto_time_format_ms(int64_t unix_ms, char out[PROTO_TIME_MAX_LEN]);
/* Parses RFC 3339 "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)" into UTC unix ms.
 * require_utc: the zone must be "Z". Years 1970..9999. */
FS_WUR enum fs_rc proto_time_parse(const char *s, size_t len, int require_utc,
                                   int64_t *unix_ms /* OUT */);

/* ---- UUIDv7 record ids ------------------------------------------------------ */

/* A new lowercase UUIDv7 for unix_ms, random bits from libsodium. */
void proto_uuid7_new(int64_t unix_ms, char out[PROTO_UUID_LEN + 1]);

/* Monotonic UUIDv7s (RFC 9562 method 1): within one generator, ids sort in the
 * order they were made, even many in the same millisecond or when the clock
 * steps back, using the 12 bits after the version as a counter. Start from a
 * zeroed struct. */
struct proto_uuid7_gen {
    int64_t last_ms;
    unsigned counter;
};
void proto_uuid7_next(struct proto_uuid7_gen *g, int64_t unix_ms, char out[PROTO_UUID_LEN + 1]);
/* FS_OK when s is a lowercase UUID of version 7 and the RFC 4122 variant. */
FS_WUR enum fs_rc proto_uuid_check(const char *s, size_t len);

/* ---- numbers ---------------------------------------------------------------- */

/* The shortest decimal that reads back to exactly v ("39.717"); v finite.
 * out holds at least 32 bytes. */
void proto_double_shortest(double v, char out[32]);

#endif
