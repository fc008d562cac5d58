"""The Camelyon16 lesion-level protocol on small hand-built cases, answers worked out by hand.

Masks are level-5 tumour masks (one pixel = 32 level-0 px) at the official 0.243 um/px unless a
test says otherwise, so: growth threshold 75 / (0.243 * 32 * 2) = 4.82 px (distance strictly
below it joins the lesion), ITC threshold 275 / (0.243 * 32) = 35.37 px of major axis.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pcam_scan.annotations import Polygon, SlideAnnotations
from pcam_scan.evaluation import (
    DetectionTable,
    EvaluationError,
    build_evaluation_mask,
    froc_curve,
    froc_score,
    score_slide,
    tumour_mask_from_annotations,
)
from pcam_scan.evaluation.mask import (
    growth_threshold_px,
    itc_threshold_px,
    major_axis_length,
    major_axis_lengths,
)

MPP = 0.243
D = 32  # level-0 px per level-5 px


def square_mask(shape, *squares):
    """Level-5 tumour mask with squares given as (row0, col0, side)."""
    mask = np.zeros(shape, dtype=bool)
    for r, c, side in squares:
        mask[r : r + side, c : c + side] = True
    return mask


def at(row: float, col: float) -> tuple[int, int]:
    """Level-0 (x, y) of the centre of level-5 pixel (row, col)."""
    return (int(col * D + D // 2), int(row * D + D // 2))


def table(*detections: tuple[float, tuple[int, int]]) -> DetectionTable:
    return DetectionTable.from_points([(conf, xy[0], xy[1]) for conf, xy in detections])


def test_official_thresholds_in_level5_pixels():
    assert growth_threshold_px(0.243) == pytest.approx(4.8225, abs=1e-4)
    assert itc_threshold_px(0.243) == pytest.approx(35.365, abs=1e-3)  # the script's 35.36


def test_major_axis_of_a_line_is_exact():
    # n pixels in a row: variance (n^2 - 1) / 12, so the axis is 4 * sqrt((n^2 - 1) / 12)
    cols = np.arange(10, dtype=float)
    assert major_axis_length(np.zeros(10), cols) == pytest.approx(4 * math.sqrt(99 / 12))
    assert major_axis_length(np.zeros(1), np.zeros(1)) == 0.0


def test_major_axis_of_a_rotated_ellipse_is_twice_its_semi_major_axis():
    a, b, angle = 40.0, 15.0, math.radians(30)
    rr, cc = np.mgrid[0:120, 0:120].astype(float)
    y, x = rr - 60, cc - 60
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    labels = ((u / a) ** 2 + (v / b) ** 2 <= 1).astype(np.int32)
    axes = major_axis_lengths(labels)
    assert list(axes) == [1]
    assert axes[1] == pytest.approx(2 * a, rel=0.01)


def test_growth_merges_lesions_closer_than_75um_and_keeps_others_apart():
    # gap of 8 px (62 um): every gap pixel is within 4 px (< 4.82) of one side -> one lesion
    merged = build_evaluation_mask(square_mask((60, 120), (10, 10, 40), (10, 58, 40)), MPP)
    assert merged.n_labels == 1 and merged.n_lesions == 1
    # gap of 12 px (93 um): the middle pixels are 6 px from both -> two lesions
    apart = build_evaluation_mask(square_mask((60, 120), (10, 10, 40), (10, 62, 40)), MPP)
    assert apart.n_labels == 2 and apart.n_lesions == 2


def test_holes_inside_a_lesion_are_filled():
    tumour = square_mask((60, 60), (10, 10, 40))
    tumour[20:40, 20:40] = False  # a 20 px hole, far wider than the growth
    mask = build_evaluation_mask(tumour, MPP)
    assert mask.labels[30, 30] == mask.labels[10, 10] != 0


def test_small_regions_are_itc_by_the_slides_own_mpp():
    # a 1 x 25 px streak grows to about 34 x 9 px: major axis ~ 36.6 px, between the ITC
    # thresholds at 0.243 um/px (35.4 px) and 0.226 um/px (38.0 px)
    tumour = square_mask((40, 60), (20, 10, 1))
    tumour[20, 10:35] = True
    at_0243 = build_evaluation_mask(tumour, 0.243)
    at_0226 = build_evaluation_mask(tumour, 0.226)
    axis = major_axis_lengths(at_0243.labels)[1]
    assert itc_threshold_px(0.243) < axis < itc_threshold_px(0.226)
    assert at_0243.itc_labels == frozenset()
    assert at_0226.itc_labels == frozenset({1})


def test_itc_hit_counts_neither_way():
    tumour = square_mask((100, 100), (5, 5, 4), (40, 40, 50))  # a 4 px speck and a big lesion
    mask = build_evaluation_mask(tumour, MPP)
    assert mask.n_labels == 2 and mask.n_lesions == 1
    itc_label = mask.labels[6, 6]
    assert mask.itc_labels == frozenset({int(itc_label)})
    hits = score_slide("t", table((0.9, at(6, 6)), (0.6, at(60, 60)), (0.3, at(95, 5))), mask)
    assert hits.n_itc_hits == 1
    assert hits.fp_confidences.tolist() == [0.3]
    assert sorted(hits.tp_confidences.tolist()) == pytest.approx([0.0, 0.6])  # ITC entry stays 0
    # by hand: thresholds {0.3, 0.6} (0 dropped) -> (1 FP, 1 TP), (0 FP, 1 TP), then (0, 0)
    curve = froc_curve([hits])
    assert curve.fps_per_slide.tolist() == [1.0, 0.0, 0.0]
    assert curve.sensitivity.tolist() == [1.0, 1.0, 0.0]
    assert froc_score(curve).score == 1.0


def test_two_hits_on_one_lesion_are_one_tp_and_no_fp():
    mask = build_evaluation_mask(square_mask((100, 100), (40, 40, 50)), MPP)
    hits = score_slide("t", table((0.4, at(50, 50)), (0.9, at(70, 70))), mask)
    assert hits.fp_confidences.size == 0
    assert hits.tp_confidences.tolist() == [np.float32(0.9)]
    assert hits.n_detected == 1


def test_every_detection_on_a_normal_slide_is_a_false_positive():
    hits = score_slide("n", table((0.5, at(50, 50)), (0.1, at(1, 1))), None)
    assert hits.fp_confidences.tolist() == [0.5, 0.1]
    assert hits.n_lesions == 0 and hits.tp_confidences.size == 0


def test_detections_just_outside_the_grown_lesion_are_false_positives():
    mask = build_evaluation_mask(square_mask((100, 100), (40, 40, 40)), MPP)
    # 4 px beyond the edge is inside the growth, 5 px beyond is not (threshold 4.82 px)
    hits = score_slide("t", table((0.7, at(60, 83)), (0.8, at(60, 84))), mask)
    assert hits.tp_confidences.tolist() == [np.float32(0.7)]
    assert hits.fp_confidences.tolist() == [0.8]
    outside = score_slide("t", table((0.5, (10**6, 10**6))), mask)  # beyond the mask array
    assert outside.fp_confidences.tolist() == [0.5]


def test_three_slide_froc_worked_by_hand():
    tumour_1 = build_evaluation_mask(square_mask((100, 100), (5, 5, 40), (60, 60, 38)), MPP)
    tumour_2 = build_evaluation_mask(square_mask((100, 100), (30, 30, 45)), MPP)
    hits = [
        # L1 hit twice (0.9 counts, 0.8 ignored), L2 missed, one FP 0.7
        score_slide("T1", table((0.9, at(20, 20)), (0.8, at(25, 25)), (0.7, at(55, 2))), tumour_1),
        # L3 hit at 0.6, one FP 0.2
        score_slide("T2", table((0.6, at(50, 50)), (0.2, at(2, 2))), tumour_2),
        score_slide("N1", table((0.5, at(10, 10)), (0.1, at(90, 90))), None),
    ]
    assert [h.n_lesions for h in hits] == [2, 1, 0]
    curve = froc_curve(hits)
    # FPs {0.7, 0.2, 0.5, 0.1}, TPs {0.9, 0, 0.6}; thresholds drop the smallest value (0):
    # t:   0.1  0.2  0.5  0.6  0.7  0.9  (end)
    # FP:  4    3    2    1    1    0    0     / 3 slides
    # TP:  2    2    2    2    1    1    0     / 3 lesions
    assert curve.fps_per_slide == pytest.approx(np.array([4, 3, 2, 1, 1, 0, 0]) / 3)
    assert curve.sensitivity == pytest.approx(np.array([2, 2, 2, 2, 1, 1, 0]) / 3)
    score = froc_score(curve)
    # np.interp on the reversed curve: 0.25 FP lies between (0, 1/3) and (1/3, 1/3) -> 1/3;
    # 0.5 between (1/3, 2/3) and (2/3, 2/3) -> 2/3; 1, 2, 4, 8 -> 2/3
    assert score.sensitivities == pytest.approx((1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3))
    assert score.score == pytest.approx(11 / 18)


def test_smallest_confidence_is_never_a_threshold_when_every_lesion_is_found():
    # official quirk: all_probs[1:] drops the lowest value even when it is a real detection
    mask = build_evaluation_mask(square_mask((100, 100), (40, 40, 50)), MPP)
    curve = froc_curve([score_slide("t", table((0.8, at(60, 60)), (0.3, at(5, 5))), mask)])
    assert curve.fps_per_slide.tolist() == [0.0, 0.0]
    assert curve.sensitivity.tolist() == [1.0, 0.0]


def test_keeping_the_lowest_threshold_is_a_separate_unofficial_sweep():
    # the one lesion found at 0.8, no false positive: the official sweep drops its only
    # threshold (0.8) and scores 0; keeping it counts the detection
    mask = build_evaluation_mask(square_mask((100, 100), (40, 40, 50)), MPP)
    hits = [score_slide("t", table((0.8, at(60, 60))), mask)]
    official, kept = froc_curve(hits), froc_curve(hits, keep_lowest=True)
    assert official.sensitivity.tolist() == [0.0]
    assert froc_score(official).lesions_detected == (0.0,) * 6
    assert kept.thresholds[:-1].tolist() == [pytest.approx(0.8)]
    assert kept.sensitivity.tolist() == [1.0, 0.0]
    assert froc_score(kept).score == 1.0
    assert froc_score(kept).lesions_detected == (1.0,) * 6


def test_tp_ties_compare_in_float32_as_the_official_script():
    # TP 0.7 is stored as float32 (0.69999999); the FP 0.7 threshold still counts it, because
    # NumPy compares a float32 array with a Python float in float32
    mask = build_evaluation_mask(square_mask((100, 100), (40, 40, 50)), MPP)
    curve = froc_curve([score_slide("t", table((0.7, at(60, 60)), (0.7, at(5, 5))), mask)])
    assert curve.fps_per_slide.tolist() == [1.0, 0.0]
    assert curve.sensitivity.tolist() == [1.0, 0.0]


def test_froc_needs_a_lesion():
    with pytest.raises(EvaluationError, match="at least one lesion"):
        froc_curve([score_slide("n", table((0.5, at(1, 1))), None)])


def test_evaluation_mask_from_annotations_matches_the_rasterised_square():
    # a square polygon covering level-0 [3200, 4800) -> level-5 pixels 100..149
    square = np.array([[3200, 3200], [4800, 3200], [4800, 4800], [3200, 4800]], dtype=float)
    annotations = SlideAnnotations(tumour=(Polygon("a", "Tumor", square),))
    tumour = tumour_mask_from_annotations(annotations, l0_size_wh=(6400, 6400))
    assert tumour.shape == (200, 200)
    assert np.argwhere(tumour).min(axis=0).tolist() == [100, 100]
    assert np.argwhere(tumour).max(axis=0).tolist() == [149, 149]
    assert tumour.sum() == 50 * 50
    sized_to_polygons = tumour_mask_from_annotations(annotations)
    assert sized_to_polygons[:200, :200].sum() == tumour.sum()
