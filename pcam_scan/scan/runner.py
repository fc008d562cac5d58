"""A scan request from start to end: checkpoint, store, an executor chosen by the caller, outcomes.

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
from pcam_scan.geometry import PatchGeometry
from pcam_scan.model.checkpoint import load_checkpoint
from pcam_scan.model.settings import SCAN_CPU_THREADS, PredictorSettings
from pcam_scan.scan.batch import Executor, SlideJob, scan_batch
from pcam_scan.scan.inputs import collect_slides
from pcam_scan.scan.outcome import SlideOutcome
from pcam_scan.scan.progress import ScanProgress
from pcam_scan.scan.settings import ScanSettings
from pcam_scan.store import HeatmapStore, RunIdentity, unique_slide_ids


@dataclass(frozen=True)
class ScanRequest:
    """Everything a scan needs, resolved from the command line (or built by a test)."""

    slides: tuple[str, ...]
    checkpoint: str
    store_uri: str
    settings: ScanSettings = field(default_factory=ScanSettings)
    address: str | None = None
    num_cpus: int | None = None
    gpus: int | None = None
    in_process: bool = False

    def __post_init__(self) -> None:
        if self.gpus is not None and self.gpus < 1:
            raise ConfigError(f"--gpus {self.gpus} must be at least 1")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"--num-cpus {self.num_cpus} must be at least 1")

    @classmethod
    def from_args(cls, args: argparse.Namespace, slides: Sequence[Path]) -> ScanRequest:
        model = PredictorSettings(
            device=args.device,
            batch_size=args.batch_size,
            tta=args.tta,
            compile=args.compile,
            deterministic=args.deterministic,
            cpu_threads=SCAN_CPU_THREADS,
        )
        settings = ScanSettings(
            stride_px=args.stride, block_cells=args.block_cells, mpp_override_um_px=args.mpp, model=model
        )
        return cls(
            slides=tuple(str(p) for p in slides),
            checkpoint=args.model,
            store_uri=args.store,
            settings=settings,
            address=args.address,
            num_cpus=args.num_cpus,
            gpus=args.gpus,
            in_process=args.in_process,
        )

    def to_json(self) -> str:
        """The request as JSON, to travel in a Ray job's runtime environment."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ScanRequest:
        try:
            doc = json.loads(text)
            settings = ScanSettings.from_dict(doc.pop("settings"))
            return cls(**{**doc, "slides": tuple(doc["slides"])}, settings=settings)
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"malformed scan request: {err}") from None


@dataclass(frozen=True)
class ScanRun:
    """What an executor needs besides the request: the model, as the driver resolved it."""

    request: ScanRequest
    checkpoint_path: str
    model_id: str
    model_geometry: PatchGeometry

    @property
    def geometry(self) -> PatchGeometry:
        return self.request.settings.geometry(self.model_geometry)


ExecutorFactory = Callable[[ScanRun], AbstractContextManager[Executor]]
"""Opens where the scan runs (in process, or a Ray session) for the length of a run."""


def run_scan(
    request: ScanRequest, open_executor: ExecutorFactory, progress: ScanProgress | None = None
) -> list[SlideOutcome]:
    """Scan the request's slides into its store on the executor `open_executor` gives; one
    outcome per slide."""
    loaded = load_checkpoint(request.checkpoint, "cpu")
    run = ScanRun(request, str(Path(request.checkpoint).resolve()), loaded.model_id, loaded.metadata.geometry())
    del loaded  # the executor's model stage loads its own copy, where it runs
    request.settings.geometry(run.model_geometry)  # a bad stride is refused before the store is touched
    ids = unique_slide_ids(collect_slides(request.slides))
    jobs = [SlideJob(slide_id, str(path)) for slide_id, path in ids.items()]
    store = HeatmapStore.open(request.store_uri, RunIdentity(run.model_id, request.settings.identity()), mode="a")
    with open_executor(run) as executor:
        return scan_batch(jobs, store, run.model_geometry, request.settings, executor, progress)
