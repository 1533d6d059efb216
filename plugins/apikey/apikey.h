/* apikey.h - internals shared by the files of the apikey filter: apikey.c (settings, the request phase),
 * apikey_cache.c, apikey_pend.c (waiting requests), apikey_record.c, apikey_json.c and apikey_admin.c (the
 * /admin/apikeys endpoints). Not part of any public interface. */
#ifndef GW_APIKEY_H
#define GW_APIKEY_H

#include <gw/filter.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AK_NAME "apikey"

#define AK_DIGEST_LEN 32 /* SHA-256 */
#define AK_HEX_LEN (2 * AK_DIGEST_LEN)
#define AK_ID_BYTES 16
#define AK_ID_LEN (2 * AK_ID_BYTES)
#define AK_KEY_BYTES 32
#define AK_STORE_PREFIX "k:"
#define AK_STORE_KEY_LEN (2 + AK_HEX_LEN) /* "k:" + hex digest */

#define AK_MAX_NAME 256      /* bytes of a key's name */
#define AK_MAX_HEADER 64     /* the key header's name */
#define AK_MAX_PREFIX 32     /* the raw key prefix */
#define AK_MAX_ADMIN_PATH 256
#define AK_MAX_PRESENTED 512 /* a presented key longer than this cannot be ours */
#define AK_MAX_BODY 65536    /* admin request bodies */
#define AK_MAX_RATE_LIMIT 1000000000LL

/* The instance's settings, copied from the host's struct (apikey.c, ak_conf) at create. */
typedef struct {
    bool require;
    char header[AK_MAX_HEADER + 1];
    char prefix[AK_MAX_PREFIX + 1];
    size_t prefix_len;
    uint64_t cache_ttl_ms;
    uint64_t stale_ms; /* stale_if_error: a cached verdict answers while the store fails, this long */
    char admin_path[AK_MAX_ADMIN_PATH + 1];
    size_t admin_len;
} ak_settings;

typedef struct ak_cache ak_cache;
typedef struct ak_caches ak_caches;
typedef struct ak_forgets ak_forgets;

#define AK_FORGET_RING 64 /* revokes/deletes a worker can catch up with key by key */

typedef struct {
    const gw_host *h;
    gw_filter *self;
    ak_settings s;
    atomic_uint_fast64_t generation; /* bumped by revoke/delete: every worker drops that key */
    _Atomic(ak_caches *) caches;     /* one per worker, allocated on the first worker_init */
    ak_forgets *forgets;             /* the keys of the last generations (apikey_cache.c) */
    atomic_bool store_down;          /* the last lookup failed: logged on each change only */
    atomic_uint_fast64_t invalid_logged; /* the last invalid record logged (its digest's first bytes) */
    gw_metric *stale_total;          /* requests answered from a stale entry (stale_if_error) */
    struct evp_md_st *sha256;        /* fetched once: an implicit fetch per digest costs more than the hash */
} ak_inst;

/* What the store said about a key, as a worker caches it. */
/* AK_C_INVALID: a record that does not parse */
enum { AK_C_EMPTY = 0, AK_C_VALID, AK_C_UNKNOWN, AK_C_REVOKED, AK_C_INVALID };

typedef struct {
    uint8_t state;
    uint8_t digest[AK_DIGEST_LEN];
    uint64_t until_ms;  /* host->now_ms() until which the entry answers without asking the store */
    uint64_t stale_ms;  /* ... and until which it answers when the store fails */
    int64_t expires_ms; /* the key's own expiry (unix ms), 0 = never */
    int64_t rate_limit;
    uint16_t id_len, name_len; /* strlen of id and name */
    uint8_t rate_len; /* of rate_text: rate_limit in decimal, "" when 0 (formatted once, not per request) */
    char rate_text[23];
    char id[AK_ID_LEN + 1];
    char name[AK_MAX_NAME + 1];
} ak_ident;

/* A key record as stored ("k:<hex>" -> JSON) and as listed. */
typedef struct {
    char id[AK_ID_LEN + 1];
    char name[AK_MAX_NAME + 1];
    int64_t rate_limit;  /* 0 = none (the default limit applies) */
    bool active;
    int64_t created_ms;  /* unix ms */
    int64_t expires_ms;  /* unix ms, 0 = never */
    char created_at[40]; /* as stored (RFC 3339) */
    char expires_at[40]; /* as stored, "" = never */
} ak_record;

/* Operations a request may wait for. */
enum { AK_OP_VALIDATE = 1, AK_OP_CREATE, AK_OP_LIST, AK_OP_REVOKE, AK_OP_DELETE };

/* The context of one waiting request. Its address never goes to the host: the store callbacks and the
 * cleanup get a token (see ak_pend_*), so a callback that comes after the request ended (or never comes)
 * is harmless either way. */
typedef struct {
    ak_inst *in;
    gw_req *req;
    uintptr_t token;
    int op;
    /* validation */
    uint8_t digest[AK_DIGEST_LEN];
    bool from_auth;
    bool require;
    uint64_t generation;
    /* admin */
    char store_key[AK_STORE_KEY_LEN + 1];
    char id[AK_ID_LEN + 1];
    char *record_json; /* create: the record written; revoke: the updated record */
    char *response;    /* create: the 201 body */
} ak_pend;

/* --- apikey_pend.c --- */
ak_pend *ak_pend_new(ak_inst *in, gw_req *req, int op); /* registered with on_cleanup; NULL on failure */
ak_pend *ak_pend_find(void *token);                      /* NULL once the request ended or it was released */
void ak_pend_release(ak_pend *p);                        /* frees it; its token is dead from now on */
void ak_finish(ak_pend *p, gw_result res);                /* release, then resume(res) */

/* --- apikey_cache.c --- */
int ak_cache_create(ak_inst *in); /* in create(); 0 or -1 */
void ak_cache_destroy(ak_inst *in);
int ak_cache_worker_init(ak_inst *in, unsigned worker, unsigned workers);
void ak_cache_worker_fini(ak_inst *in, unsigned worker);
/* The entry for `digest` on the request's worker: fresh (within cache_ttl), or usable while the store
 * fails (within stale_if_error of the store's last word on it); NULL when there is none. */
const ak_ident *ak_cache_fresh(ak_inst *in, gw_req *req, const uint8_t *digest);
const ak_ident *ak_cache_stale(ak_inst *in, gw_req *req, const uint8_t *digest);
/* Caches id (timestamps set here) unless a revoke or delete happened since `generation` was read. */
void ak_cache_put(ak_inst *in, gw_req *req, const ak_ident *id, uint64_t generation);
/* After a revoke or delete of the record "k:<hex>": every worker drops that key before its next lookup. */
void ak_cache_forget(ak_inst *in, const char *store_key);

/* --- apikey_record.c --- */
/* A stored record into out: 0, or -1 when it is not one (the caller logs it). "\u0000" and unpaired
 * surrogate escapes in it are read as U+FFFD (cJSON would end the string at the NUL, or refuse the
 * record). */
int ak_record_parse(const char *json, size_t len, ak_record *out);
void *ak_record_doc(const char *json, size_t len); /* the record's cJSON tree, read as above; NULL if none */
/* For a record that does not parse: the id it names ("id":"<32 hex>") if it can be found, else the first
 * 32 hex digits of its store key ("k:<hex>"), so that it can be listed and deleted by that id. */
void ak_record_salvage_id(const char *json, size_t len, gw_strv store_key, char id[AK_ID_LEN + 1]);
void ak_hex(const uint8_t *in, size_t n, char *out);
int ak_random(uint8_t *out, size_t n);
/* SHA-256 with a digest fetched beforehand (ak_inst.sha256); NULL fetches it on the way (slower). */
int ak_sha256(const struct evp_md_st *md, const char *in, size_t n, uint8_t out[AK_DIGEST_LEN]);
int ak_parse_rfc3339(const char *s, int64_t *unix_ms);
void ak_format_rfc3339(int64_t unix_ms, char *out, size_t outlen);

/* --- apikey_json.c --- */
bool ak_utf8_valid(const char *s, size_t n);                 /* strict RFC 3629 */
size_t ak_utf8_repair(const char *s, char *out, size_t cap); /* invalid sequences -> U+FFFD; cap >= 3n+1 */
bool ak_has_control(const char *s);                          /* C0, DEL or C1 (U+0080..U+009F) */
/* A stored name as it may be forwarded in a header: valid UTF-8 without C0, DEL or C1, every bad byte or
 * control character replaced with '?' (so it is never longer than s); cap >= strlen(s) + 1. */
size_t ak_name_forwardable(const char *s, char *out, size_t cap);
/* An admin body: valid UTF-8, JSON (cJSON) with nothing after it, no raw control character or \u0000 in a
 * string, no object with a key twice. 0 with *doc (a cJSON tree, the caller's); 1 with *why, the 400
 * message (it names the field, or "the request body"; may point into msg); -1 out of memory. */
int ak_json_parse_strict(gw_strv body, void **doc, const char **why, char *msg, size_t msglen);

/* --- apikey_admin.c --- */
gw_result ak_admin_endpoint(void *inst, void *route_conf, void *state, gw_req *req);
int ak_respond_json(const gw_host *h, gw_req *req, int status, void *cjson_doc); /* takes the cJSON tree */

#endif
