/* Records: appending the own feed's revisions, the merged records view, and
 * reading it back. */
#include "store_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_json.h"

/* Revisions of one record as loaded for a merge. */
struct rev_set {
    struct proto_rev *revs;
    uint64_t *seqs;
    char (*at)[PROTO_TIME_MAX_LEN];
    size_t n, alloc;
};

static void
rev_set_release(struct rev_set *rs)
{
    free(rs->revs);
    free(rs->seqs);
    free(rs->at);
    memset(rs, 0, sizeof *rs);
}

/* Pulls "at" out of entry bytes already verified on the way in. */
static void
entry_at(const void *bytes, size_t len, char out[PROTO_TIME_MAX_LEN])
{
    struct proto_entry e;

    out[0] = 0;
    if (proto_entry_parse(bytes, len, &e, NULL) == FS_OK)
        memcpy(out, e.at, PROTO_TIME_MAX_LEN);
}

static enum fs_rc
load_revs(struct store *s, const char *id, int with_at, struct rev_set *rs, struct fs_err *err)
{
    sqlite3_stmt *st;
    enum fs_rc rc;
    int r;

    memset(rs, 0, sizeof *rs);
    rc = store_stmt(s, ST_RECORD_REVS, &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        struct proto_rev *rv;

        if (rs->n == rs->alloc) {
            size_t na = rs->alloc ? rs->alloc * 2 : 8;
            struct proto_rev *nr = realloc(rs->revs, na * sizeof *nr);
            uint64_t *ns;
            char(*nat)[PROTO_TIME_MAX_LEN];

            if (!nr)
                goto nomem;
            rs->revs = nr;
            ns = realloc(rs->seqs, na * sizeof *ns);
            if (!ns)
                goto nomem;
            rs->seqs = ns;
            nat = realloc(rs->at, na * sizeof *nat);
            if (!nat)
                goto nomem;
            rs->at = nat;
            rs->alloc = na;
        }
        rv = &rs->revs[rs->n];
        memset(rv, 0, sizeof *rv);
        if (sqlite3_column_bytes(st, 0) != PROTO_KEY_BYTES ||
            sqlite3_column_bytes(st, 2) != PROTO_HASH_BYTES) {
            rc = fs_err_set(err, FS_ECORRUPT, "the store holds a malformed entry row");
            goto fail;
        }
        memcpy(rv->feed, sqlite3_column_blob(st, 0), PROTO_KEY_BYTES);
        rs->seqs[rs->n] = (uint64_t)sqlite3_column_int64(st, 1);
        memcpy(rv->hash, sqlite3_column_blob(st, 2), PROTO_HASH_BYTES);
        rv->gen = (uint64_t)sqlite3_column_int64(st, 3);
        if (sqlite3_column_bytes(st, 4) == PROTO_HASH_BYTES) {
            rv->has_parent = 1;
            memcpy(rv->parent, sqlite3_column_blob(st, 4), PROTO_HASH_BYTES);
        }
        rv->op = sqlite3_column_int(st, 5) == PROTO_OP_DELETE ? PROTO_OP_DELETE : PROTO_OP_PUT;
        rv->by_coordinator = sqlite3_column_int(st, 6);
        rs->at[rs->n][0] = 0;
        if (with_at)
            entry_at(sqlite3_column_blob(st, 7), (size_t)sqlite3_column_bytes(st, 7),
                     rs->at[rs->n]);
        rs->n++;
    }
    if (r != SQLITE_DONE) {
        rc = store_sqlerr(s, r, "reading a record's revisions", err);
        goto fail;
    }
    sqlite3_reset(st);
    return FS_OK;
nomem:
    rc = fs_err_set(err, FS_ENOMEM, "out of memory");
fail:
    sqlite3_reset(st);
    rev_set_release(rs);
    return rc;
}

/* kind and observed_at of content bytes (already verified when stored). */
static enum fs_rc
content_summary(const void *bytes, size_t len, char kind[PROTO_KIND_MAX_BYTES + 1],
                int64_t *observed_ms)
{
    struct proto_content c;
    enum fs_rc rc;

    rc = proto_content_parse(bytes, len, &c, NULL);
    if (rc)
        return rc;
    snprintf(kind, PROTO_KIND_MAX_BYTES + 1, "%s", c.kind);
    rc = proto_time_parse(c.observed_at, strlen(c.observed_at), 0, observed_ms);
    proto_content_release(&c);
    return rc;
}

enum fs_rc
store_record_refresh(struct store *s, const char *id, const struct proto_content *known,
                     const unsigned char *known_hash, uint64_t own_seq, struct fs_err *err)
{
    struct rev_set rs;
    struct proto_merge m;
    sqlite3_stmt *st;
    char kind[PROTO_KIND_MAX_BYTES + 1] = "";
    int64_t observed_ms = 0;
    unsigned char *revs_blob = NULL;
    enum fs_rc rc;
    int r, merged = 0;

    rc = load_revs(s, id, 0, &rs, err);
    if (rc)
        return rc;
    rc = proto_merge_record(rs.revs, rs.n, &m);
    if (rc) {
        rc = fs_err_set(err, rc, "out of memory");
        goto out;
    }
    merged = 1;
    if (m.state == PROTO_REC_LIVE) {
        const struct proto_rev *w = &rs.revs[m.winner];

        if (known && known_hash && memcmp(known_hash, w->hash, PROTO_HASH_BYTES) == 0) {
            snprintf(kind, sizeof kind, "%s", known->kind);
            rc = proto_time_parse(known->observed_at, strlen(known->observed_at), 0, &observed_ms);
        } else {
            rc = store_stmt(s, ST_ENTRY_CONTENT, &st, err);
            if (rc)
                goto out;
            sqlite3_bind_blob(st, 1, w->feed, PROTO_KEY_BYTES, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)rs.seqs[m.winner]);
            r = sqlite3_step(st);
            if (r != SQLITE_ROW) {
                rc = store_sqlerr(s, r == SQLITE_DONE ? SQLITE_CORRUPT : r, "reading content", err);
                goto out;
            }
            rc = content_summary(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                                 kind, &observed_ms);
            sqlite3_reset(st);
        }
        if (rc) {
            rc = fs_err_set(err, FS_ECORRUPT, "record %s has unreadable content", id);
            goto out;
        }
    }
    rc = store_stmt(s, ST_RECORD_UPSERT, &st, err);
    if (rc)
        goto out;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)m.state);
    if (m.has_owner)
        sqlite3_bind_blob(st, 3, m.owner, PROTO_KEY_BYTES, SQLITE_STATIC);
    if (m.state == PROTO_REC_LIVE) {
        const struct proto_rev *w = &rs.revs[m.winner];

        sqlite3_bind_blob(st, 4, w->hash, PROTO_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(st, 5, w->feed, PROTO_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)rs.seqs[m.winner]);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)w->gen);
        sqlite3_bind_text(st, 8, kind, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 9, observed_ms);
    }
    sqlite3_bind_int64(st, 10, (sqlite3_int64)m.n_conflicts);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)own_seq);
    if (m.n_conflicts) {
        size_t k;

        revs_blob = malloc(m.n_conflicts * PROTO_HASH_BYTES);
        if (!revs_blob) {
            rc = fs_err_set(err, FS_ENOMEM, "out of memory");
            goto out;
        }
        for (k = 0; k < m.n_conflicts; k++)
            memcpy(revs_blob + k * PROTO_HASH_BYTES, rs.revs[m.conflicts[k]].hash,
                   PROTO_HASH_BYTES);
        sqlite3_bind_blob(st, 12, revs_blob, (int)(m.n_conflicts * PROTO_HASH_BYTES),
                          SQLITE_STATIC);
    }
    r = sqlite3_step(st);
    sqlite3_reset(st);
    if (r != SQLITE_DONE)
        rc = store_sqlerr(s, r, "updating the records view", err);
out:
    if (merged)
        proto_merge_release(&m);
    rev_set_release(&rs);
    free(revs_blob);
    return rc;
}

/* Opens the write transaction of a single operation, unless the caller holds
 * one (store_begin). *own says whether this call must commit it. */
static enum fs_rc
op_begin(struct store *s, int *own, struct fs_err *err)
{
    *own = !s->in_tx;
    return *own ? store_exec(s, "BEGIN IMMEDIATE", err) : FS_OK;
}

static enum fs_rc
op_end(struct store *s, int own, enum fs_rc rc, struct fs_err *err)
{
    if (!own)
        return rc;
    if (rc == FS_OK)
        rc = store_exec(s, "COMMIT", err);
    if (rc)
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* An own entry built and signed, ready to be written. */
struct own_entry {
    uint64_t seq;
    unsigned char hash[PROTO_HASH_BYTES];
    unsigned char sig[PROTO_SIG_BYTES];
    unsigned char content_hash[PROTO_HASH_BYTES];
};

/* The own feed's head: its seq and hash (seq 0 for an empty feed). */
static enum fs_rc
own_head(struct store *s, uint64_t *seq, unsigned char hash[PROTO_HASH_BYTES], struct fs_err *err)
{
    sqlite3_stmt *st;
    enum fs_rc rc;
    int r;

    *seq = 0;
    rc = store_stmt(s, ST_SELF_HEAD, &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, s->pk, PROTO_KEY_BYTES, SQLITE_STATIC);
    r = sqlite3_step(st);
    if (r != SQLITE_ROW)
        return store_sqlerr(s, r == SQLITE_DONE ? SQLITE_CORRUPT : r, "reading the feed head", err);
    *seq = (uint64_t)sqlite3_column_int64(st, 0);
    if (*seq > 0) {
        if (sqlite3_column_bytes(st, 1) != PROTO_HASH_BYTES) {
            sqlite3_reset(st);
            return fs_err_set(err, FS_ECORRUPT, "the own feed's head is malformed");
        }
        memcpy(hash, sqlite3_column_blob(st, 1), PROTO_HASH_BYTES);
    }
    sqlite3_reset(st);
    return FS_OK;
}

/* Builds the entry that follows (head_seq, head_hash) and signs it: its bytes
 * into out, the rest into oe. content: the canonical content bytes (NULL for
 * a delete). Touches no table, so it may run while another thread writes. */
static enum fs_rc
own_sign(struct store *s, uint64_t head_seq, const unsigned char *head_hash, enum proto_op op,
         const char *id, uint64_t gen, const unsigned char *parent, const unsigned char *content,
         size_t clen, struct fs_buf *out, struct own_entry *oe, struct fs_err *err)
{
    struct proto_entry e;
    enum fs_rc rc;

    memset(&e, 0, sizeof e);
    e.seq = head_seq + 1;
    if (head_seq > 0) {
        e.has_prev = 1;
        memcpy(e.prev, head_hash, PROTO_HASH_BYTES);
    }
    memcpy(e.feed, s->pk, PROTO_KEY_BYTES);
    proto_time_format_ms(store_now_ms(), e.at);
    e.op = op;
    memcpy(e.record_id, id, PROTO_UUID_LEN + 1);
    e.gen = gen;
    if (parent) {
        e.has_parent = 1;
        memcpy(e.parent, parent, PROTO_HASH_BYTES);
    }
    if (op == PROTO_OP_PUT) {
        e.has_content = 1;
        e.enc = PROTO_ENC_JSON;
        e.content_len = clen;
        proto_hash(content, clen, e.content_hash);
    }
    rc = proto_entry_check(&e, err);
    if (rc)
        return rc;
    fs_buf_reset(out);
    rc = proto_entry_encode(&e, out);
    if (rc)
        return fs_err_set(err, rc, "entry is too large");
    proto_entry_sign(out->data, out->len, s->sk, oe->sig);
    proto_entry_hash(out->data, out->len, oe->sig, oe->hash);
    oe->seq = e.seq;
    memcpy(oe->content_hash, e.content_hash, PROTO_HASH_BYTES);
    return FS_OK;
}

/* Writes a signed own entry (the feed head is the caller's). */
static enum fs_rc
own_insert(struct store *s, const struct own_entry *oe, const unsigned char *ebytes, size_t elen,
           enum proto_op op, const char *id, uint64_t gen, const unsigned char *parent,
           const unsigned char *content, size_t clen, struct fs_err *err)
{
    sqlite3_stmt *st;
    enum fs_rc rc;
    int r;

    rc = store_stmt(s, ST_ENTRY_INSERT, &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, s->pk, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)oe->seq);
    sqlite3_bind_blob(st, 3, oe->hash, PROTO_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, ebytes, (int)elen, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, oe->sig, PROTO_SIG_BYTES, SQLITE_STATIC);
    if (content)
        sqlite3_bind_blob(st, 6, content, (int)clen, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)gen);
    if (parent)
        sqlite3_bind_blob(st, 9, parent, PROTO_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_int(st, 10, (int)op);
    if (content)
        sqlite3_bind_blob(st, 11, oe->content_hash, PROTO_HASH_BYTES, SQLITE_STATIC);
    r = sqlite3_step(st);
    sqlite3_reset(st);
    if (r != SQLITE_DONE)
        return store_sqlerr(s, r, "saving the entry", err);
    return FS_OK;
}

static enum fs_rc
own_head_set(struct store *s, uint64_t seq, const unsigned char hash[PROTO_HASH_BYTES],
             struct fs_err *err)
{
    sqlite3_stmt *st;
    enum fs_rc rc;
    int r;

    rc = store_stmt(s, ST_FEED_HEAD_SET, &st, err);
    if (rc)
        return rc;
    sqlite3_bind_blob(st, 1, s->pk, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    sqlite3_bind_blob(st, 3, hash, PROTO_HASH_BYTES, SQLITE_STATIC);
    r = sqlite3_step(st);
    sqlite3_reset(st);
    if (r != SQLITE_DONE)
        return store_sqlerr(s, r, "saving the feed head", err);
    return FS_OK;
}

/* The records row of a record whose only revision is the root just written
 * here: what store_record_refresh would merge, without loading anything. */
static enum fs_rc
record_insert_root(struct store *s, const char *id, const char *kind, int64_t observed_ms,
                   const unsigned char hash[PROTO_HASH_BYTES], uint64_t seq, struct fs_err *err)
{
    sqlite3_stmt *st;
    enum fs_rc rc;
    int r;

    rc = store_stmt(s, ST_RECORD_UPSERT, &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)PROTO_REC_LIVE);
    sqlite3_bind_blob(st, 3, s->pk, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, hash, PROTO_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, s->pk, PROTO_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 7, 1);
    sqlite3_bind_text(st, 8, kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, observed_ms);
    sqlite3_bind_int64(st, 10, 0);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)seq);
    r = sqlite3_step(st);
    sqlite3_reset(st);
    if (r != SQLITE_DONE)
        return store_sqlerr(s, r, "updating the records view", err);
    return FS_OK;
}

static enum fs_rc
observed_ms_of(const struct proto_content *c, int64_t *ms, struct fs_err *err)
{
    *ms = 0;
    if (proto_time_parse(c->observed_at, strlen(c->observed_at), 0, ms))
        return fs_err_set(err, FS_EINVAL, "observed_at is not RFC 3339");
    return FS_OK;
}

/* Appends one entry to the own feed, inside the caller's transaction.
 * content: the canonical content bytes (NULL for a delete). new_root: the
 * record has no revision anywhere in this store yet (a fresh id, or one
 * looked up), so its view row is written without a merge. */
static enum fs_rc
append_own(struct store *s, enum proto_op op, const char *id, uint64_t gen,
           const unsigned char *parent, const unsigned char *content, size_t clen,
           const struct proto_content *known, int new_root, struct fs_err *err)
{
    unsigned char head[PROTO_HASH_BYTES];
    struct own_entry oe;
    uint64_t seq = 0;
    int64_t observed_ms;
    enum fs_rc rc;

    rc = own_head(s, &seq, head, err);
    if (!rc)
        rc = own_sign(s, seq, head, op, id, gen, parent, content, clen, &s->ebuf, &oe, err);
    if (!rc)
        rc = own_insert(s, &oe, s->ebuf.data, s->ebuf.len, op, id, gen, parent, content, clen, err);
    if (!rc)
        rc = own_head_set(s, oe.seq, oe.hash, err);
    if (rc)
        return rc;
    if (known && known->n_attachments) {
        rc = store_blob_refs_add(s, id, known, 1, err);
        if (rc)
            return rc;
    }
    if (new_root && known && op == PROTO_OP_PUT && gen == 1) {
        rc = observed_ms_of(known, &observed_ms, err);
        return rc ? rc : record_insert_root(s, id, known->kind, observed_ms, oe.hash, oe.seq, err);
    }
    return store_record_refresh(s, id, known, oe.hash, oe.seq, err);
}

static int
self_is_coordinator(struct store *s)
{
    sqlite3_stmt *st = NULL;
    int coord = 0;

    if (sqlite3_prepare_v2(s->db, "SELECT role = 'coordinator' FROM feeds WHERE feed = ?1", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, s->pk, PROTO_KEY_BYTES, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            coord = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    return coord;
}

enum fs_rc
store_record_create(struct store *s, const struct proto_content *c, const char *id,
                    char id_out[PROTO_UUID_LEN + 1], struct fs_err *err)
{
    enum fs_rc rc;

    rc = proto_content_check(c, err);
    if (rc)
        return rc;
    fs_buf_reset(&s->cbuf);
    rc = proto_content_encode(c, &s->cbuf);
    if (rc)
        return fs_err_set(err, rc == FS_ETOOBIG ? FS_EINVAL : rc,
                          "the record is larger than %u bytes", PROTO_CONTENT_MAX_BYTES);
    return store_record_create_encoded(s, c, s->cbuf.data, s->cbuf.len, id, id_out, err);
}

enum fs_rc
store_record_create_encoded(struct store *s, const struct proto_content *c,
                            const unsigned char *bytes, size_t len, const char *id,
                            char id_out[PROTO_UUID_LEN + 1], struct fs_err *err)
{
    char nid[PROTO_UUID_LEN + 1];
    struct rev_set rs;
    enum fs_rc rc;
    int own;

    if (id) {
        if (proto_uuid_check(id, strlen(id)))
            return fs_err_set(err, FS_EINVAL, "record id is not a lowercase UUIDv7");
        memcpy(nid, id, PROTO_UUID_LEN + 1);
    } else {
        proto_uuid7_next(&s->ids, store_now_ms(), nid);
    }
    rc = op_begin(s, &own, err);
    if (rc)
        return rc;
    if (id) {
        rc = load_revs(s, nid, 0, &rs, err);
        if (rc)
            goto out;
        if (rs.n)
            rc = fs_err_set(err, FS_EEXIST, "record %s already exists", nid);
        rev_set_release(&rs);
        if (rc)
            goto out;
    }
    rc = append_own(s, PROTO_OP_PUT, nid, 1, NULL, bytes, len, c, 1, err);
out:
    rc = op_end(s, own, rc, err);
    if (!rc)
        memcpy(id_out, nid, PROTO_UUID_LEN + 1);
    return rc;
}

/* ---- bulk: new records signed on one thread, written on another -----------------
 *
 * Signing is serial (each entry names the hash of the one before) and so is
 * writing (one connection), but the two need not wait for each other: the
 * caller's thread builds and signs entry k+1 while a writer thread inserts
 * entry k. The signing side touches no table, so the connection has one user
 * at a time: the writer while jobs are queued, the caller once drained. The
 * feed head row is written at each drain (the chain is in the entries). */

#define BULK_JOBS 64
/* Wake-ups cost more than a row: the writer is woken when this many jobs
 * wait (or at a drain), the caller when half the queue is free (or drained).
 * Both wait on one condition variable, so every wake-up is a broadcast. */
#define BULK_WAKE 16

struct bulk_job {
    struct own_entry oe;
    struct fs_buf entry;
    struct fs_buf content;
    char id[PROTO_UUID_LEN + 1];
    char kind[PROTO_KIND_MAX_BYTES + 1];
    int64_t observed_ms;
    uint64_t where;
};

struct store_bulk {
    struct store *s;
    pthread_t writer;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct bulk_job jobs[BULK_JOBS];
    unsigned head, tail; /* jobs [tail, head) are the writer's; tail moves once written */
    int stop;
    int writer_waits, caller_waits;
    unsigned caller_wants; /* the caller waits until at most this many jobs are queued */
    enum fs_rc rc;         /* the writer's first failure, then it writes nothing more */
    struct fs_err err;
    uint64_t fail_where;
    /* The caller's side: the entry last signed, and whether the head row lags it. */
    int have_head, head_dirty;
    uint64_t seq;
    unsigned char hash[PROTO_HASH_BYTES];
};

static enum fs_rc
bulk_write(struct store *s, const struct bulk_job *j, struct fs_err *err)
{
    enum fs_rc rc;

    rc = own_insert(s, &j->oe, j->entry.data, j->entry.len, PROTO_OP_PUT, j->id, 1, NULL,
                    j->content.data, j->content.len, err);
    return rc ? rc
              : record_insert_root(s, j->id, j->kind, j->observed_ms, j->oe.hash, j->oe.seq, err);
}

static void *
bulk_writer(void *arg)
{
    struct store_bulk *b = arg;
    struct bulk_job *j;
    struct fs_err err;
    enum fs_rc rc;
    int failed;

    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (b->tail == b->head && !b->stop) {
            b->writer_waits = 1;
            pthread_cond_wait(&b->cv, &b->mu);
        }
        b->writer_waits = 0;
        if (b->tail == b->head)
            break; /* stopped, and nothing left */
        j = &b->jobs[b->tail % BULK_JOBS];
        failed = b->rc != FS_OK;
        pthread_mutex_unlock(&b->mu);
        rc = failed ? FS_OK : bulk_write(b->s, j, &err);
        pthread_mutex_lock(&b->mu);
        if (rc) {
            b->rc = rc;
            b->err = err;
            b->fail_where = j->where;
        }
        b->tail++;
        if (b->caller_waits && b->head - b->tail <= b->caller_wants)
            pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

enum fs_rc
store_bulk_begin(struct store *s, struct store_bulk **out, struct fs_err *err)
{
    struct store_bulk *b;
    size_t i;

    *out = NULL;
    if (!s->in_tx)
        return fs_err_set(err, FS_EINVAL, "a bulk of records needs a transaction");
    b = calloc(1, sizeof *b);
    if (!b)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    b->s = s;
    for (i = 0; i < BULK_JOBS; i++) {
        fs_buf_init(&b->jobs[i].entry, PROTO_ENTRY_MAX_BYTES);
        fs_buf_init(&b->jobs[i].content, PROTO_CONTENT_MAX_BYTES);
    }
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    }
    if (pthread_cond_init(&b->cv, NULL) != 0) {
        pthread_mutex_destroy(&b->mu);
        free(b);
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    }
    if (pthread_create(&b->writer, NULL, bulk_writer, b) != 0) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        free(b);
        return fs_err_set(err, FS_ENOMEM, "cannot start a thread");
    }
    *out = b;
    return FS_OK;
}

/* The writer's failure, once the caller has seen it under the lock. */
static enum fs_rc
bulk_failed(struct store_bulk *b, uint64_t *where, struct fs_err *err)
{
    *err = b->err;
    *where = b->fail_where;
    return b->rc;
}

enum fs_rc
store_bulk_drain(struct store_bulk *b, uint64_t *where, struct fs_err *err)
{
    enum fs_rc rc;

    pthread_mutex_lock(&b->mu);
    while (b->tail != b->head) {
        if (b->writer_waits) /* fewer than BULK_WAKE jobs wait for it */
            pthread_cond_broadcast(&b->cv);
        b->caller_waits = 1;
        b->caller_wants = 0;
        pthread_cond_wait(&b->cv, &b->mu);
    }
    b->caller_waits = 0;
    rc = b->rc ? bulk_failed(b, where, err) : FS_OK;
    pthread_mutex_unlock(&b->mu);
    if (rc)
        return rc;
    /* The connection is the caller's again, and may change the head. */
    b->have_head = 0;
    if (b->head_dirty) {
        b->head_dirty = 0;
        return own_head_set(b->s, b->seq, b->hash, err);
    }
    return FS_OK;
}

enum fs_rc
store_bulk_add(struct store_bulk *b, const struct proto_content *c, const unsigned char *bytes,
               size_t len, uint64_t where, char id_out[PROTO_UUID_LEN + 1], uint64_t *fail_where,
               struct fs_err *err)
{
    struct store *s = b->s;
    struct bulk_job *j;
    char nid[PROTO_UUID_LEN + 1];
    int64_t observed_ms;
    enum fs_rc rc;

    *fail_where = where;
    if (c->n_attachments) {
        /* Blob rows and references: the usual way, on this thread. */
        rc = store_bulk_drain(b, fail_where, err);
        return rc ? rc : store_record_create_encoded(s, c, bytes, len, NULL, id_out, err);
    }
    if (!b->have_head) {
        rc = own_head(s, &b->seq, b->hash, err); /* drained: the writer is idle */
        if (rc)
            return rc;
        b->have_head = 1;
    }
    rc = observed_ms_of(c, &observed_ms, err);
    if (rc)
        return rc;
    if (strlen(c->kind) > PROTO_KIND_MAX_BYTES)
        return fs_err_set(err, FS_EINVAL, "kind is longer than %u bytes", PROTO_KIND_MAX_BYTES);
    proto_uuid7_next(&s->ids, store_now_ms(), nid);

    pthread_mutex_lock(&b->mu);
    while (b->head - b->tail == BULK_JOBS && !b->rc) {
        b->caller_waits = 1;
        b->caller_wants = BULK_JOBS / 2;
        pthread_cond_wait(&b->cv, &b->mu);
    }
    b->caller_waits = 0;
    rc = b->rc ? bulk_failed(b, fail_where, err) : FS_OK;
    pthread_mutex_unlock(&b->mu);
    if (rc)
        return rc;
    /* The slot at head is not the writer's until head moves past it. */
    j = &b->jobs[b->head % BULK_JOBS];
    rc = own_sign(s, b->seq, b->hash, PROTO_OP_PUT, nid, 1, NULL, bytes, len, &j->entry, &j->oe,
                  err);
    if (rc)
        return rc;
    fs_buf_reset(&j->content);
    if (fs_buf_add(&j->content, bytes, len) != FS_OK)
        return fs_err_set(err, FS_EINVAL, "the record is larger than %u bytes",
                          PROTO_CONTENT_MAX_BYTES);
    memcpy(j->id, nid, sizeof j->id);
    snprintf(j->kind, sizeof j->kind, "%s", c->kind);
    j->observed_ms = observed_ms;
    j->where = where;
    b->seq = j->oe.seq;
    memcpy(b->hash, j->oe.hash, PROTO_HASH_BYTES);
    b->head_dirty = 1;

    pthread_mutex_lock(&b->mu);
    b->head++;
    if (b->writer_waits && b->head - b->tail >= BULK_WAKE)
        pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    memcpy(id_out, nid, PROTO_UUID_LEN + 1);
    return FS_OK;
}

enum fs_rc
store_bulk_end(struct store_bulk *b, uint64_t *where, struct fs_err *err)
{
    enum fs_rc rc;
    size_t i;

    if (!b)
        return FS_OK;
    *where = 0;
    rc = store_bulk_drain(b, where, err);
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->writer, NULL);
    for (i = 0; i < BULK_JOBS; i++) {
        fs_buf_release(&b->jobs[i].entry);
        fs_buf_release(&b->jobs[i].content);
    }
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b);
    return rc;
}

/* Loads and merges a record for a revision by this feed. */
static enum fs_rc
load_merged(struct store *s, const char *id, struct rev_set *rs, struct proto_merge *m,
            struct fs_err *err)
{
    enum fs_rc rc;

    rc = load_revs(s, id, 0, rs, err);
    if (rc)
        return rc;
    if (rs->n == 0) {
        rev_set_release(rs);
        return fs_err_set(err, FS_ENOTFOUND, "no record %s", id);
    }
    rc = proto_merge_record(rs->revs, rs->n, m);
    if (rc) {
        rev_set_release(rs);
        return fs_err_set(err, rc, "out of memory");
    }
    return FS_OK;
}

static enum fs_rc
may_revise(struct store *s, const struct proto_merge *m, const char *id, struct fs_err *err)
{
    if (m->state == PROTO_REC_CONTESTED)
        return fs_err_set(err, FS_EINVAL,
                          "record %s is contested (created by several devices); a coordinator "
                          "must settle it",
                          id);
    if (m->state == PROTO_REC_PENDING)
        return fs_err_set(err, FS_EINVAL, "record %s is incomplete here; pull or sync first", id);
    if (m->has_owner && memcmp(m->owner, s->pk, PROTO_KEY_BYTES) != 0 && !self_is_coordinator(s))
        return fs_err_set(err, FS_EAUTH,
                          "record %s belongs to another device; only its owner or a coordinator "
                          "may change it",
                          id);
    return FS_OK;
}

enum fs_rc
store_record_update(struct store *s, const char *id, const struct proto_content *c,
                    struct fs_err *err)
{
    struct rev_set rs;
    struct proto_merge m;
    enum fs_rc rc;
    int own, loaded = 0;

    rc = proto_content_check(c, err);
    if (rc)
        return rc;
    fs_buf_reset(&s->cbuf);
    rc = proto_content_encode(c, &s->cbuf);
    if (rc)
        return fs_err_set(err, rc == FS_ETOOBIG ? FS_EINVAL : rc,
                          "the record is larger than %u bytes", PROTO_CONTENT_MAX_BYTES);
    rc = op_begin(s, &own, err);
    if (rc)
        return rc;
    rc = load_merged(s, id, &rs, &m, err);
    if (rc)
        goto out;
    loaded = 1;
    rc = may_revise(s, &m, id, err);
    if (rc)
        goto out;
    if (m.state != PROTO_REC_LIVE) {
        rc = fs_err_set(err, FS_EINVAL, "record %s was deleted", id);
        goto out;
    }
    rc = append_own(s, PROTO_OP_PUT, id, rs.revs[m.winner].gen + 1, rs.revs[m.winner].hash,
                    s->cbuf.data, s->cbuf.len, c, 0, err);
out:
    if (loaded) {
        proto_merge_release(&m);
        rev_set_release(&rs);
    }
    return op_end(s, own, rc, err);
}

/* Appends a delete child of every live leaf except keep (may be SIZE_MAX). */
static enum fs_rc
delete_leaves(struct store *s, const char *id, const struct rev_set *rs,
              const struct proto_merge *m, size_t keep, struct fs_err *err)
{
    enum fs_rc rc = FS_OK;
    size_t i;

    if (m->winner != keep)
        rc = append_own(s, PROTO_OP_DELETE, id, rs->revs[m->winner].gen + 1,
                        rs->revs[m->winner].hash, NULL, 0, NULL, 0, err);
    for (i = 0; !rc && i < m->n_conflicts; i++) {
        size_t c = m->conflicts[i];

        if (c != keep)
            rc = append_own(s, PROTO_OP_DELETE, id, rs->revs[c].gen + 1, rs->revs[c].hash, NULL, 0,
                            NULL, 0, err);
    }
    return rc;
}

enum fs_rc
store_record_delete(struct store *s, const char *id, struct fs_err *err)
{
    struct rev_set rs;
    struct proto_merge m;
    enum fs_rc rc;
    int own, loaded = 0;

    rc = op_begin(s, &own, err);
    if (rc)
        return rc;
    rc = load_merged(s, id, &rs, &m, err);
    if (rc)
        goto out;
    loaded = 1;
    rc = may_revise(s, &m, id, err);
    if (rc)
        goto out;
    if (m.state != PROTO_REC_LIVE) {
        rc = fs_err_set(err, FS_EINVAL, "record %s is already deleted", id);
        goto out;
    }
    rc = delete_leaves(s, id, &rs, &m, SIZE_MAX, err);
out:
    if (loaded) {
        proto_merge_release(&m);
        rev_set_release(&rs);
    }
    return op_end(s, own, rc, err);
}

enum fs_rc
store_record_resolve(struct store *s, const char *id, const char *rev_prefix, struct fs_err *err)
{
    struct rev_set rs;
    struct proto_merge m;
    size_t i, keep = SIZE_MAX, plen = strlen(rev_prefix), nmatch = 0;
    char hex[2 * PROTO_HASH_BYTES + 1];
    enum fs_rc rc;
    int own, loaded = 0;

    if (plen < 4 || plen > 2 * PROTO_HASH_BYTES)
        return fs_err_set(err, FS_EUSAGE, "give at least 4 hex digits of the revision to keep");
    rc = op_begin(s, &own, err);
    if (rc)
        return rc;
    rc = load_merged(s, id, &rs, &m, err);
    if (rc)
        goto out;
    loaded = 1;
    if (m.state != PROTO_REC_LIVE) {
        rc = fs_err_set(err, FS_EINVAL, "record %s has no live revisions to choose from", id);
        goto out;
    }
    for (i = 0; i <= m.n_conflicts; i++) {
        size_t c = i == 0 ? m.winner : m.conflicts[i - 1];

        proto_hex_encode(rs.revs[c].hash, PROTO_HASH_BYTES, hex);
        if (strncmp(hex, rev_prefix, plen) == 0) {
            keep = c;
            nmatch++;
        }
    }
    if (nmatch != 1) {
        rc = fs_err_set(err, FS_EINVAL,
                        nmatch ? "revision %s is ambiguous; give more digits"
                               : "revision %s is not a live leaf of this record; see "
                                 "'fieldsync show ID'",
                        rev_prefix);
        goto out;
    }
    if (m.n_conflicts == 0) {
        rc = fs_err_set(err, FS_EINVAL, "record %s has no conflict to resolve", id);
        goto out;
    }
    if (!self_is_coordinator(s) && m.has_owner && memcmp(m.owner, s->pk, PROTO_KEY_BYTES) != 0) {
        rc = fs_err_set(err, FS_EAUTH, "only the owner or a coordinator may resolve record %s", id);
        goto out;
    }
    rc = delete_leaves(s, id, &rs, &m, keep, err);
out:
    if (loaded) {
        proto_merge_release(&m);
        rev_set_release(&rs);
    }
    return op_end(s, own, rc, err);
}

void
store_record_release(struct store_record *r)
{
    free(r->content);
    free(r->conflict_revs);
    r->content = NULL;
    r->content_len = 0;
    r->conflict_revs = NULL;
    r->n_conflict_revs = 0;
}

enum fs_rc
store_record_find(struct store *s, const char *prefix, char id[PROTO_UUID_LEN + 1],
                  struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    char hi[PROTO_UUID_LEN + 2];
    size_t n = strlen(prefix), i;
    int r, found = 0;
    enum fs_rc rc = FS_OK;

    if (n < 4 || n > PROTO_UUID_LEN)
        return fs_err_set(err, FS_EUSAGE, "give at least 4 characters of a record id");
    for (i = 0; i < n; i++)
        if (!((prefix[i] >= '0' && prefix[i] <= '9') || (prefix[i] >= 'a' && prefix[i] <= 'f') ||
              prefix[i] == '-'))
            return fs_err_set(err, FS_EUSAGE, "a record id is lowercase hex digits and dashes");
    memcpy(hi, prefix, n);
    hi[n] = '~'; /* sorts after every id character */
    hi[n + 1] = 0;
    r = sqlite3_prepare_v2(s->db, "SELECT id FROM records WHERE id >= ?1 AND id < ?2 LIMIT 2", -1,
                           &st, NULL);
    if (r != SQLITE_OK) {
        rc = store_sqlerr(s, r, "finding a record", err);
        goto out;
    }
    sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, hi, -1, SQLITE_STATIC);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (found++ == 0)
            snprintf(id, PROTO_UUID_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    if (r != SQLITE_DONE)
        rc = store_sqlerr(s, r, "finding a record", err);
    else if (found == 0)
        rc = fs_err_set(err, FS_ENOTFOUND, "no record starts with %s", prefix);
    else if (found > 1)
        rc = fs_err_set(err, FS_ECONFLICT, "several records start with %s; give more characters",
                        prefix);
out:
    sqlite3_finalize(st);
    return rc;
}

static uint64_t
server_have_seq(struct store *s)
{
    sqlite3_stmt *st = NULL;
    uint64_t have = 0;

    if (sqlite3_prepare_v2(s->db, "SELECT have_seq FROM receipts WHERE feed = ?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_blob(st, 1, s->pk, PROTO_KEY_BYTES, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            have = (uint64_t)sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return have;
}

/* Columns: id, state, owner, winner, gen, kind, observed_ms, n_conflicts,
 * last_own_seq, content, conflict_revs — the order of ST_RECORD_GET and the
 * list query. */
static enum fs_rc
row_to_record(sqlite3_stmt *st, uint64_t have, struct store_record *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", (const char *)sqlite3_column_text(st, 0));
    r->state = (enum proto_rec_state)sqlite3_column_int(st, 1);
    if (sqlite3_column_bytes(st, 2) == PROTO_KEY_BYTES) {
        r->has_owner = 1;
        memcpy(r->owner, sqlite3_column_blob(st, 2), PROTO_KEY_BYTES);
    }
    if (sqlite3_column_bytes(st, 3) == PROTO_HASH_BYTES)
        memcpy(r->winner, sqlite3_column_blob(st, 3), PROTO_HASH_BYTES);
    r->gen = (uint64_t)sqlite3_column_int64(st, 4);
    if (sqlite3_column_text(st, 5))
        snprintf(r->kind, sizeof r->kind, "%s", (const char *)sqlite3_column_text(st, 5));
    r->observed_ms = sqlite3_column_int64(st, 6);
    r->n_conflicts = (size_t)sqlite3_column_int64(st, 7);
    r->synced = (uint64_t)sqlite3_column_int64(st, 8) <= have && sqlite3_column_int(st, 11) == 0;
    if (sqlite3_column_bytes(st, 10) >= PROTO_HASH_BYTES) {
        size_t n = (size_t)sqlite3_column_bytes(st, 10) / PROTO_HASH_BYTES;

        r->conflict_revs = malloc(n * PROTO_HASH_BYTES);
        if (!r->conflict_revs)
            return FS_ENOMEM;
        memcpy(r->conflict_revs, sqlite3_column_blob(st, 10), n * PROTO_HASH_BYTES);
        r->n_conflict_revs = n;
    }
    if (r->state == PROTO_REC_LIVE && sqlite3_column_type(st, 9) == SQLITE_BLOB) {
        r->content_len = (size_t)sqlite3_column_bytes(st, 9);
        r->content = malloc(r->content_len + 1);
        if (!r->content)
            return FS_ENOMEM;
        memcpy(r->content, sqlite3_column_blob(st, 9), r->content_len);
        r->content[r->content_len] = 0;
        if (sqlite3_column_bytes(st, 12) == PROTO_HASH_BYTES) {
            r->has_content_hash = 1;
            memcpy(r->content_hash, sqlite3_column_blob(st, 12), PROTO_HASH_BYTES);
        }
    }
    return FS_OK;
}

enum fs_rc
store_record_get(struct store *s, const char *id, struct store_record *r, struct fs_err *err)
{
    sqlite3_stmt *st;
    enum fs_rc rc;
    int q;

    rc = store_stmt(s, ST_RECORD_GET, &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    q = sqlite3_step(st);
    if (q == SQLITE_ROW)
        rc = row_to_record(st, server_have_seq(s), r);
    else if (q == SQLITE_DONE)
        rc = fs_err_set(err, FS_ENOTFOUND, "no record %s", id);
    else
        rc = store_sqlerr(s, q, "reading a record", err);
    if (rc == FS_ENOMEM)
        fs_err_set(err, rc, "out of memory");
    sqlite3_reset(st);
    return rc;
}

enum fs_rc
store_records_each(struct store *s, const struct store_filter *f, store_record_cb cb, void *ctx,
                   struct fs_err *err)
{
    struct fs_buf sql;
    sqlite3_stmt *st = NULL;
    uint64_t have = server_have_seq(s);
    enum fs_rc rc;
    int r;

    fs_buf_init(&sql, 4096);
    rc = fs_buf_adds(&sql, "SELECT r.id, r.state, r.owner, r.winner, r.gen, r.kind,"
                           " r.observed_ms, r.n_conflicts, r.last_own_seq, e.content,"
                           " r.conflict_revs, " STORE_BLOBS_WAITING " AS waiting, e.content_hash"
                           " FROM records r LEFT JOIN entries e"
                           " ON e.feed = r.winner_feed AND e.seq = r.winner_seq WHERE 1");
    if (!rc && !f->with_deleted)
        rc = fs_buf_printf(&sql, " AND r.state <> %d", (int)PROTO_REC_TOMBSTONE);
    if (!rc)
        rc = fs_buf_printf(&sql, " AND r.state <> %d", (int)PROTO_REC_PENDING);
    if (!rc && f->kind)
        rc = fs_buf_adds(&sql, " AND r.kind = ?1");
    if (!rc && f->has_since)
        rc = fs_buf_adds(&sql, " AND r.observed_ms >= ?2");
    if (!rc && f->unsynced)
        rc = fs_buf_adds(&sql, " AND (r.last_own_seq > ?3 OR waiting > 0)");
    if (!rc && f->conflicts)
        rc = fs_buf_printf(&sql, " AND (r.n_conflicts > 0 OR r.state = %d)",
                           (int)PROTO_REC_CONTESTED);
    if (!rc)
        rc = fs_buf_adds(&sql, " ORDER BY r.id");
    if (rc) {
        rc = fs_err_set(err, rc, "out of memory");
        goto out;
    }
    r = sqlite3_prepare_v2(s->db, (const char *)sql.data, -1, &st, NULL);
    if (r != SQLITE_OK) {
        rc = store_sqlerr(s, r, "listing records", err);
        goto out;
    }
    if (f->kind)
        sqlite3_bind_text(st, 1, f->kind, -1, SQLITE_STATIC);
    if (f->has_since)
        sqlite3_bind_int64(st, 2, f->since_ms);
    if (f->unsynced)
        sqlite3_bind_int64(st, 3, (sqlite3_int64)have);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_record rec;
        int stop;

        rc = row_to_record(st, have, &rec);
        if (rc) {
            store_record_release(&rec);
            rc = fs_err_set(err, rc, "out of memory");
            goto out;
        }
        stop = cb(ctx, &rec);
        store_record_release(&rec);
        if (stop) {
            rc = FS_EINTERNAL;
            goto out;
        }
    }
    if (r != SQLITE_DONE)
        rc = store_sqlerr(s, r, "listing records", err);
out:
    sqlite3_finalize(st);
    fs_buf_release(&sql);
    return rc;
}

static _Thread_local const struct rev_set *order_rs;

static int
rev_desc(const void *a, const void *b)
{
    return proto_rev_rank_cmp(&order_rs->revs[*(const size_t *)a],
                              &order_rs->revs[*(const size_t *)b]);
}

enum fs_rc
store_record_revisions(struct store *s, const char *id, store_rev_cb cb, void *ctx,
                       struct fs_err *err)
{
    struct rev_set rs;
    struct proto_merge m;
    size_t *order = NULL, i, j;
    enum fs_rc rc;

    rc = load_revs(s, id, 1, &rs, err);
    if (rc)
        return rc;
    if (rs.n == 0) {
        rev_set_release(&rs);
        return fs_err_set(err, FS_ENOTFOUND, "no record %s", id);
    }
    rc = proto_merge_record(rs.revs, rs.n, &m);
    if (rc) {
        rev_set_release(&rs);
        return fs_err_set(err, rc, "out of memory");
    }
    order = malloc(rs.n * sizeof *order);
    if (!order) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    for (i = 0; i < rs.n; i++)
        order[i] = i;
    order_rs = &rs;
    qsort(order, rs.n, sizeof *order, rev_desc);
    order_rs = NULL;
    for (i = 0; i < rs.n; i++) {
        struct store_rev r;
        size_t k = order[i];

        memset(&r, 0, sizeof r);
        r.rev = rs.revs[k];
        r.state = m.rev_state[k];
        r.seq = rs.seqs[k];
        memcpy(r.at, rs.at[k], sizeof r.at);
        r.is_winner = m.state == PROTO_REC_LIVE && m.winner == k;
        for (j = 0; j < m.n_conflicts; j++)
            if (m.conflicts[j] == k)
                r.is_conflict = 1;
        if (cb(ctx, &r)) {
            rc = FS_EINTERNAL;
            break;
        }
    }
out:
    free(order);
    proto_merge_release(&m);
    rev_set_release(&rs);
    return rc;
}

enum fs_rc
store_status_get(struct store *s, struct store_status *out, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;

    memset(out, 0, sizeof *out);
    out->server_have_seq = server_have_seq(s);
    r = sqlite3_prepare_v2(s->db,
                           "SELECT (SELECT have_seq FROM feeds WHERE feed = ?1),"
                           " (SELECT count(*) FROM records WHERE state = 1),"
                           " (SELECT count(*) FROM records WHERE state = 2),"
                           " (SELECT count(*) FROM records WHERE n_conflicts > 0 OR state = 3)",
                           -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, s->pk, PROTO_KEY_BYTES, SQLITE_STATIC);
        r = sqlite3_step(st);
    }
    if (r != SQLITE_ROW) {
        sqlite3_finalize(st);
        return store_sqlerr(s, r, "reading the status", err);
    }
    out->local_seq = (uint64_t)sqlite3_column_int64(st, 0);
    out->records = (uint64_t)sqlite3_column_int64(st, 1);
    out->deleted = (uint64_t)sqlite3_column_int64(st, 2);
    out->conflicts = (uint64_t)sqlite3_column_int64(st, 3);
    sqlite3_finalize(st);
    out->pending_entries =
        out->local_seq > out->server_have_seq ? out->local_seq - out->server_have_seq : 0;
    r = sqlite3_prepare_v2(s->db,
                           "SELECT count(*), coalesce(sum(size), 0) FROM blobs WHERE uploaded = 0"
                           " AND hash IN (SELECT hash FROM blob_refs WHERE own = 1)",
                           -1, &st, NULL);
    if (r == SQLITE_OK)
        r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        out->pending_blobs = (uint64_t)sqlite3_column_int64(st, 0);
        out->pending_blob_bytes = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (r != SQLITE_ROW)
        return store_sqlerr(s, r, "reading the status", err);
    return FS_OK;
}

enum fs_rc
store_import_seen(struct store *s, const unsigned char hash[PROTO_HASH_BYTES], int *seen,
                  struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;

    *seen = 0;
    r = sqlite3_prepare_v2(s->db, "SELECT 1 FROM imports WHERE file_hash = ?1", -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, hash, PROTO_HASH_BYTES, SQLITE_STATIC);
        r = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (r == SQLITE_ROW)
        *seen = 1;
    else if (r != SQLITE_DONE)
        return store_sqlerr(s, r, "checking past imports", err);
    return FS_OK;
}

enum fs_rc
store_import_mark(struct store *s, const unsigned char hash[PROTO_HASH_BYTES], const char *name,
                  uint64_t count, struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    char at[PROTO_TIME_MAX_LEN];
    int r;

    proto_time_format_ms(store_now_ms(), at);
    r = sqlite3_prepare_v2(s->db,
                           "INSERT INTO imports(file_hash, name, at, count) VALUES (?1,?2,?3,?4)"
                           " ON CONFLICT(file_hash) DO UPDATE SET at = excluded.at,"
                           " count = excluded.count",
                           -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, hash, PROTO_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, at, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)count);
        r = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? FS_OK : store_sqlerr(s, r, "remembering the import", err);
}

enum fs_rc
store_record_has_content(struct store *s, const char *id,
                         const unsigned char content_hash[PROTO_HASH_BYTES], int *exists, int *same,
                         struct fs_err *err)
{
    sqlite3_stmt *st = NULL;
    int r;

    *exists = *same = 0;
    r = sqlite3_prepare_v2(s->db,
                           "SELECT max(content_hash = ?2) FROM entries WHERE record_id = ?1"
                           " HAVING count(*) > 0",
                           -1, &st, NULL);
    if (r == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, content_hash, PROTO_HASH_BYTES, SQLITE_STATIC);
        r = sqlite3_step(st);
    }
    if (r == SQLITE_ROW) {
        *exists = 1;
        *same = sqlite3_column_int(st, 0) == 1;
    }
    sqlite3_finalize(st);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return store_sqlerr(s, r, "looking up a record", err);
    return FS_OK;
}
