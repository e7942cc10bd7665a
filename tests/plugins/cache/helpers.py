"""Test doubles for the cache: a scripted backend plugin, a fake clock, queries with any flags."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from dnslib import EDNS0, RR, DNSRecord, EDNSOption

from clusterdns.chain.fastpath import Offer
from clusterdns.chain.order import DIRECTIVES
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.corefile import parse as parse_corefile
from clusterdns.dnsutil import rcode as rc
from clusterdns.errors import PluginError
from clusterdns.metrics import Metrics
from clusterdns.plugins.cache import Cache, CacheConfig, metrics_for, parse
from tests.dnstest import LOCAL, REMOTE, RecordingWriter

SOA_EXAMPLE = (
    "example.org. {ttl} IN SOA ns.example.org. hostmaster.example.org. 1 7200 1800 86400 60"
)
SOA_CLUSTER = (
    "cluster.local. {ttl} IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "
    "1 7200 1800 86400 5"
)


def soa(ttl: int = 30, template: str = SOA_EXAMPLE) -> str:
    return template.format(ttl=ttl)


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Answer:
    """What the backend writes for one name. `{qname}` in records is the query name as asked."""

    rcode: int = rc.NOERROR
    answer: Sequence[str] = ()
    ns: Sequence[str] = ()
    extra: Sequence[str] = ()
    aa: bool = False
    ra: bool = True
    ad: bool = False
    tc: bool = False
    write: bool = True
    """False: return `rcode` without writing (the server would answer it)."""
    question: str | None = None
    """Answer with this question name instead of the query's (a mismatching reply)."""
    opt: bool = False
    """Add an OPT record with an EDNS option the server does not echo (code 15)."""
    offer: Offer | None = None
    """Offer this to the fast path after writing."""
    raises: bool = False
    """Raise a PluginError instead of answering."""


class Backend:
    """The next plugin: answers each name from a table, counts calls, can be held at a gate."""

    name: ClassVar[str] = "backend"

    def __init__(self, table: Mapping[str, Answer | Callable[[int], Answer]]) -> None:
        self.table = table
        self.calls: list[Request] = []
        self.called = asyncio.Event()
        """Set on every call; tests clear it before waiting for the next one."""
        self.gate: asyncio.Event | None = None
        """When set, each call waits for this event before answering."""
        self.written: list[DNSRecord] = []
        """Every reply object handed to the writer, as built."""

    def count(self, name: str) -> int:
        return sum(1 for r in self.calls if r.name == name.lower())

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        self.calls.append(req)
        self.called.set()
        if self.gate is not None:
            await self.gate.wait()
        spec = self.table.get(req.name, Answer(rcode=rc.REFUSED, write=False))
        a = spec(len(self.calls)) if callable(spec) else spec
        if a.raises:
            raise PluginError("backend", "upstream unreachable")
        if not a.write:
            return a.rcode
        reply = req.reply(aa=a.aa, rcode=a.rcode)
        reply.header.ra = int(a.ra)
        reply.header.ad = int(a.ad)
        reply.header.tc = int(a.tc)
        if a.question is not None:
            reply.questions[0] = DNSRecord.question(a.question, "A").q
        for section, lines in ((reply.add_answer, a.answer), (reply.add_auth, a.ns)):
            for line in lines:
                section(*RR.fromZone(line.format(qname=req.qname)))
        for line in a.extra:
            reply.add_ar(*RR.fromZone(line.format(qname=req.qname)))
        if a.opt:
            reply.add_ar(EDNS0(udp_len=4096, opts=[EDNSOption(15, b"\x00\x0fblocked")]))
        self.written.append(reply)
        w.write(reply, self.name)
        if a.offer is not None:
            w.offer_fastpath(a.offer)
        return a.rcode


def cache_config(text: str, zones: Sequence[str] = (".",)) -> CacheConfig:
    """Parse a `cache` line (with its block) as it would appear in a `.` server block."""
    blocks = parse_corefile(f". {{\n    {text}\n}}\n", "Corefile", DIRECTIVES)
    return parse(blocks[0].lines_of("cache")[0], zones)


@dataclass
class Rig:
    """A cache in front of a backend, with a fake clock and its own metrics."""

    cache: Cache
    backend: Backend
    clock: FakeClock
    metrics: Metrics = field(default_factory=Metrics)

    async def ask(
        self,
        qname: str,
        qtype: str = "A",
        *,
        do: bool = False,
        cd: bool = False,
        ad: bool = False,
        edns: bool = False,
        rd: bool = True,
    ) -> tuple[int, RecordingWriter]:
        req = query(qname, qtype, do=do, cd=cd, ad=ad, edns=edns, rd=rd)
        w = RecordingWriter(req)
        code = await self.cache.serve(req, w)
        return code, w

    async def reply(self, qname: str, qtype: str = "A", **flags: bool) -> DNSRecord:
        _, w = await self.ask(qname, qtype, **flags)
        msg = w.reply()
        assert msg is not None, f"no reply written for {qname}"
        return msg


def rig(
    text: str,
    table: Mapping[str, Answer | Callable[[int], Answer]],
    *,
    zones: Sequence[str] = (".",),
) -> Rig:
    clock = FakeClock()
    metrics = Metrics()
    backend = Backend(table)
    cache = Cache(cache_config(text, zones), backend, metrics=metrics_for(metrics), clock=clock)
    return Rig(cache=cache, backend=backend, clock=clock, metrics=metrics)


def query(
    qname: str,
    qtype: str = "A",
    *,
    do: bool = False,
    cd: bool = False,
    ad: bool = False,
    edns: bool = False,
    rd: bool = True,
    proto: str = "udp",
) -> Request:
    """A query with the given header bits; DO implies an OPT record."""
    q = DNSRecord.question(qname, qtype)
    q.header.rd = int(rd)
    q.header.cd = int(cd)
    q.header.ad = int(ad)
    if do or edns:
        q.add_ar(EDNS0(udp_len=1232, flags="do" if do else ""))
    wire = q.pack()
    return Request(
        DNSRecord.parse(wire), wire, proto=proto, remote=REMOTE, local=LOCAL, server="dns://:53"
    )


def ttls(msg: DNSRecord) -> list[int]:
    """Every record's TTL, OPT excluded, in section order."""
    return [int(rr.ttl) for rr in [*msg.rr, *msg.auth, *msg.ar] if rr.rtype != rc.OPT]


def labels(server: str = "dns://:53", zones: str = ".") -> tuple[str, str, str]:
    return (server, zones, "")


def typed(kind: str, server: str = "dns://:53", zones: str = ".") -> tuple[str, str, str, str]:
    return (server, kind, zones, "")
