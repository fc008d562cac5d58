"""Finding the slide file behind a store's slide id, also after the slides moved.

The store records each slide's path as given to the scan and its content fingerprint. The file
served or rendered is the recorded path when its content still has that fingerprint; otherwise,
with a slides folder (`--slides DIR`), a file in that folder with the recorded file name, then
any file of the recorded size, whose fingerprint matches. Nothing else is ever opened: no path
comes from a viewer request, and a file whose content differs from what was scanned is refused,
so a heatmap is never laid over another slide. Slides on object storage work the same way: a
recorded `s3://...` path, and a `--slides s3://bucket/prefix/` searched for the recorded file name
(fingerprints over range reads, `pcam_scan.store.fingerprint`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path, PurePath

from pcam_scan.errors import SlideError
from pcam_scan.slide_backends.remote import is_url
from pcam_scan.store import SlideRecord, slide_fingerprint

MAX_FILES_SEARCHED = 100_000


class SlideLocator:
    """Resolves slide records to files; remembers fingerprints by (path, size, mtime)."""

    def __init__(self, slides_dir: Path | str | None = None) -> None:
        if isinstance(slides_dir, str) and not is_url(slides_dir):
            slides_dir = Path(slides_dir)
        if isinstance(slides_dir, Path) and not slides_dir.is_dir():
            raise SlideError(f"slides folder {str(slides_dir)!r} is not a folder")
        self.slides_dir = slides_dir
        self._fingerprints: dict[tuple[str, int, int], str] = {}
        self._lock = threading.Lock()

    def locate(self, slide_id: str, record: SlideRecord) -> Path | str:
        """The file holding the scanned slide, or SlideError saying where it was looked for."""
        if not record.fingerprint:
            raise SlideError(f"the store records no fingerprint for slide {slide_id!r}; its file cannot be checked")
        for candidate in self._candidates(record):
            if self._matches(candidate, record.fingerprint):
                return candidate
        for url in self._remote_candidates(record):
            if self._remote_matches(url, record.fingerprint):
                return url
        where = f"recorded at {record.path!r}" if record.path else "no path recorded"
        hint = (
            f"nor in {str(self.slides_dir)!r}"
            if self.slides_dir is not None
            else "pass --slides DIR with the folder that now holds it"
        )
        raise SlideError(f"slide file of {slide_id!r} not found with the scanned content ({where}); {hint}")

    def _remote_candidates(self, record: SlideRecord) -> Iterator[str]:
        """The recorded URL, and the recorded file name under a `--slides` URL prefix."""
        if record.path and is_url(record.path):
            yield record.path
        if isinstance(self.slides_dir, str) and record.path:
            yield f"{self.slides_dir.rstrip('/')}/{PurePath(record.path).name}"

    def _remote_matches(self, url: str, fingerprint: str) -> bool:
        try:
            return slide_fingerprint(url) == fingerprint
        except SlideError:
            return False

    def _candidates(self, record: SlideRecord) -> Iterator[Path]:
        if record.path and not is_url(record.path):
            yield Path(record.path)
        if not isinstance(self.slides_dir, Path):
            return
        name = PurePath(record.path).name
        size = _fingerprint_size(record.fingerprint)
        files = list(_files_under(self.slides_dir))
        yield from (path for path in files if name and path.name == name)
        yield from (path for path in files if path.name != name and _size(path) == size)

    def _matches(self, path: Path, fingerprint: str) -> bool:
        try:
            stat = path.stat()
        except OSError:
            return False
        if not path.is_file() or stat.st_size != _fingerprint_size(fingerprint):
            return False
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._fingerprints.get(key)
        if known is None:
            try:
                known = slide_fingerprint(path)
            except SlideError:
                return False
            with self._lock:
                self._fingerprints[key] = known
        return known == fingerprint


def _fingerprint_size(fingerprint: str) -> int | None:
    """The file size recorded in an `ends-sha256:<size>:<digest>` fingerprint."""
    parts = fingerprint.split(":")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _files_under(folder: Path) -> Iterator[Path]:
    """Regular files in `folder` and below (symbolic links to folders are not followed)."""
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            seen += 1
            if seen > MAX_FILES_SEARCHED:
                return
            yield Path(root) / name
