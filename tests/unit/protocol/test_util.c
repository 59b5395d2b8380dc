/*
 * Unit tests of the small codecs in proto_util.c and proto_utf8_check: hex,
 * RFC 3339 time, UUIDv7, shortest round-trip decimals and UTF-8 validation.
 * They pin the wire profile of DESIGN §3; the codecs' callers are tested
 * elsewhere.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "proto_content.h"

/* A fixed-seed generator, so that every run checks the same values. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t
rng_next(void)
{
    uint64_t x = rng_state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static int
group_setup(void **state)
{
    (void)state;
    return proto_init() == FS_OK ? 0 : -1;
}

/* ---- hex ------------------------------------------------------------------ */

static void
test_hex_encode_decode(void **state)
{
    unsigned char bin[256], back[256];
    char hex[513];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)i;
    proto_hex_encode(bin, sizeof bin, hex);
    assert_int_equal(strlen(hex), 512);
    assert_memory_equal(hex, "000102030405060708090a0b0c0d0e0f10", 34);
    assert_string_equal(hex + 480, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
    for (i = 0; i < 512; i++)
        assert_true((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
    memset(back, 0, sizeof back);
    assert_int_equal(proto_hex_decode(hex, 512, back, sizeof back), FS_OK);
    assert_memory_equal(back, bin, sizeof bin);

    /* Zero bytes: an empty string. */
    proto_hex_encode(bin, 0, hex);
    assert_string_equal(hex, "");
    assert_int_equal(proto_hex_decode("", 0, back, 0), FS_OK);
}

static void
test_hex_decode_refuses(void **state)
{
    unsigned char out[4];

    (void)state;
    assert_int_equal(proto_hex_decode("deadbeef", 8, out, 4), FS_OK);
    assert_int_equal(out[0], 0xde);
    assert_int_equal(out[3], 0xef);
    /* Uppercase, in any position. */
    assert_int_equal(proto_hex_decode("DEADBEEF", 8, out, 4), FS_EINVAL);
    assert_int_equal(proto_hex_decode("deadbeeF", 8, out, 4), FS_EINVAL);
    assert_int_equal(proto_hex_decode("Deadbeef", 8, out, 4), FS_EINVAL);
    /* Odd or wrong lengths. */
    assert_int_equal(proto_hex_decode("deadbee", 7, out, 4), FS_EINVAL);
    assert_int_equal(proto_hex_decode("abc", 3, out, 1), FS_EINVAL);
    assert_int_equal(proto_hex_decode("abc", 3, out, 2), FS_EINVAL);
    assert_int_equal(proto_hex_decode("deadbeef00", 10, out, 4), FS_EINVAL);
    assert_int_equal(proto_hex_decode("dead", 4, out, 4), FS_EINVAL);
    /* Not hex at all. */
    assert_int_equal(proto_hex_decode("deadbeeg", 8, out, 4), FS_EINVAL);
    assert_int_equal(proto_hex_decode("dead beef", 8, out, 4), FS_EINVAL);
    assert_int_equal(proto_hex_decode("0x00beef", 8, out, 4), FS_EINVAL);
    assert_int_equal(proto_hex_decode("dead\0eef", 8, out, 4), FS_EINVAL);
}

/* ---- time ------------------------------------------------------------------- */

static enum fs_rc
tparse(const char *s, int require_utc, int64_t *ms)
{
    return proto_time_parse(s, strlen(s), require_utc, ms);
}

static void
test_time_parse_valid(void **state)
{
    static const struct {
        const char *s;
        int64_t ms;
    } ok[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T00:00:00.001Z", 1},
        {"2026-11-29T02:11:16.123Z", 1795918276123},
        {"2026-11-29T02:11:16Z", 1795918276000},
        {"2026-11-28T09:30:00+08:00", 1795829400000},
        {"2026-11-28T01:30:00+00:00", 1795829400000},
        {"2026-11-28T01:30:00-00:00", 1795829400000},
        {"2026-01-01T00:00:00-05:30", 1767245400000},
        {"2000-02-29T23:59:59.999Z", 951868799999},
        {"2024-02-29T00:00:00Z", 1709164800000},
        {"9999-12-31T23:59:59.999Z", 253402300799999},
        /* Fractions of one to nine digits; beyond milliseconds truncated. */
        {"2026-11-29T02:11:16.1Z", 1795918276100},
        {"2026-11-29T02:11:16.12Z", 1795918276120},
        {"2026-11-29T02:11:16.123456789Z", 1795918276123},
        {"2026-11-29T02:11:16.999999+01:00", 1795918276999 - 3600000},
        {"2026-12-31T23:59:59Z", 1798761599000},
    };
    size_t i;

    (void)state;
    for (i = 0; i < FS_ARRAY_LEN(ok); i++) {
        int64_t ms = -42;

        if (tparse(ok[i].s, 0, &ms) != FS_OK)
            fail_msg("refused valid time %s", ok[i].s);
        if (ms != ok[i].ms)
            fail_msg("%s parsed to %lld, want %lld", ok[i].s, (long long)ms, (long long)ok[i].ms);
    }
}

static void
test_time_parse_invalid(void **state)
{
    static const char *const bad[] = {
        "2026-02-30T00:00:00Z",            /* no such day */
        "2026-02-29T00:00:00Z",            /* 2026 is not a leap year */
        "2100-02-29T00:00:00Z",            /* nor is 2100 */
        "2026-04-31T00:00:00Z",            /* April has 30 days */
        "2026-13-01T00:00:00Z",            /* month 13 */
        "2026-00-10T00:00:00Z",            /* month 0 */
        "2026-01-00T00:00:00Z",            /* day 0 */
        "2026-01-32T00:00:00Z",            /* day 32 */
        "2026-01-01T24:00:00Z",            /* hour 24 */
        "2026-01-01T23:60:00Z",            /* minute 60 */
        "2026-01-01T23:59:60Z",            /* leap second */
        "2026-01-01T00:00:00",             /* no zone */
        "2026-01-01T00:00:00.123",         /* no zone after a fraction */
        "2026-01-01",                      /* a date alone */
        "2026-01-01 00:00:00Z",            /* space for T */
        "2026-01-01t00:00:00Z",            /* lowercase t */
        "2026-01-01T00:00:00z",            /* lowercase z */
        "2026-01-01T00:00:00+08",          /* offset without minutes */
        "2026-01-01T00:00:00+0800",        /* offset without colon */
        "2026-01-01T00:00:00+24:00",       /* offset hour 24 */
        "2026-01-01T00:00:00+08:60",       /* offset minute 60 */
        "2026-01-01T00:00:00.Z",           /* empty fraction */
        "2026-01-01T00:00:00.1234567890Z", /* ten fraction digits */
        "2026-01-01T00:00:00Zjunk",        /* trailing bytes */
        "2026-01-01T00:00:00+08:00 ",      /* trailing space */
        "1969-12-31T23:59:59Z",            /* before 1970 */
        "26-01-01T00:00:00Z",              /* short year */
        "2026-1-01T00:00:00Z",             /* one-digit month */
        "2026-01-01T0:00:00Z",             /* one-digit hour */
        "+2026-01-01T00:00:00Z",           /* signed year */
        "2026-01-01T00:00:0aZ",            /* not a digit */
        "",                                /* empty */
    };
    size_t i;

    (void)state;
    for (i = 0; i < FS_ARRAY_LEN(bad); i++) {
        int64_t ms = 0;

        if (tparse(bad[i], 0, &ms) == FS_OK)
            fail_msg("accepted invalid time \"%s\"", bad[i]);
    }
}

static void
test_time_parse_require_utc(void **state)
{
    int64_t ms = 0;

    (void)state;
    assert_int_equal(tparse("2026-11-29T02:11:16.123Z", 1, &ms), FS_OK);
    assert_int_equal(ms, 1795918276123);
    assert_int_equal(tparse("2026-11-28T09:30:00+08:00", 1, &ms), FS_EINVAL);
    assert_int_equal(tparse("2026-11-28T09:30:00+00:00", 1, &ms), FS_EINVAL);
    assert_int_equal(tparse("2026-11-28T09:30:00-00:00", 1, &ms), FS_EINVAL);
    /* The length given is what counts, not a NUL. */
    assert_int_equal(proto_time_parse("2026-11-29T02:11:16ZZ", 20, 1, &ms), FS_OK);
    assert_int_equal(proto_time_parse("2026-11-29T02:11:16Z", 19, 1, &ms), FS_EINVAL);
}

static void
test_time_format_roundtrip(void **state)
{
    static const int64_t fixed[] = {0,
                                    1,
                                    999,
                                    1000,
                                    86399999,
                                    86400000,
                                    951782400000 /* 2000-02-29 */,
                                    951868799999,
                                    1709164800000,
                                    1795918276123,
                                    253402300799999};
    char out[PROTO_TIME_MAX_LEN];
    size_t i;

    (void)state;
    proto_time_format_ms(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    proto_time_format_ms(1795918276123, out);
    assert_string_equal(out, "2026-11-29T02:11:16.123Z");
    proto_time_format_ms(951868799999, out);
    assert_string_equal(out, "2000-02-29T23:59:59.999Z");
    proto_time_format_ms(253402300799999, out);
    assert_string_equal(out, "9999-12-31T23:59:59.999Z");

    for (i = 0; i < FS_ARRAY_LEN(fixed) + 20000; i++) {
        int64_t ms =
            i < FS_ARRAY_LEN(fixed) ? fixed[i] : (int64_t)(rng_next() % 253402300800000ull);
        int64_t back = -1;

        proto_time_format_ms(ms, out);
        assert_int_equal(strlen(out), 24);
        assert_int_equal(out[23], 'Z');
        if (proto_time_parse(out, strlen(out), 1, &back) != FS_OK || back != ms)
            fail_msg("%lld formatted as %s does not read back", (long long)ms, out);
    }
}

/* ---- UUIDv7 ----------------------------------------------------------------- */

static enum fs_rc
ucheck(const char *s)
{
    return proto_uuid_check(s, strlen(s));
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void
test_uuid7_new(void **state)
{
    enum { N = 2000 };
    static char ids[N][PROTO_UUID_LEN + 1];
    const int64_t ms = 1795918276123; /* 0x01a22512261b */
    size_t i;

    (void)state;
    for (i = 0; i < N; i++) {
        char *id = ids[i];

        proto_uuid7_new(ms, id);
        assert_int_equal(strlen(id), PROTO_UUID_LEN);
        assert_int_equal(ucheck(id), FS_OK);
        /* The first 48 bits are the milliseconds, big-endian. */
        assert_memory_equal(id, "01a22512-261b-7", 15);
        assert_int_equal(id[14], '7');
        assert_non_null(strchr("89ab", id[19]));
    }
    /* 74 random bits: no two alike. */
    qsort(ids, N, sizeof ids[0], cmp_str);
    for (i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
}

static void
test_uuid7_next_monotonic(void **state)
{
    struct proto_uuid7_gen g;
    char prev[PROTO_UUID_LEN + 1], id[PROTO_UUID_LEN + 1];
    int64_t ms = 1795918276123;
    size_t i;

    (void)state;
    memset(&g, 0, sizeof g);
    proto_uuid7_next(&g, ms, prev);
    assert_int_equal(ucheck(prev), FS_OK);
    for (i = 0; i < 20000; i++) {
        /* Mostly the same millisecond, sometimes a step back or forward. */
        uint64_t r = rng_next() % 100;

        if (r == 0)
            ms -= 5000;
        else if (r < 5)
            ms += 1;
        proto_uuid7_next(&g, ms, id);
        assert_int_equal(ucheck(id), FS_OK);
        if (strcmp(prev, id) >= 0)
            fail_msg("uuid7 ids out of order: %s then %s", prev, id);
        memcpy(prev, id, sizeof id);
    }
}

static void
test_uuid_check_refuses(void **state)
{
    static const char *const bad[] = {
        "0193a3c4-5b6e-4f00-8a1b-2c3d4e5f6a7b",  /* version 4 */
        "0193a3c4-5b6e-1f00-8a1b-2c3d4e5f6a7b",  /* version 1 */
        "0193a3c4-5b6e-8f00-8a1b-2c3d4e5f6a7b",  /* version 8 */
        "0193A3C4-5B6E-7F00-8A1B-2C3D4E5F6A7B",  /* uppercase */
        "0193a3c4-5b6e-7f00-8a1b-2c3d4e5f6a7B",  /* one uppercase digit */
        "0193a3c4-5b6e-7f00-Aa1b-2c3d4e5f6a7b",  /* uppercase variant */
        "0193a3c4-5b6e-7f00-ca1b-2c3d4e5f6a7b",  /* variant 110 (Microsoft) */
        "0193a3c4-5b6e-7f00-ea1b-2c3d4e5f6a7b",  /* variant 111 */
        "0193a3c4-5b6e-7f00-7a1b-2c3d4e5f6a7b",  /* variant 0 (NCS) */
        "0193a3c4-5b6e-7f00-0a1b-2c3d4e5f6a7b",  /* variant 0 */
        "0193a3c45b6e7f008a1b2c3d4e5f6a7b",      /* no dashes */
        "0193a3c4-5b6e-7f00-8a1b-2c3d4e5f6a7",   /* short */
        "0193a3c4-5b6e-7f00-8a1b-2c3d4e5f6a7b0", /* long */
        "0193a3c4_5b6e-7f00-8a1b-2c3d4e5f6a7b",  /* wrong separator */
        "0193a3c4-5b6e7-f00-8a1b-2c3d4e5f6a7b",  /* dash moved */
        "0193a3g4-5b6e-7f00-8a1b-2c3d4e5f6a7b",  /* not hex */
        "{193a3c4-5b6e-7f00-8a1b-2c3d4e5f6a7}",  /* braces */
        "",
    };
    size_t i;

    (void)state;
    assert_int_equal(ucheck("0193a3c4-5b6e-7f00-8a1b-2c3d4e5f6a7b"), FS_OK);
    assert_int_equal(ucheck("0193a3c4-5b6e-7f00-9a1b-2c3d4e5f6a7b"), FS_OK);
    assert_int_equal(ucheck("0193a3c4-5b6e-7f00-aa1b-2c3d4e5f6a7b"), FS_OK);
    assert_int_equal(ucheck("0193a3c4-5b6e-7f00-ba1b-2c3d4e5f6a7b"), FS_OK);
    for (i = 0; i < FS_ARRAY_LEN(bad); i++)
        if (ucheck(bad[i]) == FS_OK)
            fail_msg("accepted bad UUID \"%s\"", bad[i]);
}

/* ---- shortest decimals ------------------------------------------------------ */

static void
expect_shortest(double v, const char *want)
{
    char out[32];

    memset(out, 'x', sizeof out);
    proto_double_shortest(v, out);
    if (strcmp(out, want) != 0)
        fail_msg("%.17g printed as \"%s\", want \"%s\"", v, out, want);
    assert_true(strtod(out, NULL) == v);
}

static void
test_double_shortest_known(void **state)
{
    (void)state;
    expect_shortest(39.717, "39.717");
    expect_shortest(117.309, "117.309");
    expect_shortest(-117.309, "-117.309");
    expect_shortest(0.1, "0.1");
    expect_shortest(-0.5, "-0.5");
    expect_shortest(0.0, "0");
    /* "-0" would read back as the integer 0 and encode as "0" the second
     * time (found by fuzz_content). */
    expect_shortest(-0.0, "0");
    expect_shortest(8, "8");
    expect_shortest(25, "25");
    expect_shortest(39.0266, "39.0266");
    expect_shortest(115.954813, "115.954813");
    expect_shortest(0.30000000000000004, "0.30000000000000004");
    expect_shortest(1.0 / 3.0, "0.3333333333333333");
    /* Whole numbers are written out, not as 1.2e+02 (what %g would give). */
    expect_shortest(10, "10");
    expect_shortest(100, "100");
    expect_shortest(120, "120");
    expect_shortest(180, "180");
    expect_shortest(-180, "-180");
    expect_shortest(-90, "-90");
    expect_shortest(1000, "1000");
    expect_shortest(150000, "150000");
    /* Tiny and huge values keep the exponent: it is the shorter text. */
    expect_shortest(1e-7, "1e-07");
    expect_shortest(-2.5e-10, "-2.5e-10");
    expect_shortest(1e21, "1e+21");
    expect_shortest(5e-324, "5e-324");
    expect_shortest(1.7976931348623157e308, "1.7976931348623157e+308");
}

/* Coordinates typed with up to 7 decimals come back exactly as typed. */
static void
test_double_shortest_coordinates(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < 20000; i++) {
        char typed[40], out[32];
        unsigned ip = (unsigned)(rng_next() % 180);
        unsigned places = 1 + (unsigned)(rng_next() % 7), frac;
        unsigned long long p10 = 1;
        unsigned k;

        for (k = 0; k < places; k++)
            p10 *= 10;
        frac = (unsigned)(rng_next() % p10);
        if (frac % 10 == 0)
            frac++; /* no trailing zero: the typed text is already shortest */
        snprintf(typed, sizeof typed, "%s%u.%0*u", rng_next() & 1 ? "-" : "", ip, (int)places,
                 frac);
        proto_double_shortest(strtod(typed, NULL), out);
        if (strcmp(out, typed) != 0)
            fail_msg("%s printed as %s", typed, out);
    }
}

/* Any finite double reads back exactly, and never needs more than 17 digits. */
static void
test_double_shortest_random(void **state)
{
    size_t i, checked = 0;

    (void)state;
    for (i = 0; i < 200000; i++) {
        uint64_t bits = rng_next();
        double v, back;
        char out[32], longest[40];

        if (i % 2)
            memcpy(&v, &bits, sizeof v); /* any bit pattern */
        else
            v = (double)(int64_t)(bits >> 11) / (double)(1ull << (bits % 60)); /* ordinary */
        if (!isfinite(v))
            continue;
        memset(out, 0, sizeof out);
        proto_double_shortest(v, out);
        back = strtod(out, NULL);
        if (memcmp(&back, &v, sizeof v) != 0 && !(v == 0 && back == 0))
            fail_msg("%.17g printed as %s reads back as %.17g", v, out, back);
        snprintf(longest, sizeof longest, "%.17g", v);
        if (strlen(out) > strlen(longest))
            fail_msg("%.17g printed as %s, longer than %s", v, out, longest);
        checked++;
    }
    assert_true(checked > 150000);
}

/* The definition, by brute force: the first precision whose %g reads back,
 * then whole numbers written out when not longer. */
static void
shortest_by_definition(double v, char out[400])
{
    char whole[400];
    int prec;

    if (v == 0) {
        strcpy(out, "0");
        return;
    }
    for (prec = 1; prec <= 17; prec++) {
        snprintf(out, 400, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            break;
    }
    if (strstr(out, "e+") && v > -1e17 && v < 1e17) {
        snprintf(whole, sizeof whole, "%.0f", v);
        if (strlen(whole) <= strlen(out))
            strcpy(out, whole);
    }
}

/* The fast route (one %.15g for most values) gives what the definition does,
 * across the range: coordinates, ordinary values, any bit pattern, and the
 * subnormal and huge ends where a shorter string can read back. */
static void
test_double_shortest_is_the_definition(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < 300000; i++) {
        uint64_t bits = rng_next();
        char out[32], want[400];
        double v;

        switch (i % 4) {
        case 0:
            memcpy(&v, &bits, sizeof v);
            break;
        case 1:
            v = (double)(int64_t)(bits >> 11) / (double)(1ull << (bits % 60));
            break;
        case 2: /* subnormals and the smallest normals */
            bits &= 0x001fffffffffffffull;
            memcpy(&v, &bits, sizeof v);
            break;
        default: /* near the largest */
            bits = 0x7fe0000000000000ull | (bits & 0x800fffffffffffffull);
            memcpy(&v, &bits, sizeof v);
            break;
        }
        if (!isfinite(v))
            continue;
        proto_double_shortest(v, out);
        shortest_by_definition(v, want);
        if (strcmp(out, want) != 0)
            fail_msg("%.17g printed as \"%s\", by definition \"%s\"", v, out, want);
    }
}

/* ---- UTF-8 -------------------------------------------------------------------- */

static enum fs_rc
u8(const char *s, size_t len)
{
    return proto_utf8_check(s, len);
}

#define U8_OK(lit)  assert_int_equal(u8(lit, sizeof(lit) - 1), FS_OK)
#define U8_BAD(lit) assert_int_equal(u8(lit, sizeof(lit) - 1), FS_EINVAL)

static void
test_utf8_check(void **state)
{
    char big[1024];
    size_t i;

    (void)state;
    U8_OK("");
    U8_OK("plain ASCII, with punctuation ~!@#$%^&*()\t\n");
    U8_OK("天津市/宝坻区");
    U8_OK("河北省/雄安新区");
    U8_OK("年轻工程师仍住在北京每天往返");
    U8_OK("caf\xc3\xa9");      /* U+00E9, two bytes */
    U8_OK("\xc2\x80");         /* U+0080, the first two-byte code point */
    U8_OK("\xdf\xbf");         /* U+07FF */
    U8_OK("\xe0\xa0\x80");     /* U+0800 */
    U8_OK("\xed\x9f\xbf");     /* U+D7FF, just below the surrogates */
    U8_OK("\xee\x80\x80");     /* U+E000, just above them */
    U8_OK("\xef\xbf\xbf");     /* U+FFFF */
    U8_OK("\xf0\x90\x80\x80"); /* U+10000 */
    U8_OK("\xf0\x9f\x98\x80"); /* U+1F600 */
    U8_OK("\xf4\x8f\xbf\xbf"); /* U+10FFFF, the last code point */
    U8_OK("\x7f");

    /* Overlong forms. */
    U8_BAD("\xc0\x80");
    U8_BAD("\xc1\xbf");
    U8_BAD("\xe0\x80\x80");
    U8_BAD("\xe0\x9f\xbf");
    U8_BAD("\xf0\x80\x80\x80");
    U8_BAD("\xf0\x8f\xbf\xbf");
    /* Surrogates. */
    U8_BAD("\xed\xa0\x80");
    U8_BAD("\xed\xbf\xbf");
    U8_BAD("\xed\xa0\xbd\xed\xb8\x80"); /* CESU-8 pair */
    /* Above U+10FFFF, and bytes that never occur. */
    U8_BAD("\xf4\x90\x80\x80");
    U8_BAD("\xf5\x80\x80\x80");
    U8_BAD("\xf7\xbf\xbf\xbf");
    U8_BAD("\xf8\x88\x80\x80\x80");
    U8_BAD("\xfe");
    U8_BAD("\xff");
    /* Truncated and broken sequences. */
    U8_BAD("\xe5\xae");     /* 宝 without its last byte */
    U8_BAD("abc\xe5");      /* lead byte at the end */
    U8_BAD("\xf0\x9f\x98"); /* three of four */
    U8_BAD("\xc3");         /* one of two */
    U8_BAD("\xe5\x41\x41"); /* continuation bytes missing */
    U8_BAD("\x80");         /* lone continuation */
    U8_BAD("a\xbf");        /* lone continuation after ASCII */
    U8_BAD("\xc3\xa9\xa9"); /* one continuation too many */
    /* NUL is refused, wherever it is. */
    U8_BAD("\0");
    U8_BAD("a\0b");
    U8_BAD("宝坻区\0");

    /* Every truncation of a Chinese string that cuts a character is refused. */
    {
        const char *s = "宝坻区雄安新区";
        size_t n = strlen(s);

        for (i = 0; i <= n; i++)
            assert_int_equal(u8(s, i), i % 3 == 0 ? FS_OK : FS_EINVAL);
    }
    /* A long valid text; then one bad byte anywhere spoils it. */
    for (i = 0; i + 3 <= sizeof big; i += 3)
        memcpy(big + i, "\xe5\xae\x9d", 3);
    assert_int_equal(u8(big, i), FS_OK);
    for (i = 0; i < 300; i += 7) {
        char save = big[i];

        big[i] = (char)0xff;
        assert_int_equal(u8(big, 1020), FS_EINVAL);
        big[i] = save;
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_encode_decode),
        cmocka_unit_test(test_hex_decode_refuses),
        cmocka_unit_test(test_time_parse_valid),
        cmocka_unit_test(test_time_parse_invalid),
        cmocka_unit_test(test_time_parse_require_utc),
        cmocka_unit_test(test_time_format_roundtrip),
        cmocka_unit_test(test_uuid7_new),
        cmocka_unit_test(test_uuid7_next_monotonic),
        cmocka_unit_test(test_uuid_check_refuses),
        cmocka_unit_test(test_double_shortest_known),
        cmocka_unit_test(test_double_shortest_coordinates),
        cmocka_unit_test(test_double_shortest_random),
        cmocka_unit_test(test_double_shortest_is_the_definition),
        cmocka_unit_test(test_utf8_check),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
