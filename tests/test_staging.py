"""Patient pN staging with Camelyon17's rule, its files, the weighted kappa of its evaluation,
`pcam-scan stage`, `evaluate --stages` and `synth --patients`.

The expected stages below are written from the rule's text on the CAMELYON17 evaluation page
(see pcam_scan/diagnosis/staging.py), not from the code's output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from pcam_scan.cli import main
from pcam_scan.diagnosis.patient_files import read_patients, read_reference_stages
from pcam_scan.diagnosis.staging import INCOMPLETE, PN_STAGES, NodeResult, pn_stage, stage_patient
from pcam_scan.errors import ConfigError
from pcam_scan.evaluation.slide_auc import BootstrapSettings
from pcam_scan.evaluation.stage_kappa import quadratic_kappas, stage_kappa, weighted_kappa
from pcam_scan.store import HeatmapStore
from pcam_scan.synth import SlideSpec, SynthSpec
from pcam_scan.synth.dataset import node_categories, patient_plans
from tests.scanned_store import build_store

NEG, ITC, MICRO, MACRO = "negative", "itc", "micro", "macro"


@pytest.mark.parametrize(
    ("nodes", "stage"),
    [
        ([NEG] * 5, "pN0"),  # no micro, macro or ITC
        ([ITC, NEG, NEG, NEG, NEG], "pN0(i+)"),  # only ITC
        ([ITC] * 5, "pN0(i+)"),
        ([MICRO, NEG, NEG, NEG, NEG], "pN1mi"),  # micro, no macro
        ([MICRO] * 5, "pN1mi"),  # five positive nodes but no macro: still pN1mi
        ([MACRO, NEG, NEG, NEG, NEG], "pN1"),  # 1-3 positive nodes, one macro
        ([MACRO, MICRO, MICRO, NEG, NEG], "pN1"),
        ([MACRO, ITC, ITC, ITC, NEG], "pN1"),  # ITC nodes are not counted positive
        ([MACRO, MICRO, MICRO, MICRO, NEG], "pN2"),  # 4-9 positive nodes, one macro
        ([MACRO] * 5, "pN2"),
    ],
)
def test_camelyon17_rule(nodes: list[str], stage: str) -> None:
    assert pn_stage(nodes) == stage  # type: ignore[arg-type]


def test_rule_refuses_what_it_cannot_stage() -> None:
    with pytest.raises(ConfigError, match="at most 9"):
        pn_stage([MACRO] * 10)  # ten positive nodes would be pN3, outside Camelyon17
    with pytest.raises(ConfigError, match="not one of"):
        pn_stage(["Macro"])  # type: ignore[list-item]


def _nodes(*categories: str | None) -> list[NodeResult]:
    return [
        NodeResult(str(i), f"s{i}", c, "complete" if c else "failed", "" if c else "boom")  # type: ignore[arg-type]
        for i, c in enumerate(categories)
    ]


def test_an_unassessed_node_is_never_read_as_negative() -> None:
    unknown = stage_patient("p", _nodes(NEG, NEG, NEG, NEG, None))
    # one unknown node can at most be one macro: pN1
    assert (unknown.stage, unknown.at_least, unknown.at_most) == (INCOMPLETE, "pN0", "pN1")
    assert not unknown.complete and [n.slide_id for n in unknown.unassessed()] == ["s4"]
    micro = stage_patient("p", _nodes(MICRO, NEG, None, NEG, NEG))
    assert (micro.stage, micro.at_least) == (INCOMPLETE, "pN1mi")
    # four positive nodes with a macro are pN2 whatever the fifth shows
    fixed = stage_patient("p", _nodes(MACRO, MICRO, MICRO, MICRO, None))
    assert fixed.stage == "pN2" and fixed.complete
    assert fixed.deciding_slides() == ["s0", "s1", "s2", "s3"]


def test_kappa_orders_the_stages_as_the_official_script() -> None:
    reference = ["pN0", "pN1", "pN1mi", "pN2", "pN0(i+)", "pN1"]
    predicted = ["pN0", "pN1mi", "pN1mi", "pN1", "pN0", "pN1"]
    official = cohen_kappa_score(reference, predicted, labels=list(PN_STAGES), weights="quadratic")
    alphabetical = cohen_kappa_score(reference, predicted, weights="quadratic")
    assert weighted_kappa(reference, predicted) == pytest.approx(official)
    assert official != pytest.approx(alphabetical)  # why the order must be given


def test_vectorised_replicates_match_sklearn() -> None:
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 5, size=(30, 12))
    guess = np.clip(truth + rng.integers(-1, 2, size=truth.shape), 0, 4)
    ours = quadratic_kappas(truth, guess, 5)
    for t, g, k in zip(truth, guess, ours, strict=True):
        names = [PN_STAGES[i] for i in t], [PN_STAGES[i] for i in g]
        assert k == pytest.approx(cohen_kappa_score(*names, labels=list(PN_STAGES), weights="quadratic"))


def test_stage_kappa_leaves_out_and_lists_unstaged_patients() -> None:
    reference = {f"p{i}": PN_STAGES[i % 5] for i in range(10)}
    predicted: dict[str, str] = dict(reference)
    predicted["p3"] = INCOMPLETE
    del predicted["p4"]
    result = stage_kappa(reference, predicted, BootstrapSettings(n_replicates=200))
    assert result.unstaged == ("p3", "p4") and len(result.scored) == 8
    assert result.kappa == pytest.approx(1.0) and result.ci_low == pytest.approx(1.0)


def test_reference_stages_read_as_the_official_script(tmp_path: Path) -> None:
    path = tmp_path / "stage_labels.csv"
    path.write_text(
        "patient,stage\npatient_000.zip,PN1MI\npatient_000_node_0.tif,micro\npatient_001.zip,pN0(i+)\n",
        encoding="utf-8",
    )
    assert read_reference_stages(path) == {"patient_000": "pN1mi", "patient_001": "pN0(i+)"}
    path.write_text("patient_000.zip,pN3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1: stage 'pN3'"):
        read_reference_stages(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("slide,patient\na,p\n", "must start with the header"),
        ("slide_id,patient,node\na,p,0\nA,p,1\n", "listed twice"),
        ("slide_id,patient,node\na,,0\n", "needs slide_id, patient and node"),
        ("slide_id,patient,node\n", "lists no slides"),
    ],
)
def test_patients_file_refusals(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "patients.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        read_patients(path)


def test_synth_patients_cover_every_stage_with_their_rule() -> None:
    spec = SynthSpec(SlideSpec(16384, 16384), 0, 0, seed=3, patient_count=10)
    plans = patient_plans(spec)
    assert [p.stage for p in plans] == list(PN_STAGES) * 2
    for plan in plans:
        assert len(plan.nodes) == 5 and pn_stage([c for _, c in plan.nodes]) == plan.stage
    assert len(node_categories(spec)) == 50


def test_synth_patients_written_with_their_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Three patients (pN0, pN0(i+), pN1mi) fit small slides; the files name every node, and the
    lesions written are of the planned categories."""
    out = tmp_path / "p"
    code = main(
        ["synth", str(out), "--tumor", "0", "--normal", "0", "--patients", "3", "--width", "2304",
         "--height", "2304", "--mpp", "0.486", "--quiet"]
    )  # fmt: skip
    assert code == 0
    stages = read_reference_stages(out / "reference_stages.csv")
    assert stages == {"patient_000": "pN0", "patient_001": "pN0(i+)", "patient_002": "pN1mi"}
    nodes = read_patients(out / "patients.csv")
    assert len(nodes) == 15 and all((out / f"{n.slide_id}.tif").is_file() for n in nodes)
    manifest = json.loads((out / "synth.json").read_text())
    written = {s["name"]: {lesion["category"] for lesion in s["lesions"]} or {NEG} for s in manifest["slides"]}
    labels = dict(csv.reader((out / "reference_stages.csv").read_text().splitlines()))
    for node in nodes:
        assert written[node.slide_id] == {labels[f"{node.slide_id}.tif"]}
    for patient, stage in stages.items():
        assert pn_stage([labels[f"{n.slide_id}.tif"] for n in nodes if n.patient == patient]) == stage  # type: ignore[misc]


def test_synth_patients_refuse_slides_too_small_for_a_macro(tmp_path: Path) -> None:
    code = main(["synth", str(tmp_path / "p"), "--patients", "4", "--width", "2304", "--height", "2304",
                 "--mpp", "0.486", "--quiet"])  # fmt: skip
    assert code == 2  # patient 3 is pN1: it needs a macro node


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A real store: one tumour and two normal slides (slide -> stored size category)."""
    path, scanned = build_store(tmp_path_factory.mktemp("staging"), tumour_seeds=(7,), normal_seeds=(3, 4))
    reader = HeatmapStore.open(str(path))
    categories = {}
    for slide in scanned:
        diagnosis = reader.stored_slide(slide.slide_id).diagnosis
        assert diagnosis is not None
        categories[slide.slide_id] = str(diagnosis["category"])
    return path, categories


def test_stage_command_names_the_slides_and_flags_a_missing_node(
    tmp_path: Path, store: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, categories = store
    assert categories["tumor_001"] in (MICRO, MACRO) and categories["normal_001"] == NEG
    patients = tmp_path / "patients.csv"
    patients.write_text(
        "slide_id,patient,node\ntumor_001,A,0\nnormal_001,A,1\nnormal_002,B,0\nghost_009,B,1\n", encoding="utf-8"
    )
    out = tmp_path / "stages.csv"
    code = main(["stage", str(path), "--patients", str(patients), "--out", str(out)])
    assert code == 1  # a patient is incomplete
    rows = {row["patient"]: row for row in csv.DictReader(out.read_text().splitlines())}
    expected_a = "pN1mi" if categories["tumor_001"] == MICRO else "pN1"
    assert rows["A"]["stage"] == expected_a and rows["A"]["deciding_slides"] == "tumor_001"
    assert (rows["B"]["stage"], rows["B"]["at_least"], rows["B"]["at_most"]) == (INCOMPLETE, "pN0", "pN1")
    assert "ghost_009 (missing" in rows["B"]["unassessed"]
    # the store was only read
    assert HeatmapStore.open(str(path)).stored_slide("tumor_001").diagnosis is not None


def test_evaluate_stages_scores_kappa_and_lists_the_unstaged(
    tmp_path: Path, store: tuple[Path, dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, categories = store
    patients = tmp_path / "patients.csv"
    patients.write_text(
        "slide_id,patient,node\ntumor_001,A,0\nnormal_001,B,0\nnormal_002,C,0\nghost_009,C,1\n", encoding="utf-8"
    )
    truth_a = "pN1mi" if categories["tumor_001"] == MICRO else "pN1"
    reference = tmp_path / "reference_stages.csv"
    reference.write_text(f"patient,stage\nA.zip,{truth_a}\nB.zip,pN0\nC.zip,pN0\n", encoding="utf-8")
    out = tmp_path / "ev"
    code = main(["evaluate", str(path), "--patients", str(patients), "--stages", str(reference),
                 "--out", str(out), "--bootstrap", "200"])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "kappa.json").read_text())
    assert metrics["kappa"] == pytest.approx(1.0)
    assert metrics["patients_scored"] == 2 and metrics["patients_unstaged"] == ["C"]
    assert (out / "stages.csv").is_file()
    assert "not staged (C)" in capsys.readouterr().out
