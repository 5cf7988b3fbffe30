#!/usr/bin/env bash
# Install and run the real services that the tests and the demo use:
#   - RabbitMQ (Debian's rabbitmq-server) on 127.0.0.1:5672, guest/guest;
#   - pouchdb-server 4.2.0 (CouchDB HTTP API, in memory) on 127.0.0.1:$PUSHER_COUCH_PORT
#     (default 15984, so it never collides with a real CouchDB on 5984).
#
# Usage: scripts/services.sh up|down|status|env
#   up      ensure both run (installing what is missing); print `export` lines on
#           stdout, and nothing else there:  eval "$(scripts/services.sh up)"
#   down    stop only what `up` started (recorded in .run/services.state)
#   status  human-readable status of both
#   env     print the `export` lines without starting anything
#
# Progress goes to stderr as `==>` lines. Works from any cwd; as root on a fresh
# Debian bookworm it installs rabbitmq-server, nodejs/npm and curl with apt-get,
# and pouchdb-server with `npm ci` from tools/pouchdb/package-lock.json into
# .cache/pouchdb/. Only 127.0.0.1 is ever contacted (besides the package registries).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

RUN_DIR="$REPO_ROOT/.run"
STATE_FILE="$RUN_DIR/services.state"
LOCK_FILE="$RUN_DIR/services.lock"

AMQP_PORT=5672
AMQP_URI="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
RABBITMQ_START_TIMEOUT=60

COUCH_PORT="${PUSHER_COUCH_PORT:-15984}"
COUCH_URL="http://127.0.0.1:$COUCH_PORT"
POUCH_SRC_DIR="$REPO_ROOT/tools/pouchdb"
POUCH_CACHE_DIR="$REPO_ROOT/.cache/pouchdb"
POUCH_RUN_DIR="$RUN_DIR/pouchdb"
POUCH_BIN="$POUCH_CACHE_DIR/node_modules/pouchdb-server/bin/pouchdb-server"
POUCH_START_TIMEOUT=30

# Keep Erlang (epmd, the node, the CLI tools) on loopback.
export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1

if ! [[ $COUCH_PORT =~ ^[0-9]{1,5}$ ]] || ((10#$COUCH_PORT < 1 || 10#$COUCH_PORT > 65535)); then
    die "PUSHER_COUCH_PORT must be a TCP port number, got '$COUCH_PORT'"
fi

# --------------------------------------------------------------------------
# State file: KEY=VALUE lines. RABBITMQ_OURS=1, POUCHDB_PID=…, POUCHDB_PORT=…

state_get() {
    local key=$1 k v
    [[ -f $STATE_FILE ]] || return 0
    while IFS='=' read -r k v; do
        if [[ $k == "$key" ]]; then
            printf '%s\n' "$v"
            return 0
        fi
    done <"$STATE_FILE"
}

# state_set KEY VALUE (an empty VALUE removes KEY).
state_set() {
    local key=$1 value=$2 k v tmp
    mkdir -p "$RUN_DIR"
    tmp="$STATE_FILE.tmp.$$"
    : >"$tmp"
    if [[ -f $STATE_FILE ]]; then
        while IFS='=' read -r k v; do
            if [[ -n $k && $k != "$key" ]]; then
                printf '%s=%s\n' "$k" "$v" >>"$tmp"
            fi
        done <"$STATE_FILE"
    fi
    if [[ -n $value ]]; then
        printf '%s=%s\n' "$key" "$value" >>"$tmp"
    fi
    if [[ -s $tmp ]]; then
        mv -f "$tmp" "$STATE_FILE"
    else
        rm -f "$tmp" "$STATE_FILE"
    fi
}

# --------------------------------------------------------------------------
# Processes

pid_alive() {
    local pid=$1
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# True when PID is alive and its command line contains PATTERN
# (guards against killing an unrelated process that reused a recorded PID).
pid_matches() {
    local pid=$1 pattern=$2
    pid_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern"
}

# True when some process' command line matches the RabbitMQ node's (booting or up).
rabbit_node_process_exists() {
    # A RabbitMQ beam of the default node. The TLS test nodes of scripts/rabbitmq-tls.sh
    # (RABBITMQ_NODENAME=pusher_*@…, in the beam's environment, not its command line)
    # are not it: counting them would make `up` wait for a node it never starts and
    # `down` wait for a node it did not stop.
    local f pid
    for f in /proc/[0-9]*/cmdline; do
        # `.` also matches the NULs between the arguments.
        grep -qsa -- 'beam[.]smp.*-s.rabbit.boot' "$f" || continue
        pid=${f#/proc/}
        pid=${pid%/cmdline}
        if { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -q '^RABBITMQ_NODENAME=pusher_'; then
            continue
        fi
        return 0
    done
    return 1
}

# --------------------------------------------------------------------------
# RabbitMQ

rabbitmqctl_q() {
    # rabbitmqctl reads stdin (it would swallow the caller's loop input).
    rabbitmqctl -q "$@" </dev/null
}

# One readiness probe: the node is booted and AMQP accepts connections.
rabbit_ready_once() {
    timeout 30 rabbitmqctl -q await_startup </dev/null >/dev/null 2>&1 && port_open "$AMQP_PORT"
}

# Retry `rabbitmqctl await_startup` every 0.25 s until it succeeds or TIMEOUT s
# have passed (it fails at once until the node has registered with epmd).
rabbit_await() {
    local timeout_s=$1 deadline
    deadline=$(($(date +%s) + timeout_s))
    while true; do
        if rabbit_ready_once; then
            return 0
        fi
        (($(date +%s) < deadline)) || return 1
        sleep 0.25
    done
}

rabbit_print_logs() {
    local f
    for f in "$RUN_DIR/rabbitmq-start.log" /var/log/rabbitmq/startup_log /var/log/rabbitmq/startup_err; do
        if [[ -s $f ]]; then
            printf '==> --- tail of %s ---\n' "$f" >&2
            tail -n 30 "$f" >&2 || true
        fi
    done
}

rabbit_start() {
    log "RabbitMQ: starting with 'rabbitmq-server -detached'"
    # Record first, so that `down` cleans up even if the wait fails.
    state_set RABBITMQ_OURS 1
    mkdir -p "$RUN_DIR"
    if ! (
        close_extra_fds
        # Erlang distribution (port 25672) on loopback too, like AMQP and epmd.
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="${RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS:-} -kernel inet_dist_use_interface {127,0,0,1}"
        exec rabbitmq-server -detached
    ) </dev/null >"$RUN_DIR/rabbitmq-start.log" 2>&1; then
        rabbit_print_logs
        die "RabbitMQ: 'rabbitmq-server -detached' failed"
    fi
}

rabbit_up() {
    if port_open "$AMQP_PORT"; then
        if [[ $(state_get RABBITMQ_OURS) == 1 ]]; then
            log "RabbitMQ: already running on 127.0.0.1:$AMQP_PORT (started by this script earlier)"
        else
            log "RabbitMQ: 127.0.0.1:$AMQP_PORT already accepts connections, reusing it (not ours, will not stop it)"
        fi
        command -v rabbitmqctl >/dev/null 2>&1 ||
            die "RabbitMQ answers on 127.0.0.1:$AMQP_PORT but rabbitmqctl is not installed; the tests need it (apt-get install rabbitmq-server)"
        rabbit_await 10 ||
            die "RabbitMQ answers on 127.0.0.1:$AMQP_PORT but 'rabbitmqctl await_startup' cannot reach its node (a foreign broker, or another Erlang cookie?); the tests need rabbitmqctl"
        return 0
    fi

    local installed_now=0 t0
    if ! command -v rabbitmq-server >/dev/null 2>&1 || ! command -v rabbitmqctl >/dev/null 2>&1; then
        log "RabbitMQ: not installed, installing rabbitmq-server"
        t0=$(now_ms)
        apt_install rabbitmq-server
        log "RabbitMQ: installed in $(elapsed_since "$t0")"
        installed_now=1
    fi

    # Start a node unless one exists; a node that exists may be booting (wait for
    # it, do not start a second) or still shutting down after `rabbitmqctl stop`
    # (its beam lingers ~1 s after the port closed: start once it is gone).
    t0=$(now_ms)
    local deadline=$(($(date +%s) + RABBITMQ_START_TIMEOUT)) started_at=0 announced=0
    while true; do
        if ! rabbit_node_process_exists; then
            if ((started_at == 0)); then
                rabbit_start
                started_at=$(date +%s)
            elif (($(date +%s) - started_at > 10)); then
                rabbit_print_logs
                die "RabbitMQ: the node we started is gone (it exited during startup)"
            fi
        elif ((started_at == 0 && announced == 0)); then
            announced=1
            if ((installed_now)); then
                # The package's postinst started it: it is ours all the same.
                state_set RABBITMQ_OURS 1
                log "RabbitMQ: the package installation started a node, waiting for it"
            else
                log "RabbitMQ: a node is already starting or stopping (not started by us), waiting for it"
            fi
        fi
        if rabbit_ready_once; then
            break
        fi
        if (($(date +%s) >= deadline)); then
            rabbit_print_logs
            die "RabbitMQ: not ready within ${RABBITMQ_START_TIMEOUT} s ('rabbitmqctl await_startup' or port $AMQP_PORT)"
        fi
        sleep 0.25
    done
    log "RabbitMQ: ready on 127.0.0.1:$AMQP_PORT in $(elapsed_since "$t0")"
}

rabbit_down() {
    if [[ $(state_get RABBITMQ_OURS) != 1 ]]; then
        if port_open "$AMQP_PORT"; then
            log "RabbitMQ: not started by this script, leaving it running"
        fi
        return 0
    fi
    if ! command -v rabbitmqctl >/dev/null 2>&1; then
        warn "RabbitMQ: rabbitmqctl not found, cannot stop the node we started"
        state_set RABBITMQ_OURS ""
        return 0
    fi
    log "RabbitMQ: stopping the node we started ('rabbitmqctl stop')"
    if ! timeout 60 rabbitmqctl stop </dev/null >&2; then
        log "RabbitMQ: 'rabbitmqctl stop' failed (node already stopped?)"
    fi
    # Wait for the port to close and the node's process to exit (it lingers a
    # second after the port closed; an `up` right after must not see it).
    local i
    for ((i = 0; i < 120; i++)); do
        if ! port_open "$AMQP_PORT" && ! rabbit_node_process_exists; then
            break
        fi
        sleep 0.25
    done
    if port_open "$AMQP_PORT"; then
        warn "RabbitMQ: 127.0.0.1:$AMQP_PORT still accepts connections after 'rabbitmqctl stop'"
    else
        log "RabbitMQ: stopped"
    fi
    state_set RABBITMQ_OURS ""
}

rabbit_status() {
    local owner="not started by this script"
    if [[ $(state_get RABBITMQ_OURS) == 1 ]]; then
        owner="started by this script"
    fi
    if port_open "$AMQP_PORT"; then
        echo "RabbitMQ:        running on 127.0.0.1:$AMQP_PORT ($owner)"
        if command -v rabbitmqctl >/dev/null 2>&1; then
            if timeout 30 rabbitmqctl -q await_startup </dev/null >/dev/null 2>&1; then
                echo "  rabbitmqctl:   reaches the node"
            else
                echo "  rabbitmqctl:   CANNOT reach the node"
            fi
        else
            echo "  rabbitmqctl:   not installed"
        fi
    elif command -v rabbitmq-server >/dev/null 2>&1; then
        echo "RabbitMQ:        installed, not running"
    else
        echo "RabbitMQ:        not installed"
    fi
    echo "  URI:           $AMQP_URI"
}

# --------------------------------------------------------------------------
# pouchdb-server

# First 200 characters of TEXT on one line (for error messages).
one_line() {
    local t=${1//$'\n'/ }
    printf '%s' "${t:0:200}"
}

# GET / of the CouchDB-API server, or fail.
couch_root() {
    curl -sf --max-time 3 --noproxy '*' "$COUCH_URL/" 2>/dev/null
}

is_pouchdb_root() {
    grep -qE 'express-pouchdb|pouchdb' <<<"$1"
}

pouch_lock_hash() {
    cat "$POUCH_SRC_DIR/package.json" "$POUCH_SRC_DIR/package-lock.json" | sha256sum | cut -d' ' -f1
}

ensure_node() {
    local pkgs=()
    command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
    command -v npm >/dev/null 2>&1 || pkgs+=(npm)
    if ((${#pkgs[@]})); then
        log "node/npm missing, installing ${pkgs[*]}"
        apt_install "${pkgs[@]}" ca-certificates
    fi
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        die "node or npm still missing after installing ${pkgs[*]}"
    fi
}

pouch_install() {
    local hash marker="$POUCH_CACHE_DIR/.installed-lock-sha256" t0
    [[ -f $POUCH_SRC_DIR/package.json && -f $POUCH_SRC_DIR/package-lock.json ]] ||
        die "missing $POUCH_SRC_DIR/package.json or package-lock.json"
    hash=$(pouch_lock_hash)
    if [[ -f $marker && $(<"$marker") == "$hash" && -f $POUCH_BIN ]]; then
        log "pouchdb-server: already installed in .cache/pouchdb (lockfile unchanged)"
        return 0
    fi
    ensure_node
    log "pouchdb-server: installing with 'npm ci --ignore-scripts' into .cache/pouchdb (node $(node --version), npm $(npm --version 2>/dev/null))"
    t0=$(now_ms)
    rm -rf "$POUCH_CACHE_DIR"
    mkdir -p "$POUCH_CACHE_DIR"
    cp "$POUCH_SRC_DIR/package.json" "$POUCH_SRC_DIR/package-lock.json" "$POUCH_CACHE_DIR/"
    # --ignore-scripts: skips compiling sqlite3/leveldown (minutes), not needed in memory.
    (cd "$POUCH_CACHE_DIR" && npm ci --ignore-scripts --no-audit --no-fund </dev/null >&2 9>&-) ||
        die "pouchdb-server: 'npm ci' failed in $POUCH_CACHE_DIR"
    [[ -f $POUCH_BIN ]] || die "pouchdb-server: $POUCH_BIN missing after 'npm ci'"
    printf '%s\n' "$hash" >"$marker"
    log "pouchdb-server: installed in $(elapsed_since "$t0")"
}

pouch_print_log() {
    local f
    for f in "$POUCH_RUN_DIR/server.log" "$POUCH_RUN_DIR/log.txt"; do
        if [[ -s $f ]]; then
            printf '==> --- tail of %s ---\n' "$f" >&2
            tail -n 30 "$f" >&2 || true
        fi
    done
}

# Stop the pouchdb-server this script started (if any and still alive).
pouch_stop_recorded() {
    local pid i
    pid=$(state_get POUCHDB_PID)
    [[ -n $pid ]] || return 0
    if pid_matches "$pid" pouchdb-server; then
        log "pouchdb-server: stopping pid $pid (and its process group)"
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            pid_alive "$pid" || break
            sleep 0.125
        done
        if pid_alive "$pid"; then
            log "pouchdb-server: pid $pid ignored SIGTERM, sending SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        log "pouchdb-server: stopped"
    else
        log "pouchdb-server: recorded pid $pid is already gone"
    fi
    state_set POUCHDB_PID ""
    state_set POUCHDB_PORT ""
}

pouch_up() {
    local body pid t0
    need_cmd curl

    if port_open "$COUCH_PORT"; then
        body=$(couch_root) || body=""
        if [[ -n $body ]] && is_pouchdb_root "$body"; then
            pid=$(state_get POUCHDB_PID)
            if [[ $(state_get POUCHDB_PORT) == "$COUCH_PORT" ]] && pid_matches "$pid" pouchdb-server; then
                log "pouchdb-server: already running on $COUCH_URL (pid $pid, started by this script earlier)"
            else
                log "pouchdb-server: $COUCH_URL already answers as pouchdb-server, reusing it (not ours, will not stop it)"
            fi
            return 0
        fi
        die "pouchdb-server: 127.0.0.1:$COUCH_PORT is held by something that is not pouchdb-server (GET / said: $(one_line "${body:-nothing}")); free it or set PUSHER_COUCH_PORT to a free port"
    fi

    # A recorded server of ours that no longer answers here (crashed, hung, or
    # another port): stop it before starting a new one.
    pouch_stop_recorded

    pouch_install

    log "pouchdb-server: starting on $COUCH_URL (in memory, cwd .run/pouchdb)"
    mkdir -p "$POUCH_RUN_DIR"
    # It reads/writes config.json (admins!) and log.txt in its cwd: start clean,
    # else an admin configured by an earlier run would survive and break
    # anonymous database creation.
    rm -f "$POUCH_RUN_DIR/config.json" "$POUCH_RUN_DIR/log.txt" "$POUCH_RUN_DIR/server.log" "$POUCH_RUN_DIR/pid"
    t0=$(now_ms)
    # New session (own process group, no terminal); the inner shell writes its
    # own pid (the one node then gets) whether or not setsid had to fork.
    (
        cd "$POUCH_RUN_DIR"
        close_extra_fds
        # shellcheck disable=SC2016  # $$, $0 and $@ are for the inner shell
        exec setsid bash -c 'echo $$ >pid; exec node "$0" "$@"' \
            "$POUCH_BIN" --in-memory --host 127.0.0.1 --port "$COUCH_PORT" \
            </dev/null >server.log 2>&1
    ) &
    local i
    pid=""
    for ((i = 0; i < 200; i++)); do
        [[ -s $POUCH_RUN_DIR/pid ]] && pid=$(<"$POUCH_RUN_DIR/pid") && [[ -n $pid ]] && break
        sleep 0.05
    done
    [[ -n $pid ]] || {
        pouch_print_log
        die "pouchdb-server: could not start (no pid written)"
    }
    state_set POUCHDB_PID "$pid"
    state_set POUCHDB_PORT "$COUCH_PORT"

    local deadline=$(($(date +%s) + POUCH_START_TIMEOUT))
    while true; do
        body=$(couch_root) || body=""
        if [[ -n $body ]]; then
            is_pouchdb_root "$body" ||
                die "pouchdb-server: $COUCH_URL answers but not as pouchdb-server: $(one_line "$body")"
            break
        fi
        if ! pid_alive "$pid"; then
            pouch_print_log
            state_set POUCHDB_PID ""
            state_set POUCHDB_PORT ""
            die "pouchdb-server: exited during startup"
        fi
        if (($(date +%s) >= deadline)); then
            pouch_print_log
            die "pouchdb-server: $COUCH_URL did not answer within ${POUCH_START_TIMEOUT} s (pid $pid left running; 'scripts/services.sh down' stops it)"
        fi
        sleep 0.1
    done
    log "pouchdb-server: ready on $COUCH_URL (pid $pid) in $(elapsed_since "$t0")"
}

pouch_status() {
    local body pid owner="not started by this script"
    pid=$(state_get POUCHDB_PID)
    if [[ $(state_get POUCHDB_PORT) == "$COUCH_PORT" ]] && pid_matches "$pid" pouchdb-server; then
        owner="started by this script, pid $pid"
    fi
    if port_open "$COUCH_PORT"; then
        body=$(couch_root) || body=""
        if [[ -n $body ]] && is_pouchdb_root "$body"; then
            echo "pouchdb-server:  running on $COUCH_URL ($owner)"
            echo "  GET /:         $body"
        else
            echo "pouchdb-server:  127.0.0.1:$COUCH_PORT is held by something else (GET / said: $(one_line "${body:-nothing}"))"
        fi
    else
        echo "pouchdb-server:  not running on $COUCH_URL"
        if [[ -n $pid ]] && pid_alive "$pid"; then
            echo "  (recorded pid $pid is alive but does not answer on this port: PUSHER_COUCH_PORT=$(state_get POUCHDB_PORT)?)"
        fi
    fi
    if [[ -f $POUCH_BIN ]]; then
        echo "  installed:     .cache/pouchdb (pouchdb-server $(grep -m1 '"version"' "$POUCH_CACHE_DIR/node_modules/pouchdb-server/package.json" | tr -dc '0-9.'))"
    else
        echo "  installed:     no (.cache/pouchdb is empty; 'up' installs it)"
    fi
}

# --------------------------------------------------------------------------

print_env() {
    printf "export PUSHER_TEST_AMQP_URI='%s'\n" "$AMQP_URI"
    printf "export PUSHER_TEST_COUCH_URL='%s'\n" "$COUCH_URL"
}

usage() {
    cat >&2 <<EOF
usage: scripts/services.sh up|down|status|env
  up      start RabbitMQ and pouchdb-server (installing them if needed), print export lines
  down    stop only what 'up' started
  status  show both services
  env     print the export lines without starting anything
EOF
}

main() {
    local cmd=${1:-}
    case $cmd in
    up)
        mkdir -p "$RUN_DIR"
        lock_acquire "$LOCK_FILE"
        local t0
        t0=$(now_ms)
        rabbit_up
        pouch_up
        log "services up in $(elapsed_since "$t0")"
        print_env
        ;;
    down)
        mkdir -p "$RUN_DIR"
        lock_acquire "$LOCK_FILE"
        pouch_stop_recorded
        rabbit_down
        rm -f "$STATE_FILE"
        log "services down"
        ;;
    status)
        rabbit_status
        pouch_status
        ;;
    env)
        print_env
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        usage
        exit 2
        ;;
    esac
}

main "$@"
