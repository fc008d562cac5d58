"""Run a batch scan in this process: no Ray, same functions. For tests, notebooks, debugging."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence

from pcam_scan.geometry import PatchGeometry
from pcam_scan.model.predictor import Predictor
from pcam_scan.scan.batch import SlideJob
from pcam_scan.scan.planning import SlidePlan, plan_or_reason
from pcam_scan.scan.settings import ScanSettings
from pcam_scan.scan.work import BlockResult, BlockWork, describe_error, read_works, write_work
from pcam_scan.store.blocks import BlockWriter


class InProcessExecutor:
    """Plans and scans slides one after the other with one predictor in this process."""

    def __init__(self, predictor: Predictor, geometry: PatchGeometry) -> None:
        self.predictor = predictor
        self.geometry = geometry

    def plan(
        self, jobs: Sequence[SlideJob], model_geometry: PatchGeometry, settings: ScanSettings
    ) -> Iterator[tuple[SlideJob, SlidePlan | str]]:
        for job in jobs:
            yield job, plan_or_reason(job.slide_id, job.path, model_geometry, settings)

    def run(self, works: Sequence[BlockWork], writers: Mapping[str, BlockWriter]) -> Iterator[BlockResult]:
        for work, patches, read_s, error in read_works(works, self.geometry):
            rc = work.block.block_rc
            if patches is None:
                yield BlockResult(work.slide_id, rc, 0, read_s, error=error)
                continue
            started = time.perf_counter()
            try:
                probs = self.predictor.predict(patches)
                predict_s = time.perf_counter() - started
                write_s = write_work(writers[work.slide_id], work, probs)
            except Exception as err:  # the slide fails with this message; the batch goes on
                yield BlockResult(work.slide_id, rc, 0, read_s, error=describe_error(err))
                continue
            yield BlockResult(work.slide_id, rc, len(patches), read_s, predict_s, write_s)
