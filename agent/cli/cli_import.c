/* import: JSON Lines or CSV, all or nothing, in one transaction, streamed so
 * that memory does not grow with the file. */
#include "cli.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "cli_import_parse.h"

struct import {
    struct cli *cli;
    struct store_bulk *bulk; /* new records are signed here and written on another thread */
    uint64_t added, skipped;
    struct fs_buf cbuf; /* canonical content of the row at hand */
};

/* Stores one row's content; id may be NULL. enc: the content checked and
 * encoded already (by the reading thread), or NULL to do it here. where: the
 * row's line; with an error, *fail_where is the line of the row that failed
 * (an earlier one, when its write failed on the other thread). */
static enum fs_rc
import_row(struct import *im, const struct proto_content *c, const unsigned char *enc,
           size_t enc_len, const char *id, uint64_t where, uint64_t *fail_where, struct fs_err *err)
{
    unsigned char h[PROTO_HASH_BYTES];
    char nid[PROTO_UUID_LEN + 1];
    int exists, same;
    enum fs_rc rc;

    *fail_where = where;
    if (!id && enc) {
        rc = store_bulk_add(im->bulk, c, enc, enc_len, where, nid, fail_where, err);
        if (!rc)
            im->added++;
        return rc;
    }
    /* The usual way: every row before this one written first. */
    rc = store_bulk_drain(im->bulk, fail_where, err);
    if (rc)
        return rc;
    if (id) {
        if (proto_uuid_check(id, strlen(id)))
            return fs_err_set(err, FS_EINVAL, "\"id\" is not a lowercase UUIDv7");
        if (enc) {
            proto_hash(enc, enc_len, h);
        } else {
            fs_buf_reset(&im->cbuf);
            rc = proto_content_encode(c, &im->cbuf);
            if (rc)
                return fs_err_set(err, FS_EINVAL, "the record is larger than %u bytes",
                                  PROTO_CONTENT_MAX_BYTES);
            proto_hash(im->cbuf.data, im->cbuf.len, h);
        }
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
    rc = enc ? store_record_create_encoded(im->cli->store, c, enc, enc_len, id, nid, err)
             : store_record_create(im->cli->store, c, id, nid, err);
    if (!rc)
        im->added++;
    return rc;
}

/* ---- reading rows on a second thread ------------------------------------------------
 *
 * Parsing a row (JSON or CSV, UTF-8 and range checks, the content built) is a
 * quarter of an import's CPU; signing and storing it is the rest, and cannot be
 * split, each entry naming the hash of the one before. So one thread reads and
 * parses rows into a small ring while this one stores them in order: the rows
 * come out exactly as a single thread would take them, errors included. */

#define RING_ROWS 64

struct row {
    enum fs_rc rc; /* FS_OK: c and id hold the row; FS_ENOTFOUND: the end; else err */
    struct proto_content c;
    unsigned char *enc; /* c checked and encoded, or NULL (then the storing side does it) */
    size_t enc_len;
    char id[PROTO_UUID_LEN + 1];
    int has_id;
    uint64_t where; /* line (JSONL) or row (CSV) */
    struct fs_err err;
};

struct reader {
    FILE *f;
    const char *path;
    int csv;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct row ring[RING_ROWS];
    unsigned head, tail; /* rows [tail, head) are ready */
    int stop;            /* the storing side gave up: no more rows wanted */
    int reader_waits;    /* for room */
    int storer_waits;    /* for a row */
};

/* Waits for room, then hands one row over; 0 when the reader must stop. */
static int
hand_over(struct reader *rd, const struct row *r)
{
    int go;

    pthread_mutex_lock(&rd->mu);
    while (!rd->stop && rd->head - rd->tail == RING_ROWS) {
        rd->reader_waits = 1;
        pthread_cond_wait(&rd->cv, &rd->mu);
    }
    rd->reader_waits = 0;
    go = !rd->stop;
    if (go) {
        rd->ring[rd->head % RING_ROWS] = *r;
        rd->head++;
        if (rd->storer_waits) /* a wake-up per row would cost more than the row */
            pthread_cond_signal(&rd->cv);
    }
    pthread_mutex_unlock(&rd->mu);
    return go;
}

static void
row_release(struct row *r)
{
    if (r->rc == FS_OK)
        proto_content_release(&r->c);
    free(r->enc);
    r->enc = NULL;
}

static void *
read_rows(void *arg)
{
    struct reader *rd = arg;
    struct fs_buf enc;
    struct row r;
    struct cli_jsonl jr;
    struct cli_csv cr;
    const char *id;

    fs_buf_init(&enc, PROTO_CONTENT_MAX_BYTES);
    if (rd->csv) {
        cli_csv_init(&cr, rd->f, rd->path);
        memset(&r, 0, sizeof r);
        r.rc = cli_csv_begin(&cr, &r.err);
        if (r.rc) {
            hand_over(rd, &r);
            cli_csv_release(&cr);
            fs_buf_release(&enc);
            return NULL;
        }
    } else {
        cli_jsonl_init(&jr, rd->f, rd->path);
    }
    for (;;) {
        memset(&r, 0, sizeof r);
        if (rd->csv) {
            r.rc = cli_csv_next(&cr, &r.c, &id, &r.err);
            r.where = cr.rowno;
            if (r.rc == FS_OK && id) {
                snprintf(r.id, sizeof r.id, "%s", id);
                r.has_id = 1;
                if (strlen(id) != PROTO_UUID_LEN)
                    r.id[0] = '\0'; /* refused as not a UUID below */
            }
        } else {
            r.rc = cli_jsonl_next(&jr, &r.c, r.id, &r.has_id, &r.err);
            r.where = jr.lineno;
        }
        if (r.rc == FS_OK && proto_content_check(&r.c, NULL) == FS_OK) {
            /* The canonical bytes too: a sixth of what the storing side did. */
            fs_buf_reset(&enc);
            if (proto_content_encode(&r.c, &enc) == FS_OK && (r.enc = malloc(enc.len)) != NULL) {
                memcpy(r.enc, enc.data, enc.len);
                r.enc_len = enc.len;
            }
        }
        if (!hand_over(rd, &r)) {
            row_release(&r);
            break;
        }
        if (r.rc != FS_OK)
            break; /* the end, or an error the storing side reports */
    }
    if (rd->csv)
        cli_csv_release(&cr);
    else
        cli_jsonl_release(&jr);
    fs_buf_release(&enc);
    return NULL;
}

/* Takes the next row in order (waiting for the reader). */
static void
take_row(struct reader *rd, struct row *out)
{
    pthread_mutex_lock(&rd->mu);
    while (rd->head == rd->tail) {
        rd->storer_waits = 1;
        pthread_cond_wait(&rd->cv, &rd->mu);
    }
    rd->storer_waits = 0;
    *out = rd->ring[rd->tail % RING_ROWS];
    rd->tail++;
    if (rd->reader_waits && rd->head - rd->tail <= RING_ROWS / 2)
        pthread_cond_signal(&rd->cv);
    pthread_mutex_unlock(&rd->mu);
}

/* Every row of f stored in order, or the first error (nothing is committed
 * here: the caller's transaction decides). */
static enum fs_rc
import_rows(struct import *im, FILE *f, const char *path, int csv, struct fs_err *err)
{
    struct reader rd;
    struct row r;
    pthread_t t;
    uint64_t where = 0;
    enum fs_rc rc = FS_OK;

    memset(&rd, 0, sizeof rd);
    rd.f = f;
    rd.path = path;
    rd.csv = csv;
    if (pthread_mutex_init(&rd.mu, NULL) != 0)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    if (pthread_cond_init(&rd.cv, NULL) != 0) {
        pthread_mutex_destroy(&rd.mu);
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    }
    if (pthread_create(&t, NULL, read_rows, &rd) != 0) {
        pthread_cond_destroy(&rd.cv);
        pthread_mutex_destroy(&rd.mu);
        return fs_err_set(err, FS_ENOMEM, "cannot start a thread");
    }
    for (;;) {
        take_row(&rd, &r);
        if (r.rc == FS_ENOTFOUND)
            break;
        if (r.rc) {
            *err = r.err;
            rc = r.rc;
            where = 0; /* the reader's message names its line */
            break;
        }
        rc = import_row(im, &r.c, r.enc, r.enc_len, r.has_id ? r.id : NULL, r.where, &where, err);
        row_release(&r);
        if (rc)
            break;
    }
    if (!rc)
        rc = store_bulk_drain(im->bulk, &where, err);
    if (rc && where)
        fs_err_prefix(err, "%s %s %llu: ", path, csv ? "row" : "line", (unsigned long long)where);
    /* Stop the reader, then free what it had read ahead. */
    pthread_mutex_lock(&rd.mu);
    rd.stop = 1;
    pthread_cond_broadcast(&rd.cv);
    pthread_mutex_unlock(&rd.mu);
    pthread_join(t, NULL);
    while (rd.tail != rd.head)
        row_release(&rd.ring[rd.tail++ % RING_ROWS]);
    pthread_cond_destroy(&rd.cv);
    pthread_mutex_destroy(&rd.mu);
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
    rc = store_bulk_begin(cli->store, &im.bulk, &err);
    if (rc)
        goto fail;
    rc = import_rows(&im, f, path, is_csv(path, f), &err);
    if (rc)
        goto fail;
    {
        uint64_t w;

        rc = store_bulk_end(im.bulk, &w, &err);
        im.bulk = NULL;
        if (rc)
            goto fail;
    }
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
    if (im.bulk) {
        struct fs_err ignored;
        uint64_t w;

        (void)store_bulk_end(im.bulk, &w, &ignored); /* the writer stopped before the rollback */
        im.bulk = NULL;
    }
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
