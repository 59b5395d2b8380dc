/*
 * Unit tests of record content (proto_content.c): the canonical form round
 * trips byte for byte, Chinese text and GPS coordinates included, and the
 * strict parser refuses what DESIGN §3 and the limits of proto.h forbid.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "proto_content.h"

#define ATT_HASH "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

/* Canonical content: keys in the encoder's order, numbers shortest, text
 * verbatim except the escapes the writer makes (\n \t \" \\ \u00XX). */
static const char canonical[] =
    "{\"kind\":\"interview\",\"observed_at\":\"2026-11-28T09:30:00+08:00\",\"author\":\"Ye T.\","
    "\"site\":{\"name\":\"Baodi Science Town\",\"region\":\"天津市/宝坻区\",\"lat\":39.717,"
    "\"lon\":117.309,\"acc_m\":8},"
    "\"fields\":{\"interviewee_role\":\"official\",\"topic\":\"产业转移 industrial transfer\","
    "\"visit.next\":\"\"},"
    "\"note\":\"河北省/雄安新区: second visit.\\n\\t\\\"quoted\\\", back\\\\slash, "
    "unit sep \\u001f, emoji \xf0\x9f\x98\x80\","
    "\"attachments\":[{\"name\":\"talk.m4a\",\"hash\":\"" ATT_HASH "\",\"size\":48211234,"
    "\"type\":\"audio/mp4\"},{\"name\":\"现场 photo 1.jpg\",\"hash\":\"" ATT_HASH "\","
    "\"size\":0,\"type\":\"image/jpeg\"}]}";

static const char minimal[] =
    "{\"kind\":\"site_visit-2\",\"observed_at\":\"2026-11-28T01:30:00Z\"}";

static int
group_setup(void **state)
{
    (void)state;
    return proto_init() == FS_OK ? 0 : -1;
}

/* src with the first occurrence of from replaced by to; the result is malloc'd.
 * Fails the test when from is absent, so no case passes by changing nothing. */
static char *
subst(const char *src, const char *from, const char *to)
{
    const char *p = strstr(src, from);
    size_t n;
    char *out;

    if (!p)
        fail_msg("\"%s\" not found", from);
    n = strlen(src) - strlen(from) + strlen(to) + 1;
    out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*s%s%s", (int)(p - src), src, to, p + strlen(from));
    return out;
}

static enum fs_rc
parse_str(const char *json, struct proto_content *c, struct fs_err *err)
{
    return proto_content_parse(json, strlen(json), c, err);
}

/* Parses json and checks the result code; on success the canonical encoding is
 * returned (malloc'd), else NULL. */
static char *
expect(const char *json, size_t len, enum fs_rc want, const char *why)
{
    struct proto_content c;
    struct fs_err err;
    struct fs_buf b;
    enum fs_rc rc;
    size_t n;

    fs_err_clear(&err);
    rc = proto_content_parse(json, len, &c, &err);
    if (rc != want)
        fail_msg("%s: parse gave %d (%s), want %d", why, rc, err.msg, want);
    if (rc != FS_OK) {
        assert_true(err.msg[0] != 0);
        /* A refused parse leaves nothing behind to free. */
        assert_null(c.kind);
        assert_null(c.fields);
        return NULL;
    }
    fs_buf_init(&b, PROTO_CONTENT_MAX_BYTES);
    assert_int_equal(proto_content_encode(&c, &b), FS_OK);
    proto_content_release(&c);
    return (char *)fs_buf_detach(&b, &n);
}

static void
expect_refused(const char *json, enum fs_rc want, const char *why)
{
    assert_null(expect(json, strlen(json), want, why));
}

/* Replaces from by to in the canonical content and expects the parse to give
 * want. */
static void
mutated(const char *from, const char *to, enum fs_rc want, const char *why)
{
    char *m = subst(canonical, from, to);
    char *enc = expect(m, strlen(m), want, why);

    free(enc);
    free(m);
}

/* ---- round trips ---------------------------------------------------------------- */

static void
test_content_roundtrip(void **state)
{
    struct proto_content c;
    struct fs_err err;
    struct fs_buf b;
    char *enc;

    (void)state;
    assert_int_equal(parse_str(canonical, &c, &err), FS_OK);
    assert_string_equal(c.kind, "interview");
    assert_string_equal(c.observed_at, "2026-11-28T09:30:00+08:00");
    assert_string_equal(c.author, "Ye T.");
    assert_string_equal(c.site_name, "Baodi Science Town");
    assert_string_equal(c.region, "天津市/宝坻区");
    assert_true(c.has_gps && c.has_acc);
    assert_true(c.lat == 39.717);
    assert_true(c.lon == 117.309);
    assert_true(c.acc_m == 8);
    assert_int_equal(c.n_fields, 3);
    assert_string_equal(c.fields[0].name, "interviewee_role");
    assert_string_equal(c.fields[1].value, "产业转移 industrial transfer");
    assert_string_equal(c.fields[2].name, "visit.next");
    assert_string_equal(c.fields[2].value, "");
    assert_string_equal(c.note,
                        "河北省/雄安新区: second visit.\n\t\"quoted\", back\\slash, unit sep "
                        "\x1f, emoji \xf0\x9f\x98\x80");
    assert_int_equal(c.n_attachments, 2);
    assert_string_equal(c.attachments[0].name, "talk.m4a");
    assert_int_equal(c.attachments[0].size, 48211234);
    assert_string_equal(c.attachments[1].name, "现场 photo 1.jpg");
    assert_string_equal(c.attachments[1].type, "image/jpeg");
    {
        unsigned char h[PROTO_HASH_BYTES];

        assert_int_equal(proto_hex_decode(ATT_HASH, PROTO_HEX_KEY_LEN, h, sizeof h), FS_OK);
        assert_memory_equal(c.attachments[0].hash, h, sizeof h);
    }

    fs_buf_init(&b, PROTO_CONTENT_MAX_BYTES);
    assert_int_equal(proto_content_encode(&c, &b), FS_OK);
    assert_int_equal(b.len, strlen(canonical));
    assert_memory_equal(b.data, canonical, b.len);
    assert_non_null(strstr((const char *)b.data, "\"lat\":39.717,\"lon\":117.309,\"acc_m\":8}"));
    fs_buf_release(&b);
    proto_content_release(&c);
    assert_null(c.kind); /* release leaves an initialised struct */

    enc = expect(minimal, strlen(minimal), FS_OK, "minimal");
    assert_string_equal(enc, minimal);
    free(enc);

    /* A position alone, no name or region; negative and whole coordinates. */
    {
        static const char gps_only[] = "{\"kind\":\"k\",\"observed_at\":\"2026-11-28T01:30:00Z\","
                                       "\"site\":{\"lat\":-33.8688,\"lon\":151.2093}}";
        static const char whole[] = "{\"kind\":\"k\",\"observed_at\":\"2026-11-28T01:30:00Z\","
                                    "\"site\":{\"lat\":40,\"lon\":-120,\"acc_m\":10}}";
        static const char bounds[] = "{\"kind\":\"k\",\"observed_at\":\"2026-11-28T01:30:00Z\","
                                     "\"site\":{\"lat\":-90,\"lon\":180,\"acc_m\":0}}";

        enc = expect(gps_only, strlen(gps_only), FS_OK, "gps only");
        assert_string_equal(enc, gps_only);
        free(enc);
        enc = expect(whole, strlen(whole), FS_OK, "whole numbers");
        assert_string_equal(enc, whole);
        free(enc);
        enc = expect(bounds, strlen(bounds), FS_OK, "the bounds themselves");
        assert_string_equal(enc, bounds);
        free(enc);
    }

    /* Non-canonical but valid input comes out canonical: key order, spaces,
     * escapes, number forms. */
    {
        static const char loose[] =
            "{ \"note\" : \"a\\/b \\u5b9d\", \"site\": {\"acc_m\": 8.0, \"lon\": 1.17309e2,"
            " \"lat\": 39.7170}, \"observed_at\": \"2026-11-28T09:30:00+08:00\","
            " \"kind\": \"interview\" }";
        static const char want[] =
            "{\"kind\":\"interview\",\"observed_at\":\"2026-11-28T09:30:00+08:00\","
            "\"site\":{\"lat\":39.717,\"lon\":117.309,\"acc_m\":8},\"note\":\"a/b 宝\"}";

        enc = expect(loose, strlen(loose), FS_OK, "loose");
        assert_string_equal(enc, want);
        free(enc);
    }
}

/* Encoding a struct made by hand gives the canonical bytes, which parse back to
 * the same struct. */
static void
test_content_encode_from_struct(void **state)
{
    struct proto_content c, back;
    struct fs_err err;
    struct fs_buf b, b2;
    static const char want[] =
        "{\"kind\":\"observation\",\"observed_at\":\"2026-11-28T09:30:00+08:00\","
        "\"site\":{\"region\":\"河北省/雄安新区\",\"lat\":39.717,\"lon\":117.309},"
        "\"fields\":{\"topic\":\"新区建设\"},\"note\":\"line\\nline \\u0001\"}";

    (void)state;
    proto_content_init(&c);
    assert_int_equal(proto_content_set_str(&c.kind, "observation"), FS_OK);
    assert_int_equal(proto_content_set_str(&c.observed_at, "2026-11-28T09:30:00+08:00"), FS_OK);
    assert_int_equal(proto_content_set_str(&c.region, "河北省/雄安新区"), FS_OK);
    c.has_gps = 1;
    c.lat = 39.717;
    c.lon = 117.309;
    assert_int_equal(proto_content_set_field(&c, "topic", "新区建设"), FS_OK);
    assert_int_equal(proto_content_set_str(&c.note, "line\nline \x01"), FS_OK);
    assert_int_equal(proto_content_check(&c, &err), FS_OK);
    fs_buf_init(&b, PROTO_CONTENT_MAX_BYTES);
    assert_int_equal(proto_content_encode(&c, &b), FS_OK);
    assert_string_equal((const char *)b.data, want);

    assert_int_equal(proto_content_parse(b.data, b.len, &back, &err), FS_OK);
    fs_buf_init(&b2, PROTO_CONTENT_MAX_BYTES);
    assert_int_equal(proto_content_encode(&back, &b2), FS_OK);
    assert_int_equal(b2.len, b.len);
    assert_memory_equal(b2.data, b.data, b.len);
    assert_true(back.lat == c.lat && back.lon == c.lon && !back.has_acc);

    fs_buf_release(&b);
    fs_buf_release(&b2);
    proto_content_release(&back);
    proto_content_release(&c);
}

/* ---- refusals --------------------------------------------------------------------- */

static void
test_content_refuses_gps(void **state)
{
    (void)state;
    mutated("\"lat\":39.717", "\"lat\":91", FS_EINVAL, "lat 91");
    mutated("\"lat\":39.717", "\"lat\":90.000001", FS_EINVAL, "lat just over 90");
    mutated("\"lat\":39.717", "\"lat\":-91", FS_EINVAL, "lat -91");
    mutated("\"lon\":117.309", "\"lon\":200", FS_EINVAL, "lon 200");
    mutated("\"lon\":117.309", "\"lon\":-180.5", FS_EINVAL, "lon -180.5");
    mutated("\"lon\":117.309", "\"lon\":1e400", FS_EINVAL, "lon overflowing");
    mutated("\"lat\":39.717", "\"lat\":\"39.717\"", FS_EINVAL, "lat as a string");
    mutated("\"lat\":39.717", "\"lat\":null", FS_EINVAL, "lat null");
    mutated("\"lat\":39.717,", "", FS_EINVAL, "lon without lat");
    mutated(",\"lon\":117.309", "", FS_EINVAL, "lat without lon");
    mutated("\"lat\":39.717,\"lon\":117.309,", "", FS_EINVAL, "acc without gps");
    mutated("\"acc_m\":8", "\"acc_m\":-1", FS_EINVAL, "negative accuracy");
    mutated("\"acc_m\":8", "\"acc_m\":1000001", FS_EINVAL, "accuracy over 1000 km");
    mutated("\"acc_m\":8", "\"acc_m\":\"8\"", FS_EINVAL, "accuracy as a string");
    mutated("\"acc_m\":8", "\"alt\":8", FS_EINVAL, "unknown key in site");
    expect_refused("{\"kind\":\"k\",\"observed_at\":\"2026-11-28T01:30:00Z\",\"site\":\"here\"}",
                   FS_EINVAL, "site not an object");
}

static void
test_content_refuses_shape(void **state)
{
    (void)state;
    /* kind */
    mutated("\"kind\":\"interview\"", "\"kind\":\"inter view\"", FS_EINVAL, "kind with a space");
    mutated("\"kind\":\"interview\"", "\"kind\":\"Interview\"", FS_EINVAL, "kind uppercase");
    mutated("\"kind\":\"interview\"", "\"kind\":\"2interview\"", FS_EINVAL, "kind from a digit");
    mutated("\"kind\":\"interview\"", "\"kind\":\"\"", FS_EINVAL, "kind empty");
    mutated("\"kind\":\"interview\"", "\"kind\":\"访谈\"", FS_EINVAL, "kind not ASCII");
    mutated("\"kind\":\"interview\"", "\"kind\":\"abcdefghijabcdefghijabcdefghijabc\"", FS_EINVAL,
            "kind of 33 characters");
    mutated("\"kind\":\"interview\"", "\"kind\":\"abcdefghijabcdefghijabcdefghijab\"", FS_OK,
            "kind of 32 characters");
    mutated("\"kind\":\"interview\",", "", FS_EINVAL, "no kind");
    mutated("\"kind\":\"interview\"", "\"kind\":1", FS_EINVAL, "kind a number");
    /* observed_at */
    mutated("2026-11-28T09:30:00+08:00", "2026-11-28T09:30:00", FS_EINVAL, "time without zone");
    mutated("2026-11-28T09:30:00+08:00", "2026-02-30T09:30:00Z", FS_EINVAL, "no such day");
    mutated("\"observed_at\":\"2026-11-28T09:30:00+08:00\",", "", FS_EINVAL, "no time");
    /* unknown keys, at every level */
    mutated("{\"kind\"", "{\"id\":\"x\",\"kind\"", FS_EINVAL, "unknown top-level key");
    mutated("\"size\":0,", "\"size\":0,\"mtime\":0,", FS_EINVAL, "unknown key in attachment");
    mutated("{\"kind\"", "{\"kind\":\"interview\",\"kind\"", FS_EINVAL, "duplicate kind");
    mutated("\"topic\"", "\"interviewee_role\":\"x\",\"topic\"", FS_EINVAL, "duplicate field name");
    /* fields */
    mutated("\"topic\":\"产业转移 industrial transfer\"", "\"topic\":12", FS_EINVAL,
            "field value a number");
    mutated("\"topic\":\"产业转移 industrial transfer\"", "\"topic\":null", FS_EINVAL,
            "field value null");
    mutated("\"topic\":\"产业转移 industrial transfer\"", "\"topic\":[\"a\"]", FS_EINVAL,
            "field value an array");
    mutated("\"topic\":", "\"to pic\":", FS_EINVAL, "field name with a space");
    mutated("\"topic\":", "\"1topic\":", FS_EINVAL, "field name from a digit");
    mutated("\"topic\":", "\"主题\":", FS_EINVAL, "field name not ASCII");
    mutated("\"topic\":", "\"\":", FS_EINVAL, "field name empty");
    expect_refused("{\"kind\":\"k\",\"observed_at\":\"2026-11-28T01:30:00Z\",\"fields\":[]}",
                   FS_EINVAL, "fields not an object");
    /* text */
    mutated("\"author\":\"Ye T.\"", "\"author\":\"Ye\\nT.\"", FS_EINVAL, "author with a newline");
    mutated("\"author\":\"Ye T.\"", "\"author\":\"Ye\\u007fT.\"", FS_EINVAL, "author with DEL");
    mutated("\"author\":\"Ye T.\"", "\"author\":7", FS_EINVAL, "author a number");
    mutated("宝坻区", "宝坻区\\u0000", FS_EINVAL, "NUL in region");
    mutated("\"note\":\"", "\"note\":\"\xc3\x28", FS_EINVAL, "invalid UTF-8 in note");
    mutated("\"note\":\"", "\"note\":\"\xed\xa0\x80", FS_EINVAL, "a surrogate in note");
    mutated("\"note\":\"", "\"note\":\"\\ud800", FS_EINVAL, "a lone escaped surrogate");
    mutated("宝坻区", "宝\xe5\x9d", FS_EINVAL, "truncated character in region");
    mutated("\"official\"", "\"offici\xc0\xa1l\"", FS_EINVAL, "overlong in a field value");
    /* attachments */
    mutated("talk.m4a", "a/talk.m4a", FS_EINVAL, "attachment name with a slash");
    mutated("\"talk.m4a\"", "\"..\"", FS_EINVAL, "attachment name ..");
    mutated("audio/mp4", "audio", FS_EINVAL, "media type without a slash");
    mutated(ATT_HASH, "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", FS_EINVAL,
            "uppercase attachment hash");
    mutated("\"size\":0", "\"size\":-1", FS_EINVAL, "negative size");
    mutated("\"size\":0", "\"size\":1.5", FS_EINVAL, "fractional size");
    expect_refused("{\"kind\":\"k\",\"observed_at\":\"2026-11-28T01:30:00Z\",\"attachments\":{}}",
                   FS_EINVAL, "attachments not a list");
    expect_refused("{\"kind\":\"k\",\"observed_at\":\"2026-11-28T01:30:00Z\",\"attachments\":[1]}",
                   FS_EINVAL, "an attachment not an object");
    /* not one object */
    expect_refused("[]", FS_EINVAL, "an array");
    expect_refused("", FS_EINVAL, "empty");
    {
        char *m = subst(canonical, "]}", "]}{}");

        expect_refused(m, FS_EINVAL, "two objects");
        free(m);
    }
}

/* Builds content JSON around a note of n bytes ('a'), or a list of nfields
 * fields, into a malloc'd string. */
static char *
content_with(size_t note_len, size_t nfields, size_t value_len)
{
    struct fs_buf b;
    size_t i, n;

    fs_buf_init(&b, 1u << 22);
    assert_int_equal(fs_buf_adds(&b, "{\"kind\":\"k\",\"observed_at\":\"2026-11-28T01:30:00Z\""),
                     FS_OK);
    if (nfields) {
        assert_int_equal(fs_buf_adds(&b, ",\"fields\":{"), FS_OK);
        for (i = 0; i < nfields; i++) {
            assert_int_equal(fs_buf_printf(&b, "%s\"f%zu\":\"", i ? "," : "", i), FS_OK);
            for (n = 0; n < value_len; n++)
                assert_int_equal(fs_buf_addc(&b, 'v'), FS_OK);
            assert_int_equal(fs_buf_addc(&b, '"'), FS_OK);
        }
        assert_int_equal(fs_buf_addc(&b, '}'), FS_OK);
    }
    if (note_len) {
        assert_int_equal(fs_buf_adds(&b, ",\"note\":\""), FS_OK);
        for (n = 0; n < note_len; n++)
            assert_int_equal(fs_buf_addc(&b, 'a'), FS_OK);
        assert_int_equal(fs_buf_addc(&b, '"'), FS_OK);
    }
    assert_int_equal(fs_buf_addc(&b, '}'), FS_OK);
    return (char *)fs_buf_detach(&b, &n);
}

static void
expect_with(size_t note_len, size_t nfields, size_t value_len, enum fs_rc want, const char *why)
{
    char *json = content_with(note_len, nfields, value_len);
    char *enc = expect(json, strlen(json), want, why);

    if (enc)
        assert_string_equal(enc, json); /* built canonical */
    free(enc);
    free(json);
}

static void
test_content_limits(void **state)
{
    struct proto_content c;
    struct fs_err err;
    char *big;

    (void)state;
    expect_with(PROTO_NOTE_MAX_BYTES, 0, 0, FS_OK, "note at the limit");
    expect_with(PROTO_NOTE_MAX_BYTES + 1, 0, 0, FS_ETOOBIG, "note one byte over");
    expect_with(PROTO_NOTE_MAX_BYTES * 3, 0, 0, FS_ETOOBIG, "note far over");
    expect_with(0, PROTO_FIELDS_MAX, 1, FS_OK, "as many fields as allowed");
    expect_with(0, PROTO_FIELDS_MAX + 1, 1, FS_ETOOBIG, "one field too many");
    expect_with(0, 1, PROTO_FIELD_VALUE_MAX, FS_OK, "field value at the limit");
    expect_with(0, 1, PROTO_FIELD_VALUE_MAX + 1, FS_ETOOBIG, "field value one byte over");
    /* The whole content has its own limit, checked before parsing. */
    big = content_with(PROTO_CONTENT_MAX_BYTES, 0, 0);
    assert_int_equal(proto_content_parse(big, strlen(big), &c, &err), FS_ETOOBIG);
    assert_int_equal(proto_content_parse(big, PROTO_CONTENT_MAX_BYTES + 1, &c, &err), FS_ETOOBIG);
    free(big);
    /* One-line text has a limit too. */
    {
        char author[PROTO_TEXT_MAX_BYTES + 2];

        memset(author, 'y', sizeof author);
        author[PROTO_TEXT_MAX_BYTES] = 0;
        proto_content_init(&c);
        assert_int_equal(proto_content_set_str(&c.kind, "k"), FS_OK);
        assert_int_equal(proto_content_set_str(&c.observed_at, "2026-11-28T01:30:00Z"), FS_OK);
        assert_int_equal(proto_content_set_str(&c.author, author), FS_OK);
        assert_int_equal(proto_content_check(&c, &err), FS_OK);
        author[PROTO_TEXT_MAX_BYTES] = 'y';
        author[PROTO_TEXT_MAX_BYTES + 1] = 0;
        assert_int_equal(proto_content_set_str(&c.author, author), FS_OK);
        assert_int_equal(proto_content_check(&c, &err), FS_ETOOBIG);
        /* The message names the part, never its value. */
        assert_non_null(strstr(err.msg, "author"));
        assert_null(strstr(err.msg, "yyyy"));
        proto_content_release(&c);
    }
}

static void
test_content_set_field(void **state)
{
    struct proto_content c;
    struct fs_buf b;
    struct fs_err err;
    char name[16];
    size_t i;

    (void)state;
    assert_int_equal(parse_str(minimal, &c, &err), FS_OK);
    assert_int_equal(c.n_fields, 0);
    /* Add, in order. */
    assert_int_equal(proto_content_set_field(&c, "topic", "industry"), FS_OK);
    assert_int_equal(proto_content_set_field(&c, "role", "official"), FS_OK);
    assert_int_equal(proto_content_set_field(&c, "county", "宝坻区"), FS_OK);
    assert_int_equal(c.n_fields, 3);
    /* Replace keeps the position. */
    assert_int_equal(proto_content_set_field(&c, "role", "resident"), FS_OK);
    assert_int_equal(c.n_fields, 3);
    assert_string_equal(c.fields[1].name, "role");
    assert_string_equal(c.fields[1].value, "resident");
    fs_buf_init(&b, PROTO_CONTENT_MAX_BYTES);
    assert_int_equal(proto_content_encode(&c, &b), FS_OK);
    assert_non_null(strstr((const char *)b.data, "\"fields\":{\"topic\":\"industry\","
                                                 "\"role\":\"resident\",\"county\":\"宝坻区\"}"));
    /* Remove, with "" or NULL; removing an absent field does nothing. */
    assert_int_equal(proto_content_set_field(&c, "topic", ""), FS_OK);
    assert_int_equal(c.n_fields, 2);
    assert_string_equal(c.fields[0].name, "role");
    assert_string_equal(c.fields[1].name, "county");
    assert_int_equal(proto_content_set_field(&c, "nothing", NULL), FS_OK);
    assert_int_equal(proto_content_set_field(&c, "nothing", ""), FS_OK);
    assert_int_equal(c.n_fields, 2);
    assert_int_equal(proto_content_set_field(&c, "county", NULL), FS_OK);
    assert_int_equal(c.n_fields, 1);
    assert_string_equal(c.fields[0].name, "role");
    fs_buf_reset(&b);
    assert_int_equal(proto_content_encode(&c, &b), FS_OK);
    assert_string_equal((const char *)b.data,
                        "{\"kind\":\"site_visit-2\",\"observed_at\":\"2026-11-28T01:30:00Z\","
                        "\"fields\":{\"role\":\"resident\"}}");
    assert_int_equal(proto_content_set_field(&c, "role", NULL), FS_OK);
    assert_int_equal(c.n_fields, 0);
    fs_buf_reset(&b);
    assert_int_equal(proto_content_encode(&c, &b), FS_OK);
    assert_string_equal((const char *)b.data, minimal);
    /* The count is bounded. */
    for (i = 0; i < PROTO_FIELDS_MAX; i++) {
        snprintf(name, sizeof name, "f%zu", i);
        assert_int_equal(proto_content_set_field(&c, name, "v"), FS_OK);
    }
    assert_int_equal(proto_content_set_field(&c, "one_more", "v"), FS_ETOOBIG);
    assert_int_equal(c.n_fields, PROTO_FIELDS_MAX);
    assert_int_equal(proto_content_set_field(&c, "f0", "replaced"), FS_OK); /* still possible */
    assert_int_equal(proto_content_check(&c, &err), FS_OK);
    fs_buf_release(&b);
    proto_content_release(&c);
}

static void
test_content_copy(void **state)
{
    struct proto_content c, d;
    struct fs_err err;
    struct fs_buf b1;

    (void)state;
    assert_int_equal(parse_str(canonical, &c, &err), FS_OK);
    assert_int_equal(proto_content_copy(&d, &c), FS_OK);
    /* Deep: changing or freeing the original leaves the copy whole. */
    assert_true(d.note != c.note && d.fields != c.fields && d.attachments != c.attachments);
    assert_int_equal(proto_content_set_field(&c, "topic", "changed"), FS_OK);
    proto_content_release(&c);
    fs_buf_init(&b1, PROTO_CONTENT_MAX_BYTES);
    assert_int_equal(proto_content_encode(&d, &b1), FS_OK);
    assert_string_equal((const char *)b1.data, canonical);
    proto_content_release(&d);
    fs_buf_release(&b1);
}

/* The fast path reads canonical bytes into the struct jansson builds, and
 * declines everything else (which the general parser then takes or refuses). */
static void
test_content_fast_path(void **state)
{
    static const char *const same_meaning[] = {
        /* keys in another order */
        "{\"observed_at\":\"2026-11-28T01:30:00Z\",\"kind\":\"site_visit-2\"}",
        /* whitespace */
        "{\"kind\": \"site_visit-2\",\"observed_at\":\"2026-11-28T01:30:00Z\"}",
        /* an escape the writer does not make */
        "{\"kind\":\"site_visit-2\",\"observed_at\":\"2026-11-28T01:30:00Z\",\"note\":\"\\u0041\\/"
        "\"}",
        /* a number spelled longer than the shortest */
        "{\"kind\":\"a\",\"observed_at\":\"2026-11-28T01:30:00Z\",\"site\":{\"lat\":39.7170,"
        "\"lon\":1}}",
        "{\"kind\":\"a\",\"observed_at\":\"2026-11-28T01:30:00Z\",\"site\":{\"lat\":1e1,"
        "\"lon\":1}}",
        /* an empty site, which the writer leaves out */
        "{\"kind\":\"a\",\"observed_at\":\"2026-11-28T01:30:00Z\",\"site\":{}}",
    };
    const char *const canon[] = {canonical, minimal};
    struct proto_content f, g;
    struct fs_buf bf, bg;
    struct fs_err err;
    size_t i;

    (void)state;
    for (i = 0; i < FS_ARRAY_LEN(canon); i++) {
        assert_int_equal(proto_content_parse_canonical(canon[i], strlen(canon[i]), &f), 1);
        assert_int_equal(proto_content_parse_general(canon[i], strlen(canon[i]), &g, &err), FS_OK);
        assert_int_equal(f.n_fields, g.n_fields);
        assert_int_equal(f.n_attachments, g.n_attachments);
        assert_int_equal(f.has_gps, g.has_gps);
        assert_true(!f.has_gps || (f.lat == g.lat && f.lon == g.lon && f.acc_m == g.acc_m));
        if (f.note)
            assert_string_equal(f.note, g.note);
        fs_buf_init(&bf, 1 << 20);
        fs_buf_init(&bg, 1 << 20);
        assert_int_equal(proto_content_encode(&f, &bf), FS_OK);
        assert_int_equal(proto_content_encode(&g, &bg), FS_OK);
        assert_int_equal(bf.len, strlen(canon[i]));
        assert_memory_equal(bf.data, bg.data, bf.len);
        fs_buf_release(&bf);
        fs_buf_release(&bg);
        proto_content_release(&f);
        proto_content_release(&g);
    }
    for (i = 0; i < FS_ARRAY_LEN(same_meaning); i++) {
        const char *m = same_meaning[i];

        assert_int_equal(proto_content_parse_canonical(m, strlen(m), &f), 0);
        proto_content_release(&f);
        if (proto_content_parse(m, strlen(m), &g, &err) != FS_OK)
            fail_msg("variant %zu refused: %s", i, err.msg);
        proto_content_release(&g);
    }
    /* Canonical in shape, refused by the rules: declined here, refused there. */
    {
        static const char dup[] = "{\"kind\":\"a\",\"observed_at\":\"2026-11-28T01:30:00Z\","
                                  "\"fields\":{\"x\":\"1\",\"x\":\"2\"}}";
        static const char nul[] = "{\"kind\":\"a\",\"observed_at\":\"2026-11-28T01:30:00Z\","
                                  "\"note\":\"a\\u0000b\"}";
        static const char bad_utf8[] = "{\"kind\":\"a\",\"observed_at\":\"2026-11-28T01:30:00Z\","
                                       "\"note\":\"\xc3\x28\"}";
        static const char far[] = "{\"kind\":\"a\",\"observed_at\":\"2026-11-28T01:30:00Z\","
                                  "\"site\":{\"lat\":91,\"lon\":1}}";
        const char *const bad[] = {dup, nul, bad_utf8, far};

        for (i = 0; i < FS_ARRAY_LEN(bad); i++) {
            assert_int_equal(proto_content_parse_canonical(bad[i], strlen(bad[i]), &f), 0);
            proto_content_release(&f);
            assert_int_equal(proto_content_parse(bad[i], strlen(bad[i]), &g, &err), FS_EINVAL);
            proto_content_release(&g);
        }
    }
}

static void
test_kind_check(void **state)
{
    (void)state;
    assert_int_equal(proto_kind_check("interview"), FS_OK);
    assert_int_equal(proto_kind_check("a"), FS_OK);
    assert_int_equal(proto_kind_check("site_visit-2"), FS_OK);
    assert_int_equal(proto_kind_check("abcdefghijabcdefghijabcdefghijab"), FS_OK);
    assert_int_equal(proto_kind_check("abcdefghijabcdefghijabcdefghijabc"), FS_EINVAL);
    assert_int_equal(proto_kind_check(""), FS_EINVAL);
    assert_int_equal(proto_kind_check("Interview"), FS_EINVAL);
    assert_int_equal(proto_kind_check("inter view"), FS_EINVAL);
    assert_int_equal(proto_kind_check("_x"), FS_EINVAL);
    assert_int_equal(proto_kind_check("-x"), FS_EINVAL);
    assert_int_equal(proto_kind_check("x.y"), FS_EINVAL);
    assert_int_equal(proto_kind_check("x/y"), FS_EINVAL);
    assert_int_equal(proto_kind_check("访谈"), FS_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_roundtrip),
        cmocka_unit_test(test_content_encode_from_struct),
        cmocka_unit_test(test_content_refuses_gps),
        cmocka_unit_test(test_content_refuses_shape),
        cmocka_unit_test(test_content_limits),
        cmocka_unit_test(test_content_set_field),
        cmocka_unit_test(test_content_copy),
        cmocka_unit_test(test_content_fast_path),
        cmocka_unit_test(test_kind_check),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
