/* module.c - loading a filter shared object: a private copy is dlopen'ed (so a file replaced on disk takes
 * effect on the next load and an old generation keeps its own code), then the one exported descriptor is
 * checked before anything else is touched: ABI major equal, minor not newer, size sane, name valid. */
#include "module.h"

#include "conf_settings.h"
#include "util.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Copies src to a fresh file in the temp directory; returns its path (malloc'd) or NULL. */
static char *private_copy(const char *src, char **err)
{
    const char *tmp = getenv("TMPDIR");
    char *path = gw_strdupf("%s/gw-filter-XXXXXX.so", tmp && *tmp ? tmp : "/tmp");
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        *err = gw_strdupf("%s: cannot open: %s", src, strerror(errno));
        free(path);
        return NULL;
    }
    int out = path ? mkstemps(path, 3) : -1;
    if (out < 0) {
        *err = gw_strdupf("%s: cannot make a private copy: %s", src, strerror(errno));
        close(in);
        free(path);
        return NULL;
    }
    char buf[65536];
    ssize_t n;
    bool ok = true;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n) ok = false;
    if (n < 0) ok = false;
    close(in);
    if (close(out) != 0 || !ok) {
        *err = gw_strdupf("%s: cannot make a private copy: %s", src, strerror(errno ? errno : EIO));
        unlink(path);
        free(path);
        return NULL;
    }
    return path;
}

static bool valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-')) return false;
    return true;
}

static char *check_desc(const char *file, const gw_filter_desc *d)
{
    if (d->abi_major != GW_ABI_MAJOR)
        return gw_strdupf("%s: built for filter ABI %u.%u, this gateway has %u.%u (major versions differ)", file,
                   d->abi_major, d->abi_minor, GW_ABI_MAJOR, GW_ABI_MINOR);
    if (d->abi_minor > GW_ABI_MINOR)
        return gw_strdupf("%s: built for filter ABI %u.%u, this gateway has %u.%u (the filter is newer)", file,
                   d->abi_major, d->abi_minor, GW_ABI_MAJOR, GW_ABI_MINOR);
    /* every 1.x descriptor reaches at least the end of 1.0's last named member */
    if (d->struct_size < offsetof(gw_filter_desc, settings) || d->struct_size > 65536)
        return gw_strdupf("%s: descriptor size %u is not valid for filter ABI %u.%u", file, d->struct_size,
                   d->abi_major, d->abi_minor);
    if (!valid_name(d->name)) return gw_strdupf("%s: the descriptor's name is missing or not [a-z0-9_-]+", file);
    if (!d->version) return gw_strdupf("%s: the descriptor has no version", file);
    return NULL;
}

gw_module *gw_module_load(const char *file, char **err)
{
    *err = NULL;
    char *copy = private_copy(file, err);
    if (!copy) return NULL;
    void *h = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
    unlink(copy); /* the mapping stays; nothing is left behind on disk */
    free(copy);
    if (!h) {
        *err = gw_strdupf("%s: cannot load: %s", file, dlerror());
        return NULL;
    }
    const gw_filter_desc *d = dlsym(h, GW_FILTER_SYMBOL);
    if (!d) {
        *err = gw_strdupf("%s: not a gateway filter: no exported symbol '%s'", file, GW_FILTER_SYMBOL);
        dlclose(h);
        return NULL;
    }
    /* Only the first three fields are known to exist before the version check. */
    if ((*err = check_desc(file, d))) {
        dlclose(h);
        return NULL;
    }
    gw_module *m = calloc(1, sizeof *m);
    if (!m) {
        dlclose(h);
        *err = gw_strdupf("%s: out of memory", file);
        return NULL;
    }
    m->handle = h;
    m->path = strdup(file);
    size_t n = d->struct_size < sizeof m->desc ? d->struct_size : sizeof m->desc;
    memcpy(&m->desc, d, n); /* members the filter does not know about stay zero (NULL) */
    if (d->abi_minor < 1) {
        /* 1.0 had reserved slots where 1.1's members are: whatever a 1.0 filter left there means nothing */
        m->desc.settings = NULL;
        m->desc.settings_size = 0;
        m->desc.on_request_body = NULL;
        m->desc.on_response_body = NULL;
    }
    m->desc.struct_size = (uint32_t)sizeof m->desc;
    char terr[512];
    const gw_filter_desc *d11 = &m->desc;
    if (gw_settings_table_check(d11->name, d11->settings, d11->settings_size, terr, sizeof terr) != 0) {
        *err = gw_strdupf("%s: %s", file, terr);
        gw_module_free(m);
        return NULL;
    }
    m->built_major = d->abi_major;
    m->built_minor = d->abi_minor;
    m->file_struct_size = d->struct_size;
    return m;
}

void gw_module_free(gw_module *m)
{
    if (!m) return;
    if (m->handle) dlclose(m->handle);
    free(m->path);
    free(m);
}

static void print_phases(FILE *out, const gw_filter_desc *d)
{
    const char *names[] = {"request", "upstream_request", "upstream_response", "response", "log",
                           "request_body", "response_body"};
    bool has[] = {d->on_request, d->on_upstream_request, d->on_upstream_response, d->on_response, d->on_log,
                  d->on_request_body, d->on_response_body};
    const char *sep = "";
    fprintf(out, "phases:      ");
    for (int i = 0; i < 7; i++)
        if (has[i]) {
            fprintf(out, "%s%s", sep, names[i]);
            sep = ", ";
        }
    fprintf(out, "%s\n", *sep ? "" : "(none)");
}

int gw_module_check_cli(const char *file)
{
    char *err = NULL;
    gw_module *m = gw_module_load(file, &err);
    if (!m) {
        printf("file:        %s\nverdict:     REFUSED: %s\n", file, err ? err : "unknown error");
        free(err);
        return 1;
    }
    const gw_filter_desc *d = &m->desc;
    printf("file:        %s\nname:        %s\nversion:     %s\n", file, d->name, d->version);
    if (d->description) printf("description: %s\n", d->description);
    printf("abi:         %u.%u (this gateway: %u.%u)\n", m->built_major, m->built_minor, GW_ABI_MAJOR,
           GW_ABI_MINOR);
    printf("descriptor:  %u bytes (this gateway reads %zu)\n", m->file_struct_size, sizeof(gw_filter_desc));
    print_phases(stdout, d);
    printf("state:       %zu bytes per request\nverdict:     compatible\n", d->req_state_size);
    gw_module_free(m);
    return 0;
}
