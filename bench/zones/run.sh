#!/usr/bin/env bash
# Zone enforcement cost: TCP connect rate and bulk throughput between lab containers, enforced
# vs an identical unenforced pair in the same run. Writes bench/results/zones.json.
# Usage: bench/zones/run.sh [ROUNDS] [SECONDS]   (as root, Docker running)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
cargo build -p brainbox-node-agent -p brainbox-lab --bins --quiet
exec "$ROOT/target/debug/zones-bench" "${1:-7}" "${2:-3}"
