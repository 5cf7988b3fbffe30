#!/usr/bin/env bash
# Runs every cargo-fuzz target of pusher-core, one after another, for a given time each.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 60 (the issue's acceptance run used 600)
#   TARGET              default: all of crates/pusher-core/fuzz/fuzz_targets/*.rs
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Runs niced,
# single job and worker, so it shares a small machine politely. Each target starts from
# its committed seed corpus (crates/pusher-core/fuzz/corpus/<target>/seed-*); new
# inputs, crash artifacts and logs stay in git-ignored places:
#   corpus/<target>/ (non-seed files), artifacts/<target>/, target/fuzz-logs/<target>.log
# Prints one summary line per target (runs, coverage, features, crashes) and exits 1 if
# any target found a crash.
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/crates/pusher-core/fuzz"
SECONDS_PER_TARGET="${1:-60}"
shift || true
case "$SECONDS_PER_TARGET" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 1 ;;
esac

cd "$FUZZ_DIR"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz" >&2; exit 1; }
echo "==> building ${#targets[@]} fuzz targets" >&2
nice -n 19 cargo +nightly fuzz build -O >&2

LOG_DIR="$FUZZ_DIR/target/fuzz-logs"
mkdir -p "$LOG_DIR"
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="$LOG_DIR/$t.log"
  echo "==> fuzzing $t for ${SECONDS_PER_TARGET}s (log: $log)" >&2
  # -jobs/-workers=1: one fuzzing process in a child, its output in ./fuzz-0.log.
  # Contact headers are capped at 8 KiB, so 16 KiB inputs also reach the length check.
  status=0
  nice -n 19 cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -jobs=1 -workers=1 \
    -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"$log.outer" 2>&1 || status=$?
  cat "$log.outer" fuzz-0.log >"$log" 2>/dev/null || true
  rm -f "$log.outer" fuzz-0.log
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  crashes=$(find "artifacts/$t" -type f | wc -l)
  echo "$t: ${SECONDS_PER_TARGET}s runs=${runs:-?} cov=${cov:-?} ft=${ft:-?} crashes=$crashes exit=$status"
  if [ "$crashes" -gt 0 ] || [ "$status" -ne 0 ]; then failed=1; fi
done
exit "$failed"
