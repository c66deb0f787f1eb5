#!/usr/bin/env bash
# detect-secrets (PyPI) in its own venv, for the redaction benchmark's baseline (bench/redact/run.sh).
set -euo pipefail
VENV=/opt/brainbox/venv-bench
if [ -x "$VENV/bin/detect-secrets" ]; then
  exit 0
fi
mkdir -p /opt/brainbox
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q detect-secrets
