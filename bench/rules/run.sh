#!/usr/bin/env bash
# Rule-evaluation benchmark: a RECORDED event stream (bench/rules/recorded-events.jsonl.gz, real
# node-agent output from a lab container; see record.sh) converted to the engine's input by
# `brainbox-node-agent rules convert-events`, replayed in a loop through the full upstream stable
# set on one core. Same run: baseline (empty rule set), compiled+dispatch (the engine),
# compiled without dispatch, naive AST interpreter. Writes bench/results/rules.json.
#
#   bench/rules/run.sh                      # the recording, 5,000,000 events per variant
#   bench/rules/run.sh --replay 2000000     # flags go to the rules_bench example
#   bench/rules/run.sh --synthetic          # the old synthetic stream instead
#   bench/rules/run.sh --events FILE.jsonl  # any stream already in the engine's format
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

args=()
synthetic=0
have_events=0
have_budget=0
for a in "$@"; do
  case "$a" in
    --synthetic) synthetic=1 ;;
    --events) have_events=1; args+=("$a") ;;
    --replay|--seconds) have_budget=1; args+=("$a") ;;
    *) args+=("$a") ;;
  esac
done

recording="$root/bench/rules/recorded-events.jsonl.gz"
if [[ $synthetic == 0 && $have_events == 0 ]]; then
  [[ -f "$recording" ]] || { echo "$recording missing: run bench/rules/record.sh (root, Docker)" >&2; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "== converting the recording with brainbox-node-agent rules convert-events" >&2
  nice -n 10 cargo build -q -p brainbox-node-agent --bin brainbox-node-agent
  gzip -dc "$recording" | "$root/target/debug/brainbox-node-agent" rules convert-events - > "$tmp/engine-events.jsonl"
  echo "   $(wc -l < "$tmp/engine-events.jsonl") events" >&2
  args+=(--events "$tmp/engine-events.jsonl" --label "recorded: bench/rules/recorded-events.jsonl.gz")
  [[ $have_budget == 1 ]] || args+=(--replay 5000000)
fi

nice -n 10 cargo run --release -q -p brainbox-rules --example rules_bench -- \
  --rules "$upstream" --out bench/results/rules.json "${args[@]}"
