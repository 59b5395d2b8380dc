/* Request signatures, enrollment tokens and server-signed answers. */
#include "proto_auth.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_content.h"
#include "proto_json.h"

/* Reads "name=value" with value up to the next ',' (or the end). */
static int
param(const char **p, const char *end, const char **name, size_t *nlen, const char **val,
      size_t *vlen)
{
    const char *s = *p, *eq, *comma;

    while (s < end && (*s == ' ' || *s == ','))
        s++;
    if (s >= end)
        return 0;
    eq = memchr(s, '=', (size_t)(end - s));
    if (!eq)
        return -1;
    comma = memchr(eq, ',', (size_t)(end - eq));
    if (!comma)
        comma = end;
    *name = s;
    *nlen = (size_t)(eq - s);
    *val = eq + 1;
    *vlen = (size_t)(comma - eq - 1);
    while (*vlen && (*val)[*vlen - 1] == ' ')
        (*vlen)--;
    *p = comma;
    return 1;
}

enum fs_rc
proto_req_auth_parse(const char *h, size_t len, struct proto_req_auth *a)
{
    const char *p, *end = h + len, *name, *val;
    size_t nlen, vlen;
    unsigned seen = 0;
    int r;

    memset(a, 0, sizeof *a);
    if (len > PROTO_AUTH_HEADER_MAX || len < 10 || memcmp(h, "Fieldsync ", 10) != 0)
        return FS_EINVAL;
    p = h + 10;
    while ((r = param(&p, end, &name, &nlen, &val, &vlen)) == 1) {
        unsigned bit;

        if (nlen == 4 && memcmp(name, "feed", 4) == 0) {
            bit = 1;
            if (proto_hex_decode(val, vlen, a->feed, PROTO_KEY_BYTES))
                return FS_EINVAL;
        } else if (nlen == 2 && memcmp(name, "ts", 2) == 0) {
            int64_t ts = 0;
            size_t i;

            bit = 2;
            if (vlen == 0 || vlen > 12)
                return FS_EINVAL;
            for (i = 0; i < vlen; i++) {
                if (val[i] < '0' || val[i] > '9')
                    return FS_EINVAL;
                ts = ts * 10 + (val[i] - '0');
            }
            a->ts = ts;
        } else if (nlen == 5 && memcmp(name, "nonce", 5) == 0) {
            bit = 4;
            if (proto_hex_decode(val, vlen, a->nonce, PROTO_NONCE_BYTES))
                return FS_EINVAL;
        } else if (nlen == 3 && memcmp(name, "sig", 3) == 0) {
            bit = 8;
            if (proto_hex_decode(val, vlen, a->sig, PROTO_SIG_BYTES))
                return FS_EINVAL;
        } else {
            return FS_EINVAL;
        }
        if (seen & bit)
            return FS_EINVAL;
        seen |= bit;
    }
    return r == 0 && seen == 15 ? FS_OK : FS_EINVAL;
}

void
proto_req_auth_format(const struct proto_req_auth *a, char out[PROTO_AUTH_HEADER_MAX])
{
    char feed[2 * PROTO_KEY_BYTES + 1], nonce[2 * PROTO_NONCE_BYTES + 1],
        sig[2 * PROTO_SIG_BYTES + 1];

    proto_hex_encode(a->feed, PROTO_KEY_BYTES, feed);
    proto_hex_encode(a->nonce, PROTO_NONCE_BYTES, nonce);
    proto_hex_encode(a->sig, PROTO_SIG_BYTES, sig);
    snprintf(out, PROTO_AUTH_HEADER_MAX, "Fieldsync feed=%s, ts=%" PRId64 ", nonce=%s, sig=%s",
             feed, a->ts, nonce, sig);
}

/* The signed text of a request (without the tag); line is its fifth line:
 * the body's hash in hex, or "offset:length" for a blob chunk. Caller frees. */
static char *
req_text(const struct proto_req_auth *a, const char *method, const char *target, const char *line,
         const unsigned char server_pk[PROTO_KEY_BYTES], size_t *len)
{
    char nonce[2 * PROTO_NONCE_BYTES + 1], spk[2 * PROTO_KEY_BYTES + 1];
    char *t = NULL;
    int n;

    proto_hex_encode(a->nonce, PROTO_NONCE_BYTES, nonce);
    proto_hex_encode(server_pk, PROTO_KEY_BYTES, spk);
    n = asprintf(&t, "%s\n%s\n%" PRId64 "\n%s\n%s\n%s", method, target, a->ts, nonce, line, spk);
    if (n < 0)
        return NULL;
    *len = (size_t)n;
    return t;
}

static void
body_line(const void *body, size_t body_len, char out[2 * PROTO_HASH_BYTES + 1])
{
    unsigned char bh[PROTO_HASH_BYTES];

    proto_hash(body_len ? body : "", body_len, bh);
    proto_hex_encode(bh, PROTO_HASH_BYTES, out);
}

static void
sign_line(struct proto_req_auth *a, const char *method, const char *target, const char *line,
          const unsigned char server_pk[PROTO_KEY_BYTES],
          const unsigned char sk[PROTO_SECRET_BYTES])
{
    size_t len;
    char *t = req_text(a, method, target, line, server_pk, &len);

    if (!t)
        FS_BUG("out of memory while signing a request");
    proto_sign_tagged(PROTO_TAG_REQ, t, len, sk, a->sig);
    free(t);
}

static enum fs_rc
verify_line(const struct proto_req_auth *a, const char *method, const char *target,
            const char *line, const unsigned char server_pk[PROTO_KEY_BYTES])
{
    size_t len;
    char *t = req_text(a, method, target, line, server_pk, &len);
    enum fs_rc rc;

    if (!t)
        return FS_ENOMEM;
    rc = proto_verify_tagged(PROTO_TAG_REQ, t, len, a->sig, a->feed) ? FS_EAUTH : FS_OK;
    free(t);
    return rc;
}

void
proto_req_sign(struct proto_req_auth *a, const char *method, const char *target, const void *body,
               size_t body_len, const unsigned char server_pk[PROTO_KEY_BYTES],
               const unsigned char sk[PROTO_SECRET_BYTES])
{
    char line[2 * PROTO_HASH_BYTES + 1];

    body_line(body, body_len, line);
    sign_line(a, method, target, line, server_pk, sk);
}

enum fs_rc
proto_req_verify(const struct proto_req_auth *a, const char *method, const char *target,
                 const void *body, size_t body_len, const unsigned char server_pk[PROTO_KEY_BYTES])
{
    char line[2 * PROTO_HASH_BYTES + 1];

    body_line(body, body_len, line);
    return verify_line(a, method, target, line, server_pk);
}

void
proto_req_sign_chunk(struct proto_req_auth *a, const char *method, const char *target,
                     uint64_t offset, uint64_t length,
                     const unsigned char server_pk[PROTO_KEY_BYTES],
                     const unsigned char sk[PROTO_SECRET_BYTES])
{
    char line[48];

    snprintf(line, sizeof line, "%" PRIu64 ":%" PRIu64, offset, length);
    sign_line(a, method, target, line, server_pk, sk);
}

enum fs_rc
proto_req_verify_chunk(const struct proto_req_auth *a, const char *method, const char *target,
                       uint64_t offset, uint64_t length,
                       const unsigned char server_pk[PROTO_KEY_BYTES])
{
    char line[48];

    snprintf(line, sizeof line, "%" PRIu64 ":%" PRIu64, offset, length);
    return verify_line(a, method, target, line, server_pk);
}

void
proto_key_fingerprint(const unsigned char pk[PROTO_KEY_BYTES], char fp[PROTO_TOKEN_FP_HEX + 1])
{
    char hex[2 * PROTO_KEY_BYTES + 1];

    proto_hex_encode(pk, PROTO_KEY_BYTES, hex);
    memcpy(fp, hex, PROTO_TOKEN_FP_HEX);
    fp[PROTO_TOKEN_FP_HEX] = 0;
}

void
proto_token_new(const unsigned char server_pk[PROTO_KEY_BYTES], char out[PROTO_TOKEN_LEN + 1])
{
    unsigned char secret[PROTO_TOKEN_SECRET_BYTES];
    char fp[PROTO_TOKEN_FP_HEX + 1], hex[2 * PROTO_TOKEN_SECRET_BYTES + 1];

    randombytes_buf(secret, sizeof secret);
    proto_key_fingerprint(server_pk, fp);
    proto_hex_encode(secret, sizeof secret, hex);
    snprintf(out, PROTO_TOKEN_LEN + 1, "fs1_%s_%s", fp, hex);
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(hex, sizeof hex);
}

enum fs_rc
proto_token_parse(const char *t, size_t len, char fp[PROTO_TOKEN_FP_HEX + 1])
{
    size_t i;

    if (len != PROTO_TOKEN_LEN || memcmp(t, "fs1_", 4) != 0 || t[4 + PROTO_TOKEN_FP_HEX] != '_')
        return FS_EINVAL;
    for (i = 4; i < len; i++) {
        char c = t[i];

        if (i == 4 + PROTO_TOKEN_FP_HEX)
            continue;
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return FS_EINVAL;
    }
    memcpy(fp, t + 4, PROTO_TOKEN_FP_HEX);
    fp[PROTO_TOKEN_FP_HEX] = 0;
    return FS_OK;
}

void
proto_token_hash(const char *token, size_t len, unsigned char out[PROTO_HASH_BYTES])
{
    proto_hash(token, len, out);
}

static unsigned char *
enroll_msg(const unsigned char th[PROTO_HASH_BYTES], const char *name,
           const unsigned char feed_pk[PROTO_KEY_BYTES], size_t *len)
{
    size_t nl = strlen(name);
    unsigned char *m = malloc(PROTO_HASH_BYTES + PROTO_KEY_BYTES + nl + 1);

    if (!m)
        return NULL;
    memcpy(m, th, PROTO_HASH_BYTES);
    memcpy(m + PROTO_HASH_BYTES, feed_pk, PROTO_KEY_BYTES);
    memcpy(m + PROTO_HASH_BYTES + PROTO_KEY_BYTES, name, nl);
    *len = PROTO_HASH_BYTES + PROTO_KEY_BYTES + nl;
    return m;
}

void
proto_enroll_sign(const char *token, size_t token_len, const char *name,
                  const unsigned char feed_pk[PROTO_KEY_BYTES],
                  const unsigned char sk[PROTO_SECRET_BYTES], unsigned char sig[PROTO_SIG_BYTES])
{
    unsigned char th[PROTO_HASH_BYTES];
    size_t len;
    unsigned char *m;

    proto_token_hash(token, token_len, th);
    m = enroll_msg(th, name, feed_pk, &len);
    if (!m)
        FS_BUG("out of memory while signing an enrollment");
    proto_sign_tagged(PROTO_TAG_ENROLL, m, len, sk, sig);
    free(m);
}

enum fs_rc
proto_enroll_verify(const unsigned char token_hash[PROTO_HASH_BYTES], const char *name,
                    const unsigned char feed_pk[PROTO_KEY_BYTES],
                    const unsigned char sig[PROTO_SIG_BYTES])
{
    size_t len;
    unsigned char *m = enroll_msg(token_hash, name, feed_pk, &len);
    enum fs_rc rc;

    if (!m)
        return FS_ENOMEM;
    rc = proto_verify_tagged(PROTO_TAG_ENROLL, m, len, sig, feed_pk) ? FS_EAUTH : FS_OK;
    free(m);
    return rc;
}

enum fs_rc
proto_signed_wrap(const char *tag, const char *json, size_t len,
                  const unsigned char sk[PROTO_SECRET_BYTES], struct fs_buf *out)
{
    unsigned char sig[PROTO_SIG_BYTES];
    enum fs_rc rc;

    proto_sign_tagged(tag, json, len, sk, sig);
    rc = fs_buf_adds(out, "{\"signed\":");
    if (!rc)
        rc = proto_jw_str(out, json, len);
    if (!rc)
        rc = fs_buf_adds(out, ",\"sig\":");
    if (!rc)
        rc = proto_jw_hex(out, sig, sizeof sig);
    if (!rc)
        rc = fs_buf_addc(out, '}');
    return rc;
}

enum fs_rc
proto_signed_open(const char *tag, const void *bytes, size_t len,
                  const unsigned char pk[PROTO_KEY_BYTES], void **inner, struct fs_err *err)
{
    static const char *const keys[] = {"signed", "sig", NULL};
    unsigned char sig[PROTO_SIG_BYTES];
    json_t *outer = NULL, *in = NULL, *s;
    enum fs_rc rc;

    *inner = NULL;
    rc = proto_json_parse(bytes, len, &outer, err);
    if (rc)
        return fs_err_set(err, FS_EPROTO, "the server's answer is not a signed object");
    rc = FS_EPROTO;
    if (proto_json_keys(outer, keys, keys, "signed answer", err))
        goto out;
    s = json_object_get(outer, "signed");
    if (!json_is_string(s) || proto_json_hex(json_object_get(outer, "sig"), sig, sizeof sig)) {
        fs_err_set(err, rc, "the server's answer is not a signed object");
        goto out;
    }
    if (proto_verify_tagged(tag, json_string_value(s), json_string_length(s), sig, pk)) {
        fs_err_set(err, rc, "the server's answer does not carry the pinned server key's signature");
        goto out;
    }
    if (proto_json_parse(json_string_value(s), json_string_length(s), &in, err)) {
        fs_err_set(err, rc, "the server's signed answer is malformed");
        goto out;
    }
    *inner = in;
    rc = FS_OK;
out:
    json_decref(outer);
    return rc;
}

int
proto_name_valid(const char *s)
{
    size_t i, n = strlen(s);

    if (n == 0 || n > PROTO_NAME_MAX_BYTES || proto_utf8_check(s, n))
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

enum fs_rc
proto_enroll_req_parse(const void *bytes, size_t len, struct proto_enroll_req *r,
                       struct fs_err *err)
{
    static const char *const keys[] = {"token", "feed", "name", "sig", NULL};
    char fp[PROTO_TOKEN_FP_HEX + 1];
    json_t *root = NULL, *v;
    enum fs_rc rc;

    memset(r, 0, sizeof *r);
    if (len > 4096)
        return fs_err_set(err, FS_ETOOBIG, "enrollment request is too large");
    rc = proto_json_parse(bytes, len, &root, err);
    if (rc)
        return rc;
    rc = FS_EINVAL;
    if (proto_json_keys(root, keys, keys, "enrollment request", err))
        goto out;
    v = json_object_get(root, "token");
    if (!json_is_string(v) || proto_token_parse(json_string_value(v), json_string_length(v), fp)) {
        fs_err_set(err, rc, "the token is malformed");
        goto out;
    }
    memcpy(r->token, json_string_value(v), PROTO_TOKEN_LEN + 1);
    if (proto_json_hex(json_object_get(root, "feed"), r->feed, PROTO_KEY_BYTES) ||
        proto_json_hex(json_object_get(root, "sig"), r->sig, PROTO_SIG_BYTES)) {
        fs_err_set(err, rc, "feed or sig is not lowercase hex of the right length");
        goto out;
    }
    v = json_object_get(root, "name");
    if (!json_is_string(v) || json_string_length(v) > PROTO_NAME_MAX_BYTES ||
        !proto_name_valid(json_string_value(v))) {
        fs_err_set(err, rc, "the device name must be 1-512 bytes of text");
        goto out;
    }
    memcpy(r->name, json_string_value(v), json_string_length(v) + 1);
    rc = FS_OK;
out:
    json_decref(root);
    return rc;
}

enum fs_rc
proto_enroll_req_format(const struct proto_enroll_req *r, struct fs_buf *out)
{
    enum fs_rc rc = fs_buf_adds(out, "{\"token\":");

    if (!rc)
        rc = proto_jw_str(out, r->token, strlen(r->token));
    if (!rc)
        rc = fs_buf_adds(out, ",\"feed\":");
    if (!rc)
        rc = proto_jw_hex(out, r->feed, PROTO_KEY_BYTES);
    if (!rc)
        rc = fs_buf_adds(out, ",\"name\":");
    if (!rc)
        rc = proto_jw_str(out, r->name, strlen(r->name));
    if (!rc)
        rc = fs_buf_adds(out, ",\"sig\":");
    if (!rc)
        rc = proto_jw_hex(out, r->sig, PROTO_SIG_BYTES);
    if (!rc)
        rc = fs_buf_addc(out, '}');
    return rc;
}

/* ---- heartbeats ------------------------------------------------------------------- */

static void
heartbeat_payload(const struct proto_heartbeat *hb, unsigned char p[PROTO_HEARTBEAT_PAYLOAD])
{
    p[0] = PROTO_HEARTBEAT_VERSION;
    memcpy(p + 1, hb->feed, PROTO_KEY_BYTES);
    fs_put_u64be(p + 1 + PROTO_KEY_BYTES, hb->seq);
    if (hb->seq)
        memcpy(p + 9 + PROTO_KEY_BYTES, hb->head, PROTO_HASH_BYTES);
    else
        memset(p + 9 + PROTO_KEY_BYTES, 0, PROTO_HASH_BYTES);
    fs_put_u64be(p + 9 + PROTO_KEY_BYTES + PROTO_HASH_BYTES, (uint64_t)hb->at_ms);
}

void
proto_heartbeat_line(const struct proto_heartbeat *hb, const unsigned char sk[PROTO_SECRET_BYTES],
                     char out[PROTO_HEARTBEAT_LINE_LEN + 1])
{
    unsigned char raw[PROTO_HEARTBEAT_BYTES];

    heartbeat_payload(hb, raw);
    proto_sign_tagged(PROTO_TAG_HEARTBEAT, raw, PROTO_HEARTBEAT_PAYLOAD, sk,
                      raw + PROTO_HEARTBEAT_PAYLOAD);
    sodium_bin2base64(out, PROTO_HEARTBEAT_LINE_LEN + 1, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

enum fs_rc
proto_heartbeat_parse(const char *line, size_t len, struct proto_heartbeat *out, struct fs_err *err)
{
    unsigned char raw[PROTO_HEARTBEAT_BYTES], zero[PROTO_HASH_BYTES] = {0};
    char again[PROTO_HEARTBEAT_LINE_LEN + 1];
    size_t got = 0;
    const char *end = NULL;
    uint64_t at;

    memset(out, 0, sizeof *out);
    if (len != PROTO_HEARTBEAT_LINE_LEN)
        return fs_err_set(err, FS_EINVAL, "a heartbeat line is %d characters, not %zu",
                          PROTO_HEARTBEAT_LINE_LEN, len);
    if (sodium_base642bin(raw, sizeof raw, line, len, NULL, &got, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        got != sizeof raw || end != line + len)
        return fs_err_set(err, FS_EINVAL, "the heartbeat line is not base64url");
    /* One text per heartbeat: the decoded bytes must encode back to the line. */
    sodium_bin2base64(again, sizeof again, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (memcmp(again, line, len) != 0)
        return fs_err_set(err, FS_EINVAL, "the heartbeat line is not in canonical base64url");
    if (raw[0] != PROTO_HEARTBEAT_VERSION)
        return fs_err_set(err, FS_EINVAL, "unknown heartbeat version %u", raw[0]);
    memcpy(out->feed, raw + 1, PROTO_KEY_BYTES);
    out->seq = fs_get_u64be(raw + 1 + PROTO_KEY_BYTES);
    memcpy(out->head, raw + 9 + PROTO_KEY_BYTES, PROTO_HASH_BYTES);
    at = fs_get_u64be(raw + 9 + PROTO_KEY_BYTES + PROTO_HASH_BYTES);
    if (out->seq > PROTO_MAX_SAFE_INT)
        return fs_err_set(err, FS_EINVAL, "the heartbeat's seq is out of range");
    if ((out->seq == 0) != (memcmp(out->head, zero, sizeof zero) == 0))
        return fs_err_set(err, FS_EINVAL, "the heartbeat's head does not fit its seq");
    if (at > (uint64_t)INT64_MAX)
        return fs_err_set(err, FS_EINVAL, "the heartbeat's time is out of range");
    out->at_ms = (int64_t)at;
    switch (proto_verify_tagged(PROTO_TAG_HEARTBEAT, raw, PROTO_HEARTBEAT_PAYLOAD,
                                raw + PROTO_HEARTBEAT_PAYLOAD, out->feed)) {
    case FS_OK:
        return FS_OK;
    case FS_ENOMEM:
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    default:
        return fs_err_set(err, FS_EPROTO, "the heartbeat's signature does not verify");
    }
}
