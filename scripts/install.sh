#!/usr/bin/env bash
# Installs what is missing, and only that: the Debian packages (cross compiler, QEMU, GDB and the
# flashers, Fashion-MNIST, socat, valgrind, wrk) and a virtual environment in .venv with the toolchain
# and its test dependencies (pyOCD comes with the `host` extra), plus the tritonclient venv the serving
# tests and benchmarks use. A second run with nothing missing touches nothing (no apt-get update, no pip).
#
#   bash scripts/install.sh [--dry-run]     # --dry-run: say what would be installed, change nothing
#
# scripts/train.sh and scripts/test.sh run it first; .ci/run runs scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
case "${1:-}" in
  --dry-run) DRY_RUN=1 ;;
  "") ;;
  *) echo "usage: bash scripts/install.sh [--dry-run]" >&2; exit 2 ;;
esac

APT_PACKAGES=(
  gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm   # Cortex-M builds and emulated boards
  gdb-multiarch openocd stlink-tools                          # flash --via gdb; OpenOCD, st-flash/st-util
  gcc make socat valgrind                                     # host firmware, pty boards, callgrind
  dataset-fashion-mnist                                       # /usr/share/datasets/fashion-mnist
  libb64-0d                                                   # perf_analyzer (tritonclient) links it
  wrk                                                         # REST load in benchmarks/serve_load.py
  python3-venv
)
MISSING=()
for pkg in "${APT_PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
  [ "$status" = "install ok installed" ] || MISSING+=("$pkg")
done
if [ ${#MISSING[@]} -eq 0 ]; then
  echo "== apt: nothing missing"
elif [ $DRY_RUN -eq 1 ]; then
  echo "== apt: would install ${MISSING[*]}"
else
  echo "== apt: installing ${MISSING[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${MISSING[@]}"
fi

# The venv is current when it was made by this script from this exact pyproject.toml with this
# Python, and the toolchain imports; the stamp records the first two.
PY="${PYTHON:-python3}"
STAMP=.venv/.toolchain-install
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$PY" -c 'import sys; print(sys.version.split()[0])')"
if [ -x .venv/bin/python ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] \
    && .venv/bin/toolchain --version >/dev/null 2>&1; then
  echo "== python: .venv is up to date ($(.venv/bin/toolchain --version))"
elif [ $DRY_RUN -eq 1 ]; then
  echo "== python: would create or update .venv with $($PY --version) and pip install -e '.[dev]'"
else
  echo "== python: .venv with $($PY --version)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$WANT" > "$STAMP"
  .venv/bin/toolchain --version
fi

# Triton's clients and perf_analyzer, for the serving tests and benchmarks/serve_load.py. tritonclient
# 2.51.0 is the last release whose perf_analyzer runs on glibc 2.36, and it pins numpy<2 and
# protobuf<5, so it gets its own venv. perf_analyzer links libcudart even on CPU: the
# nvidia-cuda-runtime-cu12 wheel provides it (tests put it on LD_LIBRARY_PATH).
TRITON_VENV=benchmarks/.venvs/tritonclient
TRITON_PINS=("tritonclient[grpc,http]==2.51.0" "nvidia-cuda-runtime-cu12==12.9.79")
if [ -x "$TRITON_VENV/bin/perf_analyzer" ] && [ "$(cat "$TRITON_VENV/.pins" 2>/dev/null)" = "${TRITON_PINS[*]}" ]; then
  echo "== tritonclient venv: up to date"
elif [ $DRY_RUN -eq 1 ]; then
  echo "== tritonclient venv: would create $TRITON_VENV with ${TRITON_PINS[*]}"
else
  echo "== tritonclient venv ($TRITON_VENV)"
  [ -x "$TRITON_VENV/bin/python" ] || "$PY" -m venv "$TRITON_VENV"
  "$TRITON_VENV/bin/python" -m pip install -q "${TRITON_PINS[@]}"
  echo "${TRITON_PINS[*]}" > "$TRITON_VENV/.pins"
fi
