/* Bundles: a push carried by hand. A laptop that never meets a link writes
 * what the server lacks to a file, sealed to the project's server and signed
 * by its feed; anyone enrolled carries it (`fieldsync relay`), or the admin
 * imports it (`fieldsync-server import`). The server checks a bundle as it
 * checks a push, so exactly once holds whoever carries it, however often. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto_auth.h"
#include "proto_batch.h"
#include "proto_json.h"
#include "sync.h"

static enum fs_rc
pinned_key(struct store *s, unsigned char pk[PROTO_KEY_BYTES], struct fs_err *err)
{
    char *pinned = NULL;
    enum fs_rc rc = store_setting_get(s, "server_key", &pinned, err);

    if (!rc && (!pinned || proto_hex_decode(pinned, strlen(pinned), pk, PROTO_KEY_BYTES)))
        rc = fs_err_set(err, FS_EAUTH,
                        "this device is not enrolled: a bundle is sealed to the project's "
                        "server, so enroll first");
    free(pinned);
    return rc;
}

static enum fs_rc
write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return FS_EIO;
        p += w;
        n -= (size_t)w;
    }
    return FS_OK;
}

/* The folder of path, fsynced: the rename is durable. */
static enum fs_rc
sync_parent(const char *path)
{
    char *copy = strdup(path);
    int fd;
    enum fs_rc rc = FS_EIO;

    if (!copy)
        return FS_ENOMEM;
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0 && fsync(fd) == 0)
        rc = FS_OK;
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

enum fs_rc
sync_bundle_write(struct store *s, const char *path, int all, struct sync_bundle_result *out,
                  struct fs_err *err)
{
    unsigned char server_pk[PROTO_KEY_BYTES];
    struct store_status st;
    struct store_receipt held;
    struct proto_batch_enc *enc = NULL;
    struct fs_buf batch;
    char *tmp = NULL;
    size_t max_entries, max_bytes;
    uint64_t next;
    int fd = -1;
    enum fs_rc rc;

    memset(out, 0, sizeof *out);
    memset(&held, 0, sizeof held);
    fs_buf_init(&batch, PROTO_BATCH_MAX_BYTES);
    rc = pinned_key(s, server_pk, err);
    if (!rc)
        rc = store_status_get(s, &st, err);
    if (!rc)
        rc = store_receipt_get(s, store_feed(s), &held, err);
    if (rc)
        goto out;
    next = all ? 1 : held.have_seq + 1;
    out->from = next;
    if (next > st.local_seq)
        goto out; /* nothing the last receipt does not cover */
    max_entries = sync_setting_size(s, "batch_max_entries", 5000);
    max_bytes = sync_setting_size(s, "batch_max_bytes", 4u << 20);
    if (max_bytes > PROTO_BATCH_MAX_RAW / 2)
        max_bytes = PROTO_BATCH_MAX_RAW / 2;
    if (asprintf(&tmp, "%s.tmp%ld", path, (long)getpid()) < 0) {
        tmp = NULL;
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = fs_err_set(err, FS_EIO, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    rc = proto_batch_enc_new(1, &enc);
    if (rc) {
        rc = fs_err_set(err, rc, "out of memory");
        goto out;
    }
    while (next <= st.local_seq) {
        struct proto_batch_header bh;

        fs_buf_reset(&batch);
        rc = sync_own_batch(s, enc, PROTO_PURPOSE_BUNDLE, next, st.local_seq, max_entries,
                            max_bytes, server_pk, &batch, &bh, err);
        if (rc)
            goto out;
        if (write_all(fd, batch.data, batch.len)) {
            rc = fs_err_set(err, FS_EIO, "cannot write %s: %s", tmp, strerror(errno));
            goto out;
        }
        out->envelopes++;
        out->bytes += batch.len;
        out->to = bh.to;
        next = bh.to + 1;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        rc = fs_err_set(err, FS_EIO, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = fs_err_set(err, FS_EIO, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL;
    if (sync_parent(path))
        rc = fs_err_set(err, FS_EIO, "cannot sync the folder of %s: %s", path, strerror(errno));
out:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    proto_batch_enc_free(enc);
    fs_buf_release(&batch);
    store_receipt_release(&held);
    return rc;
}

/* Every batch of the file, checked before any is sent (so that a damaged
 * file sends nothing): one device's bundles, each whole and signed. */
static enum fs_rc
check_file(FILE *f, const char *path, struct fs_buf *b, unsigned char feed[PROTO_KEY_BYTES],
           struct fs_err *err)
{
    struct proto_batch_header bh;
    uint64_t n = 0;
    enum fs_rc rc;

    for (;; n++) {
        rc = proto_batch_read(proto_read_stdio, f, b, err);
        if (rc == FS_ENOTFOUND && n)
            break;
        if (rc == FS_ENOTFOUND)
            return fs_err_set(err, FS_EINVAL, "%s is empty: not a bundle", path);
        if (!rc)
            rc = proto_batch_check_bundle(b, &bh, err);
        if (!rc && n && memcmp(bh.feed, feed, PROTO_KEY_BYTES) != 0)
            rc = fs_err_set(err, FS_EINVAL, "it holds more than one device's entries");
        if (rc) {
            fs_err_prefix(err, "%s is not a bundle (nothing was sent): ", path);
            return rc == FS_EIO || rc == FS_ENOMEM ? rc : FS_EINVAL;
        }
        memcpy(feed, bh.feed, PROTO_KEY_BYTES);
    }
    rewind(f);
    return FS_OK;
}

enum fs_rc
sync_relay(struct store *s, struct sync_http *h, const char *path, struct sync_relay_result *out,
           struct fs_err *err)
{
    unsigned char server_pk[PROTO_KEY_BYTES], head[PROTO_HASH_BYTES];
    struct fs_buf b;
    struct sync_resp r;
    char target[160], hex[2 * PROTO_KEY_BYTES + 1], code[64], msg[300];
    FILE *f = NULL;
    enum fs_rc rc;

    memset(out, 0, sizeof *out);
    fs_buf_init(&b, PROTO_BATCH_MAX_BYTES);
    rc = pinned_key(s, server_pk, err);
    if (rc)
        goto out;
    f = fopen(path, "rb");
    if (!f) {
        rc = fs_err_set(err, errno == ENOENT ? FS_ENOTFOUND : FS_EIO, "cannot read %s: %s", path,
                        strerror(errno));
        goto out;
    }
    rc = check_file(f, path, &b, out->feed, err);
    if (rc)
        goto out;
    for (;;) {
        struct proto_batch_header bh;
        uint64_t have;
        int has_head;

        rc = proto_batch_read(proto_read_stdio, f, &b, err);
        if (rc == FS_ENOTFOUND) {
            rc = FS_OK;
            break;
        }
        if (!rc)
            rc = proto_batch_check_bundle(&b, &bh, err);
        if (!rc && memcmp(bh.feed, out->feed, PROTO_KEY_BYTES) != 0)
            rc = fs_err_set(err, FS_EINVAL, "%s changed while it was read", path);
        if (rc)
            goto out;
        proto_hex_encode(bh.feed, PROTO_KEY_BYTES, hex);
        snprintf(target, sizeof target, "/v1/feeds/%s/entries", hex);
        rc = sync_http_request(h, "POST", target, b.data, b.len, 0, &r, err);
        if (rc)
            goto out;
        if (r.status != 200) {
            sync_error_text(&r, code, sizeof code, msg, sizeof msg);
            if (r.status == 409 && strcmp(code, "gap") == 0)
                rc = fs_err_set(err, FS_EINVAL,
                                "the server lacks the entries before this bundle's first (%" PRIu64
                                "): %s; carry an earlier bundle of that device first, or one "
                                "made with --all",
                                bh.from, msg);
            else if (r.status == 409 && strcmp(code, "fork") == 0)
                rc = fs_err_set(err, FS_EPROTO, "fork: %s", msg);
            else if (r.status == 403)
                rc = fs_err_set(err, FS_EAUTH, "the server refuses that device: %s", msg);
            else if (r.status >= 500 || r.status == 429)
                rc = fs_err_set(err, FS_EAGAIN, "the server asks to retry later: %s", msg);
            else if (r.status == 400 || r.status == 413)
                rc = fs_err_set(err, FS_EINVAL, "the server refused the bundle: %s", msg);
            else
                rc = fs_err_set(err, FS_EPROTO, "unexpected answer %ld: %s", r.status, msg);
            goto out;
        }
        rc = sync_open_receipt(&r, server_pk, bh.feed, bh.to, &have, &has_head, head, err);
        if (rc)
            goto out;
        out->envelopes++;
        out->server_have = have;
    }
out:
    if (f)
        fclose(f);
    fs_buf_release(&b);
    return rc;
}
