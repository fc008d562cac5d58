#!/usr/bin/env bash
# Runs ruff, mypy and the whole test suite. The browser test needs Debian's chromium + chromium-driver:
# installed here when missing and this user may install packages.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null
    else
        echo "test.sh: the browser test needs chromium and chromedriver: sudo apt-get install chromium chromium-driver" >&2
        exit 1
    fi
fi
# lint, format and types first: CI fails on them (configuration in pyproject.toml)
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy
# two workers, a test file each at a time (a file shares its fixtures): 8 min -> 5 min on 2 cores
# --no-loadscope-reorder: files go out in collection order (tests/conftest.py puts the longest first);
# xdist would otherwise send the files with the most tests first and leave the few long ones last
exec .venv/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=15 "$@"
