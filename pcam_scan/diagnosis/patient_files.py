"""The files of patient staging: which slide is which patient's node (`patients.csv`), the
reference stages (Camelyon17's `stage_labels.csv` layout) and the stages written (`stages.csv`).

- patients.csv: a header `slide_id,patient,node`, then one row a slide.
- reference stages: read as the official Camelyon17 evaluation script reads them: by column
  position (name, label), header optional; a row whose name ends with `.zip` (or has no `.tif`
  ending) is a patient, `patient_000.zip` naming patient `patient_000`; slide rows (`*.tif`)
  are skipped. Labels are matched ignoring case, as the script's Python 3 version does.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from pcam_scan.diagnosis.staging import PN_STAGES, PatientNode, PatientStage, PNStage
from pcam_scan.errors import ConfigError
from pcam_scan.outputs import atomic_output

PATIENT_COLUMNS = ("slide_id", "patient", "node")
STAGE_COLUMNS = ("patient", "stage", "at_least", "at_most", "nodes", "deciding_slides", "unassessed")
PATIENT_SUFFIX = ".zip"
SLIDE_SUFFIX = ".tif"
STAGE_NAMES = frozenset(stage.lower() for stage in PN_STAGES)
MAX_TABLE_BYTES = 64 * 1024 * 1024
"""Far above any real patients or stages table; refuses a wrong file before reading it whole."""


def _read_text(path: Path, what: str) -> str:
    try:
        if not path.is_file():
            raise ConfigError(f"{what} {path} is not a regular file")
        if path.stat().st_size > MAX_TABLE_BYTES:
            raise ConfigError(f"{what} {path} is larger than {MAX_TABLE_BYTES} bytes")
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {what} {path}: {err}") from None


def read_patients(path: Path) -> list[PatientNode]:
    """The patients file's rows; refuses a missing column, an empty field or a slide listed twice."""
    rows = list(csv.reader(_read_text(path, "patients file").splitlines()))
    rows = [row for row in rows if any(field.strip() for field in row)]
    if not rows or tuple(field.strip().lower() for field in rows[0][:3]) != PATIENT_COLUMNS:
        raise ConfigError(f"patients file {path} must start with the header {','.join(PATIENT_COLUMNS)}")
    nodes: list[PatientNode] = []
    seen: set[str] = set()
    for number, row in enumerate(rows[1:], start=2):
        fields = [field.strip() for field in row[:3]]
        if len(fields) < 3 or not all(fields):
            raise ConfigError(f"patients file {path} line {number}: needs slide_id, patient and node")
        if fields[0].lower() in seen:
            raise ConfigError(f"patients file {path} line {number}: slide {fields[0]!r} is listed twice")
        seen.add(fields[0].lower())
        nodes.append(PatientNode(*fields))
    if not nodes:
        raise ConfigError(f"patients file {path} lists no slides")
    return nodes


def patient_name(name: str) -> str:
    """`patient_000.zip` -> `patient_000`: the challenge names a patient by its zip."""
    return name[: -len(PATIENT_SUFFIX)] if name.lower().endswith(PATIENT_SUFFIX) else name


def parse_stage(label: str) -> PNStage:
    """A stage label matched ignoring case (`pn1mi` is pN1mi)."""
    by_lower = {stage.lower(): stage for stage in PN_STAGES}
    stage = by_lower.get(label.strip().lower())
    if stage is None:
        raise ConfigError(f"stage {label!r} is not one of {', '.join(PN_STAGES)}")
    return stage


def read_reference_stages(path: Path) -> dict[str, PNStage]:
    """patient -> reference stage, from a Camelyon17-style stage file."""
    stages: dict[str, PNStage] = {}
    for number, row in enumerate(csv.reader(_read_text(path, "reference stages").splitlines()), start=1):
        if len(row) < 2 or not row[0].strip():
            continue
        name, label = row[0].strip(), row[1].strip()
        if name.lower().endswith(SLIDE_SUFFIX):
            continue
        if number == 1 and not name.lower().endswith(PATIENT_SUFFIX) and label.lower() not in STAGE_NAMES:
            continue  # a header
        try:
            stage = parse_stage(label)
        except ConfigError as err:
            raise ConfigError(f"reference stages {path} line {number}: {err}") from None
        patient = patient_name(name)
        if patient in stages:
            raise ConfigError(f"reference stages {path} line {number}: patient {patient!r} is listed twice")
        stages[patient] = stage
    if not stages:
        raise ConfigError(f"reference stages {path} hold no patient rows")
    return stages


def stage_record(stage: PatientStage) -> dict[str, str]:
    """One patient's row: stage (or pN?), its range, each node's category, and the slides behind it."""
    nodes = ";".join(f"{n.node}={n.slide_id}:{n.category or n.status}" for n in stage.nodes)
    unassessed = ";".join(f"{n.slide_id} ({n.status}: {n.message})" for n in stage.unassessed())
    return {
        "patient": stage.patient,
        "stage": stage.stage,
        "at_least": stage.at_least,
        "at_most": stage.at_most,
        "nodes": nodes,
        "deciding_slides": ";".join(stage.deciding_slides()),
        "unassessed": unassessed,
    }


def write_stages_csv(path: Path, stages: Sequence[PatientStage], overwrite: bool = True) -> None:
    """One header line, one row a patient; written whole, then renamed (pcam_scan.outputs)."""
    with atomic_output(path, overwrite) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=STAGE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(stage_record(stage) for stage in stages)
