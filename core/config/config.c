/* config.c - the configuration loader engine: walks the YAML tree with the key descriptors from
 * config_schema.c, parses the value types (integers, booleans, durations, sizes, ...) and frees it all. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_schema.h"

static char *vdupf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static char *vdupf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    char *s = n < 0 ? NULL : malloc((size_t)n + 1);
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static bool vfail(gw_cfg_ctx *c, const gw_yaml_node *at, bool with_path, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static bool vfail(gw_cfg_ctx *c, const gw_yaml_node *at, bool with_path, const char *fmt, va_list ap)
{
    if (c->err) /* the first error is the one worth reading */
        return false;
    char *msg = vdupf(fmt, ap);
    const char *sep = with_path && c->plen ? ": " : "";
    const char *path = with_path ? c->path : "";
    int n = snprintf(NULL, 0, "%s:%d:%d: %s%s%s", c->file, at->line, at->col, path, sep, msg ? msg : "?");
    c->err = n < 0 ? NULL : malloc((size_t)n + 1);
    if (c->err)
        snprintf(c->err, (size_t)n + 1, "%s:%d:%d: %s%s%s", c->file, at->line, at->col, path, sep,
                 msg ? msg : "?");
    free(msg);
    return false;
}

bool gw_cfg_fail(gw_cfg_ctx *c, const gw_yaml_node *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, at, true, fmt, ap);
    va_end(ap);
    return false;
}

static bool fail_raw(gw_cfg_ctx *c, const gw_yaml_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail_raw(gw_cfg_ctx *c, const gw_yaml_node *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, at, false, fmt, ap);
    va_end(ap);
    return false;
}

static size_t push_text(gw_cfg_ctx *c, const char *sep, const char *text, const char *end)
{
    size_t mark = c->plen;
    int n = snprintf(c->path + c->plen, sizeof c->path - c->plen, "%s%s%s", sep, text, end);
    if (n > 0) c->plen += (size_t)n < sizeof c->path - c->plen ? (size_t)n : sizeof c->path - c->plen - 1;
    return mark;
}

size_t gw_cfg_push(gw_cfg_ctx *c, const char *key)
{
    return push_text(c, c->plen ? "." : "", key, "");
}

size_t gw_cfg_push_index(gw_cfg_ctx *c, size_t i)
{
    char num[24];
    snprintf(num, sizeof num, "%zu", i);
    return push_text(c, "[", num, "]");
}

void gw_cfg_pop(gw_cfg_ctx *c, size_t mark)
{
    c->plen = mark;
    c->path[mark] = '\0';
}

bool gw_cfg_is_null(const gw_yaml_node *n)
{
    if (n->kind != GW_YAML_SCALAR || n->quoted) return false;
    const char *s = n->scalar;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

const char *gw_cfg_scalar(gw_cfg_ctx *c, const gw_yaml_node *n, const char *what)
{
    if (n->kind == GW_YAML_SCALAR) return n->scalar;
    gw_cfg_fail(c, n, "must be %s, not a %s", what, n->kind == GW_YAML_MAP ? "mapping" : "sequence");
    return NULL;
}

bool gw_cfg_decimal(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s) return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10) return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

void gw_cfg_store_uint(void *dst, size_t size, uint64_t v)
{
    if (size == sizeof(uint8_t)) {
        uint8_t t = (uint8_t)v;
        memcpy(dst, &t, sizeof t);
    } else if (size == sizeof(uint16_t)) {
        uint16_t t = (uint16_t)v;
        memcpy(dst, &t, sizeof t);
    } else if (size == sizeof(uint32_t)) {
        uint32_t t = (uint32_t)v;
        memcpy(dst, &t, sizeof t);
    } else {
        memcpy(dst, &v, sizeof v);
    }
}

void gw_cfg_store_ptr(void *dst, const void *p)
{
    memcpy(dst, &p, sizeof p);
}

static const gw_field *find_field(const gw_field *fields, const char *name)
{
    for (; fields->name; fields++)
        if (strcmp(fields->name, name) == 0) return fields;
    return NULL;
}

static bool bind_field(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    /* Defaults go through the same parser as file values, so the table can say "8KiB" like the docs. */
    gw_yaml_node def = {
        .kind = GW_YAML_SCALAR, .line = c->at->line, .col = c->at->col, .scalar = (char *)f->def};
    if (!n) {
        if (f->flags & GW_F_REQUIRED) return gw_cfg_fail(c, c->at, "required");
        if (f->def)
            n = &def;
        else if (!(f->flags & GW_F_WALK))
            return true;
    }
    if (!f->parse(c, f, n, rec)) return false;
    return !f->check || f->check(c, f, n, rec);
}

bool gw_cfg_map(gw_cfg_ctx *c, const gw_yaml_node *map, const gw_yaml_node *at, const gw_field *fields,
                bool open, void *rec)
{
    if (map && map->kind != GW_YAML_MAP) return gw_cfg_fail(c, map, "must be a mapping");
    for (size_t i = 0; map && !open && i < map->n; i++)
        if (!find_field(fields, map->keys[i]->scalar))
            return fail_raw(c, map->keys[i], "unknown key '%s' in %s", map->keys[i]->scalar,
                            c->plen ? c->path : "top level");
    const gw_yaml_node *saved = c->at;
    c->at = map ? map : at;
    bool ok = true;
    for (const gw_field *f = fields; ok && f->name; f++) {
        const gw_yaml_node *n = gw_yaml_get(map, f->name);
        if (n && gw_cfg_is_null(n)) n = NULL;
        size_t mark = gw_cfg_push(c, f->name);
        ok = bind_field(c, f, n, rec);
        gw_cfg_pop(c, mark);
    }
    c->at = saved;
    return ok;
}

/* "must be 1..65535" with the bounds written in the field's unit. */
static bool range_fail(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n,
                       void (*fmt)(char *, size_t, uint64_t))
{
    char lo[32], hi[32];
    fmt(lo, sizeof lo, f->min);
    fmt(hi, sizeof hi, f->max);
    if (f->max == UINT64_MAX) return gw_cfg_fail(c, n, "must be at least %s", lo);
    return gw_cfg_fail(c, n, "must be %s..%s", lo, hi);
}

static void fmt_int(char *b, size_t cap, uint64_t v)
{
    snprintf(b, cap, "%llu", (unsigned long long)v);
}

static void fmt_ms(char *b, size_t cap, uint64_t v)
{
    static const struct {
        uint64_t div;
        const char *unit;
    } units[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (v && v % units[i].div == 0) {
            snprintf(b, cap, "%llu%s", (unsigned long long)(v / units[i].div), units[i].unit);
            return;
        }
    snprintf(b, cap, "%llums", (unsigned long long)v);
}

static void fmt_bytes(char *b, size_t cap, uint64_t v)
{
    static const char *const units[] = {"GiB", "MiB", "KiB"};
    for (int i = 0; i < 3; i++) {
        uint64_t div = 1ull << (10 * (3 - i));
        if (v && v % div == 0) {
            snprintf(b, cap, "%llu%s", (unsigned long long)(v / div), units[i]);
            return;
        }
    }
    snprintf(b, cap, "%llu", (unsigned long long)v);
}

bool gw_cfg_string(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const char *s = gw_cfg_scalar(c, n, "a string");
    if (!s) return false;
    if (!*s) /* optional strings: "" (e.g. an empty ${REDIS_PASSWORD:-}) means none */
        return !(f->flags & GW_F_NONEMPTY) || gw_cfg_fail(c, n, "must not be empty");
    char *copy = strdup(s);
    if (!copy) return gw_cfg_fail(c, n, "out of memory");
    gw_cfg_store_ptr((char *)rec + f->off, copy);
    return true;
}

bool gw_cfg_bool(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const char *s = gw_cfg_scalar(c, n, "true or false");
    if (!s) return false;
    bool v;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        v = true;
    else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        v = false;
    else
        return gw_cfg_fail(c, n, "invalid boolean '%s' (expected true or false)", s);
    memcpy((char *)rec + f->off, &v, sizeof v);
    return true;
}

bool gw_cfg_uint(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const char *s = gw_cfg_scalar(c, n, "an integer");
    if (!s) return false;
    uint64_t v;
    const char *digits = s + (s[0] == '-');
    if (!gw_cfg_decimal(s, &v) || v < f->min || v > f->max) {
        /* A number that is merely too big or negative gets the range, anything else "invalid". */
        if (*digits && strspn(digits, "0123456789") == strlen(digits)) return range_fail(c, f, n, fmt_int);
        return gw_cfg_fail(c, n, "invalid integer '%s'", s);
    }
    gw_cfg_store_uint((char *)rec + f->off, f->size, v);
    return true;
}

bool gw_cfg_duration(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const char *s = gw_cfg_scalar(c, n, "a duration");
    if (!s) return false;
    uint64_t v;
    if (!gw_parse_duration_ms(s, &v)) return gw_cfg_fail(c, n, "invalid duration '%s'", s);
    if (v < f->min || v > f->max) return range_fail(c, f, n, fmt_ms);
    gw_cfg_store_uint((char *)rec + f->off, f->size, v);
    return true;
}

bool gw_cfg_size(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const char *s = gw_cfg_scalar(c, n, "a size");
    if (!s) return false;
    uint64_t v;
    if (!gw_parse_size(s, &v)) return gw_cfg_fail(c, n, "invalid size '%s'", s);
    if (v < f->min || v > f->max) return range_fail(c, f, n, fmt_bytes);
    gw_cfg_store_uint((char *)rec + f->off, f->size, v);
    return true;
}

/* Index of s in the field's NULL-terminated name list, or an error listing the choices. */
static bool enum_index(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, size_t *idx)
{
    const char *s = gw_cfg_scalar(c, n, "a string");
    if (!s) return false;
    const char *const *names = f->aux;
    char list[256] = "";
    size_t len = 0, count = 0;
    for (size_t i = 0; names[i]; i++, count++)
        if (!strcmp(names[i], s)) {
            *idx = i;
            return true;
        }
    for (size_t i = 0; i < count && len < sizeof list; i++) {
        const char *sep = i == 0 ? "" : i + 1 == count ? " or " : ", ";
        int w = snprintf(list + len, sizeof list - len, "%s'%s'", sep, names[i]);
        len += w > 0 ? (size_t)w : 0;
    }
    return gw_cfg_fail(c, n, "must be %s, not '%s'", list, s);
}

bool gw_cfg_enum(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    size_t i;
    if (!enum_index(c, f, n, &i)) return false;
    gw_cfg_store_uint((char *)rec + f->off, f->size, i);
    return true;
}

bool gw_cfg_enum_str(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    size_t i;
    if (!enum_index(c, f, n, &i)) return false;
    char *copy = strdup(((const char *const *)f->aux)[i]);
    if (!copy) return gw_cfg_fail(c, n, "out of memory");
    gw_cfg_store_ptr((char *)rec + f->off, copy);
    return true;
}

bool gw_cfg_section(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    return gw_cfg_map(c, n, c->at, f->aux, false, (char *)rec + f->off);
}

/* Open-addressing set of item indexes (+1, 0 = empty) keyed by a string member: duplicates in O(n),
 * where comparing each item with all before it made 200k routes take minutes. */
typedef struct {
    size_t *slots;
    size_t mask;
} uniq_set;

static const char *uniq_key(const gw_list_desc *d, const char *items, size_t i)
{
    const char *s;
    memcpy(&s, items + i * d->elem_size + d->unique_off, sizeof s);
    return s ? s : "";
}

/* Adds item i; returns the index of an earlier item with the same key, or SIZE_MAX. */
static size_t uniq_add(uniq_set *u, const gw_list_desc *d, const char *items, size_t i)
{
    const char *key = uniq_key(d, items, i);
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    size_t k = (size_t)h & u->mask;
    for (; u->slots[k]; k = (k + 1) & u->mask)
        if (strcmp(uniq_key(d, items, u->slots[k] - 1), key) == 0) return u->slots[k] - 1;
    u->slots[k] = i + 1;
    return SIZE_MAX;
}

static bool uniq_check(gw_cfg_ctx *c, uniq_set *u, const gw_list_desc *d, const char *list,
                       const gw_yaml_node *item, const char *items, size_t i)
{
    size_t j = uniq_add(u, d, items, i);
    if (j == SIZE_MAX) return true;
    size_t mark = gw_cfg_push(c, d->unique_key);
    gw_cfg_fail(c, gw_yaml_get(item, d->unique_key), "duplicate %s '%s' (also %s[%zu])", d->unique_what,
                uniq_key(d, items, i), list, j);
    gw_cfg_pop(c, mark);
    return false;
}

static bool list_items(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, char *items, uniq_set *u)
{
    const gw_list_desc *d = f->aux;
    for (size_t i = 0; i < n->n; i++) {
        const gw_yaml_node *item = n->items[i];
        char *elem = items + i * d->elem_size;
        size_t mark = gw_cfg_push_index(c, i);
        bool ok = item->kind == GW_YAML_MAP ? gw_cfg_map(c, item, item, d->fields, d->open, elem)
                                            : gw_cfg_fail(c, item, "must be a mapping");
        if (ok) {
            memcpy(elem + d->line_off, &item->line, sizeof item->line);
            ok = (!u->slots || uniq_check(c, u, d, f->name, item, items, i)) &&
                 (!d->check || d->check(c, item, items, i));
        }
        gw_cfg_pop(c, mark);
        if (!ok) return false;
    }
    return true;
}

bool gw_cfg_list(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    const gw_list_desc *d = f->aux;
    if (!n || (n->kind == GW_YAML_SEQ && n->n == 0))
        return !d->nonempty || gw_cfg_fail(c, n ? n : c->at, "at least one %s is required", d->what);
    if (n->kind != GW_YAML_SEQ) return gw_cfg_fail(c, n, "must be a sequence");
    char *items = calloc(n->n, d->elem_size);
    if (!items) return gw_cfg_fail(c, n, "out of memory");
    /* Published before the items are bound so that gw_config_free can clean up a half-built list. */
    gw_cfg_store_ptr((char *)rec + f->off, items);
    memcpy((char *)rec + d->count_off, &n->n, sizeof n->n);
    uniq_set u = {NULL, 0};
    if (d->unique_key) {
        size_t slots = 8;
        while (slots < n->n * 2)
            slots *= 2;
        if (!(u.slots = calloc(slots, sizeof *u.slots))) return gw_cfg_fail(c, n, "out of memory");
        u.mask = slots - 1;
    }
    bool ok = list_items(c, f, n, items, &u);
    free(u.slots);
    return ok;
}

/* Digits then a unit from the table; the digits may not overflow once multiplied. */
static bool parse_scaled(const char *s, const char *const *units, const uint64_t *mult, size_t nunits,
                         uint64_t *out)
{
    size_t nd = strspn(s, "0123456789");
    char digits[24];
    uint64_t v;
    if (nd == 0 || nd >= sizeof digits) return false;
    memcpy(digits, s, nd);
    digits[nd] = '\0';
    if (!gw_cfg_decimal(digits, &v)) return false;
    for (size_t i = 0; i < nunits; i++) {
        if (strcmp(s + nd, units[i]) != 0) continue;
        if (mult[i] && v > UINT64_MAX / mult[i]) return false;
        *out = v * mult[i];
        return true;
    }
    return false;
}

bool gw_parse_duration_ms(const char *s, uint64_t *out)
{
    static const char *const units[] = {"", "ms", "s", "m", "h"};
    static const uint64_t mult[] = {1000, 1, 1000, 60000, 3600000};
    return s && parse_scaled(s, units, mult, 5, out);
}

bool gw_parse_size(const char *s, uint64_t *out)
{
    static const char *const units[] = {"", "k", "K", "KiB", "m", "M", "MiB", "g", "G", "GiB"};
    static const uint64_t mult[] = {1,          1ull << 10, 1ull << 10, 1ull << 10, 1ull << 20,
                                    1ull << 20, 1ull << 20, 1ull << 30, 1ull << 30, 1ull << 30};
    return s && parse_scaled(s, units, mult, 10, out);
}

gw_config *gw_config_load(const char *path, char **err)
{
    *err = NULL;
    gw_yaml_doc *doc = gw_yaml_load(path, err);
    if (!doc) return NULL;
    gw_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg || !(cfg->file = strdup(path))) {
        free(cfg);
        gw_yaml_free(doc);
        *err = strdup("out of memory");
        return NULL;
    }
    cfg->doc = doc;
    /* An empty file is an empty mapping: it then fails on the first required key, with a position. */
    static const gw_yaml_node empty = {.kind = GW_YAML_MAP, .line = 1, .col = 1};
    const gw_yaml_node *root = doc->root ? doc->root : &empty;
    gw_cfg_ctx c = {.file = path, .cfg = cfg, .at = root};
    bool ok = root->kind == GW_YAML_MAP
                  ? gw_cfg_map(&c, root, root, gw_cfg_top, false, cfg) && gw_cfg_finish(&c, root)
                  : gw_cfg_fail(&c, root, "the top level must be a mapping");
    free(c.svc_index);
    if (!ok) {
        *err = c.err ? c.err : strdup("out of memory");
        gw_config_free(cfg);
        return NULL;
    }
    return cfg;
}

static void free_services(gw_service_conf *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) {
        for (size_t j = 0; s[i].targets && j < s[i].ntargets; j++) {
            free(s[i].targets[j].url);
            free(s[i].targets[j].host);
            free(s[i].targets[j].authority);
        }
        free(s[i].targets);
        free(s[i].name);
        free(s[i].health.path);
        free(s[i].tls_ca_file);
    }
    free(s);
}

void gw_config_free(gw_config *cfg)
{
    if (!cfg) return;
    for (size_t i = 0; cfg->listeners && i < cfg->nlisteners; i++) {
        free(cfg->listeners[i].address);
        free(cfg->listeners[i].cert_file);
        free(cfg->listeners[i].key_file);
    }
    free(cfg->listeners);
    free(cfg->trusted_proxies);
    free_services(cfg->services, cfg->nservices);
    for (size_t i = 0; cfg->routes && i < cfg->nroutes; i++) {
        free(cfg->routes[i].name);
        free(cfg->routes[i].prefix);
    }
    free(cfg->routes);
    for (size_t i = 0; cfg->pipeline && i < cfg->npipeline; i++)
        free(cfg->pipeline[i].name);
    free(cfg->pipeline);
    free(cfg->store.path);
    free(cfg->store.host);
    free(cfg->store.password);
    free(cfg->plugin_dir);
    free(cfg->log_level);
    free(cfg->file);
    gw_yaml_free(cfg->doc);
    free(cfg);
}
