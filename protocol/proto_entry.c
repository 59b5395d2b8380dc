/* Entries: canonical encoding, strict parsing, signatures, hashes and the chain. */
#include "proto_entry.h"

#include <inttypes.h>
#include <sodium.h>
#include <string.h>

#include "proto_content.h"
#include "proto_json.h"

enum fs_rc
proto_entry_check(const struct proto_entry *e, struct fs_err *err)
{
    int64_t ms;

    if (e->seq < 1 || e->seq > PROTO_MAX_SAFE_INT)
        return fs_err_set(err, FS_EINVAL, "entry seq out of range");
    if (e->has_prev != (e->seq > 1))
        return fs_err_set(err, FS_EINVAL, "entry prev must be null exactly for seq 1");
    if (proto_time_parse(e->at, strlen(e->at), 1, &ms))
        return fs_err_set(err, FS_EINVAL, "entry time is not RFC 3339 UTC");
    if (e->op != PROTO_OP_PUT && e->op != PROTO_OP_DELETE)
        return fs_err_set(err, FS_EINVAL, "entry op must be put or delete");
    if (proto_uuid_check(e->record_id, strlen(e->record_id)))
        return fs_err_set(err, FS_EINVAL, "record id is not a lowercase UUIDv7");
    if (e->gen < 1 || e->gen > PROTO_MAX_SAFE_INT)
        return fs_err_set(err, FS_EINVAL, "record gen out of range");
    if (e->has_parent != (e->gen > 1))
        return fs_err_set(err, FS_EINVAL, "record parent must be null exactly for gen 1");
    if (e->op == PROTO_OP_DELETE && e->gen == 1)
        return fs_err_set(err, FS_EINVAL, "a delete cannot be a record's root");
    if (e->has_content != (e->op == PROTO_OP_PUT))
        return fs_err_set(err, FS_EINVAL, "content must be present exactly for put");
    if (e->has_content) {
        if (e->enc != PROTO_ENC_JSON && e->enc != PROTO_ENC_SEALED)
            return fs_err_set(err, FS_EINVAL, "content enc must be json or sealed");
        if (e->content_len > PROTO_CONTENT_MAX_BYTES)
            return fs_err_set(err, FS_ETOOBIG, "content is longer than %u bytes",
                              PROTO_CONTENT_MAX_BYTES);
    }
    return FS_OK;
}

enum fs_rc
proto_entry_encode(const struct proto_entry *e, struct fs_buf *b)
{
    enum fs_rc rc = FS_OK;

#define W(x)                                                                                       \
    do {                                                                                           \
        if (!rc)                                                                                   \
            rc = (x);                                                                              \
    } while (0)
    W(fs_buf_adds(b, "{\"v\":1,\"feed\":"));
    W(proto_jw_hex(b, e->feed, PROTO_KEY_BYTES));
    W(fs_buf_adds(b, ",\"seq\":"));
    W(proto_jw_uint(b, e->seq));
    W(fs_buf_adds(b, ",\"prev\":"));
    W(e->has_prev ? proto_jw_hex(b, e->prev, PROTO_HASH_BYTES) : fs_buf_adds(b, "null"));
    W(fs_buf_adds(b, ",\"at\":"));
    W(proto_jw_str(b, e->at, strlen(e->at)));
    W(fs_buf_adds(b, e->op == PROTO_OP_PUT ? ",\"op\":\"put\"" : ",\"op\":\"delete\""));
    W(fs_buf_adds(b, ",\"record\":{\"id\":"));
    W(proto_jw_str(b, e->record_id, strlen(e->record_id)));
    W(fs_buf_adds(b, ",\"gen\":"));
    W(proto_jw_uint(b, e->gen));
    W(fs_buf_adds(b, ",\"parent\":"));
    W(e->has_parent ? proto_jw_hex(b, e->parent, PROTO_HASH_BYTES) : fs_buf_adds(b, "null"));
    W(fs_buf_addc(b, '}'));
    if (e->has_content) {
        W(fs_buf_adds(b, ",\"content\":{\"hash\":"));
        W(proto_jw_hex(b, e->content_hash, PROTO_HASH_BYTES));
        W(fs_buf_adds(b, ",\"len\":"));
        W(proto_jw_uint(b, e->content_len));
        W(fs_buf_adds(b, e->enc == PROTO_ENC_JSON ? ",\"enc\":\"json\"}" : ",\"enc\":\"sealed\"}"));
    }
    W(fs_buf_addc(b, '}'));
#undef W
    return rc;
}

enum fs_rc
proto_entry_peek_link(const void *bytes, size_t len, uint64_t *seq, int *has_prev,
                      unsigned char prev[PROTO_HASH_BYTES])
{
    struct proto_jr r = {bytes, (const unsigned char *)bytes + len};
    unsigned char feed[PROTO_KEY_BYTES];

    memset(prev, 0, PROTO_HASH_BYTES);
    if (!proto_jr_lit(&r, "{\"v\":1,\"feed\":") || !proto_jr_hex(&r, feed, sizeof feed) ||
        !proto_jr_lit(&r, ",\"seq\":") || !proto_jr_uint(&r, seq) ||
        !proto_jr_lit(&r, ",\"prev\":") ||
        !proto_jr_hex_or_null(&r, prev, PROTO_HASH_BYTES, has_prev))
        return FS_EINVAL;
    return FS_OK;
}

static const char *const entry_keys[] = {"v",  "feed",   "seq",     "prev", "at",
                                         "op", "record", "content", NULL};
static const char *const entry_req_put[] = {"v",  "feed",   "seq",     "prev", "at",
                                            "op", "record", "content", NULL};
static const char *const entry_req_del[] = {"v", "feed", "seq", "prev", "at", "op", "record", NULL};
static const char *const record_keys[] = {"id", "gen", "parent", NULL};
static const char *const content_keys[] = {"hash", "len", "enc", NULL};

/* The fast path: an entry as proto_entry_encode writes it (every fieldsync
 * writer's), read field by field in that order, checked, encoded again and
 * compared byte for byte; then the strict parser would have read the same
 * struct. 0 for anything else: the caller parses it with jansson. */
int
proto_entry_parse_canonical(const void *bytes, size_t len, struct proto_entry *e)
{
    struct proto_jr r = {bytes, (const unsigned char *)bytes + len};
    struct fs_buf b;
    int ok;

    memset(e, 0, sizeof *e);
    if (!proto_jr_lit(&r, "{\"v\":1,\"feed\":") || !proto_jr_hex(&r, e->feed, PROTO_KEY_BYTES) ||
        !proto_jr_lit(&r, ",\"seq\":") || !proto_jr_uint(&r, &e->seq) ||
        !proto_jr_lit(&r, ",\"prev\":") ||
        !proto_jr_hex_or_null(&r, e->prev, PROTO_HASH_BYTES, &e->has_prev))
        return 0;
    if (!proto_jr_lit(&r, ",\"at\":") || !proto_jr_str_plain(&r, e->at, sizeof e->at))
        return 0;
    if (proto_jr_lit(&r, ",\"op\":\"put\""))
        e->op = PROTO_OP_PUT;
    else if (proto_jr_lit(&r, ",\"op\":\"delete\""))
        e->op = PROTO_OP_DELETE;
    else
        return 0;
    if (!proto_jr_lit(&r, ",\"record\":{\"id\":") ||
        !proto_jr_str_plain(&r, e->record_id, sizeof e->record_id) ||
        !proto_jr_lit(&r, ",\"gen\":") || !proto_jr_uint(&r, &e->gen) ||
        !proto_jr_lit(&r, ",\"parent\":") ||
        !proto_jr_hex_or_null(&r, e->parent, PROTO_HASH_BYTES, &e->has_parent) ||
        !proto_jr_lit(&r, "}"))
        return 0;
    if (proto_jr_lit(&r, ",\"content\":{\"hash\":")) {
        if (!proto_jr_hex(&r, e->content_hash, PROTO_HASH_BYTES) ||
            !proto_jr_lit(&r, ",\"len\":") || !proto_jr_uint(&r, &e->content_len))
            return 0;
        if (proto_jr_lit(&r, ",\"enc\":\"json\"}"))
            e->enc = PROTO_ENC_JSON;
        else if (proto_jr_lit(&r, ",\"enc\":\"sealed\"}"))
            e->enc = PROTO_ENC_SEALED;
        else
            return 0;
        e->has_content = 1;
    }
    if (!proto_jr_lit(&r, "}") || r.p != r.end || proto_entry_check(e, NULL))
        return 0;
    fs_buf_init(&b, PROTO_ENTRY_MAX_BYTES + 1);
    ok = fs_buf_reserve(&b, len) == FS_OK && proto_entry_encode(e, &b) == FS_OK && b.len == len &&
         memcmp(b.data, bytes, len) == 0;
    fs_buf_release(&b);
    return ok;
}

enum fs_rc
proto_entry_parse(const void *bytes, size_t len, struct proto_entry *e, struct fs_err *err)
{
    if (len <= PROTO_ENTRY_MAX_BYTES && proto_entry_parse_canonical(bytes, len, e))
        return FS_OK;
    return proto_entry_parse_general(bytes, len, e, err);
}

enum fs_rc
proto_entry_parse_general(const void *bytes, size_t len, struct proto_entry *e, struct fs_err *err)
{
    json_t *root = NULL, *v, *rec, *content;
    const char *op;
    uint64_t ver;
    enum fs_rc rc;

    memset(e, 0, sizeof *e);
    if (len > PROTO_ENTRY_MAX_BYTES)
        return fs_err_set(err, FS_ETOOBIG, "entry is longer than %u bytes", PROTO_ENTRY_MAX_BYTES);
    rc = proto_json_parse(bytes, len, &root, err);
    if (rc)
        goto out;
    rc = FS_EINVAL;
    v = json_object_get(root, "op");
    op = json_string_value(v);
    if (!op || (strcmp(op, "put") && strcmp(op, "delete"))) {
        fs_err_set(err, rc, "entry op must be put or delete");
        goto out;
    }
    e->op = strcmp(op, "put") == 0 ? PROTO_OP_PUT : PROTO_OP_DELETE;
    if (proto_json_keys(root, entry_keys, e->op == PROTO_OP_PUT ? entry_req_put : entry_req_del,
                        "entry", err))
        goto out;
    if (proto_json_uint(json_object_get(root, "v"), 1, &ver) || ver != 1) {
        fs_err_set(err, rc, "entry version must be 1");
        goto out;
    }
    if (proto_json_hex(json_object_get(root, "feed"), e->feed, PROTO_KEY_BYTES)) {
        fs_err_set(err, rc, "entry feed is not 64 lowercase hex digits");
        goto out;
    }
    if (proto_json_uint(json_object_get(root, "seq"), 1, &e->seq)) {
        fs_err_set(err, rc, "entry seq is not an integer in 1..2^53-1");
        goto out;
    }
    v = json_object_get(root, "prev");
    if (!json_is_null(v)) {
        if (proto_json_hex(v, e->prev, PROTO_HASH_BYTES)) {
            fs_err_set(err, rc, "entry prev is not null or 64 lowercase hex digits");
            goto out;
        }
        e->has_prev = 1;
    }
    v = json_object_get(root, "at");
    if (!json_is_string(v) || json_string_length(v) >= sizeof e->at) {
        fs_err_set(err, rc, "entry time is not RFC 3339 UTC");
        goto out;
    }
    memcpy(e->at, json_string_value(v), json_string_length(v) + 1);
    rec = json_object_get(root, "record");
    if (proto_json_keys(rec, record_keys, record_keys, "entry record", err))
        goto out;
    v = json_object_get(rec, "id");
    if (!json_is_string(v) || json_string_length(v) != PROTO_UUID_LEN) {
        fs_err_set(err, rc, "record id is not a lowercase UUIDv7");
        goto out;
    }
    memcpy(e->record_id, json_string_value(v), PROTO_UUID_LEN + 1);
    if (proto_json_uint(json_object_get(rec, "gen"), 1, &e->gen)) {
        fs_err_set(err, rc, "record gen is not an integer in 1..2^53-1");
        goto out;
    }
    v = json_object_get(rec, "parent");
    if (!json_is_null(v)) {
        if (proto_json_hex(v, e->parent, PROTO_HASH_BYTES)) {
            fs_err_set(err, rc, "record parent is not null or 64 lowercase hex digits");
            goto out;
        }
        e->has_parent = 1;
    }
    content = json_object_get(root, "content");
    if (content) {
        const char *enc;

        if (e->op != PROTO_OP_PUT) {
            fs_err_set(err, rc, "a delete entry carries no content");
            goto out;
        }
        if (proto_json_keys(content, content_keys, content_keys, "entry content", err))
            goto out;
        if (proto_json_hex(json_object_get(content, "hash"), e->content_hash, PROTO_HASH_BYTES)) {
            fs_err_set(err, rc, "content hash is not 64 lowercase hex digits");
            goto out;
        }
        if (proto_json_uint(json_object_get(content, "len"), 0, &e->content_len)) {
            fs_err_set(err, rc, "content len is not an integer");
            goto out;
        }
        enc = json_string_value(json_object_get(content, "enc"));
        if (enc && strcmp(enc, "json") == 0)
            e->enc = PROTO_ENC_JSON;
        else if (enc && strcmp(enc, "sealed") == 0)
            e->enc = PROTO_ENC_SEALED;
        else {
            fs_err_set(err, rc, "content enc must be json or sealed");
            goto out;
        }
        e->has_content = 1;
    }
    rc = proto_entry_check(e, err);
out:
    json_decref(root);
    return rc;
}

void
proto_entry_sign(const void *bytes, size_t len, const unsigned char sk[PROTO_SECRET_BYTES],
                 unsigned char sig[PROTO_SIG_BYTES])
{
    proto_sign_tagged(PROTO_TAG_ENTRY, bytes, len, sk, sig);
}

enum fs_rc
proto_entry_verify(const void *bytes, size_t len, const unsigned char sig[PROTO_SIG_BYTES],
                   const unsigned char feed[PROTO_KEY_BYTES])
{
    if (len > PROTO_ENTRY_MAX_BYTES)
        return FS_EPROTO;
    return proto_verify_tagged(PROTO_TAG_ENTRY, bytes, len, sig, feed);
}

void
proto_entry_hash(const void *bytes, size_t len, const unsigned char sig[PROTO_SIG_BYTES],
                 unsigned char out[PROTO_HASH_BYTES])
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, NULL, 0, PROTO_HASH_BYTES);
    crypto_generichash_update(&st, bytes, len);
    crypto_generichash_update(&st, sig, PROTO_SIG_BYTES);
    crypto_generichash_final(&st, out, PROTO_HASH_BYTES);
}

enum fs_rc
proto_entry_verify_full(const void *bytes, size_t len, const unsigned char sig[PROTO_SIG_BYTES],
                        const void *content, size_t content_len,
                        const unsigned char feed[PROTO_KEY_BYTES], int allow_absent,
                        struct proto_entry *e, unsigned char hash[PROTO_HASH_BYTES],
                        struct fs_err *err)
{
    unsigned char ch[PROTO_HASH_BYTES];
    enum fs_rc rc;

    rc = proto_entry_parse(bytes, len, e, err);
    if (rc)
        return FS_EPROTO;
    if (sodium_memcmp(e->feed, feed, PROTO_KEY_BYTES) != 0)
        return fs_err_set(err, FS_EPROTO, "entry %llu belongs to another feed",
                          (unsigned long long)e->seq);
    if (proto_entry_verify(bytes, len, sig, feed))
        return fs_err_set(err, FS_EPROTO, "entry %llu has a bad signature",
                          (unsigned long long)e->seq);
    if (!e->has_content) {
        if (content_len)
            return fs_err_set(err, FS_EPROTO, "delete entry %llu carries content",
                              (unsigned long long)e->seq);
    } else if (content_len == 0 && e->content_len != 0) {
        if (!allow_absent)
            return fs_err_set(err, FS_EPROTO, "entry %llu arrived without its content",
                              (unsigned long long)e->seq);
    } else {
        if (content_len != e->content_len)
            return fs_err_set(err, FS_EPROTO, "entry %llu content has the wrong length",
                              (unsigned long long)e->seq);
        proto_hash(content, content_len, ch);
        if (sodium_memcmp(ch, e->content_hash, PROTO_HASH_BYTES) != 0)
            return fs_err_set(err, FS_EPROTO, "entry %llu content does not match its hash",
                              (unsigned long long)e->seq);
    }
    proto_entry_hash(bytes, len, sig, hash);
    return FS_OK;
}

enum fs_rc
proto_entry_verify_record(const void *bytes, size_t len, const unsigned char sig[PROTO_SIG_BYTES],
                          const void *content, size_t content_len,
                          const unsigned char feed[PROTO_KEY_BYTES], struct proto_entry *e,
                          unsigned char hash[PROTO_HASH_BYTES], struct proto_content *c,
                          int *parsed, struct fs_err *err)
{
    struct proto_content mine;
    enum fs_rc rc;

    *parsed = 0;
    rc = proto_entry_verify_full(bytes, len, sig, content, content_len, feed, 0, e, hash, err);
    if (rc || !e->has_content || e->enc != PROTO_ENC_JSON || !content_len)
        return rc;
    rc = proto_content_parse(content, content_len, c ? c : &mine, err);
    if (rc) {
        fs_err_prefix(err, "entry %" PRIu64 ": its content: ", e->seq);
        return FS_EPROTO;
    }
    if (c)
        *parsed = 1;
    else
        proto_content_release(&mine);
    return FS_OK;
}

enum fs_rc
proto_chain_follows(const struct proto_entry *e, uint64_t prev_seq, const unsigned char *prev_hash,
                    struct fs_err *err)
{
    if (e->seq != prev_seq + 1)
        return fs_err_set(err, FS_ECONFLICT, "gap: expected seq %llu, got %llu",
                          (unsigned long long)(prev_seq + 1), (unsigned long long)e->seq);
    if (prev_seq == 0)
        return FS_OK;
    if (!prev_hash || !e->has_prev || memcmp(e->prev, prev_hash, PROTO_HASH_BYTES) != 0)
        return fs_err_set(err, FS_ECONFLICT, "chain broken at seq %llu: prev does not match",
                          (unsigned long long)e->seq);
    return FS_OK;
}
