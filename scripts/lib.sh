# shellcheck shell=bash
# Shared helpers for the project's bash scripts. Source it; do not run it.
#
#   . "$(dirname "$0")/lib.sh"
#
# Everything here prints on stderr only, so that a script's stdout can stay
# machine-readable (e.g. `eval "$(scripts/services.sh up)"`).

# Repository root, located from this file (never from the caller's cwd).
# shellcheck disable=SC2034  # used by the scripts that source this file
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# `==> message` progress line on stderr.
log() {
    printf '==> %s\n' "$*" >&2
}

# Warning on stderr.
warn() {
    printf '==> WARNING: %s\n' "$*" >&2
}

# Error on stderr, then exit 1.
die() {
    printf '==> ERROR: %s\n' "$*" >&2
    exit 1
}

# Seconds since the epoch with millisecond precision (for measured times).
now_ms() {
    date +%s%3N
}

# Print "N.NNN s" elapsed since a now_ms timestamp.
elapsed_since() {
    local start=$1 end
    end=$(now_ms)
    awk -v d="$((end - start))" 'BEGIN { printf "%.1f s", d / 1000 }'
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    local port=$1
    # shellcheck disable=SC2016  # $1 is for the inner shell
    timeout 2 bash -c ': >"/dev/tcp/127.0.0.1/$1"' _ "$port" 2>/dev/null
}

# Take an exclusive lock on FILE through file descriptor 9 (waits up to 300 s).
# Every long-lived or daemon-spawning child must then be started with `9>&-`,
# or it would keep holding the lock after the script exits.
# Without flock(1), go on unlocked.
lock_acquire() {
    local file=$1
    command -v flock >/dev/null 2>&1 || return 0
    exec 9>"$file"
    flock -w 300 9 || die "could not lock $file within 300 s (another services.sh still running?)"
}

# Close every file descriptor above 2 in the current (sub)shell. Call it in a
# subshell right before exec'ing a daemon, so that the daemon holds no pipe of
# whoever ran us (a caller's `$(...)`, a CI runner's log pipe, our lock).
close_extra_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then
            eval "exec $fd>&-" 2>/dev/null || true
        fi
    done
}

# Run `apt-get update` at most once per script run, and only when an install
# is actually needed. (dpkg may start daemons: fd 9 is closed for it.)
_APT_UPDATED=0
apt_install() {
    [[ $(id -u) -eq 0 ]] || die "need root to apt-get install $* (install them by hand, or run as root)"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
    if [[ $_APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update </dev/null >&2 9>&- ||
            die "apt-get update failed"
        _APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" </dev/null >&2 9>&- ||
        die "apt-get install $* failed"
}

# Make sure COMMAND exists, installing Debian PACKAGE (default: COMMAND) if not.
need_cmd() {
    local cmd=$1 pkg=${2:-$1}
    command -v "$cmd" >/dev/null 2>&1 && return 0
    log "$cmd not found, installing Debian package $pkg"
    apt_install "$pkg"
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd still not found after installing $pkg"
}
