"""UDP: one datagram protocol per bound socket, handing bytes to the listener's responder.

The fast path is inlined here because it is the whole cost of most queries: look the bytes after
the ID up in the listener's prepared replies, splice the ID, send, count. Only a miss builds the
client address tuple and the `send` closure the slow path needs.

Bounds: replies queued for sending beyond `MAX_WRITE_BACKLOG` are shed (counted); a query that
advertises an EDNS buffer above `MAX_UDP_REPLY` is treated as advertising `MAX_UDP_REPLY` (as the
`bufsize` plugin would), so no UDP reply is ever larger, whatever a spoofed query asks for.

Each listening socket asks the kernel for a `RECEIVE_BUFFER` receive buffer (deviation D40):
queries that arrive while the event loop is busy elsewhere (a reload's setup, a garbage
collection, a CPU shared with other work) wait in the socket instead of being dropped by the
kernel.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Callable
from typing import Final, cast

from clusterdns.metrics import Metrics
from clusterdns.server.responder import UDP_QUERY_BUFFER, Responder, udp_query

INF: Final = math.inf
MAX_WRITE_BACKLOG: Final = 4 * 1024 * 1024
"""Bytes queued for sending before new replies are shed (an unbounded backlog is a known DoS)."""
RECEIVE_BUFFER: Final = 4 * 1024 * 1024
"""`SO_RCVBUF` asked for on every UDP listening socket, in bytes. CoreDNS keeps the system default,
`net.core.rmem_default` (208 KiB on most Linux systems): a small query takes 832 bytes of it, so
it holds 256 queries, 0.13 s at 2,000 queries/s. Linux caps the request at `net.core.rmem_max`
and doubles it for its bookkeeping (where `rmem_max` allows 4 MiB, 8 MiB is reported and holds
about 10,000 queries; with the common default `rmem_max` of 208 KiB the buffer still doubles,
to 512 queries). It is filled, never preallocated: an idle server's memory does not change."""


def _no_backlog() -> int:
    return 0


def enlarge_receive_buffer(sock: socket.socket) -> int:
    """Ask for a `RECEIVE_BUFFER` receive buffer unless `sock` has one as large; best effort.

    Returns the size the kernel reports afterwards (0 if it cannot be read). A socket that cannot
    take the option keeps what it has: the buffer's size never stops a listener from serving.
    """
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < RECEIVE_BUFFER:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except (OSError, AttributeError):
        return 0


class UDPProtocol(asyncio.DatagramProtocol):
    """Receives datagrams for one socket."""

    def __init__(self, responder: Responder, metrics: Metrics) -> None:
        self.responder = responder
        self.metrics = metrics
        self.transport: asyncio.DatagramTransport | None = None
        self.local: tuple[str, int] = ("", 0)
        self.family = 1
        """The metrics `family` of every client of this socket: 2 on an IPv6 (v6-only) socket."""
        self.backlog: Callable[[], int] = _no_backlog
        self.receive_buffer = 0
        """The socket's receive buffer as the kernel reports it (0: unknown)."""
        self.hits = metrics.fastpath_hits.values
        self.hits.setdefault((), 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's are not subclasses
        sockname = transport.get_extra_info("sockname")
        self.local = (str(sockname[0]), int(sockname[1]))
        self.family = 2 if ":" in self.local[0] else 1
        self.backlog = cast(asyncio.WriteTransport, transport).get_write_buffer_size
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.receive_buffer = enlarge_receive_buffer(sock)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        transport = self.transport
        if transport is None:
            return
        # Queries are read into 512 bytes as CoreDNS does (responder.UDP_QUERY_BUFFER). A live
        # entry (current generation, not expired) is used inline; a stale one goes through
        # `get`, which drops it.
        fastpath = self.responder.fastpath
        key = data[2:UDP_QUERY_BUFFER]
        entry = fastpath.udp.get(key)
        if entry is not None and (
            entry.generation != fastpath.generations[entry.slot]
            or (entry.expires != INF and entry.expires <= fastpath.clock())
        ):
            entry = fastpath.get(key)
        if entry is not None:
            if self.backlog() > MAX_WRITE_BACKLOG:
                self.metrics.dropped.inc(("udp_backlog",))
                return
            tail = entry.next_tail() if entry.tails else entry.tail
            transport.sendto(data[:2] + tail, addr)
            self.hits[()] += 1
            hook = entry.on_hit
            if hook is not None:
                hook("udp", self.family)
            return
        self._miss(data[:UDP_QUERY_BUFFER], addr, transport)

    def _miss(
        self, data: bytes, addr: tuple[str | int, ...], transport: asyncio.DatagramTransport
    ) -> None:
        capped = udp_query(data)
        if capped is not data:
            # A query advertising more than MAX_UDP_REPLY was answered, and its reply stored,
            # as the capped query: look that up before running the chain.
            entry = self.responder.fastpath.get(capped[2:])
            if entry is not None:
                if self.backlog() > MAX_WRITE_BACKLOG:
                    self.metrics.dropped.inc(("udp_backlog",))
                    return
                transport.sendto(capped[:2] + entry.next_tail(), addr)
                self.responder.replayed(entry, "udp", self.family)
                return
        remote = (str(addr[0]), int(addr[1]))
        backlog = self.backlog
        data = capped

        def send(wire: bytes) -> None:
            if backlog() > MAX_WRITE_BACKLOG:
                self.metrics.dropped.inc(("udp_backlog",))
                return
            transport.sendto(wire, addr)

        self.responder.submit(data, "udp", remote, self.local, send)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors for earlier replies: nothing to do."""
