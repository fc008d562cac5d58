"""The viewer binds loopback unless told twice (--host ADDR --allow-remote), and a viewer that
serves a network still checks the Host header against the names it was given."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pcam_scan.viewer.app import create_app, openseadragon_installed
from pcam_scan.viewer.catalog import ViewerSettings
from pcam_scan.viewer.server import LOOPBACK_HOSTS, loopback_host_names, remote_host_names
from tests.hostile_cases import build_store, one_error_line, run_cli

pytestmark = pytest.mark.skipif(not openseadragon_installed(), reason="the viewer's OpenSeadragon is not installed")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7"])
def test_a_non_loopback_host_needs_allow_remote(tmp_path: Path, host: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = build_store(tmp_path / "s.zarr")
    code, _, err = run_cli(["view", store, "--host", host, "--port", "0"], capsys)
    line = one_error_line(err)
    assert code == 2 and f"--host {host} is not a loopback address" in line and "--allow-remote" in line


def test_server_names_need_a_remote_host(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = build_store(tmp_path / "s.zarr")
    code, _, err = run_cli(["view", store, "--server-name", "viewer.example.org", "--port", "0"], capsys)
    assert code == 2 and "--server-name applies only" in one_error_line(err)


@pytest.mark.parametrize(
    ("host", "names", "served", "refused"),
    [
        (
            "0.0.0.0",
            ["viewer.example.org"],
            ["viewer.example.org", "viewer.example.org:8443", "127.0.0.1"],
            ["evil.example", "0.0.0.0", ""],
        ),
        ("0.0.0.0", [], [socket.gethostname().lower(), "localhost:8000"], ["evil.example", "0.0.0.0"]),
        ("192.0.2.7", [], ["192.0.2.7:8000", "[::1]"], ["evil.example", "192.0.2.8"]),
    ],
)
def test_a_remote_viewer_still_checks_the_host_header(
    tmp_path: Path, host: str, names: list[str], served: list[str], refused: list[str]
) -> None:
    allowed = remote_host_names(host, names)
    assert "*" not in allowed and set(LOOPBACK_HOSTS) <= set(allowed)
    app = create_app(ViewerSettings(str(build_store(tmp_path / "s.zarr"))), allowed_hosts=allowed)
    client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    for name in served:
        assert client.get("/api/slides", headers={"host": name}).status_code == 200, name
    for name in refused:
        response = client.get("/api/slides", headers={"host": name})
        assert response.status_code == 400 and "own host names" in response.json()["error"], name


@pytest.mark.parametrize("host", ["127.0.0.2", "::1"])
def test_a_loopback_viewer_on_another_loopback_address_answers_to_its_own_name(tmp_path: Path, host: str) -> None:
    """Re-probe case M: `view --host 127.0.0.2` refused its own Host header."""
    allowed = loopback_host_names(host)
    app = create_app(ViewerSettings(str(build_store(tmp_path / "s.zarr"))), allowed_hosts=allowed)
    client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    own = f"[{host}]:8000" if ":" in host else f"{host}:8000"
    for name in (own, "localhost:8000", "127.0.0.1"):
        assert client.get("/api/slides", headers={"host": name}).status_code == 200, name
    assert client.get("/api/slides", headers={"host": "evil.example"}).status_code == 400
