"""Shared fixtures: the real-data folder and small synthetic inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ("tests.s3_server",)  # the `s3_bucket` fixture: a moto S3 server


REAL_DATA = REPO_ROOT / "tests" / "data"

LONGEST_FILES_FIRST = (
    "test_cluster.py",
    "test_hostile_processes.py",
    "test_demo.py",
    "test_scan.py",
    "test_gpu_report.py",
    "test_object_store.py",
)
"""The test files that start Ray clusters, train or run the demo (a minute or more each, by
test.sh's --durations). test.sh hands whole files to two workers in collection order
(`--no-loadscope-reorder`; xdist's default sends the files with the most tests first), so these
go first: when they came last, one worker ran them alone while the other sat idle."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collect the longest files first (see LONGEST_FILES_FIRST); the rest keep their order."""
    rank = {name: index for index, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """tests/data (or $PCAM_SCAN_REALDATA, a folder of the same layout): real slides, broken
    files, annotations; tests/data/README.md gives each file's origin and licence."""
    override = os.environ.get("PCAM_SCAN_REALDATA")
    path = Path(override) if override else REAL_DATA
    if not (path / "README.md").is_file():
        pytest.fail(f"real test data not found at {path}")
    return path


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small tumour and one small normal slide (about 1.3 x 1.1 mm at 0.486 um/px), with
    their ASAP XML, level-5 masks and reference.csv, made by the project's own generator."""
    from pcam_scan.synth import SlideSpec, SynthSpec, write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth")
    spec = SynthSpec(SlideSpec(width_px=2688, height_px=2304, mpp_um_px=0.486), 1, 1, seed=3)
    write_synthetic_dataset(out, spec)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (untrained, seeded) tiny-CNN checkpoint in the scanner's format."""
    from pcam_scan.model.random_model import write_random_checkpoint

    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    write_random_checkpoint(path, seed=0)
    return path
