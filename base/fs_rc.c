/* Names and classes of the project's result codes. */
#include "fs_rc.h"

const char *
fs_strerror(enum fs_rc rc)
{
    switch (rc) {
    case FS_OK:
        return "success";
    case FS_ENOMEM:
        return "out of memory";
    case FS_EIO:
        return "I/O error";
    case FS_EINVAL:
        return "invalid input";
    case FS_EUSAGE:
        return "wrong usage";
    case FS_EPROTO:
        return "protocol violation";
    case FS_ECORRUPT:
        return "stored data is corrupt";
    case FS_EAUTH:
        return "not authorised";
    case FS_ENOTFOUND:
        return "not found";
    case FS_ECONFLICT:
        return "conflict";
    case FS_ETOOBIG:
        return "too large";
    case FS_EAGAIN:
        return "temporary failure";
    case FS_ENET:
        return "no connection";
    case FS_EEXIST:
        return "already exists";
    case FS_EINTERNAL:
        return "internal error";
    }
    return "unknown error";
}

int
fs_rc_retryable(enum fs_rc rc)
{
    return rc == FS_EAGAIN || rc == FS_ENET;
}
