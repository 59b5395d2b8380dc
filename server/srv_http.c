/* The HTTP side of the server on libmicrohttpd: limits before work, bodies
 * bounded while they arrive, a total deadline per request enforced by a
 * watchdog (MHD's own timeout only counts inactivity), /metrics on its own
 * address, and shutdown on SIGTERM. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "srv.h"

/* One tracked connection, for the deadline. */
struct conn {
    int fd;
    int64_t since_ms; /* connection start, or the end of its last request */
    int cut;
    struct conn *prev, *next;
};

/* One request in flight (MHD's con_cls), made by the URI log callback. */
struct rq_state {
    char *uri;                /* path and query as sent */
    struct srv_blob_up *blob; /* a PATCH being streamed to disk */
    struct fs_buf body;
    size_t max_body;
    size_t reserved; /* bytes of the in-flight budget held */
    int started;
    int64_t started_ms;
};

struct http {
    struct srv *s;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct conn *conns;
    int stopping;
};

static struct http http_state;

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libmicrohttpd's own messages: fmt is its printf format. */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct srv *s = cls;
    char line[512];

    if (!s->log.fn || s->log.level < FS_LOG_DEBUG)
        return;
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = 0;
    FS_LOG(&s->log, FS_LOG_DEBUG, "http: %s", line);
}

static void
notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                  enum MHD_ConnectionNotificationCode toe)
{
    struct http *h = cls;
    struct conn *k;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

        k = calloc(1, sizeof *k);
        if (!k)
            return;
        k->fd = ci ? ci->connect_fd : -1;
        k->since_ms = mono_ms();
        pthread_mutex_lock(&h->lock);
        k->next = h->conns;
        if (h->conns)
            h->conns->prev = k;
        h->conns = k;
        pthread_mutex_unlock(&h->lock);
        *socket_context = k;
        return;
    }
    /* CLOSED: MHD closes the socket after this returns, so the watchdog never
     * touches a descriptor that could have been reused. */
    k = *socket_context;
    if (!k)
        return;
    pthread_mutex_lock(&h->lock);
    if (k->prev)
        k->prev->next = k->next;
    else
        h->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    pthread_mutex_unlock(&h->lock);
    free(k);
    *socket_context = NULL;
}

static void *
watchdog(void *arg)
{
    struct http *h = arg;
    struct timespec ts;

    pthread_mutex_lock(&h->lock);
    while (!h->stopping) {
        int64_t now = mono_ms();
        struct conn *k;

        for (k = h->conns; k; k = k->next) {
            if (!k->cut && k->fd >= 0 && now - k->since_ms > (int64_t)h->s->cfg.deadline_ms) {
                /* Counted before the cut: whoever sees the connection close
                 * then sees it counted. */
                atomic_fetch_add(&h->s->m.deadline_cuts, 1);
                k->cut = 1;
                shutdown(k->fd, SHUT_RDWR);
                FS_LOG(&h->s->log, FS_LOG_INFO, "cut a request past its %u ms deadline",
                       h->s->cfg.deadline_ms);
            }
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->wake, &h->lock, &ts);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static void *
uri_log(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct rq_state *st = calloc(1, sizeof *st);

    (void)cls;
    (void)c;
    if (!st)
        return NULL;
    st->uri = strdup(uri);
    st->started_ms = srv_now_ms();
    fs_buf_init(&st->body, 0);
    return st;
}

static void
request_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                  enum MHD_RequestTerminationCode toe)
{
    struct http *h = cls;
    struct rq_state *st = *con_cls;
    const union MHD_ConnectionInfo *ci;

    (void)toe;
    if (st) {
        if (st->blob)
            srv_blob_patch_abort(st->blob); /* cut: keep what arrived, durably */
        if (st->reserved)
            atomic_fetch_sub(&h->s->inflight, st->reserved);
        fs_buf_release(&st->body);
        free(st->uri);
        free(st);
        *con_cls = NULL;
    }
    /* A kept-alive connection's next request gets a full deadline. */
    ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context) {
        struct conn *k = ci->socket_context;

        pthread_mutex_lock(&h->lock);
        k->since_ms = mono_ms();
        pthread_mutex_unlock(&h->lock);
    }
}

static enum MHD_Result
send_resp(struct MHD_Connection *c, struct srv_resp *rs)
{
    struct MHD_Response *r;
    enum MHD_Result ret;
    size_t i;

    if (rs->fd >= 0) {
        /* A blob, sent from its file: memory does not grow with its size. */
        r = MHD_create_response_from_fd_at_offset64(rs->fd_len, rs->fd, rs->fd_off);
        if (!r)
            close(rs->fd);
        rs->fd = -1;
    } else {
        r = MHD_create_response_from_buffer(rs->body.len, rs->body.data, MHD_RESPMEM_MUST_COPY);
    }
    if (!r)
        return MHD_NO;
    for (i = 0; i < rs->n_hdr; i++)
        MHD_add_response_header(r, rs->hdr[i].name, rs->hdr[i].value);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            rs->content_type ? rs->content_type : "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (rs->retry_after[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, rs->retry_after);
    if (rs->cursor[0])
        MHD_add_response_header(r, "X-Fieldsync-Cursor", rs->cursor);
    ret = MHD_queue_response(c, rs->status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result
refuse_now(struct srv *s, struct MHD_Connection *c, unsigned status, const char *code,
           const char *msg, const char *retry_after)
{
    struct srv_resp rs;
    enum MHD_Result ret;

    memset(&rs, 0, sizeof rs);
    rs.fd = -1;
    fs_buf_init(&rs.body, 4096);
    srv_resp_error(s, &rs, status, code, msg);
    if (retry_after)
        snprintf(rs.retry_after, sizeof rs.retry_after, "%s", retry_after);
    ret = send_resp(c, &rs);
    fs_buf_release(&rs.body);
    return ret;
}

/* A strict decimal Content-Length; -1 when malformed. */
static int64_t
content_length(const char *v)
{
    int64_t n = 0;

    if (!v || !*v)
        return -1;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || n > INT64_MAX / 10 - 10)
            return -1;
        n = n * 10 + (*v - '0');
    }
    return n;
}

static void
observe_latency(struct srv *s, int64_t ms)
{
    static const int64_t bounds[] = {10, 25, 50, 100, 250, 500, 1000};
    size_t i;

    for (i = 0; i < FS_ARRAY_LEN(bounds) && ms > bounds[i]; i++)
        ;
    atomic_fetch_add(&s->m.push_latency_bucket[i], 1);
    atomic_fetch_add(&s->m.push_latency_sum_ms, (unsigned long long)(ms < 0 ? 0 : ms));
}

static enum MHD_Result
access_cb(void *cls, struct MHD_Connection *c, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    struct http *h = cls;
    struct srv *s = h->s;
    struct rq_state *st = *con_cls;
    struct srv_req rq;
    struct srv_resp rs;
    enum MHD_Result ret;

    (void)version;
    if (!st)
        return MHD_NO;
    if (!st->started) {
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        const char *te =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        int64_t n = cl ? content_length(cl) : 0;

        int route;

        st->started = 1;
        route = srv_api_route_known(method, url, &st->max_body);
        if (!route)
            return refuse_now(s, c, 404, "not_found", "no such endpoint", NULL);
        if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_ENCODING))
            return refuse_now(s, c, 415, "encoding",
                              "Content-Encoding is not accepted; batches are compressed inside",
                              NULL);
        if (n < 0)
            return refuse_now(s, c, 400, "malformed", "Content-Length is malformed", NULL);
        /* Refused before a single body byte is read. */
        if ((uint64_t)n > st->max_body)
            return refuse_now(s, c, 413, "too_big", "the request body is over the limit", NULL);
        if (route == 2) {
            /* A blob chunk: authenticated and checked from its headers alone,
             * then streamed to disk as it arrives. */
            memset(&rq, 0, sizeof rq);
            memset(&rs, 0, sizeof rs);
            rs.fd = -1;
            fs_buf_init(&rs.body, 4096);
            if (!cl)
                return refuse_now(s, c, 411, "malformed", "a blob chunk needs a Content-Length",
                                  NULL);
            rq.method = method;
            rq.url = url;
            rq.target = st->uri ? st->uri : url;
            rq.authorization =
                MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
            if (srv_blob_patch_begin(
                    s, &rq, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Upload-Offset"),
                    (uint64_t)n, &st->blob, &rs) == 0) {
                fs_buf_release(&rs.body);
                return MHD_YES;
            }
            ret = send_resp(c, &rs);
            fs_buf_release(&rs.body);
            return ret;
        }
        if (!cl && te && st->max_body == 0)
            return refuse_now(s, c, 413, "too_big", "this endpoint takes no body", NULL);
        st->reserved = cl ? (size_t)n : st->max_body;
        if (atomic_fetch_add(&s->inflight, st->reserved) + st->reserved > SRV_INFLIGHT_BUDGET) {
            atomic_fetch_sub(&s->inflight, st->reserved);
            st->reserved = 0;
            return refuse_now(s, c, 503, "unavailable", "the server is busy; retry later", "5");
        }
        fs_buf_init(&st->body, st->max_body);
        return MHD_YES;
    }
    if (*upload_data_size && st->blob) {
        atomic_fetch_add(&s->m.bytes_in, *upload_data_size);
        if (srv_blob_patch_data(st->blob, upload_data, *upload_data_size))
            return MHD_NO; /* cut; request_completed keeps what arrived */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (st->blob) {
        memset(&rs, 0, sizeof rs);
        rs.fd = -1;
        fs_buf_init(&rs.body, 4096);
        srv_blob_patch_end(st->blob, &rs);
        st->blob = NULL;
        ret = send_resp(c, &rs);
        fs_buf_release(&rs.body);
        return ret;
    }
    if (*upload_data_size) {
        atomic_fetch_add(&s->m.bytes_in, *upload_data_size);
        /* Counted as it comes: a chunked body past the limit is cut. */
        if (fs_buf_add(&st->body, upload_data, *upload_data_size)) {
            FS_LOG(&s->log, FS_LOG_INFO, "cut a request body over %zu bytes", st->max_body);
            atomic_fetch_add(&s->m.refused[SRV_REF_TOO_BIG], 1);
            return MHD_NO;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    memset(&rq, 0, sizeof rq);
    memset(&rs, 0, sizeof rs);
    rq.method = method;
    rq.url = url;
    rq.target = st->uri ? st->uri : url;
    rq.body = st->body.data;
    rq.body_len = st->body.len;
    rq.authorization =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    rq.query_from = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "from");
    rq.query_limit = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    rq.query_since = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
    rq.query_kind = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "kind");
    rq.query_excel = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "excel");
    rq.range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
    fs_buf_init(&rs.body, 64u << 20);
    rs.fd = -1;
    rs.started_ms = st->started_ms;
    srv_api_handle(s, &rq, &rs);
    if (strcmp(method, "POST") == 0 && strstr(url, "/entries"))
        observe_latency(s, srv_now_ms() - st->started_ms);
    ret = send_resp(c, &rs);
    fs_buf_release(&rs.body);
    return ret;
}

static enum MHD_Result
metrics_cb(void *cls, struct MHD_Connection *c, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    struct srv *s = cls;
    struct srv_resp rs;
    enum MHD_Result ret;

    (void)version;
    (void)upload_data;
    (void)con_cls;
    if (*upload_data_size)
        return MHD_NO;
    memset(&rs, 0, sizeof rs);
    rs.fd = -1;
    fs_buf_init(&rs.body, 1u << 20);
    if (strcmp(url, "/metrics") != 0 || strcmp(method, "GET") != 0) {
        srv_resp_error(s, &rs, 404, "not_found", "only GET /metrics here");
    } else {
        rs.status = 200;
        rs.content_type = "text/plain; version=0.0.4";
        srv_metrics_render(s, &rs.body);
    }
    ret = send_resp(c, &rs);
    fs_buf_release(&rs.body);
    return ret;
}

static enum fs_rc
read_file(const char *path, char **out, struct fs_err *err)
{
    struct fs_buf b;
    char chunk[8192];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t len;

    if (fd < 0)
        return fs_err_set(err, FS_EIO, "cannot open %s: %s", path, strerror(errno));
    fs_buf_init(&b, 1u << 20);
    while ((n = read(fd, chunk, sizeof chunk)) > 0) {
        if (fs_buf_add(&b, chunk, (size_t)n)) {
            close(fd);
            fs_buf_release(&b);
            return fs_err_set(err, FS_ETOOBIG, "%s is larger than 1 MiB", path);
        }
    }
    close(fd);
    *out = (char *)fs_buf_detach(&b, &len);
    return *out ? FS_OK : fs_err_set(err, FS_ENOMEM, "out of memory");
}

static int
listen_port(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;

    if (!di || getsockname(di->listen_fd, (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static enum fs_rc
make_addr(const char *host, unsigned port, struct sockaddr_storage *ss, struct fs_err *err)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return FS_OK;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return FS_OK;
    }
    return fs_err_set(err, FS_EUSAGE, "listen address %s is not an IP address", host);
}

static enum fs_rc
write_ready(const char *path, const char *host, int port, struct fs_err *err)
{
    char tmp[4096], line[128];
    int fd, n;

    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    n = snprintf(line, sizeof line, "%s:%d\n", host, port);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n || close(fd) != 0 || rename(tmp, path) != 0)
        return fs_err_set(err, FS_EIO, "cannot write %s: %s", path, strerror(errno));
    return FS_OK;
}

enum fs_rc
srv_serve(struct srv *s, struct fs_err *err)
{
    struct http *h = &http_state;
    struct MHD_Daemon *d = NULL, *md = NULL;
    struct sockaddr_storage addr, maddr;
    char *cert = NULL, *key = NULL;
    pthread_t wd;
    int wd_started = 0, port, sig;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    sigset_t set;
    enum fs_rc rc = FS_OK;

    memset(h, 0, sizeof *h);
    h->s = s;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->wake, NULL);

    /* Threads started below inherit this mask: only the main thread waits
     * for the signals that stop the server. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (s->cfg.listen_fd < 0) {
        rc = make_addr(s->cfg.listen_host, s->cfg.listen_port, &addr, err);
        if (rc)
            goto out;
        if (addr.ss_family == AF_INET6)
            flags |= MHD_USE_IPv6;
    }
    if (s->cfg.tls_cert) {
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            rc = fs_err_set(err, FS_EUSAGE, "this libmicrohttpd has no TLS support");
            goto out;
        }
        rc = read_file(s->cfg.tls_cert, &cert, err);
        if (!rc)
            rc = read_file(s->cfg.tls_key, &key, err);
        if (rc)
            goto out;
        flags |= MHD_USE_TLS;
    }
    /* The committer first: workers hand it pushes from their first request. */
    rc = srv_commit_start(s, err);
    if (rc)
        goto out;
    {
        struct MHD_OptionItem ops[] = {
            {MHD_OPTION_THREAD_POOL_SIZE, s->cfg.threads, NULL},
            {MHD_OPTION_CONNECTION_LIMIT, s->cfg.max_conns, NULL},
            {MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->cfg.max_per_ip, NULL},
            {MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.idle_s, NULL},
            {MHD_OPTION_CONNECTION_MEMORY_LIMIT, SRV_CONN_MEMORY, NULL},
            {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)notify_connection, h},
            {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)request_completed, h},
            {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)uri_log, h},
            {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, s},
            {s->cfg.listen_fd >= 0 ? MHD_OPTION_LISTEN_SOCKET : MHD_OPTION_SOCK_ADDR,
             s->cfg.listen_fd >= 0 ? s->cfg.listen_fd : 0, s->cfg.listen_fd >= 0 ? NULL : &addr},
            {cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, cert},
            {key ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, key},
            {MHD_OPTION_END, 0, NULL},
        };

        d = MHD_start_daemon(flags | MHD_USE_ERROR_LOG, 0, NULL, NULL, access_cb, h,
                             MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
    }
    if (!d) {
        rc = fs_err_set(err, FS_EIO, "cannot listen on %s:%u (in use, or not an address here)",
                        s->cfg.listen_host, s->cfg.listen_port);
        goto out;
    }
    port = listen_port(d);
    if (s->cfg.metrics_port || s->cfg.metrics_host[0]) {
        rc = make_addr(s->cfg.metrics_host, s->cfg.metrics_port, &maddr, err);
        if (rc)
            goto out;
        md = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO |
                                  (maddr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
                              0, NULL, NULL, metrics_cb, s, MHD_OPTION_SOCK_ADDR, &maddr,
                              MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                              MHD_OPTION_END);
        if (!md) {
            rc = fs_err_set(err, FS_EIO, "cannot listen for metrics on %s:%u", s->cfg.metrics_host,
                            s->cfg.metrics_port);
            goto out;
        }
        FS_LOG(&s->log, FS_LOG_NOTICE, "metrics on http://%s:%d/metrics", s->cfg.metrics_host,
               listen_port(md));
    }
    if (pthread_create(&wd, NULL, watchdog, h) != 0) {
        rc = fs_err_set(err, FS_EINTERNAL, "cannot start the deadline watchdog");
        goto out;
    }
    wd_started = 1;
    FS_LOG(&s->log, FS_LOG_NOTICE, "serving on %s://%s:%d (server key %.16s)",
           cert ? "https" : "http", s->cfg.listen_host, port, s->pk_hex);
    if (s->cfg.ready_file) {
        char host[80];

        snprintf(host, sizeof host, "%s", s->cfg.listen_host);
        rc = write_ready(s->cfg.ready_file, host, port, err);
        if (rc)
            goto out;
        if (md) {
            char mpath[4096];

            snprintf(mpath, sizeof mpath, "%s.metrics", s->cfg.ready_file);
            rc = write_ready(mpath, s->cfg.metrics_host, listen_port(md), err);
            if (rc)
                goto out;
        }
    }
    while (sigwait(&set, &sig) != 0)
        ;
    FS_LOG(&s->log, FS_LOG_NOTICE, "stopping on signal %d", sig);
out:
    if (wd_started) {
        pthread_mutex_lock(&h->lock);
        h->stopping = 1;
        pthread_cond_signal(&h->wake);
        pthread_mutex_unlock(&h->lock);
    }
    if (md)
        MHD_stop_daemon(md);
    if (d)
        MHD_stop_daemon(d);
    srv_commit_stop(s); /* after the workers: none waits on it any more */
    if (wd_started)
        pthread_join(wd, NULL);
    free(cert);
    if (key) {
        memset(key, 0, strlen(key));
        free(key);
    }
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->wake);
    return rc;
}
