/* Fuzz target: a file given to 'fieldsync import' as CSV, read by the real
 * RFC 4180 reader (agent/cli/cli_import_parse.c): the byte order mark and
 * header, then row by row until the end or the first refusal, as import
 * does; each row then as import_row sees it. A refusal for too many columns
 * must be true. */
#include <stdio.h>
#include <string.h>

#include "cli_import_parse.h"
#include "fuzz_import.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cli_csv r;
    struct proto_content c;
    struct fs_err err;
    const char *id;
    FILE *f;
    enum fs_rc rc;

    fuzz_init();
    err.msg[0] = 0;
    if (size == 0)
        return 0;
    f = fmemopen((void *)data, size, "rb");
    if (!f)
        abort();
    cli_csv_init(&r, f, "fuzz.csv");
    rc = cli_csv_begin(&r, &err);
    if (!rc) {
        while ((rc = cli_csv_next(&r, &c, &id, &err)) == FS_OK) {
            FUZZ_ASSERT(r.row.n == r.ncol);
            fuzz_import_row(&c, id);
            proto_content_release(&c);
        }
    }
    FUZZ_ASSERT(rc == FS_ENOTFOUND || err.msg[0]);
    /* Too many columns means more than 4096 cells, so 4096 commas at least. */
    FUZZ_ASSERT(rc != FS_ETOOBIG || !strstr(err.msg, "columns") || size >= 4096);
    cli_csv_release(&r);
    fclose(f);
    return 0;
}
