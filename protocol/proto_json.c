/* Strict JSON checks over jansson, and the canonical writer. */
#include "proto_json.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum fs_rc
proto_json_parse(const void *data, size_t len, json_t **out, struct fs_err *err)
{
    json_error_t je;
    json_t *v;

    v = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        /* jansson's own text may quote the input near the error: never
         * repeat it, it can be note text, a field value or a token. */
        switch (json_error_code(&je)) {
        case json_error_invalid_utf8:
            return fs_err_set(err, FS_EINVAL, "JSON is not valid UTF-8 (byte %d)", je.position);
        case json_error_duplicate_key:
            return fs_err_set(err, FS_EINVAL, "JSON has a duplicate key (byte %d)", je.position);
        case json_error_null_character:
            return fs_err_set(err, FS_EINVAL, "JSON contains a NUL (byte %d)", je.position);
        case json_error_end_of_input_expected:
            return fs_err_set(err, FS_EINVAL, "JSON has data after its value (byte %d)",
                              je.position);
        default:
            return fs_err_set(err, FS_EINVAL, "malformed JSON at byte %d", je.position);
        }
    }
    if (!json_is_object(v)) {
        json_decref(v);
        return fs_err_set(err, FS_EINVAL, "JSON value is not an object");
    }
    *out = v;
    return FS_OK;
}

static int
in_list(const char *k, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(k, *list) == 0)
            return 1;
    return 0;
}

enum fs_rc
proto_json_keys(const json_t *obj, const char *const *allowed, const char *const *required,
                const char *what, struct fs_err *err)
{
    const char *k;
    json_t *v;

    if (!json_is_object(obj))
        return fs_err_set(err, FS_EINVAL, "%s is not an object", what);
    json_object_foreach((json_t *)obj, k, v)
    {
        (void)v;
        if (!in_list(k, allowed))
            return fs_err_set(err, FS_EINVAL, "%s has an unknown key", what);
    }
    for (; required && *required; required++)
        if (!json_object_get(obj, *required))
            return fs_err_set(err, FS_EINVAL, "%s lacks \"%s\"", what, *required);
    return FS_OK;
}

enum fs_rc
proto_json_uint(const json_t *v, uint64_t min, uint64_t *out)
{
    json_int_t i;

    if (!json_is_integer(v))
        return FS_EINVAL;
    i = json_integer_value(v);
    if (i < 0 || (uint64_t)i < min || (uint64_t)i > PROTO_MAX_SAFE_INT)
        return FS_EINVAL;
    *out = (uint64_t)i;
    return FS_OK;
}

enum fs_rc
proto_json_hex(const json_t *v, unsigned char *out, size_t n)
{
    if (!json_is_string(v))
        return FS_EINVAL;
    return proto_hex_decode(json_string_value(v), json_string_length(v), out, n);
}

enum fs_rc
proto_jw_str(struct fs_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, run = 0;
    enum fs_rc rc;

    rc = fs_buf_addc(b, '"');
    for (i = 0; !rc && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t el = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rc = fs_buf_add(b, s + run, i - run);
        if (rc)
            break;
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
            break;
        }
        rc = fs_buf_add(b, esc, el);
    }
    if (!rc)
        rc = fs_buf_add(b, s + run, len - run);
    if (!rc)
        rc = fs_buf_addc(b, '"');
    return rc;
}

enum fs_rc
proto_jw_key(struct fs_buf *b, const char *key)
{
    enum fs_rc rc = proto_jw_str(b, key, strlen(key));

    return rc ? rc : fs_buf_addc(b, ':');
}

enum fs_rc
proto_jw_double(struct fs_buf *b, double v)
{
    char num[32];

    proto_double_shortest(v, num);
    return fs_buf_adds(b, num);
}

enum fs_rc
proto_jw_uint(struct fs_buf *b, uint64_t v)
{
    return fs_buf_printf(b, "%" PRIu64, v);
}

enum fs_rc
proto_jw_hex(struct fs_buf *b, const unsigned char *bin, size_t n)
{
    enum fs_rc rc;

    rc = fs_buf_reserve(b, 2 * n + 2);
    if (rc)
        return rc;
    b->data[b->len++] = '"';
    proto_hex_encode(bin, n, (char *)b->data + b->len);
    b->len += 2 * n;
    b->data[b->len++] = '"';
    b->data[b->len] = 0;
    return FS_OK;
}

/* ---- reader ------------------------------------------------------------------ */

int
proto_jr_lit(struct proto_jr *r, const char *s)
{
    size_t n = strlen(s);

    if ((size_t)(r->end - r->p) < n || memcmp(r->p, s, n) != 0)
        return 0;
    r->p += n;
    return 1;
}

/* The byte an escape of the writer stands for, 0 for none of them. */
static int
unescape(const unsigned char *p, const unsigned char *end, size_t *used)
{
    unsigned char c;

    if (p >= end)
        return 0;
    *used = 1;
    switch (*p) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'u':
        /* \u00XX, only for the other control characters (never NUL) */
        if (end - p < 5 || p[1] != '0' || p[2] != '0' ||
            proto_hex_decode((const char *)p + 3, 2, &c, 1) || c == 0 || c >= 0x20)
            return 0;
        *used = 5;
        return c;
    default:
        return 0;
    }
}

int
proto_jr_str(struct proto_jr *r, char **out)
{
    const unsigned char *p = r->p, *start;
    size_t n = 0, used;
    char *o;

    *out = NULL;
    if (p >= r->end || *p != '"')
        return 0;
    start = ++p;
    while (p < r->end && *p != '"') {
        if (*p < 0x20)
            return 0;
        if (*p == '\\') {
            if (!unescape(p + 1, r->end, &used))
                return 0;
            p += 1 + used;
        } else {
            p++;
        }
        n++;
    }
    if (p >= r->end)
        return 0;
    o = malloc(n + 1);
    if (!o)
        return 0;
    n = 0;
    for (p = start; *p != '"'; n++) {
        if (*p == '\\') {
            o[n] = (char)unescape(p + 1, r->end, &used);
            p += 1 + used;
        } else {
            o[n] = (char)*p++;
        }
    }
    o[n] = 0;
    r->p = p + 1;
    *out = o;
    return 1;
}

int
proto_jr_str_plain(struct proto_jr *r, char *out, size_t cap)
{
    const unsigned char *p = r->p;
    size_t n;

    if (p >= r->end || *p != '"')
        return 0;
    for (n = 0, p++; p < r->end && *p != '"'; p++, n++)
        if (*p < 0x20 || *p == '\\' || n + 1 >= cap)
            return 0;
    if (p >= r->end)
        return 0;
    memcpy(out, r->p + 1, n);
    out[n] = 0;
    r->p = p + 1;
    return 1;
}

int
proto_jr_uint(struct proto_jr *r, uint64_t *out)
{
    const unsigned char *p = r->p;
    uint64_t v = 0;
    int digits = 0;

    if (p < r->end && *p == '0') {
        r->p++;
        *out = 0;
        return r->p == r->end || r->p[0] < '0' || r->p[0] > '9';
    }
    while (p < r->end && *p >= '0' && *p <= '9') {
        if (++digits > 16)
            return 0;
        v = v * 10 + (uint64_t)(*p++ - '0');
    }
    if (!digits || v > PROTO_MAX_SAFE_INT)
        return 0;
    r->p = p;
    *out = v;
    return 1;
}

int
proto_jr_num(struct proto_jr *r, double *out)
{
    char num[40], *end;
    size_t n = 0;

    while (r->p + n < r->end && n < sizeof num - 1 && strchr("0123456789+-.eE", r->p[n]) && r->p[n])
        n++;
    if (n == 0 || n == sizeof num - 1)
        return 0;
    memcpy(num, r->p, n);
    num[n] = 0;
    *out = strtod(num, &end);
    if (end != num + n)
        return 0;
    r->p += n;
    return 1;
}

int
proto_jr_hex(struct proto_jr *r, unsigned char *out, size_t n)
{
    const unsigned char *p = r->p;

    if ((size_t)(r->end - p) < 2 * n + 2 || p[0] != '"' || p[2 * n + 1] != '"' ||
        proto_hex_decode((const char *)p + 1, 2 * n, out, n))
        return 0;
    r->p += 2 * n + 2;
    return 1;
}

int
proto_jr_hex_or_null(struct proto_jr *r, unsigned char *out, size_t n, int *has)
{
    *has = 0;
    if (proto_jr_lit(r, "null"))
        return 1;
    *has = 1;
    return proto_jr_hex(r, out, n);
}
