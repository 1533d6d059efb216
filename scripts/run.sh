#!/usr/bin/env bash
# run.sh - what `make run` does: starts the two demo upstream services (tools/demo_service/) on
# 127.0.0.1, then the gateway in the foreground. Ctrl-C (or SIGTERM, or the gateway exiting) stops all.
#
# Usage: scripts/run.sh BUILD_DIR CONFIG        e.g. scripts/run.sh build conf/gateway.yaml
#
# Environment:
#   AUTH_PORT (8080), USER_PORT (8082)   ports of the demo auth-service and user-service
#   AUTH_SERVICE_URL, USER_SERVICE_URL   when set, that demo service is not started and the gateway
#                                        uses the given upstream instead (the configuration reads them)
#   PORT (8081), HOST (127.0.0.1)        the gateway listener, as read by the default configuration;
#                                        HOST=0.0.0.0 accepts connections from other machines too
# Exit status: the gateway's (0 after a clean Ctrl-C / SIGTERM); 1 if something could not start.
set -euo pipefail

die() { echo "run.sh: $*" >&2; exit 1; }

(($# == 2)) || die "usage: scripts/run.sh BUILD_DIR CONFIG"
BUILD_DIR=$1
CONFIG=$2
GATEWAY=$BUILD_DIR/gateway
DEMO=$BUILD_DIR/gw-demo-service
[[ -x $GATEWAY ]] || die "$GATEWAY not found: build first (make build)"
[[ -f $CONFIG ]] || die "configuration $CONFIG not found"

AUTH_PORT=${AUTH_PORT:-8080}
USER_PORT=${USER_PORT:-8082}
# A local demo: the gateway listens on loopback only, like the demo services, unless HOST says otherwise
# (the configuration itself defaults to 0.0.0.0, which is what a container wants).
export HOST=${HOST:-127.0.0.1}
for p in "$AUTH_PORT" "$USER_PORT" "${PORT:-8081}"; do
    if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then die "not a TCP port: '$p'"; fi
done

# ------------------------------------------------------------------------------------ process control
declare -a NAMES=() PIDS=()   # demo services we started, stopped in reverse order
GW_PID=
GW_RC=

# stop_pid NAME PID SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL. Sets STOP_RC to its exit status.
stop_pid() {
    local name=$1 pid=$2 secs=$3 i
    STOP_RC=0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < secs * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: $name (pid $pid) did not stop within ${secs}s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || STOP_RC=$?
}

cleanup() {
    local rc=$? i
    trap - EXIT
    if [[ -n $GW_PID ]]; then
        # One SIGTERM starts the gateway's drain; a second Ctrl-C meanwhile is passed on as "exit now".
        trap 'kill -TERM "$GW_PID" 2>/dev/null || true' INT TERM
        stop_pid gateway "$GW_PID" 30   # longer than the default shutdown drain (25 s)
        GW_RC=${GW_RC:-$STOP_RC}
    fi
    trap '' INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${NAMES[i]}" "${PIDS[i]}" 5
    done
    ((${#PIDS[@]} == 0)) || echo "run.sh: stopped ${NAMES[*]}" >&2
    exit "${GW_RC:-$rc}"
}
trap cleanup EXIT
# Ctrl-C reaches the whole foreground process group (the demo services exit on it at once); the gateway
# runs in a session of its own so that it gets exactly one SIGTERM, from cleanup, and drains.
trap 'exit 130' INT
trap 'exit 143' TERM

# port_busy PORT: something listens on PORT (any local address)
port_busy() {
    if command -v ss >/dev/null; then
        [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]] && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_port PORT PID SECONDS [ADDR]: until ADDR:PORT (default 127.0.0.1) accepts; false if PID exits or
# time runs out
wait_port() {
    local i addr=${4:-127.0.0.1}
    for ((i = 0; i < $3 * 20; i++)); do
        (exec 3<>"/dev/tcp/$addr/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# ------------------------------------------------------------------------------------ ports
# The default configuration listens on ${HOST}:${PORT:-8081}. For another file we only know
# its port if it reads PORT the same way; otherwise the gateway reports a bind failure itself.
GW_PORT=
if grep -q '\${PORT' "$CONFIG"; then
    GW_PORT=${PORT:-8081}
    port_busy "$GW_PORT" && die "port $GW_PORT is already in use, so the gateway cannot listen there.
  Stop whatever listens on it or choose another port with PORT=<port>."
fi

# ------------------------------------------------------------------------------------ admin password
# The default configuration protects /admin with HTTP Basic and refuses to start without a password.
# For a local run we make one up (shown below) unless the user chose one or turned admin auth off.
GENERATED_ADMIN_PASSWORD=
if [[ ${ADMIN_AUTH_ENABLED:-true} != false && -z ${ADMIN_PASSWORD:-} ]] && grep -q 'ADMIN_PASSWORD' "$CONFIG"; then
    GENERATED_ADMIN_PASSWORD=$(openssl rand -hex 12)
    export ADMIN_PASSWORD=$GENERATED_ADMIN_PASSWORD
fi

# ------------------------------------------------------------------------------------ demo services
start_demo() {  # NAME PORT_VAR URL_VAR
    local name=$1 port_var=$2 var=$3 port=${!2} pid
    if [[ -n ${!var:-} ]]; then
        echo "run.sh: $var is set: not starting the demo $name; the gateway uses ${!var}" >&2
        return 0
    fi
    [[ -x $DEMO ]] || die "$DEMO not found: build first (make build)"
    port_busy "$port" && die "port $port is already in use, so the demo $name cannot start there.
  Stop whatever listens on it, pick another port with $port_var=<port> or point the gateway at a
  running service with $var=http://HOST:PORT."
    "$DEMO" --name "$name" --port "$port" --address 127.0.0.1 --verbose &
    pid=$!
    NAMES+=("$name")
    PIDS+=("$pid")
    wait_port "$port" "$pid" 5 || die "the demo $name did not start on 127.0.0.1:$port (see its message above)"
    export "$var=http://127.0.0.1:$port"
}

start_demo auth-service AUTH_PORT AUTH_SERVICE_URL
start_demo user-service USER_PORT USER_SERVICE_URL

# ------------------------------------------------------------------------------------ gateway
# Where to reach it from here: a wildcard address is reached over loopback.
GW_ADDR=${HOST#[}
GW_ADDR=${GW_ADDR%]}
case $GW_ADDR in 0.0.0.0 | '') GW_ADDR=127.0.0.1 ;; ::) GW_ADDR=::1 ;; esac
GW_HOST=$GW_ADDR
[[ $GW_HOST == *:* ]] && GW_HOST="[$GW_HOST]"

# setsid execs in place here (a background child is never a group leader), so $! is the gateway.
if command -v setsid >/dev/null; then
    setsid "$GATEWAY" -c "$CONFIG" &
else
    "$GATEWAY" -c "$CONFIG" &
fi
GW_PID=$!

if [[ -n $GW_PORT ]]; then
    if ! wait_port "$GW_PORT" "$GW_PID" 10 "$GW_ADDR"; then
        if ! kill -0 "$GW_PID" 2>/dev/null; then
            wait "$GW_PID" && GW_RC=0 || GW_RC=$?
            GW_PID=
            echo "run.sh: the gateway exited at start-up (status $GW_RC)" >&2
            exit "$GW_RC"
        fi
        echo "run.sh: warning: the gateway is not accepting on :$GW_PORT after 10 s" >&2
    fi
else
    sleep 0.5
fi

routes=$(sed -n 's|^[[:space:]]*-[[:space:]]*prefix:[[:space:]]*\([^[:space:]#]*\).*|\1/*|p' "$CONFIG" | sed 's|//*\*$|/*|' | tr '\n' ' ')
base="http://$GW_HOST:${GW_PORT:-PORT}"
{
    echo
    echo "gateway        $base   (pid $GW_PID, config $CONFIG)"
    case $HOST in 127.* | ::1 | '[::1]' | localhost)
        echo "               loopback only; HOST=0.0.0.0 make run accepts connections from other machines" ;;
    esac
    echo "  built-in     $base/health   $base/info"
    [[ -n $routes ]] && echo "  routes       ${routes% }"
    echo "  upstreams    auth-service ${AUTH_SERVICE_URL:-from the configuration}   user-service ${USER_SERVICE_URL:-from the configuration}"
    for ((i = 0; i < ${#PIDS[@]}; i++)); do
        echo "  demo         ${NAMES[i]} started here (pid ${PIDS[i]})"
    done
    if [[ -n $GENERATED_ADMIN_PASSWORD ]]; then
        echo "  admin        user ${ADMIN_USERNAME:-admin}, password $GENERATED_ADMIN_PASSWORD (made up for this run;"
        echo "               set ADMIN_PASSWORD to choose one, ADMIN_AUTH_ENABLED=false to turn it off)"
    fi
    echo "try:"
    echo "  curl -s $base/health"
    echo "  curl -s $base/api/users/42"
    echo "  curl -s -X POST $base/api/auth/login -H 'Content-Type: application/json' -d '{\"user\":\"demo\"}'"
    if [[ ${ADMIN_AUTH_ENABLED:-true} != false && -n ${ADMIN_PASSWORD:-} ]]; then
        # the password as it is (quoted for the shell), so the line works when pasted into another shell
        creds=$(printf '%q' "${ADMIN_USERNAME:-admin}:$ADMIN_PASSWORD")
        echo "  curl -s -u $creds -X POST $base/admin/apikeys -d '{\"name\":\"my-app\"}'"
        echo "  curl -s $base/api/auth/me -H 'X-API-Key: <raw_key from the answer>'"
        echo "  admin page: $base/admin/console (user ${ADMIN_USERNAME:-admin}, the password above)"
    else
        echo "  curl -s -X POST $base/admin/apikeys -d '{\"name\":\"my-app\"}'"
        echo "  curl -s $base/api/auth/me -H 'X-API-Key: <raw_key from the answer>'"
        echo "  admin page: $base/admin/console"
    fi
    echo "Ctrl-C stops the gateway and the demo services."
    echo
} >&2

# Foreground: wait for the gateway. A signal interrupts the wait and runs the traps above.
set +e
wait "$GW_PID"
GW_RC=$?
GW_PID=
echo "run.sh: the gateway exited (status $GW_RC)" >&2
exit "$GW_RC"
