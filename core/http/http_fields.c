/* http_fields.c - helpers over parsed heads and field values: lookup by name, token lists, hop-by-hop
 * fields, method names and the Allow line, status reason phrases. */
#include "http_internal.h"

#include <stdio.h>
#include <string.h>

const gw_http_field *gw_http_find(const gw_http_head *h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->nfields; i++) {
        const gw_str *f = &h->fields[i].name;
        if (gw_str_eq_ci_str(*f, (gw_str){name, n})) return &h->fields[i];
    }
    return NULL;
}

bool gw_http_list_has(gw_str value, const char *token)
{
    return list_has_str(value, (gw_str){token, strlen(token)});
}

bool gw_http_is_hop_by_hop(gw_str name)
{
    static const gw_str hop[] = {
        {"te", 2},
        {"trailer", 7},
        {"upgrade", 7},
        {"keep-alive", 10},
        {"connection", 10},
        {"proxy-connection", 16},
        {"transfer-encoding", 17},
        {"proxy-authenticate", 18},
        {"proxy-authorization", 19},
    };
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        if (hop[i].n == name.n && eq_ci_n(name.p, hop[i].p, name.n)) return true;
    return false;
}

bool gw_http_conn_lists(const gw_http_head *h, gw_str name)
{
    if (name.n == 0) return false;
    for (size_t i = 0; i < h->nfields; i++)
        if (gw_str_eq_ci(h->fields[i].name, "connection") && list_has_str(h->fields[i].value, name))
            return true;
    return false;
}

static const gw_str method_names[] = {
    [GW_METHOD_GET] = {"GET", 3},         [GW_METHOD_HEAD] = {"HEAD", 4},
    [GW_METHOD_POST] = {"POST", 4},       [GW_METHOD_PUT] = {"PUT", 3},
    [GW_METHOD_DELETE] = {"DELETE", 6},   [GW_METHOD_PATCH] = {"PATCH", 5},
    [GW_METHOD_OPTIONS] = {"OPTIONS", 7}, [GW_METHOD_CONNECT] = {"CONNECT", 7},
    [GW_METHOD_TRACE] = {"TRACE", 5},
};

int gw_http_method_id(gw_str m)
{
    /* Methods are case-sensitive (RFC 9110 9.1): "get" is an unknown method. */
    for (int id = GW_METHOD_GET; id <= GW_METHOD_TRACE; id++)
        if (method_names[id].n == m.n && memcmp(method_names[id].p, m.p, m.n) == 0) return id;
    return GW_METHOD_OTHER;
}

void gw_http_allow_line(unsigned methods, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "Allow: ");
    for (int m = GW_METHOD_GET; m <= GW_METHOD_TRACE && n < cap; m++)
        if (methods & (1u << m))
            n += (size_t)snprintf(out + n, cap - n, "%s%s", n > 7 ? ", " : "", method_names[m].p);
    if (n < cap) snprintf(out + n, cap - n, "\r\n");
}

/* RFC 9110 section 15 and the registered extensions still in use. */
static const struct {
    short code;
    const char *text;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {102, "Processing"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {207, "Multi-Status"},
    {208, "Already Reported"},
    {226, "IM Used"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {305, "Use Proxy"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {423, "Locked"},
    {424, "Failed Dependency"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {451, "Unavailable For Legal Reasons"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {506, "Variant Also Negotiates"},
    {507, "Insufficient Storage"},
    {508, "Loop Detected"},
    {510, "Not Extended"},
    {511, "Network Authentication Required"},
};

const char *gw_http_reason(int status)
{
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].code == status) return reasons[i].text;
    return "Unknown";
}

bool gw_http_is_token(const char *s, size_t n)
{
    if (!n) return false;
    for (size_t i = 0; i < n; i++)
        if (!(gw_http_cls[(unsigned char)s[i]] & C_TCHAR)) return false;
    return true;
}
