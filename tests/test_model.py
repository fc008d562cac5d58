"""The scanner's networks: fastai equivalence of resnet50-fastai-head, and the registry."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pcam_scan.model.architectures import ARCHITECTURES, RESNET50_FASTAI, TINY_CNN, build_network


def _import_fastai():  # type: ignore[no-untyped-def]
    """fastai and pandas emit deprecation warnings at import; they are theirs, not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastai.data.core import DataLoaders
        from fastai.data.load import DataLoader
        from fastai.vision.learner import vision_learner
    return DataLoaders, DataLoader, vision_learner


def test_fastai_trained_resnet50_loads_strictly_and_gives_the_same_outputs() -> None:
    from torchvision.models import resnet50

    DataLoaders, DataLoader, vision_learner = _import_fastai()
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((8, 3, 64, 64), dtype=np.float32))
    labels = torch.tensor([0, 1] * 4)
    dataset = list(zip(images, labels))
    dls = DataLoaders(DataLoader(dataset, bs=4, shuffle=True, drop_last=True), DataLoader(dataset, bs=4), device="cpu")
    torch.manual_seed(0)
    learn = vision_learner(dls, resnet50, pretrained=False, n_out=2, loss_func=torch.nn.CrossEntropyLoss())
    learn.fit(1, lr=1e-3)  # one real epoch: weights and BatchNorm statistics move off their init

    scanner_net = build_network(RESNET50_FASTAI, 2)
    scanner_net.load_state_dict(learn.model.state_dict(), strict=True)
    learn.model.eval()
    scanner_net.eval()
    batch = torch.from_numpy(rng.normal(size=(3, 3, 96, 96)).astype(np.float32))
    with torch.no_grad():
        expected = learn.model(batch)
        got = scanner_net(batch)
    assert learn.model[1][2].num_batches_tracked.item() == 2
    assert got.shape == (3, 2)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("input_px", [96, 224])
def test_every_architecture_maps_rgb_patches_to_one_logit_per_class(architecture: str, input_px: int) -> None:
    net = build_network(architecture, 3).eval()
    with torch.no_grad():
        logits = net(torch.zeros(2, 3, input_px, input_px))
    assert logits.shape == (2, 3)


def test_tiny_cnn_shares_the_fastai_head_layout() -> None:
    tiny = build_network(TINY_CNN, 2).state_dict()
    resnet = build_network(RESNET50_FASTAI, 2).state_dict()
    head_keys = {k for k in resnet if k.startswith("1.")}
    assert head_keys == {k for k in tiny if k.startswith("1.")}
    assert tiny["1.8.weight"].shape == (2, 64)
    assert resnet["1.4.weight"].shape == (512, 4096)


def test_the_torch_free_names_are_the_registry_s() -> None:
    from pcam_scan.model.names import ARCHITECTURE_NAMES

    assert set(ARCHITECTURE_NAMES) == set(ARCHITECTURES)


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_scorer_normalises_in_one_pass_to_exactly_the_textbook_values(channels_last: bool, tmp_path: Path) -> None:
    from pcam_scan.model.checkpoint import load_checkpoint
    from pcam_scan.model.random_model import write_random_checkpoint
    from pcam_scan.model.scoring import PatchScorer

    write_random_checkpoint(tmp_path / "tiny.safetensors", TINY_CNN)
    loaded = load_checkpoint(tmp_path / "tiny.safetensors")
    network, metadata = loaded.network, loaded.metadata
    scorer = PatchScorer(network, metadata, channels_last=channels_last)
    patches = torch.randint(0, 256, (6, 96, 96, 3), dtype=torch.uint8)
    mean = torch.tensor(metadata.normalisation.mean).view(1, 3, 1, 1)
    std = torch.tensor(metadata.normalisation.std).view(1, 3, 1, 1)
    textbook = patches.permute(0, 3, 1, 2).float() * (1.0 / (255.0 * std)) + (-mean / std)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    with torch.inference_mode():
        expected = network(textbook.contiguous(memory_format=layout)).softmax(dim=1)[:, metadata.tumour_index]
        assert torch.equal(scorer(patches), expected)
