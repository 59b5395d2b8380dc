/* The loop of fieldsyncd: it waits on the kernel (signalfd, inotify, rtnetlink,
 * timerfd) and never polls; each check and push runs in a child process. Also
 * the daemon's lock and state files, read by `fieldsync status` and `sync`.
 * Not here: libsystemd and libcurl (hooks from fieldsyncd.c). */
#include "sync_daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Store writes come in bursts (an import, a push's receipts): one check a
 * little after the first change covers the burst. */
#define DEBOUNCE_MS 250
/* After the network comes up or the laptop resumes, DHCP and DNS need a
 * moment before a try is worth making. */
#define SETTLE_MS 1000
/* A jump of CLOCK_BOOTTIME ahead of CLOCK_MONOTONIC larger than this is a
 * suspend. */
#define SUSPEND_MIN_MS 1500
/* SIGTERM: how long a push child gets to end before SIGKILL. */
#define CHILD_TERM_MS 2000
/* How long a starting daemon retries a lock held for a moment by a probe. */
#define LOCK_TRIES      25
#define LOCK_PAUSE_MS   20
#define CHILD_OUT_MAX   2048
#define STATE_MAX       4096
#define STATUS_MAX      256
#define DEFAULT_BASE_MS 2000
#define DEFAULT_MAX_MS  900000

/* ---- backoff ------------------------------------------------------------------ */

static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void
sync_backoff_set(struct sync_backoff *b, uint64_t base_ms, uint64_t max_ms)
{
    b->base_ms = base_ms ? base_ms : 1;
    b->max_ms = max_ms < b->base_ms ? b->base_ms : max_ms;
    b->cap_ms = b->base_ms;
}

void
sync_backoff_init(struct sync_backoff *b, uint64_t base_ms, uint64_t max_ms, uint64_t seed)
{
    b->rng = seed;
    sync_backoff_set(b, base_ms, max_ms);
}

void
sync_backoff_reset(struct sync_backoff *b)
{
    b->cap_ms = b->base_ms;
}

uint64_t
sync_backoff_next(struct sync_backoff *b, uint64_t *cap_ms)
{
    uint64_t cap = b->cap_ms, delay = splitmix64(&b->rng) % cap;

    *cap_ms = cap;
    b->cap_ms = cap > b->max_ms / 2 ? b->max_ms : cap * 2;
    return delay;
}

/* ---- small helpers ---------------------------------------------------------------- */

static int64_t
clock_ms(clockid_t c)
{
    struct timespec ts;

    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *
path_in(const char *home, const char *name)
{
    size_t n = strlen(home) + strlen(name) + 2;
    char *p = malloc(n);

    if (p)
        snprintf(p, n, "%s/%s", home, name);
    return p;
}

/* Makes s one line of printable text, in place. */
static void
one_line(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20)
            *s = ' ';
}

static void
pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int
write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads a small file whole (NUL-terminated); -1 when it cannot. */
static int
read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t len = 0;

    if (fd < 0)
        return -1;
    while (len + 1 < cap) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    return 0;
}

/* ---- the state file ---------------------------------------------------------------- */

static uint64_t
parse_u64(const char *v)
{
    return strtoull(v, NULL, 10);
}

/* Copies v into a fixed field. */
#define FIELD(dst, v) snprintf((dst), sizeof(dst), "%s", (v))

static void
parse_state(char *text, struct sync_daemon_info *out)
{
    char *line = text, *nl, *eq;

    while (line && *line) {
        const char *k, *v;

        nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        eq = strchr(line, '=');
        k = line;
        v = eq ? eq + 1 : "";
        if (eq)
            *eq = 0;
        if (!eq) {
            /* not a key=value line: skipped */
        } else if (strcmp(k, "pid") == 0) {
            out->state_pid = strtol(v, NULL, 10);
        } else if (strcmp(k, "state") == 0) {
            FIELD(out->state, v);
        } else if (strcmp(k, "runs_started") == 0) {
            out->runs_started = parse_u64(v);
        } else if (strcmp(k, "runs_done") == 0) {
            out->runs_done = parse_u64(v);
        } else if (strcmp(k, "last_rc") == 0) {
            out->has_last = 1;
            out->last_rc = (enum fs_rc)strtol(v, NULL, 10);
        } else if (strcmp(k, "last_waiting") == 0) {
            out->last_waiting = strcmp(v, "1") == 0;
        } else if (strcmp(k, "last_at") == 0) {
            FIELD(out->last_at, v);
        } else if (strcmp(k, "last_msg") == 0) {
            FIELD(out->last_msg, v);
        } else if (strcmp(k, "last_pushed") == 0) {
            out->last_pushed = parse_u64(v);
        } else if (strcmp(k, "last_server_have") == 0) {
            out->last_server_have = parse_u64(v);
        } else if (strcmp(k, "next_try") == 0) {
            FIELD(out->next_try, v);
        }
        line = nl ? nl + 1 : NULL;
    }
    out->has_state = 1;
}

static int
read_state(const char *home, struct sync_daemon_info *out)
{
    char *path = path_in(home, SYNC_DAEMON_STATE_NAME);
    char text[STATE_MAX];
    int r = -1;

    if (path && read_small(path, text, sizeof text) == 0) {
        parse_state(text, out);
        r = 0;
    }
    free(path);
    return r;
}

/* The lock: running when someone holds it. The probe's shared lock lasts
 * microseconds; a daemon starting at that instant retries (LOCK_TRIES). */
static int
lock_probe(const char *home, long *pid)
{
    char *path = path_in(home, SYNC_DAEMON_LOCK_NAME);
    char buf[32];
    int fd, running = 0;
    ssize_t n;

    *pid = 0;
    fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    free(path);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        flock(fd, LOCK_UN);
    } else if (errno == EWOULDBLOCK) {
        running = 1;
        n = pread(fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            *pid = strtol(buf, NULL, 10);
        }
    }
    close(fd);
    return running;
}

enum fs_rc
sync_daemon_probe(const char *home, struct sync_daemon_info *out, struct fs_err *err)
{
    (void)err;
    memset(out, 0, sizeof *out);
    out->running = lock_probe(home, &out->pid);
    if (read_state(home, out) != 0)
        out->has_state = 0;
    return FS_OK;
}

/* Whether pid is a fieldsyncd (a pid read from a lock file may be stale for
 * an instant; never signal a stranger). */
static int
is_daemon(long pid)
{
    char path[64], comm[64];

    if (pid <= 1)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/comm", pid);
    if (read_small(path, comm, sizeof comm) != 0)
        return 0;
    return strncmp(comm, "fieldsyncd", 10) == 0;
}

enum fs_rc
sync_daemon_wake(const char *home, int64_t timeout_ms, struct sync_daemon_info *out,
                 struct fs_err *err)
{
    struct sync_daemon_info info;
    uint64_t want;
    int64_t deadline;
    int ino = -1, tries;
    long pid = 0;
    enum fs_rc rc;

    /* A daemon that has just taken the lock writes its pid a moment later. */
    for (tries = 0; tries < 50; tries++) {
        rc = sync_daemon_probe(home, &info, err);
        if (rc)
            return rc;
        if (!info.running)
            return FS_ENOTFOUND;
        if (is_daemon(info.pid))
            break;
        pause_ms(10);
    }
    if (tries == 50)
        return FS_ENOTFOUND;
    pid = info.pid;
    /* A run that starts after this point covers what is in the store now. */
    want = (info.has_state && info.state_pid == pid ? info.runs_started : 0) + 1;
    ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (ino < 0 || inotify_add_watch(ino, home, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
        rc = fs_err_set(err, FS_EIO, "cannot watch %s: %s", home, strerror(errno));
        goto out;
    }
    if (kill((pid_t)pid, SIGUSR1) != 0) {
        rc = FS_ENOTFOUND;
        goto out;
    }
    deadline = clock_ms(CLOCK_MONOTONIC) + timeout_ms;
    for (;;) {
        struct pollfd pfd = {ino, POLLIN, 0};
        char evbuf[4096];
        int64_t left;

        memset(&info, 0, sizeof info);
        if (read_state(home, &info) == 0 && info.state_pid == pid && info.runs_done >= want &&
            info.has_last) {
            info.running = 1;
            info.pid = pid;
            *out = info;
            rc = FS_OK;
            goto out;
        }
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            rc = FS_ENOTFOUND;
            goto out;
        }
        left = deadline - clock_ms(CLOCK_MONOTONIC);
        if (left <= 0) {
            rc = fs_err_set(err, FS_EAGAIN,
                            "the daemon (pid %ld) is still syncing; 'fieldsync status' shows how "
                            "it goes",
                            pid);
            goto out;
        }
        /* The wait is on the state file's rename; the one-second bound only
         * notices a daemon that died. */
        if (poll(&pfd, 1, (int)(left < 1000 ? left : 1000)) > 0)
            while (read(ino, evbuf, sizeof evbuf) > 0) {
            }
    }
out:
    if (ino >= 0)
        close(ino);
    return rc;
}

/* ---- the daemon ------------------------------------------------------------------ */

enum phase {
    P_STARTING,
    P_NO_STORE,
    P_NOT_ENROLLED,
    P_IDLE,
    P_RUNNING,
    P_BACKOFF,
    P_STOPPED /* authentication refused or store damaged: no retries until SIGHUP */
};

static const char *const phase_names[] = {"starting", "no-store", "not-enrolled", "idle",
                                          "syncing",  "backoff",  "stopped"};

/* What a check child found (the last line it writes). */
enum kind { K_NO_STORE, K_NOT_READY, K_NOT_ENROLLED, K_IDLE, K_PUSHED };

struct outcome {
    enum kind kind;
    enum fs_rc rc;
    uint64_t pending_before, pending_after, pushed, server_have;
    uint64_t base_ms, max_ms; /* the store's settings, 0 when unknown */
    int64_t last_sync_ms;     /* 0 when never */
    char msg[SYNC_DAEMON_MSG_MAX];
};

struct daemon {
    const struct sync_daemon_opts *o;
    const struct fs_log *log;
    char *lock_path, *state_path, *state_tmp;
    int lock_fd, sig_fd, ino_fd, nl_fd, timer_fd, wd_fd;
    int locked;
    sigset_t old_mask;

    enum phase phase, before_run;
    int64_t check_at; /* CLOCK_BOOTTIME ms of the next check, -1: none */
    int force_next;   /* the next run pushes even with nothing pending (SIGUSR1) */
    int dirty;        /* the store changed while a run was going on */
    int wake_pending; /* SIGUSR1 while a run was going on */
    int settings_loaded;
    int stop;
    struct sync_backoff bo;
    int64_t sleep_gap_ms; /* CLOCK_BOOTTIME - CLOCK_MONOTONIC, last seen */

    pid_t child;
    int child_fd;
    char child_out[CHILD_OUT_MAX]; /* an unfinished line of the child */
    size_t child_len;
    int child_has_oc;
    struct outcome child_oc;

    uint64_t runs_started, runs_done;
    int has_last;
    struct outcome last;
    int64_t last_at_ms;
    int has_pending;
    uint64_t pending;
    uint64_t progress_done, progress_total;
    int64_t last_sync_ms;
    int reach;     /* -1 unknown, 0 unreachable, 1 reachable, 2 refuses this device, 3 damaged */
    int announced; /* the waiting phase last logged, -1 none */
};

static void
notify(struct daemon *d, const char *text)
{
    if (d->o->notify)
        d->o->notify(d->o->notify_ctx, text);
}

/* Local wall time: "14:02", or "14:02:07" with seconds. */
static void
fmt_local(int64_t wall_ms, int seconds, char *out, size_t cap)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;

    localtime_r(&t, &tm);
    if (seconds)
        strftime(out, cap, "%H:%M:%S", &tm);
    else
        strftime(out, cap, "%H:%M", &tm);
}

/* The STATUS= line: what a person wants to know at a glance. */
static void
status_line(struct daemon *d, char *out, size_t cap)
{
    char last[32] = "never", next[48] = "", waiting[64];
    static const char *const reach[] = {"server unreachable", "server reachable",
                                        "the server refuses this device",
                                        "the store is damaged (run 'fieldsync verify')"};

    if (d->last_sync_ms > 0)
        fmt_local(d->last_sync_ms, 0, last, sizeof last);
    if (d->phase == P_NO_STORE) {
        snprintf(out, cap, "waiting for a store in %s ('fieldsync init')", d->o->home);
        return;
    }
    if (d->phase == P_NOT_ENROLLED) {
        snprintf(out, cap, "waiting for enrollment ('fieldsync enroll')");
        return;
    }
    if (d->phase == P_STARTING) {
        snprintf(out, cap, "starting");
        return;
    }
    if (d->phase == P_RUNNING && d->progress_total)
        snprintf(waiting, sizeof waiting, "sending %" PRIu64 " of %" PRIu64 " changes",
                 d->progress_done, d->progress_total);
    else if (!d->has_pending)
        snprintf(waiting, sizeof waiting, "checking");
    else if (d->pending == 0)
        snprintf(waiting, sizeof waiting, "all synced");
    else
        snprintf(waiting, sizeof waiting, "%" PRIu64 " change%s waiting", d->pending,
                 d->pending == 1 ? "" : "s");
    if (d->phase == P_BACKOFF && d->check_at >= 0) {
        int64_t wall = clock_ms(CLOCK_REALTIME) + (d->check_at - clock_ms(CLOCK_BOOTTIME));

        char hms[16];

        fmt_local(wall, 1, hms, sizeof hms);
        snprintf(next, sizeof next, " · next try %s", hms);
    }
    if (d->phase == P_STOPPED) {
        snprintf(out, cap, "%s · last sync %s · %s: stopped until SIGHUP", waiting, last,
                 reach[d->reach == 3 ? 3 : 2]);
        return;
    }
    snprintf(out, cap, "%s · last sync %s%s%s%s", waiting, last, d->reach >= 0 ? " · " : "",
             d->reach >= 0 ? reach[d->reach] : "", next);
}

/* Writes daemon.state (tmp + rename) and sends STATUS=. */
static void
publish(struct daemon *d, const char *extra_notify)
{
    char status[STATUS_MAX], text[STATE_MAX], next[PROTO_TIME_MAX_LEN] = "",
                                              at[PROTO_TIME_MAX_LEN] = "", msg[SYNC_DAEMON_MSG_MAX],
                                              note[STATUS_MAX + 64];
    int fd, n;

    status_line(d, status, sizeof status);
    if (d->phase == P_BACKOFF && d->check_at >= 0)
        proto_time_format_ms(clock_ms(CLOCK_REALTIME) + (d->check_at - clock_ms(CLOCK_BOOTTIME)),
                             next);
    if (d->has_last)
        proto_time_format_ms(d->last_at_ms, at);
    snprintf(msg, sizeof msg, "%s", d->has_last ? d->last.msg : "");
    one_line(msg);
    n = snprintf(text, sizeof text,
                 "pid=%ld\nstate=%s\nruns_started=%" PRIu64 "\nruns_done=%" PRIu64 "\n"
                 "next_try=%s\nstatus=%s\n",
                 (long)getpid(), d->stop ? "stopped" : phase_names[d->phase], d->runs_started,
                 d->runs_done, next, status);
    if (d->has_last && n > 0 && (size_t)n < sizeof text)
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "last_rc=%d\nlast_waiting=%d\nlast_at=%s\nlast_msg=%s\nlast_pushed=%" PRIu64
                      "\nlast_server_have=%" PRIu64 "\n",
                      (int)d->last.rc, d->last.kind <= K_NOT_ENROLLED, at, msg, d->last.pushed,
                      d->last.server_have);
    if (n < 0 || (size_t)n >= sizeof text)
        n = (int)strlen(text);
    fd = open(d->state_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, text, (size_t)n) != 0 || close(fd) != 0 ||
        rename(d->state_tmp, d->state_path) != 0) {
        if (fd >= 0)
            close(fd);
        FS_LOG(d->log, FS_LOG_WARNING, "cannot write %s: %s", d->state_path, strerror(errno));
    }
    snprintf(note, sizeof note, "%s%sSTATUS=%s", extra_notify ? extra_notify : "",
             extra_notify ? "\n" : "", status);
    notify(d, note);
}

static void
arm_timer(struct daemon *d)
{
    struct itimerspec its;

    memset(&its, 0, sizeof its);
    if (d->check_at >= 0) {
        int64_t at = d->check_at > 0 ? d->check_at : 1;

        its.it_value.tv_sec = (time_t)(at / 1000);
        its.it_value.tv_nsec = (long)(at % 1000) * 1000000L;
    }
    if (timerfd_settime(d->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        FS_LOG(d->log, FS_LOG_ERR, "cannot arm the timer: %s", strerror(errno));
}

/* A check at now + delay, unless one is due sooner. */
static void
schedule(struct daemon *d, int64_t delay_ms)
{
    int64_t at = clock_ms(CLOCK_BOOTTIME) + delay_ms;

    if (d->check_at < 0 || at < d->check_at) {
        d->check_at = at;
        arm_timer(d);
    }
}

static void
unschedule(struct daemon *d)
{
    d->check_at = -1;
    arm_timer(d);
}

/* ---- the child: one check, maybe a push ------------------------------------------- */

struct child_ctx {
    int fd;
    const struct fs_log *log;
};

static void
child_progress(void *pctx, uint64_t done, uint64_t total)
{
    struct child_ctx *c = pctx;
    char line[64];
    int n = snprintf(line, sizeof line, "P %" PRIu64 " %" PRIu64 "\n", done, total);

    if (write_all(c->fd, line, (size_t)n) != 0) {
        /* The parent is gone or stopping us; the push goes on or ends. */
    }
}

static void
child_warn(void *pctx, const char *line)
{
    struct child_ctx *c = pctx;

    FS_LOG(c->log, FS_LOG_WARNING, "%s", line);
}

static uint64_t
setting_u64(struct store *s, const char *key, uint64_t def)
{
    char *v = NULL, *end;
    uint64_t n = def;
    struct fs_err e;

    if (store_setting_get(s, key, &v, &e) == FS_OK && v) {
        unsigned long long x = strtoull(v, &end, 10);

        if (*v >= '0' && *v <= '9' && *end == 0 && x > 0)
            n = (uint64_t)x;
    }
    free(v);
    return n;
}

static void
child_check(struct daemon *d, int fd, int force, struct outcome *oc)
{
    struct store *s = NULL;
    struct store_status st;
    struct fs_err err = {{0}}, e2;
    struct child_ctx cc = {fd, d->log};
    char *server = NULL, *key = NULL, *last = NULL, when[PROTO_TIME_MAX_LEN], line[64];
    enum fs_rc rc;
    int n;

    memset(oc, 0, sizeof *oc);
    rc = store_open(d->o->home, &s, &err);
    if (rc == FS_ENOTFOUND) {
        oc->kind = K_NO_STORE;
        oc->rc = FS_ENOTFOUND;
        snprintf(oc->msg, sizeof oc->msg, "no store in %s yet; run 'fieldsync init'", d->o->home);
        goto out;
    }
    if (rc) {
        oc->kind = K_NOT_READY;
        oc->rc = rc;
        snprintf(oc->msg, sizeof oc->msg, "%s", err.msg);
        goto out;
    }
    oc->base_ms = setting_u64(s, "backoff_base_ms", DEFAULT_BASE_MS);
    oc->max_ms = setting_u64(s, "backoff_max_ms", DEFAULT_MAX_MS);
    if (store_setting_get(s, "last_sync", &last, &e2) == FS_OK && last &&
        proto_time_parse(last, strlen(last), 1, &oc->last_sync_ms) != FS_OK)
        oc->last_sync_ms = 0;
    if ((rc = store_setting_get(s, "server", &server, &err)) ||
        (rc = store_setting_get(s, "server_key", &key, &err)) ||
        (rc = store_status_get(s, &st, &err))) {
        oc->kind = K_NOT_READY;
        oc->rc = rc;
        snprintf(oc->msg, sizeof oc->msg, "%s", err.msg);
        goto out;
    }
    oc->pending_before = oc->pending_after = st.pending_entries + st.pending_blobs;
    oc->server_have = st.server_have_seq;
    if (!server || !key) {
        oc->kind = K_NOT_ENROLLED;
        oc->rc = FS_EAUTH;
        snprintf(oc->msg, sizeof oc->msg,
                 "this device is not enrolled; run 'fieldsync enroll URL --token-file F'");
        goto out;
    }
    if (st.pending_entries == 0 && st.pending_blobs == 0 && !force) {
        oc->kind = K_IDLE;
        oc->rc = FS_OK;
        snprintf(oc->msg, sizeof oc->msg, "nothing to send; the server holds all %" PRIu64,
                 st.server_have_seq);
        goto out;
    }
    /* Tell the parent what is waiting before the network is touched. */
    n = snprintf(line, sizeof line, "S %" PRIu64 "\n", st.pending_entries + st.pending_blobs);
    if (write_all(fd, line, (size_t)n) != 0)
        goto out;
    {
        struct sync_daemon_push_io io;

        memset(&io, 0, sizeof io);
        io.progress = child_progress;
        io.warn = child_warn;
        io.pctx = &cc;
        io.result.rc = FS_EINTERNAL;
        d->o->push(d->o->push_ctx, s, &io);
        oc->kind = K_PUSHED;
        oc->rc = io.result.rc;
        oc->pushed = io.result.pushed;
        if (io.result.server_have)
            oc->server_have = io.result.server_have;
        snprintf(oc->msg, sizeof oc->msg, "%s", io.result.msg);
    }
    /* As 'fieldsync sync' does: the status lines of the store. */
    proto_time_format_ms(store_now_ms(), when);
    if (oc->rc) {
        if (store_setting_set(s, "last_error", oc->msg, &e2) != FS_OK) {
            /* Only a status line; the result goes to the parent below. */
        }
    } else {
        if (store_setting_set(s, "last_sync", when, &e2) != FS_OK ||
            store_setting_set(s, "last_error", NULL, &e2) != FS_OK) {
            /* The receipts are what count, and they are saved. */
        }
        oc->last_sync_ms = store_now_ms();
        snprintf(oc->msg, sizeof oc->msg, "sent %" PRIu64 " entries; the server holds all %" PRIu64,
                 oc->pushed, oc->server_have);
    }
    if (store_status_get(s, &st, &e2) == FS_OK)
        oc->pending_after = st.pending_entries + st.pending_blobs;
out:
    free(server);
    free(key);
    free(last);
    store_close(s);
}

/* The last line of a child: "R kind rc before after pushed have base max last\tmsg". */
static void
child_main(struct daemon *d, int fd, int force)
{
    struct outcome oc;
    char line[CHILD_OUT_MAX];
    int n;

    child_check(d, fd, force, &oc);
    one_line(oc.msg);
    n = snprintf(line, sizeof line,
                 "R %d %d %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                 " %" PRId64 "\t%s\n",
                 (int)oc.kind, (int)oc.rc, oc.pending_before, oc.pending_after, oc.pushed,
                 oc.server_have, oc.base_ms, oc.max_ms, oc.last_sync_ms, oc.msg);
    if (n > 0 && write_all(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1) != 0) {
        /* The parent went away: nothing to report to. */
    }
}

static void
start_run(struct daemon *d)
{
    int p[2];
    int force = d->force_next;
    pid_t pid;

    unschedule(d);
    if (pipe2(p, O_CLOEXEC) != 0) {
        FS_LOG(d->log, FS_LOG_ERR, "cannot make a pipe: %s", strerror(errno));
        schedule(d, SETTLE_MS);
        return;
    }
    d->force_next = 0;
    d->before_run = d->phase;
    d->phase = P_RUNNING;
    d->runs_started++;
    d->progress_done = d->progress_total = 0;
    d->child_len = 0;
    d->child_has_oc = 0;
    /* The run's number is on disk before it starts: see sync_daemon_wake. */
    publish(d, NULL);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        FS_LOG(d->log, FS_LOG_ERR, "cannot start a push: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        d->runs_started--;
        d->phase = d->before_run;
        schedule(d, SETTLE_MS);
        return;
    }
    if (pid == 0) {
        sigset_t none;

        /* The child ends with the parent and on SIGTERM, at once. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        close(p[0]);
        close(d->sig_fd);
        close(d->ino_fd);
        if (d->nl_fd >= 0)
            close(d->nl_fd);
        close(d->timer_fd);
        if (d->wd_fd >= 0)
            close(d->wd_fd);
        if (d->o->net.fd >= 0)
            close(d->o->net.fd);
        close(d->lock_fd);
        if (getppid() == 1)
            _exit(0);
        child_main(d, p[1], force);
        close(p[1]);
        _exit(0);
    }
    close(p[1]);
    d->child = pid;
    d->child_fd = p[0];
    fcntl(d->child_fd, F_SETFL, O_NONBLOCK);
}

static void
announce_wait(struct daemon *d, enum phase ph, const char *msg)
{
    if (d->announced == (int)ph)
        return;
    d->announced = (int)ph;
    FS_LOG(d->log, FS_LOG_NOTICE, "%s; waiting", msg);
}

static void
retry_later(struct daemon *d)
{
    uint64_t cap, delay = sync_backoff_next(&d->bo, &cap);

    d->phase = P_BACKOFF;
    d->check_at = -1;
    schedule(d, (int64_t)delay);
    FS_LOG(d->log, FS_LOG_INFO, "retry in %" PRIu64 " ms (cap %" PRIu64 " ms)", delay, cap);
}

/* A refusal or a damaged store: neither heals by waiting, so it is said once,
 * not at every backoff, until SIGHUP or a restart. */
static void
stop_retries(struct daemon *d, const struct outcome *oc)
{
    d->reach = oc->rc == FS_EAUTH ? 2 : 3;
    d->phase = P_STOPPED;
    FS_LOG(d->log, FS_LOG_ERR,
           "%s; no more retries until SIGHUP or a restart ('systemctl --user reload fieldsyncd')",
           oc->msg);
}

static int
parse_outcome(const char *line, struct outcome *oc)
{
    const char *tab = strchr(line, '\t');
    int kind, rc;
    unsigned long long b, a, p, h, base, max;
    long long last;

    memset(oc, 0, sizeof *oc);
    if (!tab ||
        sscanf(line, "R %d %d %llu %llu %llu %llu %llu %llu %lld", &kind, &rc, &b, &a, &p, &h,
               &base, &max, &last) != 9 ||
        kind < K_NO_STORE || kind > K_PUSHED)
        return -1;
    oc->kind = (enum kind)kind;
    oc->rc = (enum fs_rc)rc;
    oc->pending_before = b;
    oc->pending_after = a;
    oc->pushed = p;
    oc->server_have = h;
    oc->base_ms = base;
    oc->max_ms = max;
    oc->last_sync_ms = last;
    snprintf(oc->msg, sizeof oc->msg, "%s", tab + 1);
    return 0;
}

/* A run ended: decide what comes next. */
static void
finish_run(struct daemon *d, const struct outcome *oc)
{
    d->runs_done++;
    d->has_last = 1;
    d->last = *oc;
    d->last_at_ms = clock_ms(CLOCK_REALTIME);
    if (oc->last_sync_ms > d->last_sync_ms)
        d->last_sync_ms = oc->last_sync_ms;
    if (oc->kind >= K_NOT_ENROLLED && oc->base_ms && !d->settings_loaded) {
        sync_backoff_set(&d->bo, oc->base_ms, oc->max_ms);
        d->settings_loaded = 1;
        FS_LOG(d->log, FS_LOG_INFO, "backoff from %" PRIu64 " ms up to %" PRIu64 " ms",
               d->bo.base_ms, d->bo.max_ms);
    }
    if (oc->kind >= K_NOT_ENROLLED) {
        d->has_pending = 1;
        d->pending = oc->pending_after;
    }
    switch (oc->kind) {
    case K_NO_STORE:
        d->phase = P_NO_STORE;
        announce_wait(d, P_NO_STORE, oc->msg);
        break;
    case K_NOT_READY:
        if (oc->rc == FS_ECORRUPT) {
            stop_retries(d, oc); /* a store that opens damaged */
            break;
        }
        d->phase = P_NO_STORE;
        announce_wait(d, P_NO_STORE, oc->msg);
        break;
    case K_NOT_ENROLLED:
        d->phase = P_NOT_ENROLLED;
        announce_wait(d, P_NOT_ENROLLED, oc->msg);
        break;
    case K_IDLE:
        d->phase = P_IDLE;
        d->announced = -1;
        sync_backoff_reset(&d->bo);
        break;
    case K_PUSHED:
        d->announced = -1;
        if (oc->rc == FS_OK) {
            d->reach = 1;
            d->phase = P_IDLE;
            sync_backoff_reset(&d->bo);
            FS_LOG(d->log, FS_LOG_INFO, "%s", oc->msg);
            if (oc->pending_after > 0)
                schedule(d, 0);
        } else if (oc->rc == FS_EAUTH || oc->rc == FS_ECORRUPT) {
            stop_retries(d, oc);
        } else {
            d->reach = oc->rc == FS_ENET ? 0 : 1;
            FS_LOG(d->log, oc->rc == FS_ENET || oc->rc == FS_EAGAIN ? FS_LOG_NOTICE : FS_LOG_ERR,
                   "push failed: %s", oc->msg);
            retry_later(d);
        }
        break;
    }
}

static void
child_done(struct daemon *d)
{
    struct outcome oc;
    int status = 0;

    close(d->child_fd);
    d->child_fd = -1;
    while (waitpid(d->child, &status, 0) < 0 && errno == EINTR) {
    }
    d->child = 0;
    if (d->child_has_oc) {
        oc = d->child_oc;
    } else {
        memset(&oc, 0, sizeof oc);
        oc.kind = K_PUSHED;
        oc.rc = FS_EINTERNAL;
        if (WIFSIGNALED(status))
            snprintf(oc.msg, sizeof oc.msg, "the push process died (signal %d)", WTERMSIG(status));
        else
            snprintf(oc.msg, sizeof oc.msg, "the push process ended without a result (exit %d)",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    finish_run(d, &oc);
    if (d->wake_pending) {
        d->wake_pending = 0;
        d->force_next = 1;
        schedule(d, 0);
    } else if (d->dirty &&
               (d->phase == P_IDLE || d->phase == P_NO_STORE || d->phase == P_NOT_ENROLLED)) {
        schedule(d, DEBOUNCE_MS);
    }
    d->dirty = 0;
    publish(d, NULL);
}

/* One line of the child: "S pending", "P done total" or the result. */
static int
child_line(struct daemon *d, const char *line)
{
    unsigned long long a, b;

    if (sscanf(line, "S %llu", &a) == 1) {
        d->has_pending = 1;
        d->pending = a;
        return 1;
    }
    if (sscanf(line, "P %llu %llu", &a, &b) == 2) {
        d->progress_done = a;
        d->progress_total = b;
        return 1;
    }
    if (line[0] == 'R' && parse_outcome(line, &d->child_oc) == 0)
        d->child_has_oc = 1;
    return 0;
}

static void
child_read(struct daemon *d)
{
    ssize_t n;
    int changed = 0;

    for (;;) {
        char *start, *nl;

        if (d->child_len + 1 >= sizeof d->child_out)
            d->child_len = 0; /* a line longer than any the child writes */
        n = read(d->child_fd, d->child_out + d->child_len, sizeof d->child_out - 1 - d->child_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (n == 0) {
            child_done(d);
            return;
        }
        d->child_len += (size_t)n;
        d->child_out[d->child_len] = 0;
        start = d->child_out;
        while ((nl = strchr(start, '\n'))) {
            *nl = 0;
            changed |= child_line(d, start);
            start = nl + 1;
        }
        d->child_len -= (size_t)(start - d->child_out);
        memmove(d->child_out, start, d->child_len);
    }
    if (changed)
        publish(d, NULL);
}

/* ---- event sources ------------------------------------------------------------------ */

static int
store_file(const char *name)
{
    return strcmp(name, STORE_DB_NAME) == 0 || strcmp(name, STORE_DB_NAME "-wal") == 0;
}

static void
store_changed(struct daemon *d)
{
    switch (d->phase) {
    case P_RUNNING:
        d->dirty = 1;
        break;
    case P_STARTING:
    case P_NO_STORE:
    case P_NOT_ENROLLED:
    case P_IDLE:
        schedule(d, DEBOUNCE_MS);
        break;
    case P_BACKOFF: /* the next retry takes it along */
    case P_STOPPED: /* until SIGHUP */
        break;
    }
}

/* 0, or -1 when the folder went away. */
static int
on_inotify(struct daemon *d)
{
    _Alignas(struct inotify_event) char buf[4096];
    ssize_t n;
    int changed = 0;

    while ((n = read(d->ino_fd, buf, sizeof buf)) > 0) {
        char *p = buf;

        while (p < buf + n) {
            const struct inotify_event *ev = (const struct inotify_event *)(void *)p;

            if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
                return -1;
            if (ev->mask & IN_Q_OVERFLOW)
                changed = 1;
            else if (ev->len && store_file(ev->name) &&
                     ((ev->mask & IN_MODIFY) || ((ev->mask & (IN_CREATE | IN_MOVED_TO)) &&
                                                 strcmp(ev->name, STORE_DB_NAME) == 0)))
                changed = 1;
            p += sizeof *ev + ev->len;
        }
    }
    if (changed) {
        FS_LOG(d->log, FS_LOG_DEBUG, "the store changed");
        store_changed(d);
    }
    return 0;
}

static void
network_up(struct daemon *d, const char *why)
{
    if (d->phase == P_BACKOFF) {
        FS_LOG(d->log, FS_LOG_INFO, "%s; trying again", why);
        sync_backoff_reset(&d->bo);
        d->check_at = -1;
        schedule(d, SETTLE_MS);
        publish(d, NULL);
    } else {
        FS_LOG(d->log, FS_LOG_DEBUG, "%s", why);
    }
}

/* rtnetlink: a link that came up or an address that appeared. */
static void
on_netlink(struct daemon *d)
{
    _Alignas(struct nlmsghdr) char buf[8192];
    ssize_t n;
    int up = 0;

    while ((n = recv(d->nl_fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
        const struct nlmsghdr *h;
        size_t len = (size_t)n;

        for (h = (const struct nlmsghdr *)(void *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
            if (h->nlmsg_type == RTM_NEWADDR) {
                up = 1;
            } else if (h->nlmsg_type == RTM_NEWLINK &&
                       h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct ifinfomsg))) {
                const struct ifinfomsg *ifi = NLMSG_DATA(h);

                if ((ifi->ifi_flags & IFF_UP) && (ifi->ifi_flags & IFF_RUNNING) &&
                    !(ifi->ifi_flags & IFF_LOOPBACK))
                    up = 1;
            }
        }
    }
    if (up)
        network_up(d, "the network changed");
}

/* CLOCK_BOOTTIME runs on during a suspend; CLOCK_MONOTONIC does not. */
static void
check_resume(struct daemon *d)
{
    int64_t gap = clock_ms(CLOCK_BOOTTIME) - clock_ms(CLOCK_MONOTONIC);
    int64_t slept = gap - d->sleep_gap_ms;

    if (slept < SUSPEND_MIN_MS)
        return;
    d->sleep_gap_ms = gap;
    if (d->phase == P_BACKOFF) {
        char why[64];

        snprintf(why, sizeof why, "resumed after %" PRId64 " s of suspend", slept / 1000);
        network_up(d, why);
    } else {
        FS_LOG(d->log, FS_LOG_INFO, "resumed after %" PRId64 " s of suspend", slept / 1000);
    }
}

/* 1 when the daemon should stop. */
static int
on_signal(struct daemon *d)
{
    struct signalfd_siginfo si;

    while (read(d->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            FS_LOG(d->log, FS_LOG_INFO, "stopping (%s)",
                   si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            return 1;
        case SIGHUP:
            FS_LOG(d->log, FS_LOG_INFO, "SIGHUP: reading the settings again");
            d->settings_loaded = 0;
            sync_backoff_reset(&d->bo);
            d->announced = -1;
            if (d->phase == P_RUNNING) {
                d->dirty = 1;
            } else {
                if (d->phase == P_STOPPED || d->phase == P_BACKOFF)
                    d->phase = P_IDLE;
                d->check_at = -1;
                schedule(d, 0);
            }
            break;
        case SIGUSR1:
            FS_LOG(d->log, FS_LOG_INFO, "asked to sync now");
            if (d->phase == P_RUNNING) {
                d->wake_pending = 1;
            } else {
                d->force_next = 1;
                d->check_at = -1;
                schedule(d, 0);
            }
            break;
        default:
            break;
        }
    }
    return 0;
}

/* ---- set-up and the loop ------------------------------------------------------------ */

static enum fs_rc
mkdir_p(const char *path, struct fs_err *err)
{
    char buf[4096];
    size_t i, n = strlen(path);

    if (n == 0 || n >= sizeof buf)
        return fs_err_set(err, FS_EUSAGE, "the store's folder name is empty or too long");
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];

            buf[i] = 0;
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return fs_err_set(err, FS_EIO, "cannot create %s: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    return FS_OK;
}

static enum fs_rc
take_lock(struct daemon *d, struct fs_err *err)
{
    char pid[32];
    int i, n;

    d->lock_fd = open(d->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (d->lock_fd < 0)
        return fs_err_set(err, FS_EIO, "cannot open %s: %s", d->lock_path, strerror(errno));
    for (i = 0; i < LOCK_TRIES; i++) {
        if (flock(d->lock_fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno != EWOULDBLOCK)
            return fs_err_set(err, FS_EIO, "cannot lock %s: %s", d->lock_path, strerror(errno));
        pause_ms(LOCK_PAUSE_MS);
    }
    if (i == LOCK_TRIES) {
        long other = 0;
        ssize_t r = pread(d->lock_fd, pid, sizeof pid - 1, 0);

        if (r > 0) {
            pid[r] = 0;
            other = strtol(pid, NULL, 10);
        }
        return fs_err_set(err, FS_EEXIST, "already running (pid %ld) for %s", other, d->o->home);
    }
    d->locked = 1;
    n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(d->lock_fd, 0) != 0 || pwrite(d->lock_fd, pid, (size_t)n, 0) != n)
        return fs_err_set(err, FS_EIO, "cannot write %s: %s", d->lock_path, strerror(errno));
    return FS_OK;
}

static enum fs_rc
setup(struct daemon *d, struct fs_err *err)
{
    sigset_t mask;
    struct sockaddr_nl sa;
    enum fs_rc rc;

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR1);
    /* Blocked before the lock is taken: a SIGUSR1 from 'fieldsync sync'
     * waits in the signalfd instead of ending the process. */
    if (sigprocmask(SIG_BLOCK, &mask, &d->old_mask) != 0)
        return fs_err_set(err, FS_EIO, "cannot block signals: %s", strerror(errno));
    d->sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (d->sig_fd < 0)
        return fs_err_set(err, FS_EIO, "signalfd: %s", strerror(errno));
    rc = mkdir_p(d->o->home, err);
    if (rc)
        return rc;
    rc = take_lock(d, err);
    if (rc)
        return rc;
    d->ino_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (d->ino_fd < 0 ||
        inotify_add_watch(d->ino_fd, d->o->home,
                          IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF) < 0)
        return fs_err_set(err, FS_EIO, "cannot watch %s: %s", d->o->home, strerror(errno));
    d->timer_fd = timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC | TFD_NONBLOCK);
    if (d->timer_fd < 0)
        return fs_err_set(err, FS_EIO, "timerfd: %s", strerror(errno));
    d->nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    memset(&sa, 0, sizeof sa);
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
    if (d->nl_fd < 0 || bind(d->nl_fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        FS_LOG(d->log, FS_LOG_WARNING,
               "cannot follow network changes (rtnetlink: %s); retries still run on their timer",
               strerror(errno));
        if (d->nl_fd >= 0)
            close(d->nl_fd);
        d->nl_fd = -1;
    }
    if (d->o->watchdog_usec) {
        struct itimerspec its;
        uint64_t half = d->o->watchdog_usec / 2 ? d->o->watchdog_usec / 2 : 1;

        d->wd_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (d->wd_fd < 0)
            return fs_err_set(err, FS_EIO, "timerfd: %s", strerror(errno));
        its.it_value.tv_sec = its.it_interval.tv_sec = (time_t)(half / 1000000);
        its.it_value.tv_nsec = its.it_interval.tv_nsec = (long)(half % 1000000) * 1000L;
        if (timerfd_settime(d->wd_fd, 0, &its, NULL) != 0)
            return fs_err_set(err, FS_EIO, "timerfd: %s", strerror(errno));
    }
    return FS_OK;
}

/* SIGTERM with a run going on: end the child, bounded. Its transaction, if
 * any, rolls back; receipts already saved stay. */
static void
stop_child(struct daemon *d)
{
    int64_t deadline;
    int status;

    if (!d->child)
        return;
    kill(d->child, SIGTERM);
    deadline = clock_ms(CLOCK_MONOTONIC) + CHILD_TERM_MS;
    while (waitpid(d->child, &status, WNOHANG) == 0) {
        if (clock_ms(CLOCK_MONOTONIC) > deadline) {
            kill(d->child, SIGKILL);
            while (waitpid(d->child, &status, 0) < 0 && errno == EINTR) {
            }
            break;
        }
        pause_ms(5);
    }
    FS_LOG(d->log, FS_LOG_INFO, "the push under way was ended; the next start resumes it");
    d->child = 0;
    close(d->child_fd);
    d->child_fd = -1;
}

static void
teardown(struct daemon *d)
{
    if (d->sig_fd >= 0)
        close(d->sig_fd);
    if (d->ino_fd >= 0)
        close(d->ino_fd);
    if (d->nl_fd >= 0)
        close(d->nl_fd);
    if (d->timer_fd >= 0)
        close(d->timer_fd);
    if (d->wd_fd >= 0)
        close(d->wd_fd);
    if (d->child_fd >= 0)
        close(d->child_fd);
    if (d->lock_fd >= 0) {
        /* No stale pid for the next reader. */
        if (d->locked && ftruncate(d->lock_fd, 0) != 0) {
            /* The lock itself goes with the descriptor. */
        }
        close(d->lock_fd);
    }
    sigprocmask(SIG_SETMASK, &d->old_mask, NULL);
    free(d->lock_path);
    free(d->state_path);
    free(d->state_tmp);
}

enum fs_rc
sync_daemon_run(const struct sync_daemon_opts *o, struct fs_err *err)
{
    struct daemon d;
    enum fs_rc rc;
    uint64_t seed;
    int fatal = 0;

    memset(&d, 0, sizeof d);
    d.o = o;
    d.log = o->log;
    d.lock_fd = d.sig_fd = d.ino_fd = d.nl_fd = d.timer_fd = d.wd_fd = d.child_fd = -1;
    d.check_at = -1;
    d.reach = -1;
    d.announced = -1;
    d.phase = P_STARTING;
    d.lock_path = path_in(o->home, SYNC_DAEMON_LOCK_NAME);
    d.state_path = path_in(o->home, SYNC_DAEMON_STATE_NAME);
    d.state_tmp = path_in(o->home, SYNC_DAEMON_STATE_NAME ".tmp");
    if (!d.lock_path || !d.state_path || !d.state_tmp) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    if (o->has_seed)
        seed = o->seed;
    else
        seed = (uint64_t)clock_ms(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32) ^
               (uint64_t)clock_ms(CLOCK_MONOTONIC) * 0x9e3779b97f4a7c15ull;
    sync_backoff_init(&d.bo, DEFAULT_BASE_MS, DEFAULT_MAX_MS, seed);
    rc = setup(&d, err);
    if (rc)
        goto out;
    d.sleep_gap_ms = clock_ms(CLOCK_BOOTTIME) - clock_ms(CLOCK_MONOTONIC);
    FS_LOG(d.log, FS_LOG_INFO, "watching %s (pid %ld)", o->home, (long)getpid());
    schedule(&d, 0);
    publish(&d, "READY=1");
    while (!d.stop) {
        struct pollfd p[7];
        nfds_t n = 0;
        int i_sig, i_ino, i_tim, i_nl = -1, i_wd = -1, i_child = -1, i_net = -1, r;

        i_sig = (int)n;
        p[n++] = (struct pollfd){d.sig_fd, POLLIN, 0};
        i_ino = (int)n;
        p[n++] = (struct pollfd){d.ino_fd, POLLIN, 0};
        i_tim = (int)n;
        p[n++] = (struct pollfd){d.timer_fd, POLLIN, 0};
        if (d.nl_fd >= 0) {
            i_nl = (int)n;
            p[n++] = (struct pollfd){d.nl_fd, POLLIN, 0};
        }
        if (d.wd_fd >= 0) {
            i_wd = (int)n;
            p[n++] = (struct pollfd){d.wd_fd, POLLIN, 0};
        }
        if (d.child_fd >= 0) {
            i_child = (int)n;
            p[n++] = (struct pollfd){d.child_fd, POLLIN, 0};
        }
        if (o->net.fd >= 0) {
            i_net = (int)n;
            p[n++] = (struct pollfd){o->net.fd, o->net.events(o->net.ctx), 0};
        }
        /* No timeout: every wake-up is a kernel event. */
        r = poll(p, n, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = fs_err_set(err, FS_EIO, "poll: %s", strerror(errno));
            fatal = 1;
            break;
        }
        check_resume(&d);
        if (p[i_sig].revents && on_signal(&d)) {
            d.stop = 1;
            break;
        }
        if (i_wd >= 0 && p[i_wd].revents) {
            uint64_t ticks;

            if (read(d.wd_fd, &ticks, sizeof ticks) > 0)
                notify(&d, "WATCHDOG=1");
        }
        if (i_child >= 0 && p[i_child].revents)
            child_read(&d);
        if (p[i_ino].revents && on_inotify(&d) != 0) {
            rc = fs_err_set(err, FS_EIO, "the store's folder %s was removed or moved", o->home);
            fatal = 1;
            break;
        }
        if (i_nl >= 0 && p[i_nl].revents)
            on_netlink(&d);
        if (i_net >= 0 && p[i_net].revents && o->net.process(o->net.ctx) > 0)
            network_up(&d, "NetworkManager reports a connection");
        if (p[i_tim].revents) {
            uint64_t ticks;

            if (read(d.timer_fd, &ticks, sizeof ticks) > 0 && d.check_at >= 0 &&
                clock_ms(CLOCK_BOOTTIME) >= d.check_at) {
                d.check_at = -1;
                if (d.child)
                    d.dirty = 1;
                else
                    start_run(&d);
            }
        }
    }
    notify(&d, "STOPPING=1\nSTATUS=stopping");
    stop_child(&d);
    d.stop = 1;
    d.check_at = -1;
    publish(&d, NULL);
    if (!fatal)
        rc = FS_OK;
out:
    teardown(&d);
    return rc;
}
