"""Scanner checkpoints: one `.safetensors` file, weights plus a JSON metadata document.

Loading never unpickles: safetensors holds raw tensors and a JSON header, nothing executable.
Every way a file can be wrong (missing, a directory, truncated, not safetensors, no or bad
metadata, unknown architecture, weights that do not fit the architecture) is one
`CheckpointError` line.

Model id: the hex sha256 of the weights alone, so editing metadata (provenance, metrics) keeps
the id and any change to any weight changes it. Precisely, for each tensor in the order of its
name (sorted by Python string order), the hash is fed

    name (UTF-8) NUL dtype-tag ("F32", "I64", ...) NUL shape (decimal, comma-separated) NUL
    the tensor's bytes in C order, little-endian

so it depends neither on the metadata nor on how a safetensors version lays out the file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from pcam_scan.errors import CheckpointError
from pcam_scan.model.architectures import build_network
from pcam_scan.model.metadata import ModelMetadata
from pcam_scan.outputs import write_output_bytes

METADATA_KEY = "pcam_scan"

# dtype tags as safetensors names them; a checkpoint tensor of any other dtype is refused.
_DTYPE_TAGS: Mapping[torch.dtype, str] = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
}


@dataclass(frozen=True)
class LoadedModel:
    """A checked checkpoint: the network (eval mode, on its device), metadata and model id."""

    network: nn.Module
    metadata: ModelMetadata
    model_id: str
    path: Path

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())


def weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """The model id of a state dict (see the module docstring for the exact byte stream)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        shape = ",".join(str(n) for n in tensor.shape)
        digest.update(f"{name}\0{_dtype_tag(name, tensor.dtype)}\0{shape}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def save_checkpoint(
    network: nn.Module, path: str | os.PathLike[str], metadata: ModelMetadata, *, overwrite: bool = True
) -> str:
    """Write weights + metadata atomically (temp file, then rename); returns the model id.

    The weights must fit `metadata.architecture` exactly, so what is saved always loads. With
    `overwrite` False an existing file is refused (the importers' default).
    """
    state = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    _check_state_fits(metadata, {k: (tuple(v.shape), _dtype_tag(k, v.dtype)) for k, v in state.items()})
    _check_finite(state)
    target = Path(path)
    if not target.parent.is_dir():
        raise CheckpointError(f"cannot write checkpoint {target}: folder {target.parent} does not exist")
    # bytes through our own file: safetensors' save_file would create it 0600, whatever the umask
    write_output_bytes(target, save(state, metadata={METADATA_KEY: metadata.to_json()}), overwrite=overwrite)
    return weights_sha256(state)


def read_metadata(path: str | os.PathLike[str]) -> ModelMetadata:
    """The checked metadata of a checkpoint, reading only the file's header."""
    with _open(Path(path)) as handle:
        return _metadata_of(handle)


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedModel:
    """Check and load a checkpoint into a fresh network in eval mode on `device`."""
    checkpoint = Path(path)
    with _open(checkpoint) as handle:
        metadata = _metadata_of(handle)
        specs = {}
        for name in handle.keys():
            tensor_slice = handle.get_slice(name)
            specs[name] = (tuple(tensor_slice.get_shape()), tensor_slice.get_dtype())
        _check_state_fits(metadata, specs)
        state = {name: handle.get_tensor(name) for name in handle.keys()}
    _check_finite(state)
    with torch.device("meta"):  # no memory, no random init: the weights come from the file
        network = build_network(metadata.architecture, metadata.n_classes)
    network.load_state_dict(state, strict=True, assign=True)
    network.eval().to(device)
    return LoadedModel(network=network, metadata=metadata, model_id=weights_sha256(state), path=checkpoint)


@contextmanager
def _open(path: Path) -> Iterator[Any]:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a .safetensors file")
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except SafetensorError as err:
        raise CheckpointError(
            f"checkpoint {path} is not a valid safetensors file (truncated or corrupt: {err})"
        ) from None
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read: {err.strerror or err}") from None
    with handle:
        yield handle


def _metadata_of(handle: Any) -> ModelMetadata:
    text = (handle.metadata() or {}).get(METADATA_KEY)
    if text is None:
        raise CheckpointError(f"safetensors file has no {METADATA_KEY!r} metadata: not a pcam-scan checkpoint")
    return ModelMetadata.from_json(text)


def _dtype_tag(name: str, dtype: torch.dtype) -> str:
    if dtype not in _DTYPE_TAGS:
        raise CheckpointError(f"weight {name} has unsupported dtype {dtype}")
    return _DTYPE_TAGS[dtype]


def check_weights_fit(metadata: ModelMetadata, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Refuse a state dict (from another tool) that does not fit `metadata.architecture` by
    name, shape or dtype: one CheckpointError line that starts with `what`."""
    try:
        _check_state_fits(metadata, {k: (tuple(v.shape), _dtype_tag(k, v.dtype)) for k, v in state.items()})
    except CheckpointError as err:
        raise CheckpointError(f"{what}: {err}") from None


def _check_state_fits(metadata: ModelMetadata, specs: Mapping[str, tuple[tuple[int, ...], str]]) -> None:
    """Refuse weights whose names, shapes or dtypes differ from the architecture's."""
    with torch.device("meta"):
        reference = build_network(metadata.architecture, metadata.n_classes)
    expected = {k: (tuple(v.shape), _dtype_tag(k, v.dtype)) for k, v in reference.state_dict().items()}
    missing = sorted(set(expected) - set(specs))
    unexpected = sorted(set(specs) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not fit {metadata.architecture} with {metadata.n_classes} classes: "
            f"{len(missing)} missing ({_first(missing)}), {len(unexpected)} unexpected ({_first(unexpected)})"
        )
    for name, (shape, tag) in expected.items():
        got_shape, got_tag = specs[name]
        if tuple(got_shape) != shape or got_tag != tag:
            raise CheckpointError(
                f"weight {name} is {got_tag} {list(got_shape)}, {metadata.architecture} with "
                f"{metadata.n_classes} classes needs {tag} {list(shape)}"
            )


def _check_finite(state: Mapping[str, torch.Tensor]) -> None:
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"weight {name} holds NaN or infinite values")


def _first(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (", ..." if len(names) > n else "") if names else "none"
