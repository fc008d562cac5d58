"""Small generated inputs for the hostile-input tests, and the checks every case shares.

- `build_store`: a real two-slide heatmap store written through the store API (no model, no
  slide files): slide `a` has a positive lesion, slide `b` is negative.
- `TAMPERS`: ways to damage slide `a` on disk, as a user's editor, a full disk or an attacker
  would: values out of range, a wrong dtype or shape, broken or 100k-deep JSON, a corrupt chunk,
  a NaN MPP, a `complete` status over blocks never written.
- `snapshot` / `changed`: sha256 of every file under a folder, to prove that nothing outside a
  command's named outputs changed.
- `run_cli`: the real CLI in this process; returns the exit code and stdout/stderr lines, and
  fails on a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import zarr

from pcam_scan.cli import main
from pcam_scan.geometry import CellGrid, PatchGeometry
from pcam_scan.store import HeatmapStore, RunIdentity, SlideRecord

RUN = RunIdentity("sha256:hostile-inputs", {"source": "tests/hostile_cases.py"})
BLOCK_CELLS = 16
SLIDE_IDS = ("a", "b")


def build_store(path: Path) -> Path:
    """Two complete slides (4000 x 3000 px at 0.243 um/px: 32 x 24 cells), `a` with a 0.9 lesion."""
    store = HeatmapStore.open(str(path), RUN, mode="a")
    for slide_id in SLIDE_IDS:
        grid = CellGrid(4000, 3000, 0.243, 0.972, PatchGeometry())
        tissue = np.zeros(grid.shape, dtype=bool)
        tissue[5:20, 5:25] = True
        prob = np.where(tissue, 0.1, np.nan).astype(np.float32)
        if slide_id == "a":
            prob[10:14, 10:14] = 0.9
        store.plan_slide(slide_id, SlideRecord(f"/nowhere/{slide_id}.tif", "sha256:none"), grid, tissue, BLOCK_CELLS)
        for block in store.pending_blocks(slide_id):
            store.write_block(slide_id, block, prob[block.cell_slices()])
        store.finalize_slide(slide_id, {"predict": 1.0})
    return path


def _rewrite_prob(store: Path, values: Callable[[np.ndarray], np.ndarray], dtype: str | None = None) -> None:
    """Replace level 0 of slide a's prob (optionally with another dtype, as a tamperer would)."""
    path = store / "a" / "prob" / "0"
    old = zarr.open_array(str(path), mode="r")
    new = values(old[:])
    array = zarr.create_array(
        str(path),
        shape=new.shape,
        chunks=old.chunks if new.shape == old.shape else new.shape,
        dtype=dtype or old.dtype,
        overwrite=True,
        fill_value=0,
    )
    array[:] = new


def _edit_attrs(store: Path, edit: Callable[[dict], None]) -> None:
    meta_path = store / "a" / "zarr.json"
    doc = json.loads(meta_path.read_text())
    edit(doc["attributes"]["pcam_scan"])
    meta_path.write_text(json.dumps(doc))


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda attrs: attrs.__setitem__(key, value)


def _set_grid(key: str, value: object) -> Callable[[dict], None]:
    return lambda attrs: attrs["grid"].__setitem__(key, value)


def _undone(store: Path) -> None:
    zarr.open_array(str(store / "a" / "blocks_done"), mode="r+")[:] = 0
    _rewrite_prob(store, lambda prob: np.full_like(prob, np.nan))


def _chunk(store: Path, *block_rc: int) -> Path:
    """Slide a's level-0 chunk file of one block (a block is one chunk)."""
    return store / "a" / "prob" / "0" / "c" / str(block_rc[0]) / str(block_rc[1])


def _chunk_to_folder(store: Path) -> None:
    _chunk(store, 0, 0).unlink()
    _chunk(store, 0, 0).mkdir()


def _edit_prob_shape(store: Path) -> None:
    meta = store / "a" / "prob" / "0" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["shape"] = [16000, 16000]
    meta.write_text(json.dumps(doc))


def _zstd_bomb(store: Path) -> None:
    """A zstd frame whose header declares 1 GiB (single segment, 8-byte content size)."""
    header = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + (2**30).to_bytes(8, "little")
    _chunk(store, 0, 0).write_bytes(header + b"\x00" * 64)


def _replace(path: Path, make: Callable[[Path], None]) -> None:
    path.unlink()
    make(path)


def _with(
    values: np.ndarray | float, where: tuple[slice, slice] = (slice(11, 12), slice(11, 12))
) -> Callable[[np.ndarray], np.ndarray]:
    def change(prob: np.ndarray) -> np.ndarray:
        prob = prob.copy()
        prob[where] = values
        return prob

    return change


# name -> (how slide a is damaged, what the one line must say). "attrs" cases are visible from
# the metadata alone (the slide list); "data" cases only when the arrays are read.
TAMPERS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "prob_7.5": (lambda s: _rewrite_prob(s, _with(7.5)), "outside [0, 1] (e.g. 7.5)", "data"),
    "prob_negative": (lambda s: _rewrite_prob(s, _with(-3.0)), "outside [0, 1] (e.g. -3)", "data"),
    "prob_inf": (lambda s: _rewrite_prob(s, _with(np.inf)), "outside [0, 1] (e.g. inf)", "data"),
    "prob_int64": (
        lambda s: _rewrite_prob(s, lambda p: np.nan_to_num(p).astype(np.int64) + 7, "int64"),
        "holds int64",
        "data",
    ),
    "prob_shape": (lambda s: _rewrite_prob(s, lambda p: p[:10, :10]), "has shape (10, 10)", "data"),
    "corrupt_chunk": (
        lambda s: (s / "a" / "prob" / "0" / "c" / "0" / "0").write_bytes(b"not zstd" * 8),
        "Zstd",
        "data",
    ),
    # re-probe case A: a done block without its chunk (Zarr reads NaN), or lesion cells emptied,
    # read "negative" although the slide is positive
    "A_chunks_deleted": (
        lambda s: [_chunk(s, 0, col).unlink() for col in (0, 1)],
        "of its 300 tissue cells have no prediction",
        "data",
    ),
    "A_chunk_replaced_by_folder": (_chunk_to_folder, "of its 300 tissue cells have no prediction", "data"),
    "A_lesion_cells_nan": (
        lambda s: _rewrite_prob(s, _with(np.nan, (slice(10, 14), slice(10, 14)))),
        "16 of its 300 tissue cells have no prediction",
        "data",
    ),
    # re-probe case I: export and evaluate exited 2 for the whole batch, the viewer answered 400
    "I_block_cells_zero": (
        lambda s: _edit_attrs(s, _set("block_cells", 0)),
        "block_cells 0 is not a positive",
        "attrs",
    ),
    # re-probe case E: memory spent before validation
    "E_prob_shape_16000": (
        _edit_prob_shape,
        "prob level 0 has shape (16000, 16000), the cell grid is (24, 32)",
        "data",
    ),
    "E_zstd_bomb_1_gib": (_zstd_bomb, "would expand to 1073741824 bytes, over the limit", "data"),
    "E_chunk_dev_zero": (
        lambda s: _replace(_chunk(s, 0, 0), lambda p: p.symlink_to("/dev/zero")),
        "is a device, not a regular file",
        "data",
    ),
    # re-probe case D: a FIFO in place of an array's zarr.json hung every reader
    "D_fifo_zarr_json": (
        lambda s: _replace(s / "a" / "prob" / "0" / "zarr.json", lambda p: os.mkfifo(p)),
        "is a FIFO, not a regular file",
        "data",
    ),
    "complete_never_predicted": (_undone, "marked complete but 4 planned blocks were never written", "data"),
    "broken_zarr_json": (lambda s: (s / "a" / "zarr.json").write_text("{broken"), "JSONDecodeError", "attrs"),
    "deep_zarr_json": (
        lambda s: (s / "a" / "zarr.json").write_text("[" * 100_000 + "]" * 100_000),
        "RecursionError",
        "attrs",
    ),
    "zarr_json_17_mb": (
        lambda s: (s / "a" / "zarr.json").write_text(" " * 17 * 2**20 + "{}"),
        "over the limit of 16777216",
        "attrs",
    ),
    "counts_not_mapping": (lambda s: _edit_attrs(s, _set("counts", [1, 2])), "counts", "attrs"),
    "status_unknown": (lambda s: _edit_attrs(s, _set("status", {"state": "damaged"})), "unknown slide state", "attrs"),
    "mpp_nan": (lambda s: _edit_attrs(s, _set_grid("slide_mpp_um_px", "NaN")), "slide MPP nan", "attrs"),
    "mpp_zero": (lambda s: _edit_attrs(s, _set_grid("px_mpp_um_px", 0)), "MPP", "attrs"),
}


def damaged_store(folder: Path, tamper: str) -> Path:
    store = build_store(folder / "store.zarr")
    TAMPERS[tamper][0](store)
    return store


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every regular file under `folder` (links and special files by their kind)."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        for name in [*files, *dirs]:
            path = Path(root) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                out[key] = f"link -> {os.readlink(path)}"
            elif path.is_file():
                out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif not path.is_dir():
                out[key] = "special"
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """Paths added, removed or rewritten between two snapshots."""
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], list[str]]:
    """(exit code, stdout lines, stderr lines) of `pcam-scan ARGV`; a traceback fails the test."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out.splitlines(), err.splitlines()


def one_error_line(err: list[str]) -> str:
    """The single `pcam-scan: error: ...` line of stderr (anything else on stderr fails, except
    the usage that argparse prints above its own error line)."""
    errors = [line for line in err if line.strip() and not line.startswith(("usage:", " "))]
    assert len(errors) == 1, errors
    assert errors[0].startswith("pcam-scan: error: "), errors[0]
    return errors[0]
