/* fstool: crafts batches for the end-to-end tests of the server's refusals:
 * valid pushes built from a store, and the same with one thing broken under a
 * valid batch signature. Test code only; never installed. */
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "proto_auth.h"
#include "proto_batch.h"
#include "proto_entry.h"
#include "store.h"

struct collect {
    struct fs_buf entries, sigs, contents;
    size_t n;
    size_t *elen, *clen;
    unsigned char last_hash[PROTO_HASH_BYTES];
    uint64_t last_seq;
};

static int
collect(void *ctx, const struct store_entry_row *e)
{
    struct collect *c = ctx;
    size_t *ne = realloc(c->elen, (c->n + 1) * sizeof *ne), *nc;

    if (!ne)
        return 1;
    c->elen = ne;
    nc = realloc(c->clen, (c->n + 1) * sizeof *nc);
    if (!nc)
        return 1;
    c->clen = nc;
    if (fs_buf_add(&c->entries, e->entry, e->entry_len) ||
        fs_buf_add(&c->sigs, e->sig, PROTO_SIG_BYTES) ||
        fs_buf_add(&c->contents, e->content ? (const void *)e->content : "", e->content_len))
        return 1;
    c->elen[c->n] = e->entry_len;
    c->clen[c->n] = e->content_len;
    memcpy(c->last_hash, e->hash, PROTO_HASH_BYTES);
    c->last_seq = e->seq;
    c->n++;
    return 0;
}

static struct collect *to_free;

/* Writes the batch and releases everything the tool holds. */
static int
write_out(const char *path, struct fs_buf *b)
{
    FILE *f = fopen(path, "wb");
    int rc = 0;

    if (!f || (b->len && fwrite(b->data, 1, b->len, f) != b->len) || fclose(f) != 0) {
        fprintf(stderr, "fstool: cannot write %s\n", path);
        rc = 1;
    }
    fs_buf_release(b);
    if (to_free) {
        fs_buf_release(&to_free->entries);
        fs_buf_release(&to_free->sigs);
        fs_buf_release(&to_free->contents);
        free(to_free->elen);
        free(to_free->clen);
    }
    return rc;
}

/* The whole of a file into b (capped). */
static int
read_all(const char *path, struct fs_buf *b)
{
    FILE *f = fopen(path, "rb");
    unsigned char chunk[65536];
    size_t n;
    int rc = 0;

    if (!f)
        return 1;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (fs_buf_add(b, chunk, n)) {
            rc = 1;
            break;
        }
    if (ferror(f))
        rc = 1;
    fclose(f);
    return rc;
}

/* resign: every regular file in dir, taken as an envelope, gets sk's batch
 * signature in its last 64 bytes over every byte before them, whatever they
 * hold (the hostile tests' mutants: the signer field is left as it is). */
static int
resign_dir(const char *dir, const unsigned char sk[PROTO_SECRET_BYTES])
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = 0;

    if (!d)
        return 1;
    while (!rc && (de = readdir(d)) != NULL) {
        char path[4096];
        struct fs_buf b;
        unsigned char h[PROTO_HASH_BYTES];
        FILE *f;

        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        fs_buf_init(&b, PROTO_BATCH_MAX_BYTES * 2);
        rc = read_all(path, &b);
        if (!rc && b.len >= PROTO_SIG_BYTES) {
            proto_hash(b.data, b.len - PROTO_SIG_BYTES, h);
            proto_sign_tagged(PROTO_TAG_BATCH, h, sizeof h, sk, b.data + b.len - PROTO_SIG_BYTES);
            f = fopen(path, "wb");
            if (!f || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0)
                rc = 1;
        }
        fs_buf_release(&b);
    }
    closedir(d);
    return rc;
}

/* batch HOME FROM TO OUT [MODE K]: MODE is one of
 *   ok | break-sig K | break-content K | stranger | bomb
 * and, with this store's key but no batch (FROM and TO are ignored):
 *   auth SERVERKEY TARGET [METHOD [OFFSET LENGTH]]  a signed Authorization value
 *   auth-body SERVERKEY TARGET METHOD BODYFILE     the same for a request with a body
 *   resign                                         re-signs every envelope in the folder OUT */
int
main(int argc, char **argv)
{
    struct store *s = NULL;
    struct fs_err err = {{0}};
    struct collect c;
    struct proto_batch_enc *enc = NULL;
    struct proto_batch_header h;
    struct fs_buf out;
    unsigned char pk[PROTO_KEY_BYTES], sk[PROTO_SECRET_BYTES];
    const char *mode = argc > 5 ? argv[5] : "ok";
    size_t k = argc > 6 ? strtoul(argv[6], NULL, 10) : 0, i, eo = 0, co = 0;
    uint64_t from, to;

    if (argc < 5 || proto_init()) {
        fprintf(stderr, "usage: fstool HOME FROM TO OUT [ok|break-sig K|break-content K|"
                        "not-a-record|stranger|bomb]\n");
        return 64;
    }
    from = strtoull(argv[2], NULL, 10);
    to = strtoull(argv[3], NULL, 10);
    memset(&c, 0, sizeof c);
    to_free = &c;
    fs_buf_init(&c.entries, 1u << 30);
    fs_buf_init(&c.sigs, 1u << 30);
    fs_buf_init(&c.contents, 1u << 30);
    fs_buf_init(&out, PROTO_BATCH_MAX_BYTES * 2);
    memset(&h, 0, sizeof h);
    h.purpose = PROTO_PURPOSE_PUSH;
    h.has_feed = 1;
    proto_time_format_ms(store_now_ms(), h.created);

    if (strcmp(mode, "stranger") == 0) {
        /* A one-entry feed of a key that never enrolled. */
        struct proto_entry e;
        struct fs_buf eb;
        unsigned char sig[PROTO_SIG_BYTES];
        const char *content = "{\"kind\":\"interview\",\"observed_at\":\"2026-11-28T09:30:00Z\"}";

        proto_keypair(pk, sk);
        memset(&e, 0, sizeof e);
        memcpy(e.feed, pk, sizeof pk);
        e.seq = 1;
        proto_time_format_ms(store_now_ms(), e.at);
        e.op = PROTO_OP_PUT;
        proto_uuid7_new(store_now_ms(), e.record_id);
        e.gen = 1;
        e.has_content = 1;
        e.enc = PROTO_ENC_JSON;
        e.content_len = strlen(content);
        proto_hash(content, strlen(content), e.content_hash);
        fs_buf_init(&eb, PROTO_ENTRY_MAX_BYTES);
        if (proto_entry_encode(&e, &eb) || proto_batch_enc_new(1, &enc))
            return 70;
        proto_entry_sign(eb.data, eb.len, sk, sig);
        if (proto_batch_enc_add(enc, eb.data, eb.len, sig, content, strlen(content)))
            return 70;
        memcpy(h.feed, pk, sizeof pk);
        h.from = h.to = 1;
        proto_entry_hash(eb.data, eb.len, sig, h.to_hash);
        fs_buf_release(&eb);
        if (proto_batch_enc_finish(enc, &h, pk, sk, &out))
            return 70;
        proto_batch_enc_free(enc);
        return write_out(argv[4], &out);
    }

    if (store_open(argv[1], &s, &err)) {
        fprintf(stderr, "fstool: %s\n", err.msg);
        return 65;
    }
    memcpy(pk, store_feed(s), sizeof pk);
    memcpy(sk, store_secret(s), sizeof sk);
    if (strcmp(mode, "auth") == 0 && argc > 7) {
        /* A signed Authorization value for GET TARGET, to replay by hand. */
        struct proto_req_auth a;
        unsigned char spk[PROTO_KEY_BYTES];
        char value[PROTO_AUTH_HEADER_MAX];
        FILE *f;

        if (proto_hex_decode(argv[6], strlen(argv[6]), spk, sizeof spk))
            return 64;
        memcpy(a.feed, pk, sizeof pk);
        a.ts = store_now_ms() / 1000;
        randombytes_buf(a.nonce, sizeof a.nonce);
        /* auth SERVERKEY TARGET [METHOD [OFFSET LENGTH]]: a chunk signature
         * when OFFSET and LENGTH are given. */
        if (argc > 10)
            proto_req_sign_chunk(&a, argv[8], argv[7], strtoull(argv[9], NULL, 10),
                                 strtoull(argv[10], NULL, 10), spk, sk);
        else
            proto_req_sign(&a, argc > 8 ? argv[8] : "GET", argv[7], NULL, 0, spk, sk);
        proto_req_auth_format(&a, value);
        f = fopen(argv[4], "w");
        if (!f || fputs(value, f) < 0 || fclose(f) != 0)
            return 74;
        store_close(s);
        sodium_memzero(sk, sizeof sk);
        out.len = 0;
        write_out("/dev/null", &out);
        return 0;
    }
    if (strcmp(mode, "auth-body") == 0 && argc > 9) {
        /* A signed Authorization value for METHOD TARGET with BODYFILE's bytes. */
        struct proto_req_auth a;
        struct fs_buf body;
        unsigned char spk[PROTO_KEY_BYTES];
        char value[PROTO_AUTH_HEADER_MAX];
        FILE *f;

        fs_buf_init(&body, PROTO_BATCH_MAX_BYTES * 2);
        if (proto_hex_decode(argv[6], strlen(argv[6]), spk, sizeof spk) || read_all(argv[9], &body))
            return 64;
        memcpy(a.feed, pk, sizeof pk);
        a.ts = store_now_ms() / 1000;
        randombytes_buf(a.nonce, sizeof a.nonce);
        proto_req_sign(&a, argv[8], argv[7], body.data, body.len, spk, sk);
        proto_req_auth_format(&a, value);
        fs_buf_release(&body);
        f = fopen(argv[4], "w");
        if (!f || fputs(value, f) < 0 || fclose(f) != 0)
            return 74;
        store_close(s);
        sodium_memzero(sk, sizeof sk);
        out.len = 0;
        write_out("/dev/null", &out);
        return 0;
    }
    if (strcmp(mode, "resign") == 0) {
        int rc = resign_dir(argv[4], sk);

        store_close(s);
        sodium_memzero(sk, sizeof sk);
        out.len = 0;
        write_out("/dev/null", &out);
        if (rc)
            fprintf(stderr, "fstool: cannot re-sign the files in %s\n", argv[4]);
        return rc ? 74 : 0;
    }
    if (store_feed_entries(s, pk, from, to, collect, &c, &err) || c.n == 0) {
        fprintf(stderr, "fstool: no entries %llu..%llu\n", (unsigned long long)from,
                (unsigned long long)to);
        return 65;
    }
    memcpy(h.feed, pk, sizeof pk);
    h.from = from;
    h.to = c.last_seq;
    memcpy(h.to_hash, c.last_hash, sizeof h.to_hash);

    if (strcmp(mode, "bomb") == 0) {
        /* A correctly signed batch whose payload inflates to 1 GiB of zeros
         * while its header claims the real frames' length. */
        unsigned char zeros[65536];
        z_stream zs;
        struct fs_buf z;
        size_t left = 1u << 30;
        unsigned char fixed[8] = {'F', 'S', 'B', '1', 1, 0, 0, 0}, d[PROTO_HASH_BYTES],
                      sig[PROTO_SIG_BYTES];
        char hdr[1024];
        int n;

        memset(zeros, 0, sizeof zeros);
        memset(&zs, 0, sizeof zs);
        fs_buf_init(&z, 16u << 20);
        if (deflateInit(&zs, 9) != Z_OK)
            return 70;
        while (left) {
            size_t chunk = left < sizeof zeros ? left : sizeof zeros;
            unsigned char outb[65536];

            left -= chunk;
            zs.next_in = zeros;
            zs.avail_in = (uInt)chunk;
            do {
                zs.next_out = outb;
                zs.avail_out = sizeof outb;
                deflate(&zs, left ? Z_NO_FLUSH : Z_FINISH);
                if (fs_buf_add(&z, outb, sizeof outb - zs.avail_out))
                    return 70;
            } while (zs.avail_out == 0);
        }
        deflateEnd(&zs);
        {
            char fh[65], th[65];

            proto_hex_encode(h.feed, 32, fh);
            proto_hex_encode(h.to_hash, 32, th);
            n = snprintf(hdr, sizeof hdr,
                         "{\"purpose\":\"push\",\"feed\":\"%s\",\"from\":%llu,\"to\":%llu,"
                         "\"to_hash\":\"%s\",\"count\":%zu,\"raw_len\":%u,\"created\":\"%s\"}",
                         fh, (unsigned long long)h.from, (unsigned long long)h.to, th, c.n,
                         1u << 20, h.created);
        }
        if (fs_buf_add(&out, fixed, 8) || fs_buf_add(&out, pk, 32) ||
            fs_buf_add_u32be(&out, (uint32_t)n) || fs_buf_add(&out, hdr, (size_t)n) ||
            fs_buf_add_u32be(&out, (uint32_t)z.len) || fs_buf_add(&out, z.data, z.len))
            return 70;
        proto_hash(out.data, out.len, d);
        proto_sign_tagged(PROTO_TAG_BATCH, d, sizeof d, sk, sig);
        if (fs_buf_add(&out, sig, sizeof sig))
            return 70;
        fs_buf_release(&z);
        store_close(s);
        return write_out(argv[4], &out);
    }

    if (proto_batch_enc_new(1, &enc))
        return 70;
    for (i = 0; i < c.n; i++) {
        unsigned char *ep = c.entries.data + eo, *sp = c.sigs.data + i * PROTO_SIG_BYTES;
        unsigned char *cp = c.contents.data + co;

        if (i == k && strcmp(mode, "break-sig") == 0)
            sp[5] ^= 0x01;
        if (i == k && strcmp(mode, "break-content") == 0 && c.clen[i] > 10)
            cp[c.clen[i] - 3] ^= 0x01;
        if (i + 1 == c.n && strcmp(mode, "not-a-record") == 0) {
            /* The last entry made again, correctly signed by the feed's key
             * and naming its content's true hash, but the content is not a
             * record (no observed_at). */
            static const char bad[] = "{\"kind\":\"note\"}";
            struct proto_entry e;
            struct fs_buf eb;
            unsigned char nsig[PROTO_SIG_BYTES];

            if (proto_entry_parse(ep, c.elen[i], &e, &err) || e.op != PROTO_OP_PUT)
                return 65;
            proto_hash(bad, strlen(bad), e.content_hash);
            e.content_len = strlen(bad);
            fs_buf_init(&eb, PROTO_ENTRY_MAX_BYTES);
            if (proto_entry_encode(&e, &eb))
                return 70;
            proto_entry_sign(eb.data, eb.len, sk, nsig);
            proto_entry_hash(eb.data, eb.len, nsig, h.to_hash);
            if (proto_batch_enc_add(enc, eb.data, eb.len, nsig, bad, strlen(bad)))
                return 70;
            fs_buf_release(&eb);
            continue;
        }
        if (proto_batch_enc_add(enc, ep, c.elen[i], sp, cp, c.clen[i]))
            return 70;
        eo += c.elen[i];
        co += c.clen[i];
    }
    if (proto_batch_enc_finish(enc, &h, pk, sk, &out))
        return 70;
    proto_batch_enc_free(enc);
    store_close(s);
    sodium_memzero(sk, sizeof sk);
    return write_out(argv[4], &out);
}
