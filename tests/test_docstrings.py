"""Docstrings and docs name only code that exists: a renamed or removed module, function or
attribute shows up here instead of misleading the next reader."""

from __future__ import annotations

from tests.code_names import (
    absent_listed_modules,
    dangling_docstring_names,
    dangling_project_references,
    module_names,
    product_modules,
)
from tests.conftest import REPO_ROOT

# Issue 11 rewrites pcam_scan/scan/ and fixes this docstring there; drop the entry once merged.
OWNED_ELSEWHERE: set[str] = set()

DOCS = ("README.md", "docs", "training/README.md", "deploy/README.md")


def test_docstrings_name_only_what_exists() -> None:
    found = [line for path in product_modules() for line in dangling_docstring_names(path)]
    assert [line for line in found if line not in OWNED_ELSEWHERE] == []


def test_docs_name_only_modules_and_files_that_exist() -> None:
    pages = []
    for entry in map(REPO_ROOT.joinpath, DOCS):
        pages += sorted(entry.rglob("*.md")) if entry.is_dir() else [entry]
    assert len(pages) >= 4
    found = {str(p.relative_to(REPO_ROOT)): dangling_project_references(p.read_text()) for p in pages}
    assert {page: names for page, names in found.items() if names} == {}


def test_the_check_tells_real_names_from_absent_ones() -> None:
    text = (
        "`pcam_scan.slide.Slide.read_px_region` reads; pcam_scan.store.HeatmapStore stores; "
        "pcam_scan/viewer/tiles.py serves; Camelyon16's training/tumor is data, not ours. "
        "But pcam_scan.slide.read_everything, pcam_scan.slide.Slide.teleport and pcam_scan/scan/gone.py do not exist."
    )
    assert dangling_project_references(text) == [
        "pcam_scan.slide.read_everything",
        "pcam_scan.slide.Slide.teleport",
        "pcam_scan/scan/gone.py",
    ]


def test_a_package_docstring_lists_only_its_modules() -> None:
    doc = "Modules, one job each: `tiles` (deep zoom), `catalog` (the store's slides), `thumbnails` (gone)."
    assert absent_listed_modules(doc, "pcam_scan.viewer", module_names("pcam_scan.viewer")) == ["thumbnails"]
