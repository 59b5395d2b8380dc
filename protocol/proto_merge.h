/*
 * The merge (DESIGN §6): pure, the same code on the server and on every
 * coordinator, so that all of them converge. Given every known revision of one
 * record and whether each revision's feed is a coordinator, it names the
 * owner, the winner, the conflicts and the state of every revision.
 *
 * The result depends only on the set of revisions, never on their order:
 * duplicates (same hash) count once, and no clock is consulted.
 */
#ifndef PROTO_MERGE_H
#define PROTO_MERGE_H

#include "proto.h"
#include "proto_entry.h"

/* One revision: the parts of an entry the merge looks at. */
struct proto_rev {
    unsigned char hash[PROTO_HASH_BYTES]; /* the entry's hash */
    unsigned char feed[PROTO_KEY_BYTES];
    uint64_t gen;
    int has_parent;
    unsigned char parent[PROTO_HASH_BYTES];
    enum proto_op op;
    int by_coordinator; /* the feed is a coordinator of the project */
};

enum proto_rev_state {
    PROTO_REV_COUNTED = 1, /* part of the record's history */
    PROTO_REV_PENDING,     /* an ancestor has not arrived yet: not counted, kept */
    PROTO_REV_FLAGGED,     /* breaks a rule (wrong gen, not the owner's): kept, flagged */
    PROTO_REV_CONTESTED    /* the record has roots in several feeds */
};

enum proto_rec_state {
    PROTO_REC_LIVE = 1,  /* a winner exists */
    PROTO_REC_TOMBSTONE, /* counted, but every leaf is deleted */
    PROTO_REC_CONTESTED, /* roots in more than one feed: no winner is picked */
    PROTO_REC_PENDING    /* nothing counts yet (no root has arrived) */
};

/* Caller-owned result: proto_merge_release frees what proto_merge_record
 * allocated. Indexes refer to the caller's revs array. */
struct proto_merge {
    enum proto_rec_state state;
    int has_owner;
    unsigned char owner[PROTO_KEY_BYTES];
    size_t winner;     /* when LIVE */
    size_t *conflicts; /* other live leaves, best first */
    size_t n_conflicts;
    enum proto_rev_state *rev_state; /* one per input revision */
    size_t n_counted, n_pending, n_flagged;
};

/* Merges n revisions of one record. FS_ENOMEM is the only failure. */
FS_WUR enum fs_rc proto_merge_record(const struct proto_rev *revs, size_t n,
                                     struct proto_merge *out /* OUT */);
void proto_merge_release(struct proto_merge *m);

/* Orders two revisions as the merge ranks leaves: greater (gen, hash) first.
 * Negative when a ranks before b. */
int proto_rev_rank_cmp(const struct proto_rev *a, const struct proto_rev *b);

/* Fills a revision from a parsed entry. */
void proto_rev_from_entry(struct proto_rev *r, const struct proto_entry *e,
                          const unsigned char hash[PROTO_HASH_BYTES], int by_coordinator);

#endif
