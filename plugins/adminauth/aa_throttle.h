/* aa_throttle.h - adminauth's table of wrong-credential counts per (client address, username) and per
 * client address across usernames, one per filter instance and shared by all its workers. Internal to
 * plugins/adminauth. */
#ifndef GW_AA_THROTTLE_H
#define GW_AA_THROTTLE_H

#include <gw/filter.h>

#include <stdbool.h>
#include <stdint.h>

#define AA_USER_MD_LEN 32 /* SHA-256 of the presented username */

typedef struct aa_throttle aa_throttle;

typedef enum {
    AA_T_PASS,    /* correct credentials, not blocked: the count of (address, user) is cleared */
    AA_T_FAILED,  /* a wrong attempt, counted; not blocked yet */
    AA_T_BLOCKS,  /* a wrong attempt, counted, and it is the one that starts the block */
    AA_T_BLOCKED, /* (address, user) is blocked: refuse with 429 whatever the credentials */
} aa_throttle_verdict;

typedef enum {
    AA_SCOPE_USER,    /* the (address, username) pair */
    AA_SCOPE_ADDRESS, /* the address (an IPv6 one by its /64), whatever the username */
    AA_SCOPE_FULL,    /* no slot to count in: every entry of the set is blocked (fail-closed) */
} aa_throttle_scope;

typedef struct {
    uint32_t failures;       /* the count (of `scope`) after this attempt */
    uint64_t left_ms;        /* AA_T_BLOCKED: how long the block still lasts (> 0) */
    aa_throttle_scope scope; /* AA_T_BLOCKS and AA_T_BLOCKED: which count blocks */
} aa_throttle_info;

/* A table for max_failures >= 1 per pair, per_address >= 1 per address, block_ms >= 1, hashed with
 * `seed`. NULL when out of memory. */
aa_throttle *aa_throttle_new(uint32_t max_failures, uint32_t per_address, uint64_t block_ms, uint64_t seed);
void aa_throttle_free(aa_throttle *t);

/* One attempt with credentials by (ip, user_md) at `now`; `ok` = they were right. Looking the pair up and
 * counting is one step under the table's lock, so concurrent attempts on several workers are counted
 * exactly: the max_failures-th wrong attempt starts the block and every later one is refused. Every wrong
 * attempt also counts for the address; its per_address-th blocks the address for all usernames. */
aa_throttle_verdict aa_throttle_attempt(aa_throttle *t, gw_strv ip,
                                        const unsigned char user_md[AA_USER_MD_LEN], bool ok, uint64_t now,
                                        aa_throttle_info *info);

#endif
