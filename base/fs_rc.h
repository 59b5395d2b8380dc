/*
 * The one result type of the project, and the programmer-error macro.
 * Every fallible function returns an enum fs_rc; human detail lives in the
 * handle of the module that failed or in a caller buffer, never in a global.
 */
#ifndef FS_RC_H
#define FS_RC_H

#include <stdio.h>
#include <stdlib.h>

#define FS_WUR __attribute__((warn_unused_result))

enum fs_rc {
    FS_OK = 0,
    FS_ENOMEM,    /* out of memory */
    FS_EIO,       /* I/O error or disk full: nothing was saved */
    FS_EINVAL,    /* bad input data (a user's file, a flag's value) */
    FS_EUSAGE,    /* wrong use of a command */
    FS_EPROTO,    /* a peer broke the protocol: bad signature, malformed batch */
    FS_ECORRUPT,  /* stored data fails its own checks */
    FS_EAUTH,     /* not enrolled, revoked, or refused */
    FS_ENOTFOUND, /* no such record, feed, key or file */
    FS_ECONFLICT, /* a gap, a fork, a wrong offset, an ambiguous prefix */
    FS_ETOOBIG,   /* a size or count limit */
    FS_EAGAIN,    /* temporary: try again later */
    FS_ENET,      /* no connection could be made */
    FS_EEXIST,    /* already there */
    FS_EINTERNAL  /* a bug or an unexpected library failure */
};

/* A short sentence for rc, never NULL. */
const char *fs_strerror(enum fs_rc rc);

/* Non-zero when the operation may succeed if simply tried again later. */
int fs_rc_retryable(enum fs_rc rc);

/* Abort loudly on a programmer error; never used for input errors. */
#define FS_BUG(msg)                                                                                \
    do {                                                                                           \
        fprintf(stderr, "fieldsync: BUG at %s:%d: %s\n", __FILE__, __LINE__, (msg));               \
        abort();                                                                                   \
    } while (0)

#define FS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
