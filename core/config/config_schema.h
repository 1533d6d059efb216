/* config_schema.h - internal to the configuration loader: key descriptors (the tables live in
 * config_schema.c) and the engine in config.c that binds a YAML mapping to a C record with them. */
#ifndef GW_CONFIG_SCHEMA_H
#define GW_CONFIG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct gw_cfg_ctx gw_cfg_ctx;
typedef struct gw_field gw_field;

/* Reads value node `n` into the record `rec` (at f->off). n is NULL only for GW_F_WALK fields that are
 * absent, so sections still get their defaults and lists can insist on being present. */
typedef bool (*gw_field_parse)(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec);
/* Extra validation once the value is stored; n is the value node (NULL: an absent section). */
typedef bool (*gw_field_check)(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec);
/* Runs after each item of a list was bound; items[0..i] are filled in. */
typedef bool (*gw_item_check)(gw_cfg_ctx *c, const gw_yaml_node *item, void *items, size_t i);

enum {
    GW_F_REQUIRED = 1u << 0, /* absent (or null) -> "required" */
    GW_F_NONEMPTY = 1u << 1, /* strings: "" -> error (otherwise "" is stored as NULL) */
    GW_F_WALK = 1u << 2,     /* call parse with n == NULL when absent */
};

struct gw_field {
    const char *name;     /* NULL ends a table */
    gw_field_parse parse; /* the type */
    const char *def;      /* default, written as in the file; NULL = none (zero) */
    size_t off, size;     /* destination in the record */
    uint64_t min, max;    /* numbers, durations (ms), sizes (bytes) */
    const void *aux;      /* per type: nested table, gw_list_desc, or NULL-terminated names */
    gw_field_check check;
    unsigned flags;
};

typedef struct {
    const char *what; /* "listener": for "at least one listener is required" */
    size_t elem_size; /* one record per item */
    size_t count_off; /* size_t count in the enclosing record */
    size_t line_off;  /* int line in the item record */
    const gw_field *fields;
    bool open;     /* keys not in `fields` are allowed (a filter's own settings) */
    bool nonempty; /* at least one item */
    /* Items must differ in the string at unique_off (a char * in the item, keyed unique_key in the file),
     * checked with a hash set as each item is bound: "duplicate <unique_what> 'x' (also <list>[j])". */
    const char *unique_key; /* NULL: no such rule */
    const char *unique_what;
    size_t unique_off;
    gw_item_check check;
} gw_list_desc;

struct gw_cfg_ctx {
    const char *file;
    gw_config *cfg;
    const gw_yaml_node *at; /* enclosing mapping: where to point when a key is missing */
    char *err;
    size_t plen;
    char path[512];  /* key path for messages: "routes[1].service" */
    void *svc_index; /* service names sorted, built by the first route that names one (freed by the loader) */
};

/* "file:line:col: <path>: <message>" into c->err (first error wins); always returns false. */
bool gw_cfg_fail(gw_cfg_ctx *c, const gw_yaml_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The key path grows while descending; push returns the length to pop back to. */
size_t gw_cfg_push(gw_cfg_ctx *c, const char *key);
size_t gw_cfg_push_index(gw_cfg_ctx *c, size_t i);
void gw_cfg_pop(gw_cfg_ctx *c, size_t mark);

/* Binds a mapping (NULL: all keys absent) to `rec` using `fields`. */
bool gw_cfg_map(gw_cfg_ctx *c, const gw_yaml_node *map, const gw_yaml_node *at, const gw_field *fields,
                bool open, void *rec);
/* YAML null: a plain empty scalar, ~, null, Null or NULL. Treated as an absent key. */
bool gw_cfg_is_null(const gw_yaml_node *n);
/* The scalar text of n, or an error "must be <what>" when n is a mapping or a sequence. */
const char *gw_cfg_scalar(gw_cfg_ctx *c, const gw_yaml_node *n, const char *what);
/* Decimal digits only; false on anything else or on overflow. */
bool gw_cfg_decimal(const char *s, uint64_t *out);
/* Stores v into an unsigned/int/enum destination of `size` bytes. */
void gw_cfg_store_uint(void *dst, size_t size, uint64_t v);
void gw_cfg_store_ptr(void *dst, const void *p);

/* Value types (gw_field.parse). */
bool gw_cfg_string(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec);
bool gw_cfg_bool(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec);
bool gw_cfg_uint(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec);
bool gw_cfg_duration(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec);
bool gw_cfg_size(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec);
bool gw_cfg_enum(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec);     /* index */
bool gw_cfg_enum_str(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec); /* copy */
bool gw_cfg_section(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec);
bool gw_cfg_list(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec);

/* config_schema.c: the top-level table and the cross-key checks run after it. */
extern const gw_field gw_cfg_top[];
bool gw_cfg_finish(gw_cfg_ctx *c, const gw_yaml_node *root);

/* A sequence of CIDRs into gw_config.trusted_proxies (config_cidr.c). */
bool gw_cfg_cidrs(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec);

/* The keys under field f, for a walk over every key (config_keys.c): a section's, a list item's (*list
 * true) or another nested mapping's (listeners[].tls); NULL for a leaf. */
const gw_field *gw_cfg_nested(const gw_field *f, bool *list);

#endif
