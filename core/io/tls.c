/* tls.c - OpenSSL contexts: one per TLS listener (certificate chain + key) and one per https service
 * (peer verification against the system store or a configured CA file). */
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"

static char *ssl_error(const char *what, const char *file)
{
    char buf[256] = "unknown error";
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    char *msg = NULL;
    if (asprintf(&msg, "%s %s: %s", what, file ? file : "", buf) < 0) msg = NULL;
    return msg;
}

SSL_CTX *gw_tls_server_ctx(const char *cert, const char *key, char **err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        *err = ssl_error("cannot create a TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        *err = ssl_error("cannot load the certificate", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        *err = ssl_error("cannot load the private key", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        *err = ssl_error("the private key does not match the certificate", key);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *gw_tls_client_ctx(bool verify, const char *ca_file, char **err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        *err = ssl_error("cannot create a TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                         : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            *err = ssl_error("cannot load CA certificates", ca_file ? ca_file : "(system store)");
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}
