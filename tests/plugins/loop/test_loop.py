from __future__ import annotations

import asyncio
import logging
import re
import secrets
import sys
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, NoReturn, cast

import pytest
from dnslib import QTYPE, RR, A, DNSRecord

from clusterdns.chain.build import Block, Config
from clusterdns.chain.handler import Handler
from clusterdns.chain.request import Request
from clusterdns.chain.writer import ResponseWriter
from clusterdns.dnsutil import rcode as rc
from clusterdns.errors import CorefileErrors
from clusterdns.metrics import Metrics
from clusterdns.plugins.loop import (
    PROBE_WINDOW_S,
    Loop,
    LoopConfig,
    probe_name,
    series_for,
)
from clusterdns.plugins.loop.handler import RETRY_S, host_port, probe_host
from clusterdns.server.lifecycle import Server
from tests.dnstest import (
    LOCAL,
    RecordingWriter,
    build_config,
    http_get,
    make_request,
    udp_exchange,
)

PROBE_REMOTE = ("127.0.0.1", 40000)
"""Where our own probe comes from."""
UPSTREAM = "127.0.0.53:53"
UPSTREAM_REMOTE = ("127.0.0.53", 5353)
"""Where the looped-back probe comes from (the upstream forwarding it to us again)."""


def find_loop(head: Handler | None) -> Loop:
    h: object = head
    while h is not None:
        if isinstance(h, Loop):
            return h
        h = getattr(h, "next", None)
    raise AssertionError("no loop handler in the chain")


def loop_of(block: Block) -> Loop:
    return find_loop(block.head)


# -- setup -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SetupCase:
    corefile: str
    config: LoopConfig | None = None
    error: str | None = None


SETUP_CASES = [
    SetupCase(corefile=". {\n    loop\n    whoami\n}\n", config=LoopConfig()),
    SetupCase(
        corefile="Example.ORG:1053 example.net {\n    loop\n    whoami\n}\n",
        config=LoopConfig(zone="example.org.", port=1053),
    ),
    SetupCase(
        corefile="10.0.0.0/24 {\n    loop\n    whoami\n}\n",
        config=LoopConfig(zone="0.0.10.in-addr.arpa."),
    ),
    SetupCase(
        corefile=".:5300 {\n    bind 10.1.2.3 127.0.0.1\n    loop\n    whoami\n}\n",
        config=LoopConfig(host="10.1.2.3", port=5300),
    ),
    SetupCase(
        corefile=". {\n    bind ::\n    loop\n    whoami\n}\n", config=LoopConfig(host="::1")
    ),
    SetupCase(
        corefile=". {\n    bind 0.0.0.0\n    loop\n    whoami\n}\n",
        config=LoopConfig(host="127.0.0.1"),
    ),
    SetupCase(
        corefile=". {\n    whoami\n    loop 5\n}\n",
        error="Corefile:3: loop: expected no arguments, got 1",
    ),
    SetupCase(
        corefile=". {\n    loop {\n    }\n    whoami\n}\n",
        error="Corefile:2: loop: loop takes no block",
    ),
    SetupCase(
        corefile=". {\n    loop\n    loop\n    whoami\n}\n",
        error="Corefile:3: loop: this plugin can only be used once per Server Block",
    ),
]


@pytest.mark.parametrize("case", SETUP_CASES, ids=lambda c: c.corefile.split("\n", 1)[0])
def test_setup(case: SetupCase) -> None:
    if case.error is not None:
        with pytest.raises(CorefileErrors) as info:
            build_config(case.corefile)
        assert [str(e) for e in info.value.errors] == [case.error]
        return
    assert case.config is not None
    loop = loop_of(build_config(case.corefile).blocks[0])
    assert loop.zone == case.config.zone
    assert loop.target == case.config.target
    assert re.fullmatch(r"[0-9]+\.[0-9]+\." + re.escape(case.config.zone.lstrip(".")), loop.qname)


def test_port_zero_has_no_target_until_set() -> None:
    loop = loop_of(build_config(".:0 {\n    loop\n    whoami\n}\n").blocks[0])
    assert loop.target is None
    loop.set_target("127.0.0.1", 5301)
    assert loop.target == ("127.0.0.1", 5301)


def test_setup_registers_hooks_and_ready_note() -> None:
    config = build_config(". {\n    loop\n    whoami\n}\n")
    loop = loop_of(config.blocks[0])
    assert loop.start in config.process.startup
    assert loop.stop in config.process.shutdown
    assert loop.ready_note in config.blocks[0].settings.ready_notes
    assert loop.registries is config.blocks[0].settings.upstreams


def test_helpers() -> None:
    assert host_port(("10.0.0.1", 53)) == "10.0.0.1:53"
    assert host_port(("::1", 53)) == "[::1]:53"
    assert probe_host([]) == "127.0.0.1"
    assert probe_host(["fd00::1"]) == "fd00::1"


# -- the probe name --------------------------------------------------------------------------


def test_probe_name_is_unguessable(monkeypatch: pytest.MonkeyPatch) -> None:
    a = loop_of(build_config(". {\n    loop\n    whoami\n}\n").blocks[0])
    b = loop_of(build_config(". {\n    loop\n    whoami\n}\n").blocks[0])
    assert a.qname != b.qname
    names = {probe_name("cluster.local.") for _ in range(500)}
    assert len(names) == 500
    for name in names:
        first, second, rest = name.split(".", 2)
        assert rest == "cluster.local."
        assert 0 <= int(first) < 2**62 and 0 <= int(second) < 2**62
    # The randomness comes from the secrets module: 2 x 62 bits >= 100 bits.
    calls: list[int] = []

    def randbits(k: int) -> int:
        calls.append(k)
        return (1 << k) - 1

    monkeypatch.setattr(secrets, "randbits", randbits)
    assert probe_name(".") == f"{2**62 - 1}.{2**62 - 1}."
    assert sum(calls) >= 100


# -- a scripted loop -------------------------------------------------------------------------


async def upstream_answers(wire: bytes) -> bytes:
    """An upstream that answers itself (no loop)."""
    return bytes(DNSRecord.parse(wire).reply().pack())


class FakeForward:
    """A `forward` stand-in whose upstream sends HINFO queries straight back to us.

    It is also the block's UpstreamRegistry, so the loop plugin can name and quarantine it.
    """

    name: ClassVar[str] = "forward"

    def __init__(self, upstream: str, back: Callable[[bytes], Awaitable[bytes]]) -> None:
        self.upstream = upstream
        self.back = back
        self.in_flight: Tally[str] = Tally()
        self.quarantined: list[tuple[str, str]] = []
        self.forwarded = 0

    def upstreams_for(self, qname: str) -> list[str]:
        return [self.upstream] if self.in_flight[qname] else []

    def quarantine(self, upstream: str, reason: str) -> None:
        self.quarantined.append((upstream, reason))

    async def serve(self, req: Request, w: ResponseWriter) -> int:
        if req.qtype != rc.HINFO:
            # Other names go to another, healthy upstream.
            reply = req.reply(aa=False)
            reply.add_answer(RR(req.qname, rc.A, rdata=A("192.0.2.1"), ttl=60))
            w.write(reply, "forward")
            return rc.NOERROR
        if any(u == self.upstream for u, _ in self.quarantined):
            return rc.SERVFAIL
        self.forwarded += 1
        self.in_flight[req.name] += 1
        try:
            wire = await self.back(bytes(req.msg.pack()))
        finally:
            self.in_flight[req.name] -= 1
        reply = DNSRecord.parse(wire)
        reply.header.id = req.id
        w.write(reply, "forward")
        return int(reply.header.rcode)


@dataclass
class Rig:
    config: Config
    loop: Loop
    forward: FakeForward
    serve: Callable[[bytes, tuple[str, int]], Awaitable[bytes]]
    replies: list[DNSRecord]


@pytest.fixture
def rig() -> Rig:
    config = build_config(". {\n    ready 127.0.0.1:0\n    loop\n    whoami\n}\n")
    block = config.blocks[0]
    loop = loop_of(block)
    head = block.head
    assert head is loop

    async def serve(wire: bytes, remote: tuple[str, int]) -> bytes:
        """What the server does with one datagram (spec §4.5 for unwritten error rcodes)."""
        req = Request(DNSRecord.parse(wire), wire, proto="udp", remote=remote, local=LOCAL)
        w = RecordingWriter(req)
        code = await loop.serve(req, w)
        if not w.written:
            w.write(req.reply(aa=False, rcode=code), "")
        return w.sent[0]

    forward = FakeForward(UPSTREAM, lambda wire: serve(wire, UPSTREAM_REMOTE))
    loop.next = forward
    block.settings.upstreams.append(forward)
    replies: list[DNSRecord] = []

    async def exchange(host: str, port: int, wire: bytes, timeout_s: float) -> bytes:
        assert (host, port) == ("127.0.0.1", 53)
        reply = await serve(wire, PROBE_REMOTE)
        replies.append(DNSRecord.parse(reply))
        return reply

    loop.exchange = exchange
    loop.clock = lambda: 0.0
    return Rig(config, loop, forward, serve, replies)


async def test_loop_detected_without_exit(
    rig: Rig, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_exit(*args: object) -> NoReturn:
        raise AssertionError("the process must never exit on a loop")

    monkeypatch.setattr(sys, "exit", no_exit)
    loop = rig.loop
    caplog.set_level(logging.INFO, logger="clusterdns.plugins.loop")

    await loop.run()

    # Seen three times: our probe, then twice back through the upstream.
    assert loop.seen == 3
    assert rig.forward.forwarded == 2
    # The upstream was named and quarantined through the registry.
    assert [u for u, _ in rig.forward.quarantined] == [UPSTREAM]
    assert "forwarding loop detected" in rig.forward.quarantined[0][1]
    assert loop.quarantined == [UPSTREAM]
    # The probe itself got SERVFAIL, which ended the attempt: the plugin stopped watching.
    assert [int(r.header.rcode) for r in rig.replies] == [rc.SERVFAIL]
    assert loop.attempts == 1
    assert not loop.enabled and loop.finished.is_set()
    # One ERROR line naming client, listener, zone, probe and upstream.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        f'Loop (127.0.0.53:5353 -> 127.0.0.1:53) detected for zone ".", '
        "see https://coredns.io/plugins/loop#troubleshooting. "
        f'Query: "HINFO {loop.qname}"; upstream {UPSTREAM} quarantined'
    ]
    assert all(r.levelno < logging.CRITICAL for r in caplog.records)
    # Reported in /ready's body and as a metric.
    notes = [note() for note in rig.config.blocks[0].settings.ready_notes]
    assert notes == [f'loop detected: upstream {UPSTREAM} quarantined for zone "."']
    gauge = series_for(rig.config.process.metrics).detected
    assert gauge.values == {(".", UPSTREAM): 1}
    assert b'clusterdns_loop_detected{upstream="127.0.0.53:53",zone="."} 1.0' in (
        rig.config.process.metrics.exposition()
    )
    # ... and /ready keeps answering 200, with the note in its body.
    await rig.config.process.http.start()
    try:
        ready = await http_get(rig.config.process.http.listeners["127.0.0.1:0"].port, "/ready")
    finally:
        await rig.config.process.http.stop()
    assert (ready.status, ready.text) == (
        200,
        f'OK\nloop detected: upstream {UPSTREAM} quarantined for zone "."',
    )
    # Everything else is still served.
    other = DNSRecord.parse(
        await rig.serve(bytes(DNSRecord.question("example.org.", "A").pack()), PROBE_REMOTE)
    )
    assert int(other.header.rcode) == rc.NOERROR
    assert [str(r.rdata) for r in other.rr] == ["192.0.2.1"]
    # The withdrawn series goes with the instance.
    await loop.stop()
    assert gauge.values == {}


async def test_no_upstream_to_name(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.config.blocks[0].settings.upstreams.clear()
    caplog.set_level(logging.ERROR, logger="clusterdns.plugins.loop")
    await rig.loop.run()
    assert rig.forward.quarantined == []
    assert caplog.records[0].getMessage().endswith("; no upstream known to quarantine")
    assert rig.loop.ready_note() == 'loop detected for zone ".": no upstream known to quarantine'
    assert series_for(rig.config.process.metrics).detected.values == {(".", ""): 1}


async def test_other_names_and_types_pass_untouched(rig: Rig) -> None:
    loop = rig.loop
    rig.forward.back = upstream_answers
    # The probe name with another type, and other HINFO names, are not counted.
    for qname, qtype in (
        (loop.qname, "A"),
        ("example.org.", "HINFO"),
        ("x." + loop.qname, "HINFO"),
    ):
        w = RecordingWriter(make_request(qname, qtype))
        seen_before = loop.seen
        await loop.serve(make_request(qname, qtype), w)
        assert loop.seen == seen_before
    assert loop.seen == 0
    assert loop.enabled


async def test_sightings_below_three_are_passed_on(rig: Rig) -> None:
    loop = rig.loop
    rig.forward.back = upstream_answers  # no loop: the upstream answers itself
    for expected in (1, 2):
        req = make_request(loop.qname, "HINFO")
        w = RecordingWriter(req)
        code = await loop.serve(req, w)
        assert loop.seen == expected
        assert code == rc.NOERROR and w.written and w.plugin == "forward"
    assert not loop.detected and rig.forward.quarantined == []


async def test_disables_itself_after_a_reply(rig: Rig) -> None:
    loop = rig.loop
    seen_at_exchange: list[int] = []

    async def answered(host: str, port: int, wire: bytes, timeout_s: float) -> bytes:
        query = DNSRecord.parse(wire)
        assert str(query.q.qname) == loop.qname and query.q.qtype == QTYPE.HINFO
        assert query.header.rd == 1
        seen_at_exchange.append(loop.seen)
        return bytes(query.reply().pack())

    loop.exchange = answered
    rig.forward.back = upstream_answers
    await loop.run()
    assert loop.attempts == 1 and not loop.enabled
    assert seen_at_exchange == [0]
    # Once disabled, even the probe name goes to the next plugin and is not counted.
    for _ in range(5):
        w = RecordingWriter(make_request(loop.qname, "HINFO"))
        await loop.serve(make_request(loop.qname, "HINFO"), w)
    assert loop.seen == 0
    assert not loop.detected and rig.forward.quarantined == []


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_gives_up_after_thirty_seconds() -> None:
    fake = FakeTime()
    seen_at_attempt: list[int] = []
    loop = Loop(
        zone=".",
        target=("127.0.0.1", 53),
        registries=[],
        series=series_for(Metrics()),
        nxt=None,
        clock=fake.clock,
        sleep=fake.sleep,
    )

    async def refused(host: str, port: int, wire: bytes, timeout_s: float) -> bytes:
        seen_at_attempt.append(loop.seen)
        loop.seen += 2  # two sightings in a failed attempt are forgotten
        raise ConnectionRefusedError("ICMP port unreachable")

    loop.exchange = refused
    await loop.run()
    assert loop.attempts == int(PROBE_WINDOW_S / RETRY_S) == 30
    assert fake.sleeps == [RETRY_S] * 30
    assert seen_at_attempt == [0] * 30
    assert not loop.enabled and loop.finished.is_set()


async def test_slow_attempts_share_the_window() -> None:
    fake = FakeTime()
    loop = Loop(
        zone=".",
        target=("127.0.0.1", 53),
        registries=[],
        series=series_for(Metrics()),
        nxt=None,
        clock=fake.clock,
        sleep=fake.sleep,
    )

    async def timeout(host: str, port: int, wire: bytes, timeout_s: float) -> bytes:
        fake.now += timeout_s
        raise TimeoutError

    loop.exchange = timeout
    await loop.run()
    assert loop.attempts == 10  # 2 s wait + 1 s pause each
    assert not loop.enabled


async def test_no_target_yet_counts_as_a_failed_attempt() -> None:
    fake = FakeTime()
    loop = Loop(
        zone=".",
        target=None,
        registries=[],
        series=series_for(Metrics()),
        nxt=None,
        clock=fake.clock,
        sleep=fake.sleep,
    )
    sent: list[tuple[str, int]] = []

    async def exchange(host: str, port: int, wire: bytes, timeout_s: float) -> bytes:
        sent.append((host, port))
        return wire

    loop.exchange = exchange

    async def sleep(seconds: float) -> None:
        await fake.sleep(seconds)
        if len(fake.sleeps) == 3:
            loop.set_target("127.0.0.1", 5301)

    loop.sleep = sleep
    await loop.run()
    assert loop.attempts == 4
    assert sent == [("127.0.0.1", 5301)]


async def test_stop_cancels_the_probe_task() -> None:
    loop = Loop(
        zone=".", target=("127.0.0.1", 53), registries=[], series=series_for(Metrics()), nxt=None
    )
    started = asyncio.Event()

    async def hang(host: str, port: int, wire: bytes, timeout_s: float) -> bytes:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    loop.exchange = hang
    await loop.start()
    await asyncio.wait_for(started.wait(), 5)
    await loop.stop()
    assert loop.finished.is_set() and not loop.enabled


# -- the real server -------------------------------------------------------------------------


async def test_probe_reaches_the_real_listener(caplog: pytest.LogCaptureFixture) -> None:
    """No loop: the probe goes over UDP to the bound port, whoami answers, the plugin stops."""
    caplog.set_level(logging.DEBUG)
    config = build_config(".:0 {\n    bind 127.0.0.1\n    loop\n    whoami\n}\n")
    loop = loop_of(config.blocks[0])
    assert loop.target is None  # port 0: unknown until the listener is bound
    wired = asyncio.Event()
    real_sleep = loop.sleep

    async def sleep_until_wired(seconds: float) -> None:
        await wired.wait()
        await real_sleep(0)

    loop.sleep = sleep_until_wired
    seen: list[int] = []
    real_exchange = loop.exchange

    async def watched(host: str, port: int, wire: bytes, timeout_s: float) -> bytes:
        await wired.wait()
        reply = await real_exchange(host, port, wire, timeout_s)
        seen.append(loop.seen)
        return reply

    loop.exchange = watched
    server = Server(config, quiet=True)
    await server.start()
    try:
        # No set_target: the port-0 key's real port comes from the block's bound listeners.
        assert config.blocks[0].settings.bound == [("127.0.0.1", server.port())]
        wired.set()
        await asyncio.wait_for(loop.finished.wait(), 5)
    finally:
        await server.stop(graceful=False)
    assert seen == [1]  # the probe passed through the plugin once and was answered
    assert not loop.enabled and not loop.detected
    assert loop.ready_note() == ""
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class LoopingUpstream(asyncio.DatagramProtocol):
    """A loopback "upstream" that sends every query back to our own server: a forwarding loop."""

    def __init__(self) -> None:
        self.server_port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.relayed = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        task = asyncio.get_running_loop().create_task(
            self.relay(data, (str(addr[0]), int(addr[1])))
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def relay(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relayed += 1
        try:
            reply = await udp_exchange(self.server_port, data)
        except TimeoutError:
            return
        assert self.transport is not None
        self.transport.sendto(reply, addr)


async def test_real_forwarding_loop_is_detected_and_survived(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The real `forward` sends to an upstream that sends everything back to us."""
    caplog.set_level(logging.INFO)
    loop_ = asyncio.get_running_loop()
    transport, upstream = await loop_.create_datagram_endpoint(
        LoopingUpstream, local_addr=("127.0.0.1", 0)
    )
    upstream_port = transport.get_extra_info("sockname")[1]
    corefile = (
        ".:0 {\n    bind 127.0.0.1\n    ready 127.0.0.1:0\n    hosts {\n"
        "        10.0.0.1 ok.example.org\n        fallthrough\n    }\n"
        f"    loop\n    forward . 127.0.0.1:{upstream_port}\n}}\n"
    )
    config = build_config(corefile)
    loop = loop_of(config.blocks[0])
    wired = asyncio.Event()

    async def sleep_until_wired(seconds: float) -> None:
        await wired.wait()

    loop.sleep = sleep_until_wired
    real_exchange = loop.exchange

    async def gated(host: str, port: int, wire: bytes, timeout_s: float) -> bytes:
        await wired.wait()  # the first probe goes out once the looping upstream knows our port
        return await real_exchange(host, port, wire, timeout_s)

    loop.exchange = gated
    server = Server(config, quiet=True)
    await server.start()
    try:
        upstream.server_port = server.port()
        wired.set()
        await asyncio.wait_for(loop.finished.wait(), 10)
        label = f"127.0.0.1:{upstream_port}"
        assert loop.detected and loop.quarantined == [label]
        # The first attempt, sent to the port found in the block's bound listeners, came back
        # through the loop and got its SERVFAIL.
        assert loop.attempts == 1
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any(
            m.startswith("Loop (127.0.0.1:")
            and m.endswith(f'Query: "HINFO {loop.qname}"; upstream {label} quarantined')
            for m in errors
        ), errors
        # Still serving: a name answered before the loop plugin, and SERVFAIL (not silence) for
        # what would have gone to the quarantined upstream.
        ok = DNSRecord.parse(
            await udp_exchange(server.port(), bytes(DNSRecord.question("ok.example.org.").pack()))
        )
        assert int(ok.header.rcode) == rc.NOERROR and str(ok.rr[0].rdata) == "10.0.0.1"
        relayed = upstream.relayed
        other = DNSRecord.parse(
            await udp_exchange(server.port(), bytes(DNSRecord.question("example.com.").pack()))
        )
        assert int(other.header.rcode) == rc.SERVFAIL
        assert upstream.relayed == relayed  # nothing more was sent to the looping upstream
        ready = await http_get(config.process.http.listeners["127.0.0.1:0"].port, "/ready")
        assert ready.status == 200
        assert f'loop detected: upstream {label} quarantined for zone "."' in ready.text
    finally:
        await server.stop(graceful=False)
        transport.close()
