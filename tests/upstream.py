"""A scriptable DNS upstream on loopback for tests: UDP and TCP (or TLS) on one port, via dnslib.

By default it answers like the spec's reference upstream (§0.4): `db.example.com. 300 IN A
192.0.2.50`, `example.com. 3600 IN A 93.184.215.14`, NODATA or NXDOMAIN with an SOA otherwise,
flags `qr rd ra`. Each query is handled by the steps of the newest matching rule (`on`), so a test
can make the upstream delay, wait for an event, drop, truncate, answer SERVFAIL/REFUSED, send
spoofed replies (wrong ID, wrong question, from another port) before or instead of the real one,
or relay the query to another address (to build forwarding loops). Every query received is
recorded (ID, source address and port, transport) and can be awaited (`wait_for`), so tests
synchronise on events, never on sleeps.

    async with scripted_upstream() as up:
        up.on(Drop(), qname="example.com.", times=1)     # drop the first query for the name
        ...                                              # query through the server under test
        first, second = await up.wait_for(2)             # both attempts arrived

Run as a script (e.g. inside a network namespace) it serves until SIGTERM or SIGINT and prints
`listening on HOST:PORT` once both sockets are bound:

    python -m tests.upstream --host 127.0.0.1 --port 53 [--record RR]... [--rcode NAME] [--drop]

This module imports only the standard library and dnslib, so it also runs as a plain file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, cast

from dnslib import CLASS, EDNS0, NS, QTYPE, RCODE, RR, DNSHeader, DNSQuestion, DNSRecord

DEFAULT_RECORDS: Final = (
    "db.example.com. 300 IN A 192.0.2.50",
    "example.com. 3600 IN A 93.184.215.14",
)
DEFAULT_SOAS: Final = (
    "example.com. 3600 IN SOA ns.example.com. hostmaster.example.com. 2024010101 7200 3600 "
    "1209600 300",
    ". 86400 IN SOA a.root-servers.net. nstld.verisign-grs.com. 2024010101 1800 900 604800 86400",
)
POISON: Final = "203.0.113.66"
"""The address spoofed replies carry; it must never reach a client."""
REPLY_EDNS_SIZE: Final = 1232
FORWARD_TIMEOUT_S: Final = 5.0
STOP_TIMEOUT_S: Final = 5.0


# -- zone data -----------------------------------------------------------------------------------


class Zone:
    """Records the upstream knows, and the SOAs used for negative answers."""

    def __init__(
        self, records: Iterable[str] = DEFAULT_RECORDS, soas: Iterable[str] = DEFAULT_SOAS
    ) -> None:
        self.records: list[RR] = []
        self.soas: list[RR] = []
        self.add(*records)
        for line in soas:
            self.soas.extend(RR.fromZone(line))

    def add(self, *lines: str) -> None:
        """Add records written as zone-file lines."""
        for line in lines:
            self.records.extend(RR.fromZone(line))

    def soa_for(self, name: str) -> list[RR]:
        """The SOA of the closest enclosing zone (none if no SOA covers `name`)."""
        best: RR | None = None
        for soa in self.soas:
            owner = str(soa.rname).lower()
            if (owner == "." or name == owner or name.endswith("." + owner)) and (
                best is None or len(owner) > len(str(best.rname))
            ):
                best = soa
        return [best] if best is not None else []

    def lookup(self, qname: str, qtype: int) -> tuple[int, list[RR], list[RR]]:
        """(rcode, answer, authority) for a question; answer owners keep `qname`'s case."""
        name = qname.lower()
        if name == "." and qtype == QTYPE.NS:
            return RCODE.NOERROR, [RR(qname, QTYPE.NS, rdata=NS("a.root-servers.net."))], []
        owned = [rr for rr in self.records if str(rr.rname).lower() == name]
        below = any(str(rr.rname).lower().endswith("." + name) for rr in self.records)
        if not owned and not below:
            return RCODE.NXDOMAIN, [], self.soa_for(name)
        answer = [rr for rr in owned if rr.rtype == qtype or qtype == QTYPE.ANY]
        if not answer:
            answer = [rr for rr in owned if rr.rtype == QTYPE.CNAME]
        if not answer:
            return RCODE.NOERROR, [], self.soa_for(name)
        return (
            RCODE.NOERROR,
            [RR(qname, rr.rtype, rr.rclass, rr.ttl, rr.rdata) for rr in answer],
            [],
        )


# -- what a query gets: steps --------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """Reply and stop. Without arguments: from the zone. `rcode` alone: that rcode, no records."""

    rcode: str | None = None
    records: tuple[str, ...] | None = None
    """Answer records as zone-file lines (owner names as written); None = from the zone."""
    aa: bool = False
    ra: bool = True


def servfail() -> Answer:
    """Answer SERVFAIL without records."""
    return Answer(rcode="SERVFAIL")


def refused() -> Answer:
    """Answer REFUSED without records."""
    return Answer(rcode="REFUSED")


@dataclass(frozen=True)
class Drop:
    """Send nothing (more) and stop."""


@dataclass(frozen=True)
class Delay:
    """Wait before the next step (the behaviour being tested, never a synchronisation)."""

    seconds: float


@dataclass(frozen=True, eq=False)
class Wait:
    """Wait until the test sets `event`."""

    event: asyncio.Event


@dataclass(frozen=True)
class Truncate:
    """Over UDP reply with TC set and no records; over TCP answer in full. Stops."""


@dataclass(frozen=True)
class SpoofID:
    """Send a poisoned reply with the right question but a wrong ID; then go on."""

    address: str = POISON


@dataclass(frozen=True)
class SpoofQuestion:
    """Send a poisoned reply with the right ID but another question; then go on."""

    qname: str = "spoofed.example."
    address: str = POISON


@dataclass(frozen=True)
class SpoofPort:
    """Send a poisoned, otherwise correct reply from another UDP port; then go on."""

    address: str = POISON


@dataclass(frozen=True)
class ForwardTo:
    """Relay the query over UDP to HOST:PORT and send back whatever comes back. Stops."""

    host: str
    port: int
    timeout_s: float = FORWARD_TIMEOUT_S


Step = Answer | Drop | Delay | Wait | Truncate | SpoofID | SpoofQuestion | SpoofPort | ForwardTo


# -- what was received ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One query as the upstream saw it."""

    index: int
    """Arrival order, from 0."""
    id: int
    qname: str
    """As written by the sender (case kept)."""
    qtype: str
    """The type mnemonic (`TYPE<n>` when dnslib has none)."""
    qtype_code: int
    qclass: str
    transport: str
    """`udp`, `tcp` or `tls`."""
    source: tuple[str, int]
    rd: bool
    cd: bool
    edns_size: int | None
    """The EDNS buffer size, or None without an OPT record."""
    do: bool
    wire: bytes = field(repr=False)

    @property
    def probe(self) -> bool:
        """Whether this is a health probe (`. IN NS`)."""
        return self.qname == "." and self.qtype == "NS"

    @property
    def msg(self) -> DNSRecord:
        """The query, parsed."""
        return DNSRecord.parse(self.wire)


@dataclass
class Rule:
    """Steps for the queries that match; the newest matching rule wins."""

    steps: tuple[Step, ...]
    qname: str | None = None
    qtype: str | None = None
    transport: str | None = None
    probe: bool | None = None
    times: int | None = None
    """Queries left for this rule; None = unlimited."""

    def matches(self, q: Received) -> bool:
        """Whether the rule applies to `q`."""
        return (
            (self.qname is None or self.qname.lower() == q.qname.lower())
            and (self.qtype is None or self.qtype == q.qtype)
            and (self.transport is None or self.transport == q.transport)
            and (self.probe is None or self.probe == q.probe)
            and (self.times is None or self.times > 0)
        )


Send = Callable[[bytes], None]


def _mnemonic(value: object, prefix: str, code: int) -> str:
    return value if isinstance(value, str) else f"{prefix}{code}"


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, owner: ScriptedUpstream) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's are not subclasses

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        source = (str(addr[0]), int(addr[1]))
        transport = self.transport
        assert transport is not None

        def send(reply: bytes) -> None:
            if not transport.is_closing():
                transport.sendto(reply, source)

        self.owner._arrived(data, "udp", source, send)


class _Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not self.reply.done():
            self.reply.set_result(data)


class ScriptedUpstream:
    """The upstream server; start it with `start()` or `scripted_upstream()`."""

    def __init__(self, zone: Zone | None = None, *, tls: ssl.SSLContext | None = None) -> None:
        self.zone = zone if zone is not None else Zone()
        self.tls = tls
        self.host = "127.0.0.1"
        self.port = 0
        self.received: list[Received] = []
        self.rules: list[Rule] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._spoof: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: dict[asyncio.StreamWriter, asyncio.Task[None] | None] = {}
        self._waiters: list[
            tuple[Callable[[], list[Received] | None], asyncio.Future[list[Received]]]
        ] = []
        self.on_query: Callable[[Received], None] | None = None
        """Called for every query received, before it is handled."""

    @property
    def addr(self) -> str:
        """`host:port`, as a forward TO and as the plugin's `to` label."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    # -- scripting -------------------------------------------------------------------------------
    def on(
        self,
        *steps: Step,
        qname: str | None = None,
        qtype: str | None = None,
        transport: str | None = None,
        probe: bool | None = None,
        times: int | None = None,
    ) -> Rule:
        """Handle matching queries with `steps` (newest rule first); returns the rule."""
        rule = Rule(tuple(steps), qname, qtype, transport, probe, times)
        self.rules.append(rule)
        return rule

    def always(self, *steps: Step) -> Rule:
        """Handle every query, probes included, with `steps`."""
        return self.on(*steps)

    def clear(self) -> None:
        """Forget every rule: answer from the zone again."""
        self.rules.clear()

    def close_connections(self) -> int:
        """Close every open TCP/TLS connection from the upstream's side; returns how many."""
        for writer in self._streams:
            writer.close()
        return len(self._streams)

    def _steps_for(self, q: Received) -> tuple[Step, ...]:
        for rule in reversed(self.rules):
            if rule.matches(q):
                if rule.times is not None:
                    rule.times -= 1
                return rule.steps
        return (Answer(),)

    # -- observing -------------------------------------------------------------------------------
    def queries(self, where: Callable[[Received], bool] | None = None) -> list[Received]:
        """Queries received so far (optionally filtered)."""
        return [q for q in self.received if where is None or where(q)]

    def probes(self) -> list[Received]:
        """Health probes received so far."""
        return self.queries(lambda q: q.probe)

    async def wait_for(
        self,
        count: int = 1,
        *,
        where: Callable[[Received], bool] | None = None,
        since: int = 0,
        timeout_s: float = 10.0,
    ) -> list[Received]:
        """Wait until `count` matching queries have arrived at index `since` or later.

        Raises:
            TimeoutError: fewer arrived within `timeout_s`.
        """

        def found() -> list[Received] | None:
            hits = [q for q in self.received[since:] if where is None or where(q)]
            return hits[:count] if len(hits) >= count else None

        hits = found()
        if hits is not None:
            return hits
        future: asyncio.Future[list[Received]] = asyncio.get_running_loop().create_future()
        entry = (found, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        finally:
            self._waiters.remove(entry)

    async def wait_probe(self, *, since: int = 0, timeout_s: float = 10.0) -> Received:
        """Wait for a health probe arriving at index `since` or later."""
        (probe,) = await self.wait_for(where=lambda q: q.probe, since=since, timeout_s=timeout_s)
        return probe

    # -- serving ---------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Bind UDP and TCP on the same port (a free one when `port` is 0)."""
        loop = asyncio.get_running_loop()
        self.host = host
        for _ in range(20):
            udp, _proto = await loop.create_datagram_endpoint(
                lambda: _UDP(self), local_addr=(host, port)
            )
            bound = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(
                    self._serve_stream, host, bound, ssl=self.tls, reuse_address=True
                )
            except OSError:
                udp.close()
                if port:
                    raise
                continue
            self._udp = udp
            self.port = bound
            break
        else:
            raise OSError(f"no port free for both UDP and TCP on {host}")
        self._spoof, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(host, 0)
        )

    async def stop(self) -> None:
        """Close the sockets and connections; cancel queries still being handled."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
        for writer in self._streams:
            writer.close()
        handlers = {t for t in self._streams.values() if t is not None}
        if handlers:
            await asyncio.wait(handlers, timeout=STOP_TIMEOUT_S)
        for transport in (self._udp, self._spoof):
            if transport is not None:
                transport.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await self._tcp.wait_closed()

    async def _serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        source = (str(peer[0]), int(peer[1]))
        label = "tls" if self.tls is not None else "tcp"

        def send(reply: bytes) -> None:
            if not writer.is_closing():
                writer.write(len(reply).to_bytes(2, "big") + reply)

        self._streams[writer] = asyncio.current_task()
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
                self._arrived(data, label, source, send)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self._streams.pop(writer, None)
            writer.close()

    def _arrived(self, data: bytes, transport: str, source: tuple[str, int], send: Send) -> None:
        try:
            msg = DNSRecord.parse(data)
        except Exception:  # garbage sent by a test is simply not a query
            return
        if not msg.questions:
            return
        q = msg.q
        opt = next((rr for rr in msg.ar if rr.rtype == QTYPE.OPT), None)
        received = Received(
            index=len(self.received),
            id=msg.header.id,
            qname=str(q.qname),
            qtype=_mnemonic(QTYPE.get(q.qtype), "TYPE", q.qtype),
            qtype_code=int(q.qtype),
            qclass=_mnemonic(CLASS.get(q.qclass), "CLASS", q.qclass),
            transport=transport,
            source=source,
            rd=bool(msg.header.rd),
            cd=bool(msg.header.cd),
            edns_size=int(opt.rclass) if opt is not None else None,
            do=bool(opt is not None and int(opt.ttl) & 0x8000),
            wire=data,
        )
        self.received.append(received)
        if self.on_query is not None:
            self.on_query(received)
        for found, future in self._waiters:
            if not future.done():
                hits = found()
                if hits is not None:
                    future.set_result(hits)
        task = asyncio.get_running_loop().create_task(self._handle(received, send))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, q: Received, send: Send) -> None:
        for step in self._steps_for(q):
            match step:
                case Delay(seconds=seconds):
                    await asyncio.sleep(seconds)
                case Wait(event=event):
                    await event.wait()
                case Drop():
                    return
                case SpoofID(address=address):
                    send(self._poisoned(q, address, qid=q.id ^ 0x5A5A))
                case SpoofQuestion(qname=qname, address=address):
                    send(self._poisoned(q, address, qname=qname))
                case SpoofPort(address=address):
                    if q.transport == "udp" and self._spoof is not None:
                        self._spoof.sendto(self._poisoned(q, address), q.source)
                case Truncate():
                    if q.transport == "udp":
                        send(self._reply(q, RCODE.NOERROR, [], [], tc=True))
                    else:
                        send(self._from_zone(q))
                    return
                case ForwardTo(host=host, port=port, timeout_s=timeout_s):
                    relayed = await self._relay(q, host, port, timeout_s)
                    if relayed is not None:
                        send(relayed)
                    return
                case Answer(rcode=None, records=None, aa=aa, ra=ra):
                    send(self._from_zone(q, aa=aa, ra=ra))
                    return
                case Answer(rcode=rcode, records=records, aa=aa, ra=ra):
                    code = getattr(RCODE, rcode) if rcode is not None else RCODE.NOERROR
                    answer = [rr for line in records or () for rr in RR.fromZone(line)]
                    send(self._reply(q, code, answer, [], aa=aa, ra=ra))
                    return

    # -- building replies ------------------------------------------------------------------------
    def _from_zone(self, q: Received, *, aa: bool = False, ra: bool = True) -> bytes:
        code, answer, authority = self.zone.lookup(q.qname, q.qtype_code)
        return self._reply(q, code, answer, authority, aa=aa, ra=ra)

    def _reply(
        self,
        q: Received,
        rcode: int,
        answer: Sequence[RR],
        authority: Sequence[RR],
        *,
        aa: bool = False,
        ra: bool = True,
        tc: bool = False,
        qid: int | None = None,
        question: DNSQuestion | None = None,
    ) -> bytes:
        query = q.msg
        header = DNSHeader(
            id=q.id if qid is None else qid,
            qr=1,
            opcode=query.header.opcode,
            aa=int(aa),
            tc=int(tc),
            rd=query.header.rd,
            ra=int(ra),
            cd=query.header.cd,
            rcode=rcode,
        )
        reply = DNSRecord(header, q=question or query.q)
        for rr in answer:
            reply.add_answer(rr)
        for rr in authority:
            reply.add_auth(rr)
        if q.edns_size is not None:
            reply.add_ar(EDNS0(udp_len=REPLY_EDNS_SIZE, flags="do" if q.do else ""))
        wire = bytes(reply.pack())
        limit = max(512, q.edns_size or 512)
        if q.transport == "udp" and len(wire) > limit and not tc:
            return self._reply(q, rcode, [], [], aa=aa, ra=ra, tc=True, qid=qid, question=question)
        return wire

    def _poisoned(
        self, q: Received, address: str, *, qid: int | None = None, qname: str | None = None
    ) -> bytes:
        owner = qname or q.qname
        question = DNSQuestion(owner, q.qtype_code) if qname is not None else None
        answer = list(RR.fromZone(f"{owner} 86400 IN A {address}"))
        return self._reply(q, RCODE.NOERROR, answer, [], qid=qid, question=question)

    async def _relay(self, q: Received, host: str, port: int, timeout_s: float) -> bytes | None:
        loop = asyncio.get_running_loop()
        transport, collect = await loop.create_datagram_endpoint(_Collect, remote_addr=(host, port))
        try:
            transport.sendto(q.wire)
            async with asyncio.timeout(timeout_s):
                return await collect.reply
        except TimeoutError:
            return None
        finally:
            transport.close()


@contextlib.asynccontextmanager
async def scripted_upstream(
    zone: Zone | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[ScriptedUpstream]:
    """A started upstream, stopped on exit."""
    up = ScriptedUpstream(zone, tls=tls)
    await up.start(host, port)
    try:
        yield up
    finally:
        await up.stop()


# -- as a script ---------------------------------------------------------------------------------


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A scriptable DNS upstream for tests.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=53, help="UDP and TCP port (default 53)")
    parser.add_argument(
        "--record", action="append", default=[], help="extra zone-file record (repeatable)"
    )
    parser.add_argument("--soa", action="append", default=[], help="extra SOA record (repeatable)")
    parser.add_argument(
        "--no-defaults", action="store_true", help="start without the reference records"
    )
    behaviour = parser.add_mutually_exclusive_group()
    behaviour.add_argument("--drop", action="store_true", help="never answer")
    behaviour.add_argument("--rcode", help="answer every query with this rcode, no records")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before replying")
    parser.add_argument("--log", action="store_true", help="print one line per query received")
    args = parser.parse_args(argv)
    if args.rcode is not None and not hasattr(RCODE, args.rcode.upper()):
        parser.error(f"unknown rcode {args.rcode!r}")
    return args


async def _main(args: argparse.Namespace) -> None:
    records = [] if args.no_defaults else list(DEFAULT_RECORDS)
    soas = [] if args.no_defaults else list(DEFAULT_SOAS)
    zone = Zone([*records, *args.record], [*soas, *args.soa])
    steps: list[Step] = [Delay(args.delay)] if args.delay > 0 else []
    if args.drop:
        steps.append(Drop())
    elif args.rcode:
        steps.append(Answer(rcode=args.rcode.upper()))
    else:
        steps.append(Answer())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with scripted_upstream(zone, host=args.host, port=args.port) as up:
        up.always(*steps)
        if args.log:
            up.on_query = _print_query
        print(f"listening on {up.addr}", flush=True)
        await stop.wait()


def _print_query(q: Received) -> None:
    print(
        f"query {q.transport} {q.qname} {q.qtype} id {q.id} from {q.source[0]}:{q.source[1]}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    asyncio.run(_main(_arguments(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
