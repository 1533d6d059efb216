/* console_test.c - unit tests of plugins/console on the SDK test host: the page, its script and stylesheet
 * with their types and security headers for GET and HEAD, 405 for other methods, the page's template filled
 * from the settings (escaped), nothing loaded from elsewhere and no inline code, a custom path moving all
 * three endpoints, bad settings refused naming the key. GW_PLUGIN_SO is the built filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include <gw/testhost.h>

#ifndef GW_PLUGIN_SO
#define GW_PLUGIN_SO "console.so"
#endif

#define CSP                                                                                                  \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "    \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static gw_th *load(const char *yaml)
{
    gw_th *th = gw_th_new();
    if (gw_th_load(th, GW_PLUGIN_SO, yaml) != 0) fail_msg("load: %s", gw_th_error(th));
    assert_int_equal(gw_th_route(th, "api", "/api", NULL), 0); /* so that other paths match nothing */
    return th;
}

static void no_violations(gw_th *th)
{
    if (gw_th_violations(th)) {
        for (size_t i = 0; i < gw_th_log_count(th); i++)
            fprintf(stderr, "%s\n", gw_th_log_line(th, i, NULL));
        fail_msg("%u test host violations", gw_th_violations(th));
    }
}

static gw_req *get(gw_th *th, const char *method, const char *path)
{
    gw_req *r = gw_th_request(th, method, path);
    assert_int_equal(gw_th_run(r), GW_TH_DONE);
    return r;
}

/* GET and HEAD answer 200 with the type and every security header; HEAD carries the same headers (the
 * gateway sends the GET's Content-Length and drops the body: core/net/respond.c). Returns the GET body. */
static const char *served(gw_th *th, const char *path, const char *type, size_t *len)
{
    const char *body = NULL;
    for (int head = 0; head < 2; head++) {
        gw_req *r = get(th, head ? "HEAD" : "GET", path);
        if (gw_th_status(r) != 200) fail_msg("%s %s: %d", head ? "HEAD" : "GET", path, gw_th_status(r));
        assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Content-Type"), type);
        assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Content-Security-Policy"), CSP);
        assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "X-Content-Type-Options"), "nosniff");
        assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Referrer-Policy"), "no-referrer");
        assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Cache-Control"), "no-store");
        assert_int_equal(gw_th_header_count(r, GW_HDR_RESPONSE, "Content-Security-Policy"), 1);
        size_t n;
        const char *b = gw_th_body(r, &n);
        if (!head) {
            body = b;
            *len = n;
            assert_true(n > 100);
            assert_int_equal(strlen(b), n); /* text: no NUL inside */
        } else {
            assert_int_equal(n, *len);
        }
    }
    return body;
}

/* Case-insensitive strstr. */
static const char *find_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return hay;
    return NULL;
}

/* Nothing from another origin, nothing inline that a strict CSP would block. */
static void self_contained(const char *what, const char *body)
{
    if (find_ci(body, "http://") || find_ci(body, "https://") || strstr(body, "//cdn") ||
        find_ci(body, "@import") || find_ci(body, "url("))
        fail_msg("%s refers to another origin or an external resource", what);
    if (find_ci(body, "eval(") || find_ci(body, "new Function") || find_ci(body, "innerHTML") ||
        find_ci(body, "outerHTML") || find_ci(body, "insertAdjacentHTML") || find_ci(body, "document.write"))
        fail_msg("%s uses eval or HTML strings", what);
}

/* The HTML: every <script> has a src and no body; no style= or on...= attribute, no <style> element. */
static void no_inline_code(const char *html)
{
    for (const char *p = html; (p = find_ci(p, "<script")) != NULL; p++) {
        const char *end = strchr(p, '>');
        assert_non_null(end);
        char tag[256];
        snprintf(tag, sizeof tag, "%.*s", (int)(end - p), p);
        if (!strstr(tag, " src=\"/")) fail_msg("a script without a same-origin src: %s", tag);
        if (strncasecmp(end + 1, "</script>", 9) != 0) fail_msg("a script with a body: %s", tag);
    }
    if (find_ci(html, "<style")) fail_msg("an inline <style> element");
    for (const char *p = html; *p; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\t') continue;
        const char *a = p + 1;
        if (strncasecmp(a, "style=", 6) == 0) fail_msg("a style attribute: %.40s", a);
        if ((a[0] == 'o' || a[0] == 'O') && (a[1] == 'n' || a[1] == 'N')) {
            size_t n = 2;
            while ((a[n] >= 'a' && a[n] <= 'z') || (a[n] >= 'A' && a[n] <= 'Z'))
                n++;
            if (n > 2 && a[n] == '=') fail_msg("an event handler attribute: %.40s", a);
        }
    }
    if (find_ci(html, "javascript:")) fail_msg("a javascript: URL");
}

static void test_default(void **state)
{
    (void)state;
    gw_th *th = load("name: console\n");
    size_t hn, jn, cn;
    const char *html = served(th, "/admin/console", "text/html; charset=utf-8", &hn);
    const char *js = served(th, "/admin/console/app.js", "text/javascript; charset=utf-8", &jn);
    const char *css = served(th, "/admin/console/app.css", "text/css; charset=utf-8", &cn);

    assert_non_null(strstr(html, "<!doctype html>"));
    assert_non_null(strstr(html, "<script src=\"/admin/console/app.js\" defer></script>"));
    assert_non_null(strstr(html, "<link rel=\"stylesheet\" href=\"/admin/console/app.css\">"));
    assert_non_null(strstr(html, "<meta name=\"gw-refresh\" content=\"3000\">"));
    assert_non_null(strstr(html, "<meta name=\"gw-metrics\" content=\"/metrics\">"));
    assert_non_null(strstr(html, "<meta name=\"gw-apikeys\" content=\"/admin/apikeys\">"));
    assert_non_null(strstr(html, "<title>Gateway console</title>"));
    assert_null(strstr(html, "{{")); /* every placeholder filled */
    /* what a browser test looks for */
    static const char *const ids[] = {"id=\"services\"",  "id=\"breakers\"",    "id=\"keys\"",
                                      "id=\"key-name\"",  "id=\"raw-key\"",     "id=\"error\"",
                                      "id=\"reset-all\"", "id=\"reload\"",      "id=\"routes\"",
                                      "id=\"filters\"",   "id=\"config-json\"", NULL};
    for (size_t i = 0; ids[i]; i++)
        if (!strstr(html, ids[i])) fail_msg("the page has no %s", ids[i]);

    self_contained("console.html", html);
    self_contained("app.js", js);
    self_contained("app.css", css);
    no_inline_code(html);
    assert_non_null(strstr(js, "credentials: 'same-origin'"));
    no_violations(th);
    gw_th_free(th);
}

static void test_methods(void **state)
{
    (void)state;
    gw_th *th = load("name: console\n");
    static const char *const paths[] = {"/admin/console", "/admin/console/app.js", "/admin/console/app.css"};
    for (size_t i = 0; i < 3; i++) {
        gw_req *r = get(th, "POST", paths[i]);
        assert_int_equal(gw_th_status(r), 405);
        assert_string_equal(gw_th_header(r, GW_HDR_RESPONSE, "Allow"), "GET, HEAD");
        r = get(th, "DELETE", paths[i]);
        assert_int_equal(gw_th_status(r), 405);
    }
    assert_int_equal(gw_th_status(get(th, "GET", "/admin/console/other.js")), 404);
    assert_int_equal(gw_th_status(get(th, "GET", "/admin/consoles")), 404);
    no_violations(th);
    gw_th_free(th);
}

static void test_custom_settings(void **state)
{
    (void)state;
    gw_th *th = load("name: console\npath: /admin/ui/dash\nrefresh: 10s\ntitle: \"Prod <east> & 'west'\"\n"
                     "metrics_path: /admin/metrics\napikeys_path: /admin/keys\n");
    size_t n;
    const char *html = served(th, "/admin/ui/dash", "text/html; charset=utf-8", &n);
    served(th, "/admin/ui/dash/app.js", "text/javascript; charset=utf-8", &n);
    served(th, "/admin/ui/dash/app.css", "text/css; charset=utf-8", &n);
    assert_non_null(strstr(html, "<script src=\"/admin/ui/dash/app.js\" defer></script>"));
    assert_non_null(strstr(html, "href=\"/admin/ui/dash/app.css\""));
    assert_non_null(strstr(html, "<meta name=\"gw-refresh\" content=\"10000\">"));
    assert_non_null(strstr(html, "<meta name=\"gw-metrics\" content=\"/admin/metrics\">"));
    assert_non_null(strstr(html, "<meta name=\"gw-apikeys\" content=\"/admin/keys\">"));
    assert_non_null(strstr(html, "<title>Prod &lt;east&gt; &amp; &#39;west&#39;</title>"));
    assert_null(strstr(html, "<east>"));
    /* the default paths are no longer served */
    assert_int_equal(gw_th_status(get(th, "GET", "/admin/console")), 404);
    assert_int_equal(gw_th_status(get(th, "GET", "/admin/console/app.js")), 404);
    assert_int_equal(gw_th_status(get(th, "GET", "/admin/console/app.css")), 404);
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "outside /admin"), 0);
    no_violations(th);
    gw_th_free(th);

    /* a page outside /admin works, with a warning */
    th = load("name: console\npath: /console\n");
    served(th, "/console/app.css", "text/css; charset=utf-8", &n);
    assert_int_equal(gw_th_log_find(th, GW_LOG_WARN, "outside /admin"), 1);
    gw_th_free(th);
}

static void test_bad_settings(void **state)
{
    (void)state;
    static const struct {
        const char *yaml, *want;
    } bad[] = {
        {"name: console\npath: admin/console\n", "console.path"},
        {"name: console\npath: /admin/console/\n", "console.path"},
        {"name: console\npath: /\n", "console.path"},
        {"name: console\npath: /admin/../console\n", "console.path"},
        {"name: console\npath: /admin//console\n", "console.path"},
        {"name: console\npath: \"/admin/con sole\"\n", "console.path"},
        {"name: console\npath: \"/admin/x\\\"y\"\n", "console.path"},
        {"name: console\nmetrics_path: metrics\n", "console.metrics_path"},
        {"name: console\napikeys_path: /admin/keys?x=1\n", "console.apikeys_path"},
        {"name: console\nrefresh: 10ms\n", "console.refresh"},
        {"name: console\nrefresh: 1h\n", "console.refresh"},
        {"name: console\nrefresh: soon\n", "console.refresh"},
        {"name: console\ntitle: \"a\\tb\"\n", "console.title"},
        {"name: console\nbogus: 1\n", "bogus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gw_th *th = gw_th_new();
        assert_int_equal(gw_th_load(th, GW_PLUGIN_SO, bad[i].yaml), -1);
        const char *e = gw_th_error(th);
        if (!strstr(e, bad[i].want) || !strstr(e, ":2:")) fail_msg("%s: %s", bad[i].yaml, e);
        gw_th_free(th);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_custom_settings),
        cmocka_unit_test(test_bad_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
