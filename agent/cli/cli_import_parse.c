/* The row readers of 'fieldsync import' (JSON Lines, RFC 4180 CSV): text in,
 * checked content out. Storing the rows is cli_import.c's business. */
#include "cli_import_parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto_json.h"

/* ---- JSON Lines ------------------------------------------------------------------ */

void
cli_jsonl_init(struct cli_jsonl *r, FILE *f, const char *path)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->path = path;
}

void
cli_jsonl_release(struct cli_jsonl *r)
{
    free(r->line);
    r->line = NULL;
    r->cap = 0;
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
jsonl_row(const char *line, size_t len, struct proto_content *c, char id[PROTO_UUID_LEN + 1],
          int *has_id, struct fs_err *err)
{
    static const char *const extra[] = {"id", NULL};
    json_error_t je;
    json_t *obj, *idv;
    enum fs_rc rc;

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
    *has_id = idv != NULL;
    if (idv)
        memcpy(id, json_string_value(idv), PROTO_UUID_LEN + 1);
    rc = proto_content_from_json(obj, extra, c, err);
    json_decref(obj);
    return rc;
}

enum fs_rc
cli_jsonl_next(struct cli_jsonl *r, struct proto_content *c, char id[PROTO_UUID_LEN + 1],
               int *has_id, struct fs_err *err)
{
    ssize_t n;
    enum fs_rc rc;

    *has_id = 0;
    while ((n = getline(&r->line, &r->cap, r->f)) > 0) {
        char *line = r->line;
        size_t len = (size_t)n;

        r->lineno++;
        if (len > CLI_IMPORT_LINE_MAX)
            return fs_err_set(err, FS_ETOOBIG, "%s line %llu is longer than 1 MiB", r->path,
                              (unsigned long long)r->lineno);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (r->lineno == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
            memmove(line, line + 3, len - 3);
            len -= 3;
        }
        if (len == 0 || strspn(line, " \t") == len)
            continue;
        rc = jsonl_row(line, len, c, id, has_id, err);
        if (rc)
            fs_err_prefix(err, "%s line %llu: ", r->path, (unsigned long long)r->lineno);
        return rc;
    }
    if (ferror(r->f))
        return fs_err_set(err, FS_EIO, "cannot read %s: %s", r->path, strerror(errno));
    return FS_ENOTFOUND;
}

/* ---- CSV (RFC 4180) ------------------------------------------------------------- */

/* Starts a cell at the end of the row's text. */
static enum fs_rc
cell_start(struct cli_csv_row *r, struct fs_err *err)
{
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
    return FS_OK;
}

/* Reads one record; FS_ENOTFOUND at the end of the file. Quoted cells may hold
 * commas, quotes ("") and line breaks. */
static enum fs_rc
csv_read(FILE *f, struct cli_csv_row *r, uint64_t *lines, struct fs_err *err)
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
            enum fs_rc rc = cell_start(r, err);

            if (rc)
                return rc;
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
        /* A trailing comma at the end of the file: one more empty cell. */
        enum fs_rc rc = cell_start(r, err);

        if (rc)
            return rc;
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
csv_cell(const struct cli_csv_row *r, size_t i)
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

void
cli_csv_init(struct cli_csv *r, FILE *f, const char *path)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->path = path;
    fs_buf_init(&r->hdr.text, CLI_IMPORT_LINE_MAX);
    fs_buf_init(&r->row.text, CLI_IMPORT_LINE_MAX);
}

void
cli_csv_release(struct cli_csv *r)
{
    free(r->kind);
    r->kind = NULL;
    fs_buf_release(&r->hdr.text);
    fs_buf_release(&r->row.text);
    free(r->hdr.off);
    free(r->row.off);
    r->hdr.off = r->row.off = NULL;
    r->hdr.alloc = r->row.alloc = 0;
}

enum fs_rc
cli_csv_begin(struct cli_csv *r, struct fs_err *err)
{
    size_t i;
    int ch;
    enum fs_rc rc;

    r->rowno = 1;
    /* A BOM marks an export made with --excel. */
    if ((ch = getc(r->f)) == 0xef) {
        if (getc(r->f) != 0xbb || getc(r->f) != 0xbf)
            return fs_err_set(err, FS_EINVAL, "%s starts with a broken byte order mark", r->path);
        r->excel = 1;
    } else if (ch != EOF) {
        ungetc(ch, r->f);
    }
    rc = csv_read(r->f, &r->hdr, &r->lines, err);
    if (rc == FS_ENOTFOUND)
        return fs_err_set(err, FS_EINVAL, "%s is empty", r->path);
    if (rc) {
        fs_err_prefix(err, "%s header: ", r->path);
        return rc;
    }
    r->ncol = r->hdr.n;
    r->kind = calloc(r->ncol, sizeof *r->kind);
    if (!r->kind)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    for (i = 0; i < r->ncol; i++) {
        const char *name = csv_cell(&r->hdr, i);
        size_t k, j;

        r->kind[i] = -1;
        for (k = 0; k < FS_ARRAY_LEN(col_names); k++)
            if (strcmp(name, col_names[k]) == 0)
                r->kind[i] = (int)k;
        if (r->kind[i] < 0 && strncmp(name, "field:", 6) == 0 && name[6])
            r->kind[i] = C_FIELD;
        if (r->kind[i] < 0)
            return fs_err_set(err, FS_EINVAL,
                              "%s column %zu is not an export column (id, kind, observed_at, "
                              "..., field:NAME)",
                              r->path, i + 1);
        for (j = 0; j < i; j++)
            if (strcmp(csv_cell(&r->hdr, j), name) == 0)
                return fs_err_set(err, FS_EINVAL, "%s column %zu repeats a column name", r->path,
                                  i + 1);
    }
    return FS_OK;
}

/* The cells of the row just read into c (initialised), checked. */
static enum fs_rc
csv_content(struct cli_csv *r, struct proto_content *c, const char **id, struct fs_err *err)
{
    const struct cli_csv_row *row = &r->row;
    double lat = 0, lon = 0, acc = 0;
    int has_lat = 0, has_lon = 0;
    size_t i;
    enum fs_rc rc = FS_OK;

    for (i = 0; i < r->ncol && !rc; i++) {
        const char *v = unexcel(csv_cell(row, i), r->excel);
        size_t vl = strlen(v);

        if (vl != (i + 1 < row->n ? row->off[i + 1] : row->text.len) - row->off[i] - 1) {
            rc = fs_err_set(err, FS_EINVAL, "a cell contains a NUL byte");
            break;
        }
        if (proto_utf8_check(v, vl)) {
            rc = fs_err_set(err, FS_EINVAL, "column %zu is not valid UTF-8", i + 1);
            break;
        }
        if (vl == 0)
            continue;
        switch (r->kind[i]) {
        case C_ID:
            *id = v;
            break;
        case C_KIND:
            rc = proto_content_set_str(&c->kind, v);
            break;
        case C_OBSERVED:
            rc = proto_content_set_str(&c->observed_at, v);
            break;
        case C_AUTHOR:
            rc = proto_content_set_str(&c->author, v);
            break;
        case C_SITE:
            rc = proto_content_set_str(&c->site_name, v);
            break;
        case C_REGION:
            rc = proto_content_set_str(&c->region, v);
            break;
        case C_NOTE:
            rc = proto_content_set_str(&c->note, v);
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
            c->has_acc = 1;
            if (number_cell(v, &acc))
                rc = fs_err_set(err, FS_EINVAL, "acc_m is not a number");
            break;
        case C_FIELD:
            rc = proto_content_set_field(c, csv_cell(&r->hdr, i) + 6, v);
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
        c->has_gps = has_lat;
        c->lat = lat;
        c->lon = lon;
        c->acc_m = acc;
        rc = proto_content_check(c, err);
    }
    return rc;
}

enum fs_rc
cli_csv_next(struct cli_csv *r, struct proto_content *c, const char **id, struct fs_err *err)
{
    enum fs_rc rc;

    *id = NULL;
    for (;;) {
        r->rowno++;
        rc = csv_read(r->f, &r->row, &r->lines, err);
        if (rc == FS_ENOTFOUND)
            return rc;
        if (rc) {
            fs_err_prefix(err, "%s row %llu: ", r->path, (unsigned long long)r->rowno);
            return rc;
        }
        if (r->row.n == 1 && csv_cell(&r->row, 0)[0] == 0)
            continue; /* an empty line */
        if (r->row.n != r->ncol)
            return fs_err_set(err, FS_EINVAL, "%s row %llu has %zu cells, the header %zu", r->path,
                              (unsigned long long)r->rowno, r->row.n, r->ncol);
        proto_content_init(c);
        rc = csv_content(r, c, id, err);
        if (rc) {
            proto_content_release(c);
            *id = NULL;
            fs_err_prefix(err, "%s row %llu: ", r->path, (unsigned long long)r->rowno);
        }
        return rc;
    }
}
