/* fieldsync: the command line of researchers and coordinators. This file holds
 * the table of commands; those that talk to the network run in the
 * fieldsync-remote helper, so that libcurl never loads for the local ones. */
#include "cli.h"

#include <string.h>

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
        {"edit", 0, NULL, "open $VISUAL/$EDITOR on the record before saving"},                     \
    {                                                                                              \
        "attach", 1, "FILE", "attach a photo or recording (repeatable)"                            \
    }

const struct cli_opt cli_add_opts[] = {CONTENT_OPTS, {NULL, 0, NULL, NULL}};
const struct cli_opt cli_edit_opts[] = {
    CONTENT_OPTS, {"kind", 1, "KIND", "change the kind"}, {NULL, 0, NULL, NULL}};

static const struct cli_opt show_opts[] = {{"json", 0, NULL, "machine-readable output"},
                                           {NULL, 0, NULL, NULL}};
static const struct cli_opt resolve_opts[] = {
    {"keep", 1, "REV", "the revision (hex prefix) that stays; the others are deleted"},
    {NULL, 0, NULL, NULL}};
static const struct cli_opt gc_opts[] = {
    {"uploaded", 0, NULL, "free local copies of attachments the server holds durably"},
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

static const struct cli_opt export_opts[] = {
    {"format", 1, "csv|jsonl|geojson", "the format"},
    {"out", 1, "F", "write to F (whole or not at all) instead of standard output"},
    {"kind", 1, "K", "only this kind"},
    {"since", 1, "T", "only records observed at or after T (compared in UTC)"},
    {"excel", 0, NULL, "CSV for Excel: a byte order mark, formula-like text cells neutralised"},
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
    {"attach", "ID FILE", "Add a photo or recording to a record.", no_opts, cmd_attach, 1},
    {"gc", "--uploaded", "Free local copies of attachments the server holds durably.", gc_opts,
     cmd_gc, 1},
    {"resolve", "ID --keep REV", "Settle a conflict: keep one revision, delete the others.",
     resolve_opts, cmd_resolve, 1},
    {"export", "--format csv|jsonl|geojson [--out F] [--kind K] [--since T] [--excel]",
     "Export the merged records for analysis (Excel, R, Stata, QGIS).", export_opts, cmd_export, 1},
    {"config", "[get KEY | set KEY VALUE | unset KEY]",
     "Show or change this store's settings; without arguments, every value and its source.",
     no_opts, cmd_config, 1},
    {"status", "[--json]", "What this device holds and what the server has of it.", status_opts,
     cmd_status, 1},
    {"verify", "", "Re-check the store: database, every chain, signature and content hash.",
     no_opts, cmd_verify, 1},
    {"heartbeat", "",
     "Print a short signed line saying what this device holds. Anyone may carry it to the\n"
     "server (a text message, a phone call, a coordinator's laptop): 'fieldsync-server\n"
     "heartbeat LINE' records it, and the completeness report then shows what is missing.",
     no_opts, cmd_heartbeat, 1},
    {"enroll", "URL (--token T | --token-file F|-) [--cacert F]",
     "Join a project's server with an enrollment token.", NULL, cli_exec_remote, 0},
    {"sync", "[--quiet]", "Push now what the server lacks; fetch coordinators' corrections.", NULL,
     cli_exec_remote, 0},
    {"pull", "[--attachments] [--quiet]", "(coordinator) Replicate and verify the whole project.",
     NULL, cli_exec_remote, 0},
    {"devices", "[--json]", "(coordinator) Completeness per device.", NULL, cli_exec_remote, 0},
    {"token", "create --role researcher [--name N] [--ttl 7d]",
     "(coordinator) Make a researcher's enrollment token.", NULL, cli_exec_remote, 0},
    {"device", "revoke FEED [--accept-through SEQ]", "(coordinator) Revoke a lost laptop.", NULL,
     cli_exec_remote, 0},
    {"bundle", "FILE [--all]", "Write what the server lacks to FILE, sealed, to carry by hand.",
     NULL, cli_exec_remote, 0},
    {"relay", "BUNDLE", "Carry another device's bundle to the server.", NULL, cli_exec_remote, 0},
};

int
main(int argc, char **argv)
{
    return cli_main(argc, argv, commands, FS_ARRAY_LEN(commands));
}
