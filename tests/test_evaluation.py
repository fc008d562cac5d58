"""reference.csv, slide AUC with its bootstrap interval, challenge CSVs, mask TIFFs, real
annotations, and `pcam-scan evaluate` end to end on small generated inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from pcam_scan.annotations import read_annotations
from pcam_scan.cli import main
from pcam_scan.evaluation import (
    CAMELYON16_EXCLUDED,
    BootstrapSettings,
    DetectionTable,
    EvaluationError,
    build_evaluation_mask,
    read_detections,
    read_reference,
    read_slide_probabilities,
    read_tumour_mask_tiff,
    score_slide,
    slide_auc,
    table_from_detections,
    tumour_mask_from_annotations,
    write_challenge_artefacts,
    write_detections,
    write_slide_probabilities,
)
from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.lesions import DetectionSettings, detect_points
from tests.slide_files import write_pyramid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- reference.csv ---------------------------------------------------------------------------


def test_real_camelyon16_reference(realdata):
    path = realdata / "camelyon16" / "reference.csv"
    full = read_reference(path)
    assert len(full.entries) == 130 and full.n_tumour == 50 and full.excluded == ()
    first = full.entries[0]
    assert (first.name, first.is_tumour, first.histotype, first.size_class) == (
        "Test_001",
        True,
        "IDC",
        "macro",
    )
    sizes = [e.size_class for e in full.entries]
    assert (sizes.count("macro"), sizes.count("micro"), sizes.count("none")) == (22, 28, 80)
    kept = read_reference(path, exclude=CAMELYON16_EXCLUDED)
    assert len(kept.entries) == 128 and kept.n_tumour == 48
    assert kept.excluded == ("Test_049", "Test_114")
    assert kept.get("Test_049") is None and kept.get("Test_050") is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Test_001,Tumor,IDC\n", "expected 4 fields"),
        ("Test_001,Maybe,IDC,Macro\n", "label 'Maybe'"),
        ("Test_001,Tumor,IDC,Huge\n", "size class 'Huge'"),
        ("Test_001,Tumor,IDC,None\n", "cannot have size class"),
        ("Test_001,Normal,,Macro\n", "cannot have size class"),
        ("Test_001,Tumor,IDC,Macro\nTest_001,Normal,,None\n", "appears twice"),
        ("\n\n", "no slides"),
    ],
)
def test_bad_reference_rows_are_refused_with_their_line(tmp_path, text, message):
    path = tmp_path / "reference.csv"
    path.write_text(text)
    with pytest.raises(EvaluationError, match=message):
        read_reference(path)


def test_missing_reference_file(tmp_path):
    with pytest.raises(EvaluationError, match="no such reference file"):
        read_reference(tmp_path / "absent.csv")


# --- slide AUC ---------------------------------------------------------------------------------


def test_auc_equals_the_pair_count_by_hand():
    # tumour 0.9, 0.4, 0.7 vs normal 0.3, 0.4, 0.8: pairs won 3 + (1 + 0.5) + 2 = 6.5 of 9
    labels = [True, True, True, False, False, False]
    scores = [0.9, 0.4, 0.7, 0.3, 0.4, 0.8]
    result = slide_auc(labels, scores, BootstrapSettings(n_replicates=500, seed=1))
    assert result.auc == pytest.approx(6.5 / 9)
    assert (result.n_positive, result.n_negative) == (3, 3)
    assert result.fpr[0] == 0.0 and result.fpr[-1] == 1.0 and result.tpr[-1] == 1.0


def test_auc_agrees_with_scikit_learn_on_random_scores():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    labels = rng.random(60) < 0.4
    scores = np.round(rng.random(60) + 0.3 * labels, 2)  # rounded: ties on purpose
    result = slide_auc(labels.tolist(), scores.tolist(), BootstrapSettings(n_replicates=200))
    assert result.auc == pytest.approx(roc_auc_score(labels, scores))


def test_bootstrap_interval_holds_the_estimate_and_is_seeded():
    rng = np.random.default_rng(3)
    labels = (np.arange(40) % 2 == 0).tolist()
    scores = (rng.random(40) + 0.5 * np.array(labels)).tolist()
    a = slide_auc(labels, scores, BootstrapSettings(n_replicates=1000, seed=11))
    b = slide_auc(labels, scores, BootstrapSettings(n_replicates=1000, seed=11))
    c = slide_auc(labels, scores, BootstrapSettings(n_replicates=1000, seed=12))
    assert a.ci_low < a.auc < a.ci_high
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_auc_needs_both_classes():
    with pytest.raises(EvaluationError, match="tumour and normal"):
        slide_auc([True, True], [0.1, 0.2], BootstrapSettings(n_replicates=100))


# --- challenge CSVs ----------------------------------------------------------------------------


def test_challenge_csvs_have_no_header_and_round_trip(tmp_path):
    write_slide_probabilities(tmp_path / "slides.csv", {"Test_002": 0.25, "Test_001": 0.875})
    assert (tmp_path / "slides.csv").read_text() == "Test_001,0.875\nTest_002,0.25\n"
    assert read_slide_probabilities(tmp_path / "slides.csv") == {"Test_001": 0.875, "Test_002": 0.25}
    detections = DetectionTable.from_points([(0.5, 100.7, 200.2), (0.9, 10, 20)])
    write_detections(tmp_path / "Test_001.csv", detections)
    assert (tmp_path / "Test_001.csv").read_text() == "0.9,10,20\n0.5,100,200\n"
    back = read_detections(tmp_path / "Test_001.csv")
    assert back.confidence.tolist() == [0.9, 0.5] and back.l0_x.tolist() == [10, 100]


def test_user_files_with_a_header_are_read(tmp_path):
    (tmp_path / "p.csv").write_text("name,probability\nTest_001,0.5\n")
    (tmp_path / "d.csv").write_text("Confidence,X,Y\n0.7,12.9,30\n")
    assert read_slide_probabilities(tmp_path / "p.csv") == {"Test_001": 0.5}
    table = read_detections(tmp_path / "d.csv")
    assert (table.l0_x.tolist(), table.l0_y.tolist()) == ([12], [30])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.7,12\n", "expected Confidence,X,Y"),
        ("0.7,abc,3\n", "expected Confidence,X,Y"),
        ("0.7,-5,3\n", "negative"),
    ],
)
def test_bad_detection_rows_are_refused(tmp_path, text, message):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(EvaluationError, match=message):
        read_detections(tmp_path / "d.csv")


def test_slide_names_that_escape_the_folder_are_refused(tmp_path):
    with pytest.raises(EvaluationError, match="cannot be used as a file name"):
        write_challenge_artefacts(tmp_path, {"../x": 0.5}, {"../x": DetectionTable()})


# --- masks and real annotations ----------------------------------------------------------------


def test_mask_tiffs_single_page_pyramid_and_rgb(tmp_path):
    level5 = np.zeros((10, 20), dtype=np.uint8)
    level5[2:5, 3:9] = 255
    tifffile.imwrite(tmp_path / "single.tif", level5)
    assert np.array_equal(read_tumour_mask_tiff(tmp_path / "single.tif"), level5 > 0)
    level0 = np.kron(level5, np.ones((32, 32), dtype=np.uint8))
    with tifffile.TiffWriter(tmp_path / "pyramid.tif") as tif:
        tif.write(level0)
        tif.write(level0[::4, ::4])
        tif.write(level5)
    assert np.array_equal(read_tumour_mask_tiff(tmp_path / "pyramid.tif"), level5 > 0)
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([level5, level5 * 0, level5 * 0], axis=-1))
    assert np.array_equal(read_tumour_mask_tiff(tmp_path / "rgb.tif"), level5 > 0)
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    with pytest.raises(EvaluationError, match="cannot read the mask TIFF"):
        read_tumour_mask_tiff(tmp_path / "junk.tif")


def test_real_ncrf_lesion_is_one_lesion_and_not_itc(realdata):
    # Tumor_081: one polygon of about 1150 x 780 level-0 px (280 x 190 um); grown by 75 um its
    # major axis (about 45 level-5 px) is above the ITC threshold of 35.4 px
    annotations = read_annotations(realdata / "ncrf" / "Tumor_081.json")
    mask = build_evaluation_mask(tumour_mask_from_annotations(annotations), 0.243)
    assert (mask.n_labels, mask.n_lesions) == (1, 1)
    centre = annotations.tumour[0].l0_xy.mean(axis=0)
    hits = score_slide("Tumor_081", DetectionTable.from_points([(0.8, *centre), (0.6, 100, 100)]), mask)
    assert hits.tp_confidences.tolist() == [np.float32(0.8)]
    assert hits.fp_confidences.tolist() == [0.6]


def test_real_annotations_with_exclusions_build_a_mask(realdata):
    annotations = read_annotations(realdata / "ncrf" / "Tumor_107.json")
    assert len(annotations.tumour) == 2 and len(annotations.exclusions) == 3
    mask = build_evaluation_mask(tumour_mask_from_annotations(annotations), 0.243)
    assert mask.n_lesions >= 1
    for polygon in annotations.tumour:
        x, y = polygon.l0_xy.mean(axis=0)
        assert mask.labels_at(np.array([int(x)]), np.array([int(y)]))[0] > 0


# --- pcam-scan evaluate, end to end ------------------------------------------------------------


def build_case(root):
    """Two tumour and two normal slides at 0.243 um/px; detections from real heatmaps."""
    (root / "masks").mkdir()
    (root / "det").mkdir()
    (root / "reference.csv").write_text(
        "S1,Tumor,IDC,Macro\r\nS2,Tumor,ILC,Micro\r\nS3,Normal,,None\r\nS4,Normal,,None\r\nS5,Tumor,IDC,Macro\r\n"
    )
    grid = CellGrid(64 * 128, 32 * 128, 0.243, 0.972, PatchGeometry())  # 32 x 64 cells
    # S1: lesion at level-5 rows 40..80, cols 40..80 = cells 10..20; heatmap finds it
    mask_s1 = np.zeros((128, 256), dtype=np.uint8)
    mask_s1[40:80, 40:80] = 255
    tifffile.imwrite(root / "masks" / "S1_Mask.tif", mask_s1)
    heat_s1 = np.zeros(grid.shape, dtype=np.float32)
    heat_s1[12:18, 12:18] = 0.875
    heat_s1[25, 50] = 0.625  # a false positive far from the lesion
    # S2: lesion at cols 200..240 (cells 50..60), the heatmap misses it
    mask_s2 = np.zeros((128, 256), dtype=np.uint8)
    mask_s2[40:80, 200:240] = 255
    tifffile.imwrite(root / "masks" / "S2.tif", mask_s2)
    heat_s2 = np.zeros(grid.shape, dtype=np.float32)
    heat_s2[5, 5] = 0.75
    heat_s3 = np.zeros(grid.shape, dtype=np.float32)
    heat_s3[20, 20] = 0.8125
    heat_s4 = np.zeros(grid.shape, dtype=np.float32)
    settings = DetectionSettings(sigma_cells=0, threshold=0.5)
    heats = {"S1": heat_s1, "S2": heat_s2, "S3": heat_s3, "S4": heat_s4}
    for name, heat in heats.items():
        found = table_from_detections(detect_points(heat, grid, settings))
        write_detections(root / "det" / f"{name}.csv", found)
    write_slide_probabilities(root / "probs.csv", {"S1": 0.9, "S2": 0.7, "S3": 0.8, "S4": 0.1, "X9": 0.5})
    return root


def evaluate_argv(case, out, *extra: str) -> list[str]:
    """`pcam-scan evaluate` arguments for a case folder holding probs.csv, det/ and reference.csv."""
    return [
        "evaluate",
        "--probabilities",
        str(case / "probs.csv"),
        "--detections",
        str(case / "det"),
        "--reference",
        str(case / "reference.csv"),
        "--out",
        str(out),
        *extra,
    ]


def test_evaluate_command_end_to_end(tmp_path, capsys):
    case = build_case(tmp_path)
    out = tmp_path / "out"
    extra = ("--masks", str(case / "masks"), "--mpp", "0.243", "--exclude", "S5", "--bootstrap", "200")
    code = main(evaluate_argv(case, out, *extra))
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    # tumour 0.9, 0.7 vs normal 0.8, 0.1: pairs won 2 + 1 of 4
    assert metrics["slide_level"]["auc"] == pytest.approx(0.75)
    assert metrics["reference"]["excluded"] == ["S5"]
    assert metrics["ignored_predictions"] == ["X9"]
    # 2 lesions (S1 found at 0.875, its plateau's other peaks ignored; S2 missed);
    # FPs 0.625 (S1), 0.75 (S2), 0.8125 (S3) over 4 slides; the TP zero of S2 is dropped:
    # thresholds 0.625, 0.75, 0.8125, 0.875 -> FP 3, 2, 1, 0 and TP 1, 1, 1, 1; then (0, 0)
    curve = metrics["lesion_level"]["curve"]
    assert curve["fps_per_slide"] == pytest.approx([0.75, 0.5, 0.25, 0.0, 0.0])
    assert curve["sensitivity"] == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.0])
    assert metrics["lesion_level"]["froc_score"] == pytest.approx(0.5)
    assert "WITHOUT the lowest" in metrics["lesion_level"]["sweep_rule"]
    assert metrics["lesion_level"]["lesions_detected_at_fp_rate"]["1"] == pytest.approx(1.0)
    unofficial = metrics["lesion_level"]["not_official_keeping_lowest_threshold"]
    assert unofficial["note"].startswith("NOT the official score")
    # keeping 0 as a threshold adds the point (FP 3/4, TP 1/2): the same sensitivities here
    assert unofficial["froc_score"] == pytest.approx(0.5)
    for png in ("roc.png", "froc.png", "reliability_slides.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    # slide calibration: S1, S2 tumour at 0.9, 0.7; S3, S4 normal at 0.8, 0.1
    calibration = metrics["slide_calibration"]
    assert calibration["brier"]["value"] == pytest.approx((0.1**2 + 0.3**2 + 0.8**2 + 0.1**2) / 4)
    # 15 equal-width bins: 0.1 (rate 0), 0.7 (1), 0.8 (0), 0.9 (1), one slide each
    assert calibration["ece_equal_width"]["value"] == pytest.approx((0.1 + 0.3 + 0.8 + 0.1) / 4)
    assert (out / "slide_probabilities.csv").read_text().splitlines() == [
        "S1,0.9",
        "S2,0.7",
        "S3,0.8",
        "S4,0.1",
    ]
    assert (out / "detections" / "S1.csv").read_text().startswith("0.875,")
    assert "slide AUC 0.7500" in capsys.readouterr().out


def test_evaluate_command_errors_are_one_line(tmp_path, capsys):
    case = build_case(tmp_path)
    (case / "det" / "S3.csv").unlink()
    base = evaluate_argv(case, tmp_path / "out", "--masks", str(case / "masks"), "--exclude", "S5")
    assert main([*base, "--mpp", "0.243"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no detection CSV for S3" in err
    assert main(base) == 2  # neither --slides nor --mpp
    assert "--mpp 0.243" in capsys.readouterr().err


def test_evaluate_command_reads_each_slides_mpp_and_annotations(tmp_path, capsys):
    for folder in ("slides", "annotations", "det"):
        (tmp_path / folder).mkdir()
    white = np.full((1024, 2048, 3), 255, dtype=np.uint8)
    for name in ("T1", "N1"):
        write_pyramid(tmp_path / "slides" / f"{name}.tif", white, mpp_um_px=0.226, n_levels=2)
    # a 960 x 640 level-0 px lesion (217 x 145 um at 0.226 um/px), NCRF JSON
    lesion = {"name": "a", "vertices": [[320, 320], [1280, 320], [1280, 960], [320, 960]]}
    (tmp_path / "annotations" / "T1.json").write_text(json.dumps({"positive": [lesion], "negative": []}))
    (tmp_path / "reference.csv").write_text("T1,Tumor,IDC,Micro\nN1,Normal,,None\n")
    t1_points = DetectionTable.from_points([(0.9, 800, 640), (0.4, 1900, 100)])
    write_detections(tmp_path / "det" / "T1.csv", t1_points)
    write_detections(tmp_path / "det" / "N1.csv", DetectionTable.from_points([(0.3, 100, 100)]))
    write_slide_probabilities(tmp_path / "probs.csv", {"T1": 0.9, "N1": 0.3})
    out = tmp_path / "out"
    extra = ("--annotations", str(tmp_path / "annotations"), "--slides", str(tmp_path / "slides"))
    code = main(evaluate_argv(tmp_path, out, *extra, "--bootstrap", "100"))
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["mpp_source"] == "each slide's own"
    t1 = metrics["slides"][0]
    assert t1["name"] == "T1" and t1["mpp_um_px"] == pytest.approx(0.226, rel=1e-3)
    assert (t1["n_lesions"], t1["n_lesions_detected"], t1["n_false_positives"]) == (1, 1, 1)
    assert metrics["slide_level"]["auc"] == 1.0
