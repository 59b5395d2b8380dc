/* add, edit, rm, show and resolve: one record at a time. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto_json.h"

/* Indexes into CONTENT_OPTS (cli_main.c). */
enum { O_SITE, O_REGION, O_GPS, O_AT, O_AUTHOR, O_FIELD, O_NOTE, O_EDIT, O_ATTACH, O_KIND };

#define TEMPLATE_MAX (4u * PROTO_NOTE_MAX_BYTES)

static enum fs_rc
text_opt(const char *what, const char *v, char **slot, struct fs_err *err)
{
    if (proto_utf8_check(v, strlen(v)))
        return fs_err_set(err, FS_EINVAL, "%s is not valid UTF-8", what);
    return proto_content_set_str(slot, *v ? v : NULL) ? fs_err_set(err, FS_ENOMEM, "out of memory")
                                                      : FS_OK;
}

static int
parse_double(const char *s, size_t len, double *out)
{
    char buf[64], *end;

    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    errno = 0;
    *out = strtod(buf, &end);
    return (*end != 0 || errno) ? -1 : 0;
}

/* "LAT,LON[,ACC]"; an empty value removes the position. */
static enum fs_rc
gps_opt(const char *v, struct proto_content *c, struct fs_err *err)
{
    const char *c1, *c2;
    double lat, lon, acc = 0;

    if (!*v) {
        c->has_gps = c->has_acc = 0;
        return FS_OK;
    }
    c1 = strchr(v, ',');
    c2 = c1 ? strchr(c1 + 1, ',') : NULL;
    if (!c1 || parse_double(v, (size_t)(c1 - v), &lat) ||
        parse_double(c1 + 1, c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1), &lon) ||
        (c2 && parse_double(c2 + 1, strlen(c2 + 1), &acc)))
        return fs_err_set(err, FS_EINVAL, "--gps takes LAT,LON or LAT,LON,ACC in decimal degrees");
    c->has_gps = 1;
    c->lat = lat;
    c->lon = lon;
    c->has_acc = c2 != NULL;
    c->acc_m = acc;
    return FS_OK;
}

static enum fs_rc
field_opt(const char *v, struct proto_content *c, struct fs_err *err)
{
    const char *eq = strchr(v, '=');
    char name[PROTO_FIELD_NAME_MAX + 1];
    size_t nl;
    enum fs_rc rc;

    if (!eq || eq == v)
        return fs_err_set(err, FS_EINVAL, "--field takes NAME=VALUE");
    nl = (size_t)(eq - v);
    if (nl > PROTO_FIELD_NAME_MAX)
        return fs_err_set(err, FS_EINVAL, "a field name is at most %u characters",
                          PROTO_FIELD_NAME_MAX);
    memcpy(name, v, nl);
    name[nl] = 0;
    if (proto_utf8_check(eq + 1, strlen(eq + 1)))
        return fs_err_set(err, FS_EINVAL, "field \"%s\" is not valid UTF-8", name);
    rc = proto_content_set_field(c, name, eq + 1);
    if (rc == FS_ETOOBIG)
        return fs_err_set(err, rc, "more than %u fields", PROTO_FIELDS_MAX);
    return rc ? fs_err_set(err, rc, "out of memory") : FS_OK;
}

static enum fs_rc
note_opt(const char *v, struct proto_content *c, struct fs_err *err)
{
    char *text = NULL;
    size_t len;
    enum fs_rc rc;

    if (strcmp(v, "-") != 0)
        return text_opt("the note", v, &c->note, err);
    rc = cli_read_all("-", PROTO_NOTE_MAX_BYTES, &text, &len, err);
    if (rc == FS_ETOOBIG)
        return fs_err_set(err, FS_ETOOBIG, "the note is longer than %u bytes (64 KiB)",
                          PROTO_NOTE_MAX_BYTES);
    if (rc)
        return rc;
    if (memchr(text, 0, len)) {
        free(text);
        return fs_err_set(err, FS_EINVAL, "the note contains a NUL byte");
    }
    rc = text_opt("the note", text, &c->note, err);
    free(text);
    return rc;
}

/* Applies the content options of add and edit, in the order given. */
static enum fs_rc
apply_opts(const struct cli_args *a, struct proto_content *c, struct fs_err *err)
{
    size_t k;
    enum fs_rc rc = FS_OK;

    for (k = 0; !rc && k < a->n; k++) {
        const char *v = a->val[k];
        char when[PROTO_TIME_MAX_LEN];
        int64_t ms;

        switch (a->opt[k]) {
        case O_SITE:
            rc = text_opt("--site", v, &c->site_name, err);
            break;
        case O_REGION:
            rc = text_opt("--region", v, &c->region, err);
            break;
        case O_GPS:
            rc = gps_opt(v, c, err);
            break;
        case O_AT:
            if (cli_parse_time(v, when, &ms))
                rc = fs_err_set(err, FS_EINVAL,
                                "--at takes RFC 3339 (2026-11-28T09:30:00+08:00) or "
                                "YYYY-MM-DD HH:MM in local time");
            else
                rc = proto_content_set_str(&c->observed_at, when);
            break;
        case O_AUTHOR:
            rc = text_opt("--author", v, &c->author, err);
            break;
        case O_FIELD:
            rc = field_opt(v, c, err);
            break;
        case O_NOTE:
            rc = note_opt(v, c, err);
            break;
        case O_KIND:
            if (proto_kind_check(v))
                rc = fs_err_set(err, FS_EINVAL,
                                "a kind is 1-32 characters of a-z, 0-9, '_' or '-', starting "
                                "with a letter");
            else
                rc = proto_content_set_str(&c->kind, v);
            break;
        default:
            break;
        }
    }
    return rc;
}

/* Streams every --attach file into the store and lists it in c: the files
 * are durable before the revision that names them commits. */
static enum fs_rc
attach_files(struct cli *cli, const struct cli_args *a, struct proto_content *c, struct fs_err *err)
{
    size_t k;
    enum fs_rc rc = FS_OK;

    for (k = 0; !rc && k < a->n; k++) {
        struct proto_attachment att, *na;

        if (a->opt[k] != O_ATTACH)
            continue;
        if (c->n_attachments >= PROTO_ATTACHMENTS_MAX)
            return fs_err_set(err, FS_ETOOBIG, "more than %u attachments", PROTO_ATTACHMENTS_MAX);
        rc = store_blob_import(cli->store, a->val[k], &att, err);
        if (rc)
            break;
        na = realloc(c->attachments, (c->n_attachments + 1) * sizeof *na);
        if (!na) {
            free(att.name);
            free(att.type);
            return fs_err_set(err, FS_ENOMEM, "out of memory");
        }
        c->attachments = na;
        c->attachments[c->n_attachments++] = att;
    }
    return rc;
}

/* ---- the editor template ---------------------------------------------------- */

static enum fs_rc
template_write(struct fs_buf *b, const struct proto_content *c)
{
    enum fs_rc rc = FS_OK;
    size_t i;

    rc = fs_buf_adds(b, "# Edit the record, save and quit. Lines starting with '#' are ignored\n"
                        "# above the first blank line; the note is everything after it.\n"
                        "# Remove every line to cancel.\n");
    if (!rc)
        rc = fs_buf_printf(b, "kind: %s\nobserved_at: %s\n", c->kind ? c->kind : "",
                           c->observed_at ? c->observed_at : "");
    if (!rc)
        rc = fs_buf_printf(b, "author: %s\nsite: %s\nregion: %s\n", c->author ? c->author : "",
                           c->site_name ? c->site_name : "", c->region ? c->region : "");
    if (!rc && c->has_gps) {
        char lat[32], lon[32], acc[32];

        proto_double_shortest(c->lat, lat);
        proto_double_shortest(c->lon, lon);
        if (c->has_acc) {
            proto_double_shortest(c->acc_m, acc);
            rc = fs_buf_printf(b, "gps: %s,%s,%s\n", lat, lon, acc);
        } else
            rc = fs_buf_printf(b, "gps: %s,%s\n", lat, lon);
    } else if (!rc)
        rc = fs_buf_adds(b, "gps: \n");
    for (i = 0; !rc && i < c->n_fields; i++) {
        const char *v = c->fields[i].value;

        /* A field value with a line break cannot be edited in one line. */
        if (strchr(v, '\n'))
            rc = FS_EINVAL;
        else
            rc = fs_buf_printf(b, "field %s: %s\n", c->fields[i].name, v);
    }
    if (!rc)
        rc = fs_buf_printf(b, "\n%s\n", c->note ? c->note : "");
    return rc;
}

static enum fs_rc
template_read(char *text, size_t len, struct proto_content *c, struct fs_err *err)
{
    char *p = text, *end = text + len;
    int any = 0, line = 0;
    enum fs_rc rc = FS_OK;

    if (memchr(text, 0, len))
        return fs_err_set(err, FS_EINVAL, "the edited record contains a NUL byte");
    /* Fields are replaced as a whole by what the template lists. */
    while (c->n_fields && !rc)
        rc = proto_content_set_field(c, c->fields[0].name, NULL);
    while (p < end && !rc) {
        char *nl = memchr(p, '\n', (size_t)(end - p)), *colon, *v;

        if (!nl)
            nl = end;
        *nl = 0;
        line++;
        if (p[0] == '#') {
            p = nl + 1;
            continue;
        }
        if (p[0] == 0) {
            if (any) {
                p = nl + 1;
                break; /* the note follows */
            }
            p = nl + 1;
            continue;
        }
        any = 1;
        colon = strchr(p, ':');
        if (!colon)
            return fs_err_set(err, FS_EINVAL, "edited record line %d has no ':'", line);
        *colon = 0;
        v = colon + 1;
        while (*v == ' ')
            v++;
        if (strcmp(p, "kind") == 0) {
            if (proto_kind_check(v))
                return fs_err_set(err, FS_EINVAL, "edited record line %d: invalid kind", line);
            rc = proto_content_set_str(&c->kind, v);
        } else if (strcmp(p, "observed_at") == 0) {
            char when[PROTO_TIME_MAX_LEN];
            int64_t ms;

            if (cli_parse_time(v, when, &ms))
                return fs_err_set(err, FS_EINVAL, "edited record line %d: invalid time", line);
            rc = proto_content_set_str(&c->observed_at, when);
        } else if (strcmp(p, "author") == 0)
            rc = text_opt("author", v, &c->author, err);
        else if (strcmp(p, "site") == 0)
            rc = text_opt("site", v, &c->site_name, err);
        else if (strcmp(p, "region") == 0)
            rc = text_opt("region", v, &c->region, err);
        else if (strcmp(p, "gps") == 0)
            rc = gps_opt(v, c, err);
        else if (strncmp(p, "field ", 6) == 0) {
            if (proto_utf8_check(v, strlen(v)))
                return fs_err_set(err, FS_EINVAL, "edited record line %d: invalid UTF-8", line);
            rc = proto_content_set_field(c, p + 6, v);
            if (rc)
                return fs_err_set(err, rc, "edited record line %d: too many fields", line);
        } else
            return fs_err_set(err, FS_EINVAL, "edited record line %d: unknown name", line);
        p = nl + 1;
    }
    if (rc)
        return rc;
    if (!any)
        return fs_err_set(err, FS_EINVAL, "the edited record is empty; nothing was saved");
    if (p < end) {
        size_t n = (size_t)(end - p);

        while (n && (p[n - 1] == '\n' || p[n - 1] == 0))
            n--;
        p[n] = 0;
        rc = text_opt("the note", p, &c->note, err);
    } else {
        rc = proto_content_set_str(&c->note, NULL);
    }
    return rc;
}

/* Writes c to a private file in the store's folder, runs the editor, reads
 * it back into c. */
static enum fs_rc
edit_in_editor(struct cli *cli, struct proto_content *c, struct fs_err *err)
{
    struct fs_buf b;
    char path[4096], *text = NULL;
    size_t len;
    int fd;
    enum fs_rc rc;

    fs_buf_init(&b, TEMPLATE_MAX);
    rc = template_write(&b, c);
    if (rc) {
        fs_buf_release(&b);
        return fs_err_set(err, rc == FS_EINVAL ? FS_EINVAL : rc,
                          "this record has a multi-line field; change it with --field");
    }
    snprintf(path, sizeof path, "%s/EDIT_RECORD.txt", cli->home);
    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || write(fd, b.data, b.len) != (ssize_t)b.len || close(fd) != 0) {
        fs_buf_release(&b);
        return fs_err_set(err, FS_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    fs_buf_release(&b);
    rc = cli_run_editor(cli, path, err);
    if (!rc)
        rc = cli_read_all(path, TEMPLATE_MAX, &text, &len, err);
    unlink(path);
    if (!rc)
        rc = template_read(text, len, c, err);
    free(text);
    return rc;
}

static enum fs_rc
prompt_into(const char *q, char **slot, struct fs_err *err)
{
    char *ans = NULL;
    enum fs_rc rc = cli_prompt(q, &ans, err);

    if (!rc && ans && *ans)
        rc = text_opt(q, ans, slot, err);
    free(ans);
    return rc;
}

/* A failure of a command that writes a revision: an I/O error says plainly
 * that nothing was saved. */
static int
fail_unsaved(enum fs_rc rc, struct fs_err *err)
{
    if (rc == FS_EIO && !strstr(err->msg, "not saved"))
        fs_err_prefix(err, "not saved: ");
    return cli_fail(rc, err);
}

int
cmd_add(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct proto_content c;
    struct fs_err err = {{0}};
    char when[PROTO_TIME_MAX_LEN], id[PROTO_UUID_LEN + 1], *author = NULL;
    enum fs_rc rc = FS_OK;
    int done, code, interactive = cli->stdin_tty && cli->stderr_tty;

    proto_content_init(&c);
    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos > 1) {
        code = cli_usage("add takes one KIND; quote values with spaces");
        goto out;
    }
    if (a.npos == 1) {
        if (proto_kind_check(a.pos[0])) {
            rc = fs_err_set(&err, FS_EINVAL,
                            "a kind is 1-32 characters of a-z, 0-9, '_' or '-', starting with a "
                            "letter (interview, observation, ...)");
            goto fail;
        }
        if ((rc = proto_content_set_str(&c.kind, a.pos[0])))
            goto fail;
    }
    cli_now_rfc3339(when);
    if ((rc = proto_content_set_str(&c.observed_at, when)))
        goto fail;
    rc = store_setting_get(cli->store, "author", &author, &err);
    if (rc)
        goto fail;
    c.author = author;
    rc = apply_opts(&a, &c, &err);
    if (rc)
        goto fail;
    if (cli_flag(&a, O_EDIT)) {
        rc = edit_in_editor(cli, &c, &err);
        if (rc)
            goto fail;
    } else if (interactive) {
        if (!c.kind) {
            char *k = NULL;

            rc = cli_prompt("Kind (interview, observation, ...)", &k, &err);
            if (!rc && k && proto_kind_check(k))
                rc = fs_err_set(&err, FS_EINVAL,
                                "a kind is 1-32 characters of a-z, 0-9, '_' "
                                "or '-', starting with a letter");
            if (!rc)
                rc = proto_content_set_str(&c.kind, k && *k ? k : NULL);
            free(k);
            if (rc)
                goto fail;
        }
        if (!c.site_name && !cli_arg(&a, O_SITE) && (rc = prompt_into("Site", &c.site_name, &err)))
            goto fail;
        if (!c.note && !cli_arg(&a, O_NOTE) && (rc = prompt_into("Note", &c.note, &err)))
            goto fail;
    }
    if (!c.kind) {
        code = cli_usage("add needs a KIND, e.g. 'fieldsync add interview'");
        goto out;
    }
    rc = attach_files(cli, &a, &c, &err);
    if (rc)
        goto fail;
    rc = store_record_create(cli->store, &c, NULL, id, &err);
    if (rc)
        goto fail;
    printf("%s\n", id);
    goto out;
fail:
    code = fail_unsaved(rc, &err);
out:
    proto_content_release(&c);
    cli_args_release(&a);
    return code;
}

static enum fs_rc
resolve_id(struct cli *cli, const char *arg, char id[PROTO_UUID_LEN + 1], struct fs_err *err)
{
    return store_record_find(cli->store, arg, id, err);
}

/* The current content of the record that arg names (a unique prefix), into c
 * (initialised by the caller, released by it whatever happens): what edit and
 * attach build their revision on. */
static enum fs_rc
live_content(struct cli *cli, const char *arg, char id[PROTO_UUID_LEN + 1], struct proto_content *c,
             struct fs_err *err)
{
    struct store_record r;
    enum fs_rc rc;

    rc = resolve_id(cli, arg, id, err);
    if (!rc)
        rc = store_record_get(cli->store, id, &r, err);
    if (rc)
        return rc;
    if (r.state != PROTO_REC_LIVE)
        rc = fs_err_set(err, FS_EINVAL,
                        r.state == PROTO_REC_TOMBSTONE ? "record %s was deleted"
                                                       : "record %s has no current revision here",
                        id);
    else if (proto_content_parse(r.content, r.content_len, c, err))
        rc = fs_err_set(err, FS_ECORRUPT, "record %s has unreadable content; run verify", id);
    store_record_release(&r);
    return rc;
}

int
cmd_edit(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct proto_content c;
    struct fs_err err = {{0}};
    char id[PROTO_UUID_LEN + 1];
    enum fs_rc rc;
    int done, code;

    proto_content_init(&c);
    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos != 1) {
        code = cli_usage("usage: fieldsync edit ID [options]");
        goto out;
    }
    rc = live_content(cli, a.pos[0], id, &c, &err);
    if (rc)
        goto fail;
    rc = apply_opts(&a, &c, &err);
    if (rc)
        goto fail;
    if (a.n == 0 || cli_flag(&a, O_EDIT)) {
        rc = edit_in_editor(cli, &c, &err);
        if (rc)
            goto fail;
    }
    rc = attach_files(cli, &a, &c, &err);
    if (rc)
        goto fail;
    rc = store_record_update(cli->store, id, &c, &err);
    if (rc)
        goto fail;
    goto out;
fail:
    code = fail_unsaved(rc, &err);
out:
    proto_content_release(&c);
    cli_args_release(&a);
    return code;
}

int
cmd_rm(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    char id[PROTO_UUID_LEN + 1];
    enum fs_rc rc;
    int done, code;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos != 1) {
        code = cli_usage("usage: fieldsync rm ID");
        goto out;
    }
    rc = resolve_id(cli, a.pos[0], id, &err);
    if (!rc)
        rc = store_record_delete(cli->store, id, &err);
    if (rc)
        code = cli_fail(rc, &err);
out:
    cli_args_release(&a);
    return code;
}

int
cmd_attach(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct proto_content c;
    struct proto_attachment att, *na;
    struct fs_err err = {{0}};
    char id[PROTO_UUID_LEN + 1];
    enum fs_rc rc;
    int done, code;

    proto_content_init(&c);
    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos != 2) {
        code = cli_usage("usage: fieldsync attach ID FILE");
        goto out;
    }
    rc = live_content(cli, a.pos[0], id, &c, &err);
    if (rc)
        goto fail;
    if (c.n_attachments >= PROTO_ATTACHMENTS_MAX) {
        rc = fs_err_set(&err, FS_ETOOBIG, "record %s already has %u attachments", id,
                        PROTO_ATTACHMENTS_MAX);
        goto fail;
    }
    rc = store_blob_import(cli->store, a.pos[1], &att, &err);
    if (rc)
        goto fail;
    na = realloc(c.attachments, (c.n_attachments + 1) * sizeof *na);
    if (!na) {
        free(att.name);
        free(att.type);
        rc = fs_err_set(&err, FS_ENOMEM, "out of memory");
        goto fail;
    }
    c.attachments = na;
    c.attachments[c.n_attachments++] = att;
    rc = store_record_update(cli->store, id, &c, &err);
    if (rc)
        goto fail;
    goto out;
fail:
    code = fail_unsaved(rc, &err);
out:
    proto_content_release(&c);
    cli_args_release(&a);
    return code;
}

int
cmd_gc(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    uint64_t files, bytes;
    enum fs_rc rc;
    int done, code;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos || !cli_flag(&a, 0)) {
        code = cli_usage("gc frees nothing unless asked: fieldsync gc --uploaded");
        goto out;
    }
    rc = store_blobs_gc(cli->store, &files, &bytes, &err);
    if (rc) {
        code = cli_fail(rc, &err);
        goto out;
    }
    fprintf(stderr, "freed %llu file%s, %llu bytes; the server holds them durably\n",
            (unsigned long long)files, files == 1 ? "" : "s", (unsigned long long)bytes);
out:
    cli_args_release(&a);
    return code;
}

int
cmd_resolve(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct fs_err err = {{0}};
    char id[PROTO_UUID_LEN + 1];
    enum fs_rc rc;
    int done, code;

    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos != 1 || !cli_arg(&a, 0)) {
        code = cli_usage("usage: fieldsync resolve ID --keep REV");
        goto out;
    }
    rc = resolve_id(cli, a.pos[0], id, &err);
    if (!rc)
        rc = store_record_resolve(cli->store, id, cli_arg(&a, 0), &err);
    if (rc)
        code = cli_fail(rc, &err);
out:
    cli_args_release(&a);
    return code;
}

/* ---- show --------------------------------------------------------------------- */

struct show_ctx {
    FILE *out;
    int json;
    struct fs_buf *buf;
    int first;
};

static const char *
rev_state_name(const struct store_rev *r)
{
    if (r->is_winner)
        return "winner";
    if (r->is_conflict)
        return "conflict";
    switch (r->state) {
    case PROTO_REV_COUNTED:
        return "history";
    case PROTO_REV_PENDING:
        return "pending";
    case PROTO_REV_FLAGGED:
        return "flagged";
    case PROTO_REV_CONTESTED:
        return "contested";
    }
    return "?";
}

static int
show_rev(void *ctx, const struct store_rev *r)
{
    struct show_ctx *sc = ctx;
    char hash[2 * PROTO_HASH_BYTES + 1], feed[2 * PROTO_KEY_BYTES + 1];

    proto_hex_encode(r->rev.hash, PROTO_HASH_BYTES, hash);
    proto_hex_encode(r->rev.feed, PROTO_KEY_BYTES, feed);
    if (sc->json) {
        enum fs_rc rc = fs_buf_printf(
            sc->buf,
            "%s{\"rev\":\"%s\",\"gen\":%llu,\"op\":\"%s\",\"feed\":\"%s\",\"seq\":%llu,"
            "\"at\":\"%s\",\"state\":\"%s\"}",
            sc->first ? "" : ",", hash, (unsigned long long)r->rev.gen,
            r->rev.op == PROTO_OP_PUT ? "put" : "delete", feed, (unsigned long long)r->seq, r->at,
            rev_state_name(r));

        sc->first = 0;
        return rc != FS_OK;
    }
    fprintf(sc->out, "  gen %-3llu %.12s  %-6s  feed %.8s seq %-6llu %s  %s\n",
            (unsigned long long)r->rev.gen, hash, r->rev.op == PROTO_OP_PUT ? "put" : "delete",
            feed, (unsigned long long)r->seq, r->at, rev_state_name(r));
    return 0;
}

static void
show_human(FILE *out, const struct store_record *r, const struct proto_content *c)
{
    char owner[2 * PROTO_KEY_BYTES + 1] = "", rev[2 * PROTO_HASH_BYTES + 1];
    size_t i;

    if (r->has_owner)
        proto_hex_encode(r->owner, PROTO_KEY_BYTES, owner);
    proto_hex_encode(r->winner, PROTO_HASH_BYTES, rev);
    fprintf(out, "record    %s\n", r->id);
    if (r->state == PROTO_REC_LIVE) {
        fprintf(out, "kind      %s\nobserved  %s\n", c->kind, c->observed_at);
        if (c->author)
            fprintf(out, "author    %s\n", c->author);
        if (c->site_name || c->region)
            fprintf(out, "site      %s%s%s%s\n", c->site_name ? c->site_name : "",
                    c->site_name && c->region ? " (" : "", c->region ? c->region : "",
                    c->site_name && c->region ? ")" : "");
        if (c->has_gps) {
            char lat[32], lon[32], acc[32];

            proto_double_shortest(c->lat, lat);
            proto_double_shortest(c->lon, lon);
            fprintf(out, "gps       %s, %s", lat, lon);
            if (c->has_acc) {
                proto_double_shortest(c->acc_m, acc);
                fprintf(out, " ±%s m", acc);
            }
            fputc('\n', out);
        }
        for (i = 0; i < c->n_fields; i++)
            fprintf(out, "%-9s %s: %s\n", i == 0 ? "fields" : "", c->fields[i].name,
                    c->fields[i].value);
        for (i = 0; i < c->n_attachments; i++)
            fprintf(out, "%-9s %s (%llu bytes, %s)\n", i == 0 ? "files" : "",
                    c->attachments[i].name, (unsigned long long)c->attachments[i].size,
                    c->attachments[i].type);
        fprintf(out, "state     live · gen %llu · rev %.12s · %s\n", (unsigned long long)r->gen,
                rev, r->synced ? "synced" : "not synced yet");
    } else {
        fprintf(out, "state     %s · %s\n",
                r->state == PROTO_REC_TOMBSTONE   ? "deleted"
                : r->state == PROTO_REC_CONTESTED ? "contested (created by several devices)"
                                                  : "incomplete",
                r->synced ? "synced" : "not synced yet");
    }
    if (r->has_owner)
        fprintf(out, "owner     %.16s\n", owner);
    if (r->n_conflicts)
        fprintf(out,
                "conflicts %zu other live revision%s: settle with 'fieldsync resolve %s "
                "--keep REV'\n",
                r->n_conflicts, r->n_conflicts == 1 ? "" : "s", r->id);
    if (r->state == PROTO_REC_LIVE && c->note)
        fprintf(out, "\n%s\n", c->note);
    fprintf(out, "\nrevisions:\n");
}

int
cmd_show(struct cli *cli, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    struct store_record r;
    struct proto_content c;
    struct fs_err err = {{0}};
    struct fs_buf b;
    struct show_ctx sc;
    char id[PROTO_UUID_LEN + 1];
    enum fs_rc rc;
    int done, code, have = 0;

    proto_content_init(&c);
    fs_buf_init(&b, 64u << 20);
    code = cli_parse(cmd, argc, argv, &a, &done);
    if (code || done)
        goto out;
    if (a.npos != 1) {
        code = cli_usage("usage: fieldsync show ID [--json]");
        goto out;
    }
    rc = resolve_id(cli, a.pos[0], id, &err);
    if (!rc)
        rc = store_record_get(cli->store, id, &r, &err);
    if (rc)
        goto fail;
    have = 1;
    if (r.state == PROTO_REC_LIVE &&
        (rc = proto_content_parse(r.content, r.content_len, &c, &err))) {
        rc = fs_err_set(&err, FS_ECORRUPT, "record %s has unreadable content; run verify", id);
        goto fail;
    }
    sc.out = stdout;
    sc.json = cli_flag(&a, 0);
    sc.buf = &b;
    sc.first = 1;
    if (sc.json) {
        char owner[2 * PROTO_KEY_BYTES + 1] = "", rev[2 * PROTO_HASH_BYTES + 1];
        static const char *const states[] = {"", "live", "deleted", "contested", "incomplete"};

        proto_hex_encode(r.owner, PROTO_KEY_BYTES, owner);
        proto_hex_encode(r.winner, PROTO_HASH_BYTES, rev);
        rc = fs_buf_printf(&b, "{\"id\":\"%s\",\"state\":\"%s\",\"gen\":%llu,", r.id,
                           states[r.state], (unsigned long long)r.gen);
        if (!rc)
            rc = fs_buf_printf(&b, r.has_owner ? "\"feed\":\"%s\"," : "\"feed\":null,", owner);
        if (!rc)
            rc = fs_buf_printf(&b, r.state == PROTO_REC_LIVE ? "\"rev\":\"%s\"," : "\"rev\":null,",
                               rev);
        if (!rc)
            rc = fs_buf_printf(&b, "\"synced\":%s,\"conflicts\":%zu,\"content\":",
                               r.synced ? "true" : "false", r.n_conflicts);
        if (!rc)
            rc = r.content ? fs_buf_add(&b, r.content, r.content_len) : fs_buf_adds(&b, "null");
        if (!rc)
            rc = fs_buf_adds(&b, ",\"revisions\":[");
        if (rc) {
            rc = fs_err_set(&err, FS_ENOMEM, "out of memory");
            goto fail;
        }
    } else {
        show_human(stdout, &r, &c);
    }
    rc = store_record_revisions(cli->store, id, show_rev, &sc, &err);
    if (rc)
        goto fail;
    if (sc.json) {
        if (fs_buf_adds(&b, "]}\n")) {
            rc = fs_err_set(&err, FS_ENOMEM, "out of memory");
            goto fail;
        }
        fwrite(b.data, 1, b.len, stdout);
    }
    goto out;
fail:
    code = cli_fail(rc, &err);
out:
    if (have)
        store_record_release(&r);
    proto_content_release(&c);
    fs_buf_release(&b);
    cli_args_release(&a);
    return code;
}
