/* yaml_tree.h - a small read-only YAML document tree (libyaml events -> nodes with positions), with
 * ${VAR} / ${VAR:-default} interpolation applied to scalars. Outlives parsing so that filters can read
 * their settings subtree later (and report errors at the right file:line:col). */
#ifndef GW_YAML_TREE_H
#define GW_YAML_TREE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { GW_YAML_SCALAR, GW_YAML_SEQ, GW_YAML_MAP } gw_yaml_kind;

typedef struct gw_yaml_node gw_yaml_node;
struct gw_yaml_node {
    gw_yaml_kind kind;
    int line, col;     /* 1-based */
    const char *file;  /* the document's file name (owned by the doc), for messages */
    char *scalar;      /* GW_YAML_SCALAR: value after interpolation (NUL-terminated) */
    bool quoted;       /* scalar was quoted ('...' or "...") */
    const char *key;   /* the mapping key this node is the value of (a sequence item: its sequence's); NULL
                          at the root. For messages that name the setting. */
    /* GW_YAML_SEQ: items; GW_YAML_MAP: keys[i] -> items[i] (keys are scalars) */
    gw_yaml_node **items;
    gw_yaml_node **keys;
    size_t n;
};

typedef struct gw_yaml_doc {
    char *file;
    gw_yaml_node *root; /* NULL for an empty document */
} gw_yaml_doc;

/* Parses a file. On error returns NULL and sets *err ("file:line:col: message", malloc'd). Anchors and
 * aliases are rejected; a duplicate key in a mapping is an error; an unset ${VAR} with no default is an
 * error naming the variable. */
gw_yaml_doc *gw_yaml_load(const char *path, char **err);
gw_yaml_doc *gw_yaml_load_string(const char *name, const char *text, char **err);
void gw_yaml_free(gw_yaml_doc *doc);

const gw_yaml_node *gw_yaml_get(const gw_yaml_node *map, const char *key); /* NULL if absent */

#endif
