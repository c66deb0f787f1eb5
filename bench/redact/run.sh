#!/usr/bin/env bash
# Redaction benchmark: our engine (one core) vs ripgrep (same regexes, search only) vs
# detect-secrets, with Hyperscan (our keywords and regexes, search only) as the reference for what
# a SIMD matcher does on this machine, on the same generated corpus, in one run.
# Writes bench/results/redact.json.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
command -v rg >/dev/null || { echo "ripgrep (rg) is missing: apt-get install ripgrep" >&2; exit 1; }
DS=/opt/brainbox/venv-bench/bin/detect-secrets
[ -x "$DS" ] || { echo "detect-secrets is missing: run scripts/setup.d/redact.sh" >&2; exit 1; }
[ -f /usr/include/hs/hs.h ] || { echo "Hyperscan is missing: apt-get install libhyperscan-dev" >&2; exit 1; }
mkdir -p target
cc -O2 -Wall -Wextra -o target/hs_ref bench/redact/hs_ref.c -lhs
cargo build --release -q -p brainbox-redact --example bench
./target/release/examples/bench --out bench/results/redact.json --mib "${MIB:-16}" \
  --detect-secrets "$DS" --ds-mib "${DS_MIB:-1}" --hs target/hs_ref
