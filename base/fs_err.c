/* Filling caller-owned error details. */
#include "fs_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum fs_rc
fs_err_set(struct fs_err *err, enum fs_rc rc, const char *fmt, ...)
{
    char line[FS_ERR_MAX];
    va_list ap;

    if (!err)
        return rc;
    /* Formatted aside first: the arguments may quote err->msg itself. */
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    memcpy(err->msg, line, sizeof line);
    return rc;
}

void
fs_err_prefix(struct fs_err *err, const char *fmt, ...)
{
    char old[FS_ERR_MAX];
    size_t n;
    va_list ap;
    int w;

    if (!err)
        return;
    memcpy(old, err->msg, sizeof old);
    va_start(ap, fmt);
    w = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    n = w < 0 ? 0 : (size_t)w;
    if (n >= sizeof err->msg)
        return;
    /* Whatever fits of the old message follows the prefix. */
    memcpy(err->msg + n, old, sizeof err->msg - n - 1);
    err->msg[sizeof err->msg - 1] = 0;
}
