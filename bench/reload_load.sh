#!/usr/bin/env bash
# bench/reload_load.sh - one SIGHUP a second under load (`make bench-reload`): the gateway with the full
# default pipeline (bench/gateway-full.yaml, one worker) in front of an nginx upstream, driven by wrk; per
# round one run without reloads and one with a SIGHUP every second, same length, and their p50/p99,
# requests and errors side by side; the load is bench/run.sh's "full" target (an API key on every request,
# the same 39-byte upstream answer). Exits 1 on any error, non-2xx answer or failed reload.
#
# Usage: bench/reload_load.sh BUILD_DIR        Environment: ROUNDS [4], DURATION [10] (seconds),
#        CONNS [64], LOADGEN_CPU [0], SERVER_CPU [1]
# Everything listens on 127.0.0.1 on ports chosen at run time; what it starts it stops on exit.
set -euo pipefail

BUILD=${1:?usage: bench/reload_load.sh BUILD_DIR}
GATEWAY=$(cd "$BUILD" && pwd)/gateway
HERE=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${ROUNDS:-4} DURATION=${DURATION:-10} CONNS=${CONNS:-64}
LOADGEN_CPU=${LOADGEN_CPU:-0} SERVER_CPU=${SERVER_CPU:-1}
for t in nginx wrk taskset curl python3; do
    command -v "$t" >/dev/null || { echo "reload_load.sh: $t not found (scripts/install-deps.sh bench)" >&2; exit 1; }
done

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RUN=$(mktemp -d)
NGINX_PID='' GW_PID=''
cleanup() {
    [[ -n $GW_PID ]] && { kill -TERM "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null || true; }
    [[ -n $NGINX_PID ]] && { kill -QUIT "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null || true; }
    rm -rf "$RUN"
}
trap cleanup EXIT

UP=$(free_port) GW=$(free_port)
mkdir -p "$RUN/up/logs" "$RUN/gw"
cat >"$RUN/up/nginx.conf" <<EOF
pid $RUN/up/nginx.pid; error_log $RUN/up/error.log warn; worker_processes 1;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$UP; keepalive_requests 1000000;
    location / { default_type application/json; return 200 '{"service":"bench-upstream","ok":true}\n'; } } }
EOF
taskset -c "$SERVER_CPU" nginx -p "$RUN/up" -c nginx.conf -g 'daemon off;' &
NGINX_PID=$!
(cd "$RUN/gw" && exec env BENCH_GATEWAY_PORT="$GW" BENCH_UPSTREAM_URL="http://127.0.0.1:$UP" BENCH_OBSERVE=true \
    taskset -c "$SERVER_CPU" "$GATEWAY" -c "$HERE/gateway-full.yaml" 2>"$RUN/gateway.log") &
GW_PID=$!
for ((i = 0; i < 100; i++)); do curl -s -o /dev/null "http://127.0.0.1:$GW/health" && break; sleep 0.1; done
# the load of bench/run.sh's "full" target: an API key on every request (made through the admin API)
KEY=$(curl -s --max-time 5 -u admin:bench-only -H 'Content-Type: application/json' \
    -d '{"name":"bench","rate_limit":1000000000}' "http://127.0.0.1:$GW/admin/apikeys" |
    sed -n 's/.*"raw_key":"\(gw_[A-Za-z0-9_-]*\)".*/\1/p')
[[ -n $KEY ]] || { echo "reload_load.sh: could not create an API key" >&2; exit 1; }
cat >"$RUN/lat.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("p50 %.2f ms  p99 %.2f ms  requests %d  errors %d  non-2xx %d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status))
end
EOF
drive() {
    taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$RUN/lat.lua" -H "X-API-Key: $KEY" \
        "http://127.0.0.1:$GW/" | tail -1
}
taskset -c "$LOADGEN_CPU" wrk -t1 -c"$CONNS" -d3s -H "X-API-Key: $KEY" "http://127.0.0.1:$GW/" >/dev/null # warm-up
BAD=0
P99_OFF=() P99_ON=()
for ((r = 1; r <= ROUNDS; r++)); do
    line=$(drive)
    printf 'round %d, no reloads:       %s\n' "$r" "$line"
    P99_OFF+=("$(sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' <<<"$line")")
    [[ $line == *"errors 0  non-2xx 0"* ]] || BAD=1
    (for ((i = 1; i < DURATION; i++)); do sleep 1; kill -HUP "$GW_PID"; done) &
    hup=$!
    line=$(drive)
    printf 'round %d, one SIGHUP a s:   %s\n' "$r" "$line"
    P99_ON+=("$(sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' <<<"$line")")
    [[ $line == *"errors 0  non-2xx 0"* ]] || BAD=1
    wait "$hup"
done
# median p99 of each kind over the rounds, and their ratio (the target: within 10 %)
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
off=$(median "${P99_OFF[@]}") on=$(median "${P99_ON[@]}")
awk -v off="$off" -v on="$on" 'BEGIN { printf "median p99: %.2f ms without reloads, %.2f ms with one a second: %.3f\n", off, on, on / off }'
reloads=$(curl -s "http://127.0.0.1:$GW/info" | python3 -c 'import json, sys; r = json.load(sys.stdin)["reloads"]; print(r["success"], r["failure"])')
echo "reloads: ${reloads% *} succeeded, ${reloads#* } failed"
[[ ${reloads#* } == 0 && $BAD == 0 ]] || { echo "reload_load.sh: FAIL: errors, non-2xx answers or failed reloads" >&2; exit 1; }
