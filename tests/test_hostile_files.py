"""Untrusted files parsed with limits: JSON nested 100k deep or with 5000-digit numbers (checkpoint
metadata, aggregators, GeoJSON, NCRF), coordinates of 1e300, a checkpoint declaring huge
patches, masks and reference files far beyond any slide, pickles handed in as weights, seeds and
ratios out of range, worker counts beyond the machine. Each is one line and exit 2, before
anything is allocated or written, and nothing beside the inputs changes."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pcam_scan.model.checkpoint import METADATA_KEY
from pcam_scan.model.random_model import write_random_checkpoint
from tests.hostile_cases import build_store, changed, one_error_line, run_cli, snapshot

DEEP = "[" * 100_000 + "]" * 100_000
LONG_NUMBER = "1" * 5000
REFERENCE = "a,Tumor,IDC,Macro\nb,Normal,,None\n"


def _checkpoint_with_metadata(folder: Path, text: Callable[[dict], str]) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    source = folder / "source.safetensors"
    write_random_checkpoint(source, seed=0)
    with safe_open(str(source), framework="pt") as handle:
        metadata = json.loads(handle.metadata()[METADATA_KEY])
    target = folder / "model.safetensors"
    save_file(load_file(str(source)), str(target), metadata={METADATA_KEY: text(metadata)})
    source.unlink()
    return target


def _with_field(name: str, value: object) -> Callable[[dict], str]:
    return lambda metadata: json.dumps({**metadata, name: value})


def _model_info(make: Callable[[Path], Path]) -> Callable[[Path], list[object]]:
    return lambda folder: ["model-info", make(folder)]


def _evaluate_with_annotation(name: str, text: str) -> Callable[[Path], list[object]]:
    def argv(folder: Path) -> list[object]:
        store = build_store(folder / "store.zarr")
        (folder / "ref.csv").write_text(REFERENCE)
        (folder / "annotations").mkdir()
        (folder / "annotations" / name).write_text(text)
        return [
            "evaluate",
            store,
            "--reference",
            folder / "ref.csv",
            "--annotations",
            folder / "annotations",
            "--exclude",
            "",
            "--bootstrap",
            "100",
            "--out",
            folder / "eval",
        ]

    return argv


def _evaluate_with_mask(folder: Path) -> list[object]:
    """A 64 x 64 TIFF whose tags claim 65000 x 65000 px: 4.2 G pixels if believed."""
    store = build_store(folder / "store.zarr")
    (folder / "ref.csv").write_text(REFERENCE)
    (folder / "masks").mkdir()
    path = folder / "masks" / "a_Mask.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(65000)
        tif.pages[0].tags["ImageLength"].overwrite(65000)
    return [
        "evaluate",
        store,
        "--reference",
        folder / "ref.csv",
        "--masks",
        folder / "masks",
        "--exclude",
        "",
        "--bootstrap",
        "100",
        "--out",
        folder / "eval",
    ]


def _evaluate_with_reference(text: str) -> Callable[[Path], list[object]]:
    def argv(folder: Path) -> list[object]:
        store = build_store(folder / "store.zarr")
        (folder / "ref.csv").write_text(text)
        return [
            "evaluate",
            store,
            "--reference",
            folder / "ref.csv",
            "--annotations",
            folder,
            "--exclude",
            "",
            "--out",
            folder / "eval",
        ]

    return argv


def _diagnose_with_aggregator(text: str) -> Callable[[Path], list[object]]:
    def argv(folder: Path) -> list[object]:
        store = build_store(folder / "store.zarr")
        (folder / "agg.json").write_text(text)
        return ["diagnose", store, "--aggregator", folder / "agg.json", "--out", folder / "d.csv"]

    return argv


def _asap(x: str) -> str:
    return (
        '<ASAP_Annotations><Annotations><Annotation Name="t" PartOfGroup="_0" Type="Polygon"><Coordinates>'
        f'<Coordinate Order="0" X="{x}" Y="10"/><Coordinate Order="1" X="100" Y="10"/>'
        '<Coordinate Order="2" X="100" Y="100"/></Coordinates></Annotation></Annotations></ASAP_Annotations>'
    )


def _geojson(x: str) -> str:
    ring = f"[[{x}, 10], [100, 10], [100, 100], [{x}, 10]]"
    return (
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
        '{"classification": {"name": "Tumor"}}, "geometry": {"type": "Polygon", "coordinates": [' + ring + "]}}]}"
    )


def _train(*extra: object) -> Callable[[Path], list[object]]:
    return lambda folder: [
        "train",
        "--pcam",
        folder,
        "--out",
        folder / "m.safetensors",
        "--arch",
        "tiny-cnn",
        "--no-pretrained",
        *extra,
    ]


def _train_with_weights(write: Callable[[Path], None], name: str) -> Callable[[Path], list[object]]:
    def argv(folder: Path) -> list[object]:
        from tests.test_training import write_pcam_folder

        write_pcam_folder(folder / "pcam", {"train": 32, "valid": 8})
        write(folder / name)
        return [
            "train",
            "--pcam",
            folder / "pcam",
            "--out",
            folder / "m.safetensors",
            "--weights",
            folder / name,
            "--size",
            "96",
            "--epochs",
            "1",
            "--frozen-epochs",
            "0",
            "--lr",
            "0.001",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--quiet",
        ]

    return argv


def _wide_slide(path: Path) -> Path:
    """A real tiled TIFF OpenSlide opens: 5200 px wide, so 104 mm at 20 um/px."""
    tifffile.imwrite(
        path, np.full((256, 5200, 3), 230, np.uint8), tile=(256, 256), photometric="rgb", compression="zlib"
    )
    return path


def _mine_only_without_positives(folder: Path) -> list[object]:
    """Mining that fails after reading every slide (no positives, so nothing balances): it
    must leave no HDF5 behind (it once wrote its patches, then exited 2)."""
    from pcam_scan.synth import SlideSpec, SynthSpec, write_synthetic_dataset

    write_synthetic_dataset(folder / "slides", SynthSpec(SlideSpec(2688, 2304, 0.486), 2, 2, seed=3))
    return [
        "train",
        "--slides",
        folder / "slides",
        "--save-patches",
        folder / "patches",
        "--mine-only",
        "--max-positives-per-slide",
        "0",
        "--valid-fraction",
        "0.5",
    ]


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pickled code ran",))


# name -> (inputs and arguments, made in the case's folder; what the one line must say)
CASES: dict[str, tuple[Callable[[Path], list[object]], str]] = {
    "checkpoint_metadata_deep": (
        _model_info(lambda f: _checkpoint_with_metadata(f, lambda m: DEEP)),
        "nested 100000 deep exceeds the limit of 64",
    ),
    "checkpoint_metadata_long_number": (
        _model_info(
            lambda f: _checkpoint_with_metadata(f, lambda m: json.dumps(m)[:-1] + ', "x": ' + LONG_NUMBER + "}")
        ),
        "a JSON number of 5000 characters",
    ),
    "checkpoint_patch_px_4096": (
        _model_info(lambda f: _checkpoint_with_metadata(f, _with_field("patch_px", 4096))),
        "patch 4096 px exceeds the limit of 1024 px",
    ),
    "checkpoint_patch_px_1e6": (
        _model_info(lambda f: _checkpoint_with_metadata(f, _with_field("patch_px", 1_000_000))),
        "patch 1000000 px exceeds the limit of 1024 px",
    ),
    "checkpoint_empty": (_model_info(lambda f: _file(f / "e.safetensors", b"")), "e.safetensors"),
    "checkpoint_pickle_named_safetensors": (
        _model_info(lambda f: _file(f / "p.safetensors", pickle.dumps(Evil()))),
        "p.safetensors",
    ),
    "aggregator_deep": (_diagnose_with_aggregator(DEEP), "nested 100000 deep exceeds the limit of 64"),
    "aggregator_long_number": (
        _diagnose_with_aggregator('{"intercept": ' + LONG_NUMBER + "}"),
        "a JSON number of 5000 characters",
    ),
    "geojson_deep": (_evaluate_with_annotation("a.geojson", DEEP), "nested 100000 deep"),
    "geojson_5000_digit_number": (
        _evaluate_with_annotation("a.geojson", _geojson(LONG_NUMBER)),
        "a JSON number of 5000 characters",
    ),
    "geojson_coordinate_1e300": (
        _evaluate_with_annotation("a.geojson", _geojson("1e300")),
        "vertex beyond 10000000 px (1e+300)",
    ),
    "ncrf_deep": (_evaluate_with_annotation("a.json", '{"positive": ' + DEEP + "}"), "nested 100001 deep"),
    "asap_coordinate_1e300": (_evaluate_with_annotation("a.xml", _asap("1e300")), "vertex beyond 10000000 px (1e+300)"),
    "asap_coordinate_inf": (_evaluate_with_annotation("a.xml", _asap("inf")), "vertex 0 lacks a finite X or Y"),
    "mask_tiff_65000_square": (_evaluate_with_mask, "65000 x 65000 px mask"),
    "reference_17_mb": (_evaluate_with_reference(REFERENCE + "c" * 17 * 2**20), "over the limit of 16777216"),
    "slide_104_mm_wide": (
        lambda f: ["info", _wide_slide(f / "wide.tif"), "--mpp", "20"],
        "5200 x 256 px at 20 um/px is 104 mm a side, larger than any glass slide",
    ),
    "train_mine_only_failing": (_mine_only_without_positives, "mining gave no validation patches"),
    "train_seed_negative": (_train("--seed", "-1"), "--seed -1 must be an integer in 0..4294967295"),
    "train_seed_1e20": (_train("--seed", str(10**20)), f"--seed {10**20} must be an integer"),
    "train_workers_1000": (_train("--workers", "1000"), "--workers 1000 exceeds the"),
    "train_negatives_per_positive_nan": (
        lambda f: [
            "train",
            "--slides",
            f,
            "--out",
            f / "m.safetensors",
            "--arch",
            "tiny-cnn",
            "--no-pretrained",
            "--negatives-per-positive",
            "nan",
        ],
        "negatives per positive nan",
    ),
    "train_weights_pickle": (
        _train_with_weights(lambda p: p.write_bytes(pickle.dumps(Evil())), "w.pth"),
        "pickled objects other than tensors, which pcam-scan never loads",
    ),
    "train_weights_empty_safetensors": (
        _train_with_weights(lambda p: p.write_bytes(b""), "w.safetensors"),
        "w.safetensors",
    ),
    "train_weights_corrupt_safetensors": (
        _train_with_weights(lambda p: p.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage"), "w.safetensors"),
        "w.safetensors",
    ),
    "evaluate_seed_negative": (
        lambda f: [
            "evaluate",
            build_store(f / "s.zarr"),
            "--reference",
            _file(f / "r.csv", REFERENCE.encode()),
            "--seed",
            "-1",
            "--out",
            f / "e",
        ],
        "seed -1 must be an integer",
    ),
    "fit_aggregator_seed_negative": (
        lambda f: [
            "fit-aggregator",
            build_store(f / "s.zarr"),
            "--reference",
            f / "r.csv",
            "--seed",
            "-1",
            "--out",
            f / "a.json",
        ],
        "--seed -1 must be an integer",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file_is_one_line_and_exit_2(tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    make_argv, expected = CASES[case]
    argv = make_argv(tmp_path)
    before = snapshot(tmp_path)
    code, out, err = run_cli(argv, capsys)
    line = one_error_line(err)
    assert code == 2, (code, out, err)
    assert expected in line, line
    assert "weights_only" not in line and "pickled code ran" not in out
    assert changed(before, snapshot(tmp_path)) == set()
