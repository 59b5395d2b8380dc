/* fieldsync-server: serve the HTTP API, and the operator's admin commands.
 * Every command takes --data DIR (SQLite) or --db URL, and refuses to run as
 * another user than the owner of the data folder. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "proto_auth.h"
#include "proto_batch.h"
#include "proto_content.h"
#include "proto_entry.h"
#include "srv.h"

enum { EX_OK = 0, EX_USAGE = 64, EX_DATAERR = 65, EX_INTERNAL = 70, EX_IO = 74 };

static int
exit_code(enum fs_rc rc)
{
    switch (rc) {
    case FS_OK:
        return EX_OK;
    case FS_EUSAGE:
        return EX_USAGE;
    case FS_EINVAL:
    case FS_ENOTFOUND:
    case FS_ECORRUPT:
    case FS_EEXIST:
    case FS_ECONFLICT:
    case FS_ETOOBIG:
        return EX_DATAERR;
    case FS_EIO:
    case FS_EAGAIN:
        return EX_IO;
    case FS_EAUTH:
        return 77;
    default:
        return EX_INTERNAL;
    }
}

static int
fail(enum fs_rc rc, const struct fs_err *err)
{
    fprintf(stderr, "fieldsync-server: %s\n", err->msg[0] ? err->msg : fs_strerror(rc));
    return exit_code(rc);
}

static int
usage(void)
{
    fputs("usage: fieldsync-server COMMAND (--data DIR | --db URL) [options]\n"
          "\n"
          "  init                                  make the database, folders and server key\n"
          "  serve --listen HOST:PORT [--metrics-listen HOST:PORT]\n"
          "        [--tls-cert F --tls-key F] [--trusted-proxy ADDR]... [--ready-file F]\n"
          "        [--threads N] [--deadline-ms N] [--idle-timeout S] [--max-conns N]\n"
          "        [--max-per-ip N] [--blob-max-bytes N (2 GiB)]\n"
          "        [--log-level err|warning|notice|info|debug]\n"
          "  token create --project P --role researcher|coordinator [--name N] [--ttl 7d]\n"
          "                                        prints the token alone on stdout\n"
          "  device list [--project P] [--json]\n"
          "  device revoke FEED [--accept-through SEQ]\n"
          "  check                                 re-verify every stored chain and signature\n"
          "  import BUNDLE...                      ingest bundles carried by hand (fieldsync "
          "bundle)\n"
          "  heartbeat LINE|-                      record a device's heartbeat carried by hand\n"
          "  completeness [--project P] [--json]   per device: held, attested, what is missing\n"
          "\n"
          "Run it as the owner of the data folder (e.g. sudo -u fieldsync fieldsync-server ...).\n",
          stderr);
    return EX_USAGE;
}

struct opts {
    const char *data, *db, *listen, *metrics, *cert, *key, *ready, *project, *role, *name, *ttl,
        *accept_through, *log_level;
    const char *proxies[8];
    size_t n_proxies;
    unsigned threads, deadline_ms, idle_s, max_conns, max_per_ip;
    size_t max_batch;
    uint64_t blob_max;
    int json;
    int npos;
    char *pos[16];
};

static int
parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    *out = strtoull(s, &end, 10);
    return (*end || errno || *out > max) ? -1 : 0;
}

static int
parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"data", 1, NULL, 'd'},           {"db", 1, NULL, 'D'},
        {"listen", 1, NULL, 'l'},         {"metrics-listen", 1, NULL, 'm'},
        {"tls-cert", 1, NULL, 'c'},       {"tls-key", 1, NULL, 'k'},
        {"trusted-proxy", 1, NULL, 'p'},  {"ready-file", 1, NULL, 'r'},
        {"project", 1, NULL, 'P'},        {"role", 1, NULL, 'R'},
        {"name", 1, NULL, 'n'},           {"ttl", 1, NULL, 't'},
        {"accept-through", 1, NULL, 'a'}, {"json", 0, NULL, 'j'},
        {"threads", 1, NULL, 'T'},        {"deadline-ms", 1, NULL, 'L'},
        {"idle-timeout", 1, NULL, 'I'},   {"max-conns", 1, NULL, 'C'},
        {"max-per-ip", 1, NULL, 'M'},     {"max-batch-bytes", 1, NULL, 'B'},
        {"log-level", 1, NULL, 'v'},      {"blob-max-bytes", 1, NULL, 'X'},
        {"help", 0, NULL, 'h'},           {NULL, 0, NULL, 0}};
    unsigned long long v;
    int c;

    memset(o, 0, sizeof *o);
    o->threads = SRV_DEFAULT_THREADS;
    o->deadline_ms = SRV_DEFAULT_DEADLINE_MS;
    o->idle_s = SRV_DEFAULT_IDLE_S;
    o->max_conns = SRV_DEFAULT_MAX_CONNS;
    o->max_per_ip = SRV_DEFAULT_MAX_PER_IP;
    o->max_batch = PROTO_BATCH_MAX_BYTES;
    o->blob_max = SRV_BLOB_MAX_DEFAULT;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->data = optarg;
            break;
        case 'D':
            o->db = optarg;
            break;
        case 'l':
            o->listen = optarg;
            break;
        case 'm':
            o->metrics = optarg;
            break;
        case 'c':
            o->cert = optarg;
            break;
        case 'k':
            o->key = optarg;
            break;
        case 'r':
            o->ready = optarg;
            break;
        case 'P':
            o->project = optarg;
            break;
        case 'R':
            o->role = optarg;
            break;
        case 'n':
            o->name = optarg;
            break;
        case 't':
            o->ttl = optarg;
            break;
        case 'a':
            o->accept_through = optarg;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'v':
            o->log_level = optarg;
            break;
        case 'X':
            if (parse_uint(optarg, 1ull << 44, &v) || v == 0)
                return -1;
            o->blob_max = v;
            break;
        case 'p':
            if (o->n_proxies == FS_ARRAY_LEN(o->proxies))
                return -1;
            o->proxies[o->n_proxies++] = optarg;
            break;
        case 'T':
            if (parse_uint(optarg, 64, &v) || v == 0)
                return -1;
            o->threads = (unsigned)v;
            break;
        case 'L':
            if (parse_uint(optarg, 3600000, &v) || v < 100)
                return -1;
            o->deadline_ms = (unsigned)v;
            break;
        case 'I':
            if (parse_uint(optarg, 3600, &v) || v == 0)
                return -1;
            o->idle_s = (unsigned)v;
            break;
        case 'C':
            if (parse_uint(optarg, 100000, &v) || v == 0)
                return -1;
            o->max_conns = (unsigned)v;
            break;
        case 'M':
            if (parse_uint(optarg, 100000, &v) || v == 0)
                return -1;
            o->max_per_ip = (unsigned)v;
            break;
        case 'B':
            if (parse_uint(optarg, PROTO_BATCH_MAX_BYTES, &v) || v < 4096)
                return -1;
            o->max_batch = (size_t)v;
            break;
        default:
            return -1;
        }
    }
    for (; optind < argc; optind++) {
        if (o->npos == (int)FS_ARRAY_LEN(o->pos))
            return -1;
        o->pos[o->npos++] = argv[optind];
    }
    if (!!o->data == !!o->db)
        return -1;
    return 0;
}

/* Admin commands run as the owner of the data folder, so that nobody, root
 * included, leaves files behind that the service cannot write. */
static enum fs_rc
check_owner(const char *dir, int create, struct fs_err *err)
{
    struct stat st;

    if (stat(dir, &st) != 0) {
        if (errno == ENOENT && create) {
            if (mkdir(dir, 0700) != 0)
                return fs_err_set(err, FS_EIO, "cannot create %s: %s", dir, strerror(errno));
            return FS_OK;
        }
        return fs_err_set(err, errno == ENOENT ? FS_EUSAGE : FS_EIO, "cannot use %s: %s%s", dir,
                          strerror(errno),
                          errno == ENOENT ? " (run 'fieldsync-server init' first)" : "");
    }
    if (!S_ISDIR(st.st_mode))
        return fs_err_set(err, FS_EUSAGE, "%s is not a folder", dir);
    if (st.st_uid != geteuid()) {
        struct passwd *pw = getpwuid(st.st_uid);

        return fs_err_set(err, FS_EUSAGE,
                          "%s belongs to user %s; run this as that user (sudo -u %s "
                          "fieldsync-server ...)",
                          dir, pw ? pw->pw_name : "?", pw ? pw->pw_name : "OWNER");
    }
    return FS_OK;
}

static void
log_sink(void *ctx, enum fs_log_level level, const char *fmt, va_list ap)
{
    fs_log_stderr(ctx, level, fmt, ap);
}

static enum fs_rc
open_srv(struct srv *s, const struct opts *o, struct fs_err *err)
{
    enum fs_rc rc;

    memset(s, 0, sizeof *s);
    s->cfg.where = o->data ? o->data : o->db;
    s->cfg.listen_fd = -1;
    s->log.fn = log_sink;
    s->log.ctx = (void *)"fieldsync-server";
    s->log.level = FS_LOG_INFO;
    if (o->log_level) {
        static const char *const names[] = {"err", "warning", "notice", "info", "debug"};
        size_t i;

        for (i = 0; i < FS_ARRAY_LEN(names); i++)
            if (strcmp(o->log_level, names[i]) == 0)
                s->log.level = (enum fs_log_level)(FS_LOG_ERR + (int)i);
    }
    if (o->data) {
        rc = check_owner(o->data, 0, err);
        if (rc)
            return rc;
    }
    return srv_open(s, err);
}

static int
cmd_init(const struct opts *o)
{
    const struct srv_db_ops *ops = NULL;
    struct srv_db *db = NULL;
    struct fs_err err = {{0}};
    unsigned char *seed = sodium_malloc(PROTO_SEED_BYTES), pk[PROTO_KEY_BYTES];
    unsigned char *sk = sodium_malloc(PROTO_SECRET_BYTES);
    char hex[2 * PROTO_KEY_BYTES + 1];
    enum fs_rc rc;

    if (!seed || !sk) {
        rc = fs_err_set(&err, FS_ENOMEM, "out of memory");
        goto out;
    }
    ops = srv_db_backend(o->data ? o->data : o->db, &err);
    if (!ops) {
        rc = FS_EUSAGE;
        goto out;
    }
    if (o->data) {
        rc = check_owner(o->data, 1, &err);
        if (rc)
            goto out;
    }
    rc = ops->open(o->data ? o->data : o->db, 1, &db, &err);
    if (rc)
        goto out;
    randombytes_buf(seed, PROTO_SEED_BYTES);
    rc = ops->key_create(db, seed, &err);
    if (rc == FS_EEXIST) {
        /* Init again: the schema is brought up to date, the key stays. */
        rc = ops->key_load(db, seed, &err);
        if (rc)
            goto out;
        fprintf(stderr, "fieldsync-server: already initialised; the server key is kept\n");
    } else if (rc) {
        goto out;
    }
    proto_keypair_from_seed(seed, pk, sk);
    proto_hex_encode(pk, PROTO_KEY_BYTES, hex);
    printf("%s\n", hex);
    fprintf(stderr, "server key %s (tokens carry its fingerprint %.16s)\n", hex, hex);
out:
    if (db)
        ops->close(db);
    if (seed)
        sodium_free(seed);
    if (sk)
        sodium_free(sk);
    return rc ? fail(rc, &err) : EX_OK;
}

static int
split_hostport(const char *s, char *host, size_t hostcap, unsigned *port)
{
    const char *colon = strrchr(s, ':');
    unsigned long long p;
    size_t hl;

    if (!colon || parse_uint(colon + 1, 65535, &p))
        return -1;
    hl = (size_t)(colon - s);
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        s++;
        hl -= 2;
    }
    if (hl == 0 || hl >= hostcap)
        return -1;
    memcpy(host, s, hl);
    host[hl] = 0;
    *port = (unsigned)p;
    return 0;
}

/* A socket handed over by systemd (LISTEN_FDS), or -1. */
static int
systemd_socket(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");

    if (!pid || !fds || strtol(pid, NULL, 10) != (long)getpid() || strtol(fds, NULL, 10) < 1)
        return -1;
    return 3;
}

static int
cmd_serve(const struct opts *o)
{
    struct srv s;
    struct fs_err err = {{0}};
    enum fs_rc rc;
    size_t i;
    int lfd = systemd_socket();

    if (!o->listen && lfd < 0) {
        fprintf(stderr, "fieldsync-server: serve needs --listen HOST:PORT (or a socket from "
                        "systemd)\n");
        return EX_USAGE;
    }
    if (!!o->cert != !!o->key) {
        fprintf(stderr, "fieldsync-server: --tls-cert and --tls-key go together\n");
        return EX_USAGE;
    }
    rc = open_srv(&s, o, &err);
    if (rc) {
        srv_close(&s);
        return fail(rc, &err);
    }
    s.cfg.listen_fd = lfd;
    if (o->listen && split_hostport(o->listen, s.cfg.listen_host, sizeof s.cfg.listen_host,
                                    &s.cfg.listen_port)) {
        srv_close(&s);
        fprintf(stderr, "fieldsync-server: --listen takes HOST:PORT, e.g. 127.0.0.1:8443\n");
        return EX_USAGE;
    }
    if (!o->listen)
        snprintf(s.cfg.listen_host, sizeof s.cfg.listen_host, "systemd-socket");
    if (o->metrics && split_hostport(o->metrics, s.cfg.metrics_host, sizeof s.cfg.metrics_host,
                                     &s.cfg.metrics_port)) {
        srv_close(&s);
        fprintf(stderr, "fieldsync-server: --metrics-listen takes HOST:PORT\n");
        return EX_USAGE;
    }
    s.cfg.tls_cert = o->cert;
    s.cfg.tls_key = o->key;
    s.cfg.ready_file = o->ready;
    s.cfg.threads = o->threads;
    s.cfg.max_conns = o->max_conns;
    s.cfg.max_per_ip = o->max_per_ip;
    s.cfg.idle_s = o->idle_s;
    s.cfg.deadline_ms = o->deadline_ms;
    s.cfg.max_batch = o->max_batch;
    s.cfg.blob_max = o->blob_max;
    for (i = 0; i < o->n_proxies; i++)
        s.cfg.trusted_proxies[s.cfg.n_trusted_proxies++] = o->proxies[i];
    rc = srv_serve(&s, &err);
    srv_close(&s);
    return rc ? fail(rc, &err) : EX_OK;
}

static int
parse_ttl(const char *s, int64_t *ms)
{
    char *end;
    unsigned long long n;
    int64_t unit = 1000;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    n = strtoull(s, &end, 10);
    if (errno || n == 0 || n > 100000)
        return -1;
    if (*end == 'd')
        unit = 86400000;
    else if (*end == 'h')
        unit = 3600000;
    else if (*end == 'm')
        unit = 60000;
    else if (*end == 's' || *end == 0)
        unit = 1000;
    else
        return -1;
    if (*end && end[1])
        return -1;
    *ms = (int64_t)n * unit;
    return 0;
}

static int
cmd_token_create(const struct opts *o)
{
    struct srv s;
    struct srv_db *db = NULL;
    struct srv_token t;
    struct fs_err err = {{0}};
    unsigned char h[PROTO_HASH_BYTES];
    char token[PROTO_TOKEN_LEN + 1];
    int64_t ttl = 7 * 86400000LL;
    enum fs_rc rc;

    memset(&t, 0, sizeof t);
    if (!o->project || !srv_project_valid(o->project)) {
        fprintf(stderr, "fieldsync-server: --project takes a name of a-z, 0-9, '-' and '_'\n");
        return EX_USAGE;
    }
    if (!o->role || srv_role_parse(o->role, &t.role)) {
        fprintf(stderr, "fieldsync-server: --role takes researcher or coordinator\n");
        return EX_USAGE;
    }
    if (o->ttl && parse_ttl(o->ttl, &ttl)) {
        fprintf(stderr, "fieldsync-server: --ttl takes a duration such as 7d, 12h or 30m\n");
        return EX_USAGE;
    }
    if (o->name && !proto_name_valid(o->name)) {
        fprintf(stderr, "fieldsync-server: --name must be 1-512 bytes of text\n");
        return EX_USAGE;
    }
    rc = open_srv(&s, o, &err);
    if (!rc)
        rc = srv_db_get(&s, &db, &err);
    if (rc) {
        srv_close(&s);
        return fail(rc, &err);
    }
    snprintf(t.project, sizeof t.project, "%s", o->project);
    snprintf(t.name, sizeof t.name, "%s", o->name ? o->name : "unnamed device");
    t.created_ms = srv_now_ms();
    t.expires_ms = t.created_ms + ttl;
    proto_token_new(s.pk, token);
    proto_token_hash(token, strlen(token), h);
    rc = s.ops->token_add(db, h, &t, &err);
    if (!rc)
        rc = s.ops->audit(db, "token", NULL, t.project, t.created_ms, &err);
    srv_db_put(&s, db);
    srv_close(&s);
    if (rc) {
        sodium_memzero(token, sizeof token);
        return fail(rc, &err);
    }
    printf("%s\n", token);
    sodium_memzero(token, sizeof token);
    return EX_OK;
}

struct list_ctx {
    int json, first;
    int completeness; /* the completeness report, not the device list */
    struct srv *s;
    struct srv_db *db;
    uint64_t feeds, incomplete, lacking, files;
};

/* Entries a feed has attested (by heartbeat) that the server does not hold. */
static uint64_t
lacking_of(const struct srv_feed *f)
{
    return f->attested_seq > f->have_seq ? f->attested_seq - f->have_seq : 0;
}

static int
list_one(void *ctx, const struct srv_feed *f)
{
    struct list_ctx *lc = ctx;
    char hex[2 * PROTO_KEY_BYTES + 1], flags[128] = "", last[PROTO_TIME_MAX_LEN];
    char attested[PROTO_TIME_MAX_LEN] = "-";
    uint64_t missing = 0, lacking = lacking_of(f);
    struct fs_err err;

    proto_hex_encode(f->feed, PROTO_KEY_BYTES, hex);
    proto_time_format_ms(f->last_contact_ms, last);
    if (f->attested_ms)
        proto_time_format_ms(f->attested_ms, attested);
    if (lc->s->ops->blob_missing(lc->db, f->feed, &missing, &err) != FS_OK)
        missing = 0;
    lc->feeds++;
    lc->incomplete += (lacking || missing) ? 1 : 0;
    lc->lacking += lacking;
    lc->files += missing;
    if (f->flags & SRV_FLAG_FORK)
        snprintf(flags + strlen(flags), sizeof flags - strlen(flags), "fork@%" PRIu64 " ",
                 f->fork_seq);
    if (f->flags & SRV_FLAG_CONTESTED)
        snprintf(flags + strlen(flags), sizeof flags - strlen(flags), "contested ");
    if (f->revoked)
        snprintf(flags + strlen(flags), sizeof flags - strlen(flags), "revoked<=%" PRIu64 " ",
                 f->accept_through);
    if (lacking)
        snprintf(flags + strlen(flags), sizeof flags - strlen(flags), "lacks=%" PRIu64 " ",
                 lacking);
    if (missing)
        snprintf(flags + strlen(flags), sizeof flags - strlen(flags), "files-missing=%" PRIu64,
                 missing);
    if (lc->json) {
        json_t *js = json_string(f->name);
        char *name = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;

        json_decref(js);
        printf("%s{\"feed\":\"%s\",\"project\":\"%s\",\"name\":%s,\"role\":\"%s\","
               "\"have_seq\":%" PRIu64 ",\"receipt_seq\":%" PRIu64 ",\"attested_seq\":%" PRIu64
               ",\"attested_at\":",
               lc->first ? "" : ",\n", hex, f->project, name ? name : "null",
               srv_role_name(f->role), f->have_seq, f->receipt_seq, f->attested_seq);
        printf(f->attested_ms ? "\"%s\"" : "%.0snull", attested);
        printf(",\"lacking\":%" PRIu64 ",\"last_contact\":\"%s\",\"fork\":%s,\"fork_seq\":%" PRIu64
               ",\"contested\":%s,\"revoked\":%s,\"blobs_missing\":%" PRIu64 "}",
               lacking, last, (f->flags & SRV_FLAG_FORK) ? "true" : "false", f->fork_seq,
               (f->flags & SRV_FLAG_CONTESTED) ? "true" : "false", f->revoked ? "true" : "false",
               missing);
        free(name);
    } else if (lc->completeness) {
        printf("%.16s  %-12s %-24.24s have %-7" PRIu64 " attested %-7" PRIu64 " at %.16s  %s\n",
               hex, f->project, f->name, f->have_seq, f->attested_seq, attested, flags);
    } else {
        printf("%.16s  %-12s %-11s %-24.24s have %-7" PRIu64 " receipt %-7" PRIu64
               " last %.16s  %s\n",
               hex, f->project, srv_role_name(f->role), f->name, f->have_seq, f->receipt_seq, last,
               flags);
    }
    lc->first = 0;
    return 0;
}

/* device list and completeness: one line (or object) per feed; the
 * completeness report ends with what is missing, all told. */
static int
cmd_device_list(const struct opts *o, int completeness)
{
    struct srv s;
    struct srv_db *db = NULL;
    struct fs_err err = {{0}};
    struct list_ctx lc;
    enum fs_rc rc;

    memset(&lc, 0, sizeof lc);
    lc.json = o->json;
    lc.first = 1;
    lc.completeness = completeness;
    rc = open_srv(&s, o, &err);
    if (!rc)
        rc = srv_db_get(&s, &db, &err);
    if (!rc) {
        lc.s = &s;
        lc.db = db;
        if (lc.json)
            printf(completeness ? "{\"feeds\":[" : "[");
        rc = s.ops->feed_list(db, o->project, list_one, &lc, &err);
        if (lc.json && !completeness)
            printf("]\n");
        if (lc.json && completeness)
            printf("],\"devices\":%" PRIu64 ",\"incomplete\":%" PRIu64 ",\"lacking\":%" PRIu64
                   ",\"blobs_missing\":%" PRIu64 ",\"complete\":%s}\n",
                   lc.feeds, lc.incomplete, lc.lacking, lc.files, lc.incomplete ? "false" : "true");
        srv_db_put(&s, db);
    }
    srv_close(&s);
    if (rc)
        return fail(rc, &err);
    if (completeness && !lc.json) {
        const char *devices = lc.feeds == 1 ? "device" : "devices";

        if (lc.incomplete)
            printf("incomplete: %" PRIu64 " of %" PRIu64 " %s; %" PRIu64
                   " entries attested by heartbeat are not here, %" PRIu64 " files missing\n",
                   lc.incomplete, lc.feeds, devices, lc.lacking, lc.files);
        else
            printf("complete: %" PRIu64 " %s; every entry attested by heartbeat and every"
                   " referenced file is here\n",
                   lc.feeds, devices);
    }
    return EX_OK;
}

/* heartbeat LINE (or - to read it from stdin): a line carried by other means
 * than the device's own link, recorded as POST /v1/heartbeats would. */
static int
cmd_heartbeat(const struct opts *o)
{
    struct srv s;
    struct srv_db *db = NULL;
    struct fs_err err = {{0}};
    struct proto_heartbeat hb;
    struct srv_feed f;
    char buf[PROTO_HEARTBEAT_LINE_LEN + 64], hex[2 * PROTO_KEY_BYTES + 1];
    const char *line = o->pos[0];
    size_t len;
    enum fs_rc rc;

    if (strcmp(line, "-") == 0) {
        if (!fgets(buf, sizeof buf, stdin))
            buf[0] = 0;
        line = buf;
    }
    len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    rc = proto_heartbeat_parse(line, len, &hb, &err);
    if (rc)
        return fail(rc == FS_EPROTO ? FS_EINVAL : rc, &err);
    rc = open_srv(&s, o, &err);
    if (rc)
        return fail(rc, &err);
    rc = srv_db_get(&s, &db, &err);
    if (!rc) {
        rc = srv_heartbeat_record(s.ops, db, &hb, srv_now_ms(), &f, &err);
        srv_db_put(&s, db);
    }
    srv_close(&s);
    if (rc)
        return fail(rc, &err);
    proto_hex_encode(hb.feed, PROTO_KEY_BYTES, hex);
    if (hb.seq > f.have_seq)
        printf("recorded: %.16s (%s) holds %" PRIu64 " entries; the server has %" PRIu64
               ", %" PRIu64 " to come\n",
               hex, f.name, hb.seq, f.have_seq, hb.seq - f.have_seq);
    else
        printf("recorded: %.16s (%s) holds %" PRIu64 " entries; the server has them all\n", hex,
               f.name, hb.seq);
    return EX_OK;
}

/* One batch of a bundle, handed to the API as its device's push would be:
 * the same checks, in the same order, and one transaction. */
static enum fs_rc
import_batch(struct srv *s, const struct fs_buf *b, struct fs_err *err)
{
    struct srv_req rq;
    struct srv_resp rs;
    char url[160], hex[2 * PROTO_KEY_BYTES + 1], msg[FS_ERR_MAX] = "";
    enum fs_rc rc = FS_OK;
    json_t *j;

    proto_hex_encode(b->data + 8, PROTO_KEY_BYTES, hex); /* the signer; checked by the API */
    snprintf(url, sizeof url, "/v1/feeds/%s/entries", hex);
    memset(&rq, 0, sizeof rq);
    rq.method = "POST";
    rq.url = url;
    rq.target = url;
    rq.body = b->data;
    rq.body_len = b->len;
    memset(&rs, 0, sizeof rs);
    rs.fd = -1;
    fs_buf_init(&rs.body, 4096);
    srv_api_handle(s, &rq, &rs);
    if (rs.status != 200) {
        j = json_loadb((const char *)rs.body.data, rs.body.len, 0, NULL);
        snprintf(msg, sizeof msg, "%s",
                 json_string_value(json_object_get(j, "message"))
                     ? json_string_value(json_object_get(j, "message"))
                     : "refused");
        json_decref(j);
        if (rs.status == 403)
            rc = fs_err_set(err, FS_EAUTH, "the server refuses that device: %s", msg);
        else if (rs.status >= 500)
            rc = fs_err_set(err, FS_EIO, "%s", msg);
        else
            rc = fs_err_set(err, FS_EINVAL, "%s", msg);
    }
    fs_buf_release(&rs.body);
    return rc;
}

/* import BUNDLE...: bundles carried by hand, each batch taken as its device's
 * push, in the order given; the first refusal stops (what came before stays:
 * each batch is whole or nothing). */
static int
cmd_import(const struct opts *o)
{
    struct srv s;
    struct srv_db *db = NULL;
    struct fs_err err = {{0}};
    struct fs_buf b;
    struct srv_feed f;
    unsigned char signer[PROTO_KEY_BYTES];
    char hex[2 * PROTO_KEY_BYTES + 1];
    enum fs_rc rc;
    int i;

    rc = open_srv(&s, o, &err);
    if (rc)
        return fail(rc, &err);
    s.cfg.max_batch = PROTO_BATCH_MAX_BYTES;
    if (!o->log_level)
        s.log.level = FS_LOG_ERR; /* a refusal is said once, by fail() */
    fs_buf_init(&b, PROTO_BATCH_MAX_BYTES);
    for (i = 0; !rc && i < o->npos; i++) {
        FILE *in = fopen(o->pos[i], "rb");
        uint64_t batches = 0;
        int pass;

        if (!in) {
            rc = fs_err_set(&err, errno == ENOENT ? FS_ENOTFOUND : FS_EIO, "cannot read %s: %s",
                            o->pos[i], strerror(errno));
            break;
        }
        /* First every batch is checked (lengths, signature, header), so that a
         * damaged file imports nothing; then each is taken as a push. */
        for (pass = 0; !rc && pass < 2; pass++) {
            for (batches = 0; !rc; batches += !rc) {
                struct proto_batch_header h;

                rc = proto_batch_read(proto_read_stdio, in, &b, &err);
                if (rc == FS_ENOTFOUND && batches) {
                    rc = FS_OK;
                    break;
                }
                if (rc == FS_ENOTFOUND)
                    rc = fs_err_set(&err, FS_EINVAL, "it is empty");
                if (!rc)
                    rc = proto_batch_check_bundle(&b, &h, &err);
                if (rc == FS_EPROTO || rc == FS_ETOOBIG)
                    rc = FS_EINVAL;
                if (!rc && pass == 1)
                    rc = import_batch(&s, &b, &err);
                if (rc)
                    fs_err_prefix(&err, "%s, batch %" PRIu64 ": ", o->pos[i], batches + 1);
                else
                    memcpy(signer, h.feed, PROTO_KEY_BYTES);
            }
            rewind(in);
        }
        fclose(in);
        if (rc)
            break;
        rc = srv_db_get(&s, &db, &err);
        if (!rc) {
            rc = s.ops->feed_get(db, signer, &f, &err);
            srv_db_put(&s, db);
        }
        if (!rc) {
            proto_hex_encode(f.feed, PROTO_KEY_BYTES, hex);
            printf("imported %s: %" PRIu64 " batch%s of %.16s (%s); the server holds %" PRIu64
                   " of its entries\n",
                   o->pos[i], batches, batches == 1 ? "" : "es", hex, f.name, f.have_seq);
        }
    }
    fs_buf_release(&b);
    srv_close(&s);
    return rc ? fail(rc, &err) : EX_OK;
}

static int
find_prefix(void *ctx, const struct srv_feed *f)
{
    void **c = ctx;
    const char *prefix = c[0];
    char hex[2 * PROTO_KEY_BYTES + 1];

    proto_hex_encode(f->feed, PROTO_KEY_BYTES, hex);
    if (strncmp(hex, prefix, strlen(prefix)) == 0) {
        (*(int *)c[2])++;
        memcpy(c[1], f->feed, PROTO_KEY_BYTES);
    }
    return 0;
}

static int
cmd_device_revoke(const struct opts *o)
{
    struct srv s;
    struct srv_db *db = NULL;
    struct fs_err err = {{0}};
    unsigned char feed[PROTO_KEY_BYTES];
    unsigned long long through = 0;
    int matches = 0;
    void *ctx[3];
    enum fs_rc rc;

    if (o->npos != 3 || strlen(o->pos[2]) < 8 || strlen(o->pos[2]) > 64) {
        fprintf(stderr, "fieldsync-server: device revoke takes FEED (at least 8 hex digits)\n");
        return EX_USAGE;
    }
    if (o->accept_through && parse_uint(o->accept_through, PROTO_MAX_SAFE_INT, &through)) {
        fprintf(stderr, "fieldsync-server: --accept-through takes a seq\n");
        return EX_USAGE;
    }
    rc = open_srv(&s, o, &err);
    if (!rc)
        rc = srv_db_get(&s, &db, &err);
    if (!rc) {
        ctx[0] = o->pos[2];
        ctx[1] = feed;
        ctx[2] = &matches;
        rc = s.ops->feed_list(db, NULL, find_prefix, ctx, &err);
        if (!rc && matches != 1)
            rc = fs_err_set(&err, FS_EINVAL,
                            matches ? "several feeds start with %s" : "no feed starts with %s",
                            o->pos[2]);
        if (!rc)
            rc = s.ops->feed_revoke(db, feed, through, srv_now_ms(), &err);
        srv_db_put(&s, db);
    }
    srv_close(&s);
    if (rc)
        return fail(rc, &err);
    fprintf(stderr, "revoked; entries up to seq %llu are still accepted\n", through);
    return EX_OK;
}

struct check_ctx {
    const struct srv_feed *f;
    uint64_t expect;
    unsigned char prev[PROTO_HASH_BYTES];
    uint64_t problems, entries;
};

static int
check_one(void *ctx, uint64_t seq, const unsigned char *hash, const unsigned char *entry,
          size_t entry_len, const unsigned char *sig, const unsigned char *content,
          size_t content_len)
{
    struct check_ctx *cc = ctx;
    struct proto_entry e;
    unsigned char h[PROTO_HASH_BYTES];
    struct fs_err err;
    char hex[17];

    proto_hex_encode(cc->f->feed, 8, hex);
    cc->entries++;
    if (seq != cc->expect) {
        fprintf(stderr, "check: feed %s: gap before seq %" PRIu64 "\n", hex, seq);
        cc->problems++;
    }
    if (proto_entry_verify_full(entry, entry_len, sig, content, content_len, cc->f->feed, 1, &e, h,
                                &err)) {
        fprintf(stderr, "check: feed %s seq %" PRIu64 ": %s\n", hex, seq, err.msg);
        cc->problems++;
    } else if (memcmp(h, hash, PROTO_HASH_BYTES) != 0 || e.seq != seq ||
               (seq > 1 && (!e.has_prev || memcmp(e.prev, cc->prev, PROTO_HASH_BYTES) != 0))) {
        fprintf(stderr, "check: feed %s seq %" PRIu64 ": chain or stored hash broken\n", hex, seq);
        cc->problems++;
    } else if (e.has_content && e.enc == PROTO_ENC_JSON && content_len) {
        struct proto_content c;

        if (proto_content_parse(content, content_len, &c, &err)) {
            fprintf(stderr, "check: feed %s seq %" PRIu64 ": its content is not a record: %s\n",
                    hex, seq, err.msg);
            cc->problems++;
        }
        proto_content_release(&c);
    }
    memcpy(cc->prev, hash, PROTO_HASH_BYTES);
    cc->expect = seq + 1;
    return 0;
}

struct check_all {
    struct srv *s;
    struct srv_db *db;
    uint64_t problems, entries, feeds;
    enum fs_rc rc;
    struct fs_err err;
};

static int
check_feed(void *ctx, const struct srv_feed *f)
{
    struct check_all *ca = ctx;
    struct check_ctx cc;

    memset(&cc, 0, sizeof cc);
    cc.f = f;
    cc.expect = 1;
    ca->feeds++;
    ca->rc = ca->s->ops->entries_each(ca->db, f->feed, 1, 0, check_one, &cc, &ca->err);
    if (ca->rc)
        return 1;
    if (cc.expect - 1 != f->have_seq ||
        (f->have_seq && memcmp(cc.prev, f->head, PROTO_HASH_BYTES) != 0)) {
        char hex[17];

        proto_hex_encode(f->feed, 8, hex);
        fprintf(stderr, "check: feed %s: head does not match its entries\n", hex);
        cc.problems++;
    }
    ca->problems += cc.problems;
    ca->entries += cc.entries;
    return 0;
}

static int
cmd_check(const struct opts *o)
{
    struct srv s;
    struct check_all ca;
    enum fs_rc rc;

    memset(&ca, 0, sizeof ca);
    rc = open_srv(&s, o, &ca.err);
    if (!rc)
        rc = srv_db_get(&s, &ca.db, &ca.err);
    if (!rc) {
        ca.s = &s;
        rc = s.ops->feed_list(ca.db, NULL, check_feed, &ca, &ca.err);
        if (!rc)
            rc = ca.rc;
        srv_db_put(&s, ca.db);
    }
    srv_close(&s);
    if (rc)
        return fail(rc, &ca.err);
    if (ca.problems) {
        fprintf(stderr, "fieldsync-server: check found %" PRIu64 " problems\n", ca.problems);
        return EX_DATAERR;
    }
    printf("ok: %" PRIu64 " entries in %" PRIu64 " feeds verified\n", ca.entries, ca.feeds);
    return EX_OK;
}

int
main(int argc, char **argv)
{
    struct opts o;
    const char *cmd;
    int sub = 0;

    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("fieldsync-server %s\n", FS_VERSION);
        return EX_OK;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return argc < 2 ? usage() : (usage(), EX_OK);
    if (sodium_init() < 0) {
        fprintf(stderr, "fieldsync-server: cannot initialise libsodium\n");
        return EX_INTERNAL;
    }
    cmd = argv[1];
    if ((strcmp(cmd, "token") == 0 || strcmp(cmd, "device") == 0) && argc >= 3)
        sub = 1;
    if (parse_opts(argc - 1, argv + 1, &o))
        return usage();
    /* pos[0] is the subcommand word when there is one. */
    if (strcmp(cmd, "init") == 0 && o.npos == 0)
        return cmd_init(&o);
    if (strcmp(cmd, "serve") == 0 && o.npos == 0)
        return cmd_serve(&o);
    if (strcmp(cmd, "check") == 0 && o.npos == 0)
        return cmd_check(&o);
    if (sub && strcmp(cmd, "token") == 0 && o.npos == 1 && strcmp(o.pos[0], "create") == 0)
        return cmd_token_create(&o);
    if (sub && strcmp(cmd, "device") == 0 && o.npos == 1 && strcmp(o.pos[0], "list") == 0)
        return cmd_device_list(&o, 0);
    if (strcmp(cmd, "completeness") == 0 && o.npos == 0)
        return cmd_device_list(&o, 1);
    if (strcmp(cmd, "heartbeat") == 0 && o.npos == 1)
        return cmd_heartbeat(&o);
    if (strcmp(cmd, "import") == 0 && o.npos >= 1)
        return cmd_import(&o);
    if (sub && strcmp(cmd, "device") == 0 && o.npos == 2 && strcmp(o.pos[0], "revoke") == 0) {
        o.pos[2] = o.pos[1];
        o.npos = 3;
        return cmd_device_revoke(&o);
    }
    return usage();
}
