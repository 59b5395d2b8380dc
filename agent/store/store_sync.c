/* What sync needs of the store: entries in order, receipts, the own role. */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

enum fs_rc
store_feed_entries(struct store *s, const unsigned char feed[PROTO_KEY_BYTES], uint64_t from,
                   uint64_t to, store_entry_cb cb, void *ctx, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;

    r = sqlite3_prepare_v2(s->db,
                           "SELECT seq, hash, entry, sig, content, content_hash FROM entries"
                           " WHERE feed = ?1 AND seq >= ?2 AND seq <= ?3 ORDER BY seq",
                           -1, &st, NULL);
    if (r != SQLITE_OK)
        return store_sqlerr(s, r, "reading entries", err);
    sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)from);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)(to > PROTO_MAX_SAFE_INT ? PROTO_MAX_SAFE_INT : to));
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_entry_row e;

        if (sqlite3_column_bytes(st, 1) != PROTO_HASH_BYTES ||
            sqlite3_column_bytes(st, 3) != PROTO_SIG_BYTES ||
            (sqlite3_column_type(st, 5) != SQLITE_NULL &&
             sqlite3_column_bytes(st, 5) != PROTO_HASH_BYTES)) {
            sqlite3_finalize(st);
            return fs_err_set(err, FS_ECORRUPT,
                              "the store holds a malformed entry; run 'fieldsync verify'");
        }
        e.seq = (uint64_t)sqlite3_column_int64(st, 0);
        e.hash = sqlite3_column_blob(st, 1);
        e.entry = sqlite3_column_blob(st, 2);
        e.entry_len = (size_t)sqlite3_column_bytes(st, 2);
        e.sig = sqlite3_column_blob(st, 3);
        e.content = sqlite3_column_blob(st, 4);
        e.content_len = (size_t)sqlite3_column_bytes(st, 4);
        e.content_hash = sqlite3_column_blob(st, 5);
        if (cb(ctx, &e)) {
            r = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? FS_OK : store_sqlerr(s, r, "reading entries", err);
}

enum fs_rc
store_receipt_get(struct store *s, const unsigned char feed[PROTO_KEY_BYTES],
                  struct store_receipt *out, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;
    enum fs_rc rc = FS_OK;

    memset(out, 0, sizeof *out);
    r = sqlite3_prepare_v2(
        s->db, "SELECT have_seq, head, receipt, at FROM receipts WHERE feed = ?1", -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
        r = sqlite3_step(st);
    }
    if (r == SQLITE_ROW) {
        out->have_seq = (uint64_t)sqlite3_column_int64(st, 0);
        if (sqlite3_column_bytes(st, 1) == PROTO_HASH_BYTES) {
            out->has_head = 1;
            memcpy(out->head, sqlite3_column_blob(st, 1), PROTO_HASH_BYTES);
        }
        if (sqlite3_column_text(st, 2)) {
            out->text = strdup((const char *)sqlite3_column_text(st, 2));
            if (!out->text)
                rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        }
        snprintf(out->at, sizeof out->at, "%s", (const char *)sqlite3_column_text(st, 3));
    } else if (r != SQLITE_DONE) {
        rc = store_sqlerr(s, r, "reading a receipt", err);
    }
    sqlite3_finalize(st);
    return rc;
}

void
store_receipt_release(struct store_receipt *r)
{
    free(r->text);
    r->text = NULL;
}

enum fs_rc
store_receipt_put(struct store *s, const unsigned char feed[PROTO_KEY_BYTES], uint64_t have_seq,
                  const unsigned char *head, const char *text, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    char at[PROTO_TIME_MAX_LEN];
    int r;

    proto_time_format_ms(store_now_ms(), at);
    r = sqlite3_prepare_v2(s->db,
                           "INSERT INTO receipts(feed, have_seq, head, receipt, at)"
                           " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(feed) DO UPDATE SET"
                           " have_seq = excluded.have_seq, head = excluded.head,"
                           " receipt = excluded.receipt, at = excluded.at"
                           " WHERE excluded.have_seq >= receipts.have_seq",
                           -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)have_seq);
        if (head)
            sqlite3_bind_blob(st, 3, head, PROTO_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, text, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, at, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? FS_OK : store_sqlerr(s, r, "saving a receipt", err);
}

enum fs_rc
store_self_role_set(struct store *s, const char *role, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;

    r = sqlite3_prepare_v2(s->db, "UPDATE feeds SET role = ?2 WHERE feed = ?1", -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, s->pk, PROTO_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, role, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? FS_OK : store_sqlerr(s, r, "saving the role", err);
}
