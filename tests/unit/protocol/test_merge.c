/*
 * Unit tests of the merge (proto_merge.c, DESIGN §6): named scenarios with
 * hand-written expectations, then properties over whole revision sets: the
 * result is the same for every order of the input and for every subset, it
 * agrees with a small reference model written here, and delivering revisions
 * one at a time converges to the full result without ever un-counting one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "proto_entry.h"
#include "proto_merge.h"

#define MAXR 32

static unsigned char feed_a[PROTO_KEY_BYTES]; /* the owner, a researcher */
static unsigned char feed_b[PROTO_KEY_BYTES]; /* another researcher */
static unsigned char feed_c[PROTO_KEY_BYTES]; /* a coordinator */

/* A fixed-seed generator: every run checks the same orders. */
static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint64_t
rng_next(void)
{
    uint64_t x = rng_state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static void
shuffle(size_t *idx, size_t n)
{
    size_t i;

    for (i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next() % i), t = idx[i - 1];

        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

static int
group_setup(void **state)
{
    (void)state;
    if (proto_init() != FS_OK)
        return -1;
    proto_hash("feed A", 6, feed_a);
    proto_hash("feed B", 6, feed_b);
    proto_hash("feed C", 6, feed_c);
    return 0;
}

/* A revision whose hash is BLAKE2b of its label: opaque, as real hashes are. */
static struct proto_rev
rev(const char *label, const unsigned char *feed, uint64_t gen, const struct proto_rev *parent,
    enum proto_op op)
{
    struct proto_rev r;

    memset(&r, 0, sizeof r);
    proto_hash(label, strlen(label), r.hash);
    memcpy(r.feed, feed, PROTO_KEY_BYTES);
    r.gen = gen;
    if (parent) {
        r.has_parent = 1;
        memcpy(r.parent, parent->hash, PROTO_HASH_BYTES);
    }
    r.op = op;
    r.by_coordinator = feed == feed_c;
    return r;
}

/* ---- the result, by hash ----------------------------------------------------------- */

/* A merge result that does not depend on where revisions sit in the input. */
struct summary {
    enum proto_rec_state state;
    int has_owner;
    unsigned char owner[PROTO_KEY_BYTES];
    unsigned char winner[PROTO_HASH_BYTES]; /* zero unless LIVE */
    size_t n_conflicts;
    unsigned char conflicts[MAXR][PROTO_HASH_BYTES]; /* best first */
    size_t n_distinct;
    unsigned char hash[MAXR][PROTO_HASH_BYTES]; /* distinct revisions, by hash */
    enum proto_rev_state rev_state[MAXR];
    size_t n_counted, n_pending, n_flagged;
};

static int
cmp_hash(const void *a, const void *b)
{
    return memcmp(a, b, PROTO_HASH_BYTES);
}

/* Distinct hashes of revs, sorted, into s->hash. */
static void
distinct_hashes(const struct proto_rev *revs, size_t n, struct summary *s)
{
    unsigned char all[MAXR][PROTO_HASH_BYTES];
    size_t i;

    assert_true(n <= MAXR);
    for (i = 0; i < n; i++)
        memcpy(all[i], revs[i].hash, PROTO_HASH_BYTES);
    qsort(all, n, PROTO_HASH_BYTES, cmp_hash);
    s->n_distinct = 0;
    for (i = 0; i < n; i++)
        if (i == 0 || memcmp(all[i], all[i - 1], PROTO_HASH_BYTES) != 0)
            memcpy(s->hash[s->n_distinct++], all[i], PROTO_HASH_BYTES);
}

static size_t
slot_of(const struct summary *s, const unsigned char *hash)
{
    size_t i;

    for (i = 0; i < s->n_distinct; i++)
        if (memcmp(s->hash[i], hash, PROTO_HASH_BYTES) == 0)
            return i;
    fail_msg("hash not in the summary");
    return SIZE_MAX;
}

static enum proto_rev_state
state_of(const struct summary *s, const struct proto_rev *r)
{
    return s->rev_state[slot_of(s, r->hash)];
}

/* Runs proto_merge_record and describes its result by hash. */
static void
summarize(const struct proto_rev *revs, size_t n, struct summary *s)
{
    struct proto_merge m;
    size_t i, k;

    memset(s, 0, sizeof *s);
    assert_int_equal(proto_merge_record(revs, n, &m), FS_OK);
    distinct_hashes(revs, n, s);
    s->state = m.state;
    s->has_owner = m.has_owner;
    if (m.has_owner)
        memcpy(s->owner, m.owner, PROTO_KEY_BYTES);
    if (m.state == PROTO_REC_LIVE) {
        assert_true(m.winner < n);
        memcpy(s->winner, revs[m.winner].hash, PROTO_HASH_BYTES);
    }
    s->n_conflicts = m.n_conflicts;
    for (i = 0; i < m.n_conflicts; i++) {
        assert_true(m.conflicts[i] < n);
        memcpy(s->conflicts[i], revs[m.conflicts[i]].hash, PROTO_HASH_BYTES);
    }
    for (i = 0; i < s->n_distinct; i++)
        s->rev_state[i] = 0;
    for (i = 0; i < n; i++) {
        k = slot_of(s, revs[i].hash);
        assert_true(m.rev_state[i] >= PROTO_REV_COUNTED && m.rev_state[i] <= PROTO_REV_CONTESTED);
        /* Duplicates share one state. */
        if (s->rev_state[k] && s->rev_state[k] != m.rev_state[i])
            fail_msg("two copies of one revision in different states");
        s->rev_state[k] = m.rev_state[i];
    }
    s->n_counted = m.n_counted;
    s->n_pending = m.n_pending;
    s->n_flagged = m.n_flagged;
    /* The counts are over distinct revisions, and add up. */
    assert_int_equal(s->n_counted + s->n_pending + s->n_flagged, s->n_distinct);
    proto_merge_release(&m);
    assert_null(m.rev_state);
    assert_null(m.conflicts);
}

static const char *
rec_name(enum proto_rec_state st)
{
    switch (st) {
    case PROTO_REC_LIVE:
        return "LIVE";
    case PROTO_REC_TOMBSTONE:
        return "TOMBSTONE";
    case PROTO_REC_CONTESTED:
        return "CONTESTED";
    case PROTO_REC_PENDING:
        return "PENDING";
    }
    return "?";
}

/* Compares two summaries field by field; fails naming the first difference. */
static void
assert_same(const struct summary *x, const struct summary *y, const char *why)
{
    size_t i;

    if (x->state != y->state)
        fail_msg("%s: state %s vs %s", why, rec_name(x->state), rec_name(y->state));
    if (x->has_owner != y->has_owner ||
        (x->has_owner && memcmp(x->owner, y->owner, PROTO_KEY_BYTES) != 0))
        fail_msg("%s: owners differ", why);
    if (memcmp(x->winner, y->winner, PROTO_HASH_BYTES) != 0)
        fail_msg("%s: winners differ", why);
    if (x->n_conflicts != y->n_conflicts)
        fail_msg("%s: %zu vs %zu conflicts", why, x->n_conflicts, y->n_conflicts);
    for (i = 0; i < x->n_conflicts; i++)
        if (memcmp(x->conflicts[i], y->conflicts[i], PROTO_HASH_BYTES) != 0)
            fail_msg("%s: conflict %zu differs", why, i);
    if (x->n_distinct != y->n_distinct)
        fail_msg("%s: %zu vs %zu revisions", why, x->n_distinct, y->n_distinct);
    for (i = 0; i < x->n_distinct; i++) {
        if (memcmp(x->hash[i], y->hash[i], PROTO_HASH_BYTES) != 0)
            fail_msg("%s: revision sets differ", why);
        if (x->rev_state[i] != y->rev_state[i])
            fail_msg("%s: revision %zu state %d vs %d", why, i, x->rev_state[i], y->rev_state[i]);
    }
    if (x->n_counted != y->n_counted || x->n_pending != y->n_pending ||
        x->n_flagged != y->n_flagged)
        fail_msg("%s: counts differ", why);
}

/* ---- a reference model ------------------------------------------------------------------ */

/* DESIGN §6 written as directly as possible: a recursive definition over
 * parent links, no sorting. The property tests hold the library to it. */
struct model {
    const struct proto_rev *r[MAXR]; /* distinct revisions */
    size_t n;
    const unsigned char *owner;
    int contested;
    enum proto_rev_state st[MAXR]; /* 0: not decided yet */
};

static size_t
model_find(const struct model *md, const unsigned char *hash)
{
    size_t i;

    for (i = 0; i < md->n; i++)
        if (memcmp(md->r[i]->hash, hash, PROTO_HASH_BYTES) == 0)
            return i;
    return SIZE_MAX;
}

static enum proto_rev_state
model_state(struct model *md, size_t i)
{
    const struct proto_rev *r = md->r[i];
    enum proto_rev_state st;
    size_t p;

    if (md->st[i])
        return md->st[i];
    if (md->contested)
        st = PROTO_REV_CONTESTED;
    else if (r->gen == 1 && !r->has_parent)
        st = PROTO_REV_COUNTED; /* a root of the owner */
    else if (!r->has_parent || (p = model_find(md, r->parent)) == SIZE_MAX)
        st = PROTO_REV_PENDING; /* its parent has not arrived */
    else if (md->r[p]->gen + 1 != r->gen)
        st = PROTO_REV_FLAGGED; /* wrong gen */
    else if (model_state(md, p) == PROTO_REV_PENDING)
        st = PROTO_REV_PENDING;
    else if (md->st[p] != PROTO_REV_COUNTED)
        st = PROTO_REV_FLAGGED; /* the child of a flagged revision */
    else if (!r->by_coordinator && memcmp(r->feed, md->owner, PROTO_KEY_BYTES) != 0)
        st = PROTO_REV_FLAGGED; /* neither the owner nor a coordinator */
    else
        st = PROTO_REV_COUNTED;
    md->st[i] = st;
    return st;
}

/* Greater (gen, hash) first. */
static int
model_rank(const struct proto_rev *a, const struct proto_rev *b)
{
    if (a->gen != b->gen)
        return a->gen > b->gen ? -1 : 1;
    return -memcmp(a->hash, b->hash, PROTO_HASH_BYTES);
}

static void
reference(const struct proto_rev *revs, size_t n, struct summary *s)
{
    struct model md;
    const struct proto_rev *live[MAXR];
    size_t i, j, nl = 0;

    memset(&md, 0, sizeof md);
    memset(s, 0, sizeof *s);
    for (i = 0; i < n; i++)
        if (model_find(&md, revs[i].hash) == SIZE_MAX)
            md.r[md.n++] = &revs[i];
    for (i = 0; i < md.n; i++) {
        if (md.r[i]->gen != 1 || md.r[i]->has_parent)
            continue;
        if (!md.owner)
            md.owner = md.r[i]->feed;
        else if (memcmp(md.owner, md.r[i]->feed, PROTO_KEY_BYTES) != 0)
            md.contested = 1;
    }
    for (i = 0; i < md.n; i++)
        model_state(&md, i);
    /* Live leaves: counted puts that no counted revision names as parent. */
    for (i = 0; i < md.n; i++) {
        int has_child = 0;

        if (md.st[i] != PROTO_REV_COUNTED || md.r[i]->op != PROTO_OP_PUT)
            continue;
        for (j = 0; j < md.n; j++)
            if (md.st[j] == PROTO_REV_COUNTED && md.r[j]->has_parent &&
                memcmp(md.r[j]->parent, md.r[i]->hash, PROTO_HASH_BYTES) == 0)
                has_child = 1;
        if (!has_child)
            live[nl++] = md.r[i];
    }
    for (i = 1; i < nl; i++) /* insertion sort, best first */
        for (j = i; j > 0 && model_rank(live[j], live[j - 1]) < 0; j--) {
            const struct proto_rev *t = live[j];

            live[j] = live[j - 1];
            live[j - 1] = t;
        }

    distinct_hashes(revs, n, s);
    for (i = 0; i < md.n; i++) {
        size_t k = slot_of(s, md.r[i]->hash);

        s->rev_state[k] = md.st[i];
        if (md.st[i] == PROTO_REV_COUNTED)
            s->n_counted++;
        else if (md.st[i] == PROTO_REV_PENDING)
            s->n_pending++;
        else
            s->n_flagged++;
    }
    if (md.contested) {
        s->state = PROTO_REC_CONTESTED;
        return;
    }
    if (md.owner) {
        s->has_owner = 1;
        memcpy(s->owner, md.owner, PROTO_KEY_BYTES);
    }
    if (nl) {
        s->state = PROTO_REC_LIVE;
        memcpy(s->winner, live[0]->hash, PROTO_HASH_BYTES);
        s->n_conflicts = nl - 1;
        for (i = 1; i < nl; i++)
            memcpy(s->conflicts[i - 1], live[i]->hash, PROTO_HASH_BYTES);
    } else {
        s->state = s->n_counted ? PROTO_REC_TOMBSTONE : PROTO_REC_PENDING;
    }
}

/* ---- the revision sets -------------------------------------------------------------------- */

/* One record's history:
 *   R    root by A (the owner)
 *   E2   A edits R
 *   E3a  A edits E2          } concurrent: a conflict
 *   E3c  C (coordinator) edits E2
 *   X    B edits E2: neither owner nor coordinator, FLAGGED
 *   W    A "edits" E2 at gen 5: wrong gen, FLAGGED
 *   D4   A deletes E3c       } racing: the live edit wins
 *   P4   C edits E3c
 *   RB   a root for the same id by B: contests the record
 *   EB2  B edits RB
 * X and W get the greatest hashes, D4 a greater hash than P4, so that wrongly
 * counting them would change the winner. */
enum { R, E2, E3A, E3C, X, W, D4, P4, RB, EB2, NREV };
static struct proto_rev all[NREV];

static void
make_all(void)
{
    all[R] = rev("R", feed_a, 1, NULL, PROTO_OP_PUT);
    all[E2] = rev("E2", feed_a, 2, &all[R], PROTO_OP_PUT);
    all[E3A] = rev("E3a", feed_a, 3, &all[E2], PROTO_OP_PUT);
    all[E3C] = rev("E3c", feed_c, 3, &all[E2], PROTO_OP_PUT);
    all[X] = rev("X", feed_b, 3, &all[E2], PROTO_OP_PUT);
    memset(all[X].hash, 0xff, PROTO_HASH_BYTES);
    all[W] = rev("W", feed_a, 5, &all[E2], PROTO_OP_PUT);
    memset(all[W].hash, 0xfe, PROTO_HASH_BYTES);
    all[D4] = rev("D4", feed_a, 4, &all[E3C], PROTO_OP_DELETE);
    memset(all[D4].hash, 0xf0, PROTO_HASH_BYTES);
    all[P4] = rev("P4", feed_c, 4, &all[E3C], PROTO_OP_PUT);
    memset(all[P4].hash, 0x01, PROTO_HASH_BYTES);
    all[RB] = rev("RB", feed_b, 1, NULL, PROTO_OP_PUT);
    all[EB2] = rev("EB2", feed_b, 2, &all[RB], PROTO_OP_PUT);
}

/* The set made of the named revisions, in the order given. */
static size_t
pick(const int *names, size_t n, struct proto_rev *out)
{
    size_t i;

    for (i = 0; i < n; i++)
        out[i] = all[names[i]];
    return n;
}

static const int set_plain[] = {R, E2, E3A, E3C, X, W, D4, P4};
static const int set_contested[] = {R, E2, E3A, E3C, X, RB, EB2, P4};

/* ---- scenarios --------------------------------------------------------------------------- */

static void
merge_of(const int *names, size_t n, struct summary *s)
{
    struct proto_rev revs[MAXR];

    summarize(revs, pick(names, n, revs), s);
}

static void
test_merge_empty(void **state)
{
    struct proto_merge m;

    (void)state;
    assert_int_equal(proto_merge_record(NULL, 0, &m), FS_OK);
    assert_int_equal(m.state, PROTO_REC_PENDING);
    assert_false(m.has_owner);
    assert_int_equal(m.n_conflicts, 0);
    proto_merge_release(&m);
}

static void
test_merge_linear_history(void **state)
{
    struct summary s;

    (void)state;
    make_all();
    {
        const int names[] = {R};

        merge_of(names, 1, &s);
        assert_int_equal(s.state, PROTO_REC_LIVE);
        assert_true(s.has_owner);
        assert_memory_equal(s.owner, feed_a, PROTO_KEY_BYTES);
        assert_memory_equal(s.winner, all[R].hash, PROTO_HASH_BYTES);
        assert_int_equal(s.n_conflicts, 0);
        assert_int_equal(state_of(&s, &all[R]), PROTO_REV_COUNTED);
    }
    {
        const int names[] = {E2, R};

        merge_of(names, 2, &s);
        assert_int_equal(s.state, PROTO_REC_LIVE);
        assert_memory_equal(s.winner, all[E2].hash, PROTO_HASH_BYTES);
        assert_int_equal(s.n_conflicts, 0);
        assert_int_equal(s.n_counted, 2);
    }
    /* A coordinator's edit counts; a third researcher's does not. */
    {
        struct proto_rev revs[3];

        revs[0] = all[R];
        revs[1] = rev("C2", feed_c, 2, &all[R], PROTO_OP_PUT);
        revs[2] = rev("B2", feed_b, 2, &all[R], PROTO_OP_PUT);
        memset(revs[2].hash, 0xff, PROTO_HASH_BYTES);
        summarize(revs, 3, &s);
        assert_int_equal(s.state, PROTO_REC_LIVE);
        assert_memory_equal(s.winner, revs[1].hash, PROTO_HASH_BYTES);
        assert_int_equal(state_of(&s, &revs[2]), PROTO_REV_FLAGGED);
        /* The same B revision, from a feed that is a coordinator, counts. */
        revs[2].by_coordinator = 1;
        summarize(revs, 3, &s);
        assert_memory_equal(s.winner, revs[2].hash, PROTO_HASH_BYTES);
        assert_int_equal(s.n_conflicts, 1);
        assert_memory_equal(s.conflicts[0], revs[1].hash, PROTO_HASH_BYTES);
    }
}

static void
test_merge_concurrent_edits(void **state)
{
    const int names[] = {R, E2, E3A, E3C};
    const struct proto_rev *hi, *lo;
    struct summary s;

    (void)state;
    make_all();
    merge_of(names, 4, &s);
    /* Same gen: the greater hash wins, the other is a conflict. */
    hi = memcmp(all[E3A].hash, all[E3C].hash, PROTO_HASH_BYTES) > 0 ? &all[E3A] : &all[E3C];
    lo = hi == &all[E3A] ? &all[E3C] : &all[E3A];
    assert_int_equal(s.state, PROTO_REC_LIVE);
    assert_memory_equal(s.winner, hi->hash, PROTO_HASH_BYTES);
    assert_int_equal(s.n_conflicts, 1);
    assert_memory_equal(s.conflicts[0], lo->hash, PROTO_HASH_BYTES);
    assert_int_equal(s.n_counted, 4);
    assert_true(proto_rev_rank_cmp(hi, lo) < 0);
    assert_true(proto_rev_rank_cmp(lo, hi) > 0);

    /* A higher gen beats a greater hash. */
    {
        struct proto_rev revs[5];

        pick(names, 4, revs);
        revs[4] = rev("E4", feed_a, 4, lo, PROTO_OP_PUT);
        memset(revs[4].hash, 0, PROTO_HASH_BYTES);
        summarize(revs, 5, &s);
        assert_memory_equal(s.winner, revs[4].hash, PROTO_HASH_BYTES);
        assert_int_equal(s.n_conflicts, 1);
        assert_memory_equal(s.conflicts[0], hi->hash, PROTO_HASH_BYTES);
    }
}

static void
test_merge_delete_races_edit(void **state)
{
    const int names[] = {R, E2, E3C, D4, P4};
    struct summary s;
    struct proto_rev revs[MAXR];
    size_t n;

    (void)state;
    make_all();
    /* D4 has the greater hash, yet the live P4 wins, and D4 is no conflict. */
    assert_true(memcmp(all[D4].hash, all[P4].hash, PROTO_HASH_BYTES) > 0);
    merge_of(names, 5, &s);
    assert_int_equal(s.state, PROTO_REC_LIVE);
    assert_memory_equal(s.winner, all[P4].hash, PROTO_HASH_BYTES);
    assert_int_equal(s.n_conflicts, 0);
    assert_int_equal(state_of(&s, &all[D4]), PROTO_REV_COUNTED);
    /* A deleted leaf at a higher gen does not beat a live one lower down. */
    n = pick(names, 5, revs);
    revs[n++] = rev("D5", feed_a, 5, &all[P4], PROTO_OP_DELETE);
    revs[n++] = all[E3A];
    summarize(revs, n, &s);
    assert_int_equal(s.state, PROTO_REC_LIVE);
    assert_memory_equal(s.winner, all[E3A].hash, PROTO_HASH_BYTES);
    assert_int_equal(s.n_conflicts, 0);
    /* Only deletes left at the leaves: a tombstone. */
    n = 0;
    revs[n++] = all[R];
    revs[n++] = all[E2];
    revs[n++] = rev("D3", feed_a, 3, &all[E2], PROTO_OP_DELETE);
    summarize(revs, n, &s);
    assert_int_equal(s.state, PROTO_REC_TOMBSTONE);
    assert_int_equal(s.n_counted, 3);
    /* A put after a delete brings the record back. */
    revs[n] = rev("U4", feed_a, 4, &revs[n - 1], PROTO_OP_PUT);
    n++;
    summarize(revs, n, &s);
    assert_int_equal(s.state, PROTO_REC_LIVE);
    assert_memory_equal(s.winner, revs[n - 1].hash, PROTO_HASH_BYTES);
}

static void
test_merge_flagged(void **state)
{
    struct summary s;
    struct proto_rev revs[MAXR];
    size_t n;

    (void)state;
    make_all();
    /* X (not the owner, not a coordinator) has the greatest hash at gen 3;
     * W (wrong gen) the greatest gen. Neither counts. */
    {
        const int names[] = {R, E2, X, W};

        merge_of(names, 4, &s);
        assert_int_equal(s.state, PROTO_REC_LIVE);
        assert_memory_equal(s.winner, all[E2].hash, PROTO_HASH_BYTES);
        assert_int_equal(s.n_conflicts, 0);
        assert_int_equal(state_of(&s, &all[X]), PROTO_REV_FLAGGED);
        assert_int_equal(state_of(&s, &all[W]), PROTO_REV_FLAGGED);
        assert_int_equal(s.n_flagged, 2);
        assert_int_equal(s.n_counted, 2);
    }
    /* Children of a flagged revision are flagged, even the owner's. */
    n = 0;
    revs[n++] = all[R];
    revs[n++] = all[E2];
    revs[n++] = all[X];
    revs[n++] = rev("XA", feed_a, 4, &all[X], PROTO_OP_PUT);
    revs[n++] = rev("XC", feed_c, 4, &all[X], PROTO_OP_DELETE);
    revs[n++] = rev("WA", feed_a, 6, &all[W], PROTO_OP_PUT);
    revs[n++] = all[W];
    summarize(revs, n, &s);
    assert_int_equal(s.state, PROTO_REC_LIVE);
    assert_memory_equal(s.winner, all[E2].hash, PROTO_HASH_BYTES);
    assert_int_equal(state_of(&s, &revs[3]), PROTO_REV_FLAGGED);
    assert_int_equal(state_of(&s, &revs[4]), PROTO_REV_FLAGGED);
    assert_int_equal(state_of(&s, &revs[5]), PROTO_REV_FLAGGED);
    assert_int_equal(s.n_flagged, 5);
    /* Other wrong gens: the parent's own gen, or lower; gen 1 with a parent. */
    n = 0;
    revs[n++] = all[R];
    revs[n++] = all[E2];
    revs[n++] = rev("G2", feed_a, 2, &all[E2], PROTO_OP_PUT);
    revs[n++] = rev("G1", feed_a, 1, &all[E2], PROTO_OP_PUT);
    revs[n++] = rev("G9", feed_a, 9007199254740991ull, &all[E2], PROTO_OP_PUT);
    summarize(revs, n, &s);
    assert_memory_equal(s.winner, all[E2].hash, PROTO_HASH_BYTES);
    assert_int_equal(s.n_flagged, 3);
    assert_int_equal(s.n_counted, 2);
}

static void
test_merge_contested(void **state)
{
    struct summary s;
    size_t i;

    (void)state;
    make_all();
    {
        const int names[] = {R, E2, E3A, E3C, RB, EB2};

        merge_of(names, 6, &s);
        assert_int_equal(s.state, PROTO_REC_CONTESTED);
        assert_false(s.has_owner);
        assert_int_equal(s.n_conflicts, 0);
        for (i = 0; i < FS_ARRAY_LEN(names); i++)
            assert_int_equal(state_of(&s, &all[names[i]]), PROTO_REV_CONTESTED);
        assert_int_equal(s.n_counted, 0);
        assert_int_equal(s.n_flagged, 6); /* kept and flagged for a coordinator */
    }
    /* Two roots by the same feed do not contest: both count, two live leaves. */
    {
        struct proto_rev revs[3];

        revs[0] = all[R];
        revs[1] = rev("R'", feed_a, 1, NULL, PROTO_OP_PUT);
        revs[2] = all[E2];
        summarize(revs, 3, &s);
        assert_int_equal(s.state, PROTO_REC_LIVE);
        assert_int_equal(s.n_counted, 3);
        assert_int_equal(s.n_conflicts, 1);
    }
    /* A coordinator's root for the owner's record contests it too. */
    {
        struct proto_rev revs[2];

        revs[0] = all[R];
        revs[1] = rev("RC", feed_c, 1, NULL, PROTO_OP_PUT);
        summarize(revs, 2, &s);
        assert_int_equal(s.state, PROTO_REC_CONTESTED);
    }
}

/* resolve ID --keep REV: a delete child of every other live leaf. */
static void
test_merge_resolve(void **state)
{
    const struct proto_rev *hi, *lo;
    struct proto_rev revs[MAXR];
    struct summary s;
    size_t n;

    (void)state;
    make_all();
    hi = memcmp(all[E3A].hash, all[E3C].hash, PROTO_HASH_BYTES) > 0 ? &all[E3A] : &all[E3C];
    lo = hi == &all[E3A] ? &all[E3C] : &all[E3A];
    /* Keep the one that would lose. */
    n = 0;
    revs[n++] = all[R];
    revs[n++] = all[E2];
    revs[n++] = all[E3A];
    revs[n++] = all[E3C];
    revs[n++] = rev("resolve", feed_c, 4, hi, PROTO_OP_DELETE);
    memset(revs[n - 1].hash, 0xff, PROTO_HASH_BYTES);
    summarize(revs, n, &s);
    assert_int_equal(s.state, PROTO_REC_LIVE);
    assert_memory_equal(s.winner, lo->hash, PROTO_HASH_BYTES);
    assert_int_equal(s.n_conflicts, 0);
    assert_int_equal(s.n_counted, 5);

    /* Three live leaves; keeping one deletes the two others. */
    n = 0;
    revs[n++] = all[R];
    revs[n++] = all[E2];
    revs[n++] = all[E3A];
    revs[n++] = all[E3C];
    revs[n++] = rev("E3a'", feed_a, 3, &all[E2], PROTO_OP_PUT);
    summarize(revs, n, &s);
    assert_int_equal(s.n_conflicts, 2);
    revs[n++] = rev("del E3a", feed_c, 4, &all[E3A], PROTO_OP_DELETE);
    summarize(revs, n, &s);
    assert_int_equal(s.n_conflicts, 1);
    revs[n] = rev("del E3c", feed_a, 4, &all[E3C], PROTO_OP_DELETE);
    n++;
    summarize(revs, n, &s);
    assert_int_equal(s.state, PROTO_REC_LIVE);
    assert_memory_equal(s.winner, revs[4].hash, PROTO_HASH_BYTES);
    assert_int_equal(s.n_conflicts, 0);
    /* A resolve written by someone who may not counts for nothing. */
    revs[n - 1] = rev("del E3c by B", feed_b, 4, &all[E3C], PROTO_OP_DELETE);
    summarize(revs, n, &s);
    assert_int_equal(s.n_conflicts, 1);
}

static void
test_merge_pending(void **state)
{
    struct proto_rev revs[MAXR];
    struct summary s;
    size_t n = 0;

    (void)state;
    make_all();
    revs[n++] = all[E3A];
    revs[n++] = all[E2];
    revs[n++] = all[X];
    summarize(revs, n, &s);
    assert_int_equal(s.state, PROTO_REC_PENDING);
    assert_false(s.has_owner);
    assert_int_equal(s.n_pending, 3);
    /* The root arrives: the owner's chain counts, the non-owner's is flagged. */
    revs[n++] = all[R];
    summarize(revs, n, &s);
    assert_int_equal(s.state, PROTO_REC_LIVE);
    assert_memory_equal(s.winner, all[E3A].hash, PROTO_HASH_BYTES);
    assert_int_equal(state_of(&s, &all[E2]), PROTO_REV_COUNTED);
    assert_int_equal(state_of(&s, &all[E3A]), PROTO_REV_COUNTED);
    assert_int_equal(state_of(&s, &all[X]), PROTO_REV_FLAGGED);
    assert_int_equal(s.n_pending, 0);
}

static void
test_merge_duplicates(void **state)
{
    struct proto_rev revs[MAXR], shuffled[MAXR];
    struct summary base, s;
    size_t n, i, round, idx[MAXR];

    (void)state;
    make_all();
    merge_of(set_plain, FS_ARRAY_LEN(set_plain), &base);
    for (round = 0; round < 400; round++) {
        size_t extra = 1 + round % 8;

        n = pick(set_plain, FS_ARRAY_LEN(set_plain), revs);
        for (i = 0; i < extra; i++)
            revs[n++] = revs[rng_next() % FS_ARRAY_LEN(set_plain)];
        for (i = 0; i < n; i++)
            idx[i] = i;
        shuffle(idx, n);
        for (i = 0; i < n; i++)
            shuffled[i] = revs[idx[i]];
        /* summarize also checks that every copy has its original's state. */
        summarize(shuffled, n, &s);
        assert_same(&base, &s, "with duplicates");
    }
    /* Every revision twice, nothing else. */
    n = pick(set_plain, FS_ARRAY_LEN(set_plain), revs);
    for (i = 0; i < FS_ARRAY_LEN(set_plain); i++)
        revs[n++] = revs[i];
    summarize(revs, n, &s);
    assert_same(&base, &s, "everything twice");
}

static void
test_rank_and_from_entry(void **state)
{
    struct proto_rev a, b, r;
    struct proto_entry e;
    unsigned char h[PROTO_HASH_BYTES];

    (void)state;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.gen = 3;
    b.gen = 2;
    memset(b.hash, 0xff, PROTO_HASH_BYTES);
    assert_true(proto_rev_rank_cmp(&a, &b) < 0);
    assert_true(proto_rev_rank_cmp(&b, &a) > 0);
    b.gen = 3;
    assert_true(proto_rev_rank_cmp(&b, &a) < 0);
    a.hash[PROTO_HASH_BYTES - 1] = 0xff;
    memset(b.hash, 0, PROTO_HASH_BYTES);
    b.hash[0] = 1; /* raw byte order, first byte most significant */
    assert_true(proto_rev_rank_cmp(&b, &a) < 0);
    assert_int_equal(proto_rev_rank_cmp(&a, &a), 0);

    memset(&e, 0, sizeof e);
    memcpy(e.feed, feed_b, PROTO_KEY_BYTES);
    e.seq = 7;
    e.op = PROTO_OP_DELETE;
    e.gen = 4;
    e.has_parent = 1;
    memset(e.parent, 0x42, PROTO_HASH_BYTES);
    memset(h, 0x24, sizeof h);
    proto_rev_from_entry(&r, &e, h, 1);
    assert_memory_equal(r.hash, h, PROTO_HASH_BYTES);
    assert_memory_equal(r.feed, feed_b, PROTO_KEY_BYTES);
    assert_int_equal(r.gen, 4);
    assert_true(r.has_parent);
    assert_memory_equal(r.parent, e.parent, PROTO_HASH_BYTES);
    assert_int_equal(r.op, PROTO_OP_DELETE);
    assert_true(r.by_coordinator);
}

/* ---- properties --------------------------------------------------------------------------- */

/* Every one of the n! orders of the set gives the same result (Heap's
 * algorithm, iterative). */
static void
all_permutations(const int *names, size_t n, const struct summary *want)
{
    struct proto_rev base[MAXR], perm[MAXR];
    size_t idx[MAXR], c[MAXR], i, count = 0;
    struct summary s;

    assert_true(n <= 10);
    pick(names, n, base);
    for (i = 0; i < n; i++) {
        idx[i] = i;
        c[i] = 0;
    }
    for (;;) {
        for (i = 0; i < n; i++)
            perm[i] = base[idx[i]];
        summarize(perm, n, &s);
        assert_same(want, &s, "a permutation");
        count++;
        for (i = 1; i < n && c[i] >= i; i++)
            c[i] = 0;
        if (i == n)
            break;
        {
            size_t j = i % 2 ? c[i] : 0, t = idx[j];

            idx[j] = idx[i];
            idx[i] = t;
        }
        c[i]++;
    }
    {
        size_t fact = 1;

        for (i = 2; i <= n; i++)
            fact *= i;
        assert_int_equal(count, fact);
    }
}

static void
test_merge_every_order(void **state)
{
    struct summary want, ref;

    (void)state;
    make_all();
    /* Without the contested root: the expected result, by hand. */
    merge_of(set_plain, FS_ARRAY_LEN(set_plain), &want);
    assert_int_equal(want.state, PROTO_REC_LIVE);
    assert_memory_equal(want.winner, all[P4].hash, PROTO_HASH_BYTES);
    assert_int_equal(want.n_conflicts, 1);
    assert_memory_equal(want.conflicts[0], all[E3A].hash, PROTO_HASH_BYTES);
    assert_int_equal(want.n_counted, 6);
    assert_int_equal(want.n_flagged, 2);
    assert_int_equal(state_of(&want, &all[X]), PROTO_REV_FLAGGED);
    assert_int_equal(state_of(&want, &all[W]), PROTO_REV_FLAGGED);
    {
        struct proto_rev revs[MAXR];

        reference(revs, pick(set_plain, FS_ARRAY_LEN(set_plain), revs), &ref);
        assert_same(&want, &ref, "plain set against the model");
    }
    all_permutations(set_plain, FS_ARRAY_LEN(set_plain), &want);

    /* With the contested root. */
    merge_of(set_contested, FS_ARRAY_LEN(set_contested), &want);
    assert_int_equal(want.state, PROTO_REC_CONTESTED);
    assert_int_equal(want.n_flagged, FS_ARRAY_LEN(set_contested));
    all_permutations(set_contested, FS_ARRAY_LEN(set_contested), &want);
}

/* Every subset, in three orders, gives one result, and it is the model's. */
static void
every_subset(const int *names, size_t n)
{
    struct proto_rev base[MAXR], sub[MAXR], rev_order[MAXR], shuffled[MAXR];
    struct summary s1, s2, s3, ref;
    size_t mask, i, k, idx[MAXR];

    pick(names, n, base);
    for (mask = 0; mask < ((size_t)1 << n); mask++) {
        for (i = 0, k = 0; i < n; i++)
            if (mask & ((size_t)1 << i))
                sub[k++] = base[i];
        for (i = 0; i < k; i++) {
            rev_order[i] = sub[k - 1 - i];
            idx[i] = i;
        }
        shuffle(idx, k);
        for (i = 0; i < k; i++)
            shuffled[i] = sub[idx[i]];
        summarize(sub, k, &s1);
        summarize(rev_order, k, &s2);
        summarize(shuffled, k, &s3);
        reference(sub, k, &ref);
        assert_same(&s1, &s2, "a subset, reversed");
        assert_same(&s1, &s3, "a subset, shuffled");
        assert_same(&ref, &s1, "a subset against the model");
    }
}

static void
test_merge_every_subset(void **state)
{
    (void)state;
    make_all();
    every_subset(set_plain, FS_ARRAY_LEN(set_plain));
    every_subset(set_contested, FS_ARRAY_LEN(set_contested));
    {
        const int everything[] = {R, E2, E3A, E3C, X, W, D4, P4, RB, EB2};

        every_subset(everything, FS_ARRAY_LEN(everything));
    }
}

/* Are all of r's ancestors (by parent links within the full set) present? */
static int
ancestors_present(const struct proto_rev *full, size_t nfull, const int *present,
                  const struct proto_rev *r)
{
    size_t i;

    while (r->has_parent) {
        for (i = 0; i < nfull; i++)
            if (memcmp(full[i].hash, r->parent, PROTO_HASH_BYTES) == 0)
                break;
        if (i == nfull || !present[i])
            return 0;
        r = &full[i];
    }
    return 1;
}

/* Delivered one at a time in many orders: every step agrees with the model,
 * the end equals the whole set's merge, and (without a contested root) a
 * counted revision stays counted, and a valid revision counts exactly when its
 * whole ancestry has arrived. */
static void
deliver(const int *names, size_t n, int contested, size_t orders)
{
    struct proto_rev full[MAXR], prefix[MAXR];
    struct summary want, s, ref;
    size_t o, i, k, idx[MAXR];

    summarize(full, pick(names, n, full), &want);
    for (o = 0; o < orders; o++) {
        int present[MAXR] = {0}, counted[MAXR] = {0}, contested_seen = 0;

        for (i = 0; i < n; i++)
            idx[i] = i;
        shuffle(idx, n);
        for (k = 0; k < n; k++) {
            prefix[k] = full[idx[k]];
            present[idx[k]] = 1;
            summarize(prefix, k + 1, &s);
            reference(prefix, k + 1, &ref);
            assert_same(&ref, &s, "a delivery step against the model");
            if (contested) {
                /* Once contested, contested for good. */
                if (contested_seen)
                    assert_int_equal(s.state, PROTO_REC_CONTESTED);
                contested_seen = s.state == PROTO_REC_CONTESTED;
                continue;
            }
            for (i = 0; i < n; i++) {
                enum proto_rev_state st;

                if (!present[i])
                    continue;
                st = state_of(&s, &full[i]);
                if (counted[i] && st != PROTO_REV_COUNTED)
                    fail_msg("order %zu step %zu: a counted revision stopped counting", o, k);
                counted[i] = st == PROTO_REV_COUNTED;
                if (state_of(&want, &full[i]) == PROTO_REV_COUNTED) {
                    int whole = ancestors_present(full, n, present, &full[i]);

                    if (whole != (st == PROTO_REV_COUNTED) || (!whole && st != PROTO_REV_PENDING))
                        fail_msg("order %zu step %zu: valid revision %zu in state %d with "
                                 "ancestry %s",
                                 o, k, i, st, whole ? "complete" : "incomplete");
                } else {
                    /* Invalid revisions never count, at any step. */
                    assert_int_not_equal(st, PROTO_REV_COUNTED);
                }
            }
        }
        assert_same(&want, &s, "the end of a delivery");
    }
}

static void
test_merge_convergence(void **state)
{
    (void)state;
    make_all();
    deliver(set_plain, FS_ARRAY_LEN(set_plain), 0, 3000);
    deliver(set_contested, FS_ARRAY_LEN(set_contested), 1, 3000);
    {
        const int everything[] = {R, E2, E3A, E3C, X, W, D4, P4, RB, EB2};

        deliver(everything, FS_ARRAY_LEN(everything), 1, 1000);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_empty),
        cmocka_unit_test(test_merge_linear_history),
        cmocka_unit_test(test_merge_concurrent_edits),
        cmocka_unit_test(test_merge_delete_races_edit),
        cmocka_unit_test(test_merge_flagged),
        cmocka_unit_test(test_merge_contested),
        cmocka_unit_test(test_merge_resolve),
        cmocka_unit_test(test_merge_pending),
        cmocka_unit_test(test_merge_duplicates),
        cmocka_unit_test(test_rank_and_from_entry),
        cmocka_unit_test(test_merge_every_order),
        cmocka_unit_test(test_merge_every_subset),
        cmocka_unit_test(test_merge_convergence),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}
