/* Group commit: verified pushes from every HTTP worker queue here, and one
 * thread commits whatever has gathered in one transaction and one fsync, then
 * wakes each push with its own result. Many devices pushing small batches at
 * once then cost one durable commit per group instead of one per push, and
 * no writer waits in SQLite's busy handler. A push's answer still goes out
 * only after the commit that holds it. */
#include <string.h>

#include "srv.h"

#define GROUP_MAX_JOBS    64
#define GROUP_MAX_ENTRIES 100000

static void *
committer(void *arg)
{
    struct srv *s = arg;
    struct srv_committer *c = &s->commit;
    struct srv_push_job *batch[GROUP_MAX_JOBS];
    struct srv_push_job jobs[GROUP_MAX_JOBS];
    struct fs_err err;
    size_t n, i, entries;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->head && !c->stopping)
            pthread_cond_wait(&c->work, &c->lock);
        if (!c->head && c->stopping)
            break;
        for (n = 0, entries = 0; c->head && n < GROUP_MAX_JOBS && entries < GROUP_MAX_ENTRIES;
             n++) {
            batch[n] = c->head;
            entries += c->head->n;
            c->head = c->head->next;
        }
        if (!c->head)
            c->tail = NULL;
        pthread_mutex_unlock(&c->lock);
        /* The backend works on a copy: the queued jobs stay the waiters'. */
        for (i = 0; i < n; i++)
            jobs[i] = *batch[i];
        if (s->ops->push_apply_group(c->db, jobs, n, &err) != FS_OK)
            FS_LOG(&s->log, FS_LOG_WARNING, "a group commit failed: %s", err.msg);
        pthread_mutex_lock(&c->lock);
        for (i = 0; i < n; i++) {
            batch[i]->res = jobs[i].res;
            batch[i]->rc = jobs[i].rc;
            batch[i]->err = jobs[i].err;
            batch[i]->done = 1;
        }
        c->groups++;
        pthread_cond_broadcast(&c->done);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

enum fs_rc
srv_commit_start(struct srv *s, struct fs_err *err)
{
    struct srv_committer *c = &s->commit;
    enum fs_rc rc;

    memset(c, 0, sizeof *c);
    if (!s->ops->push_apply_group)
        return FS_OK; /* a backend without groups: pushes commit one by one */
    rc = s->ops->open(s->cfg.where, 0, &c->db, err);
    if (rc)
        return rc;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->work, NULL);
    pthread_cond_init(&c->done, NULL);
    if (pthread_create(&c->thread, NULL, committer, s) != 0) {
        s->ops->close(c->db);
        c->db = NULL;
        return fs_err_set(err, FS_EINTERNAL, "cannot start the committer");
    }
    c->running = 1;
    return FS_OK;
}

void
srv_commit_stop(struct srv *s)
{
    struct srv_committer *c = &s->commit;

    if (!c->running)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_signal(&c->work);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->work);
    pthread_cond_destroy(&c->done);
    s->ops->close(c->db);
    c->db = NULL;
    c->running = 0;
}

enum fs_rc
srv_commit_push(struct srv *s, struct srv_db *db, const unsigned char feed[PROTO_KEY_BYTES],
                const struct srv_entry *es, size_t n, int64_t now_ms, struct srv_push_result *res,
                struct fs_err *err)
{
    struct srv_committer *c = &s->commit;
    struct srv_push_job job;

    if (!c->running)
        return s->ops->push_apply(db, feed, es, n, now_ms, res, err);
    memset(&job, 0, sizeof job);
    job.feed = feed;
    job.es = es;
    job.n = n;
    job.now_ms = now_ms;
    pthread_mutex_lock(&c->lock);
    if (c->tail)
        c->tail->next = &job;
    else
        c->head = &job;
    c->tail = &job;
    pthread_cond_signal(&c->work);
    while (!job.done)
        pthread_cond_wait(&c->done, &c->lock);
    pthread_mutex_unlock(&c->lock);
    *res = job.res;
    if (job.rc && err)
        *err = job.err;
    return job.rc;
}
