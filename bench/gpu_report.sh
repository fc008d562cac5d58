#!/usr/bin/env bash
# The GPU run as one command (see bench/gpu_report.py): installs what the machine lacks from the
# wheel kit .devkit/ (../shared/tools/gpu-kit.sh), writes its slides, runs every throughput bench
# in one process tree and writes one markdown table.
#
#   bash bench/gpu_report.sh            # GPU machine, under 8 minutes
#   bash bench/gpu_report.sh --cpu      # tiny sizes on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
# the project's virtual environment where there is one (a clone), else the machine's python3
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=$(command -v python3); fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" bench/gpu_report.py "$@"
