/* conf_api.h - the gw_host configuration accessors (gw/filter.h) over yaml_tree nodes. Shared by the
 * gateway and the SDK test host so a filter reads its settings the same way in both. */
#ifndef GW_CONF_API_H
#define GW_CONF_API_H

#include <gw/filter.h>

#include "yaml_tree.h"

/* Fills the conf_* members of a host table. */
void gw_conf_api_fill(gw_host *host);

/* Keys of a pipeline entry that belong to the host, not the filter. */
extern const char *const gw_conf_host_keys[];

static inline const gw_conf *gw_conf_of(const gw_yaml_node *n)
{
    return (const gw_conf *)n;
}

#endif
