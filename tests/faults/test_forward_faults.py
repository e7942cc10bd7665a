"""Upstream faults through the kubeadm chain (reliability.md F5, F7, F9, F10, F12, F13, F14).

The server runs the reference Corefile's plugins in process (cluster from YAML, `cache 30`,
`loop`, `loadbalance`, `forward` to scripted loopback upstreams). Each test asserts what the
client sees, that cluster names keep answering while the upstream side fails, and what reached
the upstreams. The cache's clock is injected, so expiry is a step, not a wait.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Final, cast

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
from dnslib import RR, DNSRecord

from clusterdns.plugins.cache import Cache
from clusterdns.plugins.forward import Forward
from clusterdns.server.lifecycle import Server
from tests.dnstest import build_config
from tests.e2e.test_reference_corefile import inject_clock
from tests.faults.support import addresses, handlers
from tests.plugins.cache.helpers import FakeClock
from tests.plugins.kubernetes.cluster import REFERENCE_YAML
from tests.upstream import Answer, Drop, ForwardTo, Received, Wait, scripted_upstream

EXAMPLE_A: Final = "93.184.215.14"
CLUSTER: Final = ("api.prod.svc.cluster.local.", {"10.96.5.5"})
BUDGET_S: Final = 5.0
"""forward's total time for one client query (spec §7.2)."""
READ_TIMEOUT_S: Final = 2.0
"""forward's default read_timeout."""
WAIT_S: Final = 60.0
"""Bound on a wait for a state change (health checks, a query reaching an upstream)."""


def corefile(upstreams: str, *forward_options: str, cache: str = "cache 30") -> str:
    """The kubeadm Corefile's query plugins on 127.0.0.1:0 with the given forward options."""
    options = "".join(f"        {o}\n" for o in ("max_concurrent 1000", *forward_options))
    return (
        ".:0 {\n"
        "    bind 127.0.0.1\n"
        "    errors\n"
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n"
        f"        from_yaml {REFERENCE_YAML}\n"
        "        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n"
        "        ttl 30\n"
        "    }\n"
        f"    forward . {upstreams} {{\n{options}    }}\n"
        f"    {cache}\n"
        "    loop\n"
        "    loadbalance\n"
        "}\n"
    )


@dataclass
class Running:
    server: Server
    cache: Cache | None
    clock: FakeClock

    @property
    def port(self) -> int:
        return self.server.port()

    def forward(self) -> Forward:
        (fwd,) = [h for h in handlers(self.server.config) if isinstance(h, Forward)]
        return fwd


@asynccontextmanager
async def serving(text: str) -> AsyncIterator[Running]:
    config = build_config(text)
    clock = FakeClock()
    cache = inject_clock(config, clock) if "cache" in text else None
    server = Server(config, quiet=True)
    await server.start()
    try:
        yield Running(server, cache, clock)
    finally:
        await server.stop(graceful=False)
        if cache is not None:
            await cache.close()


async def ask(
    port: int, qname: str, qtype: str = "A", *, edns: bool = True, timeout_s: float = 10.0
) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype, use_edns=0 if edns else False)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=timeout_s)


async def cluster_still_answers(port: int) -> None:
    name, want = CLUSTER
    reply = await ask(port, name)
    assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == want


# -- F5: a thousand identical cache misses ---------------------------------------------------------
def is_example(q: Received) -> bool:
    return q.qname == "example.com."


async def test_a_thousand_identical_misses_make_one_upstream_query() -> None:
    gate = asyncio.Event()
    async with scripted_upstream() as up:
        up.on(Wait(gate), Answer(), qname="example.com.")
        async with serving(corefile(up.addr)) as run:
            loop = asyncio.get_running_loop()
            got: dict[int, bytes] = {}
            done = asyncio.Event()

            class Client(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                    got[struct.unpack_from("!H", data)[0]] = data
                    if len(got) == 1000:
                        done.set()

            # One client socket per 50 queries: a burst of 1000 replies to one socket would
            # overflow its receive buffer (kernel drops would hide what the server does).
            clients = [
                (await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", run.port)))[
                    0
                ]
                for _ in range(20)
            ]
            try:
                merged = run.forward().metrics.merged_requests
                for n, transport in enumerate(clients):
                    batch = n * 50
                    for qid in range(batch, batch + 50):
                        q = DNSRecord.question("example.com.", "A")
                        q.header.id = qid
                        transport.sendto(bytes(q.pack()))
                    await up.wait_for(1, where=is_example, timeout_s=WAIT_S)
                    deadline = time.monotonic() + 30
                    while merged.get() < batch + 49 and time.monotonic() < deadline:
                        await asyncio.sleep(0.005)  # pacing on the merge counter
                assert merged.get() == 999, merged.get()
                await cluster_still_answers(run.port)  # the chain is not blocked meanwhile
                gate.set()
                await asyncio.wait_for(done.wait(), 30)
            finally:
                for transport in clients:
                    transport.close()
        assert len(up.queries(is_example)) == 1, [q.qname for q in up.queries()]
        for qid, data in got.items():
            reply = DNSRecord.parse(data)
            assert reply.header.id == qid
            assert [str(r.rdata) for r in reply.rr] == [EXAMPLE_A]


# -- F7: an oversized UDP reply without EDNS -------------------------------------------------------
class Oversized(asyncio.DatagramProtocol):
    """An upstream that answers every query with 60 A records over UDP, never truncating."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        q = DNSRecord.parse(data)
        reply = q.reply()
        for i in range(60):
            reply.add_answer(*RR.fromZone(f"{q.q.qname} 300 IN A 192.0.2.{i + 1}"))
        self.transport.sendto(bytes(reply.pack()), addr)


async def test_oversized_udp_reply_without_edns_reaches_the_client_truncated() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Oversized, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        async with serving(corefile(f"127.0.0.1:{port}", cache="")) as run:
            q = dns.message.make_query("big.example.", "A", use_edns=False)
            raw = await dns.asyncquery.udp(
                q, "127.0.0.1", port=run.port, timeout=10, raise_on_truncation=False
            )
            assert raw.flags & dns.flags.TC, "a reply over 512 bytes must come with TC"
            assert len(raw.to_wire()) <= 512
            assert raw.rcode() == dns.rcode.NOERROR
            await cluster_still_answers(run.port)
    finally:
        transport.close()


# -- F9: every upstream down -----------------------------------------------------------------------
async def test_all_upstreams_down_servfail_never_nxdomain_then_recover() -> None:
    async with AsyncExitStack() as stack:
        ups = [await stack.enter_async_context(scripted_upstream()) for _ in range(2)]
        for up in ups:
            up.always(Drop())
        text = corefile(
            " ".join(u.addr for u in ups),
            "read_timeout 300ms",
            "health_check 100ms",
            "max_fails 2",
            "failfast_all_unhealthy_upstreams",
        )
        async with serving(text) as run:
            start = time.monotonic()
            reply = await ask(run.port, "example.com.")
            took = time.monotonic() - start
            assert reply.rcode() == dns.rcode.SERVFAIL, dns.rcode.to_text(reply.rcode())
            assert took < BUDGET_S + 1.0, f"the client waited {took:.1f} s"
            await cluster_still_answers(run.port)
            # Health checks take both upstreams out; then failures are answered at once.
            fwd = run.forward()
            for proxy in fwd.proxies:
                await proxy.wait_until(lambda p: p.down, timeout_s=WAIT_S)
            for name in ("db.example.com.", "other.example.", "x.example.net."):
                reply = await ask(run.port, name)
                assert reply.rcode() == dns.rcode.SERVFAIL  # never NXDOMAIN
                # Failed fast: no upstream was tried (a clock would only say "quickly").
                tried = [q for up in ups for q in up.queries() if q.qname == name]
                assert not tried, f"{name} was sent upstream with every upstream down"
            # The SERVFAIL is cached for 5 s at most (RFC 2308 §7: at most 5 minutes).
            run.clock.advance(5.1)
            for up in ups:
                up.clear()  # answer normally again
            for proxy in fwd.proxies:
                await proxy.wait_until(lambda p: not p.down, timeout_s=WAIT_S)
            reply = await ask(run.port, "example.com.")
            assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == {EXAMPLE_A}


async def test_upstream_servfail_is_cached_five_seconds_and_timeouts_are_not() -> None:
    async with scripted_upstream() as up:
        up.on(Answer(rcode="SERVFAIL"), qname="example.com.")
        up.on(Drop(), qname="db.example.com.")
        async with serving(corefile(up.addr, "read_timeout 200ms", "max_fails 0")) as run:
            # An upstream's SERVFAIL is cached (`cache` default: 5 s, RFC 2308 §7 caps at 5 min).
            assert (await ask(run.port, "example.com.")).rcode() == dns.rcode.SERVFAIL
            asked = len(up.queries(lambda q: q.qname == "example.com."))
            assert (await ask(run.port, "example.com.")).rcode() == dns.rcode.SERVFAIL
            assert len(up.queries(lambda q: q.qname == "example.com.")) == asked
            up.clear()
            run.clock.advance(5.0)
            reply = await ask(run.port, "example.com.")
            assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == {EXAMPLE_A}
            # A timeout is not a reply: nothing is cached, the next query goes upstream again
            # (as CoreDNS: forward's error is written outside the cache).
            up.on(Drop(), qname="db.example.com.")
            assert (await ask(run.port, "db.example.com.")).rcode() == dns.rcode.SERVFAIL
            asked = len(up.queries(lambda q: q.qname == "db.example.com."))
            assert (await ask(run.port, "db.example.com.")).rcode() == dns.rcode.SERVFAIL
            assert len(up.queries(lambda q: q.qname == "db.example.com.")) > asked


# -- F10: serve_stale ------------------------------------------------------------------------------
async def test_serve_stale_answers_from_expired_data_while_upstreams_are_down() -> None:
    held = asyncio.Event()  # never set: the upstream does not answer the refresh
    async with scripted_upstream() as up:
        stale = "cache 30 {\n        serve_stale 1h immediate 30s\n    }"
        # forward's default read_timeout (2 s): a refresh the upstream holds fails no sooner.
        async with serving(corefile(up.addr, cache=stale)) as run:
            fresh = await ask(run.port, "example.com.")
            assert addresses(fresh) == {EXAMPLE_A}
            mark = len(up.queries())
            up.on(Wait(held), qname="example.com.")
            up.on(Answer(rcode="SERVFAIL"), qname="db.example.com.")
            run.clock.advance(31)  # the entry (TTL 30) expired
            start = time.monotonic()
            reply = await ask(run.port, "example.com.")
            took = time.monotonic() - start
            # `immediate`: answered before the refresh could fail (`verify` would have waited).
            assert took < READ_TIMEOUT_S, f"stale answer after {took:.2f} s"
            assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == {EXAMPLE_A}
            assert {rrset.ttl for rrset in reply.answer} == {30}, "stale answers carry TTL 30"
            await up.wait_for(1, where=is_example, since=mark, timeout_s=WAIT_S)  # the refresh
            assert run.cache is not None and run.cache.metrics.served_stale.values
            # Names never cached get the upstream failure (SERVFAIL), nothing stale, not NXDOMAIN.
            assert (await ask(run.port, "db.example.com.")).rcode() == dns.rcode.SERVFAIL


# -- F12, F13: odd negative answers and TTLs -------------------------------------------------------
async def test_nxdomain_without_soa_is_relayed_and_not_cached() -> None:
    async with scripted_upstream() as up:
        up.always(Answer(rcode="NXDOMAIN"))  # no SOA in the authority section
        async with serving(corefile(up.addr)) as run:
            for _ in range(2):
                reply = await ask(run.port, "nosuch.example.")
                assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.authority
            assert len(up.queries(lambda q: q.qname == "nosuch.example.")) == 2, "not cached"


async def test_huge_and_high_bit_ttls_are_capped_by_the_cache() -> None:
    async with scripted_upstream() as up:
        up.on(Answer(records=("huge.example. 4294967295 IN A 192.0.2.1",)), qname="huge.example.")
        up.on(Answer(records=("high.example. 2147483648 IN A 192.0.2.2",)), qname="high.example.")
        async with serving(corefile(up.addr)) as run:
            for name in ("huge.example.", "high.example."):
                for _ in range(2):  # the miss and the hit
                    reply = await ask(run.port, name)
                    ttls = {rrset.ttl for rrset in reply.answer}
                    assert reply.rcode() == dns.rcode.NOERROR and max(ttls) <= 30, (name, ttls)


# -- F14: a forwarding loop -----------------------------------------------------------------------
async def test_forwarding_loop_is_quarantined_and_the_server_keeps_serving() -> None:
    async with scripted_upstream() as up:
        # The upstream sends every query back to the server under test: a loop.
        text = corefile(up.addr, "read_timeout 300ms")
        async with serving(text) as run:
            up.always(ForwardTo("127.0.0.1", run.port, timeout_s=1.0))
            reply = await ask(run.port, "example.com.")
            assert reply.rcode() == dns.rcode.SERVFAIL
            await cluster_still_answers(run.port)
            reply = await ask(run.port, "example.org.")
            assert reply.rcode() == dns.rcode.SERVFAIL  # what would go there fails; no exit
            assert not run.server.stopped.is_set()
