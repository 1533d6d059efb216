/* module.h - a loaded filter shared object and its checked descriptor. */
#ifndef GW_MODULE_H
#define GW_MODULE_H

#include <gw/filter.h>

#include <stdbool.h>

typedef struct gw_module {
    void *handle;         /* dlopen handle of the private copy */
    int copy_fd;          /* the unnamed copy (memfd / O_TMPFILE) while loaded, else -1 */
    char *path;           /* the file as configured */
    gw_filter_desc desc;  /* zero-extended copy: members the filter predates are NULL */
    unsigned built_major, built_minor;
    unsigned file_struct_size; /* struct_size as the filter declared it */
} gw_module;

/* Loads `file` (a private copy of it) and checks its descriptor. NULL + *err (malloc'd) naming the file and,
 * for version mismatches, both ABI versions. */
gw_module *gw_module_load(const char *file, char **err);
void gw_module_free(gw_module *m);

/* `gateway --check-filter FILE`: prints the descriptor and the verdict; returns the exit code. */
int gw_module_check_cli(const char *file);

/* `gateway --describe-filter FILE [--json]` (describe.c): the descriptor and its settings table; returns
 * the exit code (as --check-filter: 0, or 1 when the filter cannot be loaded). */
int gw_module_describe_cli(const char *file, bool json);

#endif
