/* floor: the single-core floors the benchmark compares fieldsync against, measured
 * in-process on the same machine in the same run. It is a measuring tool, never
 * installed, never a test; it links the wire contract (fs_protocol) and SQLite only.
 *
 *   floor push STORE_DB OUT_DB [BATCH_ENTRIES [BATCH_BYTES]]
 *       The work a push cannot avoid, on one core: the own feed's entries of a
 *       device's store.db are loaded (not timed), then for each batch (as the agent
 *       cuts them): deflate (level 4, as the agent) and sign the envelope, open it, verify its
 *       signature, parse its header, inflate, and for every frame: strict entry
 *       parse, Ed25519 verify, content and entry hash, chain check, strict content
 *       parse, and one SQLite insert (WAL, synchronous=FULL, one transaction per
 *       batch) into a fresh OUT_DB. Prints one JSON line of timings.
 *   floor import JSONL OUT_DB
 *       A plain SQLite insert of every line of JSONL into a fresh OUT_DB, one
 *       transaction (WAL, synchronous=FULL). Prints one JSON line.
 */
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto_batch.h"
#include "proto_content.h"
#include "proto_entry.h"

enum stage {
    ST_DEFLATE,
    ST_OPEN,
    ST_INFLATE,
    ST_PARSE,
    ST_VERIFY,
    ST_HASH,
    ST_CONTENT,
    ST_INSERT,
    ST_COUNT
};
static const char *const stage_names[ST_COUNT] = {"deflate", "open", "inflate", "parse",
                                                  "verify",  "hash", "content", "insert"};

struct row {
    unsigned char *entry, *content;
    size_t entry_len, content_len;
    unsigned char sig[PROTO_SIG_BYTES];
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
fail(const char *what, const char *detail)
{
    fprintf(stderr, "floor: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return 1;
}

/* A fresh database for the timed inserts, set up as the stores are. */
static int
open_out(const char *path, sqlite3 **db /* OUT */)
{
    char wal[4096], shm[4096];

    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    remove(path);
    remove(wal);
    remove(shm);
    if (sqlite3_open(path, db) != SQLITE_OK)
        return fail("cannot open", path);
    if (sqlite3_exec(*db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE IF NOT EXISTS entries(feed BLOB NOT NULL, seq INTEGER NOT NULL,"
                     " hash BLOB NOT NULL, entry BLOB NOT NULL, sig BLOB NOT NULL, content BLOB,"
                     " PRIMARY KEY (feed, seq)) WITHOUT ROWID;"
                     "CREATE TABLE IF NOT EXISTS lines(n INTEGER PRIMARY KEY, line TEXT NOT NULL);",
                     NULL, NULL, NULL) != SQLITE_OK)
        return fail("cannot set up", sqlite3_errmsg(*db));
    return 0;
}

/* Loads the own feed of a store, in seq order (not timed). */
static int
load_rows(const char *path, struct row **rows /* OUT */, size_t *n /* OUT */)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    struct row *r = NULL;
    size_t cnt = 0, alloc = 0;
    int rc = 1;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fail("cannot open", path);
        goto out;
    }
    if (sqlite3_prepare_v2(db,
                           "SELECT e.entry, e.sig, e.content FROM entries e"
                           " JOIN feeds f ON f.feed = e.feed WHERE f.is_self ORDER BY e.seq",
                           -1, &st, NULL) != SQLITE_OK) {
        fail("cannot read entries", sqlite3_errmsg(db));
        goto out;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct row *x;

        if (cnt == alloc) {
            size_t na = alloc ? alloc * 2 : 1024;
            struct row *nr = realloc(r, na * sizeof *nr);

            if (!nr)
                goto oom;
            r = nr;
            alloc = na;
        }
        x = &r[cnt];
        memset(x, 0, sizeof *x);
        x->entry_len = (size_t)sqlite3_column_bytes(st, 0);
        x->content_len = (size_t)sqlite3_column_bytes(st, 2);
        x->entry = malloc(x->entry_len + 1);
        x->content = malloc(x->content_len + 1);
        if (!x->entry || !x->content || sqlite3_column_bytes(st, 1) != PROTO_SIG_BYTES)
            goto oom;
        memcpy(x->entry, sqlite3_column_blob(st, 0), x->entry_len);
        if (x->content_len)
            memcpy(x->content, sqlite3_column_blob(st, 2), x->content_len);
        memcpy(x->sig, sqlite3_column_blob(st, 1), PROTO_SIG_BYTES);
        cnt++;
    }
    *rows = r;
    *n = cnt;
    r = NULL;
    rc = 0;
    goto out;
oom:
    fail("out of memory or a malformed store", NULL);
out:
    if (r) {
        size_t i;

        for (i = 0; i < cnt; i++) {
            free(r[i].entry);
            free(r[i].content);
        }
        free(r);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

static int
floor_push(const char *store_db, const char *out_db, size_t batch_entries, size_t batch_bytes)
{
    struct row *rows = NULL;
    size_t n = 0, i = 0, j, wire = 0, batches = 0;
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL;
    struct proto_batch_enc *enc = NULL;
    struct proto_batch_limits lim;
    struct fs_buf batch, raw;
    struct fs_err err = {{0}};
    unsigned char pk[PROTO_KEY_BYTES], sk[PROTO_SECRET_BYTES], prev_hash[PROTO_HASH_BYTES];
    double t[ST_COUNT], t0, t1, start, total;
    uint64_t prev_seq = 0;
    int rc = 1;

    memset(t, 0, sizeof t);
    fs_buf_init(&batch, PROTO_BATCH_MAX_BYTES);
    fs_buf_init(&raw, PROTO_BATCH_MAX_RAW);
    proto_batch_limits_default(&lim);
    if (load_rows(store_db, &rows, &n) || n == 0) {
        fail("no entries in", store_db);
        goto out;
    }
    if (open_out(out_db, &db))
        goto out;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO entries(feed, seq, hash, entry, sig, content)"
                           " VALUES (?, ?, ?, ?, ?, ?)",
                           -1, &ins, NULL) != SQLITE_OK) {
        fail("cannot prepare", sqlite3_errmsg(db));
        goto out;
    }
    /* The batch signer: any key does (the floor verifies what it signed). */
    proto_keypair(pk, sk);
    /* The level the agent pushes at (sync_push.c): the same work. */
    if (proto_batch_enc_new(4, &enc)) {
        fail("out of memory", NULL);
        goto out;
    }
    start = now_s();
    while (i < n) {
        struct proto_batch_view v;
        struct proto_batch_header h;
        struct proto_frame fr;
        size_t off = 0, first = i, raw_len = 0;

        /* The sender: frames as the agent cuts batches, deflated and signed. */
        t0 = now_s();
        while (i < n && i - first < batch_entries) {
            size_t frame = 8 + rows[i].entry_len + PROTO_SIG_BYTES + rows[i].content_len;

            if (i > first && raw_len + frame > batch_bytes)
                break;
            if (proto_batch_enc_add(enc, rows[i].entry, rows[i].entry_len, rows[i].sig,
                                    rows[i].content, rows[i].content_len)) {
                fail("cannot add a frame", NULL);
                goto out;
            }
            raw_len += frame;
            i++;
        }
        memset(&h, 0, sizeof h);
        h.purpose = PROTO_PURPOSE_PUSH;
        h.has_feed = 1;
        memcpy(h.feed, pk, sizeof pk);
        h.from = first + 1;
        h.to = i;
        memcpy(h.to_hash, pk, sizeof pk); /* not checked by the floor */
        proto_time_format_ms(1700000000000, h.created);
        fs_buf_reset(&batch);
        if (proto_batch_enc_finish(enc, &h, pk, sk, &batch)) {
            fail("cannot finish a batch", NULL);
            goto out;
        }
        wire += batch.len;
        batches++;
        t1 = now_s();
        t[ST_DEFLATE] += t1 - t0;

        /* The receiver, in the order DESIGN §4 sets. */
        if (proto_batch_open(batch.data, batch.len, &lim, 0, &v, &err) ||
            proto_batch_verify(&v, &err) || proto_batch_header_parse(&v, &lim, &h, &err)) {
            fail("batch refused", err.msg);
            goto out;
        }
        t0 = now_s();
        t[ST_OPEN] += t0 - t1;
        if (proto_batch_inflate(&v, &h, &raw, &err)) {
            fail("cannot inflate", err.msg);
            goto out;
        }
        t1 = now_s();
        t[ST_INFLATE] += t1 - t0;
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
            fail("cannot begin", sqlite3_errmsg(db));
            goto out;
        }
        t0 = now_s();
        t[ST_INSERT] += t0 - t1;
        for (j = 0; j < h.count; j++) {
            struct proto_entry e;
            struct proto_content c;
            unsigned char ch[PROTO_HASH_BYTES], eh[PROTO_HASH_BYTES];

            if (proto_batch_next(&raw, &off, &fr, &err)) {
                fail("bad frame", err.msg);
                goto out;
            }
            if (proto_entry_parse(fr.entry, fr.entry_len, &e, &err)) {
                fail("bad entry", err.msg);
                goto out;
            }
            t1 = now_s();
            t[ST_PARSE] += t1 - t0;
            if (proto_entry_verify(fr.entry, fr.entry_len, fr.sig, e.feed)) {
                fail("bad signature", NULL);
                goto out;
            }
            t0 = now_s();
            t[ST_VERIFY] += t0 - t1;
            proto_hash(fr.content, fr.content_len, ch);
            proto_entry_hash(fr.entry, fr.entry_len, fr.sig, eh);
            if (!e.has_content || e.content_len != fr.content_len ||
                sodium_memcmp(ch, e.content_hash, PROTO_HASH_BYTES) != 0 ||
                proto_chain_follows(&e, prev_seq, prev_seq ? prev_hash : NULL, &err)) {
                fail("content hash or chain does not match", err.msg);
                goto out;
            }
            prev_seq = e.seq;
            memcpy(prev_hash, eh, sizeof eh);
            t1 = now_s();
            t[ST_HASH] += t1 - t0;
            if (proto_content_parse(fr.content, fr.content_len, &c, &err)) {
                fail("bad content", err.msg);
                goto out;
            }
            proto_content_release(&c);
            t0 = now_s();
            t[ST_CONTENT] += t0 - t1;
            sqlite3_bind_blob(ins, 1, e.feed, PROTO_KEY_BYTES, SQLITE_STATIC);
            sqlite3_bind_int64(ins, 2, (sqlite3_int64)e.seq);
            sqlite3_bind_blob(ins, 3, eh, PROTO_HASH_BYTES, SQLITE_STATIC);
            sqlite3_bind_blob(ins, 4, fr.entry, (int)fr.entry_len, SQLITE_STATIC);
            sqlite3_bind_blob(ins, 5, fr.sig, PROTO_SIG_BYTES, SQLITE_STATIC);
            sqlite3_bind_blob(ins, 6, fr.content, (int)fr.content_len, SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE) {
                fail("cannot insert", sqlite3_errmsg(db));
                goto out;
            }
            sqlite3_reset(ins);
            t1 = now_s();
            t[ST_INSERT] += t1 - t0;
            t0 = t1;
        }
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            fail("cannot commit", sqlite3_errmsg(db));
            goto out;
        }
        t[ST_INSERT] += now_s() - t0;
    }
    total = now_s() - start;
    printf("{\"entries\":%zu,\"batches\":%zu,\"wire_bytes\":%zu,\"seconds\":%.6f", n, batches, wire,
           total);
    for (j = 0; j < ST_COUNT; j++)
        printf(",\"%s\":%.6f", stage_names[j], t[j]);
    printf("}\n");
    rc = 0;
out:
    if (rows) {
        for (j = 0; j < n; j++) {
            free(rows[j].entry);
            free(rows[j].content);
        }
        free(rows);
    }
    sodium_memzero(sk, sizeof sk);
    proto_batch_enc_free(enc);
    fs_buf_release(&batch);
    fs_buf_release(&raw);
    sqlite3_finalize(ins);
    sqlite3_close(db);
    return rc;
}

static int
floor_import(const char *jsonl, const char *out_db)
{
    FILE *f = NULL;
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL;
    char *line = NULL;
    size_t cap = 0, rows = 0;
    ssize_t len;
    double start;
    int rc = 1;

    start = now_s();
    f = fopen(jsonl, "r");
    if (!f) {
        fail("cannot open", jsonl);
        goto out;
    }
    if (open_out(out_db, &db))
        goto out;
    if (sqlite3_prepare_v2(db, "INSERT INTO lines(line) VALUES (?)", -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        fail("cannot prepare", sqlite3_errmsg(db));
        goto out;
    }
    while ((len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        sqlite3_bind_text(ins, 1, line, (int)len, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            fail("cannot insert", sqlite3_errmsg(db));
            goto out;
        }
        sqlite3_reset(ins);
        rows++;
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        fail("cannot commit", sqlite3_errmsg(db));
        goto out;
    }
    printf("{\"rows\":%zu,\"seconds\":%.6f}\n", rows, now_s() - start);
    rc = 0;
out:
    free(line);
    if (f)
        fclose(f);
    sqlite3_finalize(ins);
    sqlite3_close(db);
    return rc;
}

int
main(int argc, char **argv)
{
    if (proto_init())
        return fail("cannot start libsodium", NULL);
    if (argc >= 4 && strcmp(argv[1], "push") == 0)
        return floor_push(argv[2], argv[3], argc > 4 ? strtoul(argv[4], NULL, 10) : 5000,
                          argc > 5 ? strtoul(argv[5], NULL, 10) : (4u << 20));
    if (argc == 4 && strcmp(argv[1], "import") == 0)
        return floor_import(argv[2], argv[3]);
    fputs("usage: floor push STORE_DB OUT_DB [BATCH_ENTRIES [BATCH_BYTES]]\n"
          "       floor import JSONL OUT_DB\n",
          stderr);
    return 64;
}
