/*
 * Unit tests of entries (proto_entry.c): canonical encoding, signatures and
 * hashes, the strict parser's refusals and chain continuity (DESIGN §3). Every
 * refusal starts from bytes that parse, so a case can only pass by being refused
 * for the change it makes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "proto_entry.h"

#define RECORD_ID  "0193a3c4-5b6e-7f00-8a1b-2c3d4e5f6a7b"
#define AT         "2026-11-29T02:11:16.123Z"
#define CONTENT    "{\"kind\":\"interview\",\"observed_at\":\"2026-11-28T09:30:00+08:00\"}"
#define ENTRY_BUFS 8192

/* A device key (A) and another one (B), from fixed seeds. */
static unsigned char pk_a[PROTO_KEY_BYTES], sk_a[PROTO_SECRET_BYTES];
static unsigned char pk_b[PROTO_KEY_BYTES], sk_b[PROTO_SECRET_BYTES];

/* The fixture chain: e1 (seq 1, a root put), e2 (seq 2, an edit of it), d3
 * (seq 3, a delete of e2), each encoded, signed and hashed. */
struct signed_entry {
    struct proto_entry e;
    struct fs_buf bytes;
    unsigned char sig[PROTO_SIG_BYTES];
    unsigned char hash[PROTO_HASH_BYTES];
};
static struct signed_entry e1, e2, d3;

static void
fill_entry(struct proto_entry *e, const unsigned char *feed, uint64_t seq,
           const unsigned char *prev, enum proto_op op, uint64_t gen, const unsigned char *parent)
{
    memset(e, 0, sizeof *e);
    memcpy(e->feed, feed, PROTO_KEY_BYTES);
    e->seq = seq;
    if (prev) {
        e->has_prev = 1;
        memcpy(e->prev, prev, PROTO_HASH_BYTES);
    }
    snprintf(e->at, sizeof e->at, "%s", AT);
    e->op = op;
    snprintf(e->record_id, sizeof e->record_id, "%s", RECORD_ID);
    e->gen = gen;
    if (parent) {
        e->has_parent = 1;
        memcpy(e->parent, parent, PROTO_HASH_BYTES);
    }
    if (op == PROTO_OP_PUT) {
        e->has_content = 1;
        proto_hash(CONTENT, strlen(CONTENT), e->content_hash);
        e->content_len = strlen(CONTENT);
        e->enc = PROTO_ENC_JSON;
    }
}

static void
seal_entry(struct signed_entry *s, const unsigned char *sk)
{
    struct fs_err err;

    assert_int_equal(proto_entry_check(&s->e, &err), FS_OK);
    fs_buf_init(&s->bytes, PROTO_ENTRY_MAX_BYTES);
    assert_int_equal(proto_entry_encode(&s->e, &s->bytes), FS_OK);
    proto_entry_sign(s->bytes.data, s->bytes.len, sk, s->sig);
    proto_entry_hash(s->bytes.data, s->bytes.len, s->sig, s->hash);
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

    fill_entry(&e1.e, pk_a, 1, NULL, PROTO_OP_PUT, 1, NULL);
    seal_entry(&e1, sk_a);
    fill_entry(&e2.e, pk_a, 2, e1.hash, PROTO_OP_PUT, 2, e1.hash);
    seal_entry(&e2, sk_a);
    fill_entry(&d3.e, pk_a, 3, e2.hash, PROTO_OP_DELETE, 3, e2.hash);
    seal_entry(&d3, sk_a);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    fs_buf_release(&e1.bytes);
    fs_buf_release(&e2.bytes);
    fs_buf_release(&d3.bytes);
    return 0;
}

/* The text of an entry as a C string (entries are ASCII). */
static const char *
text(const struct signed_entry *s)
{
    return (const char *)s->bytes.data;
}

/* src with the first occurrence of from replaced by to, in out. Fails the test
 * when from is absent, so that no case passes by changing nothing. */
static void
subst(const char *src, const char *from, const char *to, char out[ENTRY_BUFS])
{
    const char *p = strstr(src, from);

    if (!p)
        fail_msg("\"%s\" not found in %s", from, src);
    assert_true(strlen(src) - strlen(from) + strlen(to) < ENTRY_BUFS);
    snprintf(out, ENTRY_BUFS, "%.*s%s%s", (int)(p - src), src, to, p + strlen(from));
}

static void
expect_parse(const char *json, size_t len, enum fs_rc want, const char *why)
{
    struct proto_entry e;
    struct fs_err err;
    enum fs_rc rc;

    fs_err_clear(&err);
    rc = proto_entry_parse(json, len, &e, &err);
    if (rc != want)
        fail_msg("%s: parse gave %d (%s), want %d, for %.*s", why, rc, err.msg, want, (int)len,
                 json);
    if (want != FS_OK)
        assert_true(err.msg[0] != 0); /* a reason is always given */
}

#define REFUSED(json, why)  expect_parse((json), strlen(json), FS_EINVAL, (why))
#define ACCEPTED(json, why) expect_parse((json), strlen(json), FS_OK, (why))

#define HEX63 "000000000000000000000000000000000000000000000000000000000000000"
#define HEX64 HEX63 "0"

/* ---- encode, sign, verify ----------------------------------------------------- */

static void
test_entry_encode_parse_roundtrip(void **state)
{
    const struct signed_entry *all[] = {&e1, &e2, &d3};
    char hexkey[PROTO_HEX_KEY_LEN + 1], want[ENTRY_BUFS];
    size_t i;

    (void)state;
    /* The canonical shape of DESIGN §3, key for key. */
    proto_hex_encode(pk_a, PROTO_KEY_BYTES, hexkey);
    {
        char ch[PROTO_HEX_KEY_LEN + 1];

        proto_hex_encode(e1.e.content_hash, PROTO_HASH_BYTES, ch);
        snprintf(want, sizeof want,
                 "{\"v\":1,\"feed\":\"%s\",\"seq\":1,\"prev\":null,\"at\":\"" AT
                 "\",\"op\":\"put\","
                 "\"record\":{\"id\":\"" RECORD_ID "\",\"gen\":1,\"parent\":null},"
                 "\"content\":{\"hash\":\"%s\",\"len\":%zu,\"enc\":\"json\"}}",
                 hexkey, ch, strlen(CONTENT));
        assert_string_equal(text(&e1), want);
    }
    assert_null(strstr(text(&d3), "content"));
    assert_non_null(strstr(text(&d3), "\"op\":\"delete\""));

    for (i = 0; i < FS_ARRAY_LEN(all); i++) {
        struct proto_entry back;
        struct fs_buf again;
        struct fs_err err;

        assert_int_equal(proto_entry_parse(all[i]->bytes.data, all[i]->bytes.len, &back, &err),
                         FS_OK);
        assert_memory_equal(&back, &all[i]->e, sizeof back);
        fs_buf_init(&again, PROTO_ENTRY_MAX_BYTES);
        assert_int_equal(proto_entry_encode(&back, &again), FS_OK);
        assert_int_equal(again.len, all[i]->bytes.len);
        assert_memory_equal(again.data, all[i]->bytes.data, again.len);
        fs_buf_release(&again);
    }
}

static void
test_entry_sign_verify(void **state)
{
    unsigned char sig[PROTO_SIG_BYTES], h[PROTO_HASH_BYTES], hash[PROTO_HASH_BYTES];
    unsigned char *cat;
    struct proto_entry out;
    struct fs_err err;
    size_t n = e1.bytes.len;

    (void)state;
    assert_int_equal(proto_entry_verify(e1.bytes.data, n, e1.sig, pk_a), FS_OK);
    assert_int_equal(proto_entry_verify(e1.bytes.data, n, e1.sig, pk_b), FS_EPROTO);
    /* Ed25519 is deterministic: signing again gives the same bytes. */
    proto_entry_sign(e1.bytes.data, n, sk_a, sig);
    assert_memory_equal(sig, e1.sig, sizeof sig);

    /* Domain separation: the same bytes signed without the tag, or under
     * another tag, are not an entry signature. */
    crypto_sign_detached(sig, NULL, e1.bytes.data, n, sk_a);
    assert_int_equal(proto_entry_verify(e1.bytes.data, n, sig, pk_a), FS_EPROTO);
    proto_sign_tagged(PROTO_TAG_BATCH, e1.bytes.data, n, sk_a, sig);
    assert_int_equal(proto_entry_verify(e1.bytes.data, n, sig, pk_a), FS_EPROTO);
    /* ...while the tag with its NUL, signed by hand, is. */
    cat = malloc(sizeof PROTO_TAG_ENTRY + n);
    assert_non_null(cat);
    memcpy(cat, PROTO_TAG_ENTRY, sizeof PROTO_TAG_ENTRY); /* the NUL included */
    memcpy(cat + sizeof PROTO_TAG_ENTRY, e1.bytes.data, n);
    crypto_sign_detached(sig, NULL, cat, sizeof PROTO_TAG_ENTRY + n, sk_a);
    assert_memory_equal(sig, e1.sig, sizeof sig);
    free(cat);

    /* hash = BLAKE2b-256(entry ‖ sig). */
    cat = malloc(n + PROTO_SIG_BYTES);
    assert_non_null(cat);
    memcpy(cat, e1.bytes.data, n);
    memcpy(cat + n, e1.sig, PROTO_SIG_BYTES);
    crypto_generichash(h, sizeof h, cat, n + PROTO_SIG_BYTES, NULL, 0);
    assert_memory_equal(h, e1.hash, sizeof h);
    free(cat);

    /* The whole receiver check, with and without the content. */
    assert_int_equal(proto_entry_verify_full(e1.bytes.data, n, e1.sig, CONTENT, strlen(CONTENT),
                                             pk_a, 0, &out, hash, &err),
                     FS_OK);
    assert_memory_equal(hash, e1.hash, sizeof hash);
    assert_memory_equal(&out, &e1.e, sizeof out);
    assert_int_equal(proto_entry_verify_full(d3.bytes.data, d3.bytes.len, d3.sig, NULL, 0, pk_a, 0,
                                             &out, hash, &err),
                     FS_OK);
    assert_memory_equal(hash, d3.hash, sizeof hash);
    /* Content absent: only where redaction is allowed. */
    assert_int_equal(
        proto_entry_verify_full(e1.bytes.data, n, e1.sig, NULL, 0, pk_a, 0, &out, hash, &err),
        FS_EPROTO);
    assert_int_equal(
        proto_entry_verify_full(e1.bytes.data, n, e1.sig, NULL, 0, pk_a, 1, &out, hash, &err),
        FS_OK);
    /* Content of the wrong length, even with the right prefix. */
    assert_int_equal(proto_entry_verify_full(e1.bytes.data, n, e1.sig, CONTENT "x",
                                             strlen(CONTENT) + 1, pk_a, 0, &out, hash, &err),
                     FS_EPROTO);
    assert_int_equal(proto_entry_verify_full(e1.bytes.data, n, e1.sig, CONTENT, strlen(CONTENT) - 1,
                                             pk_a, 1, &out, hash, &err),
                     FS_EPROTO);
    /* A delete carries no content. */
    assert_int_equal(proto_entry_verify_full(d3.bytes.data, d3.bytes.len, d3.sig, CONTENT,
                                             strlen(CONTENT), pk_a, 1, &out, hash, &err),
                     FS_EPROTO);
    /* Another feed's entry, or A's entry signed by B. */
    assert_int_equal(proto_entry_verify_full(e1.bytes.data, n, e1.sig, CONTENT, strlen(CONTENT),
                                             pk_b, 0, &out, hash, &err),
                     FS_EPROTO);
    proto_entry_sign(e1.bytes.data, n, sk_b, sig);
    assert_int_equal(proto_entry_verify_full(e1.bytes.data, n, sig, CONTENT, strlen(CONTENT), pk_a,
                                             0, &out, hash, &err),
                     FS_EPROTO);
}

static enum fs_rc
verify_full(const unsigned char *bytes, size_t len, const unsigned char *sig,
            const unsigned char *content, size_t content_len)
{
    struct proto_entry out;
    unsigned char hash[PROTO_HASH_BYTES];
    struct fs_err err;

    return proto_entry_verify_full(bytes, len, sig, content, content_len, pk_a, 0, &out, hash,
                                   &err);
}

/* One flipped bit anywhere in the entry, its content or its signature is
 * caught. */
static void
test_entry_bit_flips(void **state)
{
    unsigned char entry[PROTO_ENTRY_MAX_BYTES], sig[PROTO_SIG_BYTES], content[256];
    size_t n = e1.bytes.len, cl = strlen(CONTENT), i;
    unsigned bit;

    (void)state;
    memcpy(entry, e1.bytes.data, n);
    memcpy(sig, e1.sig, sizeof sig);
    memcpy(content, CONTENT, cl);
    assert_int_equal(verify_full(entry, n, sig, content, cl), FS_OK);

    for (i = 0; i < sizeof sig; i++)
        for (bit = 0; bit < 8; bit++) {
            sig[i] ^= (unsigned char)(1u << bit);
            if (proto_entry_verify(entry, n, sig, pk_a) == FS_OK)
                fail_msg("signature bit %zu.%u flipped still verifies", i, bit);
            if (verify_full(entry, n, sig, content, cl) == FS_OK)
                fail_msg("signature bit %zu.%u flipped passes verify_full", i, bit);
            sig[i] ^= (unsigned char)(1u << bit);
        }
    for (i = 0; i < n; i++)
        for (bit = 0; bit < 8; bit++) {
            entry[i] ^= (unsigned char)(1u << bit);
            if (verify_full(entry, n, sig, content, cl) == FS_OK)
                fail_msg("entry bit %zu.%u flipped passes verify_full", i, bit);
            if (proto_entry_verify(entry, n, sig, pk_a) == FS_OK)
                fail_msg("entry bit %zu.%u flipped still verifies", i, bit);
            entry[i] ^= (unsigned char)(1u << bit);
        }
    for (i = 0; i < cl; i++)
        for (bit = 0; bit < 8; bit++) {
            content[i] ^= (unsigned char)(1u << bit);
            if (verify_full(entry, n, sig, content, cl) == FS_OK)
                fail_msg("content bit %zu.%u flipped passes verify_full", i, bit);
            content[i] ^= (unsigned char)(1u << bit);
        }
    /* Everything restored: it verifies again (the loops changed nothing else). */
    assert_int_equal(verify_full(entry, n, sig, content, cl), FS_OK);
}

/* ---- strict parsing -------------------------------------------------------------- */

static void
test_entry_parse_refuses_keys(void **state)
{
    char m[ENTRY_BUFS];

    (void)state;
    ACCEPTED(text(&e1), "e1");
    ACCEPTED(text(&e2), "e2");
    ACCEPTED(text(&d3), "d3");

    subst(text(&e1), "{\"v\":1,", "{\"v\":1,\"v\":1,", m);
    REFUSED(m, "duplicate v");
    subst(text(&e1), "\"seq\":1,", "\"seq\":1,\"seq\":1,", m);
    REFUSED(m, "duplicate seq");
    subst(text(&e1), "\"gen\":1,", "\"gen\":1,\"gen\":1,", m);
    REFUSED(m, "duplicate key in record");
    subst(text(&e1), "\"enc\":\"json\"", "\"enc\":\"json\",\"enc\":\"json\"", m);
    REFUSED(m, "duplicate key in content");
    subst(text(&e1), "{\"v\":1,", "{\"v\":1,\"extra\":0,", m);
    REFUSED(m, "unknown top-level key");
    subst(text(&e1), "{\"v\":1,", "{\"v\":1,\"extra\":null,", m);
    REFUSED(m, "unknown top-level key, null");
    subst(text(&e1), "\"record\":{", "\"record\":{\"kind\":\"x\",", m);
    REFUSED(m, "unknown key in record");
    subst(text(&e1), "\"content\":{", "\"content\":{\"size\":1,", m);
    REFUSED(m, "unknown key in content");
    subst(text(&e1), "\"at\":\"" AT "\",", "", m);
    REFUSED(m, "missing at");
    subst(text(&e1), "\"prev\":null,", "", m);
    REFUSED(m, "missing prev");
    subst(text(&e1), "\"parent\":null", "\"parenT\":null", m);
    REFUSED(m, "misspelt parent");
    subst(text(&e1), ",\"enc\":\"json\"", "", m);
    REFUSED(m, "missing enc");
}

static void
test_entry_parse_refuses_numbers(void **state)
{
    char m[ENTRY_BUFS];

    (void)state;
    subst(text(&e1), "{\"v\":1,", "{\"v\":2,", m);
    REFUSED(m, "v 2");
    subst(text(&e1), "{\"v\":1,", "{\"v\":0,", m);
    REFUSED(m, "v 0");
    subst(text(&e1), "{\"v\":1,", "{\"v\":1.0,", m);
    REFUSED(m, "v 1.0");
    subst(text(&e1), "{\"v\":1,", "{\"v\":\"1\",", m);
    REFUSED(m, "v as a string");
    subst(text(&e1), "{\"v\":1,", "{", m);
    REFUSED(m, "no v");

    subst(text(&e1), "\"seq\":1,", "\"seq\":0,", m);
    REFUSED(m, "seq 0");
    subst(text(&e1), "\"seq\":1,", "\"seq\":-1,", m);
    REFUSED(m, "seq -1");
    subst(text(&e1), "\"seq\":1,", "\"seq\":1.0,", m);
    REFUSED(m, "seq 1.0");
    subst(text(&e1), "\"seq\":1,", "\"seq\":1e0,", m);
    REFUSED(m, "seq 1e0");
    subst(text(&e1), "\"seq\":1,", "\"seq\":\"1\",", m);
    REFUSED(m, "seq as a string");
    subst(text(&e1), "\"seq\":1,", "\"seq\":true,", m);
    REFUSED(m, "seq true");
    /* 2^53 - 1 is the largest; 2^53 and beyond are refused. */
    subst(text(&e2), "\"seq\":2,", "\"seq\":9007199254740991,", m);
    ACCEPTED(m, "seq 2^53-1");
    subst(text(&e2), "\"seq\":2,", "\"seq\":9007199254740992,", m);
    REFUSED(m, "seq 2^53");
    subst(text(&e2), "\"seq\":2,", "\"seq\":18446744073709551617,", m);
    REFUSED(m, "seq 2^64+1");
    subst(text(&e2), "\"gen\":2,", "\"gen\":9007199254740992,", m);
    REFUSED(m, "gen 2^53");
    subst(text(&e1), "\"gen\":1,", "\"gen\":0,", m);
    REFUSED(m, "gen 0");
    subst(text(&e2), "\"gen\":2,", "\"gen\":2.0,", m);
    REFUSED(m, "gen 2.0");
    {
        char len[64];

        snprintf(len, sizeof len, "\"len\":%zu,", strlen(CONTENT));
        subst(text(&e1), len, "\"len\":9007199254740992,", m);
        REFUSED(m, "content len 2^53");
        subst(text(&e1), len, "\"len\":-1,", m);
        REFUSED(m, "content len -1");
        snprintf(m, sizeof m, "\"len\":%zu.0,", strlen(CONTENT));
        {
            char f[ENTRY_BUFS];

            subst(text(&e1), len, m, f);
            REFUSED(f, "content len as a float");
        }
        subst(text(&e1), len, "\"len\":262145,", m);
        expect_parse(m, strlen(m), FS_ETOOBIG, "content len over the limit");
        subst(text(&e1), len, "\"len\":262144,", m);
        ACCEPTED(m, "content len at the limit");
    }
}

static void
test_entry_parse_refuses_hex_and_text(void **state)
{
    char m[ENTRY_BUFS], lower[PROTO_HEX_KEY_LEN + 1], upper[PROTO_HEX_KEY_LEN + 1];
    size_t i;

    (void)state;
    /* Uppercase hex, in each hex value (feed, prev, parent, content hash). */
    {
        static const char *const keys[] = {"feed", "prev", "parent", "hash"};
        const unsigned char *vals[] = {pk_a, e2.e.prev, e2.e.parent, e2.e.content_hash};

        for (i = 0; i < FS_ARRAY_LEN(vals); i++) {
            char from[PROTO_HEX_KEY_LEN + 16], to[PROTO_HEX_KEY_LEN + 16];
            size_t k, first_letter = SIZE_MAX;

            proto_hex_encode(vals[i], PROTO_HASH_BYTES, lower);
            snprintf(from, sizeof from, "\"%s\":\"%s\"", keys[i], lower);
            memcpy(upper, lower, sizeof upper);
            for (k = 0; k < PROTO_HEX_KEY_LEN && first_letter == SIZE_MAX; k++)
                if (isalpha((unsigned char)lower[k]))
                    first_letter = k;
            assert_true(first_letter != SIZE_MAX);
            upper[first_letter] = (char)toupper((unsigned char)upper[first_letter]);
            snprintf(to, sizeof to, "\"%s\":\"%s\"", keys[i], upper);
            subst(text(&e2), from, to, m);
            REFUSED(m, "one uppercase hex digit");
            for (k = 0; k < PROTO_HEX_KEY_LEN; k++)
                upper[k] = (char)toupper((unsigned char)lower[k]);
            snprintf(to, sizeof to, "\"%s\":\"%s\"", keys[i], upper);
            subst(text(&e2), from, to, m);
            REFUSED(m, "uppercase hex");
            /* One digit short, one too many, a non-hex digit. */
            snprintf(to, sizeof to, "\"%s\":\"%.63s\"", keys[i], lower);
            subst(text(&e2), from, to, m);
            REFUSED(m, "63 hex digits");
            snprintf(to, sizeof to, "\"%s\":\"%s0\"", keys[i], lower);
            subst(text(&e2), from, to, m);
            REFUSED(m, "65 hex digits");
            snprintf(to, sizeof to, "\"%s\":\"%.63sg\"", keys[i], lower);
            subst(text(&e2), from, to, m);
            REFUSED(m, "a g among the hex digits");
            /* A control: the lowercase value put back the same way parses. */
            subst(text(&e2), from, from, m);
            ACCEPTED(m, "unchanged");
        }
    }

    /* Other fields' text. */
    subst(text(&e1), "\"op\":\"put\"", "\"op\":\"PUT\"", m);
    REFUSED(m, "op PUT");
    subst(text(&e1), "\"op\":\"put\"", "\"op\":\"edit\"", m);
    REFUSED(m, "op edit");
    subst(text(&e1), "\"op\":\"put\"", "\"op\":null", m);
    REFUSED(m, "op null");
    subst(text(&e1), "\"enc\":\"json\"", "\"enc\":\"zlib\"", m);
    REFUSED(m, "enc zlib");
    subst(text(&e1), "\"enc\":\"json\"", "\"enc\":\"sealed\"", m);
    ACCEPTED(m, "enc sealed (reserved, parses)");
    subst(text(&e1), AT, "2026-11-29T10:11:16.123+08:00", m);
    REFUSED(m, "at not in UTC");
    subst(text(&e1), AT, "2026-02-30T02:11:16.123Z", m);
    REFUSED(m, "at an impossible date");
    subst(text(&e1), "\"" AT "\"", "1795918276123", m);
    REFUSED(m, "at a number");
    subst(text(&e1), RECORD_ID, "0193a3c4-5b6e-4f00-8a1b-2c3d4e5f6a7b", m);
    REFUSED(m, "record id v4");
    subst(text(&e1), RECORD_ID, "0193A3C4-5B6E-7F00-8A1B-2C3D4E5F6A7B", m);
    REFUSED(m, "record id uppercase");
    subst(text(&e1), RECORD_ID, "0193a3c4-5b6e-7f00-8a1b-2c3d4e5f6a7", m);
    REFUSED(m, "record id short");

    /* Invalid UTF-8 and NUL, refused by the JSON layer itself. */
    {
        static const char *const bad[] = {"\xff",     "\xc3\x28",         "\xed\xa0\x80",
                                          "\xc0\xaf", "\xf4\x90\x80\x80", "\xe5\xae"};
        char at[64];

        for (i = 0; i < FS_ARRAY_LEN(bad); i++) {
            struct proto_entry e;
            struct fs_err err;

            snprintf(at, sizeof at, "%s%s", AT, bad[i]);
            subst(text(&e1), AT, at, m);
            assert_int_equal(proto_entry_parse(m, strlen(m), &e, &err), FS_EINVAL);
            /* Refused as invalid UTF-8, and the message quotes nothing. */
            assert_non_null(strstr(err.msg, "UTF-8"));
            assert_null(strstr(err.msg, bad[i]));
        }
        subst(text(&e1), AT, AT "\\u0000", m);
        REFUSED(m, "escaped NUL");
        subst(text(&e1), "{\"v\":1,", "{\"v\":1,\"\xe5\xae\x9d\":1,", m);
        REFUSED(m, "valid UTF-8 in an unknown key is still unknown");
        memcpy(m, text(&e1), e1.bytes.len);
        m[e1.bytes.len - 1] = 0; /* a raw NUL byte instead of the last brace */
        expect_parse(m, e1.bytes.len, FS_EINVAL, "raw NUL");
    }

    /* Not one whole object. */
    snprintf(m, sizeof m, "%sx", text(&e1));
    REFUSED(m, "trailing garbage");
    snprintf(m, sizeof m, "%s%s", text(&e1), text(&e1));
    REFUSED(m, "two objects");
    snprintf(m, sizeof m, "[%s]", text(&e1));
    REFUSED(m, "an array");
    expect_parse(text(&e1), e1.bytes.len - 1, FS_EINVAL, "truncated");
    expect_parse("", 0, FS_EINVAL, "empty");
}

static void
test_entry_parse_refuses_rules(void **state)
{
    char m[ENTRY_BUFS], h[PROTO_HEX_KEY_LEN + 3];
    char ch[PROTO_HEX_KEY_LEN + 1];

    (void)state;
    proto_hex_encode(e1.hash, PROTO_HASH_BYTES, ch);
    snprintf(h, sizeof h, "\"%s\"", ch);

    /* seq and prev. */
    {
        char to[PROTO_HEX_KEY_LEN + 16];

        snprintf(to, sizeof to, "\"prev\":%s", h);
        subst(text(&e1), "\"prev\":null", to, m);
        REFUSED(m, "prev for seq 1");
        snprintf(to, sizeof to, "\"prev\":%s", h);
        subst(text(&e2), to, "\"prev\":null", m);
        REFUSED(m, "no prev for seq 2");
        /* gen and parent. */
        snprintf(to, sizeof to, "\"parent\":%s", h);
        subst(text(&e1), "\"parent\":null", to, m);
        REFUSED(m, "gen 1 with a parent");
        subst(text(&e2), to, "\"parent\":null", m);
        REFUSED(m, "gen 2 without a parent");
    }
    /* op and content. */
    subst(text(&e2), "\"op\":\"put\"", "\"op\":\"delete\"", m);
    REFUSED(m, "delete with content");
    {
        char withc[ENTRY_BUFS];
        const char *c = strstr(text(&e2), ",\"content\":");

        assert_non_null(c);
        snprintf(withc, sizeof withc, "%.*s,\"content\":null}", (int)(c - text(&e2)), text(&e2));
        REFUSED(withc, "put with content null");
        snprintf(withc, sizeof withc, "%.*s}", (int)(c - text(&e2)), text(&e2));
        REFUSED(withc, "put without content");
        subst(withc, "\"op\":\"put\"", "\"op\":\"delete\"", m);
        ACCEPTED(m, "the same as a delete");
        snprintf(withc, sizeof withc, "%.*s%s", (int)(strlen(text(&d3)) - 1), text(&d3), c);
        REFUSED(withc, "delete with content added");
        subst(text(&d3), "\"op\":\"delete\"", "\"op\":\"put\"", m);
        REFUSED(m, "put with no content");
        subst(text(&d3), ",\"op\":\"delete\"", "", m);
        REFUSED(m, "no op");
    }
    /* A delete cannot be a root: encode one by hand (encode does not check). */
    {
        struct proto_entry e;
        struct fs_buf b;
        struct fs_err err;

        fill_entry(&e, pk_a, 1, NULL, PROTO_OP_DELETE, 1, NULL);
        assert_int_equal(proto_entry_check(&e, &err), FS_EINVAL);
        fs_buf_init(&b, PROTO_ENTRY_MAX_BYTES);
        assert_int_equal(proto_entry_encode(&e, &b), FS_OK);
        REFUSED((const char *)b.data, "delete at gen 1");
        fs_buf_release(&b);
    }
}

static void
test_entry_parse_size_limit(void **state)
{
    char *m;
    size_t n = e1.bytes.len, pad;

    (void)state;
    m = malloc(PROTO_ENTRY_MAX_BYTES + 2);
    assert_non_null(m);
    /* Whitespace after the opening brace: valid JSON of any length. */
    pad = PROTO_ENTRY_MAX_BYTES - n;
    m[0] = '{';
    memset(m + 1, ' ', pad);
    memcpy(m + 1 + pad, e1.bytes.data + 1, n - 1);
    expect_parse(m, PROTO_ENTRY_MAX_BYTES, FS_OK, "exactly at the limit");
    memmove(m + 2 + pad, m + 1 + pad, n - 1);
    m[1 + pad] = ' ';
    expect_parse(m, PROTO_ENTRY_MAX_BYTES + 1, FS_ETOOBIG, "one byte over the limit");
    /* proto_entry_verify refuses it too, before any signature work. */
    assert_int_equal(proto_entry_verify(m, PROTO_ENTRY_MAX_BYTES + 1, e1.sig, pk_a), FS_EPROTO);
    free(m);
}

/* ---- chain ---------------------------------------------------------------------- */

static void
test_chain_follows(void **state)
{
    struct signed_entry fork2, e3;
    struct fs_err err;
    unsigned char other[PROTO_HASH_BYTES];

    (void)state;
    assert_int_equal(proto_chain_follows(&e1.e, 0, NULL, &err), FS_OK);
    assert_int_equal(proto_chain_follows(&e2.e, 1, e1.hash, &err), FS_OK);
    assert_int_equal(proto_chain_follows(&d3.e, 2, e2.hash, &err), FS_OK);

    /* Gaps: a seq jump, a first entry that is not seq 1, a replay. */
    assert_int_equal(proto_chain_follows(&d3.e, 1, e1.hash, &err), FS_ECONFLICT);
    assert_non_null(strstr(err.msg, "gap"));
    assert_int_equal(proto_chain_follows(&e2.e, 0, NULL, &err), FS_ECONFLICT);
    assert_non_null(strstr(err.msg, "gap"));
    assert_int_equal(proto_chain_follows(&e2.e, 2, e2.hash, &err), FS_ECONFLICT);
    assert_int_equal(proto_chain_follows(&e1.e, 1, e1.hash, &err), FS_ECONFLICT);

    /* A fork: a different seq 2 whose prev is not the held seq 1. */
    memset(other, 0x5a, sizeof other);
    fill_entry(&fork2.e, pk_a, 2, other, PROTO_OP_PUT, 2, e1.hash);
    seal_entry(&fork2, sk_a);
    assert_int_equal(proto_chain_follows(&fork2.e, 1, e1.hash, &err), FS_ECONFLICT);
    assert_non_null(strstr(err.msg, "chain broken"));
    /* The right seq but following a different head. */
    assert_int_equal(proto_chain_follows(&d3.e, 2, e1.hash, &err), FS_ECONFLICT);
    assert_non_null(strstr(err.msg, "chain broken"));
    assert_int_equal(proto_chain_follows(&e2.e, 1, other, &err), FS_ECONFLICT);
    /* No hash to compare with after seq 0: not a follow. */
    assert_int_equal(proto_chain_follows(&e2.e, 1, NULL, &err), FS_ECONFLICT);
    /* Every single-bit change of the held hash breaks the chain. */
    {
        unsigned char h[PROTO_HASH_BYTES];
        size_t i;

        for (i = 0; i < 8 * PROTO_HASH_BYTES; i++) {
            memcpy(h, e1.hash, sizeof h);
            h[i / 8] ^= (unsigned char)(1u << (i % 8));
            assert_int_equal(proto_chain_follows(&e2.e, 1, h, &err), FS_ECONFLICT);
        }
    }
    /* A successor of the fork follows the fork, not the true chain. */
    fill_entry(&e3.e, pk_a, 3, fork2.hash, PROTO_OP_PUT, 2, e1.hash);
    seal_entry(&e3, sk_a);
    assert_int_equal(proto_chain_follows(&e3.e, 2, fork2.hash, &err), FS_OK);
    assert_int_equal(proto_chain_follows(&e3.e, 2, e2.hash, &err), FS_ECONFLICT);
    fs_buf_release(&fork2.bytes);
    fs_buf_release(&e3.bytes);
}

/* The fast path reads the encoder's bytes into the struct jansson builds, and
 * declines any other spelling of the same entry. */
static void
test_entry_fast_path(void **state)
{
    const struct signed_entry *all[] = {&e1, &e2, &d3};
    struct proto_entry f, g;
    struct fs_err err;
    char m[ENTRY_BUFS], m2[ENTRY_BUFS];
    size_t i;

    (void)state;
    for (i = 0; i < FS_ARRAY_LEN(all); i++) {
        const char *t = text(all[i]);

        assert_int_equal(proto_entry_parse_canonical(t, strlen(t), &f), 1);
        assert_int_equal(proto_entry_parse_general(t, strlen(t), &g, &err), FS_OK);
        assert_memory_equal(&f, &g, sizeof f);
        assert_memory_equal(&f, &all[i]->e, sizeof f);
    }
    /* The same entry spelled otherwise: a space, a key moved, an escape. */
    subst(text(&e2), ",\"seq\":", ", \"seq\":", m);
    assert_int_equal(proto_entry_parse_canonical(m, strlen(m), &f), 0);
    assert_int_equal(proto_entry_parse(m, strlen(m), &g, &err), FS_OK);
    assert_memory_equal(&g, &e2.e, sizeof g);
    subst(text(&e2), "{\"v\":1,", "{", m);
    subst(m, "\"record\":", "\"v\":1,\"record\":", m2);
    assert_int_equal(proto_entry_parse_canonical(m2, strlen(m2), &f), 0);
    assert_int_equal(proto_entry_parse(m2, strlen(m2), &g, &err), FS_OK);
    assert_memory_equal(&g, &e2.e, sizeof g);
    subst(text(&e2), "\"at\":\"2", "\"at\":\"\\u0032", m);
    assert_int_equal(proto_entry_parse_canonical(m, strlen(m), &f), 0);
    assert_int_equal(proto_entry_parse(m, strlen(m), &g, &err), FS_OK);
    assert_memory_equal(&g, &e2.e, sizeof g);
    /* Canonical in shape, against the rules: declined, then refused. */
    subst(text(&e2), "\"seq\":2,", "\"seq\":1,", m);
    assert_int_equal(proto_entry_parse_canonical(m, strlen(m), &f), 0);
    assert_int_equal(proto_entry_parse(m, strlen(m), &g, &err), FS_EINVAL);
}

/* peek_link reads seq and prev of the encoder's own bytes, and nothing else. */
static void
test_entry_peek_link(void **state)
{
    const struct signed_entry *all[] = {&e1, &e2, &d3};
    unsigned char prev[PROTO_HASH_BYTES];
    uint64_t seq;
    int has_prev;
    size_t i, cut;
    char *m;

    (void)state;
    for (i = 0; i < FS_ARRAY_LEN(all); i++) {
        assert_int_equal(
            proto_entry_peek_link(all[i]->bytes.data, all[i]->bytes.len, &seq, &has_prev, prev),
            FS_OK);
        assert_int_equal(seq, all[i]->e.seq);
        assert_int_equal(has_prev, all[i]->e.has_prev);
        if (has_prev)
            assert_memory_equal(prev, all[i]->e.prev, PROTO_HASH_BYTES);
    }
    /* Every prefix too short to hold the link is refused, not over-read. */
    cut = strstr(text(&e2), ",\"at\"") - text(&e2);
    for (i = 0; i < cut; i++) {
        m = malloc(i + 1);
        assert_non_null(m);
        memcpy(m, e2.bytes.data, i);
        assert_int_equal(proto_entry_peek_link(m, i, &seq, &has_prev, prev), FS_EINVAL);
        free(m);
    }
    /* Bytes another writer could have produced (same meaning, other spelling). */
    {
        static const char *const other[] = {
            "{\"feed\":\"00\",\"v\":1}",
            "{\"v\":1,\"feed\":\"" HEX64 "\",\"seq\":01,\"prev\":null}",
            "{\"v\":1,\"feed\":\"" HEX64 "\",\"seq\": 1,\"prev\":null}",
            "{\"v\":1,\"feed\":\"" HEX64 "\",\"seq\":1,\"prev\":nul}",
            "{\"v\":1,\"feed\":\"" HEX64 "\",\"seq\":2,\"prev\":\"" HEX64 "0\"}",
            "{\"v\":1,\"feed\":\"" HEX64 "\",\"seq\":2,\"prev\":\"" HEX63 "G\"}",
            "{\"v\":1,\"feed\":\"" HEX64 "\",\"seq\":99999999999999999,\"prev\":null}",
        };

        for (i = 0; i < FS_ARRAY_LEN(other); i++)
            assert_int_equal(
                proto_entry_peek_link(other[i], strlen(other[i]), &seq, &has_prev, prev),
                FS_EINVAL);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_encode_parse_roundtrip),
        cmocka_unit_test(test_entry_sign_verify),
        cmocka_unit_test(test_entry_bit_flips),
        cmocka_unit_test(test_entry_parse_refuses_keys),
        cmocka_unit_test(test_entry_parse_refuses_numbers),
        cmocka_unit_test(test_entry_parse_refuses_hex_and_text),
        cmocka_unit_test(test_entry_parse_refuses_rules),
        cmocka_unit_test(test_entry_parse_size_limit),
        cmocka_unit_test(test_chain_follows),
        cmocka_unit_test(test_entry_peek_link),
        cmocka_unit_test(test_entry_fast_path),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
