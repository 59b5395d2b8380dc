/* Fuzz target: a file given to 'fieldsync import' as JSON Lines, read by the
 * real row reader (agent/cli/cli_import_parse.c) row by row until the end or
 * the first refusal, as import does; each row then as import_row sees it. */
#include <stdio.h>

#include "cli_import_parse.h"
#include "fuzz_import.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cli_jsonl r;
    struct proto_content c;
    struct fs_err err;
    char id[PROTO_UUID_LEN + 1];
    int has_id;
    FILE *f;
    enum fs_rc rc;

    fuzz_init();
    err.msg[0] = 0;
    if (size == 0)
        return 0;
    f = fmemopen((void *)data, size, "rb");
    if (!f)
        abort();
    cli_jsonl_init(&r, f, "fuzz.jsonl");
    while ((rc = cli_jsonl_next(&r, &c, id, &has_id, &err)) == FS_OK) {
        fuzz_import_row(&c, has_id ? id : NULL);
        proto_content_release(&c);
    }
    FUZZ_ASSERT(rc == FS_ENOTFOUND || err.msg[0]);
    cli_jsonl_release(&r);
    fclose(f);
    return 0;
}
