#!/usr/bin/env bash
# demo: Identity: SPIFFE Workload API served by the node agent (/run/brainbox/identity/agent.sock)
# Identity: the node agent's SPIFFE Workload API attests lab containers by their cgroup.
set -euo pipefail
B=$'\033[1m'; G=$'\033[1;32m'; R=$'\033[1;31m'; C=$'\033[1;36m'; N=$'\033[0m'
SOCK_DIR=/run/brainbox/identity
IMG=$(docker images --format '{{.Repository}}:{{.Tag}}' brainbox-lab/sidecar | sed -n 1p)
[ -S "$SOCK_DIR/agent.sock" ] || { echo "no Workload API socket (identity disabled?)"; exit 0; }
POD=demo-id
cleanup() { docker rm -f "$POD-sidecar" demo-id-stranger >/dev/null 2>&1 || true; }
trap cleanup EXIT
common=(--cap-drop ALL --read-only --security-opt no-new-privileges --label brainbox.io/lab
        -v "$SOCK_DIR:/run/brainbox/workload:ro" -e SPIFFE_ENDPOINT_SOCKET=unix:///run/brainbox/workload/agent.sock)
docker run -d --rm --name "$POD-sidecar" "${common[@]}" --tmpfs /run/svid:size=1m,uid=65532 \
  --label brainbox.io/profile=default --label brainbox.io/pod=$POD --label brainbox.io/role=sidecar "$IMG" run >/dev/null
docker run -d --rm --name demo-id-stranger "${common[@]}" -e BRAINBOX_SVID__ENABLED=false "$IMG" run >/dev/null
printf '%s$ docker exec %s-sidecar /brainbox-sidecar svid-fetch --audience demo%s\n' "$B" "$POD" "$N"
for _ in $(seq 1 40); do
  if out=$(docker exec -e BRAINBOX_LOG__LEVEL=warn "$POD-sidecar" /brainbox-sidecar svid-fetch --audience demo 2>&1); then break; fi
  sleep 0.25
done
echo "$out" | grep '^{' || echo "$out"
printf '%s$ docker exec %s-sidecar /brainbox-sidecar svid-fetch --audience demo --spiffe-id spiffe://brainbox.local/ns/default/brainbox/someone-else%s\n' "$B" "$POD" "$N"
docker exec "$POD-sidecar" /brainbox-sidecar svid-fetch --audience demo --spiffe-id spiffe://brainbox.local/ns/default/brainbox/someone-else 2>&1 | tail -1 | sed "s/^/${R}refused:${N} /" || true
printf '%s$ docker exec demo-id-stranger /brainbox-sidecar svid-fetch   # no brainbox labels%s\n' "$B" "$N"
docker exec demo-id-stranger /brainbox-sidecar svid-fetch 2>&1 | tail -1 | sed "s/^/${R}refused:${N} /" || true
printf '%sThe sidecar rotated its SVID into its tmpfs:%s ' "$G" "$N"
docker logs "$POD-sidecar" 2>&1 | grep -c '"SVID installed"' | sed 's/$/ install(s) so far/'
exit 0
