"""`pcam-scan compare`: two real stores over the same slides, B made from A by changing the
heatmaps in a known way, so the flips, |delta p| and AUC delta are known without the code."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from pcam_scan.cli import main
from pcam_scan.evaluation.compare import paired_auc_difference
from pcam_scan.evaluation.slide_auc import BootstrapSettings
from tests.scanned_store import build_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """A: the ideal heatmaps of one tumour and one normal slide. B: the tumour's halved (its
    lesion drops below 0.5: negative), every tissue cell of the normal slide at 0.95 (positive)."""
    root = tmp_path_factory.mktemp("compare")
    a, _ = build_store(root / "a", tumour_seeds=(7,), normal_seeds=(3,))
    b = root / "b.zarr"
    shutil.copytree(a, b)
    deltas = {}
    for slide, change in (
        ("tumor_001", lambda p: p * 0.5),
        ("normal_001", lambda p: np.where(np.isfinite(p), 0.95, p)),
    ):
        array = zarr.open_array(str(b / slide / "prob" / "0"), mode="r+")
        before = np.asarray(array[:])
        after = change(before).astype(np.float32)
        array[:] = after
        deltas[slide] = np.abs(after - before)[np.isfinite(before)]
    return a, b, deltas


def test_compare_reports_flips_and_heatmap_deltas(
    stores: tuple[Path, Path, dict[str, np.ndarray]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, deltas = stores
    reference = tmp_path / "reference.csv"
    reference.write_text("tumor_001,Tumor,IDC,Macro\nnormal_001,Normal,None,None\n", encoding="utf-8")
    out = tmp_path / "cmp"
    argv = ["compare", str(a), str(b), "--reference", str(reference), "--exclude", "", "--out", str(out)]
    assert main([*argv, "--bootstrap", "200"]) == 0
    rows = {r["slide_id"]: r for r in csv.DictReader((out / "comparison.csv").read_text().splitlines())}
    assert rows["tumor_001"]["flipped"] == "True" and rows["normal_001"]["flipped"] == "True"
    assert (rows["tumor_001"]["call_a"], rows["tumor_001"]["call_b"]) == ("positive", "negative")
    for slide, delta in deltas.items():
        assert float(rows[slide]["max_abs_dp"]) == pytest.approx(float(delta.max()), abs=1e-6)
        assert float(rows[slide]["mean_abs_dp"]) == pytest.approx(float(delta.mean()), abs=1e-6)
        assert int(rows[slide]["shared_cells"]) == delta.size
    assert float(rows["normal_001"]["lesions_a"]) == 0 and float(rows["normal_001"]["lesions_b"]) >= 1
    summary = json.loads((out / "comparison.json").read_text())
    assert summary["flipped"] == ["normal_001", "tumor_001"]
    # A ranks the tumour first (AUC 1), B ranks it last (AUC 0)
    assert (summary["auc"]["auc_a"], summary["auc"]["auc_b"], summary["auc"]["difference"]) == (1.0, 0.0, -1.0)
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 slides compared, 2 flipped" in capsys.readouterr().out


def test_paired_bootstrap_cancels_the_slides_own_difficulty() -> None:
    """B is A plus a constant: the ranking is the same on every resample, so the difference and
    its whole interval are 0 (an unpaired bootstrap would give a wide interval)."""
    rng = np.random.default_rng(1)
    labels = [True] * 20 + [False] * 30
    prob_a = rng.uniform(size=50)
    result = paired_auc_difference(labels, prob_a, prob_a + 0.1, BootstrapSettings(n_replicates=300))
    assert result.difference == 0 and result.ci_low == 0 and result.ci_high == 0
    assert 0.2 < result.auc_a < 0.8
