"""A cheap content fingerprint of a slide file, so a resume never mixes two versions of a slide.

Format: `ends-sha256:<size in bytes>:<hex sha256 of the first MiB followed by the last MiB>`
(for files under 2 MiB the two windows overlap; the digest then covers the whole file). It reads
2 MiB whatever the slide's size, so planning a batch of 4 GB slides stays fast. The modification
time is deliberately left out: copying or syncing a slide to another disk changes it, and such a
copy must still resume. A change confined to the middle of a large file (with its size unchanged)
is not seen; whole-slide files are written once by the scanner, so that case is accepted.
A slide that is a folder (a DICOM series) has `folder-ends-sha256:<total bytes>:<hex sha256 of
each file's name and fingerprint, in name order>`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import fsspec

from pcam_scan.errors import SlideError
from pcam_scan.regular_files import IrregularFileError, check_regular_file

FINGERPRINT_WINDOW_BYTES = 1 << 20
FINGERPRINT_SCHEME = "ends-sha256"
FOLDER_FINGERPRINT_SCHEME = "folder-ends-sha256"


def slide_fingerprint(path: str | Path) -> str:
    """Fingerprint a slide file, local or at an fsspec URL (range reads of the two windows): a
    copy on object storage has the same fingerprint as the local file (see the module docstring)."""
    if isinstance(path, str) and "://" in path and not path.startswith("file://"):
        return _remote_fingerprint(path)
    file_path = Path(path)
    if file_path.is_dir():
        return _folder_fingerprint(file_path)
    try:
        size_bytes = check_regular_file(file_path).st_size  # a FIFO would block the read for good
        digest = hashlib.sha256()
        with file_path.open("rb") as handle:
            digest.update(handle.read(FINGERPRINT_WINDOW_BYTES))
            handle.seek(max(0, size_bytes - FINGERPRINT_WINDOW_BYTES))
            digest.update(handle.read(FINGERPRINT_WINDOW_BYTES))
    except IrregularFileError as err:
        raise SlideError(f"cannot read slide file: {err}") from None
    except OSError as err:
        reason = err.strerror or err
        raise SlideError(f"cannot read slide file {str(file_path)!r}: {reason}") from err
    return f"{FINGERPRINT_SCHEME}:{size_bytes}:{digest.hexdigest()}"


def _folder_fingerprint(folder: Path) -> str:
    """A folder slide (a DICOM series): the sha256 of each regular file's name and fingerprint,
    in name order, with the files' total size; adding, removing or changing a file changes it."""
    digest = hashlib.sha256()
    total_bytes = 0
    try:
        files = sorted(entry for entry in folder.iterdir() if entry.is_file())
    except OSError as err:
        raise SlideError(f"cannot list slide folder {str(folder)!r}: {err.strerror or err}") from err
    for entry in files:
        fingerprint = slide_fingerprint(entry)
        total_bytes += int(fingerprint.split(":")[1])
        digest.update(f"{entry.name}\0{fingerprint}\0".encode())
    return f"{FOLDER_FINGERPRINT_SCHEME}:{total_bytes}:{digest.hexdigest()}"


def _remote_fingerprint(url: str) -> str:
    """The same fingerprint over two range reads of a remote file."""
    try:
        fs, key = fsspec.core.url_to_fs(url)
        size_bytes = int(fs.size(key))
        digest = hashlib.sha256()
        digest.update(fs.cat_file(key, start=0, end=min(size_bytes, FINGERPRINT_WINDOW_BYTES)))
        digest.update(fs.cat_file(key, start=max(0, size_bytes - FINGERPRINT_WINDOW_BYTES), end=size_bytes))
    except (OSError, ValueError, ImportError) as err:
        raise SlideError(f"cannot read slide file {url!r}: {err}") from err
    return f"{FINGERPRINT_SCHEME}:{size_bytes}:{digest.hexdigest()}"
