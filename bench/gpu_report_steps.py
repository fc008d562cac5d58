"""Two steps of bench/gpu_report.py that no other bench does (each prints figures, asserts nothing).

slides: write `--count` benchmark slides with bench/camelyon_slide.py, one process per slide.

naive: the peer a scanner is measured against: a torch DataLoader whose workers call
`read_region` once per 96 px patch (through the product's `Slide`, which opens each slide once
per worker), on the tissue cells the product's own detector finds, with the same scoring module
(normalise, network, softmax), bf16 and channels_last on CUDA. Prints one JSON line last:
{"patches": N, "seconds": S, "patches_per_s": R}; the first batch (worker start-up, cuDNN
autotuning) is not timed.

    python bench/gpu_report_steps.py slides --out /tmp/slides --count 6 --width 50000 --height 100000
    python bench/gpu_report_steps.py naive --slides /tmp/slides --device cuda --workers 15
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from camelyon_slide import CamelyonSlideSpec, write_camelyon_size_slide
from torch.utils.data import DataLoader, Dataset

from pcam_scan.geometry import PatchGeometry
from pcam_scan.model.checkpoint import load_checkpoint
from pcam_scan.model.random_model import write_random_checkpoint
from pcam_scan.model.scoring import PatchScorer
from pcam_scan.slide import ReadPlan, Slide, open_slide, plan_grid
from pcam_scan.tissue import detect_tissue


def _write_one(job: tuple[Path, CamelyonSlideSpec]) -> float:
    path, spec = job
    return write_camelyon_size_slide(path, spec, log=False)["seconds"]


def write_slides(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (
            args.out / f"bench_{i:03d}.tif",
            CamelyonSlideSpec(
                width_px=args.width,
                height_px=args.height,
                tissue_cells=args.tissue_cells,
                texture_px=args.texture_px,
                seed=i,
            ),
        )
        for i in range(args.count)
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, min(args.count, os.cpu_count() or 1))) as pool:
        seconds = list(pool.map(_write_one, jobs))
    print(
        f"{len(jobs)} slides of {args.width} x {args.height} px in {time.perf_counter() - started:.1f} s "
        f"(each {min(seconds):.1f}-{max(seconds):.1f} s) under {args.out}"
    )


class PatchPerRead(Dataset):
    """One uint8 (96, 96, 3) patch per item, read by its own `read_region` call."""

    def __init__(self, items: list[tuple[str, int, int]], plans: dict[str, ReadPlan], geometry: PatchGeometry) -> None:
        self.items, self.plans, self.geometry = items, plans, geometry
        self._open: dict[str, Slide] = {}  # per worker: each worker process has its own copy

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        path, px_x, px_y = self.items[index]
        slide = self._open.get(path) or self._open.setdefault(path, open_slide(path))
        size = self.geometry.patch_px
        return torch.from_numpy(np.array(slide.read_px_region(self.plans[path], (px_x, px_y), (size, size))))


def tissue_patches(
    slide_dir: Path, limit: int
) -> tuple[list[tuple[str, int, int]], dict[str, ReadPlan], PatchGeometry]:
    """Read-plane top-left corners of the patches of every tissue cell, evenly thinned to `limit`."""
    geometry = PatchGeometry()
    items, plans = [], {}
    for path in sorted(slide_dir.glob("*.tif")):
        with open_slide(path) as slide:
            plan, grid = plan_grid(slide.info, geometry)
            cells = detect_tissue(slide, grid).cells
        plans[str(path)] = plan
        for row, col in zip(*np.nonzero(cells)):
            x0, y0, _, _ = grid.patch_px_box((int(row), int(col)))
            items.append((str(path), x0, y0))
    step = max(1, len(items) // limit)
    return items[::step][:limit], plans, geometry


def naive_peer(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    items, plans, geometry = tissue_patches(args.slides, args.patches)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "model.safetensors"
        write_random_checkpoint(checkpoint, args.architecture)
        loaded = load_checkpoint(checkpoint, device)
    scorer = PatchScorer(loaded.network, loaded.metadata, channels_last=on_cuda).eval()
    if on_cuda:
        scorer = scorer.to(memory_format=torch.channels_last)
    loader = DataLoader(
        PatchPerRead(items, plans, geometry),
        batch_size=args.batch_size,
        num_workers=args.workers,
        pin_memory=on_cuda,
        persistent_workers=False,
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else nullcontext()
    done, timed_from, started = 0, 0, time.perf_counter()
    with torch.inference_mode(), autocast:
        for i, batch in enumerate(loader):
            probs = scorer(batch.to(device, non_blocking=True))
            done += len(batch)
            if i == 0:
                probs.float().cpu()  # wait for the first batch: the timing starts after it
                timed_from, started = done, time.perf_counter()
        if on_cuda:
            torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    timed = done - timed_from
    print(
        f"naive peer: {done} patches from {len(plans)} slides, {args.workers} workers, {args.architecture} on {device}"
    )
    print(json.dumps({"patches": timed, "seconds": seconds, "patches_per_s": timed / seconds if timed else None}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    s = steps.add_parser("slides", help="write benchmark slides")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--count", type=int, default=2)
    s.add_argument("--width", type=int, default=50_000)
    s.add_argument("--height", type=int, default=100_000)
    s.add_argument("--tissue-cells", type=int, default=90_000)
    s.add_argument("--texture-px", type=int, default=2048)
    n = steps.add_parser("naive", help="DataLoader peer: one read_region per patch")
    n.add_argument("--slides", type=Path, required=True)
    n.add_argument("--device", default="cuda")
    n.add_argument("--architecture", default="resnet50-fastai-head")
    n.add_argument("--workers", type=int, default=15)
    n.add_argument("--patches", type=int, default=120_000)
    n.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()
    write_slides(args) if args.step == "slides" else naive_peer(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
