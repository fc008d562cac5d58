"""`pcam-scan demo [--out DIR] [--quick]`: the whole product in one command, on a laptop with no
data, no GPU and no network.

Every step is a real `pcam-scan` command line run in this process by its command module, in the
order a user would run them: make synthetic training and test slides, train a model on patches
mined from the training slides, scan the test slides through the local Ray pipeline, diagnose,
evaluate (slide AUC and lesion FROC), render overlays. The demo only chooses small, fast settings
and prints a summary. It is entry-layer code: it runs the other commands, which import nothing
heavy until they run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcam_scan.errors import ConfigError, PcamScanError


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: slides per set, their size, and how long the model trains."""

    train_tumour: int
    train_normal: int
    test_tumour: int
    test_normal: int
    width_px: int
    height_px: int
    per_slide_patches: int
    epochs: int


FULL = DemoSize(3, 2, 3, 3, 5120, 4096, 500, 4)
QUICK = DemoSize(2, 1, 2, 1, 2816, 2560, 300, 4)
SLIDE_MPP = 0.486  # half the model's 0.972 um/px: every read resamples level 1 as is


@dataclass(frozen=True)
class DemoPaths:
    root: Path

    @property
    def train(self) -> Path:
        return self.root / "train_slides"

    @property
    def test(self) -> Path:
        return self.root / "test_slides"

    @property
    def model(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def store(self) -> Path:
        return self.root / "heatmaps.zarr"

    @property
    def diagnoses(self) -> Path:
        return self.root / "diagnoses.csv"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    @property
    def renders(self) -> Path:
        return self.root / "renders"


def demo_steps(paths: DemoPaths, size: DemoSize, num_cpus: int | None) -> list[tuple[str, list[str]]]:
    """The demo as (title, pcam-scan arguments) steps."""
    slide = ["--width", str(size.width_px), "--height", str(size.height_px), "--mpp", str(SLIDE_MPP)]
    cpus = [] if num_cpus is None else ["--num-cpus", str(num_cpus)]
    return [
        # --overwrite: slides and model are the demo's own, remade when a demo stopped before its scan
        (
            "make synthetic training slides",
            [
                "synth",
                str(paths.train),
                "--tumor",
                str(size.train_tumour),
                "--normal",
                str(size.train_normal),
                "--seed",
                "1",
                *slide,
                "--overwrite",
            ],
        ),
        (
            "make synthetic test slides",
            [
                "synth",
                str(paths.test),
                "--tumor",
                str(size.test_tumour),
                "--normal",
                str(size.test_normal),
                "--seed",
                "2",
                *slide,
                "--overwrite",
            ],
        ),
        (
            "train a small CNN on patches mined from the training slides",
            [
                "train",
                "--slides",
                str(paths.train),
                "--out",
                str(paths.model),
                "--arch",
                "tiny-cnn",
                "--size",
                "96",
                "--no-pretrained",
                "--frozen-epochs",
                "0",
                "--epochs",
                str(size.epochs),
                "--max-positives-per-slide",
                str(size.per_slide_patches),
                "--max-negatives-per-slide",
                str(size.per_slide_patches),
                "--batch-size",
                "32",
                "--lr",
                "0.003",
                "--lr-find-iterations",
                "10",
                "--overwrite",
            ],
        ),
        (
            "scan the test slides on a local Ray",
            ["scan", str(paths.test), "--model", str(paths.model), "--store", str(paths.store), *cpus],
        ),
        ("diagnose each slide", ["diagnose", str(paths.store), "--out", str(paths.diagnoses)]),
        (
            "evaluate the Camelyon16 way",
            [
                "evaluate",
                str(paths.store),
                "--reference",
                str(paths.test / "reference.csv"),
                "--masks",
                str(paths.test / "masks"),
                "--exclude",
                "",
                "--bootstrap",
                "500",
                "--out",
                str(paths.evaluation),
            ],
        ),
        ("render overlays and a contact sheet", ["render", str(paths.store), "--all", "--out", str(paths.renders)]),
    ]


def run_step(args: Sequence[str]) -> int:
    """One demo step: `pcam-scan ARGS` parsed and run by its command module, in this process; the
    command's exit code, or its error raised (the demo's own `pcam-scan` call reports it)."""
    from pcam_scan.commands import diagnose, evaluate, render, scan, synth, train

    parser = argparse.ArgumentParser(prog="pcam-scan")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in (synth, train, scan, diagnose, evaluate, render):
        command.register(subparsers)
    parsed = parser.parse_args(list(args))
    return int(parsed.func(parsed) or 0)


def run_demo(
    out_dir: str | Path,
    quick: bool = False,
    num_cpus: int | None = None,
    run_command: Callable[[Sequence[str]], int] | None = None,
) -> dict[str, Any]:
    """Run every step; returns the evaluation metrics. A failing step stops the demo with its
    error (the steps' own outputs stay in `out_dir`). A demo stopped before its scan starts
    again from the beginning; once its store exists, `out_dir` holds a run and is refused."""
    from pcam_scan.resources import check_worker_count

    run_command = run_command or run_step
    if num_cpus is not None and num_cpus < 1:
        raise ConfigError(f"--num-cpus {num_cpus} must be at least 1")
    check_worker_count("--num-cpus", num_cpus)  # the scan step would refuse it, after synth and train
    paths = DemoPaths(Path(out_dir).resolve())
    if paths.store.exists():
        raise ConfigError(f"{paths.root} already holds a demo run; choose another --out or remove it")
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {paths.root}: {err.strerror}") from None
    steps = demo_steps(paths, QUICK if quick else FULL, num_cpus)
    started = time.perf_counter()
    for number, (title, args) in enumerate(steps, 1):
        step_started = time.perf_counter()
        print(f"\n[{number}/{len(steps)}] {title}: pcam-scan {' '.join(args)}", file=sys.stderr, flush=True)
        code = run_command(args)  # a command's error stops the demo, below its step's title
        print(
            f"[{number}/{len(steps)}] done in {time.perf_counter() - step_started:.0f} s "
            f"({time.perf_counter() - started:.0f} s so far)",
            file=sys.stderr,
            flush=True,
        )
        if code != 0:
            raise PcamScanError(f"demo step '{title}' failed with exit code {code}; see the output above")
    metrics: dict[str, Any] = json.loads((paths.evaluation / "metrics.json").read_text())
    metrics["demo_seconds"] = round(time.perf_counter() - started, 1)
    return metrics


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="synthetic slides -> train -> scan on Ray -> diagnose -> evaluate -> render",
        description="Run the whole product on synthetic data, with no data, GPU or network needed: "
        "write Camelyon16-like slides (synth), train a small model on them (train), scan the "
        "test slides on a local Ray (scan), then diagnose, evaluate (slide AUC, lesion FROC) and "
        "render overlays, and print the metrics and the command that opens the viewer.",
    )
    parser.add_argument("--out", default="demo-out", help="folder for everything the demo makes")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller slides (CI)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    metrics = run_demo(args.out, quick=args.quick, num_cpus=args.num_cpus)
    paths = DemoPaths(Path(args.out).resolve())
    slide = metrics["slide_level"]
    lesion = metrics["lesion_level"]
    sensitivities = ", ".join(f"{fp} FP {s:.2f}" for fp, s in lesion["sensitivity_at_fp_rate"].items())
    print(f"\npcam-scan demo finished in {metrics['demo_seconds']:.0f} s")
    print(f"  slide-level ROC AUC   {slide['auc']:.3f} (95% CI {slide['ci_low']:.3f}-{slide['ci_high']:.3f})")
    print(f"  lesion-level FROC     {lesion['froc_score']:.3f} ({sensitivities})")
    print(f"  diagnoses             {paths.diagnoses}")
    print(f"  evaluation            {paths.evaluation} (metrics.json, roc.png, froc.png)")
    print(f"  overlays              {paths.renders}")
    print(
        f"\nLook at the heatmaps on the slides in your browser:\n  pcam-scan view {paths.store} --slides {paths.test}"
    )
    return 0
