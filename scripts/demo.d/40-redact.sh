#!/usr/bin/env bash
# demo: Redaction: secrets and personal data out of the pod's logs, with correlatable fingerprints
# Redaction: what an agent prints, and what leaves the pod.
set -euo pipefail
: "${ROOT:?}" "${BIN:?}"
key=$(mktemp)
trap 'rm -f "$key"' EXIT
head -c 32 /dev/urandom | base64 > "$key"   # a Kubernetes Secret in a cluster
input=$(cat <<'LOG'
2026-11-25T16:20:25Z INFO agent cloning with token ghp_R2d2C3poBB8LukeLeia0123456789abcdEFG
{"ts":"2026-11-25T16:20:26Z","msg":"db connect","cfg":{"user":"app","password":"Tr0ub4dor&3"}}
2026-11-25T16:20:27Z exec psql postgresql://app:Tr0ub4dor&3@db.internal:5432/orders
2026-11-25T16:20:28Z INFO refund to card 4111 1111 1111 1111 for jane.doe@example.com, +44 20 7946 0958
2026-11-25T16:20:29Z INFO request_id=3f2a1c9e-1b2c-4d5e-8f90-0123456789ab status=200 total=$1,299.99
LOG
)
echo "--- agent writes:"
printf '%s\n' "$input"
echo "--- brainbox-sidecar redact outputs (same secret, same fingerprint):"
printf '%s\n' "$input" | BRAINBOX_LOG__LEVEL=warn "$BIN/brainbox-sidecar" redact --key-file "$key" --rules-dir "$ROOT/profiles/redact"
printf 'ESC forging: \033[2K\033[1Afake "login ok"\r\n' | BRAINBOX_LOG__LEVEL=warn "$BIN/brainbox-sidecar" redact --key-file "$key"

# The same engine inside the long-running sidecar: `[redact.pipeline]` in its configuration
# makes `brainbox-sidecar run` tail the agent's log file (and/or listen on a socket) and write
# redacted JSON envelopes; counters appear on the sidecar's /metrics.
work=$(mktemp -d)
trap 'rm -f "$key"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
: > "$work/agent.log"
cat > "$work/sidecar.toml" <<TOML
pod_name = "demo-agent"
[log]
level = "warn"
[metrics]
listen = "127.0.0.1:$port"
[egress]
enabled = false
[redact]
key_file = "$key"
[redact.pipeline]
socket = "$work/log.sock"
socket_mode = "0666"
tail = ["$work/agent.log"]
output = "file"
output_file = "$work/redacted.jsonl"
format = "json"
TOML
"$BIN/brainbox-sidecar" --config "$work/sidecar.toml" run &
pid=$!
for _ in $(seq 100); do [ -S "$work/log.sock" ] && break; sleep 0.1; done
printf '%s\n' "$input" >> "$work/agent.log"
# In a pod the agent runs as another user than the sidecar and writes to the socket
# (`brainboxctl inject` mounts it and sets BRAINBOX_LOG_SOCKET); here as `nobody`.
chmod 755 "$work"
python3 -c 'import os, socket, sys
os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b"2026-11-25T16:20:30Z INFO via the socket, as uid %d: AWS key AKIAZ7QL3V4XNW2PKMBE\n" % os.getuid())' "$work/log.sock"
# An agent that just prints (`inject --wrap-stdout` runs its command under logwrap): its stdout
# goes to the socket, nothing to the terminal.
echo "--- brainbox-sidecar logwrap -- sh -c 'echo …' prints (nothing; exit status kept):"
"$BIN/brainbox-sidecar" logwrap --socket "$work/log.sock" -- \
  sh -c 'echo "2026-11-25T16:20:31Z INFO printed to stdout: DATABASE_URL=postgres://app:Tr0ub4dor&3@db:5432/x"; exit 0'
echo "(exit $?)"
for _ in $(seq 100); do [ "$(wc -l < "$work/redacted.jsonl" 2>/dev/null || echo 0)" -ge 7 ] && break; sleep 0.1; done
echo "--- brainbox-sidecar run, [redact.pipeline] tailing agent.log and listening on log.sock → redacted.jsonl:"
cat "$work/redacted.jsonl"
echo "--- its metrics:"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^brainbox_redact_(lines_in|lines_out|redactions|read_bytes)' || true
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
