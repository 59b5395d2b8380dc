/*
 * The fieldsync command line: shared pieces of its subcommands. Each command
 * is a row of a table (cli_main.c) with its own option table, which drives
 * parsing and --help alike. Commands return an exit code (sysexits, DESIGN §8);
 * only main() exits.
 */
#ifndef CLI_H
#define CLI_H

#include <stdio.h>

#include "fs_err.h"
#include "store.h"

/* Exit codes (DESIGN §8). */
enum {
    EX_DONE = 0,
    EX_USAGE_ = 64,
    EX_DATA = 65,
    EX_NOCONN = 69,
    EX_INTERNAL = 70,
    EX_IOERR_ = 74,
    EX_RETRY = 75,
    EX_PROTOCOL = 76,
    EX_AUTH = 77
};

struct cli_opt {
    const char *name; /* long name, without "--" */
    int has_arg;      /* 0: a flag; 1: takes a value */
    const char *argname;
    const char *help;
};

struct cli;

struct cli_cmd {
    const char *name;
    const char *synopsis; /* after "fieldsync NAME " */
    const char *summary;
    const struct cli_opt *opts; /* terminated by a row with name NULL */
    int (*run)(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv);
    int needs_store;
};

/* Parsed arguments: options in the order given (repeatable ones appear
 * several times) and positional arguments. Values are borrowed from argv. */
struct cli_args {
    size_t n;
    int *opt; /* index into the command's option table */
    const char **val;
    size_t npos;
    const char **pos;
};

struct cli {
    const char *home_flag;
    char *home;          /* resolved home folder */
    struct store *store; /* opened for commands that need it */
    int color;           /* 1: use colour on stdout */
    int stdout_tty, stdin_tty, stderr_tty;
    char *editor_pref; /* from config.ini */
    char *color_pref;
    char **argv0; /* the process's argv, for handing over to the helper */
};

/* The common main of fieldsync and fieldsync-remote. */
int cli_main(int argc, char **argv, const struct cli_cmd *commands, size_t ncommands);
/* Runs the same command line in the fieldsync-remote helper (never returns
 * on success). */
int cli_exec_remote(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv);

/* Parses argv (argv[0] is the command name). On --help prints help and
 * returns 0 with *done set; on a usage error prints it and returns 64. */
int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, struct cli_args *a, int *done);
void cli_args_release(struct cli_args *a);
/* The last value of option i, or NULL. */
const char *cli_arg(const struct cli_args *a, int i);
/* How many times option i was given. */
int cli_flag(const struct cli_args *a, int i);
void cli_help(const struct cli_cmd *cmd, FILE *out);

/* Prints "fieldsync: MESSAGE" on stderr and returns the exit code for rc. */
int cli_fail(enum fs_rc rc, const struct fs_err *err);
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int cli_exit_code(enum fs_rc rc);

/* Reads a whole file or stdin ("-") up to max bytes; caller frees. */
FS_WUR enum fs_rc cli_read_all(const char *path, size_t max, char **out, size_t *len,
                               struct fs_err *err);
/* Runs the user's editor on path (FIELDSYNC_EDITOR, config, VISUAL, EDITOR, vi). */
FS_WUR enum fs_rc cli_run_editor(struct cli *cli, const char *path, struct fs_err *err);
/* Prompts on stderr and reads one line from the terminal; *out NULL at EOF. */
FS_WUR enum fs_rc cli_prompt(const char *question, char **out, struct fs_err *err);

/* Display width of UTF-8 text in terminal columns (wide characters count 2). */
size_t cli_text_width(const char *s, size_t len);
/* Writes at most cols columns of s, with "…" when cut; pads to cols. */
void cli_put_cell(FILE *out, const char *s, size_t cols, int pad);

/* Local "now" as RFC 3339 with the local offset, seconds precision. */
void cli_now_rfc3339(char out[PROTO_TIME_MAX_LEN]);
/* A --at / --since value: RFC 3339, or "YYYY-MM-DD[ HH:MM[:SS]]" in local
 * time. out receives RFC 3339 text; ms the instant. */
FS_WUR enum fs_rc cli_parse_time(const char *s, char out[PROTO_TIME_MAX_LEN], int64_t *ms);

/* Shared by add and edit: parses --site, --gps etc. into c. */
struct cli_content_opts {
    const char *site, *region, *gps, *at, *author, *note;
    const char **fields;
    size_t n_fields;
};

/* Commands. */
int cmd_init(struct cli *, const struct cli_cmd *, int, char **);
int cmd_add(struct cli *, const struct cli_cmd *, int, char **);
int cmd_edit(struct cli *, const struct cli_cmd *, int, char **);
int cmd_rm(struct cli *, const struct cli_cmd *, int, char **);
int cmd_show(struct cli *, const struct cli_cmd *, int, char **);
int cmd_resolve(struct cli *, const struct cli_cmd *, int, char **);
int cmd_import(struct cli *, const struct cli_cmd *, int, char **);
int cmd_list(struct cli *, const struct cli_cmd *, int, char **);
int cmd_status(struct cli *, const struct cli_cmd *, int, char **);
int cmd_config(struct cli *, const struct cli_cmd *, int, char **);
int cmd_verify(struct cli *, const struct cli_cmd *, int, char **);
int cmd_export(struct cli *, const struct cli_cmd *, int, char **);
int cmd_attach(struct cli *, const struct cli_cmd *, int, char **);
int cmd_gc(struct cli *, const struct cli_cmd *, int, char **);
int cmd_heartbeat(struct cli *, const struct cli_cmd *, int, char **);

#endif
