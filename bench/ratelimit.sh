#!/usr/bin/env bash
# bench/ratelimit.sh - what the rate limiter costs (`make bench-ratelimit`): three gateways in front of
# the same nginx upstream, driven in turn by wrk on loopback:
#   A  pipeline []                               (the baseline)
#   B  pipeline [ratelimit], embedded store
#   C  pipeline [ratelimit], Redis store         (a real redis-server started here)
# The limits are so large that nothing is ever refused: every request takes a token through the whole
# take path and is proxied.
#
# Usage: bench/ratelimit.sh BUILD_DIR      (BUILD_DIR holds `gateway`, and `plugins/ratelimit.so`)
#
# Environment (defaults in brackets):
#   ROUNDS [3]        measured rounds; a round runs every target once (A B C, B C A, C A B, ...)
#   DURATION [5s]     length of one measured wrk run        WARMUP [2s]  warm-up run per target
#   CONNS [64]        wrk connections (one wrk thread)
#   QUICK=1           smoke run: 1 round of 2 s, 1 s warm-up
#   LOADGEN_CPU [0]   CPU for wrk                           SERVER_CPU [1]  CPU for every server
#   RESULTS_DIR       where the raw results go [BUILD_DIR/bench-results/ratelimit-<date-time>]
#   KEEP=1            keep the scratch directory (configurations, server logs)
#
# See bench/README.md. Everything listens on 127.0.0.1 on ports probed at run time; every process
# started here is stopped by its process group on exit, Ctrl-C included.
set -euo pipefail
export LC_ALL=C

die() { echo "bench-ratelimit: $*" >&2; exit 1; }
note() { echo "[$(date +%H:%M:%S)] $*" >&2; }

(($# == 1)) || die "usage: bench/ratelimit.sh BUILD_DIR"
BUILD=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
GATEWAY=$BUILD/gateway
[[ -x $GATEWAY ]] || die "$GATEWAY not found: build first (make build)"
[[ -f $BUILD/plugins/ratelimit.so ]] || die "$BUILD/plugins/ratelimit.so not found: build first (make build)"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
if [[ ${QUICK:-0} == 1 ]]; then ROUNDS=1 DURATION=2s WARMUP=1s; fi
LOADGEN_CPU=${LOADGEN_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=${RESULTS_DIR:-$BUILD/bench-results/ratelimit-$STAMP}
BENCH_PATH=/
# far beyond what one run can take: the limiter never refuses
HUGE=1000000000

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer"
for d in "$DURATION" "$WARMUP"; do [[ $d =~ ^[1-9][0-9]*[sm]?$ ]] || die "bad duration '$d' (e.g. 5s, 1m)"; done

for tool in nginx redis-server wrk taskset setsid curl awk ss; do
    command -v "$tool" >/dev/null || die "missing $tool (scripts/install-deps.sh bench installs it)"
done
NCPU=$(nproc)
if ((NCPU < 2)); then
    note "WARNING: only $NCPU CPU: wrk and the servers share it; ratios are still comparable, absolute figures less so"
    LOADGEN_CPU=0 SERVER_CPU=0
fi
HZ=$(getconf CLK_TCK)

RUN=$(mktemp -d "${TMPDIR:-/tmp}/gw-bench-rl.XXXXXX")
chmod 755 "$RUN"   # nginx workers run as nobody when the master is root
mkdir -p "$RESULTS_DIR"

# ------------------------------------------------------------------------------------- processes
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# redis_cmd ARGS...: one command to the benchmark's Redis, the raw RESP answer on stdout (5 s at most)
redis_cmd() {
    local a req
    req="*$#\r\n"
    for a in "$@"; do req+="\$${#a}\r\n$a\r\n"; done
    req+="*1\r\n\$4\r\nQUIT\r\n"   # Redis closes the connection after answering
    timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "$2" >&3 && timeout 2 cat <&3 || true' \
        _ "$REDIS_PORT" "$req" 2>/dev/null | tr -d '\r' || true
}

# ------------------------------------------------------------------------------------- configuration
UP_PORT=$(free_port)
REDIS_PORT=$(free_port)
declare -A PORT=([A]=$(free_port) [B]=$(free_port) [C]=$(free_port))
declare -A DESC=([A]="pipeline []" [B]="ratelimit, embedded store" [C]="ratelimit, Redis store")
TARGETS=(A B C)

mkdir -p "$RUN"/upstream/{logs,tmp} "$RUN/redis" "$RUN"/gw-{A,B,C}

upstream_conf "$UP_PORT" >"$RUN/upstream.conf"

# gateway_conf TARGET: the gateway's configuration; A has no filter, B and C the limiter
gateway_conf() {
    gateway_base_conf "${PORT[$1]}" "http://127.0.0.1:$UP_PORT"
    case $1 in
        A) echo "pipeline: []" ;;
        B | C)
            # deny: were the store ever to fail, the run would show 503s instead of quietly
            # measuring the local fallback bucket
            cat <<EOF
pipeline:
  - name: ratelimit
    rpm: $HUGE
    burst: $HUGE
    on_store_error: deny
EOF
            ;;
    esac
    case $1 in
        B) printf 'store:\n  type: embedded\n  path: %s\n' "$RUN/gw-B/data" ;;
        C) printf 'store:\n  type: redis\n  host: 127.0.0.1\n  port: %s\n  command_timeout: 250ms\n' "$REDIS_PORT" ;;
    esac
}
for t in "${TARGETS[@]}"; do
    gateway_conf "$t" >"$RUN/gateway-$t.yaml"
    "$GATEWAY" -t -c "$RUN/gateway-$t.yaml" >/dev/null 2>"$RUN/check-$t.log" \
        || { cat "$RUN/check-$t.log" >&2; die "the configuration of gateway $t does not validate"; }
done

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

# ------------------------------------------------------------------------------------- start
note "$(nginx -v 2>&1 | sed 's/^nginx version: //'), $(redis-server --version | awk '{ print "redis " $3 }' | sed 's/v=//'), $(wrk -v 2>&1 | awk 'NR == 1 { print "wrk " $2 }'), $("$GATEWAY" --version 2>&1 | head -1)"
note "$NCPU CPUs; wrk on cpu $LOADGEN_CPU, all servers on cpu $SERVER_CPU; load average $(cut -d' ' -f1-3 /proc/loadavg)"

start upstream "$UP_PORT" nginx -p "$RUN/upstream" -c "$RUN/upstream.conf"
start redis "$REDIS_PORT" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$RUN/redis" \
    --save "" --appendonly no --protected-mode yes --daemonize no --logfile ""
# each gateway's working directory is its own scratch space; ratelimit.so is found next to the binary
for t in "${TARGETS[@]}"; do
    start "$t" "${PORT[$t]}" env -C "$RUN/gw-$t" "$GATEWAY" -c "$RUN/gateway-$t.yaml"
done

# Sanity: every target answers 200 with the upstream's body; B and C carry the limiter's header, A not.
want=$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "http://127.0.0.1:$UP_PORT$BENCH_PATH" || true)
[[ $want == "200 "* ]] || die "the upstream answers '$want' on $BENCH_PATH, expected 200"
for t in "${TARGETS[@]}"; do
    got=$(curl -s -D "$RUN/sanity-$t.head" -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' \
        "http://127.0.0.1:${PORT[$t]}$BENCH_PATH" || true)
    [[ $got == 000* ]] && got="no answer within 5 s"
    [[ $got == "$want" ]] || die "sanity check: $t gives '$got' (status, bytes), the upstream '$want'"
    remaining=$(awk -F': *' 'tolower($1) == "x-ratelimit-remaining" { gsub(/\r/, "", $2); print $2 }' "$RUN/sanity-$t.head")
    case $t in
        A) [[ -z $remaining ]] || die "sanity check: A (no filter) sends X-RateLimit-Remaining" ;;
        *) [[ $remaining =~ ^[0-9]+$ ]] || die "sanity check: $t sends no X-RateLimit-Remaining: the limiter did not run"
           note "sanity: $t answers $got, X-RateLimit-Remaining: $remaining" ;;
    esac
done
# and C's bucket really is in Redis
[[ $(redis_cmd EXISTS "ratelimit:ip:127.0.0.1") == ":1"* ]] \
    || die "sanity check: no bucket ratelimit:ip:127.0.0.1 in Redis after a request to C"
note "sanity: A answers $want without rate-limit headers; C's bucket is in Redis"

# ------------------------------------------------------------------------------------- measure
RES=$RESULTS_DIR/runs.tsv
printf 'target\tround\trps\tp50_us\tp99_us\trequests\tsocket_errors\tnon2xx\tcpu_target_us\tcpu_upstream_us\tcpu_redis_us\n' >"$RES"
declare -A DEAD=()
TOTAL_C=1   # requests C sent on to Redis (the sanity request included), to compare with Redis's count

# drive TARGET DURATION ROUND (ROUND "warm": not recorded)
drive() {
    local t=$1 dur=$2 round=$3 out line t0 u0 r0 t1 u1 r1 n
    out=$RESULTS_DIR/wrk.$t.$round.txt
    t0=$(cpu_ticks "$t") u0=$(cpu_ticks upstream) r0=$(cpu_ticks redis)
    taskset -c "$LOADGEN_CPU" timeout -k 5 $(($(secs "$dur") + 30)) \
        wrk -t1 -c"$CONNS" -d"$dur" --latency -s "$RUN/done.lua" "http://127.0.0.1:${PORT[$t]}$BENCH_PATH" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || true
    WRK_PID=
    t1=$(cpu_ticks "$t") u1=$(cpu_ticks upstream) r1=$(cpu_ticks redis)
    if ! kill -0 "${PID[$t]}" 2>/dev/null; then
        DEAD[$t]=1
        note "ERROR: $t died during round $round; its log: $RUN/$t.log (KEEP=1 keeps it)"
        return 0
    fi
    line=$(sed -n 's/^bench-result //p' "$out")
    [[ -n $line ]] || { note "ERROR: no result from wrk for $t round $round (see $out)"; return 0; }
    n=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$line")
    [[ $t == C ]] && TOTAL_C=$((TOTAL_C + n))
    [[ $round == warm ]] && return 0
    # rps=.. p50_us=.. -> tab-separated values in the header's order; CPU in microseconds
    printf '%s\t%s\t%s\t%d\t%d\t%d\n' "$t" "$round" "$(sed 's/[a-z0-9_]*=//g; s/ /\t/g' <<<"$line")" \
        $(((t1 - t0) * 1000000 / HZ)) $(((u1 - u0) * 1000000 / HZ)) $(((r1 - r0) * 1000000 / HZ)) >>"$RES"
    note "$(printf '%s round %s  %9.0f req/s' "$t" "$round" "$(sed 's/^rps=\([0-9.]*\).*/\1/' <<<"$line")")"
}

for t in "${TARGETS[@]}"; do drive "$t" "$WARMUP" warm; done
n=${#TARGETS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    # interleaved, and each round starts one target later, so no target always follows the same one
    for ((k = 0; k < n; k++)); do
        t=${TARGETS[(k + r - 1) % n]}
        [[ -n ${DEAD[$t]:-} ]] || drive "$t" "$DURATION" "$r"
    done
done

# Redis's own count of script calls: every request C answered took its token there
REDIS_CALLS=$(redis_cmd INFO commandstats |
    awk -F'[:=,]' '$1 == "cmdstat_evalsha" || $1 == "cmdstat_eval" { s += $3 } END { print s + 0 }')

# ------------------------------------------------------------------------------------- report
{
    echo "wrk -t1 -c$CONNS on $BENCH_PATH, $ROUNDS round(s) of $DURATION per target, interleaved; wrk on cpu $LOADGEN_CPU, servers on cpu $SERVER_CPU"
    awk -F'\t' -v targets="${TARGETS[*]}" -v descA="${DESC[A]}" -v descB="${DESC[B]}" -v descC="${DESC[C]}" '
    function median(list,   v, n, i, j, x) {
        n = split(list, v, " ")
        for (i = 2; i <= n; i++) { x = v[i] + 0; for (j = i - 1; j >= 1 && v[j] + 0 > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    function ratio(a, b,   r, list) {
        list = ""
        for (r in rounds) if ((a, r) in R && (b, r) in R && R[b, r] > 0) list = list " " R[a, r] / R[b, r]
        return list == "" ? "-" : sprintf("%.2f", median(list))
    }
    NR > 1 {
        t = $1
        rps[t] = rps[t] " " $3; p50[t] = p50[t] " " $4; p99[t] = p99[t] " " $5
        errs[t] += $7 + $8; R[t, $2] = $3; rounds[$2] = 1
        if ($6 > 0) { gw[t] = gw[t] " " $9 / $6; up[t] = up[t] " " $10 / $6; rd[t] = rd[t] " " $11 / $6 }
    }
    END {
        desc["A"] = descA; desc["B"] = descB; desc["C"] = descC
        nt = split(targets, T, " ")
        printf "%-30s %10s %8s %8s %7s   %s\n", "target", "req/s", "p50_ms", "p99_ms", "errors", "CPU us/req: gateway upstream redis"
        for (j = 1; j <= nt; j++) {
            t = T[j]
            if (!(t in rps)) { printf "%-30s %10s\n", t " (" desc[t] ")", "no data"; continue }
            printf "%-30s %10.0f %8.2f %8.2f %7d   %7.1f %8.1f %5.1f\n", t " (" desc[t] ")", median(rps[t]),
                median(p50[t]) / 1000, median(p99[t]) / 1000, errs[t], median(gw[t]), median(up[t]), median(rd[t])
        }
        printf "\nratios (median of per-round req/s ratios): B/A %s   C/A %s   C/B %s\n", ratio("B", "A"), ratio("C", "A"), ratio("C", "B")
    }' "$RES"
    echo
    echo "req/s, p50, p99: medians over the rounds (latency percentiles as wrk reports them)."
    echo "errors: socket errors + non-2xx answers over all measured runs (should be 0; a store failure shows as 503)."
    echo "CPU us/req: CPU time (user + system, from /proc) of the gateway, the upstream and Redis during the"
    echo "target's runs, divided by its requests; median over the rounds. All of them share cpu $SERVER_CPU."
    echo "Redis script calls: $REDIS_CALLS; requests sent to C (warm-up and sanity included): $TOTAL_C."
    for t in "${!DEAD[@]}"; do echo "WARNING: $t died during the run; its rows are incomplete"; done
} | tee "$RESULTS_DIR/summary.txt"
note "raw results: $RESULTS_DIR"
