"""Serving the viewer with uvicorn on a socket we bind ourselves.

Binding first turns "address in use" or a bad host into one clear error line, and lets tests
serve on a free port (port 0) in a thread of their own.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from pcam_scan.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_header_name(host: str) -> str:
    """An address as a Host header names it: IPv6 in brackets, names in lower case."""
    bare = host.strip().strip("[]").lower()
    return f"[{bare}]" if ":" in bare else bare


def loopback_host_names(host: str) -> tuple[str, ...]:
    """The Host header names a loopback viewer answers to: the usual loopback names and the
    address it is bound to (127.0.0.2 is loopback too, and its browser sends that name)."""
    return tuple(dict.fromkeys([*LOOPBACK_HOSTS, host_header_name(host)]))


def remote_host_names(host: str, server_names: list[str]) -> tuple[str, ...]:
    """The Host header names a viewer bound to a non-loopback address answers to: the names
    given, else the bound address (unless it is a wildcard) and this machine's names. The
    loopback names stay, for a proxy on the same machine. Never "*": a DNS-rebinding page must
    still be refused."""
    names = [name.strip().lower() for name in server_names if name.strip()]
    if not names:
        wildcard = host.strip("[]") in ("0.0.0.0", "::", "")
        names = [] if wildcard else [host_header_name(host)]
        names += [socket.gethostname().lower(), socket.getfqdn().lower()]
    return tuple(dict.fromkeys([*names, *LOOPBACK_HOSTS]))


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} must lie in 0..65535")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ConfigError(f"--host {host!r}: {err.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


def make_server(app: Starlette) -> uvicorn.Server:
    """A uvicorn server for `app` (HTTP/1.1 only, no websockets, no lifespan events); run it
    with `server.run(sockets=[sock])` and stop it with `server.should_exit = True`."""
    import uvicorn

    config = uvicorn.Config(app, http="h11", ws="none", lifespan="off", log_level="warning", access_log=False)
    return uvicorn.Server(config)
