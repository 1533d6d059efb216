/* mx_numbers.c - the quantiles and buckets settings: YAML lists of numbers, checked where they are written.
 */
#include "mx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* One item: NULL when fine, else what is wrong with it. */
static const char *item(const char *s, int quantiles, double prev, bool first, double *out)
{
    char *e;
    double v = s ? strtod(s, &e) : NAN;
    if (!s || e == s || *e || !isfinite(v)) return "not a number";
    if (quantiles && !(v > 0 && v < 1)) return "a quantile lies between 0 and 1 (exclusive)";
    if (!quantiles && !(v > 0)) return "a bucket bound is above 0 (seconds)";
    if (!first && !(v > prev)) return "the list must be strictly ascending";
    *out = v;
    return NULL;
}

int mx_numbers(const gw_list *l, int quantiles, double *out, size_t *n, char *err, size_t errlen)
{
    const char *const *v = l->v;
    if (l->n > MX_MAX_LIST) {
        snprintf(err, errlen, MX_NAME ".%s: at most %d items", quantiles ? "quantiles" : "buckets",
                 MX_MAX_LIST);
        return -1;
    }
    for (size_t i = 0; i < l->n; i++) {
        const char *why = item(v[i], quantiles, i ? out[i - 1] : 0, i == 0, &out[i]);
        if (why) {
            snprintf(err, errlen, MX_NAME ".%s: item %zu (\"%s\"): %s", quantiles ? "quantiles" : "buckets",
                     i + 1, v[i] ? v[i] : "", why);
            return -1;
        }
    }
    *n = l->n;
    return 0;
}

static int check_list(const gw_host *h, const gw_conf *conf, const char *key, int quantiles, char *err,
                      size_t errlen)
{
    const gw_conf *n = h->conf_get(conf, key);
    if (!n || h->conf_kind(n) != GW_CONF_SEQ)
        return 0; /* absent (default), or the table says what is wrong */
    size_t len = h->conf_len(n);
    if (len > MX_MAX_LIST)
        return h->conf_error(n, err, errlen, MX_NAME ".%s: at most %d items", key, MX_MAX_LIST);
    double prev = 0;
    for (size_t i = 0; i < len; i++) {
        const gw_conf *it = h->conf_at(n, i);
        double v;
        const char *why = item(h->conf_str(it), quantiles, prev, i == 0, &v);
        if (why) return h->conf_error(it, err, errlen, MX_NAME ".%s: %s", key, why);
        prev = v;
    }
    return 0;
}

int mx_check_lists(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    if (check_list(h, conf, "quantiles", 1, err, errlen) != 0) return -1;
    return check_list(h, conf, "buckets", 0, err, errlen);
}
