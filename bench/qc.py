"""QC's figures on a synthetic batch with injected artefacts, side by side in one run.

It writes the batch (3072 px square slides at the demo's 0.486 um/px, seeds the QC thresholds were not tuned on):
- `ink_normal_*`: normal slides with 4 marker strokes (blue, green, black, red), 80 um wide;
- `mixed_*`: tumour slides with 2 strokes, an out-of-focus disc (sigma 2 um), a fold, a bubble;
- `blurred_*`: slides with a large out-of-focus disc (more than the documented share of tissue);
- `clean_normal_*`, `clean_tumour_*`: no artefact.
Then it prints:
1. Dice of each QC mask against the injected truth on the cell grid (tissue cells), beside the
   same Dice for two classical blur rules implemented from their published descriptions (copied
   code: none): HistoQC's BlurDetectionModule (absolute Laplacian of the grey image, smoothed by
   a Gaussian of `blur_radius` px, below `blur_threshold` = blurry; defaults 7 and 0.1) and
   Slideflow's Gaussian filter (grey image at 4 um/px, Gaussian sigma 3, |Laplacian| below 0.02 =
   blurry); a cell is blurry for a baseline when half its pixels are;
2. slide verdicts, and how many normal slides with ink come out positive with the demo's trained
   model (the issue's reproduction), QC off vs on;
3. QC's cost: the null-model pipeline over the same slides, QC off vs on (same command,
   alternated `--repeats` times, off-on then on-off; in process by default, `--ray` for the Ray
   pipeline): median and min-max of wall seconds and of CPU seconds, and QC's own CPU seconds
   as a share of the QC-off pipeline's CPU seconds, figures a shared machine's load hardly moves:
   its measures (`measure_block` timed alone on every block region) and its store work (the
   batch's plan, block writes, finalize and heatmap reads replayed through the store with QC and
   without, the difference); QC reads nothing more than the scan (it measures the block regions
   the scan reads).
A benchmark: prints figures, asserts nothing.

    PYTHONPATH=. python bench/qc.py --num-cpus 2                 # trains the demo model first
    PYTHONPATH=. python bench/qc.py --model demo/model.safetensors --out /tmp/qc-bench
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

BATCH = (
    # (prefix, count, tumour, artefacts)
    ("ink_normal", 2, False, {"ink_strokes": 4}),
    ("mixed", 1, True, {"ink_strokes": 2, "blur_discs": 1, "blur_radius_um": 300.0, "folds": 1, "bubbles": 1}),
    ("blurred", 1, False, {"blur_discs": 1, "blur_radius_um": 700.0}),
    ("clean_normal", 1, False, {}),
    ("clean_tumour", 1, True, {}),
)
KINDS = ("ink", "blur", "fold", "bubble")
STORE_REPLAYS = 7
"""Replays of each slide's store work, with QC and without, for QC's CPU in the store."""


def write_batch(out: Path, width: int, height: int, mpp: float) -> list[Path]:
    from pcam_scan.synth.artefacts import ArtefactSpec
    from pcam_scan.synth.ground_truth import write_qc_truth
    from pcam_scan.synth.layout import plan_slide
    from pcam_scan.synth.slide_writer import write_planned_slide
    from pcam_scan.synth.spec import SlideSpec, slide_seed

    spec = SlideSpec(width_px=width, height_px=height, mpp_um_px=mpp)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for prefix, count, tumour, fields in BATCH:
        for index in range(count):
            path = out / f"{prefix}_{index + 1:03d}.tif"
            paths.append(path)
            truth = out / "qc" / f"{path.stem}_qc.npz"
            if path.exists() and truth.exists():
                continue
            plan = plan_slide(spec, slide_seed(97, tumour, index + 10 * len(prefix)), tumour)
            slide = write_planned_slide(path, plan, None, ArtefactSpec(**fields))  # type: ignore[arg-type]
            write_qc_truth(slide, truth)
            print(f"  wrote {path.name}", file=sys.stderr)
    return paths


def train_demo_model(root: Path, num_cpus: int | None) -> Path:
    """The demo's own training steps (`pcam-scan demo --quick`: its synthetic training slides and
    its tiny CNN)."""
    from pcam_scan.cli import main
    from pcam_scan.commands.demo import QUICK, DemoPaths, demo_steps

    paths = DemoPaths(root)
    if paths.model.exists():
        return paths.model
    steps = dict(demo_steps(paths, QUICK, num_cpus))
    for title in ("make synthetic training slides", "train a small CNN on patches mined from the training slides"):
        print(f"  demo step: {title}", file=sys.stderr)
        if main(steps[title]) != 0:
            raise SystemExit(f"the demo step {title!r} failed")
    return paths.model


def scan(
    slides: list[Path], model: Path, store: Path, qc: bool, num_cpus: int | None, ray: bool
) -> tuple[float, float]:
    """One scan of `slides` into a fresh `store`: the pipeline's wall seconds (blocks started to
    done) and this process's CPU seconds over the whole scan (all of it with the in-process
    executor; NaN on Ray, whose workers are other processes)."""
    import shutil

    from pcam_scan.model.settings import SCAN_CPU_THREADS, PredictorSettings
    from pcam_scan.qc.settings import QcSettings
    from pcam_scan.scan.inprocess import in_process_executor
    from pcam_scan.scan.progress import ScanProgress
    from pcam_scan.scan.runner import Placement, ScanRequest, run_scan
    from pcam_scan.scan.settings import ScanSettings

    shutil.rmtree(store, ignore_errors=True)
    settings = ScanSettings(
        predictor=PredictorSettings(device="cpu", cpu_threads=SCAN_CPU_THREADS), qc=QcSettings() if qc else None
    )
    request = ScanRequest(
        tuple(map(str, slides)), str(model), str(store), settings, Placement(num_cpus=num_cpus, in_process=not ray)
    )
    progress = ScanProgress(stream=open(os.devnull, "w"))
    cpu_started = time.process_time()
    if ray:
        from cluster.executor import ray_executor

        outcomes = run_scan(request, ray_executor, progress)
    else:
        outcomes = run_scan(request, in_process_executor, progress)
    failed = [o for o in outcomes if o.failed]
    if failed:
        raise SystemExit(f"scan failed: {failed[0].slide_id}: {failed[0].message}")
    assert progress.blocks_started is not None and progress.finished is not None
    cpu_s = float("nan") if ray else time.process_time() - cpu_started
    return progress.finished - progress.blocks_started, cpu_s


def qc_own_cpu_seconds(slides: list[Path]) -> tuple[float, int]:
    """QC's own CPU seconds over the batch, and its block count: `measure_block` timed alone on
    every block region the scan reads (read first, untimed), so the figure does not move with the
    machine's other load the way a difference of two pipeline runs does."""
    from pcam_scan.geometry import PatchGeometry, plan_blocks
    from pcam_scan.qc.block import measure_block
    from pcam_scan.qc.settings import QcSettings
    from pcam_scan.scan.reading import read_block_region
    from pcam_scan.scan.settings import ScanSettings
    from pcam_scan.slide import open_slide, plan_grid
    from pcam_scan.tissue import detect_tissue

    settings, geometry, total, n_blocks = ScanSettings(), PatchGeometry(), 0.0, 0
    for path in slides:
        with open_slide(str(path)) as slide:
            read_plan, grid = plan_grid(slide.info, geometry)
            tissue = detect_tissue(slide, grid, settings.tissue)
            for block in plan_blocks(grid, tissue.cells, settings.block_cells):
                region = read_block_region(slide, read_plan, grid.geometry, block)
                cells = tissue.cells[block.cell_slices()]
                started = time.process_time()
                measure_block(region, cells, geometry.halo_px, geometry.cell_px, tissue.eosin_reference, QcSettings())
                total += time.process_time() - started
                n_blocks += 1
    return total, n_blocks


def qc_store_cpu_seconds(store_path: Path, out: Path, repeats: int) -> float:
    """QC's CPU seconds in the store over the batch: each slide of the QC-on null scan replayed
    through the store's API (plan, each block's chunk write, finalize, the diagnosis's heatmap
    read) into a fresh store with QC and into one without, alternated `repeats` times; per slide
    the difference of the fastest of each, summed (slide by slide, so a burst of the machine's
    other load spoils one replay, not the figure). The part of QC's cost that
    `qc_own_cpu_seconds` does not see: its two arrays, their pyramids and the verdict."""
    import shutil

    from pcam_scan.geometry import plan_blocks
    from pcam_scan.qc.block import BlockQc
    from pcam_scan.qc.settings import QcSettings
    from pcam_scan.store import HeatmapStore, RunIdentity
    from pcam_scan.store.queries import read_heatmap

    source = HeatmapStore.open(str(store_path))
    total = 0.0
    for slide_id in source.list_slides():
        record, grid = source.stored_slide(slide_id).record, source.read_grid(slide_id)
        tissue, block_cells, prob = (
            source.read_tissue(slide_id),
            source.block_cells(slide_id),
            source.read_prob(slide_id),
        )
        qc = source.read_qc(slide_id)
        assert qc is not None
        best: dict[bool, float] = {False: float("inf"), True: float("inf")}
        for repeat in range(repeats):
            for with_qc in (False, True) if repeat % 2 == 0 else (True, False):
                target = out / f"replay-qc-{with_qc}.zarr"
                shutil.rmtree(target, ignore_errors=True)
                store = HeatmapStore.open(str(target), RunIdentity("replay", {"bench": "qc store work"}), mode="a")
                started = time.process_time()
                store.plan_slide(
                    slide_id, record, grid, tissue, block_cells, QcSettings().to_dict() if with_qc else None
                )
                writer = store.chunk_writer(slide_id)
                for block in plan_blocks(grid, tissue, block_cells):
                    cells = block.cell_slices()
                    writer.write(block, prob[cells], BlockQc(qc[0][cells], qc[1][cells]) if with_qc else None)
                store.finalize_slide(slide_id, {"predict": 1.0})
                read_heatmap(store, slide_id)
                best[with_qc] = min(best[with_qc], time.process_time() - started)
        total += best[True] - best[False]
    return total


def dice(predicted: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(overlap, predicted, true) cell counts, summed over slides before the ratio."""
    return int(np.count_nonzero(predicted & truth)), int(np.count_nonzero(predicted)), int(np.count_nonzero(truth))


def _cells_from_pixels(mask: np.ndarray, n_rows: int, n_cols: int, cell_px: int) -> np.ndarray:
    return mask[: n_rows * cell_px, : n_cols * cell_px].reshape(n_rows, cell_px, n_cols, cell_px).mean(axis=(1, 3))


def baseline_blur(slide_path: Path, tissue: np.ndarray) -> dict[str, np.ndarray]:
    """The two classical blur rules on the slide, as cell masks (bench-only pixel reads)."""
    from scipy import ndimage

    from pcam_scan.geometry import PatchGeometry
    from pcam_scan.slide import choose_read_plan, open_slide, plan_grid

    with open_slide(str(slide_path)) as slide:
        read_plan, grid = plan_grid(slide.info, PatchGeometry())
        cell_px = grid.geometry.cell_px
        size = (grid.cols * cell_px, grid.rows * cell_px)
        rgb = slide.read_px_region(read_plan, (0, 0), size).astype(np.float32) / 255.0
        coarse_plan = choose_read_plan(slide.info, 4.0)
        scale = coarse_plan.px_mpp_um_px / grid.px_mpp_um_px
        coarse_size = (max(1, int(size[0] / scale)), max(1, int(size[1] / scale)))
        coarse = slide.read_px_region(coarse_plan, (0, 0), coarse_size).astype(np.float32) / 255.0
    weights = np.array([0.2125, 0.7154, 0.0721], np.float32)  # the usual rgb -> grey luminance
    grey = rgb @ weights
    # HistoQC: |Laplacian| of grey, Gaussian-smoothed with sigma = blur_radius, <= threshold is blurry
    histoqc = ndimage.gaussian_filter(np.abs(ndimage.laplace(grey)), sigma=7) <= 0.1
    # Slideflow: grey at 4 um/px, Gaussian sigma 3, |Laplacian| <= 0.02 is blurry
    grey_coarse = coarse @ weights
    slideflow_coarse = np.abs(ndimage.laplace(ndimage.gaussian_filter(grey_coarse, sigma=3))) <= 0.02
    zoom = (grey.shape[0] / slideflow_coarse.shape[0], grey.shape[1] / slideflow_coarse.shape[1])
    slideflow = ndimage.zoom(slideflow_coarse.astype(np.float32), zoom, order=0)[: grey.shape[0], : grey.shape[1]]
    slideflow = np.pad(slideflow, ((0, grey.shape[0] - slideflow.shape[0]), (0, grey.shape[1] - slideflow.shape[1])))
    rows, cols = tissue.shape
    return {
        "HistoQC blur": (_cells_from_pixels(histoqc.astype(np.float32), rows, cols, cell_px) >= 0.5) & tissue,
        "Slideflow Gaussian": (_cells_from_pixels(slideflow > 0.5, rows, cols, cell_px) >= 0.5) & tissue,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/pcam-qc-bench"))
    parser.add_argument("--model", type=Path, default=None, help="a trained checkpoint (default: train the demo's)")
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--width", type=int, default=3072)
    parser.add_argument("--height", type=int, default=3072)
    parser.add_argument("--mpp", type=float, default=0.486)
    parser.add_argument(
        "--repeats", type=int, default=3, help="QC off/on pipeline runs each, alternated (off-on, then on-off, ...)"
    )
    parser.add_argument(
        "--ray",
        action="store_true",
        help="time the null model on the Ray pipeline (default: the in-process executor, the same read, "
        "QC, model and write functions in one process: steadier on a shared 2-core machine)",
    )
    args = parser.parse_args()

    from pcam_scan.model.random_model import write_random_checkpoint
    from pcam_scan.qc.flags import REASONS
    from pcam_scan.store import HeatmapStore
    from pcam_scan.store.queries import read_heatmap

    started = time.perf_counter()
    print("writing the batch ...", file=sys.stderr)
    slides = write_batch(args.out / "slides", args.width, args.height, args.mpp)
    model = args.model or train_demo_model(args.out / "demo", args.num_cpus)
    null = args.out / "null.safetensors"
    write_random_checkpoint(null, "null")

    print("scanning ...", file=sys.stderr)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    cpu_seconds: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(args.repeats):
        for qc in (False, True) if repeat % 2 == 0 else (True, False):  # ABBA: drift in load cancels
            wall_s, cpu_s = scan(slides, null, args.out / f"null-qc-{qc}.zarr", qc, args.num_cpus, ray=args.ray)
            seconds[qc].append(wall_s)
            cpu_seconds[qc].append(cpu_s)
    qc_cpu_s, qc_blocks = qc_own_cpu_seconds(slides)
    qc_store_s = qc_store_cpu_seconds(args.out / "null-qc-True.zarr", args.out, STORE_REPLAYS)
    scan(slides, model, args.out / "demo-qc-False.zarr", False, args.num_cpus, ray=False)
    scan(slides, model, args.out / "demo-qc-True.zarr", True, args.num_cpus, ray=False)

    qc_store = HeatmapStore.open(str(args.out / "null-qc-True.zarr"))
    totals: dict[str, list[int]] = {}
    verdicts = []
    for path in slides:
        heatmap = read_heatmap(qc_store, path.stem)
        truth = np.load(args.out / "slides" / "qc" / f"{path.stem}_qc.npz")
        tissue = heatmap.tissue
        assert heatmap.qc_flags is not None
        for kind in KINDS:
            counts = dice((heatmap.qc_flags & REASONS[kind]) != 0, truth[kind] & tissue)
            totals.setdefault(f"pcam-scan QC {kind}", [0, 0, 0])
            totals[f"pcam-scan QC {kind}"] = [a + b for a, b in zip(totals[f"pcam-scan QC {kind}"], counts)]
        for name, mask in baseline_blur(path, tissue).items():
            counts = dice(mask, truth["blur"] & tissue)
            totals.setdefault(name, [0, 0, 0])
            totals[name] = [a + b for a, b in zip(totals[name], counts)]
        stored = qc_store.stored_slide(path.stem)
        blur_truth = float(np.count_nonzero(truth["blur"] & tissue)) / max(int(tissue.sum()), 1)
        verdicts.append((path.stem, stored.qc_verdict, stored.qc_reason, blur_truth))

    where = f"Ray with {args.num_cpus or os.cpu_count()} CPUs" if args.ray else "the in-process executor"
    print(
        f"\nQC on a synthetic batch: {len(slides)} slides {args.width}x{args.height} px at {args.mpp} um/px, "
        f"scanned on {where} ({os.cpu_count()} cores, shared); cells of 31 um"
    )
    print("\n1. Dice against the injected truth (cells on tissue, summed over the batch)")
    print(f"{'mask':<28} {'Dice':>6} {'cells flagged':>14} {'cells true':>11}")
    for name, (overlap, predicted, true) in totals.items():
        score = 2 * overlap / (predicted + true) if predicted + true else float("nan")
        print(f"{name:<28} {score:>6.3f} {predicted:>14} {true:>11}")

    print("\n2. Slide verdicts (QC on) and calls of the demo's trained model, QC off vs on")
    print(f"{'slide':<18} {'true blur share':>15} {'QC verdict':<15} {'call QC off':<15} {'call QC on':<15} reason")
    off = HeatmapStore.open(str(args.out / "demo-qc-False.zarr"))
    on = HeatmapStore.open(str(args.out / "demo-qc-True.zarr"))
    ink_positive = {False: 0, True: 0}
    for name, verdict, reason, blur_truth in verdicts:
        calls = {}
        for qc, store in ((False, off), (True, on)):
            diagnosis = store.stored_slide(name).diagnosis or {}
            calls[qc] = f"{diagnosis.get('call')} {float(diagnosis.get('probability', float('nan'))):.2f}"  # type: ignore[arg-type]
            if name.startswith("ink_normal") and diagnosis.get("call") == "positive":
                ink_positive[qc] += 1
        print(f"{name:<18} {blur_truth:>15.1%} {str(verdict):<15} {calls[False]:<15} {calls[True]:<15} {reason}")
    n_ink = sum(count for prefix, count, _, _ in BATCH if prefix == "ink_normal")
    print(
        f"normal slides with ink called positive: {ink_positive[False]}/{n_ink} QC off, "
        f"{ink_positive[True]}/{n_ink} QC on"
    )

    print(f"\n3. QC's cost: null-model pipeline over the batch on {where}, QC off vs on, {args.repeats} runs each")
    print(f"{'':<8} {'wall s median':>14} {'(min-max)':>13} {'CPU s median':>13} {'(min-max)':>13}")
    for qc in (False, True):
        wall, cpu = np.array(seconds[qc]), np.array(cpu_seconds[qc])
        print(
            f"{'QC on' if qc else 'QC off':<8} {np.median(wall):>14.1f} {f'({wall.min():.1f}-{wall.max():.1f})':>13} "
            f"{np.median(cpu):>13.1f} {f'({cpu.min():.1f}-{cpu.max():.1f})':>13}"
        )
    wall_overhead = np.median(seconds[True]) / np.median(seconds[False]) - 1.0
    cpu_overhead = np.median(cpu_seconds[True]) / np.median(cpu_seconds[False]) - 1.0
    own_share = qc_cpu_s / np.median(cpu_seconds[False])
    print(f"QC overhead, medians of the pipeline runs: {wall_overhead:+.1%} wall, {cpu_overhead:+.1%} CPU")
    store_share = qc_store_s / np.median(cpu_seconds[False])
    print(
        f"QC's own CPU time, measure_block alone on the {qc_blocks} block regions: {qc_cpu_s:.2f} s = "
        f"{own_share:.1%} of the QC-off pipeline's median CPU seconds (the steadiest of these figures)"
    )
    print(
        f"QC's CPU time in the store, each slide's store work replayed with QC minus without (fastest of "
        f"{STORE_REPLAYS} each): {qc_store_s:.2f} s = {store_share:.1%}; "
        f"QC in all: {own_share + store_share:.1%}"
    )
    print("slide reads: the same block regions (QC adds none)")
    print(f"\nbench wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
