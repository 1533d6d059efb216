/* conf_api.c - read-only access to a filter's YAML settings with typed readers that report errors as
 * "file:line:col: key: message", the same shape as the core's own configuration errors. */
#include "conf_api.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "config_schema.h"

const char *const gw_conf_host_keys[] = {"name", "enabled", "file", NULL};

static const gw_yaml_node *N(const gw_conf *c)
{
    return (const gw_yaml_node *)c;
}

static int conf_verror(const gw_conf *n, char *err, size_t errlen, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static int conf_verror(const gw_conf *n, char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (!err || !errlen) return -1;
    const gw_yaml_node *y = N(n);
    int k = y ? snprintf(err, errlen, "%s:%d:%d: ", y->file ? y->file : "?", y->line, y->col) : 0;
    if (k < 0) k = 0;
    if ((size_t)k < errlen) vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    return -1;
}

static int conf_error(const gw_conf *n, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int conf_error(const gw_conf *n, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    conf_verror(n, err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* The typed readers' messages name the setting: "file:line:col: burst: must be 1..1000". */
static int reader_error(const gw_conf *n, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int reader_error(const gw_conf *n, char *err, size_t errlen, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const gw_yaml_node *y = N(n);
    if (y && y->key) return conf_error(n, err, errlen, "%s: %s", y->key, msg);
    return conf_error(n, err, errlen, "%s", msg);
}

static const gw_conf *conf_get(const gw_conf *map, const char *key)
{
    const gw_yaml_node *m = N(map);
    if (!m || m->kind != GW_YAML_MAP) return NULL;
    const gw_yaml_node *v = gw_yaml_get(m, key);
    /* `key:`, `~` and `null` mean "not set", as everywhere else in the configuration. */
    if (v && gw_cfg_is_null(v)) return NULL;
    return gw_conf_of(v);
}

static int conf_kind(const gw_conf *node)
{
    const gw_yaml_node *n = N(node);
    if (!n) return GW_CONF_NONE;
    return n->kind == GW_YAML_SCALAR ? GW_CONF_SCALAR : n->kind == GW_YAML_SEQ ? GW_CONF_SEQ : GW_CONF_MAP;
}

static size_t conf_len(const gw_conf *node)
{
    const gw_yaml_node *n = N(node);
    return n && n->kind != GW_YAML_SCALAR ? n->n : 0;
}

static const gw_conf *conf_at(const gw_conf *node, size_t i)
{
    const gw_yaml_node *n = N(node);
    return n && n->kind != GW_YAML_SCALAR && i < n->n ? gw_conf_of(n->items[i]) : NULL;
}

static const char *conf_key_at(const gw_conf *map, size_t i)
{
    const gw_yaml_node *n = N(map);
    return n && n->kind == GW_YAML_MAP && i < n->n ? n->keys[i]->scalar : NULL;
}

static const char *conf_str(const gw_conf *node)
{
    const gw_yaml_node *n = N(node);
    return n && n->kind == GW_YAML_SCALAR ? n->scalar : NULL;
}

static const char *scalar_or_fail(const gw_conf *n, const char *what, char *err, size_t errlen)
{
    const char *s = conf_str(n);
    if (!s || !*s) reader_error(n, err, errlen, "expected %s", what);
    return s && *s ? s : NULL;
}

static int conf_int(const gw_conf *n, int64_t min, int64_t max, int64_t *out, char *err, size_t errlen)
{
    const char *s = scalar_or_fail(n, "an integer", err, errlen);
    if (!s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || s[0] == '+' || s[0] == ' ')
        return reader_error(n, err, errlen, "invalid integer '%s'", s);
    if (v < min || v > max)
        return reader_error(n, err, errlen, "must be %lld..%lld", (long long)min, (long long)max);
    *out = v;
    return 0;
}

static int conf_double(const gw_conf *n, double *out, char *err, size_t errlen)
{
    const char *s = scalar_or_fail(n, "a number", err, errlen);
    if (!s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v))
        return reader_error(n, err, errlen, "invalid number '%s'", s);
    *out = v;
    return 0;
}

static int conf_bool(const gw_conf *n, bool *out, char *err, size_t errlen)
{
    const char *s = scalar_or_fail(n, "true or false", err, errlen);
    if (!s) return -1;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) *out = true;
    else if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) *out = false;
    else
        return reader_error(n, err, errlen, "expected true or false, got '%s'", s);
    return 0;
}

static int conf_duration_ms(const gw_conf *n, uint64_t *out, char *err, size_t errlen)
{
    const char *s = scalar_or_fail(n, "a duration", err, errlen);
    if (!s) return -1;
    if (!gw_parse_duration_ms(s, out)) return reader_error(n, err, errlen, "invalid duration '%s'", s);
    return 0;
}

static int conf_size(const gw_conf *n, uint64_t *out, char *err, size_t errlen)
{
    const char *s = scalar_or_fail(n, "a size", err, errlen);
    if (!s) return -1;
    if (!gw_parse_size(s, out))
        return reader_error(n, err, errlen, "invalid size '%s' (bytes, or with k, m, g: 64k, 10m)", s);
    return 0;
}

static bool listed(const char *key, const char *const *list)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(key, list[i]) == 0) return true;
    return false;
}

static int conf_only(const gw_conf *map, const char *const *known, char *err, size_t errlen)
{
    const gw_yaml_node *m = N(map);
    if (!m) return 0;
    if (m->kind != GW_YAML_MAP) return conf_error(map, err, errlen, "expected a mapping");
    for (size_t i = 0; i < m->n; i++) {
        const char *k = m->keys[i]->scalar;
        if (!listed(k, known) && !listed(k, gw_conf_host_keys))
            return conf_error(gw_conf_of(m->keys[i]), err, errlen, "unknown key '%s'", k);
    }
    return 0;
}

void gw_conf_api_fill(gw_host *h)
{
    h->conf_get = conf_get;
    h->conf_kind = conf_kind;
    h->conf_len = conf_len;
    h->conf_at = conf_at;
    h->conf_key_at = conf_key_at;
    h->conf_str = conf_str;
    h->conf_int = conf_int;
    h->conf_double = conf_double;
    h->conf_bool = conf_bool;
    h->conf_duration_ms = conf_duration_ms;
    h->conf_error = conf_error;
    h->conf_only = conf_only;
    h->conf_size = conf_size;
}
