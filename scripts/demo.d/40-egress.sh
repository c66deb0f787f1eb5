#!/usr/bin/env bash
# demo: Egress: the sidecar's proxy lets a pod reach only what its SPIFFE ID's policy names
# Demo: the sidecar's egress proxy allows what the pod's SPIFFE ID's policy names and refuses the
# rest, with a machine-readable reason and an audit record for each decision.
set -euo pipefail
ROOT="${ROOT:?}"; BIN="${BIN:?}"
W="$(mktemp -d /tmp/bb-egress-demo.XXXXXX)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); PX=$(free_port)
mkdir -p "$W/www" "$W/policy"; echo "hello from the allowed upstream" > "$W/www/index.html"
(cd "$W/www" && exec python3 -m http.server "$UP" --bind 127.0.0.1 >/dev/null 2>&1) & PIDS+=($!)
cat > "$W/policy/demo.yaml" <<POL
kind: egress-policy
name: demo
spiffe_ids: ["spiffe://brainbox.local/ns/demo/*"]
rules:
  - host: 127.0.0.1
    ports: [$UP]
    methods: [GET]
    paths: ["/index.html"]
POL
cat > "$W/sidecar.toml" <<CFG
[log]
level = "warn"
[metrics]
listen = ""
[egress]
listen = "127.0.0.1:$PX"
spiffe_id = "spiffe://brainbox.local/ns/demo/sa/agent"
policy_dir = "$W/policy"
audit_log = "$W/audit.jsonl"
CFG
"$BIN/brainbox-sidecar" --config "$W/sidecar.toml" run >/dev/null 2>&1 & PIDS+=($!)
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
wait_port "$UP"; wait_port "$PX"
show() { # label, curl args...
  local label="$1"; shift
  local out
  out=$(curl -s -m 5 -D - -o "$W/body" -x "http://127.0.0.1:$PX" "$@" 2>&1 || true)
  local code reason
  code=$(echo "$out" | awk 'NR==1{print $2}')
  reason=$(echo "$out" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-brainbox-egress-reason"{print $2}')
  printf '  %-44s -> %s %s\n' "$label" "${code:-closed}" "${reason:+($reason)}"
}
echo "egress proxy for spiffe://brainbox.local/ns/demo/sa/agent (policy: GET 127.0.0.1:$UP/index.html)"
show "GET allowed upstream /index.html" "http://127.0.0.1:$UP/index.html"
show "GET /etc on the same upstream" "http://127.0.0.1:$UP/etc"
show "POST to the allowed path" -X POST -d x "http://127.0.0.1:$UP/index.html"
show "cloud metadata 169.254.169.254" "http://169.254.169.254/latest/meta-data/"
show "unknown host example.com" "http://example.com/"
show "CONNECT tunnel to the GET-only host" -p "http://127.0.0.1:$UP/index.html"
# A token in a URL path (refused here, but recorded): the audit record never holds it.
show "a GitHub token in the path" "http://127.0.0.1:$UP/upload/ghp_R8x2Kq9LmN4pZ7vT1wY6bC3dF5gH0jA2sE9u?sig=x"
sleep 0.3
echo "audit records (redacted, one per decision):"
python3 - "$W/audit.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    tag = f"  [{e['redaction']}]" if e.get('redaction') else ""
    print(f"  {e['verdict']:6} {e['reason']:22} {e.get('method', e['request'].upper()):7} {e['host']}:{e['port']}{e.get('path','')}{tag}")
PY
