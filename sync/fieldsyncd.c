/* fieldsyncd: the background service that pushes a store's new entries when
 * the server answers (DESIGN §9). This file wires the loop of sync_daemon.c to
 * libsystemd (sd_notify, the watchdog, NetworkManager over D-Bus) and to the
 * push of sync_push.c. It never forks into the background: systemd runs it. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync.h"
#include "sync_daemon.h"

#ifdef FS_HAVE_SYSTEMD
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#endif

/* sysexits, as the fieldsync command (DESIGN §8). */
enum { EXIT_USAGE = 64, EXIT_SOFTWARE = 70, EXIT_IOERR = 74, EXIT_TEMPFAIL = 75 };

static void
usage(FILE *out)
{
    fputs("usage: fieldsyncd [--home DIR] [--verbose]\n"
          "\n"
          "Pushes this laptop's new records to the server whenever the store changes, the\n"
          "network comes up, the laptop resumes, or 'fieldsync sync' asks; retries with capped\n"
          "exponential backoff (settings backoff_base_ms, backoff_max_ms). Run it with\n"
          "'systemctl --user enable --now fieldsyncd'. SIGHUP re-reads the settings and\n"
          "retries after an authentication failure; SIGUSR1 syncs now; SIGTERM stops.\n"
          "\n"
          "  --home DIR   the store (else $FIELDSYNC_HOME, else $XDG_DATA_HOME/fieldsync)\n"
          "  --verbose    log every event\n"
          "\n"
          "Exit 75: another fieldsyncd runs for this store.\n",
          out);
}

/* ---- the push, run in the daemon's child process ----------------------------------- */

static void
push_once(void *ctx, struct store *s, struct sync_daemon_push_io *io)
{
    struct sync_http *h = NULL;
    struct sync_run_opts o;
    struct sync_run_result res;
    struct fs_err err = {{0}}, e2;
    char off[32];
    enum fs_rc rc;

    (void)ctx;
    memset(&res, 0, sizeof res);
    memset(&o, 0, sizeof o);
    o.progress = io->progress;
    o.ctx = io->pctx;
    o.warn = io->warn;
    rc = sync_http_for_store(s, &h, &err);
    /* The same run as 'fieldsync sync': entries, corrections, attachments. */
    if (!rc)
        rc = sync_run(s, h, &o, &res, &err);
    if (h) {
        snprintf(off, sizeof off, "%lld", (long long)sync_http_clock_offset_get(h));
        if (store_setting_set(s, "clock_offset_s", off, &e2) != FS_OK) {
            /* Only a hint for the next run. */
        }
    }
    io->result.rc = rc;
    io->result.pushed = res.push.pushed;
    io->result.server_have = res.push.server_have;
    snprintf(io->result.msg, sizeof io->result.msg, "%s", rc ? err.msg : "");
    sync_http_free(h);
}

/* ---- systemd ---------------------------------------------------------------------------- */

static void
notify(void *ctx, const char *text)
{
    (void)ctx;
#ifdef FS_HAVE_SYSTEMD
    if (sd_notify(0, text) < 0) {
        /* Not under systemd, or its socket is gone: nothing to tell. */
    }
#else
    (void)text;
#endif
}

#ifdef FS_HAVE_SYSTEMD
/* NetworkManager's StateChanged signal on the system bus, where there is one:
 * it reports connectivity that rtnetlink cannot see (a captive portal
 * passed, a VPN up). */
struct nm_watch {
    sd_bus *bus;
    sd_bus_slot *slot;
    const struct fs_log *log;
    int up;
};

/* NM_STATE_CONNECTED_SITE and NM_STATE_CONNECTED_GLOBAL. */
#define NM_STATE_CONNECTED_SITE 60

static int
nm_state_changed(sd_bus_message *m, void *ud, sd_bus_error *e)
{
    struct nm_watch *nm = ud;
    uint32_t state = 0;

    (void)e;
    if (sd_bus_message_read(m, "u", &state) < 0)
        return 0;
    FS_LOG(nm->log, FS_LOG_INFO, "NetworkManager: state %u%s", (unsigned)state,
           state >= NM_STATE_CONNECTED_SITE ? " (connected)" : "");
    if (state >= NM_STATE_CONNECTED_SITE)
        nm->up = 1;
    return 0;
}

static short
nm_events(void *ctx)
{
    struct nm_watch *nm = ctx;
    int e = sd_bus_get_events(nm->bus);

    return (short)(e > 0 ? e : POLLIN);
}

static int
nm_process(void *ctx)
{
    struct nm_watch *nm = ctx;
    int i;

    nm->up = 0;
    for (i = 0; i < 64 && sd_bus_process(nm->bus, NULL) > 0; i++) {
    }
    return nm->up;
}

static void
nm_open(struct nm_watch *nm, const struct fs_log *log)
{
    int r;

    memset(nm, 0, sizeof *nm);
    nm->log = log;
    r = sd_bus_open_system(&nm->bus);
    if (r >= 0)
        r = sd_bus_match_signal(nm->bus, &nm->slot, "org.freedesktop.NetworkManager",
                                "/org/freedesktop/NetworkManager", "org.freedesktop.NetworkManager",
                                "StateChanged", nm_state_changed, nm);
    if (r < 0) {
        FS_LOG(log, FS_LOG_DEBUG, "no system bus (%s); following the network with rtnetlink only",
               strerror(-r));
        nm->slot = sd_bus_slot_unref(nm->slot);
        nm->bus = sd_bus_flush_close_unref(nm->bus);
    }
}

static void
nm_close(struct nm_watch *nm)
{
    nm->slot = sd_bus_slot_unref(nm->slot);
    nm->bus = sd_bus_flush_close_unref(nm->bus);
}
#endif

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {{"home", required_argument, NULL, 'H'},
                                             {"verbose", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    struct fs_log logger = {fs_log_stderr, "fieldsyncd", FS_LOG_INFO};
    const struct fs_log *log = &logger;
    struct sync_daemon_opts o;
    struct fs_err err = {{0}};
    const char *home_flag = NULL, *seed;
    char *home = NULL;
    enum fs_rc rc;
    int c, code = 0;
#ifdef FS_HAVE_SYSTEMD
    struct nm_watch nm;
    uint64_t usec = 0;
#endif

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'H':
            home_flag = optarg;
            break;
        case 'v':
            logger.level = FS_LOG_DEBUG;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("fieldsyncd %s\n", FS_VERSION);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (proto_init()) {
        FS_LOG(log, FS_LOG_ERR, "cannot initialise libsodium");
        return EXIT_SOFTWARE;
    }
    rc = store_home_resolve(home_flag, &home, &err);
    if (rc) {
        FS_LOG(log, FS_LOG_ERR, "%s", err.msg);
        return EXIT_USAGE;
    }
    memset(&o, 0, sizeof o);
    o.home = home;
    o.log = log;
    o.push = push_once;
    o.notify = notify;
    o.net.fd = -1;
    seed = getenv("FIELDSYNC_BACKOFF_SEED");
    if (seed && *seed) {
        char *end;

        o.seed = strtoull(seed, &end, 10);
        if (*end) {
            FS_LOG(log, FS_LOG_ERR, "FIELDSYNC_BACKOFF_SEED must be a number");
            free(home);
            return EXIT_USAGE;
        }
        o.has_seed = 1;
    }
#ifdef FS_HAVE_SYSTEMD
    if (sd_watchdog_enabled(0, &usec) > 0)
        o.watchdog_usec = usec;
    nm_open(&nm, log);
    if (nm.bus) {
        o.net.fd = sd_bus_get_fd(nm.bus);
        o.net.events = nm_events;
        o.net.process = nm_process;
        o.net.ctx = &nm;
    }
#endif
    rc = sync_daemon_run(&o, &err);
    if (rc) {
        FS_LOG(log, FS_LOG_ERR, "%s", err.msg);
        code = rc == FS_EEXIST   ? EXIT_TEMPFAIL
               : rc == FS_EIO    ? EXIT_IOERR
               : rc == FS_EUSAGE ? EXIT_USAGE
                                 : EXIT_SOFTWARE;
    }
#ifdef FS_HAVE_SYSTEMD
    nm_close(&nm);
#endif
    free(home);
    return code;
}
