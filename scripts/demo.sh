#!/usr/bin/env bash
# The README's main job: set up (idempotent), then run the node on a camera replay.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
cd "$ROOT"
exec python -m textregion_ros.ros.demo "$@"
