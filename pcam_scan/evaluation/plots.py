"""PNG plots of the slide-level ROC and the lesion-level FROC.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global figure
state), so plotting works on headless machines and from any thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pcam_scan.evaluation.froc import FrocCurve, FrocScore
from pcam_scan.evaluation.slide_auc import AucResult
from pcam_scan.outputs import atomic_output
from pcam_scan.wording import count_noun

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _finish(fig: Figure, axes: Axes, labels: tuple[str, str, str], path: str | Path) -> Path:
    """Axis labels (x, y, title), legend, and the PNG written through the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    axes.set_ylim(0, 1.01)
    axes.set_xlabel(labels[0])
    axes.set_ylabel(labels[1])
    axes.set_title(labels[2])
    axes.legend(loc="lower right")
    target = Path(path)
    with atomic_output(target, overwrite=True) as tmp:
        FigureCanvasAgg(fig).print_png(str(tmp))
    return target


def plot_roc(result: AucResult, path: str | Path) -> Path:
    """The ROC curve (straight segments, so tied scores draw the diagonal that the AUC counts as
    one half) with the AUC and its interval in the legend."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.add_subplot()
    pct = round(result.level * 100)
    ax.plot(
        result.fpr,
        result.tpr,
        color="#1f4e79",
        label=f"AUC {result.auc:.3f} ({pct}% CI {result.ci_low:.3f}-{result.ci_high:.3f})",
    )
    ax.plot([0, 1], [0, 1], linestyle=":", color="#999999")
    ax.set_xlim(0, 1)
    labels = (
        "False positive rate (normal slides)",
        "True positive rate (tumour slides)",
        f"Slide-level ROC ({result.n_positive} tumour, {result.n_negative} normal)",
    )
    return _finish(fig, ax, labels, path)


def plot_froc(curve: FrocCurve, score: FrocScore, path: str | Path) -> Path:
    """The FROC curve, with the sensitivities at the scored FP rates marked."""
    from matplotlib.figure import Figure

    rates = ", ".join(f"{r:g}" for r in score.fp_rates)
    fig = Figure(figsize=(6, 5), dpi=100)
    ax = fig.add_subplot()
    ax.plot(curve.fps_per_slide, curve.sensitivity, color="#000000", label="FROC")
    ax.plot(
        score.fp_rates,
        score.sensitivities,
        "o",
        color="#c0392b",
        label=f"score {score.score:.3f} (mean at {rates} FPs)",
    )
    ax.set_xscale("symlog", linthresh=0.25)
    labels = (
        "Average number of false positives per slide",
        "Metastasis detection sensitivity",
        f"Lesion-level FROC ({count_noun(curve.n_lesions, 'lesion')}, {count_noun(curve.n_slides, 'slide')})",
    )
    return _finish(fig, ax, labels, path)
