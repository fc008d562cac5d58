"""A checkpoint as a WSInfer model folder: `torchscript_model.pt` + `config.json`.

QuPath's WSInfer extension and `wsinfer run --model-path ... --config ...` load the TorchScript
with `torch.jit.load`, feed it the config's transforms of each patch (here Resize to the
checkpoint's patch size, ToTensor, Normalize with its mean and std) and apply a softmax to its
output. So the TorchScript returns the network's raw logits; when the network's input differs
from the patch size (224 px for the original fastai recipe) it first resizes as the scanner does
(bilinear, antialiased), so WSInfer's probabilities are the scanner's up to resampling.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pcam_scan.model.checkpoint import load_checkpoint
from pcam_scan.model.interop.torchscript import scripted_bytes
from pcam_scan.model.interop.wsinfer_config import CONFIG_NAME, TORCHSCRIPT_NAME, config_from_metadata, validate_config
from pcam_scan.outputs import check_output_files, make_output_dir, write_output_bytes, write_output_text


class LogitsForWsinfer(nn.Module):
    """Normalised (N, 3, patch_px, patch_px) patches -> the network's logits (N, classes)."""

    def __init__(self, network: nn.Module, input_px: int, resize: bool) -> None:
        super().__init__()
        self.network = network
        self.input_px = input_px
        self.resize = resize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize:
            x = F.interpolate(
                x, size=(self.input_px, self.input_px), mode="bilinear", antialias=True, align_corners=False
            )
        logits: torch.Tensor = self.network(x)
        return logits


def export_wsinfer(checkpoint: Path, out: Path, *, overwrite: bool) -> tuple[Path, Path]:
    """Write `out/torchscript_model.pt` and `out/config.json` (validated against wsinfer-zoo's
    schema before anything is written); returns their paths."""
    loaded = load_checkpoint(checkpoint, device="cpu")
    meta = loaded.metadata
    config = config_from_metadata(meta, loaded.model_id)
    validate_config(config)
    targets = (out / TORCHSCRIPT_NAME, out / CONFIG_NAME)
    make_output_dir(out)
    check_output_files(targets, overwrite)
    module = LogitsForWsinfer(loaded.network, meta.input_px, meta.input_px != meta.patch_px).eval()
    write_output_bytes(targets[0], scripted_bytes(module), overwrite)
    write_output_text(targets[1], json.dumps(config, indent=2) + "\n", overwrite)
    return targets
