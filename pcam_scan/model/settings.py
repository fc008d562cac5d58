"""How the model runs: the predictor's settings and their defaults, without importing torch.

The one definition of each model setting: the scan settings, the CLI's defaults and the Ray
actors all use this dataclass (it travels to the actors as is, never as a dict).
"""

from __future__ import annotations

from dataclasses import dataclass

from pcam_scan.errors import ConfigError
from pcam_scan.model.names import is_device_name

DEFAULT_BATCH_SIZE = 256
"""Patches per GPU model batch: big enough to fill a GPU at 96 px."""

CPU_BATCH_SIZE = 32
"""Patches per CPU model batch: a batch's activations then stay in the caches, and glibc's heap
reuses them batch after batch. Measured on 2 cores (ResNet50 at 96 px, docs/design-notes.md):
one thread, channels_last, did 35 patches/s at 32, 33 at 64, 28 at 128, 27 at 256; two
threads with the batch norms folded 75 at 32 and 64 at 64; a 13,000-patch run of two threads
at 32 peaked at 1.2 GB, where batches of up to 256 had grown to 2.2 GB."""

SCAN_CPU_THREADS = 1
"""Torch threads of a scan's CPU model, fixed so a block's floating-point sums do not depend on
where it ran; a CPU scan gets its parallelism from one single-thread model per core instead
(Ray actors, or the in-process executor's model threads)."""


@dataclass(frozen=True)
class PredictorSettings:
    """How to run the model. `cpu_threads` None leaves torch's thread count as it is (for
    interactive use and training); a scan fixes it (`SCAN_CPU_THREADS`).

    `deterministic` gives each block batches of its own, so its results are bit-identical
    whatever the scheduling (and on CUDA pins cuDNN: deterministic algorithms, no benchmark
    mode). False fills batches across blocks and slides: a GPU never waits for a padded batch,
    but a patch's row in its batch varies, and with it the last float bits. None (the default)
    is True on the CPU and False on a GPU.
    """

    device: str = "auto"
    batch_size: int | None = None
    """None: `DEFAULT_BATCH_SIZE` on a GPU, `CPU_BATCH_SIZE` on the CPU (`batch_size_on`)."""
    tta: bool = False
    compile: bool = False
    cpu_threads: int | None = None
    batches_in_flight: int = 3
    deterministic: bool | None = None

    def batch_size_on(self, on_gpu: bool) -> int:
        """The batch size on this kind of device."""
        if self.batch_size is not None:
            return self.batch_size
        return DEFAULT_BATCH_SIZE if on_gpu else CPU_BATCH_SIZE

    def aligns_blocks(self, on_gpu: bool) -> bool:
        """Whether each block gets batches of its own on this kind of device."""
        return self.deterministic if self.deterministic is not None else not on_gpu

    def __post_init__(self) -> None:
        if not is_device_name(self.device):
            raise ConfigError(f"device {self.device!r} is not one of auto, cpu, cuda, cuda:N")
        if self.batch_size is not None and not 1 <= self.batch_size <= 65536:
            raise ConfigError(f"batch size {self.batch_size} is outside 1..65536")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ConfigError(f"cpu_threads {self.cpu_threads} must be at least 1")
        if not 1 <= self.batches_in_flight <= 16:
            raise ConfigError(f"batches_in_flight {self.batches_in_flight} is outside 1..16")
