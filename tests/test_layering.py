"""Dependencies point down: the entry layer (`pcam_scan/cli.py`, `pcam_scan/commands/`) ->
cluster/training -> the core (the rest of `pcam_scan`). The core never imports ray or fastai at
import time: a slide can be scanned, and `pcam-scan --help` answered, without either. Nothing
below the entry layer imports it, not even inside a function or by a module name in a string."""

from __future__ import annotations

import ast
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


IMPORT_FUNCTIONS = ("import_module", "__import__")
"""Functions that import the module their first argument names (importlib's and the builtin)."""

ENTRY_LAYER = ("pcam_scan.cli", "pcam_scan.commands")
LIBRARIES = ("pcam_scan", "cluster", "training")


def _resolved(module: str, level: int, where: tuple[str, ...]) -> str:
    """The absolute name of a module named `module` with `level` leading dots, from the file
    whose path parts (less .py) are `where`; a file's own name counts as the first dot."""
    if level == 0:
        return module
    return ".".join([*where[: len(where) - level], *([module] if module else [])])


def _import_string(call: ast.Call, where: tuple[str, ...]) -> str | None:
    """The module `import_module(NAME[, PACKAGE])` or `__import__(NAME)` names: NAME's text, or
    an f-string's literal start (`f"pcam_scan.commands.{x}"` -> `pcam_scan.commands.`); a
    relative NAME resolved against PACKAGE when PACKAGE is a string or `__package__`."""
    called = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
    if called not in IMPORT_FUNCTIONS or not call.args:
        return None
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        name = first.value
    elif isinstance(first, ast.JoinedStr):
        head = first.values[0] if first.values else None
        name = head.value if isinstance(head, ast.Constant) and isinstance(head.value, str) else ""
    else:
        return None
    dots = len(name) - len(name.lstrip("."))
    if not dots:
        return name
    keywords = [k.value for k in call.keywords if k.arg == "package"]
    package = call.args[1] if len(call.args) > 1 else next(iter(keywords), None)
    if isinstance(package, ast.Constant) and isinstance(package.value, str):
        base = tuple(package.value.split("."))
    elif isinstance(package, ast.Name) and package.id == "__package__":
        base = where[:-1]
    else:
        return name
    return _resolved(name[dots:], dots, (*base, ""))


def _imports_in(source: str, where: tuple[str, ...]) -> set[str]:
    """Every module `source` imports, at its top or inside a function, with `from X import Y`
    also as X.Y (Y may be a module), relative imports resolved, and the module named by a string
    given to `import_module(...)` or `__import__(...)` (static: nothing is run). `where`: the
    file's path parts less .py, e.g. ("pcam_scan", "render", "summary")."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _resolved(node.module or "", node.level, where)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and (name := _import_string(node, where)) is not None:
            found.add(name)
    return found


def _imported_modules(path: Path) -> set[str]:
    return _imports_in(path.read_text(), path.relative_to(REPO_ROOT).with_suffix("").parts)


def _names_a_package(module: str, packages: tuple[str, ...]) -> bool:
    """`module` is one of `packages` or inside one (an f-string's `pcam_scan.commands.` too)."""
    return any(module == p or module.startswith(p + ".") for p in packages)


def _is_entry_layer(path: Path) -> bool:
    parts = path.relative_to(REPO_ROOT).parts
    return parts[:2] == ("pcam_scan", "commands") or parts == ("pcam_scan", "cli.py")


def _entry_layer_imports_below_it() -> set[str]:
    return {
        f"{path.relative_to(REPO_ROOT)}: {module}"
        for package in LIBRARIES
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if not _is_entry_layer(path)
        for module in _imported_modules(path)
        if _names_a_package(module, ENTRY_LAYER)
    }


def test_nothing_below_the_entry_layer_imports_the_cli_or_a_command() -> None:
    """The library (`pcam_scan` less its entry layer, `cluster`, `training`) never imports
    `pcam_scan.cli` or `pcam_scan.commands`: not at its top, not inside a function, not by a
    module name given to import_module or __import__. The CLI's own dynamic import is seen."""
    assert _entry_layer_imports_below_it() == set()
    assert "pcam_scan.commands." in _imported_modules(REPO_ROOT / "pcam_scan" / "cli.py")


def test_the_import_check_sees_every_way_of_importing_the_entry_layer() -> None:
    where = ("pcam_scan", "render", "planted")
    planted = {
        "import pcam_scan.cli": "pcam_scan.cli",
        "from pcam_scan import cli": "pcam_scan.cli",
        "from pcam_scan.commands.scan import run": "pcam_scan.commands.scan",
        "from .. import commands": "pcam_scan.commands",
        "from ..commands import demo": "pcam_scan.commands",
        "def f():\n    from pcam_scan.cli import main": "pcam_scan.cli",
        "import importlib\nimportlib.import_module('pcam_scan.commands.train')": "pcam_scan.commands.train",
        "from importlib import import_module\nimport_module(f'pcam_scan.commands.{x}')": "pcam_scan.commands.",
        "import_module('..cli', __package__)": "pcam_scan.cli",
        "import_module('.commands', package='pcam_scan')": "pcam_scan.commands",
        "__import__('pcam_scan.cli')": "pcam_scan.cli",
    }
    for source, module in planted.items():
        found = _imports_in(source, where)
        assert module in found, (source, found)
        assert any(_names_a_package(m, ENTRY_LAYER) for m in found), source
    assert not any(_names_a_package(m, ENTRY_LAYER) for m in _imports_in("import pcam_scan.cli_tools", where))


def test_the_core_never_imports_cluster_or_training_outside_the_command_line_entry_points() -> None:
    """Dependencies point down: commands -> cluster/training -> core. Only the entry layer
    (which chooses in-process or Ray) may name the packages above the core."""
    core = REPO_ROOT / "pcam_scan"
    offenders = {
        f"{path.relative_to(REPO_ROOT)}: {module}"
        for path in core.rglob("*.py")
        if not _is_entry_layer(path)
        for module in _imported_modules(path)
        if _names_a_package(module, ("cluster", "training"))
    }
    assert offenders == set()
    # the check can fail: an entry point does import cluster, and it is seen
    assert any(m.startswith("cluster") for m in _imported_modules(core / "commands" / "scan.py"))
