/* GET /v1/projects/{p}/records.{csv,jsonl,geojson}: the server's merged view
 * through the same export code as `fieldsync export`. The answer is built in
 * memory up to the answer cap; past it the coordinator is told to pull. */
#include <string.h>

#include "proto_content.h"
#include "proto_export.h"
#include "srv.h"

struct xpass {
    struct proto_field_set *fields;
    struct proto_export *x;
    const char *kind;
    int has_since;
    int64_t since_ms;
    struct fs_err *err;
    enum fs_rc rc;
};

/* Whether a live record passes ?kind= and ?since= (observed_at in UTC). */
static int
wanted(const struct xpass *p, const struct srv_record *r)
{
    struct proto_content c;
    int64_t ms;
    int ok;

    if (r->state != PROTO_REC_LIVE || !r->content)
        return 0;
    if (!p->kind && !p->has_since)
        return 1;
    if (proto_content_parse(r->content, r->content_len, &c, NULL))
        return 1; /* the exporter refuses it with a message */
    ok = (!p->kind || strcmp(c.kind, p->kind) == 0) &&
         (!p->has_since ||
          (proto_time_parse(c.observed_at, strlen(c.observed_at), 0, &ms) == FS_OK &&
           ms >= p->since_ms));
    proto_content_release(&c);
    return ok;
}

static int
collect(void *ctx, const struct srv_record *r)
{
    struct xpass *p = ctx;

    if (!wanted(p, r))
        return 0;
    p->rc = proto_field_set_add_content(p->fields, r->content, r->content_len, p->err);
    return p->rc != FS_OK;
}

static int
emit(void *ctx, const struct srv_record *r)
{
    struct xpass *p = ctx;
    struct proto_export_record er;

    if (!wanted(p, r))
        return 0;
    memset(&er, 0, sizeof er);
    er.id = r->id;
    er.gen = r->gen;
    er.feed = r->owner;
    er.conflicts = (const unsigned char(*)[PROTO_HASH_BYTES])r->conflicts;
    er.n_conflicts = r->n_conflicts;
    er.content = r->content;
    er.content_len = r->content_len;
    p->rc = proto_export_add(p->x, &er, p->err);
    return p->rc != FS_OK;
}

static enum fs_rc
to_body(void *ctx, const void *data, size_t n)
{
    return fs_buf_add(ctx, data, n);
}

void
srv_export(struct srv *s, struct srv_db *db, const struct srv_req *rq, const char *project,
           const char *rest, struct srv_resp *rs)
{
    struct proto_export_opts o;
    struct xpass p;
    struct fs_err err = {{0}};
    enum fs_rc rc;

    memset(&o, 0, sizeof o);
    memset(&p, 0, sizeof p);
    p.err = &err;
    if (strcmp(rest, "records.csv") == 0) {
        o.format = PROTO_EXPORT_CSV;
        rs->content_type = "text/csv; charset=utf-8";
    } else if (strcmp(rest, "records.jsonl") == 0) {
        o.format = PROTO_EXPORT_JSONL;
        rs->content_type = "application/jsonl";
    } else {
        o.format = PROTO_EXPORT_GEOJSON;
        rs->content_type = "application/geo+json";
    }
    o.excel = o.format == PROTO_EXPORT_CSV && rq->query_excel && strcmp(rq->query_excel, "1") == 0;
    p.kind = rq->query_kind;
    if (p.kind && proto_kind_check(p.kind)) {
        srv_resp_error(s, rs, 400, "malformed", "kind is not a valid kind");
        return;
    }
    if (rq->query_since) {
        if (proto_time_parse(rq->query_since, strlen(rq->query_since), 0, &p.since_ms)) {
            srv_resp_error(s, rs, 400, "malformed", "since must be RFC 3339 with a zone");
            return;
        }
        p.has_since = 1;
    }
    /* Pass 1, the field set: JSON Lines need none. */
    rc = FS_OK;
    if (o.format != PROTO_EXPORT_JSONL) {
        rc = proto_field_set_new(&p.fields);
        if (!rc) {
            rc = s->ops->records_each(db, project, collect, &p, &err);
            if (!rc)
                rc = p.rc;
        }
    }
    fs_buf_reset(&rs->body);
    if (!rc)
        rc = proto_export_new(&o, p.fields, to_body, &rs->body, &p.x);
    if (!rc) {
        rc = s->ops->records_each(db, project, emit, &p, &err);
        if (!rc)
            rc = p.rc;
    }
    if (!rc)
        rc = proto_export_finish(p.x, &err);
    proto_export_free(p.x);
    proto_field_set_free(p.fields);
    if (rc == FS_ETOOBIG) {
        srv_resp_error(s, rs, 413, "too_big",
                       "the export is larger than one answer; use 'fieldsync pull' and "
                       "'fieldsync export'");
        return;
    }
    if (rc) {
        srv_resp_error(s, rs, rc == FS_EINVAL ? 500 : 503,
                       rc == FS_EINVAL ? "internal" : "unavailable",
                       "the export failed; nothing was changed");
        return;
    }
    rs->status = 200;
}
