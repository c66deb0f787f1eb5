#!/usr/bin/env bash
# Network zones: the lab's static test client (tests/probe) is built for musl, and the zone
# programs are pinned in bpffs.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl
fi
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
