/* list and status: what the store holds, for people and for scripts. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#include "proto_json.h"
#include "sync_daemon.h"

static const char *const state_names[] = {"", "live", "deleted", "contested", "incomplete"};

/* Appends a record as one JSON object: id, state, gen, feed, synced and
 * conflicts, then the content's own keys copied byte for byte. */
static enum fs_rc
record_json(struct fs_buf *b, const struct store_record *r)
{
    char owner[2 * PROTO_KEY_BYTES + 1];
    enum fs_rc rc;

    proto_hex_encode(r->owner, PROTO_KEY_BYTES, owner);
    rc = fs_buf_printf(b, "{\"id\":\"%s\",\"state\":\"%s\",\"gen\":%llu,", r->id,
                       state_names[r->state], (unsigned long long)r->gen);
    if (!rc)
        rc = r->has_owner ? fs_buf_printf(b, "\"feed\":\"%s\",", owner)
                          : fs_buf_adds(b, "\"feed\":null,");
    if (!rc)
        rc = fs_buf_printf(b, "\"synced\":%s,\"conflicts\":%zu", r->synced ? "true" : "false",
                           r->n_conflicts);
    if (!rc && r->content && r->content_len > 2 && r->content[0] == '{') {
        rc = fs_buf_addc(b, ',');
        if (!rc)
            rc = fs_buf_add(b, r->content + 1, r->content_len - 1);
    } else if (!rc) {
        rc = fs_buf_addc(b, '}');
    }
    return rc;
}

struct list_ctx {
    struct cli *cli;
    int json, first;
    struct fs_buf buf;
    char (*ids)[PROTO_UUID_LEN + 1]; /* every record id, sorted: for short ids */
    size_t n_ids;
    size_t shown;
    size_t id_width; /* common width of the short ids */
};

static int
id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The shortest prefix (at least 8 characters) that names only this id. */
static size_t
short_len(const struct list_ctx *lc, const char *id)
{
    char(*hit)[PROTO_UUID_LEN + 1] = bsearch(id, lc->ids, lc->n_ids, sizeof *lc->ids, id_cmp);
    size_t need = 8, i, k;

    if (!hit)
        return PROTO_UUID_LEN;
    k = (size_t)(hit - lc->ids);
    for (i = k ? k - 1 : k; i <= k + 1 && i < lc->n_ids; i++) {
        size_t common = 0;

        if (i == k)
            continue;
        while (common < PROTO_UUID_LEN && lc->ids[i][common] == id[common])
            common++;
        if (common + 1 > need)
            need = common + 1;
    }
    return need;
}

static int
collect_id(void *ctx, const struct store_record *r)
{
    struct list_ctx *lc = ctx;
    char(*n)[PROTO_UUID_LEN + 1];

    if ((lc->n_ids & (lc->n_ids - 1)) == 0) {
        n = realloc(lc->ids, (lc->n_ids ? lc->n_ids * 2 : 1) * sizeof *n);
        if (!n)
            return 1;
        lc->ids = n;
    }
    memcpy(lc->ids[lc->n_ids++], r->id, PROTO_UUID_LEN + 1);
    return 0;
}

static int
list_one(void *ctx, const struct store_record *r)
{
    struct list_ctx *lc = ctx;
    struct proto_content c;
    FILE *out = stdout;
    char when[17] = "";
    const char *site = "", *note = "";
    int parsed = 0;

    lc->shown++;
    if (lc->json) {
        if (!lc->first && fs_buf_addc(&lc->buf, ','))
            return 1;
        lc->first = 0;
        if (record_json(&lc->buf, r))
            return 1;
        if (lc->buf.len > (1u << 20)) {
            fwrite(lc->buf.data, 1, lc->buf.len, stdout);
            fs_buf_reset(&lc->buf);
        }
        return 0;
    }
    if (r->content && proto_content_parse(r->content, r->content_len, &c, NULL) == FS_OK) {
        parsed = 1;
        snprintf(when, sizeof when, "%.16s", c.observed_at);
        if (when[10] == 'T')
            when[10] = ' ';
        site = c.site_name ? c.site_name : (c.region ? c.region : "");
        note = c.note ? c.note : "";
    }
    fprintf(out, "%-*.*s  ", (int)lc->id_width, (int)short_len(lc, r->id), r->id);
    cli_put_cell(out, r->state == PROTO_REC_LIVE ? r->kind : state_names[r->state], 12, 1);
    fprintf(out, "  %-16s  ", when);
    cli_put_cell(out, site, 24, 1);
    fputs("  ", out);
    cli_put_cell(out, note, 36, 1);
    if (lc->cli->color)
        fprintf(out, "  %s%s\033[0m", r->synced ? "\033[32msynced" : "\033[33mnot synced",
                r->n_conflicts || r->state == PROTO_REC_CONTESTED ? " \033[31m!conflict" : "");
    else
        fprintf(out, "  %s%s", r->synced ? "synced" : "not synced",
                r->n_conflicts || r->state == PROTO_REC_CONTESTED ? " !conflict" : "");
    fputc('\n', out);
    if (parsed)
        proto_content_release(&c);
    return 0;
}

enum { L_KIND, L_SINCE, L_UNSYNCED, L_CONFLICTS, L_JSON };

int
cmd_list(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct store_filter f, all;
    struct list_ctx lc;
    struct fs_err err = {{0}};
    char when[PROTO_TIME_MAX_LEN];
    enum fs_rc rc;
    int done, code;

    memset(&lc, 0, sizeof lc);
    memset(&f, 0, sizeof f);
    memset(&all, 0, sizeof all);
    lc.cli = cli;
    lc.first = 1;
    fs_buf_init(&lc.buf, 8u << 20);
    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos) {
        code = cli_usage("list takes no arguments; see 'fieldsync list --help'");
        goto out;
    }
    f.kind = cli_arg(&a, L_KIND);
    if (f.kind && proto_kind_check(f.kind)) {
        code = cli_usage("--kind takes a kind such as interview");
        goto out;
    }
    if (cli_arg(&a, L_SINCE)) {
        if (cli_parse_time(cli_arg(&a, L_SINCE), when, &f.since_ms)) {
            code = cli_usage("--since takes RFC 3339 or YYYY-MM-DD[ HH:MM] (local time)");
            goto out;
        }
        f.has_since = 1;
    }
    f.unsynced = cli_flag(&a, L_UNSYNCED);
    f.conflicts = cli_flag(&a, L_CONFLICTS);
    lc.json = cli_flag(&a, L_JSON);
    if (!lc.json) {
        all.with_deleted = 1;
        rc = store_records_each(cli->store, &all, collect_id, &lc, &err);
        if (rc == FS_EINTERNAL && !err.msg[0])
            rc = fs_err_set(&err, FS_ENOMEM, "out of memory");
        if (rc)
            goto fail;
        lc.id_width = 8;
        for (size_t i = 0; i < lc.n_ids; i++)
            if (short_len(&lc, lc.ids[i]) > lc.id_width)
                lc.id_width = short_len(&lc, lc.ids[i]);
    }
    if (lc.json && fs_buf_addc(&lc.buf, '[')) {
        rc = fs_err_set(&err, FS_ENOMEM, "out of memory");
        goto fail;
    }
    rc = store_records_each(cli->store, &f, list_one, &lc, &err);
    if (rc == FS_EINTERNAL && !err.msg[0])
        rc = fs_err_set(&err, FS_ENOMEM, "out of memory");
    if (rc)
        goto fail;
    if (lc.json) {
        if (fs_buf_adds(&lc.buf, "]\n")) {
            rc = fs_err_set(&err, FS_ENOMEM, "out of memory");
            goto fail;
        }
        fwrite(lc.buf.data, 1, lc.buf.len, stdout);
    } else if (lc.shown == 0 && cli->stdout_tty) {
        fprintf(stderr, "no records\n");
    }
    goto out;
fail:
    code = cli_fail(rc, &err);
out:
    free(lc.ids);
    fs_buf_release(&lc.buf);
    cli_args_release(&a);
    return code;
}

/* Appends a JSON string value or null. */
static enum fs_rc
jstr_or_null(struct fs_buf *b, const char *s)
{
    return s ? proto_jw_str(b, s, strlen(s)) : fs_buf_adds(b, "null");
}

/* What the daemon last did, one line: "AT: MESSAGE". */
static void
daemon_last_action(const struct sync_daemon_info *di, char *out, size_t cap)
{
    if (!di->has_last)
        snprintf(out, cap, "%s", "");
    else if (di->last_rc == FS_OK)
        snprintf(out, cap, "%s: %s", di->last_at, di->last_msg);
    else if (di->last_waiting)
        snprintf(out, cap, "%s: waiting: %s", di->last_at, di->last_msg);
    else
        snprintf(out, cap, "%s: failed: %s", di->last_at, di->last_msg);
}

/* "daemon":{"running":..,"pid":..,"state":..,"last_action":..,"next_try":..} */
static enum fs_rc
daemon_json(struct fs_buf *b, const struct sync_daemon_info *di)
{
    char last[SYNC_DAEMON_MSG_MAX + PROTO_TIME_MAX_LEN + 16];
    enum fs_rc rc;

    daemon_last_action(di, last, sizeof last);
    rc = fs_buf_printf(b, ",\"daemon\":{\"running\":%s,\"pid\":", di->running ? "true" : "false");
    if (!rc)
        rc = di->running && di->pid > 0 ? fs_buf_printf(b, "%ld", di->pid) : fs_buf_adds(b, "null");
    if (!rc)
        rc = fs_buf_adds(b, ",\"state\":");
    if (!rc)
        rc = jstr_or_null(b, di->running && di->state[0] ? di->state : NULL);
    if (!rc)
        rc = fs_buf_adds(b, ",\"last_action\":");
    if (!rc)
        rc = jstr_or_null(b, last[0] ? last : NULL);
    if (!rc)
        rc = fs_buf_adds(b, ",\"next_try\":");
    if (!rc)
        rc = jstr_or_null(b, di->running && di->next_try[0] ? di->next_try : NULL);
    if (!rc)
        rc = fs_buf_adds(b, "}");
    return rc;
}

int
cmd_status(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct sync_daemon_info di;
    char last_action[SYNC_DAEMON_MSG_MAX + PROTO_TIME_MAX_LEN + 16];
    struct cli_args a;
    struct store_status st;
    struct fs_err err = {{0}};
    struct fs_buf b;
    char feed[2 * PROTO_KEY_BYTES + 1];
    char *name = NULL, *server = NULL, *last_sync = NULL, *last_error = NULL, *receipt = NULL;
    enum fs_rc rc;
    int done, code;

    fs_buf_init(&b, 1u << 16);
    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    proto_hex_encode(store_feed(cli->store), PROTO_KEY_BYTES, feed);
    if ((rc = store_status_get(cli->store, &st, &err)) ||
        (rc = store_setting_get(cli->store, "name", &name, &err)) ||
        (rc = store_setting_get(cli->store, "server", &server, &err)) ||
        (rc = store_setting_get(cli->store, "last_sync", &last_sync, &err)) ||
        (rc = store_setting_get(cli->store, "last_error", &last_error, &err)) ||
        (rc = store_setting_get(cli->store, "last_receipt", &receipt, &err)) ||
        (rc = sync_daemon_probe(cli->home, &di, &err)))
        goto fail;
    daemon_last_action(&di, last_action, sizeof last_action);
    if (cli_flag(&a, 0)) {
        rc = fs_buf_printf(&b, "{\"feed\":\"%s\",\"name\":", feed);
        if (!rc)
            rc = jstr_or_null(&b, name);
        if (!rc)
            rc = fs_buf_adds(&b, ",\"home\":");
        if (!rc)
            rc = jstr_or_null(&b, cli->home);
        if (!rc)
            rc = fs_buf_printf(&b,
                               ",\"local_seq\":%llu,\"server\":", (unsigned long long)st.local_seq);
        if (!rc)
            rc = jstr_or_null(&b, server);
        if (!rc)
            rc = fs_buf_printf(&b,
                               ",\"server_have_seq\":%llu,\"pending_entries\":%llu,"
                               "\"pending_blob_bytes\":%llu,\"pending_blobs\":%llu,"
                               "\"records\":%llu,\"deleted\":%llu,"
                               "\"conflicts\":%llu,\"last_sync\":",
                               (unsigned long long)st.server_have_seq,
                               (unsigned long long)st.pending_entries,
                               (unsigned long long)st.pending_blob_bytes,
                               (unsigned long long)st.pending_blobs, (unsigned long long)st.records,
                               (unsigned long long)st.deleted, (unsigned long long)st.conflicts);
        if (!rc)
            rc = jstr_or_null(&b, last_sync);
        if (!rc)
            rc = fs_buf_adds(&b, ",\"last_error\":");
        if (!rc)
            rc = jstr_or_null(&b, last_error);
        if (!rc)
            rc = fs_buf_adds(&b, ",\"last_receipt\":");
        if (!rc)
            rc = receipt ? fs_buf_adds(&b, receipt) : fs_buf_adds(&b, "null");
        if (!rc)
            rc = daemon_json(&b, &di);
        if (!rc)
            rc = fs_buf_adds(&b, "}\n");
        if (rc) {
            rc = fs_err_set(&err, FS_ENOMEM, "out of memory");
            goto fail;
        }
        fwrite(b.data, 1, b.len, stdout);
        goto out;
    }
    printf("device    %s (feed %.16s)\n", name ? name : "?", feed);
    printf("home      %s\n", cli->home);
    printf("records   %llu (%llu deleted, %llu with conflicts)\n", (unsigned long long)st.records,
           (unsigned long long)st.deleted, (unsigned long long)st.conflicts);
    printf("entries   %llu in this device's feed\n", (unsigned long long)st.local_seq);
    if (server)
        printf("server    %s\n", server);
    else
        printf("server    none yet: enroll with 'fieldsync enroll URL --token-file FILE'\n");
    printf("synced    %llu of %llu entries receipted by the server\n",
           (unsigned long long)st.server_have_seq, (unsigned long long)st.local_seq);
    printf("pending   %llu entries, %llu attachment%s (%llu bytes)\n",
           (unsigned long long)st.pending_entries, (unsigned long long)st.pending_blobs,
           st.pending_blobs == 1 ? "" : "s", (unsigned long long)st.pending_blob_bytes);
    printf("last sync %s\n", last_sync ? last_sync : "never");
    if (last_error)
        printf("last error %s\n", last_error);
    if (di.running)
        printf("daemon    running (pid %ld), %s\n", di.pid, di.state[0] ? di.state : "starting");
    else
        printf("daemon    not running\n");
    if (last_action[0])
        printf("  last    %s\n", last_action);
    if (di.running && di.next_try[0])
        printf("  next    %s\n", di.next_try);
    goto out;
fail:
    code = cli_fail(rc, &err);
out:
    free(name);
    free(server);
    free(last_sync);
    free(last_error);
    free(receipt);
    fs_buf_release(&b);
    cli_args_release(&a);
    return code;
}
