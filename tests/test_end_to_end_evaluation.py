"""`pcam-scan evaluate STORE ...` end to end: a real heatmap store over synthetic Camelyon16-like
slides (tests/store_cases.py) against their own ground truth. Near-perfect heatmaps score AUC 1
and find every lesion without a false positive; degraded heatmaps score lower; the store mode
and the file mode agree on the same artefacts; bad inputs are one line and exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pcam_scan.cli import main
from pcam_scan.diagnosis import DefaultRule, load_aggregator
from pcam_scan.diagnosis.record import diagnose_stored_slide
from pcam_scan.evaluation import read_detections, read_slide_probabilities
from pcam_scan.store import HeatmapStore, SlideRecord
from tests.store_cases import RUN, Case, build_store, write_dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Case]]:
    root = tmp_path_factory.mktemp("synth")
    return root, write_dataset(root)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, dataset) -> dict[str, Path]:
    """Stores never written to by the tests: near-perfect and degraded heatmaps."""
    folder = tmp_path_factory.mktemp("stores")
    paths = {}
    for kind in ("near_perfect", "degraded"):
        paths[kind] = folder / f"{kind}.zarr"
        build_store(paths[kind], dataset[1], kind)
    return paths


def evaluate_argv(store: Path | str, root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        str(store),
        "--reference",
        str(root / "reference.csv"),
        "--annotations",
        str(root / "annotations"),
        "--out",
        str(out),
        "--bootstrap",
        "200",
        *extra,
    ]


def run_evaluate(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    code = main(argv)
    assert code == 0, capsys.readouterr().err
    out = Path(argv[argv.index("--out") + 1])
    return json.loads((out / "metrics.json").read_text())


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("pcam-scan: error: ") and err.count("\n") == 1, err
    return err


def lesions_to_find(case: Case) -> int:
    """Non-ITC lesions: the synthetic ITC (< 200 um) stay below 275 um after the 75 um growth,
    and lesions are placed at least 150 um apart, so none merge."""
    return sum(lesion.category != "itc" for lesion in case.plan.lesions)


def test_near_perfect_heatmaps_score_auc_1_and_find_every_lesion(tmp_path: Path, stores, dataset, capsys) -> None:
    root, cases = dataset
    out = tmp_path / "eval"
    metrics = run_evaluate(evaluate_argv(stores["near_perfect"], root, out), capsys)
    assert metrics["slide_level"]["auc"] == 1.0
    assert metrics["slide_level"]["ci_low"] == 1.0
    assert metrics["lesion_level"]["froc_score"] == 1.0
    assert metrics["lesion_level"]["n_lesions"] == sum(lesions_to_find(c) for c in cases)
    by_name = {s["name"]: s for s in metrics["slides"]}
    for case in cases:
        slide = by_name[case.name]
        assert slide["n_false_positives"] == 0
        assert slide["n_lesions_detected"] == slide["n_lesions"] == lesions_to_find(case)
        if case.is_tumour:  # each slide's own MPP, from the store's grid
            assert slide["mpp_um_px"] == case.plan.spec.mpp_um_px
    assert metrics["protocol"]["mpp_source"] == "each slide's own (heatmap store)"
    inputs = metrics["inputs"]
    assert inputs["source"] == "heatmap store"
    assert inputs["slide_ids"] == {c.name: c.slide_id for c in cases}
    assert inputs["probability_method"] == DefaultRule().name
    assert inputs["probabilities_computed"] == len(cases)  # nothing diagnosed in the store yet
    # the challenge artefacts, under the reference's names
    probabilities = read_slide_probabilities(out / "slide_probabilities.csv")
    assert sorted(probabilities) == sorted(c.name for c in cases)
    for case in cases:
        table = read_detections(out / "detections" / f"{case.name}.csv")
        assert (len(table) > 0) == case.is_tumour
        assert all(0 <= x < case.grid.l0_width for x in table.l0_x)
        assert all(0 <= y < case.grid.l0_height for y in table.l0_y)
    for png in ("roc.png", "froc.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert "slide AUC 1.0000" in capsys.readouterr().out


def test_cells_are_scored_against_the_ground_truth_for_calibration(tmp_path: Path, stores, dataset, capsys) -> None:
    """Every tissue cell of every reference slide, labelled by the annotations under the grid's
    label rule (centre-majority here: tumour over half the cell), gives the cell Brier score; the
    degraded heatmaps (tumour at 55%, false lesions) are worse calibrated than the near-perfect."""
    root, cases = dataset
    figures = {}
    for kind in ("near_perfect", "degraded"):
        metrics = run_evaluate(evaluate_argv(stores[kind], root, tmp_path / kind), capsys)
        figures[kind] = metrics["cell_calibration"]
        assert (tmp_path / kind / "reliability_cells.png").read_bytes()[:8] == PNG_MAGIC
        assert "cell calibration: Brier" in capsys.readouterr().out
        store = HeatmapStore.open(str(stores[kind]))
        probs, labels = [], []
        for case in cases:
            tissue = store.read_tissue(case.slide_id)
            probs.append(store.read_prob(case.slide_id)[tissue])
            labels.append((case.tumour_fraction > 0.5)[tissue] if case.is_tumour else np.zeros(int(tissue.sum())))
        p, y = np.concatenate(probs).astype(np.float64), np.concatenate(labels).astype(np.float64)
        cells = figures[kind]
        assert (cells["n"], cells["n_positive"], cells["n_excluded_cells"]) == (len(p), int(y.sum()), 0)
        assert cells["brier"]["value"] == pytest.approx(float(np.mean((p - y) ** 2)), rel=1e-9)
        assert cells["brier"]["ci_low"] <= cells["brier"]["value"] <= cells["brier"]["ci_high"]
        for figure in ("ece_equal_width", "ece_equal_mass"):  # biased upwards: its interval may lie above it
            assert 0 <= cells[figure]["ci_low"] <= cells[figure]["ci_high"]
    assert figures["near_perfect"]["ece_equal_width"]["value"] < figures["degraded"]["ece_equal_width"]["value"]
    assert figures["near_perfect"]["brier"]["value"] < figures["degraded"]["brier"]["value"]


def test_qc_excluded_and_off_tissue_cells_are_not_scored() -> None:
    from pcam_scan.evaluation.cell_calibration import cell_share, sample_cells
    from pcam_scan.geometry import CellGrid, PatchGeometry

    grid = CellGrid(3200, 3200, 0.243, 0.972, PatchGeometry())
    prob = np.full(grid.shape, 0.2, np.float32)
    tissue = np.zeros(grid.shape, bool)
    tissue[:10, :10] = True
    prob[0, :4] = np.nan  # QC's excluded cells read as not predicted
    prob[20, 20] = 0.9  # off tissue
    sample = sample_cells(prob, tissue, grid, 1.0, seed=0)
    assert (sample.n_tissue, sample.n_excluded, len(sample.prob)) == (100, 4, 96)
    assert np.all(sample.prob == np.float32(0.2)) and not np.any(sample.cell_rc[:, 0] >= 10)
    assert cell_share(10, 100) == 1.0 and cell_share(400, 100) == 0.25
    drawn = sample_cells(prob, tissue, grid, 0.25, seed=0)
    assert 0 < len(drawn.prob) < 96
    assert np.array_equal(drawn.cell_rc, sample_cells(prob, tissue, grid, 0.25, seed=0).cell_rc)


def test_degraded_heatmaps_score_lower(tmp_path: Path, stores, dataset, capsys) -> None:
    root, cases = dataset
    metrics = run_evaluate(evaluate_argv(stores["degraded"], root, tmp_path / "eval"), capsys)
    good = run_evaluate(evaluate_argv(stores["near_perfect"], root, tmp_path / "good"), capsys)
    assert metrics["slide_level"]["auc"] < good["slide_level"]["auc"]
    assert metrics["lesion_level"]["froc_score"] < good["lesion_level"]["froc_score"]
    normal = [s for s in metrics["slides"] if not s["is_tumour"]]
    assert normal and all(s["n_false_positives"] >= 1 for s in normal)


def test_mask_tiffs_and_annotations_give_the_same_figures(tmp_path: Path, stores, dataset, capsys) -> None:
    root, _ = dataset
    store = stores["near_perfect"]
    by_xml = run_evaluate(evaluate_argv(store, root, tmp_path / "a"), capsys)
    argv = evaluate_argv(store, root, tmp_path / "b", "--masks", str(root / "masks"))
    by_mask = run_evaluate(argv, capsys)
    assert by_mask["lesion_level"] == by_xml["lesion_level"]
    assert by_mask["slides"] == by_xml["slides"]


def test_store_mode_and_file_mode_agree_on_the_same_artefacts(tmp_path: Path, stores, dataset, capsys) -> None:
    root, _ = dataset
    from_store = tmp_path / "store"
    argv = evaluate_argv(stores["degraded"], root, from_store, "--mpp", "0.243")
    store_metrics = run_evaluate(argv, capsys)
    assert store_metrics["protocol"]["mpp_source"] == "fixed 0.243 um/px (--mpp)"
    file_argv = [
        "evaluate",
        "--probabilities",
        str(from_store / "slide_probabilities.csv"),
        "--detections",
        str(from_store / "detections"),
        "--reference",
        str(root / "reference.csv"),
        "--annotations",
        str(root / "annotations"),
        "--mpp",
        "0.243",
        "--bootstrap",
        "200",
        "--out",
        str(tmp_path / "files"),
    ]
    file_metrics = run_evaluate(file_argv, capsys)
    assert file_metrics["inputs"]["source"] == "files"
    for part in ("slide_level", "lesion_level", "slides", "protocol", "slide_calibration"):
        assert file_metrics[part] == store_metrics[part]
    assert "not computed" in file_metrics["cell_calibration"]["note"]  # files hold no heatmap cells


def test_stored_diagnoses_are_used_and_never_mixed(tmp_path: Path, stores, dataset, capsys) -> None:
    root, cases = dataset
    path = tmp_path / "run.zarr"
    shutil.copytree(stores["near_perfect"], path)
    assert main(["diagnose", str(path), "--out", str(tmp_path / "d.csv")]) == 0
    capsys.readouterr()
    metrics = run_evaluate(evaluate_argv(path, root, tmp_path / "a"), capsys)
    assert metrics["inputs"]["probabilities_stored"] == len(cases)
    store = HeatmapStore.open(str(path), mode="r+")
    other = diagnose_stored_slide(store, cases[0].slide_id, DefaultRule(score="max_prob"))
    assert main(evaluate_argv(path, root, tmp_path / "b")) == 2
    err = one_line_error(capsys)
    assert "would mix methods" in err and other.method in err


def test_an_aggregator_scores_every_slide(tmp_path: Path, stores, dataset, capsys) -> None:
    root, cases = dataset
    store = stores["near_perfect"]
    agg = tmp_path / "agg.json"
    fit = ["fit-aggregator", str(store), "--reference", str(root / "reference.csv")]
    assert main([*fit, "--out", str(agg)]) == 0
    argv = evaluate_argv(store, root, tmp_path / "eval", "--aggregator", str(agg))
    metrics = run_evaluate(argv, capsys)
    assert metrics["inputs"]["probability_method"] == load_aggregator(agg).name
    assert metrics["inputs"]["probabilities_computed"] == len(cases)
    assert metrics["slide_level"]["auc"] == 1.0


def test_every_reference_slide_must_be_complete_in_the_store(tmp_path: Path, stores, dataset, capsys) -> None:
    root, cases = dataset
    reference = tmp_path / "reference.csv"
    reference.write_text((root / "reference.csv").read_text() + "Test_005,Normal,,None\n")
    argv = evaluate_argv(stores["near_perfect"], root, tmp_path / "a")
    argv[argv.index("--reference") + 1] = str(reference)
    assert main(argv) == 2
    assert "reference slides not in the store" in one_line_error(capsys)
    path = tmp_path / "run.zarr"
    shutil.copytree(stores["near_perfect"], path)
    writer = HeatmapStore.open(str(path), RUN, mode="a")
    writer.plan_slide("test_005", SlideRecord("x.tif", "fp"), cases[1].grid, cases[1].tissue, 16)
    argv[1] = str(path)
    assert main(argv) == 2
    assert "not complete" in one_line_error(capsys)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--probabilities", "p.csv"), "apply to prediction files"),
        (("--slides", "slides"), "apply to prediction files"),
        (("--mpp", "500"), "not plausible"),
        (("--detection-threshold", "1.5"), "detection threshold"),
        (("--exclude", "Test_001,Test_002,Test_003,Test_004"), "no slides to evaluate"),
    ],
)
def test_bad_evaluate_options_are_one_line(
    tmp_path: Path, stores, dataset, extra: tuple[str, ...], message: str, capsys
) -> None:
    argv = evaluate_argv(stores["near_perfect"], dataset[0], tmp_path / "a", *extra)
    assert main(argv) == 2
    assert message in one_line_error(capsys)


def test_missing_store_malformed_reference_and_no_predictions(tmp_path: Path, dataset, capsys) -> None:
    root, _ = dataset
    assert main(evaluate_argv(tmp_path / "none.zarr", root, tmp_path / "a")) == 2
    assert "no heatmap store" in one_line_error(capsys)
    bad = tmp_path / "reference.csv"
    bad.write_text("Test_001,Tumor\n")
    argv = evaluate_argv(tmp_path / "none.zarr", root, tmp_path / "a")
    argv[argv.index("--reference") + 1] = str(bad)
    assert main(argv) == 2
    assert "expected 4 fields" in one_line_error(capsys)
    no_source = [a for a in argv if a != str(tmp_path / "none.zarr")]
    assert main(no_source) == 2
    assert "give the predictions" in one_line_error(capsys)
    files_with_store_option = [*no_source, "--probabilities", "p.csv", "--detections", "d"]
    assert main([*files_with_store_option, "--sigma", "2"]) == 2
    assert "apply to a heatmap store" in one_line_error(capsys)


def test_compare_reports_the_froc_delta_against_the_masks(tmp_path: Path, stores, dataset, capsys) -> None:
    """`compare A B --reference --masks`: each run's FROC score is the one `evaluate` gives it (the
    near-perfect heatmaps find every lesion, FROC 1), and the delta is B - A."""
    root, _ = dataset
    degraded = run_evaluate(
        evaluate_argv(stores["degraded"], root, tmp_path / "eval", "--masks", str(root / "masks")), capsys
    )
    out = tmp_path / "cmp"
    argv = ["compare", str(stores["near_perfect"]), str(stores["degraded"]), "--reference", str(root / "reference.csv")]
    assert main([*argv, "--masks", str(root / "masks"), "--bootstrap", "200", "--out", str(out)]) == 0
    froc = json.loads((out / "comparison.json").read_text())["froc"]
    assert froc["a"] == 1.0
    assert froc["b"] == degraded["lesion_level"]["froc_score"] < 1.0
    assert froc["difference"] == pytest.approx(froc["b"] - froc["a"])
    assert f"FROC A 1.0000, B {froc['b']:.4f}, B - A {froc['difference']:+.4f}" in capsys.readouterr().out
    assert main([*argv, "--out", str(tmp_path / "no_truth")]) == 0  # without ground truth: no FROC
    assert "froc" not in json.loads((tmp_path / "no_truth" / "comparison.json").read_text())
