#!/usr/bin/env bash
# Regenerates crates/hardening/src/syscalls_x86_64.rs from the installed kernel headers.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
H=/usr/include/x86_64-linux-gnu/asm/unistd_64.h
{
  echo '//! x86_64 system call numbers by name, generated from Linux'"'"'s `asm/unistd_64.h` (Debian 12 headers).'
  echo '//! Regenerate with `scripts/gen-syscalls.sh` when the kernel headers add calls.'
  echo
  echo '/// `(name, number)` for every x86_64 system call the headers define, sorted by number.'
  echo 'pub const SYSCALLS: &[(&str, i64)] = &['
  grep -E '^#define __NR_[a-z0-9_]+ [0-9]+' "$H" | awk '{sub("__NR_","",$2); printf "    (\"%s\", %s),\n", $2, $3}'
  echo '];'
} > "$ROOT/crates/hardening/src/syscalls_x86_64.rs"
