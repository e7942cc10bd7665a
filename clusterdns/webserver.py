"""Minimal HTTP/1.1 side listeners for /health, /ready and /metrics.

One listener per address, shared by every block and plugin that routes a path on it. Requests are
bounded (8 KiB of request head, 5 s to send it) and answered with `Connection: close`, which is
all probes and Prometheus need. Listeners live on the event loop and never block it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from clusterdns.errors import ServerError

log = logging.getLogger("clusterdns.http")

Response = tuple[int, str, bytes]
Route = Callable[[str], Awaitable[Response]]
"""Called with the request method; returns (status, content type, body)."""

MAX_HEAD = 8192
READ_TIMEOUT_S = 5.0
REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable", 400: "Bad Request"}


def split_address(address: str) -> tuple[str | None, int]:
    """`host:port` -> (host or None for all interfaces, port).

    Raises:
        ValueError: not host:port.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"address {address!r} is not host:port")
    host = host.strip("[]")
    return (host or None), int(port)


@dataclass
class HTTPListener:
    """One bound address with its routes."""

    address: str
    routes: dict[str, Route] = field(default_factory=dict)
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when the address asked for port 0)."""
        if self.server is None or not self.server.sockets:
            return 0
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start serving.

        Raises:
            ServerError: the address cannot be bound.
        """
        if self.server is not None:
            return
        host, port = split_address(self.address)
        try:
            self.server = await asyncio.start_server(
                self._serve,
                host=host,
                port=port,
                reuse_address=True,
                family=socket.AF_UNSPEC,
            )
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise ServerError(f"cannot listen on {self.address}: {reason}") from exc

    async def stop(self) -> None:
        """Stop listening; connections in flight finish on their own."""
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            status, ctype, body, method = await self._dispatch(head)
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ConnectionError,
        ):
            writer.close()
            return
        reason = REASONS.get(status, "OK")
        head_out = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(ConnectionError):
            writer.write(head_out if method == "HEAD" else head_out + body)
            async with asyncio.timeout(READ_TIMEOUT_S):
                await writer.drain()
        with contextlib.suppress(ConnectionError, TimeoutError):
            writer.close()

    async def _dispatch(self, head: bytes) -> tuple[int, str, bytes, str]:
        if len(head) > MAX_HEAD:
            return 400, "text/plain", b"request too large\n", "GET"
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        if len(parts) != 3:
            return 400, "text/plain", b"bad request\n", "GET"
        method, target = parts[0], parts[1]
        path = target.split("?", 1)[0]
        route = self.routes.get(path)
        if route is None:
            return 404, "text/plain; charset=utf-8", b"404 page not found\n", method
        status, ctype, body = await route(method)
        return status, ctype, body, method


class HTTPRegistry:
    """Listeners by address; routes from several blocks may share one."""

    def __init__(self) -> None:
        self.listeners: dict[str, HTTPListener] = {}

    def route(self, address: str, path: str, handler: Route) -> HTTPListener:
        """Attach `handler` to `path` on the listener for `address` (created if needed)."""
        listener = self.listeners.get(address)
        if listener is None:
            listener = self.listeners[address] = HTTPListener(address)
        listener.routes[path] = handler
        return listener

    async def start(self) -> None:
        """Bind every listener; on failure, close the ones already bound."""
        try:
            for listener in self.listeners.values():
                await listener.start()
        except ServerError:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close every listener."""
        for listener in self.listeners.values():
            await listener.stop()
