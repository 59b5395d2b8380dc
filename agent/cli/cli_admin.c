/* init, config and verify: setting a store up and checking it. */
#include "cli.h"

#include "proto_auth.h"

#include <stdlib.h>
#include <string.h>

/* Per-store settings (DESIGN §7). Read-only ones are set by enroll and sync. */
struct setting {
    const char *key;
    const char *def;
    int writable;
    int (*check)(const char *v);
    const char *help;
};

static int
check_text(const char *v)
{
    return proto_utf8_check(v, strlen(v)) == FS_OK && strlen(v) <= PROTO_TEXT_MAX_BYTES &&
           !strpbrk(v, "\n\r\t");
}

static int
check_uint(const char *v)
{
    char *end;
    unsigned long long n = strtoull(v, &end, 10);

    return *v >= '0' && *v <= '9' && *end == 0 && n > 0 && n < (1ull << 40);
}

static int
check_url(const char *v)
{
    return (strncmp(v, "https://", 8) == 0 || strncmp(v, "http://", 7) == 0) && strlen(v) < 2048 &&
           !strpbrk(v, " \t\r\n");
}

static int
check_path(const char *v)
{
    return *v && strlen(v) < 4096 && !strpbrk(v, "\r\n");
}

static int
check_role(const char *v)
{
    return strcmp(v, "researcher") == 0 || strcmp(v, "coordinator") == 0;
}

static const struct setting settings[] = {
    {"server", NULL, 1, check_url,
     "the server's URL (https; plain http only to a loopback address)"},
    {"cacert", NULL, 1, check_path, "a CA certificate file that signs the server's certificate"},
    {"name", NULL, 1, check_text, "this device's name"},
    {"author", NULL, 1, check_text, "the author given to new records"},
    {"backoff_base_ms", "2000", 1, check_uint, "first retry delay of the daemon"},
    {"backoff_max_ms", "900000", 1, check_uint, "longest retry delay of the daemon"},
    {"batch_max_bytes", "4194304", 1, check_uint, "largest batch sent in one push"},
    {"batch_max_entries", "5000", 1, check_uint, "most entries sent in one push"},
    {"pull_page", "2000", 1, check_uint, "most entries fetched per request by pull (up to 5000)"},
    {"blob_chunk", "1048576", 1, check_uint,
     "the next attachment chunk's size (adapts: smaller after a cut, larger after a success)"},
    {"connect_timeout_ms", "10000", 1, check_uint, "how long to wait for a connection"},
    {"request_timeout_ms", "600000", 1, check_uint, "the longest one request may take"},
    {"server_key", NULL, 0, NULL, "the server's key, pinned at enrollment"},
    {"project", NULL, 0, check_text, "the project this device is enrolled in"},
    {"role", NULL, 0, check_role, "researcher or coordinator"},
};

static const struct setting *
find_setting(const char *key)
{
    size_t i;

    for (i = 0; i < FS_ARRAY_LEN(settings); i++)
        if (strcmp(settings[i].key, key) == 0)
            return &settings[i];
    return NULL;
}

int
cmd_init(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    unsigned char feed[PROTO_KEY_BYTES];
    char hex[2 * PROTO_KEY_BYTES + 1];
    enum fs_rc rc;
    int done, code;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos || !cli_arg(&a, 0)) {
        code = cli_usage("usage: fieldsync init --name NAME");
        goto out;
    }
    rc = store_init(cli->home, cli_arg(&a, 0), feed, &err);
    if (rc == FS_EEXIST) {
        fprintf(stderr, "fieldsync: %s\n", err.msg);
        code = EX_USAGE_;
        goto out;
    }
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    proto_hex_encode(feed, PROTO_KEY_BYTES, hex);
    printf("%s\n", hex);
    fprintf(stderr, "initialised %s; this device's feed is %.16s\n", cli->home, hex);
out:
    cli_args_release(&a);
    return code;
}

static void
print_setting(struct cli *cli, const struct setting *s)
{
    char *v = NULL;
    struct fs_err err;

    if (store_setting_get(cli->store, s->key, &v, &err) != FS_OK)
        v = NULL;
    printf("%-18s %-40s %s\n", s->key, v ? v : (s->def ? s->def : "(unset)"),
           v ? "store" : (s->def ? "default" : ""));
    free(v);
}

int
cmd_config(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    const struct setting *s;
    const char *verb;
    char *v = NULL;
    enum fs_rc rc;
    size_t i;
    int done, code;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos == 0) {
        const char *ed = getenv("FIELDSYNC_EDITOR");

        for (i = 0; i < FS_ARRAY_LEN(settings); i++)
            print_setting(cli, &settings[i]);
        if (ed && *ed)
            printf("%-18s %-40s %s\n", "editor", ed, "environment (FIELDSYNC_EDITOR)");
        else if (cli->editor_pref)
            printf("%-18s %-40s %s\n", "editor", cli->editor_pref, "config.ini");
        else
            printf("%-18s %-40s %s\n", "editor",
                   getenv("VISUAL") ? getenv("VISUAL")
                                    : (getenv("EDITOR") ? getenv("EDITOR") : "vi"),
                   getenv("VISUAL") ? "environment (VISUAL)"
                                    : (getenv("EDITOR") ? "environment (EDITOR)" : "default"));
        printf("%-18s %-40s %s\n", "color", cli->color_pref ? cli->color_pref : "auto",
               cli->color_pref ? "config.ini" : "default");
        goto out;
    }
    verb = a.pos[0];
    if ((strcmp(verb, "get") == 0 && a.npos == 2) || (strcmp(verb, "unset") == 0 && a.npos == 2) ||
        (strcmp(verb, "set") == 0 && a.npos == 3)) {
        s = find_setting(a.pos[1]);
        if (!s) {
            code = cli_usage("'%s' is not a setting; 'fieldsync config' lists them", a.pos[1]);
            goto out;
        }
    } else {
        code = cli_usage("usage: fieldsync config [get KEY | set KEY VALUE | unset KEY]");
        goto out;
    }
    if (strcmp(verb, "get") == 0) {
        rc = store_setting_get(cli->store, s->key, &v, &err);
        if (rc) {
            code = cli_fail(rc, &err);
            goto out;
        }
        if (!v && !s->def) {
            fprintf(stderr, "fieldsync: %s is not set\n", s->key);
            code = EX_DATA;
            goto out;
        }
        printf("%s\n", v ? v : s->def);
        goto out;
    }
    if (!s->writable) {
        code = cli_usage("%s is set by fieldsync itself (%s)", s->key, s->help);
        goto out;
    }
    if (strcmp(verb, "set") == 0 && !s->check(a.pos[2])) {
        fprintf(stderr, "fieldsync: that is not a valid value for %s: %s\n", s->key, s->help);
        code = EX_DATA;
        goto out;
    }
    rc = store_setting_set(cli->store, s->key, strcmp(verb, "set") == 0 ? a.pos[2] : NULL, &err);
    if (rc)
        code = cli_fail(rc, &err);
out:
    free(v);
    cli_args_release(&a);
    return code;
}

static void
print_problem(void *ctx, const char *line)
{
    (void)ctx;
    fprintf(stderr, "verify: %s\n", line);
}

static int
check_count(const char *v) /* 0 allowed */
{
    return strcmp(v, "0") == 0 || check_uint(v);
}

static int
check_offset(const char *v)
{
    return check_count(*v == '-' ? v + 1 : v);
}

/* Settings the agent keeps for itself, beyond the table above. */
static const struct setting kept[] = {
    {"batch_hint", NULL, 0, check_uint, NULL},
    {"corrections_cursor", NULL, 0, check_count, NULL},
    {"clock_offset_s", NULL, 0, check_offset, NULL},
    {"last_sync", NULL, 0, check_text, NULL},
    {"last_error", NULL, 0, check_text, NULL},
};

/* Every setting held must be one that config set, enroll or sync could have
 * written; a damaged one would otherwise show only when it is used. (The
 * pinned server key is checked by store_verify, with the receipts.) */
static uint64_t
check_settings(struct cli *cli)
{
    uint64_t problems = 0;
    size_t i;

    for (i = 0; i < FS_ARRAY_LEN(settings) + FS_ARRAY_LEN(kept); i++) {
        const struct setting *st =
            i < FS_ARRAY_LEN(settings) ? &settings[i] : &kept[i - FS_ARRAY_LEN(settings)];
        struct fs_err e;
        char *v = NULL;

        if (!st->check)
            continue;
        if (store_setting_get(cli->store, st->key, &v, &e) != FS_OK) {
            fprintf(stderr, "verify: setting %s: unreadable\n", st->key);
            problems++;
        } else if (v && !st->check(v)) {
            fprintf(stderr, "verify: setting %s: the stored value is malformed\n", st->key);
            problems++;
        }
        free(v);
    }
    return problems;
}

int
cmd_verify(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    uint64_t problems = 0, entries = 0;
    enum fs_rc rc;
    int done, code;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    rc = store_verify(cli->store, print_problem, NULL, &problems, &entries, &err);
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    problems += check_settings(cli);
    if (problems) {
        fprintf(stderr,
                "fieldsync: verify found %llu problem%s in %s; the store was not changed — keep "
                "a copy of the folder before anything else\n",
                (unsigned long long)problems, problems == 1 ? "" : "s", cli->home);
        code = EX_DATA;
        goto out;
    }
    printf("ok: %llu entries, their chains, signatures and content verified; receipts and "
           "settings too\n",
           (unsigned long long)entries);
out:
    cli_args_release(&a);
    return code;
}

/* heartbeat: a short signed line saying what this device holds, for a
 * coordinator to carry to the server when the laptop cannot reach it. */
int
cmd_heartbeat(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    char line[PROTO_HEARTBEAT_LINE_LEN + 1];
    enum fs_rc rc;
    int done, code;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos) {
        code = cli_usage("usage: fieldsync heartbeat");
        goto out;
    }
    rc = store_heartbeat(cli->store, line, &err);
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    printf("%s\n", line);
out:
    cli_args_release(&a);
    return code;
}
