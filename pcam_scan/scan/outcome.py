"""Each slide's outcome as data, and the summary table the CLI prints from it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pcam_scan.store.schema import SlideAttempt
from pcam_scan.wording import count_noun

UNFINISHED_STATE = "unfinished"
"""A slide's state in the record of a run that stopped (an error, Ctrl-C, SIGTERM) before it."""
UNFINISHED_MESSAGE = "the run stopped before this slide finished; scan again to resume"


@dataclass
class SlideOutcome:
    """What a scan did with one slide; the CLI turns a list of these into a table and exit code."""

    slide_id: str
    path: str
    state: str  # "complete", "already complete", "failed"
    message: str | None = None
    n_patches: int = 0
    tissue_mm2: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    diagnosis: dict[str, object] = field(default_factory=dict)
    qc_verdict: str | None = None
    """QC's verdict on the slide (pass, warn, not assessable); None when QC was not run."""

    @property
    def failed(self) -> bool:
        return self.state == "failed"


class ScanLedger:
    """Every slide a scan set out to do, and what became of each so far. The driver settles each
    outcome into it as it comes, so a run that stops early still records what it attempted,
    completed and failed (pcam_scan.store.run_records.recorded_if_raised)."""

    def __init__(self) -> None:
        self.slide_ids: list[str] = []
        self.outcomes: dict[str, SlideOutcome] = {}

    def begin(self, slide_ids: Iterable[str]) -> None:
        self.slide_ids = list(slide_ids)

    def settle(self, outcome: SlideOutcome) -> None:
        self.outcomes[outcome.slide_id] = outcome

    def attempts(self) -> list[SlideAttempt]:
        """One per slide, in the scan's order; a slide with no outcome yet is `unfinished`."""
        return [
            SlideAttempt(slide_id, outcome.state, outcome.message or "")
            if (outcome := self.outcomes.get(slide_id)) is not None
            else SlideAttempt(slide_id, UNFINISHED_STATE, UNFINISHED_MESSAGE)
            for slide_id in self.slide_ids
        ]


def summary_table(outcomes: Sequence[SlideOutcome]) -> str:
    """A fixed-width table: slide, status, patches, tissue mm2, seconds (read / predict), the
    default-rule call, QC's verdict, and the failure message."""
    header = (
        f"{'slide':<28} {'status':<17} {'patches':>9} {'tissue mm2':>10} {'read s':>7} {'pred s':>7} "
        f"{'total s':>8}  {'P(meta)':>7} {'call':<14} {'category':<8} {'QC':<14}  message"
    )
    lines = [header, "-" * len(header)]
    for o in outcomes:
        total = sum(o.seconds.values())
        probability = o.diagnosis.get("probability")
        shown = f"{probability:.3f}" if isinstance(probability, float) else "-"
        lines.append(
            f"{o.slide_id[:28]:<28} {o.state:<17} {o.n_patches:>9} {o.tissue_mm2:>10.2f} "
            f"{o.seconds.get('read', 0.0):>7.1f} {o.seconds.get('predict', 0.0):>7.1f} {total:>8.1f}  "
            f"{shown:>7} {str(o.diagnosis.get('call', '-')):<14} {str(o.diagnosis.get('category', '-')):<8} "
            f"{o.qc_verdict or ('-' if o.failed else 'not run'):<14}  {o.message or ''}"
        )
    failed = sum(o.failed for o in outcomes)
    lines.append(f"{count_noun(len(outcomes), 'slide')}: {len(outcomes) - failed} ok, {failed} failed")
    return "\n".join(lines)
