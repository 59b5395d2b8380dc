/* The server's process state: backend, key, database handle pool. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto_auth.h"
#include "srv.h"

int64_t
srv_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const struct srv_db_ops *
srv_db_backend(const char *where, struct fs_err *err)
{
    if (strncmp(where, "postgresql://", 13) == 0 || strncmp(where, "postgres://", 11) == 0) {
        fs_err_set(err, FS_EUSAGE, "this fieldsync-server was built without PostgreSQL support");
        return NULL;
    }
    return &srv_db_sqlite_ops;
}

int
srv_project_valid(const char *s)
{
    size_t i, n = strlen(s);

    if (n == 0 || n > SRV_PROJECT_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i && (c == '-' || c == '_'))))
            return 0;
    }
    return 1;
}

const char *
srv_role_name(enum srv_role r)
{
    return r == SRV_ROLE_COORDINATOR ? "coordinator" : "researcher";
}

int
srv_role_parse(const char *s, enum srv_role *out)
{
    if (strcmp(s, "researcher") == 0)
        *out = SRV_ROLE_RESEARCHER;
    else if (strcmp(s, "coordinator") == 0)
        *out = SRV_ROLE_COORDINATOR;
    else
        return -1;
    return 0;
}

enum fs_rc
srv_open(struct srv *s, struct fs_err *err)
{
    struct srv_db *db = NULL;
    unsigned char *seed = NULL;
    enum fs_rc rc;

    s->ops = srv_db_backend(s->cfg.where, err);
    if (!s->ops)
        return FS_EUSAGE;
    pthread_mutex_init(&s->pool_lock, NULL);
    rc = s->ops->open(s->cfg.where, 0, &db, err);
    if (rc)
        return rc;
    seed = sodium_malloc(PROTO_SEED_BYTES);
    s->sk = sodium_malloc(PROTO_SECRET_BYTES);
    if (!seed || !s->sk) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto out;
    }
    rc = s->ops->key_load(db, seed, err);
    if (rc)
        goto out;
    proto_keypair_from_seed(seed, s->pk, s->sk);
    proto_hex_encode(s->pk, PROTO_KEY_BYTES, s->pk_hex);
    srv_db_put(s, db);
    db = NULL;
out:
    if (seed)
        sodium_free(seed);
    if (db)
        s->ops->close(db);
    return rc;
}

void
srv_close(struct srv *s)
{
    size_t i;

    for (i = 0; i < s->pool_n; i++)
        s->ops->close(s->pool[i]);
    s->pool_n = 0;
    if (s->sk)
        sodium_free(s->sk);
    s->sk = NULL;
    if (s->ops)
        pthread_mutex_destroy(&s->pool_lock);
}

enum fs_rc
srv_db_get(struct srv *s, struct srv_db **out, struct fs_err *err)
{
    pthread_mutex_lock(&s->pool_lock);
    if (s->pool_n) {
        *out = s->pool[--s->pool_n];
        pthread_mutex_unlock(&s->pool_lock);
        return FS_OK;
    }
    pthread_mutex_unlock(&s->pool_lock);
    return s->ops->open(s->cfg.where, 0, out, err);
}

void
srv_db_put(struct srv *s, struct srv_db *db)
{
    pthread_mutex_lock(&s->pool_lock);
    if (s->pool_n < FS_ARRAY_LEN(s->pool)) {
        s->pool[s->pool_n++] = db;
        db = NULL;
    }
    pthread_mutex_unlock(&s->pool_lock);
    if (db)
        s->ops->close(db);
}

enum fs_rc
srv_heartbeat_record(const struct srv_db_ops *ops, struct srv_db *db,
                     const struct proto_heartbeat *hb, int64_t now_ms, struct srv_feed *f,
                     struct fs_err *err)
{
    unsigned char held[PROTO_HASH_BYTES];
    enum fs_rc rc;

    rc = ops->feed_get(db, hb->feed, f, err);
    if (rc == FS_ENOTFOUND)
        return fs_err_set(err, FS_ENOTFOUND, "the heartbeat's device is not enrolled here");
    if (rc)
        return rc;
    /* A revoked device's word is not taken: past accept_through it could
     * claim anything. */
    if (f->revoked)
        return fs_err_set(err, FS_EAUTH, "the heartbeat's device was revoked by the project");
    if (hb->seq && hb->seq <= f->have_seq) {
        /* Entries are append-only: what is held at seq is settled. */
        rc = ops->entry_hash(db, hb->feed, hb->seq, held, err);
        if (rc)
            return rc == FS_ENOTFOUND ? fs_err_set(err, FS_ECORRUPT,
                                                   "entry %llu of a feed is missing below its head",
                                                   (unsigned long long)hb->seq)
                                      : rc;
        if (sodium_memcmp(held, hb->head, PROTO_HASH_BYTES) != 0) {
            rc = ops->feed_flag_fork(db, hb->feed, hb->seq, now_ms, err);
            if (rc)
                return rc;
            return fs_err_set(err, FS_ECONFLICT,
                              "the heartbeat names another entry %llu than the one the server"
                              " holds: that store was copied or restored; it must get a new key",
                              (unsigned long long)hb->seq);
        }
    }
    rc = ops->feed_attest(db, hb->feed, hb->seq, hb->at_ms, now_ms, err);
    return rc == FS_ENOTFOUND ? FS_OK : rc; /* no news: an older or repeated heartbeat */
}
