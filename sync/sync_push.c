/* Push: ask the head, send what the server lacks in batches that adapt to
 * the link, keep every verified receipt. Exactly once follows from the feed:
 * the server acknowledges what it holds and stores nothing twice. */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_auth.h"
#include "proto_batch.h"
#include "proto_entry.h"
#include "proto_json.h"
#include "sync.h"

#define CUTS_BEFORE_GIVING_UP 4
/* zlib level of pushed batches: 4, not DESIGN §10's 1. An entry carries about
 * 200 bytes of signature and hashes that no level shrinks; on the rest, level 4
 * takes the wire from 42% to 38% of the import JSON for about 6 µs more of
 * the laptop's CPU per record (docs/protocol.md). */
#define PUSH_DEFLATE_LEVEL 4

/* An entry read back to be sent (or compared with the server's head) must be
 * the one that was signed, at the seq expected: a damaged store (a flipped
 * byte, a lost page or index row) is refused here and never sent. Hashes
 * suffice, and cost a fraction of a signature check: the stored hash is
 * BLAKE2b(entry ‖ sig), taken when the entry was signed, so a changed byte of
 * either shows; the content must hash to what the entry names (its
 * content_hash column, written from the entry in the same transaction). A
 * damaged index can also hand back a whole row in the wrong place, so the seq
 * written in the entry must be the one asked for, and its prev the hash of
 * the entry before (link, when known). The server verifies every signature
 * anyway. */
static enum fs_rc
check_intact(const struct store_entry_row *e, uint64_t want_seq, const unsigned char *link,
             struct fs_err *err)
{
    unsigned char hash[PROTO_HASH_BYTES], prev[PROTO_HASH_BYTES];
    const char *what;
    uint64_t seq = 0;
    int has_prev = 0;

    if (e->seq != want_seq || !e->entry) {
        what = "it is missing";
    } else {
        proto_entry_hash(e->entry, e->entry_len, e->sig, hash);
        if (sodium_memcmp(hash, e->hash, PROTO_HASH_BYTES) != 0) {
            what = "its bytes differ from its hash";
        } else if (proto_entry_peek_link(e->entry, e->entry_len, &seq, &has_prev, prev) ||
                   seq != want_seq) {
            /* An intact row in the wrong place: a damaged index. */
            what = "another entry is stored in its place";
        } else if (link && (!has_prev || sodium_memcmp(prev, link, PROTO_HASH_BYTES) != 0)) {
            what = "it does not follow the entry before it";
        } else if (!link && has_prev != (want_seq > 1)) {
            what = "it does not follow the entry before it";
        } else if (e->content && e->content_len) {
            if (!e->content_hash) {
                what = "its content is not indexed";
            } else {
                proto_hash(e->content, e->content_len, hash);
                if (sodium_memcmp(hash, e->content_hash, PROTO_HASH_BYTES) != 0)
                    what = "its content differs from its hash";
                else
                    return FS_OK;
            }
        } else if (e->content_hash) {
            what = "its content is missing";
        } else {
            return FS_OK;
        }
    }
    return fs_err_set(err, FS_ECORRUPT,
                      "entry %" PRIu64 " of this store is damaged (%s); nothing was sent — run "
                      "'fieldsync verify' and keep a copy of the folder",
                      want_seq, what);
}

struct batch_fill {
    struct proto_batch_enc *enc;
    size_t max_bytes, max_entries;
    uint64_t next_seq;                    /* the seq the next row must have */
    int has_link;                         /* 0 before the first entry of the feed */
    unsigned char link[PROTO_HASH_BYTES]; /* the hash its prev must name */
    int full; /* the batch stopped the walk: it is as large as allowed */
    uint64_t last_seq;
    unsigned char last_hash[PROTO_HASH_BYTES];
    enum fs_rc rc;
    struct fs_err *err;
};

static int
add_frame(void *ctx, const struct store_entry_row *e)
{
    struct batch_fill *bf = ctx;
    size_t frame = 8 + e->entry_len + PROTO_SIG_BYTES + e->content_len;

    if (proto_batch_enc_count(bf->enc) >= bf->max_entries ||
        (proto_batch_enc_count(bf->enc) > 0 &&
         proto_batch_enc_raw_len(bf->enc) + frame > bf->max_bytes)) {
        bf->full = 1;
        return 1;
    }
    bf->rc = check_intact(e, bf->next_seq, bf->has_link ? bf->link : NULL, bf->err);
    if (bf->rc)
        return 1;
    bf->next_seq++;
    bf->has_link = 1;
    memcpy(bf->link, e->hash, PROTO_HASH_BYTES);
    bf->rc =
        proto_batch_enc_add(bf->enc, e->entry, e->entry_len, e->sig, e->content, e->content_len);
    if (bf->rc == FS_ETOOBIG && proto_batch_enc_count(bf->enc) > 0) {
        bf->rc = FS_OK;
        bf->full = 1;
        return 1;
    }
    if (bf->rc)
        return 1;
    bf->last_seq = e->seq;
    memcpy(bf->last_hash, e->hash, PROTO_HASH_BYTES);
    return 0;
}

enum fs_rc
sync_open_state(const char *tag, const struct sync_resp *r,
                const unsigned char server_pk[PROTO_KEY_BYTES],
                const unsigned char feed[PROTO_KEY_BYTES], uint64_t *have, int *has_head,
                unsigned char head[PROTO_HASH_BYTES], struct fs_err *err)
{
    json_t *in = NULL, *h;
    unsigned char f[PROTO_KEY_BYTES];
    enum fs_rc rc;

    rc = proto_signed_open(tag, r->body, r->len, server_pk, (void **)&in, err);
    if (rc)
        return rc;
    rc = FS_EPROTO;
    if (proto_json_hex(json_object_get(in, "feed"), f, PROTO_KEY_BYTES) ||
        memcmp(f, feed, PROTO_KEY_BYTES) != 0 ||
        proto_json_uint(json_object_get(in, "have_seq"), 0, have)) {
        fs_err_set(err, rc, "the server's signed answer is about another feed or malformed");
        goto out;
    }
    h = json_object_get(in, "head");
    *has_head = 0;
    if (!json_is_null(h)) {
        if (proto_json_hex(h, head, PROTO_HASH_BYTES)) {
            fs_err_set(err, rc, "the server's signed head is malformed");
            goto out;
        }
        *has_head = 1;
    }
    rc = FS_OK;
out:
    json_decref(in);
    return rc;
}

struct one_entry {
    const unsigned char *feed;
    uint64_t seq;
    int seen;
    unsigned char hash[PROTO_HASH_BYTES];
    enum fs_rc rc;
    struct fs_err *err;
};

static int
take_one(void *ctx, const struct store_entry_row *e)
{
    struct one_entry *o = ctx;

    o->seen = 1;
    o->rc = check_intact(e, o->seq, NULL, o->err);
    if (!o->rc)
        memcpy(o->hash, e->hash, PROTO_HASH_BYTES);
    return 1;
}

/* The hash of this store's own entry at seq, the entry checked first. */
static enum fs_rc
intact_hash(struct store *s, uint64_t seq, unsigned char out[PROTO_HASH_BYTES], struct fs_err *err)
{
    struct one_entry o;
    struct store_entry_row none;
    enum fs_rc rc;

    memset(&o, 0, sizeof o);
    o.feed = store_feed(s);
    o.seq = seq;
    o.err = err;
    rc = store_feed_entries(s, o.feed, seq, seq, take_one, &o, err);
    if (rc)
        return rc;
    if (!o.seen) {
        memset(&none, 0, sizeof none);
        return check_intact(&none, seq, NULL, err); /* "missing" */
    }
    if (!o.rc)
        memcpy(out, o.hash, PROTO_HASH_BYTES);
    return o.rc;
}

/* The server's claim (have, head) must match this store's own chain. */
static enum fs_rc
check_claim(struct store *s, uint64_t local, uint64_t have, int has_head,
            const unsigned char head[PROTO_HASH_BYTES], struct fs_err *err)
{
    unsigned char mine[PROTO_HASH_BYTES];
    enum fs_rc rc;

    if (have > local)
        return fs_err_set(err, FS_EPROTO,
                          "the server holds %" PRIu64 " entries of this device but this store only "
                          "%" PRIu64 ": this store was copied or restored from an older copy; it "
                          "must get a new key before it syncs (nothing was sent)",
                          have, local);
    if (have == 0)
        return FS_OK;
    rc = intact_hash(s, have, mine, err);
    if (rc)
        return rc;
    if (!has_head || sodium_memcmp(mine, head, PROTO_HASH_BYTES) != 0)
        return fs_err_set(err, FS_EPROTO,
                          "fork: the server holds a different entry %" PRIu64 " for this device; "
                          "this store was copied to another laptop or restored, and must get a "
                          "new key before it syncs",
                          have);
    return FS_OK;
}

enum fs_rc
sync_open_receipt(const struct sync_resp *r, const unsigned char server_pk[PROTO_KEY_BYTES],
                  const unsigned char feed[PROTO_KEY_BYTES], uint64_t to, uint64_t *have,
                  int *has_head, unsigned char head[PROTO_HASH_BYTES], struct fs_err *err)
{
    enum fs_rc rc =
        sync_open_state(PROTO_TAG_RECEIPT, r, server_pk, feed, have, has_head, head, err);

    if (!rc && *have < to)
        rc = fs_err_set(err, FS_EPROTO,
                        "the server's receipt covers %" PRIu64 " but the batch ended at %" PRIu64,
                        *have, to);
    return rc;
}

enum fs_rc
sync_own_batch(struct store *s, struct proto_batch_enc *enc, enum proto_purpose purpose,
               uint64_t from, uint64_t to, size_t max_entries, size_t max_bytes,
               const unsigned char *seal_to, struct fs_buf *out, struct proto_batch_header *bh,
               struct fs_err *err)
{
    const unsigned char *feed = store_feed(s);
    struct batch_fill bf;
    enum fs_rc rc;

    memset(&bf, 0, sizeof bf);
    bf.enc = enc;
    bf.max_entries = max_entries;
    bf.max_bytes = max_bytes;
    bf.next_seq = from;
    bf.err = err;
    if (from > 1) {
        /* The first entry must name the one before it (the server holds it). */
        rc = intact_hash(s, from - 1, bf.link, err);
        if (rc)
            return rc;
        bf.has_link = 1;
    }
    rc = store_feed_entries(s, feed, from, to, add_frame, &bf, err);
    if (!rc)
        rc = bf.rc;
    if (rc)
        return rc;
    if (!bf.full && bf.next_seq <= to) {
        /* The rows ran out before the last entry: some are missing. */
        struct store_entry_row none;

        memset(&none, 0, sizeof none);
        return check_intact(&none, bf.next_seq, NULL, err);
    }
    memset(bh, 0, sizeof *bh);
    bh->purpose = purpose;
    bh->has_feed = 1;
    memcpy(bh->feed, feed, PROTO_KEY_BYTES);
    bh->from = from;
    bh->to = bf.last_seq;
    memcpy(bh->to_hash, bf.last_hash, PROTO_HASH_BYTES);
    proto_time_format_ms(store_now_ms(), bh->created);
    rc = seal_to ? proto_batch_enc_finish_sealed(enc, bh, feed, store_secret(s), seal_to, out)
                 : proto_batch_enc_finish(enc, bh, feed, store_secret(s), out);
    if (rc)
        return fs_err_set(err, rc, "cannot build a batch");
    return FS_OK;
}

size_t
sync_setting_size(struct store *s, const char *key, size_t def)
{
    char *v = NULL;
    size_t n = def;
    struct fs_err e;

    if (store_setting_get(s, key, &v, &e) == FS_OK && v) {
        char *end;
        unsigned long long x = strtoull(v, &end, 10);

        if (*end == 0 && x > 0)
            n = (size_t)x;
    }
    free(v);
    return n;
}

static void
save_text(struct store *s, const char *key, const char *value)
{
    struct fs_err e;

    if (store_setting_set(s, key, value, &e) != FS_OK) {
        /* Best effort: the status line is not worth failing a sync for. */
    }
}

enum fs_rc
sync_push(struct store *s, struct sync_http *h, sync_progress_cb progress, void *pctx,
          void (*warn)(void *ctx, const char *line), struct sync_push_result *out,
          struct fs_err *err)
{
    const unsigned char *feed = store_feed(s);
    struct store_status st;
    struct store_receipt held;
    struct proto_batch_enc *enc = NULL;
    struct fs_buf batch;
    struct sync_resp r;
    unsigned char head[PROTO_HASH_BYTES], server_pk[PROTO_KEY_BYTES];
    char target[160], feed_hex[2 * PROTO_KEY_BYTES + 1], *pinned = NULL, msg[300], code[64];
    uint64_t have = 0, next, start_have;
    size_t max_entries = 0, max_bytes = 0, want_entries = 0;
    int has_head, cuts = 0, rounds = 0, resend = 0;
    enum fs_rc rc;

    memset(out, 0, sizeof *out);
    memset(&held, 0, sizeof held);
    fs_buf_init(&batch, PROTO_BATCH_MAX_BYTES);
    proto_hex_encode(feed, PROTO_KEY_BYTES, feed_hex);
    rc = store_setting_get(s, "server_key", &pinned, err);
    if (rc)
        goto out;
    if (!pinned || proto_hex_decode(pinned, strlen(pinned), server_pk, PROTO_KEY_BYTES)) {
        rc = fs_err_set(err, FS_EAUTH, "this device is not enrolled");
        goto out;
    }
    max_entries = sync_setting_size(s, "batch_max_entries", 5000);
    max_bytes = sync_setting_size(s, "batch_max_bytes", 4u << 20);
    if (max_bytes > PROTO_BATCH_MAX_RAW / 2)
        max_bytes = PROTO_BATCH_MAX_RAW / 2;
    want_entries = sync_setting_size(s, "batch_hint", max_entries);
    if (want_entries > max_entries)
        want_entries = max_entries;
    rc = store_status_get(s, &st, err);
    if (rc)
        goto out;
    rc = store_receipt_get(s, feed, &held, err);
    if (rc)
        goto out;

    /* What does the server hold of this feed? */
    snprintf(target, sizeof target, "/v1/feeds/%s/head", feed_hex);
    rc = sync_http_request(h, "GET", target, NULL, 0, 1, &r, err);
    if (rc)
        goto out;
    if (r.status != 200) {
        sync_error_text(&r, code, sizeof code, msg, sizeof msg);
        if (r.status == 403 || r.status == 404)
            rc = fs_err_set(err, FS_EAUTH, "the server refuses this device: %s", msg);
        else if (r.status == 401 && strcmp(code, "clock") == 0)
            rc = fs_err_set(err, FS_EAGAIN, "the server keeps refusing this laptop's clock: %s",
                            msg);
        else if (r.status >= 500 || r.status == 429)
            rc = fs_err_set(err, FS_EAGAIN, "the server asks to retry later: %s", msg);
        else
            rc = fs_err_set(err, FS_EPROTO, "the server refused the head request: %s", msg);
        goto out;
    }
    rc = sync_open_state(PROTO_TAG_HEAD, &r, server_pk, feed, &have, &has_head, head, err);
    if (rc)
        goto out;
    rc = check_claim(s, st.local_seq, have, has_head, head, err);
    if (rc)
        goto out;
    if (held.have_seq > have) {
        snprintf(msg, sizeof msg,
                 "WARNING: the server now holds %" PRIu64 " entries of this device but signed a "
                 "receipt for %" PRIu64 " (restored from a backup?); sending them again",
                 have, held.have_seq);
        if (warn)
            warn(pctx, msg);
        out->rolled_back = 1;
    }
    start_have = have;
    out->server_have = have;
    next = have + 1;
    if (have > 0 && held.have_seq < have) {
        /* The server holds more than its last receipt here says (a bundle
         * carried by someone else, or an answer lost on the way): send the
         * entry at its head again, which it answers with a receipt at once. */
        next = have;
        resend = 1;
    }
    rc = proto_batch_enc_new(PUSH_DEFLATE_LEVEL, &enc);
    if (rc) {
        rc = fs_err_set(err, rc, "out of memory");
        goto out;
    }
    if (progress)
        progress(pctx, 0, st.local_seq - start_have);
    while (next <= st.local_seq) {
        struct proto_batch_header bh;

        if (++rounds > 100000) {
            rc = fs_err_set(err, FS_EPROTO, "the server keeps answering without progress");
            goto out;
        }
        fs_buf_reset(&batch);
        rc = sync_own_batch(s, enc, PROTO_PURPOSE_PUSH, next, st.local_seq, want_entries, max_bytes,
                            NULL, &batch, &bh, err);
        if (rc)
            goto out;
        snprintf(target, sizeof target, "/v1/feeds/%s/entries", feed_hex);
        rc = sync_http_request(h, "POST", target, batch.data, batch.len, 0, &r, err);
        if (rc == FS_EAGAIN && sync_http_connected(h) && ++cuts < CUTS_BEFORE_GIVING_UP) {
            /* Cut on the way: smaller next time, down to one entry. */
            want_entries = want_entries > 1 ? want_entries / 2 : 1;
            continue;
        }
        if (rc)
            goto out;
        if (r.status == 200) {
            uint64_t rhave;
            unsigned char rhead[PROTO_HASH_BYTES];
            int rhas;
            char *text;

            rc = sync_open_receipt(&r, server_pk, feed, bh.to, &rhave, &rhas, rhead, err);
            if (rc)
                goto out;
            rc = check_claim(s, st.local_seq, rhave, rhas, rhead, err);
            if (rc)
                goto out;
            text = strndup((const char *)r.body, r.len);
            if (!text) {
                rc = fs_err_set(err, FS_ENOMEM, "out of memory");
                goto out;
            }
            rc = store_receipt_put(s, feed, rhave, rhas ? rhead : NULL, text, err);
            free(text);
            if (rc)
                goto out;
            out->pushed += rhave - (next - 1) - (uint64_t)resend;
            resend = 0;
            out->server_have = rhave;
            next = rhave + 1;
            cuts = 0;
            if (want_entries < max_entries)
                want_entries = want_entries * 2 > max_entries ? max_entries : want_entries * 2;
            if (progress)
                progress(pctx, rhave - start_have, st.local_seq - start_have);
            continue;
        }
        sync_error_text(&r, code, sizeof code, msg, sizeof msg);
        if (r.status == 409 && strcmp(code, "gap") == 0) {
            json_t *j = NULL;
            uint64_t need = 0;

            if (proto_json_parse(r.body, r.len, &j, NULL) == FS_OK &&
                proto_json_uint(json_object_get(j, "need"), 1, &need) != FS_OK)
                need = 0;
            json_decref(j);
            if (need < 1 || need > st.local_seq + 1 || need == next) {
                rc = fs_err_set(err, FS_EPROTO, "the server's gap answer makes no sense: %s", msg);
                goto out;
            }
            next = need;
            continue;
        }
        if (r.status == 409 && strcmp(code, "fork") == 0) {
            rc = fs_err_set(err, FS_EPROTO,
                            "fork: %s. Nothing more was sent; this device needs a new key", msg);
            goto out;
        }
        if (r.status == 413 && want_entries > 1) {
            want_entries /= 2;
            continue;
        }
        if (r.status == 403 || r.status == 401) {
            rc = fs_err_set(err, FS_EAUTH, "the server refuses this device: %s", msg);
            goto out;
        }
        if (r.status == 503 || r.status == 429 || r.status >= 500) {
            rc = fs_err_set(err, FS_EAGAIN, "the server asks to retry later: %s", msg);
            goto out;
        }
        rc = fs_err_set(err, FS_EPROTO, "the server refused a batch: %s", msg);
        goto out;
    }
    rc = FS_OK;
out:
    if (want_entries && (rc == FS_OK || sync_http_connected(h))) {
        char n[32];

        snprintf(n, sizeof n, "%zu", want_entries);
        save_text(s, "batch_hint", n);
    }
    store_receipt_release(&held);
    proto_batch_enc_free(enc);
    fs_buf_release(&batch);
    free(pinned);
    return rc;
}
