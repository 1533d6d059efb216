#!/usr/bin/env bash
# bench/run.sh - the gateway's own throughput benchmark (`make bench`): the gateway, nginx and HAProxy,
# each as a reverse proxy in front of the same nginx upstream, driven in turn by wrk on loopback.
#
# Usage: bench/run.sh BUILD_DIR            (BUILD_DIR holds the `gateway` binary)
#
# Environment (defaults in brackets):
#   ROUNDS [3]        measured rounds per path; a round runs every target once (A B C, B C A, ...)
#   DURATION [5s]     length of one measured wrk run        WARMUP [2s]  warm-up run per target and path
#   CONNS [64]        wrk connections (one wrk thread)      PATHS ["/ /4k /64k"]
#   QUICK=1           smoke run: 1 round of 2 s, 1 s warm-up
#   DIRECT=1          also measure the upstream itself (the ceiling; not a proxy)
#   FULL [1]          also measure the gateway with the full default pipeline (bench/gateway-full.yaml),
#                     with logging and metrics on ("full") and off ("full_bare"), an API key presented,
#                     and nginx with an access log ("nginx_log", what "full" is held against); 0 skips them
#   ONLY              measure only these targets, e.g. ONLY="nginx nginx_log full" (keep nginx for x_nginx)
#   WORKERS [1]       worker processes / threads of every proxy (nginx, HAProxy, the gateways); above 1,
#                     wrk and the servers all float over every CPU unless LOADGEN_CPU / SERVER_CPU are set
#   LOADGEN_CPU [0]   CPU for wrk                           SERVER_CPU [1]  CPU for every server
#   RESULTS_DIR       where the raw results go [BUILD_DIR/bench-results/<date-time>]
#   KEEP=1            keep the scratch directory (configurations, server logs)
#
# See bench/README.md for what the figures mean. Everything listens on 127.0.0.1 on ports probed at
# run time; every process started here is stopped by its process group on exit, Ctrl-C included.
set -euo pipefail
export LC_ALL=C

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "[$(date +%H:%M:%S)] $*" >&2; }

(($# == 1)) || die "usage: bench/run.sh BUILD_DIR"
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GATEWAY=$(cd "$1" 2>/dev/null && pwd)/gateway || die "no such directory: $1"
[[ -x $GATEWAY ]] || die "$GATEWAY not found: build first (make build)"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
PATHS=${PATHS:-"/ /4k /64k"}
if [[ ${QUICK:-0} == 1 ]]; then ROUNDS=1 DURATION=2s WARMUP=1s; fi
WORKERS=${WORKERS:-1}
[[ $WORKERS =~ ^[1-9]$ ]] || die "WORKERS must be 1-9"
if ((WORKERS > 1)); then ALL_CPUS=0-$(($(nproc) - 1)); else ALL_CPUS=; fi
LOADGEN_CPU=${LOADGEN_CPU:-${ALL_CPUS:-0}}
SERVER_CPU=${SERVER_CPU:-${ALL_CPUS:-1}}
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=${RESULTS_DIR:-$(dirname "$GATEWAY")/bench-results/$STAMP}

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer"
for d in "$DURATION" "$WARMUP"; do [[ $d =~ ^[1-9][0-9]*[sm]?$ ]] || die "bad duration '$d' (e.g. 5s, 1m)"; done

for tool in nginx haproxy wrk taskset setsid curl awk ss; do
    command -v "$tool" >/dev/null || die "missing $tool (scripts/install-deps.sh bench installs it)"
done
NCPU=$(nproc)
if ((NCPU < 2 && WORKERS == 1)); then
    note "WARNING: only $NCPU CPU: wrk and the servers share it; ratios are still comparable, absolute figures less so"
    LOADGEN_CPU=0 SERVER_CPU=0
fi

RUN=$(mktemp -d "${TMPDIR:-/tmp}/gw-bench.XXXXXX")
chmod 755 "$RUN"   # nginx workers run as nobody when the master is root: they must read www/
mkdir -p "$RESULTS_DIR"

# ------------------------------------------------------------------------------------- processes
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ------------------------------------------------------------------------------------- configuration
UP_PORT=$(free_port)
NGINX_PORT=$(free_port)
HAPROXY_PORT=$(free_port)
GW_PORT=$(free_port)
FULL_PORT=$(free_port)
BARE_PORT=$(free_port)
NGLOG_PORT=$(free_port)

mkdir -p "$RUN"/{upstream,nginx,nginx_log}/{logs,tmp} "$RUN/www" "$RUN/gateway" "$RUN/full" "$RUN/full_bare"
# json_body FILE SIZE: a JSON document of exactly SIZE bytes
json_body() {
    local prefix="{\"bytes\":$2,\"fill\":\""
    { printf '%s' "$prefix"; head -c $(($2 - ${#prefix} - 3)) /dev/zero | tr '\0' 'z'; printf '"}\n'; } >"$1"
    [[ $(wc -c <"$1") -eq $2 ]] || die "could not make a $2-byte body"
}
json_body "$RUN/www/4k" 4096
json_body "$RUN/www/64k" 65536
chmod 644 "$RUN"/www/*

upstream_conf "$UP_PORT" >"$RUN/upstream.conf"

# nginx_proxy DIR PORT ACCESS_LOG: the nginx reverse proxy's configuration
nginx_proxy() {
    nginx_common "$1" "$WORKERS"
    cat <<EOF
http {
    $3
    server_tokens off;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
    upstream bench_upstream {
        server 127.0.0.1:$UP_PORT;
        keepalive 128;
        keepalive_requests 10000000;
        keepalive_timeout 120s;
    }
    server {
        listen 127.0.0.1:$2 backlog=4096;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;          # a whole 64 KiB answer fits in memory
            proxy_max_temp_file_size 0;   # and never goes to disk
        }
    }
}
EOF
}
nginx_proxy "$RUN/nginx" "$NGINX_PORT" "access_log off;" >"$RUN/nginx.conf"
# nginx_log: the same with an access log to a file, one JSON line a request with the fields the gateway's
# logging.so writes (nginx's default: no buffer, so one write(2) a request)
NGINX_JSON=$(tr -d '\n' <<'JSON'
{"time":"$time_iso8601","request_id":"$request_id","method":"$request_method","path":"$uri",
"status":$status,"duration_ms":$request_time,"upstream":"$upstream_addr",
"upstream_status":"$upstream_status","client_ip":"$remote_addr","bytes_in":$request_length,
"bytes_out":$bytes_sent,"user_agent":"$http_user_agent"}
JSON
)
nginx_proxy "$RUN/nginx_log" "$NGLOG_PORT" "log_format json escape=json '$NGINX_JSON';
    access_log $RUN/nginx_log/logs/access.log json;" >"$RUN/nginx_log.conf"

cat >"$RUN/haproxy.cfg" <<EOF
global
    nbthread $WORKERS
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s

frontend bench_in
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend bench_upstream

backend bench_upstream
    server upstream 127.0.0.1:$UP_PORT
EOF

# wrk prints one line for this script to read when a run ends
cat >"$RUN/done.lua" <<'EOF'
function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1000000
  io.write(string.format("bench-result rps=%.1f p50_us=%d p99_us=%d requests=%d socket_errors=%d non2xx=%d\n",
    summary.requests / seconds, latency:percentile(50), latency:percentile(99), summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status))
end
EOF

export BENCH_GATEWAY_PORT=$GW_PORT BENCH_UPSTREAM_URL=http://127.0.0.1:$UP_PORT BENCH_WORKERS=$WORKERS
"$GATEWAY" -t -c "$BENCH_DIR/gateway.yaml" >/dev/null 2>"$RUN/gateway-check.log" \
    || { cat "$RUN/gateway-check.log" >&2; die "bench/gateway.yaml does not validate"; }
FULL=${FULL:-1}
if [[ $FULL == 1 ]]; then
    BENCH_GATEWAY_PORT=$FULL_PORT BENCH_OBSERVE=true "$GATEWAY" -t -c "$BENCH_DIR/gateway-full.yaml" >/dev/null \
        2>"$RUN/gateway-check.log" || { cat "$RUN/gateway-check.log" >&2; die "bench/gateway-full.yaml does not validate"; }
fi

# ------------------------------------------------------------------------------------- start
note "$(nginx -v 2>&1 | sed 's/^nginx version: //'), $(haproxy -v | awk 'NR == 1 { print "haproxy " $3 }'), $(wrk -v 2>&1 | awk 'NR == 1 { print "wrk " $2 }'), $("$GATEWAY" --version 2>&1 | head -1)"
note "$NCPU CPUs; $WORKERS worker(s) per proxy; wrk on cpu $LOADGEN_CPU, all servers on cpu $SERVER_CPU; load average $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A PORT=([upstream]=$UP_PORT [nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [gateway]=$GW_PORT
    [full]=$FULL_PORT [full_bare]=$BARE_PORT [nginx_log]=$NGLOG_PORT)
start upstream "$UP_PORT" nginx -p "$RUN/upstream" -c "$RUN/upstream.conf"
start nginx "$NGINX_PORT" nginx -p "$RUN/nginx" -c "$RUN/nginx.conf"
start haproxy "$HAPROXY_PORT" haproxy -db -f "$RUN/haproxy.cfg"
# the gateway's working directory is scratch space (its embedded store defaults to ./data)
start gateway "$GW_PORT" env -C "$RUN/gateway" "$GATEWAY" -c "$BENCH_DIR/gateway.yaml"
if [[ $FULL == 1 ]]; then
    start full "$FULL_PORT" env -C "$RUN/full" BENCH_GATEWAY_PORT="$FULL_PORT" BENCH_OBSERVE=true \
        "$GATEWAY" -c "$BENCH_DIR/gateway-full.yaml"
    start full_bare "$BARE_PORT" env -C "$RUN/full_bare" BENCH_GATEWAY_PORT="$BARE_PORT" BENCH_OBSERVE=false \
        "$GATEWAY" -c "$BENCH_DIR/gateway-full.yaml"
    start nginx_log "$NGLOG_PORT" nginx -p "$RUN/nginx_log" -c "$RUN/nginx_log.conf"
fi

# The full pipeline is measured with an API key presented, as its clients would: one key, made through
# each full gateway's admin API (its own embedded store), with a rate limit nothing reaches. apikey checks
# it on every request (from its per-worker cache after the first) and ratelimit keys its bucket by it.
# Every target gets the header; nginx and the empty pipeline pass it on unread.
declare -A KEY_OF=()
if [[ $FULL == 1 ]]; then
    for t in full full_bare; do
        created=$(curl -s --max-time 5 -u admin:bench-only -H 'Content-Type: application/json' \
            -d '{"name":"bench","rate_limit":1000000000}' "http://127.0.0.1:${PORT[$t]}/admin/apikeys" || true)
        KEY_OF[$t]=$(sed -n 's/.*"raw_key":"\(gw_[A-Za-z0-9_-]*\)".*/\1/p' <<<"$created")
        [[ -n ${KEY_OF[$t]} ]] || die "could not create an API key on $t: '$created'"
        # a wrong key is refused: the filter really checks what it is given
        code=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' -H "X-API-Key: gw_not-a-key" \
            "http://127.0.0.1:${PORT[$t]}/" || true)
        [[ $code == 401 ]] || die "$t answers $code to a wrong API key, expected 401"
    done
fi
# key_header TARGET: the wrk/curl header argument for TARGET
key_header() { echo "X-API-Key: ${KEY_OF[$1]:-gw_passed-through-unread}"; }

TARGETS=(nginx haproxy gateway)
[[ $FULL == 1 ]] && TARGETS+=(nginx_log full full_bare)
[[ ${DIRECT:-0} == 1 ]] && TARGETS=(upstream "${TARGETS[@]}")
if [[ -n ${ONLY:-} ]]; then
    for t in $ONLY; do [[ -n ${PORT[$t]:-} ]] || die "ONLY: unknown target '$t' (${!PORT[*]})"; done
    read -r -a TARGETS <<<"$ONLY"
fi

# Sanity: every target answers 200 with the upstream's body size on every path.
for path in $PATHS; do
    want=$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "http://127.0.0.1:$UP_PORT$path" || true)
    [[ $want == "200 "* ]] || die "the upstream answers '$want' on $path, expected 200"
    for t in "${TARGETS[@]}"; do
        got=$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' -H "$(key_header "$t")" \
            "http://127.0.0.1:${PORT[$t]}$path" || true)
        [[ $got == 000* ]] && got="no answer within 5 s"
        [[ $got == "$want" ]] || die "sanity check: $t on $path gives '$got' (status, bytes), the upstream '$want'"
    done
    note "sanity $path: every target answers $want"
done

# ------------------------------------------------------------------------------------- measure
RES=$RESULTS_DIR/runs.tsv
printf 'target\tpath\tround\trps\tp50_us\tp99_us\trequests\tsocket_errors\tnon2xx\trss_kib\tpss_kib\n' >"$RES"
declare -A DEAD=()

# drive TARGET PATH DURATION ROUND (ROUND "warm": not recorded)
drive() {
    local t=$1 path=$2 dur=$3 round=$4 out line
    out=$RESULTS_DIR/wrk.$t.${path//\//_}.$round.txt
    taskset -c "$LOADGEN_CPU" timeout -k 5 $(($(secs "$dur") + 30)) \
        wrk -t1 -c"$CONNS" -d"$dur" --latency -s "$RUN/done.lua" -H "$(key_header "$t")" \
        "http://127.0.0.1:${PORT[$t]}$path" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || true
    WRK_PID=
    if ! kill -0 "${PID[$t]}" 2>/dev/null; then
        DEAD[$t]=1
        note "ERROR: $t died during $path ($round); its log: $RUN/$t.log (KEEP=1 keeps it)"
        return 0
    fi
    [[ $round == warm ]] && return 0
    line=$(sed -n 's/^bench-result //p' "$out")
    [[ -n $line ]] || { note "ERROR: no result from wrk for $t $path round $round (see $out)"; return 0; }
    # rps=.. p50_us=.. -> tab-separated values in the header's order
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$path" "$round" \
        "$(sed 's/[a-z0-9_]*=//g; s/ /\t/g' <<<"$line")" "$(rss_kib "$t")	$(pss_kib "$t")" >>"$RES"
    note "$(printf '%-8s %-5s round %s  %9.0f req/s' "$t" "$path" "$round" "$(sed 's/^rps=\([0-9.]*\).*/\1/' <<<"$line")")"
}

n=${#TARGETS[@]}
for path in $PATHS; do
    for t in "${TARGETS[@]}"; do drive "$t" "$path" "$WARMUP" warm; done
    for ((r = 1; r <= ROUNDS; r++)); do
        # interleaved, and each round starts one target later, so no target always follows the same one
        for ((k = 0; k < n; k++)); do
            t=${TARGETS[(k + r - 1) % n]}
            [[ -n ${DEAD[$t]:-} ]] || drive "$t" "$path" "$DURATION" "$r"
        done
    done
done

# ------------------------------------------------------------------------------------- report
{
    echo "wrk -t1 -c$CONNS, $ROUNDS round(s) of $DURATION per target and path, interleaved; wrk on cpu $LOADGEN_CPU, servers on cpu $SERVER_CPU"
    awk -F'\t' -v targets="${TARGETS[*]}" -v paths="$PATHS" '
    function median(list,   v, n, i, j, x) {
        n = split(list, v, " ")
        for (i = 2; i <= n; i++) { x = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    NR > 1 {
        k = $1 SUBSEP $2
        rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6
        errs[k] += $8 + $9; if ($10 > rss[k]) rss[k] = $10; if ($11 > pss[k]) pss[k] = $11
        R[$1, $2, $3] = $4; rounds[$3] = 1
    }
    END {
        nt = split(targets, T, " "); np = split(paths, P, " ")
        printf "%-9s %-5s %10s %8s %8s %9s %9s %8s %7s\n", "target", "path", "req/s", "p50_ms", "p99_ms", "rss_MiB", "pss_MiB", "x_nginx", "errors"
        for (i = 1; i <= np; i++) for (j = 1; j <= nt; j++) {
            k = T[j] SUBSEP P[i]
            if (!(k in rps)) { printf "%-9s %-5s %10s\n", T[j], P[i], "no data"; continue }
            ratios = ""
            for (r in rounds)
                if ((T[j], P[i], r) in R && ("nginx", P[i], r) in R && R["nginx", P[i], r] > 0)
                    ratios = ratios " " R[T[j], P[i], r] / R["nginx", P[i], r]
            printf "%-9s %-5s %10.0f %8.2f %8.2f %9.1f %9.1f %8s %7d\n", T[j], P[i], median(rps[k]),
                median(p50[k]) / 1000, median(p99[k]) / 1000, rss[k] / 1024, pss[k] / 1024,
                ratios == "" ? "-" : sprintf("%.2f", median(ratios)), errs[k]
        }
    }' "$RES"
    echo
    echo "req/s, p50, p99: medians over the rounds (latency percentiles as wrk reports them)."
    echo "rss_MiB: peak resident memory (VmHWM summed over the target's processes) by the end of that path's runs;"
    echo "  pages nginx's master and worker share count twice. pss_MiB: proportional set size (shared pages"
    echo "  split between the processes that map them) right after a run, the highest over the rounds."
    echo "x_nginx: median over the rounds of req/s(target) / req/s(nginx) in the same round."
    echo "errors: socket errors + non-2xx answers over all measured runs (should be 0)."
    if [[ $FULL == 1 ]]; then
        echo
        echo "Per-round req/s ratios, median over the rounds (p99 in ms, medians, for the latency target):"
        awk -F'\t' -v paths="$PATHS" 'NR > 1 { R[$1, $2, $3] = $4; L[$1, $2, $3] = $6; rounds[$3] = 1 }
        function ratio(a, b, path,   n, v, r, x, i, j) {
            n = 0
            for (r in rounds)
                if ((a, path, r) in R && (b, path, r) in R && R[b, path, r] > 0) v[++n] = R[a, path, r] / R[b, path, r]
            for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
            return n == 0 ? "-" : sprintf("%.3f", n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
        }
        function p99(t, path,   n, v, r, x, i, j) {
            n = 0
            for (r in rounds) if ((t, path, r) in L) v[++n] = L[t, path, r] / 1000
            for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
            return n == 0 ? "-" : sprintf("%.2f", n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2)
        }
        END {
            np = split(paths, P, " ")
            printf "  %-5s %14s %14s %16s %15s\n", "path", "full/nginx_log", "full/full_bare", "gateway/nginx", "p99 full/nglog"
            for (i = 1; i <= np; i++)
                printf "  %-5s %14s %14s %16s %8s/%s\n", P[i], ratio("full", "nginx_log", P[i]),
                    ratio("full", "full_bare", P[i]), ratio("gateway", "nginx", P[i]), p99("full", P[i]), p99("nginx_log", P[i])
        }' "$RES"
        echo "full: the default pipeline (bench/gateway-full.yaml) with an API key; full_bare: the same without"
        echo "logging and metrics; nginx_log: nginx with a JSON access log to a file; gateway: empty pipeline."
    fi
    for t in "${!DEAD[@]}"; do echo "WARNING: $t died during the run; its rows are incomplete"; done
} | tee "$RESULTS_DIR/summary.txt"
note "raw results: $RESULTS_DIR"
