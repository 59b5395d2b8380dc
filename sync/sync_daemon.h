/*
 * sync_daemon: the loop of fieldsyncd (triggers, capped exponential backoff
 * with full jitter, one push at a time), and the two small files through which
 * other processes see a daemon: HOME/daemon.lock (flock'd while it runs, holds
 * its pid) and HOME/daemon.state (key=value lines, replaced by tmp + rename).
 *
 * Not here: libsystemd and libcurl. fieldsyncd hands in the push and the
 * sd_notify sink as hooks, so that the fieldsync command can link this file to
 * read the state and wake a daemon without loading either library.
 *
 * The daemon never opens the store itself: every check and push runs in a
 * child process (fork), which opens the store, decides, pushes, and reports
 * one line through a pipe. So the loop never blocks on SQLite or the network,
 * no SQLite connection crosses a fork, and SIGTERM ends a push at once by
 * ending the child: the store's transactions and the server's idempotent
 * ingest leave nothing half done, and the next run resumes at have+1.
 *
 * Dependency rule: includes agent/store, protocol/ and base/ only.
 */
#ifndef SYNC_DAEMON_H
#define SYNC_DAEMON_H

#include <stdint.h>

#include "fs_log.h"
#include "store.h"

#define SYNC_DAEMON_LOCK_NAME  "daemon.lock"
#define SYNC_DAEMON_STATE_NAME "daemon.state"
#define SYNC_DAEMON_MSG_MAX    256

/* ---- backoff ------------------------------------------------------------------ */

/* Capped exponential backoff with full jitter: the n-th delay after a
 * failure is uniform in [0, cap) where cap = min(max, base * 2^n). */
struct sync_backoff {
    uint64_t base_ms, max_ms, cap_ms;
    uint64_t rng; /* splitmix64 state */
};

/* base_ms >= 1; max_ms below base_ms is raised to base_ms. seed: any value
 * (FIELDSYNC_BACKOFF_SEED for a reproducible run, else random). */
void sync_backoff_init(struct sync_backoff *b, uint64_t base_ms, uint64_t max_ms, uint64_t seed);
/* Changes base and maximum (settings re-read) and starts over at base. */
void sync_backoff_set(struct sync_backoff *b, uint64_t base_ms, uint64_t max_ms);
/* After a success: the next failure waits below base again. */
void sync_backoff_reset(struct sync_backoff *b);
/* The delay before the next try, and in *cap_ms the cap it was drawn below;
 * the cap then doubles, up to the maximum. */
uint64_t sync_backoff_next(struct sync_backoff *b, uint64_t *cap_ms /* OUT */);

/* ---- what other processes see ------------------------------------------------------ */

struct sync_daemon_info {
    int running; /* a process holds HOME/daemon.lock */
    long pid;    /* its pid, 0 when not running */
    int has_state;
    long state_pid; /* the pid that wrote daemon.state */
    char state[32]; /* idle, checking, pushing, backoff, stopped, no-store, ... */
    uint64_t runs_started, runs_done;
    int has_last;       /* a run finished */
    enum fs_rc last_rc; /* its result */
    int last_waiting;   /* it found no store or no enrollment: waiting, not failing */
    char last_at[PROTO_TIME_MAX_LEN];
    char last_msg[SYNC_DAEMON_MSG_MAX]; /* one line, what it did or what failed */
    uint64_t last_pushed, last_server_have;
    char next_try[PROTO_TIME_MAX_LEN]; /* RFC 3339; empty when no retry is scheduled */
};

/* Whether a daemon runs for home, and what daemon.state says (the last
 * daemon's, when none runs). Missing files are not an error. */
FS_WUR enum fs_rc sync_daemon_probe(const char *home, struct sync_daemon_info *out /* OUT */,
                                    struct fs_err *err);

/* Asks the daemon of home for a push now (SIGUSR1) and waits, at most
 * timeout_ms, for a run that began after this call to finish; *out then holds
 * its result (last_rc, last_msg, last_pushed, last_server_have).
 * FS_ENOTFOUND: no daemon runs (or it ended while waiting): push yourself.
 * FS_EAGAIN: it did not finish in time (err says so). */
FS_WUR enum fs_rc sync_daemon_wake(const char *home, int64_t timeout_ms,
                                   struct sync_daemon_info *out /* OUT */, struct fs_err *err);

/* ---- the loop --------------------------------------------------------------------- */

/* What a push run reports: rc (FS_ENET no connection, FS_EAGAIN retry,
 * FS_EPROTO fork or key mismatch, FS_EAUTH not enrolled or revoked), a one
 * line message (err.msg of the push; never note text or keys), counts. */
struct sync_daemon_push_result {
    enum fs_rc rc;
    uint64_t pushed, server_have;
    char msg[SYNC_DAEMON_MSG_MAX];
};

/* Handed to the push hook: progress and warn take pctx (the shape of
 * sync_push's callbacks); the hook fills result. */
struct sync_daemon_push_io {
    void (*progress)(void *pctx, uint64_t done, uint64_t total);
    void (*warn)(void *pctx, const char *line);
    void *pctx;
    struct sync_daemon_push_result result; /* OUT */
};

/* Runs in the child process with the store open (borrowed); pushes what the
 * server lacks and fills io->result. */
typedef void (*sync_daemon_push_fn)(void *ctx, struct store *s, struct sync_daemon_push_io *io);
/* Receives sd_notify(3) text: "READY=1\nSTATUS=...", "WATCHDOG=1", ... */
typedef void (*sync_daemon_notify_fn)(void *ctx, const char *text);

/* An optional extra source of "the network changed" (NetworkManager over
 * D-Bus in fieldsyncd): fd is polled for events(ctx); process(ctx) is
 * called when it is ready and returns 1 when the network came up. */
struct sync_daemon_netsrc {
    int fd; /* -1: none */
    short (*events)(void *ctx);
    int (*process)(void *ctx);
    void *ctx;
};

struct sync_daemon_opts {
    const char *home;         /* the store's folder (created 0700 when missing) */
    const struct fs_log *log; /* borrowed */
    sync_daemon_push_fn push; /* required */
    void *push_ctx;
    sync_daemon_notify_fn notify; /* may be NULL */
    void *notify_ctx;
    uint64_t watchdog_usec; /* WATCHDOG_USEC, 0: no watchdog */
    int has_seed;           /* FIELDSYNC_BACKOFF_SEED */
    uint64_t seed;
    struct sync_daemon_netsrc net; /* fd -1 when absent */
};

/* Runs the daemon until SIGTERM or SIGINT (FS_OK). Blocks SIGTERM, SIGINT,
 * SIGHUP and SIGUSR1 in the calling (single-threaded) process and
 * reads them through a signalfd. FS_EEXIST when another daemon holds the
 * store's lock (err: "already running (pid N)"); FS_EIO when the folder, the
 * lock or the kernel's notification sockets cannot be set up. */
FS_WUR enum fs_rc sync_daemon_run(const struct sync_daemon_opts *o, struct fs_err *err);

#endif
