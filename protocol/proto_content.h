/*
 * Content of enc "json": what a researcher recorded (DESIGN §3). Parsed
 * strictly from bytes, validated against the limits of proto.h, and written in
 * one canonical form (keys in a fixed order, numbers as their shortest
 * round-trip decimal, text byte for byte). Caller-owned struct:
 * proto_content_init / proto_content_release; every string it holds is owned.
 */
#ifndef PROTO_CONTENT_H
#define PROTO_CONTENT_H

#include <jansson.h>

#include "proto.h"

struct proto_field {
    char *name;
    char *value;
};

struct proto_attachment {
    char *name; /* a file name, no '/' */
    unsigned char hash[PROTO_HASH_BYTES];
    uint64_t size;
    char *type; /* a media type such as audio/mp4 */
};

struct proto_content {
    char *kind;        /* required: [a-z][a-z0-9_-]*, at most 32 bytes */
    char *observed_at; /* required: RFC 3339 with a zone */
    char *author;      /* optional (NULL) */
    char *site_name;   /* optional */
    char *region;      /* optional */
    int has_gps;
    double lat, lon;
    int has_acc;
    double acc_m;
    struct proto_field *fields;
    size_t n_fields;
    char *note; /* optional */
    struct proto_attachment *attachments;
    size_t n_attachments;
};

void proto_content_init(struct proto_content *c);
void proto_content_release(struct proto_content *c);
/* Deep copy into dst (initialised or released). */
FS_WUR enum fs_rc proto_content_copy(struct proto_content *dst, const struct proto_content *src);

/* Checks every rule: kind, time, text lengths and control characters, GPS
 * ranges, field names, attachment shape. FS_EINVAL or FS_ETOOBIG with a reason
 * that names the part, never its value. */
FS_WUR enum fs_rc proto_content_check(const struct proto_content *c, struct fs_err *err);

/* Canonical bytes of c (which must pass proto_content_check). */
FS_WUR enum fs_rc proto_content_encode(const struct proto_content *c, struct fs_buf *out);

/* Strict parse of content bytes into c (initialised by the call). Canonical
 * bytes take a fast path that yields the same struct. */
FS_WUR enum fs_rc proto_content_parse(const void *bytes, size_t len, struct proto_content *c,
                                      struct fs_err *err);
/* proto_content_parse's two paths, for tests that compare them: the fast one,
 * 1 when bytes are exactly proto_content_encode's for a valid content (c,
 * initialised by the call, filled), else 0 (c holds a part: release it); and
 * jansson's, for any bytes. */
int proto_content_parse_canonical(const void *bytes, size_t len, struct proto_content *c);
FS_WUR enum fs_rc proto_content_parse_general(const void *bytes, size_t len,
                                              struct proto_content *c, struct fs_err *err);

/* Fills c from an already parsed JSON object in the content shape; keys listed
 * in extra (NULL-terminated, may be NULL) are tolerated and ignored (import
 * rows carry "id"). */
FS_WUR enum fs_rc proto_content_from_json(const json_t *obj, const char *const *extra,
                                          struct proto_content *c, struct fs_err *err);

/* Sets or replaces a field (value NULL or "" removes it). */
FS_WUR enum fs_rc proto_content_set_field(struct proto_content *c, const char *name,
                                          const char *value);
/* Replaces *slot by a copy of s (NULL clears). */
FS_WUR enum fs_rc proto_content_set_str(char **slot, const char *s);

/* FS_OK when s is a valid kind. */
FS_WUR enum fs_rc proto_kind_check(const char *s);

/* FS_OK when s (len bytes) is valid UTF-8; callers handing in text from
 * outside JSON (flags, CSV) use it before anything else. */
FS_WUR enum fs_rc proto_utf8_check(const char *s, size_t len);

#endif
