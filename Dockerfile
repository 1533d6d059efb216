# syntax=docker/dockerfile:1
#
# Container images for the gateway (Debian 12).
#
#   docker build -t gateway .                          the gateway (last stage, "runtime")
#   docker build --target demo -t gateway-demo .       the demo upstream service (gw-demo-service)
#   docker run --rm -p 8081:8081 \
#     -e AUTH_SERVICE_URL=http://auth:8080 -e USER_SERVICE_URL=http://users:8082 gateway
#
# The image reads /etc/gateway/gateway.yaml (conf/gateway.yaml of the repository); every ${VAR:-default}
# in it can be set with -e. To use another file, mount it over /etc/gateway/gateway.yaml or pass
# `gateway -c FILE`. Relative paths in a configuration (store.path, TLS files) are relative to
# /var/lib/gateway, the working directory, which is the only place the gateway user can write.
# docker-compose.yml runs the gateway, two demo services and Redis together.

# ---------------------------------------------------------------------------------------------- build
FROM debian:12 AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libevent-dev libyaml-dev libssl-dev libcjson-dev libhiredis-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Tests (cmocka, Python) are not built here: `make test` runs them outside the image.
RUN cmake -S . -B build -DGW_TESTS=OFF \
    && cmake --build build -j "$(nproc)" --target gateway gw-demo-service \
    && build/gateway -t -c conf/gateway.yaml

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
# Runtime libraries only. ca-certificates is the system CA store that https targets are verified
# against by default (tls_verify: true without tls_ca).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libevent-2.1-7 libevent-core-2.1-7 libevent-openssl-2.1-7 libevent-pthreads-2.1-7 \
        libyaml-0-2 libcjson1 libssl3 libhiredis0.14 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
    && install -d -o gateway -g gateway -m 0750 /var/lib/gateway
COPY --from=build /src/build/gateway /usr/local/bin/gateway
COPY conf/ /etc/gateway/
USER gateway
WORKDIR /var/lib/gateway
EXPOSE 8081
# SIGTERM drains requests in flight for up to timeouts.shutdown (25 s by default): give `docker stop`
# at least that long (`docker stop -t 30`; docker-compose.yml sets stop_grace_period).
STOPSIGNAL SIGTERM
# No curl in the image: bash's /dev/tcp sends GET /health to the plain listener on ${PORT:-8081}.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8081} && printf 'GET /health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && IFS= read -r -t 2 status <&3 && [[ $status == 'HTTP/1.1 200 '* ]]"]
CMD ["gateway", "-c", "/etc/gateway/gateway.yaml"]
