/* Fuzz target: content bytes (enc "json") through the strict parser, with the
 * canonical form as the property: what parses passes proto_content_check and
 * encodes to bytes that parse again and encode to the very same bytes (text
 * byte for byte, numbers as their shortest round-trip decimal); and the fast
 * path for canonical bytes builds what jansson builds. */
#include <string.h>

#include "fuzz.h"
#include "proto_content.h"

/* Field by field: the two parsers build the same struct. */
static void
same_str(const char *a, const char *b)
{
    FUZZ_ASSERT((a == NULL) == (b == NULL));
    FUZZ_ASSERT(!a || strcmp(a, b) == 0);
}

static void
same_content(const struct proto_content *a, const struct proto_content *b)
{
    size_t i;

    same_str(a->kind, b->kind);
    same_str(a->observed_at, b->observed_at);
    same_str(a->author, b->author);
    same_str(a->site_name, b->site_name);
    same_str(a->region, b->region);
    same_str(a->note, b->note);
    FUZZ_ASSERT(a->has_gps == b->has_gps && a->has_acc == b->has_acc);
    FUZZ_ASSERT(!a->has_gps || (memcmp(&a->lat, &b->lat, sizeof a->lat) == 0 &&
                                memcmp(&a->lon, &b->lon, sizeof a->lon) == 0));
    FUZZ_ASSERT(!a->has_acc || memcmp(&a->acc_m, &b->acc_m, sizeof a->acc_m) == 0);
    FUZZ_ASSERT(a->n_fields == b->n_fields && a->n_attachments == b->n_attachments);
    for (i = 0; i < a->n_fields; i++) {
        same_str(a->fields[i].name, b->fields[i].name);
        same_str(a->fields[i].value, b->fields[i].value);
    }
    for (i = 0; i < a->n_attachments; i++) {
        same_str(a->attachments[i].name, b->attachments[i].name);
        same_str(a->attachments[i].type, b->attachments[i].type);
        FUZZ_ASSERT(a->attachments[i].size == b->attachments[i].size &&
                    memcmp(a->attachments[i].hash, b->attachments[i].hash, PROTO_HASH_BYTES) == 0);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proto_content c, c2, c3, c3g;
    enum fs_rc rc;
    struct fs_buf b1, b2;
    struct fs_err err;

    fuzz_init();
    rc = proto_content_parse(data, size, &c, &err);
    /* The fast path for canonical bytes and jansson agree. */
    FUZZ_ASSERT(proto_content_parse_general(data, size, &c2, &err) == rc);
    if (rc == FS_OK)
        same_content(&c, &c2);
    proto_content_release(&c2);
    if (rc)
        return 0;
    FUZZ_ASSERT(proto_content_check(&c, &err) == FS_OK);
    FUZZ_ASSERT(proto_content_copy(&c3, &c) == FS_OK);
    fs_buf_init(&b1, 4 * PROTO_CONTENT_MAX_BYTES);
    fs_buf_init(&b2, 4 * PROTO_CONTENT_MAX_BYTES);
    /* Escaping may lengthen the text past the limit: then encode refuses. */
    if (proto_content_encode(&c3, &b1) == FS_OK) {
        FUZZ_ASSERT(proto_content_parse(b1.data, b1.len, &c2, &err) == FS_OK);
        FUZZ_ASSERT(proto_content_parse_general(b1.data, b1.len, &c3g, &err) == FS_OK);
        same_content(&c2, &c3g);
        proto_content_release(&c3g);
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
