"""UDP: one datagram protocol per bound socket, handing bytes to the listener's responder."""

from __future__ import annotations

import asyncio
from typing import Final, cast

from clusterdns.metrics import Metrics
from clusterdns.server.responder import Responder

MAX_WRITE_BACKLOG: Final = 4 * 1024 * 1024
"""Bytes queued for sending before new replies are shed (an unbounded backlog is a known DoS)."""


class UDPProtocol(asyncio.DatagramProtocol):
    """Receives datagrams for one socket."""

    def __init__(self, responder: Responder, metrics: Metrics) -> None:
        self.responder = responder
        self.metrics = metrics
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's are not subclasses
        sockname = transport.get_extra_info("sockname")
        self.local = (str(sockname[0]), int(sockname[1]))

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        transport = self.transport
        if transport is None:
            return
        remote = (str(addr[0]), int(addr[1]))

        backlog = cast(asyncio.WriteTransport, transport).get_write_buffer_size

        def send(wire: bytes) -> None:
            if backlog() > MAX_WRITE_BACKLOG:
                self.metrics.dropped.inc(("udp_backlog",))
                return
            transport.sendto(wire, addr)

        self.responder.datagram(data, remote, self.local, send)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors for earlier replies: nothing to do."""
