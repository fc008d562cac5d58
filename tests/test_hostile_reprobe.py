"""The adversarial re-probe's cases (issue 24, item 6) that are refusals of a command line: each
is one `pcam-scan: error:` line and exit 2, given before any work, and nothing in the folder
changes. The cases over damaged stores are in tests/hostile_cases.py's TAMPERS (so every batch
command and the viewer meet them); the process cases in tests/test_hostile_processes.py."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pcam_scan.store import HeatmapStore, SlideRecord
from pcam_scan.store.schema import SlideState
from tests.hostile_cases import RUN, build_store, changed, damaged_store, one_error_line, run_cli, snapshot


def _sparse(path: Path, size: int = 300 * 2**20) -> Path:
    """A file of `size` bytes that takes no disk (a hole): what matters is that it is not read."""
    with path.open("wb") as file:
        file.truncate(size)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)  # no writer: a reader that opens it blocking waits forever
    return path


def _diagnose(folder: Path) -> list[object]:
    return ["diagnose", build_store(folder / "s.zarr"), "--out", folder / "d.csv"]


# case -> (the command line given the folder, the slides and the model; what its one line says)
REFUSALS: dict[str, tuple[Callable[[Path, Path, Path], list[object]], str]] = {
    "H_store_at_the_root": (
        lambda f, slides, model: ["scan", slides / "normal_001.tif", "--model", model, "--store", "/", "--in-process"],
        "is the file system root",
    ),
    "K_demo_with_more_cpus_than_cores": (
        lambda f, slides, model: ["demo", "--out", f / "demo", "--quick", "--num-cpus", "1000"],
        "--num-cpus 1000 exceeds the",
    ),
    "L_aggregator_of_300_mb": (
        lambda f, slides, model: [*_diagnose(f), "--aggregator", _sparse(f / "agg.json")],
        "agg.json is 314572800 bytes, over the limit of 67108864 bytes",
    ),
    "D_aggregator_fifo": (
        lambda f, slides, model: [*_diagnose(f), "--aggregator", _fifo(f / "agg.json")],
        "agg.json is a FIFO, not a regular file",
    ),
    "N_seed_beyond_32_bits": (
        lambda f, slides, model: [
            "synth",
            f / "out",
            "--tumor",
            "0",
            "--normal",
            "1",
            "--seed",
            "100000000000000000000",
        ],
        "--seed 100000000000000000000 must be an integer in 0..4294967295",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refused_command_line_is_one_line_exit_2_and_changes_nothing(
    tmp_path: Path, case: str, synth_dataset: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, says = REFUSALS[case]
    args = argv(tmp_path, synth_dataset, tiny_checkpoint)  # builds the case's inputs
    before = snapshot(tmp_path)
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert says in one_error_line(err)
    assert changed(before, snapshot(tmp_path)) == set()


def test_a_failure_after_planning_keeps_the_fingerprint_the_blocks_were_read_from(tmp_path: Path) -> None:
    """Case G: a slide truncated mid-scan fails; its failure must not record the truncated file's
    fingerprint over the planned one, or the resume after the file is restored says 'its file
    changed'. A slide never planned gets its record with the failure."""
    store = HeatmapStore.open(str(build_store(tmp_path / "s.zarr")), RUN, mode="a")
    planned = store.stored_slide("a").record
    store.mark_failed("a", "a block read failed", SlideRecord(planned.path, "sha256:truncated"))
    store.mark_failed("new", "cannot open", SlideRecord("/nowhere/new.tif", "sha256:new"))
    reopened = HeatmapStore.open(str(tmp_path / "s.zarr"))
    assert reopened.slide_status("a").state is SlideState.FAILED
    assert reopened.stored_slide("a").record == planned
    assert reopened.stored_slide("new").record.fingerprint == "sha256:new"


def test_a_folder_with_a_symlink_loop_and_a_fifo_scans_the_rest_and_names_each_skipped_file(
    tmp_path: Path, synth_dataset: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cases P (a.tif <-> b.tif scanned with exit 0 and not a word) and D (`scan` on a FIFO named
    pipe.tif hung): each is that slide's failure, one row naming why; the good slide completes."""
    folder = tmp_path / "slides"
    folder.mkdir()
    shutil.copyfile(synth_dataset / "normal_001.tif", folder / "normal_001.tif")
    (folder / "a.tif").symlink_to("b.tif")
    (folder / "b.tif").symlink_to("a.tif")
    _fifo(folder / "pipe.tif")
    store = tmp_path / "run.zarr"
    argv = ["scan", folder, "--model", tiny_checkpoint, "--store", store, "--in-process", "--block-cells", "16"]
    code, out, _ = run_cli(argv, capsys)
    assert code == 1
    rows = {line.split()[0]: line for line in out if line.split() and line.split()[0] in {"a", "b", "pipe"}}
    assert "symbolic links" in rows["a"] and "symbolic links" in rows["b"]
    assert "is a FIFO, not a regular file" in rows["pipe"]
    stored = HeatmapStore.open(str(store))
    assert stored.slide_status("normal_001").state is SlideState.COMPLETE
    assert {s: stored.slide_status(s).state for s in ("a", "b", "pipe")} == dict.fromkeys(
        ("a", "b", "pipe"), SlideState.FAILED
    )


FULL_DISK_CLI = (
    "import resource, sys\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))\n"
    "from pcam_scan.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def test_diagnose_on_a_full_disk_leaves_the_stored_diagnoses_as_they_were(tmp_path: Path) -> None:
    """Case J: `diagnose --out` on a full disk exited 2 after the stored diagnoses were already
    rewritten. A file-size limit (RLIMIT_FSIZE: writes past it fail as on a full disk) that a
    slide's zarr.json fits and the CSV of 26 slides does not: the CSV is written first, fails,
    and nothing changes."""
    store = build_store(tmp_path / "s.zarr")
    for index in range(24):
        shutil.copytree(store / "b", store / f"b{index}")
    limit = max(path.stat().st_size for path in store.rglob("zarr.json")) + 1024
    before = snapshot(tmp_path)
    argv = [sys.executable, "-c", FULL_DISK_CLI, str(limit), "diagnose", str(store), "--out", str(tmp_path / "d.csv")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "File too large" in one_error_line(done.stderr.splitlines())
    assert changed(before, snapshot(tmp_path)) == set()


@pytest.mark.parametrize("planted", [".reference.csv.partial", ".reference.csv.tmp-{pid}"])
def test_a_symlink_planted_at_a_temporary_name_is_never_written_through(
    tmp_path: Path, planted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case B: `ln -s ../victim.txt out/.reference.csv.partial` then `synth out` overwrote the
    victim and left reference.csv a link. Temporary files are now created exclusively."""
    victim = tmp_path / "victim.txt"
    victim.write_text("must survive\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / planted.format(pid=os.getpid())).symlink_to("../victim.txt")
    argv = ["synth", out, "--tumor", "0", "--normal", "1", "--width", "2048", "--height", "2048",
            "--mpp", "0.5", "--quiet"]  # fmt: skip
    code, _, _ = run_cli(argv, capsys)
    assert code == 0
    assert victim.read_text() == "must survive\n"
    assert (out / "reference.csv").is_file() and not (out / "reference.csv").is_symlink()


def test_refused_starting_weights_leave_no_report_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Case C: a failed `train --weights pickle.pt` left an empty `m_report/` behind."""
    from tests.test_training import write_pcam_folder

    write_pcam_folder(tmp_path / "pcam", {"train": 16, "valid": 8, "test": 8})
    (tmp_path / "pickle.pt").write_bytes(pickle.dumps({"not": "tensors"}))
    before = snapshot(tmp_path)
    argv = ["train", "--pcam", tmp_path / "pcam", "--out", tmp_path / "m.safetensors"]
    code, _, err = run_cli([*argv, "--weights", tmp_path / "pickle.pt", "--quiet", "--device", "cpu"], capsys)
    assert code == 2 and "pickled objects" in one_error_line(err)
    assert changed(before, snapshot(tmp_path)) == set()


def test_an_export_that_writes_nothing_leaves_no_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Case J (export part): the only slide asked for is damaged, so nothing is written, and the
    folder the export made for it is taken back."""
    store = damaged_store(tmp_path, "prob_7.5")
    before = snapshot(tmp_path)
    argv = ["export", store, "--format", "asap", "--out", tmp_path / "new" / "xml", "--slides", "a"]
    code, out, _ = run_cli(argv, capsys)
    assert code == 1 and any(line.startswith("a: not exported, damaged") for line in out)
    assert changed(before, snapshot(tmp_path)) == set()
    assert not (tmp_path / "new").exists()
