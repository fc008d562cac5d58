"""Synthetic Camelyon17-style patients of a known pN stage (`pcam-scan synth --patients N`).

Patient i gets stage `PN_STAGES[i % 5]` (so five patients cover every stage) and five lymph nodes,
one slide each (`patient_000_node_0` ...), whose size categories give exactly that stage under
Camelyon17's rule (pcam_scan.diagnosis.staging), drawn from the seed:
- pN0: every node negative;  pN0(i+): 1-2 ITC nodes;  pN1mi: one micro node, maybe one ITC;
- pN1: one macro node and 0-2 micro;  pN2: one macro node and three more micro or macro.
A node slide holds one lesion of its category (none when negative). Files, in OUT_DIR:
- patients.csv: `slide_id,patient,node` (what `pcam-scan stage --patients` reads);
- reference_stages.csv: Camelyon17's stage_labels.csv layout, `patient,stage` then per patient a
  `patient_000.zip,<stage>` row and its five `patient_000_node_N.tif,<category>` rows.
Pure planning here; the dataset writer (pcam_scan.synth.dataset) writes slides and these files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcam_scan.defaults import NODES_PER_PATIENT
from pcam_scan.diagnosis.rule import SizeCategory
from pcam_scan.diagnosis.staging import PN_STAGES, PNStage, pn_stage
from pcam_scan.synth.files import written_atomically

PATIENTS_CSV = "patients.csv"
REFERENCE_STAGES_CSV = "reference_stages.csv"


@dataclass(frozen=True)
class PatientPlan:
    """One synthetic patient: name, stage, and (slide name, category) per node in node order."""

    patient: str
    stage: PNStage
    nodes: tuple[tuple[str, SizeCategory], ...]


def _node_categories(stage: PNStage, rng: np.random.Generator) -> list[SizeCategory]:
    itc: list[SizeCategory] = ["itc"]
    micro: list[SizeCategory] = ["micro"]
    macro: list[SizeCategory] = ["macro"]
    positives: list[SizeCategory] = []
    if stage == "pN0(i+)":
        positives = itc * int(rng.integers(1, 3))
    elif stage == "pN1mi":
        positives = micro + itc * int(rng.integers(0, 2))
    elif stage == "pN1":
        positives = macro + micro * int(rng.integers(0, 3))
    elif stage == "pN2":
        positives = macro + [(micro + macro)[int(rng.integers(0, 2))] for _ in range(3)]
    negative: list[SizeCategory] = ["negative"]
    categories = positives + negative * (NODES_PER_PATIENT - len(positives))
    return [categories[i] for i in rng.permutation(NODES_PER_PATIENT)]


def plan_patients(count: int, seed: int) -> list[PatientPlan]:
    """`count` patients, stages in turn, node categories from `seed`; each checked by the rule."""
    plans = []
    for index in range(count):
        stage = PN_STAGES[index % len(PN_STAGES)]
        rng = np.random.default_rng([int(seed), index, 0x704E])
        categories = _node_categories(stage, rng)
        if pn_stage(categories) != stage:  # the plan and the rule must agree, or the data set lies
            raise AssertionError(f"planned {categories} for {stage}")
        name = f"patient_{index:03d}"
        nodes = tuple((f"{name}_node_{node}", category) for node, category in enumerate(categories))
        plans.append(PatientPlan(name, stage, nodes))
    return plans


def write_patient_files(out: Path, plans: list[PatientPlan]) -> None:
    """patients.csv and reference_stages.csv (see the module doc), each written atomically."""
    patients = ["slide_id,patient,node"]
    stages = ["patient,stage"]
    for plan in plans:
        stages.append(f"{plan.patient}.zip,{plan.stage}")
        for node, (slide, category) in enumerate(plan.nodes):
            patients.append(f"{slide},{plan.patient},{node}")
            stages.append(f"{slide}.tif,{category}")
    for name, lines in ((PATIENTS_CSV, patients), (REFERENCE_STAGES_CSV, stages)):
        with written_atomically(out / name) as partial:
            partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
