"""Tampered heatmap stores: each damage is reported as one line naming the slide and what is
wrong; the damaged slide is never diagnosed, exported, drawn or served as if sound; the intact
slide is; and nothing outside the command's named outputs changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pcam_scan.errors import StoreError
from pcam_scan.store import HeatmapStore
from pcam_scan.viewer.app import create_app, openseadragon_installed
from pcam_scan.viewer.catalog import ViewerSettings
from tests.hostile_cases import TAMPERS, changed, damaged_store, one_error_line, run_cli, snapshot

CASES = sorted(TAMPERS)


def _reason(tamper: str) -> str:
    return TAMPERS[tamper][1]


@pytest.mark.parametrize("tamper", CASES)
def test_diagnose_reports_a_damaged_slide_and_diagnoses_the_intact_one(
    tmp_path: Path, tamper: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = damaged_store(tmp_path, tamper)
    before = snapshot(tmp_path)
    code, out, err = run_cli(["diagnose", store, "--out", tmp_path / "d.csv"], capsys)
    assert code == 1
    row_a = next(line for line in out if line.startswith("a "))
    assert " damaged " in row_a and _reason(tamper) in row_a
    row_b = next(line for line in out if line.startswith("b "))
    assert "complete" in row_b and "negative" in row_b
    written = changed(before, snapshot(tmp_path))
    records = {name for name in written if name.startswith("store.zarr/runs/")}
    assert len(records) == 1  # diagnose records its run (pcam_scan/store/run_records.py)
    assert written - records == {"d.csv", "store.zarr/b/zarr.json"}  # b's diagnosis
    csv_a = next(line for line in (tmp_path / "d.csv").read_text().splitlines() if line.startswith("a,"))
    assert csv_a.startswith("a,damaged,,")


# batch command -> (its arguments after the store, given the folder; its word for a skipped
# slide; the files it may write)
BATCHES = {
    "export": (lambda f: ["--format", "asap", "--out", f / "xml"], "damaged", {"xml/b.xml"}),
    "render": (lambda f: ["--all", "--out", f / "png"], "not rendered", {"png/b.png", "png/contact_sheet.png"}),
}


@pytest.mark.parametrize("tamper", CASES)
@pytest.mark.parametrize("command", sorted(BATCHES))
def test_a_batch_command_skips_a_damaged_slide_with_one_line(
    tmp_path: Path, command: str, tamper: str, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments, skipped, outputs = BATCHES[command]
    store = damaged_store(tmp_path, tamper)
    before = snapshot(tmp_path)
    code, out, err = run_cli([command, store, *arguments(tmp_path)], capsys)
    assert code == 1
    lines_a = [line for line in out if line.startswith("a:")]
    assert len(lines_a) == 1 and skipped in lines_a[0] and _reason(tamper) in lines_a[0]
    assert changed(before, snapshot(tmp_path)) == outputs


@pytest.mark.parametrize("tamper", CASES)
def test_render_of_the_damaged_slide_is_one_line_and_exit_2(
    tmp_path: Path, tamper: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = damaged_store(tmp_path, tamper)
    before = snapshot(tmp_path)
    code, out, err = run_cli(["render", store, "a", "--out", tmp_path / "a.png"], capsys)
    assert code == 2
    assert _reason(tamper) in one_error_line(err)
    assert changed(before, snapshot(tmp_path)) == set()


@pytest.mark.skipif(not openseadragon_installed(), reason="the viewer's OpenSeadragon is not installed")
@pytest.mark.parametrize("tamper", CASES)
def test_viewer_serves_the_intact_slide_and_shows_the_damaged_one_as_damaged(tmp_path: Path, tamper: str) -> None:
    store = damaged_store(tmp_path, tamper)
    before = snapshot(tmp_path)
    client = TestClient(
        create_app(ViewerSettings(str(store))), base_url="http://127.0.0.1", raise_server_exceptions=False
    )
    listing = client.get("/api/slides")
    assert listing.status_code == 200
    by_id = {s["slide_id"]: s for s in listing.json()["slides"]}
    assert by_id["b"]["state"] == "complete"
    if TAMPERS[tamper][2] == "attrs":
        assert by_id["a"]["state"] == "damaged" and _reason(tamper) in by_id["a"]["message"]
    urls = [
        "/api/slides/{id}",
        "/api/slides/{id}/heatmap.dzi",
        "/api/slides/{id}/heatmap_files/0/0_0.png",
        "/api/slides/{id}/lesions",
        "/api/slides/{id}/slide.dzi",
        "/slides/{id}",
    ]
    for url in urls:
        assert client.get(url.format(id="b")).status_code in (200, 404), url  # 404: b has no slide file
        response = client.get(url.format(id="a"))
        assert response.status_code < 500, (url, response.status_code)
    assert client.get("/api/slides/b").status_code == 200
    assert client.get("/api/slides/b/lesions").status_code == 200
    damaged = client.get("/api/slides/a/lesions")
    assert damaged.status_code == 409 and _reason(tamper) in damaged.json()["error"]
    assert changed(before, snapshot(tmp_path)) == set()


@pytest.mark.parametrize("how", ["broken", "deep"])
def test_a_damaged_root_is_one_line(tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = damaged_store(tmp_path, "prob_7.5")
    (store / "zarr.json").write_text("{broken" if how == "broken" else "[" * 100_000 + "]" * 100_000)
    before = snapshot(tmp_path)
    for argv in (
        ["diagnose", store, "--out", tmp_path / "d.csv"],
        ["export", store, "--format", "geojson", "--out", tmp_path / "x"],
    ):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and "is damaged: its root metadata cannot be read" in one_error_line(err)
    with pytest.raises(StoreError, match="root metadata"):
        HeatmapStore.open(str(store))
    assert changed(before, snapshot(tmp_path)) == set()


@pytest.mark.parametrize("tamper", CASES)
def test_evaluate_refuses_a_damaged_reference_slide_with_one_line(
    tmp_path: Path, tamper: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = damaged_store(tmp_path, tamper)
    (tmp_path / "ref.csv").write_text("a,Tumor,IDC,Macro\nb,Normal,,None\n")
    before = snapshot(tmp_path)
    argv = [
        "evaluate",
        store,
        "--reference",
        tmp_path / "ref.csv",
        "--annotations",
        tmp_path,
        "--exclude",
        "",
        "--out",
        tmp_path / "eval",
    ]
    code, _, err = run_cli(argv, capsys)
    line = one_error_line(err)
    assert code == 2 and "damaged" in line and _reason(tamper) in line, line
    assert changed(before, snapshot(tmp_path)) == set()
