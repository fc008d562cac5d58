"""The device feeder: one loop that packs the patches of blocks into batches, launches each batch
as soon as it is full, and hands every block its results.

Two packing rules (`align_items`):
- Filled across items (a GPU's default): a batch takes patches from as many blocks and slides as
  it needs, so only a flush (the end of the input, or input that stopped coming) launches a batch
  that is not full. The fastest, but a patch's row in its batch depends on scheduling, and CPU
  kernels (and cuDNN's chosen algorithms) round a row differently by its position: results may
  differ in the last float bits from run to run.
- Aligned (the CPU's default, `--deterministic`): each block starts a batch of its own, so its
  patches always sit in the same rows and its results are bit-identical whatever the scheduling.
A partial batch is padded to the full shape on a GPU or for a compiled model (one shape, and the
device would idle anyway); an eager CPU model runs it at its own size (padding would cost cores).

Two ways to drive it:
- `BatchPacker.run`: in the caller's thread, a stream of items in, results out in order
  (`Predictor.predict`, the in-process scan).
- `BackgroundFeeder`: a thread of its own that several Ray Data calls submit blocks to
  concurrently, each waiting for its blocks' futures (`gather`). Batches stay in flight across
  calls, so the device does not drain between them; a partial batch goes when every call waits
  for it (no more input can come) or when input stops for a while.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from pcam_scan.model.patch_cutting import cut_tissue_patches

Score = Callable[[torch.Tensor], torch.Tensor]
"""The model on the device: uint8 NHWC patches in, float32 P(tumour) out."""
Deliver = Callable[[np.ndarray | BaseException], None]

MIN_FLUSH_WAIT_S = 0.02
"""The shortest wait for more input before a partial batch is padded and launched."""
UNTIMED_FLUSH_WAIT_S = 1.0
"""The wait before any batch has been timed: at the start of a run, while reads ramp up."""
END_OF_INPUT_WAIT_S = 0.5
"""With the callers known, how long input may stop before the partial batch goes: only fewer
callers than there may be are waiting, so either the run's last blocks are in, or reads stall
(the device then idles anyway). Once per model actor at the end of a run."""


@dataclass
class BatchStats:
    """What the model was given: batches run, and how many of their slots held a real patch."""

    batches: int = 0
    useful: int = 0
    batch_size: int = 1

    @property
    def useful_share(self) -> float:
        """Real patches over batch capacity: the share of a GPU's batch rows that held a patch
        (a padded row wastes its time; on a CPU, a short batch runs at a lower rate)."""
        return self.useful / (self.batches * self.batch_size) if self.batches else 1.0


@dataclass(frozen=True)
class FeedItem:
    """Work for the device: uint8 patches (N, P, P, 3) with `cells` None, or a block's uint8
    (H, W, 3) region with the flat row-major index of the cells to score (`cells`) and the
    stride between them. `deliver` gets the float32 P(tumour) of each, in order, or an error."""

    host: np.ndarray
    cells: np.ndarray | None
    stride_px: int
    deliver: Deliver


@dataclass
class _Tracked:
    """An item whose patches are spread over batches: its results, and how many are missing."""

    item: FeedItem
    probs: np.ndarray
    missing: int


@dataclass
class Slot:
    """One batch: its input on the device, its output on the host, and whose patches it holds."""

    dev_in: torch.Tensor
    host_out: torch.Tensor
    done: torch.cuda.Event | None = None
    fill: int = 0
    launched: bool = False
    launch_s: float = 0.0
    targets: list[tuple[_Tracked, int, int, int]] = field(default_factory=list)  # (item, first, count, row)


class Device(Protocol):
    """What differs between the CPU and a GPU: getting patches there, and running a batch."""

    def to_patches(self, item: FeedItem, patch_px: int) -> torch.Tensor: ...

    def new_slot(self, batch_size: int, patch_px: int) -> Slot: ...

    def launch(self, slot: Slot, score: Score, rows: int) -> None: ...

    def wait(self, slot: Slot) -> None: ...


def cpu_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over `array`, copied only when torch cannot share it (read-only or strided:
    what comes out of the object store is read-only)."""
    if not (array.flags.writeable and array.flags.c_contiguous):
        array = np.array(array, order="C")
    return torch.from_numpy(array)


class CpuDevice:
    """The CPU: patches are cut from the region in place, a batch runs when it is launched."""

    def to_patches(self, item: FeedItem, patch_px: int) -> torch.Tensor:
        host = cpu_tensor(item.host)
        if item.cells is None:
            return host
        return cut_tissue_patches(host, torch.from_numpy(item.cells), patch_px, item.stride_px)

    def new_slot(self, batch_size: int, patch_px: int) -> Slot:
        return Slot(
            dev_in=torch.zeros((batch_size, patch_px, patch_px, 3), dtype=torch.uint8),
            host_out=torch.empty(batch_size, dtype=torch.float32),
        )

    def launch(self, slot: Slot, score: Score, rows: int) -> None:
        slot.host_out[:rows].copy_(score(slot.dev_in[:rows]))

    def wait(self, slot: Slot) -> None:
        return None


class CudaDevice:
    """A GPU: each item goes to a pinned staging buffer, then over a side stream to the device;
    the compute stream waits for that copy only, and cuts a block's patches there. A batch's
    output comes back to pinned memory; its slot is waited for only when it is harvested."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        # torch.cuda.Stream and Event have unannotated constructors in torch itself
        self.copy_stream = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
        self.staging: list[tuple[torch.Tensor, torch.cuda.Event]] = []
        self.next_staging = 0

    def to_patches(self, item: FeedItem, patch_px: int) -> torch.Tensor:
        host = item.host
        compute = torch.cuda.current_stream(self.device)
        staged, copied = self._staging_for(host)
        staged_view = staged[: host.nbytes]
        staged_view.numpy()[:] = np.ascontiguousarray(host).reshape(-1).view(np.uint8)
        with torch.cuda.stream(self.copy_stream):
            on_device = torch.empty(host.shape, dtype=torch.uint8, device=self.device)
            on_device.view(-1).copy_(staged_view, non_blocking=True)
            cells = (
                None
                if item.cells is None
                else torch.from_numpy(item.cells).pin_memory().to(self.device, non_blocking=True)
            )
            copied.record(self.copy_stream)
        compute.wait_event(copied)
        on_device.record_stream(compute)
        if cells is None:
            return on_device
        cells.record_stream(compute)
        return cut_tissue_patches(on_device, cells, patch_px, item.stride_px)

    def _staging_for(self, host: np.ndarray) -> tuple[torch.Tensor, torch.cuda.Event]:
        """A pinned buffer big enough for `host`, from a ring of two; waits only for the copy
        that last used it."""
        if len(self.staging) < 2:
            pinned = torch.empty(0, dtype=torch.uint8).pin_memory()
            self.staging.append((pinned, torch.cuda.Event()))  # type: ignore[no-untyped-call]  # unannotated in torch
        index = self.next_staging
        self.next_staging = (index + 1) % 2
        buffer, event = self.staging[index]
        event.synchronize()
        if buffer.numel() < host.nbytes:
            buffer = torch.empty(host.nbytes, dtype=torch.uint8).pin_memory()
            self.staging[index] = (buffer, event)
        return buffer, event

    def new_slot(self, batch_size: int, patch_px: int) -> Slot:
        return Slot(
            dev_in=torch.zeros((batch_size, patch_px, patch_px, 3), dtype=torch.uint8, device=self.device),
            host_out=torch.empty(batch_size, dtype=torch.float32, pin_memory=True),
            done=torch.cuda.Event(),  # type: ignore[no-untyped-call]  # unannotated in torch
        )

    def launch(self, slot: Slot, score: Score, rows: int) -> None:
        slot.host_out[:rows].copy_(score(slot.dev_in[:rows]), non_blocking=True)
        assert slot.done is not None
        slot.done.record(torch.cuda.current_stream(self.device))

    def wait(self, slot: Slot) -> None:
        assert slot.done is not None
        slot.done.synchronize()


class BatchPacker:
    """Packs items' patches into a ring of `batches_in_flight` batches of `batch_size` rows:
    across items, or each item in batches of its own (`align_items`); a partial batch runs
    padded to the full shape when `pad`, else at its own size.

    Not thread-safe: one thread drives it (the caller's through `run`, or a `BackgroundFeeder`'s).
    """

    def __init__(
        self,
        device: Device,
        score: Score,
        batch_size: int,
        batches_in_flight: int,
        stats: BatchStats,
        patch_px: int,
        *,
        align_items: bool,
        pad: bool,
    ) -> None:
        self.device = device
        self.score = score
        self.batch_size = batch_size
        self.batches_in_flight = batches_in_flight
        self.stats = stats
        self.patch_px = patch_px
        self.align_items = align_items
        self.pad = pad
        self.slots: list[Slot] = []
        self.filling: Slot | None = None  # the batch being packed, not launched yet
        self.next_slot = 0
        self.batch_s: float | None = None  # the device's time for the last batch, once one ran

    @property
    def has_partial(self) -> bool:
        """A batch is being packed (and would be padded if launched now)."""
        return self.filling is not None and self.filling.fill > 0

    def feed(self, item: FeedItem) -> None:
        """Pack `item`'s patches, launching every batch that fills up."""
        patches = self.device.to_patches(item, self.patch_px)
        tracked = _Tracked(item, np.empty(len(patches), dtype=np.float32), len(patches))
        if not len(patches):
            item.deliver(tracked.probs)
            return
        start = 0
        while start < len(patches):
            slot = self._current_slot()
            count = min(self.batch_size - slot.fill, len(patches) - start)
            slot.dev_in[slot.fill : slot.fill + count].copy_(patches[start : start + count])
            slot.targets.append((tracked, start, count, slot.fill))
            slot.fill += count
            start += count
            if slot.fill == self.batch_size:
                self._launch(slot)
        if self.align_items and self.filling is not None:
            self._launch(self.filling)

    def flush(self) -> None:
        """Launch the partial batch (padded to the full shape when `pad`) and deliver every result."""
        if self.has_partial:
            assert self.filling is not None
            self._launch(self.filling)
        self.harvest_launched()

    def harvest_launched(self) -> None:
        """Deliver the results of every launched batch (waiting for the device)."""
        for slot in self.slots:
            self._harvest(slot)

    def abandon(self, error: BaseException) -> None:
        """After a failure: every item still held gets `error`, and the ring starts empty."""
        failed: dict[int, _Tracked] = {}
        for slot in self.slots:
            failed.update((id(tracked), tracked) for tracked, *_ in slot.targets)
            slot.targets.clear()
            slot.fill = 0
            slot.launched = False
        self.filling = None
        for tracked in failed.values():
            tracked.item.deliver(error)

    def run(self, items: Iterable[tuple[np.ndarray, np.ndarray | None, int]]) -> Iterator[np.ndarray]:
        """P(tumour) of each (host, cells, stride) item, in order, yielded as soon as complete."""
        results: dict[int, np.ndarray | BaseException] = {}
        next_out = 0

        def keep(number: int) -> Deliver:
            return lambda outcome: results.__setitem__(number, outcome)

        def ready() -> Iterator[np.ndarray]:
            nonlocal next_out
            while next_out in results:
                outcome = results.pop(next_out)
                if isinstance(outcome, BaseException):
                    raise outcome
                next_out += 1
                yield outcome

        try:
            for number, (host, cells, stride) in enumerate(items):
                self.feed(FeedItem(host, cells, stride, keep(number)))
                yield from ready()
            self.flush()
            yield from ready()
        except BaseException as err:
            self.abandon(err)
            raise

    def _current_slot(self) -> Slot:
        """The batch being packed; else the next slot of the ring, harvested first."""
        if self.filling is not None:
            return self.filling
        if len(self.slots) < self.batches_in_flight:
            self.slots.append(self.device.new_slot(self.batch_size, self.patch_px))
        slot = self.slots[self.next_slot % len(self.slots)]
        self.next_slot = (self.next_slot + 1) % self.batches_in_flight
        self._harvest(slot)
        self.filling = slot
        return slot

    def _launch(self, slot: Slot) -> None:
        started = time.perf_counter()
        self.device.launch(slot, self.score, self.batch_size if self.pad else slot.fill)
        slot.launch_s = time.perf_counter() - started  # the batch itself on a CPU; queuing on CUDA
        slot.launched = True
        self.filling = None
        self.stats.batches += 1
        self.stats.useful += slot.fill

    def _harvest(self, slot: Slot) -> None:
        if not slot.launched:
            return
        started = time.perf_counter()
        self.device.wait(slot)
        self.batch_s = max(slot.launch_s, time.perf_counter() - started)
        out = slot.host_out.numpy()
        for tracked, first, count, row in slot.targets:
            tracked.probs[first : first + count] = out[row : row + count]
            tracked.missing -= count
            if tracked.missing == 0:
                tracked.item.deliver(tracked.probs)
        slot.targets.clear()
        slot.fill = 0
        slot.launched = False


_STOP = object()
_WAKE = object()  # a caller began to wait: look again whether every caller waits


class BackgroundFeeder:
    """A thread that owns a `BatchPacker`: any thread submits items and gets futures.

    It packs whatever is queued; when the queue runs dry it first delivers the launched batches.
    A partial batch is launched (padded) only when no more input can come:
    - with `callers` known (the Ray actor's concurrent calls) and every caller waiting in
      `gather` for an item of the partial batch, at once: no caller is left to bring input;
    - otherwise after input stopped for a while: `end_of_input_wait_s` with callers known (the
      last blocks of a run, or reads that stall), else one batch's time (at least
      `MIN_FLUSH_WAIT_S`; before any batch ran, `UNTIMED_FLUSH_WAIT_S`).
    """

    def __init__(
        self, packer: BatchPacker, callers: int | None = None, end_of_input_wait_s: float = END_OF_INPUT_WAIT_S
    ) -> None:
        self.packer = packer
        self.callers = callers
        self.end_of_input_wait_s = end_of_input_wait_s
        self._queue: queue.SimpleQueue[FeedItem | object] = queue.SimpleQueue()
        self._waiting_lock = threading.Lock()
        self._waiting: list[list[int]] = []  # per caller in `gather`: [its items not yet delivered]
        self._thread = threading.Thread(target=self._loop, name="pcam-scan-feeder", daemon=True)
        self._thread.start()

    def submit(self, host: np.ndarray, cells: np.ndarray | None, stride_px: int) -> Future[np.ndarray]:
        """Queue one item; its future gets the P(tumour) array (or the error that stopped it)."""
        future: Future[np.ndarray] = Future()

        def deliver(outcome: np.ndarray | BaseException) -> None:
            if future.done():  # a failed item may be told twice
                return
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        if not self._thread.is_alive():
            raise RuntimeError("the feeder is closed")
        self._queue.put(FeedItem(host, cells, stride_px, deliver))
        return future

    def gather(self, futures: list[Future[np.ndarray]]) -> list[np.ndarray]:
        """Wait for `futures` (of this feeder's items); the results in order, or the first error.

        While it waits, the caller counts as one that brings no more input, so when every one
        of `callers` waits here the feeder launches its partial batch without waiting for time.
        """
        remaining = [len(futures)]

        def delivered(_: Future[np.ndarray]) -> None:
            with self._waiting_lock:
                remaining[0] -= 1

        with self._waiting_lock:
            self._waiting.append(remaining)
        try:
            for future in futures:
                future.add_done_callback(delivered)
            self._queue.put(_WAKE)  # the feeder may now be waiting on this caller alone
            return [future.result() for future in futures]
        finally:
            with self._waiting_lock:
                self._waiting.remove(remaining)

    def close(self) -> None:
        """Score what is queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def _loop(self) -> None:
        try:
            self._feed_until_stopped()
        finally:  # whatever ends the thread, no caller waits forever for a result
            self.packer.abandon(RuntimeError("the feeder stopped"))

    def _feed_until_stopped(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                self._guarded(self.packer.harvest_launched)
                if self.packer.has_partial and self._every_caller_waits():
                    self._guarded(self.packer.flush)
                    continue
                wait_s = self._flush_wait_s() if self.packer.has_partial else None
                try:
                    item = self._queue.get(timeout=wait_s)
                except queue.Empty:
                    self._guarded(self.packer.flush)
                    continue
            if item is _STOP:
                self._guarded(self.packer.flush)
                return
            if item is _WAKE:
                continue
            assert isinstance(item, FeedItem)
            self._guarded(self.packer.feed, item)

    def _every_caller_waits(self) -> bool:
        """Every caller is in `gather` with items still undelivered: no more input can come."""
        if self.callers is None:
            return False
        with self._waiting_lock:
            return sum(1 for remaining in self._waiting if remaining[0] > 0) >= self.callers

    def _flush_wait_s(self) -> float:
        if self.callers is not None:
            return self.end_of_input_wait_s
        batch_s = self.packer.batch_s
        return UNTIMED_FLUSH_WAIT_S if batch_s is None else max(MIN_FLUSH_WAIT_S, batch_s)

    def _guarded(self, step: Callable[..., None], item: FeedItem | None = None) -> None:
        """Run one step; a failure goes to every item it touched (and to `item`), and the loop
        goes on with an empty ring."""
        try:
            step() if item is None else step(item)
        except Exception as err:
            self.packer.abandon(err)
            if item is not None:
                item.deliver(err)
