"""Patient-level pN stage from the slides' size categories, with Camelyon17's rule.

Source: the CAMELYON17 challenge's evaluation page (https://camelyon17.grand-challenge.org/Evaluation/)
and its dataset paper (Litjens et al., GigaScience 2018, https://pmc.ncbi.nlm.nih.gov/articles/PMC6007545):
each slide is one lymph node; a node is positive when it holds a micro- (> 0.2 mm) or
macro-metastasis (> 2 mm); a node with only isolated tumour cells (ITC) is NOT counted positive.
- pN0: no micro- or macro-metastases or ITC found;
- pN0(i+): only ITC found;
- pN1mi: micro-metastases found, but no macro-metastases;
- pN1: metastases in 1-3 lymph nodes, of which at least one is a macro-metastasis;
- pN2: metastases in 4-9 lymph nodes, of which at least one is a macro-metastasis.
The organisers' code (`diagnose_patient`, and repathcamelyon's `compute_patient_level_scores`)
applies exactly this order. Camelyon17 patients have five nodes, so pN3 (10+ positive nodes)
never arises; a patient with more than nine nodes is refused rather than mis-staged.

A node that could not be assessed (its slide failed, is damaged, not scanned, or missing from the
store) is never read as negative. The stage rises with every node's category, so the patient's
lowest possible stage is the one with every unknown node negative and its highest the one with
every unknown node macro. When both agree the stage is known anyway (e.g. four positive nodes with
a macro are pN2 whatever a fifth shows); otherwise the patient is `pN?` (incomplete) with
`at_least` (and `at_most`) stated, and evaluation leaves it out of the kappa and says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pcam_scan.diagnosis.rule import SIZE_CATEGORIES, SizeCategory
from pcam_scan.errors import ConfigError
from pcam_scan.wording import count_noun

PNStage = Literal["pN0", "pN0(i+)", "pN1mi", "pN1", "pN2"]
PN_STAGES: tuple[PNStage, ...] = ("pN0", "pN0(i+)", "pN1mi", "pN1", "pN2")
"""In order: the official evaluation passes this list as `labels` to sklearn's kappa, which is
what makes the quadratic weights ordinal (without it sklearn sorts the names alphabetically)."""
INCOMPLETE = "pN?"
MAX_NODES = 9
"""pN2 covers 4-9 positive nodes; ten or more would be pN3, outside Camelyon17's scheme."""


def pn_stage(categories: Sequence[SizeCategory]) -> PNStage:
    """The pN stage of one patient from each node's size category (Camelyon17's rule)."""
    if len(categories) > MAX_NODES:
        raise ConfigError(
            f"{count_noun(len(categories), 'node')} for one patient: Camelyon17's rule stages at most {MAX_NODES}"
        )
    for category in categories:
        if category not in SIZE_CATEGORIES:
            raise ConfigError(f"node category {category!r} is not one of {', '.join(SIZE_CATEGORIES)}")
    count = Counter(categories)
    if count["macro"] == 0:
        if count["micro"] > 0:
            return "pN1mi"
        return "pN0(i+)" if count["itc"] > 0 else "pN0"
    return "pN1" if count["macro"] + count["micro"] <= 3 else "pN2"


@dataclass(frozen=True)
class NodeResult:
    """One node of a patient: its slide, and the slide's size category (None: not assessable,
    with `status` and `message` saying why)."""

    node: str
    slide_id: str
    category: SizeCategory | None
    status: str = "complete"
    message: str = ""


@dataclass(frozen=True)
class PatientStage:
    """A patient's stage, or `pN?` with the range it lies in, and the nodes behind it."""

    patient: str
    stage: str
    at_least: PNStage
    at_most: PNStage
    nodes: tuple[NodeResult, ...]

    @property
    def complete(self) -> bool:
        return self.stage != INCOMPLETE

    def deciding_slides(self) -> list[str]:
        """The slides that set the stage: the positive nodes (or ITC ones for pN0(i+)); all of
        them for pN0, since every node had to be negative."""
        if self.at_least == "pN0":
            return [n.slide_id for n in self.nodes if n.category is not None]
        wanted = ("itc",) if self.at_least == "pN0(i+)" else ("micro", "macro")
        return [n.slide_id for n in self.nodes if n.category in wanted]

    def unassessed(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.category is None]


def stage_patient(patient: str, nodes: Sequence[NodeResult]) -> PatientStage:
    """The patient's stage; unknown nodes bound it from below (negative) and above (macro)."""
    known: list[SizeCategory] = [n.category for n in nodes if n.category is not None]
    unknown = len(nodes) - len(known)
    lowest = pn_stage(known + ["negative"] * unknown)
    highest = pn_stage(known + ["macro"] * unknown)
    stage = lowest if lowest == highest else INCOMPLETE
    return PatientStage(patient, stage, lowest, highest, tuple(nodes))


@dataclass(frozen=True)
class PatientNode:
    """One row of a patients file: a slide is node `node` of patient `patient`."""

    slide_id: str
    patient: str
    node: str


def stage_patients(
    nodes: Sequence[PatientNode], slide_results: Mapping[str, tuple[SizeCategory | None, str, str]]
) -> list[PatientStage]:
    """Every patient's stage, in the order patients first appear; `slide_results` maps a slide
    (matched ignoring case) to (category or None, status, message); a slide absent from it is
    `missing` from the store, so its node is not assessable."""
    by_key = {slide.lower(): (slide, result) for slide, result in slide_results.items()}
    patients: dict[str, list[NodeResult]] = {}
    for row in nodes:
        found = by_key.get(row.slide_id.lower())
        if found is None:
            result = NodeResult(row.node, row.slide_id, None, "missing", "not in the store")
        else:
            slide_id, (category, status, message) = found
            result = NodeResult(row.node, slide_id, category, status, message)
        patients.setdefault(row.patient, []).append(result)
    return [stage_patient(patient, results) for patient, results in patients.items()]
