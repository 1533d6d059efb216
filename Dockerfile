# syntax=docker/dockerfile:1
#
# Container images for the gateway (Debian 12 slim).
#
#   docker build -t gateway .                          the gateway (last stage, "runtime"); or: make docker
#   docker build --target demo -t gateway-demo .       the demo upstream service (gw-demo-service)
#   docker run --rm -p 8081:8081 -e ADMIN_PASSWORD=... \
#     -e AUTH_SERVICE_URL=http://auth:8080 -e USER_SERVICE_URL=http://users:8082 gateway
#
# The image runs `gateway -c /etc/gateway/gateway.yaml` (conf/gateway.yaml of the repository); every
# ${VAR:-default} in it can be set with -e, and ADMIN_PASSWORD must be (the gateway refuses to start
# without it). To use another file, mount it over /etc/gateway/gateway.yaml (or a directory over
# /etc/gateway, as docker-compose.yml does). Relative paths in a configuration (store.path, TLS files) are
# relative to /var/lib/gateway, the working directory and the only place the gateway user can write.
#
# The gateway is PID 1 and handles its signals itself: SIGTERM drains requests in flight (up to
# timeouts.shutdown, 25 s: `docker stop -t 30`), SIGHUP reloads the configuration (`docker kill -s HUP`),
# SIGUSR1 makes the logging filter reopen its file.
#
# tests/integration/test_compose.py checks this file against the Makefile, the built binaries and a
# running gateway (no Docker needed).

# ---------------------------------------------------------------------------------------------- build
FROM debian:12-slim AS build
# The build packages of scripts/install-deps.sh (its test-only ones, cmocka, prometheus, chromium, clang,
# are left out: the tests run outside the image, in `make test`).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libevent-dev libyaml-dev libssl-dev libcjson-dev libhiredis-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# `make build` and `make install`, the targets CI and developers run, with the packages above: `-o deps`
# skips scripts/install-deps.sh, whose test and benchmark tools (cmocka, prometheus, chromium, clang, node)
# have no place in an image. The first configure sets GW_TESTS=OFF in the CMake cache, which `make build`'s
# own configure keeps: every other target is built (the gateway, every filter .so, the demo service, the
# SDK), not the tests, which need cmocka and run in `make test`.
RUN cmake -S . -B build -DGW_TESTS=OFF >/dev/null \
    && make -o deps build
# The shipped configuration with the built filters, as tests/integration/test_demo.py checks it. The
# password is a placeholder for this command only; it is in no layer's environment.
RUN ADMIN_PASSWORD=placeholder-for-the-check build/gateway -t -c conf/gateway.yaml
# Installed under /usr/local (the prefix the build was configured with, so the compiled-in filter directory
# is /usr/local/lib/gateway/filters), staged in /out for the runtime stage: bin/gateway,
# lib/gateway/filters/*.so, the SDK (include/gw, lib/libgwtesthost.a, lib/pkgconfig, lib/cmake/GatewaySDK),
# the man page and etc/gateway/gateway.yaml, which moves to /etc/gateway/gateway.yaml where the image reads
# it. The systemd unit has no use in a container.
RUN make -o deps install PREFIX=/usr/local DESTDIR=/out \
    && mkdir -p /out/etc \
    && mv /out/usr/local/etc/gateway /out/etc/gateway \
    && rmdir /out/usr/local/etc \
    && rm -rf /out/usr/local/lib/systemd

# ---------------------------------------------------------------------------------------------- demo
# The demo upstream of `make run` (auth-service, user-service); it needs libevent core and cJSON only.
FROM debian:12-slim AS demo
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libevent-core-2.1-7 libcjson1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin demo
COPY --from=build /src/build/gw-demo-service /usr/local/bin/gw-demo-service
USER demo
EXPOSE 8080
CMD ["gw-demo-service", "--name", "demo-service", "--port", "8080", "--address", "0.0.0.0"]

# ---------------------------------------------------------------------------------------------- runtime
FROM debian:12-slim AS runtime
# The shared libraries the binary and the filters link (test_compose.py compares this list with what the
# built objects need), and the system CA store that https targets are verified against by default
# (tls_verify: true without tls_ca).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libevent-core-2.1-7 libevent-extra-2.1-7 libevent-openssl-2.1-7 \
        libyaml-0-2 libcjson1 libssl3 libhiredis0.14 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --uid 10001 --no-create-home --home-dir /var/lib/gateway \
        --shell /usr/sbin/nologin gateway \
    && install -d -o gateway -g gateway -m 0750 /var/lib/gateway
# /usr/local/{bin,lib,include,share} and /etc/gateway/gateway.yaml
COPY --from=build /out/ /
# A numeric user, so that runtimes that insist on a non-root user (runAsNonRoot) can tell.
USER 10001:10001
WORKDIR /var/lib/gateway
# The image itself: its libraries are all there and the binary finds its filters under /usr/local.
RUN ADMIN_PASSWORD=placeholder-for-the-check gateway -t -c /etc/gateway/gateway.yaml
EXPOSE 8081
# SIGTERM drains requests in flight for up to timeouts.shutdown (25 s by default): give `docker stop`
# at least that long (`docker stop -t 30`; docker-compose.yml sets stop_grace_period).
STOPSIGNAL SIGTERM
# No curl in the image: bash's /dev/tcp sends GET /health to the plain listener on ${PORT:-8081}.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8081} && printf 'GET /health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && IFS= read -r -t 2 status <&3 && [[ $status == 'HTTP/1.1 200 '* ]]"]
CMD ["gateway", "-c", "/etc/gateway/gateway.yaml"]
