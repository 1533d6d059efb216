#!/usr/bin/env bash
# bench/keys.sh - API-key validation and rate limiting for many consumers, on Redis against the embedded
# store (`make bench-keys`): four gateways in front of the same nginx upstream, driven in turn by wrk on
# loopback with a different API key on every request, rotating through NKEYS keys (bench/keys.lua):
#   E   pipeline [adminauth, apikey (require), ratelimit], embedded store, apikey cache_ttl default (5s)
#   R   the same on Redis                                                   (a real redis-server, db 0)
#   E0  as E with apikey cache_ttl: 0 (every key is asked of the store)
#   R0  as R with apikey cache_ttl: 0                                       (same redis-server, db 1)
# The limits are so large that nothing is ever refused: every request makes the whole take and is
# proxied. Each gateway gets its own NKEYS keys, created through its admin API (bench/keys_make.py).
#
# Usage: bench/keys.sh BUILD_DIR     (BUILD_DIR holds `gateway` and plugins/{adminauth,apikey,ratelimit}.so)
#
# Environment (defaults in brackets):
#   ROUNDS [3]        measured rounds; a round runs every target once (E R E0 R0, R E0 R0 E, ...)
#   DURATION [5s]     length of one measured wrk run        WARMUP [2s]  warm-up run per target
#   CONNS [64]        wrk connections (one wrk thread)
#   NKEYS [10000]     API keys per gateway, all of them used in turn
#   QUICK=1           smoke run: 1 round of 2 s, 1 s warm-up
#   LOADGEN_CPU [0]   CPU for wrk and the key creation      SERVER_CPU [1]  CPU for every server
#   RESULTS_DIR       where the raw results go [BUILD_DIR/bench-results/keys-<date-time>]
#   KEEP=1            keep the scratch directory (configurations, keys, server logs)
#
# See bench/README.md. Everything listens on 127.0.0.1 on ports probed at run time; every process
# started here is stopped by its process group on exit, Ctrl-C included.
set -euo pipefail
export LC_ALL=C

die() { echo "bench-keys: $*" >&2; exit 1; }
note() { echo "[$(date +%H:%M:%S)] $*" >&2; }

(($# == 1)) || die "usage: bench/keys.sh BUILD_DIR"
BUILD=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GATEWAY=$BUILD/gateway
[[ -x $GATEWAY ]] || die "$GATEWAY not found: build first (make build)"
for f in adminauth apikey ratelimit; do
    [[ -f $BUILD/plugins/$f.so ]] || die "$BUILD/plugins/$f.so not found: build first (make build)"
done
for f in keys.lua keys_make.py; do [[ -f $HERE/$f ]] || die "$HERE/$f not found"; done

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
NKEYS=${NKEYS:-10000}
if [[ ${QUICK:-0} == 1 ]]; then ROUNDS=1 DURATION=2s WARMUP=1s; fi
LOADGEN_CPU=${LOADGEN_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=${RESULTS_DIR:-$BUILD/bench-results/keys-$STAMP}
BENCH_PATH=/
# far beyond what one run can take: the limiter never refuses
HUGE=1000000000

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer"
if ! [[ $NKEYS =~ ^[1-9][0-9]*$ ]] || ((NKEYS > 1000000)); then die "NKEYS must be an integer from 1 to 1000000"; fi
for d in "$DURATION" "$WARMUP"; do [[ $d =~ ^[1-9][0-9]*[sm]?$ ]] || die "bad duration '$d' (e.g. 5s, 1m)"; done

for tool in nginx redis-server redis-cli wrk taskset setsid curl awk ss python3; do
    command -v "$tool" >/dev/null || die "missing $tool (scripts/install-deps.sh bench installs it)"
done
NCPU=$(nproc)
if ((NCPU < 2)); then
    note "WARNING: only $NCPU CPU: wrk and the servers share it; ratios are still comparable, absolute figures less so"
    LOADGEN_CPU=0 SERVER_CPU=0
fi
HZ=$(getconf CLK_TCK)

RUN=$(mktemp -d "${TMPDIR:-/tmp}/gw-bench-keys.XXXXXX")
chmod 755 "$RUN"   # nginx workers run as nobody when the master is root
mkdir -p "$RESULTS_DIR"

# ------------------------------------------------------------------------------------- processes
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

# rcli DB ARGS...: one redis-cli command to the benchmark's Redis (10 s at most)
rcli() {
    local db=$1; shift
    timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n "$db" "$@" 2>/dev/null | tr -d '\r' || true
}
# scan_count DB PATTERN: keys matching PATTERN, counted with SCAN (redis-cli --scan)
scan_count() {
    { timeout 60 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n "$1" --scan --pattern "$2" 2>/dev/null || true; } | wc -l
}
# keys_count DB PATTERN: the same in one round trip (KEYS inside a script: a few ms for 20,000 keys, where
# --scan takes hundreds of round trips). For the buckets right after a run: they expire ~1 s after
# their last take (their TTL is the time to refill, which is nothing at these rates, plus 1 s).
keys_count() {
    local n
    n=$(rcli "$1" EVAL "return #redis.call('KEYS', ARGV[1])" 0 "$2")
    [[ $n =~ ^[0-9]+$ ]] && echo "$n" || echo 0
}
# redis_calls: "GET-calls EVALSHA+EVAL-calls" since Redis started (all databases)
redis_calls() {
    rcli 0 INFO commandstats | awk -F'[:=,]' '
        $1 == "cmdstat_get" { g = $3 } $1 == "cmdstat_evalsha" || $1 == "cmdstat_eval" { e += $3 }
        END { print g + 0, e + 0 }'
}

# ------------------------------------------------------------------------------------- configuration
UP_PORT=$(free_port)
REDIS_PORT=$(free_port)
TARGETS=(E R E0 R0)
declare -A PORT=() DB=([R]=0 [R0]=1)
for t in "${TARGETS[@]}"; do PORT[$t]=$(free_port); done
declare -A DESC=([E]="embedded, cache_ttl 5s" [R]="Redis, cache_ttl 5s" [E0]="embedded, cache_ttl 0" [R0]="Redis, cache_ttl 0")
is_redis() { [[ $1 == R* ]]; }
# the admin password, from the environment into the configurations (password: ${BENCH_ADMIN_PASSWORD})
BENCH_ADMIN_PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export BENCH_ADMIN_PASSWORD

mkdir -p "$RUN"/upstream/{logs,tmp} "$RUN/redis"
for t in "${TARGETS[@]}"; do mkdir -p "$RUN/gw-$t"; done

upstream_conf "$UP_PORT" >"$RUN/upstream.conf"

# gateway_conf TARGET: E and R leave apikey's cache_ttl at its default (5s), E0 and R0 set it to 0.
# deny: were the store ever to fail, the run would show 503s instead of quietly measuring the local
# fallback bucket. The password stays a reference: the gateway reads it from its environment.
gateway_conf() {
    gateway_base_conf "${PORT[$1]}" "http://127.0.0.1:$UP_PORT"
    cat <<EOF
pipeline:
  - name: adminauth
    password: \${BENCH_ADMIN_PASSWORD}
  - name: apikey
    require: true
EOF
    [[ $1 == *0 ]] && echo "    cache_ttl: 0"
    cat <<EOF
  - name: ratelimit
    rpm: $HUGE
    burst: $HUGE
    on_store_error: deny
EOF
    if is_redis "$1"; then
        printf 'store:\n  type: redis\n  host: 127.0.0.1\n  port: %s\n  db: %s\n  command_timeout: 250ms\n' \
            "$REDIS_PORT" "${DB[$1]}"
    else
        printf 'store:\n  type: embedded\n  path: %s\n' "$RUN/gw-$1/data"
    fi
}
for t in "${TARGETS[@]}"; do
    gateway_conf "$t" >"$RUN/gateway-$t.yaml"
    "$GATEWAY" -t -c "$RUN/gateway-$t.yaml" >/dev/null 2>"$RUN/check-$t.log" \
        || { cat "$RUN/check-$t.log" >&2; die "the configuration of gateway $t does not validate"; }
done

# ------------------------------------------------------------------------------------- start
note "$(nginx -v 2>&1 | sed 's/^nginx version: //'), $(redis-server --version | awk '{ print "redis " $3 }' | sed 's/v=//'), $(wrk -v 2>&1 | awk 'NR == 1 { print "wrk " $2 }'), $("$GATEWAY" --version 2>&1 | head -1)"
note "$NCPU CPUs; wrk on cpu $LOADGEN_CPU, all servers on cpu $SERVER_CPU; load average $(cut -d' ' -f1-3 /proc/loadavg)"

start upstream "$UP_PORT" nginx -p "$RUN/upstream" -c "$RUN/upstream.conf"
start redis "$REDIS_PORT" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$RUN/redis" \
    --save "" --appendonly no --protected-mode yes --daemonize no --logfile ""
# each gateway's working directory is its own scratch space; the filters are found next to the binary
for t in "${TARGETS[@]}"; do
    start "$t" "${PORT[$t]}" env -C "$RUN/gw-$t" "$GATEWAY" -c "$RUN/gateway-$t.yaml"
done

# what each gateway logged at start-up (warn and above) is not counted with what it logs from here on
declare -A LOG0=()
for t in "${TARGETS[@]}"; do LOG0[$t]=$(grep -c . "$RUN/$t.log" || true); done

# ------------------------------------------------------------------------------------- keys
# NKEYS keys per gateway through its admin API; the raw keys into keys-T.txt, their ids into ids-T.txt
for t in "${TARGETS[@]}"; do
    msg=$(taskset -c "$LOADGEN_CPU" timeout 900 python3 -B "$HERE/keys_make.py" 127.0.0.1 "${PORT[$t]}" "$NKEYS" \
        "$RUN/keys-$t.txt" "$RUN/ids-$t.txt" 2>&1) || { echo "$msg" >&2; die "creating the keys of $t failed"; }
    note "$t: $msg"
done

# ------------------------------------------------------------------------------------- sanity
# Every target: a request with its first key answers 200 with the upstream's body and the limiter's
# header, one without a key 401, one with a key it never issued 401. R and R0: Redis holds the NKEYS
# key records, and the first key's bucket right after its request.
want=$(curl -s -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' "http://127.0.0.1:$UP_PORT$BENCH_PATH" || true)
[[ $want == "200 "* ]] || die "the upstream answers '$want' on $BENCH_PATH, expected 200"
BOGUS=gw_$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
for t in "${TARGETS[@]}"; do
    key=$(head -n1 "$RUN/keys-$t.txt") id=$(head -n1 "$RUN/ids-$t.txt")
    url=http://127.0.0.1:${PORT[$t]}$BENCH_PATH
    got=$(curl -s -D "$RUN/sanity-$t.head" -o /dev/null --max-time 5 -w '%{http_code} %{size_download}' \
        -H "X-API-Key: $key" "$url" || true)
    if is_redis "$t"; then bucket=$(rcli "${DB[$t]}" EXISTS "ratelimit:key:$id"); fi
    [[ $got == 000* ]] && got="no answer within 5 s"
    [[ $got == "$want" ]] || die "sanity check: $t gives '$got' (status, bytes) with a key, the upstream '$want'"
    remaining=$(awk -F': *' 'tolower($1) == "x-ratelimit-remaining" { gsub(/\r/, "", $2); print $2 }' "$RUN/sanity-$t.head")
    [[ $remaining =~ ^[0-9]+$ ]] || die "sanity check: $t sends no X-RateLimit-Remaining: the limiter did not run"
    nokey=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$url" || true)
    [[ $nokey == 401 ]] || die "sanity check: $t answers $nokey without a key, expected 401"
    bogus=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' -H "X-API-Key: $BOGUS" "$url" || true)
    [[ $bogus == 401 ]] || die "sanity check: $t answers $bogus to a key it never issued, expected 401"
    line="sanity: $t answers $got with a key (X-RateLimit-Remaining: $remaining), 401 without, 401 to an unknown key"
    if is_redis "$t"; then
        [[ $bucket == 1 ]] || die "sanity check: no bucket ratelimit:key:$id in Redis db ${DB[$t]} after a request to $t"
        records=$(scan_count "${DB[$t]}" 'apikey:k:*')
        ((records == NKEYS)) || die "sanity check: Redis db ${DB[$t]} holds $records key records, expected $NKEYS"
        line+="; Redis db ${DB[$t]}: $records key records, bucket ratelimit:key:$id"
    fi
    note "$line"
done

# ------------------------------------------------------------------------------------- measure
RES=$RESULTS_DIR/runs.tsv
printf 'target\tround\trps\tp50_us\tp99_us\trequests\tsocket_errors\tnon2xx\tkeys_used\tkeys\ts401\ts503\tsother\tcpu_target_us\tcpu_upstream_us\tcpu_redis_us\tredis_get\tredis_eval\tbuckets\n' >"$RES"
declare -A DEAD=()

# drive TARGET DURATION ROUND (ROUND "warm": not recorded)
drive() {
    local t=$1 dur=$2 round=$3 out line t0 u0 r0 t1 u1 r1 g0 e0 g1 e1 buckets=-
    out=$RESULTS_DIR/wrk.$t.$round.txt
    g0=0 e0=0
    if is_redis "$t"; then read -r g0 e0 < <(redis_calls); fi
    t0=$(cpu_ticks "$t") u0=$(cpu_ticks upstream) r0=$(cpu_ticks redis)
    taskset -c "$LOADGEN_CPU" timeout -k 5 $(($(secs "$dur") + 30)) \
        wrk -t1 -c"$CONNS" -d"$dur" --latency -s "$HERE/keys.lua" "http://127.0.0.1:${PORT[$t]}$BENCH_PATH" \
        -- "$RUN/keys-$t.txt" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || true
    WRK_PID=
    t1=$(cpu_ticks "$t") u1=$(cpu_ticks upstream) r1=$(cpu_ticks redis)
    g1=0 e1=0
    if is_redis "$t"; then
        buckets=$(keys_count "${DB[$t]}" 'ratelimit:key:*')   # at once: they expire ~1 s after their last take
        read -r g1 e1 < <(redis_calls)
    fi
    if ! kill -0 "${PID[$t]}" 2>/dev/null; then
        DEAD[$t]=1
        note "ERROR: $t died during round $round; its log: $RUN/$t.log (KEEP=1 keeps it)"
        return 0
    fi
    line=$(sed -n 's/^bench-result //p' "$out")
    [[ -n $line ]] || { note "ERROR: no result from wrk for $t round $round (see $out)"; return 0; }
    [[ $round == warm ]] && return 0
    # rps=.. p50_us=.. -> tab-separated values in the header's order; CPU in microseconds
    printf '%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n' "$t" "$round" "$(sed 's/[a-z0-9_]*=//g; s/ /\t/g' <<<"$line")" \
        $(((t1 - t0) * 1000000 / HZ)) $(((u1 - u0) * 1000000 / HZ)) $(((r1 - r0) * 1000000 / HZ)) \
        $((g1 - g0)) $((e1 - e0)) "$buckets" >>"$RES"
    note "$(printf '%-2s round %s  %9.0f req/s  keys used %s' "$t" "$round" \
        "$(sed 's/^rps=\([0-9.]*\).*/\1/' <<<"$line")" "$(sed 's/.*keys_used=\([0-9]*\).*/\1/' <<<"$line")")$(
        is_redis "$t" && echo ", buckets in Redis after the run $buckets")"
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

# Redis's own time per command (INFO commandstats: inside the command, without reading, parsing and
# answering), over the whole run, warm-ups and sanity included
REDIS_PERCALL=$(rcli 0 INFO commandstats | awk -F'[:=,]' '
    $1 == "cmdstat_get" || $1 == "cmdstat_evalsha" { printf "%s%s %d calls, %.2f us a call", sep, toupper(substr($1, 9)), $3, $7; sep = "; " }')

# ------------------------------------------------------------------------------------- report
{
    echo "wrk -t1 -c$CONNS on $BENCH_PATH, a different one of $NKEYS API keys on every request (bench/keys.lua),"
    echo "$ROUNDS round(s) of $DURATION per target, interleaved; wrk on cpu $LOADGEN_CPU, servers on cpu $SERVER_CPU"
    echo "pipeline [adminauth, apikey (require: true), ratelimit (rpm = burst = $HUGE, on_store_error: deny)]"
    awk -F'\t' -v targets="${TARGETS[*]}" -v descE="${DESC[E]}" -v descR="${DESC[R]}" -v descE0="${DESC[E0]}" \
        -v descR0="${DESC[R0]}" -v nkeys="$NKEYS" '
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
        if (!(t in used) || $9 < used[t]) used[t] = $9
        s401[t] += $11; s503[t] += $12; sother[t] += $13
        if ($6 > 0) {
            gw[t] = gw[t] " " $14 / $6; up[t] = up[t] " " $15 / $6; rd[t] = rd[t] " " $16 / $6
            gets[t] = gets[t] " " $17 / $6; evals[t] = evals[t] " " $18 / $6
        }
        if ($19 != "-" && (!(t in bmin) || $19 < bmin[t])) bmin[t] = $19
    }
    END {
        desc["E"] = descE; desc["R"] = descR; desc["E0"] = descE0; desc["R0"] = descR0
        nt = split(targets, T, " ")
        printf "%-27s %8s %7s %7s %6s   %-24s %-16s %s\n", "target", "req/s", "p50_ms", "p99_ms", "errors",
            "CPU us/req: gw ups redis", "Redis/req: GET EVAL", "keys used, buckets after"
        for (j = 1; j <= nt; j++) {
            t = T[j]
            if (!(t in rps)) { printf "%-27s %8s\n", t " (" desc[t] ")", "no data"; continue }
            redis = t ~ /^R/
            printf "%-27s %8.0f %7.2f %7.2f %6d   %7.1f %5.1f %5.1f    ", t " (" desc[t] ")", median(rps[t]),
                median(p50[t]) / 1000, median(p99[t]) / 1000, errs[t], median(gw[t]), median(up[t]), median(rd[t])
            if (redis) printf "%14.2f %5.2f   ", median(gets[t]), median(evals[t]); else printf "%14s %5s   ", "-", "-"
            printf "%d", used[t]
            if (t in bmin) printf ", %d", bmin[t]
            printf "\n"
        }
        printf "\nratios (median of per-round req/s ratios):\n"
        printf "  cache_ttl 5s (default):  R/E   %s   (goal >= 0.80)\n", ratio("R", "E")
        printf "  cache_ttl 0:             R0/E0 %s\n", ratio("R0", "E0")
        printf "  cache off against on:    E0/E  %s   R0/R %s\n", ratio("E0", "E"), ratio("R0", "R")
        for (j = 1; j <= nt; j++) {
            t = T[j]
            if (errs[t] > 0)
                printf "%s: %d error(s): %d socket error(s), non-2xx %d x 401, %d x 503, %d other\n", t, errs[t],
                    errs[t] - s401[t] - s503[t] - sother[t], s401[t], s503[t], sother[t]
            if ((t in used) && used[t] < nkeys) printf "WARNING: %s used only %d of the %d keys in a run\n", t, used[t], nkeys
        }
    }' "$RES"
    echo
    echo "req/s, p50, p99: medians over the rounds (latency percentiles as wrk reports them)."
    echo "errors: socket errors + non-2xx answers over all measured runs (should be 0; a store failure shows as"
    echo "503, a key the store does not confirm as 401)."
    echo "CPU us/req: CPU time (user + system, from /proc) of the gateway, the upstream and Redis during the"
    echo "target's runs, divided by its requests; median over the rounds. All of them share cpu $SERVER_CPU."
    echo "Redis/req: GET (apikey's store reads: its cache misses) and EVALSHA/EVAL (ratelimit's bucket takes)"
    echo "calls Redis counted during the run, per request; median over the rounds. Redis's own time inside the"
    echo "commands (INFO commandstats, whole run, warm-ups included; the rest of its CPU per request is reading,"
    echo "parsing and answering them): ${REDIS_PERCALL:-none}"
    echo "keys used: distinct keys wrk put into requests in a run (fewest over the runs); buckets after: distinct"
    echo "ratelimit:key:* buckets in Redis right after the run (fewest over the runs; a bucket expires ~1 s after"
    echo "its last take, so this is every key when each comes back within a second: $NKEYS keys at >= $NKEYS req/s)."
    for t in "${TARGETS[@]}"; do
        lines=$(tail -n +$((LOG0[$t] + 1)) "$RUN/$t.log" | grep -c . || true)
        if ((${lines:-0} > 0)); then
            echo "gateway $t logged $lines line(s) at warn or above after start-up (keys, sanity, runs); the first:"
            tail -n +$((LOG0[$t] + 1)) "$RUN/$t.log" | head -n 5 | sed 's/^/    /'
        fi
    done
    echo "gateway log lines at start-up (warn and above): $(for t in "${TARGETS[@]}"; do printf '%s %s  ' "$t" "${LOG0[$t]}"; done)"
    for t in "${!DEAD[@]}"; do echo "WARNING: $t died during the run; its rows are incomplete"; done
} | tee "$RESULTS_DIR/summary.txt"
for t in "${TARGETS[@]}"; do cp "$RUN/$t.log" "$RESULTS_DIR/gateway-$t.log" 2>/dev/null || true; done
note "raw results: $RESULTS_DIR"
