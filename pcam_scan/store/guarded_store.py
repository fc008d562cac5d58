"""Zarr's local store, reading only what a heatmap store can hold.

A store folder can be edited by anyone: a FIFO in place of a `zarr.json` blocked every reader
for good (and, in the viewer, every route), a `/dev/zero` link read until memory ran out, and a
32 KB zstd chunk that expands to 1 GiB cost 1.1 GB before any check could run. `GuardedLocalStore`
reads a key only when it is a regular file (links followed) of at most `MAX_OBJECT_BYTES`, and a
zstd chunk only when its frame header declares a content size of at most `MAX_CHUNK_BYTES`
(the store's writer always declares it), so the decompressor never allocates more. A refusal is an
`IrregularFileError` (a ValueError), which the reader turns into that slide's `damaged` line.

`IsolatedLocalStore` (the viewer's) also keeps one slide's stalled file from stalling the others.
Zarr's LocalStore reads each file in `asyncio.to_thread`, on the default executor of Zarr's one
event loop: a few threads that every array of the process shares. A chunk file whose open() blocks
(a lease, a hung network mount) takes one of them for as long as it blocks, and a burst of requests
for that slide took them all, so no other slide's heatmap could be read. This store runs each of
its file reads through a `ReadIsolation`, by the slide the key belongs to (its first path part):
the viewer's `pcam_scan.viewer.isolation.SlideGate`, whose threads are counted per slide and whose
waits end after a time limit. The root's own files, and the calls that open no file (existence,
size, listings: the slide list checks every slide's `zarr.json` exists), run as one more owner,
`ROOT_OWNER`: a stat blocks only where the whole file system does, which stalls every slide
alike, while a stalled open() of one slide's file must not stop the listing. The event loop's own
thread never touches a file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Protocol, Self, TypeVar

from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.core.buffer.core import default_buffer_prototype
from zarr.storage import LocalStore
from zarr.storage._local import _get

from pcam_scan.regular_files import IrregularFileError, check_regular_file

T = TypeVar("T")

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
            await asyncio.to_thread(self._check_key, key)
        except (FileNotFoundError, NotADirectoryError):
            return None
        value = await super().get(key, prototype, byte_range)
        if value is not None and byte_range is None and is_chunk_key(key):
            check_chunk_bytes(key, value.to_bytes())
        return value

    def _check_key(self, key: str) -> None:
        """IrregularFileError unless the key's file is a regular file within the limit;
        FileNotFoundError when there is none (a folder counts as none, as in Zarr's own store)."""
        try:
            check_regular_file(self.root / key, MAX_OBJECT_BYTES)
        except IrregularFileError:
            if (self.root / key).is_dir():
                raise FileNotFoundError(key) from None  # the reader reports the missing value
            raise


class ReadIsolation(Protocol):
    """Runs one blocking read for an owner (a slide id) in threads counted per owner, and gives
    up waiting after a time limit (`pcam_scan.viewer.isolation.SlideGate`)."""

    async def run(self, slide_id: str, work: Callable[[], T]) -> T: ...


ROOT_OWNER = "(store root)"
"""The owner of the store root's own files (its `zarr.json`) and of the calls that open no file."""


def is_chunk_key(key: str) -> bool:
    """Whether a store key names an array chunk (Zarr v3's default `.../c/...` chunk keys)."""
    return "/c/" in f"/{key}"


def key_owner(key: str) -> str:
    """Whose places a read of `key` takes: its slide's (its first path part) for a chunk
    (`tumor_001/prob/0/c/0/1` -> `tumor_001`), the slide's metadata's for its `zarr.json`
    documents (`tumor_001 (metadata)`: the slide list reads them while a chunk may stall), and
    `ROOT_OWNER` for the root's own files."""
    head, sep, _ = key.strip("/").partition("/")
    if not sep:
        return ROOT_OWNER
    return head if is_chunk_key(key) else f"{head} (metadata)"


class IsolatedLocalStore(GuardedLocalStore):
    """GuardedLocalStore whose every file access runs through `isolation`, by the key's slide
    (see the module docstring). Read-only: the viewer never writes."""

    def __init__(self, root: Path | str, isolation: ReadIsolation) -> None:
        super().__init__(root, read_only=True)
        self.isolation = isolation

    def with_read_only(self, read_only: bool = False) -> Self:
        if not read_only:
            raise ValueError("an isolated store is read-only")
        return type(self)(self.root, self.isolation)

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        prototype = prototype or default_buffer_prototype()
        if not self._is_open:
            await self._open()

        def read() -> Buffer | None:
            try:
                self._check_key(key)
                return _get(self.root / key, prototype, byte_range)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return None

        value = await self.isolation.run(key_owner(key), read)
        if value is not None and byte_range is None and is_chunk_key(key):
            check_chunk_bytes(key, value.to_bytes())
        return value

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(key, prototype, byte_range) for key, byte_range in key_ranges)))

    async def exists(self, key: str) -> bool:
        path = self.root / key
        return await self.isolation.run(ROOT_OWNER, path.is_file)

    async def getsize(self, key: str) -> int:
        path = self.root / key
        return await self.isolation.run(ROOT_OWNER, lambda: os.path.getsize(path))

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        base = self.root / prefix

        def names() -> list[str]:
            try:
                return [entry.name for entry in base.iterdir()]
            except (FileNotFoundError, NotADirectoryError):
                return []

        for name in await self.isolation.run(ROOT_OWNER, names):
            yield name

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        base = self.root / prefix.rstrip("/")

        def keys() -> list[str]:
            return [p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file()]

        for key in await self.isolation.run(ROOT_OWNER, keys):
            yield key

    async def list(self) -> AsyncIterator[str]:
        async for key in self.list_prefix(""):
            yield key
