#!/usr/bin/env bash
# cargo-fuzz for the fuzz smoke runs in scripts/test.sh (built once).
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz >/var/log/brainbox-guard/cargo-fuzz.log 2>&1
