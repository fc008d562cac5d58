"""A scan request from start to end: checkpoint, store, executor (Ray or in process), outcomes."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pcam_scan.model.checkpoint import load_checkpoint
from pcam_scan.errors import ConfigError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.scan.batch import SlideJob, scan_batch
from pcam_scan.scan.inputs import collect_slides
from pcam_scan.scan.outcome import SlideOutcome
from pcam_scan.scan.progress import ScanProgress
from pcam_scan.scan.settings import ScanSettings
from pcam_scan.store import HeatmapStore, RunIdentity, unique_slide_ids
from pcam_scan.tissue import TissueSettings


@dataclass(frozen=True)
class ScanRequest:
    """Everything a scan needs, resolved from the command line (or built by a test)."""

    slides: tuple[str, ...]
    checkpoint: str
    store_uri: str
    settings: ScanSettings = field(default_factory=ScanSettings)
    address: str | None = None
    device: str = "auto"
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
        settings = ScanSettings(
            stride_px=args.stride,
            block_cells=args.block_cells,
            tta=args.tta,
            batch_size=args.batch_size,
            compile=args.compile,
            mpp_override_um_px=args.mpp,
        )
        return cls(
            slides=tuple(str(p) for p in slides),
            checkpoint=args.model,
            store_uri=args.store,
            settings=settings,
            address=args.address,
            device=args.device,
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
            settings = dict(doc.pop("settings"))
            tissue = dict(settings.pop("tissue"))
            tissue["otsu_band"] = tuple(tissue["otsu_band"])
            return cls(
                **{**doc, "slides": tuple(doc["slides"])},
                settings=ScanSettings(**settings, tissue=TissueSettings(**tissue)),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"malformed scan request: {err}") from None

    def predictor_kwargs(self, cpu_threads: int | None) -> dict[str, object]:
        return {
            "device": self.device,
            "batch_size": self.settings.batch_size,
            "tta": self.settings.tta,
            "compile": self.settings.compile,
            "cpu_threads": cpu_threads,
        }


def run_scan(request: ScanRequest, progress: ScanProgress | None = None) -> list[SlideOutcome]:
    """Scan the request's slides into its store; one outcome per slide."""
    loaded = load_checkpoint(request.checkpoint, "cpu")
    model_geometry = loaded.metadata.geometry()
    geometry = request.settings.geometry(model_geometry)
    ids = unique_slide_ids(collect_slides(request.slides))
    jobs = [SlideJob(slide_id, str(path)) for slide_id, path in ids.items()]
    run = RunIdentity(loaded.model_id, request.settings.identity())
    store = HeatmapStore.open(request.store_uri, run, mode="a")
    if request.in_process:
        from pcam_scan.model.predictor import Predictor, PredictorSettings
        from pcam_scan.scan.inprocess import InProcessExecutor

        predictor = Predictor(loaded, PredictorSettings(**request.predictor_kwargs(None)))  # type: ignore[arg-type]
        executor = InProcessExecutor(predictor, geometry)
        return scan_batch(jobs, store, model_geometry, request.settings, executor, progress)
    del loaded  # the actors load their own copy
    return _scan_on_ray(request, jobs, store, model_geometry, run.model_id, progress)


def _scan_on_ray(
    request: ScanRequest,
    jobs: list[SlideJob],
    store: HeatmapStore,
    model_geometry: PatchGeometry,
    model_id: str,
    progress: ScanProgress | None,
) -> list[SlideOutcome]:
    from cluster.executor import RayExecutor
    from cluster.pipeline import PoolSettings
    from cluster.session import ray_session

    geometry = request.settings.geometry(model_geometry)
    with ray_session(request.address, request.num_cpus) as resources:
        if request.device.startswith("cuda") and resources.gpus < 1 and request.gpus is None:
            raise ConfigError(f"--device {request.device}: the Ray cluster has no GPUs (add --gpus N to wait for some)")
        use_gpus = request.gpus is not None or resources.gpus >= 1
        if use_gpus:  # asked-for GPUs beyond those up now come from the autoscaler
            actors, cpus_per_actor = request.gpus or int(resources.gpus), 1.0
        else:  # an actor fits on one node, leaving a CPU for reads; big clusters get several
            cpus_per_actor = float(min(8, max(1, int(resources.max_node_cpus) - 1)))
            actors = max(1, int(resources.cpus // 8))
        pool = PoolSettings(
            checkpoint_path=str(Path(request.checkpoint).resolve()),
            model_id=model_id,
            use_gpus=use_gpus,
            actors=actors,
            cpus_per_actor=cpus_per_actor,
            blocks_per_call=4 if use_gpus else 1,
            predictor_kwargs=request.predictor_kwargs(None if use_gpus else int(cpus_per_actor)),
        )
        executor = RayExecutor(geometry, pool)
        return scan_batch(jobs, store, model_geometry, request.settings, executor, progress)
