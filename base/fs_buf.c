/* Capped growable buffers. */
#include "fs_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
fs_buf_init(struct fs_buf *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->cap = cap;
}

void
fs_buf_release(struct fs_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
}

void
fs_buf_reset(struct fs_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

enum fs_rc
fs_buf_reserve(struct fs_buf *b, size_t n)
{
    size_t want, na;
    unsigned char *p;

    if (n > b->cap || b->len > b->cap - n)
        return FS_ETOOBIG;
    want = b->len + n + 1; /* room for the terminating NUL */
    if (want <= b->alloc)
        return FS_OK;
    na = b->alloc ? b->alloc : 64;
    while (na < want)
        na = na > SIZE_MAX / 2 ? want : na * 2;
    if (na > b->cap + 1)
        na = b->cap + 1;
    p = realloc(b->data, na);
    if (!p)
        return FS_ENOMEM;
    b->data = p;
    b->alloc = na;
    return FS_OK;
}

enum fs_rc
fs_buf_add(struct fs_buf *b, const void *p, size_t n)
{
    enum fs_rc rc = fs_buf_reserve(b, n);

    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return FS_OK;
}

enum fs_rc
fs_buf_adds(struct fs_buf *b, const char *s)
{
    return fs_buf_add(b, s, strlen(s));
}

enum fs_rc
fs_buf_addc(struct fs_buf *b, char c)
{
    return fs_buf_add(b, &c, 1);
}

enum fs_rc
fs_buf_printf(struct fs_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    enum fs_rc rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return FS_EINTERNAL;
    rc = fs_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return FS_OK;
}

enum fs_rc
fs_buf_add_u32be(struct fs_buf *b, uint32_t v)
{
    unsigned char p[4];

    fs_put_u32be(p, v);
    return fs_buf_add(b, p, 4);
}

unsigned char *
fs_buf_detach(struct fs_buf *b, size_t *len)
{
    unsigned char *p = b->data;

    if (!p) {
        p = malloc(1);
        if (p)
            p[0] = 0;
    }
    *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    return p;
}
