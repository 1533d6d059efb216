/* ratelimit.h - internals shared by ratelimit.c (the filter) and rl_addr.c (addresses and trusted proxies).
 * Not part of any public interface. */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <gw/filter.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RL_IP_TEXT 48        /* canonical text of an address, NUL included */
#define RL_MAX_XFF_FIELDS 32 /* X-Forwarded-For fields looked at */

typedef struct {
    uint8_t a[16]; /* IPv6, or IPv4-mapped IPv6 */
} rl_ip;

typedef struct {
    rl_ip net;
    unsigned bits; /* prefix length in the 128-bit form */
} rl_cidr;

bool rl_ip_parse(const char *s, size_t n, rl_ip *out);
bool rl_ip_is_v4(const rl_ip *ip);
void rl_ip_format(const rl_ip *ip, char out[RL_IP_TEXT]);
bool rl_cidr_match(const rl_cidr *list, size_t n, const rl_ip *ip);
bool rl_client_ip(const gw_host *h, const gw_req *req, const rl_cidr *trusted, size_t ntrusted, rl_ip *out);
bool rl_strncaseeq(const char *a, const char *b, size_t n);

#endif
