#!/usr/bin/env bash
# The README's test command: set up (idempotent), then run the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
cd "$ROOT"
# Two workers (pytest-xdist): the tests that run ROS nodes one after another on one (conftest.py: ROS_MODULES),
# the rest on the other. TEST_WORKERS=0 runs everything in this one process.
exec python -m pytest test -n "${TEST_WORKERS:-2}" --dist loadgroup "$@"
