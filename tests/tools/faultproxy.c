/* faultproxy: a single-threaded TCP relay for the end-to-end and reliability tests. It injects
 * cuts (an RST after a chosen byte count), stalls and latency, decided per connection by a seeded
 * PRNG so that a run can be replayed. It is a test tool, not a product: it listens on 127.0.0.1
 * only, trusts its command line and uses nothing but libc. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/sockios.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Bytes buffered per direction of a connection; a power of two (ring arithmetic). Memory is
 * two of these per connection, whatever the amount relayed. */
#define BUF_BYTES ((size_t)64 * 1024)
/* Chunks awaiting --delay-ms per direction; reading stops while they are all in flight. */
#define MARKS_MAX 64
/* Read/write rounds per connection before giving the other connections a turn. */
#define PUMP_ROUNDS 16
/* How long a cut waits for the peer to acknowledge the bytes before the RST. */
#define CUT_DRAIN_MS 2000
/* How often a pending cut looks at the send queue again. */
#define CUT_POLL_MS 1
/* Pause after accept() ran out of descriptors or memory. */
#define ACCEPT_PAUSE_MS  100
#define MAX_CONNS_LIMIT  4096
#define MS_LIMIT         ((uint64_t)86400000) /* one day: keeps now + ms far from overflow */
#define NEVER            UINT64_MAX
#define STATS_LINE_BYTES 192

enum { CLIENT = 0, SERVER = 1 };
/* A direction is named by its source: UP reads the client, DOWN reads the server. */
enum { UP = CLIENT, DOWN = SERVER };

enum conn_state { CONNECTING, RELAYING, CUTTING };

enum step { STEP_OK, STEP_DONE, STEP_ABORT, STEP_CUT };

struct range {
    uint64_t min;
    uint64_t max;
    bool set;
};

struct config {
    struct sockaddr_storage target;
    socklen_t target_len;
    bool have_target;
    unsigned listen_port;
    uint64_t seed;
    struct range cut_up;
    struct range cut_down;
    struct range stall_at;
    double cut_prob;
    double stall_prob;
    uint64_t stall_ms;
    uint64_t delay_ms;
    const char *stats_path;
    unsigned max_conns;
    bool verbose;
};

struct stats {
    uint64_t conns;
    uint64_t cuts;
    uint64_t bytes_up;
    uint64_t bytes_down;
};

/* A chunk read at one time, forwardable once ready_ms has passed (--delay-ms). */
struct mark {
    uint64_t end; /* absolute stream offset just past the chunk */
    uint64_t ready_ms;
};

/* One direction: a ring buffer addressed by absolute stream offsets. */
struct pipe_dir {
    unsigned char *buf;
    uint64_t in;    /* bytes read from the source so far */
    uint64_t out;   /* bytes written to the destination so far */
    uint64_t limit; /* cut once out reaches it; NEVER: no cut in this direction */
    struct mark marks[MARKS_MAX];
    unsigned mhead;
    unsigned mcount;
    bool eof;  /* the source said EOF */
    bool done; /* EOF seen, everything written, destination shut for writing */
};

struct conn {
    uint64_t id; /* accept order, from 0: the PRNG stream of this connection */
    int fd[2];   /* [CLIENT], [SERVER] */
    enum conn_state state;
    bool connect_seen; /* poll reported the server socket while CONNECTING */
    bool rd_ok[2];     /* the fd is not known to have nothing to read */
    bool wr_ok[2];     /* the fd is not known to have a full send buffer */
    struct pipe_dir dir[2];
    uint64_t stall_at;    /* stall when up + down bytes written reach it; NEVER: no stall */
    uint64_t stall_until; /* monotonic ms; 0 before any stall */
    int cut_dir;          /* the direction whose limit was reached, while CUTTING */
    uint64_t cut_deadline;
};

struct proxy {
    struct config cfg;
    struct stats st;
    int lfd;
    struct conn **conns;
    unsigned nconns;
    struct pollfd *pfds;
    uint64_t next_id;
    uint64_t accept_pause_until;
    bool stats_warned;
};

static volatile sig_atomic_t stop_signal;

static void
on_stop_signal(int sig)
{
    stop_signal = sig;
}

static uint64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
wake_at(uint64_t *wake, uint64_t t)
{
    if (t < *wake) {
        *wake = t;
    }
}

/* splitmix64: tiny, well mixed, and the same on every platform, so a seed replays anywhere. */
static uint64_t
rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [min, max], without modulo bias. */
static uint64_t
rng_range(uint64_t *state, uint64_t min, uint64_t max)
{
    uint64_t span = max - min + 1;
    uint64_t cap, r;

    if (span == 0) {
        return rng_next(state); /* the whole 64-bit range */
    }
    cap = UINT64_MAX - UINT64_MAX % span;
    do {
        r = rng_next(state);
    } while (r >= cap);
    return min + r % span;
}

/* Uniform in [0, 1). */
static double
rng_unit(uint64_t *state)
{
    return (double)(rng_next(state) >> 11) * 0x1.0p-53;
}

/* ---- command line ---------------------------------------------------------------------- */

enum opt_id {
    OPT_TARGET,
    OPT_LISTEN_PORT,
    OPT_SEED,
    OPT_CUT_UP,
    OPT_CUT_DOWN,
    OPT_CUT_PROB,
    OPT_STALL_MS,
    OPT_STALL_PROB,
    OPT_STALL_AT,
    OPT_DELAY_MS,
    OPT_STATS,
    OPT_MAX_CONNS,
    OPT_VERBOSE,
    OPT_HELP,
    OPT_COUNT
};

/* The one table of options: parsing, defaults and --help all come from it. */
static const struct opt_def {
    const char *name;
    const char *arg; /* NULL: a flag without value */
    const char *dflt;
    const char *help;
} opt_defs[OPT_COUNT] = {
    [OPT_TARGET] = {"target", "HOST:PORT", NULL, "relay to this address (required)"},
    [OPT_LISTEN_PORT] = {"listen-port", "N", "0", "port on 127.0.0.1; 0 picks a free one"},
    [OPT_SEED] = {"seed", "N", "1", "PRNG seed; same seed and connection order, same faults"},
    [OPT_CUT_UP] = {"cut-up", "MIN:MAX", NULL,
                    "RST after a uniform [MIN,MAX] bytes client->server (k, m suffixes)"},
    [OPT_CUT_DOWN] = {"cut-down", "MIN:MAX", NULL, "the same for server->client"},
    [OPT_CUT_PROB] = {"cut-prob", "P", "1.0", "probability that a connection is cut at all"},
    [OPT_STALL_MS] = {"stall-ms", "MS", "0", "length of a stall (sockets stay open)"},
    [OPT_STALL_PROB] = {"stall-prob", "P", "1.0", "probability that a connection stalls once"},
    [OPT_STALL_AT] = {"stall-at", "MIN:MAX", "0:4k",
                      "the stall starts after a uniform [MIN,MAX] bytes, both directions"},
    [OPT_DELAY_MS] = {"delay-ms", "MS", "0", "latency added to every chunk, each direction"},
    [OPT_STATS] = {"stats", "FILE", NULL, "write counters as one JSON line (tmp + rename)"},
    [OPT_MAX_CONNS] = {"max-conns", "N", "256", "simultaneous connections; more wait in backlog"},
    [OPT_VERBOSE] = {"verbose", NULL, NULL, "one line per connection on stderr"},
    [OPT_HELP] = {"help", NULL, NULL, "this text"},
};

static void
usage(FILE *f)
{
    char left[64];

    fputs("usage: faultproxy --target HOST:PORT [options]\n"
          "Prints \"port N\" on stdout, relays until SIGTERM or SIGINT, then exits 0.\n\n",
          f);
    for (int i = 0; i < OPT_COUNT; i++) {
        const struct opt_def *o = &opt_defs[i];

        snprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %-24s %s", left, o->help);
        if (o->dflt) {
            fprintf(f, " [%s]", o->dflt);
        }
        fputc('\n', f);
    }
}

/* A byte count: decimal digits, then optionally k/K (KiB), m/M (MiB) or g/G (GiB). */
static int
parse_size(const char *s, uint64_t *out /* OUT */)
{
    unsigned long long v;
    uint64_t mult = 1;
    char *end;

    if (*s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno) {
        return -1;
    }
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mult = 1024;
        end++;
        break;
    case 'm':
    case 'M':
        mult = 1024 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        mult = 1024 * 1024 * 1024;
        end++;
        break;
    default:
        return -1;
    }
    if (*end != '\0' || v > UINT64_MAX / mult) {
        return -1;
    }
    *out = (uint64_t)v * mult;
    return 0;
}

static int
parse_uint(const char *s, uint64_t max, uint64_t *out /* OUT */)
{
    unsigned long long v;
    char *end;

    if (*s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end != '\0' || v > max) {
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

static int
parse_range(const char *s, struct range *r /* OUT */)
{
    char buf[64];
    char *colon;

    if (strlen(s) >= sizeof(buf)) {
        return -1;
    }
    memcpy(buf, s, strlen(s) + 1);
    colon = strchr(buf, ':');
    if (colon) {
        *colon = '\0';
    }
    /* N alone means N:N */
    if (parse_size(buf, &r->min) || parse_size(colon ? colon + 1 : buf, &r->max) ||
        r->min > r->max) {
        return -1;
    }
    r->set = true;
    return 0;
}

static int
parse_prob(const char *s, double *out /* OUT */)
{
    double v;
    char *end;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < 0.0 || v > 1.0) {
        return -1;
    }
    *out = v;
    return 0;
}

/* HOST:PORT or [V6HOST]:PORT, resolved once at start. */
static int
parse_target(const char *s, struct config *cfg)
{
    char host[256];
    const char *colon = strrchr(s, ':');
    const char *port;
    struct addrinfo hints, *res = NULL;
    size_t hlen;
    int gai;

    if (!colon || colon == s || colon[1] == '\0') {
        return -1;
    }
    port = colon + 1;
    hlen = (size_t)(colon - s);
    if (s[0] == '[' && hlen >= 2 && s[hlen - 1] == ']') {
        s++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        return -1;
    }
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        fprintf(stderr, "faultproxy: cannot resolve %s: %s\n", host, gai_strerror(gai));
        return -1;
    }
    memcpy(&cfg->target, res->ai_addr, res->ai_addrlen);
    cfg->target_len = res->ai_addrlen;
    cfg->have_target = true;
    freeaddrinfo(res);
    return 0;
}

static int
apply_opt(struct config *cfg, enum opt_id id, const char *v)
{
    uint64_t n;

    switch (id) {
    case OPT_TARGET:
        return parse_target(v, cfg);
    case OPT_LISTEN_PORT:
        if (parse_uint(v, 65535, &n)) {
            return -1;
        }
        cfg->listen_port = (unsigned)n;
        return 0;
    case OPT_SEED:
        return parse_uint(v, UINT64_MAX, &cfg->seed);
    case OPT_CUT_UP:
        return parse_range(v, &cfg->cut_up);
    case OPT_CUT_DOWN:
        return parse_range(v, &cfg->cut_down);
    case OPT_CUT_PROB:
        return parse_prob(v, &cfg->cut_prob);
    case OPT_STALL_MS:
        return parse_uint(v, MS_LIMIT, &cfg->stall_ms);
    case OPT_STALL_PROB:
        return parse_prob(v, &cfg->stall_prob);
    case OPT_STALL_AT:
        return parse_range(v, &cfg->stall_at);
    case OPT_DELAY_MS:
        return parse_uint(v, MS_LIMIT, &cfg->delay_ms);
    case OPT_STATS:
        cfg->stats_path = v;
        return 0;
    case OPT_MAX_CONNS:
        if (parse_uint(v, MAX_CONNS_LIMIT, &n) || n == 0) {
            return -1;
        }
        cfg->max_conns = (unsigned)n;
        return 0;
    case OPT_VERBOSE:
        cfg->verbose = true;
        return 0;
    case OPT_HELP:
    case OPT_COUNT:
        break;
    }
    return -1;
}

/* Returns 0 to run, 1 when --help was printed, -1 on a usage error (already reported). */
static int
parse_args(int argc, char **argv, struct config *cfg /* OUT */)
{
    memset(cfg, 0, sizeof(*cfg));
    for (int i = 0; i < OPT_COUNT; i++) {
        if (opt_defs[i].dflt && apply_opt(cfg, (enum opt_id)i, opt_defs[i].dflt)) {
            fprintf(stderr, "faultproxy: bad default for --%s\n", opt_defs[i].name);
            return -1;
        }
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        const char *eq, *val = NULL;
        size_t nlen;
        int id = -1;

        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "faultproxy: unexpected argument '%s'\n", arg);
            return -1;
        }
        arg += 2;
        eq = strchr(arg, '=');
        nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        for (int i = 0; i < OPT_COUNT; i++) {
            if (strlen(opt_defs[i].name) == nlen && strncmp(opt_defs[i].name, arg, nlen) == 0) {
                id = i;
                break;
            }
        }
        if (id < 0) {
            fprintf(stderr, "faultproxy: unknown option '%s'\n", argv[a]);
            return -1;
        }
        if (id == OPT_HELP) {
            usage(stdout);
            return 1;
        }
        if (opt_defs[id].arg) {
            if (eq) {
                val = eq + 1;
            } else if (a + 1 < argc) {
                val = argv[++a];
            } else {
                fprintf(stderr, "faultproxy: --%s needs %s\n", opt_defs[id].name, opt_defs[id].arg);
                return -1;
            }
        } else if (eq) {
            fprintf(stderr, "faultproxy: --%s takes no value\n", opt_defs[id].name);
            return -1;
        }
        if (apply_opt(cfg, (enum opt_id)id, val)) {
            fprintf(stderr, "faultproxy: bad value for --%s: '%s' (expected %s)\n",
                    opt_defs[id].name, val ? val : "", opt_defs[id].arg);
            return -1;
        }
    }
    if (!cfg->have_target) {
        fputs("faultproxy: --target HOST:PORT is required\n", stderr);
        return -1;
    }
    return 0;
}

/* ---- stats ------------------------------------------------------------------------------ */

/* Written to a temporary file and renamed over FILE, so a reader sees a whole line or the
 * previous one. Failures are reported once and do not stop the relay. */
static void
stats_write(struct proxy *px)
{
    char line[STATS_LINE_BYTES];
    char tmp[PATH_MAX];
    const char *what = "write";
    size_t len, off = 0;
    int n, fd = -1;

    if (!px->cfg.stats_path) {
        return;
    }
    n = snprintf(line, sizeof(line),
                 "{\"conns\":%" PRIu64 ",\"cuts\":%" PRIu64 ",\"bytes_up\":%" PRIu64
                 ",\"bytes_down\":%" PRIu64 "}\n",
                 px->st.conns, px->st.cuts, px->st.bytes_up, px->st.bytes_down);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        goto fail;
    }
    len = (size_t)n;
    n = snprintf(tmp, sizeof(tmp), "%s.tmp", px->cfg.stats_path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        what = "name";
        goto fail;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        what = "open";
        goto fail;
    }
    while (off < len) {
        ssize_t w = write(fd, line + off, len - off);

        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            goto fail;
        }
        off += (size_t)w;
    }
    if (close(fd)) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, px->cfg.stats_path)) {
        what = "rename";
        goto fail;
    }
    return;
fail:
    if (fd >= 0) {
        close(fd);
    }
    if (!px->stats_warned) {
        fprintf(stderr, "faultproxy: stats %s %s: %s\n", what, px->cfg.stats_path, strerror(errno));
        px->stats_warned = true;
    }
}

/* ---- one connection --------------------------------------------------------------------- */

static void
set_rst_on_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void
set_nodelay(int fd)
{
    int one = 1;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Bytes that may be read into the buffer now. */
static size_t
dir_room(const struct conn *c, int d, uint64_t delay_ms)
{
    const struct pipe_dir *p = &c->dir[d];
    uint64_t room = BUF_BYTES - (p->in - p->out);

    if (p->eof || (delay_ms && p->mcount == MARKS_MAX)) {
        return 0;
    }
    if (p->limit != NEVER && p->limit - p->in < room) {
        room = p->limit - p->in; /* never consume what the cut will not forward */
    }
    return (size_t)room;
}

/* Bytes that may be written to the destination now; the next time more become ready goes to
 * *wake. */
static size_t
dir_ready(const struct conn *c, int d, uint64_t delay_ms, uint64_t now, uint64_t *wake)
{
    const struct pipe_dir *p = &c->dir[d];
    uint64_t end = p->in;
    uint64_t n;

    if (delay_ms) {
        end = p->out;
        for (unsigned k = 0; k < p->mcount; k++) {
            const struct mark *m = &p->marks[(p->mhead + k) % MARKS_MAX];

            if (m->ready_ms > now) {
                wake_at(wake, m->ready_ms);
                break;
            }
            end = m->end;
        }
    }
    n = end - p->out;
    if (c->stall_at != NEVER) {
        uint64_t total = c->dir[UP].out + c->dir[DOWN].out;
        uint64_t allowed = c->stall_at > total ? c->stall_at - total : 0;

        if (n > allowed) {
            n = allowed; /* stop exactly at the stall point */
        }
    }
    return (size_t)n;
}

/* Fill iov with the ring segments [pos, pos + n); returns the number of segments. */
static int
ring_iov(unsigned char *buf, uint64_t pos, size_t n, struct iovec iov[2])
{
    size_t at = (size_t)(pos % BUF_BYTES);
    size_t first = BUF_BYTES - at < n ? BUF_BYTES - at : n;

    iov[0].iov_base = buf + at;
    iov[0].iov_len = first;
    if (first == n) {
        return 1;
    }
    iov[1].iov_base = buf;
    iov[1].iov_len = n - first;
    return 2;
}

/* One read from the source of direction d: -1 error, 0 nothing happened, 1 progress. */
static int
dir_read(const struct config *cfg, struct conn *c, int d, uint64_t now)
{
    struct pipe_dir *p = &c->dir[d];
    size_t room = dir_room(c, d, cfg->delay_ms);
    struct iovec iov[2];
    ssize_t n;

    if (room == 0 || !c->rd_ok[d]) {
        return 0;
    }
    do {
        n = readv(c->fd[d], iov, ring_iov(p->buf, p->in, room, iov));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->rd_ok[d] = false;
            return 0;
        }
        return -1;
    }
    if (n == 0) {
        p->eof = true;
        return 1;
    }
    if ((size_t)n < room) {
        c->rd_ok[d] = false; /* drained for now; poll says when more arrives */
    }
    p->in += (uint64_t)n;
    if (cfg->delay_ms) {
        struct mark *m = &p->marks[(p->mhead + p->mcount) % MARKS_MAX];

        m->end = p->in;
        m->ready_ms = now + cfg->delay_ms;
        p->mcount++;
    }
    return 1;
}

/* One write to the destination of direction d: -1 error, 0 nothing happened, 1 progress. */
static int
dir_write(struct proxy *px, struct conn *c, int d, uint64_t now, uint64_t *wake)
{
    struct pipe_dir *p = &c->dir[d];
    int dst = 1 - d;
    size_t want = dir_ready(c, d, px->cfg.delay_ms, now, wake);
    struct iovec iov[2];
    ssize_t n;

    if (want == 0 || !c->wr_ok[dst]) {
        return 0;
    }
    do {
        n = writev(c->fd[dst], iov, ring_iov(p->buf, p->out, want, iov));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->wr_ok[dst] = false;
            return 0;
        }
        return -1;
    }
    if ((size_t)n < want) {
        c->wr_ok[dst] = false; /* send buffer full; poll says when there is room */
    }
    p->out += (uint64_t)n;
    if (d == UP) {
        px->st.bytes_up += (uint64_t)n;
    } else {
        px->st.bytes_down += (uint64_t)n;
    }
    while (p->mcount && p->marks[p->mhead].end <= p->out) {
        p->mhead = (p->mhead + 1) % MARKS_MAX;
        p->mcount--;
    }
    return n > 0;
}

static int
outq_bytes(int fd)
{
    int n = 0;

    if (ioctl(fd, SIOCOUTQ, &n)) {
        return 0;
    }
    return n;
}

/* A cut waits until the peer acknowledged every forwarded byte of the cut direction: an RST
 * discards whatever is still in our send queue, and the count must be exact. */
static enum step
cut_progress(struct conn *c, uint64_t now, uint64_t *wake)
{
    if (now >= c->cut_deadline || outq_bytes(c->fd[1 - c->cut_dir]) == 0) {
        return STEP_CUT;
    }
    wake_at(wake, now + CUT_POLL_MS);
    return STEP_OK;
}

/* Faults, EOF propagation and the end of the connection, checked between I/O rounds. */
static enum step
conn_check(struct proxy *px, struct conn *c, uint64_t now, uint64_t *wake)
{
    for (int d = 0; d < 2; d++) {
        if (c->dir[d].limit != NEVER && c->dir[d].out >= c->dir[d].limit) {
            c->state = CUTTING;
            c->cut_dir = d;
            c->cut_deadline = now + CUT_DRAIN_MS;
            return cut_progress(c, now, wake);
        }
    }
    if (c->stall_at != NEVER && c->dir[UP].out + c->dir[DOWN].out >= c->stall_at) {
        c->stall_at = NEVER;
        c->stall_until = now + px->cfg.stall_ms;
        if (px->cfg.verbose) {
            fprintf(stderr, "faultproxy: conn %" PRIu64 ": stall %" PRIu64 " ms\n", c->id,
                    px->cfg.stall_ms);
        }
        return STEP_OK;
    }
    for (int d = 0; d < 2; d++) {
        struct pipe_dir *p = &c->dir[d];

        if (!p->eof || p->done || p->out != p->in) {
            continue;
        }
        if (c->dir[1 - d].done) {
            return STEP_DONE; /* the close itself carries the last FIN */
        }
        if (shutdown(c->fd[1 - d], SHUT_WR) && errno != ENOTCONN) {
            return STEP_ABORT;
        }
        p->done = true;
    }
    return STEP_OK;
}

static enum step
conn_step(struct proxy *px, struct conn *c, uint64_t now, uint64_t *wake)
{
    enum step st;

    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);

        if (!c->connect_seen) {
            return STEP_OK;
        }
        if (getsockopt(c->fd[SERVER], SOL_SOCKET, SO_ERROR, &err, &len) || err) {
            if (px->cfg.verbose) {
                fprintf(stderr, "faultproxy: conn %" PRIu64 ": connect: %s\n", c->id,
                        strerror(err ? err : errno));
            }
            return STEP_ABORT;
        }
        c->state = RELAYING;
        c->wr_ok[CLIENT] = c->wr_ok[SERVER] = true;
    }
    if (c->state == CUTTING) {
        return cut_progress(c, now, wake);
    }
    for (int round = 0; round < PUMP_ROUNDS; round++) {
        bool progress = false;

        if (c->stall_until > now) {
            wake_at(wake, c->stall_until);
            return STEP_OK;
        }
        st = conn_check(px, c, now, wake);
        if (st != STEP_OK || c->state != RELAYING || c->stall_until > now) {
            if (st == STEP_OK && c->stall_until > now) {
                wake_at(wake, c->stall_until);
            }
            return st;
        }
        for (int d = 0; d < 2; d++) {
            int r = dir_read(&px->cfg, c, d, now);

            if (r < 0) {
                return STEP_ABORT;
            }
            progress |= r > 0;
            r = dir_write(px, c, d, now, wake);
            if (r < 0) {
                return STEP_ABORT;
            }
            progress |= r > 0;
        }
        if (!progress) {
            break;
        }
    }
    /* Rounds used up with work left: conn_events asks for an immediate poll. A last check
     * settles EOFs and cuts that the final round produced. */
    return conn_check(px, c, now, wake);
}

/* What to poll for on each socket; fds wanting nothing get -1 so that a hang-up we cannot act
 * on yet does not spin the loop. */
static void
conn_events(const struct proxy *px, const struct conn *c, uint64_t now, struct pollfd pfd[2],
            uint64_t *wake)
{
    short ev[2] = {0, 0};

    if (c->state == CONNECTING) {
        ev[SERVER] = POLLOUT;
    } else if (c->state == RELAYING && c->stall_until <= now) {
        for (int d = 0; d < 2; d++) {
            uint64_t ignored = NEVER;

            if (dir_room(c, d, px->cfg.delay_ms)) {
                if (c->rd_ok[d]) {
                    wake_at(wake, now); /* work left over from the round limit */
                } else {
                    ev[d] |= POLLIN;
                }
            }
            if (dir_ready(c, d, px->cfg.delay_ms, now, &ignored)) {
                if (c->wr_ok[1 - d]) {
                    wake_at(wake, now);
                } else {
                    ev[1 - d] |= POLLOUT;
                }
            }
        }
    }
    for (int i = 0; i < 2; i++) {
        pfd[i].fd = ev[i] ? c->fd[i] : -1;
        pfd[i].events = ev[i];
        pfd[i].revents = 0;
    }
}

static void
conn_revents(struct conn *c, const struct pollfd pfd[2])
{
    for (int i = 0; i < 2; i++) {
        short r = pfd[i].revents;

        if (c->state == CONNECTING && i == SERVER && r) {
            c->connect_seen = true;
        }
        if (r & (POLLIN | POLLHUP | POLLERR)) {
            c->rd_ok[i] = true;
        }
        if (r & (POLLOUT | POLLHUP | POLLERR)) {
            c->wr_ok[i] = true;
        }
    }
}

static void
conn_free(struct conn *c)
{
    if (!c) {
        return;
    }
    for (int i = 0; i < 2; i++) {
        if (c->fd[i] >= 0) {
            close(c->fd[i]);
        }
        free(c->dir[i].buf);
    }
    free(c);
}

/* Draws the faults of connection `id`. Every draw happens whatever the options, in a fixed
 * order, so that enabling stalls does not move the cut points of a seed. */
static void
conn_decide(const struct config *cfg, struct conn *c)
{
    uint64_t state = cfg->seed ^ (c->id * UINT64_C(0xd1b54a32d192ed03));
    bool cut, stall;
    uint64_t up, down, at;

    (void)rng_next(&state);
    cut = rng_unit(&state) < cfg->cut_prob;
    up = rng_range(&state, cfg->cut_up.min, cfg->cut_up.max);
    down = rng_range(&state, cfg->cut_down.min, cfg->cut_down.max);
    stall = rng_unit(&state) < cfg->stall_prob;
    at = rng_range(&state, cfg->stall_at.min, cfg->stall_at.max);

    c->dir[UP].limit = cut && cfg->cut_up.set ? up : NEVER;
    c->dir[DOWN].limit = cut && cfg->cut_down.set ? down : NEVER;
    c->stall_at = stall && cfg->stall_ms ? at : NEVER;
    if (cfg->verbose) {
        fprintf(stderr,
                "faultproxy: conn %" PRIu64 ": cut_up=%" PRId64 " cut_down=%" PRId64
                " stall_at=%" PRId64 "\n",
                c->id, c->dir[UP].limit == NEVER ? INT64_C(-1) : (int64_t)c->dir[UP].limit,
                c->dir[DOWN].limit == NEVER ? INT64_C(-1) : (int64_t)c->dir[DOWN].limit,
                c->stall_at == NEVER ? INT64_C(-1) : (int64_t)c->stall_at);
    }
}

/* Ends connection i: the stats reach the file before the client sees the close, so a test
 * that saw the close may read them at once. */
static void
conn_finish(struct proxy *px, unsigned i, enum step how)
{
    struct conn *c = px->conns[i];

    if (how == STEP_CUT) {
        px->st.cuts++;
    }
    stats_write(px);
    if (px->cfg.verbose) {
        static const char *const names[] = {"open", "done", "error", "cut"};

        fprintf(stderr, "faultproxy: conn %" PRIu64 ": %s, up %" PRIu64 " down %" PRIu64 "\n",
                c->id, names[how], c->dir[UP].out, c->dir[DOWN].out);
    }
    if (how != STEP_DONE) {
        for (int k = 0; k < 2; k++) {
            if (c->fd[k] >= 0) {
                set_rst_on_close(c->fd[k]);
            }
        }
    }
    conn_free(c);
    px->conns[i] = px->conns[--px->nconns];
    px->conns[px->nconns] = NULL;
}

/* Takes ownership of the accepted descriptor cfd. */
static void
conn_open(struct proxy *px, int cfd)
{
    struct conn *c = calloc(1, sizeof(*c));
    int rc;

    px->st.conns++;
    if (!c) {
        set_rst_on_close(cfd);
        close(cfd);
        stats_write(px);
        return;
    }
    c->id = px->next_id++;
    c->fd[CLIENT] = cfd;
    c->fd[SERVER] = -1;
    c->state = CONNECTING;
    px->conns[px->nconns++] = c;
    conn_decide(&px->cfg, c);
    c->dir[UP].buf = malloc(BUF_BYTES);
    c->dir[DOWN].buf = malloc(BUF_BYTES);
    if (!c->dir[UP].buf || !c->dir[DOWN].buf) {
        conn_finish(px, px->nconns - 1, STEP_ABORT);
        return;
    }
    set_nodelay(cfd);
    c->fd[SERVER] = socket(px->cfg.target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd[SERVER] < 0) {
        fprintf(stderr, "faultproxy: socket: %s\n", strerror(errno));
        conn_finish(px, px->nconns - 1, STEP_ABORT);
        return;
    }
    set_nodelay(c->fd[SERVER]);
    do {
        rc = connect(c->fd[SERVER], (const struct sockaddr *)&px->cfg.target, px->cfg.target_len);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) {
        c->connect_seen = true;
    } else if (errno != EINPROGRESS) {
        if (px->cfg.verbose) {
            fprintf(stderr, "faultproxy: conn %" PRIu64 ": connect: %s\n", c->id, strerror(errno));
        }
        conn_finish(px, px->nconns - 1, STEP_ABORT);
    }
}

static void
accept_some(struct proxy *px, uint64_t now)
{
    while (px->nconns < px->cfg.max_conns) {
        int cfd = accept4(px->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (cfd >= 0) {
            conn_open(px, cfd);
            continue;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            continue;
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return;
        default: /* EMFILE, ENFILE, ENOBUFS, ENOMEM: let connections finish first */
            fprintf(stderr, "faultproxy: accept: %s\n", strerror(errno));
            px->accept_pause_until = now + ACCEPT_PAUSE_MS;
            return;
        }
    }
}

/* ---- main loop -------------------------------------------------------------------------- */

static int
listen_local(unsigned port, unsigned *bound /* OUT */)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        goto fail;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, SOMAXCONN) ||
        getsockname(fd, (struct sockaddr *)&sa, &len)) {
        goto fail;
    }
    *bound = ntohs(sa.sin_port);
    return fd;
fail:
    fprintf(stderr, "faultproxy: listen on 127.0.0.1:%u: %s\n", port, strerror(errno));
    if (fd >= 0) {
        close(fd);
    }
    return -1;
}

static int
run(struct proxy *px, const sigset_t *run_mask)
{
    while (!stop_signal) {
        uint64_t now = mono_ms();
        uint64_t wake = NEVER;
        struct timespec ts, *tsp = NULL;
        nfds_t nfds = 1;
        int n;

        for (unsigned i = px->nconns; i-- > 0;) {
            enum step st = conn_step(px, px->conns[i], now, &wake);

            if (st != STEP_OK) {
                conn_finish(px, i, st);
            }
        }
        px->pfds[0].fd = -1;
        px->pfds[0].events = POLLIN;
        px->pfds[0].revents = 0;
        if (px->nconns < px->cfg.max_conns) {
            if (now >= px->accept_pause_until) {
                px->pfds[0].fd = px->lfd;
            } else {
                wake_at(&wake, px->accept_pause_until);
            }
        }
        for (unsigned i = 0; i < px->nconns; i++) {
            conn_events(px, px->conns[i], now, &px->pfds[nfds], &wake);
            nfds += 2;
        }
        if (wake != NEVER) {
            uint64_t ms = wake > now ? wake - now : 0;

            ts.tv_sec = (time_t)(ms / 1000);
            ts.tv_nsec = (long)(ms % 1000) * 1000000L;
            tsp = &ts;
        }
        n = ppoll(px->pfds, nfds, tsp, run_mask);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "faultproxy: poll: %s\n", strerror(errno));
            return -1;
        }
        for (unsigned i = 0; i < px->nconns; i++) {
            conn_revents(px->conns[i], &px->pfds[1 + 2 * i]);
        }
        if (px->pfds[0].revents) {
            accept_some(px, mono_ms());
        }
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct proxy px;
    struct sigaction sa;
    sigset_t block, run_mask;
    unsigned port = 0;
    int rc = 1;

    memset(&px, 0, sizeof(px));
    px.lfd = -1;
    switch (parse_args(argc, argv, &px.cfg)) {
    case 0:
        break;
    case 1:
        return 0;
    default:
        usage(stderr);
        return 2;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* The stop signals are only delivered inside ppoll(): no window between check and wait. */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &run_mask);
    sigdelset(&run_mask, SIGTERM);
    sigdelset(&run_mask, SIGINT);

    px.conns = calloc(px.cfg.max_conns, sizeof(*px.conns));
    px.pfds = calloc(1 + 2 * (size_t)px.cfg.max_conns, sizeof(*px.pfds));
    if (!px.conns || !px.pfds) {
        fputs("faultproxy: out of memory\n", stderr);
        goto out;
    }
    px.lfd = listen_local(px.cfg.listen_port, &port);
    if (px.lfd < 0) {
        goto out;
    }
    stats_write(&px);
    printf("port %u\n", port);
    if (fflush(stdout)) {
        fprintf(stderr, "faultproxy: stdout: %s\n", strerror(errno));
        goto out;
    }
    if (run(&px, &run_mask)) {
        goto out;
    }
    rc = 0;
out:
    while (px.nconns) {
        conn_free(px.conns[--px.nconns]);
    }
    stats_write(&px);
    if (px.lfd >= 0) {
        close(px.lfd);
    }
    free(px.conns);
    free(px.pfds);
    return rc;
}
