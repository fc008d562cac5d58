"""Peak memory and time to write one synthetic slide (prints figures, asserts nothing).

    python bench/synth_memory.py --width 25000 --height 50000 --mpp 0.972

The slide is written level 0 strip by strip with lower levels in scratch files, so peak RSS
should stay far below the slide's raw size (25,000 x 50,000 RGB = 3.75 GB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from process_tree import peak_rss_mb

from pcam_scan.synth import SlideSpec, write_synthetic_slide


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=25_000)
    parser.add_argument("--height", type=int, default=50_000)
    parser.add_argument("--mpp", type=float, default=0.972)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--normal", action="store_true", help="a normal slide (default: tumour)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the temporary slide (default: system temp)")
    args = parser.parse_args()

    spec = SlideSpec(width_px=args.width, height_px=args.height, mpp_um_px=args.mpp)
    baseline_mb = peak_rss_mb()
    last_report = [time.monotonic()]

    def on_rows(level: int, rows_done: int, level_rows: int) -> None:
        now = time.monotonic()
        if now - last_report[0] >= 15 or (level == 0 and rows_done == level_rows):
            last_report[0] = now
            rss = peak_rss_mb()
            print(f"  level {level}: {rows_done}/{level_rows} rows, peak RSS {rss:.0f} MB", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="synth-bench-", dir=args.out) as folder:
        path = Path(folder) / "bench.tif"
        start = time.perf_counter()
        slide = write_synthetic_slide(path, spec, args.seed, tumour=not args.normal, on_rows=on_rows)
        seconds = time.perf_counter() - start
        size_mb = path.stat().st_size / 1e6
    megapixels = args.width * args.height / 1e6
    print(
        f"slide            {args.width} x {args.height} px at {args.mpp} um/px ({megapixels:.0f} Mpx, "
        f"{'normal' if args.normal else 'tumour'}, {len(slide.lesions)} lesions)"
    )
    print(f"levels           {len(slide.level_wh)}: {slide.level_wh[0]} .. {slide.level_wh[-1]}")
    print(f"raw RGB size     {megapixels * 3 / 1000:.2f} GB; written TIFF {size_mb:.0f} MB")
    print(f"time             {seconds:.1f} s ({megapixels / seconds:.1f} Mpx/s)")
    print(f"peak RSS         {peak_rss_mb():.0f} MB (after imports: {baseline_mb:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
