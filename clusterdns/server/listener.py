"""One DNS listener: UDP and TCP sockets on one (address, port), IPv4 and IPv6.

Sockets are bound by `bind()` before anything serves, so a port in use fails start-up cleanly and
tests can ask for port 0 and read the port back. The wildcard address binds 0.0.0.0 and `::`
(v6-only) on the same port, so client addresses arrive unmapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket

from clusterdns.chain.build import ListenKey
from clusterdns.errors import ServerError
from clusterdns.metrics import Metrics
from clusterdns.server.responder import Responder
from clusterdns.server.tcp import ConnectionCount, TCPConnection, TCPLimits
from clusterdns.server.udp import UDPProtocol

_EPHEMERAL_RETRIES = 20


def server_label(key: ListenKey) -> str:
    """The metrics `server` label: `dns://:53`, or `dns://127.0.0.1:53` for a bound address."""
    scheme, addr, port = key
    host = f"[{addr}]" if ":" in addr else addr
    return f"{scheme}://{host}:{port}"


class DNSListener:
    """UDP and TCP on one address and port, feeding one responder."""

    def __init__(
        self,
        key: ListenKey,
        responder: Responder,
        metrics: Metrics,
        limits: TCPLimits,
        connections: ConnectionCount,
    ) -> None:
        self.key = key
        self.responder = responder
        self.metrics = metrics
        self.limits = limits
        self.connections = connections
        self.socks: list[tuple[socket.socket, bool]] = []
        self.udp: list[asyncio.DatagramTransport] = []
        self.tcp: list[asyncio.Server] = []
        self.conns: set[TCPConnection] = set()
        self.port = key[2]

    # -- binding ---------------------------------------------------------------------------------
    def bind(self) -> None:
        """Bind every socket.

        Raises:
            ServerError: the address or port cannot be bound (e.g. already in use).
        """
        _, addr, port = self.key
        families = (
            [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]
            if addr == ""
            else [(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)]
        )
        attempts = _EPHEMERAL_RETRIES if port == 0 else 1
        for attempt in range(attempts):
            try:
                self._bind_all(families, port)
                return
            except OSError as exc:
                self.close_sockets()
                if port == 0 and exc.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                    continue
                where = f"{addr}:{self.port}" if addr else f":{self.port}"
                raise ServerError(f"listen {where}: bind: {exc.strerror or exc}") from exc

    def _bind_all(self, families: list[tuple[socket.AddressFamily, str]], port: int) -> None:
        chosen = port
        for index, (family, host) in enumerate(families):
            for is_tcp in (False, True):
                kind = socket.SOCK_STREAM if is_tcp else socket.SOCK_DGRAM
                try:
                    sock = socket.socket(family, kind)
                except OSError as exc:
                    if (
                        family == socket.AF_INET6
                        and index > 0
                        and exc.errno in (errno.EAFNOSUPPORT,)
                    ):
                        break
                    raise
                try:
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    if is_tcp:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((host, chosen))
                except OSError as exc:
                    sock.close()
                    if (
                        family == socket.AF_INET6
                        and len(families) > 1
                        and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
                    ):
                        break
                    raise
                sock.setblocking(False)
                if chosen == 0:
                    chosen = int(sock.getsockname()[1])
                self.socks.append((sock, is_tcp))
        self.port = chosen

    def close_sockets(self) -> None:
        """Close sockets that were bound but never started."""
        for sock, _ in self.socks:
            sock.close()
        self.socks.clear()

    # -- serving ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start serving on the bound sockets."""
        loop = asyncio.get_running_loop()
        for sock, is_tcp in self.socks:
            if is_tcp:
                sock.listen(1024)
                server = await loop.create_server(self._connection, sock=sock)
                self.tcp.append(server)
            else:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: UDPProtocol(self.responder, self.metrics), sock=sock
                )
                self.udp.append(transport)
        self.socks.clear()

    def _connection(self) -> TCPConnection:
        return TrackedConnection(self)

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, answer queries in flight (up to `grace_s`), then close everything."""
        for server in self.tcp:
            server.close()
        await self.responder.drain(grace_s)
        for transport in self.udp:
            transport.close()
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()
        for server in self.tcp:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self.udp.clear()
        self.tcp.clear()


class TrackedConnection(TCPConnection):
    """A TCP connection that its listener can close on shutdown."""

    def __init__(self, listener: DNSListener) -> None:
        super().__init__(
            listener.responder, listener.metrics, listener.limits, listener.connections
        )
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.closed:
            self.listener.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.listener.conns.discard(self)
