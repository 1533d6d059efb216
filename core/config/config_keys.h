/* config_keys.h - every key of the configuration file, walked (config_keys.c). */
#ifndef GW_CONFIG_KEYS_H
#define GW_CONFIG_KEYS_H

/* path: dotted, list items as "[]" ("services[].health_check.interval"); type: string, boolean, integer,
 * duration, size, enum, list, mapping or special (a key with a parser of its own); def: the default as
 * written in a file, or NULL. Parents come before their keys. */
typedef void (*gw_cfg_key_fn)(const char *path, const char *type, const char *def, void *arg);
void gw_cfg_each_key(gw_cfg_key_fn fn, void *arg);

#endif
