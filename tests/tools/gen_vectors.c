/*
 * gen_vectors: writes the known-answer vectors of the wire format (DESIGN §3,
 * §4) into a folder, from a fixed seed, fixed times and fixed ids, so that every
 * run writes the same bytes (the batch's compressed payload aside, which
 * depends on the zlib build). Built with the tests, never run by them; run it by
 * hand when the format changes and commit what it writes:
 *
 *     build/dev/tests/tools/gen_vectors tests/data/vectors
 *
 * tests/unit/protocol/test_vectors.c checks the committed files; README.md in
 * the same folder describes them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "proto_auth.h"
#include "proto_batch.h"
#include "proto_content.h"
#include "proto_entry.h"

/* The fixed inputs. The seed is a published test key, so it lives in ordinary
 * memory: nothing here is secret. */
#define RECORD_ID "0193a3c4-5b6e-7f00-8a1b-2c3d4e5f6a7b"
#define AT1       "2026-11-29T02:11:16.123Z"
#define AT2       "2026-11-29T02:15:00.000Z"
#define CREATED   "2026-11-29T02:16:00.000Z"
#define ATT_BYTES "fieldsync test attachment"

static const char *outdir;

static int
write_file(const char *name, const void *data, size_t len)
{
    char path[4096];
    FILE *f;
    int bad;

    snprintf(path, sizeof path, "%s/%s", outdir, name);
    f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "gen_vectors: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    bad = fwrite(data, 1, len, f) != len;
    bad |= fclose(f) != 0;
    if (bad) {
        fprintf(stderr, "gen_vectors: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* One line of lowercase hex and a newline. */
static int
write_hex(const char *name, const unsigned char *bin, size_t n)
{
    char hex[2 * PROTO_SIG_BYTES + 2];

    proto_hex_encode(bin, n, hex);
    hex[2 * n] = '\n';
    return write_file(name, hex, 2 * n + 1);
}

/* content1: an interview with Chinese text, GPS and an attachment. */
static enum fs_rc
make_content(struct fs_buf *out)
{
    struct proto_content c;
    struct fs_err err;
    enum fs_rc rc;

    proto_content_init(&c);
    c.has_gps = 1;
    c.lat = 39.717;
    c.lon = 117.309;
    c.has_acc = 1;
    c.acc_m = 8;
    c.attachments = calloc(1, sizeof *c.attachments);
    if (!c.attachments) {
        rc = FS_ENOMEM;
        goto out;
    }
    c.n_attachments = 1;
    proto_hash(ATT_BYTES, strlen(ATT_BYTES), c.attachments[0].hash);
    c.attachments[0].size = 48211234;
    if ((rc = proto_content_set_str(&c.kind, "interview")) ||
        (rc = proto_content_set_str(&c.observed_at, "2026-11-28T09:30:00+08:00")) ||
        (rc = proto_content_set_str(&c.author, "Ye T.")) ||
        (rc = proto_content_set_str(&c.site_name, "Baodi Science Town")) ||
        (rc = proto_content_set_str(&c.region, "天津市/宝坻区")) ||
        (rc = proto_content_set_field(&c, "interviewee_role", "official")) ||
        (rc = proto_content_set_field(&c, "topic", "industrial transfer")) ||
        (rc = proto_content_set_str(&c.note,
                                    "Compared with 河北省/雄安新区: "
                                    "企业两年前从北京迁来生产线.\nSecond line, \"quoted\".")) ||
        (rc = proto_content_set_str(&c.attachments[0].name, "talk.m4a")) ||
        (rc = proto_content_set_str(&c.attachments[0].type, "audio/mp4")))
        goto out;
    rc = proto_content_check(&c, &err);
    if (rc) {
        fprintf(stderr, "gen_vectors: content: %s\n", err.msg);
        goto out;
    }
    rc = proto_content_encode(&c, out);
out:
    proto_content_release(&c);
    return rc;
}

/* Encodes e, checks it parses back to the same bytes, signs and hashes it. */
static enum fs_rc
make_entry(const struct proto_entry *e, const unsigned char sk[PROTO_SECRET_BYTES],
           struct fs_buf *out, unsigned char sig[PROTO_SIG_BYTES],
           unsigned char hash[PROTO_HASH_BYTES])
{
    struct proto_entry back;
    struct fs_err err;
    enum fs_rc rc;

    rc = proto_entry_check(e, &err);
    if (!rc)
        rc = proto_entry_encode(e, out);
    if (!rc)
        rc = proto_entry_parse(out->data, out->len, &back, &err);
    if (rc) {
        fprintf(stderr, "gen_vectors: entry %llu: %s\n", (unsigned long long)e->seq, err.msg);
        return rc;
    }
    proto_entry_sign(out->data, out->len, sk, sig);
    proto_entry_hash(out->data, out->len, sig, hash);
    return FS_OK;
}

int
main(int argc, char **argv)
{
    unsigned char seed[PROTO_SEED_BYTES], pk[PROTO_KEY_BYTES], sk[PROTO_SECRET_BYTES];
    unsigned char sig1[PROTO_SIG_BYTES], sig2[PROTO_SIG_BYTES];
    unsigned char h1[PROTO_HASH_BYTES], h2[PROTO_HASH_BYTES];
    char seedhex[2 * PROTO_SEED_BYTES + 1];
    char pkhex[PROTO_HEX_KEY_LEN + 1], keytxt[256];
    struct fs_buf content, entry1, entry2, batch;
    struct proto_batch_enc *enc = NULL;
    struct proto_batch_header h;
    struct proto_entry e;
    struct proto_heartbeat hb;
    char hbline[PROTO_HEARTBEAT_LINE_LEN + 1];
    size_t i;
    int status = 1;

    if (argc != 2) {
        fprintf(stderr, "usage: gen_vectors DIR\n");
        return 64;
    }
    outdir = argv[1];
    if (proto_init())
        return 70;
    fs_buf_init(&content, PROTO_CONTENT_MAX_BYTES);
    fs_buf_init(&entry1, PROTO_ENTRY_MAX_BYTES);
    fs_buf_init(&entry2, PROTO_ENTRY_MAX_BYTES);
    fs_buf_init(&batch, PROTO_BATCH_MAX_BYTES);

    /* The key: seed bytes 0x01..0x20. */
    for (i = 0; i < PROTO_SEED_BYTES; i++)
        seed[i] = (unsigned char)(i + 1);
    proto_keypair_from_seed(seed, pk, sk);
    proto_hex_encode(seed, sizeof seed, seedhex);
    proto_hex_encode(pk, sizeof pk, pkhex);
    snprintf(keytxt, sizeof keytxt, "seed %s\npublic %s\n", seedhex, pkhex);

    if (make_content(&content))
        goto out;

    /* entry1: seq 1, the root (gen 1) of a record, with content1. */
    memset(&e, 0, sizeof e);
    memcpy(e.feed, pk, sizeof pk);
    e.seq = 1;
    snprintf(e.at, sizeof e.at, "%s", AT1);
    e.op = PROTO_OP_PUT;
    snprintf(e.record_id, sizeof e.record_id, "%s", RECORD_ID);
    e.gen = 1;
    e.has_content = 1;
    proto_hash(content.data, content.len, e.content_hash);
    e.content_len = content.len;
    e.enc = PROTO_ENC_JSON;
    if (make_entry(&e, sk, &entry1, sig1, h1))
        goto out;

    /* entry2: seq 2 after entry1, deleting the record (gen 2, parent entry1). */
    memset(&e, 0, sizeof e);
    memcpy(e.feed, pk, sizeof pk);
    e.seq = 2;
    e.has_prev = 1;
    memcpy(e.prev, h1, sizeof h1);
    snprintf(e.at, sizeof e.at, "%s", AT2);
    e.op = PROTO_OP_DELETE;
    snprintf(e.record_id, sizeof e.record_id, "%s", RECORD_ID);
    e.gen = 2;
    e.has_parent = 1;
    memcpy(e.parent, h1, sizeof h1);
    if (make_entry(&e, sk, &entry2, sig2, h2))
        goto out;

    /* batch2: a push of both, zlib level 1. */
    memset(&h, 0, sizeof h);
    h.purpose = PROTO_PURPOSE_PUSH;
    h.has_feed = 1;
    memcpy(h.feed, pk, sizeof pk);
    h.from = 1;
    h.to = 2;
    memcpy(h.to_hash, h2, sizeof h2);
    snprintf(h.created, sizeof h.created, "%s", CREATED);
    if (proto_batch_enc_new(1, &enc) ||
        proto_batch_enc_add(enc, entry1.data, entry1.len, sig1, content.data, content.len) ||
        proto_batch_enc_add(enc, entry2.data, entry2.len, sig2, NULL, 0) ||
        proto_batch_enc_finish(enc, &h, pk, sk, &batch)) {
        fprintf(stderr, "gen_vectors: cannot build the batch\n");
        goto out;
    }

    /* heartbeat2: the feed attests seq 2 (entry 2's hash) at the batch's time. */
    memset(&hb, 0, sizeof hb);
    memcpy(hb.feed, pk, sizeof pk);
    hb.seq = 2;
    memcpy(hb.head, h2, sizeof h2);
    if (proto_time_parse(CREATED, strlen(CREATED), 0, &hb.at_ms)) {
        fprintf(stderr, "gen_vectors: cannot read the heartbeat's time\n");
        goto out;
    }
    proto_heartbeat_line(&hb, sk, hbline);
    hbline[PROTO_HEARTBEAT_LINE_LEN] = '\n';

    if (write_file("key.txt", keytxt, strlen(keytxt)) ||
        write_file("heartbeat2.txt", hbline, PROTO_HEARTBEAT_LINE_LEN + 1) ||
        write_file("content1.json", content.data, content.len) ||
        write_file("entry1.json", entry1.data, entry1.len) ||
        write_hex("entry1.sig.hex", sig1, sizeof sig1) ||
        write_hex("entry1.hash.hex", h1, sizeof h1) ||
        write_file("entry2.json", entry2.data, entry2.len) ||
        write_hex("entry2.sig.hex", sig2, sizeof sig2) ||
        write_hex("entry2.hash.hex", h2, sizeof h2) ||
        write_file("batch2.bin", batch.data, batch.len))
        goto out;
    status = 0;
out:
    proto_batch_enc_free(enc);
    fs_buf_release(&content);
    fs_buf_release(&entry1);
    fs_buf_release(&entry2);
    fs_buf_release(&batch);
    return status;
}
