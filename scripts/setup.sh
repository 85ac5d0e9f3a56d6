#!/usr/bin/env bash
# One-time (and idempotent) setup: .venv with pinned torch/open_clip/sam2 and the ROS 2
# Kilted wheels, the include links the wheels' CMake configs expect, and a colcon build.
# A second run only re-checks stamps and takes seconds. Fails loudly on the first error.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
step() { printf '\n== setup: %s\n' "$*"; }
fail() { printf '\nsetup FAILED: %s\n' "$*" >&2; exit 1; }
trap 'fail "command failed at line $LINENO: $BASH_COMMAND"' ERR

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || fail "Python 3.11 is required (the ros-kilted wheels are cp311); set PYTHON=python3.11"

if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  "$PYTHON" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"
export VIRTUAL_ENV="$ROOT/.venv" PATH="$ROOT/.venv/bin:$PATH"

UV_VERSION=0.13.10  # the installer of this dev environment (below)
REQ_STAMP="$(echo "uv $UV_VERSION" | cat - requirements-torch.txt requirements.txt requirements-dev.txt requirements-ros.txt \
  | sha256sum | cut -c1-16)"
if [ "$(cat .venv/.requirements-stamp 2>/dev/null)" != "$REQ_STAMP" ]; then
  step "installing pinned Python packages (first run downloads several GB of torch/CUDA wheels)"
  "$VPY" -m pip install --disable-pip-version-check -q --upgrade pip wheel
  # uv installs the same pins about twice as fast as pip (parallel downloads and unpacking: torch's CUDA
  # wheels are several GB). Bytecode is compiled at install, as pip does: env.sh stops Python writing it, so
  # every process would otherwise compile torch's modules on import. pip does it where uv cannot be had.
  if "$VPY" -m pip install --disable-pip-version-check -q "uv==$UV_VERSION" 2>/dev/null; then
    pin_install() { "$ROOT/.venv/bin/uv" pip install --python "$VPY" --compile-bytecode -q "$@"; }
  else
    pin_install() { "$VPY" -m pip install --disable-pip-version-check -q "$@"; }
  fi
  pin_install -r requirements-torch.txt
  # sam2 ships as an sdist that builds against the installed torch; its CUDA extension is optional.
  SAM2_BUILD_CUDA=0 pin_install --no-build-isolation -r requirements-torch.txt -r requirements-dev.txt
  pin_install -r requirements-ros.txt
  "$VPY" -c "import torch, torchvision, open_clip, sam2, rclpy, cv2, skimage, hypothesis, PIL, onnx, onnxruntime, threadpoolctl; torchvision.ops.nms" \
    || fail "installed packages do not import"
  echo "$REQ_STAMP" > .venv/.requirements-stamp
fi

step "include links expected by the ros-kilted wheels' CMake configs"
# The wheels' CMake configs name fixed paths under /opt/python. The links must not point into this
# checkout (two checkouts set up at once would re-point them under each other): they point to the
# base interpreter's headers and to a shared copy of numpy's headers keyed by numpy's version, so
# every checkout with the same pins writes the same links, each replaced atomically.
PY_INC="$("$VPY" -c 'import sysconfig; print(sysconfig.get_config_var("INCLUDEPY"))')"
NP_VER="$("$VPY" -c 'import numpy; print(numpy.__version__)')"
NP_SRC="$("$VPY" -c 'import numpy; print(numpy.get_include())')"
NP_SHARED=/opt/python/shared/numpy-$NP_VER/include
PY_LINK=/opt/python/cp311-cp311/include/python3.11
NP_LINK=/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
[ -f "$PY_INC/Python.h" ] || fail "missing headers in $PY_INC (install the Python 3.11 development headers)"
if [ ! -f "$NP_SHARED/numpy/arrayobject.h" ]; then
  mkdir -p /opt/python/shared 2>/dev/null || fail "cannot create /opt/python/shared: run once as root"
  tmp="$(mktemp -d /opt/python/shared/.numpy-XXXXXX)"
  cp -r "$NP_SRC" "$tmp/include"
  mkdir -p "$(dirname "$NP_SHARED")"
  mv -T "$tmp/include" "$NP_SHARED" 2>/dev/null || true  # another checkout may have won the race: same content
  rm -rf "$tmp"
fi
for pair in "$PY_LINK=$PY_INC" "$NP_LINK=$NP_SHARED"; do
  link="${pair%%=*}"; target="${pair#*=}"
  if [ "$(readlink "$link" 2>/dev/null)" != "$target" ]; then
    mkdir -p "$(dirname "$link")" 2>/dev/null || fail "cannot create $(dirname "$link"): run once as root"
    ln -s "$target" "$link.tmp.$$" && mv -T "$link.tmp.$$" "$link" || fail "cannot link $link -> $target"
  fi
done

# tf2_msgs has no PyPI wheel: build its one message beside ours, only where it is not installed.
OUTSIDE_PATH="$(tr ':' '\n' <<<"${PYTHONPATH:-}" | grep -v "^$ROOT/install" | paste -sd: -)"
if PYTHONPATH="$OUTSIDE_PATH" "$VPY" -c 'import tf2_msgs' 2>/dev/null; then EXTRA_PATHS=()
else EXTRA_PATHS=(scripts/pypi_interfaces/tf2_msgs); fi
BUILD_STAMP="$(cd "$ROOT" && find CMakeLists.txt package.xml msg srv launch config scripts/textregion_node scripts/textregion_memory \
  scripts/pypi_interfaces \
  textregion_ros -type f ! -path '*__pycache__*' -print0 | sort -z | xargs -0 cat \
  | sha256sum | cut -c1-16)"
if [ "$(cat install/.build-stamp 2>/dev/null)" != "$BUILD_STAMP" ]; then
  step "colcon build"
  AMENT_PREFIX_PATH="$VIRTUAL_ENV" CMAKE_PREFIX_PATH="$VIRTUAL_ENV" "$ROOT/.venv/bin/colcon" build \
    --event-handlers console_cohesion+ --base-paths . "${EXTRA_PATHS[@]}" \
    --cmake-args -DPython3_EXECUTABLE="$VPY" -DPython3_NumPy_INCLUDE_DIR="$NP_LINK" \
    || fail "colcon build failed (see log/latest_build)"
  echo "$BUILD_STAMP" > install/.build-stamp
fi
step "ready: source scripts/env.sh"
