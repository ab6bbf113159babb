#!/usr/bin/env bash
# The tests in one command: install what is missing (scripts/install.sh), then run the whole test
# suite (about 4 minutes on 2 cores). Arguments go to pytest (e.g. -q, -x, tests/test_config.py).
# .ci/run runs exactly this.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest "$@"
