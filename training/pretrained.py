"""Starting weights, from local files only (nothing is downloaded at run time).

- ImageNet: torchvision's ResNet50 weights, from `--weights FILE` or torchvision's cache
  (`torch.hub.get_dir()/checkpoints`, where `torchvision.models.resnet50(weights=...)` leaves
  them): IMAGENET1K_V2 first (fastai's DEFAULT), then V1. They go into the body; the head stays
  freshly initialised, as in `vision_learner`.
- A pcam-scan checkpoint (`--weights model.safetensors`): the whole network, to go on training a
  PCam model on patches mined from one's own slides.
`.pth` files are read with `torch.load(weights_only=True)`, which unpickles no code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from pcam_scan.errors import CheckpointError, ConfigError
from pcam_scan.model.checkpoint import METADATA_KEY, load_checkpoint
from pcam_scan.model.names import RESNET50_FASTAI

# torchvision ResNet children in order; the body is nn.Sequential of the first eight.
_RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class StartingWeights:
    """Where the starting weights come from and what they cover ("body" or "network")."""

    path: Path
    kind: str
    description: str


def imagenet_cache_files() -> list[Path]:
    """torchvision's cached ResNet50 ImageNet files, fastai's default (V2) first."""
    from torchvision.models import ResNet50_Weights

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    names = [Path(urlparse(w.url).path).name for w in (ResNet50_Weights.IMAGENET1K_V2, ResNet50_Weights.IMAGENET1K_V1)]
    return [folder / name for name in names]


def find_starting_weights(architecture: str, weights_path: Path | None, pretrained: bool) -> StartingWeights | None:
    """The weights to start from, None for a random start; missing ImageNet weights is an error
    that says how to get them or to pass --no-pretrained."""
    if not pretrained:
        return None
    if weights_path is not None:
        if not weights_path.is_file():
            raise ConfigError(f"weights file {weights_path} does not exist")
        if _is_pcam_checkpoint(weights_path):
            return StartingWeights(weights_path, "network", f"pcam-scan checkpoint {weights_path}")
        return StartingWeights(weights_path, "body", f"ImageNet weights {weights_path}")
    if architecture != RESNET50_FASTAI:
        raise ConfigError(f"{architecture} has no ImageNet weights: pass --no-pretrained")
    for path in imagenet_cache_files():
        if path.is_file():
            return StartingWeights(path, "body", f"torchvision ImageNet weights {path.name}")
    expected = " or ".join(str(p) for p in imagenet_cache_files())
    raise ConfigError(
        f"no ImageNet ResNet50 weights found locally (looked for {expected}); put torchvision's "
        "file there, pass --weights FILE, or train from scratch with --no-pretrained"
    )


def _is_pcam_checkpoint(path: Path) -> bool:
    if path.suffix != ".safetensors":
        return False
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return METADATA_KEY in (handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise ConfigError(f"cannot read weights {path}: not a valid .safetensors file ({err})") from None


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    import pickle
    import warnings

    from safetensors import SafetensorError

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        with warnings.catch_warnings():  # its pickle-protocol notice would precede our one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, ValueError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"cannot read weights {path}: {reason[:200]}") from None
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, which would run the file's code
        raise ConfigError(
            f"cannot read weights {path}: it holds pickled objects other than tensors, which "
            "pcam-scan never loads; convert it to .safetensors or a plain state dict"
        ) from None
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path} holds no state dict")
    return dict(state)


def body_state_from_torchvision(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ResNet names (`layer1.0.conv1.weight`) to body names (`4.0.conv1.weight`);
    the classifier (`fc.*`) is dropped."""
    index = {name: str(i) for i, name in enumerate(_RESNET_CHILDREN)}
    out = {}
    for key, tensor in state.items():
        child, _, rest = key.partition(".")
        if child == "fc":
            continue
        if child not in index:
            raise ConfigError(f"weight {key} is not a torchvision ResNet weight")
        out[f"{index[child]}.{rest}"] = tensor
    return out


def load_starting_weights(network: nn.Sequential, start: StartingWeights, architecture: str) -> None:
    """Load `start` into `network` (body, head) in place; every key must match."""
    if start.kind == "network":
        loaded = load_checkpoint(start.path, device="cpu")
        if loaded.metadata.architecture != architecture:
            raise ConfigError(f"{start.path} holds a {loaded.metadata.architecture} model, not {architecture}")
        network.load_state_dict(loaded.network.state_dict(), strict=True)
        return
    body = network[0]
    state = _read_state(start.path)
    mapped = body_state_from_torchvision(state) if any(k.startswith("conv1.") for k in state) else state
    try:
        body.load_state_dict(mapped, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{start.path} does not fit the {architecture} body: {first}") from None
