"""The HTTP server of `trackbook serve`: its listening sockets, bound before start-up does
anything, and uvicorn serving the app on them."""

from __future__ import annotations

import errno
import logging
import socket

import uvicorn
from starlette.types import ASGIApp

from trackbook.settings import Settings

STARTUP_FAILURE = 3
"""uvicorn's exit status when the app's start-up fails."""


class CannotListen(Exception):
    """The address or port cannot be listened on; the message is one line naming the
    option and setting that change it."""


def listen(host: str, port: int) -> list[socket.socket]:
    """One bound socket per address `host` resolves to, as uvicorn itself binds them
    (IPv6 ones IPv6-only, so that they do not clash with the IPv4 ones)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound: list[socket.socket] = []
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        for family, kind, protocol, _, address in dict.fromkeys(found):
            listener = socket.socket(family, kind, protocol)
            bound.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
    except OSError as error:
        close(bound)
        raise CannotListen(f"cannot listen on {where}: {_why(error, port)}") from None
    return bound


def _why(error: OSError, port: int) -> str:
    if isinstance(error, socket.gaierror):
        return f"{error.strerror}; choose another host with --host or TRACKBOOK_HOST"
    if error.errno == errno.EADDRINUSE:
        return (
            f"port {port} is in use by another process; stop it, or choose another port "
            "with --port or TRACKBOOK_PORT"
        )
    if error.errno == errno.EACCES:
        return (
            f"not allowed to listen on port {port} (ports below 1024 need privileges); "
            "choose another with --port or TRACKBOOK_PORT"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return (
            "the address is not one of this machine's; choose another with --host or TRACKBOOK_HOST"
        )
    return f"{error.strerror or error}; check --host or TRACKBOOK_HOST and --port or TRACKBOOK_PORT"


def close(sockets: list[socket.socket]) -> None:
    for listener in sockets:
        listener.close()


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started or sockets is None:
            return
        # uvicorn says it is running only on sockets it bound itself
        for listener in sockets:
            host, port = listener.getsockname()[:2]
            shown = f"[{host}]" if listener.family == socket.AF_INET6 else host
            logging.getLogger("uvicorn.error").info(
                "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", shown, port
            )


def run(application: ASGIApp, settings: Settings, sockets: list[socket.socket]) -> int:
    """Serves until stopped; returns the exit status."""
    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    server = _Server(config)
    server.run(sockets=sockets)
    return 0 if server.started else STARTUP_FAILURE
