/*
 * Unit tests of the export writer (proto_export.c): CSV byte for byte and
 * through a small RFC 4180 reader, the --excel form, JSON Lines against the
 * canonical content, GeoJSON's [lon, lat] order, failing callbacks, refused
 * content, and 10000 records streamed without memory growth.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Heap in use: ASan's count under the sanitizer (GCC does not ship the
 * sanitizer headers, so the function libasan exports is declared here),
 * glibc's otherwise. */
#if defined(__SANITIZE_ADDRESS__)
#define FS_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FS_TEST_ASAN 1
#endif
#endif
#ifdef FS_TEST_ASAN
size_t __sanitizer_get_current_allocated_bytes(void);
#else
#include <malloc.h>
#endif

#include "proto.h"
#include "proto_content.h"
#include "proto_export.h"

#define ATT_HASH "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define ID_A     "0193a3c4-5b6e-7f00-8a1b-2c3d4e5f6a7b"
#define ID_B     "0193a3c4-5b6f-7000-9a1b-2c3d4e5f6a7c"
#define FEED_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define C1_HEX   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define C2_HEX   "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* Record A, in canonical form: Chinese text, commas, quotes, CR/LF, a note
 * that a spreadsheet would run as a formula, a negative longitude. */
static const char content_a[] =
    "{\"kind\":\"interview\",\"observed_at\":\"2026-11-28T09:30:00+08:00\",\"author\":\"Ye, T.\","
    "\"site\":{\"name\":\"宝坻 \\\"科学\\\" Town\",\"region\":\"天津市/宝坻区\",\"lat\":39.717,"
    "\"lon\":-117.309,\"acc_m\":8},"
    "\"fields\":{\"topic\":\"产业转移\\rtransfer\",\"role\":\"=official\"},"
    "\"note\":\"=HYPERLINK(\\\"x\\\")\\r\\nsecond line, with comma\","
    "\"attachments\":[{\"name\":\"talk.m4a\",\"hash\":\"" ATT_HASH "\",\"size\":48211234,"
    "\"type\":\"audio/mp4\"},{\"name\":\"现场 photo.jpg\",\"hash\":\"" ATT_HASH "\","
    "\"size\":0,\"type\":\"image/jpeg\"}]}";

/* Record B: no GPS, no owner, no conflicts, other fields. */
static const char content_b[] = "{\"kind\":\"note\",\"observed_at\":\"2026-11-29T01:00:00Z\","
                                "\"fields\":{\"Alpha\":\"x\\ny\",\"zeta\":\"-z\"}}";

static const char header_cols[] = "id,kind,gen,observed_at,author,site,region,lat,lon,acc_m,note,"
                                  "attachments,feed,conflicts,field:Alpha,field:role,field:topic,"
                                  "field:zeta\r\n";

static const char row_a[] =
    ID_A ",interview,3,2026-11-28T09:30:00+08:00,\"Ye, T.\",\"宝坻 \"\"科学\"\" Town\","
         "天津市/宝坻区,39.717,-117.309,8,\"=HYPERLINK(\"\"x\"\")\r\nsecond line, with comma\","
         "talk.m4a; 现场 photo.jpg," FEED_HEX "," C1_HEX " " C2_HEX ",,=official,"
         "\"产业转移\rtransfer\",\r\n";
static const char row_b[] = ID_B ",note,1,2026-11-29T01:00:00Z,,,,,,,,,,,\"x\ny\",,,-z\r\n";

static const char row_a_excel[] =
    ID_A ",interview,3,2026-11-28T09:30:00+08:00,\"Ye, T.\",\"宝坻 \"\"科学\"\" Town\","
         "天津市/宝坻区,39.717,-117.309,8,\"'=HYPERLINK(\"\"x\"\")\r\nsecond line, with comma\","
         "talk.m4a; 现场 photo.jpg," FEED_HEX "," C1_HEX " " C2_HEX ",,'=official,"
         "\"产业转移\rtransfer\",\r\n";
static const char row_b_excel[] = ID_B ",note,1,2026-11-29T01:00:00Z,,,,,,,,,,,\"x\ny\",,,'-z\r\n";

static unsigned char feed_a[PROTO_KEY_BYTES];
static unsigned char conflicts_a[2][PROTO_HASH_BYTES];

static int
group_setup(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < PROTO_KEY_BYTES; i++)
        feed_a[i] = (unsigned char)i;
    memset(conflicts_a[0], 0xaa, PROTO_HASH_BYTES);
    memset(conflicts_a[1], 0xbb, PROTO_HASH_BYTES);
    return proto_init() == FS_OK ? 0 : -1;
}

static struct proto_export_record
record_a(void)
{
    struct proto_export_record r;

    memset(&r, 0, sizeof r);
    r.id = ID_A;
    r.gen = 3;
    r.feed = feed_a;
    r.conflicts = (const unsigned char(*)[PROTO_HASH_BYTES])conflicts_a;
    r.n_conflicts = 2;
    r.content = content_a;
    r.content_len = strlen(content_a);
    return r;
}

static struct proto_export_record
record_b(void)
{
    struct proto_export_record r;

    memset(&r, 0, sizeof r);
    r.id = ID_B;
    r.gen = 1;
    r.content = content_b;
    r.content_len = strlen(content_b);
    return r;
}

/* ---- a write callback that keeps, counts and can fail ----------------------- */

struct sink {
    struct fs_buf out;
    int keep;       /* append what is written to out */
    size_t writes;  /* calls so far */
    uint64_t bytes; /* bytes so far */
    size_t fail_at; /* 1-based call that fails with FS_EIO; 0 never */
};

static void
sink_init(struct sink *s, int keep)
{
    memset(s, 0, sizeof *s);
    fs_buf_init(&s->out, 64u << 20);
    s->keep = keep;
}

static enum fs_rc
sink_write(void *ctx, const void *p, size_t n)
{
    struct sink *s = ctx;

    assert_true(n > 0);
    s->writes++;
    if (s->fail_at && s->writes >= s->fail_at)
        return FS_EIO;
    s->bytes += n;
    return s->keep ? fs_buf_add(&s->out, p, n) : FS_OK;
}

static const char *
sink_text(struct sink *s)
{
    return s->out.data ? (const char *)s->out.data : "";
}

static struct proto_field_set *
field_set_of(const char *const *contents, size_t n)
{
    struct proto_field_set *fs = NULL;
    struct fs_err err;
    size_t i;

    assert_int_equal(proto_field_set_new(&fs), FS_OK);
    for (i = 0; i < n; i++)
        assert_int_equal(proto_field_set_add_content(fs, contents[i], strlen(contents[i]), &err),
                         FS_OK);
    return fs;
}

/* Exports records with a field set of their contents into s->out. */
static void
export_all(struct sink *s, enum proto_export_format format, int excel,
           const struct proto_export_record *recs, size_t n)
{
    const char *contents[8];
    struct proto_export_opts o = {format, excel};
    struct proto_field_set *fs;
    struct proto_export *x = NULL;
    struct fs_err err;
    size_t i;

    assert_true(n <= FS_ARRAY_LEN(contents));
    for (i = 0; i < n; i++)
        contents[i] = recs[i].content;
    fs = field_set_of(contents, n);
    sink_init(s, 1);
    assert_int_equal(proto_export_new(&o, fs, sink_write, s, &x), FS_OK);
    for (i = 0; i < n; i++) {
        fs_err_clear(&err);
        if (proto_export_add(x, &recs[i], &err) != FS_OK)
            fail_msg("record %zu refused: %s", i, err.msg);
    }
    assert_int_equal(proto_export_finish(x, &err), FS_OK);
    assert_int_equal(proto_export_count(x), n);
    proto_export_free(x);
    proto_field_set_free(fs);
}

/* ---- a small, strict RFC 4180 reader ---------------------------------------- */

#define CSV_MAX_ROWS  8
#define CSV_MAX_CELLS 32

struct csv {
    char *cell[CSV_MAX_ROWS][CSV_MAX_CELLS]; /* malloc'd */
    size_t ncell[CSV_MAX_ROWS];
    size_t nrow;
};

/* Parses text (records ended by CRLF, the last one too). Fails the test on
 * anything RFC 4180 does not allow: a bare CR or LF, a quote inside an
 * unquoted cell, characters after a closing quote, an unterminated quote. */
static void
csv_parse(const char *text, struct csv *out)
{
    const char *p = text;
    char *buf = malloc(strlen(text) + 1);

    assert_non_null(buf);
    memset(out, 0, sizeof *out);
    while (*p) {
        size_t r = out->nrow++;

        assert_true(r < CSV_MAX_ROWS);
        for (;;) {
            size_t n = 0, c = out->ncell[r]++;

            assert_true(c < CSV_MAX_CELLS);
            if (*p == '"') {
                for (p++;; p++) {
                    if (*p == 0)
                        fail_msg("unterminated quoted cell in row %zu", r);
                    if (*p == '"') {
                        if (p[1] != '"')
                            break;
                        p++;
                    }
                    buf[n++] = *p;
                }
                p++; /* the closing quote */
                if (*p != ',' && *p != '\r')
                    fail_msg("characters after a closing quote in row %zu", r);
            } else {
                for (; *p && *p != ',' && *p != '\r'; p++) {
                    if (*p == '"' || *p == '\n')
                        fail_msg("a quote or LF in an unquoted cell in row %zu", r);
                    buf[n++] = *p;
                }
            }
            buf[n] = 0;
            out->cell[r][c] = strdup(buf);
            assert_non_null(out->cell[r][c]);
            if (*p == ',') {
                p++;
                continue;
            }
            if (p[0] != '\r' || p[1] != '\n')
                fail_msg("row %zu does not end in CRLF", r);
            p += 2;
            break;
        }
    }
    free(buf);
}

static void
csv_free(struct csv *c)
{
    size_t r, i;

    for (r = 0; r < c->nrow; r++)
        for (i = 0; i < c->ncell[r]; i++)
            free(c->cell[r][i]);
}

/* ---- CSV -------------------------------------------------------------------- */

static void
test_csv_byte_exact(void **state)
{
    struct proto_export_record recs[2];
    struct sink s;
    char want[4096];

    (void)state;
    recs[0] = record_a();
    recs[1] = record_b();
    export_all(&s, PROTO_EXPORT_CSV, 0, recs, 2);
    snprintf(want, sizeof want, "%s%s%s", header_cols, row_a, row_b);
    assert_string_equal(sink_text(&s), want);
    assert_int_equal(s.out.len, strlen(want));
    /* one write for the header, one per record */
    assert_int_equal(s.writes, 3);
    fs_buf_release(&s.out);
}

static void
test_csv_excel(void **state)
{
    struct proto_export_record recs[2];
    struct sink s;
    char want[4096];

    (void)state;
    recs[0] = record_a();
    recs[1] = record_b();
    export_all(&s, PROTO_EXPORT_CSV, 1, recs, 2);
    snprintf(want, sizeof want, "\xef\xbb\xbf%s%s%s", header_cols, row_a_excel, row_b_excel);
    assert_string_equal(sink_text(&s), want);
    /* the negative longitude stays a number */
    assert_non_null(strstr(sink_text(&s), ",39.717,-117.309,8,"));
    assert_null(strstr(sink_text(&s), "'-117"));
    fs_buf_release(&s.out);
}

/* Every cell read back by an RFC 4180 reader is the value put in. */
static void
test_csv_roundtrip(void **state)
{
    static const char *const want_a[] = {ID_A,
                                         "interview",
                                         "3",
                                         "2026-11-28T09:30:00+08:00",
                                         "Ye, T.",
                                         "宝坻 \"科学\" Town",
                                         "天津市/宝坻区",
                                         "39.717",
                                         "-117.309",
                                         "8",
                                         "=HYPERLINK(\"x\")\r\nsecond line, with comma",
                                         "talk.m4a; 现场 photo.jpg",
                                         FEED_HEX,
                                         C1_HEX " " C2_HEX,
                                         "",
                                         "=official",
                                         "产业转移\rtransfer",
                                         ""};
    static const char *const want_b[] = {
        ID_B, "note", "1", "2026-11-29T01:00:00Z", "", "", "", "", "", "", "", "", "", "", "x\ny",
        "",   "",     "-z"};
    struct proto_export_record recs[2];
    struct sink s;
    struct csv c;
    size_t i;

    (void)state;
    recs[0] = record_a();
    recs[1] = record_b();
    export_all(&s, PROTO_EXPORT_CSV, 0, recs, 2);
    csv_parse(sink_text(&s), &c);
    assert_int_equal(c.nrow, 3);
    assert_int_equal(c.ncell[0], 18);
    assert_int_equal(c.ncell[1], FS_ARRAY_LEN(want_a));
    assert_int_equal(c.ncell[2], FS_ARRAY_LEN(want_b));
    for (i = 0; i < FS_ARRAY_LEN(want_a); i++)
        assert_string_equal(c.cell[1][i], want_a[i]);
    for (i = 0; i < FS_ARRAY_LEN(want_b); i++)
        assert_string_equal(c.cell[2][i], want_b[i]);
    csv_free(&c);
    fs_buf_release(&s.out);

    /* with --excel, only the quote is added to the formula-like text cells */
    export_all(&s, PROTO_EXPORT_CSV, 1, recs, 2);
    assert_memory_equal(s.out.data, "\xef\xbb\xbf", 3);
    csv_parse(sink_text(&s) + 3, &c);
    assert_int_equal(c.nrow, 3);
    for (i = 0; i < FS_ARRAY_LEN(want_a); i++) {
        if (want_a[i][0] == '=')
            assert_true(c.cell[1][i][0] == '\'' && strcmp(c.cell[1][i] + 1, want_a[i]) == 0);
        else
            assert_string_equal(c.cell[1][i], want_a[i]);
    }
    assert_string_equal(c.cell[2][17], "'-z");
    csv_free(&c);
    fs_buf_release(&s.out);
}

/* Field columns come in byte order of their names, each once, and cells are
 * empty where a record lacks the field. */
static void
test_csv_field_columns(void **state)
{
    static const char c1[] = "{\"kind\":\"k\",\"observed_at\":\"2026-01-01T00:00:00Z\","
                             "\"fields\":{\"zeta\":\"1\",\"beta\":\"2\"}}";
    static const char c2[] = "{\"kind\":\"k\",\"observed_at\":\"2026-01-01T00:00:00Z\","
                             "\"fields\":{\"a.b\":\"3\",\"Alpha\":\"4\",\"beta\":\"5\"}}";
    static const char c3[] = "{\"kind\":\"k\",\"observed_at\":\"2026-01-01T00:00:00Z\"}";
    struct proto_export_record recs[3];
    struct sink s;
    struct csv c;
    size_t i;

    (void)state;
    for (i = 0; i < 3; i++) {
        recs[i] = record_b();
        recs[i].content = i == 0 ? c1 : i == 1 ? c2 : c3;
        recs[i].content_len = strlen(recs[i].content);
    }
    export_all(&s, PROTO_EXPORT_CSV, 0, recs, 3);
    csv_parse(sink_text(&s), &c);
    assert_int_equal(c.nrow, 4);
    assert_int_equal(c.ncell[0], 14 + 4);
    assert_string_equal(c.cell[0][13], "conflicts");
    assert_string_equal(c.cell[0][14], "field:Alpha");
    assert_string_equal(c.cell[0][15], "field:a.b");
    assert_string_equal(c.cell[0][16], "field:beta");
    assert_string_equal(c.cell[0][17], "field:zeta");
    assert_string_equal(c.cell[1][14], "");
    assert_string_equal(c.cell[1][15], "");
    assert_string_equal(c.cell[1][16], "2");
    assert_string_equal(c.cell[1][17], "1");
    assert_string_equal(c.cell[2][14], "4");
    assert_string_equal(c.cell[2][15], "3");
    assert_string_equal(c.cell[2][16], "5");
    assert_string_equal(c.cell[2][17], "");
    for (i = 14; i < 18; i++)
        assert_string_equal(c.cell[3][i], "");
    for (i = 1; i < 4; i++)
        assert_int_equal(c.ncell[i], 18);
    csv_free(&c);
    fs_buf_release(&s.out);
}

/* An empty export is the header alone; attachments show their local path
 * where one is given. */
static void
test_csv_empty_and_paths(void **state)
{
    static const char *const paths[] = {"/srv/blobs/9f/talk, 1.m4a", NULL};
    struct proto_export_opts o = {PROTO_EXPORT_CSV, 0};
    struct proto_export_record r = record_a();
    struct proto_field_set *fs = NULL;
    struct proto_export *x = NULL;
    struct fs_err err;
    struct sink s;
    struct csv c;

    (void)state;
    assert_int_equal(proto_field_set_new(&fs), FS_OK);
    assert_int_equal(proto_field_set_count(fs), 0);
    sink_init(&s, 1);
    assert_int_equal(proto_export_new(&o, fs, sink_write, &s, &x), FS_OK);
    assert_int_equal(proto_export_finish(x, &err), FS_OK);
    proto_export_free(x);
    assert_string_equal(sink_text(&s), "id,kind,gen,observed_at,author,site,region,lat,lon,acc_m,"
                                       "note,attachments,feed,conflicts\r\n");
    fs_buf_release(&s.out);
    proto_field_set_free(fs);

    r.attachment_paths = paths;
    r.n_attachment_paths = 2;
    export_all(&s, PROTO_EXPORT_CSV, 0, &r, 1);
    assert_non_null(strstr(sink_text(&s), ",\"/srv/blobs/9f/talk, 1.m4a; 现场 photo.jpg\","));
    csv_parse(sink_text(&s), &c);
    assert_string_equal(c.cell[1][11], "/srv/blobs/9f/talk, 1.m4a; 现场 photo.jpg");
    csv_free(&c);
    fs_buf_release(&s.out);
}

/* ---- JSON Lines ------------------------------------------------------------- */

static void
test_jsonl(void **state)
{
    static const char *const want_keys[] = {"id",     "gen",         "feed",       "conflicts",
                                            "kind",   "observed_at", "author",     "site",
                                            "fields", "note",        "attachments"};
    struct proto_export_record recs[2];
    struct proto_content pc;
    struct fs_buf canon;
    struct fs_err err;
    struct sink s;
    char want[4096];
    const char *line2, *k;
    json_t *j, *v, *content;
    json_error_t je;
    size_t i;

    (void)state;
    /* content_a is canonical: the test's expectations rest on that */
    fs_buf_init(&canon, 1 << 20);
    assert_int_equal(proto_content_parse(content_a, strlen(content_a), &pc, &err), FS_OK);
    assert_int_equal(proto_content_encode(&pc, &canon), FS_OK);
    assert_string_equal((const char *)canon.data, content_a);
    proto_content_release(&pc);
    fs_buf_release(&canon);

    recs[0] = record_a();
    recs[1] = record_b();
    export_all(&s, PROTO_EXPORT_JSONL, 0, recs, 2);
    snprintf(want, sizeof want,
             "{\"id\":\"" ID_A "\",\"gen\":3,\"feed\":\"" FEED_HEX "\",\"conflicts\":[\"" C1_HEX
             "\",\"" C2_HEX "\"],%s\n"
             "{\"id\":\"" ID_B "\",\"gen\":1,\"feed\":null,\"conflicts\":[],%s\n",
             content_a + 1, content_b + 1);
    assert_string_equal(sink_text(&s), want);
    /* GPS is copied, never re-printed longer */
    assert_non_null(strstr(sink_text(&s), "\"lat\":39.717,\"lon\":-117.309,\"acc_m\":8}"));

    /* each line is JSON: exactly the content plus id, gen, feed, conflicts */
    line2 = strchr(sink_text(&s), '\n') + 1;
    j = json_loadb(sink_text(&s), (size_t)(line2 - sink_text(&s)), JSON_REJECT_DUPLICATES, &je);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), FS_ARRAY_LEN(want_keys));
    i = 0;
    json_object_foreach(j, k, v)
    {
        (void)v;
        assert_string_equal(k, want_keys[i]);
        i++;
    }
    assert_string_equal(json_string_value(json_object_get(j, "id")), ID_A);
    assert_int_equal(json_integer_value(json_object_get(j, "gen")), 3);
    assert_string_equal(json_string_value(json_object_get(j, "feed")), FEED_HEX);
    assert_int_equal(json_array_size(json_object_get(j, "conflicts")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "conflicts"), 1)),
                        C2_HEX);
    assert_int_equal(json_object_del(j, "id") | json_object_del(j, "gen") |
                         json_object_del(j, "feed") | json_object_del(j, "conflicts"),
                     0);
    content = json_loads(content_a, 0, &je);
    assert_non_null(content);
    assert_true(json_equal(j, content));
    json_decref(content);
    json_decref(j);

    j = json_loads(line2, JSON_REJECT_DUPLICATES, &je);
    assert_non_null(j);
    assert_true(json_is_null(json_object_get(j, "feed")));
    assert_int_equal(json_array_size(json_object_get(j, "conflicts")), 0);
    json_decref(j);
    fs_buf_release(&s.out);
}

/* One JSON Lines row of r, or NULL when the export refuses it. */
static char *
jsonl_of(const struct proto_export_record *r)
{
    struct proto_export_opts o = {PROTO_EXPORT_JSONL, 0};
    struct proto_export *x = NULL;
    struct fs_err err;
    struct sink s;
    char *out = NULL;

    sink_init(&s, 1);
    assert_int_equal(proto_export_new(&o, NULL, sink_write, &s, &x), FS_OK);
    if (proto_export_add(x, r, &err) == FS_OK) {
        assert_int_equal(proto_export_finish(x, &err), FS_OK);
        out = strdup(sink_text(&s));
        assert_non_null(out);
    }
    proto_export_free(x);
    fs_buf_release(&s.out);
    return out;
}

/* r's row is the same whether or not its content's own hash vouches for it. */
static void
same_row_when_vouched(struct proto_export_record r)
{
    unsigned char h[PROTO_HASH_BYTES];
    char *plain, *fast;

    r.checked_hash = NULL;
    plain = jsonl_of(&r);
    proto_hash(r.content, r.content_len, h);
    r.checked_hash = h;
    fast = jsonl_of(&r);
    assert_non_null(plain);
    assert_non_null(fast);
    assert_string_equal(fast, plain);
    free(fast);
    free(plain);
}

/* With checked_hash, content that still hashes to it goes out as written; the
 * row is the same as the parsed and re-encoded one whenever the content is
 * canonical, and everything that is not plainly one compact object, or no
 * longer hashes to what was checked, takes the parsing path. */
static void
test_jsonl_as_written(void **state)
{
    /* The same record, keys in another order and one number spelled longer: what
     * another writer could sign. Compact, so it goes out as written. */
    static const char other_order[] = "{\"observed_at\":\"2026-11-29T01:00:00Z\",\"kind\":\"note\","
                                      "\"site\":{\"lat\":39.7170,\"lon\":117.3}}";
    static const char spaced[] = "{\"kind\": \"note\",\n\"observed_at\":\"2026-11-29T01:00:00Z\"}";
    static const char bad[] =
        "{\"kind\":\"note\",\"observed_at\":\"2026-11-29T01:00:00Z\",\"x\":1}";
    unsigned char h[PROTO_HASH_BYTES];
    struct proto_export_record r;
    char *plain, *fast, *p;

    (void)state;
    /* Canonical content, with and without the vouched hash: the same bytes. */
    r = record_b();
    same_row_when_vouched(r);
    r.checked_hash = h;

    /* Non-canonical but compact: kept as written (its own order and spelling). */
    r.content = other_order;
    r.content_len = strlen(other_order);
    proto_hash(other_order, r.content_len, h);
    fast = jsonl_of(&r);
    assert_non_null(fast);
    assert_non_null(strstr(fast, other_order + 1));
    free(fast);
    r.checked_hash = NULL; /* parsed: canonical order and spelling */
    plain = jsonl_of(&r);
    assert_non_null(plain);
    assert_non_null(strstr(plain, "\"kind\":\"note\",\"observed_at\""));
    assert_non_null(strstr(plain, "\"lat\":39.717,"));
    free(plain);

    /* Whitespace outside strings (a newline would split the row): parsed. */
    r.content = spaced;
    r.content_len = strlen(spaced);
    proto_hash(spaced, r.content_len, h);
    r.checked_hash = h;
    fast = jsonl_of(&r);
    assert_non_null(fast);
    assert_non_null(strstr(fast, "\"kind\":\"note\",\"observed_at\""));
    assert_ptr_equal(strchr(fast, '\n'), fast + strlen(fast) - 1);
    free(fast);

    /* Not what was checked (a changed byte since): parsed, and refused. */
    r.content = bad;
    r.content_len = strlen(bad);
    memset(h, 0, sizeof h);
    assert_null(jsonl_of(&r));
    /* ...but the same bytes under their own hash are taken as vouched for. */
    proto_hash(bad, r.content_len, h);
    fast = jsonl_of(&r);
    assert_non_null(fast);
    free(fast);

    /* Attachments: parsed, to add each local path; the row equals the plain one. */
    same_row_when_vouched(record_a());

    /* Broken structure under a matching hash never makes a broken row. */
    {
        static const char *const broken[] = {
            "{\"kind\":\"note\"}}",
            "{\"kind\":\"no\\\"}",
            "{\"kind\":[\"note\"}",
            "{\"kind\":\"a\\\nb\"}",
            "{}",
            "{\"kind\":\"note\",}x}",
        };
        size_t i;

        for (i = 0; i < FS_ARRAY_LEN(broken); i++) {
            r = record_b();
            r.content = broken[i];
            r.content_len = strlen(broken[i]);
            proto_hash(broken[i], r.content_len, h);
            r.checked_hash = h;
            p = jsonl_of(&r);
            assert_null(p); /* parsed, and refused as invalid content */
        }
    }
}

static void
test_jsonl_paths(void **state)
{
    static const char *const paths[] = {"/srv/blobs/9f/talk \"1\".m4a", NULL};
    struct proto_export_record r = record_a();
    json_t *j, *atts;
    json_error_t je;
    struct sink s;

    (void)state;
    r.attachment_paths = paths;
    r.n_attachment_paths = 2;
    export_all(&s, PROTO_EXPORT_JSONL, 0, &r, 1);
    assert_non_null(strstr(sink_text(&s), "\"type\":\"audio/mp4\",\"path\":\"/srv/blobs/9f/talk "
                                          "\\\"1\\\".m4a\"},{\"name\":"));
    assert_non_null(strstr(sink_text(&s), "\"type\":\"image/jpeg\"}]}\n"));
    j = json_loads(sink_text(&s), JSON_REJECT_DUPLICATES, &je);
    assert_non_null(j);
    atts = json_object_get(j, "attachments");
    assert_string_equal(json_string_value(json_object_get(json_array_get(atts, 0), "path")),
                        paths[0]);
    assert_null(json_object_get(json_array_get(atts, 1), "path"));
    json_decref(j);
    fs_buf_release(&s.out);
}

/* ---- GeoJSON ---------------------------------------------------------------- */

static void
test_geojson(void **state)
{
    static const char *const want_props[] = {
        "id",          "kind",       "gen",         "observed_at", "author", "site",
        "region",      "acc_m",      "note",        "attachments", "feed",   "conflicts",
        "field:Alpha", "field:role", "field:topic", "field:zeta"};
    struct proto_export_record recs[2];
    json_t *j, *feats, *f, *g, *props, *v;
    json_error_t je;
    struct sink s;
    const char *k;
    size_t i;

    (void)state;
    recs[0] = record_a();
    recs[1] = record_b();
    export_all(&s, PROTO_EXPORT_GEOJSON, 0, recs, 2);
    /* [lon, lat], the numbers copied */
    assert_non_null(strstr(sink_text(&s), "\"coordinates\":[-117.309,39.717]"));
    j = json_loads(sink_text(&s), JSON_REJECT_DUPLICATES, &je);
    if (!j)
        fail_msg("not JSON: %s at %d", je.text, je.position);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "FeatureCollection");
    feats = json_object_get(j, "features");
    assert_int_equal(json_array_size(feats), 2);

    f = json_array_get(feats, 0);
    assert_string_equal(json_string_value(json_object_get(f, "type")), "Feature");
    assert_string_equal(json_string_value(json_object_get(f, "id")), ID_A);
    g = json_object_get(f, "geometry");
    assert_string_equal(json_string_value(json_object_get(g, "type")), "Point");
    assert_true(json_number_value(json_array_get(json_object_get(g, "coordinates"), 0)) ==
                -117.309);
    assert_true(json_number_value(json_array_get(json_object_get(g, "coordinates"), 1)) == 39.717);
    props = json_object_get(f, "properties");
    assert_int_equal(json_object_size(props), FS_ARRAY_LEN(want_props));
    i = 0;
    json_object_foreach(props, k, v)
    {
        assert_string_equal(k, want_props[i]);
        assert_false(json_is_object(v) || json_is_array(v)); /* flat scalars */
        i++;
    }
    assert_string_equal(json_string_value(json_object_get(props, "note")),
                        "=HYPERLINK(\"x\")\r\nsecond line, with comma");
    assert_string_equal(json_string_value(json_object_get(props, "site")), "宝坻 \"科学\" Town");
    assert_string_equal(json_string_value(json_object_get(props, "attachments")),
                        "talk.m4a; 现场 photo.jpg");
    assert_string_equal(json_string_value(json_object_get(props, "conflicts")), C1_HEX " " C2_HEX);
    assert_string_equal(json_string_value(json_object_get(props, "feed")), FEED_HEX);
    assert_true(json_number_value(json_object_get(props, "acc_m")) == 8);
    assert_int_equal(json_integer_value(json_object_get(props, "gen")), 3);
    assert_true(json_is_null(json_object_get(props, "field:Alpha")));
    assert_string_equal(json_string_value(json_object_get(props, "field:topic")),
                        "产业转移\rtransfer");

    f = json_array_get(feats, 1);
    assert_true(json_is_null(json_object_get(f, "geometry")));
    props = json_object_get(f, "properties");
    assert_int_equal(json_object_size(props), FS_ARRAY_LEN(want_props));
    assert_true(json_is_null(json_object_get(props, "acc_m")));
    assert_true(json_is_null(json_object_get(props, "feed")));
    assert_true(json_is_null(json_object_get(props, "conflicts")));
    assert_true(json_is_null(json_object_get(props, "attachments")));
    assert_true(json_is_null(json_object_get(props, "author")));
    assert_true(json_is_null(json_object_get(props, "field:role")));
    assert_string_equal(json_string_value(json_object_get(props, "field:zeta")), "-z");
    json_decref(j);
    fs_buf_release(&s.out);

    /* no features is still a FeatureCollection */
    export_all(&s, PROTO_EXPORT_GEOJSON, 0, recs, 0);
    j = json_loads(sink_text(&s), JSON_REJECT_DUPLICATES, &je);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "features")), 0);
    json_decref(j);
    fs_buf_release(&s.out);
}

/* ---- failures --------------------------------------------------------------- */

/* A callback failing at write n: the writer returns its code, then stays
 * broken and writes nothing more. */
static void
test_write_failure(void **state)
{
    static const enum proto_export_format formats[] = {PROTO_EXPORT_CSV, PROTO_EXPORT_JSONL,
                                                       PROTO_EXPORT_GEOJSON};
    struct proto_export_record a = record_a(), b = record_b();
    const char *contents[] = {content_a, content_b};
    struct proto_field_set *fs = field_set_of(contents, 2);
    struct proto_export *x = NULL;
    struct fs_err err;
    size_t f, at;

    (void)state;
    for (f = 0; f < FS_ARRAY_LEN(formats); f++) {
        struct proto_export_opts o = {formats[f], 0};
        /* JSONL writes no header: its first write is the first record */
        size_t header = formats[f] == PROTO_EXPORT_JSONL ? 0 : 1;
        size_t total = header + 2 + (formats[f] == PROTO_EXPORT_GEOJSON);

        for (at = 1; at <= total; at++) {
            struct sink s;
            enum fs_rc rc;

            sink_init(&s, 0);
            s.fail_at = at;
            x = NULL;
            rc = proto_export_new(&o, fs, sink_write, &s, &x);
            if (at <= header) {
                assert_int_equal(rc, FS_EIO);
                assert_null(x);
                continue;
            }
            assert_int_equal(rc, FS_OK);
            rc = proto_export_add(x, &a, &err);
            assert_int_equal(rc, at == header + 1 ? FS_EIO : FS_OK);
            rc = proto_export_add(x, &b, &err);
            assert_int_equal(rc, at <= header + 2 ? FS_EIO : FS_OK);
            rc = proto_export_finish(x, &err);
            assert_int_equal(rc, FS_EIO);
            /* nothing is written once broken */
            assert_int_equal(s.writes, at);
            assert_int_equal(proto_export_count(x), at - header - 1);
            proto_export_free(x);
        }
    }
    proto_field_set_free(fs);
}

/* Refused records: FS_EINVAL naming the id, never quoting the text, nothing
 * written, and the writer goes on. */
static void
test_invalid_content(void **state)
{
    static const char *const bad[] = {
        "{\"kind\":\"k\",\"observed_at\":\"2026-01-01T00:00:00Z\",\"note\":\"SECRET\"",
        "{\"kind\":\"k\",\"observed_at\":\"2026-01-01T00:00:00Z\",\"note\":SECRET}",
        "{\"kind\":\"k\",\"observed_at\":\"2026-01-01T00:00:00Z\",\"secret\":\"SECRET\"}",
        "{\"kind\":\"k\",\"observed_at\":\"2026-01-01T00:00:00Z\",\"note\":\"a\",\"note\":"
        "\"SECRET\"}",
        "{\"kind\":\"k\",\"observed_at\":\"2026-01-01T00:00:00Z\",\"site\":{\"name\":\"SECRET\","
        "\"lat\":91,\"lon\":0}}",
        "{\"kind\":\"K\",\"observed_at\":\"2026-01-01T00:00:00Z\",\"note\":\"SECRET\"}",
        "{\"kind\":\"k\",\"observed_at\":\"yesterday\",\"note\":\"SECRET\"}",
        "{\"kind\":\"k\",\"observed_at\":\"2026-01-01T00:00:00Z\",\"fields\":{\"f\":1}}",
        "[\"SECRET\"]",
        "{\"kind\":\"k\",\"observed_at\":\"2026-01-01T00:00:00Z\",\"note\":\"\xff SECRET\"}",
        ""};
    static const enum proto_export_format formats[] = {PROTO_EXPORT_CSV, PROTO_EXPORT_JSONL,
                                                       PROTO_EXPORT_GEOJSON};
    const char *contents[] = {content_a, content_b};
    struct proto_field_set *fs = field_set_of(contents, 2);
    struct proto_export_record r = record_b();
    struct proto_export *x = NULL;
    struct fs_err err;
    size_t f, i, writes;

    (void)state;
    for (i = 0; i < FS_ARRAY_LEN(bad); i++) {
        fs_err_clear(&err);
        assert_int_equal(proto_field_set_add_content(fs, bad[i], strlen(bad[i]), &err), FS_EINVAL);
        assert_null(strstr(err.msg, "SECRET"));
        assert_true(err.msg[0] != 0);
    }
    assert_int_equal(proto_field_set_count(fs), 4);
    for (f = 0; f < FS_ARRAY_LEN(formats); f++) {
        struct proto_export_opts o = {formats[f], 0};
        struct sink s;

        sink_init(&s, 1);
        assert_int_equal(proto_export_new(&o, fs, sink_write, &s, &x), FS_OK);
        writes = s.writes;
        for (i = 0; i < FS_ARRAY_LEN(bad); i++) {
            r.content = bad[i];
            r.content_len = strlen(bad[i]);
            fs_err_clear(&err);
            assert_int_equal(proto_export_add(x, &r, &err), FS_EINVAL);
            assert_non_null(strstr(err.msg, ID_B));
            assert_null(strstr(err.msg, "SECRET"));
        }
        r.content = NULL;
        r.content_len = 0;
        assert_int_equal(proto_export_add(x, &r, &err), FS_EINVAL);
        assert_int_equal(s.writes, writes);
        /* the writer is still usable */
        r = record_b();
        assert_int_equal(proto_export_add(x, &r, &err), FS_OK);
        assert_int_equal(proto_export_finish(x, &err), FS_OK);
        assert_int_equal(proto_export_count(x), 1);
        if (formats[f] == PROTO_EXPORT_CSV)
            assert_string_equal(sink_text(&s) + strlen(header_cols), row_b);
        proto_export_free(x);
        fs_buf_release(&s.out);
    }
    proto_field_set_free(fs);
}

/* What the record carries besides its content is checked too. */
static void
test_invalid_record(void **state)
{
    static const char *const one_path[] = {"/a"};
    static const char *const bad_path[] = {"/a", "\xff"};
    const char *contents[] = {content_a};
    struct proto_field_set *fs = field_set_of(contents, 1);
    struct proto_export_opts o = {PROTO_EXPORT_CSV, 0};
    struct proto_export_record r;
    struct proto_export *x = NULL;
    struct fs_err err;
    struct sink s;

    (void)state;
    sink_init(&s, 1);
    assert_int_equal(proto_export_new(&o, fs, sink_write, &s, &x), FS_OK);

    r = record_a();
    r.id = "0193a3c4-5b6e-4f00-8a1b-2c3d4e5f6a7b"; /* version 4 */
    assert_int_equal(proto_export_add(x, &r, &err), FS_EINVAL);
    r.id = "not an id, \"=1+1\"";
    assert_int_equal(proto_export_add(x, &r, &err), FS_EINVAL);
    assert_null(strstr(err.msg, "=1+1"));

    r = record_a();
    r.gen = 0;
    assert_int_equal(proto_export_add(x, &r, &err), FS_EINVAL);
    r.gen = PROTO_MAX_SAFE_INT + 1;
    assert_int_equal(proto_export_add(x, &r, &err), FS_EINVAL);

    r = record_a();
    r.attachment_paths = one_path;
    r.n_attachment_paths = 1;
    assert_int_equal(proto_export_add(x, &r, &err), FS_EINVAL);
    assert_non_null(strstr(err.msg, ID_A));
    r.attachment_paths = bad_path;
    r.n_attachment_paths = 2;
    assert_int_equal(proto_export_add(x, &r, &err), FS_EINVAL);

    /* a field that pass 1 did not see would be lost: refused */
    r = record_b();
    assert_int_equal(proto_export_add(x, &r, &err), FS_ECONFLICT);
    assert_non_null(strstr(err.msg, ID_B));

    assert_int_equal(s.writes, 1); /* the header alone */
    assert_int_equal(proto_export_finish(x, &err), FS_OK);
    proto_export_free(x);
    proto_field_set_free(fs);
    fs_buf_release(&s.out);
}

/* A row beyond PROTO_EXPORT_ROW_MAX_BYTES is refused whole: nothing of it is
 * written (no half row, no stray GeoJSON comma) and the writer goes on. */
static void
test_row_too_big(void **state)
{
    static const enum proto_export_format formats[] = {PROTO_EXPORT_CSV, PROTO_EXPORT_JSONL,
                                                       PROTO_EXPORT_GEOJSON};
    size_t n = PROTO_EXPORT_ROW_MAX_BYTES / PROTO_HEX_KEY_LEN;
    unsigned char(*many)[PROTO_HASH_BYTES] = calloc(n, PROTO_HASH_BYTES);
    const char *contents[] = {content_a};
    struct proto_field_set *fs = field_set_of(contents, 1);
    struct fs_err err;
    size_t f;

    (void)state;
    assert_non_null(many);
    for (f = 0; f < FS_ARRAY_LEN(formats); f++) {
        struct proto_export_opts o = {formats[f], 0};
        struct proto_export_record r = record_a();
        struct proto_export *x = NULL;
        size_t writes;
        struct sink s;

        sink_init(&s, 1);
        assert_int_equal(proto_export_new(&o, fs, sink_write, &s, &x), FS_OK);
        writes = s.writes;
        r.conflicts = (const unsigned char(*)[PROTO_HASH_BYTES])many;
        r.n_conflicts = n;
        fs_err_clear(&err);
        assert_int_equal(proto_export_add(x, &r, &err), FS_ETOOBIG);
        assert_non_null(strstr(err.msg, ID_A));
        assert_int_equal(s.writes, writes);
        r = record_a();
        assert_int_equal(proto_export_add(x, &r, &err), FS_OK);
        assert_int_equal(proto_export_finish(x, &err), FS_OK);
        assert_int_equal(proto_export_count(x), 1);
        if (formats[f] == PROTO_EXPORT_GEOJSON) {
            json_error_t je;
            json_t *j = json_loads(sink_text(&s), JSON_REJECT_DUPLICATES, &je);

            assert_non_null(j);
            assert_int_equal(json_array_size(json_object_get(j, "features")), 1);
            json_decref(j);
        } else {
            assert_int_equal(s.writes, writes + 1);
        }
        proto_export_free(x);
        fs_buf_release(&s.out);
    }
    proto_field_set_free(fs);
    free(many);
}

/* The field set is capped at PROTO_EXPORT_FIELDS_MAX distinct names. */
static void
test_field_set_cap(void **state)
{
    struct proto_field_set *fs = NULL;
    struct fs_buf b;
    struct fs_err err;
    enum fs_rc rc = FS_OK;
    size_t rec, i;

    (void)state;
    assert_int_equal(proto_field_set_new(&fs), FS_OK);
    fs_buf_init(&b, 1 << 20);
    for (rec = 0; rec * PROTO_FIELDS_MAX <= PROTO_EXPORT_FIELDS_MAX; rec++) {
        fs_buf_reset(&b);
        assert_int_equal(
            fs_buf_adds(&b,
                        "{\"kind\":\"k\",\"observed_at\":\"2026-01-01T00:00:00Z\",\"fields\":{"),
            FS_OK);
        for (i = 0; i < PROTO_FIELDS_MAX; i++)
            assert_int_equal(fs_buf_printf(&b, "%s\"f%zu_%zu\":\"v\"", i ? "," : "", rec, i),
                             FS_OK);
        assert_int_equal(fs_buf_adds(&b, "}}"), FS_OK);
        rc = proto_field_set_add_content(fs, b.data, b.len, &err);
        if (rc)
            break;
    }
    assert_int_equal(rc, FS_ETOOBIG);
    assert_int_equal(proto_field_set_count(fs), PROTO_EXPORT_FIELDS_MAX);
    fs_buf_release(&b);
    proto_field_set_free(fs);
}

/* ---- streaming -------------------------------------------------------------- */

static size_t
allocated_bytes(void)
{
#ifdef FS_TEST_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    return mallinfo2().uordblks;
#endif
}

/* 10000 records, one write each, and the heap in use after the last is what
 * it was after the first few: the writer keeps nothing per record. */
static void
test_streaming_memory(void **state)
{
    static const enum proto_export_format formats[] = {PROTO_EXPORT_CSV, PROTO_EXPORT_JSONL,
                                                       PROTO_EXPORT_GEOJSON};
    const char *contents[] = {content_a, content_b};
    struct proto_field_set *fs = field_set_of(contents, 2);
    struct proto_export_record recs[2];
    struct fs_err err;
    size_t f, i;

    (void)state;
    recs[0] = record_a();
    recs[1] = record_b();
    for (f = 0; f < FS_ARRAY_LEN(formats); f++) {
        struct proto_export_opts o = {formats[f], 1};
        struct proto_export *x = NULL;
        size_t before = 0, after;
        uint64_t bytes_first = 0;
        struct sink s;

        sink_init(&s, 0);
        assert_int_equal(proto_export_new(&o, fs, sink_write, &s, &x), FS_OK);
        for (i = 0; i < 10000; i++) {
            assert_int_equal(proto_export_add(x, &recs[i % 2], &err), FS_OK);
            if (i == 1) {
                before = allocated_bytes();
                bytes_first = s.bytes;
            }
        }
        after = allocated_bytes();
        assert_int_equal(proto_export_finish(x, &err), FS_OK);
        assert_int_equal(proto_export_count(x), 10000);
        assert_int_equal(s.writes, 10000 + (formats[f] != PROTO_EXPORT_JSONL) +
                                       (formats[f] == PROTO_EXPORT_GEOJSON));
        assert_true(s.bytes > 4000 * bytes_first / 2);
        if (after > before + 1024)
            fail_msg("heap grew by %zu bytes over 9998 records", after - before);
        proto_export_free(x);
    }
    proto_field_set_free(fs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_byte_exact),
        cmocka_unit_test(test_csv_excel),
        cmocka_unit_test(test_csv_roundtrip),
        cmocka_unit_test(test_csv_field_columns),
        cmocka_unit_test(test_csv_empty_and_paths),
        cmocka_unit_test(test_jsonl),
        cmocka_unit_test(test_jsonl_paths),
        cmocka_unit_test(test_jsonl_as_written),
        cmocka_unit_test(test_geojson),
        cmocka_unit_test(test_write_failure),
        cmocka_unit_test(test_invalid_content),
        cmocka_unit_test(test_invalid_record),
        cmocka_unit_test(test_row_too_big),
        cmocka_unit_test(test_field_set_cap),
        cmocka_unit_test(test_streaming_memory),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
