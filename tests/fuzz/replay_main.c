/* The main() of a fuzz target built without libFuzzer (gcc: the dev, asan and
 * release presets): runs LLVMFuzzerTestOneInput once over each file named on
 * the command line and each regular file of each folder named, in name
 * order, every input in a buffer of exactly its size so that a sanitizer
 * sees any read past its end. It does not mutate anything: it replays.
 *
 * Exits 0 when every input ran, 1 when an input could not be read or none
 * were found (a corpus that went missing must not pass); a crash, a failed
 * property or a sanitizer report ends the process before that. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static size_t runs;

static int
replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    unsigned char *buf = NULL;
    size_t size;
    int rc = 1;

    if (!f || fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        goto out;
    }
    size = (size_t)st.st_size;
    /* Exactly size bytes (one for an empty input, never read). */
    buf = malloc(size ? size : 1);
    if (!buf || (size && fread(buf, 1, size, f) != size)) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        goto out;
    }
    LLVMFuzzerTestOneInput(buf, size);
    runs++;
    rc = 0;
out:
    free(buf);
    if (f)
        fclose(f);
    return rc;
}

static int
only_files(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

static int
replay_dir(const char *dir)
{
    struct dirent **names = NULL;
    int n, i, rc = 0;

    n = scandir(dir, &names, only_files, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: cannot list %s: %s\n", dir, strerror(errno));
        return 1;
    }
    for (i = 0; i < n; i++) {
        char path[4096];
        struct stat st;

        if (!rc) {
            snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
                rc = replay_file(path);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int
main(int argc, char **argv)
{
    int i, rc = 0;

    for (i = 1; i < argc && !rc; i++) {
        struct stat st;

        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            rc = 1;
        } else if (S_ISDIR(st.st_mode)) {
            rc = replay_dir(argv[i]);
        } else {
            rc = replay_file(argv[i]);
        }
    }
    if (!rc && runs == 0) {
        fprintf(stderr, "replay: no inputs\n");
        rc = 1;
    }
    if (!rc)
        printf("replay: %zu inputs ran\n", runs);
    return rc;
}
