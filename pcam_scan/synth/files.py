"""Output files of the synthetic data set appear whole or not at all (`pcam_scan.outputs`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pcam_scan.outputs import atomic_output


@contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """Yield a new hidden sibling to write; on success it replaces `path`, else it is removed.
    `synth` decided beforehand whether its outputs may be replaced (`--overwrite`)."""
    with atomic_output(path, overwrite=True) as partial:
        yield partial
