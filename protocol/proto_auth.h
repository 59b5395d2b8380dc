/*
 * Authentication objects of the HTTP API (DESIGN §2, §5): request signatures
 * carried in the Authorization header, enrollment tokens and their proof,
 * and server-signed JSON answers ({"signed": "<JSON text>", "sig": "<hex>"}).
 * Pure: callers hand in the time, the keys and the bytes.
 */
#ifndef PROTO_AUTH_H
#define PROTO_AUTH_H

#include "proto.h"

#define PROTO_NONCE_BYTES        16
#define PROTO_AUTH_WINDOW_S      300 /* a request's ts may be this far from the server's clock */
#define PROTO_AUTH_HEADER_MAX    512
#define PROTO_TOKEN_SECRET_BYTES 32
#define PROTO_TOKEN_FP_HEX       16 /* the server key fingerprint: first 16 hex digits */
/* "fs1_" fp "_" secret hex */
#define PROTO_TOKEN_LEN      (4 + PROTO_TOKEN_FP_HEX + 1 + 2 * PROTO_TOKEN_SECRET_BYTES)
#define PROTO_NAME_MAX_BYTES PROTO_TEXT_MAX_BYTES

/* ---- request signatures ------------------------------------------------------ */

struct proto_req_auth {
    unsigned char feed[PROTO_KEY_BYTES];
    int64_t ts; /* unix seconds */
    unsigned char nonce[PROTO_NONCE_BYTES];
    unsigned char sig[PROTO_SIG_BYTES];
};

/* Parses "Fieldsync feed=<hex>, ts=<s>, nonce=<hex>, sig=<hex>" strictly (each
 * parameter exactly once, in any order). FS_EINVAL otherwise. */
FS_WUR enum fs_rc proto_req_auth_parse(const char *header, size_t len,
                                       struct proto_req_auth *out /* OUT */);
/* Formats the header value (without "Authorization: ") into out. */
void proto_req_auth_format(const struct proto_req_auth *a, char out[PROTO_AUTH_HEADER_MAX]);

/* Signs a request: "fieldsync-req-v1\0" ‖ method \n target \n ts \n nonce hex \n
 * hex(BLAKE2b-256(body)) \n server key hex. target is the path and query as
 * sent. a->feed, a->ts and a->nonce must be set; a->sig is filled. */
void proto_req_sign(struct proto_req_auth *a, const char *method, const char *target,
                    const void *body, size_t body_len,
                    const unsigned char server_pk[PROTO_KEY_BYTES],
                    const unsigned char sk[PROTO_SECRET_BYTES]);
/* Verifies a parsed request signature against a->feed. FS_EAUTH otherwise. */
FS_WUR enum fs_rc proto_req_verify(const struct proto_req_auth *a, const char *method,
                                   const char *target, const void *body, size_t body_len,
                                   const unsigned char server_pk[PROTO_KEY_BYTES]);

/* A blob chunk's request: the same text, with "offset:length" in place of
 * the body's hash, so the server checks it before a byte of the chunk is
 * read (the blob's own hash checks the content at the end). */
void proto_req_sign_chunk(struct proto_req_auth *a, const char *method, const char *target,
                          uint64_t offset, uint64_t length,
                          const unsigned char server_pk[PROTO_KEY_BYTES],
                          const unsigned char sk[PROTO_SECRET_BYTES]);
FS_WUR enum fs_rc proto_req_verify_chunk(const struct proto_req_auth *a, const char *method,
                                         const char *target, uint64_t offset, uint64_t length,
                                         const unsigned char server_pk[PROTO_KEY_BYTES]);

/* ---- enrollment tokens ---------------------------------------------------------- */

/* A new token for the server whose key is server_pk: "fs1_<fp>_<secret>". */
void proto_token_new(const unsigned char server_pk[PROTO_KEY_BYTES], char out[PROTO_TOKEN_LEN + 1]);
/* Checks a token's shape; fp receives its server fingerprint (16 hex + NUL). */
FS_WUR enum fs_rc proto_token_parse(const char *token, size_t len,
                                    char fp[PROTO_TOKEN_FP_HEX + 1] /* OUT */);
/* The fingerprint of a server key: its first 16 hex digits. */
void proto_key_fingerprint(const unsigned char pk[PROTO_KEY_BYTES],
                           char fp[PROTO_TOKEN_FP_HEX + 1]);
/* The stored form of a token: BLAKE2b-256 of its text. */
void proto_token_hash(const char *token, size_t len, unsigned char out[PROTO_HASH_BYTES]);

/* The enrollment proof: Ed25519(feed key, "fieldsync-enroll-v1\0" ‖
 * BLAKE2b-256(token) ‖ feed key ‖ name). */
void proto_enroll_sign(const char *token, size_t token_len, const char *name,
                       const unsigned char feed_pk[PROTO_KEY_BYTES],
                       const unsigned char sk[PROTO_SECRET_BYTES],
                       unsigned char sig[PROTO_SIG_BYTES]);
FS_WUR enum fs_rc proto_enroll_verify(const unsigned char token_hash[PROTO_HASH_BYTES],
                                      const char *name,
                                      const unsigned char feed_pk[PROTO_KEY_BYTES],
                                      const unsigned char sig[PROTO_SIG_BYTES]);

/* The body of POST /v1/enroll: {"token","feed","name","sig"}. */
#define PROTO_TAG_ENROLLED "fieldsync-enrolled-v1"
struct proto_enroll_req {
    char token[PROTO_TOKEN_LEN + 1];
    unsigned char feed[PROTO_KEY_BYTES];
    char name[PROTO_NAME_MAX_BYTES + 1];
    unsigned char sig[PROTO_SIG_BYTES];
};
/* Strict parse (at most 4 KiB, exactly those keys, a well-formed token, a
 * name of 1-512 bytes of UTF-8 without control characters). */
FS_WUR enum fs_rc proto_enroll_req_parse(const void *bytes, size_t len,
                                         struct proto_enroll_req *out /* OUT */,
                                         struct fs_err *err);
FS_WUR enum fs_rc proto_enroll_req_format(const struct proto_enroll_req *r, struct fs_buf *out);
/* Whether s is an acceptable device name. */
int proto_name_valid(const char *s);

/* ---- heartbeats -------------------------------------------------------------------- */
/* A feed's signed word on what it holds, short enough for a text message or a
 * note read out over a phone: the line is base64url, without padding, of
 * payload ‖ sig, where payload is
 *   u8 version = 1 | 32-byte feed key | u64 seq | 32-byte head | i64 unix ms
 * (integers big-endian; head all zero exactly when seq is 0) and sig is
 * Ed25519(feed key, "fieldsync-heartbeat-v1\0" ‖ payload). Anyone may carry
 * it; it says nothing the feed's own entries would not. */
#define PROTO_HEARTBEAT_VERSION  1
#define PROTO_HEARTBEAT_PAYLOAD  (1 + PROTO_KEY_BYTES + 8 + PROTO_HASH_BYTES + 8)
#define PROTO_HEARTBEAT_BYTES    (PROTO_HEARTBEAT_PAYLOAD + PROTO_SIG_BYTES)
#define PROTO_HEARTBEAT_LINE_LEN ((PROTO_HEARTBEAT_BYTES * 4 + 2) / 3) /* 194 */
struct proto_heartbeat {
    unsigned char feed[PROTO_KEY_BYTES];
    uint64_t seq; /* the feed's last seq on that device */
    unsigned char head[PROTO_HASH_BYTES];
    int64_t at_ms; /* the device's clock when it wrote the line */
};
void proto_heartbeat_line(const struct proto_heartbeat *hb,
                          const unsigned char sk[PROTO_SECRET_BYTES],
                          char out[PROTO_HEARTBEAT_LINE_LEN + 1]);
/* Strict: exactly PROTO_HEARTBEAT_LINE_LEN characters of canonical base64url,
 * version 1, seq at most 2^53 - 1, head zero exactly when seq is 0, a time not
 * before 1970; FS_EINVAL with the reason. Then the signature against the feed
 * key it names: FS_EPROTO when it fails. */
FS_WUR enum fs_rc proto_heartbeat_parse(const char *line, size_t len,
                                        struct proto_heartbeat *out /* OUT */, struct fs_err *err);

/* ---- server-signed JSON ----------------------------------------------------------- */

/* Appends {"signed":"<json escaped>","sig":"<hex>"} to out, signing the JSON
 * text with tag (PROTO_TAG_RECEIPT, _HEAD, _FEEDS). */
FS_WUR enum fs_rc proto_signed_wrap(const char *tag, const char *json, size_t len,
                                    const unsigned char sk[PROTO_SECRET_BYTES], struct fs_buf *out);
/* Checks a wrapped answer against pk and tag, then parses the signed text
 * strictly. On success the caller owns *inner (json_decref). FS_EPROTO when
 * the signature fails (nothing is parsed then). */
FS_WUR enum fs_rc proto_signed_open(const char *tag, const void *bytes, size_t len,
                                    const unsigned char pk[PROTO_KEY_BYTES],
                                    void **inner /* OUT: json_t * */, struct fs_err *err);

#endif
