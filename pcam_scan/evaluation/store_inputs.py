"""The evaluation's inputs taken from a heatmap store instead of prediction files.

For every reference slide (name matched to a store slide id ignoring case, so Camelyon16's
`Test_001` finds `test_001`):
- probability: the diagnosis stored with the slide (`pcam-scan diagnose`), or the default rule's
  for a slide without one; with a scorer given, that scorer's for every slide. Probabilities of
  different methods are never mixed in one AUC;
- detections: the peaks of the level-0 heatmap (`pcam_scan.lesions.detect_points`);
- scale: the level-0 MPP and size the slide's cell grid recorded (a fixed MPP replaces the MPP,
  e.g. the official script's 0.243);
- cells: a seeded share of the tissue cells with their probability, for the cell-level
  calibration (`pcam_scan.evaluation.cell_calibration`).
Every reference slide must be complete in the store: a missing slide is an error, not a gap.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pcam_scan.defaults import CELL_CALIBRATION_MAX_CELLS
from pcam_scan.diagnosis.record import Scorer, diagnose_heatmap, stored_diagnosis
from pcam_scan.diagnosis.rule import DefaultRule
from pcam_scan.errors import ConfigError
from pcam_scan.evaluation.artefacts import table_from_detections
from pcam_scan.evaluation.cell_calibration import CellSample, cell_share, sample_cells
from pcam_scan.evaluation.errors import EvaluationError
from pcam_scan.evaluation.froc import DetectionTable
from pcam_scan.evaluation.reference import Reference
from pcam_scan.evaluation.truth import SlideScale
from pcam_scan.lesions import DetectionSettings, detect_points
from pcam_scan.store import HeatmapReader
from pcam_scan.store.queries import (
    describe_status,
    is_complete,
    listed,
    match_slide_ids,
    read_heatmap,
    slide_statuses,
)

OWN_MPP_SOURCE = "each slide's own (heatmap store)"


def fixed_mpp_source(mpp_um_px: float) -> str:
    return f"fixed {mpp_um_px} um/px (--mpp)"


def check_fixed_mpp(mpp_um_px: float) -> float:
    """A level-0 MPP given for every slide (--mpp), refused unless plausible."""
    if not 0.05 <= mpp_um_px <= 50:
        raise ConfigError(f"--mpp {mpp_um_px} um/px is not plausible")
    return mpp_um_px


def detection_settings(
    threshold: float | None = None, sigma_cells: float | None = None, min_distance_cells: float | None = None
) -> DetectionSettings:
    """The detection settings given, the library's defaults for the others (None)."""
    chosen = {"threshold": threshold, "sigma_cells": sigma_cells, "min_distance_cells": min_distance_cells}
    return dataclasses.replace(DetectionSettings(), **{k: v for k, v in chosen.items() if v is not None})


@dataclass(frozen=True)
class Predictions:
    """What an evaluation needs from the predictions, keyed by reference name, and `inputs`
    (JSON types) saying where they came from, for metrics.json."""

    probabilities: dict[str, float]
    detections: dict[str, DetectionTable]
    scales: dict[str, SlideScale]
    mpp_source: str
    inputs: dict[str, object] = field(default_factory=dict)
    cells: dict[str, CellSample] = field(default_factory=dict)
    """Sampled heatmap cells per reference slide (a store's predictions); empty for files."""
    cell_share: float = 1.0


def reference_slide_ids(store: HeatmapReader, reference: Reference) -> dict[str, str]:
    """Reference name -> store slide id; refused unless every reference slide is complete."""
    statuses = dict(slide_statuses(store))
    matched, missing = match_slide_ids(reference.names, list(statuses))
    if missing:
        raise EvaluationError(f"reference slides not in the store {store.uri}: {listed(missing)}")
    incomplete = [n for n in reference.names if not is_complete(statuses[matched[n]])]
    if incomplete:
        first = describe_status(statuses[matched[incomplete[0]]])
        raise EvaluationError(
            f"reference slides not complete in the store {store.uri}: {listed(incomplete)} ({incomplete[0]}: {first})"
        )
    return matched


def predictions_from_store(
    store: HeatmapReader,
    reference: Reference,
    scorer: Scorer | None = None,
    detection: DetectionSettings = DetectionSettings(),
    mpp_um_px: float | None = None,
) -> Predictions:
    """Probabilities, detections and scales of the reference's slides (see the module doc)."""
    slide_ids = reference_slide_ids(store, reference)
    tissue_cells = sum(store.stored_slide(slide_ids[n]).tissue_cells or 0 for n in reference.names)
    share = cell_share(tissue_cells, CELL_CALIBRATION_MAX_CELLS)
    cells: dict[str, CellSample] = {}
    probabilities: dict[str, float] = {}
    detections: dict[str, DetectionTable] = {}
    scales: dict[str, SlideScale] = {}
    by_method: dict[str, list[str]] = {}
    n_stored = 0
    qc_verdicts: dict[str, str] = {}
    for index, name in enumerate(reference.names):
        heatmap = read_heatmap(store, slide_ids[name])
        cells[name] = sample_cells(heatmap.prob, heatmap.tissue, heatmap.grid, share, seed=index)
        qc_verdicts[name] = store.stored_slide(heatmap.slide_id).qc_verdict or "not run"
        diagnosis = None if scorer is not None else stored_diagnosis(store, heatmap.slide_id)
        if diagnosis is None:
            rule = scorer if scorer is not None else DefaultRule()
            diagnosis = diagnose_heatmap(heatmap.prob, heatmap.tissue, heatmap.grid, rule)
        else:
            n_stored += 1
        probabilities[name] = diagnosis.probability
        by_method.setdefault(diagnosis.method, []).append(name)
        points = detect_points(heatmap.prob, heatmap.grid, detection)
        detections[name] = table_from_detections(points)
        scale = SlideScale.of_grid(heatmap.grid)
        if mpp_um_px is not None:
            scale = dataclasses.replace(scale, mpp_um_px=mpp_um_px)
        scales[name] = scale
    if len(by_method) > 1:
        mix = "; ".join(f"{m} for {listed(names, 3)}" for m, names in sorted(by_method.items()))
        raise EvaluationError(
            f"slide probabilities would mix methods ({mix}): diagnose the slides again with "
            "one method, or give the scorer (--aggregator) to use for all"
        )
    return Predictions(
        probabilities=probabilities,
        detections=detections,
        scales=scales,
        mpp_source=OWN_MPP_SOURCE if mpp_um_px is None else fixed_mpp_source(mpp_um_px),
        inputs={
            "source": "heatmap store",
            "store": store.uri,
            "slide_ids": {n: s for n, s in slide_ids.items() if s != n},
            "probability_method": next(iter(by_method)),
            "probabilities_stored": n_stored,
            "probabilities_computed": len(reference.names) - n_stored,
            "detection": dataclasses.asdict(detection),
            "qc": qc_inputs(qc_verdicts),
        },
        cells=cells,
        cell_share=share,
    )


QC_CONVENTION = (
    "slides QC found not assessable are kept and scored by the probability of their assessable "
    "tissue (QC's excluded cells left out), so the AUC covers every reference slide and is not "
    "flattered by dropping the hard ones; their count is reported beside it"
)


def qc_inputs(verdicts: dict[str, str]) -> dict[str, object]:
    """How many reference slides had each QC verdict, which were not assessable, and the convention."""
    counts: dict[str, int] = {}
    for verdict in verdicts.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    return {
        "verdicts": counts,
        "not_assessable": sorted(name for name, verdict in verdicts.items() if verdict == "not assessable"),
        "convention": QC_CONVENTION,
    }
