/* The small codecs of the wire profile: hex, hashing, tagged signatures, RFC 3339
 * time, UUIDv7 and shortest round-trip decimals. */
#include "proto.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum fs_rc
proto_init(void)
{
    return sodium_init() < 0 ? FS_EINTERNAL : FS_OK;
}

void
proto_hex_encode(const unsigned char *bin, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[bin[i] >> 4];
        out[2 * i + 1] = digits[bin[i] & 15];
    }
    out[2 * n] = 0;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

enum fs_rc
proto_hex_decode(const char *hex, size_t hexlen, unsigned char *out, size_t n)
{
    size_t i;

    if (hexlen != 2 * n)
        return FS_EINVAL;
    for (i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return FS_EINVAL;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return FS_OK;
}

void
proto_hash(const void *data, size_t len, unsigned char out[PROTO_HASH_BYTES])
{
    crypto_generichash(out, PROTO_HASH_BYTES, data, len, NULL, 0);
}

/* Ed25519 signs a message in one piece, so the tag is joined to it; the small
 * messages signed here are bounded by the callers' limits. */
static unsigned char *
tagged(const char *tag, const void *msg, size_t len, size_t *outlen)
{
    size_t tl = strlen(tag) + 1;
    unsigned char *m = malloc(tl + len + 1);

    if (!m)
        return NULL;
    memcpy(m, tag, tl);
    if (len)
        memcpy(m + tl, msg, len);
    *outlen = tl + len;
    return m;
}

void
proto_sign_tagged(const char *tag, const void *msg, size_t len,
                  const unsigned char sk[PROTO_SECRET_BYTES], unsigned char sig[PROTO_SIG_BYTES])
{
    size_t ml;
    unsigned char *m = tagged(tag, msg, len, &ml);

    if (!m)
        FS_BUG("out of memory while signing");
    crypto_sign_detached(sig, NULL, m, ml, sk);
    free(m);
}

enum fs_rc
proto_verify_tagged(const char *tag, const void *msg, size_t len,
                    const unsigned char sig[PROTO_SIG_BYTES],
                    const unsigned char pk[PROTO_KEY_BYTES])
{
    size_t ml;
    unsigned char *m = tagged(tag, msg, len, &ml);
    int bad;

    if (!m)
        return FS_ENOMEM;
    bad = crypto_sign_verify_detached(sig, m, ml, pk);
    free(m);
    return bad ? FS_EPROTO : FS_OK;
}

void
proto_keypair(unsigned char pk[PROTO_KEY_BYTES], unsigned char sk[PROTO_SECRET_BYTES])
{
    crypto_sign_keypair(pk, sk);
}

void
proto_keypair_from_seed(const unsigned char seed[PROTO_SEED_BYTES],
                        unsigned char pk[PROTO_KEY_BYTES], unsigned char sk[PROTO_SECRET_BYTES])
{
    crypto_sign_seed_keypair(pk, sk, seed);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (civil calendar). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void
civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
    int64_t era;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned)(z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)((int64_t)yoe + era * 400 + (*m <= 2));
}

void
proto_time_format_ms(int64_t unix_ms, char out[PROTO_TIME_MAX_LEN])
{
    int64_t days, rem;
    int y;
    unsigned m, d;

    if (unix_ms < 0)
        unix_ms = 0;
    days = unix_ms / 86400000;
    rem = unix_ms % 86400000;
    civil_from_days(days, &y, &m, &d);
    snprintf(out, PROTO_TIME_MAX_LEN, "%04d-%02u-%02uT%02u:%02u:%02u.%03uZ", y, m, d,
             (unsigned)(rem / 3600000), (unsigned)(rem / 60000 % 60), (unsigned)(rem / 1000 % 60),
             (unsigned)(rem % 1000));
}

static int
digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static unsigned
days_in_month(unsigned y, unsigned m)
{
    static const unsigned dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

enum fs_rc
proto_time_parse(const char *s, size_t len, int require_utc, int64_t *unix_ms)
{
    unsigned y, mo, d, h, mi, sec, ms = 0, oh = 0, om = 0;
    size_t i = 19;
    int sign = 0;
    int64_t t;

    if (len < 20 || len >= PROTO_TIME_MAX_LEN)
        return FS_EINVAL;
    if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || s[10] != 'T' || digits(s + 11, 2, &h) || s[13] != ':' ||
        digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
        return FS_EINVAL;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        sec > 59)
        return FS_EINVAL;
    if (s[i] == '.') {
        size_t nd = 0;

        i++;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (nd < 3)
                ms = ms * 10 + (unsigned)(s[i] - '0');
            nd++;
            i++;
        }
        if (nd == 0 || nd > 9)
            return FS_EINVAL;
        while (nd < 3) {
            ms *= 10;
            nd++;
        }
    }
    if (i >= len)
        return FS_EINVAL;
    if (s[i] == 'Z') {
        if (i + 1 != len)
            return FS_EINVAL;
    } else if (s[i] == '+' || s[i] == '-') {
        if (require_utc || len - i != 6 || digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return FS_EINVAL;
        sign = s[i] == '+' ? 1 : -1;
    } else {
        return FS_EINVAL;
    }
    t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    t -= sign * (int64_t)(oh * 3600 + om * 60);
    *unix_ms = t * 1000 + ms;
    return FS_OK;
}

static void
uuid7_format(int64_t unix_ms, int counter, char out[PROTO_UUID_LEN + 1])
{
    unsigned char b[16];
    uint64_t ms = (uint64_t)unix_ms;
    char hex[33];

    randombytes_buf(b + 6, 10);
    if (counter >= 0) {
        b[6] = (unsigned char)(counter >> 8);
        b[7] = (unsigned char)counter;
    }
    b[0] = (unsigned char)(ms >> 40);
    b[1] = (unsigned char)(ms >> 32);
    b[2] = (unsigned char)(ms >> 24);
    b[3] = (unsigned char)(ms >> 16);
    b[4] = (unsigned char)(ms >> 8);
    b[5] = (unsigned char)ms;
    b[6] = (unsigned char)(0x70 | (b[6] & 0x0f));
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3f));
    proto_hex_encode(b, 16, hex);
    snprintf(out, PROTO_UUID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
             hex + 20);
}

void
proto_uuid7_new(int64_t unix_ms, char out[PROTO_UUID_LEN + 1])
{
    uuid7_format(unix_ms, -1, out);
}

void
proto_uuid7_next(struct proto_uuid7_gen *g, int64_t unix_ms, char out[PROTO_UUID_LEN + 1])
{
    if (unix_ms > g->last_ms) {
        /* A fresh millisecond: start the counter low, leaving room to count. */
        g->last_ms = unix_ms;
        g->counter = randombytes_uniform(0x400);
    } else if (++g->counter > 0xfff) {
        g->last_ms++;
        g->counter = 0;
    }
    uuid7_format(g->last_ms, (int)g->counter, out);
}

enum fs_rc
proto_uuid_check(const char *s, size_t len)
{
    size_t i;

    if (len != PROTO_UUID_LEN)
        return FS_EINVAL;
    for (i = 0; i < len; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return FS_EINVAL;
        } else if (hexval(s[i]) < 0) {
            return FS_EINVAL;
        }
    }
    if (s[14] != '7')
        return FS_EINVAL;
    if (s[19] != '8' && s[19] != '9' && s[19] != 'a' && s[19] != 'b')
        return FS_EINVAL;
    return FS_OK;
}

/* Significant digits of a %g rendering ("0.00123" has 3, "1.5e+20" has 2). */
static int
significant_digits(const char *s)
{
    int n = 0, started = 0;

    for (; *s && *s != 'e' && *s != 'E'; s++) {
        if (*s < '0' || *s > '9')
            continue;
        if (*s != '0')
            started = 1;
        if (started)
            n++;
    }
    return n ? n : 1;
}

void
proto_double_shortest(double v, char out[32])
{
    char whole[32], shorter[330]; /* as long as %g could ever be, to the compiler */
    int prec, k;

    /* Negative zero is written "0", as RFC 8785 does: "-0" would read back
     * as the integer 0 and encode differently the second time. */
    if (v == 0) {
        memcpy(out, "0", 2);
        return;
    }

    /* Fewer digits never read back when more do not (the property is
     * monotonic), so: 15 digits first. If they read back, %g has already
     * dropped the trailing zeros and the shortest has k <= 15 digits. Among
     * normal doubles it is that very string: any decimal of at most 15
     * digits survives the trip to the nearest double and back (DBL_DIG), so
     * a shorter one that read back to v would print as this one — the same
     * digits. Only at the ends of the range, where doubles thin out into
     * subnormals or toward infinity, can a shorter one read back too: there,
     * count down. Otherwise 16, then 17. Two conversions for a coordinate. */
    snprintf(out, 32, "%.15g", v);
    if (strtod(out, NULL) == v) {
        k = significant_digits(out);
        for (prec = k - 1; prec >= 1 && (fabs(v) < 1e-300 || fabs(v) > 1e300); prec--) {
            snprintf(shorter, sizeof shorter, "%.*g", prec, v);
            if (strtod(shorter, NULL) != v)
                break;
            memcpy(out, shorter, strlen(shorter) + 1); /* shorter than out's 32 */
        }
    } else {
        for (prec = 16; prec <= 17; prec++) {
            snprintf(out, 32, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
    /* %g writes 120 as "1.2e+02". A positive exponent means v is a whole
     * number, which "%.0f" writes exactly; keep it when it is not longer. */
    if (strstr(out, "e+") && v > -1e17 && v < 1e17) {
        snprintf(whole, sizeof whole, "%.0f", v);
        if (strlen(whole) <= strlen(out))
            memcpy(out, whole, strlen(whole) + 1);
    }
}
