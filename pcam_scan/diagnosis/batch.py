"""Every slide of a heatmap store at once: the scorer chosen, a diagnosis row per slide and the
diagnoses CSV (`pcam-scan diagnose`), and the learned aggregator fitted on the store's labelled
slides (`pcam-scan fit-aggregator`).

Slides that are not complete (planned, failed), damaged or in error get a row with their status
and message, never silently dropped.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pcam_scan.diagnosis.aggregator import AggregatorError, load_aggregator
from pcam_scan.diagnosis.features import (
    TISSUE_AREA_MM2,
    TUMOUR_TISSUE_FRACTION,
    FeatureSettings,
    area_feature_name,
    compute_features,
)
from pcam_scan.diagnosis.fit import FitReport, FitSettings, fit_aggregator
from pcam_scan.diagnosis.record import Diagnosis, Scorer, diagnose_stored_slide
from pcam_scan.diagnosis.rule import DefaultRule, SizeCategory
from pcam_scan.diagnosis.staging import PatientNode, PatientStage, stage_patients
from pcam_scan.errors import PcamScanError
from pcam_scan.outputs import atomic_output
from pcam_scan.store import HeatmapReader, HeatmapStore
from pcam_scan.store.queries import is_complete, listed, match_slide_ids, read_heatmap, slide_statuses
from pcam_scan.store.validation import DamagedSlideError

HEADLINE_COLUMNS = (
    "slide_id",
    "status",
    "probability",
    "call",
    "qc_verdict",
    "threshold",
    "category",
    "largest_lesion_um",
    "tumour_area_mm2",
    "method",
    "message",
)


def choose_scorer(aggregator: Path | None, threshold: float | None) -> Scorer:
    """The default rule, or the aggregator read from its file; `threshold` replaces theirs."""
    if aggregator is None:
        return DefaultRule() if threshold is None else DefaultRule(threshold=threshold)
    fitted = load_aggregator(aggregator)
    return fitted if threshold is None else dataclasses.replace(fitted, threshold=threshold)


@dataclass(frozen=True)
class DiagnosisRow:
    """One slide's line of the table: its diagnosis, or why it has none."""

    slide_id: str
    status: str
    message: str = ""
    diagnosis: Diagnosis | None = None
    qc_verdict: str | None = None
    """The slide's QC verdict (pass, warn, not assessable); None when QC was not run."""


def diagnose_store(store: HeatmapStore, scorer: Scorer, save: bool = True) -> list[DiagnosisRow]:
    """A row for every slide of the store, in its order; with `save`, each complete slide's
    diagnosis is also stored in its attributes (`save_diagnoses` does it later: after the CSV is
    written, so a full disk leaves the stored diagnoses as they were). One damaged or failing
    slide is recorded; the others go on."""
    rows: list[DiagnosisRow] = []
    for slide_id, status in slide_statuses(store):
        if status is None:
            rows.append(DiagnosisRow(slide_id, "unplanned", "planning never finished"))
            continue
        if not is_complete(status):
            rows.append(DiagnosisRow(slide_id, status.state.value, status.message or ""))
            continue
        try:
            diagnosis = diagnose_stored_slide(store, slide_id, scorer, save)
        except DamagedSlideError as err:  # never diagnosed as if sound
            rows.append(DiagnosisRow(slide_id, "damaged", err.problem))
            continue
        except PcamScanError as err:
            rows.append(DiagnosisRow(slide_id, "error", str(err)))
            continue
        verdict = store.stored_slide(slide_id).qc_verdict
        rows.append(DiagnosisRow(slide_id, status.state.value, diagnosis=diagnosis, qc_verdict=verdict))
    return rows


def slide_categories(rows: Sequence[DiagnosisRow]) -> dict[str, tuple[SizeCategory | None, str, str]]:
    """slide -> (size category, or None when it has no diagnosis; status; message): what
    patient staging reads (pcam_scan.diagnosis.staging)."""
    return {
        row.slide_id: (None if row.diagnosis is None else row.diagnosis.category, row.status, row.message)
        for row in rows
    }


def save_diagnoses(store: HeatmapStore, rows: Sequence[DiagnosisRow]) -> None:
    """Store each row's diagnosis in its slide's attributes."""
    for row in rows:
        if row.diagnosis is not None:
            store.set_diagnosis(row.slide_id, row.diagnosis.to_attrs())


def tumour_area_mm2(features: Mapping[str, float], settings: FeatureSettings) -> float:
    """Area of the cells at or above the lesion threshold (the regions' total area)."""
    name = area_feature_name(settings.lesion_threshold)
    if name in features:
        return float(features[name])
    return float(features[TUMOUR_TISSUE_FRACTION] * features[TISSUE_AREA_MM2])


def csv_record(row: DiagnosisRow, settings: FeatureSettings) -> dict[str, object]:
    """The row's CSV fields: the headline columns, then every feature ('' without a diagnosis)."""
    record: dict[str, object] = {name: "" for name in (*HEADLINE_COLUMNS, *settings.names())}
    record.update(slide_id=row.slide_id, status=row.status, message=row.message, qc_verdict=row.qc_verdict or "")
    diagnosis = row.diagnosis
    if diagnosis is not None:
        record.update(
            probability=diagnosis.probability,
            call=diagnosis.call,
            threshold=diagnosis.threshold,
            category=diagnosis.category,
            largest_lesion_um=diagnosis.largest_lesion_um,
            tumour_area_mm2=tumour_area_mm2(diagnosis.features, settings),
            method=diagnosis.method,
        )
        record.update(diagnosis.features)
    return record


def write_diagnoses_csv(
    path: Path, rows: Sequence[DiagnosisRow], settings: FeatureSettings, overwrite: bool = True
) -> None:
    """One header line, one row a slide; written whole, then renamed (pcam_scan.outputs)."""
    columns = [*HEADLINE_COLUMNS, *settings.names()]
    with atomic_output(path, overwrite) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_record(row, settings) for row in rows)


@dataclass(frozen=True)
class StoreFit:
    """An aggregator fitted on a store's labelled slides: the fit, the slides it used, and the
    labelled names left out because they are not complete in the store."""

    report: FitReport
    n_tumour: int
    n_normal: int
    missing: list[str]


def fit_on_store(
    store: HeatmapReader,
    labels: Mapping[str, bool],
    settings: FitSettings,
    store_name: str,
    labels_name: str,
) -> StoreFit:
    """Fit the aggregator on the complete slides of `store` named in `labels` (name -> tumour,
    names matched to slide ids ignoring case); at least 2 tumour and 2 normal slides."""
    complete = [slide_id for slide_id, status in slide_statuses(store) if is_complete(status)]
    matched, missing = match_slide_ids(list(labels), complete)
    labelled = [name for name in labels if name in matched]
    n_tumour = sum(labels[name] for name in labelled)
    n_normal = len(labelled) - n_tumour
    if min(n_tumour, n_normal) < 2:
        absent = f"; not complete in the store: {listed(missing)}" if missing else ""
        raise AggregatorError(
            f"fitting needs at least 2 tumour and 2 normal slides that are labelled in "
            f"{labels_name} and complete in {store_name}; found {n_tumour} tumour and "
            f"{n_normal} normal{absent}"
        )
    features = FeatureSettings()
    rows = []
    for name in labelled:
        heatmap = read_heatmap(store, matched[name])
        rows.append(compute_features(heatmap.prob, heatmap.tissue, heatmap.grid, features).values)
    report = fit_aggregator(
        rows,
        [labels[name] for name in labelled],
        features,
        settings,
        source=f"store {store_name}; reference {labels_name}",
    )
    return StoreFit(report, n_tumour, n_normal, missing)


def stage_store(
    store_uri: str, nodes: Sequence[PatientNode], aggregator: Path | None = None, threshold: float | None = None
) -> list[PatientStage]:
    """Every patient's pN stage from the store's slides, read only (nothing is written to it)."""
    store = HeatmapStore.open(store_uri, mode="r")
    rows = diagnose_store(store, choose_scorer(aggregator, threshold), save=False)
    return stage_patients(nodes, slide_categories(rows))
