#!/usr/bin/env bash
# Installs pcam-scan into .venv (with the training and test extras) and the viewer's
# OpenSeadragon from the npm registry. The README, CI and the container image all use this.
# `bash install.sh --check-node` only makes sure Node.js and npm are there (the tests run it).
set -euo pipefail
cd "$(dirname "$0")"

# npm fetches the viewer's OpenSeadragon: Debian's nodejs and npm are installed when missing and
# this user may install packages (root, apt-get), as test.sh does for Chromium; else one line
# says what to install, before pip spends minutes on an install that would stop at npm.
ensure_node() {
    if command -v node >/dev/null && command -v npm >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -q >/dev/null && apt-get install -y -q nodejs npm >/dev/null
    else
        echo "install.sh: the viewer needs Node.js and npm: sudo apt-get install nodejs npm (or see nodejs.org)" >&2
        exit 1
    fi
}

case "${1:-}" in
    --check-node) ensure_node; exit 0 ;;
    "") ;;
    *) echo "usage: bash install.sh [--check-node]" >&2; exit 2 ;;
esac
ensure_node
python3 -m venv .venv
.venv/bin/pip install -q -e '.[train,dev]'
npm ci --prefix pcam_scan/viewer/web --no-audit --no-fund --loglevel=error
