"""Outputs never destroy data: every command that writes files refuses an existing file without
--overwrite, and never writes through or replaces a symbolic link, FIFO or device, or writes
under a file or into /proc. Each refusal is one line and exit 2, before any work, and nothing
in the folder changes (the link's target included)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile_cases import build_store, changed, one_error_line, run_cli, snapshot

# command -> (arguments given the output path; where the output path is, given the folder).
# For folder outputs the path is one file the command would write in it.
COMMANDS: dict[str, tuple[Callable[[Path, Path], list[object]], Callable[[Path], Path]]] = {
    "diagnose": (lambda f, out: ["diagnose", build_store(f / "s.zarr"), "--out", out], lambda f: f / "d.csv"),
    "fit-aggregator": (
        lambda f, out: ["fit-aggregator", build_store(f / "s.zarr"), "--reference", f / "r.csv", "--out", out],
        lambda f: f / "agg.json",
    ),
    "export": (
        lambda f, out: ["export", build_store(f / "s.zarr"), "--format", "asap", "--out", out.parent],
        lambda f: f / "xml" / "a.xml",
    ),
    "render": (lambda f, out: ["render", build_store(f / "s.zarr"), "a", "--out", out], lambda f: f / "a.png"),
    "evaluate": (
        lambda f, out: [
            "evaluate",
            build_store(f / "s.zarr"),
            "--reference",
            f / "r.csv",
            "--annotations",
            f,
            "--exclude",
            "",
            "--out",
            out.parent,
        ],
        lambda f: f / "eval" / "metrics.json",
    ),
    "train": (
        lambda f, out: ["train", "--pcam", f / "nowhere", "--out", out, "--arch", "tiny-cnn", "--no-pretrained"],
        lambda f: f / "m.safetensors",
    ),
    "synth": (
        lambda f, out: [
            "synth",
            out.parent,
            "--tumor",
            "0",
            "--normal",
            "1",
            "--width",
            "5000",
            "--height",
            "5000",
            "--quiet",
        ],
        lambda f: f / "synth" / "reference.csv",
    ),
}


def _existing(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("a pathologist's ground truth\n")
    return path


def _symlink(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.parent / "elsewhere.txt"
    target.write_text("must survive\n")
    path.symlink_to(target)
    return path


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _under_a_file(path: Path) -> Path:
    blocker = path.parent.parent / "a_file"
    blocker.write_text("not a folder\n")
    return blocker / path.parent.name / path.name


# kind -> (make the hostile output in place of the path, substrings of which the line has one)
KINDS: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "existing_file": (_existing, ("exists; pass --overwrite to replace it",)),
    "symlink": (_symlink, ("is a symbolic link",)),
    "fifo": (_fifo, ("is a FIFO, not a regular file",)),
    "under_a_file": (_under_a_file, ("Not a directory", "is not a folder")),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_hostile_output_is_refused_and_nothing_changes(
    tmp_path: Path, command: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_argv, output_path = COMMANDS[command]
    make_output, expected = KINDS[kind]
    (tmp_path / "r.csv").write_text("a,Tumor,IDC,Macro\nb,Normal,,None\n")
    out = make_output(output_path(tmp_path))
    argv = make_argv(tmp_path, out)
    before = snapshot(tmp_path)
    code, _, err = run_cli(argv, capsys)
    line = one_error_line(err)
    assert code == 2 and any(text in line for text in expected), line
    assert changed(before, snapshot(tmp_path)) == set()


@pytest.mark.parametrize("command", ["diagnose", "fit-aggregator"])
@pytest.mark.parametrize("target", ["/dev/full", "/proc/pcam-scan-out.csv"])
def test_devices_and_proc_are_refused(
    tmp_path: Path, command: str, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "r.csv").write_text("a,Tumor,IDC,Macro\nb,Normal,,None\n")
    argv = COMMANDS[command][0](tmp_path, Path(target))
    before = snapshot(tmp_path)
    code, _, err = run_cli(argv, capsys)
    line = one_error_line(err)
    assert code == 2 and ("is a device, not a regular file" in line or f"cannot write {target}" in line), line
    assert Path("/dev/full").is_char_device()
    assert changed(before, snapshot(tmp_path)) == set()


def test_overwrite_replaces_only_the_named_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = build_store(tmp_path / "s.zarr")
    xml = _existing(tmp_path / "xml" / "a.xml")
    _existing(tmp_path / "xml" / "tumor_001.xml")
    before = snapshot(tmp_path)
    code, out, _ = run_cli(["export", store, "--format", "asap", "--out", xml.parent, "--overwrite"], capsys)
    assert code == 0
    assert changed(before, snapshot(tmp_path)) == {"xml/a.xml", "xml/b.xml"}
    assert "<ASAP_Annotations" in xml.read_text()
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or ".probe-" in p.name]
