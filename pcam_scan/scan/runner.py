"""A scan request from start to end: resolve it once, open the store, run it on an executor.

The core never picks Ray: the command-line entry points choose the executor (in process, or
`cluster.executor.ray_executor`) and hand it in, so dependencies point one way only.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pcam_scan.errors import ConfigError
from pcam_scan.model.checkpoint import load_checkpoint
from pcam_scan.model.settings import SCAN_CPU_THREADS, PredictorSettings
from pcam_scan.qc.settings import QcSettings
from pcam_scan.scan.driver import Executor, SlideJob, already_complete, scan_slides
from pcam_scan.scan.inputs import collect_slides
from pcam_scan.scan.outcome import ScanLedger, SlideOutcome
from pcam_scan.scan.progress import ScanProgress
from pcam_scan.scan.settings import ModelRef, ScanRun, ScanSettings
from pcam_scan.store import HeatmapStore, RunIdentity, unique_slide_ids
from pcam_scan.store.identity import ModelCalibration


@dataclass(frozen=True)
class Placement:
    """Where a scan runs, which never changes its results: a Ray cluster's address (None: a
    local Ray for the run), the local Ray's CPUs, GPU actors to ask for, or this process."""

    address: str | None = None
    num_cpus: int | None = None
    gpus: int | None = None
    in_process: bool = False

    def __post_init__(self) -> None:
        if self.gpus is not None and self.gpus < 1:
            raise ConfigError(f"--gpus {self.gpus} must be at least 1")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"--num-cpus {self.num_cpus} must be at least 1")


@dataclass(frozen=True)
class ScanRequest:
    """Everything a scan needs, as the command line (or an API caller) gave it, validated."""

    slides: tuple[str, ...]
    checkpoint: str
    store_uri: str
    settings: ScanSettings = field(default_factory=ScanSettings)
    placement: Placement = field(default_factory=Placement)

    @classmethod
    def from_args(cls, args: argparse.Namespace, slides: Sequence[str | Path]) -> ScanRequest:
        """The request of `scan` / `submit` options: the one place they become settings."""
        predictor = PredictorSettings(
            device=args.device,
            batch_size=args.batch_size,
            tta=args.tta,
            compile=args.compile,
            deterministic=args.deterministic,
            cpu_threads=SCAN_CPU_THREADS,
        )
        settings = ScanSettings(
            stride_px=args.stride,
            block_cells=args.block_cells,
            mpp_override_um_px=args.mpp,
            slide_backend=args.slide_backend,
            predictor=predictor,
            qc=None if args.no_qc else QcSettings(),
            stain_normalise=args.stain_normalise,
            stain_reference=args.stain_reference,
        )
        placement = Placement(args.address, args.num_cpus, args.gpus, args.in_process)
        return cls(tuple(str(p) for p in slides), args.model, args.store, settings, placement)

    def to_json(self) -> str:
        """The request as JSON, to travel in a Ray job's runtime environment."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ScanRequest:
        try:
            doc = json.loads(text)
            settings = ScanSettings.from_dict(doc.pop("settings"))
            placement = Placement(**doc.pop("placement"))
            return cls(**{**doc, "slides": tuple(doc["slides"])}, settings=settings, placement=placement)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ConfigError(f"malformed scan request: {err}") from None


ExecutorFactory = Callable[[ScanRun, Placement], AbstractContextManager[Executor]]
"""Opens where the scan runs (in process, or a Ray session) for the length of a run."""


def resolve_run(request: ScanRequest) -> ScanRun:
    """The request's scan resolved against its checkpoint, once: the model's id and geometry
    with the scan's stride. A bad checkpoint or stride is refused before the store is touched."""
    loaded = load_checkpoint(request.checkpoint, "cpu")
    calibration = loaded.metadata.calibration
    model = ModelRef(
        str(Path(request.checkpoint).resolve()),
        loaded.model_id,
        None if calibration is None else calibration.temperature,
        None if calibration is None else calibration.fitted_on(),
    )
    return ScanRun.resolve(request.settings, model, loaded.metadata.geometry())


def run_scan(
    request: ScanRequest,
    open_executor: ExecutorFactory,
    progress: ScanProgress | None = None,
    ledger: ScanLedger | None = None,
) -> list[SlideOutcome]:
    """Scan the request's slides into its store on the executor `open_executor` gives; one
    outcome per slide (held in `ledger` as they come, for a run that stops early)."""
    run = resolve_run(request)  # the executor's model stage loads its own copy, where it runs
    ids = unique_slide_ids(collect_slides(request.slides))
    jobs = [SlideJob(slide_id, str(path)) for slide_id, path in ids.items()]
    calibration = ModelCalibration(run.model.temperature, run.model.calibration_fitted_on)
    identity = RunIdentity(run.model.model_id, run.identity(), calibration=calibration)
    store = HeatmapStore.open(request.store_uri, identity, mode="a")
    complete = already_complete(jobs, store)
    if len(complete) == len(jobs):  # nothing to scan: no model, no Ray
        return scan_slides(jobs, store, None, progress, ledger, complete)
    with open_executor(run, request.placement) as executor:
        return scan_slides(jobs, store, executor, progress, ledger, complete)
