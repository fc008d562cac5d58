"""Batched P(tumour) for uint8 patches, or for blocks that travel as one region each.

Every batch goes through the device feeder (`feeder.py`): each block in batches of its own
(`PredictorSettings.deterministic`, the CPU's default: a patch's result depends on its row in the
batch, so this keeps a block's results bit-identical), or batches filled across blocks (a GPU's
default). CPU: float32 on a fixed thread count (`PredictorSettings.cpu_threads`), the network
with its batch norms folded, channels_last, batches of `CPU_BATCH_SIZE` (`cpu_inference`). CUDA: uint8 goes
to pinned memory and over a side stream, a block's patches are cut on the device
(`patch_cutting`), normalisation and any resize run there, bf16 autocast, channels_last, optional
`torch.compile`; cuDNN pinned with `deterministic`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future

import numpy as np
import torch

from pcam_scan.errors import ConfigError
from pcam_scan.model.checkpoint import LoadedModel, load_checkpoint
from pcam_scan.model.cpu_inference import cpu_inference_model
from pcam_scan.model.feeder import BackgroundFeeder, BatchPacker, BatchStats, CpuDevice, CudaDevice, Device
from pcam_scan.model.metadata import ModelMetadata
from pcam_scan.model.patch_cutting import tissue_cell_index
from pcam_scan.model.scoring import PatchScorer
from pcam_scan.model.settings import PredictorSettings

__all__ = ["BatchStats", "Predictor", "PredictorSettings", "resolve_device"]


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
    sets torch's process-wide thread count to the settings' `cpu_threads`. The streaming methods
    serve one thread at a time; `background()` is for many threads at once. `stats` counts batches.
    """

    def __init__(self, loaded: LoadedModel, settings: PredictorSettings | None = None) -> None:
        self.settings = settings or PredictorSettings()
        self.device = resolve_device(self.settings.device)
        self.metadata: ModelMetadata = loaded.metadata
        self.model_id = loaded.model_id
        on_cuda = self.device.type == "cuda"
        self.batch_size = self.settings.batch_size_on(on_gpu=on_cuda)
        self.stats = BatchStats(batch_size=self.batch_size)
        aligned = self.settings.aligns_blocks(on_gpu=on_cuda)
        if on_cuda:
            torch.backends.cudnn.benchmark = not aligned
            torch.backends.cudnn.deterministic = aligned
        else:
            loaded = cpu_inference_model(loaded)
            if self.settings.cpu_threads is not None:
                torch.set_num_threads(self.settings.cpu_threads)
        network = loaded.network.to(self.device).eval()
        if on_cuda:
            network = network.to(memory_format=torch.channels_last)
        scorer = PatchScorer(network, self.metadata, tta=self.settings.tta, channels_last=True).eval()
        self._scorer: torch.nn.Module = (
            torch.compile(scorer, dynamic=False) if self.settings.compile else scorer  # type: ignore[assignment]
        )
        device: Device = CudaDevice(self.device) if on_cuda else CpuDevice()
        self._packer = BatchPacker(
            device,
            self.score_on_device,
            self.batch_size,
            self.settings.batches_in_flight,
            self.stats,
            self.metadata.patch_px,
            align_items=aligned,
            pad=on_cuda or self.settings.compile,
        )
        self._background: BackgroundFeeder | None = None
        self._background_lock = threading.Lock()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], settings: PredictorSettings | None = None) -> Predictor:
        settings = settings or PredictorSettings()
        return cls(load_checkpoint(path, resolve_device(settings.device)), settings)

    def predict(self, patches_nhwc: np.ndarray) -> np.ndarray:
        """float32 P(tumour), shape (N,), for uint8 patches of shape (N, patch_px, patch_px, 3)."""
        (probs,) = self.predict_stream([patches_nhwc])
        return probs

    def predict_stream(self, arrays: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """One P(tumour) array per input array of patches, in order; batches are filled across
        arrays, so a stream of small arrays keeps the device as busy as one large array."""
        yield from self._stream((self._check(a), None, 0) for a in arrays)

    def predict_blocks(self, blocks: Iterable[BlockPixels], stride_px: int) -> Iterator[np.ndarray]:
        """One P(tumour) array per block, for its tissue cells in row-major order.

        The patches are cut where the model runs (on the GPU from the device copy of the
        region), so what reaches the model stage is the region: 1/9 of the patches' bytes at
        stride 32. Batches are filled across blocks.
        """
        yield from self._stream(
            (self._check_region(region, tissue, stride_px), tissue_cell_index(tissue), stride_px)
            for region, tissue in blocks
        )

    def background(self, callers: int | None = None) -> BackgroundFeeder:
        """The feeder as a thread of its own, for callers that submit blocks from many threads
        (the Ray actor's concurrent calls): batches then stay in flight across their calls.
        `callers`, the most threads that wait on it at once, lets it launch a partial batch as
        soon as all of them wait (`BackgroundFeeder.gather`); the first call sets it."""
        with self._background_lock:  # calls on many threads must share one feeder
            if self._background is None:
                self._background = BackgroundFeeder(self._packer, callers)
            return self._background

    def submit_block(self, region: np.ndarray, tissue: np.ndarray, stride_px: int) -> Future[np.ndarray]:
        """Queue one block on the background feeder (any thread); its future gets the block's
        P(tumour), as `predict_blocks` would give it. A malformed region is refused here."""
        return self.background().submit(
            self._check_region(region, tissue, stride_px), tissue_cell_index(tissue), stride_px
        )

    def _stream(self, items: Iterable[tuple[np.ndarray, np.ndarray | None, int]]) -> Iterator[np.ndarray]:
        if self._background is not None:
            raise ConfigError("this predictor feeds its device from a background thread: use submit_block")
        yield from self._packer.run(items)

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
                f"patches must be uint8 of shape (N, {px}, {px}, 3) for this model, got {patches.dtype} {patches.shape}"
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
