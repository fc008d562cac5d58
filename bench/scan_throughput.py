"""End-to-end scan throughput next to the model-only ceiling of the same configuration.

Makes synthetic slides, scans them through the real Ray pipeline (read tasks -> model actors ->
Zarr writes), then times the same model alone on uint8 patches already on the device. Prints
end-to-end patches/s, the ceiling, their ratio, and the seconds a Camelyon16-size slide would
take at the measured rate. A benchmark: prints figures, asserts nothing.

    python bench/scan_throughput.py                               # ResNet50, stride 32, 96 px
    python bench/scan_throughput.py --architecture tiny-cnn --slides 2 --width 4096 --height 3072
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pcam_scan.model.checkpoint import load_checkpoint
from pcam_scan.model.predictor import Predictor, PredictorSettings
from pcam_scan.model.random_model import write_random_checkpoint
from pcam_scan.scan.progress import ScanProgress
from pcam_scan.scan.runner import ScanRequest, run_scan
from pcam_scan.scan.settings import ScanSettings
from pcam_scan.synth import SlideSpec, SynthSpec, write_synthetic_dataset

CAMELYON16_L0_PX = (100_000, 200_000)
CAMELYON16_MPP = 0.243


def model_ceiling(checkpoint: Path, settings: PredictorSettings, batches: int) -> tuple[float, str]:
    """Patches/s of the scoring module alone on uint8 patches already on the device."""
    predictor = Predictor(load_checkpoint(checkpoint, "cpu"), settings)
    px = predictor.metadata.patch_px
    rng = np.random.default_rng(0)
    patches = torch.from_numpy(rng.integers(0, 256, (settings.batch_size, px, px, 3), dtype=np.uint8))
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
    return batches * settings.batch_size / (time.perf_counter() - started), str(predictor.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", default="resnet50-fastai-head")
    parser.add_argument("--slides", type=int, default=2)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--height", type=int, default=3072)
    parser.add_argument("--mpp", type=float, default=0.486)
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--tta", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--ceiling-batches", type=int, default=20)
    parser.add_argument("--c16-tissue-fraction", type=float, default=0.3,
                        help="share of a Camelyon16 slide's cells that hold tissue (for the extrapolation)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = SynthSpec(SlideSpec(args.width, args.height, args.mpp), math.ceil(args.slides / 2), args.slides // 2, seed=11)
        write_synthetic_dataset(folder / "slides", spec)
        checkpoint = folder / "model.safetensors"
        write_random_checkpoint(checkpoint, args.architecture)
        settings = ScanSettings(stride_px=args.stride, tta=args.tta, batch_size=args.batch_size, compile=args.compile)
        request = ScanRequest(
            slides=tuple(str(p) for p in sorted((folder / "slides").glob("*.tif"))),
            checkpoint=str(checkpoint),
            store_uri=str(folder / "bench.zarr"),
            settings=settings,
            num_cpus=args.num_cpus,
        )
        progress = ScanProgress()
        wall_started = time.perf_counter()
        outcomes = run_scan(request, progress)
        wall = time.perf_counter() - wall_started
        assert progress.blocks_started is not None and progress.finished is not None
        pipeline_s = progress.finished - progress.blocks_started
        patches = progress.patches_done
        e2e = patches / pipeline_s
        # on the CPU the model actor gets all cores but one (the reads'); time it the same way
        actor_threads = min(8, max(1, (args.num_cpus or os.cpu_count() or 2) - 1))
        predictor_settings = PredictorSettings(batch_size=args.batch_size, tta=args.tta, compile=args.compile,
                                               cpu_threads=actor_threads)
        ceiling, device = model_ceiling(checkpoint, predictor_settings, args.ceiling_batches)
    failed = [o.slide_id for o in outcomes if o.failed]
    cells = math.prod(math.ceil(side * CAMELYON16_MPP / (args.stride * 0.972)) for side in CAMELYON16_L0_PX)
    c16_patches = cells * args.c16_tissue_fraction
    print(f"model {args.architecture}, stride {args.stride}, batch {args.batch_size}, tta {args.tta}, "
          f"compile {args.compile}, device {device}")
    print(f"slides {len(outcomes)} ({args.width}x{args.height} px at {args.mpp} um/px), failed {failed or 'none'}")
    print(f"patches scanned          {patches}")
    print(f"wall incl. Ray + plan    {wall:.1f} s")
    print(f"block pipeline           {pipeline_s:.1f} s")
    print(f"end-to-end               {e2e:,.0f} patches/s")
    print(f"model-only ceiling       {ceiling:,.0f} patches/s")
    print(f"ratio e2e / ceiling      {e2e / ceiling:.2f}")
    print(f"Camelyon16-size slide    {c16_patches:,.0f} patches ({args.c16_tissue_fraction:.0%} tissue) "
          f"-> {c16_patches / e2e:,.0f} s at the end-to-end rate")


if __name__ == "__main__":
    main()
