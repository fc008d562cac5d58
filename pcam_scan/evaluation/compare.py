"""Two runs over the same slides (another model, other settings), side by side: what changed.

Per slide present in both stores: the diagnosis of each (the default rule, or an aggregator,
computed read-only from the heatmap, so both stores are judged by one rule), whether the call
flipped, the lesion count and tumour area deltas, and on the cells both runs predicted the max
and mean |delta p| (only when the two grids are the same; another stride has no shared cells).
With a reference: each run's slide AUC and the paired difference B - A with a bootstrap CI (the
same resampled slides for both runs, stratified as pcam_scan.evaluation.slide_auc does), and,
given ground truth, each run's FROC score (pcam_scan.evaluation.report.evaluate) and its delta.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pcam_scan.diagnosis.batch import DiagnosisRow, diagnose_store, tumour_area_mm2
from pcam_scan.diagnosis.features import LESION_COUNT
from pcam_scan.diagnosis.record import Scorer
from pcam_scan.errors import PcamScanError
from pcam_scan.evaluation.errors import EvaluationError
from pcam_scan.evaluation.reference import Reference
from pcam_scan.evaluation.slide_auc import BootstrapSettings, mann_whitney_auc
from pcam_scan.outputs import atomic_output, write_output_text
from pcam_scan.store import HeatmapStore
from pcam_scan.store.validation import DamagedSlideError
from pcam_scan.wording import count_noun

COMPARISON_CSV = "comparison.csv"
COMPARISON_JSON = "comparison.json"
COMPARISON_PNG = "comparison.png"


@dataclass(frozen=True)
class SlideChange:
    """One slide in both runs: each run's diagnosis, and how the heatmaps differ."""

    slide_id: str
    status_a: str
    status_b: str
    probability_a: float = math.nan
    probability_b: float = math.nan
    call_a: str = ""
    call_b: str = ""
    category_a: str = ""
    category_b: str = ""
    lesions_a: float = math.nan
    lesions_b: float = math.nan
    area_mm2_a: float = math.nan
    area_mm2_b: float = math.nan
    shared_cells: int = 0
    max_abs_dp: float = math.nan
    mean_abs_dp: float = math.nan
    note: str = ""

    @property
    def flipped(self) -> bool:
        return bool(self.call_a) and bool(self.call_b) and self.call_a != self.call_b


def _diagnosed(row: DiagnosisRow, scorer: Scorer) -> dict[str, object]:
    d = row.diagnosis
    if d is None:
        return {}
    return {
        "probability": d.probability,
        "call": d.call,
        "category": d.category,
        "lesions": float(d.features.get(LESION_COUNT, math.nan)),
        "area_mm2": tumour_area_mm2(d.features, scorer.feature_settings),
    }


def cell_deltas(a: HeatmapStore, b: HeatmapStore, slide_id: str) -> tuple[int, float, float, str]:
    """(shared cells, max |dp|, mean |dp|, note) of level 0 of one slide in both stores."""
    try:
        grid_a, grid_b = a.read_grid(slide_id), b.read_grid(slide_id)
        if grid_a != grid_b:
            return 0, math.nan, math.nan, "the runs' cell grids differ (stride or MPP): no shared cells"
        prob_a, prob_b = a.read_prob(slide_id), b.read_prob(slide_id)
    except (DamagedSlideError, PcamScanError) as err:
        return 0, math.nan, math.nan, f"cannot read the heatmaps: {err}"
    shared = np.isfinite(prob_a) & np.isfinite(prob_b)
    if not shared.any():
        return 0, math.nan, math.nan, "no cell predicted by both runs"
    delta = np.abs(prob_a[shared].astype(np.float64) - prob_b[shared])
    return int(shared.sum()), float(delta.max()), float(delta.mean()), ""


def compare_stores(a: HeatmapStore, b: HeatmapStore, scorer: Scorer) -> tuple[list[SlideChange], list[str], list[str]]:
    """(a change per slide in both stores, slides only in A, slides only in B)."""
    rows_a = {r.slide_id: r for r in diagnose_store(a, scorer, save=False)}
    rows_b = {r.slide_id: r for r in diagnose_store(b, scorer, save=False)}
    shared = [s for s in rows_a if s in rows_b]
    changes = []
    for slide_id in shared:
        ra, rb = rows_a[slide_id], rows_b[slide_id]
        da, db = _diagnosed(ra, scorer), _diagnosed(rb, scorer)
        fields: dict[str, object] = {f"{k}_a": v for k, v in da.items()} | {f"{k}_b": v for k, v in db.items()}
        note = "; ".join(
            f"{run}: {r.status} {r.message}".strip() for run, r in (("A", ra), ("B", rb)) if not r.diagnosis
        )
        cells, max_dp, mean_dp, cell_note = (0, math.nan, math.nan, "")
        if ra.diagnosis is not None and rb.diagnosis is not None:
            cells, max_dp, mean_dp, cell_note = cell_deltas(a, b, slide_id)
        changes.append(
            SlideChange(
                slide_id,
                ra.status,
                rb.status,
                shared_cells=cells,
                max_abs_dp=max_dp,
                mean_abs_dp=mean_dp,
                note="; ".join(n for n in (note, cell_note) if n),
                **fields,  # type: ignore[arg-type]
            )
        )
    return changes, sorted(set(rows_a) - set(rows_b)), sorted(set(rows_b) - set(rows_a))


@dataclass(frozen=True)
class PairedAuc:
    """Each run's slide AUC and the difference B - A with its paired bootstrap interval."""

    auc_a: float
    auc_b: float
    difference: float
    ci_low: float
    ci_high: float
    level: float
    n_replicates: int
    n_slides: int


def paired_auc_difference(
    labels: Sequence[bool], prob_a: Sequence[float], prob_b: Sequence[float], settings: BootstrapSettings
) -> PairedAuc:
    """AUC_B - AUC_A over the same slides; each replicate resamples tumour and normal slides
    (stratified) once and scores both runs on that one resample, so the slides' own difficulty
    cancels out of the difference."""
    positive = np.asarray(labels, dtype=bool)
    a, b = np.asarray(prob_a, dtype=np.float64), np.asarray(prob_b, dtype=np.float64)
    pos, neg = np.nonzero(positive)[0], np.nonzero(~positive)[0]
    if pos.size == 0 or neg.size == 0:
        raise EvaluationError(f"the AUC needs tumour and normal slides, got {pos.size} and {neg.size}")
    auc_a, auc_b = float(mann_whitney_auc(a, positive)), float(mann_whitney_auc(b, positive))
    rng = np.random.default_rng(settings.seed)
    draws = np.concatenate(
        [
            rng.choice(pos, size=(settings.n_replicates, pos.size), replace=True),
            rng.choice(neg, size=(settings.n_replicates, neg.size), replace=True),
        ],
        axis=1,
    )
    replicate_positive = np.zeros(draws.shape, dtype=bool)
    replicate_positive[:, : pos.size] = True
    diff = mann_whitney_auc(b[draws], replicate_positive) - mann_whitney_auc(a[draws], replicate_positive)
    tail = (1.0 - settings.level) / 2.0 * 100.0
    low, high = np.percentile(diff, [tail, 100.0 - tail])
    return PairedAuc(
        auc_a, auc_b, auc_b - auc_a, float(low), float(high), settings.level, settings.n_replicates, int(positive.size)
    )


def reference_auc(
    changes: Sequence[SlideChange], reference: Reference, settings: BootstrapSettings
) -> tuple[PairedAuc, list[str]]:
    """The paired AUC over the reference slides both runs diagnosed (matched ignoring case);
    the reference slides left out (not diagnosed in one run, or absent)."""
    by_id = {c.slide_id.lower(): c for c in changes}
    labels, pa, pb, left_out = [], [], [], []
    for entry in reference.entries:
        change = by_id.get(entry.name.lower())
        if change is None or math.isnan(change.probability_a) or math.isnan(change.probability_b):
            left_out.append(entry.name)
            continue
        labels.append(entry.is_tumour)
        pa.append(change.probability_a)
        pb.append(change.probability_b)
    return paired_auc_difference(labels, pa, pb, settings), left_out


def _number(value: float) -> object:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_comparison(
    out_dir: Path,
    changes: Sequence[SlideChange],
    summary: Mapping[str, object],
) -> list[Path]:
    """comparison.csv (a row a slide), comparison.json (the summary and the rows) and
    comparison.png, each written atomically."""
    columns = [*SlideChange.__dataclass_fields__, "flipped"]
    csv_path = out_dir / COMPARISON_CSV
    with atomic_output(csv_path, True) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for change in changes:
            writer.writerow({**asdict(change), "flipped": change.flipped})
    rows = [{k: _number(v) for k, v in {**asdict(c), "flipped": c.flipped}.items()} for c in changes]
    json_path = out_dir / COMPARISON_JSON
    write_output_text(json_path, json.dumps({**summary, "slides": rows}, indent=2, allow_nan=False) + "\n", True)
    png = plot_comparison(changes, out_dir / COMPARISON_PNG)
    return [csv_path, json_path, png]


def plot_comparison(changes: Sequence[SlideChange], path: Path) -> Path:
    """Left: slide probability in A against B, flips in red. Right: per slide max and mean
    |delta p| on shared cells."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.8))
    left, right = fig.subplots(1, 2)
    both = [c for c in changes if not (math.isnan(c.probability_a) or math.isnan(c.probability_b))]
    kept = [c for c in both if not c.flipped]
    flips = [c for c in both if c.flipped]
    left.plot([0, 1], [0, 1], color="0.7", lw=1)
    left.scatter([c.probability_a for c in kept], [c.probability_b for c in kept], s=18, label="same call")
    left.scatter(
        [c.probability_a for c in flips], [c.probability_b for c in flips], s=30, color="crimson", label="call flipped"
    )
    for c in flips:
        left.annotate(c.slide_id, (c.probability_a, c.probability_b), fontsize=7)
    left.set_xlim(-0.03, 1.03)
    left.set_ylim(-0.03, 1.03)
    left.set_xlabel("P(metastasis), run A")
    left.set_ylabel("P(metastasis), run B")
    left.set_title(f"{count_noun(len(both), 'slide')}, {len(flips)} flipped")
    left.legend(loc="lower right")
    cells = [c for c in changes if c.shared_cells > 0]
    x = np.arange(len(cells))
    right.bar(x - 0.2, [c.max_abs_dp for c in cells], width=0.4, label="max |dp|")
    right.bar(x + 0.2, [c.mean_abs_dp for c in cells], width=0.4, label="mean |dp|")
    right.set_xticks(x, [c.slide_id for c in cells], rotation=60, ha="right", fontsize=7)
    right.set_ylim(0, 1.03)
    right.set_ylabel("|P_B - P_A| on cells both runs predicted")
    right.set_title("heatmap change per slide")
    right.legend(loc="upper right")
    fig.tight_layout()
    with atomic_output(path, overwrite=True) as tmp:
        FigureCanvasAgg(fig).print_png(str(tmp))  # type: ignore[no-untyped-call]
    return path


def froc_delta(
    a: HeatmapStore,
    b: HeatmapStore,
    reference: Reference,
    masks_dir: Path | None,
    annotations_dir: Path | None,
    bootstrap: BootstrapSettings,
    scorer: Scorer,
) -> dict[str, float]:
    """Each run's FROC score over the reference (the evaluation's own code; every reference
    slide must be complete in both stores) and the difference B - A."""
    from pcam_scan.evaluation.report import evaluate
    from pcam_scan.evaluation.store_inputs import predictions_from_store
    from pcam_scan.evaluation.truth import TruthSources, load_evaluation_masks

    truth = TruthSources(masks_dir=masks_dir, annotations_dir=annotations_dir)
    scores = []
    for store in (a, b):
        predictions = predictions_from_store(store, reference, scorer)
        tumour = [e.name for e in reference.entries if e.is_tumour]
        masks = {n: m for n, (m, _) in load_evaluation_masks(tumour, truth, predictions.scales).items()}
        result = evaluate(reference, predictions.probabilities, predictions.detections, masks, bootstrap)
        scores.append(result.froc.score)
    return {"a": scores[0], "b": scores[1], "difference": scores[1] - scores[0]}
