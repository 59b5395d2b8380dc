/*
 * Growable byte buffers with a mandatory cap. A buffer never grows past the
 * cap given at init; appends beyond it fail with FS_ETOOBIG and leave the
 * buffer unchanged. Caller-owned struct: fs_buf_init / fs_buf_release.
 */
#ifndef FS_BUF_H
#define FS_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "fs_rc.h"

struct fs_buf {
    unsigned char *data; /* NUL-terminated after every append (not counted in len) */
    size_t len;
    size_t alloc;
    size_t cap; /* the most bytes len may ever reach */
};

void fs_buf_init(struct fs_buf *b, size_t cap);
/* Frees the bytes; the buffer may be reused after fs_buf_init. */
void fs_buf_release(struct fs_buf *b);
/* Empties the buffer, keeping its allocation. */
void fs_buf_reset(struct fs_buf *b);
/* Ensures room for n more bytes. */
FS_WUR enum fs_rc fs_buf_reserve(struct fs_buf *b, size_t n);
FS_WUR enum fs_rc fs_buf_add(struct fs_buf *b, const void *p, size_t n);
FS_WUR enum fs_rc fs_buf_adds(struct fs_buf *b, const char *s);
FS_WUR enum fs_rc fs_buf_addc(struct fs_buf *b, char c);
FS_WUR enum fs_rc fs_buf_printf(struct fs_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
FS_WUR enum fs_rc fs_buf_add_u32be(struct fs_buf *b, uint32_t v);
/* Moves the bytes out: the caller frees *out with free(). Buffer is emptied. */
unsigned char *fs_buf_detach(struct fs_buf *b, size_t *len /* OUT */);

/* Big-endian helpers for wire formats. */
static inline uint32_t
fs_get_u32be(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint16_t
fs_get_u16be(const unsigned char *p)
{
    return (uint16_t)(((unsigned)p[0] << 8) | p[1]);
}
static inline void
fs_put_u32be(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}
static inline uint64_t
fs_get_u64be(const unsigned char *p)
{
    return ((uint64_t)fs_get_u32be(p) << 32) | fs_get_u32be(p + 4);
}
static inline void
fs_put_u64be(unsigned char *p, uint64_t v)
{
    fs_put_u32be(p, (uint32_t)(v >> 32));
    fs_put_u32be(p + 4, (uint32_t)v);
}

#endif
