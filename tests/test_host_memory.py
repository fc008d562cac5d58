"""The CPU model's fixed mmap threshold: a large buffer freed goes back to the system, and the
next smaller large buffer is mapped again, not carved from the heap (where buffers of varying
sizes fragment and the peak grows batch after batch)."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
from pcam_scan.model.host_memory import fix_mmap_threshold

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
libc.free(libc.malloc(8 * 1024 * 1024))  # mapped, and by default raises the threshold to 8 MiB
before = libc.mallinfo2().hblkhd
buffer = libc.malloc(1024 * 1024)
print(libc.mallinfo2().hblkhd - before)  # bytes of the 1 MiB buffer that were mapped
libc.free(buffer)
"""


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _has_mallinfo2(), reason="glibc 2.33+ only")
def test_a_fixed_threshold_maps_each_large_buffer_where_the_default_would_reuse_the_heap() -> None:
    def mapped_bytes(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return int(done.stdout)

    assert mapped_bytes("default") == 0  # glibc's rising threshold: the 1 MiB came from the heap
    assert mapped_bytes("fixed") >= 1024 * 1024
