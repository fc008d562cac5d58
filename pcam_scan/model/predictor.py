"""Batched P(tumour) for uint8 patches, as fast as the device allows.

CPU: float32, the thread count given by the caller (a Ray worker's CPU allotment), deterministic.
CUDA: uint8 patches go to pinned host buffers and over a copy stream (non-blocking), so the
transfer of one batch overlaps the compute of the others; normalisation and any resize run on
the device; bf16 autocast, channels_last, optional `torch.compile`; `batches_in_flight` batches
are queued before the first result is waited for. Every CUDA batch has the full batch size (the
tail of the last one is padding whose outputs are dropped), so a compiled model sees one shape.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from pcam_scan.model.checkpoint import LoadedModel, load_checkpoint
from pcam_scan.model.metadata import ModelMetadata
from pcam_scan.model.names import is_device_name
from pcam_scan.errors import ConfigError
from pcam_scan.model.scoring import PatchScorer



@dataclass(frozen=True)
class PredictorSettings:
    """How to run the model; `cpu_threads` None leaves torch's thread count as it is."""

    device: str = "auto"
    batch_size: int = 256
    tta: bool = False
    compile: bool = False
    cpu_threads: int | None = None
    batches_in_flight: int = 3

    def __post_init__(self) -> None:
        if not is_device_name(self.device):
            raise ConfigError(f"device {self.device!r} is not one of auto, cpu, cuda, cuda:N")
        if not 1 <= self.batch_size <= 65536:
            raise ConfigError(f"batch size {self.batch_size} is outside 1..65536")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ConfigError(f"cpu_threads {self.cpu_threads} must be at least 1")
        if not 1 <= self.batches_in_flight <= 16:
            raise ConfigError(f"batches_in_flight {self.batches_in_flight} is outside 1..16")


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


class Predictor:
    """P(tumour) for uint8 NHWC patches of the checkpoint's patch size.

    Builds its network on the resolved device (moving `loaded.network` there) and, on the CPU,
    sets torch's process-wide thread count to `settings.cpu_threads`. One instance serves one
    thread at a time (its CUDA buffers are reused batch after batch).
    """

    def __init__(self, loaded: LoadedModel, settings: PredictorSettings | None = None) -> None:
        self.settings = settings or PredictorSettings()
        self.device = resolve_device(self.settings.device)
        self.metadata: ModelMetadata = loaded.metadata
        self.model_id = loaded.model_id
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
        self._cuda = _CudaBatches(self.score_on_device, self.device, self.settings, self.metadata.patch_px) if on_cuda else None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], settings: PredictorSettings | None = None) -> Predictor:
        settings = settings or PredictorSettings()
        return cls(load_checkpoint(path, resolve_device(settings.device)), settings)

    def predict(self, patches_nhwc: np.ndarray) -> np.ndarray:
        """float32 P(tumour), shape (N,), for uint8 patches of shape (N, patch_px, patch_px, 3)."""
        (probs,) = self.predict_stream([patches_nhwc])
        return probs

    def predict_stream(self, arrays: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """One P(tumour) array per input array, in order; on CUDA, batches stay in flight across
        input arrays, so a stream of small blocks keeps the GPU as busy as one large array."""
        checked = (self._check(a) for a in arrays)
        if self._cuda is not None:
            yield from self._cuda.run(checked)
            return
        for patches in checked:
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

    def _predict_cpu(self, patches: np.ndarray) -> np.ndarray:
        """Batches in order; a compiled model gets the last one padded to the full batch size,
        so it is compiled for one shape only."""
        probs = np.empty(len(patches), dtype=np.float32)
        batch = self.settings.batch_size
        for start in range(0, len(patches), batch):
            chunk = patches[start : start + batch]
            count = len(chunk)
            if self.settings.compile and count < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - count, *chunk.shape[1:]), np.uint8)])
            scored = self.score_on_device(torch.from_numpy(np.ascontiguousarray(chunk)))
            probs[start : start + count] = scored[:count].numpy()
        return probs


@dataclass
class _Slot:
    """One batch's buffers: pinned host input/output, device input, and its two events."""

    host_in: torch.Tensor
    dev_in: torch.Tensor
    host_out: torch.Tensor
    copied: torch.cuda.Event
    done: torch.cuda.Event
    target: tuple[int, int, int] | None = None  # (array number, first patch, count) in flight


class _CudaBatches:
    """A ring of `batches_in_flight` slots: fill pinned memory, copy on a side stream, compute on
    the current stream, copy P(tumour) back to pinned memory; wait only when a slot is reused."""

    def __init__(
        self,
        score: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device,
        settings: PredictorSettings,
        patch_px: int,
    ) -> None:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
        self.score = score
        self.device = device
        self.batch = settings.batch_size
        self.copy_stream = torch.cuda.Stream(device)
        shape = (self.batch, patch_px, patch_px, 3)
        self.slots = [
            _Slot(
                host_in=torch.empty(shape, dtype=torch.uint8, pin_memory=True),
                dev_in=torch.zeros(shape, dtype=torch.uint8, device=device),
                host_out=torch.empty(self.batch, dtype=torch.float32, pin_memory=True),
                copied=torch.cuda.Event(),
                done=torch.cuda.Event(),
            )
            for _ in range(settings.batches_in_flight)
        ]

    def run(self, arrays: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        results: dict[int, np.ndarray] = {}
        pending: dict[int, int] = {}  # array number -> patches not yet harvested
        next_out = 0
        launched = 0
        for number, patches in enumerate(arrays):
            results[number] = np.empty(len(patches), dtype=np.float32)
            pending[number] = len(patches)
            for start in range(0, len(patches), self.batch):
                slot = self.slots[launched % len(self.slots)]
                self._harvest(slot, results, pending)
                self._launch(slot, number, patches, start)
                launched += 1
            while pending.get(next_out) == 0:
                del pending[next_out]
                yield results.pop(next_out)
                next_out += 1
        for i in range(len(self.slots)):
            self._harvest(self.slots[(launched + i) % len(self.slots)], results, pending)
        for number in sorted(results):
            yield results[number]

    def _launch(self, slot: _Slot, number: int, patches: np.ndarray, start: int) -> None:
        count = min(self.batch, len(patches) - start)
        slot.host_in.numpy()[:count] = patches[start : start + count]
        compute_stream = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self.copy_stream):
            slot.dev_in[:count].copy_(slot.host_in[:count], non_blocking=True)
            slot.copied.record(self.copy_stream)
        compute_stream.wait_event(slot.copied)
        slot.host_out.copy_(self.score(slot.dev_in), non_blocking=True)
        slot.done.record(compute_stream)
        slot.target = (number, start, count)

    @staticmethod
    def _harvest(slot: _Slot, results: dict[int, np.ndarray], pending: dict[int, int]) -> None:
        if slot.target is None:
            return
        slot.done.synchronize()
        number, start, count = slot.target
        results[number][start : start + count] = slot.host_out.numpy()[:count]
        pending[number] -= count
        slot.target = None
