/* The log sink of the binaries. */
#include "fs_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

void
fs_log_emit(const struct fs_log *log, enum fs_log_level level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log->fn(log->ctx, level, fmt, ap);
    va_end(ap);
}

int
fs_log_stderr_is_journal(void)
{
    static int cached = -1;
    const char *js;
    struct stat st;
    unsigned long long dev, ino;

    if (cached >= 0)
        return cached;
    cached = 0;
    js = getenv("JOURNAL_STREAM");
    if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
        (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino)
        cached = 1;
    return cached;
}

void
fs_log_stderr(void *ctx, enum fs_log_level level, const char *fmt, va_list ap)
{
    char line[1024];

    vsnprintf(line, sizeof line, fmt, ap);
    if (fs_log_stderr_is_journal())
        fprintf(stderr, "<%d>%s\n", (int)level, line);
    else
        fprintf(stderr, "%s: %s\n", ctx ? (const char *)ctx : "fieldsync", line);
}
