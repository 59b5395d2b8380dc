/* import: JSON Lines or CSV, all or nothing, in one transaction, streamed so
 * that memory does not grow with the file. */
#include "cli.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cli_import_parse.h"

struct import {
    struct cli *cli;
    uint64_t added, skipped;
    struct fs_buf cbuf; /* canonical content of the row at hand */
};

/* Stores one row's content; id may be NULL. */
static enum fs_rc
import_row(struct import *im, const struct proto_content *c, const char *id, struct fs_err *err)
{
    unsigned char h[PROTO_HASH_BYTES];
    char nid[PROTO_UUID_LEN + 1];
    int exists, same;
    enum fs_rc rc;

    if (id) {
        if (proto_uuid_check(id, strlen(id)))
            return fs_err_set(err, FS_EINVAL, "\"id\" is not a lowercase UUIDv7");
        fs_buf_reset(&im->cbuf);
        rc = proto_content_encode(c, &im->cbuf);
        if (rc)
            return fs_err_set(err, FS_EINVAL, "the record is larger than %u bytes",
                              PROTO_CONTENT_MAX_BYTES);
        proto_hash(im->cbuf.data, im->cbuf.len, h);
        rc = store_record_has_content(im->cli->store, id, h, &exists, &same, err);
        if (rc)
            return rc;
        if (same) {
            im->skipped++;
            return FS_OK;
        }
        if (exists)
            return fs_err_set(err, FS_EINVAL,
                              "record %s is already stored with other content; remove the id to "
                              "import it as a new record",
                              id);
    }
    rc = store_record_create(im->cli->store, c, id, nid, err);
    if (!rc)
        im->added++;
    return rc;
}

static enum fs_rc
import_jsonl(struct import *im, FILE *f, const char *path, struct fs_err *err)
{
    struct cli_jsonl r;
    struct proto_content c;
    char id[PROTO_UUID_LEN + 1];
    int has_id;
    enum fs_rc rc;

    cli_jsonl_init(&r, f, path);
    for (;;) {
        rc = cli_jsonl_next(&r, &c, id, &has_id, err);
        if (rc == FS_ENOTFOUND) {
            rc = FS_OK;
            break;
        }
        if (rc)
            break;
        rc = import_row(im, &c, has_id ? id : NULL, err);
        proto_content_release(&c);
        if (rc) {
            fs_err_prefix(err, "%s line %llu: ", path, (unsigned long long)r.lineno);
            break;
        }
    }
    cli_jsonl_release(&r);
    return rc;
}

static enum fs_rc
import_csv(struct import *im, FILE *f, const char *path, struct fs_err *err)
{
    struct cli_csv r;
    struct proto_content c;
    const char *id;
    enum fs_rc rc;

    cli_csv_init(&r, f, path);
    rc = cli_csv_begin(&r, err);
    while (!rc) {
        rc = cli_csv_next(&r, &c, &id, err);
        if (rc == FS_ENOTFOUND) {
            rc = FS_OK;
            break;
        }
        if (rc)
            break;
        rc = import_row(im, &c, id, err);
        proto_content_release(&c);
        if (rc)
            fs_err_prefix(err, "%s row %llu: ", path, (unsigned long long)r.rowno);
    }
    cli_csv_release(&r);
    return rc;
}

static int
is_csv(const char *path, FILE *f)
{
    const char *dot = strrchr(path, '.');
    int ch;

    if (dot && strcmp(dot, ".csv") == 0)
        return 1;
    if (dot &&
        (strcmp(dot, ".jsonl") == 0 || strcmp(dot, ".ndjson") == 0 || strcmp(dot, ".json") == 0))
        return 0;
    /* Sniff: JSON Lines start with '{' (after a BOM or blanks). */
    while ((ch = getc(f)) != EOF && (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t' ||
                                     ch == 0xef || ch == 0xbb || ch == 0xbf))
        ;
    rewind(f);
    return ch != '{';
}

static enum fs_rc
hash_file(FILE *f, unsigned char out[PROTO_HASH_BYTES], const char *path, struct fs_err *err)
{
    crypto_generichash_state st;
    unsigned char buf[65536];
    size_t n;

    crypto_generichash_init(&st, NULL, 0, PROTO_HASH_BYTES);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        crypto_generichash_update(&st, buf, n);
    if (ferror(f))
        return fs_err_set(err, FS_EIO, "cannot read %s: %s", path, strerror(errno));
    crypto_generichash_final(&st, out, PROTO_HASH_BYTES);
    rewind(f);
    return FS_OK;
}

int
cmd_import(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct import im;
    struct fs_err err = {{0}};
    unsigned char h[PROTO_HASH_BYTES];
    const char *path;
    FILE *f = NULL;
    int done, code, seen, in_tx = 0;
    enum fs_rc rc;

    memset(&im, 0, sizeof im);
    im.cli = cli;
    fs_buf_init(&im.cbuf, PROTO_CONTENT_MAX_BYTES);
    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos != 1) {
        code = cli_usage("usage: fieldsync import FILE [--again]");
        goto out;
    }
    path = a.pos[0];
    f = fopen(path, "rb");
    if (!f) {
        rc = fs_err_set(&err, errno == ENOENT ? FS_EINVAL : FS_EIO, "cannot open %s: %s", path,
                        strerror(errno));
        goto fail;
    }
    rc = hash_file(f, h, path, &err);
    if (rc)
        goto fail;
    rc = store_begin(cli->store, &err);
    if (rc)
        goto fail;
    in_tx = 1;
    rc = store_import_seen(cli->store, h, &seen, &err);
    if (rc)
        goto fail;
    if (seen && !cli_flag(&a, 0)) {
        rc = fs_err_set(&err, FS_EINVAL,
                        "%s was imported before. Use --again to import it again (rows with an "
                        "id already stored are skipped)",
                        path);
        goto fail;
    }
    rc = is_csv(path, f) ? import_csv(&im, f, path, &err) : import_jsonl(&im, f, path, &err);
    if (rc)
        goto fail;
    rc = store_import_mark(cli->store, h, path, im.added, &err);
    if (rc)
        goto fail;
    rc = store_commit(cli->store, &err);
    in_tx = 0;
    if (rc)
        goto fail;
    fprintf(stderr, "imported %llu record%s", (unsigned long long)im.added,
            im.added == 1 ? "" : "s");
    if (im.skipped)
        fprintf(stderr, ", skipped %llu already stored", (unsigned long long)im.skipped);
    fputc('\n', stderr);
    goto out;
fail:
    if (in_tx)
        store_rollback(cli->store);
    fs_err_prefix(&err, "import failed, nothing stored: ");
    code = cli_fail(rc, &err);
out:
    if (f)
        fclose(f);
    fs_buf_release(&im.cbuf);
    cli_args_release(&a);
    return code;
}
