/* rel_sign: prints a signed Authorization value of the store at HOME for one
 * request, body included (fstool signs bodiless requests only), for the
 * authorisation table of reliability row 8. Test code only; never installed.
 *
 *   rel_sign HOME SERVERKEYHEX METHOD TARGET [BODYFILE | --chunk OFFSET LENGTH]
 *
 * With REL_SIGN_AS=FEEDHEX in the environment the header claims that feed
 * while the store's own key signs: a forgery the server must refuse. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_auth.h"
#include "store.h"

#define BODY_MAX (1u << 20)

int
main(int argc, char **argv)
{
    struct store *s = NULL;
    struct fs_err err;
    struct proto_req_auth a;
    unsigned char spk[PROTO_KEY_BYTES];
    char value[PROTO_AUTH_HEADER_MAX];
    unsigned char *body = NULL;
    size_t len = 0;
    int rc = 64;

    if ((argc != 5 && argc != 6 && !(argc == 8 && strcmp(argv[5], "--chunk") == 0)) ||
        proto_init() || proto_hex_decode(argv[2], strlen(argv[2]), spk, sizeof spk) != FS_OK) {
        fprintf(stderr, "usage: rel_sign HOME SERVERKEYHEX METHOD TARGET "
                        "[BODYFILE | --chunk OFFSET LENGTH]\n");
        return 64;
    }
    if (argc == 6) {
        FILE *f = fopen(argv[5], "rb");

        body = malloc(BODY_MAX);
        if (!f || !body) {
            fprintf(stderr, "rel_sign: cannot read %s\n", argv[5]);
            rc = 66;
            goto out_file;
        }
        len = fread(body, 1, BODY_MAX, f);
    out_file:
        if (f)
            fclose(f);
        if (rc == 66)
            goto out;
    }
    if (store_open(argv[1], &s, &err) != FS_OK) {
        fprintf(stderr, "rel_sign: %s\n", err.msg);
        rc = 65;
        goto out;
    }
    memcpy(a.feed, store_feed(s), PROTO_KEY_BYTES);
    if (getenv("REL_SIGN_AS") &&
        proto_hex_decode(getenv("REL_SIGN_AS"), strlen(getenv("REL_SIGN_AS")), a.feed,
                         PROTO_KEY_BYTES) != FS_OK) {
        fprintf(stderr, "rel_sign: REL_SIGN_AS is not a feed id\n");
        goto out;
    }
    a.ts = store_now_ms() / 1000;
    randombytes_buf(a.nonce, sizeof a.nonce);
    if (argc == 8)
        proto_req_sign_chunk(&a, argv[3], argv[4], strtoull(argv[6], NULL, 10),
                             strtoull(argv[7], NULL, 10), spk, store_secret(s));
    else
        proto_req_sign(&a, argv[3], argv[4], body, len, spk, store_secret(s));
    proto_req_auth_format(&a, value);
    printf("%s\n", value);
    rc = 0;
out:
    store_close(s);
    free(body);
    return rc;
}
