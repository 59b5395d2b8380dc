/* Fuzz target: a bundle file as 'fieldsync relay' and 'fieldsync-server import'
 * read it (proto_batch_read, then proto_batch_check_bundle), envelope by
 * envelope. Every envelope read is exactly the bytes it took from the file and
 * within the limits. Then, so that mutants get past the signature, each
 * envelope's payload is sealed to the fixed key as the server's and the whole
 * is signed again: it must open with that key (and with no other), and the
 * opened payload is the one sealed. */
#include <sodium.h>
#include <string.h>

#include "fuzz.h"
#include "proto_batch.h"

struct mem {
    const uint8_t *p;
    size_t len, off;
};

static long
mem_read(void *ctx, void *buf, size_t n)
{
    struct mem *m = ctx;

    if (n > m->len - m->off)
        n = m->len - m->off;
    /* Odd-sized reads, as a pipe would give them. */
    if (n > 3 && (m->off & 1))
        n = n / 2;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    return (long)n;
}

/* The envelope b with its payload sealed to the fixed key and the sealed flag
 * set, signed again with that key; then opened. */
static void
seal_and_open(const struct fuzz_key *k, const struct fs_buf *b)
{
    struct proto_batch_limits lim;
    struct proto_batch_view v, open;
    struct fs_buf env, opened;
    struct fs_err err;
    unsigned char xpk[crypto_box_PUBLICKEYBYTES], d[PROTO_HASH_BYTES], sig[PROTO_SIG_BYTES];
    unsigned char other_pk[PROTO_KEY_BYTES], other_sk[PROTO_SECRET_BYTES];
    size_t hl, pl, at;

    proto_batch_limits_default(&lim);
    if (proto_batch_open(b->data, b->len, &lim, 1, &v, &err))
        return;
    hl = v.header_len;
    pl = v.payload_len;
    if (pl + crypto_box_SEALBYTES + PROTO_BATCH_FIXED_BYTES + hl > PROTO_BATCH_MAX_BYTES)
        return;
    fs_buf_init(&env, PROTO_BATCH_MAX_BYTES);
    fs_buf_init(&opened, PROTO_BATCH_MAX_BYTES);
    at = 8 + PROTO_KEY_BYTES + 4 + hl;
    FUZZ_ASSERT(fs_buf_add(&env, b->data, at) == FS_OK);
    env.data[5] = PROTO_BATCH_FLAG_SEALED;
    memcpy(env.data + 8, k->pk, PROTO_KEY_BYTES);
    FUZZ_ASSERT(fs_buf_add_u32be(&env, (uint32_t)(pl + crypto_box_SEALBYTES)) == FS_OK);
    FUZZ_ASSERT(fs_buf_reserve(&env, env.len + pl + crypto_box_SEALBYTES + PROTO_SIG_BYTES) ==
                FS_OK);
    FUZZ_ASSERT(crypto_sign_ed25519_pk_to_curve25519(xpk, k->pk) == 0);
    FUZZ_ASSERT(crypto_box_seal(env.data + env.len, v.payload, pl, xpk) == 0);
    env.len += pl + crypto_box_SEALBYTES;
    proto_hash(env.data, env.len, d);
    proto_sign_tagged(PROTO_TAG_BATCH, d, sizeof d, k->sk, sig);
    FUZZ_ASSERT(fs_buf_add(&env, sig, sizeof sig) == FS_OK);

    FUZZ_ASSERT(proto_batch_open(env.data, env.len, &lim, 1, &v, &err) == FS_OK);
    FUZZ_ASSERT(proto_batch_open(env.data, env.len, &lim, 0, &v, &err) != FS_OK);
    FUZZ_ASSERT(proto_batch_open(env.data, env.len, &lim, 1, &v, &err) == FS_OK);
    FUZZ_ASSERT(proto_batch_verify(&v, &err) == FS_OK);
    FUZZ_ASSERT(proto_batch_unseal(&v, k->pk, k->sk, &opened, &open, &err) == FS_OK);
    FUZZ_ASSERT(open.flags == 0 && open.payload_len == pl);
    FUZZ_ASSERT(pl == 0 || memcmp(open.payload, b->data + at + 4, pl) == 0);
    proto_keypair(other_pk, other_sk);
    FUZZ_ASSERT(proto_batch_unseal(&v, other_pk, other_sk, &opened, &open, &err) == FS_EPROTO);
    sodium_memzero(other_sk, sizeof other_sk);
    fs_buf_release(&env);
    fs_buf_release(&opened);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct fuzz_key *k = fuzz_init();
    struct mem m = {data, size, 0};
    struct fs_buf b;
    struct fs_err err;
    struct proto_batch_header h;
    size_t before;
    int n;

    fs_buf_init(&b, PROTO_BATCH_MAX_BYTES);
    for (n = 0; n < 64; n++) {
        before = m.off;
        if (proto_batch_read(mem_read, &m, &b, &err) != FS_OK)
            break;
        FUZZ_ASSERT(b.len == m.off - before && b.len <= PROTO_BATCH_MAX_BYTES);
        FUZZ_ASSERT(memcmp(b.data, data + before, b.len) == 0);
        if (proto_batch_check_bundle(&b, &h, &err) == FS_OK)
            FUZZ_ASSERT((h.purpose == PROTO_PURPOSE_BUNDLE || h.purpose == PROTO_PURPOSE_PUSH) &&
                        h.has_feed && memcmp(h.feed, b.data + 8, PROTO_KEY_BYTES) == 0);
        seal_and_open(k, &b);
    }
    fs_buf_release(&b);
    return 0;
}
