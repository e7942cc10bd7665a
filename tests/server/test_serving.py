"""The real server on loopback, queried by dnspython and dig over UDP and TCP."""

from __future__ import annotations

import asyncio
import re
from typing import ClassVar

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from dnslib import RR, A, DNSRecord

from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from tests.dnstest import TIMEOUT_S, dig, running_server, tcp_exchange, udp_exchange

WHOAMI = ".:0 {\n    whoami\n}\n"


class ManyRecords:
    """A test plugin answering every A query with `count` A records (for truncation)."""

    name: ClassVar[str] = "many"

    def __init__(self, count: int) -> None:
        self.count = count

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        reply = req.reply(aa=True)
        for i in range(self.count):
            reply.add_answer(RR(req.qname, 1, rdata=A(f"10.0.{i // 256}.{i % 256}"), ttl=30))
        w.write(reply, self.name)
        return 0


class Boom:
    """A test plugin that crashes."""

    name: ClassVar[str] = "boom"

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        raise RuntimeError("kaboom")


async def test_dnspython_udp_and_tcp_keep_case() -> None:
    async with running_server(WHOAMI) as server:
        port = server.port()
        for query in (dns.asyncquery.udp, dns.asyncquery.tcp):
            q = dns.message.make_query("WhoAmI.Example.ORG.", "A")
            r = await query(q, "127.0.0.1", port=port, timeout=TIMEOUT_S)
            assert r.rcode() == dns.rcode.NOERROR
            assert str(r.question[0].name) == "WhoAmI.Example.ORG."
            assert r.flags & dns.flags.AA and not r.flags & dns.flags.RA
            owners = sorted(str(rrset.name) for rrset in r.additional)
            assert owners == [
                "WhoAmI.Example.ORG.",
                f"_{'udp' if query is dns.asyncquery.udp else 'tcp'}.WhoAmI.Example.ORG.",
            ]


async def test_dig_udp_and_tcp() -> None:
    async with running_server(WHOAMI) as server:
        out = await dig(server.port(), "whoami.example.org", "A")
        assert "status: NOERROR" in out and "flags: qr aa rd;" in out
        assert re.search(r"whoami\.example\.org\.\s+0\s+IN\s+A\s+127\.0\.0\.1", out)
        assert "(UDP)" in out
        out = await dig(server.port(), "whoami.example.org", "A", "+tcp")
        assert re.search(r"_tcp\.whoami\.example\.org\.\s+0\s+IN\s+SRV\s+0 0 \d+ \.", out)
        assert "(TCP)" in out


async def test_edns_is_mirrored_with_cookie_and_size() -> None:
    async with running_server(WHOAMI) as server:
        q = dns.message.make_query("example.org.", "A", use_edns=0, payload=4000, want_dnssec=True)
        q.use_edns(
            0,
            dns.flags.DO,
            4000,
            options=[
                dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x01" * 8),
                dns.edns.GenericOption(65001, b"x"),  # type: ignore[arg-type]  # unknown option code
            ],
        )
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=server.port(), timeout=TIMEOUT_S)
    assert r.edns == 0 and r.payload == 4000 and r.ednsflags & dns.flags.DO
    assert [(o.otype, o.to_wire()) for o in r.options] == [(10, b"\x01" * 8)]


async def test_no_edns_gets_no_opt() -> None:
    async with running_server(WHOAMI) as server:
        q = dns.message.make_query("example.org.", "A", use_edns=False)
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=server.port(), timeout=TIMEOUT_S)
    assert r.edns == -1


@pytest.mark.parametrize(("payload", "records_fit"), [(None, False), (1232, False), (4096, True)])
async def test_truncation_by_client_buffer(payload: int | None, records_fit: bool) -> None:
    async with running_server(WHOAMI, head=ManyRecords(100)) as server:
        kwargs = {"use_edns": False} if payload is None else {"use_edns": 0, "payload": payload}
        q = dns.message.make_query("big.example.", "A", **kwargs)
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=server.port(), timeout=TIMEOUT_S)
        wire_limit = payload or 512
        count = sum(len(rrset) for rrset in r.answer)
        if records_fit:
            assert count == 100 and not r.flags & dns.flags.TC
        else:
            assert r.flags & dns.flags.TC and 0 < count < 100
            assert len(r.to_wire()) <= wire_limit
            if payload is not None:
                assert r.payload == payload  # the OPT record is kept when truncating
        full = await dns.asyncquery.tcp(q, "127.0.0.1", port=server.port(), timeout=TIMEOUT_S)
        assert sum(len(rrset) for rrset in full.answer) == 100 and not full.flags & dns.flags.TC


async def test_dig_retries_over_tcp_after_truncation() -> None:
    async with running_server(WHOAMI, head=ManyRecords(60)) as server:
        out = await dig(server.port(), "big.example", "A", "+noedns")
    assert "Truncated, retrying in TCP mode" in out
    assert "ANSWER: 60" in out and "(TCP)" in out


async def test_pipelined_tcp_queries_on_one_connection() -> None:
    queries = []
    for i in range(20):
        q = DNSRecord.question(f"n{i}.Example.org", "A")
        q.header.id = 1000 + i
        queries.append(q.pack())
    async with running_server(WHOAMI) as server:
        replies = await tcp_exchange(server.port(), *queries)
    got = sorted(DNSRecord.parse(r).header.id for r in replies)
    assert got == list(range(1000, 1020))
    for r in replies:
        msg = DNSRecord.parse(r)
        assert str(msg.q.qname) == f"n{msg.header.id - 1000}.Example.org."


async def test_refused_when_no_zone_matches() -> None:
    async with running_server("example.org:0 {\n    whoami\n}\n") as server:
        q = dns.message.make_query("other.test.", "A")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=server.port(), timeout=TIMEOUT_S)
        assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA
        q = dns.message.make_query("sub.Example.ORG.", "A")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=server.port(), timeout=TIMEOUT_S)
        assert r.rcode() == dns.rcode.NOERROR
        metrics = server.config.process.metrics
        label = f"dns://:{server.port()}"
        assert metrics.responses.get((label, "dropped", "", "REFUSED", "")) == 1


async def test_longest_zone_wins() -> None:
    corefile = ".:0 {\n    any\n    whoami\n}\nexample.org:0 {\n    whoami\n}\n"
    async with running_server(corefile) as server:
        q = dns.message.make_query("a.example.org.", "ANY")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=server.port(), timeout=TIMEOUT_S)
        assert not r.answer  # the example.org block has no `any` plugin
        q = dns.message.make_query("a.example.com.", "ANY")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=server.port(), timeout=TIMEOUT_S)
        assert r.answer[0].rdtype == dns.rdatatype.HINFO


async def test_crash_in_plugin_is_servfail_and_counted() -> None:
    async with running_server(WHOAMI, head=Boom()) as server:
        q = dns.message.make_query("x.example.", "A")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=server.port(), timeout=TIMEOUT_S)
        assert r.rcode() == dns.rcode.SERVFAIL and not r.flags & dns.flags.AA
        assert server.config.process.metrics.panics.get() == 1
        # still serving
        r = await dns.asyncquery.tcp(q, "127.0.0.1", port=server.port(), timeout=TIMEOUT_S)
        assert r.rcode() == dns.rcode.SERVFAIL


async def test_ipv6_loopback_is_served() -> None:
    async with running_server(WHOAMI) as server:
        q = dns.message.make_query("v6.example.", "A")
        try:
            r = await dns.asyncquery.udp(q, "::1", port=server.port(), timeout=TIMEOUT_S)
        except OSError as exc:  # pragma: no cover - host without IPv6 loopback
            pytest.skip(f"no IPv6 loopback here: {exc}")
        assert r.additional[0].rdtype == dns.rdatatype.AAAA


async def test_inflight_cap_sheds_and_counts() -> None:
    gate = asyncio.Event()

    class Slow:
        name: ClassVar[str] = "slow"

        async def serve(self, req: Request, w: ResponseWriter) -> int:
            await gate.wait()
            return 2

    async with running_server(WHOAMI, head=Slow(), max_inflight=2) as server:
        q = DNSRecord.question("slow.example", "A").pack()
        waiters = [asyncio.create_task(udp_exchange(server.port(), q)) for _ in range(2)]
        responder = next(iter(server.listeners.values())).responder
        while len(responder.tasks) < 2:
            await asyncio.sleep(0)
        metrics = server.config.process.metrics
        extra = asyncio.create_task(udp_exchange(server.port(), q))
        while metrics.dropped.get(("overload",)) < 1:
            await asyncio.sleep(0)
        gate.set()
        replies = await asyncio.gather(*waiters)
        assert all(DNSRecord.parse(r).header.rcode == 2 for r in replies)
        extra.cancel()
