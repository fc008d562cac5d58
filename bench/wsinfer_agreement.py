"""Does `wsinfer run` with a model from `pcam-scan export-model --format wsinfer` give pcam-scan's
P(tumour) at WSInfer's patch centres? And where they differ, is it the resampling?

For each checkpoint (a random-init `--architecture`, whose outputs hug 0.5, and each `--checkpoint`,
e.g. the model `pcam-scan demo --quick` trains) and each slide case, it exports the model, runs
`wsinfer run` (bench/wsinfer_side_by_side.py's runner: WSInfer's own venv, `-n 1`, offline
registry) and `pcam-scan scan --in-process --no-qc --slide-backend openslide` (WSInfer 0.6.1 reads
through OpenSlide too) at `--stride`, and compares at every WSInfer patch whose centre is a
pcam-scan cell centre (the cell whose patch is the same square of tissue).

Slide cases (one `pcam-scan synth` tumour slide, the same tissue area in each):
- `l0-0.972`: level 0 at 0.972 um/px. WSInfer reads 96 px at level 0 and its Resize(96) is a
  no-op; pcam-scan reads level 0 as is: both see the same pixels, so what remains is everything
  but resampling (export, normalisation, patch cutting).
- `l0-0.243-pyramid`: level 0 at 0.243 um/px with the writer's 2x pyramid, so an exact 0.972
  level 2 (4x4 box means of the raw pixels, JPEG-coded again). WSInfer reads 384 px at level 0
  and resizes 384 -> 96 with torchvision Resize on the PIL image (PIL bilinear, antialiased: a
  triangle over 8 level-0 px); pcam-scan reads level 2 as is.
- `l0-0.243-only`: the same level-0 pixels written without reduced levels: pcam-scan resamples
  level 0 by 4 with PIL bicubic (antialiased, over 16 level-0 px), WSInfer as above.

Per case it prints patches compared, share within 1e-3, max and median |delta p|, and the mean
|delta| of the 96x96 RGB patches each tool feeds the model (uint8 levels, over a sample), so
probability differences can be traced to pixels. A benchmark: prints figures, asserts nothing.

    python bench/wsinfer_agreement.py --checkpoint demo=/tmp/demo/model.safetensors
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wsinfer_side_by_side import (  # noqa: E402
    ensure_offline_registry,
    read_wsinfer_rows,
    run_pcam_scan,
    run_wsinfer,
    wsinfer_slide_folder,
)

CASES = ("l0-0.972", "l0-0.243-pyramid", "l0-0.243-only")
WITHIN = 1e-3
PIXEL_SAMPLE = 40


@dataclass(frozen=True)
class Agreement:
    """One (model, slide) comparison."""

    compared: int
    wsinfer_patches: int
    misaligned: int
    within: float
    max_delta: float
    median_delta: float
    pixel_mean_delta: float
    pixel_max_delta: int
    p_low: float
    p_high: float


def synth_slide(folder: Path, mpp_um_px: float, side_um: float, seed: int) -> Path:
    """One synthetic tumour slide of `side_um` square at `mpp_um_px`."""
    side_px = str(round(side_um / mpp_um_px))
    command = [sys.executable, "-m", "pcam_scan.cli", "synth", str(folder), "--tumor", "1", "--normal", "0"]
    command += ["--width", side_px, "--height", side_px, "--mpp", str(mpp_um_px), "--seed", str(seed), "--quiet"]
    subprocess.run(command, check=True)
    (slide,) = sorted(folder.glob("*.tif"))
    return slide


def level0_only(source: Path, out: Path, mpp_um_px: float) -> Path:
    """`source`'s level 0 (decoded) written again as a one-level tiled JPEG TIFF: no pyramid."""
    import tifffile

    from pcam_scan.synth.pyramid import PyramidLayout, write_pyramid_tiff
    from pcam_scan.synth.spec import SlideSpec

    with tifffile.TiffFile(source) as tif:
        level0 = tif.pages[0].asarray()
    height, width = level0.shape[:2]
    layout = PyramidLayout(((width, height),), SlideSpec.tile_px)

    def strips() -> Iterator[np.ndarray]:
        for row in range(0, height, layout.strip_rows):
            yield level0[row : row + layout.strip_rows]

    write_pyramid_tiff(out, strips(), layout, mpp_um_px, SlideSpec.jpeg_quality, f"{source.stem} level 0 only")
    return out


def tumour_column(model_dir: Path) -> str:
    config = json.loads((model_dir / "config.json").read_text())
    from pcam_scan.model.interop.wsinfer_config import EXTRA_KEY

    return f"prob_{config['class_names'][config[EXTRA_KEY]['tumour_index']]}"


def patch_pixels(slide_path: Path, boxes: list[tuple[int, int, int, int]], cells: list[tuple[int, int]]) -> np.ndarray:
    """|WSInfer's patch - pcam-scan's patch| per pixel (uint8 levels), stacked over the sample:
    WSInfer's is OpenSlide level 0 -> PIL RGB -> torchvision Resize(96); pcam-scan's is the
    cell's patch from `Slide.read_px_region` on its read plan."""
    from torchvision import transforms

    from pcam_scan.geometry import PatchGeometry
    from pcam_scan.slide import open_slide, plan_grid
    from pcam_scan.slide_backends import open_slide_file

    resize = transforms.Resize(size=96)
    deltas = []
    wsi = open_slide_file(slide_path, "openslide")  # level 0 through OpenSlide, as WSInfer reads
    with open_slide(slide_path, backend="openslide") as slide:
        plan, grid = plan_grid(slide.info, PatchGeometry())
        for (minx, miny, width, height), cell_rc in zip(boxes, cells, strict=True):
            theirs = np.asarray(resize(wsi.read_region((minx, miny), 0, (width, height)).convert("RGB")))
            x0, y0, x1, y1 = grid.patch_px_box(cell_rc)
            ours = slide.read_px_region(plan, (x0, y0), (x1 - x0, y1 - y0))
            deltas.append(np.abs(theirs.astype(np.int16) - ours.astype(np.int16)))
    wsi.close()
    return np.stack(deltas)


def compare(slide: Path, model_dir: Path, results: Path, store: Path) -> Agreement:
    """Each WSInfer patch against the pcam-scan cell whose patch has the same level-0 centre."""
    from pcam_scan.store import HeatmapStore
    from pcam_scan.store.queries import read_heatmap

    rows = read_wsinfer_rows(results)
    column = tumour_column(model_dir)
    heatmaps = HeatmapStore.open(str(store))
    (slide_id,) = heatmaps.list_slides()
    heatmap = read_heatmap(heatmaps, slide_id)
    grid = heatmap.grid
    deltas: list[float] = []
    theirs: list[float] = []
    boxes: list[tuple[int, int, int, int]] = []
    cells: list[tuple[int, int]] = []
    misaligned = 0
    for row in rows:
        box = (int(row["minx"]), int(row["miny"]), int(row["width"]), int(row["height"]))
        centre_l0 = (box[0] + box[2] / 2, box[1] + box[3] / 2)
        cell_rc = grid.l0_to_cell(centre_l0)
        if grid.cell_center_l0(cell_rc) != centre_l0:
            misaligned += 1  # no pcam-scan patch has this centre exactly
            continue
        if not (0 <= cell_rc[0] < grid.rows and 0 <= cell_rc[1] < grid.cols):
            continue
        ours = float(heatmap.prob[cell_rc])
        if np.isfinite(ours):
            theirs.append(float(row[column]))
            deltas.append(abs(theirs[-1] - ours))
            boxes.append(box)
            cells.append(cell_rc)
    delta = np.asarray(deltas)
    step = max(1, len(boxes) // PIXEL_SAMPLE)
    pixels = patch_pixels(slide, boxes[::step], cells[::step]) if boxes else np.zeros(1, dtype=np.int16)
    return Agreement(
        compared=len(deltas),
        wsinfer_patches=len(rows),
        misaligned=misaligned,
        within=float(np.mean(delta <= WITHIN)) if len(delta) else float("nan"),
        max_delta=float(delta.max()) if len(delta) else float("nan"),
        median_delta=float(np.median(delta)) if len(delta) else float("nan"),
        pixel_mean_delta=float(pixels.mean()),
        pixel_max_delta=int(pixels.max()),
        p_low=min(theirs, default=float("nan")),
        p_high=max(theirs, default=float("nan")),
    )


def make_case(case: str, folder: Path, side_um: float, seed: int) -> Path:
    """The case's slide, alone in `folder/case/` (WSInfer wants a folder of slides)."""
    if case == "l0-0.972":
        return synth_slide(folder / case, 0.972, side_um, seed)
    pyramid = folder / "l0-0.243-pyramid"
    if not pyramid.exists():
        synth_slide(pyramid, 0.243, side_um, seed)
    (slide,) = sorted(pyramid.glob("*.tif"))
    if case == "l0-0.243-pyramid":
        return slide
    (folder / case).mkdir()
    return level0_only(slide, folder / case / slide.name, 0.243)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", default=[], help="NAME=PATH, repeatable (trained models)")
    parser.add_argument("--architecture", default="tiny-cnn", help="of the random-init model ('' for none)")
    parser.add_argument("--wsinfer-venv", type=Path, default=Path("/work/wsinfer-venv"))
    parser.add_argument("--stride", type=int, default=32, help="pcam-scan's, px at 0.972 um/px")
    parser.add_argument("--side-um", type=float, default=1866.24, help="slide side (default 7680 px at 0.243)")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()

    from pcam_scan.model.interop.wsinfer_export import export_wsinfer
    from pcam_scan.model.random_model import write_random_checkpoint

    ensure_offline_registry()
    results: list[tuple[str, str, Agreement]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoints = dict(item.split("=", 1) for item in args.checkpoint)
        if args.architecture:
            random_path = folder / f"random-{args.architecture}.safetensors"
            write_random_checkpoint(random_path, args.architecture)
            checkpoints = {f"random-init {args.architecture}": str(random_path), **checkpoints}
        slides = {case: make_case(case, folder / "slides", args.side_um, args.seed) for case in args.cases.split(",")}
        for index, (name, checkpoint) in enumerate(checkpoints.items()):
            model_dir = folder / f"model-{index}"
            export_wsinfer(Path(checkpoint), model_dir, overwrite=False)
            for case, slide in slides.items():
                print(f"{name} on {case}: wsinfer run, pcam-scan scan", file=sys.stderr, flush=True)
                out = folder / f"run-{index}-{case}"
                run_wsinfer(args.wsinfer_venv, wsinfer_slide_folder(out, slide), model_dir, out / "wsinfer")
                extra = ("--no-qc", "--slide-backend", "openslide")
                run_pcam_scan(slide, Path(checkpoint), out / "scan.zarr", args.stride, True, extra)
                results.append((name, case, compare(slide, model_dir, out / "wsinfer", out / "scan.zarr")))
    print(
        f"one synthetic tumour slide of {args.side_um:.0f} um square, pcam-scan stride {args.stride}, "
        f"WSInfer 0.6.1 default grid (non-overlapping 96 px at 0.972 um/px); |delta p| on P(tumour)\n"
    )
    print(
        "| model | slide | WSInfer patches | compared | centres off a cell centre | within 1e-3 "
        "| max abs delta p | median abs delta p | mean / max abs delta pixel (uint8) | WSInfer's P min - max |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, case, a in results:
        print(
            f"| {name} | {case} | {a.wsinfer_patches} | {a.compared} | {a.misaligned} | {100 * a.within:.1f}% "
            f"| {a.max_delta:.2e} | {a.median_delta:.2e} | {a.pixel_mean_delta:.2f} / {a.pixel_max_delta} "
            f"| {a.p_low:.3f} - {a.p_high:.3f} |"
        )


if __name__ == "__main__":
    main()
