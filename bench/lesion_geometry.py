"""Benchmark (prints figures, asserts nothing): how well are lesions measured from a heatmap?

Synthetic lesions of exactly known size (`pcam_scan.synth.regular_lesions`: discs, squares and
ellipses whose longest diameters straddle the pN cut-offs 0.2 mm and 2 mm, at random sub-cell
offsets and angles) are "scanned" by ideal detectors: each cell's output is the training label of
its patch under the label rule (`pcam_scan.annotations.cell_labels`, rasterised at 1 read-plane px), i.e. a
model that has learnt its labels perfectly. One detector per rule ("pcam-any", "centre-majority").

Each lesion is measured two ways:
- before: the staircase of whole positive cells (area = cells, diameter = Feret over the cell
  corners), what pcam-scan did before sub-cell geometry;
- after: `pcam_scan.lesions.find_regions` (sub-cell iso-contour corrected for the label rule).

Printed per rule and method: the diameter error (um: signed median, median and 90th percentile of
its absolute value), median absolute area error (%), and pN agreement with the ground truth on the
lesions at least 40 um from a cut-off (and on all lesions). With --png, a picture of measured
against true diameter.

    python bench/lesion_geometry.py [--repeats 4] [--seed 0] [--png lesion_geometry.png]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from pcam_scan.annotations import Polygon, SlideAnnotations
from pcam_scan.annotations.cell_labels import tumour_cells_from_annotations
from pcam_scan.diagnosis.rule import MACRO_ABOVE_UM, MICRO_ABOVE_UM, size_category
from pcam_scan.geometry import LABEL_RULES, CellGrid, LabelRule, PatchGeometry
from pcam_scan.lesions import RegionSettings, feret_diameter_cells, find_regions, label_regions
from pcam_scan.synth.regular_lesions import LESION_KINDS, regular_lesion

SLIDE_MPP = 0.243
DIAMETERS_UM = (100, 150, 170, 185, 215, 230, 260, 400, 1000, 1800, 1950, 2050, 2200)
MARGIN_UM = 150.0
SAFE_FROM_CUT_UM = 40.0


@dataclass(frozen=True)
class Measured:
    rule: str
    kind: str
    true_um: float
    true_mm2: float
    before_um: float
    before_mm2: float
    after_um: float
    after_mm2: float


def measure_one(rule: LabelRule, kind: str, diameter_um: float, rng: np.random.Generator) -> Measured:
    """Place one lesion at a random offset and angle, scan it ideally, measure it both ways."""
    side_l0 = math.ceil((diameter_um + 2 * MARGIN_UM) / SLIDE_MPP)
    grid = CellGrid(side_l0, side_l0, SLIDE_MPP, 0.972, PatchGeometry(label_rule=rule))
    centre = tuple(side_l0 / 2 + rng.uniform(-64, 64, size=2))
    lesion = regular_lesion(kind, diameter_um, centre, rng.uniform(0, math.pi), SLIDE_MPP)  # type: ignore[arg-type]
    truth = SlideAnnotations(tumour=(Polygon("lesion", "Tumor", lesion.l0_xy),))
    heatmap = tumour_cells_from_annotations(truth, grid, subsamples=32).astype(np.float32)
    labels, _ = label_regions(heatmap.astype(np.float64), 0.5)
    sizes = np.bincount(labels.ravel())[1:]
    rows, cols = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    after = find_regions(heatmap, grid, RegionSettings(0.5))
    return Measured(
        rule,
        kind,
        diameter_um,
        lesion.area_mm2,
        before_um=feret_diameter_cells(rows, cols) * grid.cell_um,
        before_mm2=rows.size * grid.cell_area_mm2,
        after_um=max(r.diameter_um for r in after),
        after_mm2=sum(r.area_mm2 for r in after),
    )


def far_from_cut(diameter_um: float) -> bool:
    return all(abs(diameter_um - cut) >= SAFE_FROM_CUT_UM for cut in (MICRO_ABOVE_UM, MACRO_ABOVE_UM))


def summary_rows(results: list[Measured]) -> list[tuple[str, str, float, float, float, float, float, float]]:
    rows = []
    for rule in LABEL_RULES:
        mine = [m for m in results if m.rule == rule]
        truth_um = np.array([m.true_um for m in mine])
        truth_mm2 = np.array([m.true_mm2 for m in mine])
        safe = np.array([far_from_cut(m.true_um) for m in mine])
        truth_pn = np.array([size_category(u) for u in truth_um])
        for method in ("before", "after"):
            um = np.array([getattr(m, f"{method}_um") for m in mine])
            mm2 = np.array([getattr(m, f"{method}_mm2") for m in mine])
            err = um - truth_um
            pn = np.array([size_category(u) for u in um])
            rows.append(
                (
                    rule,
                    method,
                    float(np.median(err)),
                    float(np.median(np.abs(err))),
                    float(np.percentile(np.abs(err), 90)),
                    float(np.median(np.abs(mm2 / truth_mm2 - 1)) * 100),
                    float((pn == truth_pn)[safe].mean() * 100),
                    float((pn == truth_pn).mean() * 100),
                )
            )
    return rows


def save_picture(results: list[Measured], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharey=True)
    for ax, rule in zip(axes, LABEL_RULES):
        mine = [m for m in results if m.rule == rule]
        truth = np.array([m.true_um for m in mine])
        for method, colour in (("before", "tab:red"), ("after", "tab:blue")):
            err = np.array([getattr(m, f"{method}_um") for m in mine]) - truth
            label = "before: staircase of cells" if method == "before" else "after: sub-cell, rule-corrected"
            ax.scatter(truth, err, s=12, alpha=0.7, color=colour, label=label)
        for cut in (MICRO_ABOVE_UM, MACRO_ABOVE_UM):
            ax.axvline(cut, color="grey", linestyle=":", linewidth=1)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.axhspan(-20, 20, color="tab:green", alpha=0.1, label="target: |error| <= 20 um")
        ax.set_xscale("log")
        ax.set_xlabel("true longest diameter (um, log); dotted: pN cut-offs 0.2 and 2 mm")
        ax.set_title(f"label rule {rule}")
    axes[0].set_ylabel("measured minus true diameter (um)")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Lesion diameter error, ideal detectors on synthetic discs, squares and ellipses")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=4, help="placements per kind and size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", help="write a picture of the errors here")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    results = [
        measure_one(rule, kind, d, rng)
        for rule in LABEL_RULES
        for kind in LESION_KINDS
        for d in DIAMETERS_UM
        for _ in range(args.repeats)
    ]
    n = len(results) // len(LABEL_RULES)
    print(
        f"{n} lesions per rule ({', '.join(LESION_KINDS)}; {len(DIAMETERS_UM)} sizes "
        f"{DIAMETERS_UM[0]}-{DIAMETERS_UM[-1]} um; {args.repeats} placements each)"
    )
    print(
        f"{'rule':16s} {'method':7s} {'median diam err um':>19s} {'median |diam err| um':>21s} "
        f"{'p90 |diam err| um':>18s} "
        f"{'median |area err| %':>20s} {'pN agree >=40um from cut %':>27s} {'pN agree all %':>15s}"
    )
    for rule, method, med, med_abs, p90, area, pn_safe, pn_all in summary_rows(results):
        print(
            f"{rule:16s} {method:7s} {med:19.1f} {med_abs:21.1f} {p90:18.1f} {area:20.1f} {pn_safe:27.1f} "
            f"{pn_all:15.1f}"
        )
    if args.png:
        save_picture(results, args.png)
        print(f"picture: {args.png}")


if __name__ == "__main__":
    main()
