#!/usr/bin/env bash
# The GPU run as one command (see bench/gpu_report.py): installs what the machine lacks from the
# wheel kit .devkit/ (../shared/tools/gpu-kit.sh), writes its slides, runs every throughput bench
# in one process tree and writes one markdown table.
#
#   bash bench/gpu_report.sh            # GPU machine, under 8 minutes
#   bash bench/gpu_report.sh --cpu      # tiny sizes on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
if [ -x .venv/bin/python ] && [ -z "${PYTHON_FORCE:-}" ]; then PYTHON=.venv/bin/python; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" bench/gpu_report.py "$@"
