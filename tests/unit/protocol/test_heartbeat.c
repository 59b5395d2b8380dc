/*
 * Heartbeat lines (proto_heartbeat_line / proto_heartbeat_parse): what one
 * says comes back whole, and every other text is refused — a wrong length,
 * characters outside base64url, a second spelling of the same bytes, a bad
 * version, seq or head, and any change to what was signed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <string.h>

#include "proto.h"
#include "proto_auth.h"

static unsigned char pk[PROTO_KEY_BYTES], sk[PROTO_SECRET_BYTES];

static int
setup(void **state)
{
    (void)state;
    if (proto_init() != FS_OK)
        return -1;
    proto_keypair(pk, sk);
    return 0;
}

static struct proto_heartbeat
sample(uint64_t seq)
{
    struct proto_heartbeat hb;
    size_t i;

    memset(&hb, 0, sizeof hb);
    memcpy(hb.feed, pk, PROTO_KEY_BYTES);
    hb.seq = seq;
    for (i = 0; seq && i < PROTO_HASH_BYTES; i++)
        hb.head[i] = (unsigned char)(0xa0 + i);
    hb.at_ms = 1795918560123;
    return hb;
}

/* Signs raw's payload with sk (as a device would) and encodes it: a line
 * whose signature is right whatever the payload says. */
static void
sign_raw(unsigned char raw[PROTO_HEARTBEAT_BYTES], char line[PROTO_HEARTBEAT_LINE_LEN + 1])
{
    proto_sign_tagged(PROTO_TAG_HEARTBEAT, raw, PROTO_HEARTBEAT_PAYLOAD, sk,
                      raw + PROTO_HEARTBEAT_PAYLOAD);
    sodium_bin2base64(line, PROTO_HEARTBEAT_LINE_LEN + 1, raw, PROTO_HEARTBEAT_BYTES,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void
decode(const char *line, unsigned char raw[PROTO_HEARTBEAT_BYTES])
{
    size_t got = 0;

    assert_int_equal(sodium_base642bin(raw, PROTO_HEARTBEAT_BYTES, line, strlen(line), NULL, &got,
                                       NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    assert_int_equal(got, PROTO_HEARTBEAT_BYTES);
}

static enum fs_rc
parse(const char *line)
{
    struct proto_heartbeat hb;
    struct fs_err err;

    return proto_heartbeat_parse(line, strlen(line), &hb, &err);
}

static void
test_round_trip(void **state)
{
    static const uint64_t seqs[] = {0, 1, 2, 65536, PROTO_MAX_SAFE_INT};
    struct proto_heartbeat hb, got;
    struct fs_err err;
    char line[PROTO_HEARTBEAT_LINE_LEN + 1];
    size_t i;

    (void)state;
    assert_int_equal(PROTO_HEARTBEAT_LINE_LEN, 194);
    for (i = 0; i < sizeof seqs / sizeof *seqs; i++) {
        hb = sample(seqs[i]);
        proto_heartbeat_line(&hb, sk, line);
        assert_int_equal(strlen(line), PROTO_HEARTBEAT_LINE_LEN);
        assert_int_equal(strspn(line, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789-_"),
                         PROTO_HEARTBEAT_LINE_LEN);
        assert_int_equal(proto_heartbeat_parse(line, strlen(line), &got, &err), FS_OK);
        assert_memory_equal(got.feed, hb.feed, PROTO_KEY_BYTES);
        assert_int_equal(got.seq, hb.seq);
        assert_memory_equal(got.head, hb.head, PROTO_HASH_BYTES);
        assert_int_equal(got.at_ms, hb.at_ms);
    }
    /* A head given with seq 0 is not written: seq 0 has none. */
    hb = sample(0);
    memset(hb.head, 0x55, PROTO_HASH_BYTES);
    proto_heartbeat_line(&hb, sk, line);
    assert_int_equal(proto_heartbeat_parse(line, strlen(line), &got, &err), FS_OK);
    assert_int_equal(got.seq, 0);
    assert_int_equal(got.head[0] | got.head[PROTO_HASH_BYTES - 1], 0);
}

static void
test_every_changed_byte_is_refused(void **state)
{
    struct proto_heartbeat hb = sample(7);
    unsigned char raw[PROTO_HEARTBEAT_BYTES];
    char line[PROTO_HEARTBEAT_LINE_LEN + 1], changed[PROTO_HEARTBEAT_LINE_LEN + 1];
    size_t i;
    int bit;

    (void)state;
    proto_heartbeat_line(&hb, sk, line);
    for (i = 0; i < PROTO_HEARTBEAT_BYTES; i++) {
        for (bit = 0; bit < 8; bit += 7) {
            enum fs_rc rc;

            decode(line, raw);
            raw[i] ^= (unsigned char)(1u << bit);
            sodium_bin2base64(changed, sizeof changed, raw, sizeof raw,
                              sodium_base64_VARIANT_URLSAFE_NO_PADDING);
            rc = parse(changed);
            assert_true(rc == FS_EPROTO || rc == FS_EINVAL);
        }
    }
}

static void
test_text_is_strict(void **state)
{
    struct proto_heartbeat hb = sample(3);
    char line[PROTO_HEARTBEAT_LINE_LEN + 1], buf[PROTO_HEARTBEAT_LINE_LEN + 8];
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t last = PROTO_HEARTBEAT_LINE_LEN - 1;
    int k, accepted = 0;

    (void)state;
    proto_heartbeat_line(&hb, sk, line);
    assert_int_equal(parse(line), FS_OK);
    /* Lengths either side. */
    snprintf(buf, sizeof buf, "%.*s", (int)last, line);
    assert_int_equal(parse(buf), FS_EINVAL);
    snprintf(buf, sizeof buf, "%sA", line);
    assert_int_equal(parse(buf), FS_EINVAL);
    snprintf(buf, sizeof buf, "%s\n", line);
    assert_int_equal(parse(buf), FS_EINVAL);
    assert_int_equal(parse(""), FS_EINVAL);
    /* The standard alphabet's characters, padding, spaces. */
    memcpy(buf, line, sizeof line);
    buf[10] = '+';
    assert_int_equal(parse(buf), FS_EINVAL);
    buf[10] = '=';
    assert_int_equal(parse(buf), FS_EINVAL);
    buf[10] = ' ';
    assert_int_equal(parse(buf), FS_EINVAL);
    /* The last character carries two bits and four zero bits: of the 64
     * characters there, only the one written is taken (no second spelling). */
    memcpy(buf, line, sizeof line);
    for (k = 0; alphabet[k]; k++) {
        buf[last] = alphabet[k];
        if (parse(buf) == FS_OK) {
            accepted++;
            assert_int_equal(buf[last], line[last]);
        }
    }
    assert_int_equal(accepted, 1);
}

static void
test_payload_rules(void **state)
{
    struct proto_heartbeat hb = sample(5), got;
    struct fs_err err;
    unsigned char raw[PROTO_HEARTBEAT_BYTES], opk[PROTO_KEY_BYTES], osk[PROTO_SECRET_BYTES];
    char line[PROTO_HEARTBEAT_LINE_LEN + 1];

    (void)state;
    proto_heartbeat_line(&hb, sk, line);
    /* Each payload rule, with a signature that is right for the bytes. */
    decode(line, raw);
    raw[0] = 2; /* version */
    sign_raw(raw, line);
    assert_int_equal(proto_heartbeat_parse(line, strlen(line), &got, &err), FS_EINVAL);
    assert_non_null(strstr(err.msg, "version"));

    proto_heartbeat_line(&hb, sk, line);
    decode(line, raw);
    memset(raw + 33, 0, 8);
    raw[33] = 0x00;
    raw[34] = 0x20; /* seq 2^53 */
    sign_raw(raw, line);
    assert_int_equal(proto_heartbeat_parse(line, strlen(line), &got, &err), FS_EINVAL);
    assert_non_null(strstr(err.msg, "seq"));

    proto_heartbeat_line(&hb, sk, line);
    decode(line, raw);
    memset(raw + 33, 0, 8); /* seq 0 with a head */
    sign_raw(raw, line);
    assert_int_equal(proto_heartbeat_parse(line, strlen(line), &got, &err), FS_EINVAL);
    assert_non_null(strstr(err.msg, "head"));

    proto_heartbeat_line(&hb, sk, line);
    decode(line, raw);
    memset(raw + 41, 0, PROTO_HASH_BYTES); /* seq 5 without one */
    sign_raw(raw, line);
    assert_int_equal(proto_heartbeat_parse(line, strlen(line), &got, &err), FS_EINVAL);

    proto_heartbeat_line(&hb, sk, line);
    decode(line, raw);
    raw[73] = 0x80; /* a time before 1970 */
    sign_raw(raw, line);
    assert_int_equal(proto_heartbeat_parse(line, strlen(line), &got, &err), FS_EINVAL);
    assert_non_null(strstr(err.msg, "time"));

    /* Signed by another key than the feed it names. */
    proto_keypair(opk, osk);
    proto_heartbeat_line(&hb, osk, line);
    assert_int_equal(proto_heartbeat_parse(line, strlen(line), &got, &err), FS_EPROTO);
    /* Another feed's key put in, the signature left: refused too. */
    proto_heartbeat_line(&hb, sk, line);
    decode(line, raw);
    memcpy(raw + 1, opk, PROTO_KEY_BYTES);
    sodium_bin2base64(line, sizeof line, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_int_equal(proto_heartbeat_parse(line, strlen(line), &got, &err), FS_EPROTO);
    sodium_memzero(osk, sizeof osk);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_every_changed_byte_is_refused),
        cmocka_unit_test(test_text_is_strict),
        cmocka_unit_test(test_payload_rules),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
