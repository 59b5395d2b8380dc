/* rel_powerloss: reliability row 4, power loss under the agent's store. A
 * crash-simulating SQLite VFS, registered as the default before store_open
 * (no product change), keeps what each file held at its last sync; at the
 * k-th write, truncate or sync it "loses power": unsynced writes are dropped
 * (mode drop) or torn sector by sector into new, old or garbage bytes (mode
 * tear), as SQLite's own crash tests do. The store is then reopened through
 * its real API and every record that store_record_create (or _update)
 * reported saved must be there, and store_verify must pass.
 *
 * The same workload with synchronous=NORMAL must show losses: that proves
 * the simulation can see a durability bug. NORMAL is imposed from this test
 * alone, through an auto-extension (sqlite3_auto_extension) that sets it on
 * each new connection and an authorizer that turns the store's own
 * "PRAGMA synchronous = FULL" into a no-op; the store's code is not touched.
 *
 * Test code only: one process, one thread. Not a model of directory
 * operations (creating and deleting files are taken as durable at once,
 * as in SQLite's test6.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

#define MAX_FILES   16
#define TEAR_SECTOR 512

enum crash_mode { MODE_DROP, MODE_TEAR };

/* One unsynced operation on a file. */
struct pending {
    int is_trunc;
    sqlite3_int64 off; /* write offset, or the truncated size */
    size_t len;
    unsigned char *data;
};

/* What a path holds durably, and what was done to it since its last sync. */
struct tracked {
    char *path;
    unsigned char *img;
    size_t img_len;
    struct pending *ops;
    size_t n_ops, cap_ops;
};

struct cfile {
    sqlite3_file base;
    struct tracked *t; /* NULL for files without a name (temporary) */
    sqlite3_file *real;
};

static struct {
    sqlite3_vfs *real;
    struct tracked files[MAX_FILES];
    size_t n_files;
    uint64_t ops;      /* writes, truncates and syncs seen */
    uint64_t crash_at; /* 0: never */
    int crashed;
    int open_files;
    enum crash_mode mode;
    uint64_t rng;
    int unsafe_normal; /* impose synchronous=NORMAL on new connections */
    sqlite3 *last_db;
} g;

static uint64_t
rnd(void)
{
    /* splitmix64: reproducible from the seed printed on failure */
    uint64_t z = (g.rng += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p) {
        fprintf(stderr, "rel_powerloss: out of memory\n");
        exit(70);
    }
    return p;
}

static void
pending_clear(struct tracked *t)
{
    size_t i;

    for (i = 0; i < t->n_ops; i++)
        free(t->ops[i].data);
    t->n_ops = 0;
}

static void
tracked_release(struct tracked *t)
{
    pending_clear(t);
    free(t->ops);
    free(t->img);
    free(t->path);
    memset(t, 0, sizeof *t);
}

static void
tracked_reset_all(void)
{
    size_t i;

    for (i = 0; i < g.n_files; i++)
        tracked_release(&g.files[i]);
    g.n_files = 0;
}

static int
read_file(const char *path, unsigned char **out, size_t *len)
{
    struct stat st;
    unsigned char *p;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    *out = NULL;
    *len = 0;
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    p = xmalloc((size_t)st.st_size);
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, p + got, (size_t)st.st_size - got);

        if (n <= 0) {
            free(p);
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    *out = p;
    *len = got;
    return 0;
}

static int
write_file(const char *path, const unsigned char *p, size_t len)
{
    size_t done = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0)
        return -1;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);

        if (n <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    return close(fd);
}

/* The record of path, made on first sight from the file as it is now: at
 * that point every byte of it is durable (a fresh copy, or after reboot). */
static struct tracked *
tracked_get(const char *path)
{
    struct tracked *t;
    size_t i;

    for (i = 0; i < g.n_files; i++)
        if (strcmp(g.files[i].path, path) == 0)
            return &g.files[i];
    if (g.n_files == MAX_FILES) {
        fprintf(stderr, "rel_powerloss: too many files\n");
        exit(70);
    }
    t = &g.files[g.n_files++];
    memset(t, 0, sizeof *t);
    t->path = strdup(path);
    if (!t->path || read_file(path, &t->img, &t->img_len) != 0) {
        fprintf(stderr, "rel_powerloss: cannot read %s\n", path);
        exit(70);
    }
    return t;
}

static void
tracked_forget(const char *path)
{
    size_t i;

    for (i = 0; i < g.n_files; i++) {
        if (strcmp(g.files[i].path, path) == 0) {
            tracked_release(&g.files[i]);
            g.files[i] = g.files[g.n_files - 1];
            memset(&g.files[g.n_files - 1], 0, sizeof g.files[0]);
            g.n_files--;
            return;
        }
    }
}

static void
pending_add(struct tracked *t, int is_trunc, sqlite3_int64 off, const void *data, size_t len)
{
    struct pending *p;

    if (t->n_ops == t->cap_ops) {
        size_t nc = t->cap_ops ? t->cap_ops * 2 : 16;
        struct pending *n = realloc(t->ops, nc * sizeof *n);

        if (!n) {
            fprintf(stderr, "rel_powerloss: out of memory\n");
            exit(70);
        }
        t->ops = n;
        t->cap_ops = nc;
    }
    p = &t->ops[t->n_ops++];
    p->is_trunc = is_trunc;
    p->off = off;
    p->len = len;
    p->data = NULL;
    if (!is_trunc) {
        p->data = xmalloc(len);
        memcpy(p->data, data, len);
    }
}

static void
img_resize(struct tracked *t, size_t n)
{
    unsigned char *p;

    if (n == t->img_len)
        return;
    p = realloc(t->img, n ? n : 1);
    if (!p) {
        fprintf(stderr, "rel_powerloss: out of memory\n");
        exit(70);
    }
    if (n > t->img_len)
        memset(p + t->img_len, 0, n - t->img_len);
    t->img = p;
    t->img_len = n;
}

/* Applies bytes [a, b) of a pending write to the image. */
static void
img_write(struct tracked *t, const struct pending *p, size_t a, size_t b, int garbage)
{
    size_t at = (size_t)p->off + a, i;

    if (at + (b - a) > t->img_len)
        img_resize(t, at + (b - a));
    if (!garbage) {
        memcpy(t->img + at, p->data + a, b - a);
        return;
    }
    for (i = 0; i < b - a; i++)
        t->img[at + i] = (unsigned char)rnd();
}

/* A sync: everything done to the file so far is durable. */
static void
tracked_sync(struct tracked *t)
{
    size_t i;

    for (i = 0; i < t->n_ops; i++) {
        const struct pending *p = &t->ops[i];

        if (p->is_trunc)
            img_resize(t, (size_t)p->off);
        else
            img_write(t, p, 0, p->len, 0);
    }
    pending_clear(t);
}

/* The power went: what the disk holds of each file. Drop keeps only what
 * was synced; tear lets each unsynced sector-sized piece of each write land,
 * not land, or land as garbage, and each truncate happen or not. */
static int
crash_images_write(void)
{
    size_t i, j;

    for (i = 0; i < g.n_files; i++) {
        struct tracked *t = &g.files[i];

        if (!t->n_ops)
            continue;
        if (g.mode == MODE_TEAR) {
            for (j = 0; j < t->n_ops; j++) {
                const struct pending *p = &t->ops[j];
                size_t a = 0;

                if (p->is_trunc) {
                    if (rnd() & 1)
                        img_resize(t, (size_t)p->off);
                    continue;
                }
                while (a < p->len) {
                    size_t next = ((size_t)p->off + a) / TEAR_SECTOR * TEAR_SECTOR + TEAR_SECTOR;
                    size_t b = next - (size_t)p->off;
                    uint64_t r = rnd() % 3;

                    if (b > p->len)
                        b = p->len;
                    if (r < 2)
                        img_write(t, p, a, b, r == 1);
                    a = b;
                }
            }
        }
        pending_clear(t);
        if (write_file(t->path, t->img, t->img_len) != 0) {
            fprintf(stderr, "rel_powerloss: cannot write %s: %s\n", t->path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* Counts one write, truncate or sync; 1 when the power is (or goes) out. */
static int
power_out(void)
{
    if (g.crashed)
        return 1;
    g.ops++;
    if (g.crash_at && g.ops >= g.crash_at)
        g.crashed = 1;
    return g.crashed;
}

/* ---- the VFS ----------------------------------------------------------------------- */

static int
c_close(sqlite3_file *f)
{
    struct cfile *c = (struct cfile *)f;
    int rc = SQLITE_OK;

    if (c->real->pMethods)
        rc = c->real->pMethods->xClose(c->real);
    g.open_files--;
    return rc;
}

static int
c_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    struct cfile *c = (struct cfile *)f;

    if (g.crashed)
        return SQLITE_IOERR_READ;
    return c->real->pMethods->xRead(c->real, p, n, off);
}

static int
c_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    struct cfile *c = (struct cfile *)f;
    int rc;

    if (c->t) {
        if (g.crashed)
            return SQLITE_IOERR_WRITE;
        if (power_out()) {
            /* The write under way when the power went may land in part. */
            pending_add(c->t, 0, off, p, (size_t)n);
            return SQLITE_IOERR_WRITE;
        }
    }
    rc = c->real->pMethods->xWrite(c->real, p, n, off);
    if (rc == SQLITE_OK && c->t)
        pending_add(c->t, 0, off, p, (size_t)n);
    return rc;
}

static int
c_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    struct cfile *c = (struct cfile *)f;
    int rc;

    if (c->t && power_out())
        return SQLITE_IOERR_TRUNCATE;
    rc = c->real->pMethods->xTruncate(c->real, size);
    if (rc == SQLITE_OK && c->t)
        pending_add(c->t, 1, size, NULL, 0);
    return rc;
}

static int
c_sync(sqlite3_file *f, int flags)
{
    struct cfile *c = (struct cfile *)f;

    (void)flags;
    if (!c->t)
        return SQLITE_OK;
    if (power_out())
        return SQLITE_IOERR_FSYNC;
    /* Durable in the model; the real fsync adds nothing to a test. */
    tracked_sync(c->t);
    return SQLITE_OK;
}

static int
c_size(sqlite3_file *f, sqlite3_int64 *size)
{
    struct cfile *c = (struct cfile *)f;

    if (g.crashed)
        return SQLITE_IOERR_FSTAT;
    return c->real->pMethods->xFileSize(c->real, size);
}

static int
c_lock(sqlite3_file *f, int level)
{
    struct cfile *c = (struct cfile *)f;

    return c->real->pMethods->xLock(c->real, level);
}

static int
c_unlock(sqlite3_file *f, int level)
{
    struct cfile *c = (struct cfile *)f;

    return c->real->pMethods->xUnlock(c->real, level);
}

static int
c_reserved(sqlite3_file *f, int *out)
{
    struct cfile *c = (struct cfile *)f;

    return c->real->pMethods->xCheckReservedLock(c->real, out);
}

static int
c_fcntl(sqlite3_file *f, int op, void *arg)
{
    struct cfile *c = (struct cfile *)f;

    return c->real->pMethods->xFileControl(c->real, op, arg);
}

static int
c_sector(sqlite3_file *f)
{
    struct cfile *c = (struct cfile *)f;

    return c->real->pMethods->xSectorSize(c->real);
}

static int
c_devchar(sqlite3_file *f)
{
    struct cfile *c = (struct cfile *)f;

    return c->real->pMethods->xDeviceCharacteristics(c->real);
}

static int
c_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    struct cfile *c = (struct cfile *)f;

    return c->real->pMethods->xShmMap(c->real, pg, pgsz, extend, pp);
}

static int
c_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    struct cfile *c = (struct cfile *)f;

    return c->real->pMethods->xShmLock(c->real, offset, n, flags);
}

static void
c_shm_barrier(sqlite3_file *f)
{
    struct cfile *c = (struct cfile *)f;

    c->real->pMethods->xShmBarrier(c->real);
}

static int
c_shm_unmap(sqlite3_file *f, int del)
{
    struct cfile *c = (struct cfile *)f;

    return c->real->pMethods->xShmUnmap(c->real, del);
}

static int
c_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    /* No memory-mapped reads: every read goes through c_read. */
    (void)f;
    (void)off;
    (void)n;
    *pp = NULL;
    return SQLITE_OK;
}

static int
c_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    (void)f;
    (void)off;
    (void)p;
    return SQLITE_OK;
}

static const sqlite3_io_methods cmethods = {
    .iVersion = 3,
    .xClose = c_close,
    .xRead = c_read,
    .xWrite = c_write,
    .xTruncate = c_truncate,
    .xSync = c_sync,
    .xFileSize = c_size,
    .xLock = c_lock,
    .xUnlock = c_unlock,
    .xCheckReservedLock = c_reserved,
    .xFileControl = c_fcntl,
    .xSectorSize = c_sector,
    .xDeviceCharacteristics = c_devchar,
    .xShmMap = c_shm_map,
    .xShmLock = c_shm_lock,
    .xShmBarrier = c_shm_barrier,
    .xShmUnmap = c_shm_unmap,
    .xFetch = c_fetch,
    .xUnfetch = c_unfetch,
};

static int
v_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *out_flags)
{
    struct cfile *c = (struct cfile *)f;
    int rc;

    (void)vfs;
    memset(c, 0, sizeof *c);
    c->real = (sqlite3_file *)(c + 1);
    if (g.crashed)
        return SQLITE_CANTOPEN;
    rc = g.real->xOpen(g.real, name, c->real, flags, out_flags);
    if (rc != SQLITE_OK)
        return rc;
    if (name)
        c->t = tracked_get(name);
    c->base.pMethods = &cmethods;
    g.open_files++;
    return SQLITE_OK;
}

static int
v_delete(sqlite3_vfs *vfs, const char *name, int dirsync)
{
    (void)vfs;
    if (power_out())
        return SQLITE_IOERR_DELETE;
    tracked_forget(name);
    return g.real->xDelete(g.real, name, dirsync);
}

static int
v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return g.real->xAccess(g.real, name, flags, out);
}

static int
v_fullpath(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return g.real->xFullPathname(g.real, name, n, out);
}

static int
v_random(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return g.real->xRandomness(g.real, n, out);
}

static int
v_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return g.real->xSleep(g.real, us);
}

static int
v_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return g.real->xCurrentTime(g.real, out);
}

static int
v_lasterr(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return g.real->xGetLastError(g.real, n, out);
}

static int
v_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return g.real->xCurrentTimeInt64(g.real, out);
}

static sqlite3_vfs crash_vfs = {
    .iVersion = 2,
    .zName = "fs-crash",
    .xOpen = v_open,
    .xDelete = v_delete,
    .xAccess = v_access,
    .xFullPathname = v_fullpath,
    .xRandomness = v_random,
    .xSleep = v_sleep,
    .xCurrentTime = v_time,
    .xGetLastError = v_lasterr,
    .xCurrentTimeInt64 = v_time64,
};

/* ---- each new connection ------------------------------------------------------- */

static int
keep_normal(void *ctx, int action, const char *a, const char *b, const char *c, const char *d)
{
    (void)ctx;
    (void)c;
    (void)d;
    /* The store's "PRAGMA synchronous = FULL" becomes a no-op. */
    if (action == SQLITE_PRAGMA && a && b && sqlite3_stricmp(a, "synchronous") == 0)
        return SQLITE_IGNORE;
    return SQLITE_OK;
}

static int
on_connection(sqlite3 *db, char **errmsg, const sqlite3_api_routines *api)
{
    (void)errmsg;
    (void)api;
    g.last_db = db;
    /* Checkpoints every few commits, so that crashes land inside them too. */
    sqlite3_exec(db, "PRAGMA wal_autocheckpoint = 24", NULL, NULL, NULL);
    if (g.unsafe_normal) {
        sqlite3_exec(db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
        sqlite3_set_authorizer(db, keep_normal, NULL);
    }
    return SQLITE_OK;
}

/* ---- the workload ------------------------------------------------------------------ */

struct saved {
    char id[PROTO_UUID_LEN + 1];
    char note[64];     /* the note a saved create or update gave it */
    char alt_note[64]; /* an update in flight at the crash: either may be there */
};

struct run {
    struct saved *recs;
    size_t n, cap;
    unsigned sessions, per_session;
};

static void
make_content(struct proto_content *c, const char *note)
{
    proto_content_init(c);
    if (proto_content_set_str(&c->kind, "interview") ||
        proto_content_set_str(&c->observed_at, "2026-11-28T09:30:00+08:00") ||
        proto_content_set_str(&c->site_name, "Baodi Science Town") ||
        proto_content_set_field(c, "topic", "industrial transfer") ||
        proto_content_set_str(&c->note, note)) {
        fprintf(stderr, "rel_powerloss: out of memory\n");
        exit(70);
    }
}

/* Stops at the first failure (the power went). Returns how many operations
 * reported success. */
static void
workload(const char *home, struct run *r)
{
    struct store *s = NULL;
    struct fs_err err;
    unsigned i, j;

    r->n = 0;
    for (i = 0; i < r->sessions; i++) {
        /* One session is one command: open, a few records, close. */
        if (store_open(home, &s, &err) != FS_OK)
            return;
        for (j = 0; j < r->per_session; j++) {
            struct proto_content c;
            struct saved sv;
            enum fs_rc rc;

            memset(&sv, 0, sizeof sv);
            snprintf(sv.note, sizeof sv.note, "power loss %u.%u", i, j);
            make_content(&c, sv.note);
            rc = store_record_create(s, &c, NULL, sv.id, &err);
            proto_content_release(&c);
            if (rc)
                goto out;
            if (r->n == r->cap) {
                r->cap = r->cap ? r->cap * 2 : 64;
                r->recs = realloc(r->recs, r->cap * sizeof *r->recs);
                if (!r->recs) {
                    fprintf(stderr, "rel_powerloss: out of memory\n");
                    exit(70);
                }
            }
            r->recs[r->n++] = sv;
        }
        if (r->n >= 2) {
            /* And an edit of an earlier record. */
            struct saved *e = &r->recs[r->n - 2];
            struct proto_content c;
            char note[64];

            snprintf(note, sizeof note, "edited in session %u", i);
            make_content(&c, note);
            memcpy(e->alt_note, note, sizeof note);
            if (store_record_update(s, e->id, &c, &err) != FS_OK) {
                proto_content_release(&c);
                goto out;
            }
            proto_content_release(&c);
            memcpy(e->note, note, sizeof note);
            e->alt_note[0] = 0;
        }
        store_close(s);
        s = NULL;
    }
out:
    store_close(s);
}

struct verdict {
    uint64_t lost, problems;
    int open_failed, resume_failed;
    char first[256];
};

static void
count_problem(void *ctx, const char *line)
{
    struct verdict *v = ctx;

    if (!v->problems++)
        snprintf(v->first, sizeof v->first, "verify: %.200s", line);
}

static int
note_is(const struct store_record *rec, const char *note)
{
    struct proto_content c;
    int same;

    if (!note[0] || !rec->content || proto_content_parse(rec->content, rec->content_len, &c, NULL))
        return 0;
    same = c.note && strcmp(c.note, note) == 0;
    proto_content_release(&c);
    return same;
}

/* After the reboot: the store opens, every saved record is there with the
 * content last reported saved, verify passes, and a new record can be added. */
static void
check_after(const char *home, const struct run *r, struct verdict *v)
{
    struct store *s = NULL;
    struct fs_err err;
    uint64_t problems = 0, entries = 0;
    size_t i;

    memset(v, 0, sizeof *v);
    if (store_open(home, &s, &err) != FS_OK) {
        v->open_failed = 1;
        snprintf(v->first, sizeof v->first, "reopen: %.200s", err.msg);
        return;
    }
    for (i = 0; i < r->n; i++) {
        struct store_record rec;
        const struct saved *sv = &r->recs[i];

        memset(&rec, 0, sizeof rec);
        if (store_record_get(s, sv->id, &rec, &err) != FS_OK || rec.state != PROTO_REC_LIVE ||
            !(note_is(&rec, sv->note) || note_is(&rec, sv->alt_note))) {
            if (!v->lost && !v->first[0])
                snprintf(v->first, sizeof v->first, "lost: record %s (%s)", sv->id, sv->note);
            v->lost++;
        }
        store_record_release(&rec);
    }
    if (store_verify(s, count_problem, v, &problems, &entries, &err) != FS_OK) {
        v->problems++;
        if (!v->first[0])
            snprintf(v->first, sizeof v->first, "verify: %.200s", err.msg);
    }
    {
        struct proto_content c;
        char id[PROTO_UUID_LEN + 1];

        make_content(&c, "after the reboot");
        if (store_record_create(s, &c, NULL, id, &err) != FS_OK) {
            v->resume_failed = 1;
            if (!v->first[0])
                snprintf(v->first, sizeof v->first, "resume: %.200s", err.msg);
        }
        proto_content_release(&c);
    }
    store_close(s);
}

/* ---- files ------------------------------------------------------------------------ */

static void
rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096];

    if (!d)
        return;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0)
            rm_dir(p);
    }
    closedir(d);
    rmdir(dir);
}

static void
copy_store(const char *from, const char *to)
{
    static const char *const names[] = {STORE_KEY_NAME, STORE_DB_NAME};
    char a[4096], b[4096];
    unsigned char *p;
    size_t n, i;

    rm_dir(to);
    if (mkdir(to, 0700) != 0) {
        fprintf(stderr, "rel_powerloss: cannot create %s: %s\n", to, strerror(errno));
        exit(70);
    }
    for (i = 0; i < FS_ARRAY_LEN(names); i++) {
        snprintf(a, sizeof a, "%s/%s", from, names[i]);
        snprintf(b, sizeof b, "%s/%s", to, names[i]);
        if (read_file(a, &p, &n) != 0 || !p || write_file(b, p, n) != 0 || chmod(b, 0600) != 0) {
            fprintf(stderr, "rel_powerloss: cannot copy %s\n", a);
            exit(70);
        }
        free(p);
    }
}

/* ---- one crash point --------------------------------------------------------------- */

struct tally {
    uint64_t points, saved, lost, bad_open, problems, resume_failed, max_ops;
    char first[512];
};

/* Runs the workload once with the power going at op k (0: never); returns
 * the number of operations it performed. */
static uint64_t
one_run(const char *tmpl, const char *home, uint64_t k, enum crash_mode mode, uint64_t seed,
        struct tally *t, struct run *r)
{
    struct verdict v;
    uint64_t ops;

    copy_store(tmpl, home);
    tracked_reset_all();
    g.ops = 0;
    g.crash_at = k;
    g.crashed = 0;
    g.mode = mode;
    g.rng = seed;
    workload(home, r);
    if (g.open_files != 0) {
        fprintf(stderr, "rel_powerloss: %d files still open after close\n", g.open_files);
        exit(70);
    }
    ops = g.ops;
    if (g.crashed && crash_images_write() != 0)
        exit(70);
    /* The reboot. */
    tracked_reset_all();
    g.crashed = 0;
    g.crash_at = 0;
    check_after(home, r, &v);
    if (k) {
        t->points++;
        t->saved += r->n;
        t->lost += v.lost;
        t->problems += v.problems;
        t->bad_open += (uint64_t)v.open_failed;
        t->resume_failed += (uint64_t)v.resume_failed;
        if (v.first[0] && !t->first[0])
            snprintf(t->first, sizeof t->first, "k=%" PRIu64 " seed=%" PRIu64 ": %.300s", k, seed,
                     v.first);
    }
    return ops;
}

/* Every crash point 1..total (every stride-th in the NORMAL comparison),
 * seeds times each in tear mode. */
static void
sweep(const char *tmpl, const char *home, enum crash_mode mode, unsigned seeds, uint64_t stride,
      struct tally *t, struct run *r)
{
    uint64_t total, k;
    unsigned sd;

    memset(t, 0, sizeof *t);
    total = one_run(tmpl, home, 0, mode, 1, t, r);
    t->max_ops = total;
    for (k = 1; k <= total; k += stride)
        for (sd = 0; sd < (mode == MODE_TEAR ? seeds : 1); sd++)
            one_run(tmpl, home, k, mode, 1000003ull * k + sd, t, r);
}

static const char *
sync_name(void)
{
    static char out[16];
    sqlite3_stmt *st = NULL;
    int v = -1;

    if (g.last_db &&
        sqlite3_prepare_v2(g.last_db, "PRAGMA synchronous", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    snprintf(out, sizeof out, "%s",
             v == 2   ? "FULL"
             : v == 1 ? "NORMAL"
             : v == 3 ? "EXTRA"
             : v == 0 ? "OFF"
                      : "?");
    return out;
}

/* The synchronous level the store's connections actually run with. */
static const char *
probe_sync(const char *tmpl, const char *home)
{
    struct store *s = NULL;
    struct fs_err err;
    const char *name = "?";

    copy_store(tmpl, home);
    tracked_reset_all();
    if (store_open(home, &s, &err) == FS_OK)
        name = sync_name();
    store_close(s);
    return name;
}

int
main(void)
{
    const char *soak = getenv("FS_SOAK"), *tmpdir = getenv("TMPDIR");
    int soaking = soak && strcmp(soak, "1") == 0;
    char root[4096], tmpl[4200], home[4200], sync_full[16], sync_normal[16];
    unsigned char feed[PROTO_KEY_BYTES];
    struct fs_err err;
    struct tally drop, tear, normal;
    struct run r;
    struct timespec t0, t1;
    unsigned seeds = soaking ? 3 : 1;
    int fail = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (proto_init()) {
        fprintf(stderr, "rel_powerloss: cannot initialise libsodium\n");
        return 70;
    }
    g.real = sqlite3_vfs_find(NULL);
    if (!g.real) {
        fprintf(stderr, "rel_powerloss: no default SQLite VFS\n");
        return 70;
    }
    crash_vfs.szOsFile = (int)sizeof(struct cfile) + g.real->szOsFile;
    crash_vfs.mxPathname = g.real->mxPathname;
    if (sqlite3_vfs_register(&crash_vfs, 1) != SQLITE_OK ||
        sqlite3_auto_extension((void (*)(void))on_connection) != SQLITE_OK) {
        fprintf(stderr, "rel_powerloss: cannot register the crash VFS\n");
        return 70;
    }
    snprintf(root, sizeof root, "%s/fs-powerloss-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(root)) {
        fprintf(stderr, "rel_powerloss: cannot create a temporary folder\n");
        return 70;
    }
    snprintf(tmpl, sizeof tmpl, "%s/template", root);
    snprintf(home, sizeof home, "%s/store", root);
    if (store_init(tmpl, "power loss laptop", feed, &err) != FS_OK) {
        fprintf(stderr, "rel_powerloss: %s\n", err.msg);
        rm_dir(root);
        return 70;
    }
    memset(&r, 0, sizeof r);
    r.sessions = soaking ? 16 : 6;
    r.per_session = soaking ? 4 : 3;

    snprintf(sync_full, sizeof sync_full, "%s", probe_sync(tmpl, home));
    sweep(tmpl, home, MODE_DROP, 1, 1, &drop, &r);
    sweep(tmpl, home, MODE_TEAR, seeds, 1, &tear, &r);
    /* The same workload with synchronous=NORMAL: the harness must see it lose. */
    g.unsafe_normal = 1;
    snprintf(sync_normal, sizeof sync_normal, "%s", probe_sync(tmpl, home));
    sweep(tmpl, home, MODE_DROP, 1, 1, &normal, &r);
    g.unsafe_normal = 0;
    tracked_reset_all();
    clock_gettime(CLOCK_MONOTONIC, &t1);

    fail = drop.lost || drop.problems || drop.bad_open || drop.resume_failed || tear.lost ||
           tear.problems || tear.bad_open || tear.resume_failed || normal.lost == 0 ||
           drop.points == 0;
    printf("power-loss sync=%s ops=%" PRIu64 " points=%" PRIu64 " saved=%" PRIu64 " lost=%" PRIu64
           " torn_points=%" PRIu64 " torn_lost=%" PRIu64 " integrity=%s"
           " | sync=%s points=%" PRIu64 " lost=%" PRIu64 " (must be >0) | %.1fs%s\n",
           sync_full, drop.max_ops, drop.points, drop.saved, drop.lost, tear.points, tear.lost,
           drop.problems + tear.problems + drop.bad_open + tear.bad_open ? "BAD" : "ok",
           sync_normal, normal.points, normal.lost,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
           soaking ? " soak" : "");
    if (drop.first[0])
        fprintf(stderr, "power-loss (drop): first problem at %s\n", drop.first);
    if (tear.first[0])
        fprintf(stderr, "power-loss (tear): first problem at %s\n", tear.first);
    if (normal.lost == 0)
        fprintf(stderr, "power-loss: synchronous=NORMAL lost nothing: the simulation is blind\n");
    free(r.recs);
    rm_dir(root);
    return fail ? 1 : 0;
}
