"""pcam-scan beside WSInfer 0.6.1 on the same slide and the same network, runs alternating.

The checkpoint (a random-init one of `--architecture` unless `--checkpoint` names one) is
exported with `pcam-scan export-model --format wsinfer` (TorchScript + config.json), so both
tools run the same weights at the same patch size and um/px; pcam-scan scans at `--stride`
(96: WSInfer's non-overlapping grid). WSInfer runs from its own venv (`--wsinfer-venv`: it needs
`zarr<3` and `tiffslide<3`, which pcam-scan's own environment cannot hold) with `-n 1` data
loader worker and an offline model registry (`~/.wsinfer-zoo/wsinfer-zoo-registry.json` holding
`{"models":{}}` is written when missing, and `HF_HUB_OFFLINE=1`). Each tool's runs alternate,
so the machine's load hits them alike. It prints, per tool (WSInfer, pcam-scan in process,
pcam-scan on a local Ray): patches, patches/s (wall clock of the whole command), CPU-seconds per
1,000 patches of its whole process tree, and the largest peak RSS of any one process; then, per
run, the cores busy on average and the processes that did the work (a Ray scan's model actors
each with its CPU-seconds: are they all at work?). The
tools find tissue their own way, so their patch counts differ: compare the rates.
A benchmark: prints figures, asserts nothing. WSInfer's venv, as measured here (torch as in
pcam-scan's own environment, so both run the same kernels):

    python3.11 -m venv /work/wsinfer-venv
    /work/wsinfer-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 wsinfer==0.6.1 'zarr<3' 'tiffslide<3'

    python bench/wsinfer_side_by_side.py --slide SLIDE.tif --architecture resnet50-fastai-head \\
        --wsinfer-venv /work/wsinfer-venv --stride 96 --repeats 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from process_tree import ProcessPeak, run_monitored  # noqa: E402

REGISTRY = Path.home() / ".wsinfer-zoo" / "wsinfer-zoo-registry.json"


@dataclass(frozen=True)
class ToolRun:
    """One run's figures."""

    patches: int
    wall_s: float
    cpu_s: float
    peak_mb: float
    processes: tuple[ProcessPeak, ...] = ()


def ensure_offline_registry() -> None:
    """WSInfer reads its model-zoo registry at start; offline it needs a local (empty) one."""
    if not REGISTRY.exists():
        REGISTRY.parent.mkdir(parents=True, exist_ok=True)
        REGISTRY.write_text(json.dumps({"models": {}}))
        print(f"wrote an empty WSInfer model registry to {REGISTRY} (offline)", file=sys.stderr)


def read_wsinfer_rows(results: Path) -> list[dict[str, str]]:
    """The rows of the one slide's CSV that `wsinfer run -o RESULTS` wrote (minx, miny, width,
    height at level 0, prob_<class>)."""
    (output,) = sorted((results / "model-outputs-csv").glob("*.csv"))
    with output.open() as handle:
        return list(csv.DictReader(handle))


def wsinfer_slide_folder(folder: Path, slide: Path) -> Path:
    """`folder/slides/` holding a link to `slide` and nothing else: `wsinfer run -i` takes a folder
    and runs every slide in it."""
    slide_dir = folder / "slides"
    slide_dir.mkdir(parents=True)
    (slide_dir / slide.name).symlink_to(slide.resolve())
    return slide_dir


def run_wsinfer(venv: Path, slide_dir: Path, model_dir: Path, results: Path) -> ToolRun:
    command = [
        str(venv / "bin" / "wsinfer"),
        "run",
        "-i",
        str(slide_dir),
        "-o",
        str(results),
        "-p",
        str(model_dir / "torchscript_model.pt"),
        "-c",
        str(model_dir / "config.json"),
        "-n",
        "1",
    ]
    run = run_monitored(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    outputs = sorted((results / "model-outputs-csv").glob("*.csv"))
    if run.returncode != 0 or not outputs:
        raise SystemExit(f"wsinfer failed ({run.returncode}):\n{run.stdout[-3000:]}")
    patches = len(read_wsinfer_rows(results))
    return tool_run(patches, run.seconds, run.peaks)


def tool_run(patches: int, wall_s: float, peaks: list[ProcessPeak]) -> ToolRun:
    return ToolRun(patches, wall_s, sum(p.cpu_s for p in peaks), max(p.peak_mb for p in peaks), tuple(peaks))


def busiest_processes(run: ToolRun, share: float = 0.1) -> str:
    """The processes that used at least `share` of a run's CPU: which ones did the work (a Ray
    scan's model actors, each at its CPU-seconds), and how many cores were busy on average."""
    busy = sorted((p for p in run.processes if p.cpu_s >= share * run.cpu_s), key=lambda p: -p.cpu_s)
    parts = ", ".join(f"{p.name} {p.cpu_s:.0f} CPU-s {p.peak_mb:,.0f} MB" for p in busy)
    return f"{run.cpu_s / run.wall_s:.2f} cores busy over {run.wall_s:.0f} s; {parts}"


def run_pcam_scan(
    slide: Path, checkpoint: Path, store: Path, stride: int, in_process: bool, extra: tuple[str, ...] = ()
) -> ToolRun:
    from pcam_scan.store import HeatmapStore

    command = [sys.executable, "-m", "pcam_scan.cli", "scan", str(slide), "--model", str(checkpoint)]
    command += ["--store", str(store), "--stride", str(stride), *(["--in-process"] if in_process else []), *extra]
    run = run_monitored(command)
    if run.returncode != 0:
        raise SystemExit(f"pcam-scan failed ({run.returncode}):\n{run.stdout[-3000:]}")
    heatmaps = HeatmapStore.open(str(store))
    patches = sum((heatmaps.stored_slide(s).predicted_cells or 0) for s in heatmaps.list_slides())
    return tool_run(patches, run.seconds, run.peaks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slide", type=Path, required=True, help="one slide both tools can read")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: a random-init --architecture")
    parser.add_argument("--architecture", default="resnet50-fastai-head")
    parser.add_argument("--wsinfer-venv", type=Path, default=Path("/work/wsinfer-venv"))
    parser.add_argument("--stride", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tools", default="wsinfer,in-process,ray")
    args = parser.parse_args()

    from pcam_scan.model.interop.wsinfer_export import export_wsinfer
    from pcam_scan.model.random_model import write_random_checkpoint

    ensure_offline_registry()
    tools = args.tools.split(",")
    runs: dict[str, list[ToolRun]] = {tool: [] for tool in tools}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = args.checkpoint or folder / f"{args.architecture}.safetensors"
        if args.checkpoint is None:
            write_random_checkpoint(checkpoint, args.architecture)
        export_wsinfer(checkpoint, folder / "model", overwrite=False)
        slide_dir = wsinfer_slide_folder(folder, args.slide)
        for repeat in range(args.repeats):
            for tool in tools:
                print(f"run {repeat + 1}/{args.repeats}: {tool}", file=sys.stderr, flush=True)
                out = folder / f"{tool}-{repeat}"
                if tool == "wsinfer":
                    runs[tool].append(run_wsinfer(args.wsinfer_venv, slide_dir, folder / "model", out))
                else:
                    store = out.with_suffix(".zarr")
                    runs[tool].append(run_pcam_scan(args.slide, checkpoint, store, args.stride, tool == "in-process"))
    cores = len(os.sched_getaffinity(0))
    print(
        f"{args.slide.name}, {args.architecture}, pcam-scan stride {args.stride}, {cores} CPU cores, "
        f"{args.repeats} alternating runs per tool (median; each run in brackets)\n"
    )
    print("| tool | patches | patches/s | CPU-s / 1000 patches | largest process peak RSS MB |")
    print("|---|---|---|---|---|")
    for tool, done in runs.items():
        rates = sorted(r.patches / r.wall_s for r in done)
        cpus = sorted(1000 * r.cpu_s / max(r.patches, 1) for r in done)
        print(
            f"| {tool} | {done[0].patches} | {statistics.median(rates):.1f} ({', '.join(f'{x:.1f}' for x in rates)}) "
            f"| {statistics.median(cpus):.1f} ({', '.join(f'{x:.1f}' for x in cpus)}) "
            f"| {max(r.peak_mb for r in done):,.0f} |"
        )
    print("\nProcesses with at least 10% of each run's CPU (each run):\n")
    for tool, done in runs.items():
        for index, run in enumerate(done):
            print(f"- {tool} run {index + 1}: {busiest_processes(run)}")


if __name__ == "__main__":
    main()
