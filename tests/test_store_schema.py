"""One store schema: `pcam_scan/store/schema.py` declares every attribute, is the only module that
spells their keys, and docs/store.md lists them all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pcam_scan.store.schema import (
    ATTRIBUTES,
    ATTRS_KEY,
    FORMAT_VERSION,
    S_COUNTS,
    AttrSpec,
    Node,
    attributes_markdown,
)
from tests.conftest import REPO_ROOT

SCHEMA = REPO_ROOT / "pcam_scan" / "store" / "schema.py"
SOURCE_ROOTS = ("pcam_scan", "cluster", "training", "bench")
DOC = REPO_ROOT / "docs" / "store.md"

# Top-level keys, and the count names the store computes. Other fields (`path`, `levels`,
# `rows`...) are words every JSON document uses; the typed records keep them in schema.py anyway.
FLAGGED = {spec.key for spec in ATTRIBUTES if spec.parent is None or spec.parent is S_COUNTS} | {ATTRS_KEY}

# Documents of other formats whose names happen to equal a store key: (file, key): why.
OTHER_FORMATS: dict[tuple[str, str], str] = {
    ("pcam_scan/viewer/catalog.py", "model_id"): "the viewer's slide JSON (HTTP API), built from StoredSlide",
    ("pcam_scan/viewer/catalog.py", "settings_hash"): "the viewer's slide JSON",
    ("pcam_scan/viewer/catalog.py", "status"): "the viewer's slide JSON",
    ("pcam_scan/viewer/catalog.py", "counts"): "the viewer's slide JSON",
    ("pcam_scan/viewer/app.py", "status"): "an ASGI message",
    ("pcam_scan/diagnosis/batch.py", "status"): "a diagnoses.csv column",
    ("pcam_scan/qc/report.py", "status"): "a qc.csv column",
    ("pcam_scan/qc/report.py", "tissue_mm2"): "a qc.csv column",
    ("pcam_scan/scan/runner.py", "settings"): "the scan request JSON a Ray job carries",
    ("pcam_scan/scan/settings.py", "block_cells"): "the settings document (free-form inside `settings`)",
    ("cluster/pipeline.py", "slide"): "a Ray Data batch column",
    ("cluster/stages.py", "slide"): "a Ray Data batch column",
}


def key_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, string) of every string constant used as a key: a subscript index, a dict literal
    key, the first argument of .get/.pop/.setdefault, a keyword of dict()/.update(), or the left
    side of `in`/`not in`."""
    found: list[tuple[int, str]] = []

    def constant(node: ast.AST | None) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))

    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            constant(node.slice)
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                constant(key)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if isinstance(func, ast.Attribute) and name in ("get", "pop", "setdefault") and node.args:
                constant(node.args[0])
            if name in ("dict", "update"):
                found.extend((node.lineno, kw.arg) for kw in node.keywords if kw.arg is not None)
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            constant(node.left)
    return found


def touches_the_store(tree: ast.AST) -> bool:
    """Whether a module imports the store or zarr: one that does not cannot reach an attribute,
    so its `seconds` or `settings` keys are another document's (a bench report, a training log)."""
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        if any(name == "zarr" or name.startswith(("zarr.", "pcam_scan.store")) for name in names):
            return True
    return False


def spelled_keys(source: str, relative: str) -> list[str]:
    tree = ast.parse(source, filename=relative)
    if not touches_the_store(tree):
        return []
    return [
        f"{relative}:{line}: {key!r}"
        for line, key in key_uses(tree)
        if key in FLAGGED and (relative, key) not in OTHER_FORMATS
    ]


def source_files() -> list[Path]:
    return sorted(p for root in SOURCE_ROOTS for p in (REPO_ROOT / root).rglob("*.py") if p != SCHEMA)


def test_no_module_but_the_schema_spells_a_store_attribute_key() -> None:
    offenders = [
        hit for path in source_files() for hit in spelled_keys(path.read_text(), path.relative_to(REPO_ROOT).as_posix())
    ]
    assert offenders == [], "spell store attribute keys only in pcam_scan/store/schema.py:\n" + "\n".join(offenders)


def test_the_other_formats_allowed_still_spell_their_names() -> None:
    """Each exception is still needed: its file still uses that name as a key."""
    for relative, key in OTHER_FORMATS:
        path = REPO_ROOT / relative
        assert key in {k for _, k in key_uses(ast.parse(path.read_text()))}, (relative, key)


@pytest.mark.parametrize(
    "planted",
    [
        'attrs["planned_blocks"]',
        'x = {"settings_hash": 1}',
        'attrs.get("block_grid", [])',
        'attrs.setdefault("counts", {})',
        "updates.update(model_id=1)",
        'ok = "grid" in attrs',
        'counts.get("tissue_mm2")',
    ],
)
def test_the_check_sees_a_planted_key(planted: str) -> None:
    assert spelled_keys(f"from pcam_scan.store import HeatmapStore\n{planted}\n", "pcam_scan/x.py") != []
    assert spelled_keys(f"import zarr\n{planted}\n", "bench/x.py") != []
    assert spelled_keys(f"{planted}\n", "bench/x.py") == []  # a module that never opens a store
    # also in a file allowed another format's names, for the keys it is not allowed
    catalog = REPO_ROOT / "pcam_scan" / "viewer" / "catalog.py"
    assert spelled_keys(f"{catalog.read_text()}\n{planted}\n", "pcam_scan/viewer/catalog.py") != [] or any(
        key in planted for _, key in OTHER_FORMATS
    )


def test_the_check_ignores_keys_that_are_not_used_as_keys() -> None:
    tree = ast.parse('print("status")\nCOLUMNS = ("status", "message")\nx = f"{a}grid"\n')
    assert [key for _, key in key_uses(tree) if key in FLAGGED] == []


def test_the_schema_table_is_complete_and_consistent() -> None:
    assert len({(spec.node, spec.path) for spec in ATTRIBUTES}) == len(ATTRIBUTES)
    for spec in ATTRIBUTES:
        assert isinstance(spec, AttrSpec)
        assert 1 <= spec.since_version <= FORMAT_VERSION, spec
        assert spec.type and spec.meaning, spec
        assert spec.parent is None or spec.parent.node is spec.node, spec
    tops = {(spec.node, spec.key) for spec in ATTRIBUTES if spec.parent is None}
    assert {key for node, key in tops if node is Node.ROOT} == {
        "format",
        "format_version",
        "model_id",
        "settings_hash",
        "settings",
        "versions",
        "model_calibration",
    }


def test_the_committed_store_holds_exactly_the_declared_attributes() -> None:
    """Every key the version-1 store was written with is declared, and every key declared since
    version 1 is there (the fixture's slide is complete and diagnosed, so it has them all; QC's,
    since version 2, it cannot have)."""
    import json

    store = REPO_ROOT / "tests" / "data" / "store-v1" / "store"
    written: set[tuple[Node, str]] = set()

    def walk(node: Node, prefix: str, value: object, depth: int) -> None:
        if not isinstance(value, dict) or depth == 0:
            return
        for key, child in value.items():
            written.add((node, prefix + key))
            walk(node, f"{prefix}{key}.", child, depth - 1)

    depth = {Node.ROOT: 1, Node.SLIDE: 3}
    for node, path in ((Node.ROOT, store / "zarr.json"), (Node.SLIDE, store / "tumor_001" / "zarr.json")):
        walk(node, "", json.loads(path.read_text())["attributes"][ATTRS_KEY], depth[node])
    written.add(
        (Node.PROB, next(iter(json.loads((store / "tumor_001" / "prob" / "zarr.json").read_text())["attributes"])))
    )
    free_form = {"counts", "seconds", "diagnosis", "settings", "versions"}  # their own names inside
    declared = {(spec.node, spec.path) for spec in ATTRIBUTES if spec.since_version == 1}  # the fixture's version
    written_declarable = {(n, p) for n, p in written if p.split(".")[0] not in free_form or "." not in p}
    computed_counts = {(spec.node, spec.path) for spec in ATTRIBUTES if spec.parent is S_COUNTS}
    assert written_declarable == declared - computed_counts
    assert computed_counts <= written


def test_docs_store_md_holds_the_schema_table_as_generated() -> None:
    """docs/store.md carries `attributes_markdown()` verbatim: every attribute, its type, meaning
    and since-version. Regenerate it with
    `python -c "from pcam_scan.store.schema import attributes_markdown as m; print(m())"`."""
    table = attributes_markdown()
    assert table in DOC.read_text()
    for spec in ATTRIBUTES:
        assert f"| `{spec.path}` | {spec.type} | {spec.since_version} |" in table
