/* th_hdrs.c - the test host's header lists (request, upstream and response header sets): name and value
 * checks as the gateway applies them, set/add/remove and copies. */
#include "th_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------------------------------------
 * header lists */

bool th_hdr_name_ok(const char *name)
{
    if (!name || !*name) return false;
    for (const char *p = name; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return true;
}

bool th_hdr_value_ok(const char *value, size_t len)
{
    if (!value) return len == 0;
    for (size_t i = 0; i < len; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0') return false;
    return true;
}

int th_hdrs_add(th_hdrs *h, const char *name, const char *value, size_t len, bool from_upstream)
{
    if (!th_hdr_name_ok(name) || !th_hdr_value_ok(value, len)) return -1;
    h->v = th_grow(h->v, &h->cap, h->n + 1, sizeof *h->v);
    th_hdr *e = &h->v[h->n++];
    e->name = th_xstrdup(name);
    e->value = th_xmemdup(value ? value : "", len);
    e->vlen = len;
    e->from_upstream = from_upstream;
    return 0;
}

static void hdr_free(th_hdr *e)
{
    free(e->name);
    free(e->value);
}

static void hdrs_delete_at(th_hdrs *h, size_t i)
{
    hdr_free(&h->v[i]);
    memmove(&h->v[i], &h->v[i + 1], (h->n - i - 1) * sizeof *h->v);
    h->n--;
}

int th_hdrs_set(th_hdrs *h, const char *name, const char *value, size_t len)
{
    if (!th_hdr_name_ok(name) || !th_hdr_value_ok(value, len)) return -1;
    size_t first = h->n;
    for (size_t i = 0; i < h->n;) {
        if (strcasecmp(h->v[i].name, name) != 0) {
            i++;
        } else if (first == h->n) {
            first = i++;
        } else {
            hdrs_delete_at(h, i);
        }
    }
    if (first == h->n) return th_hdrs_add(h, name, value, len, false);
    th_hdr *e = &h->v[first];
    free(e->value);
    e->value = th_xmemdup(value ? value : "", len);
    e->vlen = len;
    e->from_upstream = false;
    return 0;
}

size_t th_hdrs_remove(th_hdrs *h, const char *name)
{
    size_t removed = 0;
    for (size_t i = 0; i < h->n;)
        if (strcasecmp(h->v[i].name, name) == 0) {
            hdrs_delete_at(h, i);
            removed++;
        } else {
            i++;
        }
    return removed;
}

void th_hdrs_remove_upstream(th_hdrs *h)
{
    for (size_t i = 0; i < h->n;)
        if (h->v[i].from_upstream) hdrs_delete_at(h, i);
        else i++;
}

const th_hdr *th_hdrs_get(const th_hdrs *h, const char *name)
{
    for (size_t i = 0; name && i < h->n; i++)
        if (strcasecmp(h->v[i].name, name) == 0) return &h->v[i];
    return NULL;
}

size_t th_hdrs_count(const th_hdrs *h, const char *name)
{
    if (!name) return h->n;
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        if (strcasecmp(h->v[i].name, name) == 0) n++;
    return n;
}

int th_hdrs_copy(th_hdrs *dst, const th_hdrs *src)
{
    th_hdrs_clear(dst);
    for (size_t i = 0; i < src->n; i++)
        if (th_hdrs_add(dst, src->v[i].name, src->v[i].value, src->v[i].vlen, src->v[i].from_upstream) != 0)
            return -1;
    return 0;
}

void th_hdrs_clear(th_hdrs *h)
{
    for (size_t i = 0; i < h->n; i++)
        hdr_free(&h->v[i]);
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
