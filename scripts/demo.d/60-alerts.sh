#!/usr/bin/env bash
# demo: Alerts over NATS JetStream: the operator's tail, acks, check-in and safe-mode commands
# Demo: alerts over JetStream, the operator's tail, check-in and safe mode, against a private
# nats-server on a free loopback port (killed at the end).
set -euo pipefail
BIN="${BIN:-target/debug}"
CTL="$BIN/brainboxctl"
if ! command -v nats-server >/dev/null; then
  echo "alerts demo: nats-server is not installed (scripts/setup.d/alerts.packages); skipping"
  exit 0
fi
DIR="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
nats-server -js -a 127.0.0.1 -p "$PORT" -sd "$DIR/js" >"$DIR/nats.log" 2>&1 &
NPID=$!
cleanup() { kill "$NPID" 2>/dev/null || true; wait "$NPID" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
export BRAINBOX_NATS_URL="nats://127.0.0.1:$PORT"
for _ in $(seq 50); do "$CTL" checkin --operator demo >/dev/null 2>&1 && break; sleep 0.1; done

echo "== three test alerts published to JetStream (acked, message id = alert id)"
"$CTL" alerts test --node demo-node --priority critical --count 3 --operator demo
echo "== brainboxctl alerts tail (durable consumer, acks after printing)"
"$CTL" alerts tail --count 3 --idle-exit 5
echo "== tailing again with the same durable: nothing new"
"$CTL" alerts tail --idle-exit 1
echo "== operator check-in and safe mode"
"$CTL" checkin --operator demo
"$CTL" safe-mode on --reason "demo drill" --operator demo
"$CTL" safe-mode status
"$CTL" safe-mode off --operator demo
