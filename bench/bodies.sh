#!/usr/bin/env bash
# bench/bodies.sh - large bodies through the full pipeline (`make bench-bodies`), performance target 8:
# "100 MB response and 100 MB upload through the full pipeline: gateway RSS < 64 MiB".
#
# The gateway runs bench/gateway-full.yaml (the default pipeline, BENCH_OBSERVE=true: logging and metrics
# on, one worker) in front of tests/integration/upstream.py, which streams its deterministic test pattern
# (/bytes/N, Content-Length) and reads request bodies streaming, answering with their length and sha256
# (/upload, throttled with ?rate_kib=R). In turn, each checked for status, size and sha256:
#   download           GET  BYTES, curl at full speed
#   upload, length     POST BYTES with Content-Length (curl -T FILE; Expect: 100-continue)
#   upload, chunked    POST BYTES chunked (curl -T - from stdin)
#   slow reader        GET  BYTES, curl --limit-rate SLOW_RATE: the gateway must hold the upstream back
#   slow upstream      POST BYTES with Content-Length, the upstream reading UP_RATE_KIB KiB/s
# After each: the time, MB/s (10^6 bytes a second), and the gateway's VmHWM (peak resident set, from
# /proc/PID/status) and VmRSS. Exit status 1 if a transfer fails or VmHWM reaches LIMIT_MIB.
# With NGINX=1, the same transfers through nginx (one worker, streaming both ways: proxy_max_temp_file_size
# 0, proxy_request_buffering off) for comparison; nginx's figures never decide the exit status.
#
# Usage: bench/bodies.sh BUILD_DIR        (BUILD_DIR holds `gateway` and `plugins/`)
#
# Environment (defaults in brackets):
#   BYTES [104857600]   body size (100 MiB)         LIMIT_MIB [64]       VmHWM limit of the gateway
#   SLOW_RATE [20M]     curl --limit-rate of the slow reader
#   UP_RATE_KIB [20480] how fast the upstream reads in the slow-upstream upload (KiB/s)
#   NGINX [1 if nginx is installed]  also measure nginx
#   LOADGEN_CPU [0]     CPU for curl                SERVER_CPU [1]       CPU for every server
#   KEEP=1              keep the scratch directory (server logs, the gateway's access log)
#
# Everything listens on 127.0.0.1 on ports probed at run time; every process started here is stopped by
# its process group on exit, Ctrl-C included (bench/lib.sh).
set -euo pipefail
export LC_ALL=C

die() { echo "bench-bodies: $*" >&2; exit 1; }
note() { echo "[$(date +%H:%M:%S)] $*" >&2; }

(($# == 1)) || die "usage: bench/bodies.sh BUILD_DIR"
BUILD=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
GATEWAY=$BUILD/gateway
[[ -x $GATEWAY ]] || die "$GATEWAY not found: build first (make build)"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UPSTREAM_PY=$HERE/../tests/integration/upstream.py
[[ -f $UPSTREAM_PY ]] || die "$UPSTREAM_PY not found"

BYTES=${BYTES:-104857600}
LIMIT_MIB=${LIMIT_MIB:-64}
SLOW_RATE=${SLOW_RATE:-20M}
UP_RATE_KIB=${UP_RATE_KIB:-20480}
LOADGEN_CPU=${LOADGEN_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
[[ $BYTES =~ ^[1-9][0-9]*$ ]] || die "BYTES must be a positive integer"
[[ $LIMIT_MIB =~ ^[1-9][0-9]*$ ]] || die "LIMIT_MIB must be a positive integer"
[[ $UP_RATE_KIB =~ ^[1-9][0-9]*$ ]] || die "UP_RATE_KIB must be a positive integer"
[[ $SLOW_RATE =~ ^[1-9][0-9]*[kKmMgG]?$ ]] || die "SLOW_RATE must be a curl --limit-rate value like 20M"
for tool in python3 curl taskset setsid sha256sum awk ss; do
    command -v "$tool" >/dev/null || die "missing $tool (scripts/install-deps.sh bench installs it)"
done
if [[ -z ${NGINX:-} ]]; then command -v nginx >/dev/null && NGINX=1 || NGINX=0; fi
[[ $NGINX == 0 ]] || command -v nginx >/dev/null || die "NGINX=1 but nginx is not installed"
if (($(nproc) < 2)); then LOADGEN_CPU=0 SERVER_CPU=0; fi
# the slowest transfer, at the slowest rate, with a wide margin: no curl runs longer than this
MAX_TIME=$((BYTES * 4 / (UP_RATE_KIB * 1024) + 120))

RUN=$(mktemp -d "${TMPDIR:-/tmp}/gw-bench-bodies.XXXXXX")
chmod 755 "$RUN"   # nginx workers run as nobody when the master is root

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# ------------------------------------------------------------------------------------- the body
# BYTES of upstream.py's pattern (what /bytes/N sends) into RUN/body, and its sha256: every download and
# every upload is checked against it
note "writing $BYTES bytes of the test pattern to $RUN/body"
WANT_SHA=$(python3 -B - "$(dirname "$UPSTREAM_PY")" "$BYTES" "$RUN/body" <<'EOF'
import hashlib, sys
sys.path.insert(0, sys.argv[1])
import upstream
h = hashlib.sha256()
with open(sys.argv[3], "wb") as f:
    for piece in upstream.pattern_iter(int(sys.argv[2]), piece=1 << 20):
        h.update(piece)
        f.write(piece)
print(h.hexdigest())
EOF
)
[[ $WANT_SHA =~ ^[0-9a-f]{64}$ ]] || die "could not compute the pattern's sha256"

# ------------------------------------------------------------------------------------- servers
UP_PORT=$(free_port)
GW_PORT=$(free_port)
NG_PORT=$(free_port)
mkdir -p "$RUN/gw" "$RUN/nginx/logs" "$RUN/nginx/tmp"

note "$(nginx -v 2>&1 | sed 's/^nginx version: //' || true), $(curl --version | head -1 | cut -d' ' -f1-2), $("$GATEWAY" --version 2>&1 | head -1)"
note "$(nproc) CPUs; curl on cpu $LOADGEN_CPU, all servers on cpu $SERVER_CPU; load average $(cut -d' ' -f1-3 /proc/loadavg)"
start upstream "$UP_PORT" python3 -B "$UPSTREAM_PY" --port "$UP_PORT" --ready "$RUN/upstream.ready" --name bench
(cd "$RUN/gw" && BENCH_GATEWAY_PORT=$GW_PORT BENCH_UPSTREAM_URL=http://127.0.0.1:$UP_PORT BENCH_OBSERVE=true \
    "$GATEWAY" -t -c "$HERE/gateway-full.yaml" >/dev/null 2>"$RUN/check.log") \
    || { cat "$RUN/check.log" >&2; die "bench/gateway-full.yaml does not validate"; }
# the gateway's working directory is scratch space (access.log, the embedded store's data/)
start gateway "$GW_PORT" env -C "$RUN/gw" BENCH_GATEWAY_PORT="$GW_PORT" \
    BENCH_UPSTREAM_URL="http://127.0.0.1:$UP_PORT" BENCH_OBSERVE=true "$GATEWAY" -c "$HERE/gateway-full.yaml"
[[ $(readlink "/proc/${PID[gateway]}/exe" 2>/dev/null) == "$GATEWAY" ]] \
    || die "pid ${PID[gateway]} is not the gateway: cannot read its memory"

if [[ $NGINX == 1 ]]; then
    cat >"$RUN/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $RUN/nginx/nginx.pid;
error_log $RUN/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $RUN/nginx/tmp/body;
    proxy_temp_path $RUN/nginx/tmp/proxy;
    fastcgi_temp_path $RUN/nginx/tmp/fastcgi;
    uwsgi_temp_path $RUN/nginx/tmp/uwsgi;
    scgi_temp_path $RUN/nginx/tmp/scgi;
    client_max_body_size 0;
    upstream bench { server 127.0.0.1:$UP_PORT; keepalive 16; }
    server {
        listen 127.0.0.1:$NG_PORT;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;   # the response streams through proxy_buffers, no temp file
            proxy_request_buffering off;  # so does the request body
        }
    }
}
EOF
    start nginx "$NG_PORT" nginx -p "$RUN/nginx" -c "$RUN/nginx.conf"
fi

# ------------------------------------------------------------------------------------- transfers
FAILED=0

# transfer TARGET PORT STEP: one transfer; prints its row; returns 1 if it failed
transfer() {
    local target=$1 port=$2 step=$3 base="http://127.0.0.1:$2" out=$RUN/out err=$RUN/err
    local -a curl=(taskset -c "$LOADGEN_CPU" curl -sS --max-time "$MAX_TIME"
        -w '%{stderr}bench-result %{http_code} %{size_download} %{size_upload} %{time_total}\n')
    local rc=0 line code down up secs got_len got_sha moved framing=- problem='' sha_pid=''
    local -a up_args=(-X POST -H 'Content-Type: application/octet-stream')
    # curl runs in the background and is waited for (its pid in lib.sh's WRK_PID, which cleanup stops), so
    # Ctrl-C or SIGTERM stops the run at once instead of after the transfer. A download goes through a
    # FIFO into sha256sum; fd 3 holds the FIFO open for writing until curl is done, so sha256sum neither
    # blocks at open nor sees an early end when curl fails before its first byte.
    case $step in
        download | slow-reader)
            local -a rate=()
            [[ $step == slow-reader ]] && rate=(--limit-rate "$SLOW_RATE")
            rm -f "$RUN/fifo" && mkfifo "$RUN/fifo"
            exec 3<>"$RUN/fifo"
            sha256sum <"$RUN/fifo" >"$out" 3>&- &
            sha_pid=$!
            "${curl[@]}" "${rate[@]}" -o "$RUN/fifo" "$base/bytes/$BYTES" 2>"$err" 3>&- &
            ;;
        upload-length) "${curl[@]}" "${up_args[@]}" -T "$RUN/body" "$base/upload" >"$out" 2>"$err" & ;;
        upload-chunked) "${curl[@]}" "${up_args[@]}" -T - "$base/upload" <"$RUN/body" >"$out" 2>"$err" & ;;
        slow-upstream) "${curl[@]}" "${up_args[@]}" -T "$RUN/body" "$base/upload?rate_kib=$UP_RATE_KIB" >"$out" 2>"$err" & ;;
        *) die "unknown step $step" ;;
    esac
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=
    if [[ -n $sha_pid ]]; then
        exec 3>&-
        wait "$sha_pid" || true
    fi
    line=$(sed -n 's/^bench-result //p' "$err" | tail -1)
    read -r code down up secs <<<"${line:-000 0 0 0}"
    case $step in
        download | slow-reader)
            moved=$down got_len=$down got_sha=$(cut -d' ' -f1 "$out") ;;
        *)
            # curl's size_upload counts the chunked framing too: the upstream's count is the payload
            moved=$up
            # the upstream's answer: the body's length and sha256, and how the gateway framed it
            read -r got_len got_sha framing < <(python3 -c 'import json, sys
try:
    d = json.load(open(sys.argv[1]))
    h = {k.lower(): v for k, v in d["headers"]}
    f = "chunked" if "chunked" in h.get("transfer-encoding", "") else "length" if "content-length" in h else "none"
    print(d["length"], d["sha256"], f)
except Exception:
    print("? ? ?")' "$out")
            ;;
    esac
    if ((rc != 0)); then problem="curl exit $rc: $(grep -v '^bench-result' "$err" | head -3 | tr '\n' ' ')"
    elif [[ $code != 200 ]]; then problem="status $code: $(head -c 200 "$out" | tr -c '[:print:]' ' ')"
    elif ((moved < BYTES)) || [[ $got_len != "$BYTES" ]]; then problem="sent $moved, received $got_len, want $BYTES"
    elif [[ $got_sha != "$WANT_SHA" ]]; then problem="sha256 $got_sha, want $WANT_SHA"
    fi
    if ! kill -0 "${PID[$target]}" 2>/dev/null; then problem+="${problem:+; }$target is gone"; fi
    [[ $got_len =~ ^[0-9]+$ ]] || got_len=0
    printf '%-16s %4s %11s %8.2f %8.1f  %-6s %9s %9s  %s\n' "$step" "$code" "$got_len" "$secs" \
        "$(awk -v b="$got_len" -v s="$secs" 'BEGIN { printf "%.1f", (s > 0 ? b / s / 1e6 : 0) }')" \
        "$([[ -z $problem ]] && echo ok || echo FAIL)" "$(mib "$(mem_kib "$target" VmHWM)")" "$(mib "$(mem_kib "$target" VmRSS)")" "$framing"
    [[ -z $problem ]] && return 0
    echo "  $target, $step: $problem"
    return 1
}

# run_all TARGET PORT: every transfer in turn through TARGET; returns 1 if one failed
run_all() {
    local target=$1 port=$2 step bad=0
    printf '%-16s %4s %11s %8s %8s  %-6s %9s %9s  %s\n' step code bytes seconds MB/s check VmHWM_MiB VmRSS_MiB \
        upstream_got
    printf '%-16s %4s %11s %8s %8s  %-6s %9s %9s\n' start "" "" "" "" "" \
        "$(mib "$(mem_kib "$target" VmHWM)")" "$(mib "$(mem_kib "$target" VmRSS)")"
    for step in download upload-length upload-chunked slow-reader slow-upstream; do
        kill -0 "${PID[$target]}" 2>/dev/null || { echo "  $target is gone: $step not run"; bad=1; continue; }
        transfer "$target" "$port" "$step" || bad=1
    done
    return "$bad"
}

echo
echo "gateway: bench/gateway-full.yaml (default pipeline, BENCH_OBSERVE=true, workers: 1), $BYTES-byte bodies;"
echo "slow reader at $SLOW_RATE/s, slow upstream at $UP_RATE_KIB KiB/s; limit: VmHWM < $LIMIT_MIB MiB"
run_all gateway "$GW_PORT" || FAILED=1
GW_HWM=$(mem_kib gateway VmHWM)

if [[ $NGINX == 1 ]]; then
    echo
    echo "nginx (for comparison, not checked): one worker, proxy_max_temp_file_size 0, proxy_request_buffering off;"
    echo "VmHWM and VmRSS summed over master and worker"
    run_all nginx "$NG_PORT" || echo "  (nginx failures do not change the exit status)"
fi

echo
if [[ -s $RUN/gateway.log ]]; then
    echo "gateway log ($(wc -l <"$RUN/gateway.log") lines, level warn; the last 20):"
    tail -20 "$RUN/gateway.log" | sed 's/^/  /'
else
    echo "gateway log: empty (level warn)"
fi
if [[ -s $RUN/gw/access.log ]]; then
    echo "gateway access log (method path status duration_ms bytes_in bytes_out):"
    python3 -c 'import json, sys
for line in open(sys.argv[1]):
    try:
        d = json.loads(line)
    except ValueError:
        print("  " + line.rstrip()[:200])
        continue
    if d.get("path", "").startswith(("/bytes/", "/upload")):
        print("  %s %s %s %s %s %s" % (d.get("method"), d.get("path"), d.get("status"), d.get("duration_ms"),
                                       d.get("bytes_in"), d.get("bytes_out")))' "$RUN/gw/access.log"
fi

echo
if ((GW_HWM >= LIMIT_MIB * 1024)); then
    echo "FAIL: gateway VmHWM $(mib "$GW_HWM") MiB >= $LIMIT_MIB MiB"
    FAILED=1
fi
if ((FAILED)); then
    echo "bench-bodies: FAIL (KEEP=1 keeps $RUN with the logs)"
    exit 1
fi
echo "bench-bodies: PASS: every transfer complete and intact; gateway VmHWM $(mib "$GW_HWM") MiB < $LIMIT_MIB MiB"
