/* apikey_admin.c - the endpoints under admin_path (default /admin/apikeys), registered in create() for
 * every method and routed here:
 *
 *   POST   /admin/apikeys              create: 201 with the raw key, shown this once
 *   GET    /admin/apikeys              list, oldest first (never a raw key or a hash)
 *   POST   /admin/apikeys/{id}/revoke  200 (also when already revoked), 404 for an unknown id
 *   DELETE /admin/apikeys/{id}         200, 404 for an unknown id
 *
 * Other methods on those paths: 405 with Allow; other paths below admin_path: 404. A store failure is 503
 * {"error":"Service Unavailable","message":"the key store is unavailable"}. Revoke and delete find the key
 * by listing the records (admin operations are rare; a key is stored under its hash, not its id), then
 * write or delete that record, and make every worker of this gateway drop its cache. */
#include "apikey.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CREATED_MESSAGE "API key created. Save the raw_key - it won't be shown again!"

int ak_respond_json(const gw_host *h, gw_req *req, int status, void *cjson_doc)
{
    cJSON *doc = cjson_doc;
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text) return -1;
    int rc = h->respond(req, status, "application/json", text, strlen(text));
    free(text);
    return rc;
}

static gw_result answer_error(const ak_inst *in, gw_req *req, int status, const char *message)
{
    return in->h->respond_error(req, status, message) == 0 ? GW_RESPOND : GW_ERROR;
}

static gw_result answer_unavailable(const ak_inst *in, gw_req *req)
{
    return answer_error(in, req, 503, "the key store is unavailable");
}

static gw_result answer_message(const ak_inst *in, gw_req *req, int status, const char *message)
{
    cJSON *doc = cJSON_CreateObject();
    if (!doc || !cJSON_AddStringToObject(doc, "status", "success") ||
        !cJSON_AddStringToObject(doc, "message", message)) {
        cJSON_Delete(doc);
        return GW_ERROR;
    }
    return ak_respond_json(in->h, req, status, doc) == 0 ? GW_RESPOND : GW_ERROR;
}

static gw_result method_not_allowed(const ak_inst *in, gw_req *req, const char *allow)
{
    in->h->header_set(req, GW_HDR_RESPONSE, "Allow", allow, strlen(allow));
    return answer_error(in, req, 405, "The method is not allowed on this endpoint");
}

/* The API view of a record: id, name, rate_limit (0 = none), active, created_at, expires_at when set. A
 * name stored with invalid UTF-8 (by an older version, or written into the store directly) is listed with
 * U+FFFD in place of each bad byte: cJSON would copy the bytes as they are, and the whole answer would not
 * be JSON for a strict client. */
static cJSON *api_key_json(const ak_record *r)
{
    char name[3 * AK_MAX_NAME + 1];
    ak_utf8_repair(r->name, name, sizeof name);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "id", r->id) || !cJSON_AddStringToObject(o, "name", name) ||
        !cJSON_AddNumberToObject(o, "rate_limit", (double)r->rate_limit) ||
        !cJSON_AddBoolToObject(o, "active", r->active) || !cJSON_AddStringToObject(o, "created_at", r->created_at) ||
        (r->expires_at[0] && !cJSON_AddStringToObject(o, "expires_at", r->expires_at))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The stored form: the same fields, rate_limit only when set. */
static char *record_json(const ak_record *r)
{
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    if (o && cJSON_AddStringToObject(o, "id", r->id) && cJSON_AddStringToObject(o, "name", r->name) &&
        (!r->rate_limit || cJSON_AddNumberToObject(o, "rate_limit", (double)r->rate_limit)) &&
        cJSON_AddBoolToObject(o, "active", r->active) && cJSON_AddStringToObject(o, "created_at", r->created_at) &&
        (!r->expires_at[0] || cJSON_AddStringToObject(o, "expires_at", r->expires_at)))
        text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* ---------------------------------------------------------------------------------------------------
 * create */

static void base64url(const uint8_t *in, size_t n, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)in[i] << 16;
        if (i + 1 < n) w |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) w |= in[i + 2];
        out[o++] = alphabet[(w >> 18) & 63];
        out[o++] = alphabet[(w >> 12) & 63];
        if (i + 1 < n) out[o++] = alphabet[(w >> 6) & 63];
        if (i + 2 < n) out[o++] = alphabet[w & 63];
    }
    out[o] = '\0';
}

/* Checks the body of a create call into rec (name, rate_limit, expires_at). 0, 1 with *why (the 400
 * message, which may point into buf), or -1 (out of memory). */
static int parse_create(const gw_host *h, gw_strv body, ak_record *rec, const char **why, char *buf, size_t buflen)
{
    void *tree = NULL;
    int rc = ak_json_parse_strict(body, &tree, why, buf, buflen);
    if (rc != 0) return rc;
    cJSON *doc = tree;
    const char *bad = NULL;
    if (!cJSON_IsObject(doc)) {
        bad = "The request body must be a JSON object";
        goto done;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "name");
    const cJSON *rl = cJSON_GetObjectItemCaseSensitive(doc, "rate_limit");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(doc, "expires_at");
    if (!name || cJSON_IsNull(name)) {
        bad = "name is required";
        goto done;
    }
    if (!cJSON_IsString(name)) {
        bad = "name must be a string";
        goto done;
    }
    size_t nlen = strlen(name->valuestring);
    if (nlen == 0) {
        bad = "name must not be empty";
        goto done;
    }
    if (nlen > AK_MAX_NAME) {
        bad = "name must be at most 256 bytes";
        goto done;
    }
    if (ak_has_control(name->valuestring)) {
        bad = "name must not contain control characters";
        goto done;
    }
    strcpy(rec->name, name->valuestring);
    if (rl && !cJSON_IsNull(rl)) {
        double v = cJSON_IsNumber(rl) ? rl->valuedouble : 0.5;
        bool integral = isfinite(v) && (v < -1e15 || v > 1e15 || (double)(int64_t)v == v); /* no libm */
        if (!integral) {
            bad = "rate_limit must be an integer (requests per minute)";
            goto done;
        }
        if (rl->valuedouble < 1) {
            bad = "rate_limit must be at least 1 (leave it out for the default limit)";
            goto done;
        }
        if (rl->valuedouble > (double)AK_MAX_RATE_LIMIT) {
            bad = "rate_limit must be at most 1000000000";
            goto done;
        }
        rec->rate_limit = (int64_t)rl->valuedouble;
    }
    if (exp && !cJSON_IsNull(exp)) {
        if (!cJSON_IsString(exp)) {
            bad = "expires_at must be an RFC 3339 date-time string";
            goto done;
        }
        if (ak_parse_rfc3339(exp->valuestring, &rec->expires_ms) != 0) {
            bad = "expires_at must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z";
            goto done;
        }
        if (rec->expires_ms <= (int64_t)h->unix_ms()) {
            bad = "expires_at must be in the future";
            goto done;
        }
        ak_format_rfc3339(rec->expires_ms, rec->expires_at, sizeof rec->expires_at);
    }
done:
    cJSON_Delete(doc);
    *why = bad;
    return bad ? 1 : 0;
}

static void create_done(void *token, int status, const char *value, size_t len)
{
    ak_pend *p = ak_pend_find(token);
    if (!p) return;
    ak_inst *in = p->in;
    gw_req *req = p->req;
    gw_result res;
    if (status < 0) {
        in->h->log(in->self, req, GW_LOG_WARN, "creating API key %s: key store write failed (status %d)", p->id,
                   status);
        res = answer_unavailable(in, req);
    } else {
        in->h->log(in->self, req, GW_LOG_INFO, "API key %s created", p->id);
        res = in->h->respond(req, 201, "application/json", p->response, strlen(p->response)) == 0 ? GW_RESPOND
                                                                                                  : GW_ERROR;
    }
    ak_finish(p, res);
}

static gw_result do_create(ak_inst *in, gw_req *req)
{
    const gw_host *h = in->h;
    gw_strv body;
    if (!h->body(req, &body)) return GW_ERROR;
    if (body.n > AK_MAX_BODY) return answer_error(in, req, 413, "The request body is larger than 64 KiB");
    ak_record rec;
    memset(&rec, 0, sizeof rec);
    const char *bad = NULL;
    char why[160];
    int checked = parse_create(h, body, &rec, &bad, why, sizeof why);
    if (checked < 0) return GW_ERROR;
    if (checked) return answer_error(in, req, 400, bad);

    uint8_t id_bytes[AK_ID_BYTES], key_bytes[AK_KEY_BYTES], digest[AK_DIGEST_LEN];
    char raw[AK_MAX_PREFIX + AK_KEY_BYTES * 2 + 1];
    if (ak_random(id_bytes, sizeof id_bytes) != 0 || ak_random(key_bytes, sizeof key_bytes) != 0) {
        h->log(in->self, req, GW_LOG_ERROR, "RAND_bytes failed");
        return GW_ERROR;
    }
    ak_hex(id_bytes, sizeof id_bytes, rec.id);
    memcpy(raw, in->s.prefix, in->s.prefix_len);
    base64url(key_bytes, sizeof key_bytes, raw + in->s.prefix_len);
    OPENSSL_cleanse(key_bytes, sizeof key_bytes);
    size_t rawlen = strlen(raw);
    rec.active = true;
    rec.created_ms = (int64_t)h->unix_ms();
    ak_format_rfc3339(rec.created_ms, rec.created_at, sizeof rec.created_at);

    gw_result res = GW_ERROR;
    ak_pend *p = NULL;
    cJSON *doc = NULL;
    if (ak_sha256(in->sha256, raw, rawlen, digest) != 0) goto out;
    p = ak_pend_new(in, req, AK_OP_CREATE);
    if (!p) goto out;
    memcpy(p->store_key, AK_STORE_PREFIX, 2);
    ak_hex(digest, AK_DIGEST_LEN, p->store_key + 2);
    strcpy(p->id, rec.id);
    p->record_json = record_json(&rec);

    doc = cJSON_CreateObject();
    cJSON *data = cJSON_CreateObject();
    cJSON *key = api_key_json(&rec);
    if (!doc || !data || !key || !cJSON_AddStringToObject(doc, "status", "success") ||
        !cJSON_AddStringToObject(doc, "message", CREATED_MESSAGE) || !cJSON_AddItemToObject(doc, "data", data)) {
        cJSON_Delete(data);
        cJSON_Delete(key);
        goto out;
    }
    if (!cJSON_AddItemToObject(data, "api_key", key)) {
        cJSON_Delete(key);
        goto out;
    }
    if (!cJSON_AddStringToObject(data, "raw_key", raw)) goto out;
    p->response = cJSON_PrintUnformatted(doc);
    if (!p->response || !p->record_json) goto out;
    if (h->store_set(req, p->store_key, p->record_json, strlen(p->record_json), 0, create_done, (void *)p->token) !=
        0) {
        h->log(in->self, req, GW_LOG_WARN, "creating API key %s: key store write could not be started", rec.id);
        res = answer_unavailable(in, req);
        goto out;
    }
    p = NULL; /* now the callback's */
    res = GW_WAIT;
out:
    if (doc) {
        cJSON *d = cJSON_GetObjectItemCaseSensitive(doc, "data");
        cJSON *rk = d ? cJSON_GetObjectItemCaseSensitive(d, "raw_key") : NULL;
        if (rk && cJSON_IsString(rk) && rk->valuestring) OPENSSL_cleanse(rk->valuestring, strlen(rk->valuestring));
        cJSON_Delete(doc);
    }
    OPENSSL_cleanse(raw, sizeof raw);
    if (p) ak_pend_release(p);
    return res;
}

/* ---------------------------------------------------------------------------------------------------
 * list, revoke, delete: all start with a listing */

typedef struct {
    ak_record rec;
    size_t idx;
    bool invalid; /* the record does not parse: only rec.id (salvaged) is set */
} listed;

/* A stored record that does not parse, as listed: what can be recovered, so it can be deleted by its id. */
static cJSON *invalid_key_json(const ak_record *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "id", r->id) ||
        !cJSON_AddStringToObject(o, "name", "(invalid record)") ||
        !cJSON_AddBoolToObject(o, "active", false) || !cJSON_AddBoolToObject(o, "invalid", true)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Record i of a listing into *out: 0, or 1 when it does not parse (out->id salvaged, the rest empty). */
static int listed_record(const gw_strv *keys, const gw_strv *values, size_t i, ak_record *out)
{
    if (ak_record_parse(values[i].p, values[i].n, out) == 0) return 0;
    memset(out, 0, sizeof *out);
    ak_record_salvage_id(values[i].p, values[i].n, keys[i], out->id);
    out->created_ms = INT64_MAX; /* listed last */
    return 1;
}

static int by_age(const void *a, const void *b)
{
    const ak_record *x = &((const listed *)a)->rec, *y = &((const listed *)b)->rec;
    if (x->created_ms != y->created_ms) return x->created_ms < y->created_ms ? -1 : 1;
    return strcmp(x->id, y->id);
}

static gw_result answer_list(ak_inst *in, gw_req *req, size_t n, const gw_strv *keys, const gw_strv *values)
{
    listed *all = n ? calloc(n, sizeof *all) : NULL;
    if (n && !all) return GW_ERROR;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        all[m].invalid = listed_record(keys, values, i, &all[m].rec) != 0;
        if (all[m].invalid)
            in->h->log(in->self, req, GW_LOG_WARN,
                       "key store record %.*s is not a valid API key record: listed as invalid with id %s",
                       (int)(keys[i].n > 80 ? 80 : keys[i].n), keys[i].p, all[m].rec.id);
        all[m++].idx = i;
    }
    if (m > 1) qsort(all, m, sizeof *all, by_age);
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_CreateArray();
    bool ok = doc && arr && cJSON_AddStringToObject(doc, "status", "success") && cJSON_AddItemToObject(doc, "data", arr);
    if (!ok) cJSON_Delete(arr);
    for (size_t i = 0; ok && i < m; i++) {
        cJSON *o = all[i].invalid ? invalid_key_json(&all[i].rec) : api_key_json(&all[i].rec);
        ok = o && cJSON_AddItemToArray(arr, o);
        if (!ok) cJSON_Delete(o);
    }
    free(all);
    if (!ok) {
        cJSON_Delete(doc);
        return GW_ERROR;
    }
    return ak_respond_json(in->h, req, 200, doc) == 0 ? GW_RESPOND : GW_ERROR;
}

static void change_done(void *token, int status, const char *value, size_t len)
{
    ak_pend *p = ak_pend_find(token);
    if (!p) return;
    ak_inst *in = p->in;
    gw_req *req = p->req;
    bool revoke = p->op == AK_OP_REVOKE;
    gw_result res;
    /* whatever the answer: a write that timed out may still have been applied, and forgetting a key only
     * makes the workers ask the store again */
    ak_cache_forget(in, p->store_key);
    if (status < 0) {
        in->h->log(in->self, req, GW_LOG_WARN, "%s API key %s: key store write failed (status %d)",
                   revoke ? "revoking" : "deleting", p->id, status);
        res = answer_unavailable(in, req);
    } else if (status == 1) { /* deleted meanwhile */
        res = revoke ? answer_message(in, req, 200, "API key revoked") : answer_error(in, req, 404, "API key not found");
    } else {
        in->h->log(in->self, req, GW_LOG_INFO, "API key %s %s", p->id, revoke ? "revoked" : "deleted");
        res = answer_message(in, req, 200, revoke ? "API key revoked" : "API key deleted");
    }
    ak_finish(p, res);
}

/* The stored record with "active": false, other fields as they were. */
static char *revoked_json(const gw_strv value)
{
    cJSON *doc = ak_record_doc(value.p, value.n); /* as it was listed: "\u0000" read as U+FFFD */
    char *text = NULL;
    if (cJSON_IsObject(doc)) {
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "active");
        if (cJSON_AddBoolToObject(doc, "active", false)) text = cJSON_PrintUnformatted(doc);
    }
    cJSON_Delete(doc);
    return text;
}

static void list_done(void *token, int status, size_t n, const gw_strv *keys, const gw_strv *values)
{
    ak_pend *p = ak_pend_find(token);
    if (!p) return;
    ak_inst *in = p->in;
    const gw_host *h = in->h;
    gw_req *req = p->req;
    if (status < 0) {
        h->log(in->self, req, GW_LOG_WARN, "listing API keys: key store failed (status %d)", status);
        ak_finish(p, answer_unavailable(in, req));
        return;
    }
    if (p->op == AK_OP_LIST) {
        ak_finish(p, answer_list(in, req, n, keys, values));
        return;
    }
    size_t found = n;
    ak_record rec;
    int invalid = 0;
    for (size_t i = 0; i < n && found == n; i++) {
        invalid = listed_record(keys, values, i, &rec);
        if (strcmp(rec.id, p->id) == 0 && keys[i].n == AK_STORE_KEY_LEN) found = i;
    }
    if (found == n) {
        ak_finish(p, answer_error(in, req, 404, "API key not found"));
        return;
    }
    if (invalid && p->op == AK_OP_REVOKE) {
        ak_finish(p, answer_error(in, req, 409, "The stored record of this API key is invalid; delete it"));
        return;
    }
    memcpy(p->store_key, keys[found].p, AK_STORE_KEY_LEN);
    p->store_key[AK_STORE_KEY_LEN] = '\0';
    int started;
    if (p->op == AK_OP_REVOKE) {
        if (!rec.active) { /* already revoked: nothing to write; caches may still hold it as valid */
            ak_cache_forget(in, p->store_key);
            ak_finish(p, answer_message(in, req, 200, "API key revoked"));
            return;
        }
        p->record_json = revoked_json(values[found]);
        if (!p->record_json) {
            ak_finish(p, GW_ERROR);
            return;
        }
        started = h->store_set(req, p->store_key, p->record_json, strlen(p->record_json), 0, change_done,
                               (void *)p->token);
    } else {
        started = h->store_del(req, p->store_key, change_done, (void *)p->token);
    }
    if (started != 0) {
        h->log(in->self, req, GW_LOG_WARN, "API key %s: key store write could not be started", p->id);
        ak_finish(p, answer_unavailable(in, req));
    }
}

static gw_result start_listing(ak_inst *in, gw_req *req, int op, const char *id, size_t idlen)
{
    ak_pend *p = ak_pend_new(in, req, op);
    if (!p) return GW_ERROR;
    if (id) {
        memcpy(p->id, id, idlen);
        p->id[idlen] = '\0';
    }
    if (in->h->store_list(req, AK_STORE_PREFIX, list_done, (void *)p->token) != 0) {
        in->h->log(in->self, req, GW_LOG_WARN, "listing API keys could not be started");
        ak_pend_release(p);
        return answer_unavailable(in, req);
    }
    return GW_WAIT;
}

static bool valid_id(const char *s, size_t n)
{
    if (n != AK_ID_LEN) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static bool method_is(gw_strv m, const char *name)
{
    size_t n = strlen(name);
    return m.n == n && memcmp(m.p, name, n) == 0;
}

/* ---------------------------------------------------------------------------------------------------
 * routing */

gw_result ak_admin_endpoint(void *inst, void *route_conf, void *state, gw_req *req)
{
    ak_inst *in = inst;
    const gw_host *h = in->h;
    gw_strv path = h->path(req), m = h->method(req);
    if (path.n < in->s.admin_len || memcmp(path.p, in->s.admin_path, in->s.admin_len) != 0)
        return answer_error(in, req, 404, "Not found");
    const char *rest = path.p + in->s.admin_len;
    size_t rn = path.n - in->s.admin_len;

    if (rn == 0 || (rn == 1 && rest[0] == '/')) { /* the collection */
        if (method_is(m, "GET") || method_is(m, "HEAD")) return start_listing(in, req, AK_OP_LIST, NULL, 0);
        if (method_is(m, "POST")) return do_create(in, req);
        return method_not_allowed(in, req, "GET, HEAD, POST");
    }
    rest++; /* past '/' */
    rn--;
    const char *slash = memchr(rest, '/', rn);
    size_t idlen = slash ? (size_t)(slash - rest) : rn;
    if (!slash) { /* /{id} */
        if (!method_is(m, "DELETE")) return method_not_allowed(in, req, "DELETE");
        if (!valid_id(rest, idlen)) return answer_error(in, req, 404, "API key not found");
        return start_listing(in, req, AK_OP_DELETE, rest, idlen);
    }
    if (rn - idlen - 1 == 6 && memcmp(slash + 1, "revoke", 6) == 0) { /* /{id}/revoke */
        if (!method_is(m, "POST")) return method_not_allowed(in, req, "POST");
        if (!valid_id(rest, idlen)) return answer_error(in, req, 404, "API key not found");
        return start_listing(in, req, AK_OP_REVOKE, rest, idlen);
    }
    return answer_error(in, req, 404, "Not found");
}
