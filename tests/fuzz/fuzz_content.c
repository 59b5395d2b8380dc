/* Fuzz target: content bytes (enc "json") through the strict parser, with the
 * canonical form as the property: what parses passes proto_content_check and
 * encodes to bytes that parse again and encode to the very same bytes (text
 * byte for byte, numbers as their shortest round-trip decimal). */
#include <string.h>

#include "fuzz.h"
#include "proto_content.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proto_content c, c2, c3;
    struct fs_buf b1, b2;
    struct fs_err err;

    fuzz_init();
    if (proto_content_parse(data, size, &c, &err))
        return 0;
    FUZZ_ASSERT(proto_content_check(&c, &err) == FS_OK);
    FUZZ_ASSERT(proto_content_copy(&c3, &c) == FS_OK);
    fs_buf_init(&b1, 4 * PROTO_CONTENT_MAX_BYTES);
    fs_buf_init(&b2, 4 * PROTO_CONTENT_MAX_BYTES);
    /* Escaping may lengthen the text past the limit: then encode refuses. */
    if (proto_content_encode(&c3, &b1) == FS_OK) {
        FUZZ_ASSERT(proto_content_parse(b1.data, b1.len, &c2, &err) == FS_OK);
        FUZZ_ASSERT(proto_content_encode(&c2, &b2) == FS_OK);
        FUZZ_ASSERT(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
        FUZZ_ASSERT(c2.n_fields == c.n_fields && c2.n_attachments == c.n_attachments &&
                    c2.has_gps == c.has_gps && c2.has_acc == c.has_acc);
        FUZZ_ASSERT(!c.has_gps || (c2.lat == c.lat && c2.lon == c.lon));
        proto_content_release(&c2);
    }
    fs_buf_release(&b1);
    fs_buf_release(&b2);
    proto_content_release(&c3);
    proto_content_release(&c);
    return 0;
}
