/* Argument parsing, error reporting, terminal text, time input and the editor:
 * what every fieldsync subcommand shares. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const struct cli_opt *
find_opt(const struct cli_cmd *cmd, const char *name, size_t len, int *idx)
{
    int i;

    for (i = 0; cmd->opts && cmd->opts[i].name; i++) {
        if (strlen(cmd->opts[i].name) == len && strncmp(cmd->opts[i].name, name, len) == 0) {
            *idx = i;
            return &cmd->opts[i];
        }
    }
    return NULL;
}

int
cli_parse(const struct cli_cmd *cmd, int argc, char **argv, struct cli_args *a, int *done)
{
    int i, only_pos = 0;

    memset(a, 0, sizeof *a);
    *done = 0;
    a->opt = calloc((size_t)argc + 1, sizeof *a->opt);
    a->val = calloc((size_t)argc + 1, sizeof *a->val);
    a->pos = calloc((size_t)argc + 1, sizeof *a->pos);
    if (!a->opt || !a->val || !a->pos) {
        fprintf(stderr, "fieldsync: out of memory\n");
        return EX_INTERNAL;
    }
    for (i = 1; i < argc; i++) {
        const char *s = argv[i], *eq;
        const struct cli_opt *o;
        int idx;

        if (only_pos || s[0] != '-' || strcmp(s, "-") == 0) {
            a->pos[a->npos++] = s;
            continue;
        }
        if (strcmp(s, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            cli_help(cmd, stdout);
            *done = 1;
            return 0;
        }
        if (s[1] != '-')
            return cli_usage("%s: unknown option %s; see 'fieldsync %s --help'", cmd->name, s,
                             cmd->name);
        s += 2;
        eq = strchr(s, '=');
        o = find_opt(cmd, s, eq ? (size_t)(eq - s) : strlen(s), &idx);
        if (!o)
            return cli_usage("%s: unknown option --%.*s; see 'fieldsync %s --help'", cmd->name,
                             (int)(eq ? eq - s : (long)strlen(s)), s, cmd->name);
        a->opt[a->n] = idx;
        if (o->has_arg) {
            if (eq)
                a->val[a->n] = eq + 1;
            else if (i + 1 < argc)
                a->val[a->n] = argv[++i];
            else
                return cli_usage("%s: --%s needs a value (%s)", cmd->name, o->name, o->argname);
        } else if (eq) {
            return cli_usage("%s: --%s takes no value", cmd->name, o->name);
        }
        a->n++;
    }
    return 0;
}

void
cli_args_release(struct cli_args *a)
{
    free(a->opt);
    free(a->val);
    free(a->pos);
    memset(a, 0, sizeof *a);
}

const char *
cli_arg(const struct cli_args *a, int i)
{
    const char *v = NULL;
    size_t k;

    for (k = 0; k < a->n; k++)
        if (a->opt[k] == i)
            v = a->val[k];
    return v;
}

int
cli_flag(const struct cli_args *a, int i)
{
    size_t k;
    int n = 0;

    for (k = 0; k < a->n; k++)
        n += a->opt[k] == i;
    return n;
}

void
cli_help(const struct cli_cmd *cmd, FILE *out)
{
    int i;

    fprintf(out, "usage: fieldsync [--home DIR] %s %s\n\n%s\n", cmd->name, cmd->synopsis,
            cmd->summary);
    if (cmd->opts && cmd->opts[0].name)
        fprintf(out, "\noptions:\n");
    for (i = 0; cmd->opts && cmd->opts[i].name; i++) {
        char left[64];

        snprintf(left, sizeof left, "--%s%s%s", cmd->opts[i].name, cmd->opts[i].has_arg ? " " : "",
                 cmd->opts[i].has_arg ? cmd->opts[i].argname : "");
        fprintf(out, "  %-24s %s\n", left, cmd->opts[i].help);
    }
    fprintf(out, "  %-24s %s\n", "--help", "show this help");
}

int
cli_exit_code(enum fs_rc rc)
{
    switch (rc) {
    case FS_OK:
        return EX_DONE;
    case FS_EUSAGE:
        return EX_USAGE_;
    case FS_EINVAL:
    case FS_ECORRUPT:
    case FS_ENOTFOUND:
    case FS_ECONFLICT:
    case FS_ETOOBIG:
    case FS_EEXIST:
        return EX_DATA;
    case FS_ENET:
        return EX_NOCONN;
    case FS_EIO:
        return EX_IOERR_;
    case FS_EAGAIN:
        return EX_RETRY;
    case FS_EPROTO:
        return EX_PROTOCOL;
    case FS_EAUTH:
        return EX_AUTH;
    case FS_ENOMEM:
    case FS_EINTERNAL:
        return EX_INTERNAL;
    }
    return EX_INTERNAL;
}

int
cli_fail(enum fs_rc rc, const struct fs_err *err)
{
    const char *msg = err && err->msg[0] ? err->msg : fs_strerror(rc);

    fprintf(stderr, "fieldsync: %s\n", msg);
    return cli_exit_code(rc);
}

int
cli_usage(const char *fmt, ...)
{
    va_list ap;

    fputs("fieldsync: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EX_USAGE_;
}

enum fs_rc
cli_read_all(const char *path, size_t max, char **out, size_t *len, struct fs_err *err)
{
    struct fs_buf b;
    char chunk[65536];
    int fd;
    ssize_t n;
    enum fs_rc rc = FS_OK;

    fs_buf_init(&b, max);
    fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fs_err_set(err, errno == ENOENT ? FS_EINVAL : FS_EIO, "cannot open %s: %s", path,
                          strerror(errno));
    for (;;) {
        n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = fs_err_set(err, FS_EIO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        rc = fs_buf_add(&b, chunk, (size_t)n);
        if (rc) {
            rc = fs_err_set(err, rc == FS_ETOOBIG ? FS_ETOOBIG : rc, "%s is longer than %zu bytes",
                            strcmp(path, "-") ? path : "input", max);
            break;
        }
    }
    if (fd > 0)
        close(fd);
    if (rc) {
        fs_buf_release(&b);
        return rc;
    }
    *out = (char *)fs_buf_detach(&b, len);
    if (!*out)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    return FS_OK;
}

enum fs_rc
cli_run_editor(struct cli *cli, const char *path, struct fs_err *err)
{
    const char *ed = getenv("FIELDSYNC_EDITOR");
    pid_t pid;
    int status;

    if (!ed || !*ed)
        ed = cli->editor_pref;
    if (!ed || !*ed)
        ed = getenv("VISUAL");
    if (!ed || !*ed)
        ed = getenv("EDITOR");
    if (!ed || !*ed)
        ed = "vi";
    pid = fork();
    if (pid < 0)
        return fs_err_set(err, FS_EINTERNAL, "cannot start the editor: %s", strerror(errno));
    if (pid == 0) {
        /* Like git: the editor setting is a shell snippet; the file is "$1". */
        char script[4096];

        snprintf(script, sizeof script, "%s \"$@\"", ed);
        execl("/bin/sh", "sh", "-c", script, ed, path, (char *)NULL);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return fs_err_set(err, FS_EINTERNAL, "lost the editor: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return fs_err_set(err, FS_EINVAL, "the editor failed; nothing was saved");
    return FS_OK;
}

enum fs_rc
cli_prompt(const char *question, char **out, struct fs_err *err)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    *out = NULL;
    fprintf(stderr, "%s: ", question);
    fflush(stderr);
    n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        fputc('\n', stderr);
        return FS_OK;
    }
    if (n > (ssize_t)PROTO_NOTE_MAX_BYTES) {
        free(line);
        return fs_err_set(err, FS_ETOOBIG, "answer is longer than %u bytes", PROTO_NOTE_MAX_BYTES);
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    *out = line;
    return FS_OK;
}

/* Wide (two-column) code points: CJK, Hangul, fullwidth forms, emoji. */
static int
is_wide(unsigned cp)
{
    return (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) ||
           (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
           (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
           (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1faff) ||
           (cp >= 0x20000 && cp <= 0x3fffd);
}

/* Decodes one UTF-8 sequence (input already validated); returns its length. */
static size_t
utf8_next(const unsigned char *p, size_t left, unsigned *cp)
{
    if (p[0] < 0x80 || left < 2) {
        *cp = p[0];
        return 1;
    }
    if (p[0] < 0xe0) {
        *cp = (unsigned)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
        return 2;
    }
    if (p[0] < 0xf0 || left < 4) {
        if (left < 3) {
            *cp = '?';
            return left;
        }
        *cp = (unsigned)(p[0] & 0x0f) << 12 | (unsigned)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
        return 3;
    }
    *cp = (unsigned)(p[0] & 0x07) << 18 | (unsigned)(p[1] & 0x3f) << 12 |
          (unsigned)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
    return 4;
}

size_t
cli_text_width(const char *s, size_t len)
{
    size_t i = 0, w = 0;

    while (i < len) {
        unsigned cp;

        i += utf8_next((const unsigned char *)s + i, len - i, &cp);
        w += is_wide(cp) ? 2 : 1;
    }
    return w;
}

void
cli_put_cell(FILE *out, const char *s, size_t cols, int pad)
{
    size_t i = 0, w = 0, len = s ? strlen(s) : 0;

    if (cli_text_width(s ? s : "", len) <= cols) {
        fputs(s ? s : "", out);
        w = cli_text_width(s ? s : "", len);
    } else {
        while (i < len) {
            unsigned cp;
            size_t n = utf8_next((const unsigned char *)s + i, len - i, &cp);
            size_t cw = is_wide(cp) ? 2 : 1;

            if (w + cw > cols - 1)
                break;
            /* Line breaks and tabs would tear the table: show a space. */
            if (cp == '\n' || cp == '\t' || cp == '\r')
                fputc(' ', out);
            else
                fwrite(s + i, 1, n, out);
            w += cw;
            i += n;
        }
        fputs("…", out);
        w++;
    }
    while (pad && w < cols) {
        fputc(' ', out);
        w++;
    }
}

/* RFC 3339 text of a broken-down local time, with its offset ("Z" for UTC). */
static void
format_local(const struct tm *tm, char out[PROTO_TIME_MAX_LEN])
{
    long off = tm->tm_gmtoff / 60, a = off < 0 ? -off : off;
    size_t n;

    n = strftime(out, PROTO_TIME_MAX_LEN, "%Y-%m-%dT%H:%M:%S", tm);
    if (off == 0) {
        out[n++] = 'Z';
    } else {
        out[n++] = off < 0 ? '-' : '+';
        out[n++] = (char)('0' + a / 600 % 10);
        out[n++] = (char)('0' + a / 60 % 10);
        out[n++] = ':';
        out[n++] = (char)('0' + a % 60 / 10);
        out[n++] = (char)('0' + a % 10);
    }
    out[n] = 0;
}

void
cli_now_rfc3339(char out[PROTO_TIME_MAX_LEN])
{
    time_t t = time(NULL);
    struct tm tm;

    localtime_r(&t, &tm);
    format_local(&tm, out);
}

enum fs_rc
cli_parse_time(const char *s, char out[PROTO_TIME_MAX_LEN], int64_t *ms)
{
    struct tm tm;
    time_t t;
    const char *end;

    if (proto_time_parse(s, strlen(s), 0, ms) == FS_OK) {
        snprintf(out, PROTO_TIME_MAX_LEN, "%s", s);
        return FS_OK;
    }
    memset(&tm, 0, sizeof tm);
    end = strptime(s, "%Y-%m-%d", &tm);
    if (!end)
        return FS_EINVAL;
    if (*end == ' ' || *end == 'T') {
        const char *e2 = strptime(end + 1, "%H:%M:%S", &tm);

        if (!e2)
            e2 = strptime(end + 1, "%H:%M", &tm);
        if (!e2)
            return FS_EINVAL;
        end = e2;
    }
    if (*end != 0 || tm.tm_year < 70 || tm.tm_year > 8099)
        return FS_EINVAL;
    tm.tm_isdst = -1;
    t = mktime(&tm);
    if (t == (time_t)-1)
        return FS_EINVAL;
    localtime_r(&t, &tm);
    format_local(&tm, out);
    return proto_time_parse(out, strlen(out), 0, ms);
}
