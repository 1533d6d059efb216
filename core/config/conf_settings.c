/* conf_settings.c - filter settings tables (ABI 1.1): the host checks a filter's YAML against the table the
 * filter declares and fills its settings struct, so filters stop hand-reading YAML. Defaults are parsed by
 * the same code as YAML values; everything allocated for a struct hangs off a hidden header in front of
 * it and goes with gw_settings_free. Built into the gateway and the SDK test host alike. */
#include "conf_settings.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_api.h"
#include "config.h"
#include "config_schema.h"
#include "http.h" /* gw_path_normalize for route prefixes */

#define MAX_STRUCT (1u << 20)
#define MAX_ITEM 4096 /* bytes of one list item or prefix */

/* Allocation header: a struct's own header heads the chain of its allocations. */
typedef union blk blk;
union blk {
    blk *next;
    max_align_t align;
};

typedef union {
    int64_t i;
    double d;
    bool b;
    uint64_t u;
    int e;
    const char *s;
    gw_list l;
    const gw_conf *raw;
} slot_val;

typedef struct {
    const char *filter;
    const gw_setting *s;
    const gw_yaml_node *at; /* where the value is; NULL while parsing a default */
    blk *owner;
    bool def; /* parsing the table's defaults (a fault of the filter, not of the configuration) */
    char *err;
    size_t errlen;
} pctx;

static int fail(const pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const pctx *c, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!c->err || !c->errlen) return -1;
    if (c->at)
        snprintf(c->err, c->errlen, "%s:%d:%d: %s.%s: %s", c->at->file ? c->at->file : "?", c->at->line,
                 c->at->col, c->filter, c->s->name, msg);
    else if (c->def)
        snprintf(c->err, c->errlen, "filter '%s': setting '%s': default: %s", c->filter, c->s->name, msg);
    else
        snprintf(c->err, c->errlen, "%s.%s: %s", c->filter, c->s->name, msg);
    return -1;
}

static void *own(blk *owner, size_t n)
{
    blk *b = malloc(sizeof *b + (n ? n : 1));
    if (!b) return NULL;
    b->next = owner->next;
    owner->next = b;
    return b + 1;
}

static char *own_str(blk *owner, const char *s, size_t n)
{
    char *d = own(owner, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void chain_free(blk *b)
{
    while (b) {
        blk *next = b->next;
        free(b);
        b = next;
    }
}

static size_t slot_size(int type)
{
    switch (type) {
    case GW_SET_INT:
        return sizeof(int64_t);
    case GW_SET_NUMBER:
        return sizeof(double);
    case GW_SET_BOOL:
        return sizeof(bool);
    case GW_SET_DURATION:
    case GW_SET_SIZE:
        return sizeof(uint64_t);
    case GW_SET_ENUM:
        return sizeof(int);
    case GW_SET_STRING:
        return sizeof(const char *);
    case GW_SET_STRINGS:
    case GW_SET_CIDRS:
    case GW_SET_PREFIXES:
        return sizeof(gw_list);
    case GW_SET_RAW:
        return sizeof(const gw_conf *);
    default:
        return 0;
    }
}

static bool is_list(int type)
{
    return type == GW_SET_STRINGS || type == GW_SET_CIDRS || type == GW_SET_PREFIXES;
}

static int range_check(const pctx *c, double v, const char *text)
{
    const gw_setting *s = c->s;
    if (!(s->min < s->max) || (v >= s->min && v <= s->max)) return 0;
    char allowed[128];
    gw_settings_allowed_text(s, allowed, sizeof allowed);
    return fail(c, "%s is out of range %s", text, allowed);
}

/* " (1..100)" for a message about a value of the wrong shape. */
static const char *range_hint(const gw_setting *s, char *buf, size_t cap)
{
    char allowed[128];
    gw_settings_allowed_text(s, allowed, sizeof allowed);
    if (allowed[0])
        snprintf(buf, cap, " (%s)", allowed);
    else
        buf[0] = '\0';
    return buf;
}

static int parse_number(const pctx *c, const char *v, slot_val *out)
{
    const gw_setting *s = c->s;
    char hint[160];
    char *end;
    errno = 0;
    double x;
    if (s->type == GW_SET_INT) {
        long long i = strtoll(v, &end, 10);
        if (errno || end == v || *end || v[0] == '+' || v[0] == ' ')
            return fail(c, "expected an integer%s, got '%s'", range_hint(s, hint, sizeof hint), v);
        out->i = i;
        x = (double)i;
    } else if (s->type == GW_SET_NUMBER) {
        x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x) || v[0] == ' ')
            return fail(c, "expected a number%s, got '%s'", range_hint(s, hint, sizeof hint), v);
        out->d = x;
    } else if (s->type == GW_SET_DURATION) {
        if (!gw_parse_duration_ms(v, &out->u))
            return fail(c, "expected a duration like 250ms, 10s, 2m, 1h%s, got '%s'",
                        range_hint(s, hint, sizeof hint), v);
        x = (double)out->u;
    } else {
        if (!gw_parse_size(v, &out->u))
            return fail(c, "expected a size like 512, 64k, 10m, 1g%s, got '%s'",
                        range_hint(s, hint, sizeof hint), v);
        x = (double)out->u;
    }
    return range_check(c, x, v);
}

static int parse_enum(const pctx *c, const char *v, slot_val *out)
{
    for (int i = 0; c->s->names && c->s->names[i]; i++)
        if (strcmp(v, c->s->names[i]) == 0) {
            out->e = i;
            return 0;
        }
    char allowed[256];
    gw_settings_allowed_text(c->s, allowed, sizeof allowed);
    return fail(c, "'%s' is not one of %s", v, allowed);
}

static int parse_scalar(const pctx *c, const char *v, slot_val *out)
{
    switch (c->s->type) {
    case GW_SET_INT:
    case GW_SET_NUMBER:
    case GW_SET_DURATION:
    case GW_SET_SIZE:
        return parse_number(c, v, out);
    case GW_SET_ENUM:
        return parse_enum(c, v, out);
    case GW_SET_BOOL:
        if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
            out->b = true;
        else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off"))
            out->b = false;
        else
            return fail(c, "expected true or false, got '%s'", v);
        return 0;
    case GW_SET_STRING:
        if (!(out->s = own_str(c->owner, v, strlen(v)))) return fail(c, "out of memory");
        return 0;
    default:
        return fail(c, "not a scalar setting");
    }
}

static int parse_cidr(const pctx *c, const char *v, gw_cidr *out)
{
    const char *slash = strchr(v, '/');
    size_t alen = slash ? (size_t)(slash - v) : strlen(v);
    char addr[64];
    memset(out, 0, sizeof *out);
    if (alen == 0 || alen >= sizeof addr) goto bad;
    memcpy(addr, v, alen);
    addr[alen] = '\0';
    unsigned max;
    if (inet_pton(AF_INET, addr, out->addr) == 1)
        out->family = 4, max = 32;
    else if (inet_pton(AF_INET6, addr, out->addr) == 1)
        out->family = 6, max = 128;
    else
        goto bad;
    unsigned bits = max;
    if (slash) {
        const char *p = slash + 1;
        if (!*p || strlen(p) > 3 || strspn(p, "0123456789") != strlen(p)) goto bad;
        bits = (unsigned)atoi(p);
        if (bits > max) goto bad;
    }
    out->bits = (uint8_t)bits;
    for (unsigned b = bits; b < 128; b++) /* host bits cleared: "10.1.2.3/8" is 10.0.0.0/8 */
        out->addr[b / 8] &= (uint8_t) ~(0x80u >> (b % 8));
    return 0;
bad:
    return fail(c, "'%s' is not an IPv4 or IPv6 address or CIDR (like 10.0.0.0/8 or ::1)", v);
}

static int parse_prefix(const pctx *c, const char *v, const char **out)
{
    size_t len = strlen(v), cap = len + 16, olen, plen;
    if (v[0] != '/' || len > MAX_ITEM) return fail(c, "'%s' is not a path prefix starting with '/'", v);
    char *buf = malloc(cap);
    if (!buf) return fail(c, "out of memory");
    if (gw_path_normalize(v, len, buf, cap, &olen, &plen) != 0 || olen != plen) {
        free(buf);
        return fail(c, "'%s' is not a valid path prefix (no query, no '..' above the root)", v);
    }
    while (plen > 1 && buf[plen - 1] == '/') /* "/health/" is "/health" */
        plen--;
    *out = own_str(c->owner, buf, plen);
    free(buf);
    return *out ? 0 : fail(c, "out of memory");
}

/* One list from n item texts; `ats` their positions (NULL for a default). */
static int parse_items(pctx *c, const char *const *texts, const gw_yaml_node *const *ats, size_t n,
                       gw_list *out)
{
    const gw_setting *s = c->s;
    size_t esz = s->type == GW_SET_CIDRS ? sizeof(gw_cidr) : sizeof(const char *);
    void *arr = n ? own(c->owner, n * esz) : NULL;
    if (n && !arr) return fail(c, "out of memory");
    const gw_yaml_node *list_at = c->at;
    for (size_t i = 0; i < n; i++) {
        if (ats) c->at = ats[i];
        int rc;
        if (s->type == GW_SET_CIDRS)
            rc = parse_cidr(c, texts[i], (gw_cidr *)arr + i);
        else if (s->type == GW_SET_PREFIXES)
            rc = parse_prefix(c, texts[i], (const char **)arr + i);
        else
            rc = (((const char **)arr)[i] = own_str(c->owner, texts[i], strlen(texts[i])))
                     ? 0
                     : fail(c, "out of memory");
        if (rc != 0) return -1;
    }
    c->at = list_at;
    if (s->min < s->max && ((double)n < s->min || (double)n > s->max)) {
        char allowed[64];
        gw_settings_allowed_text(s, allowed, sizeof allowed);
        return fail(c, "%zu items, expected %s", n, allowed);
    }
    *out = (gw_list){arr, n};
    return 0;
}

/* Items separated by ',' (blanks around each trimmed, empty ones skipped): list defaults, and a scalar
 * given where a list is expected (so `${ORIGINS:-*}` or "a, b" from an environment variable fills one). */
static int parse_split(pctx *c, const char *text, const gw_yaml_node *at, gw_list *out)
{
    size_t n = 0, cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == ',';
    const char **texts = own(c->owner, cap * sizeof *texts);
    const gw_yaml_node **ats = at ? own(c->owner, cap * sizeof *ats) : NULL;
    if (!texts || (at && !ats)) return fail(c, "out of memory");
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        const char *a = p, *e = p + len;
        while (a < e && (*a == ' ' || *a == '\t'))
            a++;
        while (e > a && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > a) {
            if (ats) ats[n] = at;
            if (!(texts[n++] = own_str(c->owner, a, (size_t)(e - a)))) return fail(c, "out of memory");
        }
        p += len + (p[len] == ',');
    }
    return parse_items(c, texts, (const gw_yaml_node *const *)ats, n, out);
}

static int parse_list_node(pctx *c, const gw_yaml_node *n, gw_list *out)
{
    if (n->kind == GW_YAML_SCALAR && !gw_cfg_is_null(n)) return parse_split(c, n->scalar, n, out);
    if (n->kind != GW_YAML_SEQ) return fail(c, "expected a list like [a, b] (or items separated by ',')");
    const char **texts = n->n ? own(c->owner, n->n * sizeof *texts) : NULL;
    if (n->n && !texts) return fail(c, "out of memory");
    for (size_t i = 0; i < n->n; i++) {
        const gw_yaml_node *it = n->items[i];
        if (it->kind != GW_YAML_SCALAR || gw_cfg_is_null(it)) {
            c->at = it;
            return fail(c, "list items must be single values");
        }
        texts[i] = it->scalar;
    }
    return parse_items(c, texts, (const gw_yaml_node *const *)n->items, n->n, out);
}

/* A default: lists are items separated by ','. */
static int parse_default(pctx *c, slot_val *out)
{
    const gw_setting *s = c->s;
    if (s->type == GW_SET_RAW) return fail(c, "a raw setting cannot have a default");
    if (!is_list(s->type)) return parse_scalar(c, s->def, out);
    return parse_split(c, s->def, NULL, &out->l);
}

static int parse_node(pctx *c, const gw_yaml_node *n, slot_val *out)
{
    c->at = n;
    if (c->s->type == GW_SET_RAW) {
        out->raw = gw_conf_of(n);
        return 0;
    }
    if (is_list(c->s->type)) return parse_list_node(c, n, &out->l);
    if (n->kind != GW_YAML_SCALAR)
        return fail(c, "expected %s, not a %s", c->s->type == GW_SET_STRING ? "a string" : "a single value",
                    n->kind == GW_YAML_SEQ ? "list" : "mapping");
    return parse_scalar(c, n->scalar, out);
}

static const gw_setting *find(const gw_setting *t, const char *key)
{
    for (; t && t->name; t++)
        if (strcmp(t->name, key) == 0) return t;
    return NULL;
}

static bool host_key(const char *k)
{
    for (size_t i = 0; gw_conf_host_keys[i]; i++)
        if (strcmp(k, gw_conf_host_keys[i]) == 0) return true;
    return false;
}

bool gw_settings_has_route(const gw_setting *t)
{
    for (; t && t->name; t++)
        if (t->flags & GW_SET_ROUTE) return true;
    return false;
}

static void key_names(const gw_setting *t, bool route, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (; t && t->name && o < cap; t++)
        if (!route || (t->flags & GW_SET_ROUTE))
            o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? ", " : "", t->name);
}

/* Unknown keys (and, per route, keys not flagged GW_SET_ROUTE). */
static int check_keys(pctx *c, const gw_setting *t, const gw_yaml_node *conf, bool route)
{
    char names[512];
    for (size_t i = 0; i < conf->n; i++) {
        const char *k = conf->keys[i]->scalar;
        const gw_setting *s = find(t, k);
        if (!s && !route && host_key(k)) continue;
        gw_setting fake = {.name = k};
        c->s = s ? s : &fake;
        c->at = conf->keys[i];
        if (!s) {
            key_names(t, route, names, sizeof names);
            return fail(c, "unknown setting (%s: %s)", route ? "per-route settings" : "allowed",
                        names[0] ? names : "none");
        }
        if (route && !(s->flags & GW_SET_ROUTE)) {
            key_names(t, true, names, sizeof names);
            return fail(c, "not a per-route setting (per-route settings: %s)", names[0] ? names : "none");
        }
    }
    return 0;
}

int gw_settings_check(const char *filter, const gw_setting *t, const gw_yaml_node *conf, bool route,
                      char *err, size_t errlen)
{
    pctx c = {.filter = filter, .err = err, .errlen = errlen};
    if (conf && conf->kind != GW_YAML_MAP) {
        snprintf(err, errlen, "%s:%d:%d: %s: settings must be a mapping of keys to values",
                 conf->file ? conf->file : "?", conf->line, conf->col, filter);
        return -1;
    }
    if (conf && check_keys(&c, t, conf, route) != 0) return -1;
    blk scratch = {.next = NULL};
    c.owner = &scratch;
    int rc = 0;
    for (const gw_setting *s = t; s && s->name && rc == 0; s++) {
        c.s = s;
        const gw_yaml_node *v = conf ? gw_yaml_get(conf, s->name) : NULL;
        if (v && gw_cfg_is_null(v)) v = NULL; /* `key:` means "not set" */
        slot_val val;
        if (v) {
            rc = parse_node(&c, v, &val);
        } else if (!route && (s->flags & GW_SET_REQUIRED)) {
            c.at = conf;
            rc = fail(&c, "required setting missing");
        }
    }
    chain_free(scratch.next);
    return rc;
}

static void put(char *base, const gw_setting *s, const slot_val *v)
{
    memcpy(base + s->offset, v, slot_size(s->type));
}

/* The map's values over what `base` holds already. */
static int apply(pctx *c, const gw_setting *t, char *base, const gw_yaml_node *conf, bool route)
{
    for (const gw_setting *s = t; conf && s->name; s++) {
        if (route && !(s->flags & GW_SET_ROUTE)) continue;
        const gw_yaml_node *v = gw_yaml_get(conf, s->name);
        if (!v || gw_cfg_is_null(v)) continue;
        slot_val val;
        c->s = s;
        if (parse_node(c, v, &val) != 0) return -1;
        put(base, s, &val);
    }
    return 0;
}

void *gw_settings_new(const char *filter, const gw_setting *t, size_t size, const gw_yaml_node *entry,
                      const gw_yaml_node *route, char *err, size_t errlen)
{
    blk *h = calloc(1, sizeof *h + (size ? size : 1));
    if (!h) {
        snprintf(err, errlen, "filter '%s': out of memory", filter);
        return NULL;
    }
    char *base = (char *)(h + 1);
    pctx c = {.filter = filter, .owner = h, .err = err, .errlen = errlen};
    for (const gw_setting *s = t; s && s->name; s++) {
        if (!s->def) continue;
        slot_val val;
        c.s = s;
        c.at = NULL;
        c.def = true;
        if (parse_default(&c, &val) != 0) goto fail;
        put(base, s, &val);
    }
    c.def = false;
    if (entry && entry->kind == GW_YAML_MAP && apply(&c, t, base, entry, false) != 0) goto fail;
    if (route && route->kind == GW_YAML_MAP && apply(&c, t, base, route, true) != 0) goto fail;
    return base;
fail:
    gw_settings_free(base);
    return NULL;
}

void gw_settings_free(void *settings)
{
    if (!settings) return;
    blk *h = (blk *)settings - 1;
    chain_free(h->next);
    free(h);
}

static int table_entry_check(pctx *c, const gw_setting *s, const gw_setting *t, size_t size)
{
    c->s = s;
    c->at = NULL;
    const char *p = s->name;
    if (!*p || strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_-.") != strlen(p))
        return snprintf(c->err, c->errlen, "filter '%s': setting '%s': the name is not [a-z0-9_.-]+",
                        c->filter, p),
               -1;
    if (host_key(p))
        return snprintf(c->err, c->errlen, "filter '%s': setting '%s': the name is the host's", c->filter, p),
               -1;
    if (find(t, p) != s)
        return snprintf(c->err, c->errlen, "filter '%s': setting '%s' is listed twice", c->filter, p), -1;
    size_t ss = slot_size(s->type);
    if (s->type <= GW_SET_END || !ss)
        return snprintf(c->err, c->errlen, "filter '%s': setting '%s': unknown type %d", c->filter, p,
                        s->type),
               -1;
    if (s->offset > size || size - s->offset < ss)
        return snprintf(c->err, c->errlen,
                        "filter '%s': setting '%s': offset %zu is outside settings_size %zu", c->filter, p,
                        s->offset, size),
               -1;
    if (s->type == GW_SET_ENUM && (!s->names || !s->names[0]))
        return snprintf(c->err, c->errlen, "filter '%s': setting '%s': an enum needs names", c->filter, p),
               -1;
    return 0;
}

int gw_settings_table_check(const char *filter, const gw_setting *t, size_t size, char *err, size_t errlen)
{
    if (!t) return 0;
    if (size == 0 || size > MAX_STRUCT) {
        snprintf(err, errlen, "filter '%s': settings_size %zu is not valid for a settings table", filter,
                 size);
        return -1;
    }
    pctx c = {.filter = filter, .err = err, .errlen = errlen};
    for (const gw_setting *s = t; s->name; s++)
        if (table_entry_check(&c, s, t, size) != 0) return -1;
    /* The defaults must parse (and lie in range): fill a struct from nothing. */
    void *probe = gw_settings_new(filter, t, size, NULL, NULL, err, errlen);
    if (!probe) return -1;
    gw_settings_free(probe);
    return 0;
}
