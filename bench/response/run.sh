#!/usr/bin/env bash
# The incident-response benchmarks of issue #6: freeze latency against `docker pause`, and the
# capture-and-seal time against writable-layer size against `tar` of the same upper directory.
# Needs root, Docker, eBPF (run scripts/setup.sh first). Release builds. Writes
# bench/results/response.json. Arguments: layer sizes in MiB (default 0 10 50 100).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="$ROOT/bench/results/response.json"
trap 'bash scripts/lab-clean.sh >/dev/null 2>&1 || true' EXIT INT TERM

echo "== building release binaries"
cargo build --release -q -p brainbox-node-agent -p brainbox-lab --bin brainbox-node-agent --bin brainbox-response-bench
cargo build --release -q -p brainbox-sidecar --target x86_64-unknown-linux-musl
echo "== running (each round: pod, fill layer, attack, recycle)"
./target/release/brainbox-response-bench "$OUT" "$@"
