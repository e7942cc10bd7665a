"""TCP (RFC 7766): two-byte length framing, pipelined queries answered as they finish.

Timeouts as CoreDNS: 3 s to read the first query, 10 s idle between later ones, 5 s for a
write backlog to drain. A per-connection cap on queries in flight pauses reading; a process-wide
cap on connections refuses new ones. A client that sends slowly or never reads its replies only
ever costs its own connection.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Final, cast

from clusterdns.metrics import Metrics
from clusterdns.server.responder import Responder

READ_TIMEOUT_S: Final = 3.0
IDLE_TIMEOUT_S: Final = 10.0
WRITE_TIMEOUT_S: Final = 5.0
MAX_PIPELINE: Final = 64
DEFAULT_MAX_CONNECTIONS: Final = 20_000
"""Serves a 5,000-node cluster whose nodes each keep a few NodeLocal DNSCache connections."""


@dataclass
class TCPLimits:
    """Tunable TCP bounds (tests shorten the timeouts)."""

    read_timeout_s: float = READ_TIMEOUT_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    write_timeout_s: float = WRITE_TIMEOUT_S
    max_pipeline: int = MAX_PIPELINE
    max_connections: int = DEFAULT_MAX_CONNECTIONS


class ConnectionCount:
    """Open TCP connections across every listener of the process."""

    def __init__(self) -> None:
        self.open = 0


class TCPConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(
        self, responder: Responder, metrics: Metrics, limits: TCPLimits, count: ConnectionCount
    ) -> None:
        self.responder = responder
        self.metrics = metrics
        self.limits = limits
        self.count = count
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.inflight = 0
        self.paused_reading = False
        self.timer: asyncio.TimerHandle | None = None
        self.write_timer: asyncio.TimerHandle | None = None
        self.remote: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.closed = False
        self.eof = False

    # -- lifecycle -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = transport
        if self.count.open >= self.limits.max_connections:
            self.metrics.dropped.inc(("tcp_connections",))
            self.closed = True
            transport.abort()
            return
        self.count.open += 1
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.remote = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        self.local = (str(sock[0]), int(sock[1])) if sock else ("", 0)
        transport.set_write_buffer_limits(high=64 * 1024)
        self._arm(self.limits.read_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.count.open -= 1
        for t in (self.timer, self.write_timer):
            if t is not None:
                t.cancel()

    # -- reading ---------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 2 and not self.closed:
            (length,) = struct.unpack_from("!H", self.buf)
            if len(self.buf) < 2 + length:
                break
            query = bytes(self.buf[2 : 2 + length])
            del self.buf[: 2 + length]
            self._arm(self.limits.idle_timeout_s)
            task = self.responder.submit(query, "tcp", self.remote, self.local, self._send)
            if task is not None:
                self.inflight += 1
                task.add_done_callback(self._done)
            if self.inflight >= self.limits.max_pipeline and not self.paused_reading:
                self.paused_reading = True
                assert self.transport is not None
                self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        # Half-close from the client: finish replies in flight, then close.
        self.eof = True
        if self.inflight == 0 and self.transport is not None:
            self.transport.close()
        return True

    # -- writing ---------------------------------------------------------------------------------
    def _send(self, wire: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(struct.pack("!H", len(wire)) + wire)
        self._arm(self.limits.idle_timeout_s)

    def _done(self, _task: asyncio.Task[None]) -> None:
        self.inflight -= 1
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.paused_reading and self.inflight < self.limits.max_pipeline // 2:
            self.paused_reading = False
            transport.resume_reading()
        if self.inflight == 0 and self.eof:
            transport.close()

    def pause_writing(self) -> None:
        loop = asyncio.get_running_loop()
        if self.write_timer is None:
            self.write_timer = loop.call_later(self.limits.write_timeout_s, self._abort)

    def resume_writing(self) -> None:
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    # -- timers ----------------------------------------------------------------------------------
    def _arm(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(seconds, self._timeout)

    def _timeout(self) -> None:
        self.timer = None
        if self.inflight > 0:
            self._arm(self.limits.idle_timeout_s)
            return
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        self.write_timer = None
        if self.transport is not None:
            self.transport.abort()
