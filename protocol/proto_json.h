/*
 * Strict JSON for everything a signature touches, and a writer that produces
 * the canonical bytes fieldsync signs. Parsing uses jansson with duplicate keys
 * refused; the helpers here add what v1 demands on top: exact key sets,
 * integers below 2^53, lowercase hex, bounded strings.
 */
#ifndef PROTO_JSON_H
#define PROTO_JSON_H

#include <jansson.h>

#include "proto.h"

/* Parses a whole buffer as one JSON object: valid UTF-8, no duplicate keys, no
 * NUL in strings, nothing after the value. On success the caller owns *out
 * (json_decref). */
FS_WUR enum fs_rc proto_json_parse(const void *data, size_t len, json_t **out /* OUT */,
                                   struct fs_err *err);

/* FS_OK when every key of obj is in allowed (NULL-terminated) and every key of
 * required (NULL-terminated, may be NULL) is present. */
FS_WUR enum fs_rc proto_json_keys(const json_t *obj, const char *const *allowed,
                                  const char *const *required, const char *what,
                                  struct fs_err *err);

/* A JSON integer in [min, 2^53-1]. */
FS_WUR enum fs_rc proto_json_uint(const json_t *v, uint64_t min, uint64_t *out /* OUT */);
/* A JSON string of exactly 2*n lowercase hex digits, decoded. */
FS_WUR enum fs_rc proto_json_hex(const json_t *v, unsigned char *out, size_t n);

/* ---- writer: canonical bytes ------------------------------------------------ */

/* Appends s as a JSON string: '"' and '\\' escaped, control characters as
 * \n \t \r \b \f or \u00XX, everything else (UTF-8 included) verbatim. */
FS_WUR enum fs_rc proto_jw_str(struct fs_buf *b, const char *s, size_t len);
/* Appends "key": (key is a C string of plain ASCII). */
FS_WUR enum fs_rc proto_jw_key(struct fs_buf *b, const char *key);
/* Appends a number as the shortest decimal that reads back to v. */
FS_WUR enum fs_rc proto_jw_double(struct fs_buf *b, double v);
FS_WUR enum fs_rc proto_jw_uint(struct fs_buf *b, uint64_t v);
/* Appends "<hex>" of n bytes. */
FS_WUR enum fs_rc proto_jw_hex(struct fs_buf *b, const unsigned char *bin, size_t n);

/* ---- reader: the writer's own bytes back, without a general parser -------- */

/* A cursor over bytes this writer is expected to have produced. Each step
 * matches exactly the writer's spelling and returns 0 at the first difference
 * (the cursor is then unusable), 1 on a match. It is a fast path only: callers
 * encode what they read again and compare it with the bytes, and parse with
 * jansson whenever either step says no, so the reader never decides alone what
 * is accepted. */
struct proto_jr {
    const unsigned char *p, *end;
};

/* The exact bytes of s. */
int proto_jr_lit(struct proto_jr *r, const char *s);
/* A string written by proto_jw_str, decoded into a new C string (*out,
 * malloc'd); no NUL in it. 0 also when out of memory. */
int proto_jr_str(struct proto_jr *r, char **out /* OUT */);
/* A string without escapes, shorter than cap, copied into out. */
int proto_jr_str_plain(struct proto_jr *r, char *out, size_t cap);
/* An integer in 0..2^53-1 without leading zeros. */
int proto_jr_uint(struct proto_jr *r, uint64_t *out /* OUT */);
/* A JSON number, read with strtod (its spelling is checked by the caller's
 * comparison). */
int proto_jr_num(struct proto_jr *r, double *out /* OUT */);
/* "<2n lowercase hex digits>". */
int proto_jr_hex(struct proto_jr *r, unsigned char *out, size_t n);
/* null (*has 0), or the same as proto_jr_hex (*has 1). */
int proto_jr_hex_or_null(struct proto_jr *r, unsigned char *out, size_t n, int *has /* OUT */);

#endif
