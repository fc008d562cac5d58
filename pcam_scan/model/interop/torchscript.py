"""TorchScript in and out, the format WSInfer and QuPath's WSInfer extension load.

torch >= 2.10 marks `torch.jit` deprecated (a FutureWarning on every call) in favour of
`torch.export`, but WSInfer loads models with `torch.jit.load` only, so this is the format to
write; the warning is silenced here, for these calls alone.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from pcam_scan.errors import CheckpointError
from pcam_scan.wording import first_line


@contextmanager
def _jit_deprecation_silenced() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def scripted_bytes(module: nn.Module) -> bytes:
    """`torch.jit.script(module)` saved to bytes (the module in eval mode, on the CPU)."""
    buffer = io.BytesIO()
    with _jit_deprecation_silenced():
        torch.jit.save(torch.jit.script(module.eval().cpu()), buffer)
    return buffer.getvalue()


def load_scripted(path: Path) -> torch.jit.ScriptModule:
    """A TorchScript file on the CPU (TorchScript code and tensors: no pickled Python objects);
    anything else is one CheckpointError line."""
    try:
        with _jit_deprecation_silenced():
            module: torch.jit.ScriptModule = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path} is not a TorchScript model ({first_line(err)})") from None
    return module.eval()
