/* The shared start of fieldsync and fieldsync-remote: global options,
 * personal preferences, the store, and the command's run. */
#include "cli.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FS_LIBEXECDIR
#define FS_LIBEXECDIR "/usr/local/libexec"
#endif

static void
usage(FILE *out, const struct cli_cmd *commands, size_t ncommands)
{
    size_t i;

    fprintf(out, "usage: fieldsync [--home DIR] [--color=auto|always|never] COMMAND [ARGS]\n"
                 "       fieldsync --version\n\ncommands:\n");
    for (i = 0; i < ncommands; i++) {
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
cli_exec_remote(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    char self[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n;
    char *slash;

    (void)cli;
    (void)cmd;
    (void)argc;
    (void)argv;
    /* Next to this binary (a build tree), else the installed helper. */
    n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            snprintf(path, sizeof path, "%s/fieldsync-remote", self);
            if (access(path, X_OK) == 0)
                goto run;
        }
    }
    snprintf(path, sizeof path, "%s/fieldsync/fieldsync-remote", FS_LIBEXECDIR);
run:
    fflush(stdout);
    cli->argv0[0] = path;
    execv(path, cli->argv0);
    fprintf(stderr, "fieldsync: cannot run %s: %s\n", path, strerror(errno));
    return EX_INTERNAL;
}

int
cli_main(int argc, char **argv, const struct cli_cmd *commands, size_t ncommands)
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
            usage(stdout, commands, ncommands);
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
        usage(stderr, commands, ncommands);
        return EX_USAGE_;
    }
    cli.argv0 = argv;
    for (i = 0; i < ncommands; i++)
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
