"""TCP (RFC 7766): two-byte length framing, pipelined queries answered as they finish.

Timeouts as CoreDNS: 3 s to read the first query of a connection (and to finish any message once
it started), 10 s idle between queries, 5 s for a write backlog to drain. Bounds (RFC 7766 §10):
caps on connections per client address and across the process refuse new connections; a cap on
queries in flight per connection, and replies the client does not take, pause reading, so a
client that never reads costs at most `MAX_UNSENT` bytes of replies, and only until the write
deadline; a length prefix under 12 bytes ends the connection (as miekg/dns does). A client that
sends slowly, stalls, vanishes or never reads only ever costs its own connection. Every
connection the server refuses or cuts is counted in `clusterdns_dns_dropped_requests_total`.
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
DEFAULT_MAX_CONNECTIONS_PER_CLIENT: Final = 256
"""Far above what one NodeLocal DNSCache (one connection per query in flight) holds at once, far
below what lets one address exhaust the process cap or its file descriptors."""
WRITE_HIGH_WATER: Final = 64 * 1024
"""Bytes queued in the transport above which the write deadline runs and reading pauses."""
MAX_UNSENT: Final = 1024 * 1024
"""Bytes of replies queued for one connection (beyond what the kernel holds) at which it is cut
at once: what queries already in flight can add after reading paused (up to `MAX_PIPELINE`
replies of up to 64 KiB) must not pile up for the whole write deadline."""
MIN_MESSAGE: Final = 12

REASON_CONNECTIONS: Final = "tcp_connections"
REASON_CLIENT_CONNECTIONS: Final = "tcp_client_connections"
REASON_SHORT: Final = "tcp_short"
REASON_READ_TIMEOUT: Final = "tcp_read_timeout"
REASON_WRITE_TIMEOUT: Final = "tcp_write_timeout"
REASON_BACKLOG: Final = "tcp_backlog"


@dataclass
class TCPLimits:
    """Tunable TCP bounds (tests shorten the timeouts)."""

    read_timeout_s: float = READ_TIMEOUT_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    write_timeout_s: float = WRITE_TIMEOUT_S
    max_pipeline: int = MAX_PIPELINE
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    """Open connections one client address may hold (across every listener); 0 = no cap."""


class ConnectionCount:
    """Open TCP connections across every listener of the process, in total and per client."""

    def __init__(self) -> None:
        self.open = 0
        self.per_client: dict[str, int] = {}
        """Open connections by client address (entries go when they reach zero)."""

    def admit(self, client: str, limits: TCPLimits) -> str | None:
        """Count a new connection from `client`, or return the reason it is refused."""
        if self.open >= limits.max_connections:
            return REASON_CONNECTIONS
        held = self.per_client.get(client, 0)
        if 0 < limits.max_connections_per_client <= held:
            return REASON_CLIENT_CONNECTIONS
        self.open += 1
        self.per_client[client] = held + 1
        return None

    def release(self, client: str) -> None:
        """Forget one connection of `client`."""
        self.open -= 1
        held = self.per_client.get(client, 0) - 1
        if held > 0:
            self.per_client[client] = held
        else:
            self.per_client.pop(client, None)


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
        self.pipeline_full = False
        """Reading is paused because `max_pipeline` queries are in flight."""
        self.write_blocked = False
        """Reading is paused because the client does not take its replies."""
        self.reading = True
        self.queries = 0
        self.timer: asyncio.TimerHandle | None = None
        self.write_timer: asyncio.TimerHandle | None = None
        self.remote: tuple[str, int] = ("", 0)
        self.local: tuple[str, int] = ("", 0)
        self.closed = False
        """No longer counted (refused at once, or already lost)."""
        self.eof = False
        """The client half-closed: close once its queries are answered."""
        self.broken = False
        """A length prefix under 12 bytes was read: no more queries are taken."""

    # -- lifecycle -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = transport
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.remote = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        self.local = (str(sock[0]), int(sock[1])) if sock else ("", 0)
        refused = self.count.admit(self.remote[0], self.limits)
        if refused is not None:
            self.metrics.dropped.inc((refused,))
            self.closed = True
            transport.abort()
            return
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self._arm(self.limits.read_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.count.release(self.remote[0])
        for t in (self.timer, self.write_timer):
            if t is not None:
                t.cancel()
        self.timer = self.write_timer = None

    # -- reading ---------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        started = not self.buf
        self.buf += data
        self._process(started)

    def _process(self, started: bool = False) -> None:
        """Hand buffered complete queries to the responder while the connection takes more work.

        It does while fewer than `max_pipeline` queries are in flight and replies drain; the
        rest waits in the buffer (reading is paused meanwhile).
        """
        consumed = False
        while len(self.buf) >= 2 and not (self.closed or self.broken):
            if self.pipeline_full or self.write_blocked:
                return
            (length,) = struct.unpack_from("!H", self.buf)
            if length < MIN_MESSAGE:
                # No DNS message is this short: the stream is not DNS (RFC 1035 §4.2.2 framing).
                # Read no further; answer what is in flight, then close (as miekg/dns does).
                self.metrics.dropped.inc((REASON_SHORT,))
                self.buf.clear()
                self.broken = True
                self._update_reading()
                if self.inflight == 0:
                    self._close()
                return
            if len(self.buf) < 2 + length:
                break
            query = bytes(self.buf[2 : 2 + length])
            del self.buf[: 2 + length]
            consumed = True
            self.queries += 1
            self._arm(self.limits.idle_timeout_s)
            task = self.responder.submit(query, "tcp", self.remote, self.local, self._send)
            if task is not None:
                self.inflight += 1
                task.add_done_callback(self._done)
            if self.inflight >= self.limits.max_pipeline:
                self.pipeline_full = True
                self._update_reading()
        if self.buf and (started or consumed):
            # A message has started: it must be complete within the read deadline, counted
            # from its first byte (later segments do not extend it).
            self._arm(self.limits.read_timeout_s)

    def _partial(self) -> bool:
        """Whether the buffer ends in a message that has not fully arrived."""
        if not self.buf:
            return False
        if len(self.buf) < 2:
            return True
        return len(self.buf) < 2 + int.from_bytes(self.buf[:2], "big")

    def eof_received(self) -> bool | None:
        # Half-close from the client: answer what it sent, then close.
        self.eof = True
        self._update_reading()
        if self.inflight == 0 and not self._queued():
            self._close()
        return True

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        want = not (self.pipeline_full or self.write_blocked or self.eof or self.broken)
        if want != self.reading:
            self.reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()

    # -- writing ---------------------------------------------------------------------------------
    def _send(self, wire: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(struct.pack("!H", len(wire)) + wire)
        if transport.get_write_buffer_size() > MAX_UNSENT:
            self.metrics.dropped.inc((REASON_BACKLOG,))
            transport.abort()
            return
        if self.timer is not None and not self.buf:
            self._arm(self.limits.idle_timeout_s)

    def _done(self, _task: asyncio.Task[None]) -> None:
        self.inflight -= 1
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.pipeline_full and self.inflight < self.limits.max_pipeline // 2:
            self.pipeline_full = False
            self._process()
            self._update_reading()
        if self.inflight == 0 and (self.eof or self.broken) and not self._queued():
            self._close()

    def _queued(self) -> bool:
        """Whether complete queries wait in the buffer (after a pause)."""
        return bool(self.buf) and not self.broken and not self._partial()

    def pause_writing(self) -> None:
        self.write_blocked = True
        self._update_reading()
        if self.write_timer is None:
            loop = asyncio.get_running_loop()
            self.write_timer = loop.call_later(self.limits.write_timeout_s, self._write_timeout)

    def resume_writing(self) -> None:
        self.write_blocked = False
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None
        self._process()
        self._update_reading()

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
        if self._partial() or self.queries == 0:
            # Stalled in the middle of a message, or never sent one (slowloris, half-open).
            self.metrics.dropped.inc((REASON_READ_TIMEOUT,))
        self._close()

    def _close(self) -> None:
        """Close once queued replies are sent; if they cannot be, abort at the write deadline."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        if transport.get_write_buffer_size() > 0 and self.write_timer is None:
            loop = asyncio.get_running_loop()
            self.write_timer = loop.call_later(self.limits.write_timeout_s, self._write_timeout)

    def _write_timeout(self) -> None:
        self.write_timer = None
        if self.transport is not None and not self.closed:
            self.metrics.dropped.inc((REASON_WRITE_TIMEOUT,))
            self.transport.abort()
