/* cors_policy.c - the filter "cors": origins as configured and as requested, lists read from
 * configuration nodes, and the compiled policy (lists for the checks, header values joined once). */
#include "cors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* RFC 9110 tchar: what header names and methods are made of. */
static bool is_tchar(char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (!is_tchar(*s)) return false;
    return true;
}

/* ---------------------------------------------------------------------------------------------------
 * lists from configuration nodes */

void cors_list_free(cors_list *l)
{
    free(l->items);
    free(l->buf);
    *l = (cors_list){0};
}

int cors_list_read(const gw_host *h, const gw_conf *node, const char *key, cors_list *out, char *err,
                   size_t errlen)
{
    *out = (cors_list){0};
    int kind = h->conf_kind(node);
    if (kind == GW_CONF_SEQ) {
        size_t n = h->conf_len(node);
        out->items = calloc(n ? n : 1, sizeof *out->items);
        if (!out->items) return h->conf_error(node, err, errlen, CORS_NAME ".%s: out of memory", key);
        for (size_t i = 0; i < n; i++) {
            const char *s = h->conf_str(h->conf_at(node, i));
            if (!s) {
                cors_list_free(out);
                return h->conf_error(node, err, errlen, CORS_NAME ".%s: list items must be single values",
                                     key);
            }
            out->items[out->n++] = s;
        }
        return 0;
    }
    const char *text = h->conf_str(node);
    if (!text) return h->conf_error(node, err, errlen, CORS_NAME ".%s: expected a list like [a, b]", key);
    size_t len = strlen(text), cap = 1;
    for (size_t i = 0; i < len; i++)
        cap += text[i] == ',';
    out->buf = malloc(len + 1);
    out->items = calloc(cap, sizeof *out->items);
    if (!out->buf || !out->items) {
        cors_list_free(out);
        return h->conf_error(node, err, errlen, CORS_NAME ".%s: out of memory", key);
    }
    memcpy(out->buf, text, len + 1);
    for (char *p = out->buf; *p;) {
        size_t l = strcspn(p, ",");
        char *a = p, *e = p + l, *next = p + l + (p[l] == ',');
        while (a < e && (*a == ' ' || *a == '\t'))
            a++;
        while (e > a && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *e = '\0';
        if (e > a) out->items[out->n++] = a;
        p = next;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * origins */

const char *cors_origin_invalid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0) return "an empty origin";
    if (len > CORS_MAX_ORIGIN) return "longer than 256 characters";
    if (strcmp(s, "*") == 0 || strcmp(s, "null") == 0) return NULL;
    const char *p = s;
    if (!is_alpha(*p)) return "expected scheme://host[:port], like https://app.example.com";
    while (is_alpha(*p) || is_digit(*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    if (strncmp(p, "://", 3) != 0) return "expected scheme://host[:port], like https://app.example.com";
    p += 3;
    if (strncmp(p, "*.", 2) == 0) p += 2;
    const char *host = p;
    if (*p == '[') { /* an IPv6 literal */
        p++;
        while (is_digit(*p) || (lower(*p) >= 'a' && lower(*p) <= 'f') || *p == ':' || *p == '.')
            p++;
        if (*p != ']' || p == host + 1) return "a bad IPv6 literal";
        p++;
    } else {
        while (is_alpha(*p) || is_digit(*p) || *p == '-' || *p == '.')
            p++;
        if (p == host) return "no host after the scheme";
    }
    if (*p == ':') {
        const char *port = ++p;
        unsigned long v = 0;
        while (is_digit(*p) && v <= 65535)
            v = v * 10 + (unsigned long)(*p++ - '0');
        if (p == port || v == 0 || v > 65535) return "a bad port";
    }
    if (*p == '/') return "an origin has no path (not even a trailing '/')";
    if (*p == '*') return "'*' only as the first label of the host (https://*.example.com)";
    if (*p) return "expected scheme://host[:port] and nothing more";
    return NULL;
}

bool cors_origin_allowed(const cors_policy *p, gw_strv o)
{
    if (o.n == 0 || o.n > CORS_MAX_ORIGIN) return false;
    if (p->any_origin) return true;
    for (size_t i = 0; i < p->norigins; i++) {
        const cors_origin *c = &p->origins[i];
        if (c->exact) {
            if (o.n == c->exact_n && strncasecmp(o.p, c->exact, o.n) == 0) return true;
            continue;
        }
        if (o.n <= c->prefix_n + c->suffix_n) continue;
        if (strncasecmp(o.p, c->prefix, c->prefix_n) != 0) continue;
        if (strncasecmp(o.p + o.n - c->suffix_n, c->suffix, c->suffix_n) != 0) continue;
        bool ok = true; /* the labels the '*' stands for: letters, digits, '-' and '.' */
        for (size_t k = c->prefix_n; k < o.n - c->suffix_n && ok; k++)
            ok = is_alpha(o.p[k]) || is_digit(o.p[k]) || o.p[k] == '-' || o.p[k] == '.';
        if (ok && o.p[c->prefix_n] != '.' && o.p[o.n - c->suffix_n - 1] != '.') return true;
    }
    return false;
}

bool cors_in_list(char *const *list, size_t n, gw_strv name, bool nocase)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(list[i]);
        if (len != name.n) continue;
        if (nocase ? strncasecmp(list[i], name.p, len) == 0 : memcmp(list[i], name.p, len) == 0) return true;
    }
    return false;
}

bool cors_has_token(gw_strv v, const char *token)
{
    size_t tn = strlen(token);
    for (size_t i = 0; i < v.n;) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        size_t a = i;
        while (i < v.n && v.p[i] != ',')
            i++;
        size_t e = i;
        while (e > a && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
            e--;
        if (e - a == tn && strncasecmp(v.p + a, token, tn) == 0) return true;
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------------
 * the compiled policy */

void cors_policy_free(cors_policy *p)
{
    for (size_t i = 0; i < p->norigins; i++) {
        free(p->origins[i].exact);
        free(p->origins[i].prefix);
        free(p->origins[i].suffix);
    }
    free(p->origins);
    for (size_t i = 0; i < p->nmethods; i++)
        free(p->methods[i]);
    for (size_t i = 0; i < p->nheaders; i++)
        free(p->headers[i]);
    free(p->methods);
    free(p->headers);
    free(p->methods_v);
    free(p->headers_v);
    free(p->expose_v);
    *p = (cors_policy){0};
}

static char *lower_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = lower(s[i]);
    d[n] = '\0';
    return d;
}

/* "a, b, c" of the items; NULL for none (and on exhaustion: *failed). */
static char *join(const char *const *items, size_t n, size_t *len, bool *failed)
{
    *len = 0;
    if (n == 0) return NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += strlen(items[i]) + 2;
    char *out = malloc(total + 1), *w = out;
    if (!out) return (*failed = true), NULL;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(items[i]);
        if (i) *w++ = ',', *w++ = ' ';
        memcpy(w, items[i], l);
        w += l;
    }
    *w = '\0';
    *len = (size_t)(w - out);
    return out;
}

static bool is_star(const char *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(items[i], "*") == 0) return true;
    return false;
}

/* Checks a list of tokens ("*" alone allowed when star_ok) and copies it into *out. */
static int token_list(const char *what, const char *const *items, size_t n, bool star_ok, char ***out,
                      size_t *nout, bool *star, char *err, size_t errlen)
{
    *star = is_star(items, n);
    if (*star && (!star_ok || n != 1)) {
        snprintf(err, errlen, "%s: '*' must be the only item", what);
        return -1;
    }
    if (n > CORS_MAX_ITEMS) {
        snprintf(err, errlen, "%s: %zu items, at most %d", what, n, CORS_MAX_ITEMS);
        return -1;
    }
    *out = calloc(n ? n : 1, sizeof **out);
    if (!*out) return snprintf(err, errlen, "out of memory"), -1;
    for (size_t i = 0; i < n; i++) {
        if (!*star && !is_token(items[i])) {
            snprintf(err, errlen, "%s: '%s' is not a token (letters, digits, !#$%%&'*+-.^_`|~)", what,
                     items[i]);
            return -1;
        }
        if (!((*out)[i] = strdup(items[i]))) return snprintf(err, errlen, "out of memory"), -1;
        (*nout)++;
    }
    return 0;
}

static int add_origin(cors_policy *p, const char *s, char *err, size_t errlen)
{
    cors_origin *o = &p->origins[p->norigins];
    const char *star = strstr(s, "://*.");
    if (!star) {
        o->exact_n = strlen(s);
        if (!(o->exact = lower_dup(s, o->exact_n))) return snprintf(err, errlen, "out of memory"), -1;
    } else {
        o->prefix_n = (size_t)(star - s) + 3;
        o->suffix_n = strlen(star + 4);
        o->prefix = lower_dup(s, o->prefix_n);
        o->suffix = lower_dup(star + 4, o->suffix_n); /* ".example.com[:port]" */
        if (!o->prefix || !o->suffix) {
            p->norigins++; /* freed with the policy */
            return snprintf(err, errlen, "out of memory"), -1;
        }
    }
    p->norigins++;
    return 0;
}

int cors_policy_build(cors_policy *p, const char *const *origins, size_t norigins, const char *const *methods,
                      size_t nmethods, const char *const *headers, size_t nheaders, const char *const *expose,
                      size_t nexpose, bool credentials, uint64_t max_age_ms, bool disabled, char *err,
                      size_t errlen)
{
    *p = (cors_policy){.disabled = disabled, .credentials = credentials};
    bool failed = false, star_expose;
    if (norigins > CORS_MAX_ITEMS) {
        snprintf(err, errlen, "allow_origins: %zu items, at most %d", norigins, CORS_MAX_ITEMS);
        return -1;
    }
    p->any_origin = is_star(origins, norigins);
    if (p->any_origin && norigins != 1) {
        snprintf(err, errlen, "allow_origins: '*' must be the only item");
        return -1;
    }
    if (p->any_origin && credentials) {
        snprintf(err, errlen,
                 "allow_credentials: true cannot go with allow_origins '*' (browsers refuse it, and "
                 "reflecting any origin with credentials lets every site act as the user): list the origins");
        return -1;
    }
    if (!(p->origins = calloc(norigins ? norigins : 1, sizeof *p->origins)))
        return snprintf(err, errlen, "out of memory"), -1;
    for (size_t i = 0; i < norigins && !p->any_origin; i++) {
        const char *why = cors_origin_invalid(origins[i]);
        if (why) {
            snprintf(err, errlen, "allow_origins: '%.256s': %s", origins[i], why);
            return -1;
        }
        if (add_origin(p, origins[i], err, errlen) != 0) return -1;
    }
    if (token_list("allow_methods", methods, nmethods, true, &p->methods, &p->nmethods, &p->any_method, err,
                   errlen) != 0 ||
        token_list("allow_headers", headers, nheaders, true, &p->headers, &p->nheaders, &p->any_header, err,
                   errlen) != 0)
        return -1;
    char **ex = NULL;
    size_t nex = 0;
    int rc =
        token_list("expose_headers", expose, nexpose, !credentials, &ex, &nex, &star_expose, err, errlen);
    for (size_t i = 0; i < nex; i++)
        free(ex[i]);
    free(ex);
    if (rc != 0) {
        if (star_expose && credentials)
            snprintf(err, errlen,
                     "expose_headers: '*' means nothing with allow_credentials: list the headers");
        return -1;
    }
    if (!p->any_method) p->methods_v = join(methods, nmethods, &p->methods_n, &failed);
    if (!p->any_header) p->headers_v = join(headers, nheaders, &p->headers_n, &failed);
    p->expose_v = join(expose, nexpose, &p->expose_n, &failed);
    if (failed) return snprintf(err, errlen, "out of memory"), -1;
    uint64_t secs = max_age_ms / 1000u;
    if (secs)
        p->max_age_n = (size_t)snprintf(p->max_age_v, sizeof p->max_age_v, "%llu", (unsigned long long)secs);
    return 0;
}
