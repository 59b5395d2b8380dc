/*
 * Export of merged records as CSV, JSON Lines or GeoJSON (DESIGN §8), shared by
 * the coordinator's `fieldsync export` and the server's records.{csv,jsonl,geojson}.
 * Pure: it reads no file, socket or clock; every byte goes out through the
 * caller's write callback. It does not choose, filter or merge records: the
 * caller hands in each winning revision with its owner and conflicts.
 *
 * Two passes, so that memory does not grow with the number of records:
 *   1. a proto_field_set collects the field names of every record to export
 *      (CSV and GeoJSON have one column or property per field name);
 *   2. a proto_export writer is made from it and handed each record in turn.
 * The writer keeps no per-record state: one row buffer (bounded by
 * PROTO_EXPORT_ROW_MAX_BYTES) is reused, and each record is written with one
 * call of the callback once its row is complete, so a refused record leaves
 * no partial row behind.
 *
 * Formats:
 * - CSV, byte-exact RFC 4180: CRLF line ends; a cell is quoted when it holds a
 *   comma, a double quote, CR or LF (quotes doubled inside), otherwise written
 *   as is; UTF-8, no BOM. Columns: id, kind, gen, observed_at, author, site,
 *   region, lat, lon, acc_m, note, attachments, feed, conflicts, then
 *   "field:<name>" for every name of the field set in byte order. Absent
 *   values are empty cells. lat, lon and acc_m are the shortest decimal that
 *   reads back to the same double; attachments are joined by "; " (each its
 *   name, or its local path when given); feed is the owner's hex; conflicts
 *   the revision hashes in hex joined by one space.
 *   With excel: a UTF-8 BOM comes first, and every TEXT cell (id, kind,
 *   observed_at, author, site, region, note, attachments, feed, conflicts,
 *   fields) whose first character is '=', '+', '-' or '@' is prefixed with a
 *   single quote "'" so that a spreadsheet does not run it as a formula. The
 *   numeric columns gen, lat, lon and acc_m are numbers and are never
 *   neutralised: a negative longitude stays a number.
 * - JSON Lines: one record per line ('\n'), keys id, gen, feed (hex or null),
 *   conflicts (array of hex), then the content's keys exactly as
 *   proto_content_encode writes them. When local paths are given, each
 *   attachment object gains "path" after "type".
 * - GeoJSON (RFC 7946): a FeatureCollection streamed as header, features and
 *   trailer. Each feature has the record id as "id", a Point geometry with
 *   coordinates [lon, lat] (WGS84), or "geometry":null without GPS, and flat
 *   scalar properties: id, kind, gen, observed_at, author, site, region,
 *   acc_m, note, attachments, feed, conflicts (strings as in CSV) and
 *   "field:<name>" for every name of the field set; absent values are null.
 *
 * Thread-safety: a field set or writer is used by one thread at a time.
 */
#ifndef PROTO_EXPORT_H
#define PROTO_EXPORT_H

#include "proto.h"

#define PROTO_EXPORT_FIELDS_MAX    4096u       /* distinct field names in one export */
#define PROTO_EXPORT_ROW_MAX_BYTES (16u << 20) /* one record's row, feature or line */

enum proto_export_format { PROTO_EXPORT_CSV = 1, PROTO_EXPORT_JSONL, PROTO_EXPORT_GEOJSON };

/* Receives the export's bytes (n > 0). Anything but FS_OK stops the export:
 * the writer returns that code, now and from every later call. */
typedef enum fs_rc (*proto_export_write_fn)(void *ctx, const void *p, size_t n);

struct proto_export_opts {
    enum proto_export_format format;
    int excel; /* CSV only: a UTF-8 BOM, and formula-like text cells neutralised */
};

/* One merged record. Everything is borrowed for the duration of
 * proto_export_add only. */
struct proto_export_record {
    const char *id;            /* the record's UUIDv7, lowercase text */
    uint64_t gen;              /* the winning revision's gen, 1..2^53-1 */
    const unsigned char *feed; /* the owner's feed key, PROTO_KEY_BYTES, or NULL */
    const unsigned char (*conflicts)[PROTO_HASH_BYTES]; /* other live leaves, best first */
    size_t n_conflicts;
    const void *content; /* the winning revision's content bytes (enc json) */
    size_t content_len;
    /* NULL, or exactly one entry per attachment of the content, in its order:
     * a local path (valid UTF-8) shown instead of the name, or NULL. */
    const char *const *attachment_paths;
    size_t n_attachment_paths;
    /* NULL, or the content hash the winning entry names, from a caller whose
     * contents were all parsed strictly before they were stored (the agent's
     * store). JSON Lines then carry content that still hashes to it as it was
     * written, without a second parse, when it is a compact object without
     * attachments; anything else is parsed and written canonically. */
    const unsigned char *checked_hash;
};

/* ---- pass 1: the field names -------------------------------------------- */

struct proto_field_set;

/* An empty set; the caller frees it with proto_field_set_free. FS_ENOMEM. */
FS_WUR enum fs_rc proto_field_set_new(struct proto_field_set **out /* OUT */);

/* Parses content strictly (proto_content_parse) and adds its field names.
 * FS_EINVAL when the content is invalid (err says why, never quoting its
 * text; the caller adds which record), FS_ETOOBIG beyond
 * PROTO_EXPORT_FIELDS_MAX distinct names, FS_ENOMEM. On failure the set is
 * unchanged or holds some of this content's names; it stays usable. */
FS_WUR enum fs_rc proto_field_set_add_content(struct proto_field_set *fs, const void *content,
                                              size_t len, struct fs_err *err);

/* How many distinct names the set holds. */
size_t proto_field_set_count(const struct proto_field_set *fs);

/* NULL-safe. */
void proto_field_set_free(struct proto_field_set *fs);

/* ---- pass 2: the writer ------------------------------------------------- */

struct proto_export;

/* Makes a writer and writes the format's header (the CSV header row, after
 * the BOM with excel; the GeoJSON opening). fields is borrowed and must stay
 * unchanged until proto_export_free; it may be NULL only for JSONL, which
 * does not use it. write and ctx are called for every byte. Returns FS_OK,
 * FS_ENOMEM, or the callback's code (no writer is made then). The caller
 * frees *out with proto_export_free. */
FS_WUR enum fs_rc proto_export_new(const struct proto_export_opts *o,
                                   const struct proto_field_set *fields,
                                   proto_export_write_fn write, void *ctx,
                                   struct proto_export **out /* OUT */);

/* Writes one record. Nothing is written for a refused record, and the writer
 * stays usable:
 *   FS_EINVAL    the id is not a UUIDv7, gen is out of range, the content is
 *                invalid, the attachment paths do not match the attachments;
 *                err names the record id and the reason, never quoting text;
 *   FS_ECONFLICT the content has a field name the field set lacks (pass 1
 *                did not see this content: the records changed in between);
 *   FS_ETOOBIG   the row would exceed PROTO_EXPORT_ROW_MAX_BYTES;
 *   FS_ENOMEM.
 * When the callback fails, its code is returned and the export is broken:
 * every later add or finish returns the same code and writes nothing. */
FS_WUR enum fs_rc proto_export_add(struct proto_export *x, const struct proto_export_record *r,
                                   struct fs_err *err);

/* Writes the trailer (GeoJSON's closing; nothing for CSV and JSONL). Returns
 * FS_OK, or the code that broke the export or the callback's code. After it
 * only proto_export_free may be called. */
FS_WUR enum fs_rc proto_export_finish(struct proto_export *x, struct fs_err *err);

/* How many records were written so far. */
uint64_t proto_export_count(const struct proto_export *x);

/* NULL-safe; writes nothing. */
void proto_export_free(struct proto_export *x);

#endif
