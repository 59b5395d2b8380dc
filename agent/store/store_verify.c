/* Re-checking a store from its bytes: the database file, every chain, every
 * signature and content hash, the records view against a fresh merge, and the
 * server's receipts against the pinned server key. */
#include "store_int.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_auth.h"
#include "proto_json.h"

struct verify {
    struct store *s;
    store_problem_cb cb;
    void *ctx;
    uint64_t problems;
};

static void problem(struct verify *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
problem(struct verify *v, const char *fmt, ...)
{
    char line[FS_ERR_MAX + 128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    v->problems++;
    if (v->cb)
        v->cb(v->ctx, line);
}

static enum fs_rc
check_integrity(struct verify *v, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;

    r = sqlite3_prepare_v2(v->s->db, "PRAGMA integrity_check", -1, &st, NULL);
    if (r != SQLITE_OK)
        return store_sqlerr(v->s, r, "checking the database", err);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);

        if (t && strcmp(t, "ok") != 0)
            problem(v, "database: %s", t);
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE)
        problem(v, "database: %s", sqlite3_errstr(r));
    return FS_OK;
}

static enum fs_rc
check_feed(struct verify *v, const unsigned char feed[PROTO_KEY_BYTES], uint64_t have_seq,
           const void *head, int head_len, int partial, uint64_t *entries, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    unsigned char prev[PROTO_HASH_BYTES], hash[PROTO_HASH_BYTES], head_seen[PROTO_HASH_BYTES] = {0};
    char short_feed[17];
    uint64_t last = 0, contiguous = 0;
    int r, have_prev = 0, head_ok = 0;

    proto_hex_encode(feed, 8, short_feed);
    r = sqlite3_prepare_v2(v->s->db,
                           "SELECT seq, hash, entry, sig, content, record_id, gen, parent, op,"
                           " content_hash FROM entries WHERE feed = ?1 ORDER BY seq",
                           -1, &st, NULL);
    if (r != SQLITE_OK)
        return store_sqlerr(v->s, r, "checking entries", err);
    sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
        struct proto_entry e;
        struct fs_err e2;
        int sig_len = sqlite3_column_bytes(st, 3);

        (*entries)++;
        if (sig_len != PROTO_SIG_BYTES) {
            problem(v, "feed %s seq %llu: signature is missing or malformed", short_feed,
                    (unsigned long long)seq);
            have_prev = 0;
            last = seq;
            continue;
        }
        if (proto_entry_verify_full(sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2),
                                    sqlite3_column_blob(st, 3), sqlite3_column_blob(st, 4),
                                    (size_t)sqlite3_column_bytes(st, 4), feed, 0, &e, hash, &e2)) {
            problem(v, "feed %s seq %llu: %s", short_feed, (unsigned long long)seq, e2.msg);
            have_prev = 0;
            last = seq;
            continue;
        }
        if (e.seq != seq)
            problem(v, "feed %s seq %llu: the entry says seq %llu", short_feed,
                    (unsigned long long)seq, (unsigned long long)e.seq);
        else if (partial && seq > have_seq)
            ; /* held in part (corrections): single entries, each verified */
        else if (seq != last + 1)
            problem(v, "feed %s seq %llu: gap after seq %llu", short_feed, (unsigned long long)seq,
                    (unsigned long long)last);
        else if (seq > 1 && have_prev && (!e.has_prev || memcmp(e.prev, prev, sizeof prev)))
            problem(v, "feed %s seq %llu: does not follow the hash of seq %llu", short_feed,
                    (unsigned long long)seq, (unsigned long long)last);
        if (sqlite3_column_bytes(st, 1) != PROTO_HASH_BYTES ||
            memcmp(sqlite3_column_blob(st, 1), hash, PROTO_HASH_BYTES) != 0)
            problem(v, "feed %s seq %llu: stored hash does not match the entry", short_feed,
                    (unsigned long long)seq);
        if (strcmp((const char *)sqlite3_column_text(st, 5), e.record_id) != 0 ||
            (uint64_t)sqlite3_column_int64(st, 6) != e.gen ||
            sqlite3_column_int(st, 8) != (int)e.op ||
            (e.has_parent ? sqlite3_column_bytes(st, 7) != PROTO_HASH_BYTES ||
                                memcmp(sqlite3_column_blob(st, 7), e.parent, PROTO_HASH_BYTES)
                          : sqlite3_column_type(st, 7) != SQLITE_NULL) ||
            (e.has_content
                 ? sqlite3_column_bytes(st, 9) != PROTO_HASH_BYTES ||
                       memcmp(sqlite3_column_blob(st, 9), e.content_hash, PROTO_HASH_BYTES)
                 : sqlite3_column_type(st, 9) != SQLITE_NULL))
            problem(v, "feed %s seq %llu: index columns do not match the entry", short_feed,
                    (unsigned long long)seq);
        memcpy(prev, hash, sizeof prev);
        have_prev = 1;
        last = seq;
        if (seq == contiguous + 1)
            contiguous = seq;
        if (seq == have_seq) {
            memcpy(head_seen, hash, sizeof head_seen);
            head_ok = 1;
        }
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) {
        problem(v, "feed %s: entries unreadable after seq %llu (%s)", short_feed,
                (unsigned long long)last, sqlite3_errstr(r));
        return FS_OK;
    }
    if (partial ? contiguous < have_seq : last != have_seq)
        problem(v, "feed %s: head says seq %llu but entries end at %llu", short_feed,
                (unsigned long long)have_seq, (unsigned long long)(partial ? contiguous : last));
    else if (have_seq && (head_len != PROTO_HASH_BYTES || !head_ok ||
                          memcmp(head, head_seen, PROTO_HASH_BYTES) != 0))
        problem(v, "feed %s: head hash does not match entry %llu", short_feed,
                (unsigned long long)last);
    return FS_OK;
}

/* A records row as bytes, every column a refresh recomputes (all but
 * last_own_seq, which a refresh only raises; check_view compares it with the
 * entries itself): 0 when the row is absent. */
static int
row_bytes(sqlite3_stmt *cur, struct fs_buf *out)
{
    int i, n = sqlite3_column_count(cur);

    fs_buf_reset(out);
    if (sqlite3_step(cur) != SQLITE_ROW)
        return 0;
    for (i = 0; i < n; i++) {
        int type = sqlite3_column_type(cur, i);
        const void *p = type == SQLITE_NULL ? NULL : sqlite3_column_blob(cur, i);
        size_t len = p ? (size_t)sqlite3_column_bytes(cur, i) : 0;

        if (fs_buf_addc(out, (char)type) || fs_buf_add_u32be(out, (uint32_t)len) ||
            (len && fs_buf_add(out, p, len)))
            return -1;
    }
    return 1;
}

/* The records view must be what a fresh merge of the entries gives. */
static enum fs_rc
check_view(struct verify *v, struct fs_err *err)
{
    sqlite3_stmt *ids = NULL, *cur = NULL, *own = NULL;
    struct fs_buf before, after;
    enum fs_rc rc = FS_OK;
    int r;

    fs_buf_init(&before, 1u << 20);
    fs_buf_init(&after, 1u << 20);
    r = sqlite3_prepare_v2(v->s->db,
                           "SELECT id FROM (SELECT DISTINCT record_id AS id FROM entries"
                           " UNION SELECT id FROM records) ORDER BY id",
                           -1, &ids, NULL);
    if (r == SQLITE_OK)
        r = sqlite3_prepare_v2(
            v->s->db,
            "SELECT state, owner, winner, winner_feed, winner_seq, gen, kind,"
            " observed_ms, n_conflicts, conflict_revs FROM records WHERE id = ?1",
            -1, &cur, NULL);
    /* last_own_seq says which of this device's entries last touched the record
     * (what list and status call synced rests on it): the highest seq of this
     * feed's entries for it, 0 when it has none. "+feed" keeps SQLite on the
     * record_id index: on (feed, seq) it would walk the feed down from its
     * newest entry for every record, and verify would grow as the square of
     * the store (minutes at 20,000 records). */
    if (r == SQLITE_OK)
        r = sqlite3_prepare_v2(v->s->db,
                               "SELECT 1 FROM records WHERE id = ?1 AND last_own_seq IS NOT"
                               " (SELECT coalesce(max(seq), 0) FROM entries"
                               "  WHERE record_id = ?1 AND +feed = ?2)",
                               -1, &own, NULL);
    if (r != SQLITE_OK) {
        rc = store_sqlerr(v->s, r, "checking the records view", err);
        goto out;
    }
    /* Recompute into a savepoint and compare, then roll the savepoint back:
     * verify never changes the store. */
    rc = store_exec(v->s, "SAVEPOINT verify_view", err);
    if (rc)
        goto out;
    while ((r = sqlite3_step(ids)) == SQLITE_ROW) {
        char id[PROTO_UUID_LEN + 1];
        int had, has;
        struct fs_err e2;

        snprintf(id, sizeof id, "%s", (const char *)sqlite3_column_text(ids, 0));
        sqlite3_bind_text(own, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob(own, 2, v->s->pk, PROTO_KEY_BYTES, SQLITE_STATIC);
        r = sqlite3_step(own);
        sqlite3_reset(own);
        if (r != SQLITE_DONE) {
            if (r == SQLITE_ROW)
                problem(v, "record %s: the records view differs from its entries", id);
            else
                problem(v, "record %s: unreadable (%s)", id, sqlite3_errstr(r));
            continue;
        }
        sqlite3_bind_text(cur, 1, id, -1, SQLITE_TRANSIENT);
        had = row_bytes(cur, &before);
        sqlite3_reset(cur);
        if (store_record_refresh(v->s, id, NULL, NULL, 0, &e2)) {
            problem(v, "record %s: %s", id, e2.msg);
            continue;
        }
        has = row_bytes(cur, &after);
        sqlite3_reset(cur);
        sqlite3_clear_bindings(cur);
        if (had < 0 || has < 0) {
            rc = fs_err_set(err, FS_ENOMEM, "out of memory");
            break;
        }
        if (had != has || before.len != after.len ||
            (before.len && memcmp(before.data, after.data, before.len) != 0))
            problem(v, "record %s: the records view differs from its entries", id);
    }
    if (!rc && r != SQLITE_DONE)
        problem(v, "records: unreadable (%s)", sqlite3_errstr(r));
    sqlite3_exec(v->s->db, "ROLLBACK TO verify_view; RELEASE verify_view", NULL, NULL, NULL);
out:
    sqlite3_finalize(ids);
    sqlite3_finalize(cur);
    sqlite3_finalize(own);
    fs_buf_release(&before);
    fs_buf_release(&after);
    return rc;
}

/* One receipt: the server's signature over what its row says. */
static void
check_receipt(struct verify *v, sqlite3_stmt *st, const unsigned char *pk, uint64_t own_have)
{
    const unsigned char *feed = sqlite3_column_blob(st, 0);
    const char *text = (const char *)sqlite3_column_text(st, 3);
    uint64_t have = (uint64_t)sqlite3_column_int64(st, 1), signed_have;
    unsigned char f[PROTO_KEY_BYTES], head[PROTO_HASH_BYTES];
    char short_feed[17] = "?";
    json_t *in = NULL, *h;
    struct fs_err e2;
    int head_ok;

    if (sqlite3_column_bytes(st, 0) != PROTO_KEY_BYTES) {
        problem(v, "receipts: a malformed feed id");
        return;
    }
    proto_hex_encode(feed, 8, short_feed);
    if (!text)
        return; /* none kept (nothing was ever receipted) */
    if (!pk) {
        problem(v, "receipt of feed %s: no server key is pinned to check it with", short_feed);
        return;
    }
    if (proto_signed_open(PROTO_TAG_RECEIPT, text, (size_t)sqlite3_column_bytes(st, 3), pk,
                          (void **)&in, &e2)) {
        problem(v, "receipt of feed %s: the server's signature does not verify", short_feed);
        return;
    }
    h = json_object_get(in, "head");
    head_ok = json_is_null(h) ? sqlite3_column_type(st, 2) == SQLITE_NULL
                              : proto_json_hex(h, head, PROTO_HASH_BYTES) == FS_OK &&
                                    sqlite3_column_bytes(st, 2) == PROTO_HASH_BYTES &&
                                    memcmp(head, sqlite3_column_blob(st, 2), PROTO_HASH_BYTES) == 0;
    if (proto_json_hex(json_object_get(in, "feed"), f, PROTO_KEY_BYTES) ||
        memcmp(f, feed, PROTO_KEY_BYTES) != 0 ||
        proto_json_uint(json_object_get(in, "have_seq"), 0, &signed_have) || signed_have != have ||
        !head_ok)
        problem(v, "receipt of feed %s: the stored row differs from the signed receipt",
                short_feed);
    else if (memcmp(feed, v->s->pk, PROTO_KEY_BYTES) == 0 && have > own_have)
        problem(v, "receipt of feed %s: covers seq %llu, but this store holds %llu", short_feed,
                (unsigned long long)have, (unsigned long long)own_have);
    json_decref(in);
}

static enum fs_rc
check_receipts(struct verify *v, struct fs_err *err)
{
    unsigned char pk[PROTO_KEY_BYTES];
    struct store_feed_info fi;
    sqlite3_stmt *st = NULL;
    char *pinned = NULL;
    int has_pk = 0, r;
    enum fs_rc rc;

    rc = store_setting_get(v->s, "server_key", &pinned, err);
    if (rc)
        return rc;
    if (pinned) {
        if (proto_hex_decode(pinned, strlen(pinned), pk, PROTO_KEY_BYTES) == FS_OK)
            has_pk = 1;
        else
            problem(v, "settings: the pinned server key is malformed");
        free(pinned);
    }
    rc = store_feed_info(v->s, v->s->pk, &fi, err);
    if (rc)
        return rc;
    r = sqlite3_prepare_v2(v->s->db, "SELECT feed, have_seq, head, receipt FROM receipts", -1, &st,
                           NULL);
    if (r != SQLITE_OK)
        return store_sqlerr(v->s, r, "checking receipts", err);
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
        check_receipt(v, st, has_pk ? pk : NULL, fi.have_seq);
    if (r != SQLITE_DONE)
        problem(v, "receipts: unreadable (%s)", sqlite3_errstr(r));
    sqlite3_finalize(st);
    return FS_OK;
}

enum fs_rc
store_verify(struct store *s, store_problem_cb cb, void *ctx, uint64_t *problems, uint64_t *entries,
             struct fs_err *err)
{
    struct verify v = {s, cb, ctx, 0};
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    *entries = 0;
    rc = check_integrity(&v, err);
    if (rc)
        goto out;
    r = sqlite3_prepare_v2(s->db, "SELECT feed, have_seq, head, flags FROM feeds ORDER BY feed", -1,
                           &st, NULL);
    if (r != SQLITE_OK) {
        rc = store_sqlerr(s, r, "checking feeds", err);
        goto out;
    }
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != PROTO_KEY_BYTES) {
            problem(&v, "feeds: a malformed feed id");
            continue;
        }
        rc = check_feed(&v, sqlite3_column_blob(st, 0), (uint64_t)sqlite3_column_int64(st, 1),
                        sqlite3_column_blob(st, 2), sqlite3_column_bytes(st, 2),
                        (sqlite3_column_int(st, 3) & STORE_FEED_PARTIAL) != 0, entries, err);
        if (rc)
            goto out;
    }
    if (r != SQLITE_DONE)
        problem(&v, "feeds: unreadable (%s)", sqlite3_errstr(r));
    rc = check_view(&v, err);
    if (!rc)
        rc = check_receipts(&v, err);
out:
    sqlite3_finalize(st);
    *problems = v.problems;
    return rc;
}
