/* Pull, per feed (DESIGN §5): the coordinator keeps the highest seq it holds
 * of each feed, lists the heads, and fetches exactly the ranges it lacks.
 * Nothing the server says is trusted that a signature does not prove: the
 * listing and the batches carry the server's signature, every entry its
 * device's. */
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_auth.h"
#include "proto_batch.h"
#include "proto_content.h"
#include "proto_json.h"
#include "sync.h"

#define PULL_LIMIT 2000
/* The first page of a feed is smaller: nothing overlaps its fetch and
 * verification, so a short one lets storing start sooner; pages then double
 * up to the limit. */
#define PULL_FIRST 250

static int
atoi_ok(const char *v, size_t *out)
{
    char *end;
    unsigned long long n = strtoull(v, &end, 10);

    if (*v < '0' || *v > '9' || *end || n == 0 || n > 5000)
        return -1;
    *out = (size_t)n;
    return 0;
}

static enum fs_rc
pinned_key(struct store *s, unsigned char pk[PROTO_KEY_BYTES], struct fs_err *err)
{
    char *v = NULL;
    enum fs_rc rc;

    rc = store_setting_get(s, "server_key", &v, err);
    if (rc)
        return rc;
    if (!v || proto_hex_decode(v, strlen(v), pk, PROTO_KEY_BYTES))
        rc = fs_err_set(err, FS_EAUTH, "this device is not enrolled");
    free(v);
    return rc;
}

static enum fs_rc
answer_error(const struct sync_resp *r, const char *what, struct fs_err *err)
{
    char code[64], msg[200];

    sync_error_text(r, code, sizeof code, msg, sizeof msg);
    if (r->status == 403 || r->status == 401)
        return fs_err_set(err, FS_EAUTH, "the server refuses %s: %s", what, msg);
    if (r->status == 503 || r->status == 429 || r->status >= 500)
        return fs_err_set(err, FS_EAGAIN, "the server asks to retry %s later: %s", what, msg);
    return fs_err_set(err, FS_EPROTO, "the server refused %s: %s", what, msg);
}

enum fs_rc
sync_feeds_listing(struct store *s, struct sync_http *h, void **listing, struct fs_err *err)
{
    unsigned char pk[PROTO_KEY_BYTES];
    struct sync_resp r;
    char target[256], *project = NULL;
    enum fs_rc rc;

    *listing = NULL;
    rc = pinned_key(s, pk, err);
    if (!rc)
        rc = store_setting_get(s, "project", &project, err);
    if (rc)
        goto out;
    if (!project) {
        rc = fs_err_set(err, FS_EAUTH, "this device is not enrolled in a project");
        goto out;
    }
    snprintf(target, sizeof target, "/v1/projects/%s/feeds", project);
    rc = sync_http_request(h, "GET", target, NULL, 0, 1, &r, err);
    if (rc)
        goto out;
    if (r.status != 200) {
        rc = answer_error(&r, "to list the project's devices", err);
        goto out;
    }
    rc = proto_signed_open(PROTO_TAG_FEEDS, r.body, r.len, pk, listing, err);
    if (!rc && (!json_is_array(json_object_get(*listing, "feeds")) ||
                !json_is_string(json_object_get(*listing, "project")) ||
                strcmp(json_string_value(json_object_get(*listing, "project")), project) != 0)) {
        json_decref(*listing);
        *listing = NULL;
        rc = fs_err_set(err, FS_EPROTO, "the server's listing is for another project");
    }
out:
    free(project);
    return rc;
}

/* A share of a batch to verify: each entry against its feed's key (feed, or
 * for a multi-feed batch the feed the entry names). */
struct verify_job {
    struct store_new_entry *es;
    struct proto_entry *parsed;
    struct proto_content *contents; /* each entry's content, parsed here */
    unsigned char (*hashes)[PROTO_HASH_BYTES];
    size_t from, to;
    const unsigned char *feed;
    enum fs_rc rc;
    struct fs_err err;
};

static void *
verify_share(void *arg)
{
    struct verify_job *j = arg;
    struct proto_entry peek;
    char fhex[17];
    size_t i;
    int parsed;

    for (i = j->from; i < j->to; i++) {
        const struct store_new_entry *e = &j->es[i];
        const unsigned char *ef = j->feed;

        if (!ef) {
            if (proto_entry_parse(e->entry, e->entry_len, &peek, &j->err)) {
                j->rc = fs_err_set(&j->err, FS_EPROTO, "a correction is not a valid entry");
                return NULL;
            }
            ef = peek.feed;
        }
        j->rc = proto_entry_verify_record(e->entry, e->entry_len, e->sig, e->content,
                                          e->content_len, ef, &j->parsed[i], j->hashes[i],
                                          &j->contents[i], &parsed, &j->err);
        if (parsed)
            j->es[i].content_parsed = &j->contents[i];
        else if (!j->rc && e->content_len) /* enc "sealed": reserved, unreadable here */
            j->rc = fs_err_set(&j->err, FS_EPROTO, "entry %llu: its content is sealed",
                               (unsigned long long)j->parsed[i].seq);
        if (j->rc) {
            proto_hex_encode(ef, 8, fhex);
            j->rc = fs_err_set(&j->err, FS_EPROTO, "feed %s: %s; nothing of this batch was kept",
                               fhex, j->err.msg);
            return NULL;
        }
    }
    return NULL;
}

/* Frees what open_pull_batch handed out. */
static void
batch_release(struct store_new_entry *es, struct proto_entry *parsed,
              unsigned char (*hashes)[PROTO_HASH_BYTES], struct proto_content *contents, size_t n)
{
    size_t i;

    for (i = 0; es && i < n; i++)
        if (es[i].content_parsed)
            proto_content_release(&contents[i]);
    free(es);
    free(parsed);
    free(hashes);
    free(contents);
}

/* Every signature is checked here, whatever the server said; a large batch
 * is split over two threads (verification is the floor of a pull). The
 * first failure by position is reported. */
static enum fs_rc
verify_all(struct store_new_entry *es, struct proto_entry *parsed,
           unsigned char (*hashes)[PROTO_HASH_BYTES], struct proto_content *contents, size_t n,
           const unsigned char *feed, struct fs_err *err)
{
    struct verify_job a, b;
    pthread_t t;
    int threaded = 0;

    memset(&a, 0, sizeof a);
    a.es = es;
    a.parsed = parsed;
    a.hashes = hashes;
    a.contents = contents;
    a.to = n;
    a.feed = feed;
    b = a;
    if (n >= 256) {
        a.to = b.from = n / 2;
        threaded = pthread_create(&t, NULL, verify_share, &b) == 0;
        if (!threaded)
            a.to = n;
    }
    verify_share(&a);
    if (threaded)
        pthread_join(t, NULL);
    if (a.rc) {
        *err = a.err;
        return a.rc;
    }
    if (threaded && b.rc) {
        *err = b.err;
        return b.rc;
    }
    return FS_OK;
}

/* Verifies a server-signed batch and its frames; fills es (parsed into
 * parsed[]) pointing into raw. feed NULL: a multi-feed batch, each entry
 * verified against its own feed. */
static enum fs_rc
open_pull_batch(const struct sync_resp *r, const unsigned char server_pk[PROTO_KEY_BYTES],
                const unsigned char *feed, uint64_t from, struct fs_buf *raw,
                struct store_new_entry **es_out, struct proto_entry **parsed_out,
                unsigned char (**hashes_out)[PROTO_HASH_BYTES], struct proto_content **contents_out,
                size_t *n_out, struct fs_err *err)
{
    struct proto_batch_limits lim;
    struct proto_batch_view v;
    struct proto_batch_header bh;
    struct store_new_entry *es = NULL;
    struct proto_entry *parsed = NULL;
    unsigned char(*hashes)[PROTO_HASH_BYTES] = NULL;
    struct proto_content *contents = NULL;
    size_t off = 0, i = 0;
    enum fs_rc rc;

    proto_batch_limits_default(&lim);
    if (proto_batch_open(r->body, r->len, &lim, 0, &v, err) ||
        sodium_memcmp(v.signer, server_pk, PROTO_KEY_BYTES) != 0 || proto_batch_verify(&v, err))
        return fs_err_set(err, FS_EPROTO, "a batch from the server does not carry its signature");
    if (proto_batch_header_parse(&v, &lim, &bh, err) || bh.purpose != PROTO_PURPOSE_PULL ||
        (feed &&
         (!bh.has_feed || memcmp(bh.feed, feed, PROTO_KEY_BYTES) != 0 || bh.from != from)) ||
        (!feed && bh.has_feed))
        return fs_err_set(err, FS_EPROTO, "a batch from the server is not the one asked for");
    if (proto_batch_inflate(&v, &bh, raw, err))
        return fs_err_set(err, FS_EPROTO, "a batch from the server is malformed: %s", err->msg);
    es = calloc(bh.count ? bh.count : 1, sizeof *es);
    parsed = calloc(bh.count ? bh.count : 1, sizeof *parsed);
    hashes = calloc(bh.count ? bh.count : 1, sizeof *hashes);
    contents = calloc(bh.count ? bh.count : 1, sizeof *contents);
    if (!es || !parsed || !hashes || !contents) {
        rc = fs_err_set(err, FS_ENOMEM, "out of memory");
        goto fail;
    }
    for (;;) {
        struct proto_frame fr;

        rc = proto_batch_next(raw, &off, &fr, err);
        if (rc == FS_ENOTFOUND)
            break;
        if (rc || i >= bh.count) {
            rc = fs_err_set(err, FS_EPROTO, "a batch from the server has the wrong frames");
            goto fail;
        }
        es[i].parsed = &parsed[i];
        es[i].hash = hashes[i];
        es[i].entry = fr.entry;
        es[i].entry_len = fr.entry_len;
        es[i].sig = fr.sig;
        es[i].content = fr.content;
        es[i].content_len = fr.content_len;
        i++;
    }
    if (i != bh.count) {
        rc = fs_err_set(err, FS_EPROTO, "a batch from the server does not match its header");
        goto fail;
    }
    rc = verify_all(es, parsed, hashes, contents, i, feed, err);
    if (rc)
        goto fail;
    if (i == 0 || (feed && memcmp(hashes[i - 1], bh.to_hash, PROTO_HASH_BYTES) != 0)) {
        rc = fs_err_set(err, FS_EPROTO, "a batch from the server does not match its header");
        goto fail;
    }
    *es_out = es;
    *parsed_out = parsed;
    *hashes_out = hashes;
    *contents_out = contents;
    *n_out = i;
    return FS_OK;
fail:
    batch_release(es, parsed, hashes, contents, i);
    return rc;
}

/* One page of a feed, fetched and verified (on its own thread while the
 * page before is stored: the server and the verification work while SQLite
 * does). */
struct page {
    struct sync_http *h;
    const unsigned char *server_pk, *feed;
    char target[200];
    uint64_t from;
    struct fs_buf raw; /* the entries of es point into it */
    struct store_new_entry *es;
    struct proto_entry *parsed;
    unsigned char (*hashes)[PROTO_HASH_BYTES];
    struct proto_content *contents;
    size_t n; /* 0: nothing more (204) */
    enum fs_rc rc;
    struct fs_err err;
};

static void *
fetch_page(void *arg)
{
    struct page *pg = arg;
    struct sync_resp r;

    pg->n = 0;
    pg->rc = sync_http_request(pg->h, "GET", pg->target, NULL, 0, 1, &r, &pg->err);
    if (pg->rc || r.status == 204) /* 204: the server holds less than its listing said */
        return NULL;
    if (r.status != 200) {
        pg->rc = answer_error(&r, "a pull", &pg->err);
        return NULL;
    }
    pg->rc = open_pull_batch(&r, pg->server_pk, pg->feed, pg->from, &pg->raw, &pg->es, &pg->parsed,
                             &pg->hashes, &pg->contents, &pg->n, &pg->err);
    return NULL;
}

static void
page_aim(struct page *pg, const char *hex, uint64_t from, size_t limit)
{
    pg->from = from;
    snprintf(pg->target, sizeof pg->target, "/v1/feeds/%s/entries?from=%" PRIu64 "&limit=%zu", hex,
             from, limit);
}

static void
page_drop(struct page *pg)
{
    batch_release(pg->es, pg->parsed, pg->hashes, pg->contents, pg->n);
    pg->es = NULL;
    pg->parsed = NULL;
    pg->hashes = NULL;
    pg->contents = NULL;
    pg->n = 0;
}

/* Fetches feed's entries after what the store holds, up to have: page k+1
 * is fetched and verified while page k is stored. */
static enum fs_rc
pull_feed(struct store *s, struct sync_http *h, const unsigned char server_pk[PROTO_KEY_BYTES],
          const unsigned char feed[PROTO_KEY_BYTES], uint64_t have, uint64_t *fetched,
          struct fs_err *err)
{
    struct store_feed_info fi;
    struct page pages[2], *cur = &pages[0], *next = &pages[1], *swap;
    char hex[2 * PROTO_KEY_BYTES + 1], *v = NULL;
    size_t page = PULL_LIMIT, want, k;
    pthread_t t;
    enum fs_rc rc = FS_OK;

    /* The page size: a setting, for slow links and for tests. */
    if (store_setting_get(s, "pull_page", &v, err) == FS_OK && v && atoi_ok(v, &page) != 0)
        page = PULL_LIMIT;
    free(v);
    rc = store_feed_info(s, feed, &fi, err);
    if (rc || fi.have_seq >= have)
        return rc;
    memset(pages, 0, sizeof pages);
    for (k = 0; k < 2; k++) {
        pages[k].h = h;
        pages[k].server_pk = server_pk;
        pages[k].feed = feed;
        fs_buf_init(&pages[k].raw, PROTO_BATCH_MAX_RAW);
    }
    proto_hex_encode(feed, PROTO_KEY_BYTES, hex);
    want = page < PULL_FIRST ? page : PULL_FIRST;
    page_aim(cur, hex, fi.have_seq + 1, want);
    fetch_page(cur);
    for (;;) {
        int ahead = 0;

        if (cur->rc) {
            *err = cur->err;
            rc = cur->rc;
            break;
        }
        if (cur->n == 0)
            break;
        if (cur->from + cur->n <= have) {
            want = want * 2 < page ? want * 2 : page;
            page_aim(next, hex, cur->from + cur->n, want);
            ahead = pthread_create(&t, NULL, fetch_page, next) == 0;
        }
        rc = store_feed_append(s, feed, cur->es, cur->n, err);
        if (!rc)
            *fetched += cur->n;
        page_drop(cur);
        if (ahead)
            pthread_join(t, NULL);
        if (rc)
            break;
        if (!ahead) {
            /* The last page, or no thread: look again from what is held. */
            rc = store_feed_info(s, feed, &fi, err);
            if (rc || fi.have_seq >= have)
                break;
            page_aim(next, hex, fi.have_seq + 1, want);
            fetch_page(next);
        }
        swap = cur;
        cur = next;
        next = swap;
    }
    page_drop(&pages[0]);
    page_drop(&pages[1]);
    fs_buf_release(&pages[0].raw);
    fs_buf_release(&pages[1].raw);
    return rc;
}

enum fs_rc
sync_pull(struct store *s, struct sync_http *h, sync_progress_cb progress, void *pctx,
          struct sync_pull_result *out, struct fs_err *err)
{
    unsigned char pk[PROTO_KEY_BYTES], feed[PROTO_KEY_BYTES];
    json_t *listing = NULL, *f;
    uint64_t total = 0, done = 0;
    size_t i;
    enum fs_rc rc;

    memset(out, 0, sizeof *out);
    rc = pinned_key(s, pk, err);
    if (!rc)
        rc = sync_feeds_listing(s, h, (void **)&listing, err);
    if (rc)
        return rc;
    /* First every feed's name and role, so that merges see the roles. */
    json_array_foreach(json_object_get(listing, "feeds"), i, f)
    {
        const char *role = json_string_value(json_object_get(f, "role"));
        const char *name = json_string_value(json_object_get(f, "name"));
        uint64_t have;
        struct store_feed_info fi;

        if (proto_json_hex(json_object_get(f, "feed"), feed, PROTO_KEY_BYTES) || !role ||
            proto_json_uint(json_object_get(f, "have_seq"), 0, &have)) {
            rc = fs_err_set(err, FS_EPROTO, "the server's listing is malformed");
            goto out;
        }
        rc = store_feed_upsert(s, feed, name, strcmp(role, "coordinator") == 0, 0, err);
        if (!rc)
            rc = store_feed_info(s, feed, &fi, err);
        if (rc)
            goto out;
        out->feeds++;
        if (memcmp(feed, store_feed(s), PROTO_KEY_BYTES) != 0 && have > fi.have_seq)
            total += have - fi.have_seq;
    }
    json_array_foreach(json_object_get(listing, "feeds"), i, f)
    {
        uint64_t have, before;

        if (proto_json_hex(json_object_get(f, "feed"), feed, PROTO_KEY_BYTES) ||
            proto_json_uint(json_object_get(f, "have_seq"), 0, &have)) {
            rc = fs_err_set(err, FS_EPROTO, "the server's listing is malformed");
            goto out;
        }
        if (memcmp(feed, store_feed(s), PROTO_KEY_BYTES) == 0)
            continue;
        before = out->fetched;
        rc = pull_feed(s, h, pk, feed, have, &out->fetched, err);
        if (rc)
            goto out;
        done += out->fetched - before;
        if (progress)
            progress(pctx, done, total);
    }
out:
    json_decref(listing);
    return rc;
}

enum fs_rc
sync_corrections(struct store *s, struct sync_http *h, uint64_t *got, struct fs_err *err)
{
    unsigned char pk[PROTO_KEY_BYTES];
    char hex[2 * PROTO_KEY_BYTES + 1], target[220], *cursor = NULL;
    struct fs_buf raw;
    uint64_t since = 0;
    int rounds = 0;
    enum fs_rc rc;

    *got = 0;
    fs_buf_init(&raw, PROTO_BATCH_MAX_RAW);
    rc = pinned_key(s, pk, err);
    if (!rc)
        rc = store_setting_get(s, "corrections_cursor", &cursor, err);
    if (rc)
        goto out;
    if (cursor)
        since = strtoull(cursor, NULL, 10);
    proto_hex_encode(store_feed(s), PROTO_KEY_BYTES, hex);
    while (rounds++ < 10000) {
        struct sync_resp r;
        struct store_new_entry *es = NULL;
        struct proto_entry *parsed = NULL;
        unsigned char(*hashes)[PROTO_HASH_BYTES] = NULL;
        struct proto_content *contents = NULL;
        size_t n = 0, i;
        char next[24];

        snprintf(target, sizeof target, "/v1/feeds/%s/corrections?since=%" PRIu64, hex, since);
        rc = sync_http_request(h, "GET", target, NULL, 0, 1, &r, err);
        if (rc)
            break;
        if (r.status == 204)
            break;
        if (r.status != 200) {
            rc = answer_error(&r, "corrections", err);
            break;
        }
        if (!r.cursor || strtoull(r.cursor, NULL, 10) <= since) {
            rc = fs_err_set(err, FS_EPROTO, "the server's corrections carry no cursor");
            break;
        }
        snprintf(next, sizeof next, "%s", r.cursor);
        rc = open_pull_batch(&r, pk, NULL, 0, &raw, &es, &parsed, &hashes, &contents, &n, err);
        /* Each correction comes from a coordinator (the server vouches for
         * it by signing the batch); kept one feed at a time. */
        for (i = 0; !rc && i < n; i++) {
            rc = store_feed_upsert(s, parsed[i].feed, NULL, 1, STORE_FEED_PARTIAL, err);
            if (!rc)
                rc = store_feed_add_sparse(s, parsed[i].feed, &es[i], 1, err);
        }
        batch_release(es, parsed, hashes, contents, n);
        if (rc)
            break;
        *got += n;
        since = strtoull(next, NULL, 10);
        rc = store_setting_set(s, "corrections_cursor", next, err);
        if (rc)
            break;
    }
out:
    free(cursor);
    fs_buf_release(&raw);
    return rc;
}
