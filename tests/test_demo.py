"""The newcomer's demo, quick mode: every step really runs (synth, train, Ray scan, diagnose,
evaluate, render), and the trained model's heatmaps light up on the annotated lesions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pcam_scan.annotations import read_annotations
from pcam_scan.annotations.rasterize import rasterize_annotations
from pcam_scan.cli import main
from pcam_scan.commands.demo import DemoPaths
from pcam_scan.store import HeatmapStore


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoPaths:
    out = tmp_path_factory.mktemp("demo") / "run"
    # what a demo interrupted in its first step leaves: it must start again, not stop at synth
    assert (
        main(
            [
                "synth",
                str(DemoPaths(out.resolve()).train),
                "--tumor",
                "1",
                "--normal",
                "0",
                "--width",
                "2048",
                "--height",
                "2048",
                "--mpp",
                "0.5",
            ]
        )
        == 0
    )
    assert main(["demo", "--out", str(out), "--quick", "--num-cpus", "2"]) == 0
    return DemoPaths(out)


def test_demo_writes_every_artefact_and_computes_the_metrics(demo: DemoPaths) -> None:
    paths = demo
    assert paths.model.is_file() and (paths.root / "model_report" / "metrics.json").is_file()
    store = HeatmapStore.open(str(paths.store))
    slides = sorted(store.list_slides())
    assert slides == ["normal_001", "tumor_001", "tumor_002"]
    rows = paths.diagnoses.read_text().splitlines()
    assert len(rows) == 1 + len(slides)
    metrics = json.loads((paths.evaluation / "metrics.json").read_text())
    assert 0.0 <= metrics["slide_level"]["auc"] <= 1.0
    assert 0.0 <= metrics["lesion_level"]["froc_score"] <= 1.0
    for png in ("roc.png", "froc.png"):
        assert (paths.evaluation / png).stat().st_size > 1000
    assert {p.name for p in paths.renders.glob("*.png")} >= {f"{s}.png" for s in slides} | {"contact_sheet.png"}


def test_demo_model_separates_tumour_slides_from_normal(demo: DemoPaths) -> None:
    paths = demo
    metrics = json.loads((paths.evaluation / "metrics.json").read_text())
    assert metrics["slide_level"]["auc"] == 1.0
    diagnoses = {row.split(",")[0]: row for row in paths.diagnoses.read_text().splitlines()[1:]}
    assert ",positive," in diagnoses["tumor_001"] and ",negative," in diagnoses["normal_001"]


def test_heatmaps_light_up_on_the_annotated_lesions(demo: DemoPaths) -> None:
    paths = demo
    store = HeatmapStore.open(str(paths.store))
    for slide_id in ("tumor_001", "tumor_002"):
        grid = store.read_grid(slide_id)
        prob, tissue = store.read_prob(slide_id), store.read_tissue(slide_id)
        annotations = read_annotations(paths.test / "annotations" / f"{slide_id}.xml")
        cell_l0 = grid.geometry.cell_px * grid.l0_per_px
        truth = rasterize_annotations(annotations, cell_l0, grid.shape)  # cell centre in a lesion
        scored = tissue & np.isfinite(prob)
        assert truth[scored].sum() >= 4
        assert roc_auc_score(truth[scored], prob[scored]) > 0.95
        assert np.median(prob[truth & scored]) > 0.5 > np.median(prob[~truth & scored])
