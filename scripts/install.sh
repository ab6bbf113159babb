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
  libb64-0d                                                   # perf_analyzer (tritonclient) links it
  wrk                                                         # REST load in benchmarks/serve_load.py
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

# Triton's clients and perf_analyzer, for the serving tests and benchmarks/serve_load.py. tritonclient
# 2.51.0 is the last release whose perf_analyzer runs on glibc 2.36, and it pins numpy<2 and
# protobuf<5, so it gets its own venv. perf_analyzer links libcudart even on CPU: the
# nvidia-cuda-runtime-cu12 wheel provides it (tests put it on LD_LIBRARY_PATH).
TRITON_VENV=benchmarks/.venvs/tritonclient
echo "== tritonclient venv ($TRITON_VENV)"
[ -x "$TRITON_VENV/bin/python" ] || "$PY" -m venv "$TRITON_VENV"
"$TRITON_VENV/bin/python" -m pip install -q "tritonclient[grpc,http]==2.51.0" "nvidia-cuda-runtime-cu12==12.9.79"
