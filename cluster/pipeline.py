"""The streaming block pipeline on Ray Data: read (CPU tasks) -> predict (actor pool) -> write.

Every Ray Data call of the project lives in this module, since Ray's API moves between versions.
Ray Data's streaming executor gives backpressure (memory stays bounded whatever the number of
slides: the driver only ever sees small result rows), task retries, and an autoscaling actor
pool for the model.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from pcam_scan.geometry import PatchGeometry
from pcam_scan.scan.work import BlockResult, BlockWork
from pcam_scan.store.blocks import BlockWriter

from cluster.stages import PredictBlocks, pack_work, read_blocks, write_blocks


@dataclass(frozen=True)
class PoolSettings:
    """How the model stage is spread over the cluster."""

    checkpoint_path: str
    model_id: str
    use_gpus: bool
    actors: int
    cpus_per_actor: float
    blocks_per_call: int
    predictor_kwargs: Mapping[str, object]


def configure_ray_data() -> None:
    """Quiet Ray Data's own progress bars and logs: the scan draws its own progress line."""
    import logging

    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


READ_TASK_MEMORY_BYTES = 256 * 1024**2
"""What one read task may hold: a block's region and its patches (about 35 MB for 32x32 cells
of 96 px), the decoded tiles and OpenSlide's cache. Declaring it also keeps Ray Data from fusing
the reads into the model actors: reads run in their own tasks, overlapping with prediction."""


def run_block_pipeline(
    works: Sequence[BlockWork],
    writers: Mapping[str, BlockWriter],
    geometry: PatchGeometry,
    pool: PoolSettings,
) -> Iterator[BlockResult]:
    """Stream every work item through read -> predict -> write; yield results as they finish."""
    if not works:
        return
    import ray.data

    configure_ray_data()
    items = [{"work": pack_work(work)} for work in works]
    dataset: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=min(len(items), 200))
    dataset = dataset.map_batches(
        functools.partial(read_blocks, geometry=geometry),
        batch_size=1,
        num_cpus=1,
        memory=READ_TASK_MEMORY_BYTES,
    )
    model_resources = {"num_gpus": 1} if pool.use_gpus else {"num_cpus": pool.cpus_per_actor}
    dataset = dataset.map_batches(
        PredictBlocks,
        fn_constructor_kwargs={
            "checkpoint_path": pool.checkpoint_path,
            "model_id": pool.model_id,
            "predictor_kwargs": dict(pool.predictor_kwargs),
        },
        batch_size=pool.blocks_per_call,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=pool.actors),
        **model_resources,
    )
    dataset = dataset.map_batches(
        functools.partial(write_blocks, writers=dict(writers)), batch_size=8, num_cpus=0.25
    )
    for row in dataset.iter_rows():
        yield BlockResult(
            slide_id=str(row["slide_id"]),
            block_rc=(int(row["block_row"]), int(row["block_col"])),
            n_patches=int(row["n_patches"]),
            read_s=float(row["read_s"]),
            predict_s=float(row["predict_s"]),
            write_s=float(row["write_s"]),
            error=str(row["error"]) or None,
        )
