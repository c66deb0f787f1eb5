#!/usr/bin/env bash
# Builds brainbox-guard's three images FROM scratch (no shell, no package manager, no libc):
# brainbox-guard/sidecar, brainbox-guard/node-agent and brainbox-guard/brainboxctl, from static
# musl builds of the workspace, and records their ids (the known-good baseline the node agent
# checks brainboxes against: images.lock_file) and sizes in deploy/images.lock.
#
#   scripts/images.sh            release builds (what you ship)
#   PROFILE=debug scripts/images.sh   the debug builds the lab tests use (stripped all the same)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
PROFILE=${PROFILE:-release}
flag=()
[ "$PROFILE" = release ] && flag=(--release)
cargo build "${flag[@]}" --target x86_64-unknown-linux-musl \
  -p brainbox-sidecar -p brainbox-node-agent -p brainboxctl
cargo run -q -p brainbox-lab --bin brainbox-lab -- product-images "$PROFILE" deploy/images.lock
