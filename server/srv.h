/*
 * fs_server: the central server's core, shared by the HTTP side (srv_http.c),
 * the API handlers (srv_api.c) and the admin commands (srv_main.c). One
 * struct srv per process; its fields are read-only once serving starts, except
 * the metrics (atomic) and the database pool (locked).
 * Dependency rule: server/ includes protocol/ and base/ only.
 */
#ifndef SRV_H
#define SRV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "fs_log.h"
#include "proto.h"
#include "srv_db.h"

#define SRV_DEFAULT_THREADS     16 /* mostly waiting: on the network or on a group commit */
#define SRV_DEFAULT_MAX_CONNS   512
#define SRV_DEFAULT_MAX_PER_IP  64
#define SRV_DEFAULT_IDLE_S      30
#define SRV_DEFAULT_DEADLINE_MS 120000
#define SRV_CONN_MEMORY         (128u * 1024)
#define SRV_INFLIGHT_BUDGET     (256u << 20) /* request bodies held at once */
#define SRV_JSON_BODY_MAX       (64u * 1024) /* enroll and other small bodies */
#define SRV_BLOB_CHUNK_MAX      (32u << 20)  /* one PATCH of a blob, streamed to disk */
#define SRV_BLOB_MAX_DEFAULT    (2ull << 30) /* per-blob cap, --blob-max-bytes */

struct srv_config {
    const char *where; /* data folder or database URL */
    char listen_host[64];
    unsigned listen_port;
    int listen_fd; /* from systemd (LISTEN_FDS), or -1 */
    char metrics_host[64];
    unsigned metrics_port; /* 0: no metrics endpoint */
    const char *tls_cert, *tls_key;
    const char *ready_file; /* written with "HOST:PORT" once listening (tests) */
    unsigned threads, max_conns, max_per_ip, idle_s;
    unsigned deadline_ms;
    size_t max_batch;
    const char *trusted_proxies[8];
    size_t n_trusted_proxies;
    uint64_t blob_max;
};

/* Counters for /metrics. */
enum srv_refusal {
    SRV_REF_MALFORMED,
    SRV_REF_TOO_BIG,
    SRV_REF_UNKNOWN_FEED,
    SRV_REF_REVOKED,
    SRV_REF_BAD_SIGNATURE,
    SRV_REF_GAP,
    SRV_REF_FORK,
    SRV_REF_AUTH,
    SRV_REF_CLOCK,
    SRV_REF_REPLAY,
    SRV_REF_ENCODING,
    SRV_REF_FORBIDDEN,
    SRV_REF_UNAVAILABLE,
    SRV_REF_BAD_ENTRY,
    SRV_REF_COUNT
};

struct srv_metrics {
    atomic_ullong requests;
    atomic_ullong pushes_applied;
    atomic_ullong pushes_held; /* replays answered from the header alone */
    atomic_ullong entries_stored;
    atomic_ullong inflates; /* payloads decompressed */
    atomic_ullong bytes_in;
    atomic_ullong deadline_cuts;
    atomic_ullong refused[SRV_REF_COUNT];
    atomic_ullong push_latency_bucket[8]; /* <=10,25,50,100,250,500,1000,+inf ms */
    atomic_ullong push_latency_sum_ms;
};

/* The group committer (srv_commit.c). */
struct srv_committer {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    struct srv_push_job *head, *tail;
    struct srv_db *db;
    int running, stopping;
    unsigned long long groups;
};

struct srv {
    struct srv_config cfg;
    const struct srv_db_ops *ops;
    unsigned char pk[PROTO_KEY_BYTES];
    unsigned char *sk; /* sodium_malloc'd */
    char pk_hex[2 * PROTO_KEY_BYTES + 1];
    struct fs_log log;
    struct srv_metrics m;
    /* A pool of database handles, one per request at a time. */
    pthread_mutex_t pool_lock;
    struct srv_db *pool[64];
    size_t pool_n;
    atomic_size_t inflight; /* body bytes held by requests */
    struct srv_committer commit;
};

/* Starts and stops the group committer (serving only). */
FS_WUR enum fs_rc srv_commit_start(struct srv *s, struct fs_err *err);
void srv_commit_stop(struct srv *s);
/* Applies a verified push: through the group committer when it runs, else
 * directly on db. Returns when the push is durable (or refused). */
FS_WUR enum fs_rc srv_commit_push(struct srv *s, struct srv_db *db,
                                  const unsigned char feed[PROTO_KEY_BYTES],
                                  const struct srv_entry *es, size_t n, int64_t now_ms,
                                  struct srv_push_result *res, struct fs_err *err);

/* Opens the backend for cfg.where and loads the server key. */
FS_WUR enum fs_rc srv_open(struct srv *s, struct fs_err *err);
void srv_close(struct srv *s);

/* Borrows a database handle for one request; give it back with srv_db_put. */
FS_WUR enum fs_rc srv_db_get(struct srv *s, struct srv_db **out, struct fs_err *err);
void srv_db_put(struct srv *s, struct srv_db *db);

int64_t srv_now_ms(void);

struct proto_heartbeat;
/* Records a heartbeat (already checked by proto_heartbeat_parse) for its
 * feed, for POST /v1/heartbeats and `fieldsync-server heartbeat`: FS_OK (f the
 * feed's row as it was before), FS_ENOTFOUND when the feed is not enrolled,
 * FS_EAUTH when it was revoked, FS_ECONFLICT when the heartbeat names another
 * entry than the one held at its seq (the feed is then flagged as forked). */
FS_WUR enum fs_rc srv_heartbeat_record(const struct srv_db_ops *ops, struct srv_db *db,
                                       const struct proto_heartbeat *hb, int64_t now_ms,
                                       struct srv_feed *f, struct fs_err *err);

/* Serves until SIGTERM or SIGINT (srv_http.c). */
FS_WUR enum fs_rc srv_serve(struct srv *s, struct fs_err *err);

/* A request as the API sees it (srv_api.c). */
struct srv_req {
    const char *method;
    const char *url;    /* path only */
    const char *target; /* path and query as sent, for request signatures */
    const unsigned char *body;
    size_t body_len;
    const char *authorization; /* header or NULL */
    const char *query_from, *query_limit, *query_since, *query_kind, *query_excel;
    const char *range; /* Range header, for blob downloads */
};

/* An answer: status, a JSON or binary body (owned), headers. */
struct srv_resp {
    unsigned status;
    struct fs_buf body;
    const char *content_type;
    char retry_after[16];
    char cursor[24]; /* X-Fieldsync-Cursor, for corrections */
    int64_t started_ms;
    int fd; /* >= 0: the body is fd_len bytes of this file from fd_off (closed after) */
    uint64_t fd_off, fd_len;
    struct {
        const char *name;
        char value[96];
    } hdr[4];
    size_t n_hdr;
};

/* Adds a header to an answer (at most four). */
void srv_resp_header(struct srv_resp *rs, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Checks a signed request (chunk: [offset, length] of a blob PATCH, or
 * NULL). On success *caller holds the requesting feed; otherwise the answer
 * is filled and -1 returned. */
int srv_authenticate(struct srv *s, struct srv_db *db, const struct srv_req *rq,
                     const uint64_t *chunk, struct srv_feed *caller, struct srv_resp *rs);
/* A storage failure as an answer: 503 with Retry-After for what may pass. */
void srv_storage_error(struct srv *s, struct srv_resp *rs, enum fs_rc rc, const struct fs_err *err);

/* Blobs (srv_blob.c). HEAD and GET of /v1/projects/{p}/blobs/{hash}. */
void srv_blob_read(struct srv *s, struct srv_db *db, const struct srv_req *rq,
                   const struct srv_feed *caller, const char *project, const char *hash_hex,
                   struct srv_resp *rs);
/* PATCH, streamed: begin with the headers (authenticated before a body byte
 * is read), data as it arrives, end when whole, abort when cut. */
struct srv_blob_up;
int srv_blob_patch_begin(struct srv *s, const struct srv_req *rq, const char *upload_offset,
                         uint64_t content_length, struct srv_blob_up **out, struct srv_resp *rs);
int srv_blob_patch_data(struct srv_blob_up *u, const void *p, size_t n);
void srv_blob_patch_end(struct srv_blob_up *u, struct srv_resp *rs);
void srv_blob_patch_abort(struct srv_blob_up *u);

/* Routes and handles one complete request. */
void srv_api_handle(struct srv *s, const struct srv_req *rq, struct srv_resp *rs);
/* Whether method and path name an endpoint, and the body limit it takes. */
int srv_api_route_known(const char *method, const char *url, size_t *max_body);
/* Fills a JSON error answer {"error","message"}; refusals are counted. */
void srv_resp_error(struct srv *s, struct srv_resp *rs, unsigned status, const char *code,
                    const char *message);
/* GET /v1/projects/{p}/records.{csv,jsonl,geojson} (srv_export.c); the
 * caller has checked that the requester coordinates p. */
void srv_export(struct srv *s, struct srv_db *db, const struct srv_req *rq, const char *project,
                const char *rest, struct srv_resp *rs);
/* Renders /metrics (Prometheus text). */
void srv_metrics_render(struct srv *s, struct fs_buf *out);

#endif
