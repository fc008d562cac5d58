"""Which names the project's code defines, read statically (no import: training and cluster need
fastai and Ray), so that docstrings and docs can be checked for names that do not exist."""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePath

from tests.conftest import REPO_ROOT

PROJECT_PACKAGES = ("pcam_scan", "cluster", "training")
BACKTICKED_NAME = re.compile(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(\(\))?`")
PROJECT_DOTTED_NAME = re.compile(r"(?<![\w./-])((?:pcam_scan|cluster|training)(?:\.[A-Za-z_]\w*)+)")
FILE_SUFFIXES = frozenset({"py", "csv", "json", "tif", "tiff", "xml", "md", "zarr", "png", "yaml", "toml", "html"})
PROJECT_PATH = re.compile(r"(?<![\w./-])((?:pcam_scan|cluster|training|tests|bench|deploy|docs)/[\w./-]*[\w/])")


@dataclass
class ModuleNames:
    """Top-level names of one module: what each is bound to, and the attributes of its classes."""

    path: Path
    top: dict[str, ast.AST] = field(default_factory=dict)
    imports: dict[str, str] = field(default_factory=dict)  # local name -> absolute dotted target
    class_attrs: dict[str, set[str]] = field(default_factory=dict)
    class_bases: dict[str, list[str]] = field(default_factory=dict)  # base names as written
    all_defs: set[str] = field(default_factory=set)  # every function or class name, at any depth


def module_file(dotted: str, root: Path = REPO_ROOT) -> Path | None:
    """The file of module or package `dotted` (a.b.c), or None."""
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _assigned_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for element in target.elts for n in _assigned_names(element)]
    return []


def _class_attrs(node: ast.ClassDef) -> set[str]:
    attrs: set[str] = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            attrs.add(item.name)
        elif isinstance(item, ast.Assign):
            attrs.update(n for t in item.targets for n in _assigned_names(t))
        elif isinstance(item, ast.AnnAssign):
            attrs.update(_assigned_names(item.target))
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Assign, ast.AnnAssign)):
            targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
            attrs.update(
                t.attr
                for t in targets
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
            )
    return attrs


@cache
def module_names(dotted: str) -> ModuleNames | None:
    path = module_file(dotted)
    if path is None:
        return None
    tree = ast.parse(path.read_text(), filename=str(path))
    names = ModuleNames(path)
    package = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.top[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.top.update((n, node) for t in targets for n in _assigned_names(t))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names.imports[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{parent}.{source}" if source else parent
            for alias in node.names:
                names.imports[alias.asname or alias.name] = f"{source}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            names.class_attrs[node.name] = _class_attrs(node)
            names.class_bases[node.name] = [ast.unparse(base) for base in node.bases]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.all_defs.add(node.name)
    return names


def resolves(dotted: str, depth: int = 0) -> bool:
    """Whether absolute `dotted` (a module, or a module followed by attributes) exists."""
    parts = dotted.split(".")
    if parts[0] not in PROJECT_PACKAGES:
        return True  # another library's name: not ours to check
    for split in range(len(parts), 0, -1):
        module = ".".join(parts[:split])
        if module_file(module) is not None:
            return _attrs_exist(module, parts[split:], depth)
    return False


def _attrs_exist(module: str, attrs: list[str], depth: int) -> bool:
    if not attrs:
        return True
    names = module_names(module)
    assert names is not None
    first, rest = attrs[0], attrs[1:]
    if first in names.imports:
        return depth > 5 or resolves(".".join([names.imports[first], *rest]), depth + 1)
    if first not in names.top:
        return False
    node = names.top[first]
    if not rest or not isinstance(node, ast.ClassDef):
        return True  # an attribute of a function or a value: not checked
    return _class_has(module, first, rest[0], depth)


def _class_has(module: str, class_name: str, attr: str, depth: int) -> bool:
    """Whether the class defines `attr`, itself or through a base class of this project (an
    attribute may come from another library's base class: then it is not checked)."""
    names = module_names(module)
    assert names is not None
    if attr in names.class_attrs[class_name]:
        return True
    for base in names.class_bases[class_name]:
        head = base.split("[")[0].split(".")[0]
        target = names.imports.get(head, f"{module}.{head}" if head in names.top else head)
        if target.split(".")[0] not in PROJECT_PACKAGES:
            return True
        if depth < 5 and resolves(f"{target}{base.split('[')[0][len(head) :]}.{attr}", depth + 1):
            return True
    return False


def _module_of(path: Path) -> str:
    relative = path.relative_to(REPO_ROOT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def dangling_docstring_names(path: Path) -> list[str]:
    """Code names and project paths in the docstrings of `path` that name nothing that exists.

    Checked: `pkg.module.name` of this project (backticked or not) and `pkg/folder/file.py` paths;
    backticked `module.name` where `module` is a module of the same package, a name of this module
    or one it imports; `Class.attribute`; `function()`; in a package's docstring, the modules it
    lists as "`name` (its job)". Attributes of a documented function's
    arguments (`settings.x`), other libraries' names (`np.interp`) and file names are left alone.
    """
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    own = module_names(module)
    assert own is not None
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node) or ""
        arguments = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)} if hasattr(node, "args") else set()
        where = f"{path.relative_to(REPO_ROOT)}:{getattr(node, 'lineno', 1)}"
        for match in BACKTICKED_NAME.finditer(doc):
            name, called = match.group(1), bool(match.group(2))
            if name.split(".")[0] in arguments:
                continue
            if not _docstring_name_exists(name, called, module, package, own):
                found.append(f"{where}: {match.group(0)}")
        found.extend(f"{where}: {name}" for name in dangling_project_references(doc))
        if isinstance(node, ast.Module) and path.name == "__init__.py":
            found.extend(f"{where}: `{name}`" for name in absent_listed_modules(doc, package, own))
    return found


def absent_listed_modules(doc: str, package: str, own: ModuleNames) -> list[str]:
    """A package's docstring lists its modules as "`name` (what it does)": each must exist."""
    listed = re.findall(r"`([a-z_]\w*)` \(", doc)
    return [
        name
        for name in listed
        if module_file(f"{package}.{name}") is None and name not in own.top and name not in own.imports
    ]


def dangling_project_references(text: str) -> list[str]:
    """`pcam_scan.x.y` names and `pcam_scan/x/y.py` paths in `text` that do not exist."""
    names = [m.group(1) for m in PROJECT_DOTTED_NAME.finditer(text)]
    missing = [n for n in names if not _is_file_name(n) and not resolves(n)]
    paths = [m.group(1) for m in PROJECT_PATH.finditer(text)]
    # a folder path outside pcam_scan/ may be data (Camelyon16's `training/tumor`): only files count
    checked = [p for p in paths if p.startswith("pcam_scan/") or PurePath(p).suffix]
    return missing + [p for p in checked if not (REPO_ROOT / p).exists()]


def _is_file_name(dotted: str) -> bool:
    return dotted.rpartition(".")[2] in FILE_SUFFIXES


def _docstring_name_exists(name: str, called: bool, module: str, package: str, own: ModuleNames) -> bool:
    parts = name.split(".")
    if _is_file_name(name):
        return True
    first = parts[0]
    if len(parts) == 1:
        if not called:
            return True  # a bare word in backticks: a variable, option or value
        return first in own.all_defs or first in own.top or first in own.imports or hasattr(builtins, first)
    if first in PROJECT_PACKAGES:
        return resolves(name)
    if first in own.top or first in own.imports:
        target = own.imports.get(first, f"{module}.{first}")
        return resolves(".".join([target, *parts[1:]]))
    if package and module_file(f"{package}.{first}") is not None:
        return resolves(f"{package}.{name}")
    return True  # a variable's attribute (`settings.x`) or another library: not checked


def product_modules() -> list[Path]:
    return sorted(p for folder in PROJECT_PACKAGES for p in (REPO_ROOT / folder).rglob("*.py"))
