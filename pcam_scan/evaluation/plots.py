"""PNG plots of the slide-level ROC, the lesion-level FROC and reliability diagrams.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global figure
state), so plotting works on headless machines and from any thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pcam_scan.evaluation.calibration import CalibrationReport
from pcam_scan.evaluation.froc import OFFICIAL_SWEEP_RULE, FrocCurve, FrocScore, froc_score
from pcam_scan.evaluation.slide_auc import AucResult
from pcam_scan.outputs import atomic_output
from pcam_scan.wording import count_noun

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _finish(fig: Figure, axes: Axes, labels: tuple[str, str, str], path: str | Path) -> Path:
    """Axis labels (x, y, title), legend, and the PNG written through the Agg canvas. The
    y range has a margin so that a curve along 0 or 1 is not hidden by the frame."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    axes.set_ylim(-0.03, 1.03)
    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    axes.set_title(labels[2])
    axes.legend(loc="lower right")
    target = Path(path)
    with atomic_output(target, overwrite=True) as tmp:
        # matplotlib's stubs leave print_png unannotated
        FigureCanvasAgg(fig).print_png(str(tmp))  # type: ignore[no-untyped-call]
    return target


def plot_roc(result: AucResult, path: str | Path) -> Path:
    """The ROC curve (straight segments, so tied scores draw the diagonal that the AUC counts as
    one half) with the AUC and its interval in the legend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot()
    pct = round(result.level * 100)
    ax.plot([0, 1], [0, 1], linestyle=":", color="#999999", label="chance")
    ax.plot(
        result.fpr,
        result.tpr,
        color="#1f4e79",
        linewidth=2.5,
        marker="o",
        markersize=4,
        zorder=3,
        clip_on=False,  # at AUC = 1 the curve runs along the frame: draw it over the frame
        label=f"AUC {result.auc:.3f} ({pct}% CI {result.ci_low:.3f}-{result.ci_high:.3f})",
    )
    ax.set_xlim(-0.03, 1.03)
    labels = (
        "False positive rate (normal slides)",
        "True positive rate (tumour slides)",
        f"Slide-level ROC ({result.n_positive} tumour, {result.n_negative} normal)",
    )
    return _finish(fig, ax, labels, path)


def plot_froc(curve: FrocCurve, score: FrocScore, path: str | Path, keeping_lowest: FrocCurve | None = None) -> Path:
    """The official FROC curve with every point of the sweep marked (a degenerate curve of one
    or two points stays visible), the sensitivities at the scored FP rates, the unofficial curve
    that keeps the lowest threshold (dashed, labelled as not official), and the sweep's rule."""
    from matplotlib.figure import Figure

    rates = ", ".join(f"{r:g}" for r in score.fp_rates)
    fig = Figure(figsize=(7, 5.6), dpi=100)
    ax = fig.add_subplot()
    fig.subplots_adjust(bottom=0.22, top=0.93)
    if keeping_lowest is not None:
        unofficial = froc_score(keeping_lowest, score.fp_rates)
        ax.plot(
            keeping_lowest.fps_per_slide,
            keeping_lowest.sensitivity,
            "--",
            color="#7f8c8d",
            marker="s",
            markersize=4,
            clip_on=False,
            label=f"NOT official: lowest threshold kept (score {unofficial.score:.3f})",
        )
    ax.plot(
        curve.fps_per_slide,
        curve.sensitivity,
        color="#000000",
        marker="o",
        markersize=5,
        linewidth=2,
        clip_on=False,
        zorder=3,
        label=f"official FROC ({count_noun(len(curve.thresholds), 'point')} of the sweep)",
    )
    last = int(np.argmax(curve.fps_per_slide))
    far = max(score.fp_rates)
    if curve.fps_per_slide[last] < far:  # np.interp holds the end value past the curve
        ax.plot(
            [curve.fps_per_slide[last], far],
            [curve.sensitivity[last]] * 2,
            ":",
            color="#000000",
            label="held past the last point (as the score's interpolation does)",
        )
    detected = ", ".join(f"{d:.3g}" for d in score.lesions_detected)
    ax.plot(
        score.fp_rates,
        score.sensitivities,
        "D",
        color="#c0392b",
        zorder=4,
        clip_on=False,
        label=f"score {score.score:.3f} (mean at {rates} FPs)\nlesions detected: {detected} of {curve.n_lesions}",
    )
    ax.set_xscale("symlog", linthresh=0.25)
    ax.set_xlim(left=-0.02)
    fig.text(0.02, 0.015, _wrap(OFFICIAL_SWEEP_RULE, 110), fontsize=8, color="#333333")
    labels = (
        "Average number of false positives per slide",
        "Metastasis detection sensitivity",
        f"Lesion-level FROC ({count_noun(curve.n_lesions, 'lesion')}, {count_noun(curve.n_slides, 'slide')})",
    )
    return _finish(fig, ax, labels, path)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def plot_reliability(curves: dict[str, CalibrationReport], path: str | Path, title: str) -> Path:
    """Reliability diagram: per equal-width bin, the tumour rate against the mean P(tumour), one
    line per curve (e.g. before / after temperature scaling), ECE and Brier in the legend; the
    diagonal is perfect calibration. Points are sized by the bin's share of the predictions."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5.5), dpi=100)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle=":", color="#999999", label="perfect calibration")
    for (name, report), colour in zip(curves.items(), ("#c0392b", "#1f4e79", "#27ae60", "#8e44ad")):
        bins = report.bins_width
        keep = [i for i, c in enumerate(bins.counts) if c]
        share = np.asarray([bins.counts[i] for i in keep], np.float64) / report.n
        ece, brier = report.ece_width, report.brier
        ax.plot(
            [bins.mean_probability[i] for i in keep],
            [bins.positive_rate[i] for i in keep],
            "-",
            color=colour,
            label=f"{name}: ECE {ece.value:.3f} ({ece.ci_low:.3f}-{ece.ci_high:.3f}), Brier {brier.value:.3f}",
        )
        ax.scatter(
            [bins.mean_probability[i] for i in keep],
            [bins.positive_rate[i] for i in keep],
            s=15 + 400 * share,
            color=colour,
            zorder=3,
            clip_on=False,
        )
    ax.set_xlim(-0.03, 1.03)
    n = next(iter(curves.values())).n if curves else 0
    labels = (
        "Mean P(tumour) in the bin (15 equal-width bins)",
        "Tumour rate in the bin",
        f"{title} ({count_noun(n, 'prediction')})",
    )
    return _finish(fig, ax, labels, path)
