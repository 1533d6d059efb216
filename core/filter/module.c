/* module.c - loading a filter shared object: a private copy (in memory where the kernel allows) is
 * dlopen'ed, so a file replaced on disk takes effect on the next load and an old generation keeps its own
 * code; then the one exported descriptor is checked before anything else is touched: ABI major equal,
 * minor not newer, size sane, name valid. */
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where the private copy goes when memfd_create is not available (old kernels, seccomp): an unnamed
 * O_TMPFILE file in this directory, or, where that is refused too, a named one unlinked right after
 * dlopen. GW_FILTER_COPY_DIR, else TMPDIR, else /tmp; it must allow mapping executable code (not noexec). */
static const char *copy_dir(void)
{
    const char *d = getenv("GW_FILTER_COPY_DIR");
    if (!d || !*d) d = getenv("TMPDIR");
    return d && *d ? d : "/tmp";
}

static bool copy_into(int in, int out)
{
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w <= 0) return false;
            done += w;
        }
    return n == 0;
}

/* An unnamed copy (memfd, else O_TMPFILE) loaded through /proc/self/fd/N: nothing is ever on disk under
 * a name, whatever happens to the process. The descriptor stays open while the module is loaded, so that no
 * later copy gets the same /proc path (the dynamic loader matches objects by name). NULL with *fd -1 when
 * no unnamed copy is possible here (the caller falls back to a named file). */
static void *load_unnamed(const char *file, int in, int *fd, char **err)
{
    *fd = memfd_create("gw-filter", MFD_CLOEXEC);
    if (*fd < 0) *fd = open(copy_dir(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0700);
    if (*fd < 0) return NULL;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", *fd);
    void *stale = access(path, R_OK) == 0 ? dlopen(path, RTLD_NOW | RTLD_NOLOAD) : NULL;
    if (stale || access(path, R_OK) != 0 || !copy_into(in, *fd)) { /* no /proc, or a name still taken */
        if (stale) dlclose(stale);
        close(*fd);
        *fd = -1;
        return NULL;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        *err = gw_strdupf("%s: cannot load: %s", file, dlerror());
        close(*fd);
        *fd = -2; /* a real failure: no fallback */
    }
    return h;
}

/* The fallback: a named copy in copy_dir(), unlinked as soon as it is mapped. */
static void *load_named(const char *file, int in, char **err)
{
    char *path = gw_strdupf("%s/gw-filter-XXXXXX.so", copy_dir());
    int out = path ? mkstemps(path, 3) : -1;
    if (out < 0) {
        *err = gw_strdupf("%s: cannot make a private copy in %s: %s", file, copy_dir(), strerror(errno));
        free(path);
        return NULL;
    }
    bool ok = copy_into(in, out);
    if (close(out) != 0 || !ok) {
        *err = gw_strdupf("%s: cannot make a private copy: %s", file, strerror(errno ? errno : EIO));
        unlink(path);
        free(path);
        return NULL;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    unlink(path); /* the mapping stays */
    free(path);
    if (!h) *err = gw_strdupf("%s: cannot load: %s", file, dlerror());
    return h;
}

/* dlopen of a private copy of `file`: a file replaced on disk takes effect on the next load, and a loaded
 * generation keeps its own code. */
static void *load_copy(const char *file, int *fd, char **err)
{
    *fd = -1;
    int in = open(file, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        *err = gw_strdupf("%s: cannot open: %s", file, strerror(errno));
        return NULL;
    }
    void *h = load_unnamed(file, in, fd, err);
    if (!h && *fd == -1 && lseek(in, 0, SEEK_SET) == 0) h = load_named(file, in, err);
    if (*fd < -1) *fd = -1;
    close(in);
    return h;
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
    int fd;
    void *h = load_copy(file, &fd, err);
    if (!h) return NULL;
    const gw_filter_desc *d = dlsym(h, GW_FILTER_SYMBOL);
    gw_module *m = NULL;
    if (!d)
        *err = gw_strdupf("%s: not a gateway filter: no exported symbol '%s'", file, GW_FILTER_SYMBOL);
    else if (!(*err = check_desc(file, d))) /* only the first three fields exist before this check */
        m = calloc(1, sizeof *m);
    if (!m) {
        if (!*err) *err = gw_strdupf("%s: out of memory", file);
        dlclose(h);
        if (fd >= 0) close(fd);
        return NULL;
    }
    m->handle = h;
    m->copy_fd = fd;
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
    if (m->copy_fd >= 0) close(m->copy_fd); /* after dlclose: the /proc name stays ours while loaded */
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
