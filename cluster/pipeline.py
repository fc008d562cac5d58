"""The streaming scan pipeline on Ray Data: plan (CPU tasks, one slide each) -> read (CPU tasks)
-> predict (actor pool) -> write.

Every Ray Data call of the project lives in this module, since Ray's API moves between versions.
Ray Data's streaming executor gives backpressure (memory stays bounded whatever the number of
slides: the driver only ever sees small result rows), task retries, and an autoscaling actor
pool for the model. A slide's blocks enter the pipeline as soon as that slide is planned, so the
first prediction does not wait for the rest of the batch to plan. What crosses from the read
stage to the model is each block's region, never its patches (the model stage cuts them where
it runs).
"""

from __future__ import annotations

import functools
import gc
import pickle
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from cluster.sizing import READ_TASK_MEMORY_BYTES, PipelineBudget
from cluster.stages import PredictBlocks, plan_slides, read_blocks, write_blocks
from pcam_scan.scan.settings import ScanRun
from pcam_scan.scan.work import BlockResult, SlideReady
from pcam_scan.store import HeatmapStore


def configure_ray_data() -> None:
    """Quiet Ray Data's own progress bars and logs: the scan draws its own progress line."""
    import logging

    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


EXECUTOR_SETTLE_S = 30.0
"""How long a stopped run waits for Ray Data's threads to end before Ray shuts down."""


def ray_data_threads() -> list[threading.Thread]:
    """The live threads that Ray Data's own code runs: its scheduling thread
    (`StreamingExecutor`), and the row iterator's fetch and prefetch threads. Told by the module
    of what the thread runs, not by thread names, which Ray changes between versions."""
    found = []
    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)  # what `threading.Thread(target=...)` runs
        module = getattr(target, "__module__", None) or type(thread).__module__
        if module.startswith("ray.data") and thread is not threading.current_thread():
            found.append(thread)
    return found


def settle_ray_data(timeout_s: float = EXECUTOR_SETTLE_S) -> None:
    """Let every thread of Ray Data end before the Ray session does: one still inside a Ray call
    as the session ends takes the driver down (Ray's core worker exits the process with status
    1: a scan on Ray stopped by SIGTERM exited 1, not 143, in two runs of five).

    A pipeline stopped early (the stall guard, an error, SIGTERM) leaves them running: Ray Data
    gives its scheduling thread only 2 s; the stopped row iterator's generators can sit in
    reference cycles, and only their `finally` stops the fetch threads (collected here, while
    Ray is up); and Ray Data 2.60 stops its block prefetcher only when the iteration runs to its
    end (stopped here through the `stop` of the object whose method the thread runs)."""
    gc.collect()
    deadline = time.monotonic() + timeout_s
    for thread in ray_data_threads():
        stop = getattr(getattr(getattr(thread, "_target", None), "__self__", None), "stop", None)
        if callable(stop):
            stop()
        thread.join(timeout=max(0.0, deadline - time.monotonic()))


MAX_PLAN_BLOCKS = 1000
"""Ray Data blocks of the slide list: one slide each up to this many slides, so slides plan in
parallel and each one's blocks flow on as soon as it is planned."""


ROWS_PER_READ_BLOCK = 4
"""Work rows per Ray Data block after planning: small enough that a slide's blocks are read by
several tasks at once, large enough that per-block scheduling does not dominate."""


def run_scan_pipeline(
    slides: Sequence[tuple[str, str]],
    store: HeatmapStore,
    run: ScanRun,
    budget: PipelineBudget,
) -> Iterator[SlideReady | BlockResult]:
    """Stream every (slide id, path) through plan -> read -> predict -> write; yield each slide's
    `SlideReady` and each block's result as they finish."""
    if not slides:
        return
    import ray.data

    configure_ray_data()
    items = [{"slide_id": slide_id, "path": path} for slide_id, path in slides]
    dataset: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_PLAN_BLOCKS))
    dataset = dataset.map_batches(
        functools.partial(plan_slides, run=run, store=store),
        batch_size=1,
        num_cpus=budget.cpus_per_read,  # from the reads' share: a whole CPU would stall the reads
        compute=ray.data.TaskPoolStrategy(size=min(budget.read_tasks, len(items))),
    )
    # a few rows per Ray Data block, streaming (no shuffle): a slide's blocks are read in parallel;
    # never more than a model call takes, since Ray Data never splits a block between actors
    dataset = dataset.repartition(target_num_rows_per_block=min(ROWS_PER_READ_BLOCK, budget.blocks_per_call))
    dataset = dataset.map_batches(
        functools.partial(read_blocks, run=run),
        batch_size=1,
        num_cpus=budget.cpus_per_read,
        memory=READ_TASK_MEMORY_BYTES,
        compute=ray.data.TaskPoolStrategy(size=budget.read_tasks),
    )
    dataset = dataset.map_batches(
        PredictBlocks,
        fn_constructor_kwargs={
            "run": run,
            "concurrent_calls": budget.calls_per_actor,
            "model_threads": budget.model_threads,
        },
        batch_size=budget.blocks_per_call,
        compute=ray.data.ActorPoolStrategy(
            # a one-node CPU pool starts with every actor (`start_with_actors`); otherwise the
            # pool grows to the budget's actors as blocks queue up (and GPU actors as an
            # autoscaler adds nodes); a pool whose minimum is every actor waits forever for the
            # ones a lost node took with it (tests/test_cluster.py)
            min_size=1,
            max_size=budget.actors,
            initial_size=budget.initial_actors,
            max_concurrent_calls_per_actor=budget.calls_per_actor,
            enable_true_multi_threading=True,  # calls only queue blocks: the model has threads of its own
        ),
        num_cpus=budget.cpus_per_actor,
        num_gpus=1 if budget.use_gpus else None,
    )
    dataset = dataset.map_batches(
        functools.partial(write_blocks, store=store), batch_size=8, num_cpus=budget.cpus_per_write
    )
    rows = iter(dataset.iter_rows())
    try:
        yield from _records(rows)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:  # stopped early: end Ray Data's iteration now, not when collected
            close()


def _records(rows: Iterator[dict[str, Any]]) -> Iterator[SlideReady | BlockResult]:
    """The scan's records from the pipeline's result rows."""
    for row in rows:
        if row["slide"]:
            yield pickle.loads(row["slide"])
            continue
        yield BlockResult(
            slide_id=str(row["slide_id"]),
            block_rc=(int(row["block_row"]), int(row["block_col"])),
            n_patches=int(row["n_patches"]),
            read_s=float(row["read_s"]),
            predict_s=float(row["predict_s"]),
            write_s=float(row["write_s"]),
            error=str(row["error"]) or None,
            model=(str(row["model_actor"]), int(row["model_batches"]), int(row["model_useful"])),
        )
