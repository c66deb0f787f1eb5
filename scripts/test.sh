#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs every check and test: format, lints, the unit,
# property and privileged end-to-end tests (real Docker, real eBPF, real nats-server), and short
# fuzz runs of every fuzz target. Exits non-zero on the first failing stage.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never
# CI builds from a clean clone: incremental caches (tens of GB for this workspace) buy nothing
# there and once ran the runner out of disk.
export CARGO_INCREMENTAL=0
stage() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }
LOG=$(mktemp -d)/test.log

stage "setup"
bash scripts/setup.sh

stage "format (cargo fmt --check)"
cargo fmt --all --check

stage "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

stage "build (host binaries, static sidecar for the lab image)"
cargo build --workspace --bins --quiet
cargo build -p brainbox-sidecar -p brainbox-node-agent -p brainboxctl --target x86_64-unknown-linux-musl --quiet
cargo build -p brainbox-lab --bin brainbox-attack --bin brainbox-load --target x86_64-unknown-linux-musl --quiet

stage "tests (cargo test --workspace)"
bash scripts/lab-clean.sh
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
leftover=$(docker ps -aq --filter label=brainbox.io/lab | wc -l)
bash scripts/lab-clean.sh
[ "$leftover" = 0 ] || { echo "tests left $leftover lab containers behind" >&2; rc=1; }

if [ "$rc" = 0 ] && [ -d fuzz/fuzz_targets ]; then
  stage "fuzz smoke (${FUZZ_SECONDS:-20} s per target)"
  FUZZ_SECONDS=${FUZZ_SECONDS:-20} bash scripts/fuzz.sh || rc=1
fi

passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$LOG" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$LOG" | awk '{s+=$1} END {print s+0}')
stage "summary"
echo "tests: $passed passed, $failed failed"
exit "$rc"
