"""Zarr's local store, reading only what a heatmap store can hold.

A store folder can be edited by anyone: a FIFO in place of a `zarr.json` blocked every reader
for good (and, in the viewer, every route), a `/dev/zero` link read until memory ran out, and a
32 KB zstd chunk that expands to 1 GiB cost 1.1 GB before any check could run. `GuardedLocalStore`
reads a key only when it is a regular file (links followed) of at most `MAX_OBJECT_BYTES`, and a
zstd chunk only when its frame header declares a content size of at most `MAX_CHUNK_BYTES`
(the store's writer always declares it), so the decompressor never allocates more. A refusal is an
`IrregularFileError` (a ValueError), which the reader turns into that slide's `damaged` line.
"""

from __future__ import annotations

import asyncio

from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import LocalStore

from pcam_scan.regular_files import IrregularFileError, check_regular_file

MAX_OBJECT_BYTES = 64 * 1024**2
"""Any one file of the store: metadata is a few kB, a compressed chunk at most a few MB."""
MAX_CHUNK_BYTES = 64 * 1024**2
"""A chunk decompressed: a 4096 x 4096 float32 grid, larger than any block or pyramid chunk."""
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_FCS_BYTES = (0, 2, 4, 8)  # by the frame header's Frame_Content_Size_flag (0: 1 byte if single-segment)
_DICT_ID_BYTES = (0, 1, 2, 4)


def zstd_content_size(frame: bytes) -> int | None:
    """The decompressed size a zstd frame declares (RFC 8878, 3.1.1.1); None when it declares none."""
    if len(frame) < 5 or frame[:4] != ZSTD_MAGIC:
        return None
    descriptor = frame[4]
    single_segment = bool(descriptor & 0x20)
    fcs_bytes = _FCS_BYTES[descriptor >> 6] or (1 if single_segment else 0)
    if not fcs_bytes:
        return None
    start = 5 + (0 if single_segment else 1) + _DICT_ID_BYTES[descriptor & 0x03]
    field = frame[start : start + fcs_bytes]
    if len(field) < fcs_bytes:
        raise IrregularFileError("a zstd chunk whose frame header is cut short")
    return int.from_bytes(field, "little") + (256 if fcs_bytes == 2 else 0)


def check_chunk_bytes(key: str, data: bytes) -> None:
    """Refuse a zstd chunk that would expand beyond `MAX_CHUNK_BYTES`, or does not say how far."""
    if data[:4] != ZSTD_MAGIC:
        return  # not zstd: the codec says what is wrong with it
    size = zstd_content_size(data)
    if size is None:
        raise IrregularFileError(f"the chunk {key} does not declare its decompressed size")
    if size > MAX_CHUNK_BYTES:
        raise IrregularFileError(
            f"the chunk {key} would expand to {size} bytes, over the limit of {MAX_CHUNK_BYTES} bytes"
        )


class GuardedLocalStore(LocalStore):
    """LocalStore whose reads refuse special files, oversized files and zstd bombs."""

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        try:
            await asyncio.to_thread(check_regular_file, self.root / key, MAX_OBJECT_BYTES)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IrregularFileError:
            if (self.root / key).is_dir():
                return None  # as Zarr's own store: a folder is no value (the reader reports it)
            raise
        value = await super().get(key, prototype, byte_range)
        if value is not None and byte_range is None and "/c/" in f"/{key}":
            check_chunk_bytes(key, value.to_bytes())
        return value
