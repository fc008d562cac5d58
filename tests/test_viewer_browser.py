"""The viewer in a real browser: headless Debian Chromium driven by Selenium, against the real
server (uvicorn on a free 127.0.0.1 port) over a store scanned from a synthetic slide.

The page must load slide and heatmap tiles through OpenSeadragon; then the opacity slider is
moved to 1 with the keyboard, and a screenshot must show the heatmap's colour for p = 0.95 over
a cell deep inside the synthetic lesion, and no heatmap colour over a cell of normal tissue. The
cells are chosen from the store's geometry and placed on screen by the page's own transform.
The real mouse is moved over a lesion cell and a normal cell: the readout must give their
probabilities, cells and micrometres; the reference annotations (`view --annotations`) must be
drawn in their own dashed style over the lesion, switch off with their checkbox, and stay off the
navigator. The QC layer of a store scanned with QC (a slide with marker strokes) must request its
tiles (answered 200), draw the ink cells in the ink colour and nothing over clean tissue, and go
when switched off. Screenshots are saved under $PCAM_SCAN_SCREENSHOTS (default: test-output/viewer/ in the
repository), for people to look at.

Needs: `apt-get install -y chromium chromium-driver` and
`npm install --prefix pcam_scan/viewer/web` (OpenSeadragon).
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from pcam_scan.annotations.asap import write_asap_xml
from pcam_scan.geometry import CellGrid
from pcam_scan.render.heatmap_image import HeatmapStyle
from pcam_scan.viewer.app import NPM_INSTALL_HINT, create_app, openseadragon_installed
from pcam_scan.viewer.catalog import ViewerSettings
from pcam_scan.viewer.server import bind_socket, make_server
from tests.scanned_store import NORMAL_PROB, TUMOUR_PROB, ScannedSlide, build_store, scan_inked_slide

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 40.0
LUT = HeatmapStyle().lut[:, :3].astype(np.int16)
LESION_RGB = LUT[round(TUMOUR_PROB * 255)]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ScannedSlide]:
    store_path, (tumour,) = build_store(tmp_path_factory.mktemp("browser"), tumour_seeds=(7,))
    return store_path, tumour


@pytest.fixture(scope="module")
def server_url(scanned: tuple[Path, ScannedSlide]) -> Iterator[str]:
    reference = scanned[0].parent / "reference"
    reference.mkdir(exist_ok=True)
    write_asap_xml(scanned[1].slide.annotations, reference / f"{scanned[1].slide_id}.xml")
    yield from serve(ViewerSettings(str(scanned[0]), annotations_dir=reference))


def serve(settings: ViewerSettings) -> Iterator[str]:
    """The viewer app on a free 127.0.0.1 port, in a thread, for the module's tests."""
    if not openseadragon_installed():
        pytest.fail(f"OpenSeadragon is not installed: {NPM_INSTALL_HINT}")
    sock = bind_socket("127.0.0.1", 0)
    server = make_server(create_app(settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def qc_store(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """A normal synthetic slide with two blue marker strokes, scanned by the real scanner with QC."""
    return scan_inked_slide(tmp_path_factory.mktemp("qc-browser"), tiny_checkpoint, "blue")


@pytest.fixture(scope="module")
def qc_server_url(qc_store: Path) -> Iterator[str]:
    yield from serve(ViewerSettings(str(qc_store)))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Chromium is not installed: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1200,800",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def wait_for(driver: object, script: str, what: str) -> object:
    """Poll a JavaScript expression until it is truthy (bounded; the page's state is the flag)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script};")  # type: ignore[attr-defined]
        if value:
            return value
        time.sleep(0.1)
    state = driver.execute_script("return JSON.stringify(window.pcamViewer);")  # type: ignore[attr-defined]
    raise AssertionError(f"timed out waiting for {what}; page state: {state}")


def interior_cells(scanned: ScannedSlide, value: float, margin: int) -> list[tuple[int, int]]:
    """Cells holding `value` whose neighbours within `margin` cells all hold it too."""
    same = np.isclose(np.nan_to_num(scanned.prob, nan=-1.0), value)
    inner = ndimage.binary_erosion(same, structure=np.ones((2 * margin + 1,) * 2), border_value=0)
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(inner))]


def screen_xy(driver: object, grid: CellGrid, cell_rc: tuple[int, int]) -> tuple[int, int]:
    x, y = grid.cell_center_l0(cell_rc)
    point = driver.execute_script("return window.pcamViewer.imageToPage(arguments[0], arguments[1]);", x, y)  # type: ignore[attr-defined]
    return round(point["x"]), round(point["y"])


def clear_of(xy: tuple[int, int], others: list[tuple[int, int]], px: int) -> bool:
    return all(abs(xy[0] - ox) > px or abs(xy[1] - oy) > px for ox, oy in others)


def screenshot_dir() -> Path:
    folder = Path(
        os.environ.get("PCAM_SCAN_SCREENSHOTS", Path(__file__).resolve().parents[1] / "test-output" / "viewer")
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_screenshot(image: np.ndarray, name: str) -> Path:
    path = screenshot_dir() / name
    Image.fromarray(image.astype(np.uint8)).save(path)
    print(f"viewer screenshot: {path}")
    return path


def screenshot(driver: object) -> np.ndarray:
    png = driver.get_screenshot_as_png()  # type: ignore[attr-defined]
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def patch_rgb(image: np.ndarray, xy: tuple[int, int]) -> np.ndarray:
    """Median colour of the 5 x 5 screen pixels around `xy`."""
    x, y = xy
    return np.median(image[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3), axis=0)


def distance_to_heatmap_colours(rgb: np.ndarray, threshold: float) -> float:
    """How far a colour is from every colour the heatmap shows at or above the threshold."""
    return float(np.linalg.norm(LUT[round(threshold * 255) :] - rgb, axis=1).min())


def test_heatmap_colour_appears_over_the_lesion_in_chromium(browser, server_url, scanned, tmp_path) -> None:
    store_path, tumour = scanned
    driver = browser
    driver.get(f"{server_url}/slides/{tumour.slide_id}")
    wait_for(driver, "window.pcamViewer && window.pcamViewer.ready", "the viewer to open")
    wait_for(
        driver,
        "window.pcamViewer.slideFullyLoaded && window.pcamViewer.heatmapFullyLoaded"
        " && window.pcamViewer.slideTilesLoaded > 0 && window.pcamViewer.heatmapTilesLoaded > 0"
        " && window.pcamViewer.lesionsLoaded",
        "slide tiles, heatmap tiles and lesions",
    )
    assert driver.execute_script("return window.pcamViewer.error;") is None
    assert "positive" in driver.find_element("id", "call").text

    # Cells to look at: deep inside the lesion and deep in normal tissue, away from the
    # detection markers drawn over the lesion.
    detections = driver.execute_script(
        "return Array.from(document.querySelectorAll('#lesion-group circle'))"
        ".map(c => { const b = c.getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2]; });"
    )
    markers = [(round(x), round(y)) for x, y in detections]
    lesion_xy = next(
        xy
        for xy in (screen_xy(driver, tumour.grid, rc) for rc in interior_cells(tumour, TUMOUR_PROB, 2))
        if clear_of(xy, markers, 20)
    )
    normal_xy = screen_xy(driver, tumour.grid, interior_cells(tumour, NORMAL_PROB, 2)[0])

    before = screenshot(driver)  # opacity 0.5: heatmap blended with the slide
    opacity = driver.find_element("id", "opacity")
    opacity.click()
    opacity.send_keys("\ue010")  # End: the slider to its maximum, as a user would with the keyboard
    wait_for(driver, "window.pcamViewer.drawnOpacity === 1", "the heatmap to be drawn at opacity 1")
    assert driver.find_element("id", "opacity-value").text == "1.00"
    full = screenshot(driver)
    driver.find_element("id", "heatmap-on").click()
    wait_for(driver, "window.pcamViewer.drawnOpacity === 0", "the heatmap to be hidden")
    hidden = screenshot(driver)

    save_screenshot(full, "viewer_opacity_1.png")

    lesion_full, lesion_hidden = patch_rgb(full, lesion_xy), patch_rgb(hidden, lesion_xy)
    assert np.linalg.norm(lesion_full - LESION_RGB) < 12, (lesion_full, LESION_RGB)
    assert distance_to_heatmap_colours(lesion_hidden, 0.5) > 40  # under it: the slide's own colour
    lesion_half = patch_rgb(before, lesion_xy)
    assert np.linalg.norm(lesion_half - (LESION_RGB + lesion_hidden) / 2) < 25  # a 50 % blend
    normal_full = patch_rgb(full, normal_xy)
    assert distance_to_heatmap_colours(normal_full, 0.5) > 40, normal_full
    assert np.linalg.norm(normal_full - patch_rgb(hidden, normal_xy)) < 12  # nothing drawn there


def open_viewer(driver: object, server_url: str, slide_id: str) -> None:
    driver.get(f"{server_url}/slides/{slide_id}")  # type: ignore[attr-defined]
    wait_for(driver, "window.pcamViewer && window.pcamViewer.ready", "the viewer to open")
    wait_for(
        driver,
        "window.pcamViewer.slideFullyLoaded && window.pcamViewer.heatmapFullyLoaded"
        " && window.pcamViewer.lesionsLoaded && window.pcamViewer.referenceLoaded",
        "tiles, lesions and reference annotations",
    )


def move_mouse_to(driver: object, xy: tuple[int, int]) -> None:
    """The real pointer to page pixel `xy` (Selenium offsets are from the element's centre)."""
    from selenium.webdriver.common.action_chains import ActionChains

    element = driver.find_element("id", "osd")  # type: ignore[attr-defined]
    box = element.rect
    dx = xy[0] - (box["x"] + box["width"] / 2)
    dy = xy[1] - (box["y"] + box["height"] / 2)
    ActionChains(driver).move_to_element_with_offset(element, round(dx), round(dy)).perform()


def test_cursor_readout_gives_probability_cell_and_micrometres(browser, server_url, scanned) -> None:
    _, tumour = scanned
    driver = browser
    open_viewer(driver, server_url, tumour.slide_id)
    for value in (TUMOUR_PROB, NORMAL_PROB):
        cell = interior_cells(tumour, value, 2)[0]
        move_mouse_to(driver, screen_xy(driver, tumour.grid, cell))
        wanted = f"window.pcamViewer.readout && window.pcamViewer.readout.cell_rc.join() === '{cell[0]},{cell[1]}'"
        readout = wait_for(driver, f"({wanted}) && window.pcamViewer.readout", f"the readout over cell {cell}")
        assert readout["probability"] == pytest.approx(value, abs=1e-6)  # type: ignore[index]
        x_l0, y_l0 = tumour.grid.cell_center_l0(cell)
        um = np.asarray(readout["um_xy"])  # type: ignore[index]
        # the pointer lands on a whole screen pixel: within one screen pixel of the cell centre
        screen_um = tumour.grid.slide_mpp_um_px * driver.execute_script(
            "const a = window.pcamViewer.imageToPage(0, 0), b = window.pcamViewer.imageToPage(1000, 0);"
            "return 1000 / (b.x - a.x);"
        )
        assert np.allclose(
            um, [x_l0 * tumour.grid.slide_mpp_um_px, y_l0 * tumour.grid.slide_mpp_um_px], atol=2 * screen_um
        )
        text = driver.find_element("id", "readout").text
        assert f"P(tumour) {value:.3f}" in text and f"cell ({cell[0]}, {cell[1]})" in text and "\u00b5m" in text
        if value == TUMOUR_PROB:
            save_screenshot(screenshot(driver), "viewer_cursor_readout.png")
    assert "P(tumour)" in driver.find_element("class name", "colour-bar-title").text


def test_reference_annotations_are_a_switchable_layer_off_the_navigator(browser, server_url, scanned) -> None:
    _, tumour = scanned
    driver = browser
    open_viewer(driver, server_url, tumour.slide_id)
    expected = len(tumour.slide.annotations.tumour) + len(tumour.slide.annotations.exclusions)
    assert driver.execute_script("return window.pcamViewer.referenceRings;") == expected > 0
    paths = driver.find_elements("css selector", "#annotation-group path.reference")
    assert paths and all(p.get_attribute("stroke-dasharray") for p in paths)
    outline_stroke = driver.find_element("css selector", "#lesion-group path.outline").get_attribute("stroke")
    assert paths[0].get_attribute("stroke") != outline_stroke  # a style of its own
    # drawn where the lesion is: the reference polygon's box on screen holds a lesion cell
    box = paths[0].rect
    lesion_xy = screen_xy(driver, tumour.grid, interior_cells(tumour, TUMOUR_PROB, 1)[0])
    assert box["x"] <= lesion_xy[0] <= box["x"] + box["width"] and box["y"] <= lesion_xy[1] <= box["y"] + box["height"]
    # the navigator lies above the SVG layers, so no outline is drawn over the minimap
    on_top = driver.execute_script(
        "const r = document.getElementById('navigator').getBoundingClientRect();"
        "return document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2).closest('#navigator') !== null;"
    )
    assert on_top
    shown = screenshot(driver)
    save_screenshot(shown, "viewer_reference_layer.png")
    driver.find_element("id", "reference-on").click()
    wait_for(driver, "window.pcamViewer.referenceRings === 0", "the reference layer to be switched off")
    assert not driver.find_elements("css selector", "#annotation-group path")
    assert driver.find_elements("css selector", "#lesion-group path.outline")  # detections stay
    save_screenshot(screenshot(driver), "viewer_reference_off.png")


def test_the_qc_layer_is_requested_drawn_in_its_colours_and_switched_off(browser, qc_server_url, qc_store) -> None:
    from pcam_scan.qc.flags import INK
    from pcam_scan.store import HeatmapStore
    from pcam_scan.viewer.tiles import QC_RGBA

    store = HeatmapStore.open(str(qc_store))
    qc = store.read_qc("normal_001")
    assert qc is not None
    flags = qc[0]
    grid = store.read_grid("normal_001")
    tissue = store.read_tissue("normal_001")
    inked = ndimage.binary_erosion((flags & INK) != 0, structure=np.ones((3, 3)))
    clean = ndimage.binary_erosion(tissue & (flags == 0), structure=np.ones((3, 3)))
    assert inked.any() and clean.any()
    driver = browser
    driver.get(f"{qc_server_url}/slides/normal_001")
    wait_for(driver, "window.pcamViewer && window.pcamViewer.ready", "the viewer to open")
    wait_for(driver, "window.pcamViewer.slideFullyLoaded && window.pcamViewer.heatmapFullyLoaded", "the tiles")
    driver.find_element("id", "heatmap-on").click()  # the slide alone under the QC layer
    wait_for(driver, "window.pcamViewer.drawnOpacity === 0", "the heatmap to be hidden")
    cells = [np.argwhere(mask)[np.count_nonzero(mask) // 2] for mask in (inked, clean)]
    ink_xy, clean_xy = (screen_xy(driver, grid, (row, col)) for row, col in cells)
    before = screenshot(driver)

    driver.find_element("id", "qc-on").click()
    wait_for(driver, "window.pcamViewer.qcDrawn === true && window.pcamViewer.qcTilesLoaded > 0", "the QC layer")
    assert driver.execute_script("return window.pcamViewer.error;") is None
    statuses = driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/qc_files/'))"
        ".map(e => e.responseStatus);"
    )
    assert statuses and all(status == 200 for status in statuses), statuses
    shown = screenshot(driver)
    save_screenshot(shown, "viewer_qc_layer.png")
    red, green, blue, alpha = QC_RGBA[INK]
    weight = 0.8 * alpha / 255  # the layer's opacity times the colour's own alpha
    expected = patch_rgb(before, ink_xy) * (1 - weight) + np.array([red, green, blue]) * weight
    assert np.linalg.norm(patch_rgb(shown, ink_xy) - expected) < 12, (patch_rgb(shown, ink_xy), expected)
    assert np.linalg.norm(patch_rgb(shown, clean_xy) - patch_rgb(before, clean_xy)) < 6  # clear there

    driver.find_element("id", "qc-on").click()
    wait_for(driver, "window.pcamViewer.qcDrawn === false", "the QC layer to be switched off")
    hidden = screenshot(driver)
    assert np.linalg.norm(patch_rgb(hidden, ink_xy) - patch_rgb(before, ink_xy)) < 6
