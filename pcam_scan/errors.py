"""The one exception family for user-facing errors.

Every error a user can cause (a bad slide, a missing MPP, a bad checkpoint, a bad annotation, a
store that holds other results) is a `PcamScanError`: the CLI prints its message as one line and
exits non-zero, never a traceback. Anything else escaping is a bug.
"""

from __future__ import annotations


class PcamScanError(Exception):
    """Base of all user-facing errors; `str(err)` is the one line the CLI prints."""


class SlideError(PcamScanError):
    """A slide cannot be opened, read, or is not a whole-slide image."""


class MissingMppError(SlideError):
    """A slide carries no usable microns-per-pixel; the user must pass --mpp."""


class CheckpointError(PcamScanError):
    """A model checkpoint is missing, corrupt, or inconsistent."""


class AnnotationError(PcamScanError):
    """An annotation file is malformed, unsafe, or of an unknown kind."""


class StoreError(PcamScanError):
    """A heatmap store cannot be used for this run (other model or settings, corrupt, missing)."""


class ConfigError(PcamScanError):
    """A setting is out of range or settings contradict each other."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is (pcam_scan.cli), so that every `finally`
    runs (the scan lock is removed, temporary files go) instead of the process vanishing with the
    lock left. Declared here, not in the CLI module: run as `python -m pcam_scan.cli`, that module
    is loaded twice (`__main__` and `pcam_scan.cli`), and a class of each copy would differ."""


def describe_error(err: BaseException) -> str:
    """One line for a slide's failed status: the message, with the type when it adds meaning
    (a user-facing error speaks for itself; anything else is named, as it is a bug or an
    environment problem)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, PcamScanError) else f"{type(err).__name__}: {text}"
