/* import: JSON Lines or CSV, all or nothing, in one transaction, streamed so
 * that memory does not grow with the file. */
#include "cli.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "proto_json.h"

#define IMPORT_LINE_MAX (1u << 20) /* one JSON line or CSV row */

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

/* A parse error that never quotes the input (jansson's texts can). */
static enum fs_rc
json_row_error(const json_error_t *je, struct fs_err *err)
{
    switch (json_error_code(je)) {
    case json_error_invalid_utf8:
        return fs_err_set(err, FS_EINVAL, "not valid UTF-8");
    case json_error_duplicate_key:
        return fs_err_set(err, FS_EINVAL, "a key appears twice");
    case json_error_null_character:
        return fs_err_set(err, FS_EINVAL, "contains a NUL character");
    case json_error_end_of_input_expected:
        return fs_err_set(err, FS_EINVAL, "more than one JSON value on the line");
    default:
        return fs_err_set(err, FS_EINVAL, "malformed JSON near column %d", je->column);
    }
}

static enum fs_rc
import_jsonl_line(struct import *im, const char *line, size_t len, struct fs_err *err)
{
    static const char *const extra[] = {"id", NULL};
    json_error_t je;
    json_t *obj, *idv;
    struct proto_content c;
    enum fs_rc rc;
    char id[PROTO_UUID_LEN + 1];

    obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!obj)
        return json_row_error(&je, err);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return fs_err_set(err, FS_EINVAL, "not a JSON object");
    }
    idv = json_object_get(obj, "id");
    if (idv && (!json_is_string(idv) || json_string_length(idv) != PROTO_UUID_LEN)) {
        json_decref(obj);
        return fs_err_set(err, FS_EINVAL, "\"id\" is not a lowercase UUIDv7");
    }
    if (idv)
        memcpy(id, json_string_value(idv), PROTO_UUID_LEN + 1);
    rc = proto_content_from_json(obj, extra, &c, err);
    json_decref(obj);
    if (rc)
        return rc;
    rc = import_row(im, &c, idv ? id : NULL, err);
    proto_content_release(&c);
    return rc;
}

static enum fs_rc
import_jsonl(struct import *im, FILE *f, const char *path, struct fs_err *err)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    enum fs_rc rc = FS_OK;

    while ((n = getline(&line, &cap, f)) > 0) {
        size_t len = (size_t)n;

        lineno++;
        if (len > IMPORT_LINE_MAX) {
            rc = fs_err_set(err, FS_ETOOBIG, "%s line %llu is longer than 1 MiB", path,
                            (unsigned long long)lineno);
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (lineno == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
            memmove(line, line + 3, len - 3);
            len -= 3;
        }
        if (len == 0 || strspn(line, " \t") == len)
            continue;
        rc = import_jsonl_line(im, line, len, err);
        if (rc) {
            fs_err_prefix(err, "%s line %llu: ", path, (unsigned long long)lineno);
            break;
        }
    }
    if (!rc && ferror(f))
        rc = fs_err_set(err, FS_EIO, "cannot read %s: %s", path, strerror(errno));
    free(line);
    return rc;
}

/* ---- CSV (RFC 4180) ------------------------------------------------------------- */

struct csv_row {
    struct fs_buf text; /* cells, each NUL-terminated */
    size_t *off;
    size_t n, alloc;
};

/* Reads one record; FS_ENOTFOUND at the end of the file. Quoted cells may hold
 * commas, quotes ("") and line breaks. */
static enum fs_rc
csv_read(FILE *f, struct csv_row *r, uint64_t *lines, struct fs_err *err)
{
    int ch, quoted = 0, at_start = 1, any = 0;

    fs_buf_reset(&r->text);
    r->n = 0;
    for (;;) {
        ch = getc(f);
        if (ch == EOF) {
            if (ferror(f))
                return fs_err_set(err, FS_EIO, "read error: %s", strerror(errno));
            if (quoted)
                return fs_err_set(err, FS_EINVAL, "a quoted cell is not closed");
            if (!any)
                return FS_ENOTFOUND;
            break;
        }
        any = 1;
        if (at_start) {
            if (r->n == r->alloc) {
                size_t na = r->alloc ? r->alloc * 2 : 32, *no;

                if (na > 4096)
                    return fs_err_set(err, FS_ETOOBIG, "more than 4096 columns");
                no = realloc(r->off, na * sizeof *no);
                if (!no)
                    return fs_err_set(err, FS_ENOMEM, "out of memory");
                r->off = no;
                r->alloc = na;
            }
            r->off[r->n++] = r->text.len;
            at_start = 0;
            if (ch == '"') {
                quoted = 1;
                continue;
            }
        }
        if (quoted) {
            if (ch == '"') {
                int next = getc(f);

                if (next == '"') {
                    ch = '"';
                } else {
                    quoted = 0;
                    if (next == EOF)
                        break;
                    if (next != ',' && next != '\n' && next != '\r')
                        return fs_err_set(err, FS_EINVAL, "text follows a closing quote");
                    ch = next;
                    goto unquoted;
                }
            } else if (ch == '\n') {
                (*lines)++;
            }
            if (fs_buf_addc(&r->text, (char)ch))
                return fs_err_set(err, FS_ETOOBIG, "a row is longer than 1 MiB");
            continue;
        }
    unquoted:
        if (ch == ',') {
            if (fs_buf_addc(&r->text, 0))
                return fs_err_set(err, FS_ETOOBIG, "a row is longer than 1 MiB");
            at_start = 1;
            continue;
        }
        if (ch == '\r') {
            int next = getc(f);

            if (next != '\n' && next != EOF)
                ungetc(next, f);
            ch = '\n';
        }
        if (ch == '\n') {
            (*lines)++;
            break;
        }
        if (ch == '"')
            return fs_err_set(err, FS_EINVAL, "a quote inside an unquoted cell");
        if (fs_buf_addc(&r->text, (char)ch))
            return fs_err_set(err, FS_ETOOBIG, "a row is longer than 1 MiB");
    }
    if (at_start && r->n > 0) {
        /* A trailing comma: one more empty cell. */
        if (r->n == r->alloc)
            return fs_err_set(err, FS_ETOOBIG, "too many columns");
        r->off[r->n++] = r->text.len;
    }
    if (fs_buf_addc(&r->text, 0))
        return fs_err_set(err, FS_ETOOBIG, "a row is longer than 1 MiB");
    if (r->n == 0) {
        r->off[0] = 0;
        r->n = 1;
    }
    return FS_OK;
}

static const char *
csv_cell(const struct csv_row *r, size_t i)
{
    return (const char *)r->text.data + r->off[i];
}

enum col {
    C_ID,
    C_KIND,
    C_GEN,
    C_OBSERVED,
    C_AUTHOR,
    C_SITE,
    C_REGION,
    C_LAT,
    C_LON,
    C_ACC,
    C_NOTE,
    C_ATTACH,
    C_FEED,
    C_CONFLICTS,
    C_FIELD
};

static const char *const col_names[] = {"id",   "kind",        "gen",  "observed_at", "author",
                                        "site", "region",      "lat",  "lon",         "acc_m",
                                        "note", "attachments", "feed", "conflicts"};

static int
number_cell(const char *s, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(s, &end);
    return (*s == 0 || *end != 0 || errno) ? -1 : 0;
}

/* An --excel export neutralised formula-like cells with a leading quote. */
static const char *
unexcel(const char *s, int excel)
{
    if (excel && s[0] == '\'' && s[1] && strchr("=+-@", s[1]))
        return s + 1;
    return s;
}

static enum fs_rc
import_csv(struct import *im, FILE *f, const char *path, struct fs_err *err)
{
    struct csv_row hdr, row;
    int *kind = NULL;
    uint64_t lines = 0, rowno = 1;
    size_t i, ncol;
    int excel = 0, ch;
    enum fs_rc rc;

    memset(&hdr, 0, sizeof hdr);
    memset(&row, 0, sizeof row);
    fs_buf_init(&hdr.text, IMPORT_LINE_MAX);
    fs_buf_init(&row.text, IMPORT_LINE_MAX);
    /* A BOM marks an export made with --excel. */
    if ((ch = getc(f)) == 0xef) {
        if (getc(f) != 0xbb || getc(f) != 0xbf) {
            rc = fs_err_set(err, FS_EINVAL, "%s starts with a broken byte order mark", path);
            goto out;
        }
        excel = 1;
    } else if (ch != EOF) {
        ungetc(ch, f);
    }
    rc = csv_read(f, &hdr, &lines, err);
    if (rc == FS_ENOTFOUND) {
        rc = fs_err_set(err, FS_EINVAL, "%s is empty", path);
        goto out;
    }
    if (rc) {
        fs_err_prefix(err, "%s header: ", path);
        goto out;
    }
    ncol = hdr.n;
    kind = calloc(ncol, sizeof *kind);
    if (!kind) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    for (i = 0; i < ncol; i++) {
        const char *name = csv_cell(&hdr, i);
        size_t k, j;

        kind[i] = -1;
        for (k = 0; k < FS_ARRAY_LEN(col_names); k++)
            if (strcmp(name, col_names[k]) == 0)
                kind[i] = (int)k;
        if (kind[i] < 0 && strncmp(name, "field:", 6) == 0 && name[6])
            kind[i] = C_FIELD;
        if (kind[i] < 0) {
            rc = fs_err_set(err, FS_EINVAL,
                            "%s column %zu is not an export column (id, kind, observed_at, ..., "
                            "field:NAME)",
                            path, i + 1);
            goto out;
        }
        for (j = 0; j < i; j++)
            if (strcmp(csv_cell(&hdr, j), name) == 0) {
                rc = fs_err_set(err, FS_EINVAL, "%s column %zu repeats a column name", path, i + 1);
                goto out;
            }
    }
    for (;;) {
        struct proto_content c;
        const char *id = NULL;
        double lat = 0, lon = 0, acc = 0;
        int has_lat = 0, has_lon = 0;

        rowno++;
        rc = csv_read(f, &row, &lines, err);
        if (rc == FS_ENOTFOUND) {
            rc = FS_OK;
            break;
        }
        if (rc) {
            fs_err_prefix(err, "%s row %llu: ", path, (unsigned long long)rowno);
            goto out;
        }
        if (row.n == 1 && csv_cell(&row, 0)[0] == 0)
            continue; /* an empty line */
        if (row.n != ncol) {
            rc = fs_err_set(err, FS_EINVAL, "%s row %llu has %zu cells, the header %zu", path,
                            (unsigned long long)rowno, row.n, ncol);
            goto out;
        }
        proto_content_init(&c);
        for (i = 0; i < ncol && !rc; i++) {
            const char *v = unexcel(csv_cell(&row, i), excel);
            size_t vl = strlen(v);

            if (vl != (i + 1 < row.n ? row.off[i + 1] : row.text.len) - row.off[i] - 1) {
                rc = fs_err_set(err, FS_EINVAL, "a cell contains a NUL byte");
                break;
            }
            if (proto_utf8_check(v, vl)) {
                rc = fs_err_set(err, FS_EINVAL, "column %zu is not valid UTF-8", i + 1);
                break;
            }
            if (vl == 0)
                continue;
            switch (kind[i]) {
            case C_ID:
                id = v;
                break;
            case C_KIND:
                rc = proto_content_set_str(&c.kind, v);
                break;
            case C_OBSERVED:
                rc = proto_content_set_str(&c.observed_at, v);
                break;
            case C_AUTHOR:
                rc = proto_content_set_str(&c.author, v);
                break;
            case C_SITE:
                rc = proto_content_set_str(&c.site_name, v);
                break;
            case C_REGION:
                rc = proto_content_set_str(&c.region, v);
                break;
            case C_NOTE:
                rc = proto_content_set_str(&c.note, v);
                break;
            case C_LAT:
                has_lat = 1;
                if (number_cell(v, &lat))
                    rc = fs_err_set(err, FS_EINVAL, "lat is not a number");
                break;
            case C_LON:
                has_lon = 1;
                if (number_cell(v, &lon))
                    rc = fs_err_set(err, FS_EINVAL, "lon is not a number");
                break;
            case C_ACC:
                c.has_acc = 1;
                if (number_cell(v, &acc))
                    rc = fs_err_set(err, FS_EINVAL, "acc_m is not a number");
                break;
            case C_FIELD:
                rc = proto_content_set_field(&c, csv_cell(&hdr, i) + 6, v);
                if (rc == FS_ETOOBIG)
                    rc = fs_err_set(err, rc, "more than %u fields", PROTO_FIELDS_MAX);
                break;
            case C_ATTACH:
                rc = fs_err_set(err, FS_EINVAL,
                                "attachments cannot be imported from CSV; use 'fieldsync attach'");
                break;
            default: /* gen, feed, conflicts: describe a stored record, not input */
                break;
            }
            if (rc == FS_ENOMEM)
                fs_err_set(err, rc, "out of memory");
        }
        if (!rc && has_lat != has_lon)
            rc = fs_err_set(err, FS_EINVAL, "lat and lon go together");
        if (!rc) {
            c.has_gps = has_lat;
            c.lat = lat;
            c.lon = lon;
            c.acc_m = acc;
            rc = proto_content_check(&c, err);
        }
        if (!rc)
            rc = import_row(im, &c, id, err);
        proto_content_release(&c);
        if (rc) {
            fs_err_prefix(err, "%s row %llu: ", path, (unsigned long long)rowno);
            goto out;
        }
    }
out:
    free(kind);
    fs_buf_release(&hdr.text);
    fs_buf_release(&row.text);
    free(hdr.off);
    free(row.off);
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
