#!/usr/bin/env bash
# Two extra RabbitMQ nodes that speak only TLS, on loopback, for the amqps:// tests
# (crates/pusher/tests/it/amqps.rs), beside the plain node of scripts/services.sh:
#
#   tls   127.0.0.1:<port>    server certificate only (the client verifies the broker)
#   mtls  127.0.0.1:<port+1>  client certificate required (verify_peer, fail_if_no_peer_cert)
#
# The nodes belong to this checkout: their names (pusher_tls_<id>, pusher_mtls_<id>) and
# ports (AMQPS <port>, <port>+1, Erlang distribution <port>+2, <port>+3, between 20000
# and 31999) derive from the checkout's path, so two checkouts (a clone beside a working
# tree, two CI runs) never reuse each other's nodes, whose certificates come from another
# throw-away CA. `up` prints the names and ports.
#
# Both use the test PKI the tests generate (pusher-sandbox's TestPki: ca.pem, server.pem
# for 127.0.0.1/localhost, server-key.pem); `up PKI_DIR` copies those three files for
# the nodes, and restarts nodes of ours whose copy is older than PKI_DIR's.
#
#   scripts/rabbitmq-tls.sh up PKI_DIR   start the nodes (idempotent), print export lines
#   scripts/rabbitmq-tls.sh down         stop only the nodes 'up' started
#   scripts/rabbitmq-tls.sh status       show both nodes
#
# Each node has its own name, ports, config, mnesia and log directories under
# .run/rabbitmq-tls/<node>, and runs as the `rabbitmq` user like the main node (Debian's
# wrapper), so `rabbitmqctl -n <node>` reaches it. Plugins are off (no port clash with
# the main node's management plugin).
set -euo pipefail

. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

RUN_DIR="$REPO_ROOT/.run/rabbitmq-tls"
STATE_FILE="$RUN_DIR/ours"
LOCK_FILE="$REPO_ROOT/.run/rabbitmq-tls.lock"
START_TIMEOUT=90
HOST_SHORT=$(hostname -s)

# This checkout's id and port block (see the header).
CHECKOUT_ID=$(printf '%s' "$REPO_ROOT" | cksum | cut -d' ' -f1)
CHECKOUT_ID=$((CHECKOUT_ID % 3000))
BASE_PORT=$((20000 + CHECKOUT_ID * 4))

# name, AMQPS port, Erlang distribution port, ssl_options.verify, fail_if_no_peer_cert
NODES=(
    "tls $BASE_PORT $((BASE_PORT + 2)) verify_none false"
    "mtls $((BASE_PORT + 1)) $((BASE_PORT + 3)) verify_peer true"
)

export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1

node_name() { printf 'pusher_%s_%s@%s' "$1" "$CHECKOUT_ID" "$HOST_SHORT"; }

is_ours() { [[ -f $STATE_FILE ]] && grep -qx -- "$1" "$STATE_FILE"; }

set_ours() {
    mkdir -p "$RUN_DIR"
    touch "$STATE_FILE"
    is_ours "$1" || printf '%s\n' "$1" >>"$STATE_FILE"
}

unset_ours() {
    [[ -f $STATE_FILE ]] || return 0
    grep -vx -- "$1" "$STATE_FILE" >"$STATE_FILE.tmp" || true
    mv -f "$STATE_FILE.tmp" "$STATE_FILE"
    [[ -s $STATE_FILE ]] || rm -f "$STATE_FILE"
}

# True when a beam of node NAME runs (it may still be booting or stopping). The node
# name is not on the beam's command line, but in its environment.
node_process_exists() {
    local want pid
    want="RABBITMQ_NODENAME=$(node_name "$1")"
    for pid in $(pgrep -x beam.smp 2>/dev/null); do
        if { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qxF -- "$want"; then
            return 0
        fi
    done
    return 1
}

ctl() {
    local name=$1
    shift
    timeout 60 rabbitmqctl -q -n "$(node_name "$name")" "$@" </dev/null
}

node_ready_once() {
    local name=$1 port=$2
    timeout 30 rabbitmqctl -q -n "$(node_name "$name")" await_startup </dev/null >/dev/null 2>&1 &&
        port_open "$port"
}

print_logs() {
    local dir=$1 f
    for f in "$dir/start.log" "$dir"/log/*.log; do
        if [[ -s $f ]]; then
            printf '==> --- tail of %s ---\n' "$f" >&2
            tail -n 30 "$f" >&2 || true
        fi
    done
}

write_config() {
    local dir=$1 port=$2 verify=$3 fail=$4
    cat >"$dir/rabbitmq.conf" <<EOF
# Written by scripts/rabbitmq-tls.sh: a TLS-only test node on loopback.
listeners.tcp = none
listeners.ssl.default = 127.0.0.1:$port
ssl_options.cacertfile = $dir/pki/ca.pem
ssl_options.certfile = $dir/pki/server.pem
ssl_options.keyfile = $dir/pki/server-key.pem
ssl_options.verify = $verify
ssl_options.fail_if_no_peer_cert = $fail
log.console = false
log.file.level = info
EOF
    printf '[].\n' >"$dir/enabled_plugins"
}

# Starts node NAME (not running) and returns without waiting.
node_start() {
    local name=$1 port=$2 dist=$3 verify=$4 fail=$5 pki=$6
    local dir="$RUN_DIR/$name"
    mkdir -p "$dir/pki" "$dir/mnesia" "$dir/log"
    cp "$pki/ca.pem" "$pki/server.pem" "$pki/server-key.pem" "$dir/pki/"
    write_config "$dir" "$port" "$verify" "$fail"
    # Debian's wrapper runs the node as `rabbitmq`: it must read and write its files.
    if [[ $(id -u) -eq 0 ]] && getent passwd rabbitmq >/dev/null 2>&1; then
        chown -R rabbitmq: "$dir"
    fi
    log "RabbitMQ TLS node $(node_name "$name"): starting on 127.0.0.1:$port (verify=$verify, fail_if_no_peer_cert=$fail)"
    set_ours "$name"
    if ! (
        close_extra_fds
        export RABBITMQ_NODENAME
        RABBITMQ_NODENAME=$(node_name "$name")
        export RABBITMQ_NODE_PORT=$port
        export RABBITMQ_DIST_PORT=$dist
        export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
        export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
        export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        export RABBITMQ_MNESIA_BASE="$dir/mnesia"
        export RABBITMQ_LOG_BASE="$dir/log"
        export RABBITMQ_PID_FILE="$dir/pid"
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        exec rabbitmq-server -detached
    ) </dev/null >"$dir/start.log" 2>&1; then
        print_logs "$dir"
        die "RabbitMQ TLS node $(node_name "$name"): 'rabbitmq-server -detached' failed"
    fi
}

node_stop() {
    local name=$1 port=$2 i
    log "RabbitMQ TLS node $(node_name "$name"): stopping ('rabbitmqctl stop')"
    ctl "$name" stop >&2 || log "RabbitMQ TLS node $(node_name "$name"): 'rabbitmqctl stop' failed (already stopped?)"
    for ((i = 0; i < 240; i++)); do
        if ! port_open "$port" && ! node_process_exists "$name"; then
            break
        fi
        sleep 0.25
    done
    if node_process_exists "$name"; then
        warn "RabbitMQ TLS node $(node_name "$name") still runs after 'rabbitmqctl stop'"
    fi
    unset_ours "$name"
}

up() {
    local pki=${1:-}
    [[ -n $pki ]] || die "usage: scripts/rabbitmq-tls.sh up PKI_DIR (a TestPki directory: ca.pem, server.pem, server-key.pem)"
    local f
    for f in ca.pem server.pem server-key.pem; do
        [[ -r $pki/$f ]] || die "missing $pki/$f (PKI_DIR must be a pusher-sandbox TestPki directory)"
    done
    command -v rabbitmq-server >/dev/null 2>&1 && command -v rabbitmqctl >/dev/null 2>&1 ||
        die "RabbitMQ is not installed (scripts/services.sh up installs it)"

    local line name port dist verify fail dir t0 starting=()
    t0=$(now_ms)
    for line in "${NODES[@]}"; do
        read -r name port dist verify fail <<<"$line"
        dir="$RUN_DIR/$name"
        if node_process_exists "$name"; then
            if ! is_ours "$name"; then
                log "RabbitMQ TLS node $(node_name "$name") already runs (not started by this script, will not stop it)"
                continue
            fi
            if cmp -s "$pki/ca.pem" "$dir/pki/ca.pem" && cmp -s "$pki/server.pem" "$dir/pki/server.pem"; then
                continue
            fi
            log "RabbitMQ TLS node $(node_name "$name"): the test PKI changed, restarting"
            node_stop "$name" "$port"
        elif port_open "$port"; then
            die "127.0.0.1:$port is held by something that is not RabbitMQ TLS node $(node_name "$name")"
        fi
        node_start "$name" "$port" "$dist" "$verify" "$fail" "$pki"
        starting+=("$name")
    done

    local started_at deadline pending
    started_at=$(date +%s)
    deadline=$((started_at + START_TIMEOUT))
    while true; do
        pending=0
        for line in "${NODES[@]}"; do
            read -r name port dist verify fail <<<"$line"
            if ! node_ready_once "$name" "$port"; then
                pending=1
                # -detached returns before the beam runs: give it 15 s to appear.
                if (($(date +%s) - started_at > 15)) && [[ " ${starting[*]} " == *" $name "* ]] &&
                    ! node_process_exists "$name"; then
                    print_logs "$RUN_DIR/$name"
                    unset_ours "$name"
                    die "RabbitMQ TLS node $(node_name "$name") exited during startup"
                fi
            fi
        done
        ((pending == 0)) && break
        if (($(date +%s) >= deadline)); then
            for line in "${NODES[@]}"; do
                read -r name _ <<<"$line"
                print_logs "$RUN_DIR/$name"
            done
            die "RabbitMQ TLS nodes not ready within ${START_TIMEOUT} s"
        fi
        sleep 0.25
    done
    log "RabbitMQ TLS nodes ready on 127.0.0.1:$BASE_PORT (tls) and :$((BASE_PORT + 1)) (mtls) in $(elapsed_since "$t0")"
    print_env
}

down() {
    local line name port
    for line in "${NODES[@]}"; do
        read -r name port _ <<<"$line"
        if is_ours "$name"; then
            node_stop "$name" "$port"
        elif node_process_exists "$name"; then
            log "RabbitMQ TLS node $(node_name "$name"): not started by this script, leaving it running"
        fi
    done
}

status() {
    local line name port owner
    for line in "${NODES[@]}"; do
        read -r name port _ <<<"$line"
        owner="not started by this script"
        is_ours "$name" && owner="started by this script"
        if port_open "$port"; then
            echo "RabbitMQ TLS node $(node_name "$name"): running on 127.0.0.1:$port ($owner)"
        elif node_process_exists "$name"; then
            echo "RabbitMQ TLS node $(node_name "$name"): process exists, port $port closed ($owner)"
        else
            echo "RabbitMQ TLS node $(node_name "$name"): not running"
        fi
    done
}

print_env() {
    printf "export PUSHER_TEST_AMQPS_NODE='%s'\n" "$(node_name tls)"
    printf "export PUSHER_TEST_AMQPS_PORT='%s'\n" "$BASE_PORT"
    printf "export PUSHER_TEST_AMQPS_MTLS_NODE='%s'\n" "$(node_name mtls)"
    printf "export PUSHER_TEST_AMQPS_MTLS_PORT='%s'\n" "$((BASE_PORT + 1))"
}

main() {
    local cmd=${1:-}
    case $cmd in
    up | down)
        mkdir -p "$RUN_DIR"
        lock_acquire "$LOCK_FILE"
        if [[ $cmd == up ]]; then up "${2:-}"; else down; fi
        ;;
    status) status ;;
    env) print_env ;;
    *)
        echo "usage: scripts/rabbitmq-tls.sh up PKI_DIR|down|status|env" >&2
        exit 2
        ;;
    esac
}

main "$@"
