/*
 * A caller-owned error detail: one line of text that says what happened and
 * what to do. Functions that can fail for reasons a person should read take a
 * `struct fs_err *` (which may be NULL) next to returning an enum fs_rc.
 * Messages never quote note text, field values, tokens or keys.
 */
#ifndef FS_ERR_H
#define FS_ERR_H

#include "fs_rc.h"

#define FS_ERR_MAX 256

struct fs_err {
    char msg[FS_ERR_MAX];
};

/* Sets the message (printf-style) and returns rc, so failures are one line:
 *     return fs_err_set(err, FS_EINVAL, "seq must be at least 1"); */
enum fs_rc fs_err_set(struct fs_err *err, enum fs_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes an existing message with more context ("line 12: "). */
void fs_err_prefix(struct fs_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline void
fs_err_clear(struct fs_err *err)
{
    if (err)
        err->msg[0] = 0;
}

#endif
