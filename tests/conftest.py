"""Shared fixtures: the real-data folder and small synthetic inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def realdata() -> Path:
    """../shared/realdata (or $PCAM_SCAN_REALDATA): real slides, broken files, annotations."""
    path = Path(os.environ.get("PCAM_SCAN_REALDATA", REPO_ROOT.parent / "shared" / "realdata"))
    if not (path / "README.md").is_file():
        pytest.fail(f"real test data not found at {path}; set PCAM_SCAN_REALDATA")
    return path
