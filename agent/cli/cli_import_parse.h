/*
 * The row readers of 'fieldsync import': JSON Lines and CSV (RFC 4180, as
 * 'fieldsync export' writes it) into struct proto_content, one row at a time,
 * streamed from a FILE so that memory does not grow with the file. Parsing
 * only: no store, no output. cli_import.c stores the rows; the fuzz targets in
 * tests/fuzz drive the same readers.
 *
 * A reader borrows its FILE and path (which names the file in messages) and
 * must be released with its _release function, whatever happened. Messages
 * never quote the input. Readers are independent; none is thread-safe.
 */
#ifndef CLI_IMPORT_PARSE_H
#define CLI_IMPORT_PARSE_H

#include <stdio.h>

#include "proto_content.h"

#define CLI_IMPORT_LINE_MAX (1u << 20) /* one JSON line or CSV row */

/* ---- JSON Lines ------------------------------------------------------------------ */

struct cli_jsonl {
    FILE *f;          /* borrowed */
    const char *path; /* borrowed */
    char *line;
    size_t cap;
    uint64_t lineno; /* the line of the row last returned */
};

void cli_jsonl_init(struct cli_jsonl *r, FILE *f, const char *path);
void cli_jsonl_release(struct cli_jsonl *r);

/* The next row: blank lines are skipped, a UTF-8 BOM on line 1 is ignored.
 * On FS_OK, c holds the row's content (checked; the caller releases it with
 * proto_content_release) and, when *has_id, id its "id" member, which is 36
 * characters but not checked further. FS_ENOTFOUND at the end of the file.
 * Otherwise nothing is held and err says why, naming the file and line:
 * FS_ETOOBIG for a line over CLI_IMPORT_LINE_MAX, FS_EIO for a read error,
 * FS_EINVAL (or FS_ETOOBIG, FS_ENOMEM) for a row that is not a record. */
FS_WUR enum fs_rc cli_jsonl_next(struct cli_jsonl *r, struct proto_content *c /* OUT */,
                                 char id[PROTO_UUID_LEN + 1] /* OUT */, int *has_id /* OUT */,
                                 struct fs_err *err);

/* ---- CSV ----------------------------------------------------------------------------- */

/* One record: its cells, each NUL-terminated, at off[0..n). */
struct cli_csv_row {
    struct fs_buf text;
    size_t *off;
    size_t n, alloc;
};

struct cli_csv {
    FILE *f;          /* borrowed */
    const char *path; /* borrowed */
    struct cli_csv_row hdr, row;
    int *kind; /* per column: what it holds */
    size_t ncol;
    int excel;      /* the file starts with a BOM: an export made with --excel */
    uint64_t lines; /* line breaks read so far */
    uint64_t rowno; /* the record last read; 1 is the header */
};

void cli_csv_init(struct cli_csv *r, FILE *f, const char *path);
void cli_csv_release(struct cli_csv *r);

/* Reads the byte order mark, if any, and the header, whose cells must be
 * distinct export column names (id, kind, observed_at, ..., field:NAME).
 * FS_EINVAL (or FS_ETOOBIG, FS_ENOMEM, FS_EIO) with the reason in err. */
FS_WUR enum fs_rc cli_csv_begin(struct cli_csv *r, struct fs_err *err);

/* The next record (empty lines are skipped), as cli_jsonl_next: on FS_OK, c
 * holds its checked content and *id its id cell, or NULL when empty (borrowed
 * from r, valid until the next call, not checked). FS_ENOTFOUND at the end. */
FS_WUR enum fs_rc cli_csv_next(struct cli_csv *r, struct proto_content *c /* OUT */,
                               const char **id /* OUT */, struct fs_err *err);

#endif
