"""docs/architecture.md stays true: every module, name, path and link it gives exists, and it
answers each "where do I change ..." question with a place."""

from __future__ import annotations

import re

from tests.code_names import PROJECT_PACKAGES, resolves
from tests.conftest import REPO_ROOT

DOC = REPO_ROOT / "docs" / "architecture.md"
CONCERNS = (
    "how patches are read",
    "the model",
    "the store layout",
    "the Ray topology",
    "the diagnosis rule",
    "the viewer",
)


def _backticked() -> list[str]:
    return re.findall(r"`([^`\s]+)`", DOC.read_text())


def test_every_path_it_names_exists() -> None:
    paths = [t for t in _backticked() if "/" in t and not t.startswith("../")]
    assert len(paths) > 30
    assert [p for p in paths if not (REPO_ROOT / p).exists()] == []


def test_every_code_name_it_gives_exists() -> None:
    names = [t for t in _backticked() if re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", t)]
    project = [n for n in names if n.split(".")[0] in PROJECT_PACKAGES]
    assert len(project) > 15
    assert [n for n in project if not resolves(n)] == []


def test_its_links_lead_somewhere() -> None:
    links = re.findall(r"\]\(([^)#]+)\)", DOC.read_text())
    assert links and [link for link in links if not (DOC.parent / link).exists()] == []


def test_each_question_has_a_place() -> None:
    rows = {
        cells[0]: cells[1]
        for line in DOC.read_text().split("## Where to change", 1)[1].splitlines()
        if line.startswith("| ") and (cells := [c.strip() for c in line.strip("|").split("|")])
    }
    for concern in CONCERNS:
        place = re.search(r"`([^`]+/[^`]*)`", rows.get(concern, ""))
        assert place and (REPO_ROOT / place.group(1)).exists(), concern


def test_the_readme_links_it() -> None:
    assert "(docs/architecture.md)" in (REPO_ROOT / "README.md").read_text()
