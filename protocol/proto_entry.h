/*
 * Entries: the signed, hash-chained metadata of a feed (DESIGN §3). An entry is
 * written once by proto_entry_encode, signed as those exact bytes, and never
 * re-serialised: every other party parses the bytes it received, strictly.
 */
#ifndef PROTO_ENTRY_H
#define PROTO_ENTRY_H

#include "proto.h"

enum proto_op { PROTO_OP_PUT = 1, PROTO_OP_DELETE = 2 };
enum proto_enc { PROTO_ENC_JSON = 1, PROTO_ENC_SEALED = 2 };

/* A decoded entry. Plain data, no pointers: copy freely. */
struct proto_entry {
    unsigned char feed[PROTO_KEY_BYTES];
    uint64_t seq; /* 1.. */
    int has_prev; /* 0 exactly when seq == 1 */
    unsigned char prev[PROTO_HASH_BYTES];
    char at[PROTO_TIME_MAX_LEN]; /* the writer's clock, UTC: informational only */
    enum proto_op op;
    char record_id[PROTO_UUID_LEN + 1];
    uint64_t gen;   /* 1 for a root */
    int has_parent; /* 0 exactly when gen == 1 */
    unsigned char parent[PROTO_HASH_BYTES];
    int has_content; /* 1 exactly when op == PUT */
    unsigned char content_hash[PROTO_HASH_BYTES];
    uint64_t content_len;
    enum proto_enc enc;
};

/* Checks the rules every entry obeys (seq/prev, gen/parent, op/content,
 * lengths); FS_EINVAL with a reason otherwise. */
FS_WUR enum fs_rc proto_entry_check(const struct proto_entry *e, struct fs_err *err);

/* Appends the canonical bytes of e to out. e must pass proto_entry_check. */
FS_WUR enum fs_rc proto_entry_encode(const struct proto_entry *e, struct fs_buf *out);

/* Parses entry bytes strictly: at most PROTO_ENTRY_MAX_BYTES, valid UTF-8,
 * exactly the v1 keys, no duplicates, integers below 2^53, lowercase hex.
 * FS_EINVAL or FS_ETOOBIG with a reason in err. */
FS_WUR enum fs_rc proto_entry_parse(const void *bytes, size_t len,
                                    struct proto_entry *out /* OUT */, struct fs_err *err);
/* proto_entry_parse's two paths, for tests that compare them: the fast one,
 * 1 when bytes are exactly what proto_entry_encode writes for a valid entry
 * (out filled), else 0 (out undefined); and jansson's, for any bytes. */
int proto_entry_parse_canonical(const void *bytes, size_t len, struct proto_entry *out /* OUT */);
FS_WUR enum fs_rc proto_entry_parse_general(const void *bytes, size_t len,
                                            struct proto_entry *out /* OUT */, struct fs_err *err);

/* Reads seq and prev from the fixed prefix of bytes that proto_entry_encode
 * wrote ({"v":1,"feed":"…","seq":N,"prev":…), without parsing the rest. Only
 * for bytes already known to be this encoder's (a store's own entry whose hash
 * checks): anything else is FS_EINVAL, never a guess. */
FS_WUR enum fs_rc proto_entry_peek_link(const void *bytes, size_t len, uint64_t *seq /* OUT */,
                                        int *has_prev /* OUT */,
                                        unsigned char prev[PROTO_HASH_BYTES] /* OUT */);

/* sig = Ed25519(sk, "fieldsync-entry-v1\0" ‖ bytes). */
void proto_entry_sign(const void *bytes, size_t len, const unsigned char sk[PROTO_SECRET_BYTES],
                      unsigned char sig[PROTO_SIG_BYTES]);
/* FS_OK when sig is feed's signature of bytes; FS_EPROTO otherwise. */
FS_WUR enum fs_rc proto_entry_verify(const void *bytes, size_t len,
                                     const unsigned char sig[PROTO_SIG_BYTES],
                                     const unsigned char feed[PROTO_KEY_BYTES]);
/* hash = BLAKE2b-256(bytes ‖ sig): the entry's identity, named by the next
 * entry's prev and by revisions' parent. */
void proto_entry_hash(const void *bytes, size_t len, const unsigned char sig[PROTO_SIG_BYTES],
                      unsigned char out[PROTO_HASH_BYTES]);

/* Everything a receiver checks of one entry it was handed with its signature and
 * content: strict parse, feed, signature, content hash and length. content may
 * be NULL with content_len 0 only for a delete (or redacted content, when
 * allow_absent). On success *out holds the parsed entry and hash its hash. */
FS_WUR enum fs_rc proto_entry_verify_full(const void *bytes, size_t len,
                                          const unsigned char sig[PROTO_SIG_BYTES],
                                          const void *content, size_t content_len,
                                          const unsigned char feed[PROTO_KEY_BYTES],
                                          int allow_absent, struct proto_entry *out /* OUT */,
                                          unsigned char hash[PROTO_HASH_BYTES] /* OUT */,
                                          struct fs_err *err);

struct proto_content;

/* proto_entry_verify_full, and then, signed not being the same as well formed,
 * a strict parse of json content as a record (FS_EPROTO "entry N: its content:
 * ..." otherwise). c (NULL: parsed and dropped) receives it; *parsed says
 * whether it did, and then the caller releases c. */
FS_WUR enum fs_rc proto_entry_verify_record(
    const void *bytes, size_t len, const unsigned char sig[PROTO_SIG_BYTES], const void *content,
    size_t content_len, const unsigned char feed[PROTO_KEY_BYTES],
    struct proto_entry *out /* OUT */, unsigned char hash[PROTO_HASH_BYTES] /* OUT */,
    struct proto_content *c /* OUT */, int *parsed /* OUT */, struct fs_err *err);

/* Chain continuity: e follows an entry of seq prev_seq whose hash is prev_hash
 * (prev_seq 0 and prev_hash NULL before the first entry). FS_OK, or
 * FS_ECONFLICT with "gap" or "chain broken" in err. */
FS_WUR enum fs_rc proto_chain_follows(const struct proto_entry *e, uint64_t prev_seq,
                                      const unsigned char *prev_hash, struct fs_err *err);

#endif
