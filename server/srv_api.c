/* The HTTP API's handlers (DESIGN §5): health, enroll, head and push. Requests
 * arrive complete and bounded (srv_http.c); every refusal is counted and
 * logged with its reason, never with a token, key or content. */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_auth.h"
#include "proto_batch.h"
#include "proto_entry.h"
#include "proto_json.h"
#include "srv.h"

struct error_kind {
    const char *code;
    enum srv_refusal ref;
};

static const struct error_kind error_kinds[] = {
    {"malformed", SRV_REF_MALFORMED},
    {"too_big", SRV_REF_TOO_BIG},
    {"unknown_feed", SRV_REF_UNKNOWN_FEED},
    {"revoked", SRV_REF_REVOKED},
    {"bad_signature", SRV_REF_BAD_SIGNATURE},
    {"gap", SRV_REF_GAP},
    {"fork", SRV_REF_FORK},
    {"unauthorized", SRV_REF_AUTH},
    {"clock", SRV_REF_CLOCK},
    {"replay", SRV_REF_REPLAY},
    {"encoding", SRV_REF_ENCODING},
    {"forbidden", SRV_REF_FORBIDDEN},
    {"unavailable", SRV_REF_UNAVAILABLE},
    {"token_refused", SRV_REF_AUTH},
    {"wrong_server", SRV_REF_AUTH},
};

void
srv_resp_error(struct srv *s, struct srv_resp *rs, unsigned status, const char *code,
               const char *message)
{
    size_t i;

    for (i = 0; i < FS_ARRAY_LEN(error_kinds); i++)
        if (strcmp(error_kinds[i].code, code) == 0)
            atomic_fetch_add(&s->m.refused[error_kinds[i].ref], 1);
    FS_LOG(&s->log, FS_LOG_INFO, "refused %u %s: %s", status, code, message);
    rs->status = status;
    fs_buf_reset(&rs->body);
    if (fs_buf_adds(&rs->body, "{\"error\":") || proto_jw_str(&rs->body, code, strlen(code)) ||
        fs_buf_adds(&rs->body, ",\"message\":") ||
        proto_jw_str(&rs->body, message, strlen(message)) || fs_buf_adds(&rs->body, "}")) {
        fs_buf_reset(&rs->body);
    }
    rs->content_type = "application/json";
}

/* An error with one more integer member, e.g. "need" or "server_time". */
static void
error_with(struct srv *s, struct srv_resp *rs, unsigned status, const char *code,
           const char *message, const char *key, int64_t value)
{
    srv_resp_error(s, rs, status, code, message);
    if (rs->body.len && rs->body.data[rs->body.len - 1] == '}') {
        rs->body.len--;
        if (fs_buf_printf(&rs->body, ",\"%s\":%" PRId64 "}", key, value))
            fs_buf_reset(&rs->body);
    }
}

static void
unavailable(struct srv *s, struct srv_resp *rs, const struct fs_err *err)
{
    srv_resp_error(s, rs, 503, "unavailable", "the server cannot store right now; retry later");
    FS_LOG(&s->log, FS_LOG_WARNING, "storage: %s", err->msg);
    snprintf(rs->retry_after, sizeof rs->retry_after, "%d", 30);
}

/* Maps a storage failure to an answer: temporary ones are 503 with
 * Retry-After, the rest 500. */
static void
storage_error(struct srv *s, struct srv_resp *rs, enum fs_rc rc, const struct fs_err *err)
{
    if (rc == FS_EAGAIN || rc == FS_EIO || rc == FS_ENOMEM) {
        unavailable(s, rs, err);
        return;
    }
    FS_LOG(&s->log, FS_LOG_ERR, "storage: %s", err->msg);
    srv_resp_error(s, rs, 500, "internal", "the server failed; the request changed nothing");
}

static enum fs_rc
json_ok(struct srv_resp *rs)
{
    rs->status = 200;
    rs->content_type = "application/json";
    return FS_OK;
}

static void
health(struct srv *s, struct srv_resp *rs)
{
    enum fs_rc rc;

    json_ok(rs);
    rc = fs_buf_printf(&rs->body,
                       "{\"ok\":true,\"version\":\"%s\",\"server_key\":\"%s\",\"time\":%" PRId64
                       ",\"limits\":{\"batch_max_bytes\":%zu,\"batch_max_raw\":%u,"
                       "\"batch_max_count\":%u,\"entry_max_bytes\":%u,\"content_max_bytes\":%u,"
                       "\"request_deadline_ms\":%u,\"auth_window_s\":%d}}",
                       FS_VERSION, s->pk_hex, srv_now_ms() / 1000, s->cfg.max_batch,
                       PROTO_BATCH_MAX_RAW, PROTO_BATCH_MAX_COUNT, PROTO_ENTRY_MAX_BYTES,
                       PROTO_CONTENT_MAX_BYTES, s->cfg.deadline_ms, PROTO_AUTH_WINDOW_S);
    if (rc)
        srv_resp_error(s, rs, 500, "internal", "out of memory");
}

/* Appends the signed JSON of a feed's state (receipt or head). */
static enum fs_rc
signed_state(struct srv *s, const char *tag, const unsigned char feed[PROTO_KEY_BYTES],
             uint64_t have, const unsigned char *head, struct fs_buf *out)
{
    struct fs_buf j;
    char at[PROTO_TIME_MAX_LEN];
    enum fs_rc rc;

    fs_buf_init(&j, 1024);
    proto_time_format_ms(srv_now_ms(), at);
    rc = fs_buf_adds(&j, "{\"feed\":");
    if (!rc)
        rc = proto_jw_hex(&j, feed, PROTO_KEY_BYTES);
    if (!rc)
        rc = fs_buf_printf(&j, ",\"have_seq\":%" PRIu64 ",\"head\":", have);
    if (!rc)
        rc = head && have ? proto_jw_hex(&j, head, PROTO_HASH_BYTES) : fs_buf_adds(&j, "null");
    if (!rc)
        rc = fs_buf_printf(&j, ",\"at\":\"%s\"}", at);
    if (!rc)
        rc = proto_signed_wrap(tag, (const char *)j.data, j.len, s->sk, out);
    fs_buf_release(&j);
    return rc;
}

static void
receipt(struct srv *s, struct srv_db *db, struct srv_resp *rs,
        const unsigned char feed[PROTO_KEY_BYTES], uint64_t have, const unsigned char *head)
{
    struct fs_err err;

    json_ok(rs);
    if (signed_state(s, PROTO_TAG_RECEIPT, feed, have, head, &rs->body)) {
        srv_resp_error(s, rs, 500, "internal", "out of memory");
        return;
    }
    if (s->ops->feed_touch(db, feed, have, srv_now_ms(), &err))
        FS_LOG(&s->log, FS_LOG_WARNING, "cannot note the receipt: %s", err.msg);
}

/* Checks the Authorization of a signed request. On success *caller holds
 * the requesting feed. Otherwise the answer is filled and -1 returned. */
static int
authenticate(struct srv *s, struct srv_db *db, const struct srv_req *rq, struct srv_feed *caller,
             struct srv_resp *rs)
{
    struct proto_req_auth a;
    struct fs_err err;
    int64_t now = srv_now_ms() / 1000;
    enum fs_rc rc;

    if (!rq->authorization) {
        srv_resp_error(s, rs, 401, "unauthorized", "this request must be signed by a device");
        return -1;
    }
    if (proto_req_auth_parse(rq->authorization, strlen(rq->authorization), &a)) {
        srv_resp_error(s, rs, 401, "unauthorized", "the Authorization header is malformed");
        return -1;
    }
    if (a.ts < now - PROTO_AUTH_WINDOW_S || a.ts > now + PROTO_AUTH_WINDOW_S) {
        error_with(s, rs, 401, "clock", "the request's time is too far from the server's clock",
                   "server_time", now);
        return -1;
    }
    if (proto_req_verify(&a, rq->method, rq->target, rq->body, rq->body_len, s->pk)) {
        srv_resp_error(s, rs, 401, "unauthorized", "the request signature does not verify");
        return -1;
    }
    rc = s->ops->feed_get(db, a.feed, caller, &err);
    if (rc == FS_ENOTFOUND) {
        srv_resp_error(s, rs, 403, "unknown_feed", "this device is not enrolled");
        return -1;
    }
    if (rc) {
        storage_error(s, rs, rc, &err);
        return -1;
    }
    if (caller->revoked) {
        srv_resp_error(s, rs, 403, "revoked", "this device was revoked by the project");
        return -1;
    }
    rc = s->ops->nonce_use(db, a.feed, a.nonce, sizeof a.nonce, a.ts, now, &err);
    if (rc == FS_ECONFLICT) {
        srv_resp_error(s, rs, 401, "replay", "this request was already used");
        return -1;
    }
    if (rc) {
        storage_error(s, rs, rc, &err);
        return -1;
    }
    return 0;
}

static void
enroll(struct srv *s, struct srv_db *db, const struct srv_req *rq, struct srv_resp *rs)
{
    struct proto_enroll_req er;
    struct srv_feed f;
    struct fs_err err;
    unsigned char th[PROTO_HASH_BYTES];
    char fp[PROTO_TOKEN_FP_HEX + 1], mine[PROTO_TOKEN_FP_HEX + 1];
    struct fs_buf j;
    enum fs_rc rc;

    if (proto_enroll_req_parse(rq->body, rq->body_len, &er, &err)) {
        srv_resp_error(s, rs, 400, "malformed", err.msg);
        return;
    }
    if (proto_token_parse(er.token, strlen(er.token), fp) == FS_OK) {
        proto_key_fingerprint(s->pk, mine);
        if (strcmp(fp, mine) != 0) {
            sodium_memzero(&er, sizeof er);
            srv_resp_error(s, rs, 403, "wrong_server", "this token was made for another server");
            return;
        }
    }
    proto_token_hash(er.token, strlen(er.token), th);
    sodium_memzero(er.token, sizeof er.token);
    if (proto_enroll_verify(th, er.name, er.feed, er.sig)) {
        srv_resp_error(s, rs, 400, "bad_signature", "the enrollment proof does not verify");
        return;
    }
    rc = s->ops->token_redeem(db, th, er.feed, er.name, srv_now_ms(), &f, &err);
    if (rc == FS_EAUTH) {
        srv_resp_error(s, rs, 403, "token_refused", err.msg);
        return;
    }
    if (rc == FS_EEXIST) {
        srv_resp_error(s, rs, 409, "already_enrolled", err.msg);
        return;
    }
    if (rc) {
        storage_error(s, rs, rc, &err);
        return;
    }
    fs_buf_init(&j, 2048);
    rc = fs_buf_adds(&j, "{\"feed\":");
    if (!rc)
        rc = proto_jw_hex(&j, f.feed, PROTO_KEY_BYTES);
    if (!rc)
        rc = fs_buf_printf(&j, ",\"project\":\"%s\",\"role\":\"%s\",\"name\":", f.project,
                           srv_role_name(f.role));
    if (!rc)
        rc = proto_jw_str(&j, f.name, strlen(f.name));
    if (!rc)
        rc = fs_buf_printf(&j, ",\"server_key\":\"%s\"}", s->pk_hex);
    json_ok(rs);
    if (!rc)
        rc = proto_signed_wrap(PROTO_TAG_ENROLLED, (const char *)j.data, j.len, s->sk, &rs->body);
    fs_buf_release(&j);
    if (rc)
        srv_resp_error(s, rs, 500, "internal", "out of memory");
    else
        FS_LOG(&s->log, FS_LOG_INFO, "enrolled a %s in project %s", srv_role_name(f.role),
               f.project);
}

/* "/v1/feeds/<64 hex>/<rest>": the feed and the rest, or -1. */
static int
feed_path(const char *url, unsigned char feed[PROTO_KEY_BYTES], const char **rest)
{
    static const char pre[] = "/v1/feeds/";

    if (strncmp(url, pre, sizeof pre - 1) != 0)
        return -1;
    url += sizeof pre - 1;
    if (strlen(url) < 2 * PROTO_KEY_BYTES + 1 || url[2 * PROTO_KEY_BYTES] != '/' ||
        proto_hex_decode(url, 2 * PROTO_KEY_BYTES, feed, PROTO_KEY_BYTES))
        return -1;
    *rest = url + 2 * PROTO_KEY_BYTES + 1;
    return 0;
}

/* Whether caller may read feed f: itself, or a coordinator of its project. */
static int
may_read(const struct srv_feed *caller, const struct srv_feed *f)
{
    if (memcmp(caller->feed, f->feed, PROTO_KEY_BYTES) == 0)
        return 1;
    return caller->role == SRV_ROLE_COORDINATOR && strcmp(caller->project, f->project) == 0;
}

static void
head(struct srv *s, struct srv_db *db, const struct srv_req *rq,
     const unsigned char feed[PROTO_KEY_BYTES], struct srv_resp *rs)
{
    struct srv_feed caller, f;
    struct fs_err err;
    enum fs_rc rc;

    if (authenticate(s, db, rq, &caller, rs))
        return;
    rc = s->ops->feed_get(db, feed, &f, &err);
    if (rc == FS_ENOTFOUND || (rc == FS_OK && !may_read(&caller, &f))) {
        srv_resp_error(s, rs, 404, "not_found", "no such feed for this device");
        return;
    }
    if (rc) {
        storage_error(s, rs, rc, &err);
        return;
    }
    json_ok(rs);
    if (signed_state(s, PROTO_TAG_HEAD, feed, f.have_seq, f.has_head ? f.head : NULL, &rs->body))
        srv_resp_error(s, rs, 500, "internal", "out of memory");
}

static void
fork_refused(struct srv *s, struct srv_db *db, struct srv_resp *rs,
             const unsigned char feed[PROTO_KEY_BYTES], uint64_t seq)
{
    struct fs_err err;
    char msg[200];

    if (s->ops->feed_flag_fork(db, feed, seq, srv_now_ms(), &err))
        FS_LOG(&s->log, FS_LOG_WARNING, "cannot flag a fork: %s", err.msg);
    snprintf(msg, sizeof msg,
             "entry %" PRIu64 " differs from the one the server holds: this store was copied or "
             "restored; it must get a new key",
             seq);
    error_with(s, rs, 409, "fork", msg, "seq", (int64_t)seq);
}

static void
push(struct srv *s, struct srv_db *db, const struct srv_req *rq,
     const unsigned char feed[PROTO_KEY_BYTES], struct srv_resp *rs)
{
    struct proto_batch_limits lim;
    struct proto_batch_view v;
    struct proto_batch_header h;
    struct srv_feed f;
    struct srv_push_result res;
    struct srv_entry *es = NULL;
    struct proto_entry *parsed = NULL;
    struct fs_buf raw;
    struct fs_err err;
    unsigned char held[PROTO_HASH_BYTES];
    size_t off = 0, i;
    char msg[FS_ERR_MAX + 64];
    enum fs_rc rc;

    fs_buf_init(&raw, PROTO_BATCH_MAX_RAW);
    proto_batch_limits_default(&lim);
    lim.max_bytes = s->cfg.max_batch;
    /* 1. Lengths and limits, no parsing. */
    rc = proto_batch_open(rq->body, rq->body_len, &lim, 0, &v, &err);
    if (rc) {
        srv_resp_error(s, rs, rc == FS_ETOOBIG ? 413 : 400,
                       rc == FS_ETOOBIG ? "too_big" : "malformed", err.msg);
        goto out;
    }
    /* 2. The signer is known and not revoked. */
    rc = s->ops->feed_get(db, v.signer, &f, &err);
    if (rc == FS_ENOTFOUND) {
        srv_resp_error(s, rs, 403, "unknown_feed", "the batch's signer is not enrolled");
        goto out;
    }
    if (rc) {
        storage_error(s, rs, rc, &err);
        goto out;
    }
    /* 3. The batch signature. */
    if (proto_batch_verify(&v, &err)) {
        srv_resp_error(s, rs, 400, "bad_signature", err.msg);
        goto out;
    }
    /* 4. The header, strictly; signer = header feed = URL feed. */
    rc = proto_batch_header_parse(&v, &lim, &h, &err);
    if (rc) {
        srv_resp_error(s, rs, rc == FS_ETOOBIG ? 413 : 400,
                       rc == FS_ETOOBIG ? "too_big" : "malformed", err.msg);
        goto out;
    }
    if (h.purpose != PROTO_PURPOSE_PUSH || memcmp(h.feed, feed, PROTO_KEY_BYTES) != 0) {
        srv_resp_error(s, rs, 400, "malformed", "a push must be signed by the feed in its URL");
        goto out;
    }
    if (f.revoked && h.to > f.accept_through) {
        srv_resp_error(s, rs, 403, "revoked", "this device was revoked by the project");
        goto out;
    }
    /* 5. Already held: answer from the header alone. */
    if (h.to <= f.have_seq) {
        rc = s->ops->entry_hash(db, feed, h.to, held, &err);
        if (rc) {
            storage_error(s, rs, rc, &err);
            goto out;
        }
        if (sodium_memcmp(held, h.to_hash, PROTO_HASH_BYTES) != 0) {
            fork_refused(s, db, rs, feed, h.to);
            goto out;
        }
        atomic_fetch_add(&s->m.pushes_held, 1);
        receipt(s, db, rs, feed, f.have_seq, f.head);
        goto out;
    }
    if (h.from > f.have_seq + 1) {
        snprintf(msg, sizeof msg, "the server holds up to seq %" PRIu64 "; send from %" PRIu64,
                 f.have_seq, f.have_seq + 1);
        error_with(s, rs, 409, "gap", msg, "need", (int64_t)(f.have_seq + 1));
        goto out;
    }
    /* 6. Inflate to exactly raw_len. */
    atomic_fetch_add(&s->m.inflates, 1);
    if (proto_batch_inflate(&v, &h, &raw, &err)) {
        srv_resp_error(s, rs, 400, "malformed", err.msg);
        goto out;
    }
    /* 7. Exactly count frames, each verified. */
    es = calloc(h.count ? h.count : 1, sizeof *es);
    parsed = calloc(h.count ? h.count : 1, sizeof *parsed);
    if (!es || !parsed) {
        srv_resp_error(s, rs, 503, "unavailable", "out of memory");
        goto out;
    }
    for (i = 0;; i++) {
        struct proto_frame fr;

        rc = proto_batch_next(&raw, &off, &fr, &err);
        if (rc == FS_ENOTFOUND)
            break;
        if (rc || i >= h.count) {
            srv_resp_error(s, rs, 400, "malformed",
                           rc ? err.msg : "the batch holds more frames than its header says");
            goto out;
        }
        rc = proto_entry_verify_full(fr.entry, fr.entry_len, fr.sig, fr.content, fr.content_len,
                                     feed, 0, &parsed[i], es[i].hash, &err);
        if (rc) {
            srv_resp_error(s, rs, 400, "bad_entry", err.msg);
            goto out;
        }
        if (parsed[i].seq != h.from + i ||
            (i > 0 && (!parsed[i].has_prev ||
                       memcmp(parsed[i].prev, es[i - 1].hash, PROTO_HASH_BYTES) != 0))) {
            snprintf(msg, sizeof msg, "entry %" PRIu64 " does not follow the one before it",
                     parsed[i].seq);
            srv_resp_error(s, rs, 400, "bad_entry", msg);
            goto out;
        }
        es[i].seq = parsed[i].seq;
        es[i].entry = fr.entry;
        es[i].entry_len = fr.entry_len;
        es[i].sig = fr.sig;
        es[i].content = fr.content;
        es[i].content_len = fr.content_len;
        es[i].parsed = &parsed[i];
    }
    if (i != h.count || i == 0 || memcmp(es[i - 1].hash, h.to_hash, PROTO_HASH_BYTES) != 0) {
        srv_resp_error(s, rs, 400, "malformed", "the batch's frames do not match its header");
        goto out;
    }
    /* 8. One durable transaction; the answer goes out after it commits. */
    rc = s->ops->push_apply(db, feed, es, i, srv_now_ms(), &res, &err);
    if (rc == FS_EAUTH) {
        srv_resp_error(s, rs, 403, "revoked", "this device was revoked by the project");
        goto out;
    }
    if (rc) {
        storage_error(s, rs, rc, &err);
        goto out;
    }
    switch (res.outcome) {
    case SRV_PUSH_APPLIED:
        atomic_fetch_add(&s->m.pushes_applied, 1);
        atomic_fetch_add(&s->m.entries_stored, res.stored);
        receipt(s, db, rs, feed, res.have_seq, res.head);
        break;
    case SRV_PUSH_HELD:
        atomic_fetch_add(&s->m.pushes_held, 1);
        receipt(s, db, rs, feed, res.have_seq, res.head);
        break;
    case SRV_PUSH_GAP:
        snprintf(msg, sizeof msg, "the server holds up to seq %" PRIu64 "; send from %" PRIu64,
                 res.have_seq, res.have_seq + 1);
        error_with(s, rs, 409, "gap", msg, "need", (int64_t)(res.have_seq + 1));
        break;
    case SRV_PUSH_FORK:
        fork_refused(s, db, rs, feed, res.fork_seq);
        break;
    }
out:
    free(es);
    free(parsed);
    fs_buf_release(&raw);
}

int
srv_api_route_known(const char *method, const char *url, size_t *max_body)
{
    unsigned char feed[PROTO_KEY_BYTES];
    const char *rest;

    *max_body = 0;
    if (strcmp(url, "/v1/health") == 0)
        return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (strcmp(url, "/v1/enroll") == 0 && strcmp(method, "POST") == 0) {
        *max_body = SRV_JSON_BODY_MAX;
        return 1;
    }
    if (feed_path(url, feed, &rest) == 0) {
        if (strcmp(rest, "head") == 0)
            return strcmp(method, "GET") == 0;
        if (strcmp(rest, "entries") == 0 && strcmp(method, "POST") == 0) {
            *max_body = PROTO_BATCH_MAX_BYTES;
            return 1;
        }
    }
    return 0;
}

void
srv_api_handle(struct srv *s, const struct srv_req *rq, struct srv_resp *rs)
{
    unsigned char feed[PROTO_KEY_BYTES];
    struct srv_db *db = NULL;
    struct fs_err err;
    const char *rest;
    enum fs_rc rc;

    atomic_fetch_add(&s->m.requests, 1);
    if (strcmp(rq->url, "/v1/health") == 0) {
        health(s, rs);
        return;
    }
    rc = srv_db_get(s, &db, &err);
    if (rc) {
        storage_error(s, rs, rc, &err);
        return;
    }
    if (strcmp(rq->url, "/v1/enroll") == 0)
        enroll(s, db, rq, rs);
    else if (feed_path(rq->url, feed, &rest) == 0 && strcmp(rest, "head") == 0)
        head(s, db, rq, feed, rs);
    else if (feed_path(rq->url, feed, &rest) == 0 && strcmp(rest, "entries") == 0 &&
             strcmp(rq->method, "POST") == 0)
        push(s, db, rq, feed, rs);
    else
        srv_resp_error(s, rs, 404, "not_found", "no such endpoint");
    srv_db_put(s, db);
}
