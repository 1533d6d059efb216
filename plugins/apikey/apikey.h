/* apikey.h - internals shared by apikey.c (settings, validation, cache, pending calls) and apikey_admin.c
 * (the /admin/apikeys endpoints). Not part of any public interface. */
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

/* Settings (config_check and create read them the same way). */
typedef struct {
    bool require;
    char header[AK_MAX_HEADER + 1];
    char prefix[AK_MAX_PREFIX + 1];
    size_t prefix_len;
    uint64_t cache_ttl_ms;
    char admin_path[AK_MAX_ADMIN_PATH + 1];
    size_t admin_len;
} ak_settings;

typedef struct ak_cache ak_cache;
typedef struct ak_caches ak_caches;

typedef struct {
    const gw_host *h;
    gw_filter *self;
    ak_settings s;
    atomic_uint_fast64_t generation; /* bumped by revoke/delete: every worker drops its cache */
    _Atomic(ak_caches *) caches;     /* one per worker, allocated on the first worker_init */
} ak_inst;

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

/* --- apikey.c --- */
ak_pend *ak_pend_new(ak_inst *in, gw_req *req, int op); /* registered with on_cleanup; NULL on failure */
ak_pend *ak_pend_find(void *token);                      /* NULL once the request ended or it was released */
void ak_pend_release(ak_pend *p);                        /* frees it; its token is dead from now on */
void ak_finish(ak_pend *p, gw_result res);                /* release, then resume(res) */
void ak_cache_flush_all(ak_inst *in);                    /* every worker's cache, from any worker */

int ak_record_parse(const char *json, size_t len, ak_record *out);
void ak_hex(const uint8_t *in, size_t n, char *out);
int ak_random(uint8_t *out, size_t n);
int ak_sha256(const char *in, size_t n, uint8_t out[AK_DIGEST_LEN]);
int ak_parse_rfc3339(const char *s, int64_t *unix_ms);
void ak_format_rfc3339(int64_t unix_ms, char *out, size_t outlen);

/* --- apikey_json.c --- */
bool ak_utf8_valid(const char *s, size_t n);                 /* strict RFC 3629 */
size_t ak_utf8_repair(const char *s, char *out, size_t cap); /* invalid sequences -> U+FFFD; cap >= 3n+1 */
bool ak_has_control(const char *s);                          /* C0, DEL or C1 (U+0080..U+009F) */
/* An admin body: valid UTF-8, JSON (cJSON) with nothing after it, no raw control character or \u0000 in a
 * string, no object with a key twice. 0 with *doc (a cJSON tree, the caller's); 1 with *why, the 400
 * message (it names the field, or "the request body"; may point into msg); -1 out of memory. */
int ak_json_parse_strict(gw_strv body, void **doc, const char **why, char *msg, size_t msglen);

/* --- apikey_admin.c --- */
gw_result ak_admin_endpoint(void *inst, void *route_conf, void *state, gw_req *req);
int ak_respond_json(const gw_host *h, gw_req *req, int status, void *cjson_doc); /* takes the cJSON tree */

#endif
