/*
 * Checks the known-answer vectors in tests/data/vectors (written by
 * tests/tools/gen_vectors.c, described in their README.md): our code must
 * reproduce and accept exactly the committed bytes. The formulas are also
 * recomputed with libsodium directly, so that the vectors do not merely agree
 * with the code that wrote them.
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

#include "proto.h"
#include "proto_auth.h"
#include "proto_batch.h"
#include "proto_content.h"
#include "proto_entry.h"

#define RECORD_ID "0193a3c4-5b6e-7f00-8a1b-2c3d4e5f6a7b"

struct blob {
    unsigned char *data;
    size_t len;
};

/* Everything read once in the group setup. */
static struct {
    unsigned char seed[PROTO_SEED_BYTES], pk[PROTO_KEY_BYTES];
    struct blob content1, entry1, entry2, batch2, heartbeat2;
    unsigned char sig1[PROTO_SIG_BYTES], sig2[PROTO_SIG_BYTES];
    unsigned char hash1[PROTO_HASH_BYTES], hash2[PROTO_HASH_BYTES];
} v;

/* Reads FS_TEST_DATA/vectors/name whole; NULL data on failure. */
static struct blob
slurp(const char *name)
{
    struct blob b = {NULL, 0};
    const char *dir = getenv("FS_TEST_DATA");
    char path[4096];
    FILE *f;
    long n;

    if (!dir) {
        fprintf(stderr, "FS_TEST_DATA is not set\n");
        return b;
    }
    snprintf(path, sizeof path, "%s/vectors/%s", dir, name);
    f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return b;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        b.data = malloc((size_t)n + 1);
        if (b.data && fread(b.data, 1, (size_t)n, f) == (size_t)n) {
            b.len = (size_t)n;
            b.data[n] = 0;
        } else {
            free(b.data);
            b.data = NULL;
        }
    }
    fclose(f);
    return b;
}

/* A file holding exactly one line of 2*n lowercase hex digits. */
static int
read_hex(const char *name, unsigned char *out, size_t n)
{
    struct blob b = slurp(name);
    int ok;

    ok = b.data && b.len == 2 * n + 1 && b.data[2 * n] == '\n' &&
         proto_hex_decode((const char *)b.data, 2 * n, out, n) == FS_OK;
    if (!ok)
        fprintf(stderr, "%s is not one line of %zu hex digits\n", name, 2 * n);
    free(b.data);
    return ok ? 0 : -1;
}

static int
group_setup(void **state)
{
    struct blob key;
    char seedhex[2 * PROTO_SEED_BYTES + 1], pkhex[PROTO_HEX_KEY_LEN + 1];

    (void)state;
    if (proto_init() != FS_OK)
        return -1;
    key = slurp("key.txt");
    if (!key.data || sscanf((const char *)key.data, "seed %64s public %64s", seedhex, pkhex) != 2 ||
        proto_hex_decode(seedhex, strlen(seedhex), v.seed, sizeof v.seed) ||
        proto_hex_decode(pkhex, strlen(pkhex), v.pk, sizeof v.pk)) {
        fprintf(stderr, "key.txt is not \"seed <hex>\\npublic <hex>\\n\"\n");
        free(key.data);
        return -1;
    }
    free(key.data);
    v.content1 = slurp("content1.json");
    v.entry1 = slurp("entry1.json");
    v.entry2 = slurp("entry2.json");
    v.batch2 = slurp("batch2.bin");
    v.heartbeat2 = slurp("heartbeat2.txt");
    if (!v.content1.data || !v.entry1.data || !v.entry2.data || !v.batch2.data ||
        !v.heartbeat2.data)
        return -1;
    if (read_hex("entry1.sig.hex", v.sig1, sizeof v.sig1) ||
        read_hex("entry1.hash.hex", v.hash1, sizeof v.hash1) ||
        read_hex("entry2.sig.hex", v.sig2, sizeof v.sig2) ||
        read_hex("entry2.hash.hex", v.hash2, sizeof v.hash2))
        return -1;
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    free(v.content1.data);
    free(v.entry1.data);
    free(v.entry2.data);
    free(v.batch2.data);
    free(v.heartbeat2.data);
    return 0;
}

static void
test_vector_key(void **state)
{
    unsigned char pk[PROTO_KEY_BYTES], sk[PROTO_SECRET_BYTES];
    size_t i;

    (void)state;
    for (i = 0; i < PROTO_SEED_BYTES; i++)
        assert_int_equal(v.seed[i], i + 1); /* the documented seed 01..20 */
    proto_keypair_from_seed(v.seed, pk, sk);
    assert_memory_equal(pk, v.pk, PROTO_KEY_BYTES);
    /* libsodium's own derivation agrees, and the secret key ends in the public. */
    assert_int_equal(crypto_sign_seed_keypair(pk, sk, v.seed), 0);
    assert_memory_equal(pk, v.pk, PROTO_KEY_BYTES);
    assert_memory_equal(sk + PROTO_SEED_BYTES, v.pk, PROTO_KEY_BYTES);
    sodium_memzero(sk, sizeof sk);
}

/* The entry's bytes, signature and hash, by our code and by the formula. */
static void
check_entry(const struct blob *bytes, const unsigned char *sig, const unsigned char *hash,
            struct proto_entry *e)
{
    unsigned char pk[PROTO_KEY_BYTES], sk[PROTO_SECRET_BYTES];
    unsigned char mine[PROTO_SIG_BYTES], h[PROTO_HASH_BYTES];
    unsigned char *m;
    struct fs_buf again;
    struct fs_err err;
    size_t tl = sizeof PROTO_TAG_ENTRY; /* with its NUL */

    /* No trailing newline: the bytes are one JSON object, end to end. */
    assert_int_equal(bytes->data[0], '{');
    assert_int_equal(bytes->data[bytes->len - 1], '}');
    assert_int_equal(proto_entry_parse(bytes->data, bytes->len, e, &err), FS_OK);
    assert_memory_equal(e->feed, v.pk, PROTO_KEY_BYTES);
    /* Parsed fields re-encode to the very same bytes. */
    fs_buf_init(&again, PROTO_ENTRY_MAX_BYTES);
    assert_int_equal(proto_entry_encode(e, &again), FS_OK);
    assert_int_equal(again.len, bytes->len);
    assert_memory_equal(again.data, bytes->data, bytes->len);
    fs_buf_release(&again);

    assert_int_equal(proto_entry_verify(bytes->data, bytes->len, sig, v.pk), FS_OK);
    proto_entry_hash(bytes->data, bytes->len, sig, h);
    assert_memory_equal(h, hash, PROTO_HASH_BYTES);
    /* Ed25519 is deterministic: the seed's key signs to the same bytes. */
    proto_keypair_from_seed(v.seed, pk, sk);
    proto_entry_sign(bytes->data, bytes->len, sk, mine);
    assert_memory_equal(mine, sig, PROTO_SIG_BYTES);

    /* The formulas, with libsodium alone. */
    m = malloc(tl + bytes->len + PROTO_SIG_BYTES);
    assert_non_null(m);
    memcpy(m, PROTO_TAG_ENTRY, tl);
    assert_int_equal(m[tl - 1], 0);
    memcpy(m + tl, bytes->data, bytes->len);
    assert_int_equal(crypto_sign_detached(mine, NULL, m, tl + bytes->len, sk), 0);
    assert_memory_equal(mine, sig, PROTO_SIG_BYTES);
    assert_int_equal(crypto_sign_verify_detached(sig, m, tl + bytes->len, v.pk), 0);
    memcpy(m, bytes->data, bytes->len);
    memcpy(m + bytes->len, sig, PROTO_SIG_BYTES);
    assert_int_equal(crypto_generichash(h, sizeof h, m, bytes->len + PROTO_SIG_BYTES, NULL, 0), 0);
    assert_memory_equal(h, hash, PROTO_HASH_BYTES);
    free(m);
    sodium_memzero(sk, sizeof sk);
}

static void
test_vector_entry1(void **state)
{
    struct proto_entry e, out;
    unsigned char h[PROTO_HASH_BYTES];
    struct fs_err err;

    (void)state;
    check_entry(&v.entry1, v.sig1, v.hash1, &e);
    assert_int_equal(e.seq, 1);
    assert_false(e.has_prev);
    assert_string_equal(e.at, "2026-11-29T02:11:16.123Z");
    assert_int_equal(e.op, PROTO_OP_PUT);
    assert_string_equal(e.record_id, RECORD_ID);
    assert_int_equal(e.gen, 1);
    assert_false(e.has_parent);
    assert_true(e.has_content);
    assert_int_equal(e.enc, PROTO_ENC_JSON);
    /* content.hash = BLAKE2b-256(content bytes), and the length matches. */
    assert_int_equal(e.content_len, v.content1.len);
    assert_int_equal(crypto_generichash(h, sizeof h, v.content1.data, v.content1.len, NULL, 0), 0);
    assert_memory_equal(e.content_hash, h, PROTO_HASH_BYTES);
    /* The receiver's whole check. */
    assert_int_equal(proto_entry_verify_full(v.entry1.data, v.entry1.len, v.sig1, v.content1.data,
                                             v.content1.len, v.pk, 0, &out, h, &err),
                     FS_OK);
    assert_memory_equal(h, v.hash1, PROTO_HASH_BYTES);
    assert_int_equal(proto_chain_follows(&e, 0, NULL, &err), FS_OK);
}

static void
test_vector_content1(void **state)
{
    struct proto_content c;
    struct fs_buf again;
    struct fs_err err;
    const char *text = (const char *)v.content1.data;

    (void)state;
    assert_int_equal(v.content1.data[v.content1.len - 1], '}');
    assert_int_equal(proto_utf8_check(text, v.content1.len), FS_OK);
    assert_int_equal(proto_content_parse(v.content1.data, v.content1.len, &c, &err), FS_OK);
    assert_string_equal(c.region, "天津市/宝坻区");
    assert_non_null(strstr(c.note, "河北省/雄安新区"));
    assert_true(c.has_gps && c.lat == 39.717 && c.lon == 117.309);
    assert_true(c.has_acc && c.acc_m == 8);
    assert_non_null(strstr(text, "\"lat\":39.717,\"lon\":117.309,\"acc_m\":8"));
    assert_int_equal(c.n_attachments, 1);
    {
        unsigned char h[PROTO_HASH_BYTES];

        proto_hash("fieldsync test attachment", 25, h);
        assert_memory_equal(c.attachments[0].hash, h, PROTO_HASH_BYTES);
    }
    /* Canonical: it re-encodes to the same bytes. */
    fs_buf_init(&again, PROTO_CONTENT_MAX_BYTES);
    assert_int_equal(proto_content_encode(&c, &again), FS_OK);
    assert_int_equal(again.len, v.content1.len);
    assert_memory_equal(again.data, v.content1.data, v.content1.len);
    fs_buf_release(&again);
    proto_content_release(&c);
}

static void
test_vector_entry2(void **state)
{
    struct proto_entry e1, e2, out;
    unsigned char h[PROTO_HASH_BYTES];
    struct fs_err err;

    (void)state;
    assert_int_equal(proto_entry_parse(v.entry1.data, v.entry1.len, &e1, &err), FS_OK);
    check_entry(&v.entry2, v.sig2, v.hash2, &e2);
    assert_int_equal(e2.seq, 2);
    assert_string_equal(e2.record_id, RECORD_ID);
    /* Chains onto entry 1, as the next revision of its record. */
    assert_true(e2.has_prev);
    assert_memory_equal(e2.prev, v.hash1, PROTO_HASH_BYTES);
    assert_int_equal(proto_chain_follows(&e2, 1, v.hash1, &err), FS_OK);
    assert_int_equal(proto_chain_follows(&e2, 1, v.hash2, &err), FS_ECONFLICT);
    assert_int_equal(e2.gen, 2);
    assert_true(e2.has_parent);
    assert_memory_equal(e2.parent, v.hash1, PROTO_HASH_BYTES);
    assert_int_equal(e2.op, PROTO_OP_DELETE);
    assert_false(e2.has_content);
    assert_null(strstr((const char *)v.entry2.data, "\"content\""));
    assert_int_equal(proto_entry_verify_full(v.entry2.data, v.entry2.len, v.sig2, NULL, 0, v.pk, 0,
                                             &out, h, &err),
                     FS_OK);
    assert_memory_equal(h, v.hash2, PROTO_HASH_BYTES);
}

static void
test_vector_batch2(void **state)
{
    struct proto_batch_limits lim;
    struct proto_batch_view bv;
    struct proto_batch_header h;
    struct proto_frame f;
    struct fs_buf raw;
    struct fs_err err;
    unsigned char d[PROTO_HASH_BYTES], pk[PROTO_KEY_BYTES], sk[PROTO_SECRET_BYTES];
    unsigned char sig[PROTO_SIG_BYTES], *m;
    size_t off = 0, tl = sizeof PROTO_TAG_BATCH;

    (void)state;
    proto_batch_limits_default(&lim);
    assert_int_equal(proto_batch_open(v.batch2.data, v.batch2.len, &lim, 0, &bv, &err), FS_OK);
    assert_int_equal(bv.flags, 0);
    assert_memory_equal(bv.signer, v.pk, PROTO_KEY_BYTES);
    assert_int_equal(proto_batch_verify(&bv, &err), FS_OK);
    assert_int_equal(proto_batch_header_parse(&bv, &lim, &h, &err), FS_OK);
    assert_int_equal(h.purpose, PROTO_PURPOSE_PUSH);
    assert_true(h.has_feed);
    assert_memory_equal(h.feed, v.pk, PROTO_KEY_BYTES);
    assert_int_equal(h.from, 1);
    assert_int_equal(h.to, 2);
    assert_memory_equal(h.to_hash, v.hash2, PROTO_HASH_BYTES);
    assert_int_equal(h.count, 2);
    assert_string_equal(h.created, "2026-11-29T02:16:00.000Z");
    assert_int_equal(h.raw_len,
                     2 * (8 + PROTO_SIG_BYTES) + v.entry1.len + v.content1.len + v.entry2.len);

    fs_buf_init(&raw, PROTO_BATCH_MAX_RAW);
    assert_int_equal(proto_batch_inflate(&bv, &h, &raw, &err), FS_OK);
    /* Exactly two frames: entry 1 with its content, entry 2 without. */
    assert_int_equal(proto_batch_next(&raw, &off, &f, &err), FS_OK);
    assert_int_equal(f.entry_len, v.entry1.len);
    assert_memory_equal(f.entry, v.entry1.data, v.entry1.len);
    assert_memory_equal(f.sig, v.sig1, PROTO_SIG_BYTES);
    assert_int_equal(f.content_len, v.content1.len);
    assert_memory_equal(f.content, v.content1.data, v.content1.len);
    assert_int_equal(proto_batch_next(&raw, &off, &f, &err), FS_OK);
    assert_int_equal(f.entry_len, v.entry2.len);
    assert_memory_equal(f.entry, v.entry2.data, v.entry2.len);
    assert_memory_equal(f.sig, v.sig2, PROTO_SIG_BYTES);
    assert_int_equal(f.content_len, 0);
    assert_int_equal(proto_batch_next(&raw, &off, &f, &err), FS_ENOTFOUND);
    assert_int_equal(off, raw.len);
    fs_buf_release(&raw);

    /* The batch signature by the formula, with libsodium alone: the seed's key
     * signs tag ‖ NUL ‖ BLAKE2b-256(bytes before the signature) to exactly the
     * last 64 bytes. */
    assert_int_equal(
        crypto_generichash(d, sizeof d, v.batch2.data, v.batch2.len - PROTO_SIG_BYTES, NULL, 0), 0);
    m = malloc(tl + sizeof d);
    assert_non_null(m);
    memcpy(m, PROTO_TAG_BATCH, tl);
    memcpy(m + tl, d, sizeof d);
    assert_int_equal(crypto_sign_seed_keypair(pk, sk, v.seed), 0);
    assert_int_equal(crypto_sign_detached(sig, NULL, m, tl + sizeof d, sk), 0);
    assert_memory_equal(sig, v.batch2.data + v.batch2.len - PROTO_SIG_BYTES, PROTO_SIG_BYTES);
    free(m);
    sodium_memzero(sk, sizeof sk);
}

static void
put_be64(unsigned char *p, uint64_t x)
{
    int i;

    for (i = 7; i >= 0; i--, x >>= 8)
        p[i] = (unsigned char)x;
}

static void
test_vector_heartbeat2(void **state)
{
    struct proto_heartbeat hb;
    struct fs_err err;
    unsigned char pk[PROTO_KEY_BYTES], sk[PROTO_SECRET_BYTES];
    unsigned char raw[PROTO_HEARTBEAT_BYTES], m[64 + PROTO_HEARTBEAT_PAYLOAD];
    char line[PROTO_HEARTBEAT_LINE_LEN + 1];
    size_t tl = strlen(PROTO_TAG_HEARTBEAT) + 1;
    int64_t at;

    (void)state;
    /* One line of 194 characters and a newline. */
    assert_int_equal(v.heartbeat2.len, PROTO_HEARTBEAT_LINE_LEN + 1);
    assert_int_equal(v.heartbeat2.data[PROTO_HEARTBEAT_LINE_LEN], '\n');
    assert_int_equal(
        proto_heartbeat_parse((const char *)v.heartbeat2.data, PROTO_HEARTBEAT_LINE_LEN, &hb, &err),
        FS_OK);
    assert_memory_equal(hb.feed, v.pk, PROTO_KEY_BYTES);
    assert_int_equal(hb.seq, 2);
    assert_memory_equal(hb.head, v.hash2, PROTO_HASH_BYTES);
    assert_int_equal(proto_time_parse("2026-11-29T02:16:00.000Z", 24, 1, &at), FS_OK);
    assert_int_equal(hb.at_ms, at);

    /* The formula, with libsodium alone: 0x01 ‖ key ‖ be64 seq ‖ head ‖ be64 ms,
     * signed with tag ‖ NUL before it, base64url without padding. */
    raw[0] = 1;
    memcpy(raw + 1, v.pk, PROTO_KEY_BYTES);
    put_be64(raw + 33, 2);
    memcpy(raw + 41, v.hash2, PROTO_HASH_BYTES);
    put_be64(raw + 73, (uint64_t)at);
    memcpy(m, PROTO_TAG_HEARTBEAT, tl);
    memcpy(m + tl, raw, PROTO_HEARTBEAT_PAYLOAD);
    assert_int_equal(crypto_sign_seed_keypair(pk, sk, v.seed), 0);
    assert_int_equal(crypto_sign_detached(raw + PROTO_HEARTBEAT_PAYLOAD, NULL, m,
                                          tl + PROTO_HEARTBEAT_PAYLOAD, sk),
                     0);
    sodium_bin2base64(line, sizeof line, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_memory_equal(line, v.heartbeat2.data, PROTO_HEARTBEAT_LINE_LEN);
    sodium_memzero(sk, sizeof sk);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_key),      cmocka_unit_test(test_vector_entry1),
        cmocka_unit_test(test_vector_content1), cmocka_unit_test(test_vector_entry2),
        cmocka_unit_test(test_vector_batch2),   cmocka_unit_test(test_vector_heartbeat2),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
