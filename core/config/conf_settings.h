/* conf_settings.h - filter settings tables (gw_setting, ABI 1.1): checking a filter's YAML against its
 * table, filling the filter's settings struct (defaults first), per-route merged copies, and freeing what
 * was allocated for them. Shared by the gateway and the SDK test host so both apply the same checks. */
#ifndef GW_CONF_SETTINGS_H
#define GW_CONF_SETTINGS_H

#include <gw/filter.h>

#include <stdbool.h>
#include <stddef.h>

#include "yaml_tree.h"

/* Is the table itself sound (names, types, offsets inside `size`, enum names, defaults that parse)?
 * 0, or -1 with a message naming the filter and setting. Run once when a filter is loaded. */
int gw_settings_table_check(const char *filter, const gw_setting *t, size_t size, char *err, size_t errlen);

/* Checks a pipeline entry (route false: the host's own keys name/enabled/file are allowed) or a
 * routes[].filters.<name> mapping (route true: only GW_SET_ROUTE keys). Errors read
 * "file:line:col: <filter>.<key>: message". NULL conf = no settings given. */
int gw_settings_check(const char *filter, const gw_setting *t, const gw_yaml_node *conf, bool route,
                      char *err, size_t errlen);

/* A new zeroed struct of `size` bytes: defaults, then the entry's values, then (when given) the route's
 * values over them. The entry (and route) must have passed gw_settings_check. NULL + err on failure. */
void *gw_settings_new(const char *filter, const gw_setting *t, size_t size, const gw_yaml_node *entry,
                      const gw_yaml_node *route, char *err, size_t errlen);
void gw_settings_free(void *settings); /* the struct and everything allocated for it; NULL is fine */

/* Whether any setting of the table has GW_SET_ROUTE. */
bool gw_settings_has_route(const gw_setting *t);

/* conf_settings_text.c, for messages, --describe-filter and the docs: the type's name ("integer",
 * "duration", ...) and the allowed range or names as text ("1..1000", "1ms..1m", "legacy, ietf"); empty
 * when unrestricted. */
const char *gw_settings_type_name(int type);
void gw_settings_allowed_text(const gw_setting *s, char *out, size_t cap);

#endif
