"""One slide whose storage stalls must not block the viewer's other requests (issue 24, defect D).

A real viewer server (uvicorn in a thread) over a real store; the stall is real too: another
process holds a Linux write lease on the tumour slide's file, or on one chunk file of its heatmap
in the Zarr store, so every open() of that file blocks in the kernel (until the lease is let go,
or the kernel's lease-break-time passes). The regular-file checks pass (it is a regular file), so
only the viewer's per-slide isolation keeps the server up: for the store chunk, that its Zarr
reads run in the slide's own threads, not in the few threads Zarr's event loop shares.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from pcam_scan.viewer.app import create_app
from pcam_scan.viewer.catalog import ViewerSettings
from pcam_scan.viewer.server import bind_socket, make_server
from pcam_scan.viewer.tiles import DeepZoomGrid
from tests.scanned_store import ScannedSlide, build_store

READS_PER_SLIDE = 4
REQUEST_TIMEOUT_S = 30.0
"""Generous for a tile (milliseconds), yet shorter than the kernel's lease-break-time (45 s by
default; checked below), after which the stall ends by itself and a blocked server would answer."""

LEASE_HOLDER = """
import fcntl, os, signal, sys, time
signal.signal(signal.SIGIO, signal.SIG_IGN)  # keep the lease when a reader asks for it
fds = [os.open(path, os.O_RDONLY) for path in sys.argv[1:]]
for fd in fds:
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ScannedSlide, ScannedSlide]:
    store_path, (tumour, normal) = build_store(tmp_path_factory.mktemp("isolation"), normal_seeds=(5,))
    return store_path, tumour, normal


def serve(store: Path, settings: dict[str, float]) -> Iterator[str]:
    app = create_app(ViewerSettings(str(store), **settings))  # type: ignore[arg-type]
    sock = bind_socket("127.0.0.1", 0)
    server = make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture
def server_url(scanned: tuple[Path, ScannedSlide, ScannedSlide]) -> Iterator[str]:
    yield from serve(scanned[0], {"reads_per_slide": READS_PER_SLIDE, "read_timeout_s": 3.0})


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def tile_url(base: str, slide: ScannedSlide, col: int = 0, row: int = 0, layer: str = "slide") -> str:
    level = DeepZoomGrid(slide.grid.l0_width, slide.grid.l0_height).max_level
    suffix = "jpeg" if layer == "slide" else "png"
    return f"{base}/api/slides/{slide.slide_id}/{layer}_files/{level}/{col}_{row}.{suffix}"


def stalled_reads(slide_id: str, gate: str = "viewer-read") -> int:
    return sum(thread.name == f"{gate}-{slide_id}" for thread in threading.enumerate())


@contextmanager
def lease_held(*paths: Path) -> Iterator[None]:
    """Another process holds a write lease on each path: every open() of them blocks until we leave."""
    lease_break_s = int(Path("/proc/sys/fs/lease-break-time").read_text())
    assert lease_break_s > REQUEST_TIMEOUT_S + 5, "the kernel would end the stall before a request times out"
    holder = subprocess.Popen(
        [sys.executable, "-c", LEASE_HOLDER, *map(str, paths)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.communicate(timeout=20)  # closes its stdin: it lets the lease go and exits


def test_a_slide_whose_file_stalls_leaves_the_other_slides_and_the_api_answering(scanned, server_url) -> None:
    _, tumour, normal = scanned
    with lease_held(tumour.slide.path):
        with ThreadPoolExecutor(max_workers=48) as pool:
            stalled = [pool.submit(get, tile_url(server_url, tumour, i % 2, i // 2 % 2)) for i in range(48)]
            # while those 48 wait on the stalled file: another slide's tile and the API answer
            assert get(tile_url(server_url, normal)) == 200
            assert get(f"{server_url}/api/slides") == 200
            assert get(f"{server_url}/api/slides/{normal.slide_id}") == 200
            assert get(f"{server_url}/api/slides/{normal.slide_id}/heatmap.dzi") == 200
            statuses = [future.result() for future in stalled]
        # each stalled request was answered, 503 (no place free) or 504 (its own read stalled) ...
        assert set(statuses) <= {503, 504} and 504 in statuses, statuses
        # ... and the stalled slide holds no more threads than its places
        assert 1 <= stalled_reads(tumour.slide_id) <= READS_PER_SLIDE
        assert get(f"{server_url}/api/slides") == 200
    # the lease let go, the stuck reads finish and free their places: the slide is served again
    assert get(tile_url(server_url, tumour)) in (200, 503)  # its places may still be freeing
    statuses = [get(tile_url(server_url, tumour)) for _ in range(30) if stalled_reads(tumour.slide_id)]
    assert get(tile_url(server_url, tumour)) == 200, statuses


def test_a_burst_on_one_slide_waits_for_its_places_and_all_are_served(scanned, server_url) -> None:
    """More requests than the slide has places queue (holding no thread) and are all served."""
    _, tumour, normal = scanned
    with ThreadPoolExecutor(max_workers=48) as pool:
        urls = [tile_url(server_url, slide, i % 2, i // 2 % 2) for i in range(24) for slide in (tumour, normal)]
        statuses = list(pool.map(get, urls))
    assert statuses == [200] * 48


def test_a_slide_whose_store_chunk_stalls_leaves_the_other_slides_and_the_api_answering(scanned, server_url) -> None:
    """The stall in the Zarr store: the chunks of the tumour slide's level-0 heatmap. Zarr reads
    a level's chunks at once (up to 10 per read), so the 4 requests of that slide holding places
    would take 40 threads of the reading pool Zarr shares among all arrays (at most 32, 6 on a
    2-core machine); its reads run in the slide's own threads instead, so the other slide's
    heatmap still loads."""
    store_path, tumour, normal = scanned
    chunks = sorted(path for path in (store_path / tumour.slide_id / "prob" / "0" / "c").rglob("*") if path.is_file())
    assert len(chunks) >= 8
    with lease_held(*chunks):
        with ThreadPoolExecutor(max_workers=48) as pool:
            urls = [tile_url(server_url, tumour, i % 2, i // 2 % 2, layer="heatmap") for i in range(48)]
            stalled = [pool.submit(get, url) for url in urls]
            assert get(tile_url(server_url, normal, layer="heatmap")) == 200
            assert get(tile_url(server_url, normal, 1, 0, layer="heatmap")) == 200
            assert get(f"{server_url}/api/slides") == 200
            assert get(f"{server_url}/api/slides/{normal.slide_id}") == 200
            assert get(f"{server_url}/api/slides/{normal.slide_id}/lesions") == 200
            statuses = [future.result() for future in stalled]
        assert set(statuses) <= {503, 504} and 504 in statuses, statuses
        # the stalled chunk holds no more of the store's reading threads than the slide's places
        assert 1 <= stalled_reads(tumour.slide_id, "viewer-store-read") <= READS_PER_SLIDE
        assert stalled_reads(tumour.slide_id) <= READS_PER_SLIDE
        assert get(tile_url(server_url, normal, 0, 1, layer="heatmap")) == 200
    statuses = [get(tile_url(server_url, tumour, layer="heatmap")) for _ in range(30)]
    assert statuses[-1] == 200, statuses
