"""The core never imports ray or fastai at import time: a slide can be scanned, and `pcam-scan
--help` answered, without either."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_importing_every_core_module_imports_neither_ray_nor_fastai() -> None:
    script = """
import importlib, pkgutil, sys
import pcam_scan
for module in pkgutil.walk_packages(pcam_scan.__path__, "pcam_scan."):
    importlib.import_module(module.name)
from pcam_scan.cli import build_parser
build_parser()
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "fastai", "cluster"))
print(",".join(bad))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
