/*
 * Unit tests of the store's bulk of new records (store_bulk_*, import's path):
 * records signed on the caller's thread and written on another come out as
 * one-by-one creation would make them — contents, ids, a gapless chain, a
 * view equal to a fresh merge — also when rows with a given id (the usual
 * path) are mixed in; and a write that fails on the writer's thread names
 * its row and leaves, after the rollback, the store as it was.
 *
 * This test includes store_int.h (private to agent/store/) for one thing:
 * the connection, to make writes fail with PRAGMA max_page_count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_int.h"

#define ROWS 300 /* several times the writer's queue */

struct fixture {
    char home[64];
    struct store *s;
};

static int
setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    unsigned char feed[PROTO_KEY_BYTES];
    struct fs_err err = {{0}};
    char tmpl[] = "/tmp/fs-bulk-XXXXXX";

    assert_non_null(fx);
    assert_non_null(mkdtemp(tmpl));
    snprintf(fx->home, sizeof fx->home, "%s/home", tmpl);
    assert_int_equal(store_init(fx->home, "bulk", feed, &err), FS_OK);
    assert_int_equal(store_open(fx->home, &fx->s, &err), FS_OK);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *fx = *state;
    char cmd[128];

    store_close(fx->s);
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strrchr(fx->home, '/') - fx->home), fx->home);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", fx->home);
    free(fx);
    return 0;
}

/* Row i's content, checked and encoded. */
static void
row(unsigned i, struct proto_content *c, struct fs_buf *enc)
{
    static char note[64];

    proto_content_init(c);
    c->kind = i % 3 ? "interview" : "observation";
    c->observed_at = "2026-04-24T09:47:00+08:00";
    snprintf(note, sizeof note, "row %u; 第%u行", i, i);
    c->note = note;
    assert_int_equal(proto_content_check(c, NULL), FS_OK);
    fs_buf_reset(enc);
    assert_int_equal(proto_content_encode(c, enc), FS_OK);
}

/* A given UUIDv7 for row i. */
static void
given_id(unsigned i, char id[PROTO_UUID_LEN + 1])
{
    snprintf(id, PROTO_UUID_LEN + 1, "0193a3c4-5b6e-7f00-8a1b-%012x", i);
}

static void
no_problem(void *ctx, const char *line)
{
    (void)ctx;
    fail_msg("verify: %s", line);
}

static uint64_t
verified_entries(struct store *s)
{
    struct fs_err err = {{0}};
    uint64_t problems = 0, entries = 0;

    assert_int_equal(store_verify(s, no_problem, NULL, &problems, &entries, &err), FS_OK);
    assert_int_equal(problems, 0);
    return entries;
}

static void
test_bulk_is_one_by_one(void **state)
{
    struct fixture *fx = *state;
    struct store *s = fx->s;
    struct store_bulk *b;
    struct proto_content c;
    struct store_record r;
    struct fs_buf enc;
    struct fs_err err = {{0}};
    char(*ids)[PROTO_UUID_LEN + 1] = calloc(ROWS, sizeof *ids);
    char other[PROTO_UUID_LEN + 1];
    uint64_t where;
    unsigned i;

    assert_non_null(ids);
    fs_buf_init(&enc, PROTO_CONTENT_MAX_BYTES);
    /* One record first, the usual way: the bulk continues its chain. */
    row(ROWS, &c, &enc);
    assert_int_equal(store_record_create_encoded(s, &c, enc.data, enc.len, NULL, other, &err),
                     FS_OK);
    assert_int_equal(store_begin(s, &err), FS_OK);
    assert_int_equal(store_bulk_begin(s, &b, &err), FS_OK);
    for (i = 0; i < ROWS; i++) {
        row(i, &c, &enc);
        if (i % 37 == 5) {
            /* A row with an id of its own: drained, then the usual way. */
            given_id(i, ids[i]);
            assert_int_equal(store_bulk_drain(b, &where, &err), FS_OK);
            assert_int_equal(
                store_record_create_encoded(s, &c, enc.data, enc.len, ids[i], ids[i], &err), FS_OK);
        } else {
            assert_int_equal(store_bulk_add(b, &c, enc.data, enc.len, i + 1, ids[i], &where, &err),
                             FS_OK);
        }
    }
    assert_int_equal(store_bulk_end(b, &where, &err), FS_OK);
    assert_int_equal(store_commit(s, &err), FS_OK);

    /* Every entry's chain, signature and content, and the view against a merge. */
    assert_int_equal(verified_entries(s), ROWS + 1);
    for (i = 0; i < ROWS; i++) {
        row(i, &c, &enc);
        memset(&r, 0, sizeof r);
        assert_int_equal(store_record_get(s, ids[i], &r, &err), FS_OK);
        assert_int_equal(r.state, PROTO_REC_LIVE);
        assert_int_equal(r.gen, 1);
        assert_string_equal(r.kind, c.kind);
        assert_int_equal(r.content_len, enc.len);
        assert_memory_equal(r.content, enc.data, enc.len);
        store_record_release(&r);
    }
    /* And the usual path goes on from the bulk's head. */
    row(ROWS + 1, &c, &enc);
    assert_int_equal(store_record_create_encoded(s, &c, enc.data, enc.len, NULL, other, &err),
                     FS_OK);
    assert_int_equal(verified_entries(s), ROWS + 2);
    fs_buf_release(&enc);
    free(ids);
}

static void
test_bulk_write_failure_names_its_row(void **state)
{
    struct fixture *fx = *state;
    struct store *s = fx->s;
    struct store_bulk *b;
    struct proto_content c;
    struct fs_buf enc;
    struct fs_err err = {{0}};
    char id[PROTO_UUID_LEN + 1], sql[96];
    uint64_t where = 0, pages = 0;
    enum fs_rc rc = FS_OK;
    unsigned i;
    sqlite3_stmt *st;

    fs_buf_init(&enc, PROTO_CONTENT_MAX_BYTES);
    row(0, &c, &enc);
    assert_int_equal(store_record_create_encoded(s, &c, enc.data, enc.len, NULL, id, &err), FS_OK);
    assert_int_equal(sqlite3_prepare_v2(s->db, "PRAGMA page_count", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    pages = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    /* Room for a few pages more: the writer's inserts run out of it. */
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %llu", (unsigned long long)pages + 3);
    assert_int_equal(sqlite3_exec(s->db, sql, NULL, NULL, NULL), SQLITE_OK);

    assert_int_equal(store_begin(s, &err), FS_OK);
    assert_int_equal(store_bulk_begin(s, &b, &err), FS_OK);
    for (i = 1; i <= 5000 && rc == FS_OK; i++) {
        row(i, &c, &enc);
        rc = store_bulk_add(b, &c, enc.data, enc.len, 1000 + i, id, &where, &err);
    }
    if (rc == FS_OK) /* the failure may surface only when the rest is written */
        rc = store_bulk_drain(b, &where, &err);
    assert_int_equal(rc, FS_EIO);
    /* The row whose write failed, which the caller had handed over before. */
    assert_true(where > 1000 && where < 1000 + i);
    assert_non_null(strstr(err.msg, "disk full while "));
    assert_non_null(strstr(err.msg, "not saved"));
    /* Once failed, every later call says so and writes nothing. */
    row(9999, &c, &enc);
    assert_int_equal(store_bulk_add(b, &c, enc.data, enc.len, 9999, id, &where, &err), FS_EIO);
    assert_int_equal(store_bulk_end(b, &where, &err), FS_EIO);
    store_rollback(s);

    assert_int_equal(sqlite3_exec(s->db, "PRAGMA max_page_count = 1073741823", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(verified_entries(s), 1);
    row(1, &c, &enc);
    assert_int_equal(store_record_create_encoded(s, &c, enc.data, enc.len, NULL, id, &err), FS_OK);
    assert_int_equal(verified_entries(s), 2);
    fs_buf_release(&enc);
}

static void
test_bulk_needs_a_transaction(void **state)
{
    struct fixture *fx = *state;
    struct store_bulk *b = (struct store_bulk *)1;
    struct fs_err err = {{0}};
    uint64_t where = 7;

    assert_int_equal(store_bulk_begin(fx->s, &b, &err), FS_EINVAL);
    assert_null(b);
    assert_int_equal(store_bulk_end(NULL, &where, &err), FS_OK);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bulk_is_one_by_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_write_failure_names_its_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_needs_a_transaction, setup, teardown),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
