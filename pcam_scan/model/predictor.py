"""Batched P(tumour) for uint8 patches, or for blocks that travel as one region each.

CPU: float32, a fixed thread count (`PredictorSettings.cpu_threads`), each block batched alone,
so a block's results never depend on which blocks came with it: deterministic.
CUDA: one feeder per device. Host uint8 (a block's region, or patches) goes to pinned memory and
over a side stream; a block's patches are cut on the device (`patch_cutting`); batches are filled
across blocks and slides, queued `batches_in_flight` deep, and only the last batch of a call is
padded (its padding's outputs are dropped, so a compiled model sees one shape). Normalisation and
any resize run on the device, bf16 autocast, channels_last, optional `torch.compile`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from pcam_scan.errors import ConfigError
from pcam_scan.model.checkpoint import LoadedModel, load_checkpoint
from pcam_scan.model.metadata import ModelMetadata
from pcam_scan.model.patch_cutting import cut_tissue_patches, tissue_cell_index
from pcam_scan.model.scoring import PatchScorer
from pcam_scan.model.settings import PredictorSettings

__all__ = ["BatchStats", "Predictor", "PredictorSettings", "resolve_device"]


@dataclass
class BatchStats:
    """What the model was given: batches run, and how many of their slots held a real patch."""

    batches: int = 0
    useful: int = 0
    batch_size: int = 1

    @property
    def useful_share(self) -> float:
        """Real patches over batch capacity (a partial or padded batch wastes a GPU's time)."""
        return self.useful / (self.batches * self.batch_size) if self.batches else 1.0


def resolve_device(name: str) -> torch.device:
    """'auto' is CUDA when present, else the CPU; asking for absent CUDA is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name} was asked for but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name} does not exist ({torch.cuda.device_count()} CUDA devices)")
    return device


BlockPixels = tuple[np.ndarray, np.ndarray]
"""A block as it travels: its uint8 (H, W, 3) region at the read plane, and its (n_rows, n_cols)
bool tissue cells, whose patches are scored in row-major order."""


class Predictor:
    """P(tumour) for uint8 NHWC patches of the checkpoint's patch size, or for whole blocks.

    Builds its network on the resolved device (moving `loaded.network` there) and, on the CPU,
    sets torch's process-wide thread count to the settings' `cpu_threads`. One instance serves one
    thread at a time (its CUDA buffers are reused batch after batch). `stats` counts batches.
    """

    def __init__(self, loaded: LoadedModel, settings: PredictorSettings | None = None) -> None:
        self.settings = settings or PredictorSettings()
        self.device = resolve_device(self.settings.device)
        self.metadata: ModelMetadata = loaded.metadata
        self.model_id = loaded.model_id
        self.stats = BatchStats(batch_size=self.settings.batch_size)
        on_cuda = self.device.type == "cuda"
        if not on_cuda and self.settings.cpu_threads is not None:
            torch.set_num_threads(self.settings.cpu_threads)
        network = loaded.network.to(self.device).eval()
        if on_cuda:
            network = network.to(memory_format=torch.channels_last)
        scorer = PatchScorer(network, self.metadata, tta=self.settings.tta, channels_last=on_cuda).eval()
        self._scorer: torch.nn.Module = (
            torch.compile(scorer, dynamic=False) if self.settings.compile else scorer  # type: ignore[assignment]
        )
        self._cuda = (
            _CudaFeeder(self.score_on_device, self.device, self.settings, self.stats, self.metadata.patch_px) if on_cuda else None
        )

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], settings: PredictorSettings | None = None) -> Predictor:
        settings = settings or PredictorSettings()
        return cls(load_checkpoint(path, resolve_device(settings.device)), settings)

    def predict(self, patches_nhwc: np.ndarray) -> np.ndarray:
        """float32 P(tumour), shape (N,), for uint8 patches of shape (N, patch_px, patch_px, 3)."""
        (probs,) = self.predict_stream([patches_nhwc])
        return probs

    def predict_stream(self, arrays: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """One P(tumour) array per input array of patches, in order; on CUDA, batches are filled
        across arrays, so a stream of small arrays keeps the GPU as busy as one large array."""
        checked = (self._check(a) for a in arrays)
        if self._cuda is not None:
            yield from self._cuda.run((a, None) for a in checked)
            return
        for patches in checked:
            yield self._predict_cpu(_cpu_tensor(patches))

    def predict_blocks(self, blocks: Iterable[BlockPixels], stride_px: int) -> Iterator[np.ndarray]:
        """One P(tumour) array per block, for its tissue cells in row-major order.

        The patches are cut here, where the model runs (on the GPU from the device copy of the
        region), so what reaches the model stage is the region: 1/9 of the patches' bytes at
        stride 32.
        """
        px = self.metadata.patch_px
        for_device = ((self._check_region(region, tissue, stride_px), tissue_cell_index(tissue)) for region, tissue in blocks)
        if self._cuda is not None:
            yield from self._cuda.run(((region, (index, stride_px)) for region, index in for_device))
            return
        for region, index in for_device:
            patches = cut_tissue_patches(_cpu_tensor(region), torch.from_numpy(index), px, stride_px)
            yield self._predict_cpu(patches)

    def score_on_device(self, patches_nhwc: torch.Tensor) -> torch.Tensor:
        """P(tumour) for uint8 NHWC patches already on the device: no copy, no wait (on CUDA the
        result is queued, bf16 autocast). The model-only ceiling the benchmark measures."""
        precision = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else contextlib.nullcontext()
        )
        with torch.inference_mode(), precision:
            return self._scorer(patches_nhwc)  # type: ignore[no-any-return]

    def _check(self, patches: np.ndarray) -> np.ndarray:
        px = self.metadata.patch_px
        if not isinstance(patches, np.ndarray):
            raise ConfigError(f"patches must be a numpy array, got {type(patches).__name__}")
        if patches.dtype != np.uint8 or patches.ndim != 4 or patches.shape[1:] != (px, px, 3):
            raise ConfigError(
                f"patches must be uint8 of shape (N, {px}, {px}, 3) for this model, "
                f"got {patches.dtype} {patches.shape}"
            )
        return patches

    def _check_region(self, region: np.ndarray, tissue: np.ndarray, stride_px: int) -> np.ndarray:
        px = self.metadata.patch_px
        rows, cols = np.shape(tissue)
        expected = ((rows - 1) * stride_px + px, (cols - 1) * stride_px + px, 3)
        if not isinstance(region, np.ndarray) or region.dtype != np.uint8 or region.shape != expected:
            raise ConfigError(
                f"a block of {rows}x{cols} cells at stride {stride_px} needs a uint8 region of shape "
                f"{expected}, got {getattr(region, 'dtype', type(region).__name__)} {np.shape(region)}"
            )
        return region

    def _predict_cpu(self, patches: torch.Tensor) -> np.ndarray:
        """Batches in order; a compiled model gets the last one padded to the full batch size,
        so it is compiled for one shape only."""
        probs = np.empty(len(patches), dtype=np.float32)
        batch = self.settings.batch_size
        for start in range(0, len(patches), batch):
            chunk = patches[start : start + batch]
            count = len(chunk)
            if self.settings.compile and count < batch:
                chunk = torch.cat([chunk, chunk.new_zeros((batch - count, *chunk.shape[1:]))])
            scored = self.score_on_device(chunk.contiguous())
            probs[start : start + count] = scored[:count].numpy()
            self.stats.batches += 1
            self.stats.useful += count
        return probs


def _cpu_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over `array`, copied only when torch cannot share it (read-only or strided:
    what comes out of the object store is read-only)."""
    if not (array.flags.writeable and array.flags.c_contiguous):
        array = np.array(array, order="C")
    return torch.from_numpy(array)


@dataclass
class _Slot:
    """One batch on the device: its input, its pinned output, and the patches it holds."""

    dev_in: torch.Tensor
    host_out: torch.Tensor
    done: torch.cuda.Event
    fill: int = 0
    launched: bool = False
    targets: list[tuple[int, int, int, int]] = field(default_factory=list)  # (item, first, count, slot offset)


class _CudaFeeder:
    """One continuous loop over a device: uploads on a side stream, batches filled across items.

    Each item (a block's region with its tissue-cell index, or an array of patches) goes to a
    pinned staging buffer, then to the device over the copy stream; the compute stream waits
    for that copy only, cuts the block's patches there and packs them into the current batch.
    A full batch is launched at once; a batch's slot is waited for only when it is reused.
    Only the last batch of a run is padded (and, with `deterministic`, each item's last one).
    """

    def __init__(
        self,
        score: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device,
        settings: PredictorSettings,
        stats: BatchStats,
        patch_px: int,
    ) -> None:
        torch.backends.cudnn.benchmark = not settings.deterministic
        torch.backends.cudnn.deterministic = settings.deterministic
        self.score = score
        self.device = device
        self.settings = settings
        self.stats = stats
        self.copy_stream = torch.cuda.Stream(device)
        self.patch_px = patch_px
        self.slots: list[_Slot] = []
        self.filling: _Slot | None = None  # the batch being packed, not launched yet
        self.staging: list[tuple[torch.Tensor, torch.cuda.Event]] = []
        self.next_slot = 0
        self.next_staging = 0

    def run(self, items: Iterable[tuple[np.ndarray, tuple[np.ndarray, int] | None]]) -> Iterator[np.ndarray]:
        """`items`: (host array, None) for patches, (region, (cell index, stride)) for a block."""
        results: dict[int, np.ndarray] = {}
        pending: dict[int, int] = {}
        next_out = 0
        for number, (host, cut) in enumerate(items):
            patches = self._to_device_patches(host, cut)
            results[number] = np.empty(len(patches), dtype=np.float32)
            pending[number] = len(patches)
            start = 0
            while start < len(patches):
                slot = self._current_slot(results, pending)
                count = min(self.settings.batch_size - slot.fill, len(patches) - start)
                slot.dev_in[slot.fill : slot.fill + count].copy_(patches[start : start + count])
                slot.targets.append((number, start, count, slot.fill))
                slot.fill += count
                start += count
                if slot.fill == self.settings.batch_size:
                    self._launch(slot)
            if self.settings.deterministic and self.filling is not None:
                self._launch(self.filling)
            while pending.get(next_out) == 0:
                del pending[next_out]
                yield results.pop(next_out)
                next_out += 1
        if self.filling is not None:
            self._launch(self.filling)
        for slot in self.slots:
            self._harvest(slot, results, pending)
        for number in sorted(results):
            yield results[number]

    def _to_device_patches(self, host: np.ndarray, cut: tuple[np.ndarray, int] | None) -> torch.Tensor:
        """Upload `host` (and a block's cell index) over the copy stream, never waiting for the
        compute stream; the patches it holds, on the device."""
        compute = torch.cuda.current_stream(self.device)
        staged, copied = self._staging_for(host)
        staged_view = staged[: host.nbytes]
        staged_view.numpy()[:] = np.ascontiguousarray(host).reshape(-1).view(np.uint8)
        with torch.cuda.stream(self.copy_stream):
            on_device = torch.empty(host.shape, dtype=torch.uint8, device=self.device)
            on_device.view(-1).copy_(staged_view, non_blocking=True)
            cell_index = (
                torch.from_numpy(cut[0]).pin_memory().to(self.device, non_blocking=True) if cut is not None else None
            )
            copied.record(self.copy_stream)
        compute.wait_event(copied)
        on_device.record_stream(compute)
        if cut is None or cell_index is None:
            return on_device
        cell_index.record_stream(compute)
        return cut_tissue_patches(on_device, cell_index, self.patch_px, cut[1])

    def _staging_for(self, host: np.ndarray) -> tuple[torch.Tensor, torch.cuda.Event]:
        """A pinned buffer big enough for `host`, from a ring of two; waits only for the copy
        that last used it."""
        if len(self.staging) < 2:
            self.staging.append((torch.empty(0, dtype=torch.uint8).pin_memory(), torch.cuda.Event()))
        index = self.next_staging
        self.next_staging = (index + 1) % 2
        buffer, event = self.staging[index]
        event.synchronize()
        if buffer.numel() < host.nbytes:
            buffer = torch.empty(host.nbytes, dtype=torch.uint8).pin_memory()
            self.staging[index] = (buffer, event)
        return buffer, event

    def _current_slot(self, results: dict[int, np.ndarray], pending: dict[int, int]) -> _Slot:
        """The batch being packed; else the next slot of the ring, harvested first."""
        if self.filling is not None:
            return self.filling
        if len(self.slots) < self.settings.batches_in_flight:
            px = self.patch_px
            self.slots.append(
                _Slot(
                    dev_in=torch.zeros((self.settings.batch_size, px, px, 3), dtype=torch.uint8, device=self.device),
                    host_out=torch.empty(self.settings.batch_size, dtype=torch.float32, pin_memory=True),
                    done=torch.cuda.Event(),
                )
            )
        slot = self.slots[self.next_slot % len(self.slots)]
        self.next_slot = (self.next_slot + 1) % self.settings.batches_in_flight
        self._harvest(slot, results, pending)
        self.filling = slot
        return slot

    def _launch(self, slot: _Slot) -> None:
        compute = torch.cuda.current_stream(self.device)
        slot.host_out.copy_(self.score(slot.dev_in), non_blocking=True)
        slot.done.record(compute)
        slot.launched = True
        self.filling = None
        self.stats.batches += 1
        self.stats.useful += slot.fill

    @staticmethod
    def _harvest(slot: _Slot, results: dict[int, np.ndarray], pending: dict[int, int]) -> None:
        if not slot.launched:
            return
        slot.done.synchronize()
        out = slot.host_out.numpy()
        for number, first, count, offset in slot.targets:
            results[number][first : first + count] = out[offset : offset + count]
            pending[number] -= count
        slot.targets.clear()
        slot.fill = 0
        slot.launched = False
