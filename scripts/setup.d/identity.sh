#!/usr/bin/env bash
# Identity tests: the Python `spiffe` client (Workload API interop) in its own venv.
set -euo pipefail
VENV=/opt/brainbox/venv-identity
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import spiffe' 2>/dev/null; then
    mkdir -p /opt/brainbox
    PY=/usr/bin/python3
    [ -x "$PY" ] || PY=python3
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'spiffe>=0.2,<0.3'
fi
