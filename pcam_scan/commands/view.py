"""`pcam-scan view STORE`: browse a heatmap store in a web browser (slide list and a deep-zoom
viewer with the heatmap over the slide). Binds 127.0.0.1 unless --host says otherwise."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pcam_scan.commands.options import add_slide_backend_option
from pcam_scan.commands.render import add_overlay_options


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "view",
        help="serve a web viewer of a heatmap store (slide list, heatmap over the slide)",
        description="Serve a read-only web viewer of a heatmap store: a sortable slide list "
        "with diagnoses, and per slide a deep-zoom view with the heatmap, lesion outlines and "
        "detections over the slide. Slides are found at the paths recorded in the store, or in "
        "--slides DIR when they moved.",
    )
    parser.add_argument("store", metavar="STORE", help="heatmap store (folder or URL)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; any other address also needs --allow-remote)",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help=(
            "really listen on the non-loopback --host: the viewer has no login, so anyone who can reach it sees the "
            "slides (see docs/viewer.md: put it behind an authenticating proxy instead)"
        ),
    )
    parser.add_argument(
        "--server-name",
        action="append",
        default=[],
        metavar="NAME",
        help=(
            "with --allow-remote: a name clients use to reach the viewer (its Host header); repeatable (default: "
            "the --host address and this machine's host names)"
        ),
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    parser.add_argument(
        "--annotations",
        metavar="DIR",
        type=Path,
        help=(
            "reference annotations (ASAP XML, GeoJSON, NCRF JSON named after the slides), drawn as a layer of their own"
        ),
    )
    parser.add_argument(
        "--patients",
        metavar="FILE",
        type=Path,
        help="CSV slide_id,patient,node: the slide list groups slides by patient with each one's pN stage",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no access log (one line per request on stderr); errors are still logged"
    )
    add_overlay_options(parser)
    add_slide_backend_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcam_scan.errors import ConfigError
    from pcam_scan.viewer.app import NPM_INSTALL_HINT, create_app, openseadragon_installed
    from pcam_scan.viewer.catalog import ViewerSettings
    from pcam_scan.viewer.server import (
        bind_socket,
        is_loopback,
        loopback_host_names,
        make_server,
        remote_host_names,
    )

    if not openseadragon_installed():
        raise ConfigError(f"the viewer's OpenSeadragon is not installed; run: {NPM_INSTALL_HINT}")
    settings = ViewerSettings(
        store_uri=args.store,
        slides_dir=args.slides,
        default_threshold=args.threshold,
        colormap=args.colormap,
        annotations_dir=args.annotations,
        slide_backend=args.slide_backend,
        patients_file=args.patients,
    )
    loopback = is_loopback(args.host)
    if not loopback and not args.allow_remote:
        raise ConfigError(
            f"--host {args.host} is not a loopback address: the viewer has no login, so anyone who can "
            "reach this machine would see the slides; add --allow-remote to mean it, or keep 127.0.0.1 "
            "behind an authenticating proxy (docs/viewer.md)"
        )
    if args.server_name and loopback:
        raise ConfigError("--server-name applies only with a non-loopback --host and --allow-remote")
    app = create_app(
        settings,
        allowed_hosts=loopback_host_names(args.host) if loopback else remote_host_names(args.host, args.server_name),
    )
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if not loopback:
        print(
            f"pcam-scan view: listening on {args.host} (--allow-remote): anyone who can reach it can view the "
            f"slides; Host names served: {', '.join(remote_host_names(args.host, args.server_name))}",
            file=sys.stderr,
        )
    print(f"pcam-scan view: {args.store} at http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    with logging_to_stderr(quiet=args.quiet):
        make_server(app).run(sockets=[sock])
    return 0


@contextmanager
def logging_to_stderr(quiet: bool) -> Iterator[None]:
    """While serving: the viewer's access lines and errors on stderr (`pcam-scan view: ...`);
    quiet keeps the errors only. The handler goes when the server stops (no global leftovers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pcam-scan view: %(message)s"))
    logger = logging.getLogger("pcam_scan.viewer")
    access = logging.getLogger("pcam_scan.viewer.access")
    saved = (logger.level, logger.propagate, access.level)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    access.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        access.setLevel(saved[2])
