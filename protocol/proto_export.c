/* Export of merged records as CSV, JSON Lines or GeoJSON: one reused row
 * buffer per writer, one callback call per record. */
#include "proto_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_content.h"
#include "proto_json.h"

#define BOM          "\xef\xbb\xbf"
#define FIELD_PREFIX "field:"
/* "field:" + a name of at most PROTO_FIELD_NAME_MAX bytes + NUL */
#define FIELD_KEY_MAX (sizeof FIELD_PREFIX + PROTO_FIELD_NAME_MAX)

static const char csv_header[] = "id,kind,gen,observed_at,author,site,region,lat,lon,acc_m,note,"
                                 "attachments,feed,conflicts";
static const char geojson_header[] = "{\"type\":\"FeatureCollection\",\"features\":[";
static const char geojson_trailer[] = "\n]}\n";

struct proto_field_set {
    char **names; /* sorted by strcmp, distinct, owned */
    size_t n, alloc;
};

struct proto_export {
    enum proto_export_format format;
    int excel;
    const struct proto_field_set *fields; /* borrowed; NULL only for JSONL */
    proto_export_write_fn write;
    void *ctx;
    const char **vals;   /* per field column: the value of the record at hand */
    struct fs_buf row;   /* the record being written */
    struct fs_buf tmp;   /* a joined cell: attachments or conflicts */
    struct fs_buf canon; /* JSONL: the content's canonical bytes */
    uint64_t count;
    enum fs_rc broken; /* the callback's failure, returned from then on */
    int finished;
};

/* Appends to rc's chain: once a step fails, the rest are skipped. */
#define W(x)                                                                                       \
    do {                                                                                           \
        if (!rc)                                                                                   \
            rc = (x);                                                                              \
    } while (0)

/* ---- the reasons content is refused ----------------------------------------- */

/* Parses content strictly. On failure err holds a reason that never quotes
 * the content: jansson's error texts can ("invalid token near '...'"), so
 * only the byte offset of a JSON syntax error is kept. Every refusal but
 * FS_ENOMEM becomes FS_EINVAL. */
static enum fs_rc
parse_content(const void *content, size_t len, struct proto_content *c, struct fs_err *err)
{
    static const char malformed[] = "malformed JSON";
    struct fs_err e;
    enum fs_rc rc;
    char *colon;

    if (!content) {
        proto_content_init(c);
        return fs_err_set(err, FS_EINVAL, "the content is missing");
    }
    fs_err_clear(&e);
    rc = proto_content_parse(content, len, c, &e);
    if (!rc)
        return FS_OK;
    if (rc == FS_ENOMEM)
        return fs_err_set(err, rc, "out of memory");
    if (strncmp(e.msg, malformed, sizeof malformed - 1) == 0 && (colon = strchr(e.msg, ':')))
        *colon = 0;
    return fs_err_set(err, FS_EINVAL, "the content is invalid: %s",
                      e.msg[0] ? e.msg : fs_strerror(rc));
}

/* ---- pass 1: the field set -------------------------------------------------- */

enum fs_rc
proto_field_set_new(struct proto_field_set **out)
{
    struct proto_field_set *fs = calloc(1, sizeof *fs);

    if (!fs)
        return FS_ENOMEM;
    *out = fs;
    return FS_OK;
}

/* Binary search: 1 and its index when name is in the set, else 0 and the index
 * where it belongs. */
static int
set_find(const struct proto_field_set *fs, const char *name, size_t *pos)
{
    size_t lo = 0, hi = fs->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(fs->names[mid], name);

        if (cmp == 0) {
            *pos = mid;
            return 1;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return 0;
}

static enum fs_rc
set_insert(struct proto_field_set *fs, const char *name, struct fs_err *err)
{
    size_t pos;
    char *copy;

    if (set_find(fs, name, &pos))
        return FS_OK;
    if (fs->n >= PROTO_EXPORT_FIELDS_MAX)
        return fs_err_set(err, FS_ETOOBIG, "the records have more than %u distinct field names",
                          PROTO_EXPORT_FIELDS_MAX);
    if (fs->n == fs->alloc) {
        size_t na = fs->alloc ? fs->alloc * 2 : 16;
        char **nn;

        if (na > PROTO_EXPORT_FIELDS_MAX)
            na = PROTO_EXPORT_FIELDS_MAX;
        nn = realloc(fs->names, na * sizeof *nn);
        if (!nn)
            return fs_err_set(err, FS_ENOMEM, "out of memory");
        fs->names = nn;
        fs->alloc = na;
    }
    copy = strdup(name);
    if (!copy)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    memmove(&fs->names[pos + 1], &fs->names[pos], (fs->n - pos) * sizeof *fs->names);
    fs->names[pos] = copy;
    fs->n++;
    return FS_OK;
}

enum fs_rc
proto_field_set_add_content(struct proto_field_set *fs, const void *content, size_t len,
                            struct fs_err *err)
{
    struct proto_content c;
    enum fs_rc rc;
    size_t i;

    rc = parse_content(content, len, &c, err);
    for (i = 0; !rc && i < c.n_fields; i++)
        rc = set_insert(fs, c.fields[i].name, err);
    proto_content_release(&c);
    return rc;
}

size_t
proto_field_set_count(const struct proto_field_set *fs)
{
    return fs->n;
}

void
proto_field_set_free(struct proto_field_set *fs)
{
    size_t i;

    if (!fs)
        return;
    for (i = 0; i < fs->n; i++)
        free(fs->names[i]);
    free(fs->names);
    free(fs);
}

/* ---- cells ------------------------------------------------------------------ */

/* One CSV cell per RFC 4180. With neutralise, a cell that a spreadsheet would
 * take for a formula gets a leading single quote, inside the quotes if any. */
static enum fs_rc
csv_text(struct fs_buf *b, const char *s, size_t len, int neutralise)
{
    enum fs_rc rc = FS_OK;
    size_t i, run = 0;
    int quote = 0;

    for (i = 0; i < len && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (quote)
        W(fs_buf_addc(b, '"'));
    if (neutralise && len && memchr("=+-@", s[0], 4))
        W(fs_buf_addc(b, '\''));
    if (quote) {
        for (i = 0; i < len; i++) {
            if (s[i] != '"')
                continue;
            /* the run up to and including the quote, then the quote again */
            W(fs_buf_add(b, s + run, i + 1 - run));
            W(fs_buf_addc(b, '"'));
            run = i + 1;
        }
        W(fs_buf_add(b, s + run, len - run));
        W(fs_buf_addc(b, '"'));
    } else {
        W(fs_buf_add(b, s, len));
    }
    return rc;
}

/* An optional text column: ",cell", or "," when absent. */
static enum fs_rc
csv_next(struct proto_export *x, const char *s)
{
    enum fs_rc rc = fs_buf_addc(&x->row, ',');

    if (!rc && s)
        rc = csv_text(&x->row, s, strlen(s), x->excel);
    return rc;
}

/* A numeric column: ",<shortest decimal>", never neutralised. */
static enum fs_rc
csv_double(struct proto_export *x, int present, double v)
{
    enum fs_rc rc = fs_buf_addc(&x->row, ',');

    if (!rc && present)
        rc = proto_jw_double(&x->row, v);
    return rc;
}

/* A JSON string, or null when s is NULL. */
static enum fs_rc
jw_opt_str(struct fs_buf *b, const char *s)
{
    return s ? proto_jw_str(b, s, strlen(s)) : fs_buf_adds(b, "null");
}

static void
field_key(const char *name, char out[FIELD_KEY_MAX])
{
    snprintf(out, FIELD_KEY_MAX, FIELD_PREFIX "%s", name);
}

/* x->tmp = the attachments joined by "; ", each its local path or its name. */
static enum fs_rc
join_attachments(struct proto_export *x, const struct proto_content *c,
                 const struct proto_export_record *r)
{
    enum fs_rc rc = FS_OK;
    size_t i;

    fs_buf_reset(&x->tmp);
    for (i = 0; i < c->n_attachments; i++) {
        const char *p = r->attachment_paths ? r->attachment_paths[i] : NULL;

        if (i)
            W(fs_buf_adds(&x->tmp, "; "));
        W(fs_buf_adds(&x->tmp, p ? p : c->attachments[i].name));
    }
    return rc;
}

/* x->tmp = the conflict hashes in hex, joined by one space. */
static enum fs_rc
join_conflicts(struct proto_export *x, const struct proto_export_record *r)
{
    char hex[PROTO_HEX_KEY_LEN + 1];
    enum fs_rc rc = FS_OK;
    size_t i;

    fs_buf_reset(&x->tmp);
    for (i = 0; i < r->n_conflicts; i++) {
        proto_hex_encode(r->conflicts[i], PROTO_HASH_BYTES, hex);
        if (i)
            W(fs_buf_addc(&x->tmp, ' '));
        W(fs_buf_add(&x->tmp, hex, PROTO_HEX_KEY_LEN));
    }
    return rc;
}

/* ---- rows ------------------------------------------------------------------- */

static enum fs_rc
jsonl_attachment(struct fs_buf *b, const struct proto_attachment *a, const char *path)
{
    enum fs_rc rc = FS_OK;

    /* The canonical writer's form (proto_content_encode), "path" appended. */
    W(fs_buf_adds(b, "{\"name\":"));
    W(proto_jw_str(b, a->name, strlen(a->name)));
    W(fs_buf_adds(b, ",\"hash\":"));
    W(proto_jw_hex(b, a->hash, PROTO_HASH_BYTES));
    W(fs_buf_adds(b, ",\"size\":"));
    W(proto_jw_uint(b, a->size));
    W(fs_buf_adds(b, ",\"type\":"));
    W(proto_jw_str(b, a->type, strlen(a->type)));
    if (path) {
        W(fs_buf_adds(b, ",\"path\":"));
        W(proto_jw_str(b, path, strlen(path)));
    }
    W(fs_buf_addc(b, '}'));
    return rc;
}

static int
field_cmp(const void *a, const void *b)
{
    const struct proto_field *const *fa = a, *const *fb = b;

    return strcmp((*fa)->name, (*fb)->name);
}

/* Fills x->vals with the record's value for every field column, walking the
 * record's fields and the set's names in the same byte order. A field the set
 * lacks would be lost without a word, so it refuses the record. */
static enum fs_rc
map_fields(struct proto_export *x, const struct proto_export_record *r,
           const struct proto_content *c, struct fs_err *err)
{
    const struct proto_field *sorted[PROTO_FIELDS_MAX];
    const struct proto_field_set *fs = x->fields;
    size_t i, k = 0, col;

    if (c->n_fields > PROTO_FIELDS_MAX)
        FS_BUG("content passed its check with too many fields");
    for (i = 0; i < c->n_fields; i++)
        sorted[i] = &c->fields[i];
    if (c->n_fields > 1)
        qsort(sorted, c->n_fields, sizeof *sorted, field_cmp);
    for (col = 0; col < fs->n; col++) {
        int cmp = k < c->n_fields ? strcmp(sorted[k]->name, fs->names[col]) : 1;

        if (cmp < 0)
            break;
        x->vals[col] = cmp == 0 ? sorted[k++]->value : NULL;
    }
    if (k < c->n_fields)
        return fs_err_set(err, FS_ECONFLICT,
                          "record %s has field \"%s\", which the field set lacks: the records "
                          "changed between the two passes; export again",
                          r->id, sorted[k]->name);
    return FS_OK;
}

static enum fs_rc
csv_row(struct proto_export *x, const struct proto_export_record *r, const struct proto_content *c)
{
    struct fs_buf *b = &x->row;
    char hex[PROTO_HEX_KEY_LEN + 1];
    enum fs_rc rc = FS_OK;
    size_t col;

    W(csv_text(b, r->id, strlen(r->id), x->excel));
    W(csv_next(x, c->kind));
    W(fs_buf_printf(b, ",%llu", (unsigned long long)r->gen));
    W(csv_next(x, c->observed_at));
    W(csv_next(x, c->author));
    W(csv_next(x, c->site_name));
    W(csv_next(x, c->region));
    W(csv_double(x, c->has_gps, c->lat));
    W(csv_double(x, c->has_gps, c->lon));
    W(csv_double(x, c->has_acc, c->acc_m));
    W(csv_next(x, c->note));
    W(join_attachments(x, c, r));
    W(csv_next(x, c->n_attachments ? (const char *)x->tmp.data : NULL));
    if (r->feed)
        proto_hex_encode(r->feed, PROTO_KEY_BYTES, hex);
    W(csv_next(x, r->feed ? hex : NULL));
    W(join_conflicts(x, r));
    W(csv_next(x, r->n_conflicts ? (const char *)x->tmp.data : NULL));
    for (col = 0; col < x->fields->n; col++)
        W(csv_next(x, x->vals[col]));
    W(fs_buf_adds(b, "\r\n"));
    return rc;
}

/* The keys a JSON Lines row adds to the content's, up to the comma before
 * the content's first key. */
static enum fs_rc
jsonl_head(struct fs_buf *b, const struct proto_export_record *r)
{
    enum fs_rc rc = FS_OK;
    size_t i;

    W(fs_buf_adds(b, "{\"id\":"));
    W(proto_jw_str(b, r->id, strlen(r->id)));
    W(fs_buf_adds(b, ",\"gen\":"));
    W(proto_jw_uint(b, r->gen));
    W(fs_buf_adds(b, ",\"feed\":"));
    W(r->feed ? proto_jw_hex(b, r->feed, PROTO_KEY_BYTES) : fs_buf_adds(b, "null"));
    W(fs_buf_adds(b, ",\"conflicts\":["));
    for (i = 0; i < r->n_conflicts; i++) {
        if (i)
            W(fs_buf_addc(b, ','));
        W(proto_jw_hex(b, r->conflicts[i], PROTO_HASH_BYTES));
    }
    W(fs_buf_adds(b, "],"));
    return rc;
}

/* Content that can go into a row as it is (see checked_hash): bytes that
 * hash to what was checked when they were stored, a compact object (no byte
 * below 0x20, no space outside strings: the row stays one line) and no
 * attachments (their local paths are added by writing the content again).
 * The scan is not a parse; it only keeps a row one line and one object. */
static int
jsonl_as_written(const struct proto_export_record *r)
{
    const unsigned char *p = r->content;
    unsigned char h[PROTO_HASH_BYTES];
    size_t i, n = r->content_len;
    int in_str = 0;
    long depth = 0;

    if (!r->checked_hash || !p || n < 3 || p[0] != '{' || p[1] != '"' || p[n - 1] != '}' ||
        memmem(p, n, "\"attachments\"", 13))
        return 0;
    proto_hash(p, n, h);
    if (memcmp(h, r->checked_hash, PROTO_HASH_BYTES) != 0)
        return 0;
    for (i = 0; i < n; i++) {
        if (p[i] < 0x20)
            return 0;
        if (in_str) {
            if (p[i] == '\\') {
                if (++i == n || p[i] < 0x20)
                    return 0; /* the escaped byte is skipped, not a quote */
            } else if (p[i] == '"') {
                in_str = 0;
            }
            continue;
        }
        if (p[i] == '"')
            in_str = 1;
        else if (p[i] == '{' || p[i] == '[')
            depth++;
        else if (p[i] == '}' || p[i] == ']') {
            if (--depth < 0 || (depth == 0 && i + 1 != n))
                return 0;
        } else if (p[i] == ' ')
            return 0;
    }
    return !in_str && depth == 0;
}

static enum fs_rc
jsonl_line(struct proto_export *x, const struct proto_export_record *r,
           const struct proto_content *c)
{
    struct fs_buf *b = &x->row;
    struct proto_content bare = *c; /* shallow: the same strings, no attachments */
    enum fs_rc rc;
    size_t i;

    rc = jsonl_head(b, r);
    if (rc)
        return rc;
    /* The content's keys as the canonical writer emits them. Attachments come
     * last there, so they are written here instead, to add "path". */
    bare.attachments = NULL;
    bare.n_attachments = 0;
    fs_buf_reset(&x->canon);
    rc = proto_content_encode(&bare, &x->canon);
    if (rc)
        return rc;
    if (x->canon.len < 2 || x->canon.data[0] != '{' || x->canon.data[x->canon.len - 1] != '}')
        FS_BUG("the canonical content is not an object");
    W(fs_buf_add(b, x->canon.data + 1, x->canon.len - 2));
    if (c->n_attachments) {
        W(fs_buf_adds(b, ",\"attachments\":["));
        for (i = 0; i < c->n_attachments; i++) {
            if (i)
                W(fs_buf_addc(b, ','));
            W(jsonl_attachment(b, &c->attachments[i],
                               r->attachment_paths ? r->attachment_paths[i] : NULL));
        }
        W(fs_buf_addc(b, ']'));
    }
    W(fs_buf_adds(b, "}\n"));
    return rc;
}

static enum fs_rc
geojson_feature(struct proto_export *x, const struct proto_export_record *r,
                const struct proto_content *c)
{
    struct fs_buf *b = &x->row;
    char key[FIELD_KEY_MAX];
    enum fs_rc rc = FS_OK;
    size_t col;

    W(fs_buf_adds(b, x->count ? ",\n" : "\n"));
    W(fs_buf_adds(b, "{\"type\":\"Feature\",\"id\":"));
    W(proto_jw_str(b, r->id, strlen(r->id)));
    if (c->has_gps) {
        /* RFC 7946: [longitude, latitude], WGS84 */
        W(fs_buf_adds(b, ",\"geometry\":{\"type\":\"Point\",\"coordinates\":["));
        W(proto_jw_double(b, c->lon));
        W(fs_buf_addc(b, ','));
        W(proto_jw_double(b, c->lat));
        W(fs_buf_adds(b, "]}"));
    } else {
        W(fs_buf_adds(b, ",\"geometry\":null"));
    }
    W(fs_buf_adds(b, ",\"properties\":{\"id\":"));
    W(proto_jw_str(b, r->id, strlen(r->id)));
    W(fs_buf_adds(b, ",\"kind\":"));
    W(jw_opt_str(b, c->kind));
    W(fs_buf_adds(b, ",\"gen\":"));
    W(proto_jw_uint(b, r->gen));
    W(fs_buf_adds(b, ",\"observed_at\":"));
    W(jw_opt_str(b, c->observed_at));
    W(fs_buf_adds(b, ",\"author\":"));
    W(jw_opt_str(b, c->author));
    W(fs_buf_adds(b, ",\"site\":"));
    W(jw_opt_str(b, c->site_name));
    W(fs_buf_adds(b, ",\"region\":"));
    W(jw_opt_str(b, c->region));
    W(fs_buf_adds(b, ",\"acc_m\":"));
    W(c->has_acc ? proto_jw_double(b, c->acc_m) : fs_buf_adds(b, "null"));
    W(fs_buf_adds(b, ",\"note\":"));
    W(jw_opt_str(b, c->note));
    W(fs_buf_adds(b, ",\"attachments\":"));
    W(join_attachments(x, c, r));
    W(jw_opt_str(b, c->n_attachments ? (const char *)x->tmp.data : NULL));
    W(fs_buf_adds(b, ",\"feed\":"));
    W(r->feed ? proto_jw_hex(b, r->feed, PROTO_KEY_BYTES) : fs_buf_adds(b, "null"));
    W(fs_buf_adds(b, ",\"conflicts\":"));
    W(join_conflicts(x, r));
    W(jw_opt_str(b, r->n_conflicts ? (const char *)x->tmp.data : NULL));
    for (col = 0; col < x->fields->n; col++) {
        field_key(x->fields->names[col], key);
        W(fs_buf_addc(b, ','));
        W(proto_jw_key(b, key));
        W(jw_opt_str(b, x->vals[col]));
    }
    W(fs_buf_adds(b, "}}"));
    return rc;
}

/* ---- the writer ------------------------------------------------------------- */

/* Hands the row to the callback; a failure breaks the export for good. */
static enum fs_rc
flush_row(struct proto_export *x)
{
    enum fs_rc rc = FS_OK;

    if (x->row.len)
        rc = x->write(x->ctx, x->row.data, x->row.len);
    fs_buf_reset(&x->row);
    if (rc)
        x->broken = rc;
    return rc;
}

enum fs_rc
proto_export_new(const struct proto_export_opts *o, const struct proto_field_set *fields,
                 proto_export_write_fn write, void *ctx, struct proto_export **out)
{
    struct proto_export *x = NULL;
    char key[FIELD_KEY_MAX];
    enum fs_rc rc = FS_OK;
    size_t col;

    if (!o || !write || !out)
        FS_BUG("proto_export_new needs options, a write callback and an out pointer");
    if (o->format != PROTO_EXPORT_CSV && o->format != PROTO_EXPORT_JSONL &&
        o->format != PROTO_EXPORT_GEOJSON)
        FS_BUG("unknown export format");
    if (!fields && o->format != PROTO_EXPORT_JSONL)
        FS_BUG("CSV and GeoJSON exports need the field set of pass 1");
    x = calloc(1, sizeof *x);
    if (!x)
        return FS_ENOMEM;
    x->format = o->format;
    x->excel = o->format == PROTO_EXPORT_CSV && o->excel;
    x->fields = o->format == PROTO_EXPORT_JSONL ? NULL : fields;
    x->write = write;
    x->ctx = ctx;
    fs_buf_init(&x->row, PROTO_EXPORT_ROW_MAX_BYTES);
    fs_buf_init(&x->tmp, PROTO_EXPORT_ROW_MAX_BYTES);
    fs_buf_init(&x->canon, 2 * PROTO_CONTENT_MAX_BYTES);
    if (x->fields && x->fields->n) {
        x->vals = calloc(x->fields->n, sizeof *x->vals);
        if (!x->vals) {
            rc = FS_ENOMEM;
            goto out;
        }
    }
    if (x->format == PROTO_EXPORT_CSV) {
        if (x->excel)
            W(fs_buf_adds(&x->row, BOM));
        W(fs_buf_adds(&x->row, csv_header));
        for (col = 0; col < x->fields->n; col++) {
            field_key(x->fields->names[col], key);
            W(fs_buf_addc(&x->row, ','));
            W(csv_text(&x->row, key, strlen(key), 0));
        }
        W(fs_buf_adds(&x->row, "\r\n"));
    } else if (x->format == PROTO_EXPORT_GEOJSON) {
        W(fs_buf_adds(&x->row, geojson_header));
    }
    W(flush_row(x));
    if (rc)
        goto out;
    *out = x;
    x = NULL; /* ownership moves to the caller */
out:
    proto_export_free(x);
    return rc;
}

/* Checks what the record carries besides its content. */
static enum fs_rc
check_record(const struct proto_export_record *r, const struct proto_content *c, struct fs_err *err)
{
    size_t i;

    if (!r->attachment_paths)
        return FS_OK;
    if (r->n_attachment_paths != c->n_attachments)
        return fs_err_set(err, FS_EINVAL,
                          "record %s: %zu attachment paths were given for %zu attachments", r->id,
                          r->n_attachment_paths, c->n_attachments);
    for (i = 0; i < c->n_attachments; i++) {
        const char *p = r->attachment_paths[i];

        if (p && (!*p || proto_utf8_check(p, strlen(p))))
            return fs_err_set(err, FS_EINVAL,
                              "record %s: the local path of attachment %zu is empty or not "
                              "valid UTF-8",
                              r->id, i + 1);
    }
    return FS_OK;
}

enum fs_rc
proto_export_add(struct proto_export *x, const struct proto_export_record *r, struct fs_err *err)
{
    struct proto_content c;
    enum fs_rc rc;

    proto_content_init(&c);
    if (x->finished)
        FS_BUG("proto_export_add after proto_export_finish");
    if (!r->id || (r->n_conflicts && !r->conflicts))
        FS_BUG("an export record needs an id, and conflicts when n_conflicts > 0");
    if (x->broken)
        return fs_err_set(err, x->broken, "the export could not be written: %s",
                          fs_strerror(x->broken));
    if (proto_uuid_check(r->id, strlen(r->id)))
        return fs_err_set(err, FS_EINVAL, "a record id is not a lowercase UUIDv7");
    if (r->gen < 1 || r->gen > PROTO_MAX_SAFE_INT)
        return fs_err_set(err, FS_EINVAL, "record %s: gen is out of range", r->id);
    if (x->format == PROTO_EXPORT_JSONL && !r->attachment_paths && jsonl_as_written(r)) {
        fs_buf_reset(&x->row);
        rc = jsonl_head(&x->row, r);
        W(fs_buf_add(&x->row, (const unsigned char *)r->content + 1, r->content_len - 1));
        W(fs_buf_addc(&x->row, '\n'));
        goto written;
    }
    rc = parse_content(r->content, r->content_len, &c, err);
    if (rc) {
        fs_err_prefix(err, "record %s: ", r->id);
        goto out;
    }
    rc = check_record(r, &c, err);
    if (!rc && x->fields)
        rc = map_fields(x, r, &c, err);
    if (rc)
        goto out;
    fs_buf_reset(&x->row);
    switch (x->format) {
    case PROTO_EXPORT_CSV:
        rc = csv_row(x, r, &c);
        break;
    case PROTO_EXPORT_JSONL:
        rc = jsonl_line(x, r, &c);
        break;
    case PROTO_EXPORT_GEOJSON:
        rc = geojson_feature(x, r, &c);
        break;
    }
written:
    if (rc) {
        fs_buf_reset(&x->row);
        if (rc == FS_ETOOBIG)
            rc = fs_err_set(err, rc, "record %s is too large to export", r->id);
        else
            rc = fs_err_set(err, rc, "record %s: %s", r->id, fs_strerror(rc));
        goto out;
    }
    rc = flush_row(x);
    if (rc) {
        rc = fs_err_set(err, rc, "the export could not be written: %s", fs_strerror(rc));
        goto out;
    }
    x->count++;
out:
    proto_content_release(&c);
    return rc;
}

enum fs_rc
proto_export_finish(struct proto_export *x, struct fs_err *err)
{
    enum fs_rc rc = FS_OK;

    if (x->finished)
        FS_BUG("proto_export_finish called twice");
    x->finished = 1;
    if (x->broken)
        return fs_err_set(err, x->broken, "the export could not be written: %s",
                          fs_strerror(x->broken));
    if (x->format == PROTO_EXPORT_GEOJSON) {
        W(fs_buf_adds(&x->row, geojson_trailer));
        W(flush_row(x));
    }
    if (rc)
        return fs_err_set(err, rc, "the export could not be written: %s", fs_strerror(rc));
    return FS_OK;
}

uint64_t
proto_export_count(const struct proto_export *x)
{
    return x->count;
}

void
proto_export_free(struct proto_export *x)
{
    if (!x)
        return;
    fs_buf_release(&x->row);
    fs_buf_release(&x->tmp);
    fs_buf_release(&x->canon);
    free(x->vals);
    free(x);
}
