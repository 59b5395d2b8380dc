/* Content of enc "json": validation, canonical form and strict parsing. */
#include "proto_content.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto_json.h"

static enum fs_rc field_append(struct proto_content *c, const char *name, const char *value);

void
proto_content_init(struct proto_content *c)
{
    memset(c, 0, sizeof *c);
}

void
proto_content_release(struct proto_content *c)
{
    size_t i;

    free(c->kind);
    free(c->observed_at);
    free(c->author);
    free(c->site_name);
    free(c->region);
    for (i = 0; i < c->n_fields; i++) {
        free(c->fields[i].name);
        free(c->fields[i].value);
    }
    free(c->fields);
    free(c->note);
    for (i = 0; i < c->n_attachments; i++) {
        free(c->attachments[i].name);
        free(c->attachments[i].type);
    }
    free(c->attachments);
    proto_content_init(c);
}

enum fs_rc
proto_content_set_str(char **slot, const char *s)
{
    char *d = NULL;

    if (s) {
        d = strdup(s);
        if (!d)
            return FS_ENOMEM;
    }
    free(*slot);
    *slot = d;
    return FS_OK;
}

enum fs_rc
proto_content_copy(struct proto_content *dst, const struct proto_content *src)
{
    enum fs_rc rc = FS_OK;
    size_t i;

    proto_content_init(dst);
    if (proto_content_set_str(&dst->kind, src->kind) ||
        proto_content_set_str(&dst->observed_at, src->observed_at) ||
        proto_content_set_str(&dst->author, src->author) ||
        proto_content_set_str(&dst->site_name, src->site_name) ||
        proto_content_set_str(&dst->region, src->region) ||
        proto_content_set_str(&dst->note, src->note)) {
        rc = FS_ENOMEM;
        goto out;
    }
    dst->has_gps = src->has_gps;
    dst->lat = src->lat;
    dst->lon = src->lon;
    dst->has_acc = src->has_acc;
    dst->acc_m = src->acc_m;
    for (i = 0; i < src->n_fields; i++) {
        rc = field_append(dst, src->fields[i].name, src->fields[i].value);
        if (rc)
            goto out;
    }
    if (src->n_attachments) {
        dst->attachments = calloc(src->n_attachments, sizeof *dst->attachments);
        if (!dst->attachments) {
            rc = FS_ENOMEM;
            goto out;
        }
        for (i = 0; i < src->n_attachments; i++) {
            struct proto_attachment *d = &dst->attachments[i];
            const struct proto_attachment *s = &src->attachments[i];

            dst->n_attachments++;
            memcpy(d->hash, s->hash, sizeof d->hash);
            d->size = s->size;
            if (proto_content_set_str(&d->name, s->name) ||
                proto_content_set_str(&d->type, s->type)) {
                rc = FS_ENOMEM;
                goto out;
            }
        }
    }
out:
    if (rc)
        proto_content_release(dst);
    return rc;
}

/* Appends a field, empty values included. */
static enum fs_rc
field_append(struct proto_content *c, const char *name, const char *value)
{
    struct proto_field *nf;
    char *n, *v;

    if (c->n_fields >= PROTO_FIELDS_MAX)
        return FS_ETOOBIG;
    nf = realloc(c->fields, (c->n_fields + 1) * sizeof *nf);
    if (!nf)
        return FS_ENOMEM;
    c->fields = nf;
    n = strdup(name);
    v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return FS_ENOMEM;
    }
    c->fields[c->n_fields].name = n;
    c->fields[c->n_fields].value = v;
    c->n_fields++;
    return FS_OK;
}

/* Appends a field whose strings the content takes over (freed on failure). */
static enum fs_rc
field_take(struct proto_content *c, char *name, char *value)
{
    struct proto_field *nf;

    if (c->n_fields >= PROTO_FIELDS_MAX ||
        !(nf = realloc(c->fields, (c->n_fields + 1) * sizeof *nf))) {
        free(name);
        free(value);
        return FS_ENOMEM;
    }
    c->fields = nf;
    c->fields[c->n_fields].name = name;
    c->fields[c->n_fields].value = value;
    c->n_fields++;
    return FS_OK;
}

enum fs_rc
proto_content_set_field(struct proto_content *c, const char *name, const char *value)
{
    size_t i;

    for (i = 0; i < c->n_fields; i++) {
        if (strcmp(c->fields[i].name, name) != 0)
            continue;
        if (!value || !*value) {
            free(c->fields[i].name);
            free(c->fields[i].value);
            memmove(&c->fields[i], &c->fields[i + 1], (c->n_fields - i - 1) * sizeof *c->fields);
            c->n_fields--;
            return FS_OK;
        }
        return proto_content_set_str(&c->fields[i].value, value);
    }
    if (!value || !*value)
        return FS_OK;
    return field_append(c, name, value);
}

enum fs_rc
proto_utf8_check(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        unsigned c = p[i], cp, n, k;

        if (c < 0x80) {
            if (c == 0)
                return FS_EINVAL;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return FS_EINVAL;
        }
        if (len - i <= n)
            return FS_EINVAL;
        for (k = 1; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return FS_EINVAL;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return FS_EINVAL;
        i += n + 1;
    }
    return FS_OK;
}

enum fs_rc
proto_kind_check(const char *s)
{
    size_t i, n = strlen(s);

    if (n == 0 || n > PROTO_KIND_MAX_BYTES || s[0] < 'a' || s[0] > 'z')
        return FS_EINVAL;
    for (i = 1; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return FS_EINVAL;
    }
    return FS_OK;
}

/* One-line text (author, site, region, names): valid UTF-8, no control
 * characters, bounded. */
static enum fs_rc
check_line(const char *s, size_t max, const char *what, struct fs_err *err)
{
    size_t i, n = strlen(s);

    if (n > max)
        return fs_err_set(err, FS_ETOOBIG, "%s is longer than %zu bytes", what, max);
    if (proto_utf8_check(s, n))
        return fs_err_set(err, FS_EINVAL, "%s is not valid UTF-8", what);
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return fs_err_set(err, FS_EINVAL, "%s contains a control character", what);
    return FS_OK;
}

static enum fs_rc
check_field_name(const char *s)
{
    size_t i, n = strlen(s);

    if (n == 0 || n > PROTO_FIELD_NAME_MAX)
        return FS_EINVAL;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return FS_EINVAL;
    for (i = 1; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return FS_EINVAL;
    }
    return FS_OK;
}

static enum fs_rc
check_media_type(const char *s)
{
    size_t i, n = strlen(s), slash = 0;

    if (n == 0 || n > 127)
        return FS_EINVAL;
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (c == '/') {
            if (slash || i == 0 || i + 1 == n)
                return FS_EINVAL;
            slash = i;
        } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     strchr("!#$&^_.+-", c))) {
            return FS_EINVAL;
        }
    }
    return slash ? FS_OK : FS_EINVAL;
}

enum fs_rc
proto_content_check(const struct proto_content *c, struct fs_err *err)
{
    int64_t ms;
    size_t i, j;
    enum fs_rc rc;

    if (!c->kind || proto_kind_check(c->kind))
        return fs_err_set(err, FS_EINVAL,
                          "kind must be 1-32 characters of a-z, 0-9, '_' or '-', "
                          "starting with a letter");
    if (!c->observed_at || proto_time_parse(c->observed_at, strlen(c->observed_at), 0, &ms))
        return fs_err_set(
            err, FS_EINVAL,
            "observed_at must be RFC 3339 with a zone, like 2026-11-28T09:30:00+08:00");
    if (c->author && (rc = check_line(c->author, PROTO_TEXT_MAX_BYTES, "author", err)))
        return rc;
    if (c->site_name && (rc = check_line(c->site_name, PROTO_TEXT_MAX_BYTES, "site", err)))
        return rc;
    if (c->region && (rc = check_line(c->region, PROTO_TEXT_MAX_BYTES, "region", err)))
        return rc;
    if (c->has_gps) {
        if (!isfinite(c->lat) || c->lat < -90 || c->lat > 90)
            return fs_err_set(err, FS_EINVAL, "latitude must lie in -90..90");
        if (!isfinite(c->lon) || c->lon < -180 || c->lon > 180)
            return fs_err_set(err, FS_EINVAL, "longitude must lie in -180..180");
    }
    if (c->has_acc) {
        if (!c->has_gps)
            return fs_err_set(err, FS_EINVAL, "GPS accuracy given without a position");
        if (!isfinite(c->acc_m) || c->acc_m < 0 || c->acc_m > 1e6)
            return fs_err_set(err, FS_EINVAL, "GPS accuracy must lie in 0..1000000 metres");
    }
    if (c->n_fields > PROTO_FIELDS_MAX)
        return fs_err_set(err, FS_ETOOBIG, "more than %u fields", PROTO_FIELDS_MAX);
    for (i = 0; i < c->n_fields; i++) {
        const char *v = c->fields[i].value;

        if (check_field_name(c->fields[i].name))
            return fs_err_set(err, FS_EINVAL,
                              "field %zu: a name is 1-64 characters of letters, digits, "
                              "'_', '-' or '.', starting with a letter",
                              i + 1);
        for (j = 0; j < i; j++)
            if (strcmp(c->fields[j].name, c->fields[i].name) == 0)
                return fs_err_set(err, FS_EINVAL, "field \"%s\" appears twice", c->fields[i].name);
        if (strlen(v) > PROTO_FIELD_VALUE_MAX)
            return fs_err_set(err, FS_ETOOBIG, "field \"%s\" is longer than %u bytes",
                              c->fields[i].name, PROTO_FIELD_VALUE_MAX);
        if (proto_utf8_check(v, strlen(v)))
            return fs_err_set(err, FS_EINVAL, "field \"%s\" is not valid UTF-8", c->fields[i].name);
    }
    if (c->note) {
        size_t n = strlen(c->note);

        if (n > PROTO_NOTE_MAX_BYTES)
            return fs_err_set(err, FS_ETOOBIG, "note is longer than %u bytes (64 KiB)",
                              PROTO_NOTE_MAX_BYTES);
        if (proto_utf8_check(c->note, n))
            return fs_err_set(err, FS_EINVAL, "note is not valid UTF-8");
    }
    if (c->n_attachments > PROTO_ATTACHMENTS_MAX)
        return fs_err_set(err, FS_ETOOBIG, "more than %u attachments", PROTO_ATTACHMENTS_MAX);
    for (i = 0; i < c->n_attachments; i++) {
        const struct proto_attachment *a = &c->attachments[i];

        if (!a->name || !*a->name || strchr(a->name, '/') ||
            check_line(a->name, 255, "attachment name", NULL) || strcmp(a->name, ".") == 0 ||
            strcmp(a->name, "..") == 0)
            return fs_err_set(err, FS_EINVAL, "attachment %zu has an invalid file name", i + 1);
        if (!a->type || check_media_type(a->type))
            return fs_err_set(err, FS_EINVAL, "attachment %zu has an invalid media type", i + 1);
        if (a->size > PROTO_MAX_SAFE_INT)
            return fs_err_set(err, FS_EINVAL, "attachment %zu is too large", i + 1);
    }
    return FS_OK;
}

enum fs_rc
proto_content_encode(const struct proto_content *c, struct fs_buf *b)
{
    enum fs_rc rc = FS_OK;
    size_t i;
    int first;

#define W(x)                                                                                       \
    do {                                                                                           \
        if (!rc)                                                                                   \
            rc = (x);                                                                              \
    } while (0)
#define WS(key, s)                                                                                 \
    do {                                                                                           \
        W(proto_jw_key(b, key));                                                                   \
        W(proto_jw_str(b, (s), strlen(s)));                                                        \
    } while (0)
    W(fs_buf_addc(b, '{'));
    WS("kind", c->kind);
    W(fs_buf_addc(b, ','));
    WS("observed_at", c->observed_at);
    if (c->author) {
        W(fs_buf_addc(b, ','));
        WS("author", c->author);
    }
    if (c->site_name || c->region || c->has_gps) {
        W(fs_buf_adds(b, ",\"site\":{"));
        first = 1;
        if (c->site_name) {
            WS("name", c->site_name);
            first = 0;
        }
        if (c->region) {
            if (!first)
                W(fs_buf_addc(b, ','));
            WS("region", c->region);
            first = 0;
        }
        if (c->has_gps) {
            if (!first)
                W(fs_buf_addc(b, ','));
            W(fs_buf_adds(b, "\"lat\":"));
            W(proto_jw_double(b, c->lat));
            W(fs_buf_adds(b, ",\"lon\":"));
            W(proto_jw_double(b, c->lon));
            if (c->has_acc) {
                W(fs_buf_adds(b, ",\"acc_m\":"));
                W(proto_jw_double(b, c->acc_m));
            }
        }
        W(fs_buf_addc(b, '}'));
    }
    if (c->n_fields) {
        W(fs_buf_adds(b, ",\"fields\":{"));
        for (i = 0; i < c->n_fields; i++) {
            if (i)
                W(fs_buf_addc(b, ','));
            WS(c->fields[i].name, c->fields[i].value);
        }
        W(fs_buf_addc(b, '}'));
    }
    if (c->note) {
        W(fs_buf_addc(b, ','));
        WS("note", c->note);
    }
    if (c->n_attachments) {
        W(fs_buf_adds(b, ",\"attachments\":["));
        for (i = 0; i < c->n_attachments; i++) {
            const struct proto_attachment *a = &c->attachments[i];

            W(fs_buf_adds(b, i ? ",{" : "{"));
            WS("name", a->name);
            W(fs_buf_adds(b, ",\"hash\":"));
            W(proto_jw_hex(b, a->hash, PROTO_HASH_BYTES));
            W(fs_buf_adds(b, ",\"size\":"));
            W(proto_jw_uint(b, a->size));
            W(fs_buf_addc(b, ','));
            WS("type", a->type);
            W(fs_buf_addc(b, '}'));
        }
        W(fs_buf_addc(b, ']'));
    }
    W(fs_buf_addc(b, '}'));
#undef WS
#undef W
    if (!rc && b->len > PROTO_CONTENT_MAX_BYTES)
        rc = FS_ETOOBIG;
    return rc;
}

static const char *const content_keys[] = {"kind",   "observed_at", "author",      "site",
                                           "fields", "note",        "attachments", NULL};
static const char *const content_req[] = {"kind", "observed_at", NULL};
static const char *const site_keys[] = {"name", "region", "lat", "lon", "acc_m", NULL};
static const char *const att_keys[] = {"name", "hash", "size", "type", NULL};

/* A string member: absent is fine (NULL), anything but a string is not. */
static enum fs_rc
opt_str(const json_t *obj, const char *key, char **out, struct fs_err *err)
{
    json_t *v = json_object_get(obj, key);

    if (!v)
        return FS_OK;
    if (!json_is_string(v))
        return fs_err_set(err, FS_EINVAL, "\"%s\" must be a string", key);
    return proto_content_set_str(out, json_string_value(v));
}

enum fs_rc
proto_content_from_json(const json_t *obj, const char *const *extra, struct proto_content *c,
                        struct fs_err *err)
{
    const char *allowed[16];
    const char *k;
    json_t *v, *site, *fields, *atts;
    size_t i, n = 0;
    enum fs_rc rc;

    proto_content_init(c);
    for (i = 0; content_keys[i]; i++)
        allowed[n++] = content_keys[i];
    for (i = 0; extra && extra[i] && n < FS_ARRAY_LEN(allowed) - 1; i++)
        allowed[n++] = extra[i];
    allowed[n] = NULL;
    rc = proto_json_keys(obj, allowed, content_req, "record", err);
    if (rc)
        goto out;
    if ((rc = opt_str(obj, "kind", &c->kind, err)) ||
        (rc = opt_str(obj, "observed_at", &c->observed_at, err)) ||
        (rc = opt_str(obj, "author", &c->author, err)) ||
        (rc = opt_str(obj, "note", &c->note, err)))
        goto out;
    site = json_object_get(obj, "site");
    if (site) {
        json_t *lat, *lon, *acc;

        rc = proto_json_keys(site, site_keys, NULL, "site", err);
        if (rc)
            goto out;
        if ((rc = opt_str(site, "name", &c->site_name, err)) ||
            (rc = opt_str(site, "region", &c->region, err)))
            goto out;
        lat = json_object_get(site, "lat");
        lon = json_object_get(site, "lon");
        acc = json_object_get(site, "acc_m");
        if (!lat != !lon) {
            rc = fs_err_set(err, FS_EINVAL, "site needs both lat and lon, or neither");
            goto out;
        }
        if (lat) {
            if (!json_is_number(lat) || !json_is_number(lon)) {
                rc = fs_err_set(err, FS_EINVAL, "lat and lon must be numbers");
                goto out;
            }
            c->has_gps = 1;
            c->lat = json_number_value(lat);
            c->lon = json_number_value(lon);
        }
        if (acc) {
            if (!json_is_number(acc)) {
                rc = fs_err_set(err, FS_EINVAL, "acc_m must be a number");
                goto out;
            }
            c->has_acc = 1;
            c->acc_m = json_number_value(acc);
        }
    }
    fields = json_object_get(obj, "fields");
    if (fields) {
        if (!json_is_object(fields)) {
            rc = fs_err_set(err, FS_EINVAL, "\"fields\" must be an object");
            goto out;
        }
        if (json_object_size(fields) > PROTO_FIELDS_MAX) {
            rc = fs_err_set(err, FS_ETOOBIG, "more than %u fields", PROTO_FIELDS_MAX);
            goto out;
        }
        json_object_foreach(fields, k, v)
        {
            if (!json_is_string(v)) {
                rc = fs_err_set(err, FS_EINVAL, "field values must be strings");
                goto out;
            }
            if (check_field_name(k)) {
                rc = fs_err_set(err, FS_EINVAL,
                                "a field name is 1-64 characters of letters, digits, '_', '-' "
                                "or '.', starting with a letter");
                goto out;
            }
            rc = field_append(c, k, json_string_value(v));
            if (rc)
                goto out;
        }
    }
    atts = json_object_get(obj, "attachments");
    if (atts) {
        if (!json_is_array(atts)) {
            rc = fs_err_set(err, FS_EINVAL, "\"attachments\" must be an array");
            goto out;
        }
        if (json_array_size(atts) > PROTO_ATTACHMENTS_MAX) {
            rc = fs_err_set(err, FS_ETOOBIG, "more than %u attachments", PROTO_ATTACHMENTS_MAX);
            goto out;
        }
        if (json_array_size(atts)) {
            c->attachments = calloc(json_array_size(atts), sizeof *c->attachments);
            if (!c->attachments) {
                rc = FS_ENOMEM;
                goto out;
            }
        }
        json_array_foreach(atts, i, v)
        {
            struct proto_attachment *a = &c->attachments[i];

            c->n_attachments++;
            rc = proto_json_keys(v, att_keys, att_keys, "attachment", err);
            if (rc)
                goto out;
            if ((rc = opt_str(v, "name", &a->name, err)) ||
                (rc = opt_str(v, "type", &a->type, err)))
                goto out;
            if (proto_json_hex(json_object_get(v, "hash"), a->hash, PROTO_HASH_BYTES)) {
                rc = fs_err_set(err, FS_EINVAL, "attachment hash is not 64 lowercase hex digits");
                goto out;
            }
            if (proto_json_uint(json_object_get(v, "size"), 0, &a->size)) {
                rc = fs_err_set(err, FS_EINVAL, "attachment size is not an integer");
                goto out;
            }
        }
    }
    rc = proto_content_check(c, err);
out:
    if (rc)
        proto_content_release(c);
    return rc;
}

/* The fast path: content in the canonical form (every fieldsync writer's), read
 * in the writer's key order by proto_jr, checked, written again and compared
 * byte for byte. Then the strict parser would have built the very same struct
 * (it parses what proto_content_encode writes back to what was encoded, which
 * the unit and fuzz tests hold), for a fraction of jansson's cost. 0 when the
 * bytes are not canonical, or anything is off: the caller parses them. */
int
proto_content_parse_canonical(const void *bytes, size_t len, struct proto_content *c)
{
    struct proto_jr r = {bytes, (const unsigned char *)bytes + len};
    struct fs_buf again;
    int ok = 0, first;

    proto_content_init(c);
    /* (proto_content_check below checks every string's UTF-8.) */
    if (!proto_jr_lit(&r, "{\"kind\":") || !proto_jr_str(&r, &c->kind) ||
        !proto_jr_lit(&r, ",\"observed_at\":") || !proto_jr_str(&r, &c->observed_at))
        return 0;
    if (proto_jr_lit(&r, ",\"author\":") && !proto_jr_str(&r, &c->author))
        return 0;
    if (proto_jr_lit(&r, ",\"site\":{")) {
        first = 1;
        if (proto_jr_lit(&r, "\"name\":")) {
            if (!proto_jr_str(&r, &c->site_name))
                return 0;
            first = 0;
        }
        if (proto_jr_lit(&r, first ? "\"region\":" : ",\"region\":")) {
            if (!proto_jr_str(&r, &c->region))
                return 0;
            first = 0;
        }
        if (proto_jr_lit(&r, first ? "\"lat\":" : ",\"lat\":")) {
            if (!proto_jr_num(&r, &c->lat) || !proto_jr_lit(&r, ",\"lon\":") ||
                !proto_jr_num(&r, &c->lon))
                return 0;
            c->has_gps = 1;
            if (proto_jr_lit(&r, ",\"acc_m\":")) {
                if (!proto_jr_num(&r, &c->acc_m))
                    return 0;
                c->has_acc = 1;
            }
        }
        if (!proto_jr_lit(&r, "}"))
            return 0;
    }
    if (proto_jr_lit(&r, ",\"fields\":{")) {
        do {
            char *name, *value;

            if (c->n_fields >= PROTO_FIELDS_MAX || !proto_jr_str(&r, &name))
                return 0;
            if (!proto_jr_lit(&r, ":") || !proto_jr_str(&r, &value)) {
                free(name);
                return 0;
            }
            if (field_take(c, name, value))
                return 0;
        } while (proto_jr_lit(&r, ","));
        if (!proto_jr_lit(&r, "}"))
            return 0;
    }
    if (proto_jr_lit(&r, ",\"note\":") && !proto_jr_str(&r, &c->note))
        return 0;
    if (proto_jr_lit(&r, ",\"attachments\":[")) {
        c->attachments = calloc(PROTO_ATTACHMENTS_MAX, sizeof *c->attachments);
        if (!c->attachments)
            return 0;
        do {
            struct proto_attachment *a;

            if (c->n_attachments >= PROTO_ATTACHMENTS_MAX)
                return 0;
            a = &c->attachments[c->n_attachments++];
            if (!proto_jr_lit(&r, "{\"name\":") || !proto_jr_str(&r, &a->name) ||
                !proto_jr_lit(&r, ",\"hash\":") || !proto_jr_hex(&r, a->hash, PROTO_HASH_BYTES) ||
                !proto_jr_lit(&r, ",\"size\":") || !proto_jr_uint(&r, &a->size) ||
                !proto_jr_lit(&r, ",\"type\":") || !proto_jr_str(&r, &a->type) ||
                !proto_jr_lit(&r, "}"))
                return 0;
        } while (proto_jr_lit(&r, ","));
        if (!proto_jr_lit(&r, "]"))
            return 0;
    }
    if (!proto_jr_lit(&r, "}") || r.p != r.end || proto_content_check(c, NULL))
        return 0;
    fs_buf_init(&again, PROTO_CONTENT_MAX_BYTES + 1);
    if (fs_buf_reserve(&again, len) == FS_OK && proto_content_encode(c, &again) == FS_OK &&
        again.len == len && memcmp(again.data, bytes, len) == 0)
        ok = 1;
    fs_buf_release(&again);
    return ok;
}

enum fs_rc
proto_content_parse(const void *bytes, size_t len, struct proto_content *c, struct fs_err *err)
{
    proto_content_init(c);
    if (len > PROTO_CONTENT_MAX_BYTES)
        return fs_err_set(err, FS_ETOOBIG, "content is longer than %u bytes",
                          PROTO_CONTENT_MAX_BYTES);
    if (proto_content_parse_canonical(bytes, len, c))
        return FS_OK;
    proto_content_release(c);
    return proto_content_parse_general(bytes, len, c, err);
}

enum fs_rc
proto_content_parse_general(const void *bytes, size_t len, struct proto_content *c,
                            struct fs_err *err)
{
    json_t *root = NULL;
    enum fs_rc rc;

    proto_content_init(c);
    if (len > PROTO_CONTENT_MAX_BYTES)
        return fs_err_set(err, FS_ETOOBIG, "content is longer than %u bytes",
                          PROTO_CONTENT_MAX_BYTES);
    rc = proto_json_parse(bytes, len, &root, err);
    if (rc)
        return rc;
    rc = proto_content_from_json(root, NULL, c, err);
    json_decref(root);
    return rc;
}
