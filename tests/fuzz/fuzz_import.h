/* Shared by fuzz_import_jsonl.c and fuzz_import_csv.c: what 'fieldsync
 * import' does to each row it read before touching the store (cli_import.c's
 * import_row), as properties. */
#ifndef FUZZ_IMPORT_H
#define FUZZ_IMPORT_H

#include <string.h>

#include "fuzz.h"
#include "proto_content.h"

/* A row's content, as import stores it: an id, when given, is checked; the
 * content encodes within the limit or is refused, and what encodes reads
 * back as content that encodes to the same bytes. */
static inline void
fuzz_import_row(const struct proto_content *c, const char *id)
{
    struct proto_content c2;
    struct fs_buf b1, b2;
    struct fs_err err;

    if (id)
        (void)!proto_uuid_check(id, strlen(id));
    FUZZ_ASSERT(c->kind && c->observed_at);
    fs_buf_init(&b1, PROTO_CONTENT_MAX_BYTES);
    fs_buf_init(&b2, PROTO_CONTENT_MAX_BYTES);
    if (proto_content_encode(c, &b1) == FS_OK) {
        FUZZ_ASSERT(proto_content_parse(b1.data, b1.len, &c2, &err) == FS_OK);
        FUZZ_ASSERT(proto_content_encode(&c2, &b2) == FS_OK);
        FUZZ_ASSERT(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
        proto_content_release(&c2);
    }
    fs_buf_release(&b1);
    fs_buf_release(&b2);
}

#endif
