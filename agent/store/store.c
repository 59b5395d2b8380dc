/* Opening and creating a store: the home folder, the secret key, the database
 * and its settings. */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY_MAGIC    "fieldsync secret key v1\n"
#define KEY_FILE_MAX 256

static const char *const stmt_sql[ST_COUNT] = {
    [ST_SELF_HEAD] = "SELECT have_seq, head FROM feeds WHERE feed = ?1",
    [ST_ENTRY_INSERT] = "INSERT INTO entries(feed, seq, hash, entry, sig, content, record_id, gen,"
                        " parent, op, content_hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
    [ST_FEED_HEAD_SET] = "UPDATE feeds SET have_seq = ?2, head = ?3 WHERE feed = ?1",
    [ST_RECORD_REVS] = "SELECT e.feed, e.seq, e.hash, e.gen, e.parent, e.op,"
                       " f.role = 'coordinator', e.entry"
                       " FROM entries e JOIN feeds f ON f.feed = e.feed WHERE e.record_id = ?1",
    [ST_RECORD_UPSERT] =
        "INSERT INTO records(id, state, owner, winner, winner_feed, winner_seq, gen, kind,"
        " observed_ms, n_conflicts, last_own_seq, conflict_revs)"
        " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)"
        " ON CONFLICT(id) DO UPDATE SET state = excluded.state, owner = excluded.owner,"
        " winner = excluded.winner, winner_feed = excluded.winner_feed,"
        " winner_seq = excluded.winner_seq, gen = excluded.gen, kind = excluded.kind,"
        " observed_ms = excluded.observed_ms, n_conflicts = excluded.n_conflicts,"
        " last_own_seq = max(last_own_seq, excluded.last_own_seq),"
        " conflict_revs = excluded.conflict_revs",
    [ST_ENTRY_CONTENT] = "SELECT content FROM entries WHERE feed = ?1 AND seq = ?2",
    [ST_ENTRY_HASH] = "SELECT hash FROM entries WHERE feed = ?1 AND seq = ?2",
    [ST_RECORD_GET] = "SELECT r.id, r.state, r.owner, r.winner, r.gen, r.kind, r.observed_ms,"
                      " r.n_conflicts, r.last_own_seq, e.content, r.conflict_revs,"
                      " " STORE_BLOBS_WAITING ", e.content_hash FROM records r LEFT JOIN entries e"
                      " ON e.feed = r.winner_feed AND e.seq = r.winner_seq WHERE r.id = ?1",
};

int64_t
store_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum fs_rc
store_sqlerr(struct store *s, int sqlrc, const char *what, struct fs_err *err)
{
    int prim = sqlrc & 0xff;
    const char *msg = s && s->db ? sqlite3_errmsg(s->db) : "";

    switch (prim) {
    case SQLITE_FULL:
        return fs_err_set(err, FS_EIO, "disk full while %s: not saved; free some space and retry",
                          what);
    case SQLITE_IOERR:
        /* ENOSPC can surface as an I/O error (growing the -shm file, say). */
        if (s && s->db && sqlite3_system_errno(s->db) == ENOSPC)
            return fs_err_set(err, FS_EIO,
                              "disk full while %s: not saved; free some space and retry", what);
        return fs_err_set(err, FS_EIO, "I/O error while %s (%s): not saved", what,
                          sqlite3_errstr(sqlrc));
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
        return fs_err_set(err, FS_EIO, "I/O error while %s (%s): not saved", what,
                          sqlite3_errstr(sqlrc));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return fs_err_set(err, FS_ECORRUPT,
                          "the store database is damaged (%s while %s); nothing was changed — "
                          "run 'fieldsync verify' and keep a copy of the folder",
                          sqlite3_errstr(sqlrc), what);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return fs_err_set(err, FS_EAGAIN, "the store is busy while %s; try again", what);
    case SQLITE_NOMEM:
        return fs_err_set(err, FS_ENOMEM, "out of memory while %s", what);
    case SQLITE_CONSTRAINT:
        return fs_err_set(err, FS_ECONFLICT, "a store constraint failed while %s", what);
    case SQLITE_ERROR:
        /* The store's own statements and schema name only its own tables,
         * columns and functions: if one is missing, the schema is not the one
         * this store wrote (a damaged page 1 can still parse); nor does it ever
         * write a file format SQLite cannot read. The names come from our SQL,
         * never user data; damaged bytes are shown as '?'. */
        if (strncmp(msg, "no such table", 13) == 0 || strncmp(msg, "no such column", 14) == 0 ||
            strncmp(msg, "no such index", 13) == 0 || strncmp(msg, "unknown function", 16) == 0 ||
            strncmp(msg, "no such collation", 17) == 0 ||
            strcmp(msg, "unsupported file format") == 0) {
            char shown[96];
            size_t i;

            snprintf(shown, sizeof shown, "%s", msg);
            for (i = 0; shown[i]; i++)
                if ((unsigned char)shown[i] < 0x20 || (unsigned char)shown[i] > 0x7e)
                    shown[i] = '?';
            return fs_err_set(err, FS_ECORRUPT,
                              "the store database is damaged (its schema: %s, while %s); nothing "
                              "was changed — run 'fieldsync verify' and keep a copy of the folder",
                              shown, what);
        }
        break;
    default:
        break;
    }
    return fs_err_set(err, FS_EINTERNAL, "database error while %s: %s", what,
                      sqlite3_errstr(sqlrc));
}

enum fs_rc
store_stmt(struct store *s, enum store_stmt which, sqlite3_stmt **out, struct fs_err *err)
{
    int r;

    if (!s->st[which]) {
        r = sqlite3_prepare_v3(s->db, stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT, &s->st[which],
                               NULL);
        if (r != SQLITE_OK)
            return store_sqlerr(s, r, "preparing a query", err);
    } else {
        sqlite3_reset(s->st[which]);
        sqlite3_clear_bindings(s->st[which]);
    }
    *out = s->st[which];
    return FS_OK;
}

enum fs_rc
store_exec(struct store *s, const char *sql, struct fs_err *err)
{
    int r = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

    return r == SQLITE_OK ? FS_OK : store_sqlerr(s, r, "updating the store", err);
}

enum fs_rc
store_home_resolve(const char *flag, char **out, struct fs_err *err)
{
    const char *e;
    char *p = NULL;

    if (flag && *flag)
        p = strdup(flag);
    else if ((e = getenv("FIELDSYNC_HOME")) && *e)
        p = strdup(e);
    else if ((e = getenv("XDG_DATA_HOME")) && *e == '/') {
        if (asprintf(&p, "%s/fieldsync", e) < 0)
            p = NULL;
    } else if ((e = getenv("HOME")) && *e) {
        if (asprintf(&p, "%s/.local/share/fieldsync", e) < 0)
            p = NULL;
    } else
        return fs_err_set(err, FS_EUSAGE, "no home folder: pass --home DIR or set FIELDSYNC_HOME");
    if (!p)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    if (p[0] != '/') {
        /* Absolute, so that paths named in exports and daemons stay true. */
        char cwd[4096], *abs = NULL;

        if (!getcwd(cwd, sizeof cwd) || asprintf(&abs, "%s/%s", cwd, p) < 0) {
            free(p);
            return fs_err_set(err, FS_EIO, "cannot tell the current folder");
        }
        free(p);
        p = abs;
    }
    *out = p;
    return FS_OK;
}

static char *
path_join(const char *dir, const char *name)
{
    char *p = NULL;

    if (asprintf(&p, "%s/%s", dir, name) < 0)
        return NULL;
    return p;
}

static enum fs_rc
mkdir_p(const char *path, struct fs_err *err)
{
    char buf[4096];
    size_t i, n = strlen(path);

    if (n == 0 || n >= sizeof buf)
        return fs_err_set(err, FS_EUSAGE, "home folder path is empty or too long");
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0)
            continue;
        buf[i] = 0;
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return fs_err_set(err, FS_EIO, "cannot create folder %s: %s", buf, strerror(errno));
        buf[i] = i == n ? 0 : '/';
    }
    return FS_OK;
}

static enum fs_rc
fsync_dir(const char *dir, struct fs_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;

        if (fd >= 0)
            close(fd);
        return fs_err_set(err, FS_EIO, "cannot sync folder %s: %s", dir, strerror(e));
    }
    close(fd);
    return FS_OK;
}

/* Writes the key file under a temporary name, syncs it, and renames it into
 * place, so that a key file is either whole or absent. */
static enum fs_rc
key_write(const char *home, const unsigned char seed[PROTO_SEED_BYTES], struct fs_err *err)
{
    char *path = path_join(home, STORE_KEY_NAME), *tmp = path_join(home, STORE_KEY_NAME ".tmp");
    char *text = sodium_malloc(KEY_FILE_MAX);
    size_t n;
    int fd = -1;
    enum fs_rc rc = FS_OK;

    if (!path || !tmp || !text) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(text, KEY_MAGIC, sizeof KEY_MAGIC - 1);
    proto_hex_encode(seed, PROTO_SEED_BYTES, text + sizeof KEY_MAGIC - 1);
    n = sizeof KEY_MAGIC - 1 + 2 * PROTO_SEED_BYTES;
    text[n++] = '\n';
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || write(fd, text, n) != (ssize_t)n || fsync(fd) != 0) {
        rc = fs_err_set(err, FS_EIO, "cannot write the key file %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = fs_err_set(err, FS_EIO, "cannot write the key file %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = fs_err_set(err, FS_EIO, "cannot place the key file %s: %s", path, strerror(errno));
        goto out;
    }
    rc = fsync_dir(home, err);
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    if (text)
        sodium_free(text);
    free(path);
    free(tmp);
    return rc;
}

static enum fs_rc
key_load(struct store *s, struct fs_err *err)
{
    char *path = path_join(s->home, STORE_KEY_NAME);
    unsigned char *buf = sodium_malloc(KEY_FILE_MAX);
    unsigned char *seed = sodium_malloc(PROTO_SEED_BYTES);
    struct stat st;
    ssize_t n;
    int fd = -1;
    enum fs_rc rc = FS_OK;

    if (!path || !buf || !seed) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rc = fs_err_set(err, errno == ENOENT ? FS_ENOTFOUND : FS_EIO,
                        "cannot open the key file %s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = fs_err_set(err, FS_EIO, "the key file %s is not a regular file", path);
        goto out;
    }
    if (st.st_mode & 077) {
        rc = fs_err_set(err, FS_EAUTH,
                        "the key file %s can be read by others (mode %03o); run 'chmod 600 %s' "
                        "and check who has copied it",
                        path, (unsigned)(st.st_mode & 0777), path);
        goto out;
    }
    if (st.st_uid != geteuid()) {
        rc = fs_err_set(err, FS_EAUTH, "the key file %s belongs to another user", path);
        goto out;
    }
    n = read(fd, buf, KEY_FILE_MAX);
    if (n != (ssize_t)(sizeof KEY_MAGIC - 1 + 2 * PROTO_SEED_BYTES + 1) ||
        memcmp(buf, KEY_MAGIC, sizeof KEY_MAGIC - 1) != 0 || buf[n - 1] != '\n' ||
        proto_hex_decode((char *)buf + sizeof KEY_MAGIC - 1, 2 * PROTO_SEED_BYTES, seed,
                         PROTO_SEED_BYTES)) {
        rc = fs_err_set(err, FS_ECORRUPT, "the key file %s is malformed", path);
        goto out;
    }
    s->sk = sodium_malloc(PROTO_SECRET_BYTES);
    if (!s->sk) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    proto_keypair_from_seed(seed, s->pk, s->sk);
out:
    if (fd >= 0)
        close(fd);
    if (buf)
        sodium_free(buf);
    if (seed)
        sodium_free(seed);
    free(path);
    return rc;
}

static enum fs_rc
db_open(struct store *s, int create, struct fs_err *err)
{
    char *path = path_join(s->home, STORE_DB_NAME);
    int r, flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    enum fs_rc rc;

    if (!path)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    if (create)
        flags |= SQLITE_OPEN_CREATE;
    r = sqlite3_open_v2(path, &s->db, flags, NULL);
    free(path);
    if (r != SQLITE_OK)
        return store_sqlerr(s, r, "opening the store", err);
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 10000);
    /* WAL with synchronous=FULL: a commit is on disk when it returns. */
    rc = store_exec(s,
                    "PRAGMA journal_mode = WAL;"
                    "PRAGMA synchronous = FULL;"
                    "PRAGMA foreign_keys = ON;"
                    "PRAGMA trusted_schema = OFF;"
                    "PRAGMA cell_size_check = ON;",
                    err);
    if (rc)
        return rc;
    return store_schema_migrate(s, err);
}

static enum fs_rc
store_alloc(const char *home, struct store **out)
{
    struct store *s = calloc(1, sizeof *s);

    if (!s)
        return FS_ENOMEM;
    s->home = strdup(home);
    if (!s->home) {
        free(s);
        return FS_ENOMEM;
    }
    fs_buf_init(&s->ebuf, PROTO_ENTRY_MAX_BYTES);
    fs_buf_init(&s->cbuf, PROTO_CONTENT_MAX_BYTES);
    *out = s;
    return FS_OK;
}

void
store_close(struct store *s)
{
    size_t i;

    if (!s)
        return;
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    if (s->db)
        sqlite3_close(s->db);
    if (s->sk)
        sodium_free(s->sk); /* sodium_free wipes before unmapping */
    fs_buf_release(&s->ebuf);
    fs_buf_release(&s->cbuf);
    free(s->home);
    free(s);
}

enum fs_rc
store_init(const char *home, const char *name, unsigned char feed[PROTO_KEY_BYTES],
           struct fs_err *err)
{
    struct store *s = NULL;
    unsigned char *seed = NULL;
    char *dbp = NULL, *keyp = NULL;
    sqlite3_stmt *st = NULL;
    struct stat sb;
    enum fs_rc rc;
    int r, key_written = 0;

    if (proto_utf8_check(name, strlen(name)) || strlen(name) == 0 ||
        strlen(name) > PROTO_TEXT_MAX_BYTES)
        return fs_err_set(err, FS_EINVAL, "a device name is 1-%u bytes of UTF-8 text",
                          PROTO_TEXT_MAX_BYTES);
    rc = mkdir_p(home, err);
    if (rc)
        return rc;
    dbp = path_join(home, STORE_DB_NAME);
    keyp = path_join(home, STORE_KEY_NAME);
    seed = sodium_malloc(PROTO_SEED_BYTES);
    if (!dbp || !keyp || !seed) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    if (stat(dbp, &sb) == 0) {
        rc = fs_err_set(err, FS_EEXIST, "a store already exists in %s", home);
        goto out;
    }
    if (stat(keyp, &sb) == 0) {
        rc = fs_err_set(err, FS_EEXIST,
                        "%s holds a key but no store; move the key away before starting anew "
                        "(a key is never reused for a new chain)",
                        home);
        goto out;
    }
    rc = store_alloc(home, &s);
    if (rc) {
        rc = fs_err_set(err, rc, "out of memory");
        goto out;
    }
    randombytes_buf(seed, PROTO_SEED_BYTES);
    s->sk = sodium_malloc(PROTO_SECRET_BYTES);
    if (!s->sk) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    proto_keypair_from_seed(seed, s->pk, s->sk);
    rc = key_write(home, seed, err);
    if (rc)
        goto out;
    key_written = 1;
    rc = db_open(s, 1, err);
    if (rc)
        goto out;
    rc = store_exec(s, "BEGIN IMMEDIATE", err);
    if (rc)
        goto out;
    r = sqlite3_prepare_v2(s->db,
                           "INSERT INTO feeds(feed, name, is_self) VALUES (?1, ?2, 1);"
                           "",
                           -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, s->pk, PROTO_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (r != SQLITE_DONE) {
        rc = store_sqlerr(s, r, "creating the store", err);
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        goto out;
    }
    rc = store_setting_set(s, "name", name, err);
    if (!rc)
        rc = store_exec(s, "COMMIT", err);
    if (rc) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        goto out;
    }
    memcpy(feed, s->pk, PROTO_KEY_BYTES);
out:
    if (rc && key_written) {
        /* The key never signed anything: leave the folder as it was. */
        unlink(keyp);
        if (s && s->db) {
            sqlite3_close(s->db);
            s->db = NULL;
        }
        unlink(dbp);
    }
    if (seed)
        sodium_free(seed);
    free(dbp);
    free(keyp);
    store_close(s);
    return rc;
}

enum fs_rc
store_open(const char *home, struct store **out, struct fs_err *err)
{
    struct store *s = NULL;
    sqlite3_stmt *st = NULL;
    char *dbp = NULL;
    struct stat sb;
    enum fs_rc rc;
    int r;

    rc = store_alloc(home, &s);
    if (rc)
        return fs_err_set(err, rc, "out of memory");
    dbp = path_join(home, STORE_DB_NAME);
    if (!dbp) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    if (stat(dbp, &sb) != 0) {
        rc = fs_err_set(err, FS_ENOTFOUND, "no store in %s; run 'fieldsync init --name NAME' first",
                        home);
        goto out;
    }
    rc = key_load(s, err);
    if (rc)
        goto out;
    rc = db_open(s, 0, err);
    if (rc)
        goto out;
    r = sqlite3_prepare_v2(s->db, "SELECT feed FROM feeds WHERE is_self = 1", -1, &st, NULL);
    if (r == SQLITE_OK)
        r = sqlite3_step(st);
    if (r != SQLITE_ROW) {
        rc = r == SQLITE_DONE ? fs_err_set(err, FS_ECORRUPT,
                                           "the store in %s is damaged: it names no own feed;"
                                           " nothing was changed — keep a copy of the folder",
                                           home)
                              : store_sqlerr(s, r, "opening the store", err);
        goto out;
    }
    if (sqlite3_column_bytes(st, 0) != PROTO_KEY_BYTES ||
        memcmp(sqlite3_column_blob(st, 0), s->pk, PROTO_KEY_BYTES) != 0) {
        /* Either file may be the wrong one: say both, change nothing. */
        rc = fs_err_set(err, FS_ECORRUPT,
                        "the key in %s does not belong to its store (the store is damaged,"
                        " or one of the two files came from elsewhere); nothing was changed"
                        " — keep a copy of the folder",
                        home);
        goto out;
    }
    *out = s;
    s = NULL;
out:
    sqlite3_finalize(st);
    free(dbp);
    store_close(s);
    return rc;
}

const unsigned char *
store_feed(const struct store *s)
{
    return s->pk;
}

const unsigned char *
store_secret(const struct store *s)
{
    return s->sk;
}

const char *
store_home(const struct store *s)
{
    return s->home;
}

enum fs_rc
store_setting_get(struct store *s, const char *key, char **value, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;
    enum fs_rc rc = FS_OK;

    *value = NULL;
    r = sqlite3_prepare_v2(s->db, "SELECT value FROM settings WHERE key = ?1", -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
    }
    if (r == SQLITE_ROW) {
        *value = strdup((const char *)sqlite3_column_text(st, 0));
        if (!*value)
            rc = fs_err_set(err, FS_ENOMEM, "out of memory");
    } else if (r != SQLITE_DONE) {
        rc = store_sqlerr(s, r, "reading a setting", err);
    }
    sqlite3_finalize(st);
    return rc;
}

enum fs_rc
store_setting_set(struct store *s, const char *key, const char *value, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;

    r = sqlite3_prepare_v2(s->db,
                           value ? "INSERT INTO settings(key, value) VALUES (?1, ?2)"
                                   " ON CONFLICT(key) DO UPDATE SET value = excluded.value"
                                 : "DELETE FROM settings WHERE key = ?1",
                           -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (value)
            sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? FS_OK : store_sqlerr(s, r, "saving a setting", err);
}

enum fs_rc
store_begin(struct store *s, struct fs_err *err)
{
    enum fs_rc rc;

    if (s->in_tx)
        FS_BUG("nested store transaction");
    /* A bulk transaction (import) keeps its pages in memory up to 32 MiB
     * instead of spilling them to the WAL and reading them back. */
    rc = store_exec(s, "PRAGMA cache_size = -32768; BEGIN IMMEDIATE", err);
    if (!rc)
        s->in_tx = 1;
    return rc;
}

enum fs_rc
store_commit(struct store *s, struct fs_err *err)
{
    enum fs_rc rc;

    if (!s->in_tx)
        FS_BUG("commit without a transaction");
    rc = store_exec(s, "COMMIT", err);
    if (rc)
        store_rollback(s);
    s->in_tx = 0;
    sqlite3_exec(s->db, "PRAGMA cache_size = -2000", NULL, NULL, NULL);
    return rc;
}

void
store_rollback(struct store *s)
{
    if (sqlite3_get_autocommit(s->db) == 0)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    s->in_tx = 0;
    sqlite3_exec(s->db, "PRAGMA cache_size = -2000", NULL, NULL, NULL);
}
