#!/usr/bin/env bash
# demo: Rule engine: upstream Falco rules + our overrides checked; a broken rule file rejected with file:line
# The Falco-compatible rule engine reads the unchanged upstream stable rules plus
# our override profile, and rejects a broken rule file with file:line.
set -euo pipefail
: "${ROOT:?ROOT must be the repository root}"
: "${BIN:?BIN must hold the debug binaries}"

upstream="${BRAINBOX_FALCO_RULES:-}"
if [[ -z "$upstream" && -f "$ROOT/rules/falco/falco_rules.yaml" ]]; then
  upstream="$ROOT/rules/falco/falco_rules.yaml"   # the vendored, unchanged copy
fi
if [[ -z "$upstream" ]]; then
  for d in "$ROOT" "$ROOT/.." "$ROOT/../.."; do
    if [[ -f "$d/shared/falco/falco_rules.yaml" ]]; then upstream="$d/shared/falco/falco_rules.yaml"; break; fi
  done
fi
if [[ -z "$upstream" ]]; then
  echo "rules demo: upstream falco_rules.yaml not found (set BRAINBOX_FALCO_RULES)" >&2
  exit 1
fi

echo "== rules check: upstream Falco stable rules + brainbox overrides"
(cd "$ROOT" && "$BIN/brainbox-node-agent" rules check "${upstream#"$ROOT"/}" profiles/rules/brainbox-overrides.yaml)

echo
echo "== rules check on a broken file (expected to fail, with file:line)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/broken.yaml" <<'YAML'
- rule: Broken
  desc: a typo in an operator
  condition: evt.type = execve and proc.name equals bash
  output: "%proc.name"
  priority: WARNING
YAML
if (cd "$tmp" && "$BIN/brainbox-node-agent" rules check broken.yaml 2>&1); then
  echo "rules demo: the broken file was accepted" >&2
  exit 1
fi
echo "(exit code non-zero, as expected)"
