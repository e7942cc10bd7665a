"""forward through the real server on loopback, against scripted upstreams (tests/upstream.py).

Clients are dnspython and dig. Timeouts of the code under test are short (read_timeout 100-300
ms); waits for events are long (TIMEOUT_S), so a busy machine slows the tests but never fails
them. Synchronisation is on upstream arrivals, asyncio events and the proxies' health changes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from clusterdns.plugins import SETUP
from clusterdns.plugins.forward import Forward, Proxy, shared_for
from clusterdns.plugins.forward.metrics import ForwardMetrics, Shared
from clusterdns.server.lifecycle import Server
from tests.dnstest import TIMEOUT_S, dig, running_server
from tests.upstream import (
    POISON,
    Answer,
    Drop,
    ForwardTo,
    Received,
    ScriptedUpstream,
    SpoofID,
    SpoofPort,
    SpoofQuestion,
    Step,
    Truncate,
    Wait,
    Zone,
    scripted_upstream,
    servfail,
)

ERRORS_LOGGER = "clusterdns.plugins.errors"
EXAMPLE_A = "93.184.215.14"
DB_A = "192.0.2.50"


# -- helpers -------------------------------------------------------------------------------------


def corefile(*lines: str, errors: bool = True, after: str = "") -> str:
    """A `.:0` block: optional `errors`, the given forward lines, then `after` (e.g. whoami)."""
    body = ("    errors\n" if errors else "") + "".join(f"    {line}\n" for line in lines)
    return ".:0 {\n" + body + (f"    {after}\n" if after else "") + "}\n"


def fwd(*upstreams: ScriptedUpstream | str, options: tuple[str, ...] = (), zone: str = ".") -> str:
    """One forward line (with a block when options are given)."""
    to = " ".join(u if isinstance(u, str) else u.addr for u in upstreams)
    line = f"forward {zone} {to}"
    if not options:
        return line
    return line + " {\n" + "".join(f"        {o}\n" for o in options) + "    }"


@asynccontextmanager
async def upstreams(count: int, zone: Zone | None = None) -> AsyncIterator[list[ScriptedUpstream]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(scripted_upstream(zone)) for _ in range(count)]


async def ask(
    server: Server,
    name: str,
    qtype: str = "A",
    *,
    tcp: bool = False,
    qid: int | None = None,
    edns: int | None = None,
) -> dns.message.Message:
    q = dns.message.make_query(
        name, qtype, use_edns=edns if edns is not None else False, payload=edns or 1232
    )
    if qid is not None:
        q.id = qid
    query = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    return await query(q, "127.0.0.1", port=server.port(), timeout=TIMEOUT_S)


def flags(msg: dns.message.Message) -> str:
    return dns.flags.to_text(msg.flags).lower()


def addresses(msg: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in msg.answer for rd in rrset if rd.rdtype == dns.rdatatype.A]


def forwards(server: Server) -> list[Forward]:
    found = server.config.blocks[0].settings.upstreams
    assert all(isinstance(f, Forward) for f in found)
    return [f for f in found if isinstance(f, Forward)]


def proxy(server: Server, up: ScriptedUpstream) -> Proxy:
    for f in forwards(server):
        for p in f.proxies:
            if p.label == up.addr:
                return p
    raise AssertionError(f"no proxy for {up.addr}")


def series(server: Server) -> ForwardMetrics:
    return shared_for(server.config.process.metrics).metrics


def shared(server: Server) -> Shared:
    return shared_for(server.config.process.metrics)


def not_probe(q: Received) -> bool:
    return not q.probe


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(ERRORS_LOGGER)]


@pytest.fixture
def errors_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.ERROR, logger=ERRORS_LOGGER)
    return caplog


# -- relaying ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_relays_answer_with_client_id_and_case(tcp: bool) -> None:
    async with scripted_upstream() as up, running_server(corefile(fwd(up))) as server:
        r = await ask(server, "Db.Example.COM.", tcp=tcp, qid=4242)
        assert r.id == 4242
        assert r.rcode() == dns.rcode.NOERROR and flags(r) == "qr rd ra"
        assert str(r.question[0].name) == "Db.Example.COM."
        assert addresses(r) == [DB_A] and r.answer[0].ttl == 300
        (seen,) = up.queries()
        assert seen.transport == ("tcp" if tcp else "udp")
        assert seen.qname == "Db.Example.COM." and seen.rd
        m = series(server)
        proto = "tcp" if tcp else "udp"
        assert m.request_duration.count(("forward", up.addr, "NOERROR")) == 1
        assert m.conn_cache_misses.get(("forward", up.addr, proto)) == 1


async def test_relays_nxdomain_and_nodata_with_upstream_soa() -> None:
    async with scripted_upstream() as up, running_server(corefile(fwd(up))) as server:
        r = await ask(server, "nosuch.example.")
        assert r.rcode() == dns.rcode.NXDOMAIN and flags(r) == "qr rd ra" and not r.answer
        assert [rrset.to_text() for rrset in r.authority] == [
            ". 86400 IN SOA a.root-servers.net. nstld.verisign-grs.com. "
            "2024010101 1800 900 604800 86400"
        ]
        r = await ask(server, "example.com.", "AAAA")
        assert r.rcode() == dns.rcode.NOERROR and not r.answer
        assert r.authority[0].name.to_text() == "example.com."
        assert series(server).request_duration.count(("forward", up.addr, "NXDOMAIN")) == 1


async def test_dig_sees_relayed_flags() -> None:
    async with scripted_upstream() as up, running_server(corefile(fwd(up))) as server:
        out = await dig(server.port(), "example.com", "A")
        assert "status: NOERROR" in out and "flags: qr rd ra;" in out
        assert re.search(rf"example\.com\.\s+3600\s+IN\s+A\s+{re.escape(EXAMPLE_A)}", out)
        out = await dig(server.port(), "nosuch.example", "A", "+tcp")
        assert "status: NXDOMAIN" in out and "(TCP)" in out


async def test_edns_follows_bufsize_and_absent_edns_stays_absent() -> None:
    async with (
        scripted_upstream() as up,
        running_server(".:0 {\n    bufsize 1232\n    " + fwd(up) + "\n}\n") as server,
    ):
        r = await ask(server, "example.com.", edns=4096)
        assert r.edns == 0 and r.payload == 1232 and addresses(r) == [EXAMPLE_A]
        r = await ask(server, "db.example.com.")
        assert r.edns == -1 and addresses(r) == [DB_A]
        with_edns, without = up.queries()
        assert with_edns.edns_size == 1232
        assert without.edns_size is None


ODD_LABELS = [
    b"a.b",  # a dot inside a label
    b"a\\b",
    b"a b",
    b"a@b",
    b"x;y(z)\"'",
    b"\x00\x7f",  # bytes dnslib parses (the scripted upstream drops non-UTF-8 names)
]
"""First labels whose text differs between `Request.name` (escaped) and dnslib's `str()`."""


@pytest.mark.parametrize("first", ODD_LABELS, ids=repr)
async def test_names_with_odd_labels_are_relayed_and_cached(first: bytes) -> None:
    """forward and cache compare the reply's question in the escaped text form of the query.

    When they compared dnslib's text with it, such a reply was discarded as not matching the
    question: the client got SERVFAIL after the read timeout.
    """
    name = dns.name.Name((first, b"example", b"com", b""))
    zone = Zone()
    if first != b"a.b":  # dnslib's zone text cannot write a dot inside a label
        owner = "".join(f"\\{b:03d}" for b in first) + ".example.com."
        zone.add(f"{owner} 60 IN A 192.0.2.7")
    async with (
        scripted_upstream(zone) as up,
        running_server(corefile("cache 30", fwd(up, options=("read_timeout 2s",)))) as server,
    ):
        replies = []
        for _ in range(2):  # the second from the cache
            q = dns.message.make_query(name, "A")
            replies.append(
                await dns.asyncquery.udp(q, "127.0.0.1", port=server.port(), timeout=TIMEOUT_S)
            )
        assert len(up.queries(not_probe)) == 1
    for r in replies:
        assert r.question[0].name.labels == name.labels, r  # byte for byte
        if first == b"a.b":
            assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer, r
            assert r.authority[0].name == dns.name.from_text("example.com."), r
        else:
            assert r.rcode() == dns.rcode.NOERROR and addresses(r) == ["192.0.2.7"], r
            assert r.answer[0].name.labels == name.labels, r


async def test_a_label_holding_a_dot_is_not_in_the_cluster_zone_and_goes_upstream() -> None:
    r"""`evil\.cluster.local.` is the one label `evil.cluster` under `local.` (as in CoreDNS).

    kubernetes must not take it for a name in cluster.local (it once answered NXDOMAIN with its
    own SOA); forward relays it and the upstream's answer comes back.
    """
    yaml = Path(__file__).resolve().parents[2] / "fixtures/k8s/reference.yaml"
    kubernetes = f"kubernetes cluster.local {{\n        from_yaml {yaml}\n    }}"
    async with (
        scripted_upstream() as up,
        running_server(corefile(kubernetes, fwd(up))) as server,
    ):
        evil = dns.name.Name((b"evil.cluster", b"local", b""))
        r = await dns.asyncquery.udp(
            dns.message.make_query(evil, "A"), "127.0.0.1", port=server.port(), timeout=TIMEOUT_S
        )
        assert r.rcode() == dns.rcode.NXDOMAIN and r.question[0].name.labels == evil.labels
        assert r.authority[0].name == dns.name.root, r  # the upstream's SOA
        assert [q.qname for q in up.queries(not_probe)] == ["evil.cluster.local."]  # dnslib's text
        r = await ask(server, "nosuch.cluster.local.")
        assert r.rcode() == dns.rcode.NXDOMAIN
        assert r.authority[0].name == dns.name.from_text("cluster.local."), r  # kubernetes's
        assert len(up.queries(not_probe)) == 1


# -- failures, failover and health ---------------------------------------------------------------


async def test_timeout_is_servfail_with_error_log(errors_log: pytest.LogCaptureFixture) -> None:
    async with scripted_upstream() as up:
        up.always(Drop())
        options = ("read_timeout 100ms", "max_fails 0")
        async with running_server(corefile(fwd(up, options=options))) as server:
            r = await ask(server, "example.com.")
            assert r.rcode() == dns.rcode.SERVFAIL and flags(r) == "qr rd"
            assert len(up.queries(not_probe)) == 2  # max_connect_attempts defaults to 2 x 1
            (line,) = error_lines(errors_log)
            pattern = (
                rf"2 example\.com\. A: read udp 127\.0\.0\.1:\d+->{re.escape(up.addr)}: i/o timeout"
            )
            assert re.fullmatch(pattern, line), line


async def test_refused_port_fails_fast(errors_log: pytest.LogCaptureFixture) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    options = ("read_timeout 5s", "max_fails 0")
    async with running_server(corefile(fwd(f"127.0.0.1:{port}", options=options))) as server:
        r = await asyncio.wait_for(ask(server, "example.com."), 4.0)  # well below read_timeout
        assert r.rcode() == dns.rcode.SERVFAIL
        (line,) = error_lines(errors_log)
        assert line.endswith("read: connection refused"), line


async def test_overall_budget_caps_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("clusterdns.plugins.forward.handler.BUDGET_S", 0.6)
    async with scripted_upstream() as up:
        up.always(Drop())
        options = ("read_timeout 200ms", "max_connect_attempts 0", "max_fails 0")
        async with running_server(corefile(fwd(up, options=options))) as server:
            r = await ask(server, "example.com.")
            assert r.rcode() == dns.rcode.SERVFAIL
            assert 1 <= len(up.queries(not_probe)) <= 4


async def test_failover_to_second_upstream_when_first_drops() -> None:
    async with upstreams(2) as (first, second):
        first.on(Drop(), probe=False)
        options = ("policy sequential", "read_timeout 200ms", "health_check 10s")
        async with running_server(corefile(fwd(first, second, options=options))) as server:
            r = await ask(server, "example.com.")
            assert addresses(r) == [EXAMPLE_A]
            assert [q.qname for q in first.queries(not_probe)] == ["example.com."]
            assert [q.qname for q in second.queries()] == ["example.com."]
            await first.wait_probe()  # the failure started health checking of the first


async def test_down_upstream_is_skipped_and_comes_back() -> None:
    async with upstreams(2) as (first, second):
        first.always(Drop())  # queries and probes
        options = (
            "policy sequential",
            "read_timeout 200ms",
            "health_check 50ms",
            "max_fails 1",
        )
        async with running_server(corefile(fwd(first, second, options=options))) as server:
            p = proxy(server, first)
            assert addresses(await ask(server, "example.com.")) == [EXAMPLE_A]
            await p.wait_until(lambda x: x.down, TIMEOUT_S)  # more than max_fails failed probes
            assert series(server).healthcheck_failures.get(("forward", first.addr)) >= 2
            before = len(first.queries(not_probe))
            assert addresses(await ask(server, "db.example.com.")) == [DB_A]
            assert len(first.queries(not_probe)) == before  # skipped while down
            # The upstream recovers: the next probe gets a reply and the upstream is back.
            since = len(first.received)
            first.clear()
            await first.wait_probe(since=since)
            await p.wait_until(lambda x: not x.down and not x.probing, TIMEOUT_S)
            assert addresses(await ask(server, "db.example.com.")) == [DB_A]
            assert [q.qname for q in first.queries(not_probe)][-1] == "db.example.com."


@pytest.mark.parametrize("failfast", [True, False], ids=["failfast", "random"])
async def test_all_upstreams_down(failfast: bool, errors_log: pytest.LogCaptureFixture) -> None:
    async with scripted_upstream() as up:
        up.always(Drop())
        options: tuple[str, ...] = ("read_timeout 100ms", "health_check 20ms", "max_fails 1")
        if failfast:
            options += ("failfast_all_unhealthy_upstreams",)
        async with running_server(corefile(fwd(up, options=options))) as server:
            assert (await ask(server, "example.com.")).rcode() == dns.rcode.SERVFAIL
            await proxy(server, up).wait_until(lambda x: x.down, TIMEOUT_S)
            before = len(up.queries(not_probe))
            errors_log.clear()
            r = await ask(server, "db.example.com.")
            assert r.rcode() == dns.rcode.SERVFAIL
            assert series(server).healthcheck_broken.get() >= 1
            if failfast:
                assert len(up.queries(not_probe)) == before  # not even tried
                assert error_lines(errors_log) == ["2 db.example.com. A: no healthy proxies"]
            else:
                assert len(up.queries(not_probe)) > before  # tried anyway
                assert "i/o timeout" in error_lines(errors_log)[0]


# -- truncation and transports -------------------------------------------------------------------


async def test_truncated_reply_is_relayed_and_dig_retries_over_tcp() -> None:
    async with scripted_upstream() as up:
        up.on(Truncate(), transport="udp")
        async with running_server(corefile(fwd(up))) as server:
            r = await ask(server, "example.com.")
            assert r.flags & dns.flags.TC and not r.answer and r.rcode() == dns.rcode.NOERROR
            out = await dig(server.port(), "db.example.com", "A")
            assert "Truncated, retrying in TCP mode" in out and DB_A in out
            assert [q.transport for q in up.queries()] == ["udp", "udp", "tcp"]


async def test_prefer_udp_retries_truncated_reply_over_tcp() -> None:
    async with scripted_upstream() as up:
        up.on(Truncate(), transport="udp")
        async with running_server(corefile(fwd(up, options=("prefer_udp",)))) as server:
            r = await ask(server, "example.com.", tcp=True)
            assert addresses(r) == [EXAMPLE_A] and not r.flags & dns.flags.TC
            assert [q.transport for q in up.queries()] == ["udp", "tcp"]


async def test_force_tcp_reuses_one_connection() -> None:
    tcp = ("force_tcp",)
    async with scripted_upstream() as up, running_server(corefile(fwd(up, options=tcp))) as server:
        for name in ("example.com.", "db.example.com.", "nosuch.example."):
            await ask(server, name)
        seen = up.queries()
        assert [q.transport for q in seen] == ["tcp"] * 3
        assert len({q.source for q in seen}) == 1
        m = series(server)
        assert m.conn_cache_misses.get(("forward", up.addr, "tcp")) == 1
        assert m.conn_cache_hits.get(("forward", up.addr, "tcp")) == 2


async def test_upstream_closing_idle_connection_is_retried_on_a_new_one() -> None:
    tcp = ("force_tcp",)
    async with scripted_upstream() as up, running_server(corefile(fwd(up, options=tcp))) as server:
        await ask(server, "example.com.")
        assert up.close_connections() == 1  # the one the forwarder keeps in its pool
        r = await ask(server, "db.example.com.")
        assert addresses(r) == [DB_A]
        first, second = up.queries()
        assert first.source != second.source


# -- limits --------------------------------------------------------------------------------------


async def test_max_concurrent_refuses_without_contacting_upstream(
    errors_log: pytest.LogCaptureFixture,
) -> None:
    gate = asyncio.Event()
    async with scripted_upstream() as up:
        up.always(Wait(gate), Answer())
        options = ("max_concurrent 2", "max_fails 0")
        async with running_server(corefile(fwd(up, options=options))) as server:
            first = asyncio.create_task(ask(server, "example.com."))
            second = asyncio.create_task(ask(server, "db.example.com."))
            await up.wait_for(2, timeout_s=TIMEOUT_S)
            r = await ask(server, "third.example.com.")
            assert r.rcode() == dns.rcode.REFUSED and flags(r) == "qr rd"
            assert not r.answer and not r.authority
            assert len(up.queries()) == 2
            assert series(server).max_concurrent_rejects.get() == 1
            assert error_lines(errors_log) == [
                "5 third.example.com. A: concurrent queries exceeded maximum 2"
            ]
            gate.set()
            assert addresses(await first) == [EXAMPLE_A]
            assert addresses(await second) == [DB_A]
            assert not proxy(server, up).probing  # a refusal is not an upstream failure


async def test_pending_upstream_queries_are_capped() -> None:
    gate = asyncio.Event()
    async with scripted_upstream() as up:
        up.always(Wait(gate), Answer())
        async with running_server(corefile(fwd(up, options=("max_fails 0",)))) as server:
            shared(server).pending.limit = 1
            first = asyncio.create_task(ask(server, "example.com."))
            await up.wait_for(1, timeout_s=TIMEOUT_S)
            r = await ask(server, "db.example.com.")
            assert r.rcode() == dns.rcode.REFUSED
            assert series(server).pending_rejects.get() == 1
            gate.set()
            assert addresses(await first) == [EXAMPLE_A]
            assert shared(server).pending.pending == 0


# -- RFC 5452 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoof", "reason"),
    [(SpoofID(), "id"), (SpoofQuestion(), "question"), (SpoofPort(), None)],
    ids=["wrong-id", "wrong-question", "wrong-port"],
)
async def test_spoofed_reply_before_the_real_one_is_ignored(
    spoof: Step, reason: str | None
) -> None:
    async with scripted_upstream() as up:
        up.always(spoof, Answer())
        async with running_server(corefile(fwd(up))) as server:
            r = await ask(server, "example.com.")
            assert addresses(r) == [EXAMPLE_A] and POISON not in r.to_text()
            discarded = series(server).discarded_replies
            if reason is not None:
                assert discarded.get((up.addr, reason)) == 1
            else:  # the connected socket never even sees it
                assert not discarded.values


@pytest.mark.parametrize(
    "spoof",
    [SpoofID(), SpoofQuestion(), SpoofPort()],
    ids=["wrong-id", "wrong-question", "wrong-port"],
)
async def test_spoofed_reply_alone_is_a_timeout(spoof: Step) -> None:
    async with scripted_upstream() as up:
        up.always(spoof, Drop())
        options = ("read_timeout 200ms", "max_fails 0")
        async with running_server(corefile(fwd(up, options=options))) as server:
            r = await ask(server, "example.com.")
            assert r.rcode() == dns.rcode.SERVFAIL and POISON not in r.to_text()


async def test_tcp_reply_with_wrong_id_is_skipped_on_the_connection() -> None:
    async with scripted_upstream() as up:
        up.always(SpoofID(), SpoofQuestion(), Answer())
        async with running_server(corefile(fwd(up, options=("force_tcp",)))) as server:
            r = await ask(server, "example.com.")
            assert addresses(r) == [EXAMPLE_A]
            discarded = series(server).discarded_replies
            assert discarded.get((up.addr, "id")) == 1 and discarded.get((up.addr, "question")) == 1


async def test_source_ports_and_ids_vary_per_query() -> None:
    async with scripted_upstream() as up, running_server(corefile(fwd(up))) as server:
        for i in range(8):
            await ask(server, f"n{i}.example.com.", qid=4242)
        seen = up.queries()
        assert len(seen) == 8
        assert len({q.source[1] for q in seen}) >= 7
        assert len({q.id for q in seen}) >= 7
        assert sum(q.id == 4242 for q in seen) <= 1


async def test_identical_queries_in_flight_are_merged() -> None:
    gate = asyncio.Event()
    async with scripted_upstream() as up:
        up.on(Wait(gate), Answer(), qname="example.com.")
        async with running_server(corefile(fwd(up))) as server:
            first = asyncio.create_task(ask(server, "example.com.", qid=1111))
            await up.wait_for(1, timeout_s=TIMEOUT_S)
            second = asyncio.create_task(ask(server, "EXAMPLE.com.", qid=2222))
            # Queries are served in arrival order: once this one is answered, the second one
            # has joined the first one's upstream query.
            assert addresses(await ask(server, "db.example.com.")) == [DB_A]
            gate.set()
            a, b = await first, await second
            assert (a.id, str(a.question[0].name)) == (1111, "example.com.")
            assert (b.id, str(b.question[0].name)) == (2222, "EXAMPLE.com.")
            assert addresses(a) == addresses(b) == [EXAMPLE_A]
            assert [q.qname for q in up.queries()] == ["example.com.", "db.example.com."]
            assert series(server).merged_requests.get() == 1


async def test_queries_differing_in_transport_are_not_merged() -> None:
    gate = asyncio.Event()
    async with scripted_upstream() as up:
        up.always(Wait(gate), Answer())
        async with running_server(corefile(fwd(up))) as server:
            udp = asyncio.create_task(ask(server, "example.com."))
            tcp = asyncio.create_task(ask(server, "example.com.", tcp=True))
            await up.wait_for(2, timeout_s=TIMEOUT_S)
            gate.set()
            assert addresses(await udp) == addresses(await tcp) == [EXAMPLE_A]
            assert sorted(q.transport for q in up.queries()) == ["tcp", "udp"]


# -- which upstream, which line ------------------------------------------------------------------


async def test_except_and_from_select_what_is_forwarded() -> None:
    async with scripted_upstream() as up:
        line = fwd(up, zone="example.com", options=("except db.example.com example.com",))
        async with running_server(corefile(line, after="whoami")) as server:
            r = await ask(server, "example.com.")  # exactly FROM: always forwarded
            assert addresses(r) == [EXAMPLE_A]
            for name in ("db.example.com.", "example.net."):
                r = await ask(server, name)
                assert flags(r) == "qr aa rd" and r.additional  # whoami answered
            assert [q.qname for q in up.queries()] == ["example.com."]


async def test_policy_sequential_always_starts_with_the_first() -> None:
    async with upstreams(3) as ups:
        line = fwd(*ups, options=("policy sequential",))
        async with running_server(corefile(line)) as server:
            for i in range(3):
                await ask(server, f"n{i}.example.com.")
            assert [len(u.queries()) for u in ups] == [3, 0, 0]


async def test_policy_round_robin_rotates() -> None:
    async with upstreams(3) as ups:
        line = fwd(*ups, options=("policy round_robin",))
        async with running_server(corefile(line)) as server:
            for i in range(6):
                await ask(server, f"n{i}.example.com.")
            order = [
                next(
                    j
                    for j, u in enumerate(ups)
                    if f"n{i}.example.com." in [q.qname for q in u.queries()]
                )
                for i in range(6)
            ]
            assert order == [1, 2, 0, 1, 2, 0]  # CoreDNS starts its rotation at the second


async def test_policy_random_uses_every_upstream() -> None:
    async with upstreams(2) as ups, running_server(corefile(fwd(*ups))) as server:
        for i in range(40):
            await ask(server, f"n{i}.example.com.")
        assert all(u.queries() for u in ups)


async def test_next_hands_rcode_to_the_next_forward_line() -> None:
    empty = Zone(records=())
    async with scripted_upstream(empty) as first, scripted_upstream() as second:
        lines = (fwd(first, options=("next NXDOMAIN", "next_on_nodata")), fwd(second))
        async with running_server(corefile(*lines)) as server:
            assert addresses(await ask(server, "example.com.")) == [EXAMPLE_A]
            empty.add("only.example.com. 60 IN TXT hello")
            r = await ask(server, "only.example.com.", "A")  # NODATA at the first line
            assert r.rcode() == dns.rcode.NXDOMAIN  # relayed from the second
            assert [q.qname for q in first.queries()] == ["example.com.", "only.example.com."]
            assert [q.qname for q in second.queries()] == ["example.com.", "only.example.com."]


async def test_next_is_ignored_when_the_next_plugin_is_not_forward() -> None:
    async with scripted_upstream(Zone(records=())) as up:
        line = fwd(up, options=("next NXDOMAIN",))
        async with running_server(corefile(line, after="whoami")) as server:
            r = await ask(server, "example.com.")
            assert r.rcode() == dns.rcode.NXDOMAIN and flags(r) == "qr rd ra"


async def test_failover_tries_the_next_upstream_then_relays_the_last_reply() -> None:
    async with upstreams(2) as (first, second):
        first.always(servfail())
        options = ("policy sequential", "failover SERVFAIL REFUSED")
        async with running_server(corefile(fwd(first, second, options=options))) as server:
            assert addresses(await ask(server, "example.com.")) == [EXAMPLE_A]
            second.always(servfail())
            r = await ask(server, "db.example.com.")
            # Written by forward, as relayed: RA from the upstream (a server error has no RA).
            assert r.rcode() == dns.rcode.SERVFAIL and flags(r) == "qr rd ra"
            assert len(first.queries()) == 2 and len(second.queries()) == 2


async def test_without_failover_an_upstream_servfail_is_relayed() -> None:
    async with upstreams(2) as (first, second):
        first.always(servfail())
        options = ("policy sequential",)
        async with running_server(corefile(fwd(first, second, options=options))) as server:
            r = await ask(server, "example.com.")
            assert r.rcode() == dns.rcode.SERVFAIL and flags(r) == "qr rd ra"
            assert not second.queries()


# -- the UpstreamRegistry (used by loop) ---------------------------------------------------------


async def test_registry_reports_in_flight_upstream_and_quarantines(
    errors_log: pytest.LogCaptureFixture,
) -> None:
    gate = asyncio.Event()
    async with upstreams(2) as (first, second):
        first.on(Wait(gate), Answer(), qname="example.com.")
        options = ("policy sequential",)
        async with running_server(corefile(fwd(first, second, options=options))) as server:
            (registry,) = server.config.blocks[0].settings.upstreams
            assert registry.upstreams_for("example.com.") == [first.addr, second.addr]
            pending = asyncio.create_task(ask(server, "example.com."))
            await first.wait_for(1, timeout_s=TIMEOUT_S)
            assert registry.upstreams_for("example.com.") == [first.addr]
            gate.set()
            assert addresses(await pending) == [EXAMPLE_A]

            registry.quarantine(first.addr, "loop detected")
            assert registry.upstreams_for("example.com.") == [second.addr]
            assert addresses(await ask(server, "db.example.com.")) == [DB_A]
            assert [q.qname for q in second.queries()] == ["db.example.com."]

            registry.quarantine(second.addr, "loop detected")
            r = await ask(server, "db.example.com.")
            assert r.rcode() == dns.rcode.SERVFAIL and flags(r) == "qr rd"
            assert len(second.queries()) == 1
            assert error_lines(errors_log)[-1].startswith(
                "2 db.example.com. A: plugin/forward: no upstream left in service"
            )


# -- DNS over TLS ----------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "2", "-subj", "/CN=dns.test", "-keyout", str(key), "-out",
            str(cert), "-addext", "subjectAltName=DNS:dns.test,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


async def test_dns_over_tls(
    certificate: tuple[Path, Path], errors_log: pytest.LogCaptureFixture
) -> None:
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    async with scripted_upstream(tls=server_ctx) as up:
        to = f"tls://127.0.0.1:{up.port}"
        good = fwd(to, options=(f"tls {cert}", "tls_servername dns.test"))
        async with running_server(corefile(good)) as server:
            assert addresses(await ask(server, "example.com.")) == [EXAMPLE_A]
            assert addresses(await ask(server, "db.example.com.")) == [DB_A]
            assert [q.transport for q in up.queries()] == ["tls", "tls"]
            assert series(server).conn_cache_hits.get(("forward", up.addr, "tcp-tls")) == 1
        wrong = fwd(to, options=(f"tls {cert}", "tls_servername other.test", "max_fails 0"))
        async with running_server(corefile(wrong)) as server:
            r = await ask(server, "example.com.")
            assert r.rcode() == dns.rcode.SERVFAIL
            assert "CERTIFICATE_VERIFY_FAILED" in error_lines(errors_log)[-1]
        assert len(up.queries()) == 2


# -- forwarding loops ----------------------------------------------------------------------------


async def test_hinfo_queries_are_not_merged() -> None:
    gate = asyncio.Event()
    async with scripted_upstream() as up:
        up.always(Wait(gate), Answer())
        async with running_server(corefile(fwd(up))) as server:
            first = asyncio.create_task(ask(server, "probe.example.", "HINFO"))
            second = asyncio.create_task(ask(server, "probe.example.", "HINFO"))
            await up.wait_for(2, timeout_s=TIMEOUT_S)
            gate.set()
            await first, await second
            assert series(server).merged_requests.get() == 0


async def test_looping_query_is_merged_into_itself_and_fails() -> None:
    async with scripted_upstream() as up:
        options = ("read_timeout 500ms", "max_fails 0")
        async with running_server(corefile(fwd(up, options=options))) as server:
            up.always(ForwardTo("127.0.0.1", server.port()))
            r = await ask(server, "example.com.")
            assert r.rcode() == dns.rcode.SERVFAIL
            # Each attempt came back and joined the query it belonged to instead of going out
            # again, so the loop did not multiply.
            assert len(up.queries()) == 2
            assert series(server).merged_requests.get() == 2


@pytest.mark.skipif("loop" not in SETUP, reason="the loop plugin is not available")
async def test_loop_plugin_quarantines_the_looping_upstream() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    async with scripted_upstream() as up:
        up.on(ForwardTo("127.0.0.1", port), qtype="HINFO")
        text = f".:{port} {{\n    bind 127.0.0.1\n    loop\n    {fwd(up)}\n}}\n"
        async with running_server(text) as server:
            p = proxy(server, up)
            await p.wait_until(lambda x: x.quarantine_reason is not None, TIMEOUT_S)
            assert "loop" in str(p.quarantine_reason)
            r = await ask(server, "example.com.")
            assert r.rcode() == dns.rcode.SERVFAIL
            assert all(q.qtype == "HINFO" for q in up.queries())
