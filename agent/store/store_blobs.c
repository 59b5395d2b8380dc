/* Attachments on the laptop: files in HOME/blobs/<2 hex>/<64 hex>, written
 * whole (temporary name, fsync, rename, folder fsync) before any revision
 * that references them commits, and streamed in constant memory. */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_CHUNK (64 * 1024)

static void
blob_dir(const struct store *s, const unsigned char hash[PROTO_HASH_BYTES], char *out, size_t cap)
{
    char hex[3];

    proto_hex_encode(hash, 1, hex);
    snprintf(out, cap, "%s/blobs/%s", s->home, hex);
}

void
store_blob_path(const struct store *s, const unsigned char hash[PROTO_HASH_BYTES], char *out,
                size_t cap)
{
    char hex[2 * PROTO_HASH_BYTES + 1];

    proto_hex_encode(hash, PROTO_HASH_BYTES, hex);
    snprintf(out, cap, "%s/blobs/%.2s/%s", s->home, hex, hex);
}

static enum fs_rc
ensure_dir(const char *path, struct fs_err *err)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return fs_err_set(err, FS_EIO, "cannot create %s: %s", path, strerror(errno));
    return FS_OK;
}

static enum fs_rc
sync_dir(const char *path, struct fs_err *err)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;

        if (fd >= 0)
            close(fd);
        return fs_err_set(err, FS_EIO, "cannot sync %s: %s", path, strerror(e));
    }
    close(fd);
    return FS_OK;
}

enum fs_rc
store_blob_tmpdir(struct store *s, char *out, size_t cap, struct fs_err *err)
{
    char top[4096];
    enum fs_rc rc;

    snprintf(top, sizeof top, "%s/blobs", s->home);
    snprintf(out, cap, "%s/blobs/tmp", s->home);
    rc = ensure_dir(top, err);
    return rc ? rc : ensure_dir(out, err);
}

static const char *
media_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".m4a", "audio/mp4"},       {".mp3", "audio/mpeg"},        {".wav", "audio/wav"},
        {".ogg", "audio/ogg"},       {".opus", "audio/opus"},       {".flac", "audio/flac"},
        {".jpg", "image/jpeg"},      {".jpeg", "image/jpeg"},       {".png", "image/png"},
        {".heic", "image/heic"},     {".webp", "image/webp"},       {".gif", "image/gif"},
        {".tif", "image/tiff"},      {".tiff", "image/tiff"},       {".mp4", "video/mp4"},
        {".mov", "video/quicktime"}, {".pdf", "application/pdf"},   {".txt", "text/plain"},
        {".csv", "text/csv"},        {".json", "application/json"},
    };
    const char *dot = strrchr(name, '.');
    size_t i;

    for (i = 0; dot && i < FS_ARRAY_LEN(types); i++)
        if (strcasecmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* A file name an attachment may carry: the path's last part, as text. */
static char *
attachment_name(const char *path)
{
    const char *base = strrchr(path, '/');
    char *n;
    size_t i;

    base = base ? base + 1 : path;
    if (!*base || strlen(base) > 255 || proto_utf8_check(base, strlen(base)) ||
        strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return strdup("file");
    n = strdup(base);
    for (i = 0; n && n[i]; i++)
        if ((unsigned char)n[i] < 0x20 || n[i] == 0x7f)
            n[i] = '_';
    return n;
}

enum fs_rc
store_blob_import(struct store *s, const char *path, struct proto_attachment *att,
                  struct fs_err *err)
{
    crypto_generichash_state hs;
    unsigned char *buf = NULL, rnd[8];
    char tmpdir[4096], tmp[4200], dir[4096], final[4200], rhex[17];
    struct stat st;
    uint64_t size = 0;
    int in = -1, out = -1;
    enum fs_rc rc;

    memset(att, 0, sizeof *att);
    in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return fs_err_set(err, errno == ENOENT ? FS_EINVAL : FS_EIO, "cannot open %s: %s", path,
                          strerror(errno));
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(in);
        return fs_err_set(err, FS_EINVAL, "%s is not a regular file", path);
    }
    if ((uint64_t)st.st_size > STORE_BLOB_MAX_BYTES) {
        close(in);
        return fs_err_set(err, FS_ETOOBIG, "%s is larger than the 2 GiB an attachment may be",
                          path);
    }
    rc = store_blob_tmpdir(s, tmpdir, sizeof tmpdir, err);
    if (rc)
        goto out;
    randombytes_buf(rnd, sizeof rnd);
    proto_hex_encode(rnd, sizeof rnd, rhex);
    snprintf(tmp, sizeof tmp, "%s/import-%s", tmpdir, rhex);
    out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    buf = malloc(COPY_CHUNK);
    if (out < 0 || !buf) {
        rc = fs_err_set(err, FS_EIO, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    crypto_generichash_init(&hs, NULL, 0, PROTO_HASH_BYTES);
    for (;;) {
        ssize_t n = read(in, buf, COPY_CHUNK), w = 0;

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = fs_err_set(err, FS_EIO, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        crypto_generichash_update(&hs, buf, (size_t)n);
        while (w < n) {
            ssize_t k = write(out, buf + w, (size_t)(n - w));

            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                rc = fs_err_set(err, FS_EIO, "cannot copy %s into the store: %s; not saved", path,
                                strerror(errno));
                goto out;
            }
            w += k;
        }
        size += (uint64_t)n;
        if (size > STORE_BLOB_MAX_BYTES) {
            rc = fs_err_set(err, FS_ETOOBIG, "%s grew past 2 GiB while it was copied", path);
            goto out;
        }
    }
    crypto_generichash_final(&hs, att->hash, PROTO_HASH_BYTES);
    if (fsync(out) != 0 || close(out) != 0) {
        out = -1;
        rc = fs_err_set(err, FS_EIO, "cannot save %s: %s; not saved", path, strerror(errno));
        goto out;
    }
    out = -1;
    blob_dir(s, att->hash, dir, sizeof dir);
    store_blob_path(s, att->hash, final, sizeof final);
    rc = ensure_dir(dir, err);
    if (rc)
        goto out;
    if (rename(tmp, final) != 0) {
        rc = fs_err_set(err, FS_EIO, "cannot place %s: %s", final, strerror(errno));
        goto out;
    }
    tmp[0] = 0;
    rc = sync_dir(dir, err);
    if (!rc)
        rc = sync_dir(tmpdir, err);
    if (rc)
        goto out;
    att->size = size;
    att->name = attachment_name(path);
    att->type = strdup(media_type(att->name ? att->name : path));
    if (!att->name || !att->type)
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    if (rc && tmp[0])
        unlink(tmp);
    free(buf);
    if (rc) {
        free(att->name);
        free(att->type);
        memset(att, 0, sizeof *att);
    }
    return rc;
}

enum fs_rc
store_blob_refs_add(struct store *s, const char *id, const struct proto_content *c, int own,
                    struct fs_err *err)
{
    sqlite3_stmt *b = NULL, *ref = NULL;
    char path[4200];
    size_t i;
    int r = SQLITE_OK;
    enum fs_rc rc = FS_OK;

    r = sqlite3_prepare_v2(s->db,
                           "INSERT INTO blobs(hash, size, local) VALUES (?1, ?2, ?3)"
                           " ON CONFLICT(hash) DO UPDATE SET local = max(local, excluded.local)",
                           -1, &b, NULL);
    if (r == SQLITE_OK)
        r = sqlite3_prepare_v2(s->db,
                               "INSERT INTO blob_refs(record_id, hash, own) VALUES (?1, ?2, ?3)"
                               " ON CONFLICT(record_id, hash) DO UPDATE"
                               " SET own = max(own, excluded.own)",
                               -1, &ref, NULL);
    for (i = 0; r == SQLITE_OK && i < c->n_attachments; i++) {
        const struct proto_attachment *a = &c->attachments[i];
        int here;

        store_blob_path(s, a->hash, path, sizeof path);
        here = access(path, F_OK) == 0;
        sqlite3_reset(b);
        sqlite3_bind_blob(b, 1, a->hash, PROTO_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(b, 2, (sqlite3_int64)a->size);
        sqlite3_bind_int(b, 3, here);
        r = sqlite3_step(b);
        if (r != SQLITE_DONE)
            break;
        sqlite3_reset(ref);
        sqlite3_bind_text(ref, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(ref, 2, a->hash, PROTO_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_int(ref, 3, own);
        r = sqlite3_step(ref);
        if (r != SQLITE_DONE)
            break;
        r = SQLITE_OK;
    }
    if (r != SQLITE_OK && r != SQLITE_DONE)
        rc = store_sqlerr(s, r, "saving attachments", err);
    sqlite3_finalize(b);
    sqlite3_finalize(ref);
    return rc;
}

static enum fs_rc
blobs_query(struct store *s, const char *sql, store_blob_cb cb, void *ctx, uint64_t *bytes,
            struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;

    if (bytes)
        *bytes = 0;
    r = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (r != SQLITE_OK)
        return store_sqlerr(s, r, "reading attachments", err);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_blob bl;

        if (sqlite3_column_bytes(st, 0) != PROTO_HASH_BYTES)
            continue;
        memcpy(bl.hash, sqlite3_column_blob(st, 0), PROTO_HASH_BYTES);
        bl.size = (uint64_t)sqlite3_column_int64(st, 1);
        bl.uploaded = sqlite3_column_int(st, 2);
        bl.local = sqlite3_column_int(st, 3);
        if (bytes)
            *bytes += bl.size;
        if (cb && cb(ctx, &bl)) {
            r = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? FS_OK : store_sqlerr(s, r, "reading attachments", err);
}

enum fs_rc
store_blobs_pending(struct store *s, store_blob_cb cb, void *ctx, uint64_t *bytes,
                    struct fs_err *err)
{
    return blobs_query(s,
                       "SELECT hash, size, uploaded, local FROM blobs WHERE uploaded = 0"
                       " AND hash IN (SELECT hash FROM blob_refs WHERE own = 1) ORDER BY hash",
                       cb, ctx, bytes, err);
}

enum fs_rc
store_blobs_missing(struct store *s, store_blob_cb cb, void *ctx, struct fs_err *err)
{
    return blobs_query(s,
                       "SELECT hash, size, uploaded, local FROM blobs WHERE local = 0"
                       " ORDER BY hash",
                       cb, ctx, NULL, err);
}

static enum fs_rc
set_flag(struct store *s, const char *sql, const unsigned char hash[PROTO_HASH_BYTES],
         struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;

    r = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, hash, PROTO_HASH_BYTES, SQLITE_STATIC);
        r = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? FS_OK : store_sqlerr(s, r, "saving an attachment's state", err);
}

enum fs_rc
store_blob_uploaded(struct store *s, const unsigned char hash[PROTO_HASH_BYTES], struct fs_err *err)
{
    return set_flag(s, "UPDATE blobs SET uploaded = 1 WHERE hash = ?1", hash, err);
}

enum fs_rc
store_blob_adopt(struct store *s, const unsigned char hash[PROTO_HASH_BYTES], const char *tmp_path,
                 struct fs_err *err)
{
    char dir[4096], final[4200];
    enum fs_rc rc;

    blob_dir(s, hash, dir, sizeof dir);
    store_blob_path(s, hash, final, sizeof final);
    rc = ensure_dir(dir, err);
    if (rc)
        return rc;
    if (rename(tmp_path, final) != 0)
        return fs_err_set(err, FS_EIO, "cannot place %s: %s", final, strerror(errno));
    rc = sync_dir(dir, err);
    if (rc)
        return rc;
    return set_flag(s, "UPDATE blobs SET local = 1 WHERE hash = ?1", hash, err);
}

enum fs_rc
store_blobs_gc(struct store *s, uint64_t *files, uint64_t *bytes, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    char path[4200];
    int r;
    enum fs_rc rc;

    *files = *bytes = 0;
    r = sqlite3_prepare_v2(s->db, "SELECT hash, size FROM blobs WHERE uploaded = 1 AND local = 1",
                           -1, &st, NULL);
    if (r != SQLITE_OK)
        return store_sqlerr(s, r, "reading attachments", err);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        unsigned char h[PROTO_HASH_BYTES];

        if (sqlite3_column_bytes(st, 0) != PROTO_HASH_BYTES)
            continue;
        memcpy(h, sqlite3_column_blob(st, 0), PROTO_HASH_BYTES);
        /* The row first: a crash between leaves a file gc can take again. */
        rc = set_flag(s, "UPDATE blobs SET local = 0 WHERE hash = ?1", h, err);
        if (rc) {
            sqlite3_finalize(st);
            return rc;
        }
        store_blob_path(s, h, path, sizeof path);
        if (unlink(path) == 0) {
            (*files)++;
            *bytes += (uint64_t)sqlite3_column_int64(st, 1);
        }
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? FS_OK : store_sqlerr(s, r, "reading attachments", err);
}
