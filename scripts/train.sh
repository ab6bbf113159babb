#!/usr/bin/env bash
# The main job in one command: install what is missing (scripts/install.sh), then train the built-in
# default project into ./bundle. Arguments go to `toolchain train` (e.g. --config F, --out DIR,
# --data-dir D, --epochs N).
#
#   bash scripts/train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# No --data-dir and no $TOOLCHAIN_DATA_DIR: use the MNIST copy beside the checkout when there is one
# (the same place the tests look), else the user cache, which downloads on first use.
if [ -z "${TOOLCHAIN_DATA_DIR:-}" ] && [ -d ../shared/datasets/mnist ]; then
  export TOOLCHAIN_DATA_DIR="$PWD/../shared/datasets"
fi
exec .venv/bin/toolchain train "$@"
