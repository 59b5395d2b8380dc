/*
 * Unit tests of the batch envelope (proto_batch.c, DESIGN §4). A receiver
 * pipeline in this file runs the steps in the documented order and reports
 * which step refused, so each test asserts both that a bad envelope is refused
 * and that it is refused at the right step: nothing is inflated before the
 * signature checks, nothing is parsed before the lengths do.
 *
 * Envelopes are built two ways: with the library's encoder, and by hand here
 * (build_env) so that every field can be set to a wrong value and still carry a
 * valid signature.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "proto.h"
#include "proto_batch.h"
#include "proto_content.h"
#include "proto_entry.h"

#define CREATED   "2026-11-29T02:16:00.000Z"
#define MAXF      100
#define HDR_BUF   4096
#define SMALL_CAP (1u << 20)

/* ---- fixture: a chain of MAXF signed entries of feed A ---------------------------- */

struct in_frame {
    unsigned char entry[PROTO_ENTRY_MAX_BYTES];
    size_t entry_len;
    unsigned char sig[PROTO_SIG_BYTES];
    unsigned char hash[PROTO_HASH_BYTES];
    unsigned char content[1024];
    size_t content_len; /* 0 for a delete */
};

static unsigned char pk_a[PROTO_KEY_BYTES], sk_a[PROTO_SECRET_BYTES];
static unsigned char pk_b[PROTO_KEY_BYTES], sk_b[PROTO_SECRET_BYTES];
static struct in_frame chain[MAXF];

/* Entry i has seq i+1. Every fifth entry deletes the record the entry before it
 * created; the others create a record. Record ids are fixed, so every byte of
 * the fixture is the same on every run. */
static void
make_chain(void)
{
    size_t i;

    for (i = 0; i < MAXF; i++) {
        struct in_frame *f = &chain[i];
        struct proto_entry e;
        struct fs_buf b;

        memset(&e, 0, sizeof e);
        memcpy(e.feed, pk_a, PROTO_KEY_BYTES);
        e.seq = i + 1;
        if (i) {
            e.has_prev = 1;
            memcpy(e.prev, chain[i - 1].hash, PROTO_HASH_BYTES);
        }
        snprintf(e.at, sizeof e.at, "2026-11-29T02:%02zu:%02zu.000Z", i / 60, i % 60);
        if (i % 5 == 4) {
            e.op = PROTO_OP_DELETE;
            snprintf(e.record_id, sizeof e.record_id, "0193a3c4-5b6e-7f00-8a1b-%012zx", i - 1);
            e.gen = 2;
            e.has_parent = 1;
            memcpy(e.parent, chain[i - 1].hash, PROTO_HASH_BYTES);
            f->content_len = 0;
        } else {
            struct proto_content c;

            proto_content_init(&c);
            assert_int_equal(proto_content_set_str(&c.kind, "interview"), FS_OK);
            assert_int_equal(proto_content_set_str(&c.observed_at, "2026-11-28T09:30:00+08:00"),
                             FS_OK);
            assert_int_equal(proto_content_set_str(&c.region, "天津市/宝坻区"), FS_OK);
            c.has_gps = 1;
            c.lat = 39.717 + (double)i / 1000;
            c.lon = 117.309;
            fs_buf_init(&b, sizeof f->content);
            assert_int_equal(proto_content_set_field(&c, "topic", "industrial transfer"), FS_OK);
            assert_int_equal(proto_content_encode(&c, &b), FS_OK);
            memcpy(f->content, b.data, b.len);
            f->content_len = b.len;
            fs_buf_release(&b);
            proto_content_release(&c);

            e.op = PROTO_OP_PUT;
            snprintf(e.record_id, sizeof e.record_id, "0193a3c4-5b6e-7f00-8a1b-%012zx", i);
            e.gen = 1;
            e.has_content = 1;
            e.enc = PROTO_ENC_JSON;
            e.content_len = f->content_len;
            proto_hash(f->content, f->content_len, e.content_hash);
        }
        assert_int_equal(proto_entry_check(&e, NULL), FS_OK);
        fs_buf_init(&b, PROTO_ENTRY_MAX_BYTES);
        assert_int_equal(proto_entry_encode(&e, &b), FS_OK);
        memcpy(f->entry, b.data, b.len);
        f->entry_len = b.len;
        fs_buf_release(&b);
        proto_entry_sign(f->entry, f->entry_len, sk_a, f->sig);
        proto_entry_hash(f->entry, f->entry_len, f->sig, f->hash);
    }
}

static int
group_setup(void **state)
{
    unsigned char seed[PROTO_SEED_BYTES];

    (void)state;
    if (proto_init() != FS_OK)
        return -1;
    memset(seed, 0xa1, sizeof seed);
    proto_keypair_from_seed(seed, pk_a, sk_a);
    memset(seed, 0xb2, sizeof seed);
    proto_keypair_from_seed(seed, pk_b, sk_b);
    make_chain();
    return 0;
}

/* ---- the receiver, step by step ------------------------------------------------------ */

enum step { ST_OPEN = 1, ST_VERIFY, ST_HEADER, ST_INFLATE, ST_FRAMES, ST_DONE };

struct recv {
    enum step failed; /* the step that refused, or ST_DONE */
    enum fs_rc rc;
    struct fs_err err;
    struct proto_batch_view v;
    struct proto_batch_header h;
    struct fs_buf raw; /* capped at PROTO_BATCH_MAX_RAW, as a receiver must */
    struct proto_frame frames[MAXF + 1];
    size_t nframes;
};

static const char *const step_names[] = {"",        "open",   "verify", "header",
                                         "inflate", "frames", "done"};

/* Runs every receiver step in the order of proto_batch.h. The caller releases
 * r->raw with recv_release. */
static enum step
receive(const void *bytes, size_t len, const struct proto_batch_limits *lim, int allow_sealed,
        struct recv *r)
{
    struct proto_batch_limits def;
    size_t off = 0;

    memset(r, 0, sizeof *r);
    fs_buf_init(&r->raw, PROTO_BATCH_MAX_RAW);
    if (!lim) {
        proto_batch_limits_default(&def);
        lim = &def;
    }
    r->failed = ST_OPEN;
    if ((r->rc = proto_batch_open(bytes, len, lim, allow_sealed, &r->v, &r->err)))
        return r->failed;
    r->failed = ST_VERIFY;
    if ((r->rc = proto_batch_verify(&r->v, &r->err)))
        return r->failed;
    r->failed = ST_HEADER;
    if ((r->rc = proto_batch_header_parse(&r->v, lim, &r->h, &r->err)))
        return r->failed;
    r->failed = ST_INFLATE;
    if ((r->rc = proto_batch_inflate(&r->v, &r->h, &r->raw, &r->err)))
        return r->failed;
    /* Exactly count frames: iterate to the end and compare. */
    r->failed = ST_FRAMES;
    for (;;) {
        struct proto_frame f;

        r->rc = proto_batch_next(&r->raw, &off, &f, &r->err);
        if (r->rc == FS_ENOTFOUND)
            break;
        if (r->rc)
            return r->failed;
        if (r->nframes == r->h.count) {
            r->rc = fs_err_set(&r->err, FS_EPROTO, "more frames than the header's count");
            return r->failed;
        }
        if (r->nframes < FS_ARRAY_LEN(r->frames))
            r->frames[r->nframes] = f;
        r->nframes++;
    }
    if (r->nframes != r->h.count) {
        r->rc = fs_err_set(&r->err, FS_EPROTO, "fewer frames than the header's count");
        return r->failed;
    }
    r->rc = FS_OK;
    r->failed = ST_DONE;
    return r->failed;
}

static void
recv_release(struct recv *r)
{
    fs_buf_release(&r->raw);
}

/* Receives and expects the given step to refuse with the given code (ST_DONE
 * and FS_OK for success). */
static void
expect_recv_lim(const void *bytes, size_t len, const struct proto_batch_limits *lim,
                int allow_sealed, enum step want, enum fs_rc want_rc, const char *why)
{
    struct recv r;

    receive(bytes, len, lim, allow_sealed, &r);
    if (r.failed != want || r.rc != want_rc)
        fail_msg("%s: stopped at %s with %d (%s), want %s with %d", why, step_names[r.failed], r.rc,
                 r.err.msg, step_names[want], want_rc);
    if (want != ST_DONE)
        assert_true(r.err.msg[0] != 0);
    recv_release(&r);
}

static void
expect_recv(const struct fs_buf *env, enum step want, enum fs_rc want_rc, const char *why)
{
    expect_recv_lim(env->data, env->len, NULL, 0, want, want_rc, why);
}

/* ---- building envelopes ------------------------------------------------------------- */

/* Frames [from, to) (seq from+1 .. to) as a batch of purpose, sealed to
 * seal_to when given, appended to out; the encoder's counts checked on the way. */
static void
encode_into(struct proto_batch_enc *enc, size_t from, size_t to, enum proto_purpose purpose,
            const unsigned char *seal_to, struct fs_buf *out)
{
    struct proto_batch_header h;
    size_t i, raw = 0;

    for (i = from; i < to; i++) {
        assert_int_equal(proto_batch_enc_add(enc, chain[i].entry, chain[i].entry_len, chain[i].sig,
                                             chain[i].content_len ? chain[i].content : NULL,
                                             chain[i].content_len),
                         FS_OK);
        raw += 8 + chain[i].entry_len + PROTO_SIG_BYTES + chain[i].content_len;
        assert_int_equal(proto_batch_enc_count(enc), i - from + 1);
        assert_int_equal(proto_batch_enc_raw_len(enc), raw);
    }
    memset(&h, 0, sizeof h);
    h.purpose = purpose;
    h.has_feed = 1;
    memcpy(h.feed, pk_a, PROTO_KEY_BYTES);
    h.from = from + 1;
    h.to = to;
    memcpy(h.to_hash, chain[to - 1].hash, PROTO_HASH_BYTES);
    snprintf(h.created, sizeof h.created, "%s", CREATED);
    assert_int_equal(seal_to ? proto_batch_enc_finish_sealed(enc, &h, pk_a, sk_a, seal_to, out)
                             : proto_batch_enc_finish(enc, &h, pk_a, sk_a, out),
                     FS_OK);
    /* The encoder is reset for the next batch. */
    assert_int_equal(proto_batch_enc_count(enc), 0);
    assert_int_equal(proto_batch_enc_raw_len(enc), 0);
}

/* The push envelope of frames [from, to), in a new out. */
static void
encode_batch(struct proto_batch_enc *enc, size_t from, size_t to, struct fs_buf *out)
{
    fs_buf_init(out, PROTO_BATCH_MAX_BYTES);
    encode_into(enc, from, to, PROTO_PURPOSE_PUSH, NULL, out);
}

static void
encode_chain(size_t from, size_t to, struct fs_buf *out)
{
    struct proto_batch_enc *enc = NULL;

    assert_int_equal(proto_batch_enc_new(1, &enc), FS_OK);
    encode_batch(enc, from, to, out);
    proto_batch_enc_free(enc);
}

/* The raw (inflated) payload of frames [from, to), as the wire format says. */
static void
raw_frames(size_t from, size_t to, struct fs_buf *raw)
{
    size_t i;

    fs_buf_init(raw, PROTO_BATCH_MAX_RAW);
    for (i = from; i < to; i++) {
        assert_int_equal(fs_buf_add_u32be(raw, (uint32_t)chain[i].entry_len), FS_OK);
        assert_int_equal(fs_buf_add(raw, chain[i].entry, chain[i].entry_len), FS_OK);
        assert_int_equal(fs_buf_add(raw, chain[i].sig, PROTO_SIG_BYTES), FS_OK);
        assert_int_equal(fs_buf_add_u32be(raw, (uint32_t)chain[i].content_len), FS_OK);
        assert_int_equal(fs_buf_add(raw, chain[i].content, chain[i].content_len), FS_OK);
    }
}

/* zlib (RFC 1950) of data, into a new buffer. */
static void
zlib_compress(const void *data, size_t len, struct fs_buf *out)
{
    uLongf zl = compressBound((uLong)len);

    fs_buf_init(out, PROTO_BATCH_MAX_BYTES);
    assert_int_equal(fs_buf_reserve(out, zl), FS_OK);
    assert_int_equal(compress2(out->data, &zl, data, (uLong)len, 1), Z_OK);
    out->len = zl;
}

/* The header JSON exactly as the encoder writes it. feed NULL: multi-feed. */
static void
header_json(char *out, const char *purpose, const unsigned char *feed, uint64_t from, uint64_t to,
            const unsigned char *to_hash, uint64_t count, uint64_t raw_len)
{
    char fh[PROTO_HEX_KEY_LEN + 1], th[PROTO_HEX_KEY_LEN + 1];

    if (!feed) {
        snprintf(out, HDR_BUF,
                 "{\"purpose\":\"%s\",\"feed\":null,\"from\":null,\"to\":null,\"to_hash\":null,"
                 "\"count\":%llu,\"raw_len\":%llu,\"created\":\"" CREATED "\"}",
                 purpose, (unsigned long long)count, (unsigned long long)raw_len);
        return;
    }
    proto_hex_encode(feed, PROTO_KEY_BYTES, fh);
    proto_hex_encode(to_hash, PROTO_HASH_BYTES, th);
    snprintf(out, HDR_BUF,
             "{\"purpose\":\"%s\",\"feed\":\"%s\",\"from\":%llu,\"to\":%llu,\"to_hash\":\"%s\","
             "\"count\":%llu,\"raw_len\":%llu,\"created\":\"" CREATED "\"}",
             purpose, fh, (unsigned long long)from, (unsigned long long)to, th,
             (unsigned long long)count, (unsigned long long)raw_len);
}

/* Everything of an envelope built by hand; fields left 0 take the valid value. */
struct env_spec {
    const char *magic;        /* 4 bytes; NULL: "FSB1" */
    int version;              /* -1: PROTO_BATCH_VERSION */
    unsigned flags, reserved; /* written as given */
    const unsigned char *pk;  /* the signer key written; NULL: A */
    const unsigned char *sk;  /* the key that signs; NULL: A */
    const char *header;       /* the header bytes */
    size_t header_len;        /* 0: strlen(header) */
    int64_t header_len_field; /* -1: the true length */
    const unsigned char *payload;
    size_t payload_len;
    int64_t payload_len_field; /* -1: the true length */
};

static void
spec_init(struct env_spec *s)
{
    memset(s, 0, sizeof *s);
    s->version = -1;
    s->header_len_field = -1;
    s->payload_len_field = -1;
}

static void
build_env(const struct env_spec *s, struct fs_buf *out)
{
    unsigned char fixed[8], d[PROTO_HASH_BYTES], sig[PROTO_SIG_BYTES];
    size_t hl = s->header_len ? s->header_len : strlen(s->header);

    memcpy(fixed, s->magic ? s->magic : PROTO_BATCH_MAGIC, 4);
    fixed[4] = (unsigned char)(s->version < 0 ? PROTO_BATCH_VERSION : s->version);
    fixed[5] = (unsigned char)s->flags;
    fixed[6] = (unsigned char)(s->reserved >> 8);
    fixed[7] = (unsigned char)s->reserved;
    fs_buf_init(out, PROTO_BATCH_MAX_BYTES + 1024);
    assert_int_equal(fs_buf_add(out, fixed, sizeof fixed), FS_OK);
    assert_int_equal(fs_buf_add(out, s->pk ? s->pk : pk_a, PROTO_KEY_BYTES), FS_OK);
    assert_int_equal(
        fs_buf_add_u32be(out,
                         (uint32_t)(s->header_len_field < 0 ? (int64_t)hl : s->header_len_field)),
        FS_OK);
    assert_int_equal(fs_buf_add(out, s->header, hl), FS_OK);
    assert_int_equal(
        fs_buf_add_u32be(out, (uint32_t)(s->payload_len_field < 0 ? (int64_t)s->payload_len
                                                                  : s->payload_len_field)),
        FS_OK);
    assert_int_equal(fs_buf_add(out, s->payload, s->payload_len), FS_OK);
    /* signature = Ed25519(signer, tag ‖ NUL ‖ BLAKE2b-256(every byte before it)) */
    proto_hash(out->data, out->len, d);
    proto_sign_tagged(PROTO_TAG_BATCH, d, sizeof d, s->sk ? s->sk : sk_a, sig);
    assert_int_equal(fs_buf_add(out, sig, sizeof sig), FS_OK);
}

/* A valid push of frames [from, to) built by hand, with header text hdr (NULL:
 * the true header) and the payload given (NULL: zlib of the true frames). */
static void
hand_env(size_t from, size_t to, const char *hdr, const struct fs_buf *payload, struct fs_buf *out)
{
    struct fs_buf raw, z;
    struct env_spec s;
    char h[HDR_BUF];

    raw_frames(from, to, &raw);
    zlib_compress(raw.data, raw.len, &z);
    if (!hdr) {
        header_json(h, "push", pk_a, from + 1, to, chain[to - 1].hash, to - from, raw.len);
        hdr = h;
    }
    spec_init(&s);
    s.header = hdr;
    s.payload = payload ? payload->data : z.data;
    s.payload_len = payload ? payload->len : z.len;
    build_env(&s, out);
    fs_buf_release(&raw);
    fs_buf_release(&z);
}

/* src with the first occurrence of from replaced by to, in out (HDR_BUF). */
static void
subst(const char *src, const char *from, const char *to, char *out)
{
    const char *p = strstr(src, from);

    if (!p)
        fail_msg("\"%s\" not found in %s", from, src);
    snprintf(out, HDR_BUF, "%.*s%s%s", (int)(p - src), src, to, p + strlen(from));
}

/* The true header of frames [from, to), with one substitution. */
static void
header_with(size_t from, size_t to, const char *a, const char *b, char *out)
{
    char h[HDR_BUF];
    struct fs_buf raw;

    raw_frames(from, to, &raw);
    header_json(h, "push", pk_a, from + 1, to, chain[to - 1].hash, to - from, raw.len);
    fs_buf_release(&raw);
    subst(h, a, b, out);
}

static size_t
raw_len_of(size_t from, size_t to)
{
    struct fs_buf raw;
    size_t n;

    raw_frames(from, to, &raw);
    n = raw.len;
    fs_buf_release(&raw);
    return n;
}

/* ---- round trips --------------------------------------------------------------------- */

static void
test_batch_roundtrip(void **state)
{
    static const size_t sizes[] = {2, 3, 5, 17, 64, 99, 100};
    struct proto_batch_enc *enc = NULL;
    size_t k, i;

    (void)state;
    /* One encoder for every batch: finish resets it. */
    assert_int_equal(proto_batch_enc_new(1, &enc), FS_OK);
    for (k = 0; k < FS_ARRAY_LEN(sizes); k++) {
        size_t n = sizes[k], from = MAXF - n; /* the last n entries of the chain */
        struct fs_buf env;
        struct recv r;

        encode_batch(enc, from, MAXF, &env);
        assert_int_equal(receive(env.data, env.len, NULL, 0, &r), ST_DONE);
        assert_int_equal(r.v.flags, 0);
        assert_memory_equal(r.v.signer, pk_a, PROTO_KEY_BYTES);
        assert_int_equal(r.h.purpose, PROTO_PURPOSE_PUSH);
        assert_true(r.h.has_feed);
        assert_memory_equal(r.h.feed, pk_a, PROTO_KEY_BYTES);
        assert_int_equal(r.h.from, from + 1);
        assert_int_equal(r.h.to, MAXF);
        assert_memory_equal(r.h.to_hash, chain[MAXF - 1].hash, PROTO_HASH_BYTES);
        assert_int_equal(r.h.count, n);
        assert_int_equal(r.h.raw_len, raw_len_of(from, MAXF));
        assert_string_equal(r.h.created, CREATED);
        assert_int_equal(r.raw.len, r.h.raw_len);
        assert_int_equal(r.nframes, n);
        /* Frames equal the input, in order, and each passes the entry checks and
         * continues the chain. */
        for (i = 0; i < n; i++) {
            const struct in_frame *f = &chain[from + i];
            const struct proto_frame *g = &r.frames[i];
            struct proto_entry e;
            unsigned char hash[PROTO_HASH_BYTES];

            assert_int_equal(g->entry_len, f->entry_len);
            assert_memory_equal(g->entry, f->entry, f->entry_len);
            assert_memory_equal(g->sig, f->sig, PROTO_SIG_BYTES);
            assert_int_equal(g->content_len, f->content_len);
            if (f->content_len)
                assert_memory_equal(g->content, f->content, f->content_len);
            else
                assert_null(g->content);
            assert_int_equal(proto_entry_verify_full(g->entry, g->entry_len, g->sig, g->content,
                                                     g->content_len, r.h.feed, 0, &e, hash, &r.err),
                             FS_OK);
            assert_memory_equal(hash, f->hash, PROTO_HASH_BYTES);
            assert_int_equal(proto_chain_follows(
                                 &e, from + i, from + i ? chain[from + i - 1].hash : NULL, &r.err),
                             FS_OK);
        }
        recv_release(&r);
        fs_buf_release(&env);
    }
    proto_batch_enc_free(enc);
}

/* The hand builder writes what the encoder writes (header bytes identical), and
 * what it builds is accepted: the refusals below are refusals of one change. */
static void
test_batch_hand_built_matches(void **state)
{
    struct fs_buf env, hand;
    struct recv r1, r2;
    char h[HDR_BUF];

    (void)state;
    encode_chain(0, 7, &env);
    hand_env(0, 7, NULL, NULL, &hand);
    assert_int_equal(receive(env.data, env.len, NULL, 0, &r1), ST_DONE);
    assert_int_equal(receive(hand.data, hand.len, NULL, 0, &r2), ST_DONE);
    header_json(h, "push", pk_a, 1, 7, chain[6].hash, 7, raw_len_of(0, 7));
    assert_int_equal(r1.v.header_len, strlen(h));
    assert_memory_equal(r1.v.header, h, strlen(h));
    assert_int_equal(r2.v.header_len, r1.v.header_len);
    assert_memory_equal(r2.v.header, r1.v.header, r1.v.header_len);
    /* Same fixed part, same inflated payload. */
    assert_memory_equal(env.data, hand.data, 8 + PROTO_KEY_BYTES + 4);
    assert_int_equal(r1.raw.len, r2.raw.len);
    assert_memory_equal(r1.raw.data, r2.raw.data, r1.raw.len);
    recv_release(&r1);
    recv_release(&r2);
    fs_buf_release(&env);
    fs_buf_release(&hand);
}

/* ---- tampering on the wire ---------------------------------------------------------------- */

/* Every single-bit change anywhere in an envelope is refused before the header
 * is parsed: at open (the fixed fields and lengths) or at the signature. */
static void
test_batch_bit_flips(void **state)
{
    struct fs_buf env;
    struct recv r;
    size_t i, hl, hdr_end, pl_end;
    unsigned bit;

    (void)state;
    encode_chain(0, 2, &env);
    assert_int_equal(receive(env.data, env.len, NULL, 0, &r), ST_DONE);
    hl = r.v.header_len;
    recv_release(&r);
    hdr_end = 8 + PROTO_KEY_BYTES + 4 + hl;
    pl_end = env.len - PROTO_SIG_BYTES;
    for (i = 0; i < env.len; i++) {
        enum step want;

        if (i < 8)
            want = ST_OPEN; /* magic, version, flags, reserved */
        else if (i < 8 + PROTO_KEY_BYTES)
            want = ST_VERIFY; /* signer key */
        else if (i < 8 + PROTO_KEY_BYTES + 4)
            want = ST_OPEN; /* header_len */
        else if (i < hdr_end)
            want = ST_VERIFY; /* header */
        else if (i < hdr_end + 4)
            want = ST_OPEN; /* payload_len */
        else
            want = ST_VERIFY; /* payload, then the signature */
        for (bit = 0; bit < 8; bit++) {
            env.data[i] ^= (unsigned char)(1u << bit);
            receive(env.data, env.len, NULL, 0, &r);
            if (r.failed != want || r.rc != FS_EPROTO)
                fail_msg("bit %u of byte %zu (%s): stopped at %s with %d, want %s", bit, i,
                         i >= pl_end ? "signature" : "body", step_names[r.failed], r.rc,
                         step_names[want]);
            recv_release(&r);
            env.data[i] ^= (unsigned char)(1u << bit);
        }
    }
    expect_recv(&env, ST_DONE, FS_OK, "restored");
    /* The sealed bit is an allowed flag for a bundle receiver: then it is the
     * signature that catches the change. */
    env.data[5] ^= PROTO_BATCH_FLAG_SEALED;
    expect_recv_lim(env.data, env.len, NULL, 1, ST_VERIFY, FS_EPROTO, "sealed bit flipped");
    fs_buf_release(&env);
}

static void
test_batch_trailing_and_truncated(void **state)
{
    struct fs_buf env;
    size_t len, i;

    (void)state;
    encode_chain(0, 2, &env);
    len = env.len;
    assert_int_equal(fs_buf_addc(&env, 0), FS_OK);
    expect_recv_lim(env.data, len + 1, NULL, 0, ST_OPEN, FS_EPROTO, "one trailing byte");
    for (i = 0; i < PROTO_SIG_BYTES; i++)
        assert_int_equal(fs_buf_addc(&env, 'x'), FS_OK);
    expect_recv_lim(env.data, env.len, NULL, 0, ST_OPEN, FS_EPROTO, "a second signature's worth");
    /* Every truncation, down to nothing. */
    for (i = 0; i < len; i++)
        expect_recv_lim(env.data, i, NULL, 0, ST_OPEN, FS_EPROTO, "truncated");
    expect_recv_lim(env.data, len, NULL, 0, ST_DONE, FS_OK, "whole");
    fs_buf_release(&env);
}

/* Fixed fields with wrong values are refused at open even when the envelope is
 * signed correctly over them. */
static void
test_batch_fixed_fields(void **state)
{
    static const char *const magics[] = {"FSB2", "fsb1", "FSB0", "\0SB1", "XXXX"};
    static const int versions[] = {0, 2, 255};
    static const unsigned bad_flags[] = {0x02, 0x04, 0x80, 0xfe, 0x03, 0xff};
    static const unsigned reserved[] = {0x0001, 0x0100, 0x8000, 0xffff};
    struct fs_buf raw, z, env;
    struct env_spec s;
    char h[HDR_BUF];
    size_t i;

    (void)state;
    raw_frames(0, 2, &raw);
    zlib_compress(raw.data, raw.len, &z);
    header_json(h, "push", pk_a, 1, 2, chain[1].hash, 2, raw.len);
    spec_init(&s);
    s.header = h;
    s.payload = z.data;
    s.payload_len = z.len;
    build_env(&s, &env);
    expect_recv(&env, ST_DONE, FS_OK, "the control");
    fs_buf_release(&env);

    for (i = 0; i < FS_ARRAY_LEN(magics); i++) {
        s.magic = magics[i];
        build_env(&s, &env);
        expect_recv_lim(env.data, env.len, NULL, 1, ST_OPEN, FS_EPROTO, "wrong magic");
        fs_buf_release(&env);
    }
    s.magic = NULL;
    for (i = 0; i < FS_ARRAY_LEN(versions); i++) {
        s.version = versions[i];
        build_env(&s, &env);
        expect_recv_lim(env.data, env.len, NULL, 1, ST_OPEN, FS_EPROTO, "wrong version");
        fs_buf_release(&env);
    }
    s.version = -1;
    for (i = 0; i < FS_ARRAY_LEN(bad_flags); i++) {
        s.flags = bad_flags[i];
        build_env(&s, &env);
        expect_recv_lim(env.data, env.len, NULL, 0, ST_OPEN, FS_EPROTO, "unknown flags");
        expect_recv_lim(env.data, env.len, NULL, 1, ST_OPEN, FS_EPROTO,
                        "unknown flags, sealed allowed");
        fs_buf_release(&env);
    }
    /* Sealed: refused where not allowed; where allowed, it passes the checks up
     * to the payload, which must be opened before it can be inflated. */
    s.flags = PROTO_BATCH_FLAG_SEALED;
    build_env(&s, &env);
    expect_recv_lim(env.data, env.len, NULL, 0, ST_OPEN, FS_EPROTO, "sealed, not allowed");
    expect_recv_lim(env.data, env.len, NULL, 1, ST_INFLATE, FS_EINTERNAL, "sealed, allowed");
    fs_buf_release(&env);
    s.flags = 0;
    for (i = 0; i < FS_ARRAY_LEN(reserved); i++) {
        s.reserved = reserved[i];
        build_env(&s, &env);
        expect_recv_lim(env.data, env.len, NULL, 1, ST_OPEN, FS_EPROTO, "reserved not zero");
        fs_buf_release(&env);
    }
    fs_buf_release(&raw);
    fs_buf_release(&z);
}

static void
test_batch_length_fields(void **state)
{
    static const int64_t deltas[] = {-1, 1, -4, 4, 64};
    struct fs_buf raw, z, env;
    struct env_spec s;
    char h[HDR_BUF], big[HDR_BUF];
    size_t i, hl;

    (void)state;
    raw_frames(0, 2, &raw);
    zlib_compress(raw.data, raw.len, &z);
    header_json(h, "push", pk_a, 1, 2, chain[1].hash, 2, raw.len);
    hl = strlen(h);
    spec_init(&s);
    s.header = h;
    s.payload = z.data;
    s.payload_len = z.len;
    for (i = 0; i < FS_ARRAY_LEN(deltas); i++) {
        s.header_len_field = (int64_t)hl + deltas[i];
        build_env(&s, &env);
        expect_recv(&env, ST_OPEN, FS_EPROTO, "header_len off");
        fs_buf_release(&env);
        s.header_len_field = -1;
        s.payload_len_field = (int64_t)z.len + deltas[i];
        build_env(&s, &env);
        expect_recv(&env, ST_OPEN, FS_EPROTO, "payload_len off");
        fs_buf_release(&env);
        s.payload_len_field = -1;
    }
    s.header_len_field = 0xffffffff;
    build_env(&s, &env);
    expect_recv(&env, ST_OPEN, FS_EPROTO, "header_len 2^32-1");
    fs_buf_release(&env);
    s.header_len_field = -1;
    s.payload_len_field = 0xffffffff;
    build_env(&s, &env);
    expect_recv(&env, ST_OPEN, FS_EPROTO, "payload_len 2^32-1");
    fs_buf_release(&env);
    s.payload_len_field = -1;

    /* The header is bounded: padded with spaces (still the same JSON) to the
     * limit it passes, one byte more is refused at open. */
    assert_true(hl < PROTO_HEADER_MAX_BYTES);
    memset(big, ' ', PROTO_HEADER_MAX_BYTES - hl);
    memcpy(big + PROTO_HEADER_MAX_BYTES - hl, h, hl + 1);
    assert_int_equal(strlen(big), PROTO_HEADER_MAX_BYTES);
    s.header = big;
    build_env(&s, &env);
    expect_recv(&env, ST_DONE, FS_OK, "header at the limit");
    fs_buf_release(&env);
    memmove(big + 1, big, PROTO_HEADER_MAX_BYTES + 1);
    big[0] = ' ';
    build_env(&s, &env);
    expect_recv(&env, ST_OPEN, FS_EPROTO, "header one byte over the limit");
    fs_buf_release(&env);
    fs_buf_release(&raw);
    fs_buf_release(&z);
}

/* The whole envelope is bounded by the receiver's limit, checked first. */
static void
test_batch_max_bytes(void **state)
{
    struct proto_batch_limits lim;
    struct fs_buf env;
    unsigned char *huge;

    (void)state;
    encode_chain(0, 10, &env);
    proto_batch_limits_default(&lim);
    lim.max_bytes = env.len;
    expect_recv_lim(env.data, env.len, &lim, 0, ST_DONE, FS_OK, "exactly at max_bytes");
    lim.max_bytes = env.len - 1;
    expect_recv_lim(env.data, env.len, &lim, 0, ST_OPEN, FS_ETOOBIG, "one byte over max_bytes");
    lim.max_bytes = PROTO_BATCH_FIXED_BYTES;
    expect_recv_lim(env.data, env.len, &lim, 0, ST_OPEN, FS_ETOOBIG, "far over max_bytes");
    fs_buf_release(&env);
    /* Over the v1 limit: refused on its length alone, whatever the bytes. */
    huge = calloc(1, PROTO_BATCH_MAX_BYTES + 1);
    assert_non_null(huge);
    memcpy(huge, PROTO_BATCH_MAGIC, 4);
    expect_recv_lim(huge, PROTO_BATCH_MAX_BYTES + 1, NULL, 0, ST_OPEN, FS_ETOOBIG,
                    "over PROTO_BATCH_MAX_BYTES");
    free(huge);
}

/* ---- the header ------------------------------------------------------------------------ */

static void
expect_header(const char *hdr, enum step want, enum fs_rc want_rc, const char *why)
{
    struct fs_buf env;

    hand_env(0, 2, hdr, NULL, &env);
    expect_recv(&env, want, want_rc, why);
    fs_buf_release(&env);
}

static void
test_batch_header_refused(void **state)
{
    char h[HDR_BUF], m[HDR_BUF], th[PROTO_HEX_KEY_LEN + 1], up[PROTO_HEX_KEY_LEN + 1];
    size_t rl = raw_len_of(0, 2), i;

    (void)state;
    header_with(0, 2, "{", "{", h);
    expect_header(h, ST_DONE, FS_OK, "the control");

    subst(h, "\"count\":2,", "\"count\":2,\"count\":2,", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "duplicate count");
    subst(h, "{", "{\"purpose\":\"push\",", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "duplicate purpose");
    subst(h, "{", "{\"sealed_to\":null,", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "unknown key");
    subst(h, ",\"created\":\"" CREATED "\"", "", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "no created");
    subst(h, "\"purpose\":\"push\"", "\"purpose\":\"sync\"", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "purpose sync");
    subst(h, "\"purpose\":\"push\"", "\"purpose\":\"PUSH\"", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "purpose PUSH");
    /* count must match from..to. */
    subst(h, "\"count\":2,", "\"count\":3,", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "count 3 for 1..2");
    subst(h, "\"count\":2,", "\"count\":1,", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "count 1 for 1..2");
    subst(h, "\"count\":2,", "\"count\":0,", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "count 0 for 1..2");
    subst(h, "\"count\":2,", "\"count\":2.0,", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "count 2.0");
    subst(h, "\"from\":1,", "\"from\":0,", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "from 0");
    subst(h, "\"from\":1,", "\"from\":3,", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "from after to");
    subst(h, "\"to\":2,", "\"to\":null,", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "to null with a feed");
    /* hex */
    proto_hex_encode(chain[1].hash, PROTO_HASH_BYTES, th);
    for (i = 0; i <= PROTO_HEX_KEY_LEN; i++)
        up[i] = (char)(th[i] >= 'a' && th[i] <= 'f' ? th[i] - 'a' + 'A' : th[i]);
    assert_string_not_equal(up, th);
    subst(h, th, up, m);
    expect_header(m, ST_HEADER, FS_EPROTO, "uppercase to_hash");
    subst(h, th, "", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "empty to_hash");
    /* created */
    subst(h, CREATED, "yesterday", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "created not a time");
    subst(h, CREATED, "2026-02-30T00:00:00Z", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "created an impossible date");
    subst(h, CREATED, "2026-11-29T10:16:00+08:00", m);
    expect_header(m, ST_DONE, FS_OK, "created with an offset");
    /* Not one JSON object of valid UTF-8. */
    expect_header("[]", ST_HEADER, FS_EPROTO, "an array");
    expect_header("{", ST_HEADER, FS_EPROTO, "truncated JSON");
    subst(h, CREATED, CREATED "\xc3\x28", m);
    expect_header(m, ST_HEADER, FS_EPROTO, "invalid UTF-8");
    subst(h, "}", "}{}", m); /* the first brace closed is the header's last */
    expect_header(m, ST_HEADER, FS_EPROTO, "two objects");

    /* Who signs: a push (or bundle) only by its own feed; a pull by anyone. */
    {
        struct fs_buf raw, z, env;
        struct env_spec s;

        raw_frames(0, 2, &raw);
        zlib_compress(raw.data, raw.len, &z);
        spec_init(&s);
        s.header = h;
        s.payload = z.data;
        s.payload_len = z.len;
        s.pk = pk_b;
        s.sk = sk_b;
        build_env(&s, &env);
        expect_recv(&env, ST_HEADER, FS_EPROTO, "push of feed A signed by B");
        fs_buf_release(&env);
        subst(h, "\"purpose\":\"push\"", "\"purpose\":\"bundle\"", m);
        s.header = m;
        build_env(&s, &env);
        expect_recv(&env, ST_HEADER, FS_EPROTO, "bundle of feed A signed by B");
        fs_buf_release(&env);
        subst(h, "\"purpose\":\"push\"", "\"purpose\":\"pull\"", m);
        build_env(&s, &env);
        expect_recv(&env, ST_DONE, FS_OK, "pull of feed A signed by the server B");
        fs_buf_release(&env);
        /* B's key written but A's signature: the signature step catches it. */
        s.header = h;
        s.sk = sk_a;
        build_env(&s, &env);
        expect_recv(&env, ST_VERIFY, FS_EPROTO, "signer field B, signed by A");
        fs_buf_release(&env);
        /* A multi-feed pull has a null feed and range; nothing else does. */
        header_json(m, "pull", NULL, 0, 0, NULL, 2, raw.len);
        s.header = m;
        s.sk = sk_b;
        build_env(&s, &env);
        expect_recv(&env, ST_DONE, FS_OK, "multi-feed pull");
        fs_buf_release(&env);
        header_json(m, "push", NULL, 0, 0, NULL, 2, raw.len);
        s.pk = pk_a;
        s.sk = sk_a;
        build_env(&s, &env);
        expect_recv(&env, ST_HEADER, FS_EPROTO, "push with a null feed");
        fs_buf_release(&env);
        fs_buf_release(&raw);
        fs_buf_release(&z);
    }

    /* Limits on count and raw_len are checked at the header, before inflating,
     * and are FS_ETOOBIG. */
    {
        struct proto_batch_limits lim;
        struct fs_buf env;
        struct recv r;
        char n[64];

        snprintf(n, sizeof n, "\"raw_len\":%zu,", rl);
        header_with(0, 2, n, "\"raw_len\":67108865,", m);
        hand_env(0, 2, m, NULL, &env);
        assert_int_equal(receive(env.data, env.len, NULL, 0, &r), ST_HEADER);
        assert_int_equal(r.rc, FS_ETOOBIG);
        assert_int_equal(r.raw.alloc, 0); /* nothing reserved, nothing inflated */
        recv_release(&r);
        fs_buf_release(&env);
        header_with(0, 2, n, "\"raw_len\":9007199254740991,", m);
        expect_header(m, ST_HEADER, FS_ETOOBIG, "raw_len 2^53-1");

        hand_env(0, 2, NULL, NULL, &env);
        proto_batch_limits_default(&lim);
        lim.max_raw = rl - 1;
        expect_recv_lim(env.data, env.len, &lim, 0, ST_HEADER, FS_ETOOBIG, "raw_len over max_raw");
        lim.max_raw = rl;
        expect_recv_lim(env.data, env.len, &lim, 0, ST_DONE, FS_OK, "raw_len at max_raw");
        lim.max_count = 1;
        expect_recv_lim(env.data, env.len, &lim, 0, ST_HEADER, FS_ETOOBIG, "count over max_count");
        fs_buf_release(&env);
    }
}

/* ---- the payload -------------------------------------------------------------------- */

static void
expect_payload(const struct fs_buf *payload, const char *hdr, enum step want, enum fs_rc rc,
               const char *why)
{
    struct fs_buf env;

    hand_env(0, 2, hdr, payload, &env);
    expect_recv(&env, want, rc, why);
    fs_buf_release(&env);
}

static void
test_batch_inflate_refused(void **state)
{
    static const long deltas[] = {-1, 1, -8, 8, -100};
    struct fs_buf raw, z, p;
    char m[HDR_BUF], n[64], to[64];
    size_t rl, i;

    (void)state;
    raw_frames(0, 2, &raw);
    rl = raw.len;
    zlib_compress(raw.data, raw.len, &z);
    expect_payload(&z, NULL, ST_DONE, FS_OK, "the control");

    /* raw_len that lies, smaller or larger. */
    snprintf(n, sizeof n, "\"raw_len\":%zu,", rl);
    for (i = 0; i < FS_ARRAY_LEN(deltas); i++) {
        snprintf(to, sizeof to, "\"raw_len\":%ld,", (long)rl + deltas[i]);
        header_with(0, 2, n, to, m);
        expect_payload(&z, m, ST_INFLATE, FS_EPROTO, "raw_len wrong");
    }
    header_with(0, 2, n, "\"raw_len\":0,", m);
    expect_payload(&z, m, ST_INFLATE, FS_EPROTO, "raw_len 0");

    /* Bytes after the zlib stream, inside the payload. */
    fs_buf_init(&p, PROTO_BATCH_MAX_BYTES);
    assert_int_equal(fs_buf_add(&p, z.data, z.len), FS_OK);
    assert_int_equal(fs_buf_addc(&p, 0), FS_OK);
    expect_payload(&p, NULL, ST_INFLATE, FS_EPROTO, "one byte after the stream");
    fs_buf_reset(&p);
    assert_int_equal(fs_buf_add(&p, z.data, z.len), FS_OK);
    assert_int_equal(fs_buf_add(&p, z.data, z.len), FS_OK);
    expect_payload(&p, NULL, ST_INFLATE, FS_EPROTO, "a second stream after the first");

    /* A stream cut short, or corrupted (checksum). */
    for (i = 1; i < z.len; i += i < 16 ? 1 : 37) {
        fs_buf_reset(&p);
        assert_int_equal(fs_buf_add(&p, z.data, z.len - i), FS_OK);
        expect_payload(&p, NULL, ST_INFLATE, FS_EPROTO, "stream cut short");
    }
    fs_buf_reset(&p);
    assert_int_equal(fs_buf_add(&p, z.data, z.len), FS_OK);
    p.data[p.len - 1] ^= 1; /* the Adler-32 */
    expect_payload(&p, NULL, ST_INFLATE, FS_EPROTO, "bad checksum");

    /* Not zlib: the frames uncompressed, raw deflate, gzip, empty. */
    expect_payload(&raw, NULL, ST_INFLATE, FS_EPROTO, "uncompressed frames");
    {
        z_stream zs;
        int wbits[] = {-15, 31};

        for (i = 0; i < FS_ARRAY_LEN(wbits); i++) {
            memset(&zs, 0, sizeof zs);
            assert_int_equal(deflateInit2(&zs, 1, Z_DEFLATED, wbits[i], 8, Z_DEFAULT_STRATEGY),
                             Z_OK);
            fs_buf_reset(&p);
            assert_int_equal(fs_buf_reserve(&p, deflateBound(&zs, (uLong)raw.len)), FS_OK);
            zs.next_in = raw.data;
            zs.avail_in = (uInt)raw.len;
            zs.next_out = p.data;
            zs.avail_out = (uInt)(p.alloc - 1);
            assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
            p.len = zs.total_out;
            deflateEnd(&zs);
            expect_payload(&p, NULL, ST_INFLATE, FS_EPROTO, "raw deflate or gzip");
        }
    }
    fs_buf_reset(&p);
    expect_payload(&p, NULL, ST_INFLATE, FS_EPROTO, "empty payload");
    fs_buf_release(&p);
    fs_buf_release(&raw);
    fs_buf_release(&z);
}

/* A raw payload of frames, compressed, in a header of the given count. */
static void
expect_frames(const struct fs_buf *raw, size_t count, enum step want, const char *why)
{
    struct fs_buf z, env;
    char h[HDR_BUF];

    zlib_compress(raw->data, raw->len, &z);
    header_json(h, "push", pk_a, 1, count, chain[count - 1].hash, count, raw->len);
    hand_env(0, 2, h, &z, &env);
    expect_recv(&env, want, want == ST_DONE ? FS_OK : FS_EPROTO, why);
    fs_buf_release(&env);
    fs_buf_release(&z);
}

/* A frame of filler bytes with the given lengths. */
static void
add_filler_frame(struct fs_buf *raw, size_t entry_len, size_t content_len)
{
    size_t k;

    assert_int_equal(fs_buf_add_u32be(raw, (uint32_t)entry_len), FS_OK);
    for (k = 0; k < entry_len + PROTO_SIG_BYTES; k++)
        assert_int_equal(fs_buf_addc(raw, 'e'), FS_OK);
    assert_int_equal(fs_buf_add_u32be(raw, (uint32_t)content_len), FS_OK);
    for (k = 0; k < content_len; k++)
        assert_int_equal(fs_buf_addc(raw, 'c'), FS_OK);
}

static void
test_batch_frames_refused(void **state)
{
    struct fs_buf raw, two, cut;
    size_t f1, i;

    (void)state;
    raw_frames(0, 2, &two);
    expect_frames(&two, 2, ST_DONE, "the control");
    /* The frame count must equal the header's count, either way. */
    expect_frames(&two, 3, ST_FRAMES, "count 3, two frames");
    raw_frames(0, 3, &raw);
    expect_frames(&raw, 2, ST_FRAMES, "count 2, three frames");
    expect_frames(&raw, 3, ST_DONE, "count 3, three frames");
    fs_buf_release(&raw);
    raw_frames(0, 1, &raw);
    expect_frames(&raw, 2, ST_FRAMES, "count 2, one frame");
    f1 = raw.len;
    fs_buf_release(&raw);

    /* The second frame cut at every byte (raw_len tells the truth about the cut
     * payload, so only the frame walk can catch it). */
    for (i = f1 + 1; i < two.len; i++) {
        fs_buf_init(&cut, PROTO_BATCH_MAX_RAW);
        assert_int_equal(fs_buf_add(&cut, two.data, i), FS_OK);
        expect_frames(&cut, 2, ST_FRAMES, "a truncated frame");
        fs_buf_release(&cut);
    }

    /* Frame lengths out of range. */
    fs_buf_init(&cut, PROTO_BATCH_MAX_RAW);
    assert_int_equal(fs_buf_add(&cut, two.data, two.len), FS_OK);
    fs_put_u32be(cut.data + f1, 0);
    expect_frames(&cut, 2, ST_FRAMES, "entry_len 0");
    fs_put_u32be(cut.data + f1, PROTO_ENTRY_MAX_BYTES + 1);
    expect_frames(&cut, 2, ST_FRAMES, "entry_len over the limit");
    fs_put_u32be(cut.data + f1, 0xffffffff);
    expect_frames(&cut, 2, ST_FRAMES, "entry_len 2^32-1");
    fs_put_u32be(cut.data + f1, (uint32_t)chain[1].entry_len);
    expect_frames(&cut, 2, ST_DONE, "restored");
    fs_put_u32be(cut.data + f1 + 4 + chain[1].entry_len + PROTO_SIG_BYTES,
                 PROTO_CONTENT_MAX_BYTES + 1);
    expect_frames(&cut, 2, ST_FRAMES, "content_len over the limit");
    fs_put_u32be(cut.data + f1 + 4 + chain[1].entry_len + PROTO_SIG_BYTES,
                 (uint32_t)chain[1].content_len + 1);
    expect_frames(&cut, 2, ST_FRAMES, "content_len past the end");
    fs_buf_release(&cut);

    /* Frames whose lengths are consistent but out of range: only the range
     * check can refuse them. */
    {
        static const struct {
            size_t entry_len, content_len;
            enum step want;
        } cases[] = {
            {1, 0, ST_DONE},
            {PROTO_ENTRY_MAX_BYTES, PROTO_CONTENT_MAX_BYTES, ST_DONE},
            {0, 0, ST_FRAMES},
            {0, 10, ST_FRAMES},
            {PROTO_ENTRY_MAX_BYTES + 1, 0, ST_FRAMES},
            {1, PROTO_CONTENT_MAX_BYTES + 1, ST_FRAMES},
        };

        for (i = 0; i < FS_ARRAY_LEN(cases); i++) {
            fs_buf_init(&cut, PROTO_BATCH_MAX_RAW);
            assert_int_equal(fs_buf_add(&cut, two.data, f1), FS_OK);
            add_filler_frame(&cut, cases[i].entry_len, cases[i].content_len);
            expect_frames(&cut, 2, cases[i].want, "a frame of given lengths");
            fs_buf_release(&cut);
        }
    }
    fs_buf_release(&two);
}

/* proto_batch_next on every prefix of three frames: whole frames, then either
 * the exact end (FS_ENOTFOUND) or a truncated frame (FS_EPROTO). */
static void
test_batch_next_prefixes(void **state)
{
    struct fs_buf raw, pre;
    size_t ends[3], i, k;

    (void)state;
    raw_frames(0, 3, &raw);
    for (k = 0; k < 3; k++)
        ends[k] = raw_len_of(0, k + 1);
    assert_int_equal(ends[2], raw.len);
    for (i = 0; i <= raw.len; i++) {
        struct proto_frame f;
        struct fs_err err;
        size_t off = 0, n = 0, whole = 0;
        enum fs_rc rc;

        fs_buf_init(&pre, PROTO_BATCH_MAX_RAW);
        assert_int_equal(fs_buf_add(&pre, raw.data, i), FS_OK);
        for (k = 0; k < 3; k++)
            if (ends[k] <= i)
                whole = k + 1;
        while ((rc = proto_batch_next(&pre, &off, &f, &err)) == FS_OK) {
            assert_int_equal(f.entry_len, chain[n].entry_len);
            assert_memory_equal(f.entry, chain[n].entry, f.entry_len);
            n++;
            assert_int_equal(off, ends[n - 1]);
        }
        assert_int_equal(n, whole);
        if (i == 0 || i == ends[whole ? whole - 1 : 0])
            assert_int_equal(rc, FS_ENOTFOUND);
        else
            assert_int_equal(rc, FS_EPROTO);
        assert_int_equal(off, whole ? ends[whole - 1] : 0); /* not advanced past a bad frame */
        fs_buf_release(&pre);
    }
    fs_buf_release(&raw);
}

/* ---- a decompression bomb ------------------------------------------------------------- */

#define BOMB_CHUNK (1u << 20)
#define BOMB_BYTES (1ull << 30)

/* zlib of 1 GiB of zeros, streamed from one zero chunk: about 1 MiB. */
static void
deflate_zeros(struct fs_buf *out)
{
    unsigned char *zero = calloc(1, BOMB_CHUNK);
    z_stream zs;
    size_t i, chunks = (size_t)(BOMB_BYTES / BOMB_CHUNK);
    int zr = Z_OK;

    assert_non_null(zero);
    fs_buf_init(out, 4u << 20);
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 15, 9, Z_RLE), Z_OK);
    for (i = 0; i < chunks; i++) {
        int flush = i + 1 == chunks ? Z_FINISH : Z_NO_FLUSH;

        zs.next_in = zero;
        zs.avail_in = BOMB_CHUNK;
        do {
            assert_int_equal(fs_buf_reserve(out, 65536), FS_OK);
            zs.next_out = out->data + out->len;
            zs.avail_out = 65536;
            zr = deflate(&zs, flush);
            assert_true(zr == Z_OK || zr == Z_STREAM_END || zr == Z_BUF_ERROR);
            out->len += 65536 - zs.avail_out;
        } while (zs.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
    }
    assert_int_equal(zr, Z_STREAM_END);
    assert_true(zs.total_in == BOMB_BYTES);
    deflateEnd(&zs);
    free(zero);
}

static void
test_batch_bomb(void **state)
{
    static const uint64_t lies[] = {1u << 20, 0, 4096};
    struct fs_buf bomb, env;
    struct env_spec s;
    struct recv r;
    char h[HDR_BUF];
    size_t i;

    (void)state;
    deflate_zeros(&bomb);
    assert_true(bomb.len < (2u << 20)); /* ~1 MiB on the wire */
    spec_init(&s);
    s.header = h;
    s.payload = bomb.data;
    s.payload_len = bomb.len;
    for (i = 0; i < FS_ARRAY_LEN(lies); i++) {
        header_json(h, "push", pk_a, 1, 1, chain[0].hash, 1, lies[i]);
        build_env(&s, &env);
        assert_int_equal(receive(env.data, env.len, NULL, 0, &r), ST_INFLATE);
        assert_int_equal(r.rc, FS_EPROTO);
        /* The receiver's buffer is capped at PROTO_BATCH_MAX_RAW, yet only what
         * raw_len claims was ever reserved: inflate stopped at raw_len + 1. */
        assert_int_equal(r.raw.cap, PROTO_BATCH_MAX_RAW);
        assert_int_equal(r.raw.len, 0);
        assert_true(r.raw.alloc <= 2 * (lies[i] + 1) + 64);
        recv_release(&r);
        fs_buf_release(&env);
    }
    /* Claiming more than the limit is refused at the header, before inflating. */
    header_json(h, "push", pk_a, 1, 1, chain[0].hash, 1, (uint64_t)PROTO_BATCH_MAX_RAW + 1);
    build_env(&s, &env);
    assert_int_equal(receive(env.data, env.len, NULL, 0, &r), ST_HEADER);
    assert_int_equal(r.rc, FS_ETOOBIG);
    assert_int_equal(r.raw.alloc, 0);
    recv_release(&r);
    fs_buf_release(&env);
    /* Claiming the truth (1 GiB) is over the limit too. */
    header_json(h, "push", pk_a, 1, 1, chain[0].hash, 1, BOMB_BYTES);
    build_env(&s, &env);
    assert_int_equal(receive(env.data, env.len, NULL, 0, &r), ST_HEADER);
    assert_int_equal(r.rc, FS_ETOOBIG);
    recv_release(&r);
    fs_buf_release(&env);
    fs_buf_release(&bomb);
}

/* ---- the encoder's limits ------------------------------------------------------------ */

static void
test_batch_encoder_limits(void **state)
{
    struct proto_batch_enc *enc = NULL;
    unsigned char sig[PROTO_SIG_BYTES], *content;
    struct proto_batch_header h;
    struct proto_batch_limits lim;
    struct fs_buf env;
    struct recv r;
    size_t i, frame;

    (void)state;
    memset(sig, 0x5a, sizeof sig);
    assert_int_equal(proto_batch_enc_new(1, &enc), FS_OK);
    assert_int_equal(proto_batch_enc_add(enc, "x", 0, sig, NULL, 0), FS_EINVAL);
    content = calloc(1, PROTO_CONTENT_MAX_BYTES + 1);
    assert_non_null(content);
    assert_int_equal(proto_batch_enc_add(enc, content, PROTO_ENTRY_MAX_BYTES + 1, sig, NULL, 0),
                     FS_EINVAL);
    assert_int_equal(proto_batch_enc_add(enc, "x", 1, sig, content, PROTO_CONTENT_MAX_BYTES + 1),
                     FS_EINVAL);
    assert_int_equal(proto_batch_enc_count(enc), 0);

    /* At most PROTO_BATCH_MAX_COUNT frames; the one after is not added. */
    for (i = 0; i < PROTO_BATCH_MAX_COUNT; i++)
        assert_int_equal(proto_batch_enc_add(enc, "x", 1, sig, NULL, 0), FS_OK);
    assert_int_equal(proto_batch_enc_add(enc, "x", 1, sig, NULL, 0), FS_ETOOBIG);
    assert_int_equal(proto_batch_enc_count(enc), PROTO_BATCH_MAX_COUNT);
    memset(&h, 0, sizeof h);
    h.purpose = PROTO_PURPOSE_PUSH;
    h.has_feed = 1;
    memcpy(h.feed, pk_a, PROTO_KEY_BYTES);
    h.from = 1;
    h.to = PROTO_BATCH_MAX_COUNT;
    snprintf(h.created, sizeof h.created, "%s", CREATED);
    fs_buf_init(&env, PROTO_BATCH_MAX_BYTES);
    assert_int_equal(proto_batch_enc_finish(enc, &h, pk_a, sk_a, &env), FS_OK);
    assert_int_equal(receive(env.data, env.len, NULL, 0, &r), ST_DONE);
    assert_int_equal(r.nframes, PROTO_BATCH_MAX_COUNT);
    recv_release(&r);
    proto_batch_limits_default(&lim);
    lim.max_count = PROTO_BATCH_MAX_COUNT - 1;
    expect_recv_lim(env.data, env.len, &lim, 0, ST_HEADER, FS_ETOOBIG, "count over max_count");
    fs_buf_release(&env);

    /* At most PROTO_BATCH_MAX_RAW inflated bytes. */
    frame = 8 + 1 + PROTO_SIG_BYTES + PROTO_CONTENT_MAX_BYTES;
    for (i = 0; i < PROTO_BATCH_MAX_RAW / frame; i++)
        assert_int_equal(proto_batch_enc_add(enc, "x", 1, sig, content, PROTO_CONTENT_MAX_BYTES),
                         FS_OK);
    assert_int_equal(proto_batch_enc_add(enc, "x", 1, sig, content, PROTO_CONTENT_MAX_BYTES),
                     FS_ETOOBIG);
    assert_int_equal(proto_batch_enc_raw_len(enc), i * frame);
    assert_true(proto_batch_enc_raw_len(enc) <= PROTO_BATCH_MAX_RAW);
    /* A smaller frame that still fits is taken. */
    assert_int_equal(proto_batch_enc_add(enc, "x", 1, sig, NULL, 0), FS_OK);
    assert_int_equal(proto_batch_enc_count(enc), i + 1);
    proto_batch_enc_free(enc);
    free(content);
}

/* ---- bundles: sealed payloads, envelopes one after another --------------------------- */

/* A bundle of chain entries from..to, sealed to pk_b (the "server"), appended to out. */
static void
encode_sealed(struct proto_batch_enc *enc, size_t from, size_t to, struct fs_buf *out)
{
    encode_into(enc, from, to, PROTO_PURPOSE_BUNDLE, pk_b, out);
}

static void
test_batch_sealed(void **state)
{
    struct proto_batch_enc *enc = NULL;
    struct proto_batch_limits lim;
    struct proto_batch_view v, open;
    struct proto_batch_header h;
    struct fs_buf env, opened, raw;
    struct fs_err err;
    unsigned char pk_c[PROTO_KEY_BYTES], sk_c[PROTO_SECRET_BYTES];
    size_t off = 0, n = 0;
    struct proto_frame f;

    (void)state;
    proto_batch_limits_default(&lim);
    fs_buf_init(&env, PROTO_BATCH_MAX_BYTES);
    fs_buf_init(&opened, PROTO_BATCH_MAX_BYTES);
    fs_buf_init(&raw, PROTO_BATCH_MAX_RAW);
    assert_int_equal(proto_batch_enc_new(1, &enc), FS_OK);
    encode_sealed(enc, 10, 40, &env);
    /* No note text in the clear: the region of every record is in the
     * payload, but not readable in the bytes. */
    assert_null(memmem(env.data, env.len, "宝坻区", strlen("宝坻区")));
    assert_null(memmem(env.data, env.len, "industrial", 10));
    /* Refused where a sealed batch is not expected; authenticated where it is. */
    assert_int_equal(proto_batch_open(env.data, env.len, &lim, 0, &v, &err), FS_EPROTO);
    assert_int_equal(proto_batch_open(env.data, env.len, &lim, 1, &v, &err), FS_OK);
    assert_int_equal(v.flags, PROTO_BATCH_FLAG_SEALED);
    assert_int_equal(proto_batch_verify(&v, &err), FS_OK);
    assert_int_equal(proto_batch_header_parse(&v, &lim, &h, &err), FS_OK);
    assert_int_equal(h.purpose, PROTO_PURPOSE_BUNDLE);
    /* Not inflated while sealed; not opened by another key (nor by the signer's). */
    assert_int_not_equal(proto_batch_inflate(&v, &h, &raw, &err), FS_OK);
    proto_keypair(pk_c, sk_c);
    assert_int_equal(proto_batch_unseal(&v, pk_c, sk_c, &opened, &open, &err), FS_EPROTO);
    assert_int_equal(proto_batch_unseal(&v, pk_a, sk_a, &opened, &open, &err), FS_EPROTO);
    /* The server's key opens it, and the frames are the entries. */
    assert_int_equal(proto_batch_unseal(&v, pk_b, sk_b, &opened, &open, &err), FS_OK);
    assert_int_equal(open.flags, 0);
    assert_int_equal(proto_batch_inflate(&open, &h, &raw, &err), FS_OK);
    while (proto_batch_next(&raw, &off, &f, &err) == FS_OK) {
        assert_int_equal(f.entry_len, chain[10 + n].entry_len);
        assert_memory_equal(f.entry, chain[10 + n].entry, f.entry_len);
        n++;
    }
    assert_int_equal(n, 30);
    /* A changed byte of the sealed payload: the signature fails first. */
    env.data[env.len - PROTO_SIG_BYTES - 5] ^= 0x01;
    assert_int_equal(proto_batch_open(env.data, env.len, &lim, 1, &v, &err), FS_OK);
    assert_int_equal(proto_batch_verify(&v, &err), FS_EPROTO);
    /* ...and, were it signed again, the seal fails (it is authenticated too). */
    assert_int_equal(proto_batch_unseal(&v, pk_b, sk_b, &opened, &open, &err), FS_EPROTO);
    /* An unsealed batch is not "opened". */
    fs_buf_reset(&env);
    fs_buf_release(&env);
    encode_batch(enc, 0, 3, &env);
    assert_int_equal(proto_batch_open(env.data, env.len, &lim, 1, &v, &err), FS_OK);
    assert_int_equal(proto_batch_unseal(&v, pk_b, sk_b, &opened, &open, &err), FS_EPROTO);
    sodium_memzero(sk_c, sizeof sk_c);
    proto_batch_enc_free(enc);
    fs_buf_release(&env);
    fs_buf_release(&opened);
    fs_buf_release(&raw);
}

struct mem_reader {
    const unsigned char *p;
    size_t len, off, step; /* step: at most this many bytes per call */
    int fail_at;           /* -1, or fail when off reaches it */
};

static long
mem_read(void *ctx, void *buf, size_t n)
{
    struct mem_reader *m = ctx;

    if (m->fail_at >= 0 && m->off >= (size_t)m->fail_at)
        return -1;
    if (n > m->step)
        n = m->step;
    if (n > m->len - m->off)
        n = m->len - m->off;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    return (long)n;
}

static void
test_batch_read_envelopes(void **state)
{
    struct proto_batch_enc *enc = NULL;
    struct fs_buf file, one, got;
    struct fs_err err;
    size_t ends[3], cut, k, steps[] = {1, 7, 4096, SIZE_MAX};
    struct mem_reader m;

    (void)state;
    fs_buf_init(&file, PROTO_BATCH_MAX_BYTES);
    fs_buf_init(&one, PROTO_BATCH_MAX_BYTES);
    fs_buf_init(&got, PROTO_BATCH_MAX_BYTES);
    assert_int_equal(proto_batch_enc_new(1, &enc), FS_OK);
    /* Three envelopes in one file (a bundle): 1..10, 11..40 sealed, 41..41. */
    encode_batch(enc, 0, 10, &one);
    assert_int_equal(fs_buf_add(&file, one.data, one.len), FS_OK);
    ends[0] = file.len;
    fs_buf_release(&one);
    encode_sealed(enc, 10, 40, &file);
    ends[1] = file.len;
    encode_batch(enc, 40, 41, &one);
    assert_int_equal(fs_buf_add(&file, one.data, one.len), FS_OK);
    ends[2] = file.len;
    /* Read back whole, one at a time, however the reads are cut. */
    for (k = 0; k < FS_ARRAY_LEN(steps); k++) {
        size_t e, start = 0;

        m = (struct mem_reader){file.data, file.len, 0, steps[k], -1};
        for (e = 0; e < 3; e++) {
            assert_int_equal(proto_batch_read(mem_read, &m, &got, &err), FS_OK);
            assert_int_equal(got.len, ends[e] - start);
            assert_memory_equal(got.data, file.data + start, got.len);
            start = ends[e];
        }
        assert_int_equal(proto_batch_read(mem_read, &m, &got, &err), FS_ENOTFOUND);
    }
    /* Cut anywhere inside an envelope: truncated, never a short envelope. */
    for (cut = ends[0] + 1; cut < ends[1]; cut += 97) {
        m = (struct mem_reader){file.data, cut, 0, SIZE_MAX, -1};
        assert_int_equal(proto_batch_read(mem_read, &m, &got, &err), FS_OK);
        assert_int_equal(proto_batch_read(mem_read, &m, &got, &err), FS_EPROTO);
    }
    /* Not a batch; a read error; lengths past the limits, refused before reading on. */
    m = (struct mem_reader){(const unsigned char *)"garbage\n", 8, 0, SIZE_MAX, -1};
    assert_int_equal(proto_batch_read(mem_read, &m, &got, &err), FS_EPROTO);
    assert_non_null(strstr(err.msg, "not a fieldsync batch"));
    m = (struct mem_reader){file.data, file.len, 0, SIZE_MAX, 100};
    assert_int_equal(proto_batch_read(mem_read, &m, &got, &err), FS_EIO);
    {
        unsigned char big[8 + PROTO_KEY_BYTES + 4 + 8];
        size_t hl;

        memcpy(big, file.data, sizeof big);
        big[8 + PROTO_KEY_BYTES] = 0x7f; /* header length 2 GiB */
        m = (struct mem_reader){big, sizeof big, 0, SIZE_MAX, -1};
        assert_int_equal(proto_batch_read(mem_read, &m, &got, &err), FS_EPROTO);
        /* A payload length past the batch limit. */
        hl = fs_get_u32be(file.data + 8 + PROTO_KEY_BYTES);
        fs_buf_reset(&one);
        assert_int_equal(fs_buf_add(&one, file.data, 8 + PROTO_KEY_BYTES + 4 + hl), FS_OK);
        assert_int_equal(fs_buf_add_u32be(&one, PROTO_BATCH_MAX_BYTES), FS_OK);
        m = (struct mem_reader){one.data, one.len, 0, SIZE_MAX, -1};
        assert_int_equal(proto_batch_read(mem_read, &m, &got, &err), FS_ETOOBIG);
        assert_true(got.len <= one.len);
    }
    proto_batch_enc_free(enc);
    fs_buf_release(&file);
    fs_buf_release(&one);
    fs_buf_release(&got);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_roundtrip),
        cmocka_unit_test(test_batch_sealed),
        cmocka_unit_test(test_batch_read_envelopes),
        cmocka_unit_test(test_batch_hand_built_matches),
        cmocka_unit_test(test_batch_bit_flips),
        cmocka_unit_test(test_batch_trailing_and_truncated),
        cmocka_unit_test(test_batch_fixed_fields),
        cmocka_unit_test(test_batch_length_fields),
        cmocka_unit_test(test_batch_max_bytes),
        cmocka_unit_test(test_batch_header_refused),
        cmocka_unit_test(test_batch_inflate_refused),
        cmocka_unit_test(test_batch_frames_refused),
        cmocka_unit_test(test_batch_next_prefixes),
        cmocka_unit_test(test_batch_bomb),
        cmocka_unit_test(test_batch_encoder_limits),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
