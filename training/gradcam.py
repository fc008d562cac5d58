"""Grad-CAM: where in a patch the network looked for the class it scored.

For a network `nn.Sequential(body, head)`, the body's output A (N, C, h, w) is weighted per
channel by the spatial mean of d(logit of the class)/dA; the ReLU of the weighted sum, upsampled
to the patch and scaled to [0, 1] per patch, is the heatmap (Selvaraju et al., 2017).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def grad_cam(network: nn.Module, inputs: torch.Tensor, classes: torch.Tensor, out_px: int) -> torch.Tensor:
    """float32 (N, out_px, out_px) heatmaps in [0, 1] of `classes` (N,) for normalised `inputs`.

    The network is run in eval mode in float32; its parameters get no gradient.
    """
    body, head = network[0], network[1]  # type: ignore[index]
    was_training = network.training
    network.eval()
    try:
        with torch.enable_grad(), torch.autocast(inputs.device.type, enabled=False):
            activations = body(inputs.float()).detach().requires_grad_(True)
            logits = head(activations)
            chosen = logits.gather(1, classes.view(-1, 1).to(logits.device)).sum()
            (grads,) = torch.autograd.grad(chosen, activations)
    finally:
        network.train(was_training)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations.detach()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=(out_px, out_px), mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).float().cpu()
