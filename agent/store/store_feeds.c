/* Other feeds in the store: a coordinator's pull (whole feeds, contiguous)
 * and corrections (single entries of coordinators' feeds). Entries arrive
 * verified; the store checks that they fit what it holds. */
#include "store_int.h"

#include "proto_auth.h"

#include <stdlib.h>
#include <string.h>

enum fs_rc
store_feed_info(struct store *s, const unsigned char feed[PROTO_KEY_BYTES],
                struct store_feed_info *out, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;

    memset(out, 0, sizeof *out);
    r = sqlite3_prepare_v2(s->db,
                           "SELECT have_seq, head, flags, role = 'coordinator' FROM feeds"
                           " WHERE feed = ?1",
                           -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
        r = sqlite3_step(st);
    }
    if (r == SQLITE_ROW) {
        out->known = 1;
        out->have_seq = (uint64_t)sqlite3_column_int64(st, 0);
        if (sqlite3_column_bytes(st, 1) == PROTO_HASH_BYTES) {
            out->has_head = 1;
            memcpy(out->head, sqlite3_column_blob(st, 1), PROTO_HASH_BYTES);
        }
        out->flags = (unsigned)sqlite3_column_int(st, 2);
        out->coordinator = sqlite3_column_int(st, 3);
    }
    sqlite3_finalize(st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? FS_OK : store_sqlerr(s, r, "reading a feed", err);
}

enum fs_rc
store_feed_upsert(struct store *s, const unsigned char feed[PROTO_KEY_BYTES], const char *name,
                  int coordinator, unsigned set_flags, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;

    if (memcmp(feed, s->pk, PROTO_KEY_BYTES) == 0)
        return FS_OK; /* the own feed's row is the store's own business */
    r = sqlite3_prepare_v2(s->db,
                           "INSERT INTO feeds(feed, name, role, flags) VALUES (?1, ?2, ?3, ?4)"
                           " ON CONFLICT(feed) DO UPDATE SET"
                           " name = coalesce(excluded.name, feeds.name), role = excluded.role,"
                           " flags = feeds.flags | excluded.flags",
                           -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
        if (name)
            sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, coordinator ? "coordinator" : "researcher", -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, (int)set_flags);
        r = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? FS_OK : store_sqlerr(s, r, "saving a feed", err);
}

/* The hash held at (feed, seq): 1 and out filled when held, 0 when not. */
static int
held_hash(struct store *s, const unsigned char *feed, uint64_t seq,
          unsigned char out[PROTO_HASH_BYTES], int *sqlrc)
{
    sqlite3_stmt *st;
    struct fs_err ignored;
    int r, found = 0;

    if (store_stmt(s, ST_ENTRY_HASH, &st, &ignored)) {
        *sqlrc = sqlite3_errcode(s->db);
        return 0;
    }
    sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    r = sqlite3_step(st);
    if (r == SQLITE_ROW && sqlite3_column_bytes(st, 0) == PROTO_HASH_BYTES) {
        memcpy(out, sqlite3_column_blob(st, 0), PROTO_HASH_BYTES);
        found = 1;
    }
    sqlite3_reset(st);
    *sqlrc = (r == SQLITE_ROW || r == SQLITE_DONE) ? SQLITE_OK : r;
    return found;
}

enum fs_rc
store_heartbeat(struct store *s, char *line, struct fs_err *err)
{
    struct store_feed_info fi;
    struct proto_heartbeat hb;
    unsigned char held[PROTO_HASH_BYTES];
    enum fs_rc rc;
    int sqlrc = SQLITE_OK;

    rc = store_feed_info(s, s->pk, &fi, err);
    if (rc)
        return rc;
    memset(&hb, 0, sizeof hb);
    memcpy(hb.feed, s->pk, PROTO_KEY_BYTES);
    hb.seq = fi.have_seq;
    if (hb.seq) {
        /* A damaged head would read as a fork at the server: say it here. */
        if (!fi.has_head || !held_hash(s, s->pk, hb.seq, held, &sqlrc) ||
            memcmp(held, fi.head, PROTO_HASH_BYTES) != 0)
            return sqlrc != SQLITE_OK && fi.has_head
                       ? store_sqlerr(s, sqlrc, "reading the feed's head", err)
                       : fs_err_set(err, FS_ECORRUPT,
                                    "the store is damaged: its head does not match entry %llu;"
                                    " run 'fieldsync verify' and keep a copy of the folder",
                                    (unsigned long long)hb.seq);
        memcpy(hb.head, held, PROTO_HASH_BYTES);
    }
    hb.at_ms = store_now_ms();
    proto_heartbeat_line(&hb, s->sk, line);
    return FS_OK;
}

static enum fs_rc
insert_entry(struct store *s, const unsigned char *feed, const struct store_new_entry *e,
             struct fs_err *err)
{
    sqlite3_stmt *st;
    enum fs_rc rc;
    int r;

    rc = store_stmt(s, ST_ENTRY_INSERT, &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)e->parsed->seq);
    sqlite3_bind_blob(st, 3, e->hash, PROTO_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, e->entry, (int)e->entry_len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, e->sig, PROTO_SIG_BYTES, SQLITE_STATIC);
    if (e->content_len)
        sqlite3_bind_blob(st, 6, e->content, (int)e->content_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, e->parsed->record_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)e->parsed->gen);
    if (e->parsed->has_parent)
        sqlite3_bind_blob(st, 9, e->parsed->parent, PROTO_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_int(st, 10, (int)e->parsed->op);
    if (e->parsed->has_content)
        sqlite3_bind_blob(st, 11, e->parsed->content_hash, PROTO_HASH_BYTES, SQLITE_STATIC);
    r = sqlite3_step(st);
    sqlite3_reset(st);
    if (r != SQLITE_DONE)
        return store_sqlerr(s, r, "saving an entry", err);
    /* Attachments of other feeds' records: known, to be downloaded. */
    if (e->content_parsed)
        return e->content_parsed->n_attachments
                   ? store_blob_refs_add(s, e->parsed->record_id, e->content_parsed, 0, err)
                   : FS_OK;
    if (e->parsed->has_content && e->content_len) {
        struct proto_content c;

        if (proto_content_parse(e->content, e->content_len, &c, NULL) == FS_OK) {
            rc = c.n_attachments ? store_blob_refs_add(s, e->parsed->record_id, &c, 0, err) : FS_OK;
            proto_content_release(&c);
            return rc;
        }
    }
    return FS_OK;
}

struct touched {
    const char *id;
    size_t at; /* index in the batch */
};

/* Record order, then batch order. */
static int
by_record(const void *a, const void *b)
{
    const struct touched *x = a, *y = b;
    int c = strcmp(x->id, y->id);

    return c ? c : (x->at > y->at) - (x->at < y->at);
}

/* Refreshes the records view of every record the entries touch, once each;
 * the content the caller parsed, of each record's last entry here (usually
 * the winner), spares the refresh a parse. */
static enum fs_rc
refresh_touched(struct store *s, const struct store_new_entry *es, size_t n, struct fs_err *err)
{
    struct touched *t = malloc((n ? n : 1) * sizeof *t);
    size_t i;
    enum fs_rc rc = FS_OK;

    if (!t)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        t[i].id = es[i].parsed->record_id;
        t[i].at = i;
    }
    qsort(t, n, sizeof *t, by_record);
    for (i = 0; !rc && i < n; i++) {
        const struct store_new_entry *e = &es[t[i].at];

        if (i + 1 < n && strcmp(t[i].id, t[i + 1].id) == 0)
            continue; /* not the record's last entry here */
        rc = store_record_refresh(s, t[i].id, e->content_parsed, e->content_parsed ? e->hash : NULL,
                                  0, err);
    }
    free(t);
    return rc;
}

enum fs_rc
store_feed_append(struct store *s, const unsigned char feed[PROTO_KEY_BYTES],
                  const struct store_new_entry *es, size_t n, struct fs_err *err)
{
    struct store_feed_info fi;
    unsigned char head[PROTO_HASH_BYTES], held[PROTO_HASH_BYTES];
    char fhex[17];
    uint64_t have;
    sqlite3_stmt *st = NULL;
    size_t i;
    enum fs_rc rc;
    int r, sqlrc;

    if (n == 0)
        return FS_OK;
    if (memcmp(feed, s->pk, PROTO_KEY_BYTES) == 0)
        return fs_err_set(err, FS_EPROTO, "the server offered this device's own feed back");
    proto_hex_encode(feed, 8, fhex);
    rc = store_exec(s, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    rc = store_feed_info(s, feed, &fi, err);
    if (rc)
        goto fail;
    have = fi.have_seq;
    memcpy(head, fi.head, sizeof head);
    for (i = 0; i < n; i++) {
        const struct store_new_entry *e = &es[i];
        uint64_t seq = e->parsed->seq;

        if (seq != have + 1) {
            rc = fs_err_set(err, FS_EPROTO, "feed %s: expected seq %llu, got %llu", fhex,
                            (unsigned long long)(have + 1), (unsigned long long)seq);
            goto fail;
        }
        if (have > 0 &&
            (!e->parsed->has_prev || memcmp(e->parsed->prev, head, PROTO_HASH_BYTES) != 0)) {
            rc = fs_err_set(err, FS_EPROTO, "feed %s seq %llu: does not chain onto seq %llu", fhex,
                            (unsigned long long)seq, (unsigned long long)have);
            goto fail;
        }
        if (held_hash(s, feed, seq, held, &sqlrc)) {
            /* Held in part before (a correction): must be the same entry. */
            if (memcmp(held, e->hash, PROTO_HASH_BYTES) != 0) {
                rc = fs_err_set(err, FS_EPROTO,
                                "feed %s seq %llu: differs from the entry held here (a fork)", fhex,
                                (unsigned long long)seq);
                goto fail;
            }
        } else if (sqlrc != SQLITE_OK) {
            rc = store_sqlerr(s, sqlrc, "reading an entry", err);
            goto fail;
        } else {
            rc = insert_entry(s, feed, e, err);
            if (rc)
                goto fail;
        }
        have = seq;
        memcpy(head, e->hash, sizeof head);
    }
    r = sqlite3_prepare_v2(s->db, "UPDATE feeds SET have_seq = ?2, head = ?3 WHERE feed = ?1", -1,
                           &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)have);
        sqlite3_bind_blob(st, 3, head, PROTO_HASH_BYTES, SQLITE_STATIC);
        r = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) {
        rc = store_sqlerr(s, r, "advancing a feed", err);
        goto fail;
    }
    rc = refresh_touched(s, es, n, err);
    if (rc)
        goto fail;
    return store_exec(s, "COMMIT", err);
fail:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

enum fs_rc
store_feed_add_sparse(struct store *s, const unsigned char feed[PROTO_KEY_BYTES],
                      const struct store_new_entry *es, size_t n, struct fs_err *err)
{
    unsigned char held[PROTO_HASH_BYTES];
    char fhex[17];
    size_t i;
    enum fs_rc rc;
    int sqlrc;

    if (memcmp(feed, s->pk, PROTO_KEY_BYTES) == 0)
        return FS_OK;
    proto_hex_encode(feed, 8, fhex);
    rc = store_exec(s, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    for (i = 0; i < n; i++) {
        if (held_hash(s, feed, es[i].parsed->seq, held, &sqlrc)) {
            if (memcmp(held, es[i].hash, PROTO_HASH_BYTES) != 0) {
                rc = fs_err_set(err, FS_EPROTO,
                                "feed %s seq %llu: differs from the entry held here (a fork)", fhex,
                                (unsigned long long)es[i].parsed->seq);
                goto fail;
            }
            continue;
        }
        if (sqlrc != SQLITE_OK) {
            rc = store_sqlerr(s, sqlrc, "reading an entry", err);
            goto fail;
        }
        rc = insert_entry(s, feed, &es[i], err);
        if (rc)
            goto fail;
    }
    rc = refresh_touched(s, es, n, err);
    if (rc)
        goto fail;
    return store_exec(s, "COMMIT", err);
fail:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
