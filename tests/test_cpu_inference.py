"""The CPU's inference network: batch norms folded, channels_last, same probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pcam_scan.model.architectures import ARCHITECTURES, build_network
from pcam_scan.model.checkpoint import load_checkpoint
from pcam_scan.model.cpu_inference import cpu_inference_model, fold_batch_norms
from pcam_scan.model.names import RESNET50_FASTAI, TINY_CNN
from pcam_scan.model.predictor import Predictor
from pcam_scan.model.random_model import write_random_checkpoint
from pcam_scan.model.settings import CPU_BATCH_SIZE, DEFAULT_BATCH_SIZE, PredictorSettings


def _trained_looking(network: nn.Module) -> nn.Module:
    """Batch norms with statistics far from their init, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(0.5 + torch.rand(n, generator=generator))
                module.bias.copy_(0.2 * torch.rand(n, generator=generator) - 0.1)
    return network.eval()


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_folding_keeps_every_architectures_probabilities(architecture: str) -> None:
    torch.manual_seed(0)
    network = _trained_looking(build_network(architecture, 2))
    folded = fold_batch_norms(network)
    x = torch.rand(4, 3, 96, 96)
    with torch.inference_mode():
        expected = network(x).softmax(dim=1)
        got = folded(x.contiguous(memory_format=torch.channels_last)).softmax(dim=1)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    assert any(isinstance(m, nn.BatchNorm2d) for m in network.modules()) == (architecture not in ("null",))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())  # every conv's BN folded


def test_a_training_network_is_not_folded() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(build_network(TINY_CNN, 2).train())


def test_the_checkpoints_network_is_left_as_loaded_and_a_prepared_model_is_not_prepared_again(tmp_path: Path) -> None:
    write_random_checkpoint(tmp_path / "r50.safetensors", RESNET50_FASTAI)
    loaded = load_checkpoint(tmp_path / "r50.safetensors")
    names = set(loaded.network.state_dict())
    prepared = cpu_inference_model(loaded)
    assert set(loaded.network.state_dict()) == names  # the checkpoint's names, for export and calibration
    assert prepared.model_id == loaded.model_id and prepared.metadata == loaded.metadata
    assert cpu_inference_model(prepared) is prepared
    conv = next(m for m in prepared.network.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_predictors_of_one_prepared_model_share_its_weights_and_agree_with_the_plain_network(tmp_path: Path) -> None:
    write_random_checkpoint(tmp_path / "tiny.safetensors", TINY_CNN)
    loaded = load_checkpoint(tmp_path / "tiny.safetensors")
    _trained_looking(loaded.network)
    prepared = cpu_inference_model(loaded)
    first, second = (Predictor(prepared, PredictorSettings(device="cpu", cpu_threads=1)) for _ in range(2))
    weight = [next(p._scorer.parameters()).data_ptr() for p in (first, second)]
    assert weight[0] == weight[1]
    patches = np.random.default_rng(3).integers(0, 256, (10, 96, 96, 3), dtype=np.uint8)
    mean = torch.tensor(loaded.metadata.normalisation.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.metadata.normalisation.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        x = (torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
        plain = loaded.network(x).softmax(dim=1)[:, loaded.metadata.tumour_index].numpy()
    got = first.predict(patches)
    np.testing.assert_allclose(got, plain, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(second.predict(patches), got)


def test_the_batch_size_defaults_to_the_devices() -> None:
    assert PredictorSettings().batch_size_on(on_gpu=False) == CPU_BATCH_SIZE
    assert PredictorSettings().batch_size_on(on_gpu=True) == DEFAULT_BATCH_SIZE
    assert PredictorSettings(batch_size=8).batch_size_on(on_gpu=True) == 8
