"""Keep a CPU model's peak memory flat: large freed buffers go back to the system.

A CPU forward allocates and frees activation tensors of many sizes (a block's batch holds from
one patch to the batch size). glibc's malloc serves a buffer above its mmap threshold (128 KiB)
with mmap and unmaps it on free, but by default raises the threshold to the size of each such
buffer freed (up to 32 MiB). From the second batch on, the activations then come from the heap
arenas (one per thread that runs a model), where freed pieces of every size are kept and
fragment: two single-thread ResNet50 models in one process, batches of 20-121 patches of 96 px,
grew from 1.27 to 2.24 GB peak RSS in 12 batches; with the threshold fixed they stayed at 1.1 GB
(docs/design-notes.md, "In process, one model thread per core"). Setting the threshold
explicitly turns the rise off (mallopt(3)); the cost is a page fault per new page of each
batch's activations, a few percent of a forward.
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3
"""mallopt's parameter number for the mmap threshold (glibc's malloc.h)."""

MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's default threshold, now fixed: buffers above it are mapped and unmapped."""


def fix_mmap_threshold() -> bool:
    """Fix the C library's mmap threshold for this process (idempotent); False where the C
    library is not glibc (no `mallopt`, or one that ignores the setting)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process runs on
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
