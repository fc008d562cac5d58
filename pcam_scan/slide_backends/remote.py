"""Slides on object storage (`s3://bucket/key.svs`, any fsspec URL): open with range reads, count
the bytes fetched, list a prefix.

A remote slide is read by tiffslide through an fsspec file opened without fsspec's read cache
(`cache_type="none"`): each read tifffile makes (a header, a tile) is one range request of exactly
the bytes it needs, and a bounded cache answers the tiles neighbouring blocks share, so the bytes
fetched per slide stay close to the compressed bytes of the tiles its blocks touch
(`CountingFile` counts them; tests/test_remote_slides.py checks the ratio). Endpoint and
credentials come from the environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...), as for
stores (`pcam_scan.store.location`).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any

import fsspec

from pcam_scan.errors import SlideError

FILE_SCHEME = "file://"


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names a remote file (an fsspec URL other than `file://`)."""
    text = path if isinstance(path, str) else os.fspath(path)
    return "://" in text and not text.startswith(FILE_SCHEME)


READ_CACHE_BYTES = 64 << 20
"""Reads kept per open remote slide. Neighbouring blocks' halos touch the same tiles, and a
worker reads a slide's blocks in row order, so a cache of one block row (a few MB on a
Camelyon16 slide) fetches each tile about once; 64 MiB bounds it per open slide."""


class CountingFile:
    """A read-only file object over an fsspec file: counts the bytes fetched, and answers a read
    of exactly the range of an earlier one (tifffile reads a tile as one `seek` + `read`) from a
    bounded LRU cache. Thread-safe: one lock around position, cache and count."""

    def __init__(self, raw: Any, cache_bytes: int = READ_CACHE_BYTES) -> None:
        self._raw = raw
        self._lock = threading.Lock()
        self._pos = 0
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._cached_bytes = 0
        self._cache_cap = cache_bytes
        self.bytes_read = 0
        self.name = os.path.basename(str(getattr(raw, "path", "slide")))

    def read(self, n: int = -1) -> bytes:
        with self._lock:
            key = (self._pos, n)
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
            else:
                self._raw.seek(self._pos)
                data = bytes(self._raw.read(n))
                self.bytes_read += len(data)
                if n > 0 and len(data) <= self._cache_cap:
                    self._cache[key] = data
                    self._cached_bytes += len(data)
                    while self._cached_bytes > self._cache_cap:
                        _, dropped = self._cache.popitem(last=False)
                        self._cached_bytes -= len(dropped)
            self._pos += len(data)
            return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        with self._lock:
            if whence == os.SEEK_SET:
                self._pos = offset
            elif whence == os.SEEK_CUR:
                self._pos += offset
            else:
                self._pos = int(self._raw.size) + offset
            return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            self._cached_bytes = 0
        self._raw.close()

    @property
    def closed(self) -> bool:
        return bool(self._raw.closed)


def open_remote(url: str) -> CountingFile:
    """The remote file at `url`, unbuffered (every read a range request), counting its bytes."""
    try:
        fs, path = fsspec.core.url_to_fs(url)
        if not fs.isfile(path):
            raise SlideError(f"{url}: no such file")
        return CountingFile(fs.open(path, "rb", cache_type="none"))
    except SlideError:
        raise
    except (OSError, ValueError, ImportError) as err:
        raise SlideError(f"{url}: cannot open: {err}") from None


def list_remote(prefix: str, suffixes: frozenset[str]) -> list[str]:
    """The files right under the remote folder `prefix` whose names end in one of `suffixes`, as
    URLs, sorted; SlideError when the prefix cannot be listed."""
    try:
        fs, path = fsspec.core.url_to_fs(prefix)
        entries = fs.ls(path.rstrip("/"), detail=True)
    except (OSError, ValueError, ImportError) as err:
        raise SlideError(f"{prefix}: cannot list: {err}") from None
    protocol = prefix.split("://", 1)[0]
    names = [
        entry["name"]
        for entry in entries
        if entry.get("type") == "file" and os.path.splitext(entry["name"])[1].lower() in suffixes
    ]
    return sorted(f"{protocol}://{name}" for name in names)


def remote_is_folder(url: str) -> bool:
    """Whether `url` is a prefix holding objects (an object-store 'folder'), not one object."""
    try:
        fs, path = fsspec.core.url_to_fs(url)
        return bool(fs.isdir(path))
    except (OSError, ValueError, ImportError) as err:
        raise SlideError(f"{url}: cannot reach: {err}") from None
