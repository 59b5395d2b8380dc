/* fieldsync-remote: the commands of fieldsync that talk to the network. The
 * fieldsync binary hands these command lines over unchanged, so that libcurl
 * is loaded only here. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "proto_auth.h"
#include "proto_json.h"
#include "sync.h"
#include "sync_daemon.h"

/* How long 'fieldsync sync' waits for a running daemon's push: as long as a
 * push of its own could take (the request timeout), and a little more. */
#define SYNC_DAEMON_WAIT_MS (11 * 60 * 1000)

static const struct cli_opt enroll_opts[] = {
    {"token", 1, "T", "the enrollment token (visible to other users in ps; prefer --token-file)"},
    {"token-file", 1, "F|-", "read the token from a file, or from standard input"},
    {"cacert", 1, "F", "a CA certificate file that signs the server's certificate"},
    {NULL, 0, NULL, NULL}};
static const struct cli_opt sync_opts[] = {{"quiet", 0, NULL, "print nothing but errors"},
                                           {NULL, 0, NULL, NULL}};

/* Reads a token from a file or stdin, trimmed; at most one line. */
static enum fs_rc
read_token(const char *path, char out[PROTO_TOKEN_LEN + 1], struct fs_err *err)
{
    char *text = NULL;
    size_t len, a = 0, b;
    enum fs_rc rc;

    rc = cli_read_all(path, 4096, &text, &len, err);
    if (rc)
        return rc;
    b = len;
    while (a < b && strchr(" \t\r\n", text[a]))
        a++;
    while (b > a && strchr(" \t\r\n", text[b - 1]))
        b--;
    if (b - a != PROTO_TOKEN_LEN) {
        sodium_memzero(text, len);
        free(text);
        return fs_err_set(err, FS_EUSAGE, "that is not a fieldsync enrollment token");
    }
    memcpy(out, text + a, PROTO_TOKEN_LEN);
    out[PROTO_TOKEN_LEN] = 0;
    sodium_memzero(text, len);
    free(text);
    return FS_OK;
}

static int
cmd_enroll(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    char token[PROTO_TOKEN_LEN + 1];
    enum fs_rc rc;
    int done, code;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos != 1 || !!cli_arg(&a, 0) == !!cli_arg(&a, 1)) {
        code = cli_usage("usage: fieldsync enroll URL (--token T | --token-file F|-) [--cacert F]");
        goto out;
    }
    if (cli_arg(&a, 0)) {
        if (strlen(cli_arg(&a, 0)) != PROTO_TOKEN_LEN) {
            code = cli_usage("that is not a fieldsync enrollment token");
            goto out;
        }
        memcpy(token, cli_arg(&a, 0), PROTO_TOKEN_LEN + 1);
    } else if ((rc = read_token(cli_arg(&a, 1), token, &err))) {
        code = cli_fail(rc, &err);
        goto out;
    }
    rc = sync_enroll(cli->store, a.pos[0], token, cli_arg(&a, 2), &err);
    sodium_memzero(token, sizeof token);
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    fprintf(stderr, "%s\n", err.msg);
out:
    cli_args_release(&a);
    return code;
}

struct progress {
    struct cli *cli;
    int show;
    time_t last;
    const uint64_t *total_bytes;
    double t0, tlast;
};

static void
show_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct progress *p = ctx;
    time_t now = time(NULL);

    if (!p->show || total == 0 || (now == p->last && done != total))
        return;
    p->last = now;
    fprintf(stderr, "\rsync: %llu of %llu entries (%3llu%%)", (unsigned long long)done,
            (unsigned long long)total, (unsigned long long)(done * 100 / total));
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

static void
human_bytes(uint64_t n, char *out, size_t cap)
{
    if (n >= (1u << 20))
        snprintf(out, cap, "%.1f MiB", (double)n / (1u << 20));
    else
        snprintf(out, cap, "%.0f KiB", (double)n / 1024);
}

/* Attachments: bytes, rate and time left, on a terminal only. */
static void
show_bytes(void *ctx, uint64_t done)
{
    struct progress *p = ctx;
    struct timespec ts;
    double now, rate;
    char a[32], b[32], r[32];
    uint64_t total = p->total_bytes ? *p->total_bytes : 0;

    if (!p->show || total == 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (p->t0 == 0)
        p->t0 = now;
    if (now - p->tlast < 0.25 && done < total)
        return;
    p->tlast = now;
    rate = now > p->t0 ? (double)done / (now - p->t0) : 0;
    human_bytes(done, a, sizeof a);
    human_bytes(total, b, sizeof b);
    human_bytes((uint64_t)rate, r, sizeof r);
    if (rate > 0 && done < total) {
        long left = (long)((double)(total - done) / rate);

        fprintf(stderr, "\rattachments: %s of %s  %s/s  %ld:%02ld left   ", a, b, r, left / 60,
                left % 60);
    } else {
        fprintf(stderr, "\rattachments: %s of %s  %s/s            ", a, b, r);
    }
    if (done >= total)
        fputc('\n', stderr);
    fflush(stderr);
}

static void
warn_line(void *ctx, const char *line)
{
    struct progress *p = ctx;

    if (p->show)
        fputc('\n', stderr);
    fprintf(stderr, "fieldsync: %s\n", line);
}

static int
cmd_sync(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}}, e2;
    struct sync_http *h = NULL;
    struct sync_run_result res;
    struct sync_run_opts ro;
    struct progress p;
    char when[PROTO_TIME_MAX_LEN], off[32];
    enum fs_rc rc;
    int done, code, quiet;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos) {
        code = cli_usage("sync takes no arguments");
        goto out;
    }
    quiet = cli_flag(&a, 0);
    {
        /* A running daemon does the push (instead of racing it): wake it,
         * wait for a run that began after this point, report its result. */
        struct sync_daemon_info di;

        rc = sync_daemon_wake(cli->home, SYNC_DAEMON_WAIT_MS, &di, &err);
        if (rc == FS_OK && di.last_rc != FS_OK) {
            fs_err_set(&err, di.last_rc, "%s", di.last_msg);
            code = cli_fail(di.last_rc, &err);
            goto out;
        }
        if (rc == FS_OK) {
            if (!quiet)
                fprintf(stderr,
                        "synced by fieldsyncd (pid %ld): %llu entries sent; the server holds all "
                        "%llu\n",
                        di.pid, (unsigned long long)di.last_pushed,
                        (unsigned long long)di.last_server_have);
            goto out;
        }
        if (rc != FS_ENOTFOUND) {
            code = cli_fail(rc, &err);
            goto out;
        }
        fs_err_clear(&err);
    }
    memset(&p, 0, sizeof p);
    p.cli = cli;
    p.show = !quiet && cli->stderr_tty;
    memset(&ro, 0, sizeof ro);
    ro.progress = show_progress;
    ro.bytes = show_bytes;
    ro.ctx = &p;
    ro.warn = warn_line;
    p.total_bytes = &ro.blobs.total;
    rc = sync_http_for_store(cli->store, &h, &err);
    if (!rc)
        rc = sync_run(cli->store, h, &ro, &res, &err);
    if (h) {
        snprintf(off, sizeof off, "%lld", (long long)sync_http_clock_offset_get(h));
        if (store_setting_set(cli->store, "clock_offset_s", off, &e2) != FS_OK) {
            /* Only a hint for the next run. */
        }
    }
    proto_time_format_ms(store_now_ms(), when);
    if (rc) {
        if (store_setting_set(cli->store, "last_error", err.msg, &e2) != FS_OK) {
            /* The error itself is what matters; it is printed below. */
        }
        code = cli_fail(rc, &err);
        goto out;
    }
    if (store_setting_set(cli->store, "last_sync", when, &e2) != FS_OK ||
        store_setting_set(cli->store, "last_error", NULL, &e2) != FS_OK) {
        /* Status lines only; the receipts are what count, and they are saved. */
    }
    if (!quiet) {
        fprintf(stderr, "synced: %llu entries sent; the server holds all %llu\n",
                (unsigned long long)res.push.pushed, (unsigned long long)res.push.server_have);
        if (res.blobs)
            fprintf(stderr, "%llu attachment%s now held by the server\n",
                    (unsigned long long)res.blobs, res.blobs == 1 ? "" : "s");
        if (res.corrections)
            fprintf(stderr, "%llu correction%s by coordinators folded in\n",
                    (unsigned long long)res.corrections, res.corrections == 1 ? "" : "s");
    }
out:
    sync_http_free(h);
    cli_args_release(&a);
    return code;
}

static const struct cli_opt pull_opts[] = {
    {"quiet", 0, NULL, "print nothing but errors"},
    {"attachments", 0, NULL, "also download attachments, each checked against its hash"},
    {NULL, 0, NULL, NULL}};
static const struct cli_opt devices_opts[] = {{"json", 0, NULL, "machine-readable output"},
                                              {NULL, 0, NULL, NULL}};
static const struct cli_opt token_opts[] = {
    {"role", 1, "ROLE", "researcher (coordinators make researcher tokens)"},
    {"name", 1, "N", "the device's name, as the project will see it"},
    {"ttl", 1, "DURATION", "how long the token stays valid: 30m, 12h, 7d (default 7d)"},
    {NULL, 0, NULL, NULL}};
static const struct cli_opt revoke_opts[] = {
    {"accept-through", 1, "SEQ", "entries up to SEQ still arrive (a lost laptop's honest bundles)"},
    {NULL, 0, NULL, NULL}};

static int
cmd_pull(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    struct sync_http *h = NULL;
    struct sync_pull_result res;
    struct progress p;
    uint64_t blobs = 0;
    enum fs_rc rc;
    int done, code;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos) {
        code = cli_usage("pull takes no arguments");
        goto out;
    }
    memset(&p, 0, sizeof p);
    p.cli = cli;
    p.show = !cli_flag(&a, 0) && cli->stderr_tty;
    rc = sync_http_for_store(cli->store, &h, &err);
    if (!rc)
        rc = sync_pull(cli->store, h, show_progress, &p, &res, &err);
    if (!rc && cli_flag(&a, 1)) {
        struct sync_blob_progress bp;

        memset(&bp, 0, sizeof bp);
        bp.cb = show_bytes;
        bp.ctx = &p;
        p.total_bytes = &bp.total;
        rc = sync_blobs_download(cli->store, h, &bp, &blobs, &err);
    }
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    if (blobs && !cli_flag(&a, 0))
        fprintf(stderr, "downloaded %llu attachment%s, each checked against its hash\n",
                (unsigned long long)blobs, blobs == 1 ? "" : "s");
    if (!cli_flag(&a, 0))
        fprintf(stderr,
                "pulled %llu entries from %llu devices; every signature and chain verified\n",
                (unsigned long long)res.fetched, (unsigned long long)res.feeds);
out:
    sync_http_free(h);
    cli_args_release(&a);
    return code;
}

static int
cmd_devices(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    struct sync_http *h = NULL;
    json_t *listing = NULL, *f;
    size_t i;
    enum fs_rc rc;
    int done, code, json;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    json = cli_flag(&a, 0);
    rc = sync_http_for_store(cli->store, &h, &err);
    if (!rc)
        rc = sync_feeds_listing(cli->store, h, (void **)&listing, &err);
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    if (json)
        printf("[");
    json_array_foreach(json_object_get(listing, "feeds"), i, f)
    {
        unsigned char feed[PROTO_KEY_BYTES];
        struct store_feed_info fi;
        uint64_t have = 0, receipt = 0, fork_seq = 0, attested = 0;
        const char *name = json_string_value(json_object_get(f, "name"));
        const char *role = json_string_value(json_object_get(f, "role"));
        const char *last = json_string_value(json_object_get(f, "last_contact"));
        int fork = json_is_true(json_object_get(f, "fork"));
        uint64_t missing = 0;
        int contested = json_is_true(json_object_get(f, "contested"));
        int revoked = json_is_true(json_object_get(f, "revoked"));
        char hex[2 * PROTO_KEY_BYTES + 1];

        if (proto_json_hex(json_object_get(f, "feed"), feed, PROTO_KEY_BYTES) ||
            proto_json_uint(json_object_get(f, "have_seq"), 0, &have) ||
            proto_json_uint(json_object_get(f, "receipt_seq"), 0, &receipt) ||
            proto_json_uint(json_object_get(f, "fork_seq"), 0, &fork_seq) ||
            proto_json_uint(json_object_get(f, "attested_seq"), 0, &attested) ||
            proto_json_uint(json_object_get(f, "blobs_missing"), 0, &missing) || !name || !role ||
            !last) {
            code = cli_fail(FS_EPROTO, NULL);
            goto out;
        }
        memset(&fi, 0, sizeof fi);
        if (memcmp(feed, store_feed(cli->store), PROTO_KEY_BYTES) == 0) {
            struct store_status st;

            if (store_status_get(cli->store, &st, &err) == FS_OK)
                fi.have_seq = st.local_seq;
        } else if (store_feed_info(cli->store, feed, &fi, &err) != FS_OK) {
            fi.have_seq = 0;
        }
        proto_hex_encode(feed, PROTO_KEY_BYTES, hex);
        if (json) {
            char *n = json_dumps(json_object_get(f, "name"), JSON_ENCODE_ANY);

            printf("%s{\"feed\":\"%s\",\"name\":%s,\"role\":\"%s\",\"have_seq\":%llu,"
                   "\"held_here\":%llu,\"receipt_seq\":%llu,\"attested_seq\":%llu,"
                   "\"last_contact\":\"%s\","
                   "\"fork\":%s,\"fork_seq\":%llu,\"contested\":%s,\"revoked\":%s,"
                   "\"blobs_missing\":%llu}",
                   i ? "," : "", hex, n ? n : "null", role, (unsigned long long)have,
                   (unsigned long long)fi.have_seq, (unsigned long long)receipt,
                   (unsigned long long)attested, last, fork ? "true" : "false",
                   (unsigned long long)fork_seq, contested ? "true" : "false",
                   revoked ? "true" : "false", (unsigned long long)missing);
            free(n);
        } else {
            char flags[128] = "";

            if (fork)
                snprintf(flags, sizeof flags, "FORK@%llu ", (unsigned long long)fork_seq);
            if (contested)
                snprintf(flags + strlen(flags), sizeof flags - strlen(flags), "contested ");
            if (revoked)
                snprintf(flags + strlen(flags), sizeof flags - strlen(flags), "revoked ");
            if (fi.have_seq < have)
                snprintf(flags + strlen(flags), sizeof flags - strlen(flags), "pull-needed ");
            if (attested > have)
                snprintf(flags + strlen(flags), sizeof flags - strlen(flags), "lacks=%llu ",
                         (unsigned long long)(attested - have));
            if (missing)
                snprintf(flags + strlen(flags), sizeof flags - strlen(flags), "files-missing=%llu",
                         (unsigned long long)missing);
            printf("%.12s  ", hex);
            cli_put_cell(stdout, name, 22, 1);
            printf("  %-11s have %-7llu here %-7llu receipt %-7llu last %.16s  %s\n", role,
                   (unsigned long long)have, (unsigned long long)fi.have_seq,
                   (unsigned long long)receipt, last, flags);
        }
    }
    if (json)
        printf("]\n");
out:
    json_decref(listing);
    sync_http_free(h);
    cli_args_release(&a);
    return code;
}

/* "7d", "12h", "30m", "600s" or plain seconds. */
static int
parse_duration(const char *v, uint64_t *s)
{
    char *end;
    unsigned long long n = strtoull(v, &end, 10);

    if (*v < '0' || *v > '9' || n == 0 || n > 1000000)
        return -1;
    if (*end == 'd')
        n *= 86400;
    else if (*end == 'h')
        n *= 3600;
    else if (*end == 'm')
        n *= 60;
    else if (*end != 's' && *end != 0)
        return -1;
    if (*end && end[1])
        return -1;
    *s = n;
    return 0;
}

static enum fs_rc
project_post(struct cli *cli, const char *what, const struct fs_buf *body, struct sync_http **h,
             struct sync_resp *r, struct fs_err *err)
{
    char target[256], *project = NULL;
    enum fs_rc rc;

    rc = store_setting_get(cli->store, "project", &project, err);
    if (rc)
        return rc;
    if (!project)
        return fs_err_set(err, FS_EAUTH, "this device is not enrolled in a project");
    snprintf(target, sizeof target, "/v1/projects/%s/%s", project, what);
    free(project);
    rc = sync_http_for_store(cli->store, h, err);
    if (!rc)
        rc = sync_http_request(*h, "POST", target, body->data, body->len, 1, r, err);
    if (!rc && r->status != 200) {
        char code[64], msg[200];

        sync_error_text(r, code, sizeof code, msg, sizeof msg);
        rc = fs_err_set(err,
                        r->status == 403 || r->status == 401 ? FS_EAUTH
                        : r->status == 404                   ? FS_EINVAL
                        : r->status >= 500                   ? FS_EAGAIN
                                                             : FS_EPROTO,
                        "the server refused: %s", msg);
    }
    return rc;
}

static int
cmd_token(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    struct sync_http *h = NULL;
    struct sync_resp r;
    struct fs_buf body;
    json_t *j = NULL;
    uint64_t ttl = 7 * 86400;
    enum fs_rc rc;
    int done, code;

    fs_buf_init(&body, 4096);
    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos != 1 || strcmp(a.pos[0], "create") != 0 || !cli_arg(&a, 0)) {
        code = cli_usage("usage: fieldsync token create --role researcher [--name N] [--ttl 7d]");
        goto out;
    }
    if (strcmp(cli_arg(&a, 0), "researcher") != 0) {
        code = cli_usage("coordinators make researcher tokens; coordinator tokens come from the "
                         "server's operator");
        goto out;
    }
    if (cli_arg(&a, 2) && parse_duration(cli_arg(&a, 2), &ttl)) {
        code = cli_usage("--ttl takes a duration such as 7d, 12h or 30m");
        goto out;
    }
    if (cli_arg(&a, 1) && !proto_name_valid(cli_arg(&a, 1))) {
        code = cli_usage("--name must be 1-512 bytes of text");
        goto out;
    }
    rc = fs_buf_printf(&body, "{\"role\":\"researcher\",\"ttl_s\":%llu", (unsigned long long)ttl);
    if (!rc && cli_arg(&a, 1)) {
        rc = fs_buf_adds(&body, ",\"name\":");
        if (!rc)
            rc = proto_jw_str(&body, cli_arg(&a, 1), strlen(cli_arg(&a, 1)));
    }
    if (!rc)
        rc = fs_buf_addc(&body, '}');
    if (!rc)
        rc = project_post(cli, "tokens", &body, &h, &r, &err);
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    if (proto_json_parse(r.body, r.len, &j, NULL) || !json_is_string(json_object_get(j, "token"))) {
        code = cli_fail(FS_EPROTO, NULL);
        goto out;
    }
    printf("%s\n", json_string_value(json_object_get(j, "token")));
out:
    json_decref(j);
    fs_buf_release(&body);
    sync_http_free(h);
    cli_args_release(&a);
    return code;
}

static int
cmd_device(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    struct sync_http *h = NULL;
    struct sync_resp r;
    struct fs_buf body;
    unsigned char feed[PROTO_KEY_BYTES];
    uint64_t through = 0;
    enum fs_rc rc;
    int done, code;

    fs_buf_init(&body, 4096);
    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos != 2 || strcmp(a.pos[0], "revoke") != 0 ||
        proto_hex_decode(a.pos[1], strlen(a.pos[1]), feed, PROTO_KEY_BYTES)) {
        code = cli_usage("usage: fieldsync device revoke FEED (64 hex digits) "
                         "[--accept-through SEQ]");
        goto out;
    }
    if (cli_arg(&a, 0)) {
        char *end;

        through = strtoull(cli_arg(&a, 0), &end, 10);
        if (*end || *cli_arg(&a, 0) < '0' || *cli_arg(&a, 0) > '9') {
            code = cli_usage("--accept-through takes a seq");
            goto out;
        }
    }
    rc = fs_buf_adds(&body, "{\"feed\":");
    if (!rc)
        rc = proto_jw_hex(&body, feed, PROTO_KEY_BYTES);
    if (!rc)
        rc = fs_buf_printf(&body, ",\"accept_through\":%llu}", (unsigned long long)through);
    if (!rc)
        rc = project_post(cli, "revocations", &body, &h, &r, &err);
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    fprintf(stderr, "revoked; entries up to seq %llu are still accepted\n",
            (unsigned long long)through);
out:
    fs_buf_release(&body);
    sync_http_free(h);
    cli_args_release(&a);
    return code;
}

static const struct cli_opt relay_opts[] = {{NULL, 0, NULL, NULL}};
static const struct cli_opt bundle_opts[] = {
    {"all", 0, NULL, "every entry of this device, not only what the last receipt lacks"},
    {NULL, 0, NULL, NULL}};

static int
cmd_bundle(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    struct sync_bundle_result res;
    enum fs_rc rc;
    int done, code;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos != 1) {
        code = cli_usage("usage: fieldsync bundle FILE [--all]");
        goto out;
    }
    rc = sync_bundle_write(cli->store, a.pos[0], cli_flag(&a, 0), &res, &err);
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    if (res.to < res.from)
        fprintf(stderr,
                "nothing to bundle: the server's last receipt covers every entry of this device "
                "(--all bundles them all); %s was not written\n",
                a.pos[0]);
    else
        fprintf(stderr,
                "bundled entries %llu to %llu (%llu bytes, sealed to the project's server) in "
                "%s; carry it to anyone enrolled ('fieldsync relay %s') or to the server's admin\n",
                (unsigned long long)res.from, (unsigned long long)res.to,
                (unsigned long long)res.bytes, a.pos[0], a.pos[0]);
out:
    cli_args_release(&a);
    return code;
}

static int
cmd_relay(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    struct sync_relay_result res;
    struct sync_http *h = NULL;
    char hex[2 * PROTO_KEY_BYTES + 1];
    enum fs_rc rc;
    int done, code;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos != 1) {
        code = cli_usage("usage: fieldsync relay BUNDLE");
        goto out;
    }
    rc = sync_http_for_store(cli->store, &h, &err);
    if (!rc)
        rc = sync_relay(cli->store, h, a.pos[0], &res, &err);
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    proto_hex_encode(res.feed, PROTO_KEY_BYTES, hex);
    fprintf(stderr,
            "relayed %s: the server holds %llu entries of device %.16s (its signed receipt "
            "checked)\n",
            a.pos[0], (unsigned long long)res.server_have, hex);
out:
    sync_http_free(h);
    cli_args_release(&a);
    return code;
}

static const struct cli_cmd commands[] = {
    {"enroll", "URL (--token T | --token-file F|-) [--cacert F]",
     "Join a project's server. The token's fingerprint is checked against the server's key\n"
     "before the token is sent; the key is then pinned.",
     enroll_opts, cmd_enroll, 1},
    {"sync", "[--quiet]",
     "Push what the server lacks, in batches that adapt to the link, and keep its signed\n"
     "receipt. Exit 69: no connection (records are safe and will go later); 75: cut or\n"
     "retry later; 76: fork or key mismatch; 77: not enrolled or revoked.",
     sync_opts, cmd_sync, 1},
    {"pull", "[--quiet]",
     "(coordinator) Replicate the project: fetch exactly what this store lacks of every\n"
     "device, verify every signature, content hash and chain, and merge.",
     pull_opts, cmd_pull, 1},
    {"devices", "[--json]",
     "(coordinator) Completeness per device, from the server's signed listing.", devices_opts,
     cmd_devices, 1},
    {"token", "create --role researcher [--name N] [--ttl 7d]",
     "(coordinator) Make a researcher's enrollment token; prints it alone on stdout.", token_opts,
     cmd_token, 1},
    {"device", "revoke FEED [--accept-through SEQ]",
     "(coordinator) Revoke a lost laptop: later pushes are refused.", revoke_opts, cmd_device, 1},
    {"bundle", "FILE [--all]",
     "Write what the server lacks of this device (by its last receipt) to FILE, sealed to\n"
     "the project's server and signed: a push that anyone can carry on a USB stick.",
     bundle_opts, cmd_bundle, 1},
    {"relay", "BUNDLE",
     "Carry another device's bundle to the server. Each batch is checked here first; the\n"
     "server checks it as a push from that device, so it counts exactly once.",
     relay_opts, cmd_relay, 1},
};

int
main(int argc, char **argv)
{
    return cli_main(argc, argv, commands, FS_ARRAY_LEN(commands));
}
