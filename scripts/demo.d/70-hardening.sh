#!/usr/bin/env bash
# demo: Hardening: seccomp refuses what a brainbox must not do; the sidecar sandboxes itself; a pod gets injected
set -euo pipefail
: "${ROOT:?}" "${BIN:?}"
probe_src="$ROOT/tests/probe/syscall-probe.c"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
img=$(docker images brainbox-lab/busybox --format '{{.Repository}}:{{.Tag}}' | sed -n 1p)
if command -v musl-gcc >/dev/null && [ -n "$img" ]; then
  musl-gcc -static -O2 -o "$tmp/probe" "$probe_src"
  echo "Inside a brainbox container (root, with CAP_SYS_ADMIN and friends, seccomp/brainbox-workload.json):"
  # Whole output first, then the first lines: `docker run | head` fails under pipefail when
  # head exits before docker has written everything (docker sees a broken pipe).
  out=$(docker run --rm --label brainbox.io/lab --cap-add SYS_ADMIN --cap-add SYS_PTRACE --cap-add SYS_MODULE \
    --user 0:0 --security-opt "seccomp=$ROOT/seccomp/brainbox-workload.json" \
    -v "$tmp/probe:/probe:ro" "$img" /probe)
  sed -n '1,12s/^/  /p' <<<"$out"
  echo "  ... every refused call: EPERM (the filter answers before the kernel looks at anything)"
fi
echo
echo "The sidecar sandboxes itself (started as root on the host):"
BRAINBOX_METRICS__LISTEN=127.0.0.1:0 BRAINBOX_SANDBOX__SELF_TEST=true "$BIN/brainbox-sidecar" run 2>"$tmp/sc.log" &
pid=$!
sleep 1
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' "/proc/$pid/status" | sed 's/^/  /'
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
grep -o '"syscall":"[a-z]*","errno":"[A-Z]*"' "$tmp/sc.log" | sed 's/^/  self-test /'
echo
echo "brainboxctl inject -f deploy/kubernetes/50-example-brainbox.yaml (excerpt):"
"$BIN/brainboxctl" inject -f "$ROOT/deploy/kubernetes/50-example-brainbox.yaml" \
  | grep -E 'name: brainbox-|restartPolicy|localhostProfile|readOnlyRootFilesystem|driver:|medium:|LOG_SOCKET|PIPELINE__SOCKET' | sort | uniq -c | sed 's/^/  /'
echo "brainboxctl inject --wrap-stdout: the agent's command runs under logwrap, from a copy an init container installs:"
printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: coder}\nspec:\n  containers:\n  - name: agent\n    image: agent:1\n    command: [python3, -m, agent]\n' \
  | "$BIN/brainboxctl" inject -f - --wrap-stdout \
  | grep -E -A6 '^  - command:|name: brainbox-logwrap-install' | grep -E 'command:|^ *- |name: brainbox-logwrap' | sed -n '1,8p' | sed 's/^/  /'
