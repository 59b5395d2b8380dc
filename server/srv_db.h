/*
 * The server's storage operations table. Every backend (SQLite, the embedded
 * default; PostgreSQL for several servers on one database) implements these
 * operations with the same meaning; the HTTP side knows nothing else of
 * storage. A backend is chosen by which .c files CMake compiles, never by
 * including one.
 *
 * Contract shared by every backend:
 *  - srv_db_push_apply is ONE durable transaction: entries, feed head, the
 *    merged records view and the audit row commit together or not at all, and
 *    appends to one feed are serialised by the database (a lock on the feed's
 *    head row), never by process memory.
 *  - A handle (struct srv_db) is used by one thread at a time; srv_db_open
 *    may be called once per worker thread.
 *  - Nothing is changed by an operation that returns an error.
 * Dependency rule: server/ includes protocol/ and base/, never agent/ or sync/.
 */
#ifndef SRV_DB_H
#define SRV_DB_H

#include <stdint.h>

#include "proto.h"
#include "proto_merge.h"

struct srv_db;

enum srv_role { SRV_ROLE_RESEARCHER = 1, SRV_ROLE_COORDINATOR = 2 };

/* Feed flags (bits). */
#define SRV_FLAG_FORK      0x1u /* a second, different entry for a held seq was offered */
#define SRV_FLAG_GAP       0x2u /* a push skipped entries (informational) */
#define SRV_FLAG_CONTESTED 0x4u /* one of its records has roots in several feeds */

#define SRV_PROJECT_MAX 64 /* [a-z0-9][a-z0-9_-]* */

struct srv_feed {
    unsigned char feed[PROTO_KEY_BYTES];
    char project[SRV_PROJECT_MAX + 1];
    enum srv_role role;
    char name[PROTO_TEXT_MAX_BYTES + 1];
    uint64_t have_seq;
    int has_head;
    unsigned char head[PROTO_HASH_BYTES];
    int revoked;
    uint64_t accept_through; /* with revoked: entries up to this seq still arrive */
    unsigned flags;
    uint64_t fork_seq; /* with SRV_FLAG_FORK: the first divergent seq */
    int64_t enrolled_ms, last_contact_ms;
    uint64_t receipt_seq;  /* have_seq of the last receipt sent */
    uint64_t attested_seq; /* the most a heartbeat of it said it holds */
    int64_t attested_ms;   /* when that heartbeat was written (its clock) */
};

struct srv_token {
    char project[SRV_PROJECT_MAX + 1];
    enum srv_role role;
    char name[PROTO_TEXT_MAX_BYTES + 1];
    int64_t created_ms, expires_ms;
};

/* One verified entry of a push, ready to store. Pointers borrowed. */
struct srv_entry {
    uint64_t seq;
    unsigned char hash[PROTO_HASH_BYTES];
    const unsigned char *entry;
    size_t entry_len;
    const unsigned char *sig;
    const unsigned char *content;
    size_t content_len;
    const struct proto_entry *parsed;
};

enum srv_push_outcome {
    SRV_PUSH_APPLIED = 1, /* stored; head advanced */
    SRV_PUSH_HELD,        /* everything was already held: nothing stored */
    SRV_PUSH_GAP,         /* the first new entry is past have + 1 */
    SRV_PUSH_FORK         /* an entry differs from the one held at its seq */
};

struct srv_push_result {
    enum srv_push_outcome outcome;
    uint64_t have_seq; /* after the push */
    unsigned char head[PROTO_HASH_BYTES];
    uint64_t stored;   /* entries newly stored */
    uint64_t fork_seq; /* with FORK */
};

/* One push of a group commit (srv_db_ops.push_apply_group). */
struct srv_push_job {
    const unsigned char *feed;
    const struct srv_entry *es;
    size_t n;
    int64_t now_ms;
    struct srv_push_result res; /* OUT */
    enum fs_rc rc;              /* OUT */
    struct fs_err err;          /* OUT */
    struct srv_push_job *next;  /* the committer's queue */
    int done;
};

/* A row of the merged view; pointers valid during the callback only. */
struct srv_record {
    const char *id;
    enum proto_rec_state state;
    const unsigned char *owner;  /* NULL when contested or pending */
    const unsigned char *winner; /* the winning revision's hash, when LIVE */
    uint64_t gen;
    const unsigned char *conflicts; /* n_conflicts hashes, best first */
    size_t n_conflicts;
    const unsigned char *content; /* the winner's content, when LIVE */
    size_t content_len;
};

typedef int (*srv_feed_cb)(void *ctx, const struct srv_feed *f);
typedef int (*srv_record_cb)(void *ctx, const struct srv_record *r);
/* n: the correction's place in the owner's queue; the rest is the entry. */
typedef int (*srv_correction_cb)(void *ctx, uint64_t n, const unsigned char *feed, uint64_t seq,
                                 const unsigned char *hash, const unsigned char *entry,
                                 size_t entry_len, const unsigned char *sig,
                                 const unsigned char *content, size_t content_len);
typedef int (*srv_entry_cb)(void *ctx, uint64_t seq, const unsigned char *hash,
                            const unsigned char *entry, size_t entry_len, const unsigned char *sig,
                            const unsigned char *content, size_t content_len);

/* An upload in progress: one per blob at a time (locked), writes appended at
 * the durable offset. Backend-owned. */
struct srv_blob_writer;

struct srv_db_ops {
    const char *name;
    /* where: the data folder (SQLite) or a connection URL. create: make the
     * schema (init). */
    enum fs_rc (*open)(const char *where, int create, struct srv_db **out, struct fs_err *err);
    void (*close)(struct srv_db *db);

    /* The server's key seed: created by init (key_create refuses to replace
     * one), read by every server process. seed points to PROTO_SEED_BYTES of
     * sodium_malloc'd memory. */
    enum fs_rc (*key_create)(struct srv_db *db, const unsigned char *seed, struct fs_err *err);
    enum fs_rc (*key_load)(struct srv_db *db, unsigned char *seed, struct fs_err *err);

    enum fs_rc (*token_add)(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES],
                            const struct srv_token *t, struct fs_err *err);
    /* Redeems a token for feed: FS_OK the first time and again for the same
     * feed (a retry after a lost answer), creating the feed row; FS_EAUTH for
     * an unknown, expired or already used (by another key) token; FS_EEXIST
     * when the feed is already enrolled by another token. */
    enum fs_rc (*token_redeem)(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES],
                               const unsigned char feed[PROTO_KEY_BYTES], const char *name,
                               int64_t now_ms, struct srv_feed *out, struct fs_err *err);

    /* FS_ENOTFOUND when the feed never enrolled. */
    enum fs_rc (*feed_get)(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                           struct srv_feed *out, struct fs_err *err);
    /* Every feed (of project, or all when NULL), by project then name. */
    enum fs_rc (*feed_list)(struct srv_db *db, const char *project, srv_feed_cb cb, void *ctx,
                            struct fs_err *err);
    enum fs_rc (*feed_revoke)(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                              uint64_t accept_through, int64_t now_ms, struct fs_err *err);
    /* Records a refused fork: flag and first divergent seq; audit row. */
    enum fs_rc (*feed_flag_fork)(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                                 uint64_t seq, int64_t now_ms, struct fs_err *err);
    /* Remembers the have_seq of the receipt just signed and the contact time. */
    enum fs_rc (*feed_touch)(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                             uint64_t receipt_seq, int64_t now_ms, struct fs_err *err);
    /* Records a verified heartbeat: attested_seq and attested_ms become seq
     * and at_ms when seq is higher, or the same and at_ms later; an audit row
     * then. FS_ENOTFOUND when nothing changed (or no such feed). */
    enum fs_rc (*feed_attest)(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                              uint64_t seq, int64_t at_ms, int64_t now_ms, struct fs_err *err);
    /* The hash of the entry at seq, FS_ENOTFOUND if not held. */
    enum fs_rc (*entry_hash)(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                             uint64_t seq, unsigned char out[PROTO_HASH_BYTES], struct fs_err *err);

    /* Applies a verified, contiguous run of entries (seq from..to, ascending)
     * in one transaction. Entries at or below the held head must equal what is
     * held (else FORK, nothing stored); the first new one must be have + 1
     * (else GAP) and chain onto the head. */
    enum fs_rc (*push_apply)(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                             const struct srv_entry *entries, size_t n, int64_t now_ms,
                             struct srv_push_result *out, struct fs_err *err);
    /* The same for several pushes in one transaction (one fsync): each job
     * is applied whole or not at all and gets its own rc and result; if the
     * commit fails, every applied job fails with it. */
    enum fs_rc (*push_apply_group)(struct srv_db *db, struct srv_push_job *jobs, size_t n,
                                   struct fs_err *err);

    /* Records a nonce seen with a request signed at ts; FS_ECONFLICT when it
     * was seen before. Forgets nonces older than now - window. */
    enum fs_rc (*nonce_use)(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                            const unsigned char *nonce, size_t nonce_len, int64_t ts, int64_t now_s,
                            struct fs_err *err);

    /* Appends an audit row (never changed or deleted). */
    enum fs_rc (*audit)(struct srv_db *db, const char *event,
                        const unsigned char *feed /* may be NULL */, const char *detail,
                        int64_t now_ms, struct fs_err *err);

    /* Calls cb for entries from..to (inclusive, to 0 = to the end) of feed. */
    enum fs_rc (*entries_each)(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                               uint64_t from, uint64_t to, srv_entry_cb cb, void *ctx,
                               struct fs_err *err);
    /* Coordinators' revisions of records owner owns, queued in the order
     * their pushes committed: those with n > since, at most limit. */
    enum fs_rc (*corrections_each)(struct srv_db *db, const unsigned char owner[PROTO_KEY_BYTES],
                                   uint64_t since, size_t limit, srv_correction_cb cb, void *ctx,
                                   struct fs_err *err);
    /* Every record of project's merged view, by id. */
    enum fs_rc (*records_each)(struct srv_db *db, const char *project, srv_record_cb cb, void *ctx,
                               struct fs_err *err);

    /* ---- blobs (attachments) -------------------------------------------------- */
    /* Whether a verified entry of project references hash: FS_ENOTFOUND if
     * none does; *size the size it claims (the largest, if several);
     * *by_feed whether feed's own entries reference it (feed may be NULL). */
    enum fs_rc (*blob_ref)(struct srv_db *db, const char *project,
                           const unsigned char hash[PROTO_HASH_BYTES], const unsigned char *feed,
                           uint64_t *size, int *by_feed, struct fs_err *err);
    /* What the server holds of hash: the durable offset, or complete. */
    enum fs_rc (*blob_state)(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES],
                             uint64_t *offset, int *complete, struct fs_err *err);
    /* Starts appending at offset: FS_ECONFLICT (and *held) when offset is not
     * the durable offset, FS_EAGAIN when another upload of hash runs,
     * FS_EEXIST when the blob is complete. */
    enum fs_rc (*blob_write_begin)(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES],
                                   uint64_t offset, uint64_t expected, struct srv_blob_writer **w,
                                   uint64_t *held, struct fs_err *err);
    enum fs_rc (*blob_write)(struct srv_blob_writer *w, const void *p, size_t n,
                             struct fs_err *err);
    /* Ends a chunk, whole or cut: makes what arrived durable (fsync) and
     * records the offset; at the expected size checks the hash, then
     * fsyncs and renames the blob into place (FS_EINVAL and the partial file
     * removed when the content does not match). Frees w. */
    enum fs_rc (*blob_write_end)(struct srv_db *db, struct srv_blob_writer *w, int *complete,
                                 uint64_t *held, struct fs_err *err);
    /* A complete blob for reading: an open descriptor (caller closes). */
    enum fs_rc (*blob_open)(struct srv_db *db, const unsigned char hash[PROTO_HASH_BYTES], int *fd,
                            uint64_t *size, struct fs_err *err);
    /* Blobs feed's entries reference that are not complete here. */
    enum fs_rc (*blob_missing)(struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                               uint64_t *count, struct fs_err *err);
};

/* The backend serving where: "postgresql://…" or "postgres://…" picks
 * PostgreSQL (when built with FS_POSTGRES), anything else is a data folder for
 * SQLite. NULL with err set when none fits. */
const struct srv_db_ops *srv_db_backend(const char *where, struct fs_err *err);

extern const struct srv_db_ops srv_db_sqlite_ops;

/* Whether s is a valid project name. */
int srv_project_valid(const char *s);
const char *srv_role_name(enum srv_role r);
int srv_role_parse(const char *s, enum srv_role *out);

#endif
