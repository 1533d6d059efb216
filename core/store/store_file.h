/* store_file.h - the embedded store's file: a header line, then length-prefixed records
 * ("<klen> <vlen>\n<key><value>\n"), binary-safe. Written whole to a temporary file, fsync'ed, renamed over
 * the old one, and the directory fsync'ed, so a crash leaves either the old or the new file. */
#ifndef GW_STORE_FILE_H
#define GW_STORE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE *f;
    const char *tmp;
} gw_store_file_writer;

int gw_store_file_begin(gw_store_file_writer *w, const char *tmp);
int gw_store_file_record(gw_store_file_writer *w, const char *k, size_t kl, const char *v, size_t vl);
/* ok = false: discard the temporary file. Returns 0 when the new file is durable. */
int gw_store_file_commit(gw_store_file_writer *w, bool ok, const char *file, const char *dir);

/* Calls fn for every record; a missing file is an empty store. On a corrupt file: -1 and *err naming the
 * file and the byte offset. */
int gw_store_file_load(const char *file, int (*fn)(void *, const char *, size_t, const char *, size_t), void *arg,
                       char **err);

#endif
