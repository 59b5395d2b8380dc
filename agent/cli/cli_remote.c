/* fieldsync-remote: the commands of fieldsync that talk to the network. The
 * fieldsync binary hands these command lines over unchanged, so that libcurl
 * is loaded only here. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "proto_auth.h"
#include "sync.h"

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
    struct sync_push_result res;
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
    memset(&p, 0, sizeof p);
    p.cli = cli;
    p.show = !quiet && cli->stderr_tty;
    rc = sync_http_for_store(cli->store, &h, &err);
    if (!rc)
        rc = sync_push(cli->store, h, show_progress, &p, warn_line, &res, &err);
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
    if (!quiet)
        fprintf(stderr, "synced: %llu entries sent; the server holds all %llu\n",
                (unsigned long long)res.pushed, (unsigned long long)res.server_have);
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
};

int
main(int argc, char **argv)
{
    return cli_main(argc, argv, commands, FS_ARRAY_LEN(commands));
}
