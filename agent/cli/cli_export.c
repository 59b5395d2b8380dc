/* export: the merged records as CSV, JSON Lines or GeoJSON, through the same
 * export code the server uses. Written to a temporary file and renamed, so an
 * export file is whole or absent. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "proto_content.h"
#include "proto_export.h"

enum { X_FORMAT, X_OUT, X_KIND, X_SINCE, X_EXCEL };

struct sink {
    int fd;
    enum fs_rc rc;
};

static enum fs_rc
sink_write(void *ctx, const void *p, size_t n)
{
    struct sink *k = ctx;
    const char *c = p;

    while (n) {
        ssize_t w = write(k->fd, c, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return k->rc = FS_EIO;
        c += w;
        n -= (size_t)w;
    }
    return FS_OK;
}

struct pass {
    struct store *store;
    struct proto_field_set *fields;
    struct proto_export *x;
    struct fs_err *err;
    enum fs_rc rc;
    uint64_t contested;
};

static int
collect(void *ctx, const struct store_record *r)
{
    struct pass *p = ctx;

    if (r->state != PROTO_REC_LIVE) {
        p->contested += r->state == PROTO_REC_CONTESTED;
        return 0;
    }
    p->rc = proto_field_set_add_content(p->fields, r->content, r->content_len, p->err);
    return p->rc != FS_OK;
}

/* Local paths of a record's attachments held here (export names them). */
static enum fs_rc
attachment_paths(struct store *s, const struct store_record *r, struct proto_content *c,
                 char ***paths)
{
    size_t i;

    *paths = NULL;
    /* Most records have none: look before parsing. */
    if (!memmem(r->content, r->content_len, "\"attachments\"", 13) ||
        proto_content_parse(r->content, r->content_len, c, NULL) != FS_OK || !c->n_attachments)
        return FS_OK;
    *paths = calloc(c->n_attachments, sizeof **paths);
    if (!*paths)
        return FS_ENOMEM;
    for (i = 0; i < c->n_attachments; i++) {
        char path[4200];

        store_blob_path(s, c->attachments[i].hash, path, sizeof path);
        if (access(path, R_OK) == 0 && !((*paths)[i] = strdup(path)))
            return FS_ENOMEM;
    }
    return FS_OK;
}

static int
emit(void *ctx, const struct store_record *r)
{
    struct pass *p = ctx;
    struct proto_export_record er;
    struct proto_content c;
    char **paths = NULL;
    size_t i;

    if (r->state != PROTO_REC_LIVE)
        return 0;
    proto_content_init(&c);
    p->rc = attachment_paths(p->store, r, &c, &paths);
    if (p->rc) {
        fs_err_set(p->err, p->rc, "out of memory");
        goto out;
    }
    memset(&er, 0, sizeof er);
    er.id = r->id;
    er.gen = r->gen;
    er.feed = r->has_owner ? r->owner : NULL;
    er.conflicts = (const unsigned char(*)[PROTO_HASH_BYTES])r->conflict_revs;
    er.n_conflicts = r->n_conflict_revs;
    er.content = r->content;
    er.content_len = r->content_len;
    er.checked_hash = r->has_content_hash ? r->content_hash : NULL;
    if (paths) {
        er.attachment_paths = (const char *const *)paths;
        er.n_attachment_paths = c.n_attachments;
    }
    p->rc = proto_export_add(p->x, &er, p->err);
out:
    for (i = 0; paths && i < c.n_attachments; i++)
        free(paths[i]);
    free(paths);
    proto_content_release(&c);
    return p->rc != FS_OK;
}

int
cmd_export(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    struct store_filter f;
    struct proto_export_opts o;
    struct pass p;
    struct sink k = {1, FS_OK};
    char when[PROTO_TIME_MAX_LEN], tmp[4096] = "";
    const char *fmt, *out;
    enum fs_rc rc;
    int done, code;

    memset(&p, 0, sizeof p);
    memset(&f, 0, sizeof f);
    memset(&o, 0, sizeof o);
    p.err = &err;
    p.store = cli->store;
    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    fmt = cli_arg(&a, X_FORMAT);
    if (a.npos || !fmt) {
        code = cli_usage("usage: fieldsync export --format csv|jsonl|geojson [--out F] [--kind K] "
                         "[--since T] [--excel]");
        goto out;
    }
    if (strcmp(fmt, "csv") == 0)
        o.format = PROTO_EXPORT_CSV;
    else if (strcmp(fmt, "jsonl") == 0)
        o.format = PROTO_EXPORT_JSONL;
    else if (strcmp(fmt, "geojson") == 0)
        o.format = PROTO_EXPORT_GEOJSON;
    else {
        code = cli_usage("--format takes csv, jsonl or geojson");
        goto out;
    }
    o.excel = cli_flag(&a, X_EXCEL);
    if (o.excel && o.format != PROTO_EXPORT_CSV) {
        code = cli_usage("--excel goes with --format csv");
        goto out;
    }
    f.kind = cli_arg(&a, X_KIND);
    if (f.kind && proto_kind_check(f.kind)) {
        code = cli_usage("--kind takes a kind such as interview");
        goto out;
    }
    if (cli_arg(&a, X_SINCE)) {
        if (cli_parse_time(cli_arg(&a, X_SINCE), when, &f.since_ms)) {
            code = cli_usage("--since takes RFC 3339 or YYYY-MM-DD[ HH:MM] (local time)");
            goto out;
        }
        f.has_since = 1;
    }
    /* Pass 1, the field set (CSV columns, GeoJSON properties); JSON Lines
     * write each record's own fields and need none. */
    if (o.format != PROTO_EXPORT_JSONL) {
        rc = proto_field_set_new(&p.fields);
        if (rc) {
            code = cli_fail(fs_err_set(&err, rc, "out of memory"), &err);
            goto out;
        }
        rc = store_records_each(cli->store, &f, collect, &p, &err);
        if (!rc && p.rc)
            rc = p.rc;
        if (rc) {
            code = cli_fail(rc, &err);
            goto out;
        }
    }
    out = cli_arg(&a, X_OUT);
    if (out && strcmp(out, "-") != 0) {
        snprintf(tmp, sizeof tmp, "%s.tmp%ld", out, (long)getpid());
        k.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (k.fd < 0) {
            code = cli_fail(fs_err_set(&err, FS_EIO, "cannot write %s: %s", tmp, strerror(errno)),
                            &err);
            tmp[0] = 0;
            goto out;
        }
    }
    rc = proto_export_new(&o, p.fields, sink_write, &k, &p.x);
    if (!rc) {
        rc = store_records_each(cli->store, &f, emit, &p, &err);
        if (!rc && p.rc)
            rc = p.rc;
    }
    if (!rc)
        rc = proto_export_finish(p.x, &err);
    if (rc == FS_EIO || k.rc)
        rc = fs_err_set(&err, FS_EIO, "cannot write the export: %s", strerror(errno));
    if (!rc && tmp[0]) {
        if (fsync(k.fd) != 0 || close(k.fd) != 0 || rename(tmp, out) != 0)
            rc = fs_err_set(&err, FS_EIO, "cannot write %s: %s", out, strerror(errno));
        k.fd = -1;
        if (!rc)
            tmp[0] = 0;
    }
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    if (p.contested)
        fprintf(stderr,
                "fieldsync: %llu contested record%s (created by several devices) left out; see "
                "'fieldsync list --conflicts'\n",
                (unsigned long long)p.contested, p.contested == 1 ? "" : "s");
    if (out && strcmp(out, "-") != 0)
        fprintf(stderr, "exported %llu records to %s\n",
                (unsigned long long)proto_export_count(p.x), out);
out:
    if (tmp[0]) {
        if (k.fd >= 0)
            close(k.fd);
        unlink(tmp);
    }
    proto_export_free(p.x);
    proto_field_set_free(p.fields);
    cli_args_release(&a);
    return code;
}
