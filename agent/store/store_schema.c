/* The store's schema and its migrations, applied in order by user_version. */
#include "store_int.h"

#include <stdio.h>

/* Migration i brings the schema from version i to i + 1. Never edit a
 * migration that has shipped; append a new one. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE settings("
    "  key TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE feeds("
    "  feed BLOB PRIMARY KEY CHECK (length(feed) = 32),"
    "  name TEXT,"
    "  role TEXT NOT NULL DEFAULT 'researcher' CHECK (role IN ('researcher','coordinator')),"
    "  is_self INTEGER NOT NULL DEFAULT 0,"
    "  have_seq INTEGER NOT NULL DEFAULT 0," /* highest contiguous seq held here */
    "  head BLOB,"                           /* hash of entry have_seq */
    "  flags INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    /* A rowid table: entries are large (about 1.3 KB), and a WITHOUT ROWID
     * table spreads rows that size thinly over its pages. Rows arrive in seq
     * order, so the rowid keeps a feed's entries together anyway. */
    "CREATE TABLE entries("
    "  feed BLOB NOT NULL REFERENCES feeds(feed),"
    "  seq INTEGER NOT NULL,"
    "  hash BLOB NOT NULL,"
    "  entry BLOB NOT NULL," /* the signed bytes, verbatim */
    "  sig BLOB NOT NULL,"
    "  content BLOB," /* NULL for a delete, or redacted */
    "  record_id TEXT NOT NULL,"
    "  gen INTEGER NOT NULL,"
    "  parent BLOB,"
    "  op INTEGER NOT NULL,"
    "  content_hash BLOB,"
    "  UNIQUE (feed, seq)"
    ");"
    "CREATE INDEX entries_record ON entries(record_id);"
    "CREATE TABLE records("
    "  id TEXT PRIMARY KEY,"
    "  state INTEGER NOT NULL,"
    "  owner BLOB,"
    "  winner BLOB," /* hash of the winning revision */
    "  winner_feed BLOB,"
    "  winner_seq INTEGER,"
    "  gen INTEGER,"
    "  kind TEXT,"
    "  observed_ms INTEGER,"
    "  n_conflicts INTEGER NOT NULL DEFAULT 0,"
    "  last_own_seq INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE TABLE imports("
    "  file_hash BLOB PRIMARY KEY,"
    "  name TEXT,"
    "  at TEXT NOT NULL,"
    "  count INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE receipts("
    "  feed BLOB PRIMARY KEY,"
    "  have_seq INTEGER NOT NULL,"
    "  head BLOB,"
    "  receipt TEXT," /* the signed receipt as received */
    "  at TEXT NOT NULL"
    ") WITHOUT ROWID;",
    /* 1 -> 2: the conflicting revisions of a record (hashes, best first). */
    "ALTER TABLE records ADD COLUMN conflict_revs BLOB;",
    /* 2 -> 3: attachments. A blob is a file in blobs/, content-addressed;
     * uploaded: the server holds it durably; local: the file is here. */
    "CREATE TABLE blobs("
    "  hash BLOB PRIMARY KEY,"
    "  size INTEGER NOT NULL,"
    "  uploaded INTEGER NOT NULL DEFAULT 0,"
    "  local INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE TABLE blob_refs("
    "  record_id TEXT NOT NULL,"
    "  hash BLOB NOT NULL,"
    "  own INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (record_id, hash)"
    ") WITHOUT ROWID;"
    "CREATE INDEX blob_refs_hash ON blob_refs(hash);",
};

#define SCHEMA_VERSION ((int)FS_ARRAY_LEN(migrations))

/* Whether the database holds any table (a store, not a new file). */
static int
has_tables(struct store *s)
{
    sqlite3_stmt *st = NULL;
    int found = 0;

    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1", -1,
                           &st, NULL) == SQLITE_OK)
        found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

enum fs_rc
store_schema_migrate(struct store *s, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int ver = 0, i, r;
    enum fs_rc rc;
    char sql[64];

    rc = store_exec(s, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    r = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
    if (r == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        ver = sqlite3_column_int(st, 0);
    else {
        rc =
            store_sqlerr(s, r == SQLITE_OK ? sqlite3_errcode(s->db) : r, "reading the schema", err);
        sqlite3_finalize(st);
        goto fail;
    }
    sqlite3_finalize(st);
    if (ver > SCHEMA_VERSION) {
        rc = fs_err_set(err, FS_ECORRUPT,
                        "store schema %d is newer than this fieldsync knows (%d); upgrade "
                        "fieldsync",
                        ver, SCHEMA_VERSION);
        goto fail;
    }
    for (i = ver; i < SCHEMA_VERSION; i++) {
        rc = store_exec(s, migrations[i], err);
        if (rc == FS_EINTERNAL && has_tables(s)) {
            /* The version stamp (page 1) disagrees with the tables: damage. */
            rc = fs_err_set(err, FS_ECORRUPT,
                            "the store database is damaged (its schema version %d does not match "
                            "its tables); nothing was changed — run 'fieldsync verify' and keep "
                            "a copy of the folder",
                            ver);
        }
        if (rc)
            goto fail;
    }
    if (ver != SCHEMA_VERSION) {
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
        rc = store_exec(s, sql, err);
        if (rc)
            goto fail;
    }
    return store_exec(s, "COMMIT", err);
fail:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
