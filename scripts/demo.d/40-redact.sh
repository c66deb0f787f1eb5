#!/usr/bin/env bash
# Redaction: what an agent prints, and what leaves the pod.
set -euo pipefail
: "${ROOT:?}" "${BIN:?}"
key=$(mktemp)
trap 'rm -f "$key"' EXIT
echo "demo fingerprint key" > "$key"
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
printf '%s\n' "$input" | "$BIN/brainbox-sidecar" redact --key-file "$key" --rules-dir "$ROOT/profiles/redact"
printf 'ESC forging: \033[2K\033[1Afake "login ok"\r\n' | "$BIN/brainbox-sidecar" redact --key-file "$key"
