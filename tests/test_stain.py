"""Stain: synthetic centres (presets), HED colour augmentation, Macenko normalisation of regions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pcam_scan.errors import ConfigError
from pcam_scan.geometry import PatchGeometry
from pcam_scan.scan.settings import ModelRef, ScanRun, ScanSettings
from pcam_scan.stain import StainNormaliser, fit_stain_target, tissue_fraction
from pcam_scan.synth.layout import plan_slide
from pcam_scan.synth.spec import STAIN_PRESET_NAMES, SlideSpec
from pcam_scan.synth.stains import EOSIN_OD, HAEMATOXYLIN_OD, STAIN_PRESETS
from pcam_scan.synth.texture import SlideTexture
from training.data import hed_jitter

SPEC = SlideSpec(width_px=2688, height_px=2304, mpp_um_px=0.486)


def _tissue_region(preset: str = "default", size: int = 384) -> np.ndarray:
    """A region centred on a synthetic tumour slide's first lesion, rendered with `preset`."""
    plan = plan_slide(dataclasses.replace(SPEC, stain_preset=preset), seed=3, tumour=True)
    centre = plan.annotations().tumour[0].l0_xy.mean(axis=0).astype(int) - size // 2
    return SlideTexture(plan).render(int(centre[0]), int(centre[1]), size, size)


def test_presets_are_the_names_the_cli_offers_and_default_is_todays_stain() -> None:
    assert tuple(STAIN_PRESETS) == STAIN_PRESET_NAMES
    haem, eosin = STAIN_PRESETS["default"].vectors()
    assert np.array_equal(haem, HAEMATOXYLIN_OD) and np.array_equal(eosin, EOSIN_OD)
    assert SlideSpec().stain_preset == "default"


def test_each_centre_colours_the_same_tissue_differently() -> None:
    regions = {name: _tissue_region(name) for name in STAIN_PRESET_NAMES}
    means = {name: r.reshape(-1, 3).mean(axis=0) for name, r in regions.items()}
    for a, b in (("default", "centre-b"), ("default", "centre-c"), ("centre-b", "centre-c")):
        assert np.abs(means[a] - means[b]).max() > 8, (a, b, means)


def test_a_bad_preset_is_one_error() -> None:
    with pytest.raises(ConfigError, match="--stain-preset 'centre-z'"):
        SlideSpec(stain_preset="centre-z")


def test_hed_jitter_of_strength_zero_gives_the_batch_back() -> None:
    x = torch.from_numpy(_tissue_region(size=96)).permute(2, 0, 1)[None].double() / 255.0
    assert torch.allclose(hed_jitter(x, 0.0), x, atol=1e-9)


def test_hed_jitter_moves_colour_within_the_unit_range_per_image() -> None:
    x = torch.from_numpy(_tissue_region(size=96)).permute(2, 0, 1)[None].float().repeat(4, 1, 1, 1) / 255.0
    out = hed_jitter(x, 0.2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    means = out.mean(dim=(2, 3))
    assert float((means - x.mean(dim=(2, 3))).abs().max()) > 0.01
    assert float((means[0] - means[1]).abs().max()) > 1e-3  # each image draws its own jitter


def _reference(tmp_path: Path, preset: str = "default") -> Path:
    path = tmp_path / f"reference-{preset}.png"
    Image.fromarray(_tissue_region(preset, 512)).save(path)
    return path


def test_macenko_takes_the_centre_out_of_the_colour(tmp_path: Path) -> None:
    """The same tissue from centres A and B: far apart as read, close once both are normalised
    (Macenko's reconstruction is not the identity even on the reference's own centre)."""
    normalise = StainNormaliser(fit_stain_target("macenko", _reference(tmp_path)))
    a, b = _tissue_region("default"), _tissue_region("centre-b")
    out_a, out_b = normalise(a), normalise(b)
    assert out_b.dtype == np.uint8 and out_b.shape == b.shape
    before = np.abs(a.reshape(-1, 3).mean(axis=0) - b.reshape(-1, 3).mean(axis=0)).sum()
    after = np.abs(out_a.reshape(-1, 3).mean(axis=0) - out_b.reshape(-1, 3).mean(axis=0)).sum()
    assert after < before / 4
    assert normalise.normalised == 2


def test_a_region_without_tissue_passes_as_read(tmp_path: Path) -> None:
    normalise = StainNormaliser(fit_stain_target("macenko", _reference(tmp_path)))
    glass = np.full((256, 256, 3), 240, np.uint8)
    assert tissue_fraction(glass) == 0.0
    assert normalise(glass) is glass
    assert normalise.passed == 1


def test_a_reference_without_tissue_or_not_an_image_is_one_error(tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((64, 64, 3), 250, np.uint8)).save(blank)
    with pytest.raises(ConfigError, match="too little tissue"):
        fit_stain_target("macenko", blank)
    text = tmp_path / "x.png"
    text.write_text("not an image")
    with pytest.raises(ConfigError, match="cannot read it as an image"):
        fit_stain_target("macenko", text)


def test_the_settings_hash_names_stain_normalisation_only_when_on(tmp_path: Path) -> None:
    geometry = PatchGeometry()
    plain = ScanRun.resolve(ScanSettings(), ModelRef("m", "id"), geometry)
    assert plain.stain is None and "stain_normalise" not in plain.identity()
    settings = ScanSettings(stain_normalise="macenko", stain_reference=str(_reference(tmp_path)))
    on = ScanRun.resolve(settings, ModelRef("m", "id"), geometry).identity()
    assert on["stain_normalise"]["method"] == "macenko"  # type: ignore[index]
    assert {k: v for k, v in on.items() if k != "stain_normalise"} == plain.identity()
    with pytest.raises(ConfigError, match="go together"):
        ScanSettings(stain_normalise="macenko")
