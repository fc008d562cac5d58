"""Scan one Camelyon16-size slide with the null model and print what it cost (a benchmark).

Writes the slide with bench/camelyon_slide.py (unless `--slide` names one), checks it the way a
user would (`pcam-scan info`: generic-tiff, its MPP), writes a null-model checkpoint (no model
compute: the figures are the engine's), runs `pcam-scan scan` as a child process while sampling
the peak RSS of every process under it, and prints:

- seconds to write the slide, planning seconds (the store's `plan` timing), total scan seconds;
- tissue and predicted cells, cells/s end to end;
- the store's size on disk;
- peak RSS per process (driver, Ray's daemons, each read worker and model actor).

    python bench/camelyon_scan.py --workdir /tmp/c16                 # 100k x 200k, ~350k cells
    python bench/camelyon_scan.py --workdir /tmp/c16 -- --in-process  # extra scan options after --
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from camelyon_slide import CamelyonSlideSpec, add_spec_arguments, spec_from_args, write_camelyon_size_slide
from process_tree import peak_table, run_monitored

from pcam_scan.model.names import NULL_MODEL
from pcam_scan.model.random_model import write_random_checkpoint
from pcam_scan.store import HeatmapStore

PCAM_SCAN = [sys.executable, "-m", "pcam_scan.cli"]


def folder_bytes(path: Path) -> int:
    """Bytes of every file under `path` (the store's size on disk, before block rounding)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def slide_info(slide: Path) -> dict[str, object]:
    """`pcam-scan info --json` of the slide: what OpenSlide makes of it."""
    out = subprocess.run([*PCAM_SCAN, "info", str(slide), "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def ensure_slide(args: argparse.Namespace, spec: CamelyonSlideSpec) -> tuple[Path, float | None]:
    """The slide to scan and the seconds it took to write (None when it was given or kept)."""
    if args.slide is not None:
        return args.slide, None
    slide = args.workdir / "camelyon_size.tif"
    if slide.exists() and args.reuse_slide:
        return slide, None
    started = time.perf_counter()
    write_camelyon_size_slide(slide, spec)
    return slide, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="folder for the slide, model and store")
    parser.add_argument("--slide", type=Path, default=None, help="scan this slide instead of writing one")
    parser.add_argument("--reuse-slide", action="store_true", help="keep a slide already in --workdir")
    parser.add_argument("--keep", action="store_true", help="keep the slide and the store afterwards")
    add_spec_arguments(parser)
    parser.add_argument("scan_options", nargs="*", help="extra `pcam-scan scan` options, after --")
    args = parser.parse_args()
    try:
        spec = spec_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    args.workdir.mkdir(parents=True, exist_ok=True)

    slide, write_s = ensure_slide(args, spec)
    info = slide_info(slide)
    checkpoint = args.workdir / "null.safetensors"
    write_random_checkpoint(checkpoint, NULL_MODEL)
    store = args.workdir / "scan.zarr"
    shutil.rmtree(store, ignore_errors=True)
    command = [*PCAM_SCAN, "scan", str(slide), "--model", str(checkpoint), "--store", str(store), *args.scan_options]
    run = run_monitored(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log = args.workdir / "scan.log"
    log.write_text(run.stdout)
    if run.returncode != 0:
        print(f"scan failed with exit code {run.returncode}; its output is in {log}", file=sys.stderr)
        return 1
    stored = HeatmapStore.open(str(store)).stored_slide(slide.stem)
    store_bytes = folder_bytes(store)
    read = info["pcam_read"]
    assert isinstance(read, dict)
    predicted = float(stored.predicted_cells or 0)
    print(
        f"slide                {slide} ({info['vendor']}, {info['l0_width']} x {info['l0_height']} px, "
        f"{info['mpp_um_px']:.4f} um/px, {slide.stat().st_size / 1e9:.2f} GB)"
    )
    print(
        f"read plan            level {read['level']} at {read['px_mpp_um_px']:.4f} um/px, "
        f"grid {read['cell_grid_rows_cols'][0]} x {read['cell_grid_rows_cols'][1]} cells"
    )
    print(f"slide written in     {'given' if write_s is None else f'{write_s:.1f} s'}")
    print(f"scan command         {' '.join(command[2:])}")
    print(f"status               {stored.status.state.value if stored.status else 'none'}")
    print(f"tissue cells         {stored.tissue_cells or 0:,.0f}")
    print(f"predicted cells      {predicted:,.0f}")
    print(f"planning seconds     {stored.seconds.get('plan', float('nan')):.1f} (store timing 'plan')")
    print("stage seconds        " + ", ".join(f"{k} {v:.1f}" for k, v in stored.seconds.items()))
    print(f"total scan seconds   {run.seconds:.1f} (the whole `pcam-scan scan` process, Ray start included)")
    print(f"cells/s end to end   {predicted / run.seconds:,.0f}")
    print(f"store size           {store_bytes / 1e6:,.2f} MB ({store})")
    print(
        f"largest process      {max(p.peak_mb for p in run.peaks):,.0f} MB peak RSS; "
        f"{len(run.peaks)} processes in the tree"
    )
    print(peak_table(run.peaks))
    if not args.keep:
        shutil.rmtree(store, ignore_errors=True)
        if args.slide is None and not args.reuse_slide:
            slide.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
