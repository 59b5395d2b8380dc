/* Enrollment: the token's fingerprint is checked against the server's key
 * before the token leaves the laptop; the key is then pinned whole. */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_auth.h"
#include "proto_json.h"
#include "sync.h"

static long
setting_long(struct store *s, const char *key, long def)
{
    char *v = NULL;
    long n = def;
    struct fs_err e;

    if (store_setting_get(s, key, &v, &e) == FS_OK && v) {
        char *end;
        long x = strtol(v, &end, 10);

        if (*end == 0 && x > 0)
            n = x;
    }
    free(v);
    return n;
}

static void
http_opts(struct store *s, struct sync_http_opts *o)
{
    memset(o, 0, sizeof *o);
    o->connect_timeout_ms = setting_long(s, "connect_timeout_ms", 10000);
    o->request_timeout_ms = setting_long(s, "request_timeout_ms", 600000);
}

enum fs_rc
sync_http_for_store(struct store *s, struct sync_http **out, struct fs_err *err)
{
    char *server = NULL, *key = NULL, *cacert = NULL, *offset = NULL;
    unsigned char pk[PROTO_KEY_BYTES];
    struct sync_http_opts o;
    enum fs_rc rc;

    if ((rc = store_setting_get(s, "server", &server, err)) ||
        (rc = store_setting_get(s, "server_key", &key, err)) ||
        (rc = store_setting_get(s, "cacert", &cacert, err)) ||
        (rc = store_setting_get(s, "clock_offset_s", &offset, err)))
        goto out;
    if (!server || !key) {
        rc = fs_err_set(err, FS_EAUTH,
                        "this device is not enrolled; run 'fieldsync enroll URL --token-file F'");
        goto out;
    }
    if (proto_hex_decode(key, strlen(key), pk, PROTO_KEY_BYTES)) {
        rc = fs_err_set(err, FS_ECORRUPT, "the pinned server key is malformed; enroll again");
        goto out;
    }
    http_opts(s, &o);
    rc = sync_http_new(server, cacert, &o, out, err);
    if (rc)
        goto out;
    sync_http_pin(*out, pk);
    sync_http_signer(*out, store_feed(s), store_secret(s));
    if (offset)
        sync_http_clock_offset(*out, strtoll(offset, NULL, 10));
out:
    free(server);
    free(key);
    free(cacert);
    free(offset);
    return rc;
}

/* GET /v1/health: the server's key. */
static enum fs_rc
server_key(struct sync_http *h, unsigned char pk[PROTO_KEY_BYTES], struct fs_err *err)
{
    struct sync_resp r;
    json_t *j = NULL;
    enum fs_rc rc;

    rc = sync_http_request(h, "GET", "/v1/health", NULL, 0, 0, &r, err);
    if (rc)
        return rc;
    if (r.status != 200)
        return fs_err_set(err, r.status >= 500 ? FS_EAGAIN : FS_EPROTO,
                          "the server's health check answered %ld", r.status);
    if (proto_json_parse(r.body, r.len, &j, NULL) ||
        proto_json_hex(json_object_get(j, "server_key"), pk, PROTO_KEY_BYTES)) {
        json_decref(j);
        return fs_err_set(err, FS_EPROTO, "the server's health answer has no valid key");
    }
    json_decref(j);
    return FS_OK;
}

enum fs_rc
sync_enroll(struct store *s, const char *url, const char *token, const char *cacert,
            struct fs_err *err)
{
    struct sync_http *h = NULL;
    struct sync_http_opts o;
    struct sync_resp r;
    struct proto_enroll_req er;
    struct fs_buf body;
    unsigned char pk[PROTO_KEY_BYTES], fpk[PROTO_KEY_BYTES];
    char fp[PROTO_TOKEN_FP_HEX + 1], theirs[PROTO_TOKEN_FP_HEX + 1], pk_hex[65];
    char *name = NULL, *pinned = NULL;
    json_t *in = NULL;
    const char *project, *role;
    enum fs_rc rc;

    fs_buf_init(&body, 8192);
    memset(&er, 0, sizeof er);
    if (proto_token_parse(token, strlen(token), fp)) {
        rc = fs_err_set(err, FS_EUSAGE, "that is not a fieldsync enrollment token");
        goto out;
    }
    http_opts(s, &o);
    rc = sync_http_new(url, cacert, &o, &h, err);
    if (rc)
        goto out;
    rc = server_key(h, pk, err);
    if (rc)
        goto out;
    proto_key_fingerprint(pk, theirs);
    if (sodium_memcmp(fp, theirs, PROTO_TOKEN_FP_HEX) != 0) {
        rc = fs_err_set(err, FS_EPROTO,
                        "the server at %s is not the one this token was made for (key %s, token "
                        "expects %s); the token was not sent",
                        url, theirs, fp);
        goto out;
    }
    proto_hex_encode(pk, PROTO_KEY_BYTES, pk_hex);
    rc = store_setting_get(s, "server_key", &pinned, err);
    if (rc)
        goto out;
    if (pinned && strcmp(pinned, pk_hex) != 0) {
        rc = fs_err_set(err, FS_EPROTO,
                        "this device is enrolled with another server (key %.16s); if the "
                        "project's server moved, use 'fieldsync config set server URL'",
                        pinned);
        goto out;
    }
    rc = store_setting_get(s, "name", &name, err);
    if (rc)
        goto out;
    snprintf(er.token, sizeof er.token, "%s", token);
    memcpy(er.feed, store_feed(s), PROTO_KEY_BYTES);
    snprintf(er.name, sizeof er.name, "%s", name ? name : "device");
    proto_enroll_sign(er.token, strlen(er.token), er.name, er.feed, store_secret(s), er.sig);
    rc = proto_enroll_req_format(&er, &body);
    if (rc) {
        rc = fs_err_set(err, rc, "out of memory");
        goto out;
    }
    rc = sync_http_request(h, "POST", "/v1/enroll", body.data, body.len, 0, &r, err);
    if (rc)
        goto out;
    if (r.status != 200) {
        char code[64], msg[200];

        sync_error_text(&r, code, sizeof code, msg, sizeof msg);
        rc = fs_err_set(err,
                        r.status == 403 || r.status == 409   ? FS_EAUTH
                        : r.status >= 500 || r.status == 429 ? FS_EAGAIN
                                                             : FS_EPROTO,
                        "enrollment refused: %s", msg);
        goto out;
    }
    rc = proto_signed_open(PROTO_TAG_ENROLLED, r.body, r.len, pk, (void **)&in, err);
    if (rc)
        goto out;
    project = json_string_value(json_object_get(in, "project"));
    role = json_string_value(json_object_get(in, "role"));
    if (proto_json_hex(json_object_get(in, "feed"), fpk, PROTO_KEY_BYTES) ||
        memcmp(fpk, store_feed(s), PROTO_KEY_BYTES) != 0 || !project || !role ||
        (strcmp(role, "researcher") != 0 && strcmp(role, "coordinator") != 0)) {
        rc =
            fs_err_set(err, FS_EPROTO, "the server's enrollment answer does not match this device");
        goto out;
    }
    if ((rc = store_begin(s, err)))
        goto out;
    if ((rc = store_setting_set(s, "server", url, err)) ||
        (rc = store_setting_set(s, "server_key", pk_hex, err)) ||
        (rc = store_setting_set(s, "project", project, err)) ||
        (rc = store_setting_set(s, "role", role, err)) ||
        (rc = store_self_role_set(s, role, err)) ||
        (cacert && (rc = store_setting_set(s, "cacert", cacert, err)))) {
        store_rollback(s);
        goto out;
    }
    rc = store_commit(s, err);
    if (!rc)
        fs_err_set(err, FS_OK, "enrolled in project %s as %s (server key %.16s)", project, role,
                   pk_hex);
out:
    sodium_memzero(&er, sizeof er);
    json_decref(in);
    if (body.data)
        sodium_memzero(body.data, body.alloc);
    fs_buf_release(&body);
    free(name);
    free(pinned);
    sync_http_free(h);
    return rc;
}
