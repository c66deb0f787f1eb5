#!/usr/bin/env bash
# demo-own-agent: runs its own node agent (the main demo agent is stopped first)
# demo: Network zones: no way around the sidecar (cgroup-BPF, per container)
# Network zones: what a brainbox's agent container and its sidecar may reach, enforced in the
# kernel per container (cgroup-BPF); its own lab (agent, pod, outside netns), cleaned up on exit.
set -euo pipefail
"$BIN/zones-demo"
