# Source me: the environment the tests and the demo run in (.venv + the colcon install).
_TR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$_TR_ROOT/.venv/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# colcon's setup scripts reference unset variables; relax nounset while sourcing.
case $- in *u*) _TR_U=1; set +u;; *) _TR_U=0;; esac
# shellcheck disable=SC1091
source "$_TR_ROOT/install/setup.bash"
[ "$_TR_U" = 1 ] && set -u
# Source modules first; textregion_ros.msg/.srv resolve into the install via extend_path.
export PYTHONPATH="$_TR_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Camera frames are ~1 MB; Fast DDS's default transports drop such best-effort samples between
# processes. This profile keeps DDS on loopback and sends samples through a large shared-memory
# segment (see README "DDS and large images").
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_TR_ROOT/config/fastdds_localhost.xml}"
unset _TR_ROOT _TR_U
