"""Is each heatmap cell's P(tumour) a probability? Brier, ECE and reliability of cells against the
ground-truth masks (issue 22), beside the slide-level figures against reference.csv.

The cells are the reference slides' tissue cells with a probability: off-tissue cells are not
scored, and QC's excluded cells (ink, fold, bubble) read as not predicted (`read_heatmap`), so
they are left out too. A cell's label is the label of the patch centred on it under the model's
label rule (`pcam_scan.annotations.cell_labels`: PCam's any-tumour-pixel rule for a mask TIFF),
from the slide's mask TIFF or annotations; every cell of a normal slide is negative. The same
share of every slide's cells is drawn (seeded), so that the figures weigh slides by their tissue
as the full set would, within `CELL_CALIBRATION_MAX_CELLS`. The figures are
`pcam_scan.evaluation.calibration`'s; their bootstrap resamples cells, not slides, so its
interval says how precise the figure is for these slides, not for other slides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pcam_scan.evaluation.calibration import CalibrationReport, calibration_report
from pcam_scan.evaluation.reference import Reference
from pcam_scan.evaluation.slide_auc import BootstrapSettings
from pcam_scan.evaluation.truth import TruthSources, load_tumour_cells
from pcam_scan.geometry import CellGrid

CELL_RULE = (
    "tissue cells with a probability (QC's excluded cells and off-tissue cells left out), labelled by "
    "the patch centred on each under the model's label rule, from the mask TIFF or annotations; every "
    "cell of a normal slide negative; the same seeded share of every slide's cells"
)


@dataclass(frozen=True)
class CellSample:
    """Some tissue cells of one slide with their probability, and how many tissue cells the
    slide had without one (QC's excluded cells)."""

    grid: CellGrid
    cell_rc: np.ndarray
    prob: np.ndarray
    n_tissue: int
    n_excluded: int


def cell_share(tissue_cells: int, max_cells: int) -> float:
    """The share of every slide's cells to draw so that about `max_cells` are drawn in all."""
    return 1.0 if tissue_cells <= max_cells else max_cells / tissue_cells


def sample_cells(prob: np.ndarray, tissue: np.ndarray, grid: CellGrid, share: float, seed: int) -> CellSample:
    """The slide's tissue cells with a finite probability, each kept with chance `share`."""
    scored = tissue & np.isfinite(prob)
    rc = np.argwhere(scored)
    if share < 1.0:
        rc = rc[np.random.default_rng(seed).random(len(rc)) < share]
    n_tissue = int(np.count_nonzero(tissue))
    return CellSample(grid, rc, prob[rc[:, 0], rc[:, 1]].astype(np.float32), n_tissue, n_tissue - int(scored.sum()))


@dataclass(frozen=True)
class CellCalibration:
    """The cells' calibration figures and what they were computed on."""

    report: CalibrationReport
    n_slides: int
    n_tissue_cells: int
    n_excluded_cells: int
    share: float

    def to_dict(self) -> dict[str, object]:
        return {
            **self.report.to_dict(),
            "rule": CELL_RULE,
            "n_slides": self.n_slides,
            "n_tissue_cells": self.n_tissue_cells,
            "n_excluded_cells": self.n_excluded_cells,
            "share_drawn": self.share,
            "bootstrap_unit": "cell",
        }


def cell_calibration(
    reference: Reference,
    samples: Mapping[str, CellSample],
    truth: TruthSources,
    bootstrap: BootstrapSettings,
    share: float,
) -> CellCalibration:
    """Brier and ECE of the reference slides' sampled cells against their ground truth."""
    probs, labels = [], []
    for entry in reference.entries:
        sample = samples[entry.name]
        if entry.is_tumour:
            tumour = load_tumour_cells(entry.name, truth, sample.grid)
            labels.append(tumour[sample.cell_rc[:, 0], sample.cell_rc[:, 1]].astype(np.int8))
        else:
            labels.append(np.zeros(len(sample.prob), np.int8))
        probs.append(sample.prob)
    report = calibration_report(np.concatenate(probs), np.concatenate(labels), bootstrap)
    chosen = [samples[e.name] for e in reference.entries]
    return CellCalibration(
        report,
        n_slides=len(chosen),
        n_tissue_cells=sum(s.n_tissue for s in chosen),
        n_excluded_cells=sum(s.n_excluded for s in chosen),
        share=share,
    )
