/* config_cidr.c - address blocks in the configuration (proxy.trusted_proxies): "10.0.0.0/8",
 * "2001:db8::/32" or a bare address, kept as IPv4-mapped IPv6 blocks (gw_addr_block). */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "config_schema.h"

/* "10.0.0.0/8", "2001:db8::/32" or a bare address (a host). Host bits must be zero: "10.1.2.3/8" is
 * more likely a typo than a wish for 10.0.0.0/8. */
static bool parse_cidr(const char *s, gw_addr_block *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, s, n + 1);
    char *slash = strchr(buf, '/');
    uint64_t bits = 0;
    if (slash) {
        *slash = '\0';
        if (!gw_cfg_decimal(slash + 1, &bits) || strlen(slash + 1) > 3) return false;
    }
    memset(out, 0, sizeof *out);
    struct in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        if (slash && bits > 32) return false;
        out->addr[10] = out->addr[11] = 0xff;
        memcpy(out->addr + 12, &a4, 4);
        out->bits = slash ? 96 + (unsigned)bits : 128;
    } else {
        if (inet_pton(AF_INET6, buf, out->addr) != 1 || (slash && bits > 128)) return false;
        out->bits = slash ? (unsigned)bits : 128;
    }
    for (unsigned i = out->bits; i < 128; i++)
        if (out->addr[i / 8] & (0x80u >> (i % 8))) return false;
    return true;
}

bool gw_cfg_cidrs(gw_cfg_ctx *c, const gw_field *f, const gw_yaml_node *n, void *rec)
{
    gw_config *cfg = rec;
    if (n->kind != GW_YAML_SEQ) return gw_cfg_fail(c, n, "must be a sequence of CIDRs like 10.0.0.0/8");
    if (n->n == 0) return true;
    if (!(cfg->trusted_proxies = calloc(n->n, sizeof *cfg->trusted_proxies)))
        return gw_cfg_fail(c, n, "out of memory");
    cfg->ntrusted_proxies = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t mark = gw_cfg_push_index(c, i);
        const char *s = gw_cfg_scalar(c, n->items[i], "a CIDR");
        bool ok = s && (parse_cidr(s, &cfg->trusted_proxies[i]) ||
                        gw_cfg_fail(c, n->items[i], "'%s' is not an IPv4 or IPv6 CIDR (host bits zero)", s));
        gw_cfg_pop(c, mark);
        if (!ok) return false;
    }
    return true;
}
