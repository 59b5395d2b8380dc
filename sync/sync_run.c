/* One sync run, the same for the command line and the daemon: entries first
 * (the server accepts only attachments a verified entry names), then
 * coordinators' corrections, then attachments. */
#include <string.h>

#include "sync.h"

enum fs_rc
sync_run(struct store *s, struct sync_http *h, struct sync_run_opts *o, struct sync_run_result *out,
         struct fs_err *err)
{
    enum fs_rc rc;

    memset(out, 0, sizeof *out);
    rc = sync_push(s, h, o ? o->progress : NULL, o ? o->ctx : NULL, o ? o->warn : NULL, &out->push,
                   err);
    if (!rc)
        rc = sync_corrections(s, h, &out->corrections, err);
    if (!rc) {
        if (o) {
            o->blobs.cb = o->bytes;
            o->blobs.ctx = o->ctx;
        }
        rc = sync_blobs_upload(s, h, o ? &o->blobs : NULL, &out->blobs, err);
    }
    return rc;
}
