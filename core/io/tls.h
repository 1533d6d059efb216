/* tls.h - OpenSSL contexts for TLS listeners and https services (tls.c), built at configuration time. */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stdbool.h>

#include <openssl/ssl.h>

SSL_CTX *gw_tls_server_ctx(const char *cert, const char *key, char **err);
SSL_CTX *gw_tls_client_ctx(bool verify, const char *ca_file, char **err);

#endif
