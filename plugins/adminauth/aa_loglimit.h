/* aa_loglimit.h - a per-instance budget of log lines per interval, shared by the workers, so that a flood
 * of failed admin requests cannot flood the log. Internal to plugins/adminauth. */
#ifndef GW_AA_LOGLIMIT_H
#define GW_AA_LOGLIMIT_H

#include <gw/filter.h>

#include <stdbool.h>
#include <stdint.h>

#define AA_LOG_IP_MAX 64

typedef struct aa_loglimit aa_loglimit;

/* At most `lines` lines per `interval_ms` (both >= 1). NULL when out of memory. */
aa_loglimit *aa_loglimit_new(uint32_t lines, uint64_t interval_ms);
void aa_loglimit_free(aa_loglimit *l);

typedef struct {
    uint64_t suppressed;         /* > 0: lines left out in the previous interval(s); log a summary */
    char last_ip[AA_LOG_IP_MAX]; /* the client of the last one left out */
} aa_loglimit_summary;

/* One event by `ip` at `now`: true = log its line. When the event opens a new interval and lines were left
 * out before, *sum says how many (the caller logs the summary line first); else sum->suppressed is 0. */
bool aa_loglimit_take(aa_loglimit *l, uint64_t now, gw_strv ip, aa_loglimit_summary *sum);

#endif
