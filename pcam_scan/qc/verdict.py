"""A slide's QC verdict from its flags: the share of its tissue per reason, and pass / warn /
not assessable (the limits and their reasons: pcam_scan.defaults, QC_*)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pcam_scan.qc.flags import BLUR, EXCLUDING, REASONS
from pcam_scan.qc.settings import QcSettings

PASS = "pass"
WARN = "warn"
NOT_ASSESSABLE = "not assessable"
NOT_RUN = "not run"
VERDICTS = (PASS, WARN, NOT_ASSESSABLE)


@dataclass(frozen=True)
class QcVerdict:
    """The verdict, the share of tissue per reason and excluded in all, and why (one line)."""

    verdict: str
    shares: dict[str, float] = field(default_factory=dict)
    excluded_share: float = 0.0
    reason: str = ""

    @property
    def assessable(self) -> bool:
        return self.verdict != NOT_ASSESSABLE


def tissue_shares(flags: npt.ArrayLike, tissue: npt.ArrayLike) -> tuple[dict[str, float], float]:
    """Share of tissue cells per reason, and the share excluded (ink, fold or bubble)."""
    on_tissue = np.asarray(tissue, dtype=bool)
    cells = np.asarray(flags, dtype=np.uint8)[on_tissue]
    n = max(int(on_tissue.sum()), 1)
    shares = {name: float(np.count_nonzero(cells & bit)) / n for name, bit in REASONS.items()}
    return shares, float(np.count_nonzero(cells & EXCLUDING)) / n


def slide_verdict(flags: npt.ArrayLike, tissue: npt.ArrayLike, settings: QcSettings) -> QcVerdict:
    """Not assessable past either limit; warn past the warn share; pass otherwise."""
    shares, excluded = tissue_shares(flags, tissue)
    blur = shares["blur"]
    flagged = float(np.count_nonzero(np.asarray(flags)[np.asarray(tissue, dtype=bool)] & (EXCLUDING | BLUR)))
    flagged /= max(int(np.count_nonzero(tissue)), 1)
    if excluded > settings.max_excluded_share:
        return QcVerdict(NOT_ASSESSABLE, shares, excluded, f"{excluded:.0%} of the tissue excluded")
    if blur > settings.max_blur_share:
        return QcVerdict(NOT_ASSESSABLE, shares, excluded, f"{blur:.0%} of the tissue out of focus")
    if flagged > settings.warn_share:
        worst = max(shares, key=lambda name: shares[name])
        return QcVerdict(WARN, shares, excluded, f"{flagged:.0%} of the tissue flagged (mostly {worst})")
    return QcVerdict(PASS, shares, excluded, "")
