#!/usr/bin/env bash
# Kamailio (with Kazoo's `kazoo` AMQP module) and sipp, for the end-to-end test
# `kamailio::` in crates/pusher/tests/it and for trying the service by hand.
#
# Usage: scripts/kamailio.sh install|up|down|status
#   install  install the Debian packages kamailio, kamailio-kazoo-modules and sip-tester
#            when a command is missing (apt-get, non-interactive), then check that
#            tests/kamailio/kamailio.cfg parses. `make test` runs this: the test itself
#            starts one Kamailio per test case (its own vhost and SIP port).
#   up       install, then start a resident Kamailio from .run/kamailio/ for manual use:
#            SIP on udp:127.0.0.1:$PUSHER_KAMAILIO_PORT (default 15060), publishing to
#            the broker of `scripts/services.sh` (vhost /, where `make run` consumes).
#            Prints `export PUSHER_KAMAILIO_SIP=…` on stdout.
#   down     stop only the Kamailio that `up` started (recorded in .run/kamailio.state)
#   status   what is installed and running
#
# Progress goes to stderr as `==>` lines. Only 127.0.0.1 is used (besides the package
# registry); the ports are non-standard so nothing clashes with a real Kamailio.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

RUN_DIR="$REPO_ROOT/.run"
KAM_RUN_DIR="$RUN_DIR/kamailio"
STATE_FILE="$RUN_DIR/kamailio.state"
LOCK_FILE="$RUN_DIR/kamailio.lock"
CFG="$REPO_ROOT/tests/kamailio/kamailio.cfg"
SIP_PORT="${PUSHER_KAMAILIO_PORT:-15060}"
AMQP_URI="${PUSHER_KAMAILIO_AMQP_URI:-amqp://guest:guest@127.0.0.1:5672}"
# The account the resident instance puts into Custom-Channel-Vars (any 32 hex digits).
ACCOUNT_ID="${PUSHER_KAMAILIO_ACCOUNT_ID:-0123456789abcdef0123456789abcdef}"
START_TIMEOUT=15

if ! [[ $SIP_PORT =~ ^[0-9]{1,5}$ ]] || ((10#$SIP_PORT < 1024 || 10#$SIP_PORT > 65535)); then
    die "PUSHER_KAMAILIO_PORT must be a port number from 1024 to 65535, got '$SIP_PORT'"
fi

have_all() {
    command -v kamailio >/dev/null 2>&1 &&
        command -v sipp >/dev/null 2>&1 &&
        [[ -n $(kazoo_module) ]]
}

# Path of kazoo.so, or nothing.
kazoo_module() {
    local f
    for f in /usr/lib/x86_64-linux-gnu/kamailio/modules/kazoo.so /usr/lib/*/kamailio/modules/kazoo.so /usr/lib/kamailio/modules/kazoo.so; do
        if [[ -f $f ]]; then
            printf '%s\n' "$f"
            return 0
        fi
    done
}

# Module directory for `-L` (Debian puts it under the multiarch lib dir).
module_dir() {
    local so
    so=$(kazoo_module)
    [[ -n $so ]] || die "kazoo.so not found (is kamailio-kazoo-modules installed?)"
    dirname "$so"
}

kam_install() {
    local t0
    if have_all; then
        log "kamailio: already installed ($(kamailio -v 2>/dev/null | head -n1)); sipp: $(command -v sipp)"
    else
        t0=$(now_ms)
        apt_install kamailio kamailio-kazoo-modules sip-tester
        have_all || die "kamailio, its kazoo module or sipp still missing after apt-get install"
        log "kamailio + kazoo module + sipp installed in $(elapsed_since "$t0")"
    fi
    # Debian's package enables a kamailio.service; with systemd as init it would start
    # the stock config on 5060. Ours never uses it (and CI machines have no systemd).
    kam_check_cfg
}

kam_check_cfg() {
    [[ -f $CFG ]] || die "missing $CFG"
    local out
    if ! out=$(kamailio -c -f "$CFG" -L "$(module_dir)" \
        -A "AMQP_URI=\"$AMQP_URI\"" -A "ACCOUNT_ID=\"$ACCOUNT_ID\"" -A "NODE_NAME=\"check\"" 2>&1); then
        printf '%s\n' "$out" >&2
        die "kamailio -c rejects $CFG"
    fi
    log "kamailio: $CFG parses"
}

state_get() {
    local key=$1 k v
    [[ -f $STATE_FILE ]] || return 0
    while IFS='=' read -r k v; do
        [[ $k == "$key" ]] && printf '%s\n' "$v" && return 0
    done <"$STATE_FILE"
    return 0
}

pid_is_kamailio() {
    local pid=$1
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "kamailio.*$KAM_RUN_DIR"
}

udp_port_busy() {
    local port=$1
    # /proc/net/udp lists local addresses as hex IP:PORT.
    local hex
    hex=$(printf ':%04X ' "$port")
    grep -q -- "$hex" /proc/net/udp /proc/net/udp6 2>/dev/null
}

kam_up() {
    local pid t0 i
    pid=$(state_get KAMAILIO_PID)
    if [[ -n $pid ]] && pid_is_kamailio "$pid"; then
        log "kamailio: already running (pid $pid, started by this script) on udp:127.0.0.1:$(state_get KAMAILIO_PORT)"
        return 0
    fi
    udp_port_busy "$SIP_PORT" && die "kamailio: udp port $SIP_PORT is taken; set PUSHER_KAMAILIO_PORT"
    mkdir -p "$KAM_RUN_DIR"
    rm -f "$KAM_RUN_DIR/kamailio.log" "$KAM_RUN_DIR/kamailio.pid"
    cp "$CFG" "$KAM_RUN_DIR/kamailio.cfg"
    t0=$(now_ms)
    (
        cd "$KAM_RUN_DIR"
        close_extra_fds
        # -DD: no fork into the background (setsid detaches it instead), -E: log to
        # stderr (the log file), small shared/private memory for a test box.
        exec setsid kamailio -DD -E -m 64 -M 8 -f "$KAM_RUN_DIR/kamailio.cfg" \
            -L "$(module_dir)" -l "udp:127.0.0.1:$SIP_PORT" \
            -Y "$KAM_RUN_DIR" -P "$KAM_RUN_DIR/kamailio.pid" \
            -A "AMQP_URI=\"$AMQP_URI\"" -A "ACCOUNT_ID=\"$ACCOUNT_ID\"" \
            -A "NODE_NAME=\"$(hostname)\"" \
            </dev/null >"$KAM_RUN_DIR/kamailio.log" 2>&1
    ) &
    pid=$!
    printf 'KAMAILIO_PID=%s\nKAMAILIO_PORT=%s\n' "$pid" "$SIP_PORT" >"$STATE_FILE"
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        if grep -q '"Event-Name" *: *"open"' "$KAM_RUN_DIR/kamailio.log" 2>/dev/null && udp_port_busy "$SIP_PORT"; then
            log "kamailio: ready on udp:127.0.0.1:$SIP_PORT (pid $pid, AMQP connected) in $(elapsed_since "$t0")"
            printf "export PUSHER_KAMAILIO_SIP='127.0.0.1:%s'\n" "$SIP_PORT"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$KAM_RUN_DIR/kamailio.log" >&2 || true
            rm -f "$STATE_FILE"
            die "kamailio: exited during start-up (log: $KAM_RUN_DIR/kamailio.log)"
        fi
        sleep 0.1
    done
    tail -n 30 "$KAM_RUN_DIR/kamailio.log" >&2 || true
    die "kamailio: not connected to AMQP within ${START_TIMEOUT} s (pid $pid left running; 'scripts/kamailio.sh down' stops it)"
}

kam_down() {
    local pid i
    pid=$(state_get KAMAILIO_PID)
    if [[ -z $pid ]]; then
        log "kamailio: nothing started by this script"
        return 0
    fi
    if pid_is_kamailio "$pid"; then
        log "kamailio: stopping pid $pid (and its process group)"
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        log "kamailio: stopped"
    else
        log "kamailio: recorded pid $pid is already gone"
    fi
    rm -f "$STATE_FILE"
}

kam_status() {
    local pid
    if command -v kamailio >/dev/null 2>&1; then
        echo "kamailio:        $(kamailio -v 2>/dev/null | head -n1)"
    else
        echo "kamailio:        not installed"
    fi
    if [[ -n $(kazoo_module) ]]; then
        echo "  kazoo module:  $(kazoo_module)"
    else
        echo "  kazoo module:  not installed"
    fi
    if command -v sipp >/dev/null 2>&1; then
        echo "sipp:            $(command -v sipp)"
    else
        echo "sipp:            not installed"
    fi
    pid=$(state_get KAMAILIO_PID)
    if [[ -n $pid ]] && pid_is_kamailio "$pid"; then
        echo "resident:        running, pid $pid, udp:127.0.0.1:$(state_get KAMAILIO_PORT) (started by this script)"
    else
        echo "resident:        not running"
    fi
}

usage() {
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
}

main() {
    local cmd=${1:-}
    case $cmd in
    install | up | down)
        mkdir -p "$RUN_DIR"
        lock_acquire "$LOCK_FILE"
        case $cmd in
        install) kam_install ;;
        up)
            kam_install
            kam_up
            ;;
        down) kam_down ;;
        esac
        ;;
    status) kam_status ;;
    -h | --help | help) usage ;;
    *)
        usage
        exit 2
        ;;
    esac
}

main "$@"
