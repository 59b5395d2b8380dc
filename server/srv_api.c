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
    {"bad_entry", SRV_REF_BAD_ENTRY},
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
void
srv_storage_error(struct srv *s, struct srv_resp *rs, enum fs_rc rc, const struct fs_err *err)
{
    if (rc == FS_EAGAIN || rc == FS_EIO || rc == FS_ENOMEM) {
        unavailable(s, rs, err);
        return;
    }
    FS_LOG(&s->log, FS_LOG_ERR, "storage: %s", err->msg);
    srv_resp_error(s, rs, 500, "internal", "the server failed; the request changed nothing");
}

static void
storage_error(struct srv *s, struct srv_resp *rs, enum fs_rc rc, const struct fs_err *err)
{
    srv_storage_error(s, rs, rc, err);
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

/* A signed receipt. noted: the push's own transaction already recorded its
 * seq and the contact (one commit, one fsync); otherwise (a replay) they are
 * noted here. */
static void
receipt(struct srv *s, struct srv_db *db, struct srv_resp *rs,
        const unsigned char feed[PROTO_KEY_BYTES], uint64_t have, const unsigned char *head,
        int noted)
{
    struct fs_err err;

    json_ok(rs);
    if (signed_state(s, PROTO_TAG_RECEIPT, feed, have, head, &rs->body)) {
        srv_resp_error(s, rs, 500, "internal", "out of memory");
        return;
    }
    if (!noted && s->ops->feed_touch(db, feed, have, srv_now_ms(), &err))
        FS_LOG(&s->log, FS_LOG_WARNING, "cannot note the receipt: %s", err.msg);
}

int
srv_authenticate(struct srv *s, struct srv_db *db, const struct srv_req *rq, const uint64_t *chunk,
                 struct srv_feed *caller, struct srv_resp *rs)
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
    if (chunk ? proto_req_verify_chunk(&a, rq->method, rq->target, chunk[0], chunk[1], s->pk)
              : proto_req_verify(&a, rq->method, rq->target, rq->body, rq->body_len, s->pk)) {
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

static int
authenticate(struct srv *s, struct srv_db *db, const struct srv_req *rq, struct srv_feed *caller,
             struct srv_resp *rs)
{
    return srv_authenticate(s, db, rq, NULL, caller, rs);
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
    if (f.revoked) {
        /* The same key retrying its own token: no "enrolled" for a revoked device. */
        srv_resp_error(s, rs, 403, "revoked", "this device was revoked by the project");
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

/* POST /v1/heartbeats: a feed's signed line, from whoever carries it. The
 * answer says only what the line itself said. */
static void
heartbeat(struct srv *s, struct srv_db *db, const struct srv_req *rq, struct srv_resp *rs)
{
    struct proto_heartbeat hb;
    struct srv_feed f;
    struct fs_err err;
    size_t len = rq->body_len;
    enum fs_rc rc;

    if (len && rq->body[len - 1] == '\n')
        len--;
    if (len && rq->body[len - 1] == '\r')
        len--;
    rc = proto_heartbeat_parse((const char *)rq->body, len, &hb, &err);
    if (rc) {
        srv_resp_error(s, rs, 400, rc == FS_EPROTO ? "bad_signature" : "malformed", err.msg);
        return;
    }
    rc = srv_heartbeat_record(s->ops, db, &hb, srv_now_ms(), &f, &err);
    switch (rc) {
    case FS_OK:
        json_ok(rs);
        if (fs_buf_adds(&rs->body, "{\"feed\":") ||
            proto_jw_hex(&rs->body, hb.feed, PROTO_KEY_BYTES) ||
            fs_buf_printf(&rs->body, ",\"attested_seq\":%" PRIu64 "}", hb.seq))
            srv_resp_error(s, rs, 500, "internal", "out of memory");
        break;
    case FS_ENOTFOUND:
        srv_resp_error(s, rs, 403, "unknown_feed", err.msg);
        break;
    case FS_EAUTH:
        srv_resp_error(s, rs, 403, "revoked", err.msg);
        break;
    case FS_ECONFLICT:
        error_with(s, rs, 409, "fork", err.msg, "seq", (int64_t)hb.seq);
        break;
    default:
        storage_error(s, rs, rc, &err);
    }
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

/* A share of a batch's entries to verify: signature, content hash, feed. */
struct verify_job {
    struct srv_entry *es;
    size_t from, to;
    const unsigned char *feed;
    enum fs_rc rc;
    size_t bad;
    struct fs_err err;
};

static void *
verify_share(void *arg)
{
    struct verify_job *j = arg;
    size_t i;

    for (i = j->from; i < j->to; i++) {
        const struct proto_entry *e = j->es[i].parsed;

        int parsed;

        /* The content must be a record too: one that is not would be refused
         * by every coordinator's pull, and stop it. */
        j->rc = proto_entry_verify_record(j->es[i].entry, j->es[i].entry_len, j->es[i].sig,
                                          j->es[i].content, j->es[i].content_len, j->feed,
                                          (struct proto_entry *)e, j->es[i].hash, NULL, &parsed,
                                          &j->err);
        if (j->rc) {
            j->bad = i;
            break;
        }
    }
    return NULL;
}

/* Verification is the floor of ingest (about 16,000 signatures a second per
 * core): a large batch is split with a second thread while this one does
 * its half. The first failing entry (lowest index) is reported. */
static enum fs_rc
verify_entries(struct srv_entry *es, size_t n, const unsigned char *feed, struct fs_err *err)
{
    struct verify_job a = {es, 0, n, feed, FS_OK, 0, {{0}}}, b = a;
    pthread_t t;
    int threaded = 0;

    if (n >= 256) {
        a.to = b.from = n / 2;
        threaded = pthread_create(&t, NULL, verify_share, &b) == 0;
        if (!threaded)
            a.to = n; /* no thread to be had: all of it here */
    }
    verify_share(&a);
    if (threaded)
        pthread_join(t, NULL);
    if (a.rc) {
        *err = a.err;
        return a.rc;
    }
    if (threaded && b.rc) {
        *err = b.err;
        return b.rc;
    }
    return FS_OK;
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
    struct fs_buf raw, opened;
    struct fs_err err;
    unsigned char held[PROTO_HASH_BYTES];
    size_t off = 0, i;
    char msg[FS_ERR_MAX + 64];
    enum fs_rc rc;

    fs_buf_init(&raw, PROTO_BATCH_MAX_RAW);
    fs_buf_init(&opened, PROTO_BATCH_MAX_BYTES);
    proto_batch_limits_default(&lim);
    lim.max_bytes = s->cfg.max_batch;
    /* 1. Lengths and limits, no parsing. A bundle's payload may be sealed. */
    rc = proto_batch_open(rq->body, rq->body_len, &lim, 1, &v, &err);
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
    /* A bundle is a push carried by hand (relayed, or imported by the admin):
     * the same checks, its payload possibly sealed to this server. */
    if ((h.purpose != PROTO_PURPOSE_PUSH && h.purpose != PROTO_PURPOSE_BUNDLE) ||
        memcmp(h.feed, feed, PROTO_KEY_BYTES) != 0) {
        srv_resp_error(s, rs, 400, "malformed", "a push must be signed by the feed in its URL");
        goto out;
    }
    if ((v.flags & PROTO_BATCH_FLAG_SEALED) && h.purpose != PROTO_PURPOSE_BUNDLE) {
        srv_resp_error(s, rs, 400, "malformed", "only a bundle is sealed");
        goto out;
    }
    if (f.revoked && h.to > f.accept_through) {
        srv_resp_error(s, rs, 403, "revoked", "this device was revoked by the project");
        goto out;
    }
    /* 5. Already held: answer from the header alone. A different last entry is
     * a fork; the (authenticated) batch is then opened below, so that the fork
     * is flagged at the first entry that differs, not at the batch's end. */
    if (h.to <= f.have_seq) {
        rc = s->ops->entry_hash(db, feed, h.to, held, &err);
        if (rc) {
            storage_error(s, rs, rc, &err);
            goto out;
        }
        if (sodium_memcmp(held, h.to_hash, PROTO_HASH_BYTES) == 0) {
            atomic_fetch_add(&s->m.pushes_held, 1);
            receipt(s, db, rs, feed, f.have_seq, f.head, 0);
            goto out;
        }
    }
    if (h.from > f.have_seq + 1) {
        snprintf(msg, sizeof msg, "the server holds up to seq %" PRIu64 "; send from %" PRIu64,
                 f.have_seq, f.have_seq + 1);
        error_with(s, rs, 409, "gap", msg, "need", (int64_t)(f.have_seq + 1));
        goto out;
    }
    /* 6. Open if sealed; inflate to exactly raw_len. */
    if ((v.flags & PROTO_BATCH_FLAG_SEALED) &&
        proto_batch_unseal(&v, s->pk, s->sk, &opened, &v, &err)) {
        srv_resp_error(s, rs, 400, "malformed", err.msg);
        goto out;
    }
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
    /* Frames first (cheap: lengths only), then every entry verified, spread
     * over two threads for a large batch, then the chain in order. */
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
        es[i].entry = fr.entry;
        es[i].entry_len = fr.entry_len;
        es[i].sig = fr.sig;
        es[i].content = fr.content;
        es[i].content_len = fr.content_len;
        es[i].parsed = &parsed[i];
    }
    if (i != h.count || i == 0) {
        srv_resp_error(s, rs, 400, "malformed", "the batch's frames do not match its header");
        goto out;
    }
    rc = verify_entries(es, i, feed, &err);
    if (rc) {
        srv_resp_error(s, rs, 400, "bad_entry", err.msg);
        goto out;
    }
    for (i = 0; i < h.count; i++) {
        if (parsed[i].seq != h.from + i ||
            (i > 0 && (!parsed[i].has_prev ||
                       memcmp(parsed[i].prev, es[i - 1].hash, PROTO_HASH_BYTES) != 0))) {
            snprintf(msg, sizeof msg, "entry %" PRIu64 " does not follow the one before it",
                     parsed[i].seq);
            srv_resp_error(s, rs, 400, "bad_entry", msg);
            goto out;
        }
        es[i].seq = parsed[i].seq;
    }
    if (memcmp(es[i - 1].hash, h.to_hash, PROTO_HASH_BYTES) != 0) {
        srv_resp_error(s, rs, 400, "malformed", "the batch's frames do not match its header");
        goto out;
    }
    /* 8. One durable transaction; the answer goes out after it commits. */
    rc = srv_commit_push(s, db, feed, es, i, srv_now_ms(), &res, &err);
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
        receipt(s, db, rs, feed, res.have_seq, res.head, 1);
        break;
    case SRV_PUSH_HELD:
        atomic_fetch_add(&s->m.pushes_held, 1);
        receipt(s, db, rs, feed, res.have_seq, res.head, 0);
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
    fs_buf_release(&opened);
}

/* A decimal query parameter within [min, max]; def when absent; -1 when bad. */
static int
query_u64(const char *v, uint64_t min, uint64_t max, uint64_t def, uint64_t *out)
{
    uint64_t n = 0;

    if (!v) {
        *out = def;
        return 0;
    }
    if (!*v || strlen(v) > 16)
        return -1;
    for (; *v; v++) {
        if (*v < '0' || *v > '9')
            return -1;
        n = n * 10 + (uint64_t)(*v - '0');
    }
    if (n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

#define PULL_MAX_ENTRIES 5000
#define PULL_MAX_RAW     (8u << 20)

struct pull_fill {
    struct proto_batch_enc *enc;
    uint64_t last_seq;
    unsigned char last_hash[PROTO_HASH_BYTES];
    enum fs_rc rc;
};

static int
pull_one(void *ctx, uint64_t seq, const unsigned char *hash, const unsigned char *entry,
         size_t entry_len, const unsigned char *sig, const unsigned char *content,
         size_t content_len)
{
    struct pull_fill *pf = ctx;

    if (proto_batch_enc_count(pf->enc) && proto_batch_enc_raw_len(pf->enc) >= PULL_MAX_RAW)
        return 1;
    pf->rc = proto_batch_enc_add(pf->enc, entry, entry_len, sig, content, content_len);
    if (pf->rc)
        return 1;
    pf->last_seq = seq;
    memcpy(pf->last_hash, hash, PROTO_HASH_BYTES);
    return 0;
}

/* GET /v1/feeds/{feed}/entries?from=N&limit=M: a server-signed batch. */
static void
pull_entries(struct srv *s, struct srv_db *db, const struct srv_req *rq,
             const unsigned char feed[PROTO_KEY_BYTES], struct srv_resp *rs)
{
    struct srv_feed caller, f;
    struct pull_fill pf;
    struct proto_batch_header h;
    struct fs_err err;
    uint64_t from, limit, to;
    enum fs_rc rc;

    if (authenticate(s, db, rq, &caller, rs))
        return;
    rc = s->ops->feed_get(db, feed, &f, &err);
    if (rc == FS_ENOTFOUND || (rc == FS_OK && !may_read(&caller, &f))) {
        srv_resp_error(s, rs, rc == FS_OK ? 403 : 404, rc == FS_OK ? "forbidden" : "not_found",
                       "only the feed itself and its project's coordinators may read it");
        return;
    }
    if (rc) {
        storage_error(s, rs, rc, &err);
        return;
    }
    if (query_u64(rq->query_from, 1, PROTO_MAX_SAFE_INT, 1, &from) ||
        query_u64(rq->query_limit, 1, PULL_MAX_ENTRIES, 1000, &limit)) {
        srv_resp_error(s, rs, 400, "malformed", "from and limit must be positive integers");
        return;
    }
    if (from > f.have_seq) {
        rs->status = 204;
        rs->content_type = "application/octet-stream";
        return;
    }
    to = from + limit - 1 < f.have_seq ? from + limit - 1 : f.have_seq;
    memset(&pf, 0, sizeof pf);
    if (proto_batch_enc_new(1, &pf.enc)) {
        srv_resp_error(s, rs, 503, "unavailable", "out of memory");
        return;
    }
    rc = s->ops->entries_each(db, feed, from, to, pull_one, &pf, &err);
    if (!rc && pf.rc)
        rc = fs_err_set(&err, pf.rc, "cannot build a batch");
    if (rc) {
        proto_batch_enc_free(pf.enc);
        storage_error(s, rs, rc, &err);
        return;
    }
    memset(&h, 0, sizeof h);
    h.purpose = PROTO_PURPOSE_PULL;
    h.has_feed = 1;
    memcpy(h.feed, feed, PROTO_KEY_BYTES);
    h.from = from;
    h.to = pf.last_seq;
    memcpy(h.to_hash, pf.last_hash, PROTO_HASH_BYTES);
    proto_time_format_ms(srv_now_ms(), h.created);
    rs->status = 200;
    rs->content_type = "application/octet-stream";
    if (proto_batch_enc_count(pf.enc) == 0 ||
        proto_batch_enc_finish(pf.enc, &h, s->pk, s->sk, &rs->body))
        srv_resp_error(s, rs, 500, "internal", "cannot build the batch");
    proto_batch_enc_free(pf.enc);
}

struct corr_fill {
    struct proto_batch_enc *enc;
    uint64_t last_n;
    enum fs_rc rc;
};

static int
corr_one(void *ctx, uint64_t n, const unsigned char *feed, uint64_t seq, const unsigned char *hash,
         const unsigned char *entry, size_t entry_len, const unsigned char *sig,
         const unsigned char *content, size_t content_len)
{
    struct corr_fill *cf = ctx;

    (void)feed;
    (void)seq;
    (void)hash;
    if (proto_batch_enc_count(cf->enc) && proto_batch_enc_raw_len(cf->enc) >= PULL_MAX_RAW)
        return 1;
    cf->rc = proto_batch_enc_add(cf->enc, entry, entry_len, sig, content, content_len);
    if (cf->rc)
        return 1;
    cf->last_n = n;
    return 0;
}

/* GET /v1/feeds/{feed}/corrections?since=N: coordinators' revisions of the
 * records this feed owns, as a server-signed multi-feed batch; the cursor
 * for the next call in X-Fieldsync-Cursor. */
static void
corrections(struct srv *s, struct srv_db *db, const struct srv_req *rq,
            const unsigned char feed[PROTO_KEY_BYTES], struct srv_resp *rs)
{
    struct srv_feed caller;
    struct corr_fill cf;
    struct proto_batch_header h;
    struct fs_err err;
    uint64_t since;
    enum fs_rc rc;

    if (authenticate(s, db, rq, &caller, rs))
        return;
    if (memcmp(caller.feed, feed, PROTO_KEY_BYTES) != 0) {
        srv_resp_error(s, rs, 403, "forbidden", "only a feed itself reads its corrections");
        return;
    }
    if (query_u64(rq->query_since, 0, PROTO_MAX_SAFE_INT, 0, &since)) {
        srv_resp_error(s, rs, 400, "malformed", "since must be an integer");
        return;
    }
    memset(&cf, 0, sizeof cf);
    cf.last_n = since;
    if (proto_batch_enc_new(1, &cf.enc)) {
        srv_resp_error(s, rs, 503, "unavailable", "out of memory");
        return;
    }
    rc = s->ops->corrections_each(db, feed, since, PULL_MAX_ENTRIES, corr_one, &cf, &err);
    if (!rc && cf.rc)
        rc = fs_err_set(&err, cf.rc, "cannot build a batch");
    if (rc) {
        proto_batch_enc_free(cf.enc);
        storage_error(s, rs, rc, &err);
        return;
    }
    snprintf(rs->cursor, sizeof rs->cursor, "%" PRIu64, cf.last_n);
    if (proto_batch_enc_count(cf.enc) == 0) {
        proto_batch_enc_free(cf.enc);
        rs->status = 204;
        rs->content_type = "application/octet-stream";
        return;
    }
    memset(&h, 0, sizeof h);
    h.purpose = PROTO_PURPOSE_PULL;
    proto_time_format_ms(srv_now_ms(), h.created);
    rs->status = 200;
    rs->content_type = "application/octet-stream";
    if (proto_batch_enc_finish(cf.enc, &h, s->pk, s->sk, &rs->body))
        srv_resp_error(s, rs, 500, "internal", "cannot build the batch");
    proto_batch_enc_free(cf.enc);
}

struct listing {
    struct srv *s;
    struct srv_db *db;
    struct fs_buf *j;
    int first;
    enum fs_rc rc;
};

static int
listing_one(void *ctx, const struct srv_feed *f)
{
    struct listing *l = ctx;
    struct fs_buf *j = l->j;
    char last[PROTO_TIME_MAX_LEN], enrolled[PROTO_TIME_MAX_LEN], attested[PROTO_TIME_MAX_LEN];
    uint64_t missing = 0;
    struct fs_err err;

    if (l->s->ops->blob_missing(l->db, f->feed, &missing, &err)) {
        l->rc = FS_EAGAIN;
        return 1;
    }
    proto_time_format_ms(f->last_contact_ms, last);
    proto_time_format_ms(f->enrolled_ms, enrolled);
    proto_time_format_ms(f->attested_ms, attested);
    l->rc = fs_buf_adds(j, l->first ? "{\"feed\":" : ",{\"feed\":");
    l->first = 0;
    if (!l->rc)
        l->rc = proto_jw_hex(j, f->feed, PROTO_KEY_BYTES);
    if (!l->rc)
        l->rc = fs_buf_adds(j, ",\"name\":");
    if (!l->rc)
        l->rc = proto_jw_str(j, f->name, strlen(f->name));
    if (!l->rc)
        l->rc = fs_buf_printf(j, ",\"role\":\"%s\",\"have_seq\":%" PRIu64 ",\"head\":",
                              srv_role_name(f->role), f->have_seq);
    if (!l->rc)
        l->rc = f->has_head ? proto_jw_hex(j, f->head, PROTO_HASH_BYTES) : fs_buf_adds(j, "null");
    if (!l->rc)
        l->rc = f->attested_ms ? fs_buf_printf(j, ",\"attested_at\":\"%s\"", attested)
                               : fs_buf_adds(j, ",\"attested_at\":null");
    if (!l->rc)
        l->rc = fs_buf_printf(
            j,
            ",\"receipt_seq\":%" PRIu64 ",\"attested_seq\":%" PRIu64
            ",\"last_contact\":\"%s\",\"enrolled\":\"%s\",\"fork\":%s,\"fork_seq\":%" PRIu64
            ",\"contested\":%s,\"revoked\":%s,\"accept_through\":%" PRIu64
            ",\"blobs_missing\":%" PRIu64 "}",
            f->receipt_seq, f->attested_seq, last, enrolled,
            (f->flags & SRV_FLAG_FORK) ? "true" : "false", f->fork_seq,
            (f->flags & SRV_FLAG_CONTESTED) ? "true" : "false", f->revoked ? "true" : "false",
            f->accept_through, missing);
    return l->rc != FS_OK;
}

static void
feeds_listing(struct srv *s, struct srv_db *db, const char *project, struct srv_resp *rs)
{
    struct fs_buf j;
    struct listing l;
    struct fs_err err;
    char at[PROTO_TIME_MAX_LEN];
    enum fs_rc rc;

    fs_buf_init(&j, 32u << 20);
    proto_time_format_ms(srv_now_ms(), at);
    l.s = s;
    l.db = db;
    l.j = &j;
    l.first = 1;
    l.rc = FS_OK;
    rc = fs_buf_printf(&j, "{\"project\":\"%s\",\"at\":\"%s\",\"feeds\":[", project, at);
    if (!rc)
        rc = s->ops->feed_list(db, project, listing_one, &l, &err);
    if (!rc && l.rc)
        rc = fs_err_set(&err, l.rc, "the listing is too large");
    if (!rc)
        rc = fs_buf_adds(&j, "]}");
    if (rc) {
        fs_buf_release(&j);
        storage_error(s, rs, rc, &err);
        return;
    }
    json_ok(rs);
    if (proto_signed_wrap(PROTO_TAG_FEEDS, (const char *)j.data, j.len, s->sk, &rs->body))
        srv_resp_error(s, rs, 500, "internal", "out of memory");
    fs_buf_release(&j);
}

/* POST /v1/projects/{p}/tokens {"role":"researcher","name":N,"ttl_s":S} */
static void
project_token(struct srv *s, struct srv_db *db, const struct srv_req *rq, const char *project,
              struct srv_resp *rs)
{
    static const char *const keys[] = {"role", "name", "ttl_s", NULL};
    static const char *const req[] = {"role", NULL};
    struct srv_token t;
    struct fs_err err;
    json_t *j = NULL, *v;
    unsigned char h[PROTO_HASH_BYTES];
    char token[PROTO_TOKEN_LEN + 1], exp[PROTO_TIME_MAX_LEN];
    uint64_t ttl = 7 * 86400;
    enum fs_rc rc;

    memset(&t, 0, sizeof t);
    if (proto_json_parse(rq->body, rq->body_len, &j, &err) ||
        proto_json_keys(j, keys, req, "token request", &err)) {
        json_decref(j);
        srv_resp_error(s, rs, 400, "malformed", err.msg);
        return;
    }
    v = json_object_get(j, "role");
    if (!json_is_string(v) || strcmp(json_string_value(v), "researcher") != 0) {
        json_decref(j);
        srv_resp_error(s, rs, 403, "forbidden",
                       "coordinators create researcher tokens; coordinator tokens come from the "
                       "server's operator");
        return;
    }
    t.role = SRV_ROLE_RESEARCHER;
    v = json_object_get(j, "name");
    if (v && (!json_is_string(v) || !proto_name_valid(json_string_value(v)))) {
        json_decref(j);
        srv_resp_error(s, rs, 400, "malformed", "the name must be 1-512 bytes of text");
        return;
    }
    snprintf(t.name, sizeof t.name, "%s", v ? json_string_value(v) : "unnamed device");
    v = json_object_get(j, "ttl_s");
    if (v && (proto_json_uint(v, 60, &ttl) || ttl > 90 * 86400)) {
        json_decref(j);
        srv_resp_error(s, rs, 400, "malformed", "ttl_s must lie between 60 s and 90 days");
        return;
    }
    json_decref(j);
    snprintf(t.project, sizeof t.project, "%s", project);
    t.created_ms = srv_now_ms();
    t.expires_ms = t.created_ms + (int64_t)ttl * 1000;
    proto_token_new(s->pk, token);
    proto_token_hash(token, strlen(token), h);
    rc = s->ops->token_add(db, h, &t, &err);
    if (!rc)
        rc = s->ops->audit(db, "token", NULL, project, t.created_ms, &err);
    if (rc) {
        sodium_memzero(token, sizeof token);
        storage_error(s, rs, rc, &err);
        return;
    }
    proto_time_format_ms(t.expires_ms, exp);
    json_ok(rs);
    if (fs_buf_printf(&rs->body, "{\"token\":\"%s\",\"expires\":\"%s\"}", token, exp))
        srv_resp_error(s, rs, 500, "internal", "out of memory");
    sodium_memzero(token, sizeof token);
}

/* POST /v1/projects/{p}/revocations {"feed":hex,"accept_through":N} */
static void
project_revoke(struct srv *s, struct srv_db *db, const struct srv_req *rq, const char *project,
               struct srv_resp *rs)
{
    static const char *const keys[] = {"feed", "accept_through", NULL};
    static const char *const req[] = {"feed", NULL};
    struct srv_feed f;
    struct fs_err err;
    unsigned char feed[PROTO_KEY_BYTES];
    json_t *j = NULL, *v;
    uint64_t through = 0;
    enum fs_rc rc;

    if (proto_json_parse(rq->body, rq->body_len, &j, &err) ||
        proto_json_keys(j, keys, req, "revocation", &err) ||
        proto_json_hex(json_object_get(j, "feed"), feed, PROTO_KEY_BYTES) ||
        ((v = json_object_get(j, "accept_through")) && proto_json_uint(v, 0, &through))) {
        json_decref(j);
        srv_resp_error(s, rs, 400, "malformed",
                       "a revocation is {\"feed\":hex,\"accept_through\":N}");
        return;
    }
    json_decref(j);
    rc = s->ops->feed_get(db, feed, &f, &err);
    if (rc == FS_ENOTFOUND || (rc == FS_OK && strcmp(f.project, project) != 0)) {
        srv_resp_error(s, rs, 404, "not_found", "no such device in this project");
        return;
    }
    if (!rc)
        rc = s->ops->feed_revoke(db, feed, through, srv_now_ms(), &err);
    if (rc) {
        storage_error(s, rs, rc, &err);
        return;
    }
    json_ok(rs);
    if (fs_buf_printf(&rs->body, "{\"revoked\":true,\"accept_through\":%" PRIu64 "}", through))
        srv_resp_error(s, rs, 500, "internal", "out of memory");
}

static void
project_api(struct srv *s, struct srv_db *db, const struct srv_req *rq, const char *project,
            const char *rest, struct srv_resp *rs)
{
    struct srv_feed caller;

    if (authenticate(s, db, rq, &caller, rs))
        return;
    if (strncmp(rest, "blobs/", 6) == 0) {
        srv_blob_read(s, db, rq, &caller, project, rest + 6, rs);
        return;
    }
    if (caller.role != SRV_ROLE_COORDINATOR || strcmp(caller.project, project) != 0) {
        srv_resp_error(s, rs, 403, "forbidden", "only this project's coordinators may do that");
        return;
    }
    if (strcmp(rest, "feeds") == 0)
        feeds_listing(s, db, project, rs);
    else if (strcmp(rest, "tokens") == 0)
        project_token(s, db, rq, project, rs);
    else if (strcmp(rest, "revocations") == 0)
        project_revoke(s, db, rq, project, rs);
    else
        srv_export(s, db, rq, project, rest, rs);
}

/* "/v1/projects/<p>/<rest>": the project (into p) and the rest, or -1. */
static int
project_path(const char *url, char p[SRV_PROJECT_MAX + 1], const char **rest)
{
    static const char pre[] = "/v1/projects/";
    const char *slash;
    size_t n;

    if (strncmp(url, pre, sizeof pre - 1) != 0)
        return -1;
    url += sizeof pre - 1;
    slash = strchr(url, '/');
    if (!slash)
        return -1;
    n = (size_t)(slash - url);
    if (n == 0 || n > SRV_PROJECT_MAX)
        return -1;
    memcpy(p, url, n);
    p[n] = 0;
    if (!srv_project_valid(p))
        return -1;
    *rest = slash + 1;
    return 0;
}

int
srv_api_route_known(const char *method, const char *url, size_t *max_body)
{
    unsigned char feed[PROTO_KEY_BYTES];
    char project[SRV_PROJECT_MAX + 1];
    const char *rest;

    *max_body = 0;
    if (project_path(url, project, &rest) == 0) {
        if (strcmp(rest, "feeds") == 0 || strcmp(rest, "records.csv") == 0 ||
            strcmp(rest, "records.jsonl") == 0 || strcmp(rest, "records.geojson") == 0)
            return strcmp(method, "GET") == 0;
        if (strcmp(rest, "tokens") == 0 || strcmp(rest, "revocations") == 0) {
            *max_body = SRV_JSON_BODY_MAX;
            return strcmp(method, "POST") == 0;
        }
        if (strncmp(rest, "blobs/", 6) == 0 && strlen(rest + 6) == 2 * PROTO_HASH_BYTES) {
            if (strcmp(method, "PATCH") == 0) {
                *max_body = SRV_BLOB_CHUNK_MAX;
                return 2; /* streamed to disk, never held */
            }
            return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
        }
        return 0;
    }
    if (strcmp(url, "/v1/health") == 0)
        return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (strcmp(url, "/v1/enroll") == 0 && strcmp(method, "POST") == 0) {
        *max_body = SRV_JSON_BODY_MAX;
        return 1;
    }
    if (strcmp(url, "/v1/heartbeats") == 0 && strcmp(method, "POST") == 0) {
        *max_body = PROTO_HEARTBEAT_LINE_LEN + 2; /* the line and a CR LF */
        return 1;
    }
    if (feed_path(url, feed, &rest) == 0) {
        if (strcmp(rest, "head") == 0 || strcmp(rest, "corrections") == 0)
            return strcmp(method, "GET") == 0;
        if (strcmp(rest, "entries") == 0 && strcmp(method, "GET") == 0)
            return 1;
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
    char project[SRV_PROJECT_MAX + 1];
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
    else if (strcmp(rq->url, "/v1/heartbeats") == 0)
        heartbeat(s, db, rq, rs);
    else if (feed_path(rq->url, feed, &rest) == 0 && strcmp(rest, "head") == 0)
        head(s, db, rq, feed, rs);
    else if (feed_path(rq->url, feed, &rest) == 0 && strcmp(rest, "entries") == 0 &&
             strcmp(rq->method, "POST") == 0)
        push(s, db, rq, feed, rs);
    else if (feed_path(rq->url, feed, &rest) == 0 && strcmp(rest, "entries") == 0)
        pull_entries(s, db, rq, feed, rs);
    else if (feed_path(rq->url, feed, &rest) == 0 && strcmp(rest, "corrections") == 0)
        corrections(s, db, rq, feed, rs);
    else if (project_path(rq->url, project, &rest) == 0)
        project_api(s, db, rq, project, rest, rs);
    else
        srv_resp_error(s, rs, 404, "not_found", "no such endpoint");
    srv_db_put(s, db);
}
