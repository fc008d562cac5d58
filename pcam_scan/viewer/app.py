"""The viewer's web app (Starlette): pages, the slide list API, deep-zoom tiles, lesion overlays.

Requests name slides only by store id; a malformed request is a 400, an unknown slide, level or
tile a 404, each with a one-line JSON `{"error": ...}`, never a traceback; the slide page itself,
opened by people, answers an unknown slide with an HTML page that links back to the list. Every
request is one line on the access logger (`ACCESS_LOG`) (method, path, status, ms); every
refused request one warning on `pcam_scan.viewer` with its cause, and a bug its traceback. Only GET (and HEAD)
exist: the viewer never writes. Tile URLs carry the slide's version token (`?v=`): a tile asked
for with the current token of a complete slide is cacheable for good (`immutable`); anything else
is revalidated against its ETag.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pcam_scan.errors import ConfigError, PcamScanError, StoreError
from pcam_scan.store import validate_slide_id
from pcam_scan.store.validation import DamagedSlideError
from pcam_scan.viewer.catalog import SlideCatalog, SlideView, ViewerSettings, parse_threshold
from pcam_scan.viewer.isolation import SlideBusyError, SlideGate, SlideStalledError
from pcam_scan.viewer.server import LOOPBACK_HOSTS
from pcam_scan.viewer.tiles import heatmap_tile_png, qc_tile_png

WEB_DIR = Path(__file__).resolve().parent / "web"
OPENSEADRAGON_DIR = WEB_DIR / "node_modules" / "openseadragon" / "build" / "openseadragon"
NPM_INSTALL_HINT = "npm install --prefix pcam_scan/viewer/web"

_LEVEL_RE = re.compile(r"^[0-9]{1,4}$")
_TILE_RE = re.compile(r"^([0-9]{1,9})_([0-9]{1,9})\.([a-z]{3,4})$")
IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "no-cache"
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]
ACCESS_LOG = logging.getLogger("pcam_scan.viewer.access")
ERROR_LOG = logging.getLogger("pcam_scan.viewer")
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        b"script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
)


def create_app(settings: ViewerSettings, allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS) -> Starlette:
    """The viewer over one store (opened read-only now: a bad store fails here, not later)."""
    store_gate = SlideGate(settings.reads_per_slide, settings.read_timeout_s, thread_name="viewer-store-read")
    catalog = SlideCatalog(settings, store_gate)
    api = _Api(catalog)
    gated = _gated(SlideGate(settings.reads_per_slide, settings.read_timeout_s))
    routes = [
        Route("/", lambda request: FileResponse(WEB_DIR / "index.html")),
        Route("/slides/{slide_id}", api.viewer_page),
        Route("/api/slides", api.slide_list),
        Route("/api/slides/{slide_id}", gated(api.slide_info)),
        Route("/api/slides/{slide_id}/slide.dzi", gated(api.slide_dzi)),
        Route("/api/slides/{slide_id}/slide_files/{level}/{tile}", gated(api.slide_tile)),
        Route("/api/slides/{slide_id}/heatmap.dzi", gated(api.heatmap_dzi)),
        Route("/api/slides/{slide_id}/heatmap_files/{level}/{tile}", gated(api.heatmap_tile)),
        Route("/api/slides/{slide_id}/qc_files/{level}/{tile}", gated(api.qc_tile)),
        Route("/api/slides/{slide_id}/lesions", gated(api.lesions)),
        Route("/api/slides/{slide_id}/reference", gated(api.reference)),
        Route("/api/slides/{slide_id}/probe", gated(api.probe)),
        Mount("/static", StaticFiles(directory=WEB_DIR / "static")),
        Mount("/vendor/openseadragon", StaticFiles(directory=OPENSEADRAGON_DIR, check_dir=False)),
    ]
    handlers: Mapping[Any, ExceptionHandler] = {
        HTTPException: _http_error,
        ConfigError: _error_json(400),
        DamagedSlideError: _error_json(409),  # shown as damaged; the other slides are served
        SlideBusyError: _error_json(503, {"retry-after": "5"}),  # a stalled slide: only it waits
        SlideStalledError: _error_json(504),
        StoreError: _error_json(404),
        PcamScanError: _error_json(404),
        Exception: _unexpected_error,
    }
    middleware = [Middleware(_AccessLog), Middleware(_Guard, allowed_hosts=allowed_hosts)]
    return Starlette(routes=routes, exception_handlers=handlers, middleware=middleware)


def openseadragon_installed() -> bool:
    return (OPENSEADRAGON_DIR / "openseadragon.min.js").is_file()


class _Api:
    """Request handlers over one catalog (plain functions: the per-slide ones run in a thread
    of their slide's gate, the others in Starlette's thread pool)."""

    def __init__(self, catalog: SlideCatalog) -> None:
        self.catalog = catalog
        self.settings = catalog.settings

    def viewer_page(self, request: Request) -> Response:
        try:
            self._known_id(request)
        except HTTPException as err:
            return _html_error_page(err.status_code, str(err.detail))
        return FileResponse(WEB_DIR / "viewer.html")

    def slide_list(self, request: Request) -> Response:
        return JSONResponse(self.catalog.slide_list(), headers={"cache-control": REVALIDATE})

    def slide_info(self, request: Request) -> Response:
        view = self._view(request)
        return JSONResponse(self.catalog.slide_json(view), headers={"cache-control": REVALIDATE})

    def slide_dzi(self, request: Request) -> Response:
        view = self._view(request)
        return _cached(request, view, view.deep_zoom.dzi_xml("jpeg").encode(), "application/xml")

    def heatmap_dzi(self, request: Request) -> Response:
        view = self._view(request)
        return _cached(request, view, view.deep_zoom.dzi_xml("png").encode(), "application/xml")

    def slide_tile(self, request: Request) -> Response:
        view = self._view(request)
        level, col, row = _tile_address(request, view, "jpeg")
        body = self.catalog.slide_tiles(view).tile_jpeg(level, col, row)
        return _cached(request, view, body, "image/jpeg")

    def heatmap_tile(self, request: Request) -> Response:
        view = self._view(request)
        level, col, row = _tile_address(request, view, "png")
        style = self.settings.style(self._threshold(request))
        body = heatmap_tile_png(self.catalog.pyramid(view), view.deep_zoom, level, col, row, style)
        return _cached(request, view, body, "image/png")

    def qc_tile(self, request: Request) -> Response:
        """The QC layer: one colour per reason (`tiles.QC_RGBA`); clear without QC."""
        view = self._view(request)
        level, col, row = _tile_address(request, view, "png")
        body = qc_tile_png(self.catalog.pyramid(view), view.deep_zoom, level, col, row)
        return _cached(request, view, body, "image/png")

    def lesions(self, request: Request) -> Response:
        view = self._view(request)
        overlay = self.catalog.lesions(view, self._threshold(request))
        body = json.dumps(overlay, allow_nan=False, separators=(",", ":")).encode()
        return _cached(request, view, body, "application/json")

    def reference(self, request: Request) -> Response:
        view = self._view(request)
        body = json.dumps(self.catalog.reference(view), allow_nan=False, separators=(",", ":")).encode()
        return _cached(request, view, body, "application/json")

    def probe(self, request: Request) -> Response:
        view = self._view(request)
        l0_xy = (_coordinate(request, "x"), _coordinate(request, "y"))
        return JSONResponse(self.catalog.probe(view, l0_xy), headers={"cache-control": REVALIDATE})

    def _threshold(self, request: Request) -> float:
        return parse_threshold(request.query_params.get("threshold"), self.settings.default_threshold)

    def _known_id(self, request: Request) -> str:
        slide_id: str = request.path_params["slide_id"]
        try:
            validate_slide_id(slide_id)
        except StoreError as err:
            raise HTTPException(400, str(err)) from None
        if not self.catalog.has_slide(slide_id):
            raise HTTPException(404, f"slide {slide_id!r} is not in the store")
        return slide_id

    def _view(self, request: Request) -> SlideView:
        return self.catalog.view(self._known_id(request))


def _gated(gate: SlideGate) -> Callable[[Callable[[Request], Response]], Callable[[Request], Awaitable[Response]]]:
    """Route handlers that read one slide, run under that slide's places of the gate
    (pcam_scan.viewer.isolation): its stalled reads hold its own places, never the server's."""

    def wrap(handler: Callable[[Request], Response]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            slide_id: str = request.path_params["slide_id"]
            try:
                validate_slide_id(slide_id)  # a place per well-formed id only
            except StoreError as err:
                raise HTTPException(400, str(err)) from None
            return await gate.run(slide_id, lambda: handler(request))

        return endpoint

    return wrap


def _coordinate(request: Request, name: str) -> float:
    """A finite level-0 coordinate from the query string; 400 otherwise."""
    raw = request.query_params.get(name, "")
    try:
        value = float(raw) if len(raw) <= 32 else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise HTTPException(400, f"query parameter {name} must be a level-0 coordinate")
    return value


def _html_error_page(status: int, message: str) -> HTMLResponse:
    """A page for people (the slide pages are opened in a browser), with a way back."""
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>pcam-scan: "
        f"{status}</title><link rel='stylesheet' href='/static/app.css'></head><body>"
        f"<main class='error-page'><h1>{status}: {html.escape(message)}</h1>"
        "<p><a href='/'>&larr; Back to all slides</a></p></main></body></html>"
    )
    return HTMLResponse(page, status_code=status)


def _tile_address(request: Request, view: SlideView, image_format: str) -> tuple[int, int, int]:
    """(level, col, row) from the path; 400 when malformed, 404 when outside the grid."""
    level_text = request.path_params["level"]
    match = _TILE_RE.match(request.path_params["tile"])
    if not _LEVEL_RE.match(level_text) or match is None or match.group(3) != image_format:
        raise HTTPException(400, f"tile address must be LEVEL/COL_ROW.{image_format}")
    level, col, row = int(level_text), int(match.group(1)), int(match.group(2))
    if not view.deep_zoom.has_tile(level, col, row):
        raise HTTPException(404, f"no tile ({col}, {row}) at level {level} of slide {view.slide_id!r}")
    return level, col, row


def _cached(request: Request, view: SlideView, body: bytes, media_type: str) -> Response:
    """The body with an ETag (version + URL); immutable when asked for with the current token
    of a complete slide; a 304 when the client already holds it."""
    query = "&".join(f"{k}={v}" for k, v in sorted(request.query_params.multi_items()))
    digest = hashlib.sha256(f"{view.version}|{request.url.path}|{query}".encode()).hexdigest()[:32]
    etag = f'"{digest}"'
    current = request.query_params.get("v") == view.version and view.complete
    headers = {"etag": etag, "cache-control": IMMUTABLE if current else REVALIDATE}
    if etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    _log_error(request, exc.status_code, str(exc.detail), exc)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _error_json(status: int, headers: Mapping[str, str] | None = None) -> ExceptionHandler:
    async def handler(request: Request, exc: Exception) -> Response:
        _log_error(request, status, str(exc), exc)
        return JSONResponse({"error": str(exc)}, status_code=status, headers=headers)

    return handler


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug, not bad input: logged with its traceback, answered with one line."""
    ERROR_LOG.error("%s %s: 500 %s: %s", request.method, request.url.path, type(exc).__name__, exc, exc_info=exc)
    return JSONResponse({"error": "internal error (logged by the server)"}, status_code=500)


def _log_error(request: Request, status: int, message: str, exc: BaseException) -> None:
    """One warning line per refused request: what was asked, the answer, and the cause."""
    cause = exc.__cause__ or exc.__context__
    because = f" (cause: {type(cause).__name__}: {cause})" if cause is not None else ""
    ERROR_LOG.warning("%s %s: %d %s%s", request.method, request.url.path, status, message, because)


class _AccessLog:
    """One line per request on the access logger (`ACCESS_LOG`): method, path, status, ms."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            ms = (time.perf_counter() - start) * 1000
            ACCESS_LOG.info("%s %s %d %.1f ms", scope["method"], scope["path"], status[0], ms)


class _Guard:
    """Refuses requests whose Host is not an allowed name (a DNS-rebinding page cannot reach a
    viewer on 127.0.0.1), and adds nosniff, no-referrer and a same-origin content security
    policy to every response."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...]) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _host_name(scope) not in self.allowed_hosts:
            response = JSONResponse({"error": "this viewer serves only its own host names"}, status_code=400)
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _host_name(scope: Scope) -> str:
    """The Host header without its port: `127.0.0.1`, `localhost`, `[::1]`."""
    host: str = dict(scope["headers"]).get(b"host", b"").decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.split(":", 1)[0]
