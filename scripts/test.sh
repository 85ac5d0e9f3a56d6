#!/usr/bin/env bash
# The README's test command: set up (idempotent), then run the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
cd "$ROOT"
# Two passes. First the tests that run no ROS node, on two pytest-xdist workers (model building and tensor work
# overlap); then those that run ROS nodes (marker "ros", test/conftest.py), in this one process, one after
# another: their timing is DDS's and the node's threads', which a second worker's load would skew.
# Arguments go to both passes. TEST_WORKERS=0: one pass, in one process.
if [ "${TEST_WORKERS:-2}" = "0" ]; then
  exec python -m pytest test "$@"
fi
set +e
python -m pytest test -m "not ros" -n "${TEST_WORKERS:-2}" "$@"
first=$?
python -m pytest test -m ros "$@"
second=$?
# 5: that pass selected no test (the arguments name tests of one kind only).
[ "$first" -eq 5 ] && first=0
[ "$second" -eq 5 ] && second=0
[ "$first" -ne 0 ] && exit "$first"
exit "$second"
