#!/usr/bin/env bash
# demo-own-agent: runs its own node agent (the main demo agent is stopped first)
# demo: A blinded sensor is an alert: a syscall flood overflows the ring buffer and the operator is told
# An attacker can try to hide one syscall among millions. This agent runs with a deliberately
# tiny ring buffer (one page) so that a shell loop in a brainbox overflows it; the agent raises
# its own CRITICAL alert, counting every dropped event, at most once per window (3 s here, 30 by
# default): the alerts together count exactly what the kernel dropped.
set -euo pipefail
: "${BIN:?}"
B=$'\033[1m'; N=$'\033[0m'
DIR=$(mktemp -d)
IMG=$(docker images --format '{{.Repository}}:{{.Tag}}' brainbox-lab/busybox | sed -n 1p)
cleanup() {
  [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null && { wait "$APID" 2>/dev/null || true; }
  docker rm -f demo-blind >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
BRAINBOX_EVENTS__OUTPUT="$DIR/events.jsonl" BRAINBOX_METRICS__LISTEN=127.0.0.1:0 \
BRAINBOX_SENSOR__RING_BUFFER_BYTES=4096 BRAINBOX_SENSOR__STATS_INTERVAL_SECS=1 \
BRAINBOX_SENSOR__DROP_ALERT_SECS=3 BRAINBOX_ALERTS__ENABLED=false BRAINBOX_ZONES__ENABLED=false \
BRAINBOX_RULES__DNS_REFRESH_SECS=0 \
BRAINBOX_IDENTITY__SOCKET="$DIR/agent.sock" BRAINBOX_RESPONSE__EVIDENCE_DIR="$DIR/evidence" \
BRAINBOX_RESPONSE__AUDIT_LOG="$DIR/audit.log" BRAINBOX_PROFILES_DIR="$ROOT/profiles" \
  "$BIN/brainbox-node-agent" run 2>"$DIR/agent.log" &
APID=$!
for _ in $(seq 1 100); do grep -q '"agent ready"' "$DIR/agent.log" 2>/dev/null && break; sleep 0.1; done
grep -q '"agent ready"' "$DIR/agent.log" || { cat "$DIR/agent.log"; echo "agent did not start" >&2; exit 1; }
echo "node agent with a one-page ring buffer (sensor.ring_buffer_bytes = 4096)"
docker run -d --name demo-blind --label brainbox.io/lab --label brainbox.io/profile=observe \
  "$IMG" sleep 60 >/dev/null
for _ in $(seq 1 50); do grep -q '"watching container"' "$DIR/agent.log" && break; sleep 0.1; done
printf '%s$ docker exec demo-blind sh -c '"'"'i=0; while [ $i -lt 200000 ]; do : < /etc/hostname; i=$((i+1)); done'"'"'%s\n' "$B" "$N"
docker exec demo-blind sh -c 'i=0; while [ $i -lt 200000 ]; do : < /etc/hostname; i=$((i+1)); done'
addr=$(grep '"metrics endpoint up"' "$DIR/agent.log" | sed -n 's/.*"listen":"\([^"]*\)".*/\1/p' | head -1)
kernel() { curl -s "http://$addr/metrics" | awk '/^brainbox_sensor_kernel_drops_total/ {s+=$2} END {print s+0}'; }
alerted() { grep '"Sensor dropped events"' "$DIR/events.jsonl" 2>/dev/null | grep -o 'n_drops=[0-9]*' | awk -F= '{s+=$2} END {print s+0}'; }
# The last drops are reported at the next window.
for _ in $(seq 1 60); do [ "$(alerted)" -gt 0 ] && [ "$(alerted)" = "$(kernel)" ] && break; sleep 0.2; done
echo "what the agent raised (brainboxctl events, alerts only):"
"$BIN/brainboxctl" events "$DIR/events.jsonl" | grep ' ALERT ' | grep 'Sensor dropped events' \
  || { echo "no drop alert (the flood did not overflow the ring?)"; exit 1; }
echo "dropped events counted by the alerts: $(alerted); by the kernel (brainbox_sensor_kernel_drops_total): $(kernel)"
