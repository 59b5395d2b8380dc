/* The SQLite backend of the server's storage operations (the embedded default):
 * one data folder holding server.db, WAL with synchronous=FULL. Writers are
 * serialised by SQLite's write lock (BEGIN IMMEDIATE), which is the row lock
 * on a feed's head that the contract asks for, and more. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto_content.h"
#include "proto_entry.h"
#include "proto_merge.h"
#include "srv_db.h"

/* Prepared statements are kept per handle, keyed by their SQL text's address
 * (every query here is a string literal): preparing costs more than running
 * most of them. */
#define STMT_CACHE 64

struct checkpointer;

struct srv_db {
    sqlite3 *db;
    char *dir;                 /* the data folder */
    struct checkpointer *ckpt; /* its checkpoints are done there (below), or NULL */
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } cache[STMT_CACHE];
    size_t ncache;
};

/* Migration i brings the schema from version i to i + 1; never edit one
 * that has shipped. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE IF NOT EXISTS feeds("
    "  feed BLOB PRIMARY KEY CHECK (length(feed) = 32),"
    "  project TEXT NOT NULL,"
    "  role TEXT NOT NULL CHECK (role IN ('researcher','coordinator')),"
    "  name TEXT NOT NULL,"
    "  have_seq INTEGER NOT NULL DEFAULT 0,"
    "  head BLOB,"
    "  revoked INTEGER NOT NULL DEFAULT 0,"
    "  accept_through INTEGER NOT NULL DEFAULT 0,"
    "  flags INTEGER NOT NULL DEFAULT 0,"
    "  fork_seq INTEGER NOT NULL DEFAULT 0,"
    "  enrolled_ms INTEGER NOT NULL,"
    "  last_contact_ms INTEGER NOT NULL DEFAULT 0,"
    "  receipt_seq INTEGER NOT NULL DEFAULT 0,"
    "  attested_seq INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS entries("
    "  feed BLOB NOT NULL REFERENCES feeds(feed),"
    "  seq INTEGER NOT NULL,"
    "  hash BLOB NOT NULL,"
    "  entry BLOB NOT NULL,"
    "  sig BLOB NOT NULL,"
    "  content BLOB,"
    "  record_id TEXT NOT NULL,"
    "  gen INTEGER NOT NULL,"
    "  parent BLOB,"
    "  op INTEGER NOT NULL,"
    "  received_ms INTEGER NOT NULL,"
    "  UNIQUE (feed, seq)" /* a rowid table: entries are too large for WITHOUT ROWID */
    ");"
    "CREATE INDEX IF NOT EXISTS entries_record ON entries(record_id);"
    "CREATE TABLE IF NOT EXISTS records("
    "  project TEXT NOT NULL,"
    "  id TEXT NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  owner BLOB,"
    "  winner BLOB,"
    "  winner_feed BLOB,"
    "  winner_seq INTEGER,"
    "  gen INTEGER,"
    "  n_conflicts INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (project, id)"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS tokens("
    "  hash BLOB PRIMARY KEY,"
    "  project TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL,"
    "  used_by BLOB,"
    "  used_ms INTEGER"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS nonces("
    "  feed BLOB NOT NULL,"
    "  nonce BLOB NOT NULL,"
    "  ts INTEGER NOT NULL,"
    "  PRIMARY KEY (feed, nonce)"
    ") WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS nonces_ts ON nonces(ts);"
    "CREATE TABLE IF NOT EXISTS audit("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  at_ms INTEGER NOT NULL,"
    "  event TEXT NOT NULL,"
    "  feed BLOB,"
    "  detail TEXT"
    ");"
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END;",
    /* 1 -> 2: corrections, other feeds' revisions of a feed's records, in
     * the order the server committed them per owner; conflict revisions. */
    "CREATE TABLE corrections("
    "  owner BLOB NOT NULL,"
    "  n INTEGER NOT NULL,"
    "  feed BLOB NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  PRIMARY KEY (owner, n)"
    ") WITHOUT ROWID;"
    "CREATE UNIQUE INDEX corrections_entry ON corrections(owner, feed, seq);"
    "ALTER TABLE records ADD COLUMN conflicts BLOB;",
    /* 2 -> 3: attachments. blob_refs: which verified entries name a blob;
     * blobs: the durable offset of an upload, or complete. The bytes are
     * files under blobs/ in the data folder. */
    "CREATE TABLE blob_refs("
    "  project TEXT NOT NULL,"
    "  hash BLOB NOT NULL,"
    "  feed BLOB NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  PRIMARY KEY (project, hash, feed)"
    ") WITHOUT ROWID;"
    "CREATE INDEX blob_refs_feed ON blob_refs(feed);"
    "CREATE TABLE blobs("
    "  hash BLOB PRIMARY KEY,"
    "  offset INTEGER NOT NULL DEFAULT 0,"
    "  complete INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;",
    /* 3 -> 4: heartbeats. attested_seq (there from the start) and the time
     * its heartbeat was written, by the device's clock. */
    "ALTER TABLE feeds ADD COLUMN attested_ms INTEGER NOT NULL DEFAULT 0;",
};

#define SCHEMA_VERSION ((int)FS_ARRAY_LEN(migrations))

static int
user_version(struct srv_db *db)
{
    sqlite3_stmt *st = NULL;
    int v = -1;

    if (sqlite3_prepare_v2(db->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static enum fs_rc
sqlerr(struct srv_db *db, int r, const char *what, struct fs_err *err)
{
    int prim = r & 0xff;

    if (prim == SQLITE_FULL || prim == SQLITE_IOERR)
        return fs_err_set(err, FS_EAGAIN, "storage unavailable while %s (%s)", what,
                          sqlite3_errstr(r));
    if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED)
        return fs_err_set(err, FS_EAGAIN, "database busy while %s", what);
    if (prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB)
        return fs_err_set(err, FS_ECORRUPT, "database damaged while %s", what);
    return fs_err_set(err, FS_EINTERNAL, "database error while %s: %s", what,
                      db && db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(r));
}

static enum fs_rc
exec(struct srv_db *db, const char *sql, struct fs_err *err)
{
    int r = sqlite3_exec(db->db, sql, NULL, NULL, NULL);

    return r == SQLITE_OK ? FS_OK : sqlerr(db, r, "updating the database", err);
}

static void
rollback(struct srv_db *db)
{
    if (!sqlite3_get_autocommit(db->db))
        sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Writers in this process take turns on a mutex before SQLite's write lock:
 * a waiting writer then wakes when the lock is free, instead of sleeping in
 * SQLite's busy handler for up to 100 ms at a time. Recursive, so that a
 * write inside a write transaction (an audit row) needs no special case.
 * Other processes on the same data folder are still kept out by SQLite. */
static pthread_mutex_t write_mutex;
static pthread_once_t write_once = PTHREAD_ONCE_INIT;

static void
write_mutex_init(void)
{
    pthread_mutexattr_t a;

    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&write_mutex, &a);
    pthread_mutexattr_destroy(&a);
}

static void
wlock(void)
{
    pthread_once(&write_once, write_mutex_init);
    pthread_mutex_lock(&write_mutex);
}

static void
wunlock(void)
{
    pthread_mutex_unlock(&write_mutex);
}

static enum fs_rc
begin_write(struct srv_db *db, struct fs_err *err)
{
    enum fs_rc rc;

    wlock();
    rc = exec(db, "BEGIN IMMEDIATE", err);
    if (rc)
        wunlock();
    return rc;
}

static enum fs_rc
commit_write(struct srv_db *db, struct fs_err *err)
{
    enum fs_rc rc = exec(db, "COMMIT", err);

    if (rc)
        rollback(db);
    wunlock();
    return rc;
}

static void
rollback_write(struct srv_db *db)
{
    rollback(db);
    wunlock();
}

static enum fs_rc
prep(struct srv_db *db, const char *sql, sqlite3_stmt **st, struct fs_err *err)
{
    size_t i;
    int r;

    for (i = 0; i < db->ncache; i++) {
        if (db->cache[i].sql == sql) {
            *st = db->cache[i].st;
            return FS_OK;
        }
    }
    r = sqlite3_prepare_v3(db->db, sql, -1, db->ncache < STMT_CACHE ? SQLITE_PREPARE_PERSISTENT : 0,
                           st, NULL);
    if (r != SQLITE_OK)
        return sqlerr(db, r, "preparing a query", err);
    if (db->ncache < STMT_CACHE) {
        db->cache[db->ncache].sql = sql;
        db->cache[db->ncache].st = *st;
        db->ncache++;
    }
    return FS_OK;
}

/* Done with a statement from prep: a cached one is reset for its next use. */
static void
done(struct srv_db *db, sqlite3_stmt *st)
{
    size_t i;

    if (!st)
        return;
    for (i = 0; i < db->ncache; i++) {
        if (db->cache[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    }
    sqlite3_finalize(st);
}

/* init (create) brings the schema up to date; serving and the other admin
 * commands refuse a schema they do not know. */
static enum fs_rc
migrate(struct srv_db *db, int create, struct fs_err *err)
{
    enum fs_rc rc = FS_OK;
    char sql[64];
    int v, i;

    if (create) {
        rc = exec(db, "BEGIN IMMEDIATE", err);
        if (rc)
            return rc;
    }
    v = user_version(db);
    if (v < 0 || v > SCHEMA_VERSION) {
        rc = fs_err_set(err, FS_ECORRUPT, "server.db has schema %d, this server knows %d", v,
                        SCHEMA_VERSION);
        goto out;
    }
    if (v < SCHEMA_VERSION && !create) {
        rc = fs_err_set(err, FS_EUSAGE,
                        "server.db has schema %d; run 'fieldsync-server init' to bring it to %d", v,
                        SCHEMA_VERSION);
        goto out;
    }
    for (i = v; create && i < SCHEMA_VERSION; i++) {
        rc = exec(db, migrations[i], err);
        if (rc)
            goto out;
    }
    if (create) {
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
        rc = exec(db, sql, err);
        if (!rc)
            rc = exec(db, "COMMIT", err);
    }
out:
    if (rc)
        rollback(db);
    return rc;
}

/* ---- checkpoints off the commit path ---------------------------------------------
 *
 * By default SQLite copies the WAL back into the database in the connection
 * whose commit took it past 1000 pages: under load that is the group
 * committer, and every push of that group waits for the copy and its fsync
 * before it is answered. Here the handles of a process share one checkpointer
 * instead: a commit that leaves the WAL at CKPT_PAGES or more wakes a thread
 * with a connection of its own, which runs a PASSIVE checkpoint (it waits for
 * no writer and no reader, and they do not wait for it). Durability is not
 * concerned: a commit is durable in the WAL (synchronous=FULL) before it
 * returns, checkpoint or not. */
#define CKPT_PAGES 1000

struct checkpointer {
    pthread_mutex_t lock; /* guards wanted and stop */
    pthread_cond_t wake;
    int wanted, stop;
    pthread_t thread;
    sqlite3 *db;    /* its own connection */
    char *path;     /* the database it checkpoints */
    unsigned users; /* handles open on it (under ckpt_lock) */
};

/* The process's checkpointer, if one runs. */
static pthread_mutex_t ckpt_lock = PTHREAD_MUTEX_INITIALIZER;
static struct checkpointer *ckpt_cur;

static int
ckpt_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct checkpointer *k = arg;

    (void)db;
    (void)name;
    if (pages >= CKPT_PAGES) {
        pthread_mutex_lock(&k->lock);
        k->wanted = 1;
        pthread_cond_signal(&k->wake);
        pthread_mutex_unlock(&k->lock);
    }
    return SQLITE_OK;
}

static void *
ckpt_main(void *arg)
{
    struct checkpointer *k = arg;

    pthread_mutex_lock(&k->lock);
    for (;;) {
        while (!k->wanted && !k->stop)
            pthread_cond_wait(&k->wake, &k->lock);
        if (k->stop)
            break;
        k->wanted = 0;
        pthread_mutex_unlock(&k->lock);
        /* A failure (a full disk, say) leaves the frames in the WAL, where they
         * are durable; the next commit past the mark tries again. */
        sqlite3_wal_checkpoint_v2(k->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&k->lock);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

static void
ckpt_free(struct checkpointer *k)
{
    sqlite3_close(k->db);
    free(k->path);
    pthread_cond_destroy(&k->wake);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

/* A checkpointer for path, running; NULL when it cannot be had. */
static struct checkpointer *
ckpt_start(const char *path)
{
    struct checkpointer *k = calloc(1, sizeof *k);

    if (!k)
        return NULL;
    if (pthread_mutex_init(&k->lock, NULL) != 0) {
        free(k);
        return NULL;
    }
    if (pthread_cond_init(&k->wake, NULL) != 0) {
        pthread_mutex_destroy(&k->lock);
        free(k);
        return NULL;
    }
    k->path = strdup(path);
    if (k->path && sqlite3_open_v2(path, &k->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                                   NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(k->db, 1000);
        /* Reading the mode opens the database: until then the connection does
         * not know it is in WAL mode, and would checkpoint nothing. */
        if (sqlite3_exec(k->db, "PRAGMA synchronous = FULL; PRAGMA journal_mode = WAL;", NULL, NULL,
                         NULL) == SQLITE_OK &&
            pthread_create(&k->thread, NULL, ckpt_main, k) == 0)
            return k;
    }
    ckpt_free(k);
    return NULL;
}

/* Hands db's checkpoints to the checkpointer of path, started with the first
 * handle. Where that cannot be (a second database in one process, no thread),
 * db keeps SQLite's own. */
static void
ckpt_attach(struct srv_db *db, const char *path)
{
    pthread_mutex_lock(&ckpt_lock);
    if (!ckpt_cur)
        ckpt_cur = ckpt_start(path);
    if (ckpt_cur && strcmp(ckpt_cur->path, path) == 0) {
        ckpt_cur->users++;
        db->ckpt = ckpt_cur;
        sqlite3_wal_hook(db->db, ckpt_hook, ckpt_cur); /* replaces the automatic checkpoint */
    }
    pthread_mutex_unlock(&ckpt_lock);
}

/* After db's connection is closed: the last handle stops the checkpointer, and
 * closing its connection, the last one, checkpoints what is left. */
static void
ckpt_detach(struct srv_db *db)
{
    struct checkpointer *k = db->ckpt;

    if (!k)
        return;
    pthread_mutex_lock(&ckpt_lock);
    if (--k->users > 0) {
        pthread_mutex_unlock(&ckpt_lock);
        return;
    }
    if (ckpt_cur == k)
        ckpt_cur = NULL;
    pthread_mutex_unlock(&ckpt_lock);
    pthread_mutex_lock(&k->lock);
    k->stop = 1;
    pthread_cond_signal(&k->wake);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    ckpt_free(k);
}

static enum fs_rc
sq_open(const char *where, int create, struct srv_db **out, struct fs_err *err)
{
    struct srv_db *db = calloc(1, sizeof *db);
    char *path = NULL;
    enum fs_rc rc;
    int r;

    if (!db)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    db->dir = strdup(where);
    if (!db->dir || asprintf(&path, "%s/server.db", where) < 0) {
        free(db->dir);
        free(db);
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    }
    r = sqlite3_open_v2(
        path, &db->db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0), NULL);
    if (r != SQLITE_OK) {
        rc = fs_err_set(err, FS_EIO, "cannot open %s/server.db: %s%s", where, sqlite3_errstr(r),
                        create ? "" : " (run 'fieldsync-server init' first)");
        goto fail;
    }
    sqlite3_extended_result_codes(db->db, 1);
    sqlite3_busy_timeout(db->db, 30000);
    rc = exec(db,
              "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
              "PRAGMA trusted_schema = OFF; PRAGMA cache_size = -16384;",
              err);
    if (rc)
        goto fail;
    rc = migrate(db, create, err);
    if (rc)
        goto fail;
    ckpt_attach(db, path);
    free(path);
    *out = db;
    return FS_OK;
fail:
    free(path);
    sqlite3_close(db->db);
    free(db->dir);
    free(db);
    return rc;
}

static void
sq_close(struct srv_db *db)
{
    size_t i;

    if (!db)
        return;
    for (i = 0; i < db->ncache; i++)
        sqlite3_finalize(db->cache[i].st);
    sqlite3_close(db->db);
    ckpt_detach(db);
    free(db->dir);
    free(db);
}

#define KEY_MAGIC    "fieldsync server key v1\n"
#define KEY_TEXT_LEN (sizeof KEY_MAGIC - 1 + 2 * PROTO_SEED_BYTES + 1)

/* The key lives in DATA/server.key, mode 0600, written whole or not at all. */
static enum fs_rc
sq_key_create(struct srv_db *db, const unsigned char *seed, struct fs_err *err)
{
    char *path = NULL, *tmp = NULL, *text = sodium_malloc(KEY_TEXT_LEN + 1);
    int fd = -1, dfd = -1;
    enum fs_rc rc = FS_OK;

    if (!text || asprintf(&path, "%s/server.key", db->dir) < 0 ||
        asprintf(&tmp, "%s/server.key.tmp", db->dir) < 0) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    if (access(path, F_OK) == 0) {
        rc = fs_err_set(err, FS_EEXIST, "%s already exists; a server key is never replaced", path);
        goto out;
    }
    memcpy(text, KEY_MAGIC, sizeof KEY_MAGIC - 1);
    proto_hex_encode(seed, PROTO_SEED_BYTES, text + sizeof KEY_MAGIC - 1);
    text[KEY_TEXT_LEN - 1] = '\n';
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || write(fd, text, KEY_TEXT_LEN) != (ssize_t)KEY_TEXT_LEN || fsync(fd) != 0 ||
        rename(tmp, path) != 0) {
        rc = fs_err_set(err, FS_EIO, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    dfd = open(db->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0)
        rc = fs_err_set(err, FS_EIO, "cannot sync %s: %s", db->dir, strerror(errno));
out:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    if (text)
        sodium_free(text);
    free(path);
    free(tmp);
    return rc;
}

static enum fs_rc
sq_key_load(struct srv_db *db, unsigned char *seed, struct fs_err *err)
{
    char *path = NULL, *text = sodium_malloc(KEY_TEXT_LEN + 2);
    struct stat st;
    ssize_t n;
    int fd = -1;
    enum fs_rc rc = FS_OK;

    if (!text || asprintf(&path, "%s/server.key", db->dir) < 0) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rc = fs_err_set(err, FS_EIO, "cannot open %s: %s (run 'fieldsync-server init')", path,
                        strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        rc = fs_err_set(err, FS_EAUTH, "%s must be a regular file of mode 0600", path);
        goto out;
    }
    n = read(fd, text, KEY_TEXT_LEN + 1);
    if (n != (ssize_t)KEY_TEXT_LEN || memcmp(text, KEY_MAGIC, sizeof KEY_MAGIC - 1) != 0 ||
        proto_hex_decode(text + sizeof KEY_MAGIC - 1, 2 * PROTO_SEED_BYTES, seed, PROTO_SEED_BYTES))
        rc = fs_err_set(err, FS_ECORRUPT, "%s is malformed", path);
out:
    if (fd >= 0)
        close(fd);
    if (text)
        sodium_free(text);
    free(path);
    return rc;
}

static int
copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
    return 0;
}

#define FEED_COLS                                                                                  \
    "feed, project, role, name, have_seq, head, revoked, accept_through, flags, fork_seq,"         \
    " enrolled_ms, last_contact_ms, receipt_seq, attested_seq, attested_ms"

static void
row_feed(sqlite3_stmt *st, struct srv_feed *f)
{
    memset(f, 0, sizeof *f);
    if (sqlite3_column_bytes(st, 0) == PROTO_KEY_BYTES)
        memcpy(f->feed, sqlite3_column_blob(st, 0), PROTO_KEY_BYTES);
    copy_text(f->project, sizeof f->project, sqlite3_column_text(st, 1));
    f->role = strcmp((const char *)sqlite3_column_text(st, 2), "coordinator") == 0
                  ? SRV_ROLE_COORDINATOR
                  : SRV_ROLE_RESEARCHER;
    copy_text(f->name, sizeof f->name, sqlite3_column_text(st, 3));
    f->have_seq = (uint64_t)sqlite3_column_int64(st, 4);
    if (sqlite3_column_bytes(st, 5) == PROTO_HASH_BYTES) {
        f->has_head = 1;
        memcpy(f->head, sqlite3_column_blob(st, 5), PROTO_HASH_BYTES);
    }
    f->revoked = sqlite3_column_int(st, 6);
    f->accept_through = (uint64_t)sqlite3_column_int64(st, 7);
    f->flags = (unsigned)sqlite3_column_int(st, 8);
    f->fork_seq = (uint64_t)sqlite3_column_int64(st, 9);
    f->enrolled_ms = sqlite3_column_int64(st, 10);
    f->last_contact_ms = sqlite3_column_int64(st, 11);
    f->receipt_seq = (uint64_t)sqlite3_column_int64(st, 12);
    f->attested_seq = (uint64_t)sqlite3_column_int64(st, 13);
    f->attested_ms = sqlite3_column_int64(st, 14);
}

static enum fs_rc
audit_in_tx(struct srv_db *db, const char *event, const unsigned char *feed, const char *detail,
            int64_t now_ms, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    rc =
        prep(db, "INSERT INTO audit(at_ms, event, feed, detail) VALUES (?1, ?2, ?3, ?4)", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_text(st, 2, event, -1, SQLITE_STATIC);
    if (feed)
        sqlite3_bind_blob(st, 3, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    if (detail)
        sqlite3_bind_text(st, 4, detail, -1, SQLITE_STATIC);
    r = sqlite3_step(st);
    done(db, st);
    return r == SQLITE_DONE ? FS_OK : sqlerr(db, r, "writing the audit log", err);
}

static enum fs_rc
sq_audit_unlocked(struct srv_db *db, const char *event, const unsigned char *feed,
                  const char *detail, int64_t now_ms, struct fs_err *err)
{
    return audit_in_tx(db, event, feed, detail, now_ms, err);
}

/* An autocommit write: in turn with the process's other writers. */
static enum fs_rc
sq_audit(struct srv_db *db, const char *event, const unsigned char *feed, const char *detail,
         int64_t now_ms, struct fs_err *err)
{
    enum fs_rc rc;

    wlock();
    rc = sq_audit_unlocked(db, event, feed, detail, now_ms, err);
    wunlock();
    return rc;
}

static enum fs_rc
sq_token_add_unlocked(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES],
                      const struct srv_token *t, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    rc = prep(db,
              "INSERT INTO tokens(hash, project, role, name, created_ms, expires_ms)"
              " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, hash, PROTO_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, t->project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, srv_role_name(t->role), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, t->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, t->created_ms);
    sqlite3_bind_int64(st, 6, t->expires_ms);
    r = sqlite3_step(st);
    done(db, st);
    return r == SQLITE_DONE ? FS_OK : sqlerr(db, r, "saving the token", err);
}

/* An autocommit write: in turn with the process's other writers. */
static enum fs_rc
sq_token_add(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES],
             const struct srv_token *t, struct fs_err *err)
{
    enum fs_rc rc;

    wlock();
    rc = sq_token_add_unlocked(db, hash, t, err);
    wunlock();
    return rc;
}

static enum fs_rc
feed_get_in(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES], struct srv_feed *out,
            struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    rc = prep(db, "SELECT " FEED_COLS " FROM feeds WHERE feed = ?1", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        row_feed(st, out);
    done(db, st);
    if (r == SQLITE_DONE)
        return fs_err_set(err, FS_ENOTFOUND, "this device is not enrolled");
    return r == SQLITE_ROW ? FS_OK : sqlerr(db, r, "reading a feed", err);
}

static enum fs_rc
sq_token_redeem(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES],
                const unsigned char feed[PROTO_KEY_BYTES], const char *name, int64_t now_ms,
                struct srv_feed *out, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    char project[SRV_PROJECT_MAX + 1], role[16], tname[PROTO_TEXT_MAX_BYTES + 1];
    int64_t expires;
    int r, used = 0, used_by_me = 0;
    enum fs_rc rc;

    rc = begin_write(db, err);
    if (rc)
        return rc;
    rc = prep(db, "SELECT project, role, name, expires_ms, used_by FROM tokens WHERE hash = ?1",
              &st, err);
    if (rc)
        goto fail;
    sqlite3_bind_blob(st, 1, hash, PROTO_HASH_BYTES, SQLITE_STATIC);
    r = sqlite3_step(st);
    if (r != SQLITE_ROW) {
        done(db, st);
        rc = r == SQLITE_DONE ? fs_err_set(err, FS_EAUTH, "unknown enrollment token")
                              : sqlerr(db, r, "reading a token", err);
        goto fail;
    }
    copy_text(project, sizeof project, sqlite3_column_text(st, 0));
    copy_text(role, sizeof role, sqlite3_column_text(st, 1));
    copy_text(tname, sizeof tname, sqlite3_column_text(st, 2));
    expires = sqlite3_column_int64(st, 3);
    if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
        used = 1;
        used_by_me = sqlite3_column_bytes(st, 4) == PROTO_KEY_BYTES &&
                     memcmp(sqlite3_column_blob(st, 4), feed, PROTO_KEY_BYTES) == 0;
    }
    done(db, st);
    st = NULL;
    if (used && used_by_me) {
        /* The same key again after a lost answer: the same answer. */
        rc = feed_get_in(db, feed, out, err);
        if (rc)
            goto fail;
        return commit_write(db, err);
    }
    if (used) {
        rc = fs_err_set(err, FS_EAUTH, "this enrollment token was already used by another device");
        goto fail;
    }
    if (expires <= now_ms) {
        rc = fs_err_set(err, FS_EAUTH, "this enrollment token has expired");
        goto fail;
    }
    rc = feed_get_in(db, feed, out, NULL);
    if (rc == FS_OK) {
        rc = fs_err_set(err, FS_EEXIST, "this device is already enrolled");
        goto fail;
    }
    rc = prep(db,
              "INSERT INTO feeds(feed, project, role, name, enrolled_ms, last_contact_ms)"
              " VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
              &st, err);
    if (rc)
        goto fail;
    sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, role, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, name && *name ? name : tname, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now_ms);
    r = sqlite3_step(st);
    done(db, st);
    st = NULL;
    if (r != SQLITE_DONE) {
        rc = sqlerr(db, r, "enrolling", err);
        goto fail;
    }
    rc = prep(db, "UPDATE tokens SET used_by = ?2, used_ms = ?3 WHERE hash = ?1", &st, err);
    if (rc)
        goto fail;
    sqlite3_bind_blob(st, 1, hash, PROTO_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_ms);
    r = sqlite3_step(st);
    done(db, st);
    st = NULL;
    if (r != SQLITE_DONE) {
        rc = sqlerr(db, r, "enrolling", err);
        goto fail;
    }
    rc = audit_in_tx(db, "enroll", feed, role, now_ms, err);
    if (!rc)
        rc = feed_get_in(db, feed, out, err);
    if (!rc)
        return commit_write(db, err);
fail:
    rollback_write(db);
    return rc;
}

static enum fs_rc
sq_feed_get(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES], struct srv_feed *out,
            struct fs_err *err)
{
    return feed_get_in(db, feed, out, err);
}

static enum fs_rc
sq_feed_list(struct srv_db *db, const char *project, srv_feed_cb cb, void *ctx, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    struct srv_feed f;
    enum fs_rc rc;
    int r;

    rc = prep(db,
              project ? "SELECT " FEED_COLS " FROM feeds WHERE project = ?1 ORDER BY name, feed"
                      : "SELECT " FEED_COLS " FROM feeds ORDER BY project, name, feed",
              &st, err);
    if (rc)
        return rc;
    if (project)
        sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        row_feed(st, &f);
        if (cb(ctx, &f)) {
            r = SQLITE_DONE;
            break;
        }
    }
    done(db, st);
    return r == SQLITE_DONE ? FS_OK : sqlerr(db, r, "listing feeds", err);
}

/* Runs sql (?1 the feed, ?2 a, ?3 b) and appends an audit row, in one
 * transaction. FS_ENOTFOUND when it changed no row. */
static enum fs_rc
update_feed(struct srv_db *db, const char *sql, const unsigned char feed[PROTO_KEY_BYTES],
            int64_t a, int64_t b, int64_t now_ms, const char *event, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    char detail[64];
    enum fs_rc rc;
    int r;

    rc = begin_write(db, err);
    if (rc)
        return rc;
    rc = prep(db, sql, &st, err);
    if (rc)
        goto fail;
    sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a);
    if (sqlite3_bind_parameter_count(st) >= 3)
        sqlite3_bind_int64(st, 3, b);
    r = sqlite3_step(st);
    done(db, st);
    if (r != SQLITE_DONE) {
        rc = sqlerr(db, r, "updating a feed", err);
        goto fail;
    }
    if (sqlite3_changes(db->db) == 0) {
        rc = fs_err_set(err, FS_ENOTFOUND, "no such feed");
        goto fail;
    }
    if (event) {
        snprintf(detail, sizeof detail, "seq %lld", (long long)a);
        rc = audit_in_tx(db, event, feed, detail, now_ms, err);
        if (rc)
            goto fail;
    }
    return commit_write(db, err);
fail:
    rollback_write(db);
    return rc;
}

static enum fs_rc
sq_feed_revoke(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
               uint64_t accept_through, int64_t now_ms, struct fs_err *err)
{
    return update_feed(db, "UPDATE feeds SET revoked = 1, accept_through = ?2 WHERE feed = ?1",
                       feed, (int64_t)accept_through, 0, now_ms, "revoke", err);
}

static enum fs_rc
sq_feed_flag_fork(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES], uint64_t seq,
                  int64_t now_ms, struct fs_err *err)
{
    return update_feed(db,
                       "UPDATE feeds SET flags = flags | 1,"
                       " fork_seq = CASE WHEN fork_seq = 0 OR fork_seq > ?2 THEN ?2"
                       " ELSE fork_seq END WHERE feed = ?1",
                       feed, (int64_t)seq, 0, now_ms, "fork", err);
}

static enum fs_rc
sq_feed_attest(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES], uint64_t seq,
               int64_t at_ms, int64_t now_ms, struct fs_err *err)
{
    return update_feed(db,
                       "UPDATE feeds SET attested_seq = ?2, attested_ms = ?3 WHERE feed = ?1"
                       " AND (?2 > attested_seq OR (?2 = attested_seq AND ?3 > attested_ms))",
                       feed, (int64_t)seq, at_ms, now_ms, "heartbeat", err);
}

static enum fs_rc
sq_feed_touch_unlocked(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                       uint64_t receipt_seq, int64_t now_ms, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    rc = prep(db,
              "UPDATE feeds SET receipt_seq = max(receipt_seq, ?2), last_contact_ms = ?3"
              " WHERE feed = ?1",
              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)receipt_seq);
    sqlite3_bind_int64(st, 3, now_ms);
    r = sqlite3_step(st);
    done(db, st);
    return r == SQLITE_DONE ? FS_OK : sqlerr(db, r, "updating a feed", err);
}

/* An autocommit write: in turn with the process's other writers. */
static enum fs_rc
sq_feed_touch(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES], uint64_t receipt_seq,
              int64_t now_ms, struct fs_err *err)
{
    enum fs_rc rc;

    wlock();
    rc = sq_feed_touch_unlocked(db, feed, receipt_seq, now_ms, err);
    wunlock();
    return rc;
}

static enum fs_rc
hash_at(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES], uint64_t seq,
        unsigned char out[PROTO_HASH_BYTES], struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    rc = prep(db, "SELECT hash FROM entries WHERE feed = ?1 AND seq = ?2", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)seq);
    r = sqlite3_step(st);
    if (r == SQLITE_ROW && sqlite3_column_bytes(st, 0) == PROTO_HASH_BYTES)
        memcpy(out, sqlite3_column_blob(st, 0), PROTO_HASH_BYTES);
    done(db, st);
    if (r == SQLITE_DONE)
        return fs_err_set(err, FS_ENOTFOUND, "no entry at seq %llu", (unsigned long long)seq);
    return r == SQLITE_ROW ? FS_OK : sqlerr(db, r, "reading an entry", err);
}

static enum fs_rc
sq_entry_hash(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES], uint64_t seq,
              unsigned char out[PROTO_HASH_BYTES], struct fs_err *err)
{
    return hash_at(db, feed, seq, out, err);
}

/* Recomputes the merged view row of one record of project. */
static enum fs_rc
merge_record(struct srv_db *db, const char *project, const char *id, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    struct proto_rev *revs = NULL;
    uint64_t *seqs = NULL;
    unsigned char *cbuf = NULL;
    size_t n = 0, cap = 0;
    struct proto_merge m;
    enum fs_rc rc;
    int r, merged = 0;

    rc = prep(db,
              "SELECT e.feed, e.seq, e.hash, e.gen, e.parent, e.op, f.role = 'coordinator'"
              " FROM entries e JOIN feeds f ON f.feed = e.feed"
              " WHERE e.record_id = ?1 AND f.project = ?2",
              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        struct proto_rev *rv;

        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            struct proto_rev *nr = realloc(revs, nc * sizeof *nr);
            uint64_t *ns;

            if (!nr) {
                rc = fs_err_set(err, FS_ENOMEM, "out of memory");
                goto out;
            }
            revs = nr;
            ns = realloc(seqs, nc * sizeof *ns);
            if (!ns) {
                rc = fs_err_set(err, FS_ENOMEM, "out of memory");
                goto out;
            }
            seqs = ns;
            cap = nc;
        }
        rv = &revs[n];
        memset(rv, 0, sizeof *rv);
        memcpy(rv->feed, sqlite3_column_blob(st, 0), PROTO_KEY_BYTES);
        seqs[n] = (uint64_t)sqlite3_column_int64(st, 1);
        memcpy(rv->hash, sqlite3_column_blob(st, 2), PROTO_HASH_BYTES);
        rv->gen = (uint64_t)sqlite3_column_int64(st, 3);
        if (sqlite3_column_bytes(st, 4) == PROTO_HASH_BYTES) {
            rv->has_parent = 1;
            memcpy(rv->parent, sqlite3_column_blob(st, 4), PROTO_HASH_BYTES);
        }
        rv->op = sqlite3_column_int(st, 5) == PROTO_OP_DELETE ? PROTO_OP_DELETE : PROTO_OP_PUT;
        rv->by_coordinator = sqlite3_column_int(st, 6);
        n++;
    }
    done(db, st);
    st = NULL;
    if (r != SQLITE_DONE) {
        rc = sqlerr(db, r, "reading revisions", err);
        goto out;
    }
    rc = proto_merge_record(revs, n, &m);
    if (rc) {
        rc = fs_err_set(err, rc, "out of memory");
        goto out;
    }
    merged = 1;
    if (m.n_conflicts) {
        size_t k;

        cbuf = malloc(m.n_conflicts * PROTO_HASH_BYTES);
        if (!cbuf) {
            rc = fs_err_set(err, FS_ENOMEM, "out of memory");
            goto out;
        }
        for (k = 0; k < m.n_conflicts; k++)
            memcpy(cbuf + k * PROTO_HASH_BYTES, revs[m.conflicts[k]].hash, PROTO_HASH_BYTES);
    }
    rc = prep(db,
              "INSERT INTO records(project, id, state, owner, winner, winner_feed, winner_seq, gen,"
              " n_conflicts, conflicts) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"
              " ON CONFLICT(project, id) DO UPDATE SET state = excluded.state,"
              " owner = excluded.owner, winner = excluded.winner,"
              " winner_feed = excluded.winner_feed, winner_seq = excluded.winner_seq,"
              " gen = excluded.gen, n_conflicts = excluded.n_conflicts,"
              " conflicts = excluded.conflicts",
              &st, err);
    if (rc)
        goto out;
    sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, (int)m.state);
    if (m.has_owner)
        sqlite3_bind_blob(st, 4, m.owner, PROTO_KEY_BYTES, SQLITE_STATIC);
    if (m.state == PROTO_REC_LIVE) {
        sqlite3_bind_blob(st, 5, revs[m.winner].hash, PROTO_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(st, 6, revs[m.winner].feed, PROTO_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, (int64_t)seqs[m.winner]);
        sqlite3_bind_int64(st, 8, (int64_t)revs[m.winner].gen);
    }
    sqlite3_bind_int64(st, 9, (int64_t)m.n_conflicts);
    if (cbuf)
        sqlite3_bind_blob(st, 10, cbuf, (int)(m.n_conflicts * PROTO_HASH_BYTES), SQLITE_STATIC);
    r = sqlite3_step(st);
    if (r != SQLITE_DONE)
        rc = sqlerr(db, r, "updating the merged view", err);
    if (!rc && m.state == PROTO_REC_CONTESTED) {
        size_t i;

        /* Every feed with a root of this record is flagged for a coordinator. */
        for (i = 0; !rc && i < n; i++) {
            sqlite3_stmt *u = NULL;

            if (revs[i].gen != 1)
                continue;
            rc = prep(db, "UPDATE feeds SET flags = flags | 4 WHERE feed = ?1", &u, err);
            if (rc)
                break;
            sqlite3_bind_blob(u, 1, revs[i].feed, PROTO_KEY_BYTES, SQLITE_STATIC);
            r = sqlite3_step(u);
            done(db, u);
            if (r != SQLITE_DONE)
                rc = sqlerr(db, r, "flagging a feed", err);
        }
    }
out:
    done(db, st);
    if (merged)
        proto_merge_release(&m);
    free(revs);
    free(seqs);
    free(cbuf);
    return rc;
}

/* Queues entry (feed, seq) as a correction of owner's record, once. */
static enum fs_rc
correction_add(struct srv_db *db, const unsigned char *owner, const unsigned char *feed,
               int64_t seq, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    rc = prep(db,
              "INSERT OR IGNORE INTO corrections(owner, n, feed, seq) VALUES (?1,"
              " (SELECT coalesce(max(n), 0) + 1 FROM corrections WHERE owner = ?1), ?2, ?3)",
              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, owner, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, seq);
    r = sqlite3_step(st);
    done(db, st);
    return r == SQLITE_DONE ? FS_OK : sqlerr(db, r, "queueing a correction", err);
}

/* After a push: coordinators' revisions of records another feed owns become
 * that owner's corrections; a root arriving after such revisions collects
 * them for its feed. */
static enum fs_rc
note_corrections(struct srv_db *db, const char *project, const unsigned char *feed,
                 const struct srv_entry *e, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc = FS_OK;
    int r;

    rc = prep(db,
              "SELECT r.owner, f.role = 'coordinator' FROM records r, feeds f"
              " WHERE r.project = ?1 AND r.id = ?2 AND f.feed = ?3",
              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, e->parsed->record_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    r = sqlite3_step(st);
    if (r == SQLITE_ROW && sqlite3_column_bytes(st, 0) == PROTO_KEY_BYTES &&
        memcmp(sqlite3_column_blob(st, 0), feed, PROTO_KEY_BYTES) != 0 &&
        sqlite3_column_int(st, 1)) {
        unsigned char owner[PROTO_KEY_BYTES];

        memcpy(owner, sqlite3_column_blob(st, 0), PROTO_KEY_BYTES);
        done(db, st);
        return correction_add(db, owner, feed, (int64_t)e->seq, err);
    }
    done(db, st);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return sqlerr(db, r, "reading the merged view", err);
    if (e->parsed->gen != 1)
        return FS_OK;
    rc = prep(db,
              "SELECT e.feed, e.seq FROM entries e JOIN feeds f ON f.feed = e.feed"
              " WHERE e.record_id = ?1 AND f.project = ?2 AND f.role = 'coordinator'"
              " AND e.feed <> ?3",
              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, e->parsed->record_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, project, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    while (!rc && (r = sqlite3_step(st)) == SQLITE_ROW) {
        unsigned char other[PROTO_KEY_BYTES];

        memcpy(other, sqlite3_column_blob(st, 0), PROTO_KEY_BYTES);
        rc = correction_add(db, feed, other, sqlite3_column_int64(st, 1), err);
    }
    done(db, st);
    return rc;
}

/* Remembers the attachments a verified entry names: only those are accepted
 * for upload. */
static enum fs_rc
note_blobs(struct srv_db *db, const char *project, const unsigned char *feed,
           const struct srv_entry *e, struct fs_err *err)
{
    struct proto_content c;
    sqlite3_stmt *st = NULL;
    enum fs_rc rc = FS_OK;
    size_t i;
    int r;

    /* Most records have no attachment: look before parsing. */
    if (!e->parsed->has_content || !e->content_len ||
        !memmem(e->content, e->content_len, "\"attachments\"", 13) ||
        proto_content_parse(e->content, e->content_len, &c, NULL) != FS_OK)
        return FS_OK;
    if (c.n_attachments)
        rc = prep(db,
                  "INSERT INTO blob_refs(project, hash, feed, size) VALUES (?1, ?2, ?3, ?4)"
                  " ON CONFLICT(project, hash, feed) DO UPDATE SET size = max(size, excluded.size)",
                  &st, err);
    for (i = 0; !rc && i < c.n_attachments; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, c.attachments[i].hash, PROTO_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (int64_t)c.attachments[i].size);
        r = sqlite3_step(st);
        if (r != SQLITE_DONE)
            rc = sqlerr(db, r, "remembering attachments", err);
    }
    done(db, st);
    proto_content_release(&c);
    return rc;
}

static int
str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A push inside the caller's write transaction. Outcomes other than APPLIED
 * and errors may leave statements undone: the caller rolls back. */
static enum fs_rc
push_in_tx(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES], const struct srv_entry *es,
           size_t n, int64_t now_ms, struct srv_push_result *res, struct fs_err *err)
{
    struct srv_feed f;
    sqlite3_stmt *ins = NULL, *head = NULL;
    const char **ids = NULL;
    unsigned char prev[PROTO_HASH_BYTES];
    size_t i, first_new = n, n_ids = 0;
    char detail[96];
    enum fs_rc rc;
    int r;

    memset(res, 0, sizeof *res);
    /* Under the write lock: nobody else appends to this feed now. */
    rc = feed_get_in(db, feed, &f, err);
    if (rc)
        goto fail;
    if (f.revoked && n && es[n - 1].seq > f.accept_through) {
        rc = fs_err_set(err, FS_EAUTH, "this device was revoked");
        goto fail;
    }
    res->have_seq = f.have_seq;
    memcpy(res->head, f.head, PROTO_HASH_BYTES);
    for (i = 0; i < n; i++) {
        unsigned char held[PROTO_HASH_BYTES];

        if (es[i].seq > f.have_seq) {
            first_new = i;
            break;
        }
        rc = hash_at(db, feed, es[i].seq, held, err);
        if (rc)
            goto fail;
        if (memcmp(held, es[i].hash, PROTO_HASH_BYTES) != 0) {
            res->outcome = SRV_PUSH_FORK;
            res->fork_seq = es[i].seq;
            return FS_OK;
        }
    }
    if (first_new == n) {
        res->outcome = SRV_PUSH_HELD;
        return FS_OK;
    }
    if (es[first_new].seq != f.have_seq + 1) {
        res->outcome = SRV_PUSH_GAP;
        return FS_OK;
    }
    if (f.have_seq > 0 && (!es[first_new].parsed->has_prev ||
                           memcmp(es[first_new].parsed->prev, f.head, PROTO_HASH_BYTES) != 0)) {
        res->outcome = SRV_PUSH_FORK;
        res->fork_seq = es[first_new].seq;
        return FS_OK;
    }
    rc = prep(db,
              "INSERT INTO entries(feed, seq, hash, entry, sig, content, record_id, gen, parent,"
              " op, received_ms) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
              &ins, err);
    if (rc)
        goto fail;
    ids = malloc((n - first_new) * sizeof *ids);
    if (!ids) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(prev, f.head, sizeof prev);
    for (i = first_new; i < n; i++) {
        const struct srv_entry *e = &es[i];
        const struct proto_entry *p = e->parsed;

        if (i > first_new && (e->seq != es[i - 1].seq + 1 || !p->has_prev ||
                              memcmp(p->prev, prev, PROTO_HASH_BYTES) != 0)) {
            rc = fs_err_set(err, FS_EPROTO, "entries do not chain at seq %llu",
                            (unsigned long long)e->seq);
            goto fail;
        }
        sqlite3_reset(ins);
        sqlite3_clear_bindings(ins);
        sqlite3_bind_blob(ins, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, (int64_t)e->seq);
        sqlite3_bind_blob(ins, 3, e->hash, PROTO_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 4, e->entry, (int)e->entry_len, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 5, e->sig, PROTO_SIG_BYTES, SQLITE_STATIC);
        if (e->content_len)
            sqlite3_bind_blob(ins, 6, e->content, (int)e->content_len, SQLITE_STATIC);
        sqlite3_bind_text(ins, 7, p->record_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 8, (int64_t)p->gen);
        if (p->has_parent)
            sqlite3_bind_blob(ins, 9, p->parent, PROTO_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_int(ins, 10, (int)p->op);
        sqlite3_bind_int64(ins, 11, now_ms);
        r = sqlite3_step(ins);
        if (r != SQLITE_DONE) {
            rc = sqlerr(db, r, "storing entries", err);
            goto fail;
        }
        memcpy(prev, e->hash, sizeof prev);
        ids[n_ids++] = p->record_id;
    }
    /* The receipt for this head goes out right after the commit: its seq is
     * noted here, in the same transaction, rather than in a second one. */
    rc = prep(db,
              "UPDATE feeds SET have_seq = ?2, head = ?3, last_contact_ms = ?4,"
              " receipt_seq = max(receipt_seq, ?2) WHERE feed = ?1",
              &head, err);
    if (rc)
        goto fail;
    sqlite3_bind_blob(head, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(head, 2, (int64_t)es[n - 1].seq);
    sqlite3_bind_blob(head, 3, prev, PROTO_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(head, 4, now_ms);
    r = sqlite3_step(head);
    if (r != SQLITE_DONE) {
        rc = sqlerr(db, r, "advancing the head", err);
        goto fail;
    }
    /* The merged view of every record touched, once each. */
    qsort(ids, n_ids, sizeof *ids, str_cmp);
    for (i = 0; i < n_ids; i++) {
        if (i && strcmp(ids[i], ids[i - 1]) == 0)
            continue;
        rc = merge_record(db, f.project, ids[i], err);
        if (rc)
            goto fail;
    }
    for (i = first_new; i < n; i++) {
        rc = note_corrections(db, f.project, feed, &es[i], err);
        if (!rc)
            rc = note_blobs(db, f.project, feed, &es[i], err);
        if (rc)
            goto fail;
    }
    snprintf(detail, sizeof detail, "seq %llu..%llu", (unsigned long long)es[first_new].seq,
             (unsigned long long)es[n - 1].seq);
    rc = audit_in_tx(db, "push", feed, detail, now_ms, err);
    if (rc)
        goto fail;
    res->outcome = SRV_PUSH_APPLIED;
    res->have_seq = es[n - 1].seq;
    memcpy(res->head, prev, PROTO_HASH_BYTES);
    res->stored = n - first_new;
fail:
    done(db, ins);
    done(db, head);
    free(ids);
    return rc;
}

static enum fs_rc
sq_push_apply(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
              const struct srv_entry *es, size_t n, int64_t now_ms, struct srv_push_result *res,
              struct fs_err *err)
{
    enum fs_rc rc;

    rc = begin_write(db, err);
    if (rc)
        return rc;
    rc = push_in_tx(db, feed, es, n, now_ms, res, err);
    if (rc || res->outcome != SRV_PUSH_APPLIED) {
        rollback_write(db);
        return rc;
    }
    return commit_write(db, err);
}

/* Group commit: several pushes (of different feeds, or one after another of
 * the same) in one transaction and one fsync, each inside its own savepoint
 * so that a refused one leaves the others whole. Each still commits entries,
 * head, merged view and audit together; every answer waits for the commit. */
static enum fs_rc
sq_push_apply_group(struct srv_db *db, struct srv_push_job *jobs, size_t n, struct fs_err *err)
{
    size_t i, applied = 0;
    enum fs_rc rc;

    rc = begin_write(db, err);
    if (rc) {
        for (i = 0; i < n; i++) {
            jobs[i].rc = rc;
            jobs[i].err = *err;
        }
        return rc;
    }
    for (i = 0; i < n; i++) {
        struct srv_push_job *j = &jobs[i];

        if (exec(db, "SAVEPOINT push", &j->err)) {
            j->rc = FS_EAGAIN;
            continue;
        }
        j->rc = push_in_tx(db, j->feed, j->es, j->n, j->now_ms, &j->res, &j->err);
        if (j->rc || j->res.outcome != SRV_PUSH_APPLIED)
            sqlite3_exec(db->db, "ROLLBACK TO push", NULL, NULL, NULL);
        else
            applied++;
        if (exec(db, "RELEASE push", &j->err) && !j->rc)
            j->rc = FS_EAGAIN;
    }
    rc = applied ? commit_write(db, err) : (rollback_write(db), FS_OK);
    if (rc) {
        /* Nothing of the group is durable: every push that was applied fails. */
        for (i = 0; i < n; i++) {
            if (!jobs[i].rc && jobs[i].res.outcome == SRV_PUSH_APPLIED) {
                jobs[i].rc = rc;
                jobs[i].err = *err;
            }
        }
    }
    return rc;
}

static enum fs_rc
sq_nonce_use_unlocked(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                      const unsigned char *nonce, size_t nonce_len, int64_t ts, int64_t now_s,
                      struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    rc = prep(db, "DELETE FROM nonces WHERE ts < ?1", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, now_s - 2 * 300);
    r = sqlite3_step(st);
    done(db, st);
    if (r != SQLITE_DONE)
        return sqlerr(db, r, "forgetting old nonces", err);
    rc = prep(db, "INSERT INTO nonces(feed, nonce, ts) VALUES (?1, ?2, ?3)", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, nonce, (int)nonce_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, ts);
    r = sqlite3_step(st);
    done(db, st);
    if ((r & 0xff) == SQLITE_CONSTRAINT)
        return fs_err_set(err, FS_ECONFLICT, "this request was seen before");
    return r == SQLITE_DONE ? FS_OK : sqlerr(db, r, "remembering a nonce", err);
}

/* An autocommit write: in turn with the process's other writers. */
static enum fs_rc
sq_nonce_use(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
             const unsigned char *nonce, size_t nonce_len, int64_t ts, int64_t now_s,
             struct fs_err *err)
{
    enum fs_rc rc;

    wlock();
    rc = sq_nonce_use_unlocked(db, feed, nonce, nonce_len, ts, now_s, err);
    wunlock();
    return rc;
}

static enum fs_rc
sq_entries_each(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES], uint64_t from,
                uint64_t to, srv_entry_cb cb, void *ctx, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    rc = prep(db,
              "SELECT seq, hash, entry, sig, content FROM entries WHERE feed = ?1"
              " AND seq >= ?2 AND seq <= ?3 ORDER BY seq",
              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)from);
    sqlite3_bind_int64(st, 3, to ? (int64_t)to : INT64_MAX);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (cb(ctx, (uint64_t)sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1),
               sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2),
               sqlite3_column_blob(st, 3), sqlite3_column_blob(st, 4),
               (size_t)sqlite3_column_bytes(st, 4))) {
            r = SQLITE_DONE;
            break;
        }
    }
    done(db, st);
    return r == SQLITE_DONE ? FS_OK : sqlerr(db, r, "reading entries", err);
}

static enum fs_rc
sq_corrections_each(struct srv_db *db, const unsigned char owner[PROTO_KEY_BYTES], uint64_t since,
                    size_t limit, srv_correction_cb cb, void *ctx, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    rc = prep(db,
              "SELECT c.n, e.feed, e.seq, e.hash, e.entry, e.sig, e.content FROM corrections c"
              " JOIN entries e ON e.feed = c.feed AND e.seq = c.seq"
              " WHERE c.owner = ?1 AND c.n > ?2 ORDER BY c.n LIMIT ?3",
              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, owner, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)since);
    sqlite3_bind_int64(st, 3, (int64_t)limit);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (cb(ctx, (uint64_t)sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1),
               (uint64_t)sqlite3_column_int64(st, 2), sqlite3_column_blob(st, 3),
               sqlite3_column_blob(st, 4), (size_t)sqlite3_column_bytes(st, 4),
               sqlite3_column_blob(st, 5), sqlite3_column_blob(st, 6),
               (size_t)sqlite3_column_bytes(st, 6))) {
            r = SQLITE_DONE;
            break;
        }
    }
    done(db, st);
    return r == SQLITE_DONE ? FS_OK : sqlerr(db, r, "reading corrections", err);
}

static enum fs_rc
sq_records_each(struct srv_db *db, const char *project, srv_record_cb cb, void *ctx,
                struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    struct srv_record rec;
    enum fs_rc rc;
    int r;

    rc = prep(db,
              "SELECT r.id, r.state, r.owner, r.gen, r.conflicts, e.content, r.winner"
              " FROM records r LEFT JOIN entries e"
              " ON e.feed = r.winner_feed AND e.seq = r.winner_seq"
              " WHERE r.project = ?1 ORDER BY r.id",
              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&rec, 0, sizeof rec);
        rec.id = (const char *)sqlite3_column_text(st, 0);
        rec.state = (enum proto_rec_state)sqlite3_column_int(st, 1);
        rec.owner =
            sqlite3_column_bytes(st, 2) == PROTO_KEY_BYTES ? sqlite3_column_blob(st, 2) : NULL;
        rec.gen = (uint64_t)sqlite3_column_int64(st, 3);
        rec.conflicts = sqlite3_column_blob(st, 4);
        rec.n_conflicts = (size_t)sqlite3_column_bytes(st, 4) / PROTO_HASH_BYTES;
        rec.content = sqlite3_column_blob(st, 5);
        rec.content_len = (size_t)sqlite3_column_bytes(st, 5);
        rec.winner =
            sqlite3_column_bytes(st, 6) == PROTO_HASH_BYTES ? sqlite3_column_blob(st, 6) : NULL;
        if (cb(ctx, &rec)) {
            r = SQLITE_DONE;
            break;
        }
    }
    done(db, st);
    return r == SQLITE_DONE ? FS_OK : sqlerr(db, r, "reading records", err);
}

/* ---- blobs ------------------------------------------------------------------------- */

struct srv_blob_writer {
    unsigned char hash[PROTO_HASH_BYTES];
    uint64_t offset;   /* bytes in the partial file */
    uint64_t expected; /* the size the entries claim */
    int fd;
    char path[4096];
};

static void
blob_paths(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES], char *dir, size_t dcap,
           char *final, size_t fcap, char *partial, size_t pcap)
{
    char hex[2 * PROTO_HASH_BYTES + 1];

    proto_hex_encode(hash, PROTO_HASH_BYTES, hex);
    if (dir)
        snprintf(dir, dcap, "%s/blobs/%.2s", db->dir, hex);
    if (final)
        snprintf(final, fcap, "%s/blobs/%.2s/%s", db->dir, hex, hex);
    if (partial)
        snprintf(partial, pcap, "%s/blobs/partial/%s", db->dir, hex);
}

static enum fs_rc
mkdirs(struct srv_db *db, const char *sub, struct fs_err *err)
{
    char p[4096];

    snprintf(p, sizeof p, "%s/blobs", db->dir);
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
        return fs_err_set(err, FS_EAGAIN, "cannot create %s: %s", p, strerror(errno));
    if (!sub)
        return FS_OK;
    snprintf(p, sizeof p, "%s/blobs/%s", db->dir, sub);
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
        return fs_err_set(err, FS_EAGAIN, "cannot create %s: %s", p, strerror(errno));
    return FS_OK;
}

static enum fs_rc
fsync_path(const char *path, struct fs_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;

        if (fd >= 0)
            close(fd);
        return fs_err_set(err, FS_EAGAIN, "cannot sync %s: %s", path, strerror(e));
    }
    close(fd);
    return FS_OK;
}

static enum fs_rc
sq_blob_ref(struct srv_db *db, const char *project, const unsigned char hash[PROTO_HASH_BYTES],
            const unsigned char *feed, uint64_t *size, int *by_feed, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    rc = prep(db,
              "SELECT max(size), coalesce(max(feed = ?3), 0), count(*) FROM blob_refs"
              " WHERE project = ?1 AND hash = ?2",
              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, hash, PROTO_HASH_BYTES, SQLITE_STATIC);
    if (feed)
        sqlite3_bind_blob(st, 3, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    r = sqlite3_step(st);
    if (r == SQLITE_ROW && sqlite3_column_int(st, 2) > 0) {
        *size = (uint64_t)sqlite3_column_int64(st, 0);
        *by_feed = sqlite3_column_int(st, 1);
        rc = FS_OK;
    } else if (r == SQLITE_ROW) {
        rc = fs_err_set(err, FS_ENOTFOUND, "no entry of this project names that blob");
    } else {
        rc = sqlerr(db, r, "reading attachments", err);
    }
    done(db, st);
    return rc;
}

static enum fs_rc
sq_blob_state(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES], uint64_t *offset,
              int *complete, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    *offset = 0;
    *complete = 0;
    rc = prep(db, "SELECT offset, complete FROM blobs WHERE hash = ?1", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, hash, PROTO_HASH_BYTES, SQLITE_STATIC);
    r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        *offset = (uint64_t)sqlite3_column_int64(st, 0);
        *complete = sqlite3_column_int(st, 1);
    }
    done(db, st);
    return r == SQLITE_ROW || r == SQLITE_DONE ? FS_OK : sqlerr(db, r, "reading a blob", err);
}

static enum fs_rc
blob_record_unlocked(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES], uint64_t offset,
                     int complete, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    rc = prep(db,
              "INSERT INTO blobs(hash, offset, complete) VALUES (?1, ?2, ?3)"
              " ON CONFLICT(hash) DO UPDATE SET offset = excluded.offset,"
              " complete = excluded.complete",
              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, hash, PROTO_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)offset);
    sqlite3_bind_int(st, 3, complete);
    r = sqlite3_step(st);
    done(db, st);
    return r == SQLITE_DONE ? FS_OK : sqlerr(db, r, "recording a blob", err);
}

/* An autocommit write: in turn with the process's other writers. */
static enum fs_rc
blob_record(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES], uint64_t offset,
            int complete, struct fs_err *err)
{
    enum fs_rc rc;

    wlock();
    rc = blob_record_unlocked(db, hash, offset, complete, err);
    wunlock();
    return rc;
}

static enum fs_rc
sq_blob_write_begin(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES], uint64_t offset,
                    uint64_t expected, struct srv_blob_writer **out, uint64_t *held,
                    struct fs_err *err)
{
    struct srv_blob_writer *w;
    uint64_t durable;
    int complete;
    enum fs_rc rc;

    rc = sq_blob_state(db, hash, &durable, &complete, err);
    if (rc)
        return rc;
    *held = complete ? expected : durable;
    if (complete)
        return fs_err_set(err, FS_EEXIST, "the server holds this blob already");
    rc = mkdirs(db, "partial", err);
    if (rc)
        return rc;
    w = calloc(1, sizeof *w);
    if (!w)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    memcpy(w->hash, hash, PROTO_HASH_BYTES);
    w->expected = expected;
    blob_paths(db, hash, NULL, 0, NULL, 0, w->path, sizeof w->path);
    w->fd = open(w->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        rc = fs_err_set(err, FS_EAGAIN, "cannot open %s: %s", w->path, strerror(errno));
        free(w);
        return rc;
    }
    /* One upload per blob at a time, across threads and processes. */
    if (flock(w->fd, LOCK_EX | LOCK_NB) != 0) {
        close(w->fd);
        free(w);
        return fs_err_set(err, FS_EAGAIN, "another upload of this blob is running");
    }
    /* Re-read under the lock: the durable offset is the truth; bytes past it
     * (written but never made durable) are dropped. */
    rc = sq_blob_state(db, hash, &durable, &complete, err);
    if (!rc && complete)
        rc = fs_err_set(err, FS_EEXIST, "the server holds this blob already");
    if (!rc && offset != durable)
        rc = fs_err_set(err, FS_ECONFLICT, "the upload continues at offset %llu",
                        (unsigned long long)durable);
    if (!rc && ftruncate(w->fd, (off_t)durable) != 0)
        rc = fs_err_set(err, FS_EAGAIN, "cannot prepare %s: %s", w->path, strerror(errno));
    if (!rc && lseek(w->fd, (off_t)durable, SEEK_SET) < 0)
        rc = fs_err_set(err, FS_EAGAIN, "cannot prepare %s: %s", w->path, strerror(errno));
    *held = durable;
    if (rc) {
        close(w->fd);
        free(w);
        return rc;
    }
    w->offset = durable;
    *out = w;
    return FS_OK;
}

static enum fs_rc
sq_blob_write(struct srv_blob_writer *w, const void *p, size_t n, struct fs_err *err)
{
    const unsigned char *c = p;

    if (w->offset + n > w->expected)
        return fs_err_set(err, FS_ETOOBIG, "the blob is larger than its entry says");
    while (n) {
        ssize_t k = write(w->fd, c, n);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return fs_err_set(err, FS_EAGAIN, "cannot write a blob: %s", strerror(errno));
        c += k;
        n -= (size_t)k;
        w->offset += (uint64_t)k;
    }
    return FS_OK;
}

/* BLAKE2b-256 of a whole file, streamed. */
static enum fs_rc
hash_file(int fd, unsigned char out[PROTO_HASH_BYTES], struct fs_err *err)
{
    crypto_generichash_state st;
    unsigned char *buf = malloc(65536);
    off_t off = 0;

    if (!buf)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    crypto_generichash_init(&st, NULL, 0, PROTO_HASH_BYTES);
    for (;;) {
        ssize_t n = pread(fd, buf, 65536, off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return fs_err_set(err, FS_EAGAIN, "cannot read a blob: %s", strerror(errno));
        }
        if (n == 0)
            break;
        crypto_generichash_update(&st, buf, (size_t)n);
        off += n;
    }
    free(buf);
    crypto_generichash_final(&st, out, PROTO_HASH_BYTES);
    return FS_OK;
}

static enum fs_rc
sq_blob_write_end(struct srv_db *db, struct srv_blob_writer *w, int *complete, uint64_t *held,
                  struct fs_err *err)
{
    unsigned char h[PROTO_HASH_BYTES];
    char dir[4096], final[4200], pdir[4096];
    enum fs_rc rc;

    *complete = 0;
    /* Durable before it is reported: fsync, then the offset. */
    if (fsync(w->fd) != 0) {
        rc = fs_err_set(err, FS_EAGAIN, "cannot sync a blob: %s", strerror(errno));
        goto out;
    }
    rc = blob_record(db, w->hash, w->offset, 0, err);
    if (rc)
        goto out;
    *held = w->offset;
    if (w->offset < w->expected)
        goto out;
    rc = hash_file(w->fd, h, err);
    if (rc)
        goto out;
    if (sodium_memcmp(h, w->hash, PROTO_HASH_BYTES) != 0) {
        unlink(w->path);
        *held = 0;
        if (blob_record(db, w->hash, 0, 0, err) == FS_OK)
            rc = fs_err_set(err, FS_EINVAL, "the uploaded bytes do not match the blob's hash");
        else
            rc = FS_EAGAIN;
        goto out;
    }
    blob_paths(db, w->hash, dir, sizeof dir, final, sizeof final, NULL, 0);
    snprintf(pdir, sizeof pdir, "%s/blobs/partial", db->dir);
    {
        char sub[3];

        memcpy(sub, strrchr(dir, '/') + 1, 3);
        rc = mkdirs(db, sub, err);
    }
    if (!rc && rename(w->path, final) != 0)
        rc = fs_err_set(err, FS_EAGAIN, "cannot place a blob: %s", strerror(errno));
    if (!rc)
        rc = fsync_path(dir, err);
    if (!rc)
        rc = fsync_path(pdir, err);
    if (!rc)
        rc = blob_record(db, w->hash, w->expected, 1, err);
    if (!rc)
        *complete = 1;
out:
    close(w->fd);
    free(w);
    return rc;
}

static enum fs_rc
sq_blob_open(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES], int *fd, uint64_t *size,
             struct fs_err *err)
{
    char final[4200];
    struct stat st;
    uint64_t off;
    int complete;
    enum fs_rc rc;

    rc = sq_blob_state(db, hash, &off, &complete, err);
    if (rc)
        return rc;
    if (!complete)
        return fs_err_set(err, FS_ENOTFOUND, "the server does not hold this blob yet");
    blob_paths(db, hash, NULL, 0, final, sizeof final, NULL, 0);
    *fd = open(final, O_RDONLY | O_CLOEXEC);
    if (*fd < 0 || fstat(*fd, &st) != 0) {
        if (*fd >= 0)
            close(*fd);
        return fs_err_set(err, FS_EAGAIN, "cannot open a blob: %s", strerror(errno));
    }
    *size = (uint64_t)st.st_size;
    return FS_OK;
}

static enum fs_rc
sq_blob_missing(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES], uint64_t *count,
                struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    enum fs_rc rc;
    int r;

    rc = prep(db,
              "SELECT count(DISTINCT r.hash) FROM blob_refs r LEFT JOIN blobs b ON b.hash = r.hash"
              " WHERE r.feed = ?1 AND coalesce(b.complete, 0) = 0",
              &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, feed, PROTO_KEY_BYTES, SQLITE_STATIC);
    r = sqlite3_step(st);
    *count = r == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    done(db, st);
    return r == SQLITE_ROW ? FS_OK : sqlerr(db, r, "counting blobs", err);
}

const struct srv_db_ops srv_db_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .key_create = sq_key_create,
    .key_load = sq_key_load,
    .token_add = sq_token_add,
    .token_redeem = sq_token_redeem,
    .feed_get = sq_feed_get,
    .feed_list = sq_feed_list,
    .feed_revoke = sq_feed_revoke,
    .feed_flag_fork = sq_feed_flag_fork,
    .feed_touch = sq_feed_touch,
    .feed_attest = sq_feed_attest,
    .entry_hash = sq_entry_hash,
    .push_apply = sq_push_apply,
    .push_apply_group = sq_push_apply_group,
    .nonce_use = sq_nonce_use,
    .audit = sq_audit,
    .entries_each = sq_entries_each,
    .corrections_each = sq_corrections_each,
    .records_each = sq_records_each,
    .blob_ref = sq_blob_ref,
    .blob_state = sq_blob_state,
    .blob_write_begin = sq_blob_write_begin,
    .blob_write = sq_blob_write,
    .blob_write_end = sq_blob_write_end,
    .blob_open = sq_blob_open,
    .blob_missing = sq_blob_missing,
};
