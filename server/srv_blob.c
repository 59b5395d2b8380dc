/* Blobs over HTTP (DESIGN §5): resumable uploads by offset, like tus —
 * HEAD answers the bytes held durably, PATCH appends at that offset, streamed
 * to disk in constant memory — and downloads with Range. Only blobs that a
 * verified entry of the project names are accepted. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srv.h"

struct srv_blob_up {
    struct srv *s;
    struct srv_db *db;
    struct srv_blob_writer *w;
    unsigned char hash[PROTO_HASH_BYTES];
    uint64_t offset, length, expected, received;
    int failed;
};

void
srv_resp_header(struct srv_resp *rs, const char *name, const char *fmt, ...)
{
    va_list ap;

    if (rs->n_hdr >= FS_ARRAY_LEN(rs->hdr))
        return;
    rs->hdr[rs->n_hdr].name = name;
    va_start(ap, fmt);
    vsnprintf(rs->hdr[rs->n_hdr].value, sizeof rs->hdr[rs->n_hdr].value, fmt, ap);
    va_end(ap);
    rs->n_hdr++;
}

/* "/v1/projects/<p>/blobs/<hash>" into project and hash. */
static int
blob_url(const char *url, char project[SRV_PROJECT_MAX + 1], unsigned char hash[PROTO_HASH_BYTES])
{
    static const char pre[] = "/v1/projects/";
    const char *p, *slash;
    size_t n;

    if (strncmp(url, pre, sizeof pre - 1) != 0)
        return -1;
    p = url + sizeof pre - 1;
    slash = strchr(p, '/');
    if (!slash || (n = (size_t)(slash - p)) == 0 || n > SRV_PROJECT_MAX)
        return -1;
    memcpy(project, p, n);
    project[n] = 0;
    if (!srv_project_valid(project) || strncmp(slash, "/blobs/", 7) != 0)
        return -1;
    return proto_hex_decode(slash + 7, strlen(slash + 7), hash, PROTO_HASH_BYTES) ? -1 : 0;
}

/* Who may touch a blob of project p: the feeds whose own verified entries
 * name it, and p's coordinators; it must be named by a verified entry of p at
 * all (403 otherwise). Another project's device gets 404, as if nothing were
 * here. */
static int
may_touch(struct srv *s, struct srv_db *db, const struct srv_feed *caller, const char *project,
          const unsigned char hash[PROTO_HASH_BYTES], uint64_t *size, struct srv_resp *rs)
{
    struct fs_err err;
    int by_feed = 0;
    enum fs_rc rc;

    if (strcmp(caller->project, project) != 0) {
        srv_resp_error(s, rs, 404, "not_found", "no such blob here");
        return -1;
    }
    rc = s->ops->blob_ref(db, project, hash, caller->feed, size, &by_feed, &err);
    if (rc == FS_ENOTFOUND) {
        srv_resp_error(s, rs, 403, "forbidden",
                       "no verified entry of this project names that blob; sync entries first");
        return -1;
    }
    if (rc) {
        srv_storage_error(s, rs, rc, &err);
        return -1;
    }
    /* DESIGN §5: the feeds whose own verified entries name it, and the
     * project's coordinators; other devices of the project get 403. */
    if (!by_feed && caller->role != SRV_ROLE_COORDINATOR) {
        srv_resp_error(s, rs, 403, "forbidden",
                       "only the devices whose entries name this blob, and coordinators, may "
                       "touch it");
        return -1;
    }
    if (*size > s->cfg.blob_max) {
        char msg[128];

        snprintf(msg, sizeof msg, "the blob is larger than this server's cap of %" PRIu64 " bytes",
                 s->cfg.blob_max);
        srv_resp_error(s, rs, 413, "too_big", msg);
        return -1;
    }
    return 0;
}

/* A strict "bytes=N-" (the only Range form the agent sends). */
static int
range_start(const char *v, uint64_t *start)
{
    uint64_t n = 0;
    size_t i = 6, digits = 0;

    if (!v || strncmp(v, "bytes=", 6) != 0)
        return -1;
    while (v[i] >= '0' && v[i] <= '9' && digits < 19) {
        n = n * 10 + (uint64_t)(v[i++] - '0');
        digits++;
    }
    if (!digits || v[i] != '-' || v[i + 1] != 0)
        return -1;
    *start = n;
    return 0;
}

void
srv_blob_read(struct srv *s, struct srv_db *db, const struct srv_req *rq,
              const struct srv_feed *caller, const char *project, const char *hash_hex,
              struct srv_resp *rs)
{
    unsigned char hash[PROTO_HASH_BYTES];
    struct fs_err err;
    uint64_t size, offset, start = 0, have;
    int complete, fd;
    enum fs_rc rc;

    if (proto_hex_decode(hash_hex, strlen(hash_hex), hash, PROTO_HASH_BYTES)) {
        srv_resp_error(s, rs, 404, "not_found", "no such blob here");
        return;
    }
    if (may_touch(s, db, caller, project, hash, &size, rs))
        return;
    if (strcmp(rq->method, "HEAD") == 0) {
        rc = s->ops->blob_state(db, hash, &offset, &complete, &err);
        if (rc) {
            srv_storage_error(s, rs, rc, &err);
            return;
        }
        rs->status = 200;
        srv_resp_header(rs, "Upload-Offset", "%" PRIu64, complete ? size : offset);
        srv_resp_header(rs, "Upload-Length", "%" PRIu64, size);
        srv_resp_header(rs, "X-Fieldsync-Complete", "%d", complete);
        return;
    }
    rc = s->ops->blob_open(db, hash, &fd, &have, &err);
    if (rc == FS_ENOTFOUND) {
        srv_resp_error(s, rs, 404, "not_found", "the server does not hold this blob yet");
        return;
    }
    if (rc) {
        srv_storage_error(s, rs, rc, &err);
        return;
    }
    if (rq->range && (range_start(rq->range, &start) || start > have)) {
        close(fd);
        srv_resp_error(s, rs, 416, "range", "Range takes bytes=N- within the blob");
        return;
    }
    rs->fd = fd;
    rs->fd_off = start;
    rs->fd_len = have - start;
    rs->content_type = "application/octet-stream";
    rs->status = rq->range ? 206 : 200;
    if (rq->range)
        srv_resp_header(rs, "Content-Range", "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start,
                        have ? have - 1 : 0, have);
}

int
srv_blob_patch_begin(struct srv *s, const struct srv_req *rq, const char *upload_offset,
                     uint64_t content_length, struct srv_blob_up **out, struct srv_resp *rs)
{
    struct srv_blob_up *u = NULL;
    struct srv_feed caller;
    struct fs_err err;
    char project[SRV_PROJECT_MAX + 1];
    uint64_t chunk[2], held = 0;
    const char *p;
    enum fs_rc rc;

    *out = NULL;
    u = calloc(1, sizeof *u);
    if (!u) {
        srv_resp_error(s, rs, 503, "unavailable", "out of memory");
        return -1;
    }
    u->s = s;
    if (blob_url(rq->url, project, u->hash)) {
        srv_resp_error(s, rs, 404, "not_found", "no such blob here");
        goto fail;
    }
    if (!upload_offset || !*upload_offset || strlen(upload_offset) > 19) {
        srv_resp_error(s, rs, 400, "malformed", "a PATCH carries Upload-Offset");
        goto fail;
    }
    for (p = upload_offset; *p; p++) {
        if (*p < '0' || *p > '9') {
            srv_resp_error(s, rs, 400, "malformed", "Upload-Offset is not a number");
            goto fail;
        }
        u->offset = u->offset * 10 + (uint64_t)(*p - '0');
    }
    u->length = content_length;
    rc = srv_db_get(s, &u->db, &err);
    if (rc) {
        srv_storage_error(s, rs, rc, &err);
        goto fail;
    }
    chunk[0] = u->offset;
    chunk[1] = u->length;
    if (srv_authenticate(s, u->db, rq, chunk, &caller, rs))
        goto fail;
    if (may_touch(s, u->db, &caller, project, u->hash, &u->expected, rs))
        goto fail;
    if (u->offset + u->length > u->expected) {
        srv_resp_error(s, rs, 413, "too_big", "the chunk reaches past the size the entry gives");
        goto fail;
    }
    rc = s->ops->blob_write_begin(u->db, u->hash, u->offset, u->expected, &u->w, &held, &err);
    if (rc == FS_ECONFLICT) {
        char msg[96];

        snprintf(msg, sizeof msg, "the server holds %" PRIu64 " bytes; send from there", held);
        srv_resp_error(s, rs, 409, "offset", msg);
        srv_resp_header(rs, "Upload-Offset", "%" PRIu64, held);
        goto fail;
    }
    if (rc == FS_EEXIST) {
        rs->status = 200;
        srv_resp_header(rs, "Upload-Offset", "%" PRIu64, u->expected);
        srv_resp_header(rs, "X-Fieldsync-Complete", "1");
        goto fail;
    }
    if (rc == FS_EAGAIN && strstr(err.msg, "another upload")) {
        srv_resp_error(s, rs, 409, "busy", "another upload of this blob is running; retry");
        snprintf(rs->retry_after, sizeof rs->retry_after, "2");
        goto fail;
    }
    if (rc) {
        srv_storage_error(s, rs, rc, &err);
        goto fail;
    }
    *out = u;
    return 0;
fail:
    if (u->db)
        srv_db_put(s, u->db);
    free(u);
    return -1;
}

int
srv_blob_patch_data(struct srv_blob_up *u, const void *p, size_t n)
{
    struct fs_err err;

    if (u->failed)
        return -1;
    if (u->received + n > u->length || u->s->ops->blob_write(u->w, p, n, &err) != FS_OK) {
        u->failed = 1;
        return -1;
    }
    u->received += n;
    return 0;
}

static void
finish(struct srv_blob_up *u, struct srv_resp *rs)
{
    struct srv *s = u->s;
    struct fs_err err;
    uint64_t held = 0;
    int complete = 0;
    enum fs_rc rc;

    rc = s->ops->blob_write_end(u->db, u->w, &complete, &held, &err);
    u->w = NULL;
    if (rs) {
        if (rc == FS_EINVAL) {
            srv_resp_error(s, rs, 400, "hash_mismatch", err.msg);
        } else if (rc) {
            srv_storage_error(s, rs, rc, &err);
        } else {
            rs->status = 200;
            srv_resp_header(rs, "Upload-Offset", "%" PRIu64, held);
            srv_resp_header(rs, "X-Fieldsync-Complete", "%d", complete);
            if (complete)
                FS_LOG(&s->log, FS_LOG_INFO, "a blob of %" PRIu64 " bytes is complete", held);
        }
    } else if (rc) {
        FS_LOG(&s->log, FS_LOG_WARNING, "a cut upload: %s", err.msg);
    }
    srv_db_put(s, u->db);
    free(u);
}

void
srv_blob_patch_end(struct srv_blob_up *u, struct srv_resp *rs)
{
    if (u->received != u->length) {
        srv_resp_error(u->s, rs, 400, "malformed", "the chunk is shorter than its length");
        finish(u, NULL);
        return;
    }
    finish(u, rs);
}

void
srv_blob_patch_abort(struct srv_blob_up *u)
{
    /* Whatever arrived is kept, made durable and reported by the next HEAD. */
    finish(u, NULL);
}
