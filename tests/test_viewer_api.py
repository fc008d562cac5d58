"""The viewer's HTTP API against the real app (Starlette TestClient) over a real store scanned
from real synthetic slides: slide list, Deep Zoom tiles of the slide and of the heatmap (placed
by the store's cell geometry), lesion overlays, caching, slides that moved, a scan in progress,
and requests that must be refused with a 4xx."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import openslide
import pytest
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image
from starlette.testclient import TestClient

from pcam_scan.annotations.asap import write_asap_xml
from pcam_scan.cli import main
from pcam_scan.render.heatmap_image import HeatmapStyle
from pcam_scan.store import HeatmapStore, SlideRecord, slide_fingerprint
from pcam_scan.viewer.app import create_app
from pcam_scan.viewer.catalog import ViewerSettings
from pcam_scan.viewer.tiles import DeepZoomGrid
from tests.scanned_store import (
    BLOCK_CELLS,
    NORMAL_PROB,
    RUN,
    TUMOUR_PROB,
    ScannedSlide,
    build_store,
    scan_into,
    truth_probabilities,
)

BASE_URL = "http://127.0.0.1"
LUT = HeatmapStyle().lut


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ScannedSlide, ScannedSlide]:
    folder = tmp_path_factory.mktemp("viewer")
    store_path, (tumour, normal) = build_store(folder, tumour_seeds=(7,), normal_seeds=(5,))
    return store_path, tumour, normal


@pytest.fixture(scope="module")
def client(scanned: tuple[Path, ScannedSlide, ScannedSlide]) -> TestClient:
    app = create_app(ViewerSettings(str(scanned[0])))
    return TestClient(app, base_url=BASE_URL, raise_server_exceptions=False)


def decode(response_content: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(response_content))
    image.load()
    return image


def tile_cells(grid_dz: DeepZoomGrid, scanned: ScannedSlide, col: int, row: int) -> set[tuple[int, int]]:
    """Heatmap cells under a tile of the finest Deep Zoom level (level-0 px = z px there)."""
    x0, y0, x1, y1 = grid_dz.tile_box(grid_dz.max_level, col, row)
    first = scanned.grid.l0_to_cell((x0, y0))
    last = scanned.grid.l0_to_cell((x1 - 1e-6, y1 - 1e-6))
    return {(r, c) for r in range(first[0], last[0] + 1) for c in range(first[1], last[1] + 1)}


def uniform_tile(scanned: ScannedSlide, grid_dz: DeepZoomGrid, value: float) -> tuple[int, int]:
    """A finest-level tile whose cells all hold `value`: over the lesion or over normal tissue."""
    cols, rows = grid_dz.level_tiles(grid_dz.max_level)
    for row in range(rows):
        for col in range(cols):
            cells = tile_cells(grid_dz, scanned, col, row)
            inside = all(0 <= r < scanned.grid.rows and 0 <= c < scanned.grid.cols for r, c in cells)
            if inside and all(np.isclose(scanned.prob[r, c], value) for r, c in cells):
                return col, row
    raise AssertionError(f"no tile of uniform probability {value}; the synthetic slide changed")


# -- slide list and slide info -----------------------------------------------------------------


def test_slide_list_has_status_diagnosis_and_tumour_area(client, scanned) -> None:
    response = client.get("/api/slides")
    assert response.status_code == 200
    by_id = {s["slide_id"]: s for s in response.json()["slides"]}
    assert set(by_id) == {"tumor_001", "normal_001"}
    tumour, normal = by_id["tumor_001"], by_id["normal_001"]
    assert tumour["state"] == "complete" and tumour["call"] == "positive"
    assert tumour["probability"] == pytest.approx(TUMOUR_PROB)
    assert tumour["category"] == "micro"  # the synthetic slide's largest lesion is 0.77 mm
    cell_mm2 = scanned[1].grid.cell_area_mm2
    n_lesion_cells = int(np.count_nonzero(scanned[1].prob >= 0.5))
    assert tumour["tumour_area_mm2"] == pytest.approx(n_lesion_cells * cell_mm2)
    assert normal["call"] == "negative" and normal["category"] == "negative"
    assert normal["tumour_area_mm2"] == 0.0


def test_slide_list_groups_by_patient_with_a_patients_file(scanned, tmp_path: Path) -> None:
    """With `--patients`, each slide names its patient and node, and each patient its pN stage;
    a node missing from the store leaves its patient pN? (never staged as if negative)."""
    patients = tmp_path / "patients.csv"
    patients.write_text("slide_id,patient,node\ntumor_001,A,0\nnormal_001,B,0\nghost_002,B,1\n", encoding="utf-8")
    client = TestClient(create_app(ViewerSettings(str(scanned[0]), patients_file=patients)), base_url=BASE_URL)
    data = client.get("/api/slides").json()
    by_id = {s["slide_id"]: s for s in data["slides"]}
    assert (by_id["tumor_001"]["patient"], by_id["tumor_001"]["node"]) == ("A", "0")
    stages = {p["patient"]: p for p in data["patients"]}
    assert stages["A"]["stage"] == "pN1mi"  # one node with a micro-metastasis (0.77 mm), no macro
    assert (stages["B"]["stage"], stages["B"]["at_least"]) == ("pN?", "pN0")
    assert stages["B"]["unassessed"] == ["ghost_002 (missing)"]
    assert (
        "patients"
        not in TestClient(create_app(ViewerSettings(str(scanned[0]))), base_url=BASE_URL).get("/api/slides").json()
    )


def test_slide_info_gives_geometry_from_the_store(client, scanned) -> None:
    tumour = scanned[1]
    info = client.get("/api/slides/tumor_001").json()
    assert (info["l0_width"], info["l0_height"]) == (tumour.grid.l0_width, tumour.grid.l0_height)
    assert info["slide_mpp_um_px"] == pytest.approx(0.75)
    assert info["cell_um"] == pytest.approx(32 * 0.972)
    assert info["max_level"] == math.ceil(math.log2(max(tumour.grid.l0_width, tumour.grid.l0_height)))
    assert info["slide_available"] is True and info["complete"] is True
    assert info["summary"]["call"] == "positive"


def test_pages_are_served(client) -> None:
    for url in ("/", "/slides/tumor_001", "/static/viewer.js", "/static/list.js", "/static/app.css"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in client.get("/").headers["content-security-policy"]


# -- slide tiles -------------------------------------------------------------------------------


def test_deep_zoom_grid_matches_openslide(scanned) -> None:
    tumour = scanned[1]
    with openslide.OpenSlide(str(tumour.slide.path)) as osr:
        generator = DeepZoomGenerator(osr, tile_size=254, overlap=1, limit_bounds=False)
        grid = DeepZoomGrid(*osr.dimensions)
        assert grid.level_count == generator.level_count
        for level in range(grid.level_count):
            assert grid.level_tiles(level) == generator.level_tiles[level]
            cols, rows = grid.level_tiles(level)
            for col, row in {(0, 0), (cols - 1, rows - 1), (cols // 2, rows // 2)}:
                x0, y0, x1, y1 = grid.tile_box(level, col, row)
                assert (x1 - x0, y1 - y0) == generator.get_tile_dimensions(level, (col, row))
                l0_xy, _, _ = generator.get_tile_coordinates(level, (col, row))
                scale = grid.l0_per_level_px(level)
                assert l0_xy == (x0 * scale, y0 * scale)


def test_dzi_and_a_slide_tile_decode_at_the_right_size(client, scanned) -> None:
    tumour = scanned[1]
    dzi = client.get("/api/slides/tumor_001/slide.dzi")
    assert dzi.status_code == 200 and dzi.headers["content-type"] == "application/xml"
    assert f'Width="{tumour.grid.l0_width}"' in dzi.text and 'TileSize="254"' in dzi.text
    grid = DeepZoomGrid(tumour.grid.l0_width, tumour.grid.l0_height)
    level = grid.max_level
    cols, rows = grid.level_tiles(level)
    for col, row in ((1, 1), (cols - 1, rows - 1)):
        response = client.get(f"/api/slides/tumor_001/slide_files/{level}/{col}_{row}.jpeg")
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        image = decode(response.content)
        x0, y0, x1, y1 = grid.tile_box(level, col, row)
        assert image.format == "JPEG" and image.size == (x1 - x0, y1 - y0)
    whole = decode(client.get("/api/slides/tumor_001/slide_files/0/0_0.jpeg").content)
    assert whole.size == (1, 1)


# -- heatmap tiles -----------------------------------------------------------------------------


def test_heatmap_tile_over_the_lesion_is_coloured_and_over_normal_tissue_is_clear(client, scanned) -> None:
    tumour = scanned[1]
    grid = DeepZoomGrid(tumour.grid.l0_width, tumour.grid.l0_height)
    lesion_col, lesion_row = uniform_tile(tumour, grid, TUMOUR_PROB)
    normal_col, normal_row = uniform_tile(tumour, grid, NORMAL_PROB)
    level = grid.max_level
    lesion = decode(client.get(f"/api/slides/tumor_001/heatmap_files/{level}/{lesion_col}_{lesion_row}.png").content)
    normal = decode(client.get(f"/api/slides/tumor_001/heatmap_files/{level}/{normal_col}_{normal_row}.png").content)
    x0, y0, x1, y1 = grid.tile_box(level, lesion_col, lesion_row)
    assert lesion.format == "PNG" and lesion.mode == "RGBA" and lesion.size == (x1 - x0, y1 - y0)
    lesion_px = np.asarray(lesion)
    assert (lesion_px == LUT[round(TUMOUR_PROB * 255)]).all()  # opaque, the colour of p = 0.95
    assert (np.asarray(normal)[..., 3] == 0).all()  # p = 0.05 is below the 0.5 threshold
    shown = decode(
        client.get(f"/api/slides/tumor_001/heatmap_files/{level}/{normal_col}_{normal_row}.png?threshold=0.01").content
    )
    assert (np.asarray(shown) == LUT[round(NORMAL_PROB * 255)]).all()


def test_heatmap_tiles_follow_cell_edges_to_the_pixel(client, scanned) -> None:
    """Along a lesion's edge, the pixel just inside a lesion cell is coloured and the pixel just
    outside is clear, at the level-0 position the cell geometry gives (cell = 41.472 px)."""
    tumour = scanned[1]
    dz = DeepZoomGrid(tumour.grid.l0_width, tumour.grid.l0_height)
    level = dz.max_level
    rows, cols = np.nonzero(np.nan_to_num(tumour.prob[:, :-1]) >= 0.5)
    edges = [(r, c) for r, c in zip(rows, cols) if not tumour.prob[r, c + 1] >= 0.5][:6]
    assert edges, "the lesion must have a right-hand edge"
    for row, col in edges:
        _, cell_y0, cell_x1, cell_y1 = tumour.grid.cell_l0_box((int(row), int(col)))
        y = int((cell_y0 + cell_y1) / 2)
        for x, coloured in ((math.floor(cell_x1) - 1, True), (math.ceil(cell_x1) + 1, False)):
            tile_col, tile_row = min(x // 254, dz.level_tiles(level)[0] - 1), y // 254
            x0, y0, _, _ = dz.tile_box(level, tile_col, tile_row)
            image = decode(client.get(f"/api/slides/tumor_001/heatmap_files/{level}/{tile_col}_{tile_row}.png").content)
            alpha = np.asarray(image)[y - y0, x - x0, 3]
            assert bool(alpha == 255) == coloured, (row, col, x, y)


def test_coarse_heatmap_tiles_keep_a_lesion_visible(client, scanned) -> None:
    """At the whole-slide zoom a tile covers many cells per pixel; max pooling keeps the lesion."""
    tumour = scanned[1]
    dz = DeepZoomGrid(tumour.grid.l0_width, tumour.grid.l0_height)
    level = dz.max_level - 7  # 128 level-0 px per pixel: about 3 cells per pixel
    image = np.asarray(decode(client.get(f"/api/slides/tumor_001/heatmap_files/{level}/0_0.png").content))
    assert image.shape[:2] == dz.level_wh[level][::-1]
    assert (image[..., 3] == 255).sum() > 0
    normal = np.asarray(decode(client.get(f"/api/slides/normal_001/heatmap_files/{level}/0_0.png").content))
    assert (normal[..., 3] == 0).all()


def test_lesion_overlay_outlines_enclose_the_lesion_cells(client, scanned) -> None:
    tumour = scanned[1]
    overlay = client.get("/api/slides/tumor_001/lesions?threshold=0.5").json()
    assert overlay["region_count"] == len(tumour.slide.lesions)  # a micro lesion and an ITC
    l0_per_cell = tumour.grid.l0_per_px * 32
    cells = int(np.count_nonzero(tumour.prob >= 0.5))
    ring_cells = 0.0
    for ring in overlay["outlines_l0_xy"]:
        xy = np.asarray(ring) / l0_per_cell
        ring_cells += 0.5 * abs(np.dot(xy[:, 0], np.roll(xy[:, 1], -1)) - np.dot(xy[:, 1], np.roll(xy[:, 0], -1)))
    # sub-cell outlines of the majority-rule heatmap: about the lit cells' area, corners rounded
    assert ring_cells == pytest.approx(cells, rel=0.1)
    assert sum(r["n_cells"] for r in overlay["regions"]) == cells
    assert overlay["detection_count"] >= 1
    for detection in overlay["detections"]:
        r, c = tumour.grid.l0_to_cell(tuple(detection["l0_xy"]))
        assert tumour.prob[r, c] >= 0.5
    assert client.get("/api/slides/normal_001/lesions").json()["region_count"] == 0


# -- caching -----------------------------------------------------------------------------------


def test_tiles_are_immutable_under_the_current_version_and_revalidate_otherwise(client) -> None:
    version = client.get("/api/slides/tumor_001").json()["version"]
    url = "/api/slides/tumor_001/heatmap_files/11/0_0.png"
    current = client.get(f"{url}?v={version}&threshold=0.50")
    assert "immutable" in current.headers["cache-control"]
    stale = client.get(f"{url}?v=000&threshold=0.50")
    assert stale.headers["cache-control"] == "no-cache"
    etag = current.headers["etag"]
    again = client.get(f"{url}?v={version}&threshold=0.50", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    other_threshold = client.get(f"{url}?v={version}&threshold=0.60")
    assert other_threshold.headers["etag"] != etag


# -- slides that moved -------------------------------------------------------------------------


def test_moved_slide_is_found_in_the_slides_folder_by_name_and_fingerprint(scanned, tmp_path) -> None:
    store_path, tumour, normal = scanned
    # Scan a copy of the slide, then take that copy away: the recorded path is gone. In the
    # slides folder, a same-named impostor (the normal slide) and the real slide renamed.
    recorded = tmp_path / "scanned_from" / tumour.slide.path.name
    recorded.parent.mkdir()
    shutil.copy(tumour.slide.path, recorded)
    store = HeatmapStore.open(str(tmp_path / "run.zarr"), RUN, mode="a")
    scan_into(store, dataclasses.replace(tumour.slide, path=recorded))
    recorded.unlink()
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(normal.slide.path, moved / tumour.slide.path.name)
    shutil.copy(tumour.slide.path, moved / "renamed_copy.tif")

    without = TestClient(create_app(ViewerSettings(str(tmp_path / "run.zarr"))), base_url=BASE_URL)
    info = without.get("/api/slides/tumor_001").json()
    assert info["slide_available"] is False and "--slides" in info["slide_problem"]
    assert without.get("/api/slides/tumor_001/slide_files/11/2_2.jpeg").status_code == 404
    assert without.get("/api/slides/tumor_001/heatmap_files/11/2_2.png").status_code == 200

    settings = ViewerSettings(str(tmp_path / "run.zarr"), slides_dir=moved)
    with_dir = TestClient(create_app(settings), base_url=BASE_URL)
    tile = with_dir.get("/api/slides/tumor_001/slide_files/11/2_2.jpeg")
    assert tile.status_code == 200
    got = np.asarray(decode(tile.content), dtype=np.int16)

    def error_to(path: Path) -> float:
        with openslide.OpenSlide(str(path)) as osr:
            expected = DeepZoomGenerator(osr, 254, 1).get_tile(11, (2, 2))
        return float(np.abs(got - np.asarray(expected, dtype=np.int16)).mean())

    assert error_to(tumour.slide.path) < 8  # JPEG loss only
    assert error_to(normal.slide.path) > 3 * error_to(tumour.slide.path)  # not the impostor


# -- a scan in progress ------------------------------------------------------------------------


def test_a_slide_still_being_scanned_is_viewable_and_changes_version(scanned, tmp_path) -> None:
    tumour = scanned[1]
    store = HeatmapStore.open(str(tmp_path / "live.zarr"), RUN, mode="a")
    record = SlideRecord(str(tumour.slide.path), slide_fingerprint(tumour.slide.path))
    store.plan_slide("tumor_001", record, tumour.grid, tumour.tissue, BLOCK_CELLS)
    prob = truth_probabilities(tumour.slide, tumour.grid, tumour.tissue)
    blocks = store.pending_blocks("tumor_001")
    store.write_block("tumor_001", blocks[0], prob[blocks[0].cell_slices()])
    client = TestClient(create_app(ViewerSettings(str(tmp_path / "live.zarr"))), base_url=BASE_URL)
    first = client.get("/api/slides/tumor_001").json()
    assert first["complete"] is False and first["summary"]["state"] == "planned"
    tile = client.get(f"/api/slides/tumor_001/heatmap_files/7/0_0.png?v={first['version']}")
    assert tile.status_code == 200 and tile.headers["cache-control"] == "no-cache"
    store.write_block("tumor_001", blocks[1], prob[blocks[1].cell_slices()])
    assert client.get("/api/slides/tumor_001").json()["version"] != first["version"]


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/slides/../../etc/passwd", 404),
        ("/api/slides/..%2F..%2Fetc%2Fpasswd/slide.dzi", 404),
        ("/api/slides/%2e%2e/slide.dzi", 400),
        ("/api/slides/%2e%2e%2f%2e%2e%2fetc%2fpasswd/slide.dzi", 404),
        ("/api/slides/.zarr/slide.dzi", 400),
        ("/api/slides/tumor_001%00/slide.dzi", 400),
        ("/api/slides/%2Fetc%2Fpasswd/slide.dzi", 404),
        ("/slides/..%5C..%5Cwindows", 400),
        ("/api/slides/no_such_slide/slide.dzi", 404),
        ("/api/slides/" + "a" * 200, 400),
        ("/api/slides/tumor_001/slide_files/13/0_0.jpeg", 404),
        ("/api/slides/tumor_001/slide_files/-1/0_0.jpeg", 400),
        ("/api/slides/tumor_001/slide_files/x/0_0.jpeg", 400),
        ("/api/slides/tumor_001/slide_files/11/5_0.jpeg", 404),
        ("/api/slides/tumor_001/slide_files/11/0_4.jpeg", 404),
        ("/api/slides/tumor_001/slide_files/11/-1_0.jpeg", 400),
        ("/api/slides/tumor_001/slide_files/11/0_0.png", 400),
        ("/api/slides/tumor_001/slide_files/11/0_0.jpeg.jpeg", 400),
        ("/api/slides/tumor_001/slide_files/11/999999999_999999999.jpeg", 404),
        ("/api/slides/tumor_001/slide_files/11/" + "9" * 5000 + "_0.jpeg", 400),
        ("/api/slides/tumor_001/slide_files/" + "9" * 30 + "/0_0.jpeg", 400),
        ("/api/slides/tumor_001/heatmap_files/11/0_0.png?threshold=nan", 400),
        ("/api/slides/tumor_001/heatmap_files/11/0_0.png?threshold=1.5", 400),
        ("/api/slides/tumor_001/heatmap_files/11/0_0.png?threshold=1e999", 400),
        ("/api/slides/tumor_001/lesions?threshold=-0.1", 400),
        ("/vendor/openseadragon/../../../../package.json", 404),
        ("/static/..%2F..%2Fapp.py", 404),
    ],
)
def test_bad_requests_get_a_4xx_with_a_one_line_error(client, url, status) -> None:
    response = client.get(url)
    assert response.status_code == status, response.text
    assert "root:" not in response.text and "Traceback" not in response.text
    if response.headers.get("content-type") == "application/json":
        assert "\n" not in response.json()["error"]


def test_unknown_slide_page_is_html_with_a_link_back(client) -> None:
    response = client.get("/slides/no_such_slide")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "no_such_slide" in response.text and "href='/'" in response.text
    assert client.get("/api/slides/no_such_slide").json()["error"]  # the API stays JSON


def test_probe_gives_the_probability_cell_and_micrometres_under_a_point(client, scanned) -> None:
    tumour = scanned[1]
    row, col = tumour.cells(TUMOUR_PROB)[0]
    x, y = tumour.grid.cell_center_l0((row, col))
    body = client.get(f"/api/slides/tumor_001/probe?x={x}&y={y}").json()
    assert body["cell_rc"] == [row, col]
    assert body["probability"] == pytest.approx(TUMOUR_PROB, abs=1e-6)
    assert body["um_xy"] == pytest.approx([x * tumour.grid.slide_mpp_um_px, y * tumour.grid.slide_mpp_um_px])
    outside = client.get("/api/slides/tumor_001/probe?x=-5&y=10").json()
    assert outside["inside"] is False and outside["probability"] is None
    assert client.get("/api/slides/tumor_001/probe?x=nan&y=1").status_code == 400


def test_reference_annotations_are_matched_by_slide_name(scanned, tmp_path) -> None:
    tumour = scanned[1]
    folder = tmp_path / "reference"
    folder.mkdir()
    write_asap_xml(tumour.slide.annotations, folder / "TUMOR_001.xml")
    client = TestClient(create_app(ViewerSettings(str(scanned[0]), annotations_dir=folder)), base_url=BASE_URL)
    info = client.get("/api/slides/tumor_001").json()
    assert info["reference_annotations"] == "TUMOR_001.xml"
    body = client.get("/api/slides/tumor_001/reference").json()
    expected = tumour.slide.annotations
    assert len(body["tumour_l0_xy"]) == len(expected.tumour) > 0
    assert np.allclose(body["tumour_l0_xy"][0], expected.tumour[0].l0_xy, atol=0.1)
    assert client.get("/api/slides/normal_001").json()["reference_annotations"] is None
    assert client.get("/api/slides/normal_001/reference").status_code == 404


def test_the_viewer_is_read_only(client, scanned) -> None:
    store_path = scanned[0]

    def tree_digest() -> str:
        digest = hashlib.sha256()
        for path in sorted(store_path.rglob("*")):
            if path.is_file():
                digest.update(str(path).encode() + path.read_bytes())
        return digest.hexdigest()

    before = tree_digest()
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/api/slides/tumor_001").status_code == 405
    client.get("/api/slides")
    client.get("/api/slides/tumor_001/lesions")
    assert tree_digest() == before


def test_other_hosts_are_refused(scanned) -> None:
    """A DNS-rebinding page cannot reach the viewer: only loopback host names are served."""
    app = create_app(ViewerSettings(str(scanned[0])))
    assert TestClient(app, base_url="http://evil.example").get("/api/slides").status_code == 400
    assert TestClient(app, base_url="http://localhost:8000").get("/api/slides").status_code == 200
    assert TestClient(app, base_url="http://[::1]:8000").get("/api/slides").status_code == 200
    assert TestClient(app, base_url="http://127.0.0.1.evil.example").get("/").status_code == 400


# -- the command -------------------------------------------------------------------------------


def serve_and_get(store: Path, extra: tuple[str, ...], paths: tuple[str, ...]) -> tuple[list[int], str]:
    """Run `pcam-scan view` on a free port, GET the paths, stop it: the statuses and its stderr."""
    command = [sys.executable, "-m", "pcam_scan.cli", "view", str(store), "--port", "0", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    statuses = []
    try:
        first_line = process.stdout.readline() if process.stdout else ""
        match = re.search(r"at http://127\.0\.0\.1:(\d+)/", first_line)
        assert match, first_line
        for path in paths:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}{path}", timeout=20) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as err:
                statuses.append(err.code)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    return statuses, err


def test_view_command_serves_the_store_on_loopback(scanned) -> None:
    command = [sys.executable, "-m", "pcam_scan.cli", "view", str(scanned[0]), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = process.stdout.readline() if process.stdout else ""
        match = re.search(r"at http://127\.0\.0\.1:(\d+)/", first_line)
        assert match, first_line
        with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}/api/slides", timeout=20) as response:
            slides = json.load(response)["slides"]
        assert {s["slide_id"] for s in slides} == {"tumor_001", "normal_001"}
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_view_command_logs_one_line_per_request_and_errors_with_their_cause(scanned) -> None:
    paths = ("/api/slides", "/api/slides/tumor_001/lesions?threshold=2")
    statuses, err = serve_and_get(scanned[0], (), paths)
    assert statuses == [200, 400]
    access = [line for line in err.splitlines() if re.search(r" (GET) /\S* \d{3} [0-9.]+ ms$", line)]
    assert [line.split()[3:5] for line in access] == [["/api/slides", "200"], ["/api/slides/tumor_001/lesions", "400"]]
    assert any("/lesions: 400 threshold" in line for line in err.splitlines())
    statuses, quiet = serve_and_get(scanned[0], ("--quiet",), paths)
    assert statuses == [200, 400]
    assert " ms" not in quiet  # no access lines ...
    assert "/lesions: 400 threshold" in quiet  # ... but the error still


def test_view_command_refusals_are_one_line(scanned, tmp_path, capsys) -> None:
    assert main(["view", str(tmp_path / "missing.zarr"), "--port", "0"]) == 2
    assert "no heatmap store" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["view", str(scanned[0]), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and err.count("\n") == 1
    assert main(["view", str(scanned[0]), "--slides", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
