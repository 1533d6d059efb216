# shellcheck shell=bash
# lib.sh - what the benchmark scripts share: the servers they start (each in a session of
# its own, pinned on SERVER_CPU, stopped by process group on exit), free ports, readiness waits, their
# memory and CPU, the upstream nginx.
# Sourced after RUN, SERVER_CPU and the functions note and die are defined.

declare -A PID=()   # target -> pid, which is also its process group and session id (setsid)
ORDER=()            # start order, stopped in reverse
WRK_PID=

cleanup() {
    local rc=$? i name p
    set +e
    trap - EXIT
    trap '' INT TERM
    [[ -n $WRK_PID ]] && kill -TERM "$WRK_PID" 2>/dev/null
    for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do
        kill -TERM -- "-${PID[${ORDER[i]}]}" 2>/dev/null || true
    done
    for name in "${ORDER[@]}"; do
        p=${PID[$name]}
        for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$p" 2>/dev/null; then
            note "$name (pid $p) still running 5 s after SIGTERM: SIGKILL to its group"
            kill -KILL -- "-$p" 2>/dev/null || true
        fi
        wait "$p" 2>/dev/null || true
    done
    [[ -n $WRK_PID ]] && { kill -KILL "$WRK_PID" 2>/dev/null; wait "$WRK_PID" 2>/dev/null; }
    if [[ ${KEEP:-0} == 1 ]]; then note "scratch directory kept: $RUN"; else rm -rf "$RUN"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

listening() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

# free_port: a port nothing listens on, below the ephemeral range (so no outgoing connection of the
# benchmark itself can hold it), not handed out before in this run
TAKEN=" "
free_port() {
    local lo hi p i
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
    hi=$((lo > 20000 ? lo - 1 : 65000))
    for ((i = 0; i < 500; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % (hi - 20000)))
        [[ $TAKEN == *" $p "* ]] && continue
        listening "$p" && continue
        TAKEN+="$p "
        echo "$p"
        return 0
    done
    die "no free TCP port found between 20000 and $hi"
}

# start NAME PORT CMD...: runs CMD on SERVER_CPU in a session of its own, waits until PORT accepts.
start() {
    local name=$1 port=$2 i; shift 2
    taskset -c "$SERVER_CPU" setsid "$@" >"$RUN/$name.log" 2>&1 </dev/null &
    PID[$name]=$!
    ORDER+=("$name")
    for ((i = 0; i < 100; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            note "$name: pid ${PID[$name]}, 127.0.0.1:$port, cpu $SERVER_CPU"
            return 0
        fi
        kill -0 "${PID[$name]}" 2>/dev/null || { cat "$RUN/$name.log" >&2; die "$name exited at start-up"; }
        sleep 0.1
    done
    cat "$RUN/$name.log" >&2
    die "$name does not accept on 127.0.0.1:$port after 10 s"
}

# secs DURATION: "5s" or "1m" in seconds
secs() { local d=$1; case $d in *m) echo $((${d%m} * 60));; *s) echo "${d%s}";; *) echo "$d";; esac; }

# pids_of NAME: every process in the server's session (nginx: master and worker)
pids_of() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v sid="${PID[$1]}" '{ pid = $1; sub(/^.*\) /, ""); if ($4 == sid) print pid }'
}

# mem_kib NAME FIELD: a /proc/PID/status field (VmHWM, VmRSS) summed over the server's processes, KiB
mem_kib() {
    local p v sum=0
    for p in $(pids_of "$1"); do
        v=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# rss_kib NAME: peak resident set (VmHWM) summed over the server's processes, KiB. Pages the processes
# share (nginx's master and worker: code, configuration, copy-on-write memory) count once per process.
rss_kib() { mem_kib "$1" VmHWM; }

# pss_kib NAME: proportional set size now, summed over the server's processes, KiB: a page shared by n
# processes counts 1/n in each, so the sum counts it once (and shared libraries only in part)
pss_kib() {
    local p v sum=0
    for p in $(pids_of "$1"); do
        v=$(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# cpu_ticks NAME: user + system CPU ticks used so far by every process in the server's session
cpu_ticks() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v sid="${PID[$1]}" '{ sub(/^.*\) /, ""); if ($4 == sid) t += $12 + $13 } END { print t + 0 }'
}

# nginx_common DIR [WORKERS]: what every nginx of the benchmarks shares (the upstream has one worker)
nginx_common() {
    cat <<EOF
worker_processes ${2:-1};
daemon off;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
worker_rlimit_nofile 8192;
events { worker_connections 4096; }
EOF
}

# upstream_conf PORT: the benchmark upstream's configuration (nginx, one worker, in RUN/upstream): a
# 39-byte JSON answer on /, and on /4k and /64k the files of that name in RUN/www when a script made them
upstream_conf() {
    nginx_common "$RUN/upstream"
    cat <<EOF
http {
    access_log off;
    server_tokens off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path $RUN/upstream/tmp/body;
    proxy_temp_path $RUN/upstream/tmp/proxy;
    fastcgi_temp_path $RUN/upstream/tmp/fastcgi;
    uwsgi_temp_path $RUN/upstream/tmp/uwsgi;
    scgi_temp_path $RUN/upstream/tmp/scgi;
    server {
        listen 127.0.0.1:$1 backlog=4096;
        default_type application/json;
        location / { return 200 '{"service":"bench-upstream","ok":true}\n'; }
        location = /4k { root $RUN/www; }
        location = /64k { root $RUN/www; }
    }
}
EOF
}

# gateway_base_conf PORT UPSTREAM_URL: a gateway's configuration without pipeline or store: one worker
# listening on 127.0.0.1:PORT, one route / to UPSTREAM_URL, a keep-alive pool of 128, warnings only
gateway_base_conf() {
    cat <<EOF
listeners:
  - address: 127.0.0.1
    port: $1
workers: 1
upstream:
  keepalive: 128
services:
  - name: bench-upstream
    targets:
      - $2
routes:
  - prefix: /
    service: bench-upstream
log:
  level: warn
EOF
}
