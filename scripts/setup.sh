#!/usr/bin/env bash
# Sets up everything brainbox-guard needs on a Debian machine, as root. Idempotent: a second run
# checks and does nothing. Components add Debian packages in scripts/setup.d/*.packages and extra
# idempotent steps in scripts/setup.d/*.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=/var/lib/brainbox-guard
LOGS=/var/log/brainbox-guard
mkdir -p "$STATE" "$LOGS"
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages, mounts bpffs and starts dockerd)"

# --- Debian packages -----------------------------------------------------------------------
BASE_PKGS=(docker.io nats-server clang llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev
           libseccomp-dev bpftool busybox-static iproute2 musl-tools curl)
mapfile -t EXTRA_PKGS < <(cat "$ROOT"/scripts/setup.d/*.packages 2>/dev/null | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' || true)
missing=()
for p in "${BASE_PKGS[@]}" "${EXTRA_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  if [ ! -e "$STATE/apt-updated" ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq && touch "$STATE/apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >"$LOGS/apt.log" 2>&1 \
    || { tail -20 "$LOGS/apt.log" >&2; die "apt-get install failed (log: $LOGS/apt.log)"; }
fi

# --- Rust toolchains and tools ---------------------------------------------------------------
export PATH="$HOME/.cargo/bin:$PATH"
command -v rustup >/dev/null || die "rustup is missing: this machine kind ships Rust through rustup"
rustup toolchain list | grep -q '^nightly' || { say "installing the nightly toolchain"; rustup toolchain install nightly --profile minimal; }
rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src' \
  || { say "adding rust-src to nightly (for -Z build-std=core)"; rustup component add rust-src --toolchain nightly; }
for c in clippy rustfmt; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
rustup target list --installed | grep -q x86_64-unknown-linux-musl \
  || { say "adding the musl target (static images)"; rustup target add x86_64-unknown-linux-musl; }
# bpf-linker must be linked against Debian's LLVM 22; without LLVM_PREFIX and llvm-22's bin first
# on PATH its build fails on -lLLVM.
BPF_LINKER_VERSION=0.13.0
if ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  say "building bpf-linker $BPF_LINKER_VERSION against LLVM 22 (takes a few minutes, once)"
  PATH=/usr/lib/llvm-22/bin:$PATH LLVM_PREFIX=/usr/lib/llvm-22 \
    cargo install --locked bpf-linker --version "$BPF_LINKER_VERSION" --no-default-features --features llvm-22 \
    >"$LOGS/bpf-linker.log" 2>&1 || { tail -20 "$LOGS/bpf-linker.log" >&2; die "bpf-linker build failed"; }
fi

# --- Kernel file systems -------------------------------------------------------------------
mountpoint -q /sys/fs/bpf || { say "mounting bpffs"; mount -t bpf bpf /sys/fs/bpf; }
[ -d /sys/kernel/tracing/events ] || { say "mounting tracefs"; mount -t tracefs tracefs /sys/kernel/tracing; }
[ -e /sys/kernel/btf/vmlinux ] || die "the kernel has no BTF (/sys/kernel/btf/vmlinux)"
grep -q cgroup2 /proc/self/mountinfo || die "no cgroup v2 hierarchy is mounted"

# --- Daemons -------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd"
  command -v dockerd >/dev/null || die "dockerd missing after installing docker.io"
  nohup dockerd >"$LOGS/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 "$LOGS/dockerd.log" >&2; die "dockerd did not come up"; }
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  say "starting nats-server with JetStream on 127.0.0.1:4222"
  mkdir -p "$STATE/nats"
  nohup nats-server -js -a 127.0.0.1 -p 4222 -sd "$STATE/nats" >"$LOGS/nats.log" 2>&1 &
  for _ in $(seq 1 40); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.25; done
  (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null || { tail -20 "$LOGS/nats.log" >&2; die "nats-server did not come up"; }
fi

# --- Component steps -----------------------------------------------------------------------
for s in "$ROOT"/scripts/setup.d/*.sh; do
  [ -e "$s" ] || continue
  ROOT="$ROOT" bash "$s" || die "setup step $(basename "$s") failed"
done
say "ready"
