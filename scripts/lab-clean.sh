#!/usr/bin/env bash
# Removes every container the lab created (label brainbox.io/lab), e.g. after a killed run.
set -euo pipefail
ids=$(docker ps -aq --filter label=brainbox.io/lab)
[ -z "$ids" ] || docker rm -f -v $ids >/dev/null
