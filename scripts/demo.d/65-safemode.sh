#!/usr/bin/env bash
# demo-own-agent: runs its own node agent (the main demo agent is stopped first)
# demo: Safe mode: the operator misses a check-in, every brainbox loses egress; isolate on a reverse shell, then the operator lifts it
# The dead-man switch and the isolate response, live: a private nats-server, its own zone lab
# (agent, pod, orchestrator), cleaned up on exit.
set -euo pipefail
"$BIN/safemode-demo"
