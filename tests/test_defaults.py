"""One definition per default: what a command does when an option is left out is what the
settings dataclass does when a field is left out, and both come from `pcam_scan.defaults`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pcam_scan import defaults
from pcam_scan.cli import build_parser
from pcam_scan.diagnosis.fit import FitSettings
from pcam_scan.diagnosis.rule import DefaultRule
from pcam_scan.evaluation.slide_auc import BootstrapSettings
from pcam_scan.lesions import DetectionSettings, RegionSettings
from tests.conftest import REPO_ROOT
from training.mining import HardNegativeSettings, MiningSettings


def _parsed(*argv: str) -> dict[str, object]:
    return vars(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "option", "settings", "field"),
    [
        (("evaluate", "--reference", "r", "--out", "o"), "bootstrap", BootstrapSettings(), "n_replicates"),
        (("fit-aggregator", "s", "--reference", "r", "--out", "o"), "folds", FitSettings(), "folds"),
        (("fit-aggregator", "s", "--reference", "r", "--out", "o"), "c", FitSettings(), "c"),
        (("fit-aggregator", "s", "--reference", "r", "--out", "o"), "threshold", FitSettings(), "threshold"),
        (("export", "s", "--format", "asap", "--out", "o"), "threshold", RegionSettings(), "threshold"),
        (("train", "--slides", "d"), "valid_fraction", MiningSettings(), "valid_fraction"),
        (("train", "--slides", "d"), "max_positives_per_slide", MiningSettings(), "max_positives_per_slide"),
        (("train", "--slides", "d"), "max_negatives_per_slide", MiningSettings(), "max_negatives_per_slide"),
        (("train", "--slides", "d"), "negatives_per_positive", MiningSettings(), "negatives_per_positive"),
        (("train", "--slides", "d"), "hard_fraction", HardNegativeSettings("c"), "fraction"),
        (("train", "--slides", "d"), "hard_pool", HardNegativeSettings("c"), "pool_per_slide"),
        (("train", "--slides", "d"), "hard_min_prob", HardNegativeSettings("c"), "min_probability"),
    ],
)
def test_a_left_out_option_means_the_settings_default(argv, option, settings, field) -> None:
    assert _parsed(*argv)[option] == getattr(settings, field)


def test_thresholds_of_one_decision_agree_everywhere() -> None:
    assert DefaultRule().threshold == FitSettings().threshold == defaults.DECISION_THRESHOLD
    assert RegionSettings().threshold == defaults.REGION_THRESHOLD
    assert DetectionSettings() == DetectionSettings(
        defaults.DETECTION_SIGMA_CELLS, defaults.DETECTION_THRESHOLD, defaults.DETECTION_MIN_DISTANCE_CELLS
    )


DOC_PAGES = ("README.md", "docs/evaluation.md", "docs/store.md", "training/README.md")
# options whose CLI default is None (to tell "not given" apart) and whose default lives in settings
SETTINGS_DEFAULTS = {
    ("evaluate", "detection_threshold"): DetectionSettings().threshold,
    ("evaluate", "sigma"): DetectionSettings().sigma_cells,
    ("evaluate", "min_distance"): DetectionSettings().min_distance_cells,
}


def _documented_defaults() -> list[tuple[str, str, str, str]]:
    """(page, command, option, value) of every `pcam-scan CMD ... [--option VALUE]` in the docs."""
    found = []
    for page in DOC_PAGES:
        text = (REPO_ROOT / page).read_text()
        for usage in re.finditer(r"pcam-scan ([a-z][\w-]*)((?:.|\n(?!\s*\n))*)", text):
            for option, value in re.findall(r"\[--([\w-]+) ([\w.,]+)\]", usage.group(2)):
                found.append((page, usage.group(1), option.replace("-", "_"), value))
    return found


def test_the_docs_quote_the_defaults_the_commands_use() -> None:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    quoted = [(page, cmd, option, value) for page, cmd, option, value in _documented_defaults() if cmd in commands]
    assert len(quoted) >= 10
    wrong = []
    for page, cmd, option, value in quoted:
        default = SETTINGS_DEFAULTS.get((cmd, option), commands[cmd].get_default(option))
        if default is None:
            continue  # an example value of an option with no default (`--mpp 0.243`)
        if str(default) != value and not (isinstance(default, float) and float(value) == default):
            wrong.append(f"{page}: pcam-scan {cmd} --{option} {value}, but the default is {default}")
    assert wrong == []


@pytest.mark.parametrize("command", ["scan", "submit"])
def test_every_scan_option_left_out_means_the_settings_default(command: str) -> None:
    """Every option of `scan` and `submit`: the request the command line builds with nothing
    given equals the dataclasses' own defaults, field by field (stride, block cells, batch size,
    device, TTA, compile, determinism, MPP, placement, and any option added later)."""
    from pcam_scan.scan.runner import ScanRequest

    args = build_parser().parse_args([command, "slide.tif", "--model", "m.safetensors", "--store", "s.zarr"])
    built = ScanRequest.from_args(args, [Path("slide.tif")])
    assert built == ScanRequest(slides=("slide.tif",), checkpoint="m.safetensors", store_uri="s.zarr")


def test_every_scan_option_given_reaches_the_request() -> None:
    """The other direction: a value given for each option lands in its own field (an option
    wired to the wrong field, or dropped, fails here)."""
    from pcam_scan.scan.runner import ScanRequest

    argv = ["scan", "a.tif", "--model", "m", "--store", "s", "--stride", "64", "--block-cells", "16"]
    argv += ["--batch-size", "64", "--device", "cpu", "--tta", "--compile", "--no-deterministic", "--mpp", "0.5"]
    argv += ["--address", "auto", "--num-cpus", "3", "--gpus", "2", "--in-process"]
    argv += ["--stain-normalise", "macenko", "--stain-reference", "ref.png"]
    request = ScanRequest.from_args(build_parser().parse_args(argv), [Path("a.tif")])
    settings, predictor, placement = request.settings, request.settings.predictor, request.placement
    assert (settings.stride_px, settings.block_cells, settings.mpp_override_um_px) == (64, 16, 0.5)
    assert (predictor.batch_size, predictor.device, predictor.tta, predictor.compile) == (64, "cpu", True, True)
    assert predictor.deterministic is False
    assert (settings.stain_normalise, settings.stain_reference) == ("macenko", "ref.png")
    assert (placement.address, placement.num_cpus, placement.gpus, placement.in_process) == ("auto", 3, 2, True)
    assert ScanRequest.from_json(request.to_json()) == request
