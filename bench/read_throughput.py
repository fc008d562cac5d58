"""Read throughput: one region per block cut into strided patches vs one read per patch.

Prints patches/s of both paths at stride 32 (every PCam cell) and 96 (no overlap) on a synthetic
slide made for the run. A benchmark: prints figures, asserts nothing.

    python bench/read_throughput.py [--width 12288 --height 12288 --mpp 0.243] [--max-patches 3000]
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


def plan_for_stride(path: Path, stride_px: int) -> SlidePlan:
    """The scanner's own plan (read plane, grid, tissue, 32-cell blocks), shared by both paths."""
    run = ScanRun.resolve(ScanSettings(stride_px=stride_px), ModelRef("", "planning-only"), PatchGeometry())
    return plan_slide(path.stem, str(path), run)


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
    args = parser.parse_args()
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
