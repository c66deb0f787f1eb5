#!/usr/bin/env bash
# Rule-evaluation benchmark: the full upstream stable set over an event stream, one core,
# compiled+dispatch vs compiled-without-dispatch vs the naive AST interpreter (same run).
# Writes bench/results/rules.json. Pass --events FILE.jsonl to replay a recorded stream.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
upstream="${BRAINBOX_FALCO_RULES:-}"
# The vendored copy (rules/falco/) first, else shared/ beside the repository.
if [[ -z "$upstream" && -f "$root/rules/falco/falco_rules.yaml" ]]; then
  upstream="$root/rules/falco/falco_rules.yaml"
fi
if [[ -z "$upstream" ]]; then
  for d in "$root" "$root/.." "$root/../.."; do
    if [[ -f "$d/shared/falco/falco_rules.yaml" ]]; then upstream="$d/shared/falco/falco_rules.yaml"; break; fi
  done
fi
[[ -n "$upstream" ]] || { echo "falco_rules.yaml not found; set BRAINBOX_FALCO_RULES" >&2; exit 1; }
upstream="$(realpath "$upstream")"
cd "$root"
exec nice -n 10 cargo run --release -q -p brainbox-rules --example rules_bench -- \
  --rules "$upstream" --out bench/results/rules.json "$@"
