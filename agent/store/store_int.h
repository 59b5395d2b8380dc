/*
 * Private to fs_store: the definition of struct store and the helpers its .c
 * files share. Nothing outside agent/store/ includes this.
 */
#ifndef STORE_INT_H
#define STORE_INT_H

#include <sqlite3.h>

#include "fs_buf.h"
#include "store.h"

/* How many of a record's own attachments the server does not hold yet, as
 * a column of a query over "records r". */
#define STORE_BLOBS_WAITING                                                                        \
    "(SELECT count(*) FROM blob_refs b JOIN blobs x ON x.hash = b.hash"                            \
    " WHERE b.record_id = r.id AND b.own = 1 AND x.uploaded = 0)"

/* Prepared statements kept for the life of the handle (hot paths). */
enum store_stmt {
    ST_SELF_HEAD,
    ST_ENTRY_INSERT,
    ST_FEED_HEAD_SET,
    ST_RECORD_REVS,
    ST_RECORD_UPSERT,
    ST_ENTRY_CONTENT,
    ST_ENTRY_HASH,
    ST_RECORD_GET,
    ST_COUNT
};

struct store {
    sqlite3 *db;
    char *home;
    unsigned char pk[PROTO_KEY_BYTES];
    unsigned char *sk; /* sodium_malloc'd PROTO_SECRET_BYTES, wiped on close */
    int in_tx;         /* an explicit store_begin is open */
    sqlite3_stmt *st[ST_COUNT];
    struct fs_buf ebuf;         /* scratch: entry bytes */
    struct fs_buf cbuf;         /* scratch: content bytes */
    struct proto_uuid7_gen ids; /* new record ids sort in creation order */
};

/* Maps an SQLite result to an fs_rc and a sentence naming what failed:
 * SQLITE_FULL and I/O errors are FS_EIO ("not saved"), corruption is
 * FS_ECORRUPT, a busy database FS_EAGAIN. */
enum fs_rc store_sqlerr(struct store *s, int sqlrc, const char *what, struct fs_err *err);

/* The cached statement of that kind, reset and with bindings cleared. */
FS_WUR enum fs_rc store_stmt(struct store *s, enum store_stmt which, sqlite3_stmt **out,
                             struct fs_err *err);

/* Runs SQL without results. */
FS_WUR enum fs_rc store_exec(struct store *s, const char *sql, struct fs_err *err);

/* Creates or upgrades the schema to the current version (store_schema.c). */
FS_WUR enum fs_rc store_schema_migrate(struct store *s, struct fs_err *err);

/* Registers the attachments of content c (a revision of record id): blob
 * rows and references; own ones must have their file here (store_blobs.c). */
FS_WUR enum fs_rc store_blob_refs_add(struct store *s, const char *id,
                                      const struct proto_content *c, int own, struct fs_err *err);

/* Recomputes the records view row of id from every revision stored.
 * known/known_hash: content already in hand for that revision, to skip a
 * parse (may be NULL). own_seq: the seq of an own revision just appended. */
FS_WUR enum fs_rc store_record_refresh(struct store *s, const char *id,
                                       const struct proto_content *known,
                                       const unsigned char *known_hash, uint64_t own_seq,
                                       struct fs_err *err);

#endif
