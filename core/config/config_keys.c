/* config_keys.c - a walk over every key the configuration loader accepts, with its type and default, for
 * tools and for the test that keeps docs/configuration.md complete. */
#include <stdio.h>
#include <string.h>

#include "config_keys.h"
#include "config_schema.h"

static const char *type_of(const gw_field *f, bool nested, bool list)
{
    if (list) return "list";
    if (nested) return "mapping";
    if (f->parse == gw_cfg_string) return "string";
    if (f->parse == gw_cfg_bool) return "boolean";
    if (f->parse == gw_cfg_uint) return "integer";
    if (f->parse == gw_cfg_duration) return "duration";
    if (f->parse == gw_cfg_size) return "size";
    if (f->parse == gw_cfg_enum || f->parse == gw_cfg_enum_str) return "enum";
    return "special";
}

static void walk(const gw_field *t, const char *prefix, gw_cfg_key_fn fn, void *arg, int depth)
{
    char path[256];
    for (; t && t->name && depth < 8; t++) {
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", t->name);
        bool list = false;
        const gw_field *sub = gw_cfg_nested(t, &list);
        fn(path, type_of(t, sub != NULL, list), t->def, arg);
        if (!sub) continue;
        if (list) strncat(path, "[]", sizeof path - strlen(path) - 1);
        walk(sub, path, fn, arg, depth + 1);
    }
}

void gw_cfg_each_key(gw_cfg_key_fn fn, void *arg)
{
    walk(gw_cfg_top, "", fn, arg, 0);
}
