/*
 * Logging: libraries never print; they call the sink set on their context.
 * Binaries install fs_log_stderr, which prefixes sd-daemon priorities ("<4>")
 * only when stderr is the journal. FS_LOG checks the level before it evaluates
 * its arguments. Never log a secret, a token, note text or a field value.
 */
#ifndef FS_LOG_H
#define FS_LOG_H

#include <stdarg.h>

enum fs_log_level {
    FS_LOG_ERR = 3,
    FS_LOG_WARNING = 4,
    FS_LOG_NOTICE = 5,
    FS_LOG_INFO = 6,
    FS_LOG_DEBUG = 7
};

typedef void (*fs_log_fn)(void *ctx, enum fs_log_level level, const char *fmt, va_list ap);

struct fs_log {
    fs_log_fn fn; /* NULL: nothing is logged */
    void *ctx;
    enum fs_log_level level; /* messages above this level are dropped */
};

void fs_log_emit(const struct fs_log *log, enum fs_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define FS_LOG(log, lvl, ...)                                                                      \
    do {                                                                                           \
        if ((log) && (log)->fn && (lvl) <= (log)->level)                                           \
            fs_log_emit((log), (lvl), __VA_ARGS__);                                                \
    } while (0)

/* The binaries' sink; ctx is the program name (const char *). */
void fs_log_stderr(void *ctx, enum fs_log_level level, const char *fmt, va_list ap);
/* Non-zero when stderr is connected to the journal ($JOURNAL_STREAM). */
int fs_log_stderr_is_journal(void);

#endif
