/* store_file.c - reading and durably writing the embedded store's file (format in store_file.h). */
#include "store_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define MAGIC "gateway-store 1\n"

int gw_store_file_begin(gw_store_file_writer *w, const char *tmp)
{
    w->tmp = tmp;
    w->f = fopen(tmp, "we");
    if (!w->f) return -1;
    if (fputs(MAGIC, w->f) == EOF) return -1;
    return 0;
}

int gw_store_file_record(gw_store_file_writer *w, const char *k, size_t kl, const char *v, size_t vl)
{
    if (fprintf(w->f, "%zu %zu\n", kl, vl) < 0) return -1;
    if (fwrite(k, 1, kl, w->f) != kl || fwrite(v, 1, vl, w->f) != vl || fputc('\n', w->f) == EOF) return -1;
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int gw_store_file_commit(gw_store_file_writer *w, bool ok, const char *file, const char *dir)
{
    if (!w->f) return -1;
    if (ok && (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)) ok = false;
    if (fclose(w->f) != 0) ok = false;
    w->f = NULL;
    if (!ok || rename(w->tmp, file) != 0) {
        int e = errno;
        unlink(w->tmp);
        errno = e;
        return -1;
    }
    return fsync_dir(dir);
}

static int corrupt(char **err, const char *file, long off)
{
    *err = gw_strdupf("store: %s is corrupt at byte %ld (move it away to start empty)", file, off);
    return -1;
}

int gw_store_file_load(const char *file, int (*fn)(void *, const char *, size_t, const char *, size_t), void *arg,
                       char **err)
{
    FILE *f = fopen(file, "re");
    if (!f) {
        if (errno == ENOENT) return 0;
        *err = gw_strdupf("store: cannot read %s: %s", file, strerror(errno));
        return -1;
    }
    char magic[sizeof MAGIC];
    int rc = 0;
    if (!fgets(magic, sizeof magic, f) || strcmp(magic, MAGIC) != 0) {
        rc = corrupt(err, file, 0);
        goto out;
    }
    for (;;) {
        long off = ftell(f);
        size_t kl, vl;
        int n = fscanf(f, "%zu %zu", &kl, &vl);
        if (n == EOF) break;
        if (n != 2 || fgetc(f) != '\n' || kl > (1u << 20) || vl > (64u << 20)) {
            rc = corrupt(err, file, off);
            break;
        }
        char *buf = malloc(kl + vl + 1);
        if (!buf || fread(buf, 1, kl + vl, f) != kl + vl || fgetc(f) != '\n') {
            free(buf);
            rc = corrupt(err, file, off);
            break;
        }
        if (fn(arg, buf, kl, buf + kl, vl) != 0) {
            free(buf);
            *err = gw_strdupf("store: out of memory loading %s", file);
            rc = -1;
            break;
        }
        free(buf);
    }
out:
    fclose(f);
    return rc;
}
