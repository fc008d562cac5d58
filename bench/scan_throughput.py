"""The scan engine's figures, for the null model and ResNet50 side by side, on any machine.

For each model it scans synthetic slides through the real Ray pipeline (read tasks -> model
actors -> Zarr writes), once with 1 slide and once with `--slides` (each scan in its own
process, whose process tree is sampled for peak RSS), then times the model alone on uint8
patches already on the device. It prints, per model:
- end-to-end patches/s, and per CPU core, with the cores needed to feed 65k and 104k patches/s;
- bytes crossing stage boundaries per scored cell, over the region bytes per cell (computed from
  the shapes that cross: region, work item, probabilities);
- the useful share of model batches (real patches over batch capacity), measured on the feeder
  that fills batches across blocks, slides and actor calls (a GPU's default; `--deterministic`
  measures the CPU's default, each block in batches of its own);
- seconds from start to the first prediction, for 1 slide and for `--slides` slides;
- driver CPU-seconds per slide; peak RSS of the driver, each read worker and each actor.
A benchmark: prints figures, asserts nothing.

    python bench/scan_throughput.py --num-cpus 2                     # null + ResNet50, 24 slides
    python bench/scan_throughput.py --architectures null --slides 4  # quicker
    cd /tmp && PYTHONPATH=OLD_CHECKOUT python .../bench/scan_throughput.py ...  # another checkout's engine
                                  # (from outside both: Ray puts the working directory first on workers' paths)
    python bench/scan_throughput.py --compare-with OLD_CHECKOUT --architectures resnet50-fastai-head \
        --executors ray,in-process --deterministic --stride 96 --resnet-slides 1 --repeats 2
                                  # before/after side by side, alternating runs: patches/s, CPU-s per
                                  # 1,000 patches of the whole process tree, peak RSS per role
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from process_tree import ProcessPeak, run_monitored  # noqa: E402

CAMELYON16_L0_PX = (100_000, 200_000)
CAMELYON16_MPP = 0.243
WORK_ITEM_BYTES = 700
"""A pickled block work item without its tissue mask (path, read plan, block): measured ~650 B."""


def model_ceiling(checkpoint: Path, settings: object, batches: int) -> tuple[float, str]:
    """Patches/s of the scoring module alone on uint8 patches already on the device."""
    import numpy as np
    import torch

    from pcam_scan.model.checkpoint import load_checkpoint
    from pcam_scan.model.predictor import Predictor

    predictor = Predictor(load_checkpoint(checkpoint, "cpu"), settings)  # type: ignore[arg-type]
    px = predictor.metadata.patch_px
    batch = predictor.settings.batch_size
    patches = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (batch, px, px, 3), dtype=np.uint8))
    patches = patches.to(predictor.device)

    def sync() -> None:
        if predictor.device.type == "cuda":
            torch.cuda.synchronize(predictor.device)

    predictor.score_on_device(patches)  # warm-up (and compilation)
    sync()
    started = time.perf_counter()
    for _ in range(batches):
        predictor.score_on_device(patches)
    sync()
    return batches * batch / (time.perf_counter() - started), str(predictor.device)


def crossing_bytes(store_uri: str, stride_px: int, patches_travel: bool) -> tuple[float, float]:
    """(bytes crossing stage boundaries, region bytes), per scored cell, from the stored plans:
    the region, or in the engine before issue 11 the cut patches (read -> model), the work item
    with its tissue mask (source -> read -> model -> write) and the probabilities (model -> write)."""
    from pcam_scan.geometry import PatchGeometry
    from pcam_scan.store import HeatmapStore

    store = HeatmapStore.open(store_uri)
    geometry = PatchGeometry(stride_px=stride_px)
    crossing = region_total = cells = 0
    for slide_id in store.list_slides():
        if store.slide_status(slide_id).state.value != "complete":
            continue
        tissue = store.read_tissue(slide_id)
        for block in store.planned_blocks(slide_id):
            _, _, width, height = block.region_px_box(geometry)
            scored = int(tissue[block.cell_slices()].sum())
            region = width * height * 3
            to_model = scored * geometry.patch_px**2 * 3 if patches_travel else region
            crossing += to_model + 3 * (WORK_ITEM_BYTES + block.n_cells) + 4 * block.n_cells
            region_total += region
            cells += scored
    return crossing / max(cells, 1), region_total / max(cells, 1)


def _request(request_type: Any, slides: list[Path], args: argparse.Namespace, settings: object) -> Any:
    """The scan request in the API of the engine that runs (its CPUs a field of its own, or of
    its placement since the resolved scan of issue 19)."""
    common = {"slides": tuple(map(str, slides)), "checkpoint": args.checkpoint, "store_uri": args.store}
    try:
        from pcam_scan.scan.runner import Placement
    except ImportError:
        return request_type(**common, settings=settings, num_cpus=args.num_cpus)
    placement = Placement(num_cpus=args.num_cpus, in_process=args.in_process)
    return request_type(**common, settings=settings, placement=placement)


def scan_once(args: argparse.Namespace) -> None:
    """Child mode: one scan, its figures as one JSON line on stdout. Runs on the engine before
    issue 11 too (its API then), so the before/after figures come from the same command."""
    import importlib.util

    from pcam_scan.scan.progress import ScanProgress
    from pcam_scan.scan.runner import ScanRequest, run_scan
    from pcam_scan.scan.settings import ScanSettings

    class TimedProgress(ScanProgress):
        def block_done(self, *args: object, **kwargs: object) -> None:
            if getattr(self, "first_result", None) is None:
                self.first_result = time.perf_counter()
            super().block_done(*args, **kwargs)  # type: ignore[arg-type]

    before = importlib.util.find_spec("pcam_scan.blocks") is not None
    slides = sorted(Path(args.slide_dir).glob("*.tif"))[: args.n]
    if before:
        settings = ScanSettings(stride_px=args.stride, batch_size=args.batch_size, compile=args.compile)  # type: ignore[call-arg]
    else:
        from pcam_scan.model.settings import PredictorSettings

        predictor = PredictorSettings(
            batch_size=args.batch_size, compile=args.compile, cpu_threads=1, deterministic=args.deterministic
        )
        # the predictor's field was `model` until issue 19
        name = "predictor" if "predictor" in ScanSettings.__dataclass_fields__ else "model"
        settings = ScanSettings(stride_px=args.stride, **{name: predictor})
    request = _request(ScanRequest, slides, args, settings)
    progress = TimedProgress(stream=open(os.devnull, "w"))
    ray_up = [] if args.in_process else _time_ray_start()  # in process: no Ray imported
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    if before:
        outcomes = run_scan(request, progress)  # type: ignore[arg-type]
    elif args.in_process:
        from pcam_scan.scan.inprocess import in_process_executor

        outcomes = run_scan(request, in_process_executor, progress)
    else:
        from cluster.executor import ray_executor

        outcomes = run_scan(request, ray_executor, progress)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    assert progress.blocks_started is not None and progress.finished is not None
    per_worker = getattr(progress, "model_batches", {})
    batches = sum(b for b, _ in per_worker.values())
    useful = sum(u for _, u in per_worker.values())
    crossing, region = crossing_bytes(args.store, args.stride, patches_travel=before)
    print(
        json.dumps(
            {
                "engine": "before issue 11" if before else "issue 11",
                "slides": len(outcomes),
                "failed": [f"{o.slide_id}: {o.message}" for o in outcomes if o.failed],
                "patches": progress.patches_done,
                "wall_s": progress.finished - progress.started,
                "after_ray_s": progress.finished - ray_up[0] if ray_up else float("nan"),
                "pipeline_s": progress.finished - progress.blocks_started,
                "first_s": (getattr(progress, "first_result", None) or progress.finished) - progress.started,
                "driver_cpu_s": (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
                "useful_share": useful / (batches * args.batch_size) if batches else float("nan"),
                "bytes_per_cell": crossing,
                "region_bytes_per_cell": region,
            }
        )
    )


def _time_ray_start() -> list[float]:
    """A list that gets the moment `ray.init` returns (both engines call it as `ray.init`): the
    scan's seconds after it are the engine's, without the local cluster's start."""
    import ray

    ready: list[float] = []
    start = ray.init

    def timed_init(*args: object, **kwargs: object) -> object:
        context = start(*args, **kwargs)
        ready.append(time.perf_counter())
        return context

    ray.init = timed_init
    return ready


def _roles(peaks: list[ProcessPeak]) -> dict[str, float]:
    """Largest peak RSS (MB) per role: driver, read worker, model actor, write worker, Ray."""
    out: dict[str, float] = {}
    for peak in peaks:
        name = peak.name
        if "PredictBlocks" in name or "MapWorker" in name:
            role = "model actor"
        elif any(word in name for word in ("read_blocks", "ReadBlocks", "write_blocks", "WriteBlocks")):
            role = "task worker (reads, writes)"  # Ray reuses a task worker for both
        elif "scan_throughput" in name:
            role = "driver"
        else:
            continue
        out[role] = max(out.get(role, 0.0), peak.peak_mb)
    return out


def run_child(
    args: argparse.Namespace,
    slide_dir: Path,
    folder: Path,
    checkpoint: Path,
    n: int,
    tag: str,
    engine: str | None = None,
    in_process: bool = False,
) -> tuple[dict, dict[str, float]]:
    """One scan in a child process: its figures, and the peak RSS (MB) of each role. `engine`, a
    checkout whose pcam_scan and cluster the child imports; the child then runs from `folder`
    (Ray puts the working directory first on its workers' paths). The figures get `tree_cpu_s`,
    the CPU-seconds of every process of the run (Ray's own included)."""
    command = [
        sys.executable,
        __file__,
        "--one",
        "--slide-dir",
        str(slide_dir),
        "--n",
        str(n),
        "--checkpoint",
        str(checkpoint),
        "--store",
        str(folder / f"{tag}.zarr"),
        "--stride",
        str(args.stride),
        "--batch-size",
        str(args.batch_size),
        *(["--compile"] if args.compile else []),
        "--deterministic" if args.deterministic else "--no-deterministic",
        *(["--num-cpus", str(args.num_cpus)] if args.num_cpus else []),
        *(["--in-process"] if in_process else []),
    ]
    env = None if engine is None else {**os.environ, "PYTHONPATH": engine}
    # a local Ray that starts slowly is retried by cluster.session
    run = run_monitored(command, env=env, cwd=None if engine is None else folder)
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if run.returncode != 0 or not lines:
        raise SystemExit(f"scan {tag} failed ({run.returncode}):\n{run.stdout[-3000:]}")
    return {**json.loads(lines[-1]), "tree_cpu_s": sum(p.cpu_s for p in run.peaks)}, _roles(run.peaks)


def compare_engines(args: argparse.Namespace, slide_dir: Path, folder: Path) -> None:
    """`--compare-with OLD`: the old checkout's engine and this one on the same slides, runs
    alternating (old, new, old, new...) so the machine's load hits both; per model and executor,
    the median patches/s and CPU-seconds per 1,000 patches of the whole process tree, and the
    largest peak RSS of each role over the runs."""
    from pcam_scan.model.random_model import write_random_checkpoint

    engines = {"before": str(Path(args.compare_with).resolve()), "after": str(Path(__file__).resolve().parents[1])}
    table: dict[str, dict[str, object]] = {}
    for arch in args.architectures.split(","):
        checkpoint = folder / f"{arch}.safetensors"
        write_random_checkpoint(checkpoint, arch)
        for executor in args.executors.split(","):
            runs: dict[str, list[dict]] = {name: [] for name in engines}
            peaks: dict[str, dict[str, float]] = {name: {} for name in engines}
            for repeat in range(args.repeats):
                for name, engine in engines.items():
                    tag = f"{arch}-{executor}-{name}-{repeat}"
                    try:
                        one, roles = run_child(
                            args,
                            slide_dir,
                            folder,
                            checkpoint,
                            args.resnet_slides,
                            tag,
                            engine,
                            executor == "in-process",
                        )
                    except SystemExit as failed:  # a local Ray that did not start on a loaded machine
                        print(f"{tag}: {str(failed)[:200]}", file=sys.stderr, flush=True)
                        continue
                    runs[name].append(one)
                    rate, cpu = one["patches"] / one["wall_s"], 1000 * one["tree_cpu_s"] / max(one["patches"], 1)
                    print(
                        f"{tag}: {one['patches']} patches, {rate:.1f}/s, {cpu:.1f} CPU-s/1000, {roles}", file=sys.stderr
                    )
                    for role, mb in roles.items():
                        peaks[name][role] = max(peaks[name].get(role, 0.0), mb)
            for name in engines:
                done = runs[name]
                if not done:
                    continue
                rates = sorted(r["patches"] / r["wall_s"] for r in done)
                cpu = sorted(1000 * r["tree_cpu_s"] / max(r["patches"], 1) for r in done)
                table[f"{arch}, {executor}, {name}"] = {
                    "patches": done[0]["patches"],
                    "patches/s (each run)": " / ".join(f"{r:.1f}" for r in rates),
                    "median patches/s": f"{rates[len(rates) // 2]:.1f}",
                    "CPU-s / 1000 patches (each run)": " / ".join(f"{c:.1f}" for c in cpu),
                    "median CPU-s / 1000 patches": f"{cpu[len(cpu) // 2]:.1f}",
                    **{f"peak RSS MB, {role}": f"{mb:,.0f}" for role, mb in sorted(peaks[name].items())},
                }
    cores = args.num_cpus or os.cpu_count() or 1
    print(f"stride {args.stride}, batch {args.batch_size}, {cores} CPU cores, {args.repeats} alternating runs each")
    print(f"before: {engines['before']}\nafter: {engines['after']}\n")
    keys = list(dict.fromkeys(k for row in table.values() for k in row))
    print("| run | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for run_name, row in table.items():
        print(f"| {run_name} | " + " | ".join(str(row.get(k, "-")) for k in keys) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architectures", default="null,resnet50-fastai-head")
    parser.add_argument("--slides", type=int, default=24, help="slides of the many-slide scan (null model)")
    parser.add_argument(
        "--resnet-slides", type=int, default=2, help="slides of ResNet50's many-slide scan (CPU is slow)"
    )
    parser.add_argument("--width", type=int, default=2304)
    parser.add_argument("--height", type=int, default=2304)
    parser.add_argument("--mpp", type=float, default=0.486)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="each block in batches of its own (the CPU's default); by default batches fill "
        "across blocks, slides and actor calls (a GPU's default), the feeder's figures",
    )
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--ceiling-batches", type=int, default=10)
    parser.add_argument(
        "--one-slide-scan",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also scan 1 slide alone, for the floor any run pays (a second Ray start: "
        "--no-one-slide-scan halves a smoke run, as bench/gpu_report.py --cpu does)",
    )
    parser.add_argument(
        "--compare-with",
        metavar="CHECKOUT",
        default=None,
        help="another checkout's engine beside this one, runs alternating (--resnet-slides slides per run)",
    )
    parser.add_argument("--executors", default="ray", help="with --compare-with: ray, in-process, or both")
    parser.add_argument("--repeats", type=int, default=2, help="with --compare-with: runs per engine")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--slides-from",
        type=Path,
        default=None,
        metavar="DIR",
        help="scan these *.tif slides instead of writing synthetic ones (bench/gpu_report.py)",
    )
    # child mode
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--slide-dir", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        scan_once(args)
        return

    from pcam_scan.model.predictor import PredictorSettings
    from pcam_scan.model.random_model import write_random_checkpoint
    from pcam_scan.synth import SlideSpec, SynthSpec, write_synthetic_dataset

    cores = args.num_cpus or os.cpu_count() or 1
    architectures = args.architectures.split(",")
    most = max(args.slides if a == "null" else args.resnet_slides for a in architectures)
    rows: dict[str, dict[str, object]] = {}
    packing = "each block alone" if args.deterministic else "filled across blocks"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        slide_dir = args.slides_from or folder / "slides"
        if args.slides_from is None:
            spec = SynthSpec(SlideSpec(args.width, args.height, args.mpp), math.ceil(most / 2), most // 2, seed=11)
            writer = multiprocessing.get_context("spawn").Process(
                target=write_synthetic_dataset, args=(slide_dir, spec)
            )
            writer.start()
            writer.join()
        if args.compare_with:
            compare_engines(args, slide_dir, folder)
            return
        for arch in architectures:
            checkpoint = folder / f"{arch}.safetensors"
            write_random_checkpoint(checkpoint, arch)
            n = args.slides if arch == "null" else args.resnet_slides
            one = run_child(args, slide_dir, folder, checkpoint, 1, f"{arch}-1")[0] if args.one_slide_scan else None
            many, peaks = run_child(args, slide_dir, folder, checkpoint, n, f"{arch}-{n}")
            settings = PredictorSettings(batch_size=args.batch_size, compile=args.compile, cpu_threads=1)
            ceiling, device = model_ceiling(checkpoint, settings, args.ceiling_batches)
            rate = many["patches"] / many["wall_s"]  # the whole scan: Ray start, planning, blocks
            per_core = rate / cores
            rows[arch] = {
                "engine": many["engine"],
                "slides (many)": n,
                "patches scanned": many["patches"],
                "end-to-end patches/s": f"{rate:,.0f}",
                "scan seconds (Ray start, planning, blocks)": f"{many['wall_s']:.1f}",
                "scan seconds, 1 slide (what any run costs)": f"{one['wall_s']:.1f}" if one else "-",
                "patches/s once Ray is up (planning, blocks, finalize)": (
                    f"{many['patches'] / many['after_ray_s']:,.0f}"
                ),
                "scan seconds once Ray is up": f"{many['after_ray_s']:.1f}",
                "patches/s per CPU core": f"{per_core:,.0f}",
                "cores to feed 65k/s": f"{65_000 / per_core:,.1f}",
                "cores to feed 104k/s": f"{104_000 / per_core:,.1f}",
                f"model-only ceiling ({device}, 1 thread)": f"{ceiling:,.0f}",
                "bytes crossing / scored cell": f"{many['bytes_per_cell']:,.0f}",
                "  over region bytes / cell": f"{many['bytes_per_cell'] / many['region_bytes_per_cell']:.2f}",
                f"useful batch share ({packing})": f"{many['useful_share']:.3f}",
                "first prediction s, 1 slide": f"{one['first_s']:.1f}" if one else "-",
                f"first prediction s, {n} slides": f"{many['first_s']:.1f}",
                "driver CPU-s per slide": f"{many['driver_cpu_s'] / n:.2f}",
                **{f"peak RSS MB, {role}": f"{mb:,.0f}" for role, mb in sorted(peaks.items())},
                "failed slides": ",".join(many["failed"]) or "none",
            }
    print(
        f"{args.width}x{args.height} px at {args.mpp} um/px, stride {args.stride}, batch {args.batch_size}, "
        f"{cores} CPU cores\n"
    )
    keys = list(dict.fromkeys(k for row in rows.values() for k in row))
    print("| figure | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    for key in keys:
        print(f"| {key} | " + " | ".join(str(rows[a].get(key, "-")) for a in rows) + " |")


if __name__ == "__main__":
    main()
