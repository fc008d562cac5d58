"""The predictor on the CPU: what it computes, TTA, batch independence, determinism, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pcam_scan.errors import ConfigError
from pcam_scan.model.architectures import RESNET50_FASTAI
from pcam_scan.model.checkpoint import load_checkpoint, save_checkpoint
from pcam_scan.model.predictor import Predictor, PredictorSettings, resolve_device
from pcam_scan.model.random_model import calibration_patches, write_random_checkpoint

CPU = PredictorSettings(device="cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pred") / "tiny.safetensors"
    write_random_checkpoint(path, seed=5)
    return path


@pytest.fixture(scope="module")
def tiny_224(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pred224") / "tiny224.safetensors"
    write_random_checkpoint(path, input_px=224, seed=6)
    return path


@pytest.fixture
def restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _patches(n: int, seed: int = 0) -> np.ndarray:
    return calibration_patches(96, n, seed + 100)


def _by_hand(path: Path, patches: np.ndarray) -> np.ndarray:
    """softmax(network((x / 255 - mean) / std))[:, tumour], written out without the predictor."""
    loaded = load_checkpoint(path)
    meta = loaded.metadata
    x = torch.from_numpy(patches.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    mean = torch.tensor(meta.normalisation.mean).view(1, 3, 1, 1)
    std = torch.tensor(meta.normalisation.std).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = loaded.network((x - mean) / std)
    return torch.softmax(logits, dim=1)[:, meta.tumour_index].numpy()


def test_predicts_softmax_tumour_probability_as_float32(tiny: Path) -> None:
    patches = _patches(10)
    probs = Predictor.from_checkpoint(tiny, CPU).predict(patches)
    assert probs.dtype == np.float32 and probs.shape == (10,)
    assert np.all((probs >= 0) & (probs <= 1))
    assert probs.std() > 0.01  # the calibrated random model tells patches apart
    np.testing.assert_allclose(probs, _by_hand(tiny, patches), rtol=0, atol=1e-6)


def test_uses_the_tumour_index_from_the_metadata(tiny: Path, tmp_path: Path) -> None:
    loaded = load_checkpoint(tiny)
    flipped = type(loaded.metadata)(
        architecture=loaded.metadata.architecture,
        provenance=loaded.metadata.provenance,
        classes=("tumour", "normal"),
        tumour_index=0,
    )
    save_checkpoint(loaded.network, tmp_path / "flipped.safetensors", flipped)
    patches = _patches(6)
    p_index1 = Predictor.from_checkpoint(tiny, CPU).predict(patches)
    p_index0 = Predictor.from_checkpoint(tmp_path / "flipped.safetensors", CPU).predict(patches)
    np.testing.assert_allclose(p_index0, 1.0 - p_index1, rtol=0, atol=1e-6)


def test_resizes_to_the_network_input_size(tiny_224: Path) -> None:
    """A flat colour stays the same flat colour when resized, so the 224 px result is known."""
    colours = np.array([[230, 200, 220], [120, 40, 160], [255, 255, 255]], dtype=np.uint8)
    patches = np.broadcast_to(colours[:, None, None, :], (3, 96, 96, 3)).copy()
    loaded = load_checkpoint(tiny_224)
    meta = loaded.metadata
    x = torch.from_numpy(colours.astype(np.float32) / 255.0).view(3, 3, 1, 1).expand(3, 3, 224, 224)
    mean = torch.tensor(meta.normalisation.mean).view(1, 3, 1, 1)
    std = torch.tensor(meta.normalisation.std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.softmax(loaded.network((x - mean) / std), dim=1)[:, 1].numpy()
    probs = Predictor(loaded, CPU).predict(patches)
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-6)
    assert len(set(probs.round(4))) == 3


def _d4_symmetric(seed: int) -> np.ndarray:
    """A patch equal to all its rotations and mirror images: pixel value depends only on the
    unordered pair of distances to the nearest horizontal and vertical border."""
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8)
    d = np.minimum(np.arange(96), 95 - np.arange(96))
    rows, cols = np.meshgrid(d, d, indexing="ij")
    return table[np.minimum(rows, cols), np.maximum(rows, cols)]


def _d4(patch: np.ndarray) -> list[np.ndarray]:
    views = []
    for k in range(4):
        rotated = np.rot90(patch, k)
        views += [rotated, rotated[:, ::-1]]
    return views


def test_tta_changes_nothing_on_a_d4_symmetric_patch(tiny: Path) -> None:
    patches = np.stack([_d4_symmetric(seed) for seed in range(4)])
    for view in _d4(patches[0]):
        assert np.array_equal(view, patches[0])
    plain = Predictor.from_checkpoint(tiny, CPU).predict(patches)
    tta = Predictor.from_checkpoint(tiny, PredictorSettings(device="cpu", tta=True)).predict(patches)
    np.testing.assert_allclose(tta, plain, rtol=0, atol=1e-6)


def test_tta_makes_predictions_invariant_to_rotations_and_flips(tiny: Path) -> None:
    views = np.stack(_d4(_patches(1, seed=3)[0] // 2 + _patches(1, seed=4)[0] // 2))
    plain = Predictor.from_checkpoint(tiny, CPU).predict(views)
    tta = Predictor.from_checkpoint(tiny, PredictorSettings(device="cpu", tta=True)).predict(views)
    assert np.ptp(plain) > 1e-3  # without TTA the model does see the difference
    np.testing.assert_allclose(tta, np.full(8, tta[0]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(tta[0], plain.mean(), rtol=0, atol=1e-6)


def test_results_do_not_depend_on_the_batch_size(tiny: Path) -> None:
    patches = _patches(37)
    results = [
        Predictor.from_checkpoint(tiny, PredictorSettings(device="cpu", batch_size=b)).predict(patches)
        for b in (1, 8, 64)
    ]
    for probs in results[1:]:
        np.testing.assert_allclose(probs, results[0], rtol=0, atol=1e-6)


def test_cpu_runs_are_deterministic(tiny: Path) -> None:
    patches = _patches(20)
    first = Predictor.from_checkpoint(tiny, CPU)
    second = Predictor.from_checkpoint(tiny, CPU)
    a = first.predict(patches)
    assert np.array_equal(a, first.predict(patches))
    assert np.array_equal(a, second.predict(patches))


def test_stream_returns_one_result_per_array_in_order(tiny: Path) -> None:
    arrays = [_patches(5, 1), _patches(0), _patches(12, 2), _patches(1, 3)]
    predictor = Predictor.from_checkpoint(tiny, PredictorSettings(device="cpu", batch_size=4))
    streamed = list(predictor.predict_stream(iter(arrays)))
    assert [len(s) for s in streamed] == [5, 0, 12, 1]
    np.testing.assert_allclose(np.concatenate(streamed), predictor.predict(np.concatenate(arrays)), rtol=0, atol=1e-6)


def test_accepts_strided_views_like_the_reader_cuts(tiny: Path) -> None:
    region = _patches(1, 7)[0]
    big = np.concatenate([region, region[::-1]], axis=0)  # 192 x 96 region
    views = np.lib.stride_tricks.sliding_window_view(big, (96, 96, 3))[::32, 0, 0]
    predictor = Predictor.from_checkpoint(tiny, CPU)
    np.testing.assert_array_equal(predictor.predict(views), predictor.predict(np.ascontiguousarray(views)))


def test_real_resnet50_checkpoint_predicts_on_the_cpu(tmp_path: Path) -> None:
    path = tmp_path / "r50.safetensors"
    write_random_checkpoint(path, RESNET50_FASTAI, seed=7)
    patches = _patches(4)
    probs = Predictor.from_checkpoint(path, PredictorSettings(device="cpu", batch_size=2)).predict(patches)
    # 50 layers amplify float32 rounding (the predictor folds the normalisation into one
    # multiply-add and runs batches of 2): agreement to 1e-4, not bit for bit
    np.testing.assert_allclose(probs, _by_hand(path, patches), rtol=0, atol=1e-4)
    assert np.ptp(probs) > 1e-2


def test_cpu_thread_count_comes_from_the_settings(tiny: Path, restore_threads: None) -> None:
    Predictor.from_checkpoint(tiny, PredictorSettings(device="cpu", cpu_threads=1))
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 96, 96, 3), dtype=np.float32),
        np.zeros((2, 64, 64, 3), dtype=np.uint8),
        np.zeros((2, 96, 96, 4), dtype=np.uint8),
        np.zeros((96, 96, 3), dtype=np.uint8),
        [[0]],
    ],
    ids=["float", "64px", "rgba", "one-patch", "list"],
)
def test_refuses_patches_of_the_wrong_kind(tiny: Path, bad: object) -> None:
    with pytest.raises(ConfigError, match="must be"):
        Predictor.from_checkpoint(tiny, CPU).predict(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"device": "gpu"}, "not one of"),
        ({"batch_size": 0}, "batch size 0"),
        ({"cpu_threads": 0}, "cpu_threads 0"),
        ({"batches_in_flight": 0}, "batches_in_flight 0"),
    ],
)
def test_settings_validate_themselves(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PredictorSettings(**fields)  # type: ignore[arg-type]


def test_device_auto_follows_cuda_availability_and_absent_cuda_is_an_error() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="cuda:99"):
        resolve_device("cuda:99")


def test_compiled_model_agrees_with_eager(tiny: Path) -> None:
    patches = _patches(11)  # 8 + a padded tail of 3: one compiled shape
    settings = PredictorSettings(device="cpu", batch_size=8)
    eager = Predictor.from_checkpoint(tiny, settings).predict(patches)
    compiled = Predictor.from_checkpoint(tiny, PredictorSettings(device="cpu", batch_size=8, compile=True))
    np.testing.assert_allclose(compiled.predict(patches), eager, rtol=0, atol=1e-5)


def _block_inputs(seed: int, rows: int = 5, cols: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A block's region (random pixels) and tissue cells at stride 32, 96 px patches."""
    rng = np.random.default_rng(seed)
    region = rng.integers(0, 256, size=((rows - 1) * 32 + 96, (cols - 1) * 32 + 96, 3), dtype=np.uint8)
    region.flags.writeable = False  # as a region arrives from a read or from Ray's object store
    tissue = rng.random((rows, cols)) < 0.6
    return region, tissue


def test_blocks_travel_as_regions_and_predict_exactly_as_cut_patches(tiny: Path) -> None:
    """The model stage cuts a block's patches itself; its P(tumour) equals, bit for bit, the
    predictions of the same patches cut beforehand (the engine before regions travelled)."""
    from pcam_scan.geometry import Block, PatchGeometry
    from pcam_scan.model.patch_cutting import cut_patches

    settings = PredictorSettings(device="cpu", batch_size=8)
    predictor = Predictor.from_checkpoint(tiny, settings)
    blocks = [_block_inputs(seed) for seed in range(3)]
    regions_out = list(predictor.predict_blocks(blocks, stride_px=32))
    for (region, tissue), probs in zip(blocks, regions_out, strict=True):
        block = Block(0, 0, 0, 0, *tissue.shape)
        patches = np.ascontiguousarray(cut_patches(region, block, PatchGeometry())[tissue])
        np.testing.assert_array_equal(probs, Predictor.from_checkpoint(tiny, settings).predict(patches))
        assert probs.shape == (int(tissue.sum()),)


def test_a_blocks_predictions_do_not_depend_on_the_blocks_beside_it(tiny: Path) -> None:
    """Each block is batched alone on the CPU: alone, first or last in a stream, same bits."""
    predictor = Predictor.from_checkpoint(tiny, PredictorSettings(device="cpu", batch_size=16))
    target = _block_inputs(7)
    (alone,) = predictor.predict_blocks([target], 32)
    together = list(predictor.predict_blocks([_block_inputs(1), target, _block_inputs(2, 3, 4)], 32))
    np.testing.assert_array_equal(alone, together[1])


def test_a_region_of_the_wrong_size_is_refused(tiny: Path) -> None:
    region, tissue = _block_inputs(0)
    with pytest.raises(ConfigError, match="region"):
        list(Predictor.from_checkpoint(tiny, CPU).predict_blocks([(region[:-1], tissue)], 32))
