#!/usr/bin/env bash
# Records the real event stream the rules benchmark replays: the node agent (real eBPF) watches a
# lab pod while brainbox-record-events drives ordinary agent work with the detection tests'
# attacks interleaved; the agent's events for that container are gzipped into
# bench/rules/recorded-events.jsonl.gz. Needs root, Docker and the lab images (as the e2e tests).
#   sudo bench/rules/record.sh [--rounds N]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
nice -n 10 cargo build -q -p brainbox-node-agent -p brainbox-sidecar -p brainbox-lab --bins
nice -n 10 cargo build -q -p brainbox-sidecar --target x86_64-unknown-linux-musl
nice -n 10 cargo build -q -p brainbox-lab --bin brainbox-attack --target x86_64-unknown-linux-musl
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$root/target/debug/brainbox-record-events" "$tmp/events.jsonl" "$@"
gzip -9 -c "$tmp/events.jsonl" > "$root/bench/rules/recorded-events.jsonl.gz"
ls -l "$root/bench/rules/recorded-events.jsonl.gz"
