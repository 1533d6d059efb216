/* describe.c - `gateway --describe-filter FILE.so [--json]`: what a filter is (name, version, ABI, phases)
 * and every setting of its table with type, default, range or allowed names, flags and help. The JSON
 * form feeds scripts/gen-filter-docs.py, which writes docs/filters.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "conf_settings.h"
#include "module.h"

static const char *const phase_names[] = {"request", "upstream_request", "upstream_response", "response",
                                          "log",     "request_body",     "response_body"};

static size_t phases_of(const gw_filter_desc *d, const char **out)
{
    const void *fns[] = {(const void *)d->on_request,
                         (const void *)d->on_upstream_request,
                         (const void *)d->on_upstream_response,
                         (const void *)d->on_response,
                         (const void *)d->on_log,
                         (const void *)d->on_request_body,
                         (const void *)d->on_response_body};
    size_t n = 0;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        if (fns[i]) out[n++] = phase_names[i];
    return n;
}

/* The default as YAML would write it (lists as [a, b]); what an absent default means otherwise. */
static const char *default_text(const gw_setting *s, char *buf, size_t cap)
{
    bool list = s->type == GW_SET_STRINGS || s->type == GW_SET_CIDRS || s->type == GW_SET_PREFIXES;
    if (s->flags & GW_SET_SECRET) return s->def ? "(secret, set)" : "(none)";
    if (s->def && list) {
        snprintf(buf, cap, "[%s]", s->def);
        return buf;
    }
    if (s->def) return s->def;
    switch (s->type) {
    case GW_SET_INT:
    case GW_SET_NUMBER:
    case GW_SET_DURATION:
    case GW_SET_SIZE:
        return "0";
    case GW_SET_BOOL:
        return "false";
    case GW_SET_ENUM:
        return s->names && s->names[0] ? s->names[0] : "";
    case GW_SET_STRINGS:
    case GW_SET_CIDRS:
    case GW_SET_PREFIXES:
        return "[]";
    default:
        return "(none)";
    }
}

static void flags_text(const gw_setting *s, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s", s->flags & GW_SET_REQUIRED ? " required" : "",
             s->flags & GW_SET_ROUTE ? " per-route" : "", s->flags & GW_SET_SECRET ? " secret" : "");
}

static void print_text(const gw_module *m, const char *file)
{
    const gw_filter_desc *d = &m->desc;
    printf("file:        %s\nname:        %s\nversion:     %s\n", file, d->name, d->version);
    if (d->description) printf("description: %s\n", d->description);
    printf("abi:         %u.%u\n", m->built_major, m->built_minor);
    const char *ph[8];
    size_t n = phases_of(d, ph);
    printf("phases:      ");
    for (size_t i = 0; i < n; i++)
        printf("%s%s", i ? ", " : "", ph[i]);
    printf("%s\n", n ? "" : "(none)");
    if (!d->settings) {
        printf("settings:    (no table: the filter reads its settings itself)\n");
        return;
    }
    printf("settings:\n");
    for (const gw_setting *s = d->settings; s->name; s++) {
        char allowed[512], flags[64], def[512];
        gw_settings_allowed_text(s, allowed, sizeof allowed);
        flags_text(s, flags, sizeof flags);
        printf("  %s: %s, default %s", s->name, gw_settings_type_name(s->type),
               default_text(s, def, sizeof def));
        if (allowed[0]) printf(", %s %s", s->type == GW_SET_ENUM ? "one of" : "range", allowed);
        if (flags[0]) printf(",%s", flags);
        printf("\n      %s\n", s->help ? s->help : "");
    }
}

static cJSON *setting_json(const gw_setting *s)
{
    cJSON *o = cJSON_CreateObject();
    char allowed[512], def[512];
    gw_settings_allowed_text(s, allowed, sizeof allowed);
    cJSON_AddStringToObject(o, "name", s->name);
    cJSON_AddStringToObject(o, "type", gw_settings_type_name(s->type));
    cJSON_AddStringToObject(o, "default", default_text(s, def, sizeof def));
    if (s->type == GW_SET_ENUM) {
        cJSON *a = cJSON_AddArrayToObject(o, "allowed");
        for (size_t i = 0; s->names && s->names[i]; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(s->names[i]));
    } else if (allowed[0]) {
        cJSON_AddStringToObject(o, "range", allowed);
        cJSON_AddNumberToObject(o, "min", s->min);
        cJSON_AddNumberToObject(o, "max", s->max);
    }
    cJSON_AddBoolToObject(o, "required", (s->flags & GW_SET_REQUIRED) != 0);
    cJSON_AddBoolToObject(o, "per_route", (s->flags & GW_SET_ROUTE) != 0);
    cJSON_AddBoolToObject(o, "secret", (s->flags & GW_SET_SECRET) != 0);
    cJSON_AddStringToObject(o, "help", s->help ? s->help : "");
    return o;
}

static void print_json(const gw_module *m, const char *file, const char *error)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", file);
    if (error) {
        cJSON_AddStringToObject(o, "error", error);
    } else {
        const gw_filter_desc *d = &m->desc;
        char abi[16];
        snprintf(abi, sizeof abi, "%u.%u", m->built_major, m->built_minor);
        cJSON_AddStringToObject(o, "name", d->name);
        cJSON_AddStringToObject(o, "version", d->version);
        cJSON_AddStringToObject(o, "description", d->description ? d->description : "");
        cJSON_AddStringToObject(o, "abi", abi);
        const char *ph[8];
        size_t n = phases_of(d, ph);
        cJSON *a = cJSON_AddArrayToObject(o, "phases");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(ph[i]));
        cJSON_AddBoolToObject(o, "settings_table", d->settings != NULL);
        cJSON *st = cJSON_AddArrayToObject(o, "settings");
        for (const gw_setting *s = d->settings; s && s->name; s++)
            cJSON_AddItemToArray(st, setting_json(s));
    }
    char *text = cJSON_Print(o);
    if (text) printf("%s\n", text);
    free(text);
    cJSON_Delete(o);
}

int gw_module_describe_cli(const char *file, bool json)
{
    char *err = NULL;
    gw_module *m = gw_module_load(file, &err);
    if (!m) {
        if (json)
            print_json(NULL, file, err ? err : "unknown error");
        else
            printf("file:        %s\nverdict:     REFUSED: %s\n", file, err ? err : "unknown error");
        free(err);
        return 1;
    }
    if (json)
        print_json(m, file, NULL);
    else
        print_text(m, file);
    gw_module_free(m);
    return 0;
}
