#!/usr/bin/env bash
# One command installs everything: Debian packages (cross compiler, QEMU, GDB, the flashers, Fashion-MNIST,
# socat, valgrind) and a virtual environment in .venv with the toolchain and its test dependencies
# (pyOCD comes with the `host` extra).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
APT_PACKAGES=(
  gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm   # Cortex-M builds and emulated boards
  gdb-multiarch openocd stlink-tools                          # flash --via gdb; OpenOCD, st-flash/st-util
  gcc make socat valgrind                                     # host firmware, pty boards, callgrind
  dataset-fashion-mnist                                       # /usr/share/datasets/fashion-mnist
  python3-venv
)
echo "== apt: ${APT_PACKAGES[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"

PY="${PYTHON:-python3}"
echo "== python venv (.venv) with $($PY --version)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/toolchain --version
