#!/usr/bin/env bash
# `make bench` (issue #6): pusherd against raw baselines measured in the same run on the
# same local services, scenarios P1–P10; prints one Markdown table (also written to
# .run/bench/results.md, ready to paste into BENCHMARKS.md).
#   1. RabbitMQ + pouchdb-server (scripts/services.sh up; installed and started if needed)
#   2. release builds of pusherd and pusher-bench
#   3. target/release/pusher-bench: its own vhost, account database and config keys, an
#      in-process mock APNs (20 ms added latency), pusherd child processes, baselines
# Stops only the services it started. Extra arguments go to pusher-bench, e.g.
#   scripts/bench.sh --scale 0.1            # quick smoke run
#   scripts/bench.sh --only p1,p23          # some scenario groups (p1, p23, p456, p8, p9, p10)
#   scripts/bench.sh --only p9,p10 --scale 0.1   # P9 and P10 alone, smoke sizes
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source-path=SCRIPTDIR source=lib.sh
. scripts/lib.sh

log "Building (release): pusherd and pusher-bench"
cargo build --release --quiet -p pusher --bins
cargo build --release --quiet -p pusher-bench --bins

had_state=0
[[ -s .run/services.state ]] && had_state=1
eval "$(scripts/services.sh up)"
cleanup() {
    local rc=$?
    if [[ $had_state == 0 ]]; then scripts/services.sh down || true; fi
    exit "$rc"
}
trap cleanup EXIT

started=$(now_ms)
target/release/pusher-bench "$@"
log "bench done in $(elapsed_since "$started")"
