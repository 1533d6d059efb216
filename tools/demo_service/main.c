/* main.c - gw-demo-service: a small HTTP/1.1 echo service used as the demo upstream by `make run`
 * (auth-service, user-service) and as a stand-in upstream by the integration tests.
 *
 *   gw-demo-service --name NAME --port PORT [--address 127.0.0.1] [--verbose]
 *
 * Every request is answered 200 with a JSON echo of what arrived:
 *   {"service": NAME, "method", "path", "query", "version", "remote_addr",
 *    "headers": {lower-case name: value, repeated fields joined with ", "},
 *    "body": body as text (first 64 KiB; invalid UTF-8 and NUL bytes become U+FFFD),
 *    "body_length": bytes received, "body_truncated": bool}
 * GET (or HEAD) /health -> 200 {"status":"ok","service":NAME}.
 *
 * HTTP/1.1 keep-alive and pipelining (answers in order); request bodies framed by Content-Length or
 * chunked, up to 1 MiB (413 above); malformed requests get a JSON error and the connection is closed.
 * `--port 0` binds a free port; the bound address is printed on stdout ("NAME listening on ADDR:PORT").
 * SIGTERM/SIGINT: stop at once and exit 0. It is a demo, not a production server: one thread, no TLS.
 */
#include "demo_service.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/listener.h>

struct demo_globals demo;

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    event_base_loopbreak(demo.base);
}

/* ------------------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: gw-demo-service --name NAME --port PORT [--address ADDR] [--verbose]\n"
        "  an HTTP/1.1 service that answers every request with a JSON echo of it;\n"
        "  GET /health answers {\"status\":\"ok\"}. ADDR defaults to 127.0.0.1; PORT 0 picks a free one.\n");
}

/* The options into demo.name / *address / *port. Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, const char **address, const char **port)
{
    uint64_t port_num = 0;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char **dst = NULL;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
            demo.verbose = true;
            continue;
        }
        if (strcmp(arg, "--name") == 0) dst = &demo.name;
        if (strcmp(arg, "--port") == 0) dst = port;
        if (strcmp(arg, "--address") == 0) dst = address;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "gw-demo-service: %s: %s\n", dst ? "missing value for" : "unknown option", arg);
            usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    if (!demo.name || !*demo.name || !*port || !demo_parse_uint(*port, &port_num) || port_num > 65535) {
        fprintf(stderr, "gw-demo-service: --name and --port (0..65535) are required\n");
        usage(stderr);
        return 2;
    }
    return -1;
}

/* The listening socket on address:port, accepting into conn.c; NULL (and said why) when it cannot be. */
static struct evconnlistener *listen_on(const char *address, const char *port)
{
    struct evutil_addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV;
    int gai = evutil_getaddrinfo(address, port, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "gw-demo-service: %s: %s\n", address, evutil_gai_strerror(gai));
        return NULL;
    }
    struct evconnlistener *lst = evconnlistener_new_bind(
        demo.base, demo_accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        511, ai->ai_addr, (int)ai->ai_addrlen);
    int err = EVUTIL_SOCKET_ERROR();
    evutil_freeaddrinfo(ai);
    if (!lst)
        fprintf(stderr, "gw-demo-service: %s cannot listen on %s:%s: %s\n", demo.name, address, port,
                evutil_socket_error_to_string(err));
    return lst;
}

/* "NAME listening on ADDR:PORT" on stdout: how a caller that asked for port 0 learns the port. */
static void print_bound(struct evconnlistener *lst)
{
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    char host[64] = "?";
    unsigned bport = 0;
    if (getsockname(evconnlistener_get_fd(lst), (struct sockaddr *)&bound, &blen) == 0) {
        if (bound.ss_family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&bound;
            evutil_inet_ntop(AF_INET, &sin->sin_addr, host, sizeof host);
            bport = ntohs(sin->sin_port);
        } else if (bound.ss_family == AF_INET6) {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&bound;
            host[0] = '[';
            evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, host + 1, sizeof host - 2);
            strcat(host, "]");
            bport = ntohs(sin6->sin6_port);
        }
    }
    printf("%s listening on %s:%u\n", demo.name, host, bport);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *address = "127.0.0.1", *port = NULL;
    int rc = parse_args(argc, argv, &address, &port);
    if (rc >= 0) return rc;

    signal(SIGPIPE, SIG_IGN);
    demo.base = event_base_new();
    if (!demo.base) {
        fprintf(stderr, "gw-demo-service: cannot create an event base\n");
        return 1;
    }
    struct evconnlistener *lst = listen_on(address, port);
    if (!lst) {
        event_base_free(demo.base);
        return 1;
    }

    struct event *sigterm = evsignal_new(demo.base, SIGTERM, signal_cb, NULL);
    struct event *sigint = evsignal_new(demo.base, SIGINT, signal_cb, NULL);
    if (!sigterm || !sigint || evsignal_add(sigterm, NULL) != 0 || evsignal_add(sigint, NULL) != 0) {
        fprintf(stderr, "gw-demo-service: cannot install signal handlers\n");
        return 1;
    }
    print_bound(lst);

    event_base_dispatch(demo.base);

    while (demo.conns)
        demo_conn_free(demo.conns);
    evconnlistener_free(lst);
    event_free(sigterm);
    event_free(sigint);
    event_base_free(demo.base);
    libevent_global_shutdown();
    return 0;
}
