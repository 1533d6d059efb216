/* aa_loglimit.c - log-line budget per interval for adminauth's warnings, behind one mutex shared by the
 * workers. Only failed admin requests take the lock; the proxy's requests never do. The summary of the
 * lines left out is logged with the first event of a later interval (there is no timer outside requests),
 * so a flood that stops is summed up by the next failure. */
#include "aa_loglimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct aa_loglimit {
    pthread_mutex_t lock;
    uint32_t lines;
    uint64_t interval_ms;
    uint64_t window;     /* now / interval_ms of the current interval */
    uint32_t used;       /* lines logged in it */
    uint64_t suppressed; /* lines left out since the last summary */
    char last_ip[AA_LOG_IP_MAX];
};

aa_loglimit *aa_loglimit_new(uint32_t lines, uint64_t interval_ms)
{
    aa_loglimit *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    if (pthread_mutex_init(&l->lock, NULL) != 0) {
        free(l);
        return NULL;
    }
    l->lines = lines;
    l->interval_ms = interval_ms;
    l->window = UINT64_MAX;
    return l;
}

void aa_loglimit_free(aa_loglimit *l)
{
    if (!l) return;
    pthread_mutex_destroy(&l->lock);
    free(l);
}

bool aa_loglimit_take(aa_loglimit *l, uint64_t now, gw_strv ip, aa_loglimit_summary *sum)
{
    bool take;
    sum->suppressed = 0;
    sum->last_ip[0] = '\0';
    pthread_mutex_lock(&l->lock);
    uint64_t w = now / l->interval_ms;
    if (w != l->window) {
        l->window = w;
        l->used = 0;
        if (l->suppressed) {
            sum->suppressed = l->suppressed;
            memcpy(sum->last_ip, l->last_ip, sizeof sum->last_ip);
            l->suppressed = 0;
        }
    }
    take = l->used < l->lines;
    if (take) {
        l->used++;
    } else {
        size_t n = ip.n < AA_LOG_IP_MAX - 1 ? ip.n : AA_LOG_IP_MAX - 1;
        l->suppressed++;
        memcpy(l->last_ip, ip.p, n);
        l->last_ip[n] = '\0';
    }
    pthread_mutex_unlock(&l->lock);
    return take;
}
