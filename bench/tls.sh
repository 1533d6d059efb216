#!/usr/bin/env bash
# bench/tls.sh - the TLS variant of the throughput benchmark (`make bench-tls`): the gateway and nginx,
# each terminating TLS 1.3 on the same certificate and proxying to the same plain-HTTP nginx upstream,
# driven in turn by wrk over https on loopback.
#
# Usage: bench/tls.sh BUILD_DIR            (BUILD_DIR holds the `gateway` binary)
#
# Rows measured per target:
#   /             keep-alive throughput, small JSON answer        (wrk -t1 -cCONNS https://...)
#   /64k          keep-alive throughput, 64 KiB static file
#   handshake /   new-connection rate: every request carries `Connection: close`, so each one is a new
#                 TCP connection and a full TLS 1.3 handshake; req/s = handshakes/s. Measured on a
#                 second instance of each server, run with OPENSSL_CONF set to a file that sets
#                 NumTickets = 0 (no session tickets, so nothing can be resumed); see "Sessions" below.
#   resume /      the same against the servers with their session tickets as shipped: wrk resumes the
#                 session it got a ticket for, so each request is a new TCP connection and a TLS 1.3
#                 PSK + ECDHE resumption (no certificate, no signature)
#
# Environment (defaults in brackets):
#   ROUNDS [3]        measured rounds per row; a round runs every target once (A B, B A, ...)
#   DURATION [5s]     length of one measured wrk run        WARMUP [2s]  warm-up run per target and row
#   CONNS [64]        wrk connections (one wrk thread)
#   QUICK=1           smoke run: 1 round of 2 s, 1 s warm-up
#   LOADGEN_CPU [0]   CPU for wrk                           SERVER_CPU [1]  CPU for every server
#   RESULTS_DIR       where the raw results go [BUILD_DIR/bench-results/tls-<date-time>]
#   KEEP=1            keep the scratch directory (certificate, configurations, server logs)
#
# Sessions. The gateway's listener context (core/io/tls.c) keeps OpenSSL's defaults: the internal
# server session cache is on, session tickets are on (stateless, 2 sent after each TLS 1.3 handshake)
# and a ticket the client offers is accepted. wrk 4.1 keeps its SSL object across reconnects
# (SSL_shutdown + SSL_clear keep the session), so it offers its last ticket on every new connection:
# against a server that issues tickets, "Connection: close" measures resumptions, not full handshakes.
# nginx is therefore configured like the gateway (`ssl_session_tickets on; ssl_session_cache off;`: in
# TLS 1.3 both issue 2 stateless tickets and store nothing server-side) for "/", "/64k" and
# "resume /"; for "handshake /" a second instance of each runs with NumTickets = 0 from OPENSSL_CONF
# (nginx also with `ssl_session_tickets off`, which alone would still send 2 tickets it cannot
# resume), and the script checks with openssl s_client that those two refuse resumption and the two
# others resume.
#
# See bench/README.md. Everything listens on 127.0.0.1 on ports probed at run time; every process
# started here is stopped by its process group on exit, Ctrl-C included.
set -euo pipefail
export LC_ALL=C

die() { echo "bench-tls: $*" >&2; exit 1; }
note() { echo "[$(date +%H:%M:%S)] $*" >&2; }

(($# == 1)) || die "usage: bench/tls.sh BUILD_DIR"
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GATEWAY=$(cd "$1" 2>/dev/null && pwd)/gateway || die "no such directory: $1"
[[ -x $GATEWAY ]] || die "$GATEWAY not found: build first (make build)"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
if [[ ${QUICK:-0} == 1 ]]; then ROUNDS=1 DURATION=2s WARMUP=1s; fi
LOADGEN_CPU=${LOADGEN_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=${RESULTS_DIR:-$(dirname "$GATEWAY")/bench-results/tls-$STAMP}

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer"
for d in "$DURATION" "$WARMUP"; do [[ $d =~ ^[1-9][0-9]*[sm]?$ ]] || die "bad duration '$d' (e.g. 5s, 1m)"; done

for tool in nginx wrk openssl taskset setsid curl awk ss timeout; do
    command -v "$tool" >/dev/null || die "missing $tool (scripts/install-deps.sh bench installs it)"
done
NCPU=$(nproc)
if ((NCPU < 2)); then
    note "WARNING: only $NCPU CPU: wrk and the servers share it; ratios are still comparable, absolute figures less so"
    LOADGEN_CPU=0 SERVER_CPU=0
fi
HZ=$(getconf CLK_TCK)

RUN=$(mktemp -d "${TMPDIR:-/tmp}/gw-bench-tls.XXXXXX")
chmod 755 "$RUN"   # nginx workers run as nobody when the master is root: they must read www/
mkdir -p "$RESULTS_DIR"

# ------------------------------------------------------------------------------------- processes
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# cpu_stat N: "busy total" jiffies of CPU N so far (busy: everything but idle and iowait)
cpu_stat() {
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# ------------------------------------------------------------------------------------- configuration
UP_PORT=$(free_port)
declare -A PORT=([nginx]=$(free_port) [gateway]=$(free_port) [nginx_nt]=$(free_port) [gateway_nt]=$(free_port))

mkdir -p "$RUN"/{upstream,nginx,nginx_nt}/{logs,tmp} "$RUN/www" "$RUN/gateway" "$RUN/gateway_nt" "$RUN/tls"

# The certificate both servers present: self-signed, EC P-256 (cheap handshakes, the same for both).
CERT=$RUN/tls/cert.pem
KEY=$RUN/tls/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$KEY" -out "$CERT" -subj "/CN=localhost" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$RUN/openssl-req.log" 2>&1 \
    || { cat "$RUN/openssl-req.log" >&2; die "openssl could not make the certificate"; }
chmod 644 "$CERT"

# OpenSSL configuration for the "handshake /" instances: the system's (Debian 12's sets no SSL
# defaults) plus no TLS 1.3 session tickets, so no connection can resume.
cat >"$RUN/tls/no-tickets.cnf" <<'EOF'
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
NumTickets = 0
EOF

# json_body FILE SIZE: a JSON document of exactly SIZE bytes
json_body() {
    local prefix="{\"bytes\":$2,\"fill\":\""
    { printf '%s' "$prefix"; head -c $(($2 - ${#prefix} - 3)) /dev/zero | tr '\0' 'z'; printf '"}\n'; } >"$1"
    [[ $(wc -c <"$1") -eq $2 ]] || die "could not make a $2-byte body"
}
json_body "$RUN/www/64k" 65536
chmod 644 "$RUN"/www/*

# settings all nginx instances share
# the upstream: plain HTTP, as in bench/run.sh
upstream_conf "$UP_PORT" >"$RUN/upstream.conf"

# nginx_tls NAME TICKETS: the nginx TLS target; proxying exactly as bench/run.sh's nginx does.
# TLS as the gateway's listener: OpenSSL's default TLS 1.3 suites and groups, server preference
# (the gateway sets SSL_OP_CIPHER_SERVER_PREFERENCE), no server-side session store.
nginx_tls() {
    nginx_common "$RUN/$1"
    cat <<EOF
http {
    access_log off;
    server_tokens off;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path $RUN/$1/tmp/body;
    proxy_temp_path $RUN/$1/tmp/proxy;
    fastcgi_temp_path $RUN/$1/tmp/fastcgi;
    uwsgi_temp_path $RUN/$1/tmp/uwsgi;
    scgi_temp_path $RUN/$1/tmp/scgi;
    upstream bench_upstream {
        server 127.0.0.1:$UP_PORT;
        keepalive 128;
        keepalive_requests 10000000;
        keepalive_timeout 120s;
    }
    server {
        listen 127.0.0.1:${PORT[$1]} ssl backlog=4096;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_session_cache off;
        ssl_session_tickets $2;
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
nginx_tls nginx on >"$RUN/nginx.conf"
nginx_tls nginx_nt off >"$RUN/nginx_nt.conf"

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

export BENCH_UPSTREAM_URL=http://127.0.0.1:$UP_PORT BENCH_TLS_CERT=$CERT BENCH_TLS_KEY=$KEY
BENCH_GATEWAY_PORT=${PORT[gateway]} "$GATEWAY" -t -c "$BENCH_DIR/gateway-tls.yaml" >/dev/null \
    2>"$RUN/gateway-check.log" || { cat "$RUN/gateway-check.log" >&2; die "bench/gateway-tls.yaml does not validate"; }
for n in nginx nginx_nt; do
    nginx -t -q -p "$RUN/$n" -c "$RUN/$n.conf" 2>"$RUN/$n-check.log" \
        || { cat "$RUN/$n-check.log" >&2; die "the generated $n.conf does not validate"; }
done

# ------------------------------------------------------------------------------------- start
note "$(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | awk 'NR == 1 { print "wrk " $2 }'), $(openssl version), $("$GATEWAY" --version 2>&1 | head -1)"
note "$NCPU CPUs; wrk on cpu $LOADGEN_CPU, all servers on cpu $SERVER_CPU; load average $(cut -d' ' -f1-3 /proc/loadavg)"

INSTANCES=(nginx gateway nginx_nt gateway_nt)
NT_CONF=$RUN/tls/no-tickets.cnf
start upstream "$UP_PORT" nginx -p "$RUN/upstream" -c "$RUN/upstream.conf"
start nginx "${PORT[nginx]}" nginx -p "$RUN/nginx" -c "$RUN/nginx.conf"
# the gateway's working directory is scratch space (its embedded store defaults to ./data)
start gateway "${PORT[gateway]}" env -C "$RUN/gateway" BENCH_GATEWAY_PORT="${PORT[gateway]}" \
    "$GATEWAY" -c "$BENCH_DIR/gateway-tls.yaml"
start nginx_nt "${PORT[nginx_nt]}" env OPENSSL_CONF="$NT_CONF" nginx -p "$RUN/nginx_nt" -c "$RUN/nginx_nt.conf"
start gateway_nt "${PORT[gateway_nt]}" env -C "$RUN/gateway_nt" OPENSSL_CONF="$NT_CONF" \
    BENCH_GATEWAY_PORT="${PORT[gateway_nt]}" "$GATEWAY" -c "$BENCH_DIR/gateway-tls.yaml"

TARGETS=(nginx gateway)
# rows: label|instance suffix (the instance is target + suffix)|"close": send `Connection: close`
ROWS=("/||" "/64k||" "handshake /|_nt|close" "resume /||close")
row_path() { local p=${1%%|*}; echo "/${p#*/}"; }   # "handshake /" -> "/"

# Sanity: every instance answers 200 with the upstream's body size on every path, closes the
# connection when asked to, and speaks TLS 1.3 with the same suite and group as the others.
curl_code() { curl -sk -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "$@" || true; }
for path in / /64k; do
    want=$(curl_code "http://127.0.0.1:$UP_PORT$path")
    [[ $want == "200 "* ]] || die "the upstream answers '$want' on $path, expected 200"
    for i in "${INSTANCES[@]}"; do
        got=$(curl_code "https://127.0.0.1:${PORT[$i]}$path")
        [[ $got == 000* ]] && got="no answer within 5 s"
        [[ $got == "$want" ]] || die "sanity check: $i on $path gives '$got' (status, bytes), the upstream '$want'"
    done
    note "sanity $path: every instance answers $want over https"
done
for i in "${INSTANCES[@]}"; do
    # two transfers in one curl: with `Connection: close` honoured, each needs a connection of its own
    got=$(curl -sk --max-time 5 -H 'Connection: close' -o /dev/null -o /dev/null -w '%{num_connects} ' \
        "https://127.0.0.1:${PORT[$i]}/" "https://127.0.0.1:${PORT[$i]}/" || true)
    [[ $got == "1 1 " ]] || die "sanity check: $i does not close the connection after 'Connection: close' (new connections per request: '$got', want '1 1 ')"
done

# tls_params PORT: "protocol cipher group signature" as a default OpenSSL client (wrk's settings) gets them
tls_params() {
    timeout 5 openssl s_client -connect "127.0.0.1:$1" -servername localhost </dev/null 2>/dev/null |
        awk '/^New, / { p = $2; c = $5; sub(/,$/, "", p) } /^Server Temp Key:/ { g = $4; sub(/,$/, "", g) }
             /^Peer signature type:/ { s = $4 } END { printf "%s %s %s %s", p, c, g, s }'
}
# resumes PORT: "Reused", "New" or "New (no ticket)": whether a second connection resumes with the
# first one's session ticket (s_client saves the session when a ticket comes)
resumes() {
    local sess=$RUN/tls/sess.$1
    printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' |
        timeout 5 openssl s_client -connect "127.0.0.1:$1" -ign_eof -sess_out "$sess" >/dev/null 2>&1 || true
    [[ -s $sess ]] || { echo "New (no ticket)"; return 0; }
    timeout 5 openssl s_client -connect "127.0.0.1:$1" -sess_in "$sess" </dev/null 2>/dev/null |
        awk '/^(New|Reused), / { sub(/,$/, "", $1); print $1; exit }'
}
declare -A TLSP=() REUSE=()
for i in "${INSTANCES[@]}"; do
    TLSP[$i]=$(tls_params "${PORT[$i]}")
    REUSE[$i]=$(resumes "${PORT[$i]}")
    note "$(printf '%-10s %s; second connection: %s' "$i" "${TLSP[$i]}" "${REUSE[$i]}")"
    [[ ${TLSP[$i]} == "TLSv1.3 "* ]] || die "$i does not negotiate TLS 1.3 with a default client: '${TLSP[$i]}'"
    [[ ${TLSP[$i]} == "${TLSP[${INSTANCES[0]}]}" ]] \
        || die "$i negotiates '${TLSP[$i]}', ${INSTANCES[0]} '${TLSP[${INSTANCES[0]}]}': not comparable"
done
for i in nginx_nt gateway_nt; do
    [[ ${REUSE[$i]} == New* ]] || die "$i resumes a session ('${REUSE[$i]}'): 'handshake /' would not be full handshakes"
done
for i in nginx gateway; do
    [[ ${REUSE[$i]} == Reused ]] || die "$i does not resume a session ('${REUSE[$i]}'): 'resume /' would not measure resumption"
done

# ------------------------------------------------------------------------------------- measure
RES=$RESULTS_DIR/runs.tsv
printf 'target\tpath\tround\trps\tp50_us\tp99_us\trequests\tsocket_errors\tnon2xx\trss_kib\tcpu_us_req\tlg_busy\tsrv_busy\n' >"$RES"
declare -A DEAD=()

# drive TARGET ROW DURATION ROUND (ROUND "warm": not recorded)
drive() {
    local t=$1 row=$2 dur=$3 round=$4 label rest suffix close inst path out line rps t0 t1 l0 l1 s0 s1 hdr=()
    label=${row%%|*}; rest=${row#*|}; suffix=${rest%%|*}; close=${rest#*|}
    inst=$t$suffix
    path=$(row_path "$row")
    [[ -n $close ]] && hdr=(-H "Connection: close")
    out=$RESULTS_DIR/wrk.$t.$(tr ' /' '._' <<<"$label").$round.txt
    t0=$(cpu_ticks "$inst"); read -r -a l0 < <(cpu_stat "$LOADGEN_CPU"); read -r -a s0 < <(cpu_stat "$SERVER_CPU")
    taskset -c "$LOADGEN_CPU" timeout -k 5 $(($(secs "$dur") + 30)) \
        wrk -t1 -c"$CONNS" -d"$dur" --latency -s "$RUN/done.lua" "${hdr[@]}" \
        "https://127.0.0.1:${PORT[$inst]}$path" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || true
    WRK_PID=
    t1=$(cpu_ticks "$inst"); read -r -a l1 < <(cpu_stat "$LOADGEN_CPU"); read -r -a s1 < <(cpu_stat "$SERVER_CPU")
    if ! kill -0 "${PID[$inst]}" 2>/dev/null; then
        DEAD[$t]=1
        note "ERROR: $inst died during $label ($round); its log: $RUN/$inst.log (KEEP=1 keeps it)"
        return 0
    fi
    [[ $round == warm ]] && return 0
    line=$(sed -n 's/^bench-result //p' "$out")
    [[ -n $line ]] || { note "ERROR: no result from wrk for $t $label round $round (see $out)"; return 0; }
    # rps=.. p50_us=.. -> tab-separated values in the header's order, then RSS, CPU per request and
    # how busy the load generator's and the servers' CPUs were (%, all processes on them)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$label" "$round" \
        "$(sed 's/[a-z0-9_]*=//g; s/ /\t/g' <<<"$line")" "$(rss_kib "$inst")" \
        "$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v line="$line" -v lb=$((l1[0] - l0[0])) -v lt=$((l1[1] - l0[1])) \
            -v sb=$((s1[0] - s0[0])) -v st=$((s1[1] - s0[1])) 'BEGIN {
                match(line, /requests=[0-9]+/); n = substr(line, RSTART + 9, RLENGTH - 9) + 0
                printf "%.1f\t%.0f\t%.0f", n ? d * 1e6 / hz / n : 0, lt ? 100 * lb / lt : 0, st ? 100 * sb / st : 0 }')" >>"$RES"
    rps=${line#rps=}
    note "$(printf '%-8s %-12s round %s  %9.0f req/s' "$t" "$label" "$round" "${rps%% *}")"
}

n=${#TARGETS[@]}
for row in "${ROWS[@]}"; do
    for t in "${TARGETS[@]}"; do drive "$t" "$row" "$WARMUP" warm; done
    for ((r = 1; r <= ROUNDS; r++)); do
        # interleaved, and each round starts one target later, so no target always follows the same one
        for ((k = 0; k < n; k++)); do
            t=${TARGETS[(k + r - 1) % n]}
            [[ -n ${DEAD[$t]:-} ]] || drive "$t" "$row" "$DURATION" "$r"
        done
    done
done

# ------------------------------------------------------------------------------------- report
LABELS=$(for row in "${ROWS[@]}"; do printf '%s|' "${row%%|*}"; done)
{
    echo "TLS: wrk -t1 -c$CONNS over https, $ROUNDS round(s) of $DURATION per target and row, interleaved; wrk on cpu $LOADGEN_CPU, servers on cpu $SERVER_CPU"
    for i in "${INSTANCES[@]}"; do
        printf '  %-10s %s (protocol, suite, group, signature); a second connection with the ticket: %s\n' \
            "$i" "${TLSP[$i]}" "${REUSE[$i]}"
    done
    awk -F'\t' -v targets="${TARGETS[*]}" -v labels="${LABELS%|}" '
    function median(list,   v, n, i, j, x) {
        n = split(list, v, " ")
        for (i = 2; i <= n; i++) { x = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    NR > 1 {
        k = $1 SUBSEP $2
        rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6
        errs[k] += $8 + $9; if ($10 > rss[k]) rss[k] = $10
        cpu[k] = cpu[k] " " $11; lg[k] = lg[k] " " $12; srv[k] = srv[k] " " $13
        R[$1, $2, $3] = $4; C[$1, $2, $3] = $11; rounds[$3] = 1
    }
    END {
        nt = split(targets, T, " "); np = split(labels, P, "|")
        printf "%-8s %-12s %8s %7s %7s %8s %8s %6s %7s %6s %5s %5s\n", "target", "path", "req/s", "p50_ms", "p99_ms",
            "rss_MiB", "x_nginx", "errors", "cpu_us", "x_cpu", "lg_%", "srv_%"
        for (i = 1; i <= np; i++) for (j = 1; j <= nt; j++) {
            k = T[j] SUBSEP P[i]
            if (!(k in rps)) { printf "%-8s %-12s %8s\n", T[j], P[i], "no data"; continue }
            ratios = ""; cratios = ""
            for (r in rounds) {
                if ((T[j], P[i], r) in R && ("nginx", P[i], r) in R && R["nginx", P[i], r] > 0)
                    ratios = ratios " " R[T[j], P[i], r] / R["nginx", P[i], r]
                if ((T[j], P[i], r) in C && ("nginx", P[i], r) in C && C[T[j], P[i], r] > 0)
                    cratios = cratios " " C["nginx", P[i], r] / C[T[j], P[i], r]
            }
            printf "%-8s %-12s %8.0f %7.2f %7.2f %8.1f %8s %6d %7.1f %6s %5.0f %5.0f\n", T[j], P[i], median(rps[k]),
                median(p50[k]) / 1000, median(p99[k]) / 1000, rss[k] / 1024,
                ratios == "" ? "-" : sprintf("%.2f", median(ratios)), errs[k], median(cpu[k]),
                cratios == "" ? "-" : sprintf("%.2f", median(cratios)), median(lg[k]), median(srv[k])
        }
    }' "$RES"
    echo
    echo "req/s, p50, p99: medians over the rounds (latency percentiles as wrk reports them); on the"
    echo "  handshake and resume rows every request is a new connection, so req/s = handshakes/s."
    echo "rss_MiB: peak resident memory (VmHWM summed over the instance's processes) by the end of that row's runs."
    echo "x_nginx: median over the rounds of req/s(target) / req/s(nginx) in the same round."
    echo "errors: socket errors + non-2xx answers over all measured runs (should be 0)."
    echo "cpu_us: CPU time (user + system) of the target's processes per request, median; the upstream's is not in it."
    echo "x_cpu: median over the rounds of cpu_us(nginx) / cpu_us(target) in the same round (above 1: the target"
    echo "  spends less CPU per request than nginx)."
    echo "lg_%, srv_%: how busy the load generator's and the servers' CPUs were during the run (all processes),"
    echo "  median; a row whose lg_% is near 100 while srv_% is not is limited by wrk, and its x_nginx says little:"
    echo "  compare cpu_us there."
    echo "/, /64k, resume /: nginx and the gateway with session tickets as the gateway ships them (2 stateless"
    echo "  tickets per handshake, no server-side store); handshake /: nginx_nt and gateway_nt, the same with"
    echo "  NumTickets = 0 (OPENSSL_CONF), so every connection is a full handshake."
    for t in "${!DEAD[@]}"; do echo "WARNING: $t died during the run; its rows are incomplete"; done
} | tee "$RESULTS_DIR/summary.txt"
note "raw results: $RESULTS_DIR"
