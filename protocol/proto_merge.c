/* The merge of DESIGN §6, as a function of a set of revisions. */
#include "proto_merge.h"

#include <stdlib.h>
#include <string.h>

void
proto_rev_from_entry(struct proto_rev *r, const struct proto_entry *e,
                     const unsigned char hash[PROTO_HASH_BYTES], int by_coordinator)
{
    memcpy(r->hash, hash, PROTO_HASH_BYTES);
    memcpy(r->feed, e->feed, PROTO_KEY_BYTES);
    r->gen = e->gen;
    r->has_parent = e->has_parent;
    memcpy(r->parent, e->parent, PROTO_HASH_BYTES);
    r->op = e->op;
    r->by_coordinator = by_coordinator;
}

int
proto_rev_rank_cmp(const struct proto_rev *a, const struct proto_rev *b)
{
    if (a->gen != b->gen)
        return a->gen > b->gen ? -1 : 1;
    return -memcmp(a->hash, b->hash, PROTO_HASH_BYTES);
}

/* qsort has no context argument; the sort helpers below carry it here. Only
 * ever set for the duration of one qsort call on the calling thread. */
static _Thread_local const struct proto_rev *sort_revs;

static int
by_hash(const void *a, const void *b)
{
    const struct proto_rev *x = &sort_revs[*(const size_t *)a];
    const struct proto_rev *y = &sort_revs[*(const size_t *)b];

    return memcmp(x->hash, y->hash, PROTO_HASH_BYTES);
}

static int
by_gen(const void *a, const void *b)
{
    const struct proto_rev *x = &sort_revs[*(const size_t *)a];
    const struct proto_rev *y = &sort_revs[*(const size_t *)b];

    if (x->gen != y->gen)
        return x->gen < y->gen ? -1 : 1;
    return memcmp(x->hash, y->hash, PROTO_HASH_BYTES);
}

static int
by_rank(const void *a, const void *b)
{
    return proto_rev_rank_cmp(&sort_revs[*(const size_t *)a], &sort_revs[*(const size_t *)b]);
}

/* Index (into revs) of the revision with this hash among the canonical ones
 * sorted by hash, or SIZE_MAX. */
static size_t
find_hash(const struct proto_rev *revs, const size_t *sorted, size_t n, const unsigned char *hash)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(revs[sorted[mid]].hash, hash, PROTO_HASH_BYTES);

        if (c == 0)
            return sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX;
}

enum fs_rc
proto_merge_record(const struct proto_rev *revs, size_t n, struct proto_merge *m)
{
    size_t *hs = NULL, *gs = NULL, *canon = NULL, *leaves = NULL;
    unsigned char *has_child = NULL;
    size_t i, nc = 0, nl = 0;
    const unsigned char *owner = NULL;
    int contested = 0;
    enum fs_rc rc = FS_ENOMEM;

    memset(m, 0, sizeof *m);
    if (n == 0) {
        m->state = PROTO_REC_PENDING;
        return FS_OK;
    }
    hs = malloc(n * sizeof *hs);
    gs = malloc(n * sizeof *gs);
    canon = malloc(n * sizeof *canon);
    leaves = malloc(n * sizeof *leaves);
    has_child = calloc(n, 1);
    m->rev_state = calloc(n, sizeof *m->rev_state);
    if (!hs || !gs || !canon || !leaves || !has_child || !m->rev_state)
        goto out;

    /* Canonical revisions: one per distinct hash (the first in hash order). */
    for (i = 0; i < n; i++)
        hs[i] = i;
    sort_revs = revs;
    qsort(hs, n, sizeof *hs, by_hash);
    for (i = 0; i < n; i++) {
        if (nc && memcmp(revs[hs[i]].hash, revs[hs[nc - 1]].hash, PROTO_HASH_BYTES) == 0) {
            canon[hs[i]] = hs[nc - 1];
            continue;
        }
        canon[hs[i]] = hs[i];
        hs[nc++] = hs[i];
    }

    /* The owner is the feed of the roots; roots in several feeds contest it. */
    for (i = 0; i < nc; i++) {
        const struct proto_rev *r = &revs[hs[i]];

        if (r->gen != 1 || r->has_parent)
            continue;
        if (!owner)
            owner = r->feed;
        else if (memcmp(owner, r->feed, PROTO_KEY_BYTES) != 0)
            contested = 1;
    }

    /* In ascending gen a parent (gen - 1) is decided before its children. */
    memcpy(gs, hs, nc * sizeof *gs);
    qsort(gs, nc, sizeof *gs, by_gen);
    for (i = 0; i < nc; i++) {
        size_t r = gs[i], p;
        enum proto_rev_state st;

        if (revs[r].gen == 1 && !revs[r].has_parent) {
            st = contested ? PROTO_REV_CONTESTED : PROTO_REV_COUNTED;
        } else if (!revs[r].has_parent ||
                   (p = find_hash(revs, hs, nc, revs[r].parent)) == SIZE_MAX) {
            st = contested ? PROTO_REV_CONTESTED : PROTO_REV_PENDING;
        } else if (contested) {
            st = PROTO_REV_CONTESTED;
        } else if (revs[p].gen + 1 != revs[r].gen) {
            st = PROTO_REV_FLAGGED;
        } else if (m->rev_state[p] == PROTO_REV_PENDING) {
            st = PROTO_REV_PENDING;
        } else if (m->rev_state[p] != PROTO_REV_COUNTED) {
            st = PROTO_REV_FLAGGED;
        } else if (!revs[r].by_coordinator && memcmp(revs[r].feed, owner, PROTO_KEY_BYTES) != 0) {
            st = PROTO_REV_FLAGGED;
        } else {
            st = PROTO_REV_COUNTED;
            has_child[p] = 1;
        }
        m->rev_state[r] = st;
    }

    for (i = 0; i < nc; i++) {
        size_t r = hs[i];

        switch (m->rev_state[r]) {
        case PROTO_REV_COUNTED:
            m->n_counted++;
            if (!has_child[r] && revs[r].op == PROTO_OP_PUT)
                leaves[nl++] = r;
            break;
        case PROTO_REV_PENDING:
            m->n_pending++;
            break;
        default:
            m->n_flagged++;
            break;
        }
    }
    if (owner && !contested) {
        m->has_owner = 1;
        memcpy(m->owner, owner, PROTO_KEY_BYTES);
    }
    if (contested)
        m->state = PROTO_REC_CONTESTED;
    else if (nl) {
        m->state = PROTO_REC_LIVE;
        qsort(leaves, nl, sizeof *leaves, by_rank);
        m->winner = leaves[0];
        m->n_conflicts = nl - 1;
        if (m->n_conflicts) {
            m->conflicts = malloc(m->n_conflicts * sizeof *m->conflicts);
            if (!m->conflicts)
                goto out;
            memcpy(m->conflicts, leaves + 1, m->n_conflicts * sizeof *m->conflicts);
        }
    } else if (m->n_counted)
        m->state = PROTO_REC_TOMBSTONE;
    else
        m->state = PROTO_REC_PENDING;

    /* Duplicates share the state of their canonical revision. */
    for (i = 0; i < n; i++)
        m->rev_state[i] = m->rev_state[canon[i]];
    rc = FS_OK;
out:
    sort_revs = NULL;
    free(hs);
    free(gs);
    free(canon);
    free(leaves);
    free(has_child);
    if (rc)
        proto_merge_release(m);
    return rc;
}

void
proto_merge_release(struct proto_merge *m)
{
    free(m->conflicts);
    free(m->rev_state);
    memset(m, 0, sizeof *m);
}
