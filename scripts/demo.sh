#!/usr/bin/env bash
# The live demo: sets everything up, starts the node agent and a brainbox pod (sidecar + agent
# containers) in the local Docker lab, runs commands inside the pod as an attacker would, and
# shows what brainbox-guard saw. Cleans up after itself.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
B=$'\033[1m'; G=$'\033[1;32m'; C=$'\033[1;36m'; D=$'\033[2m'; N=$'\033[0m'
step() { printf '\n%s▶ %s%s\n' "$C" "$*" "$N"; }
run() { printf '%s$ %s%s\n' "$D" "$*" "$N"; "$@"; }

step "Setting up (packages, toolchains, bpffs, dockerd, nats-server; instant when already done)"
bash scripts/setup.sh
step "Building brainbox-guard"
cargo build --workspace --bins --quiet
cargo build -p brainbox-sidecar --target x86_64-unknown-linux-musl --quiet
export BIN="$ROOT/target/debug" ROOT
DEMO=$(mktemp -d /tmp/brainbox-demo.XXXX)
POD=demo
cleanup() {
  [ -n "${AGENT_PID:-}" ] && kill "$AGENT_PID" 2>/dev/null && { wait "$AGENT_PID" 2>/dev/null || true; }
  [ -n "${NATS_PID:-}" ] && kill "$NATS_PID" 2>/dev/null && { wait "$NATS_PID" 2>/dev/null || true; }
  # The demo agent's zone pins (its own folder: pins outlive an agent by design).
  rm -rf /sys/fs/bpf/brainbox-demo 2>/dev/null
  # Sealed evidence is immutable (chattr +i); lift that before removing the demo's folder.
  [ -d "${DEMO:-}/evidence" ] && chattr -R -i "$DEMO/evidence" 2>/dev/null; rm -rf "${DEMO:-/nonexistent}" 2>/dev/null
  "$BIN/brainbox-lab" down >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$BIN/brainbox-lab" down >/dev/null
"$BIN/brainbox-lab" images >/dev/null

step "Starting the node agent (eBPF sensor + Docker attribution + the upstream Falco rules)"
# Its alerts go to a private nats-server -js on a free loopback port (the operator's view below).
# The demo talks to loopback and its own containers only: no DNS lookups of the names in rules.
NATS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$DEMO/nats" >"$DEMO/nats.log" 2>&1 &
NATS_PID=$!
export DEMO_NATS_URL="nats://127.0.0.1:$NATS_PORT"
BRAINBOX_ALERTS__NATS_URL="$DEMO_NATS_URL" BRAINBOX_ALERTS__SPOOL_DIR="$DEMO/spool" \
BRAINBOX_ALERTS__COALESCE_SECS=2 BRAINBOX_NODE_NAME=demo-node BRAINBOX_RULES__DNS_REFRESH_SECS=0 \
BRAINBOX_EVENTS__OUTPUT="$DEMO/events.jsonl" BRAINBOX_METRICS__LISTEN=127.0.0.1:19464 \
BRAINBOX_RESPONSE__EVIDENCE_DIR="$DEMO/evidence" BRAINBOX_RESPONSE__AUDIT_LOG="$DEMO/audit.log" \
BRAINBOX_ZONES__PIN_DIR=/sys/fs/bpf/brainbox-demo \
BRAINBOX_PROFILES_DIR="$ROOT/profiles" "$BIN/brainbox-node-agent" run 2>"$DEMO/agent.log" &
AGENT_PID=$!
for _ in $(seq 1 100); do grep -q '"agent ready"' "$DEMO/agent.log" 2>/dev/null && break; sleep 0.1; done
grep -q '"agent ready"' "$DEMO/agent.log" || { cat "$DEMO/agent.log"; echo "agent did not start" >&2; exit 1; }
echo "${G}agent ready${N}  (logs: $DEMO/agent.log, events: $DEMO/events.jsonl, metrics: http://127.0.0.1:19464/metrics)"
grep '"rules loaded"' "$DEMO/agent.log" | sed -E 's/.*"rules":([0-9]+),"evaluable":([0-9]+),"macros":([0-9]+),"lists":([0-9]+).*/rules: \1 loaded, \2 evaluable, \3 macros, \4 lists (upstream Falco stable set + profiles\/rules)/'
grep '"eBPF sensor loaded' "$DEMO/agent.log" | sed -E 's/.*"programs":([0-9]+).*/eBPF: \1 sensor programs attached/'

step "Starting brainbox pod '$POD': a FROM-scratch sidecar and a BusyBox agent container sharing one network namespace"
"$BIN/brainbox-lab" up "$POD" >/dev/null
AGENT_ID=$(docker inspect -f '{{.Id}}' "$POD-agent")
for _ in $(seq 1 100); do grep -q "\"container_id\":\"$AGENT_ID\"" "$DEMO/agent.log" && break; sleep 0.1; done
docker ps --filter label=brainbox.io/pod=$POD --format 'table {{.Names}}\t{{.Image}}\t{{.Label "brainbox.io/role"}}\t{{.Status}}'
printf '%shardening:%s ' "$B" "$N"
docker inspect -f 'user={{.Config.User}} read-only={{.HostConfig.ReadonlyRootfs}} cap-drop={{.HostConfig.CapDrop}} security-opt={{.HostConfig.SecurityOpt}} network={{.HostConfig.NetworkMode}}' "$POD-agent" | sed 's/container:[0-9a-f]\{12\}[0-9a-f]*/container:'"$POD"'-sidecar/'

step "Inside the brainbox: an agent looks around (this is what an attacker does first)"
run docker exec "$POD-agent" cat /etc/hostname
run docker exec "$POD-agent" sh -c 'id; cat /proc/self/status | grep -E "^(CapEff|NoNewPrivs|Seccomp):"'
run docker exec "$POD-agent" sh -c 'cat /etc/shadow || echo "(denied)"'

step "The agent goes wrong: the attacks a compromised brainbox tries (each one caught by an unchanged upstream Falco rule)"
run docker exec -u 0 "$POD-agent" cat /etc/shadow >/dev/null
run docker exec "$POD-agent" grep -r aws_secret_access_key /tmp || true
run docker exec "$POD-agent" ln -s /etc/shadow /tmp/.hidden-shadow
run docker exec "$POD-agent" sh -c 'echo evil > /var/log/agent.log; : > /var/log/agent.log'
run docker exec -t "$POD-agent" sh -c 'sleep 1'
docker exec -d "$POD-agent" nc -l -p 15001
sleep 0.3
printf '%s$ %s%s\n' "$D" "docker exec $POD-agent nc 127.0.0.1 15001 -e /bin/sh   # a reverse shell" "$N"
docker exec -d "$POD-agent" nc 127.0.0.1 15001 -e /bin/sh

step "The response: the profile maps CRITICAL to recycle (freeze -> capture from the host -> seal -> kill -> recreate)"
OLD_ID=$(docker inspect -f '{{.Id}}' "$POD-agent")
for _ in $(seq 1 300); do grep -q '"type":"response"' "$DEMO/events.jsonl" 2>/dev/null && break; sleep 0.1; done
grep -m1 '"type":"response"' "$DEMO/events.jsonl" | python3 -c '
import json,sys
r=json.loads(sys.stdin.read())
print("response %s for alert %s on container %s" % (r["action"], r["alert_id"][:12], r["container_id"][:12]))
for s in r["steps"]:
    d = s["detail"]
    extra = ""
    if s["step"] == "freeze" and isinstance(d, dict): extra = "all tasks frozen"
    if s["step"] == "capture" and isinstance(d, dict) and "summary" in d:
        extra = "%d processes, %d layer files, bundle %s" % (d["summary"]["processes"], d["summary"]["layer_files"], d["bundle"]["id"][:16])
    if s["step"] == "recreate" and isinstance(d, dict) and "new_container_id" in d:
        extra = "new container %s from %s" % (d["new_container_id"][:12], d["image_id"][:19])
    print("  %-9s %-4s %5d ms  audit #%s  %s" % (s["step"], "ok" if s["ok"] else "FAIL", s["ms"], s["audit_seq"], extra))
'
NEW_ID=$(docker inspect -f '{{.Id}}' "$POD-agent" 2>/dev/null || true)
echo "container $POD-agent: ${OLD_ID:0:12} -> ${NEW_ID:0:12} (same name, same image digest, fresh writable layer)"
EVID=$(grep -m1 '"type":"response"' "$DEMO/events.jsonl" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read()).get("evidence_id",""))')
if [ -n "$EVID" ]; then
  run "$BIN/brainboxctl" evidence show "$EVID" --store "$DEMO/evidence"
  run "$BIN/brainboxctl" evidence verify "$EVID" --store "$DEMO/evidence" --audit "$DEMO/audit.log"
  run "$BIN/brainboxctl" audit verify "$DEMO/audit.log"
fi

step "An unwatched container (no brainbox.io/profile label) does the same: the kernel filters it out"
docker run -d --rm --name demo-unwatched --label brainbox.io/lab brainbox-lab/busybox:$(docker images --format '{{.Tag}}' brainbox-lab/busybox | sed -n 1p) sleep 60 >/dev/null
run docker exec demo-unwatched cat /etc/hostname
docker rm -f demo-unwatched >/dev/null
sleep 0.5

step "What the node agent reported: events and alerts (brainboxctl events)"
run "$BIN/brainboxctl" events "$DEMO/events.jsonl"
printf '\n%sOne event and one alert as JSON:%s\n' "$B" "$N"
grep -m1 '"/etc/hostname"' "$DEMO/events.jsonl"
grep '"type":"alert"' "$DEMO/events.jsonl" | grep -m1 'Redirect STDOUT'
printf '\n%sCounters (alerts by rule; kernel events and drops, which are exported, never hidden):%s\n' "$B" "$N"
curl -s http://127.0.0.1:19464/metrics | grep -E '^brainbox_(sensor_kernel|watched|alerts)' | grep -v ' 0$' || true

step "What the operator is sent: the same alerts over NATS JetStream (brainboxctl alerts tail)"
echo "Identical alerts (same container, rule and output) within alerts.coalesce_secs (2 s here, 10 by"
echo "default) go out once, then as one summary that counts the rest; the CRITICAL alert whose"
echo "response captured evidence carries its bundle id."
run "$BIN/brainboxctl" alerts tail --nats "$DEMO_NATS_URL" --idle-exit 4

for seg in "$ROOT"/scripts/demo.d/*.sh; do
  [ -e "$seg" ] || continue
  if [ -n "${AGENT_PID:-}" ] && grep -q '^# demo-own-agent' "$seg"; then
    # From here on, segments start node agents of their own (one per lab). Two agents watching
    # the same containers would both respond to one attack (this one would recycle what a
    # segment isolates), so this one stops.
    kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
    AGENT_PID=
  fi
  step "$(sed -n 's/^# demo: //p' "$seg" | head -1)"
  bash "$seg"
done
printf '\n%sDemo complete.%s Everything it started is being removed.\n' "$G" "$N"
