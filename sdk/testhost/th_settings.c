/* th_settings.c - settings tables (ABI 1.1) on the test host: the same checks and the same filling code as
 * the gateway (core/config/conf_settings.c, linked in), so a filter that passes here passes
 * `gateway -t` and reads the same struct. */
#include "th_internal.h"

#include "conf_settings.h"

#define ERRLEN 1024

int th_settings_entry(gw_th *th, gw_filter *f)
{
    if (f->built_minor < 1) { /* 1.0 had reserved slots there */
        f->d.settings = NULL;
        f->d.settings_size = 0;
    }
    if (!f->d.settings) return 0;
    char err[ERRLEN] = "";
    if (gw_settings_table_check(f->d.name, f->d.settings, f->d.settings_size, err, sizeof err) != 0)
        return th_fail(th, "%s: %s", f->source, err);
    const gw_yaml_node *root = f->doc ? f->doc->root : NULL;
    if (gw_settings_check(f->d.name, f->d.settings, root, false, err, sizeof err) != 0)
        return th_fail(th, "%s", err);
    f->settings = gw_settings_new(f->d.name, f->d.settings, f->d.settings_size, root, NULL, err, sizeof err);
    if (!f->settings) return th_fail(th, "%s", err);
    if (!f->d.route_create) f->route_default = f->settings;
    return 0;
}

bool th_settings_per_route(const gw_filter *f)
{
    return f->d.settings && gw_settings_has_route(f->d.settings);
}

int th_settings_route_check(gw_th *th, const gw_filter *f, const gw_yaml_node *conf)
{
    char err[ERRLEN] = "";
    if (th_settings_per_route(f) &&
        gw_settings_check(f->d.name, f->d.settings, conf, true, err, sizeof err) != 0)
        return th_fail(th, "%s", err);
    return 0;
}

void *th_settings_route_conf(gw_th *th, const gw_filter *f, const gw_yaml_node *conf)
{
    char err[ERRLEN] = "";
    const gw_yaml_node *root = f->doc ? f->doc->root : NULL;
    void *rc = gw_settings_new(f->d.name, f->d.settings, f->d.settings_size, root, conf, err, sizeof err);
    if (!rc) th_fail(th, "%s", err);
    return rc;
}

void th_route_conf_free(gw_filter *f, void *rc)
{
    if (!rc) return;
    if (f->d.route_create) {
        if (f->d.route_destroy) f->d.route_destroy(f->inst, rc);
    } else if (rc != f->settings) {
        gw_settings_free(rc);
    }
}

static const void *h_settings(gw_filter *self)
{
    return self ? self->settings : NULL;
}

void th_settings_fill(gw_host *h)
{
    h->settings = h_settings;
}
