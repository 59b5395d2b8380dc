/*
 * fs_sync: moving data between a store and a server. An HTTP client on
 * libcurl (hardened: timeouts, a low-speed limit, capped answers, no
 * redirects, no compression negotiation, https only except plain http to a
 * loopback address), enrollment, and push with signed receipts.
 *
 * Results: FS_ENET when no connection could be made (exit 69), FS_EAGAIN when
 * the server said retry, the transfer was cut or the clock is wrong (75),
 * FS_EPROTO for a fork, a key mismatch or an answer that fails verification
 * (76), FS_EAUTH when not enrolled or revoked (77).
 * Dependency rule: sync/ includes agent/store, protocol/ and base/.
 */
#ifndef SYNC_H
#define SYNC_H

#include "proto_batch.h"
#include "store.h"

struct sync_http;

struct sync_http_opts {
    long connect_timeout_ms; /* default 10 s */
    long request_timeout_ms; /* default 10 min */
    long low_speed_bytes;    /* default 512 B/s ... */
    long low_speed_s;        /* ... over 30 s */
    size_t max_answer;       /* default PROTO_BATCH_MAX_BYTES + 1 MiB */
};

/* A client for base_url (scheme, host, port, optional path prefix). cacert
 * may be NULL. Requests are signed with store's key when asked to. */
FS_WUR enum fs_rc sync_http_new(const char *base_url, const char *cacert,
                                const struct sync_http_opts *opts, struct sync_http **out,
                                struct fs_err *err);
void sync_http_free(struct sync_http *h);
/* Pins the server key used for request signatures and answers. */
void sync_http_pin(struct sync_http *h, const unsigned char server_pk[PROTO_KEY_BYTES]);
/* Sets the device key used for signed requests (borrowed). */
void sync_http_signer(struct sync_http *h, const unsigned char feed[PROTO_KEY_BYTES],
                      const unsigned char *sk);
/* Seconds to add to this laptop's clock when signing requests. */
void sync_http_clock_offset(struct sync_http *h, int64_t offset_s);
int64_t sync_http_clock_offset_get(const struct sync_http *h);

struct sync_resp {
    long status;
    const unsigned char *body; /* valid until the next request */
    size_t len;
    long retry_after_s;      /* -1 when absent */
    const char *cursor;      /* X-Fieldsync-Cursor, or NULL */
    long long upload_offset; /* Upload-Offset, -1 when absent */
    int complete;            /* X-Fieldsync-Complete: 1 */
};

/* Bytes done so far of a streamed transfer. */
typedef void (*sync_bytes_cb)(void *ctx, uint64_t done);

/* PATCH one blob chunk: length bytes of fd from offset, streamed (never held
 * in memory), signed over offset and length. */
FS_WUR enum fs_rc sync_http_patch_chunk(struct sync_http *h, const char *target, int fd,
                                        uint64_t offset, uint64_t length, sync_bytes_cb progress,
                                        void *pctx, struct sync_resp *out, struct fs_err *err);
/* GET a blob from byte from onward (Range), appending to fd as it arrives. */
FS_WUR enum fs_rc sync_http_download(struct sync_http *h, const char *target, int fd, uint64_t from,
                                     sync_bytes_cb progress, void *pctx, struct sync_resp *out,
                                     struct fs_err *err);

/* One request. sign: add the Authorization header (a pinned key and a signer
 * are needed). A 401 "clock" answer makes the client correct its offset from
 * the server's time and try once more. */
FS_WUR enum fs_rc sync_http_request(struct sync_http *h, const char *method, const char *target,
                                    const void *body, size_t body_len, int sign,
                                    struct sync_resp *out, struct fs_err *err);
/* Whether anything reached the server since the client was made. */
int sync_http_connected(const struct sync_http *h);

/* Whether url is acceptable: https, or http to a loopback address. */
FS_WUR enum fs_rc sync_url_check(const char *url, struct fs_err *err);

/* The "error" code and "message" of a JSON error answer (into caller
 * buffers), for messages to the user. */
void sync_error_text(const struct sync_resp *r, char *code, size_t code_len, char *msg,
                     size_t msg_len);

/* ---- enrollment ---------------------------------------------------------------- */

/* Enrolls the store with the server at url using token: checks the server's
 * key against the token's fingerprint before the token is sent, pins it,
 * stores server, project and role. Safe to repeat after a lost answer. */
FS_WUR enum fs_rc sync_enroll(struct store *s, const char *url, const char *token,
                              const char *cacert, struct fs_err *err);

/* ---- push ------------------------------------------------------------------------ */

typedef void (*sync_progress_cb)(void *ctx, uint64_t done, uint64_t total);

struct sync_push_result {
    uint64_t pushed;      /* entries the server newly stored or confirmed */
    uint64_t server_have; /* the last receipt's have_seq */
    int rolled_back;      /* the server reported less than it had receipted */
};

/* Pushes what the server lacks, in batches that adapt to the link, storing
 * each verified receipt. warn receives loud one-line warnings (may be NULL). */
FS_WUR enum fs_rc sync_push(struct store *s, struct sync_http *h, sync_progress_cb progress,
                            void *pctx, void (*warn)(void *ctx, const char *line),
                            struct sync_push_result *out, struct fs_err *err);

/* One batch of this store's own feed from `from` (to at most `to`), as large
 * as max_entries and max_bytes allow, each entry checked intact and linked to
 * the one before; appended to out and described by bh. Sealed to seal_to (a
 * server's key) when given: a bundle. */
FS_WUR enum fs_rc sync_own_batch(struct store *s, struct proto_batch_enc *enc,
                                 enum proto_purpose purpose, uint64_t from, uint64_t to,
                                 size_t max_entries, size_t max_bytes, const unsigned char *seal_to,
                                 struct fs_buf *out, struct proto_batch_header *bh,
                                 struct fs_err *err);
/* A positive integer setting, or def. */
size_t sync_setting_size(struct store *s, const char *key, size_t def);
/* A server-signed head or receipt (tag), checked against server_pk and about
 * feed: its have_seq and head. */
FS_WUR enum fs_rc sync_open_state(const char *tag, const struct sync_resp *r,
                                  const unsigned char server_pk[PROTO_KEY_BYTES],
                                  const unsigned char feed[PROTO_KEY_BYTES], uint64_t *have,
                                  int *has_head, unsigned char head[PROTO_HASH_BYTES],
                                  struct fs_err *err);
/* A push's answer: the signed receipt (sync_open_state) must cover the batch,
 * which ended at seq to. */
FS_WUR enum fs_rc sync_open_receipt(const struct sync_resp *r,
                                    const unsigned char server_pk[PROTO_KEY_BYTES],
                                    const unsigned char feed[PROTO_KEY_BYTES], uint64_t to,
                                    uint64_t *have, int *has_head,
                                    unsigned char head[PROTO_HASH_BYTES], struct fs_err *err);

/* ---- bundles: a push carried by hand --------------------------------------------- */

struct sync_bundle_result {
    uint64_t from, to;  /* the entries it holds (none when to < from) */
    uint64_t envelopes; /* batches in the file */
    uint64_t bytes;
};

/* Writes to path (whole or not at all: a temporary file, fsynced, renamed)
 * the entries the server's last receipt does not cover (all of them with
 * all), as bundles sealed to the pinned server key, one after another.
 * Nothing is written when there is nothing to send. FS_EAUTH when the store
 * is not enrolled. */
FS_WUR enum fs_rc sync_bundle_write(struct store *s, const char *path, int all,
                                    struct sync_bundle_result *out, struct fs_err *err);

struct sync_relay_result {
    unsigned char feed[PROTO_KEY_BYTES]; /* whose entries they were */
    uint64_t envelopes, stored;          /* batches sent; entries new to the server */
    uint64_t server_have;                /* what the server holds of that feed after */
};

/* Carries a bundle file (anyone's) to the server: each batch checked here
 * first (lengths, signature, header: a bundle or push signed by its feed),
 * then posted as that feed's push; every receipt checked against the pinned
 * server key. FS_EINVAL for a file that is not a bundle or that the server
 * refuses as such, FS_EAUTH for a device it does not know or revoked,
 * FS_EPROTO for a fork. */
FS_WUR enum fs_rc sync_relay(struct store *s, struct sync_http *h, const char *path,
                             struct sync_relay_result *out, struct fs_err *err);

/* ---- pull and corrections ---------------------------------------------------------- */

struct sync_pull_result {
    uint64_t feeds;   /* feeds in the project's listing */
    uint64_t fetched; /* entries fetched and verified by this run */
    uint64_t held;    /* entries of other feeds held after it */
};

/* A coordinator replicates the whole project: the signed listing, then for
 * each feed exactly the entries it lacks, every signature, content hash and
 * chain checked here, merged with the same code as the server. Resumes where
 * an interrupted run stopped. FS_EAUTH for a researcher. */
FS_WUR enum fs_rc sync_pull(struct store *s, struct sync_http *h, sync_progress_cb progress,
                            void *pctx, struct sync_pull_result *out, struct fs_err *err);

/* Fetches coordinators' revisions of records this device owns and folds them
 * into the local view (part of a researcher's sync). *got counts entries. */
FS_WUR enum fs_rc sync_corrections(struct store *s, struct sync_http *h, uint64_t *got,
                                   struct fs_err *err);

/* The project's signed feeds listing, verified; caller json_decref()s. */
FS_WUR enum fs_rc sync_feeds_listing(struct store *s, struct sync_http *h, void **listing,
                                     struct fs_err *err);

/* ---- attachments -------------------------------------------------------------------- */

struct sync_blob_progress {
    sync_bytes_cb cb; /* bytes done of all of this run's blobs */
    void *ctx;
    uint64_t total; /* filled before the first byte moves */
};

/* Uploads this device's attachments the server lacks: resumes from the
 * durable offset, chunks that shrink after a cut and grow after successes.
 * *done counts blobs the server now holds. */
FS_WUR enum fs_rc sync_blobs_upload(struct store *s, struct sync_http *h,
                                    struct sync_blob_progress *p, uint64_t *done,
                                    struct fs_err *err);
/* Downloads the attachments of records here whose files are not here, with
 * Range resume, each checked against its hash before it is kept. */
FS_WUR enum fs_rc sync_blobs_download(struct store *s, struct sync_http *h,
                                      struct sync_blob_progress *p, uint64_t *done,
                                      struct fs_err *err);

/* ---- one sync run: what `fieldsync sync` and the daemon both do ---------------------- */

struct sync_run_opts {
    sync_progress_cb progress; /* entries */
    sync_bytes_cb bytes;       /* attachment bytes; total in blobs.total */
    void *ctx;
    void (*warn)(void *ctx, const char *line);
    struct sync_blob_progress blobs;
};

struct sync_run_result {
    struct sync_push_result push;
    uint64_t corrections; /* coordinators' revisions folded in */
    uint64_t blobs;       /* attachments the server now holds whole */
};

/* Push entries, fetch corrections, upload attachments. FS_OK only when the
 * server holds every entry and every attachment of this device durably. */
FS_WUR enum fs_rc sync_run(struct store *s, struct sync_http *h, struct sync_run_opts *o,
                           struct sync_run_result *out, struct fs_err *err);

/* Opens a client for the store's server with its pinned key and signer;
 * FS_EAUTH when the store is not enrolled. */
FS_WUR enum fs_rc sync_http_for_store(struct store *s, struct sync_http **out, struct fs_err *err);

#endif
