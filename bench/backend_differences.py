"""Where OpenSlide and tiffslide read different pixels: per level, on files `auto` leaves to OpenSlide.

Reads ten 256 x 256 regions per level (at whole level pixels) with both backends and prints the
largest and mean absolute difference per RGB value and the share of values that differ, for a
synthetic JPEG TIFF of odd size (fractional downsamples, made for the run) and the real files
given. A benchmark: prints figures, asserts nothing (docs/slides.md holds its table).

    python bench/backend_differences.py [tests/data/histolab/tcga-cr-7395-01a-01-ts1.svs ...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from pcam_scan.slide_backends import open_slide_file
from pcam_scan.synth import SlideSpec, write_synthetic_slide

REGION_PX = 256
REGIONS_PER_LEVEL = 10


def level_differences(path: Path) -> list[tuple[int, float, int, float, float]]:
    """(level, downsample, max, mean, share differing) of each level of `path`."""
    files = [open_slide_file(path, backend) for backend in ("openslide", "tiffslide")]
    rows = []
    try:
        rng = np.random.default_rng(1)
        for level, (width, height) in enumerate(files[0].metadata.level_wh):
            downsample = files[0].metadata.level_downsamples[level]
            size = (min(width, REGION_PX), min(height, REGION_PX))
            diffs = []
            for _ in range(REGIONS_PER_LEVEL):
                x, y = int(rng.integers(0, width - size[0] + 1)), int(rng.integers(0, height - size[1] + 1))
                l0_xy = (round(x * downsample), round(y * downsample))
                a, b = (np.asarray(f.read_region(l0_xy, level, size).convert("RGB"), np.int16) for f in files)
                diffs.append(np.abs(a - b).ravel())
            diff = np.concatenate(diffs)
            rows.append((level, downsample, int(diff.max()), float(diff.mean()), float((diff > 0).mean())))
    finally:
        for f in files:
            f.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slides", nargs="*", type=Path, help="more slide files to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = SlideSpec(width_px=2113, height_px=2117, mpp_um_px=0.486, jpeg_quality=60)
        synthetic = write_synthetic_slide(Path(tmp) / "odd_size.tif", spec, seed=5, tumour=True).path
        print("| file | level (downsample) | max | mean | share differing |\n|---|---|---|---|---|")
        for path in [synthetic, *args.slides]:
            for level, downsample, most, mean, share in level_differences(path):
                print(f"| {path.name} | {level} ({downsample:.5f}) | {most} | {mean:.2f} | {share:.0%} |")


if __name__ == "__main__":
    main()
