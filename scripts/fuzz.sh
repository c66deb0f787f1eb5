#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (default 60) and fails on a crash.
# Corpora live in fuzz/corpus/<target> (not committed); crashes land in fuzz/artifacts/<target>.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT/fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
secs=${FUZZ_SECONDS:-60}
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: run scripts/setup.sh" >&2; exit 1; }
targets=$(cargo +nightly fuzz list)
[ -n "$targets" ] || { echo "no fuzz targets" >&2; exit 1; }
cargo +nightly fuzz build -O >/dev/null 2>&1 || cargo +nightly fuzz build -O
for t in $targets; do
  mkdir -p "corpus/$t"
  printf '%-28s ' "$t"
  if out=$(cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1); then
    echo "ok ($(echo "$out" | grep -Eo 'Done [0-9]+ runs' | tail -1))"
  else
    echo "FAILED"; echo "$out" | tail -40; exit 1
  fi
done
