/* shim_fail: an LD_PRELOAD library for reliability row 5 that makes writes
 * and syncs fail the way a full or failing disk does. Only calls on files
 * whose path starts with $FS_SHIM_PREFIX count (never the terminal, pipes
 * or sockets). Test code only; never installed.
 *
 *   FS_SHIM_PREFIX=DIR      which files count (required; nothing fails without it)
 *   FS_SHIM_FAIL_AT=K       the K-th counted write or sync fails (1-based)
 *   FS_SHIM_ERRNO=ENOSPC|EIO  the error (ENOSPC by default)
 *   FS_SHIM_STICKY=1        every counted call from the K-th on fails (a full disk)
 *   FS_SHIM_FULL_FLAG=FILE  while FILE exists, every counted call fails (space
 *                           runs out and comes back while a server runs)
 *   FS_SHIM_COUNT_FILE=FILE at exit, appends "<pid> <counted calls>\n" to FILE
 *
 * Counted calls: write, pwrite, pwrite64, writev, pwritev, fsync, fdatasync,
 * ftruncate, fallocate. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);
static int (*real_fallocate)(int, int, off_t, off_t);

static const char *prefix, *full_flag, *count_file;
static size_t prefix_len;
static unsigned long fail_at;
static int fail_errno = ENOSPC, sticky;
static unsigned long counted;

/* dlsym's object pointer into a function pointer, the way POSIX shows. */
#define RESOLVE(var, name) (*(void **)(&(var)) = dlsym(RTLD_NEXT, name))

__attribute__((constructor)) static void
shim_init(void)
{
    const char *v;

    RESOLVE(real_write, "write");
    RESOLVE(real_pwrite, "pwrite");
    RESOLVE(real_pwrite64, "pwrite64");
    RESOLVE(real_writev, "writev");
    RESOLVE(real_pwritev, "pwritev");
    RESOLVE(real_fsync, "fsync");
    RESOLVE(real_fdatasync, "fdatasync");
    RESOLVE(real_ftruncate, "ftruncate");
    RESOLVE(real_fallocate, "fallocate");
    prefix = getenv("FS_SHIM_PREFIX");
    prefix_len = prefix ? strlen(prefix) : 0;
    full_flag = getenv("FS_SHIM_FULL_FLAG");
    count_file = getenv("FS_SHIM_COUNT_FILE");
    v = getenv("FS_SHIM_FAIL_AT");
    fail_at = v ? strtoul(v, NULL, 10) : 0;
    v = getenv("FS_SHIM_ERRNO");
    if (v && strcmp(v, "EIO") == 0)
        fail_errno = EIO;
    v = getenv("FS_SHIM_STICKY");
    sticky = v && strcmp(v, "1") == 0;
}

__attribute__((destructor)) static void
shim_fini(void)
{
    char line[64];
    int fd, n;

    if (!count_file || !real_write)
        return;
    fd = open(count_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    n = snprintf(line, sizeof line, "%ld %lu\n", (long)getpid(),
                 __atomic_load_n(&counted, __ATOMIC_SEQ_CST));
    if (n > 0 && real_write(fd, line, (size_t)n) < 0) {
        /* nothing to do: the count is lost */
    }
    close(fd);
}

/* Whether the call on fd fails; sets errno when it does. */
static int
should_fail(int fd)
{
    char link[64], path[4096];
    unsigned long k;
    ssize_t n;
    int saved = errno;

    if (!prefix_len || fd < 0)
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    errno = saved;
    if (n <= 0 || (size_t)n < prefix_len || strncmp(path, prefix, prefix_len) != 0)
        return 0;
    k = __atomic_add_fetch(&counted, 1, __ATOMIC_SEQ_CST);
    if (full_flag) {
        struct stat st;

        if (stat(full_flag, &st) == 0) {
            errno = ENOSPC;
            return 1;
        }
        errno = saved;
    }
    if (fail_at && (k == fail_at || (sticky && k > fail_at))) {
        errno = fail_errno;
        return 1;
    }
    return 0;
}

ssize_t
write(int fd, const void *p, size_t n)
{
    if (should_fail(fd))
        return -1;
    return real_write(fd, p, n);
}

ssize_t
pwrite(int fd, const void *p, size_t n, off_t off)
{
    if (should_fail(fd))
        return -1;
    return real_pwrite(fd, p, n, off);
}

ssize_t
pwrite64(int fd, const void *p, size_t n, off_t off)
{
    if (should_fail(fd))
        return -1;
    return real_pwrite64(fd, p, n, off);
}

ssize_t
writev(int fd, const struct iovec *iov, int cnt)
{
    if (should_fail(fd))
        return -1;
    return real_writev(fd, iov, cnt);
}

ssize_t
pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    if (should_fail(fd))
        return -1;
    return real_pwritev(fd, iov, cnt, off);
}

int
fsync(int fd)
{
    if (should_fail(fd))
        return -1;
    return real_fsync(fd);
}

int
fdatasync(int fd)
{
    if (should_fail(fd))
        return -1;
    return real_fdatasync(fd);
}

int
ftruncate(int fd, off_t len)
{
    if (should_fail(fd))
        return -1;
    return real_ftruncate(fd, len);
}

int
fallocate(int fd, int mode, off_t off, off_t len)
{
    if (should_fail(fd))
        return -1;
    return real_fallocate(fd, mode, off, len);
}
