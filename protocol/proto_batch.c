/* The batch envelope: authenticated before it is decompressed, verified before it
 * is parsed deeper. */
#include "proto_batch.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "proto_json.h"

void
proto_batch_limits_default(struct proto_batch_limits *l)
{
    l->max_bytes = PROTO_BATCH_MAX_BYTES;
    l->max_raw = PROTO_BATCH_MAX_RAW;
    l->max_count = PROTO_BATCH_MAX_COUNT;
}

enum fs_rc
proto_batch_open(const void *bytes, size_t len, const struct proto_batch_limits *lim,
                 int allow_sealed, struct proto_batch_view *v, struct fs_err *err)
{
    const unsigned char *p = bytes;
    size_t hl, pl, off;

    memset(v, 0, sizeof *v);
    if (len > lim->max_bytes)
        return fs_err_set(err, FS_ETOOBIG, "batch is larger than %zu bytes", lim->max_bytes);
    if (len < PROTO_BATCH_FIXED_BYTES)
        return fs_err_set(err, FS_EPROTO, "batch is truncated");
    if (memcmp(p, PROTO_BATCH_MAGIC, 4) != 0)
        return fs_err_set(err, FS_EPROTO, "not a fieldsync batch");
    if (p[4] != PROTO_BATCH_VERSION)
        return fs_err_set(err, FS_EPROTO, "batch version %u is not supported", p[4]);
    if ((p[5] & ~PROTO_BATCH_FLAG_SEALED) != 0 ||
        ((p[5] & PROTO_BATCH_FLAG_SEALED) && !allow_sealed))
        return fs_err_set(err, FS_EPROTO, "batch has unknown or unexpected flags");
    if (p[6] != 0 || p[7] != 0)
        return fs_err_set(err, FS_EPROTO, "batch reserved bytes are not zero");
    off = 8 + PROTO_KEY_BYTES;
    hl = fs_get_u32be(p + off);
    off += 4;
    if (hl > PROTO_HEADER_MAX_BYTES || hl > len - PROTO_BATCH_FIXED_BYTES)
        return fs_err_set(err, FS_EPROTO, "batch header length is wrong");
    pl = fs_get_u32be(p + off + hl);
    if (pl != len - PROTO_BATCH_FIXED_BYTES - hl)
        return fs_err_set(err, FS_EPROTO, "batch length does not match its parts");
    v->flags = p[5];
    v->signer = p + 8;
    v->header = p + off;
    v->header_len = hl;
    v->payload = p + off + hl + 4;
    v->payload_len = pl;
    v->sig = p + len - PROTO_SIG_BYTES;
    v->bytes = p;
    v->len = len;
    return FS_OK;
}

static void
batch_digest(const unsigned char *bytes, size_t len, unsigned char out[PROTO_HASH_BYTES])
{
    proto_hash(bytes, len, out);
}

enum fs_rc
proto_batch_verify(const struct proto_batch_view *v, struct fs_err *err)
{
    unsigned char d[PROTO_HASH_BYTES];

    batch_digest(v->bytes, v->len - PROTO_SIG_BYTES, d);
    if (proto_verify_tagged(PROTO_TAG_BATCH, d, sizeof d, v->sig, v->signer))
        return fs_err_set(err, FS_EPROTO, "batch signature does not verify");
    return FS_OK;
}

static const char *const header_keys[] = {"purpose", "feed",    "from",    "to", "to_hash",
                                          "count",   "raw_len", "created", NULL};

enum fs_rc
proto_batch_header_parse(const struct proto_batch_view *v, const struct proto_batch_limits *lim,
                         struct proto_batch_header *h, struct fs_err *err)
{
    json_t *root = NULL, *feed, *from, *to, *to_hash, *created;
    const char *purpose;
    int64_t ms;
    enum fs_rc rc;

    memset(h, 0, sizeof *h);
    rc = proto_json_parse(v->header, v->header_len, &root, err);
    if (rc) {
        rc = FS_EPROTO;
        goto out;
    }
    rc = FS_EPROTO;
    if (proto_json_keys(root, header_keys, header_keys, "batch header", err))
        goto out;
    purpose = json_string_value(json_object_get(root, "purpose"));
    if (purpose && strcmp(purpose, "push") == 0)
        h->purpose = PROTO_PURPOSE_PUSH;
    else if (purpose && strcmp(purpose, "pull") == 0)
        h->purpose = PROTO_PURPOSE_PULL;
    else if (purpose && strcmp(purpose, "bundle") == 0)
        h->purpose = PROTO_PURPOSE_BUNDLE;
    else {
        fs_err_set(err, rc, "batch purpose must be push, pull or bundle");
        goto out;
    }
    feed = json_object_get(root, "feed");
    from = json_object_get(root, "from");
    to = json_object_get(root, "to");
    to_hash = json_object_get(root, "to_hash");
    if (json_is_null(feed)) {
        if (!json_is_null(from) || !json_is_null(to) || !json_is_null(to_hash) ||
            h->purpose != PROTO_PURPOSE_PULL) {
            fs_err_set(err, rc, "only a multi-feed pull has a null feed, and then null range");
            goto out;
        }
    } else {
        h->has_feed = 1;
        if (proto_json_hex(feed, h->feed, PROTO_KEY_BYTES) || proto_json_uint(from, 1, &h->from) ||
            proto_json_uint(to, 1, &h->to) ||
            proto_json_hex(to_hash, h->to_hash, PROTO_HASH_BYTES) || h->from > h->to) {
            fs_err_set(err, rc, "batch header feed, from, to or to_hash is malformed");
            goto out;
        }
    }
    if (proto_json_uint(json_object_get(root, "count"), 0, &h->count) ||
        proto_json_uint(json_object_get(root, "raw_len"), 0, &h->raw_len)) {
        fs_err_set(err, rc, "batch header count or raw_len is malformed");
        goto out;
    }
    if (h->count > lim->max_count || h->raw_len > lim->max_raw) {
        rc = fs_err_set(err, FS_ETOOBIG, "batch count or raw_len is over the limit");
        goto out;
    }
    if (h->has_feed && h->count != h->to - h->from + 1) {
        fs_err_set(err, rc, "batch count does not match its range");
        goto out;
    }
    created = json_object_get(root, "created");
    if (!json_is_string(created) || json_string_length(created) >= sizeof h->created ||
        proto_time_parse(json_string_value(created), json_string_length(created), 0, &ms)) {
        fs_err_set(err, rc, "batch created time is malformed");
        goto out;
    }
    memcpy(h->created, json_string_value(created), json_string_length(created) + 1);
    if ((h->purpose == PROTO_PURPOSE_PUSH || h->purpose == PROTO_PURPOSE_BUNDLE) &&
        (!h->has_feed || memcmp(h->feed, v->signer, PROTO_KEY_BYTES) != 0)) {
        fs_err_set(err, rc, "a push or bundle must be signed by its own feed");
        goto out;
    }
    rc = FS_OK;
out:
    json_decref(root);
    return rc;
}

enum fs_rc
proto_batch_inflate(const struct proto_batch_view *v, const struct proto_batch_header *h,
                    struct fs_buf *raw, struct fs_err *err)
{
    z_stream zs;
    enum fs_rc rc;
    unsigned char extra;
    int zr;

    if (v->flags & PROTO_BATCH_FLAG_SEALED)
        return fs_err_set(err, FS_EINTERNAL, "a sealed payload must be opened first");
    fs_buf_reset(raw);
    rc = fs_buf_reserve(raw, (size_t)h->raw_len);
    if (rc)
        return fs_err_set(err, rc, "cannot hold %llu inflated bytes",
                          (unsigned long long)h->raw_len);
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK)
        return fs_err_set(err, FS_ENOMEM, "cannot start inflate");
    zs.next_in = (unsigned char *)v->payload;
    zs.avail_in = (uInt)v->payload_len;
    zs.next_out = raw->data;
    zs.avail_out = (uInt)h->raw_len;
    zr = inflate(&zs, Z_FINISH);
    if (zr == Z_BUF_ERROR && zs.avail_out == 0) {
        /* Output is full; see whether the stream wants to give more. */
        zs.next_out = &extra;
        zs.avail_out = 1;
        zr = inflate(&zs, Z_FINISH);
        if (zs.avail_out == 0) {
            inflateEnd(&zs);
            return fs_err_set(err, FS_EPROTO, "payload inflates past raw_len");
        }
    }
    if (zr != Z_STREAM_END) {
        inflateEnd(&zs);
        return fs_err_set(err, FS_EPROTO, "payload is not a complete zlib stream");
    }
    if (zs.total_out != h->raw_len) {
        inflateEnd(&zs);
        return fs_err_set(err, FS_EPROTO, "payload inflates to %lu bytes, raw_len says %llu",
                          zs.total_out, (unsigned long long)h->raw_len);
    }
    if (zs.avail_in != 0) {
        inflateEnd(&zs);
        return fs_err_set(err, FS_EPROTO, "bytes follow the end of the zlib stream");
    }
    inflateEnd(&zs);
    raw->len = (size_t)h->raw_len;
    raw->data[raw->len] = 0;
    return FS_OK;
}

enum fs_rc
proto_batch_next(const struct fs_buf *raw, size_t *off, struct proto_frame *f, struct fs_err *err)
{
    size_t o = *off, left = raw->len - o, el, cl;
    const unsigned char *p = raw->data + o;

    if (left == 0)
        return FS_ENOTFOUND;
    if (left < 4)
        return fs_err_set(err, FS_EPROTO, "frame is truncated");
    el = fs_get_u32be(p);
    if (el == 0 || el > PROTO_ENTRY_MAX_BYTES)
        return fs_err_set(err, FS_EPROTO, "frame entry length is out of range");
    if (left - 4 < el + PROTO_SIG_BYTES + 4)
        return fs_err_set(err, FS_EPROTO, "frame is truncated");
    cl = fs_get_u32be(p + 4 + el + PROTO_SIG_BYTES);
    if (cl > PROTO_CONTENT_MAX_BYTES)
        return fs_err_set(err, FS_EPROTO, "frame content length is out of range");
    if (left - 8 - el - PROTO_SIG_BYTES < cl)
        return fs_err_set(err, FS_EPROTO, "frame is truncated");
    f->entry = p + 4;
    f->entry_len = el;
    f->sig = p + 4 + el;
    f->content = cl ? p + 8 + el + PROTO_SIG_BYTES : NULL;
    f->content_len = cl;
    *off = o + 8 + el + PROTO_SIG_BYTES + cl;
    return FS_OK;
}

struct proto_batch_enc {
    z_stream zs;
    int zinit;
    struct fs_buf z; /* compressed so far */
    size_t raw_len;
    size_t count;
};

enum fs_rc
proto_batch_enc_new(int level, struct proto_batch_enc **out)
{
    struct proto_batch_enc *enc = calloc(1, sizeof *enc);

    if (!enc)
        return FS_ENOMEM;
    fs_buf_init(&enc->z, PROTO_BATCH_MAX_BYTES);
    if (deflateInit(&enc->zs, level) != Z_OK) {
        free(enc);
        return FS_ENOMEM;
    }
    enc->zinit = 1;
    *out = enc;
    return FS_OK;
}

void
proto_batch_enc_free(struct proto_batch_enc *enc)
{
    if (!enc)
        return;
    if (enc->zinit)
        deflateEnd(&enc->zs);
    fs_buf_release(&enc->z);
    free(enc);
}

static enum fs_rc
enc_deflate(struct proto_batch_enc *enc, const void *p, size_t n, int flush)
{
    enum fs_rc rc;
    int zr;

    enc->zs.next_in = (unsigned char *)p;
    enc->zs.avail_in = (uInt)n;
    do {
        rc = fs_buf_reserve(&enc->z, 16384);
        if (rc == FS_ETOOBIG && enc->z.len < enc->z.cap)
            rc = fs_buf_reserve(&enc->z, enc->z.cap - enc->z.len);
        if (rc)
            return rc;
        enc->zs.next_out = enc->z.data + enc->z.len;
        enc->zs.avail_out = (uInt)(enc->z.alloc - 1 - enc->z.len);
        {
            size_t before = enc->zs.avail_out;

            zr = deflate(&enc->zs, flush);
            if (zr == Z_STREAM_ERROR)
                return FS_EINTERNAL;
            enc->z.len += before - enc->zs.avail_out;
        }
    } while (enc->zs.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
    return FS_OK;
}

enum fs_rc
proto_batch_enc_add(struct proto_batch_enc *enc, const void *entry, size_t entry_len,
                    const unsigned char sig[PROTO_SIG_BYTES], const void *content,
                    size_t content_len)
{
    unsigned char hdr[4];
    size_t frame = 8 + entry_len + PROTO_SIG_BYTES + content_len;
    enum fs_rc rc;

    if (entry_len == 0 || entry_len > PROTO_ENTRY_MAX_BYTES ||
        content_len > PROTO_CONTENT_MAX_BYTES)
        return FS_EINVAL;
    if (enc->count + 1 > PROTO_BATCH_MAX_COUNT || enc->raw_len + frame > PROTO_BATCH_MAX_RAW)
        return FS_ETOOBIG;
    fs_put_u32be(hdr, (uint32_t)entry_len);
    if ((rc = enc_deflate(enc, hdr, 4, Z_NO_FLUSH)) ||
        (rc = enc_deflate(enc, entry, entry_len, Z_NO_FLUSH)) ||
        (rc = enc_deflate(enc, sig, PROTO_SIG_BYTES, Z_NO_FLUSH)))
        return rc;
    fs_put_u32be(hdr, (uint32_t)content_len);
    if ((rc = enc_deflate(enc, hdr, 4, Z_NO_FLUSH)) ||
        (content_len && (rc = enc_deflate(enc, content, content_len, Z_NO_FLUSH))))
        return rc;
    enc->raw_len += frame;
    enc->count++;
    return FS_OK;
}

size_t
proto_batch_enc_raw_len(const struct proto_batch_enc *enc)
{
    return enc->raw_len;
}

size_t
proto_batch_enc_count(const struct proto_batch_enc *enc)
{
    return enc->count;
}

static enum fs_rc
enc_finish(struct proto_batch_enc *enc, const struct proto_batch_header *h,
           const unsigned char pk[PROTO_KEY_BYTES], const unsigned char sk[PROTO_SECRET_BYTES],
           const unsigned char *seal_to, struct fs_buf *out)
{
    struct fs_buf hdr, sealed;
    const struct fs_buf *payload = &enc->z;
    unsigned char d[PROTO_HASH_BYTES], sig[PROTO_SIG_BYTES];
    static const char *const purposes[] = {"", "push", "pull", "bundle"};
    size_t start = out->len;
    enum fs_rc rc;

    fs_buf_init(&hdr, PROTO_HEADER_MAX_BYTES);
    fs_buf_init(&sealed, PROTO_BATCH_MAX_BYTES);
    rc = enc_deflate(enc, NULL, 0, Z_FINISH);
    if (rc)
        goto out;
    if (seal_to) {
        unsigned char xpk[crypto_box_PUBLICKEYBYTES];

        if (crypto_sign_ed25519_pk_to_curve25519(xpk, seal_to) != 0) {
            rc = FS_EINVAL;
            goto out;
        }
        rc = fs_buf_reserve(&sealed, enc->z.len + crypto_box_SEALBYTES);
        if (rc)
            goto out;
        if (crypto_box_seal(sealed.data, enc->z.data, enc->z.len, xpk) != 0) {
            rc = FS_EINTERNAL;
            goto out;
        }
        sealed.len = enc->z.len + crypto_box_SEALBYTES;
        payload = &sealed;
    }
    rc = fs_buf_printf(&hdr, "{\"purpose\":\"%s\",\"feed\":", purposes[h->purpose]);
    if (!rc && h->has_feed) {
        rc = proto_jw_hex(&hdr, h->feed, PROTO_KEY_BYTES);
        if (!rc)
            rc = fs_buf_printf(&hdr, ",\"from\":%llu,\"to\":%llu,\"to_hash\":",
                               (unsigned long long)h->from, (unsigned long long)h->to);
        if (!rc)
            rc = proto_jw_hex(&hdr, h->to_hash, PROTO_HASH_BYTES);
    } else if (!rc) {
        rc = fs_buf_adds(&hdr, "null,\"from\":null,\"to\":null,\"to_hash\":null");
    }
    if (!rc)
        rc = fs_buf_printf(&hdr, ",\"count\":%zu,\"raw_len\":%zu,\"created\":", enc->count,
                           enc->raw_len);
    if (!rc)
        rc = proto_jw_str(&hdr, h->created, strlen(h->created));
    if (!rc)
        rc = fs_buf_addc(&hdr, '}');
    if (rc)
        goto out;
    if ((rc = fs_buf_reserve(out, PROTO_BATCH_FIXED_BYTES + hdr.len + payload->len)))
        goto out;
    {
        unsigned char fixed[8] = {'F', 'S', 'B', '1', PROTO_BATCH_VERSION, 0, 0, 0};

        if (seal_to)
            fixed[5] = PROTO_BATCH_FLAG_SEALED;
        if ((rc = fs_buf_add(out, fixed, sizeof fixed)) ||
            (rc = fs_buf_add(out, pk, PROTO_KEY_BYTES)) ||
            (rc = fs_buf_add_u32be(out, (uint32_t)hdr.len)) ||
            (rc = fs_buf_add(out, hdr.data, hdr.len)) ||
            (rc = fs_buf_add_u32be(out, (uint32_t)payload->len)) ||
            (rc = fs_buf_add(out, payload->data, payload->len)))
            goto out;
    }
    batch_digest(out->data + start, out->len - start, d);
    proto_sign_tagged(PROTO_TAG_BATCH, d, sizeof d, sk, sig);
    rc = fs_buf_add(out, sig, sizeof sig);
out:
    if (rc)
        out->len = start;
    fs_buf_release(&hdr);
    fs_buf_release(&sealed);
    deflateReset(&enc->zs);
    fs_buf_reset(&enc->z);
    enc->raw_len = 0;
    enc->count = 0;
    return rc;
}

enum fs_rc
proto_batch_enc_finish(struct proto_batch_enc *enc, const struct proto_batch_header *h,
                       const unsigned char pk[PROTO_KEY_BYTES],
                       const unsigned char sk[PROTO_SECRET_BYTES], struct fs_buf *out)
{
    return enc_finish(enc, h, pk, sk, NULL, out);
}

enum fs_rc
proto_batch_enc_finish_sealed(struct proto_batch_enc *enc, const struct proto_batch_header *h,
                              const unsigned char pk[PROTO_KEY_BYTES],
                              const unsigned char sk[PROTO_SECRET_BYTES],
                              const unsigned char seal_to[PROTO_KEY_BYTES], struct fs_buf *out)
{
    return enc_finish(enc, h, pk, sk, seal_to, out);
}

enum fs_rc
proto_batch_unseal(const struct proto_batch_view *v, const unsigned char server_pk[PROTO_KEY_BYTES],
                   const unsigned char server_sk[PROTO_SECRET_BYTES], struct fs_buf *opened,
                   struct proto_batch_view *out, struct fs_err *err)
{
    unsigned char xpk[crypto_box_PUBLICKEYBYTES], xsk[crypto_box_SECRETKEYBYTES];
    enum fs_rc rc = FS_OK;

    if (!(v->flags & PROTO_BATCH_FLAG_SEALED))
        return fs_err_set(err, FS_EPROTO, "the batch is not sealed");
    if (v->payload_len < crypto_box_SEALBYTES)
        return fs_err_set(err, FS_EPROTO, "the sealed payload is truncated");
    if (crypto_sign_ed25519_pk_to_curve25519(xpk, server_pk) != 0 ||
        crypto_sign_ed25519_sk_to_curve25519(xsk, server_sk) != 0)
        return fs_err_set(err, FS_EINTERNAL, "the server key cannot open sealed payloads");
    fs_buf_reset(opened);
    rc = fs_buf_reserve(opened, v->payload_len - crypto_box_SEALBYTES);
    if (rc) {
        rc = fs_err_set(err, rc, "cannot hold the opened payload");
        goto out;
    }
    if (crypto_box_seal_open(opened->data, v->payload, v->payload_len, xpk, xsk) != 0) {
        rc = fs_err_set(err, FS_EPROTO, "the bundle is not sealed to this server's key");
        goto out;
    }
    opened->len = v->payload_len - crypto_box_SEALBYTES;
    *out = *v;
    out->flags &= ~PROTO_BATCH_FLAG_SEALED;
    out->payload = opened->data;
    out->payload_len = opened->len;
out:
    sodium_memzero(xsk, sizeof xsk);
    return rc;
}

long
proto_read_stdio(void *ctx, void *buf, size_t n)
{
    FILE *f = ctx;
    size_t got = fread(buf, 1, n, f);

    return got == 0 && ferror(f) ? -1 : (long)got;
}

/* Reads exactly n bytes onto out: FS_OK, FS_ENOTFOUND when the input ends
 * first (after got bytes), FS_EIO when rd fails. */
static enum fs_rc
read_exact(proto_read_fn rd, void *ctx, struct fs_buf *out, size_t n, size_t *got)
{
    enum fs_rc rc = fs_buf_reserve(out, out->len + n);

    *got = 0;
    if (rc)
        return rc;
    while (*got < n) {
        long r = rd(ctx, out->data + out->len, n - *got);

        if (r < 0)
            return FS_EIO;
        if (r == 0)
            return FS_ENOTFOUND;
        out->len += (size_t)r;
        *got += (size_t)r;
    }
    return FS_OK;
}

enum fs_rc
proto_batch_read(proto_read_fn rd, void *ctx, struct fs_buf *out, struct fs_err *err)
{
    const size_t prefix = 8 + PROTO_KEY_BYTES + 4;
    size_t got, hl, pl;
    enum fs_rc rc;

    fs_buf_reset(out);
    rc = read_exact(rd, ctx, out, prefix, &got);
    if (rc == FS_ENOTFOUND && got == 0)
        return FS_ENOTFOUND; /* a clean end between envelopes */
    if (rc)
        goto fail;
    if (memcmp(out->data, PROTO_BATCH_MAGIC, 4) != 0)
        return fs_err_set(err, FS_EPROTO, "not a fieldsync batch");
    hl = fs_get_u32be(out->data + prefix - 4);
    if (hl > PROTO_HEADER_MAX_BYTES)
        return fs_err_set(err, FS_EPROTO, "batch header length is wrong");
    rc = read_exact(rd, ctx, out, hl + 4, &got);
    if (rc)
        goto fail;
    pl = fs_get_u32be(out->data + out->len - 4);
    if (pl > PROTO_BATCH_MAX_BYTES - PROTO_BATCH_FIXED_BYTES - hl)
        return fs_err_set(err, FS_ETOOBIG, "batch is larger than %u bytes",
                          (unsigned)PROTO_BATCH_MAX_BYTES);
    rc = read_exact(rd, ctx, out, pl + PROTO_SIG_BYTES, &got);
    if (rc)
        goto fail;
    return FS_OK;
fail:
    if (rc == FS_ENOTFOUND && out->len >= 4 && memcmp(out->data, PROTO_BATCH_MAGIC, 4) != 0)
        return fs_err_set(err, FS_EPROTO, "not a fieldsync batch");
    if (rc == FS_ENOTFOUND)
        return fs_err_set(err, FS_EPROTO, "the batch is truncated");
    if (rc == FS_EIO)
        return fs_err_set(err, FS_EIO, "cannot read the batch");
    return fs_err_set(err, rc, "out of memory");
}

enum fs_rc
proto_batch_check_bundle(const struct fs_buf *b, struct proto_batch_header *h, struct fs_err *err)
{
    struct proto_batch_limits lim;
    struct proto_batch_view v;

    proto_batch_limits_default(&lim);
    if (proto_batch_open(b->data, b->len, &lim, 1, &v, err) || proto_batch_verify(&v, err) ||
        proto_batch_header_parse(&v, &lim, h, err))
        return FS_EINVAL;
    if (h->purpose != PROTO_PURPOSE_BUNDLE && h->purpose != PROTO_PURPOSE_PUSH)
        return fs_err_set(err, FS_EINVAL, "it holds a batch that is not a bundle");
    return FS_OK;
}
