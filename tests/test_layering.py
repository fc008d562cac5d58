"""The core never imports ray or fastai at import time: a slide can be scanned, and `pcam-scan
--help` answered, without either."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function (static: nothing is run)."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_core_never_imports_cluster_or_training_outside_the_command_line_entry_points() -> None:
    """Dependencies point down: commands -> cluster/training -> core. Only `pcam_scan/commands/`
    (the entry points, which choose in-process or Ray) may name the packages above the core."""
    core = REPO_ROOT / "pcam_scan"
    offenders = {
        f"{path.relative_to(REPO_ROOT)}: {module}"
        for path in core.rglob("*.py")
        if "commands" not in path.relative_to(core).parts
        for module in _imported_modules(path)
        if module.split(".")[0] in ("cluster", "training")
    }
    assert offenders == set()
    # the check can fail: an entry point does import cluster, and it is seen
    assert any(m.startswith("cluster") for m in _imported_modules(core / "commands" / "scan.py"))
