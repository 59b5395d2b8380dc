/* Attachments across a bad link: uploads resume at the offset the server
 * holds durably, in chunks that shrink after a cut (so a link that drops
 * every few hundred kilobytes still moves) and grow after successes;
 * downloads resume with Range and are checked against their hash before they
 * are kept. Memory does not grow with a file's size. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync.h"

#define CHUNK_MIN   (64u * 1024)
#define CHUNK_START (1u << 20)
#define CHUNK_MAX   (16u << 20)
#define CUTS_MAX    12 /* consecutive cuts without progress before giving up for now */

struct list {
    struct store_blob *b;
    size_t n, cap;
};

static int
collect(void *ctx, const struct store_blob *b)
{
    struct list *l = ctx;

    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        struct store_blob *nb = realloc(l->b, nc * sizeof *nb);

        if (!nb)
            return 1;
        l->b = nb;
        l->cap = nc;
    }
    l->b[l->n++] = *b;
    return 0;
}

static enum fs_rc
blob_target(struct store *s, const unsigned char hash[PROTO_HASH_BYTES], char *out, size_t cap,
            struct fs_err *err)
{
    char *project = NULL, hex[2 * PROTO_HASH_BYTES + 1];
    enum fs_rc rc;

    rc = store_setting_get(s, "project", &project, err);
    if (rc)
        return rc;
    if (!project)
        return fs_err_set(err, FS_EAUTH, "this device is not enrolled in a project");
    proto_hex_encode(hash, PROTO_HASH_BYTES, hex);
    snprintf(out, cap, "/v1/projects/%s/blobs/%s", project, hex);
    free(project);
    return FS_OK;
}

static enum fs_rc
refused(const struct sync_resp *r, const char *what, struct fs_err *err)
{
    char code[64], msg[200];

    sync_error_text(r, code, sizeof code, msg, sizeof msg);
    /* HEAD answers and early refusals of a chunk may come without a body:
     * the status alone must say what to do. */
    if (r->status == 413)
        return fs_err_set(err, FS_EPROTO,
                          "an attachment is larger than the server's cap for %s; ask the "
                          "project's operator",
                          what);
    if (r->status == 503 || r->status == 429 || r->status >= 500 || r->status == 409)
        return fs_err_set(err, FS_EAGAIN, "the server asks to retry %s later: %s", what, msg);
    if (r->status == 401 || r->status == 403 || r->status == 404)
        return fs_err_set(err, FS_EAUTH, "the server refuses %s: %s", what, msg);
    if (r->status == 400 && strcmp(code, "hash_mismatch") == 0)
        return fs_err_set(err, FS_ECORRUPT,
                          "an attachment's file here no longer matches its hash; run 'fieldsync "
                          "verify' and keep a copy of the store");
    return fs_err_set(err, FS_EPROTO, "the server refused %s: %s", what, msg);
}

struct prog {
    struct sync_blob_progress *p;
    uint64_t before; /* bytes of earlier blobs */
    uint64_t offset; /* where this blob's transfer started */
};

static void
on_bytes(void *ctx, uint64_t done)
{
    struct prog *g = ctx;

    if (g->p && g->p->cb)
        g->p->cb(g->p->ctx, g->before + done);
}

static size_t
setting_chunk(struct store *s)
{
    char *v = NULL;
    size_t n = CHUNK_START;
    struct fs_err e;

    if (store_setting_get(s, "blob_chunk", &v, &e) == FS_OK && v) {
        unsigned long long x = strtoull(v, NULL, 10);

        if (x >= CHUNK_MIN && x <= CHUNK_MAX)
            n = (size_t)x;
    }
    free(v);
    return n;
}

static void
save_chunk(struct store *s, size_t chunk)
{
    char v[24];
    struct fs_err e;

    snprintf(v, sizeof v, "%zu", chunk);
    if (store_setting_set(s, "blob_chunk", v, &e) != FS_OK) {
        /* A hint for the next run only. */
    }
}

/* Uploads one blob; returns FS_OK once the server holds it whole. */
static enum fs_rc
upload_one(struct store *s, struct sync_http *h, const struct store_blob *b, size_t *chunk,
           struct prog *g, struct fs_err *err)
{
    struct sync_resp r;
    char target[256], path[4200];
    uint64_t offset = 0;
    int fd = -1, cuts = 0, busy_waits = 0;
    enum fs_rc rc;

    rc = blob_target(s, b->hash, target, sizeof target, err);
    if (rc)
        return rc;
    /* What does the server hold durably? */
    rc = sync_http_request(h, "HEAD", target, NULL, 0, 1, &r, err);
    if (rc)
        return rc;
    if (r.status != 200)
        return refused(&r, "an attachment", err);
    if (r.complete)
        return FS_OK;
    offset = r.upload_offset > 0 ? (uint64_t)r.upload_offset : 0;
    store_blob_path(s, b->hash, path, sizeof path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fs_err_set(err, FS_ECORRUPT,
                          "an attachment's file is missing from this store (%s); it cannot be "
                          "sent",
                          path);
    while (offset < b->size) {
        uint64_t len = b->size - offset < *chunk ? b->size - offset : *chunk;

        g->offset = offset;
        rc = sync_http_patch_chunk(h, target, fd, offset, len, on_bytes, g, &r, err);
        if (rc == FS_EAGAIN && sync_http_connected(h) && ++cuts <= CUTS_MAX) {
            /* Cut: the server kept what arrived; smaller chunks from here. */
            *chunk = *chunk / 2 < CHUNK_MIN ? CHUNK_MIN : *chunk / 2;
            rc = sync_http_request(h, "HEAD", target, NULL, 0, 1, &r, err);
            if (rc == FS_EAGAIN)
                continue;
            if (rc)
                break;
            if (r.status != 200) {
                rc = refused(&r, "an attachment", err);
                break;
            }
            if (r.complete) {
                offset = b->size;
                break;
            }
            if (r.upload_offset > (long long)offset)
                cuts = 0; /* progress despite the cut */
            offset = r.upload_offset > 0 ? (uint64_t)r.upload_offset : 0;
            continue;
        }
        if (rc)
            break;
        if (r.status == 409 && r.upload_offset >= 0) {
            offset = (uint64_t)r.upload_offset; /* the server says where */
            continue;
        }
        if (r.status == 409 && ++busy_waits <= CUTS_MAX) {
            /* The server is still closing a cut upload of this blob (it
             * makes the bytes durable first): a short pause, then on. */
            long wait = r.retry_after_s > 0 && r.retry_after_s <= 5 ? r.retry_after_s : 1;

            sleep((unsigned)wait);
            continue;
        }
        if (r.status != 200) {
            rc = refused(&r, "an attachment", err);
            break;
        }
        if (r.complete) {
            offset = b->size;
            break;
        }
        offset = r.upload_offset > 0 ? (uint64_t)r.upload_offset : offset + len;
        cuts = 0;
        *chunk = *chunk * 2 > CHUNK_MAX ? CHUNK_MAX : *chunk * 2;
    }
    close(fd);
    if (rc)
        return rc;
    if (offset < b->size)
        return fs_err_set(err, FS_EAGAIN, "the link keeps cutting an attachment; it will resume");
    return FS_OK;
}

enum fs_rc
sync_blobs_upload(struct store *s, struct sync_http *h, struct sync_blob_progress *p,
                  uint64_t *done, struct fs_err *err)
{
    struct list l = {NULL, 0, 0};
    struct prog g;
    uint64_t total = 0;
    size_t i, chunk = setting_chunk(s);
    enum fs_rc rc;

    *done = 0;
    rc = store_blobs_pending(s, collect, &l, &total, err);
    if (rc)
        goto out;
    if (p)
        p->total = total;
    memset(&g, 0, sizeof g);
    g.p = p;
    for (i = 0; i < l.n; i++) {
        rc = upload_one(s, h, &l.b[i], &chunk, &g, err);
        if (!rc)
            rc = store_blob_uploaded(s, l.b[i].hash, err);
        if (rc)
            break;
        g.before += l.b[i].size;
        (*done)++;
    }
out:
    save_chunk(s, chunk);
    free(l.b);
    return rc;
}

/* BLAKE2b-256 of a file, streamed. */
static enum fs_rc
file_hash(int fd, unsigned char out[PROTO_HASH_BYTES], struct fs_err *err)
{
    crypto_generichash_state st;
    unsigned char buf[65536];
    off_t off = 0;

    crypto_generichash_init(&st, NULL, 0, PROTO_HASH_BYTES);
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf, off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fs_err_set(err, FS_EIO, "cannot read a download: %s", strerror(errno));
        if (n == 0)
            break;
        crypto_generichash_update(&st, buf, (size_t)n);
        off += n;
    }
    crypto_generichash_final(&st, out, PROTO_HASH_BYTES);
    return FS_OK;
}

static enum fs_rc
download_one(struct store *s, struct sync_http *h, const struct store_blob *b, struct prog *g,
             struct fs_err *err)
{
    struct sync_resp r;
    struct stat st;
    unsigned char got[PROTO_HASH_BYTES];
    char target[256], dir[4096], path[4400], hex[2 * PROTO_HASH_BYTES + 1];
    int fd = -1, cuts = 0;
    enum fs_rc rc;

    rc = blob_target(s, b->hash, target, sizeof target, err);
    if (!rc)
        rc = store_blob_tmpdir(s, dir, sizeof dir, err);
    if (rc)
        return rc;
    proto_hex_encode(b->hash, PROTO_HASH_BYTES, hex);
    snprintf(path, sizeof path, "%s/download-%s", dir, hex);
    fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return fs_err_set(err, FS_EIO, "cannot write %s: %s", path, strerror(errno));
    for (;;) {
        if (fstat(fd, &st) != 0) {
            rc = fs_err_set(err, FS_EIO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if ((uint64_t)st.st_size >= b->size)
            break;
        g->offset = (uint64_t)st.st_size;
        rc = sync_http_download(h, target, fd, (uint64_t)st.st_size, on_bytes, g, &r, err);
        if (rc == FS_EAGAIN && sync_http_connected(h) && ++cuts <= CUTS_MAX)
            continue; /* resume where the file ends */
        if (rc)
            break;
        if (r.status == 404 || r.status == 416) {
            rc = fs_err_set(err, FS_EAGAIN,
                            "the server does not hold an attachment whole yet; pull again later");
            break;
        }
        if (r.status != 200 && r.status != 206) {
            rc = refused(&r, "an attachment", err);
            break;
        }
        if (r.status == 200 && st.st_size > 0) {
            /* The server ignored the Range: start over. */
            if (ftruncate(fd, 0) != 0) {
                rc = fs_err_set(err, FS_EIO, "cannot restart %s", path);
                break;
            }
        }
        cuts = 0;
    }
    if (!rc && fsync(fd) != 0)
        rc = fs_err_set(err, FS_EIO, "cannot save %s: %s", path, strerror(errno));
    if (!rc)
        rc = file_hash(fd, got, err);
    close(fd);
    if (rc)
        return rc;
    if (sodium_memcmp(got, b->hash, PROTO_HASH_BYTES) != 0) {
        unlink(path);
        return fs_err_set(err, FS_EPROTO,
                          "a downloaded attachment does not match its hash; it was discarded");
    }
    return store_blob_adopt(s, b->hash, path, err);
}

enum fs_rc
sync_blobs_download(struct store *s, struct sync_http *h, struct sync_blob_progress *p,
                    uint64_t *done, struct fs_err *err)
{
    struct list l = {NULL, 0, 0};
    struct prog g;
    size_t i;
    enum fs_rc rc;

    *done = 0;
    rc = store_blobs_missing(s, collect, &l, err);
    if (rc)
        goto out;
    memset(&g, 0, sizeof g);
    g.p = p;
    if (p) {
        p->total = 0;
        for (i = 0; i < l.n; i++)
            p->total += l.b[i].size;
    }
    for (i = 0; i < l.n; i++) {
        rc = download_one(s, h, &l.b[i], &g, err);
        if (rc)
            break;
        g.before += l.b[i].size;
        (*done)++;
    }
out:
    free(l.b);
    return rc;
}
