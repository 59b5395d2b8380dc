/* The HTTP client on libcurl: one easy handle reused across requests, every
 * answer capped, every failure sorted into "no connection", "retry" and
 * "stop and tell someone". */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto_auth.h"
#include "proto_json.h"
#include "sync.h"

struct sync_http {
    CURL *curl;
    char *base; /* without a trailing slash */
    char *cacert;
    struct sync_http_opts o;
    int pinned;
    unsigned char server_pk[PROTO_KEY_BYTES];
    unsigned char feed[PROTO_KEY_BYTES];
    const unsigned char *sk;
    int64_t clock_offset_s;
    struct fs_buf answer;
    long retry_after;
    char cursor[24];
    long long upload_offset; /* Upload-Offset of the last answer, -1 when absent */
    int complete;            /* X-Fieldsync-Complete: 1 */
    int io_fd;               /* streaming: the file read (upload) or written (download) */
    uint64_t io_pos, io_left;
    int io_failed;
    sync_bytes_cb io_progress;
    void *io_ctx;
    uint64_t io_base;
    int connected;
};

static int curl_ready;

static size_t
on_body(char *p, size_t size, size_t n, void *ud)
{
    struct sync_http *h = ud;

    if (fs_buf_add(&h->answer, p, size * n))
        return 0; /* over the cap: curl stops with CURLE_WRITE_ERROR */
    return size * n;
}

static size_t
on_header(char *p, size_t size, size_t n, void *ud)
{
    struct sync_http *h = ud;
    size_t len = size * n;

    if (len > 19 && strncasecmp(p, "X-Fieldsync-Cursor:", 19) == 0) {
        size_t i = 19, k = 0;

        while (i < len && p[i] == ' ')
            i++;
        while (i < len && k + 1 < sizeof h->cursor && p[i] >= '0' && p[i] <= '9')
            h->cursor[k++] = p[i++];
        h->cursor[k] = 0;
    }
    if (len > 14 && strncasecmp(p, "Upload-Offset:", 14) == 0)
        h->upload_offset = strtoll(p + 14, NULL, 10);
    if (len > 21 && strncasecmp(p, "X-Fieldsync-Complete:", 21) == 0)
        h->complete = strtol(p + 21, NULL, 10) == 1;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char tmp[32];
        size_t k = len - 12 < sizeof tmp - 1 ? len - 12 : sizeof tmp - 1;

        memcpy(tmp, p + 12, k);
        tmp[k] = 0;
        h->retry_after = strtol(tmp, NULL, 10);
    }
    return len;
}

/* Loopback hosts may be reached over plain http (tests, a local demo). */
static int
loopback_host(const char *host)
{
    return strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
           strcmp(host, "::1") == 0 || strncmp(host, "127.", 4) == 0;
}

enum fs_rc
sync_url_check(const char *url, struct fs_err *err)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    enum fs_rc rc = FS_OK;

    if (!u)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    if (strlen(url) > 2000 || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        rc = fs_err_set(err, FS_EUSAGE, "the server URL is malformed");
    } else if (strcmp(scheme, "https") != 0 &&
               !(strcmp(scheme, "http") == 0 && loopback_host(host))) {
        rc = fs_err_set(err, FS_EUSAGE,
                        "the server URL must use https (plain http only to a loopback address)");
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

enum fs_rc
sync_http_new(const char *base, const char *cacert, const struct sync_http_opts *opts,
              struct sync_http **out, struct fs_err *err)
{
    struct sync_http *h;
    size_t n;
    enum fs_rc rc;

    rc = sync_url_check(base, err);
    if (rc)
        return rc;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return fs_err_set(err, FS_EINTERNAL, "cannot initialise libcurl");
        curl_ready = 1;
    }
    h = calloc(1, sizeof *h);
    if (!h)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    h->base = strdup(base);
    h->cacert = cacert ? strdup(cacert) : NULL;
    h->curl = curl_easy_init();
    if (!h->base || (cacert && !h->cacert) || !h->curl) {
        sync_http_free(h);
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    }
    n = strlen(h->base);
    while (n && h->base[n - 1] == '/')
        h->base[--n] = 0;
    h->o.connect_timeout_ms = 10000;
    h->o.request_timeout_ms = 600000;
    h->o.low_speed_bytes = 512;
    h->o.low_speed_s = 30;
    h->o.max_answer = PROTO_BATCH_MAX_BYTES + (1u << 20);
    if (opts) {
        if (opts->connect_timeout_ms)
            h->o.connect_timeout_ms = opts->connect_timeout_ms;
        if (opts->request_timeout_ms)
            h->o.request_timeout_ms = opts->request_timeout_ms;
        if (opts->low_speed_bytes)
            h->o.low_speed_bytes = opts->low_speed_bytes;
        if (opts->low_speed_s)
            h->o.low_speed_s = opts->low_speed_s;
        if (opts->max_answer)
            h->o.max_answer = opts->max_answer;
    }
    fs_buf_init(&h->answer, h->o.max_answer);
    *out = h;
    return FS_OK;
}

void
sync_http_free(struct sync_http *h)
{
    if (!h)
        return;
    if (h->curl)
        curl_easy_cleanup(h->curl);
    fs_buf_release(&h->answer);
    free(h->base);
    free(h->cacert);
    free(h);
}

void
sync_http_pin(struct sync_http *h, const unsigned char server_pk[PROTO_KEY_BYTES])
{
    memcpy(h->server_pk, server_pk, PROTO_KEY_BYTES);
    h->pinned = 1;
}

void
sync_http_signer(struct sync_http *h, const unsigned char feed[PROTO_KEY_BYTES],
                 const unsigned char *sk)
{
    memcpy(h->feed, feed, PROTO_KEY_BYTES);
    h->sk = sk;
}

void
sync_http_clock_offset(struct sync_http *h, int64_t offset_s)
{
    h->clock_offset_s = offset_s;
}

int64_t
sync_http_clock_offset_get(const struct sync_http *h)
{
    return h->clock_offset_s;
}

int
sync_http_connected(const struct sync_http *h)
{
    return h->connected;
}

void
sync_error_text(const struct sync_resp *r, char *code, size_t code_len, char *msg, size_t msg_len)
{
    json_t *j = NULL;
    const char *c, *m;

    snprintf(code, code_len, "http_%ld", r->status);
    snprintf(msg, msg_len, "the server answered %ld", r->status);
    if (proto_json_parse(r->body, r->len, &j, NULL) != FS_OK)
        return;
    c = json_string_value(json_object_get(j, "error"));
    m = json_string_value(json_object_get(j, "message"));
    if (c)
        snprintf(code, code_len, "%s", c);
    if (m) {
        size_t i;

        snprintf(msg, msg_len, "%s", m);
        /* One line, whatever the server says. */
        for (i = 0; msg[i]; i++)
            if ((unsigned char)msg[i] < 0x20)
                msg[i] = ' ';
    }
    json_decref(j);
}

/* Sorts a transport failure. */
static enum fs_rc
transport_error(struct sync_http *h, CURLcode cc, const char *errbuf, struct fs_err *err)
{
    long verify = 0;
    curl_off_t connect_us = 0;
    int reached;

    /* Whether the server was reached: this transfer connected, or an earlier one
     * of this run did (libcurl reports no connect time for a reused connection,
     * and a cut on it is a cut, not an unreachable server). */
    curl_easy_getinfo(h->curl, CURLINFO_CONNECT_TIME_T, &connect_us);
    reached = connect_us > 0 || h->connected;
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return fs_err_set(err, FS_ENET,
                          "cannot reach the server at %s; your records are safe here and will go "
                          "when it answers",
                          h->base);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        curl_easy_getinfo(h->curl, CURLINFO_SSL_VERIFYRESULT, &verify);
        /* OpenSSL: 9 certificate is not yet valid, 10 certificate has expired. */
        if (verify == 9 || verify == 10) {
            char now[64];
            time_t t = time(NULL);
            struct tm tm;

            gmtime_r(&t, &tm);
            strftime(now, sizeof now, "%Y-%m-%d %H:%M UTC", &tm);
            return fs_err_set(err, FS_EAGAIN,
                              "this laptop's clock says %s, at which the server's certificate is "
                              "%s; set the date and time right, then sync again",
                              now, verify == 9 ? "not valid yet" : "no longer valid");
        }
        h->connected = 1;
        return fs_err_set(err, FS_EPROTO,
                          "the server's certificate cannot be verified (%s); check 'fieldsync "
                          "config get cacert'",
                          errbuf[0] ? errbuf : curl_easy_strerror(cc));
    case CURLE_WRITE_ERROR:
        h->connected = 1;
        return fs_err_set(err, FS_EPROTO, "the server's answer is larger than %zu bytes",
                          h->o.max_answer);
    case CURLE_OPERATION_TIMEDOUT:
        if (!reached)
            return fs_err_set(err, FS_ENET,
                              "the server at %s did not answer in time; your records are safe "
                              "here and will go later",
                              h->base);
        h->connected = 1;
        return fs_err_set(err, FS_EAGAIN, "the transfer timed out; it will be retried");
    default:
        if (reached)
            h->connected = 1;
        return fs_err_set(err, reached ? FS_EAGAIN : FS_ENET,
                          "the connection to the server failed (%s); it will be retried",
                          errbuf[0] ? errbuf : curl_easy_strerror(cc));
    }
}

/* The options every request shares: hardened, capped, no redirects. */
static void
setup(struct sync_http *h, const char *url, char *errbuf)
{
    int secure = strncmp(h->base, "https://", 8) == 0;

    curl_easy_reset(h->curl);
    fs_buf_reset(&h->answer);
    h->retry_after = -1;
    h->cursor[0] = 0;
    h->upload_offset = -1;
    h->complete = 0;
    curl_easy_setopt(h->curl, CURLOPT_URL, url);
    curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS_STR, secure ? "https" : "http");
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS, h->o.connect_timeout_ms);
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, h->o.request_timeout_ms);
    curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_LIMIT, h->o.low_speed_bytes);
    curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_TIME, h->o.low_speed_s);
    curl_easy_setopt(h->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->o.max_answer);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(h->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h->curl, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(h->curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h->curl, CURLOPT_USERAGENT, "fieldsync/" FS_VERSION);
    if (h->cacert)
        curl_easy_setopt(h->curl, CURLOPT_CAINFO, h->cacert);
}

/* A request signature's caller, time (on the server's clock) and nonce. */
static void
auth_start(const struct sync_http *h, struct proto_req_auth *a)
{
    memcpy(a->feed, h->feed, PROTO_KEY_BYTES);
    a->ts = (int64_t)time(NULL) + h->clock_offset_s;
    randombytes_buf(a->nonce, sizeof a->nonce);
}

/* The "Authorization:" header line of a signed request. */
static void
auth_line(const struct proto_req_auth *a, char line[PROTO_AUTH_HEADER_MAX + 32])
{
    char value[PROTO_AUTH_HEADER_MAX];

    proto_req_auth_format(a, value);
    snprintf(line, PROTO_AUTH_HEADER_MAX + 32, "Authorization: %s", value);
}

/* What a finished transfer answered, into out (valid until the next request). */
static void
take_answer(struct sync_http *h, struct sync_resp *out)
{
    h->connected = 1;
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &out->status);
    out->body = h->answer.data ? h->answer.data : (const unsigned char *)"";
    out->len = h->answer.len;
    out->retry_after_s = h->retry_after;
    out->cursor = h->cursor[0] ? h->cursor : NULL;
    out->upload_offset = h->upload_offset;
    out->complete = h->complete;
}

static enum fs_rc
request_once(struct sync_http *h, const char *method, const char *target, const void *body,
             size_t body_len, int sign, struct sync_resp *out, struct fs_err *err)
{
    struct curl_slist *hdrs = NULL;
    char url[4096], auth[PROTO_AUTH_HEADER_MAX + 32], errbuf[CURL_ERROR_SIZE] = "";
    CURLcode cc;

    if (snprintf(url, sizeof url, "%s%s", h->base, target) >= (int)sizeof url)
        return fs_err_set(err, FS_EINTERNAL, "URL too long");
    setup(h, url, errbuf);
    hdrs = curl_slist_append(hdrs, "Expect:");
    hdrs = curl_slist_append(hdrs, "Accept: application/json, application/octet-stream");
    if (body) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h->curl, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, method);
    else if (strcmp(method, "POST") == 0 && !body) {
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    if (sign) {
        struct proto_req_auth a;

        if (!h->pinned || !h->sk) {
            curl_slist_free_all(hdrs);
            return fs_err_set(err, FS_EAUTH, "this device is not enrolled");
        }
        auth_start(h, &a);
        proto_req_sign(&a, method, target, body, body ? body_len : 0, h->server_pk, h->sk);
        auth_line(&a, auth);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (!hdrs) {
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    }
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, hdrs);
    cc = curl_easy_perform(h->curl);
    curl_slist_free_all(hdrs);
    if (cc != CURLE_OK)
        return transport_error(h, cc, errbuf, err);
    take_answer(h, out);
    return FS_OK;
}

/* ---- streaming: blob chunks up, blobs down ---------------------------------------- */

static size_t
on_read_file(char *buf, size_t size, size_t n, void *ud)
{
    struct sync_http *h = ud;
    size_t want = size * n;
    ssize_t got;

    if (want > h->io_left)
        want = (size_t)h->io_left;
    if (want == 0)
        return 0;
    do
        got = pread(h->io_fd, buf, want, (off_t)h->io_pos);
    while (got < 0 && errno == EINTR);
    if (got <= 0) {
        h->io_failed = 1;
        return CURL_READFUNC_ABORT;
    }
    h->io_pos += (uint64_t)got;
    h->io_left -= (uint64_t)got;
    if (h->io_progress)
        h->io_progress(h->io_ctx, h->io_base + (h->io_pos - h->io_base));
    return (size_t)got;
}

static size_t
on_write_file(char *p, size_t size, size_t n, void *ud)
{
    struct sync_http *h = ud;
    size_t len = size * n, done = 0;
    long status = 0;

    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200 && status != 206) /* an error answer: keep it as text */
        return on_body(p, size, n, ud);
    while (done < len) {
        ssize_t w = write(h->io_fd, p + done, len - done);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            h->io_failed = 1;
            return 0;
        }
        done += (size_t)w;
    }
    h->io_pos += len;
    if (h->io_progress)
        h->io_progress(h->io_ctx, h->io_pos);
    return len;
}

/* libcurl sends a request again by itself, on a new connection, when a reused
 * connection dies before any byte of the answer arrives — with the same signed
 * header. If the first copy had reached the server, the second is refused as a
 * replay (401 "replay"): a lost answer, not an authentication failure. */
static int
is_replay(const struct sync_resp *r)
{
    char code[64], msg[8];

    if (r->status != 401)
        return 0;
    sync_error_text(r, code, sizeof code, msg, sizeof msg);
    return strcmp(code, "replay") == 0;
}

static enum fs_rc
replay_error(struct fs_err *err)
{
    return fs_err_set(err, FS_EAGAIN,
                      "the link lost the server's answer to a request (its copy, resent, was "
                      "refused as a replay); try again");
}

enum fs_rc
sync_http_patch_chunk(struct sync_http *h, const char *target, int fd, uint64_t offset,
                      uint64_t length, sync_bytes_cb progress, void *pctx, struct sync_resp *out,
                      struct fs_err *err)
{
    struct curl_slist *hdrs = NULL;
    struct proto_req_auth a;
    char url[4096], auth[PROTO_AUTH_HEADER_MAX + 32], off[48], errbuf[CURL_ERROR_SIZE] = "";
    CURLcode cc;

    memset(out, 0, sizeof *out);
    if (!h->pinned || !h->sk)
        return fs_err_set(err, FS_EAUTH, "this device is not enrolled");
    if (snprintf(url, sizeof url, "%s%s", h->base, target) >= (int)sizeof url)
        return fs_err_set(err, FS_EINTERNAL, "URL too long");
    setup(h, url, errbuf);
    auth_start(h, &a);
    proto_req_sign_chunk(&a, "PATCH", target, offset, length, h->server_pk, h->sk);
    auth_line(&a, auth);
    snprintf(off, sizeof off, "Upload-Offset: %llu", (unsigned long long)offset);
    hdrs = curl_slist_append(hdrs, "Expect:");
    hdrs = curl_slist_append(hdrs, "Content-Type: application/offset+octet-stream");
    hdrs = curl_slist_append(hdrs, off);
    hdrs = curl_slist_append(hdrs, auth);
    if (!hdrs)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    h->io_fd = fd;
    h->io_pos = offset;
    h->io_left = length;
    h->io_failed = 0;
    h->io_progress = progress;
    h->io_ctx = pctx;
    h->io_base = offset;
    curl_easy_setopt(h->curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h->curl, CURLOPT_CUSTOMREQUEST, "PATCH");
    curl_easy_setopt(h->curl, CURLOPT_READFUNCTION, on_read_file);
    curl_easy_setopt(h->curl, CURLOPT_READDATA, h);
    curl_easy_setopt(h->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)length);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, hdrs);
    cc = curl_easy_perform(h->curl);
    curl_slist_free_all(hdrs);
    h->io_progress = NULL;
    if (h->io_failed)
        return fs_err_set(err, FS_EIO, "cannot read the attachment's file");
    if (cc != CURLE_OK)
        return transport_error(h, cc, errbuf, err);
    take_answer(h, out);
    if (is_replay(out))
        return replay_error(err); /* the next try asks the offset again */
    return FS_OK;
}

enum fs_rc
sync_http_download(struct sync_http *h, const char *target, int fd, uint64_t from,
                   sync_bytes_cb progress, void *pctx, struct sync_resp *out, struct fs_err *err)
{
    struct curl_slist *hdrs = NULL;
    struct proto_req_auth a;
    char url[4096], auth[PROTO_AUTH_HEADER_MAX + 32], range[64], errbuf[CURL_ERROR_SIZE] = "";
    CURLcode cc;

    memset(out, 0, sizeof *out);
    if (!h->pinned || !h->sk)
        return fs_err_set(err, FS_EAUTH, "this device is not enrolled");
    if (snprintf(url, sizeof url, "%s%s", h->base, target) >= (int)sizeof url)
        return fs_err_set(err, FS_EINTERNAL, "URL too long");
    setup(h, url, errbuf);
    auth_start(h, &a);
    proto_req_sign(&a, "GET", target, NULL, 0, h->server_pk, h->sk);
    auth_line(&a, auth);
    snprintf(range, sizeof range, "Range: bytes=%llu-", (unsigned long long)from);
    hdrs = curl_slist_append(hdrs, auth);
    hdrs = curl_slist_append(hdrs, range);
    if (!hdrs)
        return fs_err_set(err, FS_ENOMEM, "out of memory");
    h->io_fd = fd;
    h->io_pos = from;
    h->io_failed = 0;
    h->io_progress = progress;
    h->io_ctx = pctx;
    /* The file streams to disk: no answer cap applies to it. */
    curl_easy_setopt(h->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)0);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_write_file);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, hdrs);
    cc = curl_easy_perform(h->curl);
    curl_slist_free_all(hdrs);
    h->io_progress = NULL;
    if (h->io_failed)
        return fs_err_set(err, FS_EIO, "cannot write the downloaded file");
    if (cc != CURLE_OK)
        return transport_error(h, cc, errbuf, err);
    take_answer(h, out);
    if (is_replay(out))
        return replay_error(err); /* the next try resumes from what is on disk */
    return FS_OK;
}

enum fs_rc
sync_http_request(struct sync_http *h, const char *method, const char *target, const void *body,
                  size_t body_len, int sign, struct sync_resp *out, struct fs_err *err)
{
    enum fs_rc rc;
    json_t *j = NULL;

    memset(out, 0, sizeof *out);
    rc = request_once(h, method, target, body, body_len, sign, out, err);
    if (rc || !sign || out->status != 401)
        return rc;
    if (is_replay(out)) {
        /* Signed again (a fresh nonce), a GET is simply asked once more; any
         * other request may have been applied: report a cut, the caller retries. */
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
            return replay_error(err);
        rc = request_once(h, method, target, body, body_len, sign, out, err);
        if (!rc && is_replay(out))
            rc = replay_error(err);
        if (rc || out->status != 401)
            return rc;
    }
    /* A wrong clock: learn the offset from the server's time and retry once. */
    if (proto_json_parse(out->body, out->len, &j, NULL) == FS_OK) {
        const char *code = json_string_value(json_object_get(j, "error"));
        json_t *st = json_object_get(j, "server_time");

        if (code && strcmp(code, "clock") == 0 && json_is_integer(st)) {
            h->clock_offset_s = (int64_t)json_integer_value(st) - (int64_t)time(NULL);
            json_decref(j);
            rc = request_once(h, method, target, body, body_len, sign, out, err);
            if (!rc && is_replay(out))
                rc = replay_error(err);
            return rc;
        }
        json_decref(j);
    }
    return FS_OK;
}
