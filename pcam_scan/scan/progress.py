"""Progress of a scan: slides, blocks, patches/s and ETA, live on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ScanProgress:
    """Counts what finished and draws one status line; on a non-terminal, a line every few seconds."""

    def __init__(self, stream: TextIO | None = None, interval_s: float = 5.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = 0.2 if self.live else interval_s
        self.started = time.perf_counter()
        self.blocks_started: float | None = None  # when the scan's first slide began planning
        self.finished: float | None = None
        self.first_block: float | None = None  # when the first block's predictions came back
        self.model_batches: dict[str, tuple[int, int]] = {}  # model worker -> (batches, real patches)
        self._last_draw = 0.0
        self.slides_total = self.slides_done = 0
        self.blocks_total = self.blocks_done = 0
        self.patches_total = self.patches_done = 0

    def set_totals(self, slides: int, blocks: int, patches: int) -> None:
        self.slides_total, self.blocks_total, self.patches_total = slides, blocks, patches
        self.blocks_started = time.perf_counter()
        self.draw(force=True)

    def add_work(self, blocks: int, patches: int) -> None:
        """A slide was planned: its pending blocks and patches join the totals (they grow while
        slides are still planning, so the ETA firms up as planning ends)."""
        self.blocks_total += blocks
        self.patches_total += patches
        self.draw()

    def block_done(self, n_patches: int, model: tuple[str, int, int] | None = None) -> None:
        """Count a block; `model` is its model worker's running (worker, batches, real patches)."""
        if model is not None:
            worker, batches, useful = model
            self.model_batches[worker] = (batches, useful)
        if self.first_block is None:
            self.first_block = time.perf_counter()
        self.blocks_done += 1
        self.patches_done += n_patches
        self.draw()

    def slide_done(self) -> None:
        self.slides_done += 1
        self.draw(force=True)

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.patches_done / elapsed
        left = self.patches_total - self.patches_done
        eta = f"{left / rate:.0f}s" if rate > 0 and left > 0 else "-"
        return (
            f"slides {self.slides_done}/{self.slides_total}  blocks {self.blocks_done}/{self.blocks_total}  "
            f"patches {self.patches_done}/{self.patches_total}  {rate:.0f} patches/s  ETA {eta}"
        )

    def draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_draw < self.interval_s:
            return
        self._last_draw = now
        if self.live:
            self.stream.write("\r\033[K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.finished = time.perf_counter()
        self.draw(force=True)
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
