/* fieldsync: the command line of researchers and coordinators. This file holds
 * the command table, the global options and the personal preferences. */
#include "cli.h"

#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct cli_opt no_opts[] = {{NULL, 0, NULL, NULL}};

static const struct cli_opt init_opts[] = {
    {"name", 1, "NAME", "this device's name, as coordinators will see it"}, {NULL, 0, NULL, NULL}};

#define CONTENT_OPTS                                                                               \
    {"site", 1, "S", "site name"}, {"region", 1, "R", "region, e.g. 天津市/宝坻区"},               \
        {"gps", 1, "LAT,LON[,ACC]", "position in degrees (WGS84), accuracy in metres"},            \
        {"at", 1, "TIME", "when it was observed (RFC 3339, or YYYY-MM-DD HH:MM local)"},           \
        {"author", 1, "A", "who recorded it"},                                                     \
        {"field", 1, "K=V", "a named field (repeatable); K= removes it"},                          \
        {"note", 1, "TEXT|-", "free text; - reads it from standard input"},                        \
    {                                                                                              \
        "edit", 0, NULL, "open $VISUAL/$EDITOR on the record before saving"                        \
    }

const struct cli_opt cli_add_opts[] = {CONTENT_OPTS, {NULL, 0, NULL, NULL}};
const struct cli_opt cli_edit_opts[] = {
    CONTENT_OPTS, {"kind", 1, "KIND", "change the kind"}, {NULL, 0, NULL, NULL}};

static const struct cli_opt show_opts[] = {{"json", 0, NULL, "machine-readable output"},
                                           {NULL, 0, NULL, NULL}};
static const struct cli_opt resolve_opts[] = {
    {"keep", 1, "REV", "the revision (hex prefix) that stays; the others are deleted"},
    {NULL, 0, NULL, NULL}};
static const struct cli_opt import_opts[] = {
    {"again", 0, NULL, "import a file that was imported before"}, {NULL, 0, NULL, NULL}};
static const struct cli_opt list_opts[] = {
    {"kind", 1, "K", "only this kind"},
    {"since", 1, "T", "only records observed at or after T (compared in UTC)"},
    {"unsynced", 0, NULL, "only records the server does not hold yet"},
    {"conflicts", 0, NULL, "only records with conflicting revisions"},
    {"json", 0, NULL, "machine-readable output (a JSON array)"},
    {NULL, 0, NULL, NULL}};
static const struct cli_opt status_opts[] = {{"json", 0, NULL, "machine-readable output"},
                                             {NULL, 0, NULL, NULL}};

static const struct cli_cmd commands[] = {
    {"init", "--name NAME", "Make this device's keys and its store.", init_opts, cmd_init, 0},
    {"add", "KIND [options]",
     "Record an interview, an observation or any KIND ([a-z][a-z0-9_-]*).\n"
     "Missing parts are asked for on a terminal. Prints the new record's id.",
     cli_add_opts, cmd_add, 1},
    {"import", "FILE [--again]",
     "Import records from JSON Lines or CSV (the export's columns), all or nothing.", import_opts,
     cmd_import, 1},
    {"list", "[options]", "List records.", list_opts, cmd_list, 1},
    {"show", "ID [--json]", "Show one record, its revisions and conflicts.", show_opts, cmd_show,
     1},
    {"edit", "ID [options]",
     "Change a record. Without options it opens $VISUAL/$EDITOR on the record.", cli_edit_opts,
     cmd_edit, 1},
    {"rm", "ID", "Delete a record (a signed delete; history is kept).", no_opts, cmd_rm, 1},
    {"resolve", "ID --keep REV", "Settle a conflict: keep one revision, delete the others.",
     resolve_opts, cmd_resolve, 1},
    {"config", "[get KEY | set KEY VALUE | unset KEY]",
     "Show or change this store's settings; without arguments, every value and its source.",
     no_opts, cmd_config, 1},
    {"status", "[--json]", "What this device holds and what the server has of it.", status_opts,
     cmd_status, 1},
    {"verify", "", "Re-check the store: database, every chain, signature and content hash.",
     no_opts, cmd_verify, 1},
};

static void
usage(FILE *out)
{
    size_t i;

    fprintf(out, "usage: fieldsync [--home DIR] [--color=auto|always|never] COMMAND [ARGS]\n"
                 "       fieldsync --version\n\ncommands:\n");
    for (i = 0; i < FS_ARRAY_LEN(commands); i++) {
        const char *nl = strchr(commands[i].summary, '\n');
        int len = nl ? (int)(nl - commands[i].summary) : (int)strlen(commands[i].summary);

        fprintf(out, "  %-9s %.*s\n", commands[i].name, len, commands[i].summary);
    }
    fprintf(out, "\nThe store lives in --home, else $FIELDSYNC_HOME, else "
                 "$XDG_DATA_HOME/fieldsync.\n'fieldsync COMMAND --help' describes each command.\n");
}

static int
prefs_handler(void *user, const char *section, const char *name, const char *value)
{
    struct cli *cli = user;

    if (strcmp(section, "ui") != 0 && section[0] != 0)
        return 1;
    if (strcmp(name, "editor") == 0) {
        free(cli->editor_pref);
        cli->editor_pref = strdup(value);
    } else if (strcmp(name, "color") == 0) {
        free(cli->color_pref);
        cli->color_pref = strdup(value);
    }
    return 1;
}

/* Personal preferences: $XDG_CONFIG_HOME/fieldsync/config.ini ([ui] editor,
 * color). Missing is fine; a malformed file is reported and ignored. */
static void
load_prefs(struct cli *cli)
{
    const char *x = getenv("XDG_CONFIG_HOME"), *h = getenv("HOME");
    char path[4096];
    int r;

    if (x && *x == '/')
        snprintf(path, sizeof path, "%s/fieldsync/config.ini", x);
    else if (h && *h)
        snprintf(path, sizeof path, "%s/.config/fieldsync/config.ini", h);
    else
        return;
    if (access(path, R_OK) != 0)
        return;
    r = ini_parse(path, prefs_handler, cli);
    if (r > 0)
        fprintf(stderr, "fieldsync: warning: %s line %d is malformed; ignored\n", path, r);
}

static int
color_mode(const char *v, int tty)
{
    if (!v || strcmp(v, "auto") == 0)
        return tty && !getenv("NO_COLOR");
    if (strcmp(v, "always") == 0)
        return 1;
    return 0;
}

int
main(int argc, char **argv)
{
    struct cli cli;
    const struct cli_cmd *cmd = NULL;
    const char *color = NULL;
    struct fs_err err = {{0}};
    enum fs_rc rc;
    size_t i;
    int k = 1, code;

    memset(&cli, 0, sizeof cli);
    if (proto_init()) {
        fprintf(stderr, "fieldsync: cannot initialise libsodium\n");
        return EX_INTERNAL;
    }
    for (; k < argc && argv[k][0] == '-'; k++) {
        const char *a = argv[k];

        if (strcmp(a, "--version") == 0) {
            printf("fieldsync %s\n", FS_VERSION);
            return 0;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--home") == 0 && k + 1 < argc) {
            cli.home_flag = argv[++k];
        } else if (strncmp(a, "--home=", 7) == 0) {
            cli.home_flag = a + 7;
        } else if (strncmp(a, "--color=", 8) == 0) {
            color = a + 8;
            if (strcmp(color, "auto") && strcmp(color, "always") && strcmp(color, "never"))
                return cli_usage("--color takes auto, always or never");
        } else {
            return cli_usage("unknown option %s; see 'fieldsync --help'", a);
        }
    }
    if (k >= argc) {
        usage(stderr);
        return EX_USAGE_;
    }
    for (i = 0; i < FS_ARRAY_LEN(commands); i++)
        if (strcmp(argv[k], commands[i].name) == 0)
            cmd = &commands[i];
    if (!cmd)
        return cli_usage("'%s' is not a fieldsync command; see 'fieldsync --help'", argv[k]);

    cli.stdout_tty = isatty(1);
    cli.stdin_tty = isatty(0);
    cli.stderr_tty = isatty(2);
    load_prefs(&cli);
    if (!color)
        color = getenv("FIELDSYNC_COLOR") ? getenv("FIELDSYNC_COLOR") : cli.color_pref;
    cli.color = color_mode(color, cli.stdout_tty);

    rc = store_home_resolve(cli.home_flag, &cli.home, &err);
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    if (cmd->needs_store) {
        /* --help must work without a store. */
        int j;

        for (j = k + 1; j < argc; j++)
            if (strcmp(argv[j], "--help") == 0 || strcmp(argv[j], "-h") == 0)
                break;
        if (j == argc) {
            rc = store_open(cli.home, &cli.store, &err);
            if (rc) {
                /* No store yet is a usage mistake: run init first. */
                code = rc == FS_ENOTFOUND ? (cli_fail(rc, &err), EX_USAGE_) : cli_fail(rc, &err);
                goto out;
            }
        }
    }
    code = cmd->run(&cli, cmd, argc - k, argv + k);
out:
    store_close(cli.store);
    free(cli.home);
    free(cli.editor_pref);
    free(cli.color_pref);
    if (fflush(stdout) != 0 && code == 0) {
        fprintf(stderr, "fieldsync: cannot write the output\n");
        code = EX_IOERR_;
    }
    return code;
}
