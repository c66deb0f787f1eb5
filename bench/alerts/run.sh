#!/usr/bin/env bash
# Alert-path benchmark: JetStream direct vs through the spool (NATS down) vs replay, against
# bare async-nats baselines measured in the same run. Needs nats-server. Writes
# bench/results/alerts.json.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
COUNT="${COUNT:-20000}"
nice -n 10 cargo run --release -q -p brainbox-alerts --features testkit --bin brainbox-alerts-bench -- \
  --count "$COUNT" --out bench/results/alerts.json
