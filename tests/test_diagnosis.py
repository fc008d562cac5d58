"""Slide features, the default rule with its pN categories, the Diagnosis record, and the learned
aggregator's fit, JSON round trip and refusals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pcam_scan.diagnosis import (
    Aggregator,
    AggregatorError,
    DefaultRule,
    Diagnosis,
    FeatureSettings,
    compute_features,
    diagnose,
    diagnose_heatmap,
    load_aggregator,
    save_aggregator,
    size_category,
)
from pcam_scan.diagnosis.fit import FitSettings, fit_aggregator
from pcam_scan.errors import ConfigError, StoreError
from pcam_scan.geometry import CellGrid, PatchGeometry

CELL_UM = 32 * 0.972
CELL_MM2 = (CELL_UM / 1000) ** 2


def grid_of(rows: int, cols: int) -> CellGrid:
    return CellGrid(cols * 128, rows * 128, 0.243, 0.972, PatchGeometry())


@pytest.mark.parametrize(
    ("diameter_um", "category"),
    [
        (0.0, "negative"),
        (1.0, "itc"),
        (200.0, "itc"),
        (200.001, "micro"),
        (2000.0, "micro"),
        (2000.001, "macro"),
    ],
)
def test_pn_categories_at_their_boundaries(diameter_um, category):
    assert size_category(diameter_um) == category


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_impossible_diameters_are_refused(bad):
    with pytest.raises(ConfigError):
        size_category(bad)


def test_features_by_hand():
    prob = np.full((10, 10), np.nan, dtype=np.float32)
    tissue = np.zeros((10, 10), dtype=bool)
    tissue[:, :5] = True  # 50 tissue cells
    prob[:, :5] = 0.1
    prob[2, 1] = 0.95
    prob[2, 2] = 0.6
    prob[7, 3] = 0.55  # a second lesion
    settings = FeatureSettings(top_k=3, area_thresholds=(0.5, 0.9), lesion_threshold=0.5)
    values = compute_features(prob, tissue, grid_of(10, 10), settings).values
    assert list(values) == list(settings.names())
    assert values["max_prob"] == pytest.approx(0.95)
    assert values["top_k_mean"] == pytest.approx((0.95 + 0.6 + 0.55) / 3)
    assert values["mean_prob"] == pytest.approx((47 * 0.1 + 0.95 + 0.6 + 0.55) / 50)
    assert values["tumour_area_mm2_ge_0.50"] == pytest.approx(3 * CELL_MM2)
    assert values["tumour_area_mm2_ge_0.90"] == pytest.approx(1 * CELL_MM2)
    assert values["tissue_area_mm2"] == pytest.approx(50 * CELL_MM2)
    assert values["tumour_tissue_fraction"] == pytest.approx(3 / 50)
    assert values["lesion_count"] == 2
    # sub-cell geometry under PCam's rule: smaller than the staircase of the 2 lit cells
    assert 0 < values["largest_lesion_diameter_um"] < math.hypot(1, 2) * CELL_UM
    assert 0 < values["largest_lesion_area_mm2"] < 2 * CELL_MM2


def test_features_of_a_slide_without_predictions_are_zero():
    prob = np.full((4, 4), np.nan, dtype=np.float32)
    values = compute_features(prob, np.zeros((4, 4), bool), grid_of(4, 4), FeatureSettings()).values
    assert all(v == 0.0 for v in values.values())


def test_tissue_mask_of_another_shape_is_refused():
    with pytest.raises(StoreError, match="tissue mask shape"):
        prob = np.zeros((4, 4), np.float32)
        compute_features(prob, np.zeros((3, 4), bool), grid_of(4, 4), FeatureSettings())


def line_heatmap(n_cells: int, cols: int = 80, rows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A horizontal bar of n x `rows` tumour cells in a slide of tissue with 2 rows around it."""
    prob = np.full((rows + 4, cols), 0.05, dtype=np.float32)
    prob[2 : 2 + rows, 2 : 2 + n_cells] = 0.9
    return prob, np.ones(prob.shape, dtype=bool)


@pytest.mark.parametrize(
    ("n_cells", "category"),
    [
        # under PCam's rule n x 5 lit cells are a lesion of about (n - 1) x 4 cells:
        (72, "macro"),  # hypot(71, 4) * 31.104 um = 2212 um
        (62, "micro"),  # hypot(61, 4) * 31.104 um = 1901 um
    ],
)
def test_default_rule_categories_from_the_largest_lesion(n_cells, category):
    prob, tissue = line_heatmap(n_cells, rows=5)
    result = diagnose_heatmap(prob, tissue, grid_of(*prob.shape), DefaultRule())
    assert result.call == "positive"
    assert result.category == category
    assert result.largest_lesion_um == pytest.approx(math.hypot(n_cells - 1, 4) * CELL_UM, abs=25)


@pytest.mark.parametrize(("n_cells", "category"), [(9, "micro"), (4, "itc")])
def test_micro_and_itc_boundary_in_cells(n_cells, category):
    # hypot(8, 4) * 31.104 = 278 um > 200 um (micro); hypot(3, 4) * 31.104 = 156 um (itc)
    prob, tissue = line_heatmap(n_cells, rows=5)
    assert diagnose_heatmap(prob, tissue, grid_of(*prob.shape), DefaultRule()).category == category


def test_negative_call_is_category_negative_whatever_the_lesions():
    prob, tissue = line_heatmap(3)
    rule = DefaultRule(score="top_k_mean", threshold=0.5)  # top-10 mean = (3*0.9 + 7*0.05)/10
    result = diagnose_heatmap(prob, tissue, grid_of(*prob.shape), rule)
    assert result.probability == pytest.approx((3 * 0.9 + 7 * 0.05) / 10)
    assert result.call == "negative"
    assert result.category == "negative"
    assert result.largest_lesion_um > 0  # the evidence is kept in the record


def test_positive_call_without_a_lesion_region_is_itc():
    prob = np.full((5, 5), 0.4, dtype=np.float32)
    settings = FeatureSettings(lesion_threshold=0.5)
    rule = DefaultRule(score="max_prob", threshold=0.3, feature_settings=settings)
    result = diagnose_heatmap(prob, np.ones((5, 5), bool), grid_of(5, 5), rule)
    assert (result.call, result.category, result.largest_lesion_um) == ("positive", "itc", 0.0)


def test_diagnosis_goes_through_json_attributes_and_back():
    prob, tissue = line_heatmap(70)
    original = diagnose_heatmap(prob, tissue, grid_of(*prob.shape), DefaultRule())
    attrs = json.loads(json.dumps(original.to_attrs()))
    assert Diagnosis.from_attrs(attrs) == original
    attrs["category"] = "huge"
    with pytest.raises(StoreError, match="category"):
        Diagnosis.from_attrs(attrs)


def labelled_slides(n_per_class: int, seed: int) -> tuple[list[dict[str, float]], list[bool]]:
    """Real features of small synthetic heatmaps: tumour slides carry a blob of varying size."""
    rng = np.random.default_rng(seed)
    settings = FeatureSettings()
    rows, labels = [], []
    for i in range(2 * n_per_class):
        positive = i % 2 == 0
        prob = rng.uniform(0.0, 0.45, size=(24, 24)).astype(np.float32)
        if positive:
            side = int(rng.integers(2, 8))
            r, c = rng.integers(0, 24 - side, size=2)
            prob[r : r + side, c : c + side] = rng.uniform(0.55, 1.0, size=(side, side))
        elif i % 4 == 1:
            prob[rng.integers(0, 24), rng.integers(0, 24)] = 0.7  # a lone false-positive cell
        features = compute_features(prob, np.ones(prob.shape, bool), grid_of(24, 24), settings)
        rows.append(dict(features.values))
        labels.append(positive)
    return rows, labels


def test_fit_reports_cross_validated_auc_and_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows, labels = labelled_slides(12, seed=1)
    settings = FeatureSettings()
    report = fit_aggregator(rows, labels, settings, FitSettings(folds=4, seed=3), source="unit test")
    assert report.folds == 4 and len(report.fold_aucs) == 4
    assert 0.9 <= report.cv_auc <= 1.0  # tumour blobs are easy to tell from noise
    agg = report.aggregator
    assert agg.training["cv_auc"] == report.cv_auc
    assert agg.training["n_slides"] == 24 and agg.training["n_positive"] == 12
    # calibration of the out-of-fold probabilities, the held-out view of the aggregator
    y = np.asarray(labels, dtype=float)
    oof = np.asarray(report.oof_probabilities)
    assert report.calibration.brier.value == pytest.approx(float(np.mean((oof - y) ** 2)))
    assert agg.training["cv_calibration"]["n"] == 24  # type: ignore[index]
    names = settings.names()
    x = np.array([[r[n] for n in names] for r in rows])
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    reference.fit(x, np.array(labels, dtype=int))
    expected = reference.predict_proba(x)[:, 1]
    ours = np.array([agg.probability(r) for r in rows])
    assert np.allclose(ours, expected, atol=1e-9)


def test_cv_folds_are_capped_by_the_smaller_class():
    rows, labels = labelled_slides(3, seed=2)
    report = fit_aggregator(rows, labels, FeatureSettings(), FitSettings(folds=10))
    assert report.folds == 3


def test_fit_refuses_a_single_positive_slide():
    rows, labels = labelled_slides(3, seed=2)
    labels = [False] * len(labels)
    labels[0] = True
    with pytest.raises(AggregatorError, match="at least 2 positive"):
        fit_aggregator(rows, labels, FeatureSettings(), FitSettings())


@pytest.fixture(scope="module")
def fitted() -> Aggregator:
    rows, labels = labelled_slides(6, seed=5)
    return fit_aggregator(rows, labels, FeatureSettings(), FitSettings(folds=3)).aggregator


def test_aggregator_json_round_trip(tmp_path, fitted):
    path = tmp_path / "agg.json"
    save_aggregator(fitted, path)
    data = json.loads(path.read_text())
    assert data["format"] == "pcam-scan-aggregator" and data["version"] == 1
    assert data["feature_names"] == list(FeatureSettings().names())
    loaded = load_aggregator(path)
    assert loaded == fitted
    prob, tissue = line_heatmap(20)
    a = diagnose_heatmap(prob, tissue, grid_of(*prob.shape), fitted)
    b = diagnose_heatmap(prob, tissue, grid_of(*prob.shape), loaded)
    assert a == b and a.method.startswith("aggregator:")


def _break(data: dict, how: str) -> dict:
    if how == "format":
        data["format"] = "something-else"
    elif how == "version":
        data["version"] = 2
    elif how == "missing":
        del data["scaler"]
    elif how == "names":
        data["feature_names"] = list(reversed(data["feature_names"]))
    elif how == "scale":
        data["scaler"]["scale"][0] = 0.0
    elif how == "length":
        data["coefficients"] = data["coefficients"][:-1]
    elif how == "nan":
        data["intercept"] = float("nan")
    elif how == "threshold":
        data["threshold"] = 1.5
    return data


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("format", "format"),
        ("version", "version 2 is not supported"),
        ("missing", "scaler"),
        ("names", "do not match"),
        ("scale", "scale must be > 0"),
        ("length", "coefficients has"),
        ("nan", "intercept"),
        ("threshold", "threshold"),
    ],
)
def test_broken_aggregator_files_are_refused(tmp_path, fitted, how, message):
    path = tmp_path / "agg.json"
    path.write_text(json.dumps(_break(fitted.to_json_dict(), how)))
    with pytest.raises(AggregatorError, match=message):
        load_aggregator(path)


def test_non_json_and_missing_files_are_refused(tmp_path):
    pickled = tmp_path / "agg.pkl"
    pickled.write_bytes(b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00")
    with pytest.raises(AggregatorError, match="agg.pkl"):
        load_aggregator(pickled)
    with pytest.raises(AggregatorError, match="no such aggregator file"):
        load_aggregator(tmp_path / "absent.json")


def test_diagnose_with_default_rule_and_threshold_recorded():
    prob, tissue = line_heatmap(70)
    features = compute_features(prob, tissue, grid_of(*prob.shape), FeatureSettings())
    result = diagnose(features, DefaultRule(score="max_prob", threshold=0.95))
    assert result.probability == pytest.approx(0.9)
    assert (result.call, result.threshold, result.method) == ("negative", 0.95, "default-rule:max_prob")
