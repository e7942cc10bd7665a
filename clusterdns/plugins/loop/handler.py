"""The `loop` handler: send one probe to our own listener and watch whether it comes back.

The probe task (started by a start-up hook) sends `<random>.<random>.<zone> HINFO` to the block's
own listener, once a second for up to 30 s, until an attempt gets any reply. Meanwhile the handler
counts how often that exact question passes through it; the third sighting means the probe left
through an upstream and came back. Unlike CoreDNS the process never exits (spec §23 Q24): the
looping upstreams are quarantined through the block's UpstreamRegistry objects, the detection is
logged at ERROR, published as a metric and a `/ready` note, and the probe itself gets SERVFAIL.

This module opens a socket only for the probe's own exchange and never imports `forward`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final

from dnslib import DNSHeader, DNSQuestion, DNSRecord

from clusterdns.chain.handler import Handler, next_or_failure
from clusterdns.chain.request import Request
from clusterdns.chain.setup import UpstreamRegistry
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.metrics import Gauge

NAME: Final = "loop"
PROBE_WINDOW_S: Final = 30.0
"""How long after start-up the probe is retried (and the handler watches for it)."""
RETRY_S: Final = 1.0
"""Pause between two failed probe attempts."""
ATTEMPT_TIMEOUT_S: Final = 2.0
"""How long one attempt waits for a reply (miekg/dns's default read timeout)."""
SIGHTINGS: Final = 3
"""The sighting of the probe name that means a loop (the first one is our own probe)."""
PROBE_BITS: Final = 62
"""Random bits in each of the probe's two labels (CoreDNS: two random 62-bit integers)."""
TROUBLESHOOTING: Final = "https://coredns.io/plugins/loop#troubleshooting"

log = logging.getLogger(__name__)

Target = tuple[str, int]
Exchange = Callable[[str, int, bytes, float], Awaitable[bytes]]
"""(host, port, query wire, timeout) -> reply wire; raises OSError or TimeoutError."""
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def probe_name(zone: str) -> str:
    """Return an unguessable probe name below `zone`: two 62-bit random decimal labels."""
    first, second = secrets.randbits(PROBE_BITS), secrets.randbits(PROBE_BITS)
    return f"{first}.{second}." + ("" if zone == "." else zone)


def host_port(addr: tuple[str, int]) -> str:
    """`host:port`, with IPv6 hosts in brackets (Go's net.JoinHostPort)."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def probe_host(listen: Sequence[str]) -> str:
    """The probe's address: the first listen address, or loopback for the wildcard."""
    first = listen[0] if listen else ""
    if first in ("", "0.0.0.0"):
        return "127.0.0.1"
    if first == "::":
        return "::1"
    return first


class _ReplyCatcher(asyncio.DatagramProtocol):
    def __init__(self, query_id: bytes, done: asyncio.Future[bytes]) -> None:
        self.query_id = query_id
        self.done = done

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if data[:2] == self.query_id and not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


async def udp_exchange(host: str, port: int, query: bytes, timeout_s: float) -> bytes:
    """Send `query` over UDP and return the first reply carrying its ID.

    Raises:
        OSError: the socket failed (e.g. ICMP port unreachable).
        TimeoutError: no reply within `timeout_s`.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _ReplyCatcher(query[:2], done), remote_addr=(host, port)
    )
    try:
        transport.sendto(query)
        async with asyncio.timeout(timeout_s):
            return await done
    finally:
        transport.close()


@dataclass(slots=True)
class LoopSeries:
    """`clusterdns_loop_detected{zone,upstream}`, shared by every `loop` of one Metrics object.

    A series stays while any live Loop instance reported it (a reload re-probes; the old
    instance's release must not remove what the new one found).
    """

    detected: Gauge
    owners: dict[tuple[str, ...], int] = field(default_factory=dict)

    def hold(self, key: tuple[str, str]) -> None:
        """Set the series to 1 and count one more owner."""
        self.owners[key] = self.owners.get(key, 0) + 1
        self.detected.set(key, 1)

    def release(self, key: tuple[str, str]) -> None:
        """Drop one owner; remove the series with the last."""
        left = self.owners.get(key, 0) - 1
        if left > 0:
            self.owners[key] = left
            return
        self.owners.pop(key, None)
        self.detected.remove(key)


class Loop:
    """Detect a forwarding loop with a start-up probe; quarantine the upstream, never exit.

    Loop-thread only.
    """

    name: ClassVar[str] = NAME

    def __init__(
        self,
        *,
        zone: str,
        target: Target | None,
        registries: Sequence[UpstreamRegistry],
        series: LoopSeries,
        nxt: Handler | None,
        bound: Sequence[tuple[str, int]] = (),
        qname: str | None = None,
        exchange: Exchange = udp_exchange,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.zone = zone
        self.qname = qname if qname is not None else probe_name(zone)
        """The probe name (lower case, absolute)."""
        self.target = target
        """Where the probe goes; None for a port-0 key, whose real port comes from `bound`."""
        self.bound: Sequence[tuple[str, int]] = bound
        """The block's live list of bound (address, port) listeners (BlockSettings.bound)."""
        self.registries = registries
        """The block's live `upstreams` list; `forward` lines register after this setup."""
        self.series = series
        self.next = nxt
        self.exchange = exchange
        self.clock = clock
        self.sleep = sleep
        self.seen = 0
        """Sightings of the probe in the current attempt."""
        self.attempts = 0
        self.quarantined: list[str] = []
        """Upstreams taken out of service, in the order found."""
        self.detected = False
        self._watching: str | None = self.qname
        self._held: list[tuple[str, str]] = []
        self._task: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()
        """Set once the probe task has ended (a reply, the deadline, or cancellation)."""

    # -- the query path --------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """Whether the handler still watches for its probe."""
        return self._watching is not None

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        """Count sightings of the probe; answer SERVFAIL from the third on; pass the rest on."""
        if req.name == self._watching and req.qtype == rc.HINFO:
            self.seen += 1
            if self.seen >= SIGHTINGS:
                self._loop_detected(req)
                return rc.SERVFAIL
        return await next_or_failure(NAME, self.next, req, w)

    def _loop_detected(self, req: Request) -> None:
        found: list[tuple[UpstreamRegistry, str]] = []
        for registry in self.registries:
            for upstream in registry.upstreams_for(self.qname):
                if upstream not in self.quarantined:
                    found.append((registry, upstream))
        if self.detected and not found:
            return
        self.detected = True
        names = list(dict.fromkeys(u for _, u in found))
        reason = f'forwarding loop detected for zone "{self.zone}" (probe "HINFO {self.qname}")'
        for registry, upstream in found:
            registry.quarantine(upstream, reason)
        self.quarantined.extend(names)
        for key in [(self.zone, u) for u in names] or [(self.zone, "")]:
            if key not in self._held:
                self.series.hold(key)
                self._held.append(key)
        if names:
            where = f"; upstream{'s' if len(names) > 1 else ''} {', '.join(names)} quarantined"
        else:
            where = "; no upstream known to quarantine"
        log.error(
            'Loop (%s -> %s) detected for zone "%s", see %s. Query: "HINFO %s"%s',
            host_port(req.remote),
            host_port(self.target) if self.target is not None else "?",
            self.zone,
            TROUBLESHOOTING,
            self.qname,
            where,
        )

    def ready_note(self) -> str:
        """The `/ready` body lines for a detected loop ("" when none); never a failure."""
        if not self.detected:
            return ""
        if not self.quarantined:
            return f'loop detected for zone "{self.zone}": no upstream known to quarantine'
        return "\n".join(
            f'loop detected: upstream {u} quarantined for zone "{self.zone}"'
            for u in self.quarantined
        )

    # -- the probe -------------------------------------------------------------------------------
    def set_target(self, host: str, port: int) -> None:
        """Send the probe to `host:port` from now on (the bound port of a port-0 key)."""
        self.target = (host, port)

    def disable(self) -> None:
        """Stop watching for the probe, for good."""
        self._watching = None

    def probe_query(self) -> bytes:
        """A fresh probe query: random ID, RD set, `HINFO IN` for the probe name."""
        header = DNSHeader(id=secrets.randbits(16), rd=1)
        return bytes(DNSRecord(header, q=DNSQuestion(self.qname, rc.HINFO, rc.IN)).pack())

    async def attempt(self) -> bool:
        """Send the probe once; return whether any reply came back."""
        self.attempts += 1
        target = self.target
        if target is None and self.bound:
            address, port = self.bound[0]
            target = (probe_host([address]), port)
        if target is None:
            return False
        try:
            await self.exchange(target[0], target[1], self.probe_query(), ATTEMPT_TIMEOUT_S)
        except (OSError, TimeoutError):
            return False
        return True

    async def run(self) -> None:
        """Probe until one attempt gets a reply or the window closes, then disable."""
        deadline = self.clock() + PROBE_WINDOW_S
        try:
            while self.clock() < deadline:
                if await self.attempt():
                    return
                self.seen = 0
                await self.sleep(RETRY_S)
        finally:
            self.disable()
            self.finished.set()

    async def start(self) -> None:
        """Start-up hook: start the probe task (DNS listeners open after the hooks)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Shutdown hook: cancel the probe task and withdraw this instance's metric series."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        self.disable()
        for key in self._held:
            self.series.release(key)
        self._held.clear()
