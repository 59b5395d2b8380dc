/*
 * fs_store: the laptop's local store, one folder ("home") holding store.db
 * (SQLite: feeds, entries, the merged records view, settings, sync state) and
 * the device's secret key. Multi-feed from the start: the own feed, and other
 * feeds' entries (a coordinator's pull, corrections).
 *
 * Durability: every write is one transaction with synchronous=FULL; when a
 * function that writes returns FS_OK, what it wrote survives power loss.
 * Writers serialise with BEGIN IMMEDIATE, so several processes (the command
 * line and the daemon) can share a store.
 *
 * Dependency rule: store/ includes protocol/ and base/ only. A struct store is
 * used by one thread at a time (a bulk's writer thread uses the connection
 * only while the caller signs, never touching a table itself).
 */
#ifndef STORE_H
#define STORE_H

#include <stdint.h>

#include "proto.h"
#include "proto_content.h"
#include "proto_entry.h"
#include "proto_merge.h"

struct store;

#define STORE_DB_NAME  "store.db"
#define STORE_KEY_NAME "key"

/* The home folder: flag (may be NULL), else $FIELDSYNC_HOME, else
 * $XDG_DATA_HOME/fieldsync, else ~/.local/share/fieldsync. Caller frees. */
FS_WUR enum fs_rc store_home_resolve(const char *flag, char **out /* OUT */, struct fs_err *err);

/* Creates home (0700), the secret key (0600) and store.db for a device called
 * name. FS_EEXIST when a store or key is already there. On success *feed holds
 * the new feed id. */
FS_WUR enum fs_rc store_init(const char *home, const char *name,
                             unsigned char feed[PROTO_KEY_BYTES] /* OUT */, struct fs_err *err);

/* Opens an initialised store: loads the key (refused when others can read
 * it), applies migrations. FS_ENOTFOUND when there is no store at home. Caller
 * closes with store_close. */
FS_WUR enum fs_rc store_open(const char *home, struct store **out /* OUT */, struct fs_err *err);
void store_close(struct store *s); /* NULL-safe */

const unsigned char *store_feed(const struct store *s); /* valid until store_close */
/* The device's secret key (PROTO_SECRET_BYTES, in sodium_malloc'd memory),
 * borrowed for signing; valid until store_close. Never copy or log it. */
const unsigned char *store_secret(const struct store *s);
const char *store_home(const struct store *s);

/* The wall clock in unix milliseconds (the store's time for "at" fields). */
int64_t store_now_ms(void);

/* ---- settings (per store) ------------------------------------------------- */

/* *value is NULL when unset; caller frees. */
FS_WUR enum fs_rc store_setting_get(struct store *s, const char *key, char **value /* OUT */,
                                    struct fs_err *err);
/* value NULL removes the setting. */
FS_WUR enum fs_rc store_setting_set(struct store *s, const char *key, const char *value,
                                    struct fs_err *err);

/* ---- transactions ------------------------------------------------------------ */

/* Groups several writes into one durable transaction (import). Inside one,
 * the record functions below join it instead of committing themselves. */
FS_WUR enum fs_rc store_begin(struct store *s, struct fs_err *err);
FS_WUR enum fs_rc store_commit(struct store *s, struct fs_err *err);
void store_rollback(struct store *s);

/* ---- writing the own feed ------------------------------------------------------ */

/* Appends a root revision for a new record with content c (checked here).
 * id: NULL for a new UUIDv7, or a given one (import), which must not exist.
 * id_out receives the id. */
FS_WUR enum fs_rc store_record_create(struct store *s, const struct proto_content *c,
                                      const char *id, char id_out[PROTO_UUID_LEN + 1],
                                      struct fs_err *err);
/* The same, for content the caller has checked (proto_content_check) and
 * encoded (proto_content_encode, bytes/len): import does both on its reading
 * thread. */
FS_WUR enum fs_rc store_record_create_encoded(struct store *s, const struct proto_content *c,
                                              const unsigned char *bytes, size_t len,
                                              const char *id, char id_out[PROTO_UUID_LEN + 1],
                                              struct fs_err *err);
/* A bulk of new records (import), inside the caller's transaction
 * (store_begin): each entry is built and signed on the caller's thread while a
 * second thread writes the ones before it. The records come out as the same
 * calls of store_record_create_encoded with no id would make them, in order.
 * Errors carry the "where" of the row that failed (a row's write may fail
 * after later rows were handed over). Between store_bulk_drain and the next
 * store_bulk_add the store may be used as usual (ids looked up, records with
 * a given id created). On any error the transaction must be rolled back. */
struct store_bulk;
FS_WUR enum fs_rc store_bulk_begin(struct store *s, struct store_bulk **out, struct fs_err *err);
/* Content c checked and encoded as for store_record_create_encoded; where:
 * the caller's name for the row (a line number), returned in *fail_where
 * with an error. */
FS_WUR enum fs_rc store_bulk_add(struct store_bulk *b, const struct proto_content *c,
                                 const unsigned char *bytes, size_t len, uint64_t where,
                                 char id_out[PROTO_UUID_LEN + 1], uint64_t *fail_where,
                                 struct fs_err *err);
/* Waits until every record handed over is written. */
FS_WUR enum fs_rc store_bulk_drain(struct store_bulk *b, uint64_t *fail_where, struct fs_err *err);
/* Drains, stops the writer and frees b (NULL is a no-op). */
enum fs_rc store_bulk_end(struct store_bulk *b, uint64_t *fail_where, struct fs_err *err);
/* Appends a revision of record id whose parent is the current winner.
 * FS_ENOTFOUND for an unknown id; FS_EINVAL for a deleted or contested one;
 * FS_EAUTH when this feed may not revise it (not the owner, not a coordinator). */
FS_WUR enum fs_rc store_record_update(struct store *s, const char *id,
                                      const struct proto_content *c, struct fs_err *err);
/* Appends a delete child of every live leaf of record id. */
FS_WUR enum fs_rc store_record_delete(struct store *s, const char *id, struct fs_err *err);
/* Keeps the live leaf whose hash starts with rev_prefix: appends a delete
 * child of every other live leaf. */
FS_WUR enum fs_rc store_record_resolve(struct store *s, const char *id, const char *rev_prefix,
                                       struct fs_err *err);

/* ---- reading ------------------------------------------------------------------ */

struct store_record {
    char id[PROTO_UUID_LEN + 1];
    enum proto_rec_state state;
    int has_owner;
    unsigned char owner[PROTO_KEY_BYTES];
    unsigned char winner[PROTO_HASH_BYTES]; /* when LIVE */
    uint64_t gen;
    char kind[PROTO_KIND_MAX_BYTES + 1];
    int64_t observed_ms;
    size_t n_conflicts;
    int synced;             /* every own revision of it is receipted by the server */
    unsigned char *content; /* the winner's content bytes, owned; NULL unless LIVE */
    size_t content_len;
    /* The hash the winner's entry names for its content. Every content in a
     * store was parsed strictly before it was stored (written here from a
     * checked record, or checked on arrival by pull), so bytes that still
     * hash to it are those checked bytes. */
    int has_content_hash;
    unsigned char content_hash[PROTO_HASH_BYTES];
    unsigned char *conflict_revs; /* n_conflict_revs hashes, best first; owned */
    size_t n_conflict_revs;
};
void store_record_release(struct store_record *r);

/* Resolves a unique id prefix (at least 4 characters) to a full id.
 * FS_ENOTFOUND, or FS_ECONFLICT when several ids start with it. */
FS_WUR enum fs_rc store_record_find(struct store *s, const char *prefix,
                                    char id[PROTO_UUID_LEN + 1] /* OUT */, struct fs_err *err);
FS_WUR enum fs_rc store_record_get(struct store *s, const char *id,
                                   struct store_record *r /* OUT */, struct fs_err *err);

struct store_filter {
    const char *kind; /* NULL: any */
    int has_since;    /* observed_at (UTC) at or after since_ms */
    int64_t since_ms;
    int unsynced;     /* only records with own revisions the server lacks */
    int conflicts;    /* only records with conflicts or contested roots */
    int with_deleted; /* include tombstones */
};

/* Calls cb for each record matching f, ordered by id (creation time). A
 * non-zero return from cb stops the walk and is returned as FS_EINTERNAL. */
typedef int (*store_record_cb)(void *ctx, const struct store_record *r);
FS_WUR enum fs_rc store_records_each(struct store *s, const struct store_filter *f,
                                     store_record_cb cb, void *ctx, struct fs_err *err);

/* One revision of a record, with its state in the merge. */
struct store_rev {
    struct proto_rev rev;
    enum proto_rev_state state;
    uint64_t seq;
    char at[PROTO_TIME_MAX_LEN];
    int is_winner, is_conflict;
};
typedef int (*store_rev_cb)(void *ctx, const struct store_rev *r);
/* Every revision of record id, highest gen first. */
FS_WUR enum fs_rc store_record_revisions(struct store *s, const char *id, store_rev_cb cb,
                                         void *ctx, struct fs_err *err);

struct store_status {
    uint64_t local_seq;       /* entries in the own feed */
    uint64_t server_have_seq; /* the latest receipt's have_seq, 0 when none */
    uint64_t pending_entries; /* own entries no receipt covers */
    uint64_t records, deleted, conflicts;
    uint64_t pending_blob_bytes; /* attachments the server does not hold yet */
    uint64_t pending_blobs;
};
FS_WUR enum fs_rc store_status_get(struct store *s, struct store_status *st /* OUT */,
                                   struct fs_err *err);

/* ---- imports -------------------------------------------------------------------- */

/* Whether a file with this hash was imported before. */
FS_WUR enum fs_rc store_import_seen(struct store *s, const unsigned char hash[PROTO_HASH_BYTES],
                                    int *seen /* OUT */, struct fs_err *err);
/* Remembers an import (inside the import's transaction). */
FS_WUR enum fs_rc store_import_mark(struct store *s, const unsigned char hash[PROTO_HASH_BYTES],
                                    const char *name, uint64_t count, struct fs_err *err);
/* For an import row with an id: *exists when a record with this id is
 * stored, *same when one of its revisions has exactly this content. */
FS_WUR enum fs_rc store_record_has_content(struct store *s, const char *id,
                                           const unsigned char content_hash[PROTO_HASH_BYTES],
                                           int *exists /* OUT */, int *same /* OUT */,
                                           struct fs_err *err);

/* ---- verification ---------------------------------------------------------------- */

/* Re-checks the database (PRAGMA integrity_check), then every feed's chain,
 * every signature and every content hash, and that the records view matches a
 * fresh merge. Each problem is reported through cb as one line naming feed
 * and seq. *problems counts them; FS_OK even when problems were found. */
typedef void (*store_problem_cb)(void *ctx, const char *line);
FS_WUR enum fs_rc store_verify(struct store *s, store_problem_cb cb, void *ctx,
                               uint64_t *problems /* OUT */, uint64_t *entries /* OUT */,
                               struct fs_err *err);

/* ---- sync state ------------------------------------------------------------------ */

/* One stored entry; pointers valid during the callback only. */
struct store_entry_row {
    uint64_t seq;
    const unsigned char *hash; /* PROTO_HASH_BYTES */
    const unsigned char *entry;
    size_t entry_len;
    const unsigned char *sig; /* PROTO_SIG_BYTES */
    const unsigned char *content;
    size_t content_len;
    const unsigned char *content_hash; /* PROTO_HASH_BYTES, as indexed; NULL without content */
};
typedef int (*store_entry_cb)(void *ctx, const struct store_entry_row *e);

/* Calls cb for feed's entries with from <= seq <= to, in seq order; a
 * non-zero return stops the walk (FS_OK is still returned). */
FS_WUR enum fs_rc store_feed_entries(struct store *s, const unsigned char feed[PROTO_KEY_BYTES],
                                     uint64_t from, uint64_t to, store_entry_cb cb, void *ctx,
                                     struct fs_err *err);

/* The best receipt the server signed for feed (have_seq 0 when none). */
struct store_receipt {
    uint64_t have_seq;
    int has_head;
    unsigned char head[PROTO_HASH_BYTES];
    char *text; /* the signed receipt as received, owned; NULL when none */
    char at[PROTO_TIME_MAX_LEN];
};
FS_WUR enum fs_rc store_receipt_get(struct store *s, const unsigned char feed[PROTO_KEY_BYTES],
                                    struct store_receipt *out /* OUT */, struct fs_err *err);
void store_receipt_release(struct store_receipt *r);
/* Keeps a verified receipt if it covers at least as much as the one held:
 * what a receipt covered is never forgotten because a server later reports
 * less (a restore from backup). */
FS_WUR enum fs_rc store_receipt_put(struct store *s, const unsigned char feed[PROTO_KEY_BYTES],
                                    uint64_t have_seq, const unsigned char *head, const char *text,
                                    struct fs_err *err);
/* ---- other feeds (a coordinator's pull, corrections) ------------------------------- */

#define STORE_FEED_PARTIAL 0x1u /* only some entries are held (corrections) */

struct store_feed_info {
    int known;
    uint64_t have_seq; /* highest contiguous seq held from 1 */
    int has_head;
    unsigned char head[PROTO_HASH_BYTES];
    unsigned flags;
    int coordinator;
};
FS_WUR enum fs_rc store_feed_info(struct store *s, const unsigned char feed[PROTO_KEY_BYTES],
                                  struct store_feed_info *out /* OUT */, struct fs_err *err);
/* This device's heartbeat line (proto_heartbeat_line): its feed's last seq
 * and head, checked against the entry held there (FS_ECORRUPT if they differ),
 * signed now. */
FS_WUR enum fs_rc store_heartbeat(struct store *s, char *line /* PROTO_HEARTBEAT_LINE_LEN + 1 */,
                                  struct fs_err *err);
/* Adds another feed, or updates its name and role (name may be NULL). */
FS_WUR enum fs_rc store_feed_upsert(struct store *s, const unsigned char feed[PROTO_KEY_BYTES],
                                    const char *name, int coordinator, unsigned set_flags,
                                    struct fs_err *err);

/* One entry verified by the caller (signature, content hash, feed). */
struct store_new_entry {
    const struct proto_entry *parsed;
    const unsigned char *hash;
    const unsigned char *entry;
    size_t entry_len;
    const unsigned char *sig;
    const unsigned char *content;
    size_t content_len;
    /* content, already parsed by the caller (strictly), or NULL: saves a
     * parse on the single thread that stores */
    const struct proto_content *content_parsed;
};

/* Appends a contiguous run of another feed's verified entries in one
 * transaction: the first must follow the held head (entries already held
 * must be identical), each must chain onto the one before. The records view
 * follows. FS_EPROTO names feed and seq when something does not fit. */
FS_WUR enum fs_rc store_feed_append(struct store *s, const unsigned char feed[PROTO_KEY_BYTES],
                                    const struct store_new_entry *es, size_t n, struct fs_err *err);
/* Keeps single verified entries of a feed held in part (corrections), in
 * one transaction; an entry already held must be identical. */
FS_WUR enum fs_rc store_feed_add_sparse(struct store *s, const unsigned char feed[PROTO_KEY_BYTES],
                                        const struct store_new_entry *es, size_t n,
                                        struct fs_err *err);

/* ---- attachments (blobs) ------------------------------------------------------------ */

#define STORE_BLOB_MAX_BYTES (2ull << 30) /* default per-blob cap, as the server's */

/* Streams the file at path into the store's blob folder in constant memory,
 * content-addressed by BLAKE2b-256; fsynced and renamed before this returns,
 * so a revision that references it may commit. Fills att (name from the
 * path, hash, size, a media type from the extension); caller releases its
 * strings (free). Identical files are stored once. */
FS_WUR enum fs_rc store_blob_import(struct store *s, const char *path,
                                    struct proto_attachment *att /* OUT */, struct fs_err *err);
/* The path of a blob's file in the store (which may not exist). */
void store_blob_path(const struct store *s, const unsigned char hash[PROTO_HASH_BYTES], char *out,
                     size_t cap);

struct store_blob {
    unsigned char hash[PROTO_HASH_BYTES];
    uint64_t size;
    int uploaded, local;
};
typedef int (*store_blob_cb)(void *ctx, const struct store_blob *b);
/* Blobs of this device's records the server does not hold yet. */
FS_WUR enum fs_rc store_blobs_pending(struct store *s, store_blob_cb cb, void *ctx,
                                      uint64_t *bytes /* OUT, may be NULL */, struct fs_err *err);
/* Blobs referenced by records here whose file is not here (to download). */
FS_WUR enum fs_rc store_blobs_missing(struct store *s, store_blob_cb cb, void *ctx,
                                      struct fs_err *err);
/* The server confirmed it holds the blob durably. */
FS_WUR enum fs_rc store_blob_uploaded(struct store *s, const unsigned char hash[PROTO_HASH_BYTES],
                                      struct fs_err *err);
/* Moves a downloaded, verified file into the blob folder. */
FS_WUR enum fs_rc store_blob_adopt(struct store *s, const unsigned char hash[PROTO_HASH_BYTES],
                                   const char *tmp_path, struct fs_err *err);
/* Frees local copies of blobs the server holds durably. */
FS_WUR enum fs_rc store_blobs_gc(struct store *s, uint64_t *files, uint64_t *bytes,
                                 struct fs_err *err);
/* The folder for partial downloads and imports (created on demand). */
FS_WUR enum fs_rc store_blob_tmpdir(struct store *s, char *out, size_t cap, struct fs_err *err);

/* Sets this device's role ("researcher" or "coordinator") after enrollment. */
FS_WUR enum fs_rc store_self_role_set(struct store *s, const char *role, struct fs_err *err);

#endif
