#!/usr/bin/env bash
# Installs pcam-scan into .venv (with the training and test extras) and the viewer's
# OpenSeadragon from the npm registry. The README, CI and the container image all use this.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install -q -e '.[train,dev]'
npm ci --prefix pcam_scan/viewer/web --no-audit --no-fund --loglevel=error
