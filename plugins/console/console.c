/* console.c - the filter "console": a live admin page served by the gateway itself.
 *
 *   pipeline:
 *     - name: console
 *       path: /admin/console        # the page; its script and stylesheet are path/app.js and path/app.css
 *       refresh: 3s                 # how often the page polls the admin API
 *       title: Gateway console
 *       metrics_path: /metrics      # where the metrics filter answers (its `path`)
 *       apikeys_path: /admin/apikeys  # where the apikey filter answers (its `admin_path`)
 *
 * GET and HEAD on the three endpoints; everything else 405 with Allow. The HTML, JavaScript and CSS are the
 * files of plugins/console/assets, compiled in at build time (cmake/embed_assets.cmake), so the page works
 * offline and loads nothing from elsewhere; it runs under a strict Content-Security-Policy (no inline script
 * or style). The HTML is a template: {{title}}, {{base}} (path), {{refresh}} (ms), {{metrics}} and
 * {{apikeys}} are filled in once per instance in create(); the script reads them from <meta> elements. The
 * page does everything else through the admin API with the browser's credentials; the filter authenticates
 * nothing itself: adminauth guards /admin in the request phase, before the endpoints run. */
#include <gw/filter.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CS_NAME "console"
#define CS_MAX_PATH 200
#define CS_MAX_TITLE 120

#define HAS(h, m) ((h)->struct_size >= offsetof(gw_host, m) + sizeof((h)->m) && (h)->m)

/* The files of plugins/console/assets (cmake/embed_assets.cmake writes the array). */
struct gw_asset {
    const char *name;
    const unsigned char *data; /* len bytes and a NUL */
    size_t len;
};
extern const struct gw_asset gw_assets[];

typedef struct {
    const char *path;
    uint64_t refresh; /* ms */
    const char *title;
    const char *metrics_path, *apikeys_path;
} cs_conf;

#define CS_SET(key, type, field, def, lo, hi, help)                                                          \
    {                                                                                                        \
        key, type, offsetof(cs_conf, field), def, lo, hi, NULL, 0, help                                      \
    }
static const gw_setting cs_settings[] = {
    CS_SET("path", GW_SET_STRING, path, "/admin/console", 0, 0,
           "Path of the page; the script and stylesheet are served at path/app.js and path/app.css. Keep it "
           "under the prefix adminauth protects"),
    CS_SET("refresh", GW_SET_DURATION, refresh, "3s", 1000, 600000,
           "How often the page polls the admin API"),
    CS_SET("title", GW_SET_STRING, title, "Gateway console", 0, 0, "Title of the page (plain text)"),
    CS_SET("metrics_path", GW_SET_STRING, metrics_path, "/metrics", 0, 0,
           "Where the page reads the metrics (the metrics filter's path)"),
    CS_SET("apikeys_path", GW_SET_STRING, apikeys_path, "/admin/apikeys", 0, 0,
           "Where the page manages API keys (the apikey filter's admin_path)"),
    {.name = NULL},
};

static const char *const path_keys[] = {"path", "metrics_path", "apikeys_path", NULL};

#define CSP                                                                                                  \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "    \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

enum { CS_PAGE, CS_JS, CS_CSS, CS_NFILES };

static const struct {
    const char *asset, *suffix, *type;
} cs_files[CS_NFILES] = {
    {"console.html", "", "text/html; charset=utf-8"},
    {"app.js", "/app.js", "text/javascript; charset=utf-8"},
    {"app.css", "/app.css", "text/css; charset=utf-8"},
};

typedef struct {
    const gw_host *h;
    gw_filter *self;
    const cs_conf *s;
    char *url[CS_NFILES]; /* the endpoints' paths */
    const char *body[CS_NFILES];
    size_t len[CS_NFILES];
    char *page; /* the rendered HTML (body[CS_PAGE]) */
} cs_inst;

/* --- settings ------------------------------------------------------------------------------------------- */

/* NULL when p is a plain absolute path (letters, digits, "._~-/", no empty, "." or ".." segment, no trailing
 * '/'), else what is wrong. Such a path needs no escaping in a URL or an HTML attribute. */
static const char *path_problem(const char *p)
{
    size_t n = strlen(p);
    if (p[0] != '/') return "must start with '/'";
    if (n < 2 || p[n - 1] == '/') return "must not be '/' or end with '/'";
    if (n > CS_MAX_PATH) return "is too long (at most 200 characters)";
    for (const char *c = p; *c; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                  strchr("._~-/", *c);
        if (!ok) return "may hold only letters, digits and . _ ~ - /";
        if (*c == '/') {
            size_t seg = strcspn(c + 1, "/");
            if (seg == 0 || (seg == 1 && c[1] == '.') || (seg == 2 && c[1] == '.' && c[2] == '.'))
                return "must not have empty, '.' or '..' segments";
        }
    }
    return NULL;
}

static int cs_config_check(const gw_host *h, const gw_conf *conf, char *err, size_t errlen)
{
    for (size_t i = 0; path_keys[i]; i++) {
        const gw_conf *n = h->conf_get(conf, path_keys[i]);
        const char *v = n ? h->conf_str(n) : NULL;
        const char *why = v ? path_problem(v) : NULL;
        if (why) return h->conf_error(n, err, errlen, CS_NAME ".%s: '%s' %s", path_keys[i], v, why);
    }
    const gw_conf *n = h->conf_get(conf, "title");
    const char *t = n ? h->conf_str(n) : NULL;
    if (t && strlen(t) > CS_MAX_TITLE)
        return h->conf_error(n, err, errlen, CS_NAME ".title: at most %d characters", CS_MAX_TITLE);
    for (const unsigned char *c = (const unsigned char *)t; c && *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return h->conf_error(n, err, errlen, CS_NAME ".title: no control characters");
    return 0;
}

/* --- the page ------------------------------------------------------------------------------------------- */

static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        const char *e = *s == '&'    ? "&amp;"
                        : *s == '<'  ? "&lt;"
                        : *s == '>'  ? "&gt;"
                        : *s == '"'  ? "&quot;"
                        : *s == '\'' ? "&#39;"
                                     : NULL;
        if (e)
            fputs(e, f);
        else
            fputc(*s, f);
    }
}

/* The HTML template with every {{name}} replaced by its setting, escaped; NULL with a message in err on an
 * unknown name (a broken asset) or no memory. */
static char *render(const cs_inst *in, const char *tpl, size_t *len, char *err, size_t errlen)
{
    char *out = NULL, refresh[24];
    snprintf(refresh, sizeof refresh, "%llu", (unsigned long long)in->s->refresh);
    const char *const vars[][2] = {{"title", in->s->title},
                                   {"base", in->s->path},
                                   {"refresh", refresh},
                                   {"metrics", in->s->metrics_path},
                                   {"apikeys", in->s->apikeys_path}};
    FILE *f = open_memstream(&out, len);
    if (!f) {
        snprintf(err, errlen, CS_NAME ": out of memory");
        return NULL;
    }
    bool ok = true;
    for (const char *p = tpl; *p;) {
        const char *open = strstr(p, "{{"), *close = open ? strstr(open, "}}") : NULL;
        if (!close) {
            fputs(p, f);
            break;
        }
        fwrite(p, 1, (size_t)(open - p), f);
        size_t n = (size_t)(close - open - 2), i = 0;
        while (i < sizeof vars / sizeof *vars && (strlen(vars[i][0]) != n || memcmp(vars[i][0], open + 2, n)))
            i++;
        if (i == sizeof vars / sizeof *vars) {
            snprintf(err, errlen, CS_NAME ": console.html: unknown placeholder {{%.*s}}",
                     (int)(n < 40 ? n : 40), open + 2);
            ok = false;
            break;
        }
        put_escaped(f, vars[i][1] ? vars[i][1] : "");
        p = close + 2;
    }
    if (fclose(f) != 0 && ok) {
        snprintf(err, errlen, CS_NAME ": out of memory");
        ok = false;
    }
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

static const struct gw_asset *asset(const char *name)
{
    for (const struct gw_asset *a = gw_assets; a->name; a++)
        if (strcmp(a->name, name) == 0) return a;
    return NULL;
}

/* --- the endpoints -------------------------------------------------------------------------------------- */

static bool method_is(gw_strv m, const char *name)
{
    return m.n == strlen(name) && memcmp(m.p, name, m.n) == 0;
}

static void set(const gw_host *h, gw_req *req, const char *name, const char *value)
{
    h->header_set(req, GW_HDR_RESPONSE, name, value, strlen(value));
}

/* GET/HEAD on one of the three paths. HEAD gets the GET's body too: the gateway sends its Content-Length
 * and drops the bytes (core/net/respond.c). */
static gw_result cs_endpoint(void *inst, void *route_conf, void *state, gw_req *req)
{
    cs_inst *in = inst;
    const gw_host *h = in->h;
    gw_strv path = h->path(req), m = h->method(req);
    int f = 0;
    while (f < CS_NFILES && !(strlen(in->url[f]) == path.n && memcmp(in->url[f], path.p, path.n) == 0))
        f++;
    if (f == CS_NFILES) return h->respond_error(req, 404, "Not found") == 0 ? GW_RESPOND : GW_ERROR;
    if (!method_is(m, "GET") && !method_is(m, "HEAD")) {
        set(h, req, "Allow", "GET, HEAD");
        return h->respond_error(req, 405, "The console is read with GET or HEAD") == 0 ? GW_RESPOND
                                                                                       : GW_ERROR;
    }
    set(h, req, "Content-Security-Policy", CSP);
    set(h, req, "X-Content-Type-Options", "nosniff");
    set(h, req, "Referrer-Policy", "no-referrer");
    set(h, req, "Cache-Control", "no-store");
    return h->respond(req, 200, cs_files[f].type, in->body[f], in->len[f]) == 0 ? GW_RESPOND : GW_ERROR;
}

/* --- lifecycle ------------------------------------------------------------------------------------------ */

static void cs_destroy(void *inst)
{
    cs_inst *in = inst;
    if (!in) return;
    for (int f = 0; f < CS_NFILES; f++)
        free(in->url[f]);
    free(in->page);
    free(in);
}

static int register_file(cs_inst *in, const char *url)
{
    const gw_host *h = in->h;
    if (h->register_endpoint(in->self, "*", url, false, cs_endpoint) == 0) return 0;
    return h->register_endpoint(in->self, "GET", url, false, cs_endpoint) == 0 &&
                   h->register_endpoint(in->self, "HEAD", url, false, cs_endpoint) == 0
               ? 0
               : -1;
}

static void *cs_create(const gw_host *h, gw_filter *self, const gw_conf *conf, char *err, size_t errlen)
{
    if (!HAS(h, settings) || !HAS(h, register_endpoint) || !HAS(h, respond_error)) {
        snprintf(err, errlen, CS_NAME ": the host lacks the settings or endpoint calls this filter needs");
        return NULL;
    }
    cs_inst *in = calloc(1, sizeof *in);
    if (!in) {
        snprintf(err, errlen, CS_NAME ": out of memory");
        return NULL;
    }
    in->h = h;
    in->self = self;
    in->s = h->settings(self);
    for (int f = 0; f < CS_NFILES; f++) {
        const struct gw_asset *a = asset(cs_files[f].asset);
        if (!a) {
            snprintf(err, errlen, CS_NAME ": the asset %s was not built in", cs_files[f].asset);
            cs_destroy(in);
            return NULL;
        }
        in->body[f] = (const char *)a->data;
        in->len[f] = a->len;
        if (asprintf(&in->url[f], "%s%s", in->s->path, cs_files[f].suffix) < 0) {
            in->url[f] = NULL;
            snprintf(err, errlen, CS_NAME ": out of memory");
            cs_destroy(in);
            return NULL;
        }
    }
    in->page = render(in, in->body[CS_PAGE], &in->len[CS_PAGE], err, errlen);
    if (!in->page) {
        cs_destroy(in);
        return NULL;
    }
    in->body[CS_PAGE] = in->page;
    for (int f = 0; f < CS_NFILES; f++)
        if (register_file(in, in->url[f]) != 0) {
            snprintf(err, errlen, CS_NAME ": cannot register the endpoint %s", in->url[f]);
            cs_destroy(in);
            return NULL;
        }
    if (strncmp(in->s->path, "/admin/", 7) != 0)
        h->log(self, NULL, GW_LOG_WARN,
               "the page is at %s, outside /admin: make sure adminauth (or something else) protects it",
               in->s->path);
    return in;
}

GW_FILTER_EXPORT const gw_filter_desc gw_filter_descriptor = {
    .abi_major = GW_ABI_MAJOR,
    .abi_minor = GW_ABI_MINOR,
    .struct_size = sizeof(gw_filter_desc),
    .name = CS_NAME,
    .version = "1.0.0",
    .description = "Live admin page (GET /admin/console): services, breakers, traffic, API keys, reloads",
    .config_check = cs_config_check,
    .create = cs_create,
    .destroy = cs_destroy,
    .settings = cs_settings,
    .settings_size = sizeof(cs_conf),
};
