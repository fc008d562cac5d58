"""`pcam-scan demo [--out DIR] [--quick]`: the whole product on synthetic slides, in minutes."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
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
    from pcam_scan.demo import DemoPaths, run_demo

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
